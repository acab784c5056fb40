"""What it costs to initialise an encoder-decoder, three ways.

``seqmask.seq2seq`` gives ``model.init`` as a plain function; whether to
compile it is the caller's choice. This script measures the choices, each in
a fresh Python process (the first call is what a user waits for):

* ``eager`` - ``model.init(key)``: every initialiser dispatched (and
  compiled) op by op (the baseline);
* ``jax.jit`` - ``jax.jit(model.init)(key)``: one program;
* ``jax.jit, opt 0`` - the same with
  ``compiler_options={"xla_backend_optimization_level": 0}`` (LLVM's
  optimisation passes skipped: they dominate the compile time of the large
  random-number kernels and buy nothing for a program that runs once).

For each: the first call (compilation included) and a second call (what a
cached program costs), medians over ``--repeats`` rounds taken round-robin
across the variants, each next to its ratio to the eager baseline of the
same run. Before anything is compared, every variant must give the same
parameters for the same key (a float64 checksum of every leaf, to 1e-5).
Prints a Markdown table and writes a JSON record to
``benchmarks/results/seq2seq_init.json``.

  python benchmarks/bench_seq2seq_init.py            # default model, E=H=256
  python benchmarks/bench_seq2seq_init.py --quick    # small smoke run
"""

from __future__ import annotations

import random
import statistics
import subprocess
import sys

from _common import RATIO, environment, parser, write_record

VARIANTS = ("eager", "jax.jit", "jax.jit, opt 0")

CHILD = """
import sys, time
import jax
import numpy as np
from seqmask import seq2seq
variant, vocab, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
model = seq2seq.encoder_decoder(vocab, vocab, embed_size=size, hidden_size=size)
init = model.init
if variant == "jax.jit":
    init = jax.jit(model.init)
elif variant == "jax.jit, opt 0":
    init = jax.jit(
        model.init, compiler_options={"xla_backend_optimization_level": 0}
    )
times, params = [], None
for seed in range(2):
    start = time.perf_counter()
    params = jax.block_until_ready(init(jax.random.key(seed)))
    times.append(time.perf_counter() - start)
checksum = sum(np.abs(np.asarray(x, np.float64)).sum() for x in jax.tree.leaves(params))
print(times[0], times[1], checksum)
"""


def run_child(variant: str, vocab: int, size: int) -> tuple[float, float, float]:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, variant, str(vocab), str(size)],
        capture_output=True,
        text=True,
        check=True,
    )
    first, second, checksum = result.stdout.split()
    return float(first), float(second), float(checksum)


def main() -> None:
    arguments = parser(__doc__, repeats=5)
    arguments.add_argument("--vocab", type=int, default=1000)
    arguments.add_argument("--size", type=int, default=256)
    args = arguments.parse_args()
    if args.quick:
        args.repeats, args.vocab, args.size = 1, 20, 8
    samples: dict[str, list[tuple[float, float, float]]] = {v: [] for v in VARIANTS}
    order, rng = list(VARIANTS), random.Random(0)
    for _ in range(args.repeats):
        rng.shuffle(order)  # load that comes and goes hits every variant alike
        for variant in order:
            samples[variant].append(run_child(variant, args.vocab, args.size))
    checksums = [s[2] for v in VARIANTS for s in samples[v]]
    spread = (max(checksums) - min(checksums)) / max(abs(min(checksums)), 1e-30)
    if spread > 1e-5:
        raise SystemExit(f"the variants initialise different parameters: {checksums}")
    rows = [
        {
            "variant": variant,
            "first_s": statistics.median(s[0] for s in samples[variant]),
            "second_s": statistics.median(s[1] for s in samples[variant]),
        }
        for variant in VARIANTS
    ]
    base = rows[0]
    for row in rows:
        row["first_ratio"] = row["first_s"] / base["first_s"]
        row["second_ratio"] = row["second_s"] / base["second_s"]
    print(
        f"init of encoder_decoder(V={args.vocab}, E=H={args.size}) in a fresh "
        f"process, median of {args.repeats}; {RATIO}"
    )
    print(
        "| variant | first call (s) | first / eager | second call (s) "
        "| second / eager |"
    )
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        print(
            f"| {row['variant']} | {row['first_s']:.3f} | {row['first_ratio']:.2f} "
            f"| {row['second_s']:.4f} | {row['second_ratio']:.2f} |"
        )
    record = {
        "benchmark": "seq2seq_init",
        "vocab": args.vocab,
        "size": args.size,
        "repeats": args.repeats,
        "parameter_checksum_spread": spread,
        **environment(),
        "rows": rows,
    }
    write_record(record, args.out, "seq2seq_init", args.quick)


if __name__ == "__main__":
    main()
