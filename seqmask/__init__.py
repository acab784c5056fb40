"""seqmask: variable-length sequence learning in pure JAX.

Masked recurrent scans that carry the previous state through padded steps,
recurrent cells as pure functions, weighted sequence losses and explicit
carry threading. The top level holds the scan and the layer functions; each
other concept has its own module (``seqmask.masks``, ``seqmask.cells``, ...).
Flax modules live in ``seqmask.nnx`` and ``seqmask.linen`` and are imported
only on request, so ``import seqmask`` never imports flax.
"""

from seqmask import attention as attention
from seqmask import carry as carry
from seqmask import cells as cells
from seqmask import data as data
from seqmask import decoding as decoding
from seqmask import interop as interop
from seqmask import losses as losses
from seqmask import masks as masks
from seqmask import metrics as metrics
from seqmask import seq2seq as seq2seq
from seqmask import weights as weights
from seqmask.layers import bidirectional as bidirectional
from seqmask.layers import init_bidirectional as init_bidirectional
from seqmask.layers import init_stacked as init_stacked
from seqmask.layers import rnn as rnn
from seqmask.layers import stacked as stacked
from seqmask.scan import linear_scan as linear_scan
from seqmask.scan import masked_scan as masked_scan

__version__ = "0.1.0"

__all__ = [
    "attention",
    "carry",
    "cells",
    "data",
    "decoding",
    "interop",
    "losses",
    "masks",
    "metrics",
    "seq2seq",
    "weights",
    "rnn",
    "bidirectional",
    "stacked",
    "init_bidirectional",
    "init_stacked",
    "masked_scan",
    "linear_scan",
    "__version__",
]
