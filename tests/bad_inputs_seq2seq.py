"""Bad inputs to ``seqmask.seq2seq``: the options of ``encoder_decoder`` and
the arrays given to the model's functions (sources, targets, their masks and
lengths, token ids, weights, keys, sampling and decoding options).

Lengths outside ``[0, T]`` and ids outside the vocabulary at valid
positions are value mistakes: they also run traced, where checkify reports
them (ids at padded positions are never read, so they are never reported).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from bad_inputs_common import Case
from helpers import made_once

from seqmask import seq2seq

VS, VT = 7, 6
MODEL = seq2seq.encoder_decoder(VS, VT, embed_size=3, hidden_size=4)
SOURCE = np.array([[3, 4, 5], [6, 3, 0]], np.int32)
SOURCE_LENGTHS = np.array([3, 2], np.int32)
TARGETS = np.array([[3, 4, 2], [4, 2, 0]], np.int32)
TARGET_LENGTHS = np.array([3, 2], np.int32)


# Parameters and states are made when a case first needs them, not when the
# tables are collected (every test worker collects every table).
@made_once
def params():
    return MODEL.init(jax.random.key(0))


def build(**options):
    return lambda: seq2seq.encoder_decoder(VS, VT, **options)


def build_case(id_, options, error, *words) -> Case:
    return Case(f"seq2seq-build-{id_}", build(**options), error, words)


def loss(**options):
    options.setdefault("source_lengths", SOURCE_LENGTHS)
    source = options.pop("source", SOURCE)
    targets = options.pop("targets", TARGETS)
    return lambda: MODEL.loss(params(), source, targets, **options)


def encode(**options):
    source = options.pop("source", SOURCE)
    return lambda: MODEL.encode(params(), source, **options)


def _traced_encode_lengths(lengths):
    return MODEL.encode(params(), SOURCE, source_lengths=lengths).carry


def _traced_source(source):
    return MODEL.encode(params(), source, source_lengths=SOURCE_LENGTHS).carry


def _traced_target_lengths(lengths):
    return MODEL.loss(params(), SOURCE, TARGETS, target_lengths=lengths)


def _traced_targets(targets):
    return MODEL.loss(params(), SOURCE, targets, target_lengths=TARGET_LENGTHS)


def _traced_step_token(token):
    state = MODEL.encode(params(), SOURCE)
    return MODEL.step(params(), state, token)[1]


def _traced_greedy_source(source):
    return MODEL.greedy(params(), source, max_length=3).tokens


def _traced_sampling_probability(probability):
    return MODEL.loss(
        params(),
        SOURCE,
        TARGETS,
        sampling_probability=probability,
        sampling_key=jax.random.key(0),
    )


def _traced_label_smoothing(smoothing):
    return MODEL.loss(params(), SOURCE, TARGETS, label_smoothing=smoothing)


BAD_SOURCE = np.array([[3, 4, 7], [6, 3, 0]], np.int32)  # 7 = VS, at a valid spot
NEGATIVE_TARGETS = np.array([[3, -1, 2], [4, 2, 0]], np.int32)

CASES: list[Case] = [
    # encoder_decoder: sizes, ids, options
    build_case(
        "embed-size-zero",
        {"embed_size": 0},
        ValueError,
        "encoder_decoder",
        "embed_size",
        "positive int",
    ),
    Case(
        "seq2seq-build-source-vocab-float",
        lambda: seq2seq.encoder_decoder(7.0, 6),
        TypeError,
        ("encoder_decoder", "source_vocab_size", "int", "Pass 7"),
    ),
    build_case(
        "hidden-size-string",
        {"hidden_size": "8"},
        TypeError,
        "encoder_decoder",
        "hidden_size",
        "int",
    ),
    build_case(
        "encoder-layers-zero",
        {"encoder_layers": 0},
        ValueError,
        "encoder_decoder",
        "encoder_layers",
        "positive int",
    ),
    build_case(
        "decoder-layers-bool",
        {"decoder_layers": True},
        TypeError,
        "encoder_decoder",
        "decoder_layers",
        "int",
    ),
    build_case(
        "bos-out-of-vocab",
        {"bos_id": VT},
        ValueError,
        "encoder_decoder",
        "bos_id",
        r"\[0, 6\)",
        "vocabulary has 6 ids",
    ),
    build_case(
        "eos-negative",
        {"eos_id": -1},
        ValueError,
        "encoder_decoder",
        "eos_id",
        r"\[0, 6\)",
    ),
    build_case(
        "pad-beyond-int32",
        {"pad_id": 2**40},
        ValueError,
        "encoder_decoder",
        "pad_id",
    ),
    build_case(
        "pad-equals-eos",
        {"pad_id": 2},
        ValueError,
        "encoder_decoder",
        "pad_id",
        "eos_id",
        "drop every EOS",
    ),
    build_case(
        "pad-bool", {"pad_id": False}, TypeError, "encoder_decoder", "pad_id", "int"
    ),
    build_case(
        "encoder-cell-unknown",
        {"encoder_cell": "transformer"},
        ValueError,
        "encoder_decoder",
        "encoder_cell",
        "one of",
        "'lstm'",
    ),
    build_case(
        "decoder-cell-type",
        {"decoder_cell": 42},
        TypeError,
        "encoder_decoder",
        "decoder_cell",
        r"seqmask\.cells\.Cell",
    ),
    build_case(
        "attention-unknown",
        {"attention": "luong"},
        ValueError,
        "encoder_decoder",
        "attention",
        "one of",
        "'additive'",
    ),
    build_case(
        "attention-type",
        {"attention": 3},
        TypeError,
        "encoder_decoder",
        "attention",
        "Attention or None",
    ),
    build_case(
        "attention-size-zero",
        {"attention_size": 0},
        ValueError,
        "encoder_decoder",
        "attention_size",
        "positive int",
    ),
    build_case(
        "bridge-unknown",
        {"bridge": "sideways"},
        ValueError,
        "encoder_decoder",
        "bridge",
        "one of",
        "'dense'",
    ),
    build_case(
        "bridge-not-callable",
        {"bridge": 3},
        TypeError,
        "encoder_decoder",
        "bridge",
        "function",
    ),
    build_case(
        "input-feeding-without-attention",
        {"attention": None, "input_feeding": True},
        ValueError,
        "encoder_decoder",
        "input_feeding",
        "needs attention",
    ),
    build_case(
        "attentional-size-without-attention",
        {"attention": None, "attentional_size": 4},
        ValueError,
        "encoder_decoder",
        "attentional_size",
        "needs attention",
    ),
    build_case(
        "embedding-dropout-one",
        {"embedding_dropout": 1.0},
        ValueError,
        "encoder_decoder",
        "embedding_dropout",
        r"\[0, 1\)",
    ),
    build_case(
        "output-dropout-negative",
        {"output_dropout": -0.1},
        ValueError,
        "encoder_decoder",
        "output_dropout",
        r"\[0, 1\)",
    ),
    build_case(
        "layer-dropout-string",
        {"layer_dropout": "0.1"},
        TypeError,
        "encoder_decoder",
        "layer_dropout",
        "number",
    ),
    build_case(
        "bidirectional-string",
        {"bidirectional": "yes"},
        TypeError,
        "encoder_decoder",
        "bidirectional",
        "True or False",
    ),
    Case(
        "seq2seq-init-tied-sizes",
        lambda: seq2seq.encoder_decoder(
            VS, VT, embed_size=3, hidden_size=4, attention=None, tie_embeddings=True
        ).init(jax.random.key(0)),
        ValueError,
        ("encoder_decoder", "tie_embeddings", "embed_size"),
    ),
    Case(
        "seq2seq-init-dot-sizes",
        lambda: seq2seq.encoder_decoder(VS, VT, hidden_size=4, attention="dot"),
        ValueError,
        ("^encoder_decoder", "attention='dot'", r"output size \(4\)", r"\(8:"),
    ),
    # encode: sources, masks, lengths
    Case(
        "seq2seq-encode-source-float",
        encode(source=SOURCE * 1.0),
        TypeError,
        ("encode", "source", "integer"),
    ),
    Case(
        "seq2seq-encode-source-scalar",
        encode(source=np.int32(3)),
        ValueError,
        ("encode", "source", "at least 1 axes"),
    ),
    Case(
        "seq2seq-encode-lengths-too-long",
        encode(source_lengths=np.array([4, 1])),
        ValueError,
        ("encode", "source_lengths", r"\[0, 3\]"),
        traced=(_traced_encode_lengths, (np.array([4, 1], np.int32),)),
    ),
    Case(
        "seq2seq-encode-lengths-negative",
        encode(source_lengths=np.array([2, -1])),
        ValueError,
        ("encode", "source_lengths", r"\[0, 3\]"),
        traced=(_traced_encode_lengths, (np.array([2, -1], np.int32),)),
    ),
    Case(
        "seq2seq-encode-lengths-float",
        encode(source_lengths=np.array([2.0, 1.0])),
        TypeError,
        ("encode", "source_lengths", "integer dtype"),
    ),
    Case(
        "seq2seq-encode-lengths-shape",
        encode(source_lengths=np.array([2, 1, 1])),
        ValueError,
        ("encode", "source_lengths", "batch shape"),
    ),
    Case(
        "seq2seq-encode-mask-and-lengths",
        encode(source_lengths=SOURCE_LENGTHS, source_mask=SOURCE != 0),
        ValueError,
        ("encode", "source_mask or source_lengths, not both"),
    ),
    Case(
        "seq2seq-encode-mask-int",
        encode(source_mask=(SOURCE != 0).astype(int)),
        TypeError,
        ("encode", "source_mask", "boolean"),
    ),
    Case(
        "seq2seq-encode-mask-shape",
        encode(source_mask=np.ones((2, 2), bool)),
        ValueError,
        ("encode", "source_mask", r"\(2, 3\)"),
    ),
    Case(
        "seq2seq-encode-source-id-out-of-vocab",
        encode(source=BAD_SOURCE, source_lengths=SOURCE_LENGTHS),
        ValueError,
        ("encode", "source", r"\[0, 7\)", "vocabulary has 7"),
        traced=(_traced_source, (BAD_SOURCE,)),
    ),
    Case(
        "seq2seq-encode-dropout-key-int",
        encode(dropout_key=3),
        TypeError,
        ("encode", "dropout_key", "PRNG key"),
    ),
    Case(
        "seq2seq-encode-bridge-structure",
        lambda: seq2seq.encoder_decoder(
            VS,
            VT,
            embed_size=3,
            hidden_size=4,
            bidirectional=False,
            attention=None,
            bridge=lambda carry: carry.h,
        ).encode(params_no_bridge(), SOURCE),
        ValueError,
        ("encode", "bridge", "structure", "decoder's carry"),
    ),
    # loss / apply: targets, weights, options
    Case(
        "seq2seq-loss-targets-batch",
        loss(targets=TARGETS[:1]),
        ValueError,
        ("loss", "targets", "batch shape", "source"),
    ),
    Case(
        "seq2seq-loss-target-lengths-too-long",
        loss(target_lengths=np.array([3, 5])),
        ValueError,
        ("loss", "target_lengths", r"\[0, 3\]"),
        traced=(_traced_target_lengths, (np.array([3, 5], np.int32),)),
    ),
    Case(
        "seq2seq-loss-target-id-negative",
        loss(targets=NEGATIVE_TARGETS),
        ValueError,
        ("loss", "targets", r"\[0, 6\)"),
        traced=(_traced_targets, (NEGATIVE_TARGETS,)),
    ),
    Case(
        "seq2seq-loss-target-mask-float",
        loss(target_mask=np.ones((2, 3), np.float32)),
        TypeError,
        ("loss", "target_mask", "boolean"),
    ),
    Case(
        "seq2seq-loss-weights-shape",
        loss(weights=np.ones((3,))),
        ValueError,
        ("loss", "weights", r"\[\*batch\]", r"\(3,\)"),
    ),
    Case(
        "seq2seq-loss-weights-bool",
        loss(weights=np.ones((2,), bool)),
        TypeError,
        ("loss", "weights", "numbers"),
    ),
    Case(
        "seq2seq-loss-label-smoothing",
        loss(label_smoothing=1.5),
        ValueError,
        ("loss", "label_smoothing", r"\[0, 1\)"),
        traced=(_traced_label_smoothing, (np.float32(1.5),)),
    ),
    Case(
        "seq2seq-loss-reduction",
        loss(reduction="avg"),
        ValueError,
        ("loss", "reduction", "one of", "'weighted_mean'"),
    ),
    Case(
        "seq2seq-loss-sampling-probability",
        loss(sampling_probability=1.5, sampling_key=jax.random.key(0)),
        ValueError,
        ("loss", "sampling_probability", r"\[0, 1\]"),
        traced=(_traced_sampling_probability, (np.float32(1.5),)),
    ),
    Case(
        "seq2seq-loss-sampling-unknown",
        loss(sampling="beam"),
        ValueError,
        ("loss", "sampling", "one of", "'argmax'"),
    ),
    Case(
        "seq2seq-loss-sampling-without-key",
        loss(sampling_probability=0.5),
        ValueError,
        ("loss", "sampling_key", "needed", "jax.random.key"),
    ),
    Case(
        "seq2seq-apply-dropout-key-shape",
        lambda: MODEL.apply(
            params(), SOURCE, TARGETS, dropout_key=jnp.zeros((3,), jnp.uint32)
        ),
        TypeError,
        ("apply", "dropout_key", "PRNG key"),
    ),
    # the pieces alone
    Case(
        "seq2seq-teacher-forcing-inputs-float",
        lambda: seq2seq.teacher_forcing(
            MODEL.config,
            params(),
            MODEL.encode(params(), SOURCE),
            TARGETS * 1.0,
            TARGETS != 0,
        ),
        TypeError,
        ("teacher_forcing", "inputs", "integer"),
    ),
    Case(
        "seq2seq-teacher-forcing-mask-shape",
        lambda: seq2seq.teacher_forcing(
            MODEL.config,
            params(),
            MODEL.encode(params(), SOURCE),
            TARGETS,
            np.ones((2, 2), bool),
        ),
        ValueError,
        ("teacher_forcing", "inputs_mask", r"\(2, 3\)"),
    ),
    Case(
        "seq2seq-own-predictions-sample-without-key",
        lambda: seq2seq.own_predictions(
            MODEL.config,
            params(),
            MODEL.encode(params(), SOURCE),
            TARGETS,
            TARGETS != 0,
            sampling_probability=1.0,
            sampling="sample",
        ),
        ValueError,
        ("own_predictions", "sampling_key", "argmax"),
    ),
    # step and the decoding conveniences
    Case(
        "seq2seq-step-token-out-of-vocab",
        lambda: MODEL.step(params(), MODEL.encode(params(), SOURCE), np.array([1, VT])),
        ValueError,
        ("step", "token", r"\[0, 6\)"),
        traced=(_traced_step_token, (np.array([1, VT], np.int32),)),
    ),
    Case(
        "seq2seq-step-token-float",
        lambda: MODEL.step(params(), MODEL.encode(params(), SOURCE), np.ones(2)),
        TypeError,
        ("step", "token", "integer"),
    ),
    Case(
        "seq2seq-greedy-eos-given",
        lambda: MODEL.greedy(params(), SOURCE, max_length=3, eos_id=2),
        TypeError,
        ("greedy", "eos_id", "model", "own"),
    ),
    Case(
        "seq2seq-beam-bos-given",
        lambda: MODEL.beam_search(
            params(), SOURCE, beam_width=2, max_length=3, bos_id=1
        ),
        TypeError,
        ("^beam_search", "bos_id cannot be given here", "own"),
    ),
    Case(
        "seq2seq-greedy-source-id",
        lambda: MODEL.greedy(params(), BAD_SOURCE, max_length=3),
        ValueError,
        ("^greedy", "source", r"\[0, 7\)"),
        traced=(_traced_greedy_source, (BAD_SOURCE,)),
    ),
]

NO_BRIDGE = seq2seq.encoder_decoder(
    VS,
    VT,
    embed_size=3,
    hidden_size=4,
    bidirectional=False,
    attention=None,
    bridge="none",
)


@made_once
def params_no_bridge():
    return NO_BRIDGE.init(jax.random.key(0))


# Configs, keys, parameters and states of another model, named as the user
# holds them (params['encoder'], state.carry), not as the layers see them.
OTHER = seq2seq.encoder_decoder(VS, VT, embed_size=3, hidden_size=5)


@made_once
def other_params():
    return OTHER.init(jax.random.key(1))


@made_once
def encoded_state():
    return MODEL.encode(params(), SOURCE)


INPUTS = seq2seq.decoder_inputs(TARGETS, TARGETS != 0, MODEL.bos_id)
CASES += [
    Case(
        "seq2seq-init-key-int",
        lambda: MODEL.init(0),
        TypeError,
        ("^init", r"key must be a PRNG key, e\.g\."),
    ),
    Case(
        "seq2seq-init-args-swapped",
        lambda: seq2seq.init(params(), jax.random.key(0)),
        TypeError,
        ("^init", "config must be a seqmask.seq2seq.Config", "got dict"),
    ),
    Case(
        "seq2seq-from_config-dict",
        lambda: seq2seq.from_config({"embed_size": 3}),
        TypeError,
        ("^from_config", "config must be a seqmask.seq2seq.Config"),
    ),
    Case(
        "seq2seq-loss-model-for-config",
        lambda: seq2seq.loss(MODEL, params(), SOURCE, TARGETS),
        TypeError,
        ("^loss", "config must be", "model.config", "got EncoderDecoder"),
    ),
    Case(
        "seq2seq-build-tie-attentional-size",
        build(embed_size=3, tie_embeddings=True, attentional_size=7),
        ValueError,
        (
            "^encoder_decoder",
            r"attentional_size == embed_size \(3\)",
            "attentional_size=7",
            r"^(?![\s\S]*or use attention)",
        ),
    ),
    Case(
        "seq2seq-build-tie-without-attention",
        build(embed_size=3, hidden_size=4, tie_embeddings=True, attention=None),
        ValueError,
        ("^encoder_decoder", r"output size \(4\)", "hidden_size == embed_size"),
    ),
    Case(
        "seq2seq-apply-params-other-sizes",
        lambda: MODEL.apply(other_params(), SOURCE, TARGETS),
        ValueError,
        ("^apply", "do not fit", r"params\['encoder'\]\['forward'\]"),
    ),
    Case(
        "seq2seq-apply-params-missing-output",
        lambda: MODEL.apply(
            {k: v for k, v in params().items() if k != "output"}, SOURCE, TARGETS
        ),
        ValueError,
        ("^apply", r"missing params\['output'\]\['bias'\]"),
    ),
    Case(
        "seq2seq-apply-params-source-swapped",
        lambda: MODEL.apply(SOURCE, params(), TARGETS),
        TypeError,
        ("^apply", "params must be the parameters", "a dict"),
    ),
    Case(
        "seq2seq-encode-params-other-sizes",
        lambda: MODEL.encode(other_params(), SOURCE),
        ValueError,
        ("^encode", "do not fit"),
    ),
    Case(
        "seq2seq-greedy-params-other-sizes",
        lambda: MODEL.greedy(other_params(), SOURCE, max_length=3),
        ValueError,
        ("^greedy", "do not fit"),
    ),
    Case(
        "seq2seq-apply-targets-one-row",
        lambda: MODEL.apply(params(), SOURCE, TARGETS[0]),
        ValueError,
        ("^apply", r"targets must be \[\*batch, time\]", r"\[2, time\]", r"\(3,\)"),
    ),
    Case(
        "seq2seq-step-token-batch",
        lambda: MODEL.step(params(), encoded_state(), jnp.array([1, 1, 1])),
        ValueError,
        ("^step", r"token must have the batch shape \(2,\) of state", r"\(3,\)"),
    ),
    Case(
        "seq2seq-step-state-other-model",
        lambda: MODEL.step(
            params(), OTHER.encode(other_params(), SOURCE), jnp.array([1, 1])
        ),
        ValueError,
        ("^step", "state does not match", r"state\.carry\.h", "float32\\[2, 5\\]"),
    ),
    Case(
        "seq2seq-step-state-none",
        lambda: MODEL.step(params(), None, jnp.array([1, 1])),
        TypeError,
        ("^step", "state must be a seqmask.seq2seq.DecoderState"),
    ),
    Case(
        "seq2seq-teacher_forcing-state-batch",
        lambda: seq2seq.teacher_forcing(
            MODEL.config,
            params(),
            MODEL.encode(params(), SOURCE[:1]),
            INPUTS,
            TARGETS != 0,
        ),
        ValueError,
        ("^teacher_forcing", "state does not match", r"batch shape \(2,\) of inputs"),
    ),
    Case(
        "seq2seq-own_predictions-state-batch",
        lambda: seq2seq.own_predictions(
            MODEL.config,
            params(),
            MODEL.encode(params(), SOURCE[:1]),
            INPUTS,
            TARGETS != 0,
            sampling_probability=1.0,
        ),
        ValueError,
        ("^own_predictions", "state does not match", r"of inputs"),
    ),
    # decoder_inputs: masks are boolean everywhere; bos_id is an id.
    Case(
        "seq2seq-decoder_inputs-targets-as-mask",
        lambda: seq2seq.decoder_inputs(TARGETS, TARGETS, 1),
        TypeError,
        ("^decoder_inputs", "mask must be a boolean array", "int32"),
    ),
    Case(
        "seq2seq-decoder_inputs-mask-float",
        lambda: seq2seq.decoder_inputs(TARGETS, (TARGETS != 0) * 1.0, 1),
        TypeError,
        ("^decoder_inputs", "mask must be a boolean array"),
    ),
    Case(
        "seq2seq-decoder_inputs-mask-shape",
        lambda: seq2seq.decoder_inputs(TARGETS, TARGETS[:, :2] != 0, 1),
        ValueError,
        ("^decoder_inputs", "mask must have shape", r"\(2, 3\)"),
    ),
    Case(
        # Accepted before: the mistake surfaced later, as an input out of range.
        "seq2seq-decoder_inputs-bos-negative",
        lambda: seq2seq.decoder_inputs(TARGETS, TARGETS != 0, -1),
        ValueError,
        ("^decoder_inputs", "bos_id must be a non-negative int", "got -1"),
    ),
    Case(
        "seq2seq-decoder_inputs-bos-fractional",
        lambda: seq2seq.decoder_inputs(TARGETS, TARGETS != 0, 1.5),
        TypeError,
        ("^decoder_inputs", "bos_id must be an int", "1.5"),
    ),
    Case(
        "seq2seq-decoder_inputs-bos-overflow",
        lambda: seq2seq.decoder_inputs(TARGETS.astype(np.int8), TARGETS != 0, 300),
        ValueError,
        ("^decoder_inputs", "bos_id does not fit dtype int8", "targets have int8"),
    ),
]
CASES += [
    Case(
        "seq2seq-build-attention_size-without-additive",
        build(attention="general", attention_size=8),
        ValueError,
        ("^encoder_decoder", "attention_size=8", "additive"),
    ),
    Case(
        "seq2seq-loss-label_smoothing-array",
        loss(label_smoothing=np.array([0.1, 0.1])),
        ValueError,
        ("^loss", "label_smoothing must be one number"),
    ),
]
