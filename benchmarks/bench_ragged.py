"""Real tokens per second over a corpus of variable-length sequences.

A tagging model (embedding, one LSTM layer, unidirectional or
bidirectional, a dense layer and a per-token softmax cross-entropy) trains
for one epoch over a corpus whose sentence lengths follow a lognormal fitted
to real text (see :data:`LOGNORMAL_MU`); each epoch is timed end to end,
**compilation and host-side batching included**, in seven ways:

1. ``flax, global max`` - Flax ``nn.RNN(nn.OptimizedLSTMCell)`` with
   ``seq_lengths``, every batch padded to the longest sequence of the corpus
   (one compiled shape);
2. ``flax, batch max`` - the same, each batch padded to its own longest
   sequence (one compile per new length);
3. ``flax, bucketed by hand`` - the same model on batches that the user
   buckets by hand with the boundaries of ``seqmask.data.bucket_boundaries``
   (a compile per boundary; the best a Flax user can do today);
4. ``seqmask, bucketed`` - ``seqmask.data.bucket_batches`` with the same
   boundaries, ``seqmask.rnn`` / ``bidirectional`` with ``skip_padding``;
5. ``seqmask, packed`` - ``seqmask.data.packed_batches`` (several sequences
   a row, ``resets``, ``segment_ids`` in the loss): one compiled shape;
6. ``seqmask, global max + skip_padding`` - the batches of mode 1 with
   ``skip_padding``;
7. ``seqmask, bucketed, no skip_padding`` - mode 4 without ``skip_padding``
   (a bucket's rows leave little to skip: this is what mode 4's
   checkpointing costs, and seqmask's layer against Flax's on the batches
   of mode 3).

Every mode starts from the same parameters (the Flax modes get the seqmask
parameters converted to Flax's layout) and an Adam optimizer. Before timing,
each mode's batches are checked to give the same total loss over the epoch
for those parameters (the sum of every real token's loss): the modes
compute the same thing. Reported per mode: real (non-padding) tokens per
second, the padding fraction (padded slots over all slots of the batches;
``skip_padding`` does not run some of them),
the number of compiled shapes of the training step, optimizer steps, and the
epoch's seconds; and the ratios of the best seqmask mode to modes 1 and 3
(the issue's targets: at least 4x and 1.6x, with packing compiling one
training step). Writes ``results/ragged.json`` and ``results/ragged.png``.

The packed batches have the shape of mode 1's, ``[batch, longest]``, each
row filled with as many sentences as fit: the same compiled step over fewer
padded slots, so packing takes fewer optimizer steps (each sees more
sentences). ``steps`` in the record says how many each mode took.

  python benchmarks/bench_ragged.py            # 8192 sentences, H=256
  python benchmarks/bench_ragged.py --models uni   # the unidirectional LSTM only
  python benchmarks/bench_ragged.py --quick    # small smoke run
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _common import RATIO, environment, parser, pyplot, save_figure, write_record

import seqmask
from seqmask.data import bucket_batches, bucket_boundaries, packed_batches

# Sentence lengths (in words): a lognormal fitted by maximum likelihood (the
# mean and standard deviation of log length) to the 7,131 sentences of the
# test and validation sets of the Penn Treebank language-modelling corpus of
# Mikolov et al. (2010), one sentence a line in `ptb.test.txt` and
# `ptb.valid.txt` (mean 20.9 words, median 20, longest 77). The fitted tail
# is a little heavier than the data's; lengths are cut at `--max-length`.
LOGNORMAL_MU = 2.895
LOGNORMAL_SIGMA = 0.597

MODES = (
    "flax, global max",
    "flax, batch max",
    "flax, bucketed by hand",
    "seqmask, bucketed",
    "seqmask, packed",
    "seqmask, global max + skip_padding",
    "seqmask, bucketed, no skip_padding",
)

NO_SKIP = ("seqmask, packed", "seqmask, bucketed, no skip_padding")

# Axis labels: the mode's number and name over a few lines.
LABELS = [
    f"{index}. {mode}".replace(", ", ",\n").replace(" + ", "\n+ ")
    for index, mode in enumerate(MODES, 1)
]


class Corpus(NamedTuple):
    tokens: list[np.ndarray]  # int32 [length] each
    tags: list[np.ndarray]  # int32 [length] each
    lengths: np.ndarray


def make_corpus(size, max_length, vocab, tags, seed=0) -> Corpus:
    """Sentences with lognormal lengths, random tokens, and a tag per token
    that depends on the token and its predecessor."""
    rng = np.random.default_rng(seed)
    lengths = rng.lognormal(LOGNORMAL_MU, LOGNORMAL_SIGMA, size)
    lengths = np.clip(np.round(lengths), 1, max_length).astype(np.int64)
    tokens = [rng.integers(1, vocab, n).astype(np.int32) for n in lengths]
    labels = [
        ((t + np.concatenate([[0], t[:-1]])) % tags).astype(np.int32) for t in tokens
    ]
    return Corpus(tokens, labels, lengths)


class Batch(NamedTuple):
    """What a training step reads; ``resets`` and ``segment_ids`` only when
    packed."""

    tokens: np.ndarray  # [rows, steps]
    tags: np.ndarray
    mask: np.ndarray
    lengths: np.ndarray | None
    resets: np.ndarray | None = None
    segment_ids: np.ndarray | None = None


def pad(corpus: Corpus, indices, steps: int, rows: int) -> Batch:
    """Rows ``indices`` padded to ``steps``; filler rows (length 0) up to
    ``rows``."""
    tokens = np.zeros((rows, steps), np.int32)
    tags = np.zeros((rows, steps), np.int32)
    lengths = np.zeros(rows, np.int32)
    for row, index in enumerate(indices):
        n = corpus.lengths[index]
        tokens[row, :n], tags[row, :n], lengths[row] = (
            corpus.tokens[index],
            corpus.tags[index],
            n,
        )
    return Batch(tokens, tags, np.arange(steps) < lengths[:, None], lengths)


def batch_plans(corpus, batch_size, boundaries, seed):
    """``{mode: zero-argument function returning an iterator of Batch}``."""
    order = np.random.default_rng(seed).permutation(len(corpus.lengths))
    groups = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    longest = int(corpus.lengths.max())

    def global_max():
        for group in groups:
            yield pad(corpus, group, longest, batch_size)

    def batch_max():
        for group in groups:
            yield pad(corpus, group, int(corpus.lengths[group].max()), batch_size)

    def by_hand():
        # What a user writes: each sequence to the smallest boundary that
        # holds it, batches within a bucket, padded to the boundary.
        bucket = np.searchsorted(np.asarray(boundaries), corpus.lengths[order])
        for index, boundary in enumerate(boundaries):
            members = order[bucket == index]
            for start in range(0, len(members), batch_size):
                group = members[start : start + batch_size]
                yield pad(corpus, group, boundary, batch_size)

    items = [
        {"tokens": t, "tags": y}
        for t, y in zip(corpus.tokens, corpus.tags, strict=True)
    ]

    def bucketed():
        for batch in bucket_batches(
            items, batch_size=batch_size, boundaries=boundaries, shuffle=True, seed=seed
        ):
            yield Batch(
                batch.inputs["tokens"],
                batch.inputs["tags"],
                batch.mask["tokens"],
                batch.lengths["tokens"],
            )

    def packed():
        for packing in packed_batches(
            items, batch_size=batch_size, row_len=longest, shuffle=True, seed=seed
        ):
            yield Batch(
                packing.inputs["tokens"],
                packing.inputs["tags"],
                packing.mask,
                None,
                packing.resets,
                packing.segment_ids,
            )

    return dict(
        zip(
            MODES,
            (global_max, batch_max, by_hand, bucketed, packed, global_max, bucketed),
            strict=True,
        )
    )


# --------------------------------------------------------------------------
# The two models, with the same parameters


def init_params(key, vocab, embed, hidden, tags, bidirectional):
    """seqmask parameters: embedding, LSTM (one or two directions), dense."""
    cell = seqmask.cells.lstm(hidden)
    keys = jax.random.split(key, 3)
    if bidirectional:
        lstm = seqmask.init_bidirectional(keys[1], cell, embed)
    else:
        lstm = cell.init(keys[1], embed)
    width = 2 * hidden if bidirectional else hidden
    return {
        "embed": 0.1 * jax.random.normal(keys[0], (vocab, embed)),
        "lstm": lstm,
        "out": {
            "kernel": jax.random.normal(keys[2], (width, tags)) / np.sqrt(width),
            "bias": jnp.zeros(tags),
        },
    }


def seqmask_logits(params, batch: Batch, *, bidirectional, skip_padding):
    lstm = params["lstm"]["forward"] if bidirectional else params["lstm"]
    cell = seqmask.cells.lstm(lstm["recurrent_kernel"].shape[0])
    xs = params["embed"][batch.tokens]
    layer = seqmask.bidirectional if bidirectional else seqmask.rnn
    _, ys = layer(
        cell,
        params["lstm"],
        xs,
        mask=batch.mask,
        resets=batch.resets,
        skip_padding=skip_padding,
    )
    return ys @ params["out"]["kernel"] + params["out"]["bias"]


def seqmask_loss(params, batch: Batch, reduction, **options):
    return seqmask.losses.softmax_cross_entropy_with_integer_labels(
        seqmask_logits(params, batch, **options),
        batch.tags,
        batch.mask.astype(jnp.float32),
        reduction=reduction,
        segment_ids=batch.segment_ids,
    )


def flax_model(hidden, vocab, embed, tags, bidirectional):
    import flax.linen as nn

    class Tagger(nn.Module):
        @nn.compact
        def __call__(self, tokens, seq_lengths):
            xs = nn.Embed(vocab, embed)(tokens)

            def layer():
                return nn.RNN(nn.OptimizedLSTMCell(hidden))

            rnn = nn.Bidirectional(layer(), layer()) if bidirectional else layer()
            return nn.Dense(tags)(rnn(xs, seq_lengths=seq_lengths))

    return Tagger()


def to_flax(params, bidirectional):
    """The seqmask parameters in the Flax model's layout (gates i, f, g, o)."""

    def cell(p):
        hidden = p["recurrent_kernel"].shape[0]
        gates = {}
        for index, gate in enumerate("ifgo"):
            block = slice(index * hidden, (index + 1) * hidden)
            gates[f"i{gate}"] = {"kernel": p["input_kernel"][:, block]}
            gates[f"h{gate}"] = {
                "kernel": p["recurrent_kernel"][:, block],
                "bias": p["bias"][block],
            }
        return gates

    lstm = params["lstm"]
    cells = (
        {
            "OptimizedLSTMCell_0": cell(lstm["forward"]),
            "OptimizedLSTMCell_1": cell(lstm["backward"]),
        }
        if bidirectional
        else {"OptimizedLSTMCell_0": cell(lstm)}
    )
    return {
        "params": {
            "Embed_0": {"embedding": params["embed"]},
            "Dense_0": dict(params["out"]),
            **cells,
        }
    }


def flax_loss(model, variables, batch: Batch, reduction):
    logits = model.apply(variables, batch.tokens, batch.lengths)
    token = optax.softmax_cross_entropy_with_integer_labels(logits, batch.tags)
    total = jnp.sum(jnp.where(batch.mask, token, 0.0))
    if reduction == "sum":
        return total
    return total / jnp.maximum(jnp.sum(batch.mask), 1)


# --------------------------------------------------------------------------
# One epoch


class Mode(NamedTuple):
    params: Any  # the starting parameters, in this mode's layout
    loss: Callable  # loss(params, batch, reduction) -> scalar
    batches: Callable[[], Iterator[Batch]]


def build_modes(params, plans, bidirectional, flax_args) -> dict[str, Mode]:
    model = flax_model(**flax_args, bidirectional=bidirectional)
    flax_params = to_flax(params, bidirectional)

    def flax_mode(plan):
        return Mode(flax_params, lambda p, b, r: flax_loss(model, p, b, r), plan)

    def seqmask_mode(plan, skip_padding):
        def loss(p, b, r):
            return seqmask_loss(
                p, b, r, bidirectional=bidirectional, skip_padding=skip_padding
            )

        return Mode(params, loss, plan)

    return {
        name: (
            flax_mode(plans[name])
            if name.startswith("flax")
            # Packed rows are full (nothing to skip); mode 7 is mode 4 without.
            else seqmask_mode(plans[name], skip_padding=name not in NO_SKIP)
        )
        for name in MODES
    }


def _arrays(batch: Batch) -> Batch:
    """The fields a step uses (``lengths`` only without ``resets``)."""
    return batch._replace(lengths=None if batch.resets is not None else batch.lengths)


def total_loss(mode: Mode) -> float:
    """The sum of every real token's loss at the starting parameters."""
    forward = jax.jit(lambda p, b: mode.loss(p, b, "sum"))
    return float(
        sum(np.float64(forward(mode.params, _arrays(b))) for b in mode.batches())
    )


def train_epoch(mode: Mode, learning_rate: float) -> dict[str, Any]:
    """One epoch from the starting parameters, timed end to end (tracing,
    compilation and batching included)."""
    optimizer = optax.adam(learning_rate)

    def step(params, opt_state, batch):
        value, grads = jax.value_and_grad(mode.loss)(params, batch, "weighted_mean")
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    step = jax.jit(step)
    params = jax.tree.map(jnp.array, mode.params)  # a fresh copy
    real = slots = steps = 0
    shapes = set()
    losses = []
    start = time.perf_counter()
    opt_state = optimizer.init(params)
    for batch in mode.batches():
        params, opt_state, value = step(params, opt_state, _arrays(batch))
        losses.append(value)
        real += int(batch.mask.sum())
        slots += batch.mask.size
        steps += 1
        shapes.add(batch.tokens.shape)
    jax.block_until_ready((params, losses))
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "real_tokens": real,
        "slots": slots,
        "padding_fraction": 1.0 - real / slots,
        "real_tokens_per_s": real / seconds,
        "compiled_shapes": len(shapes),
        "steps": steps,
        "mean_training_loss": float(np.mean([float(v) for v in losses])),
    }


def run(args, bidirectional: bool, corpus: Corpus, boundaries) -> dict[str, Any]:
    params = init_params(
        jax.random.key(0), args.vocab, args.embed, args.hidden, args.tags, bidirectional
    )
    plans = batch_plans(corpus, args.batch, boundaries, args.seed)
    flax_args = dict(
        hidden=args.hidden, vocab=args.vocab, embed=args.embed, tags=args.tags
    )
    modes = build_modes(params, plans, bidirectional, flax_args)
    # The same total loss for the same parameters in every mode, before any
    # timing: the modes compute the same thing.
    totals = {name: total_loss(mode) for name, mode in modes.items()}
    reference = totals[MODES[0]]
    for name, value in totals.items():
        if not math.isclose(value, reference, rel_tol=1e-4):
            raise AssertionError(
                f"{name}: total loss {value:.6f} differs from {MODES[0]}'s "
                f"{reference:.6f}"
            )
    results = {}
    for name, mode in modes.items():
        results[name] = {
            **train_epoch(mode, args.learning_rate),
            "total_loss": totals[name],
        }
        row = results[name]
        print(
            f"  {'bi' if bidirectional else 'uni'} | {name}: {row['seconds']:.2f} s, "
            f"{row['real_tokens_per_s']:.0f} real tokens/s, padding "
            f"{row['padding_fraction']:.0%}, {row['compiled_shapes']} shapes"
        )
    return results


def summary(results) -> dict[str, Any]:
    rate = {name: row["real_tokens_per_s"] for name, row in results.items()}
    seqmask_modes = [name for name in MODES if name.startswith("seqmask")]
    best = max(seqmask_modes, key=rate.__getitem__)
    return {
        "best_seqmask_mode": best,
        # Rates, so above 1 is faster; the times' ratio is the inverse.
        "best_over_mode_1": rate[best] / rate[MODES[0]],
        "best_over_mode_3": rate[best] / rate[MODES[2]],
        "mode_1_time_over_best": results[MODES[0]]["seconds"]
        / results[best]["seconds"],
        "packed_compiled_shapes": results["seqmask, packed"]["compiled_shapes"],
    }


def plot(record, path) -> None:
    plt = pyplot()
    if plt is None:
        return
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    models = list(record["models"])
    width = 0.8 / len(models)
    positions = np.arange(len(MODES))
    for index, model in enumerate(models):
        rows = record["models"][model]["modes"]
        offset = positions + (index - (len(models) - 1) / 2) * width
        left.bar(
            offset, [rows[m]["padding_fraction"] for m in MODES], width, label=model
        )
        right.bar(
            offset, [rows[m]["real_tokens_per_s"] for m in MODES], width, label=model
        )
    for axis, title in (
        (left, "padding fraction (padded slots / all slots of the batches)"),
        (right, "real tokens per second (one epoch, compilation included)"),
    ):
        axis.set_xticks(positions, LABELS, fontsize=7)
        axis.set_title(title, fontsize=9)
        axis.legend(fontsize=8)
    figure.tight_layout()
    save_figure(figure, path)


def main() -> None:
    options = parser(__doc__, repeats=1)
    options.add_argument("--sentences", type=int, default=8192)
    options.add_argument("--max-length", type=int, default=256)
    options.add_argument("--batch", type=int, default=64)
    options.add_argument("--vocab", type=int, default=2000)
    options.add_argument("--embed", type=int, default=128)
    options.add_argument("--hidden", type=int, default=256)
    options.add_argument("--tags", type=int, default=16)
    options.add_argument("--buckets", type=int, default=8)
    options.add_argument("--learning-rate", type=float, default=1e-3)
    options.add_argument("--seed", type=int, default=0)
    options.add_argument(
        "--models", nargs="+", default=["uni", "bi"], choices=["uni", "bi"]
    )
    args = options.parse_args()
    if args.quick:
        args.sentences, args.max_length, args.batch, args.buckets = 32, 64, 16, 2
        args.vocab, args.embed, args.hidden, args.tags = 50, 8, 8, 4
    corpus = make_corpus(
        args.sentences, args.max_length, args.vocab, args.tags, args.seed
    )
    boundaries = bucket_boundaries(corpus.lengths, num_buckets=args.buckets)
    print(
        f"corpus: {args.sentences} sentences, lognormal(mu={LOGNORMAL_MU}, "
        f"sigma={LOGNORMAL_SIGMA}) lengths cut at {args.max_length}: mean "
        f"{corpus.lengths.mean():.1f}, longest {corpus.lengths.max()}; "
        f"boundaries {boundaries}"
    )
    # Pay JAX's one-off start-up costs before any timing.
    jax.block_until_ready(jax.jit(lambda x: jnp.tanh(x @ x.T))(jnp.ones((8, 8))))
    models = {}
    for name in args.models:
        results = run(args, name == "bi", corpus, boundaries)
        models[name] = {"modes": results, "summary": summary(results)}
    print(
        f"\nOne training epoch, compilation included; {RATIO} (the speed-ups "
        "below are rates, the inverse of time ratios)\n"
    )
    print(
        "| model | mode | real tokens/s | padding | compiled shapes | steps | epoch s |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for model, entry in models.items():
        for mode in MODES:
            row = entry["modes"][mode]
            print(
                f"| {model} | {mode} | {row['real_tokens_per_s']:.0f} "
                f"| {row['padding_fraction']:.0%} | {row['compiled_shapes']} "
                f"| {row['steps']} | {row['seconds']:.2f} |"
            )
    for model, entry in models.items():
        s = entry["summary"]
        print(
            f"\n{model}: best seqmask mode '{s['best_seqmask_mode']}': "
            f"{s['best_over_mode_1']:.2f}x the real tokens/s of mode 1 (target >= 4), "
            f"{s['best_over_mode_3']:.2f}x mode 3 (target >= 1.6); packed mode "
            f"compiled {s['packed_compiled_shapes']} training step(s)"
        )
    record = {
        **environment(),
        "benchmark": "ragged",
        "corpus": {
            "sentences": args.sentences,
            "lognormal_mu": LOGNORMAL_MU,
            "lognormal_sigma": LOGNORMAL_SIGMA,
            "source": "MLE fit to the sentence lengths (words) of ptb.test.txt and "
            "ptb.valid.txt, Penn Treebank LM corpus (Mikolov et al. 2010)",
            "max_length": args.max_length,
            "mean_length": float(corpus.lengths.mean()),
            "longest": int(corpus.lengths.max()),
            "boundaries": list(boundaries),
        },
        "model": {
            "batch": args.batch,
            "vocab": args.vocab,
            "embed": args.embed,
            "hidden": args.hidden,
            "tags": args.tags,
            "optimizer": f"adam({args.learning_rate})",
        },
        "modes": list(MODES),
        "models": models,
    }
    path = write_record(record, args.out, "ragged", args.quick)
    plot(record, path.with_suffix(".png"))


if __name__ == "__main__":
    main()
