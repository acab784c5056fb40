"""Data parallelism: seqmask under ``jax.sharding`` on 8 virtual CPU devices.

seqmask has no distribution code of its own: a model is pure jitted JAX, so
sharding the batch axis of the inputs, masks, resets and carries over a
``"data"`` mesh axis is all it takes. These tests check that this holds for
a training step (stacked bidirectional LSTM, weighted loss, gradients) and
for a carry threaded through stateful steps, on the three ways of using a
mesh: explicit axes (``jax.make_mesh``'s default in recent JAX) with and
without ``jax.set_mesh``, and auto axes (sharding propagated by XLA). In
each, the sharded run must give the values of the single-device run, keep
outputs and carries sharded like the batch, and compile to scan loops that
never move batch rows between devices.

The host platform's device count is fixed when JAX starts its backend, which
the test session has already done, so the sharded programs run in a
subprocess: this file run as a script (``python tests/test_sharding.py OUT
MODE...``) is the worker. It writes under ``OUT`` the arrays of the
single-device run and of each sharded run, the output shardings and the
compiled HLO; the tests compare them here.
"""

from __future__ import annotations

import json
import pathlib
import re
import sys

import numpy as np
import pytest
from helpers import per_mesh_kind, run_on_host_devices

NUM_DEVICES = 8
BATCH, TIME, FEATURES, HIDDEN, CLASSES = 16, 6, 3, 4, 5
CHUNKS = 3
MODES = ("explicit", "explicit+set_mesh", "auto")


# --------------------------------------------------------------------------
# The worker: runs in a fresh interpreter with 8 host devices.
# --------------------------------------------------------------------------


def _batch_data(rng: np.random.Generator):
    """A batch with every awkward row: empty, full, left- and right-padded.

    Padded inputs hold NaN: they must reach no value and no gradient, on any
    shard.
    """
    lengths = rng.integers(1, TIME + 1, BATCH)
    lengths[0], lengths[1] = 0, TIME
    steps = np.arange(TIME)
    left_padded = np.arange(BATCH) % 2 == 1
    mask = np.where(
        left_padded[:, None],
        steps[None, :] >= TIME - lengths[:, None],
        steps[None, :] < lengths[:, None],
    )
    xs = rng.normal(size=(BATCH, TIME, FEATURES)).astype(np.float32)
    xs[~mask] = np.nan
    labels = rng.integers(0, CLASSES, (BATCH, TIME)).astype(np.int32)
    return xs, mask, labels


def _mesh_context(mesh, mode: str):
    """``jax.set_mesh(mesh)`` for the ``set_mesh`` modes, else nothing."""
    import contextlib

    import jax

    return jax.set_mesh(mesh) if mode.endswith("set_mesh") else contextlib.nullcontext()


def _plain_scan_gradient(mesh) -> str | None:
    """The error (None if none) of the gradient of a plain ``jax.lax.scan``
    whose carry is split over the batch, on ``mesh`` in the caller's mesh
    context: no seqmask involved. JAX 0.12.0 raises ``ShardingTypeError``
    there with explicit axes and no ``jax.set_mesh``."""
    import jax
    import jax.numpy as jnp
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    def loss(kernel, xs, h):
        def step(h, x):
            h = jnp.tanh(h @ kernel + x)
            return h, h

        return jnp.sum(jax.lax.scan(step, h, xs)[1])

    by_batch = NamedSharding(mesh, P(None, "data"))
    xs = jax.device_put(np.ones((TIME, BATCH, HIDDEN), np.float32), by_batch)
    h = jax.device_put(
        np.zeros((BATCH, HIDDEN), np.float32), NamedSharding(mesh, P("data"))
    )
    kernel = jax.device_put(np.eye(HIDDEN, dtype=np.float32), NamedSharding(mesh, P()))
    try:
        jax.jit(jax.grad(loss))(kernel, xs, h)
    except Exception as error:  # reported as text
        return f"{type(error).__name__}: {error}"
    return None


def _worker(out: pathlib.Path, modes: list[str]) -> None:
    import time
    import traceback

    import jax
    import jax.numpy as jnp
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    import seqmask

    # The strict numerics of tests/conftest.py, which this process does not load.
    jax.config.update("jax_numpy_dtype_promotion", "strict")
    jax.config.update("jax_numpy_rank_promotion", "raise")
    assert jax.device_count() == NUM_DEVICES, jax.devices()

    arrays: dict[str, np.ndarray] = {}
    meta: dict = {
        "seconds": {},
        "errors": {},
        "skipped": {},
        "layout": {},
        "plain_jax": {},
    }

    def save(prefix, tree):
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
            arrays[prefix + jax.tree_util.keystr(path)] = np.asarray(leaf)

    rng = np.random.default_rng(0)

    # A training step: stacked bidirectional LSTM, linear head, cross-entropy
    # weighted by the mask; value and gradient.
    train_cell = seqmask.cells.lstm(HIDDEN)
    train_batch = _batch_data(rng)

    def loss_fn(params, xs, mask, labels):
        carries, ys = seqmask.stacked(
            train_cell, params["rnn"], xs, mask=mask, bidirectional=True
        )
        logits = ys @ params["head"]
        loss = seqmask.losses.softmax_cross_entropy_with_integer_labels(
            logits, labels, seqmask.weights.from_mask(mask)
        )
        return loss, (carries, ys)

    train_step = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))

    # Stateful chunks: the carry threads through jitted steps, rows whose
    # stream ended are reset to the learned initial state between chunks, and
    # `resets` start new sequences inside a chunk.
    cell = seqmask.cells.learnable_initial_state(seqmask.cells.lstm(HIDDEN))
    chunks = []
    for _ in range(CHUNKS):
        xs, mask, _ = _batch_data(rng)
        resets = (rng.random((BATCH, TIME)) < 0.2) & mask
        restart = rng.random(BATCH) < 0.3
        chunks.append((xs, mask, resets, restart))

    def chunk_step(params, carry, xs, mask, resets, restart):
        carry = seqmask.carry.reset(
            carry, restart, reset_to=cell.initial_carry(params, ())
        )
        return seqmask.rnn(
            cell, params, xs, mask=mask, initial_carry=carry, resets=resets
        )

    chunk_step = jax.jit(chunk_step)

    # Random parameters in the layout the initialisers give, drawn in NumPy:
    # eager initialisers would compile dozens of small programs.
    def init_params(key):
        rnn_key, chunk_key = jax.random.split(key)
        train_params = {
            "rnn": seqmask.init_stacked(
                rnn_key, train_cell, FEATURES, num_layers=2, bidirectional=True
            ),
            "head": jnp.zeros((2 * HIDDEN, CLASSES)),
        }
        return train_params, cell.init(chunk_key, FEATURES)

    train_params, chunk_params = jax.tree.map(
        lambda leaf: 0.5 * rng.standard_normal(leaf.shape).astype(leaf.dtype),
        jax.eval_shape(init_params, jax.random.key(0)),
    )
    # Every row starts from the learned state, as rnn's default would.
    initial_carry = jax.tree.map(
        lambda state: np.broadcast_to(state, (BATCH, *state.shape)).copy(),
        chunk_params["initial_carry"],
    )

    # The reference: one device, no mesh.
    start = time.perf_counter()
    (loss, (carries, ys)), grads = train_step(train_params, *train_batch)
    save("single/train/loss", loss)
    save("single/train/grads", grads)
    save("single/train/carries", carries)
    save("single/train/ys", ys)
    carry = initial_carry
    for index, chunk in enumerate(chunks):
        carry, ys = chunk_step(chunk_params, carry, *chunk)
        save(f"single/chunks/{index}/carry", carry)
        save(f"single/chunks/{index}/ys", ys)
    meta["seconds"]["single"] = time.perf_counter() - start

    def layout(tree, by_batch):
        """``{path: [sharded like the batch?, spec]}`` for every leaf."""
        return {
            jax.tree_util.keystr(path): [
                leaf.sharding.is_equivalent_to(by_batch, leaf.ndim),
                str(leaf.sharding.spec),
            ]
            for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
        }

    def run_train(mode, by_batch, replicated):
        args = (
            jax.device_put(train_params, replicated),
            *jax.device_put(train_batch, by_batch),
        )
        # One compilation serves the run and the HLO.
        compiled = train_step.lower(*args).compile()
        (loss, (carries, ys)), grads = compiled(*args)
        save(f"{mode}/train/loss", loss)
        save(f"{mode}/train/grads", grads)
        save(f"{mode}/train/carries", carries)
        save(f"{mode}/train/ys", ys)
        (out / f"{mode}.train.hlo").write_text(compiled.as_text())
        meta["layout"][f"{mode}/train"] = layout(
            {"carries": carries, "ys": ys}, by_batch
        )

    def run_chunks(mode, by_batch, replicated):
        params = jax.device_put(chunk_params, replicated)
        carry = jax.device_put(initial_carry, by_batch)
        compiled = None
        for index, chunk in enumerate(chunks):
            args = (params, carry, *jax.device_put(chunk, by_batch))
            if compiled is None:
                compiled = chunk_step.lower(*args).compile()
                (out / f"{mode}.chunk.hlo").write_text(compiled.as_text())
            # A compiled step accepts only the input shardings it was built
            # for: a carry that came back laid out otherwise would raise here.
            carry, ys = compiled(*args)
            save(f"{mode}/chunks/{index}/carry", carry)
            save(f"{mode}/chunks/{index}/ys", ys)
            meta["layout"][f"{mode}/chunks/{index}"] = layout(
                {"carry": carry, "ys": ys}, by_batch
            )

    axis_type = getattr(jax.sharding, "AxisType", None)
    for mode in modes:
        if axis_type is None or (
            mode.endswith("set_mesh") and not hasattr(jax, "set_mesh")
        ):
            meta["skipped"][mode] = f"JAX {jax.__version__} has no {mode} meshes"
            continue
        kind = axis_type.Auto if mode == "auto" else axis_type.Explicit
        mesh = jax.make_mesh((NUM_DEVICES,), ("data",), axis_types=(kind,))
        by_batch = NamedSharding(mesh, P("data"))
        replicated = NamedSharding(mesh, P())
        for part, run_part in (("train", run_train), ("chunks", run_chunks)):
            start = time.perf_counter()
            try:
                with _mesh_context(mesh, mode):
                    run_part(mode, by_batch, replicated)
            except Exception:  # reported by the tests of this part
                meta["errors"][f"{mode}/{part}"] = traceback.format_exc(limit=-8)
            meta["seconds"][f"{mode}/{part}"] = time.perf_counter() - start
        with _mesh_context(mesh, mode):
            meta["plain_jax"][mode] = _plain_scan_gradient(mesh)

    np.savez(out / "arrays.npz", **arrays)
    (out / "meta.json").write_text(json.dumps(meta))


# --------------------------------------------------------------------------
# HLO parsing: which collectives run inside while loops.
# --------------------------------------------------------------------------

_COMPUTATION = re.compile(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s*\(.*\{\s*$")
_CALLS = re.compile(
    r"\b(?:calls|to_apply|body|condition|true_computation|false_computation)"
    r"=%?([\w.\-]+)|\b(?:branch_computations|called_computations)=\{([^}]*)\}"
)
_WHILE_BODY = re.compile(r"\swhile\(.*\bbody=%?([\w.\-]+)")
# An op, not an instruction named after one (`%all-gather.3 = ...`).
_COLLECTIVE = re.compile(
    r"(?<![%\w.\-])(all-gather|all-reduce|all-to-all|collective-permute|"
    r"reduce-scatter|collective-broadcast|ragged-all-to-all)(?:-start)?\("
)


def _computations(hlo: str) -> dict[str, list[str]]:
    """The instruction lines of every computation of an HLO module, by name."""
    computations: dict[str, list[str]] = {}
    current = None
    for line in hlo.splitlines():
        if current is None:
            match = _COMPUTATION.match(line)
            if match:
                current = computations.setdefault(match.group(1), [])
        elif line.strip() == "}":
            current = None
        else:
            current.append(line)
    return computations


def loop_collectives(hlo: str) -> tuple[int, dict[str, list[str]]]:
    """The number of while loops and the collectives run inside their bodies.

    The fusions, nested loops and other computations a body calls count as
    inside it. Returns ``(loops, {op: [instruction, ...]})``.
    """
    computations = _computations(hlo)
    bodies = [
        match.group(1)
        for lines in computations.values()
        for line in lines
        if (match := _WHILE_BODY.search(line))
    ]
    inside, pending = set(), list(bodies)
    while pending:
        name = pending.pop()
        if name in inside:
            continue
        inside.add(name)
        for line in computations[name]:
            for match in _CALLS.finditer(line):
                if match.group(1):
                    pending.append(match.group(1))
                else:
                    pending += [
                        callee.strip().lstrip("%")
                        for callee in match.group(2).split(",")
                        if callee.strip()
                    ]
    found: dict[str, list[str]] = {}
    for name in inside:
        for line in computations[name]:
            for match in _COLLECTIVE.finditer(line):
                found.setdefault(match.group(1), []).append(line.strip())
    return len(bodies), found


_TOY_HLO = """\
HloModule toy, entry_computation_layout={(f32[2,4]{1,0})->f32[4]{0}}

%fused_gather (p: f32[2,4]) -> f32[16,4] {
  %p = f32[2,4]{1,0} parameter(0)
  ROOT %all-gather.1 = f32[16,4]{1,0} all-gather(%p), dimensions={0}
}

%body (state: (s32[], f32[2,4])) -> (s32[], f32[2,4]) {
  %state = (s32[], f32[2,4]{1,0}) parameter(0)
  %h = f32[2,4]{1,0} get-tuple-element(%state), index=1
  %g = f32[16,4]{1,0} fusion(%h), kind=kLoop, calls=%fused_gather
  ROOT %t = (s32[], f32[2,4]{1,0}) tuple(%i, %h)
}

%cond (state: (s32[], f32[2,4])) -> pred[] {
  ROOT %c = pred[] constant(true)
}

ENTRY %main (x: f32[2,4]) -> f32[4] {
  %x = f32[2,4]{1,0} parameter(0)
  %w = (s32[], f32[2,4]{1,0}) while(%init), condition=%cond, body=%body
  ROOT %all-reduce.2 = f32[4]{0} all-reduce(%s), to_apply=%add
}
"""


def test_loop_collectives_looks_into_fusions_and_not_outside_loops():
    loops, found = loop_collectives(_TOY_HLO)
    assert loops == 1
    assert {op: len(lines) for op, lines in found.items()} == {"all-gather": 1}


# --------------------------------------------------------------------------
# The tests of the sharded runs.
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sharded_runs(tmp_path_factory):
    """Run the worker once, all modes, on 8 virtual CPU devices; load its output."""
    out = tmp_path_factory.mktemp("sharding")
    result = run_on_host_devices([__file__, str(out), *MODES], NUM_DEVICES)
    assert result.returncode == 0, result.stderr[-5000:]
    with np.load(out / "arrays.npz") as arrays:
        loaded = dict(arrays)
    return {"out": out, "arrays": loaded, **json.loads((out / "meta.json").read_text())}


@pytest.fixture(params=MODES)
def run(request, sharded_runs):
    """``(mode, results)`` for one mode of using a mesh."""
    mode = request.param
    if mode in sharded_runs["skipped"]:
        pytest.skip(sharded_runs["skipped"][mode])
    return mode, sharded_runs


def _check_ran(runs, mode, part):
    error = runs["errors"].get(f"{mode}/{part}")
    if error is None:
        return
    upstream = runs["plain_jax"].get(mode)
    if upstream is not None and upstream.split(":")[0] in error:
        # JAX itself cannot run this mode (JAX 0.12.0 with explicit axes and
        # no jax.set_mesh): the same error from a plain jax.lax.scan.
        pytest.xfail(f"plain JAX fails in the {mode} mode too: {upstream[:300]}")
    pytest.fail(f"the {part} part of the {mode} run raised:\n{error}")


def _pairs(arrays, mode, part):
    """``(name, single-device value, sharded value)`` for one part of a run."""
    single, sharded = f"single/{part}", f"{mode}/{part}"
    names = sorted(k[len(single) :] for k in arrays if k.startswith(single))
    assert names
    assert names == sorted(k[len(sharded) :] for k in arrays if k.startswith(sharded))
    return [(name, arrays[single + name], arrays[sharded + name]) for name in names]


def _not_batch_sharded(layout):
    return {path: spec for path, (sharded, spec) in layout.items() if not sharded}


def test_training_step_matches_single_device(run):
    mode, runs = run
    _check_ran(runs, mode, "train")
    pairs = _pairs(runs["arrays"], mode, "train")
    names = [name for name, _, _ in pairs]
    # 2 layers x 2 directions x 3 weights have gradients, and the head.
    assert sum(name.startswith("/grads['rnn']") for name in names) == 12
    assert "/grads['head']" in names
    for name, single, sharded in pairs:
        assert np.all(np.isfinite(single)), name
        assert sharded.dtype == single.dtype, name
        # Only the order of the sums over the batch differs.
        np.testing.assert_allclose(sharded, single, rtol=1e-5, atol=1e-6, err_msg=name)
    assert runs["arrays"]["single/train/loss"] > 0.0


def test_training_step_outputs_stay_sharded_like_the_batch(run):
    mode, runs = run
    _check_ran(runs, mode, "train")
    layout = runs["layout"][f"{mode}/train"]
    # 2 layers x 2 directions x (h, c), and the outputs.
    assert len(layout) == 9
    assert not _not_batch_sharded(layout)


def test_scan_loops_never_move_batch_rows(run):
    mode, runs = run
    _check_ran(runs, mode, "train")
    hlo = (runs["out"] / f"{mode}.train.hlo").read_text()
    loops, found = loop_collectives(hlo)
    # 2 layers x 2 directions, forward and backward pass.
    assert loops >= 8
    # The per-step gradient sums of the replicated weights may be all-reduced
    # inside a loop; an all-gather (or any other collective) there moves
    # batch rows between devices at every step.
    moving_rows = {op: lines[:2] for op, lines in found.items() if op != "all-reduce"}
    assert not moving_rows, moving_rows
    # The step is data-parallel at all: the weight gradients are summed over
    # the devices somewhere.
    assert re.search(r"(?<![%\w.\-])all-reduce(?:-start)?\(", hlo)


def test_stateful_step_loop_needs_no_communication(run):
    mode, runs = run
    _check_ran(runs, mode, "chunks")
    loops, found = loop_collectives((runs["out"] / f"{mode}.chunk.hlo").read_text())
    assert loops >= 1
    # A forward pass over independent rows needs no communication at all.
    assert not found, {op: lines[:2] for op, lines in found.items()}


def test_threaded_carries_stay_sharded_like_the_batch_and_exact(run):
    mode, runs = run
    _check_ran(runs, mode, "chunks")
    for index in range(CHUNKS):
        layout = runs["layout"][f"{mode}/chunks/{index}"]
        assert len(layout) == 3  # h, c and the outputs
        assert not _not_batch_sharded(layout), f"chunk {index}"
    pairs = _pairs(runs["arrays"], mode, "chunks")
    assert len(pairs) == CHUNKS * 3
    for name, single, sharded in pairs:
        assert np.all(np.isfinite(single)), name
        # Rows never meet in a forward pass, but a matmul over 2 rows may
        # round differently from one over 16.
        np.testing.assert_allclose(sharded, single, rtol=1e-5, atol=1e-6, err_msg=name)


if __name__ == "__main__":
    _worker(pathlib.Path(sys.argv[1]), sys.argv[2:])


# A batch of 16 pairs for the seq2seq scripts below.
_SEQ2SEQ_BATCH = """
import numpy as np
rng = np.random.default_rng(0)
source = rng.integers(3, 12, (16, 6)).astype(np.int32)
targets = rng.integers(3, 14, (16, 5)).astype(np.int32)
target_lengths = rng.integers(0, 6, 16).astype(np.int32)
"""

_SEQ2SEQ = (
    _SEQ2SEQ_BATCH
    + """
import jax, numpy as np
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P
from seqmask import decoding, seq2seq

model = seq2seq.encoder_decoder(12, 14, embed_size=8, hidden_size=16, bos_id=1,
                                eos_id=2, pad_id=0)
params = model.init(jax.random.key(0))
source_lengths = rng.integers(0, 7, 16).astype(np.int32)

def loss(params, source, targets, source_lengths, target_lengths):
    return model.loss(params, source, targets, source_lengths=source_lengths,
                      target_lengths=target_lengths)

def decode(params, source, source_lengths):
    greedy = model.greedy(params, source, source_lengths=source_lengths,
                          max_length=7)
    sampled = model.sample(params, source, jax.random.key(1), max_length=7,
                           source_lengths=source_lengths, temperature=0.7,
                           top_k=5, top_p=0.9, min_p=0.05)
    beams = model.beam_search(params, source, source_lengths=source_lengths,
                              max_length=7, beam_width=3, num_decodes=2)
    return greedy.tokens, sampled.tokens, beams.tokens

# The decoders on a batch of two axes [4, 4], each split over a mesh axis.
weights = rng.normal(size=(5, 7)).astype(np.float32)
state = rng.normal(size=(4, 4, 5)).astype(np.float32)
start = np.ones((4, 4), np.int32)

def step_fn(weights, state, token):
    logits = state @ weights + 0.5 * jax.nn.one_hot(token, 7)
    return jnp.tanh(state + logits[..., :5]), logits

def decode_grid(weights, state, start):
    options = dict(max_length=6, eos_id=2)
    greedy = decoding.greedy(step_fn, weights, state, start, **options)
    sampled = decoding.sample(step_fn, weights, state, start, jax.random.key(2),
                              top_k=3, **options)
    beams = decoding.beam_search(step_fn, weights, state, start, beam_width=3,
                                 num_decodes=2, **options)
    return greedy.tokens, sampled.tokens, beams.tokens, beams.state

data = (source, targets, source_lengths, target_lengths)
want = jax.jit(jax.value_and_grad(loss))(params, *data)
want_tokens = jax.jit(decode)(params, source, source_lengths)
want_grid = jax.jit(decode_grid)(weights, state, start)
for axis_type in (jax.sharding.AxisType.Explicit, jax.sharding.AxisType.Auto):
    mesh = jax.make_mesh((8,), ("data",), axis_types=(axis_type,))
    put = lambda a: jax.device_put(a, NamedSharding(mesh, P("data")))
    with jax.set_mesh(mesh):
        got = jax.jit(jax.value_and_grad(loss))(params, *map(put, data))
        tokens = jax.jit(decode)(params, put(source), put(source_lengths))
    errors = jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))), got, want)
    same = all(map(np.array_equal, tokens, want_tokens))
    split = {t.sharding.spec[0] for t in tokens}
    grid = jax.make_mesh((2, 4), ("rows", "cols"), axis_types=(axis_type,) * 2)
    put = lambda a: jax.device_put(a, NamedSharding(grid, P("rows", "cols")))
    with jax.set_mesh(grid):
        got_grid = jax.jit(decode_grid)(weights, put(state), put(start))
    grid_error = max(float(np.max(np.abs(a - b))) for a, b in zip(got_grid, want_grid))
    grid_split = all(tuple(t.sharding.spec[:2]) == ("rows", "cols") for t in got_grid)
    print(axis_type, max(jax.tree.leaves(errors)), same, *split, grid_error, grid_split)
"""
)


def test_seq2seq_trains_and_decodes_on_a_sharded_batch():
    """A batch split over 8 devices, with explicit (``jax.make_mesh``'s
    default) and auto mesh axes: ``model.loss``'s value and gradient and the
    tokens of ``model.greedy``, ``model.sample`` (with every cut) and
    ``model.beam_search`` (n-best) are those of one device, and the tokens
    stay split like the batch. Under explicit axes JAX needs the layouts of
    the embedding lookup, of the zero states the model and the decoders
    make, and of the decoders' scatters and repeats; without them the loss
    raised ``ShardingTypeError``. The decoders also take a batch of two axes
    split over two mesh axes: greedy, sample and beam search (tokens and
    final state) give the one-device values, split like the batch under
    explicit axes; beam search, which flattens the batch axes, raised
    ``ShardingTypeError`` there."""
    for line in per_mesh_kind(_SEQ2SEQ, devices=NUM_DEVICES):
        kind, error, same, split, grid_error, grid_split = line
        assert float(error) < 1e-5, line
        assert same == "True", line
        assert split == "data", line
        assert float(grid_error) < 1e-5, line
        # Explicit axes keep the grid's layout in the type; auto axes leave
        # the outputs' layout to XLA.
        assert grid_split == "True" or "Auto" in kind, line


_SEQ2SEQ_OPTIONS = (
    _SEQ2SEQ_BATCH
    + """
import jax, numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
from seqmask import decoding, seq2seq

model = seq2seq.encoder_decoder(12, 14, embed_size=8, hidden_size=16, bos_id=1,
                                eos_id=2, pad_id=0, decoder_layers=2,
                                embedding_dropout=0.1, layer_dropout=0.2)
params = model.init(jax.random.key(0))
penalty = decoding.repetition_penalty(1.5)

def loss(params, source, targets, target_lengths):
    # No source mask (every position valid), scheduled sampling, dropout
    # between the decoder's layers.
    return model.loss(params, source, targets, target_lengths=target_lengths,
                      dropout_key=jax.random.key(1), sampling_probability=0.5,
                      sampling_key=jax.random.key(2))

def decode(params, source):
    greedy = model.greedy(params, source, max_length=7, logits_fn=penalty)
    beams = model.beam_search(params, source, max_length=7, beam_width=2,
                              logits_fn=penalty)
    return greedy.tokens, beams.tokens

# Two batch axes [2, 8], the second split over both axes of a 2 x 4 mesh:
# merging them has no layout JAX infers.
def grid_loss(params, source, targets):
    return model.loss(params, source, targets, reduction="sequence_mean")

def grid_decode(params, source):
    return model.beam_search(params, source, max_length=5, beam_width=2).tokens

grid_data = (source.reshape(2, 8, 6), targets.reshape(2, 8, 5))
data = (source, targets, target_lengths)
want = jax.jit(jax.value_and_grad(loss))(params, *data)
want_tokens = jax.jit(decode)(params, source)
want_grid = jax.jit(jax.value_and_grad(grid_loss))(params, *grid_data)
want_grid_tokens = jax.jit(grid_decode)(params, grid_data[0])
for axis_type in (jax.sharding.AxisType.Explicit, jax.sharding.AxisType.Auto):
    mesh = jax.make_mesh((8,), ("data",), axis_types=(axis_type,))
    put = lambda a: jax.device_put(a, NamedSharding(mesh, P("data")))
    with jax.set_mesh(mesh):
        got = jax.jit(jax.value_and_grad(loss))(params, *map(put, data))
        tokens = jax.jit(decode)(params, put(source))
    grid = jax.make_mesh((2, 4), ("rows", "cols"), axis_types=(axis_type,) * 2)
    put = lambda a: jax.device_put(a, NamedSharding(grid, P(None, ("rows", "cols"))))
    with jax.set_mesh(grid):
        got_grid = jax.jit(jax.value_and_grad(grid_loss))(params, *map(put, grid_data))
        grid_tokens = jax.jit(grid_decode)(params, put(grid_data[0]))
    errors = jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))), got, want)
    grid_errors = jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))),
                               got_grid, want_grid)
    same = all(map(np.array_equal, tokens, want_tokens))
    same_grid = np.array_equal(grid_tokens, want_grid_tokens)
    print(axis_type, max(jax.tree.leaves(errors)), same,
          max(jax.tree.leaves(grid_errors)), same_grid)
"""
)


def test_seq2seq_options_on_a_sharded_batch():
    """The options whose values seqmask makes itself, under ``jax.set_mesh``
    with explicit and auto axes, give the one-device loss, gradient and
    tokens: the all-true source mask when none is given, scheduled
    sampling's draws and start tokens, dropout between decoder layers, and
    the repetition penalty in greedy and beam search. Under explicit axes
    each raised ``ShardingTypeError``: the values were made replicated and
    met the batch-split ones in a select or a scatter. A batch whose second
    axis is split over two mesh axes also takes ``sequence_mean`` and beam
    search, which merge the batch axes (the merge raised there)."""
    for line in per_mesh_kind(_SEQ2SEQ_OPTIONS, devices=NUM_DEVICES):
        kind, error, same, grid_error, same_grid = line
        assert float(error) < 1e-5, line
        assert same == "True", line
        assert float(grid_error) < 1e-5, line
        assert same_grid == "True", line


_HELPERS = """
import jax, numpy as np
import flax.linen as nn
from jax.sharding import NamedSharding, PartitionSpec as P
import seqmask
from seqmask import linen, losses, masks, metrics, weights

rng = np.random.default_rng(0)
lengths = rng.integers(0, 6, 8).astype(np.int32)
xs = rng.normal(size=(8, 5, 3)).astype(np.float32)
mask = np.arange(5) < lengths[:, None]
a = rng.uniform(0.2, 0.9, (5, 8, 3)).astype(np.float32)
b = rng.normal(size=(5, 8, 3)).astype(np.float32)
labels = rng.integers(-1, 7, (8, 5)).astype(np.int32)
table = np.linspace(0.5, 2.0, 6).astype(np.float32)
hyp = rng.integers(1, 4, (8, 5)).astype(np.int32)
refs = rng.integers(1, 4, (8, 2, 5)).astype(np.int32)
ref_lengths = rng.integers(0, 6, (8, 2)).astype(np.int32)
flax_rnn = linen.RNN(nn.GRUCell(4), reverse=True)  # keep_order=False, as in Flax
variables = flax_rnn.init(jax.random.key(0), xs, seq_lengths=lengths)
lstm = seqmask.cells.lstm(4)
cell_params = lstm.init(jax.random.key(1), 3)
grid_xs = xs.reshape(2, 4, 5, 3).repeat(2, axis=1)
grid_mask = mask.reshape(2, 4, 5).repeat(2, axis=1)
# Packed rows: two sequences a row, ids unique over the batch, -1 at padding.
segments = np.where(np.arange(5) < 2, 0, 1) + 2 * np.arange(8)[:, None]
segments = np.where(mask, segments, -1).astype(np.int32)

def packed_loss(xs, segments):
    return losses.squared_error(xs[..., 0], xs[..., 1], weights=xs[..., 2] ** 2,
                                reduction="sequence_mean", segment_ids=segments)

def one_axis(xs, mask, lengths, a, b, labels, hyp, refs, ref_lengths, segments):
    return (
        masks.reverse_valid_steps(xs, mask),
        flax_rnn.apply(variables, xs, seq_lengths=lengths),
        seqmask.linear_scan(a, b, method="sequential")[1],
        weights.class_weights(labels, table),
        metrics.edit_distance(hyp, refs, hypothesis_lengths=lengths,
                              reference_lengths=ref_lengths,
                              multiple_references=True),
        jax.value_and_grad(packed_loss)(xs, segments),
        weights.normalize_per_sequence(xs[..., 2] ** 2, segment_ids=segments),
    )

def two_axes(xs, mask):
    return seqmask.rnn(lstm, cell_params, xs, mask=mask, skip_padding=2)[1]

data = (xs, mask, lengths, a, b, labels, hyp, refs, ref_lengths, segments)
layouts = (P("data"),) * 3 + (P(None, "data"),) * 2 + (P("data"),) * 5
want = jax.jit(one_axis)(*data)
want_grid = jax.jit(two_axes)(grid_xs, grid_mask)
for axis_type in (jax.sharding.AxisType.Explicit, jax.sharding.AxisType.Auto):
    mesh = jax.make_mesh((8,), ("data",), axis_types=(axis_type,))
    with jax.set_mesh(mesh):
        args = [jax.device_put(x, NamedSharding(mesh, s))
                for x, s in zip(data, layouts)]
        got = jax.jit(one_axis)(*args)
    grid = jax.make_mesh((2, 4), ("rows", "cols"), axis_types=(axis_type,) * 2)
    put = lambda x: jax.device_put(x, NamedSharding(grid, P(None, ("rows", "cols"))))
    with jax.set_mesh(grid):
        got_grid = jax.jit(two_axes)(put(grid_xs), put(grid_mask))
    errors = [float(np.max(np.abs(np.asarray(g, np.float64) - np.asarray(w))))
              for g, w in zip(jax.tree.leaves([got, got_grid]),
                              jax.tree.leaves([want, want_grid]))]
    print(axis_type, *errors)
"""


def test_helpers_on_a_sharded_batch():
    """Under ``jax.set_mesh`` with explicit and auto axes, helpers that make
    values of their own give the one-device results on a batch split over
    8 devices: ``masks.reverse_valid_steps`` (and so ``seqmask.linen.RNN``
    with ``reverse=True``, whose default ``keep_order=False``, as in Flax,
    reverses the outputs with it), ``linear_scan(method="sequential")`` from
    its zero state, ``weights.class_weights``, padded
    ``metrics.edit_distance``, ``reduction="sequence_mean"`` (value and
    gradient) and ``weights.normalize_per_sequence`` over packed rows
    (``segment_ids``), and ``skip_padding`` on a batch of two axes, the inner
    one split over two mesh axes. Under explicit axes each raised
    ``ShardingTypeError`` (or a scan carry type error): positions, zero
    states, the table lookup and the first row of the dynamic programme were
    replicated, the segments' sort ran along the split batch axis, and the
    skip schedule merged the batch axes."""
    for line in per_mesh_kind(_HELPERS, devices=NUM_DEVICES):
        kind, *errors = line
        assert len(errors) == 9, line
        assert all(float(e) < 1e-5 for e in errors), line
