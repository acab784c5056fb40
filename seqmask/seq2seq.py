r"""An encoder-decoder with masked attention, as a record of pure functions.

:func:`encoder_decoder` builds an :class:`EncoderDecoder` for translation-like
tasks, where source and target have different, varying lengths: token
embeddings, a bidirectional recurrent encoder over the *source* mask
(:func:`seqmask.bidirectional`), and a recurrent decoder that attends over
the encoder outputs at every step (Luong et al. 2015 with input feeding),
started from a dense bridge of the encoder's final carries. Teacher forcing
runs the decoder with one :func:`seqmask.masked_scan` over the *target*
mask, and the loss is weighted from the targets alone; the source mask only
decides where attention may look. ``model.step`` is a step function for
:mod:`seqmask.decoding`, whose state holds the encoder memory, so greedy,
sampling and beam search work on it unchanged::

  model = seqmask.seq2seq.encoder_decoder(source_vocab, target_vocab)
  params = model.init(key)
  loss = model.loss(params, source, targets, source_lengths=..., target_lengths=...)
  state = model.encode(params, source, source_lengths=...)
  out = seqmask.decoding.greedy(model.step, params, state, bos, max_length=..,
                                eos_id=model.eos_id)

Everything is float32; parameters are a plain dict.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from seqmask import attention as _attention
from seqmask import cells as _cells
from seqmask import losses as _losses
from seqmask.attention import Attention
from seqmask.cells import Cell
from seqmask.layers import bidirectional, init_bidirectional
from seqmask.masks import resolve_mask
from seqmask.scan import masked_scan

__all__ = ["Memory", "DecoderState", "EncoderDecoder", "encoder_decoder"]

Params = Any
Carry = Any

_LECUN_NORMAL = jax.nn.initializers.lecun_normal()
_CELLS: dict[str, Callable[[int], Cell]] = {
    "lstm": _cells.lstm,
    "gru": _cells.gru,
    "simple_rnn": _cells.simple_rnn,
}
_ATTENTIONS = ("additive", "dot", "general")


class Memory(NamedTuple):
    """What the decoder attends over, computed once per source batch.

    Attributes:
      values: the encoder outputs ``[*batch, source, M]`` (forward and
        backward concatenated), zero at padded positions.
      keys: ``attention.project_memory(values)`` ``[*batch, source, K]``.
      mask: the source mask, boolean ``[*batch, source]``.
    """

    values: jax.Array
    keys: jax.Array
    mask: jax.Array


class DecoderState(NamedTuple):
    """The decoding state; every leaf starts with the batch axes.

    Attributes:
      carry: the decoder cell's carry (leaves ``[*batch, ...]``).
      attentional: the previous attentional vector ``[*batch, A]``, fed back
        as input (input feeding); zeros before the first step.
      memory: the encoder :class:`Memory`.
    """

    carry: Carry
    attentional: jax.Array
    memory: Memory


class EncoderDecoder(NamedTuple):
    """An attention encoder-decoder: pure functions over one parameter dict.

    Token conventions: ``targets`` ``[*batch, target]`` are the output tokens
    followed by ``eos_id``, right-padded (each row's valid tokens first); the
    decoder reads ``bos_id`` followed by the targets shifted right. Sources
    may be padded anywhere (any source mask).

    Attributes:
      init: ``(key) -> params``.
      encode: ``(params, source, *, source_mask=None, source_lengths=None)
        -> DecoderState``: runs the encoder and returns the decoder's start
        state.
      step: ``(params, state, token) -> (state, logits)``: one decoder step
        from the previous token ``[*batch]`` to logits ``[*batch, V]``; the
        step function for :mod:`seqmask.decoding`.
      apply: ``(params, source, targets, *, source_mask=None,
        source_lengths=None, target_mask=None, target_lengths=None) ->
        logits`` ``[*batch, target, V]``: teacher forcing.
      loss: ``apply``'s arguments plus ``reduction="weighted_mean"``: the
        cross-entropy of the targets, weighted by the target mask (by
        default ``targets != pad_id``).
      source_vocab_size, target_vocab_size, bos_id, eos_id, pad_id: the
        configuration.
    """

    init: Callable[[jax.Array], Params]
    encode: Callable[..., DecoderState]
    step: Callable[[Params, DecoderState, jax.Array], tuple[DecoderState, jax.Array]]
    apply: Callable[..., jax.Array]
    loss: Callable[..., jax.Array]
    source_vocab_size: int
    target_vocab_size: int
    bos_id: int
    eos_id: int
    pad_id: int


def encoder_decoder(
    source_vocab_size: int,
    target_vocab_size: int,
    *,
    embed_size: int = 32,
    hidden_size: int = 64,
    encoder_cell: str | Cell = "lstm",
    decoder_cell: str | Cell = "lstm",
    attention: str | Attention = "additive",
    attention_size: int | None = None,
    attentional_size: int | None = None,
    bridge: bool = True,
    learnable_initial_state: bool = False,
    bos_id: int = 1,
    eos_id: int = 2,
    pad_id: int = 0,
) -> EncoderDecoder:
    r"""An encoder-decoder with masked attention and input feeding.

    With :math:`e` the embeddings, the encoder reads the source
    :math:`x_{1..S}` (valid positions only, in both directions) and the
    decoder, from the previous target token :math:`y_{t-1}`, computes

    .. math::

      (s_t, h_t) &= \mathrm{cell}(s_{t-1}, [e(y_{t-1}); \tilde h_{t-1}]) \\
      c_t, \alpha_t &= \mathrm{attention}(h_t, \mathrm{memory},
        \mathrm{source\ mask}) \\
      \tilde h_t &= \tanh([h_t; c_t] W_c) \\
      \mathrm{logits}_t &= \tilde h_t W_o + b_o

    with :math:`\tilde h_0 = 0` and, with ``bridge``, every leaf :math:`l`
    of the decoder's initial carry :math:`s_0^l = \tanh(z W_l + b_l)`, where
    :math:`z` concatenates all leaves of the forward and backward encoder
    final carries (the state after each row's last and first valid step).
    Without ``bridge`` the decoder starts from its cell's initial carry.

    Parameters (a dict): ``source_embedding`` ``[Vs, E]``, ``encoder``
    (``{"forward", "backward"}`` cell parameters), ``bridge`` (a list with
    ``{"kernel", "bias"}`` a decoder carry leaf, or absent),
    ``target_embedding`` ``[Vt, E]``, ``decoder`` (cell parameters; input
    size ``E + A``), ``attention``, ``attentional`` ``{"kernel": [H + M,
    A]}`` and ``output`` ``{"kernel": [A, Vt], "bias": [Vt]}``.

    Args:
      source_vocab_size: ``Vs``.
      target_vocab_size: ``Vt``.
      embed_size: ``E``, for source and target embeddings.
      hidden_size: the hidden size of cells given by name.
      encoder_cell: ``"lstm"``, ``"gru"``, ``"simple_rnn"`` or a
        :class:`~seqmask.cells.Cell`; one cell type for both directions.
      decoder_cell: as ``encoder_cell``.
      attention: ``"additive"``, ``"dot"``, ``"general"`` or an
        :class:`~seqmask.attention.Attention`. ``"dot"`` needs the decoder
        output size to equal the memory size (twice the encoder's).
      attention_size: the width of additive attention (default
        ``hidden_size``).
      attentional_size: ``A`` (default: the decoder cell's hidden size).
      bridge: start the decoder from the encoder's final carries.
      learnable_initial_state: learn the encoder's initial carries (and the
        decoder's, without ``bridge``); see
        :func:`seqmask.cells.learnable_initial_state`.
      bos_id: the first decoder input.
      eos_id: the token that ends a target.
      pad_id: the target padding id (default weights: ``targets !=
        pad_id``); padded source ids are never read.

    Returns:
      An :class:`EncoderDecoder`.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from seqmask import decoding, seq2seq
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
      >>> state = jax.jit(model.encode)(params, source, source_lengths=lengths)
      >>> out = decoding.greedy(model.step, params, state, jnp.full(2, model.bos_id),
      ...                       max_length=6, eos_id=model.eos_id)
      >>> out.tokens.shape, out.lengths.shape
      ((2, 6), (2,))
    """
    source_vocab_size = _check_size(source_vocab_size, "source_vocab_size")
    target_vocab_size = _check_size(target_vocab_size, "target_vocab_size")
    embed_size = _check_size(embed_size, "embed_size")
    hidden_size = _check_size(hidden_size, "hidden_size")
    for name, value in (("bos_id", bos_id), ("eos_id", eos_id)):
        if not isinstance(value, int) or not 0 <= value < target_vocab_size:
            raise ValueError(
                f"encoder_decoder: {name} must be a target token id in [0, "
                f"{target_vocab_size}); got {value!r}."
            )
    if not isinstance(pad_id, int) or isinstance(pad_id, bool):
        raise TypeError(f"encoder_decoder: pad_id must be an int; got {pad_id!r}.")
    enc_cell = _resolve_cell(encoder_cell, hidden_size, "encoder_cell")
    dec_base = _resolve_cell(decoder_cell, hidden_size, "decoder_cell")
    if learnable_initial_state:
        enc_cell = _cells.learnable_initial_state(enc_cell)
        dec_cell = dec_base if bridge else _cells.learnable_initial_state(dec_base)
    else:
        dec_cell = dec_base
    att = _resolve_attention(attention, attention_size or hidden_size)
    if attentional_size is None:
        attentional_size = dec_base.hidden_size or hidden_size
    attentional_size = _check_size(attentional_size, "attentional_size")
    size_a = attentional_size

    def init(key):
        keys = jax.random.split(key, 8)
        embed_init = jax.nn.initializers.normal(1.0)
        encoder = init_bidirectional(keys[0], enc_cell, embed_size)
        memory_size = 2 * _output_size(enc_cell, encoder["forward"], embed_size)
        decoder = dec_cell.init(keys[1], embed_size + size_a)
        query_size = _output_size(dec_cell, decoder, embed_size + size_a)
        params = {
            "source_embedding": embed_init(keys[2], (source_vocab_size, embed_size)),
            "encoder": encoder,
            "target_embedding": embed_init(keys[3], (target_vocab_size, embed_size)),
            "decoder": decoder,
            "attention": att.init(keys[4], query_size, memory_size),
            "attentional": {
                "kernel": _LECUN_NORMAL(keys[5], (query_size + memory_size, size_a)),
            },
            "output": {
                "kernel": _LECUN_NORMAL(keys[6], (size_a, target_vocab_size)),
                "bias": jnp.zeros((target_vocab_size,)),
            },
        }
        if bridge:
            params["bridge"] = _init_bridge(
                keys[7], enc_cell, encoder, dec_cell, decoder
            )
        return params

    def encode(params, source, *, source_mask=None, source_lengths=None):
        source = _check_tokens(source, "source")
        mask = resolve_mask(
            source, mask=source_mask, lengths=source_lengths, name="encode (source)"
        )
        if mask is None:
            mask = jnp.ones(source.shape, jnp.bool_)
        batch_shape = tuple(source.shape[:-1])
        # Padded ids are never looked up, so anything may sit there.
        tokens = jnp.where(mask, source, jnp.zeros((), source.dtype))
        xs = _embed(params["source_embedding"], tokens)
        (forward, backward), values = bidirectional(
            enc_cell, params["encoder"], xs, mask=mask
        )
        keys = att.project_memory(params["attention"], values, mask)
        if bridge:
            carry = _apply_bridge(params["bridge"], forward, backward, dec_cell, params)
        else:
            carry = dec_cell.initial_carry(params["decoder"], batch_shape)
        attentional = jnp.zeros((*batch_shape, size_a), values.dtype)
        return DecoderState(carry, attentional, Memory(values, keys, mask))

    def decoder_step(params, carry, attentional, memory, embedded):
        x = jnp.concatenate([embedded, attentional.astype(embedded.dtype)], axis=-1)
        carry, output = dec_cell.apply(params["decoder"], carry, x)
        context, _ = att.apply(
            params["attention"], output, memory.values, memory.mask, keys=memory.keys
        )
        joined = jnp.concatenate([output, context.astype(output.dtype)], axis=-1)
        attentional = jnp.tanh(joined @ params["attentional"]["kernel"])
        return carry, attentional

    def output_logits(params, attentional):
        return _dense(attentional, params["output"]["kernel"], params["output"]["bias"])

    def step(params, state, token):
        token = _check_tokens(token, "token", min_ndim=0)
        embedded = _embed(params["target_embedding"], token)
        carry, attentional = decoder_step(
            params, state.carry, state.attentional, state.memory, embedded
        )
        logits = output_logits(params, attentional)
        return DecoderState(carry, attentional, state.memory), logits

    def apply(
        params,
        source,
        targets,
        *,
        source_mask=None,
        source_lengths=None,
        target_mask=None,
        target_lengths=None,
    ):
        logits, _ = teacher_forcing(
            params,
            source,
            targets,
            source_mask,
            source_lengths,
            target_mask,
            target_lengths,
        )
        return logits

    def teacher_forcing(
        params,
        source,
        targets,
        source_mask,
        source_lengths,
        target_mask,
        target_lengths,
    ):
        targets = _check_tokens(targets, "targets")
        mask = resolve_mask(
            targets, mask=target_mask, lengths=target_lengths, name="targets"
        )
        if mask is None:
            mask = targets != jnp.asarray(pad_id, targets.dtype)
        _check_batch(targets, jnp.shape(source)[:-1], "targets")
        state = encode(
            params, source, source_mask=source_mask, source_lengths=source_lengths
        )
        bos = jnp.full((*targets.shape[:-1], 1), bos_id, targets.dtype)
        inputs = jnp.concatenate([bos, targets[..., :-1]], axis=-1)
        # Right padding: input t is valid exactly when target t is.
        inputs = jnp.where(mask, inputs, jnp.asarray(bos_id, inputs.dtype))
        embedded = jnp.moveaxis(_embed(params["target_embedding"], inputs), -2, 0)
        memory = state.memory

        def body(carry, x):
            carry, attentional = decoder_step(params, *carry, memory, x)
            return (carry, attentional), attentional

        _, outputs = masked_scan(
            body,
            (state.carry, state.attentional),
            embedded,
            jnp.moveaxis(mask, -1, 0),
        )
        # One large matmul for the vocabulary projection, outside the scan.
        logits = output_logits(params, jnp.moveaxis(outputs, 0, -2))
        return logits, mask

    def loss(
        params,
        source,
        targets,
        *,
        source_mask=None,
        source_lengths=None,
        target_mask=None,
        target_lengths=None,
        reduction: _losses.Reduction = "weighted_mean",
    ):
        logits, mask = teacher_forcing(
            params,
            source,
            targets,
            source_mask,
            source_lengths,
            target_mask,
            target_lengths,
        )
        weights = mask.astype(jnp.float32)
        return _losses.softmax_cross_entropy_with_integer_labels(
            logits, jnp.asarray(targets), weights, reduction=reduction
        )

    return EncoderDecoder(
        init=_compiled_once(init),
        encode=encode,
        step=step,
        apply=apply,
        loss=loss,
        source_vocab_size=source_vocab_size,
        target_vocab_size=target_vocab_size,
        bos_id=bos_id,
        eos_id=eos_id,
        pad_id=pad_id,
    )


def _compiled_once(fn):
    """``jax.jit(fn)`` for a function that runs about once, such as ``init``.

    One compilation is much cheaper than the dozens of small eager ones that
    initialisers would dispatch. On CPU, XLA's LLVM optimisation passes are
    skipped for it: they dominate its compile time (random number kernels
    are large) and buy nothing for a program that runs once.
    """
    compiled = {}

    def call(*args):
        if "fn" not in compiled:
            options = (
                {"xla_backend_optimization_level": 0}
                if jax.default_backend() == "cpu"
                else None
            )
            compiled["fn"] = jax.jit(fn, compiler_options=options)
        return compiled["fn"](*args)

    return call


def _init_bridge(key, enc_cell: Cell, encoder, dec_cell: Cell, decoder) -> list:
    encoder_leaves = [
        *jax.tree.leaves(_carry_shapes(enc_cell, encoder["forward"])),
        *jax.tree.leaves(_carry_shapes(enc_cell, encoder["backward"])),
    ]
    decoder_leaves = jax.tree.leaves(_carry_shapes(dec_cell, decoder))
    for leaf in (*encoder_leaves, *decoder_leaves):
        if len(leaf.shape) != 1:
            raise ValueError(
                "encoder_decoder: bridge=True needs carries made of vectors "
                f"[*batch, size]; got a carry leaf of unbatched shape {leaf.shape}. "
                "Use bridge=False."
            )
    in_size = sum(leaf.shape[0] for leaf in encoder_leaves)
    keys = jax.random.split(key, len(decoder_leaves))
    return [
        {
            "kernel": _LECUN_NORMAL(k, (in_size, leaf.shape[0]), leaf.dtype),
            "bias": jnp.zeros(leaf.shape, leaf.dtype),
        }
        for k, leaf in zip(keys, decoder_leaves, strict=True)
    ]


def _apply_bridge(bridge, forward, backward, dec_cell: Cell, params) -> Carry:
    joined = jnp.concatenate(
        [*jax.tree.leaves(forward), *jax.tree.leaves(backward)], axis=-1
    )
    leaves = [
        jnp.tanh(_dense(joined, layer["kernel"], layer["bias"])) for layer in bridge
    ]
    treedef = jax.tree.structure(_carry_shapes(dec_cell, params["decoder"]))
    return jax.tree.unflatten(treedef, leaves)


def _dense(x, kernel, bias):
    y = x @ kernel
    return y + jnp.broadcast_to(bias, y.shape)


def _carry_shapes(cell: Cell, params):
    return jax.eval_shape(lambda p: cell.initial_carry(p, ()), params)


def _output_size(cell: Cell, params, input_size: int) -> int:
    carry = jax.eval_shape(lambda p: cell.initial_carry(p, ()), params)
    _, y = jax.eval_shape(
        cell.apply, params, carry, jax.ShapeDtypeStruct((input_size,), jnp.float32)
    )
    return int(y.shape[-1])


def _embed(table, tokens):
    # An id out of range at a valid position gives NaN, loudly, instead of
    # silently clamping (or, for a negative id, wrapping around).
    if tokens.dtype.itemsize < 4 or jnp.issubdtype(tokens.dtype, jnp.unsignedinteger):
        tokens = tokens.astype(jnp.int32)
    tokens = jnp.where(tokens >= 0, tokens, jnp.asarray(table.shape[0], tokens.dtype))
    return jnp.take(table, tokens, axis=0, mode="fill", fill_value=jnp.nan)


def _resolve_cell(cell, hidden_size: int, name: str) -> Cell:
    if isinstance(cell, Cell):
        return cell
    if isinstance(cell, str) and cell in _CELLS:
        return _CELLS[cell](hidden_size)
    raise ValueError(
        f"encoder_decoder: {name} must be one of {sorted(_CELLS)} or a "
        f"seqmask.cells.Cell; got {cell!r}."
    )


def _resolve_attention(attention, size: int) -> Attention:
    if isinstance(attention, Attention):
        return attention
    if attention == "additive":
        return _attention.additive(size)
    if attention == "dot":
        return _attention.dot()
    if attention == "general":
        return _attention.general()
    raise ValueError(
        f"encoder_decoder: attention must be one of {_ATTENTIONS} or a "
        f"seqmask.attention.Attention; got {attention!r}."
    )


def _check_tokens(tokens, name: str, min_ndim: int = 1) -> jax.Array:
    tokens = jnp.asarray(tokens)
    if not jnp.issubdtype(tokens.dtype, jnp.integer):
        raise TypeError(f"{name} must be integer token ids; got dtype {tokens.dtype}.")
    if tokens.ndim < min_ndim:
        raise ValueError(
            f"{name} must be [*batch, time] token ids; got shape {tuple(tokens.shape)}."
        )
    return tokens


def _check_batch(targets, batch_shape, name: str) -> None:
    want = tuple(batch_shape)
    if tuple(targets.shape[:-1]) != want:
        raise ValueError(
            f"{name} must have the batch shape of the source {want}; got shape "
            f"{tuple(targets.shape)}."
        )


def _check_size(value, name: str) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or value <= 0
    ):
        raise ValueError(
            f"encoder_decoder: {name} must be a positive int; got {value!r}."
        )
    return int(value)
