r"""Greedy decoding and ancestral sampling: one token a row at every step."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

import seqmask._checks as _checks
from seqmask import _masking, _sharding
from seqmask.decoding import _common
from seqmask.decoding._records import Decoded, LogitsFn, Params, State, StepFn


def greedy(
    step_fn: StepFn,
    params: Params,
    state: State,
    start_tokens,
    *,
    max_length: int,
    eos_id: int,
    pad_id: int = 0,
    min_length=0,
    prefix=None,
    prefix_lengths=None,
    logits_fn: LogitsFn | None = None,
    return_logits: bool = False,
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
      max_length: the number of steps (static), the prefix included.
      eos_id: the end-of-sequence token.
      pad_id: the token emitted after the end. It is never fed to
        ``step_fn`` (a finished row is fed its last token), so any integer
        that fits the token dtype will do.
      min_length: the shortest output, EOS and prefix included: before it the
        EOS logit is set to ``-inf`` (an int, possibly traced).
      prefix: integer ``[*batch, P]`` (``1 <= P <= max_length``): tokens
        forced at the start of each row, reproduced exactly in the output.
        A forced token equal to ``eos_id`` does not end the row.
      prefix_lengths: integer ``[*batch]`` in ``[0, P]``: how many prefix
        tokens each row forces (default: all ``P``).
      logits_fn: ``(step, logits, state, tokens) -> logits``, applied to the
        logits of every step before the token is chosen (a constraint or a
        penalty such as :func:`repetition_penalty`): ``step`` is the int32
        index of the token being chosen, ``logits`` ``[*batch, vocab]``,
        ``state`` the state ``step_fn`` returned with them, and ``tokens``
        ``[*batch, max_length]`` the output so far (``pad_id`` from
        position ``step`` on). Static, like ``step_fn``.
      return_logits: also return the logits of every step.

    Returns:
      A :class:`Decoded` ``(tokens [*batch, max_length], lengths [*batch],
      state, log_probs [*batch, max_length], logits)``.

    A row whose logits (after ``logits_fn`` and the ``min_length`` rule)
    hold a NaN or ``+inf``, or no entry above ``-inf``, ends at that step
    without a token: from there on it emits ``pad_id``, its length counts
    the tokens before and its state is the state before. This holds at a
    forced prefix step too: unusable logits end the row before the rest of
    its prefix (their log-probability would be undefined). Under
    ``jax.experimental.checkify.checkify`` this is reported as an error.

    Examples:
      A model whose next token is the previous one plus one (3 is EOS):

      >>> import jax, jax.numpy as jnp
      >>> from seqmask import decoding
      >>> def step(params, state, token):
      ...     return state + 1, 5.0 * jax.nn.one_hot(token + 1, 5)
      >>> out = decoding.greedy(step, None, jnp.zeros(2, jnp.int32),
      ...                       jnp.array([0, 2]), max_length=4, eos_id=3)
      >>> print(out.tokens)
      [[1 2 3 0]
       [3 0 0 0]]
      >>> print(out.lengths, out.state)
      [3 1] [3 1]
      >>> print(out.log_probs.round(2))
      [[-0.03 -0.03 -0.03  0.  ]
       [-0.03  0.    0.    0.  ]]
    """
    options = _common.Options(
        max_length, eos_id, pad_id, min_length, prefix, prefix_lengths
    )
    inputs, static = _common.check_inputs(
        "greedy", step_fn, logits_fn, params, state, start_tokens, options
    )
    return_logits = _checks.flag(return_logits, "return_logits", "greedy")
    return _decode(params, state, inputs, None, _GREEDY, static, None, return_logits)


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
    top_p=None,
    min_p=None,
    min_length=0,
    prefix=None,
    prefix_lengths=None,
    logits_fn: LogitsFn | None = None,
    return_logits: bool = False,
) -> Decoded:
    r"""Ancestral sampling, with a temperature and top-k, top-p, min-p cuts.

    At each step, with :math:`\ell` the logits (after ``logits_fn`` and the
    ``min_length`` rule) and :math:`q = \mathrm{softmax}(\ell / T)`, the
    next token is drawn from :math:`q` restricted to the tokens that pass
    every cut given, renormalised:

    - ``top_k``: the ``top_k`` most likely tokens (ties towards the lower id);
    - ``top_p`` (nucleus): with the tokens sorted by decreasing :math:`q`
      (ties towards the lower id), those whose preceding mass
      :math:`\sum_{j \text{ before } i} q_j` is below ``top_p``: the
      smallest head of the order whose mass reaches ``top_p``;
    - ``min_p``: the tokens with :math:`q_i \ge \mathrm{min\_p} \cdot
      \max_j q_j`.

    All three are computed on :math:`q` itself, so the kept set is their
    intersection (the most likely token always passes). A row with
    :math:`T = 0` takes :func:`greedy`'s token; ``top_k == 1`` does too.

    Args:
      step_fn, params, state, start_tokens, max_length, eos_id, pad_id,
        min_length, prefix, prefix_lengths, logits_fn, return_logits: as
        :func:`greedy`.
      key: a PRNG key; step ``t`` uses ``jax.random.fold_in(key, t)``.
      temperature: :math:`T \ge 0`, a real number or ``[*batch]`` (one per
        row); may be traced.
      top_k: a static int in ``[1, vocab]``, or None (no cut).
      top_p: in ``(0, 1]``, a real number or ``[*batch]``, or None.
      min_p: in ``[0, 1]``, a real number or ``[*batch]``, or None.

    Returns:
      A :class:`Decoded`, as :func:`greedy`. ``log_probs`` are taken from
      :math:`\mathrm{log\_softmax}(\ell)`, the model's distribution, not
      from the temperature-scaled and cut one that was sampled.

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
      >>> nucleus = decoding.sample(step, logits, jnp.zeros(1000),
      ...                           jnp.ones(1000, int), jax.random.key(0),
      ...                           max_length=1, eos_id=0, top_p=0.6)
      >>> print(sorted(set(nucleus.tokens[:, 0].tolist())))   # 0.5 + 0.3 >= 0.6
      [1, 2]
    """
    options = _common.Options(
        max_length, eos_id, pad_id, min_length, prefix, prefix_lengths
    )
    inputs, static = _common.check_inputs(
        "sample", step_fn, logits_fn, params, state, start_tokens, options
    )
    return_logits = _checks.flag(return_logits, "return_logits", "sample")
    _checks.prng_key(key, "key", "sample")
    sampling, top_k = _sampling_options(inputs, temperature, top_k, top_p, min_p)
    sampling = _sharding.shard_like_batch(sampling, inputs.start)
    return _decode(params, state, inputs, key, sampling, static, top_k, return_logits)


def _sampling_options(inputs, temperature, top_k, top_p, min_p):
    """The checked sampling options: ``(_Sampling, top_k)``."""
    where = "sample"
    batch_shape = inputs.start.shape
    temperature = _common.row_parameter(
        temperature, "temperature", where, batch_shape, low=0
    )
    if top_k is not None:
        top_k = _checks.integer(top_k, "top_k", where, minimum=1)
        if top_k > inputs.vocab:
            _checks.fail(
                where,
                f"top_k must be at most the vocabulary size {inputs.vocab}; got "
                f"{top_k}.",
            )
    if top_p is not None:
        top_p = _common.row_parameter(
            top_p, "top_p", where, batch_shape, low=0, low_open=True, high=1
        )
    if min_p is not None:
        min_p = _common.row_parameter(min_p, "min_p", where, batch_shape, low=0, high=1)
    return _Sampling(temperature, top_p, min_p), top_k


class _Sampling(tuple):
    """``(temperature, top_p, min_p)``: the traced sampling options."""

    def __new__(cls, temperature, top_p, min_p):
        return super().__new__(cls, (temperature, top_p, min_p))


jax.tree_util.register_pytree_node(
    _Sampling, lambda s: (tuple(s), None), lambda _, c: _Sampling(*c)
)

_GREEDY = _Sampling(None, None, None)


@functools.partial(jax.jit, static_argnums=(5, 6, 7))
def _decode(
    params,
    state,
    inputs: _common.Inputs,
    key,
    sampling: _Sampling,
    static: _common.Static,
    top_k: int | None,
    return_logits: bool,
):
    """One scan of ``max_length`` steps, greedy when ``key`` is None."""
    where, step_fn, logits_fn, max_length, eos_id, pad_id = static
    start = inputs.start
    pad = jnp.asarray(pad_id, start.dtype)

    def choose(log_probs, t):
        best = jnp.argmax(log_probs, axis=-1)
        if key is None:
            return best
        return _draw(log_probs, jax.random.fold_in(key, t), best, sampling, top_k)

    def body(carry, t):
        state, token, finished, lengths, history = carry
        new_state, logits = step_fn(params, state, token)
        logits = _common.process_logits(
            logits_fn, t, logits, new_state, history, inputs.min_length, eos_id
        )
        usable = _common.usable(logits)
        _common.report_unusable(where, usable | finished)
        emit = ~finished & usable
        # Broken rows get harmless logits, so no NaN reaches a gradient.
        logits = _masking.where_rows(emit, logits, jnp.zeros((), logits.dtype))
        log_probs = _common.log_softmax(logits)
        forced = t < inputs.prefix_lengths
        chosen = choose(log_probs, t).astype(start.dtype)
        chosen = jnp.where(forced, _common.prefix_at(inputs.prefix, t), chosen)
        emitted = jnp.where(emit, chosen, pad)
        picked = jnp.take_along_axis(log_probs, chosen[..., None], axis=-1)[..., 0]
        zero = jnp.zeros((), log_probs.dtype)
        step_log_probs = jnp.where(emit & ~forced, picked, zero)
        state = _masking.where_rows_tree(emit, new_state, state, in_scan=True)
        ended = emit & ~forced & (chosen == jnp.asarray(eos_id, start.dtype))
        carry = (
            state,
            jnp.where(emit, chosen, token),
            finished | ~usable | ended,
            lengths + emit.astype(jnp.int32),
            jax.lax.dynamic_update_index_in_dim(history, emitted, t, axis=-1),
        )
        return carry, (step_log_probs, logits if return_logits else None)

    batch_shape = start.shape
    fresh = (
        jnp.zeros(batch_shape, jnp.bool_),
        jnp.zeros(batch_shape, jnp.int32),
        jnp.full((*batch_shape, max_length), pad),
    )
    init = (state, start, *_sharding.shard_like_batch(fresh, start))
    steps = jnp.arange(max_length, dtype=jnp.int32)
    (state, _, _, lengths, tokens), (log_probs, logits) = jax.lax.scan(
        body, init, steps
    )
    if logits is not None:
        logits = jnp.moveaxis(logits, 0, -2)
    return Decoded(tokens, lengths, state, jnp.moveaxis(log_probs, 0, -1), logits)


def _draw(log_probs, key, best, sampling, top_k):
    """Sample from the temperature-scaled log-probabilities, after the cuts."""
    temperature, top_p, min_p = sampling
    positive = temperature > 0
    # Dividing by T = 0 would give NaN in the branch that where discards.
    scale = jnp.where(positive, temperature, jnp.ones((), temperature.dtype))
    # Shifted so that the best token is at 0: a tiny T overflows the others
    # to -inf, never all of them (categorical would then return token 0).
    top = jnp.max(log_probs, axis=-1, keepdims=True)
    shifted = log_probs - jnp.where(jnp.isfinite(top), top, jnp.zeros_like(top))
    scaled = shifted / scale[..., None].astype(log_probs.dtype)
    keep = _kept(scaled, top_k, top_p, min_p)
    minus_inf = jnp.asarray(-jnp.inf, scaled.dtype)
    drawn = jax.random.categorical(key, jnp.where(keep, scaled, minus_inf))
    return jnp.where(positive, drawn, best)


def _kept(scaled, top_k, top_p, min_p):
    """The tokens that pass the top-k, top-p and min-p cuts (see sample)."""
    vocab = scaled.shape[-1]
    keep = jnp.ones_like(scaled, jnp.bool_)
    if top_k is not None and top_k < vocab:
        _, best = jax.lax.top_k(scaled, top_k)
        keep = _sharding.put_along_last_axis(jnp.zeros_like(keep), best, True)
    if top_p is not None:
        order = jnp.argsort(scaled, axis=-1, descending=True, stable=True)
        probs = jax.nn.softmax(jnp.take_along_axis(scaled, order, axis=-1), axis=-1)
        before = jnp.cumsum(probs, axis=-1) - probs
        cut = top_p[..., None]
        # top_p = 1 keeps every token, though the float sum of the probabilities
        # before a tail token can round to 1.
        head = (before < cut.astype(probs.dtype)) | (cut >= 1)
        nucleus = _sharding.put_along_last_axis(jnp.zeros_like(keep), order, head)
        keep = keep & nucleus
    if min_p is not None:
        floor = jnp.log(min_p)[..., None].astype(scaled.dtype)
        keep = keep & (scaled - jnp.max(scaled, axis=-1, keepdims=True) >= floor)
    return keep
