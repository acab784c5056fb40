"""Flax Linen cells as pure seqmask cells: :func:`as_cell`."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.core import unfreeze

import seqmask._checks as _checks
import seqmask._modules as _modules
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
      A cell without ``initialize_carry`` has no carry of its own: this
      raises ``NotImplementedError``, and :func:`seqmask.rnn` runs it from
      the ``initial_carry`` it is given (as ``flax.linen.RNN`` needs one too).
    - ``apply(params, carry, x)`` is ``cell.apply({"params": params}, carry,
      x)``, after checking its arguments as seqmask's own cells do: ``x``
      floating (integer token ids are refused: embed them first),
      ``params`` the cell's for ``x``'s feature size and ``carry`` the
      cell's for ``x``'s batch shape (structure, shapes, dtypes), so another
      cell's parameters or seqmask's ``LSTMCarry`` order are a clear error,
      not a failure deep inside Flax; ``check_params`` checks the
      parameters once a call of :func:`seqmask.rnn`.

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
    return adapter(unbound_cell(cell, where), feature_shape, where)


def adapter(
    cell: nn.Module,
    feature_shape: Sequence[int] | None,
    where: str,
    streams: Mapping[str, tuple[jax.Array, bool]] | None = None,
) -> Cell:
    """:func:`as_cell` of an unbound ``cell``; with ``streams`` (``name ->
    (key, split)``) the step gets ``rngs`` for ``self.make_rng(name)``.

    With streams the carry is ``(cell_carry, count)``: ``count`` (``int32
    [*batch]``) numbers the steps, so that a split stream gets a new key at
    every step, ``fold_in(key, step)``. The step number is one more than the
    largest count in the batch, which grows by one at every step with a valid
    row whatever the mask (padded rows keep their count).
    """
    axes = cell.num_feature_axes
    if axes > 1 or feature_shape is not None:
        feature_shape = _feature_shape(feature_shape, axes, cell, where)
    name = describe_cell(cell)
    carry_shape = tuple(feature_shape) if feature_shape is not None else (1,)
    named = dict(streams or {})
    own_carry = _modules.has_initialize_carry(cell, nn.RNNCellBase)

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

    def init_from(key, carry, x, stream_keys):
        rngs = {"params": key, **stream_keys}
        return cell.init(rngs, carry, x).get("params", {})

    def init(key, input_size):
        shape = step_input(input_size)
        carry = flax_carry(cell, jax.random.key(0), shape)
        x = jnp.zeros(shape, getattr(cell, "param_dtype", jnp.float32))
        return init_from(key, carry, x, {n: k for n, (k, _) in named.items()})

    def template(carry, x):
        """What the cell's parameters look like for a step on ``x``."""
        return jax.eval_shape(
            lambda key, carry, x: init_from(key, carry, x, {n: key for n in named}),
            jax.random.key(0),
            carry,
            x,
        )

    def initial_carry(params, batch=()):
        carry = flax_carry(cell, jax.random.key(0), (*batch, *carry_shape))
        return carry if streams is None else (carry, jnp.zeros(batch, jnp.int32))

    def check_step_params(params, where, input_size=None, argument="params"):
        """``Cell.check_params``: against what ``init`` makes for
        ``input_size`` (nothing to check without it, or for a cell that has
        no ``initialize_carry``)."""
        if input_size is None or not own_carry:
            return
        size = int(input_size)
        template = jax.eval_shape(lambda key: init(key, size), jax.random.key(0))
        _modules.check_flax_params(params, template, name, where, argument, size)

    def apply(params, carry, x):
        size = int(jnp.shape(x)[-1])
        if feature_shape is not None:
            x = jnp.reshape(x, (*jnp.shape(x)[:-1], *feature_shape))
        if not own_carry:  # the given carry stands in for the cell's own
            cell_carry = carry if streams is None else carry[0]
            _modules.check_flax_params(
                params, template(cell_carry, x), name, f"{name}.apply", "params", size
            )
        if streams is None:
            result: Any = cell.apply({"params": params}, carry, x)
            return result
        carry, count = carry
        step = jnp.max(count) + 1
        rngs = {
            n: jax.random.fold_in(k, step) if split else k
            for n, (k, split) in named.items()
        }
        stepped: Any = cell.apply({"params": params}, carry, x, rngs=rngs)
        carry, y = stepped
        return (carry, jnp.broadcast_to(step, jnp.shape(count))), y

    features = getattr(cell, "features", None)
    functions = init, initial_carry, apply, check_step_params
    return _modules.adapted_cell(name, features, *functions, own_carry=own_carry)


def flax_carry(cell: nn.Module, key, input_shape):
    """``cell.initialize_carry(key, input_shape)``, or a clear error for a cell
    that has none (it needs ``initial_carry=``, as with ``flax.linen.RNN``)."""
    try:
        return cell.initialize_carry(key, tuple(input_shape))
    except NotImplementedError:
        _checks.fail(
            describe_cell(cell),
            "the cell has no initialize_carry: give the RNN (or seqmask.rnn) an "
            "initial_carry (as flax.linen.RNN needs one too).",
            NotImplementedError,
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
    for another cell or size (or without this parameter) are a clear error."""
    if not module.has_variable("params", name):
        if not module.is_mutable_collection("params"):
            scope = () if module.scope is None else module.scope.path
            _checks.fail(
                where,
                f"params[{name!r}] is missing from the variables (at "
                f"{'/'.join(('params', *scope, name))}). Were these variables "
                "made for another model, or without a learned initial state?",
            )
    else:
        _checks.tree_like(
            unfreeze(module.get_variable("params", name)),
            jax.eval_shape(init_fn, jax.random.key(0)),
            f"params[{name!r}]",
            where,
            expected_from="what this module makes",
            hint=" Were these variables made for another cell or input size?",
        )
    return unfreeze(module.param(name, init_fn))
