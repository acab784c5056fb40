"""The demo's job: train the encoder-decoder, then decode held-out examples."""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

import seqmask._checks as _checks
from seqmask import decoding, metrics, seq2seq
from seqmask.demo._batches import Batch, decode_text, encode
from seqmask.demo._tasks import BOS, EOS, PAD, TASKS, Task, make_examples

DEFAULTS: dict[str, Any] = dict(
    steps=None, batch_size=64, hidden=32, beam_width=4, eval_size=1000
)
"""The defaults of a full run; ``steps=None`` means the task's own."""
QUICK_DEFAULTS: dict[str, Any] = dict(steps=30, hidden=8, beam_width=2, eval_size=64)
"""The defaults that ``quick`` changes (only defaults: a value given
explicitly always wins)."""
SEED_LIMIT = 2**32 - 1
"""The largest seed."""
# Held-out examples are decoded this many at a time (one compiled program).
_EVAL_CHUNK = 200


class DemoConfig(NamedTuple):
    """The settings of one demo run; :func:`make_config` fills in defaults.

    Attributes:
      task: a key of :data:`TASKS`.
      steps: training steps.
      seed: seeds the parameters, the data and the held-out split.
      batch_size: training examples per step.
      hidden: the LSTM hidden size (and the embedding size).
      beam_width: the beam search's width.
      eval_size: held-out examples to decode.
      quick: a smoke run (compiled without LLVM's optimisations on CPU).
      progress: show progress bars.
    """

    task: str
    steps: int
    seed: int
    batch_size: int
    hidden: int
    beam_width: int
    eval_size: int
    quick: bool
    progress: bool


def make_config(
    task: str = "dates",
    *,
    quick: bool = False,
    seed: int = 0,
    progress: bool = True,
    steps: int | None = None,
    batch_size: int | None = None,
    hidden: int | None = None,
    beam_width: int | None = None,
    eval_size: int | None = None,
) -> DemoConfig:
    """A checked :class:`DemoConfig`; ``None`` takes the default.

    ``quick`` changes only the defaults (:data:`QUICK_DEFAULTS`: a tiny model,
    a few steps, a small evaluation); a value given explicitly is kept.

    Args:
      task: a key of :data:`TASKS`.
      quick: a smoke run.
      seed: an int in ``[0, 2**32 - 1]``.
      progress: show progress bars.
      steps, batch_size, hidden, beam_width, eval_size: positive ints, or
        ``None`` for the default (:data:`DEFAULTS`; ``steps`` defaults to the
        task's). ``beam_width`` is at most the target vocabulary's size.

    Returns:
      The configuration.

    Raises:
      TypeError: for a value that is not an int (or a bool).
      ValueError: for an unknown task or a value out of range.

    Examples:
      >>> from seqmask.demo import make_config
      >>> config = make_config(quick=True, steps=100)
      >>> config.steps, config.hidden, config.batch_size
      (100, 8, 64)
    """
    where = "seqmask.demo.make_config"
    _checks.one_of(task, sorted(TASKS), "task", where)
    quick = _checks.flag(quick, "quick", where)
    progress = _checks.flag(progress, "progress", where)
    seed = _checks.integer(seed, "seed", where, minimum=0)
    _checks.in_range(seed, "seed", where, low=0, high=SEED_LIMIT)
    given = dict(
        steps=steps,
        batch_size=batch_size,
        hidden=hidden,
        beam_width=beam_width,
        eval_size=eval_size,
    )
    values = {}
    for name, value in given.items():
        if value is None:
            value = (QUICK_DEFAULTS if quick else {}).get(name, DEFAULTS[name])
        if value is None:  # steps: the task's own
            value = TASKS[task].steps
        values[name] = _checks.positive_int(value, name, where)
    vocabulary = len(TASKS[task].target_vocabulary)
    _checks.in_range(
        values["beam_width"],
        "beam_width",
        where,
        low=1,
        high=vocabulary,
        hint=f" (the {task} task has {vocabulary} target tokens)",
    )
    return DemoConfig(task=task, quick=quick, seed=seed, progress=progress, **values)


def make_model(task: Task, hidden: int) -> seq2seq.EncoderDecoder:
    """The demo's attention encoder-decoder for ``task``.

    A bidirectional LSTM encoder, an LSTM decoder with additive attention;
    embeddings and LSTMs of size ``hidden``.

    Args:
      task: gives the vocabulary sizes.
      hidden: the embedding and hidden size.

    Returns:
      A :class:`seqmask.seq2seq.EncoderDecoder` with the task's special ids.

    Examples:
      >>> import jax
      >>> from seqmask.demo import TASKS, make_model
      >>> model = make_model(TASKS["numbers"], hidden=4)
      >>> params = model.init(jax.random.key(0))
      >>> params["target_embedding"].shape
      (33, 4)
    """
    return seq2seq.encoder_decoder(
        len(task.source_vocabulary),
        len(task.target_vocabulary),
        embed_size=hidden,
        hidden_size=hidden,
        bos_id=BOS,
        eos_id=EOS,
        pad_id=PAD,
    )


def make_optimizer(steps: int) -> optax.GradientTransformation:
    """Adam with warm-up and cosine decay over ``steps``, gradients clipped.

    Args:
      steps: the number of training steps.

    Returns:
      An optax transformation.

    Examples:
      >>> import jax.numpy as jnp
      >>> from seqmask.demo import make_optimizer
      >>> optimizer = make_optimizer(100)
      >>> state = optimizer.init({"w": jnp.zeros(3)})
    """
    steps = _checks.integer(steps, "steps", "make_optimizer", minimum=1)
    # The warm-up stays shorter than the run (optax needs a step to decay).
    warmup = min(100, steps // 10 + 1, steps - 1)
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, 5e-3, warmup, steps, end_value=2e-4
    )
    return optax.chain(optax.clip_by_global_norm(1.0), optax.adam(schedule))


class DemoResult(NamedTuple):
    """What a demo run measured.

    Attributes:
      greedy_exact_match: the fraction of held-out rows that greedy decoding
        gets exactly right.
      beam_exact_match: the same for beam search.
      beam1_equals_greedy: rows on which beam search of width 1 gives greedy's
        tokens (all of them, whatever the training did).
      padding_invariant_rows: rows whose greedy output stays the same when the
        rows are reversed, the sources moved to random offsets and the padding
        redrawn (all of them, whatever the training did).
      max_logit_difference: the largest change of a teacher-forced logit under
        the same moves (zero up to rounding).
      examples: ``(source, expected, decoded)`` for a few held-out rows.
      compile_seconds: compiling the training step and the evaluation.
      train_seconds: the training steps alone.
    """

    greedy_exact_match: float
    beam_exact_match: float
    beam1_equals_greedy: int
    padding_invariant_rows: int
    max_logit_difference: float
    examples: list[tuple[str, str, str]]
    compile_seconds: float
    train_seconds: float


def _compiler_options(quick: bool) -> dict | None:
    # Compilation dominates a smoke run on CPU: skipping LLVM's optimisation
    # passes halves it, and the few steps run fast enough unoptimised.
    if quick and jax.default_backend() == "cpu":
        return {"xla_backend_optimization_level": 0}
    return None


def _compile(function, *args, quick: bool, what: str):
    """``function`` compiled for ``args``, announced as its own phase."""
    print(f"compiling {what}...", flush=True)
    start = time.perf_counter()
    compiled = jax.jit(function).lower(*args).compile(_compiler_options(quick))
    seconds = time.perf_counter() - start
    print(f"compiled {what} in {seconds:.1f} s", flush=True)
    return compiled, seconds


def _train(config: DemoConfig, model, params):
    """Train for ``config.steps``; returns params and compile/train seconds."""
    task = TASKS[config.task]
    optimizer = make_optimizer(config.steps)
    opt_state = optimizer.init(params)

    def train_step(params, opt_state, batch: Batch):
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

    rng = np.random.default_rng(config.seed)

    def next_batch() -> Batch:
        pairs = make_examples(
            task, rng, config.batch_size, held_out=False, seed=config.seed
        )
        return encode(pairs, task, rng)

    batch = next_batch()
    step, compile_seconds = _compile(
        train_step,
        params,
        opt_state,
        batch,
        quick=config.quick,
        what="the training step",
    )
    bar = tqdm(
        range(config.steps), desc="training", unit="step", disable=not config.progress
    )
    smoothed = None
    start = time.perf_counter()
    for index in bar:
        params, opt_state, loss = step(params, opt_state, batch)
        batch = next_batch()  # made while the device works on the step
        if index % 10 == 0:
            # Reading the loss waits for the step: every 10 steps only.
            value = float(loss)
            smoothed = value if smoothed is None else 0.8 * smoothed + 0.2 * value
            bar.set_postfix(loss=f"{smoothed:.4f}", refresh=False)
    jax.block_until_ready(params)
    bar.close()
    return params, compile_seconds, time.perf_counter() - start


def _evaluation(model, beam_width: int, max_length: int):
    """Greedy, beam (widths k and 1) and teacher-forced logits, in one program."""

    def evaluate(params, batch: Batch):
        state = model.encode(params, batch.source, source_mask=batch.source_mask)
        bos = jnp.full(batch.source.shape[:1], BOS, jnp.int32)
        start = (model.step, params, state, bos)
        ids: dict[str, Any] = dict(max_length=max_length, eos_id=EOS, pad_id=PAD)
        greedy = decoding.greedy(*start, **ids)
        beam = decoding.beam_search(
            *start, beam_width=beam_width, length_penalty=0.6, **ids
        )
        beam1 = decoding.beam_search(*start, beam_width=1, **ids)
        logits = model.apply(
            params,
            batch.source,
            batch.targets,
            source_mask=batch.source_mask,
            target_lengths=batch.target_lengths,
        )
        return dict(
            tokens=greedy.tokens,
            lengths=greedy.lengths,
            beam_tokens=beam.tokens[:, 0],
            beam_lengths=beam.lengths[:, 0],
            beam1_tokens=beam1.tokens[:, 0],
            logits=logits,
        )

    return evaluate


def _chunks(batch: Batch, size: int) -> Iterator[Batch]:
    """``batch`` in chunks of ``size`` rows; the last one is filled up with
    rows from the start, so that every chunk has the compiled shape."""
    rows = len(batch.target_lengths)
    order = np.arange(-(-rows // size) * size) % rows
    for start in range(0, len(order), size):
        index = order[start : start + size]
        yield Batch(*(np.asarray(field)[index] for field in batch))


def _decode_all(evaluate, params, batch: Batch, size: int, desc: str, progress: bool):
    """``evaluate`` over every row of ``batch``, chunk by chunk, with a bar."""
    rows = len(batch.target_lengths)
    parts = []
    chunks = _chunks(batch, size)
    for chunk in tqdm(
        chunks, desc=desc, total=-(-rows // size), unit="chunk", disable=not progress
    ):
        parts.append(jax.tree.map(np.asarray, evaluate(params, chunk)))
    return {key: np.concatenate([p[key] for p in parts])[:rows] for key in parts[0]}


def run(config: DemoConfig) -> DemoResult:
    """Train the demo's model as ``config`` says, evaluate it, print a report.

    Prints what it does as it goes (compilation as its own phase, progress
    bars for training and decoding when ``config.progress``), then the
    held-out exact match of greedy and beam-search decoding, two checks that
    hold whatever the training did, and a few examples.

    Args:
      config: from :func:`make_config`.

    Returns:
      A :class:`DemoResult`.
    """
    start = time.perf_counter()
    task = TASKS[config.task]
    model = make_model(task, config.hidden)
    print(
        f"seqmask demo ({task.name}): attention seq2seq (bidirectional LSTM encoder, "
        f"LSTM decoder, {config.hidden} units, additive attention) learns "
        f"{task.description}."
    )
    if config.quick:
        print(
            f"--quick: a smoke run ({config.steps} steps, {config.hidden} hidden "
            "units) that checks the pipeline end to end; its accuracy is not meant "
            "to be high. Run without --quick to train a useful model."
        )
    params = model.init(jax.random.key(config.seed))
    params, compile_train, train_seconds = _train(config, model, params)
    print(
        f"trained {config.steps} steps of {config.batch_size} examples in "
        f"{train_seconds:.1f} s"
    )
    result = _evaluate(config, model, params, compile_train, train_seconds)
    print(f"total time {time.perf_counter() - start:.1f} s")
    return result


def _exact_match(tokens, lengths, batch: Batch) -> np.ndarray:
    """Per row: the decoded tokens equal the target, EOS included."""
    return np.asarray(
        metrics.exact_match(
            tokens,
            batch.targets,
            hypothesis_lengths=lengths,
            reference_lengths=batch.target_lengths,
        )
    )


def _evaluate(
    config: DemoConfig, model, params, compile_train: float, train_seconds: float
) -> DemoResult:
    """Decode the held-out examples, run the checks, print the report; the
    result counts the training's compile and run times too."""
    task = TASKS[config.task]
    size = min(config.eval_size, _EVAL_CHUNK)
    max_length = task.max_target_len + 1
    test_rng = np.random.default_rng([config.seed, 1])
    pairs = make_examples(
        task, test_rng, config.eval_size, held_out=True, seed=config.seed
    )
    batch = encode(pairs, task, test_rng)
    evaluate, compile_seconds = _compile(
        _evaluation(model, config.beam_width, max_length),
        params,
        next(_chunks(batch, size)),
        quick=config.quick,
        what="decoding (greedy and beam search)",
    )
    decode = functools.partial(
        _decode_all, evaluate, params, size=size, progress=config.progress
    )
    out = decode(batch, desc="decoding held-out examples")
    greedy_match = _exact_match(out["tokens"], out["lengths"], batch)
    beam_match = _exact_match(out["beam_tokens"], out["beam_lengths"], batch)
    print(
        f"held-out exact match on {config.eval_size} examples whose targets never "
        f"occur in training: greedy {greedy_match.mean():.1%}, beam search (width "
        f"{config.beam_width}) {beam_match.mean():.1%}"
    )
    # Checks that hold whatever the training did.
    same_beam1 = int(np.sum(np.all(out["beam1_tokens"] == out["tokens"], axis=-1)))
    print(
        f"check: beam search of width 1 equals greedy on {same_beam1}/"
        f"{config.eval_size} rows"
    )
    order = np.arange(config.eval_size)[::-1]
    moved = encode([pairs[i] for i in order], task, test_rng, shift_sources=True)
    moved_out = decode(moved, desc="decoding with the padding moved")
    valid = np.arange(max_length) < batch.target_lengths[:, None]
    difference = float(np.abs(out["logits"] - moved_out["logits"][order])[valid].max())
    same = int(np.sum(np.all(moved_out["tokens"][order] == out["tokens"], axis=-1)))
    print(
        "check: with the rows reversed, sources moved to random offsets and other "
        f"random padding, greedy outputs agree on {same}/{config.eval_size} rows "
        f"and teacher-forced logits differ by at most {difference:.1e}"
    )
    print("examples (held out):")
    examples = []
    for row in range(min(5, config.eval_size)):
        source, target = pairs[row]
        output = decode_text(out["tokens"][row], int(out["lengths"][row]), task)
        expected = task.separator.join(target)
        verdict = "ok" if greedy_match[row] else f"expected {expected}"
        print(f"  {source!r:>31} -> {output}   [{verdict}]")
        examples.append((source, expected, output))
    return DemoResult(
        greedy_exact_match=float(greedy_match.mean()),
        beam_exact_match=float(beam_match.mean()),
        beam1_equals_greedy=same_beam1,
        padding_invariant_rows=same,
        max_logit_difference=difference,
        examples=examples,
        compile_seconds=compile_train + compile_seconds,
        train_seconds=train_seconds,
    )
