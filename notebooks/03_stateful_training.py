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
# # Stateful training: a learned initial state with truncated BPTT
#
# Long text does not fit in one backward pass. *Truncated backpropagation
# through time* cuts the stream into chunks, runs the model chunk by chunk with
# the carry **threaded** from one chunk to the next (so the forward pass sees
# the whole history), and differentiates each chunk only through itself (the
# carry is *detached* between chunks).
#
# Older toolkits made this awkward to combine with a **learned initial
# state**: with a carry kept across batches, where does the learned state go
# in? In seqmask the carry is an explicit value you thread, and `resets` mark
# where a new document starts: at those steps the row goes back to the
# learned state, which is how that state receives its gradient.
#
# The model and training loop come from `examples/char_lm.py` (a character
# language model on Python's own docstrings); this notebook imports them.

# %%
import os
import sys
import time

import matplotlib

if "ipykernel" not in sys.modules:  # a script or CI: no display
    matplotlib.use("Agg")
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import seqmask
from seqmask.data import stateful_batches

sys.path.insert(0, os.path.abspath(os.path.join("..", "examples")))
import char_lm  # noqa: E402

QUICK = os.environ.get("SEQMASK_QUICK") == "1"

# %% [markdown]
# ## The stream: documents in lanes
#
# `seqmask.data.stateful_batches` lays the documents into `batch_size` lanes.
# Chunk `k + 1` of a lane continues chunk `k` of the same lane; `resets` is
# true where a lane starts a new document. Below, `|` marks a reset.

# %%
modules = char_lm.STDLIB_MODULES[:12] if QUICK else char_lm.STDLIB_MODULES
docs = char_lm.load_corpus(modules)
vocab = char_lm.build_vocabulary(docs)
sequences = char_lm.encode_documents(docs, vocab)
print(
    f"{len(docs)} docstrings, {sum(map(len, sequences))} characters, "
    f"{len(vocab.chars)} distinct"
)

chunks = stateful_batches(iter(sequences), batch_size=3, chunk_len=40)
shown = []
for k, chunk in enumerate(chunks):
    # the first chunk, and the first later one where a new document begins
    if k == 0 or (not shown[1:] and bool(chunk.resets.any())):
        shown.append((k, chunk))
    if len(shown) == 2 or k == 200:
        break
for k, chunk in shown:
    print(f"chunk {k}:")
    for lane in range(3):
        text = ""
        for t in range(chunk.mask.shape[1]):
            if chunk.resets[lane, t]:
                text += "|"
            text += (
                vocab.chars[int(chunk.xs[lane, t, 0])] if chunk.mask[lane, t] else "."
            )
        print(f"  lane {lane}: {text!r}")

# %% [markdown]
# ## Chunked forward passes equal one full pass
#
# Threading the carry makes chunking invisible to the forward pass: running a
# document in chunks of 16, each starting from the previous chunk's final
# carry, gives exactly the hidden states of one pass over the whole document.

# %%
HIDDEN = 32 if QUICK else 128
EMBED = 16 if QUICK else 32
model = char_lm.make_model(len(vocab.chars), HIDDEN)
params = char_lm.init_params(jax.random.key(0), model, EMBED)

doc = jnp.asarray(sequences[0][:64, 0])
xs = params["embed"][doc][None]  # [1, T, E]
_, full = seqmask.rnn(model.cell, params["rnn"], xs)

carry, pieces = None, []
for start in range(0, xs.shape[1], 16):
    carry, ys = seqmask.rnn(
        model.cell, params["rnn"], xs[:, start : start + 16], initial_carry=carry
    )
    carry = seqmask.carry.detach(carry)  # what truncated BPTT does between chunks
    pieces.append(ys)
chunked = jnp.concatenate(pieces, axis=1)
np.testing.assert_allclose(chunked, full, atol=1e-6)
print("chunked vs full pass, max |diff|:", float(jnp.abs(chunked - full).max()))

# %% [markdown]
# ## Training
#
# `char_lm.train` builds one compiled step with
# `seqmask.carry.truncated_bptt_step`: it runs the chunk from the threaded
# carry (resetting lanes to the learned initial state at `resets`), takes the
# gradient through this chunk only, applies an Adam update and returns the new
# carry. The learned initial state starts at zero.

# %%
steps = 12 if QUICK else 600
batch_size, chunk_len = (8, 32) if QUICK else (32, 64)
initial_before = params["rnn"]["initial_carry"]
start = time.perf_counter()
params, curve = char_lm.train(
    model,
    params,
    sequences,
    steps=steps,
    batch_size=batch_size,
    chunk_len=chunk_len,
    log_every=1 if QUICK else 10,
    progress=False,
)
print(f"{steps} chunks in {time.perf_counter() - start:.1f} s")

# %%
unigram = char_lm.unigram_entropy(sequences, len(vocab.chars))
step_index, loss = zip(*curve, strict=True)
fig, ax = plt.subplots(figsize=(7, 3))
ax.plot(step_index, loss, label="training loss")
ax.axhline(np.log(len(vocab.chars)), color="0.5", ls=":", label="uniform guess")
ax.axhline(unigram, color="k", ls="--", label="unigram (no context)")
ax.set_xlabel("chunk")
ax.set_ylabel("nats / character")
ax.legend()
plt.tight_layout()
plt.show()
assert np.all(np.isfinite(loss))
assert loss[-1] < loss[0]

# %% [markdown]
# The learned initial state moved away from zero: every reset (a lane starting
# a new docstring) sent gradient to it.

# %%
moved = jax.tree.map(
    lambda a, b: float(jnp.abs(a - b).max()),
    params["rnn"]["initial_carry"],
    initial_before,
)
print("max |change| of the learned initial state (h, c):", moved)
assert max(jax.tree.leaves(moved)) > 0

# %% [markdown]
# A greedy continuation from the learned initial state (after a few steps in
# quick mode it is mostly spaces and common letters; after the full run it
# writes docstring-like English):

# %%
print(repr(char_lm.greedy_sample(model, params, vocab, "Return the ", 80)))
