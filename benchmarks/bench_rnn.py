"""Masked recurrent layers: seqmask vs its peers and the hardware floor.

For an LSTM and a GRU layer over a right-padded batch, under ``jax.jit``,
forward and forward+backward, in one run:

* ``seqmask`` - ``seqmask.rnn`` with lengths, default settings;
* ``seqmask-unmasked`` - the same without a mask (masking overhead);
* ``seqmask-hoisted`` / ``seqmask-step`` - the input projection forced out
  of the scan (one large matmul) / inside every step (``hoist=``);
* ``flax`` - Flax ``nn.RNN`` with ``seq_lengths`` (``OptimizedLSTMCell`` /
  ``GRUCell``);
* ``lax.scan`` - a plain hand-written scan of the same math, the mask applied
  with ``jnp.where`` after the step;
* ``matmuls-only`` - the same per-step matmuls in the same scan with no gate
  arithmetic and no mask: a bound for any layer that runs its matmuls step
  by step;
* ``torch`` - PyTorch ``nn.LSTM`` / ``nn.GRU`` over packed sequences, when
  torch is installed (``pip install torch==2.13.0``; skipped otherwise).

Before timing, the seqmask variants and the hand-written scan are checked to
give the same outputs. Steady-state times are medians of ``--repeats``
rounds in which every variant runs once (round-robin), so load that comes
and goes hits all of them alike.

The floor is the FLOPs of the dense cell math (the input and recurrent
matmuls) divided by the best matmul rate measured in the same run (the
fastest of repeated calls); every time is also given as a ratio to it.
Forward+backward counts the forward, both weight gradients and the gradient
through the recurrent matmul: the gradient is taken with respect to the
parameters only, so no layer computes the inputs' gradient. Compile time
(trace, lower and compile, no execution) and steady-state time are reported
apart. ``--sweep`` adds
sweeps over T and H; ``--memory`` reports the compiled temporary memory of
forward+backward at long T with and without ``remat`` and its time cost at
the standard shape. Prints Markdown tables, writes
``benchmarks/results/rnn.json`` (``rnn-sweep.json`` with ``--sweep``) and,
when matplotlib is installed, a PNG next to it.

  python benchmarks/bench_rnn.py                 # B=64 T=128 I=128 H=256
  python benchmarks/bench_rnn.py --sweep --memory
  python benchmarks/bench_rnn.py --sweep --sweep-time 32,512 --sweep-hidden 64,512
  python benchmarks/bench_rnn.py --quick         # small smoke run
"""

from __future__ import annotations

import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
from _common import (
    RATIO,
    environment,
    parser,
    pyplot,
    round_robin,
    save_figure,
    torch_or_none,
    write_record,
)

import seqmask


def best_matmul_flops(shapes, repeats: int) -> float:
    """The best FLOP/s of jitted float32 matmuls over the given (m, k, n).

    The fastest of ``repeats`` calls per shape: the floor is what the
    hardware has shown it can do, so a call slowed by other load must not
    lower it.
    """
    best = 0.0
    for m, k, n in shapes:
        a = jnp.ones((m, k), jnp.float32)
        b = jnp.ones((k, n), jnp.float32)
        matmul = jax.jit(jnp.matmul).lower(a, b).compile()
        jax.block_until_ready(matmul(a, b))
        for _ in range(repeats):
            start = time.perf_counter()
            jax.block_until_ready(matmul(a, b))
            best = max(best, 2.0 * m * k * n / (time.perf_counter() - start))
    return best


def plain_scan(kind, params, xs, lengths):
    """The baseline: lax.scan, projection inside, where() after the step."""
    hidden = params["recurrent_kernel"].shape[0]
    steps = xs.shape[1]
    mask_tm = (jnp.arange(steps)[:, None] < lengths[None, :])[..., None]
    xs_tm = jnp.swapaxes(xs, 0, 1)

    def lstm_step(carry, inputs):
        h, c = carry
        x, m = inputs
        z = x @ params["input_kernel"] + h @ params["recurrent_kernel"] + params["bias"]
        i, f, g, o = jnp.split(z, 4, axis=-1)
        new_c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        new_h = jax.nn.sigmoid(o) * jnp.tanh(new_c)
        return (jnp.where(m, new_h, h), jnp.where(m, new_c, c)), jnp.where(m, new_h, 0)

    def gru_step(carry, inputs):
        (h,) = carry
        x, m = inputs
        xi = x @ params["input_kernel"] + params["input_bias"]
        hh = h @ params["recurrent_kernel"] + params["recurrent_bias"]
        x_r, x_z, x_n = jnp.split(xi, 3, axis=-1)
        h_r, h_z, h_n = jnp.split(hh, 3, axis=-1)
        r = jax.nn.sigmoid(x_r + h_r)
        z = jax.nn.sigmoid(x_z + h_z)
        new_h = (1 - z) * jnp.tanh(x_n + r * h_n) + z * h
        return (jnp.where(m, new_h, h),), jnp.where(m, new_h, 0)

    zeros = jnp.zeros((xs.shape[0], hidden), xs.dtype)
    step, init = (lstm_step, (zeros, zeros)) if kind == "lstm" else (gru_step, (zeros,))
    carry, ys = jax.lax.scan(step, init, (xs_tm, mask_tm))
    return carry, jnp.swapaxes(ys, 0, 1)


def matmul_bound(params, xs):
    """The per-step matmuls alone: the same dots as the cell, no gates, no mask.

    ``z = x_t W_x + h W_h`` and ``h = z[:, :H]`` (a linear step), so forward
    and backward run exactly the cell's matmuls at the cell's shapes and
    almost nothing else. No implementation that runs these matmuls step by
    step can be faster under XLA; the ratio to it says how much of a layer's
    time is the gate arithmetic, the masking and the loop, and how much is
    XLA's rate on ``[B, H] x [H, gates*H]`` matmuls.
    """
    hidden = params["recurrent_kernel"].shape[0]
    xs_tm = jnp.swapaxes(xs, 0, 1)

    def step(h, x):
        z = x @ params["input_kernel"] + h @ params["recurrent_kernel"]
        return z[:, :hidden], z[:, :hidden]

    h, ys = jax.lax.scan(step, jnp.zeros((xs.shape[0], hidden), xs.dtype), xs_tm)
    return (h,), jnp.swapaxes(ys, 0, 1)


def jax_variants(kind, batch, steps, inputs, hidden):
    """{name: (forward_fn, params)} with forward_fn(params, xs, lengths)."""
    import flax.linen as nn

    cell = (seqmask.cells.lstm if kind == "lstm" else seqmask.cells.gru)(hidden)
    params = cell.init(jax.random.key(0), inputs)
    flax_cell = nn.OptimizedLSTMCell(hidden) if kind == "lstm" else nn.GRUCell(hidden)
    flax_rnn = nn.RNN(flax_cell, return_carry=True)
    flax_params = flax_rnn.init(
        jax.random.key(0), jnp.zeros((batch, steps, inputs)), seq_lengths=None
    )
    return {
        "seqmask": (
            lambda p, x, n: seqmask.rnn(cell, p, x, lengths=n),
            params,
        ),
        "seqmask-unmasked": (lambda p, x, n: seqmask.rnn(cell, p, x), params),
        "seqmask-hoisted": (
            lambda p, x, n: seqmask.rnn(cell, p, x, lengths=n, hoist=True),
            params,
        ),
        "seqmask-step": (
            lambda p, x, n: seqmask.rnn(cell, p, x, lengths=n, hoist=False),
            params,
        ),
        "flax": (
            lambda p, x, n: flax_rnn.apply(p, x, seq_lengths=n),
            flax_params,
        ),
        "lax.scan": (lambda p, x, n: plain_scan(kind, p, x, n), params),
        "matmuls-only": (lambda p, x, n: matmul_bound(p, x), params),
    }


def torch_calls(torch, kind, xs, lengths, hidden):
    """PyTorch with packed sequences: ``(forward, forward_backward)``
    zero-argument callables that wait for the device."""
    torch.manual_seed(0)
    # On a GPU this is cuDNN's fused LSTM/GRU, the reference to beat there.
    device = "cuda" if torch.cuda.is_available() else "cpu"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    module = (torch.nn.LSTM if kind == "lstm" else torch.nn.GRU)(
        xs.shape[-1], hidden, batch_first=True
    ).to(device)
    x = torch.from_numpy(np.array(xs)).to(device)  # a writable copy
    n = torch.from_numpy(np.array(lengths)).to(torch.int64)  # stays on the CPU

    def forward():
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            x, n, batch_first=True, enforce_sorted=False
        )
        out, _ = module(packed)
        return torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True)[0]

    def backward():
        module.zero_grad()
        (forward() ** 2).sum().backward()

    def forward_call():
        with torch.no_grad():
            forward()
        sync()

    def backward_call():
        backward()
        sync()

    return forward_call, backward_call


def cell_flops(kind, batch, steps, inputs, hidden):
    """FLOPs of the dense matmuls (input and recurrent projections):
    ``(forward, forward_backward)``. The backward pass computes both weight
    gradients (the forward's FLOPs again) and the gradient through the
    recurrent matmul, not the inputs' gradient (the benchmark differentiates
    with respect to the parameters only)."""
    gates = 4 if kind == "lstm" else 3
    forward = 2.0 * batch * steps * (inputs + hidden) * gates * hidden
    recurrent = 2.0 * batch * steps * hidden * gates * hidden
    return forward, 2 * forward + recurrent


def check_same_outputs(forward):
    """The seqmask variants and the hand-written scan compute the same layer
    (same parameters), so their times compare like with like."""
    _, reference = forward["seqmask"]()
    for name in ("seqmask-hoisted", "seqmask-step", "lax.scan"):
        _, ys = forward[name]()
        if not np.allclose(ys, reference, rtol=1e-4, atol=1e-5):
            error = float(jnp.max(jnp.abs(ys - reference)))
            raise AssertionError(f"{name} differs from seqmask by {error:.2e}")


def measure(kind, batch, steps, inputs, hidden, repeats, rate, torch=None):
    """Rows for every variant at one shape; steady-state times round-robin."""
    rng = np.random.default_rng(0)
    xs = jnp.asarray(rng.normal(size=(batch, steps, inputs)), jnp.float32)
    lengths = jnp.asarray(rng.integers(steps // 2, steps + 1, size=batch), jnp.int32)
    flops, flops_bwd = cell_flops(kind, batch, steps, inputs, hidden)
    floor_fwd, floor_bwd = flops / rate, flops_bwd / rate
    jax_fns = jax_variants(kind, batch, steps, inputs, hidden)
    cases, compile_s, forward = {}, {}, {}
    for name, (fn, params) in jax_fns.items():

        def loss(p, x, n, fn=fn):
            carry, ys = fn(p, x, n)
            return jnp.sum(ys**2) + jnp.sum(jax.tree.leaves(carry)[0])

        for mode, jitted in (("fwd", jax.jit(fn)), ("bwd", jax.jit(jax.grad(loss)))):
            # Tracing, lowering and compiling only; no execution.
            start = time.perf_counter()
            compiled = jitted.lower(params, xs, lengths).compile()
            compile_s[name, mode] = time.perf_counter() - start
            cases[name, mode] = lambda f=compiled, p=params: jax.block_until_ready(
                f(p, xs, lengths)
            )
            if mode == "fwd":
                forward[name] = lambda f=compiled, p=params: f(p, xs, lengths)
    check_same_outputs(forward)
    if torch is not None:
        calls = torch_calls(torch, kind, xs, lengths, hidden)
        cases["torch", "fwd"], cases["torch", "bwd"] = calls
        compile_s["torch", "fwd"] = compile_s["torch", "bwd"] = 0.0
    medians = round_robin(cases, repeats)
    rows = []
    for name in dict.fromkeys(name for name, _ in cases):
        fwd, bwd = medians[name, "fwd"], medians[name, "bwd"]
        rows.append(
            dict(
                kind=kind,
                variant=name,
                batch=batch,
                time=steps,
                input=inputs,
                hidden=hidden,
                forward_ms=fwd * 1e3,
                forward_backward_ms=bwd * 1e3,
                compile_forward_s=compile_s[name, "fwd"],
                compile_forward_backward_s=compile_s[name, "bwd"],
                forward_vs_floor=fwd / floor_fwd,
                forward_backward_vs_floor=bwd / floor_bwd,
            )
        )
    return rows


def memory_rows(batch, steps, inputs, hidden, chunk):
    """Compiled temporary memory of LSTM forward+backward, per remat setting."""
    cell = seqmask.cells.lstm(hidden)
    params = cell.init(jax.random.key(0), inputs)
    xs = jax.ShapeDtypeStruct((batch, steps, inputs), jnp.float32)
    lengths = jax.ShapeDtypeStruct((batch,), jnp.int32)
    rows = []
    for remat in (False, True, chunk):

        def loss(p, x, n, remat=remat):
            _, ys = seqmask.rnn(cell, p, x, lengths=n, remat=remat)
            return jnp.sum(ys**2)

        compiled = jax.jit(jax.grad(loss)).lower(params, xs, lengths).compile()
        analysis = compiled.memory_analysis()
        temp = getattr(analysis, "temp_size_in_bytes", float("nan"))
        rows.append(dict(remat=str(remat), time=steps, temp_mib=temp / 2**20))
    return rows


def remat_times(batch, steps, inputs, hidden, chunk, repeats):
    """LSTM forward+backward time per remat setting (what the memory costs)."""
    cell = seqmask.cells.lstm(hidden)
    params = cell.init(jax.random.key(0), inputs)
    rng = np.random.default_rng(0)
    xs = jnp.asarray(rng.normal(size=(batch, steps, inputs)), jnp.float32)
    lengths = jnp.asarray(rng.integers(steps // 2, steps + 1, size=batch), jnp.int32)
    cases = {}
    for remat in (False, True, chunk):

        def loss(p, x, n, remat=remat):
            _, ys = seqmask.rnn(cell, p, x, lengths=n, remat=remat)
            return jnp.sum(ys**2)

        grad = jax.jit(jax.grad(loss))
        cases[str(remat)] = lambda g=grad: jax.block_until_ready(g(params, xs, lengths))
    medians = round_robin(cases, repeats)
    base = medians["False"]
    return [
        dict(remat=k, time=steps, forward_backward_ms=v * 1e3, vs_plain=v / base)
        for k, v in medians.items()
    ]


def table(rows, title):
    print(f"\n{title}; {RATIO} (the floor's time)\n")
    print(
        "| cell | variant | T | H | fwd ms | fwd+bwd ms | fwd x floor "
        "| fwd+bwd x floor | compile fwd s | compile fwd+bwd s |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['kind']} | {r['variant']} | {r['time']} | {r['hidden']} "
            f"| {r['forward_ms']:.2f} | {r['forward_backward_ms']:.2f} "
            f"| {r['forward_vs_floor']:.2f} | {r['forward_backward_vs_floor']:.2f} "
            f"| {r['compile_forward_s']:.2f} | {r['compile_forward_backward_s']:.2f} |"
        )


def ratios(rows):
    """seqmask's time over Flax's, the masking overhead and seqmask's time
    over the floor and the matmul bound, per shape and cell."""
    out = []
    keys = sorted({(r["kind"], r["time"], r["hidden"]) for r in rows})
    for kind, steps, hidden in keys:
        group = {
            r["variant"]: r
            for r in rows
            if (r["kind"], r["time"], r["hidden"]) == (kind, steps, hidden)
        }
        sm = group["seqmask"]["forward_backward_ms"]
        out.append(
            dict(
                kind=kind,
                time=steps,
                hidden=hidden,
                seqmask_over_flax=sm / group["flax"]["forward_backward_ms"],
                masking_overhead=sm / group["seqmask-unmasked"]["forward_backward_ms"]
                - 1,
                seqmask_vs_floor=group["seqmask"]["forward_backward_vs_floor"],
                seqmask_vs_matmuls_only=sm
                / group["matmuls-only"]["forward_backward_ms"],
            )
        )
    return out


def plot(rows, path):
    plt = pyplot()
    if plt is None:
        return
    kinds = sorted({r["kind"] for r in rows})
    fig, axes = plt.subplots(1, len(kinds), figsize=(6 * len(kinds), 4), squeeze=False)
    for ax, kind in zip(axes[0], kinds, strict=True):
        group = [r for r in rows if r["kind"] == kind]
        shapes = sorted({(r["time"], r["hidden"]) for r in group})
        labels = [f"T={t}\nH={h}" for t, h in shapes]
        variants = sorted({r["variant"] for r in group})
        width = 0.8 / len(variants)
        for index, variant in enumerate(variants):
            values = [
                next(
                    (
                        r["forward_backward_vs_floor"]
                        for r in group
                        if r["variant"] == variant and (r["time"], r["hidden"]) == s
                    ),
                    np.nan,
                )
                for s in shapes
            ]
            ax.bar(np.arange(len(shapes)) + index * width, values, width, label=variant)
        ax.set_xticks(np.arange(len(shapes)) + 0.4 - width / 2, labels)
        ax.set_ylabel("fwd+bwd time / floor (lower is better)")
        ax.set_title(f"masked {kind.upper()} layer")
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def main() -> None:
    options = parser(__doc__, repeats=15)
    options.add_argument("--batch", type=int, default=64)
    options.add_argument("--time", type=int, default=128)
    options.add_argument("--input", type=int, default=128)
    options.add_argument("--hidden", type=int, default=256)
    options.add_argument("--cells", default="lstm,gru")
    options.add_argument("--sweep", action="store_true", help="sweep T and H")
    options.add_argument(
        "--sweep-time", default="32,512", help="the T values of --sweep (comma list)"
    )
    options.add_argument(
        "--sweep-hidden", default="64,1024", help="the H values of --sweep"
    )
    options.add_argument("--memory", action="store_true", help="remat memory table")
    options.add_argument("--no-torch", action="store_true", help="skip PyTorch")
    args = options.parse_args()
    if args.quick:
        args.batch, args.time, args.input, args.hidden, args.repeats = 8, 16, 8, 16, 3
    kinds = args.cells.split(",")

    rate = best_matmul_flops(
        [
            (1024, 1024, 1024),
            (args.batch * args.time, args.input, 4 * args.hidden),
            (args.batch, args.hidden, 4 * args.hidden),
        ],
        repeats=max(args.repeats, 20),
    )
    print(
        f"jax {jax.__version__} on {jax.devices()[0].platform} "
        f"({platform.machine()}), best float32 matmul {rate / 1e9:.1f} GFLOP/s, "
        f"median of {args.repeats}"
    )
    shapes = [(args.time, args.hidden)]
    if args.sweep:
        sweep_time = [int(t) for t in args.sweep_time.split(",")]
        sweep_hidden = [int(h) for h in args.sweep_hidden.split(",")]
        shapes += [(t, args.hidden) for t in sweep_time if t != args.time]
        shapes += [(args.time, h) for h in sweep_hidden if h != args.hidden]
    torch = torch_or_none(not args.no_torch)
    rows = []
    for kind in kinds:
        for steps, hidden in shapes:
            rows += measure(
                kind,
                args.batch,
                steps,
                args.input,
                hidden,
                args.repeats,
                rate,
                torch=torch,
            )
    table(rows, f"Masked layers, B={args.batch} I={args.input}")
    summary = ratios(rows)
    print(
        f"\nSummary, forward+backward; {RATIO}; masking overhead = masked / "
        "unmasked seqmask - 1\n"
    )
    print(
        "| cell | T | H | seqmask / Flax | masking overhead "
        "| seqmask / floor | seqmask / matmuls-only |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for s in summary:
        print(
            f"| {s['kind']} | {s['time']} | {s['hidden']} "
            f"| {s['seqmask_over_flax']:.2f} | {s['masking_overhead']:+.1%} "
            f"| {s['seqmask_vs_floor']:.2f} | {s['seqmask_vs_matmuls_only']:.2f} |"
        )
    memory, remat = [], []
    if args.memory:
        long_t = 256 if args.quick else 4096
        memory = memory_rows(args.batch, long_t, args.input, args.hidden, chunk=64)
        print(f"\nLSTM fwd+bwd compiled temporary memory, T={long_t}\n")
        print("| remat | temp MiB |")
        print("|---|---:|")
        for m in memory:
            print(f"| {m['remat']} | {m['temp_mib']:.1f} |")
        remat = remat_times(
            args.batch, args.time, args.input, args.hidden, 16, args.repeats
        )
        print(f"\nLSTM fwd+bwd time per remat setting, T={args.time}\n")
        print(f"({RATIO})\n")
        print("| remat | fwd+bwd ms | time / remat=False |")
        print("|---|---:|---:|")
        for m in remat:
            ms, ratio = m["forward_backward_ms"], m["vs_plain"]
            print(f"| {m['remat']} | {ms:.1f} | {ratio:.2f} |")
    stem = "rnn-sweep" if args.sweep else "rnn"
    record = dict(
        **environment(),
        benchmark="rnn",
        torch=None if torch is None else torch.__version__,
        matmul_gflops=rate / 1e9,
        repeats=args.repeats,
        rows=rows,
        summary=summary,
        memory=memory,
        remat_times=remat,
    )
    path = write_record(record, args.out, stem, args.quick)
    plot(rows, path.with_suffix(".png"))


if __name__ == "__main__":
    main()
