"""The NNX recurrent layers: :class:`LearnableInitialState`, :class:`RNN`,
:class:`Bidirectional` and :class:`Stacked`, thin modules over
:func:`seqmask.rnn`, :func:`seqmask.bidirectional` and :func:`seqmask.stacked`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from seqmask import layers as _layers
from seqmask._modules import (
    _MERGES,
    _batch_shape,
    _carry_template,
    _check_cell_record,
    _check_inputs,
    _check_size,
    _output_size,
    _resolve_cell,
    _with_learned_carry,
)
from seqmask.cells import Cell
from seqmask.nnx._named import _NamedLeaves

__all__ = ["LearnableInitialState", "RNN", "Bidirectional", "Stacked"]

Carry = Any
Params = Any
Initializer = Callable[..., jax.Array]

_ZEROS: Initializer = jax.nn.initializers.zeros


class LearnableInitialState(_NamedLeaves):
    """A trained initial carry for ``cell``, broadcast to any batch shape.

    The carry has the structure of ``cell``'s (for :func:`seqmask.cells.lstm`
    an :class:`~seqmask.cells.LSTMCarry` ``(h, c)``, for ``gru`` a single
    array) without batch axes; each leaf is an ``nnx.Param`` named by its
    pytree path (a carry that is one array is named ``h``). Calling the
    module broadcasts it over a batch, so every row that starts from it
    sends gradient to it, and rows that do not (given another carry, never
    reset) send exactly none.

    It combines with statefulness through the pure core: pass
    ``initial_carry=state(batch)`` to start rows from it and
    ``reset_to=state(batch)`` with ``resets`` to send rows back to it (see
    :func:`seqmask.rnn`); :class:`RNN` does both when built with
    ``learnable_initial_state=True``.

    Args:
      cell: a :class:`seqmask.cells.Cell`; only its carry structure, shapes
        and dtypes are used.
      carry_init: initialiser ``(key, shape, dtype) -> array`` for each leaf
        (zeros by default, so a fresh module starts like the cell's zero
        carry).
      rngs: ``nnx.Rngs``; its ``params`` stream feeds ``carry_init``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> import seqmask.nnx
      >>> state = seqmask.nnx.LearnableInitialState(seqmask.cells.lstm(3),
      ...                                           rngs=nnx.Rngs(0))
      >>> state.h[...].shape, state.c[...].shape
      ((3,), (3,))
      >>> state((2, 5)).h.shape
      (2, 5, 3)
    """

    def __init__(
        self,
        cell: Cell,
        *,
        carry_init: Initializer = _ZEROS,
        rngs: nnx.Rngs,
    ):
        where = "LearnableInitialState"
        _check_cell_record(cell, where)
        template = _carry_template(cell)
        leaves, treedef = jax.tree.flatten(template)
        keys = jax.random.split(rngs.params(), max(len(leaves), 1))
        learned = [
            carry_init(key, leaf.shape, leaf.dtype)
            for key, leaf in zip(keys, leaves, strict=False)
        ]
        super().__init__(
            jax.tree.unflatten(treedef, learned), single_name="h", where=where
        )

    def __call__(self, batch_shape: int | Sequence[int] = ()) -> Carry:
        """The learned carry broadcast over ``batch_shape``.

        Args:
          batch_shape: leading axes to add (an int or a sequence of ints);
            ``()`` gives the unbatched carry itself.

        Returns:
          The carry, every leaf ``[*batch_shape, *leaf_shape]``.
        """
        batch_shape = _batch_shape(batch_shape, "LearnableInitialState")
        return jax.tree.map(
            lambda leaf: jnp.broadcast_to(leaf, (*batch_shape, *leaf.shape)),
            self._tree(),
        )


class RNN(nnx.Module):
    """One recurrent layer over a batch-major padded sequence.

    A thin module over :func:`seqmask.rnn`: ``module(xs, ...)`` equals
    ``seqmask.rnn(module.pure_cell, module.pure_params(), xs, ...)``.
    Parameters: ``cell.<name>`` for every entry of the cell's parameter dict
    (``input_kernel``, ``recurrent_kernel``, ``bias`` for an LSTM) and, with a
    learnable initial state, ``initial_carry.<leaf>`` (``h`` and ``c`` for an
    LSTM, ``h`` for a GRU); see :class:`LearnableInitialState`.

    Args:
      in_features: the feature size ``I`` of the inputs.
      hidden_size: ``H``; checked against ``cell.hidden_size`` when ``cell``
        is a :class:`~seqmask.cells.Cell`.
      cell: ``"lstm"``, ``"gru"``, ``"simple_rnn"`` or a
        :class:`seqmask.cells.Cell`.
      cell_kwargs: keyword arguments for the cell factory when ``cell`` is a
        name (e.g. ``{"forget_bias": 0.0}``).
      learnable_initial_state: whether rows start (and are reset) from a
        trained carry instead of the cell's zero carry.
      carry_init: initialiser of the learned carry.
      rngs: ``nnx.Rngs``; the ``params`` stream initialises the parameters.

    Attributes:
      pure_cell: the :class:`~seqmask.cells.Cell` the module runs (wrapped by
        :func:`seqmask.cells.learnable_initial_state` when the initial state
        is learned).
      out_features: the feature size of the outputs.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> import seqmask.nnx
      >>> rnn = seqmask.nnx.RNN(3, 4, cell="gru", learnable_initial_state=True,
      ...                       rngs=nnx.Rngs(0))
      >>> xs, lengths = jnp.ones((2, 5, 3)), jnp.array([5, 0])
      >>> h, ys = rnn(xs, lengths=lengths)
      >>> ys.shape, h.shape
      ((2, 5, 4), (2, 4))
      >>> bool(jnp.all(h[1] == rnn.initial_carry.h[...]))  # empty row
      True
      >>> _, pure_ys = seqmask.rnn(rnn.pure_cell, rnn.pure_params(), xs,
      ...                          lengths=lengths)
      >>> bool(jnp.all(pure_ys == ys))
      True
    """

    def __init__(
        self,
        in_features: int,
        hidden_size: int,
        *,
        cell: str | Cell = "lstm",
        cell_kwargs: Mapping[str, Any] | None = None,
        learnable_initial_state: bool = False,
        carry_init: Initializer = _ZEROS,
        rngs: nnx.Rngs,
    ):
        where = "RNN"
        base = _resolve_cell(cell, hidden_size, cell_kwargs, where)
        self.in_features = _check_size(in_features, f"{where}: in_features")
        self.hidden_size = hidden_size
        self.cell = _NamedLeaves(
            base.init(rngs.params(), in_features),
            single_name="params",
            where=where,
        )
        if learnable_initial_state:
            self.initial_carry = LearnableInitialState(
                base, carry_init=carry_init, rngs=rngs
            )
            self.pure_cell = _with_learned_carry(base, carry_init)
        else:
            self.initial_carry = None
            self.pure_cell = base
        self.out_features = _output_size(
            self.pure_cell, self.pure_params(), in_features
        )

    def pure_params(self) -> Params:
        """The parameter pytree that ``seqmask.rnn(self.pure_cell, ...)`` takes.

        Returns:
          The cell's parameter dict, or ``{"cell": ..., "initial_carry": ...}``
          with a learnable initial state.
        """
        params = self.cell._tree()
        if self.initial_carry is None:
            return params
        return {"cell": params, "initial_carry": self.initial_carry(())}

    def initial_state(self, batch_shape: int | Sequence[int] = ()) -> Carry:
        """The carry a row starts from (and is reset to): learned or zeros.

        Args:
          batch_shape: the batch axes.

        Returns:
          The carry, every leaf ``[*batch_shape, ...]``.
        """
        batch_shape = _batch_shape(batch_shape, "RNN.initial_state")
        return self.pure_cell.initial_carry(self.pure_params(), batch_shape)

    def __call__(
        self,
        xs,
        *,
        mask=None,
        lengths=None,
        initial_carry: Carry | None = None,
        resets=None,
        reverse: bool = False,
    ) -> tuple[Carry, jax.Array]:
        """Run the layer; see :func:`seqmask.rnn` for the semantics.

        Args:
          xs: ``[*batch, time, in_features]``.
          mask: boolean ``[*batch, time]``, true at valid steps (any pattern).
          lengths: alternative to ``mask``: integers ``[*batch]``.
          initial_carry: the carry to start from (e.g. the final carry of the
            previous chunk); default: :meth:`initial_state`.
          resets: boolean ``[*batch, time]``; where true the row is reset to
            :meth:`initial_state` (the learned carry, if any) before the step.
          reverse: run from each row's last valid step to its first.

        Returns:
          ``(final_carry, ys)``: leaves ``[*batch, ...]`` and
          ``[*batch, time, out_features]``, zero at padded steps.
        """
        xs = _check_inputs(xs, self.in_features, "RNN")
        return _layers.rnn(
            self.pure_cell,
            self.pure_params(),
            xs,
            mask=mask,
            lengths=lengths,
            initial_carry=initial_carry,
            resets=resets,
            reverse=reverse,
        )


class Bidirectional(nnx.Module):
    """A forward and a backward :class:`RNN` over the same padded sequences.

    A thin module over :func:`seqmask.bidirectional`; parameters live in
    ``forward`` and ``backward`` (``bi.forward.cell.input_kernel``, ...). The
    backward direction visits exactly each row's valid steps, last to first,
    for any mask.

    Args:
      in_features, hidden_size, cell, cell_kwargs, learnable_initial_state,
        carry_init: as :class:`RNN` (both directions get their own
        parameters and, if learned, their own initial state).
      merge: ``"concat"`` (features ``[forward, backward]``), ``"sum"`` or
        ``"none"`` (return the pair of outputs).
      rngs: ``nnx.Rngs``.

    Attributes:
      out_features: the feature size of the merged outputs (of each
        direction for ``merge="none"``).

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> import seqmask.nnx
      >>> bi = seqmask.nnx.Bidirectional(3, 4, rngs=nnx.Rngs(0))
      >>> (fwd, bwd), ys = bi(jnp.ones((2, 5, 3)), lengths=jnp.array([5, 2]))
      >>> ys.shape, bi.out_features
      ((2, 5, 8), 8)
    """

    def __init__(
        self,
        in_features: int,
        hidden_size: int,
        *,
        cell: str | Cell = "lstm",
        cell_kwargs: Mapping[str, Any] | None = None,
        merge: str = "concat",
        learnable_initial_state: bool = False,
        carry_init: Initializer = _ZEROS,
        rngs: nnx.Rngs,
    ):
        where = "Bidirectional"
        base = _resolve_cell(cell, hidden_size, cell_kwargs, where)
        if merge not in _MERGES:
            raise ValueError(f"{where}: merge must be one of {_MERGES}; got {merge!r}.")
        options = {
            "cell": base,
            "learnable_initial_state": learnable_initial_state,
            "carry_init": carry_init,
            "rngs": rngs,
        }
        self.forward = RNN(in_features, hidden_size, **options)
        self.backward = RNN(in_features, hidden_size, **options)
        self.merge = merge
        self.in_features = self.forward.in_features
        size = self.forward.out_features
        self.out_features = 2 * size if merge == "concat" else size

    def pure_params(self) -> Params:
        """``{"forward": ..., "backward": ...}`` for :func:`seqmask.bidirectional`."""
        return {
            "forward": self.forward.pure_params(),
            "backward": self.backward.pure_params(),
        }

    def __call__(
        self,
        xs,
        *,
        mask=None,
        lengths=None,
        initial_carry: tuple[Carry, Carry] | None = None,
    ) -> tuple[tuple[Carry, Carry], Any]:
        """Run both directions; see :func:`seqmask.bidirectional`.

        Args:
          xs: ``[*batch, time, in_features]``.
          mask, lengths: as :meth:`RNN.__call__`.
          initial_carry: ``(forward_carry, backward_carry)`` or None (each
            direction's :meth:`RNN.initial_state`).

        Returns:
          ``((forward_carry, backward_carry), ys)`` with ``ys``
          ``[*batch, time, out_features]`` (a pair for ``merge="none"``); the
          backward carry is the state after each row's first valid step.
        """
        xs = _check_inputs(xs, self.in_features, "Bidirectional")
        return _layers.bidirectional(
            self.forward.pure_cell,
            self.pure_params(),
            xs,
            mask=mask,
            lengths=lengths,
            initial_carry=initial_carry,
            merge=self.merge,
            backward_cell=self.backward.pure_cell,
        )


class Stacked(nnx.Module):
    """Several recurrent layers, with dropout between them.

    A thin module over :func:`seqmask.stacked`; layer ``k``'s parameters live
    in ``layers[k]`` (``stacked.layers[0].cell.input_kernel``, ...). Dropout
    on the outputs of every layer but the last follows ``nnx.Dropout``: it is
    active unless ``deterministic`` (set at construction, by
    ``model.eval()`` / ``model.train()``, by ``nnx.view`` or per call), and
    its keys come from the ``dropout`` stream of the ``rngs`` given at
    construction (the ``default`` stream if there is none), forked into the
    module so that ``nnx.jit`` advances it.

    Args:
      in_features: the feature size of the first layer's inputs.
      hidden_size: ``H`` of every layer.
      num_layers: the number of layers.
      cell, cell_kwargs, learnable_initial_state, carry_init: as
        :class:`RNN`, for every layer (each layer learns its own initial
        state).
      bidirectional: whether every layer is :class:`Bidirectional`.
      merge: ``"concat"`` or ``"sum"`` for bidirectional layers.
      dropout_rate: the probability of dropping an output unit between
        layers, in ``[0, 1)``.
      residual: add each layer's input to its output from the second layer
        on.
      deterministic: whether dropout is off by default.
      rngs: ``nnx.Rngs``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> import seqmask.nnx
      >>> model = seqmask.nnx.Stacked(3, 4, 2, cell="gru", dropout_rate=0.5,
      ...                             rngs=nnx.Rngs(0))
      >>> xs, lengths = jnp.ones((2, 5, 3)), jnp.array([5, 1])
      >>> carries, ys = model(xs, lengths=lengths)       # dropout on
      >>> model.eval()
      >>> carries, ys_eval = model(xs, lengths=lengths)  # dropout off
      >>> len(carries), ys.shape, bool(jnp.all(ys == ys_eval))
      (2, (2, 5, 4), False)
    """

    def __init__(
        self,
        in_features: int,
        hidden_size: int,
        num_layers: int,
        *,
        cell: str | Cell = "lstm",
        cell_kwargs: Mapping[str, Any] | None = None,
        bidirectional: bool = False,
        merge: str = "concat",
        dropout_rate: float = 0.0,
        residual: bool = False,
        learnable_initial_state: bool = False,
        carry_init: Initializer = _ZEROS,
        deterministic: bool = False,
        rngs: nnx.Rngs,
    ):
        where = "Stacked"
        base = _resolve_cell(cell, hidden_size, cell_kwargs, where)
        num_layers = _check_size(num_layers, f"{where}: num_layers")
        if merge not in ("concat", "sum"):
            raise ValueError(
                f"{where}: merge must be 'concat' or 'sum'; got {merge!r}."
            )
        if not 0.0 <= dropout_rate < 1.0:
            raise ValueError(
                f"{where}: dropout_rate must be in [0, 1); got {dropout_rate}."
            )
        if dropout_rate > 0.0 and "dropout" not in rngs and "default" not in rngs:
            raise ValueError(
                f"{where}: dropout_rate={dropout_rate} needs a 'dropout' (or "
                f"'default') stream in rngs; got streams {sorted(rngs)}."
            )
        options = {
            "cell": base,
            "learnable_initial_state": learnable_initial_state,
            "carry_init": carry_init,
            "rngs": rngs,
        }
        layers: list[RNN | Bidirectional] = []
        size = in_features
        for _ in range(num_layers):
            layer = (
                Bidirectional(size, hidden_size, merge=merge, **options)
                if bidirectional
                else RNN(size, hidden_size, **options)
            )
            layers.append(layer)
            size = layer.out_features
        self.layers = nnx.List(layers)
        self.in_features = layers[0].in_features
        self.out_features = size
        self.bidirectional = bidirectional
        self.merge = merge
        self.dropout_rate = dropout_rate
        self.residual = residual
        self.deterministic = deterministic
        # Forked as nnx.Dropout does: the module owns a stream whose count
        # nnx.jit carries across calls, so each training step draws new keys.
        self.dropout_rngs = rngs["dropout"].fork() if dropout_rate > 0.0 else None

    def pure_params(self) -> list[Params]:
        """The per-layer parameter list that :func:`seqmask.stacked` takes."""
        return [layer.pure_params() for layer in self.layers]

    def pure_cells(self) -> list[Cell]:
        """The per-layer cells that :func:`seqmask.stacked` takes."""
        return [
            layer.forward.pure_cell
            if isinstance(layer, Bidirectional)
            else layer.pure_cell
            for layer in self.layers
        ]

    def set_view(self, deterministic: bool | None = None) -> None:
        """Used by ``nnx.view``: switch dropout off (True) or on (False)."""
        if deterministic is not None:
            self.deterministic = deterministic

    def __call__(
        self,
        xs,
        *,
        mask=None,
        lengths=None,
        initial_carries: Sequence[Carry | None] | None = None,
        resets=None,
        deterministic: bool | None = None,
    ) -> tuple[list[Carry], jax.Array]:
        """Run every layer; see :func:`seqmask.stacked`.

        Args:
          xs: ``[*batch, time, in_features]``.
          mask, lengths: as :meth:`RNN.__call__`.
          initial_carries: one carry (or None) a layer; ``(forward, backward)``
            pairs for bidirectional layers.
          resets: as :meth:`RNN.__call__`, in every layer (unidirectional
            only).
          deterministic: overrides the module's ``deterministic`` for this
            call.

        Returns:
          ``(carries, ys)``: the per-layer final carries and the last layer's
          outputs ``[*batch, time, out_features]``, zero at padded steps.
        """
        xs = _check_inputs(xs, self.in_features, "Stacked")
        deterministic = self.deterministic if deterministic is None else deterministic
        dropout_key = None
        if self.dropout_rngs is not None and not deterministic:
            dropout_key = self.dropout_rngs()
        return _layers.stacked(
            self.pure_cells(),
            self.pure_params(),
            xs,
            mask=mask,
            lengths=lengths,
            initial_carries=initial_carries,
            resets=resets,
            bidirectional=self.bidirectional,
            merge=self.merge,
            dropout_rate=self.dropout_rate,
            dropout_key=dropout_key,
            residual=self.residual,
        )
