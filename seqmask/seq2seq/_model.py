"""The model record users hold, and :func:`encoder_decoder`, which builds it."""

from __future__ import annotations

import functools
from collections.abc import Callable
from operator import attrgetter
from typing import Any, NamedTuple

import jax

import seqmask._checks as _checks
from seqmask import attention as _attention
from seqmask import cells as _cells
from seqmask.attention import Attention
from seqmask.cells import Cell
from seqmask.seq2seq._config import (
    Bound,
    Carry,
    Config,
    DecoderState,
    Params,
    check_config,
)
from seqmask.seq2seq._decoder import step
from seqmask.seq2seq._encoder import encode
from seqmask.seq2seq._generate import beam_search, greedy, sample
from seqmask.seq2seq._init import init, param_shapes
from seqmask.seq2seq._training import apply, loss

ATTENTIONS = ("additive", "dot", "general")
BRIDGES = ("dense", "none")


class EncoderDecoder(NamedTuple):
    """An encoder-decoder: pure functions over one parameter dict, and its config.

    Each function is the module-level function of :mod:`seqmask.seq2seq` of
    the same name with ``config`` bound first (``model.loss(params, ...) ==
    seq2seq.loss(model.config, params, ...)``).

    Attributes:
      init: ``(key) -> params`` (see :func:`~seqmask.seq2seq.init`).
      encode: ``(params, source, *, source_mask=None, source_lengths=None,
        dropout_key=None) -> DecoderState``.
      step: ``(params, state, token) -> (state, logits)``: one decoder step,
        the step function for :mod:`seqmask.decoding`.
      apply: ``(params, source, targets, **options) -> logits``
        ``[*batch, target, Vt]`` (see :func:`~seqmask.seq2seq.apply`).
      loss: ``apply``'s arguments plus ``weights``, ``label_smoothing`` and
        ``reduction`` (see :func:`~seqmask.seq2seq.loss`).
      greedy, beam_search, sample: encode and decode with the model's own
        ``bos_id``, ``eos_id`` and ``pad_id``, never emitting ``pad_id``
        before EOS (see :func:`~seqmask.seq2seq.greedy`).
      config: the :class:`~seqmask.seq2seq.Config`.
    """

    init: Callable[[jax.Array], Params]
    encode: Callable[..., DecoderState]
    step: Callable[[Params, DecoderState, jax.Array], tuple[DecoderState, jax.Array]]
    apply: Callable[..., jax.Array]
    loss: Callable[..., jax.Array]
    greedy: Callable[..., Any]
    beam_search: Callable[..., Any]
    sample: Callable[..., Any]
    config: Config

    # The config's sizes and token ids, read through the model.
    source_vocab_size = property(attrgetter("config.source_vocab_size"))
    target_vocab_size = property(attrgetter("config.target_vocab_size"))
    bos_id = property(attrgetter("config.bos_id"))
    eos_id = property(attrgetter("config.eos_id"))
    pad_id = property(attrgetter("config.pad_id"))


def from_config(config: Config) -> EncoderDecoder:
    """The :class:`EncoderDecoder` whose functions are bound to ``config``.

    The config is checked as :func:`encoder_decoder` checks its options: a
    configuration whose sizes do not fit together (dot attention, tied
    embeddings, a dense bridge) raises here, not at the first ``init``.
    """
    check_config(config, "from_config")
    param_shapes(config)  # traced once a config: nothing is computed
    return EncoderDecoder(
        init=Bound(init, config),
        encode=Bound(encode, config),
        step=Bound(step, config),
        apply=Bound(apply, config),
        loss=Bound(loss, config),
        greedy=Bound(greedy, config),
        beam_search=Bound(beam_search, config),
        sample=Bound(sample, config),
        config=config,
    )


def encoder_decoder(
    source_vocab_size: int,
    target_vocab_size: int,
    *,
    embed_size: int = 32,
    hidden_size: int = 64,
    encoder_cell: str | Cell = "lstm",
    encoder_layers: int = 1,
    bidirectional: bool = True,
    decoder_cell: str | Cell = "lstm",
    decoder_layers: int = 1,
    attention: str | Attention | None = "additive",
    attention_size: int | None = None,
    attentional_size: int | None = None,
    input_feeding: bool | None = None,
    bridge: bool | str | Callable[[Carry], Carry] = True,
    learnable_initial_state: bool = False,
    embedding_dropout: float = 0.0,
    layer_dropout: float = 0.0,
    output_dropout: float = 0.0,
    tie_embeddings: bool = False,
    bos_id: int = 1,
    eos_id: int = 2,
    pad_id: int = 0,
) -> EncoderDecoder:
    """A recurrent encoder-decoder, composed from the options given.

    The defaults are Luong et al.'s (2015) attention model: a bidirectional
    LSTM encoder, an LSTM decoder with additive attention and input feeding,
    started from a dense bridge of the encoder's final carries. The
    equations are in :mod:`seqmask.seq2seq`.

    Args:
      source_vocab_size: ``Vs``.
      target_vocab_size: ``Vt``.
      embed_size: ``E``, of the source and target embeddings.
      hidden_size: the hidden size of cells given by name.
      encoder_cell: ``"lstm"``, ``"gru"``, ``"simple_rnn"`` or any
        :class:`~seqmask.cells.Cell` (an adapted Flax cell included).
      encoder_layers: the number of stacked encoder layers.
      bidirectional: whether each encoder layer reads both directions.
      decoder_cell: as ``encoder_cell``.
      decoder_layers: the number of stacked decoder layers.
      attention: ``"additive"``, ``"dot"``, ``"general"``, an
        :class:`~seqmask.attention.Attention`, or None (no attention, no
        input feeding: the decoder's top output feeds the output layer).
        ``"dot"`` needs the decoder's output size to equal the memory's.
      attention_size: the width of additive attention (default
        ``hidden_size``).
      attentional_size: ``A`` (default: ``embed_size`` with tied embeddings,
        else the decoder cell's hidden size); only with attention.
      input_feeding: feed the previous attentional vector to the decoder
        (default: with attention; impossible without).
      bridge: ``True`` or ``"dense"`` (a learned dense layer from the
        encoder's final carries), ``False`` or ``"none"`` (the decoder's own
        initial carry: zeros, or learned with ``learnable_initial_state``),
        or a function from the encoder's final carries to the decoder's
        initial carry (see :func:`~seqmask.seq2seq.encode`).
      learnable_initial_state: learn the encoder's initial carries (and the
        decoder's, with ``bridge="none"``).
      embedding_dropout: dropout rate on the source and target embeddings.
      layer_dropout: dropout rate between stacked layers.
      output_dropout: dropout rate before the output layer.
      tie_embeddings: use the target embedding, transposed, as the output
        kernel (the output layer then reads ``E`` features).
      bos_id: the decoder's first input, in ``[0, Vt)``.
      eos_id: the token that ends a target, in ``[0, Vt)``.
      pad_id: the target padding id (default target mask: ``targets !=
        pad_id``), emitted after EOS by decoding; never embedded nor
        predicted (the model's decoders give it no probability before EOS),
        so it may lie outside the vocabulary (e.g. -100), but not equal
        ``eos_id``.

    Returns:
      An :class:`EncoderDecoder`. Dropout applies only where a function is
      given a ``dropout_key``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from seqmask import seq2seq
      >>> model = seq2seq.encoder_decoder(7, 5, embed_size=4, hidden_size=8)
      >>> params = model.init(jax.random.key(0))
      >>> source = jnp.array([[3, 4, 5, 6], [3, 4, 0, 0]])
      >>> targets = jnp.array([[3, 4, 2], [4, 2, 0]])   # 2 is EOS, 0 padding
      >>> lengths = jnp.array([4, 2])
      >>> loss_fn = jax.jit(model.loss)
      >>> loss = loss_fn(params, source, targets, source_lengths=lengths)
      >>> garbage = source.at[1, 2:].set(6)   # padded source positions
      >>> bool(loss == loss_fn(params, garbage, targets, source_lengths=lengths))
      True
      >>> out = model.greedy(params, source, source_lengths=lengths, max_length=6)
      >>> out.tokens.shape, out.lengths.shape
      ((2, 6), (2,))
    """
    return from_config(_validated(**locals()))


def _validated(**options) -> Config:
    """The :class:`Config` for :func:`encoder_decoder`'s options, checked."""
    where = "encoder_decoder"
    sizes = {
        name: _checks.positive_int(options[name], name, where)
        for name in (
            "source_vocab_size",
            "target_vocab_size",
            "embed_size",
            "hidden_size",
            "encoder_layers",
            "decoder_layers",
        )
    }
    flags = {
        name: _checks.flag(options[name], name, where)
        for name in ("bidirectional", "learnable_initial_state", "tie_embeddings")
    }
    hidden = sizes["hidden_size"]
    encoder = _cell(options["encoder_cell"], hidden, "encoder_cell")
    decoder = _cell(options["decoder_cell"], hidden, "decoder_cell")
    bridge = _bridge(options["bridge"])
    decoder_base = decoder
    if flags["learnable_initial_state"]:
        encoder = _cells.learnable_initial_state(encoder)
        if bridge == "none":  # otherwise the bridge gives the decoder's carry
            decoder = _cells.learnable_initial_state(decoder)
    attention_size = _checks.optional_positive_int(
        options["attention_size"], "attention_size", where
    )
    if attention_size is not None and options["attention"] != "additive":
        _checks.fail(
            where,
            f"attention_size={attention_size} is the width of attention='additive'; "
            f"got attention={_checks.describe(options['attention'])}, which has no "
            "such width (an Attention record has its own). Leave attention_size "
            "unset.",
        )
    attention = _attention_option(options["attention"], attention_size or hidden)
    feeding = options["input_feeding"]
    feeding = attention is not None if feeding is None else feeding
    feeding = _checks.flag(feeding, "input_feeding", where)
    if feeding and attention is None:
        _checks.fail(
            where,
            "input_feeding=True needs attention (it feeds back the attentional "
            "vector); give an attention or input_feeding=False.",
        )
    attentional = _checks.optional_positive_int(
        options["attentional_size"], "attentional_size", where
    )
    if attention is None and attentional is not None:
        _checks.fail(
            where,
            f"attentional_size={attentional} needs attention; without attention the "
            "decoder's top output feeds the output layer.",
        )
    tied = flags["tie_embeddings"]
    if attention is not None and attentional is None:
        attentional = sizes["embed_size"] if tied else decoder_base.hidden_size
        attentional = attentional or hidden
    if tied and attentional is not None and attentional != sizes["embed_size"]:
        _checks.fail(
            where,
            f"tie_embeddings=True needs attentional_size == embed_size "
            f"({sizes['embed_size']}): the output layer reads the attentional "
            f"vector with the target embedding; got attentional_size={attentional}. "
            "Leave attentional_size unset (it then defaults to embed_size).",
        )
    rates = {
        name: _rate(options[name], name)
        for name in ("embedding_dropout", "layer_dropout", "output_dropout")
    }
    vocab = sizes["target_vocab_size"]
    ids = {name: _token_id(options[name], name, vocab) for name in ("bos_id", "eos_id")}
    ids["pad_id"] = _pad_id(options["pad_id"], ids["eos_id"])
    return Config(
        source_vocab_size=sizes["source_vocab_size"],
        target_vocab_size=vocab,
        embed_size=sizes["embed_size"],
        encoder_cells=(encoder,) * sizes["encoder_layers"],
        bidirectional=flags["bidirectional"],
        decoder_cells=(decoder,) * sizes["decoder_layers"],
        attention=attention,
        attentional_size=attentional,
        input_feeding=feeding,
        bridge=bridge,
        tie_embeddings=flags["tie_embeddings"],
        **rates,
        **ids,
    )


def _cell(cell, hidden_size: int, name: str) -> Cell:
    if isinstance(cell, Cell):
        return cell
    if isinstance(cell, str):
        _checks.one_of(cell, _cells.NAMES, name, "encoder_decoder")
        return _cells.named(cell, hidden_size)
    names = ", ".join(repr(n) for n in _cells.NAMES)
    _checks.fail(
        "encoder_decoder",
        f"{name} must be one of {names} or a seqmask.cells.Cell; got "
        f"{_checks.describe(cell)}.",
        TypeError,
    )


def _attention_option(attention, size: int) -> Attention | None:
    if attention is None or isinstance(attention, Attention):
        return attention
    if not isinstance(attention, str):
        _checks.fail(
            "encoder_decoder",
            "attention must be one of 'additive', 'dot', 'general', a "
            f"seqmask.attention.Attention or None; got {_checks.describe(attention)}.",
            TypeError,
        )
    _checks.one_of(attention, (*ATTENTIONS, None), "attention", "encoder_decoder")
    return _named_attention(attention, size)


@functools.cache
def _named_attention(name: str, size: int) -> Attention:
    # One record per option, so that models built with the same options have
    # equal configs (and share compiled decoding programs).
    if name == "additive":
        return _attention.additive(size)
    return _attention.dot() if name == "dot" else _attention.general()


def _bridge(bridge):
    if isinstance(bridge, bool):
        return "dense" if bridge else "none"
    if isinstance(bridge, str):
        return _checks.one_of(
            bridge, (*BRIDGES, True, False), "bridge", "encoder_decoder"
        )
    return _checks.function(
        bridge,
        "bridge",
        "encoder_decoder",
        "(encoder_final_carries) -> decoder_initial_carry, or one of 'dense', "
        "'none', True, False",
    )


def _rate(value, name: str) -> float:
    _checks.number(value, name, "encoder_decoder")
    if _checks.concrete(value) is None:
        _checks.fail(
            "encoder_decoder",
            f"{name} must be a Python number (part of the static configuration); "
            "got a traced value.",
            TypeError,
        )
    _checks.in_range(value, name, "encoder_decoder", low=0, high=1, high_open=True)
    return float(value)


def _pad_id(value, eos_id: int) -> int:
    # Never embedded nor predicted, so it may lie outside the vocabulary
    # (-100, say); it must fit the int32 tokens and differ from EOS, which
    # the default target mask (targets != pad_id) would otherwise drop.
    value = _checks.integer(value, "pad_id", "encoder_decoder")
    _checks.in_range(
        value, "pad_id", "encoder_decoder", low=-(2**31), high=2**31, high_open=True
    )
    if value == eos_id:
        _checks.fail(
            "encoder_decoder",
            f"pad_id must differ from eos_id (both {value}): the default target "
            "mask, targets != pad_id, would drop every EOS.",
        )
    return value


def _token_id(value, name: str, vocab_size: int) -> int:
    value = _checks.integer(value, name, "encoder_decoder")
    _checks.token_ids(value, vocab_size, name, "encoder_decoder")
    return value
