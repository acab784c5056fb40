"""Losses over packed rows (``segment_ids=``) equal the losses over the same
sequences one per row, for every loss and every reduction.

The sequences are packed with :func:`seqmask.data.pack` (pytree items: the
predictions, targets and weights of a sequence travel together) with NaN at
the padding, and laid out one per row the same way; both are compared with a
NumPy reduction over the list of sequences written here.
"""

import functools

import jax
import numpy as np
import pytest
from test_losses import CASES, Case

from seqmask import losses
from seqmask.data import pack, unpack

LENGTHS = [3, 1, 4, 0, 2, 5, 2]
ROW_LEN = 6


def sequences_for(case: Case, seed: int):
    """One item a sequence: predictions, targets and weights with some zeros."""
    rng = np.random.default_rng(seed)
    items = []
    for length in LENGTHS:
        predictions, targets = case.make(rng)  # [B, T, ...]; use row 0, cut
        predictions = predictions.reshape(-1, *predictions.shape[2:])[:length]
        targets = targets.reshape(-1, *targets.shape[2:])[:length]
        element = (
            predictions.shape[1:-1]
            if case.element != "feature"
            else (predictions.shape[1:])
        )
        weights = rng.uniform(0.5, 2.0, size=(length, *element))
        weights[rng.random(weights.shape) < 0.3] = 0.0
        items.append(
            {
                "p": predictions.astype(np.float32),
                "t": targets.astype(np.int32 if case.integer_targets else np.float32),
                "w": weights.astype(np.float32),
            }
        )
    return items


def pad_values(case: Case):
    return {"p": np.nan, "t": -100 if case.integer_targets else np.nan, "w": 0.0}


def reference(case: Case, items, reduction):
    """NumPy reductions over the list of sequences (no padding anywhere)."""
    per_sequence = []
    for item in items:
        element = case.reference(
            item["p"].astype(np.float64),
            item["t"] if case.integer_targets else item["t"].astype(np.float64),
            **case.options,
        )
        per_sequence.append((element * item["w"], item["w"]))
    weighted = np.concatenate([wl.reshape(-1) for wl, _ in per_sequence])
    weights = np.concatenate([w.reshape(-1) for _, w in per_sequence])
    if reduction == "sum":
        return weighted.sum()
    if reduction == "mean":
        return weighted.sum() / weighted.size
    if reduction == "weighted_mean":
        return weighted.sum() / weights.sum()
    means = [wl.sum() / w.sum() for wl, w in per_sequence if w.sum() != 0]
    return np.mean(means)


def one_per_row(items, pads):
    """Each sequence in its own row, padded to the longest; ids = row, -1 at
    padding."""
    longest = max(LENGTHS)
    batch = {}
    for key in ("p", "t", "w"):
        trailing = items[0][key].shape[1:]
        out = np.full((len(items), longest, *trailing), pads[key], items[0][key].dtype)
        for row, item in enumerate(items):
            out[row, : len(item[key])] = item[key]
        batch[key] = out
    steps = np.arange(longest)[None, :]
    lengths = np.array(LENGTHS)[:, None]
    segment_ids = np.where(steps < lengths, np.arange(len(items))[:, None], -1)
    return batch, segment_ids.astype(np.int32)


@functools.cache
def all_reductions(loss, options):
    def run(predictions, targets, weights, segment_ids):
        return {
            reduction: loss(
                predictions,
                targets,
                weights,
                segment_ids=segment_ids,
                reduction=reduction,
                **dict(options),
            )
            for reduction in losses.REDUCTIONS
        }

    return jax.jit(run)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_packed_equals_one_sequence_a_row_for_every_reduction(case):
    items = sequences_for(case, seed=0)
    pads = pad_values(case)
    packing = pack(items, ROW_LEN, pad_value=pads)
    assert packing.mask.shape[0] < len(LENGTHS)  # rows really are shared
    run = all_reductions(case.loss, tuple(sorted(case.options.items())))
    packed = run(
        packing.inputs["p"],
        packing.inputs["t"],
        packing.inputs["w"],
        packing.segment_ids,
    )
    rows, row_ids = one_per_row(items, pads)
    separate = run(rows["p"], rows["t"], rows["w"], row_ids)
    for reduction in losses.REDUCTIONS:
        if reduction == "none":
            continue
        expected = reference(case, items, reduction)
        np.testing.assert_allclose(packed[reduction], expected, rtol=2e-5, atol=1e-6)
        np.testing.assert_allclose(separate[reduction], expected, rtol=2e-5, atol=1e-6)
    # "none": each sequence's element losses, wherever it was laid out.
    for index, got in enumerate(unpack(packed["none"], packing)):
        np.testing.assert_array_equal(got, separate["none"][index, : LENGTHS[index]])
        assert np.all(np.isfinite(got))
    assert np.all(np.asarray(packed["none"])[~packing.mask] == 0.0)


def per_row_ids(segment_ids):
    """The same segments numbered from 0 in every row (as T5 and MaxText
    pack), -1 at padding: ids repeat across rows."""
    out = np.full_like(segment_ids, -1)
    for row, ids in enumerate(np.asarray(segment_ids)):
        valid = ids >= 0
        _, first = np.unique(ids[valid], return_index=True)
        order = {ids[valid][i]: rank for rank, i in enumerate(sorted(first))}
        out[row, valid] = [order[i] for i in ids[valid]]
    return out


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_ids_numbered_per_row_give_the_same_reductions(case):
    """A sequence is a run of one id within a row: ids that start from 0 in
    every row (so that rows share them) give what ids unique over the batch
    give, and the NumPy reduction over the sequences. Before, rows sharing
    an id were averaged as one sequence."""
    items = sequences_for(case, seed=3)
    pads = pad_values(case)
    packing = pack(items, ROW_LEN, pad_value=pads)
    local = per_row_ids(packing.segment_ids)
    assert len(set(local[local >= 0].tolist())) < len(LENGTHS)  # ids repeat
    run = all_reductions(case.loss, tuple(sorted(case.options.items())))
    inputs = (packing.inputs["p"], packing.inputs["t"], packing.inputs["w"])
    got = run(*inputs, local)
    for reduction in ("mean", "sequence_mean"):
        expected = reference(case, items, reduction)
        np.testing.assert_allclose(got[reduction], expected, rtol=2e-5, atol=1e-6)


def test_segment_ids_alone_weigh_padding_zero():
    """Without weights, segment ids make padding absent (NaN there is fine)
    and sequence_mean averages the segments' means."""
    rng = np.random.default_rng(1)
    sequences = [rng.normal(size=(n, 2)).astype(np.float32) for n in (2, 3, 1)]
    packing = pack(
        [{"p": s, "t": np.zeros_like(s)} for s in sequences],
        4,
        pad_value=np.nan,
    )
    got = jax.jit(functools.partial(losses.squared_error, reduction="sequence_mean"))(
        packing.inputs["p"], packing.inputs["t"], segment_ids=packing.segment_ids
    )
    expected = np.mean([np.mean(s.astype(np.float64) ** 2) for s in sequences])
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_segment_ids_gradient_matches_one_sequence_a_row():
    case = next(c for c in CASES if c.name == "ce_integer")
    items = sequences_for(case, seed=2)
    pads = pad_values(case)
    packing = pack(items, ROW_LEN, pad_value=pads)
    rows, row_ids = one_per_row(items, pads)

    def grads(batch, ids):
        return jax.jit(
            jax.grad(
                lambda p: losses.softmax_cross_entropy_with_integer_labels(
                    p,
                    batch["t"],
                    batch["w"],
                    segment_ids=ids,
                    reduction="sequence_mean",
                )
            )
        )(batch["p"])

    packed = grads(packing.inputs, packing.segment_ids)
    separate = grads(rows, row_ids)
    assert np.all(np.isfinite(packed)) and np.all(
        np.asarray(packed)[~packing.mask] == 0
    )
    for index, got in enumerate(unpack(packed, packing)):
        np.testing.assert_allclose(
            got, separate[index, : LENGTHS[index]], rtol=1e-5, atol=1e-7
        )


def test_segment_ids_bad_inputs():
    x = np.zeros((2, 3, 4), np.float32)
    with pytest.raises(ValueError, match=r"segment_ids must have the batch and time"):
        losses.squared_error(x, x, segment_ids=np.zeros((2, 4), np.int32))
    with pytest.raises(TypeError, match="segment_ids must have an integer dtype"):
        losses.squared_error(x, x, segment_ids=np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"segment_ids must have the batch and time"):
        losses.squared_error(x[0, 0], x[0, 0], segment_ids=np.zeros((4,), np.int32))
