"""Classification losses: softmax and sigmoid cross-entropies, focal loss, KL.

Each function computes an element-wise loss (one value per token for the
softmax losses and the KL divergence, one per feature for the sigmoid losses),
weights it and reduces it as described in :mod:`seqmask.losses`.
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


def _check_unit_interval(name: str, value: object) -> None:
    # Traced values cannot be checked at trace time; they are the caller's duty.
    if isinstance(value, (int, float)) and not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must lie in [0, 1); got {value}.")


def _is_static_zero(value: object) -> bool:
    return isinstance(value, (int, float)) and value == 0


def _check_class_axis(name: str, x: jax.Array) -> None:
    if x.ndim < 1 or x.shape[-1] == 0:
        raise ValueError(
            f"{name} must have a non-empty class axis last, shape [..., V]; "
            f"got shape {x.shape}."
        )


def softmax_cross_entropy_with_integer_labels(
    logits: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    weights: jax.typing.ArrayLike | None = None,
    *,
    reduction: Reduction = "weighted_mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
) -> jax.Array:
    r"""Softmax cross-entropy between logits and integer class labels.

    The element is a token: the class axis is reduced, so the element-wise loss
    has the shape of ``labels``. With label smoothing :math:`\epsilon` the
    target distribution is :math:`(1 - \epsilon)\,\mathrm{onehot}(y) +
    \epsilon / V`, and the optional z-loss (Chowdhery et al., PaLM, 2022)
    adds :math:`z \log^2 Z` to keep the normaliser near 1:

    .. math::
      \ell_i = \log Z_i - (1 - \epsilon)\, x_{i y_i}
        - \frac{\epsilon}{V} \sum_{j=1}^{V} x_{ij} + z \log^2 Z_i,
      \qquad \log Z_i = \log \sum_{j=1}^{V} \exp x_{ij}.

    Args:
      logits: unnormalised log-probabilities, shape ``[..., V]``, any floating
        dtype; half precision is computed in float32.
      labels: integer class ids in ``[0, V)``, shape ``logits.shape[:-1]``, any
        integer dtype. Labels of zero-weight tokens may be anything (a padding
        id such as ``-100`` included); an out-of-range label of a counted
        token (negative ones included) gives NaN, so the mistake is loud.
      weights: optional weights broadcastable to ``labels.shape`` (see
        :mod:`seqmask.losses` for the alignment rule), e.g. ``[B]`` or
        ``[B, T]``; ``None`` means all ones. Zero weight means absent.
      reduction: ``"none"``, ``"sum"``, ``"mean"``, ``"weighted_mean"`` or
        ``"sequence_mean"`` (see :mod:`seqmask.losses`).
      label_smoothing: :math:`\epsilon \in [0, 1)`.
      z_loss: coefficient :math:`z \ge 0` of :math:`\log^2 Z`.

    Returns:
      A float32 (float64 for float64 logits) scalar, or for ``"none"`` the
      weighted element-wise loss of shape ``labels.shape``.

    Raises:
      TypeError: if ``logits`` is not floating or ``labels`` not integer.
      ValueError: on mismatched shapes, bad weights, an unknown reduction or
        ``label_smoothing`` outside ``[0, 1)``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from seqmask import losses
      >>> logits = jnp.array([[[1.2, -0.8, -0.5], [0.9, -1.2, 1.1]],
      ...                     [[0.3, 0.1, -0.4], [0.0, 0.0, 0.0]]])
      >>> labels = jnp.array([[0, 1], [2, -100]])  # -100: padding
      >>> weights = jnp.array([[1.0, 1.0], [1.0, 0.0]])
      >>> loss = losses.softmax_cross_entropy_with_integer_labels(
      ...     logits, labels, weights)
      >>> print(f"{loss:.4f}")
      1.5892
      >>> per_token = losses.softmax_cross_entropy_with_integer_labels(
      ...     logits, labels, weights, reduction="none")
      >>> with jnp.printoptions(precision=4):
      ...     print(per_token)
      [[0.2761 2.9518]
       [1.5395 0.    ]]
    """
    check_reduction(reduction)
    logits = jnp.asarray(logits)
    labels = jnp.asarray(labels)
    check_floating("logits", logits)
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(
            f"labels must have an integer dtype; got {labels.dtype}. For "
            "probability targets use softmax_cross_entropy."
        )
    _check_class_axis("logits", logits)
    if labels.shape != logits.shape[:-1]:
        raise ValueError(
            "labels must have shape logits.shape[:-1] = "
            f"{logits.shape[:-1]}; got {labels.shape} (logits {logits.shape})."
        )
    _check_unit_interval("label_smoothing", label_smoothing)
    dtype = compute_dtype(logits)
    weights = align_weights(weights, labels.shape, dtype)
    present = None if weights is None else weights != 0
    # Selected in the input dtype so that no widened [..., V] copy is needed
    # before XLA fuses the cast into the reductions below.
    logits = select_present(
        logits, None if present is None else present[..., None], 0.0
    )
    labels = select_present(labels, present, 0)
    if labels.dtype.itemsize < 4 or jnp.issubdtype(labels.dtype, jnp.unsignedinteger):
        # Narrow or unsigned ids cannot be compared with V or -1 safely.
        labels = labels.astype(jnp.int32)
    num_classes = logits.shape[-1]
    in_range = (labels >= 0) & (labels < num_classes)
    log_normalizer = jax.nn.logsumexp(logits.astype(dtype), axis=-1)
    label_logit = jnp.take_along_axis(
        logits,
        jnp.where(in_range, labels, 0)[..., None],
        axis=-1,
        mode="promise_in_bounds",
    )[..., 0].astype(dtype)
    # A bad label of a counted token must be loud (NaN), not wrap around as a
    # negative index would.
    label_logit = jnp.where(in_range, label_logit, jnp.asarray(jnp.nan, dtype))
    loss = log_normalizer - label_logit
    if not _is_static_zero(label_smoothing):
        # The smoothed target needs no one-hot: its uniform part only sees
        # the sum of the logits.
        mean_logit = jnp.mean(logits.astype(dtype), axis=-1)
        smoothing = jnp.asarray(label_smoothing, dtype)
        loss = loss + smoothing * (label_logit - mean_logit)
    if not _is_static_zero(z_loss):
        loss = loss + jnp.asarray(z_loss, dtype) * jnp.square(log_normalizer)
    return reduce_loss(loss, weights, reduction)


def softmax_cross_entropy(
    logits: jax.typing.ArrayLike,
    targets: jax.typing.ArrayLike,
    weights: jax.typing.ArrayLike | None = None,
    *,
    reduction: Reduction = "weighted_mean",
) -> jax.Array:
    r"""Softmax cross-entropy between logits and target probabilities.

    The element is a token: the class axis is reduced, so the element-wise loss
    has shape ``logits.shape[:-1]``. Classes with zero target probability
    contribute 0 even where their logit is :math:`-\infty` (:math:`0 \log 0 =
    0`).

    .. math::
      \ell_i = -\sum_{j=1}^{V} t_{ij} \log \frac{\exp x_{ij}}
        {\sum_{k=1}^{V} \exp x_{ik}}.

    Args:
      logits: unnormalised log-probabilities, shape ``[..., V]``.
      targets: target distributions (non-negative, summing to 1 over the last
        axis, e.g. one-hot), same shape as ``logits``.
      weights: optional weights broadcastable to ``logits.shape[:-1]``;
        ``None`` means all ones. Zero weight means absent.
      reduction: ``"none"``, ``"sum"``, ``"mean"``, ``"weighted_mean"`` or
        ``"sequence_mean"`` (see :mod:`seqmask.losses`).

    Returns:
      A float32 (or float64) scalar, or for ``"none"`` the weighted
      element-wise loss of shape ``logits.shape[:-1]``.

    Raises:
      TypeError: if ``logits`` is not floating.
      ValueError: on mismatched shapes, bad weights or an unknown reduction.

    Examples:
      >>> import jax.numpy as jnp
      >>> from seqmask import losses
      >>> logits = jnp.array([[1.2, -0.8, -0.5], [0.9, -1.2, 1.1]])
      >>> targets = jnp.array([[1.0, 0.0, 0.0], [0.5, 0.0, 0.5]])
      >>> loss = losses.softmax_cross_entropy(logits, targets, reduction="none")
      >>> with jnp.printoptions(precision=4):
      ...     print(loss)
      [0.2761 0.7518]
    """
    check_reduction(reduction)
    logits = jnp.asarray(logits)
    targets = jnp.asarray(targets)
    check_floating("logits", logits)
    check_numeric("targets", targets)
    _check_class_axis("logits", logits)
    check_same_shape("logits", logits, "targets", targets)
    dtype = compute_dtype(logits, targets)
    weights = align_weights(weights, logits.shape[:-1], dtype)
    present = None if weights is None else (weights != 0)[..., None]
    logits = select_present(logits, present, 0.0).astype(dtype)
    targets = select_present(targets.astype(dtype), present, 0.0)
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    # Select rather than multiply so that t = 0 at a -inf logit gives 0, not
    # NaN, in the value and in the gradient.
    relevant = targets != 0
    log_probs = jnp.where(relevant, log_probs, jnp.zeros((), dtype))
    loss = -jnp.sum(targets * log_probs, axis=-1)
    return reduce_loss(loss, weights, reduction)


def sigmoid_binary_cross_entropy(
    logits: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    weights: jax.typing.ArrayLike | None = None,
    *,
    reduction: Reduction = "weighted_mean",
) -> jax.Array:
    r"""Element-wise sigmoid cross-entropy (independent binary predictions).

    The element is a feature: every entry of ``logits`` is its own binary
    prediction, so the element-wise loss has the shape of ``logits``.

    .. math::
      \ell_i = -y_i \log \sigma(x_i) - (1 - y_i) \log \sigma(-x_i).

    Args:
      logits: logits of the positive class, shape ``[...]``.
      labels: binary labels in ``{0, 1}`` or probabilities in ``[0, 1]``, same
        shape as ``logits``; boolean, integer or floating.
      weights: optional weights broadcastable to ``logits.shape`` (``[B]``,
        ``[B, T]``, ``[B, T, F]``, per-feature ``[F]``, ...); ``None`` means
        all ones. Zero weight means absent.
      reduction: ``"none"``, ``"sum"``, ``"mean"``, ``"weighted_mean"`` or
        ``"sequence_mean"`` (see :mod:`seqmask.losses`).

    Returns:
      A float32 (or float64) scalar, or for ``"none"`` the weighted
      element-wise loss of shape ``logits.shape``.

    Raises:
      TypeError: if ``logits`` is not floating.
      ValueError: on mismatched shapes, bad weights or an unknown reduction.

    Examples:
      >>> import jax.numpy as jnp
      >>> from seqmask import losses
      >>> logits = jnp.array([[2.0, -1.0], [0.5, 3.0]])
      >>> labels = jnp.array([[1, 0], [0, 1]])
      >>> loss = losses.sigmoid_binary_cross_entropy(
      ...     logits, labels, reduction="none")
      >>> with jnp.printoptions(precision=4):
      ...     print(loss)
      [[0.1269 0.3133]
       [0.9741 0.0486]]
    """
    check_reduction(reduction)
    logits = jnp.asarray(logits)
    labels = jnp.asarray(labels)
    check_floating("logits", logits)
    check_numeric("labels", labels)
    check_same_shape("logits", logits, "labels", labels)
    dtype = compute_dtype(logits, labels)
    weights = align_weights(weights, logits.shape, dtype)
    present = None if weights is None else weights != 0
    logits = select_present(logits, present, 0.0).astype(dtype)
    labels = select_present(labels.astype(dtype), present, 0.0)
    loss = _sigmoid_cross_entropy(logits, labels)
    return reduce_loss(loss, weights, reduction)


def _sigmoid_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    # log(1 - sigmoid(x)) is computed as log_sigmoid(-x), which stays accurate
    # for large positive x.
    return -labels * jax.nn.log_sigmoid(logits) - (1.0 - labels) * (
        jax.nn.log_sigmoid(-logits)
    )


def _log_weighted_add_exp(
    a: jax.Array, weight_a: jax.Array, b: jax.Array, weight_b: jax.Array
) -> jax.Array:
    """``log(weight_a * exp(a) + weight_b * exp(b))`` for weights >= 0.

    A term of zero weight is dropped before the shift, so that a binary label
    gives exactly the other term rather than an underflowed sum.
    """
    minus_infinity = jnp.asarray(-jnp.inf, a.dtype)
    a = jnp.where(weight_a != 0, a, minus_infinity)
    b = jnp.where(weight_b != 0, b, minus_infinity)
    shift = jax.lax.stop_gradient(jnp.maximum(a, b))
    return shift + jnp.log(
        weight_a * jnp.exp(a - shift) + weight_b * jnp.exp(b - shift)
    )


def sigmoid_focal_loss(
    logits: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    weights: jax.typing.ArrayLike | None = None,
    *,
    reduction: Reduction = "weighted_mean",
    alpha: float | None = None,
    gamma: float = 2.0,
) -> jax.Array:
    r"""Element-wise sigmoid focal loss (Lin et al., 2017).

    A sigmoid cross-entropy scaled down for confident, correct predictions. The
    element is a feature, as in :func:`sigmoid_binary_cross_entropy`. With
    :math:`p = \sigma(x)`, :math:`p_t = y p + (1 - y)(1 - p)` and
    :math:`\alpha_t = y \alpha + (1 - y)(1 - \alpha)` (1 when ``alpha`` is
    None):

    .. math::
      \ell_i = \alpha_t\, (1 - p_t)^\gamma\, \mathrm{BCE}(x_i, y_i),

    where the modulating factor is computed in log space for stability, as in
    ``optax.sigmoid_focal_loss``.

    Args:
      logits: logits of the positive class, shape ``[...]``.
      labels: labels in ``{0, 1}`` or ``[0, 1]``, same shape as ``logits``.
      weights: optional weights broadcastable to ``logits.shape``; ``None``
        means all ones. Zero weight means absent.
      reduction: ``"none"``, ``"sum"``, ``"mean"``, ``"weighted_mean"`` or
        ``"sequence_mean"`` (see :mod:`seqmask.losses`).
      alpha: optional balance :math:`\alpha \in (0, 1)` of positives.
      gamma: focusing exponent :math:`\gamma \ge 0`.

    Returns:
      A float32 (or float64) scalar, or for ``"none"`` the weighted
      element-wise loss of shape ``logits.shape``.

    Raises:
      TypeError: if ``logits`` is not floating.
      ValueError: on mismatched shapes, bad weights or an unknown reduction.

    Examples:
      >>> import jax.numpy as jnp
      >>> from seqmask import losses
      >>> logits = jnp.array([2.0, -1.0, 0.5])
      >>> labels = jnp.array([1.0, 0.0, 0.0])
      >>> loss = losses.sigmoid_focal_loss(logits, labels, reduction="none")
      >>> with jnp.printoptions(precision=4):
      ...     print(loss)
      [0.0018 0.0227 0.3774]
    """
    check_reduction(reduction)
    logits = jnp.asarray(logits)
    labels = jnp.asarray(labels)
    check_floating("logits", logits)
    check_numeric("labels", labels)
    check_same_shape("logits", logits, "labels", labels)
    dtype = compute_dtype(logits, labels)
    weights = align_weights(weights, logits.shape, dtype)
    present = None if weights is None else weights != 0
    logits = select_present(logits, present, 0.0).astype(dtype)
    labels = select_present(labels.astype(dtype), present, 0.0)
    cross_entropy = _sigmoid_cross_entropy(logits, labels)
    log_p = jax.nn.log_sigmoid(logits)
    log_not_p = jax.nn.log_sigmoid(-logits)
    # log(1 - p_t) = log((1 - y) p + y (1 - p)), without leaving log space.
    log_one_minus_p_t = _log_weighted_add_exp(log_p, 1.0 - labels, log_not_p, labels)
    loss = jnp.exp(jnp.asarray(gamma, dtype) * log_one_minus_p_t) * cross_entropy
    if alpha is not None:
        alpha_array = jnp.asarray(alpha, dtype)
        loss = (alpha_array * labels + (1.0 - alpha_array) * (1.0 - labels)) * loss
    return reduce_loss(loss, weights, reduction)


def kl_divergence(
    log_predictions: jax.typing.ArrayLike,
    targets: jax.typing.ArrayLike,
    weights: jax.typing.ArrayLike | None = None,
    *,
    reduction: Reduction = "weighted_mean",
) -> jax.Array:
    r"""Kullback-Leibler divergence of predicted from target distributions.

    The element is a token: the class axis is reduced, so the element-wise loss
    has shape ``targets.shape[:-1]``. Classes with zero target probability
    contribute 0 (:math:`0 \log 0 = 0`), even where the prediction is
    :math:`-\infty`.

    .. math::
      \ell_i = \sum_{j=1}^{V} t_{ij} \left(\log t_{ij} - \log p_{ij}\right).

    Args:
      log_predictions: log-probabilities of the predicted distribution, shape
        ``[..., V]``.
      targets: probabilities of the target distribution (not logs), same shape.
      weights: optional weights broadcastable to ``targets.shape[:-1]``;
        ``None`` means all ones. Zero weight means absent.
      reduction: ``"none"``, ``"sum"``, ``"mean"``, ``"weighted_mean"`` or
        ``"sequence_mean"`` (see :mod:`seqmask.losses`).

    Returns:
      A float32 (or float64) scalar, or for ``"none"`` the weighted
      element-wise loss of shape ``targets.shape[:-1]``.

    Raises:
      TypeError: if ``log_predictions`` is not floating.
      ValueError: on mismatched shapes, bad weights or an unknown reduction.

    Examples:
      >>> import jax
      >>> import jax.numpy as jnp
      >>> from seqmask import losses
      >>> log_predictions = jax.nn.log_softmax(jnp.array([[1.0, 2.0, 0.5]]))
      >>> targets = jnp.array([[0.2, 0.8, 0.0]])
      >>> loss = losses.kl_divergence(log_predictions, targets)
      >>> print(f"{loss:.4f}")
      0.1640
    """
    check_reduction(reduction)
    log_predictions = jnp.asarray(log_predictions)
    targets = jnp.asarray(targets)
    check_floating("log_predictions", log_predictions)
    check_numeric("targets", targets)
    _check_class_axis("log_predictions", log_predictions)
    check_same_shape("log_predictions", log_predictions, "targets", targets)
    dtype = compute_dtype(log_predictions, targets)
    weights = align_weights(weights, targets.shape[:-1], dtype)
    present = None if weights is None else (weights != 0)[..., None]
    log_predictions = select_present(log_predictions, present, 0.0).astype(dtype)
    targets = select_present(targets.astype(dtype), present, 0.0)
    relevant = targets != 0
    positive = targets > 0
    zero = jnp.zeros((), dtype)
    one = jnp.ones((), dtype)
    # Each log sees a safe argument where it is not used, so that neither the
    # value nor the gradient picks up 0 * inf.
    log_targets = jnp.where(positive, jnp.log(jnp.where(positive, targets, one)), zero)
    log_predictions = jnp.where(relevant, log_predictions, zero)
    loss = jnp.sum(targets * (log_targets - log_predictions), axis=-1)
    return reduce_loss(loss, weights, reduction)
