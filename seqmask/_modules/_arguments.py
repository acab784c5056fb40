"""The arguments only the modules have: Flax's lifted-scan options, Flax
cells and RNN modules where they are expected, seqmask cells, and the
initialiser of a learned carry."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import seqmask._checks as _checks
from seqmask.cells import Cell


def check_lifted_options(where: str, **given: tuple[Any, Any]) -> None:
    """Flax's options for its lifted scan, accepted at their defaults only.

    seqmask runs the cell as a pure function inside ``jax.lax.scan`` with its
    parameters shared by every step, which is what the defaults mean; any
    other value asks for a lifted transform seqmask does not emulate.
    ``given`` maps each option's name to ``(value, default)``.
    """
    for name, (value, default) in given.items():
        if value is None or value == default or _empty(value) and _empty(default):
            continue
        shown, default = (
            dict(v) if isinstance(v, Mapping) else v for v in (value, default)
        )
        _checks.fail(
            where,
            f"{name}={shown!r} is not supported: seqmask runs the cell as a pure "
            f"function with its parameters shared over time (Flax's default, "
            f"{name}={default!r}). Leave {name} out.",
        )


def _empty(value) -> bool:
    return isinstance(value, Mapping) and not value


def check_flax_cell(
    cell, where: str, *, framework: str, module_type: type, example: str
) -> None:
    """``cell`` is an instance of a recurrent cell of ``flax.<framework>``
    (``example`` shows how one is built, with ``{}`` for the class name)."""
    if isinstance(cell, type):
        _checks.fail(
            where,
            f"cell must be a cell instance; got the class {cell.__name__}. "
            f"Construct it, e.g. {example.format(cell.__name__)}.",
            TypeError,
        )
    if not isinstance(cell, module_type) or not hasattr(cell, "initialize_carry"):
        other = "nnx" if framework == "linen" else "linen"
        hint = ""
        if hasattr(cell, "initialize_carry"):
            hint = f" For a flax.{other} cell use seqmask.{other}."
        elif isinstance(cell, (str, int)):
            hint = (
                " The cell comes first and carries its size: for seqmask's own "
                "cells pass e.g. seqmask.cells.lstm(hidden_size)."
            )
        _checks.fail(
            where,
            f"cell must be a Flax {framework} recurrent cell (a flax.{framework}."
            f"RNNCellBase such as {example.format('LSTMCell')}) or, for the RNN "
            f"modules, a seqmask.cells.Cell; got {_checks.describe(cell)}.{hint}",
            TypeError,
        )


def check_rnn(value, rnn_type: type, name: str, where: str, framework: str) -> None:
    """A direction of a ``Bidirectional`` is seqmask's RNN module (Flax's would
    run Flax's scan)."""
    if not isinstance(value, rnn_type):
        _checks.fail(
            where,
            f"{name} must be a seqmask.{framework}.RNN; got "
            f"{_checks.describe(value)}. Wrap the cell in seqmask.{framework}.RNN "
            f"(it takes flax.{framework}.RNN's arguments).",
            TypeError,
        )


def check_cell_record(cell, where: str) -> Cell:
    """``cell`` if it is a :class:`~seqmask.cells.Cell`, else ``TypeError``."""
    return _checks.instance(
        cell,
        Cell,
        "cell",
        where,
        expected="a seqmask.cells.Cell (e.g. seqmask.cells.lstm(128))"
        + as_cell_hint(where),
    )


def as_cell_hint(where: str) -> str:
    """How a Flax cell becomes a seqmask cell for the wrapper ``where``
    (``seqmask.linen.*`` or ``seqmask.nnx.*``); empty elsewhere."""
    for package in ("linen", "nnx"):
        if where.startswith(f"seqmask.{package}."):
            return f" (a Flax cell becomes one through seqmask.{package}.as_cell)"
    return ""


def has_initialize_carry(cell, base: type) -> bool:
    """Whether the Flax cell's class defines its own ``initialize_carry``
    (``base``: Flax's ``RNNCellBase``, whose method only raises)."""
    own: Any = getattr(type(cell), "initialize_carry", None)
    return own is not base.initialize_carry


def check_learnable_carry(cell, base: type, where: str) -> None:
    """A learned initial state needs the cell's own carry structure."""
    if not has_initialize_carry(cell, base):
        _checks.fail(
            where,
            "learnable_initial_state=True learns a carry of the cell's own "
            "structure, but the cell has no initialize_carry to say what it "
            "is: define initialize_carry, or give the carry at the call "
            "(initial_carry=).",
            NotImplementedError,
        )


def check_carry_init(carry_init, where: str) -> Callable[..., Any]:
    """The initialiser of a learned carry: ``(key, shape, dtype) -> array``."""
    return _checks.initializer(carry_init, "carry_init", where)
