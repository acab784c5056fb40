"""masked_scan against DESIGN.md's reference loop, gradients and errors."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import numpy_reference as ref
import pytest
from absl.testing import parameterized
from helpers import mask_patterns
from jax.test_util import check_grads

from seqmask import masked_scan

T, B, F = 7, 6, 3


def step_jax(carry, x):
    """A nonlinear step with a pytree carry, pytree inputs and outputs."""
    a, (s,) = carry["a"], carry["b"]
    u, v = x["u"], x["v"]
    new_a = jnp.tanh(a * 0.9 + u + s[..., None] * 0.1)
    new_s = s * 0.5 + v * jnp.sum(new_a, axis=-1)
    return {"a": new_a, "b": (new_s,)}, (new_a * 2.0, new_s)


def step_np(carry, x):
    a, s = carry
    u, v = x
    new_a = np.tanh(a * 0.9 + u + s * 0.1)
    new_s = s * 0.5 + v * np.sum(new_a)
    return [new_a, new_s], [new_a * 2.0, new_s]


def make_inputs(seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    mask_bt = mask_patterns(rng, (B, T))
    resets_bt = rng.random((B, T)) < 0.25
    init = {
        "a": rng.normal(size=(B, F)).astype(dtype),
        "b": (rng.normal(size=(B,)).astype(dtype),),
    }
    xs = {
        "u": rng.normal(size=(T, B, F)).astype(dtype),
        "v": rng.normal(size=(T, B)).astype(dtype),
    }
    reset_to = {
        "a": rng.normal(size=(F,)).astype(dtype),
        "b": (np.asarray(0.5, dtype),),
    }
    return init, xs, mask_bt.T.copy(), resets_bt.T.copy(), reset_to


class TestMatchesReferenceLoop(chex.TestCase):
    """masked_scan equals DESIGN.md's loop, with and without ``jit``."""

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.product(
        reverse=(False, True), use_resets=(False, True), unroll=(1, 2, T)
    )
    def test_matches_reference_loop(self, reverse, use_resets, unroll):
        init, xs, mask, resets, reset_to = make_inputs()
        kwargs = dict(reverse=reverse, unroll=unroll, pad_value=-1.0)
        if use_resets:
            kwargs.update(resets=resets, reset_to=reset_to)

        @self.variant
        def run(init, xs, mask):
            return masked_scan(step_jax, init, xs, mask, **kwargs)

        carry, ys = run(init, xs, mask)

        want_carry, want_ys = ref.masked_scan(
            step_np,
            [init["a"], init["b"][0]],
            [xs["u"], xs["v"]],
            mask,
            resets=resets if use_resets else None,
            reset_to=[reset_to["a"], reset_to["b"][0]] if use_resets else None,
            reverse=reverse,
            pad_value=-1.0,
        )
        chex.assert_trees_all_close(
            (carry["a"], carry["b"][0], *ys),
            (*want_carry, *want_ys),
            rtol=1e-5,
            atol=1e-5,
        )


def test_matches_reference_loop_float64(x64):
    init, xs, mask, resets, reset_to = make_inputs(seed=1, dtype=np.float64)
    carry, ys = masked_scan(
        step_jax, init, xs, mask, resets=resets, reset_to=reset_to, reverse=True
    )
    want_carry, want_ys = ref.masked_scan(
        step_np,
        [init["a"], init["b"][0]],
        [xs["u"], xs["v"]],
        mask,
        resets=resets,
        reset_to=[reset_to["a"], reset_to["b"][0]],
        reverse=True,
    )
    np.testing.assert_allclose(carry["a"], want_carry[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ys[1], want_ys[1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("reverse", [False, True])
def test_all_false_row_returns_init_exactly(reverse):
    init, xs, mask, _, _ = make_inputs(seed=2)
    assert not mask[:, 3].any()
    carry, ys = masked_scan(step_jax, init, xs, mask, reverse=reverse)
    np.testing.assert_array_equal(carry["a"][3], init["a"][3])
    np.testing.assert_array_equal(carry["b"][0][3], init["b"][0][3])
    np.testing.assert_array_equal(ys[0][:, 3], 0.0)


@pytest.mark.parametrize("reverse", [False, True])
def test_no_mask_matches_reference_loop(reverse):
    """Without a mask every step is valid: the reference loop's values."""
    init, xs, mask, _, _ = make_inputs(seed=3)
    carry, ys = masked_scan(step_jax, init, xs, reverse=reverse)
    want_carry, want_ys = ref.masked_scan(
        step_np,
        [init["a"], init["b"][0]],
        [xs["u"], xs["v"]],
        np.ones_like(mask),
        reverse=reverse,
    )
    np.testing.assert_allclose(carry["a"], want_carry[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(carry["b"][0], want_carry[1], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ys[0], want_ys[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ys[1], want_ys[1], rtol=1e-5, atol=1e-5)


def test_no_mask_accepts_a_weakly_typed_init_as_lax_scan_does():
    """Without a mask masked_scan is lax.scan: a Python 0 for init is
    promoted to the dtype the step computes in."""
    xs = jnp.arange(4.0)
    got = masked_scan(lambda c, x: (c + x, c * 2), 0, xs)
    want = jax.lax.scan(lambda c, x: (c + x, c * 2), 0, xs)
    chex.assert_trees_all_equal(got, want)
    assert got[0].dtype == jnp.float32


def test_a_weakly_typed_init_is_promoted_with_a_mask_or_resets_too():
    """The same weakly typed init and bfloat16 step give the carry
    jax.lax.scan gives, whether a mask or resets are passed or not (with a
    mask it was a TypeError, with resets only a float32 carry)."""
    xs = jnp.ones((3, 2), jnp.bfloat16)
    weak = jnp.broadcast_to(jnp.asarray(0.0), (2,))

    def step(c, x):
        return c + x, c + x

    want = jax.lax.scan(step, weak, xs)
    full = jnp.ones((3, 2), bool)
    for options in (
        {},
        {"mask": full},
        {"resets": ~full},
        {"mask": full, "resets": ~full},
    ):
        got = masked_scan(step, weak, xs, **options)
        assert got[0].dtype == jnp.bfloat16, options
        chex.assert_trees_all_equal(got, want)


def test_full_mask_equals_lax_scan():
    init, xs, mask, _, _ = make_inputs(seed=4)
    full = np.ones_like(mask)
    got = masked_scan(step_jax, init, xs, full)
    want = jax.lax.scan(step_jax, init, xs)
    chex.assert_trees_all_close(got, want, rtol=1e-6, atol=1e-6)


def loss_of(init, xs, mask, resets=None, reset_to=None, reverse=False):
    carry, ys = masked_scan(
        step_jax, init, xs, mask, resets=resets, reset_to=reset_to, reverse=reverse
    )
    return (
        jnp.sum(ys[0] ** 2)
        + jnp.sum(jnp.sin(ys[1]))
        + jnp.sum(carry["a"] * 3.0)
        + jnp.sum(carry["b"][0])
    )


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("reverse", [False, True])
def test_garbage_at_padded_inputs_changes_nothing(bad, reverse):
    init, xs, mask, resets, reset_to = make_inputs(seed=5)
    dirty = {
        "u": np.where(mask[..., None], xs["u"], bad).astype(np.float32),
        "v": np.where(mask, xs["v"], -bad).astype(np.float32),
    }
    grad = jax.jit(jax.value_and_grad(loss_of, argnums=(0, 1, 4)), static_argnums=5)
    clean_value, clean_grads = grad(init, xs, mask, resets, reset_to, reverse)
    dirty_value, dirty_grads = grad(init, dirty, mask, resets, reset_to, reverse)
    assert np.isfinite(clean_value)
    np.testing.assert_array_equal(dirty_value, clean_value)
    chex.assert_trees_all_equal(dirty_grads, clean_grads)
    # The gradient with respect to a padded input is exactly zero ...
    grad_xs = clean_grads[1]
    assert np.all(np.asarray(grad_xs["u"])[~mask] == 0.0)
    assert np.all(np.asarray(grad_xs["v"])[~mask] == 0.0)
    # ... and not trivially so at valid ones.
    assert np.any(np.asarray(grad_xs["u"])[mask] != 0.0)


def test_check_grads_float64(x64):
    init, xs, mask, resets, reset_to = make_inputs(seed=6, dtype=np.float64)

    @jax.jit
    def fn(init, xs, reset_to):
        return loss_of(init, xs, mask, resets, reset_to)

    check_grads(fn, (init, xs, reset_to), order=1, modes=("fwd", "rev"))


def test_reverse_visits_valid_steps_last_to_first():
    # A carry that records the order of visited steps: c <- 10 * c + t.
    mask = np.array([[True, False, True, True, False, True]]).T  # [T, 1]
    steps = jnp.arange(1, 7, dtype=jnp.float32)[:, None]

    def record(c, t):
        return c * 10.0 + t, t

    forward, _ = masked_scan(record, jnp.zeros(1), steps, mask)
    backward, ys = masked_scan(record, jnp.zeros(1), steps, mask, reverse=True)
    assert float(forward[0]) == 1346.0
    assert float(backward[0]) == 6431.0
    np.testing.assert_array_equal(ys[:, 0], np.where(mask[:, 0], np.arange(1, 7), 0))


def test_xs_none_uses_mask_length():
    mask = np.array([[True, False], [True, True], [False, True]])
    carry, ys = masked_scan(lambda c, _: (c + 1.0, c), jnp.zeros(2), None, mask)
    np.testing.assert_array_equal(carry, mask.sum(0).astype(np.float32))


def test_errors_name_the_argument():
    init, xs, mask, resets, _ = make_inputs(seed=7)
    with pytest.raises(TypeError, match="mask must be a boolean"):
        masked_scan(step_jax, init, xs, mask.astype(np.int32))
    with pytest.raises(ValueError, match="time axis"):
        masked_scan(step_jax, init, xs, mask[:-1])
    with pytest.raises(ValueError, match="resets must have the shape of mask"):
        masked_scan(step_jax, init, xs, mask, resets=resets[:, :-1])
    with pytest.raises(ValueError, match=r"init\['a'\] has shape \(5, 3\)"):
        masked_scan(step_jax, {"a": init["a"][:5], "b": init["b"]}, xs, mask)
    with pytest.raises(ValueError, match=r"xs\['v'\]"):
        masked_scan(step_jax, init, {"u": xs["u"], "v": xs["v"][:, :2]}, mask)

    def wrong_dtype(carry, x):
        new, y = step_jax(carry, x)
        return {"a": new["a"].astype(jnp.bfloat16), "b": new["b"]}, y

    with pytest.raises(TypeError, match=r"carry\['a'\]: got bfloat16\[6, 3\]"):
        masked_scan(wrong_dtype, init, xs, mask)
    with pytest.raises(
        ValueError, match=r"reset_to must have the structure of .*\(init\)"
    ):
        masked_scan(step_jax, init, xs, mask, resets=resets, reset_to={"a": init["a"]})


def test_compile_size_does_not_grow_with_time():
    def lowered_lines(steps):
        init = jnp.zeros((4, F))
        xs = jax.ShapeDtypeStruct((steps, 4, F), jnp.float32)
        mask = jax.ShapeDtypeStruct((steps, 4), jnp.bool_)

        def fn(init, xs, mask):
            return masked_scan(lambda c, x: (jnp.tanh(c + x), c), init, xs, mask)

        return len(jax.jit(fn).lower(init, xs, mask).as_text().splitlines())

    assert lowered_lines(16) == lowered_lines(1024)


def test_backward_keeps_the_step_mask_not_its_broadcast():
    """Differentiating a select keeps its predicate. The scan must keep the
    ``[time, batch]`` mask for the backward pass, not the mask broadcast to
    every selected value (a ``[time, batch, features]`` boolean per carry
    leaf and output, and one more kernel per step to write it)."""
    steps, batch, features = 32, 4, 24
    init = jnp.zeros((batch, features))
    xs = jnp.ones((steps, batch, features))
    mask = jnp.asarray(np.random.default_rng(0).random((steps, batch)) < 0.7)

    def loss(init, xs):
        carry, ys = masked_scan(lambda c, x: (jnp.tanh(c + x), c * x), init, xs, mask)
        return jnp.sum(ys**2) + jnp.sum(carry)

    text = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(init, xs).compile().as_text()
    assert f"pred[{steps},{batch},{features}]" not in text
    assert f"pred[{steps},{batch}]" in text  # the mask itself is still used
