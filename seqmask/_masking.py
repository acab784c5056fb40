"""Per-row selects: the one place that broadcasts a row mask over features.

A mask, a reset flag or a "finished" flag in seqmask has the batch shape
(``[*batch]``, or ``[time, *batch]`` for a whole sequence), and the values
it selects between have trailing feature axes. :func:`where_rows` is that
select, for arrays and (with :func:`where_rows_tree`) pytrees. Selecting,
never multiplying, is what keeps NaN in padding out of values and gradients.
Values the library creates (zeros, a pad value, a broadcast learned state)
are laid out like the values they meet (see :mod:`seqmask._sharding`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from seqmask import _sharding


def where_rows(rows, on_true, on_false) -> jax.Array:
    """``jnp.where(rows, on_true, on_false)`` with ``rows`` on the leading axes.

    ``rows`` is boolean ``[*lead]``; ``on_true`` and ``on_false`` are arrays
    (or scalars) whose shapes broadcast together with ``[*lead, 1, ...]``.
    The result has the broadcast shape, which may be wider than either
    value (a coefficient shared over the batch meets a per-row mask).
    """
    rows = jnp.asarray(rows)
    rank = max(jnp.ndim(on_true), jnp.ndim(on_false), rows.ndim)
    selector = rows.reshape(rows.shape + (1,) * (rank - rows.ndim))
    shape = jnp.broadcast_shapes(
        selector.shape, jnp.shape(on_true), jnp.shape(on_false)
    )
    # A mask seqmask made (all true, replicated) may meet sharded values.
    selector, on_true, on_false = _sharding.unify(
        jnp.broadcast_to(selector, shape),
        jnp.broadcast_to(on_true, shape),
        jnp.broadcast_to(on_false, shape),
    )
    return jnp.where(selector, on_true, on_false)


# Differentiating a select keeps its predicate for the backward pass. Inside
# a scan that predicate is the [*batch] step mask broadcast to the full
# shape of the value, stacked over time: one [T, *batch, features] boolean
# residual, and one more kernel per step, for every selected leaf.
# Checkpointing the select keeps the [*batch] mask instead and broadcasts
# it again in the backward pass, where the broadcast fuses into the select.
_where_rows_checkpointed = jax.checkpoint(where_rows, prevent_cse=False)


def where_rows_in_scan(rows, on_true, on_false) -> jax.Array:
    """:func:`where_rows` for scan bodies: the backward pass keeps ``rows``,
    not its broadcast (same values and gradients)."""
    return _where_rows_checkpointed(rows, on_true, on_false)


def where_rows_tree(rows, on_true: Any, on_false: Any, *, in_scan: bool = False):
    """:func:`where_rows` leaf by leaf over two pytrees of one structure."""
    select = where_rows_in_scan if in_scan else where_rows
    return jax.tree.map(lambda a, b: select(rows, a, b), on_true, on_false)


def zero_padding(rows, xs) -> jax.Array:
    """``xs`` with zeros wherever ``rows`` is false (``rows`` leading)."""
    return where_rows(rows, xs, jnp.zeros((), jnp.result_type(xs)))
