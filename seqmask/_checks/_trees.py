"""Pytrees: structure, leaf shapes and dtypes against a template."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from seqmask._checks._core import describe, fail

PyTree = Any


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
    dtype_hint: str = "",
) -> None:
    """``given`` has the structure of ``expected``, and each leaf its shape
    and dtype (with ``broadcast``, a shape that broadcasts to it).

    ``expected`` may hold arrays or ``jax.ShapeDtypeStruct``. A structure
    mismatch is reported as both structures; leaf mismatches are listed one
    line a leaf, by pytree path (``jax.tree_util.keystr``). Mismatches raise
    ``error``; with ``dtype_error``, a mismatch of dtypes alone (every shape
    fits) raises ``dtype_error`` instead (``TypeError``, as for arrays).
    ``hint`` ends every message; ``dtype_hint`` only that of a mismatch of
    dtypes alone (a fix that only fits that problem, such as a cast).
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
        try:
            shape, dtype = _spec(leaf)
        except TypeError:  # a string, an object: not an array
            fail(
                where,
                f"{name}{jax.tree_util.keystr(path)} must be an array; got "
                f"{describe(leaf)}.{hint}",
                TypeError,
            )
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
        hints = [h.strip() for h in (hint, dtype_hint if shapes_fit else "") if h]
        fail(
            where,
            f"{name} does not match{source}:\n" + "\n".join(problems + hints),
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


def mapping_with_keys(
    value, keys, name: str, where: str, *, expected: str, hint: str = ""
) -> Mapping:
    """``value`` is a mapping with exactly the keys ``keys``: ``TypeError``
    for anything else than a mapping, ``ValueError`` for other keys. The
    message says that ``name`` must be ``expected`` (e.g. "a dict with keys
    'forward' and 'backward'"), then what was given, then ``hint``."""
    if isinstance(value, Mapping) and set(value) == set(keys):
        return value
    mapping = isinstance(value, Mapping)
    got = sorted(value) if mapping else describe(value)
    fail(
        where,
        f"{name} must be {expected}; got {got}.{hint}",
        ValueError if mapping else TypeError,
    )


def leading_axes(
    tree: PyTree,
    batch_shape: Sequence[int],
    name: str,
    where: str,
    *,
    skip: int = 0,
    source: str = "",
) -> None:
    """Every leaf of ``tree`` is ``[*skipped, *batch_shape, ...]``.

    ``source`` says where the batch shape comes from (e.g. "of mask
    [time, *batch] of shape (5, 2)"), so that a message names both sides.
    """
    batch_shape = tuple(batch_shape)
    n = len(batch_shape)
    origin = f" {source}" if source else ""
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        shape = tuple(jnp.shape(leaf))
        if shape[skip : skip + n] != batch_shape:
            after = "after the time axis " if skip else ""
            fail(
                where,
                f"{name}{jax.tree_util.keystr(path)} has shape {shape}; its leading "
                f"axes {after}must be the batch shape {batch_shape}{origin}.",
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
