"""``masked_scan``: ``jax.lax.scan`` with a mask that carries state through."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

import seqmask._checks as _checks
from seqmask import _scanning, _sharding

Carry = Any
PyTree = Any


def masked_scan(
    f: Callable[[Carry, PyTree], tuple[Carry, PyTree]],
    init: Carry,
    xs: PyTree,
    mask=None,
    *,
    resets=None,
    reset_to: Carry | None = None,
    reverse: bool = False,
    unroll: int | bool = 1,
    pad_value=0,
    length: int | None = None,
) -> tuple[Carry, PyTree]:
    """Scan ``f`` over the leading (time) axis of ``xs``, skipping padded steps.

    Same calling convention as :func:`jax.lax.scan`, plus a mask. The
    semantics, written as a Python loop::

      def masked_scan(f, init, xs, mask=None, *, resets=None, reset_to=None,
                      reverse=False, pad_value=0):
          carry = init
          reset_to = init if reset_to is None else reset_to
          for t in (reversed(range(T)) if reverse else range(T)):
              if resets is not None:            # a new sequence starts here
                  carry = where(resets[t], reset_to, carry)
              new_carry, y = f(carry, xs[t])
              carry = where(mask[t], new_carry, carry)   # padded: carry through
              ys[t] = where(mask[t], y, pad_value)       # padded: pad_value out
          return carry, ys

    ``mask[t]`` has the batch shape ``[*batch]`` and broadcasts over the
    trailing axes of every carry, input and output leaf, which must all start
    with the batch axes (inputs after the time axis). Consequences:

    * a row whose mask is all false returns its initial carry exactly;
    * ``reverse=True`` visits exactly the valid steps of every row, last to
      first, for any mask; outputs stay at their original positions, so no
      flipping is needed;
    * at a padded step ``f`` receives zeros instead of ``xs[t]`` (the inputs
      are selected before ``f``, not only the outputs after it), so NaN or Inf
      in padded inputs changes no output, no carry and no gradient, and the
      gradient with respect to a padded input is exactly zero.

    Args:
      f: step function ``(carry, x) -> (new_carry, y)``; ``new_carry`` must
        have the structure, shapes and dtypes of ``carry``.
      init: initial carry, a pytree whose leaves are ``[*batch, ...]``.
      xs: pytree of inputs whose leaves are ``[time, *batch, ...]``, or None
        (then ``length`` or ``mask`` gives the number of steps).
      mask: boolean ``[time, *batch]``, true at valid steps; None means every
        step is valid.
      resets: optional boolean ``[time, *batch]``: where true, the carry is
        replaced by ``reset_to`` *before* step ``t`` (a new sequence starts).
      reset_to: the carry to reset to; leaves broadcast to the leaves of
        ``init`` (a learned ``[hidden]`` state, say). Defaults to ``init``.
      reverse: scan from the last step to the first.
      unroll: passed to :func:`jax.lax.scan` (a bool or a positive int).
      pad_value: the output value at padded steps.
      length: number of steps when ``xs`` is None and no mask is given.

    Returns:
      ``(final_carry, ys)`` where ``ys`` leaves are ``[time, *batch, ...]``.

    Raises:
      TypeError: for a non-callable ``f``, a non-boolean ``mask`` or
        ``resets``, a step function that does not return a pair
        ``(new_carry, y)`` or whose carry changes structure, shape or dtype,
        or a ``reset_to`` of another dtype than ``init``.
      ValueError: for leaves without the time axis or the batch axes, time
        axes of different sizes, a ``reset_to`` that does not broadcast to
        ``init``, or a ``pad_value`` that does not broadcast to an output.

    Examples:
      A running sum that skips padded steps:

      >>> import jax.numpy as jnp
      >>> from seqmask import masked_scan
      >>> xs = jnp.array([[1.0, 5.0], [2.0, 6.0], [3.0, 7.0]])   # [time, batch]
      >>> mask = jnp.array([[True, False], [True, True], [False, True]])
      >>> step = lambda c, x: (c + x, c + x)
      >>> total, partial = masked_scan(step, jnp.zeros(2), xs, mask)
      >>> total.tolist()
      [3.0, 13.0]
      >>> partial.tolist()
      [[1.0, 0.0], [3.0, 6.0], [0.0, 13.0]]
    """
    where = "masked_scan"
    _checks.function(f, "f", where, "(carry, x) -> (new_carry, y)")
    reverse = _checks.flag(reverse, "reverse", where)
    unroll = _checks.flag_or_int(unroll, "unroll", where)
    if length is not None:
        length = _checks.non_negative_int(length, "length", where)
    time = _time_steps(xs, mask, resets, length)
    mask, resets = _step_flags(init, xs, mask, resets)
    if mask is not None or resets is not None:
        # A weakly typed init (a Python number) starts in the dtype the step
        # computes in, as in jax.lax.scan (the path without mask or resets).
        init = _checks.promote_weak_init(f, init, xs)
    if reset_to is not None or resets is not None:
        # Checked even without resets, where it is unused: a wrong reset_to
        # is a mistake either way (as in linear_scan).
        reset_to = _fit_reset_to(init if reset_to is None else reset_to, init, where)
    return _scanning.masked(
        f,
        init,
        xs,
        mask,
        resets,
        reset_to,
        reverse=reverse,
        unroll=unroll,
        pad_value=pad_value,
        length=time,
        where=where,
    )


def _time_steps(xs, mask, resets, length) -> int:
    """The one size of the time axis of ``xs``, ``mask``, ``resets``, ``length``."""
    where = "masked_scan"
    candidates = []
    for path, leaf in jax.tree_util.tree_leaves_with_path(xs):
        _checks.min_rank(leaf, 1, f"xs{jax.tree_util.keystr(path)}", where, "time")
        candidates.append((f"xs{jax.tree_util.keystr(path)}", jnp.shape(leaf)[0]))
    for name, value in (("mask", mask), ("resets", resets)):
        if value is not None:
            _checks.min_rank(value, 1, name, where, "[time, *batch]")
            candidates.append((name, jnp.shape(value)[0]))
    if length is not None:
        candidates.append(("length", length))
    if not candidates:
        _checks.fail(
            where,
            "cannot tell the number of steps: xs is empty and neither mask, resets "
            "nor length is given.",
        )
    if len({size for _, size in candidates}) > 1:
        listing = ", ".join(f"{name}: {size}" for name, size in candidates)
        _checks.fail(
            where,
            "the time axis (leading axis) must have one size across xs, mask, "
            f"resets and length; got {listing}.",
        )
    return int(candidates[0][1])


def _step_flags(init, xs, mask, resets):
    """``mask`` and ``resets`` checked: boolean ``[time, *batch]``, one shape,
    the batch axes leading every leaf of ``init`` and (after time) ``xs``."""
    where = "masked_scan"
    if mask is not None:
        mask = _checks.bool_array(mask, "mask", where)
    if resets is not None:
        resets = _checks.bool_array(resets, "resets", where)
        if mask is not None and resets.shape != mask.shape:
            _checks.fail(
                where,
                f"resets must have the shape of mask {tuple(mask.shape)}; got "
                f"{tuple(resets.shape)}.",
            )
    flags = mask if mask is not None else resets
    if flags is not None:
        flags_name = "mask" if mask is not None else "resets"
        source = f"of {flags_name} [time, *batch] (shape {tuple(flags.shape)})"
        _checks.leading_axes(init, flags.shape[1:], "init", where, source=source)
        _checks.leading_axes(xs, flags.shape[1:], "xs", where, skip=1, source=source)
    return mask, resets


def _fit_reset_to(reset_to, init, where: str):
    """``reset_to`` broadcast to ``init``'s leaves and laid out like them."""
    expected = jax.tree.map(
        lambda leaf: jax.ShapeDtypeStruct(jnp.shape(leaf), jnp.result_type(leaf)), init
    )
    fitted = _checks.broadcast_tree_like(
        reset_to,
        expected,
        "reset_to",
        where,
        expected_from="init",
        error=ValueError,
        dtype_error=TypeError,
        dtype_hint="Give reset_to the dtypes of init.",
    )
    return jax.tree.map(_sharding.shard_like, fitted, init)
