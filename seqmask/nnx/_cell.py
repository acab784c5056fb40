"""Flax NNX cells as pure seqmask cells: :func:`as_cell`."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

import seqmask._checks as _checks
import seqmask._modules as _modules
from seqmask.cells import Cell

__all__ = ["as_cell"]


def as_cell(cell: nnx.Module) -> Cell:
    """A Flax NNX recurrent cell as a pure :class:`seqmask.cells.Cell`.

    Any ``flax.nnx.RNNCellBase`` (``LSTMCell``, ``OptimizedLSTMCell``,
    ``GRUCell``, ``SimpleCell``, or your own) runs under seqmask's semantics
    through it: :func:`seqmask.rnn` with a mask of any pattern, ``reverse``
    over the valid steps, padded steps carrying the state through. There is
    no lifted transform: the cell is split once into its graph definition and
    its ``nnx.Param`` state, and each step merges them and calls the cell.

    - The parameters are the cell's ``nnx.Param`` state as a plain nested
      dict (``nnx.to_pure_dict(nnx.state(cell, nnx.Param))``: ``{"ii":
      {"kernel": ...}, "hi": {"kernel": ..., "bias": ...}, ...}`` for an
      ``LSTMCell``). An NNX cell makes its parameters when it is constructed,
      so ``init(key, input_size)`` returns (a copy of) them whatever the key;
      ``input_size`` must be the cell's ``in_features``.
    - ``initial_carry(params, batch_shape)`` is the cell's
      ``initialize_carry`` with a fixed key (zeros for Flax's default
      ``carry_init``); the carry keeps Flax's layout (``(c, h)`` for the LSTM
      cells, where seqmask's own :func:`~seqmask.cells.lstm` has
      ``LSTMCarry(h, c)``). A cell without ``initialize_carry`` has no
      carry of its own: this raises ``NotImplementedError``, and
      :func:`seqmask.rnn` runs it from the ``initial_carry`` it is given
      (as ``flax.nnx.RNN`` needs one too).
    - ``apply(params, carry, x)`` calls the cell rebuilt with ``params``,
      after checking its arguments as seqmask's own cells do: ``x``
      floating (integer token ids are refused: embed them first) with
      ``in_features`` features, ``params`` the cell's and ``carry`` the
      cell's for ``x``'s batch shape (structure, shapes, dtypes; the
      parameters also by ``check_params``, which :func:`seqmask.rnn` calls
      once a call).

    Args:
      cell: an NNX cell instance with one feature axis (steps ``[*batch,
        features]``; a cell whose ``num_feature_axes`` is not 1 raises a
        ``ValueError``).

    Returns:
      A :class:`~seqmask.cells.Cell` named after the Flax cell.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from flax import nnx
      >>> import seqmask, seqmask.nnx
      >>> cell = seqmask.nnx.as_cell(nnx.GRUCell(3, 4, rngs=nnx.Rngs(0)))
      >>> params = cell.init(jax.random.key(0), 3)
      >>> sorted(params)
      ['dense_h', 'dense_i']
      >>> h, ys = seqmask.rnn(cell, params, jnp.ones((2, 5, 3)),
      ...                     lengths=jnp.array([5, 0]))
      >>> ys.shape, bool(jnp.all(h[1] == 0)), bool(jnp.all(ys[1] == 0))
      ((2, 5, 4), True, True)
    """
    return adapter(cell, "seqmask.nnx.as_cell")


def adapter(cell: nnx.Module, where: str) -> Cell:
    """:func:`as_cell`, its errors naming ``where``."""
    check_nnx_cell(cell, where)
    _check_no_random_state(cell, where)
    graphdef, state, rest = nnx.split(cell, nnx.Param, ...)
    own = nnx.to_pure_dict(state)
    template = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), own)
    in_features = in_features_of(cell)
    name = describe_cell(cell)
    own_carry = _modules.has_initialize_carry(cell, nnx.RNNCellBase)

    def merged(params) -> Any:  # the cell's own class
        return nnx.merge(graphdef, params, rest)

    def init(key, input_size):
        del key  # the parameters were made with the cell
        size = _checks.positive_int(input_size, "input_size", f"{name}.init")
        if in_features is not None and size != in_features:
            _checks.fail(
                f"{name}.init",
                f"input_size must be the cell's in_features={in_features}; got "
                f"{size}. An NNX cell's parameters are made for one input size: "
                "construct the cell with the right in_features.",
            )
        return jax.tree.map(jnp.array, own)

    def initial_carry(params, batch=()):
        if not own_carry:
            _checks.fail(
                name,
                "the cell has no initialize_carry: give the RNN (or seqmask.rnn) an "
                "initial_carry (as flax.nnx.RNN needs one too).",
                NotImplementedError,
            )
        size = 1 if in_features is None else in_features
        return merged(params).initialize_carry((*batch, size), rngs=nnx.Rngs(carry=0))

    def check_params(params, where, input_size=None, argument="params"):
        _modules.check_flax_params(params, template, name, where, argument)
        if input_size is not None and in_features is not None:
            if int(input_size) != in_features:
                _checks.fail(
                    where,
                    f"the inputs have {int(input_size)} features, but {name} was "
                    f"built for in_features={in_features}.",
                )

    def apply(params, carry, x):
        return merged(params)(carry, x)

    hidden = getattr(cell, "hidden_features", None)
    functions = init, initial_carry, apply, check_params
    return _modules.adapted_cell(name, hidden, *functions, own_carry=own_carry)


def check_nnx_cell(cell, where: str) -> None:
    """``cell`` is an NNX recurrent cell instance with one feature axis."""
    _modules.check_flax_cell(
        cell,
        where,
        framework="nnx",
        module_type=nnx.Module,
        example="nnx.{}(in_features, hidden_features, rngs=nnx.Rngs(0))",
    )
    try:
        axes = cell.num_feature_axes
    except (AttributeError, NotImplementedError):
        axes = 1  # as Flax's own cells: one feature axis
    if axes != 1:
        _checks.fail(
            where,
            f"{describe_cell(cell)} has num_feature_axes={axes!r}; seqmask.nnx "
            "runs cells with one feature axis ([*batch, features] a step). Use "
            "flax.nnx.RNN for this cell, or seqmask.linen.RNN / "
            "seqmask.linen.as_cell(cell, feature_shape=...) with a Linen cell.",
        )


def _check_no_random_state(cell, where: str) -> None:
    """Refuse a cell whose step could draw random numbers from its own state
    (an ``nnx.Dropout`` inside): as a pure function it would see the same
    random state at every step. Flax's cells keep only the carry's stream
    (``rngs``, used by ``initialize_carry``)."""
    paths = [
        ".".join(str(key) for key in path)
        for path, _ in nnx.to_flat_state(nnx.state(cell, nnx.RngState))
        if path[:1] != ("rngs",)
    ]
    if paths:
        _checks.fail(
            where,
            f"the cell holds random state ({', '.join(sorted(set(paths)))}), which "
            "its steps would draw from: run as a pure function, every step would "
            "see the same numbers. Keep random draws (dropout) outside the cell.",
        )


def in_features_of(cell) -> int | None:
    size = getattr(cell, "in_features", None)
    return int(size) if isinstance(size, int) else None


def describe_cell(cell) -> str:
    sizes = [
        f"{attribute}={getattr(cell, attribute)}"
        for attribute in ("in_features", "hidden_features")
        if hasattr(cell, attribute)
    ]
    return f"nnx.{type(cell).__name__}({', '.join(sizes)})"
