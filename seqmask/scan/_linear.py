"""``linear_scan``: a linear recurrence, sequential or associative, masked."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import seqmask._checks as _checks
from seqmask import _scanning, _sharding

_METHODS = ("associative", "sequential")


def linear_scan(
    a,
    b,
    *,
    mask=None,
    resets=None,
    init=None,
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

    with :math:`h_{-1} = h_0` (``init``), :math:`r` = ``reset_to``, outputs
    :math:`y_t = m_t \, h_t` and, for ``reverse=True``, time running from
    ``T - 1`` down to ``0`` with outputs at their original positions.

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
    with ``T`` where the sequential one's does not; its depth pays off on
    parallel hardware (``benchmarks/README.md`` reports both methods).

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
      init: the state before the first step, broadcastable to
        ``b.shape[1:]``, in ``b``'s dtype (a Python scalar takes it); zeros
        by default.
      reset_to: the state resets set; broadcastable to ``b.shape[1:]``;
        defaults to ``init``.
      reverse: run from the last step to the first (outputs stay in place).
      method: ``"associative"`` (parallel, default) or ``"sequential"``.

    Returns:
      ``(final_h, hs)``: the state after each row's last valid step
      ``[*b.shape[1:]]`` (``init`` for a row without one; for ``T = 0``
      ``init`` broadcast) and the states ``[time, *batch, ...]``, zero at
      padded steps.

    Raises:
      TypeError: for a non-boolean ``mask``/``resets``, a dtype that is not
        floating or complex, or dtypes that differ from ``b``'s.
      ValueError: for an unknown ``method`` or shapes that do not fit.

    Examples:
      A decaying sum that skips padded steps and restarts at a reset:

      >>> import jax.numpy as jnp
      >>> from seqmask import linear_scan
      >>> a = jnp.full((4, 2), 0.5)                     # [time, batch]
      >>> b = jnp.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [4.0, 4.0]])
      >>> mask = jnp.array([[True, True], [True, False], [True, True],
      ...                   [False, True]])
      >>> h, hs = linear_scan(a, b, mask=mask)
      >>> h.tolist()
      [4.25, 5.75]
      >>> hs.tolist()
      [[1.0, 1.0], [2.5, 0.0], [4.25, 3.5], [0.0, 5.75]]
      >>> resets = jnp.array([[False, False], [False, False], [True, False],
      ...                     [False, False]])
      >>> h, _ = linear_scan(a, b, mask=mask, resets=resets, method="sequential")
      >>> h.tolist()
      [3.0, 5.75]
    """
    where = "linear_scan"
    _checks.one_of(method, _METHODS, "method", where)
    reverse = _checks.flag(reverse, "reverse", where)
    a, b = _coefficients(a, b, where)
    mask, resets = _step_flags(mask, resets, b.shape, where)
    use_init = init is not None
    init = _state(init, "init", b, where)
    reset_to = init if reset_to is None else _state(reset_to, "reset_to", b, where)
    return _scanning.linear(
        a,
        b,
        mask,
        resets,
        init,
        reset_to,
        reverse=reverse,
        method=method,
        use_init=use_init,
    )


def _coefficients(a, b, where: str):
    a, b = _checks.array(a, "a", where), _checks.array(b, "b", where)
    for name, value in (("a", a), ("b", b)):
        if not jnp.issubdtype(value.dtype, jnp.inexact):
            _checks.fail(
                where,
                f"{name} must be floating point or complex; got dtype {value.dtype}.",
                TypeError,
            )
        _checks.min_rank(value, 1, name, where, "[time, *batch, ...]")
    if a.dtype != b.dtype:
        _checks.fail(
            where,
            f"a and b must have one dtype; got a: {a.dtype}, b: {b.dtype}. Cast one "
            "of them.",
            TypeError,
        )
    try:
        fits = np.broadcast_shapes(a.shape, b.shape) == b.shape
    except ValueError:
        fits = False
    if not fits or a.ndim != b.ndim or a.shape[0] != b.shape[0]:
        _checks.fail(
            where,
            f"a must have the shape of b {tuple(b.shape)} or one that broadcasts to "
            "it with as many axes and the same time axis (size-1 axes allowed); "
            f"got a: {tuple(a.shape)}.",
        )
    return a, b


def _step_flags(mask, resets, shape, where: str):
    """``[time, *batch]`` flags: boolean leading parts of ``b``'s shape, the
    same for ``mask`` and ``resets``."""
    checked = []
    for name, value in (("mask", mask), ("resets", resets)):
        if value is not None:
            value = _checks.bool_array(value, name, where)
            if not 1 <= value.ndim <= len(shape) or value.shape != shape[: value.ndim]:
                _checks.fail(
                    where,
                    f"{name} must be [time, *batch], a leading part of b's shape "
                    f"{tuple(shape)} (e.g. {tuple(shape[:-1]) or tuple(shape)}); "
                    f"got {tuple(value.shape)}.",
                )
        checked.append(value)
    mask, resets = checked
    if mask is not None and resets is not None and mask.shape != resets.shape:
        _checks.fail(
            where,
            f"resets must have the shape of mask {tuple(mask.shape)}; got "
            f"{tuple(resets.shape)}.",
        )
    return mask, resets


def _state(value, name: str, b, where: str):
    """``value`` broadcast to the state shape ``b.shape[1:]``, laid out like
    one step of ``b`` (a scan carry keeps the layout it starts with); zeros
    when None."""
    state = _broadcast_state(value, name, b, where)
    return _sharding.shard_like_batch(state, b, tuple(range(1, b.ndim)))


def _broadcast_state(value, name: str, b, where: str):
    state_shape = tuple(b.shape[1:])
    if value is None:
        return jnp.zeros(state_shape, b.dtype)
    if isinstance(value, (int, float, complex)) and not isinstance(value, bool):
        # A Python scalar takes the dtype of b, as in jnp arithmetic, if it fits.
        if isinstance(value, complex) and not jnp.issubdtype(
            b.dtype, jnp.complexfloating
        ):
            _checks.fail(
                where,
                f"{name} must be a real number for b of dtype {b.dtype}; got "
                f"{value!r}.",
                TypeError,
            )
        if not isinstance(value, complex):
            _checks.representable(value, b.dtype, name, where)
        value = jnp.asarray(value, b.dtype)
    expected = jax.ShapeDtypeStruct(state_shape, b.dtype)
    return _checks.broadcast_tree_like(
        value,
        expected,
        name,
        where,
        expected_from="the state: b's shape without the time axis, b's dtype",
        dtype_error=TypeError,
    )
