"""Regression losses: squared, absolute, Huber, log-cosh and cosine distance.

The element of the first four is a feature (the element-wise loss has the
shape of ``predictions``); the element of :func:`cosine_distance` is a vector
(the last axis is reduced). Weighting and reduction follow
:mod:`seqmask.losses`.
"""

import jax
import jax.numpy as jnp

from seqmask.losses._reduce import (
    Reduction,
    align_weights,
    check_floating,
    check_numeric,
    check_reduction,
    check_same_shape,
    compute_dtype,
    reduce_loss,
    select_present,
)


def _errors(
    predictions: jax.typing.ArrayLike,
    targets: jax.typing.ArrayLike,
    weights: jax.typing.ArrayLike | None,
    reduction: str,
) -> tuple[jax.Array, jax.Array | None]:
    """Checks the inputs and returns ``predictions - targets`` (zero where the
    weight is zero) with the aligned weights."""
    check_reduction(reduction)
    predictions = jnp.asarray(predictions)
    targets = jnp.asarray(targets)
    check_floating("predictions", predictions)
    check_numeric("targets", targets)
    check_same_shape(
        "predictions",
        predictions,
        "targets",
        targets,
        " Broadcast them explicitly if that is what you mean.",
    )
    dtype = compute_dtype(predictions, targets)
    weights = align_weights(weights, predictions.shape, dtype)
    present = None if weights is None else weights != 0
    predictions = select_present(predictions, present, 0.0).astype(dtype)
    targets = select_present(targets, present, 0).astype(dtype)
    return predictions - targets, weights


def squared_error(
    predictions: jax.typing.ArrayLike,
    targets: jax.typing.ArrayLike,
    weights: jax.typing.ArrayLike | None = None,
    *,
    reduction: Reduction = "weighted_mean",
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
      weights: optional weights broadcastable to ``predictions.shape``
        (``[B]``, ``[B, T]``, ``[B, T, F]``, per-feature ``[F]``, ...);
        ``None`` means all ones. Zero weight means absent.
      reduction: ``"none"``, ``"sum"``, ``"mean"``, ``"weighted_mean"`` or
        ``"sequence_mean"`` (see :mod:`seqmask.losses`).

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
    errors, weights = _errors(predictions, targets, weights, reduction)
    return reduce_loss(jnp.square(errors), weights, reduction)


def absolute_error(
    predictions: jax.typing.ArrayLike,
    targets: jax.typing.ArrayLike,
    weights: jax.typing.ArrayLike | None = None,
    *,
    reduction: Reduction = "weighted_mean",
) -> jax.Array:
    r"""Element-wise absolute error (L1). The element is a feature.

    .. math::
      \ell_i = |p_i - t_i|.

    Args:
      predictions: predictions, shape ``[...]``, floating.
      targets: targets, same shape as ``predictions``.
      weights: optional weights broadcastable to ``predictions.shape``;
        ``None`` means all ones. Zero weight means absent.
      reduction: ``"none"``, ``"sum"``, ``"mean"``, ``"weighted_mean"`` or
        ``"sequence_mean"`` (see :mod:`seqmask.losses`).

    Returns:
      A float32 (or float64) scalar, or for ``"none"`` the weighted
      element-wise loss of shape ``predictions.shape``.

    Raises:
      TypeError: if ``predictions`` is not floating.
      ValueError: on mismatched shapes, bad weights or an unknown reduction.

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
    errors, weights = _errors(predictions, targets, weights, reduction)
    return reduce_loss(jnp.abs(errors), weights, reduction)


def huber_loss(
    predictions: jax.typing.ArrayLike,
    targets: jax.typing.ArrayLike,
    weights: jax.typing.ArrayLike | None = None,
    *,
    reduction: Reduction = "weighted_mean",
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
      predictions: predictions, shape ``[...]``, floating.
      targets: targets, same shape as ``predictions``.
      weights: optional weights broadcastable to ``predictions.shape``;
        ``None`` means all ones. Zero weight means absent.
      reduction: ``"none"``, ``"sum"``, ``"mean"``, ``"weighted_mean"`` or
        ``"sequence_mean"`` (see :mod:`seqmask.losses`).
      delta: where the loss turns from quadratic to linear, :math:`\delta > 0`.

    Returns:
      A float32 (or float64) scalar, or for ``"none"`` the weighted
      element-wise loss of shape ``predictions.shape``.

    Raises:
      TypeError: if ``predictions`` is not floating.
      ValueError: on mismatched shapes, bad weights or an unknown reduction.

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
    errors, weights = _errors(predictions, targets, weights, reduction)
    delta_array = jnp.asarray(delta, errors.dtype)
    absolute = jnp.abs(errors)
    quadratic = jnp.minimum(absolute, delta_array)
    # absolute - quadratic rather than max(absolute - delta, 0), so that the
    # gradient at |e| = delta is not counted twice.
    linear = absolute - quadratic
    loss = 0.5 * jnp.square(quadratic) + delta_array * linear
    return reduce_loss(loss, weights, reduction)


def log_cosh(
    predictions: jax.typing.ArrayLike,
    targets: jax.typing.ArrayLike,
    weights: jax.typing.ArrayLike | None = None,
    *,
    reduction: Reduction = "weighted_mean",
) -> jax.Array:
    r"""Element-wise log-cosh loss, a twice-differentiable Huber.

    Matches ``optax.log_cosh``. The element is a feature.

    .. math::
      \ell_i = \log \cosh(p_i - t_i).

    Args:
      predictions: predictions, shape ``[...]``, floating.
      targets: targets, same shape as ``predictions``.
      weights: optional weights broadcastable to ``predictions.shape``;
        ``None`` means all ones. Zero weight means absent.
      reduction: ``"none"``, ``"sum"``, ``"mean"``, ``"weighted_mean"`` or
        ``"sequence_mean"`` (see :mod:`seqmask.losses`).

    Returns:
      A float32 (or float64) scalar, or for ``"none"`` the weighted
      element-wise loss of shape ``predictions.shape``.

    Raises:
      TypeError: if ``predictions`` is not floating.
      ValueError: on mismatched shapes, bad weights or an unknown reduction.

    Examples:
      >>> import jax.numpy as jnp
      >>> from seqmask import losses
      >>> predictions = jnp.array([0.5, 3.0, -2.0])
      >>> targets = jnp.zeros(3)
      >>> loss = losses.log_cosh(predictions, targets, reduction="none")
      >>> with jnp.printoptions(precision=4):
      ...     print(loss)
      [0.1201 2.3093 1.325 ]
    """
    errors, weights = _errors(predictions, targets, weights, reduction)
    # log(cosh(e)) = logaddexp(e, -e) - log(2), which does not overflow for
    # large |e| as cosh would.
    loss = jnp.logaddexp(errors, -errors) - jnp.log(jnp.asarray(2.0, errors.dtype))
    return reduce_loss(loss, weights, reduction)


def cosine_distance(
    predictions: jax.typing.ArrayLike,
    targets: jax.typing.ArrayLike,
    weights: jax.typing.ArrayLike | None = None,
    *,
    reduction: Reduction = "weighted_mean",
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
      weights: optional weights broadcastable to ``predictions.shape[:-1]``;
        ``None`` means all ones. Zero weight means absent.
      reduction: ``"none"``, ``"sum"``, ``"mean"``, ``"weighted_mean"`` or
        ``"sequence_mean"`` (see :mod:`seqmask.losses`).
      epsilon: lower bound :math:`\epsilon \ge 0` of the squared norms.

    Returns:
      A float32 (or float64) scalar, or for ``"none"`` the weighted
      element-wise loss of shape ``predictions.shape[:-1]``.

    Raises:
      TypeError: if ``predictions`` is not floating.
      ValueError: on mismatched shapes, bad weights or an unknown reduction.

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
    check_reduction(reduction)
    predictions = jnp.asarray(predictions)
    targets = jnp.asarray(targets)
    check_floating("predictions", predictions)
    check_numeric("targets", targets)
    if predictions.ndim < 1:
        raise ValueError(
            "predictions must have a vector axis last, shape [..., D]; got a scalar."
        )
    check_same_shape("predictions", predictions, "targets", targets)
    dtype = compute_dtype(predictions, targets)
    weights = align_weights(weights, predictions.shape[:-1], dtype)
    present = None if weights is None else (weights != 0)[..., None]
    # Ones, not zeros: an absent vector must have a non-zero norm so that the
    # discarded loss and its gradient stay finite even for epsilon = 0.
    predictions = select_present(predictions, present, 1.0).astype(dtype)
    targets = select_present(targets, present, 1).astype(dtype)
    epsilon_array = jnp.asarray(epsilon, dtype)
    prediction_norm = jnp.sqrt(
        jnp.maximum(jnp.sum(jnp.square(predictions), axis=-1), epsilon_array)
    )
    target_norm = jnp.sqrt(
        jnp.maximum(jnp.sum(jnp.square(targets), axis=-1), epsilon_array)
    )
    similarity = jnp.sum(predictions * targets, axis=-1) / (
        prediction_norm * target_norm
    )
    return reduce_loss(1.0 - similarity, weights, reduction)
