"""Cells for the modules: Flax cells' functions as checked
:class:`~seqmask.cells.Cell` records, learned initial carries (their
templates, leaf names and broadcast) and the cells of a stack."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

import seqmask._checks as _checks
from seqmask import cells as _cells
from seqmask._modules._arguments import (
    as_cell_hint,
    check_carry_init,
    check_cell_record,
)
from seqmask.cells import Cell

Carry = Any
Params = Any
Initializer = Callable[..., jax.Array]

ZEROS: Initializer = jax.nn.initializers.zeros

# What a recurrent layer or cell says to inputs that are not floating point.
EMBED_HINT = " Embed integer tokens first (e.g. a lookup table)."


def check_flax_params(
    params, template, name: str, where: str, argument: str, input_size=None
) -> None:
    """``params`` have the structure, shapes and dtypes of ``template``, the
    parameters of the Flax cell ``name`` (for inputs of ``input_size``)."""
    size = "" if input_size is None else f" for inputs of size {input_size}"
    _checks.tree_like(
        params,
        template,
        argument,
        where,
        expected_from=f"the parameters of {name}{size}",
        hint=" Were these parameters made for another cell or input size?",
    )


def adapted_cell(
    name: str,
    hidden_size: int | None,
    init: Callable,
    initial_carry: Callable,
    apply: Callable,
    check_params: Callable,
    *,
    own_carry: bool = True,
) -> Cell:
    """A Flax cell's pure functions as a :class:`~seqmask.cells.Cell` whose
    functions check their arguments first, as seqmask's own cells do.

    ``init`` gets a PRNG key; ``initial_carry`` a shape; ``apply`` floating
    inputs ``[*batch, features]`` (integer token ids are refused, not read
    as features), parameters that ``check_params`` accepts for that many
    features, and (for a cell with its ``own_carry``) a carry of the
    structure, shapes and dtypes of ``initial_carry(params, batch)``: the
    Flax cell's layout, e.g. ``(c, h)`` for its LSTM cells. Errors start
    with ``name`` and the function.
    """

    def checked_init(key, input_size):
        _checks.prng_key(key, "key", f"{name}.init")
        return init(key, input_size)

    def checked_initial_carry(params, batch_shape=()):
        where = f"{name}.initial_carry"
        check_params(params, where)
        batch = _checks.shape_tuple(batch_shape, "batch_shape", where)
        return initial_carry(params, batch)

    def checked_apply(params, carry, x):
        where = f"{name}.apply"
        x = _checks.floating_array(x, "x", where, hint=EMBED_HINT)
        _checks.min_rank(x, 1, "x", where, "[*batch, features]")
        check_params(params, where, x.shape[-1])
        if own_carry:
            batch = tuple(x.shape[:-1])
            _checks.tree_like(
                carry,
                jax.eval_shape(lambda params: initial_carry(params, batch), params),
                "carry",
                where,
                expected_from=f"{name}'s carry for batch shape {batch}",
                hint=" The carry keeps the Flax cell's layout ((c, h) for its LSTM "
                "cells): build it with the cell's initial_carry.",
                dtype_error=TypeError,
            )
        return apply(params, carry, x)

    return Cell(
        checked_init,
        checked_initial_carry,
        checked_apply,
        name=name,
        hidden_size=hidden_size,
        check_params=check_params,
    )


@functools.lru_cache(maxsize=256)
def learned_carry_cell(cell: Cell, carry_init: Initializer) -> Cell:
    """One learned-initial-state wrapper per (cell, initialiser).

    Modules built alike then share their pure cell, hence their NNX graph
    definition, so ``nnx.jit`` reuses compilations across instances.
    """
    return _cells.learnable_initial_state(cell, carry_init=carry_init)


def carry_template(cell: Cell, input_size: int = 1):
    """The cell's unbatched carry as shapes and dtypes (no arrays made).

    The built-in cells' carries do not depend on the input size; a cell
    whose parameters are fixed to one input size (a Flax NNX cell through
    ``seqmask.nnx.as_cell``) is traced with ``input_size``.
    """
    return jax.eval_shape(
        lambda key: cell.initial_carry(cell.init(key, input_size), ()),
        jax.random.key(0),
    )


def _key_name(key) -> str:
    for attribute in ("name", "key", "idx"):
        if hasattr(key, attribute):
            return str(getattr(key, attribute))
    return str(key)


def leaf_names(tree, single_name: str, where: str) -> list[str]:
    """One readable name a leaf: its path joined by ``_`` (``h``, ``c``, ...).

    A carry that is one array is named ``single_name``; the positions of a
    plain tuple carry (Flax's ``(c, h)``) are named ``carry_0``, ``carry_1``.
    """
    paths = [path for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]
    if paths == [()]:
        return [single_name]
    names = ["_".join(_key_name(key) for key in path) for path in paths]
    names = [f"carry_{name}" if name[:1].isdigit() else name for name in names]
    if len(set(names)) != len(names):
        _checks.fail(
            where, f"the pytree's leaf paths do not give distinct names: {names}."
        )
    return names


def named_dicts(tree, where: str):
    """``tree`` (nested dicts of a layer's parameters) with every learned
    carry (the value of an ``"initial_carry"`` key: an
    :class:`~seqmask.cells.LSTMCarry`, Flax's ``(c, h)``) turned into a dict
    of its leaves named by :func:`leaf_names`, the form Flax serialisation
    keeps (it restores such nodes as dicts without a target). Everything
    else, the cells' own parameters included, is kept as it is."""
    if not isinstance(tree, Mapping):
        return tree
    named = {}
    for key, value in tree.items():
        if _is_carry_node(key, value):  # one array (a GRU's) stays one array
            names = leaf_names(value, "h", where)
            value = dict(zip(names, jax.tree.leaves(value), strict=True))
        named[key] = named_dicts(value, where) if isinstance(value, Mapping) else value
    return named


def from_named_dicts(named, template, where: str):
    """The inverse of :func:`named_dicts`: ``named`` in the structure of
    ``template`` (arrays or ``jax.ShapeDtypeStruct``)."""
    if not isinstance(template, Mapping):
        return named
    restored = {}
    for key, value in template.items():
        if _is_carry_node(key, value):
            names = leaf_names(value, "h", where)
            leaves = [named[key][name] for name in names]
            restored[key] = jax.tree.unflatten(jax.tree.structure(value), leaves)
        else:
            restored[key] = from_named_dicts(named[key], value, where)
    return restored


def _is_carry_node(key, value) -> bool:
    """A learned carry stored as one node that is neither an array nor a
    dict (an ``LSTMCarry``, a tuple)."""
    return (
        key == "initial_carry"
        and not jax.tree_util.treedef_is_leaf(jax.tree.structure(value))
        and not isinstance(value, Mapping)
    )


def broadcast_learned(learned, batch_shape, where: str):
    """A learned unbatched carry broadcast over ``batch_shape`` (checked)."""
    batch = _checks.shape_tuple(batch_shape, "batch_shape", where)
    return jax.tree.map(
        lambda leaf: jnp.broadcast_to(leaf, (*batch, *leaf.shape)), learned
    )


def layer_cells(
    cell,
    num_layers,
    where: str,
    *,
    learnable_initial_state: bool = False,
    carry_init: Initializer = ZEROS,
) -> list[Cell]:
    """One pure cell a layer of a stack, each wrapped to learn its initial
    carry when asked: ``cell`` for ``num_layers`` layers, or one cell a
    layer."""
    if isinstance(cell, Cell):
        if num_layers is None:
            _checks.fail(where, "give num_layers when cell is a single cell.")
        cells = [cell] * _checks.positive_int(num_layers, "num_layers", where)
    elif isinstance(cell, (list, tuple)) and cell:
        cells = [check_cell_record(c, where) for c in cell]
        if num_layers is not None and num_layers != len(cells):
            _checks.fail(
                where, f"num_layers={num_layers} but {len(cells)} cells were given."
            )
    else:
        _checks.fail(
            where,
            "cell must be a seqmask.cells.Cell or a non-empty sequence of them "
            f"(one a layer){as_cell_hint(where)}; got {_checks.describe(cell)}.",
            TypeError,
        )
    if _checks.flag(learnable_initial_state, "learnable_initial_state", where):
        carry_init = check_carry_init(carry_init, where)
        cells = [learned_carry_cell(c, carry_init) for c in cells]
    return cells
