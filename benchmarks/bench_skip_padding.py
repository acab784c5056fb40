"""What ``skip_padding`` saves, and what it costs when there is nothing to skip.

One masked LSTM layer, forward+backward (``jax.grad`` of a loss over every
output), at a fixed padded shape ``[B, T]``, for batches whose longest row
covers all of ``T`` ("full": lengths from ``T/2`` to ``T``, one row of ``T``),
half of it, a quarter of it, and none (an all-padding batch). Each
``skip_padding`` setting (``False``, the default, ``True`` and a few chunk
lengths) is timed at every occupancy in one round-robin, so load that comes
and goes hits them alike; every time is reported as a ratio to
``skip_padding=False`` at full occupancy in the same run. The
targets: at a quarter the time is at most 0.4 of the full-occupancy time
without skipping, and at full occupancy skipping costs at most 5%.

Before timing, every setting is checked to give the values and gradients
of ``skip_padding=False`` at every occupancy.

``--alternatives`` also times the designs that were not adopted (see
``benchmarks/README.md``) and what chunking alone costs:

- ``remat-16``: ``skip_padding=False`` with checkpointed chunks of 16 steps
  (``remat=16``), the recomputation without the skipping;
- ``remat-16-skip``: ``remat=16`` with ``skip_padding=16``: each
  checkpointed chunk holds the ``lax.cond`` that skips it (the design of
  ``skip_padding`` before its hand-written backward pass, and what it still
  does with ``remat`` an int);
- ``chunks``: the same layer as ``seqmask.rnn`` calls on chunks of 16 steps
  inside a ``lax.scan``, with no ``cond`` and no checkpoint, so nothing is
  skipped or recomputed;
- ``checkpoint-in-cond``: those chunks each checkpointed inside the
  ``lax.cond`` that skips it (``remat-16-skip`` puts the checkpoint around
  the ``cond``, which keeps the weights out of the loop's residuals);
- ``unrolled``: the same over 8 chunks in a Python loop (straight code, no
  outer scan); ``unrolled-cond``: that loop with a ``lax.cond`` that skips
  each chunk without a valid step (not checkpointed);
- ``whole-cond``: a ``lax.cond`` over the whole sequence that runs the plain
  scan when every chunk of 16 steps has a valid step and
  ``skip_padding=True`` otherwise; ``whole-cond-dots``: the same with the
  plain branch keeping only its matmul outputs for the backward pass
  (``jax.checkpoint_policies.dots_saveable``).

  python benchmarks/bench_skip_padding.py            # B=64 T=128 I=128 H=256
  python benchmarks/bench_skip_padding.py --quick    # small smoke run
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from _common import (
    RATIO,
    compile_timed,
    environment,
    parser,
    round_robin,
    write_record,
)

import seqmask

OCCUPANCIES = {"full": 1.0, "half": 0.5, "quarter": 0.25, "none": 0.0}
ALTERNATIVES = (
    "remat-16",
    "remat-16-skip",
    "chunks",
    "checkpoint-in-cond",
    "unrolled",
    "unrolled-cond",
    "whole-cond",
    "whole-cond-dots",
)
UNROLLED_CHUNKS = 8
CHUNK = 16


def run_layer(cell, params, xs, lengths, skip):
    """``seqmask.rnn`` with ``skip_padding=skip``, or one of ``ALTERNATIVES``."""
    if skip not in ALTERNATIVES:
        return seqmask.rnn(cell, params, xs, lengths=lengths, skip_padding=skip)
    steps = xs.shape[1]
    if skip == "remat-16":
        return seqmask.rnn(cell, params, xs, lengths=lengths, remat=CHUNK)
    if skip == "remat-16-skip":
        return seqmask.rnn(
            cell, params, xs, lengths=lengths, remat=CHUNK, skip_padding=CHUNK
        )
    if skip in ("chunks", "checkpoint-in-cond"):
        return run_in_chunks(cell, params, xs, lengths, skip == "checkpoint-in-cond")
    if skip.startswith("unrolled"):
        return run_unrolled(cell, params, xs, lengths, skip == "unrolled-cond")

    def plain(params, xs, lengths):
        return seqmask.rnn(cell, params, xs, lengths=lengths)

    def skipping(params, xs, lengths):
        return seqmask.rnn(cell, params, xs, lengths=lengths, skip_padding=True)

    if skip == "whole-cond-dots":
        plain = jax.checkpoint(plain, policy=jax.checkpoint_policies.dots_saveable)
    starts = jnp.arange(0, steps, CHUNK)
    # Chunk k has a valid step when some row is longer than its first step.
    every_chunk = jnp.all(jnp.max(lengths) > starts)
    return jax.lax.cond(every_chunk, plain, skipping, params, xs, lengths)


def run_in_chunks(cell, params, xs, lengths, skip_empty: bool = False):
    """``seqmask.rnn`` over chunks of ``CHUNK`` steps, one ``lax.scan`` over
    the chunks threading the carry: nested scans and nothing else; with
    ``skip_empty``, each chunk a ``jax.checkpoint`` inside a ``lax.cond``
    that skips it when no row is valid (``skip_padding=True`` nests them the
    other way round)."""
    batch, steps = xs.shape[:2]
    count = steps // CHUNK
    assert count * CHUNK == steps, "--time must be a multiple of 16"
    mask = seqmask.masks.lengths_to_mask(lengths, steps)
    chunks = (
        xs.reshape(batch, count, CHUNK, -1).swapaxes(0, 1),
        mask.reshape(batch, count, CHUNK).swapaxes(0, 1),
    )

    def one(carry, chunk):
        return seqmask.rnn(cell, params, chunk[0], mask=chunk[1], initial_carry=carry)

    def skip(carry, chunk):
        return carry, jnp.zeros((batch, CHUNK, cell.hidden_size), xs.dtype)

    def one_or_skip(carry, chunk):
        return jax.lax.cond(jnp.any(chunk[1]), jax.checkpoint(one), skip, carry, chunk)

    carry = cell.initial_carry(params, (batch,))
    carry, ys = jax.lax.scan(one_or_skip if skip_empty else one, carry, chunks)
    return carry, ys.swapaxes(0, 1).reshape(batch, steps, -1)


def run_unrolled(cell, params, xs, lengths, skip_empty: bool):
    """``seqmask.rnn`` over ``UNROLLED_CHUNKS`` chunks in a Python loop, each
    chunk skipped by ``lax.cond`` when ``skip_empty`` and no row is valid."""
    batch, steps = xs.shape[:2]
    size = steps // UNROLLED_CHUNKS
    assert size * UNROLLED_CHUNKS == steps, "--time must be a multiple of 8"
    mask = seqmask.masks.lengths_to_mask(lengths, steps)

    def run(carry, x, m):
        return seqmask.rnn(cell, params, x, mask=m, initial_carry=carry)

    def skip(carry, x, m):
        return carry, jnp.zeros((batch, size, cell.hidden_size), x.dtype)

    carry, outputs = cell.initial_carry(params, (batch,)), []
    for start in range(0, steps, size):
        x, m = xs[:, start : start + size], mask[:, start : start + size]
        if skip_empty:
            carry, ys = jax.lax.cond(jnp.any(m), run, skip, carry, x, m)
        else:
            carry, ys = run(carry, x, m)
        outputs.append(ys)
    return carry, jnp.concatenate(outputs, axis=1)


def lengths_for(rng, batch: int, steps: int, occupancy: float) -> np.ndarray:
    """Lengths whose maximum is ``occupancy * steps``, the rest from half of
    it up."""
    longest = int(round(occupancy * steps))
    lengths = rng.integers(longest // 2, longest + 1, size=batch)
    lengths[0] = longest
    return lengths.astype(np.int32)


def main() -> None:
    options = parser(__doc__, repeats=11)
    options.add_argument("--batch", type=int, default=64)
    options.add_argument("--time", type=int, default=128)
    options.add_argument("--input", type=int, default=128)
    options.add_argument("--hidden", type=int, default=256)
    options.add_argument(
        "--chunks",
        type=int,
        nargs="*",
        default=[8, 32],
        help="explicit chunk lengths timed besides False and True",
    )
    options.add_argument(
        "--alternatives",
        action="store_true",
        help="also time the designs that were not adopted",
    )
    args = options.parse_args()
    if args.quick:
        args.batch, args.time, args.input, args.hidden = 8, 32, 8, 16
        args.repeats, args.chunks = 3, [8]

    cell = seqmask.cells.lstm(args.hidden)
    params = cell.init(jax.random.key(0), args.input)
    rng = np.random.default_rng(0)
    xs = jnp.asarray(rng.normal(size=(args.batch, args.time, args.input)), jnp.float32)
    lengths = {
        name: jnp.asarray(lengths_for(rng, args.batch, args.time, occupancy))
        for name, occupancy in OCCUPANCIES.items()
    }
    settings = [False, True, *args.chunks]
    if args.alternatives:
        settings += list(ALTERNATIVES)

    def grad_for(skip):
        def loss(params, xs, lengths):
            carry, ys = run_layer(cell, params, xs, lengths, skip)
            return jnp.sum(ys**2) + jnp.sum(carry.c)

        return jax.value_and_grad(loss)

    compiled, compile_s = {}, {}
    for skip in settings:
        compiled[skip], compile_s[str(skip)] = compile_timed(
            grad_for(skip), params, xs, lengths["full"]
        )
    # The same values and gradients as no skipping, at every occupancy.
    for name, n in lengths.items():
        want = compiled[False](params, xs, n)
        for skip in settings[1:]:
            got = compiled[skip](params, xs, n)
            for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
                np.testing.assert_allclose(
                    a, b, rtol=1e-4, atol=1e-5, err_msg=f"{skip}, {name}"
                )

    cases = {
        (skip, name): (
            lambda f=compiled[skip], n=n: jax.block_until_ready(f(params, xs, n))
        )
        for skip in settings
        for name, n in lengths.items()
    }
    seconds = round_robin(cases, args.repeats)
    base = seconds[False, "full"]
    rows = [
        {
            "skip_padding": str(skip),
            "occupancy": name,
            "longest": int(lengths[name].max()),
            "forward_backward_ms": seconds[skip, name] * 1e3,
            "vs_no_skip_full": seconds[skip, name] / base,
        }
        for skip in settings
        for name in lengths
    ]
    print(
        f"\nskip_padding, LSTM B={args.batch} T={args.time} I={args.input} "
        f"H={args.hidden}, forward+backward, median of {args.repeats} "
        f"(round-robin); {RATIO}; baseline: skip_padding=False at full occupancy\n"
    )
    print(
        "| skip_padding | " + " | ".join(f"{n} ms | {n} / base" for n in lengths) + " |"
    )
    print("|---|" + "---:|---:|" * len(lengths))
    for skip in settings:
        cells = [
            f"{seconds[skip, n] * 1e3:.1f} | {seconds[skip, n] / base:.2f}"
            for n in lengths
        ]
        print(f"| {skip} | " + " | ".join(cells) + " |")
    default = seconds[True, "quarter"] / base, seconds[True, "full"] / base - 1
    print(
        f"\nskip_padding=True: quarter / full = {default[0]:.2f} (target <= 0.4), "
        f"overhead at full occupancy = {100 * default[1]:+.1f}% (target <= 5%)"
    )
    record = {
        **environment(),
        "benchmark": "skip_padding",
        "shape": {
            "batch": args.batch,
            "time": args.time,
            "input": args.input,
            "hidden": args.hidden,
        },
        "repeats": args.repeats,
        "compile_s": compile_s,
        "rows": rows,
        "quarter_over_full": default[0],
        "overhead_at_full": default[1],
    }
    write_record(record, args.out, "skip_padding", args.quick)


if __name__ == "__main__":
    main()
