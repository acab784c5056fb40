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

Skipping padding (``skip_padding``): ``K`` (an int) cuts time into chunks
of ``K`` steps and skips every chunk in which no row has a valid step, in
the forward and in the backward pass; ``True`` picks ``K`` (``remat``'s
chunk when ``remat`` is an int, else about 16). A skipped chunk still
applies its ``resets`` (a reset at a padded step sets the carry, see
:func:`seqmask.masked_scan`). Values and gradients equal those of
``False``. The steps of the other chunks run in a
:func:`jax.lax.while_loop` (``unroll`` does not apply to it) with a
hand-written backward pass, which keeps,
for each step that runs and no other, the step's inputs and its gate
pre-activations (seqmask's cells name them with
:func:`seqmask.cells.name_gates`; a cell that names nothing is recomputed
step by step in the backward pass, as with ``remat=True``). So nothing is
paid for a skipped chunk and little when nothing is skipped
(``benchmarks/README.md``), and the backward pass keeps less memory than
the plain scan. The price: the derivative is reverse mode only
(:func:`jax.grad`, :func:`jax.vjp`, and forward over reverse such as
Hessian-vector products and :func:`jax.hessian`); :func:`jax.jvp` and
:func:`jax.jacfwd` of the layer raise, so ``False`` stays the default.
With ``remat`` an int, the chunks are checkpointed instead (``remat``'s
chunks and the skipped ones nest, and forward mode works). Without a mask
there is nothing to skip; cells with a linear recurrence ignore it (their
cost is one input projection over the whole sequence and an elementwise
scan). Under :func:`jax.vmap` over a batch of masks the loop runs as many
steps as the example that runs most.
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
