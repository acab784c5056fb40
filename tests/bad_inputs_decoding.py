"""Bad inputs to seqmask.decoding: token ids, hyperparameters, the contracts.

The model has a vocabulary of 4 ids (read from its logits); every value
mistake also has a traced variant, reported by checkify.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from bad_inputs_common import Case

from seqmask import decoding

VOCAB = 4
TABLE = jnp.asarray(np.random.default_rng(0).normal(size=(VOCAB, VOCAB)), jnp.float32)
STATE = jnp.zeros((2,), jnp.int32)
START = jnp.array([0, 2], jnp.int32)
KEY = jax.random.key(0)


def step(params, state, token):
    return state + 1, params[token]


def _greedy(**options):
    arguments = dict(max_length=3, eos_id=1)
    arguments.update(options)
    start = arguments.pop("start_tokens", START)
    state = arguments.pop("state", STATE)
    step_fn = arguments.pop("step_fn", step)
    return decoding.greedy(step_fn, TABLE, state, start, **arguments)


def _sample(**options):
    arguments = dict(max_length=3, eos_id=1)
    arguments.update(options)
    key = arguments.pop("key", KEY)
    return decoding.sample(step, TABLE, STATE, START, key, **arguments)


def _beam(**options):
    arguments = dict(max_length=3, eos_id=1, beam_width=2)
    arguments.update(options)
    start = arguments.pop("start_tokens", START)
    return decoding.beam_search(step, TABLE, STATE, start, **arguments)


def _traced_start(run):
    return (lambda start: run(start_tokens=start), (jnp.array([0, 7], jnp.int32),))


def _traced(run, name, value):
    return (lambda x: run(**{name: x}), (jnp.asarray(value),))


def _prefix_run(prefix, lengths=None):
    return lambda: _greedy(prefix=prefix, prefix_lengths=lengths)


def _wrong_state_dtype(params, state, token):
    return state.astype(jnp.float32), params[token]


def _wrong_logits_shape(params, state, token):
    return state, params[token][..., None]


def _integer_logits(params, state, token):
    return state, params[token].astype(jnp.int32)


def _no_pair(params, state, token):
    return params[token]


def _bad_hook(step, logits, state, tokens):
    return logits[..., :2]


CASES = [
    Case(
        "greedy-step-not-callable",
        lambda: _greedy(step_fn=TABLE),
        TypeError,
        ["greedy", "step_fn", "function"],
    ),
    Case(
        "greedy-step-not-a-pair",
        lambda: _greedy(step_fn=_no_pair),
        TypeError,
        ["greedy", "step_fn", "pair"],
    ),
    Case(
        "greedy-step-changes-state-dtype",
        lambda: _greedy(step_fn=_wrong_state_dtype),
        TypeError,
        ["greedy", "step_fn's new state", "int32", "float32"],
    ),
    Case(
        "greedy-step-logits-shape",
        lambda: _greedy(step_fn=_wrong_logits_shape),
        ValueError,
        ["greedy", "logits", r"\[\*batch, vocab\]"],
    ),
    Case(
        "greedy-step-integer-logits",
        lambda: _greedy(step_fn=_integer_logits),
        TypeError,
        ["greedy", "floating-point logits"],
    ),
    Case(
        "greedy-max-length-zero",
        lambda: _greedy(max_length=0),
        ValueError,
        ["greedy", "max_length", "positive"],
    ),
    Case(
        "greedy-max-length-float",
        lambda: _greedy(max_length=3.0),
        TypeError,
        ["greedy", "max_length", "int"],
    ),
    Case(
        "greedy-eos-outside-vocab",
        lambda: _greedy(eos_id=VOCAB),
        ValueError,
        ["greedy", "eos_id", r"\[0, 4\)", "vocabulary"],
    ),
    Case(
        "greedy-eos-negative",
        lambda: _greedy(eos_id=-1),
        ValueError,
        ["greedy", "eos_id", "vocabulary"],
    ),
    Case(
        "greedy-start-outside-vocab",
        lambda: _greedy(start_tokens=jnp.array([0, 7])),
        ValueError,
        ["greedy", "start_tokens", r"\[0, 4\)", "7"],
        traced=_traced_start(_greedy),
    ),
    Case(
        "greedy-start-negative",
        lambda: _greedy(start_tokens=jnp.array([-1, 0])),
        ValueError,
        ["greedy", "start_tokens", "vocabulary"],
        traced=(
            lambda start: _greedy(start_tokens=start),
            (jnp.array([-1, 0], jnp.int32),),
        ),
    ),
    Case(
        "greedy-start-float",
        lambda: _greedy(start_tokens=jnp.array([0.0, 1.0])),
        TypeError,
        ["greedy", "start_tokens", "integer"],
    ),
    Case(
        "greedy-start-dtype-too-narrow",
        lambda: decoding.greedy(
            lambda p, s, t: (s, jnp.zeros((*t.shape, 300))),
            None,
            STATE,
            jnp.array([0, 1], jnp.int8),
            max_length=2,
            eos_id=1,
        ),
        TypeError,
        ["greedy", "start_tokens", "int8", "int32"],
    ),
    Case(
        "greedy-pad-does-not-fit-dtype",
        lambda: decoding.greedy(
            step,
            TABLE,
            STATE,
            jnp.array([0, 1], jnp.int8),
            max_length=2,
            eos_id=1,
            pad_id=1000,
        ),
        ValueError,
        ["greedy", "pad_id", "int8"],
    ),
    Case(
        "greedy-state-batch-mismatch",
        lambda: _greedy(state=jnp.zeros((3,), jnp.int32)),
        ValueError,
        ["greedy", "state", "batch shape"],
    ),
    Case(
        # start_tokens [*batch, 1]: the message says start_tokens has no
        # trailing axis (it blamed only the state).
        "greedy-start-tokens-with-a-trailing-axis",
        lambda: _greedy(start_tokens=START[..., None]),
        ValueError,
        ["greedy", "state", "start_tokens", "one token a row, no trailing axis"],
    ),
    Case(
        "greedy-min-length-above-max",
        lambda: _greedy(min_length=5),
        ValueError,
        ["greedy", "min_length", r"\[0, 3\]"],
        traced=_traced(_greedy, "min_length", 5),
    ),
    Case(
        "greedy-min-length-negative",
        lambda: _greedy(min_length=-1),
        ValueError,
        ["greedy", "min_length"],
        traced=_traced(_greedy, "min_length", -1),
    ),
    Case(
        "greedy-min-length-float",
        lambda: _greedy(min_length=1.5),
        TypeError,
        ["greedy", "min_length", "int"],
    ),
    Case(
        "greedy-prefix-longer-than-max-length",
        _prefix_run(jnp.zeros((2, 4), jnp.int32)),
        ValueError,
        ["greedy", "prefix", "max_length"],
    ),
    Case(
        "greedy-prefix-outside-vocab",
        _prefix_run(jnp.array([[0, 9], [1, 1]])),
        ValueError,
        ["greedy", "prefix", "vocabulary", "9"],
        traced=(
            lambda prefix: _greedy(prefix=prefix),
            (jnp.array([[0, 9], [1, 1]], jnp.int32),),
        ),
    ),
    Case(
        "greedy-prefix-lengths-too-long",
        _prefix_run(jnp.zeros((2, 2), jnp.int32), jnp.array([1, 3])),
        ValueError,
        ["greedy", "prefix_lengths", r"\[0, 2\]"],
        traced=(
            lambda lengths: _greedy(
                prefix=jnp.zeros((2, 2), jnp.int32), prefix_lengths=lengths
            ),
            (jnp.array([1, 3], jnp.int32),),
        ),
    ),
    Case(
        "greedy-prefix-lengths-without-prefix",
        lambda: _greedy(prefix_lengths=jnp.array([1, 1])),
        ValueError,
        ["greedy", "prefix_lengths", "without a prefix"],
    ),
    Case(
        "greedy-prefix-float",
        _prefix_run(jnp.zeros((2, 2))),
        TypeError,
        ["greedy", "prefix", "integer"],
    ),
    Case(
        "greedy-prefix-batch-mismatch",
        _prefix_run(jnp.zeros((3, 2), jnp.int32)),
        ValueError,
        ["greedy", "prefix", r"\[\*batch, P\]"],
    ),
    Case(
        "greedy-logits-fn-not-callable",
        lambda: _greedy(logits_fn=2.0),
        TypeError,
        ["greedy", "logits_fn", "function"],
    ),
    Case(
        "greedy-logits-fn-changes-shape",
        lambda: _greedy(logits_fn=_bad_hook),
        ValueError,
        ["greedy", "logits_fn", "shape"],
    ),
    Case(
        "greedy-return-logits-not-bool",
        lambda: _greedy(return_logits="yes"),
        TypeError,
        ["greedy", "return_logits", "True or False"],
    ),
    Case(
        "sample-temperature-negative",
        lambda: _sample(temperature=-0.5),
        ValueError,
        ["sample", "temperature", r"\[0, inf"],
        traced=_traced(_sample, "temperature", -0.5),
    ),
    Case(
        "sample-temperature-nan",
        lambda: _sample(temperature=float("nan")),
        ValueError,
        ["sample", "temperature"],
        traced=_traced(_sample, "temperature", float("nan")),
    ),
    Case(
        "sample-temperature-row-negative",
        lambda: _sample(temperature=jnp.array([1.0, -1.0])),
        ValueError,
        ["sample", "temperature"],
        traced=_traced(_sample, "temperature", [1.0, -1.0]),
    ),
    Case(
        "sample-temperature-wrong-shape",
        lambda: _sample(temperature=jnp.ones((3,))),
        ValueError,
        ["sample", "temperature", "batch shape"],
    ),
    Case(
        "sample-temperature-string",
        lambda: _sample(temperature="hot"),
        TypeError,
        ["sample", "temperature", "real number"],
    ),
    Case(
        "sample-top-k-zero",
        lambda: _sample(top_k=0),
        ValueError,
        ["sample", "top_k", "positive"],
    ),
    Case(
        "sample-top-k-above-vocab",
        lambda: _sample(top_k=VOCAB + 1),
        ValueError,
        ["sample", "top_k", "vocabulary size 4"],
    ),
    Case(
        "sample-top-k-float",
        lambda: _sample(top_k=2.5),
        TypeError,
        ["sample", "top_k", "int"],
    ),
    Case(
        "sample-top-p-zero",
        lambda: _sample(top_p=0.0),
        ValueError,
        ["sample", "top_p", r"\(0, 1\]"],
        traced=_traced(_sample, "top_p", 0.0),
    ),
    Case(
        "sample-top-p-above-one",
        lambda: _sample(top_p=1.5),
        ValueError,
        ["sample", "top_p", r"\(0, 1\]"],
        traced=_traced(_sample, "top_p", 1.5),
    ),
    Case(
        "sample-min-p-negative",
        lambda: _sample(min_p=-0.1),
        ValueError,
        ["sample", "min_p", r"\[0, 1\]"],
        traced=_traced(_sample, "min_p", -0.1),
    ),
    Case(
        "sample-min-p-above-one",
        lambda: _sample(min_p=2.0),
        ValueError,
        ["sample", "min_p", r"\[0, 1\]"],
        traced=_traced(_sample, "min_p", 2.0),
    ),
    Case(
        "sample-key-not-a-key",
        lambda: _sample(key=0),
        TypeError,
        ["sample", "key", "PRNG key"],
    ),
    Case(
        "sample-start-outside-vocab",
        lambda: decoding.sample(
            step, TABLE, STATE, jnp.array([4, 0]), KEY, max_length=2, eos_id=1
        ),
        ValueError,
        ["sample", "start_tokens", "vocabulary"],
        traced=(
            lambda start: decoding.sample(
                step, TABLE, STATE, start, KEY, max_length=2, eos_id=1
            ),
            (jnp.array([4, 0], jnp.int32),),
        ),
    ),
    Case(
        "beam-width-zero",
        lambda: _beam(beam_width=0),
        ValueError,
        ["beam_search", "beam_width", "positive"],
    ),
    Case(
        "beam-width-traced",
        lambda: jax.jit(lambda w: _beam(beam_width=w))(2),
        TypeError,
        ["beam_search", "beam_width", "int"],
    ),
    Case(
        "beam-num-decodes-above-width",
        lambda: _beam(num_decodes=3),
        ValueError,
        ["beam_search", "num_decodes", "beam_width = 2"],
    ),
    Case(
        "beam-num-decodes-zero",
        lambda: _beam(num_decodes=0),
        ValueError,
        ["beam_search", "num_decodes", "positive"],
    ),
    Case(
        "beam-length-penalty-negative",
        lambda: _beam(length_penalty=-0.6),
        ValueError,
        ["beam_search", "length_penalty", r"\[0, inf"],
        traced=_traced(_beam, "length_penalty", -0.6),
    ),
    Case(
        "beam-length-penalty-string",
        lambda: _beam(length_penalty="0.6"),
        TypeError,
        ["beam_search", "length_penalty", "real number"],
    ),
    Case(
        "beam-early-stopping-not-bool",
        lambda: _beam(early_stopping=1),
        TypeError,
        ["beam_search", "early_stopping"],
    ),
    Case(
        "beam-eos-outside-vocab",
        lambda: _beam(eos_id=4),
        ValueError,
        ["beam_search", "eos_id", "vocabulary"],
    ),
    Case(
        "beam-start-outside-vocab",
        lambda: _beam(start_tokens=jnp.array([0, 7])),
        ValueError,
        ["beam_search", "start_tokens", "vocabulary"],
        traced=_traced_start(_beam),
    ),
    Case(
        "beam-min-length-above-max",
        lambda: _beam(min_length=4),
        ValueError,
        ["beam_search", "min_length"],
        traced=_traced(_beam, "min_length", 4),
    ),
    Case(
        "length-penalty-alpha-negative",
        lambda: decoding.length_penalty(3, -1.0),
        ValueError,
        ["length_penalty", "alpha"],
        traced=(lambda a: decoding.length_penalty(3, a), (jnp.float32(-1.0),)),
    ),
    Case(
        "repetition-penalty-zero",
        lambda: decoding.repetition_penalty(0.0),
        ValueError,
        ["repetition_penalty", "penalty", r"\(0, inf\)"],
    ),
    Case(
        "repetition-penalty-string",
        lambda: decoding.repetition_penalty("2"),
        TypeError,
        ["repetition_penalty", "penalty", "number"],
    ),
]

# Lengths are counts: a negative one gave a penalty (and NaN below -5).
CASES += [
    Case(
        "length_penalty-lengths-negative",
        lambda: decoding.length_penalty(np.array([-1, 3]), 0.6),
        ValueError,
        ["^length_penalty", "lengths", r"\[0, inf\)"],
        traced=(
            lambda lengths: decoding.length_penalty(lengths, 0.6),
            (jnp.array([-7, 3]),),
        ),
    ),
    Case(
        "length_penalty-lengths-float",
        lambda: decoding.length_penalty(np.array([2.5]), 0.6),
        TypeError,
        ["^length_penalty", "lengths", "integer"],
    ),
]
CASES += [
    Case(
        "beam_search-length_penalty-per-row",
        lambda: _beam(length_penalty=jnp.array([0.6, 0.6])),
        ValueError,
        ["^beam_search", "length_penalty must be one number"],
    ),
]
