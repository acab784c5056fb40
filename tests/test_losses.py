"""Tests of seqmask.losses against NumPy references and optax.

Every loss is checked element-wise against a float64 NumPy reference written
here and, where optax has the same loss, against optax; every reduction and
weight shape against a NumPy reduction; zero weights against NaN/Inf poisoning
(values and gradients); gradients with ``jax.test_util.check_grads`` in
float64. The sparse auto-encoder and seq2seq cases run end to end.
"""

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.experimental import checkify
from jax.test_util import check_grads

from seqmask import losses
from seqmask import weights as seq_weights

B, T, V = 3, 4, 5  # batch, time, classes / features; all distinct on purpose
F = V


# ---------------------------------------------------------------------------
# NumPy references (float64)


def np_log_softmax(x):
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def np_logsumexp(x):
    top = x.max(axis=-1)
    return top + np.log(np.exp(x - top[..., None]).sum(axis=-1))


def np_ce_integer(logits, labels, label_smoothing=0.0, z_loss=0.0):
    num_classes = logits.shape[-1]
    target = (1.0 - label_smoothing) * np.eye(num_classes)[labels]
    target = target + label_smoothing / num_classes
    loss = -(target * np_log_softmax(logits)).sum(axis=-1)
    return loss + z_loss * np_logsumexp(logits) ** 2


def np_ce(logits, targets):
    return -(targets * np_log_softmax(logits)).sum(axis=-1)


def np_sigmoid_bce(logits, labels):
    # -log(sigmoid(x)) = log(1 + exp(-x))
    return labels * np.logaddexp(0.0, -logits) + (1 - labels) * np.logaddexp(
        0.0, logits
    )


def np_focal(logits, labels, alpha=None, gamma=2.0):
    p = 1.0 / (1.0 + np.exp(-logits))
    p_t = labels * p + (1 - labels) * (1 - p)
    loss = (1 - p_t) ** gamma * np_sigmoid_bce(logits, labels)
    if alpha is not None:
        loss = (alpha * labels + (1 - alpha) * (1 - labels)) * loss
    return loss


def np_huber(predictions, targets, delta=1.0):
    error = np.abs(predictions - targets)
    return np.where(error <= delta, 0.5 * error**2, delta * (error - 0.5 * delta))


def np_kl(log_predictions, targets):
    safe = np.where(targets > 0, targets, 1.0)
    return (np.where(targets > 0, targets * np.log(safe), 0.0)).sum(-1) - (
        targets * log_predictions
    ).sum(-1)


def np_cosine(predictions, targets, epsilon=1e-12):
    norm_p = np.sqrt(np.maximum((predictions**2).sum(-1), epsilon))
    norm_t = np.sqrt(np.maximum((targets**2).sum(-1), epsilon))
    return 1.0 - (predictions * targets).sum(-1) / (norm_p * norm_t)


def np_reduce(loss, weights, reduction):
    """Reference reductions; ``weights`` already broadcast to ``loss``."""
    weighted = loss * weights
    if reduction == "none":
        return weighted
    if reduction == "sum":
        return weighted.sum()
    if reduction == "mean":
        return weighted.sum() / loss.size
    if reduction == "weighted_mean":
        total = weights.sum()
        return weighted.sum() / total if total != 0 else 0.0
    assert reduction == "sequence_mean"
    row_means = []
    for row in range(loss.shape[0]):
        row_weight = weights[row].sum()
        if row_weight != 0:
            row_means.append(weighted[row].sum() / row_weight)
    return float(np.mean(row_means)) if row_means else 0.0


# ---------------------------------------------------------------------------
# Cases: one per loss (and per notable option set)


def softmax(x):
    return np.exp(np_log_softmax(x))


def make_integer_labels(rng):
    return 2.0 * rng.normal(size=(B, T, V)), rng.integers(0, V, size=(B, T))


def make_probabilities(rng):
    return 2.0 * rng.normal(size=(B, T, V)), softmax(rng.normal(size=(B, T, V)))


def make_log_probabilities(rng):
    log_predictions = np_log_softmax(rng.normal(size=(B, T, V)))
    return log_predictions, softmax(rng.normal(size=(B, T, V)))


def make_binary(rng):
    # Soft labels, so that the formula is tested beyond {0, 1} and the labels
    # are differentiable.
    return 2.0 * rng.normal(size=(B, T, F)), rng.uniform(0.05, 0.95, size=(B, T, F))


def make_regression(rng):
    return rng.normal(size=(B, T, F)), rng.normal(size=(B, T, F))


def optax_ce_smoothed(logits, labels, label_smoothing):
    targets = optax.smooth_labels(jax.nn.one_hot(labels, V), label_smoothing)
    return optax.softmax_cross_entropy(logits, targets)


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    loss: Callable[..., jax.Array]
    element: str  # "token" and "vector": last axis reduced; "feature": not
    make: Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray]]
    reference: Callable[..., np.ndarray]
    peer: Callable[..., jax.Array] | None = None
    options: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def integer_targets(self) -> bool:
        return self.make is make_integer_labels

    def element_shape(self) -> tuple[int, ...]:
        return (B, T) if self.element in ("token", "vector") else (B, T, F)

    def inputs(self, rng, dtype=np.float32):
        predictions, targets = self.make(rng)
        predictions = predictions.astype(dtype)
        if not self.integer_targets:
            targets = targets.astype(dtype)
        else:
            targets = targets.astype(np.int32)
        return predictions, targets


CASES = [
    Case(
        "ce_integer",
        losses.softmax_cross_entropy_with_integer_labels,
        "token",
        make_integer_labels,
        np_ce_integer,
        optax.softmax_cross_entropy_with_integer_labels,
    ),
    Case(
        "ce_integer_smoothed",
        losses.softmax_cross_entropy_with_integer_labels,
        "token",
        make_integer_labels,
        np_ce_integer,
        lambda x, y, label_smoothing: optax_ce_smoothed(x, y, label_smoothing),
        {"label_smoothing": 0.1},
    ),
    Case(
        "ce_probabilities",
        losses.softmax_cross_entropy,
        "token",
        make_probabilities,
        np_ce,
        optax.softmax_cross_entropy,
    ),
    Case(
        "sigmoid_bce",
        losses.sigmoid_binary_cross_entropy,
        "feature",
        make_binary,
        np_sigmoid_bce,
        optax.sigmoid_binary_cross_entropy,
    ),
    Case(
        "focal",
        losses.sigmoid_focal_loss,
        "feature",
        make_binary,
        np_focal,
        optax.sigmoid_focal_loss,
        {"alpha": 0.25, "gamma": 1.5},
    ),
    Case(
        "squared_error",
        losses.squared_error,
        "feature",
        make_regression,
        lambda p, t: (p - t) ** 2,
        optax.squared_error,
    ),
    Case(
        "absolute_error",
        losses.absolute_error,
        "feature",
        make_regression,
        lambda p, t: np.abs(p - t),
    ),
    Case(
        "huber",
        losses.huber_loss,
        "feature",
        make_regression,
        np_huber,
        optax.huber_loss,
        {"delta": 0.7},
    ),
    Case(
        "log_cosh",
        losses.log_cosh,
        "feature",
        make_regression,
        lambda p, t: np.log(np.cosh(p - t)),
        optax.log_cosh,
    ),
    Case(
        "kl_divergence",
        losses.kl_divergence,
        "token",
        make_log_probabilities,
        np_kl,
        optax.kl_divergence,
    ),
    Case(
        "cosine_distance",
        losses.cosine_distance,
        "vector",
        make_regression,
        np_cosine,
        lambda p, t: optax.cosine_distance(p, t, epsilon=1e-12),
    ),
]


def jitted(loss, **static):
    """``loss`` under jit with keyword options static: one compile per test
    costs far less than eager dispatch of every op for every new shape."""
    return jax.jit(functools.partial(loss, **static))


def all_reductions(loss, **static):
    """One jitted function returning ``{reduction: loss(...)}`` for every
    reduction, so that a test compiles once."""

    def run(*args):
        return {
            reduction: loss(*args, reduction=reduction, **static)
            for reduction in losses.REDUCTIONS
        }

    return jax.jit(run)


case_params = pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
# One case per kind of element (token, feature, vector), for properties that
# live in the shared reduction code rather than in each loss.
representative_case_params = pytest.mark.parametrize(
    "case",
    [
        case
        for case in CASES
        if case.name in ("ce_integer", "squared_error", "cosine_distance")
    ],
    ids=lambda case: case.name,
)


def element_weights(rng, shape, zero_fraction=0.4):
    """Positive weights with some zeros (at least one, and not all)."""
    values = rng.uniform(0.5, 2.0, size=shape)
    absent = rng.random(size=shape) < zero_fraction
    absent.flat[0], absent.flat[-1] = True, False
    return np.where(absent, 0.0, values).astype(np.float32)


# ---------------------------------------------------------------------------
# Element-wise values


@case_params
def test_elementwise_matches_numpy_and_optax(case):
    rng = np.random.default_rng(0)
    predictions, targets = case.inputs(rng)
    got = jitted(case.loss, reduction="none", **case.options)(predictions, targets)
    chex.assert_type(got, jnp.float32)
    chex.assert_shape(got, case.element_shape())
    expected = case.reference(
        predictions.astype(np.float64),
        targets if case.integer_targets else targets.astype(np.float64),
        **case.options,
    )
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=2e-6)
    if case.peer is not None:
        peer = jitted(case.peer, **case.options)(predictions, targets)
        np.testing.assert_allclose(got, peer, rtol=2e-5, atol=2e-6)


def test_ce_z_loss_and_focal_without_alpha():
    rng = np.random.default_rng(15)
    logits, labels = make_integer_labels(rng)
    options = {"label_smoothing": 0.2, "z_loss": 0.05}
    got = jitted(
        losses.softmax_cross_entropy_with_integer_labels, reduction="none", **options
    )(logits.astype(np.float32), labels)
    expected = np_ce_integer(
        logits.astype(np.float32).astype(np.float64), labels, **options
    )
    np.testing.assert_allclose(got, expected, rtol=2e-5)
    logits, labels = make_binary(rng)
    got = jitted(losses.sigmoid_focal_loss, reduction="none")(
        logits.astype(np.float32), labels.astype(np.float32)
    )
    expected = np_focal(
        logits.astype(np.float32).astype(np.float64),
        labels.astype(np.float32).astype(np.float64),
    )
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=1e-7)


def test_focal_and_soft_cross_entropy_label_gradients_at_the_ends(x64):
    """Both losses are smooth in the labels: at labels of exactly 0 and 1
    (and at 0 target probability) the gradient is the closed form's, not
    the 0 that dropping a zero-weight term would give."""
    logits = np.array([0.7, -1.3, 2.0, -4.0])
    p = 1.0 / (1.0 + np.exp(-logits))
    gamma = 2.0
    for y in (np.zeros(4), np.ones(4), np.full(4, 0.3)):
        q = (1 - y) * p + y * (1 - p)
        bce = -(y * np.log(p) + (1 - y) * np.log(1 - p))
        want = gamma * q ** (gamma - 1) * (1 - 2 * p) * bce + q**gamma * (
            np.log(1 - p) - np.log(p)
        )
        got = jax.grad(
            lambda y: losses.sigmoid_focal_loss(logits, y, reduction="sum", gamma=gamma)
        )(y)
        np.testing.assert_allclose(got, want, rtol=1e-9)
    scores = np.array([[1.0, 2.0, 0.5]])
    targets = np.array([[0.3, 0.7, 0.0]])
    got = jax.grad(lambda t: losses.softmax_cross_entropy(scores, t, reduction="sum"))(
        targets
    )
    log_softmax = scores - np.log(np.sum(np.exp(scores)))
    np.testing.assert_allclose(got, -log_softmax, rtol=1e-12)


def test_out_of_range_label_of_a_counted_token_is_nan():
    logits = np.zeros((2, 3), np.float32)
    labels = np.array([-1, 3], np.int8)
    loss = jitted(losses.softmax_cross_entropy_with_integer_labels, reduction="none")
    assert np.all(np.isnan(loss(logits, labels)))
    # The same labels at zero-weight tokens are simply absent.
    np.testing.assert_array_equal(loss(logits, labels, np.zeros(2)), [0.0, 0.0])


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_out_of_range_label_of_a_counted_token_poisons_the_gradient(smoothing):
    """The gradient is NaN too (it was finite: a training step moved on as if
    the token had no label), in the bad token's row only; an out-of-range
    label at zero weight (a -100 pad) leaves every gradient finite, equal to
    the loss without that token (NumPy)."""
    rng = np.random.default_rng(12)
    logits = rng.normal(size=(1, 3, 4)).astype(np.float32)
    labels = np.array([[1, 7, -100]], np.int32)
    w = np.array([[1.0, 1.0, 0.0]], np.float32)

    def loss(logits, w):
        return losses.softmax_cross_entropy_with_integer_labels(
            logits, labels, w, reduction="sum", label_smoothing=smoothing
        )

    grad = np.asarray(jax.jit(jax.grad(loss))(logits, w))
    assert np.isnan(grad[0, 1]).any() and np.isfinite(grad[0, [0, 2]]).all()
    grad = np.asarray(jax.jit(jax.grad(loss))(logits, w * [[1.0, 0.0, 0.0]]))
    x = logits.astype(np.float64)[0, 0]
    p = np.exp(x) / np.exp(x).sum()
    want = p - ((1 - smoothing) * np.eye(4)[1] + smoothing / 4)
    np.testing.assert_allclose(grad[0, 0], want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(grad[0, 1:], 0.0)


def test_ce_zero_probability_at_minus_infinity_counts_zero():
    logits = jnp.array([[0.5, -jnp.inf, 1.0]])
    targets = jnp.array([[0.3, 0.0, 0.7]])
    value, grad = jax.jit(jax.value_and_grad(losses.softmax_cross_entropy))(
        logits, targets
    )
    finite = np.array([[0.5, 1.0]])
    np.testing.assert_allclose(value, np_ce(finite, np.array([[0.3, 0.7]]))[0])
    assert np.all(np.isfinite(grad))


# ---------------------------------------------------------------------------
# Reductions and weight shapes


# (name, shape, how the test itself broadcasts a weight of that shape)
FEATURE_WEIGHTS = [
    ("none", None, None),
    ("scalar", (), lambda w: w),
    ("per_sequence", (B,), lambda w: w[:, None, None]),
    ("per_step", (B, T), lambda w: w[:, :, None]),
    ("per_element", (B, T, F), lambda w: w),
    ("per_feature_shared", (F,), lambda w: w[None, None, :]),
    ("per_step_shared", (1, T), lambda w: w[:, :, None]),
]
TOKEN_WEIGHTS = [
    ("per_sequence", (B,), lambda w: w[:, None]),
    ("per_step", (B, T), lambda w: w),
    ("per_step_shared", (T,), lambda w: w[None, :]),
]


def weights_with_zero_row(rng, shape):
    weights = element_weights(rng, shape, zero_fraction=0.3)
    if len(shape) >= 1 and shape[0] == B:
        weights[1] = 0.0  # one sequence entirely absent
    return weights


@pytest.mark.parametrize(
    "weight_name,shape,broadcast", FEATURE_WEIGHTS, ids=[w[0] for w in FEATURE_WEIGHTS]
)
def test_reductions_feature_loss(weight_name, shape, broadcast):
    rng = np.random.default_rng(1)
    predictions, targets = make_regression(rng)
    weights = None if shape is None else weights_with_zero_row(rng, shape)
    element_loss = (predictions - targets) ** 2
    full = (
        np.ones_like(element_loss)
        if weights is None
        else np.broadcast_to(broadcast(weights.astype(np.float64)), element_loss.shape)
    )
    got = all_reductions(losses.squared_error)(
        predictions.astype(np.float32), targets.astype(np.float32), weights
    )
    for reduction in losses.REDUCTIONS:
        expected = np_reduce(element_loss, full, reduction)
        np.testing.assert_allclose(got[reduction], expected, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize(
    "weight_name,shape,broadcast", TOKEN_WEIGHTS, ids=[w[0] for w in TOKEN_WEIGHTS]
)
def test_reductions_token_loss(weight_name, shape, broadcast):
    rng = np.random.default_rng(2)
    logits, labels = make_integer_labels(rng)
    weights = weights_with_zero_row(rng, shape)
    element_loss = np_ce_integer(logits, labels)
    full = np.broadcast_to(broadcast(weights.astype(np.float64)), element_loss.shape)
    got = all_reductions(losses.softmax_cross_entropy_with_integer_labels)(
        logits.astype(np.float32), labels, weights
    )
    for reduction in losses.REDUCTIONS:
        expected = np_reduce(element_loss, full, reduction)
        np.testing.assert_allclose(got[reduction], expected, rtol=2e-5, atol=1e-6)


@representative_case_params
def test_all_zero_weights_give_zero_and_zero_gradient(case):
    rng = np.random.default_rng(3)
    predictions, targets = case.inputs(rng)
    zeros = np.zeros(case.element_shape(), np.float32)
    scalar_reductions = ("sum", "mean", "weighted_mean", "sequence_mean")

    @jax.jit
    def values_and_grads(predictions):
        return {
            reduction: jax.value_and_grad(
                lambda p, r=reduction: case.loss(
                    p, targets, zeros, reduction=r, **case.options
                )
            )(predictions)
            for reduction in scalar_reductions
        }

    for reduction, (value, grad) in values_and_grads(predictions).items():
        assert float(value) == 0.0, reduction
        np.testing.assert_array_equal(grad, np.zeros_like(predictions))


def test_weighted_mean_of_integer_weights_repeats_elements():
    # An independent view of "weighted_mean": weight k is the same as the
    # element appearing k times in a plain mean.
    rng = np.random.default_rng(4)
    predictions, targets = make_regression(rng)
    counts = rng.integers(0, 3, size=(B, T, F))
    got = jitted(losses.absolute_error, reduction="weighted_mean")(
        predictions.astype(np.float32), targets.astype(np.float32), counts
    )
    repeated = np.repeat(np.abs(predictions - targets).ravel(), counts.ravel())
    np.testing.assert_allclose(got, repeated.mean(), rtol=1e-5)


def test_negative_weights_are_used_as_given():
    predictions = jnp.array([[1.0, 2.0]])
    targets = jnp.zeros((1, 2))
    weights = jnp.array([[-1.0, 2.0]])
    got = all_reductions(losses.squared_error)(predictions, targets, weights)
    np.testing.assert_allclose(got["sum"], -1.0 + 8.0)
    np.testing.assert_allclose(got["weighted_mean"], 7.0 / 1.0)


# ---------------------------------------------------------------------------
# Weight alignment


def test_leading_alignment_wins_when_both_fit():
    rng = np.random.default_rng(5)
    predictions = rng.normal(size=(T, T)).astype(np.float32)
    targets = np.zeros((T, T), np.float32)
    weights = np.arange(1.0, T + 1.0, dtype=np.float32)
    loss = jitted(losses.squared_error, reduction="none")
    got = loss(predictions, targets, weights)
    np.testing.assert_allclose(got, predictions**2 * weights[:, None], rtol=1e-6)
    # Spelling out the singleton axis selects the other reading.
    got = loss(predictions, targets, weights[None])
    np.testing.assert_allclose(got, predictions**2 * weights[None, :], rtol=1e-6)


SQUARED_ERROR_NONE = jitted(losses.squared_error, reduction="none")


@settings(max_examples=25, deadline=None)
@given(
    rank=st.integers(0, 3),
    keep=st.lists(st.booleans(), min_size=3, max_size=3),
    trailing=st.booleans(),
)
def test_weight_alignment_property(rank, keep, trailing):
    """Any weight whose axes are 1 or the loss's, aligned either way, acts like
    numpy broadcasting of the explicitly aligned weight."""
    loss_shape = (B, T, F)
    axes = range(3 - rank, 3) if trailing else range(rank)
    shape = tuple(loss_shape[axis] if keep[axis] else 1 for axis in axes)
    rng = np.random.default_rng(rank)
    weights = rng.uniform(0.0, 2.0, size=shape)
    leading_shape = shape + (1,) * (3 - rank)
    fits_leading = all(
        s in (1, n) for s, n in zip(leading_shape, loss_shape, strict=True)
    )
    aligned = weights.reshape(
        leading_shape if fits_leading else (1,) * (3 - rank) + shape
    )
    predictions = rng.normal(size=loss_shape)
    got = SQUARED_ERROR_NONE(
        predictions.astype(np.float32),
        np.zeros(loss_shape, np.float32),
        weights.astype(np.float32),
    )
    np.testing.assert_allclose(got, predictions**2 * aligned, rtol=1e-5, atol=1e-7)


def test_bad_weights_shape_names_both_shapes():
    predictions = jnp.zeros((4, 7, 9))
    with pytest.raises(ValueError, match=r"\(3, 5\).*\(4, 7, 9\)"):
        losses.squared_error(predictions, predictions, jnp.ones((3, 5)))
    # Weights may not enlarge the loss.
    with pytest.raises(ValueError, match=r"\(4, 7, 9, 2\).*\(4, 7, 9\)"):
        losses.squared_error(predictions, predictions, jnp.ones((4, 7, 9, 2)))
    logits = jnp.zeros((4, 7, 9))
    labels = jnp.zeros((4, 7), jnp.int32)
    with pytest.raises(ValueError, match=r"\(4, 7, 9\).*\(4, 7\)"):
        losses.softmax_cross_entropy_with_integer_labels(
            logits, labels, jnp.ones((4, 7, 9))
        )


def test_bad_reduction_lists_the_valid_ones():
    x = jnp.zeros((2, 3))
    with pytest.raises(ValueError, match="'weighted_mean'.*'sequence_mean'.*'avg'"):
        losses.squared_error(x, x, reduction="avg")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch axis"):
        losses.squared_error(jnp.zeros(()), jnp.zeros(()), reduction="sequence_mean")


def test_bad_inputs_name_the_argument():
    logits = jnp.zeros((2, 3, 5))
    with pytest.raises(TypeError, match="labels must have an integer dtype"):
        losses.softmax_cross_entropy_with_integer_labels(logits, jnp.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"labels must have shape.*\(2, 3\).*\(2, 5\)"):
        losses.softmax_cross_entropy_with_integer_labels(
            logits, jnp.zeros((2, 5), jnp.int32)
        )
    with pytest.raises(TypeError, match="logits must have a floating dtype"):
        losses.softmax_cross_entropy_with_integer_labels(
            jnp.zeros((2, 3, 5), jnp.int32), jnp.zeros((2, 3), jnp.int32)
        )
    with pytest.raises(ValueError, match=r"targets must have the shape.*\(2, 3, 5\)"):
        losses.squared_error(logits, jnp.zeros((2, 3, 1)))
    with pytest.raises(ValueError, match=r"targets must have the shape"):
        losses.softmax_cross_entropy(logits, jnp.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="label_smoothing"):
        losses.softmax_cross_entropy_with_integer_labels(
            logits, jnp.zeros((2, 3), jnp.int32), label_smoothing=1.0
        )
    with pytest.raises(TypeError, match="predictions must have a floating dtype"):
        losses.huber_loss(jnp.zeros(3, jnp.int32), jnp.zeros(3, jnp.int32))


# ---------------------------------------------------------------------------
# Zero weight means absent: NaN/Inf there change nothing


def poison(array, absent, rng):
    """Writes NaN, +Inf, -Inf (or, for integer labels, out-of-range ids) at the
    absent elements of a copy of ``array``."""
    poisoned = array.copy()
    shape = poisoned[absent].shape
    if np.issubdtype(array.dtype, np.integer):
        poisoned[absent] = np.resize([-100, 10**6, -(10**6)], shape)
    else:
        poisoned[absent] = np.resize([np.nan, np.inf, -np.inf], shape)
    return poisoned


def refill(array, absent, rng):
    """Writes other ordinary values at the absent elements of a copy."""
    refilled = array.copy()
    shape = refilled[absent].shape
    if np.issubdtype(array.dtype, np.integer):
        refilled[absent] = rng.integers(0, V, size=shape)
    else:
        refilled[absent] = np.abs(rng.normal(size=shape)) / 3.0
    return refilled.astype(array.dtype)


@case_params
def test_nan_and_inf_at_zero_weight_change_nothing(case):
    rng = np.random.default_rng(6)
    predictions, targets = case.inputs(rng)
    weights = element_weights(rng, case.element_shape())
    absent = weights == 0
    dirty = (poison(predictions, absent, rng), poison(targets, absent, rng))
    clean = (refill(predictions, absent, rng), refill(targets, absent, rng))

    @jax.jit
    def values_and_grads(predictions, targets):
        def loss(predictions, reduction):
            value = case.loss(
                predictions, targets, weights, reduction=reduction, **case.options
            )
            return jnp.sum(value), value

        results = {}
        for reduction in ("none", "weighted_mean"):
            (_, value), grad = jax.value_and_grad(loss, has_aux=True)(
                predictions, reduction
            )
            results[reduction] = (value, grad)
        return results

    dirty_results = values_and_grads(*dirty)
    clean_results = values_and_grads(*clean)
    for reduction, (dirty_value, dirty_grad) in dirty_results.items():
        clean_value, clean_grad = clean_results[reduction]
        assert np.all(np.isfinite(dirty_value)), reduction
        np.testing.assert_array_equal(dirty_value, clean_value)
        np.testing.assert_array_equal(dirty_grad, clean_grad)
        assert np.all(dirty_grad[absent] == 0.0)
        assert np.any(dirty_grad[~absent] != 0.0)


def test_gradient_with_respect_to_targets_is_clean_at_zero_weight():
    rng = np.random.default_rng(7)
    predictions, targets = make_regression(rng)
    weights = element_weights(rng, (B, T, F))
    absent = weights == 0
    dirty = poison(targets.astype(np.float32), absent, rng)
    grad = jax.jit(
        jax.grad(lambda t: losses.log_cosh(predictions.astype(np.float32), t, weights))
    )(dirty)
    assert np.all(np.isfinite(grad))
    assert np.all(grad[absent] == 0.0)


def test_gradient_with_respect_to_the_weights():
    """Against the closed forms, for squared error on [B, T]: a zero weight
    leaves its element out, so its gradient is exactly 0 for every reduction
    (also with NaN there); elsewhere it is the derivative of the reduction."""
    rng = np.random.default_rng(8)
    predictions = rng.normal(size=(3, 5))
    targets = rng.normal(size=(3, 5))
    weights = rng.uniform(0.5, 2.0, size=(3, 5))
    weights[0, [1, 3]] = weights[1, 4] = 0.0
    weights[2] = 0.0  # a row with no weight: no sequence for sequence_mean
    absent = weights == 0
    dirty = np.where(absent, np.nan, predictions).astype(np.float32)
    loss = (predictions - targets) ** 2
    rows = weights.sum(1, keepdims=True)
    row_means = np.divide(
        (loss * weights).sum(1, keepdims=True),
        rows,
        where=rows > 0,
        out=np.zeros_like(rows),
    )
    counted = np.sum(rows > 0)
    want = {
        "sum": loss,
        "mean": loss / loss.size,
        "weighted_mean": (loss - (loss * weights).sum() / weights.sum())
        / weights.sum(),
        "sequence_mean": np.divide(
            loss - row_means, rows * counted, where=rows > 0, out=np.zeros_like(loss)
        ),
    }
    for reduction, expected in want.items():
        grad = jax.grad(
            lambda w, reduction=reduction: losses.squared_error(
                dirty, targets.astype(np.float32), w, reduction=reduction
            )
        )(weights.astype(np.float32))
        np.testing.assert_array_equal(grad[absent], 0.0)
        np.testing.assert_allclose(
            grad[~absent], expected[~absent], rtol=1e-4, atol=1e-6
        )


def test_log_cosh_keeps_its_precision_for_small_errors():
    """log cosh(e) ~ e^2/2 for small e: in float32 it keeps a relative error of
    a few ulps against float64 from 1e-8 to 60, and its gradient is tanh(e)."""
    errors = np.geomspace(1e-8, 60.0, 3000).astype(np.float32)
    errors = np.concatenate([errors, -errors[::7]])
    size = np.abs(errors.astype(np.float64))
    want = size + np.log1p(np.expm1(-2.0 * size) / 2.0)  # in float64
    want = np.where(size < 1e-4, size**2 / 2.0, want)  # series, exact to 2e-9
    got = losses.log_cosh(errors, np.zeros_like(errors), reduction="none")
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=2e-6)
    grad = jax.grad(lambda e: losses.log_cosh(e, jnp.zeros_like(e), reduction="sum"))(
        jnp.asarray(errors)
    )
    np.testing.assert_allclose(grad, np.tanh(errors.astype(np.float64)), rtol=3e-6)
    # Large errors: |e| - log 2, gradient sign(e), nothing overflows.
    large = jnp.array([1e10, -1e20, 3e38], jnp.float32)
    value = losses.log_cosh(large, jnp.zeros(3), reduction="none")
    np.testing.assert_allclose(
        value, np.abs(np.asarray(large)) - np.log(2.0), rtol=1e-6
    )
    grad = jax.grad(lambda e: losses.log_cosh(e, jnp.zeros(3), reduction="sum"))(large)
    np.testing.assert_array_equal(grad, [1.0, -1.0, 1.0])


def test_log_cosh_keeps_float64_precision(x64):
    """Under x64 the small errors keep float64's precision too: against
    log1p(2 sinh(e/2)^2) in extended precision (it cancels nothing), and
    the gradient against tanh(e)."""
    errors = np.geomspace(1e-12, 3.0, 2000)
    extended = errors.astype(np.longdouble)
    want = np.log1p(2.0 * np.sinh(extended / 2.0) ** 2)
    got = losses.log_cosh(errors, np.zeros_like(errors), reduction="none")
    np.testing.assert_allclose(np.asarray(got, np.longdouble), want, rtol=1e-14)
    grad = jax.grad(lambda e: losses.log_cosh(e, jnp.zeros_like(e), reduction="sum"))(
        errors
    )
    np.testing.assert_allclose(grad, np.tanh(extended), rtol=1e-14)


# ---------------------------------------------------------------------------
# Gradients (float64)


@case_params
def test_check_grads(case, x64):
    rng = np.random.default_rng(8)
    predictions, targets = case.inputs(rng, dtype=np.float64)
    weights = jnp.asarray(element_weights(rng, case.element_shape()), jnp.float64)
    predictions = jnp.asarray(predictions)
    targets = jnp.asarray(targets)

    def loss(*args):
        full = args if len(args) == 2 else (args[0], targets)
        return case.loss(*full, weights, reduction="weighted_mean", **case.options)

    assert loss(predictions).dtype == jnp.float64
    args = (predictions,) if case.integer_targets else (predictions, targets)
    check_grads(jax.jit(loss), args, order=1, modes=("fwd", "rev"))


def test_check_grads_sequence_mean(x64):
    rng = np.random.default_rng(9)
    logits, labels = make_integer_labels(rng)
    weights = jnp.asarray(weights_with_zero_row(rng, (B, T)), jnp.float64)

    def loss(logits):
        return losses.softmax_cross_entropy_with_integer_labels(
            logits, labels, weights, reduction="sequence_mean"
        )

    check_grads(jax.jit(loss), (jnp.asarray(logits),), order=1, modes=("fwd", "rev"))


# ---------------------------------------------------------------------------
# Dtypes


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_half_precision_computes_in_float32(dtype):
    rng = np.random.default_rng(10)
    logits, labels = make_integer_labels(rng)
    predictions, targets = make_regression(rng)
    token_weights = element_weights(rng, (B, T))
    feature_weights = element_weights(rng, (B, T, F))

    @jax.jit
    def three_losses(logits, predictions, targets):
        return (
            losses.softmax_cross_entropy_with_integer_labels(
                logits, labels, token_weights, label_smoothing=0.1
            ),
            losses.squared_error(predictions, targets, feature_weights),
            losses.sigmoid_binary_cross_entropy(
                predictions, targets > 0, reduction="none"
            ),
        )

    half_inputs = [jnp.asarray(x, dtype) for x in (logits, predictions, targets)]
    half = three_losses(*half_inputs)
    single = three_losses(*[x.astype(jnp.float32) for x in half_inputs])
    for half_value, single_value in zip(half, single, strict=True):
        chex.assert_type(half_value, jnp.float32)
        np.testing.assert_allclose(half_value, single_value, rtol=1e-6, atol=1e-7)


def test_any_integer_label_dtype():
    rng = np.random.default_rng(11)
    logits, labels = make_integer_labels(rng)
    loss = jitted(losses.softmax_cross_entropy_with_integer_labels, reduction="none")
    logits = logits.astype(np.float32)
    reference = loss(logits, labels.astype(np.int32))
    for dtype in (np.int8, np.uint8, np.int16):
        np.testing.assert_array_equal(loss(logits, labels.astype(dtype)), reference)


def test_wide_unsigned_labels_out_of_range_are_nan(x64):
    """uint64 labels (under x64) past the class count stay out of range:
    2**32 + 1 was cast to int32 and became class 1, 2**63 + 1 a negative
    int64. Only the in-range label gives a finite loss, -log p[label]."""
    probabilities = np.array([0.1, 0.6, 0.3])
    logits = jnp.log(jnp.asarray(probabilities))[None].repeat(4, axis=0)
    labels = np.array([1, 3, 2**32 + 1, 2**63 + 1], np.uint64)
    loss = losses.softmax_cross_entropy_with_integer_labels(
        logits, labels, reduction="none"
    )
    np.testing.assert_allclose(loss[0], -np.log(0.6), rtol=1e-12)
    assert np.isnan(np.asarray(loss[1:])).all(), loss


# ---------------------------------------------------------------------------
# End to end: sparse auto-encoder and seq2seq


def test_sparse_autoencoder_counts_only_nonzero_features():
    rng = np.random.default_rng(13)
    n, features, hidden = 6, 8, 3
    x = rng.uniform(0.1, 1.0, size=(n, features)) * (
        rng.random(size=(n, features)) < 0.3
    )
    x[0, 0] = 0.7  # at least one non-zero feature
    encoder = rng.normal(size=(features, hidden)) / 3
    decoder = rng.normal(size=(hidden, features)) / 3
    x32 = jnp.asarray(x, jnp.float32)
    present = x != 0

    def reconstruct(params):
        return (x32 @ params["encoder"]) @ params["decoder"]

    def loss_of_reconstruction(recon):
        return losses.squared_error(
            recon, x32, weights=seq_weights.nonzero(x32), reduction="sum"
        )

    @jax.jit
    def run(params):
        recon = reconstruct(params)
        value, grad_recon = jax.value_and_grad(loss_of_reconstruction)(recon)
        grads = jax.grad(lambda p: loss_of_reconstruction(reconstruct(p)))(params)
        return value, grad_recon, grads

    params = {
        "encoder": jnp.asarray(encoder, jnp.float32),
        "decoder": jnp.asarray(decoder, jnp.float32),
    }
    value, grad_recon, grads = run(params)

    recon_np = x @ encoder @ decoder
    np.testing.assert_allclose(value, ((recon_np - x) ** 2)[present].sum(), rtol=1e-5)
    assert np.all(grad_recon[~present] == 0.0)
    grad_recon_np = 2 * (recon_np - x) * present
    np.testing.assert_allclose(grad_recon, grad_recon_np, rtol=1e-4, atol=1e-6)
    # Chain rule by hand: only the non-zero features drive the parameters.
    np.testing.assert_allclose(
        grads["decoder"], (x @ encoder).T @ grad_recon_np, rtol=1e-4, atol=1e-6
    )
    np.testing.assert_allclose(
        grads["encoder"], x.T @ (grad_recon_np @ decoder.T), rtol=1e-4, atol=1e-6
    )


def test_seq2seq_loss_uses_target_lengths_only():
    rng = np.random.default_rng(14)
    batch, source_len, target_len, vocab, pad_id = 3, 7, 5, 6, 0
    target_lengths = np.array([5, 2, 3])
    targets = rng.integers(1, vocab, size=(batch, target_len))
    targets[np.arange(target_len)[None, :] >= target_lengths[:, None]] = pad_id
    logits = rng.normal(size=(batch, target_len, vocab)).astype(np.float32)
    reductions = ("weighted_mean", "sum", "sequence_mean")

    @jax.jit
    def seq2seq_loss(logits, batch_data):
        # The batch carries the source mask, as a training step would; the
        # loss weights come from the targets alone.
        weights = seq_weights.from_targets(batch_data["targets"], pad_id)
        return {
            reduction: losses.softmax_cross_entropy_with_integer_labels(
                logits, batch_data["targets"], weights, reduction=reduction
            )
            for reduction in reductions
        }

    def batch_with_sources(source_lengths):
        return {
            "source_mask": np.arange(source_len)[None, :]
            < np.asarray(source_lengths)[:, None],
            "targets": targets,
        }

    # Source lengths deliberately differ from the target lengths and between
    # the two batches.
    first = seq2seq_loss(logits, batch_with_sources([4, 7, 1]))
    second = seq2seq_loss(logits, batch_with_sources([1, 3, 6]))

    token_losses, row_means = [], []
    for row in range(batch):
        row_losses = [
            -np_log_softmax(logits[row, step].astype(np.float64))[targets[row, step]]
            for step in range(target_lengths[row])
        ]
        token_losses.extend(row_losses)
        row_means.append(np.mean(row_losses))
    references = {
        "weighted_mean": np.mean(token_losses),
        "sum": np.sum(token_losses),
        "sequence_mean": np.mean(row_means),
    }
    for reduction, expected in references.items():
        np.testing.assert_allclose(first[reduction], expected, rtol=1e-5)
        np.testing.assert_array_equal(first[reduction], second[reduction])

    # The source mask cannot be passed by mistake: its time axis is not the
    # target's.
    with pytest.raises(ValueError, match=r"\(3, 7\).*\(3, 5\)"):
        losses.softmax_cross_entropy_with_integer_labels(
            logits, targets, batch_with_sources([4, 7, 1])["source_mask"]
        )


# ---------------------------------------------------------------------------
# Value checks: eager on concrete values, checkify when traced, and only where
# the weight is not zero


def test_out_of_range_labels_raise_only_where_they_count():
    logits = np.zeros((2, 3), np.float32)
    labels = np.array([[0.0, 1.0, 1.5], [0.5, -0.2, 1.0]], np.float32)
    for loss in (losses.sigmoid_binary_cross_entropy, losses.sigmoid_focal_loss):
        with pytest.raises(ValueError, match=r"labels must lie in \[0, 1\].*\(0, 2\)"):
            loss(logits, labels)
        # At zero weight they are absent: no error, and NaN there is fine too.
        weights = np.array([[1, 1, 0], [1, 0, 1]], np.float32)
        poisoned = labels.copy()
        poisoned[0, 2] = np.nan
        value = loss(logits, poisoned, weights)
        np.testing.assert_allclose(value, loss(logits, labels * weights, weights))
        error, _ = checkify.checkify(jax.jit(loss))(logits, poisoned, weights)
        assert error.get() is None
        error, _ = checkify.checkify(jax.jit(loss))(logits, labels)
        assert "labels must lie in [0, 1]" in (error.get() or "")


def test_targets_that_are_not_distributions_raise():
    logits = np.zeros((2, 3), np.float32)
    unnormalised = np.array([[1.0, 1.0, 0.0], [0.2, 0.3, 0.5]], np.float32)
    negative = np.array([[1.2, -0.2, 0.0], [0.2, 0.3, 0.5]], np.float32)
    for targets in (unnormalised, negative):
        with pytest.raises(
            ValueError, match=r"targets must hold probability.*\[\(0,\)"
        ):
            losses.softmax_cross_entropy(logits, targets)
        with pytest.raises(ValueError, match="targets must hold probability"):
            losses.kl_divergence(jax.nn.log_softmax(logits), targets)
        # A zero-weight row may hold anything.
        losses.softmax_cross_entropy(logits, targets, np.array([0.0, 1.0]))
    error, _ = checkify.checkify(jax.jit(losses.softmax_cross_entropy))(
        logits, unnormalised
    )
    assert "targets must hold probability distributions" in (error.get() or "")


def test_kl_divergence_refuses_logits_for_log_probabilities():
    logits = np.array([[1.0, 2.0, 0.5]], np.float32)
    targets = np.array([[0.2, 0.8, 0.0]], np.float32)
    with pytest.raises(ValueError, match="log_predictions must hold log-probabilities"):
        losses.kl_divergence(logits, targets)
    # bfloat16 log-probabilities are within the tolerance of their dtype.
    half = jax.nn.log_softmax(jnp.asarray(logits, jnp.bfloat16))
    losses.kl_divergence(half, targets)
    error, _ = checkify.checkify(jax.jit(losses.kl_divergence))(logits, targets)
    assert "log_predictions must hold log-probabilities" in (error.get() or "")


@pytest.mark.parametrize(
    "loss,option,bad",
    [
        (losses.softmax_cross_entropy_with_integer_labels, "label_smoothing", 1.0),
        (losses.softmax_cross_entropy_with_integer_labels, "label_smoothing", -0.1),
        (losses.softmax_cross_entropy_with_integer_labels, "z_loss", -1e-4),
        (losses.sigmoid_focal_loss, "gamma", -1.0),
        (losses.sigmoid_focal_loss, "alpha", 1.5),
        (losses.huber_loss, "delta", 0.0),
        (losses.cosine_distance, "epsilon", -1.0),
    ],
)
def test_hyperparameters_out_of_range_raise_eagerly_and_traced(loss, option, bad):
    integer = loss is losses.softmax_cross_entropy_with_integer_labels
    predictions = np.zeros((2, 3), np.float32)
    targets = np.zeros((2,), np.int32) if integer else np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match=f"{option} must lie in"):
        loss(predictions, targets, **{option: bad})
    traced = jax.jit(lambda value: loss(predictions, targets, **{option: value}))
    error, _ = checkify.checkify(traced)(jnp.float32(bad))
    assert f"{option} must lie in" in (error.get() or "")
    with pytest.raises(TypeError, match=f"{option} must be a real number"):
        loss(predictions, targets, **{option: "0.1"})
