"""Independent NumPy references for the recurrent core.

Plain Python loops over time, written from the documented semantics
(DESIGN.md's masked_scan loop, the cells' equations), sharing no code with
seqmask. Tests compare the library against these.
"""

import numpy as np


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def masked_scan(
    f, init, xs, mask, *, resets=None, reset_to=None, reverse=False, pad_value=0.0
):
    """DESIGN.md's reference loop. ``init``/``reset_to`` are lists of [B, ...]
    arrays, ``xs`` a list of [T, B, ...] arrays, ``f(carry_list, x_list) ->
    (carry_list, y_list)`` works on one row at a time: [..] arrays."""
    steps, batch = mask.shape
    reset_to = init if reset_to is None else reset_to
    ys = None
    final = []
    for b in range(batch):
        carry = [np.array(c[b], dtype=np.float64) for c in init]
        order = reversed(range(steps)) if reverse else range(steps)
        for t in order:
            if resets is not None and resets[t, b]:
                carry = [
                    np.array(np.broadcast_to(r, np.shape(init[i]))[b], np.float64)
                    for i, r in enumerate(reset_to)
                ]
            new_carry, y = f(carry, [x[t, b] for x in xs])
            if ys is None:
                ys = [np.zeros((steps, batch) + np.shape(v)) for v in y]
            if mask[t, b]:
                carry = new_carry
                for i, v in enumerate(y):
                    ys[i][t, b] = v
            else:
                for i in range(len(y)):
                    ys[i][t, b] = pad_value
        final.append(carry)
    final = [np.stack([row[i] for row in final]) for i in range(len(init))]
    return final, ys


def simple_rnn_step(params, h, x):
    z = x @ params["input_kernel"] + h @ params["recurrent_kernel"] + params["bias"]
    h = np.tanh(z)
    return h, h


def lstm_step(params, carry, x):
    h, c = carry
    z = x @ params["input_kernel"] + h @ params["recurrent_kernel"] + params["bias"]
    hidden = h.shape[-1]
    i = sigmoid(z[..., :hidden])
    f = sigmoid(z[..., hidden : 2 * hidden])
    g = np.tanh(z[..., 2 * hidden : 3 * hidden])
    o = sigmoid(z[..., 3 * hidden :])
    c = f * c + i * g
    h = o * np.tanh(c)
    return (h, c), h


def gru_step(params, h, x):
    hidden = h.shape[-1]
    xi = x @ params["input_kernel"] + params["input_bias"]
    hh = h @ params["recurrent_kernel"] + params["recurrent_bias"]
    r = sigmoid(xi[..., :hidden] + hh[..., :hidden])
    z = sigmoid(xi[..., hidden : 2 * hidden] + hh[..., hidden : 2 * hidden])
    n = np.tanh(xi[..., 2 * hidden :] + r * hh[..., 2 * hidden :])
    h = (1 - z) * n + z * h
    return h, h


STEPS = {"simple_rnn": simple_rnn_step, "lstm": lstm_step, "gru": gru_step}


def rnn(name, params, xs, mask, initial, *, reverse=False, resets=None, reset_to=None):
    """Batch-major reference layer: xs [B, T, I], mask [B, T]; ``initial`` and
    ``reset_to`` are the carry as a tuple of [B, H] arrays ((h,) or (h, c)).
    Returns (final carry tuple, ys [B, T, H])."""
    params = {k: np.asarray(v, np.float64) for k, v in params.items()}
    step = STEPS[name]
    batch, steps = mask.shape
    finals, outputs = [], np.zeros((batch, steps, initial[0].shape[-1]))
    for b in range(batch):
        carry = tuple(np.asarray(c[b], np.float64) for c in initial)
        order = reversed(range(steps)) if reverse else range(steps)
        for t in order:
            if resets is not None and resets[b, t]:
                carry = tuple(np.asarray(c[b], np.float64) for c in reset_to)
            if not mask[b, t]:
                continue
            inner = carry if name == "lstm" else carry[0]
            new, y = step(params, inner, np.asarray(xs[b, t], np.float64))
            carry = tuple(new) if name == "lstm" else (new,)
            outputs[b, t] = y
        finals.append(carry)
    final = tuple(np.stack([f[i] for f in finals]) for i in range(len(initial)))
    return final, outputs
