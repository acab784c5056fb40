"""Cells by name and a cell's output size, for the encoder-decoder.

STAND-IN: ``seqmask.cells.named``, ``seqmask.cells.NAMES`` and
``seqmask.cells.output_size`` are the one home of these ideas; until they
are available this module is the only place in the subpackage that knows
them. Delete it and use ``seqmask.cells`` once they are.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from seqmask import cells as _cells
from seqmask.cells import Cell

NAMES = ("lstm", "gru", "simple_rnn")


@functools.cache
def named(name: str, hidden_size: int) -> Cell:
    """The built-in cell ``name`` of ``hidden_size`` (one record per pair, so
    that two models built with the same options compare equal)."""
    factories = {
        "lstm": _cells.lstm,
        "gru": _cells.gru,
        "simple_rnn": _cells.simple_rnn,
    }
    return factories[name](hidden_size)


def output_size(cell: Cell, params, input_size: int) -> int:
    """The size of the outputs ``y`` of ``cell``, found by tracing one step."""
    carry = jax.eval_shape(lambda p: cell.initial_carry(p, ()), params)
    _, y = jax.eval_shape(
        cell.apply, params, carry, jax.ShapeDtypeStruct((input_size,), jnp.float32)
    )
    return int(y.shape[-1])
