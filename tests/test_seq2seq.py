"""The encoder-decoder against a NumPy loop, and its padding invariances.

The reference (``reference_logits``) runs one example at a time over its
valid tokens only, in float64, from the equations in ``seqmask.seq2seq``'s
docstring (LSTM steps from ``numpy_reference``); it covers every option the
models below use: stacked and one-directional encoders, stacked decoders,
attention or none, the dense, copying and absent bridges, input feeding,
tied embeddings, explicit dropout masks, and decoders fed their own argmax.
The batches hold a source longer than its target, one shorter, and an
empty source; padded source and target positions hold garbage ids (out of
range, negative, and ids whose embedding rows are NaN). Shapes are tiny and
each jitted function is compiled once (with LLVM's optimisations off: every
program here runs once or twice).
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
from helpers import made_once, mask_patterns

from seqmask import cells, decoding, losses, seq2seq
from seqmask.nnx import Seq2Seq

fast_jit = functools.partial(
    jax.jit, compiler_options={"xla_backend_optimization_level": 0}
)
VS, VT, E, H = 9, 8, 4, 5
BOS, EOS, PAD = 1, 2, 0
POISON_SOURCE, POISON_TARGET = VS - 1, VT - 1  # NaN embedding rows
MODEL = seq2seq.encoder_decoder(
    VS, VT, embed_size=E, hidden_size=H, bos_id=BOS, eos_id=EOS, pad_id=PAD
)
# (source ids, target ids with EOS): source longer than target, shorter, empty.
EXAMPLES = [
    ([3, 4, 5, 6, 7], [4, 3, EOS]),
    ([5, 3], [3, 5, 6, 4, 3, EOS]),
    ([], [6, EOS]),
]
S_MAX, T_MAX = 5, 6


def perturbed(model, seed=0, poison=True):
    """Parameters with larger-than-default weights, so that attention is far
    from uniform (perturbed in NumPy: eager JAX ops would each compile)."""
    params = fast_jit(model.init)(jax.random.key(seed))
    rng = np.random.default_rng(seed + 1)
    params = jax.tree.map(
        lambda leaf: np.asarray(leaf) + 0.3 * rng.normal(size=leaf.shape), params
    )
    if poison:
        params["source_embedding"][POISON_SOURCE] = np.nan
        params["target_embedding"][POISON_TARGET] = np.nan
    return jax.tree.map(lambda leaf: jnp.asarray(leaf, jnp.float32), params)


# Made when a test first needs them, not when the module is collected (every
# test worker collects every module).
@made_once
def model_params():
    return perturbed(MODEL)


@made_once
def finite_params():
    """For decoding: a generated token is fed back, so no embedding row may
    be NaN."""
    params = model_params()
    return {
        **params,
        "source_embedding": jnp.nan_to_num(params["source_embedding"]),
        "target_embedding": jnp.nan_to_num(params["target_embedding"]),
    }


def batch(garbage: bool, seed: int = 0, examples=EXAMPLES):
    rng = np.random.default_rng(seed)
    source = np.full((len(examples), S_MAX), PAD, np.int32)
    targets = np.full((len(examples), T_MAX), PAD, np.int32)
    if garbage:
        source = rng.choice([POISON_SOURCE, 999, -7, 4], size=source.shape)
        targets = rng.choice([POISON_TARGET, 999, -7, 3], size=targets.shape)
    source_lengths = np.array([len(s) for s, _ in examples], np.int32)
    target_lengths = np.array([len(t) for _, t in examples], np.int32)
    for row, (src, tgt) in enumerate(examples):
        source[row, : len(src)] = src
        targets[row, : len(tgt)] = tgt
    return (
        source.astype(np.int32),
        source_lengths,
        targets.astype(np.int32),
        target_lengths,
    )


# --------------------------------------------------------------------------
# The NumPy reference


def _run_lstm(params, xs, size):
    carry, outputs = (np.zeros(size), np.zeros(size)), []
    for x in xs:
        carry, y = ref.lstm_step(params, carry, x)
        outputs.append(y)
    return carry, np.array(outputs).reshape(len(xs), size)


def _layers(tree, count):
    return [tree] if count == 1 else list(tree)


def reference_encoder(p, source, *, bidirectional, layers, size, keep=None):
    """``(final carries a layer, memory values)`` for one example."""
    xs = p["source_embedding"][np.asarray(source, int)].reshape(len(source), E)
    if keep is not None:
        xs = xs * keep[: len(source)]
    finals = []
    for layer in _layers(p["encoder"], layers):
        if bidirectional:
            forward, out_f = _run_lstm(layer["forward"], xs, size)
            backward, out_b = _run_lstm(layer["backward"], xs[::-1], size)
            finals.append((forward, backward))
            xs = np.concatenate([out_f, out_b[::-1]], axis=-1)
        else:
            final, xs = _run_lstm(layer, xs, size)
            finals.append(final)
    return finals, xs


def reference_logits(params, source, targets, **options):
    """One example, valid tokens only: logits ``[len(targets), VT]``.

    ``options``: ``bidirectional``, ``encoder_layers``, ``decoder_layers``,
    ``attention`` (``"additive"``, ``"general"`` or None), ``bridge``
    (``"dense"``, ``"copy"``, ``"none"``), ``input_feeding``, ``tie``,
    ``size`` (the cells' hidden size), ``feed`` (``"teacher"`` or
    ``"argmax"``), ``keeps`` (``{"source": [S, E], "target": [T, E],
    "between": [T, H], "output": [T, A]}``: keep masks, already scaled).
    """
    o = dict(
        bidirectional=True,
        encoder_layers=1,
        decoder_layers=1,
        attention="additive",
        bridge="dense",
        input_feeding=True,
        tie=False,
        size=H,
        feed="teacher",
        keeps={},
    )
    o.update(options)
    p = jax.tree.map(lambda x: np.asarray(x, np.float64), params)
    size, keeps = o["size"], o["keeps"]
    finals, values = reference_encoder(
        p,
        source,
        bidirectional=o["bidirectional"],
        layers=o["encoder_layers"],
        size=size,
        keep=keeps.get("source"),
    )
    count = o["decoder_layers"]
    if o["bridge"] == "dense":
        z = np.concatenate([np.ravel(x) for x in jax.tree.leaves(finals)])
        leaves = [np.tanh(z @ w["kernel"] + w["bias"]) for w in p["bridge"]]
        carries = [tuple(leaves[2 * i : 2 * i + 2]) for i in range(count)]
    elif o["bridge"] == "copy":
        carries = [finals[0]]
    else:
        carries = [(np.zeros(size), np.zeros(size)) for _ in range(count)]
    attentional = np.zeros(p["attentional"]["kernel"].shape[1]) if o["attention"] else 0
    kernel = p["target_embedding"].T if o["tie"] else p["output"]["kernel"]
    logits, previous = [], BOS
    for t, token in enumerate(targets):
        x = p["target_embedding"][previous]
        if "target" in keeps:
            x = x * keeps["target"][t]
        if o["input_feeding"]:
            x = np.concatenate([x, attentional])
        for index, layer in enumerate(_layers(p["decoder"], count)):
            carries[index], x = ref.lstm_step(layer, carries[index], x)
            if "between" in keeps and index < count - 1:
                x = x * keeps["between"][t]
        vector = x
        if o["attention"]:
            context = _reference_context(p["attention"], o["attention"], x, values)
            vector = np.tanh(np.concatenate([x, context]) @ p["attentional"]["kernel"])
            attentional = vector
        if "output" in keeps:
            vector = vector * keeps["output"][t]
        logits.append(vector @ kernel + p["output"]["bias"])
        previous = token if o["feed"] == "teacher" else int(np.argmax(logits[-1]))
    return np.array(logits)


def _reference_context(att, kind, query, values):
    if not len(values):
        return np.zeros(values.shape[-1])
    if kind == "additive":
        hidden = np.tanh(
            query @ att["query_kernel"] + values @ att["memory_kernel"] + att["bias"]
        )
        scores = hidden @ att["energy"]
    else:
        scores = values @ att["kernel"].T @ query
    weights = np.exp(scores - scores.max())
    return (weights / weights.sum()) @ values


def reference_loss(params, examples=EXAMPLES, **options):
    total, count = 0.0, 0
    for source, targets in examples:
        logits = reference_logits(params, source, targets, **options)
        for row, label in zip(logits, targets, strict=True):
            top = row.max()
            total += top + np.log(np.sum(np.exp(row - top))) - row[label]
            count += 1
    return total / count


def assert_rows_match(logits, examples, want_fn, rtol=1e-4, atol=1e-5):
    for row, (source, targets) in enumerate(examples):
        want = want_fn(source, targets)
        got = np.asarray(logits)[row, : len(targets)]
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


# --------------------------------------------------------------------------
# The default model


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
    clean_loss, clean_grads = loss_and_grad(model_params(), *batch(garbage=False))
    loss, grads = loss_and_grad(model_params(), *batch(garbage=True))
    np.testing.assert_allclose(loss, reference_loss(model_params()), rtol=2e-5)
    assert loss == clean_loss
    for got, want in zip(
        jax.tree.leaves(grads), jax.tree.leaves(clean_grads), strict=True
    ):
        assert np.all(np.isfinite(got))
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(grads["source_embedding"][POISON_SOURCE], 0.0)
    np.testing.assert_array_equal(grads["target_embedding"][POISON_TARGET], 0.0)


def test_a_wide_id_out_of_range_at_a_valid_position_is_nan_under_jit(x64):
    """Under plain ``jit`` (no checkify) an out-of-range id that is read
    gives NaN logits, loudly. 64-bit ids past 2**32 were cut to 32 bits by
    the embedding gather (2**32 + 3 read row 3): the logits looked fine."""
    apply = jax.jit(lambda source, target: MODEL.apply(model_params(), source, target))
    target = np.array([[BOS, 3, 4]], np.int64)
    for dtype in (np.int64, np.uint64):
        good = apply(np.array([[3, 4]], dtype), target.astype(dtype))
        assert np.isfinite(np.asarray(good)).all()
        bad_source = apply(np.array([[3, 2**32 + 3]], dtype), target.astype(dtype))
        assert np.isnan(np.asarray(bad_source)).all(), dtype
        # The targets are fed back shifted by one: the bad id is read at step 2.
        bad_target = np.array([[BOS, 2**32 + 3, 4]], dtype)
        logits = np.asarray(apply(np.array([[3, 4]], dtype), bad_target))
        assert np.isfinite(logits[:, :2]).all() and np.isnan(logits[:, 2]).all()


def test_narrow_token_dtypes_give_what_int32_tokens_give():
    """uint8 / int8 tokens with 300 target classes: the model's own
    predictions are fed back, and the pad compared, without wrapping (id 299
    was fed back as 43, and pad_id=-100 overflowed against uint8 targets)."""
    model = seq2seq.encoder_decoder(10, 300, embed_size=4, hidden_size=4, pad_id=-100)
    params = model.init(jax.random.key(0))
    params["output"]["bias"] = params["output"]["bias"].at[299].set(100.0)
    source = np.array([[3, 4, 5], [6, 7, 8]])
    targets = np.array([[5, 6, 2], [7, 8, 2]])
    state = model.encode(params, source)
    inputs, mask = np.array([[1, 5, 6], [1, 7, 8]]), np.ones((2, 3), bool)

    def run(dtype):
        logits, fed = seq2seq.own_predictions(
            model.config,
            params,
            state,
            inputs.astype(dtype),
            mask,
            sampling_probability=1.0,
        )
        return logits, fed, model.loss(params, source, targets.astype(dtype))

    logits, fed, loss = run(np.int32)
    np.testing.assert_array_equal(fed, [[1, 299, 299], [1, 299, 299]])
    for dtype in (np.uint8, np.int8):
        narrow_logits, narrow_fed, narrow_loss = run(dtype)
        np.testing.assert_array_equal(narrow_fed, fed)
        np.testing.assert_allclose(narrow_logits, logits, rtol=1e-6)
        np.testing.assert_allclose(narrow_loss, loss, rtol=1e-6)
    # 2**32 - 1 is not the pad -1 (a wide id must not be widened into it): it
    # is an id out of range, at a position the default target mask keeps.
    wrapped = seq2seq.encoder_decoder(10, 300, embed_size=4, hidden_size=4, pad_id=-1)
    bad = np.array([[5, 2**32 - 1, 2], [7, 8, 2]], np.uint32)
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 300\).*4294967295"):
        wrapped.loss(wrapped.init(jax.random.key(0)), source, bad)


def test_teacher_forcing_equals_reference_and_stepping_with_any_source_mask():
    """Per-position logits equal the NumPy loop and model.step fed the gold
    prefix; moving each source to another offset (left padding) changes
    nothing."""
    source, source_lengths, targets, target_lengths = batch(garbage=True, seed=1)
    mask = np.arange(S_MAX) < source_lengths[:, None]
    logits = np.asarray(
        teacher_forced(model_params(), source, mask, targets, target_lengths)
    )
    shifted_source, shifted_mask = source.copy(), np.zeros_like(mask)
    for row, (src, _) in enumerate(EXAMPLES):
        offset = S_MAX - len(src)
        shifted_source[row] = np.roll(source[row], offset)
        shifted_mask[row, offset:] = True
    shifted = teacher_forced(
        model_params(), shifted_source, shifted_mask, targets, target_lengths
    )
    state = fast_jit(MODEL.encode)(
        model_params(), source, source_mask=jnp.asarray(mask)
    )
    step = fast_jit(MODEL.step)
    token = jnp.full((len(EXAMPLES),), BOS, jnp.int32)
    for t in range(T_MAX):
        state, step_logits = step(model_params(), state, token)
        for row, (_, tgt) in enumerate(EXAMPLES):
            if t < len(tgt):
                np.testing.assert_allclose(
                    logits[row, t], step_logits[row], rtol=1e-5, atol=1e-6
                )
        token = jnp.asarray(np.where(t + 1 < target_lengths, targets[:, t], EOS))
    assert_rows_match(
        logits, EXAMPLES, functools.partial(reference_logits, model_params())
    )
    for row, (_, tgt) in enumerate(EXAMPLES):
        np.testing.assert_allclose(
            shifted[row, : len(tgt)], logits[row, : len(tgt)], rtol=1e-6, atol=1e-6
        )


def test_an_empty_source_is_a_row_with_no_valid_source_position():
    """A source of length 0 is defined as rows with no valid source
    position: the NumPy reference for an empty source (encoder carries from
    their start, zero attention context), and the same logits as a source
    whose mask is all false."""
    _, _, targets, target_lengths = batch(False)
    empty = np.zeros((len(EXAMPLES), 0), np.int32)
    logits = MODEL.apply(finite_params(), empty, targets, target_lengths=target_lengths)
    examples = [([], tgt) for _, tgt in EXAMPLES]
    assert_rows_match(
        logits, examples, lambda src, tgt: reference_logits(finite_params(), src, tgt)
    )
    unread = np.full((len(EXAMPLES), 3), 4, np.int32)
    masked = MODEL.apply(
        finite_params(),
        unread,
        targets,
        source_mask=np.zeros(unread.shape, bool),
        target_lengths=target_lengths,
    )
    np.testing.assert_allclose(logits, masked, rtol=1e-6, atol=1e-6)


def test_any_cell_record_works_through_its_three_functions():
    """A Cell that is only init / initial_carry / apply (no hidden size, no
    hoisted projection: what an adapted Flax cell gives) builds the same
    model as the built-in LSTM."""
    lstm = cells.lstm(H)
    bare = cells.Cell(lstm.init, lstm.initial_carry, lstm.apply, name="bare")
    model = seq2seq.encoder_decoder(
        VS, VT, embed_size=E, hidden_size=H, encoder_cell=bare, decoder_cell=bare
    )
    source, source_lengths, targets, target_lengths = batch(garbage=True)
    loss = fast_jit(model.loss)(
        model_params(),
        source,
        targets,
        source_lengths=source_lengths,
        target_lengths=target_lengths,
    )
    want, _ = loss_and_grad(
        model_params(), source, source_lengths, targets, target_lengths
    )
    np.testing.assert_allclose(loss, want, rtol=1e-6)


def test_a_bfloat16_decoder_after_a_float32_encoder_starts_from_the_bridge():
    """Decoder cells with bfloat16 parameters (and carries) after a float32
    encoder: the dense bridge, computed in float32, gives the decoder a
    carry in its own dtype, and the logits are the float64 loop's to
    bfloat16 accuracy. The bridge's float32 carry was refused by the
    decoder cell's carry check."""
    model = seq2seq.encoder_decoder(
        VS,
        VT,
        embed_size=E,
        hidden_size=H,
        decoder_cell=cells.lstm(H, param_dtype=jnp.bfloat16),
    )
    # Perturbed as the other tests' parameters, each back in its own dtype.
    params = jax.tree.map(
        lambda leaf, like: jnp.asarray(leaf, like.dtype),
        perturbed(model, poison=False),
        fast_jit(model.init)(jax.random.key(0)),
    )
    assert {leaf.dtype for leaf in jax.tree.leaves(params["decoder"])} == {
        jnp.dtype(jnp.bfloat16)
    }
    source, source_lengths, targets, target_lengths = batch(garbage=False)
    lengths = {"source_lengths": source_lengths, "target_lengths": target_lengths}
    state = fast_jit(model.encode)(params, source, source_lengths=source_lengths)
    assert {leaf.dtype for leaf in jax.tree.leaves(state.carry)} == {
        jnp.dtype(jnp.bfloat16)
    }
    logits = fast_jit(model.apply)(params, source, targets, **lengths)
    assert_rows_match(
        logits,
        EXAMPLES,
        functools.partial(reference_logits, params, attention="additive"),
        rtol=0.05,
        atol=0.05,
    )


@pytest.mark.parametrize("attention", ["additive", "general"])
def test_bfloat16_cells_compute_the_model_and_keep_the_state_dtypes(attention):
    """Cells computing in bfloat16 (float32 parameters, as in mixed-precision
    training) build a model whose logits are the float64 loop's to bfloat16
    accuracy, with input feeding (the attentional vector, computed by the
    float32 attention layer, is fed back in the state's dtype); stepping,
    decoding and the gradient of the loss run, and a step returns the
    dtypes of the state it was given."""
    narrow = cells.lstm(H, dtype=jnp.bfloat16)
    model = seq2seq.encoder_decoder(
        VS,
        VT,
        embed_size=E,
        hidden_size=H,
        attention=attention,
        encoder_cell=narrow,
        decoder_cell=narrow,
    )
    params = perturbed(model, poison=False)
    source, source_lengths, targets, target_lengths = batch(garbage=False)
    lengths = {"source_lengths": source_lengths, "target_lengths": target_lengths}
    logits = fast_jit(model.apply)(params, source, targets, **lengths)
    assert_rows_match(
        logits,
        EXAMPLES,
        functools.partial(reference_logits, params, attention=attention),
        rtol=0.05,
        atol=0.05,
    )
    state = fast_jit(model.encode)(params, source, source_lengths=source_lengths)
    token = jnp.full((len(EXAMPLES),), BOS, jnp.int32)
    stepped, _ = fast_jit(model.step)(params, state, token)
    assert jax.tree.map(lambda x: x.dtype, stepped) == jax.tree.map(
        lambda x: x.dtype, state
    )
    grads = fast_jit(jax.grad(model.loss))(params, source, targets, **lengths)
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(grads))
    # The best beam's score is the log-probability that teacher forcing
    # gives its tokens (no length penalty).
    search = functools.partial(model.beam_search, beam_width=2, max_length=T_MAX)
    decoded = fast_jit(search)(params, source, source_lengths=source_lengths)
    best, best_lengths = decoded.tokens[:, 0], decoded.lengths[:, 0]
    forced = fast_jit(model.apply)(
        params,
        source,
        best,
        source_lengths=source_lengths,
        target_lengths=best_lengths,
    )
    # The model never emits its pad id: the distribution is renormalised
    # without it.
    forced = forced.astype(jnp.float32).at[..., PAD].set(-jnp.inf)
    log_probs = jax.nn.log_softmax(forced)
    chosen = jnp.take_along_axis(log_probs, best[..., None], axis=-1)[..., 0]
    valid = np.arange(T_MAX) < np.asarray(best_lengths)[:, None]
    np.testing.assert_allclose(
        decoded.scores[:, 0], np.where(valid, chosen, 0.0).sum(-1), rtol=0.02, atol=0.02
    )


def test_decoder_inputs_match_a_loop_for_any_mask():
    rng = np.random.default_rng(5)
    mask = mask_patterns(rng)
    targets = rng.integers(0, 50, size=mask.shape).astype(np.int32)
    got = np.asarray(seq2seq.decoder_inputs(targets, mask, bos_id=99))
    for b in range(mask.shape[0]):
        previous = 99
        for t in range(mask.shape[1]):
            if mask[b, t]:
                assert got[b, t] == previous
                previous = targets[b, t]
            else:
                assert got[b, t] == 99


@fast_jit
def losses_and_logits(params, source, source_lengths, targets, target_mask, weights):
    kwargs_source = dict(source_lengths=source_lengths)
    kwargs = dict(target_mask=target_mask, **kwargs_source)
    logits = MODEL.apply(params, source, targets, **kwargs)
    results = {
        (name, smoothing, reduction): MODEL.loss(
            params,
            source,
            targets,
            weights=w,
            label_smoothing=smoothing,
            reduction=reduction,
            **kwargs,
        )
        for name, w in (("none", None), ("row", weights[:, 0]), ("token", weights))
        for smoothing in (0.0, 0.2)
        for reduction in ("weighted_mean", "sequence_mean", "none")
    }
    # A padding id outside the vocabulary, read by the default target mask.
    outside = seq2seq.from_config(MODEL.config._replace(pad_id=-100))
    padded = jnp.where(target_mask, targets, -100)
    results[("pad -100", 0.0, "")] = outside.loss(
        params, source, padded, **kwargs_source
    )
    return logits, results


def test_loss_options_equal_seqmask_losses_on_apply_logits():
    """weights ([B] or [B, T]), label smoothing and reductions are those of
    seqmask.losses on apply's logits, with the weights kept inside the target
    mask: NaN weights at padded positions change nothing. A padding id
    outside the vocabulary (-100) works through the default mask."""
    source, source_lengths, targets, target_lengths = batch(garbage=False, seed=4)
    mask = np.arange(T_MAX) < target_lengths[:, None]
    rng = np.random.default_rng(6)
    weights = rng.uniform(0.5, 2.0, size=mask.shape).astype(np.float32)
    weights[:, 0] = [1.0, 3.0, 0.5]
    weights[~mask] = np.nan
    finite = finite_params()
    logits, results = losses_and_logits(
        finite, source, source_lengths, targets, mask, weights
    )
    np.testing.assert_array_equal(
        results.pop(("pad -100", 0.0, "")), results[("none", 0.0, "weighted_mean")]
    )
    for (name, smoothing, reduction), value in results.items():
        if name == "none":
            w = mask.astype(np.float32)
        elif name == "row":
            w = np.where(mask, weights[:, :1], 0.0).astype(np.float32)
        else:
            w = np.where(mask, weights, 0.0).astype(np.float32)
        want = losses.softmax_cross_entropy_with_integer_labels(
            logits, targets, w, reduction=reduction, label_smoothing=smoothing
        )
        assert np.all(np.isfinite(value))
        np.testing.assert_allclose(value, want, rtol=1e-6, atol=1e-7)


@fast_jit
def layout_losses(params, source, source_lengths, targets, target_lengths, weights):
    def loss(layout, reduction, weighted=True, row=None):
        pick = (lambda x: x[row]) if row is not None else (lambda x: x)
        return MODEL.loss(
            params,
            pick(source).reshape(*layout, -1),
            pick(targets).reshape(*layout, -1),
            source_lengths=pick(source_lengths).reshape(layout),
            target_lengths=pick(target_lengths).reshape(layout),
            weights=pick(weights).reshape(*layout, -1) if weighted else None,
            reduction=reduction,
        )

    return {
        "per_token": loss((3,), "none", weighted=False),  # 0 where padded
        "row": loss((), "sequence_mean", row=1),
        **{
            f"{reduction} {layout}": loss(layout, reduction)
            for reduction in ("sequence_mean", "weighted_mean")
            for layout in ((3,), (3, 1), (1, 3))
        },
    }


def test_loss_reductions_do_not_depend_on_the_batch_layout():
    """Every entry of [*batch] is one target sequence: a batch of 3 rows laid
    out as [3], [3, 1], [1, 3] gives one loss, and one row with no batch axis
    gives that row's. sequence_mean is checked against the per-token losses
    reduced by hand (each row's weighted mean, averaged)."""
    source, source_lengths, targets, target_lengths = batch(garbage=False, seed=4)
    rng = np.random.default_rng(9)
    weights = rng.uniform(0.5, 2.0, size=targets.shape).astype(np.float32)
    mask = np.arange(T_MAX) < target_lengths[:, None]
    results = layout_losses(
        finite_params(), source, source_lengths, targets, target_lengths, weights
    )
    w = np.where(mask, weights, 0.0)
    per_row = (np.asarray(results.pop("per_token")) * w).sum(1) / w.sum(1)
    np.testing.assert_allclose(results.pop("row"), per_row[1], rtol=1e-5)
    np.testing.assert_allclose(results["sequence_mean (3,)"], per_row.mean(), rtol=1e-5)
    for name, value in results.items():
        reduction = name.split()[0]
        np.testing.assert_allclose(value, results[f"{reduction} (3,)"], rtol=1e-6)


@fast_jit
def any_target_mask(params, source, source_lengths, targets, target_mask):
    kwargs = dict(source_lengths=source_lengths, target_mask=target_mask)
    return (
        MODEL.apply(params, source, targets, **kwargs),
        MODEL.loss(params, source, targets, **kwargs),
    )


def test_any_target_mask_reads_the_valid_targets_in_order():
    """Left-padded targets and targets with holes give, at their valid
    positions, exactly the logits and the loss of right-padded ones."""
    source, source_lengths, targets, target_lengths = batch(garbage=True, seed=7)
    right_mask = np.arange(T_MAX) < target_lengths[:, None]
    right = any_target_mask(model_params(), source, source_lengths, targets, right_mask)
    rng = np.random.default_rng(8)
    for pattern in ("left", "holes"):
        moved = rng.choice([POISON_TARGET, 999, -7], size=targets.shape)
        mask = np.zeros_like(right_mask)
        for row, length in enumerate(target_lengths):
            if pattern == "left":
                positions = np.arange(T_MAX - length, T_MAX)
            else:
                positions = np.sort(rng.choice(T_MAX, size=length, replace=False))
            mask[row, positions] = True
            moved[row, positions] = targets[row, :length]
        logits, loss = any_target_mask(
            model_params(), source, source_lengths, moved.astype(np.int32), mask
        )
        np.testing.assert_allclose(loss, right[1], rtol=1e-6)
        np.testing.assert_allclose(
            np.asarray(logits)[mask], np.asarray(right[0])[right_mask], rtol=1e-6
        )


@fast_jit
def greedy_and_beam(params, source, source_mask):
    greedy = MODEL.greedy(params, source, source_mask=source_mask, max_length=T_MAX)
    beam = MODEL.beam_search(
        params, source, source_mask=source_mask, max_length=T_MAX, beam_width=1
    )
    return greedy, beam


def test_decoding_the_model_is_padding_invariant():
    """Greedy (and beam width 1) outputs do not depend on garbage padding, the
    source offset, or the other rows of the batch."""
    source, source_lengths, _, _ = batch(garbage=True, seed=2)
    mask = np.arange(S_MAX) < source_lengths[:, None]
    greedy, beam = greedy_and_beam(finite_params(), source, mask)
    np.testing.assert_array_equal(beam.tokens[:, 0], greedy.tokens)
    order = np.array([2, 0, 1])
    other, _, _, _ = batch(garbage=True, seed=3)
    moved_source, moved_mask = other[order], np.zeros_like(mask)
    for row, index in enumerate(order):  # right-aligned: left padding
        length = source_lengths[index]
        moved_source[row, S_MAX - length :] = source[index, :length]
        moved_mask[row, S_MAX - length :] = True
    moved, _ = greedy_and_beam(finite_params(), moved_source, moved_mask)
    np.testing.assert_array_equal(moved.tokens, greedy.tokens[order])
    np.testing.assert_array_equal(moved.lengths, greedy.lengths[order])


# --------------------------------------------------------------------------
# Other compositions, each against the reference


def test_plain_stacked_encoder_decoder_with_tied_embeddings():
    """No attention (no input feeding), one-directional two-layer encoder,
    two-layer decoder, dense bridge from every encoder layer, tied output
    embedding: the NumPy loop written for exactly that model. The tied
    embedding gets the gradient of both its uses: the untied model with
    kernel = embedding transposed has the same loss, and the sum of its two
    gradients."""
    options = dict(
        embed_size=E,
        hidden_size=E,
        attention=None,
        bidirectional=False,
        encoder_layers=2,
        decoder_layers=2,
    )
    tied = seq2seq.encoder_decoder(VS, VT, tie_embeddings=True, **options)
    untied = seq2seq.encoder_decoder(VS, VT, **options)
    params = perturbed(tied, seed=3, poison=False)
    assert set(params["output"]) == {"bias"}
    untied_params = {
        **params,
        "output": {**params["output"], "kernel": params["target_embedding"].T},
    }
    source, source_lengths, targets, target_lengths = batch(garbage=True, seed=9)
    kwargs = dict(source_lengths=source_lengths, target_lengths=target_lengths)

    @fast_jit
    def run(params, untied_params):
        def loss(model, params):
            return model.loss(params, source, targets, **kwargs)

        return (
            tied.apply(params, source, targets, **kwargs),
            jax.value_and_grad(functools.partial(loss, tied))(params),
            jax.value_and_grad(functools.partial(loss, untied))(untied_params),
        )

    logits, (loss, grads), (untied_loss, untied_grads) = run(params, untied_params)
    reference = functools.partial(
        reference_logits,
        params,
        size=E,
        attention=None,
        bidirectional=False,
        encoder_layers=2,
        decoder_layers=2,
        input_feeding=False,
        tie=True,
    )
    assert_rows_match(logits, EXAMPLES, reference)
    np.testing.assert_allclose(loss, untied_loss, rtol=1e-6)
    np.testing.assert_allclose(
        grads["target_embedding"],
        untied_grads["target_embedding"] + untied_grads["output"]["kernel"].T,
        rtol=1e-5,
        atol=1e-7,
    )


def copy_carry(carry):
    """The bridge of Flax's seq2seq example: the encoder's final carry."""
    return carry


# Flax's seq2seq example, with encoder_decoder's options alone: a
# one-directional LSTM encoder, no attention, the decoder started from the
# encoder's final carry and trained on its own samples.
FLAX_LIKE = seq2seq.encoder_decoder(
    VS,
    VT,
    embed_size=E,
    hidden_size=H,
    bidirectional=False,
    attention=None,
    bridge=copy_carry,
)
FLAX_OPTIONS = dict(
    attention=None, bidirectional=False, bridge="copy", input_feeding=False
)


def _inverse_cdf(logits, uniform):
    probs = np.exp(logits - logits.max())
    cdf = np.cumsum(probs / probs.sum())
    return min(int(np.searchsorted(cdf / cdf[-1], uniform, side="right")), VT - 1)


def test_flax_example_model_fed_its_own_predictions():
    """The Flax-example model fed its own argmax equals the NumPy loop that
    feeds back the argmax. Fed its own samples with a traced scheduled
    probability, each fed token is the documented coin's choice between the
    previous target and the inverse-CDF draw, and logits and gradients equal
    teacher forcing on the fed tokens: no gradient through the choice."""
    params = perturbed(FLAX_LIKE, seed=5, poison=False)
    source, source_lengths, targets, target_lengths = batch(garbage=True, seed=11)
    kwargs = dict(source_lengths=source_lengths, target_lengths=target_lengths)
    kwargs_source = dict(source_lengths=source_lengths)
    key = jax.random.key(12)
    config = FLAX_LIKE.config

    @fast_jit
    def run(params, probability):
        argmax = FLAX_LIKE.apply(
            params, source, targets, sampling_probability=1.0, **kwargs
        )
        mask = jnp.arange(T_MAX)[None, :] < target_lengths[:, None]
        inputs = seq2seq.decoder_inputs(targets, mask, BOS)

        def own_loss(params):
            state = seq2seq.encode(config, params, source, **kwargs_source)
            logits, fed = seq2seq.own_predictions(
                config,
                params,
                state,
                inputs,
                mask,
                sampling_probability=probability,
                sampling="sample",
                sampling_key=key,
            )
            return _mean_ce(logits, targets, mask), (logits, fed)

        (own, (logits, fed)), own_grads = jax.value_and_grad(own_loss, has_aux=True)(
            params
        )

        def forced_loss(params):
            state = seq2seq.encode(config, params, source, **kwargs_source)
            logits = seq2seq.teacher_forcing(config, params, state, fed, mask)
            return _mean_ce(logits, targets, mask), logits

        (forced, forced_logits), forced_grads = jax.value_and_grad(
            forced_loss, has_aux=True
        )(params)
        return (
            argmax,
            (own, logits, fed, own_grads),
            (forced, forced_logits, forced_grads),
        )

    argmax, own, forced = run(params, jnp.float32(0.5))
    reference = functools.partial(
        reference_logits, params, feed="argmax", **FLAX_OPTIONS
    )
    assert_rows_match(argmax, EXAMPLES, reference)

    _, logits, fed, own_grads = own
    coin_key, draw_key = jax.random.split(key)
    coins = np.asarray(jax.random.bernoulli(coin_key, 0.5, (T_MAX, 3))).T
    uniforms = np.asarray(jax.random.uniform(draw_key, (T_MAX, 3))).T
    assert coins.any() and not coins.all()
    logits = np.asarray(logits, np.float64)
    for row, (_, tgt) in enumerate(EXAMPLES):
        assert fed[row, 0] == BOS
        for t in range(1, len(tgt)):
            drawn = _inverse_cdf(logits[row, t - 1], uniforms[row, t - 1])
            assert fed[row, t] == (drawn if coins[row, t] else tgt[t - 1])
        assert np.all(np.asarray(fed)[row, len(tgt) :] == BOS)
    np.testing.assert_allclose(own[0], forced[0], rtol=1e-6)
    np.testing.assert_allclose(logits, forced[1], rtol=1e-5, atol=1e-6)
    for got, want in zip(
        jax.tree.leaves(own_grads), jax.tree.leaves(forced[2]), strict=True
    ):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def _mean_ce(logits, targets, mask):
    return losses.softmax_cross_entropy_with_integer_labels(
        logits, targets, mask.astype(jnp.float32)
    )


def test_scheduled_sampling_limits():
    """A traced probability of 0 is teacher forcing; of 1 with argmax, the
    static always-own path (both through the in-scan projection)."""
    params = perturbed(FLAX_LIKE, seed=6, poison=False)
    source, source_lengths, targets, target_lengths = batch(garbage=True, seed=13)
    kwargs = dict(source_lengths=source_lengths, target_lengths=target_lengths)

    @fast_jit
    def run(params, zero, one):
        def apply(**options):
            return FLAX_LIKE.apply(params, source, targets, **kwargs, **options)

        key = jax.random.key(0)
        return (
            apply(),
            apply(sampling_probability=zero, sampling_key=key),
            apply(sampling_probability=1.0),
            apply(sampling_probability=one, sampling_key=key),
        )

    teacher, traced_zero, always, traced_one = run(
        params, jnp.float32(0.0), jnp.float32(1.0)
    )
    mask = np.arange(T_MAX) < target_lengths[:, None]
    np.testing.assert_allclose(
        np.asarray(traced_zero)[mask], np.asarray(teacher)[mask], rtol=1e-5, atol=1e-6
    )
    np.testing.assert_array_equal(traced_one, always)
    assert not np.allclose(np.asarray(always)[mask], np.asarray(teacher)[mask])


# General attention without input feeding, a two-layer decoder started from
# zeros, dropout at every site, and a padding id that is not 0.
DROPOUT = dict(embedding_dropout=0.25, layer_dropout=0.3, output_dropout=0.5)
OTHER_PAD = 5
OTHER = seq2seq.encoder_decoder(
    VS,
    VT,
    embed_size=E,
    hidden_size=H,
    attention="general",
    input_feeding=False,
    decoder_layers=2,
    bridge="none",
    pad_id=OTHER_PAD,
    **DROPOUT,
)
OTHER_OPTIONS = dict(
    attention="general", input_feeding=False, decoder_layers=2, bridge="none"
)


def test_dropout_masks_follow_the_key_and_no_key_is_deterministic():
    """Without a key nothing is dropped (the reference without dropout).
    With a key every site drops with the documented mask: the reference
    given those masks."""
    params = perturbed(OTHER, seed=7, poison=False)
    source, source_lengths, targets, target_lengths = batch(garbage=True, seed=14)
    kwargs = dict(source_lengths=source_lengths, target_lengths=target_lengths)
    key = jax.random.key(21)

    @fast_jit
    def run(params):
        return (
            OTHER.apply(params, source, targets, **kwargs),
            OTHER.apply(params, source, targets, dropout_key=key, **kwargs),
        )

    plain, dropped = run(params)
    reference = functools.partial(reference_logits, params, **OTHER_OPTIONS)
    assert_rows_match(plain, EXAMPLES, reference)

    keys = jax.random.split(key, 5)
    source_keep = np.asarray(jax.random.bernoulli(keys[0], 0.75, (3, S_MAX, E))) / 0.75
    target_keep = np.asarray(jax.random.bernoulli(keys[2], 0.75, (T_MAX, 3, E)))
    between_key = jax.random.split(keys[3], 1)[0]
    between = np.asarray(jax.random.bernoulli(between_key, 0.7, (T_MAX, 3, H)))
    output = np.asarray(jax.random.bernoulli(keys[4], 0.5, (T_MAX, 3, H)))

    for row, (src, tgt) in enumerate(EXAMPLES):
        keeps = {
            "source": source_keep[row],
            "target": target_keep[:, row] / 0.75,
            "between": between[:, row] / 0.7,
            "output": output[:, row] / 0.5,
        }
        want = reference_logits(params, src, tgt, keeps=keeps, **OTHER_OPTIONS)
        np.testing.assert_allclose(
            np.asarray(dropped)[row, : len(tgt)], want, rtol=1e-4, atol=1e-5
        )


def test_conveniences_decode_with_the_models_own_ids_in_one_program():
    """model.greedy / beam_search / sample equal seqmask.decoding on model.step
    with the model's bos_id, eos_id and pad_id (here pad_id 5, not
    decoding's default 0) and pad_id's logit removed, jitted as one
    function; decoding options pass through; pad_id is never emitted before
    EOS; equal options build equal models."""
    params = perturbed(OTHER, seed=8, poison=False)
    # A likelier EOS, so that rows end (and pad) before max_length.
    bias = params["output"]["bias"]
    params["output"]["bias"] = bias.at[EOS].set(bias.max() + 0.5)
    source, source_lengths, _, _ = batch(garbage=True, seed=15)
    options = dict(source_lengths=source_lengths, max_length=T_MAX)
    key = jax.random.key(3)
    # A likelier pad too, which the model must never emit.
    params["output"]["bias"] = params["output"]["bias"].at[OTHER_PAD].set(bias.max())

    def step_without_pad(params, state, token):
        state, logits = OTHER.step(params, state, token)
        return state, logits.at[:, OTHER_PAD].set(-jnp.inf)

    @fast_jit
    def run(params):
        state = OTHER.encode(params, source, source_lengths=source_lengths)
        bos = jnp.full((3,), BOS, jnp.int32)
        ids = dict(max_length=T_MAX, eos_id=EOS, pad_id=OTHER_PAD)
        mine = (
            OTHER.greedy(params, source, **options),
            OTHER.beam_search(
                params, source, beam_width=2, length_penalty=0.6, **options
            ),
            OTHER.sample(params, source, key, temperature=0.7, **options),
        )
        theirs = (
            decoding.greedy(step_without_pad, params, state, bos, **ids),
            decoding.beam_search(
                step_without_pad,
                params,
                state,
                bos,
                beam_width=2,
                length_penalty=0.6,
                **ids,
            ),
            decoding.sample(
                step_without_pad, params, state, bos, key, temperature=0.7, **ids
            ),
        )
        return mine, theirs

    mine, theirs = run(params)
    for got, want in zip(jax.tree.leaves(mine), jax.tree.leaves(theirs), strict=True):
        np.testing.assert_array_equal(got, want)
    greedy = mine[0]
    assert np.any(greedy.lengths < T_MAX)
    for row, length in enumerate(np.asarray(greedy.lengths)):
        assert np.all(np.asarray(greedy.tokens)[row, length:] == OTHER_PAD)
        assert not np.any(np.asarray(greedy.tokens)[row, :length] == OTHER_PAD)
        if length < T_MAX:
            assert greedy.tokens[row, length - 1] == EOS
    again = seq2seq.encoder_decoder(
        VS, VT, embed_size=E, hidden_size=H, bos_id=BOS, eos_id=EOS, pad_id=PAD
    )
    assert again == MODEL and hash(again.step) == hash(MODEL.step)


def test_the_pad_stays_out_after_a_hook_that_makes_minus_inf_finite():
    """A ``logits_fn`` that soft-caps (``c * tanh(l / c)``, finite at
    ``-inf``) runs before the pad rule: the model's decoders equal
    seqmask.decoding on a step that caps, then removes the pad, and never
    emit the pad before EOS, though it is the likeliest token. A Python
    list is a source, and repetition_penalty keeps its meaning."""
    params = perturbed(OTHER, seed=8, poison=False)
    bias = params["output"]["bias"]
    params["output"]["bias"] = bias.at[OTHER_PAD].set(bias.max() + 3.0)
    source, source_lengths, _, _ = batch(garbage=True, seed=15)
    source = np.asarray(source).tolist()
    bos = jnp.full((3,), BOS, jnp.int32)
    penalty = decoding.repetition_penalty(1.5)

    def cap(step, logits, state, tokens):
        return 2.0 * jnp.tanh(penalty(step, logits, state, tokens) / 2.0)

    def reference_hook(step, logits, state, tokens):
        return cap(step, logits, state, tokens).at[:, OTHER_PAD].set(-jnp.inf)

    key = jax.random.key(5)
    options = dict(source_lengths=source_lengths, max_length=T_MAX, logits_fn=cap)
    mine = (
        OTHER.greedy(params, source, **options),
        OTHER.beam_search(params, source, beam_width=2, **options),
        OTHER.sample(params, source, key, **options),
    )
    state = OTHER.encode(params, jnp.asarray(source), source_lengths=source_lengths)
    ids = dict(max_length=T_MAX, eos_id=EOS, pad_id=OTHER_PAD, logits_fn=reference_hook)
    step = OTHER.step
    theirs = (
        decoding.greedy(step, params, state, bos, **ids),
        decoding.beam_search(step, params, state, bos, beam_width=2, **ids),
        decoding.sample(step, params, state, bos, key, **ids),
    )
    for got, want in zip(jax.tree.leaves(mine), jax.tree.leaves(theirs), strict=True):
        np.testing.assert_array_equal(got, want)
    for decoded in mine:
        tokens = np.asarray(decoded.tokens).reshape(-1, T_MAX)
        lengths = np.asarray(decoded.lengths).reshape(-1)
        for row, length in zip(tokens, lengths, strict=True):
            assert not np.any(row[:length] == OTHER_PAD)
            assert np.all(row[length:] == OTHER_PAD)


def test_nnx_module_takes_the_pure_model_and_equals_it():
    """The NNX module equals the pure functions on its parameters. The model
    is another configuration: GRU encoder, dot attention, no bridge and
    learned initial states; the decoder then starts from its learned carry,
    which gets gradient."""
    # Dot attention needs the decoder output to match the memory (2H).
    module = Seq2Seq.build(
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
    pure = module.pure_model
    pure_params = module.pure_params()
    state = nnx.state(module, nnx.Param)
    names = {str(path[0]) for path, _ in nnx.to_flat_state(state)}
    assert {"encoder_forward_initial_carry", "decoder_initial_carry_h"} <= names
    assert not any(name.startswith("bridge") for name in names)
    source, source_lengths, targets, target_lengths = batch(garbage=True)
    kwargs = dict(source_lengths=source_lengths, target_lengths=target_lengths)
    graphdef, params = nnx.split(module, nnx.Param)

    # One program for both: XLA merges the identical computations.
    @fast_jit
    def run(params, pure_params):
        def module_loss(params):
            return nnx.merge(graphdef, params).loss(source, targets, **kwargs)

        def pure_loss(params):
            return pure.loss(params, source, targets, **kwargs)

        model = nnx.merge(graphdef, params)
        decode = dict(source_lengths=source_lengths, max_length=4)
        key = jax.random.key(0)
        return (
            jax.value_and_grad(module_loss)(params),
            jax.value_and_grad(pure_loss)(pure_params),
            model.encode(source, source_lengths=source_lengths),
            (
                model.greedy(source, **decode),
                model.beam_search(source, beam_width=2, **decode),
                model.sample(source, key, **decode),
            ),
            (
                pure.greedy(pure_params, source, **decode),
                pure.beam_search(pure_params, source, beam_width=2, **decode),
                pure.sample(pure_params, source, key, **decode),
            ),
        )

    (loss, grads), (pure_loss, pure_grads), start, decoded, pure_decoded = run(
        params, pure_params
    )
    # Equal tokens and lengths; the log-probabilities to rounding (the two
    # copies in one program may be fused differently).
    for got, want in zip(
        jax.tree.leaves(decoded), jax.tree.leaves(pure_decoded), strict=True
    ):
        if jnp.issubdtype(got.dtype, jnp.floating):
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
        else:
            np.testing.assert_array_equal(got, want)
    assert np.isfinite(loss)
    np.testing.assert_allclose(loss, pure_loss, rtol=1e-6)
    flat = {
        "_".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path): leaf
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
    with pytest.raises(TypeError, match=r"Seq2Seq\.build"):
        Seq2Seq(VS, rngs=nnx.Rngs(0))  # type: ignore[arg-type]


def test_pure_modules_do_not_import_flax():
    code = (
        "import sys, seqmask.attention, seqmask.decoding, seqmask.seq2seq\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'flax', 'optax'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def _lstm_from_flax(params):
    """A Flax LSTMCell's parameters in seqmask's lstm layout (gate blocks i,
    f, g, o; Flax puts the bias on the recurrent dense)."""
    gates = ("i", "f", "g", "o")
    inputs = ("ii", "if_", "ig", "io")  # "if" is a Python keyword
    return {
        "input_kernel": jnp.concatenate(
            [params[name]["kernel"] for name in inputs], axis=1
        ),
        "recurrent_kernel": jnp.concatenate(
            [params[f"h{g}"]["kernel"] for g in gates], axis=1
        ),
        "bias": jnp.concatenate([params[f"h{g}"]["bias"] for g in gates]),
    }


def test_adapted_flax_cells_are_encoder_and_decoder_cells():
    """Flax NNX LSTM cells adapted with seqmask.nnx.as_cell build the model of
    seqmask's own LSTM: with their kernels laid out as seqmask's, the loss
    and the logits are the same."""
    from seqmask.nnx import as_cell

    encoder = as_cell(nnx.LSTMCell(E, H, rngs=nnx.Rngs(0)))
    decoder = as_cell(nnx.LSTMCell(E + H, H, rngs=nnx.Rngs(1)))
    options = dict(embed_size=E, hidden_size=H, bridge="none")
    adapted = seq2seq.encoder_decoder(
        VS, VT, encoder_cell=encoder, decoder_cell=decoder, **options
    )
    native = seq2seq.encoder_decoder(VS, VT, **options)
    params = perturbed(adapted, seed=9, poison=False)
    converted = {
        **params,
        "encoder": {
            side: _lstm_from_flax(params["encoder"][side])
            for side in ("forward", "backward")
        },
        "decoder": _lstm_from_flax(params["decoder"]),
    }
    source, source_lengths, targets, target_lengths = batch(garbage=True, seed=16)
    kwargs = dict(source_lengths=source_lengths, target_lengths=target_lengths)

    @fast_jit
    def run(params, converted):
        return (
            adapted.loss(params, source, targets, **kwargs),
            native.loss(converted, source, targets, **kwargs),
        )

    got, want = run(params, converted)
    assert np.isfinite(got)
    np.testing.assert_allclose(got, want, rtol=1e-5)
