"""Packed rows through every layer give what each sequence gives alone.

Sequences are packed several to a row with :func:`seqmask.data.pack` and run
with ``resets`` through ``rnn``, ``bidirectional`` and ``stacked`` (uni- and
bidirectional layers); a per-token softmax cross-entropy over the outputs is
reduced with ``segment_ids``. The reference runs every sequence alone (one
unpadded row each, no resets) and reduces the per-token losses by hand,
written out here for each reduction. Outputs, the loss and the gradients of
every parameter must agree, including a learned initial state, which gets
gradient only from the sequences that start from it (an all-padding row
adds nothing).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import seqmask
from seqmask import cells, losses
from seqmask.data import pack, unpack

IN, H, ROW_LEN = 3, 4, 8
LENGTHS = [5, 1, 3, 0, 4, 2, 6, 3]
CELL = cells.learnable_initial_state(
    cells.lstm(H), carry_init=jax.nn.initializers.normal(1.0)
)
KINDS = ["rnn", "bidirectional", "stacked", "stacked bidirectional"]
REDUCTIONS = losses.REDUCTIONS


def _sequences(seed=0):
    rng = np.random.default_rng(seed)
    return [
        {
            "x": rng.normal(size=(n, IN)).astype(np.float32),
            "y": rng.integers(0, H, size=n).astype(np.int32),
            "w": rng.uniform(0.5, 2.0, size=n).astype(np.float32),
        }
        for n in LENGTHS
    ]


def _params(kind):
    key = jax.random.key(1)
    if kind == "rnn":
        return CELL.init(key, IN)
    if kind == "bidirectional":
        return seqmask.init_bidirectional(key, CELL, IN)
    return seqmask.init_stacked(
        key, CELL, IN, num_layers=2, bidirectional=kind.endswith("bidirectional")
    )


def _layer(kind, params, xs, **kw):
    """The outputs of layer ``kind`` (``ys`` only)."""
    if kind == "rnn":
        return seqmask.rnn(CELL, params, xs, **kw)[1]
    if kind == "bidirectional":
        return seqmask.bidirectional(CELL, params, xs, **kw)[1]
    bi = kind.endswith("bidirectional")
    return seqmask.stacked(CELL, params, xs, bidirectional=bi, **kw)[1]


def _packed_loss(kind, packing, reductions=REDUCTIONS):
    """Every reduction's loss over the packed rows, stacked, and the outputs."""

    def loss(params):
        ys = _layer(
            kind,
            params,
            packing.inputs["x"],
            mask=packing.mask,
            resets=packing.resets,
        )
        values = [
            losses.softmax_cross_entropy_with_integer_labels(
                ys,
                packing.inputs["y"],
                packing.inputs["w"],
                reduction=reduction,
                segment_ids=packing.segment_ids,
            )
            for reduction in reductions
        ]
        return jnp.stack([jnp.sum(value) for value in values]), ys

    return loss


def _alone_loss(kind, sequences):
    """The reductions by hand, over each sequence run alone."""

    def loss(params):
        per_sequence, outputs = [], []
        for item in sequences:
            if len(item["y"]) == 0:
                outputs.append(None)
                continue
            ys = _layer(kind, params, jnp.asarray(item["x"])[None])[0]
            outputs.append(ys)
            log_probs = jax.nn.log_softmax(ys)
            token = -jnp.take_along_axis(log_probs, item["y"][:, None], axis=1)[:, 0]
            per_sequence.append((token * item["w"], item["w"]))
        weighted = jnp.concatenate([wl for wl, _ in per_sequence])
        weights = np.concatenate([w for _, w in per_sequence])
        values = {
            "none": jnp.sum(weighted),  # summed, as _packed_loss does
            "sum": jnp.sum(weighted),
            "mean": jnp.sum(weighted) / weights.size,
            "weighted_mean": jnp.sum(weighted) / np.sum(weights),
            "sequence_mean": jnp.mean(
                jnp.stack([jnp.sum(wl) / np.sum(w) for wl, w in per_sequence])
            ),
        }
        return jnp.stack([values[reduction] for reduction in REDUCTIONS]), outputs

    return loss


@pytest.mark.parametrize("kind", KINDS)
def test_packed_rows_give_each_sequence_what_it_gives_alone(kind):
    """Outputs, every reduction's loss and its gradient (one row a reduction
    of the Jacobian)."""
    sequences = _sequences()
    # One row more than first fit needs: an all-padding row changes nothing.
    packing = pack(sequences, ROW_LEN, num_rows=5)
    assert not packing.mask[-1].any()
    params = _params(kind)
    values, ys = jax.jit(_packed_loss(kind, packing))(params)
    grads = jax.jit(jax.jacrev(lambda p: _packed_loss(kind, packing)(p)[0]))(params)
    alone = _alone_loss(kind, sequences)
    want_values, want_ys = jax.jit(alone)(params)
    want_grads = jax.jit(jax.jacrev(lambda p: alone(p)[0]))(params)
    for index, reduction in enumerate(REDUCTIONS):
        np.testing.assert_allclose(
            values[index], want_values[index], rtol=1e-5, err_msg=reduction
        )
        jax.tree.map(
            lambda a, b, i=index, r=reduction: np.testing.assert_allclose(
                a[i], b[i], rtol=1e-4, atol=1e-6, err_msg=r
            ),
            grads,
            want_grads,
        )
    for got, want in zip(unpack(ys, packing), want_ys, strict=True):
        if want is None:
            assert got.shape[0] == 0
        else:
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert np.all(np.asarray(ys)[~packing.mask] == 0.0)


def test_the_learned_state_gets_gradient_from_each_sequence_start():
    """The learned initial state's gradient is the sum over the sequences
    that start from it: packing two copies of one sequence doubles it, and
    rows of padding add nothing."""
    sequences = _sequences()[2:3]  # length 3: two fit in a row
    params = _params("bidirectional")

    def state_grad(items, num_rows):
        packing = pack(items, ROW_LEN, num_rows=num_rows)
        loss = _packed_loss("bidirectional", packing, ["sum"])
        grads = jax.grad(lambda p: loss(p)[0][0])(params)
        return {d: grads[d]["initial_carry"] for d in ("forward", "backward")}

    one = state_grad(sequences, 1)
    two = state_grad(sequences * 2, 3)  # both in one row, then two empty rows
    assert pack(sequences * 2, ROW_LEN).rows.tolist() == [0, 0]
    for direction in one:
        assert np.abs(np.asarray(jax.tree.leaves(one[direction])[0])).sum() > 0
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(2 * a, b, rtol=1e-5, atol=1e-6),
            one[direction],
            two[direction],
        )


def test_segment_ends_of_the_backward_direction():
    """The backward direction over a packed row equals a reverse rnn with
    resets at the last step before each sequence start."""
    packing = pack(_sequences(), ROW_LEN)
    params = _params("bidirectional")
    x, mask, resets = packing.inputs["x"], packing.mask, packing.resets
    _, (_, backward) = seqmask.bidirectional(
        CELL, params, x, mask=mask, resets=resets, merge="none"
    )
    ends = np.zeros_like(resets)
    ends[:, :-1] = resets[:, 1:]
    _, want = seqmask.rnn(
        CELL, params["backward"], x, mask=mask, resets=ends, reverse=True
    )
    np.testing.assert_allclose(backward, want, rtol=1e-6, atol=1e-7)
