"""``skip_padding``: skipping chunks of padding changes no value and no gradient.

The reference is the same layer with ``skip_padding=False`` (itself tested
against NumPy and against unpadded rows in ``test_layers.py``), over batch
masks whose padding fills whole chunks: right and left padding, holes,
empty rows, an all-padding batch, a time axis that chunks do not divide,
with resets in skipped chunks, a learned initial state (so that ``reset_to``
has a gradient), reverse scans, every ``remat``, and NaN at padded steps;
second order too (forward mode is refused). A step counter shows that
skipped chunks do not run, in either pass, and the compiled gradient's
scratch memory that the backward pass keeps less than the plain scan's.
"""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import per_mesh_kind

import seqmask
from seqmask import cells

B, T, IN, H = 4, 23, 3, 5

CELL = cells.learnable_initial_state(
    cells.lstm(H), carry_init=jax.nn.initializers.normal(1.0)
)
PARAMS = CELL.init(jax.random.key(0), IN)


def _mask(rows):
    mask = np.zeros((B, T), bool)
    for row, steps in enumerate(rows):
        mask[row, steps] = True
    return mask


# Batch masks (every row of one batch) that leave whole chunks without a
# valid step; T = 23 is no multiple of the chunk lengths used.
MASKS = {
    "right padding": _mask([range(0, 7), range(0, 2), [], range(0, 5)]),
    "left padding": _mask([range(16, 23), range(20, 23), range(22, 23), []]),
    "holes": _mask([[1, 12, 13], [2, 21], [], [12]]),
    "middle": _mask([range(8, 14), range(9, 11), [], range(8, 9)]),
    "empty rows": _mask([[], [], [5], []]),
    "all padding": np.zeros((B, T), bool),
    "full": np.ones((B, T), bool),
}
# Resets at valid and at padded steps, inside skipped chunks too.
RESETS = np.zeros((B, T), bool)
RESETS[0, [0, 3, 15]] = True
RESETS[1, [9, 18]] = True
RESETS[2, [4]] = True
RESETS[3, [1, 19, 22]] = True

# (skip_padding, remat) pairs: chunk lengths that divide nothing, the
# default, one chunk longer than T, and every kind of remat nesting.
OPTIONS = [
    (True, False),  # chunks of 12, time padded to 24
    (4, False),
    (5, 3),
    (3, 8),
    (4, 4),
    (7, True),
    (50, False),
]


def _loss(options, reverse):
    skip, remat = options

    def loss(params, xs, mask, resets, weights):
        carry, ys = seqmask.rnn(
            CELL,
            params,
            xs,
            mask=mask,
            resets=resets,
            reverse=reverse,
            remat=remat,
            skip_padding=skip,
        )
        value = jnp.sum(jnp.sin(ys) * weights) + jnp.sum(carry.h**2 + carry.c)
        return value, (carry, ys)

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))


def _close(got, want):
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6),
        got,
        want,
    )


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("with_resets", [False, True], ids=["", "resets"])
def test_skipping_changes_no_value_and_no_gradient(reverse, with_resets):
    rng = np.random.default_rng(1)
    reference = _loss((False, False), reverse)
    variants = {options: _loss(options, reverse) for options in OPTIONS}
    for name, mask in MASKS.items():
        xs = rng.normal(size=(B, T, IN)).astype(np.float32)
        xs[~mask] = np.nan  # what sits at padded steps must not matter
        weights = rng.normal(size=(B, T, H)).astype(np.float32)
        resets = RESETS if with_resets else None
        want = reference(PARAMS, xs, mask, resets, weights)
        assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(want)), name
        # the gradient with respect to a padded input is exactly zero
        np.testing.assert_array_equal(want[1][1][~mask], 0.0)
        for options, variant in variants.items():
            try:
                _close(variant(PARAMS, xs, mask, resets, weights), want)
            except AssertionError as error:
                raise AssertionError(f"{name}, {options}: {error}") from None


def test_skipped_chunks_run_in_neither_pass():
    """A cell that counts its steps: with the valid steps in the first two
    chunks of four, only those chunks run, forward and (recomputed) in the
    backward pass; without skipping every step runs once."""
    steps_run = []

    def count(x):
        steps_run.append(1)

    base = cells.gru(H)

    def apply(params, carry, x):
        jax.debug.callback(count, x[..., 0])
        return base.apply(params, carry, x)

    counting = base._replace(apply=apply, project_inputs=None, apply_projected=None)
    params = counting.init(jax.random.key(1), IN)
    steps = 32
    xs = jnp.ones((2, steps, IN))
    lengths = jnp.array([5, 2])

    def loss(params, skip):
        _, ys = seqmask.rnn(
            counting, params, xs, lengths=lengths, skip_padding=skip, hoist=False
        )
        return jnp.sum(ys**2)

    results = {}
    for skip in (False, 4):
        steps_run.clear()
        jax.jit(jax.grad(loss), static_argnums=1)(params, skip)
        jax.effects_barrier()
        results[skip] = len(steps_run)
    assert results[False] == steps
    # two chunks of four, once forward and once recomputed backward
    assert results[4] == 2 * 2 * 4


def test_a_hand_built_cell_that_closes_over_what_is_differentiated():
    """A cell built by hand, naming no gates (so its steps are recomputed in
    the backward pass), whose step closes over an array that is
    differentiated but is not among its parameters: values and gradients of
    no skipping, for the parameters and for the closed-over array."""

    def make(scale):
        def apply(params, h, x):
            h = jnp.tanh(x @ params["w"] + h @ params["u"]) * scale[None]
            return h, h**2

        return cells.Cell(
            init=lambda key, size: {
                "w": jax.random.normal(key, (size, H)),
                "u": jax.random.normal(jax.random.fold_in(key, 1), (H, H)) / H,
            },
            initial_carry=lambda params, batch: jnp.zeros((*batch, H)),
            apply=apply,
        )

    params = make(1.0).init(jax.random.key(9), IN)
    rng = np.random.default_rng(9)
    xs = rng.normal(size=(B, T, IN)).astype(np.float32)
    mask = MASKS["holes"] | MASKS["left padding"]
    scale = jnp.linspace(0.5, 1.5, H)

    def loss(params, scale, skip, reverse):
        carry, ys = seqmask.rnn(
            make(scale),
            params,
            xs,
            mask=mask,
            resets=RESETS,
            reverse=reverse,
            skip_padding=skip,
        )
        return jnp.sum(jnp.cos(ys)) + jnp.sum(carry**2)

    grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)), static_argnums=(2, 3))
    for reverse in (False, True):
        _close(grad(params, scale, 4, reverse), grad(params, scale, False, reverse))


def test_a_cell_with_an_integer_output_skips_alike():
    """An integer output leaf has no cotangent of its dtype: such a step runs
    chunk by chunk, with the values and gradients of no skipping."""

    def apply(params, h, x):
        h = jnp.tanh(x @ params["w"] + h)
        return h, {"h": h, "argmax": jnp.argmax(h, -1)}

    cell = cells.Cell(
        init=lambda key, size: {"w": jax.random.normal(key, (size, H))},
        initial_carry=lambda params, batch: jnp.zeros((*batch, H)),
        apply=apply,
    )
    params = cell.init(jax.random.key(4), IN)
    xs = np.random.default_rng(4).normal(size=(B, T, IN)).astype(np.float32)

    def loss(params, skip):
        _, ys = seqmask.rnn(cell, params, xs, mask=MASKS["holes"], skip_padding=skip)
        return jnp.sum(jnp.sin(ys["h"])), ys["argmax"]

    grad = jax.jit(jax.value_and_grad(loss, has_aux=True), static_argnums=1)
    _close(grad(params, 4), grad(params, False))


def test_vmap_gives_the_same_values():
    """Under vmap the choice to skip becomes a select: the same values."""
    rng = np.random.default_rng(2)
    xs = rng.normal(size=(3, B, T, IN)).astype(np.float32)
    masks = np.stack([MASKS["right padding"], MASKS["holes"], MASKS["all padding"]])

    def run(xs, mask, skip):
        return seqmask.rnn(CELL, PARAMS, xs, mask=mask, skip_padding=skip)

    got = jax.vmap(lambda x, m: run(x, m, 4))(xs, masks)
    want = jax.vmap(lambda x, m: run(x, m, False))(xs, masks)
    _close(got, want)


def test_bidirectional_and_stacked_skip_alike():
    """Both directions, every layer: values and gradients of no skipping,
    with packed-row resets and left padding."""
    mask = MASKS["left padding"] | MASKS["right padding"]
    rng = np.random.default_rng(3)
    xs = rng.normal(size=(B, T, IN)).astype(np.float32)
    xs[~mask] = np.nan
    bi = seqmask.init_bidirectional(jax.random.key(2), CELL, IN)
    stack = seqmask.init_stacked(
        jax.random.key(3), CELL, IN, num_layers=2, bidirectional=True
    )

    def loss(params, skip, which):
        if which == "bidirectional":
            carries, ys = seqmask.bidirectional(
                CELL, params, xs, mask=mask, resets=RESETS, skip_padding=skip
            )
        else:
            carries, ys = seqmask.stacked(
                CELL,
                params,
                xs,
                mask=mask,
                resets=RESETS,
                bidirectional=True,
                skip_padding=skip,
                remat=3,
            )
        leaves = jax.tree.leaves(carries)
        return jnp.sum(jnp.sin(ys)) + sum(jnp.sum(leaf**2) for leaf in leaves)

    for which, params in (("bidirectional", bi), ("stacked", stack)):
        grad = jax.jit(jax.value_and_grad(loss), static_argnums=(1, 2))
        _close(grad(params, 4, which), grad(params, False, which))


def test_a_linear_recurrence_ignores_skip_padding():
    """Cells with a declared linear recurrence run one linear scan, with or
    without skip_padding (same values)."""
    cell = cells.min_gru(H)
    params = cell.init(jax.random.key(4), IN)
    rng = np.random.default_rng(4)
    xs = rng.normal(size=(B, T, IN)).astype(np.float32)
    mask = MASKS["holes"]
    got = seqmask.rnn(cell, params, xs, mask=mask, skip_padding=4)
    want = seqmask.rnn(cell, params, xs, mask=mask, skip_padding=False)
    jax.tree.map(np.testing.assert_array_equal, got, want)


def test_skip_padding_option_is_checked():
    xs = np.zeros((B, T, IN), np.float32)
    with pytest.raises(ValueError, match="rnn: skip_padding must be a positive int"):
        seqmask.rnn(CELL, PARAMS, xs, skip_padding=0)
    with pytest.raises(TypeError, match="stacked: skip_padding must be a bool or"):
        seqmask.stacked(CELL, [PARAMS], xs, skip_padding="yes")


def test_the_flax_modules_pass_skip_padding_through():
    """nnx and linen RNN, Bidirectional and Stacked: the values of no
    skipping, and the option reaches the core (which checks it)."""
    import flax.linen as nn
    from flax import nnx

    import seqmask.linen
    import seqmask.nnx

    rng = np.random.default_rng(5)
    xs = rng.normal(size=(B, T, IN)).astype(np.float32)
    mask = MASKS["left padding"] | MASKS["holes"]
    rngs = nnx.Rngs(0)
    nnx_modules = {
        "nnx.RNN": seqmask.nnx.RNN(nnx.GRUCell(IN, H, rngs=rngs)),
        "nnx.Bidirectional": seqmask.nnx.Bidirectional(
            seqmask.nnx.RNN(nnx.GRUCell(IN, H, rngs=rngs)),
            seqmask.nnx.RNN(nnx.GRUCell(IN, H, rngs=rngs)),
        ),
        "nnx.Stacked": seqmask.nnx.Stacked(
            cells.gru(H), 2, in_features=IN, bidirectional=True, rngs=rngs
        ),
    }
    for module in nnx_modules.values():
        _close(module(xs, mask=mask, skip_padding=4), module(xs, mask=mask))
        with pytest.raises(ValueError, match="skip_padding must be a positive int"):
            module(xs, mask=mask, skip_padding=0)
    linen_modules = {
        "linen.RNN": seqmask.linen.RNN(nn.GRUCell(H)),
        "linen.Bidirectional": seqmask.linen.Bidirectional(
            seqmask.linen.RNN(nn.GRUCell(H)), seqmask.linen.RNN(nn.GRUCell(H))
        ),
    }
    for module in linen_modules.values():
        variables = module.init(jax.random.key(0), xs, mask=mask)
        _close(
            module.apply(variables, xs, mask=mask, skip_padding=4),
            module.apply(variables, xs, mask=mask),
        )
        with pytest.raises(ValueError, match="skip_padding must be a positive int"):
            module.apply(variables, xs, mask=mask, skip_padding=0)


@pytest.mark.parametrize("skip", [True, 16])
def test_compile_size_does_not_grow_with_time(skip):
    """One loop over chunks (and one over the tail), whatever the length."""
    cell = cells.lstm(H)
    params = cell.init(jax.random.key(6), IN)

    def lines(steps):
        xs = jax.ShapeDtypeStruct((2, steps, IN), jnp.float32)
        lengths = jax.ShapeDtypeStruct((2,), jnp.int32)

        def loss(params, xs, lengths):
            _, ys = seqmask.rnn(cell, params, xs, lengths=lengths, skip_padding=skip)
            return jnp.sum(ys)

        text = jax.jit(jax.grad(loss)).lower(params, xs, lengths).as_text()
        return len(text.splitlines())

    assert lines(50) == lines(1000)


@pytest.mark.parametrize("weights_are", ["arguments", "closed over", "bfloat16"])
def test_the_backward_pass_keeps_less_than_the_plain_scan(weights_are):
    """The backward pass keeps a step's inputs and gate pre-activations, for
    the steps that run: less scratch memory than the plain scan's
    residuals, and per step far less than one copy of the weights (1.25
    MiB here: kept once, not once a step), whether the weights are
    differentiated arguments, constants the loss closes over, or cast to
    bfloat16 inside every step."""
    dtype = jnp.bfloat16 if weights_are == "bfloat16" else None
    cell = cells.lstm(256, dtype=dtype)
    params = cell.init(jax.random.key(7), 64)

    def scratch(steps, skip):
        xs = jax.ShapeDtypeStruct((1, steps, 64), jnp.float32)
        lengths = jax.ShapeDtypeStruct((1,), jnp.int32)

        def loss(params, xs, lengths):
            _, ys = seqmask.rnn(cell, params, xs, lengths=lengths, skip_padding=skip)
            return jnp.sum(ys.astype(jnp.float32))

        if weights_are == "closed over":
            grad = jax.grad(lambda xs, lengths: loss(params, xs, lengths))
            lowered = jax.jit(grad).lower(xs, lengths)
        else:
            lowered = jax.jit(jax.grad(loss)).lower(params, xs, lengths)
        analysis = lowered.compile().memory_analysis()
        if analysis is None:
            pytest.skip("this backend reports no memory analysis")
        return analysis.temp_size_in_bytes

    weights = sum(leaf.nbytes for leaf in jax.tree.leaves(params))
    assert scratch(512, 16) < scratch(512, False)
    assert (scratch(512, 16) - scratch(32, 16)) / 480 < weights / 64


def test_second_order_matches_no_skipping_and_forward_mode_says_why_not():
    """Forward over reverse (a Hessian-vector product, ``jax.hessian``)
    goes through the skipped chunks as through the plain scan; forward mode
    of the layer itself is refused with the way out."""
    rng = np.random.default_rng(8)
    xs = rng.normal(size=(B, T, IN)).astype(np.float32)
    mask = MASKS["right padding"]
    tangent = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape)), PARAMS)

    def loss(skip):
        def value(params):
            carry, ys = seqmask.rnn(
                CELL, params, xs, mask=mask, resets=RESETS, skip_padding=skip
            )
            return jnp.sum(jnp.sin(ys)) + jnp.sum(carry.c**2)

        return value

    def hvp(skip):
        return jax.jit(lambda p, t: jax.jvp(jax.grad(loss(skip)), (p,), (t,)))

    for skip in (True, 4):
        _close(hvp(skip)(PARAMS, tangent), hvp(False)(PARAMS, tangent))
        with pytest.raises(TypeError, match="rnn: skip_padding has a reverse-mode"):
            jax.jvp(loss(skip), (PARAMS,), (tangent,))

    def hessian_of(skip):
        def value(h):
            start = PARAMS["initial_carry"]._replace(h=h)
            return loss(skip)({**PARAMS, "initial_carry": start})

        return jax.jit(jax.hessian(value))(PARAMS["initial_carry"].h)

    _close(hessian_of(True), hessian_of(False))


_SHARDED = """
import sys
import jax, jax.numpy as jnp, numpy as np, seqmask
from jax.sharding import NamedSharding, PartitionSpec as P
sys.path.insert(0, sys.argv[1])
from test_sharding import loop_collectives

cell = seqmask.cells.learnable_initial_state(
    seqmask.cells.lstm(4), carry_init=jax.nn.initializers.normal(1.0))
params = cell.init(jax.random.key(0), 3)
rng = np.random.default_rng(0)
xs = rng.normal(size=(16, 24, 3)).astype(np.float32)
lengths = rng.integers(0, 9, 16).astype(np.int32)
resets = rng.random((16, 24)) < 0.1

def loss(params, xs, lengths, resets, skip):
    carry, ys = seqmask.rnn(cell, params, xs, lengths=lengths, resets=resets,
                            reverse=True, skip_padding=skip)
    return jnp.sum(ys**2) + jnp.sum(carry.c)

grad = jax.jit(jax.value_and_grad(loss), static_argnums=4)
want = grad(params, xs, lengths, resets, False)
for axis_type in (jax.sharding.AxisType.Explicit, jax.sharding.AxisType.Auto):
    mesh = jax.make_mesh((8,), ("data",), axis_types=(axis_type,))
    put = lambda a: jax.device_put(a, NamedSharding(mesh, P("data")))
    with jax.set_mesh(mesh):
        args = (params, put(xs), put(lengths), put(resets))
        got = grad(*args, True)
        found = [loop_collectives(grad.lower(*args, skip).compile().as_text())[1]
                 for skip in (False, True)]
        counts = [sum(len(lines) for lines in f.values()) for f in found]
    errors = jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))), got, want)
    print(axis_type, max(jax.tree.leaves(errors)), *counts)
"""


def test_a_sharded_batch_skips_alike_and_adds_no_loop_collective():
    """On 8 virtual CPU devices with the batch split over them (explicit and
    auto mesh axes): the values and gradients of one device, and no more
    collectives inside loops than the plain scan has."""
    tests = str(pathlib.Path(__file__).parent)
    for line in per_mesh_kind(_SHARDED, tests):
        kind, error, plain, skipping = line
        assert float(error) < 1e-5, line
        assert int(skipping) <= int(plain), line
