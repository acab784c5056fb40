"""Value ranges and distributions: eager on concrete values, else checkify.

Concrete values raise ``ValueError`` naming the offending entries (rows);
traced ones register a :func:`jax.experimental.checkify.debug_check`.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from seqmask._checks._core import concrete, fail, is_float, listing, traced_check
from seqmask._checks._values import number


def _interval(low, high, low_open: bool, high_open: bool) -> str:
    left = "(" if low_open or low is None else "["
    right = ")" if high_open or high is None else "]"
    low_text = "-inf" if low is None else f"{low}"
    high_text = "inf" if high is None else f"{high}"
    return f"{left}{low_text}, {high_text}{right}"


def in_range(
    value,
    name: str,
    where: str,
    *,
    low=None,
    high=None,
    low_open: bool = False,
    high_open: bool = False,
    finite: bool = True,
    valid=None,
    hint: str = "",
) -> None:
    """Every entry of ``value`` lies in the interval ``low .. high``.

    Concrete values raise ``ValueError`` naming the offending entries;
    traced ones register a checkify check. ``valid`` (a boolean array that
    broadcasts to ``value``) restricts the check to the entries that count.
    NaN is never in range (and with ``finite``, neither is an infinity).
    """
    interval = _interval(low, high, low_open, high_open)
    text = f"{name} must lie in {interval}{hint}"

    def ok(x, xp):
        good = xp.isfinite(x) if finite else ~xp.isnan(x)
        if low is not None:
            good = good & ((x > low) if low_open else (x >= low))
        if high is not None:
            good = good & ((x < high) if high_open else (x <= high))
        return good

    array = concrete(value)
    mask = None if valid is None else concrete(valid)
    if array is None or (valid is not None and mask is None):
        x = jnp.asarray(value)
        good = ok(x, jnp) if is_float(x) else ok(x.astype(jnp.float32), jnp)
        if valid is not None:
            good = good | ~jnp.asarray(valid, jnp.bool_)
        traced_check(good, f"{where}: {text}", x)
        return
    numeric = array.astype(np.float64) if array.dtype.kind in "biu" else array
    good = ok(numeric, np) if array.dtype.kind != "b" else np.ones(array.shape, bool)
    if mask is not None:
        good = good | ~np.broadcast_to(mask.astype(bool), good.shape)
    if np.all(good):
        return
    if array.ndim == 0:
        fail(where, f"{text}; got {array.item()!r}.")
    positions = np.argwhere(~good)
    rows = [tuple(int(i) for i in p) if p.size > 1 else int(p[0]) for p in positions]
    fail(
        where,
        f"{text}; entries {listing(rows)} are {listing(array[~good].tolist())}.",
    )


def hyperparameter(value, name: str, where: str, **interval) -> Any:
    """A real number (``TypeError`` otherwise, see :func:`number`) that lies in
    the interval given as :func:`in_range`'s keywords; returns ``value``."""
    number(value, name, where)
    in_range(value, name, where, **interval)
    return value


def lengths(
    value,
    max_length: int,
    name: str,
    where: str,
) -> None:
    """Lengths lie in ``[0, max_length]`` (the size of the time axis).

    Concrete lengths raise ``ValueError`` naming the offending rows and the
    bound; traced ones register a checkify check.
    """
    array = concrete(value)
    if array is None:
        x = jnp.asarray(value)
        if x.dtype.itemsize < 4:  # the bound in a narrow dtype would wrap
            x = x.astype(jnp.int32)
        traced_check(
            (x >= 0) & (x <= max_length),
            f"{where}: {name} must lie in [0, {max_length}] (the size of the time "
            "axis)",
            x,
        )
        return
    bad = (array < 0) | (array > max_length)
    if not np.any(bad):
        return
    if array.ndim == 0:
        fail(
            where,
            f"{name} must lie in [0, {max_length}] (the size of the time axis); "
            f"got {int(array)}.",
        )
    rows = [
        tuple(int(i) for i in r) if r.size > 1 else int(r[0]) for r in np.argwhere(bad)
    ]
    fail(
        where,
        f"{name} must lie in [0, {max_length}] (the size of the time axis); rows "
        f"{listing(rows)} have lengths {listing(array[bad].tolist())}.",
    )


def token_ids(value, vocab_size: int, name: str, where: str, *, valid=None) -> None:
    """Integer ids lie in ``[0, vocab_size)`` wherever ``valid`` is true."""
    in_range(
        value,
        name,
        where,
        low=0,
        high=vocab_size,
        high_open=True,
        valid=valid,
        hint=f" (the vocabulary has {vocab_size} ids)",
    )


def all_finite(value, name: str, where: str, *, hint: str = "") -> None:
    """No NaN or infinity: eager ``ValueError`` or a checkify check."""
    array = concrete(value)
    if array is None:
        x = jnp.asarray(value)
        traced_check(jnp.isfinite(x), f"{where}: {name} must be finite{hint}")
        return
    if np.all(np.isfinite(array)):
        return
    count = int(np.sum(~np.isfinite(array)))
    fail(where, f"{name} must be finite; got NaN or Inf at {count} entries.{hint}")


def _distribution_tolerance(dtype) -> float:
    if not jnp.issubdtype(dtype, jnp.inexact):  # numpy's misses bfloat16
        return 1e-4
    return max(float(np.sqrt(jnp.finfo(dtype).eps)), 1e-4)


def _distribution_ok(x, tolerance: float, log: bool, xp):
    """Per row (all axes but the last): whether ``x`` is a distribution."""
    if log:
        top = xp.max(xp.where(xp.isnan(x), xp.inf, x), axis=-1, keepdims=True)
        shift = xp.where(xp.isfinite(top), top, 0.0)
        total = xp.log(xp.sum(xp.exp(x - shift), axis=-1)) + shift[..., 0]
        entries = ~xp.isnan(x) & (x <= tolerance) & (x < xp.inf)
    else:
        total = xp.log(xp.sum(x, axis=-1))
        entries = xp.isfinite(x) & (x >= 0)
    return xp.all(entries, axis=-1) & (xp.abs(total) <= tolerance)


def distribution(
    value, name: str, where: str, *, log: bool = False, valid=None, dtype=None
):
    """Each row of ``value`` (its last axis) is a probability distribution.

    Entries non-negative and summing to 1 or, with ``log``, log-probabilities
    (at most 0, with a log-sum-exp of 0), within a tolerance fitting
    ``dtype`` (default: ``value``'s; pass the user's dtype when ``value`` was
    widened). ``valid`` (boolean, broadcasting to ``value.shape[:-1]``)
    limits the check to the rows that count. Concrete values raise
    ``ValueError`` naming the offending rows; traced ones register a
    checkify check.
    """
    kind = "log-probabilities" if log else "probability distributions"
    rule = (
        "each row at most 0 with a log-sum-exp of 0, e.g. jax.nn.log_softmax(logits)"
        if log
        else "each row non-negative and summing to 1"
    )
    text = f"{name} must hold {kind} over the last axis ({rule})"
    tolerance = _distribution_tolerance(
        jnp.result_type(value) if dtype is None else np.dtype(dtype)
    )
    array = concrete(value)
    mask = None if valid is None else concrete(valid)
    if array is None or (valid is not None and mask is None):
        x = jnp.asarray(value)
        x = x.astype(jnp.float32) if x.dtype.itemsize < 4 or not is_float(x) else x
        good = _distribution_ok(x, tolerance, log, jnp)
        if valid is not None:
            good = good | ~jnp.asarray(valid, jnp.bool_)
        traced_check(good, f"{where}: {text}")
        return
    with np.errstate(all="ignore"):
        good = _distribution_ok(array.astype(np.float64), tolerance, log, np)
    if mask is not None:
        good = good | ~np.broadcast_to(mask.astype(bool), good.shape)
    if np.all(good):
        return
    rows = [tuple(int(i) for i in p) for p in np.argwhere(~good)]
    with np.errstate(all="ignore"):
        totals = np.asarray(
            np.sum(np.exp(array) if log else array, axis=-1, dtype=np.float64)
        )
    shown = [round(float(t), 6) for t in totals[~good]]
    fail(
        where,
        f"{text}; rows {listing(rows)} are not (their totals"
        f"{' of exp' if log else ''}: {listing(shown)}).",
    )
