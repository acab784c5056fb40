# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Weighted sequence losses
#
# A seqmask loss computes an *element-wise* loss (one value per token for
# cross-entropy, per feature for regression), multiplies it by **weights of
# any shape that broadcasts to it**, and reduces with an **explicit
# normalisation**. Weights are built from the *targets* (`seqmask.weights`),
# never from the source mask: in translation or question answering the target
# has another length than the source.
#
# This notebook shows per-step and per-feature weights, the sparse
# auto-encoder (`weights.nonzero`), the five reductions side by side, and why
# NaN at a zero-weight element is harmless.

# %%
import os
import sys

import matplotlib

if "ipykernel" not in sys.modules:  # a script or CI: no display
    matplotlib.use("Agg")
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

from seqmask import losses, weights

QUICK = os.environ.get("SEQMASK_QUICK") == "1"

# %% [markdown]
# ## Per-step and per-feature weights
#
# A regression batch `[B, T, F]`: three sequences of lengths 5, 2 and 4,
# right-padded to `T = 5`, with three features each. The element-wise squared
# error is `[B, T, F]`; a `[B, T]` weight (one per step) and an `[F]` weight
# (one per feature) both broadcast to it. `weights.combine` multiplies the
# factors on their axes.

# %%
B, T, F = 3, 5, 3
lengths = jnp.array([5, 2, 4])
key_p, key_t = jax.random.split(jax.random.key(0))
predictions = jax.random.normal(key_p, (B, T, F))
targets = jax.random.normal(key_t, (B, T, F))

per_step = weights.from_lengths(lengths, T)  # [B, T]: 1 at valid steps
per_feature = jnp.array([1.0, 0.5, 2.0])  # [F]: how much each feature counts
w = weights.combine(per_step=per_step, per_feature=per_feature)
print("per_step:\n", per_step)
print("combined shape:", w.shape)

loss_steps = losses.squared_error(predictions, targets, per_step)
loss_both = losses.squared_error(predictions, targets, w)
print(f"per-step weights: {loss_steps:.4f}; per-step x per-feature: {loss_both:.4f}")

# The same numbers by hand: weighted sum over weighted count.
err = (predictions - targets) ** 2
manual = jnp.sum(err * w) / jnp.sum(jnp.broadcast_to(w, err.shape))
np.testing.assert_allclose(loss_both, manual, rtol=1e-6)

# %% [markdown]
# ## The reductions side by side
#
# With $\ell$ the element-wise loss and $w$ the weights:
#
# | reduction | value | note |
# | --- | --- | --- |
# | `"none"` | $w \odot \ell$ | (you reduce) |
# | `"sum"` | $\sum w\ell$ | (a total) |
# | `"mean"` | $\sum w\ell / N$, $N$ = all elements | depends on padding |
# | `"weighted_mean"` | $\sum w\ell / \sum w$ | each valid element once |
# | `"sequence_mean"` | mean of the sequences' weighted means | each sequence once |
#
# Below, the first sequence has a large error on its 5 steps and the others a
# small one. `weighted_mean` lets the long sequence dominate; `sequence_mean`
# gives each sequence one vote; `mean` changes when you merely add padding.

# %%
scale = jnp.array([3.0, 0.5, 0.5])[:, None, None]
big_first = targets + scale * jax.random.normal(jax.random.key(1), (B, T, F))
extra_pad = 3  # the same batch padded to T + 3


def reductions(predictions, targets, w):
    return {
        name: float(losses.squared_error(predictions, targets, w, reduction=name))
        for name in ("sum", "mean", "weighted_mean", "sequence_mean")
    }


padded = reductions(
    jnp.pad(big_first, ((0, 0), (0, extra_pad), (0, 0))),
    jnp.pad(targets, ((0, 0), (0, extra_pad), (0, 0))),
    weights.from_lengths(lengths, T + extra_pad),
)
plain = reductions(big_first, targets, per_step)
print(f"{'reduction':15s} {'T=5':>10s} {'T=8':>10s}")
for name in plain:
    print(f"{name:15s} {plain[name]:10.4f} {padded[name]:10.4f}")

per_sequence = losses.squared_error(big_first, targets, per_step, reduction="none")
per_sequence = per_sequence.sum((1, 2)) / (lengths * F)
print("per-sequence means:", np.round(per_sequence, 3))
np.testing.assert_allclose(plain["sequence_mean"], per_sequence.mean(), rtol=1e-5)
for name in ("sum", "weighted_mean", "sequence_mean"):  # padding-independent
    np.testing.assert_allclose(plain[name], padded[name], rtol=1e-5)
assert abs(plain["mean"] - padded["mean"]) > 1e-3  # "mean" is not

# %%
names = list(plain)
x = np.arange(len(names))
fig, ax = plt.subplots(figsize=(7, 3))
ax.bar(x - 0.2, [plain[n] for n in names], 0.4, label="T = 5")
ax.bar(x + 0.2, [padded[n] for n in names], 0.4, label="T = 8 (more padding)")
ax.set_xticks(x, names)
ax.set_yscale("log")
ax.set_ylabel("loss")
ax.set_title("the same batch, four reductions")
ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## The sparse auto-encoder: `weights.nonzero`
#
# Sparse data (bag-of-words counts, ratings) is mostly zeros, and often a zero
# means *unobserved*, not *zero*. An unweighted reconstruction loss is then
# dominated by the zeros, and the cheapest fit is to predict zero everywhere.
# `weights.nonzero(x)` counts only the observed entries, and the zeros get
# exactly zero gradient.
#
# The data: low-rank ratings (rank 2) of which 15% are observed.

# %%
N, D, RANK = 256, 20, 2
k1, k2, k3, k4 = jax.random.split(jax.random.key(2), 4)
full = jax.random.normal(k1, (N, RANK)) @ jax.random.normal(k2, (RANK, D)) + 3.0
observed = jax.random.uniform(k3, (N, D)) < 0.15
x = jnp.where(observed, full, 0.0)


def init(key):
    ka, kb = jax.random.split(key)
    return {
        "enc": jax.random.normal(ka, (D, 8)) * 0.1,
        "dec": jax.random.normal(kb, (8, D)) * 0.1,
        "bias": jnp.zeros(D),
    }


def reconstruct(params, x):
    return jnp.tanh(x @ params["enc"]) @ params["dec"] + params["bias"]


def train(use_weights: bool, steps: int):
    optimizer = optax.adam(3e-2)

    def loss_fn(params):
        w = weights.nonzero(x) if use_weights else None
        return losses.squared_error(reconstruct(params, x), x, w)

    @jax.jit
    def update(params, state):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, state = optimizer.update(grads, state)
        return optax.apply_updates(params, updates), state, loss

    params = init(k4)
    state = optimizer.init(params)
    for _ in range(steps):
        params, state, _ = update(params, state)
    return params


steps = 100 if QUICK else 1000
results = {}
for use_weights in (False, True):
    params = train(use_weights, steps)
    recon = reconstruct(params, x)
    rmse = jnp.sqrt(jnp.mean((recon - full)[observed] ** 2))
    results[use_weights] = float(rmse)
    name = "nonzero weights" if use_weights else "unweighted     "
    print(f"{name}: RMSE on the observed entries {rmse:.3f}")
assert results[True] < results[False]

# %% [markdown]
# The gradient with respect to the reconstruction is exactly zero wherever the
# target is zero:

# %%
params = init(k4)
g = jax.grad(lambda r: losses.squared_error(r, x, weights.nonzero(x)))(
    reconstruct(params, x)
)
assert np.all(np.asarray(g)[~np.asarray(observed)] == 0)
print("max |grad| at zero targets:", float(jnp.abs(g[~observed]).max()))

# %% [markdown]
# ## Zero weight means absent: NaN there is harmless
#
# Padded targets are often garbage: NaN from a failed sensor, an
# uninitialised buffer. seqmask *selects* safe values at zero-weight elements
# before computing the loss, and selects the element loss to 0 after, so NaN
# or Inf there changes neither the value nor any gradient. Multiplying by the
# weight alone would not do: `0 * NaN` is NaN, and so is its gradient.

# %%
valid = per_step.astype(bool)[..., None]
nan_targets = jnp.where(valid, targets, jnp.nan)
nan_predictions = jnp.where(valid, predictions, jnp.inf)


def seqmask_loss(p, t):
    return losses.squared_error(p, t, per_step, reduction="sequence_mean")


def naive_loss(p, t):  # multiply by the weight, then average
    w3 = per_step[..., None]
    return jnp.sum(w3 * (p - t) ** 2) / jnp.sum(w3 * jnp.ones_like(p))


clean_value, clean_grad = jax.value_and_grad(seqmask_loss)(predictions, targets)
value, grad = jax.value_and_grad(seqmask_loss)(nan_predictions, nan_targets)
naive_value, naive_grad = jax.value_and_grad(naive_loss)(nan_predictions, nan_targets)
print(f"seqmask: {value:.4f} (clean {clean_value:.4f}); naive: {naive_value}")
print("naive gradient finite everywhere:", bool(jnp.all(jnp.isfinite(naive_grad))))

np.testing.assert_array_equal(value, clean_value)
np.testing.assert_array_equal(grad, clean_grad)
assert np.all(np.asarray(grad)[~np.broadcast_to(valid, grad.shape)] == 0)
assert not np.isfinite(naive_value)

# %% [markdown]
# The same holds for the cross-entropies, with per-token weights from the
# targets (`weights.from_targets(targets, pad_id)`): out-of-range or NaN logits
# at padded target positions change nothing.

# %%
V, PAD = 6, 0
tokens = jnp.array([[3, 4, 5, 2, PAD, PAD], [4, 2, PAD, PAD, PAD, PAD]])
logits = jax.random.normal(jax.random.key(3), (*tokens.shape, V))
token_w = weights.from_targets(tokens, pad_id=PAD)
noisy = jnp.where(token_w[..., None] > 0, logits, jnp.nan)
ce = losses.softmax_cross_entropy_with_integer_labels
np.testing.assert_array_equal(
    ce(noisy, tokens, token_w, reduction="sequence_mean"),
    ce(logits, tokens, token_w, reduction="sequence_mean"),
)
print("token weights:\n", token_w)
