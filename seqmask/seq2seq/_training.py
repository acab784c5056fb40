"""Training the encoder-decoder: :func:`apply` and :func:`loss`.

The decoder reads one input token a step. In training that token is the
previous target (teacher forcing), or, with ``sampling_probability`` ``p``,
the model's own prediction at the previous step with probability ``p`` a
token (scheduled sampling, Bengio et al. 2015; ``p = 1`` feeds only the
model's predictions, as Flax's seq2seq example trains). The first step of a
row always reads ``bos_id``.

Gradients: no gradient flows through the *choice* of a fed token (the
argmax, the draw and the coin flips give integer ids and random draws); the
gradient flows through the decoder's states and through the embedding of
every token fed, exactly as if those tokens had been given as inputs:
:func:`apply` equals :func:`~seqmask.seq2seq.teacher_forcing` with the fed
tokens as inputs, in values and in gradients.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

import seqmask._checks as _checks
from seqmask import _sharding
from seqmask import losses as _losses
from seqmask.scan import masked_scan
from seqmask.seq2seq import _config, _decoder, _inputs
from seqmask.seq2seq._config import Config, DecoderState, Params, check_config
from seqmask.seq2seq._encoder import decoder_arguments, encode_checked
from seqmask.seq2seq._init import check_params

SAMPLINGS = ("argmax", "sample")


def apply(
    config: Config,
    params: Params,
    source,
    targets,
    *,
    source_mask=None,
    source_lengths=None,
    target_mask=None,
    target_lengths=None,
    dropout_key: jax.Array | None = None,
    sampling_probability=0.0,
    sampling: str = "argmax",
    sampling_key: jax.Array | None = None,
) -> jax.Array:
    """Encode the source and decode the targets: logits at every position.

    Token conventions: ``targets`` are the output tokens followed by
    ``eos_id``; the decoder reads ``bos_id`` and then, at each valid position,
    the target at the previous valid position (see
    :func:`~seqmask.seq2seq.decoder_inputs`). Any target mask is read
    exactly: right padding, left padding and holes give the logits of the
    valid tokens packed to the left, at their positions. Padded positions get
    zero logits; whatever sits there in the source or the targets changes
    nothing.

    Args:
      config: the :class:`~seqmask.seq2seq.Config`.
      params: the parameters.
      source: integer ``[*batch, source]``.
      targets: integer ``[*batch, target]``.
      source_mask, source_lengths: as :func:`~seqmask.seq2seq.encode`.
      target_mask, target_lengths: the valid targets, a boolean mask
        ``[*batch, target]`` (any pattern) or integer lengths ``[*batch]`` in
        ``[0, target]``; at most one of them. Default: ``targets != pad_id``.
      dropout_key: a PRNG key for dropout; None (the default) drops nothing.
      sampling_probability: the probability ``p`` in ``[0, 1]`` of feeding
        the model's own prediction instead of the previous target, drawn
        per token; a Python number or a traced scalar (a schedule).
        ``0`` (the default) is teacher forcing.
      sampling: how the model's prediction is chosen: ``"argmax"`` or
        ``"sample"`` (a draw from the softmax of the logits).
      sampling_key: a PRNG key for the coin flips and draws; needed unless
        ``p`` is 0, or ``p`` is 1 with ``"argmax"``.

    Returns:
      Logits ``[*batch, target, Vt]``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from seqmask import seq2seq
      >>> model = seq2seq.encoder_decoder(7, 5, embed_size=4, hidden_size=6)
      >>> params = model.init(jax.random.key(0))
      >>> source = jnp.array([[3, 4, 5], [6, 3, 0]])
      >>> targets = jnp.array([[3, 4, 2], [4, 2, 0]])
      >>> logits = model.apply(params, source, targets,
      ...                      source_lengths=jnp.array([3, 2]))
      >>> logits.shape
      (2, 3, 5)
    """
    valid = _Valid(source_mask, source_lengths, target_mask, target_lengths)
    feeding = _Feeding(dropout_key, sampling_probability, sampling, sampling_key)
    logits, _, _ = forward(config, params, source, targets, valid, feeding, "apply")
    return logits


def loss(
    config: Config,
    params: Params,
    source,
    targets,
    *,
    source_mask=None,
    source_lengths=None,
    target_mask=None,
    target_lengths=None,
    weights=None,
    label_smoothing=0.0,
    reduction: _losses.Reduction = "weighted_mean",
    dropout_key: jax.Array | None = None,
    sampling_probability=0.0,
    sampling: str = "argmax",
    sampling_key: jax.Array | None = None,
) -> jax.Array:
    """The cross-entropy of the targets, weighted within the target mask.

    :func:`seqmask.losses.softmax_cross_entropy_with_integer_labels` on
    :func:`apply`'s logits, with the weights ``weights`` inside the target
    mask and 0 outside it (padded positions never count, whatever the
    weights say there).

    Args:
      config, params, source, targets, source_mask, source_lengths,
        target_mask, target_lengths, dropout_key, sampling_probability,
        sampling, sampling_key: as :func:`apply`.
      weights: None (1 at every valid target position), a weight a sequence
        ``[*batch]``, or a weight a token ``[*batch, target]``.
      label_smoothing: in ``[0, 1)``, as :mod:`seqmask.losses`.
      reduction: as :mod:`seqmask.losses` (``"weighted_mean"``: the mean over
        valid target tokens); for ``"sequence_mean"`` every entry of
        ``[*batch]`` is one sequence, however many batch axes there are.

    Returns:
      A scalar, or per-token losses ``[*batch, target]`` for
      ``reduction="none"``, in float32 (float64 with float64 parameters,
      as :mod:`seqmask.losses` computes).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from seqmask import losses, seq2seq
      >>> model = seq2seq.encoder_decoder(7, 5, embed_size=4, hidden_size=6)
      >>> params = model.init(jax.random.key(0))
      >>> source, targets = jnp.array([[3, 4, 5], [6, 3, 0]]), jnp.array(
      ...     [[3, 4, 2], [4, 2, 0]])
      >>> lengths = jnp.array([3, 2])  # the source has no pad id: give its lengths
      >>> value = model.loss(params, source, targets, source_lengths=lengths,
      ...                    label_smoothing=0.1)
      >>> by_hand = losses.softmax_cross_entropy_with_integer_labels(
      ...     model.apply(params, source, targets, source_lengths=lengths), targets,
      ...     (targets != model.pad_id).astype(jnp.float32), label_smoothing=0.1)
      >>> bool(jnp.allclose(value, by_hand))
      True
    """
    where = "loss"
    _checks.one_of(reduction, _losses.REDUCTIONS, "reduction", where)
    _checks.number(label_smoothing, "label_smoothing", where)
    _checks.in_range(
        label_smoothing, "label_smoothing", where, low=0, high=1, high_open=True
    )
    valid = _Valid(source_mask, source_lengths, target_mask, target_lengths)
    feeding = _Feeding(dropout_key, sampling_probability, sampling, sampling_key)
    logits, targets, mask = forward(
        config, params, source, targets, valid, feeding, where
    )
    weights = _masked_weights(weights, mask, where)
    if reduction == "sequence_mean":
        # The losses' sequence_mean takes axis 0 for the sequences; here every
        # entry of [*batch] (none, one or several axes) is one target sequence.
        n_batch = targets.ndim - 1
        logits, targets, weights = (
            _sharding.flatten_rows(x, n_batch) for x in (logits, targets, weights)
        )
    return _losses.softmax_cross_entropy_with_integer_labels(
        logits,
        targets,
        weights,
        reduction=reduction,
        label_smoothing=label_smoothing,
    )


def _masked_weights(weights, mask, where: str) -> jax.Array:
    if weights is None:
        return mask.astype(jnp.float32)
    weights = _checks.array(weights, "weights", where)
    if not (
        jnp.issubdtype(weights.dtype, jnp.floating)
        or jnp.issubdtype(weights.dtype, jnp.integer)
    ):
        _checks.fail(
            where, f"weights must be numbers; got dtype {weights.dtype}.", TypeError
        )
    batch_shape = tuple(mask.shape[:-1])
    if tuple(weights.shape) == batch_shape:
        weights = weights[..., None]
    elif tuple(weights.shape) != tuple(mask.shape):
        _checks.fail(
            where,
            f"weights must be [*batch] = {batch_shape} (a weight a sequence) or "
            f"[*batch, target] = {tuple(mask.shape)} (a weight a token); got shape "
            f"{tuple(weights.shape)}.",
        )
    if not jnp.issubdtype(weights.dtype, jnp.floating):
        weights = weights.astype(jnp.float32)
    weights = jnp.broadcast_to(weights, mask.shape)
    # Select, not multiply: NaN weights at padded positions stay out.
    return jnp.where(mask, weights, jnp.zeros((), weights.dtype))


class _Valid(NamedTuple):
    """Which source and target positions count, as given."""

    source_mask: Any
    source_lengths: Any
    target_mask: Any
    target_lengths: Any


class _Feeding(NamedTuple):
    """What the decoder is fed besides the targets, as given."""

    dropout_key: Any
    sampling_probability: Any
    sampling: str
    sampling_key: Any


def forward(
    config: Config,
    params: Params,
    source,
    targets,
    valid: _Valid,
    feeding: _Feeding,
    where: str,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """:func:`apply`'s work: ``(logits, targets, target mask)``, checked."""
    source_mask, source_lengths, target_mask, target_lengths = valid
    dropout_key, sampling_probability, sampling, sampling_key = feeding
    check_config(config, where)
    check_params(config, params, where)
    targets, mask = _inputs.tokens_and_mask(
        targets,
        target_mask,
        target_lengths,
        name="targets",
        prefix="target",
        vocab_size=config.target_vocab_size,
        where=where,
        default_pad_id=config.pad_id,
    )
    source = _checks.integer_array(
        source, "source", where, hint=" Pass source as integer token ids."
    )
    _checks.min_rank(source, 1, "source", where, "[*batch, source]")
    _inputs.same_batch(targets, source.shape[:-1], "targets", "source", where)
    dropout_key = _inputs.prng_key(dropout_key, "dropout_key", where)
    sampling_key = _inputs.prng_key(sampling_key, "sampling_key", where)
    _check_sampling(sampling_probability, sampling, where)
    teacher = _is(sampling_probability, 0.0)
    always = _is(sampling_probability, 1.0)
    if not teacher and sampling_key is None and not (always and sampling == "argmax"):
        probability = _checks.concrete(sampling_probability)
        given = "a traced value" if probability is None else f"{float(probability)!r}"
        _checks.fail(
            where,
            "sampling_key is needed to feed the model's own predictions (got "
            f"sampling_probability {given} and sampling={sampling!r}; only 0, or 1 "
            "with 'argmax', need none); pass sampling_key=jax.random.key(...).",
        )
    masking = (source_mask, source_lengths)
    state = encode_checked(config, params, source, masking, dropout_key, where)
    inputs = _decoder.decoder_inputs(targets, mask, config.bos_id)
    if teacher:
        logits = _decoder.teacher_forcing(
            config, params, state, inputs, mask, dropout_key=dropout_key
        )
    else:
        logits, _ = own_predictions(
            config,
            params,
            state,
            inputs,
            mask,
            sampling_probability=1.0 if always else sampling_probability,
            sampling=sampling,
            sampling_key=sampling_key,
            dropout_key=dropout_key,
        )
    return logits, targets, mask


def own_predictions(
    config: Config,
    params: Params,
    state: DecoderState,
    inputs,
    mask,
    *,
    sampling_probability,
    sampling: str = "argmax",
    sampling_key=None,
    dropout_key=None,
) -> tuple[jax.Array, jax.Array]:
    """The decoder fed its own predictions with probability ``p`` a token.

    At each valid position that has a previous valid position, a coin with
    probability ``p`` decides between the given input (the previous target)
    and the model's prediction at the previous valid position: its argmax,
    or a draw by inverse transform sampling from its softmax. With ``k_coin,
    k_draw = jax.random.split(sampling_key)``, the coin of the token fed at
    position ``t`` is ``jax.random.bernoulli(k_coin, p, [target, *batch])``
    at index ``t``, and the draw from the logits at position ``t`` uses
    ``jax.random.uniform(k_draw, [target, *batch])`` at index ``t``
    (time-major). Dropout keep masks are those of teacher forcing.

    Args:
      config: the :class:`~seqmask.seq2seq.Config`.
      params: the parameters.
      state: the start state (from :func:`~seqmask.seq2seq.encode`).
      inputs: integer ``[*batch, target]``, the teacher-forcing inputs (see
        :func:`~seqmask.seq2seq.decoder_inputs`).
      mask: boolean ``[*batch, target]``.
      sampling_probability: ``p``, a number or a scalar array.
      sampling: ``"argmax"`` or ``"sample"``.
      sampling_key: a PRNG key; may be None only for ``p == 1`` with
        ``"argmax"``.
      dropout_key: a PRNG key for dropout, or None.

    Returns:
      ``(logits [*batch, target, Vt], fed)``: the logits and the token fed at
      each position (``bos_id`` where padded), integer ``[*batch, target]``
      in a signed dtype of at least 32 bits (narrower inputs could not hold
      every id of a large target vocabulary).
    """
    where = "own_predictions"
    inputs, mask, dropout_key = decoder_arguments(
        config, params, state, (inputs, mask, dropout_key), where
    )
    _check_sampling(sampling_probability, sampling, where)
    sampling_key = _inputs.prng_key(sampling_key, "sampling_key", where)
    if sampling_key is None and not (
        _is(sampling_probability, 1.0) and sampling == "argmax"
    ):
        _checks.fail(
            where,
            "sampling_key may be None only with sampling_probability=1.0 and "
            "sampling='argmax'.",
        )
    batch_shape, time = tuple(inputs.shape[:-1]), int(inputs.shape[-1])
    lead = (time, *batch_shape)
    embedding, between, output = _decoder.dropout_keeps(
        config, params, dropout_key, lead
    )
    has_previous = _decoder.previous_valid(mask) >= 0
    if sampling_key is None:
        coins, uniforms = jnp.ones(lead, jnp.bool_), jnp.zeros(lead, jnp.float32)
    else:
        coin_key, draw_key = jax.random.split(sampling_key)
        coins = jax.random.bernoulli(coin_key, sampling_probability, lead)
        uniforms = jax.random.uniform(draw_key, lead)
    # The first valid position of a row reads bos_id, whatever the coin says.
    use_model = coins & jnp.moveaxis(has_previous, -1, 0)
    # [time, *batch] draws laid out like the inputs' time and batch axes.
    time_then_batch = (inputs.ndim - 1, *range(inputs.ndim - 1))
    use_model, uniforms = _sharding.shard_like_batch(
        (use_model, uniforms), inputs, time_then_batch
    )
    memory = state.memory

    def body(carry, xs):
        decoder, attentional, predicted = carry
        given, use, uniform, keep_embedding, keep_between, keep_output = xs
        token = jnp.where(use, predicted, given)
        x = _config.embed(params["target_embedding"], token)
        x = _config.dropout(x, keep_embedding, config.embedding_dropout)
        current = DecoderState(decoder, attentional, memory)
        decoder, vector = _decoder.decoder_cells(
            config, params, current, x, keep_between
        )
        attentional = _decoder.fed_back(config, attentional, vector)
        vector = _config.dropout(vector, keep_output, config.output_dropout)
        logits = _decoder.output_logits(config, params, vector)
        choice = _choose(logits, uniform, sampling).astype(token.dtype)
        return (decoder, attentional, choice), (logits, token)

    start = jnp.full(batch_shape, config.bos_id, inputs.dtype)
    start = _sharding.shard_like_batch(start, inputs, time_then_batch[1:])
    _, (logits, fed) = masked_scan(
        body,
        (state.carry, state.attentional, start),
        (jnp.moveaxis(inputs, -1, 0), use_model, uniforms, embedding, between, output),
        jnp.moveaxis(mask, -1, 0),
    )
    fed = jnp.where(jnp.moveaxis(mask, -1, 0), fed, config.bos_id)
    return jnp.moveaxis(logits, 0, -2), jnp.moveaxis(fed, 0, -1)


def _check_sampling(probability, sampling: str, where: str) -> None:
    _checks.one_of(sampling, SAMPLINGS, "sampling", where)
    _checks.number(probability, "sampling_probability", where)
    _checks.in_range(probability, "sampling_probability", where, low=0, high=1)


def _is(value, number: float) -> bool:
    """Whether ``value`` is known now to equal ``number``."""
    concrete = _checks.concrete(value)
    return concrete is not None and concrete.size == 1 and float(concrete) == number


def _choose(logits, uniform, sampling: str) -> jax.Array:
    """The argmax, or the inverse-CDF draw for ``uniform`` in ``[0, 1)``."""
    logits = jax.lax.stop_gradient(logits)
    if sampling == "argmax":
        return jnp.argmax(logits, axis=-1)
    probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
    cdf = jnp.cumsum(probs, axis=-1)
    below = cdf <= (uniform * cdf[..., -1])[..., None]
    index = jnp.sum(below.astype(jnp.int32), axis=-1)
    return jnp.minimum(index, logits.shape[-1] - 1)
