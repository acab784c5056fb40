"""Layers built from ``rnn``: ``bidirectional`` and ``stacked``, and their inits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from seqmask.cells import Cell
from seqmask.layers._rnn import _check_cell, rnn
from seqmask.masks import resolve_mask

Params = Any
Carry = Any


_MERGES = ("concat", "sum", "none")


def bidirectional(
    cell: Cell,
    params: Params,
    xs,
    *,
    mask=None,
    lengths=None,
    initial_carry: tuple[Carry, Carry] | None = None,
    merge: str = "concat",
    backward_cell: Cell | None = None,
    time_major: bool = False,
    unroll: int | bool = 1,
    remat: bool | int = False,
    hoist: bool | None = None,
) -> tuple[tuple[Carry, Carry], Any]:
    """A forward and a backward :func:`rnn` over the same masked sequences.

    The backward direction visits exactly each row's valid steps, last to
    first, whatever the mask (left padding and holes included); no flipping.
    Its output at step ``t`` sits at position ``t``, next to the forward
    output for the same step.

    Args:
      cell: the forward cell (and the backward one unless ``backward_cell``).
      params: ``{"forward": ..., "backward": ...}`` (see
        :func:`init_bidirectional`).
      xs, mask, lengths, time_major, unroll, remat, hoist: as :func:`rnn`.
      initial_carry: ``(forward_carry, backward_carry)`` or None.
      merge: ``"concat"`` (features ``[fwd, bwd]``), ``"sum"``, or ``"none"``
        (return the pair ``(ys_forward, ys_backward)``).
      backward_cell: a different cell for the backward direction.

    Returns:
      ``((forward_carry, backward_carry), ys)``. The backward carry is the
      state after the *first* valid step of each row.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import seqmask
      >>> cell = seqmask.cells.lstm(4)
      >>> params = seqmask.init_bidirectional(jax.random.key(0), cell, 3)
      >>> mask = jnp.array([[False, True, True], [True, True, True]])
      >>> (fwd, bwd), ys = seqmask.bidirectional(cell, params, jnp.ones((2, 3, 3)),
      ...                                        mask=mask)
      >>> ys.shape
      (2, 3, 8)
    """
    _check_cell(cell, "bidirectional")
    backward_cell = cell if backward_cell is None else backward_cell
    _check_cell(backward_cell, "bidirectional (backward_cell)")
    if merge not in _MERGES:
        raise ValueError(
            f"bidirectional: merge must be one of {_MERGES}; got {merge!r}."
        )
    if not isinstance(params, dict) or set(params) != {"forward", "backward"}:
        got = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise ValueError(
            "bidirectional: params must be a dict with keys 'forward' and 'backward' "
            f"(see seqmask.init_bidirectional); got {got}."
        )
    if initial_carry is None:
        forward_init = backward_init = None
    elif isinstance(initial_carry, tuple) and len(initial_carry) == 2:
        forward_init, backward_init = initial_carry
    else:
        raise ValueError(
            "bidirectional: initial_carry must be a pair (forward_carry, "
            f"backward_carry) or None; got {type(initial_carry).__name__}."
        )
    mask = resolve_mask(xs, mask=mask, lengths=lengths, time_major=time_major)
    forward_carry, forward_ys = rnn(
        cell,
        params["forward"],
        xs,
        mask=mask,
        initial_carry=forward_init,
        time_major=time_major,
        unroll=unroll,
        remat=remat,
        hoist=hoist,
    )
    backward_carry, backward_ys = rnn(
        backward_cell,
        params["backward"],
        xs,
        mask=mask,
        initial_carry=backward_init,
        reverse=True,
        time_major=time_major,
        unroll=unroll,
        remat=remat,
        hoist=hoist,
    )
    return (forward_carry, backward_carry), _merge(forward_ys, backward_ys, merge)


# `stacked` has an argument named `bidirectional`; this name reaches the layer.
_bidirectional_layer = bidirectional


def stacked(
    cells: Cell | Sequence[Cell],
    params: Sequence[Params],
    xs,
    *,
    mask=None,
    lengths=None,
    initial_carries: Sequence[Carry | None] | None = None,
    resets=None,
    bidirectional: bool = False,
    merge: str = "concat",
    dropout_rate: float = 0.0,
    dropout_key: jax.Array | None = None,
    residual: bool = False,
    time_major: bool = False,
    unroll: int | bool = 1,
    remat: bool | int = False,
    hoist: bool | None = None,
) -> tuple[list[Carry], jax.Array]:
    """Several recurrent layers, each reading the previous layer's outputs.

    Args:
      cells: one cell for every layer, or a sequence with one cell a layer.
      params: a sequence of per-layer parameters (see :func:`init_stacked`);
        its length is the number of layers.
      xs, mask, lengths, time_major, unroll, remat, hoist: as :func:`rnn`.
      initial_carries: one carry (or None) a layer; for bidirectional layers
        a ``(forward, backward)`` pair.
      resets: as :func:`rnn`, applied in every layer (unidirectional only).
      bidirectional: whether each layer is a :func:`bidirectional` layer.
      merge: how bidirectional layers merge their directions (``"concat"``
        or ``"sum"``).
      dropout_rate: dropout on the outputs of every layer but the last.
      dropout_key: PRNG key for dropout. Dropout is applied only when a key
        is given (pass None to evaluate).
      residual: add each layer's input to its output (from the second layer
        on; the shapes must agree).

    Returns:
      ``(carries, ys)``: the list of per-layer final carries and the outputs
      of the last layer, zero at padded steps.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import seqmask
      >>> cell = seqmask.cells.gru(6)
      >>> params = seqmask.init_stacked(jax.random.key(0), cell, 3, num_layers=2)
      >>> carries, ys = seqmask.stacked(cell, params, jnp.ones((4, 7, 3)),
      ...                               lengths=jnp.array([7, 3, 0, 1]))
      >>> len(carries), ys.shape
      (2, (4, 7, 6))
    """
    if not isinstance(params, (list, tuple)) or not params:
        raise ValueError(
            "stacked: params must be a non-empty list with one entry a layer (see "
            "seqmask.init_stacked)."
        )
    params = list(params)
    layer_cells = _layer_cells(cells, len(params), "stacked")
    if merge not in ("concat", "sum"):
        raise ValueError(f"stacked: merge must be 'concat' or 'sum'; got {merge!r}.")
    if not 0.0 <= dropout_rate < 1.0:
        raise ValueError(
            f"stacked: dropout_rate must be in [0, 1); got {dropout_rate}."
        )
    if initial_carries is None:
        initial_carries = [None] * len(params)
    elif len(initial_carries) != len(params):
        raise ValueError(
            f"stacked: initial_carries must have one entry a layer ({len(params)}); "
            f"got {len(initial_carries)}."
        )
    if bidirectional and resets is not None:
        raise ValueError(
            "stacked: resets are not supported with bidirectional layers (a reset "
            "marks where a sequence starts, which the backward direction cannot use)."
        )
    xs = jnp.asarray(xs)
    mask = resolve_mask(xs, mask=mask, lengths=lengths, time_major=time_major)
    if not time_major:
        # One transpose in and one out, instead of two around every layer.
        n_batch = xs.ndim - 2
        xs = jnp.moveaxis(xs, n_batch, 0)
        mask = None if mask is None else jnp.moveaxis(mask, -1, 0)
        resets = None if resets is None else jnp.moveaxis(jnp.asarray(resets), -1, 0)
    keys = (
        list(jax.random.split(dropout_key, len(params)))
        if dropout_key is not None and dropout_rate > 0.0
        else None
    )
    carries = []
    hidden = xs
    for index, (cell, layer_params, carry) in enumerate(
        zip(layer_cells, params, initial_carries, strict=True)
    ):
        if bidirectional:
            carry, out = _bidirectional_layer(
                cell,
                layer_params,
                hidden,
                mask=mask,
                initial_carry=carry,
                merge=merge,
                time_major=True,
                unroll=unroll,
                remat=remat,
                hoist=hoist,
            )
        else:
            carry, out = rnn(
                cell,
                layer_params,
                hidden,
                mask=mask,
                initial_carry=carry,
                resets=resets,
                time_major=True,
                unroll=unroll,
                remat=remat,
                hoist=hoist,
            )
        if residual and index > 0:
            if out.shape != hidden.shape:
                raise ValueError(
                    f"stacked: residual connections need layer {index}'s output "
                    f"shape {tuple(out.shape)} to equal its input shape "
                    f"{tuple(hidden.shape)}."
                )
            out = out + hidden.astype(out.dtype)
        if keys is not None and index < len(params) - 1:
            # Drawn batch-major, so the same key drops the same units whatever
            # the layout the caller uses.
            batch_major = (*out.shape[1:-1], out.shape[0], out.shape[-1])
            keep = jax.random.bernoulli(keys[index], 1.0 - dropout_rate, batch_major)
            keep = jnp.moveaxis(keep, -2, 0)
            scale = jnp.asarray(1.0 / (1.0 - dropout_rate), out.dtype)
            out = jnp.where(keep, out * scale, jnp.zeros((), out.dtype))
        carries.append(carry)
        hidden = out
    if not time_major:
        hidden = jnp.moveaxis(hidden, 0, hidden.ndim - 2)
    return carries, hidden


def init_bidirectional(
    key: jax.Array, cell: Cell, input_size: int, *, backward_cell: Cell | None = None
) -> dict[str, Params]:
    """Parameters ``{"forward": ..., "backward": ...}`` for :func:`bidirectional`.

    Examples:
      >>> import jax, seqmask
      >>> params = seqmask.init_bidirectional(jax.random.key(0),
      ...                                     seqmask.cells.gru(4), 3)
      >>> sorted(params)
      ['backward', 'forward']
    """
    _check_cell(cell, "init_bidirectional")
    backward_cell = cell if backward_cell is None else backward_cell
    forward_key, backward_key = jax.random.split(key)
    return {
        "forward": cell.init(forward_key, input_size),
        "backward": backward_cell.init(backward_key, input_size),
    }


def init_stacked(
    key: jax.Array,
    cells: Cell | Sequence[Cell],
    input_size: int,
    *,
    num_layers: int | None = None,
    bidirectional: bool = False,
    merge: str = "concat",
) -> list[Params]:
    """Per-layer parameters for :func:`stacked`.

    Each layer's input size is the previous layer's output size (doubled for
    bidirectional layers that concatenate).

    Args:
      key: PRNG key.
      cells: one cell for every layer (then ``num_layers`` is required) or a
        sequence with one cell a layer.
      input_size: the feature size of the inputs of the first layer.
      num_layers: number of layers when ``cells`` is a single cell.
      bidirectional, merge: as :func:`stacked`.

    Examples:
      >>> import jax, seqmask
      >>> params = seqmask.init_stacked(jax.random.key(0), seqmask.cells.lstm(4), 3,
      ...                               num_layers=2, bidirectional=True)
      >>> params[1]["forward"]["input_kernel"].shape
      (8, 16)
    """
    if isinstance(cells, Cell):
        if num_layers is None:
            raise ValueError("init_stacked: give num_layers when cells is one cell.")
        count = num_layers
    else:
        count = len(cells)
        if num_layers is not None and num_layers != count:
            raise ValueError(
                f"init_stacked: num_layers={num_layers} but {count} cells were given."
            )
    layer_cells = _layer_cells(cells, count, "init_stacked")
    params = []
    size = input_size
    for cell, layer_key in zip(layer_cells, jax.random.split(key, count), strict=True):
        if bidirectional:
            layer = init_bidirectional(layer_key, cell, size)
            out = _output_size(cell, layer["forward"], size)
            size = 2 * out if merge == "concat" else out
        else:
            layer = cell.init(layer_key, size)
            size = _output_size(cell, layer, size)
        params.append(layer)
    return params


def _output_size(cell: Cell, params, input_size: int) -> int:
    """The output feature size of ``cell``, found by tracing one step."""
    carry = cell.initial_carry(params, ())
    _, y = jax.eval_shape(
        cell.apply, params, carry, jax.ShapeDtypeStruct((input_size,), jnp.float32)
    )
    return int(y.shape[-1])


def _layer_cells(cells, count: int, name: str) -> list[Cell]:
    if isinstance(cells, Cell):
        return [cells] * count
    cells = list(cells)
    if len(cells) != count:
        raise ValueError(
            f"{name}: got {len(cells)} cells for {count} layers; give one cell or one "
            "a layer."
        )
    for cell in cells:
        _check_cell(cell, name)
    return cells


def _merge(forward_ys, backward_ys, merge: str):
    if merge == "concat":
        return jnp.concatenate([forward_ys, backward_ys], axis=-1)
    if merge == "sum":
        return forward_ys + backward_ys
    return forward_ys, backward_ys
