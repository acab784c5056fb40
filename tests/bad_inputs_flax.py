"""Bad inputs to the Flax modules and adapters (``seqmask.linen``,
``seqmask.nnx``): wrong cells, wrong variables, Flax options seqmask does not
emulate, lengths outside the time axis, the old seqmask-only signatures.
Run by ``test_bad_inputs.py``."""

from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np
from bad_inputs_common import Case
from flax import nnx

import seqmask
import seqmask.linen as slinen
import seqmask.nnx as snnx
from seqmask import cells

B, T, IN, H = 3, 5, 2, 4
XS = np.zeros((B, T, IN), np.float32)
KEY = jax.random.key(0)
TOO_LONG = np.array([6, 2, 1])
NEGATIVE = np.array([5, -1, 1])


def _variables(model, xs=XS):
    return jax.eval_shape(model.init, KEY, xs)


def _zeros(tree):
    return jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), tree)


def _linen_lstm_apply(variables, **options):
    return slinen.RNN(nn.LSTMCell(H)).apply(variables, XS, **options)


LSTM_VARIABLES = _zeros(_variables(nn.RNN(nn.LSTMCell(H))))
GRU_VARIABLES = _zeros(_variables(nn.RNN(nn.GRUCell(H))))
WIDER_VARIABLES = _zeros(_variables(nn.RNN(nn.LSTMCell(H + 1))))
SEQMASK_LSTM8 = _zeros(_variables(slinen.RNN(cells.lstm(2 * H))))


class _DropoutGRU(nnx.GRUCell):
    """A GRU cell that drops its inputs: its step draws random numbers."""

    def __init__(self, in_features, hidden_features, *, rngs):
        super().__init__(in_features, hidden_features, rngs=rngs)
        self.dropout = nnx.Dropout(0.5, rngs=rngs)

    def __call__(self, carry, inputs):  # type: ignore[override]
        return super().__call__(carry, self.dropout(inputs))


def _nnx_rnn(**options):
    return snnx.RNN(nnx.GRUCell(IN, H, rngs=nnx.Rngs(0)), **options)


def _nnx_lengths(lengths):
    return _nnx_rnn()(XS, seq_lengths=lengths)


def _linen_lengths(lengths):
    return _linen_lstm_apply(LSTM_VARIABLES, seq_lengths=lengths)


CASES = [
    # --- seqmask.linen.RNN: the cell
    Case(
        "linen.RNN-cell-name-string",
        lambda: slinen.RNN("lstm").init(KEY, XS),
        TypeError,
        ["RNN", "cell must be a Flax linen recurrent cell", "str 'lstm'", "lstm\\("],
    ),
    Case(
        "linen.RNN-old-hidden-size-first",
        lambda: slinen.RNN(H).init(KEY, XS),  # type: ignore[arg-type]
        TypeError,
        ["RNN", "cell must be", "int 4", "cell comes first"],
    ),
    Case(
        "linen.RNN-cell-class-not-instance",
        lambda: slinen.RNN(nn.LSTMCell).init(KEY, XS),
        TypeError,
        ["RNN", "class LSTMCell", "Construct it", r"nn\.LSTMCell\(features\)"],
    ),
    Case(
        "linen.RNN-nnx-cell",
        lambda: slinen.RNN(nnx.LSTMCell(IN, H, rngs=nnx.Rngs(0))).init(KEY, XS),
        TypeError,
        ["RNN", "Flax linen recurrent cell", "flax.nnx cell use seqmask.nnx"],
    ),
    # --- Flax's lifted-scan options
    Case(
        "linen.RNN-variable-axes",
        lambda: slinen.RNN(nn.LSTMCell(H), variable_axes={"params": 0}).init(KEY, XS),
        ValueError,
        ["RNN", "variable_axes=\\{'params': 0\\}", "not supported", "shared over time"],
    ),
    Case(
        "linen.RNN-split-rngs",
        lambda: slinen.RNN(nn.LSTMCell(H), split_rngs={"params": True}).init(KEY, XS),
        ValueError,
        ["RNN", "split_rngs=", "not supported"],
    ),
    # --- variables made for another model
    Case(
        "linen.RNN-gru-variables-to-lstm",
        lambda: _linen_lstm_apply(GRU_VARIABLES),
        ValueError,
        ["RNN", r"params\['cell'\]", "structure", "another cell"],
    ),
    Case(
        "linen.RNN-variables-of-another-size",
        lambda: _linen_lstm_apply(WIDER_VARIABLES),
        ValueError,
        ["RNN", r"params\['cell'\]", r"float32\[5, 5\]", r"expected float32\[4, 4\]"],
    ),
    Case(
        "linen.RNN-seqmask-cell-variables-of-another-size",
        lambda: slinen.RNN(cells.lstm(H)).apply(SEQMASK_LSTM8, XS),
        ValueError,
        ["RNN", r"params\['cell'\]", "input_kernel", "another cell or input size"],
    ),
    Case(
        "linen.RNN-flax-variables-to-seqmask-cell",
        lambda: slinen.RNN(cells.lstm(H)).apply(LSTM_VARIABLES, XS),
        ValueError,
        ["RNN", r"params\['cell'\]", "structure"],
    ),
    # --- call arguments
    Case(
        "linen.RNN-seq-lengths-too-long",
        lambda: _linen_lengths(TOO_LONG),
        ValueError,
        ["lengths", r"\[0, 5\]"],
        traced=(_linen_lengths, (TOO_LONG,)),
    ),
    Case(
        "linen.RNN-negative-seq-lengths",
        lambda: _linen_lengths(NEGATIVE),
        ValueError,
        ["lengths", r"\[0, 5\]"],
        traced=(_linen_lengths, (NEGATIVE,)),
    ),
    Case(
        "linen.RNN-seq-lengths-and-mask",
        lambda: _linen_lstm_apply(
            LSTM_VARIABLES, seq_lengths=TOO_LONG, mask=np.ones((B, T), bool)
        ),
        ValueError,
        ["RNN", "seq_lengths or mask, not both"],
    ),
    Case(
        "linen.RNN-reverse-not-a-bool",
        lambda: _linen_lstm_apply(LSTM_VARIABLES, reverse="yes"),
        TypeError,
        ["RNN", "reverse must be True or False", "str 'yes'"],
    ),
    Case(
        "linen.RNN-integer-inputs",
        lambda: slinen.RNN(nn.LSTMCell(H)).init(KEY, np.zeros((B, T, IN), np.int32)),
        TypeError,
        ["RNN", "inputs must have a floating dtype", "int32"],
    ),
    Case(
        "linen.RNN-inputs-without-time-axis",
        lambda: slinen.RNN(nn.LSTMCell(H)).init(KEY, np.zeros((IN,), np.float32)),
        ValueError,
        ["RNN", "inputs must have at least 2 axes", r"\(2,\)"],
    ),
    Case(
        "linen.RNN-init-key-with-learned-state",
        lambda: slinen.RNN(nn.GRUCell(H), learnable_initial_state=True).init(
            KEY, XS, init_key=KEY
        ),
        ValueError,
        ["RNN", "init_key", "learnable_initial_state=True", "give no init_key"],
    ),
    Case(
        "linen.RNN-lstm-carry-in-seqmask-order",
        lambda: _linen_lstm_apply(
            LSTM_VARIABLES,
            initial_carry=cells.LSTMCarry(np.zeros((B, H)), np.zeros((B, H))),
        ),
        ValueError,
        ["initial_carry", "structure"],
    ),
    # --- seqmask.linen.Bidirectional, as_cell, Stacked, LearnableInitialState
    Case(
        "linen.Bidirectional-flax-rnns",
        lambda: slinen.Bidirectional(nn.RNN(nn.GRUCell(H)), nn.RNN(nn.GRUCell(H))).init(
            KEY, XS
        ),
        TypeError,
        ["Bidirectional", "forward_rnn must be a seqmask.linen.RNN", "Wrap the cell"],
    ),
    Case(
        "linen.Bidirectional-merge-fn-string",
        lambda: slinen.Bidirectional(
            slinen.RNN(nn.GRUCell(H)), slinen.RNN(nn.GRUCell(H)), merge_fn="concat"
        ).init(KEY, XS),
        TypeError,
        ["Bidirectional", "merge_fn must be a function", "str 'concat'"],
    ),
    Case(
        "linen.Bidirectional-initial-carry-not-a-pair",
        lambda: slinen.Bidirectional(
            slinen.RNN(nn.GRUCell(H)), slinen.RNN(nn.GRUCell(H))
        ).init(KEY, XS, initial_carry=np.zeros((B, H), np.float32)),
        ValueError,
        ["Bidirectional", "initial_carry must be a pair", r"float32\[3, 4\]"],
    ),
    Case(
        "linen.as_cell-conv-without-feature-shape",
        lambda: slinen.as_cell(nn.ConvLSTMCell(H, kernel_size=(3, 3))),
        ValueError,
        ["as_cell", "3 feature axes", "give feature_shape"],
    ),
    Case(
        "linen.as_cell-params-of-another-cell",
        lambda: slinen.as_cell(nn.LSTMCell(H)).apply(
            GRU_VARIABLES["params"]["cell"],
            (np.zeros((H,), np.float32),) * 2,
            np.zeros((IN,), np.float32),
        ),
        ValueError,
        ["LSTMCell", "params", "structure", "another cell"],
    ),
    Case(
        "rnn-linen-as-cell-params-of-another-cell",
        lambda: seqmask.rnn(
            slinen.as_cell(nn.LSTMCell(H)), GRU_VARIABLES["params"]["cell"], XS
        ),
        ValueError,
        ["^rnn", "params", "structure", r"LSTMCell\(features=4\)"],
    ),
    Case(
        "rnn-nnx-as-cell-inputs-of-another-size",
        lambda: seqmask.rnn(
            snnx.as_cell(nnx.GRUCell(IN, H, rngs=nnx.Rngs(0))),
            {
                "dense_h": {"kernel": np.zeros((H, 3 * H), np.float32)},
                "dense_i": {
                    "bias": np.zeros((3 * H,), np.float32),
                    "kernel": np.zeros((IN, 3 * H), np.float32),
                },
            },
            np.zeros((B, T, IN + 1), np.float32),
        ),
        ValueError,
        ["^rnn", "inputs have 3 features", "in_features=2"],
    ),
    Case(
        "linen.as_cell-input-size-zero",
        lambda: slinen.as_cell(nn.GRUCell(H)).init(KEY, 0),
        ValueError,
        ["GRUCell", "input_size must be a positive int", "got 0"],
    ),
    Case(
        "linen.Stacked-dropout-rate-one",
        lambda: slinen.Stacked(cells.gru(H), 2, dropout_rate=1.0).init(
            KEY, XS, deterministic=True
        ),
        ValueError,
        ["Stacked", "dropout_rate", r"\[0, 1\)", "1.0"],
    ),
    Case(
        "linen.Stacked-dropout-without-deterministic",
        lambda: slinen.Stacked(cells.gru(H), 2, dropout_rate=0.5).init(KEY, XS),
        ValueError,
        ["Stacked", "needs deterministic=False", "rngs=\\{'dropout'"],
    ),
    Case(
        "linen.Stacked-one-cell-without-num-layers",
        lambda: slinen.Stacked(cells.gru(H)).init(KEY, XS),
        ValueError,
        ["Stacked", "give num_layers"],
    ),
    Case(
        "linen.Stacked-flax-cell",
        lambda: slinen.Stacked(nn.GRUCell(H), 2).init(KEY, XS),  # type: ignore
        TypeError,
        ["Stacked", "seqmask.cells.Cell", "GRUCell"],
    ),
    Case(
        "linen.LearnableInitialState-float-batch-shape",
        lambda: slinen.LearnableInitialState(cells.gru(H)).init(KEY, (2.0,)),
        TypeError,
        ["LearnableInitialState", "batch_shape entry must be an int", "Pass 2"],
    ),
    # --- seqmask.nnx
    Case(
        "nnx.RNN-seqmask-cell-without-in-features",
        lambda: snnx.RNN(cells.lstm(H), rngs=nnx.Rngs(0)),
        TypeError,
        ["RNN", "needs in_features", "in_features=32"],
    ),
    Case(
        "nnx.RNN-seqmask-cell-without-rngs",
        lambda: snnx.RNN(cells.lstm(H), in_features=IN),
        TypeError,
        ["RNN", "rngs must be an nnx.Rngs", "bool True"],
    ),
    Case(
        "nnx.RNN-old-positional-sizes",
        lambda: snnx.RNN(IN, rngs=nnx.Rngs(0)),  # type: ignore[arg-type]
        TypeError,
        ["RNN", "cell must be a Flax nnx recurrent cell", "int 2", "cell comes first"],
    ),
    Case(
        "nnx.RNN-in-features-disagrees-with-the-cell",
        lambda: _nnx_rnn(in_features=IN + 1),
        ValueError,
        ["RNN", "in_features=3", "cell has in_features=2"],
    ),
    Case(
        "nnx.RNN-state-axes",
        lambda: _nnx_rnn(state_axes={"params": 0}),
        ValueError,
        ["RNN", "state_axes=", "not supported"],
    ),
    Case(
        "nnx.RNN-linen-cell",
        lambda: snnx.RNN(nn.LSTMCell(H)),
        TypeError,
        ["RNN", "Flax nnx recurrent cell", "flax.linen cell use seqmask.linen"],
    ),
    Case(
        "nnx.RNN-rngs-string",
        lambda: _nnx_rnn(rngs="carry"),
        TypeError,
        ["RNN", "rngs must be True, False, an nnx.Rngs", "str 'carry'"],
    ),
    Case(
        "nnx.RNN-learned-state-without-rngs",
        lambda: _nnx_rnn(learnable_initial_state=True),
        TypeError,
        ["RNN", "rngs must be an nnx.Rngs", "learned initial carry"],
    ),
    Case(
        "nnx.RNN-seq-lengths-too-long",
        lambda: _nnx_lengths(TOO_LONG),
        ValueError,
        ["lengths", r"\[0, 5\]"],
        traced=(_nnx_lengths, (TOO_LONG,)),
    ),
    Case(
        "nnx.RNN-keep-order-not-a-bool",
        lambda: _nnx_rnn(keep_order=1),
        TypeError,
        ["RNN", "keep_order must be True or False", "int 1"],
    ),
    Case(
        "nnx.RNN-cell-with-dropout-inside",
        lambda: snnx.RNN(_DropoutGRU(IN, H, rngs=nnx.Rngs(0))),
        ValueError,
        ["^RNN", "random state", "dropout", "outside the cell"],
    ),
    Case(
        "nnx.Bidirectional-flax-rnns",
        lambda: snnx.Bidirectional(
            nnx.RNN(nnx.GRUCell(IN, H, rngs=nnx.Rngs(0))),
            nnx.RNN(nnx.GRUCell(IN, H, rngs=nnx.Rngs(1))),
        ),
        TypeError,
        ["Bidirectional", "forward_rnn must be a seqmask.nnx.RNN"],
    ),
    Case(
        "nnx.as_cell-input-size-of-another-cell",
        lambda: snnx.as_cell(nnx.GRUCell(IN, H, rngs=nnx.Rngs(0))).init(KEY, IN + 3),
        ValueError,
        ["GRUCell", "input_size must be the cell's in_features=2", "got 5"],
    ),
    Case(
        "nnx.as_cell-params-of-another-cell",
        lambda: snnx.as_cell(nnx.GRUCell(IN, H, rngs=nnx.Rngs(0))).apply(
            {"dense_i": {}}, np.zeros((H,), np.float32), np.zeros((IN,), np.float32)
        ),
        ValueError,
        ["GRUCell", "params", "structure", "another cell"],
    ),
    Case(
        "nnx.Stacked-dropout-without-a-stream",
        lambda: snnx.Stacked(
            cells.gru(H), 2, in_features=IN, dropout_rate=0.5, rngs=nnx.Rngs(params=0)
        ),
        ValueError,
        ["Stacked", "needs a 'dropout'", r"\['params'\]"],
    ),
    Case(
        "nnx.Stacked-merge-mean",
        lambda: snnx.Stacked(
            cells.gru(H), 2, in_features=IN, merge="mean", rngs=nnx.Rngs(0)
        ),
        ValueError,
        ["merge must be one of", "'concat', 'sum'", "'mean'"],
    ),
    Case(
        "nnx.Stacked-zero-layers",
        lambda: snnx.Stacked(cells.gru(H), 0, in_features=IN, rngs=nnx.Rngs(0)),
        ValueError,
        ["Stacked", "num_layers must be a positive int", "got 0"],
    ),
    Case(
        "nnx.LearnableInitialState-not-a-cell",
        lambda: snnx.LearnableInitialState("lstm", rngs=nnx.Rngs(0)),  # type: ignore
        TypeError,
        ["LearnableInitialState", "cell must be a seqmask.cells.Cell", "str 'lstm'"],
    ),
]
