"""The ``seqmask`` command line: options, defaults, ``--version`` and runs.

Bad options are in ``tests/bad_inputs_cli.py``; here, what a good command
does. The runs of the demo itself are end-to-end and marked slow.
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import jax
import pytest

from seqmask import cli, demo

ROOT = Path(__file__).resolve().parent.parent


def pyproject_version() -> str:
    with open(ROOT / "pyproject.toml", "rb") as file:
        return tomllib.load(file)["project"]["version"]


def test_version_is_the_package_version(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    out = capsys.readouterr().out.strip()
    assert out == f"seqmask {pyproject_version()}"
    assert importlib.metadata.version("seqmask") == pyproject_version()


def test_no_command_prints_help_and_exits_2(capsys):
    assert cli.main([]) == 2
    out = capsys.readouterr().out
    assert "demo" in out and "--version" in out


def test_demo_help_shows_defaults_and_what_quick_is(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["demo", "--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # undo argparse's wrapping
    expected = [
        "(default: dates)",
        "training steps (default: the task's (dates: 1000, numbers: 1000); "
        "with --quick: 30)",
        "training examples per step (default: 64; with --quick: 64)",
        "(default: 32; with --quick: 8)",
        "beam width of the beam search (default: 4; with --quick: 2)",
        "held-out examples to decode (default: 1000; with --quick: 64)",
        "random seed, 0 to 4294967295 (default: 0)",
        "a smoke run",
        "its accuracy is not meant to be high",
        "an option given explicitly is kept",
    ]
    for phrase in expected:
        assert phrase in text, phrase


@pytest.fixture
def configs(monkeypatch):
    """The configurations ``main`` would run, without running them."""
    seen = []
    monkeypatch.setattr(demo, "run", seen.append)
    return seen


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            [],
            dict(steps=1000, batch_size=64, hidden=32, beam_width=4, eval_size=1000),
        ),
        (
            ["--quick"],
            dict(steps=30, batch_size=64, hidden=8, beam_width=2, eval_size=64),
        ),
        # An explicit option always wins over --quick, before or after it.
        (
            ["--quick", "--steps", "7", "--hidden", "5", "--eval-size", "3"],
            dict(steps=7, batch_size=64, hidden=5, beam_width=2, eval_size=3),
        ),
        (
            ["--beam-width", "3", "--quick", "--batch-size", "16"],
            dict(steps=30, batch_size=16, hidden=8, beam_width=3, eval_size=64),
        ),
        (
            ["--task", "numbers", "--seed", "4294967295", "--no-progress"],
            dict(steps=1000, seed=2**32 - 1, progress=False, task="numbers"),
        ),
    ],
)
def test_options_reach_the_job(configs, argv, expected):
    assert cli.main(["demo", *argv]) == 0
    (config,) = configs
    for name, value in expected.items():
        assert getattr(config, name) == value, name
    assert config.quick == ("--quick" in argv)


def test_ctrl_c_ends_the_run_with_one_line_and_status_130(monkeypatch, capsys):
    def interrupted(config):
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "run", interrupted)
    assert cli.main(["demo", "--quick"]) == 130
    assert capsys.readouterr().err == "seqmask demo: interrupted\n"


@pytest.mark.slow
def test_demo_runs_in_process(capsys):
    """A quick run: the phases in order, progress on stderr, the report."""
    # optax's Adam mixes Python floats and int32 counts: the standard dtype
    # promotion that users run with, not this suite's strict one.
    with jax.numpy_dtype_promotion("standard"):
        assert cli.main(["demo", "--quick", "--seed", "1"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    phases = [
        "--quick: a smoke run",
        "not meant to be high",
        "compiling the training step...",
        "compiled the training step in",
        "trained 30 steps of 64 examples",
        "compiling decoding (greedy and beam search)...",
        "held-out exact match on 64 examples",
        "check: beam search of width 1 equals greedy on 64/64 rows",
        "greedy outputs agree on 64/64 rows",
        "examples (held out):",
        "total time",
    ]
    positions = [out.find(phrase) for phrase in phases]
    assert -1 not in positions, [
        p for p, i in zip(phases, positions, strict=True) if i < 0
    ]
    assert positions == sorted(positions)
    for bar in ("training", "decoding held-out examples", "decoding with the padding"):
        assert re.search(rf"{bar}.*100%", captured.err), bar
    # The report: both decoders scored, and what holds whatever the training
    # did (beam width 1 is greedy; the outputs do not depend on the padding
    # or on where a source sits).
    assert re.search(
        r"held-out exact match on 64 examples .*greedy [\d.]+%, "
        r"beam search \(width 2\) [\d.]+%",
        out,
    )
    difference = float(re.search(r"logits differ by at most (\S+)", out).group(1))
    assert difference < 1e-4
    assert out.count("   [") == 5  # five examples


def test_python_m_seqmask_is_the_cli():
    """``python -m seqmask`` runs the CLI (the demo itself runs in process
    above, and from the installed script in test_wheel.py)."""
    result = subprocess.run(
        [sys.executable, "-m", "seqmask", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == f"seqmask {pyproject_version()}"
