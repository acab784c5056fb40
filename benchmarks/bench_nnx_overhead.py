"""What the NNX module layer costs over calling the pure core directly.

One masked LSTM layer at a fixed shape, forward and forward+backward, three
ways:

* ``pure jax.jit`` - ``seqmask.rnn(cell, params, xs, mask=mask)`` under
  ``jax.jit`` (the baseline);
* ``nnx.jit`` - ``seqmask.nnx.RNN`` called through ``nnx.jit`` (and
  ``nnx.grad`` for the backward pass), the usual NNX training-loop style;
* ``nnx.split + jax.jit`` - the module's state split off once and a pure
  function of it (``nnx.merge`` inside) under ``jax.jit`` / ``jax.grad``.

All three use the same parameters and inputs, so they compile the same
computation; what differs is tracing and per-call Python work (graph
traversal in ``nnx.jit``). Compile time (first call) and steady-state time
(median of ``--repeats`` calls, taken round-robin across the variants so that
load on a shared machine hits them alike) are reported apart, each with its
ratio to the baseline measured in the same run. Prints a Markdown table and
writes a JSON record to ``benchmarks/results/nnx_overhead.json``.

  python benchmarks/bench_nnx_overhead.py            # B=64 T=128 I=128 H=256
  python benchmarks/bench_nnx_overhead.py --quick    # small smoke run
"""

from __future__ import annotations

import time

import flax
import jax
import jax.numpy as jnp
import numpy as np
from _common import RATIO, environment, parser, round_robin, write_record
from flax import nnx

import seqmask
import seqmask.nnx


def loss_of(carry, ys):
    """A scalar that touches every output and the final hidden state."""
    return jnp.sum(ys**2) + jnp.sum(carry.h)


def build_variants(model: seqmask.nnx.RNN):
    """``{name: (forward, forward_backward, state)}``: callables of ``(state,
    xs, mask)`` where ``state`` is what the variant is called with."""
    cell, params = model.pure_cell, model.pure_params()

    def pure_forward(params, xs, mask):
        return seqmask.rnn(cell, params, xs, mask=mask)

    def pure_loss(params, xs, mask):
        return loss_of(*pure_forward(params, xs, mask))

    def module_loss(model, xs, mask):
        return loss_of(*model(xs, mask=mask))

    graphdef, state = nnx.split(model)

    def split_forward(state, xs, mask):
        return nnx.merge(graphdef, state)(xs, mask=mask)

    def split_loss(state, xs, mask):
        return loss_of(*split_forward(state, xs, mask))

    return {
        "pure jax.jit": (
            jax.jit(pure_forward),
            jax.jit(jax.grad(pure_loss)),
            params,
        ),
        "nnx.jit": (
            nnx.jit(lambda model, xs, mask: model(xs, mask=mask)),
            nnx.jit(lambda model, xs, mask: nnx.grad(module_loss)(model, xs, mask)),
            model,
        ),
        "nnx.split + jax.jit": (
            jax.jit(split_forward),
            jax.jit(jax.grad(split_loss)),
            state,
        ),
    }


def first_call(fn, *args) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - start


def main() -> None:
    options = parser(__doc__, repeats=15)
    options.add_argument("--batch", type=int, default=64)
    options.add_argument("--time", type=int, default=128)
    options.add_argument("--input", type=int, default=128)
    options.add_argument("--hidden", type=int, default=256)
    args = options.parse_args()
    if args.quick:
        args.batch, args.time, args.input, args.hidden, args.repeats = 8, 16, 8, 16, 5

    rng = np.random.default_rng(0)
    xs = jnp.asarray(rng.normal(size=(args.batch, args.time, args.input)), jnp.float32)
    lengths = rng.integers(args.time // 2, args.time + 1, size=args.batch)
    mask = jnp.asarray(np.arange(args.time) < lengths[:, None])
    model = seqmask.nnx.RNN(
        seqmask.cells.lstm(args.hidden),
        in_features=args.input,
        return_carry=True,
        rngs=nnx.Rngs(0),
    )
    variants = build_variants(model)

    calls = {
        (name, kind): (fn, state)
        for name, (forward, backward, state) in variants.items()
        for kind, fn in (("forward", forward), ("forward_backward", backward))
    }
    # Pay JAX's one-off start-up costs before any timing, so that they do not
    # land on whichever variant happens to go first.
    jax.block_until_ready(jax.jit(lambda x: jnp.tanh(x @ x.T))(xs[0]))
    # The first call traces, compiles and runs once.
    compile_s = {
        key: first_call(fn, state, xs, mask) for key, (fn, state) in calls.items()
    }
    # Every variant must compute the same thing before its time means anything.
    reference = variants["pure jax.jit"][0](variants["pure jax.jit"][2], xs, mask)
    for name, (forward, _, state) in variants.items():
        got = forward(state, xs, mask)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(reference), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5, err_msg=name)

    cases = {
        key: (lambda fn=fn, state=state: jax.block_until_ready(fn(state, xs, mask)))
        for key, (fn, state) in calls.items()
    }
    median_ms = {key: t * 1e3 for key, t in round_robin(cases, args.repeats).items()}

    base = "pure jax.jit"
    rows = []
    for name in variants:
        row = {"variant": name}
        for kind in ("forward", "forward_backward"):
            row[f"{kind}_ms"] = median_ms[name, kind]
            row[f"{kind}_ratio"] = median_ms[name, kind] / median_ms[base, kind]
            row[f"compile_{kind}_s"] = compile_s[name, kind]
            row[f"compile_{kind}_ratio"] = compile_s[name, kind] / compile_s[base, kind]
        rows.append(row)

    print(
        f"\nseqmask.nnx.RNN overhead, LSTM B={args.batch} T={args.time} "
        f"I={args.input} H={args.hidden}, jax {jax.__version__} on "
        f"{jax.devices()[0].platform}, median of {args.repeats} (round-robin); "
        f"{RATIO}\n"
    )
    print(
        "| variant | fwd ms | fwd / pure | fwd+bwd ms | fwd+bwd / pure "
        "| compile fwd s | compile / pure | compile fwd+bwd s | compile / pure |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['variant']} | {r['forward_ms']:.2f} | {r['forward_ratio']:.2f}x "
            f"| {r['forward_backward_ms']:.2f} | {r['forward_backward_ratio']:.2f}x "
            f"| {r['compile_forward_s']:.2f} | {r['compile_forward_ratio']:.2f}x "
            f"| {r['compile_forward_backward_s']:.2f} "
            f"| {r['compile_forward_backward_ratio']:.2f}x |"
        )
    record = {
        **environment(),
        "benchmark": "nnx_overhead",
        "shape": {
            "batch": args.batch,
            "time": args.time,
            "input": args.input,
            "hidden": args.hidden,
        },
        "cell": "lstm",
        "repeats": args.repeats,
        "flax": flax.__version__,
        "rows": rows,
    }
    write_record(record, args.out, "nnx_overhead", args.quick)


if __name__ == "__main__":
    main()
