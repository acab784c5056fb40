"""The code blocks of ``docs/guides/coming_from_flax.md`` run as written.

They run top to bottom in one namespace, as a reader would paste them, with
JAX's default promotion rules (the suite's strict ones are for the library).
Each block asserts what the page says next to it."""

import pathlib
import re

import jax

GUIDE = pathlib.Path(__file__).parents[1] / "docs" / "guides" / "coming_from_flax.md"


def test_guide_code_blocks_run():
    text = GUIDE.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.DOTALL)
    assert len(blocks) >= 8
    namespace: dict = {}
    with jax.numpy_dtype_promotion("standard"), jax.numpy_rank_promotion("allow"):
        for index, block in enumerate(blocks):
            code = compile(block, f"{GUIDE.name}[block {index}]", "exec")
            exec(code, namespace)  # noqa: S102
