"""The scan loops of seqmask, without argument checks.

:mod:`seqmask.scan` checks the arguments of ``masked_scan`` and
``linear_scan`` and runs these loops; the layers (:mod:`seqmask.layers`,
:mod:`seqmask.carry`) check their own arguments once per call, resolve the
mask and zero the padded inputs once, and run the same loops: the masked
scan without its per-step input select (``select_inputs=False``), the same
scan in chunks (checkpointed, and skipped where every row is padding), and
the linear recurrences of cells that declare one, in linear or in log space.
Every per-row select is :mod:`seqmask._masking`'s.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

import seqmask._checks as _checks
from seqmask import _sharding
from seqmask._masking import where_rows, where_rows_in_scan, where_rows_tree

# --------------------------------------------------------------------------
# The masked scan


def masked(
    f,
    init,
    xs,
    mask,
    resets,
    reset_to,
    *,
    reverse: bool,
    unroll,
    pad_value,
    length: int,
    where: str,
    select_inputs: bool = True,
):
    """DESIGN.md's masked scan loop; ``reset_to`` broadcast like ``init``.

    With ``select_inputs=False`` the inputs at padded steps reach ``f`` as
    given: for callers that zeroed them over the whole sequence already (one
    select instead of one kernel a step).
    """
    if mask is None and resets is None:
        # jax.lax.scan, which promotes a weakly typed init to the carry's dtype.
        def plain(carry, x):
            return _checks.scan_step(f(carry, x), carry, None, where, promote_weak=True)

        return jax.lax.scan(
            plain, init, xs, length=length, reverse=reverse, unroll=unroll
        )
    batch_shape = tuple((mask if mask is not None else resets).shape[1:])

    def body(carry, inputs):
        x, step_mask, step_reset = inputs
        if step_reset is not None:
            carry = where_rows_tree(step_reset, reset_to, carry, in_scan=True)
        if step_mask is not None and select_inputs:
            x = jax.tree.map(
                lambda v: where_rows_in_scan(step_mask, v, jnp.zeros((), v.dtype)), x
            )
        new_carry, y = _checks.scan_step(
            f(carry, x), carry, None if step_mask is None else batch_shape, where
        )
        if step_mask is None:
            return new_carry, y
        new_carry = where_rows_tree(step_mask, new_carry, carry, in_scan=True)
        y = jax.tree.map(
            lambda v: where_rows_in_scan(step_mask, v, _pad(pad_value, v, where)), y
        )
        return new_carry, y

    return jax.lax.scan(
        body, init, (xs, mask, resets), length=length, reverse=reverse, unroll=unroll
    )


def _pad(pad_value, y, where: str):
    """``pad_value`` in the dtype of the output ``y`` at one step, checked
    to broadcast to it."""
    pad = _checks.array(pad_value, "pad_value", where)
    try:
        fits = np.broadcast_shapes(pad.shape, y.shape) == tuple(y.shape)
    except ValueError:
        fits = False
    if not fits:
        _checks.fail(
            where,
            "pad_value must be a scalar or broadcast to each output of the step "
            f"function ([*batch, ...] = {tuple(y.shape)}); got shape "
            f"{tuple(pad.shape)}.",
        )
    # pad_value as given (checkify checks a traced one).
    hint = f" (the step's output has dtype {y.dtype})"
    _checks.representable(pad_value, y.dtype, "pad_value", where, hint=hint)
    return pad.astype(y.dtype)


# --------------------------------------------------------------------------
# The masked scan in chunks: checkpointed, and skipped where all is padding


def chunked(
    run,
    carry,
    parts,
    reset_to,
    *,
    chunk: int,
    reverse: bool,
    checkpoint: bool,
    skip_empty: bool,
):
    """``run`` over the time axis in chunks of ``chunk`` steps: ``(final, ys)``.

    ``run(carry, parts) -> (carry, ys)`` is a masked scan over ``parts =
    (xs, mask, resets)``, pytrees of time-major arrays of any common length
    (``mask`` and ``resets`` may be None). Time splits into ``steps //
    chunk`` chunks, run by one :func:`jax.lax.scan`, and a tail of the
    remaining steps, run once (so no step is added: the program has at most
    two copies of ``run`` whatever the length). With ``checkpoint`` each chunk
    is a :func:`jax.checkpoint`: the backward pass keeps the carries at chunk
    boundaries and recomputes the rest. With ``skip_empty`` (needs ``mask``)
    a chunk in which no row has a valid step is not run: by the masked
    scan's semantics its only effect is its resets (a reset applies before a
    step whether or not the step is valid), so its carry becomes
    ``reset_to`` in the rows that have a reset in it and stays the same in
    the others, and its outputs are zero. :func:`jax.lax.cond` chooses per
    chunk, and its derivative is a ``cond`` too, so the backward pass skips
    the same chunks (with ``checkpoint``, the checkpoint holds the ``cond``:
    the backward pass recomputes a chunk only if it ran). Under
    :func:`jax.vmap` over a batch of masks the predicate is batched and
    ``cond`` becomes a select that runs both branches (correct, but nothing
    is skipped).
    """
    xs, mask, resets = parts
    steps = jax.tree.leaves(parts)[0].shape[0]
    if skip_empty:
        assert mask is not None
        # One reduction over the batch before the loop (one collective when
        # the batch is sharded), not one a chunk.
        occupied = jnp.any(mask.reshape(steps, -1), axis=1)
        run = _run_or_skip(run, reset_to)
        parts = (xs, mask, resets, occupied)
    else:
        run = _without_flags(run)
        parts = (xs, mask, resets, None)
    if checkpoint:
        # Around the cond, not inside it: a checkpoint keeps its inputs for
        # the backward pass, and the loop-invariant ones (the weights) stay
        # out of the loop. Inside, they would be outputs of the cond, which
        # the loop would stack once a chunk, and every chunk's backward pass
        # would add a zero weight gradient for a skipped chunk.
        run = jax.checkpoint(run, prevent_cse=False)
    count, main = steps // chunk, steps // chunk * chunk
    head = jax.tree.map(lambda x: x[:main].reshape(count, chunk, *x.shape[1:]), parts)
    tail = jax.tree.map(lambda x: x[main:], parts)

    def run_head(carry):
        if count == 0:
            return carry, None
        carry, ys = jax.lax.scan(run, carry, head, reverse=reverse)
        return carry, jax.tree.map(lambda y: y.reshape(main, *y.shape[2:]), ys)

    def run_tail(carry):
        if main == steps:
            return carry, None
        return run(carry, tail)

    first, second = (run_tail, run_head) if reverse else (run_head, run_tail)
    carry, first_ys = first(carry)
    carry, second_ys = second(carry)
    pieces = (second_ys, first_ys) if reverse else (first_ys, second_ys)
    pieces = [piece for piece in pieces if piece is not None]
    if len(pieces) == 1:
        return carry, pieces[0]
    return carry, jax.tree.map(lambda *ys: jnp.concatenate(ys), *pieces)


def _without_flags(run):
    """``run`` on ``parts`` that end with a (None) slot for the flags."""

    def run_parts(carry, parts):
        return run(carry, parts[:3])

    return run_parts


def _run_or_skip(run, reset_to):
    """``run`` on a chunk with a valid step; the chunk's resets alone on
    another (``parts`` end with the per-step "any row valid" flags)."""

    def skip(carry, parts):
        xs, mask, resets, _ = parts
        _, ys = jax.eval_shape(run, carry, parts[:3])
        if resets is not None:
            carry = where_rows_tree(jnp.any(resets, axis=0), reset_to, carry)
        zeros = jax.tree.map(lambda y: jnp.zeros(y.shape, y.dtype), ys)
        # [chunk, *batch, ...] laid out like the inputs' leading axes.
        return carry, _sharding.shard_like_batch(zeros, xs, tuple(range(mask.ndim)))

    def run_or_skip(carry, parts):
        return jax.lax.cond(
            jnp.any(parts[3]),
            lambda carry, parts: run(carry, parts[:3]),
            skip,
            carry,
            parts,
        )

    return run_or_skip


# --------------------------------------------------------------------------
# Linear recurrences h_t = a_t * h_{t-1} + b_t


def scan_method(method: str) -> str:
    """``"auto"``: sequential on CPU, associative on accelerators (the
    associative form does ``O(T log T)`` work for ``O(log T)`` depth, which
    only parallel hardware turns into speed; see benchmarks/README.md)."""
    if method != "auto":
        return method
    return "sequential" if jax.default_backend() == "cpu" else "associative"


def linear(
    a, b, mask, resets, init, reset_to, *, reverse: bool, method: str, use_init=True
):
    """``(final, hs)`` of the masked linear recurrence.

    ``a`` broadcasts to ``b`` ``[time, *batch, ...]``; ``init`` and
    ``reset_to`` are ``b.shape[1:]`` in ``b``'s dtype (``reset_to`` is used
    only with ``resets``). Without ``use_init`` the state starts at zero
    (``init`` must be zeros then): the associative form skips the product
    with ``init``, which keeps an overflowed prefix (inf * 0) out.
    """
    if b.shape[0] == 0:
        return init, b
    if scan_method(method) == "associative":
        return _associative(
            a, b, mask, resets, init, reset_to, reverse=reverse, use_init=use_init
        )
    # masked scans need the batch axes on every input; a narrow `a` keeps its
    # size-1 feature axes.
    flags = mask if mask is not None else resets
    if flags is not None:
        expanded = flags.shape + (1,) * (a.ndim - flags.ndim)
        a = jnp.broadcast_to(a, tuple(np.broadcast_shapes(expanded, a.shape)))

    def step(h, inputs):
        a_t, b_t = inputs
        h = a_t * h + b_t
        return h, h

    return masked(
        step,
        init,
        (a, b),
        mask,
        resets,
        reset_to,
        reverse=reverse,
        unroll=1,
        pad_value=0,
        length=b.shape[0],
        select_inputs=True,
        where="linear_scan",
    )


# Jitted so that eager calls compile the O(log T) levels once instead of
# dispatching each slice of them; under an outer jit it is inlined.
@functools.partial(jax.jit, static_argnames=("reverse", "use_init"))
def _associative(a, b, mask, resets, init, reset_to, *, reverse: bool, use_init: bool):
    hs = _linear_states(
        a, b, mask, resets, init if use_init else None, reset_to, reverse
    )
    final = hs[0] if reverse else hs[-1]
    if mask is not None:
        hs = where_rows(mask, hs, jnp.zeros((), hs.dtype))
    return final, hs


def _linear_states(a, b, mask, resets, init, reset_to, reverse: bool):
    """The state after every step, padded steps included (carried through)."""
    # Select before combining: a padded step's entries never reach an
    # arithmetic op, so NaN there cannot leak into values or gradients.
    if mask is not None:
        a = where_rows(mask, a, jnp.ones((), a.dtype))
        b = where_rows(mask, b, jnp.zeros((), b.dtype))
    if resets is not None:
        # The state becomes reset_to before the step: h_t = a_t * r + b_t, a
        # constant map. A padded reset step has a = 1, b = 0 here: h_t = r.
        b = where_rows(resets, a * reset_to[None] + b, b)
        a = where_rows(resets, jnp.zeros((), a.dtype), a)
    prefix_a, prefix_b = jax.lax.associative_scan(
        _compose_affine, (a, b), reverse=reverse
    )
    if init is None:
        return prefix_b
    return prefix_a * init[None] + prefix_b


def _compose_affine(first, second):
    """The map ``h -> a2 * (a1 * h + b1) + b2``: ``first`` applied, then ``second``."""
    a1, b1 = first
    a2, b2 = second
    return a1 * a2, a2 * b1 + b2


# --------------------------------------------------------------------------
# The same recurrence with positive coefficients, summed in log space

# Stands for log(0) in the log-space scan. A finite value keeps every
# intermediate finite (no inf - inf, no derivative of log at 0): exp of it,
# and of sums of it with anything the scan adds, is exactly 0 in float32 and
# float64, so it behaves as -inf.
_LOG_ZERO = -1e4


def log_linear(log_a, log_b, mask, resets, init, reset_to, *, reverse: bool):
    r"""``h_t = exp(log_a_t) h_{t-1} + exp(log_b_t)`` with the sums in log space.

    The log-space form of :func:`linear` for positive coefficients and
    inputs (Feng et al. 2024, "Were RNNs All We Needed?", section 3.3). The
    prefix maps are composed as :math:`(\alpha_1, \beta_1) \circ (\alpha_2,
    \beta_2) = (\alpha_1 + \alpha_2, \operatorname{logaddexp}(\alpha_2 +
    \beta_1, \beta_2))`, where :math:`\alpha = \log a`, :math:`\beta = \log b`.
    Unlike the paper, the initial state and the reset state stay out of the
    logarithm: with the prefix :math:`(A_t, B_t)` and :math:`C_t` (the product
    of the coefficients since the last reset, 0 before one, kept in linear
    space: it lies in [0, 1] for coefficients up to 1),
    :math:`h_t = e^{A_t} h_0 + e^{B_t} + C_t r`. So ``init`` and
    ``reset_to`` may be zero or negative and their gradients stay finite. A
    reset is :math:`\alpha = \log 0`, which the paper's cumsum/logcumsumexp
    form cannot express (and whose long cumulative sum loses float32
    precision); the associative form has neither problem. Derivatives
    (forward and reverse mode) come from a JVP rule that runs the tangent
    recurrence in linear space.

    ``log_a`` and ``log_b`` have one shape and floating dtype (computed in
    float32 when narrower); ``init`` and ``reset_to`` are ``log_b.shape[1:]``.
    Returns ``(final, hs)`` as :func:`linear`, in the dtype of ``log_b``.
    """
    if log_b.shape[0] == 0:
        return init, log_b
    dtype = log_b.dtype
    # _LOG_ZERO summed over many steps overflows narrower floats.
    wide = dtype if jnp.finfo(dtype).bits >= 32 else jnp.dtype(jnp.float32)
    final, hs = _associative_log(
        *(x.astype(wide) for x in (log_a, log_b)),
        mask,
        resets,
        *(x.astype(wide) for x in (init, reset_to)),
        reverse=reverse,
    )
    return final.astype(dtype), hs.astype(dtype)


@functools.partial(jax.jit, static_argnames=("reverse",))
def _associative_log(log_a, log_b, mask, resets, init, reset_to, *, reverse: bool):
    hs = _log_linear_states(log_a, log_b, mask, resets, init, reset_to, reverse)
    final = hs[0] if reverse else hs[-1]
    if mask is not None:
        hs = where_rows(mask, hs, jnp.zeros((), hs.dtype))
    return final, hs


@functools.partial(jax.custom_jvp, nondiff_argnums=(6,))
def _log_linear_states(log_a, log_b, mask, resets, init, reset_to, reverse):
    """:func:`_linear_states` for ``a = exp(log_a)``, ``b = exp(log_b)``."""
    log_zero = jnp.asarray(_LOG_ZERO, log_b.dtype)
    log_a, log_b = _select_log_coefficients(log_a, log_b, mask)
    if resets is None:
        prefix_a, prefix_b = jax.lax.associative_scan(
            _compose_log_affine, (log_a, log_b), reverse=reverse
        )
        return jnp.exp(prefix_a) * init[None] + jnp.exp(prefix_b)
    # The reset state enters through its own channel: its coefficient is a_t
    # at a valid reset step and 1 at a padded one.
    reset_coefficient = where_rows(resets, jnp.exp(log_a), jnp.zeros((), log_a.dtype))
    log_a = where_rows(resets, log_zero, log_a)
    prefix_a, prefix_b, prefix_c = jax.lax.associative_scan(
        _compose_log_affine_with_reset,
        (log_a, log_b, reset_coefficient),
        reverse=reverse,
    )
    return (
        jnp.exp(prefix_a) * init[None] + jnp.exp(prefix_b) + prefix_c * reset_to[None]
    )


@_log_linear_states.defjvp
def _log_linear_states_jvp(reverse, primals, tangents):
    """The tangent is itself a linear recurrence, run in linear space.

    Differentiating ``h_t = a_t h'_{t-1} + b_t`` (``h'`` the state before
    step ``t``: ``reset_to`` at a reset) gives ``dh_t = a_t dh'_{t-1} +
    (a_t d(log a_t) h'_{t-1} + b_t d(log b_t))``: a :func:`_linear_states`
    scan whose coefficients lie in [0, 1], so it needs no logarithms. Its
    transpose is a far smaller program than the transpose of the log-space
    combine, which is what makes reverse mode cheap to compile here.
    """
    log_a, log_b, mask, resets, init, reset_to = primals
    d_log_a, d_log_b, _, _, d_init, d_reset_to = tangents
    hs = _log_linear_states(log_a, log_b, mask, resets, init, reset_to, reverse)
    log_a, log_b = _select_log_coefficients(log_a, log_b, mask)
    a, b = jnp.exp(log_a), jnp.exp(log_b)
    if reverse:
        before = jnp.concatenate([hs[1:], init[None]])
    else:
        before = jnp.concatenate([init[None], hs[:-1]])
    if resets is not None:
        before = where_rows(resets, reset_to[None], before)
    d_inputs = a * d_log_a * before + b * d_log_b
    d_hs = _linear_states(a, d_inputs, mask, resets, d_init, d_reset_to, reverse)
    return hs, d_hs


def _select_log_coefficients(log_a, log_b, mask):
    """A padded step is the identity map: log a = 0, log b = log 0."""
    if mask is None:
        return log_a, log_b
    return (
        where_rows(mask, log_a, jnp.zeros((), log_a.dtype)),
        where_rows(mask, log_b, jnp.asarray(_LOG_ZERO, log_b.dtype)),
    )


def _compose_log_affine(first, second):
    """:func:`_compose_affine` on ``(log a, log b)``."""
    log_a1, log_b1 = first
    log_a2, log_b2 = second
    return log_a1 + log_a2, _log_add(log_a2 + log_b1, log_b2)


def _compose_log_affine_with_reset(first, second):
    """Also carries the reset state's coefficient ``c`` (linear, in [0, 1])."""
    log_a1, log_b1, c1 = first
    log_a2, log_b2, c2 = second
    return (
        log_a1 + log_a2,
        _log_add(log_a2 + log_b1, log_b2),
        jnp.exp(log_a2) * c1 + c2,
    )


def _log_add(x, y):
    """``log(exp(x) + exp(y))`` for finite ``x``, ``y``.

    Fewer operations than ``jnp.logaddexp``, which also handles infinities
    that the scan never produces; at ``x == y`` the derivative is 1/2 each
    (``max`` splits ties, ``abs'(0) = 0``).
    """
    return jnp.maximum(x, y) + jnp.log1p(jnp.exp(-jnp.abs(x - y)))
