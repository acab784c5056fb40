"""Flax Linen modules over seqmask's pure recurrent layers.

For code bases on Linen. Each module creates, with ``self.param`` and the
cell's own ``init``, exactly the parameter pytree a pure seqmask function
takes (``params["cell"]`` is the cell's dict, ``params["initial_carry"]``
holds the learned carry by leaf name: ``h`` and ``c`` for an LSTM), then
calls :func:`seqmask.rnn`, :func:`seqmask.bidirectional` or
:func:`seqmask.stacked` with it. The time loop is the core's
``jax.lax.scan``: there is no ``nn.scan`` and no other lifted transform, so
``model.apply`` equals the pure function called with the model's parameters,
and the modules run under ``jax.jit`` and ``jax.grad`` like any function of
their variables. Input sizes are inferred at ``init``, the Linen way; dropout
between stacked layers draws from the ``dropout`` RNG stream
(``self.make_rng("dropout")``) unless ``deterministic``. Importing this
module imports flax; ``import seqmask`` does not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from seqmask import layers as _layers
from seqmask._modules import (
    _MERGES,
    _batch_shape,
    _carry_template,
    _check_cell_record,
    _check_size,
    _leaf_names,
    _output_size,
    _resolve_cell,
    _with_learned_carry,
)
from seqmask.cells import Cell

__all__ = ["LearnableInitialState", "RNN", "Bidirectional", "Stacked"]

Carry = Any
Params = Any
Initializer = Callable[..., jax.Array]

_ZEROS: Initializer = jax.nn.initializers.zeros


class LearnableInitialState(nn.Module):
    """A trained initial carry for ``cell``, broadcast to any batch shape.

    One parameter per carry leaf, named by its pytree path (``h`` and ``c``
    for an :class:`~seqmask.cells.LSTMCarry`; a carry that is one array, as
    a GRU's, is ``h``), each of the unbatched leaf's shape. Every row that
    starts from the broadcast carry sends gradient to it; rows given another
    carry and never reset send exactly none. With the pure core, pass
    ``initial_carry=`` and ``reset_to=`` the result (see
    :func:`seqmask.rnn`); :class:`RNN` does both when
    ``learnable_initial_state=True``.

    Attributes:
      cell: a :class:`seqmask.cells.Cell`; only its carry structure, shapes
        and dtypes are used.
      carry_init: initialiser ``(key, shape, dtype) -> array`` of each leaf.

    Examples:
      >>> import jax
      >>> import seqmask.linen
      >>> state = seqmask.linen.LearnableInitialState(seqmask.cells.lstm(3))
      >>> carry, variables = state.init_with_output(jax.random.key(0), (2, 5))
      >>> carry.h.shape, variables["params"]["c"].shape
      ((2, 5, 3), (3,))
    """

    cell: Cell
    carry_init: Initializer = _ZEROS

    @nn.compact
    def __call__(self, batch_shape: int | Sequence[int] = ()) -> Carry:
        """The learned carry broadcast over ``batch_shape``.

        Args:
          batch_shape: leading axes to add (an int or a sequence of ints);
            ``()`` gives the unbatched carry itself.

        Returns:
          The carry, every leaf ``[*batch_shape, *leaf_shape]``.
        """
        where = "LearnableInitialState"
        _check_cell_record(self.cell, where)
        batch_shape = _batch_shape(batch_shape, where)
        template = _carry_template(self.cell)
        leaves, treedef = jax.tree.flatten(template)
        names = _leaf_names(template, "h", where)
        learned = [
            self.param(name, self.carry_init, leaf.shape, leaf.dtype)
            for name, leaf in zip(names, leaves, strict=True)
        ]
        return jax.tree.map(
            lambda leaf: jnp.broadcast_to(leaf, (*batch_shape, *leaf.shape)),
            jax.tree.unflatten(treedef, learned),
        )


class RNN(nn.Module):
    """One recurrent layer over a batch-major padded sequence.

    A thin module over :func:`seqmask.rnn`: ``model.apply(variables, xs,
    ...)`` equals ``seqmask.rnn(model.pure_cell, params, xs, ...)`` with
    ``params = model.apply(variables, in_features, method="pure_params")``.
    Parameters: ``cell`` (the cell's parameter dict: ``input_kernel``,
    ``recurrent_kernel``, ``bias`` for an LSTM) and, with a learnable initial
    state, ``initial_carry/<leaf>`` (see :class:`LearnableInitialState`).
    ``model.init(key, in_features, method="pure_params")`` creates the same
    variables as ``model.init(key, xs)`` without running the layer.

    Attributes:
      hidden_size: ``H``; checked against ``cell.hidden_size`` when ``cell``
        is a :class:`~seqmask.cells.Cell`.
      cell: ``"lstm"``, ``"gru"``, ``"simple_rnn"`` or a
        :class:`seqmask.cells.Cell`.
      cell_kwargs: keyword arguments for the cell factory when ``cell`` is a
        name (e.g. ``{"forget_bias": 0.0}``).
      learnable_initial_state: whether rows start (and are reset) from a
        trained carry instead of the cell's zero carry.
      carry_init: initialiser of the learned carry.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import seqmask.linen
      >>> model = seqmask.linen.RNN(4, cell="gru", learnable_initial_state=True)
      >>> xs, lengths = jnp.ones((2, 5, 3)), jnp.array([5, 0])
      >>> variables = model.init(jax.random.key(0), xs, lengths=lengths)
      >>> sorted(variables["params"]), sorted(variables["params"]["cell"])[:2]
      (['cell', 'initial_carry'], ['input_bias', 'input_kernel'])
      >>> h, ys = model.apply(variables, xs, lengths=lengths)
      >>> ys.shape, h.shape
      ((2, 5, 4), (2, 4))
      >>> params = model.apply(variables, 3, method="pure_params")
      >>> _, pure_ys = seqmask.rnn(model.pure_cell, params, xs, lengths=lengths)
      >>> bool(jnp.all(pure_ys == ys))
      True
    """

    hidden_size: int
    cell: str | Cell = "lstm"
    cell_kwargs: Mapping[str, Any] | None = None
    learnable_initial_state: bool = False
    carry_init: Initializer = _ZEROS

    @property
    def pure_cell(self) -> Cell:
        """The :class:`~seqmask.cells.Cell` the module runs (wrapped by
        :func:`seqmask.cells.learnable_initial_state` if the state is learned)."""
        base = _resolve_cell(self.cell, self.hidden_size, self.cell_kwargs, "RNN")
        if self.learnable_initial_state:
            return _with_learned_carry(base, self.carry_init)
        return base

    @nn.compact
    def pure_params(self, in_features: int) -> Params:
        """The parameter pytree that ``seqmask.rnn(self.pure_cell, ...)`` takes.

        Args:
          in_features: the feature size of the inputs (fixes the shapes at
            ``init``).

        Returns:
          The cell's parameter dict, or ``{"cell": ..., "initial_carry": ...}``
          with a learnable initial state.
        """
        base = _resolve_cell(self.cell, self.hidden_size, self.cell_kwargs, "RNN")
        in_features = _check_size(in_features, "RNN: in_features")
        params = self.param("cell", base.init, in_features)
        if not self.learnable_initial_state:
            return params
        learned = LearnableInitialState(base, self.carry_init, name="initial_carry")
        return {"cell": params, "initial_carry": learned(())}

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
            previous chunk); default: the learned carry, or zeros.
          resets: boolean ``[*batch, time]``; where true the row is reset to
            the learned carry (zeros without one) before the step.
          reverse: run from each row's last valid step to its first.

        Returns:
          ``(final_carry, ys)``: leaves ``[*batch, ...]`` and
          ``[*batch, time, out]``, zero at padded steps.
        """
        xs = _inputs(xs, "RNN")
        return _layers.rnn(
            self.pure_cell,
            self.pure_params(xs.shape[-1]),
            xs,
            mask=mask,
            lengths=lengths,
            initial_carry=initial_carry,
            resets=resets,
            reverse=reverse,
        )


class Bidirectional(nn.Module):
    """A forward and a backward :class:`RNN` over the same padded sequences.

    A thin module over :func:`seqmask.bidirectional`; parameters live in the
    submodules ``forward`` and ``backward`` (``params/forward/cell/...``). The
    backward direction visits exactly each row's valid steps, last to first,
    for any mask.

    Attributes:
      hidden_size, cell, cell_kwargs, learnable_initial_state, carry_init: as
        :class:`RNN` (each direction has its own parameters).
      merge: ``"concat"`` (features ``[forward, backward]``), ``"sum"`` or
        ``"none"`` (return the pair of outputs).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import seqmask.linen
      >>> model = seqmask.linen.Bidirectional(4)
      >>> xs = jnp.ones((2, 5, 3))
      >>> ((fwd, bwd), ys), variables = model.init_with_output(
      ...     jax.random.key(0), xs, lengths=jnp.array([5, 2]))
      >>> ys.shape, sorted(variables["params"])
      ((2, 5, 8), ['backward', 'forward'])
    """

    hidden_size: int
    cell: str | Cell = "lstm"
    cell_kwargs: Mapping[str, Any] | None = None
    merge: str = "concat"
    learnable_initial_state: bool = False
    carry_init: Initializer = _ZEROS

    def setup(self):
        if self.merge not in _MERGES:
            raise ValueError(
                f"Bidirectional: merge must be one of {_MERGES}; got {self.merge!r}."
            )
        options = {
            "hidden_size": self.hidden_size,
            "cell": self.cell,
            "cell_kwargs": self.cell_kwargs,
            "learnable_initial_state": self.learnable_initial_state,
            "carry_init": self.carry_init,
        }
        self.forward = RNN(**options)
        self.backward = RNN(**options)

    def pure_params(self, in_features: int) -> Params:
        """``{"forward": ..., "backward": ...}`` for :func:`seqmask.bidirectional`."""
        return {
            "forward": self.forward.pure_params(in_features),
            "backward": self.backward.pure_params(in_features),
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
          initial_carry: ``(forward_carry, backward_carry)`` or None.

        Returns:
          ``((forward_carry, backward_carry), ys)``; ``ys`` is
          ``[*batch, time, out]`` (a pair for ``merge="none"``) and the
          backward carry is the state after each row's first valid step.
        """
        xs = _inputs(xs, "Bidirectional")
        return _layers.bidirectional(
            self.forward.pure_cell,
            self.pure_params(xs.shape[-1]),
            xs,
            mask=mask,
            lengths=lengths,
            initial_carry=initial_carry,
            merge=self.merge,
            backward_cell=self.backward.pure_cell,
        )


class Stacked(nn.Module):
    """Several recurrent layers, with dropout between them.

    A thin module over :func:`seqmask.stacked`; layer ``k`` is the submodule
    ``layers_k`` (``params/layers_0/cell/...``). Dropout on the outputs of
    every layer but the last is on unless ``deterministic=True`` is passed,
    and draws its key with ``self.make_rng("dropout")``, so training needs
    ``rngs={"dropout": key}`` in ``apply``.

    Attributes:
      hidden_size: ``H`` of every layer.
      num_layers: the number of layers.
      cell, cell_kwargs, learnable_initial_state, carry_init: as :class:`RNN`,
        for every layer (each layer learns its own initial state).
      bidirectional: whether every layer is :class:`Bidirectional`.
      merge: ``"concat"`` or ``"sum"`` for bidirectional layers.
      dropout_rate: the probability of dropping an output unit between
        layers, in ``[0, 1)``.
      residual: add each layer's input to its output from the second layer
        on.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import seqmask.linen
      >>> model = seqmask.linen.Stacked(4, 2, cell="gru", dropout_rate=0.5)
      >>> xs, lengths = jnp.ones((2, 5, 3)), jnp.array([5, 1])
      >>> variables = model.init(jax.random.key(0), xs, deterministic=True)
      >>> _, ys = model.apply(variables, xs, lengths=lengths, deterministic=False,
      ...                     rngs={"dropout": jax.random.key(1)})
      >>> _, ys_eval = model.apply(variables, xs, lengths=lengths,
      ...                          deterministic=True)
      >>> ys.shape, bool(jnp.all(ys == ys_eval))
      ((2, 5, 4), False)
    """

    hidden_size: int
    num_layers: int
    cell: str | Cell = "lstm"
    cell_kwargs: Mapping[str, Any] | None = None
    bidirectional: bool = False
    merge: str = "concat"
    dropout_rate: float = 0.0
    residual: bool = False
    learnable_initial_state: bool = False
    carry_init: Initializer = _ZEROS

    def setup(self):
        where = "Stacked"
        _check_size(self.num_layers, f"{where}: num_layers")
        if self.merge not in ("concat", "sum"):
            raise ValueError(
                f"{where}: merge must be 'concat' or 'sum'; got {self.merge!r}."
            )
        if not 0.0 <= self.dropout_rate < 1.0:
            raise ValueError(
                f"{where}: dropout_rate must be in [0, 1); got {self.dropout_rate}."
            )
        options = {
            "hidden_size": self.hidden_size,
            "cell": self.cell,
            "cell_kwargs": self.cell_kwargs,
            "learnable_initial_state": self.learnable_initial_state,
            "carry_init": self.carry_init,
        }
        if self.bidirectional:
            self.layers = [
                Bidirectional(merge=self.merge, **options)
                for _ in range(self.num_layers)
            ]
        else:
            self.layers = [RNN(**options) for _ in range(self.num_layers)]

    def pure_cells(self) -> list[Cell]:
        """The per-layer cells that :func:`seqmask.stacked` takes."""
        return [_layer_cell(layer) for layer in self.layers]

    def pure_params(self, in_features: int) -> list[Params]:
        """The per-layer parameter list that :func:`seqmask.stacked` takes.

        Args:
          in_features: the feature size of the first layer's inputs.
        """
        params = []
        size = in_features
        for layer in self.layers:
            layer_params = layer.pure_params(size)
            params.append(layer_params)
            if isinstance(layer, Bidirectional):
                out = _output_size(_layer_cell(layer), layer_params["forward"], size)
                size = 2 * out if self.merge == "concat" else out
            else:
                size = _output_size(_layer_cell(layer), layer_params, size)
        return params

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
          deterministic: False applies dropout (with a key from
            ``make_rng("dropout")``), True does not. Required when
            ``dropout_rate > 0``.

        Returns:
          ``(carries, ys)``: the per-layer final carries and the last layer's
          outputs ``[*batch, time, out]``, zero at padded steps.
        """
        xs = _inputs(xs, "Stacked")
        dropout_key = None
        if self.dropout_rate > 0.0:
            if deterministic is None:
                raise ValueError(
                    f"Stacked: dropout_rate={self.dropout_rate} needs deterministic="
                    "False (training; pass rngs={'dropout': key} to apply) or True "
                    "(evaluation); got None."
                )
            if not deterministic:
                dropout_key = self.make_rng("dropout")
        return _layers.stacked(
            self.pure_cells(),
            self.pure_params(xs.shape[-1]),
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


def _layer_cell(layer: RNN | Bidirectional) -> Cell:
    return (
        layer.forward.pure_cell if isinstance(layer, Bidirectional) else layer.pure_cell
    )


def _inputs(xs, where: str) -> jax.Array:
    """``xs`` as an array with a time and a feature axis."""
    xs = jnp.asarray(xs)
    if xs.ndim < 2:
        raise ValueError(
            f"{where}: xs must be [*batch, time, features]; got shape "
            f"{tuple(xs.shape)}."
        )
    return xs
