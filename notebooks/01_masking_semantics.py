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
# # Masking semantics: carry the state, do not reset it
#
# A padded batch needs a mask, and the mask needs a meaning. seqmask's is
#
# $$h_t = \begin{cases} \mathrm{step}(h_{t-1}, x_t) & m_t \\ h_{t-1} & \neg m_t
# \end{cases}$$
#
# a padded step *passes the carry through*. This notebook compares that with
# two common alternatives on the same cell:
#
# * **reset**: a `lax.scan` that sets `h` to zero wherever the mask is false
#   (what older toolkits did);
# * **Flax `nn.RNN(..., seq_lengths=...)`**: lengths only, so it assumes right
#   padding.
#
# and checks the consequences: left padding and holes, empty rows,
# bidirectional layers without flipping. Every key fact is `assert`ed, so this
# notebook fails if the library stops behaving as described.

# %%
import os
import sys

import matplotlib

if "ipykernel" not in sys.modules:  # a script or CI: no display
    matplotlib.use("Agg")
import flax.linen as nn
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import seqmask

QUICK = os.environ.get("SEQMASK_QUICK") == "1"

# %% [markdown]
# ## One cell, three ways to scan it
#
# A Flax `SimpleCell` (a tanh RNN) with 3 hidden units gives the step function.
# All three scans below call exactly this function, so every difference comes
# from how the mask is treated.

# %%
HIDDEN, FEATURES, T = 3, 2, 8
flax_cell = nn.SimpleCell(features=HIDDEN)
cell_vars = flax_cell.init(
    jax.random.key(0), jnp.zeros((1, HIDDEN)), jnp.zeros((1, FEATURES))
)


def step(h, x):
    return flax_cell.apply(cell_vars, h, x)


# Two rows of the same 5 real steps, padded in two ways.
real = jax.random.normal(jax.random.key(1), (5, FEATURES))
xs = jnp.zeros((2, T, FEATURES))
left_mask = jnp.arange(T) >= T - 5  # row 0: 3 pads, then 5 valid steps
holes_mask = jnp.array([True, True, False, True, False, False, True, True])
xs = xs.at[0, left_mask].set(real).at[1, holes_mask].set(real)
mask = jnp.stack([left_mask, holes_mask])  # [batch, time]
h0 = jnp.zeros((2, HIDDEN))
print(mask.astype(int))

# %% [markdown]
# The reference answer for both rows: the cell run over the 5 real steps alone,
# with no padding at all.

# %%
reference, _ = jax.lax.scan(step, jnp.zeros((1, HIDDEN)), real[:, None, :])
reference = reference[0]


def trace(scan_step, h, xs_tm, mask_tm):
    """All hidden states of a time-major scan (for plotting)."""

    def body(h, inputs):
        h = scan_step(h, inputs)
        return h, h

    return jax.lax.scan(body, h, (xs_tm, mask_tm))


def seqmask_step(h, inputs):
    x, m = inputs
    new_h, _ = step(h, x)
    return jnp.where(m[:, None], new_h, h)  # carry through


def reset_step(h, inputs):
    x, m = inputs
    new_h, _ = step(h, x)
    return jnp.where(m[:, None], new_h, 0.0)  # reset to zero


xs_tm, mask_tm = jnp.swapaxes(xs, 0, 1), mask.T
final_seqmask, ys = seqmask.masked_scan(step, h0, xs_tm, mask_tm)
_, trace_seqmask = trace(seqmask_step, h0, xs_tm, mask_tm)
final_reset, trace_reset = trace(reset_step, h0, xs_tm, mask_tm)

# Flax: only lengths can be expressed; 5 valid steps in each row.
flax_rnn = nn.RNN(flax_cell, return_carry=True)
flax_vars = {"params": {"cell": cell_vars["params"]}}
final_flax, _ = flax_rnn.apply(flax_vars, xs, seq_lengths=jnp.array([5, 5]))

for name, final in [
    ("seqmask", final_seqmask),
    ("reset", final_reset),
    ("flax nn.RNN", final_flax),
]:
    error = np.abs(np.asarray(final) - np.asarray(reference)).max(axis=-1)
    print(
        f"{name:12s} |final - reference|: left-padded {error[0]:.3f}, "
        f"holes {error[1]:.3f}"
    )

# %% [markdown]
# * **seqmask** returns the reference state for both rows: padded steps are
#   invisible.
# * **reset** wipes the state at every hole, so the row with holes forgets its
#   first real steps. (With left padding it happens to work here only because
#   the state before the first real step is zero anyway; with a learned or
#   carried-over initial state it would not.)
# * **Flax with `seq_lengths`** reads the *first* 5 steps of each row, so for the
#   left-padded row it returns the state after 3 pads and 2 real steps, and for
#   the row with holes it runs the cell over the holes' inputs.

# %%
np.testing.assert_allclose(final_seqmask[0], reference, atol=1e-6)
np.testing.assert_allclose(final_seqmask[1], reference, atol=1e-6)
assert np.abs(final_reset[1] - reference).max() > 1e-3
assert np.abs(final_flax[0] - reference).max() > 1e-3
assert np.abs(final_flax[1] - reference).max() > 1e-3
# Outputs at padded steps are the pad value (0).
assert np.all(np.asarray(ys)[~np.asarray(mask_tm)] == 0)

# %% [markdown]
# The traces: grey bands are padded steps. seqmask's line is flat across them
# (carried through); the reset line drops to zero.

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3), sharey=True)
for row, ax in enumerate(axes):
    for t in np.flatnonzero(~np.asarray(mask[row])):
        ax.axvspan(t - 0.5, t + 0.5, color="0.9")
    ax.plot(trace_seqmask[:, row, 0], "o-", label="seqmask (carry through)")
    ax.plot(trace_reset[:, row, 0], "s--", label="reset to zero")
    ax.axhline(reference[0], color="k", lw=0.8, ls=":", label="unpadded final")
    ax.set_title(["left-padded row", "row with holes"][row])
    ax.set_xlabel("time step")
axes[0].set_ylabel("h[0]")
axes[0].legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Whatever sits in the padding does not matter
#
# seqmask replaces padded inputs *before* the step, so NaN there changes no
# value and no gradient (masking only the outputs would let NaN leak into the
# gradient through `0 * NaN`).

# %%
poisoned = jnp.where(mask[..., None], xs, jnp.nan)
final_poisoned, _ = seqmask.masked_scan(step, h0, jnp.swapaxes(poisoned, 0, 1), mask_tm)
np.testing.assert_array_equal(final_poisoned, final_seqmask)


def loss(xs):
    h, _ = seqmask.masked_scan(step, h0, jnp.swapaxes(xs, 0, 1), mask_tm)
    return jnp.sum(h**2)


grad = jax.grad(loss)(poisoned)
assert np.all(np.isfinite(grad))
assert np.all(np.asarray(grad)[~np.asarray(mask)] == 0)
print("gradient at padded inputs:", np.abs(np.asarray(grad)[~np.asarray(mask)]).max())

# %% [markdown]
# ## Empty rows return the initial carry
#
# A row with no valid step (an empty document, a bucket's filler row) returns
# its initial carry *exactly*, whatever that carry is, here a carried-over
# state from a previous chunk.

# %%
cell = seqmask.cells.lstm(hidden_size=4)
params = cell.init(jax.random.key(2), FEATURES)
start = jax.tree.map(
    lambda leaf: jax.random.normal(jax.random.key(3), leaf.shape),
    cell.initial_carry(params, (3,)),
)
batch = jax.random.normal(jax.random.key(4), (3, T, FEATURES))
lengths = jnp.array([T, 0, 3])
final, outputs = seqmask.rnn(cell, params, batch, lengths=lengths, initial_carry=start)
np.testing.assert_array_equal(final.h[1], start.h[1])
np.testing.assert_array_equal(final.c[1], start.c[1])
assert np.all(np.asarray(outputs[1]) == 0)
print("row 1 (length 0) final h == initial h:", np.asarray(final.h[1]))

# %% [markdown]
# ## Bidirectional layers need no flipping
#
# Because padded steps carry through, a reverse scan visits exactly each row's
# valid steps, last to first, for *any* mask. So a bidirectional layer over a
# left-padded row gives the same outputs (at the valid positions) and the same
# final carries as over the unpadded row. No `reverse_sequence`, no
# re-alignment.

# %%
bi_params = seqmask.init_bidirectional(jax.random.key(5), cell, FEATURES)
n_valid = 5 if QUICK else 6
row = jax.random.normal(jax.random.key(6), (1, n_valid, FEATURES))
(f_ref, b_ref), ys_ref = seqmask.bidirectional(cell, bi_params, row)

pad = T - n_valid
padded_row = jnp.concatenate([jnp.full((1, pad, FEATURES), 1e3), row], axis=1)
left = (jnp.arange(T) >= pad)[None]
(f_pad, b_pad), ys_pad = seqmask.bidirectional(cell, bi_params, padded_row, mask=left)

np.testing.assert_allclose(ys_pad[:, pad:], ys_ref, atol=1e-5)
np.testing.assert_array_equal(ys_pad[:, :pad], 0)
for a, b in [(f_pad, f_ref), (b_pad, b_ref)]:
    jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, atol=1e-5), a, b)
print(
    "bidirectional, left-padded == unpadded: max |diff| =",
    float(jnp.abs(ys_pad[:, pad:] - ys_ref).max()),
)

# %% [markdown]
# **Takeaways.** Carry-through makes the final carry the state after the
# *last valid step* for any mask; empty rows keep their initial carry; padded
# inputs are never seen; and the backward direction of a bidirectional layer is
# correct for left padding and holes without any flipping.
