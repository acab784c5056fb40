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
same run. Prints a Markdown table and writes a JSON record to
``benchmarks/results/seq2seq_init.json``.

  python benchmarks/bench_seq2seq_init.py            # default model, E=H=256
  python benchmarks/bench_seq2seq_init.py --quick    # small smoke run
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
from pathlib import Path

import jax

VARIANTS = ("eager", "jax.jit", "jax.jit, opt 0")

CHILD = """
import sys, time
import jax
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
times = []
for seed in range(2):
    start = time.perf_counter()
    jax.block_until_ready(init(jax.random.key(seed)))
    times.append(time.perf_counter() - start)
print(times[0], times[1])
"""


def run_child(variant: str, vocab: int, size: int) -> tuple[float, float]:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, variant, str(vocab), str(size)],
        capture_output=True,
        text=True,
        check=True,
    )
    first, second = result.stdout.split()
    return float(first), float(second)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--vocab", type=int, default=1000)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.vocab, args.size = 1, 20, 8
    samples: dict[str, list[tuple[float, float]]] = {v: [] for v in VARIANTS}
    for _ in range(args.repeats):
        for variant in VARIANTS:
            samples[variant].append(run_child(variant, args.vocab, args.size))
    rows = []
    for variant in VARIANTS:
        first = statistics.median(s[0] for s in samples[variant])
        second = statistics.median(s[1] for s in samples[variant])
        rows.append({"variant": variant, "first_s": first, "second_s": second})
    base = rows[0]
    print(f"init of encoder_decoder(V={args.vocab}, E=H={args.size}), cold process")
    print("| variant | first call (s) | vs eager | second call (s) | vs eager |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        print(
            f"| {row['variant']} | {row['first_s']:.3f} | "
            f"{row['first_s'] / base['first_s']:.2f}x | {row['second_s']:.4f} | "
            f"{row['second_s'] / base['second_s']:.2f}x |"
        )
    record = {
        "benchmark": "seq2seq_init",
        "vocab": args.vocab,
        "size": args.size,
        "repeats": args.repeats,
        "jax": jax.__version__,
        "machine": platform.machine(),
        "backend": jax.default_backend(),
        "rows": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "seq2seq_init-quick.json" if args.quick else "seq2seq_init.json"
    (out / name).write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
