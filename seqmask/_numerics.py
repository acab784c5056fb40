"""Numerics shared by cells, attention, the encoder-decoder and the losses.

The dtype rule of every dense computation in seqmask (compute in the
promotion of input and parameter dtypes, or an explicit ``dtype``;
accumulate in the wider of the compute and parameter dtypes), the dense
layer that follows it, the default initialiser of kernels, and the signed
dtype that integer ids are compared and looked up in.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

LECUN_NORMAL = jax.nn.initializers.lecun_normal()


def wider(a, b):
    """The wider of two float dtypes, independent of the promotion mode.

    ``jnp.promote_types`` follows ``jax_numpy_dtype_promotion`` and refuses
    bfloat16 with float32 in strict mode; the choice here is deliberate, not
    an implicit promotion.
    """
    a, b = jnp.dtype(a), jnp.dtype(b)
    if a == b:
        return a
    if a.itemsize != b.itemsize:
        return a if a.itemsize > b.itemsize else b
    return jnp.dtype(jnp.float32)  # bfloat16 vs float16


def signed_ids(ids: jax.Array) -> jax.Array:
    """Integer ``ids`` in a signed dtype of at least 32 bits that holds every
    value they can take, so that comparing them with a vocabulary size or
    -1, or using them as indices, neither wraps nor overflows (uint8 ids
    against 300 classes; uint64 ids under x64, which int32 would wrap into
    range)."""
    if ids.dtype.itemsize >= 4 and not jnp.issubdtype(ids.dtype, jnp.unsignedinteger):
        return ids
    return ids.astype(jnp.int64 if ids.dtype.itemsize == 8 else jnp.int32)


def dense(x, kernel, bias=None, dtype=None, acc_dtype=None):
    """``x @ kernel + bias``: operands in ``dtype``, accumulated in ``acc_dtype``.

    Without dtypes, the operands keep their own and the matmul accumulates in
    the wider of the two.
    """
    if dtype is None:
        dtype = wider(jnp.result_type(x), kernel.dtype)
    if acc_dtype is None:
        acc_dtype = wider(dtype, kernel.dtype)
    y = jnp.matmul(
        x.astype(dtype), kernel.astype(dtype), preferred_element_type=acc_dtype
    )
    if bias is None:
        return y
    return y + jnp.broadcast_to(bias.astype(acc_dtype), y.shape)
