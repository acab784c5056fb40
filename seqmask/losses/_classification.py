"""Classification losses: softmax and sigmoid cross-entropies, focal loss, KL.

Each function computes an element-wise loss (one value per token for the
softmax losses and the KL divergence, one per feature for the sigmoid losses),
weights it and reduces it as described in :mod:`seqmask.losses`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

import seqmask._checks as _checks
from seqmask.losses._reduce import Kind, Reduction, prepare, reduce_loss

# How each family reads its inputs.
_INTEGER_LABELS = Kind(
    ("logits", "labels"), reduces_last_axis=True, labels=True, cast=False
)
_DISTRIBUTIONS = Kind(("logits", "targets"), reduces_last_axis=True)
_BINARY = Kind(("logits", "labels"))
_LOG_PROBS = Kind(("log_predictions", "targets"), reduces_last_axis=True)


def _is_static_zero(value: object) -> bool:
    return isinstance(value, (int, float)) and value == 0


def softmax_cross_entropy_with_integer_labels(
    logits: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    weights: jax.typing.ArrayLike | None = None,
    *,
    reduction: Reduction = "weighted_mean",
    segment_ids: jax.typing.ArrayLike | None = None,
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
        id such as ``-100`` included). An out-of-range label of a counted
        token (negative ones included) gives NaN, in the loss and in its
        gradient, deliberately: the mistake is loud, and checking every
        label would cost a pass over them.
      weights: per-token weights broadcastable to ``labels.shape`` (``[B]``,
        ``[B, T]``, ...); None means all ones, zero means absent.
      reduction: how to reduce (see :mod:`seqmask.losses`).
      segment_ids: int ``[B, T]`` ids of packed sequences, negative at
        padding (see :mod:`seqmask.losses`).
      label_smoothing: :math:`\epsilon \in [0, 1)`.
      z_loss: coefficient :math:`z \ge 0` of :math:`\log^2 Z`.

    Returns:
      A float32 (float64 for float64 logits) scalar, or for ``"none"`` the
      weighted element-wise loss of shape ``labels.shape``.

    Raises:
      TypeError: if ``logits`` is not floating or ``labels`` not integer.
      ValueError: on mismatched shapes, bad weights, an unknown reduction, or
        ``label_smoothing`` or ``z_loss`` out of range (through checkify when
        traced).

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
    where = "softmax_cross_entropy_with_integer_labels"
    _checks.hyperparameter(
        label_smoothing, "label_smoothing", where, low=0, high=1, high_open=True
    )
    _checks.hyperparameter(z_loss, "z_loss", where, low=0)
    # The logits stay in their dtype until the reductions below, so that no
    # widened [..., V] copy is needed before XLA fuses the cast into them.
    inputs = prepare(
        where, _INTEGER_LABELS, logits, labels, weights, reduction, segment_ids
    )
    dtype, logits, labels = inputs.dtype, inputs.predictions, inputs.targets
    num_classes = logits.shape[-1]
    in_range = (labels >= 0) & (labels < num_classes)
    log_normalizer = jax.nn.logsumexp(logits.astype(dtype), axis=-1)
    label_logit = jnp.take_along_axis(
        logits,
        jnp.where(in_range, labels, 0)[..., None],
        axis=-1,
        mode="promise_in_bounds",
    )[..., 0].astype(dtype)
    # A bad label of a counted token must be loud (NaN, in the value and in
    # the gradient), not wrap around as a negative index would. A factor,
    # not a select: a NaN branch would give no gradient, and a NaN product
    # in an unselected branch would poison absent tokens too (0 * NaN).
    harmless = in_range if inputs.weights is None else in_range | (inputs.weights == 0)
    poison = jnp.where(harmless, 1.0, jnp.nan).astype(dtype)
    label_logit = label_logit * poison
    loss = log_normalizer - label_logit
    if not _is_static_zero(label_smoothing):
        # The smoothed target needs no one-hot: its uniform part only sees
        # the sum of the logits.
        mean_logit = jnp.mean(logits.astype(dtype), axis=-1)
        smoothing = jnp.asarray(label_smoothing, dtype)
        loss = loss + smoothing * (label_logit - mean_logit)
    if not _is_static_zero(z_loss):
        loss = loss + jnp.asarray(z_loss, dtype) * jnp.square(log_normalizer)
    return reduce_loss(loss, inputs, reduction)


def softmax_cross_entropy(
    logits: jax.typing.ArrayLike,
    targets: jax.typing.ArrayLike,
    weights: jax.typing.ArrayLike | None = None,
    *,
    reduction: Reduction = "weighted_mean",
    segment_ids: jax.typing.ArrayLike | None = None,
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
      targets: target distributions, same shape as ``logits``: non-negative
        and summing to 1 over the last axis (e.g. one-hot) wherever the
        weight is not zero; checked eagerly, or through checkify when traced.
      weights: per-token weights broadcastable to ``logits.shape[:-1]``;
        None means all ones, zero means absent.
      reduction: how to reduce (see :mod:`seqmask.losses`).
      segment_ids: int ``[B, T]`` ids of packed sequences (see
        :mod:`seqmask.losses`).

    Returns:
      A float32 (or float64) scalar, or for ``"none"`` the weighted
      element-wise loss of shape ``logits.shape[:-1]``.

    Raises:
      TypeError: if ``logits`` is not floating.
      ValueError: on mismatched shapes, bad weights, an unknown reduction or
        targets that are not distributions.

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
    where = "softmax_cross_entropy"
    inputs = prepare(
        where, _DISTRIBUTIONS, logits, targets, weights, reduction, segment_ids
    )
    targets = inputs.targets
    _checks.distribution(
        targets, "targets", where, valid=inputs.present, dtype=inputs.input_dtypes[1]
    )
    log_probs = jax.nn.log_softmax(inputs.predictions, axis=-1)
    # Select rather than multiply so that t = 0 at a -inf logit gives 0, not
    # NaN, in the value and in the gradient; a finite log-probability stays,
    # so that a target of 0 keeps its derivative -log p.
    kept = (targets != 0) | jnp.isfinite(log_probs)
    log_probs = jnp.where(kept, log_probs, jnp.zeros((), inputs.dtype))
    loss = -jnp.sum(targets * log_probs, axis=-1)
    return reduce_loss(loss, inputs, reduction)


def _binary_inputs(where, logits, labels, weights, reduction, segment_ids):
    """The sigmoid losses' prepared inputs, with labels checked to lie in
    ``[0, 1]`` where they count."""
    inputs = prepare(where, _BINARY, logits, labels, weights, reduction, segment_ids)
    _checks.in_range(
        inputs.targets,
        "labels",
        where,
        low=0,
        high=1,
        valid=inputs.present,
        hint=" (binary labels or probabilities)",
    )
    return inputs


def _sigmoid_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    # log(1 - sigmoid(x)) is computed as log_sigmoid(-x), which stays accurate
    # for large positive x.
    return -labels * jax.nn.log_sigmoid(logits) - (1.0 - labels) * (
        jax.nn.log_sigmoid(-logits)
    )


def sigmoid_binary_cross_entropy(
    logits: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    weights: jax.typing.ArrayLike | None = None,
    *,
    reduction: Reduction = "weighted_mean",
    segment_ids: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    r"""Element-wise sigmoid cross-entropy (independent binary predictions).

    The element is a feature: every entry of ``logits`` is its own binary
    prediction, so the element-wise loss has the shape of ``logits``.

    .. math::
      \ell_i = -y_i \log \sigma(x_i) - (1 - y_i) \log \sigma(-x_i).

    Args:
      logits: logits of the positive class, shape ``[...]``.
      labels: binary labels in ``{0, 1}`` or probabilities in ``[0, 1]``, same
        shape as ``logits``; boolean, integer or floating. Labels outside
        ``[0, 1]`` where the weight is not zero raise a ``ValueError``
        (through checkify when traced).
      weights: weights broadcastable to ``logits.shape`` (``[B]``, ``[B, T]``,
        ``[B, T, F]``, per-feature ``[F]``, ...); None means all ones, zero
        means absent.
      reduction: how to reduce (see :mod:`seqmask.losses`).
      segment_ids: int ``[B, T]`` ids of packed sequences.

    Returns:
      A float32 (or float64) scalar, or for ``"none"`` the weighted
      element-wise loss of shape ``logits.shape``.

    Raises:
      TypeError: if ``logits`` is not floating.
      ValueError: on mismatched shapes, bad weights, an unknown reduction or
        labels outside ``[0, 1]``.

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
    where = "sigmoid_binary_cross_entropy"
    inputs = _binary_inputs(where, logits, labels, weights, reduction, segment_ids)
    loss = _sigmoid_cross_entropy(inputs.predictions, inputs.targets)
    return reduce_loss(loss, inputs, reduction)


def _log_weighted_add_exp(
    a: jax.Array, weight_a: jax.Array, b: jax.Array, weight_b: jax.Array
) -> jax.Array:
    """``log(weight_a * exp(a) + weight_b * exp(b))`` for weights >= 0.

    The shift ignores a term of zero weight, so that a binary label gives
    exactly the other term rather than an underflowed sum; the term stays
    in the sum (times 0), so the weight keeps its derivative ``exp(a) /
    sum``, its exponent capped below overflow (``0 * inf`` would be NaN).
    """
    minus_infinity = jnp.asarray(-jnp.inf, a.dtype)
    kept_a = jnp.where(weight_a != 0, a, minus_infinity)
    kept_b = jnp.where(weight_b != 0, b, minus_infinity)
    shift = jax.lax.stop_gradient(jnp.maximum(kept_a, kept_b))
    cap = jnp.asarray(math.log(float(jnp.finfo(a.dtype).max)) - 1.0, a.dtype)

    def term(x):
        return jnp.exp(jnp.minimum(x - shift, cap))

    return shift + jnp.log(weight_a * term(a) + weight_b * term(b))


def sigmoid_focal_loss(
    logits: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    weights: jax.typing.ArrayLike | None = None,
    *,
    reduction: Reduction = "weighted_mean",
    segment_ids: jax.typing.ArrayLike | None = None,
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
      labels: labels in ``{0, 1}`` or ``[0, 1]``, same shape as ``logits``
        (checked where the weight is not zero).
      weights: weights broadcastable to ``logits.shape``; None means all
        ones, zero means absent.
      reduction: how to reduce (see :mod:`seqmask.losses`).
      segment_ids: int ``[B, T]`` ids of packed sequences.
      alpha: optional balance :math:`\alpha \in [0, 1]` of positives.
      gamma: focusing exponent :math:`\gamma \ge 0`.

    Returns:
      A float32 (or float64) scalar, or for ``"none"`` the weighted
      element-wise loss of shape ``logits.shape``.

    Raises:
      TypeError: if ``logits`` is not floating, or ``alpha``/``gamma`` not a
        number.
      ValueError: on mismatched shapes, bad weights, an unknown reduction,
        labels outside ``[0, 1]``, or ``alpha``/``gamma`` out of range.

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
    where = "sigmoid_focal_loss"
    if alpha is not None:
        _checks.hyperparameter(alpha, "alpha", where, low=0, high=1)
    _checks.hyperparameter(gamma, "gamma", where, low=0)
    inputs = _binary_inputs(where, logits, labels, weights, reduction, segment_ids)
    logits, labels, dtype = inputs.predictions, inputs.targets, inputs.dtype
    cross_entropy = _sigmoid_cross_entropy(logits, labels)
    log_p = jax.nn.log_sigmoid(logits)
    log_not_p = jax.nn.log_sigmoid(-logits)
    # log(1 - p_t) = log((1 - y) p + y (1 - p)), without leaving log space.
    log_one_minus_p_t = _log_weighted_add_exp(log_p, 1.0 - labels, log_not_p, labels)
    loss = jnp.exp(jnp.asarray(gamma, dtype) * log_one_minus_p_t) * cross_entropy
    if alpha is not None:
        alpha_array = jnp.asarray(alpha, dtype)
        loss = (alpha_array * labels + (1.0 - alpha_array) * (1.0 - labels)) * loss
    return reduce_loss(loss, inputs, reduction)


def kl_divergence(
    log_predictions: jax.typing.ArrayLike,
    targets: jax.typing.ArrayLike,
    weights: jax.typing.ArrayLike | None = None,
    *,
    reduction: Reduction = "weighted_mean",
    segment_ids: jax.typing.ArrayLike | None = None,
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
        ``[..., V]`` (e.g. ``jax.nn.log_softmax(logits)``; raw logits are
        refused).
      targets: probabilities of the target distribution (not logs), same
        shape. Both are checked where the weight is not zero, eagerly or
        through checkify when traced.
      weights: per-token weights broadcastable to ``targets.shape[:-1]``;
        None means all ones, zero means absent.
      reduction: how to reduce (see :mod:`seqmask.losses`).
      segment_ids: int ``[B, T]`` ids of packed sequences.

    Returns:
      A float32 (or float64) scalar, or for ``"none"`` the weighted
      element-wise loss of shape ``targets.shape[:-1]``.

    Raises:
      TypeError: if ``log_predictions`` is not floating.
      ValueError: on mismatched shapes, bad weights, an unknown reduction,
        ``log_predictions`` that are not log-probabilities or ``targets``
        that are not probabilities.

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
    where = "kl_divergence"
    inputs = prepare(
        where, _LOG_PROBS, log_predictions, targets, weights, reduction, segment_ids
    )
    log_predictions, targets, dtype = inputs.predictions, inputs.targets, inputs.dtype
    for value, name, dtype_given, log in (
        (log_predictions, "log_predictions", inputs.input_dtypes[0], True),
        (targets, "targets", inputs.input_dtypes[1], False),
    ):
        _checks.distribution(
            value, name, where, log=log, valid=inputs.present, dtype=dtype_given
        )
    positive = targets > 0
    zero = jnp.zeros((), dtype)
    # Each log sees a safe argument where it is not used, so that neither the
    # value nor the gradient picks up 0 * inf.
    log_targets = jnp.where(
        positive, jnp.log(jnp.where(positive, targets, jnp.ones((), dtype))), zero
    )
    log_predictions = jnp.where(targets != 0, log_predictions, zero)
    loss = jnp.sum(targets * (log_targets - log_predictions), axis=-1)
    return reduce_loss(loss, inputs, reduction)
