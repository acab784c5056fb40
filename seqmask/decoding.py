r"""Decoding: greedy search, sampling and beam search for any step function.

A decoder is any step function ``step_fn(params, state, token) -> (state,
logits)``: ``state`` is a pytree whose leaves start with the batch axes
(a recurrent carry, the encoder memory, a step counter, ...), ``token`` the
previous token ``[*batch]`` and ``logits`` ``[*batch, vocab]``.
:func:`seqmask.seq2seq.encoder_decoder` gives one (``model.step``). Each
function here runs the step function for a static ``max_length`` steps
inside one :func:`jax.lax.scan` (no Python loop over time; jitted, with the
step function, the lengths and the token ids static), and stops each row at
its end-of-sequence token: from then on the row emits ``pad_id`` and its
state is frozen through the mask, exactly as :func:`seqmask.masked_scan`
carries a state through padded steps. The results count the EOS token in
the length: ``tokens[..., :lengths]`` is the output including its EOS, and
a row that never emits EOS has length ``max_length``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "Decoded",
    "BeamDecoded",
    "greedy",
    "sample",
    "beam_search",
    "length_penalty",
]

Params = Any
State = Any
StepFn = Callable[[Params, State, jax.Array], tuple[State, jax.Array]]


class Decoded(NamedTuple):
    """The result of :func:`greedy` and :func:`sample`.

    Attributes:
      tokens: ``[*batch, max_length]``, ``pad_id`` after each row's EOS.
      lengths: int32 ``[*batch]``: the number of tokens up to and including
        EOS (``max_length`` for a row without EOS).
      state: the state after each row's last token (frozen from then on),
        leaves ``[*batch, ...]``.
    """

    tokens: jax.Array
    lengths: jax.Array
    state: State


class BeamDecoded(NamedTuple):
    """The result of :func:`beam_search`, best hypothesis first.

    Attributes:
      tokens: ``[*batch, beam_width, max_length]``, ``pad_id`` after EOS.
      lengths: int32 ``[*batch, beam_width]``, counting EOS.
      scores: float32 ``[*batch, beam_width]``: total log-probability divided
        by :func:`length_penalty` of the length, in decreasing order. A score
        of ``-inf`` marks an empty slot (fewer hypotheses than beams exist,
        e.g. ``beam_width > vocab`` at ``max_length == 1``); its tokens are
        ``pad_id`` and its length 0.
      state: each hypothesis's state after its last token, leaves
        ``[*batch, beam_width, ...]``.
    """

    tokens: jax.Array
    lengths: jax.Array
    scores: jax.Array
    state: State


def length_penalty(lengths, alpha) -> jax.Array:
    r"""The GNMT length penalty (Wu et al. 2016), :math:`((5 + n) / 6)^\alpha`.

    Beam search ranks a hypothesis of ``n`` tokens (EOS included) by
    :math:`\log p(y) / \mathrm{lp}(n)`. ``alpha = 0`` gives 1 (raw
    log-probability, which favours short outputs); larger ``alpha`` favours
    longer ones.

    Args:
      lengths: integer lengths, any shape.
      alpha: the exponent, a float ``>= 0``.

    Returns:
      float32 penalties of the shape of ``lengths``.

    Examples:
      >>> from seqmask.decoding import length_penalty
      >>> print(length_penalty(7, 1.0), length_penalty(7, 0.0))
      2.0 1.0
    """
    lengths = jnp.asarray(lengths).astype(jnp.float32)
    alpha = jnp.asarray(alpha, jnp.float32)
    return ((5.0 + lengths) / 6.0) ** alpha


def greedy(
    step_fn: StepFn,
    params: Params,
    state: State,
    start_tokens,
    *,
    max_length: int,
    eos_id: int,
    pad_id: int = 0,
) -> Decoded:
    """Greedy decoding: the most likely next token at every step.

    Args:
      step_fn: ``(params, state, token) -> (state, logits)``; must keep the
        structure, shapes and dtypes of ``state``. It is a static argument of
        a jitted function: pass the same function object to reuse the
        compilation.
      params: passed to ``step_fn`` unchanged.
      state: the initial state, leaves ``[*batch, ...]``.
      start_tokens: integer ``[*batch]``, the first input token of each row
        (the BOS token); its shape is the batch shape.
      max_length: the number of steps (static).
      eos_id: the end-of-sequence token.
      pad_id: the token emitted after EOS.

    Returns:
      A :class:`Decoded` ``(tokens [*batch, max_length], lengths [*batch],
      state)``.

    Examples:
      A model whose next token is the previous one plus one (3 is EOS):

      >>> import jax, jax.numpy as jnp
      >>> from seqmask import decoding
      >>> def step(params, state, token):
      ...     return state + 1, 5.0 * jax.nn.one_hot(token + 1, 5)
      >>> out = decoding.greedy(step, None, jnp.zeros(2, jnp.int32),
      ...                       jnp.array([0, 2]), max_length=4, eos_id=3)
      >>> out.tokens
      Array([[1, 2, 3, 0],
             [3, 0, 0, 0]], dtype=int32)
      >>> out.lengths, out.state
      (Array([3, 1], dtype=int32), Array([3, 1], dtype=int32))
    """
    start_tokens = _check_inputs(
        step_fn, state, start_tokens, max_length, eos_id, pad_id, "greedy"
    )
    return _greedy(step_fn, params, state, start_tokens, max_length, eos_id, pad_id)


def sample(
    step_fn: StepFn,
    params: Params,
    state: State,
    start_tokens,
    key: jax.Array,
    *,
    max_length: int,
    eos_id: int,
    pad_id: int = 0,
    temperature=1.0,
    top_k: int | None = None,
) -> Decoded:
    r"""Ancestral sampling, with a temperature and an optional top-k cut.

    At each step the next token is drawn from
    :math:`\mathrm{softmax}(\log p / T)` restricted to the ``top_k`` most
    likely tokens (ties broken towards the lower id). ``temperature == 0``
    and ``top_k == 1`` both give :func:`greedy`'s tokens.

    Args:
      step_fn, params, state, start_tokens, max_length, eos_id, pad_id: as
        :func:`greedy`.
      key: a PRNG key; step ``t`` uses ``jax.random.fold_in(key, t)``.
      temperature: :math:`T \ge 0` (a float or a scalar array).
      top_k: keep only the ``top_k`` most likely tokens (static); None keeps
        all.

    Returns:
      A :class:`Decoded` ``(tokens, lengths, state)``, as :func:`greedy`.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from seqmask import decoding
      >>> def step(params, state, token):
      ...     return state, jnp.broadcast_to(params, (*token.shape, 3))
      >>> logits = jnp.log(jnp.array([0.2, 0.3, 0.5]))   # token 0 is EOS
      >>> out = decoding.sample(step, logits, jnp.zeros(1000), jnp.ones(1000, int),
      ...                       jax.random.key(0), max_length=1, eos_id=0)
      >>> counts = jnp.bincount(out.tokens[:, 0], length=3)
      >>> bool(jnp.all(jnp.abs(counts / 1000 - jnp.exp(logits)) < 0.05))
      True
    """
    start_tokens = _check_inputs(
        step_fn, state, start_tokens, max_length, eos_id, pad_id, "sample"
    )
    if isinstance(temperature, (int, float)) and not temperature >= 0:
        raise ValueError(f"sample: temperature must be >= 0; got {temperature}.")
    if top_k is not None and (
        isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1
    ):
        raise ValueError(
            f"sample: top_k must be a positive int or None; got {top_k!r}."
        )
    return _sample(
        step_fn,
        params,
        state,
        start_tokens,
        key,
        jnp.asarray(temperature, jnp.float32),
        max_length,
        eos_id,
        pad_id,
        top_k,
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
) -> BeamDecoded:
    r"""Beam search with a length penalty and per-hypothesis EOS.

    The state (every leaf, the encoder memory included) is tiled across the
    beams here, so ``step_fn`` sees one batch axis of ``prod(batch) *
    beam_width`` rows. Every step extends each unfinished hypothesis by
    every token, extends each finished one by ``pad_id`` only (its
    log-probability, length and state frozen), and keeps the
    ``beam_width`` candidates with the highest score

    .. math::

      \mathrm{score}(y) = \frac{\sum_{i \le n} \log p(y_i \mid y_{<i})}
                               {((5 + n) / 6)^{\alpha}},

    where :math:`n` counts the tokens so far (EOS included; frozen once EOS
    is emitted) and :math:`\alpha` is ``length_penalty`` (see
    :func:`length_penalty`). After ``max_length`` steps the beams are the
    hypotheses in decreasing order of score. With ``beam_width == 1`` the
    result is :func:`greedy`'s (barring two next-token log-probabilities that
    tie after adding the prefix's in float32); with ``beam_width`` at least
    the number of all possible hypotheses, it is the exact ranking of all
    sequences up to ``max_length``. Ties are broken towards the earlier beam,
    then the lower token id.

    Args:
      step_fn, params, state, start_tokens, max_length, eos_id, pad_id: as
        :func:`greedy`.
      beam_width: the number of hypotheses kept (static).
      length_penalty: :math:`\alpha \ge 0`.

    Returns:
      A :class:`BeamDecoded` ``(tokens [*batch, beam, max_length], lengths
      [*batch, beam], scores [*batch, beam], state)``, best first.

    Examples:
      A fixed next-token table (token 0 is EOS); greedy would take 1 then 0
      (probability 0.6 * 0.5 = 0.3), but 2 then 0 has 0.4 * 1.0:

      >>> import jax, jax.numpy as jnp
      >>> from seqmask import decoding
      >>> table = jnp.log(jnp.array([[1.0, 1e-9, 1e-9],
      ...                            [0.5, 0.25, 0.25],
      ...                            [1.0, 1e-9, 1e-9],
      ...                            [1e-9, 0.6, 0.4]]))  # row 3: the start
      >>> step = lambda params, state, token: (state, params[token])
      >>> out = decoding.beam_search(step, table, jnp.zeros(1), jnp.array([3]),
      ...                            beam_width=2, max_length=3, eos_id=0)
      >>> out.tokens[0, 0], out.lengths[0, 0]
      (Array([2, 0, 0], dtype=int32), Array(2, dtype=int32))
      >>> print(jnp.exp(out.scores[0]).round(3))
      [0.4 0.3]
    """
    start_tokens = _check_inputs(
        step_fn, state, start_tokens, max_length, eos_id, pad_id, "beam_search"
    )
    if (
        isinstance(beam_width, bool)
        or not isinstance(beam_width, int)
        or beam_width < 1
    ):
        raise ValueError(
            f"beam_search: beam_width must be a positive int; got {beam_width!r}."
        )
    if isinstance(length_penalty, (int, float)) and not length_penalty >= 0:
        raise ValueError(
            f"beam_search: length_penalty must be >= 0; got {length_penalty}."
        )
    return _beam_search(
        step_fn,
        params,
        state,
        start_tokens,
        jnp.asarray(length_penalty, jnp.float32),
        beam_width,
        max_length,
        eos_id,
        pad_id,
    )


# The Python entry points above check their arguments (so that errors name
# them, eagerly or under an outer jit); these jitted bodies do the work.


@functools.partial(jax.jit, static_argnums=(0, 4, 5, 6))
def _greedy(step_fn, params, state, start, max_length, eos_id, pad_id):
    def choose(log_probs, t):
        del t
        return jnp.argmax(log_probs, axis=-1)

    return _decode(step_fn, params, state, start, choose, max_length, eos_id, pad_id)


@functools.partial(jax.jit, static_argnums=(0, 6, 7, 8, 9))
def _sample(
    step_fn, params, state, start, key, temperature, max_length, eos_id, pad_id, top_k
):
    def choose(log_probs, t):
        best = jnp.argmax(log_probs, axis=-1)
        if top_k is not None:
            vocab = log_probs.shape[-1]
            if top_k > vocab:
                raise ValueError(
                    f"sample: top_k must be at most the vocabulary size {vocab}; "
                    f"got {top_k}."
                )
            _, kept = jax.lax.top_k(log_probs, top_k)
            keep = jnp.any(jax.nn.one_hot(kept, vocab, dtype=jnp.bool_), axis=-2)
            log_probs = jnp.where(keep, log_probs, -jnp.inf)
        positive = temperature > 0
        # Dividing by T = 0 would give NaN in the branch that where discards.
        scale = jnp.where(positive, temperature, jnp.ones((), temperature.dtype))
        drawn = jax.random.categorical(jax.random.fold_in(key, t), log_probs / scale)
        return jnp.where(positive, drawn, best)

    return _decode(step_fn, params, state, start, choose, max_length, eos_id, pad_id)


def _decode(step_fn, params, state, start, choose, max_length, eos_id, pad_id):
    """One scan of ``max_length`` steps; ``choose(log_probs, t) -> tokens``."""
    batch_shape = start.shape
    pad = jnp.asarray(pad_id, start.dtype)

    def body(carry, t):
        state, token, finished, lengths = carry
        new_state, logits = step_fn(params, state, token)
        _check_step_outputs(new_state, state, logits, batch_shape)
        chosen = choose(_log_probs(logits), t).astype(start.dtype)
        emitted = jnp.where(finished, pad, chosen)
        # A finished row keeps its state, as masked_scan carries a state
        # through a padded step.
        state = _select(finished, state, new_state)
        lengths = lengths + (~finished).astype(jnp.int32)
        finished = finished | (chosen == jnp.asarray(eos_id, start.dtype))
        return (state, emitted, finished, lengths), emitted

    init = (
        state,
        start,
        jnp.zeros(batch_shape, jnp.bool_),
        jnp.zeros(batch_shape, jnp.int32),
    )
    (state, _, _, lengths), tokens = jax.lax.scan(
        body, init, jnp.arange(max_length, dtype=jnp.int32)
    )
    return Decoded(jnp.moveaxis(tokens, 0, -1), lengths, state)


@functools.partial(jax.jit, static_argnums=(0, 5, 6, 7, 8))
def _beam_search(
    step_fn, params, state, start, alpha, beam_width, max_length, eos_id, pad_id
):
    batch_shape = start.shape
    rows = math.prod(batch_shape)
    beams = beam_width
    n_batch = len(batch_shape)

    def tile(leaf):
        leaf = leaf.reshape((rows, 1, *leaf.shape[n_batch:]))
        leaf = jnp.broadcast_to(leaf, (rows, beams, *leaf.shape[2:]))
        return leaf.reshape((rows * beams, *leaf.shape[2:]))

    state = jax.tree.map(tile, state)
    tokens = jnp.broadcast_to(start.reshape((rows, 1)), (rows, beams))
    # Only the first beam is alive at the start, so that the first step
    # does not rank beam_width copies of each continuation.
    first = jnp.arange(beams) == 0
    log_probs = jnp.broadcast_to(
        jnp.where(first, jnp.float32(0.0), jnp.float32(-jnp.inf)), (rows, beams)
    )
    finished = jnp.zeros((rows, beams), jnp.bool_)
    lengths = jnp.zeros((rows, beams), jnp.int32)
    history = jnp.full((rows, beams, max_length), pad_id, start.dtype)
    pad = jnp.asarray(pad_id, start.dtype)
    minus_inf = jnp.float32(-jnp.inf)

    def body(carry, t):
        state, tokens, log_probs, finished, lengths, history = carry
        was_finished = finished
        new_state, logits = step_fn(params, state, tokens.reshape(rows * beams))
        _check_step_outputs(new_state, state, logits, (rows * beams,))
        vocab = logits.shape[-1]
        step_log_probs = _log_probs(logits).reshape((rows, beams, vocab))
        extended = log_probs[..., None] + step_log_probs
        # A finished hypothesis has one continuation (slot 0, emitted as
        # pad) that keeps its log-probability and length.
        slot = jnp.arange(vocab) == 0
        frozen = jnp.where(slot, log_probs[..., None], minus_inf)
        candidates = jnp.where(finished[..., None], frozen, extended)
        candidate_lengths = jnp.where(finished, lengths, t + 1)[..., None]
        scores = candidates / length_penalty(candidate_lengths, alpha)
        _, index = jax.lax.top_k(scores.reshape((rows, beams * vocab)), beams)
        parent = index // vocab
        token = (index % vocab).astype(start.dtype)
        parent_finished = jnp.take_along_axis(finished, parent, axis=1)
        log_probs = jnp.take_along_axis(
            candidates.reshape((rows, beams * vocab)), index, axis=1
        )
        lengths = jnp.where(
            parent_finished, jnp.take_along_axis(lengths, parent, axis=1), t + 1
        )
        emitted = jnp.where(parent_finished, pad, token)
        finished = parent_finished | (token == jnp.asarray(eos_id, start.dtype))
        # Freeze the finished hypotheses' states before reordering the beams.
        kept = _select(was_finished.reshape(rows * beams), state, new_state)
        state = jax.tree.map(lambda leaf: _gather_beams(leaf, parent, rows), kept)
        history = jax.vmap(lambda h, p: h[p])(history, parent)
        history = history.at[:, :, t].set(emitted)
        return (state, emitted, log_probs, finished, lengths, history), None

    carry = (state, tokens, log_probs, finished, lengths, history)
    carry, _ = jax.lax.scan(body, carry, jnp.arange(max_length, dtype=jnp.int32))
    state, _, log_probs, _, lengths, history = carry
    scores = log_probs / length_penalty(lengths, alpha)
    empty = jnp.isneginf(scores)
    history = jnp.where(empty[..., None], pad, history)
    lengths = jnp.where(empty, 0, lengths)

    def unflatten(leaf):
        return leaf.reshape((*batch_shape, beams, *leaf.shape[1:]))

    return BeamDecoded(
        tokens=history.reshape((*batch_shape, beams, max_length)),
        lengths=lengths.reshape((*batch_shape, beams)),
        scores=scores.reshape((*batch_shape, beams)),
        state=jax.tree.map(unflatten, state),
    )


def _gather_beams(leaf, parent, rows):
    """``leaf[r * beams + parent[r, j]]`` for every row ``r`` and beam ``j``."""
    beams = parent.shape[1]
    grouped = leaf.reshape((rows, beams, *leaf.shape[1:]))
    gathered = jax.vmap(lambda x, p: x[p])(grouped, parent)
    return gathered.reshape(leaf.shape)


def _log_probs(logits):
    """Log-softmax in float32 (float64 for float64 logits)."""
    dtype = jnp.float64 if logits.dtype == jnp.float64 else jnp.float32
    return jax.nn.log_softmax(logits.astype(dtype), axis=-1)


def _select(finished, old, new):
    """Per row: ``old`` where ``finished``, else ``new`` (any pytree)."""

    def pick(a, b):
        flag = finished.reshape(finished.shape + (1,) * (a.ndim - finished.ndim))
        return jnp.where(jnp.broadcast_to(flag, a.shape), a, b)

    return jax.tree.map(pick, old, new)


def _check_inputs(step_fn, state, start_tokens, max_length, eos_id, pad_id, where):
    if not callable(step_fn):
        raise TypeError(
            f"{where}: step_fn must be callable (params, state, token) -> (state, "
            f"logits); got {type(step_fn).__name__}."
        )
    for name, value in (("max_length", max_length), ("eos_id", eos_id)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{where}: {name} must be a Python int; got {value!r}.")
    if isinstance(pad_id, bool) or not isinstance(pad_id, (int, np.integer)):
        raise TypeError(f"{where}: pad_id must be a Python int; got {pad_id!r}.")
    if max_length < 1:
        raise ValueError(f"{where}: max_length must be >= 1; got {max_length}.")
    start_tokens = jnp.asarray(start_tokens)
    if not jnp.issubdtype(start_tokens.dtype, jnp.integer):
        raise TypeError(
            f"{where}: start_tokens must be integer token ids [*batch]; got dtype "
            f"{start_tokens.dtype}."
        )
    batch_shape = tuple(start_tokens.shape)
    for path, leaf in jax.tree_util.tree_leaves_with_path(state):
        shape = tuple(jnp.shape(leaf))
        if shape[: len(batch_shape)] != batch_shape:
            raise ValueError(
                f"{where}: every leaf of state must start with the batch shape "
                f"{batch_shape} of start_tokens; state{jax.tree_util.keystr(path)} "
                f"has shape {shape}."
            )
    return start_tokens


def _check_step_outputs(new_state, state, logits, batch_shape) -> None:
    """Trace-time checks of what ``step_fn`` returned, naming the leaf."""
    if jax.tree.structure(new_state) != jax.tree.structure(state):
        raise TypeError(
            "step_fn must return a state with the structure of its input state; "
            f"got {jax.tree.structure(new_state)}, expected "
            f"{jax.tree.structure(state)}."
        )
    pairs = zip(
        jax.tree_util.tree_leaves_with_path(new_state),
        jax.tree.leaves(state),
        strict=True,
    )
    for (path, new), old in pairs:
        if jnp.shape(new) != jnp.shape(old) or jnp.result_type(new) != jnp.result_type(
            old
        ):
            raise TypeError(
                f"step_fn changed state{jax.tree_util.keystr(path)} from "
                f"{jnp.result_type(old)}{list(jnp.shape(old))} to "
                f"{jnp.result_type(new)}{list(jnp.shape(new))}; the state must keep "
                "its shapes and dtypes."
            )
    shape = tuple(jnp.shape(logits))
    if shape[:-1] != tuple(batch_shape) or len(shape) != len(batch_shape) + 1:
        raise ValueError(
            f"step_fn must return logits [*batch, vocab] with batch shape "
            f"{tuple(batch_shape)}; got shape {shape}."
        )
    if not jnp.issubdtype(jnp.result_type(logits), jnp.floating):
        raise TypeError(
            f"step_fn must return floating-point logits; got {jnp.result_type(logits)}."
        )
