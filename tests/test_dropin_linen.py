"""``seqmask.linen`` as a drop-in for ``flax.linen.RNN`` / ``Bidirectional``.

Against real Flax modules: the same variables (names and initial values),
and equal outputs, carries and gradients wherever Flax is right (outputs at
valid steps, carries of rows with at least one valid step). Against the
independent NumPy loop of ``numpy_reference`` where Flax is not: zero
outputs at padded steps, an empty row keeps its initial carry, several batch
axes, masks with holes and left padding. Shapes are tiny and each test
compiles one program, because the machine is shared.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import numpy_reference as ref
import orbax.checkpoint as ocp
import pytest
from flax_reference import carry_from_reference, carry_to_reference, to_reference

import seqmask
import seqmask.linen as slinen

B, T, IN, H = 3, 5, 2, 3
XS = np.random.default_rng(0).normal(size=(B, T, IN)).astype(np.float32)
LENGTHS = np.array([5, 2, 1])  # every row has a valid step: Flax is right
VALID = np.arange(T) < LENGTHS[:, None]
# Left padding, holes, an empty row: what seq_lengths cannot express.
MASK = np.array(
    [
        [False, False, True, True, True],
        [True, False, True, False, True],
        [False, False, False, False, False],
    ]
)
KEY = jax.random.key(0)
CELLS = {
    "LSTMCell": lambda: nn.LSTMCell(H),
    "OptimizedLSTMCell": lambda: nn.OptimizedLSTMCell(H),
    "GRUCell": lambda: nn.GRUCell(H),
    "SimpleCell": lambda: nn.SimpleCell(H),
    "MGUCell": lambda: nn.MGUCell(H),
}
WEIGHTS = np.random.default_rng(1).normal(size=(B, T, H)).astype(np.float32)


def loss(carry, ys):
    """Counts outputs at valid steps only (Flax's padded outputs are not
    meant to be used) and the carries."""
    valid = jnp.where(VALID[..., None], jnp.sin(ys) * WEIGHTS, 0.0)
    return jnp.sum(valid) + sum(jnp.sum(leaf**2) for leaf in jax.tree.leaves(carry))


def close(a, b, atol=1e-5):
    return jax.tree.all(
        jax.tree.map(lambda x, y: bool(np.allclose(x, y, atol=atol)), a, b)
    )


@pytest.mark.parametrize("name", CELLS)
def test_same_variables_outputs_carries_and_gradients_as_flax(name):
    theirs = nn.RNN(CELLS[name](), return_carry=True)
    ours = slinen.RNN(CELLS[name](), return_carry=True)
    variables = theirs.init(KEY, XS)
    # The one-line change keeps the variables: same names, same draws.
    assert jax.tree.all(jax.tree.map(np.array_equal, ours.init(KEY, XS), variables))

    @jax.jit
    def run(variables, xs):
        def value(module):
            def f(variables, xs):
                carry, ys = module.apply(variables, xs, seq_lengths=LENGTHS)
                return loss(carry, ys), (carry, ys)

            return jax.grad(f, argnums=(0, 1), has_aux=True)(variables, xs)

        return value(ours), value(theirs)

    (our_grads, (carry, ys)), (their_grads, (their_carry, their_ys)) = run(
        variables, XS
    )
    assert close(carry, their_carry)
    np.testing.assert_allclose(ys[VALID], their_ys[VALID], atol=1e-5)
    assert np.all(np.asarray(ys)[~VALID] == 0)
    assert not np.allclose(np.asarray(their_ys)[~VALID], 0)  # Flax's padding
    assert close(our_grads, their_grads)


@pytest.mark.parametrize(
    "options",
    [
        {"reverse": True, "keep_order": True},
        {"reverse": True},  # processing order, as Flax
        {"time_major": True},
        {"reverse": True, "time_major": True},
    ],
    ids=["reverse-keep-order", "reverse", "time-major", "reverse-time-major"],
)
def test_call_options_mean_what_they_mean_in_flax(options):
    theirs = nn.RNN(nn.GRUCell(H), return_carry=True)
    ours = slinen.RNN(nn.GRUCell(H), return_carry=True)
    variables = theirs.init(KEY, XS)
    time_major = options.get("time_major", False)
    xs = np.swapaxes(XS, 0, 1) if time_major else XS
    valid = VALID.T if time_major else VALID

    @jax.jit
    def run(variables):
        return tuple(
            m.apply(variables, xs, seq_lengths=LENGTHS, **options)
            for m in (ours, theirs)
        )

    (carry, ys), (their_carry, their_ys) = run(variables)
    np.testing.assert_allclose(carry, their_carry, atol=1e-5)
    np.testing.assert_allclose(ys[valid], their_ys[valid], atol=1e-5)
    assert np.all(np.asarray(ys)[~valid] == 0)


def test_bidirectional_same_variables_and_results_as_flax():
    def build(module, rnn):
        return module(rnn(nn.LSTMCell(H)), rnn(nn.GRUCell(H)), return_carry=True)

    theirs = build(nn.Bidirectional, nn.RNN)
    ours = build(slinen.Bidirectional, slinen.RNN)
    variables = theirs.init(KEY, XS)
    assert jax.tree.all(jax.tree.map(np.array_equal, ours.init(KEY, XS), variables))

    @jax.jit
    def run(variables):
        return tuple(
            m.apply(variables, XS, seq_lengths=LENGTHS) for m in (ours, theirs)
        )

    (carries, ys), (their_carries, their_ys) = run(variables)
    assert close(carries, their_carries)
    np.testing.assert_allclose(ys[VALID], their_ys[VALID], atol=1e-5)
    assert np.all(np.asarray(ys)[~VALID] == 0)


@pytest.mark.parametrize(
    "name", ["LSTMCell", "OptimizedLSTMCell", "GRUCell", "SimpleCell"]
)
def test_any_mask_equals_the_numpy_reference(name):
    """Where seq_lengths cannot say it (left padding, holes, an empty row),
    the drop-in takes a mask and follows the NumPy loop."""
    model = slinen.RNN(CELLS[name](), return_carry=True, keep_order=True)
    variables = model.init(KEY, XS)
    cell_name, params = to_reference(variables["params"]["cell"])
    rng = np.random.default_rng(2)
    start = tuple(
        rng.normal(size=(B, H)) for _ in range(2 if cell_name == "lstm" else 1)
    )
    initial = jax.tree.map(np.float32, carry_from_reference(cell_name, start))

    @jax.jit
    def run(variables):
        return [
            model.apply(variables, XS, mask=MASK, initial_carry=initial, reverse=r)
            for r in (False, True)
        ]

    for (carry, ys), reverse in zip(run(variables), (False, True), strict=True):
        final, want = ref.rnn(cell_name, params, XS, MASK, start, reverse=reverse)
        np.testing.assert_allclose(ys, want, atol=1e-5)
        for got, expected in zip(
            carry_to_reference(cell_name, carry), final, strict=True
        ):
            np.testing.assert_allclose(got, expected, atol=1e-5)


def test_where_flax_is_wrong_seqmask_follows_the_numpy_reference():
    """A row of length 0, several batch axes: Flax's carries are wrong there."""
    xs = np.random.default_rng(3).normal(size=(2, 2, T, IN)).astype(np.float32)
    lengths = np.array([[5, 0], [2, 3]])
    theirs = nn.RNN(nn.LSTMCell(H), return_carry=True)
    ours = slinen.RNN(nn.LSTMCell(H), return_carry=True)
    variables = theirs.init(KEY, xs)

    @jax.jit
    def run(variables):
        return tuple(
            m.apply(variables, xs, seq_lengths=lengths) for m in (ours, theirs)
        )

    ((c, h), ys), (their_carry, _) = run(variables)
    cell_name, params = to_reference(variables["params"]["cell"])
    mask = np.arange(T) < lengths[..., None]
    zeros = (np.zeros((4, H)), np.zeros((4, H)))
    final, want = ref.rnn(
        cell_name, params, xs.reshape(4, T, IN), mask.reshape(4, T), zeros
    )
    np.testing.assert_allclose(ys.reshape(4, T, H), want, atol=1e-5)
    np.testing.assert_allclose(h.reshape(4, H), final[0], atol=1e-5)
    np.testing.assert_allclose(c.reshape(4, H), final[1], atol=1e-5)
    assert np.all(h[0, 1] == 0)  # the empty row keeps its initial carry
    # Flax's carry for two batch axes is not even of the batch's shape.
    assert jax.tree.leaves(their_carry)[0].shape != (2, 2, H)


def test_init_key_draws_the_carry_as_flax():
    normal = jax.nn.initializers.normal(1.0)
    theirs = nn.RNN(nn.LSTMCell(H, carry_init=normal), return_carry=True)
    ours = slinen.RNN(nn.LSTMCell(H, carry_init=normal), return_carry=True)
    variables = theirs.init(KEY, XS)

    @jax.jit
    def run(variables, init_key):
        return (
            ours.apply(variables, XS, seq_lengths=LENGTHS, init_key=init_key),
            theirs.apply(variables, XS, seq_lengths=LENGTHS, init_key=init_key),
            ours.apply(variables, XS, seq_lengths=LENGTHS),
        )

    (carry, ys), (their_carry, their_ys), (default, _) = run(
        variables, jax.random.key(7)
    )
    assert close(carry, their_carry)
    np.testing.assert_allclose(ys[VALID], their_ys[VALID], atol=1e-5)
    assert not close(default, carry)  # the key matters for a random carry


def test_flax_checkpoint_restores_into_the_drop_in(tmp_path):
    theirs = nn.RNN(nn.OptimizedLSTMCell(H))
    variables = theirs.init(KEY, XS)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(tmp_path / "flax", variables)
    checkpointer.wait_until_finished()
    ours = slinen.RNN(nn.OptimizedLSTMCell(H))
    abstract = jax.eval_shape(ours.init, jax.random.key(1), XS)
    restored = checkpointer.restore(tmp_path / "flax", abstract)
    ys = ours.apply(restored, XS, seq_lengths=LENGTHS)
    want = theirs.apply(variables, XS, seq_lengths=LENGTHS)
    np.testing.assert_allclose(ys[VALID], want[VALID], atol=1e-5)


def test_conv_lstm_cell_runs_with_its_feature_axes():
    xs = np.random.default_rng(4).normal(size=(2, 3, 3, 3, 2)).astype(np.float32)
    lengths = np.array([3, 1])
    make = lambda: nn.ConvLSTMCell(3, kernel_size=(2, 2))  # noqa: E731
    theirs = nn.RNN(make(), return_carry=True)
    ours = slinen.RNN(make(), return_carry=True)

    @jax.jit
    def run():
        variables = theirs.init(KEY, xs)
        return (
            ours.init(KEY, xs),
            variables,
            ours.apply(variables, xs, seq_lengths=lengths),
            theirs.apply(variables, xs, seq_lengths=lengths),
        )

    our_variables, variables, (carry, ys), (their_carry, their_ys) = run()
    assert jax.tree.all(jax.tree.map(np.array_equal, our_variables, variables))
    assert ys.shape == (2, 3, 3, 3, 3)
    assert close(carry, their_carry)
    np.testing.assert_allclose(ys[0], their_ys[0], atol=1e-5)
    np.testing.assert_allclose(ys[1, :1], their_ys[1, :1], atol=1e-5)
    assert np.all(np.asarray(ys)[1, 1:] == 0)


def test_as_cell_is_the_flax_cell_as_pure_functions():
    flax_cell = nn.GRUCell(H)
    cell = slinen.as_cell(flax_cell)
    params = cell.init(KEY, IN)
    carry = flax_cell.initialize_carry(KEY, (B, IN))
    want = flax_cell.init(KEY, carry, XS[:, 0])["params"]
    assert jax.tree.all(jax.tree.map(np.array_equal, params, want))
    np.testing.assert_array_equal(cell.initial_carry(params, (B,)), carry)
    step = cell.apply(params, carry, XS[:, 0])
    expected = flax_cell.apply({"params": params}, carry, XS[:, 0])
    assert close(step, expected, atol=0)
    # The pure core over the adapter equals the NumPy loop over Flax's weights.
    h, ys = seqmask.rnn(cell, params, XS, mask=MASK)
    cell_name, reference_params = to_reference(params)
    final, outputs = ref.rnn(cell_name, reference_params, XS, MASK, (np.zeros((B, H)),))
    np.testing.assert_allclose(ys, outputs, atol=1e-5)
    np.testing.assert_allclose(h, final[0], atol=1e-5)


def test_learned_initial_state_with_a_flax_cell():
    model = slinen.RNN(
        nn.LSTMCell(H),
        return_carry=True,
        learnable_initial_state=True,
        carry_init=jax.nn.initializers.normal(1.0),
    )
    variables = model.init(KEY, XS)
    learned = variables["params"]["initial_carry"]
    assert set(learned) == {"carry_0", "carry_1"}  # Flax's (c, h)
    (c, h), _ = model.apply(variables, XS, mask=MASK)
    np.testing.assert_array_equal(c[2], learned["carry_0"])  # the empty row
    np.testing.assert_array_equal(h[2], learned["carry_1"])
