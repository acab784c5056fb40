"""Explicit sharding: give the values seqmask creates the layout of the batch.

Under a mesh whose axes are *explicit* (what ``jax.make_mesh`` builds by
default in recent JAX), a sharding is part of an array's type:
``jnp.where`` refuses cases laid out differently, and a scan carry keeps the
layout it starts with, so a replicated zero carry makes every step all-gather
the batch-sharded state. The values seqmask makes itself (zero or learned
initial carries broadcast over the batch, carries to reset to) start out
replicated; these helpers lay them out like the arrays they meet. Without
explicit mesh axes (auto meshes, a single device, JAX without explicit
sharding) they return their input unchanged, and sharding is left to XLA's
propagation.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec


def explicit_sharding(x) -> Any:
    """The sharding in ``x``'s type when its mesh has explicit axes, else None."""
    typeof = getattr(jax, "typeof", None)
    if typeof is None or not hasattr(jax.sharding, "reshard"):
        return None
    return _explicit(getattr(typeof(x), "sharding", None))


def _explicit(sharding) -> Any:
    """``sharding`` if its mesh has explicit axes, else None."""
    mesh = getattr(sharding, "mesh", None)
    if mesh is None or mesh.empty or not mesh.explicit_axes:
        return None
    return sharding


def stacked_zeros(like, steps: int) -> jax.Array:
    """Zeros ``[steps, *like.shape]`` in ``like``'s dtype, laid out like
    ``like`` (one step's value, an array or a ``jax.ShapeDtypeStruct``) over
    the trailing axes and replicated over the leading one: buffers that a
    loop fills one step at a time."""
    zeros = jnp.zeros((steps, *like.shape), like.dtype)
    if isinstance(like, jax.ShapeDtypeStruct):
        sharding = _explicit(getattr(like, "sharding", None))
    else:
        sharding = explicit_sharding(like)
    if sharding is None or not hasattr(jax.sharding, "reshard"):
        return zeros
    spec = _padded_spec(sharding, len(like.shape))
    return _reshard(zeros, NamedSharding(sharding.mesh, PartitionSpec(None, *spec)))


def _padded_spec(sharding, ndim: int) -> tuple:
    spec = tuple(sharding.spec)
    return spec + (None,) * (ndim - len(spec))


def _reshard(x, sharding):
    current = explicit_sharding(x)
    if current is not None and _padded_spec(current, x.ndim) == _padded_spec(
        sharding, x.ndim
    ):
        return x
    return jax.sharding.reshard(x, sharding)


def shard_like(value, like):
    """``value`` (an array of ``like``'s shape) laid out like ``like``."""
    sharding = explicit_sharding(like)
    return value if sharding is None else _reshard(value, sharding)


def replicated(x) -> jax.Array:
    """``x`` on every device, for operations across the whole batch (a sort,
    a scatter into slots shared by all rows); ``x`` itself without explicit
    mesh axes."""
    sharding = explicit_sharding(x)
    if sharding is None:
        return x
    return _reshard(x, NamedSharding(sharding.mesh, PartitionSpec()))


def unify(*arrays) -> tuple:
    """``arrays`` (of one shape) laid out alike, for ``jnp.where``.

    The one split over the most mesh axes keeps its layout and the others
    take it (a batch-sharded carry against a replicated constant or a
    replicated mask: the constant and the mask are split).
    """
    shardings = [explicit_sharding(x) for x in arrays]
    if all(s is None for s in shardings):
        return arrays

    def sharded_axes(sharding):
        return -1 if sharding is None else sum(s is not None for s in sharding.spec)

    widest = max(shardings, key=sharded_axes)
    return tuple(_reshard(x, widest) for x in arrays)


def shard_like_batch(tree, reference, batch_axes: tuple[int, ...] | None = None):
    """Every leaf ``[*batch, ...]`` of ``tree`` laid out like ``reference``'s batch.

    ``batch_axes`` are the batch axes of ``reference`` (``(1, ..., n)`` for
    time-major inputs ``[time, *batch, features]``; default: all its axes,
    for a reference of the batch's shape); the leaves are split like them
    over their leading axes and replicated over the rest.
    """
    sharding = explicit_sharding(reference)
    if sharding is None:
        return tree
    if batch_axes is None:
        batch_axes = tuple(range(reference.ndim))
    spec = _padded_spec(sharding, reference.ndim)
    batch_spec = tuple(spec[axis] for axis in batch_axes)

    def place(leaf):
        rest = (None,) * (leaf.ndim - len(batch_spec))
        target = NamedSharding(sharding.mesh, PartitionSpec(*batch_spec, *rest))
        return _reshard(leaf, target)

    return jax.tree.map(place, tree)


def flatten_rows(x, n_batch: int) -> jax.Array:
    """``x`` ``[*batch, ...]`` with its ``n_batch`` leading axes merged into one
    ``[rows, ...]`` axis, laid out over the mesh axes that split the batch.

    Under explicit mesh axes JAX infers the merged layout only where the
    split axes merge into one (``[4@a, 4@b] -> 16@(a,b)``); a batch split on
    an inner axis (``[2, 4@(a,b)]``) has no such layout, and the reshape
    moves its rows to one.
    """
    shape = (math.prod(x.shape[:n_batch]), *x.shape[n_batch:])
    sharding = explicit_sharding(x)
    if sharding is None or n_batch == 1:
        return x.reshape(shape)
    spec = _padded_spec(sharding, x.ndim)
    merged = tuple(
        axis
        for entry in spec[:n_batch]
        if entry is not None
        for axis in (entry if isinstance(entry, tuple) else (entry,))
    )
    rows = merged[0] if len(merged) == 1 else (merged or None)
    out = NamedSharding(sharding.mesh, PartitionSpec(rows, *spec[n_batch:]))
    return jnp.reshape(x, shape, out_sharding=out)


def unflatten_rows(x, like) -> jax.Array:
    """``x`` ``[rows, ...]`` reshaped to ``[*like.shape, ...]`` (``rows`` is
    ``like.size``), laid out like ``like`` over the leading axes and like
    ``x`` over the trailing ones.

    Under explicit mesh axes JAX cannot infer how to split one axis laid out
    over several mesh axes (``16@(a,b)``) back into the batch axes they came
    from (``4@a, 4@b``); this gives it ``like``'s layout.
    """
    shape = (*like.shape, *x.shape[1:])
    batch_sharding = explicit_sharding(like)
    if batch_sharding is None:
        return x.reshape(shape)
    own = explicit_sharding(x)
    rest = (None,) * (x.ndim - 1) if own is None else _padded_spec(own, x.ndim)[1:]
    spec = PartitionSpec(*_padded_spec(batch_sharding, like.ndim), *rest)
    return jnp.reshape(x, shape, out_sharding=NamedSharding(batch_sharding.mesh, spec))


def take_rows(table, indices, *, fill_value) -> jax.Array:
    """``table[indices]``: rows of a ``[rows, *features]`` table for
    non-negative ``indices``, ``fill_value`` where an index is past the last
    row; laid out like ``indices`` over the leading axes and like ``table``'s
    features over the trailing ones.

    Under explicit mesh axes JAX cannot infer where a gather's output lives
    (a replicated embedding table looked up with batch-sharded token ids);
    this gives it that layout.
    """
    indices_sharding = explicit_sharding(indices)
    if indices_sharding is None:
        return jnp.take(table, indices, axis=0, mode="fill", fill_value=fill_value)
    table_sharding = explicit_sharding(table)
    features = (
        (None,) * (table.ndim - 1)
        if table_sharding is None
        else _padded_spec(table_sharding, table.ndim)[1:]
    )
    spec = PartitionSpec(*_padded_spec(indices_sharding, indices.ndim), *features)
    return table.at[indices].get(
        mode="fill",
        fill_value=fill_value,
        out_sharding=NamedSharding(indices_sharding.mesh, spec),
    )


def put_along_last_axis(target, indices, values, *, add: bool = False) -> jax.Array:
    """``jnp.put_along_axis(target, indices, values, axis=-1, inplace=False)``
    laid out like ``target`` (under explicit mesh axes JAX cannot infer where
    such a scatter's output lives); with ``add``, ``values`` are added at
    ``indices`` (repeated indices add up) instead of written."""
    sharding = explicit_sharding(target)
    if sharding is None and not add:
        return jnp.put_along_axis(target, indices, values, axis=-1, inplace=False)
    leading = jnp.indices(indices.shape[:-1], sparse=True)
    index = (*(i[..., None] for i in leading), indices)
    options = {} if sharding is None else {"out_sharding": sharding}
    if add:
        return target.at[index].add(values, **options)
    return target.at[index].set(values, **options)
