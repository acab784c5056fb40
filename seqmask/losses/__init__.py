r"""Weighted sequence losses with an explicit choice of normalisation.

Every loss has the signature ``name(predictions, targets, weights=None, *,
reduction="weighted_mean", **options)``. It first computes an *element-wise*
loss, one value per element, where the element is a token for the softmax
cross-entropies and the KL divergence (the class axis is reduced), a vector for
:func:`cosine_distance` (the last axis is reduced), and a feature for the
sigmoid and regression losses. It then weights and reduces that loss. Axis 0 is
the batch axis; every axis after it belongs to the sequence (time, features).
Swap the outputs of a time-major layer first (``jnp.swapaxes(ys, 0, 1)``):
``"sequence_mean"`` would average over time steps instead of sequences, and
no shape check can tell when the batch and time sizes are equal.
Build weights from the *targets* with :mod:`seqmask.weights`, never from the
source mask of a seq2seq model, whose length differs.

**Weights.** ``None`` means all ones. Otherwise ``weights`` may not have more
axes than the element-wise loss and must broadcast to it *without enlarging
it*. Two alignments are tried, in this order:

1. *Leading* (batch first): trailing singleton axes are appended, so ``[B]``
   is a per-sequence weight and ``[B, T]`` a per-step weight against a
   ``[B, T, F]`` loss.
2. *Right* (numpy's rule): leading singleton axes are prepended, so ``[F]``
   is a per-feature weight against a ``[B, T, F]`` loss.

When both fit (a ``[T]`` weight against a ``[T, T]`` loss, or ``[F]`` against
``[B, T, F]`` with ``F == B``), leading alignment wins; write the singleton
axes yourself (``w[None, None, :]``) to mean the other. When neither fits a
``ValueError`` names both shapes.

**Zero weight means absent.** Inputs at zero-weight elements are *selected*
to safe values before the loss is computed and the element loss is selected to
0 after, so NaN or Inf there changes neither the value nor any gradient, and
the gradient with respect to those inputs (and to those weights) is exactly 0.
Negative weights are allowed and used as given; they count with their sign in
the ``"weighted_mean"`` and ``"sequence_mean"`` denominators.

**Reductions.** With :math:`\ell` the element-wise loss, :math:`w` the weights
broadcast to its shape and :math:`N` its number of elements:

.. math::
  \texttt{"none"}: w \odot \ell, \quad
  \texttt{"sum"}: \sum_i w_i \ell_i, \quad
  \texttt{"mean"}: \frac{1}{N} \sum_i w_i \ell_i, \quad
  \texttt{"weighted_mean"}: \frac{\sum_i w_i \ell_i}{\sum_i w_i},

and ``"sequence_mean"`` takes the weighted mean within each sequence
:math:`b` (over every axis but 0), then the plain mean over the set :math:`S`
of sequences whose weights do not sum to 0:

.. math::
  \frac{1}{|S|} \sum_{b \in S}
  \frac{\sum_{i} w_{bi} \ell_{bi}}{\sum_{i} w_{bi}}.

A zero denominator gives exactly 0, with a zero (not NaN) gradient; an
unknown reduction raises a ``ValueError`` listing the valid ones.

**Packed rows.** ``segment_ids`` (integers ``[B, T]``, negative at padding,
as :attr:`seqmask.data.Packing.segment_ids`) says which sequence each step
belongs to when several share a row. Steps with a negative id are absent
(weight 0); ``"sequence_mean"`` takes the weighted mean within each segment
(a run of one id within a row; padding inside it does not split it, and
rows may reuse ids, e.g. numbered from 0 in every row) instead of each row;
``"mean"`` divides by the number of elements in segments; ``"none"``, ``"sum"`` and
``"weighted_mean"`` need nothing more. So every reduction over packed rows
equals the same reduction over the sequences one per row (given their own
ids, e.g. the row index at valid steps), and ``"mean"`` and
``"sequence_mean"`` equal those over the sequences without padding.

**Checks.** Shapes and dtypes are checked when the function is traced.
Values are checked where the weight is not zero: sigmoid labels in
``[0, 1]``, target distributions non-negative and summing to 1,
``kl_divergence``'s log-predictions log-probabilities, hyperparameters in
range. Concrete values raise a ``ValueError`` at once; traced ones are
reported by :func:`jax.experimental.checkify.checkify` (and cost nothing
under plain ``jit``). Integer labels of
:func:`softmax_cross_entropy_with_integer_labels` are not checked: an
out-of-range label of a counted token gives NaN, deliberately loud.

**Precision.** Losses compute in float32 whatever the input dtype (bfloat16
and float16 included) and return float32; float64 inputs (under x64) compute
and return float64.
"""

from seqmask.losses._classification import kl_divergence as kl_divergence
from seqmask.losses._classification import (
    sigmoid_binary_cross_entropy as sigmoid_binary_cross_entropy,
)
from seqmask.losses._classification import sigmoid_focal_loss as sigmoid_focal_loss
from seqmask.losses._classification import (
    softmax_cross_entropy as softmax_cross_entropy,
)
from seqmask.losses._classification import (
    softmax_cross_entropy_with_integer_labels as softmax_cross_entropy_with_integer_labels,  # noqa: E501
)
from seqmask.losses._reduce import REDUCTIONS as REDUCTIONS
from seqmask.losses._reduce import Reduction as Reduction
from seqmask.losses._regression import absolute_error as absolute_error
from seqmask.losses._regression import cosine_distance as cosine_distance
from seqmask.losses._regression import huber_loss as huber_loss
from seqmask.losses._regression import log_cosh as log_cosh
from seqmask.losses._regression import squared_error as squared_error

__all__ = [
    "softmax_cross_entropy_with_integer_labels",
    "softmax_cross_entropy",
    "sigmoid_binary_cross_entropy",
    "sigmoid_focal_loss",
    "kl_divergence",
    "squared_error",
    "absolute_error",
    "huber_loss",
    "log_cosh",
    "cosine_distance",
    "REDUCTIONS",
    "Reduction",
]
