"""Tests of seqmask.interop against a NumPy PyTorch reference written here.

The reference implements the equations PyTorch documents for ``nn.LSTM``,
``nn.GRU`` and ``nn.RNN`` (tanh) directly on PyTorch's state-dict layout,
with several layers and both directions. Random state dicts are converted
with ``from_torch`` and run through ``seqmask.rnn`` / ``seqmask.stacked``;
outputs and final states must match in float32 and float64. Conversions
must round-trip, accept tensor-like objects without importing torch, and
fail with messages that name what is wrong. When torch is importable, the
real modules are compared too.
"""

import re
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import seqmask
from seqmask.cells import Cell, gru, learnable_initial_state, lstm, simple_rnn
from seqmask.interop import from_torch, to_torch

B, T, F, H = 2, 5, 3, 4  # batch, time, input features, hidden size: all distinct
NUM_LAYERS = 2
KINDS = ("lstm", "gru", "simple_rnn")
GATES = {"lstm": 4, "gru": 3, "simple_rnn": 1}
CELLS = {"lstm": lstm, "gru": gru, "simple_rnn": simple_rnn}


def numpy_normal_init(seed):
    """A Gaussian initialiser drawing from NumPy: non-zero everywhere, and no
    PRNG kernels to compile (the key is ignored)."""
    rng = np.random.default_rng(seed)

    def init(key, shape, dtype=jnp.float32):
        del key
        return jnp.asarray(rng.normal(size=shape), dtype)

    return init


def random_init(seed=0):
    """Initialisers for ``kernel_init``, ``recurrent_init`` and ``bias_init``."""
    init = numpy_normal_init(seed)
    return {"kernel_init": init, "recurrent_init": init, "bias_init": init}


# ---------------------------------------------------------------------------
# NumPy reference: PyTorch's documented equations on its state-dict layout


def np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def torch_step(kind, x, h, c, w_ih, w_hh, b_ih, b_hh):
    """One step of PyTorch's cell. ``x`` [B, F], ``h``/``c`` [B, H]."""
    gates_x = x @ w_ih.T + b_ih
    gates_h = h @ w_hh.T + b_hh
    if kind == "lstm":
        i, f, g, o = np.split(gates_x + gates_h, 4, axis=-1)
        c = np_sigmoid(f) * c + np_sigmoid(i) * np.tanh(g)
        h = np_sigmoid(o) * np.tanh(c)
    elif kind == "gru":
        x_r, x_z, x_n = np.split(gates_x, 3, axis=-1)
        h_r, h_z, h_n = np.split(gates_h, 3, axis=-1)
        r = np_sigmoid(x_r + h_r)
        z = np_sigmoid(x_z + h_z)
        n = np.tanh(x_n + r * h_n)
        h = (1.0 - z) * n + z * h
    elif kind == "simple_rnn(relu)":
        h = np.maximum(gates_x + gates_h, 0.0)
    else:
        h = np.tanh(gates_x + gates_h)
    return h, c


def torch_reference(kind, state_dict, xs, num_layers, bidirectional):
    """PyTorch's multi-layer (bi)directional RNN with ``batch_first=True``.

    Returns ``(output [B, T, D*H], h_n [L*D, B, H], c_n [L*D, B, H])``, with
    ``h_n`` ordered layer 0 forward, layer 0 backward, layer 1 forward, ...
    Missing biases (``bias=False``) count as zero.
    """
    directions = ["", "_reverse"] if bidirectional else [""]
    batch, time, _ = xs.shape
    layer_input = xs
    h_n, c_n = [], []
    for layer in range(num_layers):
        outputs = []
        for suffix in directions:
            name = f"_l{layer}{suffix}"
            w_ih = state_dict[f"weight_ih{name}"]
            w_hh = state_dict[f"weight_hh{name}"]
            b_ih = state_dict.get(f"bias_ih{name}", 0.0)
            b_hh = state_dict.get(f"bias_hh{name}", 0.0)
            hidden = w_hh.shape[1]
            h = np.zeros((batch, hidden))
            c = np.zeros((batch, hidden))
            out = np.zeros((batch, time, hidden))
            steps = range(time - 1, -1, -1) if suffix else range(time)
            for t in steps:
                h, c = torch_step(kind, layer_input[:, t], h, c, w_ih, w_hh, b_ih, b_hh)
                out[:, t] = h
            outputs.append(out)
            h_n.append(h)
            c_n.append(c)
        layer_input = np.concatenate(outputs, axis=-1)
    return layer_input, np.stack(h_n), np.stack(c_n)


def random_state_dict(
    rng,
    kind,
    *,
    input_size=F,
    hidden=H,
    num_layers=NUM_LAYERS,
    bidirectional=True,
    bias=True,
    dtype=np.float64,
):
    """Like ``nn.LSTM(...).state_dict()`` (or GRU/RNN), random, as NumPy."""
    gates = GATES[kind.split("(")[0]] * hidden
    directions = ["", "_reverse"] if bidirectional else [""]
    state = {}
    for layer in range(num_layers):
        size = input_size if layer == 0 else len(directions) * hidden
        for suffix in directions:
            name = f"_l{layer}{suffix}"
            state[f"weight_ih{name}"] = rng.uniform(-0.7, 0.7, (gates, size))
            state[f"weight_hh{name}"] = rng.uniform(-0.7, 0.7, (gates, hidden))
            if bias:
                state[f"bias_ih{name}"] = rng.uniform(-0.7, 0.7, gates)
                state[f"bias_hh{name}"] = rng.uniform(-0.7, 0.7, gates)
    return {k: v.astype(dtype) for k, v in state.items()}


def run_stacked(cell, params, xs, **kwargs):
    """``seqmask.stacked`` (bidirectional) under one ``jax.jit``."""
    return jax.jit(
        lambda p, x: seqmask.stacked(cell, p, x, bidirectional=True, **kwargs)
    )(params, xs)


def hidden_of(kind, carry):
    return carry.h if kind == "lstm" else carry


def bidirectional_params(cell, state_dict, num_layers=NUM_LAYERS):
    return [
        {
            "forward": from_torch(cell, state_dict, layer=k),
            "backward": from_torch(cell, state_dict, layer=k, reverse=True),
        }
        for k in range(num_layers)
    ]


def assert_stacked_matches(kind, carries, ys, reference, tol):
    out, h_n, c_n = reference
    np.testing.assert_allclose(np.asarray(ys), out, rtol=tol, atol=tol)
    for layer, (forward, backward) in enumerate(carries):
        for direction, carry in enumerate((forward, backward)):
            index = 2 * layer + direction
            np.testing.assert_allclose(
                np.asarray(hidden_of(kind, carry)), h_n[index], rtol=tol, atol=tol
            )
            if kind == "lstm":
                np.testing.assert_allclose(
                    np.asarray(carry.c), c_n[index], rtol=tol, atol=tol
                )


# ---------------------------------------------------------------------------
# seqmask with converted weights == PyTorch's equations


@pytest.mark.parametrize("kind", KINDS)
def test_stacked_bidirectional_matches_torch_equations(kind):
    rng = np.random.default_rng(0)
    state_dict = random_state_dict(rng, kind)
    xs = rng.normal(size=(B, T, F)).astype(np.float32)
    reference = torch_reference(
        kind, state_dict, xs.astype(np.float64), NUM_LAYERS, bidirectional=True
    )
    cell = CELLS[kind](H)
    params = bidirectional_params(cell, state_dict)
    assert params[1]["forward"]["input_kernel"].dtype == jnp.float32
    carries, ys = run_stacked(cell, params, jnp.asarray(xs))
    assert_stacked_matches(kind, carries, ys, reference, 1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_rnn_per_direction_matches_torch_equations(kind):
    # Each (layer, direction) converted on its own and run with seqmask.rnn,
    # time-major, the backward one with reverse=True; the next layer reads
    # concat(forward, backward), as in PyTorch.
    rng = np.random.default_rng(1)
    state_dict = random_state_dict(rng, kind)
    xs = rng.normal(size=(B, T, F)).astype(np.float32)
    out, h_n, c_n = torch_reference(
        kind, state_dict, xs.astype(np.float64), NUM_LAYERS, bidirectional=True
    )
    cell = CELLS[kind](H)
    params = {
        (layer, reverse): from_torch(cell, state_dict, layer=layer, reverse=reverse)
        for layer in range(NUM_LAYERS)
        for reverse in (False, True)
    }

    @jax.jit
    def run(params, hidden):
        carries = []
        for layer in range(NUM_LAYERS):
            outputs = []
            for reverse in (False, True):
                carry, ys = seqmask.rnn(
                    cell,
                    params[(layer, reverse)],
                    hidden,
                    reverse=reverse,
                    time_major=True,
                )
                carries.append(carry)
                outputs.append(ys)
            hidden = jnp.concatenate(outputs, axis=-1)
        return carries, hidden

    carries, hidden = run(params, jnp.asarray(np.swapaxes(xs, 0, 1)))  # [T, B, F]
    for index, carry in enumerate(carries):  # layer 0 fwd, layer 0 bwd, ...
        np.testing.assert_allclose(
            np.asarray(hidden_of(kind, carry)), h_n[index], rtol=1e-5, atol=1e-5
        )
        if kind == "lstm":
            np.testing.assert_allclose(
                np.asarray(carry.c), c_n[index], rtol=1e-5, atol=1e-5
            )
    np.testing.assert_allclose(
        np.swapaxes(np.asarray(hidden), 0, 1), out, rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("kind", KINDS)
def test_stacked_bidirectional_matches_torch_equations_float64(kind, x64):
    rng = np.random.default_rng(2)
    state_dict = random_state_dict(rng, kind)
    xs = rng.normal(size=(B, T, F))
    reference = torch_reference(kind, state_dict, xs, NUM_LAYERS, bidirectional=True)
    cell = CELLS[kind](H, param_dtype=jnp.float64)
    params = bidirectional_params(cell, state_dict)
    for layer_params in params:
        for direction_params in layer_params.values():
            for value in direction_params.values():
                chex.assert_type(value, jnp.float64)
    carries, ys = run_stacked(cell, params, jnp.asarray(xs))
    chex.assert_type(ys, jnp.float64)
    assert_stacked_matches(kind, carries, ys, reference, 1e-10)


@pytest.mark.parametrize("kind", ("lstm",))
def test_padded_rows_match_torch_equations_on_the_unpadded_slice(kind):
    # What PyTorch's packed sequences compute: each row on its own valid
    # prefix, the backward direction starting at the row's last valid step.
    rng = np.random.default_rng(3)
    state_dict = random_state_dict(rng, kind)
    lengths = np.array([T, 2], np.int32)
    xs = rng.normal(size=(B, T, F)).astype(np.float32)
    xs[1, 2:] = np.nan  # padding must not leak into anything
    cell = CELLS[kind](H)
    params = bidirectional_params(cell, state_dict)
    carries, ys = jax.jit(
        lambda p, x, n: seqmask.stacked(cell, p, x, lengths=n, bidirectional=True)
    )(params, jnp.asarray(xs), jnp.asarray(lengths))
    ys = np.asarray(ys)
    for row, length in enumerate(lengths):
        out, h_n, c_n = torch_reference(
            kind,
            state_dict,
            xs[row : row + 1, :length].astype(np.float64),
            NUM_LAYERS,
            bidirectional=True,
        )
        np.testing.assert_allclose(ys[row, :length], out[0], rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(ys[row, length:], 0.0)
        for layer, pair in enumerate(carries):
            for direction, carry in enumerate(pair):
                np.testing.assert_allclose(
                    np.asarray(hidden_of(kind, carry))[row],
                    h_n[2 * layer + direction, 0],
                    rtol=1e-5,
                    atol=1e-5,
                )


# ---------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize("kind", KINDS)
def test_params_to_torch_from_torch_round_trip(kind):
    cell = CELLS[kind](H, **random_init())
    params = cell.init(jax.random.key(0), F)
    state = to_torch(cell, params, layer=1, reverse=True)
    names = {"weight_ih", "weight_hh", "bias_ih", "bias_hh"}
    assert set(state) == {f"{n}_l1_reverse" for n in names}
    np.testing.assert_array_equal(
        state["weight_ih_l1_reverse"], np.asarray(params["input_kernel"]).T
    )
    np.testing.assert_array_equal(
        state["weight_hh_l1_reverse"], np.asarray(params["recurrent_kernel"]).T
    )
    back = from_torch(cell, state, layer=1, reverse=True)
    assert set(back) == set(params)
    for key, value in params.items():
        value = np.asarray(value)
        if "bias" in key:
            assert np.all(value != 0.0), key  # the round trip is not trivial
        assert back[key].dtype == value.dtype
        np.testing.assert_array_equal(np.asarray(back[key]), value)


@pytest.mark.parametrize("kind", KINDS)
def test_state_dict_from_torch_to_torch_round_trip(kind):
    rng = np.random.default_rng(4)
    state_dict = random_state_dict(rng, kind, dtype=np.float32)
    cell = CELLS[kind](H)
    merged = {}
    for layer in range(NUM_LAYERS):
        for reverse in (False, True):
            params = from_torch(cell, state_dict, layer=layer, reverse=reverse)
            merged.update(to_torch(cell, params, layer=layer, reverse=reverse))
    assert set(merged) == set(state_dict)
    for name, value in state_dict.items():
        if name.startswith("weight") or kind == "gru":
            assert merged[name].dtype == value.dtype
            np.testing.assert_array_equal(merged[name], value)
    if kind != "gru":
        # PyTorch adds the two biases; only their sum is a parameter.
        for name in state_dict:
            if name.startswith("bias_ih"):
                partner = name.replace("bias_ih", "bias_hh")
                np.testing.assert_array_equal(
                    merged[name] + merged[partner],
                    state_dict[name] + state_dict[partner],
                )
                np.testing.assert_array_equal(merged[partner], 0.0)


# ---------------------------------------------------------------------------
# Inputs from_torch accepts


class FakeTensor:
    """Stands in for a ``torch.Tensor`` that requires grad: ``__array__``
    refuses until ``detach()`` has been called, as torch does."""

    def __init__(self, array, detached=False):
        self._array = np.asarray(array)
        self._detached = detached

    def detach(self):
        return FakeTensor(self._array, detached=True)

    def __array__(self, dtype=None, copy=None):
        if not self._detached:
            raise RuntimeError(
                "Can't call numpy() on Tensor that requires grad. Use "
                "tensor.detach().numpy() instead."
            )
        return self._array if dtype is None else self._array.astype(dtype)


@pytest.mark.parametrize("kind", ("lstm", "gru"))
def test_from_torch_accepts_tensor_like_objects(kind):
    rng = np.random.default_rng(5)
    state_dict = random_state_dict(rng, kind, dtype=np.float32)
    tensors = {name: FakeTensor(value) for name, value in state_dict.items()}
    cell = CELLS[kind](H)
    for layer in range(NUM_LAYERS):
        for reverse in (False, True):
            got = from_torch(cell, tensors, layer=layer, reverse=reverse)
            want = from_torch(cell, state_dict, layer=layer, reverse=reverse)
            assert set(got) == set(want)
            for key in want:
                np.testing.assert_array_equal(
                    np.asarray(got[key]), np.asarray(want[key])
                )
            suffix = f"_l{layer}" + ("_reverse" if reverse else "")
            np.testing.assert_array_equal(
                np.asarray(got["recurrent_kernel"]), state_dict[f"weight_hh{suffix}"].T
            )


@pytest.mark.parametrize("kind", KINDS)
def test_from_torch_without_biases_runs_as_zero_bias(kind):
    rng = np.random.default_rng(6)
    state_dict = random_state_dict(
        rng, kind, num_layers=1, bidirectional=False, bias=False
    )
    assert not any(name.startswith("bias") for name in state_dict)
    cell = CELLS[kind](H)
    params = from_torch(cell, state_dict)
    for key, value in params.items():
        if "bias" in key:
            np.testing.assert_array_equal(np.asarray(value), 0.0)
    xs = rng.normal(size=(B, T, F)).astype(np.float32)
    out, h_n, _ = torch_reference(
        kind, state_dict, xs.astype(np.float64), 1, bidirectional=False
    )
    carry, ys = seqmask.rnn(cell, params, jnp.asarray(xs))
    np.testing.assert_allclose(np.asarray(ys), out, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        np.asarray(hidden_of(kind, carry)), h_n[0], rtol=1e-5, atol=1e-5
    )


# ---------------------------------------------------------------------------
# Errors


def test_from_torch_wrong_hidden_size():
    state_dict = random_state_dict(
        np.random.default_rng(7), "lstm", num_layers=1, bidirectional=False
    )
    # Whichever parameter is checked first, the message names it and gives
    # the shape found (4H = 16 wide) and the one needed (4(H+1) = 20 wide).
    expected = (
        r"from_torch: (input_kernel|recurrent_kernel|bias) from the state dict has "
        rf"shape \(.*\b{4 * H}\b.*\); the lstm cell \(hidden_size={H + 1}\) with "
        rf"input size {F} needs \(.*\b{4 * (H + 1)}\b.*\)\. Is hidden_size right"
    )
    with pytest.raises(ValueError, match=expected):
        from_torch(lstm(H + 1), state_dict)
    gru_state = random_state_dict(
        np.random.default_rng(7), "gru", num_layers=1, bidirectional=False
    )
    with pytest.raises(
        ValueError, match=r"\(.*\b12\b.*\).*hidden_size=2.*needs \(.*\b6\b"
    ):
        from_torch(gru(2), gru_state)


def test_from_torch_missing_keys_lists_available():
    state_dict = random_state_dict(
        np.random.default_rng(8), "gru", num_layers=1, bidirectional=False
    )
    with pytest.raises(
        ValueError,
        match=re.escape("no ['weight_ih_l2', 'weight_hh_l2'] (layer=2, reverse=False)")
        + r".*\['weight_hh_l0', 'weight_ih_l0'\]",
    ):
        from_torch(gru(H), state_dict, layer=2)
    with pytest.raises(ValueError, match=r"weight_ih_l0_reverse.*weight_ih_l0'"):
        from_torch(gru(H), state_dict, reverse=True)


def test_from_torch_rejects_projections_and_bad_layer():
    state_dict = random_state_dict(
        np.random.default_rng(9), "lstm", num_layers=1, bidirectional=False
    )
    with pytest.raises(ValueError, match="layer must be a non-negative int"):
        from_torch(lstm(H), state_dict, layer=-1)
    with pytest.raises(ValueError, match="proj_size"):
        from_torch(lstm(H), {**state_dict, "weight_hr_l0": np.zeros((2, H))})


def test_learnable_initial_state_cell_is_refused_with_hint():
    cell = learnable_initial_state(gru(H, **random_init()))
    state_dict = random_state_dict(
        np.random.default_rng(10), "gru", num_layers=1, bidirectional=False
    )
    hint = r"learnable_initial_state\(gru\).*convert the inner cell.*params\['cell'\]"
    with pytest.raises(TypeError, match="from_torch: .*" + hint):
        from_torch(cell, state_dict)
    params = cell.init(jax.random.key(0), F)
    with pytest.raises(TypeError, match="to_torch: .*" + hint):
        to_torch(cell, params)


def test_unsupported_cells_are_refused():
    base = gru(H, **random_init())
    other = Cell(
        init=base.init,
        initial_carry=base.initial_carry,
        apply=base.apply,
        name="min_gru",
        hidden_size=H,
    )
    state_dict = random_state_dict(
        np.random.default_rng(11), "gru", num_layers=1, bidirectional=False
    )
    supported = re.escape(str(sorted((*KINDS, "simple_rnn(relu)"))))
    with pytest.raises(TypeError, match=f"supports the cells {supported}.*'min_gru'"):
        from_torch(other, state_dict)
    with pytest.raises(TypeError, match="to_torch: .*'min_gru'"):
        to_torch(other, base.init(jax.random.key(0), F))
    with pytest.raises(TypeError, match="cell must be a seqmask Cell; got str"):
        from_torch("lstm", state_dict)


def test_to_torch_missing_params():
    params = gru(H, **random_init()).init(jax.random.key(0), F)
    del params["recurrent_bias"]
    with pytest.raises(ValueError, match=r"missing \['recurrent_bias'\]"):
        to_torch(gru(H), params)


# ---------------------------------------------------------------------------
# PyTorch itself, when it is installed


@pytest.mark.parametrize("kind", ("lstm", "gru"))
def test_matches_real_torch_modules(kind):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    module_class = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind]

    def make_module():
        return module_class(
            F, H, num_layers=NUM_LAYERS, bidirectional=True, batch_first=True
        )

    module = make_module()
    xs = np.random.default_rng(12).normal(size=(B, T, F)).astype(np.float32)
    with torch.no_grad():
        result = module(torch.from_numpy(xs))
    torch_out = result[0].numpy()
    if kind == "lstm":
        torch_h, torch_c = (t.numpy() for t in result[1])
    else:
        torch_h, torch_c = result[1].numpy(), None

    cell = CELLS[kind](H)
    # named_parameters() gives tensors that require grad: from_torch must
    # detach them itself.
    for source in (module.state_dict(), dict(module.named_parameters())):
        params = bidirectional_params(cell, source)
        carries, ys = run_stacked(cell, params, jnp.asarray(xs))
        assert_stacked_matches(kind, carries, ys, (torch_out, torch_h, torch_c), 1e-5)

    # And back: seqmask's parameters loaded into a fresh module.
    state = {}
    for layer, layer_params in enumerate(params):
        for reverse, key in ((False, "forward"), (True, "backward")):
            state.update(
                to_torch(cell, layer_params[key], layer=layer, reverse=reverse)
            )
    fresh = make_module()
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    with torch.no_grad():
        again = fresh(torch.from_numpy(xs))
    np.testing.assert_allclose(again[0].numpy(), torch_out, rtol=1e-5, atol=1e-5)


def test_interop_does_not_import_torch():
    code = (
        "import sys, seqmask, seqmask.interop; "
        "print('torch' in sys.modules, 'seqmask.interop' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert result.stdout.split() == ["False", "True"]


# ---------------------------------------------------------------------------
# ReLU RNNs, modules, parent prefixes, wrong cell kinds


class FakeModule:
    """Duck-types a PyTorch recurrent module (or a parent of one) without
    torch: ``state_dict()``, ``mode``, ``get_submodule``."""

    def __init__(self, state, mode=None, children=None):
        self._state = state
        self.mode = mode
        self._children = children or {}

    def state_dict(self):
        return dict(self._state)

    def get_submodule(self, path):
        module = self
        for part in path.split("."):
            module = module._children[part]
        return module


def test_relu_rnn_matches_torch_equations():
    # Formerly a ReLU nn.RNN silently became a tanh cell.
    rng = np.random.default_rng(20)
    state_dict = random_state_dict(rng, "simple_rnn")
    xs = rng.normal(size=(B, T, F)).astype(np.float32)
    reference = torch_reference(
        "simple_rnn(relu)",
        state_dict,
        xs.astype(np.float64),
        NUM_LAYERS,
        bidirectional=True,
    )
    cell = simple_rnn(H, activation="relu")
    assert cell.name == "simple_rnn(relu)"
    module = FakeModule(state_dict, mode="RNN_RELU")
    params = bidirectional_params(cell, module)
    carries, ys = run_stacked(cell, params, jnp.asarray(xs))
    assert_stacked_matches("simple_rnn", carries, ys, reference, 1e-5)
    with pytest.raises(
        ValueError, match="wrong cell kind.*RNN_RELU.*activation='relu'"
    ):
        from_torch(simple_rnn(H), module)
    with pytest.raises(ValueError, match="wrong cell kind"):
        to_torch(simple_rnn(H), params[0]["forward"], module=module)
    back = to_torch(cell, params[0]["forward"], module=module)
    np.testing.assert_allclose(back["weight_hh_l0"], state_dict["weight_hh_l0"], 1e-6)


def test_simple_rnn_activation_names():
    assert simple_rnn(H).name == "simple_rnn"
    assert simple_rnn(H, activation=jnp.tanh).name == "simple_rnn"
    assert simple_rnn(H, activation=jax.nn.relu).name == "simple_rnn(relu)"
    assert simple_rnn(H, activation=jax.nn.gelu).name == "simple_rnn(gelu)"
    with pytest.raises(ValueError, match="activation must be one of 'tanh', 'relu'"):
        simple_rnn(H, activation="sigmoid")
    with pytest.raises(TypeError, match="PyTorch's nn.RNN has only"):
        from_torch(simple_rnn(H, activation=jax.nn.gelu), {})


def test_parent_module_prefixes():
    rng = np.random.default_rng(21)
    inner = random_state_dict(rng, "gru", num_layers=1, bidirectional=False)
    other = random_state_dict(rng, "gru", num_layers=1, bidirectional=False)
    one = {f"encoder.rnn.{k}": v for k, v in inner.items()}
    params = from_torch(gru(H), one)  # the only prefix: found by itself
    np.testing.assert_array_equal(
        np.asarray(params["recurrent_kernel"]),
        inner["weight_hh_l0"].T.astype(np.float32),
    )
    two = {**one, **{f"decoder.rnn.{k}": v for k, v in other.items()}}
    with pytest.raises(
        ValueError,
        match=r"prefixes \['decoder\.rnn\.', 'encoder\.rnn\.'\]; pass prefix=",
    ):
        from_torch(gru(H), two)
    params = from_torch(gru(H), two, prefix="decoder.rnn")
    np.testing.assert_array_equal(
        np.asarray(params["input_bias"]), other["bias_ih_l0"].astype(np.float32)
    )
    # A parent module: the submodule at the prefix says which kind it is.
    parent = FakeModule(
        two,
        children={"decoder": FakeModule({}, children={"rnn": FakeModule({}, "LSTM")})},
    )
    with pytest.raises(ValueError, match="wrong cell kind.*'LSTM'.*'gru'"):
        from_torch(gru(H), parent, prefix="decoder.rnn.")
    # to_torch spells the prefix as from_torch does: the "." is added.
    for prefix in ("decoder.rnn.", "decoder.rnn"):
        written = to_torch(gru(H), params, prefix=prefix)
        assert set(written) == {f"decoder.rnn.{k}" for k in other}
    with pytest.raises(ValueError, match="module decoder.rnn is FakeModule"):
        from_torch(gru(H), parent, prefix="decoder.rnn.")


def test_wrong_cell_kind_from_gate_counts():
    gru_state = random_state_dict(
        np.random.default_rng(22), "gru", num_layers=1, bidirectional=False
    )
    with pytest.raises(
        ValueError, match=r"wrong cell kind.*3 gate blocks.*a GRU.*'lstm'"
    ):
        from_torch(lstm(H), gru_state)
    with pytest.raises(ValueError, match=r"wrong cell kind.*an LSTM.*'simple_rnn'"):
        from_torch(
            simple_rnn(H),
            random_state_dict(
                np.random.default_rng(22), "lstm", num_layers=1, bidirectional=False
            ),
        )


def test_to_torch_checks_what_it_writes():
    params = lstm(H, **random_init()).init(jax.random.key(0), F)
    with pytest.raises(
        ValueError, match=r"params does not match.*lstm\(hidden_size=8\)"
    ):
        to_torch(lstm(2 * H), params)
    with pytest.raises(ValueError, match="wrong cell kind.*gate blocks"):
        to_torch(simple_rnn(H), params)
    gru_params = gru(H, **random_init()).init(jax.random.key(0), F)
    with pytest.raises(ValueError, match="wrong cell kind: params for a lstm cell"):
        to_torch(lstm(H), gru_params)
    narrow = {k: np.asarray(v, np.float16) for k, v in params.items()}
    with pytest.raises(TypeError, match="float16.*expected float32"):
        to_torch(lstm(H), narrow)
    with pytest.raises(TypeError, match="params must be the parameter dict"):
        to_torch(lstm(H), [params])
    module = FakeModule({"weight_ih_l0": np.zeros((4 * H, F + 1))}, mode="LSTM")
    with pytest.raises(ValueError, match=r"weight_ih_l0 would have shape \(16, 3\)"):
        to_torch(lstm(H), params, module=module)


@pytest.mark.parametrize("nonlinearity", ("tanh", "relu"))
def test_real_torch_rnn_module_and_parent(nonlinearity):
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)

    class Parent(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = torch.nn.RNN(F, H, nonlinearity=nonlinearity, batch_first=True)
            self.head = torch.nn.Linear(H, 2)

    parent = Parent()
    xs = np.random.default_rng(23).normal(size=(B, T, F)).astype(np.float32)
    with torch.no_grad():
        out, h_n = parent.rnn(torch.from_numpy(xs))
    cell = simple_rnn(H, activation=nonlinearity)
    for source in (parent.rnn, parent):  # the module, or its parent
        params = from_torch(cell, source)
        carry, ys = seqmask.rnn(cell, params, jnp.asarray(xs))
        np.testing.assert_allclose(np.asarray(ys), out.numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(
            np.asarray(carry), h_n[0].numpy(), rtol=1e-5, atol=1e-5
        )
    other = simple_rnn(H, activation="relu" if nonlinearity == "tanh" else "tanh")
    with pytest.raises(ValueError, match="wrong cell kind"):
        from_torch(other, parent)
    state = to_torch(cell, params, prefix="rnn.", module=parent)
    fresh = Parent()
    fresh.load_state_dict(
        {**fresh.state_dict(), **{k: torch.from_numpy(v) for k, v in state.items()}}
    )
    with torch.no_grad():
        again, _ = fresh.rnn(torch.from_numpy(xs))
    np.testing.assert_allclose(again.numpy(), out.numpy(), rtol=1e-5, atol=1e-5)
