"""What a scan's step function returns: a pair, and a carry like its input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from seqmask._checks._core import describe, fail
from seqmask._checks._trees import leading_axes, tree_like


def scan_step(
    out, carry, batch_shape, where: str, *, promote_weak: bool = False
) -> tuple:
    """``(new_carry, y)`` from what a step returned given ``carry``: a pair,
    a carry like the one given, and (unless ``batch_shape`` is None)
    outputs with the batch's leading axes. With ``promote_weak``, a weakly
    typed leaf of ``carry`` (a Python number) takes any dtype, as
    :func:`jax.lax.scan` promotes it."""
    new_carry, y = _pair(out, where)
    expected = carry
    if promote_weak and jax.tree.structure(new_carry) == jax.tree.structure(carry):
        expected = jax.tree.map(_promoted, carry, new_carry)
    tree_like(
        new_carry,
        expected,
        "carry",
        where,
        expected_from="the step function must return a carry like its input",
        error=TypeError,
        dtype_hint="Cast inside the step function (e.g. `.astype(carry.dtype)`) "
        "or start from a carry of the dtype it computes in.",
    )
    if batch_shape is not None:
        leading_axes(y, batch_shape, "the step's output", where)
    return new_carry, y


def promote_weak_init(f, init, xs):
    """``init`` with each weakly typed leaf (a Python number) in the dtype
    the step ``f`` gives that leaf, as :func:`jax.lax.scan` promotes it, so
    that a masked scan starts from the carry an unmasked one would. ``xs``
    are time-major; ``f`` is traced once, on their shapes. A step that does
    not return a pair with a carry like ``init`` leaves it unchanged (its
    check says what is wrong)."""
    if not any(_is_weak(leaf) for leaf in jax.tree.leaves(init)):
        return init
    x = jax.tree.map(lambda v: jax.ShapeDtypeStruct(np.shape(v)[1:], v.dtype), xs)
    out = jax.eval_shape(f, init, x)
    if not (isinstance(out, tuple) and len(out) == 2):
        return init
    if jax.tree.structure(out[0]) != jax.tree.structure(init):
        return init
    return jax.tree.map(
        lambda leaf, new: jnp.asarray(leaf, new.dtype) if _is_weak(leaf) else leaf,
        init,
        out[0],
    )


def _is_weak(leaf) -> bool:
    typeof = getattr(jax, "typeof", None)  # older JAX: the tracer's aval
    aval = typeof(leaf) if typeof is not None else getattr(leaf, "aval", None)
    return bool(getattr(aval, "weak_type", False))


def _promoted(leaf, new_leaf):
    """``leaf``, or its shape in ``new_leaf``'s dtype where ``leaf`` is
    weakly typed."""
    if not _is_weak(leaf):
        return leaf
    dtype = jnp.result_type(new_leaf) if hasattr(new_leaf, "dtype") else leaf.dtype
    return jax.ShapeDtypeStruct(np.shape(leaf), dtype)


def _pair(out, where: str) -> tuple:
    """``(new_carry, y)``, the pair a step function must return."""
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        fail(
            where,
            "f must return (new_carry, y), a pair, like jax.lax.scan's step "
            f"function; got {describe(out)}. Return (carry, None) for no "
            "output.",
            TypeError,
        )
    new_carry, y = out
    return new_carry, y
