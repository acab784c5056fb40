"""Strict numerics for the whole test suite.

Implicit dtype promotion and implicit rank promotion hide real bugs in
sequence code (a ``[B]`` mask silently broadcasting against ``[T]``, a
bfloat16 carry silently widened to float32), so both raise here. Float64
checks enter ``jax.enable_x64(True)`` locally; the default mode stays 32-bit
because that is what users run.
"""

import os

# The tests compile many small programs and run each once or twice, so XLA's
# optimisation passes cost far more than they save: they are off here, and in
# every subprocess a test starts (notebooks, benchmark smoke runs, the CLI,
# the wheel). Benchmarks measure optimised programs; tests check values.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update(
    "jax_disable_most_optimizations",
    os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] not in ("0", "false", "False"),
)


@pytest.fixture
def x64():
    """Run a test body with 64-bit types enabled."""
    with jax.enable_x64(True):
        yield
