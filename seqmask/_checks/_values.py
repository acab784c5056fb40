"""Python values: sizes, options, flags, callables, shapes and numbers."""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable, Iterable
from typing import Any

import jax.numpy as jnp
import numpy as np
from jax.core import Tracer

from seqmask._checks._core import describe, fail


def _is_int(value) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (int, np.integer)):
        return True
    # A 0-d integer array (numpy or concrete JAX) counts as an int.
    return (
        getattr(value, "shape", None) == ()
        and np.issubdtype(getattr(value, "dtype", np.float64), np.integer)
        and not isinstance(value, Tracer)
    )


def integer(value, name: str, where: str, *, minimum: int | None = None) -> int:
    """``value`` as a Python int; ``TypeError`` unless integral, ``ValueError``
    below ``minimum``. Any integer type is accepted (numpy's included), never
    a bool or a float."""
    if not _is_int(value):
        hint = ""
        if isinstance(value, float) and value.is_integer():
            hint = f" Pass {int(value)}."
        fail(
            where,
            f"{name} must be an int; got {describe(value)}.{hint}",
            TypeError,
        )
    result = int(value)
    if minimum is not None and result < minimum:
        kind = {0: "a non-negative int", 1: "a positive int"}.get(
            minimum, f"an int >= {minimum}"
        )
        fail(where, f"{name} must be {kind}; got {result}.")
    return result


def positive_int(value, name: str, where: str) -> int:
    """A size: an int ``>= 1`` of any integer type."""
    return integer(value, name, where, minimum=1)


def non_negative_int(value, name: str, where: str) -> int:
    """A count: an int ``>= 0`` of any integer type."""
    return integer(value, name, where, minimum=0)


def optional_positive_int(value, name: str, where: str) -> int | None:
    return None if value is None else positive_int(value, name, where)


def one_of(value, options: Iterable, name: str, where: str):
    """``value`` if it is one of ``options``, else ``ValueError`` listing them."""
    options = tuple(options)
    try:
        known = any(
            value == option and type(value) is type(option) for option in options
        )
    except (TypeError, ValueError):  # an array compares element-wise
        known = False
    if not known:
        valid = ", ".join(repr(o) for o in options)
        fail(where, f"{name} must be one of {valid}; got {value!r}.")
    return value


def flag(value, name: str, where: str) -> bool:
    """A Python bool (numpy's accepted); ``TypeError`` otherwise."""
    if not isinstance(value, (bool, np.bool_)):
        fail(where, f"{name} must be True or False; got {describe(value)}.", TypeError)
    return bool(value)


def function(value, name: str, where: str, signature: str = "") -> Callable:
    """A callable; ``TypeError`` naming the expected signature otherwise."""
    if not callable(value):
        expected = f" {signature}" if signature else ""
        fail(
            where,
            f"{name} must be a function{expected}; got {describe(value)}.",
            TypeError,
        )
    return value


def initializer(value, name: str, where: str) -> Callable:
    """An initialiser ``(key, shape, dtype) -> array``, wrapped so that a
    wrong signature or a result of another shape is a clear error naming
    ``name`` (not a ``TypeError`` from inside the user's function, nor a
    shape mismatch reported against what was built from it)."""
    function(value, name, where, "(key, shape, dtype) -> array")
    try:
        signature = inspect.signature(value)
    except (TypeError, ValueError):  # no signature to read (a builtin)
        signature = None

    def checked(key, shape, dtype):
        if signature is not None:
            try:
                signature.bind(key, shape, dtype)
            except TypeError:
                fail(
                    where,
                    f"{name} must take (key, shape, dtype), as the initialisers "
                    f"of jax.nn.initializers do; its signature is {signature}.",
                    TypeError,
                )
        result = value(key, shape, dtype)
        if tuple(jnp.shape(result)) != tuple(shape):
            fail(
                where,
                f"{name}(key, shape={tuple(shape)}, dtype={np.dtype(dtype).name}) "
                f"must return an array of that shape; got shape "
                f"{tuple(jnp.shape(result))}.",
            )
        return result

    return checked


def flag_or_int(value, name: str, where: str, *, minimum: int = 1) -> bool | int:
    """A bool, or an int ``>= minimum`` (``unroll``, ``remat``)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if not _is_int(value):
        fail(
            where,
            f"{name} must be a bool or an int >= {minimum}; got {describe(value)}.",
            TypeError,
        )
    return integer(value, name, where, minimum=minimum)


def instance(value, types, name: str, where: str, *, expected: str) -> Any:
    """``value`` if it is an instance of ``types``, else ``TypeError`` saying
    it must be ``expected`` (e.g. "a seqmask.cells.Cell")."""
    if not isinstance(value, types):
        fail(where, f"{name} must be {expected}; got {describe(value)}.", TypeError)
    return value


def shape_tuple(value, name: str, where: str) -> tuple[int, ...]:
    """A shape: an int or a sequence of ints ``>= 0``, as a tuple."""
    if _is_int(value):
        value = (value,)
    if not isinstance(value, (tuple, list)):
        fail(
            where,
            f"{name} must be a tuple of ints (a shape); got {describe(value)}.",
            TypeError,
        )
    return tuple(non_negative_int(size, f"{name} entry", where) for size in value)


def number(value, name: str, where: str) -> Any:
    """A real number: a Python/NumPy scalar or a scalar array (may be traced)."""
    if isinstance(value, (bool, np.bool_)) or isinstance(value, str):
        fail(where, f"{name} must be a real number; got {describe(value)}.", TypeError)
    if isinstance(value, numbers.Real):
        return value
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    if shape is None or dtype is None:
        fail(where, f"{name} must be a real number; got {describe(value)}.", TypeError)
    if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)):
        fail(
            where,
            f"{name} must be a real number; got an array of dtype {dtype}.",
            TypeError,
        )
    if tuple(shape) != ():
        fail(
            where,
            f"{name} must be one number (a scalar); got an array of shape "
            f"{tuple(shape)}.",
        )
    return value


def dtype(value, name: str, where: str, *, floating: bool = False) -> np.dtype:
    """``value`` as a dtype (``jnp.float32``, ``"bfloat16"``, ``np.int8``,
    ...): ``TypeError`` for anything NumPy and JAX cannot read as one, or,
    with ``floating``, for a dtype that is not a floating one."""
    try:
        result = jnp.dtype(value)
    except (TypeError, ValueError):
        result = None
    if result is None or value is None:
        fail(
            where,
            f"{name} must be a dtype such as jnp.float32 or 'bfloat16'; got "
            f"{describe(value)}.",
            TypeError,
        )
    if floating and not jnp.issubdtype(result, jnp.floating):
        fail(
            where,
            f"{name} must be a floating dtype (e.g. jnp.float32 or jnp.bfloat16); "
            f"got {result}.",
            TypeError,
        )
    return result


def optional_dtype(value, name: str, where: str, *, floating: bool = False):
    """None, or a dtype as :func:`dtype` checks it."""
    return None if value is None else dtype(value, name, where, floating=floating)
