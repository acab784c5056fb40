"""The learned initial carry of a recurrent module: :class:`LearnableInitialState`."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax

import seqmask._checks as _checks
import seqmask._modules as _modules
from seqmask._modules import Carry, Initializer
from seqmask.cells import Cell
from seqmask.linen._cell import checked_param

__all__ = ["LearnableInitialState"]


class LearnableInitialState(nn.Module):
    """A trained initial carry for ``cell``, broadcast to any batch shape.

    One parameter per carry leaf, named by its pytree path (``h`` and ``c``
    for an :class:`~seqmask.cells.LSTMCarry`; a carry that is one array, as
    a GRU's, is ``h``; Flax's tuple ``(c, h)`` gives ``carry_0``,
    ``carry_1``), each of the unbatched leaf's shape. Every row that starts
    from the broadcast carry sends gradient to it; rows given another carry
    and never reset send exactly none. With the pure core, pass
    ``initial_carry=`` and ``reset_to=`` the result (see :func:`seqmask.rnn`);
    :class:`RNN` does both when ``learnable_initial_state=True``.

    Attributes:
      cell: a :class:`seqmask.cells.Cell`; only its carry structure, shapes
        and dtypes are used.
      carry_init: initialiser ``(key, shape, dtype) -> array`` of each leaf.
      in_features: the input size the carry's shapes are traced with (only
        cells whose carry depends on it, or whose parameters are fixed to one
        input size, need the true one).

    Examples:
      >>> import jax
      >>> import seqmask.linen
      >>> state = seqmask.linen.LearnableInitialState(seqmask.cells.lstm(3))
      >>> carry, variables = state.init_with_output(jax.random.key(0), (2, 5))
      >>> carry.h.shape, variables["params"]["c"].shape
      ((2, 5, 3), (3,))
    """

    cell: Cell
    carry_init: Initializer = _modules.ZEROS
    in_features: int = 1

    @nn.compact
    def __call__(self, batch_shape: int | Sequence[int] = ()) -> Carry:
        """The learned carry broadcast over ``batch_shape``; at ``init``, one
        parameter a carry leaf is made with ``carry_init``.

        Args:
          batch_shape: leading axes to add (an int or a sequence of ints);
            ``()`` gives the unbatched carry itself.

        Returns:
          The carry, every leaf ``[*batch_shape, *leaf_shape]``.
        """
        where = "seqmask.linen.LearnableInitialState"
        cell = _modules.check_cell_record(self.cell, where)
        carry_init = _modules.check_carry_init(self.carry_init, where)
        in_features = _checks.positive_int(self.in_features, "in_features", where)
        template = _modules.carry_template(cell, in_features)
        leaves, treedef = jax.tree.flatten(template)
        names = _modules.leaf_names(template, "h", where)
        learned = [
            checked_param(self, name, _leaf_init(carry_init, leaf), where)
            for name, leaf in zip(names, leaves, strict=True)
        ]
        learned = jax.tree.unflatten(treedef, learned)
        return _modules.broadcast_learned(learned, batch_shape, where)


def _leaf_init(carry_init: Initializer, leaf):
    """``key -> carry_init(key, shape, dtype)`` for one leaf of the carry."""
    return lambda key: carry_init(key, leaf.shape, leaf.dtype)
