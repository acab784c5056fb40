"""Implementation choices for a masked recurrent layer, measured against the default.

``bench_rnn.py`` compares seqmask with its peers; this script records the
experiments behind seqmask's defaults, so that each claim in
``benchmarks/README.md`` can be re-run. Masked LSTM (and GRU where the
variant applies), forward+backward under ``jax.jit``, every variant timed
round-robin with the default ``seqmask.rnn`` in the same run:

* ``no mask`` - the default without a mask: the masking overhead;
* ``hoisted`` / ``per-step`` - the input projection as one large matmul
  before the scan vs inside every step (``rnn(hoist=...)``);
* ``unroll=2/4/8`` - ``jax.lax.scan`` unrolling;
* ``time-major`` - inputs given time-major, so ``rnn`` does no transposes;
* ``one matmul per step`` - the LSTM step as one ``[x, h] @ [[W_x], [W_h]]``
  matmul instead of an input and a recurrent matmul (with
  :func:`seqmask.masked_scan`);
* ``remat=True`` / ``remat=16`` / ``remat=True, matmul outputs saved`` -
  checkpointing each step, each chunk of 16 steps, or each step with
  ``jax.checkpoint_policies.dots_saveable`` (only the gate arithmetic is
  recomputed); the table gives the compiled temporary memory next to the time;
* ``custom-vjp`` - an LSTM layer with a hand-written backward pass (cuDNN's
  structure): the backward loop computes only the gate cotangents and the
  recurrent matmul, and the weight gradients and input cotangents are three
  large matmuls after the loop, instead of XLA's per-step accumulation;
* ``bidirectional, directions merged`` - the two directions of
  ``seqmask.bidirectional`` in one scan (``vmap`` over a stacked pair of
  parameter sets, the backward direction time-flipped), against the default
  two scans.

  python benchmarks/bench_rnn_variants.py            # B=64 T=128 I=128 H=256
  python benchmarks/bench_rnn_variants.py --quick    # small smoke run
"""

from __future__ import annotations

import platform

import jax
import jax.numpy as jnp
import numpy as np
from _common import RATIO, environment, parser, round_robin, write_record

import seqmask

# --- the hand-written-VJP LSTM (float32, mask, zero initial state) ----------


def _gates(z, hidden):
    i = jax.nn.sigmoid(z[:, :hidden])
    f = jax.nn.sigmoid(z[:, hidden : 2 * hidden])
    g = jnp.tanh(z[:, 2 * hidden : 3 * hidden])
    o = jax.nn.sigmoid(z[:, 3 * hidden :])
    return i, f, g, o


def _lstm_forward(params, xs, mask, save):
    """Time-major masked LSTM; with ``save`` also the backward's residuals."""
    w_x, w_h, b = params["input_kernel"], params["recurrent_kernel"], params["bias"]
    hidden = w_h.shape[0]
    zeros = jnp.zeros((xs.shape[1], hidden), xs.dtype)

    def step(carry, inputs):
        h, c = carry
        x, m = inputs
        i, f, g, o = _gates(x @ w_x + h @ w_h + b, hidden)
        new_c = f * c + i * g
        new_h = o * jnp.tanh(new_c)
        m = m[:, None]
        y = jnp.where(m, new_h, 0)
        carry = (jnp.where(m, new_h, h), jnp.where(m, new_c, c))
        if save:
            return carry, (y, h, c, jnp.concatenate([i, f, g, o], -1))
        return carry, y

    return jax.lax.scan(step, (zeros, zeros), (xs, mask))


@jax.custom_vjp
def custom_vjp_lstm(params, xs, mask):
    """``((h, c), ys)`` of a masked LSTM over time-major ``xs``."""
    return _lstm_forward(params, xs, mask, save=False)


def _custom_vjp_forward(params, xs, mask):
    carry, (ys, hs, cs, gates) = _lstm_forward(params, xs, mask, save=True)
    return (carry, ys), (params, xs, mask, hs, cs, gates)


def _custom_vjp_backward(residuals, cotangents):
    params, xs, mask, hs, cs, gates = residuals
    (dh, dc), dys = cotangents
    w_h = params["recurrent_kernel"]
    hidden = w_h.shape[0]

    def step(carry, inputs):
        dh, dc = carry
        dy, m, c, a = inputs
        m = m[:, None]
        i, f, g, o = (a[:, k * hidden : (k + 1) * hidden] for k in range(4))
        tanh_c = jnp.tanh(f * c + i * g)
        dh_new = jnp.where(m, dh + dy, 0)
        dc_new = jnp.where(m, dc, 0) + dh_new * o * (1 - tanh_c**2)
        dz = jnp.concatenate(
            [
                dc_new * g * i * (1 - i),
                dc_new * c * f * (1 - f),
                dc_new * i * (1 - g**2),
                dh_new * tanh_c * o * (1 - o),
            ],
            -1,
        )
        dh_prev = jnp.where(m, 0, dh) + dz @ w_h.T
        dc_prev = jnp.where(m, dc_new * f, dc)
        return (dh_prev, dc_prev), dz

    _, dz = jax.lax.scan(step, (dh, dc), (dys, mask, cs, gates), reverse=True)
    over_time_and_batch = (((0, 1), (0, 1)), ((), ()))
    grads = {
        "input_kernel": jax.lax.dot_general(xs, dz, over_time_and_batch),
        "recurrent_kernel": jax.lax.dot_general(hs, dz, over_time_and_batch),
        "bias": dz.sum((0, 1)),
    }
    dxs = dz @ params["input_kernel"].T
    return grads, dxs, None


custom_vjp_lstm.defvjp(_custom_vjp_forward, _custom_vjp_backward)


def custom_vjp_layer(params, xs, mask):
    carry, ys = custom_vjp_lstm(params, jnp.swapaxes(xs, 0, 1), mask.T)
    return carry, jnp.swapaxes(ys, 0, 1)


# --- one matmul per step ------------------------------------------------------


def one_matmul_lstm(params, xs, mask):
    """LSTM whose step is one ``[x, h] @ [[W_x], [W_h]]`` matmul instead of two."""
    kernel = jnp.concatenate([params["input_kernel"], params["recurrent_kernel"]], 0)
    hidden = params["recurrent_kernel"].shape[0]
    zeros = jnp.zeros((xs.shape[0], hidden), xs.dtype)

    def step(carry, x):
        h, c = carry
        z = jnp.concatenate([x, h], -1) @ kernel + params["bias"]
        i, f, g, o = _gates(z, hidden)
        new_c = f * c + i * g
        new_h = o * jnp.tanh(new_c)
        return (new_h, new_c), new_h

    carry, ys = seqmask.masked_scan(
        step, (zeros, zeros), jnp.swapaxes(xs, 0, 1), mask.T
    )
    return carry, jnp.swapaxes(ys, 0, 1)


# --- a remat policy -------------------------------------------------------------


def remat_saving_dots(cell, params, xs, mask):
    """Per-step checkpointing that keeps the matmul outputs and recomputes only
    the elementwise gate arithmetic (``jax.checkpoint_policies.dots_saveable``)."""
    step = jax.checkpoint(
        lambda c, x: cell.apply(params, c, x),
        policy=jax.checkpoint_policies.dots_saveable,
    )
    carry = cell.initial_carry(params, (xs.shape[0],))
    final, ys = seqmask.masked_scan(step, carry, jnp.swapaxes(xs, 0, 1), mask.T)
    return final, jnp.swapaxes(ys, 0, 1)


# --- the variants ------------------------------------------------------------


def merged_bidirectional(cell, params, xs, mask):
    """Both directions in one scan: vmap over a stacked pair of parameters."""
    stack = jax.tree.map(
        lambda a, b: jnp.stack([a, b]), params["forward"], params["backward"]
    )
    xs2 = jnp.stack([xs, jnp.flip(xs, 1)])
    mask2 = jnp.stack([mask, jnp.flip(mask, 1)])
    carries, ys = jax.vmap(lambda p, x, m: seqmask.rnn(cell, p, x, mask=m))(
        stack, xs2, mask2
    )
    return carries, jnp.concatenate([ys[0], jnp.flip(ys[1], 1)], -1)


def variants(kind, params, bi_params, cell):
    def rnn(**options):
        return lambda p, x, m: seqmask.rnn(cell, p, x, mask=m, **options)

    out = {
        "default": (rnn(), params, False),
        "no mask": (lambda p, x, m: seqmask.rnn(cell, p, x), params, False),
        "hoisted": (rnn(hoist=True), params, False),
        "per-step": (rnn(hoist=False), params, False),
        "unroll=2": (rnn(unroll=2), params, False),
        "unroll=4": (rnn(unroll=4), params, False),
        "unroll=8": (rnn(unroll=8), params, False),
        "time-major": (rnn(time_major=True), params, True),
        "remat=True": (rnn(remat=True), params, False),
        "remat=True, matmul outputs saved": (
            lambda p, x, m: remat_saving_dots(cell, p, x, m),
            params,
            False,
        ),
        "remat=16": (rnn(remat=16), params, False),
    }
    if kind == "lstm":
        out["one matmul per step"] = (one_matmul_lstm, params, False)
        out["custom-vjp"] = (custom_vjp_layer, params, False)
    out["bidirectional (two scans)"] = (
        lambda p, x, m: seqmask.bidirectional(cell, p, x, mask=m),
        bi_params,
        False,
    )
    out["bidirectional, directions merged"] = (
        lambda p, x, m: merged_bidirectional(cell, p, x, m),
        bi_params,
        False,
    )
    return out


def measure(kind, batch, steps, inputs, hidden, repeats):
    cell = (seqmask.cells.lstm if kind == "lstm" else seqmask.cells.gru)(hidden)
    params = cell.init(jax.random.key(0), inputs)
    bi_params = seqmask.init_bidirectional(jax.random.key(1), cell, inputs)
    rng = np.random.default_rng(0)
    xs = jnp.asarray(rng.normal(size=(batch, steps, inputs)), jnp.float32)
    lengths = rng.integers(steps // 2, steps + 1, size=batch)
    mask = jnp.asarray(np.arange(steps)[None, :] < lengths[:, None])
    xs_tm, mask_tm = jnp.swapaxes(xs, 0, 1), mask.T

    cases, grads, memory = {}, {}, {}
    for name, (fn, p, time_major) in variants(kind, params, bi_params, cell).items():

        def loss(p, x, m, fn=fn):
            _, ys = fn(p, x, m)
            return jnp.sum(ys**2)

        x, m = (xs_tm, mask_tm) if time_major else (xs, mask)
        grad = jax.jit(jax.grad(loss)).lower(p, x, m).compile()
        analysis = grad.memory_analysis()
        memory[name] = getattr(analysis, "temp_size_in_bytes", float("nan")) / 2**20
        grads[name] = grad(p, x, m)
        cases[name] = lambda g=grad, p=p, x=x, m=m: jax.block_until_ready(g(p, x, m))
    # Every variant computes the same gradient as its baseline.
    for name, g in grads.items():
        if name == "no mask":
            continue
        base = grads["bidirectional (two scans)" if "bidir" in name else "default"]
        error = max(
            float(jnp.max(jnp.abs(a - b)) / (jnp.max(jnp.abs(b)) + 1e-12))
            for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(base), strict=True)
        )
        if error > 1e-4:
            raise AssertionError(f"{kind} {name}: gradient differs ({error:.1e})")
    medians = round_robin(cases, repeats)
    rows = []
    for name, seconds in medians.items():
        base = "bidirectional (two scans)" if "bidir" in name else "default"
        rows.append(
            dict(
                kind=kind,
                variant=name,
                forward_backward_ms=seconds * 1e3,
                vs_baseline=seconds / medians[base],
                temp_mib=memory[name],
                baseline=base,
            )
        )
    return rows


def main() -> None:
    options = parser(__doc__, repeats=15)
    options.add_argument("--batch", type=int, default=64)
    options.add_argument("--time", type=int, default=128)
    options.add_argument("--input", type=int, default=128)
    options.add_argument("--hidden", type=int, default=256)
    options.add_argument("--cells", default="lstm,gru")
    args = options.parse_args()
    if args.quick:
        args.batch, args.time, args.input, args.hidden, args.repeats = 8, 16, 8, 16, 3
    print(
        f"jax {jax.__version__} on {jax.devices()[0].platform} "
        f"({platform.machine()}), B={args.batch} T={args.time} I={args.input} "
        f"H={args.hidden}, forward+backward, median of {args.repeats} (round-robin); "
        f"{RATIO}\n"
    )
    rows = []
    for kind in args.cells.split(","):
        rows += measure(
            kind, args.batch, args.time, args.input, args.hidden, args.repeats
        )
    print("| cell | variant | fwd+bwd ms | time / baseline | temp MiB | baseline |")
    print("|---|---|---:|---:|---:|---|")
    for r in rows:
        print(
            f"| {r['kind']} | {r['variant']} | {r['forward_backward_ms']:.1f} "
            f"| {r['vs_baseline']:.2f} | {r['temp_mib']:.1f} | {r['baseline']} |"
        )
    record = dict(
        **environment(),
        benchmark="rnn_variants",
        shape=dict(
            batch=args.batch, time=args.time, input=args.input, hidden=args.hidden
        ),
        repeats=args.repeats,
        rows=rows,
    )
    write_record(record, args.out, "rnn_variants", args.quick)


if __name__ == "__main__":
    main()
