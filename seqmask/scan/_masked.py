"""``masked_scan``: ``jax.lax.scan`` with a mask that carries state through."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from seqmask import _sharding

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
      unroll: passed to :func:`jax.lax.scan`.
      pad_value: the output value at padded steps.
      length: number of steps when ``xs`` is None and no mask is given.

    Returns:
      ``(final_carry, ys)`` where ``ys`` leaves are ``[time, *batch, ...]``.

    Examples:
      A running sum that skips padded steps:

      >>> import jax.numpy as jnp
      >>> from seqmask import masked_scan
      >>> xs = jnp.array([[1.0, 5.0], [2.0, 6.0], [3.0, 7.0]])   # [time, batch]
      >>> mask = jnp.array([[True, False], [True, True], [False, True]])
      >>> step = lambda c, x: (c + x, c + x)
      >>> total, partial = masked_scan(step, jnp.zeros(2), xs, mask)
      >>> total
      Array([ 3., 13.], dtype=float32)
      >>> partial
      Array([[ 1.,  0.],
             [ 3.,  6.],
             [ 0., 13.]], dtype=float32)
    """
    return _masked_scan(
        f,
        init,
        xs,
        mask,
        resets=resets,
        reset_to=reset_to,
        reverse=reverse,
        unroll=unroll,
        pad_value=pad_value,
        length=length,
    )


def _masked_scan(
    f,
    init,
    xs,
    mask=None,
    *,
    resets=None,
    reset_to=None,
    reverse: bool = False,
    unroll: int | bool = 1,
    pad_value=0,
    length: int | None = None,
    select_inputs: bool = True,
):
    """:func:`masked_scan`; ``select_inputs=False`` skips the per-step select
    of the inputs, for callers that already zeroed ``xs`` at padded steps
    (one select over the whole sequence instead of one kernel per step)."""
    if not callable(f):
        raise TypeError(f"masked_scan: f must be callable; got {type(f).__name__}.")
    time = _time_steps(xs, mask, resets, length)
    if mask is None and resets is None:
        return jax.lax.scan(f, init, xs, length=time, reverse=reverse, unroll=unroll)

    if mask is not None:
        mask = _as_step_mask(mask, "mask", time)
        batch_shape = tuple(mask.shape[1:])
    if resets is not None:
        resets = _as_step_mask(resets, "resets", time)
        if mask is not None and resets.shape != mask.shape:
            raise ValueError(
                f"masked_scan: resets must have the shape of mask {tuple(mask.shape)}; "
                f"got {tuple(resets.shape)}."
            )
        batch_shape = tuple(resets.shape[1:])
    _check_batch_prefix(init, batch_shape, "init", skip=0)
    _check_batch_prefix(xs, batch_shape, "xs", skip=1)

    if resets is not None:
        reset_to = init if reset_to is None else reset_to
        reset_to = _broadcast_like(reset_to, init)

    def body(carry, inputs):
        x, step_mask, step_reset = inputs
        if step_reset is not None:
            carry = _select(step_reset, reset_to, carry)
        if step_mask is not None and select_inputs:
            x = jax.tree.map(lambda v: _where(step_mask, v, jnp.zeros_like(v)), x)
        new_carry, y = f(carry, x)
        _check_carry(new_carry, carry)
        if step_mask is None:
            return new_carry, y
        _check_batch_prefix(y, batch_shape, "the outputs of f", skip=0)
        new_carry = _select(step_mask, new_carry, carry)
        y = jax.tree.map(
            lambda v: _where(step_mask, v, jnp.asarray(pad_value, v.dtype)), y
        )
        return new_carry, y

    return jax.lax.scan(
        body,
        init,
        (xs, mask, resets),
        length=time,
        reverse=reverse,
        unroll=unroll,
    )


def _where_impl(step_mask, on_true, on_false):
    shape = jnp.broadcast_shapes(jnp.shape(on_true), jnp.shape(on_false))
    selector = step_mask.reshape(step_mask.shape + (1,) * (len(shape) - step_mask.ndim))
    on_true, on_false = _sharding.unify(
        jnp.broadcast_to(on_true, shape), jnp.broadcast_to(on_false, shape)
    )
    return jnp.where(jnp.broadcast_to(selector, shape), on_true, on_false)


# Differentiating a select keeps its predicate for the backward pass. Inside
# a scan that predicate is the [*batch] step mask broadcast to the full
# shape of the value, stacked over time: one [T, *batch, features] boolean
# residual, and one more kernel per step, for every selected leaf.
# Checkpointing the select keeps the [*batch] mask instead and broadcasts
# it again in the backward pass, where the broadcast fuses into the select.
_where_checkpointed = jax.checkpoint(_where_impl, prevent_cse=False)


def _where(step_mask, on_true, on_false):
    """``jnp.where`` with the ``[*batch]`` mask broadcast over trailing axes."""
    return _where_checkpointed(step_mask, on_true, on_false)


def _select(step_mask, on_true, on_false):
    return jax.tree.map(lambda a, b: _where(step_mask, a, b), on_true, on_false)


def _time_steps(xs, mask, resets, length) -> int:
    candidates = []
    for path, leaf in jax.tree_util.tree_leaves_with_path(xs):
        if jnp.ndim(leaf) == 0:
            raise ValueError(
                f"masked_scan: xs{jax.tree_util.keystr(path)} is a scalar; every "
                "leaf of xs needs a leading time axis."
            )
        candidates.append((f"xs{jax.tree_util.keystr(path)}", jnp.shape(leaf)[0]))
    for name, value in (("mask", mask), ("resets", resets)):
        if value is not None:
            if jnp.ndim(value) == 0:
                raise ValueError(
                    f"masked_scan: {name} must be [time, *batch]; got a scalar."
                )
            candidates.append((name, jnp.shape(value)[0]))
    if length is not None:
        candidates.append(("length", int(length)))
    if not candidates:
        raise ValueError(
            "masked_scan: cannot tell the number of steps: xs is empty and neither "
            "mask, resets nor length is given."
        )
    sizes = {size for _, size in candidates}
    if len(sizes) > 1:
        listing = ", ".join(f"{name}: {size}" for name, size in candidates)
        raise ValueError(
            "masked_scan: the time axis (leading axis) must have one size across "
            f"xs, mask, resets and length; got {listing}."
        )
    return int(candidates[0][1])


def _as_step_mask(value, name: str, time: int):
    value = jnp.asarray(value)
    if value.dtype != jnp.bool_:
        raise TypeError(
            f"masked_scan: {name} must be a boolean array [time, *batch]; got dtype "
            f"{value.dtype}. Use `{name} != 0` to convert."
        )
    if value.shape[0] != time:
        raise ValueError(
            f"masked_scan: {name} must have {time} steps on its leading axis; got "
            f"shape {tuple(value.shape)}."
        )
    return value


def _check_batch_prefix(tree, batch_shape, name: str, *, skip: int) -> None:
    """Every leaf must be ``[*skipped, *batch_shape, ...]``."""
    n = len(batch_shape)
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        shape = tuple(jnp.shape(leaf))
        if shape[skip : skip + n] != tuple(batch_shape):
            where = "after the time axis " if skip else ""
            raise ValueError(
                f"masked_scan: {name}{jax.tree_util.keystr(path)} has shape {shape}; "
                f"its leading axes {where}must be the batch shape "
                f"{tuple(batch_shape)} of the mask, so that the mask can select "
                "per row. Give every leaf the batch axes (broadcast it first)."
            )


def _broadcast_like(tree, like):
    try:
        return jax.tree.map(
            lambda a, b: _sharding.shard_like(
                jnp.broadcast_to(jnp.asarray(a, jnp.result_type(b)), b.shape), b
            ),
            tree,
            like,
        )
    except (ValueError, TypeError) as error:
        raise ValueError(
            "masked_scan: reset_to must have the structure of init "
            f"({jax.tree.structure(like)}) with leaves that broadcast to init's "
            f"leaves; got {jax.tree.structure(tree)} with shapes "
            f"{[np.shape(x) for x in jax.tree.leaves(tree)]}: {error}"
        ) from None


def _check_carry(new_carry, carry) -> None:
    new_def, old_def = jax.tree.structure(new_carry), jax.tree.structure(carry)
    if new_def != old_def:
        raise TypeError(
            "masked_scan: f must return a carry with the structure of its input "
            f"carry; got {new_def}, expected {old_def}."
        )
    problems = []
    for (path, new), old in zip(
        jax.tree_util.tree_leaves_with_path(new_carry),
        jax.tree.leaves(carry),
        strict=True,
    ):
        new_type = (tuple(jnp.shape(new)), jnp.result_type(new))
        old_type = (tuple(jnp.shape(old)), jnp.result_type(old))
        if new_type != old_type:
            problems.append(
                f"  carry{jax.tree_util.keystr(path)}: f returned "
                f"{new_type[1]}{list(new_type[0])}, the carry is "
                f"{old_type[1]}{list(old_type[0])}"
            )
    if problems:
        raise TypeError(
            "masked_scan: f must return a carry with the shapes and dtypes of its "
            "input carry:\n"
            + "\n".join(problems)
            + "\nCast inside f (e.g. `.astype(carry.dtype)`) or build init with the "
            "dtype f computes in."
        )
