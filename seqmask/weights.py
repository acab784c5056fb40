r"""Loss weights built from what users have: lengths, masks, targets, classes.

The losses in :mod:`seqmask.losses` take weights of any shape that broadcasts
to their element-wise loss, with zero meaning *absent*. This module builds
those weights: per step from sequence lengths, masks or padded targets, per
feature from sparse targets, per class from a table, and combines per-sequence,
per-step and per-feature factors into one array. Every builder returns float32
unless given another ``dtype``. Build loss weights from the *targets*: in
seq2seq the source mask has another length and plays no part in the loss.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import seqmask._checks as _checks
from seqmask import _sharding, _weighting, masks
from seqmask._numerics import wider

__all__ = [
    "from_lengths",
    "from_mask",
    "from_targets",
    "nonzero",
    "class_weights",
    "combine",
    "normalize_per_sequence",
]


def from_lengths(
    lengths: jax.typing.ArrayLike,
    max_length: int,
    *,
    dtype: jax.typing.DTypeLike = jnp.float32,
) -> jax.Array:
    r"""Per-step weights of right-padded sequences from their lengths.

    .. math::
      w_{\ldots t} = [\, t < \mathrm{lengths}_{\ldots} \,], \qquad
      0 \le t < \mathrm{max\_length}.

    The mask is :func:`seqmask.masks.lengths_to_mask`'s, so any integer dtype
    of ``lengths`` works (``uint8`` lengths with ``max_length > 256``
    included).

    Args:
      lengths: integer lengths in ``[0, max_length]``, any batch shape
        ``[*batch]``. Lengths outside raise a ``ValueError`` when concrete and
        are reported by ``checkify`` when traced; clip them first
        (``jnp.clip(lengths, 0, max_length)``) if that is what you mean.
      max_length: the time axis length ``T``, a Python int.
      dtype: dtype of the result.

    Returns:
      Weights of shape ``[*batch, max_length]``.

    Raises:
      TypeError: if ``lengths`` is not integer or ``max_length`` not an int.
      ValueError: if ``max_length`` is negative or a length lies outside
        ``[0, max_length]``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from seqmask import weights
      >>> print(weights.from_lengths(jnp.array([3, 1, 0]), 4))
      [[1. 1. 1. 0.]
       [1. 0. 0. 0.]
       [0. 0. 0. 0.]]
    """
    where = "weights.from_lengths"
    dtype = _checks.dtype(dtype, "dtype", where)
    lengths = _checks.integer_array(lengths, "lengths", where)
    max_length = _checks.non_negative_int(max_length, "max_length", where)
    _checks.lengths(lengths, max_length, "lengths", where)
    return masks.lengths_to_mask(lengths, max_length).astype(dtype)


def from_mask(
    mask: jax.typing.ArrayLike, *, dtype: jax.typing.DTypeLike = jnp.float32
) -> jax.Array:
    r"""Weights from a mask: 1 where the mask is true (non-zero), else 0.

    .. math::
      w = [\, m \ne 0 \,].

    Args:
      mask: boolean (or numeric) mask of any shape, e.g. ``[B, T]``.
      dtype: the dtype of the weights.

    Returns:
      ``[*mask.shape]`` weights, 1 at the true entries.

    Examples:
      >>> import jax.numpy as jnp
      >>> from seqmask import weights
      >>> print(weights.from_mask(jnp.array([[True, False], [True, True]])))
      [[1. 0.]
       [1. 1.]]
    """
    return _differs(mask, 0, "mask", "weights.from_mask", dtype)


def _differs(
    values, reference, name: str, where: str, dtype, reference_name: str = ""
) -> jax.Array:
    """``values != reference`` as weights. A named ``reference`` must be a
    scalar exactly representable in the dtype of ``values`` (no wrap-around,
    no rounding)."""
    dtype = _checks.dtype(dtype, "dtype", where)
    values = _checks.numeric_array(values, name, where)
    if reference_name:
        _checks.representable(
            reference,
            values.dtype,
            reference_name,
            where,
            hint=f" ({name} have dtype {values.dtype})",
        )
        if jnp.ndim(reference) != 0:
            _checks.fail(
                where,
                f"{reference_name} must be a scalar; got shape {jnp.shape(reference)}.",
            )
    # Straight into the values' dtype: a Python int at the top of an unsigned
    # dtype (2**32 - 1 for uint32) does not fit the int32 it would pass through.
    return (values != jnp.asarray(reference, dtype=values.dtype)).astype(dtype)


def from_targets(
    targets: jax.typing.ArrayLike,
    pad_id: int,
    *,
    dtype: jax.typing.DTypeLike = jnp.float32,
) -> jax.Array:
    r"""Per-token weights from padded targets: 1 where ``targets != pad_id``.

    Works for any padding position (right, left, holes), since it looks at
    each target, not at a length.

    .. math::
      w = [\, y \ne \mathrm{pad\_id} \,].

    Args:
      targets: target ids of any shape, e.g. ``[B, T]``.
      pad_id: the padding id (a scalar), representable in the dtype of
        ``targets`` (``-100`` with ``uint8`` targets would wrap around, so it
        raises a ``ValueError``).
      dtype: dtype of the result.

    Returns:
      Weights of the shape of ``targets``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from seqmask import weights
      >>> targets = jnp.array([[5, 2, 7, 0], [3, 0, 0, 0]])
      >>> print(weights.from_targets(targets, pad_id=0))
      [[1. 1. 1. 0.]
       [1. 0. 0. 0.]]
    """
    return _differs(targets, pad_id, "targets", "weights.from_targets", dtype, "pad_id")


def nonzero(
    targets: jax.typing.ArrayLike, *, dtype: jax.typing.DTypeLike = jnp.float32
) -> jax.Array:
    r"""Per-feature weights that count only the non-zero entries of targets.

    The sparse auto-encoder case: with ``squared_error(reconstruction, x,
    weights=nonzero(x))`` the zero features of ``x`` are absent, and their
    reconstruction gets exactly zero gradient.

    .. math::
      w = [\, x \ne 0 \,].

    Args:
      targets: targets of any shape, e.g. ``[N, F]`` or ``[B, T, F]``.
      dtype: the weights' dtype (float32 by default).

    Returns:
      0/1 weights shaped like ``targets`` (NaN counts as non-zero).

    Examples:
      >>> from seqmask import weights
      >>> print(weights.nonzero([[0.0, 0.3, 0.0], [1.0, 0.0, 0.5]]))
      [[0. 1. 0.]
       [1. 0. 1.]]
    """
    return _differs(targets, 0, "x", "weights.nonzero", dtype)


def class_weights(
    labels: jax.typing.ArrayLike,
    table: jax.typing.ArrayLike,
    *,
    dtype: jax.typing.DTypeLike = jnp.float32,
) -> jax.Array:
    r"""Per-token weights looked up by class, e.g. inverse class frequencies.

    Labels outside ``[0, C)`` (padding ids such as ``-100`` included) get
    weight 0, so a padded target needs no separate mask; multiply by
    :func:`from_targets` when the padding id is a valid class.

    .. math::
      w_i = \begin{cases} \mathrm{table}_{y_i} & 0 \le y_i < C \\
        0 & \text{otherwise.} \end{cases}

    Args:
      labels: integer class ids of any shape, e.g. ``[B, T]``.
      table: one finite, non-negative weight per class, shape ``[C]``.
      dtype: dtype of the result.

    Returns:
      Weights of the shape of ``labels``.

    Raises:
      TypeError: if ``labels`` is not integer.
      ValueError: if ``table`` is not one-dimensional, or has a negative or
        non-finite entry (through checkify when traced).

    Examples:
      >>> import jax.numpy as jnp
      >>> from seqmask import weights
      >>> labels = jnp.array([[0, 2, 1], [2, -100, -100]])
      >>> print(weights.class_weights(labels, jnp.array([0.5, 1.0, 2.0])))
      [[0.5 2.  1. ]
       [2.  0.  0. ]]
    """
    where = "weights.class_weights"
    dtype = _checks.dtype(dtype, "dtype", where)
    labels = _checks.integer_array(labels, "labels", where)
    table = _checks.numeric_array(table, "table", where)
    if table.ndim != 1 or table.shape[0] == 0:
        _checks.fail(
            where,
            "table must have shape [num_classes] with a class at least; got "
            f"shape {table.shape}.",
        )
    _checks.in_range(table, "table", where, low=0, hint=" (one weight per class)")
    classes = table.shape[0]
    valid = labels >= 0
    if classes <= jnp.iinfo(labels.dtype).max:  # else every label is below it
        valid = valid & (labels < classes)
    # A row past the table is 0: the gather fills it, laid out like labels.
    index = jnp.where(valid, labels.astype(jnp.int32), classes)
    return _sharding.take_rows(table.astype(dtype), index, fill_value=0)


def combine(
    *,
    per_sequence: jax.typing.ArrayLike | None = None,
    per_step: jax.typing.ArrayLike | None = None,
    per_feature: jax.typing.ArrayLike | None = None,
    dtype: jax.typing.DTypeLike = jnp.float32,
) -> jax.Array:
    r"""Multiplies per-sequence, per-step and per-feature factors.

    Each factor is placed on its axes of a ``[B, T, F]`` layout: ``per_sequence``
    ``[B]`` on the batch axis, ``per_step`` ``[B, T]`` on batch and time, and
    ``per_feature`` ``[F]`` (shared) or ``[B, T, F]`` on the features. The result
    has as many axes as the deepest factor given (``[B]``, ``[B, T]`` or
    ``[B, T, F]``, with size-1 axes where no factor varies), so it broadcasts
    to the element-wise loss with the leading alignment of
    :mod:`seqmask.losses`.

    .. math::
      w_{btf} = s_b \; u_{bt} \; v_{(bt)f}.

    Args:
      per_sequence: optional ``[B]`` factor.
      per_step: optional ``[B, T]`` factor.
      per_feature: optional ``[F]`` or ``[B, T, F]`` factor.
      dtype: dtype of the result.

    Returns:
      The product, of shape ``[B]``, ``[B, T]`` or ``[B, T, F]`` (axes of size 1
      where no factor spans them).

    Raises:
      ValueError: if no factor is given, a factor has the wrong number of axes,
        or the factors' shapes disagree (the message names them).

    Examples:
      >>> import jax.numpy as jnp
      >>> from seqmask import weights
      >>> w = weights.combine(per_sequence=jnp.array([1.0, 2.0]),
      ...                     per_step=weights.from_lengths(jnp.array([2, 1]), 3),
      ...                     per_feature=jnp.array([1.0, 0.5]))
      >>> print(w.shape)
      (2, 3, 2)
      >>> print(w[1])
      [[2. 1.]
       [0. 0.]
       [0. 0.]]
    """
    where = "weights.combine"
    dtype = _checks.dtype(dtype, "dtype", where)
    given = [
        (name, value, layouts)
        for name, value, layouts in (
            ("per_sequence", per_sequence, {1: "[B]"}),
            ("per_step", per_step, {2: "[B, T]"}),
            ("per_feature", per_feature, {1: "[F]", 3: "[B, T, F]"}),
        )
        if value is not None
    ]
    if not given:
        _checks.fail(
            where, "needs at least one of per_sequence, per_step, per_feature."
        )
    factors = []
    for name, value, layouts in given:
        factor = _checks.numeric_array(value, name, where)
        if factor.ndim not in layouts:
            _checks.fail(
                where,
                f"{name} must have shape {' or '.join(layouts.values())}; got "
                f"shape {factor.shape}.",
            )
        if name == "per_feature" and factor.ndim == 1:
            factor = factor.reshape((1, 1) + factor.shape)
        factors.append((name, factor))
    rank = max(factor.ndim for _, factor in factors)
    shaped = [f.reshape(f.shape + (1,) * (rank - f.ndim)) for _, f in factors]
    try:
        shape = np.broadcast_shapes(*(factor.shape for factor in shaped))
    except ValueError:
        described = ", ".join(
            f"{name} {tuple(jnp.shape(value))}" for name, value, _ in given
        )
        _checks.fail(
            where,
            f"the weight factors do not agree on [B, T, F]: {described}. B and T "
            "must match (or be 1) across factors.",
        )
    product = jnp.ones(shape, dtype)
    for factor in shaped:
        product = product * factor.astype(dtype)
    return product


def normalize_per_sequence(
    weights: jax.typing.ArrayLike,
    *,
    segment_ids: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    r"""Rescales weights so that each sequence's weights sum to 1.

    With normalised weights, ``reduction="sum"`` divided by the number of
    sequences (or ``"weighted_mean"``) counts every sequence equally, however
    many tokens it has. Axis 0 is the batch axis, as in :mod:`seqmask.losses`;
    the sum runs over every other axis. With ``segment_ids`` (several
    sequences packed into each row, as :class:`seqmask.data.Packing` lays
    them out) each segment is normalised on its own, and padding (a negative
    id) gets weight 0. A sequence whose weights sum to 0 stays all zeros, with
    a finite (zero) gradient.

    .. math::
      \tilde w_{b\ldots} = \frac{w_{b\ldots}}{\sum_{\ldots} w_{b\ldots}},
      \qquad \tilde w_{b\ldots} = 0 \text{ if } \sum_{\ldots} w_{b\ldots} = 0.

    Args:
      weights: floating weights of shape ``[B, ...]`` (``[B, T, ...]`` with
        ``segment_ids``).
      segment_ids: optional int ``[B, T]``: the sequence of each step, negative
        at padding (:attr:`seqmask.data.Packing.segment_ids`). A sequence is
        a run of one id within a row (padding inside it does not split it),
        so rows may reuse ids.

    Returns:
      Normalised weights of the same shape and dtype.

    Raises:
      TypeError: if ``weights`` is not floating or ``segment_ids`` not integer.
      ValueError: if ``weights`` is a scalar, or ``segment_ids`` is not
        ``weights.shape[:2]``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from seqmask import weights
      >>> w = weights.from_lengths(jnp.array([4, 1, 0]), 4)
      >>> print(weights.normalize_per_sequence(w))
      [[0.25 0.25 0.25 0.25]
       [1.   0.   0.   0.  ]
       [0.   0.   0.   0.  ]]
      >>> packed = weights.normalize_per_sequence(
      ...     jnp.ones((1, 4)), segment_ids=jnp.array([[0, 0, 1, -1]]))
      >>> print(packed)
      [[0.5 0.5 1.  0. ]]
    """
    where = "weights.normalize_per_sequence"
    weights = _checks.floating_array(
        weights,
        "weights",
        where,
        hint=" Use the builders of seqmask.weights, or cast with .astype(jnp.float32).",
    )
    if weights.ndim == 0:
        _checks.fail(where, "weights must have a batch axis 0; got a scalar.")
    if segment_ids is not None:
        segment_ids = _checks.integer_array(segment_ids, "segment_ids", where)
        if segment_ids.shape != weights.shape[:2]:
            _checks.fail(
                where,
                f"segment_ids must have shape weights.shape[:2] = "
                f"{weights.shape[:2]}; got {segment_ids.shape}.",
            )
        inside = segment_ids >= 0
        weights = jnp.where(
            inside.reshape(inside.shape + (1,) * (weights.ndim - 2)),
            weights,
            jnp.zeros((), weights.dtype),
        )
    # Summed in float32 at least: float16 weights of 40,000 overflow their sum.
    wide = weights.astype(wider(weights.dtype, jnp.float32))
    sums = _weighting.sequence_sums(wide, segment_ids)
    normalised = _weighting.safe_divide(wide, _weighting.at_positions(sums, wide.ndim))
    return normalised.astype(weights.dtype)
