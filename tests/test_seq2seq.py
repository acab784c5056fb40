"""The encoder-decoder against a NumPy loop, and its padding invariances.

The reference runs one example at a time over its valid tokens only, in
float64, from the equations in ``encoder_decoder``'s docstring (LSTM steps
from ``numpy_reference``). The batch under test has a source longer than its
target, one shorter, and an empty source; padded source and target positions
hold garbage ids (out of range, negative, and ids whose embedding rows are
NaN). Shapes are tiny and each jitted function is compiled once.
"""

import functools
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import numpy_reference as ref
import pytest
from flax import nnx

from seqmask import cells, decoding, seq2seq
from seqmask._nnx_seq2seq import Seq2Seq

# Every program here runs once or twice: skipping LLVM's optimisation passes
# halves the compile time that dominates this file.
fast_jit = functools.partial(
    jax.jit, compiler_options={"xla_backend_optimization_level": 0}
)
VS, VT, E, H = 9, 8, 4, 5
BOS, EOS, PAD = 1, 2, 0
POISON_SOURCE, POISON_TARGET = VS - 1, VT - 1  # NaN embedding rows
MODEL = seq2seq.encoder_decoder(
    VS, VT, embed_size=E, hidden_size=H, bos_id=BOS, eos_id=EOS, pad_id=PAD
)


def _params():
    params = MODEL.init(jax.random.key(0))
    # Larger-than-default weights so that attention is far from uniform
    # (perturbed in NumPy: eager JAX ops would each compile).
    rng = np.random.default_rng(1)
    params = jax.tree.map(
        lambda leaf: np.asarray(leaf) + 0.3 * rng.normal(size=leaf.shape), params
    )
    params["source_embedding"][POISON_SOURCE] = np.nan
    params["target_embedding"][POISON_TARGET] = np.nan
    return jax.tree.map(lambda leaf: jnp.asarray(leaf, jnp.float32), params)


PARAMS = _params()
# For decoding: a generated token is fed back, so no embedding row may be NaN.
FINITE_PARAMS = {
    **PARAMS,
    "source_embedding": jnp.nan_to_num(PARAMS["source_embedding"]),
    "target_embedding": jnp.nan_to_num(PARAMS["target_embedding"]),
}
# (source ids, target ids with EOS): source longer than target, shorter, empty.
EXAMPLES = [
    ([3, 4, 5, 6, 7], [4, 3, EOS]),
    ([5, 3], [3, 5, 6, 4, 3, EOS]),
    ([], [6, EOS]),
]
S_MAX, T_MAX = 5, 6


def batch(garbage: bool, seed: int = 0):
    rng = np.random.default_rng(seed)
    source = np.full((len(EXAMPLES), S_MAX), PAD, np.int32)
    targets = np.full((len(EXAMPLES), T_MAX), PAD, np.int32)
    if garbage:
        source = rng.choice([POISON_SOURCE, 999, -7, 4], size=source.shape)
        targets = rng.choice([POISON_TARGET, 999, -7, 3], size=targets.shape)
    source_lengths = np.array([len(s) for s, _ in EXAMPLES], np.int32)
    target_lengths = np.array([len(t) for _, t in EXAMPLES], np.int32)
    for row, (src, tgt) in enumerate(EXAMPLES):
        source[row, : len(src)] = src
        targets[row, : len(tgt)] = tgt
    return (
        source.astype(np.int32),
        source_lengths,
        targets.astype(np.int32),
        target_lengths,
    )


def reference_logits(params, source, targets):
    """One example, valid tokens only: logits [len(targets), VT] in float64."""
    p = jax.tree.map(lambda x: np.asarray(x, np.float64), params)
    xs = p["source_embedding"][np.asarray(source, int)].reshape(len(source), E)
    zero = (np.zeros(H), np.zeros(H))
    forward, backward = zero, zero
    outputs_f, outputs_b = [], [None] * len(source)
    for x in xs:
        forward, y = ref.lstm_step(p["encoder"]["forward"], forward, x)
        outputs_f.append(y)
    for t in reversed(range(len(source))):
        backward, y = ref.lstm_step(p["encoder"]["backward"], backward, xs[t])
        outputs_b[t] = y
    values = np.array(
        [np.concatenate([f, b]) for f, b in zip(outputs_f, outputs_b, strict=True)]
    ).reshape(len(source), 2 * H)
    z = np.concatenate([*forward, *backward])
    h, c = (np.tanh(z @ layer["kernel"] + layer["bias"]) for layer in p["bridge"])
    attentional = np.zeros(H)
    att = p["attention"]
    logits, previous = [], BOS
    for token in targets:
        x = np.concatenate([p["target_embedding"][previous], attentional])
        (h, c), out = ref.lstm_step(p["decoder"], (h, c), x)
        context = np.zeros(2 * H)
        if len(source):
            hidden = np.tanh(
                out @ att["query_kernel"] + values @ att["memory_kernel"] + att["bias"]
            )
            scores = hidden @ att["energy"]
            weights = np.exp(scores - scores.max())
            context = (weights / weights.sum()) @ values
        attentional = np.tanh(
            np.concatenate([out, context]) @ p["attentional"]["kernel"]
        )
        logits.append(attentional @ p["output"]["kernel"] + p["output"]["bias"])
        previous = token
    return np.array(logits)


def reference_loss(params):
    total, count = 0.0, 0
    for source, targets in EXAMPLES:
        for logits, label in zip(
            reference_logits(params, source, targets), targets, strict=True
        ):
            top = logits.max()
            total += top + np.log(np.sum(np.exp(logits - top))) - logits[label]
            count += 1
    return total / count


@fast_jit
def loss_and_grad(params, source, source_lengths, targets, target_lengths):
    def loss(params):
        return MODEL.loss(
            params,
            source,
            targets,
            source_lengths=source_lengths,
            target_lengths=target_lengths,
        )

    return jax.value_and_grad(loss)(params)


@fast_jit
def teacher_forced(params, source, source_mask, targets, target_lengths):
    return MODEL.apply(
        params,
        source,
        targets,
        source_mask=source_mask,
        target_lengths=target_lengths,
    )


def test_loss_matches_numpy_reference_and_ignores_padding():
    """Garbage, out-of-range ids and NaN embeddings at padded source and target
    positions change neither the loss nor any gradient; the loss is the mean
    cross-entropy over valid target tokens only."""
    clean_loss, clean_grads = loss_and_grad(PARAMS, *batch(garbage=False))
    loss, grads = loss_and_grad(PARAMS, *batch(garbage=True))
    np.testing.assert_allclose(loss, reference_loss(PARAMS), rtol=2e-5)
    assert loss == clean_loss
    for got, want in zip(
        jax.tree.leaves(grads), jax.tree.leaves(clean_grads), strict=True
    ):
        assert np.all(np.isfinite(got))
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(grads["source_embedding"][POISON_SOURCE], 0.0)
    np.testing.assert_array_equal(grads["target_embedding"][POISON_TARGET], 0.0)


def test_teacher_forcing_equals_reference_and_stepping_with_any_source_mask():
    """Per-position logits equal the NumPy loop and model.step fed the gold
    prefix; moving each source to another offset (left padding) changes
    nothing."""
    source, source_lengths, targets, target_lengths = batch(garbage=True, seed=1)
    mask = np.arange(S_MAX) < source_lengths[:, None]
    logits = np.asarray(teacher_forced(PARAMS, source, mask, targets, target_lengths))
    shifted_source, shifted_mask = source.copy(), np.zeros_like(mask)
    for row, (src, _) in enumerate(EXAMPLES):
        offset = S_MAX - len(src)
        shifted_source[row] = np.roll(source[row], offset)
        shifted_mask[row, offset:] = True
    shifted = teacher_forced(
        PARAMS, shifted_source, shifted_mask, targets, target_lengths
    )
    state = fast_jit(MODEL.encode)(PARAMS, source, source_mask=jnp.asarray(mask))
    step = fast_jit(MODEL.step)
    token = jnp.full((len(EXAMPLES),), BOS, jnp.int32)
    for t in range(T_MAX):
        state, step_logits = step(PARAMS, state, token)
        for row, (_, tgt) in enumerate(EXAMPLES):
            if t < len(tgt):
                np.testing.assert_allclose(
                    logits[row, t], step_logits[row], rtol=1e-5, atol=1e-6
                )
        token = jnp.asarray(np.where(t + 1 < target_lengths, targets[:, t], EOS))
    for row, (src, tgt) in enumerate(EXAMPLES):
        want = reference_logits(PARAMS, src, tgt)
        np.testing.assert_allclose(logits[row, : len(tgt)], want, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(
            shifted[row, : len(tgt)], logits[row, : len(tgt)], rtol=1e-6, atol=1e-6
        )


@fast_jit
def greedy_and_beam(params, source, source_mask):
    state = MODEL.encode(params, source, source_mask=source_mask)
    bos = jnp.full(source.shape[:1], BOS, jnp.int32)
    options = dict(max_length=T_MAX, eos_id=EOS, pad_id=PAD)
    greedy = decoding.greedy(MODEL.step, params, state, bos, **options)
    beam = decoding.beam_search(MODEL.step, params, state, bos, beam_width=1, **options)
    return greedy, beam


def test_decoding_the_model_is_padding_invariant():
    """Greedy (and beam width 1) outputs do not depend on garbage padding, the
    source offset, or the other rows of the batch."""
    source, source_lengths, _, _ = batch(garbage=True, seed=2)
    mask = np.arange(S_MAX) < source_lengths[:, None]
    greedy, beam = greedy_and_beam(FINITE_PARAMS, source, mask)
    np.testing.assert_array_equal(beam.tokens[:, 0], greedy.tokens)
    order = np.array([2, 0, 1])
    other, _, _, _ = batch(garbage=True, seed=3)
    moved_source, moved_mask = other[order], np.zeros_like(mask)
    for row, index in enumerate(order):  # right-aligned: left padding
        length = source_lengths[index]
        moved_source[row, S_MAX - length :] = source[index, :length]
        moved_mask[row, S_MAX - length :] = True
    moved, _ = greedy_and_beam(FINITE_PARAMS, moved_source, moved_mask)
    np.testing.assert_array_equal(moved.tokens, greedy.tokens[order])
    np.testing.assert_array_equal(moved.lengths, greedy.lengths[order])


def _key_name(key):
    for attribute in ("key", "idx", "name"):
        if hasattr(key, attribute):
            return str(getattr(key, attribute))
    raise AssertionError(key)


def test_nnx_module_equals_pure_functions_and_variants():
    """The NNX module equals the pure functions on its parameters. The model
    is the other configuration: GRU encoder, dot attention, no bridge and
    learned initial states; the decoder then starts from its learned carry,
    which gets gradient."""
    # Dot attention needs the decoder output to match the memory (2H).
    module = Seq2Seq(
        VS,
        VT,
        embed_size=E,
        hidden_size=H,
        encoder_cell="gru",
        decoder_cell=cells.lstm(2 * H),
        attention="dot",
        attentional_size=3,
        bridge=False,
        learnable_initial_state=True,
        rngs=nnx.Rngs(4),
    )
    pure_params = module.pure_params()
    state = nnx.state(module, nnx.Param)
    names = {str(path[0]) for path, _ in nnx.to_flat_state(state)}
    assert {"encoder_forward_initial_carry", "decoder_initial_carry_h"} <= names
    assert not any(name.startswith("bridge") for name in names)
    source, source_lengths, targets, target_lengths = batch(garbage=True)
    kwargs = dict(source_lengths=source_lengths, target_lengths=target_lengths)

    def pure_loss_fn(params):
        return module.pure_model.loss(params, source, targets, **kwargs)

    graphdef, params = nnx.split(module, nnx.Param)

    # One program for both: XLA merges the identical computations, so this
    # compiles about as fast as one of them.
    @fast_jit
    def run(params, pure_params):
        def module_loss_fn(params):
            return nnx.merge(graphdef, params).loss(source, targets, **kwargs)

        loss, grads = jax.value_and_grad(module_loss_fn)(params)
        model = nnx.merge(graphdef, params)
        start = model.encode(source, source_lengths=source_lengths)
        decoded = (
            model.greedy(source, source_lengths=source_lengths, max_length=4),
            model.beam_search(
                source, source_lengths=source_lengths, max_length=4, beam_width=2
            ),
        )
        pure = module.pure_model
        pure_start = pure.encode(pure_params, source, source_lengths=source_lengths)
        bos = jnp.full((3,), BOS, jnp.int32)
        options = dict(max_length=4, eos_id=EOS, pad_id=PAD)
        pure_decoded = (
            decoding.greedy(pure.step, pure_params, pure_start, bos, **options),
            decoding.beam_search(
                pure.step, pure_params, pure_start, bos, beam_width=2, **options
            ),
        )
        pure_loss, pure_grads = jax.value_and_grad(pure_loss_fn)(pure_params)
        return loss, grads, pure_loss, pure_grads, start, decoded, pure_decoded

    loss, grads, pure_loss, pure_grads, start, decoded, pure_decoded = run(
        params, pure_params
    )
    for got, want in zip(decoded, pure_decoded, strict=True):
        np.testing.assert_array_equal(got.tokens, want.tokens)
        np.testing.assert_array_equal(got.lengths, want.lengths)
    assert np.isfinite(loss)
    np.testing.assert_allclose(loss, pure_loss, rtol=1e-6)
    flat = {
        "_".join(_key_name(k) for k in path): leaf
        for path, leaf in jax.tree_util.tree_flatten_with_path(pure_grads)[0]
    }
    for path, value in nnx.to_flat_state(grads):
        assert np.all(np.isfinite(value[...]))
        np.testing.assert_allclose(value[...], flat[str(path[0])], rtol=1e-5, atol=1e-7)
    learned = pure_params["decoder"]["initial_carry"]
    for got, want in zip(start.carry, learned, strict=True):
        np.testing.assert_array_equal(got, np.broadcast_to(want, (3, 2 * H)))
    assert np.any(pure_grads["decoder"]["initial_carry"].h != 0)
    assert np.any(pure_grads["encoder"]["forward"]["initial_carry"] != 0)


def test_errors_name_the_argument():
    source, source_lengths, targets, target_lengths = batch(garbage=False)
    with pytest.raises(TypeError, match="source must be integer token ids"):
        MODEL.encode(PARAMS, source * 1.0)
    with pytest.raises(ValueError, match="targets must have the batch shape"):
        MODEL.loss(PARAMS, source, targets[:2])
    with pytest.raises(
        ValueError, match=r"eos_id must be a target token id in \[0, 8\)"
    ):
        seq2seq.encoder_decoder(VS, VT, eos_id=VT)
    with pytest.raises(ValueError, match="attention must be one of"):
        seq2seq.encoder_decoder(VS, VT, attention="luong")
    with pytest.raises(ValueError, match="encoder_cell must be one of"):
        seq2seq.encoder_decoder(VS, VT, encoder_cell="transformer")


def test_pure_modules_do_not_import_flax():
    code = (
        "import sys, seqmask.attention, seqmask.decoding, seqmask.seq2seq\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'flax', 'optax'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
