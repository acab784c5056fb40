"""``linear_scan``: a linear recurrence, sequential or associative, masked."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from seqmask import _sharding
from seqmask.scan._masked import masked_scan

_LINEAR_SCAN_METHODS = ("associative", "sequential")


def linear_scan(
    a,
    b,
    *,
    mask=None,
    resets=None,
    initial=None,
    reset_to=None,
    reverse: bool = False,
    method: str = "associative",
) -> tuple[jax.Array, jax.Array]:
    r"""The linear recurrence ``h_t = a_t * h_{t-1} + b_t``, masked, in parallel.

    Element-wise (diagonal) recurrence over the leading (time) axis, with the
    semantics of :func:`masked_scan` over the step ``h -> a_t * h + b_t``:

    .. math::

      h_t = \begin{cases}
        a_t \, \tilde h_{t-1} + b_t & \text{if } m_t \\
        \tilde h_{t-1} & \text{otherwise}
      \end{cases}
      \qquad
      \tilde h_{t-1} = \begin{cases}
        r & \text{if } \mathrm{reset}_t \\
        h_{t-1} & \text{otherwise}
      \end{cases}

    with :math:`h_{-1} = h_0` (``initial``), :math:`r` = ``reset_to``
    (``initial`` by default), outputs :math:`y_t = m_t \, h_t` (zero at
    padded steps) and, for ``reverse=True``, time running from ``T - 1``
    down to ``0`` with outputs at their original positions.

    ``method="associative"`` writes every step as the affine map
    :math:`h \mapsto a'_t h + b'_t` and composes the maps with
    :func:`jax.lax.associative_scan` (depth :math:`O(\log T)`):
    :math:`(a_1, b_1) \circ (a_2, b_2) = (a_1 a_2, \; a_2 b_1 + b_2)`. A
    padded step is the identity :math:`(1, 0)`; a reset step is the constant
    map :math:`(0, \; a_t r + b_t)` (a padded reset step: :math:`(0, r)`);
    then :math:`h_t = A_t h_0 + B_t` for the composed prefix
    :math:`(A_t, B_t)`. ``method="sequential"`` runs :func:`masked_scan`
    (``T`` sequential steps); both give the same values and gradients up to
    rounding. Padded entries of ``a`` and ``b`` are replaced before anything
    is combined, so NaN or Inf there changes no value and no gradient, and
    the gradient with respect to them is exactly zero. The associative form
    is stable for :math:`|a_t| \le 1` (the regime of gated linear RNNs);
    prefix products of larger coefficients overflow as the recurrence does.
    It does about twice the arithmetic of the sequential form, and its
    program has :math:`O(\log T)` levels, so its compile time grows (slowly)
    with ``T`` where the sequential one's does not: on a CPU the sequential
    method is usually faster; the parallel one pays off on accelerators and
    long sequences (``benchmarks/bench_linear_scan.py`` measures both).

    Args:
      a: coefficients ``[time, *batch, ...]``, the shape of ``b`` or one that
        broadcasts to it with the same number of axes (e.g. ``[time,
        *batch, 1]`` for one gate per row); floating or complex, the dtype of
        ``b``.
      b: inputs ``[time, *batch, ...]``.
      mask: boolean ``[time, *batch]`` (a prefix of ``b``'s shape), true at
        valid steps; broadcast over the trailing axes. None: all valid.
      resets: boolean, the shape of ``mask``: where true the state is set to
        ``reset_to`` *before* step ``t`` (a new sequence starts there).
      initial: the state before the first step, broadcastable to
        ``b.shape[1:]``; zeros by default.
      reset_to: the state resets set; broadcastable to ``b.shape[1:]``;
        defaults to ``initial``.
      reverse: run from the last step to the first (outputs stay in place).
      method: ``"associative"`` (parallel, default) or ``"sequential"``.

    Returns:
      ``(final_h, hs)``: the state after each row's last valid step
      ``[*b.shape[1:]]`` (``initial`` for a row without one; for ``T = 0``
      ``initial`` broadcast) and the states ``[time, *batch, ...]``, zero at
      padded steps.

    Raises:
      ValueError: for an unknown ``method``, shapes that do not fit, a
        non-boolean ``mask``/``resets`` or a non-floating dtype.

    Examples:
      A decaying sum that skips padded steps and restarts at a reset:

      >>> import jax.numpy as jnp
      >>> from seqmask import linear_scan
      >>> a = jnp.full((4, 2), 0.5)                     # [time, batch]
      >>> b = jnp.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [4.0, 4.0]])
      >>> mask = jnp.array([[True, True], [True, False], [True, True],
      ...                   [False, True]])
      >>> h, hs = linear_scan(a, b, mask=mask)
      >>> h
      Array([4.25, 5.75], dtype=float32)
      >>> hs
      Array([[1.  , 1.  ],
             [2.5 , 0.  ],
             [4.25, 3.5 ],
             [0.  , 5.75]], dtype=float32)
      >>> resets = jnp.array([[False, False], [False, False], [True, False],
      ...                     [False, False]])
      >>> h, _ = linear_scan(a, b, mask=mask, resets=resets, method="sequential")
      >>> h
      Array([3.  , 5.75], dtype=float32)
    """
    if method not in _LINEAR_SCAN_METHODS:
        raise ValueError(
            f"linear_scan: method must be one of {_LINEAR_SCAN_METHODS}; got "
            f"{method!r}."
        )
    a, b = _check_coefficients(a, b)
    mask = _check_step_flags(mask, "mask", b.shape)
    resets = _check_step_flags(resets, "resets", b.shape)
    if mask is not None and resets is not None and mask.shape != resets.shape:
        raise ValueError(
            f"linear_scan: resets must have the shape of mask {tuple(mask.shape)}; "
            f"got {tuple(resets.shape)}."
        )
    state_shape = tuple(b.shape[1:])
    initial_given = initial is not None
    initial = _check_state(initial, "initial", state_shape, b.dtype)
    reset_to = (
        initial
        if reset_to is None
        else _check_state(reset_to, "reset_to", state_shape, b.dtype)
    )
    if b.shape[0] == 0:
        return initial, b

    if method == "sequential":
        # masked_scan needs the batch axes on every input; a narrow `a` keeps
        # its size-1 feature axes.
        flags = mask if mask is not None else resets
        if flags is not None:
            a = jnp.broadcast_to(a, _flag_broadcast_shape(flags, a.shape))

        def step(h, inputs):
            a_t, b_t = inputs
            h = a_t * h + b_t
            return h, h

        return masked_scan(
            step,
            initial,
            (a, b),
            mask,
            resets=resets,
            reset_to=reset_to if resets is not None else None,
            reverse=reverse,
        )

    return _associative_linear_scan(
        a,
        b,
        mask,
        resets,
        initial,
        reset_to,
        reverse=reverse,
        use_initial=initial_given,
    )


# Jitted so that eager calls compile the O(log T) levels once instead of
# dispatching each slice of them; under an outer jit it is inlined.
@functools.partial(jax.jit, static_argnames=("reverse", "use_initial"))
def _associative_linear_scan(
    a, b, mask, resets, initial, reset_to, *, reverse: bool, use_initial: bool
):
    # Without an explicit initial the state starts at zero: skipping the
    # product also keeps an overflowed prefix (inf * 0) out of the result.
    hs = _linear_states(
        a, b, mask, resets, initial if use_initial else None, reset_to, reverse
    )
    final = hs[0] if reverse else hs[-1]
    if mask is not None:
        hs = _where_steps(mask, hs, jnp.zeros((), hs.dtype))
    return final, hs


def _linear_states(a, b, mask, resets, initial, reset_to, reverse: bool):
    """The state after every step, padded steps included (carried through)."""
    # Select before combining: a padded step's entries never reach an
    # arithmetic op, so NaN there cannot leak into values or gradients.
    if mask is not None:
        a = _where_steps(mask, a, jnp.ones((), a.dtype))
        b = _where_steps(mask, b, jnp.zeros((), b.dtype))
    if resets is not None:
        # The state becomes reset_to before the step: h_t = a_t * r + b_t, a
        # constant map. A padded reset step has a = 1, b = 0 here: h_t = r.
        b = _where_steps(resets, a * reset_to[None] + b, b)
        a = _where_steps(resets, jnp.zeros((), a.dtype), a)
    prefix_a, prefix_b = jax.lax.associative_scan(
        _compose_affine, (a, b), reverse=reverse
    )
    if initial is None:
        return prefix_b
    return prefix_a * initial[None] + prefix_b


def _compose_affine(first, second):
    """The map ``h -> a2 * (a1 * h + b1) + b2``: ``first`` applied, then ``second``."""
    a1, b1 = first
    a2, b2 = second
    return a1 * a2, a2 * b1 + b2


# Stands for log(0) in the log-space scan. A finite value keeps every
# intermediate finite (no inf - inf, no derivative of log at 0): exp of it,
# and of sums of it with anything the scan adds, is exactly 0 in float32 and
# float64, so it behaves as -inf.
_LOG_ZERO = -1e4


def _log_linear_scan(
    log_a, log_b, *, initial, mask=None, resets=None, reset_to=None, reverse=False
):
    r"""``h_t = exp(log_a_t) h_{t-1} + exp(log_b_t)`` with the sums in log space.

    The log-space form of :func:`linear_scan` for positive coefficients and
    inputs (Feng et al. 2024, "Were RNNs All We Needed?", section 3.3). The
    prefix maps are composed as :math:`(\alpha_1, \beta_1) \circ (\alpha_2,
    \beta_2) = (\alpha_1 + \alpha_2, \operatorname{logaddexp}(\alpha_2 +
    \beta_1, \beta_2))`, where :math:`\alpha = \log a`, :math:`\beta = \log b`.
    Unlike the paper, the initial state and the reset state stay out of the
    logarithm: with the prefix :math:`(A_t, B_t)` and :math:`C_t` (the product
    of the coefficients since the last reset, 0 before one, kept in linear
    space: it lies in [0, 1] for coefficients up to 1),
    :math:`h_t = e^{A_t} h_0 + e^{B_t} + C_t r`. So
    ``initial`` and ``reset_to`` may be zero (the default carry) or negative
    and their gradients stay finite. A reset is :math:`\alpha = \log 0`,
    which the paper's cumsum/logcumsumexp form cannot express (and whose long
    cumulative sum loses float32 precision); the associative form has neither
    problem. Derivatives (forward and reverse mode) come from a JVP rule
    that runs the tangent recurrence in linear space.

    Args:
      log_a, log_b: ``[time, *batch, ...]``, one shape and floating dtype
        (computed in float32 when narrower).
      initial: the state before the first step, ``[*batch, ...]``.
      mask, resets, reset_to, reverse: as :func:`linear_scan`.

    Returns:
      ``(final_h, hs)`` as :func:`linear_scan`, in the dtype of ``log_b``.
    """
    log_a, log_b = _check_coefficients(log_a, log_b)
    mask = _check_step_flags(mask, "mask", log_b.shape)
    resets = _check_step_flags(resets, "resets", log_b.shape)
    state_shape = tuple(log_b.shape[1:])
    initial = _check_state(initial, "initial", state_shape, log_b.dtype)
    reset_to = (
        initial
        if reset_to is None
        else _check_state(reset_to, "reset_to", state_shape, log_b.dtype)
    )
    if log_b.shape[0] == 0:
        return initial, log_b
    dtype = log_b.dtype
    # _LOG_ZERO summed over many steps overflows narrower floats.
    wide = dtype if jnp.finfo(dtype).bits >= 32 else jnp.dtype(jnp.float32)
    final, hs = _associative_log_linear_scan(
        *(x.astype(wide) for x in (log_a, log_b)),
        mask,
        resets,
        *(x.astype(wide) for x in (initial, reset_to)),
        reverse=reverse,
    )
    return final.astype(dtype), hs.astype(dtype)


@functools.partial(jax.jit, static_argnames=("reverse",))
def _associative_log_linear_scan(
    log_a, log_b, mask, resets, initial, reset_to, *, reverse: bool
):
    hs = _log_linear_states(log_a, log_b, mask, resets, initial, reset_to, reverse)
    final = hs[0] if reverse else hs[-1]
    if mask is not None:
        hs = _where_steps(mask, hs, jnp.zeros((), hs.dtype))
    return final, hs


@functools.partial(jax.custom_jvp, nondiff_argnums=(6,))
def _log_linear_states(log_a, log_b, mask, resets, initial, reset_to, reverse):
    """:func:`_linear_states` for ``a = exp(log_a)``, ``b = exp(log_b)``."""
    log_zero = jnp.asarray(_LOG_ZERO, log_b.dtype)
    log_a, log_b = _select_log_coefficients(log_a, log_b, mask)
    if resets is None:
        prefix_a, prefix_b = jax.lax.associative_scan(
            _compose_log_affine, (log_a, log_b), reverse=reverse
        )
        return jnp.exp(prefix_a) * initial[None] + jnp.exp(prefix_b)
    # The reset state enters through its own channel: its coefficient is a_t
    # at a valid reset step and 1 at a padded one.
    reset_coefficient = _where_steps(resets, jnp.exp(log_a), jnp.zeros((), log_a.dtype))
    log_a = _where_steps(resets, log_zero, log_a)
    prefix_a, prefix_b, prefix_c = jax.lax.associative_scan(
        _compose_log_affine_with_reset,
        (log_a, log_b, reset_coefficient),
        reverse=reverse,
    )
    return (
        jnp.exp(prefix_a) * initial[None]
        + jnp.exp(prefix_b)
        + prefix_c * reset_to[None]
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
    log_a, log_b, mask, resets, initial, reset_to = primals
    d_log_a, d_log_b, _, _, d_initial, d_reset_to = tangents
    hs = _log_linear_states(log_a, log_b, mask, resets, initial, reset_to, reverse)
    log_a, log_b = _select_log_coefficients(log_a, log_b, mask)
    a, b = jnp.exp(log_a), jnp.exp(log_b)
    if reverse:
        before = jnp.concatenate([hs[1:], initial[None]])
    else:
        before = jnp.concatenate([initial[None], hs[:-1]])
    if resets is not None:
        before = _where_steps(resets, reset_to[None], before)
    d_inputs = a * d_log_a * before + b * d_log_b
    d_hs = _linear_states(a, d_inputs, mask, resets, d_initial, d_reset_to, reverse)
    return hs, d_hs


def _select_log_coefficients(log_a, log_b, mask):
    """A padded step is the identity map: log a = 0, log b = log 0."""
    if mask is None:
        return log_a, log_b
    return (
        _where_steps(mask, log_a, jnp.zeros((), log_a.dtype)),
        _where_steps(mask, log_b, jnp.asarray(_LOG_ZERO, log_b.dtype)),
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


def _where_steps(flags, on_true, on_false):
    """``where`` with ``[time, *batch]`` flags broadcast over trailing axes.

    Unlike :func:`_where` the result may be wider than ``on_true`` (a
    coefficient shared over the batch meets a per-row mask).
    """
    rank = max(jnp.ndim(on_true), jnp.ndim(on_false))
    selector = flags.reshape(flags.shape + (1,) * (rank - flags.ndim))
    shape = jnp.broadcast_shapes(
        selector.shape, jnp.shape(on_true), jnp.shape(on_false)
    )
    on_true, on_false = _sharding.unify(
        jnp.broadcast_to(on_true, shape), jnp.broadcast_to(on_false, shape)
    )
    return jnp.where(jnp.broadcast_to(selector, shape), on_true, on_false)


def _flag_broadcast_shape(flags, shape) -> tuple[int, ...]:
    expanded = flags.shape + (1,) * (len(shape) - flags.ndim)
    return tuple(np.broadcast_shapes(expanded, tuple(shape)))


def _check_coefficients(a, b):
    a, b = jnp.asarray(a), jnp.asarray(b)
    for name, value in (("a", a), ("b", b)):
        if not jnp.issubdtype(value.dtype, jnp.inexact):
            raise ValueError(
                f"linear_scan: {name} must be floating point or complex; got dtype "
                f"{value.dtype}."
            )
        if value.ndim == 0:
            raise ValueError(
                f"linear_scan: {name} must be [time, *batch, ...] with a leading "
                "time axis; got a scalar."
            )
    if a.dtype != b.dtype:
        raise ValueError(
            f"linear_scan: a and b must have one dtype; got a: {a.dtype}, b: "
            f"{b.dtype}. Cast one of them."
        )
    try:
        fits = np.broadcast_shapes(a.shape, b.shape) == b.shape
    except ValueError:
        fits = False
    if not fits or a.ndim != b.ndim or a.shape[0] != b.shape[0]:
        raise ValueError(
            f"linear_scan: a must have the shape of b {tuple(b.shape)} or one that "
            "broadcasts to it with as many axes and the same time axis (size-1 "
            f"axes allowed); got a: {tuple(a.shape)}."
        )
    return a, b


def _check_step_flags(value, name: str, shape):
    if value is None:
        return None
    value = jnp.asarray(value)
    if value.dtype != jnp.bool_:
        raise ValueError(
            f"linear_scan: {name} must be a boolean array [time, *batch]; got dtype "
            f"{value.dtype}. Use `{name} != 0` to convert."
        )
    if not 1 <= value.ndim <= len(shape) or value.shape != shape[: value.ndim]:
        raise ValueError(
            f"linear_scan: {name} must be [time, *batch], a leading part of b's "
            f"shape {tuple(shape)} (e.g. {tuple(shape[:-1]) or tuple(shape)}); got "
            f"{tuple(value.shape)}."
        )
    return value


def _check_state(value, name: str, state_shape, dtype):
    """``value`` broadcast to ``state_shape``; zeros when None."""
    if value is None:
        return jnp.zeros(state_shape, dtype)
    if isinstance(value, (int, float, complex)) and not isinstance(value, bool):
        # A Python scalar takes the dtype of b, as in jnp arithmetic.
        value = jnp.asarray(value, dtype)
    value = jnp.asarray(value)
    if value.dtype != dtype:
        raise ValueError(
            f"linear_scan: {name} must have the dtype of b ({dtype}); got "
            f"{value.dtype}."
        )
    try:
        fits = np.broadcast_shapes(value.shape, state_shape) == state_shape
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(
            f"linear_scan: {name} must broadcast to the state shape "
            f"{tuple(state_shape)} (b's shape without the time axis); got "
            f"{tuple(value.shape)}."
        )
    return jnp.broadcast_to(value, state_shape)
