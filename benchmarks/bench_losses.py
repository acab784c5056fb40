"""Weighted token cross-entropy: seqmask against optax, in the same run.

Times ``seqmask.losses.softmax_cross_entropy_with_integer_labels`` with
``[B, T]`` weights and ``reduction="weighted_mean"`` against the optax way of
writing the same loss (``optax.softmax_cross_entropy_with_integer_labels(...,
where=mask)`` followed by a masked mean), both under ``jax.jit``, for the
forward pass and for forward plus backward (``jax.value_and_grad`` with
respect to the logits). Compile time and steady-state median time are reported
apart, with the ratio seqmask / optax. The target is a ratio of at most 1.1.

The two do not compute in the same precision: seqmask computes the loss of
bfloat16 logits in float32 (its rule for half-precision inputs), optax in
the logits' bfloat16, so seqmask does the more careful arithmetic of the
two. Before timing, the two values are checked to agree to bfloat16
accuracy.

Usage::

    python benchmarks/bench_losses.py              # [64, 256, 32000] bfloat16
    python benchmarks/bench_losses.py --quick      # small smoke run
"""

import platform
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _common import RATIO, compile_timed, environment, parser, write_record

from seqmask import losses
from seqmask import weights as seq_weights


def seqmask_loss(logits: jax.Array, labels: jax.Array, weights: jax.Array):
    return losses.softmax_cross_entropy_with_integer_labels(
        logits, labels, weights, reduction="weighted_mean"
    )


def optax_loss(logits: jax.Array, labels: jax.Array, weights: jax.Array):
    mask = weights != 0
    per_token = optax.softmax_cross_entropy_with_integer_labels(
        logits, labels, where=mask
    )
    # The masked mean a user writes by hand; summed in float32 so that the
    # comparison is not about bfloat16 accumulation.
    per_token = jnp.where(mask, per_token.astype(jnp.float32), 0.0)
    return jnp.sum(per_token) / jnp.maximum(jnp.sum(mask.astype(jnp.float32)), 1.0)


IMPLEMENTATIONS: dict[str, Callable[..., jax.Array]] = {
    "seqmask": seqmask_loss,
    "optax": optax_loss,
}
MODES = {
    "forward": lambda loss: loss,
    "forward+backward": lambda loss: jax.value_and_grad(loss),
}


def make_inputs(batch: int, time_steps: int, vocab: int, seed: int = 0):
    key_logits, key_labels, key_lengths = jax.random.split(jax.random.key(seed), 3)
    logits = jax.random.normal(
        key_logits, (batch, time_steps, vocab), dtype=jnp.bfloat16
    )
    labels = jax.random.randint(key_labels, (batch, time_steps), 0, vocab)
    lengths = jax.random.randint(
        key_lengths, (batch,), max(time_steps // 4, 1), time_steps + 1
    )
    weights = seq_weights.from_lengths(lengths, time_steps)
    return jax.block_until_ready((logits, labels, weights))


def time_once(compiled, args) -> float:
    start = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    return time.perf_counter() - start


def main() -> None:
    options = parser(__doc__, repeats=5)
    options.add_argument("--batch", type=int, default=64)
    options.add_argument("--time", type=int, default=256)
    options.add_argument("--vocab", type=int, default=32000)
    args = options.parse_args()
    if args.quick:
        args.batch, args.time, args.vocab = 4, 32, 1000
        args.repeats = max(args.repeats, 10)

    inputs = make_inputs(args.batch, args.time, args.vocab)
    keys = [(name, mode) for mode in MODES for name in IMPLEMENTATIONS]
    compiled, compile_s, values = {}, {}, {}
    for name, mode in keys:
        function = MODES[mode](IMPLEMENTATIONS[name])
        compiled[name, mode], compile_s[name, mode] = compile_timed(function, *inputs)
        result = jax.block_until_ready(compiled[name, mode](*inputs))  # warm-up
        if mode == "forward":
            values[name] = float(result)  # type: ignore[arg-type]
        del result  # frees the gradient before the next allocation
    # The same loss, to bfloat16 accuracy (optax computes in bfloat16).
    if not np.isclose(values["seqmask"], values["optax"], rtol=2e-2):
        raise AssertionError(f"seqmask and optax differ: {values}")
    # Round-robin over all four programs, so that drifts in machine load hit
    # seqmask and optax alike.
    times: dict[tuple[str, str], list[float]] = {key: [] for key in keys}
    for _ in range(args.repeats):
        for key in keys:
            times[key].append(time_once(compiled[key], inputs))
    results = [
        {
            "implementation": name,
            "mode": mode,
            "compile_s": compile_s[name, mode],
            "median_s": statistics.median(times[name, mode]),
            "min_s": min(times[name, mode]),
            "max_s": max(times[name, mode]),
            "times_s": times[name, mode],
        }
        for name, mode in keys
    ]

    def lookup(name, mode):
        return next(
            r for r in results if r["implementation"] == name and r["mode"] == mode
        )

    ratios = {
        mode: lookup("seqmask", mode)["median_s"] / lookup("optax", mode)["median_s"]
        for mode in MODES
    }
    shape = [args.batch, args.time, args.vocab]
    device = jax.devices()[0]
    print(
        f"\nWeighted token cross-entropy, logits {shape} bfloat16, [B, T] weights, "
        f"{device.platform} ({device.device_kind}), {args.repeats} repeats; {RATIO}\n"
    )
    print("| mode | implementation | compile (s) | median (ms) | time / optax |")
    print("|---|---|---:|---:|---:|")
    for mode in MODES:
        for name in IMPLEMENTATIONS:
            row = lookup(name, mode)
            ratio = f"{ratios[mode]:.3f}" if name == "seqmask" else ""
            print(
                f"| {mode} | {name} | {row['compile_s']:.2f} | "
                f"{1e3 * row['median_s']:.1f} | {ratio} |"
            )
    print(
        f"\nloss values: seqmask {values['seqmask']:.6f} (float32 compute), "
        f"optax {values['optax']:.6f} (bfloat16 compute)"
    )

    record = {
        **environment(),
        "benchmark": "weighted_softmax_cross_entropy_with_integer_labels",
        "logits_shape": shape,
        "logits_dtype": "bfloat16",
        "weights_shape": shape[:2],
        "reduction": "weighted_mean",
        "baseline": "optax.softmax_cross_entropy_with_integer_labels(where=mask) "
        "+ masked mean",
        "repeats": args.repeats,
        "platform": platform.platform(),
        "optax_version": optax.__version__,
        "numpy_version": np.__version__,
        "loss_values": values,
        "results": results,
        "ratio_seqmask_over_optax": ratios,
        "target_ratio": 1.1,
    }
    write_record(record, args.out, "losses", args.quick)


if __name__ == "__main__":
    main()
