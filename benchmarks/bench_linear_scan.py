"""linear_scan: sequential vs associative (parallel prefix), same run.

Measures ``seqmask.linear_scan`` under ``jax.jit`` with a right-padded mask
(random lengths in ``[T/2, T]``) for each sequence length ``T``:

* ``sequential`` - ``method="sequential"``: a masked ``lax.scan``, ``T``
  dependent steps (the baseline);
* ``associative`` - ``method="associative"``: ``jax.lax.associative_scan``,
  depth ``O(log T)`` but about twice the arithmetic and more memory traffic.

Forward and forward+backward (gradient with respect to ``a`` and ``b``) are
timed apart; compile time and steady-state time are reported apart, steady
state being the median of ``--repeats`` calls after one warm-up call. The
crossover is the smallest ``T`` from which the associative form is faster
for every larger ``T`` measured. Runs on the CPU and, when JAX sees one, on
the first GPU. Prints a Markdown table and writes a JSON record to
``benchmarks/results/linear_scan.json``.

  python benchmarks/bench_linear_scan.py            # B=16 F=256, T=64..16384
  python benchmarks/bench_linear_scan.py --quick    # small smoke run
"""

from __future__ import annotations

import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from _common import RATIO, compile_timed, environment, parser, write_record

import seqmask

METHODS = ("sequential", "associative")


def measure(fn, args, *, repeats: int, budget_s: float):
    """``(compile_s, median_s)``; fewer repeats when one call is slow."""
    compiled, compile_s = compile_timed(fn, *args)
    start = time.perf_counter()
    jax.block_until_ready(compiled(*args))  # warm-up
    first = time.perf_counter() - start
    count = max(1, min(repeats, int(budget_s / max(first, 1e-9))))
    times = []
    for _ in range(count):
        start = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - start)
    return compile_s, statistics.median(times)


def make_inputs(rng, time_steps: int, batch: int, features: int, device):
    a = rng.uniform(0.5, 1.0, size=(time_steps, batch, features)).astype(np.float32)
    b = rng.normal(size=(time_steps, batch, features)).astype(np.float32)
    lengths = rng.integers(time_steps // 2, time_steps + 1, size=batch)
    mask = np.arange(time_steps)[:, None] < lengths[None, :]
    return tuple(jax.device_put(x, device) for x in (a, b, mask))


def functions(method: str):
    def forward(a, b, mask):
        return seqmask.linear_scan(a, b, mask=mask, method=method)

    def loss(a, b, mask):
        final, hs = forward(a, b, mask)
        return jnp.sum(hs) + jnp.sum(final)

    return forward, jax.grad(loss, argnums=(0, 1))


def crossover(rows, key: str):
    """Smallest T from which associative beats sequential at every larger T."""
    by_time = {}
    for row in rows:
        by_time.setdefault(row["time"], {})[row["method"]] = row[key]
    found = None
    for steps in sorted(by_time, reverse=True):
        pair = by_time[steps]
        if pair["associative"] < pair["sequential"]:
            found = steps
        else:
            break
    return found


def run_device(device, args) -> dict:
    rng = np.random.default_rng(0)
    rows = []
    for steps in args.times:
        a, b, mask = make_inputs(rng, steps, args.batch, args.features, device)
        outputs = {}
        for method in METHODS:
            forward, backward = functions(method)
            fwd_compile, fwd_time = measure(
                forward, (a, b, mask), repeats=args.repeats, budget_s=args.budget
            )
            bwd_compile, bwd_time = measure(
                backward, (a, b, mask), repeats=args.repeats, budget_s=args.budget
            )
            outputs[method] = jax.jit(forward)(a, b, mask)[1]
            rows.append(
                {
                    "time": steps,
                    "method": method,
                    "forward_ms": fwd_time * 1e3,
                    "forward_backward_ms": bwd_time * 1e3,
                    "compile_forward_s": fwd_compile,
                    "compile_forward_backward_s": bwd_compile,
                }
            )
            print(
                f"  {device.platform} T={steps:>6} {method:<11} "
                f"fwd {fwd_time * 1e3:9.2f} ms  fwd+bwd {bwd_time * 1e3:9.2f} ms  "
                f"compile {fwd_compile:5.2f} / {bwd_compile:5.2f} s",
                flush=True,
            )
        difference = float(
            jnp.max(jnp.abs(outputs["associative"] - outputs["sequential"]))
        )
        for row in rows[-len(METHODS) :]:
            row["max_abs_difference"] = difference
        del a, b, mask, outputs
    return {
        "device": str(device),
        "platform": device.platform,
        "rows": rows,
        "crossover_forward": crossover(rows, "forward_ms"),
        "crossover_forward_backward": crossover(rows, "forward_backward_ms"),
    }


def print_table(result, args) -> None:
    print(
        f"\nlinear_scan on {result['device']}, B={args.batch} F={args.features}, "
        f"float32, right-padded mask, jax {jax.__version__}, median of up to "
        f"{args.repeats}; {RATIO}\n"
    )
    print(
        "| T | method | fwd ms | fwd+bwd ms | fwd / sequential "
        "| fwd+bwd / sequential | compile fwd s | compile fwd+bwd s |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    base = {row["time"]: row for row in result["rows"] if row["method"] == "sequential"}
    for row in result["rows"]:
        ref = base[row["time"]]
        print(
            f"| {row['time']} | {row['method']} | {row['forward_ms']:.2f} "
            f"| {row['forward_backward_ms']:.2f} "
            f"| {row['forward_ms'] / ref['forward_ms']:.2f} "
            f"| {row['forward_backward_ms'] / ref['forward_backward_ms']:.2f} "
            f"| {row['compile_forward_s']:.2f} "
            f"| {row['compile_forward_backward_s']:.2f} |"
        )
    for key, label in (
        ("crossover_forward", "forward"),
        ("crossover_forward_backward", "forward+backward"),
    ):
        steps = result[key]
        verdict = (
            f"associative is faster from T = {steps} on"
            if steps is not None
            else "associative is not faster at any measured T"
        )
        print(f"\ncrossover ({label}): {verdict}")


def main() -> None:
    options = parser(__doc__, repeats=10)
    options.add_argument("--batch", type=int, default=16)
    options.add_argument("--features", type=int, default=256)
    options.add_argument(
        "--times", type=int, nargs="+", default=[64, 256, 1024, 4096, 16384]
    )
    options.add_argument(
        "--budget",
        type=float,
        default=10.0,
        help="seconds of timed calls per measurement at most (fewer repeats)",
    )
    args = options.parse_args()
    if args.quick:
        args.batch, args.features, args.times, args.repeats = 4, 16, [64, 256], 3

    devices = [jax.devices("cpu")[0]]
    try:
        devices.append(jax.devices("gpu")[0])
    except RuntimeError:
        pass  # no GPU backend: CPU only
    environment_at_start = environment()
    results = []
    for device in devices:
        result = run_device(device, args)
        print_table(result, args)
        results.append(result)
    record = {
        **environment_at_start,
        "benchmark": "linear_scan",
        "shape": {"batch": args.batch, "features": args.features},
        "times": args.times,
        "repeats": args.repeats,
        "results": results,
    }
    write_record(record, args.out, "linear_scan", args.quick)


if __name__ == "__main__":
    main()
