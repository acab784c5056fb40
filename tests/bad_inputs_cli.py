"""Bad inputs to the command line (``seqmask.cli.main``) and the demo's
configuration (``seqmask.demo.make_config``).

Every bad option is a usage error: ``main`` exits through argparse with
status 2 and says on stderr which option is wrong and why. A case runs
``main`` with stderr captured and turns its ``SystemExit`` into
:class:`UsageExit`, whose message holds the exit status and stderr, so that
the words of a case check both.
"""

from __future__ import annotations

import contextlib
import io

from bad_inputs_common import Case

from seqmask import cli, demo


class UsageExit(Exception):
    """``main`` exited: ``exit status N`` and what it wrote to stderr."""


def run_cli(*argv: str):
    stderr = io.StringIO()
    try:
        with (
            contextlib.redirect_stderr(stderr),
            contextlib.redirect_stdout(io.StringIO()),
        ):
            cli.main(list(argv))
    except SystemExit as exit_:
        raise UsageExit(f"exit status {exit_.code}\n{stderr.getvalue()}") from None
    raise AssertionError(f"seqmask {' '.join(argv)} did not exit")


def usage(id_: str, argv: tuple[str, ...], *words: str) -> Case:
    """``seqmask *argv`` exits with status 2 and a usage message."""
    return Case(
        f"cli-{id_}",
        lambda: run_cli(*argv),
        UsageExit,
        (r"exit status 2\b", r"usage: seqmask", *words),
    )


CASES: list[Case] = [
    usage(
        "steps-zero",
        ("demo", "--steps", "0"),
        r"seqmask demo: error: argument --steps: must be a positive int; got 0",
    ),
    usage(
        "steps-negative",
        ("demo", "--steps", "-5"),
        r"argument --steps: must be a positive int; got -5",
    ),
    usage("steps-text", ("demo", "--steps", "many"), r"--steps.*invalid int.*many"),
    usage("steps-float", ("demo", "--steps", "1.5"), r"--steps.*invalid int.*1\.5"),
    usage("steps-missing", ("demo", "--steps"), r"--steps.*expected one argument"),
    usage(
        "quick-steps-zero",
        ("demo", "--quick", "--steps", "0"),
        r"argument --steps: must be a positive int; got 0",
    ),
    usage(
        "seed-negative",
        ("demo", "--seed", "-1"),
        r"seqmask demo: error: argument --seed: must be a non-negative int; got -1",
    ),
    usage(
        "seed-too-large",
        ("demo", "--seed", str(2**32)),
        r"argument --seed: must lie in \[0, 4294967295\]; got 4294967296",
    ),
    usage("seed-text", ("demo", "--seed", "abc"), r"--seed.*invalid int.*abc"),
    usage(
        "task-unknown",
        ("demo", "--task", "french"),
        r"seqmask demo: error: argument --task: invalid choice: 'french'",
        r"dates",
        r"numbers",
    ),
    usage(
        "batch-size-zero",
        ("demo", "--batch-size", "0"),
        r"argument --batch-size: must be a positive int; got 0",
    ),
    usage(
        "hidden-negative",
        ("demo", "--hidden", "-8"),
        r"argument --hidden: must be a positive int; got -8",
    ),
    usage(
        "beam-width-zero",
        ("demo", "--beam-width", "0"),
        r"argument --beam-width: must be a positive int; got 0",
    ),
    usage(
        "beam-width-above-vocabulary",
        ("demo", "--beam-width", "100"),
        r"argument --beam-width: must lie in \[1, 14\]",
        r"dates task has 14 target tokens",
        r"got 100",
    ),
    usage(
        "beam-width-above-numbers-vocabulary",
        ("demo", "--task", "numbers", "--beam-width", "34"),
        r"argument --beam-width: must lie in \[1, 33\]",
    ),
    usage(
        "eval-size-zero",
        ("demo", "--eval-size", "0"),
        r"argument --eval-size: must be a positive int; got 0",
    ),
    usage(
        "unknown-option",
        ("demo", "--epochs", "3"),
        r"error: unrecognized arguments: --epochs 3",
    ),
    usage(
        "unknown-command",
        ("train",),
        r"seqmask: error: argument COMMAND: invalid choice: 'train'",
    ),
    Case(
        "make_config-steps-float",
        lambda: demo.make_config(steps=10.0),  # type: ignore[arg-type]
        TypeError,
        (r"seqmask\.demo\.make_config", r"steps must be an int", r"Pass 10"),
    ),
    Case(
        "make_config-task-unknown",
        lambda: demo.make_config("french"),
        ValueError,
        (r"seqmask\.demo\.make_config", r"task must be one of 'dates', 'numbers'"),
    ),
    Case(
        "make_config-quick-string",
        lambda: demo.make_config(quick="yes"),  # type: ignore[arg-type]
        TypeError,
        (r"seqmask\.demo\.make_config", r"quick must be True or False"),
    ),
    Case(
        "make_config-eval-size-negative",
        lambda: demo.make_config(eval_size=-1),
        ValueError,
        (r"seqmask\.demo\.make_config", r"eval_size must be a positive int; got -1"),
    ),
]
