"""Bad inputs to the PyTorch conversions (host side, never traced).

Regressions of answers that used to be silently wrong or unclear: a ReLU
``nn.RNN`` converted into a tanh cell, a parent module's prefixed keys
reported as missing, GRU weights given to an LSTM reported as a hidden-size
problem, ``to_torch`` writing parameters of another cell or dtype.
"""

from __future__ import annotations

import jax
import numpy as np
from bad_inputs_common import Case

from seqmask.cells import gru, learnable_initial_state, lstm, simple_rnn
from seqmask.interop import from_torch, to_torch

H, F = 4, 3


def _state(gates: int, prefix: str = "", layer: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(gates)
    return {
        f"{prefix}weight_ih_l{layer}": rng.normal(size=(gates * H, F)),
        f"{prefix}weight_hh_l{layer}": rng.normal(size=(gates * H, H)),
        f"{prefix}bias_ih_l{layer}": rng.normal(size=gates * H),
        f"{prefix}bias_hh_l{layer}": rng.normal(size=gates * H),
    }


class _Module:
    """A duck-typed PyTorch recurrent module: ``state_dict()`` and ``mode``."""

    def __init__(self, state, mode):
        self._state, self.mode = state, mode

    def state_dict(self):
        return dict(self._state)


def _params(cell):
    shapes = jax.eval_shape(lambda key: cell.init(key, F), jax.random.key(0))
    return {k: np.zeros(v.shape, v.dtype) for k, v in shapes.items()}


LSTM_PARAMS = _params(lstm(H))
GRU_PARAMS = _params(gru(H))

CASES: list[Case] = [
    Case(
        "from_torch-lstm-bias-of-one-entry",
        lambda: from_torch(lstm(H), {**_state(4), "bias_ih_l0": np.array([0.5])}),
        ValueError,
        ["from_torch", "bias_ih_l0 must have shape", r"\(16,\)", r"got \(1,\)"],
    ),
    Case(
        "from_torch-lstm-bias-short",
        lambda: from_torch(lstm(H), {**_state(4), "bias_hh_l0": np.zeros(3)}),
        ValueError,
        ["from_torch", "bias_hh_l0 must have shape", r"got \(3,\)"],
    ),
    Case(
        # One bias alone was a zero for the other, silently.
        "from_torch-gru-without-bias_hh",
        lambda: from_torch(
            gru(H), {k: v for k, v in _state(3).items() if k != "bias_hh_l0"}
        ),
        ValueError,
        ["from_torch", "bias_ih_l0 but no bias_hh_l0", "bias=False"],
    ),
    Case(
        "from_torch-lstm-without-bias_ih",
        lambda: from_torch(
            lstm(H), {k: v for k, v in _state(4).items() if k != "bias_ih_l0"}
        ),
        ValueError,
        ["from_torch", "bias_hh_l0 but no bias_ih_l0"],
    ),
    Case(
        "to_torch-prefix-not-a-str",
        lambda: to_torch(gru(H), GRU_PARAMS, prefix=3),
        TypeError,
        ["to_torch", "prefix must be a str", "int 3"],
    ),
    Case(
        "to_torch-module-without-biases",
        lambda: to_torch(
            gru(H),
            GRU_PARAMS,
            module=_Module(
                {k: v for k, v in _state(3).items() if "bias" not in k}, "GRU"
            ),
        ),
        ValueError,
        ["to_torch", "no 'bias_ih_l0'", "bias=False", "bias=True"],
    ),
    Case(
        # The layer has no biases though its parent (a Linear head) has one.
        "to_torch-nested-module-without-biases",
        lambda: to_torch(
            gru(H),
            GRU_PARAMS,
            prefix="rnn",
            module=_Module(
                {
                    "head.bias": np.zeros(2),
                    **{f"rnn.{k}": v for k, v in _state(3).items() if "bias" not in k},
                },
                "GRU",
            ),
        ),
        ValueError,
        ["to_torch", "no 'rnn.bias_ih_l0'", "bias=False"],
    ),
    Case(
        "from_torch-relu-module-to-tanh-cell",
        lambda: from_torch(simple_rnn(H), _Module(_state(1), "RNN_RELU")),
        ValueError,
        ["from_torch", "wrong cell kind", "RNN_RELU", "activation='relu'"],
    ),
    Case(
        "from_torch-tanh-module-to-relu-cell",
        lambda: from_torch(
            simple_rnn(H, activation="relu"), _Module(_state(1), "RNN_TANH")
        ),
        ValueError,
        ["from_torch", "wrong cell kind", "'simple_rnn'", r"'simple_rnn\(relu\)'"],
    ),
    Case(
        "from_torch-gru-weights-to-lstm",
        lambda: from_torch(lstm(H), _state(3)),
        ValueError,
        ["from_torch", "wrong cell kind", "3 gate blocks", "GRU", "'lstm'"],
    ),
    Case(
        "from_torch-lstm-module-to-gru",
        lambda: from_torch(gru(H), _Module(_state(4), "LSTM")),
        ValueError,
        ["from_torch", "wrong cell kind", "'LSTM'"],
    ),
    Case(
        "from_torch-ambiguous-prefix",
        lambda: from_torch(gru(H), {**_state(3, "enc."), **_state(3, "dec.")}),
        ValueError,
        ["from_torch", "several recurrent layers", r"\['dec\.', 'enc\.'\]", "prefix="],
    ),
    Case(
        "from_torch-wrong-prefix",
        lambda: from_torch(gru(H), _state(3, "enc."), prefix="encoder"),
        ValueError,
        ["from_torch", r"no \['encoder.weight_ih_l0'", "enc.weight_ih_l0"],
    ),
    Case(
        "from_torch-missing-layer",
        lambda: from_torch(gru(H), _state(3), layer=2),
        ValueError,
        ["from_torch", r"no \['weight_ih_l2'", "layer=2"],
    ),
    Case(
        "from_torch-wrong-hidden-size",
        lambda: from_torch(lstm(H + 1), _state(4)),
        ValueError,
        ["from_torch", "hidden_size=5", "Is hidden_size right"],
    ),
    Case(
        "from_torch-not-a-state-dict",
        lambda: from_torch(gru(H), [1, 2, 3]),
        TypeError,
        ["from_torch", "source must be a PyTorch module", "state dict"],
    ),
    Case(
        "from_torch-negative-layer",
        lambda: from_torch(gru(H), _state(3), layer=-1),
        ValueError,
        ["from_torch", "layer must be a non-negative int"],
    ),
    Case(
        "from_torch-string-reverse",
        lambda: from_torch(gru(H), _state(3), reverse="yes"),
        TypeError,
        ["from_torch", "reverse must be True or False"],
    ),
    Case(
        "from_torch-projections",
        lambda: from_torch(lstm(H), {**_state(4), "weight_hr_l0": np.zeros((2, H))}),
        ValueError,
        ["from_torch", "proj_size"],
    ),
    Case(
        "from_torch-learnable-initial-state",
        lambda: from_torch(learnable_initial_state(gru(H)), _state(3)),
        TypeError,
        ["from_torch", "convert the inner cell", r"params\['cell'\]"],
    ),
    Case(
        "from_torch-not-a-cell",
        lambda: from_torch("lstm", _state(4)),
        TypeError,
        ["from_torch", "cell must be a seqmask Cell", "str"],
    ),
    Case(
        "to_torch-gru-params-to-lstm",
        lambda: to_torch(lstm(H), GRU_PARAMS),
        ValueError,
        ["to_torch", "wrong cell kind", "missing", "unexpected"],
    ),
    Case(
        "to_torch-params-of-another-hidden-size",
        lambda: to_torch(lstm(2 * H), LSTM_PARAMS),
        ValueError,
        ["to_torch", "params does not match", r"lstm\(hidden_size=8\)"],
    ),
    Case(
        "to_torch-lstm-params-to-simple-rnn",
        lambda: to_torch(simple_rnn(H), LSTM_PARAMS),
        ValueError,
        ["to_torch", "wrong cell kind", "4 gate blocks"],
    ),
    Case(
        "to_torch-float16-params",
        lambda: to_torch(
            lstm(H), {k: v.astype(np.float16) for k, v in LSTM_PARAMS.items()}
        ),
        TypeError,
        ["to_torch", "float16", "expected float32", "cast the parameters first"],
    ),
    Case(
        "to_torch-params-not-a-dict",
        lambda: to_torch(lstm(H), None),
        TypeError,
        ["to_torch", "params must be the parameter dict"],
    ),
    Case(
        "to_torch-relu-module-for-tanh-cell",
        lambda: to_torch(
            simple_rnn(H), _params(simple_rnn(H)), module=_Module(_state(1), "RNN_RELU")
        ),
        ValueError,
        ["to_torch", "wrong cell kind", "RNN_RELU"],
    ),
    Case(
        "to_torch-module-lacks-the-layer",
        lambda: to_torch(
            lstm(H), LSTM_PARAMS, layer=1, module=_Module(_state(4), "LSTM")
        ),
        ValueError,
        ["to_torch", "the module has no 'weight_ih_l1'", "layer, reverse and prefix"],
    ),
]

# A dtype PyTorch's state dicts do not take is a wrong type, not a wrong value.
CASES += [
    Case(
        "to_torch-bfloat16-params",
        lambda: to_torch(
            gru(H), jax.tree.map(lambda p: p.astype(jax.numpy.bfloat16), GRU_PARAMS)
        ),
        TypeError,
        ["^to_torch", "bfloat16", "cast the parameters first"],
    ),
]
