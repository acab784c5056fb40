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
* ``torch`` - PyTorch ``nn.LSTM`` / ``nn.GRU`` over packed sequences, when
  torch is installed (``pip install torch==2.13.0``; skipped otherwise).

The floor is the FLOPs of the dense cell math (the input and recurrent
matmuls; forward+backward counts three times the forward) divided by the best
matmul rate measured in the same run; every time is also given as a ratio to
it. Compile time and steady-state time (median of ``--repeats``) are reported
apart. ``--sweep`` adds sweeps over T and H; ``--memory`` reports the
compiled temporary memory of forward+backward at long T with and without
``remat``. Prints Markdown tables, writes ``benchmarks/results/rnn.json`` and,
when matplotlib is installed, ``rnn.png``.

  python benchmarks/bench_rnn.py                 # B=64 T=128 I=128 H=256
  python benchmarks/bench_rnn.py --sweep --memory
  python benchmarks/bench_rnn.py --quick         # small smoke run
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import seqmask


def timed(fn, *args, repeats: int):
    """(compile seconds, median steady-state seconds)."""
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return compile_s, statistics.median(times)


def best_matmul_flops(shapes, repeats: int) -> float:
    """The best FLOP/s of jitted float32 matmuls over the given (m, k, n)."""
    best = 0.0
    for m, k, n in shapes:
        a = jnp.ones((m, k), jnp.float32)
        b = jnp.ones((k, n), jnp.float32)
        _, seconds = timed(jax.jit(jnp.matmul), a, b, repeats=repeats)
        best = max(best, 2.0 * m * k * n / seconds)
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
    }


def torch_times(kind, xs, lengths, hidden, repeats):
    """PyTorch with packed sequences, or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(0)
    # On a GPU this is cuDNN's fused LSTM/GRU, the reference to beat there.
    device = "cuda" if torch.cuda.is_available() else "cpu"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    module = (torch.nn.LSTM if kind == "lstm" else torch.nn.GRU)(
        xs.shape[-1], hidden, batch_first=True
    ).to(device)
    x = torch.from_numpy(np.asarray(xs)).to(device)
    n = torch.from_numpy(np.asarray(lengths)).to(torch.int64)  # lengths stay on CPU

    def forward():
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            x, n, batch_first=True, enforce_sorted=False
        )
        out, _ = module(packed)
        return torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True)[0]

    def backward():
        module.zero_grad()
        (forward() ** 2).sum().backward()

    results = []
    for fn in (forward, backward):
        with torch.set_grad_enabled(fn is backward):
            fn()
            sync()
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                fn()
                sync()
                times.append(time.perf_counter() - start)
        results.append(statistics.median(times))
    return results


def cell_flops(kind, batch, steps, inputs, hidden):
    """Forward FLOPs of the dense matmuls (input and recurrent projections)."""
    gates = 4 if kind == "lstm" else 3
    return 2.0 * batch * steps * (inputs + hidden) * gates * hidden


def measure(kind, batch, steps, inputs, hidden, repeats, rate, with_torch=True):
    rng = np.random.default_rng(0)
    xs = jnp.asarray(rng.normal(size=(batch, steps, inputs)), jnp.float32)
    lengths = jnp.asarray(rng.integers(steps // 2, steps + 1, size=batch), jnp.int32)
    flops = cell_flops(kind, batch, steps, inputs, hidden)
    floor_fwd, floor_bwd = flops / rate, 3 * flops / rate
    rows = []
    for name, (fn, params) in jax_variants(kind, batch, steps, inputs, hidden).items():

        def loss(p, x, n, fn=fn):
            carry, ys = fn(p, x, n)
            return jnp.sum(ys**2) + jnp.sum(jax.tree.leaves(carry)[0])

        fwd_compile, fwd = timed(jax.jit(fn), params, xs, lengths, repeats=repeats)
        bwd_compile, bwd = timed(
            jax.jit(jax.grad(loss)), params, xs, lengths, repeats=repeats
        )
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
                compile_forward_s=fwd_compile,
                compile_forward_backward_s=bwd_compile,
                forward_vs_floor=fwd / floor_fwd,
                forward_backward_vs_floor=bwd / floor_bwd,
            )
        )
    if with_torch:
        torch_result = torch_times(kind, xs, lengths, hidden, repeats)
        if torch_result is not None:
            fwd, bwd = torch_result
            rows.append(
                dict(
                    kind=kind,
                    variant="torch",
                    batch=batch,
                    time=steps,
                    input=inputs,
                    hidden=hidden,
                    forward_ms=fwd * 1e3,
                    forward_backward_ms=bwd * 1e3,
                    compile_forward_s=0.0,
                    compile_forward_backward_s=0.0,
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


def table(rows, title):
    print(f"\n{title}\n")
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
    """seqmask's speed-up over Flax and masking overhead, per shape and cell."""
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
                flax_over_seqmask=group["flax"]["forward_backward_ms"] / sm,
                masking_overhead=sm / group["seqmask-unmasked"]["forward_backward_ms"]
                - 1,
                seqmask_vs_floor=group["seqmask"]["forward_backward_vs_floor"],
            )
        )
    return out


def plot(rows, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib not installed: no plot)")
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
    fig.savefig(path, dpi=120)
    print(f"plot: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--time", type=int, default=128)
    parser.add_argument("--input", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--cells", default="lstm,gru")
    parser.add_argument("--sweep", action="store_true", help="sweep T and H")
    parser.add_argument("--memory", action="store_true", help="remat memory table")
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch")
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    if args.quick:
        args.batch, args.time, args.input, args.hidden, args.repeats = 8, 16, 8, 16, 3
    kinds = args.cells.split(",")

    rate = best_matmul_flops(
        [
            (1024, 1024, 1024),
            (args.batch * args.time, args.input, 4 * args.hidden),
            (args.batch, args.hidden, 4 * args.hidden),
        ],
        repeats=max(args.repeats, 5),
    )
    print(
        f"jax {jax.__version__} on {jax.devices()[0].platform} "
        f"({platform.machine()}), best float32 matmul {rate / 1e9:.1f} GFLOP/s, "
        f"median of {args.repeats}"
    )
    shapes = [(args.time, args.hidden)]
    if args.sweep:
        shapes += [(t, args.hidden) for t in (32, 512) if t != args.time]
        shapes += [(args.time, h) for h in (64, 1024) if h != args.hidden]
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
                with_torch=not args.no_torch,
            )
    table(rows, f"Masked layers, B={args.batch} I={args.input}")
    summary = ratios(rows)
    print("\n| cell | T | H | Flax / seqmask (fwd+bwd) | masking overhead | x floor |")
    print("|---|---:|---:|---:|---:|---:|")
    for s in summary:
        print(
            f"| {s['kind']} | {s['time']} | {s['hidden']} "
            f"| {s['flax_over_seqmask']:.2f}x | {s['masking_overhead']:+.1%} "
            f"| {s['seqmask_vs_floor']:.2f} |"
        )
    memory = []
    if args.memory:
        long_t = 256 if args.quick else 4096
        memory = memory_rows(args.batch, long_t, args.input, args.hidden, chunk=64)
        print(f"\nLSTM fwd+bwd compiled temporary memory, T={long_t}\n")
        print("| remat | temp MiB |")
        print("|---|---:|")
        for m in memory:
            print(f"| {m['remat']} | {m['temp_mib']:.1f} |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "rnn-quick" if args.quick else "rnn"
    record = dict(
        benchmark="rnn",
        jax=jax.__version__,
        device=str(jax.devices()[0]),
        machine=platform.machine(),
        matmul_gflops=rate / 1e9,
        repeats=args.repeats,
        rows=rows,
        summary=summary,
        memory=memory,
    )
    (out / f"{stem}.json").write_text(json.dumps(record, indent=2))
    plot(rows, out / f"{stem}.png")


if __name__ == "__main__":
    main()
