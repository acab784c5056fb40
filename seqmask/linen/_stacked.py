"""Linen's ``Stacked``: several recurrent layers over :func:`seqmask.stacked`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from seqmask import _checks, _modules
from seqmask import layers as _layers
from seqmask.cells import Cell
from seqmask.linen._cell import checked_param

__all__ = ["Stacked"]

Carry = Any
Params = Any
Initializer = Callable[..., jax.Array]


class Stacked(nn.Module):
    """Several recurrent layers, with dropout between them.

    A thin module over :func:`seqmask.stacked` (Flax has no counterpart):
    the parameters are made by :func:`seqmask.init_stacked` and layer ``k``'s
    live under ``params/layers_k`` (``{"forward": ..., "backward": ...}`` for
    bidirectional layers; ``{"cell": ..., "initial_carry": ...}`` with a
    learnable initial state). Dropout on the outputs of every layer but the
    last is on unless ``deterministic=True`` is passed, and draws its key
    with ``self.make_rng("dropout")``, so training needs ``rngs={"dropout":
    key}`` in ``apply``.

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
            "Stacked",
            learnable_initial_state=self.learnable_initial_state,
            carry_init=self.carry_init,
        )

    @nn.compact
    def pure_params(self, in_features: int) -> list[Params]:
        """The per-layer parameter list that :func:`seqmask.stacked` takes.

        Args:
          in_features: the feature size of the first layer's inputs.
        """
        cells = self.pure_cells()

        def make(key):
            return _layers.init_stacked(
                key,
                cells,
                in_features,
                bidirectional=self.bidirectional,
                merge=self.merge,
            )

        if self.is_mutable_collection("params") and not self.has_variable(
            "params", "layers_0"
        ):
            layers = make(self.make_rng("params"))
        else:  # only shapes: the values exist
            layers = jax.eval_shape(make, jax.random.key(0))
        return [
            checked_param(self, f"layers_{k}", _maker(layer), "Stacked")
            for k, layer in enumerate(layers)
        ]

    def __call__(
        self,
        inputs,
        *,
        seq_lengths=None,
        mask=None,
        initial_carries: Sequence[Carry | None] | None = None,
        resets=None,
        time_major: bool = False,
        deterministic: bool | None = None,
        skip_padding: bool | int = False,
    ) -> tuple[list[Carry], jax.Array]:
        """Run every layer; see :func:`seqmask.stacked`.

        Args:
          inputs: ``[*batch, time, in_features]`` (``[time, *batch,
            in_features]`` when time major).
          seq_lengths, mask: the valid steps, as :meth:`RNN.__call__`.
          initial_carries: one carry (or None) a layer; ``(forward, backward)``
            pairs for bidirectional layers.
          resets: as :meth:`RNN.__call__`, in every layer (bidirectional
            layers reset their backward direction where each sequence ends).
          time_major: whether time is the leading axis.
          skip_padding: as :func:`seqmask.rnn`, in every layer.
          deterministic: False applies dropout (with a key from
            ``make_rng("dropout")``), True does not. Required when
            ``dropout_rate > 0``.

        Returns:
          ``(carries, ys)``: the per-layer final carries and the last layer's
          outputs, zero at padded steps.
        """
        where = "Stacked"
        step = _modules.step_shape(inputs, 1, time_major, where)
        _checks.in_range(
            self.dropout_rate, "dropout_rate", where, low=0, high=1, high_open=True
        )
        dropout_key = None
        if self.dropout_rate > 0:
            if deterministic is None:
                _checks.fail(
                    where,
                    f"dropout_rate={self.dropout_rate} needs deterministic=False "
                    "(training; pass rngs={'dropout': key} to apply) or True "
                    "(evaluation); got None.",
                )
            if not deterministic:
                dropout_key = self.make_rng("dropout")
        return _modules.run_stacked(
            self,
            self.pure_params(step[-1]),
            inputs,
            dropout_key,
            mask=mask,
            lengths=seq_lengths,
            initial_carries=initial_carries,
            resets=resets,
            time_major=time_major,
            skip_padding=skip_padding,
        )


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
