"""Strict numerics for the whole test suite.

Implicit dtype promotion and implicit rank promotion hide real bugs in
sequence code (a ``[B]`` mask silently broadcasting against ``[T]``, a
bfloat16 carry silently widened to float32), so both raise here. Float64
checks enter ``jax.enable_x64(True)`` locally; the default mode stays 32-bit
because that is what users run.
"""

import atexit
import os
import shutil
import subprocess
import sys
import tempfile

# The tests compile many small programs and run each once or twice, so XLA's
# optimisation passes cost far more than they save: they are off here, and in
# every subprocess a test starts (notebooks, benchmark smoke runs, the CLI,
# the wheel). Benchmarks measure optimised programs; tests check values.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

# For the same reason the CPU backend emits fused kernels with its older LLVM
# emitters, which compile the tests' programs in about half the time of the
# default MLIR ones and run them a little slower (benchmarks keep the
# default). XLA aborts on a flag it does not know, so the flag is first tried
# in a subprocess; the result is kept in the environment, which the test
# workers and every subprocess a test starts inherit.
_FAST_COMPILE_FLAG = "--xla_cpu_use_fusion_emitters=false"
_PROBED = "SEQMASK_TESTS_XLA_FLAGS_PROBED"


def _with_fast_compile_flag(flags: str) -> str:
    """``flags`` with the fast-compile flag, if this XLA knows it and the
    flags do not already set it."""
    if "xla_cpu_use_fusion_emitters" in flags:
        return flags
    candidate = f"{flags} {_FAST_COMPILE_FLAG}".strip()
    env = dict(os.environ, XLA_FLAGS=candidate, JAX_PLATFORMS="cpu")
    probe = subprocess.run(
        [sys.executable, "-c", "import jax; jax.devices()"],
        env=env,
        capture_output=True,
        check=False,
    )
    return candidate if probe.returncode == 0 else flags


if _PROBED not in os.environ:
    os.environ["XLA_FLAGS"] = _with_fast_compile_flag(os.environ.get("XLA_FLAGS", ""))
    os.environ[_PROBED] = "1"

# The test workers, notebooks, examples and benchmark smoke runs compile many
# of the same programs: one persistent compilation cache for the run (a fresh
# folder, removed at the end; a cache of the caller's own is kept) lets each
# compile once. The key holds the program, the flags and the JAX version, so
# a hit is the same executable. In a two-core suite run this saved about 10%.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="seqmask-tests-jax-cache-")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.3")

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
    # jax.enable_x64 is JAX 0.8's name; the oldest supported JAX has only
    # the experimental one.
    enable = getattr(jax, "enable_x64", None)
    if enable is None:
        from jax.experimental import enable_x64 as enable
    with enable(True):
        yield
