# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Paying for valid tokens only
#
# A corpus of sentences has skewed lengths: most are short, a few are long.
# Padding every batch to the longest sentence spends most of the compute on
# padding; padding each batch to its own longest sentence recompiles the
# training step for every new length. `benchmarks/bench_ragged.py` trains a
# tagger (embedding, LSTM, per-token softmax cross-entropy) for one epoch in
# seven ways on the same sentences, timing everything a user waits for
# (compilation and batching included), and checks first that all seven compute
# the same total loss for the same parameters:
#
# 1. Flax `nn.RNN` padded to the corpus maximum,
# 2. Flax padded to each batch's maximum,
# 3. Flax on batches bucketed by hand,
# 4. seqmask on `seqmask.data.bucket_batches` (with `skip_padding`),
# 5. seqmask on `seqmask.data.packed_batches` (several sentences a row,
#    `resets` in the layer, `segment_ids` in the loss),
# 6. seqmask padded to the corpus maximum with `skip_padding`,
# 7. seqmask on the batches of 4 without `skip_padding`.
#
# This notebook plots its record: `benchmarks/results/ragged.json` when a
# full run is there, else a quick run made here.

# %%
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib

if "ipykernel" not in sys.modules:  # a script or CI: no display
    matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

QUICK = os.environ.get("SEQMASK_QUICK") == "1"
RESULTS = Path("..", "benchmarks", "results")


def quick_record():
    """Run the benchmark in quick mode into a temporary folder."""
    folder = Path(tempfile.mkdtemp())
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(Path("..").resolve()))
    subprocess.run(
        [sys.executable, "bench_ragged.py", "--quick", "--out", str(folder)],
        cwd=Path("..", "benchmarks"),
        env=env,
        check=True,
        capture_output=True,
    )
    return json.loads((folder / "ragged-quick.json").read_text())


path = RESULTS / "ragged.json"
record = json.loads(path.read_text()) if path.exists() else quick_record()
print(
    "record:",
    "full run" if not record["quick"] else "quick run",
    "| load average at start:",
    record["load_average_at_start"],
)
corpus = record["corpus"]
print(
    f"{corpus['sentences']} sentences, lognormal(mu={corpus['lognormal_mu']}, "
    f"sigma={corpus['lognormal_sigma']}) lengths ({corpus['source']}), "
    f"mean {corpus['mean_length']:.1f}, longest {corpus['longest']}"
)

# %% [markdown]
# ## Padding and throughput per mode
#
# Left: the share of the slots the model ran that were padding. Right: real
# (non-padding) tokens per second over the whole epoch. The numbers depend
# on the machine and its load; the ordering is what carries over.

# %%
modes = record["modes"]
models = list(record["models"])
figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
width = 0.8 / len(models)
positions = np.arange(len(modes))
for index, model in enumerate(models):
    rows = record["models"][model]["modes"]
    offset = positions + (index - (len(models) - 1) / 2) * width
    left.bar(offset, [rows[m]["padding_fraction"] for m in modes], width, label=model)
    right.bar(offset, [rows[m]["real_tokens_per_s"] for m in modes], width, label=model)
labels = [
    f"{i}. {m}".replace(", ", ",\n").replace(" + ", "\n+ ")
    for i, m in enumerate(modes, 1)
]
for axis, title in (
    (left, "padding fraction of the batches"),
    (right, "real tokens / s (compilation included)"),
):
    axis.set_xticks(positions, labels, fontsize=7)
    axis.set_title(title)
    axis.legend(title="LSTM")
figure.tight_layout()
plt.show()

# %% [markdown]
# Packing runs one compiled shape for the whole epoch and leaves the least
# padding; padding to the corpus maximum leaves the most.

# %%
for model in models:
    rows = record["models"][model]["modes"]
    summary = record["models"][model]["summary"]
    print(
        f"{model}: best seqmask mode '{summary['best_seqmask_mode']}': "
        f"{summary['best_over_mode_1']:.2f}x the real tokens/s of mode 1, "
        f"{summary['best_over_mode_3']:.2f}x mode 3"
    )
    for mode in modes:
        row = rows[mode]
        print(
            f"  {mode:38s} {row['compiled_shapes']:3d} shapes, padding "
            f"{row['padding_fraction']:5.1%}, {row['real_tokens_per_s']:8.0f} tokens/s"
        )
    assert rows["seqmask, packed"]["compiled_shapes"] == 1
    padding = {mode: rows[mode]["padding_fraction"] for mode in modes}
    assert padding["seqmask, packed"] < padding["flax, global max"]
    assert padding["seqmask, bucketed"] < padding["flax, global max"]
    # Every mode computed the same loss over the epoch for the same parameters.
    totals = [rows[mode]["total_loss"] for mode in modes]
    assert np.allclose(totals, totals[0], rtol=1e-4)
