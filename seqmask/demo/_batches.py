"""Token arrays for the demo's pairs, and reading decoded tokens back.

Exact match is :func:`seqmask.metrics.exact_match` over a batch's
``targets`` and ``target_lengths`` (EOS included on both sides).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

import seqmask._checks as _checks
from seqmask.demo._tasks import EOS, SPECIALS, Pair, Task


class Batch(NamedTuple):
    """A batch of encoded pairs.

    Padded positions hold random symbol ids (never PAD), so a model that
    looked at them would show it.

    Attributes:
      source: ``[B, S]`` int32 source ids, ``S = task.max_source_len``.
      source_mask: ``[B, S]`` bool, true at the valid source positions.
      targets: ``[B, T]`` int32 target ids, EOS, then random ids;
        ``T = task.max_target_len + 1``.
      target_lengths: ``[B]`` int32 target lengths, EOS included.
    """

    source: np.ndarray
    source_mask: np.ndarray
    targets: np.ndarray
    target_lengths: np.ndarray


def encode(
    pairs: Sequence[Pair],
    task: Task,
    rng: np.random.Generator,
    *,
    shift_sources: bool = False,
) -> Batch:
    """Token arrays for ``pairs``, with random ids at every padded position.

    Args:
      pairs: ``(source, target)`` pairs of ``task``.
      task: the task whose vocabularies give the ids.
      rng: draws the padding (and the offsets).
      shift_sources: if false, every source starts at position 0 (right
        padding); if true, at a random offset (padding on the left, the right
        or both).

    Returns:
      A :class:`Batch`.

    Examples:
      >>> import numpy as np
      >>> from seqmask.demo import TASKS, encode
      >>> task = TASKS["numbers"]
      >>> batch = encode([("12", ("twelve",))], task, np.random.default_rng(0))
      >>> batch.source_mask.astype(int)
      array([[1, 1, 0, 0, 0, 0, 0]])
      >>> [task.source_vocabulary[i] for i in batch.source[0, :2]]
      ['1', '2']
      >>> batch.target_lengths, task.target_vocabulary[batch.targets[0, 1]]
      (array([2], dtype=int32), '<eos>')
    """
    first = len(SPECIALS)
    source_index = {c: i + first for i, c in enumerate(task.source_symbols)}
    target_index = {t: i + first for i, t in enumerate(task.target_symbols)}
    rows = len(pairs)
    width_s, width_t = task.max_source_len, task.max_target_len + 1
    source = rng.integers(first, first + len(source_index), (rows, width_s))
    targets = rng.integers(first, first + len(target_index), (rows, width_t))
    source_mask = np.zeros((rows, width_s), bool)
    target_lengths = np.zeros(rows, np.int32)
    for row, (text, target) in enumerate(pairs):
        _check_pair(text, target, task, source_index, target_index)
        ids = [source_index[c] for c in text]
        offset = int(rng.integers(width_s - len(ids) + 1)) if shift_sources else 0
        source[row, offset : offset + len(ids)] = ids
        source_mask[row, offset : offset + len(ids)] = True
        ids = [target_index[t] for t in target] + [EOS]
        targets[row, : len(ids)] = ids
        target_lengths[row] = len(ids)
    return Batch(
        source.astype(np.int32), source_mask, targets.astype(np.int32), target_lengths
    )


def _check_pair(text, target, task: Task, source_index, target_index) -> None:
    """A pair of ``task``: symbols of its vocabularies, within its lengths."""
    for name, symbols, index, longest in (
        ("source", text, source_index, task.max_source_len),
        ("target", target, target_index, task.max_target_len),
    ):
        unknown = sorted({str(s) for s in symbols if s not in index})
        if unknown:
            _checks.fail(
                "encode",
                f"a {name} holds symbols outside the {task.name!r} task's "
                f"vocabulary: {unknown}.",
            )
        if len(symbols) > longest:
            _checks.fail(
                "encode",
                f"a {name} of {len(symbols)} symbols is longer than the "
                f"{task.name!r} task's {longest}.",
            )


def decode_text(tokens, length: int, task: Task) -> str:
    """The text of the first ``length`` decoded ids, without the final EOS.

    Args:
      tokens: ``[T]`` decoded target ids.
      length: how many of them count (EOS included).
      task: the task whose target vocabulary names the ids.

    Returns:
      The target tokens joined by ``task.separator``.

    Examples:
      >>> from seqmask.demo import EOS, TASKS, decode_text
      >>> task = TASKS["numbers"]
      >>> ids = [task.target_vocabulary.index(w) for w in ("forty", "two")]
      >>> decode_text([*ids, EOS, 0], 3, task)
      'forty two'
    """
    ids = [int(t) for t in np.asarray(tokens)[:length]]
    if ids and ids[-1] == EOS:
        ids = ids[:-1]
    vocabulary = task.target_vocabulary
    return task.separator.join(vocabulary[i] for i in ids)
