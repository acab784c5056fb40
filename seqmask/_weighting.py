"""Sums per sequence and division by zero, shared by the losses and the weights.

A *sequence* is a row of axis 0 (``[B, ...]``) or, with ``segment_ids``
(integers ``[B, T]``, negative at padding, as
:attr:`seqmask.data.Packing.segment_ids`), every set of positions that share
an id: several sequences packed into one row are told apart by their ids.
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
    """A dense slot in ``[0, B*T)`` for every position, equal where the ids are.

    Ids are compared across the whole batch, so a batch split over devices
    is gathered for the sort; the slots are laid out like ``segment_ids``.
    """
    ids = _sharding.replicated(segment_ids).reshape(-1)
    _, slots = jnp.unique(ids, size=ids.size, fill_value=-1, return_inverse=True)
    return _sharding.shard_like(slots.reshape(segment_ids.shape), segment_ids)


def sequence_sums(
    x: jax.Array, segment_ids: jax.Array | None = None, slots: jax.Array | None = None
) -> Sums:
    """Sums of ``x`` ``[B, ...]`` over each sequence (row, or segment of a row).

    With ``segment_ids`` ``[B, T]`` the axes after the first two are summed
    first; ``slots`` (from :func:`sequence_slots`) spares a second sort when
    several sums share the ids.
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
    spread = _sharding.take_rows(sums.sums, sums.slots, fill_value=0)
    return spread.reshape(spread.shape + (1,) * (rank - 2))
