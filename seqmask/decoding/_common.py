"""What the decoders share: the checked arguments and the logits rules.

:func:`check_inputs` checks the arguments every decoder takes, traces the
step function once abstractly (``jax.eval_shape``) to learn the vocabulary
size and to check its contract, and checks every token id against that
size. The logits helpers apply the hook and the ``min_length`` rule, tell a
usable row of logits from a broken one, and take the log-softmax.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import seqmask._checks as _checks
from seqmask import _sharding

STEP_SIGNATURE = "(params, state, token) -> (state, logits)"
HOOK_SIGNATURE = "(step, logits, state, tokens) -> logits"


class Options(NamedTuple):
    """The options every decoder takes, as the user gave them."""

    max_length: int
    eos_id: int
    pad_id: int
    min_length: Any
    prefix: Any
    prefix_lengths: Any


class Inputs(NamedTuple):
    """The checked arguments common to every decoder (traced)."""

    start: jax.Array  # [*batch], an integer dtype
    vocab: int
    prefix: jax.Array  # [*batch, P] in the dtype of start (P >= 1)
    prefix_lengths: jax.Array  # int32 [*batch]; 0 where nothing is forced
    min_length: jax.Array  # int32 []


class Static(NamedTuple):
    """The checked arguments common to every decoder that the jitted loops
    take as static (hashable: the functions count by identity)."""

    where: str
    step_fn: Callable
    logits_fn: Callable | None
    max_length: int
    eos_id: int
    pad_id: int


def check_inputs(
    where: str, step_fn, logits_fn, params, state, start_tokens, options: Options
) -> tuple[Inputs, Static]:
    """Check the common arguments of ``where``: ``(traced, static)`` parts."""
    max_length, eos_id, pad_id, min_length, prefix, prefix_lengths = options
    _checks.function(step_fn, "step_fn", where, STEP_SIGNATURE)
    if logits_fn is not None:
        _checks.function(logits_fn, "logits_fn", where, HOOK_SIGNATURE)
    max_length = _checks.integer(max_length, "max_length", where, minimum=1)
    eos_id = _checks.integer(eos_id, "eos_id", where)
    pad_id = _checks.integer(pad_id, "pad_id", where)
    start = _checks.integer_array(
        start_tokens,
        "start_tokens",
        where,
        hint=" Token ids are integers, e.g. jnp.full(batch_shape, bos_id).",
    )
    batch_shape = tuple(start.shape)
    _checks.leading_axes(
        state,
        batch_shape,
        "state",
        where,
        source="of start_tokens [*batch] (one token a row, no trailing axis)",
    )
    vocab = _check_step_fn(where, step_fn, params, state, start, logits_fn, max_length)
    info = jnp.iinfo(start.dtype)
    if info.max < vocab - 1:
        _checks.fail(
            where,
            f"start_tokens has dtype {start.dtype}, which cannot hold the token "
            f"ids up to {vocab - 1} of this vocabulary; pass int32 start tokens.",
            TypeError,
        )
    if not info.min <= pad_id <= info.max:
        _checks.fail(
            where,
            f"pad_id must fit the token dtype {start.dtype} of start_tokens "
            f"([{info.min}, {info.max}]); got {pad_id}.",
        )
    _checks.token_ids(start, vocab, "start_tokens", where)
    _checks.token_ids(eos_id, vocab, "eos_id", where)
    min_length = _check_min_length(min_length, max_length, where)
    prefix, prefix_lengths = _check_prefix(
        prefix, prefix_lengths, start, vocab, max_length, where
    )
    # Laid out like the batch (under explicit mesh axes; unchanged otherwise).
    prefix, prefix_lengths = _sharding.shard_like_batch((prefix, prefix_lengths), start)
    inputs = Inputs(start, vocab, prefix, prefix_lengths, min_length)
    return inputs, Static(where, step_fn, logits_fn, max_length, eos_id, pad_id)


def _check_step_fn(where, step_fn, params, state, start, logits_fn, max_length):
    """Trace ``step_fn`` (and ``logits_fn``) abstractly; return the vocab size."""
    new_state, logits = _returned_pair(
        jax.eval_shape(step_fn, params, state, start), where
    )
    _checks.tree_like(
        new_state,
        state,
        "step_fn's new state",
        where,
        expected_from="its input state",
        hint="step_fn must keep the structure, shapes and dtypes of the state.",
        error=TypeError,
    )
    batch_shape = tuple(start.shape)
    shape = tuple(logits.shape)
    if len(shape) != len(batch_shape) + 1 or shape[:-1] != batch_shape:
        _checks.fail(
            where,
            f"step_fn must return logits [*batch, vocab] with the batch shape "
            f"{batch_shape} of start_tokens; got shape {shape}.",
        )
    if not jnp.issubdtype(logits.dtype, jnp.floating):
        _checks.fail(
            where,
            f"step_fn must return floating-point logits; got dtype {logits.dtype}.",
            TypeError,
        )
    if shape[-1] < 1:
        _checks.fail(where, "step_fn returned logits with an empty vocabulary axis.")
    if logits_fn is not None:
        tokens = jax.ShapeDtypeStruct((*batch_shape, max_length), start.dtype)
        step = jax.ShapeDtypeStruct((), jnp.int32)
        out = jax.eval_shape(logits_fn, step, logits, new_state, tokens)
        if getattr(out, "shape", None) != logits.shape or not jnp.issubdtype(
            getattr(out, "dtype", jnp.int32), jnp.floating
        ):
            _checks.fail(
                where,
                f"logits_fn must return floating logits of the shape of its logits "
                f"argument {shape}; got {_checks.describe(out)}.",
            )
    return int(shape[-1])


def _returned_pair(out, where):
    if not (isinstance(out, tuple) and len(out) == 2):
        _checks.fail(
            where,
            f"step_fn must return a pair (state, logits); got {_checks.describe(out)}.",
            TypeError,
        )
    return out


def _check_min_length(min_length, max_length: int, where: str) -> jax.Array:
    if _checks.is_traced(min_length):
        value = jnp.asarray(min_length)
        if value.shape != () or not jnp.issubdtype(value.dtype, jnp.integer):
            _checks.fail(
                where,
                f"min_length must be an int; got {_checks.describe(value)}.",
                TypeError,
            )
    else:
        _checks.integer(min_length, "min_length", where)
    _checks.in_range(
        min_length,
        "min_length",
        where,
        low=0,
        high=max_length,
        hint=" (at most max_length)",
    )
    return jnp.asarray(min_length, jnp.int32)


def _check_prefix(prefix, prefix_lengths, start, vocab, max_length, where):
    batch_shape = tuple(start.shape)
    if prefix is None:
        if prefix_lengths is not None:
            _checks.fail(where, "prefix_lengths was given without a prefix.")
        return (
            jnp.zeros((*batch_shape, 1), start.dtype),
            jnp.zeros(batch_shape, jnp.int32),
        )
    prefix = _checks.integer_array(prefix, "prefix", where)
    if prefix.ndim != len(batch_shape) + 1 or prefix.shape[:-1] != batch_shape:
        _checks.fail(
            where,
            f"prefix must have shape [*batch, P] with the batch shape "
            f"{batch_shape} of start_tokens (of the source, in a model's "
            f"decoders); got {tuple(prefix.shape)}.",
        )
    width = prefix.shape[-1]
    if not 1 <= width <= max_length:
        _checks.fail(
            where,
            f"prefix must have between 1 and max_length = {max_length} "
            f"positions; got {width}.",
        )
    if prefix_lengths is None:
        prefix_lengths = jnp.full(batch_shape, width, jnp.int32)
    else:
        prefix_lengths = _checks.integer_array(prefix_lengths, "prefix_lengths", where)
        if tuple(prefix_lengths.shape) != batch_shape:
            _checks.fail(
                where,
                f"prefix_lengths must have the batch shape {batch_shape}; got "
                f"{tuple(prefix_lengths.shape)}.",
            )
        _checks.lengths(prefix_lengths, width, "prefix_lengths", where)
    counted = _counted_positions(prefix_lengths, width)
    _checks.token_ids(prefix, vocab, "prefix", where, valid=counted)
    return prefix.astype(start.dtype), prefix_lengths.astype(jnp.int32)


def _counted_positions(prefix_lengths, width):
    concrete = _checks.concrete(prefix_lengths)
    if concrete is not None:
        return np.arange(width) < concrete[..., None]
    lengths = jnp.asarray(prefix_lengths)[..., None]
    return jnp.arange(width).reshape((1,) * (lengths.ndim - 1) + (width,)) < lengths


def row_parameter(value, name: str, where: str, batch_shape, **bounds) -> jax.Array:
    """A real hyperparameter, scalar or one per row, range-checked.

    Returns it as float32 ``[*batch]``. ``bounds`` go to
    :func:`seqmask._checks.in_range` (eager when concrete, checkify when
    traced).
    """
    _check_row_shape(value, name, where, batch_shape)
    _checks.in_range(value, name, where, **bounds)
    return jnp.broadcast_to(jnp.asarray(value, jnp.float32), batch_shape)


def _check_row_shape(value, name, where, batch_shape) -> None:
    if isinstance(value, (bool, np.bool_, str)) or value is None:
        _checks.fail(
            where,
            f"{name} must be a real number or an array of one per row; got "
            f"{_checks.describe(value)}.",
            TypeError,
        )
    if isinstance(value, (int, float, np.number)):
        return
    array = _checks.array(value, name, where)
    if not (
        jnp.issubdtype(array.dtype, jnp.floating)
        or jnp.issubdtype(array.dtype, jnp.integer)
    ):
        _checks.fail(where, f"{name} must be real; got dtype {array.dtype}.", TypeError)
    if array.shape not in ((), tuple(batch_shape)):
        _checks.fail(
            where,
            f"{name} must be a scalar or have the batch shape {tuple(batch_shape)} "
            f"(one per row); got shape {tuple(array.shape)}.",
        )


# --------------------------------------------------------------------------
# Logits, inside the loops


def process_logits(logits_fn, step, logits, state, tokens, min_length, eos_id):
    """The hook, then the ``min_length`` rule (EOS at ``-inf`` before it)."""
    if logits_fn is not None:
        logits = logits_fn(step, logits, state, tokens)
    too_early = step + 1 < min_length
    eos = logits[..., eos_id]
    blocked = jnp.where(too_early, jnp.asarray(-jnp.inf, logits.dtype), eos)
    return logits.at[..., eos_id].set(blocked)


def usable(logits) -> jax.Array:
    """Per row: no NaN, no ``+inf``, and at least one entry above ``-inf``."""
    broken = jnp.isnan(logits) | jnp.isposinf(logits)
    return ~jnp.any(broken, axis=-1) & jnp.any(logits > -jnp.inf, axis=-1)


def report_unusable(where: str, ok) -> None:
    """The checkify check of the decoders' NaN rule."""
    _checks.traced_check(
        ok,
        f"{where}: the logits of an unfinished row (after logits_fn) hold NaN or "
        "+inf, or no finite entry; without checkify such a row ends there "
        "(greedy, sample) or such a hypothesis is dropped (beam_search)",
    )


def log_softmax(logits) -> jax.Array:
    """Log-softmax in float32 (float64 for float64 logits)."""
    dtype = jnp.float64 if logits.dtype == jnp.float64 else jnp.float32
    return jax.nn.log_softmax(logits.astype(dtype), axis=-1)


def prefix_at(prefix, step) -> jax.Array:
    """``prefix[..., step]`` (clamped to the last position)."""
    index = jnp.minimum(step, prefix.shape[-1] - 1)
    return jax.lax.dynamic_index_in_dim(prefix, index, axis=-1, keepdims=False)
