"""Data layouts for stateful and long-sequence training: chunks, lanes, packing.

These functions turn variable-length sequences into the fixed-shape arrays a
compiled step wants (inputs, a boolean ``mask`` of valid steps and boolean
``resets`` where a new sequence starts) and read results back.
:func:`chunks` cuts a long batch into chunks of equal length for truncated
backpropagation through time; :func:`stateful_batches` lays a stream of
sequences into lanes so that lane ``i`` of one chunk continues lane ``i`` of
the previous one; :func:`pack` puts several short sequences into each row of a
batch, and :func:`unpack` and :func:`segment_final_carries` read each
sequence's outputs and final carry back. The layouts are built on the host
with NumPy (they depend on data, not on traced values); the arrays they
produce have static shapes, so a step compiled for one chunk serves them all.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "Chunk",
    "Packing",
    "chunks",
    "stateful_batches",
    "pack",
    "unpack",
    "segment_final_carries",
]

PyTree = Any


class Chunk(NamedTuple):
    """One fixed-length chunk of a batch, ready for a compiled step.

    Attributes:
      xs: the inputs, a pytree whose leaves are ``[*batch, chunk_len, ...]``.
      mask: boolean ``[*batch, chunk_len]``; false at padding (including the
        padding that fills a short last chunk).
      resets: boolean ``[*batch, chunk_len]``, true where a new sequence
        starts, or None when there are none.
      segment_ids: for :func:`stateful_batches`, int32 ``[batch,
        chunk_len]``: the index of the input sequence at each step, -1 at
        padding; None otherwise.
    """

    xs: PyTree
    mask: Any
    resets: Any = None
    segment_ids: Any = None


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


def chunks(
    xs: PyTree,
    chunk_len: int,
    *,
    mask=None,
    resets=None,
    time_axis: int = 1,
) -> Iterator[Chunk]:
    """Cut a long batch into chunks of ``chunk_len`` steps, padding the last one.

    Every chunk has the same shapes, so a jitted step compiles once: a last
    chunk shorter than ``chunk_len`` is padded with zeros and a false mask.
    Padded steps carry the recurrent state through, so the carry after the
    last chunk is exactly the carry after the last valid step.

    Args:
      xs: a pytree (inputs, targets, ...) whose leaves are ``[*batch, time,
        ...]`` with the time axis at ``time_axis``; NumPy or JAX arrays.
      chunk_len: the number of steps a chunk (a positive int).
      mask: boolean ``[*batch, time]``; None means every step is valid.
      resets: boolean ``[*batch, time]``, true where a new sequence starts;
        None gives chunks with ``resets=None``.
      time_axis: the position of the time axis in the leaves of ``xs``.

    Yields:
      :class:`Chunk` ``(xs, mask, resets)`` with leaves ``[*batch,
      chunk_len, ...]``, sliced from the input's kind of array (NumPy slices
      are views).

    Examples:
      >>> import numpy as np
      >>> from seqmask.data import chunks
      >>> tokens = np.arange(10).reshape(2, 5)
      >>> for chunk in chunks(tokens, 3):
      ...     print(chunk.xs.tolist(), chunk.mask.astype(int).tolist())
      [[0, 1, 2], [5, 6, 7]] [[1, 1, 1], [1, 1, 1]]
      [[3, 4, 0], [8, 9, 0]] [[1, 1, 0], [1, 1, 0]]
    """
    chunk_len = _positive_int(chunk_len, "chunks: chunk_len")
    if not isinstance(time_axis, int) or isinstance(time_axis, bool):
        raise TypeError(f"chunks: time_axis must be an int; got {time_axis!r}.")
    if time_axis < 0:
        raise ValueError(f"chunks: time_axis must be >= 0; got {time_axis}.")
    leaves, treedef = jax.tree.flatten(xs)
    if not leaves:
        raise ValueError("chunks: xs has no arrays to cut.")
    shapes = [tuple(np.shape(leaf)) for leaf in leaves]
    for path, shape in zip(_paths(xs), shapes, strict=True):
        if len(shape) <= time_axis:
            raise ValueError(
                f"chunks: xs{path} has shape {shape}; it needs a time axis at "
                f"time_axis={time_axis}."
            )
    layout = shapes[0][: time_axis + 1]
    for path, shape in zip(_paths(xs), shapes, strict=True):
        if shape[: time_axis + 1] != layout:
            raise ValueError(
                "chunks: every leaf of xs must share the batch and time axes "
                f"{layout}; xs{path} has shape {shape}."
            )
    time = layout[-1]
    if mask is None:
        mask = np.ones(layout, np.bool_)
    mask = _check_bool(mask, layout, "chunks: mask")
    if resets is not None:
        resets = _check_bool(resets, layout, "chunks: resets")

    num_chunks = -(-time // chunk_len)
    padded_time = num_chunks * chunk_len

    def pad(leaf, axis):
        extra = padded_time - np.shape(leaf)[axis]
        if extra == 0:
            return leaf
        widths = [(0, 0)] * np.ndim(leaf)
        widths[axis] = (0, extra)
        if isinstance(leaf, np.ndarray):
            return np.pad(leaf, widths)
        return jnp.pad(jnp.asarray(leaf), widths)

    def cut(leaf, axis, start):
        if isinstance(leaf, np.ndarray):
            index = (slice(None),) * axis + (slice(start, start + chunk_len),)
            return leaf[index]
        # One compiled slice for every start, unlike basic indexing.
        return jax.lax.dynamic_slice_in_dim(leaf, start, chunk_len, axis)

    leaves = [pad(_as_array(leaf), time_axis) for leaf in leaves]
    mask = pad(mask, time_axis)
    resets = None if resets is None else pad(resets, time_axis)

    # A generator inside, so that bad arguments raise at the call above.
    def generate():
        for index in range(num_chunks):
            start = index * chunk_len
            yield Chunk(
                xs=jax.tree.unflatten(
                    treedef, [cut(leaf, time_axis, start) for leaf in leaves]
                ),
                mask=cut(mask, time_axis, start),
                resets=None if resets is None else cut(resets, time_axis, start),
            )

    return generate()


def stateful_batches(
    sequences: Iterable[Any],
    batch_size: int,
    chunk_len: int,
    *,
    pad_value=0,
    dtype=None,
) -> Iterator[Chunk]:
    """Lay a stream of sequences into ``batch_size`` lanes, chunk by chunk.

    Lane ``i`` of chunk ``k + 1`` continues lane ``i`` of chunk ``k``, so a
    training loop that threads the carry from chunk to chunk sees every
    sequence as one unbroken run. Each sequence goes, whole and contiguous,
    to the lane that becomes free first (ties to the lowest lane), so the
    lanes hold the sequences in the order given; ``resets`` is true exactly
    at each sequence's first step, where the recurrent state must go back to
    the cell's initial carry (the learned one for
    :func:`seqmask.cells.learnable_initial_state`). When the stream runs
    out, lanes that have finished are padded (mask false) until the longest
    lane ends; the last chunk is the one in which that happens. Empty
    sequences have no step to place and are skipped (their index is still
    counted in ``segment_ids``).

    ``sequences`` is consumed lazily, so it may be a generator over a large
    corpus. The layout is deterministic: to resume after ``k`` chunks, call
    again with the same sequences and skip ``k`` chunks
    (``itertools.islice(stateful_batches(...), k, None)``).

    Args:
      sequences: an iterable of arrays ``[length, ...]`` (or token lists);
        all share the trailing shape.
      batch_size: the number of lanes ``B``.
      chunk_len: the number of steps a chunk ``K``.
      pad_value: the input value at padded steps.
      dtype: the dtype of the chunks' inputs; default: the first non-empty
        sequence's dtype, as JAX canonicalises it (int64 -> int32 unless x64
        is on).

    Yields:
      :class:`Chunk` ``(xs, mask, resets, segment_ids)``: ``xs`` is a NumPy
      array ``[B, K, ...]``, ``mask`` and ``resets`` are boolean ``[B, K]``,
      ``segment_ids`` int32 ``[B, K]`` (the index of the sequence at each
      step, -1 at padding).

    Examples:
      >>> from seqmask.data import stateful_batches
      >>> seqs = [[1, 2, 3], [4, 5], [6, 7, 8, 9], [10]]
      >>> for chunk in stateful_batches(seqs, batch_size=2, chunk_len=3):
      ...     print(chunk.xs.tolist(), chunk.resets.astype(int).tolist())
      [[1, 2, 3], [4, 5, 6]] [[1, 0, 0], [1, 0, 1]]
      [[10, 0, 0], [7, 8, 9]] [[1, 0, 0], [0, 0, 0]]
    """
    batch_size = _positive_int(batch_size, "stateful_batches: batch_size")
    chunk_len = _positive_int(chunk_len, "stateful_batches: chunk_len")
    _check_not_one_array(sequences, "stateful_batches")
    return _lanes(
        _checked_sequences(sequences, "stateful_batches", dtype),
        batch_size,
        chunk_len,
        pad_value,
    )


def _lanes(stream, batch_size: int, chunk_len: int, pad_value) -> Iterator[Chunk]:
    """The generator behind :func:`stateful_batches`."""
    # (absolute step at which the lane is free, lane): the heap hands the next
    # sequence to the lane that frees first.
    free: list[tuple[int, int]] = [(0, lane) for lane in range(batch_size)]
    # Per lane: the (index, array, absolute start) of sequences not yet emitted.
    pending: list[list[tuple[int, np.ndarray, int]]] = [[] for _ in range(batch_size)]
    exhausted = False
    trailing: tuple[int, ...] | None = None
    out_dtype = None
    chunk_start = 0
    while True:
        chunk_end = chunk_start + chunk_len
        while not exhausted and free[0][0] < chunk_end:
            item = next(stream, None)
            if item is None:
                exhausted = True
                break
            index, sequence = item
            if len(sequence) == 0:
                continue
            if trailing is None:
                trailing, out_dtype = sequence.shape[1:], sequence.dtype
            start, lane = heapq.heappop(free)
            pending[lane].append((index, sequence, start))
            heapq.heappush(free, (start + len(sequence), lane))
        if not any(pending):
            return
        assert trailing is not None
        xs = np.full((batch_size, chunk_len, *trailing), pad_value, out_dtype)
        mask = np.zeros((batch_size, chunk_len), np.bool_)
        resets = np.zeros((batch_size, chunk_len), np.bool_)
        segment_ids = np.full((batch_size, chunk_len), -1, np.int32)
        for lane, segments in enumerate(pending):
            for index, sequence, start in segments:
                first = max(start, chunk_start)
                last = min(start + len(sequence), chunk_end)
                xs[lane, first - chunk_start : last - chunk_start] = sequence[
                    first - start : last - start
                ]
                mask[lane, first - chunk_start : last - chunk_start] = True
                segment_ids[lane, first - chunk_start : last - chunk_start] = index
                if start >= chunk_start:
                    resets[lane, start - chunk_start] = True
            pending[lane] = [s for s in segments if s[2] + len(s[1]) > chunk_end]
        yield Chunk(xs=xs, mask=mask, resets=resets, segment_ids=segment_ids)
        chunk_start = chunk_end


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


def _checked_sequences(sequences, name: str, dtype) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(index, array)``, checking every non-empty sequence as it comes.

    The trailing shape and (without ``dtype``) the dtype come from the first
    non-empty sequence: an empty token list has no element type of its own.
    """
    _check_not_one_array(sequences, name)
    trailing = None
    target = None if dtype is None else np.dtype(dtype)
    for index, sequence in enumerate(sequences):
        array = np.asarray(sequence)
        if array.ndim == 0:
            raise ValueError(
                f"{name}: sequences[{index}] must be [length, ...]; got a scalar "
                f"{sequence!r}."
            )
        if len(array) == 0:
            yield index, array
            continue
        if trailing is None:
            trailing = array.shape[1:]
        elif array.shape[1:] != trailing:
            raise ValueError(
                f"{name}: every sequence must have the trailing shape {trailing} of "
                f"the first non-empty one; sequences[{index}] has shape "
                f"{array.shape}."
            )
        if target is None:
            target = np.dtype(jax.dtypes.canonicalize_dtype(array.dtype))
        elif not np.can_cast(array.dtype, target, "same_kind"):
            raise TypeError(
                f"{name}: sequences[{index}] has dtype {array.dtype}, which does not "
                f"convert safely to {target} (the dtype of the first sequence or the "
                "dtype argument); pass dtype= explicitly."
            )
        yield index, array.astype(target, copy=False)


def _check_not_one_array(sequences, name: str) -> None:
    if isinstance(sequences, np.ndarray) and sequences.dtype != object:
        raise TypeError(
            f"{name}: sequences must be an iterable of arrays [length, ...] of "
            f"varying lengths; got one array of shape {sequences.shape}. Pass "
            "list(array) for equal-length rows."
        )


def _check_packing(packing, name: str) -> None:
    if not isinstance(packing, Packing):
        raise TypeError(
            f"{name}: packing must be the Packing that seqmask.data.pack returned; "
            f"got {type(packing).__name__}."
        )


def _check_bool(value, layout, name: str):
    kind = value if isinstance(value, (np.ndarray, jax.Array)) else np.asarray(value)
    if kind.dtype != np.bool_:
        raise TypeError(
            f"{name} must be a boolean array; got dtype {kind.dtype}. Use "
            "`x != 0` to convert."
        )
    if tuple(kind.shape) != tuple(layout):
        raise ValueError(
            f"{name} must have shape {tuple(layout)} (the batch and time axes of "
            f"xs); got {tuple(kind.shape)}."
        )
    return kind


def _as_array(leaf):
    if isinstance(leaf, (np.ndarray, jax.Array)):
        return leaf
    return np.asarray(leaf)


def _paths(tree) -> list[str]:
    return [
        jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(tree)
    ]


def _positive_int(value, name: str) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a positive int; got {value!r}.")
    if value < 1:
        raise ValueError(f"{name} must be a positive int; got {value!r}.")
    return int(value)
