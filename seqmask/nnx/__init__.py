"""Flax NNX modules over seqmask's pure recurrent layers.

These modules hold parameters and nothing else: each one stores the exact
parameter pytree that a pure seqmask function takes, as ``nnx.Param`` leaves
with readable names (``rnn.cell.input_kernel``, ``rnn.initial_carry.h``), and
its ``__call__`` rebuilds that pytree and calls :func:`seqmask.rnn`,
:func:`seqmask.bidirectional` or :func:`seqmask.stacked`. There is no second
implementation of the math and no lifted transform, so a module and the pure
function called with ``module.pure_params()`` give the same values, and the
modules work under ``nnx.jit``, ``nnx.grad``, ``nnx.split`` / ``nnx.merge``
and orbax checkpointing like any other NNX module. Construction is eager with
explicit sizes and a keyword-only ``rngs``, as in ``flax.nnx``. Importing this
module imports flax; ``import seqmask`` does not.
"""

from seqmask._nnx_seq2seq import Seq2Seq as Seq2Seq
from seqmask.nnx._layers import RNN as RNN
from seqmask.nnx._layers import Bidirectional as Bidirectional
from seqmask.nnx._layers import LearnableInitialState as LearnableInitialState
from seqmask.nnx._layers import Stacked as Stacked

__all__ = ["LearnableInitialState", "RNN", "Bidirectional", "Stacked", "Seq2Seq"]
