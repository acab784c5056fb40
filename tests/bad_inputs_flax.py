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
# Each message starts with the public name of the module.
LINEN_BIDIRECTIONAL = r"^seqmask\.linen\.Bidirectional: "
LINEN_STATE = r"^seqmask\.linen\.LearnableInitialState: "
LINEN_RNN = r"^seqmask\.linen\.RNN: "
LINEN_STACKED = r"^seqmask\.linen\.Stacked: "
NNX_BIDIRECTIONAL = r"^seqmask\.nnx\.Bidirectional: "
NNX_STATE = r"^seqmask\.nnx\.LearnableInitialState: "
NNX_RNN = r"^seqmask\.nnx\.RNN: "
NNX_STACKED = r"^seqmask\.nnx\.Stacked: "


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


class _SlotGRU(nnx.GRUCell):
    """A GRU cell over ``[*batch, slots, features]`` steps: two feature axes,
    which ``flax.nnx.RNN`` honours (the slots are not time)."""

    @property
    def num_feature_axes(self) -> int:
        return 2


class _GivenCarryLinenGRU(nn.GRUCell):
    """A Linen GRU cell without initialize_carry (the caller gives the carry)."""

    initialize_carry = nn.RNNCellBase.initialize_carry  # type: ignore[assignment]


class _GivenCarryGRU(nnx.GRUCell):
    """A GRU cell without initialize_carry (the caller gives the carry)."""

    initialize_carry = nnx.RNNCellBase.initialize_carry  # type: ignore[assignment]


def _nnx_rnn(**options):
    return snnx.RNN(nnx.GRUCell(IN, H, rngs=nnx.Rngs(0)), **options)


def _nnx_lengths(lengths):
    return _nnx_rnn()(XS, seq_lengths=lengths)


def _linen_lengths(lengths):
    return _linen_lstm_apply(LSTM_VARIABLES, seq_lengths=lengths)


LINEN_GRU = slinen.as_cell(nn.GRUCell(H))
LINEN_LSTM = slinen.as_cell(nn.LSTMCell(H))
NNX_LSTM = snnx.as_cell(nnx.LSTMCell(IN, H, rngs=nnx.Rngs(0)))
LINEN_GRU_PARAMS = _zeros(jax.eval_shape(lambda key: LINEN_GRU.init(key, IN), KEY))
LINEN_LSTM_PARAMS = _zeros(jax.eval_shape(lambda key: LINEN_LSTM.init(key, IN), KEY))
NNX_LSTM_PARAMS = NNX_LSTM.init(KEY, IN)
H0 = np.zeros((B, H), np.float32)
X0 = np.zeros((B, IN), np.float32)


def _linen_bidirectional(**call):
    model = slinen.Bidirectional(slinen.RNN(nn.GRUCell(H)), slinen.RNN(nn.GRUCell(H)))
    return model.apply(_zeros(_variables(model)), XS, **call)


def _linen_stacked(**call):
    model = slinen.Stacked(cells.gru(H), 2)
    return model.apply(_zeros(_variables(model)), XS, **call)


def _nnx_bidirectional(**call):
    rngs = nnx.Rngs(0)
    model = snnx.Bidirectional(
        snnx.RNN(nnx.GRUCell(IN, H, rngs=rngs)), snnx.RNN(nnx.GRUCell(IN, H, rngs=rngs))
    )
    return model(XS, **call)


def _nnx_stacked(**call):
    return snnx.Stacked(cells.gru(H), 2, in_features=IN, rngs=nnx.Rngs(0))(XS, **call)


CASES = [
    # --- seqmask.linen.RNN: the cell
    Case(
        "linen.RNN-cell-name-string",
        lambda: slinen.RNN("lstm").init(KEY, XS),
        TypeError,
        [
            LINEN_RNN,
            "cell must be a Flax linen recurrent cell",
            "str 'lstm'",
            "lstm\\(",
        ],
    ),
    Case(
        "linen.RNN-old-hidden-size-first",
        lambda: slinen.RNN(H).init(KEY, XS),  # type: ignore[arg-type]
        TypeError,
        [LINEN_RNN, "cell must be", "int 4", "cell comes first"],
    ),
    Case(
        "linen.RNN-cell-class-not-instance",
        lambda: slinen.RNN(nn.LSTMCell).init(KEY, XS),
        TypeError,
        [
            LINEN_RNN,
            "class LSTMCell",
            "Construct it",
            r"nn\.LSTMCell\(features\)",
        ],
    ),
    Case(
        "linen.RNN-nnx-cell",
        lambda: slinen.RNN(nnx.LSTMCell(IN, H, rngs=nnx.Rngs(0))).init(KEY, XS),
        TypeError,
        [
            LINEN_RNN,
            "Flax linen recurrent cell",
            "flax.nnx cell use seqmask.nnx",
        ],
    ),
    # --- Flax's lifted-scan options
    Case(
        "linen.RNN-variable-axes",
        lambda: slinen.RNN(nn.LSTMCell(H), variable_axes={"params": 0}).init(KEY, XS),
        ValueError,
        [
            LINEN_RNN,
            "variable_axes=\\{'params': 0\\}",
            "not supported",
            "shared over time",
        ],
    ),
    Case(
        "linen.RNN-split-rngs",
        lambda: slinen.RNN(nn.LSTMCell(H), split_rngs={"params": True}).init(KEY, XS),
        ValueError,
        [LINEN_RNN, "split_rngs=", "not supported"],
    ),
    # --- variables made for another model
    Case(
        "linen.RNN-gru-variables-to-lstm",
        lambda: _linen_lstm_apply(GRU_VARIABLES),
        ValueError,
        [LINEN_RNN, r"params\['cell'\]", "structure", "another cell"],
    ),
    Case(
        "linen.RNN-variables-of-another-size",
        lambda: _linen_lstm_apply(WIDER_VARIABLES),
        ValueError,
        [
            LINEN_RNN,
            r"params\['cell'\]",
            r"float32\[5, 5\]",
            r"expected float32\[4, 4\]",
        ],
    ),
    Case(
        "linen.RNN-seqmask-cell-variables-of-another-size",
        lambda: slinen.RNN(cells.lstm(H)).apply(SEQMASK_LSTM8, XS),
        ValueError,
        [
            LINEN_RNN,
            r"params\['cell'\]",
            "input_kernel",
            "another cell or input size",
        ],
    ),
    Case(
        "linen.RNN-flax-variables-to-seqmask-cell",
        lambda: slinen.RNN(cells.lstm(H)).apply(LSTM_VARIABLES, XS),
        ValueError,
        [LINEN_RNN, r"params\['cell'\]", "structure"],
    ),
    # --- call arguments
    Case(
        "linen.RNN-seq-lengths-too-long",
        lambda: _linen_lengths(TOO_LONG),
        ValueError,
        [LINEN_RNN, "lengths", r"\[0, 5\]"],
        traced=(_linen_lengths, (TOO_LONG,)),
    ),
    Case(
        "linen.RNN-negative-seq-lengths",
        lambda: _linen_lengths(NEGATIVE),
        ValueError,
        [LINEN_RNN, "lengths", r"\[0, 5\]"],
        traced=(_linen_lengths, (NEGATIVE,)),
    ),
    Case(
        "linen.RNN-seq-lengths-and-mask",
        lambda: _linen_lstm_apply(
            LSTM_VARIABLES, seq_lengths=TOO_LONG, mask=np.ones((B, T), bool)
        ),
        ValueError,
        [LINEN_RNN, "seq_lengths or mask, not both"],
    ),
    Case(
        "linen.RNN-reverse-not-a-bool",
        lambda: _linen_lstm_apply(LSTM_VARIABLES, reverse="yes"),
        TypeError,
        [LINEN_RNN, "reverse must be True or False", "str 'yes'"],
    ),
    Case(
        "linen.RNN-integer-inputs",
        lambda: slinen.RNN(nn.LSTMCell(H)).init(KEY, np.zeros((B, T, IN), np.int32)),
        TypeError,
        [LINEN_RNN, "inputs must have a floating dtype", "int32"],
    ),
    Case(
        "linen.RNN-inputs-without-time-axis",
        lambda: slinen.RNN(nn.LSTMCell(H)).init(KEY, np.zeros((IN,), np.float32)),
        ValueError,
        [LINEN_RNN, "inputs must have at least 2 axes", r"\(2,\)"],
    ),
    Case(
        "linen.RNN-init-key-with-learned-state",
        lambda: slinen.RNN(nn.GRUCell(H), learnable_initial_state=True).init(
            KEY, XS, init_key=KEY
        ),
        ValueError,
        [
            LINEN_RNN,
            "init_key",
            "learnable_initial_state=True",
            "give no init_key",
        ],
    ),
    Case(
        "linen.RNN-lstm-carry-in-seqmask-order",
        lambda: _linen_lstm_apply(
            LSTM_VARIABLES,
            initial_carry=cells.LSTMCarry(np.zeros((B, H)), np.zeros((B, H))),
        ),
        ValueError,
        [LINEN_RNN, "initial_carry", "structure"],
    ),
    # --- seqmask.linen.Bidirectional, as_cell, Stacked, LearnableInitialState
    Case(
        "linen.Bidirectional-flax-rnns",
        lambda: slinen.Bidirectional(nn.RNN(nn.GRUCell(H)), nn.RNN(nn.GRUCell(H))).init(
            KEY, XS
        ),
        TypeError,
        [
            LINEN_BIDIRECTIONAL,
            "forward_rnn must be a seqmask.linen.RNN",
            "Wrap the cell",
        ],
    ),
    Case(
        "linen.Bidirectional-merge-fn-string",
        lambda: slinen.Bidirectional(
            slinen.RNN(nn.GRUCell(H)), slinen.RNN(nn.GRUCell(H)), merge_fn="concat"
        ).init(KEY, XS),
        TypeError,
        [
            LINEN_BIDIRECTIONAL,
            "merge_fn must be a function",
            "str 'concat'",
        ],
    ),
    Case(
        "linen.Bidirectional-initial-carry-not-a-pair",
        lambda: slinen.Bidirectional(
            slinen.RNN(nn.GRUCell(H)), slinen.RNN(nn.GRUCell(H))
        ).init(KEY, XS, initial_carry=np.zeros((B, H), np.float32)),
        TypeError,
        [
            LINEN_BIDIRECTIONAL,
            "initial_carry must be a pair",
            r"float32\[3, 4\]",
        ],
    ),
    Case(
        "linen.as_cell-conv-without-feature-shape",
        lambda: slinen.as_cell(nn.ConvLSTMCell(H, kernel_size=(3, 3))),
        ValueError,
        ["as_cell", "3 feature axes", "give feature_shape"],
    ),
    Case(
        "linen.RNN-conv-pure-cell",
        lambda: slinen.RNN(nn.ConvLSTMCell(H, kernel_size=(3, 3))).pure_cell,
        ValueError,
        [LINEN_RNN, "3 feature axes", r"seqmask\.linen\.as_cell\(cell, feature_shape"],
    ),
    Case(
        "linen.RNN-conv-pure-params-of-an-int",
        lambda: slinen.RNN(nn.ConvLSTMCell(H, kernel_size=(3, 3))).init(
            KEY, 18, method="pure_params"
        ),
        TypeError,
        [LINEN_RNN, "in_features must be the shape of one step", "tuple of 3", "18"],
    ),
    Case(
        "linen.RNN-conv-pure-params-of-two-sizes",
        lambda: slinen.RNN(nn.ConvLSTMCell(H, kernel_size=(3, 3))).init(
            KEY, (4, 4), method="pure_params"
        ),
        ValueError,
        [LINEN_RNN, "in_features must be a tuple of 3 sizes", r"\(4, 4\)"],
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
        [LINEN_STACKED, "dropout_rate", r"\[0, 1\)", "1.0"],
    ),
    Case(
        "linen.Stacked-dropout-without-deterministic",
        lambda: slinen.Stacked(cells.gru(H), 2, dropout_rate=0.5).init(KEY, XS),
        ValueError,
        [
            LINEN_STACKED,
            "needs deterministic=False",
            "rngs=\\{'dropout'",
        ],
    ),
    Case(
        "linen.Stacked-one-cell-without-num-layers",
        lambda: slinen.Stacked(cells.gru(H)).init(KEY, XS),
        ValueError,
        [LINEN_STACKED, "give num_layers"],
    ),
    Case(
        "linen.Stacked-flax-cell",
        lambda: slinen.Stacked(nn.GRUCell(H), 2).init(KEY, XS),  # type: ignore
        TypeError,
        [LINEN_STACKED, "seqmask.cells.Cell", r"seqmask\.linen\.as_cell", "GRUCell"],
    ),
    Case(
        "linen.Stacked-residual-sizes-time-major",
        lambda: slinen.Stacked([cells.gru(H), cells.gru(H + 1)], residual=True).init(
            KEY, np.swapaxes(XS, 0, 1), time_major=True
        ),
        ValueError,
        ["residual", "layer 1", "reads 4 and outputs 5"],
    ),
    Case(
        "linen.LearnableInitialState-float-batch-shape",
        lambda: slinen.LearnableInitialState(cells.gru(H)).init(KEY, (2.0,)),
        TypeError,
        [
            LINEN_STATE,
            "batch_shape entry must be an int",
            "Pass 2",
        ],
    ),
    Case(
        "linen.RNN-learned-state-of-a-cell-without-initialize-carry",
        lambda: slinen.RNN(_GivenCarryLinenGRU(H), learnable_initial_state=True).init(
            KEY, XS, initial_carry=np.zeros((B, H), np.float32)
        ),
        NotImplementedError,
        [LINEN_RNN, "no initialize_carry", "learns a carry"],
    ),
    # --- seqmask.nnx
    Case(
        "nnx.RNN-learned-state-of-a-cell-without-initialize-carry",
        lambda: snnx.RNN(
            _GivenCarryGRU(IN, H, rngs=nnx.Rngs(0)),
            learnable_initial_state=True,
            rngs=nnx.Rngs(0),
        ),
        NotImplementedError,
        [NNX_RNN, "no initialize_carry", "initial_carry="],
    ),
    Case(
        "nnx.RNN-cell-without-initialize-carry-and-no-carry",
        lambda: snnx.RNN(_GivenCarryGRU(IN, H, rngs=nnx.Rngs(0)))(XS),
        NotImplementedError,
        ["_GivenCarryGRU", "no initialize_carry", r"give the RNN \(or seqmask.rnn\)"],
    ),
    *(
        Case(
            f"nnx.{name}-cell-with-two-feature-axes",
            build,
            ValueError,
            [pattern, "num_feature_axes=2", "one feature axis", r"flax\.nnx\.RNN"],
        )
        for name, pattern, build in (
            ("RNN", NNX_RNN, lambda: snnx.RNN(_SlotGRU(IN, H, rngs=nnx.Rngs(0)))),
            (
                "as_cell",
                r"^seqmask\.nnx\.as_cell: ",
                lambda: snnx.as_cell(_SlotGRU(IN, H, rngs=nnx.Rngs(0))),
            ),
        )
    ),
    Case(
        "nnx.RNN-seqmask-cell-without-in-features",
        lambda: snnx.RNN(cells.lstm(H), rngs=nnx.Rngs(0)),
        TypeError,
        [NNX_RNN, "needs in_features", "in_features=32"],
    ),
    Case(
        "nnx.Stacked-flax-cell",
        lambda: snnx.Stacked(
            nnx.GRUCell(IN, H, rngs=nnx.Rngs(0)),  # type: ignore[arg-type]
            2,
            in_features=IN,
            rngs=nnx.Rngs(0),
        ),
        TypeError,
        [NNX_STACKED, r"seqmask\.nnx\.as_cell", "GRUCell"],
    ),
    Case(
        "nnx.RNN-seqmask-cell-without-rngs",
        lambda: snnx.RNN(cells.lstm(H), in_features=IN),
        TypeError,
        [NNX_RNN, "rngs must be an nnx.Rngs", "bool True"],
    ),
    Case(
        "nnx.RNN-old-positional-sizes",
        lambda: snnx.RNN(IN, rngs=nnx.Rngs(0)),  # type: ignore[arg-type]
        TypeError,
        [
            NNX_RNN,
            "cell must be a Flax nnx recurrent cell",
            "int 2",
            "cell comes first",
        ],
    ),
    Case(
        "nnx.RNN-in-features-disagrees-with-the-cell",
        lambda: _nnx_rnn(in_features=IN + 1),
        ValueError,
        [NNX_RNN, "in_features=3", "cell has in_features=2"],
    ),
    Case(
        "nnx.RNN-state-axes",
        lambda: _nnx_rnn(state_axes={"params": 0}),
        ValueError,
        [NNX_RNN, "state_axes=", "not supported"],
    ),
    Case(
        "nnx.RNN-linen-cell",
        lambda: snnx.RNN(nn.LSTMCell(H)),
        TypeError,
        [
            NNX_RNN,
            "Flax nnx recurrent cell",
            "flax.linen cell use seqmask.linen",
        ],
    ),
    Case(
        "nnx.RNN-rngs-string",
        lambda: _nnx_rnn(rngs="carry"),
        TypeError,
        [
            NNX_RNN,
            "rngs must be True, False, an nnx.Rngs",
            "str 'carry'",
        ],
    ),
    Case(
        "nnx.RNN-learned-state-without-rngs",
        lambda: _nnx_rnn(learnable_initial_state=True),
        TypeError,
        [NNX_RNN, "rngs must be an nnx.Rngs", "learned initial carry"],
    ),
    Case(
        "nnx.RNN-seq-lengths-too-long",
        lambda: _nnx_lengths(TOO_LONG),
        ValueError,
        [NNX_RNN, "lengths", r"\[0, 5\]"],
        traced=(_nnx_lengths, (TOO_LONG,)),
    ),
    Case(
        "nnx.RNN-keep-order-not-a-bool",
        lambda: _nnx_rnn(keep_order=1),
        TypeError,
        [NNX_RNN, "keep_order must be True or False", "int 1"],
    ),
    Case(
        "nnx.RNN-cell-with-dropout-inside",
        lambda: snnx.RNN(_DropoutGRU(IN, H, rngs=nnx.Rngs(0))),
        ValueError,
        [NNX_RNN, "random state", "dropout", "outside the cell"],
    ),
    Case(
        "nnx.Bidirectional-flax-rnns",
        lambda: snnx.Bidirectional(
            nnx.RNN(nnx.GRUCell(IN, H, rngs=nnx.Rngs(0))),
            nnx.RNN(nnx.GRUCell(IN, H, rngs=nnx.Rngs(1))),
        ),
        TypeError,
        [NNX_BIDIRECTIONAL, "forward_rnn must be a seqmask.nnx.RNN"],
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
    # unclear before: Flax's AttributeError "No RngStream named 'params'"
    Case(
        "nnx.Stacked-rngs-without-params",
        lambda: snnx.Stacked(cells.gru(H), 2, in_features=IN, rngs=nnx.Rngs(dropout=0)),
        ValueError,
        [NNX_STACKED, "rngs", "'params'", r"\['dropout'\]"],
    ),
    Case(
        "nnx.Seq2Seq-rngs-without-params",
        lambda: snnx.Seq2Seq(
            seqmask.seq2seq.encoder_decoder(5, 5, embed_size=2, hidden_size=3),
            rngs=nnx.Rngs(dropout=0),
        ),
        ValueError,
        ["^seqmask.nnx.Seq2Seq", "rngs", "'params'", r"\['dropout'\]"],
    ),
    Case(
        "nnx.Stacked-dropout-without-a-stream",
        lambda: snnx.Stacked(
            cells.gru(H), 2, in_features=IN, dropout_rate=0.5, rngs=nnx.Rngs(params=0)
        ),
        ValueError,
        [NNX_STACKED, "needs a 'dropout'", r"\['params'\]"],
    ),
    Case(
        "nnx.Stacked-merge-mean",
        lambda: snnx.Stacked(
            cells.gru(H), 2, in_features=IN, merge="mean", rngs=nnx.Rngs(0)
        ),
        ValueError,
        [
            NNX_STACKED,
            "merge must be one of",
            "'concat', 'sum'",
            "'mean'",
        ],
    ),
    Case(
        "nnx.Stacked-zero-layers",
        lambda: snnx.Stacked(cells.gru(H), 0, in_features=IN, rngs=nnx.Rngs(0)),
        ValueError,
        [NNX_STACKED, "num_layers must be a positive int", "got 0"],
    ),
    Case(
        "nnx.LearnableInitialState-not-a-cell",
        lambda: snnx.LearnableInitialState("lstm", rngs=nnx.Rngs(0)),  # type: ignore
        TypeError,
        [
            NNX_STATE,
            "cell must be a seqmask.cells.Cell",
            "str 'lstm'",
        ],
    ),
    # --- the adapters check what a step gets, as seqmask's own cells do
    Case(
        "linen.as_cell-apply-integer-x",
        lambda: LINEN_GRU.apply(LINEN_GRU_PARAMS, H0, X0.astype(np.int32)),
        TypeError,
        [
            r"^nn\.GRUCell\(features=4\)\.apply: ",
            "x must have a floating dtype",
            "int32",
            "Embed integer tokens first",
        ],
    ),
    Case(
        "nnx.as_cell-apply-integer-x",
        lambda: NNX_LSTM.apply(NNX_LSTM_PARAMS, (H0, H0), X0.astype(np.int32)),
        TypeError,
        [r"^nnx\.LSTMCell\(.*\)\.apply: ", "x must have a floating dtype", "Embed"],
    ),
    Case(
        "linen.as_cell-apply-inputs-of-another-size",
        lambda: LINEN_GRU.apply(
            LINEN_GRU_PARAMS, H0, np.zeros((B, IN + 1), np.float32)
        ),
        ValueError,
        ["GRUCell.*apply: ", "for inputs of size 3", r"got float32\[2, 4\]"],
    ),
    Case(
        "nnx.as_cell-apply-inputs-of-another-size",
        lambda: NNX_LSTM.apply(
            NNX_LSTM_PARAMS, (H0, H0), np.zeros((B, IN + 1), np.float32)
        ),
        ValueError,
        ["LSTMCell.*apply: ", "the inputs have 3 features", "in_features=2"],
    ),
    Case(
        "linen.as_cell-apply-lstm-carry-in-seqmask-order",
        lambda: LINEN_LSTM.apply(LINEN_LSTM_PARAMS, cells.LSTMCarry(H0, H0), X0),
        ValueError,
        [
            "LSTMCell.*apply: ",
            "carry must have the structure",
            "LSTMCarry",
            r"\(c, h\)",
        ],
    ),
    Case(
        "nnx.as_cell-apply-one-array-for-the-lstm-carry",
        lambda: NNX_LSTM.apply(NNX_LSTM_PARAMS, H0, X0),
        ValueError,
        ["LSTMCell.*apply: ", "carry must have the structure", "initial_carry"],
    ),
    Case(
        "linen.as_cell-apply-carry-of-another-batch",
        lambda: LINEN_LSTM.apply(LINEN_LSTM_PARAMS, (H0[:2], H0[:2]), X0),
        ValueError,
        [
            "LSTMCell.*apply: ",
            r"carry\[0\]: got float32\[2, 4\]",
            r"batch shape \(3,\)",
        ],
    ),
    Case(
        "linen.as_cell-apply-carry-of-another-dtype",
        lambda: LINEN_GRU.apply(LINEN_GRU_PARAMS, H0.astype(np.float16), X0),
        TypeError,
        ["GRUCell.*apply: ", "carry", r"got float16\[3, 4\], expected float32"],
    ),
    Case(
        "nnx.as_cell-apply-params-of-a-linen-cell",
        lambda: NNX_LSTM.apply(LINEN_LSTM_PARAMS, (H0, H0), X0),
        ValueError,
        ["LSTMCell.*apply: ", "params", "structure", "another cell"],
    ),
    Case(
        "linen.as_cell-init-key-int",
        lambda: LINEN_GRU.init(0, IN),
        TypeError,
        [r"^nn\.GRUCell\(features=4\)\.init: ", "key must be a PRNG key", "int 0"],
    ),
    Case(
        "nnx.as_cell-init-batch-of-keys",
        lambda: NNX_LSTM.init(jax.random.split(KEY, 2), IN),
        ValueError,
        ["LSTMCell.*init: ", "key must be a single PRNG key", r"\(2,\)"],
    ),
    Case(
        "linen.as_cell-initial-carry-float-batch",
        lambda: LINEN_GRU.initial_carry(LINEN_GRU_PARAMS, (2.0,)),
        TypeError,
        ["GRUCell.*initial_carry: ", "batch_shape entry must be an int"],
    ),
    # --- module calls: carries, keys, valid steps, options
    Case(
        "linen.RNN-initial-carry-of-another-batch",
        lambda: _linen_lstm_apply(
            LSTM_VARIABLES, initial_carry=(np.zeros((B + 1, H), np.float32),) * 2
        ),
        ValueError,
        [LINEN_RNN, "initial_carry", r"got float32\[4, 4\], expected float32\[3, 4\]"],
    ),
    Case(
        "nnx.RNN-initial-carry-of-another-batch",
        lambda: _nnx_rnn()(XS, initial_carry=np.zeros((B + 1, H), np.float32)),
        ValueError,
        [NNX_RNN, "initial_carry", r"got float32\[4, 4\], expected float32\[3, 4\]"],
    ),
    Case(
        "linen.RNN-init-key-int",
        lambda: _linen_lstm_apply(LSTM_VARIABLES, init_key=0),
        TypeError,
        [LINEN_RNN, "init_key must be a PRNG key", "int 0"],
    ),
    Case(
        "linen.RNN-seq-lengths-float",
        lambda: _linen_lengths(np.array([5.0, 2.0, 1.0])),
        TypeError,
        [LINEN_RNN, "seq_lengths must have an integer dtype", "float"],
    ),
    Case(
        "linen.RNN-seq-lengths-of-another-batch",
        lambda: _linen_lengths(np.array([5, 2])),
        ValueError,
        [LINEN_RNN, r"seq_lengths must have shape \[\*batch\] = \(3,\)", r"got \(2,\)"],
    ),
    Case(
        "linen.RNN-mask-of-ints",
        lambda: _linen_lstm_apply(LSTM_VARIABLES, mask=np.ones((B, T), np.int32)),
        TypeError,
        [LINEN_RNN, "mask must be a boolean array", "int32"],
    ),
    Case(
        "linen.RNN-resets-without-time-axis",
        lambda: _linen_lstm_apply(LSTM_VARIABLES, resets=np.ones((B,), bool)),
        ValueError,
        [LINEN_RNN, r"resets must have shape \[\*batch, time\] = \(3, 5\)"],
    ),
    Case(
        "linen.RNN-unroll-zero",
        lambda: slinen.RNN(nn.LSTMCell(H), unroll=0).apply(LSTM_VARIABLES, XS),
        ValueError,
        [LINEN_RNN, "unroll must be a positive int", "got 0"],
    ),
    Case(
        "linen.RNN-return-carry-string",
        lambda: _linen_lstm_apply(LSTM_VARIABLES, return_carry="yes"),
        TypeError,
        [LINEN_RNN, "return_carry must be True or False", "str 'yes'"],
    ),
    Case(
        "linen.RNN-time-major-int",
        lambda: slinen.RNN(nn.LSTMCell(H), time_major=1).apply(LSTM_VARIABLES, XS),
        TypeError,
        [LINEN_RNN, "time_major must be True or False", "int 1"],
    ),
    Case(
        "linen.RNN-carry-init-not-a-function",
        lambda: slinen.RNN(
            nn.GRUCell(H), learnable_initial_state=True, carry_init=0.1
        ).init(KEY, XS),
        TypeError,
        [LINEN_RNN, "carry_init must be a function", "float 0.1"],
    ),
    Case(
        "linen.RNN-skip-padding-negative",
        lambda: _linen_lstm_apply(LSTM_VARIABLES, skip_padding=-1),
        ValueError,
        [LINEN_RNN, "skip_padding must be a positive int", "-1"],
    ),
    Case(
        "linen.Bidirectional-init-key-int",
        lambda: _linen_bidirectional(init_key=0),
        TypeError,
        [LINEN_BIDIRECTIONAL, "init_key must be a PRNG key", "int 0"],
    ),
    Case(
        "linen.Bidirectional-seq-lengths-too-long",
        lambda: _linen_bidirectional(seq_lengths=TOO_LONG),
        ValueError,
        [LINEN_BIDIRECTIONAL, "seq_lengths must lie in", r"\[0, 5\]"],
        traced=(lambda n: _linen_bidirectional(seq_lengths=n), (TOO_LONG,)),
    ),
    Case(
        "linen.Bidirectional-resets-of-ints",
        lambda: _linen_bidirectional(resets=np.zeros((B, T), np.int32)),
        TypeError,
        [LINEN_BIDIRECTIONAL, "resets must be a boolean array", "int32"],
    ),
    Case(
        "linen.Bidirectional-time-major-string",
        lambda: _linen_bidirectional(time_major="no"),
        TypeError,
        [LINEN_BIDIRECTIONAL, "time_major must be True or False", "str 'no'"],
    ),
    Case(
        "linen.Stacked-seq-lengths-too-long",
        lambda: _linen_stacked(seq_lengths=TOO_LONG),
        ValueError,
        [LINEN_STACKED, "seq_lengths must lie in", r"\[0, 5\]"],
        traced=(lambda n: _linen_stacked(seq_lengths=n), (TOO_LONG,)),
    ),
    Case(
        "linen.Stacked-time-major-string",
        lambda: _linen_stacked(time_major="no"),
        TypeError,
        [LINEN_STACKED, "time_major must be True or False", "str 'no'"],
    ),
    Case(
        "linen.Stacked-deterministic-string",
        lambda: _linen_stacked(deterministic="no"),
        TypeError,
        [LINEN_STACKED, "deterministic must be True or False", "str 'no'"],
    ),
    Case(
        "linen.Stacked-merge-mean",
        lambda: slinen.Stacked(cells.gru(H), 2, bidirectional=True, merge="mean").init(
            KEY, XS
        ),
        ValueError,
        [LINEN_STACKED, "merge must be one of", "'concat', 'sum'", "'mean'"],
    ),
    Case(
        "linen.Stacked-bidirectional-string",
        lambda: slinen.Stacked(cells.gru(H), 2, bidirectional="yes").init(KEY, XS),
        TypeError,
        [LINEN_STACKED, "bidirectional must be True or False", "str 'yes'"],
    ),
    Case(
        "linen.Stacked-variables-of-another-size",
        lambda: slinen.Stacked(cells.gru(H), 2).apply(
            _zeros(_variables(slinen.Stacked(cells.gru(H + 1), 2))), XS
        ),
        ValueError,
        [LINEN_STACKED, r"params\['layers_0'\]", "another cell or input size"],
    ),
    Case(
        "linen.LearnableInitialState-carry-init-not-a-function",
        lambda: slinen.LearnableInitialState(cells.gru(H), carry_init=1).init(
            KEY, (2,)
        ),
        TypeError,
        [LINEN_STATE, "carry_init must be a function", "int 1"],
    ),
    Case(
        "linen.LearnableInitialState-in-features-zero",
        lambda: slinen.LearnableInitialState(cells.gru(H), in_features=0).init(
            KEY, (2,)
        ),
        ValueError,
        [LINEN_STATE, "in_features must be a positive int", "got 0"],
    ),
    Case(
        "nnx.RNN-call-rngs-int",
        lambda: _nnx_rnn()(XS, rngs=0),
        TypeError,
        [NNX_RNN, "rngs must be an nnx.Rngs, an nnx.RngStream or None", "int 0"],
    ),
    Case(
        "nnx.RNN-seq-lengths-of-another-batch",
        lambda: _nnx_lengths(np.array([5, 2])),
        ValueError,
        [NNX_RNN, r"seq_lengths must have shape \[\*batch\] = \(3,\)", r"got \(2,\)"],
    ),
    Case(
        "nnx.RNN-unroll-zero",
        lambda: _nnx_rnn(unroll=0),
        ValueError,
        [NNX_RNN, "unroll must be a positive int", "got 0"],
    ),
    Case(
        "nnx.RNN-carry-init-string",
        lambda: _nnx_rnn(
            learnable_initial_state=True, carry_init="zeros", rngs=nnx.Rngs(0)
        ),
        TypeError,
        [NNX_RNN, "carry_init must be a function", "str 'zeros'"],
    ),
    Case(
        "nnx.RNN-integer-inputs",
        lambda: _nnx_rnn()(XS.astype(np.int32)),
        TypeError,
        [NNX_RNN, "inputs must have a floating dtype", "Embed integer tokens"],
    ),
    Case(
        "nnx.RNN-return-carry-string",
        lambda: _nnx_rnn()(XS, return_carry="yes"),
        TypeError,
        [NNX_RNN, "return_carry must be True or False", "str 'yes'"],
    ),
    Case(
        "nnx.Bidirectional-call-rngs-string",
        lambda: _nnx_bidirectional(rngs="carry"),
        TypeError,
        [NNX_BIDIRECTIONAL, "rngs must be an nnx.Rngs", "str 'carry'"],
    ),
    Case(
        "nnx.Bidirectional-negative-seq-lengths",
        lambda: _nnx_bidirectional(seq_lengths=NEGATIVE),
        ValueError,
        [NNX_BIDIRECTIONAL, "seq_lengths must lie in", r"\[0, 5\]"],
        traced=(lambda n: _nnx_bidirectional(seq_lengths=n), (NEGATIVE,)),
    ),
    Case(
        "nnx.Bidirectional-initial-carry-not-a-pair",
        lambda: _nnx_bidirectional(initial_carry=H0),
        TypeError,
        [NNX_BIDIRECTIONAL, "initial_carry must be a pair", r"float32\[3, 4\]"],
    ),
    Case(
        "nnx.Bidirectional-rngs-int",
        lambda: snnx.Bidirectional(_nnx_rnn(), _nnx_rnn(), rngs=3),
        TypeError,
        [NNX_BIDIRECTIONAL, "rngs must be True, False, an nnx.Rngs", "int 3"],
    ),
    Case(
        "nnx.Stacked-seq-lengths-too-long",
        lambda: _nnx_stacked(seq_lengths=TOO_LONG),
        ValueError,
        [NNX_STACKED, "seq_lengths must lie in", r"\[0, 5\]"],
        traced=(lambda n: _nnx_stacked(seq_lengths=n), (TOO_LONG,)),
    ),
    Case(
        "nnx.Stacked-deterministic-string",
        lambda: _nnx_stacked(deterministic="no"),
        TypeError,
        [NNX_STACKED, "deterministic must be True or False", "str 'no'"],
    ),
    Case(
        "nnx.Stacked-time-major-string",
        lambda: _nnx_stacked(time_major="no"),
        TypeError,
        [NNX_STACKED, "time_major must be True or False", "str 'no'"],
    ),
    Case(
        "nnx.Stacked-residual-string",
        lambda: snnx.Stacked(
            cells.gru(H), 2, in_features=IN, residual="yes", rngs=nnx.Rngs(0)
        ),
        TypeError,
        [NNX_STACKED, "residual must be True or False", "str 'yes'"],
    ),
    Case(
        "nnx.Stacked-rngs-int",
        lambda: snnx.Stacked(cells.gru(H), 2, in_features=IN, rngs=0),  # type: ignore
        TypeError,
        [NNX_STACKED, "rngs must be an nnx.Rngs", "int 0"],
    ),
    Case(
        "nnx.LearnableInitialState-negative-in-features",
        lambda: snnx.LearnableInitialState(
            cells.gru(H), in_features=-1, rngs=nnx.Rngs(0)
        ),
        ValueError,
        [NNX_STATE, "in_features must be a positive int", "-1"],
    ),
    Case(
        "nnx.Seq2Seq-rngs-int",
        lambda: snnx.Seq2Seq(
            seqmask.seq2seq.encoder_decoder(6, 5, embed_size=4, hidden_size=8),
            rngs=0,  # type: ignore[arg-type]
        ),
        TypeError,
        [r"^seqmask\.nnx\.Seq2Seq: ", "rngs must be an nnx.Rngs", "int 0"],
    ),
    Case(
        "linen.RNN-variables-without-the-learned-state",
        lambda: slinen.RNN(cells.gru(H), learnable_initial_state=True).apply(
            _zeros(_variables(slinen.RNN(cells.gru(H)))), XS
        ),
        ValueError,
        [
            LINEN_STATE,
            r"params\['h'\] is missing",
            "params/initial_carry/h",
            "without a learned initial state",
        ],
    ),
    Case(
        "linen.LearnableInitialState-variables-of-another-size",
        lambda: slinen.LearnableInitialState(cells.gru(H)).apply(
            _zeros(
                jax.eval_shape(
                    lambda key: slinen.LearnableInitialState(cells.gru(H + 1)).init(
                        key, (2,)
                    ),
                    KEY,
                )
            ),
            (2,),
        ),
        ValueError,
        [LINEN_STATE, r"params\['h'\]: got float32\[5\], expected float32\[4\]"],
    ),
    Case(
        "nnx.as_cell-initial-carry-params-of-another-cell",
        lambda: NNX_LSTM.initial_carry(LINEN_LSTM_PARAMS, (B,)),
        ValueError,
        [r"^nnx\.LSTMCell\(.*\)\.initial_carry: ", "params", "structure"],
    ),
    Case(
        "nnx.Stacked-inputs-of-another-feature-size",
        lambda: snnx.Stacked(cells.gru(H), 2, in_features=IN, rngs=nnx.Rngs(0))(
            np.ones((*XS.shape[:-1], IN + 1), np.float32)
        ),
        ValueError,
        [NNX_STACKED, f"the inputs have {IN + 1} features", f"in_features={IN}"],
    ),
]
