"""The ``Cell`` record and what the built-in cells share: dtypes, dense steps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

Params = Any
Carry = Any
Initializer = Callable[..., jax.Array]


_LECUN_NORMAL = jax.nn.initializers.lecun_normal()


class Cell(NamedTuple):
    """A recurrent cell: pure functions over explicit parameters and carry.

    Attributes:
      init: ``(key, input_size) -> params``.
      initial_carry: ``(params, batch_shape) -> carry``; leaves are
        ``[*batch_shape, ...]``.
      apply: ``(params, carry, x) -> (carry, y)`` for one step; ``x`` is
        ``[*batch, input_size]`` with any (possibly empty) batch shape.
      project_inputs: optional ``(params, xs) -> projected``: the part of the
        step that does not depend on the carry, for any leading axes.
        Layers apply it to the whole sequence at once.
      apply_projected: optional ``(params, carry, projected_x) -> (carry, y)``
        with ``apply(p, c, x) == apply_projected(p, c, project_inputs(p, x))``.
      apply_sequence: optional ``(params, carry, xs, *, mask, resets, reset_to,
        reverse) -> (final_carry, ys)`` over a whole time-major sequence
        (``xs`` ``[time, *batch, input]``, ``mask``/``resets`` ``[time,
        *batch]`` or None), with exactly the results of
        :func:`seqmask.masked_scan` over ``apply``. :func:`seqmask.rnn` uses
        it when present (e.g. a parallel scan for a linear recurrence).
      name: a readable name (``"lstm"``, ``"learnable_initial_state(gru)"``).
      hidden_size: the size of the hidden state, when it has one.
    """

    init: Callable[[jax.Array, int], Params]
    initial_carry: Callable[[Params, tuple[int, ...]], Carry]
    apply: Callable[[Params, Carry, jax.Array], tuple[Carry, jax.Array]]
    project_inputs: Callable[[Params, jax.Array], Any] | None = None
    apply_projected: Callable[[Params, Carry, Any], tuple[Carry, jax.Array]] | None = (
        None
    )
    apply_sequence: Callable[..., tuple[Carry, jax.Array]] | None = None
    name: str = "cell"
    hidden_size: int | None = None


class LSTMCarry(NamedTuple):
    """The LSTM carry: hidden state ``h`` and cell state ``c``, each ``[*batch, H]``."""

    h: jax.Array
    c: jax.Array


def _check_size(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int; got {value!r}.")
    return value


def _orthogonal_blocks(key, hidden_size: int, blocks: int, dtype) -> jax.Array:
    """``[H, blocks * H]``: one orthogonal ``[H, H]`` matrix per gate."""
    keys = jax.random.split(key, blocks)
    init = jax.nn.initializers.orthogonal()
    return jnp.concatenate(
        [init(k, (hidden_size, hidden_size), dtype) for k in keys], 1
    )


def _dtypes(dtype, x_dtype, param_dtype):
    """The compute dtype of the matmuls and the dtype they accumulate in.

    Like Flax: without an explicit ``dtype`` the computation runs in the
    promotion of the input and parameter dtypes (bfloat16 inputs with float32
    parameters compute in float32); with ``dtype=jnp.bfloat16`` the matmuls
    take bfloat16 operands and still accumulate in the parameter dtype.
    """
    x_dtype = jnp.dtype(x_dtype)
    if not jnp.issubdtype(x_dtype, jnp.floating):
        raise TypeError(
            f"cell inputs must be floating point; got {x_dtype}. Embed integer "
            "tokens first."
        )
    compute = jnp.dtype(dtype) if dtype is not None else _wider(x_dtype, param_dtype)
    return compute, _wider(compute, param_dtype)


def _wider(a, b):
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


def _check_input(x, input_size: int, name: str) -> None:
    if jnp.ndim(x) < 1 or jnp.shape(x)[-1] != input_size:
        raise ValueError(
            f"{name}: inputs must be [..., {input_size}] (the input_size the "
            f"parameters were made for); got shape {tuple(jnp.shape(x))}."
        )


def _dense(x, kernel, bias, dtype, acc_dtype):
    """``x @ kernel + bias``: operands in ``dtype``, accumulated in ``acc_dtype``."""
    y = jnp.matmul(
        x.astype(dtype), kernel.astype(dtype), preferred_element_type=acc_dtype
    )
    if bias is None:
        return y
    return y + jnp.broadcast_to(bias.astype(acc_dtype), y.shape)


def _make_cell(
    *,
    name: str,
    hidden_size: int,
    init: Callable[[jax.Array, int], Params],
    initial_carry: Callable[[Params, tuple[int, ...]], Carry],
    step: Callable[[Params, Carry, jax.Array, Any], tuple[Carry, jax.Array]],
    dtype,
) -> Cell:
    """Assemble a dense cell whose input projection is ``x @ input_kernel + b``.

    ``step(params, carry, projected_x, compute_dtype)`` is the recurrent part.
    The projection is held in the accumulation dtype (rounding it to bfloat16
    before adding the recurrent term would throw away precision the carry
    keeps), so ``step`` accumulates in ``projected_x.dtype``.
    """

    def project_inputs(params, xs):
        _check_input(xs, params["input_kernel"].shape[0], name)
        param_dtype = params["recurrent_kernel"].dtype
        compute, acc = _dtypes(dtype, jnp.result_type(xs), param_dtype)
        bias = params["bias"] if "bias" in params else params["input_bias"]
        return _dense(xs, params["input_kernel"], bias, compute, acc)

    def apply_projected(params, carry, projected):
        param_dtype = params["recurrent_kernel"].dtype
        compute, _ = _dtypes(dtype, jnp.result_type(projected), param_dtype)
        return step(params, carry, projected, compute)

    def apply(params, carry, x):
        return apply_projected(params, carry, project_inputs(params, x))

    return Cell(
        init=init,
        initial_carry=initial_carry,
        apply=apply,
        project_inputs=project_inputs,
        apply_projected=apply_projected,
        name=name,
        hidden_size=hidden_size,
    )


def _recurrent(h, kernel, compute, acc):
    """``h @ kernel`` with operands in ``compute``, accumulating in ``acc``."""
    return _dense(h, kernel, None, compute, acc)
