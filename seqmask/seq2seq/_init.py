"""The encoder-decoder's parameters: :func:`init`."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

import seqmask._checks as _checks
from seqmask import cells as _cells
from seqmask._numerics import LECUN_NORMAL
from seqmask.layers import init_bidirectional, init_stacked
from seqmask.seq2seq._config import (
    Config,
    Params,
    check_config,
    decoder_input_size,
    layers,
)


def init(config: Config, key: jax.Array) -> Params:
    """Fresh parameters for the encoder-decoder ``config`` describes.

    The parameters are a dict (layers given as one are stored bare; several
    as a list, one entry a layer, as :func:`seqmask.init_stacked` gives):

    - ``source_embedding`` ``[Vs, E]`` and ``target_embedding`` ``[Vt, E]``,
      drawn from a standard normal;
    - ``encoder``: ``{"forward", "backward"}`` cell parameters a layer when
      bidirectional, cell parameters otherwise;
    - ``decoder``: cell parameters a layer; the first layer reads ``E + A``
      features with input feeding, ``E`` without;
    - with a dense bridge, ``bridge``: a list with ``{"kernel", "bias"}`` a
      leaf of the decoder's carry;
    - with attention, ``attention`` and ``attentional`` ``{"kernel": [H + M,
      A]}``;
    - ``output``: ``{"kernel": [A, Vt], "bias": [Vt]}`` (only the bias with
      tied embeddings; ``A`` is the decoder's output size without
      attention).

    It runs op by op like any JAX function; ``jax.jit(model.init)`` compiles
    it as one program instead (``benchmarks/bench_seq2seq_init.py`` compares
    the two).

    Args:
      config: the :class:`~seqmask.seq2seq.Config`.
      key: a PRNG key.

    Returns:
      The parameter dict.

    Examples:
      >>> import jax
      >>> from seqmask import seq2seq
      >>> model = seq2seq.encoder_decoder(7, 5, embed_size=4, hidden_size=8)
      >>> params = seq2seq.init(model.config, jax.random.key(0))
      >>> print(" ".join(sorted(params)))  # doctest: +NORMALIZE_WHITESPACE
      attention attentional bridge decoder encoder output
      source_embedding target_embedding
    """
    check_config(config, "init")
    _checks.prng_key(key, "key", "init")
    return _init(config, key)


def _init(config: Config, key) -> Params:
    """:func:`init` without the argument checks."""
    keys = jax.random.split(key, 8)
    embed_init = jax.nn.initializers.normal(1.0)
    size_e = config.embed_size
    encoder = _init_layers(keys[0], config.encoder_cells, size_e, config.bidirectional)
    memory_size = _stack_output_size(
        config.encoder_cells, encoder, size_e, config.bidirectional
    )
    decoder_input = decoder_input_size(config)
    decoder = _init_layers(keys[1], config.decoder_cells, decoder_input, False)
    query_size = _stack_output_size(config.decoder_cells, decoder, decoder_input, False)
    params = {
        "source_embedding": embed_init(keys[2], (config.source_vocab_size, size_e)),
        "encoder": encoder,
        "target_embedding": embed_init(keys[3], (config.target_vocab_size, size_e)),
        "decoder": decoder,
    }
    vector_size = query_size
    if config.attention is not None:
        assert config.attentional_size is not None
        vector_size = config.attentional_size
        _check_dot(config, query_size, memory_size)
        params["attention"] = config.attention.init(keys[4], query_size, memory_size)
        params["attentional"] = {
            "kernel": LECUN_NORMAL(keys[5], (query_size + memory_size, vector_size)),
        }
    vocab = config.target_vocab_size
    if config.tie_embeddings and vector_size != size_e:
        what, fix = (
            ("attentional_size", "leave attentional_size unset (it defaults to it)")
            if config.attention is not None
            else ("the top decoder cell's output size", "give that cell hidden_size")
        )
        _checks.fail(
            "encoder_decoder",
            f"tie_embeddings=True needs {what} ({vector_size}) to equal embed_size "
            f"({size_e}): the output layer reads it with the target embedding; "
            f"{fix} == embed_size.",
        )
    if config.tie_embeddings:
        params["output"] = {"bias": jnp.zeros((vocab,))}
    else:
        params["output"] = {
            "kernel": LECUN_NORMAL(keys[6], (vector_size, vocab)),
            "bias": jnp.zeros((vocab,)),
        }
    if config.bridge == "dense":
        params["bridge"] = _init_bridge(keys[7], config, encoder, decoder)
    return params


def _check_dot(config: Config, query_size: int, memory_size: int) -> None:
    """Dot attention scores the decoder's output against the memory."""
    if config.attention is None or config.attention.name != "dot":
        return
    if query_size != memory_size:
        both = ", both directions concatenated" if config.bidirectional else ""
        _checks.fail(
            "encoder_decoder",
            f"attention='dot' needs the decoder's output size ({query_size}) to "
            f"equal the memory size ({memory_size}: the encoder's outputs{both}); "
            "use attention='general' or 'additive', or sizes that agree (e.g. "
            "bidirectional=False, or a decoder cell of the memory's size).",
        )


@functools.lru_cache(maxsize=64)
def param_shapes(config: Config) -> Params:
    """The parameters :func:`init` makes for ``config``, as shapes and
    dtypes (traced once a config, nothing computed); raises what ``init``
    raises for a configuration whose sizes do not fit together."""
    return jax.eval_shape(functools.partial(_init, config), jax.random.key(0))


def check_params(config: Config, params, where: str) -> None:
    """``params`` have the layout, shapes and dtypes :func:`init` gives
    (``TypeError``/``ValueError`` naming each leaf by its path in the
    user's dict)."""
    _checks.params_like(
        params,
        param_shapes(config),
        "params",
        where,
        owner="this encoder-decoder",
        hint="\nGive the parameters this model's init makes (see "
        "seqmask.seq2seq.init for the layout).",
    )


def _init_layers(key, cells, input_size: int, bidirectional: bool) -> Params:
    if len(cells) > 1:
        return init_stacked(key, cells, input_size, bidirectional=bidirectional)
    if bidirectional:
        return init_bidirectional(key, cells[0], input_size)
    return cells[0].init(key, input_size)


def _stack_output_size(cells, params, input_size: int, bidirectional: bool) -> int:
    return layer_output_sizes(cells, params, input_size, bidirectional)[-1]


def layer_output_sizes(
    cells, params, input_size: int, bidirectional: bool = False
) -> list[int]:
    """The output size of every layer of a stack (directions concatenated)."""
    sizes, size = [], input_size
    for cell, layer in zip(cells, layers(params, len(cells)), strict=True):
        cell_params = layer["forward"] if bidirectional else layer
        size = _cells.output_size(cell, cell_params, size) * (2 if bidirectional else 1)
        sizes.append(size)
    return sizes


def carry_shapes(cells, params, bidirectional: bool = False):
    """The unbatched carries of a stack (one layer bare), as shapes."""

    def carry(cell, layer):
        return jax.eval_shape(lambda p: cell.initial_carry(p, ()), layer)

    shapes = [
        (carry(cell, layer["forward"]), carry(cell, layer["backward"]))
        if bidirectional
        else carry(cell, layer)
        for cell, layer in zip(cells, layers(params, len(cells)), strict=True)
    ]
    return shapes[0] if len(cells) == 1 else tuple(shapes)


def _init_bridge(key, config: Config, encoder, decoder) -> list:
    encoder_leaves = jax.tree.leaves(
        carry_shapes(config.encoder_cells, encoder, config.bidirectional)
    )
    decoder_leaves = jax.tree.leaves(carry_shapes(config.decoder_cells, decoder))
    for leaf in (*encoder_leaves, *decoder_leaves):
        if len(leaf.shape) != 1:
            _checks.fail(
                "encoder_decoder",
                "bridge='dense' needs carries made of vectors [*batch, size]; got a "
                f"carry leaf of unbatched shape {leaf.shape}. Use bridge='none' or "
                "a bridge function.",
            )
    in_size = sum(leaf.shape[0] for leaf in encoder_leaves)
    keys = jax.random.split(key, len(decoder_leaves))
    return [
        {
            "kernel": LECUN_NORMAL(k, (in_size, leaf.shape[0]), leaf.dtype),
            "bias": jnp.zeros(leaf.shape, leaf.dtype),
        }
        for k, leaf in zip(keys, decoder_leaves, strict=True)
    ]
