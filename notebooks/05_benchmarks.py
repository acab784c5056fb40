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
# # Benchmarks, plotted
#
# The scripts in `benchmarks/` (`bench_rnn.py`, `bench_linear_scan.py`,
# `bench_losses.py`, `bench_nnx_overhead.py`) write JSON records to
# `benchmarks/results/`: `<name>.json` for a full run and `<name>-quick.json`
# for a smoke run. This notebook reads whichever is there (the full record
# first) and plots it; a missing or unreadable record is skipped with a note.
# It runs nothing heavy itself, so `SEQMASK_QUICK` changes nothing here.
#
# Numbers depend on the machine (each record names its device and CPU count);
# the ratios are what carries over.

# %%
import json
import os
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

if "ipykernel" not in sys.modules:  # a script or CI: no display
    matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

QUICK = os.environ.get("SEQMASK_QUICK") == "1"
RESULTS = Path("..", "benchmarks", "results")


def load(name):
    """The full record of benchmark ``name``, else its quick one, else None."""
    for candidate in (RESULTS / f"{name}.json", RESULTS / f"{name}-quick.json"):
        if candidate.exists():
            try:
                record = json.loads(candidate.read_text())
            except (OSError, ValueError) as error:
                print(f"{candidate}: unreadable ({error}); trying the next")
                continue
            print(f"{name}: {candidate.name}")
            return record
    print(f"{name}: no record in {RESULTS} (run benchmarks/bench_{name}.py); skipped")
    return None


def plot_or_skip(name, plot):
    """Plot the record of ``name``; a record of another layout is skipped."""
    record = load(name)
    if record is None:
        return False
    try:
        plot(record)
    except (KeyError, TypeError, ValueError, IndexError) as error:
        plt.close("all")
        print(f"{name}: record has an unexpected layout ({error!r}); skipped")
        return False
    plt.show()
    return True


plotted = {}

# %% [markdown]
# ## Recurrent layers: seqmask against Flax, `lax.scan` and PyTorch
#
# `bench_rnn.py` times a forward and a forward+backward pass of one LSTM or GRU
# layer over a right-padded batch. `seqmask-unmasked` runs without a mask (the
# cost of masking is the gap to `seqmask`), `seqmask-step` computes the input
# projection inside the scan instead of hoisting it out, `flax` is `nn.RNN`
# with `seq_lengths`, and `lax.scan` a hand-written scan of the same math.
# The summary compares seqmask with the *floor*: the cell's matmul FLOPs at
# the best matmul rate measured in the same run.


# %%
def plot_rnn(record):
    groups = defaultdict(dict)
    for row in record["rows"]:
        config = (row["kind"], row["batch"], row["time"], row["hidden"])
        groups[config][row["variant"]] = row
    fig, axes = plt.subplots(
        1, len(groups), figsize=(5 * len(groups), 3.5), squeeze=False
    )
    for ax, (config, variants) in zip(axes[0], sorted(groups.items()), strict=True):
        names = sorted(variants)
        x = np.arange(len(names))
        ax.bar(
            x - 0.2, [variants[n]["forward_ms"] for n in names], 0.4, label="forward"
        )
        ax.bar(
            x + 0.2,
            [variants[n]["forward_backward_ms"] for n in names],
            0.4,
            label="forward + backward",
        )
        ax.set_xticks(x, names, rotation=30, ha="right")
        kind, batch, time, hidden = config
        ax.set_title(f"{kind}: batch {batch}, T {time}, H {hidden}")
        ax.set_yscale("log")  # peers can differ by orders of magnitude
        ax.set_ylabel("ms")
    axes[0][0].legend()
    fig.suptitle(f"rnn ({record.get('device', '?')})")
    plt.tight_layout()
    for line in record.get("summary", []):
        line = dict(line)
        if "flax_over_seqmask" in line:  # older records name the inverse ratio
            line["seqmask_over_flax"] = 1.0 / line.pop("flax_over_seqmask")
        print(
            "   "
            + ", ".join(
                f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                for k, v in line.items()
            )
        )
    memory = record.get("memory")
    if memory:
        fig, ax = plt.subplots(figsize=(4, 2.5))
        ax.bar([str(m["remat"]) for m in memory], [m["temp_mib"] for m in memory])
        ax.set_xlabel("remat")
        ax.set_ylabel("temp memory (MiB)")
        ax.set_title(f"backward-pass memory, T = {memory[0]['time']}")
        plt.tight_layout()


plotted["rnn"] = plot_or_skip("rnn", plot_rnn)

# %% [markdown]
# ## `linear_scan`: sequential against associative
#
# The associative (parallel-prefix) form has depth $O(\log T)$ but does about
# twice the arithmetic; on a CPU the sequential scan usually wins, on an
# accelerator with long sequences the parallel one can.


# %%
def plot_linear_scan(record):
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for result in record["results"]:
        by_method = defaultdict(list)
        for row in result["rows"]:
            by_method[row["method"]].append(row)
        for method, rows in sorted(by_method.items()):
            rows.sort(key=lambda r: r["time"])
            times = [r["time"] for r in rows]
            label = f"{method} ({result.get('device', '?')})"
            axes[0].plot(
                times, [r["forward_backward_ms"] for r in rows], "o-", label=label
            )
            axes[1].plot(
                times,
                [r["compile_forward_backward_s"] for r in rows],
                "o-",
                label=label,
            )
    for ax, label in zip(axes, ["forward + backward (ms)", "compile (s)"], strict=True):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("sequence length T")
        ax.set_ylabel(label)
    axes[0].legend()
    fig.suptitle(f"linear_scan, shape {record.get('shape')}")
    plt.tight_layout()


plotted["linear_scan"] = plot_or_skip("linear_scan", plot_linear_scan)

# %% [markdown]
# ## Weighted cross-entropy against optax
#
# `bench_losses.py` compares seqmask's weighted cross-entropy (which selects
# safe values at zero-weight tokens and computes in float32) with optax's
# masked cross-entropy plus a masked mean, on bfloat16 logits of a large
# vocabulary. A ratio below 1 means seqmask is faster.


# %%
def plot_losses(record):
    times = defaultdict(dict)
    for row in record["results"]:
        times[row["mode"]][row["implementation"]] = row["median_s"]
    modes = sorted(times)
    implementations = sorted({i for m in modes for i in times[m]})
    x = np.arange(len(modes))
    width = 0.8 / len(implementations)
    fig, ax = plt.subplots(figsize=(6, 3))
    for k, name in enumerate(implementations):
        ax.bar(
            x + (k - (len(implementations) - 1) / 2) * width,
            [times[m].get(name, np.nan) for m in modes],
            width,
            label=name,
        )
    ax.set_xticks(x, modes)
    ax.set_ylabel("median time (s)")
    ax.set_title(f"logits {record.get('logits_shape')} {record.get('logits_dtype')}")
    ax.legend()
    plt.tight_layout()
    print("   seqmask / optax:", record.get("ratio_seqmask_over_optax"))


plotted["losses"] = plot_or_skip("losses", plot_losses)

# %% [markdown]
# ## The Flax NNX wrappers' overhead
#
# `seqmask.nnx` wraps the pure functions in NNX modules. Calling them through
# `nnx.jit` adds Python-side graph handling on every call; splitting the
# module once (`nnx.split`) and jitting a pure function is the way around it.
# Ratios are relative to the pure `jax.jit` baseline; on a CPU the graph
# handling is small next to the layer, and what the record shows beyond that
# is the noise of its run (ratios within about ±25% of 1).


# %%
def plot_nnx(record):
    rows = record["rows"]
    names = [r["variant"] for r in rows]
    keys = ["forward_ratio", "forward_backward_ratio", "compile_forward_ratio"]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(7, 3))
    for k, key in enumerate(keys):
        ax.bar(x + (k - 1) * 0.27, [r[key] for r in rows], 0.27, label=key)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks(x, names)
    ax.set_ylabel("time / pure jax.jit")
    ax.set_title(f"nnx overhead, shape {record.get('shape')}")
    ax.legend(fontsize=8)
    plt.tight_layout()


plotted["nnx_overhead"] = plot_or_skip("nnx_overhead", plot_nnx)

# %% [markdown]
# ## Skipping padded chunks
#
# `rnn(..., skip_padding=True)` runs only the chunks of time steps in which
# some row has a valid step. Forward+backward time of a masked LSTM at a
# fixed padded shape, for batches whose longest row covers all, half, a
# quarter or none of the time axis, over `skip_padding=False` at full
# occupancy. The targets: at most 0.4 at a quarter, at most 1.05 at full
# occupancy. `remat-16-skip` is the previous, checkpointed design (still
# what `skip_padding` does when `remat` is an int); the record has the
# other designs that were tried when run with `--alternatives`.


# %%
def plot_skip_padding(record):
    rows = record["rows"]
    occupancies = list(dict.fromkeys(r["occupancy"] for r in rows))
    settings = [
        s
        for s in ("False", "True", "remat-16-skip", "remat-16")
        if any(r["skip_padding"] == s for r in rows)
    ]
    ratio = {(r["skip_padding"], r["occupancy"]): r["vs_no_skip_full"] for r in rows}
    x = np.arange(len(occupancies))
    fig, ax = plt.subplots(figsize=(9, 3))
    width = 0.8 / len(settings)
    for k, setting in enumerate(settings):
        heights = [ratio[setting, o] for o in occupancies]
        ax.bar(
            x + (k - (len(settings) - 1) / 2) * width,
            heights,
            width,
            label=f"skip_padding={setting}"
            if setting in ("False", "True")
            else setting,
        )
    ax.plot([-0.4, 0.4], [1.05, 1.05], "k--", lw=0.8)
    quarter = occupancies.index("quarter")
    ax.plot([quarter - 0.4, quarter + 0.4], [0.4, 0.4], "k--", lw=0.8, label="targets")
    longest = {r["occupancy"]: r["longest"] for r in rows}
    ax.set_xticks(x, [f"{o} (longest {longest[o]})" for o in occupancies])
    ax.set_ylabel("time / no skipping at full")
    shape = record["shape"]
    ax.set_title(
        f"skip_padding, LSTM B={shape['batch']} T={shape['time']} "
        f"I={shape['input']} H={shape['hidden']}"
    )
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    plt.tight_layout()


plotted["skip_padding"] = plot_or_skip("skip_padding", plot_skip_padding)

# %%
print("plotted:", {name: ok for name, ok in plotted.items()})
