"""A module call in Flax's vocabulary, run by the pure core: the call's
arguments (:class:`RNNCall`), its options resolved against the module
(:func:`resolve`), its inputs and valid steps checked under the caller's
names (:func:`sequence`), and the RNN, Bidirectional and Stacked runs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

import seqmask._checks as _checks
from seqmask import _layer
from seqmask import layers as _layers
from seqmask import masks as _masks
from seqmask._modules._cells import EMBED_HINT, Carry, Params
from seqmask.cells import Cell


class RNNCall(NamedTuple):
    """The arguments of one call of a recurrent module that are not options
    (Flax's ``initial_carry`` and ``seq_lengths``, seqmask's ``mask``,
    ``resets`` and ``skip_padding``)."""

    initial_carry: Carry | None = None
    seq_lengths: Any = None
    mask: Any = None
    resets: Any = None
    skip_padding: bool | int = False


class CallOptions(NamedTuple):
    """The options of one call, resolved against the module's attributes."""

    time_major: bool
    return_carry: bool
    reverse: bool
    keep_order: bool


def resolve(
    module,
    where: str,
    time_major: bool | None,
    return_carry: bool | None,
    reverse: bool | None = False,
    keep_order: bool | None = False,
) -> CallOptions:
    """The options of one call: each one given (not None), else the module's
    (``Bidirectional`` has no ``reverse`` or ``keep_order``: False)."""
    given = (time_major, return_carry, reverse, keep_order)
    return CallOptions(
        *(
            _checks.flag(getattr(module, name) if value is None else value, name, where)
            for name, value in zip(CallOptions._fields, given, strict=True)
        )
    )


class Steps(NamedTuple):
    """A module call's inputs and valid steps, checked."""

    inputs: jax.Array
    mask: jax.Array | None  # boolean, [*batch, time] or [time, *batch]
    resets: jax.Array | None  # likewise
    step: tuple[int, ...]  # the shape of one step: [*batch, *features]
    time_major: bool


def sequence(
    inputs, call: RNNCall, time_major: bool, where: str, feature_axes: int = 1
) -> Steps:
    """``inputs`` and the valid steps of a module call, checked under the
    names the caller used, ``seq_lengths`` turned into a mask.

    The batch shape comes from ``inputs`` and the cell's number of feature
    axes, so ``seq_lengths``, ``mask`` and ``resets`` are checked against
    the shapes the caller meant. Lengths outside ``[0, time]`` raise
    ``ValueError`` when concrete and register a checkify check when traced.
    """
    inputs = _checks.floating_array(inputs, "inputs", where, hint=EMBED_HINT)
    layout = "[time, *batch, *features]" if time_major else "[*batch, time, *features]"
    _checks.min_rank(inputs, feature_axes + 1, "inputs", where, layout)
    shape = tuple(inputs.shape)
    time_axis = 0 if time_major else len(shape) - feature_axes - 1
    batch = shape[:time_axis] + shape[time_axis + 1 : len(shape) - feature_axes]
    steps = (shape[0], *batch) if time_major else (*batch, shape[time_axis])
    if call.seq_lengths is not None and call.mask is not None:
        _checks.fail(
            where,
            "give seq_lengths or mask, not both (seq_lengths is the right-padded "
            "special case of a mask).",
        )
    steps_layout = "[time, *batch]" if time_major else "[*batch, time]"
    checked = {}
    for name, value, check, want, axes in (
        ("seq_lengths", call.seq_lengths, _checks.integer_array, batch, "[*batch]"),
        ("mask", call.mask, _checks.bool_array, steps, steps_layout),
        ("resets", call.resets, _checks.bool_array, steps, steps_layout),
    ):
        if value is not None:
            value = check(value, name, where)
            if tuple(value.shape) != want:
                _checks.fail(
                    where,
                    f"{name} must have shape {axes} = {want} for inputs of shape "
                    f"{shape} ({layout}); got {tuple(value.shape)}.",
                )
        checked[name] = value
    lengths, mask = checked["seq_lengths"], checked["mask"]
    if lengths is not None:
        _checks.lengths(lengths, shape[time_axis], "seq_lengths", where)
        mask = _masks.lengths_to_mask(
            lengths, shape[time_axis], time_major=time_major, clip=True
        )
    step = shape[:time_axis] + shape[time_axis + 1 :]
    return Steps(inputs, mask, checked["resets"], step, time_major)


def concatenate(forward, backward):
    """Flax's default ``merge_fn``: the two directions side by side."""
    return jnp.concatenate([forward, backward], axis=-1)


def run_rnn(
    cell: Cell,
    params: Params,
    seq: Steps,
    call: RNNCall,
    options: CallOptions,
    where: str,
    *,
    unroll: int = 1,
    feature_axes: int = 1,
):
    """Run ``cell`` over ``seq`` with the meaning of Flax's ``RNN.__call__``.

    Flax's semantics wherever Flax is right; seqmask's where it is not: the
    carry of a row is its carry after its last valid step for any mask (its
    initial carry for a row without one), and outputs at padded steps are
    zero. With ``reverse`` the valid steps are visited last to first; the
    outputs come back in processing order (Flax's "flipped within the
    length") unless ``keep_order``, which leaves them at their positions.
    Every error names ``where``.

    Args:
      cell, params: the pure cell and its parameters.
      seq: the call's inputs and valid steps (see :func:`sequence`).
      call: the call's ``initial_carry`` and ``skip_padding``, as
        :func:`seqmask.rnn`.
      options: the call's resolved options.
      where: the public name for error messages.
      unroll: as :func:`seqmask.rnn`.
      feature_axes: the cell's number of feature axes (Flax's
        ``num_feature_axes``); several are flattened into one for the core
        and unflattened by the cell.

    Returns:
      ``ys``, or ``(carry, ys)`` with ``return_carry``.
    """
    xs = seq.inputs
    if feature_axes > 1:
        xs = xs.reshape(*xs.shape[:-feature_axes], -1)
    carry, ys = _layer.rnn(
        cell,
        params,
        (xs, seq.mask, None, seq.resets, options.time_major),
        (call.initial_carry, None),
        options.reverse,
        _layer.options(unroll, False, None, where, call.skip_padding),
        where,
    )
    if options.reverse and not options.keep_order:
        ys = jax.tree.map(
            lambda y: _processing_order(y, seq.mask, options.time_major, feature_axes),
            ys,
        )
    return (carry, ys) if options.return_carry else ys


def _processing_order(ys, mask, time_major: bool, feature_axes: int):
    """Outputs of a reverse run in the order the steps were visited."""
    if mask is None:
        axis = 0 if time_major else jnp.ndim(ys) - feature_axes - 1
        return jnp.flip(ys, axis=axis)
    return _masks.reverse_valid_steps(ys, mask, time_major=time_major)


def run_bidirectional(
    module,
    directions: Sequence[Callable],
    inputs,
    call: RNNCall,
    options: CallOptions,
    where: str,
    feature_axes: int = 1,
):
    """Flax's ``Bidirectional.__call__`` over two RNN calls.

    The ``directions`` take ``(inputs, **arguments)`` like an RNN module's
    ``__call__``; ``module`` gives ``merge_fn``. The backward direction runs
    with ``reverse=True, keep_order=True``: its output for step ``t`` sits at
    position ``t``. With ``resets`` (several sequences packed into a row) the
    backward direction resets where each sequence ends, as in
    :func:`seqmask.bidirectional`, so it meets every sequence at its last
    step with a fresh carry.
    """
    merge_fn = _checks.function(
        module.merge_fn, "merge_fn", where, "(forward_ys, backward_ys) -> ys"
    )
    carries = call.initial_carry
    if carries is None:
        carries = (None, None)
    elif not (isinstance(carries, (tuple, list)) and len(carries) == 2):
        _checks.fail(
            where,
            "initial_carry must be a pair (forward_carry, backward_carry) or None; "
            f"got {_checks.describe(carries)}.",
            TypeError,
        )
    seq = sequence(inputs, call, options.time_major, where, feature_axes)
    backward_resets = _segment_ends(seq.resets, options.time_major)
    results = [
        rnn(
            seq.inputs,
            initial_carry=carry,
            mask=seq.mask,
            resets=resets,
            return_carry=True,
            time_major=options.time_major,
            skip_padding=call.skip_padding,
            **direction,
        )
        for rnn, carry, resets, direction in zip(
            directions,
            carries,
            (seq.resets, backward_resets),
            ({"reverse": False}, {"reverse": True, "keep_order": True}),
            strict=True,
        )
    ]
    (forward_carry, forward_ys), (backward_carry, backward_ys) = results
    ys = jax.tree.map(merge_fn, forward_ys, backward_ys)
    return ((forward_carry, backward_carry), ys) if options.return_carry else ys


def _segment_ends(resets, time_major: bool):
    """The backward direction's resets, in the layout of ``resets``."""
    if resets is None:
        return None
    time_first = resets if time_major else jnp.moveaxis(resets, -1, 0)
    ends = jnp.asarray(_layer.segment_ends(time_first))
    return ends if time_major else jnp.moveaxis(ends, 0, -1)


class StackedOptions(NamedTuple):
    """The layer options of a ``Stacked`` module, as :func:`seqmask.stacked`."""

    bidirectional: bool
    merge: str
    dropout_rate: float
    residual: bool


def stacked_options(
    where: str, bidirectional, merge, dropout_rate, residual
) -> StackedOptions:
    """A ``Stacked`` module's layer options, checked under its name."""
    _checks.hyperparameter(
        dropout_rate, "dropout_rate", where, low=0, high=1, high_open=True
    )
    return StackedOptions(
        _checks.flag(bidirectional, "bidirectional", where),
        _checks.one_of(merge, _layers.MERGES[:2], "merge", where),
        dropout_rate,
        _checks.flag(residual, "residual", where),
    )


def run_stacked(
    cells: Sequence[Cell],
    params,
    seq: Steps,
    call: RNNCall,
    options: StackedOptions,
    dropout_key,
):
    """:func:`seqmask.stacked` over ``seq`` with a ``Stacked`` module's
    cells, layer options and parameters; ``call.initial_carry`` holds the
    per-layer carries."""
    return _layers.stacked(
        list(cells),
        params,
        seq.inputs,
        mask=seq.mask,
        initial_carries=call.initial_carry,
        resets=seq.resets,
        dropout_key=dropout_key,
        time_major=seq.time_major,
        skip_padding=call.skip_padding,
        **options._asdict(),
    )
