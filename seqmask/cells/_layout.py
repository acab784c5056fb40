"""The parameter and carry layouts of the built-in cells, and their checks.

Every built-in cell is one of a few layouts: an input kernel ``[I, G*H]``
(``G`` gate blocks of width ``H``), a recurrent kernel ``[H, G*H]`` for the
dense cells, one bias or (GRU) two, and a carry that is ``h`` or
:class:`LSTMCarry` ``(h, c)``. A :class:`Layout` says which; it checks the
parameters, carries and inputs given to the cell's functions against it at
trace time, and :func:`looks_like` names the built-in cell that parameters
of another layout belong to, for the error message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

import seqmask._checks as _checks


class LSTMCarry(NamedTuple):
    """The LSTM carry: hidden state ``h`` and cell state ``c``, each ``[*batch, H]``."""

    h: jax.Array
    c: jax.Array


class Layout(NamedTuple):
    """What tells the built-in cells' parameters and carries apart."""

    name: str
    hidden_size: int
    blocks: int
    recurrent: bool = True
    two_biases: bool = False
    lstm_carry: bool = False

    @property
    def label(self) -> str:
        return label_of(self.name, self.hidden_size)

    def param_shapes(self, input_size: int) -> dict[str, tuple[int, ...]]:
        width = self.blocks * self.hidden_size
        shapes: dict[str, tuple[int, ...]] = {"input_kernel": (input_size, width)}
        if self.recurrent:
            shapes["recurrent_kernel"] = (self.hidden_size, width)
        if self.two_biases:
            shapes.update(input_bias=(width,), recurrent_bias=(width,))
        else:
            shapes["bias"] = (width,)
        return shapes

    def check_params(self, params, where: str, input_size=None, name="params"):
        """``params`` are this layout's, for ``input_size`` features when given
        (else for the input size of their own ``input_kernel``, which the
        message then does not claim to know)."""
        owner = self.label
        if input_size is None:
            kernel = params.get("input_kernel") if isinstance(params, Mapping) else None
            shape = tuple(getattr(kernel, "shape", ()))
            size = shape[0] if shape else 1
        else:
            size = input_size
            owner = f"{self.label} for {input_size} input features (the last axis)"
        dtype = param_dtype(params)
        expected = {
            key: jax.ShapeDtypeStruct(shape, dtype)
            for key, shape in self.param_shapes(int(size)).items()
        }
        _checks.params_like(
            params,
            expected,
            name,
            where,
            owner=owner,
            hint=_hint(params, expected, self.label),
        )

    def carry_spec(self, batch_shape, dtype) -> Any:
        h: Any = jax.ShapeDtypeStruct((*batch_shape, self.hidden_size), dtype)
        return LSTMCarry(h=h, c=h) if self.lstm_carry else h

    def zero_carry(self, batch_shape, dtype) -> Any:
        h = jnp.zeros((*batch_shape, self.hidden_size), dtype)
        return LSTMCarry(h=h, c=h) if self.lstm_carry else h

    def check_carry(self, carry, batch_shape, dtype, where: str) -> None:
        hint = ""
        if self.lstm_carry and not isinstance(carry, LSTMCarry):
            hint = (
                " Build it with seqmask.cells.LSTMCarry(h=..., c=...) (h first; "
                "Flax's LSTM carry is (c, h)), or with cell.initial_carry."
            )
        _checks.tree_like(
            carry,
            self.carry_spec(tuple(batch_shape), dtype),
            "carry",
            where,
            expected_from=f"{self.label}'s carry for batch shape {tuple(batch_shape)}",
            hint=hint,
            dtype_error=TypeError,
        )

    def check_inputs(self, x, width: int, name: str, where: str) -> jax.Array:
        """``x`` is floating ``[*batch, width]``."""
        x = _checks.floating_array(
            x,
            name,
            where,
            hint=" Cell inputs must be floating point: embed integer tokens first.",
        )
        if x.ndim < 1 or x.shape[-1] != width:
            _checks.fail(
                where,
                f"{name} must be [..., {width}] (the size the parameters were made "
                f"for); got shape {tuple(x.shape)}.",
            )
        return x


def label_of(name: str, hidden_size: int | None) -> str:
    """``"lstm(8)"``, ``"simple_rnn(8, relu)"``: a cell for messages."""
    if hidden_size is None:
        return name
    base, paren, options = name.partition("(")
    if paren and options.endswith(")"):
        return f"{base}({hidden_size}, {options[:-1]})"
    return f"{name}({hidden_size})"


def param_dtype(params) -> Any:
    """The dtype of the parameters (of their input kernel), float32 if none."""
    kernel = params.get("input_kernel") if isinstance(params, Mapping) else None
    dtype = getattr(kernel, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        return jnp.dtype(jnp.float32)
    return jnp.dtype(dtype)


def looks_like(params) -> str | None:
    """The built-in cell whose parameters ``params`` look like, if any."""
    if not isinstance(params, Mapping):
        return None
    keys = set(params)
    if keys == {"cell", "initial_carry"}:
        inner = looks_like(params["cell"])
        return f"learnable_initial_state({inner or '...'})"
    shapes = {key: tuple(getattr(value, "shape", ())) for key, value in params.items()}
    kernel = shapes.get("input_kernel", ())
    if len(kernel) != 2:
        return None
    recurrent = shapes.get("recurrent_kernel", ())
    if len(recurrent) == 2 and recurrent[0] > 0:
        hidden, blocks = recurrent[0], recurrent[1] // max(recurrent[0], 1)
        two = {"input_kernel", "recurrent_kernel", "input_bias", "recurrent_bias"}
        one = {"input_kernel", "recurrent_kernel", "bias"}
        name = {(3, True): "gru", (4, False): "lstm", (1, False): "simple_rnn"}.get(
            (blocks, keys == two)
        )
        return f"{name}({hidden})" if name and keys in (one, two) else None
    if keys == {"input_kernel", "bias"}:
        width = kernel[1]
        names = [f"min_gru({width // 2})"] if width % 2 == 0 else []
        names += [f"min_lstm({width // 3})"] if width % 3 == 0 else []
        return " or ".join(names) or None
    return None


def _hint(params, expected, label: str) -> str:
    """Which cell ``params`` belong to, unless they look like ``expected``
    (then the message itself says what differs)."""
    guess = looks_like(params)
    if guess is None or guess == looks_like(expected):
        return ""
    return (
        f"\nThese look like {guess} parameters; give {label} the parameters its "
        "own init makes."
    )
