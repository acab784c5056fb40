r"""Edit distance, exact match and error rates, padded (JAX) or ragged (host).

Each function takes the hypotheses first and the references second. Arrays
are padded batches, computed in JAX (under ``jit`` with static shapes);
lists or tuples of sequences are ragged, computed on the host with NumPy.
"""

from __future__ import annotations

import numpy as np

import seqmask._checks as _checks
from seqmask.metrics import _padded, _ragged


def _pairs(where, hypotheses, references, valid, multiple_references):
    """``(ragged, pairs)``: the checked pairs of hypotheses and references,
    ragged on the host or padded (see ``_ragged`` and ``_padded``)."""
    multiple = _checks.flag(multiple_references, "multiple_references", where)
    if isinstance(hypotheses, str):
        _checks.fail(
            where,
            "hypotheses must be a padded integer array or a list or tuple of "
            f"sequences; got str {hypotheses!r}. Give one example as a list: "
            f"[{hypotheses!r}].",
            TypeError,
        )
    if _ragged.is_ragged(hypotheses):
        pairs = _ragged.ragged_pairs(hypotheses, references, multiple, where, valid)
        return True, pairs
    return False, _padded.padded_pairs(hypotheses, references, valid, multiple, where)


def edit_distance(
    hypotheses,
    references,
    *,
    hypothesis_lengths=None,
    reference_lengths=None,
    hypothesis_mask=None,
    reference_mask=None,
    multiple_references: bool = False,
):
    r"""The Levenshtein distance of each hypothesis to its reference.

    The least number of token insertions, deletions and substitutions that
    turn the hypothesis into the reference (each costs 1). It is symmetric,
    0 only for equal sequences, and the length of the other sequence when
    one is empty.

    Args:
      hypotheses: padded integer ids ``[*batch, T]``, or a list or tuple of
        ragged sequences (lists, tuples, 1-D arrays or strings) of hashable
        tokens.
      references: the same form: ``[*batch, T']`` (``[*batch, R, T']`` with
        ``multiple_references``), or a list of sequences (of lists of
        sequences with ``multiple_references``).
      hypothesis_lengths, reference_lengths: integer lengths of the padded
        rows (``[*batch]``; ``[*batch, R]`` for several references); default
        the whole row.
      hypothesis_mask, reference_mask: boolean ``[*batch, T]`` alternatives
        to the lengths: the tokens where the mask is true, in order.
      multiple_references: each hypothesis has several references (the
        distance to each is returned). Padded, every row has ``R`` of them:
        give a row with fewer a copy of one of its references in each spare
        slot. A slot of length 0 is an *empty reference*, which an empty
        hypothesis matches exactly; ragged lists have no such slots.

    Returns:
      int32 ``[*batch]`` (``[*batch, R]``) for padded inputs; for ragged
      ones, a NumPy int array of one distance a pair (a list of arrays,
      one per hypothesis, with ``multiple_references``).

    Examples:
      >>> import jax.numpy as jnp
      >>> from seqmask import metrics
      >>> print(metrics.edit_distance(["kitten", "flaw"], ["sitting", "lawn"]))
      [3 2]
      >>> hypotheses = jnp.array([[1, 2, 3, 0], [4, 4, 0, 0]])
      >>> references = jnp.array([[1, 3, 0], [4, 0, 0]])
      >>> print(metrics.edit_distance(hypotheses, references,
      ...                             hypothesis_lengths=jnp.array([3, 2]),
      ...                             reference_lengths=jnp.array([2, 1])))
      [1 1]
    """
    valid = _padded.Valid(
        hypothesis_lengths, reference_lengths, hypothesis_mask, reference_mask
    )
    ragged, pairs = _pairs(
        "edit_distance", hypotheses, references, valid, multiple_references
    )
    if ragged:
        distances = [
            np.array([_ragged.levenshtein(h, r) for r in refs], np.int32)
            for h, refs in pairs
        ]
        if multiple_references:
            return distances
        return np.array([d[0] for d in distances], np.int32)
    return _padded.edit_distance_padded(*pairs)


def exact_match(
    hypotheses,
    references,
    *,
    hypothesis_lengths=None,
    reference_lengths=None,
    hypothesis_mask=None,
    reference_mask=None,
    multiple_references: bool = False,
):
    """Whether each hypothesis equals its reference (any of them).

    Two sequences match when they have the same length and the same token
    at every position; padding never counts. With several references a
    hypothesis matches when it equals any one of them. The sequence
    accuracy of a batch is the mean of the result; the sentence (or word,
    in grapheme-to-phoneme) error rate is one minus it.

    Args:
      hypotheses, references, hypothesis_lengths, reference_lengths,
        hypothesis_mask, reference_mask, multiple_references: as
        :func:`edit_distance`.

    Returns:
      bool ``[*batch]`` for padded inputs, a NumPy bool array for ragged
      ones.

    Examples:
      >>> import jax.numpy as jnp
      >>> from seqmask import metrics
      >>> print(metrics.exact_match([[1, 2], [3]], [[[1, 2]], [[4], [3]]],
      ...                           multiple_references=True))
      [ True  True]
      >>> print(metrics.exact_match(jnp.array([[1, 2, 9], [3, 9, 9]]),
      ...                           jnp.array([[1, 2], [3, 4]]),
      ...                           hypothesis_lengths=jnp.array([2, 1])))
      [ True False]
    """
    valid = _padded.Valid(
        hypothesis_lengths, reference_lengths, hypothesis_mask, reference_mask
    )
    ragged, pairs = _pairs(
        "exact_match", hypotheses, references, valid, multiple_references
    )
    if ragged:
        return np.array([any(_same(h, r) for r in refs) for h, refs in pairs], np.bool_)
    same = _padded.exact_match_padded(*pairs)
    return same.any(axis=-1) if multiple_references else same


def _same(hypothesis, reference) -> bool:
    return len(hypothesis) == len(reference) and all(
        a == b for a, b in zip(hypothesis, reference, strict=True)
    )


def token_error_rate(
    hypotheses,
    references,
    *,
    hypothesis_lengths=None,
    reference_lengths=None,
    hypothesis_mask=None,
    reference_mask=None,
    multiple_references: bool = False,
):
    r"""The token error rate (the phoneme error rate for phoneme tokens).

    Corpus-level: the total number of edits over the total number of
    reference tokens,

    .. math::

      \mathrm{TER} = \frac{\sum_i d(h_i, r_i)}{\sum_i |r_i|},

    with :math:`d` the Levenshtein distance (:func:`edit_distance`). With
    several references a hypothesis counts against its closest one: the
    reference with the fewest edits (the first of them on a tie), whose
    length enters the denominator. The rate is 0 when there are no edits
    and no reference tokens, ``inf`` when there are edits but no reference
    tokens; it can exceed 1 (insertions).

    Args:
      hypotheses, references, hypothesis_lengths, reference_lengths,
        hypothesis_mask, reference_mask, multiple_references: as
        :func:`edit_distance`.

    Returns:
      A float32 scalar for padded inputs, a Python float for ragged ones.

    Examples:
      >>> from seqmask import metrics
      >>> hypotheses = [["K", "AE", "T"], ["D", "AO", "G", "Z"]]
      >>> references = [[["K", "AE", "T"]], [["D", "AA", "G"], ["D", "AO", "G"]]]
      >>> print(round(metrics.token_error_rate(hypotheses, references,
      ...                                      multiple_references=True), 4))
      0.1667
    """
    valid = _padded.Valid(
        hypothesis_lengths, reference_lengths, hypothesis_mask, reference_mask
    )
    ragged, pairs = _pairs(
        "token_error_rate", hypotheses, references, valid, multiple_references
    )
    if ragged:
        return _host_rate(pairs)
    h, h_lengths, r, r_lengths = pairs
    distances = _padded.edit_distance_padded(h, h_lengths, r, r_lengths)
    return _padded.error_rate_padded(distances, r_lengths, multiple_references)


def _host_rate(pairs) -> float:
    edits = tokens = 0
    for hypothesis, alternatives in pairs:
        e, n = _ragged.closest(hypothesis, alternatives)
        edits, tokens = edits + e, tokens + n
    return _ragged.rate(edits, tokens)


def word_error_rate(hypotheses, references, *, multiple_references=False) -> float:
    r"""The word error rate: :func:`token_error_rate` over words.

    Each hypothesis and reference is a string, split on whitespace (no other
    normalisation: lower-case or strip punctuation first if wanted), or a
    list of words. Corpus-level, total word edits over total reference
    words; with ``multiple_references`` each reference entry is a list of
    alternatives and the closest one counts (see :func:`token_error_rate`).
    One string is one example and a list a batch: a string hypothesis takes
    a string reference (a list of alternative strings with
    ``multiple_references``); mixing the forms raises ``TypeError``, since a
    list would read as a batch on one side and as words on the other.

    Args:
      hypotheses: a string or a list of strings (or of word lists).
      references: the same form; with ``multiple_references``, each entry a
        list of alternatives.
      multiple_references: each hypothesis has several references.

    Returns:
      A Python float.

    Examples:
      >>> from seqmask import metrics
      >>> print(metrics.word_error_rate(["the cat sat"], ["the cat sat down"]))
      0.25
    """
    where = "word_error_rate"
    _checks.flag(multiple_references, "multiple_references", where)
    return _host_rate(
        _ragged.texts(hypotheses, references, multiple_references, where, _ragged.words)
    )


def character_error_rate(hypotheses, references, *, multiple_references=False) -> float:
    r"""The character error rate: :func:`token_error_rate` over characters.

    Each hypothesis and reference is a string; every character counts,
    spaces included, with no normalisation. Corpus-level, total character
    edits over total reference characters; ``multiple_references`` and the
    forms (one string, or a list of them on both sides) as in
    :func:`word_error_rate`.

    Args:
      hypotheses: a string or a list of strings.
      references: the same form; with ``multiple_references``, each entry a
        list of alternative strings.
      multiple_references: each hypothesis has several references.

    Returns:
      A Python float.

    Examples:
      >>> from seqmask import metrics
      >>> print(metrics.character_error_rate("kitten", "sitting"))
      0.42857142857142855
    """
    where = "character_error_rate"
    _checks.flag(multiple_references, "multiple_references", where)
    return _host_rate(
        _ragged.texts(
            hypotheses, references, multiple_references, where, _ragged.characters
        )
    )
