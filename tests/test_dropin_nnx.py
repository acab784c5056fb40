"""``seqmask.nnx`` as a drop-in for ``flax.nnx.RNN`` / ``Bidirectional``.

Against real Flax modules: the same state (names, structure, the carry
stream), so an existing model's state loads unchanged, and equal outputs,
carries and gradients wherever Flax is right. Against the independent NumPy
loop of ``numpy_reference`` where Flax is not (zero outputs at padded steps,
an empty row keeps its initial carry, several batch axes, any mask). Shapes
are tiny and each test compiles one program, because the machine is shared.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import numpy_reference as ref
import orbax.checkpoint as ocp
import pytest
from flax import nnx
from flax_reference import carry_from_reference, carry_to_reference, to_reference
from helpers import IRREGULAR_MASK

import seqmask
import seqmask.nnx as snnx

B, T, IN, H = 3, 5, 2, 3
XS = np.random.default_rng(0).normal(size=(B, T, IN)).astype(np.float32)
LENGTHS = np.array([5, 2, 1])  # every row has a valid step: Flax is right
VALID = np.arange(T) < LENGTHS[:, None]
MASK = IRREGULAR_MASK  # what seq_lengths cannot express
CELLS = {
    "LSTMCell": nnx.LSTMCell,
    "OptimizedLSTMCell": nnx.OptimizedLSTMCell,
    "GRUCell": nnx.GRUCell,
    "SimpleCell": nnx.SimpleCell,
}
WEIGHTS = np.random.default_rng(1).normal(size=(B, T, H)).astype(np.float32)


def loss(carry, ys):
    """Counts outputs at valid steps only (Flax's padded outputs are not
    meant to be used) and the carries."""
    valid = jnp.where(VALID[..., None], jnp.sin(ys) * WEIGHTS, 0.0)
    return jnp.sum(valid) + sum(jnp.sum(leaf**2) for leaf in jax.tree.leaves(carry))


@pytest.mark.parametrize("name", CELLS)
def test_same_state_outputs_carries_and_gradients_as_flax(name):
    cell = CELLS[name](IN, H, rngs=nnx.Rngs(0))
    theirs = nnx.RNN(cell, return_carry=True)
    ours = snnx.RNN(cell, return_carry=True)
    # The one-line change keeps the state: same names, same structure.
    assert jax.tree.structure(nnx.state(ours)) == jax.tree.structure(nnx.state(theirs))

    @nnx.jit
    def run(ours, theirs, xs):
        def value(model):
            def f(model, xs):
                carry, ys = model(xs, seq_lengths=LENGTHS)
                return loss(carry, ys), (carry, ys)

            return nnx.grad(f, argnums=(0, 1), has_aux=True)(model, xs)

        return value(ours), value(theirs)

    (our_grads, (carry, ys)), (their_grads, (their_carry, their_ys)) = run(
        ours, theirs, XS
    )
    chex.assert_trees_all_close(carry, their_carry, atol=1e-5)
    np.testing.assert_allclose(ys[VALID], their_ys[VALID], atol=1e-5)
    assert np.all(np.asarray(ys)[~VALID] == 0)
    assert not np.allclose(np.asarray(their_ys)[~VALID], 0)  # Flax's padding
    chex.assert_trees_all_close(our_grads, their_grads, atol=1e-5)
    # Both drew their carries from their streams the same number of times.
    chex.assert_trees_all_equal(
        nnx.state(ours, nnx.RngCount), nnx.state(theirs, nnx.RngCount)
    )


@pytest.mark.parametrize(
    "options",
    [
        {"reverse": True, "keep_order": True},
        {"reverse": True},  # processing order, as Flax
        {"time_major": True},
    ],
    ids=["reverse-keep-order", "reverse", "time-major"],
)
def test_call_options_mean_what_they_mean_in_flax(options):
    cell = nnx.GRUCell(IN, H, rngs=nnx.Rngs(0))
    theirs = nnx.RNN(cell, return_carry=True)
    ours = snnx.RNN(cell, return_carry=True)
    time_major = options.get("time_major", False)
    xs = np.swapaxes(XS, 0, 1) if time_major else XS
    valid = VALID.T if time_major else VALID

    @nnx.jit
    def run(ours, theirs):
        return tuple(m(xs, seq_lengths=LENGTHS, **options) for m in (ours, theirs))

    (carry, ys), (their_carry, their_ys) = run(ours, theirs)
    np.testing.assert_allclose(carry, their_carry, atol=1e-5)
    np.testing.assert_allclose(ys[valid], their_ys[valid], atol=1e-5)
    assert np.all(np.asarray(ys)[~valid] == 0)


def test_flax_state_loads_unchanged(tmp_path):
    theirs = nnx.RNN(nnx.LSTMCell(IN, H, rngs=nnx.Rngs(0)))
    # Built with other parameters, then given Flax's state as it is.
    ours = snnx.RNN(nnx.LSTMCell(IN, H, rngs=nnx.Rngs(1)))
    nnx.update(ours, nnx.state(theirs))
    np.testing.assert_allclose(
        ours(XS, seq_lengths=LENGTHS)[VALID],
        theirs(XS, seq_lengths=LENGTHS)[VALID],
        atol=1e-5,
    )
    # An orbax checkpoint of the Flax model restores into the drop-in.
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(tmp_path / "flax", nnx.state(theirs))
    checkpointer.wait_until_finished()
    abstract = nnx.eval_shape(lambda: snnx.RNN(nnx.LSTMCell(IN, H, rngs=nnx.Rngs(2))))
    graphdef, abstract_state = nnx.split(abstract)
    restored = nnx.merge(
        graphdef, checkpointer.restore(tmp_path / "flax", abstract_state)
    )
    chex.assert_trees_all_close(
        nnx.state(restored, nnx.Param), nnx.state(theirs, nnx.Param), atol=0, rtol=0
    )


def test_bidirectional_same_state_and_results_as_flax():
    rngs = nnx.Rngs(0)
    forward, backward = nnx.LSTMCell(IN, H, rngs=rngs), nnx.GRUCell(IN, H, rngs=rngs)
    theirs = nnx.Bidirectional(nnx.RNN(forward), nnx.RNN(backward), return_carry=True)
    ours = snnx.Bidirectional(snnx.RNN(forward), snnx.RNN(backward), return_carry=True)
    assert jax.tree.structure(nnx.state(ours)) == jax.tree.structure(nnx.state(theirs))

    @nnx.jit
    def run(ours, theirs):
        return tuple(m(XS, seq_lengths=LENGTHS) for m in (ours, theirs))

    (carries, ys), (their_carries, their_ys) = run(ours, theirs)
    chex.assert_trees_all_close(carries, their_carries, atol=1e-5)
    np.testing.assert_allclose(ys[VALID], their_ys[VALID], atol=1e-5)
    assert np.all(np.asarray(ys)[~VALID] == 0)


@pytest.mark.parametrize("name", CELLS)
def test_any_mask_equals_the_numpy_reference(name):
    """Where seq_lengths cannot say it (left padding, holes, an empty row),
    the drop-in takes a mask and follows the NumPy loop."""
    model = snnx.RNN(
        CELLS[name](IN, H, rngs=nnx.Rngs(0)), return_carry=True, keep_order=True
    )
    cell_name, params = to_reference(model.pure_params())
    rng = np.random.default_rng(2)
    start = tuple(
        rng.normal(size=(B, H)) for _ in range(2 if cell_name == "lstm" else 1)
    )
    initial = jax.tree.map(np.float32, carry_from_reference(cell_name, start))

    @nnx.jit
    def run(model):
        return [
            model(XS, mask=MASK, initial_carry=initial, reverse=r)
            for r in (False, True)
        ]

    for (carry, ys), reverse in zip(run(model), (False, True), strict=True):
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
    cell = nnx.LSTMCell(IN, H, rngs=nnx.Rngs(0))
    ours, theirs = snnx.RNN(cell, return_carry=True), nnx.RNN(cell, return_carry=True)

    @nnx.jit
    def run(ours, theirs):
        return tuple(m(xs, seq_lengths=lengths) for m in (ours, theirs))

    ((c, h), ys), (their_carry, _) = run(ours, theirs)
    cell_name, params = to_reference(ours.pure_params())
    mask = np.arange(T) < lengths[..., None]
    zeros = (np.zeros((4, H)), np.zeros((4, H)))
    final, want = ref.rnn(
        cell_name, params, xs.reshape(4, T, IN), mask.reshape(4, T), zeros
    )
    np.testing.assert_allclose(ys.reshape(4, T, H), want, atol=1e-5)
    np.testing.assert_allclose(h.reshape(4, H), final[0], atol=1e-5)
    np.testing.assert_allclose(c.reshape(4, H), final[1], atol=1e-5)
    assert np.all(h[0, 1] == 0)  # the empty row keeps its initial carry
    assert jax.tree.leaves(their_carry)[0].shape != (2, 2, H)


def test_as_cell_is_the_flax_cell_as_pure_functions():
    flax_cell = nnx.OptimizedLSTMCell(IN, H, rngs=nnx.Rngs(0))
    cell = snnx.as_cell(flax_cell)
    params = cell.init(jax.random.key(9), IN)
    want = nnx.to_pure_dict(nnx.state(flax_cell, nnx.Param))
    assert jax.tree.all(jax.tree.map(np.array_equal, params, want))
    carry = cell.initial_carry(params, (B,))
    chex.assert_trees_all_close(
        carry, (np.zeros((B, H)), np.zeros((B, H))), atol=0, rtol=0
    )  # (c, h)
    chex.assert_trees_all_close(
        cell.apply(params, carry, XS[:, 0]), flax_cell(carry, XS[:, 0]), atol=0, rtol=0
    )
    # The pure core over the adapter equals the NumPy loop over Flax's weights.
    (c, h), ys = seqmask.rnn(cell, params, XS, mask=MASK)
    cell_name, reference_params = to_reference(params)
    zeros = (np.zeros((B, H)), np.zeros((B, H)))
    final, outputs = ref.rnn(cell_name, reference_params, XS, MASK, zeros)
    np.testing.assert_allclose(ys, outputs, atol=1e-5)
    np.testing.assert_allclose(h, final[0], atol=1e-5)


def test_learned_initial_state_with_a_flax_cell():
    model = snnx.RNN(
        nnx.GRUCell(IN, H, rngs=nnx.Rngs(0)),
        return_carry=True,
        learnable_initial_state=True,
        carry_init=jax.nn.initializers.normal(1.0),
        rngs=nnx.Rngs(1),
    )
    learned = model.initial_carry.h[...]
    h, _ = model(XS, mask=MASK)
    np.testing.assert_array_equal(h[2], learned)  # the empty row
    assert float(jnp.abs(learned).sum()) > 0


class _GivenCarryGRU(nnx.RNNCellBase):
    """A cell without initialize_carry: the caller gives the carry (as a
    decoder started from an encoder's state), which flax.nnx.RNN allows."""

    def __init__(self, in_features, hidden_features, *, rngs):
        self.in_features = in_features
        self.gru = nnx.GRUCell(in_features, hidden_features, rngs=rngs)

    def __call__(self, carry, inputs):  # type: ignore[override]
        return self.gru(carry, inputs)

    @property
    def num_feature_axes(self) -> int:
        return 1


def test_a_cell_without_initialize_carry_runs_from_the_given_carry():
    cell = _GivenCarryGRU(IN, H, rngs=nnx.Rngs(0))
    ours, theirs = snnx.RNN(cell, return_carry=True), nnx.RNN(cell, return_carry=True)
    start = np.random.default_rng(2).normal(size=(B, H)).astype(np.float32)
    resets = np.zeros((B, T), bool)
    resets[0, 3] = True
    carry, ys = ours(XS, initial_carry=start, seq_lengths=LENGTHS)
    their_carry, their_ys = theirs(XS, initial_carry=start, seq_lengths=LENGTHS)
    np.testing.assert_allclose(carry, their_carry, atol=1e-5)
    np.testing.assert_allclose(ys[VALID], their_ys[VALID], atol=1e-5)
    # Resets return to the given carry (a loop over time with the cell).
    carry, ys = ours(XS, initial_carry=start, seq_lengths=LENGTHS, resets=resets)
    h, expected = start, np.zeros((B, T, H), np.float32)
    for t in range(T):
        h = np.where(resets[:, t, None], start, h)
        new_h, y = cell(h, XS[:, t])
        h = np.where(VALID[:, t, None], new_h, h)
        expected[:, t] = np.where(VALID[:, t, None], y, 0.0)
    np.testing.assert_allclose(ys, expected, atol=1e-5)
    np.testing.assert_allclose(carry, h, atol=1e-5)
    # The pure core takes the same cell and carry.
    pure = snnx.as_cell(cell)
    _, pure_ys = seqmask.rnn(
        pure,
        pure.init(jax.random.key(0), IN),
        XS,
        initial_carry=start,
        lengths=LENGTHS,
        resets=resets,
    )
    np.testing.assert_allclose(pure_ys, expected, atol=1e-5)
    with pytest.raises(
        NotImplementedError, match=r"give the RNN \(or seqmask.rnn\) an initial_carry"
    ):
        ours(XS)


@pytest.mark.filterwarnings("ignore:carry_init is provided in __init__")
def test_resets_return_to_the_carry_drawn_for_the_call():
    """With a random carry_init, a call starts from a carry drawn from the
    module's stream (as flax.nnx.RNN does) and resets return to that carry:
    a row reset at step k continues as a fresh call on its steps from k."""
    cell = nnx.GRUCell(
        IN, H, carry_init=jax.nn.initializers.normal(1.0), rngs=nnx.Rngs(0)
    )

    def fresh():  # the same stream state for every call
        return snnx.RNN(cell, rngs=nnx.Rngs(carry=5))

    ys_flax = nnx.RNN(cell, rngs=nnx.Rngs(carry=5))(XS)
    ys = fresh()(XS)
    np.testing.assert_allclose(ys, ys_flax, atol=1e-6)
    resets = np.zeros((B, T), bool)
    resets[:, 2] = True
    reset_ys = fresh()(XS, resets=resets)
    np.testing.assert_allclose(reset_ys[:, :2], ys[:, :2], atol=1e-6)
    np.testing.assert_allclose(reset_ys[:, 2:], fresh()(XS[:, 2:]), atol=1e-6)
