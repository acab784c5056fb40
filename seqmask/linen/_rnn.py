"""Linen's ``RNN`` and ``Bidirectional`` with seqmask's masking."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.core import FrozenDict, unfreeze

import seqmask._checks as _checks
import seqmask._modules as _modules
from seqmask import cells as _cells
from seqmask._modules import Carry, Initializer, Params
from seqmask.cells import Cell
from seqmask.linen._cell import (
    adapter,
    checked_param,
    describe_cell,
    flax_carry,
    unbound_cell,
)
from seqmask.linen._state import LearnableInitialState

__all__ = ["RNN", "Bidirectional"]

_RNN = "seqmask.linen.RNN"
_BIDIRECTIONAL = "seqmask.linen.Bidirectional"


class RNN(nn.Module):
    """``flax.linen.RNN`` with seqmask's masking: a drop-in replacement.

    Takes a Flax Linen cell (``nn.LSTMCell``, ``nn.OptimizedLSTMCell``,
    ``nn.GRUCell``, ``nn.SimpleCell``, ``nn.MGUCell``, ``nn.ConvLSTMCell``,
    ...) or a :class:`seqmask.cells.Cell`, Flax's constructor and call
    arguments, and, for a Flax cell, the variables of a ``flax.linen.RNN``
    unchanged: the cell's parameters live under ``params/cell`` with Flax's
    names, and ``init`` draws the same values as ``flax.linen.RNN``. A
    seqmask cell keeps its parameter dict under ``params/cell``; with
    ``learnable_initial_state`` the learned carry lives under
    ``params/initial_carry`` (see :class:`LearnableInitialState`).

    The time loop is the pure core's (:func:`seqmask.rnn`, one
    ``jax.lax.scan``, no ``nn.scan``). Results equal Flax's wherever Flax is
    right: outputs at valid steps, the carry of rows with at least one valid
    step, and their gradients. Where Flax is wrong seqmask's answer is
    returned: outputs at padded steps are zero (Flax leaves the cell's
    outputs on padding there), a row of length 0 returns its initial carry
    (Flax returns the carry after the last step of the padding), carries are
    right for several batch axes, and ``mask=`` takes any pattern (left
    padding, holes) that ``seq_lengths`` cannot express. With ``reverse``
    and without ``keep_order``, outputs come in processing order as in Flax
    (valid steps reversed in place, padding zero).

    Attributes:
      cell: a Flax Linen cell or a :class:`seqmask.cells.Cell`. A Flax LSTM
        carry stays in Flax's layout ``(c, h)``.
      time_major, return_carry, reverse, keep_order: Flax's defaults for the
        call (``[*batch, time, *features]`` inputs, outputs only, forward,
        processing order).
      unroll: passed to ``jax.lax.scan``.
      variable_axes, variable_broadcast, variable_carry: Flax's options of
        its lifted scan, accepted at their defaults (parameters shared by
        every step); other values raise.
      split_rngs: ``{"params": False}`` (the parameters are shared), plus,
        for a cell that draws random numbers in its step
        (``self.make_rng(name)``), ``name: True`` for a new key at every
        step or ``name: False`` for the same key at every step. The keys
        derive from ``make_rng(name)`` and the step number: Flax's
        distribution, not Flax's exact draws. The step number is carried
        (one more than the largest in the batch), so ``resets`` that send
        *every* row back at one step (a batch of one packed row, say)
        start it again: the keys of that segment repeat the first one's
        (a carry cannot remember past a reset of every row).
      learnable_initial_state: whether rows start (and are reset) from a
        trained carry instead of the cell's initial carry.
      carry_init: initialiser of the learned carry.

    Examples:
      >>> import flax.linen as nn
      >>> import jax, jax.numpy as jnp
      >>> import seqmask.linen
      >>> xs, lengths = jnp.ones((2, 5, 3)), jnp.array([5, 2])
      >>> flax_rnn = nn.RNN(nn.GRUCell(4), return_carry=True)
      >>> ours = seqmask.linen.RNN(nn.GRUCell(4), return_carry=True)
      >>> variables = flax_rnn.init(jax.random.key(0), xs)
      >>> jax.tree.all(jax.tree.map(jnp.array_equal, variables,
      ...                           ours.init(jax.random.key(0), xs)))
      True
      >>> (h, ys), (h_flax, ys_flax) = (
      ...     m.apply(variables, xs, seq_lengths=lengths) for m in (ours, flax_rnn))
      >>> bool(jnp.allclose(h, h_flax, atol=1e-6))
      True
      >>> bool(jnp.allclose(ys[1, :2], ys_flax[1, :2], atol=1e-6))
      True
      >>> bool(jnp.all(ys[1, 2:] == 0)), bool(jnp.all(ys_flax[1, 2:] == 0))
      (True, False)
    """

    cell: Any
    time_major: bool = False
    return_carry: bool = False
    reverse: bool = False
    keep_order: bool = False
    unroll: int = 1
    variable_axes: Mapping[Any, Any] = FrozenDict()
    variable_broadcast: Any = "params"
    variable_carry: Any = False
    split_rngs: Mapping[Any, bool] = FrozenDict({"params": False})
    learnable_initial_state: bool = False
    carry_init: Initializer = _modules.ZEROS

    @property
    def pure_cell(self) -> Cell:
        """The :class:`~seqmask.cells.Cell` the module runs: the seqmask cell,
        or :func:`seqmask.linen.as_cell` of the Flax cell, wrapped by
        :func:`seqmask.cells.learnable_initial_state` if the state is learned
        (without the random streams of ``split_rngs``, which need a bound
        module). A Flax cell with several feature axes (``ConvLSTMCell``)
        has none here, since its pure cell depends on the feature shape: use
        ``seqmask.linen.as_cell(cell, feature_shape=...)``."""
        axes = self._feature_axes()
        if axes > 1:
            _checks.fail(
                _RNN,
                f"{describe_cell(unbound_cell(self.cell, _RNN))} has {axes} "
                "feature axes, so its pure cell depends on the shape of a step: "
                "build it with seqmask.linen.as_cell(cell, feature_shape=(...)) "
                "and run it with seqmask.rnn on inputs whose feature axes are "
                "flattened into one.",
            )
        return self._cells(None, None)[1]

    def _cells(self, feature_shape, streams) -> tuple[Cell, Cell]:
        """The cell as a pure :class:`Cell`, and the one the module runs
        (with the learned initial carry, if any)."""
        learned = _checks.flag(
            self.learnable_initial_state, "learnable_initial_state", _RNN
        )
        if learned:
            _modules.check_carry_init(self.carry_init, _RNN)
        if isinstance(self.cell, Cell):
            base = self.cell
            if learned:
                return base, _modules.learned_carry_cell(base, self.carry_init)
            return base, base
        if learned and streams:
            _checks.fail(
                _RNN,
                "learnable_initial_state=True does not combine with random "
                f"streams in the cell's steps (split_rngs={dict(self.split_rngs)}).",
            )
        flax_cell = unbound_cell(self.cell, _RNN)
        if learned:
            _modules.check_learnable_carry(flax_cell, nn.RNNCellBase, _RNN)
        base = adapter(flax_cell, feature_shape, _RNN, streams)
        if learned:
            return base, _cells.learnable_initial_state(
                base, carry_init=self.carry_init
            )
        return base, base

    def _feature_axes(self) -> int:
        if isinstance(self.cell, Cell):
            return 1
        return unbound_cell(self.cell, _RNN).num_feature_axes

    def _streams(self) -> dict[str, bool]:
        """Flax's lifted-scan options checked; the cell's random streams
        (``split_rngs`` other than ``params``) by name."""
        where = _RNN
        _modules.check_lifted_options(
            where,
            variable_axes=(self.variable_axes, FrozenDict()),
            variable_broadcast=(self.variable_broadcast, "params"),
            variable_carry=(self.variable_carry, False),
        )
        split = self.split_rngs
        if not isinstance(split, Mapping) or not all(
            isinstance(name, str) and isinstance(value, bool)
            for name, value in split.items()
        ):
            _checks.fail(
                where,
                "split_rngs must map stream names to True or False (e.g. "
                f"{{'params': False, 'dropout': True}}); got {split!r}.",
                TypeError,
            )
        _modules.check_lifted_options(
            where,
            split_rngs=({"params": split.get("params", False)}, {"params": False}),
        )
        return {name: value for name, value in split.items() if name != "params"}

    @nn.compact
    def _params(self, step, first=None, carry=None) -> tuple[Cell, Params]:
        """The pure cell and its parameters for steps of shape ``step``
        (``[*batch, *features]``), created at ``init`` (by one step of the
        cell on ``first`` from ``carry`` when they are given, as Flax does)."""
        streams = self._streams()
        axes = self._feature_axes()
        features = tuple(step[len(step) - axes :])
        size = math.prod(features)
        if isinstance(self.cell, Cell):
            record = self.cell
            params = checked_param(
                self, "cell", lambda key: record.init(key, size), _RNN
            )
        else:
            params = self._flax_params(features, first, carry, streams)
        keyed = {name: (self.make_rng(name), split) for name, split in streams.items()}
        base, cell = self._cells(features if axes > 1 else None, keyed or None)
        if not self.learnable_initial_state:
            return cell, params
        state = LearnableInitialState(
            base, self.carry_init, in_features=size, name="initial_carry"
        )
        return cell, {"cell": params, "initial_carry": state(())}

    def _flax_params(self, features, first, carry, streams) -> Params:
        """The Flax cell's parameters, checked against what the cell makes
        from ``carry`` and ``first`` (a step of zeros and the cell's initial
        carry when not given). At init the bound submodule makes them with
        Flax's names and random draws, from that same step."""
        flax_cell = unbound_cell(self.cell, _RNN)
        if first is None:
            dtype = getattr(flax_cell, "param_dtype", jnp.float32)
            first = jnp.zeros(features, dtype)
        if carry is None:
            carry = flax_carry(flax_cell, jax.random.key(0), jnp.shape(first))
        if self.is_mutable_collection("params"):
            self.cell(carry, first)
        params = unfreeze(self.cell.variables.get("params", {}))

        def make(key, carry, first):
            rngs = {"params": key, **{name: key for name in streams}}
            return flax_cell.init(rngs, carry, first).get("params", {})

        template = jax.eval_shape(make, jax.random.key(0), carry, first)
        size = math.prod(features)
        name = describe_cell(flax_cell)
        _modules.check_flax_params(params, template, name, _RNN, "params['cell']", size)
        return params

    def pure_params(self, in_features: int | Sequence[int]) -> Params:
        """The parameter pytree that ``seqmask.rnn(self.pure_cell, ...)`` takes.

        ``model.init(key, in_features, method="pure_params")`` creates the
        same variables as ``model.init(key, inputs)`` without running the
        layer (for a Flax cell, from a step on zeros).

        Args:
          in_features: the feature size of the inputs (the feature shape of
            one step for a cell with several feature axes).

        Returns:
          The cell's parameters, or ``{"cell": ..., "initial_carry": ...}``
          with a learnable initial state.
        """
        axes = self._feature_axes()
        if isinstance(in_features, (tuple, list)):
            if len(in_features) != axes:
                _checks.fail(
                    _RNN,
                    f"in_features must be a tuple of {axes} sizes (the cell's "
                    f"num_feature_axes); got {tuple(in_features)!r}.",
                )
            step = tuple(
                _checks.positive_int(size, "in_features", _RNN) for size in in_features
            )
        elif axes > 1:
            _checks.fail(
                _RNN,
                f"in_features must be the shape of one step's features, a tuple "
                f"of {axes} sizes (e.g. (height, width, channels)) for a cell with "
                f"{axes} feature axes; got {in_features!r}.",
                TypeError,
            )
        else:
            step = (_checks.positive_int(in_features, "in_features", _RNN),)
        return self._params(step)[1]

    def __call__(
        self,
        inputs,
        *,
        initial_carry: Carry | None = None,
        init_key: jax.Array | None = None,
        seq_lengths=None,
        return_carry: bool | None = None,
        time_major: bool | None = None,
        reverse: bool | None = None,
        keep_order: bool | None = None,
        mask=None,
        resets=None,
        skip_padding: bool | int = False,
    ):
        """Run the layer, as ``flax.linen.RNN.__call__`` with seqmask's masking.

        Args:
          inputs: ``[*batch, time, *features]`` (``[time, *batch,
            *features]`` when time major).
          initial_carry: the carry to start from; default: the cell's initial
            carry (the learned one with ``learnable_initial_state``).
          init_key: the key of the cell's ``initialize_carry`` (Flax cells;
            ``jax.random.key(0)`` when not given, as in Flax); rows start
            from the carry it draws, and ``resets`` return to it.
          seq_lengths: integers ``[*batch]`` in ``[0, time]``: row ``b`` is
            valid at its first ``seq_lengths[b]`` steps.
          return_carry, time_major, reverse, keep_order: override the module's
            attributes for this call.
          mask, resets, skip_padding: seqmask's additions, as
            :func:`seqmask.rnn`: a boolean ``mask`` of any pattern instead of
            ``seq_lengths``; ``resets`` send rows back to the initial carry
            (the learned one, if any; the one drawn with ``init_key``, if
            given) where a new sequence starts. A Flax cell without
            ``initialize_carry`` has no carry of its own: the given
            ``initial_carry`` stands in for it, and resets return to it
            (to reset a stateful run of such a cell to another carry, use
            :func:`seqmask.rnn` with ``reset_to``).

        Returns:
          ``ys`` ``[*batch, time, *out]``, zero at padded steps, or
          ``(carry, ys)`` with ``return_carry``; the carry is each row's
          carry after its last valid step (after its first, for ``reverse``).
        """
        axes = self._feature_axes()
        call = _modules.RNNCall(initial_carry, seq_lengths, mask, resets, skip_padding)
        options = _modules.resolve(
            self, _RNN, time_major, return_carry, reverse, keep_order
        )
        seq = _modules.sequence(inputs, call, options.time_major, _RNN, axes)
        flax_cell = not isinstance(self.cell, Cell)
        drawn = init_key is not None and initial_carry is None
        if drawn:
            initial_carry = self._drawn_carry(init_key, seq.step)
        # A Flax cell makes its parameters with Flax's first step: on the
        # first inputs, from its own carry (which the core then checks the
        # given one against) or, for a cell without one, from the given one.
        own_carry = not flax_cell or _modules.has_initialize_carry(
            self.cell, nn.RNNCellBase
        )
        time_axis = 0 if options.time_major else len(seq.step) - axes
        first = (
            jnp.take(seq.inputs, 0, axis=time_axis)
            if seq.inputs.shape[time_axis]
            else jnp.zeros(seq.step, seq.inputs.dtype)  # no step: its shape
        )
        cell, params = self._params(
            seq.step, first, None if own_carry else initial_carry
        )
        counted = flax_cell and bool(self._streams())
        if initial_carry is not None and flax_cell:
            if counted:  # the step count of the cell's random streams
                batch = seq.step[: len(seq.step) - axes]
                initial_carry = (initial_carry, jnp.zeros(batch, jnp.int32))
            if not own_carry or drawn:
                # As in Flax, a cell without initialize_carry runs from the
                # given carry, which stands in for its own; a carry drawn
                # with init_key is the initial carry of this call. Resets
                # return to it.
                given = initial_carry
                cell = cell._replace(initial_carry=lambda params, batch: given)
        result = _modules.run_rnn(
            cell,
            params,
            seq,
            call._replace(initial_carry=initial_carry),
            options,
            _RNN,
            unroll=self.unroll,
            feature_axes=axes,
        )
        if counted and options.return_carry:
            (carry, _), ys = result
            return carry, ys
        return result

    def _drawn_carry(self, init_key, step) -> Carry | None:
        """Flax's ``cell.initialize_carry(init_key, step)`` for a Flax cell."""
        _checks.prng_key(init_key, "init_key", _RNN)
        if self.learnable_initial_state:
            _checks.fail(
                _RNN,
                "init_key draws the carry from the cell's carry_init, but the "
                "initial carry is learned (learnable_initial_state=True): give "
                "no init_key.",
            )
        if isinstance(self.cell, Cell):
            return None  # a seqmask cell's initial carry takes no key
        return flax_carry(unbound_cell(self.cell, _RNN), init_key, step)


class Bidirectional(nn.Module):
    """``flax.linen.Bidirectional`` over two :class:`RNN`: a drop-in.

    The forward RNN runs as usual, the backward one with ``reverse=True,
    keep_order=True``, and ``merge_fn`` combines their outputs (concatenated
    features by default). With seqmask's RNNs the backward direction visits
    exactly each row's valid steps, last to first, for any mask, and padded
    outputs are zero (as long as ``merge_fn`` maps zeros to zeros).
    Parameters live under ``params/forward_rnn`` and ``params/backward_rnn``,
    as in Flax.

    Attributes:
      forward_rnn, backward_rnn: :class:`RNN` modules (``flax.linen.RNN``
        objects are refused: they would run Flax's scan).
      merge_fn: ``(forward_ys, backward_ys) -> ys``.
      time_major, return_carry: defaults for the call.

    Examples:
      >>> import flax.linen as nn
      >>> import jax, jax.numpy as jnp
      >>> import seqmask.linen
      >>> bi = seqmask.linen.Bidirectional(seqmask.linen.RNN(nn.GRUCell(4)),
      ...                                  seqmask.linen.RNN(nn.GRUCell(4)))
      >>> xs = jnp.ones((2, 5, 3))
      >>> mask = jnp.array([[True] * 5, [False, True, False, True, False]])
      >>> ys, variables = bi.init_with_output(jax.random.key(0), xs, mask=mask)
      >>> ys.shape, sorted(variables["params"])
      ((2, 5, 8), ['backward_rnn', 'forward_rnn'])
      >>> bool(jnp.all(ys[1, ::2] == 0))
      True
    """

    forward_rnn: Any
    backward_rnn: Any
    merge_fn: Callable[[Any, Any], Any] = _modules.concatenate
    time_major: bool = False
    return_carry: bool = False

    def __call__(
        self,
        inputs,
        *,
        initial_carry: tuple[Carry, Carry] | None = None,
        init_key: jax.Array | None = None,
        seq_lengths=None,
        return_carry: bool | None = None,
        time_major: bool | None = None,
        reverse: bool | None = None,
        keep_order: bool | None = None,
        mask=None,
        resets=None,
        skip_padding: bool | int = False,
    ):
        """Run both directions, as ``flax.linen.Bidirectional.__call__``.

        With ``resets`` (packed rows: :attr:`seqmask.data.Packing.resets`),
        the forward direction resets where each sequence starts and the
        backward one where it ends, as :func:`seqmask.bidirectional` does, so
        every sequence of a row gets what it would get alone.

        Args:
          inputs, seq_lengths, mask, resets, skip_padding: as
            :meth:`RNN.__call__`.
          initial_carry: ``(forward_carry, backward_carry)`` or None.
          init_key: split into one key a direction, as in Flax.
          return_carry, time_major: override the module's attributes.
          reverse, keep_order: accepted for Flax's ``RNNBase`` protocol and
            ignored, as in Flax.

        Returns:
          ``ys`` (``merge_fn`` of both directions' outputs), or
          ``((forward_carry, backward_carry), ys)`` with ``return_carry``;
          the backward carry is the state after each row's first valid step.
        """
        del reverse, keep_order  # as in Flax
        rnns = (self.forward_rnn, self.backward_rnn)
        for name, rnn in zip(("forward_rnn", "backward_rnn"), rnns, strict=True):
            _modules.check_rnn(rnn, RNN, name, _BIDIRECTIONAL, "linen")
        keys = (None, None)
        if init_key is not None:
            _checks.prng_key(init_key, "init_key", _BIDIRECTIONAL)
            keys = jax.random.split(init_key)
        directions = [
            functools.partial(rnn, init_key=key)
            for rnn, key in zip(rnns, keys, strict=True)
        ]
        options = _modules.resolve(self, _BIDIRECTIONAL, time_major, return_carry)
        call = _modules.RNNCall(initial_carry, seq_lengths, mask, resets, skip_padding)
        axes = self.forward_rnn._feature_axes()
        return _modules.run_bidirectional(
            self, directions, inputs, call, options, _BIDIRECTIONAL, axes
        )
