"""Ready-made ``logits_fn`` hooks for the decoders."""

from __future__ import annotations

import dataclasses
import math
import numbers

import jax.numpy as jnp

import seqmask._checks as _checks
from seqmask import _numerics, _sharding
from seqmask.decoding._records import LogitsFn


def repetition_penalty(penalty: float) -> LogitsFn:
    r"""A ``logits_fn`` that penalises the tokens already in the output.

    The CTRL penalty (Keskar et al. 2019, as in HF ``generate``): for every
    token that occurs among the output tokens before the current step (the
    forced prefix included, the start token not), its logit :math:`\ell`
    becomes :math:`\ell / \theta` if :math:`\ell > 0` and :math:`\ell \cdot
    \theta` otherwise. :math:`\theta > 1` discourages repeats, :math:`\theta
    = 1` changes nothing, :math:`0 < \theta < 1` encourages them.

    The hook reads the ``tokens`` argument the decoders pass
    (``[*rows, max_length]``, the output so far), so it works unchanged in
    :func:`greedy`, :func:`sample` and :func:`beam_search`. Two hooks made
    with the same penalty compare equal, so a jitted decoder is not
    recompiled for a new one.

    Args:
      penalty: :math:`\theta`, a Python number ``> 0`` (static).

    Returns:
      A function ``(step, logits, state, tokens) -> logits``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from seqmask import decoding
      >>> hook = decoding.repetition_penalty(2.0)
      >>> logits = jnp.array([[1.0, -1.0, 3.0, 0.5]])
      >>> tokens = jnp.array([[0, 1, 0]])     # two tokens so far, then padding
      >>> print(hook(jnp.int32(2), logits, None, tokens))
      [[ 0.5 -2.   3.   0.5]]
    """
    where = "repetition_penalty"
    if _checks.is_traced(penalty) or not isinstance(penalty, numbers.Real):
        _checks.fail(
            where,
            f"penalty must be a Python number (it is static); got "
            f"{_checks.describe(penalty)}.",
            TypeError,
        )
    if isinstance(penalty, bool):
        _checks.fail(where, "penalty must be a number; got a bool.", TypeError)
    if not (math.isfinite(penalty) and penalty > 0):
        _checks.fail(where, f"penalty must lie in (0, inf); got {penalty!r}.")
    return _RepetitionPenalty(float(penalty))


@dataclasses.dataclass(frozen=True)
class _RepetitionPenalty:
    penalty: float

    def __call__(self, step, logits, state, tokens):
        del state
        # Widened, so that no id wraps against the vocabulary size (uint8 ids
        # of a 256-token vocabulary).
        tokens = _numerics.signed_ids(tokens)
        # Arithmetic, not selects or reshapes: the values keep the layout of
        # a batch split over devices, whatever its axes.
        width = tokens.shape[-1]
        positions = jnp.arange(width, dtype=jnp.asarray(step).dtype)  # x64: step's
        positions = positions.reshape((1,) * (tokens.ndim - 1) + (width,))
        # Only ids of the vocabulary count: a pad_id outside it (after EOS
        # in a finished row) must not be scattered at a wrapped index.
        vocab = logits.shape[-1]
        counted = (positions < step) & (tokens >= 0) & (tokens < vocab)
        counted = counted.astype(tokens.dtype)
        counts = _sharding.put_along_last_axis(
            jnp.zeros_like(logits, jnp.int32),
            tokens * counted,
            jnp.zeros_like(tokens, jnp.int32) + counted.astype(jnp.int32),
            add=True,
        )
        theta = jnp.asarray(self.penalty, logits.dtype)
        penalised = jnp.where(logits > 0, logits / theta, logits * theta)
        return jnp.where(counts > 0, penalised, logits)
