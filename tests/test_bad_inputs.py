"""Bad inputs to every public entry point get a clear error, eagerly and traced.

Each case calls a public function with one plausible mistake and asserts the
exception type and the key words of its message (the function's name, the
argument, what was expected). Where the mistake is a *value* (not a shape or
a dtype), the case also has a ``traced`` variant: the same call with the
value traced under ``jax.jit``, which must run under plain ``jit`` and be
reported by ``checkify.checkify``.

The cases live in tables by area (``tests/bad_inputs_*.py``); this file runs
them all.
"""

from __future__ import annotations

import re

import jax
import pytest
from bad_inputs_common import Case, collect
from jax.experimental import checkify

CASES: list[Case] = collect()


def _ids(cases):
    return [case.id for case in cases]


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_eager(case: Case):
    with pytest.raises(case.error) as info:
        case.call()
    message = str(info.value)
    for word in case.words:
        assert re.search(word, message, re.IGNORECASE), (
            f"{word!r} not in the message: {message}"
        )


TRACED = [case for case in CASES if case.traced is not None]


@pytest.mark.parametrize("case", TRACED, ids=_ids(TRACED))
def test_traced_under_checkify(case: Case):
    assert case.traced is not None
    function, args = case.traced
    # Plain jit: the check costs nothing and raises nothing.
    jax.jit(function)(*args)
    error, _ = checkify.checkify(jax.jit(function))(*args)
    message = error.get()
    assert message is not None, "checkify reported nothing"
    for word in case.words:
        assert re.search(word, message, re.IGNORECASE), (
            f"{word!r} not in the checkify message: {message}"
        )


def test_enough_cases():
    assert len(CASES) >= 200
