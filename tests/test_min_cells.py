"""minGRU / minLSTM: the parallel path against the sequential one and NumPy.

The NumPy reference writes out the paper's equations literally (including the
division ``f / (f + i)``), sharing no code with seqmask; the sequential path
is :func:`seqmask.masked_scan` over the cell's one-step ``apply``.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import numpy_reference as ref
import pytest
from helpers import mask_patterns, random_params
from jax.test_util import check_grads

import seqmask
from seqmask import cells

B, T, IN, H = 6, 7, 3, 4
MAKERS = {"min_gru": cells.min_gru, "min_lstm": cells.min_lstm}


def g(v):
    return np.where(v >= 0, v + 0.5, ref.sigmoid(v))


def numpy_step(name, params, h, x, log_space):
    """One step of Feng et al. (2024), eqs. for minGRU and minLSTM."""
    p = x @ np.asarray(params["input_kernel"], np.float64) + np.asarray(
        params["bias"], np.float64
    )
    candidate = p[-H:]
    if log_space:
        candidate = g(candidate)
    if name == "min_gru":
        z = ref.sigmoid(p[:H])
        return (1 - z) * h + z * candidate
    f, i = ref.sigmoid(p[:H]), ref.sigmoid(p[H : 2 * H])
    return f / (f + i) * h + i / (f + i) * candidate


def numpy_rnn(name, params, xs_tm, mask, resets, initial, reset_to, log_space, rev):
    def f(carry, x):
        new = numpy_step(name, params, carry[0], x[0], log_space)
        return [new], [new]

    final, ys = ref.masked_scan(
        f,
        [np.asarray(initial, np.float64)],
        [np.asarray(xs_tm, np.float64)],
        mask,
        resets=resets,
        reset_to=None if reset_to is None else [np.asarray(reset_to, np.float64)],
        reverse=rev,
    )
    return final[0], ys[0]


def inputs(seed, dtype=np.float32):
    """Time-major xs [T, B, IN], mask and resets [T, B] (every padding pattern)."""
    rng = np.random.default_rng(seed)
    xs = rng.normal(size=(T, B, IN)).astype(dtype)
    mask = mask_patterns(rng, (B, T)).T.copy()
    resets = rng.random((T, B)) < 0.25
    return xs, mask, resets


def both_paths(cell, *, reverse):
    """``(parallel, sequential)``: seqmask.rnn (which runs the cell's
    declared linear recurrence as one scan) and masked_scan over the cell's
    one-step apply."""

    def parallel(params, xs, mask, resets, initial):
        return seqmask.rnn(
            cell,
            params,
            xs,
            mask=mask,
            resets=resets,
            initial_carry=initial,
            reverse=reverse,
            time_major=True,
        )

    def sequential(params, xs, mask, resets, initial):
        default = cell.initial_carry(params, (xs.shape[1],))
        return seqmask.masked_scan(
            lambda c, x: cell.apply(params, c, x),
            default if initial is None else initial,
            xs,
            mask,
            resets=resets,
            reset_to=default,
            reverse=reverse,
        )

    return parallel, sequential


@pytest.mark.parametrize("log_space,learned", [(False, False), (True, True)])
def test_parallel_equals_sequential_and_numpy(log_space, learned):
    """Masks of every pattern (right, left, holes, empty, full) and resets:
    in linear space, forward, resetting to zeros from a given initial carry;
    in log space, reverse, starting from and resetting to a learned state."""
    xs, mask, resets = inputs(1)
    reverse = learned
    for name, maker in MAKERS.items():
        # The associative scan explicitly: "auto" picks the sequential one on CPU.
        cell = maker(H, log_space=log_space, method="associative")
        if learned:
            cell = cells.learnable_initial_state(
                cell, carry_init=jax.nn.initializers.normal(1.0)
            )
        assert cell.linear is not None
        params = random_params(cell, IN, 0, scale=1.0)
        if learned:
            initial = None
            start = reset_to = np.broadcast_to(params["initial_carry"], (B, H))
        else:
            initial = np.random.default_rng(2).normal(size=(B, H)).astype(np.float32)
            start, reset_to = initial, np.zeros((B, H))

        # Eager calls share the library's jitted scan between the two cells
        # (the other tests run the parallel path under an outer jit).
        parallel, sequential = both_paths(cell, reverse=reverse)
        final, ys = parallel(params, xs, mask, resets, initial)
        seq_final, seq_ys = sequential(params, xs, mask, resets, initial)
        inner = params["cell"] if learned else params
        want_final, want_ys = numpy_rnn(
            name, inner, xs, mask, resets, start, reset_to, log_space, reverse
        )
        for got in (final, seq_final):
            np.testing.assert_allclose(got, want_final, rtol=1e-5, atol=1e-5)
        for got in (ys, seq_ys):
            np.testing.assert_allclose(got, want_ys, rtol=1e-5, atol=1e-5)
        assert final.dtype == ys.dtype == jnp.float32
        np.testing.assert_array_equal(ys[:, 3], 0.0)  # the row with no valid step


def test_gradients_equal_between_paths_and_ignore_padded_inputs():
    """minLSTM in log space (the scan with its own JVP rule) against autodiff
    of the sequential path; then NaN at padded inputs changes nothing."""
    cell = cells.learnable_initial_state(
        cells.min_lstm(H, log_space=True), carry_init=jax.nn.initializers.normal(1.0)
    )
    assert cell.linear is not None and cell.linear.log_coefficients is not None
    params = random_params(cell, IN, 3, scale=1.0)
    xs, mask, resets = inputs(4)
    initial = np.random.default_rng(5).normal(size=(B, H)).astype(np.float32)
    weights = np.random.default_rng(6).normal(size=(T, B, H)).astype(np.float32)

    def parallel(params, xs, initial):
        return both_paths(cell, reverse=False)[0](params, xs, mask, resets, initial)

    def sequential(params, xs, initial):
        return both_paths(cell, reverse=False)[1](params, xs, mask, resets, initial)

    def loss(path):
        def value(params, xs, initial):
            final, ys = path(params, xs, initial)
            return jnp.sum(ys * weights) + jnp.sum(final**2)

        return jax.jit(jax.value_and_grad(value, argnums=(0, 1, 2)))

    parallel_loss = loss(parallel)
    value, grads = parallel_loss(params, xs, initial)
    want_value, want_grads = loss(sequential)(params, xs, initial)
    np.testing.assert_allclose(value, want_value, rtol=1e-5)
    for got, want in zip(
        jax.tree.leaves(grads), jax.tree.leaves(want_grads), strict=True
    ):
        assert np.any(np.asarray(want) != 0)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)

    dirty = np.where(mask[..., None], xs, np.nan).astype(np.float32)
    dirty_value, dirty_grads = parallel_loss(params, dirty, initial)
    np.testing.assert_array_equal(dirty_value, value)
    chex.assert_trees_all_equal(dirty_grads, grads)
    grad_xs = np.asarray(grads[1])
    assert np.all(grad_xs[~mask] == 0.0) and np.any(grad_xs[mask] != 0.0)


@pytest.mark.parametrize("make", [cells.min_gru, cells.min_lstm])
def test_log_space_gradient_at_a_zero_preactivation_is_applys(make):
    """Zero inputs and the default zero bias put the candidate's
    pre-activation exactly at g's branch point: the log-space scan's
    gradient there is that of apply (g's ``x >= 0`` branch, slope 1)."""
    cell = make(H, log_space=True)
    params = cell.init(jax.random.key(1), IN)
    xs = np.zeros((T, B, IN), np.float32)
    mask = np.ones((T, B), bool)
    parallel, sequential = both_paths(cell, reverse=False)

    def loss(path):
        return lambda params: jnp.sum(path(params, xs, mask, None, None)[1])

    got = jax.grad(loss(parallel))(params)["bias"]
    want = jax.grad(loss(sequential))(params)["bias"]
    assert np.any(np.asarray(want) != 0)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_check_grads_float64(x64):
    """minGRU in log space, both modes: forward mode runs the scan's JVP rule,
    reverse mode its transpose; resets to a learned state, reverse."""
    cell = cells.learnable_initial_state(
        cells.min_gru(H, log_space=True, param_dtype=jnp.float64),
        carry_init=jax.nn.initializers.normal(1.0),
    )
    params = random_params(cell, IN, 7, scale=1.0, dtype=np.float64)
    xs, mask, resets = inputs(8, np.float64)
    # Fewer steps and rows (full, empty, holes with a reset): fewer scan
    # levels to compile for each mode.
    xs, mask, resets = xs[:3, :3], mask[:3, :3], resets[:3, :3]
    assert resets.any()
    initial = np.random.default_rng(9).normal(size=(3, H))

    @jax.jit
    def loss(params, xs, initial):
        final, ys = seqmask.rnn(
            cell,
            params,
            xs,
            mask=mask,
            resets=resets,
            initial_carry=initial,
            reverse=True,
            time_major=True,
        )
        return jnp.sum(jnp.sin(ys)) + jnp.sum(final**2)

    check_grads(loss, (params, xs, initial), order=1, modes=("fwd", "rev"))


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_padding_invariance(name):
    """A padded row (left padding, holes) equals the row alone, unpadded."""
    cell = MAKERS[name](H, log_space=True)
    params = random_params(cell, IN, 10, scale=1.0)
    xs, mask, _ = inputs(11)
    xs_bm, mask_bm = np.swapaxes(xs, 0, 1), mask.T
    final, ys = seqmask.rnn(cell, params, xs_bm, mask=mask_bm)
    for row in (1, 2):  # left padding, holes
        valid = mask_bm[row]
        alone_final, alone_ys = seqmask.rnn(cell, params, xs_bm[row, valid])
        np.testing.assert_allclose(final[row], alone_final, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(ys[row, valid], alone_ys, rtol=1e-6, atol=1e-6)


def test_long_sequence_log_space_is_finite():
    """T = 16384 with saturated gates: both cells, log space, stay finite and
    bounded by the candidates, and match a float64 NumPy loop."""
    steps, batch = 16384, 2
    rng = np.random.default_rng(15)
    xs = (4.0 * rng.normal(size=(steps, batch, IN))).astype(np.float32)
    mask = rng.random((steps, batch)) < 0.9
    results = {}
    for name, maker in MAKERS.items():
        cell = maker(H, log_space=True)
        params = random_params(cell, IN, 16, scale=1.0)

        # Eager: both cells share one compilation of the library's scan.
        final, ys = seqmask.rnn(cell, params, xs, mask=mask, time_major=True)
        assert np.all(np.isfinite(ys)) and np.all(np.isfinite(final))
        assert np.all(np.asarray(ys)[mask] > 0)  # g > 0 and h_0 = 0
        results[name] = (params, final, ys)
    # The reference loop for one cell is enough to pin the precision down.
    params, final, ys = results["min_lstm"]
    h = np.zeros((batch, H))
    kernel = np.asarray(params["input_kernel"], np.float64)
    bias = np.asarray(params["bias"], np.float64)
    want = np.zeros((steps, batch, H))
    for t in range(steps):
        p = xs[t] @ kernel + bias
        f, i = ref.sigmoid(p[:, :H]), ref.sigmoid(p[:, H : 2 * H])
        new = (f * h + i * g(p[:, 2 * H :])) / (f + i)
        h = np.where(mask[t][:, None], new, h)
        want[t] = np.where(mask[t][:, None], new, 0.0)
    np.testing.assert_allclose(ys, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(final, h, rtol=1e-4, atol=1e-5)


def test_layout_dtypes_and_one_step():
    cell = cells.min_lstm(H, param_dtype=jnp.float32)
    params = cell.init(jax.random.key(17), IN)
    assert params["input_kernel"].shape == (IN, 3 * H)
    np.testing.assert_array_equal(params["bias"], np.zeros(3 * H))
    assert cells.min_gru(H).init(jax.random.key(17), IN)["input_kernel"].shape == (
        IN,
        2 * H,
    )
    params = random_params(cell, IN, 18, scale=1.0)
    # One step on any batch shape (decoding) is the NumPy step.
    x = np.random.default_rng(19).normal(size=(2, 3, IN)).astype(np.float32)
    h = np.random.default_rng(20).normal(size=(2, 3, H)).astype(np.float32)
    new, y = cell.apply(params, h, x)
    np.testing.assert_array_equal(new, y)
    want = numpy_step("min_lstm", params, h[1, 2], x[1, 2], log_space=False)
    np.testing.assert_allclose(y[1, 2], want, rtol=1e-5, atol=1e-6)
    single_new, _ = cell.apply(params, h[1, 2], x[1, 2])
    np.testing.assert_allclose(single_new, new[1, 2], rtol=1e-6, atol=1e-7)
    # bfloat16 compute: bfloat16 outputs, float32 carry, close to float32.
    xs, mask, _ = inputs(21)
    f32_final, f32_ys = seqmask.rnn(cell, params, xs, mask=mask, time_major=True)
    cell16 = cells.min_lstm(H, dtype=jnp.bfloat16)
    final16, ys16 = seqmask.rnn(
        cell16, params, xs.astype(jnp.bfloat16), mask=mask, time_major=True
    )
    assert ys16.dtype == jnp.bfloat16 and final16.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(ys16, np.float32), f32_ys, atol=5e-2)
    np.testing.assert_allclose(final16, f32_final, atol=5e-2)


def test_errors():
    with pytest.raises(ValueError, match="min_gru: hidden_size must be a positive"):
        cells.min_gru(0)
    with pytest.raises(ValueError, match="min_lstm: method must be one of 'auto'"):
        cells.min_lstm(H, method="parallel")
    cell = cells.min_gru(H)
    params = cell.init(jax.random.key(0), IN)
    with pytest.raises(ValueError, match=r"inputs must be \[\.\.\., 3\]"):
        cell.apply(params, np.zeros((2, H), np.float32), np.ones((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"min_gru.apply: carry does not match"):
        cell.apply(params, np.zeros((3, H), np.float32), np.ones((2, IN), np.float32))
    with pytest.raises(
        ValueError, match=r"rnn: mask must have shape \(7, 2\) \(\[time"
    ):
        seqmask.rnn(
            cell,
            params,
            np.ones((T, 2, IN), np.float32),
            mask=np.ones((T, 3), bool),
            time_major=True,
        )
    with pytest.raises(ValueError, match=r"look like min_gru\(4\) parameters"):
        cells.min_gru(6).apply(params, np.zeros(6, np.float32), np.ones(IN, np.float32))
