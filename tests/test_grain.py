"""The grain transformations give the batches of the plain iterators.

Run when grain is installed (``pip install seqmask[grain]``): the same
stream through :class:`BucketBatchIterDataset` / :class:`PackedBatchIterDataset`
and through :func:`bucket_batches` / :func:`packed_batches` (no shuffle, so
both fill in stream order), grain's own shuffle against the plain iterator
over grain's order, and a checkpoint restored mid-pass.
"""

import chex
import numpy as np
import pytest

from seqmask.data import bucket_batches, packed_batches

grain = pytest.importorskip("grain")
from seqmask.data import grain as seqmask_grain  # noqa: E402

RNG = np.random.default_rng(0)
DATA = [
    {"x": RNG.normal(size=(int(n), 2)).astype(np.float32), "y": np.arange(int(n))}
    for n in RNG.integers(0, 12, size=30)
]


def stream(data):
    return grain.MapDataset.source(data).to_iter_dataset()


@pytest.mark.parametrize("options", [{"batch_size": 3}, {"max_tokens": 24}])
def test_bucketing_matches_bucket_batches(options):
    boundaries = [4, 8, 12]
    got = list(
        seqmask_grain.BucketBatchIterDataset(
            stream(DATA), boundaries=boundaries, pad_value=-1, **options
        )
    )
    want = list(bucket_batches(DATA, boundaries=boundaries, pad_value=-1, **options))
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        chex.assert_trees_all_equal(a, b)


def test_packing_matches_packed_batches_after_grain_shuffle():
    shuffled = grain.MapDataset.source(DATA).shuffle(seed=3)
    order = [shuffled[i] for i in range(len(shuffled))]
    got = list(
        seqmask_grain.PackedBatchIterDataset(
            shuffled.to_iter_dataset(), batch_size=2, row_len=12
        )
    )
    want = list(packed_batches(order, batch_size=2, row_len=12))
    for a, b in zip(got, want, strict=True):
        chex.assert_trees_all_equal(a, b)


def test_checkpoint_restores_mid_pass():
    dataset = seqmask_grain.BucketBatchIterDataset(
        stream(DATA), boundaries=[6, 12], batch_size=4
    )
    first = iter(dataset)
    for _ in range(3):
        next(first)
    state = first.get_state()
    rest = list(first)
    again = iter(dataset)
    again.set_state(state)
    for a, b in zip(list(again), rest, strict=True):
        chex.assert_trees_all_equal(a, b)


def test_errors():
    with pytest.raises(ValueError, match="BucketBatchIterDataset: give batch_size"):
        seqmask_grain.BucketBatchIterDataset(stream(DATA), boundaries=[4])
    with pytest.raises(ValueError, match="longer than the largest boundary 4"):
        list(
            seqmask_grain.BucketBatchIterDataset(
                stream(DATA), boundaries=[4], batch_size=2
            )
        )
    with pytest.raises(ValueError, match="PackedBatchIterDataset: .*row_len=4"):
        list(
            seqmask_grain.PackedBatchIterDataset(stream(DATA), batch_size=2, row_len=4)
        )
