"""Pytrees held as named ``nnx.Param`` leaves, shared by the NNX modules.

A pure seqmask function takes a parameter pytree; an NNX module stores its
arrays as attributes. :class:`_NamedLeaves` holds a pytree as one
``nnx.Param`` a leaf, named by the leaf's path, and rebuilds the exact pytree
on demand, so every module of ``seqmask.nnx`` hands the pure core what it was
written for.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
from flax import nnx

import seqmask._checks as _checks
from seqmask._modules import leaf_names


class _NamedLeaves(nnx.Module):
    """A pytree of arrays held as ``nnx.Param`` attributes named by their paths.

    Keeping the pytree's structure next to the names lets the module hand the
    pure functions exactly the pytree they were written for. By default a
    leaf's name is its whole path joined by ``_`` (``encoder_forward_bias``);
    with ``nest=True`` every dict becomes a child of the same kind, so the
    attribute path mirrors the pytree (``layer.forward.cell.bias``), and
    other nodes (an :class:`~seqmask.cells.LSTMCarry`) are flattened inside
    their child.
    """

    def __init__(self, tree, *, single_name: str, where: str, nest: bool = False):
        if nest and isinstance(tree, Mapping) and tree:
            names = [str(key) for key in tree]
            self._check_names(names, where)
            self._keys = tuple(tree)
            self._treedef = None
            self._names = tuple(names)
            for name, value in zip(names, tree.values(), strict=True):
                if jax.tree_util.treedef_is_leaf(jax.tree.structure(value)):
                    setattr(self, name, nnx.Param(jnp.asarray(value)))
                else:
                    child = _NamedLeaves(
                        value, single_name=name, where=where, nest=True
                    )
                    setattr(self, name, child)
            return
        leaves, treedef = jax.tree.flatten(tree)
        names = leaf_names(tree, single_name, where)
        self._check_names(names, where)
        self._keys = None
        self._treedef = treedef
        self._names = tuple(names)
        for name, leaf in zip(names, leaves, strict=True):
            setattr(self, name, nnx.Param(jnp.asarray(leaf)))

    def _check_names(self, names, where: str) -> None:
        for name in names:
            if name.startswith("_") or hasattr(type(self), name):
                _checks.fail(
                    where,
                    f"the pytree leaf name {name!r} clashes with an attribute of "
                    "the module; rename the key in the cell's parameters or carry.",
                )

    def _tree(self):
        if self._keys is not None:
            values = []
            for name in self._names:
                value = getattr(self, name)
                values.append(
                    value._tree() if isinstance(value, _NamedLeaves) else value[...]
                )
            return dict(zip(self._keys, values, strict=True))
        return jax.tree.unflatten(
            self._treedef, [getattr(self, name)[...] for name in self._names]
        )
