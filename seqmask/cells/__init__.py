"""Recurrent cells as records of pure functions.

A cell is a :class:`Cell`: a small immutable record of pure functions, like
optax's ``GradientTransformation``::

  cell = seqmask.cells.lstm(hidden_size=256)
  params = cell.init(key, input_size)            # a pytree of arrays
  carry = cell.initial_carry(params, batch_shape)
  carry, y = cell.apply(params, carry, x)        # one step, any batch dims

Cells carry no state and no framework: the parameters are a plain dict, the
carry a plain pytree. Built-in cells also split their step into an input
projection that does not depend on the carry (``project_inputs``, which
layers run once over the whole sequence as one large matmul) and the
recurrent part (``apply_projected``); a cell whose step is linear in its
carry declares it (``Cell.linear``, a :class:`LinearRecurrence`), and layers
run its whole sequence as one linear scan. Built-in cells name their gate
pre-activations (:func:`name_gates`), which is what ``skip_padding``'s
backward pass keeps. Every built-in cell checks the
parameters and the carry it is given against its own layout (at trace time)
and says which cell expected what. Gate orders and parameter layouts
follow PyTorch's ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` (kernels transposed to
``x @ W`` form, gates concatenated along the last axis), so weights convert
both ways with :mod:`seqmask.interop`.

Dtypes: parameters and carry are stored in ``param_dtype`` (float32 by
default). Without an explicit ``dtype`` a step computes in the promotion of
the input and parameter dtypes, as Flax does (bfloat16 inputs with float32
parameters compute in float32). With ``dtype=jnp.bfloat16`` the matmul
operands are bfloat16 and accumulate in the parameter dtype; the gates and
the state update always run in the accumulation dtype, and the carry keeps
``param_dtype``. Outputs ``y`` have the compute dtype.
"""

from seqmask._skipping import name_gates as name_gates
from seqmask.cells._base import Cell as Cell
from seqmask.cells._base import LinearRecurrence as LinearRecurrence
from seqmask.cells._dense import gru as gru
from seqmask.cells._dense import lstm as lstm
from seqmask.cells._dense import simple_rnn as simple_rnn
from seqmask.cells._layout import LSTMCarry as LSTMCarry
from seqmask.cells._learnable import learnable_initial_state as learnable_initial_state
from seqmask.cells._min import min_gru as min_gru
from seqmask.cells._min import min_lstm as min_lstm
from seqmask.cells._registry import NAMES as NAMES
from seqmask.cells._registry import named as named
from seqmask.cells._registry import output_size as output_size

__all__ = [
    "Cell",
    "LSTMCarry",
    "LinearRecurrence",
    "simple_rnn",
    "gru",
    "lstm",
    "learnable_initial_state",
    "min_gru",
    "min_lstm",
    "NAMES",
    "named",
    "output_size",
    "name_gates",
]
