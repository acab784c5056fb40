"""Decoding against NumPy loops and brute force over all sequences.

The model is hand-built: the logits depend on the previous token through a
fixed table and on the step count (held in the state, so freezing the state
of finished rows matters) through a second table. References are plain
Python over float64 log-probabilities, written from the docstrings: greedy
as a loop, beam search as the documented list algorithm (live hypotheses and
a pool of finished ones), the exhaustive ranking by enumerating every
sequence up to the maximum length, and sampling frequencies against the
renormalised distribution. Shapes are tiny and every jitted configuration is
compiled once.
"""

import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

from seqmask import decoding

V, EOS, PAD, MAX_LEN = 4, 1, 0, 4
_rng = np.random.default_rng(0)
TABLE = (1.5 * _rng.normal(size=(V, V))).astype(np.float32)
POSITION = (0.8 * _rng.normal(size=(MAX_LEN + 1, V))).astype(np.float32)
PARAMS = (jnp.asarray(TABLE), jnp.asarray(POSITION))
# Start tokens with a leading batch of shape (2, 3).
START = np.array([[0, 1, 2], [3, 2, 0]], np.int32)
# Forced prefixes of different lengths per row (one contains EOS).
PREFIX = np.array([[[2, 3], [1, 0], [3, 3]], [[0, 2], [2, 1], [1, 1]]], np.int32)
PREFIX_LENGTHS = np.array([[0, 1, 2], [2, 2, 1]], np.int32)
POSITIONS = jnp.arange(MAX_LEN).reshape((1, 1, MAX_LEN))


def step(params, state, token):
    table, position = params
    logits = table[token] + position[state["count"]]
    new_state = {
        "count": state["count"] + 1,
        "tokens_sum": state["tokens_sum"] + token.astype(jnp.float32)[..., None],
    }
    return new_state, logits


def initial_state(batch_shape):
    return {
        "count": jnp.zeros(batch_shape, jnp.int32),
        "tokens_sum": jnp.zeros((*batch_shape, 2), jnp.float32),
    }


def logits_at(previous, t, min_length=0):
    logits = TABLE[previous].astype(np.float64) + POSITION[t]
    if t + 1 < min_length:
        logits[EOS] = -np.inf
    return logits


def log_probs(previous, t, min_length=0):
    logits = logits_at(previous, t, min_length)
    top = logits.max()
    return logits - top - np.log(np.sum(np.exp(logits - top)))


def penalty(n, alpha):
    return ((5.0 + n) / 6.0) ** alpha


def reference_greedy(start, min_length=0, prefix=()):
    tokens, previous = [], start
    for t in range(MAX_LEN):
        if t < len(prefix):
            token = int(prefix[t])
        else:
            token = int(np.argmax(log_probs(previous, t, min_length)))
        tokens.append(token)
        if token == EOS and t >= len(prefix):
            break
        previous = token
    return tokens


def score_of(start, tokens, alpha, min_length, n_prefix):
    total, previous = 0.0, start
    for t, token in enumerate(tokens):
        if t >= n_prefix:
            total += log_probs(previous, t, min_length)[token]
        previous = token
    return total / penalty(len(tokens) - n_prefix, alpha)


def all_hypotheses(start, alpha, min_length=0, prefix=()):
    """Every output: the prefix, then tokens ended by EOS or MAX_LEN long."""
    prefix = [int(p) for p in prefix]
    room = MAX_LEN - len(prefix)
    if room == 0:
        return [(0.0, prefix)]
    others = [v for v in range(V) if v != EOS]
    found = []
    for n in range(1, room + 1):
        bodies = [list(b) + [EOS] for b in itertools.product(others, repeat=n - 1)]
        if n == room:
            bodies += [list(b) for b in itertools.product(others, repeat=n)]
        for body in bodies:
            tokens = prefix + body
            if body[-1] == EOS and len(tokens) < min_length:
                continue
            found.append(
                (score_of(start, tokens, alpha, min_length, len(prefix)), tokens)
            )
    return sorted(found, key=lambda x: -x[0])


def reference_beam(start, width, n, alpha, min_length=0, prefix=()):
    """The documented algorithm with lists, ties by (beam, token) order."""
    P = len(prefix)
    beams = [(0.0, [], False, 0)]  # (log-probability, tokens, finished, length)
    for t in range(MAX_LEN):
        candidates = []
        for i, (total, tokens, finished, length) in enumerate(beams):
            if finished:
                score = total / penalty(length - P, alpha)
                candidates.append((score, i * V, total, tokens + [PAD], True, length))
                continue
            if t < P:
                v = int(prefix[t])
                candidates.append((total, i * V + v, total, tokens + [v], False, t + 1))
                continue
            previous = tokens[-1] if tokens else start
            for v, lp in enumerate(log_probs(previous, t, min_length)):
                score = (total + lp) / penalty(t + 1 - P, alpha)
                candidate = (
                    score,
                    i * V + v,
                    total + lp,
                    tokens + [v],
                    v == EOS,
                    t + 1,
                )
                candidates.append(candidate)
        candidates = [c for c in candidates if c[2] > -np.inf]
        candidates.sort(key=lambda c: (-c[0], c[1]))
        beams = [c[2:] for c in candidates[:width]]
    return [
        (total / penalty(length - P, alpha), tokens[:length])
        for total, tokens, _, length in beams[:n]
    ]


def _padded(tokens):
    return list(tokens) + [PAD] * (MAX_LEN - len(tokens))


def _prefix_of(index):
    return PREFIX[index][: PREFIX_LENGTHS[index]]


# --------------------------------------------------------------------------
# Greedy


def _greedy(**options):
    return jax.jit(
        lambda params, start, min_length: decoding.greedy(
            step,
            params,
            initial_state(start.shape),
            start,
            max_length=MAX_LEN,
            eos_id=EOS,
            pad_id=PAD,
            min_length=min_length,
            **options,
        )
    )


GREEDY = _greedy()
GREEDY_LOGITS = _greedy(return_logits=True)
GREEDY_PREFIX = _greedy(prefix=PREFIX, prefix_lengths=PREFIX_LENGTHS)


@pytest.mark.parametrize("min_length", [0, 3])
def test_greedy_matches_loop_and_stops_at_eos(min_length):
    out = GREEDY(PARAMS, START, min_length)
    tokens, lengths = np.asarray(out.tokens), np.asarray(out.lengths)
    chex.assert_shape(tokens, (2, 3, MAX_LEN))
    stopped = 0
    for index in np.ndindex(START.shape):
        want = reference_greedy(int(START[index]), min_length)
        np.testing.assert_array_equal(tokens[index], _padded(want))
        assert lengths[index] == len(want) >= min_length or len(want) == MAX_LEN
        stopped += want[-1] == EOS and len(want) < MAX_LEN
        # The state froze after the last token: one step a token.
        assert out.state["count"][index] == len(want)
        np.testing.assert_array_equal(
            out.state["tokens_sum"][index], START[index] + sum(want[:-1])
        )
    assert stopped >= 2  # the table makes some rows end early


def test_greedy_log_probs_and_logits_are_the_chosen_tokens():
    min_length = 2
    out = GREEDY_LOGITS(PARAMS, START, min_length)
    for index in np.ndindex(START.shape):
        want = reference_greedy(int(START[index]), min_length)
        previous = int(START[index])
        for t in range(MAX_LEN):
            if t < len(want):
                logits = logits_at(previous, t, min_length)
                np.testing.assert_allclose(out.logits[index][t], logits, rtol=1e-5)
                lp = log_probs(previous, t, min_length)[want[t]]
                np.testing.assert_allclose(out.log_probs[index][t], lp, rtol=1e-5)
                previous = want[t]
            else:  # zero after the end
                assert out.log_probs[index][t] == 0
                assert np.all(np.asarray(out.logits[index][t]) == 0)
    # The same function of the returned logits.
    chosen = jnp.take_along_axis(
        jax.nn.log_softmax(out.logits, axis=-1), out.tokens[..., None], axis=-1
    )[..., 0]
    counted = POSITIONS < out.lengths[..., None]
    np.testing.assert_allclose(
        out.log_probs, jnp.where(counted, chosen, 0.0), rtol=1e-6, atol=1e-7
    )


def test_greedy_log_probs_are_differentiable():
    """d/dparams of sum(log_probs) is that of the teacher-forced likelihood."""
    out = GREEDY(PARAMS, START, 0)

    def forced(params):
        table, position = params
        previous = jnp.concatenate([START[..., None], out.tokens[..., :-1]], axis=-1)
        logits = table[previous] + position[:MAX_LEN][None, None]
        lp = jax.nn.log_softmax(logits, axis=-1)
        picked = jnp.take_along_axis(lp, out.tokens[..., None], axis=-1)[..., 0]
        counted = POSITIONS < out.lengths[..., None]
        return jnp.sum(jnp.where(counted, picked, 0.0))

    def decoded(params):
        return jnp.sum(GREEDY(params, START, 0).log_probs)

    np.testing.assert_allclose(decoded(PARAMS), forced(PARAMS), rtol=1e-5)
    for got, want in zip(
        jax.tree.leaves(jax.grad(decoded)(PARAMS)),
        jax.tree.leaves(jax.grad(forced)(PARAMS)),
        strict=True,
    ):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_greedy_reproduces_prefixes_exactly():
    out = GREEDY_PREFIX(PARAMS, START, 0)
    for index in np.ndindex(START.shape):
        prefix = _prefix_of(index)
        want = reference_greedy(int(START[index]), 0, prefix)
        np.testing.assert_array_equal(out.tokens[index], _padded(want))
        np.testing.assert_array_equal(out.tokens[index][: len(prefix)], prefix)
        assert out.lengths[index] == len(want)
        # No log-probability at forced positions.
        assert np.all(np.asarray(out.log_probs[index][: len(prefix)]) == 0)
    # Row (1, 1) forces EOS as its second token: it does not end the row.
    assert out.lengths[1, 1] > 2


# --------------------------------------------------------------------------
# Beam search


def _beam(width, num_decodes=None, **options):
    return jax.jit(
        lambda params, start, alpha, min_length: decoding.beam_search(
            step,
            params,
            initial_state(start.shape),
            start,
            beam_width=width,
            num_decodes=num_decodes,
            max_length=MAX_LEN,
            eos_id=EOS,
            pad_id=PAD,
            length_penalty=alpha,
            min_length=min_length,
            **options,
        )
    )


_ALL = 121  # every hypothesis up to MAX_LEN without a prefix
BEAM_ALL = _beam(_ALL)


@pytest.mark.parametrize("alpha, min_length", [(0.0, 0), (0.9, 3)])
def test_beam_search_with_all_hypotheses_is_brute_force(alpha, min_length):
    """A beam wide enough for every hypothesis returns the exact ranking."""
    out = BEAM_ALL(PARAMS, START[0], jnp.float32(alpha), min_length)
    for row, start in enumerate(START[0]):
        want = all_hypotheses(int(start), alpha, min_length)
        got = np.asarray(out.scores[row])
        np.testing.assert_allclose(got[: len(want)], [s for s, _ in want], rtol=2e-5)
        # Empty slots: pad tokens, length 0, no log-probabilities, and the
        # initial state (not one copied in from a live hypothesis).
        empty = slice(len(want), None)
        assert np.all(np.isneginf(got[empty]))
        np.testing.assert_array_equal(out.tokens[row, empty], PAD)
        np.testing.assert_array_equal(out.lengths[row, empty], 0)
        np.testing.assert_array_equal(out.log_probs[row, empty], 0.0)
        np.testing.assert_array_equal(out.state["count"][row, empty], 0)
        np.testing.assert_array_equal(out.state["tokens_sum"][row, empty], 0.0)
        for beam, (_, tokens) in enumerate(want):
            np.testing.assert_array_equal(out.tokens[row, beam], _padded(tokens))
            assert out.lengths[row, beam] == len(tokens)


NBEST_PREFIX = _beam(_ALL, 6, prefix=PREFIX, prefix_lengths=PREFIX_LENGTHS)


@pytest.mark.parametrize("alpha, min_length", [(0.0, 0), (0.7, 3)])
def test_n_best_with_prefixes_is_brute_force(alpha, min_length):
    """A beam that holds every hypothesis: its 6 best are the exact ones."""
    out = NBEST_PREFIX(PARAMS, START, jnp.float32(alpha), min_length)
    chex.assert_shape(out.tokens, (2, 3, 6, MAX_LEN))
    for index in np.ndindex(START.shape):
        prefix = _prefix_of(index)
        want = all_hypotheses(int(START[index]), alpha, min_length, prefix)[:6]
        scores = np.asarray(out.scores[index])
        np.testing.assert_allclose(scores[: len(want)], [s for s, _ in want], rtol=2e-5)
        for beam, (score, tokens) in enumerate(want):
            np.testing.assert_array_equal(out.tokens[index][beam], _padded(tokens))
            np.testing.assert_array_equal(
                out.tokens[index][beam][: len(prefix)], prefix
            )
            assert out.lengths[index][beam] == len(tokens)
            # The per-step log-probabilities add up to the score.
            total = np.sum(np.asarray(out.log_probs[index][beam], np.float64))
            generated = len(tokens) - len(prefix)
            np.testing.assert_allclose(
                total / penalty(generated, alpha), score, rtol=2e-5, atol=1e-6
            )


_LIST = {
    (2, 2): _beam(2, 2),
    (3, 2): _beam(3, 2, prefix=PREFIX, prefix_lengths=PREFIX_LENGTHS),
}


@pytest.mark.parametrize("width, n", [(2, 2), (3, 2)])
@pytest.mark.parametrize("alpha, min_length", [(0.0, 0), (0.9, 2)])
def test_beam_search_matches_list_reference(width, n, alpha, min_length):
    out = _LIST[width, n](PARAMS, START, jnp.float32(alpha), min_length)
    chex.assert_shape(out.tokens, (2, 3, n, MAX_LEN))
    for index in np.ndindex(START.shape):
        prefix = _prefix_of(index) if width == 3 else ()
        want = reference_beam(int(START[index]), width, n, alpha, min_length, prefix)
        scores = np.asarray(out.scores[index])
        assert np.all(np.diff(scores) <= 0)  # best first
        np.testing.assert_allclose(scores, [s for s, _ in want], rtol=2e-5)
        for beam, (_, tokens) in enumerate(want):
            np.testing.assert_array_equal(out.tokens[index][beam], _padded(tokens))
            assert out.lengths[index][beam] == len(tokens)
            # Each hypothesis's state froze at its own end.
            assert out.state["count"][index][beam] == len(tokens)


@pytest.mark.parametrize("decode", ["beam_search", "greedy"])
def test_an_empty_batch_decodes_to_empty_results(decode):
    """A batch of no rows is the first zero rows of any batch's result
    (beam search reshaped its beams with an inferred axis, which zero rows
    cannot give)."""
    options = dict(max_length=MAX_LEN, eos_id=EOS, pad_id=PAD)
    if decode == "beam_search":
        options.update(beam_width=3, num_decodes=2)
    run = getattr(decoding, decode)
    start = START[0]
    full = run(step, PARAMS, initial_state(start.shape), start, **options)
    empty = run(step, PARAMS, initial_state((0,)), start[:0], **options)
    chex.assert_trees_all_equal(empty, jax.tree.map(lambda x: x[:0], full))


def test_beam_width_one_is_greedy():
    greedy = GREEDY(PARAMS, START, 0)
    beam = _beam(1)(PARAMS, START, jnp.float32(0.0), 0)
    np.testing.assert_array_equal(beam.tokens[..., 0, :], greedy.tokens)
    np.testing.assert_array_equal(beam.lengths[..., 0], greedy.lengths)
    np.testing.assert_allclose(beam.scores[..., 0], greedy.log_probs.sum(-1), rtol=1e-5)
    np.testing.assert_allclose(beam.log_probs[..., 0, :], greedy.log_probs, rtol=1e-5)


def _random_model(seed, vocab=5, length=6):
    rng = np.random.default_rng(seed)
    table = jnp.asarray(2.0 * rng.normal(size=(vocab, vocab)), jnp.float32)
    position = jnp.asarray(rng.normal(size=(length + 1, vocab)), jnp.float32)
    return table, position


@pytest.mark.parametrize("seed", range(4))
def test_early_stopping_never_changes_the_result(seed):
    params = _random_model(seed)
    start = jnp.asarray(
        np.random.default_rng(seed).integers(0, 5, size=(3,)), jnp.int32
    )
    calls = []

    def counted(params, state, token):
        jax.debug.callback(lambda: calls.append(1))
        return step(params, state, token)

    results = {}
    for stopping in (True, False):
        calls.clear()
        results[stopping] = decoding.beam_search(
            counted,
            params,
            initial_state((3,)),
            start,
            beam_width=3,
            num_decodes=2,
            max_length=6,
            eos_id=EOS,
            length_penalty=0.6 * (seed % 2),
            early_stopping=stopping,
        )
        jax.effects_barrier()
        results[stopping, "calls"] = len(calls)
    for got, want in zip(
        jax.tree.leaves(results[True]), jax.tree.leaves(results[False]), strict=True
    ):
        np.testing.assert_array_equal(got, want)
    assert results[False, "calls"] == 6
    assert results[True, "calls"] <= 6


def test_early_stopping_skips_steps_when_it_can():
    # EOS is almost certain at once: the pool fills at the first step.
    table = jnp.full((V, V), -10.0).at[:, EOS].set(10.0)
    params = (table, jnp.zeros((MAX_LEN + 1, V)))
    calls = []

    def counted(params, state, token):
        jax.debug.callback(lambda: calls.append(1))
        return step(params, state, token)

    out = decoding.beam_search(
        counted,
        params,
        initial_state((2,)),
        jnp.array([0, 2]),
        beam_width=2,
        num_decodes=1,
        max_length=MAX_LEN,
        eos_id=EOS,
    )
    jax.effects_barrier()
    np.testing.assert_array_equal(out.tokens[:, 0], [[EOS, 0, 0, 0]] * 2)
    assert len(calls) < MAX_LEN


# --------------------------------------------------------------------------
# Sampling


def _sampler(top_k=None, **options):
    return jax.jit(
        lambda params, start, key, temperature, top_p, min_p: decoding.sample(
            step,
            params,
            initial_state(start.shape),
            start,
            key,
            max_length=MAX_LEN,
            eos_id=EOS,
            pad_id=PAD,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            min_p=min_p,
            **options,
        )
    )


_SAMPLE = {top_k: _sampler(top_k) for top_k in (None, 1, 2)}


def test_sample_at_zero_temperature_or_top_1_is_greedy():
    greedy = GREEDY(PARAMS, START, 0)
    key = jax.random.key(1)
    for out in (
        _SAMPLE[None](PARAMS, START, key, jnp.float32(0.0), 1.0, 0.0),
        _SAMPLE[1](PARAMS, START, key, jnp.float32(1.3), 1.0, 0.0),
    ):
        np.testing.assert_array_equal(out.tokens, greedy.tokens)
        np.testing.assert_array_equal(out.lengths, greedy.lengths)
        np.testing.assert_allclose(out.log_probs, greedy.log_probs, rtol=1e-6)


def test_sample_at_a_tiny_temperature_is_greedy():
    """At the smallest normal float32 temperature, dividing a low best
    log-probability (-5 here) by it overflows: the draw is still greedy's."""
    vocab = 200
    logits = jnp.zeros(vocab).at[150].set(0.5)

    def flat(params, state, token):
        return state, jnp.broadcast_to(params, (*token.shape, vocab))

    start = jnp.zeros(2, jnp.int32)
    for top_p in (None, 0.9):
        out = decoding.sample(
            *(flat, logits, jnp.zeros(2), start, jax.random.key(0)),
            max_length=1,
            eos_id=0,
            temperature=1.2e-38,
            top_p=top_p,
        )
        np.testing.assert_array_equal(out.tokens[:, 0], [150, 150])


def test_per_row_temperature():
    rows = 400
    start = np.full((rows,), 3, np.int32)
    temperature = np.where(np.arange(rows) % 2 == 0, 0.0, 5.0).astype(np.float32)
    out = _SAMPLE[None](PARAMS, start, jax.random.key(3), temperature, 1.0, 0.0)
    greedy = GREEDY(PARAMS, start, 0)
    np.testing.assert_array_equal(out.tokens[::2], greedy.tokens[::2])
    assert len(set(np.asarray(out.tokens[1::2, 0]).tolist())) == V


def _renormalised(temperature, top_k=None, top_p=None, min_p=None):
    """The documented sampling distribution of the first token after 3."""
    q = np.exp(log_probs(3, 0) / temperature)
    q /= q.sum()
    keep = np.ones(V, bool)
    order = np.argsort(-q, kind="stable")
    if top_k is not None:
        keep &= np.isin(np.arange(V), order[:top_k])
    if top_p is not None:
        before = np.cumsum(q[order]) - q[order]
        keep &= np.isin(np.arange(V), order[before < top_p])
    if min_p is not None:
        keep &= q >= min_p * q.max()
    want = np.where(keep, q, 0.0)
    return want / want.sum()


@pytest.mark.parametrize(
    "top_k, top_p, min_p",
    [
        (None, 1.0, 0.0),
        (2, 1.0, 0.0),
        (None, 0.7, 0.0),
        (None, 1.0, 0.3),
        (2, 0.9, 0.1),
    ],
)
def test_sample_frequencies_match_the_renormalised_distribution(top_k, top_p, min_p):
    rows, temperature = 4000, 0.7
    start = np.full((rows,), 3, np.int32)
    sampler = _SAMPLE[top_k]
    out = sampler(PARAMS, start, jax.random.key(2), temperature, top_p, min_p)
    want = _renormalised(temperature, top_k, top_p, min_p)
    assert np.sum(want > 0) >= 2  # the test is not degenerate
    freq = np.bincount(np.asarray(out.tokens[:, 0]), minlength=V) / rows
    assert np.all(freq[want == 0] == 0)  # a cut token never appears
    tolerance = 4 * np.sqrt(want * (1 - want) / rows) + 1e-9
    assert np.all(np.abs(freq - want) <= tolerance), (freq, want)
    # EOS handling: lengths, padding and the frozen state.
    tokens, lengths = np.asarray(out.tokens), np.asarray(out.lengths)
    counts = np.asarray(out.state["count"])
    for row in range(0, rows, 37):
        seq = list(tokens[row])
        length = seq.index(EOS) + 1 if EOS in seq else MAX_LEN
        assert lengths[row] == length == counts[row]
        assert all(t == PAD for t in seq[length:])


def test_sample_reproduces_prefixes_and_reports_log_probs():
    sampler = _sampler(prefix=PREFIX, prefix_lengths=PREFIX_LENGTHS, return_logits=True)
    out = sampler(PARAMS, START, jax.random.key(4), 1.0, 1.0, 0.0)
    for index in np.ndindex(START.shape):
        prefix = _prefix_of(index)
        np.testing.assert_array_equal(out.tokens[index][: len(prefix)], prefix)
    picked = jnp.take_along_axis(
        jax.nn.log_softmax(out.logits, axis=-1), out.tokens[..., None], axis=-1
    )[..., 0]
    generated = (POSITIONS >= PREFIX_LENGTHS[..., None]) & (
        POSITIONS < out.lengths[..., None]
    )
    np.testing.assert_allclose(
        out.log_probs, jnp.where(generated, picked, 0.0), rtol=1e-6, atol=1e-7
    )


# --------------------------------------------------------------------------
# logits_fn and repetition_penalty


def _ban(token):
    def hook(step, logits, state, tokens):
        return logits.at[..., token].set(-jnp.inf)

    return hook


def test_a_banned_token_is_never_emitted():
    ban = _ban(2)
    start = jnp.full((64,), 3, jnp.int32)
    state = initial_state((64,))
    options = dict(max_length=MAX_LEN, eos_id=EOS, logits_fn=ban)
    outs = [
        decoding.greedy(step, PARAMS, state, start, **options).tokens,
        decoding.sample(
            step, PARAMS, state, start, jax.random.key(0), **options
        ).tokens,
        decoding.beam_search(
            step, PARAMS, state, start, beam_width=3, **options
        ).tokens,
    ]
    for tokens in outs:
        assert not np.any(np.asarray(tokens) == 2)
    # Without the ban the token is common.
    free = decoding.sample(
        step, PARAMS, state, start, jax.random.key(0), max_length=MAX_LEN, eos_id=EOS
    )
    assert np.any(np.asarray(free.tokens) == 2)


@pytest.mark.parametrize("wide", [False, True], ids=["x32", "x64"])
def test_repetition_penalty_against_numpy(wide, request):
    """Also under x64 with strict dtype promotion, where the positions
    (int64 by default) met the int32 step."""
    if wide:
        request.getfixturevalue("x64")
    theta = 1.7
    hook = decoding.repetition_penalty(theta)
    assert hook == decoding.repetition_penalty(theta)  # no recompilation
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(3, 2, V)).astype(np.float32)
    tokens = rng.integers(0, V, size=(3, 2, MAX_LEN)).astype(np.int32)
    got = hook(jnp.int32(2), jnp.asarray(logits), None, jnp.asarray(tokens))
    want = logits.copy()
    for index in np.ndindex(3, 2):
        for token in set(tokens[index][:2].tolist()):
            value = want[index][token]
            want[index][token] = value / theta if value > 0 else value * theta
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_repetition_penalty_counts_only_ids_of_the_vocabulary():
    """A pad_id outside the vocabulary (after EOS in a finished row) is no
    token: it penalises nothing (not the id it would wrap to) and is no
    out-of-bounds index under checkify."""
    theta = 2.0
    hook = decoding.repetition_penalty(theta)
    rng = np.random.default_rng(7)
    logits = rng.normal(size=(4, V)).astype(np.float32)
    tokens = rng.integers(0, V, size=(4, MAX_LEN)).astype(np.int32)
    tokens[:, 1:] = np.where(rng.random((4, MAX_LEN - 1)) < 0.5, -1, tokens[:, 1:])
    tokens[0, :3] = [1, -1, V]  # V is out of range too
    step_ = jnp.int32(3)
    checked = checkify.checkify(hook, errors=checkify.index_checks)
    error, got = checked(step_, jnp.asarray(logits), None, jnp.asarray(tokens))
    assert error.get() is None
    want = logits.copy()
    for row in range(4):
        for token in set(tokens[row, :3].tolist()) & set(range(V)):
            value = want[row, token]
            want[row, token] = value / theta if value > 0 else value * theta
    np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16])
def test_repetition_penalty_with_narrow_tokens_of_a_full_width_vocabulary(dtype):
    """Tokens whose dtype holds exactly the vocabulary (uint8 ids of 256
    tokens) penalise what int32 tokens do: the vocabulary size wrapped to 0
    in their dtype, and nothing was penalised (int8 raised)."""
    vocab = int(np.iinfo(dtype).max) + 1
    hook = decoding.repetition_penalty(2.0)
    rng = np.random.default_rng(9)
    logits = rng.normal(size=(2, vocab)).astype(np.float32)
    tokens = np.array([[1, vocab - 1, 3, 0], [vocab - 1, 2, 5, 7]])
    want = hook(jnp.int32(3), jnp.asarray(logits), None, jnp.asarray(tokens, jnp.int32))
    got = hook(jnp.int32(3), jnp.asarray(logits), None, jnp.asarray(tokens, dtype))
    np.testing.assert_array_equal(got, want)
    assert np.sum(np.asarray(want) != logits) == 6  # three ids a row penalised


def test_greedy_with_repetition_penalty_matches_loop():
    # A model that likes to repeat its previous token.
    rng = np.random.default_rng(6)
    table = (3.0 * np.eye(V) + rng.uniform(0.5, 1.0, size=(V, V))).astype(np.float32)
    table[:, EOS] -= 2.0
    position = np.zeros((MAX_LEN + 1, V), np.float32)
    params = (jnp.asarray(table), jnp.asarray(position))
    theta = 4.0
    decoded = {}
    for hook in (None, decoding.repetition_penalty(theta)):
        decoded[hook is None] = decoding.greedy(
            step,
            params,
            initial_state(START.shape),
            START,
            max_length=MAX_LEN,
            eos_id=EOS,
            logits_fn=hook,
        )
    for index in np.ndindex(START.shape):
        tokens, previous = [], int(START[index])
        for _ in range(MAX_LEN):
            logits = table[previous].astype(np.float64)
            for seen in set(tokens):
                value = logits[seen]
                logits[seen] = value / theta if value > 0 else value * theta
            token = int(np.argmax(logits))
            tokens.append(token)
            if token == EOS:
                break
            previous = token
        np.testing.assert_array_equal(decoded[False].tokens[index], _padded(tokens))
    # The penalty mattered.
    assert np.any(np.asarray(decoded[True].tokens != decoded[False].tokens))


# --------------------------------------------------------------------------
# NaN logits


def nan_step(params, state, token):
    """``step``, with NaN logits at the third step of the flagged rows."""
    inner = {k: v for k, v in state.items() if k != "broken"}
    new_state, logits = step(params, inner, token)
    bad = state["broken"] & (state["count"] == 2)
    logits = jnp.where(bad[..., None], jnp.nan, logits)
    return {**new_state, "broken": state["broken"]}, logits


def _nan_state():
    return {**initial_state((2, 3)), "broken": jnp.asarray(START < 2)}


def test_nan_logits_end_the_row_without_checkify():
    out = decoding.greedy(
        nan_step, PARAMS, _nan_state(), START, max_length=MAX_LEN, eos_id=EOS
    )
    for index in np.ndindex(START.shape):
        want = reference_greedy(int(START[index]))
        if START[index] < 2:
            want = want[:2]  # ended before its third token, without EOS
            assert out.state["count"][index] == 2
        np.testing.assert_array_equal(out.tokens[index], _padded(want))
        assert out.lengths[index] == len(want)
        assert np.all(np.isfinite(np.asarray(out.log_probs[index])))


def test_nan_logits_drop_the_beam_hypotheses():
    out = decoding.beam_search(
        nan_step,
        PARAMS,
        _nan_state(),
        START,
        beam_width=3,
        max_length=MAX_LEN,
        eos_id=EOS,
    )
    for index in np.ndindex(START.shape):
        lengths = np.asarray(out.lengths[index])
        finite = np.isfinite(np.asarray(out.scores[index]))
        if START[index] < 2:  # only hypotheses that ended within 2 tokens
            assert np.all(lengths[finite] <= 2)
        assert np.all(np.asarray(out.tokens[index])[~finite] == PAD)


@pytest.mark.parametrize("which", ["greedy", "sample", "beam_search"])
def test_nan_logits_are_reported_under_checkify(which):
    def run(params):
        state, start = _nan_state(), jnp.asarray(START)
        options = dict(max_length=MAX_LEN, eos_id=EOS)
        if which == "greedy":
            return decoding.greedy(nan_step, params, state, start, **options)
        if which == "sample":
            key = jax.random.key(0)
            return decoding.sample(nan_step, params, state, start, key, **options)
        return decoding.beam_search(
            nan_step, params, state, start, beam_width=2, **options
        )

    error, _ = checkify.checkify(jax.jit(run))(PARAMS)
    message = error.get()
    assert message is not None and which in message and "NaN" in message
    # Healthy logits report nothing.
    healthy = {**_nan_state(), "broken": jnp.zeros(START.shape, bool)}
    error, _ = checkify.checkify(
        lambda p: decoding.greedy(
            nan_step, p, healthy, jnp.asarray(START), max_length=MAX_LEN, eos_id=EOS
        )
    )(PARAMS)
    assert error.get() is None


def test_errors_name_the_argument():
    state = initial_state((2, 3))
    with pytest.raises(ValueError, match=r"state\['count'\] has shape \(2, 3\)"):
        decoding.greedy(step, PARAMS, state, START[0], max_length=3, eos_id=EOS)

    def bad_step(params, state, token):
        new_state, logits = step(params, state, token)
        return {**new_state, "count": new_state["count"].astype(jnp.float32)}, logits

    with pytest.raises(TypeError, match=r"step_fn's new state\['count'\]"):
        decoding.greedy(bad_step, PARAMS, state, START, max_length=3, eos_id=EOS)
