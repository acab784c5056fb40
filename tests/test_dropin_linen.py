"""``seqmask.linen`` as a drop-in for ``flax.linen.RNN`` / ``Bidirectional``.

Against real Flax modules: the same variables (names and initial values),
and equal outputs, carries and gradients wherever Flax is right (outputs at
valid steps, carries of rows with at least one valid step). Against the
independent NumPy loop of ``numpy_reference`` where Flax is not: zero
outputs at padded steps, an empty row keeps its initial carry, several batch
axes, masks with holes and left padding. Shapes are tiny and each test
compiles one program, because the machine is shared.
"""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import numpy_reference as ref
import orbax.checkpoint as ocp
import pytest
from flax_reference import carry_from_reference, carry_to_reference, to_reference
from helpers import IRREGULAR_MASK

import seqmask
import seqmask.linen as slinen

B, T, IN, H = 3, 5, 2, 3
XS = np.random.default_rng(0).normal(size=(B, T, IN)).astype(np.float32)
LENGTHS = np.array([5, 2, 1])  # every row has a valid step: Flax is right
VALID = np.arange(T) < LENGTHS[:, None]
MASK = IRREGULAR_MASK  # what seq_lengths cannot express
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
    chex.assert_trees_all_close(carry, their_carry, atol=1e-5)
    np.testing.assert_allclose(ys[VALID], their_ys[VALID], atol=1e-5)
    assert np.all(np.asarray(ys)[~VALID] == 0)
    assert not np.allclose(np.asarray(their_ys)[~VALID], 0)  # Flax's padding
    chex.assert_trees_all_close(our_grads, their_grads, atol=1e-5)


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
    chex.assert_trees_all_close(carries, their_carries, atol=1e-5)
    np.testing.assert_allclose(ys[VALID], their_ys[VALID], atol=1e-5)
    assert np.all(np.asarray(ys)[~VALID] == 0)


def test_no_time_steps_give_flaxs_initial_carries_and_empty_outputs():
    """A sequence of 0 steps (batch- or time-major), and init on one: the
    drop-ins return what Flax returns, with the parameters Flax makes."""

    def build(module, rnn):
        return module(rnn(nn.LSTMCell(H)), rnn(nn.GRUCell(H)), return_carry=True)

    empty = XS[:, :0]
    for time_major in (False, True):
        xs = jnp.swapaxes(empty, 0, 1) if time_major else empty
        theirs = nn.RNN(nn.LSTMCell(H), return_carry=True, time_major=time_major)
        ours = slinen.RNN(nn.LSTMCell(H), return_carry=True, time_major=time_major)
        variables = theirs.init(KEY, XS if not time_major else jnp.swapaxes(XS, 0, 1))
        chex.assert_trees_all_equal(
            ours.apply(variables, xs), theirs.apply(variables, xs)
        )
    both = build(nn.Bidirectional, nn.RNN), build(slinen.Bidirectional, slinen.RNN)
    variables = both[0].init(KEY, XS)
    chex.assert_trees_all_equal(*(m.apply(variables, empty) for m in both))
    ours_init = slinen.RNN(nn.GRUCell(H)).init(KEY, empty)
    chex.assert_trees_all_equal(ours_init, nn.RNN(nn.GRUCell(H)).init(KEY, XS))


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
    chex.assert_trees_all_close(carry, their_carry, atol=1e-5)
    np.testing.assert_allclose(ys[VALID], their_ys[VALID], atol=1e-5)
    # The key matters for a random carry.
    assert not jax.tree.all(jax.tree.map(np.allclose, default, carry))


def test_resets_return_to_the_carry_drawn_with_init_key():
    normal = jax.nn.initializers.normal(1.0)
    cell = nn.GRUCell(H, carry_init=normal)
    ours = slinen.RNN(cell, return_carry=True)
    variables = ours.init(KEY, XS)
    init_key = jax.random.key(7)
    resets = np.zeros((B, T), bool)
    resets[0, 2] = resets[1, 1] = True
    carry, ys = jax.jit(
        lambda v, k: ours.apply(v, XS, seq_lengths=LENGTHS, init_key=k, resets=resets)
    )(variables, init_key)
    # A loop over time with Flax's cell: every row starts from, and is reset
    # to, its carry drawn with init_key (never the default key's).
    start = cell.initialize_carry(init_key, (B, IN))
    h, expected = start, np.zeros_like(ys)
    for t in range(T):
        h = jnp.where(resets[:, t, None], start, h)
        new_h, y = cell.apply({"params": variables["params"]["cell"]}, h, XS[:, t])
        h = jnp.where(VALID[:, t, None], new_h, h)
        expected[:, t] = np.where(VALID[:, t, None], y, 0.0)
    np.testing.assert_allclose(ys, expected, atol=1e-5)
    np.testing.assert_allclose(carry, h, atol=1e-5)


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
    chex.assert_shape(ys, (2, 3, 3, 3, 3))
    chex.assert_trees_all_close(carry, their_carry, atol=1e-5)
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
    chex.assert_trees_all_close(step, expected, atol=0, rtol=0)
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


class _SamplingDecoderCell(nn.RNNCellBase):
    """An LSTM step whose output token is sampled and, unless teacher forced,
    fed back as the next input: the decoder of Flax's seq2seq example."""

    features: int
    vocab_size: int
    teacher_force: bool

    @nn.compact
    def __call__(self, carry, x):
        state, previous = carry
        state, h = nn.LSTMCell(self.features)(
            state, x if self.teacher_force else previous
        )
        logits = nn.Dense(self.vocab_size)(h)
        token = jax.random.categorical(self.make_rng("sample"), logits)
        one_hot = jax.nn.one_hot(token, self.vocab_size, dtype=jnp.float32)
        return (state, one_hot), (logits, one_hot)

    @property
    def num_feature_axes(self) -> int:
        return 1


class _Seq2Seq(nn.Module):
    """Flax's seq2seq example's model, its RNN class a parameter."""

    rnn: type
    teacher_force: bool
    vocab_size: int = 6
    eos_id: int = 1

    @nn.compact
    def __call__(self, source, target):
        encoder = self.rnn(nn.LSTMCell(H), return_carry=True, name="encoder")
        decoder = self.rnn(
            _SamplingDecoderCell(H, self.vocab_size, self.teacher_force),
            split_rngs={"params": False, "sample": True},
            name="decoder",
        )
        lengths = jnp.argmax(jnp.argmax(source, -1) == self.eos_id, axis=-1)
        state, _ = encoder(source, seq_lengths=lengths)
        return decoder(target[:, :-1], initial_carry=(state, target[:, 0]))


def test_flax_seq2seq_example_model_migrates_by_swapping_the_rnn_class():
    """Encoder and sampling decoder (a random stream split over steps, a cell
    without initialize_carry): the same variables, teacher-forced logits and
    gradients equal Flax's; free-running, a new sample at every step."""
    rng = np.random.default_rng(5)
    tokens = rng.integers(2, 6, size=(B, T))
    tokens[np.arange(B), [4, 2, 1]] = 1  # EOS: source lengths 4, 2, 1
    source = jax.nn.one_hot(tokens, 6, dtype=jnp.float32)
    target = jax.nn.one_hot(rng.integers(2, 6, size=(B, 4)), 6, dtype=jnp.float32)
    rngs = {"params": jax.random.key(0), "sample": jax.random.key(1)}
    theirs, ours = (_Seq2Seq(rnn, teacher_force=True) for rnn in (nn.RNN, slinen.RNN))

    @jax.jit
    def run(rngs):
        variables = theirs.init(rngs, source, target)

        def loss(variables, model):
            logits, _ = model.apply(variables, source, target, rngs={"sample": KEY})
            return jnp.sum(jnp.sin(logits)), logits

        free = _Seq2Seq(slinen.RNN, teacher_force=False)
        _, sampled = free.apply(variables, source, target, rngs={"sample": KEY})
        return (
            ours.init(rngs, source, target),
            variables,
            jax.grad(loss, has_aux=True)(variables, ours),
            jax.grad(loss, has_aux=True)(variables, theirs),
            sampled,
        )

    ours_init, variables, (grads, logits), (their_grads, their_logits), sampled = run(
        rngs
    )
    assert jax.tree.all(jax.tree.map(np.array_equal, ours_init, variables))
    np.testing.assert_allclose(logits, their_logits, atol=1e-5)
    chex.assert_trees_all_close(grads, their_grads, atol=1e-5)
    chex.assert_shape(sampled, (B, 3, 6))
    np.testing.assert_array_equal(np.sum(sampled, -1), 1)  # one-hot samples


class _NoiseCell(nn.RNNCellBase):
    """Outputs one uniform draw of its ``noise`` stream a step (the same for
    every row)."""

    @nn.compact
    def __call__(self, carry, x):
        noise = jax.random.uniform(self.make_rng("noise"), ())
        return carry, jnp.broadcast_to(noise, x.shape)

    def initialize_carry(self, rng, input_shape):
        return jnp.zeros(input_shape[:-1])

    @property
    def num_feature_axes(self) -> int:
        return 1


@pytest.mark.parametrize("split", [True, False])
def test_random_streams_of_the_cell_follow_split_rngs(split):
    """A split stream draws a new key at every step (a padded step draws
    none), an unsplit one the same key at every step, as in Flax."""
    model = slinen.RNN(_NoiseCell(), split_rngs={"params": False, "noise": split})
    mask = np.array([[True, True, False, True], [False, True, True, True]])
    xs = np.zeros((2, 4, 1), np.float32)
    ys = model.apply({}, xs, mask=mask, rngs={"noise": jax.random.key(3)})[..., 0]
    assert np.all(ys[~mask] == 0)
    # Both rows draw with one key a step: equal where both are valid.
    np.testing.assert_array_equal(ys[0, [1, 3]] == ys[1, [1, 3]], True)
    steps = {float(ys[0, 0]), float(ys[0, 1]), float(ys[1, 2]), float(ys[0, 3])}
    assert len(steps) == (4 if split else 1)
