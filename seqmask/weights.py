r"""Loss weights built from what users have: lengths, masks, targets, classes.

The losses in :mod:`seqmask.losses` take weights of any shape that broadcasts
to their element-wise loss, with zero meaning *absent*. This module builds
those weights: per step from sequence lengths, masks or padded targets, per
feature from sparse targets, per class from a table, and combines per-sequence,
per-step and per-feature factors into one array. Every builder returns float32
unless given another ``dtype``. Build loss weights from the *targets*: in
seq2seq the source mask has another length and plays no part in the loss.
"""

import jax
import jax.numpy as jnp
import numpy as np


def _check_integer(name: str, x: jax.Array) -> None:
    if not jnp.issubdtype(x.dtype, jnp.integer):
        raise TypeError(f"{name} must have an integer dtype; got {x.dtype}.")


def from_lengths(
    lengths: jax.typing.ArrayLike,
    max_len: int,
    *,
    dtype: jax.typing.DTypeLike = jnp.float32,
) -> jax.Array:
    r"""Per-step weights of right-padded sequences from their lengths.

    .. math::
      w_{\ldots t} = [\, t < \mathrm{lengths}_{\ldots} \,], \qquad
      0 \le t < \mathrm{max\_len}.

    Lengths above ``max_len`` give a row of ones, lengths at or below 0 a row
    of zeros.

    Args:
      lengths: integer lengths, any batch shape ``[*batch]``.
      max_len: the time axis length ``T``, a Python int.
      dtype: dtype of the result.

    Returns:
      Weights of shape ``[*batch, max_len]``.

    Raises:
      TypeError: if ``lengths`` is not integer or ``max_len`` not an int.
      ValueError: if ``max_len`` is negative.

    Examples:
      >>> import jax.numpy as jnp
      >>> from seqmask import weights
      >>> print(weights.from_lengths(jnp.array([3, 1, 0]), 4))
      [[1. 1. 1. 0.]
       [1. 0. 0. 0.]
       [0. 0. 0. 0.]]
    """
    lengths = jnp.asarray(lengths)
    _check_integer("lengths", lengths)
    if isinstance(max_len, bool) or not isinstance(max_len, (int, np.integer)):
        raise TypeError(
            f"max_len must be a Python int (a static shape); got {max_len!r}."
        )
    if max_len < 0:
        raise ValueError(f"max_len must be >= 0; got {max_len}.")
    steps = jnp.arange(max_len, dtype=lengths.dtype).reshape(
        (1,) * lengths.ndim + (int(max_len),)
    )
    return (steps < lengths[..., None]).astype(dtype)


def from_mask(
    mask: jax.typing.ArrayLike, *, dtype: jax.typing.DTypeLike = jnp.float32
) -> jax.Array:
    r"""Weights from a mask: 1 where the mask is true (non-zero), else 0.

    .. math::
      w = [\, m \ne 0 \,].

    Args:
      mask: boolean (or numeric) mask of any shape, e.g. ``[B, T]``.
      dtype: dtype of the result.

    Returns:
      Weights of the shape of ``mask``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from seqmask import weights
      >>> print(weights.from_mask(jnp.array([[True, False], [True, True]])))
      [[1. 0.]
       [1. 1.]]
    """
    mask = jnp.asarray(mask)
    return (mask != jnp.zeros((), mask.dtype)).astype(dtype)


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
      pad_id: the padding id (a scalar).
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
    targets = jnp.asarray(targets)
    pad = jnp.asarray(pad_id)
    if pad.ndim != 0:
        raise ValueError(f"pad_id must be a scalar; got shape {pad.shape}.")
    return (targets != pad.astype(targets.dtype)).astype(dtype)


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
      dtype: dtype of the result.

    Returns:
      Weights of the shape of ``targets``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from seqmask import weights
      >>> print(weights.nonzero(jnp.array([[0.0, 0.3, 0.0], [1.0, 0.0, 0.5]])))
      [[0. 1. 0.]
       [1. 0. 1.]]
    """
    targets = jnp.asarray(targets)
    return (targets != jnp.zeros((), targets.dtype)).astype(dtype)


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
      table: one weight per class, shape ``[C]``.
      dtype: dtype of the result.

    Returns:
      Weights of the shape of ``labels``.

    Raises:
      TypeError: if ``labels`` is not integer.
      ValueError: if ``table`` is not one-dimensional.

    Examples:
      >>> import jax.numpy as jnp
      >>> from seqmask import weights
      >>> labels = jnp.array([[0, 2, 1], [2, -100, -100]])
      >>> print(weights.class_weights(labels, jnp.array([0.5, 1.0, 2.0])))
      [[0.5 2.  1. ]
       [2.  0.  0. ]]
    """
    labels = jnp.asarray(labels)
    table = jnp.asarray(table)
    _check_integer("labels", labels)
    if table.ndim != 1:
        raise ValueError(
            f"table must have shape [num_classes]; got shape {table.shape}."
        )
    valid = (labels >= 0) & (labels < table.shape[0])
    gathered = table.astype(dtype)[jnp.where(valid, labels, 0)]
    return jnp.where(valid, gathered, jnp.zeros((), dtype))


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
    factors: list[tuple[str, jax.Array]] = []
    rank = 0
    if per_sequence is not None:
        factor = jnp.asarray(per_sequence)
        if factor.ndim != 1:
            raise ValueError(
                f"per_sequence must have shape [B]; got shape {factor.shape}."
            )
        factors.append(("per_sequence", factor))
        rank = max(rank, 1)
    if per_step is not None:
        factor = jnp.asarray(per_step)
        if factor.ndim != 2:
            raise ValueError(
                f"per_step must have shape [B, T]; got shape {factor.shape}."
            )
        factors.append(("per_step", factor))
        rank = max(rank, 2)
    if per_feature is not None:
        factor = jnp.asarray(per_feature)
        if factor.ndim == 1:
            factor = factor.reshape((1, 1) + factor.shape)
        elif factor.ndim != 3:
            raise ValueError(
                "per_feature must have shape [F] or [B, T, F]; got shape "
                f"{factor.shape}."
            )
        factors.append(("per_feature", factor))
        rank = 3
    if not factors:
        raise ValueError(
            "combine needs at least one of per_sequence, per_step, per_feature."
        )
    shaped = [
        (name, factor.reshape(factor.shape + (1,) * (rank - factor.ndim)))
        for name, factor in factors
    ]
    try:
        shape = np.broadcast_shapes(*(factor.shape for _, factor in shaped))
    except ValueError:
        given = ", ".join(
            f"{name} {tuple(jnp.shape(original))}"
            for (name, _), original in zip(
                factors, _originals(per_sequence, per_step, per_feature), strict=True
            )
        )
        raise ValueError(
            f"the weight factors do not agree on [B, T, F]: {given}. B and T must "
            "match (or be 1) across factors."
        ) from None
    product = jnp.ones(shape, dtype)
    for _, factor in shaped:
        product = product * factor.astype(dtype)
    return product


def _originals(*factors: jax.typing.ArrayLike | None) -> list[jax.typing.ArrayLike]:
    return [factor for factor in factors if factor is not None]


def normalize_per_sequence(weights: jax.typing.ArrayLike) -> jax.Array:
    r"""Rescales weights so that each sequence's weights sum to 1.

    With normalised weights, ``reduction="sum"`` divided by the number of
    sequences (or ``"weighted_mean"``) counts every sequence equally, however
    many tokens it has. Axis 0 is the batch axis, as in :mod:`seqmask.losses`;
    the sum runs over every other axis. A row that sums to 0 stays all zeros,
    with a finite (zero) gradient.

    .. math::
      \tilde w_{b\ldots} = \frac{w_{b\ldots}}{\sum_{\ldots} w_{b\ldots}},
      \qquad \tilde w_{b\ldots} = 0 \text{ if } \sum_{\ldots} w_{b\ldots} = 0.

    Args:
      weights: floating weights of shape ``[B, ...]``.

    Returns:
      Normalised weights of the same shape and dtype.

    Raises:
      TypeError: if ``weights`` is not floating.
      ValueError: if ``weights`` is a scalar.

    Examples:
      >>> import jax.numpy as jnp
      >>> from seqmask import weights
      >>> w = weights.from_lengths(jnp.array([4, 1, 0]), 4)
      >>> print(weights.normalize_per_sequence(w))
      [[0.25 0.25 0.25 0.25]
       [1.   0.   0.   0.  ]
       [0.   0.   0.   0.  ]]
    """
    weights = jnp.asarray(weights)
    if not jnp.issubdtype(weights.dtype, jnp.floating):
        raise TypeError(
            f"weights must have a floating dtype; got {weights.dtype}. Use the "
            "builders of seqmask.weights, or cast with .astype(jnp.float32)."
        )
    if weights.ndim == 0:
        raise ValueError("weights must have a batch axis 0; got a scalar.")
    sequence_axes = tuple(range(1, weights.ndim))
    totals = jnp.sum(weights, axis=sequence_axes, keepdims=True)
    nonzero_total = totals != 0
    safe_totals = jnp.where(nonzero_total, totals, jnp.ones((), weights.dtype))
    return jnp.where(nonzero_total, weights / safe_totals, jnp.zeros((), weights.dtype))
