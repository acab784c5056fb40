"""Regression losses: squared, absolute, Huber, log-cosh and cosine distance.

The element of the first four is a feature (the element-wise loss has the
shape of ``predictions``); the element of :func:`cosine_distance` is a vector
(the last axis is reduced). Weighting and reduction follow
:mod:`seqmask.losses`.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

import seqmask._checks as _checks
from seqmask.losses._reduce import Kind, Reduction, prepare, reduce_loss

# The element is a feature, or (cosine distance) a vector; an absent vector
# is all ones, not zeros, so that its norm is not zero.
_FEATURES = Kind()
_VECTORS = Kind(reduces_last_axis=True, safe_value=1.0)


def _on_errors(
    where: str,
    loss_of_errors: Callable[[jax.Array], jax.Array],
    predictions,
    targets,
    weights,
    reduction: str,
    segment_ids,
) -> jax.Array:
    """A regression loss whose element is a feature: ``loss_of_errors`` of
    ``predictions - targets`` (zero where the weight is zero), weighted and
    reduced."""
    inputs = prepare(
        where, _FEATURES, predictions, targets, weights, reduction, segment_ids
    )
    loss = loss_of_errors(inputs.predictions - inputs.targets)
    return reduce_loss(loss, inputs, reduction)


def squared_error(
    predictions: jax.typing.ArrayLike,
    targets: jax.typing.ArrayLike,
    weights: jax.typing.ArrayLike | None = None,
    *,
    reduction: Reduction = "weighted_mean",
    segment_ids: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    r"""Element-wise squared error, without the factor 1/2.

    Matches ``optax.squared_error``; ``optax.l2_loss`` is half of it. The
    element is a feature. With ``weights=seqmask.weights.nonzero(x)`` only the
    non-zero features of a sparse target count (the sparse auto-encoder case).

    .. math::
      \ell_i = (p_i - t_i)^2.

    Args:
      predictions: predictions, shape ``[...]``, floating.
      targets: targets, same shape as ``predictions``.
      weights: weights broadcastable to ``predictions.shape`` (``[B]``,
        ``[B, T]``, ``[B, T, F]``, per-feature ``[F]``, ...); None means all
        ones, zero means absent.
      reduction: how to reduce (see :mod:`seqmask.losses`).
      segment_ids: int ``[B, T]`` ids of packed sequences, negative at
        padding (see :mod:`seqmask.losses`).

    Returns:
      A float32 (or float64) scalar, or for ``"none"`` the weighted
      element-wise loss of shape ``predictions.shape``.

    Raises:
      TypeError: if ``predictions`` is not floating.
      ValueError: on mismatched shapes, bad weights or an unknown reduction.

    Examples:
      >>> import jax.numpy as jnp
      >>> from seqmask import losses, weights
      >>> targets = jnp.array([[0.0, 0.5, 0.0], [1.0, 0.0, 0.25]])
      >>> predictions = jnp.array([[0.1, 0.4, -0.2], [0.8, 0.3, 0.25]])
      >>> loss = losses.squared_error(predictions, targets,
      ...                             weights.nonzero(targets), reduction="sum")
      >>> print(f"{loss:.4f}")
      0.0500
    """
    return _on_errors(
        "squared_error",
        jnp.square,
        predictions,
        targets,
        weights,
        reduction,
        segment_ids,
    )


def absolute_error(
    predictions: jax.typing.ArrayLike,
    targets: jax.typing.ArrayLike,
    weights: jax.typing.ArrayLike | None = None,
    *,
    reduction: Reduction = "weighted_mean",
    segment_ids: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    r"""Element-wise absolute error (L1). The element is a feature.

    .. math::
      \ell_i = |p_i - t_i|.

    Args:
      predictions: predictions ``[...]`` of a floating dtype.
      targets: targets of the shape of ``predictions``.
      weights: weights broadcastable to the predictions; None means all ones.
      reduction: one of :data:`seqmask.losses.REDUCTIONS`.
      segment_ids: int ``[B, T]`` ids of packed sequences.

    Returns:
      The reduced loss (float32 or float64), or the weighted element-wise
      loss ``[...]`` for ``"none"``.

    Raises:
      TypeError: for predictions of an integer or boolean dtype.
      ValueError: for shapes that do not match, or an unknown reduction.

    Examples:
      >>> import jax.numpy as jnp
      >>> from seqmask import losses
      >>> predictions = jnp.array([[0.5, 2.0], [1.0, -1.0]])
      >>> targets = jnp.array([[0.0, 1.0], [1.0, 1.0]])
      >>> loss = losses.absolute_error(predictions, targets,
      ...                              reduction="sequence_mean")
      >>> print(f"{loss:.4f}")
      0.8750
    """
    return _on_errors(
        "absolute_error", jnp.abs, predictions, targets, weights, reduction, segment_ids
    )


def huber_loss(
    predictions: jax.typing.ArrayLike,
    targets: jax.typing.ArrayLike,
    weights: jax.typing.ArrayLike | None = None,
    *,
    reduction: Reduction = "weighted_mean",
    segment_ids: jax.typing.ArrayLike | None = None,
    delta: float = 1.0,
) -> jax.Array:
    r"""Element-wise Huber loss: quadratic near zero, linear beyond ``delta``.

    Matches ``optax.huber_loss``. The element is a feature.

    .. math::
      \ell_i = \begin{cases}
        \tfrac12 e_i^2 & |e_i| \le \delta \\
        \delta \left(|e_i| - \tfrac12 \delta\right) & |e_i| > \delta
      \end{cases}, \qquad e_i = p_i - t_i.

    Args:
      predictions: floating predictions of any shape.
      targets: targets, same shape as ``predictions``.
      weights: optional weights that broadcast to the predictions (zero:
        absent).
      reduction: how to reduce (see :mod:`seqmask.losses`).
      segment_ids: ids of packed sequences ``[B, T]``.
      delta: where the loss turns from quadratic to linear, :math:`\delta > 0`
        (checked eagerly, or through checkify when traced).

    Returns:
      A scalar, or the element-wise weighted loss for ``"none"``.

    Raises:
      TypeError: if ``predictions`` is not floating or ``delta`` not a number.
      ValueError: on mismatched shapes, bad weights, an unknown reduction or
        ``delta <= 0``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from seqmask import losses
      >>> predictions = jnp.array([0.5, 3.0, -2.0])
      >>> targets = jnp.zeros(3)
      >>> loss = losses.huber_loss(predictions, targets, reduction="none")
      >>> with jnp.printoptions(precision=4):
      ...     print(loss)
      [0.125 2.5   1.5  ]
    """
    where = "huber_loss"
    _checks.hyperparameter(delta, "delta", where, low=0, low_open=True)

    def huber(errors):
        delta_array = jnp.asarray(delta, errors.dtype)
        absolute = jnp.abs(errors)
        quadratic = jnp.minimum(absolute, delta_array)
        # absolute - quadratic rather than max(absolute - delta, 0), so that
        # the gradient at |e| = delta is not counted twice.
        linear = absolute - quadratic
        return 0.5 * jnp.square(quadratic) + delta_array * linear

    return _on_errors(
        where, huber, predictions, targets, weights, reduction, segment_ids
    )


def log_cosh(
    predictions: jax.typing.ArrayLike,
    targets: jax.typing.ArrayLike,
    weights: jax.typing.ArrayLike | None = None,
    *,
    reduction: Reduction = "weighted_mean",
    segment_ids: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    r"""Element-wise log-cosh loss, a twice-differentiable Huber.

    Matches ``optax.log_cosh``, with full relative precision for small errors
    (where ``optax.log_cosh`` in float32 cancels to 0 below about ``1e-4``).
    The element is a feature.

    .. math::
      \ell_i = \log \cosh(p_i - t_i).

    Args:
      predictions: predictions (floating).
      targets: targets of the same shape.
      weights: broadcastable weights, or None for all ones.
      reduction: the reduction (see :mod:`seqmask.losses`).
      segment_ids: packed-sequence ids.

    Returns:
      The loss: a scalar, or ``predictions.shape`` for ``"none"``.

    Raises:
      TypeError: if ``predictions`` is not floating.
      ValueError: if the shapes or the reduction are wrong.

    Examples:
      >>> import jax.numpy as jnp
      >>> from seqmask import losses
      >>> small, large = losses.log_cosh(jnp.array([0.1, 10.0]), jnp.zeros(2),
      ...                                reduction="none")
      >>> print(f"{small / 0.1**2:.2f} {large + jnp.log(2.0):.4f}")  # e²/2, |e| - log 2
      0.50 10.0000
    """
    return _on_errors(
        "log_cosh", _log_cosh, predictions, targets, weights, reduction, segment_ids
    )


def _log_cosh(errors: jax.Array) -> jax.Array:
    # log(cosh(e)) = |e| + log((1 + exp(-2|e|)) / 2) = |e| + log1p(expm1(-2|e|) / 2)
    # does not overflow for large |e| (as cosh would). For small |e| it cancels,
    # as logaddexp(e, -e) - log 2 does (every digit of e^2 / 2 is lost below
    # 1e-4 in float32). Below 1, log(cosh(e)) = log1p(cosh(e) - 1) =
    # log1p(2 sinh(e/2)^2) cancels nothing: the full precision of the dtype,
    # float32 or float64, and the derivative tanh(e).
    size = jnp.abs(errors)
    # On the clipped error: no overflow (and no NaN gradient through the
    # where) for large errors; no abs, so the curvature at 0 is 1.
    half = jnp.clip(errors, -1.0, 1.0) / 2.0
    near = jnp.log1p(2.0 * jnp.sinh(half) ** 2)
    return jnp.where(size < 1.0, near, size + jnp.log1p(jnp.expm1(-2.0 * size) / 2.0))


def cosine_distance(
    predictions: jax.typing.ArrayLike,
    targets: jax.typing.ArrayLike,
    weights: jax.typing.ArrayLike | None = None,
    *,
    reduction: Reduction = "weighted_mean",
    segment_ids: jax.typing.ArrayLike | None = None,
    epsilon: float = 1e-12,
) -> jax.Array:
    r"""Cosine distance between predicted and target vectors (last axis).

    The element is a vector: the last axis is reduced, so the element-wise loss
    has shape ``predictions.shape[:-1]``. Squared norms are clipped below at
    ``epsilon`` so that a zero vector gives a finite loss and gradient; pass
    ``epsilon=0.0`` for ``optax.cosine_distance``'s default.

    .. math::
      \ell_i = 1 - \frac{\langle p_i, t_i \rangle}
        {\sqrt{\max(\|p_i\|^2, \epsilon)}\,\sqrt{\max(\|t_i\|^2, \epsilon)}}.

    Args:
      predictions: predicted vectors, shape ``[..., D]``, floating.
      targets: target vectors, same shape as ``predictions``.
      weights: per-vector weights broadcastable to ``predictions.shape[:-1]``;
        None means all ones, zero means absent.
      reduction: how to reduce (see :mod:`seqmask.losses`).
      segment_ids: int ``[B, T]`` ids of packed sequences.
      epsilon: lower bound :math:`\epsilon \ge 0` of the squared norms.

    Returns:
      A float32 (or float64) scalar, or for ``"none"`` the weighted
      element-wise loss of shape ``predictions.shape[:-1]``.

    Raises:
      TypeError: if ``predictions`` is not floating.
      ValueError: on mismatched shapes, bad weights, an unknown reduction or
        a negative ``epsilon``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from seqmask import losses
      >>> predictions = jnp.array([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
      >>> targets = jnp.array([[1.0, 0.0], [1.0, 0.0], [0.0, -1.0]])
      >>> loss = losses.cosine_distance(predictions, targets, reduction="none")
      >>> with jnp.printoptions(precision=4):
      ...     print(loss)
      [0.     0.2929 2.    ]
    """
    where = "cosine_distance"
    _checks.hyperparameter(epsilon, "epsilon", where, low=0)
    # Absent vectors are ones (_VECTORS), so that the discarded loss and its
    # gradient stay finite even for epsilon = 0.
    inputs = prepare(
        where, _VECTORS, predictions, targets, weights, reduction, segment_ids
    )
    predictions, targets = inputs.predictions, inputs.targets
    epsilon_array = jnp.asarray(epsilon, inputs.dtype)

    def norm(x):
        return jnp.sqrt(jnp.maximum(jnp.sum(jnp.square(x), axis=-1), epsilon_array))

    similarity = jnp.sum(predictions * targets, axis=-1) / (
        norm(predictions) * norm(targets)
    )
    return reduce_loss(1.0 - similarity, inputs, reduction)
