"""``skip_padding``'s loop: the steps of chunks with a valid step, and only those.

A masked scan (:mod:`seqmask._scanning`) over ``[time, *batch]`` whose time
axis is cut into chunks of ``chunk`` steps. The forward pass is a
:func:`jax.lax.while_loop` over the steps of the chunks in which some row
has a valid step, in the order of the scan; the other chunks cost nothing.
By the masked scan's semantics a skipped chunk changes the carry only by
its resets (a reset applies before a step whether or not the step is
valid), and its outputs are zero.

JAX cannot differentiate a ``while_loop`` in reverse mode, and its reverse
mode of a ``lax.cond`` that skips a chunk keeps residual buffers for every
chunk, skipped or not (see benchmarks/README.md). So the derivative is
written here (:func:`jax.custom_vjp`): the forward pass keeps, for each
step it runs and nothing else, the residuals of that step's derivative,
and the backward pass runs the same steps in reverse from them. The
residuals are the step's inputs and the values the step names
:data:`GATES` (seqmask's cells name their gate pre-activations): the
backward pass recomputes the element-wise rest from them, never a matmul.
A step that names nothing is recomputed from its inputs. Being a
``custom_vjp``, the loop has a reverse-mode derivative only: ``jax.jvp``
and ``jax.jacfwd`` of it raise.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, cast

import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name
from jax.extend.core import ClosedJaxpr, jaxpr_as_fun

import seqmask._checks as _checks
from seqmask import _sharding
from seqmask._masking import where_rows, where_rows_tree

#: The name under which a cell's step marks the values that the backward
#: pass of ``skip_padding`` keeps (:func:`name_gates`).
GATES = "seqmask.gates"
_POLICY = jax.checkpoint_policies.save_only_these_names(GATES)


def name_gates(z):
    """``z``, named as a step's gate pre-activations.

    ``skip_padding``'s backward pass keeps, for each step it runs, the
    step's inputs and the values named here, and recomputes the rest from
    them. Name the output of a step's matmuls (the pre-activations), so that
    the backward pass recomputes element-wise work only; a step that names
    nothing is recomputed whole. Values and gradients do not depend on it,
    and outside that backward pass it changes nothing (it is
    :func:`jax.ad_checkpoint.checkpoint_name`, for a name seqmask owns).

    Examples:
      >>> import jax.numpy as jnp
      >>> from seqmask.cells import name_gates
      >>> def step(params, h, x):  # a custom tanh cell
      ...     z = name_gates(x @ params["w"] + h @ params["u"])
      ...     h = jnp.tanh(z)
      ...     return h, h
      >>> params = {"w": jnp.eye(2), "u": jnp.eye(2)}
      >>> step(params, jnp.zeros(2), jnp.ones(2))[0].tolist() == [
      ...     float(jnp.tanh(1.0))] * 2
      True
    """
    return checkpoint_name(z, GATES)


def applies(step, carry, xs) -> bool:
    """Whether the loop can run ``step`` over these: every leaf of the
    carry, the inputs and the step's outputs is a floating-point array
    (others have no cotangent of their own dtype). ``xs`` may be abstract."""
    x0 = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), xs)
    outputs = jax.eval_shape(step, carry, x0)[1]
    leaves = jax.tree.leaves((carry, xs, outputs))
    return all(jnp.issubdtype(leaf.dtype, jnp.inexact) for leaf in leaves)


def run(step, carry, xs, mask, resets, reset_to, *, chunk: int, reverse: bool, where):
    """``(final_carry, ys)`` of the masked scan of ``step`` over ``xs``,
    running only the chunks of ``chunk`` steps with a valid step.

    ``step(carry, x) -> (carry, y)``; ``xs`` a pytree of ``[time, *batch,
    ...]`` arrays, ``mask`` and ``resets`` (or None) ``[time, *batch]``
    booleans, ``reset_to`` like ``carry`` (used only with ``resets``).
    Outputs at padded steps are zero.
    """
    x0 = jax.tree.map(lambda x: x[0], xs)
    converted, consts = _hoisted(step, carry, x0, mask.shape[1:], where)
    order, count = _schedule(mask, chunk, reverse)
    resetting = None if resets is None else _resetting(resets, order, count, reverse)
    if resets is None:
        reset_to = None
    args = (consts, carry, xs, mask, (order, count), resetting, reset_to)
    try:
        return cast(tuple[Any, Any], _scan(converted, *args))
    except TypeError as error:
        if "forward-mode" not in str(error):
            raise
        _checks.fail(
            where,
            "skip_padding has a reverse-mode derivative only (jax.grad, jax.vjp, "
            "and forward-over-reverse, e.g. Hessian-vector products); forward "
            "mode (jax.jvp, jax.jacfwd) needs skip_padding=False.",
            TypeError,
        )


def _hoisted(step, carry, x0, batch_shape, where: str):
    """``(step, consts)``: the step checked (as the masked scan checks it, at
    trace time) and as a :class:`_Step`, ``fn(carry, x, *consts)``, with every
    floating-point array it closes over (the weights) made an argument.

    Tracers among them (weights being differentiated) must be arguments of
    a ``custom_vjp``, which returns their cotangents; concrete ones too, or
    the backward pass would keep them once a step as residuals of the step.
    """

    def checked(carry, x):
        return _checks.scan_step(step(carry, x), carry, tuple(batch_shape), where)

    closed, shapes = jax.make_jaxpr(checked, return_shape=True)(carry, x0)
    hoist = [jnp.issubdtype(jnp.result_type(c), jnp.inexact) for c in closed.consts]
    out_tree = jax.tree.structure(shapes)

    def fn(carry, x, *hoisted):
        given = iter(hoisted)
        consts = [
            next(given) if h else c for c, h in zip(closed.consts, hoist, strict=True)
        ]
        run = jaxpr_as_fun(ClosedJaxpr(closed.jaxpr, consts))
        return jax.tree.unflatten(out_tree, run(*jax.tree.leaves((carry, x))))

    consts = [c for c, h in zip(closed.consts, hoist, strict=True) if h]
    return _Step(fn, shapes[1]), consts


class _Step(NamedTuple):
    """The step, ``fn(carry, x, *consts) -> (carry, y)``, and the shapes of
    its outputs ``y`` (``jax.ShapeDtypeStruct``)."""

    fn: Any
    outputs: Any

    def linearized(self, consts, carry, x):
        """``(new_carry, y, pullback)``; the pullback keeps the step's inputs
        and named gates, and recomputes the rest."""
        kept = jax.checkpoint(
            lambda consts, carry, x: self.fn(carry, x, *consts),
            policy=_POLICY,
            prevent_cse=False,
        )
        (new_carry, y), pullback = jax.vjp(kept, consts, carry, x)
        return new_carry, y, pullback


def _schedule(mask, chunk: int, reverse: bool):
    """``(order, count)``: the steps that run, in the scan's order, in the
    first ``count`` entries of ``order`` ``[time]``."""
    steps = mask.shape[0]
    # Reduced over the batch axes, not merged first: a merge of batch axes
    # split over mesh axes may have no layout JAX can infer.
    valid = jnp.any(mask, axis=tuple(range(1, mask.ndim)))
    chunks = -(-steps // chunk)
    valid = jnp.pad(valid, (0, chunks * chunk - steps))
    runs = jnp.repeat(jnp.any(valid.reshape(chunks, chunk), axis=1), chunk)[:steps]
    if reverse:
        runs = runs[::-1]
    order = jnp.nonzero(runs, size=steps, fill_value=0)[0].astype(jnp.int32)
    if reverse:
        order = steps - 1 - order
    return order, jnp.sum(runs, dtype=jnp.int32)


def _resetting(resets, order, count, reverse: bool):
    """``(before, after)``: ``before[i]`` ``[*batch]`` is set where a reset
    falls after the step run before ``order[i]`` and up to ``order[i]``;
    ``after`` where one falls after the last step that runs (skipped steps
    apply their resets too)."""
    flags = resets.astype(jnp.int32)
    seen = jnp.cumsum(flags[::-1] if reverse else flags, axis=0)
    if reverse:
        seen = seen[::-1]  # resets at this step or later in the scan's order
    at = seen[order]
    before = at > jnp.concatenate([jnp.zeros_like(at[:1]), at[:-1]])
    last = jnp.where(count > 0, at[jnp.maximum(count - 1, 0)], 0)
    total = seen[0] if reverse else seen[-1]
    return before, total > last


def _residuals(step: _Step, consts, carry, x):
    """How a step's pullback is rebuilt: ``(treedef, sources, kept)``, where
    ``sources[k]`` says where leaf ``k`` of the pullback comes from (``("const",
    j)``, ``("x", j)`` or ``("kept", j)``) and ``kept`` are the avals of the
    leaves stored once a step (the consts and inputs are there already)."""
    found = {}

    def trace(consts, carry, x):
        _, _, pullback = step.linearized(consts, carry, x)
        leaves, treedef = jax.tree.flatten(pullback)
        found["treedef"], found["sources"] = treedef, _sources(leaves, consts, x)
        return _kept(leaves, found["sources"])

    kept = jax.eval_shape(trace, consts, carry, x)
    return found["treedef"], found["sources"], kept


def _sources(leaves, consts, x) -> list:
    """For each leaf, a const or input it is (by identity), else kept."""
    known = [("const", j, v) for j, v in enumerate(jax.tree.leaves(consts))]
    known += [("x", j, v) for j, v in enumerate(jax.tree.leaves(x))]
    sources, stored = [], 0
    for leaf in leaves:
        match = next(((kind, j) for kind, j, v in known if v is leaf), None)
        if match is None:
            match, stored = ("kept", stored), stored + 1
        sources.append(match)
    return sources


def _kept(leaves, sources) -> list:
    """The leaves of a pullback that are stored once a step."""
    return [leaf for leaf, s in zip(leaves, sources, strict=True) if s[0] == "kept"]


def _rebuild(treedef, sources, consts, x, kept):
    """The pullback of one step from its consts, input and kept leaves."""
    pools = {"const": jax.tree.leaves(consts), "x": jax.tree.leaves(x), "kept": kept}
    return jax.tree.unflatten(treedef, [pools[kind][j] for kind, j in sources])


def _forward(step: _Step, consts, carry, xs, mask, schedule, resetting, reset_to, keep):
    """The loop over the steps that run; with ``keep``, also each step's
    kept residuals ``[time, ...]`` (in the order the steps run)."""
    order, count = schedule
    steps = order.shape[0]
    ys = jax.tree.map(lambda y: _sharding.stacked_zeros(y, steps), step.outputs)
    kept = []
    if keep:
        x0 = jax.tree.map(lambda x: x[0], xs)
        treedef, sources, avals = _residuals(step, consts, carry, x0)
        kept = [_sharding.stacked_zeros(a, steps) for a in avals]

    def body(state):
        i, carry, ys, kept, consts = state
        t = order[i]
        if resetting is not None:
            carry = where_rows_tree(resetting[0][i], reset_to, carry)
        x = jax.tree.map(lambda v: v[t], xs)
        if keep:
            new_carry, y, pullback = step.linearized(consts, carry, x)
            leaves = jax.tree.leaves(pullback)
            values = _kept(leaves, _sources(leaves, consts, x))
            # strict: the residuals must be those traced for the buffers
            kept = [b.at[i].set(v) for b, v in zip(kept, values, strict=True)]
        else:
            new_carry, y = step.fn(carry, x, *consts)
        m = mask[t]
        carry = where_rows_tree(m, new_carry, carry)
        ys = jax.tree.map(lambda b, v: b.at[t].set(where_rows(m, v, 0)), ys, y)
        return i + 1, carry, ys, kept, consts

    state = (jnp.int32(0), carry, ys, kept, consts)
    _, carry, ys, kept, _ = jax.lax.while_loop(lambda s: s[0] < count, body, state)
    if resetting is not None:
        carry = where_rows_tree(resetting[1], reset_to, carry)
    return (carry, ys), kept


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _scan(step, consts, carry, xs, mask, schedule, resetting, reset_to):
    """``(final_carry, ys)``; undifferentiated, the loop keeps nothing."""
    return _forward(
        step, consts, carry, xs, mask, schedule, resetting, reset_to, False
    )[0]


def _scan_forward(step, consts, carry, xs, mask, schedule, resetting, reset_to):
    """The forward pass: the outputs, and what the backward pass reads."""
    out, kept = _forward(
        step, consts, carry, xs, mask, schedule, resetting, reset_to, True
    )
    return out, (consts, carry, xs, mask, schedule, resetting, reset_to, kept)


def _scan_backward(step, saved, cotangents):
    """The steps that ran, in reverse, each through its rebuilt pullback;
    a skipped step passes the carry's cotangent through (to ``reset_to``
    where it reset the carry)."""
    consts, carry0, xs, mask, schedule, resetting, reset_to, kept = saved
    order, count = schedule
    d_carry, d_ys = cotangents
    x0 = jax.tree.map(lambda x: x[0], xs)
    treedef, sources, _ = _residuals(step, consts, carry0, x0)
    d_reset = None if reset_to is None else jax.tree.map(jnp.zeros_like, reset_to)
    if resetting is not None:
        d_carry, d_reset = _reset_backward(resetting[1], d_carry, d_reset)

    def body(state):
        i, d_carry, d_consts, d_xs, d_reset = state
        i = i - 1
        t = order[i]
        m = mask[t]
        x = jax.tree.map(lambda v: v[t], xs)
        pullback = _rebuild(treedef, sources, consts, x, [k[i] for k in kept])
        d_new = jax.tree.map(lambda d: where_rows(m, d, 0), d_carry)
        d_y = jax.tree.map(lambda d: where_rows(m, d[t], 0), d_ys)
        d_c, d_in, d_x = pullback((d_new, d_y))
        # padded rows pass the carry's cotangent through the step untouched
        d_carry = jax.tree.map(lambda a, d: a + where_rows(m, 0, d), d_in, d_carry)
        if resetting is not None:
            d_carry, d_reset = _reset_backward(resetting[0][i], d_carry, d_reset)
        d_consts = jax.tree.map(jnp.add, d_consts, d_c)
        d_xs = jax.tree.map(lambda b, v: b.at[t].set(v), d_xs, d_x)
        return i, d_carry, d_consts, d_xs, d_reset

    zeros = functools.partial(jax.tree.map, jnp.zeros_like)
    state = (count, d_carry, zeros(consts), zeros(xs), d_reset)
    _, d_carry, d_consts, d_xs, d_reset = jax.lax.while_loop(
        lambda s: s[0] > 0, body, state
    )
    return d_consts, d_carry, d_xs, None, None, None, d_reset


def _reset_backward(rows, d_carry, d_reset):
    """The transpose of ``carry = where(rows, reset_to, carry)``."""
    d_reset = jax.tree.map(lambda r, d: r + where_rows(rows, d, 0), d_reset, d_carry)
    d_carry = jax.tree.map(lambda d: where_rows(rows, 0, d), d_carry)
    return d_carry, d_reset


_scan.defvjp(_scan_forward, _scan_backward)
