"""Several sequences to a row: ``pack``, ``unpack``, ``segment_final_carries``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from seqmask.data._common import (
    _checked_sequences,
    _paths,
    _positive_int,
)

PyTree = Any


class Packing(NamedTuple):
    """Several sequences packed into the rows of one batch (see :func:`pack`).

    ``rows``, ``starts`` and ``lengths`` say where input sequence ``i`` went:
    steps ``starts[i] .. starts[i] + lengths[i] - 1`` of row ``rows[i]``.

    Attributes:
      inputs: ``[rows, row_len, ...]``, the sequences' elements, ``pad_value``
        at padding.
      mask: boolean ``[rows, row_len]``, true at the steps of a sequence.
      resets: boolean ``[rows, row_len]``, true at the first step of each
        sequence (pass as ``resets`` to :func:`seqmask.rnn`).
      segment_ids: int32 ``[rows, row_len]``, the index of the input sequence
        at each step, -1 at padding.
      positions: int32 ``[rows, row_len]``, the step within its sequence (0 at
        a sequence's first step), 0 at padding.
      rows: int ``[num_sequences]``, the row of each sequence.
      starts: int ``[num_sequences]``, its first step in that row.
      lengths: int ``[num_sequences]``, its length.
    """

    inputs: np.ndarray
    mask: np.ndarray
    resets: np.ndarray
    segment_ids: np.ndarray
    positions: np.ndarray
    rows: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray


def pack(sequences: Iterable[Any], row_len: int, *, pad_value=0, dtype=None) -> Packing:
    """Pack variable-length sequences into rows of ``row_len`` steps.

    Greedy first fit: the sequences are taken in the order given, and each
    goes into the first row that still has room for all of it (a new row
    when none has). A sequence never wraps around or splits. Running a layer
    over the packed rows with ``resets=packing.resets`` and the cell's
    initial carry as ``reset_to`` (the default of :func:`seqmask.rnn`) gives
    every sequence exactly what it gives alone; read the results back with
    :func:`unpack` and :func:`segment_final_carries`. Empty sequences take
    no step (``lengths[i] == 0``, placed at the end of the first row).

    Args:
      sequences: arrays ``[length, ...]`` (or token lists) sharing the
        trailing shape.
      row_len: the number of steps a row; every sequence must fit.
      pad_value: the input value at padded steps.
      dtype: the dtype of ``inputs``; default: the first non-empty
        sequence's dtype, as JAX canonicalises it (int64 -> int32 unless x64
        is on).

    Returns:
      A :class:`Packing`.

    Raises:
      ValueError: a sequence longer than ``row_len`` (named by its index).

    Examples:
      >>> from seqmask.data import pack
      >>> packing = pack([[1, 2, 3], [4, 5], [6]], row_len=4)
      >>> packing.inputs.tolist()
      [[1, 2, 3, 6], [4, 5, 0, 0]]
      >>> packing.resets.astype(int).tolist()
      [[1, 0, 0, 1], [1, 0, 0, 0]]
      >>> packing.rows.tolist(), packing.starts.tolist()
      ([0, 1, 0], [0, 0, 3])
    """
    row_len = _positive_int(row_len, "pack: row_len")
    items = list(_checked_sequences(sequences, "pack", dtype))
    first = next((s for _, s in items if len(s)), None)
    if first is not None:
        trailing, out_dtype = first.shape[1:], first.dtype
    else:
        trailing, out_dtype = (), np.dtype(np.int32 if dtype is None else dtype)
    for index, sequence in items:
        if len(sequence) > row_len:
            raise ValueError(
                f"pack: sequences[{index}] has length {len(sequence)}, longer than "
                f"row_len={row_len}; raise row_len or split the sequence."
            )
    lengths = np.array([len(s) for _, s in items], np.int64)
    rows = np.zeros(len(items), np.int64)
    starts = np.zeros(len(items), np.int64)
    filled = np.zeros(0, np.int64)  # steps used in each row so far
    for index, length in enumerate(lengths):
        room = np.flatnonzero(filled + length <= row_len)
        if room.size:
            row = int(room[0])
        else:
            row = filled.size
            filled = np.append(filled, 0)
        rows[index], starts[index] = row, filled[row]
        filled[row] += length

    num_rows = max(filled.size, 1)
    inputs = np.full((num_rows, row_len, *trailing), pad_value, out_dtype)
    mask = np.zeros((num_rows, row_len), np.bool_)
    resets = np.zeros((num_rows, row_len), np.bool_)
    segment_ids = np.full((num_rows, row_len), -1, np.int32)
    positions = np.zeros((num_rows, row_len), np.int32)
    for (index, sequence), row, start, length in zip(
        items, rows, starts, lengths, strict=True
    ):
        if length == 0:
            continue
        steps = slice(start, start + length)
        inputs[row, steps] = sequence
        mask[row, steps] = True
        resets[row, start] = True
        segment_ids[row, steps] = index
        positions[row, steps] = np.arange(length, dtype=np.int32)
    return Packing(
        inputs=inputs,
        mask=mask,
        resets=resets,
        segment_ids=segment_ids,
        positions=positions,
        rows=rows,
        starts=starts,
        lengths=lengths,
    )


def unpack(ys: PyTree, packing: Packing) -> list[PyTree]:
    """Read each packed sequence's outputs back, in the order given to :func:`pack`.

    Args:
      ys: a pytree whose leaves are ``[rows, row_len, ...]`` (e.g. the
        outputs of :func:`seqmask.rnn` over ``packing.inputs``); concrete
        arrays (this runs on the host, outside ``jit``).
      packing: the :class:`Packing` the rows were built with.

    Returns:
      A list with one pytree a sequence, leaves NumPy ``[length_i, ...]``.

    Examples:
      >>> from seqmask.data import pack, unpack
      >>> packing = pack([[1, 2, 3], [4, 5], [6]], row_len=4)
      >>> [y.tolist() for y in unpack(packing.inputs * 10, packing)]
      [[10, 20, 30], [40, 50], [60]]
    """
    _check_packing(packing, "unpack")
    leaves, treedef = jax.tree.flatten(ys)
    layout = tuple(packing.mask.shape)
    arrays = []
    for path, leaf in zip(_paths(ys), leaves, strict=True):
        array = np.asarray(leaf)
        if tuple(array.shape[:2]) != layout:
            raise ValueError(
                f"unpack: ys{path} must be [rows, row_len, ...] = {layout} like the "
                f"packing's mask; got shape {tuple(array.shape)}."
            )
        arrays.append(array)
    return [
        jax.tree.unflatten(
            treedef, [array[row, start : start + length] for array in arrays]
        )
        for row, start, length in zip(
            packing.rows, packing.starts, packing.lengths, strict=True
        )
    ]


def segment_final_carries(
    carries: PyTree, packing: Packing, *, initial_carry: PyTree | None = None
) -> PyTree:
    """The final carry of every packed sequence, stacked in input order.

    Reads the carry at each sequence's last step from per-step carries (as
    :func:`seqmask.carry.rnn_with_carries` returns them). Works under
    ``jit`` (the packing's indices are static NumPy arrays).

    Args:
      carries: a pytree whose leaves are ``[rows, row_len, ...]``: the carry
        after each step of the packed rows.
      packing: the :class:`Packing` the rows were built with.
      initial_carry: the final carry of an empty sequence (which runs no
        step), leaves broadcastable to ``[...]`` (e.g. ``cell.initial_carry
        (params, ())``); needed only when the packing has empty sequences.

    Returns:
      A pytree like one step of ``carries`` with leaves ``[num_sequences,
      ...]``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from seqmask.data import pack, segment_final_carries
      >>> packing = pack([[1, 2, 3], [4, 5], [6]], row_len=4)
      >>> running_sum = jnp.array([[1, 3, 6, 6], [4, 9, 0, 0]])
      >>> segment_final_carries(running_sum, packing)
      Array([6, 9, 6], dtype=int32)
    """
    _check_packing(packing, "segment_final_carries")
    layout = tuple(packing.mask.shape)
    lengths = np.asarray(packing.lengths)
    empty = lengths == 0
    if empty.any() and initial_carry is None:
        raise ValueError(
            "segment_final_carries: sequences "
            f"{np.flatnonzero(empty)[:8].tolist()} are empty, so their final carry "
            "is the initial carry; pass initial_carry (e.g. cell.initial_carry"
            "(params, ()))."
        )
    rows = np.asarray(packing.rows)
    last = np.maximum(np.asarray(packing.starts) + lengths - 1, 0)
    leaves, treedef = jax.tree.flatten(carries)
    for path, leaf in zip(_paths(carries), leaves, strict=True):
        if tuple(np.shape(leaf)[:2]) != layout:
            raise ValueError(
                f"segment_final_carries: carries{path} must be [rows, row_len, ...] "
                f"= {layout} like the packing's mask; got {tuple(np.shape(leaf))}."
            )
    finals = [jnp.asarray(leaf)[rows, last] for leaf in leaves]
    if empty.any():
        try:
            initial_leaves = treedef.flatten_up_to(initial_carry)
            finals_shapes = [final.shape[1:] for final in finals]
            for start, shape in zip(initial_leaves, finals_shapes, strict=True):
                if np.broadcast_shapes(np.shape(start), shape) != shape:
                    raise ValueError(f"{np.shape(start)} does not broadcast to {shape}")
        except (ValueError, TypeError) as error:
            raise ValueError(
                "segment_final_carries: initial_carry must have the structure of "
                f"one step of carries ({treedef}) with leaves that broadcast to "
                f"{[f.shape[1:] for f in finals]}; got {initial_carry!r}: {error}"
            ) from None
        finals = [
            jnp.where(
                jnp.asarray(empty).reshape((-1,) + (1,) * (final.ndim - 1)),
                jnp.broadcast_to(jnp.asarray(start, final.dtype), final.shape),
                final,
            )
            for final, start in zip(finals, initial_leaves, strict=True)
        ]
    return jax.tree.unflatten(treedef, finals)


def _check_packing(packing, name: str) -> None:
    if not isinstance(packing, Packing):
        raise TypeError(
            f"{name}: packing must be the Packing that seqmask.data.pack returned; "
            f"got {type(packing).__name__}."
        )
