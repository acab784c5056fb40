"""Host data: NumPy arrays built from user data, values that must fit a
dtype, and PRNG keys."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from seqmask._checks._core import (
    describe,
    fail,
    is_float,
    is_traced,
    listing,
    traced_check,
)

_NUMERIC_KINDS = "biuf"


def host_array(value, name: str, where: str, *, hint: str = "") -> np.ndarray:
    """``value`` as a NumPy array of a boolean, integer or floating dtype,
    without moving host data to a device. ``TypeError`` for anything else:
    ragged nested lists, object arrays, strings, None."""
    if value is None or isinstance(value, (str, bytes, dict)):
        fail(where, f"{name} must be an array; got {describe(value)}.{hint}", TypeError)
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:
        fail(
            where,
            f"{name} must be a (rectangular) array; got {describe(value)} that "
            f"NumPy cannot read as one ({error}).{hint}",
            TypeError,
        )
    # bfloat16 and the other ml_dtypes floats have NumPy kind "V".
    extended_float = array.dtype.kind == "V" and jnp.issubdtype(
        array.dtype, jnp.floating
    )
    if array.dtype.kind not in _NUMERIC_KINDS and not extended_float:
        what = (
            "ragged nested lists or mixed objects?"
            if array.dtype == object
            else "not numbers"
        )
        fail(
            where,
            f"{name} must hold numbers (a boolean, integer or floating dtype); got "
            f"dtype {array.dtype} ({what}).{hint}",
            TypeError,
        )
    return array


def representable(value, dtype, name: str, where: str, *, hint: str = "") -> None:
    """Every entry of ``value`` (host data or a Python number) is exactly
    representable in ``dtype``: integers within its range, no fraction for an
    integer dtype, finite floats that do not overflow (a float may round to
    the nearest, an integer may not). ``TypeError`` for a
    value that is not a number, ``ValueError`` for one that does not fit."""
    if isinstance(value, (str, bytes)) or value is None:
        fail(where, f"{name} must be a number; got {describe(value)}.", TypeError)
    if is_traced(value):
        x = jnp.asarray(value)
        traced_check(
            _fits_traced(x, np.dtype(dtype)),
            f"{where}: {name} does not fit dtype {np.dtype(dtype)}{hint}",
            x,
        )
        return
    array = host_array(value, name, where)
    dtype = np.dtype(dtype)
    if array.size == 0 or is_float(dtype) and array.dtype.kind == "b":
        return
    with np.errstate(all="ignore"):
        values = array.astype(np.float64) if array.dtype.kind != "b" else array
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            low, high = info.min, info.max
            bad = ~np.isfinite(values) | (values != np.round(values))
            if array.dtype.kind in "iu":  # exact, even beyond float64's 2**53
                bad = (array < low) | (array > high)
            else:
                bad = bad | (values < low) | (values > high)
        elif dtype.kind == "b":
            low, high = 0, 1
            bad = (values != 0) & (values != 1)
        else:
            high = float(jnp.finfo(dtype).max)
            low = -high
            bad = np.isfinite(values) & (np.abs(values) > high)
            if array.dtype.kind in "iu":  # an integer must stay that integer
                converted = array.astype(dtype)
                if converted.dtype.kind == "c":
                    converted = np.real(converted)
                bad = bad | (converted.astype(array.dtype) != array)
    if not np.any(bad):
        return
    shown = listing(array[bad].tolist() if array.ndim else [array.item()])
    kind = "integers" if dtype.kind in "iu" else "values"
    if dtype.kind not in "iub" and array.dtype.kind in "iu":
        kind = "integers it holds exactly,"
    fail(
        where,
        f"{name} does not fit dtype {dtype} ({kind} in [{low}, {high}]); got "
        f"{shown}.{hint}",
    )


def _fits_traced(x: jax.Array, dtype: np.dtype) -> jax.Array:
    """:func:`representable`'s rule on a traced value: converted to
    ``dtype`` and back it is unchanged (an integer keeps its sign), but a
    float into a float dtype may round, only not overflow."""
    if jnp.issubdtype(x.dtype, jnp.complexfloating) or jnp.issubdtype(
        dtype, jnp.complexfloating
    ):
        return jnp.bool_(True)  # no such values reach the checks
    converted = x.astype(dtype)
    if is_float(x) and is_float(dtype):
        return jnp.isfinite(converted) | ~jnp.isfinite(x)
    good = converted.astype(x.dtype) == x
    if not is_float(x) and not is_float(dtype):
        good = good & ((converted >= 0) == (x >= 0))
    return good


def prng_key(value, name: str, where: str):
    """A single PRNG key: a typed key array (``jax.random.key``) or a legacy
    ``uint32[2]`` (``jax.random.PRNGKey``); ``TypeError`` otherwise."""
    dtype = getattr(value, "dtype", None)
    shape = getattr(value, "shape", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        if shape != ():
            fail(where, f"{name} must be a single PRNG key; got shape {shape}.")
        return value
    if dtype == jnp.uint32 and shape == (2,):
        return value
    fail(
        where,
        f"{name} must be a PRNG key, e.g. jax.random.key(0); got {describe(value)}.",
        TypeError,
    )
