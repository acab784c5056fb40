"""linear_scan against a NumPy loop of masked_scan's semantics, both methods."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from helpers import mask_patterns
from jax.test_util import check_grads

from seqmask import linear_scan

T, B, F = 7, 6, 3
METHODS = ("associative", "sequential")


def reference(a, b, mask=None, resets=None, init=None, reset_to=None, *, reverse):
    """DESIGN.md's masked_scan loop for the step ``h -> a * h + b``, in float64.

    ``mask``/``resets`` are ``[T, *batch]`` and select whole rows of the
    state ``[*batch, ...]``.
    """
    wide = np.complex128 if np.iscomplexobj(b) else np.float64
    a = np.broadcast_to(np.asarray(a, wide), np.shape(b))
    b = np.asarray(b, wide)
    steps, state_shape = b.shape[0], b.shape[1:]
    mask = np.ones(b.shape[:1], bool) if mask is None else np.asarray(mask)
    h = np.zeros(state_shape, wide) if init is None else init
    h = np.array(np.broadcast_to(np.asarray(h, wide), state_shape))
    reset_to = h.copy() if reset_to is None else reset_to
    reset_to = np.broadcast_to(np.asarray(reset_to, wide), state_shape)

    def rows(flags_t):
        return np.broadcast_to(
            flags_t.reshape(flags_t.shape + (1,) * (len(state_shape) - flags_t.ndim)),
            state_shape,
        )

    hs = np.zeros(b.shape, wide)
    for t in reversed(range(steps)) if reverse else range(steps):
        if resets is not None:
            h = np.where(rows(resets[t]), reset_to, h)
        with np.errstate(invalid="ignore", over="ignore"):
            new = a[t] * h + b[t]
        valid = rows(mask[t])
        h = np.where(valid, new, h)
        hs[t] = np.where(valid, new, 0)
    return h, hs


def make_inputs(seed=0, dtype=np.float32, shape=(T, B, F)):
    """Random coefficients in (-1, 1), a mask covering every padding pattern
    (right, left, holes, empty row, full row, random), random resets."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(-1.0, 1.0, size=shape).astype(dtype)
    b = rng.normal(size=shape).astype(dtype)
    if shape[:2] == (T, B):
        mask = mask_patterns(rng, (B, T)).T.copy()
    else:
        mask = rng.random(shape[:2]) < 0.6
    resets = rng.random(shape[:2]) < 0.25
    initial = rng.normal(size=shape[1:]).astype(dtype)
    reset_to = rng.normal(size=shape[2:]).astype(dtype)  # one state for all rows
    return a, b, mask, resets, initial, reset_to


class TestMatchesNumpyLoop(chex.TestCase):
    """Both methods, forward and reverse, with and without resets and a given
    initial state, each with and without ``jit``."""

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(
        ("associative", False, False),
        ("associative", True, True),
        ("sequential", False, True),
        ("sequential", True, False),
    )
    def test_matches_numpy_loop(self, method, reverse, full):
        a, b, mask, resets, initial, reset_to = make_inputs(seed=1)
        extra = dict(resets=resets, init=initial, reset_to=reset_to) if full else {}

        @self.variant
        def run(a, b, mask, extra):
            return linear_scan(a, b, mask=mask, reverse=reverse, method=method, **extra)

        final, hs = run(a, b, mask, extra)
        want = reference(a, b, mask, reverse=reverse, **extra)
        chex.assert_trees_all_close((final, hs), want, rtol=1e-5, atol=1e-5)
        chex.assert_type((final, hs), jnp.float32)
        # The padding patterns matter: the mask is not all true.
        assert not mask.all() and mask.any(axis=0).sum() == B - 1


@pytest.mark.parametrize("method", METHODS)
def test_no_mask_and_empty_rows(method):
    a, b, mask, _, initial, _ = make_inputs(seed=2)
    final, hs = linear_scan(a, b, init=initial, method=method)
    want_final, want_hs = reference(a, b, init=initial, reverse=False)
    np.testing.assert_allclose(final, want_final, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(hs, want_hs, rtol=1e-5, atol=1e-5)
    # A row without a valid step returns its initial state exactly.
    final, hs = linear_scan(a, b, mask=mask, init=initial, method=method)
    empty = ~mask.any(axis=0)
    np.testing.assert_array_equal(final[empty], initial[empty])
    np.testing.assert_array_equal(hs[:, empty], 0.0)


@pytest.mark.parametrize("method", METHODS)
def test_zero_length(method):
    a, b, _, _, initial, _ = make_inputs(seed=3, shape=(0, B, F))
    final, hs = linear_scan(a, b, init=initial[0], method=method)
    np.testing.assert_array_equal(final, np.broadcast_to(initial[0], (B, F)))
    chex.assert_shape(hs, (0, B, F))


@pytest.mark.parametrize("method", METHODS)
def test_coefficient_broadcasts_over_features_and_batch(method):
    _, b, mask, resets, initial, reset_to = make_inputs(seed=4)
    rng = np.random.default_rng(5)
    for a_shape in [(T, B, 1), (T, 1, F)]:
        a = rng.uniform(-1.0, 1.0, size=a_shape).astype(np.float32)
        final, hs = linear_scan(
            a,
            b,
            mask=mask,
            resets=resets,
            init=initial,
            reset_to=reset_to,
            reverse=True,
            method=method,
        )
        want_final, want_hs = reference(
            a, b, mask, resets, initial, reset_to, reverse=True
        )
        np.testing.assert_allclose(final, want_final, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(hs, want_hs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "shape,mask_axes",
    [((T, F), 1), ((T, 2, 3, F), 3), ((T, 2, 3, F), 2), ((T, B), 2)],
)
def test_batch_shapes(shape, mask_axes):
    """The mask is any leading part of b's shape; it broadcasts over the rest."""
    a, b, _, _, _, _ = make_inputs(seed=6, shape=shape)
    rng = np.random.default_rng(7)
    mask = rng.random(shape[:mask_axes]) < 0.6
    resets = rng.random(shape[:mask_axes]) < 0.2
    initial = rng.normal(size=shape[1:]).astype(np.float32)
    want = reference(a, b, mask, resets, initial, reverse=False)
    for method in METHODS:
        got = linear_scan(a, b, mask=mask, resets=resets, init=initial, method=method)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


def test_complex_coefficients():
    a, b, mask, resets, initial, _ = make_inputs(seed=8)
    rng = np.random.default_rng(9)
    phase = np.exp(1j * rng.uniform(0, 2 * np.pi, size=a.shape))
    a_c = (a * phase).astype(np.complex64)
    b_c = (b + 1j * rng.normal(size=b.shape)).astype(np.complex64)
    initial_c = initial.astype(np.complex64)
    want = reference(a_c, b_c, mask, resets, initial_c, reverse=False)
    for method in METHODS:
        got = linear_scan(
            a_c, b_c, mask=mask, resets=resets, init=initial_c, method=method
        )
        for g, w in zip(got, want, strict=True):
            chex.assert_type(g, jnp.complex64)
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


def loss_of(a, b, initial, reset_to, mask, resets, *, method, reverse):
    final, hs = linear_scan(
        a,
        b,
        mask=mask,
        resets=resets,
        init=initial,
        reset_to=reset_to,
        reverse=reverse,
        method=method,
    )
    return jnp.sum(jnp.sin(hs) * 1.5) + jnp.sum(final**2)


@pytest.mark.parametrize("method", METHODS)
def test_check_grads_float64(method, x64):
    a, b, mask, resets, initial, reset_to = make_inputs(
        seed=10, dtype=np.float64, shape=(5, 4, 2)
    )
    mask[:, 3] = False  # an empty row too

    @jax.jit
    def fn(a, b, initial, reset_to):
        return loss_of(
            a, b, initial, reset_to, mask, resets, method=method, reverse=True
        )

    check_grads(fn, (a, b, initial, reset_to), order=1, modes=("fwd", "rev"))


def test_gradients_equal_between_methods():
    # Forward here; check_grads covers the reverse direction.
    reverse = False
    a, b, mask, resets, initial, reset_to = make_inputs(seed=11)
    a = a[..., :1]  # one coefficient a row: its gradient sums over features
    grads = {
        method: jax.jit(
            jax.grad(
                lambda *args, method=method: loss_of(
                    *args, method=method, reverse=reverse
                ),
                argnums=(0, 1, 2, 3),
            )
        )(a, b, initial, reset_to, mask, resets)
        for method in METHODS
    }
    for got, want in zip(grads["associative"], grads["sequential"], strict=True):
        assert np.any(np.asarray(want) != 0)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_garbage_at_padded_steps_changes_nothing(method):
    a, b, mask, resets, initial, reset_to = make_inputs(seed=12)
    padded = np.broadcast_to(~mask[..., None], a.shape)
    grad = jax.jit(
        jax.value_and_grad(
            lambda *args: loss_of(*args, method=method, reverse=True),
            argnums=(0, 1, 2, 3),
        )
    )
    clean_value, clean_grads = grad(a, b, initial, reset_to, mask, resets)
    assert np.isfinite(clean_value)
    for bad in (np.nan, np.inf):
        dirty_a = np.where(padded, bad, a).astype(np.float32)
        dirty_b = np.where(padded, -bad, b).astype(np.float32)
        dirty_value, dirty_grads = grad(
            dirty_a, dirty_b, initial, reset_to, mask, resets
        )
        np.testing.assert_array_equal(dirty_value, clean_value)
        for dirty, clean in zip(dirty_grads, clean_grads, strict=True):
            np.testing.assert_array_equal(dirty, clean)
    for g in clean_grads[:2]:  # with respect to a and b
        assert np.all(np.asarray(g)[padded] == 0.0)
        assert np.any(np.asarray(g)[~padded] != 0.0)


def test_long_sequence_is_finite_and_accurate():
    """T = 16384 with long memory (a near 1), holes and a few resets."""
    steps = 16384
    rng = np.random.default_rng(13)
    a = rng.uniform(0.99, 1.0, size=(steps, 2, 4)).astype(np.float32)
    b = rng.normal(size=(steps, 2, 4)).astype(np.float32)
    mask = rng.random((steps, 2)) < 0.9
    resets = rng.random((steps, 2)) < 1e-3
    initial = np.ones((2, 4), np.float32)
    want_final, want_hs = reference(a, b, mask, resets, initial, reverse=False)
    scale = np.max(np.abs(want_hs))
    for method in METHODS:
        final, hs = jax.jit(
            lambda a, b, m, r, i, method=method: linear_scan(
                a, b, mask=m, resets=r, init=i, method=method
            )
        )(a, b, mask, resets, initial)
        assert np.all(np.isfinite(hs)) and np.all(np.isfinite(final))
        np.testing.assert_allclose(hs, want_hs, rtol=0, atol=1e-5 * scale)
        np.testing.assert_allclose(final, want_final, rtol=0, atol=1e-5 * scale)


def test_errors_name_the_argument():
    a, b, mask, resets, initial, _ = make_inputs(seed=14)
    with pytest.raises(ValueError, match="linear_scan: method must be one of"):
        linear_scan(a, b, method="parallel")
    with pytest.raises(ValueError, match="a must have the shape of b"):
        linear_scan(a[:, :, :2], b)
    with pytest.raises(ValueError, match="a must have the shape of b"):
        linear_scan(a[0], b)
    with pytest.raises(TypeError, match="a and b must have one dtype"):
        linear_scan(a.astype(jnp.bfloat16), b)
    with pytest.raises(TypeError, match="b must be floating point"):
        linear_scan(a, b.astype(np.int32))
    with pytest.raises(TypeError, match="mask must be a boolean"):
        linear_scan(a, b, mask=mask.astype(np.int32))
    with pytest.raises(ValueError, match=r"mask must be \[time, \*batch\]"):
        linear_scan(a, b, mask=mask[:-1])
    with pytest.raises(ValueError, match="resets must have the shape of mask"):
        linear_scan(a, b, mask=mask, resets=resets[:, 0])
    with pytest.raises(ValueError, match=r"init: got float32\[6, 2\]"):
        linear_scan(a, b, init=initial[:, :2])
    with pytest.raises(TypeError, match=r"reset_to: got bfloat16"):
        linear_scan(a, b, resets=resets, reset_to=initial.astype(jnp.bfloat16))
    # A Python scalar takes b's dtype.
    final, _ = linear_scan(a, b, mask=np.zeros((T, B), bool), init=0.5)
    np.testing.assert_array_equal(final, np.full((B, F), 0.5, np.float32))
