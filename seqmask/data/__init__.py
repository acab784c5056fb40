"""Data layouts for stateful and long-sequence training: chunks, lanes, packing.

These functions turn variable-length sequences into the fixed-shape arrays a
compiled step wants (inputs, a boolean ``mask`` of valid steps and boolean
``resets`` where a new sequence starts) and read results back.
:func:`chunks` cuts a long batch into chunks of equal length for truncated
backpropagation through time; :func:`stateful_batches` lays a stream of
sequences into lanes so that lane ``i`` of one chunk continues lane ``i`` of
the previous one; :func:`pack` puts several short sequences into each row of a
batch, and :func:`unpack` and :func:`segment_final_carries` read each
sequence's outputs and final carry back. :func:`bucket_batches` (few shapes,
little padding) and :func:`packed_batches` (one shape, several sequences a
row) turn a whole corpus into batches for an epoch; :mod:`seqmask.data.grain`
offers both as grain transformations (``pip install seqmask[grain]``). The
layouts are built on the host with NumPy (they depend on data, not on traced
values); the arrays they produce have static shapes, so a step compiled for
one chunk serves them all.
"""

from seqmask.data._batching import Batch as Batch
from seqmask.data._batching import bucket_batches as bucket_batches
from seqmask.data._batching import bucket_boundaries as bucket_boundaries
from seqmask.data._batching import packed_batches as packed_batches
from seqmask.data._chunks import Chunk as Chunk
from seqmask.data._chunks import chunks as chunks
from seqmask.data._chunks import stateful_batches as stateful_batches
from seqmask.data._packing import Packing as Packing
from seqmask.data._packing import pack as pack
from seqmask.data._packing import segment_final_carries as segment_final_carries
from seqmask.data._packing import unpack as unpack

__all__ = [
    "Batch",
    "Chunk",
    "Packing",
    "chunks",
    "stateful_batches",
    "pack",
    "unpack",
    "segment_final_carries",
    "bucket_batches",
    "bucket_boundaries",
    "packed_batches",
]
