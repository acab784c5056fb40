"""Sequence metrics: token accuracy, exact match, edit distance, error rates.

Padded batches (integer arrays ``[*batch, T]`` with lengths or masks) are
computed in JAX, under ``jit`` with static shapes: the edit distance is a
row-by-row dynamic programme in one :func:`jax.lax.scan`. Ragged sequences
(lists or tuples of lists, tuples, 1-D arrays or strings of any hashable
tokens) are computed on the host with NumPy, by the same programme. Every
rate is corpus-level (total errors over total reference tokens), and a
hypothesis may be scored against several references: the closest one for
the error rates, any one for exact match.
"""

from seqmask.metrics._api import character_error_rate as character_error_rate
from seqmask.metrics._api import edit_distance as edit_distance
from seqmask.metrics._api import exact_match as exact_match
from seqmask.metrics._api import token_error_rate as token_error_rate
from seqmask.metrics._api import word_error_rate as word_error_rate
from seqmask.metrics._padded import token_accuracy as token_accuracy

__all__ = [
    "token_accuracy",
    "exact_match",
    "edit_distance",
    "token_error_rate",
    "word_error_rate",
    "character_error_rate",
]
