"""Tests of seqmask.masks against NumPy loops written here.

``lengths_to_mask`` and ``mask_to_lengths`` are checked against NumPy loops
and against each other (round trips); ``reverse_valid_steps`` against a
per-row NumPy loop over right/left padding, holes, empty and full rows, in
both layouts, against Flax's flip-within-length formula for right padding,
and as an involution (hypothesis); the checks for their exception types,
messages and, under ``jax.jit``, for ``checkify`` reporting.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.experimental import checkify

from seqmask.masks import (
    check_lengths,
    check_mask,
    lengths_to_mask,
    mask_to_lengths,
    resolve_mask,
    reverse_valid_steps,
)

T = 6  # time steps; distinct from every batch size used here

# ---------------------------------------------------------------------------
# NumPy references


def np_lengths_to_mask(lengths, max_length):
    """``[*batch, max_length]``: true at steps ``0 .. lengths[b] - 1``."""
    lengths = np.asarray(lengths)
    mask = np.zeros(lengths.shape + (max_length,), dtype=bool)
    for index in np.ndindex(lengths.shape):
        for t in range(max_length):
            mask[index + (t,)] = t < int(lengths[index])
    return mask


def np_reverse_valid_steps(xs, mask):
    """Batch-major reference: valid steps p_0 < ... < p_{n-1} of a row receive
    x[p_{n-1}], ..., x[p_0]; padded steps keep their values."""
    xs = np.asarray(xs)
    mask = np.asarray(mask)
    out = xs.copy()
    for index in np.ndindex(mask.shape[:-1]):
        positions = [t for t in range(mask.shape[-1]) if mask[index + (t,)]]
        count = len(positions)
        for k in range(count):
            out[index + (positions[k],)] = xs[index + (positions[count - 1 - k],)]
    return out


def np_flax_flip_sequences(xs, lengths):
    """Flax's ``flip_sequences`` (batch-major, right padding), in NumPy: output
    step t reads input step (T - 1 - t + length) mod T."""
    out = np.empty_like(xs)
    time = xs.shape[1]
    for b in range(xs.shape[0]):
        for t in range(time):
            out[b, t] = xs[b, (time - 1 - t + int(lengths[b])) % time]
    return out


def mask_patterns(rng, time=T):
    """One row per pattern: right padding, left padding, holes, all false,
    all true, a single valid step in the middle."""
    right = np.arange(time) < 4
    left = np.arange(time) >= 2
    holes = np.array([True, False, True, True, False, True])[:time]
    random_row = rng.random(time) < 0.5
    single = np.arange(time) == 3
    rows = [
        right,
        left,
        holes,
        np.zeros(time, bool),
        np.ones(time, bool),
        random_row,
        single,
    ]
    return np.stack(rows)


# ---------------------------------------------------------------------------
# lengths_to_mask


@pytest.mark.parametrize("time_major", [False, True])
@pytest.mark.parametrize("batch_shape", [(), (5,), (2, 3)])
def test_lengths_to_mask_matches_numpy_loop(batch_shape, time_major):
    rng = np.random.default_rng(0)
    lengths = rng.integers(0, T + 1, size=batch_shape).astype(np.int32)
    if lengths.size >= 2:
        # The boundaries must be present: an empty row and a full row.
        lengths.reshape(-1)[0] = 0
        lengths.reshape(-1)[1] = T
    mask = lengths_to_mask(jnp.asarray(lengths), T, time_major=time_major)
    expected = np_lengths_to_mask(lengths, T)
    if time_major:
        expected = np.moveaxis(expected, -1, 0)
    assert mask.dtype == jnp.bool_
    np.testing.assert_array_equal(np.asarray(mask), expected)


def test_lengths_to_mask_boundaries():
    lengths = np.array([0, 1, T - 1, T], np.int32)
    mask = np.asarray(lengths_to_mask(jnp.asarray(lengths), T))
    np.testing.assert_array_equal(mask, np_lengths_to_mask(lengths, T))
    # Lengths beyond a short time axis, clipped on request; the empty axis.
    np.testing.assert_array_equal(
        np.asarray(lengths_to_mask(jnp.asarray(lengths), 1, clip=True)),
        np_lengths_to_mask(np.minimum(lengths, 1), 1),
    )
    np.testing.assert_array_equal(
        np.asarray(lengths_to_mask(jnp.zeros(3, jnp.int32), 0)),
        np.zeros((3, 0), bool),
    )


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.uint16])
def test_lengths_to_mask_narrow_dtypes_with_long_time_axis(dtype):
    # max_length beyond the range of the lengths' dtype: step indices must
    # not wrap around in that dtype (lengths past it are clipped on request).
    max_length = 300
    top = int(np.iinfo(dtype).max)
    lengths = np.array([0, 1, 5, top], dtype)
    mask = np.asarray(lengths_to_mask(jnp.asarray(lengths), max_length, clip=True))
    np.testing.assert_array_equal(mask, np_lengths_to_mask(lengths, max_length))
    in_range = np.array([0, 1, 5, min(top, max_length)], dtype)
    mask = np.asarray(lengths_to_mask(jnp.asarray(in_range), max_length))
    np.testing.assert_array_equal(mask, np_lengths_to_mask(in_range, max_length))
    # Traced, the range check must not wrap the bound into the dtype either.
    checked = checkify.checkify(jax.jit(lambda n: lengths_to_mask(n, max_length)))
    error, mask = checked(jnp.asarray(in_range))
    assert error.get() is None
    np.testing.assert_array_equal(mask, np_lengths_to_mask(in_range, max_length))


def test_lengths_to_mask_under_jit_matches_numpy():
    lengths = np.array([[3, 0, 6], [1, 2, 5]], np.int32)
    mask = jax.jit(lambda n: lengths_to_mask(n, T, time_major=True))(lengths)
    np.testing.assert_array_equal(
        np.asarray(mask), np.moveaxis(np_lengths_to_mask(lengths, T), -1, 0)
    )


@pytest.mark.parametrize("bad", [T + 1, -1])
def test_lengths_to_mask_raises_on_out_of_range(bad):
    lengths = jnp.array([2, bad, 0], jnp.int32)
    with pytest.raises(
        ValueError, match=rf"lengths_to_mask: .*\[0, {T}\].*rows \[1\].*\[{bad}\]"
    ):
        lengths_to_mask(lengths, T)


def test_lengths_to_mask_check_on_scalar_lengths():
    with pytest.raises(ValueError, match=rf"\[0, {T}\]"):
        lengths_to_mask(jnp.array(T + 2, jnp.int32), T)
    np.testing.assert_array_equal(
        np.asarray(lengths_to_mask(jnp.array(2, jnp.int32), T)),
        np.arange(T) < 2,
    )


def test_lengths_to_mask_rejects_float_lengths():
    with pytest.raises(TypeError, match="lengths must have an integer dtype"):
        lengths_to_mask(jnp.array([1.0, 2.0]), T)
    with pytest.raises(TypeError, match="lengths"):
        lengths_to_mask(np.array([True, False]), T)


@pytest.mark.parametrize("max_length", [6.0, np.float32(6), True, "6", None])
def test_lengths_to_mask_rejects_non_int_max_length(max_length):
    with pytest.raises(TypeError, match="max_length must be an int"):
        lengths_to_mask(jnp.array([1, 2], jnp.int32), max_length)


def test_lengths_to_mask_accepts_numpy_int_max_length():
    lengths = np.array([1, 4], np.int32)
    np.testing.assert_array_equal(
        np.asarray(lengths_to_mask(lengths, np.int64(5))),
        np_lengths_to_mask(lengths, 5),
    )


# ---------------------------------------------------------------------------
# mask_to_lengths


@pytest.mark.parametrize("time_major", [False, True])
def test_mask_to_lengths_counts_valid_steps(time_major):
    rng = np.random.default_rng(1)
    mask = rng.random((2, 3, T)) < 0.5
    mask[0, 0] = False
    mask[0, 1] = True
    expected = np.zeros((2, 3), np.int64)
    for index in np.ndindex(2, 3):
        for t in range(T):
            expected[index] += int(mask[index + (t,)])
    given_mask = np.moveaxis(mask, -1, 0) if time_major else mask
    lengths = mask_to_lengths(jnp.asarray(given_mask), time_major=time_major)
    assert lengths.dtype == jnp.int32
    np.testing.assert_array_equal(np.asarray(lengths), expected)
    np.testing.assert_array_equal(np.asarray(lengths), mask.sum(-1))


@pytest.mark.parametrize("time_major", [False, True])
def test_lengths_mask_round_trip(time_major):
    rng = np.random.default_rng(2)
    lengths = rng.integers(0, T + 1, size=(3, 4)).astype(np.int32)
    mask = lengths_to_mask(jnp.asarray(lengths), T, time_major=time_major)
    back = mask_to_lengths(mask, time_major=time_major)
    np.testing.assert_array_equal(np.asarray(back), lengths)
    # And mask -> lengths -> mask for right-padded masks.
    right_padded = np_lengths_to_mask(lengths, T)
    if time_major:
        right_padded = np.moveaxis(right_padded, -1, 0)
    again = lengths_to_mask(
        mask_to_lengths(jnp.asarray(right_padded), time_major=time_major),
        T,
        time_major=time_major,
    )
    np.testing.assert_array_equal(np.asarray(again), right_padded)


def test_mask_to_lengths_errors():
    with pytest.raises(TypeError, match="mask must be a boolean array"):
        mask_to_lengths(jnp.ones((2, 3), jnp.int32))
    with pytest.raises(ValueError, match="mask must have at least 1 axes"):
        mask_to_lengths(jnp.array(True))


# ---------------------------------------------------------------------------
# reverse_valid_steps


def test_reverse_valid_steps_matches_numpy_loop_all_patterns():
    rng = np.random.default_rng(3)
    mask = mask_patterns(rng)
    xs = rng.permutation(mask.size).reshape(mask.shape).astype(np.int32)
    out = reverse_valid_steps(jnp.asarray(xs), jnp.asarray(mask))
    expected = np_reverse_valid_steps(xs, mask)
    np.testing.assert_array_equal(np.asarray(out), expected)
    # The reference really moves things (guards against a no-op reference).
    assert not np.array_equal(expected, xs)


@pytest.mark.parametrize("time_major", [False, True])
def test_reverse_valid_steps_with_features(time_major):
    rng = np.random.default_rng(4)
    mask = mask_patterns(rng)  # [B, T]
    xs = rng.normal(size=mask.shape + (3,)).astype(np.float32)  # [B, T, F]
    expected = np_reverse_valid_steps(xs, mask)
    if time_major:
        out = reverse_valid_steps(
            jnp.asarray(np.swapaxes(xs, 0, 1)),
            jnp.asarray(mask.T),
            time_major=True,
        )
        out = np.swapaxes(np.asarray(out), 0, 1)
    else:
        out = np.asarray(reverse_valid_steps(jnp.asarray(xs), jnp.asarray(mask)))
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("time_major", [False, True])
def test_reverse_valid_steps_two_batch_axes_two_feature_axes(time_major):
    rng = np.random.default_rng(5)
    mask = rng.random((2, 3, T)) < 0.6
    mask[0, 0] = False
    mask[1, 2] = True
    xs = rng.normal(size=(2, 3, T, 2, 2)).astype(np.float32)
    expected = np_reverse_valid_steps(xs, mask)
    if time_major:
        out = reverse_valid_steps(
            jnp.asarray(np.moveaxis(xs, 2, 0)),
            jnp.asarray(np.moveaxis(mask, 2, 0)),
            time_major=True,
        )
        out = np.moveaxis(np.asarray(out), 0, 2)
    else:
        out = np.asarray(reverse_valid_steps(jnp.asarray(xs), jnp.asarray(mask)))
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("time_major", [False, True])
def test_reverse_valid_steps_lengths_equal_mask(time_major):
    rng = np.random.default_rng(6)
    lengths = np.array([0, 1, 4, T, 3], np.int32)
    xs = rng.normal(size=(5, T, 2)).astype(np.float32)
    mask = np_lengths_to_mask(lengths, T)
    if time_major:
        xs_in, mask_in = np.swapaxes(xs, 0, 1), mask.T
    else:
        xs_in, mask_in = xs, mask
    with_lengths = reverse_valid_steps(
        jnp.asarray(xs_in), lengths=jnp.asarray(lengths), time_major=time_major
    )
    with_mask = reverse_valid_steps(
        jnp.asarray(xs_in), jnp.asarray(mask_in), time_major=time_major
    )
    np.testing.assert_array_equal(np.asarray(with_lengths), np.asarray(with_mask))
    expected = np_reverse_valid_steps(xs, mask)
    if time_major:
        expected = np.swapaxes(expected, 0, 1)
    np.testing.assert_array_equal(np.asarray(with_lengths), expected)


def test_reverse_valid_steps_right_padding_is_flax_flip_within_length():
    rng = np.random.default_rng(7)
    lengths = np.array([0, 1, 3, T, 5], np.int32)
    xs = rng.normal(size=(5, T, 2)).astype(np.float32)
    out = np.asarray(reverse_valid_steps(jnp.asarray(xs), lengths=lengths))
    flax_style = np_flax_flip_sequences(xs, lengths)
    valid = np_lengths_to_mask(lengths, T)
    # Flax rotates the padding too; seqmask leaves it in place. On valid
    # steps the two agree.
    np.testing.assert_array_equal(out[valid], flax_style[valid])
    np.testing.assert_array_equal(out[~valid], xs[~valid])
    # Closed form on valid steps: x[b, L - 1 - t].
    for b, length in enumerate(lengths):
        np.testing.assert_array_equal(out[b, :length], xs[b, :length][::-1])


# One fixed shape, so that the jitted function compiles once; hypothesis
# varies the mask (any pattern) and the values.
HB, HT = 4, 5


@st.composite
def masked_arrays(draw):
    bits = draw(st.lists(st.booleans(), min_size=HB * HT, max_size=HB * HT))
    values = draw(
        st.lists(st.integers(-100, 100), min_size=HB * HT * 2, max_size=HB * HT * 2)
    )
    mask = np.array(bits, bool).reshape(HB, HT)
    xs = np.array(values, np.int32).reshape(HB, HT, 2)
    return xs, mask


_reverse_jit = jax.jit(reverse_valid_steps)


@settings(max_examples=60, deadline=None)
@given(masked_arrays())
def test_reverse_valid_steps_is_an_involution(arrays):
    xs, mask = arrays
    once = _reverse_jit(jnp.asarray(xs), jnp.asarray(mask))
    np.testing.assert_array_equal(np.asarray(once), np_reverse_valid_steps(xs, mask))
    twice = _reverse_jit(once, jnp.asarray(mask))
    np.testing.assert_array_equal(np.asarray(twice), xs)


def test_reverse_valid_steps_under_jit():
    rng = np.random.default_rng(8)
    mask = mask_patterns(rng)
    xs = rng.normal(size=mask.shape + (2,)).astype(np.float32)
    out = jax.jit(reverse_valid_steps)(jnp.asarray(xs), jnp.asarray(mask))
    np.testing.assert_array_equal(np.asarray(out), np_reverse_valid_steps(xs, mask))


def test_reverse_valid_steps_errors():
    xs = jnp.zeros((2, T, 3))
    with pytest.raises(ValueError, match="give mask or lengths; got neither"):
        reverse_valid_steps(xs)
    with pytest.raises(ValueError, match="mask or lengths, not both"):
        reverse_valid_steps(
            xs, jnp.ones((2, T), bool), lengths=jnp.array([1, 2], jnp.int32)
        )
    with pytest.raises(TypeError, match="mask must be a boolean array"):
        reverse_valid_steps(xs, jnp.ones((2, T), jnp.int32))
    with pytest.raises(
        ValueError, match=re.escape(f"mask must have shape [*batch, time] = {(2, T)}")
    ):
        reverse_valid_steps(xs, jnp.ones((2, T + 1), bool))
    with pytest.raises(ValueError, match=rf"reverse_valid_steps: lengths .*\[0, {T}\]"):
        reverse_valid_steps(xs, lengths=jnp.array([1, T + 1], jnp.int32))


# ---------------------------------------------------------------------------
# check_lengths


def test_check_lengths_concrete():
    check_lengths(np.array([0, 3, T], np.int32), T)  # in range: no error
    with pytest.raises(ValueError, match=rf"\[0, {T}\].*rows \[2\].*\[{T + 1}\]"):
        check_lengths(np.array([0, 3, T + 1], np.int32), T)
    with pytest.raises(ValueError, match=r"\[0, 6\].*rows \[\(1, 0\)\].*\[-2\]"):
        check_lengths(jnp.array([[1, 2], [-2, 0]], jnp.int32), T)
    with pytest.raises(TypeError, match="lengths must have an integer dtype"):
        check_lengths(np.array([1.0, 2.0]), T)


def test_check_lengths_under_jit_with_checkify():
    def build(lengths):
        check_lengths(lengths, T)
        return lengths_to_mask(lengths, T)

    checked = checkify.checkify(jax.jit(build))
    for bad in ([1, T + 1], [-1, 2]):
        err, _ = checked(jnp.array(bad, jnp.int32))
        assert err.get() is not None
        assert f"check_lengths: lengths must lie in [0, {T}]" in err.get()
    good = np.array([0, T], np.int32)
    err, mask = checked(jnp.asarray(good))
    assert err.get() is None
    np.testing.assert_array_equal(np.asarray(mask), np_lengths_to_mask(good, T))


def test_lengths_to_mask_check_under_checkify_jit():
    checked = jax.jit(checkify.checkify(lambda n: lengths_to_mask(n, T)))
    err, _ = checked(jnp.array([T + 3, 0], jnp.int32))
    assert err.get() is not None
    err, _ = checked(jnp.array([T, 0], jnp.int32))
    assert err.get() is None
    # Under plain jit the check costs nothing and raises nothing.
    mask = jax.jit(lambda n: lengths_to_mask(n, T))(jnp.array([T + 3, -1], jnp.int32))
    np.testing.assert_array_equal(np.asarray(mask), np_lengths_to_mask([T, 0], T))


# ---------------------------------------------------------------------------
# check_mask / resolve_mask


def test_check_mask():
    check_mask(jnp.ones((2, T), bool), (2, T))  # right dtype and shape
    with pytest.raises(TypeError, match="mask must be a boolean array; got dtype"):
        check_mask(jnp.ones((2, T), jnp.float32), (2, T))
    with pytest.raises(TypeError, match="resets must be a boolean"):
        check_mask(np.ones((2, T), np.int32), (2, T), name="resets")
    with pytest.raises(
        ValueError, match=re.escape(f"resets must have shape [*batch, time] = {(2, T)}")
    ):
        check_mask(jnp.ones((T, 2), bool), (2, T), name="resets")


@pytest.mark.parametrize("time_major", [False, True])
def test_resolve_mask_values(time_major):
    lengths = np.array([2, 0, T], np.int32)
    xs = jnp.zeros((T, 3, 4) if time_major else (3, T, 4))
    expected = np_lengths_to_mask(lengths, T)
    if time_major:
        expected = expected.T
    from_lengths = resolve_mask(xs, lengths=lengths, time_major=time_major)
    np.testing.assert_array_equal(np.asarray(from_lengths), expected)
    from_mask = resolve_mask(xs, mask=jnp.asarray(expected), time_major=time_major)
    np.testing.assert_array_equal(np.asarray(from_mask), expected)
    assert resolve_mask(xs, time_major=time_major) is None


def test_resolve_mask_errors():
    xs = jnp.zeros((3, T, 4))
    with pytest.raises(ValueError, match="layer_x: give mask or lengths, not both"):
        resolve_mask(
            xs,
            mask=jnp.ones((3, T), bool),
            lengths=jnp.ones(3, jnp.int32),
            name="layer_x",
        )
    with pytest.raises(TypeError, match="mask must be a boolean array"):
        resolve_mask(xs, mask=jnp.ones((3, T), jnp.int32))
    with pytest.raises(
        ValueError, match=re.escape(f"mask must have shape [*batch, time] = {(3, T)}")
    ):
        resolve_mask(xs, mask=jnp.ones((T, 3), bool))
    with pytest.raises(ValueError, match=rf"layer_x: lengths .*\[0, {T}\].*rows \[0\]"):
        resolve_mask(xs, lengths=jnp.array([-1, 2, 3], jnp.int32), name="layer_x")
    with pytest.raises(ValueError, match="mask of shape .* must cover"):
        resolve_mask(xs, mask=jnp.ones((3, T, 4, 1), bool))
    with pytest.raises(TypeError, match="rnn: lengths must have an integer dtype"):
        resolve_mask(xs, lengths=jnp.ones(3))
    with pytest.raises(ValueError, match=r"lengths must have the batch shape \(3,\)"):
        resolve_mask(xs, lengths=jnp.ones(4, jnp.int32))
    with pytest.raises(ValueError, match="lengths of shape"):
        resolve_mask(jnp.zeros((3,)), lengths=jnp.ones(3, jnp.int32))
