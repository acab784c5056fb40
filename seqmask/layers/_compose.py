"""Layers built from ``rnn``: ``bidirectional`` and ``stacked``, and their inits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

import seqmask._checks as _checks
from seqmask import _layer
from seqmask.cells import Cell, output_size

Params = Any
Carry = Any

MERGES: tuple[str, ...] = ("concat", "sum", "none")
"""The valid ``merge`` values of :func:`bidirectional` (``stacked`` takes the
first two)."""


def bidirectional(
    cell: Cell,
    params: Params,
    xs,
    *,
    mask=None,
    lengths=None,
    initial_carry: tuple[Carry, Carry] | None = None,
    resets=None,
    merge: str = "concat",
    backward_cell: Cell | None = None,
    time_major: bool = False,
    unroll: int | bool = 1,
    remat: bool | int = False,
    hoist: bool | None = None,
    skip_padding: bool | int = False,
) -> tuple[tuple[Carry, Carry], Any]:
    """A forward and a backward :func:`rnn` over the same masked sequences.

    The backward direction visits exactly each row's valid steps, last to
    first, whatever the mask (left padding and holes included); no flipping.
    Its output at step ``t`` sits at position ``t``, next to the forward
    output for the same step. The mask is resolved, and the padded inputs
    zeroed, once for both directions.

    Args:
      cell: the forward cell (and the backward one unless ``backward_cell``).
      params: ``{"forward": ..., "backward": ...}`` (see
        :func:`init_bidirectional`).
      xs, mask, lengths, time_major, unroll, remat, hoist, skip_padding: as
        :func:`rnn`.
      initial_carry: ``(forward_carry, backward_carry)`` or None.
      resets: boolean in the layout of ``mask``, true where a new sequence
        starts (e.g. :attr:`seqmask.data.Packing.resets`, several sequences
        packed into a row). The forward direction resets there; the backward
        direction resets at the step before, where the previous sequence
        ends (valid or not), so it meets each sequence at its last step with
        a fresh carry. Each direction resets to its cell's initial carry
        (the learned one for :func:`~seqmask.cells.learnable_initial_state`):
        a packed row gives every sequence what it gives alone.
      merge: one of :data:`MERGES`: ``"concat"`` (features ``[fwd, bwd]``),
        ``"sum"``, or ``"none"`` (return the pair ``(ys_forward,
        ys_backward)``).
      backward_cell: a different cell for the backward direction.

    Returns:
      ``((forward_carry, backward_carry), ys)``. The backward carry is the
      state after the *first* valid step of each row (with ``resets``: of
      the row's first sequence).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import seqmask
      >>> cell = seqmask.cells.lstm(4)
      >>> params = seqmask.init_bidirectional(jax.random.key(0), cell, 3)
      >>> mask = jnp.array([[False, True, True], [True, True, True]])
      >>> (fwd, bwd), ys = seqmask.bidirectional(cell, params, jnp.ones((2, 3, 3)),
      ...                                        mask=mask)
      >>> ys.shape
      (2, 3, 8)
    """
    where = "bidirectional"
    options = _layer.options(unroll, remat, hoist, where, skip_padding)
    seq = _layer.prepare(xs, mask, lengths, resets, time_major, where)
    carries, ys = _bidirectional(
        cell, backward_cell, params, seq, initial_carry, merge, options, where
    )
    return carries, seq.restore(ys)


def _bidirectional(
    cell,
    backward_cell,
    params,
    seq,
    initial_carry,
    merge,
    options,
    where,
    name="params",
    carry_name="initial_carry",
):
    """Both directions over a prepared sequence; outputs time-major."""
    _layer.check_cell(cell, where)
    backward_cell = cell if backward_cell is None else backward_cell
    _layer.check_cell(backward_cell, where, "backward_cell")
    _checks.one_of(merge, MERGES, "merge", where)
    _checks.mapping_with_keys(
        params,
        ("forward", "backward"),
        name,
        where,
        expected="a dict with keys 'forward' and 'backward'",
        hint=" See seqmask.init_bidirectional.",
    )
    if initial_carry is None:
        initial_carry = (None, None)
    elif not (isinstance(initial_carry, tuple) and len(initial_carry) == 2):
        _checks.fail(
            where,
            f"{carry_name} must be a pair (forward_carry, backward_carry) or None; "
            f"got {_checks.describe(initial_carry)}.",
            TypeError,
        )
    # The backward direction meets each packed sequence at its last step.
    backward_seq = seq._replace(resets=_layer.segment_ends(seq.resets))
    results = [
        _layer.run(
            direction_cell,
            params[direction],
            direction_seq,
            initial_carry=carry,
            reverse=direction == "backward",
            options=options,
            where=where,
            name=f"{name}['{direction}']",
            carry_name=f"{carry_name}[{index}]",
        )
        for index, (direction_cell, direction, direction_seq, carry) in enumerate(
            zip(
                (cell, backward_cell),
                ("forward", "backward"),
                (seq, backward_seq),
                initial_carry,
                strict=True,
            )
        )
    ]
    (forward_carry, forward_ys), (backward_carry, backward_ys) = results
    if merge == "sum" and forward_ys.shape != backward_ys.shape:
        _checks.fail(
            where,
            "merge='sum' needs both directions to output one size; got "
            f"{forward_ys.shape[-1]} forward (cell) and {backward_ys.shape[-1]} "
            "backward (backward_cell). Give "
            "backward_cell the forward cell's size, or merge='concat'.",
        )
    return (forward_carry, backward_carry), _merge(forward_ys, backward_ys, merge)


def stacked(
    cells: Cell | Sequence[Cell],
    params: Sequence[Params],
    xs,
    *,
    mask=None,
    lengths=None,
    initial_carries: Sequence[Carry | None] | None = None,
    resets=None,
    bidirectional: bool = False,
    merge: str = "concat",
    dropout_rate: float = 0.0,
    dropout_key: jax.Array | None = None,
    residual: bool = False,
    time_major: bool = False,
    unroll: int | bool = 1,
    remat: bool | int = False,
    hoist: bool | None = None,
    skip_padding: bool | int = False,
) -> tuple[list[Carry], jax.Array]:
    """Several recurrent layers, each reading the previous layer's outputs.

    Args:
      cells: one cell for every layer, or a sequence with one cell a layer.
      params: a sequence of per-layer parameters (see :func:`init_stacked`);
        its length is the number of layers.
      xs, mask, lengths, time_major, unroll, remat, hoist, skip_padding: as
        :func:`rnn`.
      initial_carries: one carry (or None) a layer; for bidirectional layers
        a ``(forward, backward)`` pair.
      resets: as :func:`rnn`, applied in every layer; bidirectional layers
        reset their backward direction where each sequence ends (see
        :func:`bidirectional`), so packed rows work through the whole stack.
      bidirectional: whether each layer is a :func:`bidirectional` layer.
      merge: how bidirectional layers merge their directions (``"concat"``
        or ``"sum"``).
      dropout_rate: dropout on the outputs of every layer but the last, in
        ``[0, 1)`` (a Python number, checked at once, or a traced one,
        checked through ``checkify``).
      dropout_key: PRNG key for dropout. Dropout is applied only when a key
        is given (pass None to evaluate).
      residual: add each layer's input to its output (from the second layer
        on; the shapes must agree).

    Returns:
      ``(carries, ys)``: the list of per-layer final carries and the outputs
      of the last layer, zero at padded steps.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import seqmask
      >>> cell = seqmask.cells.gru(6)
      >>> params = seqmask.init_stacked(jax.random.key(0), cell, 3, num_layers=2)
      >>> carries, ys = seqmask.stacked(cell, params, jnp.ones((4, 7, 3)),
      ...                               lengths=jnp.array([7, 3, 0, 1]))
      >>> len(carries), ys.shape
      (2, (4, 7, 6))
    """
    where = "stacked"
    params = _layer_params(params, where)
    layer_cells = _layer_cells(cells, len(params), where)
    bidirectional = _checks.flag(bidirectional, "bidirectional", where)
    residual = _checks.flag(residual, "residual", where)
    _checks.one_of(merge, MERGES[:2], "merge", where)
    _checks.number(dropout_rate, "dropout_rate", where)
    _checks.in_range(
        dropout_rate, "dropout_rate", where, low=0.0, high=1.0, high_open=True
    )
    initial_carries = _layer_carries(initial_carries, len(params), where)
    if dropout_key is not None:
        _checks.prng_key(dropout_key, "dropout_key", where)
    options = _layer.options(unroll, remat, hoist, where, skip_padding)
    # One check, one layout change and one zeroing for all layers: each
    # layer's outputs are zero at padded steps, so they need no new select.
    seq = _layer.prepare(xs, mask, lengths, resets, time_major, where)
    keep = _dropout(dropout_key, dropout_rate, len(params))
    carries = []
    for index, (cell, layer_params, carry) in enumerate(
        zip(layer_cells, params, initial_carries, strict=True)
    ):
        name, carry_name = f"params[{index}]", f"initial_carries[{index}]"
        if bidirectional:
            carry, out = _bidirectional(
                *(cell, None, layer_params, seq, carry, merge, options, where),
                name=name,
                carry_name=carry_name,
            )
        else:
            carry, out = _layer.run(
                cell,
                layer_params,
                seq,
                initial_carry=carry,
                options=options,
                where=where,
                name=name,
                carry_name=carry_name,
            )
        out = _between_layers(out, seq.xs, index, len(params), residual, keep, where)
        carries.append(carry)
        seq = seq._replace(xs=out)
    return carries, seq.restore(seq.xs)


def _layer_params(params, where: str) -> list:
    if not isinstance(params, (list, tuple)):
        _checks.fail(
            where,
            "params must be a list with one entry a layer (see seqmask.init_stacked); "
            f"got {_checks.describe(params)}.",
            TypeError,
        )
    if not params:
        _checks.fail(where, "params must have one entry a layer; got an empty list.")
    return list(params)


def _layer_carries(initial_carries, count: int, where: str) -> list:
    if initial_carries is None:
        return [None] * count
    if not isinstance(initial_carries, (list, tuple)):
        _checks.fail(
            where,
            "initial_carries must be a list with one carry (or None) a layer; got "
            f"{_checks.describe(initial_carries)}.",
            TypeError,
        )
    if len(initial_carries) != count:
        _checks.fail(
            where,
            f"initial_carries must have one entry a layer ({count}); got "
            f"{len(initial_carries)}.",
        )
    return list(initial_carries)


def _dropout(key, rate, count: int):
    """``keep(index, out)``: the dropout after layer ``index``, or None."""
    if key is None or (not _checks.is_traced(rate) and rate == 0.0):
        return None
    keys = jax.random.split(key, count)

    def keep(index, out):
        # Drawn batch-major, so the same key drops the same units whatever
        # the layout the caller uses.
        batch_major = (*out.shape[1:-1], out.shape[0], out.shape[-1])
        kept = jax.random.bernoulli(keys[index], 1.0 - rate, batch_major)
        scale = jnp.asarray(1.0 / (1.0 - rate), out.dtype)
        return jnp.where(
            jnp.moveaxis(kept, -2, 0), out * scale, jnp.zeros((), out.dtype)
        )

    return keep


def _between_layers(out, hidden, index, count, residual, keep, where):
    """Layer ``index``'s output with the residual and dropout applied."""
    if residual and index > 0:
        if out.shape != hidden.shape:
            _checks.fail(
                where,
                f"residual connections need layer {index} (from 0) to output as "
                f"many features as it reads; it reads {hidden.shape[-1]} and "
                f"outputs {out.shape[-1]}.",
            )
        out = out + hidden.astype(out.dtype)
    if keep is not None and index < count - 1:
        out = keep(index, out)
    return out


def init_bidirectional(
    key: jax.Array, cell: Cell, input_size: int, *, backward_cell: Cell | None = None
) -> dict[str, Params]:
    """Parameters ``{"forward": ..., "backward": ...}`` for :func:`bidirectional`.

    Examples:
      >>> import jax, seqmask
      >>> params = seqmask.init_bidirectional(jax.random.key(0),
      ...                                     seqmask.cells.gru(4), 3)
      >>> sorted(params)
      ['backward', 'forward']
    """
    where = "init_bidirectional"
    _layer.check_cell(cell, where)
    backward_cell = cell if backward_cell is None else backward_cell
    _layer.check_cell(backward_cell, where, "backward_cell")
    _checks.prng_key(key, "key", where)
    input_size = _checks.positive_int(input_size, "input_size", where)
    forward_key, backward_key = jax.random.split(key)
    return {
        "forward": cell.init(forward_key, input_size),
        "backward": backward_cell.init(backward_key, input_size),
    }


def init_stacked(
    key: jax.Array,
    cells: Cell | Sequence[Cell],
    input_size: int,
    *,
    num_layers: int | None = None,
    bidirectional: bool = False,
    merge: str = "concat",
) -> list[Params]:
    """Per-layer parameters for :func:`stacked`.

    Each layer's input size is the previous layer's output size (doubled for
    bidirectional layers that concatenate).

    Args:
      key: PRNG key.
      cells: one cell for every layer (then ``num_layers`` is required) or a
        sequence with one cell a layer.
      input_size: the feature size of the inputs of the first layer.
      num_layers: number of layers when ``cells`` is a single cell.
      bidirectional, merge: as :func:`stacked`.

    Examples:
      >>> import jax, seqmask
      >>> params = seqmask.init_stacked(jax.random.key(0), seqmask.cells.lstm(4), 3,
      ...                               num_layers=2, bidirectional=True)
      >>> params[1]["forward"]["input_kernel"].shape
      (8, 16)
    """
    where = "init_stacked"
    _checks.prng_key(key, "key", where)
    size = _checks.positive_int(input_size, "input_size", where)
    bidirectional = _checks.flag(bidirectional, "bidirectional", where)
    _checks.one_of(merge, MERGES[:2], "merge", where)
    num_layers = _checks.optional_positive_int(num_layers, "num_layers", where)
    if isinstance(cells, Cell):
        if num_layers is None:
            _checks.fail(where, "give num_layers when cells is one cell.")
        count = num_layers
    else:
        count = len(
            _checks.instance(
                cells,
                (list, tuple),
                "cells",
                where,
                expected="a Cell or a list of cells",
            )
        )
        if num_layers is not None and num_layers != count:
            _checks.fail(
                where, f"num_layers={num_layers} but {count} cells were given."
            )
    params = []
    for cell, layer_key in zip(
        _layer_cells(cells, count, where), jax.random.split(key, count), strict=True
    ):
        if bidirectional:
            layer = init_bidirectional(layer_key, cell, size)
            out = output_size(cell, layer["forward"], size)
            size = 2 * out if merge == "concat" else out
        else:
            layer = cell.init(layer_key, size)
            size = output_size(cell, layer, size)
        params.append(layer)
    return params


def _layer_cells(cells, count: int, where: str) -> list[Cell]:
    if isinstance(cells, Cell):
        return [cells] * count
    if not isinstance(cells, (list, tuple)):
        _layer.check_cell(cells, where, "cells")
    cells = list(cells)
    if len(cells) != count:
        _checks.fail(
            where,
            f"got {len(cells)} cells for {count} layers; give one cell or one a layer.",
        )
    for index, cell in enumerate(cells):
        _layer.check_cell(cell, where, f"cells[{index}]")
    return cells


def _merge(forward_ys, backward_ys, merge: str):
    if merge == "concat":
        return jnp.concatenate([forward_ys, backward_ys], axis=-1)
    if merge == "sum":
        return forward_ys + backward_ys
    return forward_ys, backward_ys
