"""Run the Python code blocks of a Markdown file, as a reader would.

The blocks of one file run in order in one namespace (a later block may use
what an earlier one defined), with JAX's default promotion rules, which are
what readers run with (the test suite's are stricter).
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
import types
from pathlib import Path

import jax

FENCE = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def python_blocks(path: Path) -> list[str]:
    """The ```python blocks of a Markdown file (indented ones dedented)."""
    text = path.read_text()
    return [block for block in FENCE.findall(text)]


def run_blocks(path: Path) -> str:
    """Execute every Python block of ``path``; returns what they printed.

    The namespace is a registered module, as a script's is, so that classes
    defined in the blocks (dataclasses, Flax modules) find their module."""
    module = types.ModuleType(f"markdown_{path.stem}")
    out = io.StringIO()
    sys.modules[module.__name__] = module
    try:
        with (
            jax.numpy_dtype_promotion("standard"),
            jax.numpy_rank_promotion("allow"),
            contextlib.redirect_stdout(out),
        ):
            for index, block in enumerate(python_blocks(path)):
                name = f"{path.name}, python block {index + 1}"
                exec(compile(block, name, "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]
    return out.getvalue()
