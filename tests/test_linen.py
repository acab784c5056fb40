"""Linen modules with seqmask cells: ``model.apply`` equals the pure core with
the same parameters, and the independent NumPy reference.

The references take the pure cell from its factory and assemble the
parameter pytree by hand from the Linen variables by name, so these tests
also pin the names; ``numpy_reference`` shares no code with seqmask. Module
and references run in one jitted program each time (one compilation instead
of two: the machine is shared). The Flax drop-in (Flax cells, Flax's
arguments) is tested against real Flax modules in ``test_dropin_linen.py``.
"""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import numpy_reference as ref
import optax
import orbax.checkpoint as ocp
import pytest
from flax import serialization, traverse_util
from helpers import IRREGULAR_MASK, numpy_layer

import seqmask
import seqmask.linen as slinen
from seqmask import cells, data

B, T, IN, H = 3, 5, 3, 4
MASK = IRREGULAR_MASK  # left padding, holes, an empty row
XS = np.random.default_rng(0).normal(size=(B, T, IN)).astype(np.float32)
FACTORIES = {"lstm": cells.lstm, "gru": cells.gru, "simple_rnn": cells.simple_rnn}
NORMAL = jax.nn.initializers.normal(1.0)
KEY = jax.random.key(0)


def reference(params, cell_name):
    """The pure cell and parameters for one RNN's Linen params, by name."""
    cell = FACTORIES[cell_name](H)
    cell_params = dict(params["cell"])
    if "initial_carry" not in params:
        assert set(params) == {"cell"}
        return cell, cell_params
    assert set(params) == {"cell", "initial_carry"}
    learned = params["initial_carry"]
    if cell_name == "lstm":
        assert set(learned) == {"h", "c"}
        carry = cells.LSTMCarry(h=learned["h"], c=learned["c"])
    else:
        assert set(learned) == {"h"}
        carry = learned["h"]
    params = {"cell": cell_params, "initial_carry": carry}
    return cells.learnable_initial_state(cell), params


@pytest.mark.parametrize(
    "cell_name, learnable, reverse",
    [("lstm", True, False), ("gru", False, True), ("simple_rnn", False, False)],
)
def test_rnn_equals_pure_core_and_numpy_reference(cell_name, learnable, reverse):
    model = slinen.RNN(
        FACTORIES[cell_name](H),
        return_carry=True,
        keep_order=True,
        learnable_initial_state=learnable,
        carry_init=NORMAL,
    )
    variables = model.init(KEY, IN, method="pure_params")
    cell, params = reference(variables["params"], cell_name)

    @jax.jit
    def run(variables, params):
        got = model.apply(variables, XS, mask=MASK, reverse=reverse)
        return got, seqmask.rnn(cell, params, XS, mask=MASK, reverse=reverse)

    (carry, ys), want = run(variables, params)
    chex.assert_trees_all_close((carry, ys), want, rtol=0, atol=1e-6)
    final, outputs = numpy_layer(cell_name, params, XS, MASK, reverse=reverse)
    np.testing.assert_allclose(ys, outputs, atol=1e-5)
    np.testing.assert_allclose(jax.tree.leaves(carry)[0], final[0], atol=1e-5)
    start = params["initial_carry"] if learnable else cell.initial_carry(params, ())
    chex.assert_trees_all_equal(jax.tree.map(lambda leaf: leaf[2], carry), start)
    assert np.all(np.asarray(ys)[~MASK] == 0)


def test_flax_call_options_with_a_seqmask_cell():
    """return_carry, time_major and reverse without keep_order mean what they
    mean in Flax, for seqmask's cells too."""
    model = slinen.RNN(cells.gru(H))
    variables = model.init(KEY, IN, method="pure_params")
    lengths = np.array([5, 2, 0])
    mask = np.arange(T) < lengths[:, None]
    params = dict(variables["params"]["cell"])

    @jax.jit
    def run(variables):
        return (
            model.apply(variables, XS, seq_lengths=lengths),
            model.apply(
                variables,
                np.swapaxes(XS, 0, 1),
                seq_lengths=lengths,
                time_major=True,
                return_carry=True,
            ),
            model.apply(variables, XS, seq_lengths=lengths, reverse=True),
        )

    ys, (carry_tm, ys_tm), ys_reversed = run(variables)
    final, outputs = numpy_layer("gru", params, XS, mask)
    np.testing.assert_allclose(ys, outputs, atol=1e-5)
    np.testing.assert_allclose(np.swapaxes(ys_tm, 0, 1), outputs, atol=1e-5)
    np.testing.assert_allclose(carry_tm, final[0], atol=1e-5)
    _, backward = numpy_layer("gru", params, XS, mask, reverse=True)
    # Processing order: row b's valid steps reversed in place, padding zero.
    flipped = np.zeros_like(backward)
    for row, length in enumerate(lengths):
        flipped[row, :length] = backward[row, :length][::-1]
    np.testing.assert_allclose(ys_reversed, flipped, atol=1e-5)


def test_stacked_learned_state_restores_from_a_checkpoint_without_target():
    """Flax's serialisation keeps nested dicts; variables restored without a
    target (``msgpack_restore``) must run the model unchanged."""
    model = slinen.Stacked(
        slinen.as_cell(nn.LSTMCell(H)), 2, learnable_initial_state=True
    )
    variables = model.init(KEY, XS)
    variables = jax.tree.map(lambda x: x + 0.1, variables)  # a non-zero carry
    raw = serialization.msgpack_restore(serialization.to_bytes(variables))
    chex.assert_trees_all_equal(model.apply(raw, XS), model.apply(variables, XS))


def test_stacked_keeps_a_cells_own_parameter_tree():
    """Only learned carries are stored as named leaves: a cell whose
    parameters hold a tuple keeps it (as seqmask.linen.RNN keeps it)."""

    def init(key, input_size):
        k1, k2 = jax.random.split(key)
        return {"ws": (jax.random.normal(k1, (input_size, H)), jnp.eye(H))}

    def apply(params, h, x):
        w, u = params["ws"]
        h = jnp.tanh(x @ w + h @ u)
        return h, h

    cell = cells.Cell(init, lambda p, b=(): jnp.zeros((*b, H)), apply, name="tuple")
    variables = slinen.Stacked(cell, 1).init(KEY, XS)
    stored = variables["params"]["layers_0"]
    chex.assert_trees_all_equal_structs(stored, init(KEY, XS.shape[-1]))


def test_parameter_names_in_linen_variables():
    model = slinen.Stacked(
        cells.lstm(H), 2, bidirectional=True, learnable_initial_state=True
    )
    # Names and shapes only: nothing is computed.
    variables = jax.eval_shape(model.init, KEY, XS)
    paths = set(traverse_util.flatten_dict(variables["params"]))
    expected = {
        (layer, direction, *rest)
        for layer in ("layers_0", "layers_1")
        for direction in ("forward", "backward")
        for rest in [
            ("cell", "input_kernel"),
            ("cell", "recurrent_kernel"),
            ("cell", "bias"),
            ("initial_carry", "h"),  # an LSTMCarry(h, c), named as in RNN
            ("initial_carry", "c"),
        ]
    }
    assert paths == expected
    second = variables["params"]["layers_1"]["forward"]["cell"]["input_kernel"]
    chex.assert_shape(second, (2 * H, 4 * H))
    rnn = slinen.RNN(cells.lstm(H), learnable_initial_state=True)
    names = traverse_util.flatten_dict(jax.eval_shape(rnn.init, KEY, XS)["params"])
    assert set(names) == {
        ("cell", "input_kernel"),
        ("cell", "recurrent_kernel"),
        ("cell", "bias"),
        ("initial_carry", "h"),
        ("initial_carry", "c"),
    }


@pytest.mark.parametrize("cell_name", ["lstm", "gru"])
def test_learnable_initial_state_broadcasts_the_learned_carry(cell_name):
    cell = FACTORIES[cell_name](H)
    module = slinen.LearnableInitialState(cell, carry_init=NORMAL)
    batched, variables = module.init_with_output(KEY, (2, 3))
    learned = variables["params"]
    unbatched = (
        cells.LSTMCarry(h=learned["h"], c=learned["c"])
        if cell_name == "lstm"
        else learned["h"]
    )
    wrapped = cells.learnable_initial_state(cell)
    full = {"cell": cell.init(KEY, IN), "initial_carry": unbatched}
    expected = wrapped.initial_carry(full, (2, 3))
    chex.assert_trees_all_equal(batched, expected)
    chex.assert_trees_all_equal(module.apply(variables, ()), unbatched)
    assert float(jnp.abs(jax.tree.leaves(unbatched)[0]).sum()) > 0


def test_bidirectional_equals_pure_core_and_numpy_reference():
    model = slinen.Bidirectional(
        slinen.RNN(cells.lstm(H), learnable_initial_state=True, carry_init=NORMAL),
        slinen.RNN(cells.lstm(H), learnable_initial_state=True, carry_init=NORMAL),
        return_carry=True,
    )
    variables = model.init(KEY, XS, mask=MASK)
    forward_cell, forward_params = reference(variables["params"]["forward_rnn"], "lstm")
    _, backward_params = reference(variables["params"]["backward_rnn"], "lstm")
    params = {"forward": forward_params, "backward": backward_params}

    @jax.jit
    def run(variables, params):
        got = model.apply(variables, XS, mask=MASK)
        return got, seqmask.bidirectional(forward_cell, params, XS, mask=MASK)

    got, want = run(variables, params)
    chex.assert_trees_all_close(got, want, rtol=0, atol=1e-6)
    (_, backward_carry), ys = got
    _, forward_ys = numpy_layer("lstm", forward_params, XS, MASK)
    final, backward_ys = numpy_layer("lstm", backward_params, XS, MASK, reverse=True)
    np.testing.assert_allclose(ys, np.concatenate([forward_ys, backward_ys], -1), 1e-5)
    np.testing.assert_allclose(backward_carry.h, final[0], atol=1e-5)


def _packed_sequences():
    """Four sequences packed into two rows of 5 steps (one sequence whose
    backward direction, without its reset, would start from its neighbour)."""
    rng = np.random.default_rng(4)
    sequences = [rng.normal(size=(n, IN)).astype(np.float32) for n in (3, 2, 4, 1)]
    return sequences, data.pack(sequences, row_len=5)


@pytest.mark.parametrize("flax_cells", [False, True], ids=["learned-lstm", "flax-gru"])
def test_bidirectional_and_stacked_over_packed_rows_equal_each_sequence_alone(
    flax_cells,
):
    """resets pass through: each direction (and each bidirectional layer)
    restarts from its own initial carry (learned, for seqmask cells) at the
    edges of every packed sequence, so a sequence gets what it gets alone."""
    sequences, packing = _packed_sequences()
    if flax_cells:
        directions = [slinen.RNN(nn.GRUCell(H)) for _ in range(2)]
    else:
        directions = [
            slinen.RNN(cells.lstm(H), learnable_initial_state=True, carry_init=NORMAL)
            for _ in range(2)
        ]
    models = {
        "bidirectional": slinen.Bidirectional(*directions),
        "stacked": slinen.Stacked(
            cells.gru(H),
            2,
            bidirectional=True,
            learnable_initial_state=not flax_cells,
            carry_init=NORMAL,
        ),
    }
    variables = {
        name: model.init(KEY, packing.inputs) for name, model in models.items()
    }

    @jax.jit
    def run(variables, resets):
        packed = {
            name: model.apply(
                variables[name], packing.inputs, mask=packing.mask, resets=resets
            )
            for name, model in models.items()
        }
        alone = {
            name: [model.apply(variables[name], xs[None]) for xs in sequences]
            for name, model in models.items()
        }
        time_major = models["bidirectional"].apply(
            variables["bidirectional"],
            jnp.swapaxes(packing.inputs, 0, 1),
            mask=packing.mask.T,
            resets=resets.T,
            time_major=True,
        )
        return packed, alone, time_major

    packed, alone, time_major = run(variables, packing.resets)
    mixed, _, _ = run(variables, np.zeros_like(packing.resets))
    np.testing.assert_allclose(
        np.swapaxes(time_major, 0, 1), packed["bidirectional"], atol=1e-6
    )
    for name in models:
        ys = packed[name] if name == "bidirectional" else packed[name][1]
        unpacked = data.unpack(ys, packing)
        ys_alone = [ys if name == "bidirectional" else ys[1] for ys in alone[name]]
        for got, want in zip(unpacked, ys_alone, strict=True):
            np.testing.assert_allclose(got, want[0], atol=1e-5)
        # Without the resets the sequences of a row run into each other.
        ys = mixed[name] if name == "bidirectional" else mixed[name][1]
        assert not all(
            np.allclose(got, want[0], atol=1e-5)
            for got, want in zip(data.unpack(ys, packing), ys_alone, strict=True)
        )


class _DropoutKey(nn.Module):
    """Draws the key a root module's first ``make_rng("dropout")`` gets."""

    @nn.compact
    def __call__(self):
        return self.make_rng("dropout")


def test_stacked_equals_pure_core_and_dropout_uses_make_rng():
    model = slinen.Stacked(
        cells.gru(H),
        2,
        bidirectional=True,
        residual=True,
        dropout_rate=0.5,
        learnable_initial_state=True,
        carry_init=NORMAL,
    )
    variables = model.init(KEY, IN, method="pure_params")
    ref_params = [variables["params"][f"layers_{k}"] for k in range(2)]
    ref_cell = cells.learnable_initial_state(cells.gru(H))
    options = {"mask": MASK, "bidirectional": True, "residual": True}

    @jax.jit
    def run(variables, params, rng):
        got = model.apply(
            variables, XS, mask=MASK, deterministic=False, rngs={"dropout": rng}
        )
        key = _DropoutKey().apply({}, rngs={"dropout": rng})
        want = seqmask.stacked(
            ref_cell, params, XS, dropout_rate=0.5, dropout_key=key, **options
        )
        evaluated = model.apply(variables, XS, mask=MASK, deterministic=True)
        plain = seqmask.stacked(ref_cell, params, XS, **options)
        return got, want, evaluated, plain

    got, want, evaluated, plain = run(variables, ref_params, jax.random.key(1))
    chex.assert_trees_all_close(got, want, rtol=0, atol=1e-6)
    chex.assert_trees_all_close(evaluated, plain, rtol=0, atol=1e-6)
    chex.assert_shape(got[1], (B, T, 2 * H))
    assert not np.allclose(got[1], evaluated[1])
    other, *_ = run(variables, ref_params, jax.random.key(2))
    assert not np.allclose(got[1], other[1])
    # Without dropout, the first layer's forward direction is the NumPy
    # reference's, started from its own learned carry.
    first = ref_params[0]["forward"]
    start = np.broadcast_to(first["initial_carry"], (B, H))
    _, want_forward = ref.rnn("gru", first["cell"], XS, MASK, (start,))
    evaluated_first = model.clone(num_layers=1, cell=cells.gru(H), residual=False)
    one_layer = {"params": {"layers_0": ref_params[0]}}
    _, ys = evaluated_first.apply(one_layer, XS, mask=MASK, deterministic=True)
    np.testing.assert_allclose(ys[..., :H], want_forward, atol=1e-5)


def test_resets_and_gradient_reach_the_learned_state_only_where_used():
    model = slinen.RNN(
        cells.lstm(H),
        return_carry=True,
        learnable_initial_state=True,
        carry_init=NORMAL,
    )
    variables = model.init(KEY, IN, method="pure_params")
    cell, params = reference(variables["params"], "lstm")
    rng = np.random.default_rng(2)
    explicit = cells.LSTMCarry(
        *(rng.normal(size=(B, H)).astype(np.float32) for _ in range(2))
    )
    weights = rng.normal(size=(B, T, H)).astype(np.float32)
    resets = np.zeros((B, T), bool)
    resets[0, 3] = True  # at a valid step
    resets[1, 1] = True  # at a padded step: takes effect all the same

    def loss(carry, ys, row_weights):
        per_row = jnp.sum(jnp.sin(ys) * weights, axis=(1, 2)) + sum(
            jnp.sum(leaf**2, axis=-1) for leaf in jax.tree.leaves(carry)
        )
        return jnp.sum(per_row * row_weights)

    def start_from(learned, starts):
        """Rows in ``starts`` begin from the learned carry, others from theirs."""
        return jax.tree.map(
            lambda learned, given: jnp.where(starts[:, None], learned, given),
            learned,
            explicit,
        )

    @jax.jit
    def run(variables, params, starts, resets, row_weights):
        def module_loss(variables):
            learned = variables["params"]["initial_carry"]
            learned = cells.LSTMCarry(
                *(jnp.broadcast_to(learned[n], (B, H)) for n in ("h", "c"))
            )
            carry, ys = model.apply(
                variables,
                XS,
                mask=MASK,
                initial_carry=start_from(learned, starts),
                resets=resets,
            )
            return loss(carry, ys, row_weights), (carry, ys)

        def pure_loss(params):
            start = start_from(cell.initial_carry(params, (B,)), starts)
            carry, ys = seqmask.rnn(
                cell, params, XS, mask=MASK, initial_carry=start, resets=resets
            )
            return loss(carry, ys, row_weights), (carry, ys)

        module = jax.grad(module_loss, has_aux=True)(variables)
        pure = jax.grad(pure_loss, has_aux=True)(params)
        # Row 0's steps from its reset on, run alone from the learned state.
        _, alone = seqmask.rnn(cell, params, XS[:1, 3:], mask=MASK[:1, 3:])
        return module, pure, alone

    def learned_grad(starts, resets, rows):
        row_weights = np.isin(np.arange(B), rows).astype(np.float32)
        (grads, _), *_ = run(variables, params, starts, resets, row_weights)
        return [np.asarray(grads["params"]["initial_carry"][n]) for n in ("h", "c")]

    no_starts = np.zeros(B, bool)
    everything = np.ones(B, np.float32)
    (grads, outputs), (want_grads, want_outputs), alone = run(
        variables, params, no_starts, resets, everything
    )
    chex.assert_trees_all_close(outputs, want_outputs, rtol=0, atol=1e-6)
    chex.assert_trees_all_close(
        (grads["params"]["cell"], grads["params"]["initial_carry"]),
        (want_grads["cell"], dict(want_grads["initial_carry"]._asdict())),
        rtol=0,
        atol=1e-6,
    )
    # The NumPy loop, resetting to the learned carry, gives the same outputs.
    learned = params["initial_carry"]
    reset_to = tuple(np.broadcast_to(leaf, (B, H)) for leaf in learned)
    _, want = ref.rnn(
        "lstm",
        params["cell"],
        XS,
        MASK,
        tuple(explicit),
        resets=resets,
        reset_to=reset_to,
    )
    np.testing.assert_allclose(outputs[1], want, atol=1e-5)
    # A reset row continues from the learned carry: its outputs from the reset
    # on are those of the same steps run alone from the learned state.
    _, ys = outputs
    np.testing.assert_allclose(ys[0, 3:], alone[0], atol=1e-6)

    # Rows 0 and 1 are reset to the learned carry; row 2 never touches it.
    assert all(np.all(g == 0) for g in learned_grad(no_starts, resets, [2]))
    assert all(np.abs(g).sum() > 0 for g in learned_grad(no_starts, resets, [0]))
    no_resets = np.zeros((B, T), bool)
    assert all(np.all(g == 0) for g in learned_grad(no_starts, no_resets, [0, 1, 2]))
    # Row 2 starts from it: it alone sends gradient (through its final carry,
    # as the row is empty).
    starts = np.array([False, False, True])
    assert all(np.all(g == 0) for g in learned_grad(starts, no_resets, [0, 1]))
    assert all(np.abs(g).sum() > 0 for g in learned_grad(starts, no_resets, [2]))


def test_jit_and_orbax_round_trip(tmp_path):
    model = slinen.RNN(cells.gru(H), learnable_initial_state=True, carry_init=NORMAL)
    variables = model.init(KEY, XS, mask=MASK)
    # Parameters alone, without running the layer: the same variables.
    chex.assert_trees_all_equal(model.init(KEY, IN, method="pure_params"), variables)
    apply = jax.jit(lambda variables: model.apply(variables, XS, mask=MASK))
    expected = apply(variables)

    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(tmp_path / "rnn", variables["params"])
    checkpointer.wait_until_finished()
    abstract = jax.eval_shape(model.init, jax.random.key(1), XS, mask=MASK)
    restored = checkpointer.restore(tmp_path / "rnn", abstract["params"])
    chex.assert_trees_all_equal(restored, variables["params"])
    chex.assert_trees_all_equal(apply({"params": restored}), expected)


def test_optax_training_learns_the_initial_state():
    """Zero inputs; the target is a fixed vector at each row's first valid step
    and zero after it, which a GRU started from zeros cannot fit."""
    lengths = np.array([5, 3, 1, 4])
    mask = np.arange(T) >= T - lengths[:, None]  # left padding
    first = mask & ~np.pad(mask, ((0, 0), (1, 0)))[:, :-1]
    vector = np.array([0.5, -0.5, 0.25, -0.25], np.float32)
    targets = np.where(first[..., None], vector, 0).astype(np.float32)
    xs = np.zeros((len(lengths), T, IN), np.float32)

    model = slinen.RNN(cells.gru(H), learnable_initial_state=True)
    params = model.init(KEY, IN, method="pure_params")["params"]
    optimizer = optax.adam(0.05)

    @jax.jit
    def step(params, opt_state):
        def loss_fn(params):
            ys = model.apply({"params": params}, xs, mask=mask)
            error = jnp.where(mask[..., None], (ys - targets) ** 2, 0.0)
            return jnp.sum(error) / np.float32(mask.sum())

        loss, grads = jax.value_and_grad(loss_fn)(params)
        # optax's Adam mixes its int32 step count with floats, which the
        # suite's strict promotion refuses; our code runs strict above.
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = optimizer.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state, loss

    opt_state = optimizer.init(params)
    losses = []
    for _ in range(120):
        params, opt_state, loss = step(params, opt_state)
        losses.append(float(loss))
    assert losses[-1] < 1e-3 < losses[0]
    assert float(jnp.linalg.norm(params["initial_carry"]["h"])) > 0.5
