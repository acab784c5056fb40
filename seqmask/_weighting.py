"""Sums per sequence and division by zero, shared by the losses and the weights.

A *sequence* is a row of axis 0 (``[B, ...]``) or, with ``segment_ids``
(integers ``[B, T]``, negative at padding, as
:attr:`seqmask.data.Packing.segment_ids`), a run of equal ids within a row:
several sequences packed into one row are told apart by their ids.
:func:`sequence_sums` is the one place that groups values by sequence, for
``reduction="sequence_mean"`` and :func:`seqmask.weights.normalize_per_sequence`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from seqmask import _sharding


def safe_divide(numerator: jax.Array, denominator: jax.Array) -> jax.Array:
    """``numerator / denominator``, and exactly 0 with zero gradient where the
    denominator is 0."""
    nonzero = denominator != 0
    safe = jnp.where(nonzero, denominator, jnp.ones((), denominator.dtype))
    return jnp.where(nonzero, numerator / safe, jnp.zeros((), numerator.dtype))


class Sums(NamedTuple):
    """Per-sequence sums: ``sums[s]`` for sequence slot ``s``, and ``slots``
    (``None`` for rows, else int ``[B, T]``) giving the slot of each position.
    Slots that no position uses hold 0."""

    sums: jax.Array
    slots: jax.Array | None


def sequence_slots(segment_ids: jax.Array) -> jax.Array:
    """A dense slot in ``[0, B*T)`` for every position: one a sequence.

    A sequence is a run of equal non-negative ids within a row; a negative id
    (padding) inside a run does not end it. So ids numbered from 0 in every
    row (as T5 and MaxText pack) and ids unique over the batch (as
    :mod:`seqmask.data` packs) both work, and two rows never share a
    sequence. Padding positions get some slot; their weights are 0.
    """
    ids = _sharding.replicated(segment_ids)
    rows, steps = ids.shape
    valid = ids >= 0

    def fill(a, b):  # forward-fill: the last valid id at or before each step
        return a[0] | b[0], jnp.where(b[0], b[1], a[1])

    seen, last = jax.lax.associative_scan(fill, (valid, ids), axis=1)
    seen_before = jnp.pad(seen[:, :-1], ((0, 0), (1, 0)))  # False at step 0
    before = jnp.pad(last[:, :-1], ((0, 0), (1, 0)))
    # A valid id that is the row's first, or another than the last before it.
    starts = valid & (~seen_before | (before != ids))
    runs = jnp.maximum(jnp.cumsum(starts, axis=1) - 1, 0)
    slots = jnp.arange(rows)[:, None] * steps + runs
    return _sharding.shard_like(slots.astype(jnp.int32), segment_ids)


def sequence_sums(
    x: jax.Array, segment_ids: jax.Array | None = None, slots: jax.Array | None = None
) -> Sums:
    """Sums of ``x`` ``[B, ...]`` over each sequence (row, or segment of a row).

    With ``segment_ids`` ``[B, T]`` the axes after the first two are summed
    first; ``slots`` (from :func:`sequence_slots`) spares computing them again
    when several sums share the ids.
    """
    if segment_ids is None:
        return Sums(jnp.sum(x, axis=tuple(range(1, x.ndim))), None)
    if slots is None:
        slots = sequence_slots(segment_ids)
    per_step = _sharding.replicated(jnp.sum(x, axis=tuple(range(2, x.ndim))))
    sums = jax.ops.segment_sum(
        per_step.reshape(-1),
        _sharding.replicated(slots).reshape(-1),
        num_segments=slots.size,
    )
    return Sums(sums, slots)


def at_positions(sums: Sums, rank: int) -> jax.Array:
    """Each position's sequence sum, shaped to broadcast against rank ``rank``."""
    if sums.slots is None:
        return sums.sums.reshape(sums.sums.shape + (1,) * (rank - 1))
    if sums.sums.size == 0:  # no position (B or T is 0): nothing to look up
        spread = jnp.zeros(sums.slots.shape, sums.sums.dtype)
    else:
        spread = _sharding.take_rows(sums.sums, sums.slots, fill_value=0)
    return spread.reshape(spread.shape + (1,) * (rank - 2))
