"""Data layouts: chunks, stateful lanes, packing, and resuming from a checkpoint.

Layouts are checked against independent simulations of their documented
rules (first fit, earliest-free lane) and by reassembling what they emit;
recurrent results over packed rows and stateful lanes against the NumPy
reference loop run on each sequence alone, from the learned initial state.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import numpy_reference as ref
import optax
import orbax.checkpoint as ocp
import pytest
from helpers import random_params
from hypothesis import given, settings
from hypothesis import strategies as st

import seqmask
from seqmask import cells
from seqmask.carry import rnn_with_carries, truncated_bptt_step
from seqmask.data import (
    Packing,
    chunks,
    pack,
    segment_final_carries,
    stateful_batches,
    unpack,
)

IN, H = 3, 4


# A learned initial state that is not zero: resets must go to it.
LSTM = cells.learnable_initial_state(cells.lstm(H))
LSTM_PARAMS = random_params(LSTM, IN, 0)
NP_PARAMS = jax.tree.map(lambda x: np.asarray(x, np.float64), LSTM_PARAMS)


def run_alone(xs):
    """NumPy reference: one sequence [len, IN] from the learned state."""
    h, c = NP_PARAMS["initial_carry"]
    ys = []
    for x in xs:
        (h, c), y = ref.lstm_step(NP_PARAMS["cell"], (h, c), x)
        ys.append(y)
    return np.reshape(ys, (len(xs), H)), (h, c)


def tokens(index, length):
    """A sequence whose values say which sequence and step they are."""
    return 1000 * (index + 1) + np.arange(length)


# --- chunks -----------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(
    time=st.integers(1, 12),
    chunk_len=st.integers(1, 5),
    seed=st.integers(0, 2**16),
)
def test_chunks_reassemble_to_the_batch_with_a_padded_tail(time, chunk_len, seed):
    rng = np.random.default_rng(seed)
    batch = {"x": rng.normal(size=(2, time, 3)), "y": rng.integers(0, 9, (2, time))}
    mask = rng.random((2, time)) < 0.7
    resets = rng.random((2, time)) < 0.3
    got = list(chunks(batch, chunk_len, mask=mask, resets=resets))
    assert len(got) == -(-time // chunk_len)
    for chunk in got:
        assert chunk.mask.shape == chunk.resets.shape == (2, chunk_len)
        assert chunk.segment_ids is None
    joined = {key: np.concatenate([c.xs[key] for c in got], axis=1) for key in batch}
    joined_mask = np.concatenate([c.mask for c in got], axis=1)
    joined_resets = np.concatenate([c.resets for c in got], axis=1)
    for key, value in batch.items():
        np.testing.assert_array_equal(joined[key][:, :time], value)
        np.testing.assert_array_equal(joined[key][:, time:], 0)
    np.testing.assert_array_equal(joined_mask[:, :time], mask)
    np.testing.assert_array_equal(joined_resets[:, :time], resets)
    assert not joined_mask[:, time:].any() and not joined_resets[:, time:].any()


def test_chunks_of_jax_arrays_and_default_mask():
    xs = jnp.arange(14.0).reshape(2, 7)
    got = list(chunks(xs, 3))
    assert got[0].resets is None and all(isinstance(c.xs, jax.Array) for c in got)
    np.testing.assert_array_equal(
        np.concatenate([c.xs for c in got], 1), np.pad(np.asarray(xs), [(0, 0), (0, 2)])
    )
    np.testing.assert_array_equal(
        np.concatenate([c.mask for c in got], 1), np.arange(9) < 7 + np.zeros((2, 1))
    )


def test_chunks_errors():
    xs = np.zeros((2, 5))
    with pytest.raises(ValueError, match="chunk_len must be a positive int; got 0"):
        next(chunks(xs, 0))
    with pytest.raises(TypeError, match="chunk_len must be an int; got float 2.0"):
        next(chunks(xs, 2.0))
    with pytest.raises(TypeError, match="chunks: mask must be a boolean array"):
        next(chunks(xs, 2, mask=np.ones((2, 5))))
    with pytest.raises(ValueError, match=r"resets must have shape .*= \(2, 5\)"):
        next(chunks(xs, 2, resets=np.ones((2, 4), bool)))
    with pytest.raises(ValueError, match=r"share the batch and time axes \(2, 5\)"):
        next(chunks({"a": xs, "b": np.zeros((2, 6))}, 2))


# --- stateful lanes ---------------------------------------------------------------


def reassemble(batches):
    """Concatenate the chunks of every lane along time."""
    return tuple(
        np.concatenate([getattr(c, field) for c in batches], axis=1)
        for field in ("xs", "mask", "resets", "segment_ids")
    )


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 9), min_size=1, max_size=10),
    batch_size=st.integers(1, 4),
    chunk_len=st.integers(1, 5),
)
def test_stateful_lanes_never_mix_sequences(lengths, batch_size, chunk_len):
    sequences = [tokens(i, n).tolist() for i, n in enumerate(lengths)]
    batches = list(
        stateful_batches(iter(sequences), batch_size, chunk_len, pad_value=-7)
    )
    # The documented rule, simulated: each non-empty sequence goes to the lane
    # that becomes free first (lowest lane on ties).
    lane_end = [0] * batch_size
    placed = {}
    for index, n in enumerate(lengths):
        if n:
            lane = lane_end.index(min(lane_end))
            placed[index] = (lane, lane_end[lane])
            lane_end[lane] += n
    assert len(batches) == -(-max(lane_end) // chunk_len)
    if not batches:
        return
    xs, mask, resets, segment_ids = reassemble(batches)
    assert xs.dtype == np.int32
    np.testing.assert_array_equal(mask, segment_ids >= 0)
    np.testing.assert_array_equal(xs[~mask], -7)
    expected_resets = np.zeros_like(resets)
    for index, (lane, start) in placed.items():
        n = lengths[index]
        lanes, steps = np.nonzero(segment_ids == index)
        assert set(lanes) == {lane}  # one lane, contiguous, in order
        np.testing.assert_array_equal(steps, np.arange(start, start + n))
        np.testing.assert_array_equal(xs[lane, steps], sequences[index])
        expected_resets[lane, start] = True
    np.testing.assert_array_equal(resets, expected_resets)
    assert mask.sum() == sum(lengths)


def test_stateful_chunks_with_threaded_carry_equal_separate_runs():
    """Lanes run chunk by chunk, carry threaded, resets to the learned state:
    each sequence's outputs and its final carry (at its last step) equal the
    sequence run alone. The lanes' starting carry is garbage on purpose: every
    lane resets at its first step."""
    rng = np.random.default_rng(1)
    lengths = [5, 0, 2, 9, 1, 4, 7, 3]
    sequences = [rng.normal(size=(n, IN)).astype(np.float32) for n in lengths]
    batch_size, chunk_len = 3, 4
    step = jax.jit(
        lambda params, carry, chunk: rnn_with_carries(
            LSTM,
            params,
            chunk.xs,
            mask=chunk.mask,
            resets=chunk.resets,
            initial_carry=carry,
        )
    )
    carry = cells.LSTMCarry(
        *(np.full((batch_size, H), 1e3, np.float32) for _ in range(2))
    )
    outputs = {i: [] for i in range(len(lengths))}
    finals = {}
    for chunk in stateful_batches(sequences, batch_size, chunk_len):
        carry, ys, carries = step(LSTM_PARAMS, carry, chunk)
        for lane in range(batch_size):
            for t in range(chunk_len):
                index = int(chunk.segment_ids[lane, t])
                if index >= 0:
                    outputs[index].append(np.asarray(ys[lane, t]))
                    finals[index] = (carries.h[lane, t], carries.c[lane, t])
    for index, xs in enumerate(sequences):
        want_ys, (want_h, want_c) = run_alone(xs)
        if lengths[index] == 0:
            assert not outputs[index] and index not in finals
            continue
        np.testing.assert_allclose(
            np.stack(outputs[index]), want_ys, rtol=1e-5, atol=1e-6
        )
        np.testing.assert_allclose(finals[index][0], want_h, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(finals[index][1], want_c, rtol=1e-5, atol=1e-6)


def test_stateful_batches_errors():
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        next(stateful_batches([[1]], 0, 2))
    with pytest.raises(ValueError, match=r"trailing shape \(2,\).*sequences\[1\]"):
        list(stateful_batches([np.zeros((3, 2)), np.zeros((3, 3))], 1, 2))
    with pytest.raises(TypeError, match=r"sequences\[1\] has dtype float64"):
        next(stateful_batches([[1, 2], [0.5]], 2, 2))
    with pytest.raises(TypeError, match="got one array of shape"):
        next(stateful_batches(np.zeros((2, 3)), 2, 2))


# --- packing ----------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 8), min_size=1, max_size=10),
    row_len=st.integers(8, 11),
)
def test_pack_is_first_fit_and_unpacks_to_the_inputs(lengths, row_len):
    sequences = [tokens(i, n) for i, n in enumerate(lengths)]
    packing = pack(sequences, row_len)
    # Simulated first fit: the first row with room, else a new row.
    fill: list[int] = []
    for index, n in enumerate(lengths):
        row = next((r for r, used in enumerate(fill) if used + n <= row_len), None)
        if row is None:
            row = len(fill)
            fill.append(0)
        assert (packing.rows[index], packing.starts[index]) == (row, fill[row])
        fill[row] += n
    assert packing.inputs.shape == (max(len(fill), 1), row_len)
    np.testing.assert_array_equal(packing.lengths, lengths)
    expected_resets = np.zeros_like(packing.resets)
    for index, n in enumerate(lengths):
        row, start = packing.rows[index], packing.starts[index]
        steps = slice(start, start + n)
        np.testing.assert_array_equal(packing.inputs[row, steps], sequences[index])
        np.testing.assert_array_equal(packing.segment_ids[row, steps], index)
        np.testing.assert_array_equal(packing.positions[row, steps], np.arange(n))
        if n:
            expected_resets[row, start] = True
    np.testing.assert_array_equal(packing.resets, expected_resets)
    np.testing.assert_array_equal(packing.mask, packing.segment_ids >= 0)
    assert packing.mask.sum() == sum(lengths)
    np.testing.assert_array_equal(packing.inputs[~packing.mask], 0)
    for got, want in zip(unpack(packing.inputs, packing), sequences, strict=True):
        np.testing.assert_array_equal(got, want)


def test_packed_rows_equal_separate_runs():
    """Outputs and final carries of packed sequences (resets to the learned
    state) equal each sequence run alone; an empty sequence's final carry is
    the learned initial carry."""
    rng = np.random.default_rng(2)
    lengths = [3, 6, 0, 2, 4, 1, 5]
    sequences = [rng.normal(size=(n, IN)).astype(np.float32) for n in lengths]
    packing = pack(sequences, row_len=7)
    assert packing.inputs.shape[0] < len(lengths)  # rows really are shared

    @jax.jit
    def run(params, inputs):
        _, ys, carries = rnn_with_carries(
            LSTM, params, inputs, mask=packing.mask, resets=packing.resets
        )
        finals = segment_final_carries(
            carries, packing, initial_carry=LSTM.initial_carry(params, ())
        )
        return ys, finals

    ys, finals = run(LSTM_PARAMS, packing.inputs)
    assert isinstance(finals, cells.LSTMCarry)
    for index, (got_ys, xs) in enumerate(
        zip(unpack(ys, packing), sequences, strict=True)
    ):
        want_ys, (want_h, want_c) = run_alone(xs)
        np.testing.assert_allclose(got_ys, want_ys, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(finals.h[index], want_h, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(finals.c[index], want_c, rtol=1e-5, atol=1e-6)


def test_a_zero_dimensional_pad_value_is_one_value_for_every_leaf():
    """np.array(-1), jnp.array(-1) and np.int32(-1) are one value, as -1 is
    (they were refused as "not a pytree shaped like the items")."""
    items = [{"a": [1, 2], "b": [1.0, 2.0]}, {"a": [3], "b": [3.0]}]
    want = pack(items, row_len=3, pad_value=-1, num_rows=2).inputs
    assert want["a"][1, 1] == -1 and want["b"][1, 2] == -1.0
    for pad_value in (np.array(-1), jnp.array(-1), np.int32(-1)):
        got = pack(items, row_len=3, pad_value=pad_value, num_rows=2).inputs
        for key in ("a", "b"):
            np.testing.assert_array_equal(got[key], want[key])
            assert got[key].dtype == want[key].dtype


def test_pack_and_readback_errors():
    with pytest.raises(ValueError, match=r"sequences\[1\] has length 5, longer than"):
        pack([[1, 2], [1, 2, 3, 4, 5]], row_len=4)
    with pytest.raises(ValueError, match="row_len must be a positive int"):
        pack([[1]], row_len=0)
    with pytest.raises(ValueError, match=r"sequences\[0\] must be \[length, ...\]"):
        pack([3], row_len=4)
    packing = pack([[1, 2], [], [3]], row_len=4)
    assert isinstance(packing, Packing)
    with pytest.raises(ValueError, match=r"unpack: ys must be \[rows, row_len"):
        unpack(np.zeros((1, 3)), packing)
    with pytest.raises(ValueError, match=r"sequences \[1\] are empty"):
        segment_final_carries(np.zeros((1, 4)), packing)
    with pytest.raises(ValueError, match=r"initial_carry.*does not match"):
        segment_final_carries(
            np.zeros((1, 4)), packing, initial_carry=(np.zeros(()), np.zeros(()))
        )
    np.testing.assert_array_equal(
        segment_final_carries(np.arange(4.0)[None], packing, initial_carry=-1.0),
        [1.0, -1.0, 2.0],
    )
    with pytest.raises(TypeError, match="packing must be the Packing"):
        unpack(np.zeros((1, 4)), tuple(packing))


# --- resuming stateful training from a checkpoint ---------------------------------

GRU = cells.learnable_initial_state(cells.gru(H))


def readout_loss(params, carry, chunk):
    inputs, targets = chunk.xs[..., :IN], chunk.xs[..., IN:]
    carry, ys = seqmask.rnn(
        GRU,
        params["rnn"],
        inputs,
        mask=chunk.mask,
        initial_carry=carry,
        resets=chunk.resets,
    )
    predictions = ys @ params["readout"]
    errors = jnp.where(chunk.mask[..., None], (predictions - targets) ** 2, 0.0)
    return jnp.sum(errors) / jnp.maximum(jnp.sum(chunk.mask), 1), carry


def test_resuming_from_a_checkpoint_equals_uninterrupted_training(tmp_path):
    """N chunks, save {params, opt_state, carry, position}, restore, M more
    chunks == N + M chunks in one go, exactly."""
    # optax's adam computes `b1 ** count` (float ** int32), which strict
    # promotion rejects.
    with jax.numpy_dtype_promotion("standard"):
        resume_and_compare(tmp_path)


def resume_and_compare(tmp_path):
    rng = np.random.default_rng(3)
    sequences = [
        rng.normal(size=(n, IN + 1)).astype(np.float32)
        for n in rng.integers(1, 8, size=9)
    ]
    batch_size, chunk_len, first, more = 2, 3, 3, 3
    optimizer = optax.adam(0.05)
    step = truncated_bptt_step(readout_loss, optimizer)
    params = {
        "rnn": random_params(GRU, IN, 1),
        "readout": np.random.default_rng(2).normal(size=(H, 1)).astype(np.float32),
    }
    initial = {
        "params": params,
        "opt_state": optimizer.init(params),
        "carry": GRU.initial_carry(params["rnn"], (batch_size,)),
    }

    def train(state, position, num_chunks):
        params, opt_state, carry = state["params"], state["opt_state"], state["carry"]
        stream = stateful_batches(sequences, batch_size, chunk_len)
        for chunk in itertools.islice(stream, position, position + num_chunks):
            params, opt_state, carry, _ = step(params, opt_state, carry, chunk)
            position += 1
        return {"params": params, "opt_state": opt_state, "carry": carry}, position

    assert len(list(stateful_batches(sequences, batch_size, chunk_len))) >= first + more
    uninterrupted, _ = train(initial, 0, first + more)

    state, position = train(initial, 0, first)
    saved = {**state, "position": np.asarray(position, np.int32)}
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(tmp_path / "checkpoint", saved)
    checkpointer.wait_until_finished()
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, saved)
    del state, saved
    restored = checkpointer.restore(tmp_path / "checkpoint", abstract)
    position = int(restored.pop("position"))
    # Restored arrays are committed to a device, which jit compiles for anew;
    # host copies reuse the compiled step (a restarted process compiles anyway).
    restored = jax.tree.map(np.asarray, restored)
    assert position == first
    resumed, _ = train(restored, position, more)

    assert jax.tree.structure(resumed) == jax.tree.structure(uninterrupted)
    for got, want in zip(
        jax.tree.leaves(resumed), jax.tree.leaves(uninterrupted), strict=True
    ):
        np.testing.assert_array_equal(got, want)
    # training moved the parameters (the comparison is not vacuous)
    assert not np.allclose(resumed["params"]["readout"], params["readout"])
