"""Linen's ``Stacked``: several recurrent layers over :func:`seqmask.stacked`."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

import seqmask._checks as _checks
import seqmask._modules as _modules
from seqmask import layers as _layers
from seqmask._modules import Carry, Initializer, Params
from seqmask.cells import Cell
from seqmask.linen._cell import checked_param

__all__ = ["Stacked"]

_STACKED = "seqmask.linen.Stacked"


class Stacked(nn.Module):
    """Several recurrent layers, with dropout between them.

    A thin module over :func:`seqmask.stacked` (Flax has no counterpart):
    the parameters are made by :func:`seqmask.init_stacked` and layer ``k``'s
    live under ``params/layers_k`` (``{"forward": ..., "backward": ...}`` for
    bidirectional layers; ``{"cell": ..., "initial_carry": ...}`` with a
    learnable initial state). With ``dropout_rate > 0`` every call says
    whether dropout applies (Flax's convention for ``nn.Dropout``):
    ``deterministic=False`` drops the outputs of every layer but the last,
    with a key from ``self.make_rng("dropout")`` (training needs
    ``rngs={"dropout": key}`` in ``apply``), and ``deterministic=True`` does
    not; leaving it out is a ``ValueError``.

    Attributes:
      cell: a :class:`seqmask.cells.Cell` for every layer, or a sequence
        with one cell a layer (a Flax cell through
        :func:`seqmask.linen.as_cell`).
      num_layers: the number of layers (for a single cell).
      bidirectional, merge, dropout_rate, residual: as
        :func:`seqmask.stacked`.
      learnable_initial_state: whether each layer (each direction) starts
        from its own trained carry.
      carry_init: initialiser of the learned carries.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import seqmask.linen
      >>> model = seqmask.linen.Stacked(seqmask.cells.gru(4), 2, dropout_rate=0.5)
      >>> xs, lengths = jnp.ones((2, 5, 3)), jnp.array([5, 1])
      >>> variables = model.init(jax.random.key(0), xs, deterministic=True)
      >>> _, ys = model.apply(variables, xs, seq_lengths=lengths,
      ...                     deterministic=False,
      ...                     rngs={"dropout": jax.random.key(1)})
      >>> _, ys_eval = model.apply(variables, xs, seq_lengths=lengths,
      ...                          deterministic=True)
      >>> ys.shape, bool(jnp.all(ys == ys_eval)), bool(jnp.all(ys[1, 1:] == 0))
      ((2, 5, 4), False, True)
    """

    cell: Cell | Sequence[Cell]
    num_layers: int | None = None
    bidirectional: bool = False
    merge: str = "concat"
    dropout_rate: float = 0.0
    residual: bool = False
    learnable_initial_state: bool = False
    carry_init: Initializer = _modules.ZEROS

    def pure_cells(self) -> list[Cell]:
        """The per-layer cells that :func:`seqmask.stacked` takes."""
        return _modules.layer_cells(
            self.cell,
            self.num_layers,
            _STACKED,
            learnable_initial_state=self.learnable_initial_state,
            carry_init=self.carry_init,
        )

    def _options(self) -> _modules.StackedOptions:
        return _modules.stacked_options(
            _STACKED, self.bidirectional, self.merge, self.dropout_rate, self.residual
        )

    @nn.compact
    def pure_params(self, in_features: int) -> list[Params]:
        """The per-layer parameter list that :func:`seqmask.stacked` takes.

        Args:
          in_features: the feature size of the first layer's inputs.
        """
        cells = self.pure_cells()
        options = self._options()
        in_features = _checks.positive_int(in_features, "in_features", _STACKED)

        def make(key):
            return _layers.init_stacked(
                key,
                cells,
                in_features,
                bidirectional=options.bidirectional,
                merge=options.merge,
            )

        if self.is_mutable_collection("params") and not self.has_variable(
            "params", "layers_0"
        ):
            layers = make(self.make_rng("params"))
        else:  # only shapes: the values exist
            layers = jax.eval_shape(make, jax.random.key(0))
        # Stored as nested dicts (a learned LSTM carry as {"h", "c"}, as
        # RNN's), handed to the core in the structure it was written for.
        return [
            _modules.from_named_dicts(
                checked_param(
                    self,
                    f"layers_{k}",
                    _maker(_modules.named_dicts(layer, _STACKED)),
                    _STACKED,
                ),
                layer,
                _STACKED,
            )
            for k, layer in enumerate(layers)
        ]

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
        """Run every layer, as :func:`seqmask.stacked` with the module's cells,
        options and parameters.

        Args:
          inputs: ``[*batch, time, in_features]`` (``[time, *batch,
            in_features]`` when time major).
          initial_carries, time_major, mask, resets, skip_padding: as
            :func:`seqmask.stacked`.
          seq_lengths: :func:`seqmask.stacked`'s ``lengths`` (Flax's name).
          deterministic: False applies dropout (with a key from
            ``make_rng("dropout")``), True does not. Required when
            ``dropout_rate > 0``.

        Returns:
          ``(carries, ys)``: the per-layer final carries and the last layer's
          outputs, zero at padded steps.
        """
        time_major = _checks.flag(time_major, "time_major", _STACKED)
        options = self._options()
        call = _modules.RNNCall(
            initial_carries, seq_lengths, mask, resets, skip_padding
        )
        seq = _modules.sequence(inputs, call, time_major, _STACKED)
        if deterministic is not None:
            deterministic = _checks.flag(deterministic, "deterministic", _STACKED)
        dropout_key = None
        if options.dropout_rate > 0:
            if deterministic is None:
                _checks.fail(
                    _STACKED,
                    f"dropout_rate={options.dropout_rate} needs deterministic=False "
                    "(training; pass rngs={'dropout': key} to apply) or True "
                    "(evaluation); got None.",
                )
            if not deterministic:
                dropout_key = self.make_rng("dropout")
        params = self.pure_params(seq.step[-1])
        cells = self.pure_cells()
        return _modules.run_stacked(cells, params, seq, call, options, dropout_key)


def _maker(layer):
    """An init function that gives ``layer`` (zeros of its shapes when it is
    abstract: Flax traces init functions to check the shapes of variables)."""

    def init(_key):
        return jax.tree.map(
            lambda x: (
                jnp.zeros(x.shape, x.dtype)
                if isinstance(x, jax.ShapeDtypeStruct)
                else x
            ),
            layer,
        )

    return init
