"""Bad inputs to seqmask.weights that the losses' table does not cover: the
``dtype`` of the weights, checked as a dtype before anything is built; an
empty class table; a ``pad_id`` that overflows float targets (it became
``inf`` and matched an infinite target)."""

from __future__ import annotations

import numpy as np
from bad_inputs_common import Case

from seqmask import weights

LENGTHS = np.array([3, 1], np.int32)
TARGETS = np.array([[4, 2, 0], [3, 0, 0]], np.int32)

CASES: list[Case] = [
    Case(
        f"weights.{name}-dtype-unknown",
        call,
        TypeError,
        [rf"^weights\.{name}", "dtype must be a dtype", "f32"],
    )
    for name, call in (
        ("from_lengths", lambda: weights.from_lengths(LENGTHS, 3, dtype="f32")),
        ("from_mask", lambda: weights.from_mask(TARGETS != 0, dtype="f32")),
        ("from_targets", lambda: weights.from_targets(TARGETS, 0, dtype="f32")),
        ("nonzero", lambda: weights.nonzero(TARGETS, dtype="f32")),
        (
            "class_weights",
            lambda: weights.class_weights(TARGETS, np.ones(5), dtype="f32"),
        ),
        (
            "combine",
            lambda: weights.combine(per_sequence=np.ones(2), dtype="f32"),
        ),
    )
]

CASES += [
    Case(
        "weights.class_weights-empty-table",
        lambda: weights.class_weights(TARGETS, np.zeros(0)),
        ValueError,
        [r"^weights\.class_weights", "table must have shape", r"\(0,\)"],
    ),
    Case(
        "weights.from_targets-pad-id-overflows-float16",
        lambda: weights.from_targets(np.array([np.inf], np.float16), pad_id=70000),
        ValueError,
        [r"^weights\.from_targets", "pad_id does not fit dtype float16", "70000"],
    ),
]
