"""Every benchmark script runs in ``--quick`` mode and writes its record.

The scripts are not timed here (timings belong to the scripts themselves,
never to tests); this keeps them from rotting as the library changes, and
runs the checks they make before timing anything: ``bench_rnn.py`` asserts
that the seqmask variants and the hand-written scan give the same outputs,
``bench_rnn_variants.py`` that every implementation variant (including the
hand-written-VJP LSTM) gives the gradient of the default ``seqmask.rnn``.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"


def run(script: str, out: Path, *extra: str) -> None:
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / script),
            "--quick",
            "--out",
            str(out),
            *extra,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def finite_positive(value) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value > 0


def test_bench_rnn(tmp_path):
    extra = ["--no-torch", "--memory", "--sweep", "--sweep-time", "8"]
    run("bench_rnn.py", tmp_path, *extra, "--sweep-hidden", "8")
    record = json.loads((tmp_path / "rnn-sweep-quick.json").read_text())
    for kind in ("lstm", "gru"):
        rows = [r for r in record["rows"] if r["kind"] == kind]
        # The standard quick shape (T=16, H=16) and one step of each sweep.
        assert {(r["time"], r["hidden"]) for r in rows} == {(16, 16), (8, 16), (16, 8)}
        names = {r["variant"] for r in rows}
        assert {
            "seqmask",
            "seqmask-unmasked",
            "flax",
            "lax.scan",
            "matmuls-only",
        } <= names
    for row in record["rows"]:
        for key in ("forward_ms", "forward_backward_ms", "forward_backward_vs_floor"):
            assert finite_positive(row[key]), (row["variant"], key, row[key])
        assert finite_positive(row["compile_forward_backward_s"])
    assert {s["kind"] for s in record["summary"]} == {"lstm", "gru"}
    # remat shrinks the compiled temporary memory of forward+backward.
    memory = {m["remat"]: m["temp_mib"] for m in record["memory"]}
    assert memory["True"] < memory["False"] and memory["64"] < memory["False"]


def test_bench_rnn_variants(tmp_path):
    run("bench_rnn_variants.py", tmp_path, "--cells", "lstm")
    record = json.loads((tmp_path / "rnn_variants-quick.json").read_text())
    names = {r["variant"] for r in record["rows"]}
    assert {"default", "custom-vjp", "bidirectional, directions merged"} <= names
    assert all(finite_positive(r["forward_backward_ms"]) for r in record["rows"])


@pytest.mark.parametrize(
    ("script", "record"),
    [
        ("bench_losses.py", "losses-quick.json"),
        ("bench_nnx_overhead.py", "nnx_overhead-quick.json"),
        ("bench_linear_scan.py", "linear_scan-quick.json"),
    ],
)
def test_other_benchmarks(tmp_path, script, record):
    run(script, tmp_path)
    assert json.loads((tmp_path / record).read_text())
