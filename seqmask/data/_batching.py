"""Batches with few shapes and little padding: bucketing and packing a corpus.

:func:`bucket_batches` groups sequences of similar length and pads each batch
to its bucket's boundary, so a compiled step sees at most one shape per
boundary; :func:`packed_batches` packs several sequences into each row of
fixed ``[batch_size, row_len]`` batches, so it sees one shape. Both read the
whole corpus first (errors come at the call), plan the batches, and then
build each batch on the host with NumPy when it is asked for.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

import jax
import numpy as np

import seqmask._checks as _checks
from seqmask.data._common import Batches, Reader, item_lengths, pad_items, read_all
from seqmask.data._packing import Packing, lay_out, packed_groups

PyTree = Any


class Batch(NamedTuple):
    """One batch of :func:`bucket_batches`.

    Each field is shaped like one item of the data (an array, or a pytree of
    arrays such as ``{"source": ..., "target": ...}``); every leaf is padded
    on its own, with its own lengths and mask.

    Attributes:
      inputs: leaves ``[rows, length, ...]``, ``length`` the bucket's boundary,
        ``pad_value`` after each sequence.
      lengths: leaves int32 ``[rows]``, the length of each row's sequence (0
        for a filler row).
      mask: leaves boolean ``[rows, length]``, true at the valid steps.
      indices: int64 ``[rows]``, the position of each row's item in
        ``sequences``; -1 for a filler row (one that completes the last batch
        of a bucket).
    """

    inputs: PyTree
    lengths: PyTree
    mask: PyTree
    indices: np.ndarray


def bucket_boundaries(lengths, *, num_buckets: int = 8) -> tuple[int, ...]:
    """Bucket boundaries at the quantiles of ``lengths``.

    Boundary ``j`` is the smallest length such that at least ``j /
    num_buckets`` of the sequences are no longer, so the buckets hold about
    equally many sequences; the last is the longest length (at least 1).
    Equal quantiles merge, so there may be fewer than ``num_buckets``.

    Args:
      lengths: non-negative integer lengths, shape ``[num_sequences]``.
      num_buckets: the most boundaries to return.

    Returns:
      Increasing positive ints.

    Examples:
      >>> from seqmask.data import bucket_boundaries
      >>> bucket_boundaries([3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5], num_buckets=3)
      (3, 5, 9)
    """
    where = "bucket_boundaries"
    num_buckets = _checks.positive_int(num_buckets, "num_buckets", where)
    lengths = _int_vector(lengths, "lengths", where)
    _checks.in_range(lengths, "lengths", where, low=0)
    ordered = np.sort(lengths)
    # The smallest length with at least j / num_buckets of the data at or
    # below it, for j = 1 .. num_buckets.
    counts = -(-np.arange(1, num_buckets + 1) * len(ordered) // num_buckets)
    return tuple(sorted({max(int(ordered[c - 1]), 1) for c in counts}))


def _int_vector(value, name: str, where: str) -> np.ndarray:
    """A non-empty 1-D NumPy array of ints."""
    array = _checks.host_array(value, name, where)
    if array.ndim != 1 or array.size == 0 or array.dtype.kind not in "iu":
        wrong_type = array.ndim == 0 or (array.size and array.dtype.kind not in "iu")
        _checks.fail(
            where,
            f"{name} must be a non-empty sequence of ints; got "
            f"{_checks.describe(value)}.",
            TypeError if wrong_type else ValueError,
        )
    return array


def checked_boundaries(boundaries, where: str) -> np.ndarray:
    array = _int_vector(boundaries, "boundaries", where)
    # Compared, not subtracted: np.diff of unsigned ints wraps.
    if array[0] < 1 or np.any(array[1:] <= array[:-1]):
        _checks.fail(
            where,
            "boundaries must be positive and strictly increasing; got "
            f"{array.tolist()}.",
        )
    return array.astype(np.int64)


def bucket_groups(entries, rows_per_bucket, drop_remainder: bool):
    """``(bucket, items)`` of every batch, from the entries ``(item, bucket)``
    in order: a bucket's batch comes out as soon as it is full, the partial
    ones at the end (in bucket order), unless ``drop_remainder``."""
    waiting: list[list] = [[] for _ in rows_per_bucket]
    for item, bucket in entries:
        waiting[bucket].append(item)
        if len(waiting[bucket]) == rows_per_bucket[bucket]:
            yield bucket, waiting[bucket]
            waiting[bucket] = []
    if not drop_remainder:
        yield from ((bucket, rest) for bucket, rest in enumerate(waiting) if rest)


def batch_of(members, reader, rows: int, length: int) -> Batch:
    """The :class:`Batch` of ``members`` ``(index, leaves)``, in ``rows`` rows
    of ``length`` steps (filler rows after them)."""
    padded = pad_items(members, reader, rows, length)
    indices = np.full(rows, -1, np.int64)
    indices[: len(members)] = [index for index, _ in members]

    def tree(field):
        return jax.tree.unflatten(reader.structure, [getattr(p, field) for p in padded])

    return Batch(tree("values"), tree("lengths"), tree("mask"), indices)


def bucket_options(batch_size, max_tokens, drop_remainder, where: str):
    """Checked ``batch_size``, ``max_tokens`` (at least one) and
    ``drop_remainder``."""
    batch_size = _checks.optional_positive_int(batch_size, "batch_size", where)
    max_tokens = _checks.optional_positive_int(max_tokens, "max_tokens", where)
    if batch_size is None and max_tokens is None:
        _checks.fail(where, "give batch_size or max_tokens (or both).")
    drop_remainder = _checks.flag(drop_remainder, "drop_remainder", where)
    return batch_size, max_tokens, drop_remainder


def rows_per_bucket(boundaries, batch_size, max_tokens) -> list[int]:
    """Rows in a batch of each bucket: ``batch_size``, or as many rows of the
    boundary's length as ``max_tokens`` allows (the smaller of the two); 0
    where not even one row fits the budget."""
    rows = []
    for boundary in boundaries:
        fitting = None if max_tokens is None else max_tokens // int(boundary)
        if batch_size is None or (fitting is not None and fitting < batch_size):
            rows.append(fitting)
        else:
            rows.append(batch_size)
    return rows


def bucket_of(index: int, length: int, bounds, rows, max_tokens, where: str) -> int:
    """The bucket of ``sequences[index]``; ``ValueError`` when it is longer
    than every boundary, or its bucket's row does not fit ``max_tokens``."""
    bucket = int(np.searchsorted(bounds, length, side="left"))
    if bucket == len(bounds):
        _checks.fail(
            where,
            f"sequences[{index}] has length {length}, longer than the largest "
            f"boundary {int(bounds[-1])}; add a boundary of at least {length}.",
        )
    if rows[bucket] == 0:
        boundary = int(bounds[bucket])
        _checks.fail(
            where,
            f"max_tokens={max_tokens} is smaller than one row of the bucket of "
            f"length {boundary} (sequences[{index}] has length {length}); raise "
            f"max_tokens to at least {boundary}.",
        )
    return bucket


def bucket_batches(
    sequences: Iterable[Any],
    *,
    batch_size: int | None = None,
    max_tokens: int | None = None,
    boundaries=None,
    shuffle: bool = False,
    seed: int = 0,
    drop_remainder: bool = False,
    pad_value=0,
    dtype=None,
) -> Iterator[Batch]:
    """Batches of sequences of similar length, each padded to its bucket.

    An item's length is the length of its longest leaf; it goes to the
    bucket of the smallest boundary at least that long, and every leaf of a
    batch is padded to that boundary, so at most ``len(boundaries)`` shapes
    ever reach a compiled step. A batch has ``batch_size`` rows, or as many
    rows of the boundary's length as fit in ``max_tokens`` padded tokens (the
    smaller when both are given). The last batch of a bucket is completed
    with filler rows (length 0, index -1) so that its shape is the bucket's,
    or dropped with ``drop_remainder``. Every sequence appears exactly once
    per pass (except in dropped remainders).

    Without ``shuffle`` the sequences fill their buckets in the order given
    and a batch comes out when its bucket is full (the partial ones last);
    with ``shuffle`` they fill in a random order and the batches come out in
    a random order, both drawn from ``seed``: the same seed gives the same
    batches. For a new order each epoch, call again with ``seed=epoch``.

    Args:
      sequences: items, each an array ``[length, ...]`` (NumPy, JAX, or a
        (nested) list of numbers) or a pytree of them (tuples, dicts), e.g.
        ``{"source": s, "target": t}`` for seq2seq. Read once, at the call.
      batch_size: rows a batch.
      max_tokens: the most padded tokens (``rows * boundary``) a batch.
      boundaries: increasing ints; default: :func:`bucket_boundaries` of the
        data's lengths (up to 8, at their quantiles).
      shuffle: draw the order from ``seed``.
      seed: the seed of the order (a non-negative int).
      drop_remainder: drop the partial last batch of each bucket.
      pad_value: the value at padded steps (one, or a pytree like the items).
      dtype: the dtype of the inputs (one, or a pytree like the items);
        default: each leaf's first non-empty sequence's, as JAX canonicalises
        it. Values that do not fit it raise.

    Returns:
      An iterator of :class:`Batch` (NumPy arrays), with ``len()`` the number
      of batches in the pass.

    Raises:
      ValueError: no sequence, a sequence longer than the largest boundary,
        a ``max_tokens`` smaller than one row of a bucket, neither
        ``batch_size`` nor ``max_tokens``, items of different pytree
        structure, or values (or ``pad_value``) that do not fit the dtype.
      TypeError: items that are not numeric arrays.

    Examples:
      >>> from seqmask.data import bucket_batches
      >>> data = [[1, 2, 3], [4], [5, 6], [7, 8, 9, 10], [11]]
      >>> for batch in bucket_batches(data, batch_size=2, boundaries=[2, 4]):
      ...     print(batch.inputs.tolist(), batch.indices.tolist())
      [[4, 0], [5, 6]] [1, 2]
      [[1, 2, 3, 0], [7, 8, 9, 10]] [0, 3]
      [[11, 0], [0, 0]] [4, -1]
    """
    where = "bucket_batches"
    batch_size, max_tokens, drop_remainder = bucket_options(
        batch_size, max_tokens, drop_remainder, where
    )
    order_rng = _order(shuffle, seed, where)
    reader = Reader(where, dtype, pad_value)
    items = read_all(sequences, reader)
    lengths = item_lengths(items, where)
    bounds = (
        np.asarray(bucket_boundaries(lengths))
        if boundaries is None
        else checked_boundaries(boundaries, where)
    )
    rows = rows_per_bucket(bounds, batch_size, max_tokens)
    buckets = [
        bucket_of(i, int(n), bounds, rows, max_tokens, where)
        for i, n in enumerate(lengths)
    ]
    order = (
        np.arange(len(items))
        if order_rng is None
        else order_rng.permutation(len(items))
    )
    plan = list(bucket_groups(((p, buckets[p]) for p in order), rows, drop_remainder))
    if order_rng is not None:
        plan = [plan[i] for i in order_rng.permutation(len(plan))]
    return Batches(
        (
            batch_of([items[p] for p in positions], reader, rows[b], int(bounds[b]))
            for b, positions in plan
        ),
        len(plan),
    )


def _order(shuffle, seed, where) -> np.random.Generator | None:
    """The random generator of the order, or None without ``shuffle``."""
    shuffle = _checks.flag(shuffle, "shuffle", where)
    seed = _checks.non_negative_int(seed, "seed", where)
    return np.random.default_rng(seed) if shuffle else None


def packed_batches(
    sequences: Iterable[Any],
    *,
    batch_size: int,
    row_len: int,
    shuffle: bool = False,
    seed: int = 0,
    pad_value=0,
    dtype=None,
) -> Iterator[Packing]:
    """Fixed-shape batches of packed rows: one compiled shape for the epoch.

    The sequences (in the order given, or shuffled from ``seed``) are packed
    by :func:`seqmask.data.pack`'s first fit into ``batch_size`` rows of
    ``row_len`` steps; a batch is complete when the next sequence fits in
    none of its rows, and the next batch starts with it. Every batch is
    ``[batch_size, row_len]`` (rows left empty are padding), and every
    sequence appears exactly once per pass. Each :class:`Packing` has the
    resets, segment ids and positions a layer and a loss need
    (``segment_ids=`` of :mod:`seqmask.losses`), and ``indices``: where each
    of its sequences sits in ``sequences``. For a new order each epoch, call
    again with ``seed=epoch``.

    Args:
      sequences: items, each an array ``[length, ...]`` or a pytree of arrays
        that share their length (e.g. ``{"inputs": x, "targets": y}``).
      batch_size: rows a batch.
      row_len: steps a row; no sequence may be longer.
      shuffle: draw the order from ``seed``.
      seed: the seed of the order (a non-negative int).
      pad_value: the value at padded steps (one, or a pytree like the items).
      dtype: the dtype of the inputs (one, or a pytree like the items).

    Returns:
      An iterator of :class:`Packing` (NumPy arrays), with ``len()`` the
      number of batches in the pass.

    Raises:
      ValueError: no sequence, a sequence longer than ``row_len``, items of
        different structure or with leaves of different lengths, or values
        that do not fit the dtype.
      TypeError: items that are not numeric arrays.

    Examples:
      >>> from seqmask.data import packed_batches
      >>> data = [[1, 2, 3], [4, 5], [6], [7, 8, 9], [10, 11]]
      >>> for packing in packed_batches(data, batch_size=2, row_len=4):
      ...     print(packing.inputs.tolist(), packing.indices.tolist())
      [[1, 2, 3, 6], [4, 5, 0, 0]] [0, 1, 2]
      [[7, 8, 9, 0], [10, 11, 0, 0]] [3, 4]
    """
    where = "packed_batches"
    batch_size = _checks.positive_int(batch_size, "batch_size", where)
    row_len = _checks.positive_int(row_len, "row_len", where)
    order_rng = _order(shuffle, seed, where)
    reader = Reader(where, dtype, pad_value)
    items = read_all(sequences, reader)
    lengths = item_lengths(items, where, same=True)
    if np.any(lengths > row_len):
        index = int(np.flatnonzero(lengths > row_len)[0])
        _checks.fail(
            where,
            f"sequences[{index}] has length {lengths[index]}, longer than "
            f"row_len={row_len}; raise row_len or split the sequence.",
        )
    order = (
        np.arange(len(items))
        if order_rng is None
        else order_rng.permutation(len(items))
    )
    groups = list(
        packed_groups(((items[p], lengths[p]) for p in order), row_len, batch_size)
    )
    return Batches(
        (packing_of(group, reader, row_len, batch_size) for group in groups),
        len(groups),
    )


def packing_of(group, reader, row_len: int, batch_size: int) -> Packing:
    """The :class:`Packing` of one group of :func:`packed_groups`, whose items
    are ``(index, leaves)``."""
    members = [item for item, _, _ in group]
    lengths = np.array([len(leaves[0]) for _, leaves in members], np.int64)
    rows = np.array([row for _, row, _ in group], np.int64)
    starts = np.array([start for _, _, start in group], np.int64)
    return lay_out(members, reader, rows, starts, lengths, row_len, batch_size)
