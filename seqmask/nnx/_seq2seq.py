"""The NNX module over a pure :class:`~seqmask.seq2seq.EncoderDecoder`.

:class:`Seq2Seq` takes the pure model (or builds one with
:meth:`Seq2Seq.build`) and holds the exact parameter dict its functions take,
as ``nnx.Param`` leaves named by their paths (``encoder_forward_input_kernel``,
``output_bias``, ...). Every method rebuilds that dict and calls the pure
function: there is no second implementation of the math and no second list
of options, so the module and the pure functions called with
``module.pure_params()`` give the same values.
"""

from __future__ import annotations

import jax
from flax import nnx

import seqmask._checks as _checks
from seqmask import decoding as _decoding
from seqmask import seq2seq as _seq2seq
from seqmask._modules import Params
from seqmask.nnx._named import _NamedLeaves
from seqmask.nnx._state import param_key

__all__ = ["Seq2Seq"]


class Seq2Seq(_NamedLeaves):
    """An encoder-decoder as an NNX module, over a pure model.

    ``module(source, targets, **options)`` equals ``module.pure_model.apply(
    module.pure_params(), source, targets, **options)``; likewise
    :meth:`loss`, :meth:`encode`, :meth:`step`, :meth:`greedy`,
    :meth:`beam_search` and :meth:`sample`, which take the keyword arguments
    of the pure model's functions (see :mod:`seqmask.seq2seq`).

    Dropout applies where a method is given ``dropout_key``, as in the pure
    model, and nowhere else: the module has no dropout stream, and
    ``module.train()`` / ``module.eval()`` do not change it (leave the key
    out to evaluate).

    The parameters are one ``nnx.Param`` a leaf of the pure dict, named by
    its path joined with ``_`` (``encoder_forward_input_kernel``,
    ``output_bias``): a filter for a part of the model matches the start of
    the name, e.g. ``nnx.All(nnx.Param, lambda path, _:
    not str(path[0]).startswith("encoder_"))`` to train all but the
    encoder (``nnx.PathContains("encoder")`` matches nothing).

    Args:
      model: a :class:`~seqmask.seq2seq.EncoderDecoder` (from
        :func:`seqmask.seq2seq.encoder_decoder`).
      rngs: ``nnx.Rngs``; the ``params`` stream initialises the parameters.

    Attributes:
      pure_model: the :class:`~seqmask.seq2seq.EncoderDecoder` the module runs.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from flax import nnx
      >>> from seqmask import seq2seq
      >>> from seqmask.nnx import Seq2Seq
      >>> pure = seq2seq.encoder_decoder(6, 5, embed_size=4, hidden_size=8)
      >>> model = Seq2Seq(pure, rngs=nnx.Rngs(0))
      >>> source, targets = jnp.array([[3, 4, 5]]), jnp.array([[3, 2]])
      >>> loss = nnx.jit(lambda m: m.loss(source, targets))(model)
      >>> by_pure = jax.jit(pure.loss)(model.pure_params(), source, targets)
      >>> bool(jnp.allclose(loss, by_pure))
      True
    """

    def __init__(self, model: _seq2seq.EncoderDecoder, *, rngs: nnx.Rngs):
        where = "seqmask.nnx.Seq2Seq"
        if not isinstance(model, _seq2seq.EncoderDecoder):
            _checks.fail(
                where,
                "model must be a seqmask.seq2seq.EncoderDecoder (from "
                f"seqmask.seq2seq.encoder_decoder); got {_checks.describe(model)}. "
                "To build one from options, use Seq2Seq.build(source_vocab_size, "
                "target_vocab_size, ..., rngs=rngs).",
                TypeError,
            )
        super().__init__(
            model.init(param_key(rngs, where)), single_name="params", where=where
        )
        self.pure_model = model

    @classmethod
    def build(
        cls,
        source_vocab_size: int,
        target_vocab_size: int,
        *,
        rngs: nnx.Rngs,
        **options,
    ) -> Seq2Seq:
        """``Seq2Seq(seqmask.seq2seq.encoder_decoder(...), rngs=rngs)``.

        Examples:
          >>> from flax import nnx
          >>> from seqmask.nnx import Seq2Seq
          >>> model = Seq2Seq.build(6, 5, embed_size=4, hidden_size=8,
          ...                       attention=None, rngs=nnx.Rngs(0))
          >>> model.output_kernel[...].shape
          (8, 5)
        """
        model = _seq2seq.encoder_decoder(
            source_vocab_size, target_vocab_size, **options
        )
        return cls(model, rngs=rngs)

    def pure_params(self) -> Params:
        """The parameter dict that the functions of :attr:`pure_model` take."""
        return self._tree()

    def __call__(self, source, targets, **options) -> jax.Array:
        """Logits ``[*batch, target, Vt]`` (see :func:`seqmask.seq2seq.apply`)."""
        return self.pure_model.apply(self.pure_params(), source, targets, **options)

    def loss(self, source, targets, **options) -> jax.Array:
        """The weighted cross-entropy (see :func:`seqmask.seq2seq.loss`)."""
        return self.pure_model.loss(self.pure_params(), source, targets, **options)

    def encode(self, source, **options) -> _seq2seq.DecoderState:
        """The decoder's start state (see :func:`seqmask.seq2seq.encode`)."""
        return self.pure_model.encode(self.pure_params(), source, **options)

    def step(self, state: _seq2seq.DecoderState, token):
        """One decoder step: ``(state, token [*batch]) -> (state, logits)``."""
        return self.pure_model.step(self.pure_params(), state, token)

    def greedy(self, source, **options) -> _decoding.Decoded:
        """Greedy decoding (see :func:`seqmask.seq2seq.greedy`)."""
        return self.pure_model.greedy(self.pure_params(), source, **options)

    def beam_search(self, source, **options) -> _decoding.BeamDecoded:
        """Beam search (see :func:`seqmask.seq2seq.beam_search`)."""
        return self.pure_model.beam_search(self.pure_params(), source, **options)

    def sample(self, source, key: jax.Array, **options) -> _decoding.Decoded:
        """Ancestral sampling (see :func:`seqmask.seq2seq.sample`)."""
        return self.pure_model.sample(self.pure_params(), source, key, **options)
