r"""Attention over encoder outputs, with the source mask.

An attention mechanism is an :class:`Attention`: a small immutable record of
pure functions, like a :class:`seqmask.cells.Cell`::

  attention = seqmask.attention.additive(attention_size=64)
  params = attention.init(key, query_size, memory_size)
  context, weights = attention.apply(params, query, memory, mask)

``memory`` is the encoder output ``[*batch, source, M]`` and ``mask`` the
source mask ``[*batch, source]``. Padded source positions get *exactly* zero
weight; a row with no valid position gets zero weights and a zero context
(no NaN in values or gradients); whatever sits in ``memory`` at padded
positions (NaN, Inf) changes no value and no gradient, because memory is
selected to zero before anything reads it. The softmax runs in float32 (or
float64) whatever the input dtype. The part of the score that does not
depend on the query (``project_memory``, e.g. :math:`M W_k` for additive
attention) is computed once per source sequence and can be passed back in
as ``keys``, so a decoder does not recompute it at every step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

# The cells' float-widening rule (independent of the promotion mode) keeps
# attention's dtypes consistent with theirs.
from seqmask._numerics import wider as _wider

__all__ = ["Attention", "additive", "dot", "general", "masked_softmax"]

Params = Any
Initializer = Callable[..., jax.Array]

_LECUN_NORMAL = jax.nn.initializers.lecun_normal()


class Attention(NamedTuple):
    """An attention mechanism: pure functions over explicit parameters.

    Attributes:
      init: ``(key, query_size, memory_size) -> params``.
      project_memory: ``(params, memory, mask=None) -> keys``: the
        query-independent part of the scores, ``[*batch, source, K]``,
        computed from ``memory`` ``[*batch, source, M]`` with padded
        positions selected to zero first.
      apply: ``(params, query, memory, mask=None, *, keys=None) -> (context,
        weights)`` for queries ``[*batch, Q]``: ``context`` ``[*batch, M]``
        in the dtype of ``memory``, ``weights`` ``[*batch, source]`` in
        float32 (float64 for float64 inputs). ``keys`` (from
        ``project_memory`` with the same ``mask``) skips recomputing them.
      name: a readable name (``"additive"``, ``"dot"``, ``"general"``).
    """

    init: Callable[[jax.Array, int, int], Params]
    project_memory: Callable[..., jax.Array]
    apply: Callable[..., tuple[jax.Array, jax.Array]]
    name: str = "attention"


def masked_softmax(scores, mask=None) -> jax.Array:
    r"""Softmax over the last axis that gives padded positions exactly zero.

    .. math::

      w_s = \frac{m_s \exp(e_s - \max_{s'} e_{s'})}
                 {\sum_{s'} m_{s'} \exp(e_{s'} - \max_{s'} e_{s'})},

    with the maximum over valid positions only. A row without a valid
    position gives zeros (not NaN), and its gradient is zero. Scores at
    padded positions may be anything (NaN, Inf): they are selected away
    before the exponential, so they reach neither the value nor the
    gradient. Computes in float32, or float64 for float64 scores.

    Args:
      scores: ``[*batch, source]``, floating point.
      mask: boolean ``[*batch, source]``, true at valid positions; None: all
        valid.

    Returns:
      Weights ``[*batch, source]`` in float32 (float64), summing to 1 over
      the valid positions of each row with at least one.

    Examples:
      >>> import jax.numpy as jnp
      >>> from seqmask.attention import masked_softmax
      >>> scores = jnp.array([[0.0, jnp.log(3.0), jnp.nan], [1.0, 2.0, 3.0]])
      >>> mask = jnp.array([[True, True, False], [False, False, False]])
      >>> print(masked_softmax(scores, mask).round(4))
      [[0.25 0.75 0.  ]
       [0.   0.   0.  ]]
    """
    scores = jnp.asarray(scores)
    if not jnp.issubdtype(scores.dtype, jnp.floating):
        raise TypeError(
            f"masked_softmax: scores must be floating point; got {scores.dtype}."
        )
    if scores.ndim < 1:
        raise ValueError(
            "masked_softmax: scores must be [*batch, source]; got a scalar."
        )
    scores = scores.astype(_wider(scores.dtype, jnp.float32))
    if mask is None:
        return jax.nn.softmax(scores, axis=-1)
    mask = _check_mask(mask, scores.shape, "masked_softmax")
    zero = jnp.zeros((), scores.dtype)
    top = jnp.max(
        jnp.where(mask, scores, jnp.asarray(-jnp.inf, scores.dtype)),
        axis=-1,
        keepdims=True,
    )
    # An all-masked row has top = -inf; any finite shift works there.
    top = jax.lax.stop_gradient(jnp.where(jnp.isfinite(top), top, zero))
    # Select the exponent's input, not only its output: exp of a padded NaN
    # or a huge padded score would otherwise poison the gradient as 0 * inf.
    shifted = jnp.where(mask, scores - top, zero)
    exps = jnp.where(mask, jnp.exp(shifted), zero)
    total = jnp.sum(exps, axis=-1, keepdims=True)
    total = jnp.where(total > zero, total, jnp.ones((), scores.dtype))
    return exps / total


def additive(
    attention_size: int,
    *,
    param_dtype=jnp.float32,
    kernel_init: Initializer = _LECUN_NORMAL,
    energy_init: Initializer = _LECUN_NORMAL,
) -> Attention:
    r"""Additive attention (Bahdanau et al. 2015, "concat" in Luong et al.).

    .. math::

      e_s = v^\top \tanh(q W_q + m_s W_m + b), \qquad
      w = \mathrm{masked\_softmax}(e, \mathrm{mask}), \qquad
      c = \textstyle\sum_s w_s m_s.

    Parameters: ``query_kernel`` ``[Q, A]``, ``memory_kernel`` ``[M, A]``,
    ``bias`` ``[A]``, ``energy`` ``[A]`` (:math:`v`). ``project_memory``
    gives :math:`m_s W_m + b` ``[*batch, source, A]``.

    Args:
      attention_size: ``A``, the width of the hidden scoring layer.
      param_dtype: dtype of the parameters.
      kernel_init: initialiser of the two kernels.
      energy_init: initialiser of :math:`v` (given the shape ``(A, 1)``).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from seqmask import attention
      >>> att = attention.additive(8)
      >>> params = att.init(jax.random.key(0), 3, 5)
      >>> memory = jnp.ones((2, 4, 5))
      >>> mask = jnp.array([[True, True, False, False], [True] * 4])
      >>> context, weights = att.apply(params, jnp.ones((2, 3)), memory, mask)
      >>> context.shape, weights[0]
      ((2, 5), Array([0.5, 0.5, 0. , 0. ], dtype=float32))
    """
    attention_size = _check_size(attention_size, "additive: attention_size")

    def init(key, query_size, memory_size):
        query_size = _check_size(query_size, "additive.init: query_size")
        memory_size = _check_size(memory_size, "additive.init: memory_size")
        k_query, k_memory, k_energy = jax.random.split(key, 3)
        size = attention_size
        return {
            "query_kernel": kernel_init(k_query, (query_size, size), param_dtype),
            "memory_kernel": kernel_init(k_memory, (memory_size, size), param_dtype),
            "bias": jnp.zeros((size,), param_dtype),
            "energy": energy_init(k_energy, (size, 1), param_dtype)[:, 0],
        }

    def project_memory(params, memory, mask=None):
        memory = _masked_memory(memory, mask, params["memory_kernel"].shape[0])
        dtype = _wider(memory.dtype, params["memory_kernel"].dtype)
        keys = jnp.matmul(memory.astype(dtype), params["memory_kernel"].astype(dtype))
        return keys + jnp.broadcast_to(params["bias"].astype(dtype), keys.shape)

    def score(params, query, keys):
        _check_query(query, params["query_kernel"].shape[0], keys, "additive")
        dtype = _wider(query.dtype, keys.dtype)
        projected = jnp.matmul(
            query.astype(dtype), params["query_kernel"].astype(dtype)
        )
        hidden = jnp.tanh(keys.astype(dtype) + projected[..., None, :])
        return jnp.matmul(hidden, params["energy"].astype(dtype))

    return _make_attention("additive", init, project_memory, score)


def dot(*, scaled: bool = False) -> Attention:
    r"""Dot-product attention (Luong et al. 2015, "dot"); no parameters.

    .. math::

      e_s = \frac{q \cdot m_s}{\sqrt{M}^{\,[\mathrm{scaled}]}}, \qquad
      w = \mathrm{masked\_softmax}(e, \mathrm{mask}), \qquad
      c = \textstyle\sum_s w_s m_s.

    The query and the memory must have one size, ``Q == M``.

    Args:
      scaled: divide the scores by :math:`\sqrt{M}` (Vaswani et al. 2017).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from seqmask import attention
      >>> att = attention.dot()
      >>> params = att.init(jax.random.key(0), 2, 2)
      >>> memory = jnp.array([[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
      >>> query = jnp.array([jnp.log(3.0), 0.0])
      >>> context, weights = att.apply(params, query, memory,
      ...                              jnp.array([True, True, False]))
      >>> print(weights.round(4))
      [0.75 0.25 0.  ]
    """

    def init(key, query_size, memory_size):
        del key
        query_size = _check_size(query_size, "dot.init: query_size")
        memory_size = _check_size(memory_size, "dot.init: memory_size")
        if query_size != memory_size:
            raise ValueError(
                f"dot attention needs query_size == memory_size; got query_size="
                f"{query_size}, memory_size={memory_size}. Use general() or "
                "additive() for different sizes."
            )
        return {}

    def project_memory(params, memory, mask=None):
        del params
        return _masked_memory(memory, mask, None)

    def score(params, query, keys):
        del params
        _check_query(query, keys.shape[-1], keys, "dot")
        dtype = _wider(query.dtype, keys.dtype)
        scores = jnp.einsum("...k,...sk->...s", query.astype(dtype), keys.astype(dtype))
        if scaled:
            scores = scores / jnp.sqrt(jnp.asarray(keys.shape[-1], dtype))
        return scores

    return _make_attention("dot", init, project_memory, score)


def general(
    *, param_dtype=jnp.float32, kernel_init: Initializer = _LECUN_NORMAL
) -> Attention:
    r"""Bilinear attention (Luong et al. 2015, "general").

    .. math::

      e_s = q W m_s^\top, \qquad
      w = \mathrm{masked\_softmax}(e, \mathrm{mask}), \qquad
      c = \textstyle\sum_s w_s m_s.

    Parameters: ``kernel`` ``[Q, M]`` (:math:`W`). ``project_memory`` gives
    :math:`m_s W^\top` ``[*batch, source, Q]``, so each decoder step costs
    one dot product a source position.

    Args:
      param_dtype: dtype of the parameters.
      kernel_init: initialiser of :math:`W`.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from seqmask import attention
      >>> att = attention.general()
      >>> params = att.init(jax.random.key(0), 3, 4)
      >>> context, weights = att.apply(params, jnp.ones((2, 3)),
      ...                              jnp.ones((2, 6, 4)), jnp.ones((2, 6), bool))
      >>> context.shape, weights.shape
      ((2, 4), (2, 6))
    """

    def init(key, query_size, memory_size):
        query_size = _check_size(query_size, "general.init: query_size")
        memory_size = _check_size(memory_size, "general.init: memory_size")
        return {"kernel": kernel_init(key, (query_size, memory_size), param_dtype)}

    def project_memory(params, memory, mask=None):
        memory = _masked_memory(memory, mask, params["kernel"].shape[1])
        dtype = _wider(memory.dtype, params["kernel"].dtype)
        return jnp.einsum(
            "...sm,qm->...sq", memory.astype(dtype), params["kernel"].astype(dtype)
        )

    def score(params, query, keys):
        _check_query(query, params["kernel"].shape[0], keys, "general")
        dtype = _wider(query.dtype, keys.dtype)
        return jnp.einsum("...q,...sq->...s", query.astype(dtype), keys.astype(dtype))

    return _make_attention("general", init, project_memory, score)


def _make_attention(name, init, project_memory, score) -> Attention:
    """Assemble an :class:`Attention` from its query-dependent ``score``."""

    def apply(params, query, memory, mask=None, *, keys=None):
        memory = jnp.asarray(memory)
        if memory.ndim < 2:
            raise ValueError(
                f"{name} attention: memory must be [*batch, source, features]; got "
                f"shape {tuple(memory.shape)}."
            )
        if mask is not None:
            mask = _check_mask(mask, memory.shape[:-1], f"{name} attention")
        if keys is None:
            keys = project_memory(params, memory, mask)
        else:
            keys = jnp.asarray(keys)
            if keys.shape[:-1] != memory.shape[:-1]:
                raise ValueError(
                    f"{name} attention: keys must be [*batch, source, K] = "
                    f"{tuple(memory.shape[:-1])} + (K,) like memory; got "
                    f"{tuple(keys.shape)}. Make them with project_memory."
                )
        weights = masked_softmax(score(params, jnp.asarray(query), keys), mask)
        memory = _masked_memory(memory, mask, None)
        acc = _wider(memory.dtype, weights.dtype)
        context = jnp.einsum(
            "...s,...sm->...m",
            weights.astype(acc),
            memory.astype(acc),
            preferred_element_type=acc,
        )
        return context.astype(memory.dtype), weights

    return Attention(init=init, project_memory=project_memory, apply=apply, name=name)


def _masked_memory(memory, mask, size: int | None) -> jax.Array:
    memory = jnp.asarray(memory)
    if not jnp.issubdtype(memory.dtype, jnp.floating):
        raise TypeError(
            f"attention: memory must be floating point; got {memory.dtype}."
        )
    if memory.ndim < 2 or (size is not None and memory.shape[-1] != size):
        want = "F" if size is None else size
        raise ValueError(
            f"attention: memory must be [*batch, source, {want}] (the memory_size "
            f"the parameters were made for); got shape {tuple(memory.shape)}."
        )
    if mask is None:
        return memory
    mask = _check_mask(mask, memory.shape[:-1], "attention")
    return jnp.where(
        jnp.broadcast_to(mask[..., None], memory.shape),
        memory,
        jnp.zeros((), memory.dtype),
    )


def _check_mask(mask, shape, where: str) -> jax.Array:
    mask = jnp.asarray(mask)
    if mask.dtype != jnp.bool_:
        raise TypeError(
            f"{where}: mask must be boolean [*batch, source]; got dtype {mask.dtype}. "
            "Use `mask != 0` to convert."
        )
    if mask.shape != tuple(shape):
        raise ValueError(
            f"{where}: mask must have shape [*batch, source] = {tuple(shape)}; got "
            f"{tuple(mask.shape)}."
        )
    return mask


def _check_query(query, size: int, keys, name: str) -> None:
    if not jnp.issubdtype(query.dtype, jnp.floating):
        raise TypeError(
            f"{name} attention: query must be floating point; got {query.dtype}."
        )
    want = (*keys.shape[:-2], size)
    if tuple(query.shape) != want:
        raise ValueError(
            f"{name} attention: query must be [*batch, query_size] = {want} for "
            f"memory of batch shape {tuple(keys.shape[:-2])}; got "
            f"{tuple(query.shape)}."
        )


def _check_size(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int; got {value!r}.")
    return value
