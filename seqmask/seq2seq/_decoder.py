"""The decoder: one step, and whole target sequences with teacher forcing.

The equations of a step are in :mod:`seqmask.seq2seq`; here the decoder
layers run in turn (each reading the previous layer's output), then the
attention and the output layer.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

import seqmask._checks as _checks
from seqmask import _masking
from seqmask._numerics import dense
from seqmask.scan import masked_scan
from seqmask.seq2seq import _config, _init
from seqmask.seq2seq._config import Config, DecoderState, Params, layers
from seqmask.seq2seq._encoder import (
    check_state,
    decoder_arguments,
    state_batch_shape,
)
from seqmask.seq2seq._init import check_params


def step(
    config: Config, params: Params, state: DecoderState, token
) -> tuple[DecoderState, jax.Array]:
    """One decoder step: from the previous token to the next token's logits.

    This is the step function of :mod:`seqmask.decoding` (after binding
    ``config``; ``model.step`` is that function). No dropout is applied.

    Args:
      config: the :class:`~seqmask.seq2seq.Config`.
      params: the parameters.
      state: the :class:`~seqmask.seq2seq.DecoderState` (from
        :func:`~seqmask.seq2seq.encode`, or the previous step).
      token: integer ``[*batch]``, the previous token (``bos_id`` first), in
        ``[0, Vt)``.

    Returns:
      ``(state, logits)`` with logits ``[*batch, Vt]``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from seqmask import seq2seq
      >>> model = seq2seq.encoder_decoder(7, 5, embed_size=4, hidden_size=6)
      >>> params = model.init(jax.random.key(0))
      >>> source, targets = jnp.array([[3, 4, 5]]), jnp.array([[4, 2]])
      >>> state = model.encode(params, source)
      >>> state, first = model.step(params, state, jnp.array([model.bos_id]))
      >>> logits = model.apply(params, source, targets)
      >>> bool(jnp.allclose(first, logits[:, 0], atol=1e-6))
      True
    """
    where = "step"
    _config.check_config(config, where)
    check_params(config, params, where)
    token = _checks.integer_array(token, "token", where)
    batch_shape = state_batch_shape(config, params, state, where)
    if tuple(token.shape) != batch_shape:
        _checks.fail(
            where,
            f"token must have the batch shape {batch_shape} of state (the leading "
            f"axes of its decoder carry); got shape {tuple(token.shape)}.",
        )
    check_state(config, params, state, batch_shape, "token", where)
    _checks.token_ids(token, config.target_vocab_size, "token", where)
    embedded = _config.embed(params["target_embedding"], token)
    carry, vector = decoder_cells(config, params, state, embedded, None)
    attentional = fed_back(config, state.attentional, vector)
    return DecoderState(carry, attentional, state.memory), output_logits(
        config, params, vector
    )


def fed_back(config: Config, attentional, vector):
    """The attentional vector the next step reads (input feeding; else
    None), in the dtype of the one this step read: a decoder of narrower
    cells than its attention layer must keep its carry's dtypes."""
    if not config.input_feeding:
        return None
    return vector.astype(attentional.dtype)


def output_logits(config: Config, params: Params, vector) -> jax.Array:
    """The output layer: ``vector [..., A] -> logits [..., Vt]``."""
    output = params["output"]
    if config.tie_embeddings:
        kernel = jnp.swapaxes(params["target_embedding"], 0, 1)
    else:
        kernel = output["kernel"]
    return dense(vector, kernel, output["bias"])


def decoder_cells(config: Config, params: Params, state, embedded, keeps):
    """The decoder layers and attention, up to the vector before the output.

    ``keeps`` is None or one keep mask a gap between decoder layers.
    """
    cells = config.decoder_cells
    count = len(cells)
    x = embedded
    if config.input_feeding:
        x = jnp.concatenate([embedded, state.attentional.astype(embedded.dtype)], -1)
    carries = []
    for index, (cell, layer, carry) in enumerate(
        zip(
            cells,
            layers(params["decoder"], count),
            layers(state.carry, count),
            strict=True,
        )
    ):
        carry, x = cell.apply(layer, carry, x)
        if keeps is not None and index < count - 1:
            x = _config.dropout(x, keeps[index], config.layer_dropout)
        carries.append(carry)
    carry = carries[0] if count == 1 else tuple(carries)
    if config.attention is None:
        return carry, x
    memory: _config.Memory = state.memory
    context, _ = config.attention.apply(
        params["attention"], x, memory.values, memory.mask, keys=memory.keys
    )
    joined = jnp.concatenate([x, context.astype(x.dtype)], axis=-1)
    return carry, jnp.tanh(dense(joined, params["attentional"]["kernel"]))


def decoder_inputs(targets, mask, bos_id: int) -> jax.Array:
    """The decoder's input tokens for teacher forcing, for any target mask.

    The input at a valid position is the target at the previous *valid*
    position of its row, and ``bos_id`` at the first: for right-padded
    targets, ``bos_id`` followed by the targets shifted right. Left padding
    and holes are read the same way, so any target mask gives exactly the
    outputs of its valid tokens packed to the left. Padded positions get
    ``bos_id`` (the decoder does not read them).

    Args:
      targets: integer ``[*batch, target]``.
      mask: boolean ``[*batch, target]`` (an integer mask is a
        ``TypeError``, as everywhere: build it with ``targets != pad_id``).
      bos_id: the first input of every row: an int that the dtype of
        ``targets`` holds.

    Returns:
      Integer ``[*batch, target]`` in the dtype of ``targets``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from seqmask import seq2seq
      >>> targets = jnp.array([[5, 6, 2, 0], [0, 0, 7, 2]])
      >>> print(seq2seq.decoder_inputs(targets, targets != 0, bos_id=1))
      [[1 5 6 1]
       [1 1 1 7]]
    """
    where = "decoder_inputs"
    targets = _checks.integer_array(targets, "targets", where)
    _checks.min_rank(targets, 1, "targets", where, "[*batch, target]")
    mask = _checks.bool_array(
        mask, "mask", where, shape=targets.shape, layout="[*batch, target] of targets"
    )
    bos_id = _checks.integer(bos_id, "bos_id", where, minimum=0)
    _checks.representable(
        bos_id, targets.dtype, "bos_id", where, hint=f" targets have {targets.dtype}."
    )
    previous = previous_valid(mask)
    gathered = jnp.take_along_axis(targets, jnp.maximum(previous, 0), axis=-1)
    bos = jnp.asarray(bos_id, targets.dtype)
    return jnp.where(mask & (previous >= 0), gathered, bos)


def previous_valid(mask) -> jax.Array:
    """int32 ``[*batch, time]``: the previous valid position of each
    position's row (-1 where there is none)."""
    positions = jnp.arange(mask.shape[-1], dtype=jnp.int32)
    valid_at = jnp.where(mask, positions, jnp.int32(-1))
    last = jax.lax.cummax(valid_at, axis=valid_at.ndim - 1)
    start = jnp.full_like(last[..., :1], -1)  # laid out like the rows
    return jnp.concatenate([start, last[..., :-1]], axis=-1)


def dropout_keeps(config: Config, params: Params, dropout_key, lead):
    """Keep masks for the three decoder sites, each None when it drops nothing.

    Returns ``(embedding [*lead, E], between layers: a list [*lead, H_l],
    output [*lead, A])``; each is ``jax.random.bernoulli(key, 1 - rate,
    shape)`` with the site keys of ``jax.random.split(dropout_key, 5)``
    (target embedding, decoder layers, output: entries 2, 3 and 4; the key
    of the decoder layers split again, one a gap between layers).
    ``lead`` is ``(time, *batch)``.
    """
    if dropout_key is None:
        return None, None, None
    lead = tuple(lead)
    sizes = _init.layer_output_sizes(
        config.decoder_cells, params["decoder"], _config.decoder_input_size(config)
    )
    embedding_rate, layer_rate = config.embedding_dropout, config.layer_dropout
    embedding = _config.keep_mask(
        _config.site_key(dropout_key, embedding_rate, _config.TARGET_EMBEDDING),
        embedding_rate,
        (*lead, config.embed_size),
    )
    between = None
    layer_key = _config.site_key(dropout_key, layer_rate, _config.DECODER)
    if layer_key is not None and len(sizes) > 1:
        between = [
            _config.keep_mask(key, layer_rate, (*lead, size))
            for key, size in zip(
                jax.random.split(layer_key, len(sizes) - 1), sizes[:-1], strict=True
            )
        ]
    output_rate = config.output_dropout
    size = config.attentional_size if config.attention is not None else sizes[-1]
    output = _config.keep_mask(
        _config.site_key(dropout_key, output_rate, _config.OUTPUT),
        output_rate,
        (*lead, size),
    )
    return embedding, between, output


def teacher_forcing(
    config: Config,
    params: Params,
    state: DecoderState,
    inputs,
    mask,
    *,
    dropout_key: jax.Array | None = None,
) -> jax.Array:
    """The decoder over given input tokens: logits at every valid position.

    One :func:`seqmask.masked_scan` over the *target* mask: a padded step
    carries the state through, and its logits are zero.
    The vocabulary projection runs once, outside the scan.

    Args:
      config: the :class:`~seqmask.seq2seq.Config`.
      params: the parameters.
      state: the start state (from :func:`~seqmask.seq2seq.encode`).
      inputs: integer ``[*batch, target]``, the input token at each step
        (e.g. :func:`decoder_inputs`), in ``[0, Vt)`` where ``mask`` holds.
      mask: boolean ``[*batch, target]``.
      dropout_key: a PRNG key for dropout (see :func:`dropout_keeps`); None
        drops nothing.

    Returns:
      Logits ``[*batch, target, Vt]``.
    """
    inputs, mask, dropout_key = decoder_arguments(
        config, params, state, (inputs, mask, dropout_key), "teacher_forcing"
    )
    lead = (inputs.shape[-1], *inputs.shape[:-1])
    embedding, between, output = dropout_keeps(config, params, dropout_key, lead)
    safe = jnp.where(mask, inputs, jnp.asarray(config.bos_id, inputs.dtype))
    embedded = jnp.moveaxis(_config.embed(params["target_embedding"], safe), -2, 0)
    embedded = _config.dropout(embedded, embedding, config.embedding_dropout)

    def body(carry_and_attentional, xs):
        x, keeps = xs
        carry, attentional = carry_and_attentional
        current = DecoderState(carry, attentional, memory=state.memory)
        carry, vector = decoder_cells(config, params, current, x, keeps)
        return (carry, fed_back(config, attentional, vector)), vector

    _, vectors = masked_scan(
        body,
        (state.carry, state.attentional),
        (embedded, between),
        jnp.moveaxis(mask, -1, 0),
    )
    vectors = _config.dropout(vectors, output, config.output_dropout)
    # One large matmul for the vocabulary projection, outside the scan.
    logits = output_logits(config, params, jnp.moveaxis(vectors, 0, -2))
    return _masking.zero_padding(mask, logits)
