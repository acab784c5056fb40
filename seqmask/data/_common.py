"""Reading user sequences into checked NumPy arrays, shared by every layout.

An item of ``sequences`` is an array ``[length, ...]`` (NumPy, JAX, or a
(nested) list of numbers: lists are always read as arrays, so a rectangular
nested list is an array) or, where a layout allows it, a pytree of such
arrays (tuples, dicts, named tuples). :func:`stream` checks every item as it
comes: the same pytree structure as the first item, per leaf the trailing
shape and dtype of the first non-empty one, values that fit the dtype.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

import seqmask._checks as _checks

PyTree = Any
T = TypeVar("T")


def _is_data(x) -> bool:
    """Lists, and tuples of plain numbers, are data (arrays), not structure."""
    if isinstance(x, list):
        return True
    return (
        type(x) is tuple
        and len(x) > 0
        and all(isinstance(e, numbers.Number) for e in x)
    )


def paths(tree) -> list[str]:
    """``jax.tree_util.keystr`` of every leaf, lists counted as leaves."""
    return [
        jax.tree_util.keystr(p)
        for p, _ in jax.tree_util.tree_leaves_with_path(tree, is_leaf=_is_data)
    ]


def flatten(tree) -> tuple[list, Any]:
    """``jax.tree.flatten`` with lists (and tuples of numbers) as leaves."""
    return jax.tree.flatten(tree, is_leaf=_is_data)


def no_list_of_arrays(tree, leaves, name: str, where: str) -> None:
    """Lists are read as arrays (nested lists of numbers), so a list of arrays
    would be stacked and read along its first axis: ``TypeError``."""
    for path, leaf in zip(paths(tree), leaves, strict=True):
        if isinstance(leaf, list) and any(
            isinstance(e, (np.ndarray, jax.Array)) for e in leaf
        ):
            _checks.fail(
                where,
                f"{name}{path} is a list of arrays, which would be read as one "
                "stacked array; pass several arrays as a tuple or a dict "
                "(e.g. (inputs, targets)), or np.stack them first.",
                TypeError,
            )


def per_leaf(value, treedef, name: str, where: str) -> list:
    """One ``value`` for every leaf: a single value (a number, a 0-d array,
    a dtype), or a pytree shaped like the items (e.g. ``{"source": 0,
    "target": -1}``)."""
    count = treedef.num_leaves
    single = (numbers.Number, str, np.dtype, type)
    if (
        value is None
        or isinstance(value, single)
        or (
            isinstance(value, (np.ndarray, np.generic, jax.Array))
            and np.ndim(value) == 0
        )
    ):
        return [value] * count
    try:
        return treedef.flatten_up_to(value)
    except (TypeError, ValueError):
        _checks.fail(
            where,
            f"{name} must be one value or a pytree shaped like the items "
            f"({treedef}); got {value!r}.",
        )


def check_not_one_array(sequences, where: str) -> None:
    if isinstance(sequences, (np.ndarray, jax.Array)):
        _checks.fail(
            where,
            "sequences must be an iterable of arrays [length, ...] of varying "
            f"lengths; got one array of shape {tuple(sequences.shape)}. Pass "
            "list(array) for equal-length rows.",
            TypeError,
        )
    if not isinstance(sequences, Iterable) or isinstance(sequences, (str, dict)):
        _checks.fail(
            where,
            "sequences must be an iterable of arrays [length, ...]; got "
            f"{_checks.describe(sequences)}.",
            TypeError,
        )


class Reader:
    """Checks items one by one; remembers the structure, shapes and dtypes.

    ``dtype`` and ``pad_value`` are one value or a pytree like the items.
    Without ``tree``, an item must be one array.
    """

    def __init__(self, where: str, dtype, pad_value, *, tree: bool = True):
        self.where = where
        self.tree = tree
        self.treedef = None
        self._dtype_arg, self._pad_arg = dtype, pad_value
        self.dtypes: list[np.dtype | None] = []
        self.given: list[bool] = []
        self.trailing: list[tuple[int, ...] | None] = []
        self.pad_values: list = []

    def _start(self, treedef, index: int) -> None:
        self.treedef = treedef
        if not self.tree and not jax.tree_util.treedef_is_leaf(treedef):
            _checks.fail(
                self.where,
                f"sequences[{index}] must be one array [length, ...]; got a "
                f"pytree {treedef}.",
                TypeError,
            )
        if treedef.num_leaves == 0:
            _checks.fail(
                self.where,
                f"sequences[{index}] holds no arrays (an empty {treedef}).",
                TypeError,
            )
        self.dtypes = [
            _checks.optional_dtype(d, "dtype", self.where)
            for d in per_leaf(self._dtype_arg, treedef, "dtype", self.where)
        ]
        for dtype in self.dtypes:
            if dtype is not None and not any(
                jnp.issubdtype(dtype, kind)
                for kind in (jnp.bool_, jnp.integer, jnp.floating)
            ):
                _checks.fail(
                    self.where,
                    f"dtype must be a boolean, integer or floating dtype; got {dtype}.",
                    TypeError,
                )
        # Which leaves take their dtype from the argument (the others take
        # the first sequence's), for the fix a message suggests.
        self.given = [d is not None for d in self.dtypes]
        self.trailing = [None] * treedef.num_leaves
        self.empty_like: list[tuple[tuple[int, ...], np.dtype] | None] = [
            None
        ] * treedef.num_leaves
        self.pad_values = per_leaf(self._pad_arg, treedef, "pad_value", self.where)
        for value in self.pad_values:
            if np.ndim(value) != 0:
                _checks.fail(
                    self.where,
                    "pad_value must be one number (a scalar) for each leaf of "
                    f"the items; got shape {np.shape(value)}: {value!r}.",
                )
        for leaf, dtype in enumerate(self.dtypes):
            if dtype is not None:
                self._check_pad(leaf)

    def _check_pad(self, leaf: int, dtype: np.dtype | None = None) -> None:
        # A dtype given here is the fallback of a leaf whose sequences are
        # all empty so far.
        fallback = "" if dtype is None else " or pass dtype= (every sequence is empty)"
        dtype = self.dtypes[leaf] if dtype is None else dtype
        assert dtype is not None
        _checks.representable(
            self.pad_values[leaf],
            dtype,
            "pad_value",
            self.where,
            hint=f" Pick a pad_value that {dtype} can hold{fallback}.",
        )

    def read(self, index: int, item) -> list[np.ndarray]:
        """The checked leaves of ``sequences[index]``, cast to their dtypes."""
        leaves, treedef = flatten(item)
        if self.treedef is None:
            self._start(treedef, index)
        elif treedef != self.treedef:
            _checks.fail(
                self.where,
                f"every item must have the pytree structure of the first, "
                f"{self.treedef}; sequences[{index}] has {treedef}.",
            )
        return [
            self._leaf(index, leaf, path, value)
            for leaf, (path, value) in enumerate(zip(paths(item), leaves, strict=True))
        ]

    def _leaf(self, index: int, leaf: int, path: str, value) -> np.ndarray:
        name = f"sequences[{index}]{path}"
        array = _checks.host_array(value, name, self.where)
        if array.ndim == 0:
            _checks.fail(
                self.where, f"{name} must be [length, ...]; got a scalar {value!r}."
            )
        if len(array) == 0:  # nothing to place
            if self.empty_like[leaf] is None and isinstance(
                value, (np.ndarray, jax.Array)
            ):
                # An empty array still has a trailing shape and a dtype: the
                # leaf's, should every sequence of it be empty.
                dtype = np.dtype(jax.dtypes.canonicalize_dtype(array.dtype))
                self.empty_like[leaf] = (array.shape[1:], dtype)
            return array
        trailing = self.trailing[leaf]
        if trailing is None:
            self.trailing[leaf] = array.shape[1:]
        elif array.shape[1:] != trailing:
            _checks.fail(
                self.where,
                f"every sequence must have the trailing shape {trailing} of the "
                f"first non-empty one; {name} has shape {array.shape}.",
            )
        return self._cast(name, leaf, array)

    def _cast(self, name: str, leaf: int, array: np.ndarray) -> np.ndarray:
        target = self.dtypes[leaf]
        if target is None:
            target = np.dtype(jax.dtypes.canonicalize_dtype(array.dtype))
            self.dtypes[leaf] = target
            self._check_pad(leaf)
        elif not np.can_cast(array.dtype, target, "same_kind"):
            fix = (
                f"the dtype argument; give a dtype that holds {array.dtype} values, "
                "or convert the sequences first"
                if self.given[leaf]
                else "the dtype of the first sequence; pass dtype= explicitly"
            )
            _checks.fail(
                self.where,
                f"{name} has dtype {array.dtype}, which does not convert safely to "
                f"{target} ({fix}).",
                TypeError,
            )
        if array.dtype != target:
            _checks.representable(
                array, target, name, self.where, hint=" Pass a wider dtype=."
            )
        return array.astype(target, copy=False)

    @property
    def structure(self):
        """The items' pytree structure (known once an item has been read)."""
        assert self.treedef is not None, "no item read yet"
        return self.treedef

    def leaf_dtype(self, leaf: int) -> np.dtype:
        """The dtype of a leaf. When every sequence of it was empty: that of
        the first empty array (int32 for empty lists), with ``pad_value``
        checked against it."""
        dtype = self.dtypes[leaf]
        if dtype is None:
            empty = self.empty_like[leaf]
            dtype = np.dtype(np.int32) if empty is None else empty[1]
            self._check_pad(leaf, dtype)
        return dtype

    def leaf_trailing(self, leaf: int) -> tuple[int, ...]:
        """The trailing shape of a leaf (that of the first empty array when
        every sequence of it was empty)."""
        trailing, empty = self.trailing[leaf], self.empty_like[leaf]
        if trailing is None and empty is not None:
            return empty[0]
        return trailing or ()


def stream(sequences, reader: Reader) -> Iterator[tuple[int, list[np.ndarray]]]:
    """``(index, leaves)`` for every item, checked lazily; ``ValueError`` when
    there is none at all."""
    empty = True
    for index, item in enumerate(sequences):
        empty = False
        yield index, reader.read(index, item)
    if empty:
        _checks.fail(reader.where, "sequences is empty; give at least one sequence.")


def read_all(sequences, reader: Reader) -> list[tuple[int, list[np.ndarray]]]:
    """Every item, checked now (so that errors come at the call)."""
    check_not_one_array(sequences, reader.where)
    return list(stream(sequences, reader))


def item_lengths(items, where: str, *, same: bool = False) -> np.ndarray:
    """The length of every item: its longest leaf, or (``same``) the one length
    that all its leaves must share."""
    lengths = np.zeros(len(items), np.int64)
    for position, (index, leaves) in enumerate(items):
        sizes = {len(leaf) for leaf in leaves}
        if same and len(sizes) > 1:
            _checks.fail(
                where,
                f"the leaves of sequences[{index}] have lengths {sorted(sizes)}; "
                "packed leaves share the time axis, so they need one length.",
            )
        lengths[position] = max(sizes)
    return lengths


class Batches(Iterator[T]):
    """An iterator over the batches of one pass that knows how many it has."""

    def __init__(self, batches: Iterator[T], count: int):
        self._batches = batches
        self._count = count

    def __next__(self) -> T:
        return next(self._batches)

    def __iter__(self) -> Batches[T]:
        return self

    def __len__(self) -> int:
        """The number of batches of the whole pass (not only those left)."""
        return self._count


class Padded(NamedTuple):
    """Sequences padded to ``[rows, length, ...]`` (one leaf)."""

    values: np.ndarray
    lengths: np.ndarray
    mask: np.ndarray


def pad_leaf(
    arrays: list[np.ndarray],
    rows: int,
    length: int,
    trailing: tuple[int, ...],
    dtype,
    pad_value,
    place: Callable[[int], tuple[int, int]] | None = None,
) -> Padded:
    """Lay ``arrays`` into ``[rows, length, ...]``: array ``i`` at the row and
    start ``place(i)`` (default: row ``i``, step 0)."""
    values = np.full((rows, length, *trailing), pad_value, dtype)
    mask = np.zeros((rows, length), np.bool_)
    lengths = np.zeros(rows, np.int32)
    for i, array in enumerate(arrays):
        if len(array) == 0:
            continue
        row, start = (i, 0) if place is None else place(i)
        values[row, start : start + len(array)] = array
        mask[row, start : start + len(array)] = True
        lengths[row] += len(array)
    return Padded(values, lengths, mask)


def pad_items(items, reader: Reader, rows: int, length: int, place=None) -> list:
    """:func:`pad_leaf` for every leaf of ``items`` (``(index, leaves)``)."""
    return [
        pad_leaf(
            [leaves[leaf] for _, leaves in items],
            rows,
            length,
            reader.leaf_trailing(leaf),
            reader.leaf_dtype(leaf),
            reader.pad_values[leaf],
            place,
        )
        for leaf in range(reader.structure.num_leaves)
    ]
