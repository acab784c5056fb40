"""Flax Linen modules over seqmask's pure recurrent layers, and the drop-in
for ``flax.linen.RNN``.

For code bases on Linen. :class:`RNN` and :class:`Bidirectional` take Flax's
cells, constructor and call arguments and the variables of an existing
``flax.linen.RNN`` model unchanged, so migrating is an import change; they
also take seqmask's cells, and a ``mask`` of any pattern. :func:`as_cell`
turns any Linen cell into a pure :class:`seqmask.cells.Cell`.
:class:`Stacked` and :class:`LearnableInitialState` are thin modules over
:func:`seqmask.stacked` and :func:`seqmask.cells.learnable_initial_state`.

Each module creates its parameters with ``self.param`` (or, for a Flax cell,
the cell's own submodule) and calls the pure core with them. The time loop
is the core's ``jax.lax.scan``: there is no ``nn.scan`` and no other lifted
transform, so ``model.apply`` equals the pure function called with the
model's parameters, and the modules run under ``jax.jit`` and ``jax.grad``
like any function of their variables. Input sizes are inferred at ``init``,
the Linen way. Importing this module imports flax; ``import seqmask`` does
not.
"""

from seqmask.linen._cell import as_cell as as_cell
from seqmask.linen._rnn import RNN as RNN
from seqmask.linen._rnn import Bidirectional as Bidirectional
from seqmask.linen._stacked import Stacked as Stacked
from seqmask.linen._state import LearnableInitialState as LearnableInitialState

__all__ = ["as_cell", "RNN", "Bidirectional", "Stacked", "LearnableInitialState"]
