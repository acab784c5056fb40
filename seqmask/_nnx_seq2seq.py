"""The Flax NNX module over :func:`seqmask.seq2seq.encoder_decoder`.

:class:`Seq2Seq` holds the exact parameter dict that the pure
:class:`~seqmask.seq2seq.EncoderDecoder` takes, as ``nnx.Param`` leaves named
by their paths (``encoder_forward_input_kernel``, ``output_bias``, ...), and
every method rebuilds that dict and calls the pure function: there is no
second implementation of the math, so the module and the pure functions
called with ``module.pure_params()`` give the same values. It is re-exported
as ``seqmask.nnx.Seq2Seq``; importing it imports flax, ``import seqmask``
does not.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from seqmask import decoding as _decoding
from seqmask import seq2seq as _seq2seq
from seqmask.attention import Attention
from seqmask.cells import Cell

__all__ = ["Seq2Seq"]

Params = Any


class Seq2Seq(nnx.Module):
    """An attention encoder-decoder (see :func:`seqmask.seq2seq.encoder_decoder`).

    ``module(source, targets, ...)`` equals ``module.pure_model.apply(
    module.pure_params(), source, targets, ...)``; likewise :meth:`loss`,
    :meth:`encode` and :meth:`step`. :meth:`greedy` and :meth:`beam_search`
    run :mod:`seqmask.decoding` on the pure step function.

    Args:
      source_vocab_size, target_vocab_size: vocabulary sizes.
      embed_size, hidden_size, encoder_cell, decoder_cell, attention,
        attention_size, attentional_size, bridge, learnable_initial_state,
        bos_id, eos_id, pad_id: as :func:`seqmask.seq2seq.encoder_decoder`.
      rngs: ``nnx.Rngs``; the ``params`` stream initialises the parameters.

    Attributes:
      pure_model: the :class:`~seqmask.seq2seq.EncoderDecoder` the module runs.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from flax import nnx
      >>> from seqmask._nnx_seq2seq import Seq2Seq
      >>> model = Seq2Seq(6, 5, embed_size=4, hidden_size=8, rngs=nnx.Rngs(0))
      >>> source, targets = jnp.array([[3, 4, 5]]), jnp.array([[3, 2]])
      >>> loss = nnx.jit(lambda m: m.loss(source, targets))(model)
      >>> pure = jax.jit(model.pure_model.loss)(model.pure_params(), source, targets)
      >>> bool(jnp.allclose(loss, pure))
      True
    """

    def __init__(
        self,
        source_vocab_size: int,
        target_vocab_size: int,
        *,
        embed_size: int = 32,
        hidden_size: int = 64,
        encoder_cell: str | Cell = "lstm",
        decoder_cell: str | Cell = "lstm",
        attention: str | Attention = "additive",
        attention_size: int | None = None,
        attentional_size: int | None = None,
        bridge: bool = True,
        learnable_initial_state: bool = False,
        bos_id: int = 1,
        eos_id: int = 2,
        pad_id: int = 0,
        rngs: nnx.Rngs,
    ):
        self.pure_model = _seq2seq.encoder_decoder(
            source_vocab_size,
            target_vocab_size,
            embed_size=embed_size,
            hidden_size=hidden_size,
            encoder_cell=encoder_cell,
            decoder_cell=decoder_cell,
            attention=attention,
            attention_size=attention_size,
            attentional_size=attentional_size,
            bridge=bridge,
            learnable_initial_state=learnable_initial_state,
            bos_id=bos_id,
            eos_id=eos_id,
            pad_id=pad_id,
        )
        params = self.pure_model.init(rngs.params())
        paths_and_leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
        names = [_path_name(path) for path, _ in paths_and_leaves]
        if len(set(names)) != len(names):
            raise ValueError(
                f"Seq2Seq: the parameter paths do not give distinct names: {names}."
            )
        clashes = [n for n in names if n.startswith("_") or hasattr(type(self), n)]
        if clashes:
            raise ValueError(
                f"Seq2Seq: parameter names {clashes} clash with attributes of the "
                "module; rename the keys of the cell's parameters."
            )
        self._treedef = treedef
        self._names = tuple(names)
        for name, (_, leaf) in zip(names, paths_and_leaves, strict=True):
            setattr(self, name, nnx.Param(jnp.asarray(leaf)))

    def pure_params(self) -> Params:
        """The parameter dict that the functions of :attr:`pure_model` take."""
        return jax.tree.unflatten(
            self._treedef, [getattr(self, name)[...] for name in self._names]
        )

    def __call__(
        self,
        source,
        targets,
        *,
        source_mask=None,
        source_lengths=None,
        target_mask=None,
        target_lengths=None,
    ) -> jax.Array:
        """Teacher-forced logits ``[*batch, target, V]``.

        Args:
          source: integer ``[*batch, source]``.
          targets: integer ``[*batch, target]``, right-padded, each row ending
            with EOS.
          source_mask, source_lengths: the source mask (any pattern) or
            lengths; default: all valid.
          target_mask, target_lengths: the target mask (right padding) or
            lengths; default: ``targets != pad_id``.

        Returns:
          Logits ``[*batch, target, V]``.
        """
        return self.pure_model.apply(
            self.pure_params(),
            source,
            targets,
            source_mask=source_mask,
            source_lengths=source_lengths,
            target_mask=target_mask,
            target_lengths=target_lengths,
        )

    def loss(
        self,
        source,
        targets,
        *,
        source_mask=None,
        source_lengths=None,
        target_mask=None,
        target_lengths=None,
        reduction="weighted_mean",
    ) -> jax.Array:
        """The teacher-forced cross-entropy, weighted by the target mask.

        Args:
          source, targets, source_mask, source_lengths, target_mask,
            target_lengths: as :meth:`__call__`.
          reduction: as :mod:`seqmask.losses`.

        Returns:
          A float32 scalar (or per-token losses for ``"none"``).
        """
        return self.pure_model.loss(
            self.pure_params(),
            source,
            targets,
            source_mask=source_mask,
            source_lengths=source_lengths,
            target_mask=target_mask,
            target_lengths=target_lengths,
            reduction=reduction,
        )

    def encode(
        self, source, *, source_mask=None, source_lengths=None
    ) -> _seq2seq.DecoderState:
        """The decoder's start state for ``source`` (see ``EncoderDecoder.encode``)."""
        return self.pure_model.encode(
            self.pure_params(),
            source,
            source_mask=source_mask,
            source_lengths=source_lengths,
        )

    def step(self, state: _seq2seq.DecoderState, token):
        """One decoder step: ``(state, token [*batch]) -> (state, logits)``."""
        return self.pure_model.step(self.pure_params(), state, token)

    def greedy(
        self, source, *, max_length: int, source_mask=None, source_lengths=None
    ) -> _decoding.Decoded:
        """Greedy decoding of ``source`` (see :func:`seqmask.decoding.greedy`).

        Args:
          source, source_mask, source_lengths: as :meth:`__call__`.
          max_length: the maximum output length, EOS included.

        Returns:
          A :class:`~seqmask.decoding.Decoded` ``(tokens, lengths, state)``.
        """
        state = self.encode(
            source, source_mask=source_mask, source_lengths=source_lengths
        )
        model = self.pure_model
        return _decoding.greedy(
            model.step,
            self.pure_params(),
            state,
            jnp.full(jnp.shape(source)[:-1], model.bos_id, jnp.int32),
            max_length=max_length,
            eos_id=model.eos_id,
            pad_id=model.pad_id,
        )

    def beam_search(
        self,
        source,
        *,
        max_length: int,
        beam_width: int,
        length_penalty=0.0,
        source_mask=None,
        source_lengths=None,
    ) -> _decoding.BeamDecoded:
        """Beam search over ``source`` (see :func:`seqmask.decoding.beam_search`).

        Args:
          source, source_mask, source_lengths: as :meth:`__call__`.
          max_length: the maximum output length, EOS included.
          beam_width: the number of hypotheses kept.
          length_penalty: the GNMT exponent ``alpha``.

        Returns:
          A :class:`~seqmask.decoding.BeamDecoded`, best hypothesis first.
        """
        state = self.encode(
            source, source_mask=source_mask, source_lengths=source_lengths
        )
        model = self.pure_model
        return _decoding.beam_search(
            model.step,
            self.pure_params(),
            state,
            jnp.full(jnp.shape(source)[:-1], model.bos_id, jnp.int32),
            beam_width=beam_width,
            max_length=max_length,
            eos_id=model.eos_id,
            pad_id=model.pad_id,
            length_penalty=length_penalty,
        )


def _path_name(path) -> str:
    parts = []
    for key in path:
        for attribute in ("key", "idx", "name"):
            if hasattr(key, attribute):
                parts.append(str(getattr(key, attribute)))
                break
        else:
            parts.append(str(key))
    return "_".join(parts)
