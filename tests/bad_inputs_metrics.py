"""Bad inputs to seqmask.metrics: token dtypes, shapes, lengths, ragged forms."""

from __future__ import annotations

import jax.numpy as jnp
from bad_inputs_common import Case

from seqmask import metrics

H = jnp.array([[1, 2, 3], [4, 5, 0]], jnp.int32)
R = jnp.array([[1, 2], [4, 0]], jnp.int32)


def _distance(**options):
    return lambda: metrics.edit_distance(H, R, **options)


CASES = [
    Case(
        "edit-distance-no-reference-slot",
        lambda: metrics.edit_distance(
            H, jnp.zeros((2, 0, 3), jnp.int32), multiple_references=True
        ),
        ValueError,
        ["edit_distance", "references holds no reference", "R = 0"],
    ),
    Case(
        "token-error-rate-no-reference-slot",
        lambda: metrics.token_error_rate(
            H, jnp.zeros((2, 0, 3), jnp.int32), multiple_references=True
        ),
        ValueError,
        ["token_error_rate", "references holds no reference"],
    ),
    Case(
        "exact-match-uint32-with-int32",
        lambda: metrics.exact_match(H.astype(jnp.uint32), R),
        TypeError,
        ["exact_match", r"hypotheses \(uint32\)", r"references \(int32\)", "one dtype"],
    ),
    Case(
        "token-accuracy-int32-with-uint32",
        lambda: metrics.token_accuracy(H, H.astype(jnp.uint32)),
        TypeError,
        ["token_accuracy", r"predictions \(int32\)", r"targets \(uint32\)"],
    ),
    Case(
        "edit-distance-float-tokens",
        lambda: metrics.edit_distance(H.astype(jnp.float32), R),
        TypeError,
        ["edit_distance", "hypotheses", "integer", "arg-max"],
    ),
    Case(
        "edit-distance-scalar-tokens",
        lambda: metrics.edit_distance(jnp.int32(1), R),
        ValueError,
        ["edit_distance", "hypotheses", "at least 1 axes"],
    ),
    Case(
        "edit-distance-length-too-long",
        _distance(hypothesis_lengths=jnp.array([3, 4])),
        ValueError,
        ["edit_distance", "hypothesis_lengths", r"\[0, 3\]"],
        traced=(
            lambda lengths: metrics.edit_distance(H, R, hypothesis_lengths=lengths),
            (jnp.array([3, 4], jnp.int32),),
        ),
    ),
    Case(
        "edit-distance-negative-reference-length",
        _distance(reference_lengths=jnp.array([-1, 1])),
        ValueError,
        ["edit_distance", "reference_lengths", r"\[0, 2\]"],
        traced=(
            lambda lengths: metrics.edit_distance(H, R, reference_lengths=lengths),
            (jnp.array([-1, 1], jnp.int32),),
        ),
    ),
    Case(
        "edit-distance-lengths-wrong-shape",
        _distance(reference_lengths=jnp.array([1, 1, 1])),
        ValueError,
        ["edit_distance", "reference_lengths", r"\(2,\)"],
    ),
    Case(
        "edit-distance-lengths-and-mask",
        _distance(
            hypothesis_lengths=jnp.array([1, 1]), hypothesis_mask=jnp.ones((2, 3), bool)
        ),
        ValueError,
        ["edit_distance", "hypothesis_lengths", "hypothesis_mask", "not both"],
    ),
    Case(
        "edit-distance-integer-mask",
        _distance(reference_mask=jnp.ones((2, 2), jnp.int32)),
        TypeError,
        ["edit_distance", "reference_mask", "boolean"],
    ),
    Case(
        "edit-distance-batch-mismatch",
        lambda: metrics.edit_distance(H, R[:1]),
        ValueError,
        ["edit_distance", "references", "batch shape"],
    ),
    Case(
        "edit-distance-several-references-without-flag",
        lambda: metrics.edit_distance(H, jnp.stack([R, R], axis=1)),
        ValueError,
        ["edit_distance", "references", "multiple_references=True"],
    ),
    Case(
        "token-error-rate-multiple-wrong-rank",
        lambda: metrics.token_error_rate(H, R, multiple_references=True),
        ValueError,
        ["token_error_rate", "multiple_references", r"\[\*batch, R, T\]"],
    ),
    Case(
        "token-error-rate-ragged-with-lengths",
        lambda: metrics.token_error_rate(
            [[1, 2]], [[1]], hypothesis_lengths=jnp.array([2])
        ),
        ValueError,
        ["token_error_rate", "hypothesis_lengths", "ragged"],
    ),
    Case(
        "token-error-rate-ragged-count-mismatch",
        lambda: metrics.token_error_rate([[1, 2], [3]], [[1]]),
        ValueError,
        ["token_error_rate", "2 hypotheses", "1 references"],
    ),
    Case(
        "token-error-rate-ragged-not-a-sequence",
        lambda: metrics.token_error_rate([[1, 2], 3], [[1], [3]]),
        TypeError,
        ["token_error_rate", r"hypotheses\[1\]", "sequence"],
    ),
    Case(
        "exact-match-no-alternatives",
        lambda: metrics.exact_match([[1]], [[]], multiple_references=True),
        ValueError,
        ["exact_match", r"references\[0\]", "no reference"],
    ),
    Case(
        "exact-match-flag-not-bool",
        lambda: metrics.exact_match(H, R, multiple_references="yes"),
        TypeError,
        ["exact_match", "multiple_references", "True or False"],
    ),
    Case(
        "token-accuracy-shape-mismatch",
        lambda: metrics.token_accuracy(H, R),
        ValueError,
        ["token_accuracy", "targets", "shape of predictions"],
    ),
    Case(
        "token-accuracy-logits",
        lambda: metrics.token_accuracy(jnp.zeros((2, 3, 5)), H),
        TypeError,
        ["token_accuracy", "predictions", "integer", "arg-max"],
    ),
    Case(
        "token-accuracy-lengths-too-long",
        lambda: metrics.token_accuracy(H, H, lengths=jnp.array([4, 1])),
        ValueError,
        ["token_accuracy", "lengths", r"\[0, 3\]"],
        traced=(
            lambda lengths: metrics.token_accuracy(H, H, lengths=lengths),
            (jnp.array([4, 1], jnp.int32),),
        ),
    ),
    Case(
        "word-error-rate-not-text",
        lambda: metrics.word_error_rate([1, 2], ["a", "b"]),
        TypeError,
        ["word_error_rate", r"hypotheses\[0\]", "string"],
    ),
    Case(
        "word-error-rate-count-mismatch",
        lambda: metrics.word_error_rate(["a b"], ["a", "b"]),
        ValueError,
        ["word_error_rate", "1 hypotheses", "2 references"],
    ),
    Case(
        "character-error-rate-word-list",
        lambda: metrics.character_error_rate([["a", "b"]], ["ab"]),
        TypeError,
        ["character_error_rate", r"hypotheses\[0\]", "string"],
    ),
    Case(
        "character-error-rate-alternatives-not-a-list",
        lambda: metrics.character_error_rate(["ab"], ["ab"], multiple_references=True),
        TypeError,
        ["character_error_rate", r"references\[0\]", "list or tuple"],
    ),
]

# One string is one example and a list a batch: mixing the two forms would
# read a list as a batch on one side and as words on the other (silently 3.0
# for identical texts before this check).
CASES += [
    Case(
        f"{name}-string-vs-list",
        lambda fn=fn: fn("a b c", ["a b c"]),
        TypeError,
        [f"^{name}", "hypotheses is one string", "references must be one string"],
    )
    for name, fn in (
        ("word_error_rate", metrics.word_error_rate),
        ("character_error_rate", metrics.character_error_rate),
    )
]
CASES += [
    Case(
        "word_error_rate-string-vs-string-list-multiple",
        lambda: metrics.word_error_rate("a b", "a b", multiple_references=True),
        TypeError,
        ["^word_error_rate", "list of alternative strings"],
    ),
    Case(
        "edit_distance-one-string",
        lambda: metrics.edit_distance("kitten", "sitting"),
        TypeError,
        [
            "^edit_distance",
            "hypotheses must be a padded integer array",
            r"\['kitten'\]",
        ],
    ),
    Case(
        "token_error_rate-one-string",
        lambda: metrics.token_error_rate("abc", ["abc"]),
        TypeError,
        ["^token_error_rate", "hypotheses", "list"],
    ),
]

# Several references a hypothesis without multiple_references: a list of
# sentences read as a list of words (a silent 2.0 for identical texts), or
# sequences read as tokens (a bare "unhashable" error).
CASES += [
    Case(
        "word_error_rate-alternatives-without-flag",
        lambda: metrics.word_error_rate(["a b"], [["a b", "a c"]]),
        ValueError,
        ["^word_error_rate", "'a b' is not one word", "multiple_references=True"],
    ),
    Case(
        "word_error_rate-sentence-as-word-list",
        lambda: metrics.word_error_rate([["a b"]], ["a b"]),
        ValueError,
        ["^word_error_rate", r"hypotheses\[0\]", "not one word", "one string"],
    ),
    Case(
        "character_error_rate-alternatives-without-flag",
        lambda: metrics.character_error_rate(["ab"], [["ab", "ac"]]),
        TypeError,
        ["^character_error_rate", "must be a string", "multiple_references=True"],
    ),
    Case(
        "edit_distance-alternatives-without-flag",
        lambda: metrics.edit_distance([[1, 2]], [[[1, 2], [1]]]),
        TypeError,
        [
            "^edit_distance",
            r"references\[0\]\[0\] is list",
            "multiple_references=True",
        ],
    ),
]
