"""Argument checks the data layouts share."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jax
import numpy as np

PyTree = Any


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
