"""Recurrent layers: one cell over a sequence, both directions, a stack.

These functions turn a :class:`seqmask.cells.Cell` and its parameters into a
layer over a padded batch. They take sequences batch-major by default
(``[*batch, time, features]``), a boolean ``mask`` ``[*batch, time]`` or integer
``lengths`` ``[*batch]``, and an explicit carry in and out, so that stateful
training is a matter of passing the returned carry back in. Under the hood
every layer is one masked scan over time (one linear scan for cells that
declare a linear recurrence); on accelerators the input projection of
built-in cells is hoisted out of the scan as one large matmul (``hoist``).
A layer call checks its inputs, resolves its mask and zeroes its padded
inputs once, whatever the number of directions or layers. With
``skip_padding`` the time loop skips the chunks of steps where every row is
padding, forward and backward; with ``resets`` several sequences packed into
a row run as if alone, in both directions and every layer.

Skipping padding (``skip_padding``): ``K`` (an int) runs time in chunks of
``K`` steps (the last one shorter) and skips every chunk in which no row has
a valid step, in the forward and in the backward pass; ``True`` picks ``K``:
``remat``'s chunk when ``remat`` is an int, else about 16, the time axis cut
into chunks of equal length (padded by fewer steps than there are chunks).
A skipped chunk still applies its ``resets`` (a reset at a padded step sets
the carry, see :func:`seqmask.masked_scan`). Values and gradients equal those
of ``False``. The chunks are checkpointed (as ``remat=K``: the backward pass
recomputes the chunks that run), which is what makes a skipped chunk free in
both passes, and costs a little time when nothing is skipped
(``benchmarks/README.md``); with ``remat`` an int, its chunks and the skipped
ones nest. Without a mask there is nothing to skip; cells with a linear
recurrence ignore it (their cost is one input projection over the whole
sequence and an elementwise scan). Under :func:`jax.vmap` over a batch of
masks the choice to skip is batched, so both branches run and nothing is
skipped: give the extra axes as batch axes of ``xs`` instead (``[*batch,
time, features]``).
"""

from seqmask.layers._compose import MERGES as MERGES
from seqmask.layers._compose import bidirectional as bidirectional
from seqmask.layers._compose import init_bidirectional as init_bidirectional
from seqmask.layers._compose import init_stacked as init_stacked
from seqmask.layers._compose import stacked as stacked
from seqmask.layers._rnn import rnn as rnn

__all__ = [
    "rnn",
    "bidirectional",
    "stacked",
    "init_bidirectional",
    "init_stacked",
    "MERGES",
]
