"""Sequence metrics over padded token arrays, in JAX (jit and vmap safe).

A batch of sequences is an integer array ``[*batch, T]`` with lengths
``[*batch]`` (the first ``length`` tokens of a row count) or a boolean mask
``[*batch, T]`` (the tokens where it is true count, in order). Several
references a row are ``[*batch, R, T]`` with lengths ``[*batch, R]``.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import seqmask._checks as _checks
from seqmask import _sharding


def token_accuracy(predictions, targets, *, mask=None, lengths=None) -> jax.Array:
    r"""Masked token accuracy: the fraction of counted positions predicted right.

    .. math::

      \mathrm{accuracy} = \frac{\sum_{b,t} m_{bt}\,[\hat y_{bt} = y_{bt}]}
                               {\sum_{b,t} m_{bt}}

    over the whole batch (each token weighs the same, whatever its row's
    length); 0 when no position counts.

    Args:
      predictions: integer token ids ``[*batch, T]`` (take the arg-max of
        logits first).
      targets: integer ``[*batch, T]``.
      mask: boolean ``[*batch, T]``: the positions that count.
      lengths: integer ``[*batch]``, an alternative to ``mask`` (the first
        ``lengths`` positions count). Neither: every position counts.

    Returns:
      A float32 scalar.

    Examples:
      >>> import jax.numpy as jnp
      >>> from seqmask import metrics
      >>> predictions = jnp.array([[1, 2, 3], [4, 0, 0]])
      >>> targets = jnp.array([[1, 2, 0], [4, 5, 0]])
      >>> print(metrics.token_accuracy(predictions, targets,
      ...                              lengths=jnp.array([3, 1])))
      0.75
    """
    where = "token_accuracy"
    predictions = _tokens(predictions, "predictions", where)
    targets = _tokens(targets, "targets", where)
    _checks.same_shape("predictions", predictions, "targets", targets, where)
    counted = _positions(predictions, lengths, mask, "lengths", "mask", where)
    predictions, targets = _common_dtype(
        predictions, targets, ("predictions", "targets"), where
    )
    right = jnp.sum(counted & (predictions == targets), dtype=jnp.float32)
    total = jnp.sum(counted, dtype=jnp.float32)
    return jnp.where(total > 0, right / jnp.maximum(total, 1.0), 0.0)


class Valid(NamedTuple):
    """Which tokens of padded hypotheses and references count (None: all)."""

    hypothesis_lengths: Any
    reference_lengths: Any
    hypothesis_mask: Any
    reference_mask: Any


def padded_pairs(hypotheses, references, valid: Valid, multiple: bool, where):
    """Checked ``(h, h_lengths, r, r_lengths)``, the hypotheses laid out like
    the references."""
    h, h_lengths = _sequences(
        hypotheses, valid.hypothesis_lengths, valid.hypothesis_mask, "hypotheses", where
    )
    r, r_lengths = _sequences(
        references, valid.reference_lengths, valid.reference_mask, "references", where
    )
    h, h_lengths = _against(h, h_lengths, r, multiple, where)
    h, r = _common_dtype(h, r, ("hypotheses", "references"), where)
    return h, h_lengths, r, r_lengths


def edit_distance_padded(h, h_lengths, r, r_lengths) -> jax.Array:
    """Levenshtein distances of checked pairs, shaped like ``r_lengths``."""
    pairs = math.prod(r_lengths.shape)  # not -1: a row may have width 0
    distances = _levenshtein(
        h.reshape((pairs, h.shape[-1])),
        h_lengths.reshape(-1),
        r.reshape((pairs, r.shape[-1])),
        r_lengths.reshape(-1),
    )
    return distances.reshape(r_lengths.shape)


def exact_match_padded(h, h_lengths, r, r_lengths) -> jax.Array:
    """Per pair: the sequences are equal."""
    width = min(h.shape[-1], r.shape[-1])
    h, r = h[..., :width], r[..., :width]
    positions = jnp.arange(width, dtype=r_lengths.dtype)  # int32, also under x64
    positions = positions.reshape((1,) * (h.ndim - 1) + (width,))
    differ = (h != r) & (positions < r_lengths[..., None])
    return (h_lengths == r_lengths) & ~jnp.any(differ, axis=-1)


def error_rate_padded(distances, reference_lengths, multiple):
    """Total edits over total reference tokens (the closest reference)."""
    if multiple:
        best = jnp.argmin(distances, axis=-1)[..., None]
        distances = jnp.take_along_axis(distances, best, axis=-1)[..., 0]
        reference_lengths = jnp.take_along_axis(reference_lengths, best, axis=-1)
        reference_lengths = reference_lengths[..., 0]
    edits = jnp.sum(distances, dtype=jnp.float32)
    tokens = jnp.sum(reference_lengths, dtype=jnp.float32)
    empty = jnp.where(edits > 0, jnp.float32(jnp.inf), jnp.float32(0.0))
    return jnp.where(tokens > 0, edits / jnp.maximum(tokens, 1.0), empty)


# --------------------------------------------------------------------------
# The dynamic programme


def _levenshtein(h, h_lengths, r, r_lengths) -> jax.Array:
    """Row-by-row Levenshtein over ``[N, Th]`` and ``[N, Tr]``: one scan step
    a hypothesis token; within a row, the insertions are a running minimum
    (``D[i, j] - j`` is the cumulative minimum of ``C[i, k] - k``)."""
    rows, width = r.shape
    columns = jnp.arange(width + 1, dtype=jnp.int32).reshape((1, width + 1))
    # The first row, laid out like the references' rows (a scan carry keeps
    # the layout it starts with).
    first = _sharding.shard_like_batch(
        jnp.broadcast_to(columns, (rows, width + 1)), r, (0,)
    )

    def body(previous, xs):
        i, token = xs
        cost = (r != token[:, None]).astype(jnp.int32)
        best = jnp.minimum(previous[:, :-1] + cost, previous[:, 1:] + 1)
        start = jnp.zeros_like(previous[:, :1]) + i
        candidates = jnp.concatenate([start, best], axis=1)
        row = jax.lax.cummin(candidates - columns, axis=1) + columns
        # Past a hypothesis's length its last row carries through.
        return jnp.where((i <= h_lengths)[:, None], row, previous), None

    steps = jnp.arange(1, h.shape[1] + 1, dtype=jnp.int32)
    last, _ = jax.lax.scan(body, first, (steps, h.T))
    return jnp.take_along_axis(last, r_lengths[:, None].astype(jnp.int32), axis=1)[:, 0]


# --------------------------------------------------------------------------
# Arguments


def _tokens(value, name, where) -> jax.Array:
    x = _checks.integer_array(
        value,
        name,
        where,
        hint=" Token ids are integers; take the arg-max of logits first.",
    )
    _checks.min_rank(x, 1, name, where, "[*batch, time]")
    return x


def _positions(tokens, lengths, mask, lengths_name, mask_name, where):
    """The boolean ``[*batch, T]`` of counted positions."""
    if lengths is not None and mask is not None:
        _checks.fail(
            where,
            f"pass {lengths_name} or {mask_name}, not both; they are alternatives.",
        )
    if mask is not None:
        return _checks.bool_array(
            mask, mask_name, where, shape=tokens.shape, layout="[*batch, time]"
        )
    width = tokens.shape[-1]
    if lengths is None:
        return jnp.ones_like(tokens, dtype=jnp.bool_)
    lengths = _lengths(lengths, tokens, lengths_name, where)
    positions = jnp.arange(width, dtype=lengths.dtype)  # int32, also under x64
    return positions.reshape((1,) * (tokens.ndim - 1) + (width,)) < lengths[..., None]


def _lengths(lengths, tokens, name, where) -> jax.Array:
    lengths = _checks.integer_array(lengths, name, where)
    batch = tuple(tokens.shape[:-1])
    if tuple(lengths.shape) != batch:
        _checks.fail(
            where,
            f"{name} must have shape {batch} (the leading axes of its tokens); "
            f"got {tuple(lengths.shape)}.",
        )
    _checks.lengths(lengths, tokens.shape[-1], name, where)
    return lengths.astype(jnp.int32)


def _sequences(tokens, lengths, mask, name, where):
    """Tokens with their valid ones first, and the lengths."""
    x = _tokens(tokens, name, where)
    lengths_name = f"{name[:-1].replace('hypothese', 'hypothesis')}_lengths"
    mask_name = lengths_name.replace("_lengths", "_mask")
    if mask is None:
        if lengths is None:
            full = jnp.full(x.shape[:-1], x.shape[-1], jnp.int32)
            return x, full
        return x, _lengths(lengths, x, lengths_name, where)
    valid = _positions(x, lengths, mask, lengths_name, mask_name, where)
    # A stable sort of ~valid moves the valid tokens to the front in order.
    order = jnp.argsort(~valid, axis=-1, stable=True)
    return jnp.take_along_axis(x, order, axis=-1), jnp.sum(valid, -1, jnp.int32)


def _against(h, h_lengths, r, multiple, where):
    """The hypotheses laid out like the references (one per reference)."""
    batch = tuple(h.shape[:-1])
    if multiple:
        if r.ndim != h.ndim + 1 or tuple(r.shape[:-2]) != batch:
            _checks.fail(
                where,
                f"with multiple_references, references must have shape "
                f"[*batch, R, T] with the batch shape {batch} of hypotheses; got "
                f"{tuple(r.shape)}.",
            )
        count = r.shape[-2]
        if count == 0:
            _checks.fail(
                where,
                f"references holds no reference a row (shape {tuple(r.shape)}: "
                "R = 0); give at least one.",
            )
        h = jnp.broadcast_to(h[..., None, :], (*batch, count, h.shape[-1]))
        h_lengths = jnp.broadcast_to(h_lengths[..., None], (*batch, count))
        return h, h_lengths
    if tuple(r.shape[:-1]) != batch:
        hint = (
            " Pass multiple_references=True for several references a row."
            if r.ndim == h.ndim + 1
            else ""
        )
        _checks.fail(
            where,
            f"references must have the batch shape {batch} of hypotheses "
            f"([*batch, T]); got shape {tuple(r.shape)}.{hint}",
        )
    return h, h_lengths


def _common_dtype(a, b, names: tuple[str, str], where: str):
    """``a`` and ``b`` in a dtype that holds both, where ids compare alike."""
    dtype = np.promote_types(a.dtype, b.dtype)
    if not np.issubdtype(dtype, np.integer) and not (
        np.issubdtype(a.dtype, np.floating) or np.issubdtype(b.dtype, np.floating)
    ):
        # uint64 with a signed dtype promotes to float64, whose 53 bits make
        # distinct ids above 2**53 compare equal.
        _checks.fail(
            where,
            f"{names[0]} ({a.dtype}) and {names[1]} ({b.dtype}) have no common "
            "integer dtype that holds both (NumPy would compare them as float64, "
            "where ids above 2**53 collide); give them one dtype (e.g. both "
            "int64).",
            TypeError,
        )
    if jax.dtypes.canonicalize_dtype(dtype) != dtype:
        # uint32 with a signed dtype promotes to int64, which JAX without
        # x64 would truncate: 2**32 - 1 would equal -1.
        _checks.fail(
            where,
            f"{names[0]} ({a.dtype}) and {names[1]} ({b.dtype}) have no common "
            f"dtype that holds both without 64-bit integers (jax_enable_x64 is "
            "off); give them one dtype (e.g. both int32).",
            TypeError,
        )
    return a.astype(dtype), b.astype(dtype)
