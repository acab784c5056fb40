"""README.md as a reader meets it: every Python block runs as written, and
the development commands it gives are the ones CI runs."""

from __future__ import annotations

import re
from pathlib import Path

from markdown_code import python_blocks, run_blocks

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def test_readme_has_python_blocks():
    assert len(python_blocks(README)) >= 3


def test_readme_python_blocks_run():
    out = run_blocks(README)
    # The checkify block reports the length beyond the time axis.
    assert re.search(r"rnn: .*lengths.*\[0, 50\]", out), out


def test_readme_development_commands_are_what_ci_runs():
    readme = README.read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    block = readme[readme.index("## Development") :]
    commands = re.search(r"```bash\n(.*?)```", block, re.DOTALL).group(1)
    for line in commands.splitlines():
        command = line.split("#")[0].strip()
        if command.startswith("pip install"):
            continue
        assert command.split()[0] in ci, command
        for part in command.split("&&"):
            words = part.split()
            if words[0] == "pytest":
                continue  # CI chooses its own worker count
            assert " ".join(words) in ci, part
