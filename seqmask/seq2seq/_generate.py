"""Decoding a source with the model's own conventions: greedy, beam, sample.

Each function encodes the source and runs :mod:`seqmask.decoding` on the
model's step function, starting every row from ``bos_id`` and stopping it at
``eos_id``, with ``pad_id`` after it, and never emitting ``pad_id`` before
EOS (see :func:`greedy`). Other keyword arguments go to the
decoding function unchanged, so every option of :mod:`seqmask.decoding`
works here. Encoding and decoding trace into one program under ``jax.jit``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

import seqmask._checks as _checks
from seqmask import _sharding
from seqmask import decoding as _decoding
from seqmask.seq2seq._config import Bound, Config, Params, check_config
from seqmask.seq2seq._decoder import step
from seqmask.seq2seq._encoder import encode_checked
from seqmask.seq2seq._init import check_params

_OWN = ("bos_id", "eos_id", "pad_id", "start_tokens")


def greedy(
    config: Config,
    params: Params,
    source,
    *,
    source_mask=None,
    source_lengths=None,
    max_length: int,
    **options,
) -> _decoding.Decoded:
    """Greedy decoding of ``source`` (see :func:`seqmask.decoding.greedy`).

    Every row starts from the model's ``bos_id`` and stops at its ``eos_id``,
    with ``pad_id`` after it. Where ``pad_id`` is a token of the vocabulary
    its logit is ``-inf``, so it is never emitted before EOS (the default
    target mask drops it, so the model never learns it as an output, and a
    pad inside an output would cut it short); the same holds for
    :func:`beam_search` and :func:`sample`. The pad is ruled out after any
    ``logits_fn`` of the options, so a hook that makes ``-inf`` finite
    (soft-capping, ``clip``) cannot bring it back, and the ``log_probs``
    (and beam scores) are renormalised without it.

    Args:
      config: the :class:`~seqmask.seq2seq.Config`.
      params: the parameters.
      source: integer ``[*batch, source]``.
      source_mask, source_lengths: as :func:`~seqmask.seq2seq.encode`.
      max_length: the maximum output length, EOS included (static under
        ``jax.jit``).
      **options: further options of :func:`seqmask.decoding.greedy`.

    Returns:
      A :class:`~seqmask.decoding.Decoded` (tokens ``[*batch, max_length]``).

    Examples:
      >>> import functools, jax, jax.numpy as jnp
      >>> from seqmask import seq2seq
      >>> model = seq2seq.encoder_decoder(7, 5, embed_size=4, hidden_size=6)
      >>> params = model.init(jax.random.key(0))
      >>> run = jax.jit(functools.partial(model.greedy, max_length=4))
      >>> out = run(params, jnp.array([[3, 4, 5], [6, 3, 0]]),
      ...           source_lengths=jnp.array([3, 2]))
      >>> out.tokens.shape, bool(jnp.all(out.lengths <= 4))
      ((2, 4), True)
    """
    masking = (source_mask, source_lengths)
    options.update(max_length=max_length)
    return _decode(_decoding.greedy, config, params, source, masking, **options)


def beam_search(
    config: Config,
    params: Params,
    source,
    *,
    source_mask=None,
    source_lengths=None,
    max_length: int,
    beam_width: int,
    **options,
) -> _decoding.BeamDecoded:
    """Beam search over ``source`` (see :func:`seqmask.decoding.beam_search`).

    Args:
      config, params, source, source_mask, source_lengths, max_length: as
        :func:`greedy`.
      beam_width: the number of hypotheses kept (static).
      **options: further options of :func:`seqmask.decoding.beam_search`
        (``length_penalty``, ...).

    Returns:
      A :class:`~seqmask.decoding.BeamDecoded`, best hypothesis first; the
      scores are log-probabilities renormalised without ``pad_id`` (see
      :func:`greedy`).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from seqmask import seq2seq
      >>> model = seq2seq.encoder_decoder(7, 5, embed_size=4, hidden_size=6)
      >>> params = model.init(jax.random.key(0))
      >>> source = jnp.array([[3, 4, 5]])
      >>> beam = model.beam_search(params, source, max_length=4, beam_width=1)
      >>> greedy = model.greedy(params, source, max_length=4)
      >>> bool(jnp.all(beam.tokens[:, 0] == greedy.tokens))
      True
    """
    masking = (source_mask, source_lengths)
    options.update(max_length=max_length, beam_width=beam_width)
    return _decode(_decoding.beam_search, config, params, source, masking, **options)


def sample(
    config: Config,
    params: Params,
    source,
    key: jax.Array,
    *,
    source_mask=None,
    source_lengths=None,
    max_length: int,
    **options,
) -> _decoding.Decoded:
    """Ancestral sampling from ``source`` (see :func:`seqmask.decoding.sample`).

    Args:
      config, params, source, source_mask, source_lengths, max_length: as
        :func:`greedy`.
      key: a PRNG key.
      **options: further options of :func:`seqmask.decoding.sample`
        (``temperature``, ``top_k``, ...).

    Returns:
      A :class:`~seqmask.decoding.Decoded`.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from seqmask import seq2seq
      >>> model = seq2seq.encoder_decoder(7, 5, embed_size=4, hidden_size=6)
      >>> params = model.init(jax.random.key(0))
      >>> source = jnp.array([[3, 4, 5]])
      >>> drawn = model.sample(params, source, jax.random.key(1), max_length=4,
      ...                      temperature=0.0)
      >>> greedy = model.greedy(params, source, max_length=4)
      >>> bool(jnp.all(drawn.tokens == greedy.tokens))
      True
    """
    masking = (source_mask, source_lengths)
    options.update(max_length=max_length)
    return _decode(_decoding.sample, config, params, source, masking, key, **options)


@dataclasses.dataclass(frozen=True)
class _WithoutPad:
    """A ``logits_fn`` that runs the caller's hook (if any), then sets
    ``pad_id``'s logit to ``-inf``: last, so that no hook (soft-capping,
    ``clip``) can make the pad a choice again. Equal hooks give equal
    wrappers, so a jitted decoder is not recompiled."""

    hook: Any
    pad_id: int

    def __call__(self, t, logits, state, tokens):
        if self.hook is not None:
            out = self.hook(t, logits, state, tokens)
            if getattr(out, "shape", None) != logits.shape or not jnp.issubdtype(
                out.dtype, jnp.floating
            ):
                return out  # the decoder's checks name what logits_fn returned
            logits = out
        return logits.at[..., self.pad_id].set(-jnp.inf)


def _decode(decoder, config: Config, params, source, source_masking, *args, **kw):
    """``decoder`` (a :mod:`seqmask.decoding` function) on the encoded source,
    from ``bos_id`` with the model's step function, ``eos_id`` and ``pad_id``.
    """
    given = sorted(set(kw) & set(_OWN))
    if given:
        _checks.fail(
            decoder.__name__,
            f"{', '.join(given)} cannot be given here: the model decodes with its own "
            "bos_id, eos_id and pad_id (see encoder_decoder); call "
            "seqmask.decoding with model.step to use other ones.",
            TypeError,
        )
    where = decoder.__name__
    check_config(config, where)
    check_params(config, params, where)
    state = encode_checked(config, params, source, source_masking, None, where)
    source = jnp.asarray(source)  # checked by encode_checked; a list is fine
    batch_shape = source.shape[:-1]
    start = jnp.full(batch_shape, config.bos_id, jnp.int32)
    start = _sharding.shard_like_batch(start, source, tuple(range(len(batch_shape))))
    hook = kw.get("logits_fn")
    # Where the pad is a token, it is ruled out after the caller's hook; a
    # hook that is not a function is left for the decoder to report.
    if 0 <= config.pad_id < config.target_vocab_size and (
        hook is None or callable(hook)
    ):
        kw["logits_fn"] = _WithoutPad(hook, config.pad_id)
    return decoder(
        Bound(step, config),
        params,
        state,
        start,
        *args,
        eos_id=config.eos_id,
        pad_id=config.pad_id,
        **kw,
    )
