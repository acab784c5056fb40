"""Carry threading: resets, detach, per-step carries and truncated BPTT.

References are independent of the code under test: NumPy ``where`` and closed
forms for resets, the NumPy reference loop for per-step carries, one full
pass for chunked forward values, and a hand-built ``jax.lax.scan`` with a
``stop_gradient`` at the chunk boundaries for truncated gradients.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import numpy_reference as ref
import optax
import pytest
from helpers import random_params

import seqmask
from seqmask import cells
from seqmask.carry import (
    detach,
    reset,
    rnn_with_carries,
    truncated_bptt_step,
    truncated_value_and_grad,
    zeros_like,
)
from seqmask.data import chunks

B, T, K, IN, H = 3, 11, 4, 3, 4


# A learnable initial state that is not zero, so that resetting to it differs
# from resetting to zeros.
LSTM = cells.learnable_initial_state(cells.lstm(H))
LSTM_PARAMS = random_params(LSTM, IN, 0)


# --- reset, detach, zeros_like ------------------------------------------------


def test_reset_matches_numpy_where_for_pytrees_and_batch_shapes():
    rng = np.random.default_rng(0)
    batch = (2, 3)
    carry = cells.LSTMCarry(
        *(rng.normal(size=(*batch, H)).astype(np.float32) for _ in range(2))
    )
    where = np.array([[True, False, True], [False, False, True]])
    learned = cells.LSTMCarry(
        *(rng.normal(size=(H,)).astype(np.float32) for _ in range(2))
    )
    batched = cells.LSTMCarry(
        *(rng.normal(size=(*batch, H)).astype(np.float32) for _ in range(2))
    )
    for to in (learned, batched):
        got = reset(carry, where, to)
        assert isinstance(got, cells.LSTMCarry)
        for got_leaf, leaf, to_leaf in zip(got, carry, to, strict=True):
            want = np.where(
                where[..., None], np.broadcast_to(to_leaf, leaf.shape), leaf
            )
            np.testing.assert_array_equal(got_leaf, want)
    zeroed = reset(carry, where)
    for got_leaf, leaf in zip(zeroed, carry, strict=True):
        np.testing.assert_array_equal(got_leaf, np.where(where[..., None], 0.0, leaf))
    # under jit, with no feature axis
    h = rng.normal(size=(4,)).astype(np.float32)
    row_where = np.array([True, False, False, True])
    got = jax.jit(reset)(h, row_where, np.float32(7.0))
    np.testing.assert_array_equal(got, np.where(row_where, 7.0, h))


def test_reset_gradients_flow_only_through_the_selected_side():
    """d/d carry is the weight at rows kept, 0 at rows reset; d/d to (an
    unbatched [H] state) sums the weights of the rows reset to it."""
    rng = np.random.default_rng(1)
    carry = rng.normal(size=(5, H)).astype(np.float32)
    to = rng.normal(size=(H,)).astype(np.float32)
    weights = rng.normal(size=(5, H)).astype(np.float32)
    where = np.array([True, False, True, True, False])

    def loss(carry, to):
        return jnp.sum(reset(carry, where, to) * weights)

    d_carry, d_to = jax.grad(loss, argnums=(0, 1))(carry, to)
    np.testing.assert_array_equal(d_carry, np.where(where[:, None], 0.0, weights))
    np.testing.assert_allclose(d_to, weights[where].sum(0), rtol=1e-6)


def test_reset_rejects_bad_input():
    h = jnp.zeros((3, H))
    with pytest.raises(TypeError, match="where must be a boolean"):
        reset(h, jnp.array([1, 0, 1]), jnp.zeros(H))
    with pytest.raises(
        ValueError, match=r"where of shape \(2,\), and carry has shape \(3, 4\)"
    ):
        reset(h, jnp.array([True, False]), jnp.zeros(H))
    with pytest.raises(
        ValueError, match=r"reset_to must have the structure of .*carry"
    ):
        reset(h, jnp.ones(3, bool), (jnp.zeros(H), jnp.zeros(H)))
    with pytest.raises(
        ValueError, match=r"reset_to: got float32\[5\], expected float32"
    ):
        reset(h, jnp.ones(3, bool), jnp.zeros(H + 1))
    with pytest.raises(TypeError, match=r"reset_to: got int32\[4\]"):
        reset(h, jnp.ones(3, bool), jnp.zeros(H, jnp.int32))
    # The keyword is reset_to, as everywhere else.
    got = reset(h, jnp.array([True, False, False]), reset_to=jnp.ones(H))
    np.testing.assert_array_equal(got, np.array([[1.0] * H, [0.0] * H, [0.0] * H]))


def test_detach_stops_gradient_and_zeros_like_keeps_structure():
    carry = cells.LSTMCarry(h=jnp.arange(3.0), c=jnp.arange(3.0) + 1)

    def loss(carry):
        kept = detach(carry)
        return jnp.sum(kept.h * carry.c) + jnp.sum(kept.c**2)

    grad = jax.grad(loss)(carry)
    np.testing.assert_array_equal(grad.h, 0.0)  # only reached through detach
    np.testing.assert_array_equal(grad.c, carry.h)  # d(h_detached * c)/dc
    zeros = zeros_like(carry)
    assert isinstance(zeros, cells.LSTMCarry)
    for leaf, like in zip(zeros, carry, strict=True):
        assert leaf.dtype == like.dtype
        np.testing.assert_array_equal(leaf, np.zeros(like.shape))


# --- per-step carries -----------------------------------------------------------


def test_rnn_with_carries_matches_numpy_loop():
    """Outputs, per-step carries (zero at padded steps) and the final carry
    against the NumPy reference loop, with holes, resets to a learned state
    and an explicit initial carry."""
    rng = np.random.default_rng(2)
    steps = 7
    xs = rng.normal(size=(B, steps, IN)).astype(np.float32)
    mask = rng.random((B, steps)) < 0.7
    resets = rng.random((B, steps)) < 0.3
    initial = cells.LSTMCarry(
        *(rng.normal(size=(B, H)).astype(np.float32) for _ in range(2))
    )
    params = jax.tree.map(np.asarray, LSTM_PARAMS)
    final, ys, carries = rnn_with_carries(
        LSTM, params, xs, mask=mask, resets=resets, initial_carry=initial
    )

    def step(carry, x):
        (h, c), y = ref.lstm_step(params["cell"], carry, x[0])
        return [h, c], [y, h, c]

    want_final, (want_ys, want_h, want_c) = ref.masked_scan(
        step,
        list(initial),
        [np.moveaxis(xs, 1, 0)],
        mask.T,
        resets=resets.T,
        reset_to=list(params["initial_carry"]),
    )
    tol = {"rtol": 1e-5, "atol": 1e-6}
    np.testing.assert_allclose(ys, np.moveaxis(want_ys, 0, 1), **tol)
    np.testing.assert_allclose(carries.h, np.moveaxis(want_h, 0, 1), **tol)
    np.testing.assert_allclose(carries.c, np.moveaxis(want_c, 0, 1), **tol)
    np.testing.assert_allclose(final.h, want_final[0], **tol)
    np.testing.assert_allclose(final.c, want_final[1], **tol)
    # and exactly what rnn gives
    rnn_final, rnn_ys = seqmask.rnn(
        LSTM, params, xs, mask=mask, resets=resets, initial_carry=initial
    )
    np.testing.assert_array_equal(ys, rnn_ys)
    chex.assert_trees_all_equal(final, rnn_final)


# --- truncated BPTT ---------------------------------------------------------------


def chunk_loss(params, carry, chunk):
    """A loss over every valid output of the chunk; ys as aux."""
    new_carry, ys = seqmask.rnn(
        LSTM,
        params,
        chunk.xs["x"],
        mask=chunk.mask,
        initial_carry=carry,
        resets=chunk.resets,
    )
    loss = jnp.sum(jnp.sin(ys) * chunk.xs["w"])
    return loss, (new_carry, ys)


TRACES = {"value_and_grad": 0, "train_step": 0}


def counted(name, fn):
    def wrapped(*args):
        TRACES[name] += 1
        return fn(*args)

    return wrapped


CHUNK_VALUE_AND_GRAD = jax.jit(
    truncated_value_and_grad(counted("value_and_grad", chunk_loss), has_aux=True)
)


def long_batch(seed):
    rng = np.random.default_rng(seed)
    xs = rng.normal(size=(B, T, IN)).astype(np.float32)
    weights = rng.normal(size=(B, T, H)).astype(np.float32)
    mask = rng.random((B, T)) < 0.8
    resets = np.zeros((B, T), bool)
    resets[0, 5] = resets[1, [2, 8]] = resets[2, 0] = True
    initial = cells.LSTMCarry(
        *(rng.normal(size=(B, H)).astype(np.float32) for _ in range(2))
    )
    return xs, weights, mask, resets, initial


def run_chunks(params, batch):
    xs, weights, mask, resets, carry = batch
    losses, grads, outputs = [], [], []
    for chunk in chunks({"x": xs, "w": weights}, K, mask=mask, resets=resets):
        (loss, (carry, ys)), grad = CHUNK_VALUE_AND_GRAD(params, carry, chunk)
        losses.append(loss)
        grads.append(grad)
        outputs.append(ys)
    return losses, grads, np.concatenate(outputs, axis=1), carry


def test_chunked_forward_equals_one_full_pass_and_compiles_once():
    batch = long_batch(3)
    xs, weights, mask, resets, initial = batch
    losses, _, ys, final = run_chunks(LSTM_PARAMS, batch)
    assert len(losses) == 3  # 4 + 4 + 3 steps: the last chunk is padded
    # Every test here calls it with the same shapes: one trace in all.
    assert TRACES["value_and_grad"] == 1
    want_final, want_ys = seqmask.rnn(
        LSTM, LSTM_PARAMS, xs, mask=mask, resets=resets, initial_carry=initial
    )
    np.testing.assert_allclose(ys[:, :T], want_ys, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(ys[:, T:], 0.0)
    chex.assert_trees_all_close(final, want_final, rtol=1e-6, atol=1e-6)
    want_total = jnp.sum(jnp.sin(want_ys) * weights)
    np.testing.assert_allclose(sum(losses), want_total, rtol=1e-5, atol=1e-5)


def full_pass_loss(params, batch, chunk_index, truncate):
    """Chunk ``chunk_index``'s loss, computed in one pass over the whole
    sequence with a stop_gradient on the carry at every chunk boundary (a
    plain lax.scan with the reset written out, not masked_scan)."""
    xs, weights, mask, resets, initial = batch
    learned = params["initial_carry"]
    steps = jnp.arange(T)

    def step(carry, inputs):
        x, m, r, t = inputs
        boundary = (t % K == 0) & truncate
        carry = jax.tree.map(
            lambda c: jnp.where(boundary, jax.lax.stop_gradient(c), c), carry
        )
        carry = jax.tree.map(
            lambda c, s: jnp.where(r[:, None], jnp.broadcast_to(s, c.shape), c),
            carry,
            learned,
        )
        x = jnp.where(m[:, None], x, 0.0)
        new_carry, y = LSTM.apply(params, carry, x)
        carry = jax.tree.map(lambda n, c: jnp.where(m[:, None], n, c), new_carry, carry)
        return carry, jnp.where(m[:, None], y, 0.0)

    _, ys = jax.lax.scan(
        step,
        initial,
        (np.moveaxis(xs, 1, 0), mask.T, resets.T, steps),
    )
    ys = jnp.moveaxis(ys, 0, 1)
    in_chunk = (steps >= chunk_index * K) & (steps < (chunk_index + 1) * K)
    w = jnp.where(in_chunk[None, :, None], weights, 0.0)
    return jnp.sum(jnp.sin(ys) * w)


def test_chunk_gradient_equals_full_bptt_truncated_at_the_chunk_start():
    batch = long_batch(4)
    _, grads, _, _ = run_chunks(LSTM_PARAMS, batch)
    assert TRACES["value_and_grad"] == 1
    reference = jax.jit(jax.grad(full_pass_loss))
    for index, grad in enumerate(grads):
        want = reference(LSTM_PARAMS, batch, index, True)
        chex.assert_trees_all_close(grad, want, rtol=1e-5, atol=1e-6)
        if index > 0:
            # the truncation is what makes them agree
            untruncated = reference(LSTM_PARAMS, batch, index, False)
            difference = max(
                float(jnp.max(jnp.abs(a - b)))
                for a, b in zip(
                    jax.tree.leaves(grad), jax.tree.leaves(untruncated), strict=True
                )
            )
            assert difference > 1e-3


def test_learned_initial_state_gets_gradient_only_from_rows_that_reset():
    """Rows given an explicit carry that never reset send exactly zero
    gradient to the learned state; a row that resets at step r sends what its
    steps r.. send when run alone from the learned state."""
    cell = cells.learnable_initial_state(cells.gru(H))
    params = random_params(cell, IN, 5)
    rng = np.random.default_rng(6)
    rows, steps = 4, 6
    xs = rng.normal(size=(rows, steps, IN)).astype(np.float32)
    weights = rng.normal(size=(rows, steps, H)).astype(np.float32)
    explicit = rng.normal(size=(rows, H)).astype(np.float32)
    reset_at = {1: 2, 2: 0}  # rows 0 and 3 never reset
    resets = np.zeros((rows, steps), bool)
    for row, start in reset_at.items():
        resets[row, start] = True

    @jax.jit
    def learned_state_grad(params, xs, weights, mask, resets, from_learned):
        # from_learned: start from the learned state (inside the gradient)
        # instead of the explicit carry; one trace serves both cases.
        def loss(params):
            learned = cell.initial_carry(params, (rows,))
            initial = jnp.where(from_learned, learned, explicit)
            _, ys = seqmask.rnn(
                cell, params, xs, mask=mask, initial_carry=initial, resets=resets
            )
            return jnp.sum(jnp.sin(ys) * weights)

        return jax.grad(loss)(params)["initial_carry"]

    everywhere = np.ones((rows, steps), bool)
    for row in range(rows):
        only_row = np.where(np.arange(rows)[:, None, None] == row, weights, 0.0)
        got = learned_state_grad(
            params, xs, only_row.astype(np.float32), everywhere, resets, False
        )
        if row not in reset_at:
            np.testing.assert_array_equal(got, 0.0)
            continue
        # The row alone from its reset on, from the learned state: its steps
        # start.. moved to the front of row 0, every other step masked out.
        start = reset_at[row]
        shifted = np.roll(np.arange(steps), -start)
        alone_mask = np.zeros((rows, steps), bool)
        alone_mask[0, : steps - start] = True
        alone_xs = np.zeros_like(xs)
        alone_xs[0] = xs[row, shifted]
        alone_weights = np.zeros_like(weights)
        alone_weights[0] = np.where(alone_mask[0, :, None], weights[row, shifted], 0)
        want = learned_state_grad(
            params, alone_xs, alone_weights, alone_mask, np.zeros_like(resets), True
        )
        assert np.any(np.asarray(want) != 0.0)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_truncated_bptt_step_compiles_once_and_matches_manual_updates():
    optimizer = optax.sgd(0.05, momentum=0.9)

    @jax.jit
    def manual_update(grads, state, params):
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    step = truncated_bptt_step(
        counted("train_step", chunk_loss), optimizer, has_aux=True
    )
    batch = long_batch(7)
    xs, weights, mask, resets, initial = batch
    params, state, carry = LSTM_PARAMS, optimizer.init(LSTM_PARAMS), initial
    manual_params, manual_state, manual_carry = params, state, carry
    for chunk in chunks({"x": xs, "w": weights}, K, mask=mask, resets=resets):
        params, state, carry, loss, _ = step(params, state, carry, chunk)
        (manual_loss, (manual_carry, _)), grads = CHUNK_VALUE_AND_GRAD(
            manual_params, manual_carry, chunk
        )
        manual_params, manual_state = manual_update(grads, manual_state, manual_params)
        np.testing.assert_allclose(loss, manual_loss, rtol=1e-6)
    assert TRACES["train_step"] == 1
    chex.assert_trees_all_close(params, manual_params, rtol=1e-6, atol=1e-7)
    chex.assert_trees_all_close(carry, manual_carry, rtol=1e-6, atol=1e-7)


def test_truncated_bptt_errors():
    with pytest.raises(TypeError, match="optimizer must have optax's update"):
        truncated_bptt_step(chunk_loss, "adam")
    with pytest.raises(TypeError, match="truncated_value_and_grad: loss_fn must be a"):
        truncated_value_and_grad(3)
    bad = truncated_value_and_grad(lambda w, h, x: (w * h, h))
    with pytest.raises(ValueError, match=r"scalar loss first; got shape \(2,\)"):
        bad(1.0, jnp.ones(2), None)
    with pytest.raises(TypeError, match="cell must be a seqmask.cells.Cell"):
        rnn_with_carries("lstm", {}, jnp.ones((1, 2, 3)))
