"""What the tests share: the masks used everywhere, random parameters for any
cell, and the NumPy reference layer over a cell's pure parameters.

Trees are compared with ``chex.assert_trees_all_close`` (and shapes and dtypes
with ``chex.assert_shape`` / ``chex.assert_type`` where they are part of the
contract). The references themselves live in ``numpy_reference.py``, which
shares no code with seqmask or with this module.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys

import jax
import numpy as np
import numpy_reference as ref
from packaging.version import Version

# The first JAX whose explicit mesh axes take every sharded program of the
# tests (JAX 0.10.0 cannot differentiate a matmul over a split batch there).
EXPLICIT_AXES_JAX = Version("0.10.1")

# Rows that lengths cannot express: left padding, holes, an empty row.
IRREGULAR_MASK = np.array(
    [
        [False, False, True, True, True],
        [True, False, True, False, True],
        [False, False, False, False, False],
    ]
)


def made_once(make):
    """``make()``, computed on the first call and kept: test data too costly
    to build when a module is collected (every test worker collects every
    module). It runs eagerly even when the first call comes from inside a
    ``jit`` trace, so what is kept is concrete arrays, never a tracer."""

    @functools.cache
    def once():
        with jax.ensure_compile_time_eval():
            return make()

    return once


def mask_patterns(rng, batch_steps=(6, 7)):
    """One mask ``[B, T]`` whose rows cover every pattern: right padding, left
    padding, holes, all false, all true, and a random one (``B >= 6``)."""
    batch, steps = batch_steps
    mask = np.zeros((batch, steps), bool)
    mask[0, :4] = True  # right padding
    mask[1, 3:] = True  # left padding
    mask[2, [0, 2, 3, 6 % steps]] = True  # holes
    # row 3: all false
    mask[4, :] = True  # full
    mask[5] = rng.random(steps) < 0.5
    return mask


def random_params(cell, input_size, seed=0, *, scale=0.5, dtype=None):
    """``cell``'s parameters for ``input_size`` features with every entry drawn
    from a normal of standard deviation ``scale`` (biases and a learned
    initial state included, so none is the zero a fresh init gives).

    Drawn with NumPy from the shapes of ``cell.init`` (an eager ``cell.init``
    would compile its initialisers op by op); in the parameters' own dtypes
    unless ``dtype`` is given.
    """
    shapes = jax.eval_shape(lambda key: cell.init(key, input_size), jax.random.key(0))
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda s: (scale * rng.normal(size=s.shape)).astype(dtype or s.dtype), shapes
    )


def numpy_layer(cell_name, params, xs, mask, *, reverse=False):
    """``numpy_reference.rnn`` over a built-in cell's pure parameters: the
    cell's own, or ``{"cell": ..., "initial_carry": ...}`` with a learned
    initial carry (else the carry starts at zeros)."""
    batch = mask.shape[0]
    if "initial_carry" in params:
        learned = params["initial_carry"]
        start = learned if isinstance(learned, tuple) else (learned,)
        params = params["cell"]
        start = tuple(np.broadcast_to(leaf, (batch, *np.shape(leaf))) for leaf in start)
    else:
        hidden = np.shape(params["input_kernel"])[1] // _BLOCKS[cell_name]
        parts = 2 if cell_name == "lstm" else 1
        start = tuple(np.zeros((batch, hidden)) for _ in range(parts))
    return ref.rnn(cell_name, params, xs, mask, start, reverse=reverse)


_BLOCKS = {"simple_rnn": 1, "gru": 3, "lstm": 4}


def run_on_host_devices(args, devices: int = 8, timeout: int = 600):
    """``python *args`` in a fresh interpreter whose CPU platform has
    ``devices`` devices (fixed when JAX starts its backend, which the test
    session has done): its ``subprocess.CompletedProcess``, output as text."""
    flags = os.environ.get("XLA_FLAGS", "")
    env = {
        **os.environ,
        "XLA_FLAGS": f"{flags} --xla_force_host_platform_device_count={devices}",
        "JAX_PLATFORMS": "cpu",
    }
    return subprocess.run(
        [sys.executable, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def per_mesh_kind(script: str, *args: str, devices: int = 8) -> list[list[str]]:
    """Run ``script`` on ``devices`` host devices (``python -c script
    *args``); it prints one line for explicit and one for auto mesh axes.
    Returns the two lines split into fields; skips the test where JAX is
    older than ``EXPLICIT_AXES_JAX``."""
    import pytest

    if Version(jax.__version__) < EXPLICIT_AXES_JAX:
        pytest.skip(f"explicit mesh axes need JAX {EXPLICIT_AXES_JAX}")
    result = run_on_host_devices(["-c", script, *args], devices)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2, result.stdout
    return [line.split() for line in lines]
