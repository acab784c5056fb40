"""Framework-free plumbing of the Flax modules in ``seqmask.nnx`` and
``seqmask.linen``.

Both packages speak Flax's RNN vocabulary (``seq_lengths``, ``return_carry``,
``time_major``, ``reverse``, ``keep_order``, ``initial_carry``) over the pure
core. What that vocabulary means lives here, once: :func:`sequence` checks
a call's inputs and valid steps under the names the caller used
(``seq_lengths``, not the core's ``lengths``) and the module's public name;
:func:`run_rnn`, :func:`run_bidirectional` and :func:`run_stacked` run the
core the way Flax's modules run a cell, with seqmask's masking;
:func:`adapted_cell` makes a Flax cell's functions a
:class:`~seqmask.cells.Cell` that checks its arguments as seqmask's own
cells do. The other helpers check the arguments that only the modules have,
and hold what both packages' modules share. It imports no flax, so
``seqmask.linen`` does not pull in ``flax.nnx``; each package keeps only
what is specific to its framework.

The pieces live in private modules by kind: a call (``_call``), cells and
learned carries (``_cells``), the modules' own arguments (``_arguments``);
this package re-exports them, so every caller writes ``_modules.<name>``.
"""

from seqmask._modules._arguments import check_carry_init as check_carry_init
from seqmask._modules._arguments import check_cell_record as check_cell_record
from seqmask._modules._arguments import check_flax_cell as check_flax_cell
from seqmask._modules._arguments import check_learnable_carry as check_learnable_carry
from seqmask._modules._arguments import check_lifted_options as check_lifted_options
from seqmask._modules._arguments import check_rnn as check_rnn
from seqmask._modules._arguments import has_initialize_carry as has_initialize_carry
from seqmask._modules._call import CallOptions as CallOptions
from seqmask._modules._call import RNNCall as RNNCall
from seqmask._modules._call import StackedOptions as StackedOptions
from seqmask._modules._call import Steps as Steps
from seqmask._modules._call import concatenate as concatenate
from seqmask._modules._call import resolve as resolve
from seqmask._modules._call import run_bidirectional as run_bidirectional
from seqmask._modules._call import run_rnn as run_rnn
from seqmask._modules._call import run_stacked as run_stacked
from seqmask._modules._call import sequence as sequence
from seqmask._modules._call import stacked_options as stacked_options
from seqmask._modules._cells import EMBED_HINT as EMBED_HINT
from seqmask._modules._cells import ZEROS as ZEROS
from seqmask._modules._cells import Carry as Carry
from seqmask._modules._cells import Initializer as Initializer
from seqmask._modules._cells import Params as Params
from seqmask._modules._cells import adapted_cell as adapted_cell
from seqmask._modules._cells import broadcast_learned as broadcast_learned
from seqmask._modules._cells import carry_template as carry_template
from seqmask._modules._cells import check_flax_params as check_flax_params
from seqmask._modules._cells import from_named_dicts as from_named_dicts
from seqmask._modules._cells import layer_cells as layer_cells
from seqmask._modules._cells import leaf_names as leaf_names
from seqmask._modules._cells import learned_carry_cell as learned_carry_cell
from seqmask._modules._cells import named_dicts as named_dicts
