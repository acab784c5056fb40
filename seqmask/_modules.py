"""Framework-free plumbing shared by the Flax modules in ``seqmask.nnx`` and
``seqmask.linen``: cells by name, readable names for carry leaves, argument
checks. It imports no flax, so ``seqmask.linen`` does not pull in
``flax.nnx`` and neither module keeps a copy of the other's helpers.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

from seqmask import cells as _cells
from seqmask.cells import Cell
from seqmask.cells import output_size as _output_size  # noqa: F401 (for nnx, linen)

Initializer = Callable[..., jax.Array]

_CELL_FACTORIES: dict[str, Callable[..., Cell]] = {
    "lstm": _cells.lstm,
    "gru": _cells.gru,
    "simple_rnn": _cells.simple_rnn,
}
_MERGES = ("concat", "sum", "none")


def _resolve_cell(cell, hidden_size, cell_kwargs, where: str) -> Cell:
    """The :class:`Cell` named by ``cell`` (or ``cell`` itself), checked."""
    hidden_size = _check_size(hidden_size, f"{where}: hidden_size")
    if isinstance(cell, str):
        if cell not in _CELL_FACTORIES:
            raise ValueError(
                f"{where}: unknown cell {cell!r}; expected one of "
                f"{sorted(_CELL_FACTORIES)} or a seqmask.cells.Cell."
            )
        options = tuple(sorted(dict(cell_kwargs or {}).items()))
        try:
            hash(options)
        except TypeError:  # e.g. a list-valued option: build, do not cache
            return _CELL_FACTORIES[cell](hidden_size, **dict(options))
        return _named_cell(cell, hidden_size, options)
    if isinstance(cell, Cell):
        if cell_kwargs:
            raise TypeError(
                f"{where}: cell_kwargs apply to a cell given by name; got the Cell "
                f"{cell.name!r} with cell_kwargs {sorted(cell_kwargs)}. Pass the "
                "options to the cell's factory instead."
            )
        if cell.hidden_size is not None and cell.hidden_size != hidden_size:
            raise ValueError(
                f"{where}: hidden_size={hidden_size} but the cell {cell.name!r} has "
                f"hidden_size={cell.hidden_size}."
            )
        return cell
    raise TypeError(
        f"{where}: cell must be one of {sorted(_CELL_FACTORIES)} or a "
        f"seqmask.cells.Cell; got {type(cell).__name__}."
    )


@functools.lru_cache(maxsize=256)
def _named_cell(name: str, hidden_size: int, options: tuple) -> Cell:
    """One :class:`Cell` object per configuration.

    Modules built alike then share their cell, hence their ``nnx.split``
    graph definition, so ``nnx.jit`` and ``jax.jit`` reuse compilations
    across instances (a restored or re-created model compiles nothing new).
    """
    return _CELL_FACTORIES[name](hidden_size, **dict(options))


@functools.lru_cache(maxsize=256)
def _with_learned_carry(cell: Cell, carry_init: Initializer) -> Cell:
    return _cells.learnable_initial_state(cell, carry_init=carry_init)


def _check_cell_record(cell, where: str) -> None:
    if not isinstance(cell, Cell):
        raise TypeError(
            f"{where}: cell must be a seqmask.cells.Cell (e.g. "
            f"seqmask.cells.lstm(128)); got {type(cell).__name__}."
        )


def _check_size(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int; got {value!r}.")
    return value


def _check_inputs(xs, in_features: int, where: str) -> jax.Array:
    xs = jnp.asarray(xs)
    if xs.ndim < 2 or xs.shape[-1] != in_features:
        raise ValueError(
            f"{where}: xs must be [*batch, time, {in_features}] (in_features="
            f"{in_features}); got shape {tuple(xs.shape)}."
        )
    return xs


def _batch_shape(value, where: str) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,)
    if not isinstance(value, (tuple, list)) or not all(
        isinstance(size, int) and not isinstance(size, bool) and size >= 0
        for size in value
    ):
        raise TypeError(
            f"{where}: batch_shape must be an int or a sequence of non-negative "
            f"ints; got {value!r}."
        )
    return tuple(value)


def _carry_template(cell: Cell):
    """The cell's unbatched carry as shapes and dtypes (no arrays made).

    The carry does not depend on the input size, so any size traces it.
    """
    return jax.eval_shape(
        lambda key: cell.initial_carry(cell.init(key, 1), ()), jax.random.key(0)
    )


def _key_name(key) -> str:
    for attribute in ("name", "key", "idx"):
        if hasattr(key, attribute):
            return str(getattr(key, attribute))
    return str(key)


def _leaf_names(tree, single_name: str, where: str) -> list[str]:
    """One readable name a leaf: its path joined by ``_`` (``h``, ``c``, ...)."""
    paths = [path for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]
    if paths == [()]:
        return [single_name]
    names = ["_".join(_key_name(key) for key in path) for path in paths]
    if len(set(names)) != len(names):
        raise ValueError(
            f"{where}: the pytree's leaf paths do not give distinct names: {names}."
        )
    return names
