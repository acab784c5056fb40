"""Recurrent layers: one cell over a sequence, both directions, a stack.

These functions turn a :class:`seqmask.cells.Cell` and its parameters into a
layer over a padded batch. They take sequences batch-major by default
(``[*batch, time, features]``), a boolean ``mask`` ``[*batch, time]`` or integer
``lengths`` ``[*batch]``, and an explicit carry in and out, so that stateful
training is a matter of passing the returned carry back in. Under the hood
every layer is one :func:`seqmask.masked_scan` over time; on accelerators
the input projection of built-in cells is hoisted out of the scan as one
large matmul (``hoist``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from seqmask import _sharding
from seqmask.cells import Cell
from seqmask.masks import resolve_mask
from seqmask.scan._masked import _masked_scan

__all__ = ["rnn", "bidirectional", "stacked", "init_bidirectional", "init_stacked"]

Params = Any
Carry = Any

_MERGES = ("concat", "sum", "none")


def rnn(
    cell: Cell,
    params: Params,
    xs,
    *,
    mask=None,
    lengths=None,
    initial_carry: Carry | None = None,
    resets=None,
    reset_to: Carry | None = None,
    reverse: bool = False,
    time_major: bool = False,
    unroll: int | bool = 1,
    remat: bool | int = False,
    hoist: bool | None = None,
) -> tuple[Carry, jax.Array]:
    """Run ``cell`` over a padded batch of sequences.

    At padded steps the carry passes through unchanged and the output is
    zero (see :func:`seqmask.masked_scan`), so the final carry of each row is
    its carry after its last valid step, for any mask.

    Args:
      cell: a :class:`~seqmask.cells.Cell`.
      params: the cell's parameters.
      xs: ``[*batch, time, features]`` (``[time, *batch, features]`` if
        ``time_major``); ``batch`` may be empty.
      mask: boolean ``[*batch, time]`` (``[time, *batch]``), true at valid
        steps. Any pattern: right or left padding, holes, empty rows.
      lengths: alternative to ``mask``: integers ``[*batch]``, right padding.
      initial_carry: the carry to start from (e.g. the final carry of the
        previous chunk); leaves broadcast to ``[*batch, ...]``. Default:
        ``cell.initial_carry(params, batch)`` (the learned one if the cell
        has a learnable initial state).
      resets: boolean in the layout of ``mask``: where true the row's carry is
        reset to ``reset_to`` before that step (a new sequence starts there).
      reset_to: the carry to reset to; default: the cell's initial carry (the
        learned one for :func:`~seqmask.cells.learnable_initial_state`), not
        ``initial_carry``.
      reverse: run from the last valid step to the first; outputs stay at
        their positions.
      time_major: whether time is the leading axis of ``xs``, ``mask`` and
        ``resets`` (and of the outputs).
      unroll: passed to :func:`jax.lax.scan`.
      remat: trade compute for memory in the backward pass. ``True``
        checkpoints each step (only the carries are kept; gate activations
        are recomputed). An int ``K`` splits time into chunks of ``K`` steps
        and checkpoints each chunk: only the carries at chunk boundaries are
        kept, so activation memory is about ``T / K`` carries plus one chunk
        of steps. Values and gradients are unchanged.
      hoist: run the cell's input projection once over the whole sequence
        (one large matmul before the scan) instead of inside every step.
        None chooses. On a single CPU device it projects per step: the
        benchmarks (``bench_rnn.py``, ``bench_rnn_variants.py``) measured
        that 1.2-1.85x faster forward+backward than hoisting, for LSTM and
        GRU layers at every shape they cover (the hoisted ``[T, B, 4H]``
        projection and its cotangent are large buffers; per step, the loop
        reuses small ones). It hoists on accelerators (cuDNN's strategy;
        ``benchmarks/gpu.sh`` measures both) and whenever there are several
        devices, so that with a sharded batch the kernel gradient is one
        matmul after the loop and the loop body needs no collective. Values
        are the same either way.

    Returns:
      ``(final_carry, ys)``: the carry after each row's last valid step
      (leaves ``[*batch, ...]``) and the outputs ``[*batch, time, out]``
      (``[time, *batch, out]`` if ``time_major``), zero at padded steps.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import seqmask
      >>> cell = seqmask.cells.gru(8)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> xs = jnp.ones((2, 5, 3))
      >>> h, ys = seqmask.rnn(cell, params, xs, lengths=jnp.array([5, 2]))
      >>> ys.shape, h.shape
      ((2, 5, 8), (2, 8))
      >>> h_short, _ = seqmask.rnn(cell, params, xs[1:, :2])
      >>> bool(jnp.allclose(h[1], h_short[0]))
      True
    """
    _check_cell(cell, "rnn")
    xs = jnp.asarray(xs)
    if xs.ndim < 2:
        raise ValueError(
            "rnn: xs must be [*batch, time, features] (at least 2 axes); got shape "
            f"{tuple(xs.shape)}."
        )
    batch_shape = tuple(xs.shape[1:-1] if time_major else xs.shape[:-2])
    mask = resolve_mask(xs, mask=mask, lengths=lengths, time_major=time_major)
    layout = _layout(batch_shape, xs.shape[0 if time_major else -2], time_major)
    if mask is not None and mask.shape != layout:
        raise ValueError(
            f"rnn: mask must have shape {layout} ({_layout_name(time_major)}); got "
            f"{tuple(mask.shape)}."
        )
    if resets is not None:
        resets = jnp.asarray(resets)
        if resets.dtype != jnp.bool_ or resets.shape != layout:
            raise ValueError(
                f"rnn: resets must be a boolean array of shape {layout} "
                f"({_layout_name(time_major)}); got {resets.dtype}{list(resets.shape)}."
            )

    n_batch = len(batch_shape)
    if time_major:
        xs_tm, mask_tm, resets_tm = xs, mask, resets
    else:
        xs_tm = jnp.moveaxis(xs, n_batch, 0)
        mask_tm = None if mask is None else jnp.moveaxis(mask, -1, 0)
        resets_tm = None if resets is None else jnp.moveaxis(resets, -1, 0)
    if mask_tm is not None:
        # Select before the input projection: NaN at a padded step would
        # otherwise reach the kernel's gradient as NaN * 0. One select over
        # the sequence, so the scan skips its per-step input select.
        xs_tm = jnp.where(
            jnp.broadcast_to(mask_tm[..., None], xs_tm.shape),
            xs_tm,
            jnp.zeros((), xs_tm.dtype),
        )

    default_carry = cell.initial_carry(params, batch_shape)
    carry = (
        default_carry
        if initial_carry is None
        else _fit_carry(initial_carry, default_carry, "initial_carry")
    )
    if resets_tm is not None:
        reset_to = (
            default_carry
            if reset_to is None
            else _fit_carry(reset_to, default_carry, "reset_to")
        )
    # Under explicit mesh axes a carry built here (zeros, a broadcast learned
    # state) is replicated, and a replicated scan carry all-gathers the
    # batch at every step: lay carries out like the batch of the inputs.
    batch_axes = tuple(range(1, 1 + n_batch))
    carry = _sharding.shard_like_batch(carry, xs_tm, batch_axes)
    if resets_tm is not None:
        reset_to = _sharding.shard_like_batch(reset_to, xs_tm, batch_axes)

    if cell.apply_sequence is not None:
        final_carry, ys = cell.apply_sequence(
            params,
            carry,
            xs_tm,
            mask=mask_tm,
            resets=resets_tm,
            reset_to=reset_to,
            reverse=reverse,
        )
        if not time_major:
            ys = jax.tree.map(lambda y: jnp.moveaxis(y, 0, n_batch), ys)
        return final_carry, ys

    if hoist is None:
        # Per step only on a single CPU device: with several devices the
        # per-step projection accumulates the kernel gradient inside the loop,
        # where XLA gathers the sharded batch at every step.
        hoist = jax.default_backend() != "cpu" or jax.device_count() > 1
    if hoist and cell.project_inputs is not None and cell.apply_projected is not None:
        inputs = cell.project_inputs(params, xs_tm)
        apply_projected = cell.apply_projected

        def step(c, x):
            return apply_projected(params, c, x)

    else:
        inputs = xs_tm

        def step(c, x):
            return cell.apply(params, c, x)

    if isinstance(remat, bool):
        if remat:
            step = jax.checkpoint(step)
        final_carry, ys = _masked_scan(
            step,
            carry,
            inputs,
            mask_tm,
            resets=resets_tm,
            reset_to=reset_to,
            reverse=reverse,
            unroll=unroll,
            select_inputs=False,  # xs_tm is zeroed at padded steps above
        )
    else:
        final_carry, ys = _chunked_scan(
            step,
            carry,
            inputs,
            mask_tm,
            resets_tm,
            reset_to,
            batch_shape=batch_shape,
            reverse=reverse,
            unroll=unroll,
            chunk=_check_chunk(remat),
        )
    if not time_major:
        ys = jax.tree.map(lambda y: jnp.moveaxis(y, 0, n_batch), ys)
    return final_carry, ys


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


def _check_chunk(remat) -> int:
    if isinstance(remat, (int, np.integer)) and remat > 0:
        return int(remat)
    raise ValueError(
        f"rnn: remat must be a bool or a positive int chunk length; got {remat!r}."
    )


def _chunked_scan(
    step, carry, inputs, mask, resets, reset_to, *, batch_shape, reverse, unroll, chunk
):
    """``masked_scan`` over chunks of ``chunk`` steps, each chunk checkpointed.

    The time axis is padded to a multiple of ``chunk`` with masked-out steps:
    padded steps carry the state through, so the padding changes nothing.
    """
    steps = jax.tree.leaves(inputs)[0].shape[0]
    if mask is None:
        mask = jnp.ones((steps, *batch_shape), jnp.bool_)
    chunks = -(-steps // chunk)
    pad = chunks * chunk - steps

    def split(x):
        x = jnp.concatenate([x, jnp.zeros((pad, *x.shape[1:]), x.dtype)]) if pad else x
        return x.reshape(chunks, chunk, *x.shape[1:])

    chunked = jax.tree.map(split, (inputs, mask, resets))

    @jax.checkpoint
    def run_chunk(c, chunk_inputs):
        x, m, r = chunk_inputs
        return _masked_scan(
            step,
            c,
            x,
            m,
            resets=r,
            reset_to=reset_to,
            reverse=reverse,
            unroll=unroll,
            select_inputs=False,  # rnn zeroed the inputs at padded steps
        )

    final_carry, ys = jax.lax.scan(run_chunk, carry, chunked, reverse=reverse)
    ys = jax.tree.map(lambda y: y.reshape(chunks * chunk, *y.shape[2:])[:steps], ys)
    return final_carry, ys


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


def _check_cell(cell, name: str) -> None:
    if not isinstance(cell, Cell):
        raise TypeError(
            f"{name}: cell must be a seqmask.cells.Cell (e.g. "
            f"seqmask.cells.lstm(128)); got {type(cell).__name__}."
        )


def _layout(batch_shape, time, time_major: bool) -> tuple[int, ...]:
    return (int(time), *batch_shape) if time_major else (*batch_shape, int(time))


def _layout_name(time_major: bool) -> str:
    return "[time, *batch]" if time_major else "[*batch, time]"


def _fit_carry(given, expected, name: str):
    """Check ``given`` against the cell's carry and broadcast it to its shapes."""
    given_def, expected_def = jax.tree.structure(given), jax.tree.structure(expected)
    if given_def != expected_def:
        raise ValueError(
            f"rnn: {name} must have the structure of the cell's carry "
            f"{expected_def}; got {given_def}."
        )
    problems = []
    fitted = []
    for (path, leaf), want in zip(
        jax.tree_util.tree_leaves_with_path(given),
        jax.tree.leaves(expected),
        strict=True,
    ):
        leaf_dtype = jnp.result_type(leaf)
        shape = tuple(np.shape(leaf))
        try:
            broadcastable = np.broadcast_shapes(shape, want.shape) == want.shape
        except ValueError:
            broadcastable = False
        if leaf_dtype != want.dtype or not broadcastable:
            problems.append(
                f"  {name}{jax.tree_util.keystr(path)}: got {leaf_dtype}{list(shape)}, "
                f"expected {want.dtype}{list(want.shape)}"
            )
        else:
            fitted.append(jnp.broadcast_to(leaf, want.shape))
    if problems:
        raise ValueError(
            f"rnn: {name} does not fit the cell's carry for this batch:\n"
            + "\n".join(problems)
            + "\nLeaves must have the carry's dtype and broadcast to its shape "
            "([*batch, ...])."
        )
    return jax.tree.unflatten(expected_def, fitted)
