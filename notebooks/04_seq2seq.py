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
# # Seq2seq with attention: dates to ISO 8601
#
# The task of `seqmask demo`: human-written dates in 19 formats ("Thu 7 Mar
# 2024", "March 2024", "7 March") become ISO 8601 ("2024-03-07", "2024-03",
# "--03-07"). Sources (5 to 29 characters) and targets (7 or 10 characters,
# plus EOS) have *different, varying* lengths, which is where masking is easy
# to get wrong:
#
# * the **encoder** (a bidirectional LSTM) uses the *source* mask; padded
#   positions hold random tokens here, and they must not matter;
# * the **attention** gives padded source positions exactly zero weight;
# * the **loss** is weighted by the *target* mask, not the source one.
#
# We train `seqmask.seq2seq.encoder_decoder`, look inside one decoding step
# to draw the attention, and compare greedy decoding with beam search.

# %%
import functools
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
import optax

import seqmask
from seqmask import demo, metrics, seq2seq

QUICK = os.environ.get("SEQMASK_QUICK") == "1"

# %% [markdown]
# ## Data
#
# The demo's generator and encoder (`seqmask.demo`) make the batches: source
# ids with random ids at padded positions, a source mask, targets followed by
# EOS (then random ids) and target lengths. Targets in the held-out split
# never occur in training.

# %%
task = demo.TASKS["dates"]
SEED = 0
rng = np.random.default_rng(SEED)
for _ in range(4):
    source, target = task.example(rng)
    print(f"{source!r:>32} -> {''.join(target)}")

batch = demo.encode(
    demo.make_examples(task, rng, 2, held_out=False, seed=SEED), task, rng
)
print("source ids:\n", batch.source, "\nsource mask:\n", batch.source_mask.astype(int))
print("targets:\n", batch.targets, "\ntarget lengths:", batch.target_lengths)

# %% [markdown]
# ## Model and training
#
# A bidirectional LSTM encoder, an LSTM decoder with additive (Bahdanau)
# attention and input feeding, and a bridge from the encoder's final carries
# to the decoder's initial one. `model.loss` is the cross-entropy of the
# targets weighted by the target mask.

# %%
HIDDEN = 16 if QUICK else 32
STEPS = 25 if QUICK else 1000
BATCH = 32 if QUICK else 64
EVAL_SIZE = 64 if QUICK else 500
BEAM_WIDTH = 2 if QUICK else 4
MAX_LENGTH = task.max_target_len + 1
# Compilation dominates a few-step run on CPU: skip LLVM's optimisations then.
compile_options = (
    {"xla_backend_optimization_level": 0}
    if QUICK and jax.default_backend() == "cpu"
    else None
)

model = seq2seq.encoder_decoder(
    len(task.source_vocabulary),
    len(task.target_vocabulary),
    embed_size=HIDDEN,
    hidden_size=HIDDEN,
    bos_id=demo.BOS,
    eos_id=demo.EOS,
    pad_id=demo.PAD,
)
params = model.init(jax.random.key(SEED))
# The demo's optimiser: Adam with warm-up and cosine decay, gradients clipped.
optimizer = demo.make_optimizer(STEPS)
opt_state = optimizer.init(params)


@functools.partial(jax.jit, compiler_options=compile_options)
def train_step(params, opt_state, batch):
    def loss_fn(params):
        return model.loss(
            params,
            batch.source,
            batch.targets,
            source_mask=batch.source_mask,
            target_lengths=batch.target_lengths,
        )

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


start = time.perf_counter()
curve = []
for index in range(STEPS):
    pairs = demo.make_examples(task, rng, BATCH, held_out=False, seed=SEED)
    params, opt_state, loss = train_step(
        params, opt_state, demo.encode(pairs, task, rng)
    )
    if index % max(STEPS // 50, 1) == 0 or index == STEPS - 1:
        curve.append((index, float(loss)))
seconds = time.perf_counter() - start
print(f"{STEPS} steps in {seconds:.1f} s; final loss {curve[-1][1]:.4f}")

fig, ax = plt.subplots(figsize=(6, 2.5))
ax.plot(*zip(*curve, strict=True))
ax.set_yscale("log")
ax.set_xlabel("step")
ax.set_ylabel("cross-entropy (nats/token)")
plt.tight_layout()
plt.show()
assert np.isfinite(curve[-1][1]) and curve[-1][1] < curve[0][1]

# %% [markdown]
# ## Greedy decoding and beam search
#
# `model.greedy` and `model.beam_search` encode the source and decode it in
# one program, from the model's own `bos_id` to its `eos_id`, with `pad_id`
# after it (and never before: the model gives the pad id no probability).
# Greedy takes the arg-max at each step; beam search keeps the `k` best
# hypotheses (with a length penalty) and usually fixes the odd greedy
# mistake. Beam search of width 1 *is* greedy decoding, whatever the
# training did: a check on the decoders themselves. Underneath,
# `model.step` is one decoder step, `(params, state, token) -> (state,
# logits)`, the interface of `seqmask.decoding`, for step functions of your
# own.


# %%
@functools.partial(jax.jit, compiler_options=compile_options)
def decode(params, source, source_mask):
    options = dict(source_mask=source_mask, max_length=MAX_LENGTH)
    greedy = model.greedy(params, source, **options)
    beam = model.beam_search(
        params, source, beam_width=BEAM_WIDTH, length_penalty=0.6, **options
    )
    beam1 = model.beam_search(params, source, beam_width=1, **options)
    return greedy, beam, beam1.tokens[:, 0]


test_rng = np.random.default_rng([SEED, 1])
test_pairs = demo.make_examples(task, test_rng, EVAL_SIZE, held_out=True, seed=SEED)
test = demo.encode(test_pairs, task, test_rng, shift_sources=True)
greedy, beam, beam1_tokens = decode(params, test.source, test.source_mask)
# Exact match: same length and same tokens, EOS included (padding never counts).
greedy_ok = metrics.exact_match(
    greedy.tokens,
    test.targets,
    hypothesis_lengths=greedy.lengths,
    reference_lengths=test.target_lengths,
)
beam_ok = metrics.exact_match(
    beam.tokens[:, 0],
    test.targets,
    hypothesis_lengths=beam.lengths[:, 0],
    reference_lengths=test.target_lengths,
)
print(
    f"held-out exact match ({EVAL_SIZE} dates, sources at random offsets): "
    f"greedy {greedy_ok.mean():.1%}, beam (width {BEAM_WIDTH}) {beam_ok.mean():.1%}"
)
print(f"{'source':>32}   {'target':10}  {'greedy':10}  beam")
for row in range(8):
    source, target = test_pairs[row]
    greedy_text = demo.decode_text(
        np.asarray(greedy.tokens[row]), int(greedy.lengths[row]), task
    )
    beam_text = demo.decode_text(
        np.asarray(beam.tokens[row, 0]), int(beam.lengths[row, 0]), task
    )
    print(f"{source!r:>32}   {''.join(target):10}  {greedy_text:10}  {beam_text}")
np.testing.assert_array_equal(beam1_tokens, greedy.tokens)
if not QUICK:
    assert greedy_ok.mean() > 0.5, "the full run should decode most dates"

# %% [markdown]
# ## Inside a decoding step: the attention
#
# `model.step` returns logits only. To draw the attention we write the same
# step out with seqmask's parts (an LSTM cell and additive attention, whose
# parameters live in `params`) and keep the weights; the `assert` checks that
# it computes exactly `model.step`'s logits.

# %%
dec_cell = seqmask.cells.lstm(HIDDEN)
attention = seqmask.attention.additive(HIDDEN)


@jax.jit
def step_with_attention(params, state, token):
    embedded = params["target_embedding"][token]
    x = jnp.concatenate([embedded, state.attentional], axis=-1)
    carry, output = dec_cell.apply(params["decoder"], state.carry, x)
    memory = state.memory
    context, weights = attention.apply(
        params["attention"], output, memory.values, memory.mask, keys=memory.keys
    )
    joined = jnp.concatenate([output, context], axis=-1)
    attentional = jnp.tanh(joined @ params["attentional"]["kernel"])
    logits = attentional @ params["output"]["kernel"] + params["output"]["bias"]
    return seq2seq.DecoderState(carry, attentional, memory), logits, weights


row = 0
source = test.source[row : row + 1]
source_mask = test.source_mask[row : row + 1]
state = model.encode(params, source, source_mask=source_mask)
token = jnp.array([demo.BOS])
maps, outputs = [], []
for _ in range(int(greedy.lengths[row])):
    _, reference_logits = model.step(params, state, token)
    state, logits, weights = step_with_attention(params, state, token)
    np.testing.assert_allclose(logits, reference_logits, rtol=1e-5, atol=1e-5)
    token = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    maps.append(np.asarray(weights[0]))
    outputs.append(int(token[0]))
maps = np.stack(maps)  # [target steps, source positions]

# Padded source positions get exactly zero weight; each row sums to 1.
assert np.all(maps[:, ~np.asarray(source_mask[0])] == 0)
np.testing.assert_allclose(maps.sum(-1), 1.0, rtol=1e-5)
assert outputs == list(np.asarray(greedy.tokens[row, : len(outputs)]))

# %%
source_symbols = task.source_vocabulary
target_symbols = task.target_vocabulary
fig, ax = plt.subplots(figsize=(9, 3.5))
ax.imshow(maps, cmap="Greys", aspect="auto", vmin=0, vmax=1)
ax.set_xticks(
    range(maps.shape[1]),
    [
        source_symbols[int(i)] if m else "·"
        for i, m in zip(source[0], source_mask[0], strict=True)
    ],
)
ax.set_yticks(range(len(outputs)), [target_symbols[i] for i in outputs])
ax.set_xlabel("source position (· = padding, which holds random tokens)")
ax.set_ylabel("decoded token")
ax.set_title(f"attention for {test_pairs[row][0]!r}")
plt.tight_layout()
plt.show()

# %% [markdown]
# After the full run the map is sharp: the year digits look at the year, the
# month at the month name or number, the day at the day. Padded positions,
# wherever they sit (here the source sits at a random offset), stay white.
