"""Sequence metrics against a plain-Python dynamic programme and peers.

The reference edit distance is the textbook table, filled cell by cell in
Python; the padded JAX path (with garbage in the padding), the masked path
and the ragged host path must all agree with it on random cases
(hypothesis), and with the closed forms (distance to the empty sequence,
symmetry, the triangle inequality). Word and character error rates are
compared with ``jiwer`` and the distance with ``editdistance`` when those
are installed (they are not dependencies).
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqmask import metrics

ROWS, WIDTH, VOCAB = 6, 8, 4


def reference_distance(a, b):
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        table[i][0] = i
    for j in range(len(b) + 1):
        table[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            table[i][j] = min(
                table[i - 1][j] + 1,
                table[i][j - 1] + 1,
                table[i - 1][j - 1] + (a[i - 1] != b[j - 1]),
            )
    return table[len(a)][len(b)]


def pad(sequences, width=WIDTH, seed=0):
    """Right-padded ids with random garbage in the padding, and lengths."""
    rng = np.random.default_rng(seed)
    out = rng.integers(0, VOCAB, size=(len(sequences), width)).astype(np.int32)
    for row, sequence in enumerate(sequences):
        out[row, : len(sequence)] = sequence
    return out, np.array([len(s) for s in sequences], np.int32)


sequence = st.lists(st.integers(0, VOCAB - 1), max_size=WIDTH)
pairs = st.lists(st.tuples(sequence, sequence), min_size=ROWS, max_size=ROWS)

DISTANCE = jax.jit(
    lambda h, hl, r, rl: metrics.edit_distance(
        h, r, hypothesis_lengths=hl, reference_lengths=rl
    )
)


@settings(max_examples=40, deadline=None)
@given(pairs, st.integers(0, 2**16))
def test_edit_distance_is_the_dynamic_programme(examples, seed):
    hypotheses = [h for h, _ in examples]
    references = [r for _, r in examples]
    want = [reference_distance(h, r) for h, r in examples]
    h, hl = pad(hypotheses, seed=seed)
    r, rl = pad(references, seed=seed + 1)
    np.testing.assert_array_equal(DISTANCE(h, hl, r, rl), want)
    np.testing.assert_array_equal(metrics.edit_distance(hypotheses, references), want)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(sequence, sequence, sequence), min_size=ROWS, max_size=ROWS))
def test_edit_distance_closed_forms(triples):
    a, b, c = (pad([t[k] for t in triples], seed=k) for k in range(3))
    d_ab, d_ba = DISTANCE(*a, *b), DISTANCE(*b, *a)
    np.testing.assert_array_equal(d_ab, d_ba)  # symmetric
    assert np.all(d_ab <= DISTANCE(*a, *c) + DISTANCE(*c, *b))  # triangle
    empty = (np.zeros_like(a[0]), np.zeros_like(a[1]))
    np.testing.assert_array_equal(DISTANCE(*a, *empty), a[1])  # to empty: length
    np.testing.assert_array_equal(DISTANCE(*a, *a), 0)
    assert np.all(d_ab >= np.abs(a[1] - b[1]))
    assert np.all(d_ab <= np.maximum(a[1], b[1]))


def test_masks_with_holes_are_the_valid_tokens_in_order():
    rng = np.random.default_rng(1)
    h = rng.integers(0, VOCAB, size=(ROWS, WIDTH)).astype(np.int32)
    r = rng.integers(0, VOCAB, size=(ROWS, WIDTH - 2)).astype(np.int32)
    h_mask = rng.random((ROWS, WIDTH)) < 0.6
    r_mask = rng.random((ROWS, WIDTH - 2)) < 0.6
    got = metrics.edit_distance(h, r, hypothesis_mask=h_mask, reference_mask=r_mask)
    want = [
        reference_distance(list(h[i][h_mask[i]]), list(r[i][r_mask[i]]))
        for i in range(ROWS)
    ]
    np.testing.assert_array_equal(got, want)


def test_batch_axes_and_multiple_references():
    rng = np.random.default_rng(2)
    h = rng.integers(0, VOCAB, size=(2, 3, WIDTH)).astype(np.int32)
    hl = rng.integers(0, WIDTH + 1, size=(2, 3)).astype(np.int32)
    r = rng.integers(0, VOCAB, size=(2, 3, 2, 5)).astype(np.int32)
    rl = rng.integers(0, 6, size=(2, 3, 2)).astype(np.int32)
    r[0, 0, 1], rl[0, 0, 1] = h[0, 0, :5], min(hl[0, 0], 5)  # one exact match
    hl[0, 0] = rl[0, 0, 1]
    options = dict(
        hypothesis_lengths=hl, reference_lengths=rl, multiple_references=True
    )
    distances = metrics.edit_distance(h, r, **options)
    chex.assert_shape(distances, (2, 3, 2))
    edits = tokens = 0
    matches = np.zeros((2, 3), bool)
    for index in np.ndindex(2, 3):
        hyp = list(h[index][: hl[index]])
        refs = [list(r[index][k][: rl[index][k]]) for k in range(2)]
        want = [reference_distance(hyp, ref) for ref in refs]
        np.testing.assert_array_equal(distances[index], want)
        best = int(np.argmin(want))
        edits, tokens = edits + want[best], tokens + len(refs[best])
        matches[index] = any(hyp == ref for ref in refs)
    rate = metrics.token_error_rate(h, r, **options)
    np.testing.assert_allclose(rate, edits / tokens, rtol=1e-6)
    np.testing.assert_array_equal(metrics.exact_match(h, r, **options), matches)
    assert matches[0, 0]
    # The ragged host path gives the same.
    hyps = [list(h[i][: hl[i]]) for i in np.ndindex(2, 3)]
    refs = [[list(r[i][k][: rl[i][k]]) for k in range(2)] for i in np.ndindex(2, 3)]
    host = metrics.token_error_rate(hyps, refs, multiple_references=True)
    np.testing.assert_allclose(host, edits / tokens, rtol=1e-6)
    np.testing.assert_array_equal(
        metrics.exact_match(hyps, refs, multiple_references=True), matches.reshape(-1)
    )


def test_rows_with_fewer_references_padded_with_copies():
    # Ragged rows hold 1 to 3 references; padded, each spare slot repeats the
    # row's first reference (as documented) and every result is the ragged one.
    rng = np.random.default_rng(3)
    hyps = [list(rng.integers(0, VOCAB, rng.integers(0, 6))) for _ in range(ROWS)]
    refs = [
        [list(rng.integers(0, VOCAB, rng.integers(1, 6))) for _ in range(count)]
        for count in rng.integers(1, 4, ROWS)
    ]
    refs[0].append(list(hyps[0]))  # one exact match, in a row's last slot
    slots = max(len(alternatives) for alternatives in refs)
    h, hl = pad(hyps)
    r = np.zeros((ROWS, slots, WIDTH), np.int32)
    rl = np.zeros((ROWS, slots), np.int32)
    for row, alternatives in enumerate(refs):
        for slot in range(slots):
            ref = alternatives[slot] if slot < len(alternatives) else alternatives[0]
            r[row, slot, : len(ref)], rl[row, slot] = ref, len(ref)
    options = dict(
        hypothesis_lengths=hl, reference_lengths=rl, multiple_references=True
    )
    host = dict(multiple_references=True)
    np.testing.assert_allclose(
        metrics.token_error_rate(h, r, **options),
        metrics.token_error_rate(hyps, refs, **host),
        rtol=1e-6,
    )
    match = metrics.exact_match(h, r, **options)
    np.testing.assert_array_equal(match, metrics.exact_match(hyps, refs, **host))
    assert match[0]
    for row, alternatives in enumerate(refs):
        best = min(reference_distance(hyps[row], ref) for ref in alternatives)
        assert int(np.min(metrics.edit_distance(h, r, **options)[row])) == best
    # A slot of length 0 is an empty reference: the empty hypothesis matches it.
    empty = metrics.exact_match(
        np.zeros((1, 3), np.int32),
        np.ones((1, 2, 3), np.int32),
        hypothesis_lengths=np.array([0]),
        reference_lengths=np.array([[2, 0]]),
        multiple_references=True,
    )
    np.testing.assert_array_equal(empty, [True])


def test_token_error_rate_under_jit_and_its_edge_cases():
    h, hl = pad([[1, 2, 3], [0], []])
    r, rl = pad([[1, 3], [0, 1, 2], [2]])
    rate = jax.jit(
        lambda h, hl, r, rl: metrics.token_error_rate(
            h, r, hypothesis_lengths=hl, reference_lengths=rl
        )
    )(h, hl, r, rl)
    np.testing.assert_allclose(rate, (1 + 2 + 1) / (2 + 3 + 1), rtol=1e-6)
    assert metrics.token_error_rate([[]], [[]]) == 0.0
    assert metrics.token_error_rate([[1]], [[]]) == float("inf")
    zero = np.zeros((1, 3), np.int32)
    lengths = np.zeros((1,), np.int32)
    options = dict(hypothesis_lengths=lengths, reference_lengths=lengths)
    assert float(metrics.token_error_rate(zero, zero, **options)) == 0.0


def test_padded_arrays_of_width_zero_are_empty_sequences():
    """A decoder that emits nothing gives ``[B, 0]``: the padded form of
    width 0 equals the ragged form of empty sequences, either side."""
    h, hl = pad([[1, 2], [3]])
    empty = np.zeros((2, 0), np.int32)
    distance = metrics.edit_distance(h, empty, hypothesis_lengths=hl)
    np.testing.assert_array_equal(
        distance, metrics.edit_distance([[1, 2], [3]], [[], []])
    )
    np.testing.assert_array_equal(distance, [2, 1])
    swapped = metrics.edit_distance(empty, h, reference_lengths=hl)
    np.testing.assert_array_equal(swapped, [2, 1])
    assert metrics.token_error_rate(h, empty, hypothesis_lengths=hl) == float("inf")
    assert metrics.token_error_rate(empty, h, reference_lengths=hl) == 1.0
    several = metrics.edit_distance(
        h,
        np.zeros((2, 2, 0), np.int32),
        hypothesis_lengths=hl,
        multiple_references=True,
    )
    np.testing.assert_array_equal(several, [[2, 2], [1, 1]])


def test_token_accuracy_against_a_loop():
    rng = np.random.default_rng(3)
    predictions = rng.integers(0, 3, size=(4, 5)).astype(np.int32)
    targets = rng.integers(0, 3, size=(4, 5)).astype(np.int32)
    lengths = np.array([5, 0, 2, 3], np.int32)
    right = sum(
        predictions[b, t] == targets[b, t] for b in range(4) for t in range(lengths[b])
    )
    want = right / lengths.sum()
    got = metrics.token_accuracy(predictions, targets, lengths=lengths)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    mask = np.arange(5)[None, :] < lengths[:, None]
    np.testing.assert_allclose(
        metrics.token_accuracy(predictions, targets, mask=mask), want, rtol=1e-6
    )
    np.testing.assert_allclose(
        metrics.token_accuracy(predictions, targets),
        np.mean(predictions == targets),
        rtol=1e-6,
    )
    assert float(metrics.token_accuracy(predictions, targets, mask=mask & False)) == 0


def test_word_and_character_error_rates():
    hypotheses = ["the cat sat on mat", "hello world"]
    references = ["the cat sat on the mat", "hello there world"]
    edits = reference_distance(hypotheses[0].split(), references[0].split())
    edits += reference_distance(hypotheses[1].split(), references[1].split())
    assert metrics.word_error_rate(hypotheses, references) == edits / (6 + 3)
    as_words = [h.split() for h in hypotheses]
    assert metrics.word_error_rate(as_words, references) == edits / 9
    chars = sum(
        reference_distance(h, r) for h, r in zip(hypotheses, references, strict=True)
    )
    want = chars / sum(len(r) for r in references)
    assert metrics.character_error_rate(hypotheses, references) == want
    # Several references: the closest counts, with its own length.
    several = [[references[0], "the cat sat on mat"], [references[1]]]
    rate = metrics.word_error_rate(hypotheses, several, multiple_references=True)
    assert rate == 1 / (5 + 3)


words = st.lists(st.sampled_from(["a", "b", "cd", "e"]), min_size=1, max_size=6)
sentences = words.map(" ".join)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(sentences, sentences), min_size=1, max_size=4))
def test_error_rates_match_jiwer(examples):
    jiwer = pytest.importorskip("jiwer")
    hypotheses = [h for h, _ in examples]
    references = [r for _, r in examples]
    np.testing.assert_allclose(
        metrics.word_error_rate(hypotheses, references),
        jiwer.wer(references, hypotheses),
        rtol=1e-12,
    )
    np.testing.assert_allclose(
        metrics.character_error_rate(hypotheses, references),
        jiwer.cer(references, hypotheses),
        rtol=1e-12,
    )


@settings(max_examples=30, deadline=None)
@given(pairs)
def test_edit_distance_matches_editdistance(examples):
    editdistance = pytest.importorskip("editdistance")
    hypotheses = [h for h, _ in examples]
    references = [r for _, r in examples]
    want = [editdistance.eval(h, r) for h, r in examples]
    np.testing.assert_array_equal(metrics.edit_distance(hypotheses, references), want)
    h, hl = pad(hypotheses)
    r, rl = pad(references)
    np.testing.assert_array_equal(DISTANCE(h, hl, r, rl), want)


def test_jax_path_is_vmappable_and_traced_lengths_work():
    h, hl = pad([[1, 2, 3], [2, 2]])
    r, rl = pad([[1, 3], [2]])
    batched = jax.vmap(
        lambda h, hl, r, rl: metrics.edit_distance(
            h[None], r[None], hypothesis_lengths=hl[None], reference_lengths=rl[None]
        )[0]
    )(jnp.asarray(h), jnp.asarray(hl), jnp.asarray(r), jnp.asarray(rl))
    np.testing.assert_array_equal(batched, [1, 1])


def test_ids_above_2_to_the_53_never_collide(x64):
    """uint64 against int64 ids promote to float64 in NumPy, where 2**60 + 1
    equals 2**60: the metrics must refuse the pair, and compare one wide
    dtype exactly."""
    h = np.array([[2**60 + 1, 5]], np.uint64)
    r = np.array([[2**60, 5]], np.int64)
    for call in (
        lambda: metrics.edit_distance(h, r),
        lambda: metrics.exact_match(h, r),
        lambda: metrics.token_accuracy(h, r),
    ):
        with pytest.raises(TypeError, match="no common integer dtype"):
            call()
    same = h.astype(np.int64)
    np.testing.assert_array_equal(metrics.edit_distance(same, r), [1])
    np.testing.assert_array_equal(metrics.exact_match(same, r), [False])
    np.testing.assert_allclose(metrics.token_error_rate(same, r), 0.5)
    # Lengths and masks under x64 with strict promotion (int64 positions
    # met int32 lengths).
    lengths = np.array([1])
    np.testing.assert_array_equal(
        metrics.exact_match(
            same, r, hypothesis_lengths=lengths, reference_lengths=lengths
        ),
        [False],
    )
    np.testing.assert_allclose(
        metrics.token_accuracy(same, r, lengths=np.array([2])), 0.5
    )


def test_ragged_sequences_may_be_jax_arrays():
    """Decoder rows trimmed to their lengths (1-D JAX arrays) are sequences,
    as 1-D NumPy arrays are (they raised a TypeError); traced ones say to
    pass padded arrays."""
    rng = np.random.default_rng(13)
    hyps = [rng.integers(0, 4, n) for n in (3, 0, 5)]
    refs = [rng.integers(0, 4, n) for n in (2, 4, 5)]
    pairs = zip(hyps, refs, strict=True)
    want = [reference_distance(h.tolist(), r.tolist()) for h, r in pairs]
    got = metrics.edit_distance(
        [jnp.asarray(h) for h in hyps], [jnp.asarray(r) for r in refs]
    )
    np.testing.assert_array_equal(got, want)
    with pytest.raises(TypeError, match=r"hypotheses\[0\] is traced.*padded arrays"):
        jax.jit(lambda h: metrics.edit_distance([h], [[1]]))(jnp.asarray([1, 2]))
