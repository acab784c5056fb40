"""Framework-free plumbing of the Flax modules in ``seqmask.nnx`` and
``seqmask.linen``.

Both packages speak Flax's RNN vocabulary (``seq_lengths``, ``return_carry``,
``time_major``, ``reverse``, ``keep_order``, ``initial_carry``) over the pure
core. What that vocabulary means lives here, once: :func:`run_rnn` runs a
pure :class:`~seqmask.cells.Cell` the way ``flax.linen.RNN`` runs a cell,
with seqmask's masking; the other helpers name carry leaves, check the
arguments that only the modules have, and hold what both packages' modules
share. It imports no flax, so ``seqmask.linen`` does not pull in
``flax.nnx``; each package keeps only what is specific to its framework.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from seqmask import _checks
from seqmask import cells as _cells
from seqmask import layers as _layers
from seqmask import masks as _masks
from seqmask.cells import Cell

Carry = Any
Params = Any
Initializer = Callable[..., jax.Array]

ZEROS: Initializer = jax.nn.initializers.zeros


class CallOptions(NamedTuple):
    """The per-call options of Flax's ``RNN.__call__``, resolved against the
    module's defaults (``None`` in a call means "the module's value")."""

    time_major: bool
    return_carry: bool
    reverse: bool
    keep_order: bool


def resolve(
    module, where: str, time_major, return_carry, reverse, keep_order
) -> CallOptions:
    """The options of one call: each one given (not None), else the module's."""
    given = CallOptions(time_major, return_carry, reverse, keep_order)
    return CallOptions(
        *(
            _checks.flag(getattr(module, name) if value is None else value, name, where)
            for name, value in zip(CallOptions._fields, given, strict=True)
        )
    )


class RNNCall(NamedTuple):
    """The arguments of one call of Flax's ``RNN.__call__``, options resolved."""

    options: CallOptions
    initial_carry: Carry | None
    seq_lengths: Any
    mask: Any
    resets: Any


def concatenate(forward, backward):
    """Flax's default ``merge_fn``: the two directions side by side."""
    return jnp.concatenate([forward, backward], axis=-1)


def run_rnn(
    cell: Cell,
    params: Params,
    inputs,
    call: RNNCall,
    where: str,
    *,
    unroll: int = 1,
    feature_axes: int = 1,
    skip_padding: bool | int = False,
):
    """Run ``cell`` over ``inputs`` with the meaning of Flax's ``RNN.__call__``.

    Flax's semantics wherever Flax is right; seqmask's where it is not: the
    carry of a row is its carry after its last valid step for any mask (its
    initial carry for a row without one), and outputs at padded steps are
    zero. With ``reverse`` the valid steps are visited last to first; the
    outputs come back in processing order (Flax's "flipped within the
    length") unless ``keep_order``, which leaves them at their positions.

    Args:
      cell, params: the pure cell and its parameters.
      inputs: ``[*batch, time, *features]`` (``[time, *batch, *features]``
        when time major) with ``feature_axes`` feature axes.
      call: the call's arguments: ``initial_carry`` and ``resets`` as
        :func:`seqmask.rnn`, the valid steps as ``seq_lengths`` or ``mask``
        (alternatives), and the resolved options.
      where: the public name for error messages.
      unroll, skip_padding: as :func:`seqmask.rnn`.
      feature_axes: the cell's number of feature axes (Flax's
        ``num_feature_axes``); several are flattened into one for the core
        and unflattened by the cell.

    Returns:
      ``ys``, or ``(carry, ys)`` with ``return_carry``.
    """
    options, initial_carry, seq_lengths, mask, resets = call
    time_major, return_carry, reverse, keep_order = options
    inputs = _checks.floating_array(inputs, "inputs", where)
    _checks.min_rank(inputs, feature_axes + 1, "inputs", where, "time and feature axes")
    if seq_lengths is not None and mask is not None:
        _checks.fail(
            where,
            "give seq_lengths or mask, not both (seq_lengths is the right-padded "
            "special case of a mask).",
        )
    xs = inputs
    if feature_axes > 1:
        xs = inputs.reshape(*inputs.shape[:-feature_axes], -1)
    carry, ys = _layers.rnn(
        cell,
        params,
        xs,
        mask=mask,
        lengths=seq_lengths,
        initial_carry=initial_carry,
        resets=resets,
        reverse=reverse,
        time_major=time_major,
        unroll=unroll,
        skip_padding=skip_padding,
    )
    if reverse and not keep_order:
        ys = jax.tree.map(
            lambda y: _processing_order(y, mask, seq_lengths, time_major, feature_axes),
            ys,
        )
    return (carry, ys) if return_carry else ys


def _processing_order(ys, mask, seq_lengths, time_major: bool, feature_axes: int):
    """Outputs of a reverse run in the order the steps were visited."""
    if mask is None and seq_lengths is None:
        axis = 0 if time_major else jnp.ndim(ys) - feature_axes - 1
        return jnp.flip(ys, axis=axis)
    return _masks.reverse_valid_steps(
        ys, mask, lengths=seq_lengths, time_major=time_major
    )


def run_stacked(module, params, inputs, dropout_key, **call):
    """:func:`seqmask.stacked` with the cells of a ``Stacked`` module and its
    layer options (``bidirectional``, ``merge``, ``dropout_rate``,
    ``residual``); ``call`` holds the call's own arguments."""
    return _layers.stacked(
        module.pure_cells(),
        params,
        inputs,
        bidirectional=module.bidirectional,
        merge=module.merge,
        dropout_rate=module.dropout_rate,
        dropout_key=dropout_key,
        residual=module.residual,
        **call,
    )


def step_shape(
    inputs, feature_axes: int, time_major: bool, where: str
) -> tuple[int, ...]:
    """The shape of one step of ``inputs``: the time axis removed (what
    Flax's ``initialize_carry`` takes as ``input_shape``)."""
    inputs = _checks.floating_array(inputs, "inputs", where)
    _checks.min_rank(inputs, feature_axes + 1, "inputs", where, "time and feature axes")
    shape = tuple(inputs.shape)
    time_axis = 0 if time_major else len(shape) - feature_axes - 1
    return shape[:time_axis] + shape[time_axis + 1 :]


def run_bidirectional(
    module,
    forward: Callable,
    backward: Callable,
    inputs,
    *,
    where: str,
    initial_carry,
    time_major: bool | None,
    return_carry: bool | None,
    **call,
):
    """Flax's ``Bidirectional.__call__`` over two RNN calls.

    ``forward`` and ``backward`` take ``(inputs, **options)`` like an RNN
    module's ``__call__``; ``module`` gives ``merge_fn`` and the defaults of
    ``time_major`` and ``return_carry``. The backward direction runs with
    ``reverse=True, keep_order=True``: its output for step ``t`` sits at
    position ``t``.
    """
    merge_fn = _checks.function(
        module.merge_fn, "merge_fn", where, "(forward_ys, backward_ys) -> ys"
    )
    time_major = module.time_major if time_major is None else time_major
    return_carry = module.return_carry if return_carry is None else return_carry
    return_carry = _checks.flag(return_carry, "return_carry", where)
    if initial_carry is None:
        forward_carry = backward_carry = None
    elif isinstance(initial_carry, (tuple, list)) and len(initial_carry) == 2:
        forward_carry, backward_carry = initial_carry
    else:
        _checks.fail(
            where,
            "initial_carry must be a pair (forward_carry, backward_carry) or None; "
            f"got {_checks.describe(initial_carry)}.",
        )
    time_major = _checks.flag(time_major, "time_major", where)
    directions = (
        (forward, forward_carry, {"reverse": False}),
        (backward, backward_carry, {"reverse": True, "keep_order": True}),
    )
    (carry_f, ys_f), (carry_b, ys_b) = (
        rnn(
            inputs,
            initial_carry=carry,
            return_carry=True,
            time_major=time_major,
            **direction,
            **call,
        )
        for rnn, carry, direction in directions
    )
    ys = jax.tree.map(merge_fn, ys_f, ys_b)
    return ((carry_f, carry_b), ys) if return_carry else ys


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
        expected="a seqmask.cells.Cell (e.g. seqmask.cells.lstm(128))",
    )


@functools.lru_cache(maxsize=256)
def learned_carry_cell(cell: Cell, carry_init: Initializer) -> Cell:
    """One learned-initial-state wrapper per (cell, initialiser).

    Modules built alike then share their pure cell, hence their NNX graph
    definition, so ``nnx.jit`` reuses compilations across instances.
    """
    return _cells.learnable_initial_state(cell, carry_init=carry_init)


def carry_template(cell: Cell, input_size: int = 1):
    """The cell's unbatched carry as shapes and dtypes (no arrays made).

    The built-in cells' carries do not depend on the input size; a cell
    whose parameters are fixed to one input size (a Flax NNX cell through
    ``seqmask.nnx.as_cell``) is traced with ``input_size``.
    """
    return jax.eval_shape(
        lambda key: cell.initial_carry(cell.init(key, input_size), ()),
        jax.random.key(0),
    )


def _key_name(key) -> str:
    for attribute in ("name", "key", "idx"):
        if hasattr(key, attribute):
            return str(getattr(key, attribute))
    return str(key)


def leaf_names(tree, single_name: str, where: str) -> list[str]:
    """One readable name a leaf: its path joined by ``_`` (``h``, ``c``, ...).

    A carry that is one array is named ``single_name``; the positions of a
    plain tuple carry (Flax's ``(c, h)``) are named ``carry_0``, ``carry_1``.
    """
    paths = [path for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]
    if paths == [()]:
        return [single_name]
    names = ["_".join(_key_name(key) for key in path) for path in paths]
    names = [f"carry_{name}" if name[:1].isdigit() else name for name in names]
    if len(set(names)) != len(names):
        _checks.fail(
            where, f"the pytree's leaf paths do not give distinct names: {names}."
        )
    return names


def broadcast_learned(learned, batch: Sequence[int]):
    """A learned unbatched carry broadcast over ``batch``."""
    return jax.tree.map(
        lambda leaf: jnp.broadcast_to(leaf, (*batch, *leaf.shape)), learned
    )


def layer_cells(
    cell,
    num_layers,
    where: str,
    *,
    learnable_initial_state: bool = False,
    carry_init: Initializer = ZEROS,
) -> list[Cell]:
    """One pure cell a layer of a stack, each wrapped to learn its initial
    carry when asked: ``cell`` for ``num_layers`` layers, or one cell a
    layer."""
    if isinstance(cell, Cell):
        if num_layers is None:
            _checks.fail(where, "give num_layers when cell is a single cell.")
        cells = [cell] * _checks.positive_int(num_layers, "num_layers", where)
    elif isinstance(cell, (list, tuple)) and cell:
        cells = [check_cell_record(c, where) for c in cell]
        if num_layers is not None and num_layers != len(cells):
            _checks.fail(
                where, f"num_layers={num_layers} but {len(cells)} cells were given."
            )
    else:
        _checks.fail(
            where,
            "cell must be a seqmask.cells.Cell or a non-empty sequence of them "
            f"(one a layer); got {_checks.describe(cell)}.",
            TypeError,
        )
    if _checks.flag(learnable_initial_state, "learnable_initial_state", where):
        cells = [learned_carry_cell(c, carry_init) for c in cells]
    return cells
