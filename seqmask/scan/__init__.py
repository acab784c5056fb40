"""The masked scan: ``jax.lax.scan`` with a mask that carries state through.

This is the primitive every recurrent layer in seqmask stands on. At a padded
step the carry passes through unchanged and the output is a pad value, so a
row's final carry is the carry after its last *valid* step, for any mask
(right or left padding, holes, rows with no valid step). Padded inputs are
replaced before the step function sees them, so whatever sits there (NaN,
Inf, garbage) changes no value and no gradient.

:func:`linear_scan` is the special case of a linear recurrence
``h_t = a_t * h_{t-1} + b_t`` with the same semantics, evaluated either as a
sequential scan or as an associative (parallel prefix) scan of depth
``O(log T)``: a padded step is the identity map and a reset a constant map,
so masks and resets cost nothing extra in the parallel form.
"""

from seqmask.scan._linear import linear_scan as linear_scan
from seqmask.scan._masked import masked_scan as masked_scan

__all__ = ["masked_scan", "linear_scan"]
