#!/usr/bin/env bash
# One short GPU run of the benchmarks that matter
# on an accelerator: the masked LSTM/GRU layers against Flax, lax.scan and
# PyTorch's cuDNN LSTM/GRU (when torch with CUDA is installed), a T/H sweep,
# the implementation variants (hoisting, unroll, a hand-written VJP, merged
# bidirectional directions) and the sequential-vs-associative crossover of
# linear_scan.
#
#   bash benchmarks/gpu.sh [OUTPUT_DIR]      # default: benchmarks/results/gpu
#
# seqmask is pure Python: the run uses the checkout through PYTHONPATH, so
# only jax (with its CUDA plugin), flax, optax and numpy must be installed.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-benchmarks/results/gpu}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python3 -c "import jax; print('jax', jax.__version__, jax.devices())"
python3 benchmarks/bench_rnn.py --repeats 20 --memory --out "$out"
python3 benchmarks/bench_rnn.py --repeats 10 --sweep --out "$out"
python3 benchmarks/bench_rnn_variants.py --repeats 20 --out "$out"
python3 benchmarks/bench_linear_scan.py --out "$out"
