"""NNX's ``Stacked``: several recurrent layers over :func:`seqmask.stacked`."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

import seqmask._checks as _checks
import seqmask._modules as _modules
from seqmask import layers as _layers
from seqmask._modules import Carry, Initializer, Params
from seqmask.cells import Cell
from seqmask.nnx._named import _NamedLeaves
from seqmask.nnx._state import param_key, param_rngs

__all__ = ["Stacked"]

_STACKED = "seqmask.nnx.Stacked"


class Stacked(nnx.Module):
    """Several recurrent layers, with dropout between them.

    A thin module over :func:`seqmask.stacked` (Flax has no counterpart).
    The parameters are made by :func:`seqmask.init_stacked` and layer ``k``'s
    are held in ``layers[k]``, named as their pytree: ``layers[0].bias``,
    ``layers[0].forward.bias`` for bidirectional layers,
    ``layers[0].cell.bias`` and ``layers[0].initial_carry`` (an array, or
    ``.h`` and ``.c`` for an :class:`~seqmask.cells.LSTMCarry`) with a
    learnable initial state. Dropout on the outputs of every layer but the
    last follows ``nnx.Dropout``: it is active unless ``deterministic`` (set
    at construction, by ``model.eval()`` / ``model.train()``, by ``nnx.view``
    or per call), and its keys come from the ``dropout`` stream of the
    ``rngs`` given at construction (the ``default`` stream if there is none),
    forked into the module so that ``nnx.jit`` advances it.

    Args:
      cell: a :class:`seqmask.cells.Cell` for every layer, or a sequence with
        one cell a layer.
      num_layers: the number of layers (for a single cell).
      in_features: the feature size of the first layer's inputs.
      bidirectional, merge, dropout_rate, residual: as
        :func:`seqmask.stacked`.
      learnable_initial_state: whether each layer (each direction) starts
        from its own trained carry.
      carry_init: initialiser of the learned carries.
      deterministic: whether dropout is off by default.
      rngs: ``nnx.Rngs``; ``params`` initialises, ``dropout`` drops.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> import seqmask.nnx
      >>> model = seqmask.nnx.Stacked(seqmask.cells.gru(4), 2, in_features=3,
      ...                             dropout_rate=0.5, rngs=nnx.Rngs(0))
      >>> xs, lengths = jnp.ones((2, 5, 3)), jnp.array([5, 1])
      >>> carries, ys = model(xs, seq_lengths=lengths)       # dropout on
      >>> model.eval()
      >>> carries, ys_eval = model(xs, seq_lengths=lengths)  # dropout off
      >>> len(carries), ys.shape, bool(jnp.all(ys == ys_eval))
      (2, (2, 5, 4), False)
    """

    def __init__(
        self,
        cell: Cell | Sequence[Cell],
        num_layers: int | None = None,
        *,
        in_features: int,
        bidirectional: bool = False,
        merge: str = "concat",
        dropout_rate: float = 0.0,
        residual: bool = False,
        learnable_initial_state: bool = False,
        carry_init: Initializer = _modules.ZEROS,
        deterministic: bool = False,
        rngs: nnx.Rngs,
    ):
        where = _STACKED
        cells = _modules.layer_cells(
            cell,
            num_layers,
            where,
            learnable_initial_state=learnable_initial_state,
            carry_init=carry_init,
        )
        in_features = _checks.positive_int(in_features, "in_features", where)
        options = _modules.stacked_options(
            where, bidirectional, merge, dropout_rate, residual
        )
        param_rngs(rngs, where)
        if dropout_rate > 0 and "dropout" not in rngs and "default" not in rngs:
            _checks.fail(
                where,
                f"dropout_rate={dropout_rate} needs a 'dropout' (or 'default') "
                f"stream in rngs; got streams {sorted(rngs)}.",
            )
        params = _layers.init_stacked(
            param_key(rngs, where),
            cells,
            in_features,
            bidirectional=bidirectional,
            merge=merge,
        )
        self.layers = nnx.List(
            [
                _NamedLeaves(layer, single_name="params", where=where, nest=True)
                for layer in params
            ]
        )
        self._cells = tuple(cells)
        self.in_features = in_features
        self.bidirectional, self.merge, self.dropout_rate, self.residual = options
        self.deterministic = _checks.flag(deterministic, "deterministic", where)
        # Forked as nnx.Dropout does: the module owns a stream whose count
        # nnx.jit carries across calls, so each training step draws new keys.
        self.dropout_rngs = rngs["dropout"].fork() if dropout_rate > 0.0 else None
        step = jax.ShapeDtypeStruct((1, 1, in_features), jnp.float32)
        _, ys = jax.eval_shape(lambda xs: self(xs, deterministic=True), step)
        self.out_features = int(ys.shape[-1])

    def pure_params(self) -> list[Params]:
        """The per-layer parameter list that :func:`seqmask.stacked` takes."""
        return [layer._tree() for layer in self.layers]

    def pure_cells(self) -> list[Cell]:
        """The per-layer cells that :func:`seqmask.stacked` takes."""
        return list(self._cells)

    def set_view(self, deterministic: bool | None = None) -> None:
        """Used by ``nnx.view``: switch dropout off (True) or on (False)."""
        if deterministic is not None:
            self.deterministic = deterministic

    def __call__(
        self,
        inputs,
        *,
        initial_carries: Sequence[Carry | None] | None = None,
        seq_lengths=None,
        time_major: bool = False,
        mask=None,
        resets=None,
        skip_padding: bool | int = False,
        deterministic: bool | None = None,
    ) -> tuple[list[Carry], jax.Array]:
        """Run every layer: :func:`seqmask.stacked` with the module's
        ``pure_cells()``, ``pure_params()`` and layer options.

        Args:
          inputs: ``[*batch, time, in_features]`` (time first when
            ``time_major``).
          initial_carries, seq_lengths, time_major, mask, resets,
            skip_padding: as :func:`seqmask.stacked` (``seq_lengths`` is its
            ``lengths``, under Flax's name).
          deterministic: overrides the module's ``deterministic`` for this
            call (True: no dropout).

        Returns:
          ``(carries, ys)``: the per-layer final carries and the last layer's
          outputs ``[*batch, time, out_features]``, zero at padded steps.
        """
        if deterministic is None:
            deterministic = self.deterministic
        deterministic = _checks.flag(deterministic, "deterministic", _STACKED)
        dropout_key = None
        if self.dropout_rngs is not None and not deterministic:
            dropout_key = self.dropout_rngs()
        time_major = _checks.flag(time_major, "time_major", _STACKED)
        call = _modules.RNNCall(
            initial_carries, seq_lengths, mask, resets, skip_padding
        )
        seq = _modules.sequence(inputs, call, time_major, _STACKED)
        if seq.step[-1:] != (self.in_features,):
            _checks.fail(
                _STACKED,
                f"the inputs have {seq.step[-1]} features (their "
                f"last axis), but the module was built for in_features="
                f"{self.in_features}.",
            )
        options = _modules.StackedOptions(
            self.bidirectional, self.merge, self.dropout_rate, self.residual
        )
        params = self.pure_params()
        return _modules.run_stacked(
            self._cells, params, seq, call, options, dropout_key
        )
