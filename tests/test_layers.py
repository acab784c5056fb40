"""Layers: padding invariance, bidirectional and stacked against compositions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import mask_patterns, random_params
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import seqmask
from seqmask import cells

B, T, IN, H = 3, 6, 3, 4


def row_loss(carry, ys, weights):
    """A loss that touches every output and the final carry."""
    return jnp.sum(jnp.sin(ys) * weights) + sum(
        jnp.sum(leaf**2) for leaf in jax.tree.leaves(carry)
    )


CELLS = {"lstm": cells.lstm(H), "gru": cells.gru(H)}
PARAMS = {name: random_params(cell, IN, seed=0) for name, cell in CELLS.items()}


def _batched(name):
    cell = CELLS[name]

    def loss(params, xs, mask, weights):
        carry, ys = seqmask.rnn(cell, params, xs, mask=mask)
        return row_loss(carry, ys, weights), (carry, ys)

    return jax.jit(jax.value_and_grad(loss, has_aux=True))


def _alone(name):
    cell = CELLS[name]

    def loss(params, xs, weights):
        carry, ys = seqmask.rnn(cell, params, xs)
        return row_loss(carry, ys, weights), (carry, ys)

    return jax.jit(jax.value_and_grad(loss, has_aux=True))


BATCHED = {name: _batched(name) for name in CELLS}
ALONE = {name: _alone(name) for name in CELLS}


@settings(max_examples=15, deadline=None)
@given(
    name=st.sampled_from(sorted(CELLS)),
    mask=hnp.arrays(np.bool_, (B, T)),
    seed=st.integers(0, 2**16),
)
def test_padding_invariance(name, mask, seed):
    """Each row of a padded batch gives what it gives alone, unpadded: outputs
    at valid steps, final carry and parameter gradients (summed over rows)."""
    rng = np.random.default_rng(seed)
    xs = rng.normal(size=(B, T, IN)).astype(np.float32)
    xs_garbage = np.where(mask[..., None], xs, 1e6).astype(np.float32)
    weights = rng.normal(size=(B, T, H)).astype(np.float32)
    params = PARAMS[name]
    (_, (carry, ys)), grads = BATCHED[name](params, xs_garbage, mask, weights)
    grad_sum = jax.tree.map(jnp.zeros_like, grads)
    for b in range(B):
        valid = mask[b]
        (_, (row_carry, row_ys)), row_grads = ALONE[name](
            params, xs[b : b + 1, valid], weights[b : b + 1, valid]
        )
        np.testing.assert_allclose(ys[b, valid], row_ys[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(ys[b, ~valid], 0.0)
        for got, want in zip(
            jax.tree.leaves(carry), jax.tree.leaves(row_carry), strict=True
        ):
            np.testing.assert_allclose(got[b], want[0], rtol=1e-5, atol=1e-6)
        grad_sum = jax.tree.map(jnp.add, grad_sum, row_grads)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
        grads,
        grad_sum,
    )


def test_lengths_mask_layouts_and_batch_dims():
    cell = CELLS["lstm"]
    params = PARAMS["lstm"]
    rng = np.random.default_rng(1)
    xs = rng.normal(size=(2, 3, T, IN)).astype(np.float32)
    lengths = rng.integers(0, T + 1, size=(2, 3))
    mask = np.arange(T) < lengths[..., None]
    by_lengths = seqmask.rnn(cell, params, xs, lengths=lengths)
    by_mask = seqmask.rnn(cell, params, xs, mask=mask)
    jax.tree.map(np.testing.assert_array_equal, by_lengths, by_mask)
    flat = seqmask.rnn(cell, params, xs.reshape(6, T, IN), mask=mask.reshape(6, T))
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(
            np.reshape(a, np.shape(b)), b, rtol=1e-6, atol=1e-7
        ),
        by_mask,
        flat,
    )
    carry_tm, ys_tm = seqmask.rnn(
        cell,
        params,
        np.moveaxis(xs, 2, 0),
        mask=np.moveaxis(mask, 2, 0),
        time_major=True,
    )
    np.testing.assert_allclose(np.moveaxis(ys_tm, 0, 2), by_mask[1], rtol=1e-6)
    # no batch axes at all: one sequence [T, IN]
    carry_one, ys_one = seqmask.rnn(cell, params, xs[1, 2], mask=mask[1, 2])
    np.testing.assert_allclose(ys_one, by_mask[1][1, 2], rtol=1e-6, atol=1e-7)


def test_zero_length_rows_return_initial_carry_exactly():
    cell = CELLS["lstm"]
    params = PARAMS["lstm"]
    rng = np.random.default_rng(2)
    initial = cells.LSTMCarry(
        *(rng.normal(size=(B, H)).astype(np.float32) for _ in range(2))
    )
    xs = rng.normal(size=(B, T, IN)).astype(np.float32)
    lengths = np.array([0, 3, 0])
    for reverse in (False, True):
        carry, ys = seqmask.rnn(
            cell, params, xs, lengths=lengths, initial_carry=initial, reverse=reverse
        )
        for got, want in zip(carry, initial, strict=True):
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(got[2], want[2])
            assert not np.array_equal(got[1], want[1])


@pytest.mark.parametrize("name", sorted(CELLS))
@pytest.mark.parametrize("merge", ["concat", "sum"])
def test_bidirectional_equals_compacted_rows(name, merge):
    """Over left padding and holes, each row equals a forward run and a
    backward (flipped) run over that row's compacted valid steps."""
    cell = CELLS[name]
    params = {
        "forward": PARAMS[name],
        "backward": random_params(cell, IN, seed=9),
    }
    rng = np.random.default_rng(3)
    mask = np.array(
        [
            [False, False, True, True, True, True],  # left padding
            [True, False, True, False, False, True],  # holes
            [False, False, False, False, False, False],  # empty
        ]
    )
    xs = rng.normal(size=(B, T, IN)).astype(np.float32)
    (fwd_carry, bwd_carry), ys = jax.jit(
        lambda p, x, m: seqmask.bidirectional(cell, p, x, mask=m, merge=merge)
    )(params, xs, mask)
    for b in range(B):
        valid = xs[b : b + 1, mask[b]]
        f_carry, f_ys = seqmask.rnn(cell, params["forward"], valid)
        b_carry, b_ys = seqmask.rnn(cell, params["backward"], valid[:, ::-1])
        b_ys = b_ys[:, ::-1]
        want = np.concatenate([f_ys, b_ys], -1) if merge == "concat" else f_ys + b_ys
        np.testing.assert_allclose(ys[b, mask[b]], want[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(ys[b, ~mask[b]], 0.0)
        for got, want_leaf in zip(
            jax.tree.leaves(fwd_carry), jax.tree.leaves(f_carry), strict=True
        ):
            np.testing.assert_allclose(got[b], want_leaf[0], rtol=1e-5, atol=1e-6)
        for got, want_leaf in zip(
            jax.tree.leaves(bwd_carry), jax.tree.leaves(b_carry), strict=True
        ):
            np.testing.assert_allclose(got[b], want_leaf[0], rtol=1e-5, atol=1e-6)


def test_stacked_equals_composition_with_residual_and_dropout():
    cell = cells.gru(H)
    params = seqmask.init_stacked(jax.random.key(4), cell, IN, num_layers=3)
    rng = np.random.default_rng(5)
    xs = rng.normal(size=(B, T, IN)).astype(np.float32)
    lengths = np.array([6, 2, 0])
    key = jax.random.key(6)
    rate = 0.3
    carries, ys = seqmask.stacked(
        cell,
        params,
        xs,
        lengths=lengths,
        residual=True,
        dropout_rate=rate,
        dropout_key=key,
    )
    keys = jax.random.split(key, 3)
    hidden = xs
    for index, layer in enumerate(params):
        carry, out = seqmask.rnn(cell, layer, hidden, lengths=lengths)
        np.testing.assert_allclose(carries[index], carry, rtol=1e-5, atol=1e-6)
        if index > 0:
            out = out + hidden
        if index < 2:
            keep = np.asarray(jax.random.bernoulli(keys[index], 1 - rate, out.shape))
            out = np.where(keep, np.asarray(out) / (1 - rate), 0.0).astype(np.float32)
        hidden = out
    np.testing.assert_allclose(ys, hidden, rtol=1e-5, atol=1e-6)
    # without a key there is no dropout
    _, eval_ys = seqmask.stacked(cell, params, xs, lengths=lengths, dropout_rate=rate)
    _, plain_ys = seqmask.stacked(cell, params, xs, lengths=lengths)
    np.testing.assert_array_equal(eval_ys, plain_ys)


def test_stacked_bidirectional_threads_carries():
    cell = cells.lstm(H)
    params = seqmask.init_stacked(
        jax.random.key(7), cell, IN, num_layers=2, bidirectional=True
    )
    rng = np.random.default_rng(8)
    xs = rng.normal(size=(B, T, IN)).astype(np.float32)
    mask = mask_patterns(rng, (B + 3, T))[:B]
    carries, ys = seqmask.stacked(cell, params, xs, mask=mask, bidirectional=True)
    (f0, b0), out0 = seqmask.bidirectional(cell, params[0], xs, mask=mask)
    (f1, b1), out1 = seqmask.bidirectional(cell, params[1], out0, mask=mask)
    np.testing.assert_allclose(ys, out1, rtol=1e-5, atol=1e-6)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
        carries,
        [(f0, b0), (f1, b1)],
    )
    # passing the carries back in continues from them
    again, _ = seqmask.stacked(
        cell, params, xs, mask=mask, bidirectional=True, initial_carries=carries
    )
    (f0_again, _), _ = seqmask.bidirectional(
        cell, params[0], xs, mask=mask, initial_carry=carries[0]
    )
    np.testing.assert_allclose(again[0][0].h, f0_again.h, rtol=1e-6)


def test_initial_carry_errors_name_the_leaf():
    cell = CELLS["lstm"]
    params = PARAMS["lstm"]
    xs = np.zeros((B, T, IN), np.float32)
    bad = cells.LSTMCarry(
        h=np.zeros((B, H), np.float32), c=np.zeros((B, H + 1), np.float32)
    )
    with pytest.raises(ValueError, match=r"initial_carry\.c: got float32\[3, 5\]"):
        seqmask.rnn(cell, params, xs, initial_carry=bad)
    with pytest.raises(
        ValueError,
        match=r"initial_carry must have the structure of .*\(the cell's carry",
    ):
        seqmask.rnn(cell, params, xs, initial_carry=np.zeros((B, H), np.float32))
    with pytest.raises(ValueError, match="give mask or lengths, not both"):
        seqmask.rnn(
            cell, params, xs, mask=np.ones((B, T), bool), lengths=np.ones(B, int)
        )
    with pytest.raises(
        ValueError, match=r"rnn: mask must have shape \(3, 6\) \(\[\*batch"
    ):
        seqmask.rnn(cell, params, xs, mask=np.ones((B, T + 1), bool))
    with pytest.raises(TypeError, match="rnn: resets must be a boolean array"):
        seqmask.rnn(cell, params, xs, resets=np.ones((B, T), np.int32))
    with pytest.raises(TypeError, match="must be a seqmask.cells.Cell"):
        seqmask.rnn(object(), params, xs)
    with pytest.raises(ValueError, match="dict with keys 'forward' and 'backward'"):
        seqmask.bidirectional(cell, params, xs)
    # a learned [H] state broadcasts over the batch
    carry, _ = seqmask.rnn(
        cell,
        params,
        xs,
        lengths=np.zeros(B, int),
        initial_carry=cells.LSTMCarry(h=jnp.ones(H), c=jnp.zeros(H)),
    )
    np.testing.assert_array_equal(carry.h, np.ones((B, H)))


def test_compile_size_does_not_grow_with_time():
    cell = CELLS["lstm"]

    def lines(steps):
        xs = jax.ShapeDtypeStruct((4, steps, IN), jnp.float32)
        lengths = jax.ShapeDtypeStruct((4,), jnp.int32)

        def fn(params, xs, lengths):
            return seqmask.rnn(cell, params, xs, lengths=lengths)

        text = jax.jit(fn).lower(PARAMS["lstm"], xs, lengths).as_text()
        return len(text.splitlines())

    assert lines(16) == lines(1024)


@pytest.mark.parametrize("reverse", [False, True])
def test_remat_changes_neither_values_nor_gradients(reverse):
    """Per-step and chunked checkpointing (chunks that do not divide T) give
    the values and gradients of the plain scan, with resets and a learned
    initial state."""
    cell = cells.learnable_initial_state(
        cells.lstm(H), carry_init=jax.nn.initializers.normal()
    )
    params = cell.init(jax.random.key(11), IN)
    rng = np.random.default_rng(12)
    xs = rng.normal(size=(B, 11, IN)).astype(np.float32)
    mask = rng.random((B, 11)) < 0.7
    resets = rng.random((B, 11)) < 0.2

    def loss(params, remat):
        carry, ys = seqmask.rnn(
            cell, params, xs, mask=mask, resets=resets, reverse=reverse, remat=remat
        )
        return jnp.sum(ys**2) + jnp.sum(carry.c), (carry, ys)

    (_, want), want_grads = jax.value_and_grad(loss, has_aux=True)(params, False)
    for remat in (True, 3, 11, 16):
        (_, got), grads = jax.value_and_grad(loss, has_aux=True)(params, remat)
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
            (got, grads),
            (want, want_grads),
        )
    with pytest.raises(ValueError, match="rnn: remat must be a positive int"):
        seqmask.rnn(cell, params, xs, remat=0)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_hoisted_projection_gives_the_same_values_and_gradients(name):
    """The input projection run once before the scan or inside every step:
    the same outputs, carries and gradients (up to float rounding)."""
    cell = CELLS[name]
    rng = np.random.default_rng(13)
    xs = rng.normal(size=(B, T, IN)).astype(np.float32)
    mask = mask_patterns(rng, (B + 3, T))[:B]
    xs[~mask] = np.nan

    def loss(params, hoist):
        carry, ys = seqmask.rnn(cell, params, xs, mask=mask, hoist=hoist)
        return row_loss(carry, ys, 1.0), (carry, ys)

    results = {
        hoist: jax.jit(jax.value_and_grad(loss, has_aux=True), static_argnums=1)(
            PARAMS[name], hoist
        )
        for hoist in (False, True)
    }
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
        results[False],
        results[True],
    )
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(results[True]))


@pytest.mark.parametrize("merge", seqmask.layers.MERGES)
def test_every_merge_combines_the_two_directions(merge):
    """Each value of MERGES: the concatenation, the sum, or the pair of the
    forward run and the backward run over the same mask."""
    cell = CELLS["gru"]
    params = {
        "forward": PARAMS["gru"],
        "backward": random_params(cell, IN, seed=3),
    }
    rng = np.random.default_rng(21)
    xs = rng.normal(size=(B, T, IN)).astype(np.float32)
    mask = mask_patterns(rng, (B + 3, T))[:B]
    _, ys = seqmask.bidirectional(cell, params, xs, mask=mask, merge=merge)
    _, fwd = seqmask.rnn(cell, params["forward"], xs, mask=mask)
    _, bwd = seqmask.rnn(cell, params["backward"], xs, mask=mask, reverse=True)
    want = {"concat": np.concatenate([fwd, bwd], -1), "sum": fwd + bwd}
    if merge == "none":
        np.testing.assert_allclose(ys[0], fwd, rtol=1e-6)
        np.testing.assert_allclose(ys[1], bwd, rtol=1e-6)
    else:
        np.testing.assert_allclose(ys, want[merge], rtol=1e-6, atol=1e-7)


def _input_selects(fn, *args):
    """The selects over a whole ``[time, batch, features]`` input in ``fn``'s
    program, nested calls included."""

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            out = eqn.outvars[0].aval if eqn.outvars else None
            shape = tuple(getattr(out, "shape", ()))
            if eqn.primitive.name == "select_n" and shape == (T, B, IN):
                yield eqn
            for value in eqn.params.values():
                for sub in value if isinstance(value, (list, tuple)) else [value]:
                    inner = getattr(sub, "jaxpr", sub)
                    if hasattr(inner, "eqns"):
                        yield from walk(inner)

    return list(walk(jax.make_jaxpr(fn)(*args).jaxpr))


def test_padded_inputs_are_zeroed_once_per_layer_call():
    """One select zeroes the padded inputs, whatever the directions or the
    layers: bidirectional and stacked do not repeat it."""
    cell = CELLS["lstm"]
    xs = np.ones((B, T, IN), np.float32)
    lengths = np.array([T, 2, 0])
    bi = {"forward": PARAMS["lstm"], "backward": PARAMS["lstm"]}
    stack = seqmask.init_stacked(jax.random.key(0), cell, IN, num_layers=3)

    def one(xs):
        return seqmask.rnn(cell, PARAMS["lstm"], xs, lengths=lengths)

    def both(xs):
        return seqmask.bidirectional(cell, bi, xs, lengths=lengths)

    def three(xs):
        return seqmask.stacked(cell, stack, xs, lengths=lengths)

    for fn in (one, both, three):
        assert len(_input_selects(fn, xs)) == 1, fn.__name__


def test_a_declared_linear_recurrence_runs_as_one_scan():
    """A user cell that declares ``h = a * h + b`` (a decaying average with a
    learned rate) gives through rnn the values and gradients of the masked
    scan over its one-step apply, with resets and any mask."""

    def init(key, input_size):
        return {"w": jax.random.normal(key, (input_size, H)), "rate": jnp.zeros(H)}

    def project(params, xs):
        return xs @ params["w"]

    def coefficients(params, projected):
        a = jnp.broadcast_to(jax.nn.sigmoid(params["rate"]), projected.shape)
        return a, (1.0 - a) * projected

    def apply_projected(params, h, projected):
        a, b = coefficients(params, projected)
        h = a * h + b
        return h, h

    cell = cells.Cell(
        init=init,
        initial_carry=lambda params, batch_shape=(): jnp.zeros((*batch_shape, H)),
        apply=lambda params, h, x: apply_projected(params, h, project(params, x)),
        project_inputs=project,
        apply_projected=apply_projected,
        linear=cells.LinearRecurrence(coefficients, method="associative"),
        name="average",
        hidden_size=H,
    )
    params = cell.init(jax.random.key(22), IN)
    rng = np.random.default_rng(23)
    xs = rng.normal(size=(B, T, IN)).astype(np.float32)
    mask = mask_patterns(rng, (B + 3, T))[:B]
    resets = rng.random((B, T)) < 0.3

    def loss(params, linear):
        used = cell if linear else cell._replace(linear=None)
        carry, ys = seqmask.rnn(used, params, xs, mask=mask, resets=resets)
        return jnp.sum(jnp.sin(ys)) + jnp.sum(carry**2)

    value, grads = jax.value_and_grad(loss)(params, True)
    want_value, want_grads = jax.value_and_grad(loss)(params, False)
    np.testing.assert_allclose(value, want_value, rtol=1e-5)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
        grads,
        want_grads,
    )
