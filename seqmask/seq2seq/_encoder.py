"""The encoder and the bridge to the decoder: :func:`encode`."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

import seqmask._checks as _checks
from seqmask import _sharding
from seqmask._numerics import dense
from seqmask.layers import stacked
from seqmask.seq2seq import _config, _inputs
from seqmask.seq2seq._config import (
    Config,
    DecoderState,
    Memory,
    Params,
    check_config,
    layers,
)
from seqmask.seq2seq._init import carry_shapes, check_params


def encode(
    config: Config,
    params: Params,
    source,
    *,
    source_mask=None,
    source_lengths=None,
    dropout_key: jax.Array | None = None,
) -> DecoderState:
    r"""Run the encoder and return the decoder's start state.

    The source ids at valid positions are embedded (padded ids are never
    read, so anything may sit there), and the encoder layers run over the
    *source* mask: each direction visits exactly each row's valid steps, for
    any mask. The decoder's initial carry comes from the bridge:

    - ``"dense"``: every leaf :math:`l` of the decoder's carry is
      :math:`\tanh(z W_l + b_l)`, where :math:`z` concatenates all leaves of
      the encoder's final carries (every layer; forward, then backward: the
      state after each row's last and first valid step);
    - ``"none"``: the decoder cells' initial carries (zeros, or learned with
      ``learnable_initial_state``);
    - a function: ``bridge(final_carries)``, where ``final_carries`` is the
      encoder's final carry as :func:`seqmask.stacked` returns it (one layer:
      that layer's carry, a ``(forward, backward)`` pair when
      bidirectional; several: a list, one a layer); it must return a carry
      of the decoder's structure, shapes and dtypes.

    A row with no valid source position (an all-false mask, a length of 0,
    or a source of length 0) keeps the encoder's initial carries, and its
    attention context is zero.

    Args:
      config: the :class:`~seqmask.seq2seq.Config`.
      params: the parameters (see :func:`~seqmask.seq2seq.init`).
      source: integer ids ``[*batch, source]``.
      source_mask: boolean ``[*batch, source]``, any pattern (left padding,
        holes); alternative to ``source_lengths``. Default: all valid.
      source_lengths: integer ``[*batch]`` in ``[0, source]``.
      dropout_key: a PRNG key for dropout on the source embeddings and
        between encoder layers; None (the default) drops nothing.

    Returns:
      A :class:`~seqmask.seq2seq.DecoderState` with leaves ``[*batch, ...]``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from seqmask import seq2seq
      >>> model = seq2seq.encoder_decoder(7, 5, embed_size=4, hidden_size=6)
      >>> params = model.init(jax.random.key(0))
      >>> state = seq2seq.encode(model.config, params, jnp.array([[3, 4, 5]]),
      ...                        source_lengths=jnp.array([2]))
      >>> state.memory.values.shape, state.attentional.shape
      ((1, 3, 12), (1, 6))
      >>> print(state.memory.values[0, 2])   # a padded position
      [0. 0. 0. 0. 0. 0. 0. 0. 0. 0. 0. 0.]
    """
    where = "encode"
    check_config(config, where)
    check_params(config, params, where)
    masking = (source_mask, source_lengths)
    return encode_checked(config, params, source, masking, dropout_key, where)


def encode_checked(
    config: Config, params, source, masking, dropout_key, where: str
) -> DecoderState:
    """:func:`encode` after the checks of its config and parameters, for the
    public function ``where``; ``masking`` is ``(source_mask,
    source_lengths)``."""
    source_mask, source_lengths = masking
    source, mask = _inputs.tokens_and_mask(
        source,
        source_mask,
        source_lengths,
        name="source",
        prefix="source",
        vocab_size=config.source_vocab_size,
        where=where,
    )
    dropout_key = _inputs.prng_key(dropout_key, "dropout_key", where)
    batch_shape = tuple(source.shape[:-1])
    # Padded ids are never looked up, so anything may sit there.
    tokens = jnp.where(mask, source, jnp.zeros((), source.dtype))
    xs = _config.embed(params["source_embedding"], tokens)
    rate = config.embedding_dropout
    keep = _config.keep_mask(
        _config.site_key(dropout_key, rate, _config.SOURCE_EMBEDDING), rate, xs.shape
    )
    xs = _config.dropout(xs, keep, rate)
    count = len(config.encoder_cells)
    finals, values = stacked(
        list(config.encoder_cells),
        layers(params["encoder"], count),
        xs,
        mask=mask,
        bidirectional=config.bidirectional,
        dropout_rate=config.layer_dropout,
        dropout_key=_config.site_key(
            dropout_key, config.layer_dropout, _config.ENCODER
        ),
    )
    finals = finals[0] if count == 1 else finals
    carry = _bridge(config, params, finals, batch_shape)
    memory = None
    if config.attention is not None:
        keys = config.attention.project_memory(params["attention"], values, mask)
        memory = Memory(values, keys, mask)
    attentional = None
    if config.input_feeding:
        assert config.attentional_size is not None
        attentional = jnp.zeros((*batch_shape, config.attentional_size), values.dtype)
    # What the bridge or the zeros start from is laid out like the batch
    # (under explicit mesh axes; unchanged otherwise).
    batch_axes = tuple(range(len(batch_shape)))
    carry, attentional = _sharding.shard_like_batch(
        (carry, attentional), values, batch_axes
    )
    return DecoderState(carry, attentional, memory)


def _bridge(config: Config, params: Params, finals, batch_shape):
    cells = config.decoder_cells
    count = len(cells)
    if config.bridge == "none":
        initial = [
            cell.initial_carry(layer, batch_shape)
            for cell, layer in zip(cells, layers(params["decoder"], count), strict=True)
        ]
        return initial[0] if count == 1 else tuple(initial)
    shapes = carry_shapes(cells, params["decoder"])
    if config.bridge == "dense":
        joined = jnp.concatenate(jax.tree.leaves(finals), axis=-1)
        # Each leaf in the dtype of the decoder's carry (bfloat16 decoder
        # cells after a float32 encoder compute in float32 here).
        leaves = [
            jnp.tanh(dense(joined, layer["kernel"], layer["bias"])).astype(leaf.dtype)
            for layer, leaf in zip(
                params["bridge"], jax.tree.leaves(shapes), strict=True
            )
        ]
        return jax.tree.unflatten(jax.tree.structure(shapes), leaves)
    assert callable(config.bridge)
    carry = config.bridge(finals)
    expected = jax.tree.map(
        lambda leaf: jax.ShapeDtypeStruct((*batch_shape, *leaf.shape), leaf.dtype),
        shapes,
    )
    _checks.tree_like(
        carry,
        expected,
        "the bridge's result",
        "encode",
        expected_from="the decoder's carry",
        hint=" The bridge function must return the decoder's initial carry.",
    )
    return carry


@functools.lru_cache(maxsize=64)
def _state_shapes(config: Config, params_spec, batch_shape, source_length: int):
    """The :class:`DecoderState` :func:`encode` gives, as shapes and dtypes."""
    source = jax.ShapeDtypeStruct((*batch_shape, source_length), jnp.int32)
    params = jax.tree.unflatten(params_spec[0], [_struct(s) for s in params_spec[1]])
    return jax.eval_shape(
        lambda p, x: encode_checked(config, p, x, (None, None), None, "encode"),
        params,
        source,
    )


def _struct(spec):
    return jax.ShapeDtypeStruct(*spec)


def check_state(config: Config, params, state, batch_shape, given: str, where: str):
    """``state`` is the :class:`DecoderState` that :func:`encode` gives for
    ``batch_shape`` (that of the argument ``given``, e.g. "inputs"), with
    this model's sizes."""
    if not isinstance(state, DecoderState):
        _checks.fail(
            where,
            "state must be a seqmask.seq2seq.DecoderState (from encode, or the "
            f"previous step); got {_checks.describe(state)}.",
            TypeError,
        )
    mask = getattr(state.memory, "mask", None)
    source_length = 1 if mask is None or jnp.ndim(mask) < 1 else jnp.shape(mask)[-1]
    leaves, treedef = jax.tree.flatten(params)
    spec = (treedef, tuple((tuple(jnp.shape(x)), jnp.result_type(x)) for x in leaves))
    expected = _state_shapes(config, spec, tuple(batch_shape), int(source_length))
    _checks.tree_like(
        state,
        expected,
        "state",
        where,
        expected_from="the state this model's encode gives for the batch shape "
        f"{tuple(batch_shape)} of {given}",
        hint="Give the state of this model's encode (or of its previous step).",
        dtype_error=TypeError,
    )


def decoder_arguments(config: Config, params, state, given, where: str):
    """The checked arguments of the decoder over given inputs (teacher
    forcing, own predictions): the config, the parameters, ``given =
    (inputs, mask, dropout_key)``, and a start ``state`` of the batch shape
    of ``inputs``. Returns ``(inputs, mask, dropout_key)``."""
    inputs, mask, dropout_key = given
    check_config(config, where)
    check_params(config, params, where)
    inputs, mask = _inputs.inputs_and_mask(inputs, mask, config, where)
    check_state(config, params, state, tuple(inputs.shape[:-1]), "inputs", where)
    return inputs, mask, _inputs.prng_key(dropout_key, "dropout_key", where)


def state_batch_shape(config: Config, params, state, where: str) -> tuple[int, ...]:
    """The batch shape of a :class:`DecoderState`: the leading axes of its
    decoder carry (the part of it no batch has)."""
    if not isinstance(state, DecoderState):
        check_state(config, params, state, (), "", where)  # raises TypeError
    template = jax.tree.leaves(carry_shapes(config.decoder_cells, params["decoder"]))
    given = jax.tree.leaves(state.carry)
    if not template or len(given) != len(template):
        return ()
    shape = tuple(jnp.shape(given[0]))
    return shape[: max(len(shape) - len(template[0].shape), 0)]
