"""Arrays: array-likes, dtypes, ranks and shapes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from seqmask._checks._core import describe, fail, listing
from seqmask._checks._host import host_array


def array(value, name: str, where: str) -> jax.Array:
    """``jnp.asarray(value)``, with a ``TypeError`` naming the argument when
    ``value`` is not array-like (None, a string, an object array, ...)."""
    if value is None or isinstance(value, (str, bytes, dict)):
        fail(where, f"{name} must be an array; got {describe(value)}.", TypeError)
    if isinstance(value, np.ndarray) and value.dtype == object:
        fail(
            where,
            f"{name} must be a numeric array; got a NumPy array of dtype object "
            "(ragged nested lists?). Pad the rows to one length first.",
            TypeError,
        )
    _fits_canonical_integers(value, name, where)
    try:
        return jnp.asarray(value)
    except OverflowError as error:  # Python ints beyond 64 bits
        fail(where, f"{name} does not fit any integer dtype ({error}).")
    except (TypeError, ValueError) as error:
        fail(
            where,
            f"{name} must be an array; got {describe(value)} ({error}).",
            TypeError,
        )


def _fits_canonical_integers(value, name: str, where: str) -> None:
    """Without ``jax_enable_x64``, ``jnp.asarray`` stores 64-bit integers in
    32 bits and wraps the ones outside: a length of ``2**32 + 1`` would pass
    every range check as 1. ``ValueError`` for host integers that wrap."""
    if jax.config.read("jax_enable_x64") or any(
        isinstance(leaf, jax.Array) for leaf in jax.tree.leaves(value)
    ):
        return  # JAX arrays are 32-bit already; reading them here would sync
    try:
        host = np.asarray(value)
    except (TypeError, ValueError, OverflowError):
        host = None
    if host is None or host.dtype.kind not in "iu" or host.dtype.itemsize < 8:
        return
    bits = np.iinfo(np.int32 if host.dtype.kind == "i" else np.uint32)
    wraps = (host < bits.min) | (host > bits.max)
    if np.any(wraps):
        fail(
            where,
            f"{name} does not fit the 32-bit integers JAX uses without "
            f"jax_enable_x64 (in [{bits.min}, {bits.max}]); got "
            f"{listing(host[wraps].tolist())}.",
        )


def bool_array(
    value,
    name: str,
    where: str,
    *,
    shape: Sequence[int] | None = None,
    layout: str = "",
    host: bool = False,
) -> Any:
    """A boolean array (``TypeError`` otherwise, with the fix), optionally of
    exactly ``shape`` (``ValueError``, naming ``layout`` such as
    ``"[*batch, time]"``). With ``host``, NumPy data stays a NumPy array
    (see :func:`host_array`); JAX arrays stay JAX arrays."""
    if host and not isinstance(value, jax.Array):
        x = host_array(value, name, where)
    else:
        x = array(value, name, where)
    if x.dtype != jnp.bool_:
        fail(
            where,
            f"{name} must be a boolean array; got dtype {x.dtype}. Use "
            f"`{name} != 0` (or seqmask.masks.lengths_to_mask) to build one.",
            TypeError,
        )
    if shape is not None and tuple(x.shape) != tuple(shape):
        described = f" {layout}" if layout else ""
        fail(
            where,
            f"{name} must have shape{described} = {tuple(shape)}; got "
            f"{tuple(x.shape)}.",
        )
    return x


def _array_of(value, name: str, where: str, kinds, expected: str, hint: str):
    x = array(value, name, where)
    if not any(jnp.issubdtype(x.dtype, kind) for kind in kinds):
        fail(where, f"{name} must have {expected}; got {x.dtype}.{hint}", TypeError)
    return x


def integer_array(value, name: str, where: str, *, hint: str = "") -> jax.Array:
    """An array of an integer dtype (``TypeError`` otherwise)."""
    return _array_of(value, name, where, (jnp.integer,), "an integer dtype", hint)


def floating_array(value, name: str, where: str, *, hint: str = "") -> jax.Array:
    """An array of a floating dtype (``TypeError`` otherwise)."""
    hint = hint or f" Cast it first, e.g. {name}.astype(jnp.float32)."
    return _array_of(value, name, where, (jnp.floating,), "a floating dtype", hint)


def numeric_array(value, name: str, where: str) -> jax.Array:
    """An array of a boolean, integer or floating dtype (``TypeError``
    otherwise)."""
    kinds = (jnp.bool_, jnp.integer, jnp.floating)
    expected = "a boolean, integer or floating dtype"
    return _array_of(value, name, where, kinds, expected, "")


def min_rank(x, rank: int, name: str, where: str, layout: str = "") -> None:
    """``x`` has at least ``rank`` axes (``ValueError`` otherwise)."""
    if jnp.ndim(x) < rank:
        described = f" ({layout})" if layout else ""
        fail(
            where,
            f"{name} must have at least {rank} axes{described}; got shape "
            f"{tuple(jnp.shape(x))}.",
        )


def same_shape(
    expected_name: str, expected, name: str, value, where: str, hint: str = ""
) -> None:
    """``value`` has the shape of ``expected`` (``ValueError`` otherwise)."""
    want, got = tuple(jnp.shape(expected)), tuple(jnp.shape(value))
    if want != got:
        fail(
            where,
            f"{name} must have the shape of {expected_name} {want}; got {got}.{hint}",
        )
