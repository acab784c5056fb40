"""Strict numerics for the whole test suite.

Implicit dtype promotion and implicit rank promotion hide real bugs in
sequence code (a ``[B]`` mask silently broadcasting against ``[T]``, a
bfloat16 carry silently widened to float32), so both raise here. Float64
checks enter ``jax.enable_x64(True)`` locally; the default mode stays 32-bit
because that is what users run.
"""

import jax
import pytest

jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def x64():
    """Run a test body with 64-bit types enabled."""
    with jax.enable_x64(True):
        yield
