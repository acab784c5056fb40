r"""Attention over encoder outputs, with the source mask.

An attention mechanism is an :class:`Attention`: a small immutable record of
pure functions, like a :class:`seqmask.cells.Cell`::

  attention = seqmask.attention.additive(attention_size=64)
  params = attention.init(key, query_size, memory_size)
  context, weights = attention.apply(params, query, memory, mask)

``memory`` is the encoder output ``[*batch, source, M]`` and ``mask`` the
source mask ``[*batch, source]``. Padded source positions get *exactly* zero
weight; a row with no valid position gets zero weights and a zero context
(no NaN in values or gradients), and so does every row of a memory with no
source position at all (``[*batch, 0, M]``); whatever sits in ``memory`` at padded
positions (NaN, Inf) changes no value and no gradient, because memory is
selected to zero before anything reads it. The scores are accumulated in
float32 (or float64) and the softmax runs in it whatever the input dtype, so
dot products of half-precision vectors do not overflow (float16 projected
keys of ``general`` and ``additive`` are float32 too). The part of the
score that does not depend on the query (``project_memory``, e.g.
:math:`M W_k` for additive attention) is computed once per source sequence
and can be passed back in as ``keys``, so a decoder does not recompute it at
every step.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

import seqmask._checks as _checks
from seqmask import _masking
from seqmask._numerics import LECUN_NORMAL, dense, wider

__all__ = ["Attention", "additive", "dot", "general", "masked_softmax"]

Params = Any
Initializer = Callable[..., jax.Array]


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
    position gives zeros (not NaN), and its gradient is zero; so does a row
    whose valid scores are all ``-inf`` (a valid ``+inf`` gives NaN, as in
    ``jax.nn.softmax``). Scores at
    padded positions may be anything (NaN, Inf): they are selected away
    before the exponential, so they reach neither the value nor the
    gradient. Computes in float32, or float64 for float64 scores.

    Args:
      scores: ``[*batch, source]``, floating point.
      mask: boolean ``[*batch, source]``, true at valid positions; None: all
        valid.

    Returns:
      Weights ``[*batch, source]`` in float32 (float64), summing to 1 over
      the valid positions of each row with at least one finite valid score.

    Examples:
      >>> import jax.numpy as jnp
      >>> from seqmask.attention import masked_softmax
      >>> scores = jnp.array([[0.0, jnp.log(3.0), jnp.nan], [1.0, 2.0, 3.0]])
      >>> mask = jnp.array([[True, True, False], [False, False, False]])
      >>> print(masked_softmax(scores, mask).round(4))
      [[0.25 0.75 0.  ]
       [0.   0.   0.  ]]
    """
    where = "masked_softmax"
    scores = _checks.floating_array(scores, "scores", where)
    _checks.min_rank(scores, 1, "scores", where, "[*batch, source]")
    scores = scores.astype(wider(scores.dtype, jnp.float32))
    if mask is not None:
        mask = _mask(mask, scores.shape, where)
    if scores.shape[-1] == 0:  # no position at all: as a row with no valid one
        return scores
    if mask is None:
        return jax.nn.softmax(scores, axis=-1)
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
    kernel_init: Initializer = LECUN_NORMAL,
    energy_init: Initializer = LECUN_NORMAL,
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
      >>> print(context.shape, weights[0])
      (2, 5) [0.5 0.5 0.  0. ]
    """
    where = "additive"
    attention_size = _checks.positive_int(attention_size, "attention_size", where)
    param_dtype = _param_options(
        param_dtype, where, kernel_init=kernel_init, energy_init=energy_init
    )

    def init(key, query_size, memory_size):
        query_size, memory_size = _init_args(key, query_size, memory_size, where)
        k_query, k_memory, k_energy = jax.random.split(key, 3)
        size = attention_size
        return {
            "query_kernel": kernel_init(k_query, (query_size, size), param_dtype),
            "memory_kernel": kernel_init(k_memory, (memory_size, size), param_dtype),
            "bias": jnp.zeros((size,), param_dtype),
            "energy": energy_init(k_energy, (size, 1), param_dtype)[:, 0],
        }

    def shapes(query_size, memory_size):
        size = attention_size
        return {
            "query_kernel": (query_size, size),
            "memory_kernel": (memory_size, size),
            "bias": (size,),
            "energy": (size,),
        }

    def project_memory(params, memory, mask=None):
        memory = _masked_memory(memory, mask, where)
        _check_params(params, shapes, memory, f"{where}.project_memory", label)
        kernel = params["memory_kernel"]
        return dense(
            memory, kernel, params["bias"], acc_dtype=_keys_dtype(memory, kernel)
        )

    def score(params, query, keys):
        _check_query(query, params["query_kernel"].shape[0], keys, where)
        dtype = wider(query.dtype, keys.dtype)
        projected = dense(query, params["query_kernel"], dtype=dtype, acc_dtype=dtype)
        hidden = jnp.tanh(keys.astype(dtype) + projected[..., None, :])
        return jnp.matmul(
            hidden,
            params["energy"].astype(dtype),
            preferred_element_type=wider(dtype, jnp.float32),
        )

    label = f"additive({attention_size})"
    parts = _Parts(init, shapes, project_memory, score, label)
    return _make_attention(where, parts)


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

    scaled = _checks.flag(scaled, "scaled", "dot")

    def init(key, query_size, memory_size):
        query_size, memory_size = _init_args(key, query_size, memory_size, "dot")
        if query_size != memory_size:
            _checks.fail(
                "dot.init",
                f"dot attention needs query_size == memory_size; got query_size="
                f"{query_size}, memory_size={memory_size}. Use general() or "
                "additive() for different sizes.",
            )
        return {}

    def shapes(query_size, memory_size):
        return {}

    def project_memory(params, memory, mask=None):
        memory = _masked_memory(memory, mask, "dot")
        _check_params(params, shapes, memory, "dot.project_memory", "dot()")
        return memory

    def score(params, query, keys):
        del params
        _check_query(query, keys.shape[-1], keys, "dot")
        dtype = wider(query.dtype, keys.dtype)
        scores = jnp.einsum(
            "...k,...sk->...s",
            query.astype(dtype),
            keys.astype(dtype),
            preferred_element_type=wider(dtype, jnp.float32),
        )
        if scaled:
            scores = scores / jnp.sqrt(jnp.asarray(keys.shape[-1], scores.dtype))
        return scores

    return _make_attention("dot", _Parts(init, shapes, project_memory, score, "dot()"))


def general(
    *, param_dtype=jnp.float32, kernel_init: Initializer = LECUN_NORMAL
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

    param_dtype = _param_options(param_dtype, "general", kernel_init=kernel_init)

    def init(key, query_size, memory_size):
        query_size, memory_size = _init_args(key, query_size, memory_size, "general")
        return {"kernel": kernel_init(key, (query_size, memory_size), param_dtype)}

    def shapes(query_size, memory_size):
        return {"kernel": (query_size, memory_size)}

    def project_memory(params, memory, mask=None):
        memory = _masked_memory(memory, mask, "general")
        _check_params(params, shapes, memory, "general.project_memory", "general()")
        kernel = jnp.swapaxes(params["kernel"], 0, 1)
        return dense(memory, kernel, acc_dtype=_keys_dtype(memory, kernel))

    def score(params, query, keys):
        _check_query(query, params["kernel"].shape[0], keys, "general")
        dtype = wider(query.dtype, keys.dtype)
        return jnp.einsum(
            "...q,...sq->...s",
            query.astype(dtype),
            keys.astype(dtype),
            preferred_element_type=wider(dtype, jnp.float32),
        )

    parts = _Parts(init, shapes, project_memory, score, "general()")
    return _make_attention("general", parts)


class _Parts(NamedTuple):
    """What tells one attention mechanism apart: its ``init``, the shapes of
    its parameters ``(query_size, memory_size) -> {name: shape}``, its
    ``project_memory`` and its query-dependent ``score``, and a label for
    messages."""

    init: Callable[..., Params]
    shapes: Callable[[int, int], dict]
    project_memory: Callable[..., jax.Array]
    score: Callable[..., jax.Array]
    label: str


def _make_attention(name: str, parts: _Parts) -> Attention:
    """Assemble an :class:`Attention` from its parts."""
    where = f"{name}.apply"
    project_memory = parts.project_memory

    def apply(params, query, memory, mask=None, *, keys=None):
        memory = _checks.floating_array(memory, "memory", where)
        _checks.min_rank(memory, 2, "memory", where, "[*batch, source, features]")
        _check_params(params, parts.shapes, memory, where, parts.label)
        if mask is not None:
            mask = _mask(mask, memory.shape[:-1], where)
        if keys is None:
            keys = project_memory(params, memory, mask)
        else:
            keys = _checks.floating_array(keys, "keys", where)
            made = jax.eval_shape(project_memory, params, memory, mask).shape
            if keys.shape != made:
                _checks.fail(
                    where,
                    f"keys must be [*batch, source, K] = {tuple(made)}, what "
                    "project_memory makes for this memory; got "
                    f"{tuple(keys.shape)}. Make them with project_memory.",
                )
        query = _checks.floating_array(query, "query", where)
        weights = masked_softmax(score_of(params, query, keys), mask)
        memory = _masked_memory(memory, mask, name)
        acc = wider(memory.dtype, weights.dtype)
        context = jnp.einsum(
            "...s,...sm->...m",
            weights.astype(acc),
            memory.astype(acc),
            preferred_element_type=acc,
        )
        return context.astype(memory.dtype), weights

    score_of = parts.score
    return Attention(
        init=parts.init, project_memory=project_memory, apply=apply, name=name
    )


def _keys_dtype(memory, kernel):
    """float32 for float16 (its sums overflow); bfloat16 has float32's range."""
    dtype = jnp.dtype(wider(memory.dtype, kernel.dtype))
    return jnp.dtype(jnp.float32) if dtype == jnp.float16 else dtype


def _check_params(params, shapes, memory, where: str, label: str) -> None:
    """``params`` are those of the attention ``label`` (the query and memory
    sizes read from their own kernels), and ``memory`` has the feature size
    they were made for."""
    template = shapes(-1, -2)  # where the query (-1) and memory (-2) sizes sit
    if not template and (
        params is None or (isinstance(params, Mapping) and not params)
    ):
        return
    sizes = {-1: 1, -2: int(memory.shape[-1])}
    read = set()
    if isinstance(params, Mapping):
        for key, shape in template.items():
            given = tuple(getattr(params.get(key), "shape", ()))
            if len(given) == len(shape):
                for want, got in zip(shape, given, strict=True):
                    if want < 0 and want not in read:
                        sizes[want] = int(got)
                        read.add(want)
    expected = {
        key: jax.ShapeDtypeStruct(
            shapes(sizes[-1], sizes[-2])[key], _param_dtype(params)
        )
        for key in template
    }
    _checks.params_like(
        params, expected, "params", where, owner=label, hint=_looks_like(params, label)
    )
    if memory.shape[-1] != sizes[-2]:
        _checks.fail(
            where,
            f"memory must be [*batch, source, {sizes[-2]}] (the memory_size the "
            f"parameters were made for); got shape {tuple(memory.shape)}.",
        )


def _param_dtype(params):
    """The floating dtype of most leaves: an error names the odd one out."""
    dtypes = [getattr(leaf, "dtype", None) for leaf in jax.tree.leaves(params)]
    floating = [d for d in dtypes if d is not None and jnp.issubdtype(d, jnp.floating)]
    if not floating:
        return jnp.dtype(jnp.float32)
    return collections.Counter(floating).most_common(1)[0][0]


def _looks_like(params, label: str) -> str:
    """Which attention ``params`` belong to, when another one's."""
    if not isinstance(params, Mapping):
        return ""
    kinds = {
        frozenset({"query_kernel", "memory_kernel", "bias", "energy"}): "additive",
        frozenset({"kernel"}): "general()",
        frozenset(): "dot()",
    }
    guess = kinds.get(frozenset(params))
    if guess is None or label.startswith(guess.rstrip("()")):
        return ""
    return f"\nThese look like {guess} parameters; give {label} its own init's."


def _masked_memory(memory, mask, name: str) -> jax.Array:
    """``memory`` checked, with zeros at padded positions (selected, so that
    NaN there reaches nothing)."""
    where = f"{name}.project_memory"
    memory = _checks.floating_array(memory, "memory", where)
    _checks.min_rank(memory, 2, "memory", where, "[*batch, source, features]")
    if mask is None:
        return memory
    return _masking.zero_padding(_mask(mask, memory.shape[:-1], where), memory)


def _mask(mask, shape, where: str) -> jax.Array:
    return _checks.bool_array(
        mask, "mask", where, shape=shape, layout="[*batch, source]"
    )


def _check_query(query, size: int, keys, name: str) -> None:
    want = (*keys.shape[:-2], size)
    if tuple(query.shape) != want:
        _checks.fail(
            f"{name}.apply",
            f"query must be [*batch, query_size] = {want} for memory of batch "
            f"shape {tuple(keys.shape[:-2])}; got {tuple(query.shape)}.",
        )


def _init_args(key, query_size, memory_size, name: str) -> tuple[int, int]:
    """The checked arguments of an attention's ``init``: the sizes."""
    where = f"{name}.init"
    _checks.prng_key(key, "key", where)
    return (
        _checks.positive_int(query_size, "query_size", where),
        _checks.positive_int(memory_size, "memory_size", where),
    )


def _param_options(param_dtype, where: str, **initializers):
    """``param_dtype`` checked (a floating dtype), and the initialisers."""
    for name, init in initializers.items():
        _checks.function(init, name, where, "(key, shape, dtype) -> array")
    return _checks.dtype(param_dtype, "param_dtype", where, floating=True)
