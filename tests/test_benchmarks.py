"""Every benchmark script runs in ``--quick`` mode and writes its record.

The scripts are not timed here (timings belong to the scripts themselves,
never to tests); this keeps them from rotting as the library changes, and
runs the checks they make before timing anything: ``bench_rnn.py`` asserts
that the seqmask variants and the hand-written scan give the same outputs,
``bench_rnn_variants.py`` that every implementation variant (including the
hand-written-VJP LSTM) gives the gradient of the default ``seqmask.rnn``,
``bench_nnx_overhead.py`` that the module and the pure function agree. The
tests then check the records: the loss values and the associative scan's
difference to the sequential one, every time positive and finite, every
ratio the quotient of the times it names. Every run is marked slow.
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


RATIO_NOTE = "ratio = time / the baseline's time in the same run: below 1 is faster"


def run(script: str, out: Path, *extra: str) -> str:
    """Run ``script --quick --out out``; returns what it printed."""
    # A smoke run's time goes to compiling many small programs, and its
    # timings are not what it checks: XLA compiles them without LLVM's
    # optimisation passes.
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
    env = dict(
        os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT), XLA_FLAGS=flags.strip()
    )
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
    # Every record written is said, and every ratio's meaning with it.
    for path in out.glob("*"):
        assert f"wrote {path}" in result.stdout, path
    assert RATIO_NOTE in result.stdout
    return result.stdout


def finite_positive(value) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value > 0


def close(a: float, b: float, rtol: float = 1e-9) -> bool:
    return math.isclose(a, b, rel_tol=rtol)


@pytest.mark.slow
def test_bench_rnn(tmp_path):
    # One T of the sweep beyond the standard shape; the H sweep names only
    # the standard H, which the sweep does not measure twice.
    extra = ["--no-torch", "--memory", "--sweep", "--sweep-time", "8"]
    out = run("bench_rnn.py", tmp_path, *extra, "--sweep-hidden", "16")
    assert "PyTorch left out (--no-torch)" in out
    assert (tmp_path / "rnn-sweep-quick.png").stat().st_size > 0
    record = json.loads((tmp_path / "rnn-sweep-quick.json").read_text())
    assert record["quick"] is True and record["torch"] is None
    for kind in ("lstm", "gru"):
        rows = [r for r in record["rows"] if r["kind"] == kind]
        # The standard quick shape (T=16, H=16) and the T sweep's step.
        assert {(r["time"], r["hidden"]) for r in rows} == {(16, 16), (8, 16)}
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
    # The summary's ratios are times over the baseline's, from the rows.
    for summary in record["summary"]:
        group = {
            r["variant"]: r["forward_backward_ms"]
            for r in record["rows"]
            if (r["kind"], r["time"], r["hidden"])
            == (summary["kind"], summary["time"], summary["hidden"])
        }
        assert close(summary["seqmask_over_flax"], group["seqmask"] / group["flax"])
        assert close(
            summary["masking_overhead"],
            group["seqmask"] / group["seqmask-unmasked"] - 1,
        )
    # remat shrinks the compiled temporary memory of forward+backward.
    memory = {m["remat"]: m["temp_mib"] for m in record["memory"]}
    assert memory["True"] < memory["False"] and memory["64"] < memory["False"]


@pytest.mark.slow
def test_bench_rnn_variants(tmp_path):
    run("bench_rnn_variants.py", tmp_path, "--cells", "lstm")
    record = json.loads((tmp_path / "rnn_variants-quick.json").read_text())
    rows = {r["variant"]: r for r in record["rows"]}
    assert {"default", "custom-vjp", "bidirectional, directions merged"} <= set(rows)
    for row in rows.values():
        assert finite_positive(row["forward_backward_ms"]), row["variant"]
        base = rows[row["baseline"]]["forward_backward_ms"]
        assert close(row["vs_baseline"], row["forward_backward_ms"] / base)
    assert rows["default"]["vs_baseline"] == 1.0


@pytest.mark.slow
def test_bench_losses(tmp_path):
    run("bench_losses.py", tmp_path)
    record = json.loads((tmp_path / "losses-quick.json").read_text())
    assert record["logits_shape"] == [4, 32, 1000]
    # The two implementations compute the same loss (optax in bfloat16).
    values = record["loss_values"]
    assert math.isclose(values["seqmask"], values["optax"], rel_tol=2e-2)
    assert 0 < values["seqmask"] < 20
    results = {(r["implementation"], r["mode"]): r for r in record["results"]}
    assert set(results) == {
        (name, mode)
        for name in ("seqmask", "optax")
        for mode in ("forward", "forward+backward")
    }
    for row in results.values():
        assert finite_positive(row["median_s"]) and finite_positive(row["compile_s"])
        assert row["min_s"] <= row["median_s"] <= row["max_s"]
        assert len(row["times_s"]) == record["repeats"]
    for mode, ratio in record["ratio_seqmask_over_optax"].items():
        seqmask, optax = results["seqmask", mode], results["optax", mode]
        assert close(ratio, seqmask["median_s"] / optax["median_s"])


def assert_ratios(rows, baseline: str, kinds, unit: str) -> None:
    """Every row's ``{kind}_ratio`` is its ``{kind}_{unit}`` time over the
    baseline row's, and the baseline's own ratios are 1."""
    base = rows[baseline]
    for row in rows.values():
        for kind in kinds:
            time = row[f"{kind}_{unit}"]
            assert finite_positive(time)
            assert close(row[f"{kind}_ratio"], time / base[f"{kind}_{unit}"])
    assert all(base[f"{kind}_ratio"] == 1.0 for kind in kinds)


@pytest.mark.slow
def test_bench_nnx_overhead(tmp_path):
    run("bench_nnx_overhead.py", tmp_path)
    record = json.loads((tmp_path / "nnx_overhead-quick.json").read_text())
    rows = {r["variant"]: r for r in record["rows"]}
    assert set(rows) == {"pure jax.jit", "nnx.jit", "nnx.split + jax.jit"}
    assert_ratios(rows, "pure jax.jit", ("forward", "forward_backward"), "ms")


@pytest.mark.slow
def test_bench_seq2seq_init(tmp_path):
    run("bench_seq2seq_init.py", tmp_path)
    record = json.loads((tmp_path / "seq2seq_init-quick.json").read_text())
    # The script has checked that every variant initialises the same
    # parameters before it compares their times.
    assert record["parameter_checksum_spread"] <= 1e-5
    rows = {r["variant"]: r for r in record["rows"]}
    assert set(rows) == {"eager", "jax.jit", "jax.jit, opt 0"}
    assert_ratios(rows, "eager", ("first", "second"), "s")


@pytest.mark.slow
def test_bench_linear_scan(tmp_path):
    run("bench_linear_scan.py", tmp_path)
    record = json.loads((tmp_path / "linear_scan-quick.json").read_text())
    (result,) = [r for r in record["results"] if r["platform"] == "cpu"]
    assert {(r["time"], r["method"]) for r in result["rows"]} == {
        (t, m) for t in (64, 256) for m in ("sequential", "associative")
    }
    for row in result["rows"]:
        # The associative scan computes what the sequential one does.
        assert row["max_abs_difference"] < 1e-4
        assert finite_positive(row["forward_ms"])
        assert finite_positive(row["forward_backward_ms"])
    for key in ("crossover_forward", "crossover_forward_backward"):
        assert result[key] in (None, 64, 256)


@pytest.mark.slow
def test_bench_skip_padding(tmp_path):
    run("bench_skip_padding.py", tmp_path)
    record = json.loads((tmp_path / "skip_padding-quick.json").read_text())
    rows = {(r["skip_padding"], r["occupancy"]): r for r in record["rows"]}
    settings = {"False", "True", "8"}
    occupancies = {"full", "half", "quarter", "none"}
    assert set(rows) == {(s, o) for s in settings for o in occupancies}
    steps = record["shape"]["time"]
    assert rows["True", "full"]["longest"] == steps
    assert rows["True", "quarter"]["longest"] == steps // 4
    assert rows["True", "none"]["longest"] == 0
    base = rows["False", "full"]["forward_backward_ms"]
    for row in rows.values():
        assert finite_positive(row["forward_backward_ms"])
        assert close(row["vs_no_skip_full"], row["forward_backward_ms"] / base)
    assert close(
        record["quarter_over_full"], rows["True", "quarter"]["vs_no_skip_full"]
    )
    assert close(
        record["overhead_at_full"], rows["True", "full"]["vs_no_skip_full"] - 1
    )


@pytest.mark.slow
def test_bench_ragged(tmp_path):
    run("bench_ragged.py", tmp_path)
    assert (tmp_path / "ragged-quick.png").stat().st_size > 0
    record = json.loads((tmp_path / "ragged-quick.json").read_text())
    modes = record["modes"]
    assert len(modes) == 7
    corpus = record["corpus"]
    real = round(corpus["mean_length"] * corpus["sentences"])
    for model in ("uni", "bi"):
        rows = record["models"][model]["modes"]
        assert list(rows) == modes
        for name, row in rows.items():
            # Every mode trains on every token of the corpus exactly once and
            # computes the same total loss for the same parameters.
            assert row["real_tokens"] == real, name
            assert math.isclose(
                row["total_loss"], rows[modes[0]]["total_loss"], rel_tol=1e-4
            )
            assert 0 <= row["padding_fraction"] < 1
            assert close(row["padding_fraction"], 1 - real / row["slots"])
            assert close(row["real_tokens_per_s"], real / row["seconds"])
            assert finite_positive(row["mean_training_loss"])
        boundaries = corpus["boundaries"]
        assert rows["flax, global max"]["compiled_shapes"] == 1
        assert rows["seqmask, packed"]["compiled_shapes"] == 1
        assert rows["seqmask, bucketed"]["compiled_shapes"] <= len(boundaries)
        assert rows["flax, bucketed by hand"]["compiled_shapes"] <= len(boundaries)
        # Padding only shrinks from the global maximum to buckets.
        assert (
            rows["seqmask, bucketed"]["padding_fraction"]
            < rows["flax, global max"]["padding_fraction"]
        )
        summary = record["models"][model]["summary"]
        best = summary["best_seqmask_mode"]
        rate = {name: row["real_tokens_per_s"] for name, row in rows.items()}
        assert best.startswith("seqmask") and rate[best] == max(
            rate[name] for name in modes if name.startswith("seqmask")
        )
        assert close(summary["best_over_mode_1"], rate[best] / rate[modes[0]])
        assert close(summary["best_over_mode_3"], rate[best] / rate[modes[2]])
        assert summary["packed_compiled_shapes"] == 1
