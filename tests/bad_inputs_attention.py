"""Bad inputs to ``seqmask.attention``: sizes, dtypes, shapes of masks,
queries, memories and keys. Attention takes no value that could be out of
range, so there are no traced cases here."""

from __future__ import annotations

import jax
import numpy as np
from bad_inputs_common import Case

from seqmask import attention

B, S, Q, M = 2, 3, 4, 5
ADDITIVE = attention.additive(6)
ADDITIVE_PARAMS = ADDITIVE.init(jax.random.key(0), Q, M)
GENERAL = attention.general()
GENERAL_PARAMS = GENERAL.init(jax.random.key(0), Q, M)
QUERY = np.ones((B, Q), np.float32)
MEMORY = np.ones((B, S, M), np.float32)
MASK = np.array([[True, True, False], [True, False, False]])


def _apply(att, params, query=QUERY, memory=MEMORY, mask=MASK, **kw):
    return lambda: att.apply(params, query, memory, mask, **kw)


CASES: list[Case] = [
    Case(
        "attention-additive-size-zero",
        lambda: attention.additive(0),
        ValueError,
        ("additive", "attention_size", "positive int", "got 0"),
    ),
    Case(
        "attention-additive-size-float",
        lambda: attention.additive(4.0),
        TypeError,
        ("additive", "attention_size", "must be an int", "Pass 4"),
    ),
    Case(
        "attention-additive-kernel-init-not-callable",
        lambda: attention.additive(4, kernel_init="lecun"),
        TypeError,
        ("additive", "kernel_init", "function"),
    ),
    Case(
        "attention-additive-init-query-size-zero",
        lambda: ADDITIVE.init(jax.random.key(0), 0, M),
        ValueError,
        ("additive.init", "query_size", "positive int"),
    ),
    Case(
        "attention-general-init-memory-size-float",
        lambda: GENERAL.init(jax.random.key(0), Q, 5.5),
        TypeError,
        ("general.init", "memory_size", "int"),
    ),
    Case(
        "attention-dot-init-size-mismatch",
        lambda: attention.dot().init(jax.random.key(0), Q, M),
        ValueError,
        ("dot.init", "query_size == memory_size", "general"),
    ),
    Case(
        "attention-dot-scaled-not-bool",
        lambda: attention.dot(scaled="yes"),
        TypeError,
        ("dot", "scaled", "True or False"),
    ),
    Case(
        "attention-apply-mask-int",
        _apply(ADDITIVE, ADDITIVE_PARAMS, mask=MASK.astype(np.int32)),
        TypeError,
        ("additive.apply", "mask", "boolean", "mask != 0"),
    ),
    Case(
        "attention-apply-mask-shape",
        _apply(ADDITIVE, ADDITIVE_PARAMS, mask=MASK[:, :2]),
        ValueError,
        ("additive.apply", "mask", r"\(2, 3\)", r"\(2, 2\)"),
    ),
    Case(
        "attention-apply-mask-transposed",
        _apply(GENERAL, GENERAL_PARAMS, mask=MASK.T),
        ValueError,
        ("general.apply", "mask", r"\[\*batch, source\]"),
    ),
    Case(
        "attention-apply-query-size",
        _apply(ADDITIVE, ADDITIVE_PARAMS, query=QUERY[:, :2]),
        ValueError,
        ("additive.apply", "query", "query_size", r"\(2, 4\)"),
    ),
    Case(
        "attention-apply-query-batch",
        _apply(GENERAL, GENERAL_PARAMS, query=QUERY[:1]),
        ValueError,
        ("general.apply", "query", "batch shape"),
    ),
    Case(
        "attention-apply-query-int",
        _apply(ADDITIVE, ADDITIVE_PARAMS, query=QUERY.astype(np.int32)),
        TypeError,
        ("additive.apply", "query", "floating"),
    ),
    Case(
        "attention-apply-memory-int",
        _apply(ADDITIVE, ADDITIVE_PARAMS, memory=MEMORY.astype(np.int32)),
        TypeError,
        ("additive.apply", "memory", "floating"),
    ),
    Case(
        "attention-apply-memory-feature-size",
        _apply(ADDITIVE, ADDITIVE_PARAMS, memory=MEMORY[..., :2]),
        ValueError,
        ("^additive.apply", "memory", "memory_size", r"\[\*batch, source, 5\]"),
    ),
    Case(
        "attention-apply-memory-rank",
        _apply(GENERAL, GENERAL_PARAMS, memory=MEMORY[0, 0], mask=None),
        ValueError,
        ("general.apply", "memory", "at least 2 axes"),
    ),
    Case(
        "attention-apply-keys-shape",
        _apply(ADDITIVE, ADDITIVE_PARAMS, keys=np.ones((B, S + 1, 6), np.float32)),
        ValueError,
        ("additive.apply", "keys", "project_memory"),
    ),
    Case(
        "attention-apply-keys-size-additive",
        _apply(ADDITIVE, ADDITIVE_PARAMS, keys=np.ones((B, S, 1), np.float32)),
        ValueError,
        ("additive.apply", r"keys must be .* = \(2, 3, 6\)", r"got \(2, 3, 1\)"),
    ),
    Case(
        "attention-apply-keys-size-general",
        _apply(GENERAL, GENERAL_PARAMS, keys=np.ones((B, S, 7), np.float32)),
        ValueError,
        ("general.apply", r"\(2, 3, 4\)", r"got \(2, 3, 7\)"),
    ),
    Case(
        "attention-apply-keys-size-dot",
        _apply(
            attention.dot(),
            {},
            query=np.ones((B, M), np.float32),
            keys=np.ones((B, S, 3), np.float32),
        ),
        ValueError,
        ("dot.apply", "keys", r"\(2, 3, 5\)"),
    ),
    Case(
        "attention-masked-softmax-int-scores",
        lambda: attention.masked_softmax(np.ones((2, 3), np.int32)),
        TypeError,
        ("masked_softmax", "scores", "floating"),
    ),
    Case(
        "attention-masked-softmax-scalar",
        lambda: attention.masked_softmax(np.float32(1.0)),
        ValueError,
        ("masked_softmax", "scores", "at least 1 axes"),
    ),
    Case(
        "attention-masked-softmax-mask-shape",
        lambda: attention.masked_softmax(np.ones((2, 3), np.float32), MASK[:1]),
        ValueError,
        ("masked_softmax", "mask", r"\(2, 3\)"),
    ),
]

# Keys, options and parameters of another mechanism (each attention checks
# its parameters against its own layout, as the cells do).
CASES += [
    Case(
        f"attention-{name}-init-key-{kind}",
        lambda att=att, key=key: att.init(key, Q, Q),
        error,
        (f"^{name}.init", "key", expected),
    )
    for name, att in (
        ("additive", ADDITIVE),
        ("dot", attention.dot()),
        ("general", GENERAL),
    )
    for kind, key, error, expected in (
        ("int", 0, TypeError, r"PRNG key, e\.g\."),
        ("batch", jax.random.split(jax.random.key(0), 2), ValueError, "single"),
    )
]
CASES += [
    Case(
        # The message names the one leaf that differs, not the three others.
        "attention-additive-one-leaf-of-another-dtype",
        _apply(
            ADDITIVE,
            {**ADDITIVE_PARAMS, "bias": ADDITIVE_PARAMS["bias"].astype(np.float16)},
        ),
        TypeError,
        ("additive.apply", r"params\['bias'\]: got float16, expected float32$"),
    ),
    Case(
        "attention-additive-param_dtype-int",
        lambda: attention.additive(4, param_dtype=np.int32),
        TypeError,
        ("^additive", "param_dtype must be a floating dtype", "int32"),
    ),
    Case(
        "attention-general-param_dtype-unknown",
        lambda: attention.general(param_dtype="f32"),
        TypeError,
        ("^general", "param_dtype must be a dtype", "f32"),
    ),
    Case(
        "attention-additive-energy_init-not-callable",
        lambda: attention.additive(4, energy_init=1.0),
        TypeError,
        ("^additive", "energy_init must be a function"),
    ),
    Case(
        "attention-additive-params-of-general",
        _apply(ADDITIVE, GENERAL_PARAMS),
        ValueError,
        ("^additive.apply", "params", "missing", "look like general"),
    ),
    Case(
        "attention-general-params-of-additive",
        _apply(GENERAL, ADDITIVE_PARAMS),
        ValueError,
        (
            "^general.apply",
            "params",
            r"unexpected params\['bias'\]",
            "look like additive",
        ),
    ),
    Case(
        "attention-additive-params-query-swapped",
        lambda: ADDITIVE.apply(QUERY, ADDITIVE_PARAMS, MEMORY, MASK),
        TypeError,
        (
            "^additive.apply",
            r"params must be the parameters of additive\(6\)",
            "float32",
        ),
    ),
    Case(
        "attention-additive-params-shapes",
        _apply(ADDITIVE, ADDITIVE.init(jax.random.key(0), Q, M + 1)),
        ValueError,
        ("^additive.apply", "memory must be", r"\[\*batch, source, 6\]"),
    ),
    Case(
        "attention-additive-project-memory-params",
        lambda: ADDITIVE.project_memory(GENERAL_PARAMS, MEMORY, MASK),
        ValueError,
        ("^additive.project_memory", "params", "missing"),
    ),
    Case(
        "attention-dot-params-not-empty",
        lambda: attention.dot().apply({"kernel": np.eye(M)}, np.ones((B, M)), MEMORY),
        ValueError,
        ("^dot.apply", "params", "unexpected"),
    ),
]
