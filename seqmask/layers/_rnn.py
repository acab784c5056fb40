"""``rnn``: one cell over a padded batch of sequences."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from seqmask import _sharding
from seqmask.cells import Cell
from seqmask.masks import resolve_mask
from seqmask.scan._masked import _masked_scan

Params = Any
Carry = Any


def rnn(
    cell: Cell,
    params: Params,
    xs,
    *,
    mask=None,
    lengths=None,
    initial_carry: Carry | None = None,
    resets=None,
    reset_to: Carry | None = None,
    reverse: bool = False,
    time_major: bool = False,
    unroll: int | bool = 1,
    remat: bool | int = False,
    hoist: bool | None = None,
) -> tuple[Carry, jax.Array]:
    """Run ``cell`` over a padded batch of sequences.

    At padded steps the carry passes through unchanged and the output is
    zero (see :func:`seqmask.masked_scan`), so the final carry of each row is
    its carry after its last valid step, for any mask.

    Args:
      cell: a :class:`~seqmask.cells.Cell`.
      params: the cell's parameters.
      xs: ``[*batch, time, features]`` (``[time, *batch, features]`` if
        ``time_major``); ``batch`` may be empty.
      mask: boolean ``[*batch, time]`` (``[time, *batch]``), true at valid
        steps. Any pattern: right or left padding, holes, empty rows.
      lengths: alternative to ``mask``: integers ``[*batch]``, right padding.
      initial_carry: the carry to start from (e.g. the final carry of the
        previous chunk); leaves broadcast to ``[*batch, ...]``. Default:
        ``cell.initial_carry(params, batch)`` (the learned one if the cell
        has a learnable initial state).
      resets: boolean in the layout of ``mask``: where true the row's carry is
        reset to ``reset_to`` before that step (a new sequence starts there).
      reset_to: the carry to reset to; default: the cell's initial carry (the
        learned one for :func:`~seqmask.cells.learnable_initial_state`), not
        ``initial_carry``.
      reverse: run from the last valid step to the first; outputs stay at
        their positions.
      time_major: whether time is the leading axis of ``xs``, ``mask`` and
        ``resets`` (and of the outputs).
      unroll: passed to :func:`jax.lax.scan`.
      remat: trade compute for memory in the backward pass. ``True``
        checkpoints each step (only the carries are kept; gate activations
        are recomputed). An int ``K`` splits time into chunks of ``K`` steps
        and checkpoints each chunk: only the carries at chunk boundaries are
        kept, so activation memory is about ``T / K`` carries plus one chunk
        of steps. Values and gradients are unchanged.
      hoist: run the cell's input projection once over the whole sequence
        (one large matmul before the scan) instead of inside every step.
        None chooses. On a single CPU device it projects per step: the
        benchmarks (``bench_rnn.py``, ``bench_rnn_variants.py``) measured
        that 1.2-1.85x faster forward+backward than hoisting, for LSTM and
        GRU layers at every shape they cover (the hoisted ``[T, B, 4H]``
        projection and its cotangent are large buffers; per step, the loop
        reuses small ones). It hoists on accelerators (cuDNN's strategy;
        ``benchmarks/gpu.sh`` measures both) and whenever there are several
        devices, so that with a sharded batch the kernel gradient is one
        matmul after the loop and the loop body needs no collective. Values
        are the same either way.

    Returns:
      ``(final_carry, ys)``: the carry after each row's last valid step
      (leaves ``[*batch, ...]``) and the outputs ``[*batch, time, out]``
      (``[time, *batch, out]`` if ``time_major``), zero at padded steps.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import seqmask
      >>> cell = seqmask.cells.gru(8)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> xs = jnp.ones((2, 5, 3))
      >>> h, ys = seqmask.rnn(cell, params, xs, lengths=jnp.array([5, 2]))
      >>> ys.shape, h.shape
      ((2, 5, 8), (2, 8))
      >>> h_short, _ = seqmask.rnn(cell, params, xs[1:, :2])
      >>> bool(jnp.allclose(h[1], h_short[0]))
      True
    """
    _check_cell(cell, "rnn")
    xs = jnp.asarray(xs)
    if xs.ndim < 2:
        raise ValueError(
            "rnn: xs must be [*batch, time, features] (at least 2 axes); got shape "
            f"{tuple(xs.shape)}."
        )
    batch_shape = tuple(xs.shape[1:-1] if time_major else xs.shape[:-2])
    mask = resolve_mask(xs, mask=mask, lengths=lengths, time_major=time_major)
    layout = _layout(batch_shape, xs.shape[0 if time_major else -2], time_major)
    if mask is not None and mask.shape != layout:
        raise ValueError(
            f"rnn: mask must have shape {layout} ({_layout_name(time_major)}); got "
            f"{tuple(mask.shape)}."
        )
    if resets is not None:
        resets = jnp.asarray(resets)
        if resets.dtype != jnp.bool_ or resets.shape != layout:
            raise ValueError(
                f"rnn: resets must be a boolean array of shape {layout} "
                f"({_layout_name(time_major)}); got {resets.dtype}{list(resets.shape)}."
            )

    n_batch = len(batch_shape)
    if time_major:
        xs_tm, mask_tm, resets_tm = xs, mask, resets
    else:
        xs_tm = jnp.moveaxis(xs, n_batch, 0)
        mask_tm = None if mask is None else jnp.moveaxis(mask, -1, 0)
        resets_tm = None if resets is None else jnp.moveaxis(resets, -1, 0)
    if mask_tm is not None:
        # Select before the input projection: NaN at a padded step would
        # otherwise reach the kernel's gradient as NaN * 0. One select over
        # the sequence, so the scan skips its per-step input select.
        xs_tm = jnp.where(
            jnp.broadcast_to(mask_tm[..., None], xs_tm.shape),
            xs_tm,
            jnp.zeros((), xs_tm.dtype),
        )

    default_carry = cell.initial_carry(params, batch_shape)
    carry = (
        default_carry
        if initial_carry is None
        else _fit_carry(initial_carry, default_carry, "initial_carry")
    )
    if resets_tm is not None:
        reset_to = (
            default_carry
            if reset_to is None
            else _fit_carry(reset_to, default_carry, "reset_to")
        )
    # Under explicit mesh axes a carry built here (zeros, a broadcast learned
    # state) is replicated, and a replicated scan carry all-gathers the
    # batch at every step: lay carries out like the batch of the inputs.
    batch_axes = tuple(range(1, 1 + n_batch))
    carry = _sharding.shard_like_batch(carry, xs_tm, batch_axes)
    if resets_tm is not None:
        reset_to = _sharding.shard_like_batch(reset_to, xs_tm, batch_axes)

    if cell.apply_sequence is not None:
        final_carry, ys = cell.apply_sequence(
            params,
            carry,
            xs_tm,
            mask=mask_tm,
            resets=resets_tm,
            reset_to=reset_to,
            reverse=reverse,
        )
        if not time_major:
            ys = jax.tree.map(lambda y: jnp.moveaxis(y, 0, n_batch), ys)
        return final_carry, ys

    if hoist is None:
        # Per step only on a single CPU device: with several devices the
        # per-step projection accumulates the kernel gradient inside the loop,
        # where XLA gathers the sharded batch at every step.
        hoist = jax.default_backend() != "cpu" or jax.device_count() > 1
    if hoist and cell.project_inputs is not None and cell.apply_projected is not None:
        inputs = cell.project_inputs(params, xs_tm)
        apply_projected = cell.apply_projected

        def step(c, x):
            return apply_projected(params, c, x)

    else:
        inputs = xs_tm

        def step(c, x):
            return cell.apply(params, c, x)

    if isinstance(remat, bool):
        if remat:
            step = jax.checkpoint(step)
        final_carry, ys = _masked_scan(
            step,
            carry,
            inputs,
            mask_tm,
            resets=resets_tm,
            reset_to=reset_to,
            reverse=reverse,
            unroll=unroll,
            select_inputs=False,  # xs_tm is zeroed at padded steps above
        )
    else:
        final_carry, ys = _chunked_scan(
            step,
            carry,
            inputs,
            mask_tm,
            resets_tm,
            reset_to,
            batch_shape=batch_shape,
            reverse=reverse,
            unroll=unroll,
            chunk=_check_chunk(remat),
        )
    if not time_major:
        ys = jax.tree.map(lambda y: jnp.moveaxis(y, 0, n_batch), ys)
    return final_carry, ys


def _check_chunk(remat) -> int:
    if isinstance(remat, (int, np.integer)) and remat > 0:
        return int(remat)
    raise ValueError(
        f"rnn: remat must be a bool or a positive int chunk length; got {remat!r}."
    )


def _chunked_scan(
    step, carry, inputs, mask, resets, reset_to, *, batch_shape, reverse, unroll, chunk
):
    """``masked_scan`` over chunks of ``chunk`` steps, each chunk checkpointed.

    The time axis is padded to a multiple of ``chunk`` with masked-out steps:
    padded steps carry the state through, so the padding changes nothing.
    """
    steps = jax.tree.leaves(inputs)[0].shape[0]
    if mask is None:
        mask = jnp.ones((steps, *batch_shape), jnp.bool_)
    chunks = -(-steps // chunk)
    pad = chunks * chunk - steps

    def split(x):
        x = jnp.concatenate([x, jnp.zeros((pad, *x.shape[1:]), x.dtype)]) if pad else x
        return x.reshape(chunks, chunk, *x.shape[1:])

    chunked = jax.tree.map(split, (inputs, mask, resets))

    @jax.checkpoint
    def run_chunk(c, chunk_inputs):
        x, m, r = chunk_inputs
        return _masked_scan(
            step,
            c,
            x,
            m,
            resets=r,
            reset_to=reset_to,
            reverse=reverse,
            unroll=unroll,
            select_inputs=False,  # rnn zeroed the inputs at padded steps
        )

    final_carry, ys = jax.lax.scan(run_chunk, carry, chunked, reverse=reverse)
    ys = jax.tree.map(lambda y: y.reshape(chunks * chunk, *y.shape[2:])[:steps], ys)
    return final_carry, ys


def _check_cell(cell, name: str) -> None:
    if not isinstance(cell, Cell):
        raise TypeError(
            f"{name}: cell must be a seqmask.cells.Cell (e.g. "
            f"seqmask.cells.lstm(128)); got {type(cell).__name__}."
        )


def _layout(batch_shape, time, time_major: bool) -> tuple[int, ...]:
    return (int(time), *batch_shape) if time_major else (*batch_shape, int(time))


def _layout_name(time_major: bool) -> str:
    return "[time, *batch]" if time_major else "[*batch, time]"


def _fit_carry(given, expected, name: str):
    """Check ``given`` against the cell's carry and broadcast it to its shapes."""
    given_def, expected_def = jax.tree.structure(given), jax.tree.structure(expected)
    if given_def != expected_def:
        raise ValueError(
            f"rnn: {name} must have the structure of the cell's carry "
            f"{expected_def}; got {given_def}."
        )
    problems = []
    fitted = []
    for (path, leaf), want in zip(
        jax.tree_util.tree_leaves_with_path(given),
        jax.tree.leaves(expected),
        strict=True,
    ):
        leaf_dtype = jnp.result_type(leaf)
        shape = tuple(np.shape(leaf))
        try:
            broadcastable = np.broadcast_shapes(shape, want.shape) == want.shape
        except ValueError:
            broadcastable = False
        if leaf_dtype != want.dtype or not broadcastable:
            problems.append(
                f"  {name}{jax.tree_util.keystr(path)}: got {leaf_dtype}{list(shape)}, "
                f"expected {want.dtype}{list(want.shape)}"
            )
        else:
            fitted.append(jnp.broadcast_to(leaf, want.shape))
    if problems:
        raise ValueError(
            f"rnn: {name} does not fit the cell's carry for this batch:\n"
            + "\n".join(problems)
            + "\nLeaves must have the carry's dtype and broadcast to its shape "
            "([*batch, ...])."
        )
    return jax.tree.unflatten(expected_def, fitted)
