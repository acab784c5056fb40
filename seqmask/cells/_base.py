"""The ``Cell`` record and what the built-in cells share: dtypes, dense steps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

import seqmask._checks as _checks
from seqmask._numerics import dense, wider
from seqmask.cells._layout import Layout, label_of, param_dtype

Params = Any
Carry = Any
Initializer = Callable[..., jax.Array]


class LinearRecurrence(NamedTuple):
    """Declares that a cell's step is the linear recurrence ``h = a * h + b``.

    ``a`` and ``b`` depend on the input only, so a whole sequence is one
    :func:`seqmask.linear_scan`, which :func:`seqmask.rnn` runs instead of a
    step-by-step scan (with the same values). The cell's carry is one array
    ``h`` ``[*batch, H]``.

    Attributes:
      coefficients: ``(params, projected) -> (a, b)``, each broadcasting to
        ``[..., H]``, from the cell's ``project_inputs`` output (any leading
        axes), in the dtype the projection accumulates in.
      log_coefficients: optional ``(params, projected) -> (log a, log b)``
        for positive ``a`` and ``b``: when given, the scan sums in log space.
      method: how the linear-space scan runs: ``"associative"``,
        ``"sequential"`` or ``"auto"`` (sequential on CPU, associative on
        accelerators). The log-space scan is always associative.
    """

    coefficients: Callable[[Params, Any], tuple[jax.Array, jax.Array]]
    log_coefficients: Callable[[Params, Any], tuple[jax.Array, jax.Array]] | None = None
    method: str = "auto"


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
      linear: optional :class:`LinearRecurrence`: the step is linear in the
        carry, and :func:`seqmask.rnn` runs the sequence as one linear scan
        over ``project_inputs``' output.
      name: a readable name (``"lstm"``, ``"learnable_initial_state(gru)"``).
      hidden_size: the size of the hidden state, when it has one.
      check_params: optional ``(params, where, input_size=None,
        name="params") -> None``: raises ``TypeError`` or ``ValueError``
        (the message starting with ``where``) unless ``params`` are this
        cell's parameters, for ``input_size`` input features when given.
        :func:`seqmask.rnn` and the layers call it once per call; the
        built-in cells' own functions call it too.
    """

    init: Callable[[jax.Array, int], Params]
    initial_carry: Callable[[Params, tuple[int, ...]], Carry]
    apply: Callable[[Params, Carry, jax.Array], tuple[Carry, jax.Array]]
    project_inputs: Callable[[Params, jax.Array], Any] | None = None
    apply_projected: Callable[[Params, Carry, Any], tuple[Carry, jax.Array]] | None = (
        None
    )
    linear: LinearRecurrence | None = None
    name: str = "cell"
    hidden_size: int | None = None
    check_params: Callable[..., None] | None = None


def label(cell: Cell) -> str:
    """``"lstm(8)"``: the cell's name and hidden size, for messages."""
    return label_of(cell.name, cell.hidden_size)


class Options(NamedTuple):
    """The options every built-in cell factory takes, as given (see
    :meth:`checked`); ``recurrent_init`` is None for the cells without a
    recurrent kernel, and for the default orthogonal blocks."""

    dtype: Any
    param_dtype: Any
    kernel_init: Initializer
    recurrent_init: Initializer | None
    bias_init: Initializer

    def checked(self, where: str) -> Options:
        """The options with the dtypes read as dtypes: ``TypeError`` for a
        dtype that is not a floating one or an initialiser that is not a
        function, at construction rather than at the first ``init``."""
        signature = "(key, shape, dtype) -> array"
        for name in ("kernel_init", "bias_init"):
            _checks.function(getattr(self, name), name, where, signature)
        if self.recurrent_init is not None:
            _checks.function(self.recurrent_init, "recurrent_init", where, signature)
        return self._replace(
            dtype=_checks.optional_dtype(self.dtype, "dtype", where, floating=True),
            param_dtype=_checks.dtype(
                self.param_dtype, "param_dtype", where, floating=True
            ),
        )


def init_params(layout: Layout, options: Options) -> Callable[[jax.Array, int], Params]:
    """The ``init`` of a built-in cell: every parameter of ``layout``, in its
    order (input kernel, recurrent kernel, biases), each from its own key.

    The recurrent kernel is one orthogonal matrix a gate block unless
    ``options.recurrent_init`` is given.
    """
    param_dtype = options.param_dtype

    def init(key, input_size):
        shapes = layout.param_shapes(input_size)
        keys = jax.random.split(key, len(shapes))
        params = {}
        for k, (name, shape) in zip(keys, shapes.items(), strict=True):
            if name == "input_kernel":
                params[name] = options.kernel_init(k, shape, param_dtype)
            elif name != "recurrent_kernel":
                params[name] = options.bias_init(k, shape, param_dtype)
            elif options.recurrent_init is not None:
                params[name] = options.recurrent_init(k, shape, param_dtype)
            else:
                params[name] = orthogonal_blocks(
                    k, layout.hidden_size, layout.blocks, param_dtype
                )
        return params

    return init


def orthogonal_blocks(key, hidden_size: int, blocks: int, dtype) -> jax.Array:
    """``[H, blocks * H]``: one orthogonal ``[H, H]`` matrix per gate.

    Drawn in float32 (or wider) and cast: the QR decomposition behind the
    orthogonal initialiser has no kernel for narrower floats on every
    backend (bfloat16 on CPU).
    """
    keys = jax.random.split(key, blocks)
    init = jax.nn.initializers.orthogonal()
    draw = wider(dtype, jnp.float32)
    return jnp.concatenate(
        [init(k, (hidden_size, hidden_size), draw) for k in keys], 1
    ).astype(dtype)


def dtypes(dtype, x_dtype, param_dtype):
    """The compute dtype of the matmuls and the dtype they accumulate in.

    Like Flax: without an explicit ``dtype`` the computation runs in the
    promotion of the input and parameter dtypes (bfloat16 inputs with float32
    parameters compute in float32); with ``dtype=jnp.bfloat16`` the matmuls
    take bfloat16 operands and still accumulate in the parameter dtype.
    """
    compute = jnp.dtype(dtype) if dtype is not None else wider(x_dtype, param_dtype)
    return compute, wider(compute, param_dtype)


def make_cell(
    layout: Layout,
    *,
    init: Callable[[jax.Array, int], Params],
    step: Callable[[Params, Carry, jax.Array, Any], tuple[Carry, jax.Array]],
    dtype,
    linear: LinearRecurrence | None = None,
) -> Cell:
    """Assemble a built-in cell whose input projection is ``x @ input_kernel + b``.

    ``step(params, carry, projected_x, compute_dtype)`` is the recurrent part.
    The projection is held in the accumulation dtype (rounding it to bfloat16
    before adding the recurrent term would throw away precision the carry
    keeps), so ``step`` accumulates in ``projected_x.dtype``. Every function
    checks its parameters, carry and inputs against ``layout`` first (at
    trace time).
    """
    name = layout.name
    width = layout.blocks * layout.hidden_size

    def checked_init(key, input_size):
        where = f"{name}.init"
        _checks.prng_key(key, "key", where)
        input_size = _checks.positive_int(input_size, "input_size", where)
        return init(key, input_size)

    def initial_carry(params, batch_shape=()):
        where = f"{name}.initial_carry"
        layout.check_params(params, where)
        batch_shape = _checks.shape_tuple(batch_shape, "batch_shape", where)
        return layout.zero_carry(batch_shape, param_dtype(params))

    def project(params, xs, where):
        layout.check_params(params, where)
        kernel = params["input_kernel"]
        xs = layout.check_inputs(xs, kernel.shape[0], "inputs", where)
        compute, acc = dtypes(dtype, xs.dtype, kernel.dtype)
        bias = params["input_bias"] if layout.two_biases else params["bias"]
        return dense(xs, kernel, bias, compute, acc)

    def recur(params, carry, projected, where):
        layout.check_params(params, where)
        projected = layout.check_inputs(projected, width, "projected inputs", where)
        layout.check_carry(carry, projected.shape[:-1], param_dtype(params), where)
        compute, _ = dtypes(dtype, projected.dtype, params["input_kernel"].dtype)
        return step(params, carry, projected, compute)

    def project_inputs(params, xs):
        return project(params, xs, f"{name}.project_inputs")

    def apply_projected(params, carry, projected):
        return recur(params, carry, projected, f"{name}.apply_projected")

    def apply(params, carry, x):
        where = f"{name}.apply"
        return recur(params, carry, project(params, x, where), where)

    return Cell(
        init=checked_init,
        initial_carry=initial_carry,
        apply=apply,
        project_inputs=project_inputs,
        apply_projected=apply_projected,
        linear=linear,
        name=name,
        hidden_size=layout.hidden_size,
        check_params=layout.check_params,
    )


def recurrent_matmul(h, kernel, compute, acc):
    """``h @ kernel`` with operands in ``compute``, accumulating in ``acc``."""
    return dense(h, kernel, None, compute, acc)
