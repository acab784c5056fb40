"""Masks: converting between lengths and masks, reversing valid steps, checks.

A mask is a boolean array ``[*batch, time]`` (or ``[time, *batch]`` when time
major) that is true at the valid steps of each row. Any pattern is allowed:
right padding, left padding, holes in the middle and rows with no valid step.
Lengths are the right-padding special case: row ``b`` is valid at steps
``0 .. lengths[b] - 1``. Everything here is a pure function that runs under
``jax.jit``. Lengths outside ``[0, time]`` are an error, never clipped
silently: concrete ones raise ``ValueError``, traced ones register a
:mod:`jax.experimental.checkify` check (see :func:`check_lengths`).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

import seqmask._checks as _checks

__all__ = [
    "lengths_to_mask",
    "mask_to_lengths",
    "reverse_valid_steps",
    "check_lengths",
    "check_mask",
    "resolve_mask",
]


def lengths_to_mask(
    lengths, max_length: int, *, time_major: bool = False, clip: bool = False
) -> jax.Array:
    """Boolean mask that is true at the first ``lengths[b]`` steps of each row.

    Every length must lie in ``[0, max_length]`` (see :func:`check_lengths`:
    concrete lengths raise ``ValueError``, traced ones register a
    ``checkify`` check). With ``clip=True`` lengths outside that range are
    read as clipped to it instead (a negative length gives an empty row, a
    length above ``max_length`` a full one).

    Args:
      lengths: integer array of shape ``[*batch]``.
      max_length: the size of the time axis (a Python int, static under jit).
      time_major: if true the mask is ``[max_length, *batch]``.
      clip: accept lengths outside ``[0, max_length]`` and clip them.

    Returns:
      A ``bool`` array of shape ``[*batch, max_length]`` (or
      ``[max_length, *batch]``).

    Examples:
      >>> import jax.numpy as jnp
      >>> from seqmask.masks import lengths_to_mask
      >>> print(lengths_to_mask(jnp.array([2, 0, 3]), 3).astype(int))
      [[1 1 0]
       [0 0 0]
       [1 1 1]]
      >>> print(lengths_to_mask(jnp.array([5, -1]), 3, clip=True).astype(int))
      [[1 1 1]
       [0 0 0]]
    """
    where = "lengths_to_mask"
    max_length = _checks.non_negative_int(max_length, "max_length", where)
    lengths = _checks.integer_array(lengths, "lengths", where)
    if not _checks.flag(clip, "clip", where):
        _checks.lengths(lengths, max_length, "lengths", where)
    if max_length > 0 and jnp.iinfo(lengths.dtype).max < max_length - 1:
        # The step indices must fit the comparison dtype: with uint8 lengths
        # and max_length > 256 they would wrap around.
        lengths = lengths.astype(jnp.int32)
    steps = jnp.arange(max_length, dtype=lengths.dtype)
    steps = steps.reshape((1,) * lengths.ndim + (max_length,))
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
      >>> print(mask_to_lengths(jnp.array([[True, True, False], [False, True, True]])))
      [2 2]
    """
    where = "mask_to_lengths"
    mask = _checks.bool_array(mask, "mask", where)
    _checks.min_rank(mask, 1, "mask", where, "it needs a time axis")
    axis = 0 if _checks.flag(time_major, "time_major", where) else -1
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
      lengths: alternative to ``mask``: integers ``[*batch]`` in
        ``[0, time]``.
      time_major: whether time is the leading axis of ``xs`` and ``mask``.

    Returns:
      An array like ``xs``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from seqmask.masks import reverse_valid_steps
      >>> xs = jnp.array([[1, 2, 3, 0], [0, 5, 6, 7]])
      >>> mask = xs > 0
      >>> print(reverse_valid_steps(xs, mask))
      [[3 2 1 0]
       [0 7 6 5]]
    """
    where = "reverse_valid_steps"
    xs = _checks.array(xs, "xs", where)
    time_major = _checks.flag(time_major, "time_major", where)
    mask = resolve_mask(
        xs, mask=mask, lengths=lengths, time_major=time_major, name=where
    )
    if mask is None:
        _checks.fail(where, "give mask or lengths; got neither.")
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
    # Padded steps stay where they are (positions laid out like ``source``).
    steps = jnp.arange(time, dtype=source.dtype).reshape((1,) * n_batch + (time,))
    positions = jnp.zeros_like(source) + steps
    source = jnp.where(mask_bm, source, positions)
    index = source.reshape(source.shape + (1,) * (xs_bm.ndim - n_batch - 1))
    index = jnp.broadcast_to(index, xs_bm.shape)
    out = jnp.take_along_axis(xs_bm, index, axis=n_batch)
    return jnp.moveaxis(out, mask.ndim - 1, 0) if time_major else out


def check_lengths(lengths, max_length: int) -> None:
    """Check that every length lies in ``[0, max_length]``.

    On concrete arrays this raises ``ValueError`` naming the offending rows.
    Under ``jax.jit`` the values are not known at trace time, so the check
    is registered with :mod:`jax.experimental.checkify`: a no-op under
    plain ``jit``, reported when the jitted function is wrapped in
    ``checkify.checkify``. Every function of seqmask that takes lengths runs
    this check itself; call it for lengths used elsewhere.

    Args:
      lengths: integer array ``[*batch]``.
      max_length: the size of the time axis.

    Raises:
      TypeError: for non-integer lengths.
      ValueError: for concrete lengths outside ``[0, max_length]``.

    Examples:
      >>> import numpy as np
      >>> from seqmask.masks import check_lengths
      >>> check_lengths(np.array([3, 5]), 4)
      Traceback (most recent call last):
      ...
      ValueError: check_lengths: lengths must lie in [0, 4] (the size of the time axis); rows [1] have lengths [5].
    """  # noqa: E501
    where = "check_lengths"
    max_length = _checks.non_negative_int(max_length, "max_length", where)
    lengths = _checks.integer_array(lengths, "lengths", where)
    _checks.lengths(lengths, max_length, "lengths", where)


def check_mask(mask, batch_time_shape: Sequence[int], *, name: str = "mask") -> None:
    """Check that ``mask`` is boolean with exactly the given shape.

    Raises ``TypeError`` for a non-boolean mask and ``ValueError`` for a shape
    mismatch, naming the argument, the expected and the given shape.

    Examples:
      >>> import numpy as np
      >>> from seqmask.masks import check_mask
      >>> check_mask(np.ones((2, 3), bool), (2, 3))
      >>> check_mask(np.ones((2, 3), np.int32), (2, 3))
      Traceback (most recent call last):
      ...
      TypeError: check_mask: mask must be a boolean array; got dtype int32. Use `mask != 0` (or seqmask.masks.lengths_to_mask) to build one.
    """  # noqa: E501
    shape = _checks.shape_tuple(batch_time_shape, "batch_time_shape", "check_mask")
    _checks.bool_array(mask, name, "check_mask", shape=shape, layout="[*batch, time]")


def resolve_mask(
    xs, *, mask=None, lengths=None, time_major: bool = False, name: str = "rnn"
):
    """The boolean mask for batch-major (or time-major) ``xs``, or None.

    ``mask`` and ``lengths`` are alternatives; giving both is an error. The
    batch and time axes are the leading ``mask.ndim`` axes of ``xs`` (for
    ``lengths``, the leading ``lengths.ndim + 1`` axes). Lengths must lie in
    ``[0, time]`` (checked as :func:`check_lengths` does). ``name`` is the
    public function that error messages start with.

    Examples:
      >>> import numpy as np
      >>> from seqmask.masks import resolve_mask
      >>> print(resolve_mask(np.zeros((2, 3, 5)), lengths=np.array([1, 3])).astype(int))
      [[1 0 0]
       [1 1 1]]
    """
    if mask is not None and lengths is not None:
        _checks.fail(name, "give mask or lengths, not both.")
    xs_shape = tuple(np.shape(xs))
    layout = "[time, *batch]" if time_major else "[*batch, time]"
    if lengths is not None:
        lengths = _checks.integer_array(lengths, "lengths", name)
        n_batch = lengths.ndim
        if len(xs_shape) < n_batch + 1:
            _checks.fail(
                name,
                f"lengths of shape {lengths.shape} need inputs with at least "
                f"{n_batch + 1} axes; got inputs of shape {xs_shape}.",
            )
        if time_major:
            batch, time = xs_shape[1 : n_batch + 1], xs_shape[0]
        else:
            batch, time = xs_shape[:n_batch], xs_shape[n_batch]
        if tuple(lengths.shape) != tuple(batch):
            _checks.fail(
                name,
                f"lengths must have the batch shape {tuple(batch)} of the inputs "
                f"(shape {xs_shape}, {layout}); got {tuple(lengths.shape)}.",
            )
        _checks.lengths(lengths, int(time), "lengths", name)
        return lengths_to_mask(lengths, int(time), time_major=time_major, clip=True)
    if mask is None:
        return None
    mask = _checks.bool_array(mask, "mask", name)
    if mask.ndim < 1 or len(xs_shape) < mask.ndim:
        _checks.fail(
            name,
            f"mask of shape {tuple(mask.shape)} must cover the leading batch and "
            f"time axes of the inputs of shape {xs_shape}.",
        )
    return _checks.bool_array(
        mask, "mask", name, shape=xs_shape[: mask.ndim], layout=layout
    )
