"""Messages and concreteness: what every check of :mod:`seqmask._checks` uses.

A message starts with the public function's name (``where``) and says what
was expected and what was given (:func:`describe`); a value is *concrete*
when it can be read now, and *traced* under ``jit``, where a value check
registers a checkify check instead (:func:`traced_check`).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import NoReturn

import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer
from jax.experimental import checkify

# How many offending rows or values a message lists before it says "...".
_SHOWN = 8


def fail(where: str, message: str, error: type[Exception] = ValueError) -> NoReturn:
    """Raise ``error(f"{where}: {message}")``."""
    raise error(f"{where}: {message}")


def describe(value) -> str:
    """A short description of ``value`` for 'got ...' (type, dtype and shape)."""
    if value is None:
        return "None"
    if isinstance(value, (bool, numbers.Number, str)):
        return f"{type(value).__name__} {value!r}"
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    if shape is not None and dtype is not None:
        return f"{dtype}{list(shape)}"
    if isinstance(value, (list, tuple)):
        return f"{type(value).__name__} of length {len(value)}"
    return type(value).__name__


def listing(values: Sequence, limit: int = _SHOWN) -> str:
    shown = ", ".join(str(v) for v in list(values)[:limit])
    return f"[{shown}{', ...' if len(values) > limit else ''}]"


def is_traced(x) -> bool:
    """Whether any leaf of ``x`` is a JAX tracer (its value unknown now)."""
    return any(isinstance(leaf, Tracer) for leaf in jax.tree.leaves(x))


def concrete(x) -> np.ndarray | None:
    """``x`` as a NumPy array when its value is known now, else None."""
    if isinstance(x, Tracer):
        return None
    try:
        return np.asarray(x)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None


def traced_check(predicate, message: str, *values) -> None:
    """Register ``predicate`` with checkify (a no-op unless functionalized).

    ``message`` is a plain string (its braces are escaped), followed by
    ``values`` formatted as ``"; got {...}"`` parts when given.
    """
    text = message.replace("{", "{{").replace("}", "}}")
    if values:
        text += "; got " + ", ".join("{}" for _ in values)
    checkify.debug_check(jnp.all(jnp.asarray(predicate)), text, *values)


def is_float(x) -> bool:
    """Whether ``x`` (an array or a dtype) is of a floating or complex dtype."""
    return jnp.issubdtype(jnp.result_type(x), jnp.inexact)
