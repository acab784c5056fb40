"""The learned initial carry of a recurrent module: :class:`LearnableInitialState`."""

from __future__ import annotations

from collections.abc import Sequence

import jax
from flax import nnx

import seqmask._checks as _checks
import seqmask._modules as _modules
from seqmask._modules import Carry, Initializer
from seqmask.cells import Cell
from seqmask.nnx._named import _NamedLeaves

__all__ = ["LearnableInitialState"]

_STATE = "seqmask.nnx.LearnableInitialState"


class LearnableInitialState(_NamedLeaves):
    """A trained initial carry for ``cell``, broadcast to any batch shape.

    The carry has the structure of ``cell``'s (for :func:`seqmask.cells.lstm`
    an :class:`~seqmask.cells.LSTMCarry` ``(h, c)``, for ``gru`` a single
    array) without batch axes; each leaf is an ``nnx.Param`` named by its
    pytree path (a carry that is one array is named ``h``; Flax's tuple
    ``(c, h)`` gives ``carry_0``, ``carry_1``). Calling the module broadcasts
    it over a batch, so every row that starts from it sends gradient to it,
    and rows that do not (given another carry, never reset) send exactly
    none.

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
      in_features: the input size the carry's shapes are traced with (only
        cells whose parameters are fixed to one input size, such as a Flax
        cell through :func:`seqmask.nnx.as_cell`, need the true one).
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
        carry_init: Initializer = _modules.ZEROS,
        in_features: int = 1,
        rngs: nnx.Rngs,
    ):
        where = _STATE
        cell = _modules.check_cell_record(cell, where)
        carry_init = _modules.check_carry_init(carry_init, where)
        in_features = _checks.positive_int(in_features, "in_features", where)
        template = _modules.carry_template(cell, in_features)
        leaves, treedef = jax.tree.flatten(template)
        keys = jax.random.split(param_key(rngs, where), max(len(leaves), 1))
        learned = [
            carry_init(key, leaf.shape, leaf.dtype)
            for key, leaf in zip(keys, leaves, strict=False)
        ]
        super().__init__(
            jax.tree.unflatten(treedef, learned), single_name="h", where=where
        )

    def __call__(self, batch_shape: int | Sequence[int] = ()) -> Carry:
        """The learned carry (the module's ``nnx.Param`` leaves) broadcast
        over ``batch_shape``, so that gradients reach it from every row.

        Args:
          batch_shape: leading axes to add (an int or a sequence of ints);
            ``()`` gives the unbatched carry itself.

        Returns:
          The carry, every leaf ``[*batch_shape, *leaf_shape]``.
        """
        return _modules.broadcast_learned(self._tree(), batch_shape, _STATE)


def param_rngs(rngs, where: str, purpose: str = "the parameters") -> nnx.Rngs:
    """``rngs`` checked to be an ``nnx.Rngs``, whose params stream
    initialises ``purpose``."""
    if not isinstance(rngs, nnx.Rngs):
        _checks.fail(
            where,
            f"rngs must be an nnx.Rngs (e.g. nnx.Rngs(0)) whose params stream "
            f"initialises {purpose}; got {_checks.describe(rngs)}.",
            TypeError,
        )
    return rngs


def param_key(rngs, where: str) -> jax.Array:
    """A key from the params stream of ``rngs`` (checked, with its fallback,
    the default stream)."""
    rngs = param_rngs(rngs, where)
    if "params" not in rngs and "default" not in rngs:
        _checks.fail(
            where,
            "rngs needs a 'params' (or 'default') stream to initialise the "
            "parameters, e.g. nnx.Rngs(0) or nnx.Rngs(params=0, dropout=1); got "
            f"streams {sorted(rngs)}.",
        )
    return rngs.params()
