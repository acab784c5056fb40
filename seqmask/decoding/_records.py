"""The results of decoding, the length penalty, and the types of the hooks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

import seqmask._checks as _checks

Params = Any
State = Any
StepFn = Callable[[Params, State, jax.Array], tuple[State, jax.Array]]
LogitsFn = Callable[[jax.Array, jax.Array, State, jax.Array], jax.Array]


class Decoded(NamedTuple):
    """The result of :func:`greedy` and :func:`sample`.

    Attributes:
      tokens: ``[*batch, max_length]``: the forced prefix, then the generated
        tokens up to and including EOS, then ``pad_id``.
      lengths: int32 ``[*batch]``: the number of tokens up to and including
        EOS, the prefix included (``max_length`` for a row without EOS).
      state: the state after each row's last token (frozen from then on),
        leaves ``[*batch, ...]``.
      log_probs: float32 ``[*batch, max_length]`` (float64 for float64
        logits): the log-probability of each generated token under the
        step's logits (after ``logits_fn`` and the ``min_length`` rule,
        before the temperature and the top-k / top-p / min-p cuts); 0 at
        forced prefix positions and from ``lengths`` on.
        Differentiable with respect to ``params``: ``log_probs.sum(-1)`` is
        :math:`\\log p(y \\mid \\mathrm{prefix})`.
      logits: ``[*batch, max_length, vocab]``: the logits each token was
        chosen from (after ``logits_fn`` and the ``min_length`` rule), zero
        from ``lengths`` on; None unless ``return_logits=True``.
    """

    tokens: jax.Array
    lengths: jax.Array
    state: State
    log_probs: jax.Array | None = None
    logits: jax.Array | None = None


class BeamDecoded(NamedTuple):
    """The result of :func:`beam_search`, best hypothesis first.

    Attributes:
      tokens: ``[*batch, num_decodes, max_length]``, ``pad_id`` after EOS.
      lengths: int32 ``[*batch, num_decodes]``, counting the prefix and EOS.
      scores: float32 ``[*batch, num_decodes]``: the log-probability of the
        generated tokens divided by :func:`length_penalty` of their number,
        in decreasing order. A score of ``-inf`` marks an empty slot (fewer
        hypotheses than ``num_decodes`` exist); its tokens are ``pad_id``,
        its length 0 and its log-probabilities 0.
      state: each hypothesis's state after its last token, leaves
        ``[*batch, num_decodes, ...]`` (an empty slot holds the initial
        state).
      log_probs: float32 ``[*batch, num_decodes, max_length]``: the
        log-probability of each generated token (0 at prefix positions and
        after the end); their sum is ``scores * length_penalty(n, alpha)``
        with ``n`` the number of generated tokens.
    """

    tokens: jax.Array
    lengths: jax.Array
    scores: jax.Array
    state: State
    log_probs: jax.Array | None = None


def length_penalty(lengths, alpha) -> jax.Array:
    r"""The GNMT length penalty (Wu et al. 2016), :math:`((5 + n) / 6)^\alpha`.

    Beam search ranks a hypothesis of ``n`` generated tokens (EOS included)
    by :math:`\log p(y) / \mathrm{lp}(n)`. ``alpha = 0`` gives 1 (raw
    log-probability, which favours short outputs); larger ``alpha`` favours
    longer ones.

    Args:
      lengths: integer lengths ``>= 0``, any shape (checked eagerly when
        concrete, through checkify when traced).
      alpha: the exponent, a real number ``>= 0`` (checked the same way).

    Returns:
      float32 penalties of the shape of ``lengths``.

    Examples:
      >>> from seqmask.decoding import length_penalty
      >>> print(length_penalty(7, 1.0), length_penalty(7, 0.0))
      2.0 1.0
    """
    where = "length_penalty"
    lengths = _checks.integer_array(lengths, "lengths", where)
    _checks.in_range(lengths, "lengths", where, low=0)
    _checks.number(alpha, "alpha", where)
    _checks.in_range(alpha, "alpha", where, low=0)
    return penalty(lengths, alpha)


def penalty(lengths, alpha) -> jax.Array:
    """:func:`length_penalty` without the argument checks (for the loops)."""
    lengths = jnp.asarray(lengths).astype(jnp.float32)
    alpha = jnp.asarray(alpha, jnp.float32)
    return ((5.0 + lengths) / 6.0) ** alpha
