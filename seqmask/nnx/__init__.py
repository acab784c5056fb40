"""Flax NNX modules over seqmask's pure recurrent layers, and the drop-in
for ``flax.nnx.RNN``.

:class:`RNN` and :class:`Bidirectional` take Flax's NNX cells, constructor
and call arguments, and hold what ``flax.nnx.RNN`` holds under the same
names, so the state of an existing model loads unchanged and migrating is
an import change; they also take seqmask's cells, and a ``mask`` of any
pattern. :func:`as_cell` turns any NNX cell into a pure
:class:`seqmask.cells.Cell`. :class:`Stacked`, :class:`LearnableInitialState`
and :class:`Seq2Seq` are thin modules over :func:`seqmask.stacked`,
:func:`seqmask.cells.learnable_initial_state` and
:func:`seqmask.seq2seq.encoder_decoder`.

The modules hold parameters and nothing else: each ``__call__`` rebuilds the
exact parameter pytree that a pure seqmask function takes and calls it.
There is no second implementation of the math and no lifted transform, so a
module and the pure function called with ``module.pure_params()`` give the
same values, and the modules work under ``nnx.jit``, ``nnx.grad``,
``nnx.split`` / ``nnx.merge`` and orbax checkpointing like any other NNX
module. Construction is eager with explicit sizes, as in ``flax.nnx``.
Importing this module imports flax; ``import seqmask`` does not.
"""

from seqmask.nnx._cell import as_cell as as_cell
from seqmask.nnx._rnn import RNN as RNN
from seqmask.nnx._rnn import Bidirectional as Bidirectional
from seqmask.nnx._seq2seq import Seq2Seq as Seq2Seq
from seqmask.nnx._stacked import Stacked as Stacked
from seqmask.nnx._state import LearnableInitialState as LearnableInitialState

__all__ = [
    "as_cell",
    "RNN",
    "Bidirectional",
    "Stacked",
    "LearnableInitialState",
    "Seq2Seq",
]
