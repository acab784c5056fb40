"""``rnn``: one cell over a padded batch of sequences."""

from __future__ import annotations

from typing import Any

import jax

from seqmask import _layer
from seqmask.cells import Cell

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
    skip_padding: bool | int = False,
) -> tuple[Carry, jax.Array]:
    """Run ``cell`` over a padded batch of sequences.

    At padded steps the carry passes through unchanged and the output is
    zero (see :func:`seqmask.masked_scan`), so the final carry of each row is
    its carry after its last valid step, for any mask (a reset flagged on a
    later, padded step still applies: resets act at padded steps too). A cell
    with a linear recurrence (:class:`~seqmask.cells.LinearRecurrence`, e.g.
    :func:`~seqmask.cells.min_gru`) runs as one :func:`seqmask.linear_scan`
    with the same semantics (``unroll``, ``remat`` and ``hoist`` do not
    apply to it).

    Args:
      cell: a :class:`~seqmask.cells.Cell`.
      params: the cell's parameters (checked against the cell).
      xs: floating ``[*batch, time, features]`` (``[time, *batch,
        features]`` if ``time_major``); ``batch`` may be empty.
      mask: boolean ``[*batch, time]`` (``[time, *batch]``), true at valid
        steps. Any pattern: right or left padding, holes, empty rows.
      lengths: alternative to ``mask``: integers ``[*batch]`` in ``[0, time]``
        (right padding). Concrete lengths outside raise ``ValueError``;
        traced ones register a ``checkify`` check.
      initial_carry: the carry to start from (e.g. the final carry of the
        previous chunk); leaves broadcast to ``[*batch, ...]``. Default:
        ``cell.initial_carry(params, batch)`` (the learned one if the cell
        has a learnable initial state). A cell without an initial carry of
        its own (a Flax cell without ``initialize_carry``, whose
        ``initial_carry`` raises ``NotImplementedError``) needs this one,
        with every leaf batched (it is not broadcast), and it then stands
        in for the cell's own, also for ``reset_to``.
      resets: boolean in the layout of ``mask``: where true the row's carry is
        reset to ``reset_to`` before that step (a new sequence starts there).
      reset_to: the carry to reset to; default: the cell's initial carry (the
        learned one for :func:`~seqmask.cells.learnable_initial_state`), not
        ``initial_carry``.
      reverse: run from the last valid step to the first; outputs stay at
        their positions.
      time_major: whether time is the leading axis of ``xs``, ``mask`` and
        ``resets`` (and of the outputs). Shapes catch a wrong setting only
        where the batch and time sizes differ.
      unroll: passed to :func:`jax.lax.scan` (a bool or a positive int).
      remat: trade compute for memory in the backward pass. ``True``
        checkpoints each step (only the carries are kept; gate activations
        are recomputed). An int ``K`` splits time into chunks of ``K`` steps
        and checkpoints each chunk: only the carries at chunk boundaries are
        kept, so activation memory is about ``T / K`` carries plus one chunk
        of steps. Values and gradients are unchanged.
      hoist: run the cell's input projection once over the whole sequence
        (one large matmul before the scan) instead of inside every step.
        None chooses: per step on a single CPU device (the hoisted
        ``[T, B, 4H]`` projection and its cotangent are large buffers),
        hoisted on accelerators (cuDNN's strategy) and with several devices
        (with a sharded batch the kernel gradient is then one matmul after
        the loop, with no collective in it). ``benchmarks/README.md``
        reports both. Values are the same either way.
      skip_padding: skip the chunks of time steps where every row is
        padding, forward and backward: ``K`` (an int) in chunks of ``K``
        steps, ``True`` in chunks it picks, ``False`` (the default) scans
        every step. Values and gradients are unchanged, but only reverse
        mode differentiates it (``jax.jvp`` raises unless ``remat`` is an
        int); see :mod:`seqmask.layers` (and ``benchmarks/README.md``).

    Returns:
      ``(final_carry, ys)``: the carry after each row's last valid step
      (leaves ``[*batch, ...]``) and the outputs ``[*batch, time, out]``
      (``[time, *batch, out]`` if ``time_major``), zero at padded steps.

    Raises:
      TypeError: for a cell that is not a :class:`~seqmask.cells.Cell`,
        non-floating inputs, a non-boolean ``mask``/``resets``, non-integer
        ``lengths``, carries of another dtype, or a cell whose step returns
        a carry unlike the one it was given.
      ValueError: for shapes that do not fit (inputs, mask, lengths, resets,
        parameters, carries), parameters of another cell (their keys or
        shapes), lengths outside ``[0, time]``, or option values out of
        range.

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
      >>> _, ys_skipping = seqmask.rnn(cell, params, xs, lengths=jnp.array([3, 2]),
      ...                              skip_padding=2)   # step 4's chunk: skipped
      >>> _, ys_scanning = seqmask.rnn(cell, params, xs, lengths=jnp.array([3, 2]))
      >>> bool(jnp.allclose(ys_skipping, ys_scanning))
      True
      >>> seqmask.rnn(cell, params, xs, lengths=jnp.array([5, 6]))
      Traceback (most recent call last):
      ...
      ValueError: rnn: lengths must lie in [0, 5] (the size of the time axis); rows [1] have lengths [6].
    """  # noqa: E501
    given = (xs, mask, lengths, resets, time_major)
    options = _layer.options(unroll, remat, hoist, "rnn", skip_padding)
    return _layer.rnn(
        cell, params, given, (initial_carry, reset_to), reverse, options, "rnn"
    )
