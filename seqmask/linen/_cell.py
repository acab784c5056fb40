"""Flax Linen cells as pure seqmask cells: :func:`as_cell`."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.core import unfreeze

from seqmask import _checks, _modules
from seqmask.cells import Cell

__all__ = ["as_cell"]


def as_cell(cell: nn.Module, *, feature_shape: Sequence[int] | None = None) -> Cell:
    """A Flax Linen recurrent cell as a pure :class:`seqmask.cells.Cell`.

    Any ``flax.linen.RNNCellBase`` (``LSTMCell``, ``OptimizedLSTMCell``,
    ``GRUCell``, ``SimpleCell``, ``MGUCell``, ``ConvLSTMCell``, or your own)
    runs under seqmask's semantics through it: :func:`seqmask.rnn` with a mask
    of any pattern, ``reverse`` over the valid steps, padded steps carrying
    the state through. There is no lifted transform: each function calls
    the cell's own ``init`` / ``apply``.

    - ``init(key, input_size)`` is ``cell.init(key, carry, x)["params"]``:
      the cell's own parameter pytree (``{"ii": {"kernel": ...}, "hi":
      {"kernel": ..., "bias": ...}, ...}`` for an ``LSTMCell``), exactly what
      ``flax.linen.RNN`` keeps under ``params/cell``.
    - ``initial_carry(params, batch_shape)`` is
      ``cell.initialize_carry(jax.random.key(0), ...)``, Flax's default key:
      the carry keeps Flax's layout (``(c, h)`` for the LSTM cells, where
      seqmask's own :func:`~seqmask.cells.lstm` has ``LSTMCarry(h, c)``).
    - ``apply(params, carry, x)`` is ``cell.apply({"params": params}, carry,
      x)``, after checking ``params`` against the cell for ``x``'s feature
      size (structure, shapes, dtypes), so another cell's parameters are a
      clear error, not a failure deep inside Flax.

    Args:
      cell: a Linen cell instance (unbound, or a submodule: it is cloned
        without its parent).
      feature_shape: for cells with several feature axes (``ConvLSTMCell``:
        ``(height, width, channels)``), the shape of one step's input. The
        pure cell then takes inputs flattened to ``[*batch, prod(shape)]``
        (what :func:`seqmask.rnn` needs) and returns unflattened outputs.

    Returns:
      A :class:`~seqmask.cells.Cell` named after the Flax cell.

    Examples:
      >>> import flax.linen as nn
      >>> import jax, jax.numpy as jnp
      >>> import seqmask, seqmask.linen
      >>> cell = seqmask.linen.as_cell(nn.LSTMCell(4))
      >>> params = cell.init(jax.random.key(0), 3)
      >>> sorted(params)
      ['hf', 'hg', 'hi', 'ho', 'if', 'ig', 'ii', 'io']
      >>> (c, h), ys = seqmask.rnn(cell, params, jnp.ones((2, 5, 3)),
      ...                          lengths=jnp.array([5, 0]))
      >>> ys.shape, bool(jnp.all(h[1] == 0)), bool(jnp.all(ys[1] == 0))
      ((2, 5, 4), True, True)
    """
    where = "seqmask.linen.as_cell"
    cell = unbound_cell(cell, where)
    axes = cell.num_feature_axes
    if axes > 1 or feature_shape is not None:
        feature_shape = _feature_shape(feature_shape, axes, cell, where)
    name = describe_cell(cell)
    carry_shape = tuple(feature_shape) if feature_shape is not None else (1,)

    def step_input(input_size) -> tuple[int, ...]:
        size = _checks.positive_int(input_size, "input_size", f"{name}.init")
        if feature_shape is None:
            return (size,)
        if size != math.prod(feature_shape):
            _checks.fail(
                f"{name}.init",
                f"input_size must be {math.prod(feature_shape)} (the flattened "
                f"feature_shape {tuple(feature_shape)}); got {size}.",
            )
        return tuple(feature_shape)

    def init(key, input_size):
        shape = step_input(input_size)
        carry = cell.initialize_carry(jax.random.key(0), shape)
        dtype = getattr(cell, "param_dtype", jnp.float32)
        return cell.init(key, carry, jnp.zeros(shape, dtype))["params"]

    @functools.lru_cache(maxsize=16)
    def template(input_size: int):
        return jax.eval_shape(lambda key: init(key, input_size), jax.random.key(0))

    def initial_carry(params, batch_shape=()):
        return cell.initialize_carry(
            jax.random.key(0), (*tuple(batch_shape), *carry_shape)
        )

    def apply(params, carry, x):
        size = int(jnp.shape(x)[-1])
        check_params(params, template(size), name, size, f"{name}.apply")
        if feature_shape is not None:
            x = jnp.reshape(x, (*jnp.shape(x)[:-1], *feature_shape))
        result: Any = cell.apply({"params": params}, carry, x)
        return result

    return Cell(
        init=init,
        initial_carry=initial_carry,
        apply=apply,
        name=name,
        hidden_size=getattr(cell, "features", None),
    )


def check_params(
    params, template, name: str, input_size: int, where: str, argument="params"
) -> None:
    """``params`` fit the Flax cell ``name`` for inputs of ``input_size``."""
    _checks.tree_like(
        params,
        template,
        argument,
        where,
        expected_from=f"the parameters of {name} for inputs of size {input_size}",
        hint=" Were these variables made for another cell or input size?",
    )


def unbound_cell(cell, where: str) -> nn.Module:
    """``cell`` checked to be a Linen recurrent cell, without a parent."""
    _modules.check_flax_cell(
        cell, where, framework="linen", module_type=nn.Module, example="nn.{}(features)"
    )
    return cell.clone(parent=None)


def describe_cell(cell: nn.Module) -> str:
    features = getattr(cell, "features", None)
    size = f"features={features}" if features is not None else ""
    return f"nn.{type(cell).__name__}({size})"


def _feature_shape(feature_shape, axes: int, cell, where: str) -> tuple[int, ...]:
    if feature_shape is None:
        _checks.fail(
            where,
            f"{describe_cell(cell)} has {axes} feature axes: give feature_shape, "
            "the shape of one step's input (e.g. (height, width, channels)).",
        )
    if not isinstance(feature_shape, (tuple, list)) or len(feature_shape) != axes:
        _checks.fail(
            where,
            f"feature_shape must be a tuple of {axes} sizes (the cell's "
            f"num_feature_axes); got {feature_shape!r}.",
        )
    return tuple(
        _checks.positive_int(size, "feature_shape", where) for size in feature_shape
    )


def checked_param(module: nn.Module, name: str, init_fn, where: str):
    """``module.param(name, init_fn)``, an existing value first checked against
    the structure, shapes and dtypes ``init_fn`` makes, so that variables made
    for another cell or size are a clear error."""
    if module.has_variable("params", name):
        _checks.tree_like(
            unfreeze(module.get_variable("params", name)),
            jax.eval_shape(init_fn, jax.random.key(0)),
            f"params[{name!r}]",
            where,
            expected_from="what this module makes",
            hint=" Were these variables made for another cell or input size?",
        )
    return unfreeze(module.param(name, init_fn))
