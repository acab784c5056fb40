"""``min_gru`` and ``min_lstm``: cells that are linear recurrences."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

import seqmask._checks as _checks
from seqmask._numerics import LECUN_NORMAL
from seqmask.cells._base import (
    Cell,
    Initializer,
    LinearRecurrence,
    Options,
    init_params,
    make_cell,
)
from seqmask.cells._layout import Layout

_METHODS = ("auto", "associative", "sequential")


def _g(x):
    """The paper's positive activation: ``x + 1/2`` for ``x >= 0``, else ``sigmoid``."""
    return jnp.where(x >= 0, x + 0.5, jax.nn.sigmoid(x))


def _log_g(x):
    """``log(g(x))`` without forming ``g``; finite derivatives on both branches,
    and at 0 those of ``g``'s ``x >= 0`` branch (as :func:`_g`)."""
    positive = jnp.where(x >= 0, x, jnp.zeros_like(x))  # relu, but slope 1 at 0
    return jnp.where(x >= 0, jnp.log(positive + 0.5), -jax.nn.softplus(-x))


def _make_min_cell(
    name: str,
    hidden_size: int,
    blocks: int,
    gate: Callable[[jax.Array], tuple[jax.Array, jax.Array]],
    scan: tuple[bool, str],
    options: Options,
) -> Cell:
    r"""Assemble a cell whose step is ``h_t = (1 - z_t) * h_{t-1} + z_t * c_t``.

    ``gate(projected) -> (d, v)`` reads the input projection ``x @
    input_kernel + bias`` (``blocks * H`` wide, in the accumulation dtype):
    the gate is :math:`z = \sigma(d)`, so :math:`1 - z = \sigma(-d)` with no
    cancellation, and the candidate is :math:`c = v`, or :math:`g(v)` with
    ``log_space``. ``apply`` runs one step in linear space (decoding); the
    cell declares itself a :class:`LinearRecurrence` (in log space with
    ``log_space``), which :func:`seqmask.rnn` runs as one linear scan.
    """
    log_space = _checks.flag(scan[0], "log_space", name)
    method = _checks.one_of(scan[1], _METHODS, "method", name)
    options = options.checked(name)
    layout = Layout(name, hidden_size, blocks=blocks, recurrent=False)
    init = init_params(layout, options)

    def coefficients(params, projected):
        d, v = gate(projected)
        candidate = _g(v) if log_space else v
        return jax.nn.sigmoid(-d), jax.nn.sigmoid(d) * candidate

    def log_coefficients(params, projected):
        d, v = gate(projected)
        return -jax.nn.softplus(d), -jax.nn.softplus(-d) + _log_g(v)

    def step(params, h, projected, compute):
        a, b = coefficients(params, projected)
        new_h = a * h.astype(projected.dtype) + b
        return new_h.astype(h.dtype), new_h.astype(compute)

    linear = LinearRecurrence(
        coefficients=coefficients,
        log_coefficients=log_coefficients if log_space else None,
        method=method,
    )
    return make_cell(layout, init=init, step=step, dtype=options.dtype, linear=linear)


def min_gru(
    hidden_size: int,
    *,
    log_space: bool = False,
    method: str = "auto",
    dtype=None,
    param_dtype=jnp.float32,
    kernel_init: Initializer = LECUN_NORMAL,
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
    ``apply`` is one sequential step (for decoding). The cell declares its
    recurrence (:attr:`Cell.linear`), so :func:`seqmask.rnn` runs a whole
    sequence as one :func:`seqmask.linear_scan`, with the mask, resets and
    reverse semantics of :func:`seqmask.masked_scan` over ``apply``;
    ``method="sequential"`` makes that scan sequential.

    Parameters (blocks of width ``H`` in the order ``z, h``):
    ``input_kernel`` ``[I, 2H]`` (``W_z`` then ``W_h``) and ``bias`` ``[2H]``.
    From the paper's PyTorch code: ``input_kernel = concat([linear_z.weight.T,
    linear_h.weight.T], 1)``, ``bias = concat([linear_z.bias,
    linear_h.bias])``.

    Args:
      hidden_size: ``H``.
      log_space: use the paper's positive candidate :math:`g` and run the
        scan in log space.
      method: how :func:`seqmask.rnn` scans in linear space:
        ``"associative"`` (:math:`O(\log T)` depth), ``"sequential"``, or
        ``"auto"`` (sequential on CPU, associative on accelerators; see
        ``benchmarks/README.md``). The log-space scan is always associative.
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
    hidden_size = _checks.positive_int(hidden_size, "hidden_size", "min_gru")

    def gate(projected):
        k, v = jnp.split(projected, 2, axis=-1)
        return k, v

    options = Options(dtype, param_dtype, kernel_init, None, bias_init)
    scan = (log_space, method)
    return _make_min_cell("min_gru", hidden_size, 2, gate, scan, options)


def min_lstm(
    hidden_size: int,
    *,
    log_space: bool = False,
    method: str = "auto",
    dtype=None,
    param_dtype=jnp.float32,
    kernel_init: Initializer = LECUN_NORMAL,
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
    :func:`seqmask.rnn` runs a whole sequence as one linear scan (see
    :func:`min_gru`), with the semantics of :func:`seqmask.masked_scan` over
    ``apply``.

    Parameters (blocks of width ``H`` in the order ``f, i, h``):
    ``input_kernel`` ``[I, 3H]`` and ``bias`` ``[3H]``; from the paper's
    PyTorch code, the transposed weights (and the biases) of ``linear_f``,
    ``linear_i`` and ``linear_h`` concatenated in that order.

    Args:
      hidden_size: ``H``.
      log_space, method, dtype, param_dtype, kernel_init, bias_init: as
        :func:`min_gru`.

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
    hidden_size = _checks.positive_int(hidden_size, "hidden_size", "min_lstm")

    def gate(projected):
        # d = log(i / f): the normalised gates are sigmoid(d) and sigmoid(-d).
        k_f, k_i, v = jnp.split(projected, 3, axis=-1)
        return jax.nn.softplus(-k_f) - jax.nn.softplus(-k_i), v

    options = Options(dtype, param_dtype, kernel_init, None, bias_init)
    scan = (log_space, method)
    return _make_min_cell("min_lstm", hidden_size, 3, gate, scan, options)
