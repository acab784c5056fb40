"""Every argument check of seqmask, in one place.

Each public function checks its arguments with these helpers, so that one
mistake gets one exception type and one kind of message everywhere:
``TypeError`` for a wrong type or dtype, ``ValueError`` for a wrong shape or
value. A message starts with the public function's name (``where``), names
the argument, says what was expected and what was given, and ends with the
fix when there is an obvious one.

*Value* checks (lengths within the time axis, token ids within the
vocabulary, hyperparameters in range) need the values. When the values are
concrete (NumPy arrays, Python numbers, JAX arrays outside ``jit``) they
raise ``ValueError`` at once, naming the offending rows. When they are traced
(under ``jax.jit``, ``vmap``, ``scan``) they are registered with
:func:`jax.experimental.checkify.debug_check`: a no-op under plain ``jit``
(XLA removes the dead predicate), reported by ``checkify.checkify(f)``.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NoReturn

import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer
from jax.experimental import checkify

PyTree = Any

# How many offending rows or values a message lists before it says "...".
_SHOWN = 8


# --------------------------------------------------------------------------
# Messages


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


def _listing(values: Sequence, limit: int = _SHOWN) -> str:
    shown = ", ".join(str(v) for v in list(values)[:limit])
    return f"[{shown}{', ...' if len(values) > limit else ''}]"


# --------------------------------------------------------------------------
# Concreteness


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


# --------------------------------------------------------------------------
# Python values: sizes, options, flags, callables


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
    return value


# --------------------------------------------------------------------------
# Value ranges, eager or through checkify


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
        good = ok(x, jnp) if _is_float(x) else ok(x.astype(jnp.float32), jnp)
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
        f"{text}; entries {_listing(rows)} are {_listing(array[~good].tolist())}.",
    )


def hyperparameter(value, name: str, where: str, **interval) -> Any:
    """A real number (``TypeError`` otherwise, see :func:`number`) that lies in
    the interval given as :func:`in_range`'s keywords; returns ``value``."""
    number(value, name, where)
    in_range(value, name, where, **interval)
    return value


def _is_float(x) -> bool:
    return jnp.issubdtype(jnp.result_type(x), jnp.inexact)


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
        f"{_listing(rows)} have lengths {_listing(array[bad].tolist())}.",
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


# --------------------------------------------------------------------------
# Arrays: dtypes and shapes


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
    try:
        return jnp.asarray(value)
    except (TypeError, ValueError) as error:
        fail(
            where,
            f"{name} must be an array; got {describe(value)} ({error}).",
            TypeError,
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


# --------------------------------------------------------------------------
# Pytrees: structure, shapes and dtypes against a template


def _spec(leaf) -> tuple[tuple[int, ...], np.dtype]:
    return tuple(np.shape(leaf)), np.dtype(jnp.result_type(leaf))


def tree_like(
    given: PyTree,
    expected: PyTree,
    name: str,
    where: str,
    *,
    broadcast: bool = False,
    expected_from: str = "",
    hint: str = "",
    error: type[Exception] = ValueError,
    dtype_error: type[Exception] | None = None,
) -> None:
    """``given`` has the structure of ``expected``, and each leaf its shape
    and dtype (with ``broadcast``, a shape that broadcasts to it).

    ``expected`` may hold arrays or ``jax.ShapeDtypeStruct``. A structure
    mismatch is reported as both structures; leaf mismatches are listed one
    line a leaf, by pytree path (``jax.tree_util.keystr``). Mismatches raise
    ``error``; with ``dtype_error``, a mismatch of dtypes alone (every shape
    fits) raises ``dtype_error`` instead (``TypeError``, as for arrays).
    """
    source = f" ({expected_from})" if expected_from else ""
    given_def = jax.tree.structure(given)
    expected_def = jax.tree.structure(expected)
    if given_def != expected_def:
        fail(
            where,
            f"{name} must have the structure of {expected_def}{source}; got "
            f"{given_def}.{hint}",
            error,
        )
    problems = []
    shapes_fit = True
    for (path, leaf), want in zip(
        jax.tree_util.tree_leaves_with_path(given),
        jax.tree.leaves(expected),
        strict=True,
    ):
        shape, dtype = _spec(leaf)
        want_shape, want_dtype = _spec(want)
        if broadcast:
            try:
                fits = np.broadcast_shapes(shape, want_shape) == want_shape
            except ValueError:
                fits = False
        else:
            fits = shape == want_shape
        shapes_fit = shapes_fit and fits
        if not fits or dtype != want_dtype:
            problems.append(
                f"  {name}{jax.tree_util.keystr(path)}: got {dtype}{list(shape)}, "
                f"expected {want_dtype}{list(want_shape)}"
                + (" (or a shape that broadcasts to it)" if broadcast else "")
            )
    if problems:
        fail(
            where,
            f"{name} does not match{source}:\n"
            + "\n".join(problems)
            + (f"\n{hint.strip()}" if hint else ""),
            dtype_error if dtype_error is not None and shapes_fit else error,
        )


def broadcast_tree_like(given: PyTree, expected: PyTree, name: str, where: str, **kw):
    """:func:`tree_like` with ``broadcast``, then ``given`` broadcast to the
    shapes of ``expected`` (leaves of ``expected`` must be arrays)."""
    tree_like(given, expected, name, where, broadcast=True, **kw)
    return jax.tree.map(
        lambda leaf, want: jnp.broadcast_to(jnp.asarray(leaf, want.dtype), want.shape),
        given,
        expected,
    )


def leading_axes(
    tree: PyTree, batch_shape: Sequence[int], name: str, where: str, *, skip: int = 0
) -> None:
    """Every leaf of ``tree`` is ``[*skipped, *batch_shape, ...]``."""
    batch_shape = tuple(batch_shape)
    n = len(batch_shape)
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        shape = tuple(jnp.shape(leaf))
        if shape[skip : skip + n] != batch_shape:
            after = "after the time axis " if skip else ""
            fail(
                where,
                f"{name}{jax.tree_util.keystr(path)} has shape {shape}; its leading "
                f"axes {after}must be the batch shape {batch_shape}.",
            )


def params_like(
    given: PyTree,
    expected: PyTree,
    name: str,
    where: str,
    *,
    owner: str,
    hint: str = "",
) -> None:
    """``given`` are parameters laid out as ``owner``'s (``expected``).

    The same leaves (by pytree path: ``TypeError`` when ``given`` is not a
    mapping where one is expected, ``ValueError`` for missing or unexpected
    leaves), each of the expected shape (``ValueError``) and a floating
    dtype, either one dtype for every leaf (parameters cast as a whole) or
    each leaf's expected dtype (``TypeError``). ``hint`` ends each message.
    """
    if isinstance(expected, Mapping) and not isinstance(given, Mapping):
        fail(
            where,
            f"{name} must be the parameters of {owner}: a dict with keys "
            f"{sorted(expected)}; got {describe(given)}.{hint}",
            TypeError,
        )
    paths = jax.tree_util.keystr
    given_leaves = {paths(p): x for p, x in jax.tree_util.tree_leaves_with_path(given)}
    wanted = {paths(p): x for p, x in jax.tree_util.tree_leaves_with_path(expected)}
    missing = [f"{name}{p}" for p in wanted if p not in given_leaves]
    unexpected = [f"{name}{p}" for p in given_leaves if p not in wanted]
    if missing or unexpected:
        parts = [f"missing {', '.join(missing)}"] if missing else []
        parts += [f"unexpected {', '.join(unexpected)}"] if unexpected else []
        fail(where, f"{name} are not {owner}'s parameters: {'; '.join(parts)}.{hint}")
    for path, leaf in given_leaves.items():
        if not (hasattr(leaf, "shape") and hasattr(leaf, "dtype")):
            fail(
                where,
                f"{name}{path} must be an array; got {describe(leaf)}.{hint}",
                TypeError,
            )
    specs = {path: _spec(leaf) for path, leaf in given_leaves.items()}
    shapes = [
        f"  {name}{path}: got {list(specs[path][0])}, expected {list(_spec(want)[0])}"
        for path, want in wanted.items()
        if specs[path][0] != _spec(want)[0]
    ]
    if shapes:
        fail(where, f"{name} do not fit {owner}:\n" + "\n".join(shapes) + hint)
    dtypes = {dtype for _, dtype in specs.values()}
    floating = all(jnp.issubdtype(d, jnp.floating) for d in dtypes)
    if floating and len(dtypes) <= 1:
        return
    wrong = [
        f"  {name}{path}: got {specs[path][1]}, expected {_spec(want)[1]}"
        for path, want in wanted.items()
        if specs[path][1] != _spec(want)[1]
        or not jnp.issubdtype(specs[path][1], jnp.floating)
    ]
    if wrong:
        fail(
            where,
            f"{name} of {owner} must have floating dtypes, one for all leaves or "
            "each leaf's own:\n" + "\n".join(wrong) + hint,
            TypeError,
        )


# --------------------------------------------------------------------------
# Distributions over the last axis, eager or through checkify


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
        x = x.astype(jnp.float32) if x.dtype.itemsize < 4 or not _is_float(x) else x
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
        f"{text}; rows {_listing(rows)} are not (their totals"
        f"{' of exp' if log else ''}: {_listing(shown)}).",
    )


# --------------------------------------------------------------------------
# Host data: NumPy arrays built from user data, and values that must fit a dtype


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
    integer dtype, finite floats that do not overflow. ``TypeError`` for a
    value that is not a number, ``ValueError`` for one that does not fit."""
    if isinstance(value, (str, bytes)) or value is None:
        fail(where, f"{name} must be a number; got {describe(value)}.", TypeError)
    array = host_array(value, name, where)
    dtype = np.dtype(dtype)
    if array.size == 0 or _is_float(dtype) and array.dtype.kind in "biu":
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
    if not np.any(bad):
        return
    shown = _listing(array[bad].tolist() if array.ndim else [array.item()])
    kind = "integers" if dtype.kind in "iu" else "values"
    fail(
        where,
        f"{name} does not fit dtype {dtype} ({kind} in [{low}, {high}]); got "
        f"{shown}.{hint}",
    )


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
