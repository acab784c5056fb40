"""Chunks for truncated BPTT, and lanes of a sequence stream (``stateful_batches``)."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import seqmask._checks as _checks
from seqmask.data._common import (
    Reader,
    check_not_one_array,
    flatten,
    no_list_of_arrays,
    paths,
    stream,
)

PyTree = Any


class Chunk(NamedTuple):
    """One fixed-length chunk of a batch, ready for a compiled step.

    Attributes:
      xs: the inputs, a pytree whose leaves are ``[*batch, chunk_len, ...]``.
      mask: boolean ``[*batch, chunk_len]``; false at padding (including the
        padding that fills a short last chunk).
      resets: boolean ``[*batch, chunk_len]``, true where a new sequence
        starts, or None when there are none.
      segment_ids: for :func:`stateful_batches`, int32 ``[batch,
        chunk_len]``: the index of the input sequence at each step, -1 at
        padding; None otherwise.
    """

    xs: PyTree
    mask: Any
    resets: Any = None
    segment_ids: Any = None


def chunks(
    xs: PyTree,
    chunk_len: int,
    *,
    mask=None,
    resets=None,
    time_axis: int = 1,
) -> Iterator[Chunk]:
    """Cut a long batch into chunks of ``chunk_len`` steps, padding the last one.

    Every chunk has the same shapes, so a jitted step compiles once: a last
    chunk shorter than ``chunk_len`` is padded with zeros and a false mask.
    Padded steps carry the recurrent state through, so the carry after the
    last chunk is exactly the carry after the last valid step.

    Args:
      xs: a pytree (inputs, targets, ...) whose leaves are ``[*batch, time,
        ...]`` with the time axis at ``time_axis``; NumPy or JAX arrays, or
        nested lists of numbers (a list is read as one array, so give
        several arrays as a tuple or a dict, not a list).
      chunk_len: the number of steps a chunk (a positive int).
      mask: boolean ``[*batch, time]``; None means every step is valid.
      resets: boolean ``[*batch, time]``, true where a new sequence starts;
        None gives chunks with ``resets=None``.
      time_axis: the position of the time axis in the leaves of ``xs``.

    Yields:
      :class:`Chunk` ``(xs, mask, resets)`` with leaves ``[*batch,
      chunk_len, ...]``, sliced from the input's kind of array (NumPy slices
      are views).

    Examples:
      >>> import numpy as np
      >>> from seqmask.data import chunks
      >>> tokens = np.arange(10).reshape(2, 5)
      >>> for chunk in chunks(tokens, 3):
      ...     print(chunk.xs.tolist(), chunk.mask.astype(int).tolist())
      [[0, 1, 2], [5, 6, 7]] [[1, 1, 1], [1, 1, 1]]
      [[3, 4, 0], [8, 9, 0]] [[1, 1, 0], [1, 1, 0]]
    """
    where = "chunks"
    chunk_len = _checks.positive_int(chunk_len, "chunk_len", where)
    leaves, treedef = flatten(xs)
    if not leaves:
        _checks.fail(where, "xs has no arrays to cut.")
    no_list_of_arrays(xs, leaves, "xs", where)
    time_axis = _checks.non_negative_int(time_axis, "time_axis", where)
    leaves = [
        leaf
        if isinstance(leaf, jax.Array)
        else _checks.host_array(leaf, f"xs{path}", where)
        for path, leaf in zip(paths(xs), leaves, strict=True)
    ]
    shapes = [tuple(np.shape(leaf)) for leaf in leaves]
    for path, shape in zip(paths(xs), shapes, strict=True):
        if len(shape) <= time_axis:
            _checks.fail(
                where,
                f"xs{path} has shape {shape}; it needs a time axis at "
                f"time_axis={time_axis}.",
            )
    layout = shapes[0][: time_axis + 1]
    for path, shape in zip(paths(xs), shapes, strict=True):
        if shape[: time_axis + 1] != layout:
            _checks.fail(
                where,
                "every leaf of xs must share the batch and time axes "
                f"{layout}; xs{path} has shape {shape}.",
            )
    time = layout[-1]
    if mask is None:
        mask = np.ones(layout, np.bool_)
    described = "[*batch, time] (the batch and time axes of xs)"
    mask = _checks.bool_array(
        mask, "mask", where, shape=layout, layout=described, host=True
    )
    if resets is not None:
        resets = _checks.bool_array(
            resets, "resets", where, shape=layout, layout=described, host=True
        )

    num_chunks = -(-time // chunk_len)
    padded_time = num_chunks * chunk_len

    def pad(leaf, axis):
        extra = padded_time - np.shape(leaf)[axis]
        if extra == 0:
            return leaf
        widths = [(0, 0)] * np.ndim(leaf)
        widths[axis] = (0, extra)
        if isinstance(leaf, np.ndarray):
            return np.pad(leaf, widths)
        return jnp.pad(jnp.asarray(leaf), widths)

    def cut(leaf, axis, start):
        if isinstance(leaf, np.ndarray):
            index = (slice(None),) * axis + (slice(start, start + chunk_len),)
            return leaf[index]
        # One compiled slice for every start, unlike basic indexing.
        return jax.lax.dynamic_slice_in_dim(leaf, start, chunk_len, axis)

    leaves = [pad(leaf, time_axis) for leaf in leaves]
    mask = pad(mask, time_axis)
    resets = None if resets is None else pad(resets, time_axis)

    # A generator inside, so that bad arguments raise at the call above.
    def generate():
        for index in range(num_chunks):
            start = index * chunk_len
            yield Chunk(
                xs=jax.tree.unflatten(
                    treedef, [cut(leaf, time_axis, start) for leaf in leaves]
                ),
                mask=cut(mask, time_axis, start),
                resets=None if resets is None else cut(resets, time_axis, start),
            )

    return generate()


def stateful_batches(
    sequences: Iterable[Any],
    batch_size: int,
    chunk_len: int,
    *,
    pad_value=0,
    dtype=None,
) -> Iterator[Chunk]:
    """Lay a stream of sequences into ``batch_size`` lanes, chunk by chunk.

    Lane ``i`` of chunk ``k + 1`` continues lane ``i`` of chunk ``k``, so a
    training loop that threads the carry from chunk to chunk sees every
    sequence as one unbroken run. Each sequence goes, whole and contiguous,
    to the lane that becomes free first (ties to the lowest lane), so the
    lanes hold the sequences in the order given; ``resets`` is true exactly
    at each sequence's first step, where the recurrent state must go back to
    the cell's initial carry (the learned one for
    :func:`seqmask.cells.learnable_initial_state`). When the stream runs
    out, lanes that have finished are padded (mask false) until the longest
    lane ends; the last chunk is the one in which that happens. Empty
    sequences have no step to place and are skipped (their index is still
    counted in ``segment_ids``).

    ``sequences`` is consumed lazily, so it may be a generator over a large
    corpus. The layout is deterministic: to resume after ``k`` chunks, call
    again with the same sequences and skip ``k`` chunks
    (``itertools.islice(stateful_batches(...), k, None)``).

    Args:
      sequences: an iterable of arrays ``[length, ...]`` (or token lists);
        all share the trailing shape.
      batch_size: the number of lanes ``B``.
      chunk_len: the number of steps a chunk ``K``.
      pad_value: the input value at padded steps.
      dtype: the dtype of the chunks' inputs; default: the first non-empty
        sequence's dtype, as JAX canonicalises it (int64 -> int32 unless x64
        is on).

    Yields:
      :class:`Chunk` ``(xs, mask, resets, segment_ids)``: ``xs`` is a NumPy
      array ``[B, K, ...]``, ``mask`` and ``resets`` are boolean ``[B, K]``,
      ``segment_ids`` int32 ``[B, K]`` (the index of the sequence at each
      step, -1 at padding).

    Examples:
      >>> from seqmask.data import stateful_batches
      >>> seqs = [[1, 2, 3], [4, 5], [6, 7, 8, 9], [10]]
      >>> for chunk in stateful_batches(seqs, batch_size=2, chunk_len=3):
      ...     print(chunk.xs.tolist(), chunk.resets.astype(int).tolist())
      [[1, 2, 3], [4, 5, 6]] [[1, 0, 0], [1, 0, 1]]
      [[10, 0, 0], [7, 8, 9]] [[1, 0, 0], [0, 0, 0]]
    """
    where = "stateful_batches"
    batch_size = _checks.positive_int(batch_size, "batch_size", where)
    chunk_len = _checks.positive_int(chunk_len, "chunk_len", where)
    check_not_one_array(sequences, where)
    reader = Reader(where, dtype, pad_value, tree=False)
    return _lanes(stream(sequences, reader), reader, batch_size, chunk_len)


def _lanes(
    items: Iterator[tuple[int, list[np.ndarray]]],
    reader: Reader,
    batch_size: int,
    chunk_len: int,
) -> Iterator[Chunk]:
    """The generator behind :func:`stateful_batches`."""
    # (absolute step at which the lane is free, lane): the heap hands the next
    # sequence to the lane that frees first.
    free: list[tuple[int, int]] = [(0, lane) for lane in range(batch_size)]
    # Per lane: the (index, array, absolute start) of sequences not yet emitted.
    pending: list[list[tuple[int, np.ndarray, int]]] = [[] for _ in range(batch_size)]
    exhausted = False
    chunk_start = 0
    while True:
        chunk_end = chunk_start + chunk_len
        while not exhausted and free[0][0] < chunk_end:
            item = next(items, None)
            if item is None:
                exhausted = True
                break
            index, (sequence,) = item
            if len(sequence) == 0:
                continue
            start, lane = heapq.heappop(free)
            pending[lane].append((index, sequence, start))
            heapq.heappush(free, (start + len(sequence), lane))
        if not any(pending):
            return
        xs = np.full(
            (batch_size, chunk_len, *reader.leaf_trailing(0)),
            reader.pad_values[0],
            reader.leaf_dtype(0),
        )
        mask = np.zeros((batch_size, chunk_len), np.bool_)
        resets = np.zeros((batch_size, chunk_len), np.bool_)
        segment_ids = np.full((batch_size, chunk_len), -1, np.int32)
        for lane, segments in enumerate(pending):
            for index, sequence, start in segments:
                first = max(start, chunk_start)
                last = min(start + len(sequence), chunk_end)
                xs[lane, first - chunk_start : last - chunk_start] = sequence[
                    first - start : last - start
                ]
                mask[lane, first - chunk_start : last - chunk_start] = True
                segment_ids[lane, first - chunk_start : last - chunk_start] = index
                if start >= chunk_start:
                    resets[lane, start - chunk_start] = True
            pending[lane] = [s for s in segments if s[2] + len(s[1]) > chunk_end]
        yield Chunk(xs=xs, mask=mask, resets=resets, segment_ids=segment_ids)
        chunk_start = chunk_end
