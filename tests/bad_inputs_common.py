"""The record of one bad-input case, and the collection of every table.

A table is a module ``tests/bad_inputs_<area>.py`` with a list ``CASES`` of
:class:`Case`. Words are regular expressions matched case-insensitively.
"""

from __future__ import annotations

import importlib
import pathlib
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple


class Case(NamedTuple):
    """One bad input.

    Attributes:
      id: a short unique name, ``<function>-<mistake>``.
      call: runs the public function with the mistake, eagerly.
      error: the exception type it must raise.
      words: regular expressions the message must contain (the function's
        name, the argument, the bound ...).
      traced: for value mistakes, ``(function, args)``: ``function(*args)``
        makes the same mistake with the values traced under ``jit``.
    """

    id: str
    call: Callable[[], Any]
    error: type[Exception]
    words: Sequence[str]
    traced: tuple[Callable[..., Any], tuple] | None = None


def collect() -> list[Case]:
    cases: list[Case] = []
    here = pathlib.Path(__file__).parent
    for path in sorted(here.glob("bad_inputs_*.py")):
        if path.stem == "bad_inputs_common":
            continue
        module = importlib.import_module(path.stem)
        cases.extend(module.CASES)
    ids = [case.id for case in cases]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"bad-input case ids must be unique; repeated: {duplicates}")
    return cases
