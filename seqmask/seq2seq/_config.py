"""The records of the encoder-decoder: its configuration and its states.

:class:`Config` is what :func:`~seqmask.seq2seq.encoder_decoder` validated;
every function of the subpackage takes it first. :class:`Memory` and
:class:`DecoderState` are the values that flow from the encoder to the
decoder. The small numerical pieces shared by the encoder and the decoder
(embedding lookups, dropout, the keys of the dropout sites) live here too.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

import seqmask._checks as _checks
from seqmask import _numerics, _sharding
from seqmask.attention import Attention
from seqmask.cells import Cell

Params = Any
Carry = Any

# The dropout sites, in the order of jax.random.split(dropout_key, 5).
SOURCE_EMBEDDING, ENCODER, TARGET_EMBEDDING, DECODER, OUTPUT = range(5)


class Config(NamedTuple):
    """The configuration of an encoder-decoder.

    Built and checked by :func:`~seqmask.seq2seq.encoder_decoder`; every
    function of :mod:`seqmask.seq2seq` takes it as its first argument. It is
    hashable, so it can be a static argument of ``jax.jit``.

    Attributes:
      source_vocab_size: ``Vs``.
      target_vocab_size: ``Vt``.
      embed_size: ``E``, of the source and target embeddings.
      encoder_cells: one :class:`~seqmask.cells.Cell` an encoder layer.
      bidirectional: whether each encoder layer reads both directions (and
        concatenates them).
      decoder_cells: one cell a decoder layer.
      attention: the :class:`~seqmask.attention.Attention`, or None.
      attentional_size: ``A``, the size of the attentional vector (None
        without attention).
      input_feeding: whether the previous attentional vector is fed to the
        decoder with the previous token's embedding.
      bridge: ``"dense"``, ``"none"`` or a function from the encoder's final
        carries to the decoder's initial carry.
      tie_embeddings: whether the output layer uses the target embedding
        (transposed) as its kernel.
      embedding_dropout, layer_dropout, output_dropout: dropout rates on the
        embeddings, between stacked layers, and before the output layer.
      bos_id, eos_id, pad_id: the target token conventions.
    """

    source_vocab_size: int
    target_vocab_size: int
    embed_size: int
    encoder_cells: tuple[Cell, ...]
    bidirectional: bool
    decoder_cells: tuple[Cell, ...]
    attention: Attention | None
    attentional_size: int | None
    input_feeding: bool
    bridge: str | Callable[[Carry], Carry]
    tie_embeddings: bool
    embedding_dropout: float
    layer_dropout: float
    output_dropout: float
    bos_id: int
    eos_id: int
    pad_id: int


class Memory(NamedTuple):
    """What the decoder attends over, computed once per source batch.

    Attributes:
      values: the encoder outputs ``[*batch, source, M]`` (both directions
        concatenated when bidirectional), zero at padded positions.
      keys: ``attention.project_memory(values)`` ``[*batch, source, K]``.
      mask: the source mask, boolean ``[*batch, source]``.
    """

    values: jax.Array
    keys: jax.Array
    mask: jax.Array


class DecoderState(NamedTuple):
    """The decoding state; every leaf starts with the batch axes.

    Attributes:
      carry: the decoder's carry: the cell's carry for one layer, a tuple
        with one carry a layer for several.
      attentional: the previous attentional vector ``[*batch, A]``, fed back
        as input (input feeding); zeros before the first step. None without
        input feeding.
      memory: the encoder :class:`Memory`; None without attention.
    """

    carry: Carry
    attentional: jax.Array | None
    memory: Memory | None


def check_config(config, where: str) -> Config:
    """``config`` is a :class:`Config` (``TypeError`` otherwise): the first
    argument of every function of :mod:`seqmask.seq2seq`."""
    if not isinstance(config, Config):
        _checks.fail(
            where,
            "config must be a seqmask.seq2seq.Config (model.config, from "
            f"seqmask.seq2seq.encoder_decoder); got {_checks.describe(config)}. "
            "The config comes first: seqmask.seq2seq.init(config, key).",
            TypeError,
        )
    return config


def decoder_input_size(config: Config) -> int:
    """The input size of the first decoder layer: ``E`` (``+ A`` fed back)."""
    if config.input_feeding:
        return config.embed_size + (config.attentional_size or 0)
    return config.embed_size


def layers(params, count: int) -> list:
    """The per-layer parameters (or carries): one layer is stored bare."""
    return [params] if count == 1 else list(params)


def embed(table, tokens) -> jax.Array:
    """Rows of ``table`` for integer ``tokens``.

    An id out of range at a position that is read gives NaN, loudly, instead
    of silently clamping (or, for a negative id, wrapping around); ids are
    checked against the vocabulary before they get here.
    """
    tokens = _numerics.signed_ids(tokens)
    vocab = table.shape[0]
    # Compared in the ids' own dtype: a gather would cut 64-bit ids to 32
    # bits, and 2**32 + 1 would read row 1.
    inside = (tokens >= 0) & (tokens < vocab)
    rows = jnp.where(inside, tokens, jnp.asarray(vocab, tokens.dtype))
    return _sharding.take_rows(table, rows.astype(jnp.int32), fill_value=jnp.nan)


def site_key(dropout_key, rate: float, site: int) -> jax.Array | None:
    """The key of one dropout site, or None when that site drops nothing."""
    if dropout_key is None or rate == 0.0:
        return None
    return jax.random.split(dropout_key, 5)[site]


def keep_mask(key, rate: float, shape) -> jax.Array | None:
    """``bernoulli(key, 1 - rate, shape)``, or None without a key."""
    if key is None:
        return None
    return jax.random.bernoulli(key, 1.0 - rate, tuple(shape))


def dropout(x, keep, rate: float) -> jax.Array:
    """Inverted dropout with an explicit keep mask (None: identity)."""
    if keep is None:
        return x
    scale = jnp.asarray(1.0 / (1.0 - rate), x.dtype)
    return jnp.where(keep, x * scale, jnp.zeros((), x.dtype))


class Bound(functools.partial):
    """``function`` with ``config`` bound first, equal to any other binding of
    the same function and an equal config.

    :mod:`seqmask.decoding` compiles once per step function (a static
    argument of ``jax.jit``); comparing bindings by value lets every call of
    ``model.greedy`` reuse the compiled program.
    """

    def __eq__(self, other) -> bool:
        return (
            type(other) is Bound
            and self.func is other.func
            and self.args == other.args
            and self.keywords == other.keywords
        )

    def __hash__(self) -> int:
        return hash((self.func, self.args))

    def __repr__(self) -> str:
        return f"<seqmask.seq2seq.{self.func.__name__} bound to a Config>"
