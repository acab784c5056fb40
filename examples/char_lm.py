"""A character-level language model trained statefully with truncated BPTT.

The corpus is text that ships with Python: the docstrings of a few dozen
standard-library modules and their public classes and functions, one
docstring a sequence. :func:`seqmask.data.stateful_batches` lays the
docstrings into ``batch_size`` lanes, so that each chunk of ``chunk_len``
characters continues the previous chunk of the same lane, with ``resets``
where a lane starts a new docstring. The model (embedding, LSTM whose
initial state is learned, output projection) threads its carry from chunk
to chunk; :func:`seqmask.carry.truncated_bptt_step` differentiates each
chunk only through itself and updates the parameters with Adam, in one
compiled step. Every reset sends a lane back to the learned initial state,
which is how that state gets its gradient.

Run ``python examples/char_lm.py`` (about a minute on two CPU cores) or
``--quick`` (a few seconds). The functions are meant to be imported from a
notebook as well: ``load_corpus``, ``make_model``, ``train``,
``greedy_sample``.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import time
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

import seqmask
from seqmask.carry import truncated_bptt_step
from seqmask.data import Chunk, stateful_batches

# Modules whose documentation makes the corpus: pure-Python, importable
# everywhere, and written in ordinary English prose.
STDLIB_MODULES = (
    "argparse", "ast", "asyncio", "base64", "bisect", "calendar", "codecs",
    "collections", "configparser", "contextlib", "copy", "csv", "dataclasses",
    "datetime", "decimal", "difflib", "doctest", "email", "enum", "fnmatch",
    "fractions", "ftplib", "functools", "getopt", "gettext", "glob", "gzip",
    "heapq", "hmac", "html", "http.client", "imaplib", "inspect", "io",
    "ipaddress", "itertools", "json", "locale", "logging", "mailbox",
    "mimetypes", "numbers", "operator", "optparse", "os", "pathlib", "pickle",
    "pkgutil", "platform", "poplib", "pprint", "pydoc", "queue", "random", "re",
    "sched", "secrets", "selectors", "shlex", "shutil", "smtplib", "socket",
    "statistics", "string", "subprocess", "tarfile", "tempfile", "textwrap",
    "threading", "tokenize", "traceback", "typing", "unittest", "urllib.parse",
    "uuid", "warnings", "weakref", "zipfile",
)  # fmt: skip


class Vocabulary(NamedTuple):
    """Characters and their ids; ids index ``chars``."""

    chars: str

    def encode(self, text: str) -> np.ndarray:
        """``text`` as int32 ids ``[len(text)]``; unknown characters become ``?``."""
        index = {c: i for i, c in enumerate(self.chars)}
        unknown = index["?"]
        return np.array([index.get(c, unknown) for c in text], np.int32)

    def decode(self, ids) -> str:
        """The characters of the ids ``[n]``."""
        return "".join(self.chars[int(i)] for i in ids)


class Model(NamedTuple):
    """The model's pure functions; parameters live in a separate pytree."""

    cell: seqmask.cells.Cell
    vocab_size: int


def load_corpus(modules: Sequence[str] = STDLIB_MODULES) -> list[str]:
    """Docstrings of ``modules`` and of their public classes and functions.

    Text is folded to printable ASCII (so the vocabulary stays small), each
    docstring ends with a newline, duplicates are dropped, and the order is
    deterministic.

    Returns:
      A list of docstrings, each at least 40 characters long.
    """
    seen: set[str] = set()
    docs: list[str] = []

    def add(obj: Any) -> None:
        doc = inspect.getdoc(obj)
        if not doc or len(doc) < 40:
            return
        doc = doc.encode("ascii", "replace").decode("ascii") + "\n"
        if doc not in seen:
            seen.add(doc)
            docs.append(doc)

    for name in modules:
        try:
            module = importlib.import_module(name)
        except ImportError:  # a module missing from this build of Python
            continue
        add(module)
        for member_name, member in sorted(vars(module).items()):
            if member_name.startswith("_") or getattr(member, "__module__", None) != (
                module.__name__
            ):
                continue
            if inspect.isclass(member) or inspect.isfunction(member):
                add(member)
    return docs


def build_vocabulary(docs: Sequence[str]) -> Vocabulary:
    """Every character of ``docs`` (plus ``?`` for unknown ones), sorted."""
    return Vocabulary("".join(sorted(set("".join(docs)) | {"?"})))


def encode_documents(docs: Sequence[str], vocab: Vocabulary) -> list[np.ndarray]:
    """Each document as ``[len - 1, 2]`` int32 pairs (input char, next char)."""
    out = []
    for doc in docs:
        ids = vocab.encode(doc)
        out.append(np.stack([ids[:-1], ids[1:]], axis=-1))
    return out


def make_model(vocab_size: int, hidden_size: int) -> Model:
    """An LSTM whose initial carry is a learned parameter."""
    cell = seqmask.cells.learnable_initial_state(seqmask.cells.lstm(hidden_size))
    return Model(cell=cell, vocab_size=vocab_size)


def init_params(key: jax.Array, model: Model, embed_size: int) -> dict[str, Any]:
    """Parameters: ``embed`` ``[V, E]``, ``rnn`` (the cell's), ``out_kernel``
    ``[H, V]`` and ``out_bias`` ``[V]``."""
    k_embed, k_rnn, k_out = jax.random.split(key, 3)
    hidden = model.cell.hidden_size
    assert hidden is not None
    return {
        "embed": jax.random.normal(k_embed, (model.vocab_size, embed_size)) * 0.1,
        "rnn": model.cell.init(k_rnn, embed_size),
        "out_kernel": jax.random.normal(k_out, (hidden, model.vocab_size))
        * hidden**-0.5,
        "out_bias": jnp.zeros(model.vocab_size),
    }


def chunk_loss(model: Model):
    """The loss of one chunk: mean cross-entropy of the next character over
    the chunk's valid steps, and the carry for the next chunk.

    Returns:
      ``loss_fn(params, carry, chunk) -> (loss, new_carry)`` for
      :func:`seqmask.carry.truncated_bptt_step`; ``chunk.xs`` is ``[B, K, 2]``
      (input id, target id).
    """

    def loss_fn(params, carry, chunk: Chunk):
        inputs, targets = chunk.xs[..., 0], chunk.xs[..., 1]
        carry, hidden = seqmask.rnn(
            model.cell,
            params["rnn"],
            params["embed"][inputs],
            mask=chunk.mask,
            initial_carry=carry,
            resets=chunk.resets,
        )
        logits = hidden @ params["out_kernel"] + params["out_bias"]
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
        valid = jnp.sum(chunk.mask)
        loss = jnp.sum(jnp.where(chunk.mask, losses, 0.0)) / jnp.maximum(valid, 1)
        return loss, carry

    return loss_fn


def shuffled_forever(
    sequences: Sequence[np.ndarray], seed: int
) -> Iterator[np.ndarray]:
    """The sequences in a fresh random order every epoch, without end.

    :func:`seqmask.data.stateful_batches` reads its input lazily, so lanes
    run on from one epoch into the next with no padded gap.
    """
    rng = np.random.default_rng(seed)
    while True:
        for index in rng.permutation(len(sequences)):
            yield sequences[index]


def unigram_entropy(sequences: Sequence[np.ndarray], vocab_size: int) -> float:
    """Cross-entropy (nats/char) of predicting each character by its frequency:
    the loss a model without context reaches."""
    targets = np.concatenate([s[:, 1] for s in sequences])
    p = np.bincount(targets, minlength=vocab_size) / len(targets)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def train(
    model: Model,
    params: dict[str, Any],
    sequences: Sequence[np.ndarray],
    *,
    steps: int,
    batch_size: int = 32,
    chunk_len: int = 64,
    learning_rate: float = 5e-3,
    log_every: int = 50,
    seed: int = 0,
    progress: bool = True,
) -> tuple[dict[str, Any], list[tuple[int, float]]]:
    """Stateful truncated-BPTT training: one Adam step a chunk, carry threaded.

    Returns:
      ``(params, curve)`` where ``curve`` lists ``(step, mean loss over the
      last log_every chunks)``.
    """
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(learning_rate))
    step = truncated_bptt_step(chunk_loss(model), optimizer)
    opt_state = optimizer.init(params)
    # Any carry will do: every lane resets to the learned state at its
    # first step.
    carry = model.cell.initial_carry(params["rnn"], (batch_size,))
    chunks = stateful_batches(shuffled_forever(sequences, seed), batch_size, chunk_len)
    curve: list[tuple[int, float]] = []
    window: list[jax.Array] = []
    bar = tqdm(range(1, steps + 1), desc="training", unit="chunk", disable=not progress)
    for index in bar:
        params, opt_state, carry, loss = step(params, opt_state, carry, next(chunks))
        window.append(loss)
        if index % log_every == 0 or index == steps:
            mean = float(np.mean(jax.device_get(window)))
            curve.append((index, mean))
            message = f"step {index:5d}  loss {mean:.3f} nats/char"
            if progress:
                bar.write(message)
            else:
                print(message, flush=True)
            window = []
    return params, curve


def greedy_sample(
    model: Model, params: dict[str, Any], vocab: Vocabulary, prompt: str, length: int
) -> str:
    """Continue ``prompt`` with ``length`` characters, each the most likely one.

    The prompt runs from the learned initial state through one masked scan;
    the continuation is a ``jax.lax.scan`` that feeds back its own argmax.
    """
    prompt_ids = jnp.asarray(vocab.encode(prompt))

    @jax.jit
    def generate(params, prompt_ids):
        carry, hidden = seqmask.rnn(
            model.cell, params["rnn"], params["embed"][prompt_ids][None]
        )
        logits = hidden[0, -1] @ params["out_kernel"] + params["out_bias"]

        def step(state, _):
            carry, logits = state
            char = jnp.argmax(logits)
            carry, y = model.cell.apply(
                params["rnn"], carry, params["embed"][char][None]
            )
            return (carry, y[0] @ params["out_kernel"] + params["out_bias"]), char

        _, chars = jax.lax.scan(step, (carry, logits), length=length)
        return chars

    return prompt + vocab.decode(generate(params, prompt_ids))


def main(argv: Sequence[str] | None = None) -> int:
    """Load the corpus, train, print the loss curve and a greedy sample."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--steps", type=int, default=None, help="training chunks")
    parser.add_argument("--quick", action="store_true", help="a few seconds' run")
    parser.add_argument("--batch-size", type=int, default=32, help="lanes")
    parser.add_argument("--chunk-len", type=int, default=64, help="TBPTT length")
    parser.add_argument("--hidden", type=int, default=128, help="LSTM size")
    parser.add_argument("--embed", type=int, default=32, help="embedding size")
    parser.add_argument("--learning-rate", type=float, default=5e-3)
    parser.add_argument("--log-every", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    args = parser.parse_args(argv)
    for name in ("steps", "batch_size", "chunk_len", "hidden", "embed", "log_every"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive; got {value}")
    steps = args.steps if args.steps is not None else (60 if args.quick else 600)
    log_every = args.log_every or max(steps // 8, 1)

    docs = load_corpus()
    vocab = build_vocabulary(docs)
    sequences = encode_documents(docs, vocab)
    total = sum(len(s) for s in sequences)
    print(
        f"corpus: {len(docs)} docstrings, {total} characters, "
        f"{len(vocab.chars)} distinct; unigram entropy "
        f"{unigram_entropy(sequences, len(vocab.chars)):.3f} nats/char, "
        f"uniform {np.log(len(vocab.chars)):.3f}"
    )
    model = make_model(len(vocab.chars), args.hidden)
    params = init_params(jax.random.key(args.seed), model, args.embed)
    start = time.perf_counter()
    params, curve = train(
        model,
        params,
        sequences,
        steps=steps,
        batch_size=args.batch_size,
        chunk_len=args.chunk_len,
        learning_rate=args.learning_rate,
        log_every=log_every,
        seed=args.seed,
        progress=not args.no_progress,
    )
    print(f"trained {steps} chunks in {time.perf_counter() - start:.1f} s")
    print("loss curve: " + ", ".join(f"{s}: {loss:.3f}" for s, loss in curve))
    sample = greedy_sample(model, params, vocab, "Return the ", 120)
    print("greedy sample: " + repr(sample))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
