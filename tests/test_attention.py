"""Attention: NumPy references, exact zeros at padded positions, NaN safety.

The references below are plain NumPy loops over the valid source positions,
written from the equations in the docstrings. Every jitted function is
built once at module level, since the machine is shared.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqmask import attention

B, S, Q, M, A = 4, 5, 3, 6, 7
# A full row, a row with holes, left padding, and a row with nothing valid.
MASK = np.array(
    [
        [True, True, True, True, True],
        [True, False, True, False, True],
        [False, False, False, True, True],
        [False, False, False, False, False],
    ]
)
KINDS = {
    "additive": attention.additive(A),
    "dot": attention.dot(),
    "dot_scaled": attention.dot(scaled=True),
    "general": attention.general(),
}


def _query_size(kind):
    return M if kind.startswith("dot") else Q


def _inputs(kind, seed=0):
    rng = np.random.default_rng(seed)
    query = rng.normal(size=(B, _query_size(kind))).astype(np.float32)
    memory = rng.normal(size=(B, S, M)).astype(np.float32)
    return query, memory


PARAMS = {
    kind: att.init(jax.random.key(1), _query_size(kind), M)
    for kind, att in KINDS.items()
}


def _apply_and_grad(att):
    def loss(params, query, memory, mask):
        context, weights = att.apply(params, query, memory, mask)
        return jnp.sum(jnp.sin(context)) + jnp.sum(weights**2), (context, weights)

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))


APPLY = {kind: _apply_and_grad(att) for kind, att in KINDS.items()}


@jax.jit
def softmax_and_grad(scores, mask, probe):
    def loss(s):
        weights = attention.masked_softmax(s, mask)
        return jnp.sum(weights * probe), weights

    grad, weights = jax.grad(loss, has_aux=True)(scores)
    return weights, grad


def reference_scores(kind, params, query, memory):
    """Scores [S] for one row, from the docstring equations."""
    p = {name: np.asarray(value, np.float64) for name, value in params.items()}
    q, mem = np.asarray(query, np.float64), np.asarray(memory, np.float64)
    scores = []
    for m in mem:
        if kind == "additive":
            hidden = np.tanh(q @ p["query_kernel"] + m @ p["memory_kernel"] + p["bias"])
            scores.append(hidden @ p["energy"])
        elif kind == "general":
            scores.append(q @ p["kernel"] @ m)
        else:
            scale = np.sqrt(M) if kind == "dot_scaled" else 1.0
            scores.append(q @ m / scale)
    return np.array(scores)


def reference(kind, params, query, memory, mask):
    contexts, all_weights = [], []
    for b in range(len(query)):
        valid = np.flatnonzero(mask[b])
        weights = np.zeros(mask.shape[1])
        context = np.zeros(memory.shape[-1])
        if valid.size:
            scores = reference_scores(kind, params, query[b], memory[b, valid])
            exps = np.exp(scores - scores.max())
            weights[valid] = exps / exps.sum()
            context = weights[valid] @ np.asarray(memory[b, valid], np.float64)
        contexts.append(context)
        all_weights.append(weights)
    return np.array(contexts), np.array(all_weights)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_matches_numpy_reference_and_ignores_padded_memory(kind):
    """Values equal the reference; NaN and Inf in padded memory change no value
    and no gradient, and padded memory gets exactly zero gradient."""
    query, memory = _inputs(kind)
    params = PARAMS[kind]
    garbage = memory.copy()
    garbage[~MASK] = np.nan
    garbage[3, 0] = np.inf
    (_, (context, weights)), grads = APPLY[kind](params, query, garbage, MASK)
    want_context, want_weights = reference(kind, params, query, memory, MASK)
    np.testing.assert_allclose(weights, want_weights, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(context, want_context, rtol=1e-5, atol=1e-6)
    assert weights.dtype == jnp.float32 and context.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(weights)[~MASK], 0.0)
    np.testing.assert_array_equal(context[3], 0.0)  # no valid position
    (_, _), clean_grads = APPLY[kind](params, query, memory, MASK)
    for got, want in zip(
        jax.tree.leaves(grads), jax.tree.leaves(clean_grads), strict=True
    ):
        assert np.all(np.isfinite(got))
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    grad_memory = np.asarray(grads[2])
    np.testing.assert_array_equal(grad_memory[~MASK], 0.0)
    np.testing.assert_array_equal(np.asarray(grads[1])[3], 0.0)


def test_masked_softmax_matches_numpy_and_has_safe_gradients():
    rng = np.random.default_rng(3)
    scores = rng.normal(size=(B, S)).astype(np.float32) * 3
    garbage = scores.copy()
    garbage[~MASK] = np.nan
    garbage[0, 0] = scores[0, 0]  # row 0 is fully valid
    garbage[1, 1] = 1e30  # a huge padded score must not leak either
    probe = rng.normal(size=(B, S)).astype(np.float32)
    weights, grad = softmax_and_grad(garbage, MASK, probe)
    for b in range(B):
        valid = MASK[b]
        want = np.zeros(S)
        if valid.any():
            exps = np.exp(scores[b, valid].astype(np.float64))
            want[valid] = exps / exps.sum()
        np.testing.assert_allclose(weights[b], want, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(np.asarray(weights)[~MASK], 0.0)
    np.testing.assert_allclose(np.sum(weights, -1), [1, 1, 1, 0], rtol=1e-6)

    assert np.all(np.isfinite(grad))
    np.testing.assert_array_equal(np.asarray(grad)[~MASK], 0.0)
    # Softmax Jacobian on the valid positions: w * (p - w . p).
    for b in range(3):
        valid = MASK[b]
        w = np.asarray(weights[b, valid], np.float64)
        want = w * (probe[b, valid] - w @ probe[b, valid])
        np.testing.assert_allclose(grad[b, valid], want, rtol=1e-5, atol=1e-6)


def test_leading_batch_axes_and_precomputed_keys():
    att, params = KINDS["additive"], PARAMS["additive"]
    rng = np.random.default_rng(4)
    query = rng.normal(size=(2, 3, Q)).astype(np.float32)
    memory = rng.normal(size=(2, 3, S, M)).astype(np.float32)
    mask = rng.random((2, 3, S)) < 0.6
    apply = jax.jit(att.apply)
    context, weights = apply(params, query, memory, mask)
    flat_context, flat_weights = apply(
        params, query.reshape(6, Q), memory.reshape(6, S, M), mask.reshape(6, S)
    )
    np.testing.assert_allclose(context.reshape(6, M), flat_context, rtol=1e-6)
    np.testing.assert_allclose(weights.reshape(6, S), flat_weights, rtol=1e-6)

    @jax.jit
    def with_keys(params, query, memory, mask):
        keys = att.project_memory(params, memory, mask)
        return att.apply(params, query, memory, mask, keys=keys)

    again = with_keys(params, query, memory, mask)
    np.testing.assert_allclose(again[0], context, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(again[1], weights, rtol=1e-6, atol=1e-7)


def test_valid_scores_all_minus_inf_are_a_row_without_a_valid_position():
    """As documented: zeros and a zero gradient, like a fully masked row (a
    plain softmax gives NaN); a row with one finite valid score is normal."""
    inf = np.inf
    scores = np.array([[-inf, -inf, 0.0], [-inf, 2.0, -inf]], np.float32)
    mask = np.array([[True, True, False], [True, True, True]])
    probe = np.arange(6, dtype=np.float32).reshape(2, 3)
    weights, grad = softmax_and_grad(scores, mask, probe)
    np.testing.assert_array_equal(weights, [[0, 0, 0], [0, 1, 0]])
    np.testing.assert_array_equal(grad, np.zeros_like(scores))


def test_bfloat16_inputs_softmax_in_float32():
    att, params = KINDS["general"], PARAMS["general"]
    query, memory = _inputs("general", seed=5)
    query16, memory16 = query.astype(jnp.bfloat16), memory.astype(jnp.bfloat16)
    context, weights = jax.jit(att.apply)(params, query16, memory16, MASK)
    assert weights.dtype == jnp.float32 and context.dtype == jnp.bfloat16
    _, want = reference(
        "general", params, np.float32(query16), np.float32(memory16), MASK
    )
    np.testing.assert_allclose(weights, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["dot", "dot_scaled", "general"])
def test_float16_scores_beyond_float16_range_do_not_overflow(kind):
    """Dot products of float16 vectors reach up to 86,400 here, past
    float16's largest finite value (65,504): computed in float16 they
    overflowed to inf and the softmax gave NaN."""
    att, params = KINDS[kind], PARAMS[kind]
    if kind == "general":  # a kernel that passes the memory through
        params = {"kernel": jnp.eye(Q, M, dtype=jnp.float16)}
    rng = np.random.default_rng(7)
    size = _query_size(kind)  # the length of each dot product
    value = np.sqrt(86_400.0 / size)
    query = np.full((B, size), value, np.float32)
    memory = (value * rng.uniform(0.5, 1.0, size=(B, S, M))).astype(np.float32)
    context, weights = att.apply(
        params, query.astype(np.float16), memory.astype(np.float16), MASK
    )
    want_context, want = reference(
        kind,
        params,
        np.float32(query.astype(np.float16)),
        np.float32(memory.astype(np.float16)),
        MASK,
    )
    assert np.isfinite(np.asarray(weights)).all()
    np.testing.assert_allclose(weights, want, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(np.float32(context), want_context, rtol=2e-3, atol=1e-3)


@pytest.mark.parametrize("kind", ["additive", "general"])
def test_float16_keys_beyond_float16_range_do_not_overflow(kind):
    """The memory's projection (``project_memory``) of float16 memory and
    parameters reaches about 1e5 here: computed in float16 the keys were
    inf, and the weights NaN (for additive, where inf keys met a -inf query
    projection). The weights equal a float64 loop."""
    rng = np.random.default_rng(8)
    memory = (3000.0 * rng.uniform(0.9, 1.1, size=(B, S, M))).astype(np.float16)
    query = np.full((B, _query_size(kind)), 3000.0, np.float16)
    if kind == "general":
        params = {"kernel": jnp.full((Q, M), 6.0, jnp.float16)}
        query = (query * 1e-7).astype(np.float16)  # scores of order 1
    else:
        params = {
            "query_kernel": jnp.full((Q, A), -8.0, jnp.float16),
            "memory_kernel": jnp.full((M, A), 4.0, jnp.float16),
            "bias": jnp.zeros((A,), jnp.float16),
            "energy": jnp.linspace(-1.0, 1.0, A, dtype=jnp.float16),
        }
    context, weights = KINDS[kind].apply(params, query, memory, MASK)
    _, want = reference(kind, params, query, memory, MASK)
    assert np.isfinite(np.asarray(weights)).all()
    assert np.isfinite(np.float32(context)).all()
    np.testing.assert_allclose(weights, want, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("with_mask", [True, False])
def test_empty_source_gives_zero_context(kind, with_mask):
    """A memory with no source position is a batch of rows with no valid
    position: zero weights and a zero context, as the reference gives (and
    finite, zero gradients), with or without a mask."""
    query, memory = _inputs(kind)
    memory, mask = memory[:, :0], MASK[:, :0]
    (_, (context, weights)), grads = APPLY[kind](
        PARAMS[kind], query, memory, mask if with_mask else None
    )
    want_context, want_weights = reference(kind, PARAMS[kind], query, memory, mask)
    assert weights.shape == want_weights.shape == (B, 0)
    np.testing.assert_array_equal(context, want_context)
    for grad in jax.tree.leaves(grads):
        np.testing.assert_array_equal(grad, np.zeros_like(grad))
