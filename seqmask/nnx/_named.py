"""Pytrees held as named ``nnx.Param`` leaves, shared by the NNX modules.

A pure seqmask function takes a parameter pytree; an NNX module stores its
arrays as attributes. :class:`_NamedLeaves` holds a pytree as one
``nnx.Param`` a leaf, named by the leaf's path, and rebuilds the exact pytree
on demand, so every module of ``seqmask.nnx`` hands the pure core what it was
written for.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from seqmask._modules import _leaf_names


class _NamedLeaves(nnx.Module):
    """A pytree of arrays held as ``nnx.Param`` attributes named by their paths.

    Keeping the pytree's structure next to the names lets the module hand the
    pure functions exactly the pytree they were written for.
    """

    def __init__(self, tree, *, single_name: str, where: str):
        leaves, treedef = jax.tree.flatten(tree)
        names = _leaf_names(tree, single_name, where)
        for name in names:
            if name.startswith("_") or hasattr(type(self), name):
                raise ValueError(
                    f"{where}: the pytree leaf name {name!r} clashes with an "
                    "attribute of the module; rename the key in the cell's "
                    "parameters or carry."
                )
        self._treedef = treedef
        self._names = tuple(names)
        for name, leaf in zip(names, leaves, strict=True):
            setattr(self, name, nnx.Param(jnp.asarray(leaf)))

    def _tree(self):
        return jax.tree.unflatten(
            self._treedef, [getattr(self, name)[...] for name in self._names]
        )
