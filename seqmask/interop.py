"""Converting cell parameters from and to PyTorch's recurrent layers.

seqmask's ``lstm``, ``gru`` and ``simple_rnn`` use PyTorch's gate orders
(``i, f, g, o`` and ``r, z, n``) and equations, so conversion is a transpose
and, for the LSTM and Elman RNN, a sum of PyTorch's two bias vectors (the
two are redundant there; GRU keeps both because ``b_hn`` sits inside the
reset gate's product). Everything works on NumPy arrays (or anything with
``__array__``, including ``torch.Tensor``): torch is never imported.

PyTorch's state-dict names, for layer ``k`` of ``nn.LSTM`` / ``nn.GRU`` /
``nn.RNN`` (suffix ``_reverse`` for the backward direction)::

  weight_ih_l{k}  [G*H, I]    ->  input_kernel      [I, G*H]   (transposed)
  weight_hh_l{k}  [G*H, H]    ->  recurrent_kernel  [H, G*H]   (transposed)
  bias_ih_l{k}    [G*H]       \\
  bias_hh_l{k}    [G*H]       /-> bias [G*H] = sum (LSTM, RNN);
                                  input_bias, recurrent_bias (GRU)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import seqmask._checks as _checks
from seqmask.cells import Cell

__all__ = ["from_torch", "to_torch"]

# seqmask cell name -> (kind, gate blocks); PyTorch's module ``mode`` -> name.
_CELLS = {
    "lstm": ("lstm", 4),
    "gru": ("gru", 3),
    "simple_rnn": ("simple_rnn", 1),
    "simple_rnn(relu)": ("simple_rnn", 1),
}
_TORCH_MODES = {
    "LSTM": "lstm",
    "GRU": "gru",
    "RNN_TANH": "simple_rnn",
    "RNN_RELU": "simple_rnn(relu)",
}
_LOOKS_LIKE = {4: "an LSTM", 3: "a GRU", 1: "an Elman RNN (nn.RNN)"}


def _kind(cell: Cell, where: str) -> str:
    """``"lstm"``, ``"gru"`` or ``"simple_rnn"``; ``TypeError`` for any cell
    PyTorch has no layer for."""
    if not isinstance(cell, Cell):
        _checks.fail(
            where, f"cell must be a seqmask Cell; got {type(cell).__name__}.", TypeError
        )
    if cell.name in _CELLS:
        return _CELLS[cell.name][0]
    hint = ""
    if cell.name.startswith("learnable_initial_state("):
        hint = (
            " For a learnable initial state, convert the inner cell and put the "
            "result under params['cell']."
        )
    elif cell.name.startswith("simple_rnn("):
        hint = " PyTorch's nn.RNN has only the nonlinearities 'tanh' and 'relu'."
    _checks.fail(
        where,
        f"PyTorch conversion supports the cells {sorted(_CELLS)}; got "
        f"{cell.name!r}.{hint}",
        TypeError,
    )


def _to_numpy(value) -> np.ndarray:
    # torch tensors that require grad refuse __array__; detach them without
    # importing torch.
    if hasattr(value, "detach"):
        value = value.detach()
    if hasattr(value, "cpu"):
        value = value.cpu()
    if (
        hasattr(value, "float")
        and hasattr(value, "dtype")
        and "bfloat16" in str(value.dtype)
    ):
        value = value.float()
    return np.asarray(value)


def _state_dict(source, where: str) -> tuple[Mapping[str, Any], Any]:
    """The state dict of ``source`` (a module, duck-typed, or a mapping), and
    the module or None."""
    if callable(getattr(source, "state_dict", None)):
        return source.state_dict(), source
    if isinstance(source, Mapping):
        return source, None
    _checks.fail(
        where,
        "source must be a PyTorch module (anything with state_dict()) or a "
        f"state dict mapping names to tensors; got {_checks.describe(source)}.",
        TypeError,
    )


def _prefix(state: Mapping[str, Any], name: str, prefix, where: str) -> str:
    """The key prefix of the recurrent layer (``""`` or ``"encoder.rnn."``)."""
    if prefix is not None:
        return _given_prefix(prefix, where)
    found = sorted(
        key[: -len(name)]
        for key in state
        if key.endswith(name) and (key == name or key[-len(name) - 1] == ".")
    )
    if len(found) > 1:
        _checks.fail(
            where,
            f"the state dict has several recurrent layers with {name}, under the "
            f"prefixes {found}; pass prefix= one of them.",
        )
    return found[0] if found else ""


def _given_prefix(prefix, where: str) -> str:
    """A prefix as given, with the ``"."`` that ends a module path added."""
    if not isinstance(prefix, str):
        _checks.fail(
            where,
            f"prefix must be a str; got {_checks.describe(prefix)}.",
            TypeError,
        )
    return prefix if not prefix or prefix.endswith(".") else prefix + "."


def _check_module(cell: Cell, module, prefix: str, where: str) -> None:
    """Refuses a module of another kind (e.g. a ReLU nn.RNN for a tanh cell)."""
    layer = module
    if prefix and callable(getattr(module, "get_submodule", None)):
        try:
            layer = module.get_submodule(prefix.rstrip("."))
        except (AttributeError, KeyError, ValueError):
            return
    mode = getattr(layer, "mode", None)
    torch_name = _TORCH_MODES.get(mode) if isinstance(mode, str) else None
    if torch_name is not None and torch_name != cell.name:
        fix = (
            " Build the cell with seqmask.cells.simple_rnn(H, activation='relu')."
            if torch_name == "simple_rnn(relu)"
            else ""
        )
        path = f"{prefix.rstrip('.')} " if prefix else ""
        _checks.fail(
            where,
            f"wrong cell kind: the PyTorch module {path}is "
            f"{type(layer).__name__}(mode={layer.mode!r}), which is seqmask's "
            f"{torch_name!r}; the cell is {cell.name!r}.{fix}",
        )
    if getattr(layer, "proj_size", 0):
        _checks.fail(where, "LSTMs with proj_size > 0 (weight_hr) are not supported.")


def _expected(cell: Cell, input_size: int):
    # input_size must stay a Python int (eval_shape would trace it, and
    # cell.init needs it static), so close over it.
    return jax.eval_shape(lambda key: cell.init(key, input_size), jax.random.key(0))


def _check_gates(cell: Cell, kind: str, name: str, w_hh: np.ndarray, where: str):
    """``wrong cell kind`` when the gate blocks of ``weight_hh`` say so."""
    if w_hh.ndim != 2:
        _checks.fail(where, f"{name} must be 2-D [G*H, H]; got shape {w_hh.shape}.")
    rows, hidden = w_hh.shape
    gates = _CELLS[cell.name][1]
    if hidden and rows % hidden == 0 and rows // hidden != gates:
        found = rows // hidden
        looks = _LOOKS_LIKE.get(found, f"a layer with {found} gate blocks")
        _checks.fail(
            where,
            f"wrong cell kind: {name} has shape {w_hh.shape}, {found} gate blocks "
            f"of H={hidden} as in {looks}; the cell is {cell.name!r}, which has "
            f"{gates}.",
        )


def from_torch(
    cell: Cell,
    source: Any,
    layer: int = 0,
    reverse: bool = False,
    *,
    prefix: str | None = None,
) -> dict[str, jax.Array]:
    """Parameters for ``cell`` from a PyTorch LSTM / GRU / RNN.

    A state dict does not say whether an ``nn.RNN`` uses tanh or ReLU: pass
    the module itself (or its parent) and a cell of the other nonlinearity
    is refused; with a state dict, build the cell to match
    (``simple_rnn(H, activation="relu")`` for ``nonlinearity="relu"``).

    Args:
      cell: a seqmask ``lstm``, ``gru`` or ``simple_rnn`` (tanh or relu) cell
        with the hidden size of the PyTorch layer.
      source: the PyTorch module (anything with ``state_dict()``; a parent
        module works too), or a mapping from PyTorch's parameter names to
        arrays (``module.state_dict()``, ``dict(module.named_parameters())``).
      layer: which layer of a multi-layer module.
      reverse: take the backward direction of a bidirectional module.
      prefix: the key prefix of the recurrent layer in a parent's state dict
        (e.g. ``"encoder.rnn."``); default: found from the keys, and an error
        listing the prefixes when there are several.

    Returns:
      The cell's parameter dict, in the cell's parameter dtype.

    Raises:
      TypeError: an unsupported cell, or a source that is neither a module
        nor a mapping.
      ValueError: missing keys, several candidate prefixes, parameters of
        another kind of cell ("wrong cell kind") or another hidden size.

    Examples:
      >>> import numpy as np
      >>> from seqmask.cells import gru
      >>> from seqmask.interop import from_torch, to_torch
      >>> rng = np.random.default_rng(0)
      >>> sd = {"weight_ih_l0": rng.normal(size=(12, 3)),
      ...       "weight_hh_l0": rng.normal(size=(12, 4)),
      ...       "bias_ih_l0": rng.normal(size=12), "bias_hh_l0": rng.normal(size=12)}
      >>> params = from_torch(gru(4), sd)
      >>> params["input_kernel"].shape
      (3, 12)
      >>> back = to_torch(gru(4), params)
      >>> bool(np.allclose(back["weight_hh_l0"], sd["weight_hh_l0"]))
      True
    """
    where = "from_torch"
    kind = _kind(cell, where)
    suffix = _suffix(layer, reverse, where)
    state, module = _state_dict(source, where)
    prefix = _prefix(state, f"weight_ih{suffix}", prefix, where)
    if module is not None:
        _check_module(cell, module, prefix, where)
    names = {
        key: f"{prefix}{key}{suffix}"
        for key in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")
    }
    missing = [names[k] for k in ("weight_ih", "weight_hh") if names[k] not in state]
    if missing:
        available = sorted(k for k in state if "weight" in k)
        _checks.fail(
            where,
            f"state_dict has no {missing} (layer={layer}, reverse={reverse}); its "
            f"weights are {available}.",
        )
    if names["weight_hr"] in state:
        _checks.fail(where, "LSTMs with proj_size > 0 (weight_hr) are not supported.")
    w_ih = _to_numpy(state[names["weight_ih"]])
    w_hh = _to_numpy(state[names["weight_hh"]])
    _check_gates(cell, kind, names["weight_hh"], w_hh, where)
    if w_ih.ndim != 2:
        _checks.fail(
            where, f"{names['weight_ih']} must be 2-D [G*H, I]; got {w_ih.shape}."
        )
    biases = [names[k] for k in ("bias_ih", "bias_hh") if names[k] in state]
    if len(biases) == 1:  # bias=False has neither; one alone is a torn state dict
        other = ({names["bias_ih"], names["bias_hh"]} - set(biases)).pop()
        _checks.fail(
            where,
            f"state_dict has {biases[0]} but no {other}: PyTorch layers have "
            "both biases (bias=True) or neither (bias=False).",
        )
    zeros = np.zeros(w_hh.shape[0], w_hh.dtype)
    b_ih, b_hh = (
        _bias(state, names[key], zeros.shape, where) if names[key] in state else zeros
        for key in ("bias_ih", "bias_hh")
    )
    arrays = {"input_kernel": w_ih.T, "recurrent_kernel": w_hh.T}
    if kind == "gru":
        arrays.update(input_bias=b_ih, recurrent_bias=b_hh)
    else:
        arrays["bias"] = b_ih.astype(np.float64) + b_hh.astype(np.float64)
    input_size = int(w_ih.shape[1])
    params = {}
    for key, spec in _expected(cell, input_size).items():
        value = arrays[key]
        if value.shape != spec.shape:
            _checks.fail(
                where,
                f"{key} from the state dict has shape {value.shape}; the {cell.name} "
                f"cell (hidden_size={cell.hidden_size}) with input size "
                f"{input_size} needs {spec.shape}. Is hidden_size right?",
            )
        params[key] = jnp.asarray(value, spec.dtype)
    return params


def _bias(state, name: str, shape: tuple, where: str) -> np.ndarray:
    """A bias vector of the state dict, ``[G*H]`` like ``weight_hh``'s rows
    (before any sum, which would broadcast a wrong shape)."""
    bias = _to_numpy(state[name])
    if bias.shape != shape:
        _checks.fail(
            where,
            f"{name} must have shape {shape} ([G*H], one entry a row of "
            f"weight_hh); got {bias.shape}.",
        )
    return bias


def _suffix(layer, reverse, where: str) -> str:
    layer = _checks.non_negative_int(layer, "layer", where)
    reverse = _checks.flag(reverse, "reverse", where)
    return f"_l{layer}" + ("_reverse" if reverse else "")


def to_torch(
    cell: Cell,
    params: Mapping[str, Any],
    layer: int = 0,
    reverse: bool = False,
    *,
    prefix: str = "",
    module: Any = None,
) -> dict[str, np.ndarray]:
    """PyTorch state-dict entries for one layer/direction, as NumPy arrays.

    The parameters are checked against the cell first (names, shapes and
    dtypes of ``cell.init`` for their input size). For LSTM and Elman RNN the
    combined bias goes to ``bias_ih`` and ``bias_hh`` is zero (PyTorch adds
    the two). Merge the dicts of several layers with ``{**a, **b}`` and load
    them with ``module.load_state_dict({k: torch.from_numpy(v) for k, v in
    sd.items()})``.

    Args:
      cell: the seqmask cell the parameters belong to.
      params: its parameter dict.
      layer: the PyTorch layer index to name the entries for.
      reverse: name them for the backward direction.
      prefix: the path of the layer in a parent module, prepended to every
        name (``"encoder.rnn"`` or ``"encoder.rnn."``: the ``"."`` is added
        where missing, as in :func:`from_torch`).
      module: optionally the PyTorch module (or parent) the entries are for:
        a module of another kind (e.g. a ReLU ``nn.RNN`` for a tanh cell), or
        entries it does not have or of other shapes, are refused.

    Returns:
      ``{name: np.ndarray}`` with PyTorch's names and layouts, in the
      parameters' dtype. ``torch.from_numpy`` cannot read bfloat16 arrays
      (NumPy's ``ml_dtypes.bfloat16``): cast them, e.g.
      ``torch.from_numpy(v.astype(np.float32)).to(torch.bfloat16)``.

    Raises:
      TypeError: an unsupported cell, or ``params`` not a mapping.
      ValueError: parameters that do not match the cell, or the module.
    """
    where = "to_torch"
    kind = _kind(cell, where)
    suffix = _suffix(layer, reverse, where)
    prefix = _given_prefix(prefix, where)
    _check_names(cell, params, where)
    recurrent = _to_numpy(params["recurrent_kernel"])
    _check_gates(cell, kind, "params['recurrent_kernel'].T", recurrent.T, where)
    input_size = int(np.shape(params["input_kernel"])[0])
    _checks.tree_like(
        dict(params),
        _expected(cell, input_size),
        "params",
        where,
        expected_from=f"{cell.name}(hidden_size={cell.hidden_size}) with input "
        f"size {input_size}",
        dtype_error=TypeError,
        dtype_hint="PyTorch loads float32 state dicts: cast the parameters first, "
        "e.g. jax.tree.map(lambda p: p.astype(jnp.float32), params).",
    )
    arrays = {k: np.asarray(jax.device_get(v)) for k, v in params.items()}
    if kind == "gru":
        biases = (arrays["input_bias"].copy(), arrays["recurrent_bias"].copy())
    else:
        biases = (arrays["bias"].copy(), np.zeros_like(arrays["bias"]))
    state = {
        f"{prefix}weight_ih{suffix}": np.ascontiguousarray(arrays["input_kernel"].T),
        f"{prefix}weight_hh{suffix}": np.ascontiguousarray(
            arrays["recurrent_kernel"].T
        ),
        f"{prefix}bias_ih{suffix}": biases[0],
        f"{prefix}bias_hh{suffix}": biases[1],
    }
    if module is not None:
        _check_module(cell, module, prefix, where)
        _check_against_module(state, module, where)
    return state


def _check_names(cell: Cell, params, where: str) -> None:
    """``params`` is a mapping with exactly the cell's parameter names."""
    if not isinstance(params, Mapping):
        _checks.fail(
            where,
            f"params must be the parameter dict of a {cell.name} cell; got "
            f"{_checks.describe(params)}.",
            TypeError,
        )
    required = sorted(_expected(cell, 1))
    missing = [k for k in required if k not in params]
    unexpected = sorted(str(k) for k in params if k not in required)
    if missing or unexpected:
        gru_names = {"input_bias", "recurrent_bias"} <= set(params)
        kind = "wrong cell kind: " if gru_names != (cell.name == "gru") else ""
        _checks.fail(
            where,
            f"{kind}params for a {cell.name} cell need {required}; missing "
            f"{missing}, unexpected {unexpected} (got {sorted(map(str, params))}).",
        )


def _check_against_module(state, module, where: str) -> None:
    target, _ = _state_dict(module, where)
    for name, value in state.items():
        layer = name.rsplit("bias_", 1)[0] if "bias_" in name else None
        if (
            name not in target
            and layer is not None
            and not any(k.startswith(f"{layer}bias_") for k in target)
        ):
            _checks.fail(
                where,
                f"the module has no {name!r}: it was built with bias=False, and "
                "seqmask's cells have biases. Build it with bias=True, or leave "
                "out the bias entries if they are zero.",
            )
        if name not in target:
            available = sorted(k for k in target if "weight" in k)
            _checks.fail(
                where,
                f"the module has no {name!r}; its weights are {available}. Check "
                "layer, reverse and prefix.",
            )
        shape = tuple(getattr(target[name], "shape", ()))
        if shape != value.shape:
            _checks.fail(
                where,
                f"{name} would have shape {value.shape}; the module's has {shape}.",
            )
