"""The ``seqmask`` command line: ``seqmask demo`` is the main job.

``seqmask demo`` trains an attention encoder-decoder on a translation-like
task made in code and reports held-out exact match for greedy and beam-search
decoding (see :mod:`seqmask.demo`, which holds the job; this module only
parses the options). ``seqmask --version`` prints the installed version. Also
runnable as ``python -m seqmask``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import sys
from collections.abc import Sequence

__all__ = ["main"]

# demo options whose default --quick changes, with their help text.
_SIZES = {
    "steps": "training steps",
    "batch_size": "training examples per step",
    "hidden": "LSTM hidden size (and embedding size)",
    "beam_width": "beam width of the beam search",
    "eval_size": "held-out examples to decode",
}


def _version() -> str:
    try:
        return importlib.metadata.version("seqmask")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        import seqmask

        return seqmask.__version__


def _default(name: str, quick: bool, defaults: dict, quick_defaults: dict) -> str:
    value = (quick_defaults if quick else {}).get(name, defaults[name])
    return "the task's" if value is None else str(value)


def _parser() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    from seqmask import demo

    parser = argparse.ArgumentParser(
        prog="seqmask", description="seqmask: variable-length sequence learning in JAX."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    task_steps = ", ".join(f"{t.name}: {t.steps}" for t in demo.TASKS.values())
    sub = commands.add_parser(
        "demo",
        help="train an attention seq2seq on a translation-like task",
        description="Train an attention encoder-decoder on a task generated in "
        "code and report held-out exact match for greedy and beam decoding. "
        "--quick changes only the defaults: an option given explicitly is kept.",
    )
    sub.add_argument(
        "--task",
        choices=sorted(demo.TASKS),
        default="dates",
        help="dates: human-written dates to ISO 8601; numbers: numbers to English "
        "words (default: dates)",
    )
    for name, text in _SIZES.items():
        full = _default(name, False, demo.DEFAULTS, demo.QUICK_DEFAULTS)
        quick = _default(name, True, demo.DEFAULTS, demo.QUICK_DEFAULTS)
        if name == "steps":
            full = f"the task's ({task_steps})"
        sub.add_argument(
            f"--{name.replace('_', '-')}",
            type=int,
            default=None,
            metavar="N",
            help=f"{text} (default: {full}; with --quick: {quick})",
        )
    sub.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="N",
        help=f"random seed, 0 to {demo.SEED_LIMIT} (default: 0)",
    )
    sub.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: a tiny model and a few steps that check the pipeline "
        "end to end in seconds; its accuracy is not meant to be high",
    )
    sub.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parser, sub


def _as_option(message: str) -> str:
    """A check's message with the argument spelled as its option."""
    message = re.sub(r"^seqmask\.demo\.make_config: ", "", message)
    match = re.match(r"(\w+) (must .*)", message, re.DOTALL)
    if match is None:
        return message
    name, rest = match.groups()
    return f"argument --{name.replace('_', '-')}: {rest}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``seqmask`` console script.

    Args:
      argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
      The exit status: 0 after a run, 2 without a command, 130 (the shell's
      code for Ctrl-C) when the run is interrupted, after one line on
      standard error instead of a traceback. A bad option exits with status
      2 and a usage message (``SystemExit``).

    Examples:
      >>> from seqmask.cli import main
      >>> main([])  # doctest: +ELLIPSIS
      usage: seqmask ...
      2
    """
    parser, demo_parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from seqmask import demo

    try:
        config = demo.make_config(
            args.task,
            quick=args.quick,
            seed=args.seed,
            progress=not args.no_progress,
            **{name: getattr(args, name) for name in _SIZES},
        )
    except (TypeError, ValueError) as error:
        demo_parser.error(_as_option(str(error)))
    try:
        demo.run(config)
    except KeyboardInterrupt:
        print("seqmask demo: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
