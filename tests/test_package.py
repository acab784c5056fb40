"""The package as a user meets it: imports, the files a release ships, the
changelog and the license."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import seqmask

ROOT = Path(__file__).resolve().parent.parent


def run_python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return result.stdout


def pyproject() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as file:
        return tomllib.load(file)


def test_import_does_not_import_flax_or_torch():
    out = run_python(
        "import sys, seqmask, seqmask.cells, seqmask.masks, seqmask.interop\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('flax', 'torch', 'optax', 'tqdm')))"
    )
    assert out.strip() == "[]"


def test_version_agrees_with_pyproject():
    assert seqmask.__version__ == pyproject()["project"]["version"]


def test_oldest_pins_are_the_lower_bounds_of_the_dependencies():
    """``.ci/oldest`` installs ``.ci/oldest.txt``: one pin for each runtime
    dependency, at the version its lower bound in ``pyproject.toml`` names,
    so the bounds that are declared are the ones that are tested."""
    bounds = {}
    for requirement in pyproject()["project"]["dependencies"]:
        name, lower = re.fullmatch(r"([\w-]+)>=([\d.]+)(,.*)?", requirement).groups()[
            :2
        ]
        bounds[name] = lower
    pins = dict(
        re.fullmatch(r"([\w-]+)==([\d.]+)", line).groups()
        for line in (ROOT / ".ci" / "oldest.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )

    def release(version):
        parts = [int(part) for part in version.split(".")]
        while parts and parts[-1] == 0:
            parts.pop()
        return parts

    assert set(pins) == set(bounds)
    for name, lower in bounds.items():
        assert release(pins[name]) == release(lower), name


def test_license_is_the_apache_license_that_pyproject_names():
    text = (ROOT / "LICENSE").read_text()
    assert pyproject()["project"]["license"] == "Apache-2.0"
    assert text.lstrip().startswith("Apache License")
    assert "Version 2.0, January 2004" in text
    # The full text: all nine sections and the appendix, not a stub.
    for number, title in enumerate(
        [
            "Definitions",
            "Grant of Copyright License",
            "Grant of Patent License",
            "Redistribution",
            "Submission of Contributions",
            "Trademarks",
            "Disclaimer of Warranty",
            "Limitation of Liability",
            "Accepting Warranty or Additional Liability",
        ],
        start=1,
    ):
        assert f"{number}. {title}." in text, title
    assert "END OF TERMS AND CONDITIONS" in text
    assert "APPENDIX: How to apply the Apache License" in text


def test_changelog_has_an_entry_for_this_version():
    text = (ROOT / "CHANGELOG.md").read_text()
    version = pyproject()["project"]["version"]
    headings = re.findall(r"^## (.+)$", text, re.MULTILINE)
    assert headings[0] == "Unreleased"
    assert version in headings
    # Each release section says something.
    sections = re.split(r"^## .+$", text, flags=re.MULTILINE)[1:]
    for heading, body in zip(headings, sections, strict=True):
        assert re.search(r"^(- |\w)", body, re.MULTILINE), heading


def test_py_typed_marks_the_package_as_typed():
    assert (ROOT / "seqmask" / "py.typed").is_file()
    # The wheel ships it: tests/test_wheel.py checks the built archive.


def test_pyproject_metadata():
    project = pyproject()["project"]
    assert project["scripts"] == {"seqmask": "seqmask.cli:main"}
    classifiers = project["classifiers"]
    assert "License :: OSI Approved :: Apache Software License" not in classifiers, (
        "a license classifier next to the SPDX expression is rejected by PEP 639"
    )
    assert "Typing :: Typed" in classifiers
    supported = re.findall(
        r"Programming Language :: Python :: (3\.\d+)$",
        "\n".join(classifiers),
        re.MULTILINE,
    )
    assert supported and project["requires-python"] == f">={supported[0]}"
    # Every optional extra names only distributions, and torch only pinned.
    for extra, requirements in project["optional-dependencies"].items():
        for requirement in requirements:
            if requirement.startswith("torch"):
                assert requirement == "torch==2.13.0", extra
