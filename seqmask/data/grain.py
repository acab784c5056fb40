"""Bucketing and packing as grain transformations (optional: ``seqmask[grain]``).

grain, the JAX ecosystem's data loader, shuffles, shards across hosts and
prefetches; these two ``IterDataset`` transformations add what seqmask does,
on the stream of elements they are given, with the same planning rules as
:func:`seqmask.data.bucket_batches` and :func:`seqmask.data.packed_batches`:

.. code-block:: python

  import grain
  from seqmask.data.grain import BucketBatchIterDataset

  dataset = (
      grain.MapDataset.source(corpus)   # items: arrays [length, ...] or pytrees
      .shuffle(seed=epoch)              # grain shuffles ...
      [jax.process_index()::jax.process_count()]  # ... and shards
      .to_iter_dataset()
  )
  batches = BucketBatchIterDataset(dataset, boundaries=[32, 64, 128], batch_size=16)

A stream has no length distribution to read in advance, so ``boundaries`` are
required (:func:`seqmask.data.bucket_boundaries` of a sample picks some), and
a bucket's partial batch comes out when the stream ends. ``indices`` are
positions in the stream. Checkpoints (``get_state`` / ``set_state``) record
the parent's state at the start of the pass and the number of batches
emitted, and restore by replaying the pass up to there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

import seqmask._checks as _checks
from seqmask.data._batching import (
    batch_of,
    bucket_groups,
    bucket_of,
    bucket_options,
    checked_boundaries,
    packing_of,
    rows_per_bucket,
)
from seqmask.data._common import Reader, item_lengths
from seqmask.data._packing import packed_groups

__all__ = ["BucketBatchIterDataset", "PackedBatchIterDataset"]

try:
    import grain  # pyright: ignore[reportMissingImports]

    _Dataset, _Iterator = grain.IterDataset, grain.DatasetIterator
except ImportError:  # the module stays importable; using it says what to do
    grain = None
    _Dataset = _Iterator = object


def _require_grain(where: str) -> None:
    if grain is None:
        raise ImportError(
            f"{where} needs grain; install it with pip install 'seqmask[grain]'."
        )


class _Batches(_Iterator):  # pyright: ignore[reportGeneralTypeIssues]
    """The batches ``make(elements)`` builds from the parent's elements."""

    def __init__(self, parent, make: Callable[[Iterator[Any]], Iterator[Any]]):
        super().__init__(parent)
        self._make = make
        self._start = parent.get_state()
        self._emitted = 0
        self._batches = make(self._elements())

    def _elements(self) -> Iterator[Any]:
        while True:
            try:
                yield next(self._parent)
            except StopIteration:
                return

    def __next__(self):
        batch = next(self._batches)
        self._emitted += 1
        return batch

    def get_state(self):
        return {"start": self._start, "emitted": self._emitted}

    def set_state(self, state):
        self._start = state["start"]
        self._parent.set_state(self._start)
        self._batches = self._make(self._elements())
        for _ in range(state["emitted"]):
            next(self._batches)
        self._emitted = state["emitted"]


class BucketBatchIterDataset(_Dataset):  # pyright: ignore[reportGeneralTypeIssues]
    """:func:`seqmask.data.bucket_batches` over a grain stream.

    Elements go to the bucket of the smallest boundary at least as long as
    their longest leaf; a bucket's batch comes out as soon as it is full, the
    partial ones (completed with filler rows, or dropped with
    ``drop_remainder``) when the parent is exhausted. Yields
    :class:`seqmask.data.Batch`; arguments as for ``bucket_batches``.
    """

    def __init__(
        self,
        parent,
        *,
        boundaries,
        batch_size: int | None = None,
        max_tokens: int | None = None,
        drop_remainder: bool = False,
        pad_value=0,
        dtype=None,
    ):
        where = "BucketBatchIterDataset"
        _require_grain(where)
        super().__init__(parent)
        self._options = bucket_options(batch_size, max_tokens, drop_remainder, where)
        self._bounds = checked_boundaries(boundaries, where)
        self._rows = rows_per_bucket(self._bounds, batch_size, max_tokens)
        self._pad_value, self._dtype, self._where = pad_value, dtype, where

    def __iter__(self):
        return _Batches(self._parent.__iter__(), self._batches)

    def _batches(self, elements: Iterator[Any]):
        reader = Reader(self._where, self._dtype, self._pad_value)
        _, max_tokens, drop_remainder = self._options
        bounds, rows = self._bounds, self._rows

        def entries():
            for index, element in enumerate(elements):
                leaves = reader.read(index, element)
                length = int(item_lengths([(index, leaves)], self._where)[0])
                bucket = bucket_of(index, length, bounds, rows, max_tokens, self._where)
                yield (index, leaves), bucket

        for bucket, members in bucket_groups(entries(), rows, drop_remainder):
            yield batch_of(members, reader, rows[bucket], int(bounds[bucket]))


class PackedBatchIterDataset(_Dataset):  # pyright: ignore[reportGeneralTypeIssues]
    """:func:`seqmask.data.packed_batches` over a grain stream.

    Elements are packed by first fit into ``batch_size`` rows of ``row_len``
    steps; a batch comes out when the next element fits in none of its rows.
    Yields :class:`seqmask.data.Packing` of shape ``[batch_size, row_len]``;
    arguments as for ``packed_batches``.
    """

    def __init__(
        self, parent, *, batch_size: int, row_len: int, pad_value=0, dtype=None
    ):
        where = "PackedBatchIterDataset"
        _require_grain(where)
        super().__init__(parent)
        self._batch_size = _checks.positive_int(batch_size, "batch_size", where)
        self._row_len = _checks.positive_int(row_len, "row_len", where)
        self._pad_value, self._dtype, self._where = pad_value, dtype, where

    def __iter__(self):
        return _Batches(self._parent.__iter__(), self._batches)

    def _batches(self, elements: Iterator[Any]):
        reader = Reader(self._where, self._dtype, self._pad_value)

        def entries():
            for index, element in enumerate(elements):
                leaves = reader.read(index, element)
                length = int(item_lengths([(index, leaves)], self._where, same=True)[0])
                if length > self._row_len:
                    _checks.fail(
                        self._where,
                        f"sequences[{index}] has length {length}, longer than "
                        f"row_len={self._row_len}; raise row_len or split it.",
                    )
                yield (index, leaves), np.int64(length)

        for group in packed_groups(entries(), self._row_len, self._batch_size):
            yield packing_of(group, reader, self._row_len, self._batch_size)
