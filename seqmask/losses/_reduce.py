"""Argument preparation, weight alignment and the reductions every loss shares.

Each loss in :mod:`seqmask.losses` calls :func:`prepare` (argument checks,
the compute dtype, weights aligned to the element-wise loss, padding segments
made absent, inputs selected to safe values where the weight is zero),
computes its element-wise loss and hands it to :func:`reduce_loss`. Keeping
the alignment rule, the zero-weight convention and the five reductions in one
place is what makes every loss obey the same contract.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import seqmask._checks as _checks
from seqmask import _numerics, _weighting

Reduction = Literal["none", "sum", "mean", "weighted_mean", "sequence_mean"]

REDUCTIONS: tuple[str, ...] = (
    "none",
    "sum",
    "mean",
    "weighted_mean",
    "sequence_mean",
)


class Prepared(NamedTuple):
    """A loss's checked inputs.

    Attributes:
      predictions: selected to the safe value where absent; in ``dtype``
        unless :func:`prepare` was told not to cast.
      targets: selected likewise, in ``dtype`` (int32 or wider for labels).
      weights: aligned to the element-wise loss (same rank, every axis 1 or
        the loss's), zero at padding segments; None means all ones.
      present: ``weights != 0`` (None when every element counts).
      segment_ids: int ``[B, T]`` or None.
      dtype: the compute dtype.
      input_dtypes: the dtypes the predictions and targets were given in.
    """

    predictions: jax.Array
    targets: jax.Array
    weights: jax.Array | None
    present: jax.Array | None
    segment_ids: jax.Array | None
    dtype: np.dtype
    input_dtypes: tuple[np.dtype, np.dtype]


def compute_dtype(*arrays: jax.Array) -> np.dtype:
    """The dtype a loss computes in: float32, or wider when an input is wider.

    Half-precision inputs (bfloat16, float16) are computed in float32 because
    log-sum-exp and sums over long sequences lose too much in 8 or 11 bits of
    mantissa; float64 inputs (under x64) keep float64.
    """
    dtype = np.dtype(jnp.float32)
    for x in arrays:
        if jnp.issubdtype(x.dtype, jnp.floating) and x.dtype.itemsize > dtype.itemsize:
            dtype = np.dtype(x.dtype)
    return dtype


def align_weights(
    weights, loss_shape: tuple[int, ...], dtype: np.dtype, where: str
) -> jax.Array | None:
    """Reshapes ``weights`` to the rank of the element-wise loss.

    Leading alignment (batch first, trailing singleton axes appended) is tried
    first, then numpy's right alignment. The result has the rank of the loss and
    every axis either 1 or equal to the loss's, so it broadcasts to the loss
    without enlarging it. ``None`` stays ``None`` (all ones).
    """
    if weights is None:
        return None
    array = _checks.numeric_array(weights, "weights", where)
    rank = len(loss_shape)
    extra = rank - array.ndim
    leading = array.shape + (1,) * max(extra, 0)
    trailing = (1,) * max(extra, 0) + array.shape
    for shape in (leading, trailing):
        if len(shape) == rank and all(
            size in (1, loss_size)
            for size, loss_size in zip(shape, loss_shape, strict=True)
        ):
            return array.reshape(shape).astype(dtype)
    _checks.fail(
        where,
        f"weights of shape {array.shape} do not broadcast to the element-wise "
        f"loss of shape {tuple(loss_shape)}: neither leading alignment (batch "
        f"first, as {leading}) nor numpy's right alignment (as {trailing}) fits, "
        "and weights may not enlarge the loss. Give weights a shape whose axes "
        "are 1 or equal to the loss's, e.g. [B], [B, T] or the loss's own shape.",
    )


def _segments(segment_ids, element_shape, weights, dtype, where):
    """Checks ``segment_ids`` and makes padding (a negative id) absent."""
    ids = _checks.integer_array(segment_ids, "segment_ids", where)
    if len(element_shape) < 2 or ids.shape != tuple(element_shape[:2]):
        _checks.fail(
            where,
            "segment_ids must have the batch and time axes [B, T] of the "
            f"element-wise loss {tuple(element_shape)}; got shape {ids.shape}.",
        )
    inside = (ids >= 0).reshape(ids.shape + (1,) * (len(element_shape) - 2))
    if weights is None:
        return ids, inside.astype(dtype)
    return ids, jnp.where(inside, weights, jnp.zeros((), dtype))


def _select(x: jax.Array, present: jax.Array | None, safe_value) -> jax.Array:
    """``x`` with ``safe_value`` where ``present`` is false.

    The first half of the double-``where``: selecting (not multiplying) before
    the loss keeps NaN and Inf at absent elements out of both the value and
    the gradient, since the cotangent reaching them is an exact zero.
    """
    if present is None:
        return x
    return jnp.where(present, x, jnp.asarray(safe_value, x.dtype))


class Kind(NamedTuple):
    """How a family of losses reads its two inputs.

    Attributes:
      names: the names of the predictions and the targets, for messages.
      reduces_last_axis: the element is a token or a vector: the last axis
        of the predictions is reduced.
      labels: the targets are integer ids of shape ``predictions.shape[:-1]``.
      safe_value: what absent inputs are selected to.
      cast: whether :func:`prepare` casts the predictions to the compute dtype.
    """

    names: tuple[str, str] = ("predictions", "targets")
    reduces_last_axis: bool = False
    labels: bool = False
    safe_value: float = 0.0
    cast: bool = True


def prepare(
    where: str,
    kind: Kind,
    predictions,
    targets,
    weights,
    reduction: str,
    segment_ids=None,
) -> Prepared:
    """Checks a loss's arguments and prepares its inputs (see :class:`Prepared`),
    read as ``kind`` says."""
    names, reduces_last_axis, labels, safe_value, cast = kind
    prediction_name, target_name = names
    _checks.one_of(reduction, REDUCTIONS, "reduction", where)
    predictions = _checks.floating_array(predictions, prediction_name, where)
    if labels:
        targets = _checks.integer_array(
            targets,
            target_name,
            where,
            hint=" For probability targets use softmax_cross_entropy.",
        )
    else:
        targets = _checks.numeric_array(targets, target_name, where)
    if reduces_last_axis and (predictions.ndim < 1 or predictions.shape[-1] == 0):
        _checks.fail(
            where,
            f"{prediction_name} must have a non-empty last axis (classes or "
            f"vector entries), shape [..., V]; got shape {predictions.shape}.",
        )
    element_shape = predictions.shape[:-1] if reduces_last_axis else predictions.shape
    if labels and targets.shape != element_shape:
        _checks.fail(
            where,
            f"{target_name} must have shape {prediction_name}.shape[:-1] = "
            f"{element_shape}; got {targets.shape} ({prediction_name} "
            f"{predictions.shape}).",
        )
    if not labels:
        _checks.same_shape(
            prediction_name,
            predictions,
            target_name,
            targets,
            where,
            " Broadcast them explicitly if that is what you mean.",
        )
    if reduction == "sequence_mean" and not element_shape:
        _checks.fail(
            where,
            'reduction="sequence_mean" needs a batch axis 0, but the element-wise '
            "loss is a scalar.",
        )
    dtype = compute_dtype(predictions, targets)
    input_dtypes = (np.dtype(predictions.dtype), np.dtype(targets.dtype))
    weights = align_weights(weights, element_shape, dtype, where)
    if segment_ids is not None:
        segment_ids, weights = _segments(
            segment_ids, element_shape, weights, dtype, where
        )
    present = None if weights is None else weights != 0
    expanded = (
        present[..., None] if reduces_last_axis and present is not None else present
    )
    predictions = _select(predictions, expanded, safe_value)
    if labels:
        targets = _select(targets, present, 0)
        targets = _numerics.signed_ids(targets)
    else:
        targets = _select(targets, expanded, safe_value).astype(dtype)
    if cast:
        predictions = predictions.astype(dtype)
    # The fields in their order.
    return Prepared(
        predictions, targets, weights, present, segment_ids, dtype, input_dtypes
    )


def reduce_loss(loss: jax.Array, inputs: Prepared, reduction: str) -> jax.Array:
    """Weights an element-wise loss and reduces it.

    Args:
      loss: element-wise loss, computed from ``inputs`` (so it is finite
        wherever the weight is zero).
      inputs: what :func:`prepare` returned.
      reduction: one of :data:`REDUCTIONS` (already checked).

    Returns:
      The weighted loss of ``loss.shape`` for ``"none"``, else a scalar.
    """
    weights, segment_ids = inputs.weights, inputs.segment_ids
    if weights is not None:
        # The second half of the double-where: an absent element contributes an
        # exact 0, whatever the loss computed there.
        loss = jnp.where(weights != 0, loss * weights, jnp.zeros((), loss.dtype))
    if reduction == "none":
        return loss
    total = jnp.sum(loss)
    if reduction == "sum":
        return total
    if reduction == "mean":
        if segment_ids is None:
            return total / max(loss.size, 1)
        per_step = int(np.prod(loss.shape[2:]))
        count = jnp.sum(segment_ids >= 0).astype(loss.dtype) * per_step
        return _weighting.safe_divide(total, count)
    weights = jnp.broadcast_to(
        jnp.ones((), loss.dtype) if weights is None else weights, loss.shape
    )
    # A zero weight leaves its element out, so its gradient is 0 from the
    # denominators too (the numerator's where has cut it already).
    weights = jnp.where(weights != 0, weights, jax.lax.stop_gradient(weights))
    if reduction == "weighted_mean":
        return _weighting.safe_divide(total, jnp.sum(weights))
    slots = None if segment_ids is None else _weighting.sequence_slots(segment_ids)
    loss_sums = _weighting.sequence_sums(loss, segment_ids, slots).sums
    weight_sums = _weighting.sequence_sums(weights, segment_ids, slots).sums
    means = _weighting.safe_divide(loss_sums, weight_sums)
    counted = jnp.sum((weight_sums != 0).astype(loss.dtype))
    return _weighting.safe_divide(jnp.sum(means), counted)
