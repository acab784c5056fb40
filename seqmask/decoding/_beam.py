r"""Beam search: live hypotheses and a pool of finished ones, as T5X keeps."""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from seqmask import _checks, _masking
from seqmask.decoding import _common
from seqmask.decoding._records import (
    BeamDecoded,
    LogitsFn,
    Params,
    State,
    StepFn,
    penalty,
)


def beam_search(
    step_fn: StepFn,
    params: Params,
    state: State,
    start_tokens,
    *,
    beam_width: int,
    max_length: int,
    eos_id: int,
    pad_id: int = 0,
    length_penalty=0.0,
    num_decodes: int | None = None,
    min_length=0,
    early_stopping: bool = True,
    prefix=None,
    prefix_lengths=None,
    logits_fn: LogitsFn | None = None,
) -> BeamDecoded:
    r"""Beam search with n-best output, a length penalty and early stopping.

    The state (every leaf, the encoder memory included) is tiled across the
    beams here, so ``step_fn`` and ``logits_fn`` see one batch axis of
    ``prod(batch) * beam_width`` rows. The search keeps ``beam_width``
    *live* hypotheses a row and a pool of the ``num_decodes`` best
    *finished* ones. Every step extends each live hypothesis by every token;
    the extensions by EOS compete for the pool with the hypotheses already
    there, the others for the ``beam_width`` live slots (by log-probability).
    After ``max_length`` steps the live hypotheses (``max_length`` tokens
    without EOS) compete for the pool too. A hypothesis of :math:`n`
    generated tokens (EOS included, the forced prefix not) has the score

    .. math::

      \mathrm{score}(y) = \frac{\sum_{i \le n} \log p(y_i \mid y_{<i},
      \mathrm{prefix})}{((5 + n) / 6)^{\alpha}}

    with :math:`\alpha` = ``length_penalty`` (see :func:`length_penalty`)
    and the log-probabilities taken after ``logits_fn`` and the
    ``min_length`` rule. With ``beam_width`` and ``num_decodes`` at least
    the number of all possible hypotheses, the result is the exact ranking
    of all sequences up to ``max_length``. Ties are broken towards the
    earlier beam, then the lower token id, and a hypothesis already in the
    pool beats a new one of the same score.

    Early stopping (T5X's rule): a row is done once its pool is full and
    its worst finished score beats the best score any live hypothesis could
    still reach, :math:`\max \log p_{\mathrm{live}} / \mathrm{lp}(n_{\max})`
    (log-probabilities only fall, and the penalty only grows, up to the
    longest possible output); the loop skips its remaining steps once every
    row is done. This never changes the result, only the work.

    A live hypothesis whose logits hold a NaN or ``+inf``, or no entry above
    ``-inf``, is dropped (reported as an error under
    ``jax.experimental.checkify.checkify``); a row that loses every
    hypothesis keeps what its pool holds, ``-inf`` scores in empty slots.

    Args:
      step_fn, params, state, start_tokens, max_length, eos_id, pad_id,
        min_length, prefix, prefix_lengths, logits_fn: as
        :func:`greedy` (``logits_fn`` sees ``[rows * beam_width, ...]``).
      beam_width: the number of live hypotheses kept (static).
      length_penalty: :math:`\alpha \ge 0` (may be traced).
      num_decodes: how many hypotheses to return, ``1 <= num_decodes <=
        beam_width`` (static; default ``beam_width``).
      early_stopping: stop the loop once no row can change (static).

    Returns:
      A :class:`BeamDecoded` ``(tokens [*batch, num_decodes, max_length],
      lengths [*batch, num_decodes], scores [*batch, num_decodes], state,
      log_probs [*batch, num_decodes, max_length])``, best first.

    Examples:
      A fixed next-token table (token 0 is EOS, 3 the start token); greedy
      would take 1 then 0 (probability 0.6 * 0.5 = 0.3), but 2 then 0 has
      0.4 * 1.0:

      >>> import jax, jax.numpy as jnp
      >>> from seqmask import decoding
      >>> table = jnp.log(jnp.array([[1.0, 1e-9, 1e-9, 1e-9],
      ...                            [0.5, 0.25, 0.25, 1e-9],
      ...                            [1.0, 1e-9, 1e-9, 1e-9],
      ...                            [1e-9, 0.6, 0.4, 1e-9]]))
      >>> step = lambda params, state, token: (state, params[token])
      >>> out = decoding.beam_search(step, table, jnp.zeros(1), jnp.array([3]),
      ...                            beam_width=2, max_length=3, eos_id=0)
      >>> print(out.tokens[0, 0], out.lengths[0, 0])
      [2 0 0] 2
      >>> print(jnp.exp(out.scores[0]).round(3))
      [0.4 0.3]

      Forcing the first token to be 1 and returning the best hypothesis only:

      >>> forced = decoding.beam_search(step, table, jnp.zeros(1), jnp.array([3]),
      ...                               beam_width=2, max_length=3, eos_id=0,
      ...                               num_decodes=1, prefix=jnp.array([[1]]))
      >>> print(forced.tokens[0, 0], forced.lengths[0, 0])
      [1 0 0] 2
      >>> print(jnp.exp(forced.scores[0]).round(3))   # p(0 | 1) only
      [0.5]
    """
    where = "beam_search"
    inputs = _common.check_inputs(
        where,
        step_fn,
        params,
        state,
        start_tokens,
        max_length=max_length,
        eos_id=eos_id,
        pad_id=pad_id,
        min_length=min_length,
        prefix=prefix,
        prefix_lengths=prefix_lengths,
        logits_fn=logits_fn,
    )
    beam_width = _checks.integer(beam_width, "beam_width", where, minimum=1)
    if num_decodes is None:
        num_decodes = beam_width
    num_decodes = _checks.integer(num_decodes, "num_decodes", where, minimum=1)
    if num_decodes > beam_width:
        _checks.fail(
            where,
            f"num_decodes must be at most beam_width = {beam_width}; got "
            f"{num_decodes}. Widen the beam to return more hypotheses.",
        )
    _checks.flag(early_stopping, "early_stopping", where)
    _checks.number(length_penalty, "length_penalty", where)
    _checks.in_range(length_penalty, "length_penalty", where, low=0)
    return _beam_search(
        params,
        state,
        inputs,
        jnp.asarray(length_penalty, jnp.float32),
        step_fn=step_fn,
        logits_fn=logits_fn,
        beam_width=beam_width,
        num_decodes=num_decodes,
        max_length=int(max_length),
        eos_id=int(eos_id),
        pad_id=int(pad_id),
        early_stopping=bool(early_stopping),
    )


class _Live(NamedTuple):
    """The live hypotheses; arrays ``[rows, beams, ...]``, state flat."""

    state: State  # leaves [rows * beams, ...]
    token: jax.Array  # [rows, beams], the last token
    log_prob: jax.Array  # [rows, beams], -inf for an empty slot
    tokens: jax.Array  # [rows, beams, max_length]
    log_probs: jax.Array  # [rows, beams, max_length]


class _Pool(NamedTuple):
    """The best finished hypotheses, sorted; arrays ``[rows, n, ...]``."""

    state: State
    score: jax.Array  # -inf for an empty slot
    length: jax.Array
    tokens: jax.Array
    log_probs: jax.Array


@functools.partial(
    jax.jit,
    static_argnames=(
        "step_fn",
        "logits_fn",
        "beam_width",
        "num_decodes",
        "max_length",
        "eos_id",
        "pad_id",
        "early_stopping",
    ),
)
def _beam_search(
    params,
    state,
    inputs,
    alpha,
    *,
    step_fn,
    logits_fn,
    beam_width,
    num_decodes,
    max_length,
    eos_id,
    pad_id,
    early_stopping,
):
    start = inputs.start
    batch_shape = start.shape
    rows, beams = math.prod(batch_shape), beam_width
    n_batch = len(batch_shape)
    flat = jax.tree.map(lambda x: x.reshape((rows, *x.shape[n_batch:])), state)
    tiled = jax.tree.map(
        lambda x: jnp.repeat(x, beams, axis=0, total_repeat_length=rows * beams),
        flat,
    )
    prefix = inputs.prefix.reshape((rows, -1))
    prefix_lengths = inputs.prefix_lengths.reshape((rows,))
    pad = jnp.asarray(pad_id, start.dtype)
    minus_inf = jnp.float32(-jnp.inf)
    # Only the first beam is alive at the start, so that the first step
    # does not rank beam_width copies of each continuation.
    first = jnp.where(jnp.arange(beams) == 0, jnp.float32(0.0), minus_inf)
    live = _Live(
        state=tiled,
        token=jnp.broadcast_to(start.reshape((rows, 1)), (rows, beams)),
        log_prob=jnp.broadcast_to(first, (rows, beams)),
        tokens=jnp.full((rows, beams, max_length), pad),
        log_probs=jnp.zeros((rows, beams, max_length), jnp.float32),
    )
    pool = _Pool(
        state=jax.tree.map(lambda x: _split(x, rows)[:, :num_decodes], tiled),
        score=jnp.full((rows, num_decodes), minus_inf),
        length=jnp.zeros((rows, num_decodes), jnp.int32),
        tokens=jnp.full((rows, num_decodes, max_length), pad),
        log_probs=jnp.zeros((rows, num_decodes, max_length), jnp.float32),
    )
    # The most tokens a hypothesis of each row can generate.
    longest = max_length - prefix_lengths
    context = _Context(
        params, step_fn, logits_fn, inputs.min_length, eos_id, prefix, prefix_lengths
    )

    def body(carry, t):
        live, pool, done = carry
        live, pool = _step(context, alpha, live, pool, t)
        bound = jnp.max(live.log_prob, axis=1) / penalty(longest, alpha)
        worst = pool.score[:, -1]
        can_change = (bound >= worst) | jnp.isneginf(worst)
        return (live, pool, done | ~can_change | _all_dead(live)), None

    def maybe(carry, t):
        return jax.lax.cond(jnp.all(carry[2]), lambda c, t: (c, None), body, carry, t)

    steps = jnp.arange(max_length, dtype=jnp.int32)
    carry = (live, pool, jnp.zeros((rows,), jnp.bool_))
    (live, pool, done), _ = jax.lax.scan(
        maybe if early_stopping else body, carry, steps
    )
    # The live hypotheses of the rows that ran to the end have max_length
    # tokens; a done row's cannot enter the pool.
    score = live.log_prob / penalty(longest, alpha)[:, None]
    score = jnp.where(done[:, None], minus_inf, score)
    length = jnp.full((rows, beams), max_length, jnp.int32)
    pool = _merge(pool, score, length, live.tokens, live.log_probs, live.state)
    empty = jnp.isneginf(pool.score)
    return BeamDecoded(
        tokens=_unflatten(jnp.where(empty[..., None], pad, pool.tokens), batch_shape),
        lengths=_unflatten(jnp.where(empty, 0, pool.length), batch_shape),
        scores=_unflatten(pool.score, batch_shape),
        state=jax.tree.map(lambda x: _unflatten(x, batch_shape), pool.state),
        log_probs=_unflatten(
            jnp.where(empty[..., None], jnp.float32(0.0), pool.log_probs), batch_shape
        ),
    )


class _Context(NamedTuple):
    params: Params
    step_fn: StepFn
    logits_fn: LogitsFn | None
    min_length: jax.Array
    eos_id: int
    prefix: jax.Array  # [rows, P]
    prefix_lengths: jax.Array  # [rows]


def _step(context: _Context, alpha, live: _Live, pool: _Pool, t):
    """One step: extend the live hypotheses, refill the live slots and pool."""
    rows, beams, max_length = live.tokens.shape
    new_state, logits = context.step_fn(
        context.params, live.state, live.token.reshape(rows * beams)
    )
    history = live.tokens.reshape((rows * beams, max_length))
    logits = _common.process_logits(
        context.logits_fn,
        t,
        logits,
        new_state,
        history,
        context.min_length,
        context.eos_id,
    )
    alive = ~jnp.isneginf(live.log_prob).reshape(rows * beams)
    usable = _common.usable(logits)
    _common.report_unusable("beam_search", usable | ~alive)
    safe = _masking.where_rows(usable, logits, jnp.zeros((), logits.dtype))
    vocab = logits.shape[-1]
    log_probs = _common.log_softmax(safe).astype(jnp.float32)
    minus_inf = jnp.float32(-jnp.inf)
    log_probs = _masking.where_rows(usable, log_probs, minus_inf)
    log_probs = log_probs.reshape((rows, beams, vocab))

    forced = (t < context.prefix_lengths)[:, None, None]
    ids = jnp.arange(vocab).reshape((1, 1, vocab))
    prefix_token = _common.prefix_at(context.prefix, t)[:, None, None]
    previous = live.log_prob[..., None]
    # A forced step adds nothing to the log-probability: the score counts
    # the generated tokens only.
    forced_candidates = jnp.where(ids == prefix_token, previous, minus_inf)
    forced_candidates = _masking.where_rows(
        usable.reshape((rows, beams)), forced_candidates, minus_inf
    )
    candidates = jnp.where(forced, forced_candidates, previous + log_probs)
    step_log_probs = jnp.where(forced, jnp.float32(0.0), log_probs)

    # The live slots: the best extensions by anything but a generated EOS.
    ends = (ids == context.eos_id) & ~forced
    flat = jnp.where(ends, minus_inf, candidates).reshape((rows, beams * vocab))
    log_prob, index = jax.lax.top_k(flat, beams)
    parent, token = index // vocab, (index % vocab).astype(live.token.dtype)
    picked = jnp.take_along_axis(
        step_log_probs.reshape((rows, beams * vocab)), index, axis=1
    )
    new_live = _Live(
        state=jax.tree.map(lambda x: _gather(x, parent), new_state),
        token=token,
        log_prob=log_prob,
        tokens=_take(live.tokens, parent).at[:, :, t].set(token),
        log_probs=_take(live.log_probs, parent).at[:, :, t].set(picked),
    )

    # The pool: the extensions by EOS against the finished hypotheses.
    # At least 1: the penalty of a forced step's (discarded) EOS stays finite.
    generated = jnp.maximum(t + 1 - context.prefix_lengths, 1)
    eos_log_prob = jnp.where(forced[..., 0], minus_inf, candidates[..., context.eos_id])
    eos_score = eos_log_prob / penalty(generated, alpha)[:, None]
    eos = jnp.asarray(context.eos_id, live.tokens.dtype)
    pool = _merge(
        pool,
        eos_score,
        jnp.full((rows, beams), t + 1, jnp.int32),
        live.tokens.at[:, :, t].set(eos),
        live.log_probs.at[:, :, t].set(log_probs[..., context.eos_id]),
        new_state,
    )
    return new_live, pool


def _merge(pool: _Pool, score, length, tokens, log_probs, state) -> _Pool:
    """The best ``n`` of the pool and ``beams`` new finished hypotheses."""
    rows, n = pool.score.shape
    best, index = jax.lax.top_k(jnp.concatenate([pool.score, score], axis=1), n)

    def pick(old, new):
        return _take(jnp.concatenate([old, new], axis=1), index)

    return _Pool(
        state=jax.tree.map(lambda o, s: pick(o, _split(s, rows)), pool.state, state),
        score=best,
        length=pick(pool.length, length),
        tokens=pick(pool.tokens, tokens),
        log_probs=pick(pool.log_probs, log_probs),
    )


def _all_dead(live: _Live):
    return jnp.all(jnp.isneginf(live.log_prob), axis=1)


def _split(leaf, rows):
    """``[rows * k, ...] -> [rows, k, ...]``."""
    return leaf.reshape((rows, -1, *leaf.shape[1:]))


def _take(grouped, index):
    """``grouped[r, index[r, j]]`` for ``grouped`` ``[rows, k, ...]``."""
    return jax.vmap(lambda x, i: x[i])(grouped, index)


def _gather(leaf, parent):
    """``leaf[r * beams + parent[r, j]]`` for a flat ``[rows * beams, ...]``."""
    rows = parent.shape[0]
    return _take(_split(leaf, rows), parent).reshape(leaf.shape)


def _unflatten(x, batch_shape):
    return x.reshape((*batch_shape, *x.shape[1:]))
