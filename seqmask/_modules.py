"""Framework-free plumbing of the Flax modules in ``seqmask.nnx`` and
``seqmask.linen``.

Both packages speak Flax's RNN vocabulary (``seq_lengths``, ``return_carry``,
``time_major``, ``reverse``, ``keep_order``, ``initial_carry``) over the pure
core. What that vocabulary means lives here, once: :func:`sequence` checks
a call's inputs and valid steps under the names the caller used
(``seq_lengths``, not the core's ``lengths``) and the module's public name;
:func:`run_rnn`, :func:`run_bidirectional` and :func:`run_stacked` run the
core the way Flax's modules run a cell, with seqmask's masking;
:func:`adapted_cell` makes a Flax cell's functions a
:class:`~seqmask.cells.Cell` that checks its arguments as seqmask's own
cells do. The other helpers check the arguments that only the modules have,
and hold what both packages' modules share. It imports no flax, so
``seqmask.linen`` does not pull in ``flax.nnx``; each package keeps only
what is specific to its framework.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from seqmask import _checks, _layer
from seqmask import cells as _cells
from seqmask import layers as _layers
from seqmask import masks as _masks
from seqmask.cells import Cell

Carry = Any
Params = Any
Initializer = Callable[..., jax.Array]

ZEROS: Initializer = jax.nn.initializers.zeros

# What a recurrent layer or cell says to floating-point inputs of another kind.
EMBED_HINT = " Embed integer tokens first (e.g. a lookup table)."


class RNNCall(NamedTuple):
    """The arguments of one call of a recurrent module that are not options
    (Flax's ``initial_carry`` and ``seq_lengths``, seqmask's ``mask``,
    ``resets`` and ``skip_padding``)."""

    initial_carry: Carry | None = None
    seq_lengths: Any = None
    mask: Any = None
    resets: Any = None
    skip_padding: bool | int = False


class CallOptions(NamedTuple):
    """The options of one call, resolved against the module's attributes."""

    time_major: bool
    return_carry: bool
    reverse: bool
    keep_order: bool


def resolve(
    module,
    where: str,
    time_major: bool | None,
    return_carry: bool | None,
    reverse: bool | None = False,
    keep_order: bool | None = False,
) -> CallOptions:
    """The options of one call: each one given (not None), else the module's
    (``Bidirectional`` has no ``reverse`` or ``keep_order``: False)."""
    given = (time_major, return_carry, reverse, keep_order)
    return CallOptions(
        *(
            _checks.flag(getattr(module, name) if value is None else value, name, where)
            for name, value in zip(CallOptions._fields, given, strict=True)
        )
    )


class Steps(NamedTuple):
    """A module call's inputs and valid steps, checked."""

    inputs: jax.Array
    mask: jax.Array | None  # boolean, [*batch, time] or [time, *batch]
    resets: jax.Array | None  # likewise
    step: tuple[int, ...]  # the shape of one step: [*batch, *features]
    time_major: bool


def sequence(
    inputs, call: RNNCall, time_major: bool, where: str, feature_axes: int = 1
) -> Steps:
    """``inputs`` and the valid steps of a module call, checked under the
    names the caller used, ``seq_lengths`` turned into a mask.

    The batch shape comes from ``inputs`` and the cell's number of feature
    axes, so ``seq_lengths``, ``mask`` and ``resets`` are checked against
    the shapes the caller meant. Lengths outside ``[0, time]`` raise
    ``ValueError`` when concrete and register a checkify check when traced.
    """
    inputs = _checks.floating_array(inputs, "inputs", where, hint=EMBED_HINT)
    layout = "[time, *batch, *features]" if time_major else "[*batch, time, *features]"
    _checks.min_rank(inputs, feature_axes + 1, "inputs", where, layout)
    shape = tuple(inputs.shape)
    time_axis = 0 if time_major else len(shape) - feature_axes - 1
    batch = shape[:time_axis] + shape[time_axis + 1 : len(shape) - feature_axes]
    steps = (shape[0], *batch) if time_major else (*batch, shape[time_axis])
    if call.seq_lengths is not None and call.mask is not None:
        _checks.fail(
            where,
            "give seq_lengths or mask, not both (seq_lengths is the right-padded "
            "special case of a mask).",
        )
    steps_layout = "[time, *batch]" if time_major else "[*batch, time]"
    checked = {}
    for name, value, check, want, axes in (
        ("seq_lengths", call.seq_lengths, _checks.integer_array, batch, "[*batch]"),
        ("mask", call.mask, _checks.bool_array, steps, steps_layout),
        ("resets", call.resets, _checks.bool_array, steps, steps_layout),
    ):
        if value is not None:
            value = check(value, name, where)
            if tuple(value.shape) != want:
                _checks.fail(
                    where,
                    f"{name} must have shape {axes} = {want} for inputs of shape "
                    f"{shape} ({layout}); got {tuple(value.shape)}.",
                )
        checked[name] = value
    lengths, mask = checked["seq_lengths"], checked["mask"]
    if lengths is not None:
        _checks.lengths(lengths, shape[time_axis], "seq_lengths", where)
        mask = _masks.lengths_to_mask(
            lengths, shape[time_axis], time_major=time_major, clip=True
        )
    step = shape[:time_axis] + shape[time_axis + 1 :]
    return Steps(inputs, mask, checked["resets"], step, time_major)


def concatenate(forward, backward):
    """Flax's default ``merge_fn``: the two directions side by side."""
    return jnp.concatenate([forward, backward], axis=-1)


def run_rnn(
    cell: Cell,
    params: Params,
    seq: Steps,
    call: RNNCall,
    options: CallOptions,
    where: str,
    *,
    unroll: int = 1,
    feature_axes: int = 1,
):
    """Run ``cell`` over ``seq`` with the meaning of Flax's ``RNN.__call__``.

    Flax's semantics wherever Flax is right; seqmask's where it is not: the
    carry of a row is its carry after its last valid step for any mask (its
    initial carry for a row without one), and outputs at padded steps are
    zero. With ``reverse`` the valid steps are visited last to first; the
    outputs come back in processing order (Flax's "flipped within the
    length") unless ``keep_order``, which leaves them at their positions.
    Every error names ``where``.

    Args:
      cell, params: the pure cell and its parameters.
      seq: the call's inputs and valid steps (see :func:`sequence`).
      call: the call's ``initial_carry`` and ``skip_padding``, as
        :func:`seqmask.rnn`.
      options: the call's resolved options.
      where: the public name for error messages.
      unroll: as :func:`seqmask.rnn`.
      feature_axes: the cell's number of feature axes (Flax's
        ``num_feature_axes``); several are flattened into one for the core
        and unflattened by the cell.

    Returns:
      ``ys``, or ``(carry, ys)`` with ``return_carry``.
    """
    xs = seq.inputs
    if feature_axes > 1:
        xs = xs.reshape(*xs.shape[:-feature_axes], -1)
    carry, ys = _layer.rnn(
        cell,
        params,
        xs,
        mask=seq.mask,
        lengths=None,
        initial_carry=call.initial_carry,
        resets=seq.resets,
        reset_to=None,
        reverse=options.reverse,
        time_major=options.time_major,
        options=_layer.options(unroll, False, None, where, call.skip_padding),
        where=where,
    )
    if options.reverse and not options.keep_order:
        ys = jax.tree.map(
            lambda y: _processing_order(y, seq.mask, options.time_major, feature_axes),
            ys,
        )
    return (carry, ys) if options.return_carry else ys


def _processing_order(ys, mask, time_major: bool, feature_axes: int):
    """Outputs of a reverse run in the order the steps were visited."""
    if mask is None:
        axis = 0 if time_major else jnp.ndim(ys) - feature_axes - 1
        return jnp.flip(ys, axis=axis)
    return _masks.reverse_valid_steps(ys, mask, time_major=time_major)


def run_bidirectional(
    module,
    directions: Sequence[Callable],
    inputs,
    call: RNNCall,
    options: CallOptions,
    where: str,
    feature_axes: int = 1,
):
    """Flax's ``Bidirectional.__call__`` over two RNN calls.

    The ``directions`` take ``(inputs, **arguments)`` like an RNN module's
    ``__call__``; ``module`` gives ``merge_fn``. The backward direction runs
    with ``reverse=True, keep_order=True``: its output for step ``t`` sits at
    position ``t``. With ``resets`` (several sequences packed into a row) the
    backward direction resets where each sequence ends, as in
    :func:`seqmask.bidirectional`, so it meets every sequence at its last
    step with a fresh carry.
    """
    merge_fn = _checks.function(
        module.merge_fn, "merge_fn", where, "(forward_ys, backward_ys) -> ys"
    )
    carries = call.initial_carry
    if carries is None:
        carries = (None, None)
    elif not (isinstance(carries, (tuple, list)) and len(carries) == 2):
        _checks.fail(
            where,
            "initial_carry must be a pair (forward_carry, backward_carry) or None; "
            f"got {_checks.describe(carries)}.",
            TypeError,
        )
    seq = sequence(inputs, call, options.time_major, where, feature_axes)
    backward_resets = _segment_ends(seq.resets, options.time_major)
    results = [
        rnn(
            seq.inputs,
            initial_carry=carry,
            mask=seq.mask,
            resets=resets,
            return_carry=True,
            time_major=options.time_major,
            skip_padding=call.skip_padding,
            **direction,
        )
        for rnn, carry, resets, direction in zip(
            directions,
            carries,
            (seq.resets, backward_resets),
            ({"reverse": False}, {"reverse": True, "keep_order": True}),
            strict=True,
        )
    ]
    (forward_carry, forward_ys), (backward_carry, backward_ys) = results
    ys = jax.tree.map(merge_fn, forward_ys, backward_ys)
    return ((forward_carry, backward_carry), ys) if options.return_carry else ys


def _segment_ends(resets, time_major: bool):
    """The backward direction's resets, in the layout of ``resets``."""
    if resets is None:
        return None
    time_first = resets if time_major else jnp.moveaxis(resets, -1, 0)
    ends = jnp.asarray(_layer.segment_ends(time_first))
    return ends if time_major else jnp.moveaxis(ends, 0, -1)


class StackedOptions(NamedTuple):
    """The layer options of a ``Stacked`` module, as :func:`seqmask.stacked`."""

    bidirectional: bool
    merge: str
    dropout_rate: float
    residual: bool


def stacked_options(
    where: str, bidirectional, merge, dropout_rate, residual
) -> StackedOptions:
    """A ``Stacked`` module's layer options, checked under its name."""
    _checks.hyperparameter(
        dropout_rate, "dropout_rate", where, low=0, high=1, high_open=True
    )
    return StackedOptions(
        _checks.flag(bidirectional, "bidirectional", where),
        _checks.one_of(merge, _layers.MERGES[:2], "merge", where),
        dropout_rate,
        _checks.flag(residual, "residual", where),
    )


def run_stacked(
    cells: Sequence[Cell],
    params,
    seq: Steps,
    call: RNNCall,
    options: StackedOptions,
    dropout_key,
):
    """:func:`seqmask.stacked` over ``seq`` with a ``Stacked`` module's
    cells, layer options and parameters; ``call.initial_carry`` holds the
    per-layer carries."""
    return _layers.stacked(
        list(cells),
        params,
        seq.inputs,
        mask=seq.mask,
        initial_carries=call.initial_carry,
        resets=seq.resets,
        dropout_key=dropout_key,
        time_major=seq.time_major,
        skip_padding=call.skip_padding,
        **options._asdict(),
    )


def check_flax_params(
    params, template, name: str, where: str, argument: str, input_size=None
) -> None:
    """``params`` have the structure, shapes and dtypes of ``template``, the
    parameters of the Flax cell ``name`` (for inputs of ``input_size``)."""
    size = "" if input_size is None else f" for inputs of size {input_size}"
    _checks.tree_like(
        params,
        template,
        argument,
        where,
        expected_from=f"the parameters of {name}{size}",
        hint=" Were these parameters made for another cell or input size?",
    )


def adapted_cell(
    name: str,
    hidden_size: int | None,
    init: Callable,
    initial_carry: Callable,
    apply: Callable,
    check_params: Callable,
    *,
    own_carry: bool = True,
) -> Cell:
    """A Flax cell's pure functions as a :class:`~seqmask.cells.Cell` whose
    functions check their arguments first, as seqmask's own cells do.

    ``init`` gets a PRNG key; ``initial_carry`` a shape; ``apply`` floating
    inputs ``[*batch, features]`` (integer token ids are refused, not read
    as features), parameters that ``check_params`` accepts for that many
    features, and (for a cell with its ``own_carry``) a carry of the
    structure, shapes and dtypes of ``initial_carry(params, batch)``: the
    Flax cell's layout, e.g. ``(c, h)`` for its LSTM cells. Errors start
    with ``name`` and the function.
    """

    def checked_init(key, input_size):
        _checks.prng_key(key, "key", f"{name}.init")
        return init(key, input_size)

    def checked_initial_carry(params, batch_shape=()):
        where = f"{name}.initial_carry"
        batch = _checks.shape_tuple(batch_shape, "batch_shape", where)
        return initial_carry(params, batch)

    def checked_apply(params, carry, x):
        where = f"{name}.apply"
        x = _checks.floating_array(x, "x", where, hint=EMBED_HINT)
        _checks.min_rank(x, 1, "x", where, "[*batch, features]")
        check_params(params, where, x.shape[-1])
        if own_carry:
            batch = tuple(x.shape[:-1])
            _checks.tree_like(
                carry,
                jax.eval_shape(lambda params: initial_carry(params, batch), params),
                "carry",
                where,
                expected_from=f"{name}'s carry for batch shape {batch}",
                hint=" The carry keeps the Flax cell's layout ((c, h) for its LSTM "
                "cells): build it with the cell's initial_carry.",
                dtype_error=TypeError,
            )
        return apply(params, carry, x)

    return Cell(
        init=checked_init,
        initial_carry=checked_initial_carry,
        apply=checked_apply,
        name=name,
        hidden_size=hidden_size,
        check_params=check_params,
    )


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


def check_carry_init(carry_init, where: str) -> Initializer:
    """The initialiser of a learned carry: ``(key, shape, dtype) -> array``."""
    return _checks.function(carry_init, "carry_init", where, "(key, shape, dtype)")


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


def broadcast_learned(learned, batch_shape, where: str):
    """A learned unbatched carry broadcast over ``batch_shape`` (checked)."""
    batch = _checks.shape_tuple(batch_shape, "batch_shape", where)
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
        carry_init = check_carry_init(carry_init, where)
        cells = [learned_carry_cell(c, carry_init) for c in cells]
    return cells
