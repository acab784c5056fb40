"""One cell over a padded batch: the machinery behind the recurrent layers.

:func:`seqmask.rnn`, :func:`seqmask.bidirectional`, :func:`seqmask.stacked`
and :func:`seqmask.carry.rnn_with_carries` share it. A layer call
:func:`prepare` s its sequence once (checks, mask from ``mask`` or
``lengths``, time-major layout, padded inputs zeroed) and :func:`run` s a
cell over it, once or once per direction. :func:`run` checks the cell's
parameters and carries, then scans: a cell that declares a linear
recurrence runs as one linear scan over its projected inputs, any other
cell step by step (its input projection hoisted out of the loop or not).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

import seqmask._checks as _checks
from seqmask import _scanning, _sharding, _skipping
from seqmask._masking import zero_padding
from seqmask.cells import Cell
from seqmask.masks import lengths_to_mask

Params = Any
Carry = Any


class Prepared(NamedTuple):
    """A checked sequence, time-major, zero at padded steps."""

    xs: jax.Array  # [time, *batch, features]
    mask: jax.Array | None  # [time, *batch]
    resets: jax.Array | None  # [time, *batch]
    batch_shape: tuple[int, ...]
    time_major: bool  # the caller's layout, which outputs return to

    def restore(self, ys):
        """Outputs ``[time, *batch, ...]`` in the caller's layout."""
        if self.time_major:
            return ys
        n_batch = len(self.batch_shape)
        return jax.tree.map(lambda y: jnp.moveaxis(y, 0, n_batch), ys)


class Options(NamedTuple):
    """How the time loop runs (checked): see :func:`seqmask.rnn`."""

    unroll: int | bool = 1
    remat: int | bool = False
    hoist: bool | None = None
    skip_padding: int | bool = False


# About the chunk length of ``skip_padding=True``: short enough that a batch
# whose longest row covers a quarter of the padded axis skips most of it at
# the lengths users pad to (64 and up); longer chunks skip less, shorter ones
# make more, shorter loops (benchmarks/README.md).
SKIP_CHUNK = 16


def check_cell(cell, where: str, name: str = "cell") -> Cell:
    return _checks.instance(
        cell,
        Cell,
        name,
        where,
        expected="a seqmask.cells.Cell (e.g. seqmask.cells.lstm(128))",
    )


def options(
    unroll, remat, hoist, where: str, skip_padding: bool | int = False
) -> Options:
    return Options(
        unroll=_checks.flag_or_int(unroll, "unroll", where),
        remat=_checks.flag_or_int(remat, "remat", where),
        hoist=None if hoist is None else _checks.flag(hoist, "hoist", where),
        skip_padding=_checks.flag_or_int(skip_padding, "skip_padding", where),
    )


def prepare(xs, mask, lengths, resets, time_major, where: str) -> Prepared:
    """Check a layer's sequence and bring it to the layout the scans use.

    The batch shape and the time axis come from ``xs``; ``mask``,
    ``lengths`` and ``resets`` must fit them, and a message about them says
    the shape that ``xs`` asks for.
    """
    time_major = _checks.flag(time_major, "time_major", where)
    xs = _checks.floating_array(
        xs, "xs", where, hint=" Embed integer tokens first (e.g. a lookup table)."
    )
    layout_name = "[time, *batch]" if time_major else "[*batch, time]"
    _checks.min_rank(xs, 2, "xs", where, f"{layout_name[:-1]}, features]")
    batch_shape = tuple(xs.shape[1:-1] if time_major else xs.shape[:-2])
    time = xs.shape[0 if time_major else -2]
    layout = (time, *batch_shape) if time_major else (*batch_shape, time)
    if mask is not None and lengths is not None:
        _checks.fail(where, "give mask or lengths, not both.")
    if lengths is not None:
        mask = _mask_from_lengths(lengths, xs.shape, batch_shape, time_major, where)
    elif mask is not None:
        mask = _flags(mask, "mask", layout, layout_name, xs.shape, where)
    if resets is not None:
        resets = _flags(resets, "resets", layout, layout_name, xs.shape, where)
    if not time_major:
        n_batch = len(batch_shape)
        xs = jnp.moveaxis(xs, n_batch, 0)
        mask = None if mask is None else jnp.moveaxis(mask, -1, 0)
        resets = None if resets is None else jnp.moveaxis(resets, -1, 0)
    if mask is not None:
        # Select before the input projection: NaN at a padded step would
        # otherwise reach the kernel's gradient as NaN * 0. One select over
        # the sequence, so the scan skips its per-step input select.
        xs = zero_padding(mask, xs)
    return Prepared(xs, mask, resets, batch_shape, time_major)


def _flags(value, name: str, layout, layout_name: str, xs_shape, where: str):
    """A boolean ``mask`` or ``resets`` of the shape ``xs`` asks for."""
    flags = _checks.bool_array(value, name, where)
    if tuple(flags.shape) != tuple(layout):
        _checks.fail(
            where,
            f"{name} must have shape {tuple(layout)} ({layout_name} of xs, whose "
            f"shape is {tuple(xs_shape)}); got {tuple(flags.shape)}.",
        )
    return flags


def _mask_from_lengths(lengths, xs_shape, batch_shape, time_major: bool, where: str):
    """The mask of ``lengths`` ``[*batch]`` (the batch shape of ``xs``)."""
    lengths = _checks.integer_array(lengths, "lengths", where)
    if tuple(lengths.shape) != batch_shape:
        layout = "time, *batch" if time_major else "*batch, time"
        hint = ""
        if not time_major and tuple(lengths.shape) == tuple(xs_shape[1:-1]):
            hint = " If time is the leading axis of xs, pass time_major=True."
        _checks.fail(
            where,
            f"lengths must have shape {batch_shape} ([*batch] of xs, whose shape "
            f"{tuple(xs_shape)} is [{layout}, features]); got "
            f"{tuple(lengths.shape)}.{hint}",
        )
    time = int(xs_shape[0 if time_major else -2])
    _checks.lengths(lengths, time, "lengths", where)
    return lengths_to_mask(lengths, time, time_major=time_major, clip=True)


def segment_ends(resets):
    """Where the backward direction of a packed row resets: ``[time, *batch]``.

    ``resets[t]`` starts a new sequence at step ``t``, so the sequence
    before it ends at step ``t - 1`` (valid or padded): a reverse scan resets
    there, and meets every sequence from its last step with a fresh carry.
    The last sequence of a row starts the reverse scan, from its initial
    carry. None stays None.
    """
    if resets is None:
        return None
    return jnp.concatenate([resets[1:], jnp.zeros_like(resets[:1])])


def rnn(
    cell,
    params,
    given: tuple,
    carries: tuple,
    reverse,
    options: Options,
    where: str,
):
    """:func:`seqmask.rnn` (``options`` checked), for the public ``where``.

    ``given`` is ``(xs, mask, lengths, resets, time_major)`` and ``carries``
    ``(initial_carry, reset_to)``, as the caller was given them.
    """
    check_cell(cell, where)
    reverse = _checks.flag(reverse, "reverse", where)
    xs, mask, lengths, resets, time_major = given
    seq = prepare(xs, mask, lengths, resets, time_major, where)
    initial_carry, reset_to = carries
    final_carry, ys = run(
        cell,
        params,
        seq,
        initial_carry=initial_carry,
        reset_to=reset_to,
        reverse=reverse,
        options=options,
        where=where,
    )
    return final_carry, seq.restore(ys)


def run(
    cell: Cell,
    params,
    seq: Prepared,
    *,
    initial_carry,
    options: Options,
    where: str,
    reset_to=None,
    reverse: bool = False,
    name: str = "params",
    carry_name: str = "initial_carry",
):
    """``cell`` over a prepared sequence: ``(final_carry, ys)``, ys time-major.

    ``name`` and ``carry_name`` are what errors call the params and the
    initial carry (``params[1]['backward']`` in a stack, say)."""
    if cell.check_params is not None:
        cell.check_params(params, where, seq.xs.shape[-1], name)
    default = _own_carry(cell, params, seq.batch_shape, initial_carry)
    carry = _fit(initial_carry, default, carry_name, where)
    if reset_to is not None or seq.resets is not None:
        reset_to = _fit(reset_to, default, "reset_to", where)
    if seq.resets is None:
        reset_to = None  # checked all the same: a wrong one is a mistake
    # Under explicit mesh axes a carry built here (zeros, a broadcast learned
    # state) is replicated, and a replicated scan carry all-gathers the
    # batch at every step: lay carries out like the batch of the inputs.
    batch_axes = tuple(range(1, 1 + len(seq.batch_shape)))
    carry = _sharding.shard_like_batch(carry, seq.xs, batch_axes)
    if reset_to is not None:
        reset_to = _sharding.shard_like_batch(reset_to, seq.xs, batch_axes)
    if cell.linear is not None:
        return _run_linear(cell, params, seq, carry, reset_to, reverse, where)
    return _run_steps(cell, params, seq, carry, reset_to, reverse, options, where)


def _own_carry(cell: Cell, params, batch_shape, given):
    """The cell's initial carry; for a cell without one of its own (a Flax
    cell without ``initialize_carry``, whose ``initial_carry`` raises
    ``NotImplementedError``), the given carry stands in for it, as in Flax."""
    try:
        return cell.initial_carry(params, batch_shape)
    except NotImplementedError:
        if given is None:
            raise
        return given


def _fit(given, default, name: str, where: str):
    """``given`` checked against the cell's carry and broadcast to it."""
    if given is None:
        return default
    return _checks.broadcast_tree_like(
        given,
        default,
        name,
        where,
        expected_from="the cell's carry for this batch",
        hint=" Leaves must have the carry's dtype and broadcast to its shape "
        "([*batch, ...]).",
        dtype_error=TypeError,
    )


def _run_linear(cell: Cell, params, seq: Prepared, carry, reset_to, reverse, where):
    """A cell that declares ``h = a * h + b``: one linear scan over its
    projected inputs, in the dtype the projection accumulates in."""
    linear, project = cell.linear, cell.project_inputs
    assert linear is not None
    if project is None or cell.apply_projected is None or not _is_array(carry):
        _checks.fail(
            where,
            f"the cell {cell.name!r} declares a linear recurrence, which needs "
            "project_inputs, apply_projected and a carry that is one array.",
            TypeError,
        )
    projected = project(params, seq.xs)
    step = jax.ShapeDtypeStruct(projected.shape[1:], projected.dtype)
    _, y = jax.eval_shape(cell.apply_projected, params, carry, step)
    acc = projected.dtype
    init = carry.astype(acc)
    reset_to = init if reset_to is None else reset_to.astype(acc)
    if linear.log_coefficients is not None:
        log_a, log_b = linear.log_coefficients(params, projected)
        final, hs = _scanning.log_linear(
            log_a, log_b, seq.mask, seq.resets, init, reset_to, reverse=reverse
        )
    else:
        a, b = linear.coefficients(params, projected)
        final, hs = _scanning.linear(
            a,
            b,
            seq.mask,
            seq.resets,
            init,
            reset_to,
            reverse=reverse,
            method=linear.method,
        )
    return final.astype(carry.dtype), hs.astype(y.dtype)


def _is_array(x) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype")


def _run_steps(cell, params, seq: Prepared, carry, reset_to, reverse, options, where):
    """The step-by-step scan: the input projection hoisted or per step, the
    steps checkpointed or not, chunks of padding skipped or not."""
    hoist = options.hoist
    if hoist is None:
        # Per step only on a single CPU device: with several devices the
        # per-step projection accumulates the kernel gradient inside the loop,
        # where XLA gathers the sharded batch at every step.
        hoist = jax.default_backend() != "cpu" or jax.device_count() > 1
    project, apply_projected = cell.project_inputs, cell.apply_projected
    if project is None or apply_projected is None:
        hoist = False
    steps, remat = seq.xs.shape[0], options.remat
    skip = _skip_chunk(options, seq)
    remat_chunk = 0 if remat is True or remat is False else min(remat, steps)

    def step(c, x):
        if hoist and apply_projected is not None:
            return apply_projected(params, c, x)
        return cell.apply(params, c, x)

    if remat is True:
        step = jax.checkpoint(step)

    if skip and not remat_chunk:
        inputs = seq.xs
        if hoist and project is not None:
            inputs = project(params, inputs)
        # (A step with an integer carry, input or output runs in chunks.)
        if _skipping.applies(step, carry, inputs):
            return _skipping.run(
                step,
                carry,
                inputs,
                seq.mask,
                seq.resets,
                reset_to,
                chunk=skip,
                reverse=reverse,
                where=where,
            )

    def run(c, parts):
        x, m, r = parts
        if hoist and skip and project is not None:
            # Projected chunk by chunk, so a skipped chunk skips its share.
            x = project(params, x)
        return _scanning.masked(
            step,
            c,
            x,
            m,
            r,
            reset_to,
            pad_value=0,
            length=x.shape[0],
            select_inputs=False,  # prepare zeroed the padded inputs
            reverse=reverse,
            unroll=options.unroll,
            where=where,
        )

    inputs = seq.xs
    if hoist and not skip and project is not None:
        inputs = project(params, seq.xs)
    parts = (inputs, seq.mask, seq.resets)
    auto = options.skip_padding is True and (remat is True or remat is False)
    extra = -steps % skip if auto and skip else 0
    if extra:
        # Padded steps carry the state through: the extra steps change nothing.
        parts = jax.tree.map(
            lambda x: jnp.concatenate([x, jnp.zeros((extra, *x.shape[1:]), x.dtype)]),
            parts,
        )
    run = _nest(run, remat_chunk, skip, reset_to=reset_to, reverse=reverse)
    final_carry, ys = run(carry, parts)
    if extra:
        ys = jax.tree.map(lambda y: y[:steps], ys)
    return final_carry, ys


def _nest(run, remat_chunk: int, skip: int, **scan):
    """``run`` in checkpointed chunks of ``remat_chunk`` steps and in skipped
    chunks of ``skip`` steps (0: none), the longer chunks outside: ``remat``
    as an int, and ``skip_padding`` where :mod:`seqmask._skipping`'s loop
    does not apply (with ``remat`` chunks, or carries that are not floats).

    Skipped chunks are checkpointed too: JAX keeps a chunk's residuals for
    the backward pass in buffers over the whole time axis, which a skipped
    chunk would still fill and the backward pass still read; checkpointed,
    a chunk leaves only its carries and inputs (the weights once, outside
    the loop), and a skipped one costs almost nothing in either pass
    (benchmarks/README.md).
    """
    # (chunk, checkpointed, skipped), from the outer loop to the inner one.
    levels = []
    if remat_chunk and skip == remat_chunk:
        levels = [(skip, True, True)]
    else:
        if remat_chunk:
            levels.append((remat_chunk, True, False))
        if skip:
            levels.append((skip, True, True))
        levels.sort(key=lambda level: -level[0])
    for chunk, checkpoint, skip_empty in reversed(levels):
        run = functools.partial(
            _scanning.chunked,
            run,
            chunk=chunk,
            checkpoint=checkpoint,
            skip_empty=skip_empty,
            **scan,
        )
    return run


def _skip_chunk(options: Options, seq: Prepared) -> int:
    """The length of the chunks that ``skip_padding`` skips; 0 for none.

    ``True`` takes ``remat``'s chunk when it is an int; else it cuts time
    into ``ceil(time / SKIP_CHUNK)`` chunks of equal length (time is then
    padded by fewer steps than there are chunks), so that the loop has one
    body: a shorter last chunk would compile the chunk a second time.
    """
    steps = seq.xs.shape[0]
    if options.skip_padding is False or seq.mask is None or steps == 0:
        return 0
    if options.skip_padding is not True:
        return min(options.skip_padding, steps)
    remat = options.remat
    if remat is not True and remat is not False:
        return min(remat, steps)
    count = -(-steps // SKIP_CHUNK)
    return -(-steps // count)
