"""Masks: converting between lengths and masks, reversing valid steps, checks.

A mask is a boolean array ``[*batch, time]`` (or ``[time, *batch]`` when time
major) that is true at the valid steps of each row. Any pattern is allowed:
right padding, left padding, holes in the middle and rows with no valid step.
Lengths are the right-padding special case: row ``b`` is valid at steps
``0 .. lengths[b] - 1``. Everything here is a pure function that runs under
``jax.jit``; the value checks that need concrete data (``check_lengths``) are
explicit calls, never hidden inside the layers.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

__all__ = [
    "lengths_to_mask",
    "mask_to_lengths",
    "reverse_valid_steps",
    "check_lengths",
    "check_mask",
    "resolve_mask",
]


def _is_traced(x) -> bool:
    return isinstance(x, jax.core.Tracer)  # pyright: ignore[reportAttributeAccessIssue]


def lengths_to_mask(
    lengths, max_len: int, *, time_major: bool = False, check: bool = False
) -> jax.Array:
    """Boolean mask that is true at the first ``lengths[b]`` steps of each row.

    Args:
      lengths: integer array of shape ``[*batch]``.
      max_len: the size of the time axis (a Python int, static under jit).
      time_major: if true the mask is ``[max_len, *batch]``.
      check: if true, first run :func:`check_lengths` (raises on concrete
        lengths that do not fit, or registers a ``checkify`` check under jit).

    Returns:
      A ``bool`` array of shape ``[*batch, max_len]`` (or ``[max_len, *batch]``).

    Examples:
      >>> import jax.numpy as jnp
      >>> from seqmask.masks import lengths_to_mask
      >>> lengths_to_mask(jnp.array([2, 0, 3]), 3).astype(int)
      Array([[1, 1, 0],
             [0, 0, 0],
             [1, 1, 1]], dtype=int32)
    """
    if not isinstance(max_len, (int, np.integer)) or isinstance(max_len, bool):
        raise TypeError(
            "lengths_to_mask: max_len must be a Python int (the static size of "
            f"the time axis); got {type(max_len).__name__} {max_len!r}."
        )
    lengths = jnp.asarray(lengths)
    if not jnp.issubdtype(lengths.dtype, jnp.integer):
        raise TypeError(
            f"lengths_to_mask: lengths must have an integer dtype; got {lengths.dtype}."
        )
    if check:
        check_lengths(lengths, max_len)
    if max_len > 0 and jnp.iinfo(lengths.dtype).max < max_len - 1:
        # The step indices must fit the comparison dtype: with uint8 lengths
        # and max_len > 256 they would wrap around.
        lengths = lengths.astype(jnp.int32)
    steps = jnp.arange(int(max_len), dtype=lengths.dtype)
    steps = steps.reshape((1,) * lengths.ndim + (int(max_len),))
    mask = steps < lengths[..., None]
    return jnp.moveaxis(mask, -1, 0) if time_major else mask


def mask_to_lengths(mask, *, time_major: bool = False) -> jax.Array:
    """Number of valid steps in each row of ``mask`` (``int32``).

    For a right-padded mask this inverts :func:`lengths_to_mask`. For any
    other mask it counts the valid steps (holes are not counted).

    Args:
      mask: boolean array ``[*batch, time]`` (``[time, *batch]`` if
        ``time_major``).
      time_major: whether time is the leading axis.

    Returns:
      ``int32`` array of shape ``[*batch]``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from seqmask.masks import mask_to_lengths
      >>> mask_to_lengths(jnp.array([[True, True, False], [False, True, True]]))
      Array([2, 2], dtype=int32)
    """
    mask = _as_bool_mask(mask, "mask")
    if mask.ndim < 1:
        raise ValueError("mask_to_lengths: mask must have a time axis; got a scalar.")
    axis = 0 if time_major else -1
    return jnp.sum(mask, axis=axis, dtype=jnp.int32)


def reverse_valid_steps(
    xs, mask=None, *, lengths=None, time_major: bool = False
) -> jax.Array:
    """Reverse the order of the valid steps of each row, in place.

    The valid steps of a row, at positions ``p_0 < p_1 < ... < p_{n-1}``,
    receive the values from ``p_{n-1}, ..., p_0``; padded positions keep
    their values. For right padding this is the usual "flip within length";
    it works as well for left padding and for masks with holes. Applying it
    twice gives back ``xs``.

    seqmask's scans do not need it (``reverse=True`` visits exactly the valid
    steps); it is here for users who feed reversed sequences elsewhere.

    Args:
      xs: array ``[*batch, time, ...]`` (``[time, *batch, ...]`` if
        ``time_major``).
      mask: boolean ``[*batch, time]`` (``[time, *batch]`` if time major).
      lengths: alternative to ``mask``: integers ``[*batch]``.
      time_major: whether time is the leading axis of ``xs`` and ``mask``.

    Returns:
      An array like ``xs``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from seqmask.masks import reverse_valid_steps
      >>> xs = jnp.array([[1, 2, 3, 0], [0, 5, 6, 7]])
      >>> mask = xs > 0
      >>> reverse_valid_steps(xs, mask)
      Array([[3, 2, 1, 0],
             [0, 7, 6, 5]], dtype=int32)
    """
    xs = jnp.asarray(xs)
    mask = resolve_mask(
        xs,
        mask=mask,
        lengths=lengths,
        time_major=time_major,
        name="reverse_valid_steps",
    )
    if mask is None:
        raise ValueError("reverse_valid_steps: give mask or lengths; got neither.")
    if time_major:
        mask_bm = jnp.moveaxis(mask, 0, -1)
        xs_bm = jnp.moveaxis(xs, 0, mask.ndim - 1)
    else:
        mask_bm, xs_bm = mask, xs
    n_batch = mask_bm.ndim - 1
    time = mask_bm.shape[-1]
    # Rank of each valid step within its row, and the positions of valid steps
    # in order (a stable sort puts valid positions first, in time order).
    rank = jnp.cumsum(mask_bm, axis=-1, dtype=jnp.int32) - 1
    count = rank[..., -1:] + 1
    order = jnp.argsort(jnp.logical_not(mask_bm), axis=-1, stable=True)
    source_rank = jnp.clip(count - 1 - rank, 0, time - 1)
    source = jnp.take_along_axis(order, source_rank, axis=-1)
    positions = jnp.broadcast_to(jnp.arange(time, dtype=source.dtype), source.shape)
    source = jnp.where(mask_bm, source, positions)
    index = source.reshape(source.shape + (1,) * (xs_bm.ndim - n_batch - 1))
    index = jnp.broadcast_to(index, xs_bm.shape)
    out = jnp.take_along_axis(xs_bm, index, axis=n_batch)
    return jnp.moveaxis(out, mask.ndim - 1, 0) if time_major else out


def check_lengths(lengths, max_len: int) -> None:
    """Check that every length lies in ``[0, max_len]``.

    On concrete arrays this raises ``ValueError`` naming the offending rows.
    Under ``jax.jit`` the values are not known at trace time, so the check
    is registered with :mod:`jax.experimental.checkify`: wrap the jitted
    function in ``checkify.checkify`` to have it enforced.

    Examples:
      >>> import numpy as np
      >>> from seqmask.masks import check_lengths
      >>> check_lengths(np.array([3, 5]), 4)
      Traceback (most recent call last):
      ...
      ValueError: lengths must lie in [0, max_len=4]; rows [1] have lengths [5].
    """
    if _is_traced(lengths):
        lengths = jnp.asarray(lengths)
        checkify.check(
            jnp.all((lengths >= 0) & (lengths <= max_len)),
            f"lengths must lie in [0, max_len={max_len}]",
        )
        return
    values = np.asarray(lengths)
    if not np.issubdtype(values.dtype, np.integer):
        raise TypeError(f"lengths must have an integer dtype; got {values.dtype}.")
    bad = (values < 0) | (values > max_len)
    if np.any(bad):
        rows = np.argwhere(bad)
        # Scalar lengths give empty index rows: report them as ().
        rows_text = [
            tuple(int(i) for i in r) if r.size != 1 else int(r[0]) for r in rows
        ]
        raise ValueError(
            f"lengths must lie in [0, max_len={max_len}]; rows {rows_text[:8]} "
            f"have lengths {values[bad][:8].tolist()}."
        )


def check_mask(mask, batch_time_shape: Sequence[int], *, name: str = "mask") -> None:
    """Check that ``mask`` is boolean with exactly the given shape.

    Raises ``TypeError`` for a non-boolean mask and ``ValueError`` for a shape
    mismatch, naming the argument, the expected and the given shape.
    """
    dtype = jnp.result_type(mask)
    if dtype != jnp.bool_:
        raise TypeError(
            f"{name} must be a boolean array; got dtype {dtype}. Use "
            f"`{name} != 0` or `seqmask.masks.lengths_to_mask` to build one."
        )
    shape = tuple(np.shape(mask))
    if shape != tuple(batch_time_shape):
        raise ValueError(
            f"{name} must have shape {tuple(batch_time_shape)} (the batch and time "
            f"axes of the inputs); got {shape}."
        )


def resolve_mask(
    xs, *, mask=None, lengths=None, time_major: bool = False, name: str = "rnn"
):
    """The boolean mask for batch-major (or time-major) ``xs``, or None.

    ``mask`` and ``lengths`` are alternatives; giving both is an error. The
    batch and time axes are the leading ``mask.ndim`` axes of ``xs`` (for
    ``lengths``, the leading ``lengths.ndim + 1`` axes).
    """
    if mask is not None and lengths is not None:
        raise ValueError(f"{name}: give mask or lengths, not both.")
    xs_shape = tuple(np.shape(xs))
    if lengths is not None:
        lengths = jnp.asarray(lengths)
        if not jnp.issubdtype(lengths.dtype, jnp.integer):
            raise TypeError(
                f"{name}: lengths must have an integer dtype; got {lengths.dtype}."
            )
        n_batch = lengths.ndim
        if len(xs_shape) < n_batch + 1:
            raise ValueError(
                f"{name}: lengths of shape {lengths.shape} need inputs with at least "
                f"{n_batch + 1} axes; got inputs of shape {xs_shape}."
            )
        if time_major:
            batch, time = xs_shape[1 : n_batch + 1], xs_shape[0]
        else:
            batch, time = xs_shape[:n_batch], xs_shape[n_batch]
        if tuple(lengths.shape) != tuple(batch):
            raise ValueError(
                f"{name}: lengths must have the batch shape {tuple(batch)} of the "
                f"inputs (shape {xs_shape}, "
                f"{'time-major' if time_major else 'batch-major'}); "
                f"got {tuple(lengths.shape)}."
            )
        return lengths_to_mask(lengths, int(time), time_major=time_major)
    if mask is None:
        return None
    mask = jnp.asarray(mask)
    if mask.ndim < 1 or len(xs_shape) < mask.ndim:
        raise ValueError(
            f"{name}: mask of shape {tuple(mask.shape)} must cover the leading batch "
            f"and time axes of the inputs of shape {xs_shape}."
        )
    check_mask(mask, xs_shape[: mask.ndim], name="mask")
    return mask


def _as_bool_mask(mask, name: str):
    mask = jnp.asarray(mask)
    if mask.dtype != jnp.bool_:
        raise TypeError(f"{name} must be a boolean array; got dtype {mask.dtype}.")
    return mask
