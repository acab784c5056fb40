"""``pip wheel .`` builds a wheel that installs into a fresh virtual
environment and runs ``seqmask demo --quick`` there.

What this checks, and what it does not: the wheel is built from a copy of
the files a release needs (``pyproject.toml``, ``README.md``, ``LICENSE``,
``seqmask/``); its contents (``py.typed``, the license, the metadata, the
console script, nothing else) are read from the archive; it is installed
with ``--no-deps --no-index`` into a new venv, and the demo runs from
another directory with nothing of this checkout on ``sys.path``. To avoid
downloading JAX and its friends, the new venv sees this interpreter's
``site-packages`` for the *dependencies* (a ``.pth`` file that only appends
those folders, so an editable install of seqmask there stays inactive); the
test asserts that ``seqmask`` itself is imported from the new venv.
Dependency resolution from an index is not checked here.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RELEASE_FILES = ["pyproject.toml", "README.md", "LICENSE", "seqmask"]


def _version(distribution: str) -> tuple[int, ...]:
    """The release numbers of an installed distribution; ``()`` when it is
    not installed (a Python 3.12+ virtual environment has no setuptools)."""
    try:
        version = importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return ()
    release = re.match(r"[\d.]+", version)
    return tuple(int(part) for part in release.group().strip(".").split("."))


def build_wheel(tmp_path: Path) -> Path:
    source = tmp_path / "source"
    source.mkdir()
    for name in RELEASE_FILES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(
                path, source / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy(path, source / name)
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", "dist", "."]
    # Without build isolation when this environment's setuptools is recent
    # enough (no download); otherwise (older, or none) pip fetches setuptools
    # from its index.
    if _version("setuptools") >= (77,):
        command.append("--no-build-isolation")
    result = subprocess.run(command, cwd=source, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (wheel,) = (source / "dist").glob("seqmask-*.whl")
    return wheel


def check_contents(wheel: Path, version: str) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = f"seqmask-{version}.dist-info"
        metadata = archive.read(f"{info}/METADATA").decode()
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
    assert "seqmask/py.typed" in names
    assert f"{info}/licenses/LICENSE" in names
    assert {
        "seqmask/__init__.py",
        "seqmask/cli.py",
        "seqmask/demo/__init__.py",
    } <= names
    assert all(n.startswith(("seqmask/", info)) for n in names), names
    assert "License-Expression: Apache-2.0" in metadata
    assert f"Version: {version}" in metadata
    for requirement in ("jax", "flax", "optax", "numpy", "chex", "tqdm"):
        assert re.search(rf"^Requires-Dist: {requirement}\b", metadata, re.M)
    assert "seqmask = seqmask.cli:main" in entry_points


@pytest.mark.slow
def test_wheel_installs_and_runs_the_demo(tmp_path):
    version = importlib.metadata.version("seqmask")
    wheel = build_wheel(tmp_path)
    check_contents(wheel, version)

    venv = tmp_path / "venv"
    python = venv / "bin" / "python"
    if _version("pip") >= (22, 3):
        # This interpreter's pip installs into the new venv (``--python``),
        # which then needs no pip of its own.
        subprocess.run(
            [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True
        )
        pip = [sys.executable, "-m", "pip", "--python", str(python)]
    else:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [python, "-m", "pip"]
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ours = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    Path(site, "_dependencies.pth").write_text("\n".join(sorted(ours)) + "\n")
    subprocess.run(
        [*pip, "install", "--quiet", "--no-deps", "--no-index", wheel], check=True
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["JAX_PLATFORMS"] = "cpu"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def run(*argv, quiet=False) -> str:
        result = subprocess.run(
            argv, cwd=elsewhere, env=env, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        if quiet:
            assert result.stderr == "", result.stderr[-3000:]
        return result.stdout

    where = run(python, "-c", "import seqmask; print(seqmask.__file__)")
    assert Path(where.strip()).is_relative_to(venv), where
    seqmask_script = venv / "bin" / "seqmask"
    assert run(seqmask_script, "--version").strip() == f"seqmask {version}"
    # --no-progress: no bars, nothing on stderr.
    out = run(seqmask_script, "demo", "--quick", "--no-progress", quiet=True)
    assert "held-out exact match on 64 examples" in out
    assert "beam search of width 1 equals greedy on 64/64 rows" in out
