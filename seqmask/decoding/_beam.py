r"""Beam search: the best hypotheses a row, finished ones keeping their slots."""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

import seqmask._checks as _checks
from seqmask import _masking, _sharding
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
    ``prod(batch) * beam_width`` rows. Every step extends each unfinished
    hypothesis by every token, extends each finished one by ``pad_id`` only
    (its log-probability, length and state frozen), and keeps the
    ``beam_width`` candidates with the highest score; a finished hypothesis
    keeps its slot as long as it ranks among them. A hypothesis of
    :math:`n` generated tokens (EOS included, the forced prefix not) has the
    score

    .. math::

      \mathrm{score}(y) = \frac{\sum_{i \le n} \log p(y_i \mid y_{<i},
      \mathrm{prefix})}{((5 + n) / 6)^{\alpha}}

    with :math:`\alpha` = ``length_penalty`` (see :func:`length_penalty`)
    and the log-probabilities taken after ``logits_fn`` and the
    ``min_length`` rule. After ``max_length`` steps the first
    ``num_decodes`` beams, in decreasing order of score, are returned. With
    ``beam_width == 1`` the result is :func:`greedy`'s (barring two
    next-token log-probabilities that tie after adding the prefix's in
    float32); with ``beam_width`` at least the number of all possible
    hypotheses, it is the exact ranking of all sequences up to
    ``max_length``. Ties are broken towards the earlier beam, then the lower
    token id.

    Early stopping (T5X's rule, for the hypotheses returned): a row is done
    once its ``num_decodes`` best beams have all finished and no unfinished
    beam can still beat the last of them: its best reachable score is at
    most :math:`\log p / \mathrm{lp}(n_{\max})`, since log-probabilities
    only fall and the penalty only grows up to the longest possible output.
    The loop skips its remaining steps once every row is done. This never
    changes the result, only the work (with ``num_decodes == beam_width``,
    a row is done when all its beams have finished).

    An unfinished hypothesis whose logits hold a NaN or ``+inf``, or no
    entry above ``-inf``, is dropped (reported as an error under
    ``jax.experimental.checkify.checkify``); slots left without a hypothesis
    have the score ``-inf``.

    Args:
      step_fn, params, state, start_tokens, max_length, eos_id, pad_id,
        min_length, prefix, prefix_lengths, logits_fn: as
        :func:`greedy` (``logits_fn`` sees ``[rows * beam_width, ...]``).
      beam_width: the number of hypotheses kept (static).
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
    options = _common.Options(
        max_length, eos_id, pad_id, min_length, prefix, prefix_lengths
    )
    inputs, static = _common.check_inputs(
        "beam_search", step_fn, logits_fn, params, state, start_tokens, options
    )
    beam = _check_beam(beam_width, num_decodes, early_stopping, length_penalty)
    alpha = jnp.asarray(length_penalty, jnp.float32)
    return _beam_search(params, state, inputs, alpha, static, beam)


class _Beam(NamedTuple):
    """The checked options of the beam (static)."""

    width: int
    num_decodes: int
    early_stopping: bool


def _check_beam(beam_width, num_decodes, early_stopping, alpha) -> _Beam:
    where = "beam_search"
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
    early_stopping = _checks.flag(early_stopping, "early_stopping", where)
    _checks.number(alpha, "length_penalty", where)
    _checks.in_range(alpha, "length_penalty", where, low=0)
    return _Beam(beam_width, num_decodes, early_stopping)


class _Beams(NamedTuple):
    """The hypotheses; arrays ``[rows, beams, ...]``, the state flat."""

    state: State  # leaves [rows * beams, ...]
    token: jax.Array  # the last input token
    log_prob: jax.Array  # of the generated tokens; -inf for an empty slot
    finished: jax.Array
    length: jax.Array  # output tokens, the prefix included
    tokens: jax.Array  # [rows, beams, max_length]
    log_probs: jax.Array  # [rows, beams, max_length]


class _Context(NamedTuple):
    params: Params
    static: _common.Static
    min_length: jax.Array
    prefix: jax.Array  # [rows, P]
    prefix_lengths: jax.Array  # [rows]


@functools.partial(jax.jit, static_argnums=(4, 5))
def _beam_search(
    params, state, inputs: _common.Inputs, alpha, static: _common.Static, beam: _Beam
) -> BeamDecoded:
    start = inputs.start
    batch_shape = start.shape
    rows, beams = math.prod(batch_shape), beam.width
    n_batch = len(batch_shape)
    flat = jax.tree.map(lambda x: _sharding.flatten_rows(x, n_batch), state)
    # Each row's state repeated for its beams, rows * beams leading (a
    # broadcast and a reshape keep the rows' layout under explicit sharding).
    tiled = jax.tree.map(
        lambda x: jnp.broadcast_to(x[:, None], (rows, beams, *x.shape[1:])).reshape(
            (rows * beams, *x.shape[1:])
        ),
        flat,
    )
    prefix_lengths = _sharding.flatten_rows(inputs.prefix_lengths, n_batch)
    pad = jnp.asarray(static.pad_id, start.dtype)
    max_length = static.max_length
    # Only the first beam is alive at the start, so that the first step
    # does not rank beam_width copies of each continuation.
    first = jnp.where(jnp.arange(beams) == 0, jnp.float32(0.0), -jnp.inf)
    # The batch axes merged, then a beam axis added: JAX infers the layout of
    # that merge under explicit mesh axes, not of a reshape that does both.
    init = _Beams(
        state=tiled,
        token=jnp.broadcast_to(
            _sharding.flatten_rows(start, n_batch)[:, None], (rows, beams)
        ),
        log_prob=jnp.broadcast_to(first, (rows, beams)),
        finished=jnp.zeros((rows, beams), jnp.bool_),
        length=jnp.zeros((rows, beams), jnp.int32),
        tokens=jnp.full((rows, beams, max_length), pad),
        log_probs=jnp.zeros((rows, beams, max_length), jnp.float32),
    )
    # Laid out like the rows (under explicit mesh axes; unchanged otherwise).
    init = _sharding.shard_like_batch(init, prefix_lengths)
    context = _Context(
        params,
        static,
        inputs.min_length,
        _sharding.flatten_rows(inputs.prefix, n_batch),
        prefix_lengths,
    )
    # The most tokens a hypothesis of each row can generate.
    longest = max_length - prefix_lengths
    num_decodes = beam.num_decodes

    def body(carry, t):
        beams_, done = carry
        beams_ = _step(context, alpha, beams_, t)
        settled = _settled(beams_, context, alpha, longest, num_decodes)
        return (beams_, done | settled), None

    def maybe(carry, t):
        return jax.lax.cond(jnp.all(carry[1]), lambda c, t: (c, None), body, carry, t)

    steps = jnp.arange(max_length, dtype=jnp.int32)
    carry = (init, jnp.zeros_like(prefix_lengths, jnp.bool_))
    (final, _), _ = jax.lax.scan(maybe if beam.early_stopping else body, carry, steps)
    generated = jnp.maximum(final.length - prefix_lengths[:, None], 0)
    scores = final.log_prob / penalty(generated, alpha)
    keep = slice(0, num_decodes)
    scores = scores[:, keep]
    empty = jnp.isneginf(scores)
    tokens = jnp.where(empty[..., None], pad, final.tokens[:, keep])
    log_probs = jnp.where(empty[..., None], 0.0, final.log_probs[:, keep])

    def unflatten(x):  # [rows, ...] -> [*batch, ...], laid out like start
        return _sharding.unflatten_rows(x, start)

    return BeamDecoded(
        tokens=unflatten(tokens),
        lengths=unflatten(jnp.where(empty, 0, final.length[:, keep])),
        scores=unflatten(scores),
        # An empty slot holds the row's initial state, not a state copied
        # into it from a live hypothesis during the search.
        state=jax.tree.map(
            lambda x, initial: unflatten(
                _masking.where_rows(
                    empty, initial[:, None], _split(x, rows, beams)[:, keep]
                )
            ),
            final.state,
            flat,
        ),
        log_probs=unflatten(log_probs),
    )


def _settled(beams: _Beams, context: _Context, alpha, longest, n):
    """Per row: the ``n`` best have finished and no unfinished beam can beat
    the last of them (T5X's rule)."""
    scores = beams.log_prob / penalty(_generated(beams.length, context), alpha)
    going = jnp.where(beams.finished, -jnp.inf, beams.log_prob)
    bound = jnp.max(going, axis=1) / penalty(longest, alpha)
    return jnp.all(beams.finished[:, :n], axis=1) & (bound < scores[:, n - 1])


def _step(context: _Context, alpha, beams: _Beams, t) -> _Beams:
    """One step: every candidate extension, then the best ``beams``."""
    rows, width, max_length = beams.tokens.shape
    static = context.static
    new_state, logits = static.step_fn(
        context.params, beams.state, beams.token.reshape(rows * width)
    )
    logits = _common.process_logits(
        static.logits_fn,
        t,
        logits,
        new_state,
        beams.tokens.reshape((rows * width, max_length)),
        context.min_length,
        static.eos_id,
    )
    finished = beams.finished.reshape(rows * width)
    alive = ~finished & ~jnp.isneginf(beams.log_prob).reshape(rows * width)
    usable = _common.usable(logits)
    _common.report_unusable("beam_search", usable | ~alive)
    safe = _masking.where_rows(usable, logits, jnp.zeros((), logits.dtype))
    vocab = logits.shape[-1]
    minus_inf = jnp.float32(-jnp.inf)
    log_probs = _common.log_softmax(safe).astype(jnp.float32)
    log_probs = _masking.where_rows(usable, log_probs, minus_inf)
    log_probs = log_probs.reshape((rows, width, vocab))

    ids = jnp.arange(vocab).reshape((1, 1, vocab))
    forced = (t < context.prefix_lengths)[:, None, None]
    previous = beams.log_prob[..., None]
    # A forced step adds nothing to the log-probability: the score counts
    # the generated tokens only.
    prefix_token = _common.prefix_at(context.prefix, t)[:, None, None]
    forced_step = jnp.where(
        (ids == prefix_token) & usable.reshape((rows, width, 1)), 0.0, minus_inf
    )
    step_log_probs = jnp.where(forced, forced_step, log_probs)
    # A finished hypothesis has one continuation (slot 0, emitted as pad)
    # that keeps its log-probability and length.
    frozen = jnp.where(ids == 0, previous, minus_inf)
    done = beams.finished[..., None]
    candidates = jnp.where(done, frozen, previous + step_log_probs)
    generated = jnp.maximum(t + 1 - context.prefix_lengths, 0)[:, None]
    lengths = jnp.where(beams.finished, beams.length, t + 1)
    scored = jnp.where(
        done,
        frozen / penalty(_generated(beams.length, context), alpha)[..., None],
        candidates / penalty(generated, alpha)[..., None],
    )
    _, index = jax.lax.top_k(scored.reshape((rows, width * vocab)), width)
    parent, token = index // vocab, index % vocab

    def pick(x):
        return jnp.take_along_axis(x, parent, axis=1)

    parent_finished = pick(beams.finished)
    token = token.astype(beams.tokens.dtype)
    pad = jnp.asarray(static.pad_id, token.dtype)
    emitted = jnp.where(parent_finished, pad, token)
    picked = jnp.take_along_axis(
        step_log_probs.reshape((rows, width * vocab)), index, axis=1
    )
    ended = (token == static.eos_id) & ~(t < context.prefix_lengths)[:, None]
    # Freeze the finished hypotheses' states before reordering the beams.
    kept = _masking.where_rows_tree(finished, beams.state, new_state, in_scan=True)
    return _Beams(
        state=jax.tree.map(lambda x: _gather(x, parent), kept),
        token=jnp.where(parent_finished, pick(beams.token), emitted),
        log_prob=jnp.take_along_axis(
            candidates.reshape((rows, width * vocab)), index, axis=1
        ),
        finished=parent_finished | ended,
        length=pick(lengths),
        tokens=_take(beams.tokens, parent).at[:, :, t].set(emitted),
        log_probs=_take(beams.log_probs, parent)
        .at[:, :, t]
        .set(jnp.where(parent_finished, 0.0, picked)),
    )


def _generated(length, context: _Context):
    return jnp.maximum(length - context.prefix_lengths[:, None], 0)


def _split(leaf, rows, width):
    """``[rows * width, ...] -> [rows, width, ...]`` (``rows`` may be 0)."""
    return leaf.reshape((rows, width, *leaf.shape[1:]))


def _take(grouped, index):
    """``grouped[r, index[r, j]]`` for ``grouped`` ``[rows, k, ...]``."""
    return jax.vmap(lambda x, i: x[i])(grouped, index)


def _gather(leaf, parent):
    """``leaf[r * beams + parent[r, j]]`` for a flat ``[rows * beams, ...]``."""
    rows, width = parent.shape
    return _take(_split(leaf, rows, width), parent).reshape(leaf.shape)
