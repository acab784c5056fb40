"""``learnable_initial_state``: a cell whose initial carry is a parameter."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from seqmask.cells._base import (
    Cell,
    Initializer,
)


def learnable_initial_state(
    cell: Cell, *, carry_init: Initializer = jax.nn.initializers.zeros
) -> Cell:
    """Wrap ``cell`` so that its initial carry is a trained parameter.

    The wrapped cell's parameters are ``{"cell": <cell params>,
    "initial_carry": <one unbatched carry>}``; ``initial_carry(params,
    batch_shape)`` broadcasts the learned carry over ``batch_shape``, so every
    row that starts (or is reset, see ``seqmask.rnn``'s ``resets``) from it
    sends gradient to it. ``apply`` is the inner cell's.

    Args:
      cell: any :class:`Cell`.
      carry_init: initialiser for the learned carry (zeros by default, so the
        wrapped cell starts out identical to the inner one).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from seqmask.cells import learnable_initial_state, lstm
      >>> cell = learnable_initial_state(lstm(3))
      >>> params = cell.init(jax.random.key(0), 2)
      >>> params["initial_carry"].h.shape
      (3,)
      >>> cell.initial_carry(params, (5,)).c.shape
      (5, 3)
    """
    if not isinstance(cell, Cell):
        raise TypeError(
            f"learnable_initial_state: cell must be a seqmask Cell; got "
            f"{type(cell).__name__}."
        )

    def init(key, input_size):
        k_cell, k_carry = jax.random.split(key)
        params = cell.init(k_cell, input_size)
        template = cell.initial_carry(params, ())
        leaves, treedef = jax.tree.flatten(template)
        keys = jax.random.split(k_carry, max(len(leaves), 1))
        learned = [
            carry_init(k, x.shape, x.dtype) for k, x in zip(keys, leaves, strict=True)
        ]
        return {"cell": params, "initial_carry": jax.tree.unflatten(treedef, learned)}

    def initial_carry(params, batch_shape=()):
        return jax.tree.map(
            lambda x: jnp.broadcast_to(x, (*batch_shape, *x.shape)),
            params["initial_carry"],
        )

    def apply(params, carry, x):
        return cell.apply(params["cell"], carry, x)

    inner_project, inner_apply = cell.project_inputs, cell.apply_projected
    split = inner_project is not None and inner_apply is not None

    def project_inputs(params, xs):
        assert inner_project is not None
        return inner_project(params["cell"], xs)

    def apply_projected(params, carry, projected):
        assert inner_apply is not None
        return inner_apply(params["cell"], carry, projected)

    inner_sequence = cell.apply_sequence

    def apply_sequence(params, carry, xs, **options):
        assert inner_sequence is not None
        return inner_sequence(params["cell"], carry, xs, **options)

    return Cell(
        init=init,
        initial_carry=initial_carry,
        apply=apply,
        project_inputs=project_inputs if split else None,
        apply_projected=apply_projected if split else None,
        apply_sequence=apply_sequence if inner_sequence is not None else None,
        name=f"learnable_initial_state({cell.name})",
        hidden_size=cell.hidden_size,
    )
