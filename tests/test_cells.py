"""Cells against NumPy loops of their documented equations; dtypes; gradients."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import numpy_reference as ref
import pytest
from absl.testing import parameterized
from helpers import mask_patterns, random_params
from jax.test_util import check_grads

import seqmask
from seqmask import cells

B, T, IN, H = 6, 7, 3, 5
MAKERS = {"simple_rnn": cells.simple_rnn, "lstm": cells.lstm, "gru": cells.gru}


def carry_tuple(name, carry):
    return (carry.h, carry.c) if name == "lstm" else (carry,)


def make_carry(name, parts):
    return cells.LSTMCarry(*parts) if name == "lstm" else parts[0]


def inputs(seed, dtype=np.float32):
    rng = np.random.default_rng(seed)
    xs = rng.normal(size=(B, T, IN)).astype(dtype)
    mask = mask_patterns(rng, (B, T))
    resets = rng.random((B, T)) < 0.2
    return xs, mask, resets


class TestRnnMatchesNumpy(chex.TestCase):
    """Each cell through seqmask.rnn equals the NumPy loop (every padding
    pattern, resets, a given initial carry), with and without ``jit``."""

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.product(name=sorted(MAKERS), reverse_unroll=[(False, 1), (True, 2)])
    def test_rnn_matches_numpy(self, name, reverse_unroll):
        reverse, unroll = reverse_unroll
        cell = MAKERS[name](H)
        params = random_params(cell, IN, 0)
        xs, mask, resets = inputs(1)
        rng = np.random.default_rng(2)
        initial = tuple(
            rng.normal(size=(B, H)).astype(np.float32)
            for _ in carry_tuple(name, cell.initial_carry(params, (B,)))
        )

        @self.variant
        def run(params, xs, mask, resets, initial):
            return seqmask.rnn(
                cell,
                params,
                xs,
                mask=mask,
                resets=resets,
                initial_carry=make_carry(name, initial),
                reverse=reverse,
                unroll=unroll,
            )

        carry, ys = run(params, xs, mask, resets, initial)
        zeros = tuple(np.zeros((B, H)) for _ in initial)
        want_carry, want_ys = ref.rnn(
            name,
            params,
            xs,
            mask,
            initial,
            reverse=reverse,
            resets=resets,
            reset_to=zeros,
        )
        got = (*carry_tuple(name, carry), ys)
        chex.assert_trees_all_close(got, (*want_carry, want_ys), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_float64_matches_numpy_and_check_grads(name, x64):
    cell = MAKERS[name](H, param_dtype=jnp.float64)
    params = random_params(cell, IN, 3, dtype=np.float64)
    xs, mask, _ = inputs(4, np.float64)
    initial = cell.initial_carry(params, (B,))
    carry, ys = seqmask.rnn(cell, params, xs, mask=mask)
    zeros = tuple(np.zeros((B, H)) for _ in carry_tuple(name, initial))
    want_carry, want_ys = ref.rnn(name, params, xs, mask, zeros)
    np.testing.assert_allclose(ys, want_ys, rtol=1e-12, atol=1e-12)
    for got, want in zip(carry_tuple(name, carry), want_carry, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)

    @jax.jit
    def loss(params, xs, initial):
        carry, ys = seqmask.rnn(cell, params, xs, mask=mask, initial_carry=initial)
        return jnp.sum(jnp.sin(ys)) + sum(jnp.sum(c**2) for c in jax.tree.leaves(carry))

    initial = jax.tree.map(lambda c: c + 0.3, initial)
    check_grads(loss, (params, xs, initial), order=1, modes=("fwd", "rev"))


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_one_step_any_batch_dims(name):
    cell = MAKERS[name](H)
    params = random_params(cell, IN, 5)
    x = np.random.default_rng(6).normal(size=(2, 3, IN)).astype(np.float32)
    carry = jax.tree.map(lambda c: c + 0.1, cell.initial_carry(params, (2, 3)))
    new, y = cell.apply(params, carry, x)
    flat_carry = jax.tree.map(lambda c: c.reshape(6, H), carry)
    flat_new, flat_y = cell.apply(params, flat_carry, x.reshape(6, IN))
    chex.assert_shape(jax.tree.leaves((new, y)), (2, 3, H))
    unflat = jax.tree.map(lambda leaf: leaf.reshape(2, 3, H), (flat_new, flat_y))
    chex.assert_trees_all_close((new, y), unflat, rtol=1e-6)
    # unbatched: a single vector
    single_new, single_y = cell.apply(
        params, jax.tree.map(lambda c: c[1, 2], carry), x[1, 2]
    )
    np.testing.assert_allclose(single_y, y[1, 2], rtol=1e-6, atol=1e-7)
    # the split form is the same step
    proj = cell.project_inputs(params, x)
    split_new, split_y = cell.apply_projected(params, carry, proj)
    np.testing.assert_array_equal(split_y, y)


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_bfloat16(name):
    xs, mask, _ = inputs(7)
    xs_bf16 = xs.astype(jnp.bfloat16)
    cell = MAKERS[name](H)
    params = random_params(cell, IN, 8)
    f32_carry, f32_ys = seqmask.rnn(
        cell, params, np.asarray(xs_bf16, np.float32), mask=mask
    )
    # bfloat16 inputs with float32 parameters compute in float32 (as Flax).
    carry, ys = seqmask.rnn(cell, params, xs_bf16, mask=mask)
    chex.assert_type(ys, jnp.float32)
    np.testing.assert_allclose(ys, f32_ys, rtol=1e-6, atol=1e-6)
    # An explicit bfloat16 compute dtype: bfloat16 outputs, float32 carry.
    cell16 = MAKERS[name](H, dtype=jnp.bfloat16)
    carry16, ys16 = seqmask.rnn(cell16, params, xs_bf16, mask=mask)
    chex.assert_type(ys16, jnp.bfloat16)
    assert all(c.dtype == jnp.float32 for c in jax.tree.leaves(carry16))
    np.testing.assert_allclose(np.asarray(ys16, np.float32), f32_ys, atol=3e-2)
    for got, want in zip(
        jax.tree.leaves(carry16), jax.tree.leaves(f32_carry), strict=True
    ):
        np.testing.assert_allclose(got, want, atol=3e-2)


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_bfloat16_parameters(name):
    """``param_dtype=jnp.bfloat16`` is valid: the orthogonal blocks are drawn
    in float32 and cast (QR has no bfloat16 kernel on CPU), and a layer in
    bfloat16 follows the NumPy loop over the same (upcast) parameters."""
    cell = MAKERS[name](H, param_dtype=jnp.bfloat16)
    params = cell.init(jax.random.key(0), IN)
    chex.assert_trees_all_equal_dtypes(
        params, jax.tree.map(lambda p: np.zeros((), jnp.bfloat16), params)
    )
    kernel = np.asarray(params["recurrent_kernel"], np.float32)
    for block in np.split(kernel, kernel.shape[1] // H, axis=1):
        np.testing.assert_allclose(block.T @ block, np.eye(H), atol=3e-2)
    xs, mask, _ = inputs(9)
    carry, ys = seqmask.rnn(cell, params, xs.astype(jnp.bfloat16), mask=mask)
    chex.assert_type(ys, jnp.bfloat16)
    upcast = jax.tree.map(lambda p: np.asarray(p, np.float64), params)
    start = tuple(np.zeros((B, H)) for _ in carry_tuple(name, carry))
    xs_bf16 = np.asarray(xs.astype(jnp.bfloat16), np.float64)
    want_carry, want_ys = ref.rnn(name, upcast, xs_bf16, mask, start)
    np.testing.assert_allclose(np.asarray(ys, np.float32), want_ys, atol=6e-2)
    for got, want in zip(carry_tuple(name, carry), want_carry, strict=True):
        np.testing.assert_allclose(np.asarray(got, np.float32), want, atol=6e-2)


def test_lstm_forget_bias_and_layout():
    params = cells.lstm(H, forget_bias=1.5).init(jax.random.key(0), IN)
    np.testing.assert_array_equal(params["bias"][H : 2 * H], 1.5)
    np.testing.assert_array_equal(np.delete(params["bias"], np.s_[H : 2 * H]), 0.0)
    # one orthogonal block per gate
    for gate in range(4):
        block = np.asarray(params["recurrent_kernel"][:, gate * H : (gate + 1) * H])
        np.testing.assert_allclose(block.T @ block, np.eye(H), atol=1e-5)


def test_learnable_initial_state():
    inner = cells.lstm(H)
    cell = cells.learnable_initial_state(inner, carry_init=jax.nn.initializers.normal())
    params = cell.init(jax.random.key(0), IN)
    carry = cell.initial_carry(params, (2, 3))
    np.testing.assert_array_equal(carry.h[1, 2], params["initial_carry"].h)
    np.testing.assert_array_equal(carry.c[0, 0], params["initial_carry"].c)
    x = np.ones((2, 3, IN), np.float32)
    got = cell.apply(params, carry, x)
    want = inner.apply(params["cell"], carry, x)
    chex.assert_trees_all_equal(got, want)
    # default zeros: the wrapped cell starts identical to the inner one
    zero_params = cells.learnable_initial_state(inner).init(jax.random.key(0), IN)
    assert all(
        np.all(leaf == 0) for leaf in jax.tree.leaves(zero_params["initial_carry"])
    )


def test_learned_state_gets_gradient_only_from_rows_that_start_from_it():
    cell = cells.learnable_initial_state(cells.gru(H))
    params = cell.init(jax.random.key(1), IN)
    xs, _, _ = inputs(9)
    xs = xs[:3]
    given = np.random.default_rng(3).normal(size=(3, H)).astype(np.float32)
    resets = np.zeros((3, T), bool)
    resets[0, 2] = True  # row 0 resets to the learned state at step 2

    def loss(params, xs, initial_carry, resets):
        _, ys = seqmask.rnn(
            cell, params, xs, initial_carry=initial_carry, resets=resets
        )
        return jnp.sum(ys**2)

    grad = jax.jit(jax.grad(loss))
    # Rows given their own carry and never reset: no gradient to the state.
    no_reset = grad(params, xs, given, np.zeros_like(resets))
    np.testing.assert_array_equal(no_reset["initial_carry"], 0.0)
    # With the reset, exactly row 0's contribution reaches it.
    with_reset = grad(params, xs, given, resets)
    row0 = grad(params, xs[:1], given[:1], resets[:1])
    np.testing.assert_allclose(
        with_reset["initial_carry"], row0["initial_carry"], rtol=1e-5, atol=1e-6
    )
    assert np.any(np.asarray(row0["initial_carry"]) != 0)
    # Starting from the learned state (no initial carry), every row counts.
    starts = grad(params, xs, None, np.zeros_like(resets))
    no_resets = np.zeros((1, T), bool)
    rows = sum(
        np.asarray(grad(params, xs[b : b + 1], None, no_resets)["initial_carry"])
        for b in range(3)
    )
    np.testing.assert_allclose(starts["initial_carry"], rows, rtol=1e-5, atol=1e-6)


def test_cell_errors():
    cell = cells.lstm(H)
    params = cell.init(jax.random.key(0), IN)
    carry = cell.initial_carry(params, (2,))
    with pytest.raises(ValueError, match=r"inputs must be \[\.\.\., 3\]"):
        cell.apply(params, carry, np.ones((2, 4), np.float32))
    with pytest.raises(TypeError, match="floating point"):
        cell.apply(params, carry, np.ones((2, IN), np.int32))
    with pytest.raises(ValueError, match="hidden_size must be a positive int"):
        cells.gru(0)
    with pytest.raises(TypeError, match="must be a seqmask.cells.Cell"):
        cells.learnable_initial_state(lambda x: x)


@pytest.mark.parametrize("name", cells.NAMES)
def test_named_builds_the_factory_cell_once(name):
    """``named(name, H)`` is the factory's cell: the same parameter layout and
    the same step (checked against the NumPy step where there is one); one
    object per configuration."""
    factory = getattr(cells, name)
    cell = cells.named(name, H)
    assert cell is cells.named(name, H)
    assert cell is not cells.named(name, H, dtype=jnp.bfloat16)
    assert cell.name == name and cell.hidden_size == H
    params = random_params(factory(H), IN, 10)
    carry = jax.tree.map(lambda c: c + 0.2, cell.initial_carry(params, (B,)))
    x = np.random.default_rng(11).normal(size=(B, IN)).astype(np.float32)
    got = cell.apply(params, carry, x)
    want = factory(H).apply(params, carry, x)
    chex.assert_trees_all_equal(got, want)
    if name in ref.STEPS:
        inner = jax.tree.map(lambda c: np.asarray(c, np.float64), carry)
        inner = tuple(inner) if name == "lstm" else inner
        _, want_y = ref.STEPS[name](
            {k: np.asarray(v, np.float64) for k, v in params.items()}, inner, x
        )
        np.testing.assert_allclose(got[1], want_y, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", cells.NAMES)
def test_output_size_is_the_width_of_one_step(name):
    cell = cells.learnable_initial_state(cells.named(name, H))
    params = random_params(cell, IN, 12)
    _, y = cell.apply(params, cell.initial_carry(params, (2,)), np.ones((2, IN)))
    assert cells.output_size(cell, params, IN) == y.shape[-1] == H
    shapes = jax.eval_shape(lambda key: cell.init(key, IN), jax.random.key(0))
    assert cells.output_size(cell, shapes, IN) == H


def test_every_cell_rejects_the_params_of_every_other_cell():
    """Each built-in cell refuses another cell's parameters, naming itself,
    and names the cell they belong to (the min cells share one layout, so
    min_gru(6) and min_lstm(4) parameters are the same shapes)."""
    made = {name: cells.named(name, H) for name in cells.NAMES}
    params = {name: random_params(cell, IN, 13) for name, cell in made.items()}
    x = np.ones((2, IN), np.float32)
    for name, cell in made.items():
        carry = cell.initial_carry(params[name], (2,))
        for other in cells.NAMES:
            if other == name:
                continue
            with pytest.raises(ValueError, match=rf"{name}\.apply") as info:
                cell.apply(params[other], carry, x)
            assert f"look like {other}({H})" in str(info.value)


def test_params_cast_as_a_whole_are_accepted():
    """Parameters cast to one dtype (bfloat16 for inference, say) run: the
    carry takes their dtype; the step is the float32 step to bfloat16
    precision. A mixture of dtypes is refused."""
    cell = cells.gru(H)
    params = random_params(cell, IN, 14)
    half = jax.tree.map(lambda p: p.astype(jnp.bfloat16), params)
    x = np.random.default_rng(15).normal(size=(B, IN)).astype(np.float32)
    carry = cell.initial_carry(half, (B,))
    chex.assert_type(carry, jnp.bfloat16)
    new, y = cell.apply(half, carry, x)
    chex.assert_type(new, jnp.bfloat16)
    want, _ = cell.apply(params, np.zeros((B, H), np.float32), x)
    np.testing.assert_allclose(np.asarray(new, np.float32), want, atol=3e-2)
    mixed = {**params, "input_bias": half["input_bias"]}
    with pytest.raises(TypeError, match=r"params\['input_bias'\]: got bfloat16"):
        cell.apply(mixed, np.zeros((B, H), np.float32), x)
