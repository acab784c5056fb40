"""Carry threading: per-row resets, detaching, per-step carries and truncated BPTT.

In seqmask the recurrent carry is a value the user threads: ``seqmask.rnn``
takes ``initial_carry`` and returns the new carry, so stateful training is a
loop that passes the carry of one chunk into the next. This module holds what
makes that loop short and exactly right: :func:`reset` sends chosen rows back
to a given carry (zeros or a learned initial state), :func:`detach` cuts the
gradient between chunks, :func:`rnn_with_carries` also returns the carry after
every step (to read the final carry of sequences packed into one row), and
:func:`truncated_value_and_grad` / :func:`truncated_bptt_step` turn a chunk
loss into a step that is compiled once and differentiates only through its
own chunk (truncated backpropagation through time). The chunks themselves come
from :func:`seqmask.data.chunks` or :func:`seqmask.data.stateful_batches`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

import seqmask._checks as _checks
from seqmask import _layer
from seqmask._masking import where_rows_tree
from seqmask.cells import Cell

__all__ = [
    "reset",
    "detach",
    "zeros_like",
    "rnn_with_carries",
    "truncated_value_and_grad",
    "truncated_bptt_step",
]

Carry = Any
Params = Any
PyTree = Any


def reset(carry: Carry, where, reset_to: Carry | None = None) -> Carry:
    """Replace the carry of the rows where ``where`` is true by ``reset_to``.

    Pytree-aware: every leaf of ``carry`` is ``[*batch, ...]`` with the batch
    shape of ``where``; ``reset_to`` has the structure of ``carry`` and leaves
    that broadcast to the carry's leaves (numpy rules, right-aligned), so an
    unbatched learned state (e.g. ``[H]``) resets every chosen row to it. The
    reset is a select, not a blend: a reset row's new carry does not depend
    on its old one (zero gradient to it), and ``reset_to`` receives gradient
    only from the rows that were reset.

    Args:
      carry: pytree with leaves ``[*batch, ...]``.
      where: boolean ``[*batch]``; true for the rows to reset.
      reset_to: the carry to reset to, leaves broadcastable to the carry's
        leaves and of the same dtype (a Python number takes it); None resets
        to zeros.

    Returns:
      A carry like ``carry``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from seqmask.carry import reset
      >>> h = jnp.ones((3, 2))
      >>> reset(h, jnp.array([True, False, True]), jnp.array([5.0, 6.0])).tolist()
      [[5.0, 6.0], [1.0, 1.0], [5.0, 6.0]]
      >>> reset(h, jnp.array([False, True, False])).tolist()
      [[1.0, 1.0], [0.0, 0.0], [1.0, 1.0]]
    """
    name = "reset"
    where = _checks.bool_array(where, "where", name)
    for path, leaf in jax.tree_util.tree_leaves_with_path(carry):
        shape = tuple(jnp.shape(leaf))
        if shape[: where.ndim] != tuple(where.shape):
            _checks.fail(
                name,
                "where must be boolean [*batch], the leading axes of every leaf of "
                f"carry; got where of shape {tuple(where.shape)}, and "
                f"carry{jax.tree_util.keystr(path)} has shape {shape}.",
            )
    carry = jax.tree.map(jnp.asarray, carry)
    if reset_to is None:
        reset_to = zeros_like(carry)
    elif jax.tree.structure(reset_to) == jax.tree.structure(carry):
        # A Python number takes the dtype of the leaf it resets, if it fits.
        def number_as(value, leaf):
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                return value
            _checks.representable(value, leaf.dtype, "reset_to", name)
            return jnp.asarray(value, leaf.dtype)

        reset_to = jax.tree.map(number_as, reset_to, carry)
    _checks.tree_like(
        reset_to,
        carry,
        "reset_to",
        name,
        broadcast=True,
        expected_from="the carry",
        hint=" Give reset_to leaves of the carry's dtype, batched or unbatched.",
        dtype_error=TypeError,
    )
    return where_rows_tree(where, reset_to, carry)


def detach(carry: Carry) -> Carry:
    """Stop the gradient through every leaf of ``carry`` (between TBPTT chunks).

    The values are unchanged; the gradient of anything computed from the
    result with respect to whatever produced ``carry`` is zero, so a chunk's
    backward pass stops at the chunk's start.

    Args:
      carry: any pytree of arrays.

    Returns:
      The same values, with gradients stopped.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from seqmask.carry import detach
      >>> jax.grad(lambda h: jnp.sum(detach(h) * h))(jnp.array([1.0, 2.0])).tolist()
      [1.0, 2.0]
    """
    return jax.tree.map(jax.lax.stop_gradient, carry)


def zeros_like(carry: Carry) -> Carry:
    """A carry of zeros with the structure, shapes and dtypes of ``carry``.

    Args:
      carry: any pytree of arrays.

    Returns:
      A pytree like ``carry`` whose leaves are zeros.

    Examples:
      >>> import jax.numpy as jnp
      >>> from seqmask.carry import zeros_like
      >>> from seqmask.cells import LSTMCarry
      >>> zeros = zeros_like(LSTMCarry(h=jnp.ones(2), c=jnp.ones(2)))
      >>> zeros.h.tolist(), zeros.c.tolist()
      ([0.0, 0.0], [0.0, 0.0])
    """
    return jax.tree.map(jnp.zeros_like, carry)


def rnn_with_carries(
    cell: Cell,
    params: Params,
    xs,
    *,
    mask=None,
    lengths=None,
    initial_carry: Carry | None = None,
    resets=None,
    reset_to: Carry | None = None,
    time_major: bool = False,
    unroll: int | bool = 1,
) -> tuple[Carry, jax.Array, Carry]:
    """:func:`seqmask.rnn` that also returns the carry after every step.

    Needed to read the final carry of each sequence when several sequences
    share a row (packing, stateful lanes): a sequence ending mid-row leaves
    its final carry only at its last step. The carry is emitted as a second
    output of the scan, so this costs ``O(time)`` memory for the carries;
    prefer :func:`seqmask.rnn` when only the row's final carry is needed. A
    cell that declares a linear recurrence runs step by step here (a linear
    scan returns no per-step carries); the values are the same.

    Args:
      cell, params, xs, mask, lengths, initial_carry, resets, reset_to,
        time_major, unroll: as :func:`seqmask.rnn`.

    Returns:
      ``(final_carry, ys, carries)``: as :func:`seqmask.rnn`, plus the carry
      after each step, leaves ``[*batch, time, ...]`` (``[time, *batch, ...]``
      if ``time_major``), zero at padded steps (no step ran there).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import seqmask
      >>> from seqmask.carry import rnn_with_carries
      >>> cell = seqmask.cells.lstm(3)
      >>> params = cell.init(jax.random.key(0), 2)
      >>> final, ys, carries = rnn_with_carries(cell, params, jnp.ones((4, 5, 2)))
      >>> carries.c.shape
      (4, 5, 3)
      >>> bool(jnp.all(carries.c[:, -1] == final.c))
      True
    """
    where = "rnn_with_carries"
    _layer.check_cell(cell, where)
    final_carry, (ys, carries) = _layer.rnn(
        _emitting_carries(cell),
        params,
        (xs, mask, lengths, resets, time_major),
        (initial_carry, reset_to),
        False,
        _layer.options(unroll, False, None, where),
        where,
    )
    return final_carry, ys, carries


def _emitting_carries(cell: Cell) -> Cell:
    """``cell`` with outputs ``(y, new_carry)``, so a scan stacks the carries."""

    def apply(params, carry, x):
        new_carry, y = cell.apply(params, carry, x)
        return new_carry, (y, new_carry)

    inner_projected = cell.apply_projected
    if inner_projected is None or cell.project_inputs is None:
        return cell._replace(apply=apply, linear=None)

    def apply_projected(params, carry, projected):
        new_carry, y = inner_projected(params, carry, projected)
        return new_carry, (y, new_carry)

    return cell._replace(apply=apply, apply_projected=apply_projected, linear=None)


def truncated_value_and_grad(
    loss_fn: Callable[..., tuple[jax.Array, Any]], *, has_aux: bool = False
) -> Callable[..., tuple[tuple[jax.Array, Any], Params]]:
    """Value and parameter gradient of one chunk, truncated at the chunk start.

    ``loss_fn(params, carry, chunk) -> (loss, new_carry)`` (or ``(loss,
    (new_carry, aux))`` with ``has_aux``) computes a chunk's loss from the
    carry the previous chunk left. The returned function detaches the
    incoming carry, so its gradient is that of full backpropagation through
    time truncated at the chunk boundary, and returns the new carry for the
    next chunk. Rows that start a new sequence inside the chunk should be
    marked by ``resets`` that ``loss_fn`` passes to :func:`seqmask.rnn`: the
    reset to the cell's initial carry happens inside the differentiated
    function, so a learned initial state receives its gradient from exactly
    those rows.

    Args:
      loss_fn: ``(params, carry, chunk) -> (loss, new_carry)``; ``loss`` a
        scalar, ``chunk`` anything (e.g. a :class:`seqmask.data.Chunk`).
      has_aux: whether ``loss_fn`` returns ``(loss, (new_carry, aux))``.

    Returns:
      ``f(params, carry, chunk) -> ((loss, new_carry), grads)`` (``((loss,
      (new_carry, aux)), grads)`` with ``has_aux``), the layout of
      ``jax.value_and_grad(..., has_aux=True)``; ``grads`` is like
      ``params``. Not jitted: wrap it in ``jax.jit`` (or see
      :func:`truncated_bptt_step`).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from seqmask.carry import truncated_value_and_grad
      >>> def loss_fn(w, h, x):             # h_t = w * h_{t-1} + x_t
      ...     h = w * h + x
      ...     return jnp.sum(h), h
      >>> f = truncated_value_and_grad(loss_fn)
      >>> (loss, h), grad = f(2.0, jnp.array(3.0), jnp.array(1.0))
      >>> float(loss), float(grad)             # d/dw (w * 3 + 1), 3 held fixed
      (7.0, 3.0)
    """
    return _truncated(loss_fn, has_aux, "truncated_value_and_grad")


def _truncated(loss_fn, has_aux, where: str):
    """:func:`truncated_value_and_grad` for the public function ``where``."""
    _checks.function(
        loss_fn, "loss_fn", where, "(params, carry, chunk) -> (loss, new_carry)"
    )
    has_aux = _checks.flag(has_aux, "has_aux", where)

    def chunk_loss(params, carry, chunk):
        out = loss_fn(params, carry, chunk)
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            expected = "(loss, (new_carry, aux))" if has_aux else "(loss, new_carry)"
            _checks.fail(
                where,
                f"loss_fn must return a pair {expected}; got {_checks.describe(out)}."
                " Return the carry the chunk leaves as well (e.g. the final carry "
                "of seqmask.rnn).",
                TypeError,
            )
        loss, rest = out
        if jnp.ndim(loss) != 0:
            _checks.fail(
                where,
                "loss_fn must return a scalar loss first; got shape "
                f"{tuple(jnp.shape(loss))}.",
            )
        if not jnp.issubdtype(jnp.result_type(loss), jnp.floating):
            _checks.fail(
                where,
                "loss_fn must return a floating scalar loss first (it is "
                f"differentiated); got {jnp.result_type(loss)}.",
                TypeError,
            )
        return loss, rest

    grad_fn = jax.value_and_grad(chunk_loss, has_aux=True)

    def value_and_grad(params, carry, chunk):
        for path, leaf in jax.tree_util.tree_leaves_with_path(params):
            if not jnp.issubdtype(jnp.result_type(leaf), jnp.inexact):
                _checks.fail(
                    where,
                    "params must have floating leaves (the gradient is taken with "
                    f"respect to them); params{jax.tree_util.keystr(path)} is "
                    f"{_checks.describe(leaf)}. Cast it, e.g. to jnp.float32.",
                    TypeError,
                )
        (loss, rest), grads = grad_fn(params, detach(carry), chunk)
        if has_aux:
            if not (isinstance(rest, tuple) and len(rest) == 2):
                _checks.fail(
                    where,
                    "with has_aux=True, loss_fn must return (loss, (new_carry, "
                    f"aux)); got (loss, {_checks.describe(rest)}).",
                )
            new_carry, aux = rest
            return (loss, (detach(new_carry), aux)), grads
        return (loss, detach(rest)), grads

    return value_and_grad


def truncated_bptt_step(
    loss_fn: Callable[..., tuple[jax.Array, Any]],
    optimizer: Any,
    *,
    has_aux: bool = False,
    jit: bool = True,
) -> Callable[..., tuple[Any, ...]]:
    """A jitted training step over one chunk: truncated gradient, then update.

    The step computes :func:`truncated_value_and_grad` of ``loss_fn``,
    applies ``optimizer`` (anything with optax's ``update(grads, state,
    params) -> (updates, state)``, e.g. ``optax.adam(1e-3)``) as
    ``optax.apply_updates`` does, and returns the detached carry for the
    next chunk. Built once and called on every chunk, it compiles once as
    long as the chunks keep their shapes: :func:`seqmask.data.chunks` pads
    the last chunk to the full length with a false mask (padded steps carry
    the state through, so the carry stays exact). A typical loop::

      step = truncated_bptt_step(loss_fn, optax.adam(1e-3))
      for chunk in seqmask.data.chunks(batch, 64, mask=mask, resets=resets):
          params, opt_state, carry, loss = step(params, opt_state, carry, chunk)

    Args:
      loss_fn: ``(params, carry, chunk) -> (loss, new_carry)`` (or ``(loss,
        (new_carry, aux))`` with ``has_aux``), see
        :func:`truncated_value_and_grad`.
      optimizer: an optax ``GradientTransformation`` or lookalike.
      has_aux: whether ``loss_fn`` returns auxiliary outputs.
      jit: whether to wrap the step in ``jax.jit``.

    Returns:
      ``step(params, opt_state, carry, chunk) -> (params, opt_state, carry,
      loss)``, with ``aux`` appended when ``has_aux``.

    Examples:
      >>> import jax.numpy as jnp, optax
      >>> from seqmask.carry import truncated_bptt_step
      >>> def loss_fn(w, h, x):
      ...     h = w * h + x
      ...     return jnp.sum(h**2), h
      >>> step = truncated_bptt_step(loss_fn, optax.sgd(0.1))
      >>> w, state, h, loss = step(jnp.array(1.0), optax.sgd(0.1).init(1.0),
      ...                          jnp.array(1.0), jnp.array(0.0))
      >>> float(w), float(h), float(loss)      # w - 0.1 * 2 * w * h * h
      (0.8, 1.0, 1.0)
    """
    if not (hasattr(optimizer, "update") and callable(optimizer.update)):
        _checks.fail(
            "truncated_bptt_step",
            "optimizer must have optax's update(grads, state, params) method (e.g. "
            f"optax.adam(1e-3)); got {_checks.describe(optimizer)}.",
            TypeError,
        )
    jit = _checks.flag(jit, "jit", "truncated_bptt_step")
    value_and_grad = _truncated(loss_fn, has_aux, "truncated_bptt_step")

    def step(params, opt_state, carry, chunk):
        (loss, rest), grads = value_and_grad(params, carry, chunk)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = _apply_updates(params, updates)
        if has_aux:
            new_carry, aux = rest
            return params, opt_state, new_carry, loss, aux
        return params, opt_state, rest, loss

    return jax.jit(step) if jit else step


def _apply_updates(params, updates):
    """``optax.apply_updates``, without importing optax into the core."""
    return jax.tree.map(
        lambda p, u: (
            None if p is None else jnp.asarray(p + u).astype(jnp.asarray(p).dtype)
        ),
        params,
        updates,
        is_leaf=lambda x: x is None,
    )
