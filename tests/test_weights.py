"""Tests of seqmask.weights against NumPy references and properties."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.experimental import checkify

from seqmask import losses
from seqmask import weights as seq_weights
from seqmask.data import pack

B, T, F = 3, 4, 5


def test_from_lengths_matches_a_loop():
    lengths = np.array([[0, 3, 4], [1, 2, 4]])  # any batch shape
    max_length = 4
    expected = np.zeros(lengths.shape + (max_length,))
    for index in np.ndindex(lengths.shape):
        for step in range(max_length):
            expected[index + (step,)] = float(step < lengths[index])
    got = seq_weights.from_lengths(lengths, max_length)
    assert got.dtype == jnp.float32
    np.testing.assert_array_equal(got, expected)
    got = seq_weights.from_lengths(
        jnp.asarray(lengths[0], jnp.int8), 4, dtype=jnp.bfloat16
    )
    assert got.dtype == jnp.bfloat16
    np.testing.assert_array_equal(got.astype(np.float32), expected[0])


def test_from_lengths_rejects_bad_arguments():
    with pytest.raises(TypeError, match="lengths must have an integer dtype"):
        seq_weights.from_lengths(jnp.array([1.0, 2.0]), 3)
    with pytest.raises(TypeError, match="max_length must be an int"):
        seq_weights.from_lengths(jnp.array([1, 2]), 3.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_length must be a non-negative int"):
        seq_weights.from_lengths(jnp.array([1, 2]), -1)


def test_from_lengths_refuses_lengths_outside_the_time_axis():
    # Formerly clipped silently: 6 > 4 gave a row of ones, -2 a row of zeros.
    lengths = np.array([[0, 3, 6], [1, -2, 4]])
    with pytest.raises(ValueError, match=r"\[0, 4\].*rows \[\(0, 2\), \(1, 1\)\]"):
        seq_weights.from_lengths(lengths, 4)
    traced = jax.jit(lambda n: seq_weights.from_lengths(n, 4))
    np.testing.assert_array_equal(traced(np.array([1, 4])), [[1, 0, 0, 0], [1] * 4])
    error, _ = checkify.checkify(traced)(lengths)
    assert "lengths must lie in [0, 4]" in (error.get() or "")


def test_from_lengths_of_narrow_dtypes_does_not_wrap():
    # uint8 step indices would wrap past 255: one home for the mask avoids it.
    lengths = np.array([300, 7], np.uint16).astype(np.int32)
    for dtype in (np.uint8, np.int8, np.int16):
        small = np.minimum(lengths, np.iinfo(dtype).max).astype(dtype)
        got = np.asarray(seq_weights.from_lengths(small, 300))
        expected = np.arange(300)[None, :] < small.astype(np.int64)[:, None]
        np.testing.assert_array_equal(got, expected)


def test_from_mask_and_nonzero_match_numpy():
    rng = np.random.default_rng(0)
    mask = rng.random((B, T)) < 0.5
    np.testing.assert_array_equal(seq_weights.from_mask(mask), mask.astype(np.float64))
    counts = rng.integers(0, 3, size=(B, T))
    np.testing.assert_array_equal(seq_weights.from_mask(counts), counts != 0)
    sparse = rng.uniform(size=(B, T, F)) * (rng.random((B, T, F)) < 0.3)
    sparse[0, 0, 0] = np.nan  # NaN is not zero: it counts, and the loss sees it
    got = seq_weights.nonzero(sparse.astype(np.float32))
    assert got.dtype == jnp.float32
    np.testing.assert_array_equal(got, (sparse != 0).astype(np.float64))


def test_from_targets_handles_any_padding_position():
    pad_id = -100
    targets = np.array(
        [
            [4, 2, 7, pad_id, pad_id],  # right padding
            [pad_id, pad_id, 1, 5, 6],  # left padding
            [3, pad_id, 8, pad_id, 0],  # holes; 0 is a real class here
        ]
    )
    expected = np.array([[float(t != pad_id) for t in row] for row in targets])
    np.testing.assert_array_equal(seq_weights.from_targets(targets, pad_id), expected)
    np.testing.assert_array_equal(
        seq_weights.from_targets(jnp.asarray(targets, jnp.int16), pad_id), expected
    )
    with pytest.raises(ValueError, match="pad_id must be a scalar"):
        seq_weights.from_targets(targets, jnp.array([0, 1]))  # type: ignore[arg-type]
    # -100 does not exist in uint8: it used to wrap to 156, a real class.
    narrow = np.array([[156, 3]], np.uint8)
    with pytest.raises(ValueError, match="pad_id does not fit dtype uint8"):
        seq_weights.from_targets(narrow, -100)


def test_from_targets_takes_a_pad_id_at_the_top_of_an_unsigned_dtype(x64):
    """2**32 - 1 is a uint32 value (as 2**64 - 1 is a uint64 one under x64);
    it raised OverflowError on its way through a signed dtype."""
    for dtype in (np.uint32, np.uint64):
        pad_id = int(np.iinfo(dtype).max)
        targets = np.array([[7, pad_id, pad_id], [pad_id, 0, 3]], dtype)
        expected = (targets != pad_id).astype(np.float32)
        np.testing.assert_array_equal(
            seq_weights.from_targets(targets, pad_id), expected
        )


def test_class_weights_match_a_loop():
    rng = np.random.default_rng(1)
    table = np.array([0.5, 1.0, 2.0, 4.0], np.float32)
    labels = rng.integers(-2, 6, size=(B, T))  # some outside [0, 4)
    labels[0, 0] = -100
    expected = np.zeros((B, T))
    for index in np.ndindex(labels.shape):
        label = labels[index]
        expected[index] = table[label] if 0 <= label < len(table) else 0.0
    got = seq_weights.class_weights(labels, table)
    assert got.dtype == jnp.float32
    np.testing.assert_array_equal(got, expected)
    with pytest.raises(TypeError, match="labels must have an integer dtype"):
        seq_weights.class_weights(labels.astype(np.float32), table)
    with pytest.raises(ValueError, match=r"table must have shape \[num_classes\]"):
        seq_weights.class_weights(labels, table[None])
    with pytest.raises(ValueError, match=r"table must lie in \[0, inf\).*\[1\]"):
        seq_weights.class_weights(labels, np.array([1.0, -2.0], np.float32))


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16])
def test_class_weights_of_narrow_labels_with_a_larger_table(dtype):
    """Labels in a dtype that cannot hold the number of classes (int8 with
    200 classes) index the table like a loop; comparing them against 200 in
    their own dtype raised OverflowError."""
    info = np.iinfo(dtype)
    table = np.linspace(0.5, 2.0, 300).astype(np.float32)
    labels = np.array([info.min, -1 if info.min < 0 else 0, 5, info.max], dtype)
    expected = [table[x] if 0 <= x < len(table) else 0.0 for x in labels.tolist()]
    got = seq_weights.class_weights(labels, table)
    np.testing.assert_array_equal(got, np.asarray(expected, np.float32))


# ---------------------------------------------------------------------------
# combine


@settings(max_examples=25, deadline=None)
@given(
    use_sequence=st.booleans(),
    use_step=st.booleans(),
    feature_rank=st.sampled_from([None, 1, 3]),
    seed=st.integers(0, 2**16),
)
def test_combine_is_the_explicit_broadcast_product(
    use_sequence, use_step, feature_rank, seed
):
    rng = np.random.default_rng(seed)
    per_sequence = rng.uniform(size=(B,)) if use_sequence else None
    per_step = rng.uniform(size=(B, T)) if use_step else None
    per_feature = (
        None
        if feature_rank is None
        else rng.uniform(size=(F,) if feature_rank == 1 else (B, T, F))
    )
    factors = [per_sequence, per_step, per_feature]
    if all(factor is None for factor in factors):
        with pytest.raises(ValueError, match="at least one"):
            seq_weights.combine()
        return
    got = seq_weights.combine(
        per_sequence=per_sequence, per_step=per_step, per_feature=per_feature
    )
    expected = np.ones((B, T, F))
    if per_sequence is not None:
        expected = expected * per_sequence[:, None, None]
    if per_step is not None:
        expected = expected * per_step[:, :, None]
    if per_feature is not None:
        expected = expected * (
            per_feature if per_feature.ndim == 3 else per_feature[None, None, :]
        )
    assert got.dtype == jnp.float32
    # Fewer axes (or size-1 axes) where no factor varies; same values once
    # broadcast the way the losses broadcast weights (leading alignment).
    deepest = 3 if per_feature is not None else 2 if per_step is not None else 1
    assert got.ndim == deepest
    aligned = np.asarray(got).reshape(got.shape + (1,) * (3 - got.ndim))
    np.testing.assert_allclose(np.broadcast_to(aligned, (B, T, F)), expected, rtol=1e-6)


def test_combine_weights_a_loss_like_the_product():
    rng = np.random.default_rng(2)
    predictions = rng.normal(size=(B, T, F)).astype(np.float32)
    targets = rng.normal(size=(B, T, F)).astype(np.float32)
    per_sequence = np.array([1.0, 0.0, 2.0], np.float32)
    lengths = np.array([4, 2, 1])
    per_feature = rng.uniform(size=(F,)).astype(np.float32)
    combined = seq_weights.combine(
        per_sequence=per_sequence,
        per_step=seq_weights.from_lengths(lengths, T),
        per_feature=per_feature,
    )
    got = jax.jit(losses.squared_error)(predictions, targets, combined)
    full = (
        per_sequence[:, None, None]
        * (np.arange(T)[None, :] < lengths[:, None])[:, :, None]
        * per_feature[None, None, :]
    )
    expected = ((predictions - targets) ** 2 * full).sum() / full.sum()
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_combine_names_disagreeing_shapes():
    with pytest.raises(ValueError, match=r"per_sequence \(3,\).*per_step \(2, 4\)"):
        seq_weights.combine(per_sequence=np.ones(3), per_step=np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"per_step \(3, 4\).*per_feature \(3, 5, 2\)"):
        seq_weights.combine(per_step=np.ones((3, 4)), per_feature=np.ones((3, 5, 2)))
    with pytest.raises(ValueError, match=r"per_step must have shape \[B, T\]"):
        seq_weights.combine(per_step=np.ones(3))
    with pytest.raises(ValueError, match=r"per_sequence must have shape \[B\]"):
        seq_weights.combine(per_sequence=np.ones((3, 1)))
    with pytest.raises(ValueError, match=r"per_feature must have shape \[F\] or"):
        seq_weights.combine(per_feature=np.ones((4, 5)))


# ---------------------------------------------------------------------------
# normalize_per_sequence


@settings(max_examples=25, deadline=None)
@given(
    zero_rows=st.lists(st.booleans(), min_size=B, max_size=B),
    seed=st.integers(0, 2**16),
)
def test_normalized_rows_sum_to_one_or_zero(zero_rows, seed):
    rng = np.random.default_rng(seed)
    weights = rng.uniform(size=(B, T, F)) * (rng.random((B, T, F)) < 0.7)
    weights[np.asarray(zero_rows)] = 0.0
    got = np.asarray(seq_weights.normalize_per_sequence(weights.astype(np.float32)))
    totals = weights.sum(axis=(1, 2))
    expected = np.zeros_like(weights)
    for row in range(B):
        if totals[row] != 0:
            expected[row] = weights[row] / totals[row]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(
        got.sum(axis=(1, 2)), (totals != 0).astype(np.float64), rtol=1e-5
    )


def test_normalize_per_sequence_gradient_is_finite_for_zero_rows():
    weights = jnp.asarray([[0.0, 0.0], [1.0, 3.0]])
    grad = jax.jit(
        jax.grad(lambda w: jnp.sum(seq_weights.normalize_per_sequence(w) * 2.0))
    )(weights)
    assert np.all(np.isfinite(grad))
    np.testing.assert_array_equal(grad[0], [0.0, 0.0])
    with pytest.raises(TypeError, match="floating dtype"):
        seq_weights.normalize_per_sequence(jnp.array([[1, 2]]))
    with pytest.raises(ValueError, match="batch axis"):
        seq_weights.normalize_per_sequence(jnp.array(1.0))


def test_normalize_per_sequence_of_large_half_precision_weights():
    """float16 weights of 40,000 sum past float16's range (65,504): the
    result must still be each weight over its row's sum, in float16."""
    weights = np.array([[40000.0, 40000.0, 0.0], [1.0, 3.0, 0.0]], np.float16)
    got = seq_weights.normalize_per_sequence(weights)
    assert got.dtype == jnp.float16
    row_sums = weights.astype(np.float64).sum(1, keepdims=True)
    np.testing.assert_allclose(got, weights / row_sums, rtol=1e-3)


def test_normalized_weights_sum_equals_sequence_mean():
    # Cross-check of two routes to "every sequence counts equally".
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(B, T, F)).astype(np.float32)
    labels = rng.integers(0, F, size=(B, T))
    step_weights = seq_weights.from_lengths(np.array([4, 0, 2]), T)

    @jax.jit
    def both(logits):
        normalized = seq_weights.normalize_per_sequence(step_weights)
        summed = losses.softmax_cross_entropy_with_integer_labels(
            logits, labels, normalized, reduction="sum"
        )
        sequence_mean = losses.softmax_cross_entropy_with_integer_labels(
            logits, labels, step_weights, reduction="sequence_mean"
        )
        return summed, sequence_mean

    summed, sequence_mean = both(logits)
    np.testing.assert_allclose(summed / 2.0, sequence_mean, rtol=1e-6)  # 2 rows count


@settings(max_examples=20, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 5), min_size=1, max_size=6),
    seed=st.integers(0, 2**16),
)
def test_normalize_per_segment_matches_a_loop(lengths, seed):
    """Packed rows: every segment sums to 1 (or 0), padding is 0."""
    rng = np.random.default_rng(seed)
    packing = pack([np.arange(n) for n in lengths], row_len=7)
    weights = rng.uniform(0.5, 2.0, size=packing.mask.shape + (2,))
    got = np.asarray(
        seq_weights.normalize_per_sequence(
            weights.astype(np.float32), segment_ids=packing.segment_ids
        )
    )
    expected = np.zeros_like(weights)
    for segment in range(len(lengths)):
        inside = packing.segment_ids == segment
        if inside.any():
            expected[inside] = weights[inside] / weights[inside].sum()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match=r"segment_ids must have shape"):
        seq_weights.normalize_per_sequence(
            weights.astype(np.float32), segment_ids=packing.segment_ids[:, :3]
        )


def test_normalize_per_sequence_segments_are_runs_within_a_row():
    """A sequence is a run of equal ids in a row: ids repeat across rows (T5
    numbering), an id may come back later in a row as a new sequence, and a
    negative id (padding) inside a run does not split it. A Python loop over
    the rows is the reference."""
    ids = np.array(
        [
            [0, 0, -1, 0, 1, 1, 0, -1],
            [0, 0, 0, 1, -1, -1, -1, -1],
            [-1, 5, 5, -1, -1, 5, 2, 2],
        ],
        np.int32,
    )
    rng = np.random.default_rng(11)
    w = rng.uniform(0.5, 2.0, size=(3, 8, 2)).astype(np.float32)
    want = np.zeros_like(w, dtype=np.float64)
    for row in range(3):
        runs, last = [], None
        for t in range(8):
            if ids[row, t] < 0:
                continue
            if ids[row, t] != last:
                runs.append([])
            runs[-1].append(t)
            last = ids[row, t]
        for steps in runs:
            want[row, steps] = w[row, steps] / w[row, steps].sum()
    got = seq_weights.normalize_per_sequence(w, segment_ids=ids)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    jitted = jax.jit(
        lambda w, ids: seq_weights.normalize_per_sequence(w, segment_ids=ids)
    )
    np.testing.assert_allclose(jitted(w, ids), want, rtol=1e-6)


@pytest.mark.parametrize("shape", [(0, 3), (2, 0), (0, 0)])
def test_normalize_per_sequence_of_no_position(shape):
    """An empty batch or time axis with segment_ids gives empty weights (an
    empty batch raised a broadcasting error)."""
    w = np.ones((*shape, 2), np.float32)
    ids = np.zeros(shape, np.int32)
    got = seq_weights.normalize_per_sequence(w, segment_ids=ids)
    assert got.shape == w.shape and got.dtype == w.dtype
