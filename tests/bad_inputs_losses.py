"""Bad inputs to every loss and every weights builder.

Regressions of answers that used to be silently wrong: labels outside
``[0, 1]`` for the sigmoid losses, unnormalised or negative target
distributions, logits given to ``kl_divergence`` as log-probabilities,
hyperparameters out of range when traced, lengths outside ``[0, T]`` in
``weights.from_lengths`` (clipped before), a ``pad_id`` that wraps around in
the targets' dtype, negative class weights.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from bad_inputs_common import Case

from seqmask import losses, weights

F32 = np.float32
LOGITS = np.zeros((2, 3, 4), F32)  # [B, T, V]
LABELS = np.zeros((2, 3), np.int32)
PROBS = np.full((2, 3, 4), 0.25, F32)
X = np.zeros((2, 3), F32)  # a feature-wise loss's predictions and targets

# name, function, predictions, targets: one entry a loss
LOSSES = [
    ("ce_int", losses.softmax_cross_entropy_with_integer_labels, LOGITS, LABELS),
    ("ce", losses.softmax_cross_entropy, LOGITS, PROBS),
    ("bce", losses.sigmoid_binary_cross_entropy, X, X),
    ("focal", losses.sigmoid_focal_loss, X, X),
    ("kl", losses.kl_divergence, np.log(PROBS), PROBS),
    ("squared", losses.squared_error, X, X),
    ("absolute", losses.absolute_error, X, X),
    ("huber", losses.huber_loss, X, X),
    ("log_cosh", losses.log_cosh, X, X),
    ("cosine", losses.cosine_distance, LOGITS, LOGITS),
]


def _call(function, *args, **kwargs):
    return lambda: function(*args, **kwargs)


def _per_loss_cases() -> list[Case]:
    cases = []
    for name, loss, predictions, targets in LOSSES:
        where = loss.__name__
        cases += [
            Case(
                f"{name}-integer-predictions",
                _call(loss, predictions.astype(np.int32), targets),
                TypeError,
                [where, "must have a floating dtype", "int32"],
            ),
            Case(
                f"{name}-unknown-reduction",
                _call(loss, predictions, targets, reduction="avg"),
                ValueError,
                [where, "reduction must be one of", "'sequence_mean'", "'avg'"],
            ),
            Case(
                f"{name}-weights-enlarge-the-loss",
                _call(loss, predictions, targets, np.ones((2, 3, 4, 5), F32)),
                ValueError,
                [where, "weights of shape", "do not broadcast"],
            ),
            Case(
                f"{name}-string-weights",
                _call(loss, predictions, targets, "ones"),
                TypeError,
                [where, "weights must be an array", "str"],
            ),
            Case(
                f"{name}-segment-ids-shape",
                _call(loss, predictions, targets, segment_ids=np.zeros((2, 5), int)),
                ValueError,
                [where, "segment_ids must have the batch and time axes"],
            ),
        ]
        if loss is not losses.softmax_cross_entropy_with_integer_labels:
            cases.append(
                Case(
                    f"{name}-targets-shape",
                    _call(loss, predictions, targets[:1]),
                    ValueError,
                    [where, "(targets|labels) must have the shape of", r"\(1, "],
                )
            )
    return cases


def _traced(loss, position: int, args: tuple, **options):
    """``(function, (value,))``: ``loss`` with argument ``position`` traced."""

    def function(value):
        full = list(args)
        full[position] = value
        return loss(*full, **options)

    return function, (args[position],)


def _hyperparameter_cases() -> list[Case]:
    ce = losses.softmax_cross_entropy_with_integer_labels
    table = [
        ("ce_int-label-smoothing-one", ce, "label_smoothing", 1.0, r"\[0, 1\)"),
        ("ce_int-label-smoothing-negative", ce, "label_smoothing", -0.1, r"\[0, 1\)"),
        ("ce_int-negative-z-loss", ce, "z_loss", -1.0, r"\[0, inf\)"),
        ("focal-negative-gamma", losses.sigmoid_focal_loss, "gamma", -2.0, r"\[0"),
        ("focal-alpha-above-one", losses.sigmoid_focal_loss, "alpha", 1.5, r"\[0, 1\]"),
        ("huber-zero-delta", losses.huber_loss, "delta", 0.0, r"\(0, inf\)"),
        ("cosine-negative-epsilon", losses.cosine_distance, "epsilon", -1.0, r"\[0"),
    ]
    arguments = {loss: (p, t) for _, loss, p, t in LOSSES}
    cases = []
    for case_id, loss, option, bad, interval in table:
        predictions, targets = arguments[loss]

        def traced(value, loss=loss, option=option, p=predictions, t=targets):
            return loss(p, t, **{option: value})

        cases.append(
            Case(
                case_id,
                _call(loss, predictions, targets, **{option: bad}),
                ValueError,
                [loss.__name__, f"{option} must lie in", interval],
                traced=(traced, (jnp.float32(bad),)),
            )
        )
    cases += [
        Case(
            "huber-string-delta",
            _call(losses.huber_loss, X, X, delta="1"),
            TypeError,
            ["huber_loss", "delta must be a real number", "str"],
        ),
        Case(
            "focal-boolean-gamma",
            _call(losses.sigmoid_focal_loss, X, X, gamma=True),
            TypeError,
            ["sigmoid_focal_loss", "gamma must be a real number", "bool"],
        ),
    ]
    return cases


BAD_LABELS = np.array([[0.0, 1.0, 1.5], [0.5, -0.2, 1.0]], F32)
UNNORMALISED = np.array([[[1.0, 1.0, 0.0, 0.0]] * 3] * 2, F32)
NEGATIVE = np.array([[[1.2, -0.2, 0.0, 0.0]] * 3] * 2, F32)
RAW_LOGITS = np.array([[[1.0, 2.0, 0.5, 0.0]] * 3] * 2, F32)


def _value_cases() -> list[Case]:
    bce, focal = losses.sigmoid_binary_cross_entropy, losses.sigmoid_focal_loss
    ce, kl = losses.softmax_cross_entropy, losses.kl_divergence
    log_uniform = np.log(PROBS)
    cases = []
    for name, loss in (("bce", bce), ("focal", focal)):
        cases.append(
            Case(
                f"{name}-labels-outside-unit-interval",
                _call(loss, X, BAD_LABELS),
                ValueError,
                [loss.__name__, r"labels must lie in \[0, 1\]", "1.5"],
                traced=_traced(loss, 1, (X, BAD_LABELS)),
            )
        )
    for name, targets in (("unnormalised", UNNORMALISED), ("negative", NEGATIVE)):
        cases += [
            Case(
                f"ce-{name}-targets",
                _call(ce, LOGITS, targets),
                ValueError,
                ["softmax_cross_entropy", "targets must hold probability"],
                traced=_traced(ce, 1, (LOGITS, targets)),
            ),
            Case(
                f"kl-{name}-targets",
                _call(kl, log_uniform, targets),
                ValueError,
                ["kl_divergence", "targets must hold probability"],
                traced=_traced(kl, 1, (log_uniform, targets)),
            ),
        ]
    cases += [
        Case(
            "kl-logits-as-log-probabilities",
            _call(kl, RAW_LOGITS, PROBS),
            ValueError,
            ["kl_divergence", "log_predictions must hold log-probabilities"],
            traced=_traced(kl, 0, (RAW_LOGITS, PROBS)),
        ),
        Case(
            "kl-probabilities-as-log-probabilities",
            _call(kl, PROBS, PROBS),
            ValueError,
            ["kl_divergence", "log_predictions", "log_softmax"],
            traced=_traced(kl, 0, (PROBS, PROBS)),
        ),
        Case(
            "ce_int-float-labels",
            _call(losses.softmax_cross_entropy_with_integer_labels, LOGITS, X),
            TypeError,
            ["labels must have an integer dtype", "softmax_cross_entropy"],
        ),
        Case(
            "ce_int-labels-shape",
            _call(
                losses.softmax_cross_entropy_with_integer_labels, LOGITS, LABELS[:, :2]
            ),
            ValueError,
            [r"labels must have shape logits.shape\[:-1\]", r"\(2, 3\)"],
        ),
        Case(
            "ce-empty-class-axis",
            _call(ce, np.zeros((2, 0), F32), np.zeros((2, 0), F32)),
            ValueError,
            ["softmax_cross_entropy", "non-empty last axis"],
        ),
        Case(
            "squared-sequence-mean-of-a-scalar",
            _call(losses.squared_error, F32(1.0), F32(0.0), reduction="sequence_mean"),
            ValueError,
            ["squared_error", "sequence_mean", "batch axis"],
        ),
        Case(
            "squared-float-segment-ids",
            _call(losses.squared_error, X, X, segment_ids=X),
            TypeError,
            ["squared_error", "segment_ids must have an integer dtype"],
        ),
        Case(
            "bce-string-labels",
            _call(bce, X, np.array([["a"] * 3] * 2)),
            TypeError,
            ["sigmoid_binary_cross_entropy", "labels"],
        ),
    ]
    return cases


def _weights_cases() -> list[Case]:
    lengths = np.array([3, 5, -1])
    return [
        Case(
            "from_lengths-above-time-axis",
            lambda: weights.from_lengths(lengths, 4),
            ValueError,
            ["weights.from_lengths", r"lengths must lie in \[0, 4\]", "-1"],
            traced=(lambda n: weights.from_lengths(n, 4), (lengths,)),
        ),
        Case(
            "from_lengths-negative",
            lambda: weights.from_lengths(np.array([-2]), 4),
            ValueError,
            ["from_lengths", r"\[0, 4\]"],
            traced=(lambda n: weights.from_lengths(n, 4), (np.array([-2]),)),
        ),
        Case(
            "from_lengths-float-lengths",
            lambda: weights.from_lengths(np.array([1.0]), 4),
            TypeError,
            ["from_lengths", "lengths must have an integer dtype"],
        ),
        Case(
            "from_lengths-float-max-length",
            lambda: weights.from_lengths(np.array([1]), 4.0),
            TypeError,
            ["from_lengths", "max_length must be an int", "Pass 4"],
        ),
        Case(
            "from_lengths-negative-max-length",
            lambda: weights.from_lengths(np.array([1]), -1),
            ValueError,
            ["from_lengths", "max_length must be a non-negative int"],
        ),
        Case(
            "from_lengths-traced-max-length",
            lambda: jax.jit(weights.from_lengths)(np.array([1]), 4),
            TypeError,
            ["from_lengths", "max_length must be an int"],
        ),
        Case(
            "from_targets-pad-id-wraps-in-uint8",
            lambda: weights.from_targets(np.array([[156, 3]], np.uint8), -100),
            ValueError,
            ["from_targets", "pad_id does not fit dtype uint8", "-100"],
            traced=(
                lambda pad_id: weights.from_targets(
                    np.array([[156, 3]], np.uint8), pad_id
                ),
                (np.int32(-100),),
            ),
        ),
        Case(
            "from_targets-fractional-pad-id",
            lambda: weights.from_targets(np.array([[1, 0]]), 0.5),
            ValueError,
            ["from_targets", "pad_id does not fit"],
            traced=(
                lambda pad_id: weights.from_targets(np.array([[1, 0]]), pad_id),
                (np.float32(0.5),),
            ),
        ),
        Case(
            "from_targets-vector-pad-id",
            lambda: weights.from_targets(np.array([[1, 0]]), np.array([0, 1])),
            ValueError,
            ["from_targets", "pad_id must be a scalar"],
        ),
        Case(
            "from_mask-string",
            lambda: weights.from_mask("mask"),
            TypeError,
            ["weights.from_mask", "mask must be an array"],
        ),
        Case(
            "nonzero-none",
            lambda: weights.nonzero(None),
            TypeError,
            ["weights.nonzero", "must be an array", "None"],
        ),
        Case(
            "class_weights-negative-table",
            lambda: weights.class_weights(LABELS, np.array([1.0, -0.5], F32)),
            ValueError,
            ["class_weights", r"table must lie in \[0, inf\)", "-0.5"],
            traced=(
                lambda t: weights.class_weights(LABELS, t),
                (np.array([1.0, -0.5], F32),),
            ),
        ),
        Case(
            "class_weights-nan-table",
            lambda: weights.class_weights(LABELS, np.array([1.0, np.nan], F32)),
            ValueError,
            ["class_weights", "table must lie in"],
            traced=(
                lambda t: weights.class_weights(LABELS, t),
                (np.array([1.0, np.nan], F32),),
            ),
        ),
        Case(
            "class_weights-float-labels",
            lambda: weights.class_weights(X, np.ones(2, F32)),
            TypeError,
            ["class_weights", "labels must have an integer dtype"],
        ),
        Case(
            "class_weights-matrix-table",
            lambda: weights.class_weights(LABELS, np.ones((2, 2), F32)),
            ValueError,
            ["class_weights", r"table must have shape \[num_classes\]"],
        ),
        Case(
            "combine-nothing",
            lambda: weights.combine(),
            ValueError,
            ["weights.combine", "at least one of per_sequence"],
        ),
        Case(
            "combine-per-step-rank",
            lambda: weights.combine(per_step=np.ones(3)),
            ValueError,
            ["combine", r"per_step must have shape \[B, T\]"],
        ),
        Case(
            "combine-disagreeing-batch",
            lambda: weights.combine(per_sequence=np.ones(3), per_step=np.ones((2, 4))),
            ValueError,
            ["combine", r"per_sequence \(3,\)", r"per_step \(2, 4\)"],
        ),
        Case(
            "normalize-integer-weights",
            lambda: weights.normalize_per_sequence(np.ones((2, 3), np.int32)),
            TypeError,
            ["normalize_per_sequence", "floating dtype"],
        ),
        Case(
            "normalize-scalar",
            lambda: weights.normalize_per_sequence(F32(1.0)),
            ValueError,
            ["normalize_per_sequence", "batch axis"],
        ),
        Case(
            "normalize-segment-ids-shape",
            lambda: weights.normalize_per_sequence(
                np.ones((2, 3), F32), segment_ids=np.zeros((2, 2), np.int32)
            ),
            ValueError,
            ["normalize_per_sequence", r"segment_ids must have shape"],
        ),
    ]


CASES: list[Case] = (
    _per_loss_cases() + _hyperparameter_cases() + _value_cases() + _weights_cases()
)
