"""Weight alignment, input selection and reductions shared by every loss.

Each loss in :mod:`seqmask.losses` computes an element-wise loss and hands it
to :func:`reduce_loss` together with weights aligned by :func:`align_weights`.
Keeping the alignment rule, the zero-weight convention and the five reductions
in one place is what makes every loss obey the same contract.
"""

from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

Reduction = Literal["none", "sum", "mean", "weighted_mean", "sequence_mean"]

REDUCTIONS: tuple[str, ...] = (
    "none",
    "sum",
    "mean",
    "weighted_mean",
    "sequence_mean",
)


def check_reduction(reduction: str) -> None:
    """Raises ``ValueError`` unless ``reduction`` is one of :data:`REDUCTIONS`."""
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        valid = ", ".join(repr(name) for name in REDUCTIONS)
        raise ValueError(f"reduction must be one of {valid}; got {reduction!r}.")


def check_floating(name: str, x: jax.Array) -> None:
    """Raises ``TypeError`` unless ``x`` has a floating dtype."""
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(
            f"{name} must have a floating dtype; got {x.dtype}. "
            f"Cast it first, e.g. {name}.astype(jnp.float32)."
        )


def check_numeric(name: str, x: jax.Array) -> None:
    """Raises ``TypeError`` unless ``x`` is boolean, integer or floating."""
    if not (
        jnp.issubdtype(x.dtype, jnp.floating)
        or jnp.issubdtype(x.dtype, jnp.integer)
        or jnp.issubdtype(x.dtype, jnp.bool_)
    ):
        raise TypeError(
            f"{name} must have a boolean, integer or floating dtype; got {x.dtype}."
        )


def check_same_shape(
    name_a: str, a: jax.Array, name_b: str, b: jax.Array, hint: str = ""
) -> None:
    """Raises ``ValueError`` unless ``a`` and ``b`` have the same shape."""
    if a.shape != b.shape:
        raise ValueError(
            f"{name_b} must have the shape of {name_a}, {a.shape}; got {b.shape}.{hint}"
        )


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
    weights: jax.typing.ArrayLike | None,
    loss_shape: tuple[int, ...],
    dtype: np.dtype,
) -> jax.Array | None:
    """Reshapes ``weights`` to the rank of the element-wise loss.

    Leading alignment (batch first, trailing singleton axes appended) is tried
    first, then numpy's right alignment. The result has the rank of the loss and
    every axis either 1 or equal to the loss's, so it broadcasts to the loss
    without enlarging it. ``None`` stays ``None`` (all ones).

    Raises:
      ValueError: when neither alignment fits.
      TypeError: when ``weights`` is not boolean, integer or floating.
    """
    if weights is None:
        return None
    array = jnp.asarray(weights)
    check_numeric("weights", array)
    rank = len(loss_shape)
    extra = rank - array.ndim
    leading = array.shape + (1,) * max(extra, 0)
    trailing = (1,) * max(extra, 0) + array.shape

    def fits(shape: tuple[int, ...]) -> bool:
        return len(shape) == rank and all(
            size in (1, loss_size)
            for size, loss_size in zip(shape, loss_shape, strict=True)
        )

    for shape in (leading, trailing):
        if fits(shape):
            return array.reshape(shape).astype(dtype)
    raise ValueError(
        f"weights of shape {array.shape} do not broadcast to the element-wise "
        f"loss of shape {tuple(loss_shape)}: neither leading alignment (batch "
        f"first, as {leading}) nor numpy's right alignment (as {trailing}) fits, "
        "and weights may not enlarge the loss. Give weights a shape whose axes "
        "are 1 or equal to the loss's, e.g. [B], [B, T] or the loss's own shape."
    )


def select_present(
    x: jax.Array, present: jax.Array | None, safe_value: float
) -> jax.Array:
    """Replaces ``x`` by ``safe_value`` where ``present`` is false.

    This is the first half of the double-``where``: selecting (not multiplying)
    before the loss keeps NaN and Inf at absent elements out of both the value
    and the gradient, since the cotangent reaching them is an exact zero.
    """
    if present is None:
        return x
    return jnp.where(present, x, jnp.asarray(safe_value, x.dtype))


def safe_divide(numerator: jax.Array, denominator: jax.Array) -> jax.Array:
    """``numerator / denominator``, and exactly 0 with zero gradient where the
    denominator is 0."""
    nonzero = denominator != 0
    safe = jnp.where(nonzero, denominator, jnp.ones((), denominator.dtype))
    return jnp.where(nonzero, numerator / safe, jnp.zeros((), numerator.dtype))


def reduce_loss(
    loss: jax.Array, weights: jax.Array | None, reduction: str
) -> jax.Array:
    """Weights an element-wise loss and reduces it.

    Args:
      loss: element-wise loss, computed from inputs already passed through
        :func:`select_present`, so it is finite wherever the weight is zero.
      weights: output of :func:`align_weights` (same rank as ``loss``) or None.
      reduction: one of :data:`REDUCTIONS`.

    Returns:
      The weighted loss of ``loss.shape`` for ``"none"``, else a scalar.
    """
    if weights is not None:
        # The second half of the double-where: an absent element contributes an
        # exact 0, whatever the loss computed there.
        loss = jnp.where(weights != 0, loss * weights, jnp.zeros((), loss.dtype))
    if reduction == "none":
        return loss
    if reduction == "sum":
        return jnp.sum(loss)
    if reduction == "mean":
        return jnp.sum(loss) / max(loss.size, 1)
    if weights is None:
        weights = jnp.ones((), loss.dtype)
    weights = jnp.broadcast_to(weights, loss.shape)
    if reduction == "weighted_mean":
        return safe_divide(jnp.sum(loss), jnp.sum(weights))
    if reduction == "sequence_mean":
        if loss.ndim == 0:
            raise ValueError(
                'reduction="sequence_mean" needs a batch axis 0, but the '
                "element-wise loss is a scalar."
            )
        sequence_axes = tuple(range(1, loss.ndim))
        sequence_weight = jnp.sum(weights, axis=sequence_axes)
        sequence_loss = safe_divide(jnp.sum(loss, axis=sequence_axes), sequence_weight)
        counted = jnp.sum((sequence_weight != 0).astype(loss.dtype))
        return safe_divide(jnp.sum(sequence_loss), counted)
    check_reduction(reduction)
    raise AssertionError("unreachable")
