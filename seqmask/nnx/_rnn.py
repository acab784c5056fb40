"""NNX's ``RNN`` and ``Bidirectional`` with seqmask's masking."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from flax import nnx

import seqmask._checks as _checks
import seqmask._modules as _modules
from seqmask import cells as _cells
from seqmask._modules import Carry, Initializer, Params
from seqmask.cells import Cell
from seqmask.nnx._cell import adapter, as_cell, check_nnx_cell, in_features_of
from seqmask.nnx._named import _NamedLeaves
from seqmask.nnx._state import LearnableInitialState, param_key, param_rngs

__all__ = ["RNN", "Bidirectional"]

_RNN = "seqmask.nnx.RNN"
_BIDIRECTIONAL = "seqmask.nnx.Bidirectional"


class RNN(nnx.Module):
    """``flax.nnx.RNN`` with seqmask's masking: a drop-in replacement.

    Takes a Flax NNX cell (``nnx.LSTMCell``, ``nnx.OptimizedLSTMCell``,
    ``nnx.GRUCell``, ``nnx.SimpleCell``, ...) or a
    :class:`seqmask.cells.Cell`, and Flax's constructor and call arguments.
    With a Flax cell the module holds what ``flax.nnx.RNN`` holds, under the
    same names (``cell``: the cell itself, ``rngs``: the carry's random
    stream), so the state of an existing ``flax.nnx.RNN`` loads unchanged
    (``nnx.update``, orbax). With a seqmask cell the parameters are made here
    and named by the cell's dict (``rnn.cell.input_kernel``); with
    ``learnable_initial_state`` the learned carry is ``rnn.initial_carry``
    (see :class:`LearnableInitialState`).

    The time loop is the pure core's (:func:`seqmask.rnn`, one
    ``jax.lax.scan``, no ``nnx.scan``): ``module(xs, ...)`` equals
    ``seqmask.rnn(module.pure_cell, module.pure_params(), xs, ...)``.
    Results equal Flax's wherever Flax is right (outputs at valid steps,
    carries of rows with at least one valid step, gradients); where Flax is
    wrong seqmask's answer is returned: zero outputs at padded steps, a row
    of length 0 returns its initial carry, carries are right for several
    batch axes, and ``mask=`` takes any pattern. With ``reverse`` and
    without ``keep_order``, outputs come in processing order as in Flax.

    Args:
      cell: a Flax NNX cell with one feature axis (a cell whose
        ``num_feature_axes`` is not 1 raises a ``ValueError``) or a
        :class:`seqmask.cells.Cell`. A Flax LSTM carry stays in Flax's
        layout ``(c, h)``.
      in_features: the input size; required for a seqmask cell (checked
        against ``cell.in_features`` for a Flax cell).
      time_major, return_carry, reverse, keep_order: Flax's defaults for the
        call.
      unroll: passed to ``jax.lax.scan``.
      state_axes, broadcast_rngs: Flax's options of its lifted scan,
        accepted at their defaults (None); other values raise.
      learnable_initial_state: whether rows start (and are reset) from a
        trained carry instead of the cell's initial carry.
      carry_init: initialiser of the learned carry.
      rngs: as in Flax, the carry's random stream for a Flax cell (True:
        a fresh one, an ``nnx.Rngs``: its ``carry`` stream forked, False:
        none). A seqmask cell, or a learned initial state, needs an
        ``nnx.Rngs`` whose ``params`` stream initialises the parameters.

    Attributes:
      pure_cell: the :class:`~seqmask.cells.Cell` the module runs.
      in_features, out_features: the feature sizes of inputs and outputs
        (``out_features`` is None for a Flax cell without
        ``initialize_carry``: it runs from the carry each call is given,
        as in Flax, and ``resets`` return to that carry).

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> import seqmask.nnx
      >>> xs, lengths = jnp.ones((2, 5, 3)), jnp.array([5, 2])
      >>> cell = nnx.LSTMCell(3, 4, rngs=nnx.Rngs(0))
      >>> flax_rnn = nnx.RNN(cell, return_carry=True)
      >>> ours = seqmask.nnx.RNN(cell, return_carry=True)
      >>> ((c, h), ys), ((c_f, h_f), ys_f) = (
      ...     m(xs, seq_lengths=lengths) for m in (ours, flax_rnn))
      >>> [bool(jnp.allclose(ours, flax, atol=1e-6))  # carries, valid outputs
      ...  for ours, flax in ((c, c_f), (h, h_f), (ys[1, :2], ys_f[1, :2]))]
      [True, True, True]
      >>> bool(jnp.all(ys[1, 2:] == 0)), bool(jnp.all(ys_f[1, 2:] == 0))
      (True, False)
    """

    def __init__(
        self,
        cell,
        *,
        in_features: int | None = None,
        time_major: bool = False,
        return_carry: bool = False,
        reverse: bool = False,
        keep_order: bool = False,
        unroll: int = 1,
        state_axes: Any = None,
        broadcast_rngs: Any = None,
        learnable_initial_state: bool = False,
        carry_init: Initializer = _modules.ZEROS,
        rngs: nnx.Rngs | nnx.RngStream | bool = True,
    ):
        where = _RNN
        _modules.check_lifted_options(
            where, state_axes=(state_axes, None), broadcast_rngs=(broadcast_rngs, None)
        )
        self.time_major = _checks.flag(time_major, "time_major", where)
        self.return_carry = _checks.flag(return_carry, "return_carry", where)
        self.reverse = _checks.flag(reverse, "reverse", where)
        self.keep_order = _checks.flag(keep_order, "keep_order", where)
        self.unroll = _checks.flag_or_int(unroll, "unroll", where)
        learned = _checks.flag(
            learnable_initial_state, "learnable_initial_state", where
        )
        if learned:
            _modules.check_carry_init(carry_init, where)
        if isinstance(cell, Cell):
            in_features = _required_in_features(in_features, where)
            self._record = cell
            self.cell = _NamedLeaves(
                cell.init(param_key(rngs, where), in_features),
                single_name="params",
                where=where,
            )
            self.rngs = nnx.data(None)
            base = cell
        else:
            check_nnx_cell(cell, where)
            in_features = _flax_in_features(cell, in_features, where)
            base = adapter(cell, where)  # checks it can run as a pure function
            if learned:
                _modules.check_learnable_carry(cell, nnx.RNNCellBase, where)
            self._record = None
            self.cell = cell
            self.rngs = _carry_stream(rngs, where)
        self.in_features = in_features
        self.carry_init = carry_init
        self.initial_carry = (
            LearnableInitialState(
                base,
                carry_init=carry_init,
                in_features=in_features,
                rngs=param_rngs(rngs, where, "the learned initial carry"),
            )
            if learned
            else None
        )
        own_carry = self._record is not None or _modules.has_initialize_carry(
            cell, nnx.RNNCellBase
        )
        self.out_features = (
            _cells.output_size(self.pure_cell, self.pure_params(), in_features)
            if own_carry
            else None  # depends on the carry the call is given
        )

    @property
    def pure_cell(self) -> Cell:
        """The seqmask cell, or :func:`seqmask.nnx.as_cell` of the Flax cell,
        wrapped by :func:`seqmask.cells.learnable_initial_state` if the
        initial state is learned."""
        if self._record is not None:
            if self.initial_carry is None:
                return self._record
            return _modules.learned_carry_cell(self._record, self.carry_init)
        base = as_cell(self.cell)
        if self.initial_carry is None:
            return base
        return _cells.learnable_initial_state(base, carry_init=self.carry_init)

    def pure_params(self) -> Params:
        """The parameter pytree that ``seqmask.rnn(self.pure_cell, ...)`` takes.

        Returns:
          The cell's parameters, or ``{"cell": ..., "initial_carry": ...}``
          with a learnable initial state.
        """
        if isinstance(self.cell, _NamedLeaves):
            params = self.cell._tree()
        else:
            params = nnx.to_pure_dict(nnx.state(self.cell, nnx.Param))
        if self.initial_carry is None:
            return params
        return {"cell": params, "initial_carry": self.initial_carry(())}

    def initial_state(self, batch_shape: int | Sequence[int] = ()) -> Carry:
        """The learned carry, or the cell's initial carry (for a Flax cell
        drawn with a fixed key: zeros with Flax's default ``carry_init``).

        Rows are reset to it when the call is given an ``initial_carry``;
        otherwise a call of a Flax cell starts from, and resets to, a carry
        drawn from the module's ``rngs`` as in Flax, which is this one for
        a deterministic ``carry_init``.

        Args:
          batch_shape: the batch axes.

        Returns:
          The carry, every leaf ``[*batch_shape, ...]``.
        """
        batch = _checks.shape_tuple(batch_shape, "batch_shape", f"{_RNN}.initial_state")
        return self.pure_cell.initial_carry(self.pure_params(), batch)

    def __call__(
        self,
        inputs,
        *,
        initial_carry: Carry | None = None,
        seq_lengths=None,
        return_carry: bool | None = None,
        time_major: bool | None = None,
        reverse: bool | None = None,
        keep_order: bool | None = None,
        rngs: nnx.Rngs | nnx.RngStream | None = None,
        mask=None,
        resets=None,
        skip_padding: bool | int = False,
    ):
        """Run the layer, as ``flax.nnx.RNN.__call__`` with seqmask's masking.

        Args:
          inputs: ``[*batch, time, features]`` (``[time, *batch, features]``
            when time major).
          initial_carry: the carry to start from; default: the learned carry,
            or the cell's ``initialize_carry`` drawn from ``rngs`` as Flax
            does.
          seq_lengths: integers ``[*batch]`` in ``[0, time]``: row ``b`` is
            valid at its first ``seq_lengths[b]`` steps.
          return_carry, time_major, reverse, keep_order: override the module's
            attributes for this call.
          rngs: the stream for a Flax cell's ``initialize_carry`` (default:
            the module's).
          mask, resets, skip_padding: seqmask's additions, as
            :func:`seqmask.rnn`: a boolean ``mask`` of any pattern instead of
            ``seq_lengths``; ``resets`` send rows back to the carry the
            call started from (the learned one, or the one drawn from
            ``rngs``) where a new sequence starts, unless ``initial_carry``
            is given: then to :meth:`initial_state`.

        Returns:
          ``ys`` ``[*batch, time, out_features]``, zero at padded steps, or
          ``(carry, ys)`` with ``return_carry``; the carry is each row's
          carry after its last valid step (after its first, for ``reverse``).
        """
        call = _modules.RNNCall(initial_carry, seq_lengths, mask, resets, skip_padding)
        options = _modules.resolve(
            self, _RNN, time_major, return_carry, reverse, keep_order
        )
        seq = _modules.sequence(inputs, call, options.time_major, _RNN)
        stream = _call_stream(self.rngs, rngs, _RNN)
        cell = self.pure_cell
        if (
            initial_carry is None
            and self._record is None
            and self.initial_carry is None
        ):
            if isinstance(stream, nnx.Rngs):
                stream = stream.carry.fork()
            flax_cell: Any = self.cell
            if not _modules.has_initialize_carry(flax_cell, nnx.RNNCellBase):
                cell.initial_carry(self.pure_params(), ())  # says: give one
            drawn = flax_cell.initialize_carry(seq.step, stream)
            # Rows start from the carry drawn for this call, as in Flax, and
            # resets return to it.
            cell = cell._replace(initial_carry=lambda params, batch: drawn)
            initial_carry = drawn
        return _modules.run_rnn(
            cell,
            self.pure_params(),
            seq,
            call._replace(initial_carry=initial_carry),
            options,
            _RNN,
            unroll=self.unroll,
        )


class Bidirectional(nnx.Module):
    """``flax.nnx.Bidirectional`` over two :class:`RNN`: a drop-in.

    The forward RNN runs as usual, the backward one with ``reverse=True,
    keep_order=True``, and ``merge_fn`` combines their outputs (concatenated
    features by default). With seqmask's RNNs the backward direction visits
    exactly each row's valid steps, last to first, for any mask, and padded
    outputs are zero (as long as ``merge_fn`` maps zeros to zeros). The
    module holds ``forward_rnn``, ``backward_rnn`` and ``rngs`` as Flax's.

    Args:
      forward_rnn, backward_rnn: :class:`RNN` modules (``flax.nnx.RNN``
        objects are refused: they would run Flax's scan).
      merge_fn: ``(forward_ys, backward_ys) -> ys``.
      time_major, return_carry: defaults for the call.
      rngs: the carry stream given to both directions, as in Flax.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> import seqmask.nnx
      >>> rngs = nnx.Rngs(0)
      >>> bi = seqmask.nnx.Bidirectional(
      ...     seqmask.nnx.RNN(nnx.GRUCell(3, 4, rngs=rngs)),
      ...     seqmask.nnx.RNN(nnx.GRUCell(3, 4, rngs=rngs)))
      >>> mask = jnp.array([[True] * 5, [False, True, False, True, False]])
      >>> ys = bi(jnp.ones((2, 5, 3)), mask=mask)
      >>> ys.shape, bool(jnp.all(ys[1, ::2] == 0))
      ((2, 5, 8), True)
    """

    def __init__(
        self,
        forward_rnn: RNN,
        backward_rnn: RNN,
        *,
        merge_fn: Callable[[Any, Any], Any] = _modules.concatenate,
        time_major: bool = False,
        return_carry: bool = False,
        rngs: nnx.Rngs | nnx.RngStream | bool = True,
    ):
        where = _BIDIRECTIONAL
        _modules.check_rnn(forward_rnn, RNN, "forward_rnn", where, "nnx")
        _modules.check_rnn(backward_rnn, RNN, "backward_rnn", where, "nnx")
        self.forward_rnn = forward_rnn
        self.backward_rnn = backward_rnn
        self.merge_fn = _checks.function(
            merge_fn, "merge_fn", where, "(forward_ys, backward_ys) -> ys"
        )
        self.time_major = _checks.flag(time_major, "time_major", where)
        self.return_carry = _checks.flag(return_carry, "return_carry", where)
        self.rngs = _carry_stream(rngs, where)

    def __call__(
        self,
        inputs,
        *,
        initial_carry: tuple[Carry, Carry] | None = None,
        rngs: nnx.Rngs | nnx.RngStream | None = None,
        seq_lengths=None,
        return_carry: bool | None = None,
        time_major: bool | None = None,
        reverse: bool | None = None,
        keep_order: bool | None = None,
        mask=None,
        resets=None,
        skip_padding: bool | int = False,
    ):
        """Run both directions, as ``flax.nnx.Bidirectional.__call__``.

        ``resets`` marks where packed sequences start
        (:attr:`seqmask.data.Packing.resets`); each direction then resets at
        its own edge of every sequence (the backward one where it ends), as
        in :func:`seqmask.bidirectional`.

        Args:
          inputs, seq_lengths, mask, resets, skip_padding: as
            :meth:`RNN.__call__`.
          initial_carry: ``(forward_carry, backward_carry)`` or None.
          rngs: the carry stream for both directions (default: the module's).
          return_carry, time_major: override the module's attributes.
          reverse, keep_order: accepted for Flax's ``RNNBase`` protocol and
            ignored, as in Flax.

        Returns:
          ``ys``, or ``((forward_carry, backward_carry), ys)`` with
          ``return_carry``; the backward carry is the state after each row's
          first valid step.
        """
        del reverse, keep_order  # as in Flax
        stream = _call_stream(self.rngs, rngs, _BIDIRECTIONAL)
        if isinstance(stream, nnx.Rngs):
            stream = stream.carry
        rnns = (self.forward_rnn, self.backward_rnn)
        directions = [functools.partial(rnn, rngs=stream) for rnn in rnns]
        options = _modules.resolve(self, _BIDIRECTIONAL, time_major, return_carry)
        call = _modules.RNNCall(initial_carry, seq_lengths, mask, resets, skip_padding)
        return _modules.run_bidirectional(
            self, directions, inputs, call, options, _BIDIRECTIONAL
        )


def _carry_stream(rngs, where: str):
    """Flax's carry stream: a fresh one, the ``carry`` stream forked, or none."""
    if rngs is True:
        return nnx.RngStream(0, tag="carry")
    if rngs is False:
        return nnx.data(None)
    if isinstance(rngs, nnx.Rngs):
        return rngs.carry.fork()
    if isinstance(rngs, nnx.RngStream):
        return rngs
    _checks.fail(
        where,
        "rngs must be True, False, an nnx.Rngs or an nnx.RngStream; got "
        f"{_checks.describe(rngs)}.",
        TypeError,
    )


def _call_stream(own, given, where: str):
    """The carry stream of a call: ``given`` (an ``nnx.Rngs`` or
    ``nnx.RngStream``) or, when None, the module's own."""
    if given is None:
        return own
    return _checks.instance(
        given,
        (nnx.Rngs, nnx.RngStream),
        "rngs",
        where,
        expected="an nnx.Rngs, an nnx.RngStream or None (the module's stream)",
    )


def _required_in_features(in_features, where: str) -> int:
    if in_features is None:
        _checks.fail(
            where,
            "a seqmask cell needs in_features, the feature size of the inputs "
            "(e.g. RNN(seqmask.cells.lstm(64), in_features=32, rngs=nnx.Rngs(0))).",
            TypeError,
        )
    return _checks.positive_int(in_features, "in_features", where)


def _flax_in_features(cell, in_features, where: str) -> int:
    own = in_features_of(cell)
    if in_features is None:
        if own is None:
            _checks.fail(
                where,
                f"the cell {type(cell).__name__} has no in_features attribute: "
                "give in_features.",
                TypeError,
            )
        return own
    in_features = _checks.positive_int(in_features, "in_features", where)
    if own is not None and own != in_features:
        _checks.fail(
            where,
            f"in_features={in_features} but the cell has in_features={own}; leave "
            "in_features out for a Flax cell.",
        )
    return in_features
