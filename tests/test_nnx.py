"""NNX modules with seqmask cells: each one equals the pure core called with
its parameters, and the independent NumPy reference.

References are built independently of the modules' own plumbing: the pure
cell comes from its factory and the parameter pytree is assembled by hand
from ``nnx.state`` by parameter name, so these tests also pin the names;
``numpy_reference`` shares no code with seqmask. Shapes stay tiny and every
jitted function is compiled once, because the machine is shared. The Flax
drop-in (Flax cells, Flax's arguments) is tested against real Flax modules
in ``test_dropin_nnx.py``.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import numpy_reference as ref
import optax
import orbax.checkpoint as ocp
import pytest
from flax import nnx
from helpers import IRREGULAR_MASK, numpy_layer

import seqmask
import seqmask.nnx as snnx
from seqmask import cells, data

B, T, IN, H = 3, 5, 3, 4
MASK = IRREGULAR_MASK  # left padding, holes, an empty row
XS = np.random.default_rng(0).normal(size=(B, T, IN)).astype(np.float32)
FACTORIES = {"lstm": cells.lstm, "gru": cells.gru, "simple_rnn": cells.simple_rnn}
CELL_NAMES = {
    "lstm": {"input_kernel", "recurrent_kernel", "bias"},
    "gru": {"input_kernel", "recurrent_kernel", "input_bias", "recurrent_bias"},
    "simple_rnn": {"input_kernel", "recurrent_kernel", "bias"},
}
NORMAL = jax.nn.initializers.normal(1.0)


def reference(model, cell_name):
    """The pure cell and parameters for ``model``, assembled by name."""
    state = nnx.state(model, nnx.Param)
    cell_params = {name: value[...] for name, value in state["cell"].items()}
    assert set(cell_params) == CELL_NAMES[cell_name]
    cell = FACTORIES[cell_name](H)
    if "initial_carry" not in state:
        return cell, cell_params
    learned = state["initial_carry"]
    if cell_name == "lstm":
        assert set(learned) == {"h", "c"}
        carry = cells.LSTMCarry(h=learned["h"][...], c=learned["c"][...])
    elif isinstance(learned, nnx.Param):  # a Stacked layer mirrors the pytree
        carry = learned[...]
    else:
        assert set(learned) == {"h"}
        carry = learned["h"][...]
    params = {"cell": cell_params, "initial_carry": carry}
    return cells.learnable_initial_state(cell), params


def run_both(module_fn, pure_fn, model, params):
    """The module's and the pure function's results, from one compiled program
    (one compilation instead of two: the machine is shared)."""
    return nnx.jit(lambda model, params: (module_fn(model), pure_fn(params)))(
        model, params
    )


@pytest.mark.parametrize(
    "cell_name, learnable, reverse",
    [("lstm", True, False), ("gru", False, True), ("simple_rnn", False, False)],
)
def test_rnn_equals_pure_core_and_numpy_reference(cell_name, learnable, reverse):
    model = snnx.RNN(
        FACTORIES[cell_name](H),
        in_features=IN,
        return_carry=True,
        keep_order=True,
        learnable_initial_state=learnable,
        carry_init=NORMAL,
        rngs=nnx.Rngs(0),
    )
    cell, params = reference(model, cell_name)
    (carry, ys), want = run_both(
        lambda model: model(XS, mask=MASK, reverse=reverse),
        lambda params: seqmask.rnn(cell, params, XS, mask=MASK, reverse=reverse),
        model,
        params,
    )
    chex.assert_trees_all_close((carry, ys), want, rtol=0, atol=1e-6)
    final, outputs = numpy_layer(cell_name, params, XS, MASK, reverse=reverse)
    np.testing.assert_allclose(ys, outputs, atol=1e-5)
    np.testing.assert_allclose(jax.tree.leaves(carry)[0], final[0], atol=1e-5)
    # The empty row ends where it started: the learned carry, or zeros.
    start = params["initial_carry"] if learnable else cell.initial_carry(params, ())
    chex.assert_trees_all_equal(jax.tree.map(lambda leaf: leaf[2], carry), start)
    if learnable:
        assert float(jnp.abs(jax.tree.leaves(start)[0]).sum()) > 0
    assert np.all(np.asarray(ys)[~MASK] == 0)


def test_parameter_names_in_nnx_state():
    bi = nnx.eval_shape(  # names and shapes only: nothing is computed
        lambda: snnx.Stacked(
            cells.lstm(H),
            2,
            in_features=IN,
            bidirectional=True,
            learnable_initial_state=True,
            rngs=nnx.Rngs(0),
        )
    )
    paths = {path for path, _ in nnx.to_flat_state(nnx.state(bi, nnx.Param))}
    expected = {
        ("layers", layer, direction, *rest)
        for layer in (0, 1)
        for direction in ("forward", "backward")
        for rest in [
            ("cell", "input_kernel"),
            ("cell", "recurrent_kernel"),
            ("cell", "bias"),
            ("initial_carry", "h"),
            ("initial_carry", "c"),
        ]
    }
    assert paths == expected
    state = nnx.state(bi, nnx.Param)
    # The second layer reads both directions of the first.
    assert state["layers"][1]["forward"]["cell"]["input_kernel"].shape == (2 * H, 4 * H)
    rnn = nnx.eval_shape(
        lambda: snnx.RNN(
            cells.lstm(H),
            in_features=IN,
            learnable_initial_state=True,
            rngs=nnx.Rngs(0),
        )
    )
    paths = {path for path, _ in nnx.to_flat_state(nnx.state(rnn, nnx.Param))}
    assert paths == {
        ("cell", "input_kernel"),
        ("cell", "recurrent_kernel"),
        ("cell", "bias"),
        ("initial_carry", "h"),
        ("initial_carry", "c"),
    }


@pytest.mark.parametrize("cell_name", ["lstm", "gru"])
def test_learnable_initial_state_broadcasts_the_learned_carry(cell_name):
    cell = FACTORIES[cell_name](H)
    state = snnx.LearnableInitialState(cell, carry_init=NORMAL, rngs=nnx.Rngs(1))
    learned = {name: value[...] for name, value in nnx.state(state).items()}
    assert set(learned) == ({"h", "c"} if cell_name == "lstm" else {"h"})
    unbatched = (
        cells.LSTMCarry(h=learned["h"], c=learned["c"])
        if cell_name == "lstm"
        else learned["h"]
    )
    # The pure core's learnable_initial_state broadcasts the same carry.
    wrapped = cells.learnable_initial_state(cell)
    full = {"cell": cell.init(jax.random.key(0), IN), "initial_carry": unbatched}
    expected = wrapped.initial_carry(full, (2, 3))
    chex.assert_trees_all_equal(state((2, 3)), expected)
    chex.assert_trees_all_equal(state(()), unbatched)
    chex.assert_trees_all_equal(state(2), jax.tree.map(lambda x: x[:, 0], expected))


def test_bidirectional_equals_pure_core_and_numpy_reference():
    rngs = nnx.Rngs(2)
    options = {
        "in_features": IN,
        "learnable_initial_state": True,
        "carry_init": NORMAL,
        "rngs": rngs,
    }
    model = snnx.Bidirectional(
        snnx.RNN(cells.lstm(H), **options),
        snnx.RNN(cells.lstm(H), **options),
        return_carry=True,
    )
    forward_cell, forward_params = reference(model.forward_rnn, "lstm")
    _, backward_params = reference(model.backward_rnn, "lstm")
    params = {"forward": forward_params, "backward": backward_params}
    got, want = run_both(
        lambda model: model(XS, mask=MASK),
        lambda params: seqmask.bidirectional(forward_cell, params, XS, mask=MASK),
        model,
        params,
    )
    chex.assert_trees_all_close(got, want, rtol=0, atol=1e-6)
    (_, backward_carry), ys = got
    chex.assert_shape(ys, (B, T, 2 * H))
    _, forward_ys = numpy_layer("lstm", forward_params, XS, MASK)
    final, backward_ys = numpy_layer("lstm", backward_params, XS, MASK, reverse=True)
    np.testing.assert_allclose(ys, np.concatenate([forward_ys, backward_ys], -1), 1e-5)
    np.testing.assert_allclose(backward_carry.h, final[0], atol=1e-5)


@pytest.mark.parametrize("flax_cells", [False, True], ids=["learned-lstm", "flax-gru"])
def test_bidirectional_and_stacked_over_packed_rows_equal_each_sequence_alone(
    flax_cells,
):
    """resets pass through: each direction (and each bidirectional layer)
    restarts from its own initial carry (learned, for seqmask cells) at the
    edges of every packed sequence, so a sequence gets what it gets alone."""
    rng = np.random.default_rng(4)
    sequences = [rng.normal(size=(n, IN)).astype(np.float32) for n in (3, 2, 4, 1)]
    packing = data.pack(sequences, row_len=5)
    rngs = nnx.Rngs(3)
    if flax_cells:
        directions = [snnx.RNN(nnx.GRUCell(IN, H, rngs=rngs)) for _ in range(2)]
    else:
        learned = {"learnable_initial_state": True, "carry_init": NORMAL}
        directions = [
            snnx.RNN(cells.lstm(H), in_features=IN, rngs=rngs, **learned)
            for _ in range(2)
        ]
    models = {
        "bidirectional": snnx.Bidirectional(*directions),
        "stacked": snnx.Stacked(
            cells.gru(H),
            2,
            in_features=IN,
            bidirectional=True,
            learnable_initial_state=not flax_cells,
            carry_init=NORMAL,
            rngs=rngs,
        ),
    }

    @nnx.jit
    def run(models, resets):
        def outputs(name, xs, **call):
            result = models[name](xs, **call)
            return result if name == "bidirectional" else result[1]

        packed = {
            name: outputs(name, packing.inputs, mask=packing.mask, resets=resets)
            for name in models
        }
        alone = {name: [outputs(name, xs[None]) for xs in sequences] for name in models}
        return packed, alone

    packed, alone = run(models, packing.resets)
    mixed, _ = run(models, np.zeros_like(packing.resets))
    for name in models:
        pairs = zip(data.unpack(packed[name], packing), alone[name], strict=True)
        for got, want in pairs:
            np.testing.assert_allclose(got, want[0], atol=1e-5)
        # Without the resets the sequences of a row run into each other.
        pairs = zip(data.unpack(mixed[name], packing), alone[name], strict=True)
        assert not all(np.allclose(got, want[0], atol=1e-5) for got, want in pairs)


def test_stacked_equals_pure_core_and_dropout_follows_nnx_rngs():
    model = snnx.Stacked(
        cells.gru(H),
        2,
        in_features=IN,
        residual=True,
        dropout_rate=0.5,
        learnable_initial_state=True,
        carry_init=NORMAL,
        rngs=nnx.Rngs(params=3, dropout=4),
    )
    ref_cell = cells.learnable_initial_state(cells.gru(H))
    ref_params = [reference(layer, "gru")[1] for layer in model.layers]
    # Without dropout, the first layer alone is the NumPy reference's.
    start = np.broadcast_to(ref_params[0]["initial_carry"], (B, H))
    _, want_first = ref.rnn("gru", ref_params[0]["cell"], XS, MASK, (start,))
    _, got_first = seqmask.stacked(
        model.pure_cells()[:1], model.pure_params()[:1], XS, mask=MASK
    )
    np.testing.assert_allclose(got_first, want_first, atol=1e-5)

    @nnx.jit(static_argnames="deterministic")
    def run(model, params, key, deterministic=None):
        got = model(XS, mask=MASK, deterministic=deterministic)
        want = seqmask.stacked(
            ref_cell,
            params,
            XS,
            mask=MASK,
            residual=True,
            dropout_rate=0.5,
            dropout_key=key,
        )
        return got, want

    def next_key(model):
        """The key the module draws next, from an identical copy of its stream."""
        return nnx.clone(model).dropout_rngs()

    first, want = run(model, ref_params, next_key(model))
    chex.assert_trees_all_close(first, want, rtol=0, atol=1e-6)
    second, want = run(model, ref_params, next_key(model))
    chex.assert_trees_all_close(second, want, rtol=0, atol=1e-6)
    assert not np.allclose(first[1], second[1]), "each call must draw a new key"

    model.eval()
    evaluated, want = run(model, ref_params, None)
    chex.assert_trees_all_close(evaluated, want, rtol=0, atol=1e-6)
    assert not np.allclose(first[1], evaluated[1])
    model.train()
    # nnx.view (Flax 0.12.5 on) and a per-call override switch dropout off
    # the same way.
    if hasattr(nnx, "view"):
        chex.assert_trees_all_equal(
            run(nnx.view(model, deterministic=True), ref_params, None),
            (evaluated, want),
        )
    chex.assert_trees_all_equal(
        run(model, ref_params, None, deterministic=True), (evaluated, want)
    )


def test_resets_send_rows_to_the_learned_state():
    model = snnx.RNN(
        cells.lstm(H),
        in_features=IN,
        return_carry=True,
        learnable_initial_state=True,
        carry_init=NORMAL,
        rngs=nnx.Rngs(5),
    )
    cell, params = reference(model, "lstm")
    rng = np.random.default_rng(1)
    explicit = cells.LSTMCarry(
        *(rng.normal(size=(B, H)).astype(np.float32) for _ in range(2))
    )
    resets = np.zeros((B, T), bool)
    resets[0, 2] = True  # mid-sequence, at a valid step
    resets[1, 1] = True  # at a padded step: takes effect all the same
    mask = np.ones((B, T), bool)
    mask[1, 1] = False
    options = {"mask": mask, "initial_carry": explicit, "resets": resets}
    (carry, ys), want = run_both(
        lambda model: model(XS, **options),
        lambda params: seqmask.rnn(cell, params, XS, **options),
        model,
        params,
    )
    chex.assert_trees_all_close((carry, ys), want, rtol=0, atol=1e-6)

    # The NumPy loop, resetting to the learned carry (not to zeros, not to
    # the row's initial carry), gives the same outputs and carries.
    learned = params["initial_carry"]
    reset_to = tuple(np.broadcast_to(leaf, (B, H)) for leaf in learned)
    final, outputs = ref.rnn(
        "lstm",
        params["cell"],
        XS,
        mask,
        tuple(explicit),
        resets=resets,
        reset_to=reset_to,
    )
    chex.assert_trees_all_close((tuple(carry), ys), (final, outputs), atol=1e-5)
    assert np.all(np.asarray(ys)[~mask] == 0)


def test_gradient_reaches_learned_state_only_through_rows_that_start_from_it():
    model = snnx.RNN(
        cells.lstm(H),
        in_features=IN,
        return_carry=True,
        learnable_initial_state=True,
        carry_init=NORMAL,
        rngs=nnx.Rngs(6),
    )
    rng = np.random.default_rng(2)
    explicit = cells.LSTMCarry(
        *(rng.normal(size=(B, H)).astype(np.float32) for _ in range(2))
    )
    weights = rng.normal(size=(B, T, H)).astype(np.float32)

    cell, params = reference(model, "lstm")

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

    @nnx.jit
    def gradients(model, params, starts, resets, row_weights):
        """nnx.grad of the module and jax.grad of the pure core, same loss."""

        def module_loss(model):
            start = start_from(model.initial_state(B), starts)
            carry, ys = model(XS, mask=MASK, initial_carry=start, resets=resets)
            return loss(carry, ys, row_weights)

        def pure_loss(params):
            start = start_from(cell.initial_carry(params, (B,)), starts)
            carry, ys = seqmask.rnn(
                cell, params, XS, mask=MASK, initial_carry=start, resets=resets
            )
            return loss(carry, ys, row_weights)

        return nnx.grad(module_loss)(model), jax.grad(pure_loss)(params)

    def learned_grad(starts, resets, rows):
        row_weights = np.isin(np.arange(B), rows).astype(np.float32)
        grads, _ = gradients(model, params, starts, resets, row_weights)
        return [np.asarray(grads["initial_carry"][n][...]) for n in ("h", "c")]

    no_resets = np.zeros((B, T), bool)
    starts = np.array([True, False, False])
    resets = no_resets.copy()
    resets[1, 3] = True
    # Row 0 starts from it, row 1 is reset to it, row 2 never touches it.
    for grad in learned_grad(starts, resets, rows=[2]):
        assert np.all(grad == 0)
    for rows in ([0], [1]):
        assert all(np.abs(g).sum() > 0 for g in learned_grad(starts, resets, rows))
    both = learned_grad(starts, resets, [0, 1])
    parts = [learned_grad(starts, resets, [r]) for r in (0, 1)]
    for total, g0, g1 in zip(both, *parts, strict=True):
        np.testing.assert_allclose(total, g0 + g1, rtol=1e-5, atol=1e-6)
    # Explicit carries and no resets: exactly no gradient at all.
    nothing = learned_grad(np.zeros(B, bool), no_resets, [0, 1, 2])
    assert all(np.all(g == 0) for g in nothing)

    # nnx.grad equals jax.grad of the pure function, parameter by parameter.
    got, want = gradients(model, params, starts, resets, np.ones(B, np.float32))
    for name in CELL_NAMES["lstm"]:
        np.testing.assert_allclose(
            got["cell"][name][...], want["cell"][name], rtol=1e-6, atol=1e-6
        )
    for name in ("h", "c"):
        np.testing.assert_allclose(
            got["initial_carry"][name][...],
            getattr(want["initial_carry"], name),
            rtol=1e-6,
            atol=1e-6,
        )


def test_jit_split_merge_and_orbax_round_trip(tmp_path):
    lstm = cells.lstm(H)
    model = snnx.RNN(
        lstm,
        in_features=IN,
        return_carry=True,
        learnable_initial_state=True,
        carry_init=NORMAL,
        rngs=nnx.Rngs(7),
    )
    call = nnx.jit(lambda m, xs, mask: m(xs, mask=mask))
    expected = call(model, XS, MASK)

    graphdef, state = nnx.split(model)

    @jax.jit
    def pure(state, xs, mask):
        return nnx.merge(graphdef, state)(xs, mask=mask)

    chex.assert_trees_all_close(pure(state, XS, MASK), expected, rtol=0, atol=1e-6)
    chex.assert_trees_all_equal(call(nnx.merge(graphdef, state), XS, MASK), expected)

    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(tmp_path / "rnn", nnx.state(model, nnx.Param))
    checkpointer.wait_until_finished()
    abstract = nnx.eval_shape(
        lambda: snnx.RNN(
            lstm,
            in_features=IN,
            return_carry=True,
            learnable_initial_state=True,
            carry_init=NORMAL,
            rngs=nnx.Rngs(8),
        )
    )
    abstract_graphdef, abstract_state = nnx.split(abstract)
    restored_state = checkpointer.restore(tmp_path / "rnn", abstract_state)
    restored = nnx.merge(abstract_graphdef, restored_state)
    # Modules built with one cell share it (and their graph definition), so
    # this call compiles nothing new.
    assert restored.pure_cell is model.pure_cell
    chex.assert_trees_all_equal(call(restored, XS, MASK), call(model, XS, MASK))
    chex.assert_trees_all_equal(nnx.state(restored), nnx.state(model))


def _first_step_task():
    """Zero inputs; the target is a fixed vector at each row's first valid step
    and zero after it. A GRU started from zeros cannot fit it (its state after
    a zero output is its start again), so the loss needs a learned start."""
    lengths = np.array([5, 3, 1, 4])
    mask = np.arange(T) >= T - lengths[:, None]  # left padding
    first = mask & ~np.pad(mask, ((0, 0), (1, 0)))[:, :-1]
    vector = np.array([0.5, -0.5, 0.25, -0.25], np.float32)
    targets = np.where(first[..., None], vector, 0).astype(np.float32)
    return np.zeros((len(lengths), T, IN), np.float32), mask, targets


def test_optax_training_learns_the_initial_state():
    xs, mask, targets = _first_step_task()

    def train(learnable, steps=120):
        model = snnx.RNN(
            cells.gru(H),
            in_features=IN,
            learnable_initial_state=learnable,
            rngs=nnx.Rngs(0),
        )
        optimizer = nnx.Optimizer(model, optax.adam(0.05), wrt=nnx.Param)

        @nnx.jit
        def step(model, optimizer):
            def loss_fn(model):
                ys = model(xs, mask=mask)
                error = jnp.where(mask[..., None], (ys - targets) ** 2, 0.0)
                return jnp.sum(error) / np.float32(mask.sum())

            loss, grads = nnx.value_and_grad(loss_fn)(model)
            # optax's Adam mixes its int32 step count with floats, which the
            # suite's strict promotion refuses; our code runs strict above.
            with jax.numpy_dtype_promotion("standard"):
                optimizer.update(model, grads)
            return loss

        losses = [float(step(model, optimizer)) for _ in range(steps)]
        return model, losses

    model, losses = train(True)
    assert losses[-1] < 1e-3 < losses[0]
    assert float(jnp.linalg.norm(model.initial_carry.h[...])) > 0.5
    _, baseline = train(False)
    assert min(baseline) > 5e-3
