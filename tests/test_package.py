"""The package as a user meets it: imports and the command line."""

import subprocess
import sys

import numpy as np

from seqmask.cli import majority_task


def run_python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return result.stdout


def test_import_does_not_import_flax_or_torch():
    out = run_python(
        "import sys, seqmask, seqmask.cells, seqmask.masks, seqmask.interop\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('flax', 'torch', 'optax', 'tqdm')))"
    )
    assert out.strip() == "[]"


def test_majority_task_labels_and_masks():
    tokens, mask, labels = majority_task(np.random.default_rng(0), 50, max_len=12)
    for row in range(50):
        valid = tokens[row][mask[row]]
        counts = np.bincount(valid, minlength=4)[1:]
        assert counts.argmax() == labels[row]
        assert (counts == counts.max()).sum() == 1
        # one contiguous run, anywhere in the row
        positions = np.flatnonzero(mask[row])
        assert np.all(np.diff(positions) == 1)


def test_demo_runs_from_the_command_line():
    result = subprocess.run(
        [sys.executable, "-m", "seqmask", "demo", "--quick", "--no-progress"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "held-out accuracy" in result.stdout
    # Padding invariance holds whatever the training did.
    assert "agree on 5/5 rows" in result.stdout


def test_cli_without_command_prints_help():
    result = subprocess.run(
        [sys.executable, "-m", "seqmask"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "demo" in result.stdout
