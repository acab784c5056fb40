"""The dense gated cells: ``simple_rnn``, ``lstm``, ``gru``."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

import seqmask._checks as _checks
from seqmask._numerics import LECUN_NORMAL
from seqmask._skipping import name_gates
from seqmask.cells._base import (
    Cell,
    Initializer,
    Options,
    init_params,
    make_cell,
    recurrent_matmul,
)
from seqmask.cells._layout import Layout, LSTMCarry


def simple_rnn(
    hidden_size: int,
    *,
    activation: str | Callable[[jax.Array], jax.Array] = "tanh",
    dtype=None,
    param_dtype=jnp.float32,
    kernel_init: Initializer = LECUN_NORMAL,
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
      activation: ``"tanh"`` (default), ``"relu"`` (PyTorch's two
        nonlinearities), or any function. The cell's ``name`` says which:
        ``"simple_rnn"`` for tanh, ``"simple_rnn(relu)"`` for relu, and
        ``"simple_rnn(<function name>)"`` otherwise.
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
    hidden_size = _checks.positive_int(hidden_size, "hidden_size", "simple_rnn")
    options = Options(
        dtype, param_dtype, kernel_init, recurrent_init, bias_init
    ).checked("simple_rnn")
    named = {"tanh": jnp.tanh, "relu": jax.nn.relu}
    if isinstance(activation, str):
        kind = _checks.one_of(activation, named, "activation", "simple_rnn")
        nonlinearity = named[kind]
    else:
        nonlinearity = _checks.function(activation, "activation", "simple_rnn")
        same = [n for n, f in named.items() if f is nonlinearity]
        kind = same[0] if same else getattr(nonlinearity, "__name__", "custom")
    name = "simple_rnn" if kind == "tanh" else f"simple_rnn({kind})"
    layout = Layout(name, hidden_size, blocks=1)
    init = init_params(layout, options)

    def step(params, h, projected, compute):
        acc = projected.dtype
        z = projected + recurrent_matmul(h, params["recurrent_kernel"], compute, acc)
        new_h = nonlinearity(name_gates(z))
        return new_h.astype(h.dtype), new_h.astype(compute)

    return make_cell(layout, init=init, step=step, dtype=options.dtype)


def lstm(
    hidden_size: int,
    *,
    forget_bias: float = 1.0,
    dtype=None,
    param_dtype=jnp.float32,
    kernel_init: Initializer = LECUN_NORMAL,
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
    hidden_size = _checks.positive_int(hidden_size, "hidden_size", "lstm")
    _checks.number(forget_bias, "forget_bias", "lstm")
    _checks.all_finite(forget_bias, "forget_bias", "lstm")
    options = Options(
        dtype, param_dtype, kernel_init, recurrent_init, bias_init
    ).checked("lstm")

    layout = Layout("lstm", hidden_size, blocks=4, lstm_carry=True)
    plain = init_params(layout, options)

    def init(key, input_size):
        params = plain(key, input_size)
        # Gate blocks i, f, g, o: the forget gate is the second.
        forget = slice(hidden_size, 2 * hidden_size)
        shift = jnp.asarray(forget_bias, options.param_dtype)
        params["bias"] = params["bias"].at[forget].add(shift)
        return params

    def step(params, carry, projected, compute):
        acc = projected.dtype
        h, c = carry
        z = projected + recurrent_matmul(h, params["recurrent_kernel"], compute, acc)
        i, f, g, o = jnp.split(name_gates(z), 4, axis=-1)
        new_c = jax.nn.sigmoid(f) * c.astype(acc) + jax.nn.sigmoid(i) * jnp.tanh(g)
        new_h = jax.nn.sigmoid(o) * jnp.tanh(new_c)
        new_carry = LSTMCarry(h=new_h.astype(h.dtype), c=new_c.astype(c.dtype))
        return new_carry, new_h.astype(compute)

    return make_cell(layout, init=init, step=step, dtype=options.dtype)


def gru(
    hidden_size: int,
    *,
    dtype=None,
    param_dtype=jnp.float32,
    kernel_init: Initializer = LECUN_NORMAL,
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
      dtype, param_dtype, kernel_init, recurrent_init, bias_init: as
        :func:`simple_rnn`.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from seqmask.cells import gru
      >>> cell = gru(4)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> h, y = cell.apply(params, cell.initial_carry(params, ()), jnp.ones(3))
      >>> y.shape
      (4,)
    """
    hidden_size = _checks.positive_int(hidden_size, "hidden_size", "gru")
    options = Options(
        dtype, param_dtype, kernel_init, recurrent_init, bias_init
    ).checked("gru")

    layout = Layout("gru", hidden_size, blocks=3, two_biases=True)
    init = init_params(layout, options)

    def step(params, h, projected, compute):
        acc = projected.dtype
        recurrent = recurrent_matmul(h, params["recurrent_kernel"], compute, acc)
        recurrent = recurrent + jnp.broadcast_to(
            params["recurrent_bias"].astype(acc), recurrent.shape
        )
        x_r, x_z, x_n = jnp.split(projected, 3, axis=-1)
        h_r, h_z, h_n = jnp.split(name_gates(recurrent), 3, axis=-1)
        r = jax.nn.sigmoid(x_r + h_r)
        z = jax.nn.sigmoid(x_z + h_z)
        n = jnp.tanh(x_n + r * h_n)
        new_h = (1 - z) * n + z * h.astype(acc)
        return new_h.astype(h.dtype), new_h.astype(compute)

    return make_cell(layout, init=init, step=step, dtype=options.dtype)
