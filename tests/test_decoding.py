"""Decoding against NumPy loops and brute force over all sequences.

The model is hand-built: the logits depend on the previous token through a
fixed table and on the step count (held in the state, so freezing the state
of finished rows matters) through a second table. References are plain
Python over float64 log-probabilities, written from the docstrings: greedy
as a loop, beam search as a list-based loop, and the exhaustive ranking by
enumerating every sequence up to the maximum length. Shapes are tiny and
every jitted configuration is compiled once.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqmask import decoding

V, EOS, PAD, MAX_LEN = 4, 1, 0, 4
_rng = np.random.default_rng(0)
TABLE = (1.5 * _rng.normal(size=(V, V))).astype(np.float32)
POSITION = (0.8 * _rng.normal(size=(MAX_LEN + 1, V))).astype(np.float32)
PARAMS = (jnp.asarray(TABLE), jnp.asarray(POSITION))
# Start tokens with a leading batch of shape (2, 3).
START = np.array([[0, 1, 2], [3, 2, 0]], np.int32)


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


def log_probs(previous, t):
    logits = TABLE[previous].astype(np.float64) + POSITION[t]
    return logits - np.log(np.sum(np.exp(logits - logits.max()))) - logits.max()


def penalty(n, alpha):
    return ((5.0 + n) / 6.0) ** alpha


def reference_greedy(start):
    tokens, previous = [], start
    for t in range(MAX_LEN):
        token = int(np.argmax(log_probs(previous, t)))
        tokens.append(token)
        if token == EOS:
            break
        previous = token
    return tokens


def all_hypotheses(start, alpha):
    """Every sequence up to MAX_LEN: ended by EOS, or MAX_LEN tokens without."""
    found = []
    for n in range(1, MAX_LEN + 1):
        for body in itertools.product([v for v in range(V) if v != EOS], repeat=n):
            for tokens in ([*body[:-1], EOS], list(body)) if n >= 1 else ():
                if tokens[-1] != EOS and n < MAX_LEN:
                    continue
                total, previous = 0.0, start
                for t, token in enumerate(tokens):
                    total += log_probs(previous, t)[token]
                    previous = token
                found.append((total / penalty(len(tokens), alpha), tokens))
    unique = {tuple(tokens): score for score, tokens in found}
    return sorted(((s, list(t)) for t, s in unique.items()), key=lambda x: -x[0])


def reference_beam(start, width, alpha):
    """The documented algorithm with lists: ``(score, index)`` ordering."""
    beams = [(0.0, [], False)]  # (log-probability, tokens, finished)
    for t in range(MAX_LEN):
        candidates = []
        for i, (total, tokens, finished) in enumerate(beams):
            if finished:
                score = total / penalty(len(tokens) - tokens.count(PAD), alpha)
                candidates.append((score, i * V, total, tokens + [PAD], True))
                continue
            previous = tokens[-1] if tokens else start
            for v, lp in enumerate(log_probs(previous, t)):
                score = (total + lp) / penalty(t + 1, alpha)
                candidates.append(
                    (score, i * V + v, total + lp, tokens + [v], v == EOS)
                )
        candidates.sort(key=lambda c: (-c[0], c[1]))
        beams = [(c[2], c[3], c[4]) for c in candidates[:width]]
    return [
        (total / penalty(_length(tokens), alpha), tokens) for total, tokens, _ in beams
    ]


def _length(tokens):
    return tokens.index(EOS) + 1 if EOS in tokens else len(tokens)


def _padded(tokens):
    return tokens + [PAD] * (MAX_LEN - len(tokens))


GREEDY = jax.jit(
    lambda params, start: decoding.greedy(
        step,
        params,
        initial_state(start.shape),
        start,
        max_length=MAX_LEN,
        eos_id=EOS,
        pad_id=PAD,
    )
)


def test_greedy_matches_loop_and_stops_at_eos():
    out = GREEDY(PARAMS, START)
    tokens, lengths = np.asarray(out.tokens), np.asarray(out.lengths)
    assert tokens.shape == (2, 3, MAX_LEN)
    stopped = 0
    for index in np.ndindex(START.shape):
        want = reference_greedy(int(START[index]))
        np.testing.assert_array_equal(tokens[index], _padded(want))
        assert lengths[index] == len(want)
        stopped += want[-1] == EOS and len(want) < MAX_LEN
        # The state froze after the last token: one step a token.
        assert out.state["count"][index] == len(want)
        np.testing.assert_array_equal(
            out.state["tokens_sum"][index], START[index] + sum(want[:-1])
        )
    assert stopped >= 2  # the table makes some rows end early


@pytest.mark.parametrize("alpha", [0.0, 0.9])
def test_beam_search_with_all_hypotheses_is_brute_force(alpha):
    """A beam wide enough for every hypothesis returns the exact ranking."""
    width = sum((V - 1) ** (n - 1) for n in range(1, MAX_LEN + 1)) + (V - 1) ** MAX_LEN
    out = _BEAM[width](PARAMS, START[0], jnp.float32(alpha))
    for row, start in enumerate(START[0]):
        want = all_hypotheses(int(start), alpha)
        assert len(want) == width
        np.testing.assert_allclose(out.scores[row], [s for s, _ in want], rtol=2e-5)
        for beam, (_, tokens) in enumerate(want):
            np.testing.assert_array_equal(out.tokens[row, beam], _padded(tokens))
            assert out.lengths[row, beam] == _length(tokens)


def _beam(width):
    return jax.jit(
        lambda params, start, alpha: decoding.beam_search(
            step,
            params,
            initial_state(start.shape),
            start,
            beam_width=width,
            max_length=MAX_LEN,
            eos_id=EOS,
            pad_id=PAD,
            length_penalty=alpha,
        )
    )


_BEAM = {width: _beam(width) for width in (1, 2, 3, 121)}


@pytest.mark.parametrize("width", [2, 3])
@pytest.mark.parametrize("alpha", [0.0, 0.9])
def test_beam_search_matches_list_reference(width, alpha):
    out = _BEAM[width](PARAMS, START, jnp.float32(alpha))
    assert out.tokens.shape == (2, 3, width, MAX_LEN)
    for index in np.ndindex(START.shape):
        want = reference_beam(int(START[index]), width, alpha)
        scores = np.asarray(out.scores[index])
        assert np.all(np.diff(scores) <= 0)  # best first
        np.testing.assert_allclose(scores, [s for s, _ in want], rtol=2e-5)
        for beam, (_, tokens) in enumerate(want):
            cut = tokens[: _length(tokens)]
            np.testing.assert_array_equal(out.tokens[index][beam], _padded(cut))
            assert out.lengths[index][beam] == len(cut)
            # Each hypothesis's state froze at its own EOS.
            assert out.state["count"][index][beam] == len(cut)


def test_beam_width_one_is_greedy():
    greedy = GREEDY(PARAMS, START)
    beam = _BEAM[1](PARAMS, START, jnp.float32(0.0))
    np.testing.assert_array_equal(beam.tokens[..., 0, :], greedy.tokens)
    np.testing.assert_array_equal(beam.lengths[..., 0], greedy.lengths)
    for index in np.ndindex(START.shape):
        tokens = reference_greedy(int(START[index]))
        total, previous = 0.0, int(START[index])
        for t, token in enumerate(tokens):
            total += log_probs(previous, t)[token]
            previous = token
        np.testing.assert_allclose(beam.scores[index][0], total, rtol=1e-5)


def _sampler(top_k):
    return jax.jit(
        lambda params, start, key, temperature: decoding.sample(
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
        )
    )


_SAMPLE = {top_k: _sampler(top_k) for top_k in (None, 1, 2)}


def test_sample_at_zero_temperature_or_top_1_is_greedy():
    greedy = GREEDY(PARAMS, START)
    key = jax.random.key(1)
    for out in (
        _SAMPLE[None](PARAMS, START, key, jnp.float32(0.0)),
        _SAMPLE[1](PARAMS, START, key, jnp.float32(1.3)),
    ):
        np.testing.assert_array_equal(out.tokens, greedy.tokens)
        np.testing.assert_array_equal(out.lengths, greedy.lengths)


@pytest.mark.parametrize("top_k", [None, 2])
def test_sample_frequencies_and_eos_handling(top_k):
    rows, temperature = 4000, 0.7
    start = np.full((rows,), 3, np.int32)
    out = _SAMPLE[top_k](PARAMS, start, jax.random.key(2), jnp.float32(temperature))
    tokens, lengths = np.asarray(out.tokens), np.asarray(out.lengths)
    counts = np.asarray(out.state["count"])
    lp = log_probs(3, 0)
    scaled = lp / temperature
    if top_k is not None:
        scaled = np.where(np.argsort(np.argsort(-lp)) < top_k, scaled, -np.inf)
    want = np.exp(scaled - scaled.max())
    want /= want.sum()
    freq = np.bincount(tokens[:, 0], minlength=V) / rows
    tolerance = 4 * np.sqrt(want * (1 - want) / rows) + 1e-9
    assert np.all(np.abs(freq - want) <= tolerance), (freq, want)
    for row in range(rows):
        seq = list(tokens[row])
        length = seq.index(EOS) + 1 if EOS in seq else MAX_LEN
        assert lengths[row] == length
        assert all(t == PAD for t in seq[length:])
        assert counts[row] == length


def test_errors_name_the_argument():
    state = initial_state((2, 3))
    with pytest.raises(ValueError, match=r"state\['count'\] has shape \(2, 3\)"):
        decoding.greedy(step, PARAMS, state, START[0], max_length=3, eos_id=EOS)
    with pytest.raises(ValueError, match="beam_width must be a positive int"):
        decoding.beam_search(
            step, PARAMS, state, START, beam_width=0, max_length=3, eos_id=EOS
        )
    with pytest.raises(ValueError, match="max_length must be >= 1"):
        decoding.greedy(step, PARAMS, state, START, max_length=0, eos_id=EOS)
    with pytest.raises(TypeError, match="start_tokens must be integer"):
        decoding.greedy(step, PARAMS, state, START * 1.0, max_length=3, eos_id=EOS)
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        decoding.sample(
            step,
            PARAMS,
            state,
            START,
            jax.random.key(0),
            max_length=3,
            eos_id=EOS,
            temperature=-1.0,
        )

    def bad_step(params, state, token):
        new_state, logits = step(params, state, token)
        return {**new_state, "count": new_state["count"].astype(jnp.float32)}, logits

    with pytest.raises(TypeError, match=r"step_fn changed state\['count'\]"):
        decoding.greedy(bad_step, PARAMS, state, START, max_length=3, eos_id=EOS)
