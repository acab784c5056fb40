"""The built-in cells by name, and the output size of any cell."""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

import seqmask._checks as _checks
from seqmask.cells._base import Cell
from seqmask.cells._dense import gru, lstm, simple_rnn
from seqmask.cells._min import min_gru, min_lstm

_FACTORIES: dict[str, Callable[..., Cell]] = {
    "simple_rnn": simple_rnn,
    "lstm": lstm,
    "gru": gru,
    "min_gru": min_gru,
    "min_lstm": min_lstm,
}

NAMES: tuple[str, ...] = tuple(_FACTORIES)
"""The names of the built-in cells, as :func:`named` takes them."""


def named(name: str, hidden_size: int, **options) -> Cell:
    """The built-in cell called ``name``: ``named("lstm", 8)`` is ``lstm(8)``.

    One configuration gives one :class:`Cell` object (when the options are
    hashable), so models built alike share their cell, and with it the
    compilations that ``jax.jit`` keys on it.

    Args:
      name: one of :data:`NAMES` (``"simple_rnn"``, ``"lstm"``, ``"gru"``,
        ``"min_gru"``, ``"min_lstm"``).
      hidden_size: the size of the hidden state.
      **options: keyword arguments of the cell's factory (e.g. ``dtype``,
        ``forget_bias`` for ``lstm``, ``log_space`` for ``min_gru``).

    Returns:
      The :class:`Cell`.

    Raises:
      ValueError: for an unknown name or a non-positive ``hidden_size``.
      TypeError: for an option the cell does not take.

    Examples:
      >>> import seqmask
      >>> cell = seqmask.cells.named("gru", 8)
      >>> cell.name, cell.hidden_size
      ('gru', 8)
      >>> cell is seqmask.cells.named("gru", 8)
      True
    """
    where = "named"
    _checks.one_of(name, NAMES, "name", where)
    hidden_size = _checks.positive_int(hidden_size, "hidden_size", where)
    # The types are in the key: 1 == 1.0 == True, but a factory may take one
    # and refuse another, and a cached cell must not skip that check.
    key = tuple(
        sorted((option, type(value), value) for option, value in options.items())
    )
    try:
        hash(key)
    except TypeError:  # e.g. a list-valued option: build, do not cache
        return _build(name, hidden_size, options)
    return _cached(name, hidden_size, key)


@functools.lru_cache(maxsize=256)
def _cached(name: str, hidden_size: int, options: tuple) -> Cell:
    return _build(name, hidden_size, {option: value for option, _, value in options})


def _build(name: str, hidden_size: int, options: dict) -> Cell:
    try:
        return _FACTORIES[name](hidden_size, **options)
    except TypeError as error:
        if "unexpected keyword" not in str(error):
            _checks.fail("named", str(error), TypeError)
        _checks.fail(
            "named",
            f"{name} takes no option {sorted(options)!r} ({error}).",
            TypeError,
        )
    except ValueError as error:  # an option's value, as the factory says
        _checks.fail("named", str(error))


def output_size(cell: Cell, params, input_size: int) -> int:
    """The feature size of ``cell``'s outputs, found by tracing one step.

    Nothing is computed: the step is traced abstractly (``jax.eval_shape``).

    Args:
      cell: any :class:`Cell`.
      params: its parameters (arrays or ``jax.ShapeDtypeStruct``).
      input_size: the feature size of its inputs.

    Returns:
      The size of the last axis of ``y`` in ``cell.apply(params, carry, x)``.

    Examples:
      >>> import jax, seqmask
      >>> cell = seqmask.cells.lstm(5)
      >>> seqmask.cells.output_size(cell, cell.init(jax.random.key(0), 3), 3)
      5
    """
    where = "output_size"
    _checks.instance(
        cell, Cell, "cell", where, expected="a seqmask.cells.Cell (e.g. lstm(128))"
    )
    input_size = _checks.positive_int(input_size, "input_size", where)
    if cell.check_params is not None:
        cell.check_params(params, where, input_size)

    def one_step(params):
        carry = cell.initial_carry(params, ())
        x = jnp.zeros((input_size,), jnp.float32)
        return cell.apply(params, carry, x)[1]

    y = jax.eval_shape(one_step, params)
    return int(y.shape[-1])
