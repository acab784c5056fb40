"""bucket_batches and packed_batches against their documented rules.

Every sequence exactly once per pass, shapes bounded by the boundaries (one
shape for packed batches), the padding of a pass against a closed-form count,
the batch layout against a brute-force simulation of the documented planning
rule, determinism given the seed, pytree items, and packed training equal to
one sequence a row.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import seqmask
from seqmask import cells, losses
from seqmask.data import (
    Batch,
    bucket_batches,
    bucket_boundaries,
    packed_batches,
    unpack,
)


def tokens(index, length):
    """A sequence whose values say which sequence and step they are."""
    return 1000 * (index + 1) + np.arange(length)


def check_batch_rows(batch: Batch, sequences, pad_value):
    """Each row holds its sequence, its length and mask; padding elsewhere."""
    rows, length = batch.mask.shape
    for row in range(rows):
        index = int(batch.indices[row])
        n = 0 if index < 0 else len(sequences[index])
        assert batch.lengths[row] == n
        np.testing.assert_array_equal(batch.mask[row], np.arange(length) < n)
        if index >= 0:
            np.testing.assert_array_equal(batch.inputs[row, :n], sequences[index])
        np.testing.assert_array_equal(batch.inputs[row, n:], pad_value)


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 12), min_size=1, max_size=25),
    batch_size=st.integers(1, 4),
    extra=st.lists(st.integers(1, 12), max_size=3),
    shuffle=st.booleans(),
    drop_remainder=st.booleans(),
)
def test_bucket_batches_rules(lengths, batch_size, extra, shuffle, drop_remainder):
    sequences = [tokens(i, n) for i, n in enumerate(lengths)]
    boundaries = sorted({max(max(lengths), 1), *extra})
    got = bucket_batches(
        sequences,
        batch_size=batch_size,
        boundaries=boundaries,
        shuffle=shuffle,
        seed=3,
        drop_remainder=drop_remainder,
        pad_value=-7,
    )
    batches = list(got)
    assert len(got) == len(batches)
    seen = []
    padding = 0
    for batch in batches:
        rows, length = batch.mask.shape
        assert rows == batch_size and length in boundaries
        assert batch.inputs.shape == (rows, length) and batch.inputs.dtype == np.int32
        check_batch_rows(batch, sequences, -7)
        members = [int(i) for i in batch.indices if i >= 0]
        for index in members:  # the smallest boundary that holds it
            assert length == min(b for b in boundaries if b >= lengths[index])
        if drop_remainder:
            assert len(members) == rows
        seen.extend(members)
        padding += rows * length - sum(lengths[i] for i in members)
    assert len({b.mask.shape for b in batches}) <= len(boundaries)
    # Every sequence once; with drop_remainder, fewer than batch_size dropped
    # per bucket.
    assert len(seen) == len(set(seen))
    bucket_of = [min(b for b in boundaries if b >= n) for n in lengths]
    if not drop_remainder:
        assert sorted(seen) == list(range(len(lengths)))
        # Closed form of the padding: each sequence to its boundary, plus the
        # filler rows that complete each bucket's last batch.
        expected = sum(b - n for b, n in zip(bucket_of, lengths, strict=True))
        for boundary in set(bucket_of):
            count = bucket_of.count(boundary)
            expected += boundary * (-count % batch_size)
        assert padding == expected
    else:
        for boundary in set(bucket_of):
            count = bucket_of.count(boundary)
            kept = [i for i in seen if bucket_of[i] == boundary]
            assert len(kept) == count - count % batch_size


def test_bucket_batches_follow_the_planning_rule_without_shuffle():
    """Brute force: buckets fill in order, a full bucket is emitted at once,
    partial buckets follow in boundary order."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 20, size=40)
    sequences = [tokens(i, n) for i, n in enumerate(lengths)]
    boundaries = [4, 8, 20]
    got = [
        [int(i) for i in b.indices if i >= 0]
        for b in bucket_batches(sequences, batch_size=3, boundaries=boundaries)
    ]
    waiting = {b: [] for b in boundaries}
    expected = []
    for index, n in enumerate(lengths):
        boundary = next(b for b in boundaries if b >= n)
        waiting[boundary].append(index)
        if len(waiting[boundary]) == 3:
            expected.append(waiting[boundary])
            waiting[boundary] = []
    expected.extend(rest for rest in waiting.values() if rest)
    assert got == expected


def test_bucket_batches_are_deterministic_given_the_seed():
    rng = np.random.default_rng(1)
    sequences = [tokens(i, n) for i, n in enumerate(rng.integers(1, 30, size=60))]

    def order(seed):
        return [
            b.indices.tolist()
            for b in bucket_batches(sequences, batch_size=4, shuffle=True, seed=seed)
        ]

    assert order(5) == order(5)
    assert order(5) != order(6)  # a new epoch: seed=epoch
    assert sorted(i for b in order(6) for i in b if i >= 0) == list(range(60))


@settings(max_examples=25, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 16), min_size=1, max_size=20),
    max_tokens=st.integers(16, 64),
    batch_size=st.one_of(st.none(), st.integers(1, 5)),
)
def test_token_budget_bounds_every_batch(lengths, max_tokens, batch_size):
    sequences = [tokens(i, n) for i, n in enumerate(lengths)]
    boundaries = [4, 8, 16]
    batches = list(
        bucket_batches(
            sequences,
            max_tokens=max_tokens,
            batch_size=batch_size,
            boundaries=boundaries,
        )
    )
    for batch in batches:
        rows, length = batch.mask.shape
        expected_rows = max_tokens // length
        if batch_size is not None:
            expected_rows = min(expected_rows, batch_size)
        assert rows == expected_rows and rows * length <= max_tokens
    seen = sorted(int(i) for b in batches for i in b.indices if i >= 0)
    assert seen == list(range(len(lengths)))


def test_bucket_boundaries_are_the_quantiles_by_brute_force():
    rng = np.random.default_rng(2)
    for _ in range(20):
        lengths = rng.lognormal(2.0, 1.0, size=int(rng.integers(1, 50))).astype(int)
        k = int(rng.integers(1, 9))
        got = bucket_boundaries(lengths, num_buckets=k)
        expected = set()
        for j in range(1, k + 1):
            # the smallest length with at least j/k of the data at or below it
            candidates = [
                n
                for n in sorted(set(lengths))
                if np.mean(lengths <= n) >= j / k - 1e-12
            ]
            expected.add(max(int(candidates[0]), 1))
        assert got == tuple(sorted(expected))
        assert got[-1] == max(int(lengths.max()), 1)


def test_default_boundaries_come_from_the_data():
    rng = np.random.default_rng(3)
    lengths = rng.integers(1, 100, size=50)
    sequences = [tokens(i, n) for i, n in enumerate(lengths)]
    shapes = {b.mask.shape[1] for b in bucket_batches(sequences, batch_size=4)}
    assert shapes <= set(bucket_boundaries(lengths))


def test_pytree_items_pad_each_leaf_with_its_own_lengths():
    rng = np.random.default_rng(4)
    items = [
        {
            "source": rng.normal(size=(int(n), 2)).astype(np.float32),
            "target": tokens(i, int(m)),
        }
        for i, (n, m) in enumerate(rng.integers(0, 9, size=(13, 2)))
    ]
    boundaries = [3, 6, 9]
    for batch in bucket_batches(
        items,
        batch_size=2,
        boundaries=boundaries,
        pad_value={"source": 0, "target": -1},
    ):
        length = batch.mask["source"].shape[1]
        assert batch.inputs["source"].shape[1:] == (length, 2)
        assert batch.inputs["target"].shape[1] == length
        for row, index in enumerate(batch.indices):
            if index < 0:
                continue
            item = items[index]
            longest = max(len(item["source"]), len(item["target"]))
            assert length == min(b for b in boundaries if b >= longest)
            for key, pad in (("source", 0), ("target", -1)):
                n = len(item[key])
                assert batch.lengths[key][row] == n
                np.testing.assert_array_equal(batch.inputs[key][row, :n], item[key])
                np.testing.assert_array_equal(batch.inputs[key][row, n:], pad)
                np.testing.assert_array_equal(
                    batch.mask[key][row], np.arange(length) < n
                )


# --- packed_batches --------------------------------------------------------------


def simulate_packed(lengths, batch_size, row_len):
    """The documented rule, by hand: first fit within a batch's rows; a new
    batch when the next sequence fits none of them."""
    batches, rows = [], []
    current: list[int] = []
    for index, n in enumerate(lengths):
        row = next((r for r, used in enumerate(rows) if used + n <= row_len), None)
        if row is None and len(rows) == batch_size:
            batches.append(current)
            current, rows = [], []
        if row is None:
            rows.append(0)
            row = len(rows) - 1
        rows[row] += n
        current.append(index)
    batches.append(current)
    return batches


def test_empty_sequences_keep_their_trailing_shape_and_dtype():
    # A batch whose sequences are all empty arrays is laid out like the
    # arrays (features and dtype), all padding, as a non-empty one would be;
    # the pad value is checked against that dtype.
    empty = np.zeros((0, 3), np.float16)
    batch = next(bucket_batches([empty, empty], batch_size=2, boundaries=[4]))
    np.testing.assert_array_equal(batch.inputs, np.full((2, 4, 3), 0, np.float16))
    assert batch.inputs.dtype == np.float16
    np.testing.assert_array_equal(batch.mask, np.zeros((2, 4), bool))
    np.testing.assert_array_equal(batch.lengths, [0, 0])
    padded = next(
        bucket_batches([empty], batch_size=1, boundaries=[2], pad_value=-2.5)
    ).inputs
    np.testing.assert_array_equal(padded, np.full((1, 2, 3), -2.5, np.float16))
    with pytest.raises(ValueError, match="pad_value does not fit dtype float16"):
        next(bucket_batches([empty], batch_size=1, boundaries=[2], pad_value=1e6))
    # Mixed with a non-empty sequence, the non-empty one decides, as before.
    mixed = next(
        bucket_batches(
            [empty, np.ones((2, 3), np.float32)], batch_size=2, boundaries=[4]
        )
    )
    assert mixed.inputs.dtype == np.float32 and mixed.inputs.shape == (2, 4, 3)


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 6), min_size=1, max_size=25),
    batch_size=st.integers(1, 3),
    row_len=st.integers(6, 9),
)
def test_packed_batches_rules(lengths, batch_size, row_len):
    sequences = [tokens(i, n) for i, n in enumerate(lengths)]
    packings = list(packed_batches(sequences, batch_size=batch_size, row_len=row_len))
    assert [p.indices.tolist() for p in packings] == simulate_packed(
        lengths, batch_size, row_len
    )
    seen = []
    for packing in packings:
        assert packing.inputs.shape == (batch_size, row_len)  # one shape
        for got, index in zip(
            unpack(packing.inputs, packing), packing.indices, strict=True
        ):
            np.testing.assert_array_equal(got, sequences[index])
        np.testing.assert_array_equal(packing.mask, packing.segment_ids >= 0)
        assert packing.mask.sum() == sum(lengths[i] for i in packing.indices)
        seen.extend(packing.indices.tolist())
    assert sorted(seen) == list(range(len(lengths)))


def test_packed_batches_shuffle_is_deterministic_and_complete():
    rng = np.random.default_rng(5)
    sequences = [tokens(i, n) for i, n in enumerate(rng.integers(1, 8, size=40))]

    def order(seed):
        return [
            p.indices.tolist()
            for p in packed_batches(
                sequences, batch_size=2, row_len=8, shuffle=True, seed=seed
            )
        ]

    assert order(1) == order(1) and order(1) != order(2)
    assert sorted(i for p in order(2) for i in p) == list(range(40))


def test_packed_training_equals_one_sequence_a_row():
    """An LSTM over packed batches (resets at segment starts) with a
    per-token loss over segment ids: the summed loss and its gradient over an
    epoch equal the same model run one sequence a row."""
    rng = np.random.default_rng(6)
    lengths = rng.integers(1, 7, size=9)
    items = [
        {
            "x": rng.normal(size=(int(n), 3)).astype(np.float32),
            "y": rng.integers(0, 4, size=int(n)).astype(np.int32),
        }
        for n in lengths
    ]
    cell = cells.lstm(4)
    params = {
        "rnn": cell.init(jax.random.key(0), 3),
        "out": jnp.asarray(rng.normal(size=(4, 4)), jnp.float32),
    }

    def loss(params, x, y, mask, resets, segment_ids, reduction):
        _, ys = seqmask.rnn(cell, params["rnn"], x, mask=mask, resets=resets)
        return losses.softmax_cross_entropy_with_integer_labels(
            ys @ params["out"], y, segment_ids=segment_ids, reduction=reduction
        )

    step = jax.jit(jax.value_and_grad(loss), static_argnums=6)
    packed_total, packed_grad = 0.0, None
    for p in packed_batches(
        items, batch_size=2, row_len=8, pad_value={"x": 0, "y": -1}
    ):
        value, grad = step(
            params, p.inputs["x"], p.inputs["y"], p.mask, p.resets, p.segment_ids, "sum"
        )
        packed_total += float(value)
        packed_grad = (
            grad if packed_grad is None else jax.tree.map(jnp.add, packed_grad, grad)
        )
    longest = int(lengths.max())
    x = np.zeros((len(items), longest, 3), np.float32)
    y = np.full((len(items), longest), -1, np.int32)
    for row, item in enumerate(items):
        x[row, : len(item["x"])] = item["x"]
        y[row, : len(item["y"])] = item["y"]
    mask = np.arange(longest)[None, :] < lengths[:, None]
    ids = np.where(mask, np.arange(len(items))[:, None], -1).astype(np.int32)
    value, grad = step(params, x, y, mask, None, ids, "sum")
    np.testing.assert_allclose(packed_total, float(value), rtol=1e-5)
    for got, want in zip(
        jax.tree.leaves(packed_grad), jax.tree.leaves(grad), strict=True
    ):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    assert math.isfinite(packed_total)


def test_len_is_the_number_of_batches():
    sequences = [tokens(i, n) for i, n in enumerate([3, 1, 4, 1, 5])]
    for batches in (
        bucket_batches(sequences, batch_size=2),
        packed_batches(sequences, batch_size=1, row_len=5),
    ):
        count = len(batches)
        assert count == len(list(batches))


def test_errors_come_at_the_call():
    with pytest.raises(ValueError, match="longer than the largest boundary 4"):
        bucket_batches([[1, 2], [1, 2, 3, 4, 5]], batch_size=1, boundaries=[2, 4])
    with pytest.raises(ValueError, match="longer than row_len=4"):
        packed_batches([[1, 2], [1, 2, 3, 4, 5]], batch_size=1, row_len=4)
