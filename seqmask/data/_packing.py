"""Several sequences to a row: ``pack``, ``unpack``, ``segment_final_carries``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import seqmask._checks as _checks
from seqmask.data._common import (
    Reader,
    flatten,
    item_lengths,
    no_list_of_arrays,
    pad_items,
    paths,
    read_all,
)

PyTree = Any


class Packing(NamedTuple):
    """Several sequences packed into the rows of one batch (see :func:`pack`).

    ``rows``, ``starts`` and ``lengths`` say where input sequence ``i`` went:
    steps ``starts[i] .. starts[i] + lengths[i] - 1`` of row ``rows[i]``.

    Attributes:
      inputs: ``[rows, row_len, ...]``, the sequences' elements, ``pad_value``
        at padding (a pytree of such arrays for pytree items).
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
      indices: int ``[num_sequences]``, the position of each sequence in the
        data it came from (``0 .. n - 1`` for :func:`pack`, the corpus index
        for :func:`seqmask.data.packed_batches`).
    """

    inputs: np.ndarray
    mask: np.ndarray
    resets: np.ndarray
    segment_ids: np.ndarray
    positions: np.ndarray
    rows: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray
    indices: np.ndarray | None = None


def pack(
    sequences: Iterable[Any],
    row_len: int,
    *,
    pad_value=0,
    dtype=None,
    num_rows: int | None = None,
) -> Packing:
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
        trailing shape, or pytrees of them whose leaves share one length per
        item (e.g. ``{"inputs": x, "targets": y}``).
      row_len: the number of steps a row; every sequence must fit.
      pad_value: the input value at padded steps (one value, or a pytree like
        the items); it must be representable in the dtype.
      dtype: the dtype of ``inputs`` (one, or a pytree like the items);
        default: the first non-empty sequence's dtype, as JAX canonicalises
        it (int64 -> int32 unless x64 is on). Values that do not fit it raise.
      num_rows: the number of rows; default: as many as first fit needs.
        Extra rows are all padding.

    Returns:
      A :class:`Packing`.

    Raises:
      ValueError: no sequence, a sequence longer than ``row_len`` (named by
        its index), more rows needed than ``num_rows``, or values that do not
        fit the dtype.
      TypeError: sequences that are not numeric arrays, or a dtype they do
        not convert to safely.

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
    where = "pack"
    row_len = _checks.positive_int(row_len, "row_len", where)
    num_rows = _checks.optional_positive_int(num_rows, "num_rows", where)
    reader = Reader(where, dtype, pad_value)
    items = read_all(sequences, reader)
    lengths = item_lengths(items, where, same=True)
    too_long = np.flatnonzero(lengths > row_len)
    if too_long.size:
        index = items[too_long[0]][0]
        _checks.fail(
            where,
            f"sequences[{index}] has length {lengths[too_long[0]]}, longer than "
            f"row_len={row_len}; raise row_len or split the sequence.",
        )
    fit = FirstFit(row_len)
    spots = np.array([fit.place(int(n)) for n in lengths], np.int64).reshape(-1, 2)
    rows, starts, filled = spots[:, 0], spots[:, 1], max(fit.filled.size, 1)
    if num_rows is not None and filled > num_rows:
        _checks.fail(
            where,
            f"the sequences need {filled} rows of {row_len} steps; num_rows="
            f"{num_rows} is too few.",
        )
    return lay_out(items, reader, rows, starts, lengths, row_len, num_rows or filled)


class FirstFit:
    """Greedy first fit into rows of ``row_len`` steps, one sequence at a time.

    :meth:`place` puts a sequence into the first row with room for all of it,
    opening a row when none has, and returns ``(row, start)``; with
    ``max_rows`` it returns None when every row is open and none has room.
    """

    def __init__(self, row_len: int, max_rows: int | None = None):
        self.row_len, self.max_rows = row_len, max_rows
        self.filled = np.zeros(0, np.int64)  # steps used in each row so far

    def place(self, length: int) -> tuple[int, int] | None:
        room = np.flatnonzero(self.filled + length <= self.row_len)
        if room.size:
            row = int(room[0])
        elif self.max_rows is not None and self.filled.size == self.max_rows:
            return None
        else:
            row = self.filled.size
            self.filled = np.append(self.filled, 0)
        start = int(self.filled[row])
        self.filled[row] += length
        return row, start


def packed_groups(entries, row_len: int, max_rows: int):
    """Lists of ``(item, row, start)``, one a batch of ``max_rows`` rows: the
    entries ``(item, length)`` in order, a new batch when one fits nowhere."""
    fit, group = FirstFit(row_len, max_rows), []
    for item, length in entries:
        spot = fit.place(length)
        if spot is None:
            yield group
            fit, group = FirstFit(row_len, max_rows), []
            spot = fit.place(length)
            assert spot is not None
        group.append((item, *spot))
    if group:
        yield group


def lay_out(items, reader, rows, starts, lengths, row_len, num_rows) -> Packing:
    """The :class:`Packing` of ``items`` at the given rows and starts."""

    def place(i):
        return rows[i], starts[i]

    padded = pad_items(items, reader, num_rows, row_len, place)
    resets = np.zeros((num_rows, row_len), np.bool_)
    segment_ids = np.full((num_rows, row_len), -1, np.int32)
    positions = np.zeros((num_rows, row_len), np.int32)
    for position, (row, start, length) in enumerate(
        zip(rows, starts, lengths, strict=True)
    ):
        if length:
            resets[row, start] = True
            segment_ids[row, start : start + length] = position
            positions[row, start : start + length] = np.arange(length)
    inputs = jax.tree.unflatten(reader.structure, [p.values for p in padded])
    mask = padded[0].mask
    indices = np.array([index for index, _ in items], np.int64)
    # The fields in their order.
    return Packing(
        inputs, mask, resets, segment_ids, positions, rows, starts, lengths, indices
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
    leaves, treedef = _packed_leaves(ys, "ys", packing, "unpack")
    if _checks.is_traced(leaves):
        _checks.fail(
            "unpack",
            "ys must be concrete arrays: unpack splits them on the host, so call "
            "it outside jit (on the jitted function's outputs).",
            TypeError,
        )
    arrays = [np.asarray(leaf) for leaf in leaves]
    return [
        jax.tree.unflatten(
            treedef, [array[row, start : start + length] for array in arrays]
        )
        for row, start, length in zip(
            packing.rows, packing.starts, packing.lengths, strict=True
        )
    ]


def _packed_leaves(tree, name: str, packing, where: str):
    """The leaves of ``tree`` (and its treedef), each ``[rows, row_len, ...]``
    like the packing's mask."""
    if not isinstance(packing, Packing):
        _checks.fail(
            where,
            "packing must be the Packing that seqmask.data.pack returned; got "
            f"{type(packing).__name__}.",
            TypeError,
        )
    if _checks.is_traced(jax.tree.leaves(packing)):
        _checks.fail(
            where,
            "packing must be concrete: its indices are read on the host. Close "
            "over it in the jitted function (or mark it static) instead of "
            "passing it as a traced argument.",
            TypeError,
        )
    layout = tuple(packing.mask.shape)
    leaves, treedef = flatten(tree)
    no_list_of_arrays(tree, leaves, name, where)
    leaves = [
        leaf if isinstance(leaf, jax.Array) else _checks.host_array(leaf, name, where)
        for leaf in leaves
    ]
    for path, leaf in zip(paths(tree), leaves, strict=True):
        if tuple(np.shape(leaf)[:2]) != layout:
            _checks.fail(
                where,
                f"{name}{path} must be [rows, row_len, ...] = {layout} like the "
                f"packing's mask; got shape {tuple(np.shape(leaf))}.",
            )
    return leaves, treedef


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
      >>> print(segment_final_carries(running_sum, packing))
      [6 9 6]
    """
    where = "segment_final_carries"
    leaves, treedef = _packed_leaves(carries, "carries", packing, where)
    lengths = np.asarray(packing.lengths)
    empty = lengths == 0
    if empty.any() and initial_carry is None:
        _checks.fail(
            where,
            f"sequences {np.flatnonzero(empty)[:8].tolist()} are empty, so their "
            "final carry is the initial carry; pass initial_carry (e.g. "
            "cell.initial_carry(params, ())).",
        )
    last = np.maximum(np.asarray(packing.starts) + lengths - 1, 0)
    finals = [jnp.asarray(leaf)[np.asarray(packing.rows), last] for leaf in leaves]
    if empty.any():
        try:
            initial_leaves = treedef.flatten_up_to(initial_carry)
        except (TypeError, ValueError):
            _checks.fail(
                where,
                "initial_carry must have the structure of one step of carries "
                f"({treedef}); got {_checks.describe(initial_carry)}.",
            )
        initial_leaves = [
            _checks.array(start, "initial_carry", where) for start in initial_leaves
        ]
        _checks.tree_like(
            initial_leaves,
            [
                jax.ShapeDtypeStruct(final.shape[1:], start.dtype)
                for final, start in zip(finals, initial_leaves, strict=True)
            ],
            "initial_carry",
            where,
            broadcast=True,
            expected_from="one step of carries",
        )
        for final, start in zip(finals, initial_leaves, strict=True):
            if not np.can_cast(start.dtype, final.dtype, casting="same_kind"):
                _checks.fail(
                    where,
                    f"initial_carry has dtype {start.dtype}, which does not cast "
                    f"to the carries' {final.dtype} without changing its values' "
                    "kind.",
                    TypeError,
                )
            _checks.representable(
                start,
                final.dtype,
                "initial_carry",
                where,
                hint=" (the dtype of the carries)",
            )
        finals = [
            jnp.where(
                jnp.asarray(empty).reshape((-1,) + (1,) * (final.ndim - 1)),
                jnp.broadcast_to(jnp.asarray(start, final.dtype), final.shape),
                final,
            )
            for final, start in zip(finals, initial_leaves, strict=True)
        ]
    return jax.tree.unflatten(treedef, finals)
