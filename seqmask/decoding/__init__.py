r"""Decoding: greedy search, sampling and beam search for any step function.

A decoder is any step function ``step_fn(params, state, token) -> (state,
logits)``: ``state`` is a pytree whose leaves start with the batch axes
(a recurrent carry, the encoder memory, a step counter, ...), ``token`` the
previous token ``[*batch]`` and ``logits`` ``[*batch, vocab]``.
:func:`seqmask.seq2seq.encoder_decoder` gives one (``model.step``). Each
function here runs the step function for a static ``max_length`` steps
inside one :func:`jax.lax.scan` (no Python loop over time; jitted, with the
step function, the hook, the sizes and the token ids static), and stops each
row at its end-of-sequence token: from then on the row emits ``pad_id`` and
its state is frozen, exactly as :func:`seqmask.masked_scan` carries a state
through padded steps. The results count the EOS token in the length:
``tokens[..., :lengths]`` is the output including its EOS (and any forced
prefix), and a row that never emits EOS has length ``max_length``.

Shared options: ``min_length`` (EOS forbidden before it), ``prefix`` and
``prefix_lengths`` (tokens forced at the start of each row, reproduced
exactly) and ``logits_fn(step, logits, state, tokens) -> logits``, a hook
for constraints and penalties (:func:`repetition_penalty` is one).

Checks: the vocabulary size is read from the step function's logits (traced
once, abstractly), and every token id (start tokens, ``eos_id``, the prefix)
is checked against it, eagerly when concrete and through
:mod:`jax.experimental.checkify` when traced; so are the hyperparameters.
NaN logits: a row (or beam hypothesis) whose logits hold a NaN or ``+inf``,
or no entry above ``-inf``, never yields a token. Without checkify it ends
there (greedy, sample: ``pad_id`` from then on, no EOS, the length counts
the tokens before) or is dropped (beam search); under
``checkify.checkify`` the same event is reported as an error.
"""

from seqmask.decoding._beam import beam_search as beam_search
from seqmask.decoding._hooks import repetition_penalty as repetition_penalty
from seqmask.decoding._records import BeamDecoded as BeamDecoded
from seqmask.decoding._records import Decoded as Decoded
from seqmask.decoding._records import length_penalty as length_penalty
from seqmask.decoding._search import greedy as greedy
from seqmask.decoding._search import sample as sample

__all__ = [
    "Decoded",
    "BeamDecoded",
    "greedy",
    "sample",
    "beam_search",
    "length_penalty",
    "repetition_penalty",
]
