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

from seqmask.cells import Cell

__all__ = ["from_torch", "to_torch"]

_KINDS = {"lstm": 4, "gru": 3, "simple_rnn": 1}


def _kind(cell: Cell, name: str) -> str:
    if not isinstance(cell, Cell):
        raise TypeError(
            f"{name}: cell must be a seqmask Cell; got {type(cell).__name__}."
        )
    if cell.name not in _KINDS:
        hint = ""
        if cell.name.startswith("learnable_initial_state("):
            hint = (
                " For a learnable initial state, convert the inner cell and put the "
                "result under params['cell']."
            )
        raise TypeError(
            f"{name}: PyTorch conversion supports the cells {sorted(_KINDS)}; got "
            f"{cell.name!r}.{hint}"
        )
    return cell.name


def _suffix(layer: int, reverse: bool) -> str:
    if isinstance(layer, bool) or not isinstance(layer, int) or layer < 0:
        raise ValueError(f"layer must be a non-negative int; got {layer!r}.")
    return f"_l{layer}" + ("_reverse" if reverse else "")


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


def from_torch(
    cell: Cell, state_dict: Mapping[str, Any], layer: int = 0, reverse: bool = False
) -> dict[str, jax.Array]:
    """Parameters for ``cell`` from a PyTorch LSTM / GRU / RNN state dict.

    Args:
      cell: a seqmask ``lstm``, ``gru`` or ``simple_rnn`` cell with the
        hidden size of the PyTorch layer.
      state_dict: mapping from PyTorch's parameter names to arrays
        (``module.state_dict()`` works as is).
      layer: which layer of a multi-layer module.
      reverse: take the backward direction of a bidirectional module.

    Returns:
      The cell's parameter dict, in the cell's parameter dtype.

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
    kind = _kind(cell, "from_torch")
    suffix = _suffix(layer, reverse)
    names = {
        "w_ih": f"weight_ih{suffix}",
        "w_hh": f"weight_hh{suffix}",
        "b_ih": f"bias_ih{suffix}",
        "b_hh": f"bias_hh{suffix}",
    }
    missing = [names[k] for k in ("w_ih", "w_hh") if names[k] not in state_dict]
    if missing:
        available = sorted(k for k in state_dict if k.startswith("weight"))
        raise ValueError(
            f"from_torch: state_dict has no {missing} (layer={layer}, "
            f"reverse={reverse}); its weights are {available}."
        )
    if f"weight_hr{suffix}" in state_dict:
        raise ValueError(
            "from_torch: LSTMs with proj_size > 0 (weight_hr) are not supported."
        )
    w_ih = _to_numpy(state_dict[names["w_ih"]])
    w_hh = _to_numpy(state_dict[names["w_hh"]])
    gate_width = w_hh.shape[0]
    b_ih = (
        _to_numpy(state_dict[names["b_ih"]])
        if names["b_ih"] in state_dict
        else np.zeros(gate_width, w_hh.dtype)
    )
    b_hh = (
        _to_numpy(state_dict[names["b_hh"]])
        if names["b_hh"] in state_dict
        else np.zeros(gate_width, w_hh.dtype)
    )
    if w_ih.ndim != 2:
        raise ValueError(
            f"from_torch: {names['w_ih']} must be 2-D [G*H, I]; got {w_ih.shape}."
        )
    input_size = int(w_ih.shape[1])
    # input_size must stay a Python int (eval_shape would trace it, and
    # cell.init needs it static), so close over it.
    expected = jax.eval_shape(lambda key: cell.init(key, input_size), jax.random.key(0))
    if kind == "gru":
        arrays = {
            "input_kernel": w_ih.T,
            "recurrent_kernel": w_hh.T,
            "input_bias": b_ih,
            "recurrent_bias": b_hh,
        }
    else:
        arrays = {
            "input_kernel": w_ih.T,
            "recurrent_kernel": w_hh.T,
            "bias": b_ih.astype(np.float64) + b_hh.astype(np.float64),
        }
    params = {}
    for key, spec in expected.items():
        value = arrays[key]
        if value.shape != spec.shape:
            raise ValueError(
                f"from_torch: {key} from the state dict has shape {value.shape}; the "
                f"{kind} cell (hidden_size={cell.hidden_size}) with input size "
                f"{input_size} needs {spec.shape}. Is hidden_size right?"
            )
        params[key] = jnp.asarray(value, spec.dtype)
    return params


def to_torch(
    cell: Cell, params: Mapping[str, Any], layer: int = 0, reverse: bool = False
) -> dict[str, np.ndarray]:
    """PyTorch state-dict entries for one layer/direction, as NumPy arrays.

    For LSTM and Elman RNN the combined bias goes to ``bias_ih`` and
    ``bias_hh`` is zero (PyTorch adds the two). Merge the dicts of several
    layers with ``{**a, **b}`` and load them with
    ``module.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})``.

    Args:
      cell: the seqmask cell the parameters belong to.
      params: its parameter dict.
      layer: the PyTorch layer index to name the entries for.
      reverse: name them for the backward direction.

    Returns:
      ``{name: np.ndarray}`` with PyTorch's names and layouts.
    """
    kind = _kind(cell, "to_torch")
    suffix = _suffix(layer, reverse)
    required = (
        ("input_kernel", "recurrent_kernel", "input_bias", "recurrent_bias")
        if kind == "gru"
        else ("input_kernel", "recurrent_kernel", "bias")
    )
    missing = [k for k in required if k not in params]
    if missing:
        raise ValueError(
            f"to_torch: params for a {kind} cell need {list(required)}; missing "
            f"{missing} (got {sorted(params)})."
        )
    arrays = {k: np.asarray(jax.device_get(params[k])) for k in required}
    state = {
        f"weight_ih{suffix}": np.ascontiguousarray(arrays["input_kernel"].T),
        f"weight_hh{suffix}": np.ascontiguousarray(arrays["recurrent_kernel"].T),
    }
    if kind == "gru":
        state[f"bias_ih{suffix}"] = arrays["input_bias"].copy()
        state[f"bias_hh{suffix}"] = arrays["recurrent_bias"].copy()
    else:
        state[f"bias_ih{suffix}"] = arrays["bias"].copy()
        state[f"bias_hh{suffix}"] = np.zeros_like(arrays["bias"])
    return state
