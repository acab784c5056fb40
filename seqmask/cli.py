"""The ``seqmask`` command line: ``seqmask demo`` is the main job.

``seqmask demo`` trains an attention encoder-decoder
(:func:`seqmask.seq2seq.encoder_decoder`) on a translation-like task made in
code, whose sources and targets have different, varying lengths: human-written
dates to ISO 8601 (``--task dates``, the default: "Thu 7 Mar 2024" ->
"2024-03-07", "March 2024" -> "2024-03", "7 March" -> "--03-07") or numbers to
English words (``--task numbers``: "472,019" -> "four hundred seventy two
thousand nineteen"). Padded positions of sources and targets hold random
tokens, so the run also shows that the masked encoder, the masked attention
and the target-weighted loss ignore whatever sits there. It then reports the
held-out exact match of greedy and beam-search decoding, on examples whose
targets never occur in training, and two checks that hold whatever the
training did. Also runnable as ``python -m seqmask demo``.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import string
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

__all__ = ["main", "Task", "TASKS", "date_example", "number_example", "number_words"]

PAD, BOS, EOS = 0, 1, 2
_SPECIALS = ("<pad>", "<bos>", "<eos>")
_HELD_OUT_PERCENT = 5


class Task(NamedTuple):
    """A generated translation-like task.

    Attributes:
      name: the ``--task`` name.
      description: one line for the demo's header.
      example: ``(rng) -> (source, target)``: a source string and its target
        as a tuple of target tokens.
      source_symbols: every character a source may contain.
      target_symbols: every target token.
      separator: how target tokens are joined for printing.
      max_source_len: the longest source, in characters.
      max_target_len: the longest target, in tokens (EOS not counted).
      steps: the default number of training steps.
    """

    name: str
    description: str
    example: Callable[[np.random.Generator], tuple[str, tuple[str, ...]]]
    source_symbols: str
    target_symbols: tuple[str, ...]
    separator: str
    max_source_len: int
    max_target_len: int
    steps: int


_MONTHS = (
    "January February March April May June July August September October "
    "November December"
).split()
_WEEKDAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
_FIRST_DAY = datetime.date(1950, 1, 1).toordinal()
_LAST_DAY = datetime.date(2049, 12, 31).toordinal()


def _suffix(day: int) -> str:
    if 11 <= day % 100 <= 13:
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")


def _month(d: datetime.date) -> str:
    return _MONTHS[d.month - 1]


def _weekday(d: datetime.date) -> str:
    return _WEEKDAYS[d.weekday()]


# (what the source gives: "full" date, "month" of a year or "day" of a
# month; how it is written). Each separator style implies one field order,
# so every source has exactly one reading.
_DATE_FORMATS: tuple[tuple[str, Callable[[datetime.date], str]], ...] = (
    ("full", lambda d: f"{d.day} {_month(d)} {d.year}"),
    ("full", lambda d: f"{_month(d)} {d.day}, {d.year}"),
    ("full", lambda d: f"{_month(d)[:3]} {d.day}, {d.year}"),
    ("full", lambda d: f"{d.day} {_month(d)[:3]} {d.year}"),
    ("full", lambda d: f"{_weekday(d)}, {_month(d)} {d.day}, {d.year}"),
    ("full", lambda d: f"{_weekday(d)[:3]} {d.day} {_month(d)[:3]} {d.year}"),
    ("full", lambda d: f"{d.day:02d}.{d.month:02d}.{d.year}"),
    ("full", lambda d: f"{d.month}/{d.day}/{d.year}"),
    ("full", lambda d: f"{d.year}/{d.month:02d}/{d.day:02d}"),
    ("full", lambda d: f"{d.year}{d.month:02d}{d.day:02d}"),
    ("full", lambda d: f"the {d.day}{_suffix(d.day)} of {_month(d)} {d.year}"),
    ("full", lambda d: f"{_month(d).lower()} {d.day} {d.year}"),
    ("full", lambda d: f"{d.day:02d}-{_month(d)[:3].upper()}-{d.year}"),
    ("month", lambda d: f"{_month(d)} {d.year}"),
    ("month", lambda d: f"{_month(d)[:3]} {d.year}"),
    ("month", lambda d: f"{d.month:02d}/{d.year}"),
    ("day", lambda d: f"{_month(d)} {d.day}"),
    ("day", lambda d: f"{d.day} {_month(d)}"),
    ("day", lambda d: f"{_month(d)[:3]} {d.day}"),
)
_DATE_KINDS = np.array([kind for kind, _ in _DATE_FORMATS])
# Full dates make up 80% of the examples; each kind is spread evenly over
# its formats.
_DATE_WEIGHTS = np.array(
    [{"full": 0.8, "month": 0.1, "day": 0.1}[kind] for kind in _DATE_KINDS]
) / np.array([np.sum(_DATE_KINDS == kind) for kind in _DATE_KINDS])


def date_example(rng: np.random.Generator) -> tuple[str, tuple[str, ...]]:
    """A date between 1950 and 2049 in a random human format, and its ISO form.

    Full dates map to ``YYYY-MM-DD``, a month of a year ("March 2024") to
    ``YYYY-MM`` and a day of a month ("7 March") to ``--MM-DD``, all
    ISO 8601 forms. The target is a tuple of characters.

    Examples:
      >>> import numpy as np
      >>> from seqmask.cli import date_example
      >>> source, target = date_example(np.random.default_rng(3))
      >>> source, "".join(target)
      ('25 Feb 2031', '2031-02-25')
    """
    day = datetime.date.fromordinal(int(rng.integers(_FIRST_DAY, _LAST_DAY + 1)))
    index = int(rng.choice(len(_DATE_FORMATS), p=_DATE_WEIGHTS))
    kind, write = _DATE_FORMATS[index]
    if kind == "full":
        target = day.isoformat()
    elif kind == "month":
        target = f"{day.year:04d}-{day.month:02d}"
    else:
        target = f"--{day.month:02d}-{day.day:02d}"
    return write(day), tuple(target)


_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve "
    "thirteen fourteen fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def _below_thousand(n: int) -> list[str]:
    hundreds, rest = divmod(n, 100)
    words = [_ONES[hundreds], "hundred"] if hundreds else []
    if rest >= 20:
        tens, ones = divmod(rest, 10)
        words += [_TENS[tens]] + ([_ONES[ones]] if ones else [])
    elif rest:
        words.append(_ONES[rest])
    return words


def number_words(n: int) -> tuple[str, ...]:
    """The English words for ``0 <= n < 10**6`` (no "and", no hyphens).

    Examples:
      >>> from seqmask.cli import number_words
      >>> " ".join(number_words(472_019))
      'four hundred seventy two thousand nineteen'
    """
    if not 0 <= n < 10**6:
        raise ValueError(f"number_words: n must be in [0, 10**6); got {n}.")
    if n == 0:
        return ("zero",)
    thousands, rest = divmod(n, 1000)
    words = _below_thousand(thousands) + ["thousand"] if thousands else []
    return tuple(words + _below_thousand(rest))


def number_example(rng: np.random.Generator) -> tuple[str, tuple[str, ...]]:
    """A number of 1 to 6 digits, written plain or grouped, and its words.

    Examples:
      >>> import numpy as np
      >>> from seqmask.cli import number_example
      >>> source, words = number_example(np.random.default_rng(0))
      >>> source, " ".join(words)
      ('673,265', 'six hundred seventy three thousand two hundred sixty five')
    """
    digits = int(rng.integers(1, 7))
    low = 0 if digits == 1 else 10 ** (digits - 1)
    n = int(rng.integers(low, 10**digits))
    style = int(rng.integers(3)) if n >= 1000 else 0
    source = (f"{n}", f"{n:,}", f"{n:,}".replace(",", " "))[style]
    return source, number_words(n)


_NUMBER_WORDS = tuple(dict.fromkeys(_ONES + _TENS[2:] + ["hundred", "thousand"]))

TASKS: dict[str, Task] = {
    "dates": Task(
        name="dates",
        description=(
            "dates in 19 human formats -> ISO 8601 (2024-03-07, 2024-03, --03-07); "
            "sources of 5-29 characters, targets of 7 or 10"
        ),
        example=date_example,
        source_symbols=" ,./-" + string.digits + string.ascii_letters,
        target_symbols=tuple(string.digits + "-"),
        separator="",
        max_source_len=29,
        max_target_len=10,
        steps=1000,
    ),
    "numbers": Task(
        name="numbers",
        description=(
            "numbers (0 to 999 999, plain or grouped) -> English words; sources of "
            "1-7 characters, targets of 1-10 words"
        ),
        example=number_example,
        source_symbols=" ," + string.digits,
        target_symbols=_NUMBER_WORDS,
        separator=" ",
        max_source_len=7,
        max_target_len=10,
        steps=1000,
    ),
}


def _held_out(target: tuple[str, ...], seed: int) -> bool:
    """Whether a target belongs to the held-out split (by a hash, per seed)."""
    return zlib.crc32(f"{seed}|{'|'.join(target)}".encode()) % 100 < _HELD_OUT_PERCENT


def _examples(task: Task, rng, count: int, *, held_out: bool, seed: int):
    """``count`` examples whose targets are (or are not) held out."""
    pairs = []
    while len(pairs) < count:
        source, target = task.example(rng)
        if _held_out(target, seed) == held_out:
            pairs.append((source, target))
    return pairs


class _Batch(NamedTuple):
    source: np.ndarray  # [B, S] int32, random ids at padded positions
    source_mask: np.ndarray  # [B, S] bool
    targets: np.ndarray  # [B, T] int32: target ids, EOS, then random ids
    target_lengths: np.ndarray  # [B], EOS included


def _encode(pairs, task: Task, rng, *, shift_sources: bool = False) -> _Batch:
    """Token arrays for ``pairs`` with random tokens (never PAD) at every padded
    position; sources start at position 0, or with ``shift_sources`` at a
    random offset (padding on the left, the right or both)."""
    source_index = {c: i + len(_SPECIALS) for i, c in enumerate(task.source_symbols)}
    target_index = {t: i + len(_SPECIALS) for i, t in enumerate(task.target_symbols)}
    rows = len(pairs)
    width_s, width_t = task.max_source_len, task.max_target_len + 1
    first = len(_SPECIALS)
    source = rng.integers(first, first + len(source_index), (rows, width_s))
    targets = rng.integers(first, first + len(target_index), (rows, width_t))
    source_mask = np.zeros((rows, width_s), bool)
    target_lengths = np.zeros(rows, np.int32)
    for row, (text, target) in enumerate(pairs):
        ids = [source_index[c] for c in text]
        offset = int(rng.integers(width_s - len(ids) + 1)) if shift_sources else 0
        source[row, offset : offset + len(ids)] = ids
        source_mask[row, offset : offset + len(ids)] = True
        ids = [target_index[t] for t in target] + [EOS]
        targets[row, : len(ids)] = ids
        target_lengths[row] = len(ids)
    return _Batch(
        source.astype(np.int32), source_mask, targets.astype(np.int32), target_lengths
    )


def _exact_match(tokens, lengths, batch: _Batch) -> np.ndarray:
    """Per row: the decoded tokens equal the target, EOS included."""
    tokens, lengths = np.asarray(tokens), np.asarray(lengths)
    valid = np.arange(tokens.shape[-1]) < batch.target_lengths[:, None]
    same = np.all((tokens == batch.targets) | ~valid, axis=-1)
    return same & (lengths == batch.target_lengths)


def _text(tokens, length: int, task: Task) -> str:
    symbols = (*_SPECIALS, *task.target_symbols)
    ids = [int(t) for t in tokens[:length]]
    if ids and ids[-1] == EOS:
        ids = ids[:-1]
    return task.separator.join(symbols[i] for i in ids)


def _demo(args: argparse.Namespace) -> int:
    import jax
    import jax.numpy as jnp
    import optax
    from tqdm.auto import tqdm

    from seqmask import decoding, seq2seq

    task = TASKS[args.task]
    quick = args.quick
    steps = 30 if quick else (args.steps or task.steps)
    hidden = 8 if quick else args.hidden
    eval_size = 64 if quick else args.eval_size
    beam_width = 2 if quick else args.beam_width
    batch_size = args.batch_size
    max_length = task.max_target_len + 1
    start = time.perf_counter()

    model = seq2seq.encoder_decoder(
        len(_SPECIALS) + len(task.source_symbols),
        len(_SPECIALS) + len(task.target_symbols),
        embed_size=hidden,
        hidden_size=hidden,
        bos_id=BOS,
        eos_id=EOS,
        pad_id=PAD,
    )
    params = model.init(jax.random.key(args.seed))
    # Compilation dominates a smoke run on CPU: skipping LLVM's optimisation
    # passes halves it, and the few steps run fast enough unoptimised.
    run_compile = (
        {"xla_backend_optimization_level": 0}
        if quick and jax.default_backend() == "cpu"
        else None
    )
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, 5e-3, min(100, steps // 10 + 1), steps, end_value=2e-4
    )
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(schedule))
    opt_state = optimizer.init(params)

    def loss_fn(params, batch):
        return model.loss(
            params,
            batch.source,
            batch.targets,
            source_mask=batch.source_mask,
            target_lengths=batch.target_lengths,
        )

    @functools.partial(jax.jit, compiler_options=run_compile)
    def train_step(params, opt_state, batch):
        loss, grads = jax.value_and_grad(loss_fn)(params, batch)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    @functools.partial(jax.jit, compiler_options=run_compile)
    def evaluate(params, batch):
        """Greedy, beam (widths k and 1) and teacher-forced logits, in one program."""
        state = model.encode(params, batch.source, source_mask=batch.source_mask)
        bos = jnp.full(batch.source.shape[:1], BOS, jnp.int32)
        options = dict(max_length=max_length, eos_id=EOS, pad_id=PAD)
        greedy = decoding.greedy(model.step, params, state, bos, **options)
        beam = decoding.beam_search(
            model.step,
            params,
            state,
            bos,
            beam_width=beam_width,
            length_penalty=0.6,
            **options,
        )
        beam1 = decoding.beam_search(
            model.step, params, state, bos, beam_width=1, **options
        )
        logits = model.apply(
            params,
            batch.source,
            batch.targets,
            source_mask=batch.source_mask,
            target_lengths=batch.target_lengths,
        )
        return (
            greedy.tokens,
            greedy.lengths,
            beam.tokens[:, 0],
            beam.lengths[:, 0],
            beam1.tokens[:, 0],
            logits,
        )

    print(
        f"seqmask demo ({task.name}): attention seq2seq (bidirectional LSTM encoder, "
        f"LSTM decoder, {hidden} units, additive attention) learns "
        f"{task.description}."
    )
    rng = np.random.default_rng(args.seed)
    bar = tqdm(range(steps), desc="training", unit="step", disable=args.no_progress)
    smoothed = None
    train_start = time.perf_counter()
    for index in bar:
        pairs = _examples(task, rng, batch_size, held_out=False, seed=args.seed)
        batch = _encode(pairs, task, rng)
        params, opt_state, loss = train_step(params, opt_state, batch)
        if index % 10 == 0:
            # Reading the loss waits for the step; doing it every 10 steps
            # lets the next batches be made while the device works.
            value = float(loss)
            smoothed = value if smoothed is None else 0.8 * smoothed + 0.2 * value
            bar.set_postfix(loss=f"{smoothed:.4f}", refresh=False)
    train_seconds = time.perf_counter() - train_start
    print(f"trained {steps} steps of {batch_size} examples in {train_seconds:.1f} s")

    test_rng = np.random.default_rng([args.seed, 1])
    pairs = _examples(task, test_rng, eval_size, held_out=True, seed=args.seed)
    batch = _encode(pairs, task, test_rng)
    tokens, lengths, beam_tokens, beam_lengths, beam1_tokens, logits = map(
        np.asarray, evaluate(params, batch)
    )
    greedy_match = _exact_match(tokens, lengths, batch)
    beam_match = _exact_match(beam_tokens, beam_lengths, batch)
    print(
        f"held-out exact match on {eval_size} examples whose targets never occur in "
        f"training: greedy {greedy_match.mean():.1%}, beam search (width "
        f"{beam_width}) {beam_match.mean():.1%}"
    )

    # Checks that hold whatever the training did.
    same = int(np.sum(np.all(beam1_tokens == tokens, axis=-1)))
    print(f"check: beam search of width 1 equals greedy on {same}/{eval_size} rows")
    order = np.arange(eval_size)[::-1]
    moved = _encode([pairs[i] for i in order], task, test_rng, shift_sources=True)
    moved_tokens, _, _, _, _, moved_logits = map(np.asarray, evaluate(params, moved))
    valid = np.arange(max_length) < batch.target_lengths[:, None]
    difference = np.abs(logits - moved_logits[order])[valid]
    same = int(np.sum(np.all(moved_tokens[order] == tokens, axis=-1)))
    print(
        "check: with the rows reversed, sources moved to random offsets and other "
        f"random padding, greedy outputs agree on {same}/{eval_size} rows and "
        f"teacher-forced logits differ by at most {float(difference.max()):.1e}"
    )
    print("examples (held out):")
    for row in range(min(5, eval_size)):
        source, target = pairs[row]
        output = _text(tokens[row], int(lengths[row]), task)
        verdict = (
            "ok" if greedy_match[row] else "expected " + task.separator.join(target)
        )
        print(f"  {source!r:>31} -> {output}   [{verdict}]")
    print(f"total time {time.perf_counter() - start:.1f} s")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``seqmask`` console script.

    Examples:
      >>> from seqmask.cli import main
      >>> main([])  # doctest: +ELLIPSIS
      usage: seqmask ...
      2
    """
    parser = argparse.ArgumentParser(
        prog="seqmask", description="seqmask: variable-length sequence learning in JAX."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="train an attention seq2seq on a translation-like task",
        description="Train an attention encoder-decoder on a task generated in "
        "code and report held-out exact match for greedy and beam decoding.",
    )
    demo.add_argument(
        "--task",
        choices=sorted(TASKS),
        default="dates",
        help="dates: human-written dates to ISO 8601 (default); numbers: numbers to "
        "English words",
    )
    demo.add_argument(
        "--steps", type=int, default=None, help="training steps (default: per task)"
    )
    demo.add_argument("--seed", type=int, default=0, help="random seed")
    demo.add_argument("--batch-size", type=int, default=64, help="batch size")
    demo.add_argument("--hidden", type=int, default=32, help="LSTM hidden size")
    demo.add_argument("--beam-width", type=int, default=4, help="beam width")
    demo.add_argument(
        "--eval-size", type=int, default=1000, help="held-out examples to decode"
    )
    demo.add_argument(
        "--quick",
        action="store_true",
        help="a tiny model and a few steps (a smoke run)",
    )
    demo.add_argument(
        "--no-progress", action="store_true", help="hide the progress bar"
    )
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "demo":
        for name in ("steps", "batch_size", "hidden", "beam_width", "eval_size"):
            value = getattr(args, name)
            if value is not None and value <= 0:
                parser.error(
                    f"--{name.replace('_', '-')} must be positive; got {value}"
                )
        return _demo(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
