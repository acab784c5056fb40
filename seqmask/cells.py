"""Recurrent cells as records of pure functions.

A cell is a :class:`Cell`: a small immutable record of pure functions, like
optax's ``GradientTransformation``::

  cell = seqmask.cells.lstm(hidden_size=256)
  params = cell.init(key, input_size)            # a pytree of arrays
  carry = cell.initial_carry(params, batch_shape)
  carry, y = cell.apply(params, carry, x)        # one step, any batch dims

Cells carry no state and no framework: the parameters are a plain dict, the
carry a plain pytree. Built-in cells also split their step into an input
projection that does not depend on the carry (``project_inputs``, which
layers run once over the whole sequence as one large matmul) and the
recurrent part (``apply_projected``). Gate orders and parameter layouts
follow PyTorch's ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` (kernels transposed to
``x @ W`` form, gates concatenated along the last axis), so weights convert
both ways with :mod:`seqmask.interop`.

Dtypes: parameters and carry are stored in ``param_dtype`` (float32 by
default). Without an explicit ``dtype`` a step computes in the promotion of
the input and parameter dtypes, as Flax does (bfloat16 inputs with float32
parameters compute in float32). With ``dtype=jnp.bfloat16`` the matmul
operands are bfloat16 and accumulate in the parameter dtype; the gates and
the state update always run in the accumulation dtype, and the carry keeps
``param_dtype``. Outputs ``y`` have the compute dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

# The log-space scan is scan machinery that only the min cells use, so it
# stays private to seqmask rather than joining the public API.
from seqmask.scan import _log_linear_scan, linear_scan

__all__ = [
    "Cell",
    "LSTMCarry",
    "simple_rnn",
    "gru",
    "lstm",
    "learnable_initial_state",
    "min_gru",
    "min_lstm",
]

Params = Any
Carry = Any
Initializer = Callable[..., jax.Array]


_LECUN_NORMAL = jax.nn.initializers.lecun_normal()


class Cell(NamedTuple):
    """A recurrent cell: pure functions over explicit parameters and carry.

    Attributes:
      init: ``(key, input_size) -> params``.
      initial_carry: ``(params, batch_shape) -> carry``; leaves are
        ``[*batch_shape, ...]``.
      apply: ``(params, carry, x) -> (carry, y)`` for one step; ``x`` is
        ``[*batch, input_size]`` with any (possibly empty) batch shape.
      project_inputs: optional ``(params, xs) -> projected``: the part of the
        step that does not depend on the carry, for any leading axes.
        Layers apply it to the whole sequence at once.
      apply_projected: optional ``(params, carry, projected_x) -> (carry, y)``
        with ``apply(p, c, x) == apply_projected(p, c, project_inputs(p, x))``.
      apply_sequence: optional ``(params, carry, xs, *, mask, resets, reset_to,
        reverse) -> (final_carry, ys)`` over a whole time-major sequence
        (``xs`` ``[time, *batch, input]``, ``mask``/``resets`` ``[time,
        *batch]`` or None), with exactly the results of
        :func:`seqmask.masked_scan` over ``apply``. :func:`seqmask.rnn` uses
        it when present (e.g. a parallel scan for a linear recurrence).
      name: a readable name (``"lstm"``, ``"learnable_initial_state(gru)"``).
      hidden_size: the size of the hidden state, when it has one.
    """

    init: Callable[[jax.Array, int], Params]
    initial_carry: Callable[[Params, tuple[int, ...]], Carry]
    apply: Callable[[Params, Carry, jax.Array], tuple[Carry, jax.Array]]
    project_inputs: Callable[[Params, jax.Array], Any] | None = None
    apply_projected: Callable[[Params, Carry, Any], tuple[Carry, jax.Array]] | None = (
        None
    )
    apply_sequence: Callable[..., tuple[Carry, jax.Array]] | None = None
    name: str = "cell"
    hidden_size: int | None = None


class LSTMCarry(NamedTuple):
    """The LSTM carry: hidden state ``h`` and cell state ``c``, each ``[*batch, H]``."""

    h: jax.Array
    c: jax.Array


def _check_size(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int; got {value!r}.")
    return value


def _orthogonal_blocks(key, hidden_size: int, blocks: int, dtype) -> jax.Array:
    """``[H, blocks * H]``: one orthogonal ``[H, H]`` matrix per gate."""
    keys = jax.random.split(key, blocks)
    init = jax.nn.initializers.orthogonal()
    return jnp.concatenate(
        [init(k, (hidden_size, hidden_size), dtype) for k in keys], 1
    )


def _dtypes(dtype, x_dtype, param_dtype):
    """The compute dtype of the matmuls and the dtype they accumulate in.

    Like Flax: without an explicit ``dtype`` the computation runs in the
    promotion of the input and parameter dtypes (bfloat16 inputs with float32
    parameters compute in float32); with ``dtype=jnp.bfloat16`` the matmuls
    take bfloat16 operands and still accumulate in the parameter dtype.
    """
    x_dtype = jnp.dtype(x_dtype)
    if not jnp.issubdtype(x_dtype, jnp.floating):
        raise TypeError(
            f"cell inputs must be floating point; got {x_dtype}. Embed integer "
            "tokens first."
        )
    compute = jnp.dtype(dtype) if dtype is not None else _wider(x_dtype, param_dtype)
    return compute, _wider(compute, param_dtype)


def _wider(a, b):
    """The wider of two float dtypes, independent of the promotion mode.

    ``jnp.promote_types`` follows ``jax_numpy_dtype_promotion`` and refuses
    bfloat16 with float32 in strict mode; the choice here is deliberate, not
    an implicit promotion.
    """
    a, b = jnp.dtype(a), jnp.dtype(b)
    if a == b:
        return a
    if a.itemsize != b.itemsize:
        return a if a.itemsize > b.itemsize else b
    return jnp.dtype(jnp.float32)  # bfloat16 vs float16


def _check_input(x, input_size: int, name: str) -> None:
    if jnp.ndim(x) < 1 or jnp.shape(x)[-1] != input_size:
        raise ValueError(
            f"{name}: inputs must be [..., {input_size}] (the input_size the "
            f"parameters were made for); got shape {tuple(jnp.shape(x))}."
        )


def _dense(x, kernel, bias, dtype, acc_dtype):
    """``x @ kernel + bias``: operands in ``dtype``, accumulated in ``acc_dtype``."""
    y = jnp.matmul(
        x.astype(dtype), kernel.astype(dtype), preferred_element_type=acc_dtype
    )
    if bias is None:
        return y
    return y + jnp.broadcast_to(bias.astype(acc_dtype), y.shape)


def _make_cell(
    *,
    name: str,
    hidden_size: int,
    init: Callable[[jax.Array, int], Params],
    initial_carry: Callable[[Params, tuple[int, ...]], Carry],
    step: Callable[[Params, Carry, jax.Array, Any], tuple[Carry, jax.Array]],
    dtype,
) -> Cell:
    """Assemble a dense cell whose input projection is ``x @ input_kernel + b``.

    ``step(params, carry, projected_x, compute_dtype)`` is the recurrent part.
    The projection is held in the accumulation dtype (rounding it to bfloat16
    before adding the recurrent term would throw away precision the carry
    keeps), so ``step`` accumulates in ``projected_x.dtype``.
    """

    def project_inputs(params, xs):
        _check_input(xs, params["input_kernel"].shape[0], name)
        param_dtype = params["recurrent_kernel"].dtype
        compute, acc = _dtypes(dtype, jnp.result_type(xs), param_dtype)
        bias = params["bias"] if "bias" in params else params["input_bias"]
        return _dense(xs, params["input_kernel"], bias, compute, acc)

    def apply_projected(params, carry, projected):
        param_dtype = params["recurrent_kernel"].dtype
        compute, _ = _dtypes(dtype, jnp.result_type(projected), param_dtype)
        return step(params, carry, projected, compute)

    def apply(params, carry, x):
        return apply_projected(params, carry, project_inputs(params, x))

    return Cell(
        init=init,
        initial_carry=initial_carry,
        apply=apply,
        project_inputs=project_inputs,
        apply_projected=apply_projected,
        name=name,
        hidden_size=hidden_size,
    )


def _recurrent(h, kernel, compute, acc):
    """``h @ kernel`` with operands in ``compute``, accumulating in ``acc``."""
    return _dense(h, kernel, None, compute, acc)


def simple_rnn(
    hidden_size: int,
    *,
    activation: Callable[[jax.Array], jax.Array] = jnp.tanh,
    dtype=None,
    param_dtype=jnp.float32,
    kernel_init: Initializer = _LECUN_NORMAL,
    recurrent_init: Initializer | None = None,
    bias_init: Initializer = jax.nn.initializers.zeros,
) -> Cell:
    r"""Elman RNN cell (PyTorch ``nn.RNN``).

    .. math::

      h_t = \mathrm{activation}(x_t W_x + h_{t-1} W_h + b)

    The output is :math:`h_t`; the carry is :math:`h` of shape ``[*batch, H]``.

    Parameters: ``input_kernel`` ``[I, H]``, ``recurrent_kernel`` ``[H, H]``
    (orthogonal by default), ``bias`` ``[H]`` (PyTorch's
    ``bias_ih + bias_hh``).

    Args:
      hidden_size: ``H``.
      activation: ``tanh`` (default) or e.g. ``jax.nn.relu``.
      dtype: compute dtype of the matmuls; default: the input's dtype.
      param_dtype: dtype of parameters and carry.
      kernel_init, recurrent_init, bias_init: initialisers.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from seqmask.cells import simple_rnn
      >>> cell = simple_rnn(4)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> h = cell.initial_carry(params, (2,))
      >>> h, y = cell.apply(params, h, jnp.ones((2, 3)))
      >>> y.shape
      (2, 4)
    """
    hidden_size = _check_size(hidden_size, "simple_rnn: hidden_size")

    def init(key, input_size):
        input_size = _check_size(input_size, "simple_rnn.init: input_size")
        k_in, k_rec, k_b = jax.random.split(key, 3)
        recurrent = (
            _orthogonal_blocks(k_rec, hidden_size, 1, param_dtype)
            if recurrent_init is None
            else recurrent_init(k_rec, (hidden_size, hidden_size), param_dtype)
        )
        return {
            "input_kernel": kernel_init(k_in, (input_size, hidden_size), param_dtype),
            "recurrent_kernel": recurrent,
            "bias": bias_init(k_b, (hidden_size,), param_dtype),
        }

    def initial_carry(params, batch_shape=()):
        return jnp.zeros((*batch_shape, hidden_size), params["recurrent_kernel"].dtype)

    def step(params, h, projected, compute):
        acc = projected.dtype
        z = projected + _recurrent(h, params["recurrent_kernel"], compute, acc)
        new_h = activation(z)
        return new_h.astype(h.dtype), new_h.astype(compute)

    return _make_cell(
        name="simple_rnn",
        hidden_size=hidden_size,
        init=init,
        initial_carry=initial_carry,
        step=step,
        dtype=dtype,
    )


def lstm(
    hidden_size: int,
    *,
    forget_bias: float = 1.0,
    dtype=None,
    param_dtype=jnp.float32,
    kernel_init: Initializer = _LECUN_NORMAL,
    recurrent_init: Initializer | None = None,
    bias_init: Initializer = jax.nn.initializers.zeros,
) -> Cell:
    r"""Long short-term memory cell (PyTorch ``nn.LSTM`` equations and gate order).

    .. math::

      z &= x_t W_x + h_{t-1} W_h + b \\
      i &= \sigma(z_i), \quad f = \sigma(z_f), \quad g = \tanh(z_g),
        \quad o = \sigma(z_o) \\
      c_t &= f \odot c_{t-1} + i \odot g \\
      h_t &= o \odot \tanh(c_t)

    The carry is :class:`LSTMCarry` ``(h, c)``, each ``[*batch, H]``; the
    output is :math:`h_t`.

    Parameters (gate blocks of width ``H`` in the order ``i, f, g, o``, as
    PyTorch): ``input_kernel`` ``[I, 4H]``, ``recurrent_kernel`` ``[H, 4H]``
    (one orthogonal block per gate by default), ``bias`` ``[4H]`` (PyTorch's
    ``bias_ih + bias_hh``).

    Args:
      hidden_size: ``H``.
      forget_bias: initial value of the forget-gate bias block (1.0 helps
        gradients flow early in training; 0.0 gives PyTorch's init).
      dtype: compute dtype of the matmuls; default: the input's dtype.
      param_dtype: dtype of parameters and carry.
      kernel_init, recurrent_init, bias_init: initialisers (``bias_init`` for
        all blocks, then ``forget_bias`` is added to the forget block).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from seqmask.cells import lstm
      >>> cell = lstm(8)
      >>> params = cell.init(jax.random.key(0), 5)
      >>> {name: params[name].shape for name in sorted(params)}
      {'bias': (32,), 'input_kernel': (5, 32), 'recurrent_kernel': (8, 32)}
      >>> carry = cell.initial_carry(params, (2,))
      >>> carry, y = cell.apply(params, carry, jnp.ones((2, 5)))
      >>> bool(jnp.all(y == carry.h))
      True
    """
    hidden_size = _check_size(hidden_size, "lstm: hidden_size")

    def init(key, input_size):
        input_size = _check_size(input_size, "lstm.init: input_size")
        k_in, k_rec, k_b = jax.random.split(key, 3)
        recurrent = (
            _orthogonal_blocks(k_rec, hidden_size, 4, param_dtype)
            if recurrent_init is None
            else recurrent_init(k_rec, (hidden_size, 4 * hidden_size), param_dtype)
        )
        bias = bias_init(k_b, (4 * hidden_size,), param_dtype)
        bias = bias.at[hidden_size : 2 * hidden_size].add(
            jnp.asarray(forget_bias, param_dtype)
        )
        return {
            "input_kernel": kernel_init(
                k_in, (input_size, 4 * hidden_size), param_dtype
            ),
            "recurrent_kernel": recurrent,
            "bias": bias,
        }

    def initial_carry(params, batch_shape=()):
        zeros = jnp.zeros((*batch_shape, hidden_size), params["recurrent_kernel"].dtype)
        return LSTMCarry(h=zeros, c=zeros)

    def step(params, carry, projected, compute):
        acc = projected.dtype
        h, c = carry
        z = projected + _recurrent(h, params["recurrent_kernel"], compute, acc)
        i, f, g, o = jnp.split(z, 4, axis=-1)
        new_c = jax.nn.sigmoid(f) * c.astype(acc) + jax.nn.sigmoid(i) * jnp.tanh(g)
        new_h = jax.nn.sigmoid(o) * jnp.tanh(new_c)
        new_carry = LSTMCarry(h=new_h.astype(h.dtype), c=new_c.astype(c.dtype))
        return new_carry, new_h.astype(compute)

    return _make_cell(
        name="lstm",
        hidden_size=hidden_size,
        init=init,
        initial_carry=initial_carry,
        step=step,
        dtype=dtype,
    )


def gru(
    hidden_size: int,
    *,
    dtype=None,
    param_dtype=jnp.float32,
    kernel_init: Initializer = _LECUN_NORMAL,
    recurrent_init: Initializer | None = None,
    bias_init: Initializer = jax.nn.initializers.zeros,
) -> Cell:
    r"""Gated recurrent unit, in the variant PyTorch and cuDNN use.

    The reset gate multiplies the recurrent term *after* the recurrent matmul
    (so the three recurrent matmuls fuse into one):

    .. math::

      r &= \sigma(x_t W_{xr} + b_{xr} + h_{t-1} W_{hr} + b_{hr}) \\
      z &= \sigma(x_t W_{xz} + b_{xz} + h_{t-1} W_{hz} + b_{hz}) \\
      n &= \tanh(x_t W_{xn} + b_{xn} + r \odot (h_{t-1} W_{hn} + b_{hn})) \\
      h_t &= (1 - z) \odot n + z \odot h_{t-1}

    The carry is ``h`` ``[*batch, H]``; the output is :math:`h_t`.

    Parameters (gate blocks in the order ``r, z, n``, as PyTorch):
    ``input_kernel`` ``[I, 3H]``, ``recurrent_kernel`` ``[H, 3H]``,
    ``input_bias`` ``[3H]``, ``recurrent_bias`` ``[3H]`` (two biases, because
    ``b_{hn}`` sits inside the reset gate's product).

    Args:
      hidden_size: ``H``.
      dtype: compute dtype of the matmuls; default: the input's dtype.
      param_dtype: dtype of parameters and carry.
      kernel_init, recurrent_init, bias_init: initialisers.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from seqmask.cells import gru
      >>> cell = gru(4)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> h, y = cell.apply(params, cell.initial_carry(params, ()), jnp.ones(3))
      >>> y.shape
      (4,)
    """
    hidden_size = _check_size(hidden_size, "gru: hidden_size")

    def init(key, input_size):
        input_size = _check_size(input_size, "gru.init: input_size")
        k_in, k_rec, k_bi, k_bh = jax.random.split(key, 4)
        recurrent = (
            _orthogonal_blocks(k_rec, hidden_size, 3, param_dtype)
            if recurrent_init is None
            else recurrent_init(k_rec, (hidden_size, 3 * hidden_size), param_dtype)
        )
        return {
            "input_kernel": kernel_init(
                k_in, (input_size, 3 * hidden_size), param_dtype
            ),
            "recurrent_kernel": recurrent,
            "input_bias": bias_init(k_bi, (3 * hidden_size,), param_dtype),
            "recurrent_bias": bias_init(k_bh, (3 * hidden_size,), param_dtype),
        }

    def initial_carry(params, batch_shape=()):
        return jnp.zeros((*batch_shape, hidden_size), params["recurrent_kernel"].dtype)

    def step(params, h, projected, compute):
        acc = projected.dtype
        recurrent = _recurrent(h, params["recurrent_kernel"], compute, acc)
        recurrent = recurrent + jnp.broadcast_to(
            params["recurrent_bias"].astype(acc), recurrent.shape
        )
        x_r, x_z, x_n = jnp.split(projected, 3, axis=-1)
        h_r, h_z, h_n = jnp.split(recurrent, 3, axis=-1)
        r = jax.nn.sigmoid(x_r + h_r)
        z = jax.nn.sigmoid(x_z + h_z)
        n = jnp.tanh(x_n + r * h_n)
        new_h = (1 - z) * n + z * h.astype(acc)
        return new_h.astype(h.dtype), new_h.astype(compute)

    return _make_cell(
        name="gru",
        hidden_size=hidden_size,
        init=init,
        initial_carry=initial_carry,
        step=step,
        dtype=dtype,
    )


def learnable_initial_state(
    cell: Cell, *, carry_init: Initializer = jax.nn.initializers.zeros
) -> Cell:
    """Wrap ``cell`` so that its initial carry is a trained parameter.

    The wrapped cell's parameters are ``{"cell": <cell params>,
    "initial_carry": <one unbatched carry>}``; ``initial_carry(params,
    batch_shape)`` broadcasts the learned carry over ``batch_shape``, so every
    row that starts (or is reset, see ``seqmask.rnn``'s ``resets``) from it
    sends gradient to it. ``apply`` is the inner cell's.

    Args:
      cell: any :class:`Cell`.
      carry_init: initialiser for the learned carry (zeros by default, so the
        wrapped cell starts out identical to the inner one).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from seqmask.cells import learnable_initial_state, lstm
      >>> cell = learnable_initial_state(lstm(3))
      >>> params = cell.init(jax.random.key(0), 2)
      >>> params["initial_carry"].h.shape
      (3,)
      >>> cell.initial_carry(params, (5,)).c.shape
      (5, 3)
    """
    if not isinstance(cell, Cell):
        raise TypeError(
            f"learnable_initial_state: cell must be a seqmask Cell; got "
            f"{type(cell).__name__}."
        )

    def init(key, input_size):
        k_cell, k_carry = jax.random.split(key)
        params = cell.init(k_cell, input_size)
        template = cell.initial_carry(params, ())
        leaves, treedef = jax.tree.flatten(template)
        keys = jax.random.split(k_carry, max(len(leaves), 1))
        learned = [
            carry_init(k, x.shape, x.dtype) for k, x in zip(keys, leaves, strict=True)
        ]
        return {"cell": params, "initial_carry": jax.tree.unflatten(treedef, learned)}

    def initial_carry(params, batch_shape=()):
        return jax.tree.map(
            lambda x: jnp.broadcast_to(x, (*batch_shape, *x.shape)),
            params["initial_carry"],
        )

    def apply(params, carry, x):
        return cell.apply(params["cell"], carry, x)

    inner_project, inner_apply = cell.project_inputs, cell.apply_projected
    split = inner_project is not None and inner_apply is not None

    def project_inputs(params, xs):
        assert inner_project is not None
        return inner_project(params["cell"], xs)

    def apply_projected(params, carry, projected):
        assert inner_apply is not None
        return inner_apply(params["cell"], carry, projected)

    inner_sequence = cell.apply_sequence

    def apply_sequence(params, carry, xs, **options):
        assert inner_sequence is not None
        return inner_sequence(params["cell"], carry, xs, **options)

    return Cell(
        init=init,
        initial_carry=initial_carry,
        apply=apply,
        project_inputs=project_inputs if split else None,
        apply_projected=apply_projected if split else None,
        apply_sequence=apply_sequence if inner_sequence is not None else None,
        name=f"learnable_initial_state({cell.name})",
        hidden_size=cell.hidden_size,
    )


def _g(x):
    """The paper's positive activation: ``x + 1/2`` for ``x >= 0``, else ``sigmoid``."""
    return jnp.where(x >= 0, x + 0.5, jax.nn.sigmoid(x))


def _log_g(x):
    """``log(g(x))`` without forming ``g``; finite derivatives on both branches."""
    return jnp.where(x >= 0, jnp.log(jax.nn.relu(x) + 0.5), -jax.nn.softplus(-x))


def _make_min_cell(
    *,
    name: str,
    hidden_size: int,
    blocks: int,
    coefficients: Callable[[jax.Array], tuple[jax.Array, jax.Array]],
    log_coefficients: Callable[[jax.Array], tuple[jax.Array, jax.Array]],
    log_space: bool,
    method: str,
    dtype,
    param_dtype,
    kernel_init: Initializer,
    bias_init: Initializer,
) -> Cell:
    """Assemble a cell whose step is ``h_t = a(x_t) * h_{t-1} + b(x_t)``.

    ``coefficients(projected) -> (a, b)`` and ``log_coefficients(projected)
    -> (log a, log b)`` read the input projection ``x @ input_kernel + bias``
    (``blocks * H`` wide, in the accumulation dtype). ``apply`` runs one step
    in linear space (decoding); ``apply_sequence`` runs the whole sequence
    with :func:`seqmask.linear_scan` or, with ``log_space``, the log-space
    scan.
    """

    if method not in ("auto", "associative", "sequential"):
        raise ValueError(
            f"{name}: method must be 'auto', 'associative' or 'sequential'; got "
            f"{method!r}."
        )

    def init(key, input_size):
        input_size = _check_size(input_size, f"{name}.init: input_size")
        k_in, k_b = jax.random.split(key)
        width = blocks * hidden_size
        return {
            "input_kernel": kernel_init(k_in, (input_size, width), param_dtype),
            "bias": bias_init(k_b, (width,), param_dtype),
        }

    def initial_carry(params, batch_shape=()):
        return jnp.zeros((*batch_shape, hidden_size), params["input_kernel"].dtype)

    def project_inputs(params, xs):
        kernel = params["input_kernel"]
        _check_input(xs, kernel.shape[0], name)
        compute, acc = _dtypes(dtype, jnp.result_type(xs), kernel.dtype)
        return _dense(xs, kernel, params["bias"], compute, acc)

    def apply_projected(params, h, projected):
        compute, _ = _dtypes(dtype, projected.dtype, params["input_kernel"].dtype)
        _check_carry_shape(h, projected.shape[:-1], hidden_size, name)
        a, b = coefficients(projected)
        new_h = a * h.astype(projected.dtype) + b
        return new_h.astype(h.dtype), new_h.astype(compute)

    def apply(params, h, x):
        return apply_projected(params, h, project_inputs(params, x))

    def apply_sequence(
        params, h, xs, *, mask=None, resets=None, reset_to=None, reverse=False
    ):
        xs = jnp.asarray(xs)
        if xs.ndim < 2:
            raise ValueError(
                f"{name}.apply_sequence: xs must be [time, *batch, features]; got "
                f"shape {tuple(xs.shape)}."
            )
        _check_carry_shape(h, xs.shape[1:-1], hidden_size, f"{name}.apply_sequence")
        if mask is not None:
            mask = jnp.asarray(mask)
            if mask.dtype != jnp.bool_ or mask.shape != xs.shape[: mask.ndim]:
                raise ValueError(
                    f"{name}.apply_sequence: mask must be a boolean [time, *batch] "
                    f"= {tuple(xs.shape[:-1])}; got {mask.dtype}{list(mask.shape)}."
                )
            # Select before the projection: NaN at a padded step would
            # otherwise reach the kernel's gradient as NaN * 0.
            selector = mask.reshape(mask.shape + (1,) * (xs.ndim - mask.ndim))
            xs = jnp.where(
                jnp.broadcast_to(selector, xs.shape), xs, jnp.zeros((), xs.dtype)
            )
        projected = project_inputs(params, xs)
        compute, acc = _dtypes(dtype, xs.dtype, params["input_kernel"].dtype)
        initial = h.astype(acc)
        reset_to = None if reset_to is None else jnp.asarray(reset_to).astype(acc)
        if log_space:
            log_a, log_b = log_coefficients(projected)
            final, hs = _log_linear_scan(
                log_a,
                log_b,
                initial=initial,
                mask=mask,
                resets=resets,
                reset_to=reset_to,
                reverse=reverse,
            )
        else:
            a, b = coefficients(projected)
            final, hs = linear_scan(
                a,
                b,
                mask=mask,
                resets=resets,
                initial=initial,
                reset_to=reset_to,
                reverse=reverse,
                method=_scan_method(method),
            )
        return final.astype(h.dtype), hs.astype(compute)

    return Cell(
        init=init,
        initial_carry=initial_carry,
        apply=apply,
        project_inputs=project_inputs,
        apply_projected=apply_projected,
        apply_sequence=apply_sequence,
        name=name,
        hidden_size=hidden_size,
    )


def _scan_method(method: str) -> str:
    """``"auto"``: sequential on CPU, associative on accelerators.

    benchmarks/bench_linear_scan.py measured the sequential scan faster on a
    2-core CPU at every length from 64 to 16384 steps (the associative form
    does O(T log T) work for O(log T) depth, which only parallel hardware
    turns into speed).
    """
    if method != "auto":
        return method
    return "sequential" if jax.default_backend() == "cpu" else "associative"


def _check_carry_shape(h, batch_shape, hidden_size: int, name: str) -> None:
    want = (*batch_shape, hidden_size)
    if tuple(jnp.shape(h)) != want:
        raise ValueError(
            f"{name}: the carry must be [*batch, {hidden_size}] = {want} for inputs "
            f"with batch shape {tuple(batch_shape)}; got {tuple(jnp.shape(h))}."
        )


def min_gru(
    hidden_size: int,
    *,
    log_space: bool = False,
    method: str = "auto",
    dtype=None,
    param_dtype=jnp.float32,
    kernel_init: Initializer = _LECUN_NORMAL,
    bias_init: Initializer = jax.nn.initializers.zeros,
) -> Cell:
    r"""minGRU (Feng et al. 2024, "Were RNNs All We Needed?"): a parallel GRU.

    The gate and the candidate read only the input, so the recurrence is
    linear in :math:`h` and a whole sequence runs as one parallel scan
    (:func:`seqmask.linear_scan`, depth :math:`O(\log T)`):

    .. math::

      z_t &= \sigma(x_t W_z + b_z), \qquad
        \tilde h_t = x_t W_h + b_h \\
      h_t &= (1 - z_t) \odot h_{t-1} + z_t \odot \tilde h_t

    With ``log_space=True`` the candidate is :math:`g(x_t W_h + b_h)`, where
    :math:`g(v) = v + \tfrac12` for :math:`v \ge 0` and :math:`\sigma(v)`
    otherwise, so that :math:`z_t \tilde h_t > 0` and the scan can run on
    logarithms, :math:`\log(1 - z_t) = -\operatorname{softplus}(k_t)` and
    :math:`\log z_t + \log g(\cdot)` (the paper's stable form, and its
    recommended model). The linear-space form is the default: its
    associative scan has no long product or division that could overflow, so
    it is already stable for any length, and it is cheaper. The initial
    carry enters both forms linearly, so it need not be positive (zeros by
    default).

    The output is :math:`h_t`; the carry is ``h`` ``[*batch, H]``.
    ``apply`` is one sequential step (for decoding); ``apply_sequence`` (used
    by :func:`seqmask.rnn` for whole sequences) is the parallel scan with the
    mask, resets and reverse semantics of :func:`seqmask.masked_scan` over
    ``apply``. To force the sequential scan, use
    ``cell._replace(apply_sequence=None)``.

    Parameters (blocks of width ``H`` in the order ``z, h``):
    ``input_kernel`` ``[I, 2H]`` (``W_z`` then ``W_h``) and ``bias`` ``[2H]``.
    From the paper's PyTorch code: ``input_kernel = concat([linear_z.weight.T,
    linear_h.weight.T], 1)``, ``bias = concat([linear_z.bias,
    linear_h.bias])``.

    Args:
      hidden_size: ``H``.
      log_space: use the paper's positive candidate :math:`g` and run the
        scan in log space.
      method: how ``apply_sequence`` scans in linear space: ``"associative"``
        (:math:`O(\log T)` depth), ``"sequential"``, or ``"auto"``
        (sequential on CPU, where benchmarks/bench_linear_scan.py measured it
        faster at every length, associative on accelerators). The log-space
        scan is always associative.
      dtype: compute dtype of the matmul; default: the input's dtype.
      param_dtype: dtype of parameters and carry.
      kernel_init, bias_init: initialisers.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import seqmask
      >>> cell = seqmask.cells.min_gru(4)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> {name: params[name].shape for name in sorted(params)}
      {'bias': (8,), 'input_kernel': (3, 8)}
      >>> xs = jax.random.normal(jax.random.key(1), (2, 5, 3))
      >>> h, ys = seqmask.rnn(cell, params, xs, lengths=jnp.array([5, 2]))
      >>> step = lambda c, x: cell.apply(params, c, x)
      >>> h_seq, _ = seqmask.masked_scan(step, jnp.zeros((4,)), xs[1, :2])
      >>> bool(jnp.allclose(h[1], h_seq, atol=1e-6))
      True
    """
    hidden_size = _check_size(hidden_size, "min_gru: hidden_size")

    def candidate(v):
        return _g(v) if log_space else v

    def coefficients(projected):
        k, v = jnp.split(projected, 2, axis=-1)
        # sigmoid(-k) is 1 - z without cancellation when z is near 1.
        return jax.nn.sigmoid(-k), jax.nn.sigmoid(k) * candidate(v)

    def log_coefficients(projected):
        k, v = jnp.split(projected, 2, axis=-1)
        return -jax.nn.softplus(k), -jax.nn.softplus(-k) + _log_g(v)

    return _make_min_cell(
        name="min_gru",
        hidden_size=hidden_size,
        blocks=2,
        coefficients=coefficients,
        log_coefficients=log_coefficients,
        log_space=log_space,
        method=method,
        dtype=dtype,
        param_dtype=param_dtype,
        kernel_init=kernel_init,
        bias_init=bias_init,
    )


def min_lstm(
    hidden_size: int,
    *,
    log_space: bool = False,
    method: str = "auto",
    dtype=None,
    param_dtype=jnp.float32,
    kernel_init: Initializer = _LECUN_NORMAL,
    bias_init: Initializer = jax.nn.initializers.zeros,
) -> Cell:
    r"""minLSTM (Feng et al. 2024, "Were RNNs All We Needed?"): a parallel LSTM.

    Gates and candidate read only the input; the forget and input gates are
    normalised to sum to one, so the state stays on the scale of the
    candidates whatever the length:

    .. math::

      f_t &= \sigma(x_t W_f + b_f), \quad i_t = \sigma(x_t W_i + b_i), \quad
        \tilde h_t = x_t W_h + b_h \\
      f'_t &= \frac{f_t}{f_t + i_t}, \qquad i'_t = \frac{i_t}{f_t + i_t} \\
      h_t &= f'_t \odot h_{t-1} + i'_t \odot \tilde h_t

    The normalised gates are computed as :math:`f'_t = \sigma(-d_t)`,
    :math:`i'_t = \sigma(d_t)` with :math:`d_t = \operatorname{softplus}(-k_f)
    - \operatorname{softplus}(-k_i) = \log(i_t / f_t)`, the same values
    without the division. With ``log_space=True`` the candidate is
    :math:`g(x_t W_h + b_h)` (see :func:`min_gru`) and the scan runs on
    :math:`\log f'_t = -\operatorname{softplus}(d_t)`, :math:`\log i'_t +
    \log g(\cdot)`, the paper's stable form; the default linear-space scan is
    already stable (no long product or division) and cheaper. The initial
    carry enters linearly and need not be positive.

    The output is :math:`h_t`; the carry is ``h`` ``[*batch, H]`` (minLSTM
    has no separate cell state). ``apply`` is one sequential step;
    ``apply_sequence`` is the parallel scan used by :func:`seqmask.rnn`, with
    the semantics of :func:`seqmask.masked_scan` over ``apply``.

    Parameters (blocks of width ``H`` in the order ``f, i, h``):
    ``input_kernel`` ``[I, 3H]`` and ``bias`` ``[3H]``; from the paper's
    PyTorch code, the transposed weights (and the biases) of ``linear_f``,
    ``linear_i`` and ``linear_h`` concatenated in that order.

    Args:
      hidden_size: ``H``.
      log_space: use the paper's positive candidate :math:`g` and run the
        scan in log space.
      method: how ``apply_sequence`` scans in linear space: ``"associative"``
        (:math:`O(\log T)` depth), ``"sequential"``, or ``"auto"``
        (sequential on CPU, where benchmarks/bench_linear_scan.py measured it
        faster at every length, associative on accelerators). The log-space
        scan is always associative.
      dtype: compute dtype of the matmul; default: the input's dtype.
      param_dtype: dtype of parameters and carry.
      kernel_init, bias_init: initialisers.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import seqmask
      >>> cell = seqmask.cells.min_lstm(4, log_space=True)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> params["input_kernel"].shape
      (3, 12)
      >>> xs = jax.random.normal(jax.random.key(1), (7, 2, 3))   # [time, batch, I]
      >>> h, ys = seqmask.rnn(cell, params, xs, time_major=True, reverse=True)
      >>> step = lambda c, x: cell.apply(params, c, x)
      >>> h_seq, ys_seq = seqmask.masked_scan(step, jnp.zeros((2, 4)), xs,
      ...                                     reverse=True)
      >>> bool(jnp.allclose(ys, ys_seq, atol=1e-6)), bool(jnp.all(h > 0))
      (True, True)
    """
    hidden_size = _check_size(hidden_size, "min_lstm: hidden_size")

    def split(projected):
        k_f, k_i, v = jnp.split(projected, 3, axis=-1)
        return jax.nn.softplus(-k_f) - jax.nn.softplus(-k_i), v

    def coefficients(projected):
        log_ratio, v = split(projected)
        candidate = _g(v) if log_space else v
        return jax.nn.sigmoid(-log_ratio), jax.nn.sigmoid(log_ratio) * candidate

    def log_coefficients(projected):
        log_ratio, v = split(projected)
        return -jax.nn.softplus(log_ratio), -jax.nn.softplus(-log_ratio) + _log_g(v)

    return _make_min_cell(
        name="min_lstm",
        hidden_size=hidden_size,
        blocks=3,
        coefficients=coefficients,
        log_coefficients=log_coefficients,
        log_space=log_space,
        method=method,
        dtype=dtype,
        param_dtype=param_dtype,
        kernel_init=kernel_init,
        bias_init=bias_init,
    )
