"""Checks of the arrays given to the encoder-decoder's functions.

Token arrays and their masks or lengths are checked the same way for the
source and the targets: through :mod:`seqmask._checks`, eagerly for concrete
values and with checkify when traced. Token ids are checked only where the
mask says they are read.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

import seqmask._checks as _checks
from seqmask._numerics import signed_ids
from seqmask.masks import lengths_to_mask


def tokens_and_mask(
    tokens,
    mask,
    lengths,
    *,
    name: str,
    prefix: str,
    vocab_size: int,
    where: str,
    default_pad_id: int | None = None,
) -> tuple[jax.Array, jax.Array]:
    """``tokens`` ``[*batch, time]`` and their boolean mask, checked.

    ``mask`` and ``lengths`` (named ``{prefix}_mask`` / ``{prefix}_lengths``
    in messages) are alternatives; without either the mask is ``tokens !=
    default_pad_id``, or all true when ``default_pad_id`` is None. The ids at
    valid positions must lie in ``[0, vocab_size)``. The tokens come back in
    a signed dtype of at least 32 bits (:func:`~seqmask._numerics.signed_ids`),
    so that ids, ``bos_id`` and the pad are compared and fed back without
    wrapping (uint8 tokens with 300 classes or ``pad_id=-100``).
    """
    tokens = _checks.integer_array(
        tokens, name, where, hint=f" Pass {name} as integer token ids."
    )
    given, tokens = tokens, signed_ids(tokens)
    _checks.min_rank(tokens, 1, name, where, "[*batch, time]")
    batch_shape, time = tuple(tokens.shape[:-1]), int(tokens.shape[-1])
    if mask is not None and lengths is not None:
        _checks.fail(where, f"give {prefix}_mask or {prefix}_lengths, not both.")
    if lengths is not None:
        lengths_name = f"{prefix}_lengths"
        lengths = _checks.integer_array(lengths, lengths_name, where)
        if tuple(lengths.shape) != batch_shape:
            _checks.fail(
                where,
                f"{lengths_name} must have the batch shape {batch_shape} of {name} "
                f"(shape {tuple(tokens.shape)}); got {tuple(lengths.shape)}.",
            )
        _checks.lengths(lengths, time, lengths_name, where)
        mask = lengths_to_mask(lengths, time)
    elif mask is not None:
        mask = _checks.bool_array(
            mask,
            f"{prefix}_mask",
            where,
            shape=tokens.shape,
            layout=f"[*batch, time] like {name}",
        )
    elif default_pad_id is not None:
        mask = _not_pad(given, default_pad_id)
    else:
        # Laid out like the tokens (a sharded batch keeps its layout).
        mask = jnp.ones_like(tokens, dtype=jnp.bool_)
    # Checked as given, so that a message quotes the ids the caller passed.
    _checks.token_ids(given, vocab_size, name, where, valid=mask)
    return tokens, mask


def _not_pad(tokens: jax.Array, pad_id: int) -> jax.Array:
    """``tokens != pad_id`` in the tokens' own dtype (widened uint32 ids could
    meet a negative pad); a pad the dtype cannot hold equals no token."""
    info = jnp.iinfo(tokens.dtype)
    if not int(info.min) <= int(pad_id) <= int(info.max):
        return jnp.ones_like(tokens, dtype=jnp.bool_)
    return tokens != jnp.asarray(pad_id, tokens.dtype)


def inputs_and_mask(inputs, mask, config, where: str):
    """The decoder's input tokens and their mask, as the pieces that take
    them alone (teacher forcing, own predictions) check them."""
    return tokens_and_mask(
        inputs,
        mask,
        None,
        name="inputs",
        prefix="inputs",
        vocab_size=config.target_vocab_size,
        where=where,
    )


def same_batch(tokens, batch_shape, name: str, other: str, where: str) -> None:
    """``tokens`` ``[*batch, time]`` has the batch shape of ``other``."""
    batch_shape = tuple(batch_shape)
    if tuple(tokens.shape[:-1]) != batch_shape:
        _checks.fail(
            where,
            f"{name} must be [*batch, time] with the batch shape {batch_shape} of "
            f"{other}: [{', '.join([*map(str, batch_shape), 'time'])}]; got shape "
            f"{tuple(tokens.shape)} (batch shape {tuple(tokens.shape[:-1])}).",
        )


def prng_key(key, name: str, where: str) -> jax.Array | None:
    """A PRNG key (see ``_checks.prng_key``), or None."""
    return None if key is None else _checks.prng_key(key, name, where)
