"""Migrating a Flax RNN model to seqmask: one changed line, the same weights.

A small Linen model is written the Flax way (an embedding, a bidirectional
LSTM, a per-step classifier) and trained for a few steps to tag the tokens
of padded sequences. The same model is then built with seqmask's drop-in:
the only change is where ``RNN`` and ``Bidirectional`` come from
(``flax.linen`` or ``seqmask.linen``). It loads the trained variables
unchanged and gives the same outputs at every valid step, while its padded
outputs are zero and a row of length zero returns its initial carry (Flax
returns garbage in both places). The same is then shown for an NNX model:
``flax.nnx.RNN`` and ``seqmask.nnx.RNN`` over one cell, the state of one
loaded into the other.

Run ``python examples/flax_migration.py`` (seconds) or ``--quick``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import seqmask.linen
import seqmask.nnx

VOCAB, CLASSES, EMBED, HIDDEN = 12, 3, 8, 16


def make_tagger(rnn_module, bidirectional_module) -> nn.Module:
    """The model, written once; ``rnn_module`` and ``bidirectional_module``
    are ``flax.linen``'s or ``seqmask.linen``'s: the one-line migration."""

    class Tagger(nn.Module):
        @nn.compact
        def __call__(self, tokens, seq_lengths):
            x = nn.Embed(VOCAB, EMBED)(tokens)
            encoder = bidirectional_module(
                rnn_module(nn.LSTMCell(HIDDEN)), rnn_module(nn.LSTMCell(HIDDEN))
            )
            return nn.Dense(CLASSES)(encoder(x, seq_lengths=seq_lengths))

    return Tagger()


def batch(rng: np.random.Generator, size: int, steps: int):
    """Tokens, lengths (at least 1) and targets: each token's class is its
    id modulo 3, plus one if the previous token was larger."""
    lengths = rng.integers(1, steps + 1, size)
    tokens = rng.integers(1, VOCAB, (size, steps))
    tokens[np.arange(steps) >= lengths[:, None]] = 0
    previous = np.pad(tokens, ((0, 0), (1, 0)))[:, :-1]
    targets = (tokens % CLASSES + (previous > tokens)) % CLASSES
    return tokens, lengths, targets


def train_flax(model, steps: int, rng: np.random.Generator):
    """A few Adam steps with Flax's modules, the loss masked by the lengths."""
    tokens, lengths, targets = batch(rng, 32, 10)
    params = model.init(jax.random.key(0), tokens, lengths)["params"]
    optimizer = optax.adam(0.02)
    state = optimizer.init(params)

    @jax.jit
    def step(params, state, tokens, lengths, targets):
        def loss_fn(params):
            logits = model.apply({"params": params}, tokens, lengths)
            losses = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
            valid = jnp.arange(tokens.shape[1])[None, :] < lengths[:, None]
            return jnp.sum(jnp.where(valid, losses, 0.0)) / jnp.sum(valid)

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, state = optimizer.update(grads, state)
        return optax.apply_updates(params, updates), state, loss

    for _ in range(steps):
        params, state, loss = step(params, state, *batch(rng, 32, 10))
    return {"params": params}, float(loss)


def linen_migration(steps: int) -> None:
    rng = np.random.default_rng(0)
    flax_model = make_tagger(nn.RNN, nn.Bidirectional)
    variables, loss = train_flax(flax_model, steps, rng)
    print(f"Linen: trained the Flax model for {steps} steps (loss {loss:.3f})")

    ours = make_tagger(seqmask.linen.RNN, seqmask.linen.Bidirectional)
    tokens, lengths, _ = batch(rng, 8, 10)
    flax_logits = np.asarray(flax_model.apply(variables, tokens, lengths))
    our_logits = np.asarray(ours.apply(variables, tokens, lengths))  # same variables
    valid = np.arange(tokens.shape[1]) < lengths[:, None]
    print(
        "  same variables, valid steps: max |seqmask - flax| = "
        f"{np.max(np.abs(our_logits - flax_logits)[valid]):.1e}"
    )
    # The Dense layer adds its bias everywhere; what the RNNs return at padded
    # steps is what differs: zeros from seqmask, leftovers from Flax.
    bias = np.asarray(variables["params"]["Dense_0"]["bias"])
    print(
        "  padded steps: max |logits - bias| flax "
        f"{np.max(np.abs(flax_logits - bias)[~valid]):.3f}, seqmask "
        f"{np.max(np.abs(our_logits - bias)[~valid]):.3f}"
    )


def nnx_migration() -> None:
    xs = np.random.default_rng(1).normal(size=(3, 6, 4)).astype(np.float32)
    lengths = np.array([6, 3, 0])
    theirs = nnx.RNN(nnx.GRUCell(4, HIDDEN, rngs=nnx.Rngs(0)), return_carry=True)
    ours = seqmask.nnx.RNN(nnx.GRUCell(4, HIDDEN, rngs=nnx.Rngs(1)), return_carry=True)
    nnx.update(ours, nnx.state(theirs))  # an existing model's state, unchanged
    their_carry, their_ys = map(np.asarray, theirs(xs, seq_lengths=lengths))
    carry, ys = map(np.asarray, ours(xs, seq_lengths=lengths))
    valid = np.arange(xs.shape[1]) < lengths[:, None]
    print("NNX: flax.nnx.RNN's state loaded into seqmask.nnx.RNN")
    print(
        "  valid steps: max |seqmask - flax| = "
        f"{np.max(np.abs(ys - their_ys)[valid]):.1e}; carries of rows 0-1: "
        f"{np.max(np.abs(carry[:2] - their_carry[:2])):.1e}"
    )
    print(
        "  the empty row's carry: flax |h| = "
        f"{np.linalg.norm(their_carry[2]):.3f}, seqmask |h| = "
        f"{np.linalg.norm(carry[2]):.3f} (its initial carry)"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps", type=int, default=None, help="training steps (default 60)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: 5 training steps"
    )
    args = parser.parse_args(argv)
    if args.steps is not None and args.steps <= 0:
        parser.error(f"--steps must be positive; got {args.steps}")
    steps = args.steps if args.steps is not None else (5 if args.quick else 60)
    linen_migration(steps)
    nnx_migration()


if __name__ == "__main__":
    main()
