"""``min_gru`` and ``min_lstm``: cells that are linear recurrences."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from seqmask.cells._base import (
    _LECUN_NORMAL,
    Cell,
    Initializer,
    _check_input,
    _check_size,
    _dense,
    _dtypes,
)

# The log-space scan is scan machinery that only the min cells use, so it
# stays private to seqmask rather than joining the public API.
from seqmask.scan import linear_scan
from seqmask.scan._linear import _log_linear_scan


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
