"""Sequence metrics over ragged Python or NumPy sequences, on the host.

A sequence is a list, a tuple, a 1-D NumPy or JAX array or a string (a sequence
of characters); its tokens are any hashable values (ids, words, phoneme
symbols). The dynamic programme is the one of the padded path, a row at a
time in NumPy.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np

import seqmask._checks as _checks

_SEQUENCE = (list, tuple, str, np.ndarray)


def levenshtein(hypothesis: Sequence, reference: Sequence) -> int:
    """The Levenshtein distance of two sequences of hashable tokens."""
    ids: dict = {}
    h = np.array([ids.setdefault(token, len(ids)) for token in hypothesis], np.int64)
    r = np.array([ids.setdefault(token, len(ids)) for token in reference], np.int64)
    columns = np.arange(len(r) + 1)
    row = columns.copy()
    for i, token in enumerate(h, start=1):
        candidates = np.empty_like(row)
        candidates[0] = i
        candidates[1:] = np.minimum(row[:-1] + (r != token), row[1:] + 1)
        row = np.minimum.accumulate(candidates - columns) + columns
    return int(row[-1])


def is_ragged(hypotheses) -> bool:
    """Lists and tuples of sequences take the host path."""
    return isinstance(hypotheses, (list, tuple))


def ragged_pairs(hypotheses, references, multiple: bool, where: str, valid):
    """Checked ``[(hypothesis, [references...]), ...]``; ``valid`` (the
    lengths and masks of padded inputs) must be all None."""
    given = [name for name, value in valid._asdict().items() if value is not None]
    if given:
        _checks.fail(
            where,
            f"{', '.join(given)} apply to padded arrays; the hypotheses are "
            "ragged sequences (a list or tuple), whose lengths are their own.",
        )
    _check_counts(hypotheses, references, "a list or tuple of sequences", where)
    pairs = []
    for index, (hypothesis, reference) in enumerate(
        zip(hypotheses, references, strict=True)
    ):
        hypothesis = _sequence(hypothesis, f"hypotheses[{index}]", where)
        if multiple:
            alternatives = _alternatives(reference, f"references[{index}]", where)
        else:
            alternatives = [_sequence(reference, f"references[{index}]", where)]
        pairs.append((hypothesis, alternatives))
    return pairs


def _check_counts(hypotheses, references, kind: str, where: str) -> None:
    """``references`` is ``kind`` like ``hypotheses``, one entry each."""
    if not isinstance(references, (list, tuple)):
        _checks.fail(
            where,
            f"references must be {kind} like hypotheses; got "
            f"{_checks.describe(references)}.",
            TypeError,
        )
    if len(hypotheses) != len(references):
        _checks.fail(
            where,
            f"hypotheses and references must have one entry each per example; "
            f"got {len(hypotheses)} hypotheses and {len(references)} references.",
        )


def _sequence(value, name, where):
    if isinstance(value, jax.Array):  # a decoder's row, trimmed to its length
        if _checks.is_traced(value):
            _checks.fail(
                where,
                f"{name} is traced: lists of sequences are scored on the host; "
                "under jax.jit pass padded arrays with lengths or masks.",
                TypeError,
            )
        value = np.asarray(value)
    if not isinstance(value, _SEQUENCE) or (
        isinstance(value, np.ndarray) and value.ndim != 1
    ):
        _checks.fail(
            where,
            f"{name} must be a sequence of tokens (a list, tuple, string or 1-D "
            f"array); got {_checks.describe(value)}.{_several(name, value)}",
            TypeError,
        )
    if isinstance(value, (list, tuple)):
        for index, token in enumerate(value):
            try:
                hash(token)
            except TypeError:
                _checks.fail(
                    where,
                    f"{name} must be a sequence of tokens (hashable: ids, strings); "
                    f"{name}[{index}] is {_checks.describe(token)}."
                    f"{_several(name, value)}",
                    TypeError,
                )
    return value


def _several(name: str, value) -> str:
    """The fix when a reference looks like several references."""
    if not name.startswith("references") or "][" in name:
        return ""
    if (
        isinstance(value, (list, tuple))
        and value
        and all(isinstance(v, (list, tuple, str, np.ndarray)) for v in value)
    ):
        return " Several references a hypothesis? Pass multiple_references=True."
    return ""


def _alternatives(value, name, where):
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        _checks.fail(
            where,
            f"with multiple_references, {name} must be a list or tuple of "
            f"references; got {_checks.describe(value)}.",
            TypeError,
        )
    if len(value) == 0:
        _checks.fail(where, f"{name} holds no reference; give at least one.")
    return [_sequence(v, f"{name}[{i}]", where) for i, v in enumerate(value)]


def closest(hypothesis, alternatives) -> tuple[int, int]:
    """``(edits, reference length)`` of the reference with the fewest edits
    (the first among ties)."""
    best = None
    for reference in alternatives:
        edits = levenshtein(hypothesis, reference)
        if best is None or edits < best[0]:
            best = (edits, len(reference))
    assert best is not None
    return best


def rate(edits: int, tokens: int) -> float:
    if tokens == 0:
        return 0.0 if edits == 0 else float("inf")
    return edits / tokens


def words(value, name, where):
    """A string split on whitespace, or a sequence of words as given (a word
    holds no whitespace: a list of sentences is not a list of words)."""
    if isinstance(value, str):
        return value.split()
    if isinstance(value, (list, tuple)) and all(isinstance(w, str) for w in value):
        spaced = [w for w in value if w.split() != [w]]
        if spaced:
            _checks.fail(
                where,
                f"{name} is read as a list of words, but {spaced[0]!r} is not one "
                f"word.{_several(name, value) or ' Give the text as one string.'}",
            )
        return list(value)
    _checks.fail(
        where,
        f"{name} must be a string or a list of words; got {_checks.describe(value)}."
        f"{_several(name, value)}",
        TypeError,
    )


def characters(value, name, where):
    if not isinstance(value, str):
        _checks.fail(
            where,
            f"{name} must be a string; got {_checks.describe(value)}."
            f"{_several(name, value)}",
            TypeError,
        )
    return value


def texts(hypotheses, references, multiple, where, split):
    """``[(hypothesis, [references...]), ...]`` of strings split into tokens.

    One string is one example; its references must then be one string too
    (a list of alternative strings with ``multiple``): a list would read as
    a batch on one side and as one example on the other.
    """
    if isinstance(hypotheses, str):
        alternatives = isinstance(references, (list, tuple)) and all(
            isinstance(r, str) for r in references
        )
        if not (alternatives if multiple else isinstance(references, str)):
            expected = (
                "a list of alternative strings (multiple_references)"
                if multiple
                else "one string too"
            )
            _checks.fail(
                where,
                f"hypotheses is one string, so references must be {expected}; got "
                f"{_checks.describe(references)}. For a batch, give lists of "
                "strings for both.",
                TypeError,
            )
        hypotheses, references = [hypotheses], [references]
    if not isinstance(hypotheses, (list, tuple)):
        _checks.fail(
            where,
            f"hypotheses must be a string or a list of them; got "
            f"{_checks.describe(hypotheses)}.",
            TypeError,
        )
    _check_counts(hypotheses, references, "a list", where)
    pairs = []
    for i, (h, r) in enumerate(zip(hypotheses, references, strict=True)):
        name = f"references[{i}]"
        alternatives = _alternatives(r, name, where) if multiple else [r]
        pairs.append(
            (
                split(h, f"hypotheses[{i}]", where),
                [split(a, name, where) for a in alternatives],
            )
        )
    return pairs
