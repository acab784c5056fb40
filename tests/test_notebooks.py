"""Execute every notebook in ``notebooks/`` top to bottom (quick mode).

The notebooks are jupytext percent-format ``.py`` files; each is converted
in memory and executed by nbclient in a fresh kernel with
``SEQMASK_QUICK=1`` in the environment, and a cell that raises fails the
test. A ``python3`` kernel spec pointing at the current interpreter is
installed into a temporary directory, so the test does not depend on what
is registered on the machine.

With ``SEQMASK_EXECUTED_NOTEBOOKS`` set to a folder, each executed notebook
is also written there as ``<name>.ipynb``; the documentation build renders
those copies instead of running the notebooks a second time (``.ci/run``).
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext")
nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9]*.py"))
# The notebooks that notebooks/README.md lists, in its table.
LISTED = re.findall(
    r"^\| `(\d\d_\w+\.py)` \|", (NOTEBOOK_DIR / "README.md").read_text(), re.M
)


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory):
    """A ``python3`` kernel spec for ``sys.executable`` on JUPYTER_PATH, and
    ``SEQMASK_QUICK=1``; both restored afterwards."""
    spec_dir = tmp_path_factory.mktemp("jupyter") / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (seqmask tests)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    saved = {name: os.environ.get(name) for name in ("JUPYTER_PATH", "SEQMASK_QUICK")}
    paths = [str(spec_dir.parent.parent)]
    if saved["JUPYTER_PATH"]:
        paths.append(saved["JUPYTER_PATH"])
    os.environ["JUPYTER_PATH"] = os.pathsep.join(paths)
    os.environ["SEQMASK_QUICK"] = "1"
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def test_readme_lists_exactly_the_notebooks():
    """Every notebook is in notebooks/README.md's table and is run below; a
    notebook named there but missing (or not matching the glob) fails."""
    assert LISTED == [path.name for path in NOTEBOOKS]
    assert len(LISTED) >= 5


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: Path, kernel_env):
    notebook = jupytext.read(path)
    client = nbclient.NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
    )
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as error:
        pytest.fail(f"{path.name} failed:\n{error}", pytrace=False)
    folder = os.environ.get("SEQMASK_EXECUTED_NOTEBOOKS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, Path(folder, f"{path.stem}.ipynb"))
