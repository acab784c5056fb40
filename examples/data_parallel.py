"""Data-parallel training of a masked sequence model with ``jax.sharding``.

seqmask has no distribution code of its own: its functions are pure JAX, so
data parallelism is JAX's. A mesh with one ``"data"`` axis spans the
devices; every batch-shaped array (inputs, mask, labels, loss weights) is
split along its batch axis over that axis, the parameters and the optimiser
state are replicated, and ``jax.jit`` compiles one program in which each
device runs the recurrent scan over its own rows and the parameter gradients
are summed across devices.

The task: each step of a sequence holds a number and the label says whether
the running sum so far is positive, so the LSTM must carry what it has seen.
Sequences have random lengths (some empty), right-padded; padded inputs hold
NaN, which must not reach the loss or the gradients, and the loss counts
valid steps only (weights from the mask).

On a CPU-only machine ``--num-devices N`` asks XLA for ``N`` virtual host
devices (set in ``XLA_FLAGS`` before JAX is imported, since XLA reads it
once, when the backend starts). On GPU or TPU hosts the flag does not apply
and the first ``N`` real devices are used. Run::

    python examples/data_parallel.py --num-devices 4 --quick
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator, Sequence

import numpy as np

_HOST_DEVICES_FLAG = "--xla_force_host_platform_device_count"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--num-devices", type=int, default=4, help="devices in the data mesh axis"
    )
    parser.add_argument("--steps", type=int, default=None, help="training steps")
    parser.add_argument("--quick", action="store_true", help="a few seconds' run")
    parser.add_argument(
        "--rows-per-device", type=int, default=16, help="batch rows on each device"
    )
    parser.add_argument("--max-len", type=int, default=None, help="time steps")
    parser.add_argument("--hidden", type=int, default=None, help="LSTM size")
    parser.add_argument("--learning-rate", type=float, default=1e-2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    defaults = (
        {"steps": 40, "max_len": 12, "hidden": 16}
        if args.quick
        else {"steps": 300, "max_len": 32, "hidden": 32}
    )
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    for name in ("num_devices", "steps", "rows_per_device", "max_len", "hidden"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    return args


def request_host_devices(count: int) -> None:
    """Ask XLA for ``count`` host (CPU) devices; a no-op for GPU and TPU.

    Must run before JAX starts its backend: XLA reads ``XLA_FLAGS`` once.
    """
    if "jax" in sys.modules:
        raise RuntimeError(
            "request_host_devices must run before jax is imported; start a fresh "
            "interpreter (in a notebook: restart the kernel)."
        )
    flags = [
        flag
        for flag in os.environ.get("XLA_FLAGS", "").split()
        if not flag.startswith(_HOST_DEVICES_FLAG)
    ]
    os.environ["XLA_FLAGS"] = " ".join([*flags, f"{_HOST_DEVICES_FLAG}={count}"])


def running_sum_batches(
    rng: np.random.Generator, *, batch_size: int, max_len: int
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Endless batches ``(xs [B, T, 1], mask [B, T], labels [B, T])``.

    ``labels[b, t]`` is 1 when the sum of ``xs[b, :t + 1]`` is positive.
    Lengths are uniform in ``[0, T]``; padded steps hold NaN in ``xs`` and
    -1 in ``labels`` (neither may matter).
    """
    steps = np.arange(max_len)
    while True:
        lengths = rng.integers(0, max_len + 1, batch_size)
        mask = steps < lengths[:, None]
        xs = rng.standard_normal((batch_size, max_len)).astype(np.float32)
        labels = (np.cumsum(xs, axis=1) > 0).astype(np.int32)
        xs[~mask] = np.nan
        labels[~mask] = -1
        yield xs[..., None], mask, labels


def describe_rows(array) -> str:
    """Which rows of a batch-major array each device holds."""
    parts = []
    for shard in sorted(array.addressable_shards, key=lambda s: s.device.id):
        rows = shard.index[0]
        start = 0 if rows.start is None else rows.start
        stop = array.shape[0] if rows.stop is None else rows.stop
        parts.append(f"{shard.device.platform}:{shard.device.id} rows {start}-{stop}")
    return ", ".join(parts)


def train(args: argparse.Namespace) -> list[float]:
    """Train data-parallel; returns the loss of every step.

    Imports JAX here, after :func:`request_host_devices` had its chance.
    """
    import jax
    import jax.numpy as jnp
    import optax
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    import seqmask

    devices = jax.devices()
    if len(devices) < args.num_devices:
        raise SystemExit(
            f"asked for {args.num_devices} devices, the {devices[0].platform} "
            f"backend has {len(devices)}."
        )
    mesh = jax.make_mesh(
        (args.num_devices,), ("data",), devices=devices[: args.num_devices]
    )
    # Batch-shaped arrays are split over "data" along axis 0; parameters and
    # optimiser state are whole on every device.
    by_batch = NamedSharding(mesh, P("data"))
    replicated = NamedSharding(mesh, P())

    cell = seqmask.cells.lstm(args.hidden)
    rnn_key, head_key = jax.random.split(jax.random.key(args.seed))
    params = {
        "rnn": cell.init(rnn_key, 1),
        "head": jax.random.normal(head_key, (args.hidden, 2)) * args.hidden**-0.5,
    }
    optimizer = optax.adam(args.learning_rate)
    params = jax.device_put(params, replicated)
    opt_state = jax.device_put(optimizer.init(params), replicated)

    def loss_fn(params, xs, mask, labels):
        _, hidden = seqmask.rnn(cell, params["rnn"], xs, mask=mask)
        logits = hidden @ params["head"]
        weights = seqmask.weights.from_mask(mask)
        loss = seqmask.losses.softmax_cross_entropy_with_integer_labels(
            logits, labels, weights
        )
        hits = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
        accuracy = jnp.sum(weights * hits) / jnp.maximum(jnp.sum(weights), 1.0)
        return loss, (accuracy, hidden)

    @jax.jit
    def train_step(params, opt_state, xs, mask, labels):
        (loss, (accuracy, hidden)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            params, xs, mask, labels
        )
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, accuracy, hidden

    batch_size = args.rows_per_device * args.num_devices
    batches = running_sum_batches(
        np.random.default_rng(args.seed), batch_size=batch_size, max_len=args.max_len
    )

    def global_batch():
        # With several hosts, each passes its own rows and JAX assembles the
        # global array; with one host this is a device_put.
        return [
            jax.make_array_from_process_local_data(by_batch, array)
            for array in next(batches)
        ]

    print(f"backend: {devices[0].platform}, {len(devices)} devices; mesh: {mesh}")
    xs, mask, labels = global_batch()
    print(f"batch xs{list(xs.shape)} sharded {xs.sharding.spec}: {describe_rows(xs)}")
    leaf = params["rnn"]["recurrent_kernel"]
    print(
        f"parameters replicated ({leaf.sharding.spec}) on "
        f"{len(leaf.sharding.device_set)} devices"
    )

    losses = []
    log_every = max(1, args.steps // 10)
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        if step > 1:
            xs, mask, labels = global_batch()
        params, opt_state, loss, accuracy, hidden = train_step(
            params, opt_state, xs, mask, labels
        )
        losses.append(float(loss))
        if step == 1:
            compile_seconds = time.perf_counter() - start
            print(
                f"outputs {list(hidden.shape)} sharded {hidden.sharding.spec}: "
                f"{describe_rows(hidden)}"
            )
            print(f"first step (compile and run): {compile_seconds:.1f}s")
            start = time.perf_counter()
        if step % log_every == 0 or step == args.steps:
            print(
                f"step {step:4d}  loss {losses[-1]:.4f}  accuracy {float(accuracy):.3f}"
            )
    if args.steps > 1:
        per_step = (time.perf_counter() - start) / (args.steps - 1)
        print(f"steady state: {1000 * per_step:.1f} ms a step")
    return losses


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    request_host_devices(args.num_devices)
    losses = train(args)
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    print(f"mean loss of the first 5 steps {first:.4f}, of the last 5 {last:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
