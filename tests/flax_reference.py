"""Flax cells' parameters and carries in ``numpy_reference``'s layout.

The drop-in tests compare seqmask's Flax modules with real Flax modules
wherever Flax is right, and with the independent NumPy loop of
``numpy_reference`` everywhere (any mask, empty rows, several batch axes).
These converters read Flax's parameter names (Linen and NNX) and write the
PyTorch-style layout the NumPy reference uses: gates concatenated in the
order ``i, f, g, o`` (LSTM) and ``r, z, n`` (GRU). They share no code with
seqmask.
"""

import numpy as np


def _cat(*arrays):
    return np.concatenate([np.asarray(a, np.float64) for a in arrays], axis=-1)


def to_reference(params) -> tuple[str, dict]:
    """``(numpy_reference cell name, its params)`` for a Flax cell's params."""
    keys = set(params)
    if keys == {"ii", "if", "ig", "io", "hi", "hf", "hg", "ho"} or keys == {
        "ii",
        "if_",
        "ig",
        "io",
        "hi",
        "hf",
        "hg",
        "ho",
    }:
        forget = "if" if "if" in keys else "if_"
        gates = [("ii", "hi"), (forget, "hf"), ("ig", "hg"), ("io", "ho")]
        return "lstm", {
            "input_kernel": _cat(*(params[i]["kernel"] for i, _ in gates)),
            "recurrent_kernel": _cat(*(params[h]["kernel"] for _, h in gates)),
            "bias": _cat(*(params[h]["bias"] for _, h in gates)),
        }
    if keys == {"ir", "iz", "in", "hr", "hz", "hn"}:
        hidden = np.shape(params["hn"]["bias"])[-1]
        zeros = np.zeros(2 * hidden)
        return "gru", {
            "input_kernel": _cat(*(params[g]["kernel"] for g in ("ir", "iz", "in"))),
            "input_bias": _cat(*(params[g]["bias"] for g in ("ir", "iz", "in"))),
            "recurrent_kernel": _cat(
                *(params[g]["kernel"] for g in ("hr", "hz", "hn"))
            ),
            "recurrent_bias": _cat(zeros, params["hn"]["bias"]),
        }
    if keys == {"i", "h"}:
        return "simple_rnn", {
            "input_kernel": _cat(params["i"]["kernel"]),
            "recurrent_kernel": _cat(params["h"]["kernel"]),
            "bias": _cat(params["i"]["bias"]),
        }
    if keys == {"dense_i", "dense_h"}:  # NNX's fused cells
        hidden, width = np.shape(params["dense_h"]["kernel"])
        blocks = width // hidden
        if blocks == 4:
            return "lstm", {
                "input_kernel": _cat(params["dense_i"]["kernel"]),
                "recurrent_kernel": _cat(params["dense_h"]["kernel"]),
                "bias": _cat(params["dense_h"]["bias"]),
            }
        if blocks == 3:
            return "gru", {
                "input_kernel": _cat(params["dense_i"]["kernel"]),
                "input_bias": _cat(params["dense_i"]["bias"]),
                "recurrent_kernel": _cat(params["dense_h"]["kernel"]),
                "recurrent_bias": np.zeros(width),
            }
        return "simple_rnn", {
            "input_kernel": _cat(params["dense_i"]["kernel"]),
            "recurrent_kernel": _cat(params["dense_h"]["kernel"]),
            "bias": _cat(params["dense_i"]["bias"]),
        }
    raise ValueError(f"no NumPy reference for a cell with parameters {sorted(keys)}")


def carry_to_reference(name: str, carry) -> tuple:
    """Flax's carry (``(c, h)`` for an LSTM, ``h`` otherwise) as the NumPy
    reference's tuple (``(h, c)`` or ``(h,)``)."""
    if name == "lstm":
        c, h = carry
        return (np.asarray(h, np.float64), np.asarray(c, np.float64))
    return (np.asarray(carry, np.float64),)


def carry_from_reference(name: str, carry: tuple):
    """The NumPy reference's carry tuple in Flax's layout."""
    if name == "lstm":
        h, c = carry
        return (c, h)
    return carry[0]
