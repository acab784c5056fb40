"""Masked LSTM/GRU layer: seqmask vs a hand-written lax.scan, same run.

Measures, under ``jax.jit``, forward and forward+backward of one recurrent
layer at a fixed shape:

* ``seqmask`` - ``seqmask.rnn`` with a mask (input projection hoisted);
* ``seqmask-unmasked`` - the same without a mask (the masking overhead);
* ``seqmask-step`` - the same cell with the projection inside the scan
  (``project_inputs`` removed), to measure what hoisting gives;
* ``lax.scan`` - a plain hand-written scan of the same cell math with the
  mask applied by ``jnp.where`` after each step (the usual baseline).

Compile time and steady-state time are reported apart; steady state is the
median of ``--repeats`` timed calls. Prints a Markdown table and writes a JSON
record to ``benchmarks/results/rnn.json``.

  python benchmarks/bench_rnn.py            # B=64 T=128 I=128 H=256
  python benchmarks/bench_rnn.py --quick    # small smoke run
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
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return compile_s, statistics.median(times)


def plain_lstm_scan(params, xs, mask):
    """The baseline: lax.scan, projection inside, where() after the step."""
    hidden = params["recurrent_kernel"].shape[0]
    xs_tm = jnp.swapaxes(xs, 0, 1)
    mask_tm = jnp.swapaxes(mask, 0, 1)[..., None]

    def step(carry, inputs):
        h, c = carry
        x, m = inputs
        z = x @ params["input_kernel"] + h @ params["recurrent_kernel"] + params["bias"]
        i, f, g, o = jnp.split(z, 4, axis=-1)
        new_c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        new_h = jax.nn.sigmoid(o) * jnp.tanh(new_c)
        h = jnp.where(m, new_h, h)
        c = jnp.where(m, new_c, c)
        return (h, c), jnp.where(m, new_h, 0.0)

    zeros = jnp.zeros((xs.shape[0], hidden), xs.dtype)
    (h, _), ys = jax.lax.scan(step, (zeros, zeros), (xs_tm, mask_tm))
    return h, jnp.swapaxes(ys, 0, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--time", type=int, default=128)
    parser.add_argument("--input", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    if args.quick:
        args.batch, args.time, args.input, args.hidden, args.repeats = 8, 16, 8, 16, 3

    rng = np.random.default_rng(0)
    xs = jnp.asarray(rng.normal(size=(args.batch, args.time, args.input)), jnp.float32)
    lengths = rng.integers(args.time // 2, args.time + 1, size=args.batch)
    mask = jnp.asarray(np.arange(args.time) < lengths[:, None])
    cell = seqmask.cells.lstm(args.hidden)
    params = cell.init(jax.random.key(0), args.input)
    step_only = cell._replace(project_inputs=None, apply_projected=None)

    variants = {
        "seqmask": lambda p, x, m: seqmask.rnn(cell, p, x, mask=m),
        "seqmask-unmasked": lambda p, x, m: seqmask.rnn(cell, p, x),
        "seqmask-step": lambda p, x, m: seqmask.rnn(step_only, p, x, mask=m),
        "lax.scan": plain_lstm_scan,
    }
    rows = []
    for name, fn in variants.items():

        def loss(p, x, m, fn=fn):
            carry, ys = fn(p, x, m)
            return jnp.sum(ys**2) + jnp.sum(jax.tree.leaves(carry)[0])

        forward = jax.jit(fn)
        backward = jax.jit(jax.grad(loss))
        fwd_compile, fwd_time = timed(forward, params, xs, mask, repeats=args.repeats)
        bwd_compile, bwd_time = timed(backward, params, xs, mask, repeats=args.repeats)
        rows.append(
            {
                "variant": name,
                "forward_ms": fwd_time * 1e3,
                "forward_backward_ms": bwd_time * 1e3,
                "compile_forward_s": fwd_compile,
                "compile_forward_backward_s": bwd_compile,
            }
        )
    base = next(r for r in rows if r["variant"] == "lax.scan")
    print(
        f"\nLSTM layer B={args.batch} T={args.time} I={args.input} H={args.hidden}, "
        f"jax {jax.__version__} on {jax.devices()[0].platform}, "
        f"median of {args.repeats}\n"
    )
    print(
        "| variant | fwd ms | fwd+bwd ms | fwd+bwd vs lax.scan | compile fwd s "
        "| compile fwd+bwd s |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        ratio = r["forward_backward_ms"] / base["forward_backward_ms"]
        print(
            f"| {r['variant']} | {r['forward_ms']:.2f} | {r['forward_backward_ms']:.2f} "
            f"| {ratio:.2f}x | {r['compile_forward_s']:.2f} "
            f"| {r['compile_forward_backward_s']:.2f} |"
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": "rnn",
        "shape": {
            "batch": args.batch,
            "time": args.time,
            "input": args.input,
            "hidden": args.hidden,
        },
        "repeats": args.repeats,
        "jax": jax.__version__,
        "device": str(jax.devices()[0]),
        "machine": platform.machine(),
        "rows": rows,
    }
    name = "rnn-quick.json" if args.quick else "rnn.json"
    (out / name).write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
