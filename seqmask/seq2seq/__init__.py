r"""A recurrent encoder-decoder, as a record of pure functions over a config.

:func:`encoder_decoder` checks its options and returns an
:class:`EncoderDecoder`: the functions of this module with its
:class:`Config` bound first, and the config. Source and target have
different, varying lengths: the encoder runs over the *source* mask, the
decoder over the *target* mask, and the loss is weighted from the targets
alone; the source mask only decides where attention may look::

  model = seqmask.seq2seq.encoder_decoder(source_vocab, target_vocab)
  params = model.init(key)
  loss = model.loss(params, source, targets, source_lengths=...,
                    target_lengths=...)
  out = model.greedy(params, source, source_lengths=..., max_length=...)

Each piece also stands alone, over the config: :func:`init`, :func:`encode`
(encoder and bridge), :func:`step` (one decoder step, the step function of
:mod:`seqmask.decoding`), :func:`teacher_forcing` (the decoder over given
inputs), :func:`own_predictions` (the decoder fed its own predictions),
:func:`apply` and :func:`loss` (both from the source), and :func:`greedy`,
:func:`beam_search` and :func:`sample`.

The options compose: the encoder is one or several layers of any
:class:`~seqmask.cells.Cell`, bidirectional or not; the decoder one or
several layers; attention additive, dot, general or none; the bridge dense,
none or a function; input feeding on or off; dropout on the embeddings,
between layers and before the output layer (only where a ``dropout_key`` is
given); tied output embeddings; label smoothing through the loss. With
:math:`e` the target embedding, one decoder step from the previous token
:math:`y_{t-1}` computes

.. math::

  (s_t, h_t) &= \mathrm{cells}(s_{t-1}, [e(y_{t-1}); \tilde h_{t-1}]) \\
  c_t, \alpha_t &= \mathrm{attention}(h_t, \mathrm{memory},
    \mathrm{source\ mask}) \\
  \tilde h_t &= \tanh([h_t; c_t] W_c) \\
  \mathrm{logits}_t &= \tilde h_t W_o + b_o

with :math:`\tilde h_0 = 0`; without input feeding the input is
:math:`e(y_{t-1})` alone, without attention :math:`\tilde h_t = h_t`, and
with tied embeddings :math:`W_o = e^\top`.

Dropout keys: a function given ``dropout_key`` splits it with
``jax.random.split(dropout_key, 5)`` into the keys of the source embedding,
the encoder layers (passed to :func:`seqmask.stacked`), the target
embedding, the decoder layers (split again, one key a gap between layers)
and the output layer; each mask is ``jax.random.bernoulli(key, 1 - rate,
shape)``, batch-major ``[*batch, source, E]`` for the source embedding and
time-major ``[target, *batch, features]`` in the decoder, and kept values
are scaled by ``1 / (1 - rate)``.

Parameters are a plain dict (see :func:`init`); the pure core imports no
flax (``seqmask.nnx.Seq2Seq`` wraps a model for Flax NNX).
"""

from seqmask.seq2seq._config import Config as Config
from seqmask.seq2seq._config import DecoderState as DecoderState
from seqmask.seq2seq._config import Memory as Memory
from seqmask.seq2seq._decoder import decoder_inputs as decoder_inputs
from seqmask.seq2seq._decoder import step as step
from seqmask.seq2seq._decoder import teacher_forcing as teacher_forcing
from seqmask.seq2seq._encoder import encode as encode
from seqmask.seq2seq._generate import beam_search as beam_search
from seqmask.seq2seq._generate import greedy as greedy
from seqmask.seq2seq._generate import sample as sample
from seqmask.seq2seq._init import init as init
from seqmask.seq2seq._model import EncoderDecoder as EncoderDecoder
from seqmask.seq2seq._model import encoder_decoder as encoder_decoder
from seqmask.seq2seq._model import from_config as from_config
from seqmask.seq2seq._training import apply as apply
from seqmask.seq2seq._training import loss as loss
from seqmask.seq2seq._training import own_predictions as own_predictions

__all__ = [
    "Config",
    "DecoderState",
    "Memory",
    "EncoderDecoder",
    "encoder_decoder",
    "from_config",
    "init",
    "encode",
    "step",
    "decoder_inputs",
    "teacher_forcing",
    "own_predictions",
    "apply",
    "loss",
    "greedy",
    "beam_search",
    "sample",
]
