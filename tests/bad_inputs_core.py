"""Bad inputs to the core: scans, cells, layers, masks and carries.

Each case makes one plausible mistake and names the exception type and the
words its message must hold (the public function, the argument, the bound
or what was expected). Value mistakes (lengths, dropout rates) also run
traced under ``jit`` and must be reported by ``checkify``. The cases marked
*silent* returned a wrong answer without any error before these checks:
lengths outside the time axis (clipped), an LSTM carry in Flax's ``(c, h)``
order or without its batch axes (unpacked or broadcast), parameters of
another cell whose shapes happen to fit.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
from bad_inputs_common import Case

import seqmask
from seqmask import cells, masks
from seqmask.carry import (
    reset,
    rnn_with_carries,
    truncated_bptt_step,
    truncated_value_and_grad,
)

B, T, IN, H = 2, 5, 3, 4
XS = np.linspace(-1.0, 1.0, B * T * IN, dtype=np.float32).reshape(B, T, IN)
XS_TM = np.ascontiguousarray(np.swapaxes(XS, 0, 1))
MASK = np.ones((B, T), bool)
LENGTHS = np.array([T, 2], np.int32)
TOO_LONG = np.array([T + 1, 2], np.int32)
NEGATIVE = np.array([3, -1], np.int32)


def random_params(cell, input_size=IN, seed=0):
    """The cell's parameters, drawn in NumPy (no initialiser compiles)."""
    shapes = jax.eval_shape(lambda key: cell.init(key, input_size), jax.random.key(0))
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda s: (0.3 * rng.normal(size=s.shape)).astype(s.dtype), shapes
    )


LSTM, GRU, RNN = cells.lstm(H), cells.gru(H), cells.simple_rnn(H)
MIN_GRU, MIN_LSTM = cells.min_gru(H), cells.min_lstm(H)
LEARNED = cells.learnable_initial_state(cells.lstm(H))
P_LSTM, P_GRU, P_RNN = (random_params(c) for c in (LSTM, GRU, RNN))
P_MIN_GRU, P_MIN_LSTM = random_params(MIN_GRU), random_params(MIN_LSTM)
P_LEARNED = random_params(LEARNED)
P_LSTM8 = random_params(cells.lstm(8))
P_BI = {"forward": P_LSTM, "backward": P_LSTM}
P_STACK = [P_GRU, random_params(GRU, H)]
H0 = np.zeros((B, H), np.float32)
H1 = np.zeros((B, H + 1), np.float32)
LSTM_CARRY = cells.LSTMCarry(h=H0, c=H0)
X = XS[:, 0]
KEY = jax.random.key(0)


def _ok_step(c, x):
    return c + x, c


def _bf16_step(c, x):
    return (c + x).astype(jnp.bfloat16), c


def _grow_step(c, x):
    return jnp.concatenate([c, x], -1), c


INIT = np.zeros((B, IN), np.float32)
# A custom cell whose step shrinks its carry (hidden 4 -> 2 features).
SHRINKING = cells.Cell(
    init=lambda key, input_size: {"w": jnp.ones((input_size, H))},
    initial_carry=lambda params, batch_shape: jnp.zeros((*batch_shape, H)),
    apply=lambda params, h, x: (jnp.tanh(x @ params["w"] + h)[..., :2],) * 2,
    name="shrinking",
    hidden_size=H,
)


def case(id, call, error, *words, traced=None):
    return Case(id, call, error, words, traced)


def _lengths_case(id, where, fn, bad, bound=T):
    """A lengths mistake, eager and traced: ``fn(lengths)``."""
    return case(
        id,
        lambda: fn(bad),
        ValueError,
        rf"^{where}",
        "lengths",
        rf"\[0, {bound}\]",
        traced=(fn, (bad,)),
    )


CASES: list[Case] = []

# --- masked_scan ---
CASES += [
    case(
        "masked_scan-f-none",
        lambda: seqmask.masked_scan(None, INIT, XS_TM),
        TypeError,
        "^masked_scan",
        "f must be a function",
    ),
    case(
        "masked_scan-mask-int",
        lambda: seqmask.masked_scan(_ok_step, INIT, XS_TM, MASK.T.astype(int)),
        TypeError,
        "^masked_scan",
        "mask",
        "boolean",
    ),
    case(
        "masked_scan-mask-float",
        lambda: seqmask.masked_scan(_ok_step, INIT, XS_TM, MASK.T * 1.0),
        TypeError,
        "^masked_scan",
        "mask",
        "boolean",
    ),
    case(
        "masked_scan-resets-int",
        lambda: seqmask.masked_scan(
            _ok_step, INIT, XS_TM, MASK.T, resets=MASK.T.astype(np.int8)
        ),
        TypeError,
        "^masked_scan",
        "resets",
        "boolean",
    ),
    case(
        "masked_scan-mask-time",
        lambda: seqmask.masked_scan(_ok_step, INIT, XS_TM, MASK.T[:-1]),
        ValueError,
        "^masked_scan",
        "time axis",
        "mask: 4",
    ),
    case(
        "masked_scan-mask-batch-major",
        lambda: seqmask.masked_scan(_ok_step, INIT, XS_TM, np.ones((T, T), bool)),
        ValueError,
        "^masked_scan",
        "init",
        "batch shape",
    ),
    case(
        "masked_scan-resets-shape",
        lambda: seqmask.masked_scan(
            _ok_step, INIT, XS_TM, MASK.T, resets=np.ones((T, 3), bool)
        ),
        ValueError,
        "^masked_scan",
        "resets",
        "shape of mask",
    ),
    case(
        "masked_scan-init-batch",
        lambda: seqmask.masked_scan(_ok_step, INIT[:1], XS_TM, MASK.T),
        ValueError,
        "^masked_scan",
        "init",
        r"batch shape \(2,\)",
    ),
    case(
        "masked_scan-xs-batch",
        lambda: seqmask.masked_scan(_ok_step, INIT, XS_TM[:, :1], MASK.T),
        ValueError,
        "^masked_scan",
        "xs",
        r"batch shape \(2,\)",
    ),
    # Without a mask or resets the carry went unchecked to jax.lax.scan, whose
    # message names neither masked_scan nor rnn (unclear before).
    *(
        case(
            f"masked_scan-carry-dtype{suffix}",
            lambda mask=mask: seqmask.masked_scan(_bf16_step, INIT, XS_TM, mask),
            TypeError,
            "^masked_scan",
            "carry",
            "bfloat16",
            "float32",
        )
        for suffix, mask in (("", MASK.T), ("-no-mask", None))
    ),
    *(
        case(
            f"masked_scan-carry-shape{suffix}",
            lambda mask=mask: seqmask.masked_scan(_grow_step, INIT, XS_TM, mask),
            TypeError,
            "^masked_scan",
            "carry",
            r"\[2, 6\]",
            r"\[2, 3\]",
        )
        for suffix, mask in (("", MASK.T), ("-no-mask", None))
    ),
    case(
        "rnn-custom-cell-carry-shape",
        lambda: seqmask.rnn(SHRINKING, SHRINKING.init(None, IN), XS),
        TypeError,
        "^rnn",
        "carry",
        r"\[2, 2\]",
        r"\[2, 4\]",
    ),
    case(
        "masked_scan-reset_to-structure",
        lambda: seqmask.masked_scan(
            _ok_step, INIT, XS_TM, MASK.T, resets=MASK.T, reset_to=(INIT, INIT)
        ),
        ValueError,
        "^masked_scan",
        "reset_to",
        "structure",
    ),
    case(
        "masked_scan-reset_to-shape",
        lambda: seqmask.masked_scan(
            _ok_step, INIT, XS_TM, MASK.T, resets=MASK.T, reset_to=np.zeros(4)
        ),
        ValueError,
        "^masked_scan",
        "reset_to",
        "broadcasts",
    ),
    case(
        "masked_scan-xs-scalar-leaf",
        lambda: seqmask.masked_scan(_ok_step, INIT, {"x": np.float32(1.0)}),
        ValueError,
        "^masked_scan",
        r"xs\['x'\]",
        "axes",
    ),
    case(
        "masked_scan-no-steps",
        lambda: seqmask.masked_scan(_ok_step, INIT, None),
        ValueError,
        "^masked_scan",
        "number of steps",
    ),
    case(
        "masked_scan-unroll-zero",
        lambda: seqmask.masked_scan(_ok_step, INIT, XS_TM, unroll=0),
        ValueError,
        "^masked_scan",
        "unroll",
    ),
    case(
        "masked_scan-unroll-float",
        lambda: seqmask.masked_scan(_ok_step, INIT, XS_TM, unroll=2.0),
        TypeError,
        "^masked_scan",
        "unroll",
        "float",
    ),
    case(
        "masked_scan-reverse-string",
        lambda: seqmask.masked_scan(_ok_step, INIT, XS_TM, reverse="yes"),
        TypeError,
        "^masked_scan",
        "reverse",
        "True or False",
    ),
    case(
        "masked_scan-length-negative",
        lambda: seqmask.masked_scan(_ok_step, INIT, None, length=-1),
        ValueError,
        "^masked_scan",
        "length",
        "non-negative",
    ),
]

# --- linear_scan ---
A = np.full((T, B, H), 0.5, np.float32)
BS = np.ones((T, B, H), np.float32)
CASES += [
    case(
        "linear_scan-method",
        lambda: seqmask.linear_scan(A, BS, method="parallel"),
        ValueError,
        "^linear_scan",
        "method",
        "associative",
    ),
    case(
        "linear_scan-a-int",
        lambda: seqmask.linear_scan(A.astype(int), BS),
        TypeError,
        "^linear_scan",
        "a must be floating",
    ),
    case(
        "linear_scan-dtypes",
        lambda: seqmask.linear_scan(A.astype(np.float16), BS),
        TypeError,
        "^linear_scan",
        "one dtype",
        "float16",
    ),
    case(
        "linear_scan-a-shape",
        lambda: seqmask.linear_scan(A[:, :, :2], BS),
        ValueError,
        "^linear_scan",
        "a must have the shape of b",
    ),
    case(
        "linear_scan-a-scalar",
        lambda: seqmask.linear_scan(np.float32(0.5), BS),
        ValueError,
        "^linear_scan",
        "a must have at least 1 axes",
    ),
    case(
        "linear_scan-mask-int",
        lambda: seqmask.linear_scan(A, BS, mask=MASK.T.astype(int)),
        TypeError,
        "^linear_scan",
        "mask",
        "boolean",
    ),
    case(
        "linear_scan-mask-batch-major",
        lambda: seqmask.linear_scan(A, BS, mask=MASK),
        ValueError,
        "^linear_scan",
        "mask",
        r"\[time, \*batch\]",
    ),
    case(
        "linear_scan-resets-vs-mask",
        lambda: seqmask.linear_scan(A, BS, mask=MASK.T, resets=MASK.T[:, 0]),
        ValueError,
        "^linear_scan",
        "resets",
        "shape of mask",
    ),
    case(
        "linear_scan-init-shape",
        lambda: seqmask.linear_scan(A, BS, init=np.zeros((B, 3), np.float32)),
        ValueError,
        "^linear_scan",
        "init",
        r"\[2, 4\]",
    ),
    case(
        "linear_scan-init-dtype",
        lambda: seqmask.linear_scan(A, BS, init=np.zeros((B, H), np.float16)),
        TypeError,
        "^linear_scan",
        "init",
        "float16",
    ),
    case(
        "linear_scan-init-python-complex",
        lambda: seqmask.linear_scan(A, BS, init=1j),
        TypeError,
        "^linear_scan",
        "init must be a real number",
    ),
    case(
        "linear_scan-init-python-overflow",
        lambda: seqmask.linear_scan(A, BS, init=1e40),
        ValueError,
        "^linear_scan",
        "init does not fit dtype float32",
    ),
    case(
        "linear_scan-reset_to-dtype",
        lambda: seqmask.linear_scan(
            A, BS, resets=MASK.T, reset_to=np.zeros(H, np.int32)
        ),
        TypeError,
        "^linear_scan",
        "reset_to",
        "int32",
    ),
    case(
        "linear_scan-reverse-int",
        lambda: seqmask.linear_scan(A, BS, reverse=1),
        TypeError,
        "^linear_scan",
        "reverse",
    ),
]

# --- cells: hyperparameters and init ------------------------------------------
for _name, _maker in (
    ("simple_rnn", cells.simple_rnn),
    ("lstm", cells.lstm),
    ("gru", cells.gru),
    ("min_gru", cells.min_gru),
    ("min_lstm", cells.min_lstm),
):
    CASES += [
        case(
            f"{_name}-hidden_size-zero",
            lambda m=_maker: m(0),
            ValueError,
            f"^{_name}",
            "hidden_size",
            "positive",
        ),
        case(
            f"{_name}-hidden_size-float",
            lambda m=_maker: m(4.0),
            TypeError,
            f"^{_name}",
            "hidden_size",
            "int",
            "Pass 4",
        ),
        case(
            f"{_name}.init-input_size-zero",
            lambda m=_maker: m(H).init(KEY, 0),
            ValueError,
            rf"^{_name}\.init",
            "input_size",
            "positive",
        ),
        case(
            f"{_name}.apply-params-none",
            lambda m=_maker: m(H).apply(None, H0, X),
            TypeError,
            rf"^{_name}\.apply",
            "params",
            rf"{_name}\(4\)",
            "None",
        ),
    ]
CASES += [
    case(
        "min_gru-method",
        lambda: cells.min_gru(H, method="parallel"),
        ValueError,
        "^min_gru",
        "method",
        "'auto'",
    ),
    case(
        "min_lstm-log_space-string",
        lambda: cells.min_lstm(H, log_space="yes"),
        TypeError,
        "^min_lstm",
        "log_space",
    ),
    case(
        "simple_rnn-activation-name",
        lambda: cells.simple_rnn(H, activation="gelu"),
        ValueError,
        "^simple_rnn",
        "activation",
        "'relu'",
    ),
    case(
        "simple_rnn-activation-number",
        lambda: cells.simple_rnn(H, activation=3),
        TypeError,
        "^simple_rnn",
        "activation",
        "function",
    ),
    case(
        "lstm-forget_bias-string",
        lambda: cells.lstm(H, forget_bias="1"),
        TypeError,
        "^lstm",
        "forget_bias",
        "number",
    ),
    case(
        "lstm-forget_bias-nan",
        lambda: cells.lstm(H, forget_bias=float("nan")),
        ValueError,
        "^lstm",
        "forget_bias must be finite",
    ),
]

# --- cells: parameters of another cell -----------------------------------------
CASES += [
    case(
        "lstm.apply-gru-params",
        lambda: LSTM.apply(P_GRU, LSTM_CARRY, X),
        ValueError,
        r"^lstm\.apply",
        r"lstm\(4\)",
        "missing",
        "look like gru\\(4\\)",
    ),
    case(
        "gru.apply-lstm-params",
        lambda: GRU.apply(P_LSTM, H0, X),
        ValueError,
        r"^gru\.apply",
        "input_bias",
        r"look like lstm\(4\)",
    ),
    case(
        "lstm8.apply-lstm4-params",
        lambda: cells.lstm(8).apply(P_LSTM, LSTM_CARRY, X),
        ValueError,
        r"^lstm\.apply",
        r"lstm\(8\)",
        r"\[3, 32\]",
        r"look like lstm\(4\)",
    ),
    case(
        "simple_rnn.apply-lstm-params",
        lambda: RNN.apply(P_LSTM, H0, X),
        ValueError,
        r"^simple_rnn\.apply",
        r"\[4, 4\]",
        r"look like lstm\(4\)",
    ),
    case(
        "min_gru.apply-min_lstm-params",
        lambda: MIN_GRU.apply(P_MIN_LSTM, H0, X),
        ValueError,
        r"^min_gru\.apply",
        r"\[3, 8\]",
        r"min_lstm\(4\)",
    ),
    case(
        "min_lstm.apply-lstm-params",
        lambda: MIN_LSTM.apply(P_LSTM, H0, X),
        ValueError,
        r"^min_lstm\.apply",
        "unexpected",
        "recurrent_kernel",
    ),
    case(
        "lstm.apply-missing-key",
        lambda: LSTM.apply(
            {k: v for k, v in P_LSTM.items() if k != "bias"}, LSTM_CARRY, X
        ),
        ValueError,
        r"^lstm\.apply",
        r"missing params\['bias'\]",
    ),
    case(
        "lstm.apply-int-params",
        lambda: LSTM.apply(
            jax.tree.map(lambda p: p.astype(np.int32), P_LSTM), LSTM_CARRY, X
        ),
        TypeError,
        r"^lstm\.apply",
        "floating",
        "int32",
    ),
    case(
        "lstm.apply-mixed-dtypes",
        lambda: LSTM.apply(
            {**P_LSTM, "bias": P_LSTM["bias"].astype(np.float16)}, LSTM_CARRY, X
        ),
        TypeError,
        r"^lstm\.apply",
        r"params\['bias'\]",
        "float16",
    ),
    case(
        "lstm.apply-list-params",
        lambda: LSTM.apply(list(P_LSTM.values()), LSTM_CARRY, X),
        TypeError,
        r"^lstm\.apply",
        "params",
        "dict",
    ),
    case(
        "gru.initial_carry-lstm-params",
        lambda: GRU.initial_carry(P_LSTM, (B,)),
        ValueError,
        r"^gru\.initial_carry",
        r"look like lstm\(4\)",
    ),
    case(
        "lstm.initial_carry-none",
        lambda: LSTM.initial_carry(None, (B,)),
        TypeError,
        r"^lstm\.initial_carry",
        "params",
    ),
    case(
        "lstm.project_inputs-gru-params",
        lambda: LSTM.project_inputs(P_GRU, XS),
        ValueError,
        r"^lstm\.project_inputs",
        r"look like gru\(4\)",
    ),
    case(
        "gru.apply_projected-lstm-params",
        lambda: GRU.apply_projected(P_LSTM, H0, np.zeros((B, 3 * H), np.float32)),
        ValueError,
        r"^gru\.apply_projected",
        r"look like lstm\(4\)",
    ),
]

# --- cells: carries and inputs given directly ----------------------------------
CASES += [
    # silent: the old step unpacked (c, h) as (h, c)
    case(
        "lstm.apply-flax-order-tuple",
        lambda: LSTM.apply(P_LSTM, (H0, H0 + 1), X),
        ValueError,
        r"^lstm\.apply",
        "carry",
        "structure",
        "LSTMCarry",
        r"\(c, h\)",
    ),
    # silent: the old step broadcast an unbatched carry over the batch
    case(
        "lstm.apply-carry-no-batch",
        lambda: LSTM.apply(P_LSTM, cells.LSTMCarry(H0[0], H0[0]), X),
        ValueError,
        r"^lstm\.apply",
        r"carry\.h",
        r"\[2, 4\]",
    ),
    case(
        "lstm.apply-carry-hidden",
        lambda: LSTM.apply(P_LSTM, cells.LSTMCarry(H0[:, :3], H0[:, :3]), X),
        ValueError,
        r"^lstm\.apply",
        r"carry\.c",
        r"got float32\[2, 3\]",
    ),
    case(
        "lstm.apply-carry-dtype",
        lambda: LSTM.apply(
            P_LSTM, jax.tree.map(lambda c: c.astype(jnp.bfloat16), LSTM_CARRY), X
        ),
        TypeError,
        r"^lstm\.apply",
        "carry",
        "bfloat16",
    ),
    case(
        "gru.apply-carry-batch",
        lambda: GRU.apply(P_GRU, H0[:1], X),
        ValueError,
        r"^gru\.apply",
        "carry",
        r"batch shape \(2,\)",
    ),
    case(
        "gru.apply-lstm-carry",
        lambda: GRU.apply(P_GRU, LSTM_CARRY, X),
        ValueError,
        r"^gru\.apply",
        "carry",
        "structure",
    ),
    case(
        "min_gru.apply-carry-hidden",
        lambda: MIN_GRU.apply(P_MIN_GRU, H0[:, :2], X),
        ValueError,
        r"^min_gru\.apply",
        "carry",
        r"\[2, 4\]",
    ),
    case(
        "simple_rnn.apply-int-inputs",
        lambda: RNN.apply(P_RNN, H0, X.astype(np.int32)),
        TypeError,
        r"^simple_rnn\.apply",
        "inputs",
        "floating",
        "embed",
    ),
    case(
        "gru.apply-input-features",
        lambda: GRU.apply(P_GRU, H0, XS[:, 0, :2]),
        ValueError,
        r"^gru\.apply",
        "inputs",
        r"\[\.\.\., 3\]",
    ),
    case(
        "lstm.apply_projected-width",
        lambda: LSTM.apply_projected(
            P_LSTM, LSTM_CARRY, np.zeros((B, 3 * H), np.float32)
        ),
        ValueError,
        r"^lstm\.apply_projected",
        "projected",
        r"\[\.\.\., 16\]",
    ),
    case(
        "lstm.initial_carry-batch-float",
        lambda: LSTM.initial_carry(P_LSTM, (2.5,)),
        TypeError,
        r"^lstm\.initial_carry",
        "batch_shape",
    ),
    case(
        "gru.initial_carry-batch-negative",
        lambda: GRU.initial_carry(P_GRU, (-1,)),
        ValueError,
        r"^gru\.initial_carry",
        "batch_shape",
        "non-negative",
    ),
]

# --- learnable_initial_state ---
CASES += [
    case(
        "learnable_initial_state-not-a-cell",
        lambda: cells.learnable_initial_state(lambda x: x),
        TypeError,
        "^learnable_initial_state",
        "cell",
        "seqmask.cells.Cell",
    ),
    case(
        "learnable_initial_state-carry_init",
        lambda: cells.learnable_initial_state(LSTM, carry_init="zeros"),
        TypeError,
        "^learnable_initial_state",
        "carry_init",
        "function",
    ),
    case(
        "learnable_initial_state-carry_init-of-two-arguments",
        lambda: cells.learnable_initial_state(
            LSTM, carry_init=lambda key, shape: jnp.zeros(shape)
        ).init(KEY, IN),
        TypeError,
        "^learnable_initial_state",
        r"carry_init must take \(key, shape, dtype\)",
        r"\(key, shape\)",
    ),
    case(
        "learnable_initial_state-carry_init-of-another-shape",
        lambda: cells.learnable_initial_state(
            LSTM, carry_init=lambda key, shape, dtype: jnp.zeros((5,), dtype)
        ).init(KEY, IN),
        ValueError,
        "^learnable_initial_state",
        r"carry_init\(key, shape=\(4,\), dtype=float32\)",
        r"got shape \(5,\)",
    ),
    case(
        "learnable_initial_state.apply-plain-params",
        lambda: LEARNED.apply(P_LSTM, LSTM_CARRY, X),
        ValueError,
        r"^learnable_initial_state\(lstm\)\.apply",
        "'cell'",
        r"look like lstm\(4\)",
    ),
    case(
        "learnable_initial_state.initial_carry-none",
        lambda: LEARNED.initial_carry(None, (B,)),
        TypeError,
        r"^learnable_initial_state\(lstm\)\.initial_carry",
        "params",
    ),
    case(
        "learnable_initial_state.apply-inner-gru",
        lambda: LEARNED.apply({**P_LEARNED, "cell": P_GRU}, LSTM_CARRY, X),
        ValueError,
        r"params\['cell'\]",
        r"look like gru\(4\)",
    ),
    case(
        "learnable_initial_state.apply-state-shape",
        lambda: LEARNED.apply(
            {**P_LEARNED, "initial_carry": LSTM_CARRY}, LSTM_CARRY, X
        ),
        ValueError,
        r"params\['initial_carry'\]",
        r"\[2, 4\]",
    ),
    case(
        "learnable_initial_state.apply-carry-tuple",
        lambda: LEARNED.apply(P_LEARNED, (H0, H0), X),
        ValueError,
        r"^learnable_initial_state\(lstm\)\.apply",
        "carry",
        "structure",
    ),
]


# --- rnn ---
def _rnn_lengths(lengths):
    return seqmask.rnn(LSTM, P_LSTM, XS, lengths=lengths)


def _rnn_lengths_time_major(lengths):
    return seqmask.rnn(GRU, P_GRU, XS_TM, lengths=lengths, time_major=True)


def _rnn_min_gru_lengths(lengths):
    return seqmask.rnn(MIN_GRU, P_MIN_GRU, XS, lengths=lengths)


CASES += [
    # silent: lengths above the time axis were read as T, below zero as 0
    _lengths_case("rnn-lengths-too-long", "rnn", _rnn_lengths, TOO_LONG),
    _lengths_case("rnn-lengths-negative", "rnn", _rnn_lengths, NEGATIVE),
    _lengths_case("rnn-lengths-time-major", "rnn", _rnn_lengths_time_major, TOO_LONG),
    _lengths_case("rnn-min_gru-lengths", "rnn", _rnn_min_gru_lengths, TOO_LONG),
    case(
        "rnn-lengths-rows",
        lambda: _rnn_lengths(np.array([9, 7], np.int32)),
        ValueError,
        "^rnn",
        r"rows \[0, 1\]",
        r"lengths \[9, 7\]",
    ),
    case(
        "rnn-lengths-float",
        lambda: _rnn_lengths(LENGTHS * 1.0),
        TypeError,
        "^rnn",
        "lengths",
        "integer",
    ),
    case(
        "rnn-lengths-shape",
        lambda: _rnn_lengths(np.array([1, 2, 3])),
        ValueError,
        "^rnn",
        "lengths",
        r"shape \(2,\) \(\[\*batch\] of xs",
    ),
    case(
        "rnn-cell-function",
        lambda: seqmask.rnn(lambda x: x, P_LSTM, XS),
        TypeError,
        "^rnn",
        "cell",
        "seqmask.cells.Cell",
    ),
    case(
        "rnn-mask-int",
        lambda: seqmask.rnn(LSTM, P_LSTM, XS, mask=MASK.astype(int)),
        TypeError,
        "^rnn",
        "mask",
        "boolean",
    ),
    case(
        "rnn-mask-time-major",
        lambda: seqmask.rnn(LSTM, P_LSTM, XS, mask=MASK.T),
        ValueError,
        "^rnn",
        "mask",
        r"\(2, 5\)",
    ),
    case(
        "rnn-mask-and-lengths",
        lambda: seqmask.rnn(LSTM, P_LSTM, XS, mask=MASK, lengths=LENGTHS),
        ValueError,
        "^rnn",
        "mask or lengths, not both",
    ),
    case(
        "rnn-resets-int",
        lambda: seqmask.rnn(LSTM, P_LSTM, XS, resets=MASK * 1),
        TypeError,
        "^rnn",
        "resets",
        "boolean",
    ),
    case(
        "rnn-resets-shape",
        lambda: seqmask.rnn(LSTM, P_LSTM, XS, resets=MASK[:, :3]),
        ValueError,
        "^rnn",
        "resets",
        r"\(2, 5\)",
    ),
    case(
        "rnn-gru-params-to-lstm",
        lambda: seqmask.rnn(LSTM, P_GRU, XS),
        ValueError,
        "^rnn",
        r"lstm\(4\)",
        r"look like gru\(4\)",
    ),
    case(
        "rnn-lstm4-params-to-lstm8",
        lambda: seqmask.rnn(cells.lstm(8), P_LSTM, XS),
        ValueError,
        "^rnn",
        r"lstm\(8\)",
        r"look like lstm\(4\)",
    ),
    case(
        "rnn-lstm8-params-to-lstm4",
        lambda: seqmask.rnn(LSTM, P_LSTM8, XS),
        ValueError,
        "^rnn",
        r"lstm\(4\)",
        r"look like lstm\(8\)",
    ),
    case(
        "rnn-params-none",
        lambda: seqmask.rnn(LSTM, None, XS),
        TypeError,
        "^rnn",
        "params",
        r"lstm\(4\)",
    ),
    case(
        "rnn-plain-params-to-learned",
        lambda: seqmask.rnn(LEARNED, P_LSTM, XS),
        ValueError,
        "^rnn",
        "'cell'",
        "'initial_carry'",
        r"look like lstm\(4\)",
    ),
    case(
        "rnn-learned-params-to-plain",
        lambda: seqmask.rnn(LSTM, P_LEARNED, XS),
        ValueError,
        "^rnn",
        r"lstm\(4\)",
        r"learnable_initial_state\(lstm\(4\)\)",
    ),
    case(
        "rnn-params-input-size",
        lambda: seqmask.rnn(LSTM, P_LSTM, XS[..., :2]),
        ValueError,
        "^rnn",
        "2 input features",
        r"\[2, 16\]",
    ),
    case(
        "rnn-xs-int",
        lambda: seqmask.rnn(LSTM, P_LSTM, XS.astype(np.int32)),
        TypeError,
        "^rnn",
        "xs",
        "floating",
        "Embed",
    ),
    case(
        "rnn-xs-rank-1",
        lambda: seqmask.rnn(LSTM, P_LSTM, XS[0, 0]),
        ValueError,
        "^rnn",
        "xs",
        "at least 2 axes",
    ),
    case(
        "rnn-initial_carry-flax-order",
        lambda: seqmask.rnn(LSTM, P_LSTM, XS, initial_carry=(H0, H0)),
        ValueError,
        "^rnn",
        "initial_carry",
        "structure",
    ),
    case(
        "rnn-initial_carry-dtype",
        lambda: seqmask.rnn(GRU, P_GRU, XS, initial_carry=H0.astype(np.float16)),
        TypeError,
        "^rnn",
        "initial_carry",
        "float16",
    ),
    case(
        "rnn-initial_carry-hidden",
        lambda: seqmask.rnn(GRU, P_GRU, XS, initial_carry=H0[:, :3]),
        ValueError,
        "^rnn",
        "initial_carry",
        r"float32\[2, 3\]",
    ),
    case(
        "rnn-reset_to-shape",
        lambda: seqmask.rnn(GRU, P_GRU, XS, resets=MASK, reset_to=H0[:, :3]),
        ValueError,
        "^rnn",
        "reset_to",
        r"\[2, 3\]",
    ),
    case(
        "rnn-reset_to-without-resets",
        lambda: seqmask.rnn(GRU, P_GRU, XS, reset_to=np.zeros((7, 7), np.float32)),
        ValueError,
        "^rnn",
        "reset_to",
        r"float32\[7, 7\]",
    ),
    case(
        "rnn-unroll-zero",
        lambda: seqmask.rnn(LSTM, P_LSTM, XS, unroll=0),
        ValueError,
        "^rnn",
        "unroll",
    ),
    case(
        "rnn-remat-negative",
        lambda: seqmask.rnn(LSTM, P_LSTM, XS, remat=-2),
        ValueError,
        "^rnn",
        "remat",
        "positive",
    ),
    case(
        "rnn-remat-float",
        lambda: seqmask.rnn(LSTM, P_LSTM, XS, remat=0.5),
        TypeError,
        "^rnn",
        "remat",
        "bool or an int",
    ),
    case(
        "rnn-skip_padding-zero",
        lambda: seqmask.rnn(LSTM, P_LSTM, XS, skip_padding=0),
        ValueError,
        "^rnn",
        "skip_padding",
        "positive",
    ),
    case(
        "bidirectional-skip_padding-string",
        lambda: seqmask.bidirectional(
            LSTM, {"forward": P_LSTM, "backward": P_LSTM}, XS, skip_padding="auto"
        ),
        TypeError,
        "^bidirectional",
        "skip_padding",
        "bool or an int",
    ),
    case(
        "rnn-hoist-string",
        lambda: seqmask.rnn(LSTM, P_LSTM, XS, hoist="auto"),
        TypeError,
        "^rnn",
        "hoist",
        "True or False",
    ),
    case(
        "rnn-reverse-string",
        lambda: seqmask.rnn(LSTM, P_LSTM, XS, reverse="yes"),
        TypeError,
        "^rnn",
        "reverse",
    ),
    case(
        "rnn-time_major-none",
        lambda: seqmask.rnn(LSTM, P_LSTM, XS, time_major=None),
        TypeError,
        "^rnn",
        "time_major",
    ),
]


# --- bidirectional ---
def _bidirectional_lengths(lengths):
    return seqmask.bidirectional(LSTM, P_BI, XS, lengths=lengths)


CASES += [
    _lengths_case(
        "bidirectional-lengths-too-long",
        "bidirectional",
        _bidirectional_lengths,
        TOO_LONG,
    ),
    _lengths_case(
        "bidirectional-lengths-negative",
        "bidirectional",
        _bidirectional_lengths,
        NEGATIVE,
    ),
    case(
        "bidirectional-merge",
        lambda: seqmask.bidirectional(LSTM, P_BI, XS, merge="mean"),
        ValueError,
        "^bidirectional",
        "merge",
        "'concat'",
    ),
    case(
        "bidirectional-params-none",
        lambda: seqmask.bidirectional(LSTM, None, XS),
        TypeError,
        "^bidirectional",
        "params",
        "'forward'",
    ),
    case(
        "bidirectional-params-plain",
        lambda: seqmask.bidirectional(LSTM, P_LSTM, XS),
        ValueError,
        "^bidirectional",
        "params",
        "'backward'",
    ),
    case(
        "bidirectional-backward-gru",
        lambda: seqmask.bidirectional(LSTM, {**P_BI, "backward": P_GRU}, XS),
        ValueError,
        "^bidirectional",
        r"params\['backward'\]",
        r"look like gru",
    ),
    case(
        "bidirectional-backward_cell",
        lambda: seqmask.bidirectional(LSTM, P_BI, XS, backward_cell="gru"),
        TypeError,
        "^bidirectional",
        "backward_cell",
        "Cell",
    ),
    case(
        "bidirectional-initial_carry-single",
        lambda: seqmask.bidirectional(LSTM, P_BI, XS, initial_carry=LSTM_CARRY),
        ValueError,
        "^bidirectional",
        "initial_carry",
        "structure",
    ),
    case(
        "bidirectional-initial_carry-list",
        lambda: seqmask.bidirectional(LSTM, P_BI, XS, initial_carry=[None, None]),
        TypeError,
        "^bidirectional",
        "initial_carry",
        "pair",
    ),
    case(
        "bidirectional-initial_carry-backward-size",
        lambda: seqmask.bidirectional(
            LSTM, P_BI, XS, initial_carry=(LSTM_CARRY, cells.LSTMCarry(H1, H1))
        ),
        ValueError,
        "^bidirectional",
        r"initial_carry\[1\]\.h: got float32\[2, 5\]",
    ),
    case(
        "bidirectional-mask-int",
        lambda: seqmask.bidirectional(LSTM, P_BI, XS, mask=MASK.astype(np.uint8)),
        TypeError,
        "^bidirectional",
        "mask",
        "boolean",
    ),
    case(
        "bidirectional-cell",
        lambda: seqmask.bidirectional("lstm", P_BI, XS),
        TypeError,
        "^bidirectional",
        "cell",
        "Cell",
    ),
]


# --- stacked ---
def _stacked_lengths(lengths):
    return seqmask.stacked(GRU, P_STACK, XS, lengths=lengths)


def _stacked_dropout(rate):
    return seqmask.stacked(GRU, P_STACK, XS, dropout_rate=rate, dropout_key=KEY)


CASES += [
    _lengths_case("stacked-lengths-too-long", "stacked", _stacked_lengths, TOO_LONG),
    case(
        "stacked-dropout-one",
        lambda: _stacked_dropout(1.0),
        ValueError,
        "^stacked",
        "dropout_rate",
        r"\[0\.0, 1\.0\)",
        traced=(_stacked_dropout, (np.float32(1.0),)),
    ),
    case(
        "stacked-dropout-negative",
        lambda: _stacked_dropout(-0.1),
        ValueError,
        "^stacked",
        "dropout_rate",
        r"\[0\.0, 1\.0\)",
        traced=(_stacked_dropout, (np.float32(-0.1),)),
    ),
    case(
        "stacked-dropout-string",
        lambda: _stacked_dropout("0.1"),
        TypeError,
        "^stacked",
        "dropout_rate",
        "number",
    ),
    case(
        "stacked-merge-none",
        lambda: seqmask.stacked(GRU, P_STACK, XS, bidirectional=True, merge="none"),
        ValueError,
        "^stacked",
        "merge",
        "'sum'",
    ),
    case(
        "stacked-params-empty",
        lambda: seqmask.stacked(GRU, [], XS),
        ValueError,
        "^stacked",
        "params",
        "one entry a layer",
    ),
    case(
        "stacked-params-dict",
        lambda: seqmask.stacked(GRU, P_GRU, XS),
        TypeError,
        "^stacked",
        "params",
        "list",
    ),
    case(
        "stacked-layer-params-wrong",
        lambda: seqmask.stacked(GRU, [P_GRU, P_LSTM], XS),
        ValueError,
        "^stacked",
        r"params\[1\]",
        r"look like lstm\(4\)",
    ),
    case(
        "stacked-initial_carries-length",
        lambda: seqmask.stacked(GRU, P_STACK, XS, initial_carries=[None]),
        ValueError,
        "^stacked",
        "initial_carries",
        "one entry a layer",
    ),
    case(
        "stacked-initial_carry-layer-size",
        lambda: seqmask.stacked(GRU, P_STACK, XS, initial_carries=[H0, H1]),
        ValueError,
        "^stacked",
        r"initial_carries\[1\]: got float32\[2, 5\]",
    ),
    case(
        "stacked-bidirectional-initial_carry-single",
        lambda: seqmask.stacked(
            GRU,
            [{"forward": P_GRU, "backward": P_GRU}] * 2,
            XS,
            bidirectional=True,
            initial_carries=[None, H0],
        ),
        TypeError,
        "^stacked",
        r"initial_carries\[1\] must be a pair",
    ),
    case(
        "stacked-residual-sizes",
        lambda: seqmask.stacked(
            [GRU, cells.gru(H + 1)],
            [P_GRU, random_params(cells.gru(H + 1), H)],
            XS,
            residual=True,
        ),
        ValueError,
        "^stacked",
        r"residual connections need layer 1 \(from 0\)",
        "reads 4 and outputs 5",
    ),
    case(
        "stacked-residual-string",
        lambda: seqmask.stacked(GRU, P_STACK, XS, residual="yes"),
        TypeError,
        "^stacked",
        "residual",
    ),
    case(
        "stacked-cells-count",
        lambda: seqmask.stacked([GRU], P_STACK, XS),
        ValueError,
        "^stacked",
        "1 cells for 2 layers",
    ),
    case(
        "stacked-cells-entry",
        lambda: seqmask.stacked([GRU, "gru"], P_STACK, XS),
        TypeError,
        "^stacked",
        r"cells\[1\]",
        "Cell",
    ),
    case(
        "stacked-mask-shape",
        lambda: seqmask.stacked(GRU, P_STACK, XS, mask=MASK.T),
        ValueError,
        "^stacked",
        "mask",
    ),
]

# --- init_bidirectional, init_stacked ---
CASES += [
    case(
        "init_bidirectional-cell",
        lambda: seqmask.init_bidirectional(KEY, "lstm", IN),
        TypeError,
        "^init_bidirectional",
        "cell",
        "Cell",
    ),
    case(
        "init_bidirectional-input_size-zero",
        lambda: seqmask.init_bidirectional(KEY, LSTM, 0),
        ValueError,
        "^init_bidirectional",
        "input_size",
        "positive",
    ),
    case(
        "init_bidirectional-input_size-float",
        lambda: seqmask.init_bidirectional(KEY, LSTM, 3.0),
        TypeError,
        "^init_bidirectional",
        "input_size",
        "int",
    ),
    case(
        "init_bidirectional-backward_cell",
        lambda: seqmask.init_bidirectional(KEY, LSTM, IN, backward_cell=object()),
        TypeError,
        "^init_bidirectional",
        "backward_cell",
    ),
    case(
        "init_stacked-num_layers-missing",
        lambda: seqmask.init_stacked(KEY, GRU, IN),
        ValueError,
        "^init_stacked",
        "num_layers",
    ),
    case(
        "init_stacked-num_layers-zero",
        lambda: seqmask.init_stacked(KEY, GRU, IN, num_layers=0),
        ValueError,
        "^init_stacked",
        "num_layers",
        "positive",
    ),
    case(
        "init_stacked-num_layers-mismatch",
        lambda: seqmask.init_stacked(KEY, [GRU, GRU], IN, num_layers=3),
        ValueError,
        "^init_stacked",
        "num_layers=3",
        "2 cells",
    ),
    case(
        "init_stacked-merge",
        lambda: seqmask.init_stacked(KEY, GRU, IN, num_layers=2, merge="none"),
        ValueError,
        "^init_stacked",
        "merge",
    ),
    case(
        "init_stacked-input_size",
        lambda: seqmask.init_stacked(KEY, GRU, -3, num_layers=2),
        ValueError,
        "^init_stacked",
        "input_size",
    ),
    case(
        "init_stacked-cells-entry",
        lambda: seqmask.init_stacked(KEY, [GRU, 4], IN),
        TypeError,
        "^init_stacked",
        r"cells\[1\]",
        "Cell",
    ),
]


# --- masks ---
def _lengths_to_mask(lengths):
    return masks.lengths_to_mask(lengths, T)


def _reverse_valid_steps(lengths):
    return masks.reverse_valid_steps(XS, lengths=lengths)


def _check_lengths(lengths):
    masks.check_lengths(lengths, T)
    return lengths


def _resolve_mask(lengths):
    return masks.resolve_mask(XS, lengths=lengths, name="my_layer")


CASES += [
    # silent: lengths_to_mask clipped lengths outside [0, max_length]
    _lengths_case(
        "lengths_to_mask-too-long", "lengths_to_mask", _lengths_to_mask, TOO_LONG
    ),
    _lengths_case(
        "lengths_to_mask-negative", "lengths_to_mask", _lengths_to_mask, NEGATIVE
    ),
    _lengths_case(
        "reverse_valid_steps-too-long",
        "reverse_valid_steps",
        _reverse_valid_steps,
        TOO_LONG,
    ),
    _lengths_case("check_lengths-too-long", "check_lengths", _check_lengths, TOO_LONG),
    _lengths_case("resolve_mask-too-long", "my_layer", _resolve_mask, NEGATIVE),
    case(
        "lengths_to_mask-float",
        lambda: masks.lengths_to_mask(LENGTHS * 1.0, T),
        TypeError,
        "^lengths_to_mask",
        "lengths",
        "integer",
    ),
    case(
        "lengths_to_mask-bool",
        lambda: masks.lengths_to_mask(MASK[:, 0], T),
        TypeError,
        "^lengths_to_mask",
        "lengths",
        "integer",
    ),
    case(
        "lengths_to_mask-max_length-float",
        lambda: masks.lengths_to_mask(LENGTHS, 5.0),
        TypeError,
        "^lengths_to_mask",
        "max_length",
        "int",
    ),
    case(
        "lengths_to_mask-max_length-negative",
        lambda: masks.lengths_to_mask(LENGTHS, -1),
        ValueError,
        "^lengths_to_mask",
        "max_length",
        "non-negative",
    ),
    case(
        "lengths_to_mask-clip-string",
        lambda: masks.lengths_to_mask(LENGTHS, T, clip="yes"),
        TypeError,
        "^lengths_to_mask",
        "clip",
    ),
    case(
        "mask_to_lengths-int",
        lambda: masks.mask_to_lengths(MASK.astype(int)),
        TypeError,
        "^mask_to_lengths",
        "mask",
        "boolean",
    ),
    case(
        "mask_to_lengths-scalar",
        lambda: masks.mask_to_lengths(np.bool_(True)),
        ValueError,
        "^mask_to_lengths",
        "mask",
        "time axis",
    ),
    case(
        "reverse_valid_steps-neither",
        lambda: masks.reverse_valid_steps(XS),
        ValueError,
        "^reverse_valid_steps",
        "mask or lengths",
    ),
    case(
        "reverse_valid_steps-mask-float",
        lambda: masks.reverse_valid_steps(XS, MASK * 1.0),
        TypeError,
        "^reverse_valid_steps",
        "mask",
        "boolean",
    ),
    case(
        "reverse_valid_steps-mask-shape",
        lambda: masks.reverse_valid_steps(XS, MASK.T),
        ValueError,
        "^reverse_valid_steps",
        "mask",
        r"\(2, 5\)",
    ),
    case(
        "check_lengths-float",
        lambda: masks.check_lengths(LENGTHS * 1.0, T),
        TypeError,
        "^check_lengths",
        "lengths",
        "integer",
    ),
    case(
        "check_mask-int",
        lambda: masks.check_mask(MASK.astype(int), (B, T)),
        TypeError,
        "^check_mask",
        "mask",
        "boolean",
    ),
    case(
        "check_mask-shape",
        lambda: masks.check_mask(MASK.T, (B, T)),
        ValueError,
        "^check_mask",
        "mask",
        r"\(2, 5\)",
    ),
    case(
        "resolve_mask-both",
        lambda: masks.resolve_mask(XS, mask=MASK, lengths=LENGTHS, name="my_layer"),
        ValueError,
        "^my_layer",
        "not both",
    ),
    case(
        "resolve_mask-lengths-batch",
        lambda: masks.resolve_mask(XS, lengths=LENGTHS[:1]),
        ValueError,
        "^rnn",
        "lengths",
        "batch shape",
    ),
]


# --- carry ---
def _rnn_with_carries_lengths(lengths):
    return rnn_with_carries(LSTM, P_LSTM, XS, lengths=lengths)


CASES += [
    _lengths_case(
        "rnn_with_carries-lengths-too-long",
        "rnn_with_carries",
        _rnn_with_carries_lengths,
        TOO_LONG,
    ),
    case(
        "rnn_with_carries-cell",
        lambda: rnn_with_carries(None, P_LSTM, XS),
        TypeError,
        "^rnn_with_carries",
        "cell",
        "Cell",
    ),
    case(
        "rnn_with_carries-gru-params",
        lambda: rnn_with_carries(LSTM, P_GRU, XS),
        ValueError,
        "^rnn_with_carries",
        r"look like gru\(4\)",
    ),
    case(
        "rnn_with_carries-unroll",
        lambda: rnn_with_carries(LSTM, P_LSTM, XS, unroll=-1),
        ValueError,
        "^rnn_with_carries",
        "unroll",
    ),
    case(
        "rnn_with_carries-mask-int",
        lambda: rnn_with_carries(LSTM, P_LSTM, XS, mask=MASK * 1),
        TypeError,
        "^rnn_with_carries",
        "mask",
        "boolean",
    ),
    case(
        "reset-where-int",
        lambda: reset(H0, np.array([1, 0])),
        TypeError,
        "^reset",
        "where",
        "boolean",
    ),
    case(
        "reset-where-batch",
        lambda: reset(H0, np.array([True, False, True])),
        ValueError,
        "^reset",
        "where must be boolean \\[\\*batch\\]",
        r"where of shape \(3,\)",
        r"carry has shape \(2, 4\)",
    ),
    case(
        "reset-reset_to-structure",
        lambda: reset(H0, MASK[:, 0], reset_to=(H0[0], H0[0])),
        ValueError,
        "^reset",
        "reset_to",
        "structure",
    ),
    case(
        "reset-reset_to-dtype",
        lambda: reset(H0, MASK[:, 0], reset_to=np.zeros(H, np.int32)),
        TypeError,
        "^reset",
        "reset_to",
        "int32",
    ),
    case(
        "reset-reset_to-python-fraction-into-int",
        lambda: reset(H0.astype(np.int32), MASK[:, 0], reset_to=2.5),
        ValueError,
        "^reset",
        "reset_to does not fit dtype int32",
        r"2\.5",
    ),
    case(
        "reset-reset_to-python-overflow-float16",
        lambda: reset(H0.astype(np.float16), MASK[:, 0], reset_to=1e6),
        ValueError,
        "^reset",
        "reset_to does not fit dtype float16",
    ),
    case(
        "reset-reset_to-shape",
        lambda: reset(H0, MASK[:, 0], reset_to=np.zeros(H + 1, np.float32)),
        ValueError,
        "^reset",
        "reset_to",
        r"\[5\]",
    ),
    case(
        "truncated_value_and_grad-loss_fn",
        lambda: truncated_value_and_grad("loss"),
        TypeError,
        "^truncated_value_and_grad",
        "loss_fn",
        "function",
    ),
    case(
        "truncated_value_and_grad-vector-loss",
        lambda: truncated_value_and_grad(lambda p, c, x: (p * x, c))(
            1.0, 0.0, np.ones(3, np.float32)
        ),
        ValueError,
        "^truncated_value_and_grad",
        "scalar loss",
    ),
    case(
        "truncated_value_and_grad-integer-loss",
        lambda: truncated_value_and_grad(lambda p, c, x: (jnp.int32(1), c))(
            1.0, 0.0, np.ones(3, np.float32)
        ),
        TypeError,
        "^truncated_value_and_grad",
        "floating scalar loss",
        "int32",
    ),
    case(
        "truncated_bptt_step-optimizer",
        lambda: truncated_bptt_step(lambda p, c, x: (p, c), "adam"),
        TypeError,
        "^truncated_bptt_step",
        "optimizer",
        "update",
    ),
]

# --- cells.named, cells.output_size ---
CASES += [
    case(
        "named-unknown",
        lambda: cells.named("transformer", H),
        ValueError,
        "^named",
        "name",
        "'lstm'",
    ),
    case(
        "named-hidden_size",
        lambda: cells.named("gru", 0),
        ValueError,
        "^named",
        "hidden_size",
        "positive",
    ),
    case(
        # A valid call cached first: 1 == True must not find its cell.
        "named-option-cached-under-an-equal-value",
        lambda: (
            cells.named("min_gru", H, log_space=True),
            cells.named("min_gru", H, log_space=1),
        ),
        TypeError,
        "^named",
        "log_space must be True or False",
        "int 1",
    ),
    case(
        "named-option",
        lambda: cells.named("gru", H, forget_bias=1.0),
        TypeError,
        "^named",
        "gru",
        "forget_bias",
    ),
    case(
        "output_size-cell",
        lambda: cells.output_size("lstm", P_LSTM, IN),
        TypeError,
        "^output_size",
        "cell",
        "Cell",
    ),
    case(
        "output_size-params",
        lambda: cells.output_size(GRU, P_LSTM, IN),
        ValueError,
        "^output_size",
        r"look like lstm\(4\)",
    ),
    case(
        "output_size-input_size",
        lambda: cells.output_size(GRU, P_GRU, 0),
        ValueError,
        "^output_size",
        "input_size",
        "positive",
    ),
]

# --- PRNG keys: every public function that takes one ---------------------------
KEYS_BATCH = jax.random.split(KEY, 2)
CASES += [
    case(
        f"{where}-key-{kind}",
        call,
        error,
        "^" + re.escape(where),
        "key",
        expected,
    )
    for where, init in (
        ("lstm.init", lambda key: LSTM.init(key, IN)),
        ("min_gru.init", lambda key: MIN_GRU.init(key, IN)),
        ("learnable_initial_state(lstm).init", lambda key: LEARNED.init(key, IN)),
        ("init_bidirectional", lambda key: seqmask.init_bidirectional(key, GRU, IN)),
        ("init_stacked", lambda key: seqmask.init_stacked(key, GRU, IN, num_layers=2)),
    )
    for kind, call, error, expected in (
        ("int", lambda init=init: init(0), TypeError, r"PRNG key, e\.g\."),
        ("batch", lambda init=init: init(KEYS_BATCH), ValueError, r"single PRNG key"),
        (
            "uint32-shape",
            lambda init=init: init(np.array([1, 2, 3], np.uint32)),
            TypeError,
            r"got uint32\[3\]",
        ),
    )
]
CASES += [
    case(
        "lstm.init-args-swapped",
        lambda: LSTM.init(IN, KEY),
        TypeError,
        "^lstm.init",
        "key must be a PRNG key",
        "got int 3",
    ),
    case(
        "stacked-dropout_key-int",
        lambda: seqmask.stacked(GRU, P_STACK, XS, dropout_rate=0.5, dropout_key=0),
        TypeError,
        "^stacked",
        "dropout_key must be a PRNG key",
    ),
    case(
        "stacked-dropout_key-batch",
        lambda: seqmask.stacked(
            GRU, P_STACK, XS, dropout_rate=0.5, dropout_key=KEYS_BATCH
        ),
        ValueError,
        "^stacked",
        "dropout_key must be a single PRNG key",
    ),
]

# --- cell factories: options checked at construction ------------------------------
CASES += [
    case(
        "lstm-param_dtype-int",
        lambda: cells.lstm(H, param_dtype=jnp.int32),
        TypeError,
        "^lstm",
        "param_dtype must be a floating dtype",
        "int32",
    ),
    case(
        "gru-dtype-unknown",
        lambda: cells.gru(H, dtype="float33"),
        TypeError,
        "^gru",
        "dtype must be a dtype",
        "float33",
    ),
    case(
        "min_lstm-dtype-int",
        lambda: cells.min_lstm(H, dtype=np.int8),
        TypeError,
        "^min_lstm",
        "dtype must be a floating dtype",
    ),
    case(
        "lstm-kernel_init-number",
        lambda: cells.lstm(H, kernel_init=0.1),
        TypeError,
        "^lstm",
        "kernel_init must be a function",
        "float 0.1",
    ),
    case(
        "simple_rnn-recurrent_init-string",
        lambda: cells.simple_rnn(H, recurrent_init="orthogonal"),
        TypeError,
        "^simple_rnn",
        "recurrent_init must be a function",
    ),
    case(
        "min_gru-bias_init-none",
        lambda: cells.min_gru(H, bias_init=None),
        TypeError,
        "^min_gru",
        "bias_init must be a function",
    ),
    # The message claims no input size it was not given.
    case(
        "lstm.apply-params-none-no-input-size",
        lambda: LSTM.apply(None, LSTM_CARRY, X),
        TypeError,
        "^lstm.apply",
        r"params must be the parameters of lstm\(4\): a dict",
        r"^(?![\s\S]*input features)",
    ),
    case(
        "lstm.initial_carry-args-swapped",
        lambda: LSTM.initial_carry((B,), P_LSTM),
        TypeError,
        "^lstm.initial_carry",
        r"parameters of lstm\(4\): a dict",
        r"^(?![\s\S]*input features)",
    ),
]

# --- rnn: expected shapes come from xs ---------------------------------------------
CASES += [
    case(
        "rnn-lengths-scalar-for-batch",
        lambda: seqmask.rnn(GRU, P_GRU, XS, lengths=2),
        ValueError,
        "^rnn",
        r"lengths must have shape \(2,\)",
        r"got \(\)",
    ),
    case(
        "rnn-mask-time-only",
        lambda: seqmask.rnn(GRU, P_GRU, XS, mask=np.ones(T, bool)),
        ValueError,
        "^rnn",
        r"mask must have shape \(2, 5\)",
        r"of xs",
        r"got \(5,\)",
    ),
    case(
        "rnn-mask-trailing-1",
        lambda: seqmask.rnn(GRU, P_GRU, XS, mask=MASK[..., None]),
        ValueError,
        "^rnn",
        r"mask must have shape \(2, 5\)",
        r"got \(2, 5, 1\)",
    ),
    case(
        "rnn-time-major-xs-hint",
        lambda: seqmask.rnn(GRU, P_GRU, XS_TM, lengths=LENGTHS),
        ValueError,
        "^rnn",
        r"lengths must have shape \(5,\)",
        "time_major=True",
    ),
    case(
        "bidirectional-merge-sum-sizes",
        lambda: seqmask.bidirectional(
            GRU,
            {"forward": P_GRU, "backward": random_params(cells.gru(H + 1))},
            XS,
            backward_cell=cells.gru(H + 1),
            merge="sum",
        ),
        ValueError,
        "^bidirectional",
        "merge='sum'",
        "4 forward",
        "5 backward",
    ),
]

# --- masked_scan: messages that name the right argument ----------------------------
CASES += [
    case(
        "masked_scan-mask-trailing-1",
        lambda: seqmask.masked_scan(_ok_step, INIT, XS_TM, MASK.T[..., None]),
        ValueError,
        "^masked_scan",
        r"batch shape \(2, 1\) of mask",
    ),
    case(
        "masked_scan-f-returns-carry-only",
        lambda: seqmask.masked_scan(lambda c, x: c + x, INIT, XS_TM, MASK.T),
        TypeError,
        "^masked_scan",
        r"f must return \(new_carry, y\)",
        r"^(?![\s\S]*Cast inside)",
    ),
    case(
        "masked_scan-f-nests-carry",
        lambda: seqmask.masked_scan(lambda c, x: ((c, c), c), INIT, XS_TM, MASK.T),
        TypeError,
        "^masked_scan",
        "carry must have the structure",
        r"^(?![\s\S]*Cast inside)",
    ),
    case(
        "masked_scan-reset_to-dtype",
        lambda: seqmask.masked_scan(
            _ok_step,
            INIT,
            XS_TM,
            MASK.T,
            resets=np.zeros((T, B), bool),
            reset_to=INIT.astype(np.float16),
        ),
        TypeError,
        "^masked_scan",
        "reset_to",
        "float16",
        "dtypes of init",
    ),
    case(
        "masked_scan-pad_value-shape",
        lambda: seqmask.masked_scan(
            _ok_step, INIT, XS_TM, MASK.T, pad_value=np.zeros(5, np.float32)
        ),
        ValueError,
        "^masked_scan",
        "pad_value must be a scalar or broadcast",
        r"\(2, 3\)",
        r"got shape \(5,\)",
    ),
]

# --- carry: reset and truncated BPTT -------------------------------------------------
CASES += [
    case(
        "reset-where-column",
        lambda: reset(H0, np.array([[True], [False]])),
        ValueError,
        "^reset",
        r"where must be boolean \[\*batch\]",
        r"where of shape \(2, 1\)",
    ),
    case(
        "reset-where-time-axis",
        lambda: reset(H0, MASK),
        ValueError,
        "^reset",
        r"where of shape \(2, 5\)",
    ),
    case(
        "truncated_value_and_grad-loss-only",
        lambda: truncated_value_and_grad(lambda p, c, x: jnp.sum(p * c * x))(
            jnp.float32(1.0), jnp.float32(1.0), jnp.float32(2.0)
        ),
        TypeError,
        "^truncated_value_and_grad",
        r"loss_fn must return a pair \(loss, new_carry\)",
    ),
    case(
        "truncated_value_and_grad-int-params",
        lambda: truncated_value_and_grad(lambda p, c, x: (jnp.sum(p * c + x), c))(
            {"w": 1}, jnp.float32(1.0), jnp.float32(2.0)
        ),
        TypeError,
        "^truncated_value_and_grad",
        r"params\['w'\]",
        "floating",
    ),
]

# --- the same classes, elsewhere in the core -------------------------------------
CASES += [
    case(
        "masked_scan-no-mask-f-returns-carry-only",
        lambda: seqmask.masked_scan(lambda c, x: c + x, INIT, XS_TM),
        TypeError,
        "^masked_scan",
        r"f must return \(new_carry, y\)",
    ),
    case(
        "truncated_bptt_step-loss-only",
        lambda: truncated_bptt_step(
            lambda p, c, x: jnp.sum(p * c * x), _Sgd(), jit=False
        )(jnp.float32(1.0), (), jnp.float32(1.0), jnp.float32(2.0)),
        TypeError,
        "^truncated_bptt_step",
        r"loss_fn must return a pair \(loss, new_carry\)",
    ),
    case(
        "named-dtype-unknown",
        lambda: cells.named("gru", H, dtype="f33"),
        TypeError,
        "^named",
        "dtype must be a dtype",
    ),
    case(
        "named-method-unknown",
        lambda: cells.named("min_gru", H, method="parallel"),
        ValueError,
        "^named",
        "method must be one of",
    ),
    case(
        "lstm-forget_bias-array",
        lambda: cells.lstm(H, forget_bias=np.ones(H)),
        ValueError,
        "^lstm",
        r"forget_bias must be one number \(a scalar\)",
        r"\(4,\)",
    ),
    case(
        "stacked-dropout_rate-array",
        lambda: seqmask.stacked(
            GRU, P_STACK, XS, dropout_rate=np.full(2, 0.5), dropout_key=KEY
        ),
        ValueError,
        "^stacked",
        "dropout_rate must be one number",
    ),
]


# Without jax_enable_x64, JAX stores 64-bit host integers in 32 bits: a
# length of 2**32 + 1 wrapped to 1 and passed every range check.
CASES += [
    case(
        "lengths_to_mask-int64-wraps",
        lambda: masks.lengths_to_mask(np.array([2**32 + 1]), T),
        ValueError,
        "^lengths_to_mask",
        "lengths does not fit the 32-bit integers",
        "4294967297",
    ),
    case(
        "check_lengths-int64-negative-wraps",
        lambda: masks.check_lengths(np.array([-(2**32) + 2]), T),
        ValueError,
        "^check_lengths",
        "jax_enable_x64",
        "-4294967294",
    ),
    case(
        "check_lengths-python-int-list-wraps",
        lambda: masks.check_lengths([2**32 + 1], T),
        ValueError,
        "^check_lengths",
        "lengths does not fit the 32-bit integers",
    ),
    case(
        "check_lengths-beyond-64-bits",
        lambda: masks.check_lengths([2**70], T),
        ValueError,
        "^check_lengths",
        "lengths does not fit any integer dtype",
    ),
    case(
        "rnn-lengths-int64-wraps",
        lambda: seqmask.rnn(LSTM, P_LSTM, XS, lengths=np.full(XS.shape[0], 2**32 + 2)),
        ValueError,
        "^rnn",
        "lengths does not fit the 32-bit integers",
    ),
]


class _Sgd:
    """The least optimizer: ``update`` returns ``-0.1 * grads``."""

    def update(self, grads, state, params):
        return jax.tree.map(lambda g: -0.1 * g, grads), state


# masked_scan: a pad_value the outputs' dtype cannot hold was cast (-1 -> 255
# in uint8, 1e10 -> int32 min, 0.5 -> True); reset_to was not checked
# without resets.
_M = np.array([[True, False]] * 3)


def _uint8_outputs(pad_value):
    return seqmask.masked_scan(
        lambda c, x: (c, jnp.array([1, 2], jnp.uint8)),
        jnp.zeros(2),
        jnp.ones((3, 2)),
        _M,
        pad_value=pad_value,
    )


CASES += [
    case(
        "masked_scan-pad_value-wraps-uint8",
        lambda: _uint8_outputs(-1),
        ValueError,
        "^masked_scan",
        "pad_value does not fit dtype uint8",
        traced=(_uint8_outputs, (np.int32(-1),)),
    ),
    case(
        "masked_scan-pad_value-fraction-for-bool",
        lambda: seqmask.masked_scan(
            lambda c, x: (c, jnp.array([True, True])),
            jnp.zeros(2),
            jnp.ones((3, 2)),
            _M,
            pad_value=0.5,
        ),
        ValueError,
        "^masked_scan",
        "pad_value does not fit dtype bool",
    ),
    case(
        "masked_scan-reset_to-without-resets-string",
        lambda: seqmask.masked_scan(
            lambda c, x: (c, x), jnp.zeros(2), jnp.ones((3, 2)), _M, reset_to="oops"
        ),
        TypeError,
        "^masked_scan",
        "reset_to must be an array",
        "oops",
    ),
    case(
        "masked_scan-reset_to-without-resets-shape",
        lambda: seqmask.masked_scan(
            lambda c, x: (c, x),
            jnp.zeros(2),
            jnp.ones((3, 2)),
            _M,
            reset_to=jnp.zeros(3),
        ),
        ValueError,
        "^masked_scan",
        "reset_to does not match",
    ),
]
