"""The package's structural rules, so that they stay true.

- No file in ``seqmask/`` is over 500 lines, and no function (its docstring
  included) over 120: past that, a module becomes a subpackage of private
  modules and a function is split into named pieces.
- A module imports private names only from its own package: what several
  packages share lives in a private top-level module made for sharing
  (``seqmask._checks``, ``seqmask._masking``, ...), never in another
  package's private modules or private names.
- The notebooks, examples and benchmarks use seqmask's public names only.

Each test reads the source with ``ast`` (nothing is imported) and lists every
offence, so a failure says what to fix.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "seqmask"
MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 120
# Private names that are public API of NamedTuple records.
NAMEDTUPLE_API = {"_replace", "_fields", "_asdict", "_make", "_field_defaults"}


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _home(module: str) -> str:
    """The package a module belongs to: ``seqmask.cells`` for every module
    of the subpackage ``cells``; a top-level module file is its own."""
    parts = module.split(".")
    if len(parts) > 1 and (PACKAGE / parts[1]).is_dir():
        return ".".join(parts[:2])
    return module


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _absolute(node: ast.ImportFrom, module: str, package: bool) -> str:
    """The absolute module of a ``from ... import`` in ``module``."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _is_shared(target: str, name: str) -> bool:
    """``from target import name`` imports a top-level private module of
    seqmask (``from seqmask import _checks``): one made for sharing."""
    path = PACKAGE / name
    return target == "seqmask" and (path.is_dir() or path.with_suffix(".py").exists())


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_no_file_over_500_lines():
    long = [
        f"{path.relative_to(ROOT)}: {lines} lines"
        for path in SOURCES
        if (lines := len(path.read_text().splitlines())) > MAX_FILE_LINES
    ]
    assert not long, "split these modules into subpackages:\n" + "\n".join(long)


# Functions over the limit that a change under way elsewhere owns. Each one
# must still be over it: split the function, then remove its entry.
KNOWN_LONG_FUNCTIONS: set[str] = set()


def test_no_function_over_120_lines():
    long = set()
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.add(f"{path.relative_to(ROOT)} {node.name}")
    new = sorted(long - KNOWN_LONG_FUNCTIONS)
    assert not new, "shorten these functions:\n" + "\n".join(new)
    fixed = sorted(KNOWN_LONG_FUNCTIONS - long)
    assert not fixed, f"no longer too long, remove from KNOWN_LONG_FUNCTIONS: {fixed}"


def _private_imports(source: str, module: str, package: bool) -> list[str]:
    """The private names ``module`` (whose source is ``source``; ``package``:
    it is an ``__init__``) imports from another package."""
    home = _home(module)
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            target = _absolute(node, module, package)
            imported = [(target, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            imported = [(alias.name, None) for alias in node.names]
        else:
            continue
        for target, name in imported:
            parts = target.split(".")
            if parts[0] != "seqmask" or _home(target) == home:
                continue
            # seqmask._x (a top-level private module) is made for sharing;
            # a private part below it is another package's inside.
            if any(_private(part) for part in parts[2:]):
                found.append(f"{module}: imports {target}")
            elif name and _private(name) and not _is_shared(target, name):
                found.append(f"{module}: imports {name} from {target}")
    return found


def test_no_private_name_crosses_packages():
    found = [
        line
        for path in SOURCES
        for line in _private_imports(
            path.read_text(), _module_name(path), _is_package(path)
        )
    ]
    assert not found, (
        "move what is shared into a private module made for sharing:\n"
        + "\n".join(found)
    )


def _private_uses(source: str) -> list[str]:
    """Private seqmask names a script imports or reaches by attribute."""
    tree = ast.parse(source)
    seqmask_names = set()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "seqmask":
                    seqmask_names.add(alias.asname or alias.name.split(".")[0])
                    if any(_private(p) for p in alias.name.split(".")):
                        found.append(f"import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
            "seqmask"
        ):
            if any(_private(p) for p in (node.module or "").split(".")):
                found.append(f"from {node.module} import ...")
            for alias in node.names:
                seqmask_names.add(alias.asname or alias.name)
                if _private(alias.name):
                    found.append(f"from {node.module} import {alias.name}")
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and _private(node.attr)
            and node.attr not in NAMEDTUPLE_API
        ):
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in seqmask_names:
                found.append(ast.unparse(node))
    return found


SCRIPTS = sorted(
    path
    for folder in ("notebooks", "examples", "benchmarks")
    for path in (ROOT / folder).rglob("*.py")
)


@pytest.mark.parametrize("folder", ["notebooks", "examples", "benchmarks"])
def test_scripts_use_public_names_only(folder):
    scripts = [path for path in SCRIPTS if path.relative_to(ROOT).parts[0] == folder]
    assert scripts, f"no scripts found in {folder}/"
    found = [
        f"{path.relative_to(ROOT)}: {line}"
        for path in scripts
        for line in _private_uses(path.read_text())
    ]
    assert not found, "use the public names instead:\n" + "\n".join(found)


def test_the_checks_find_offences():
    """Each check reports an offence when there is one, and only then."""
    script = (
        "import seqmask\n"
        "import seqmask.cells as sc\n"
        "from seqmask.cli import _encode\n"
        "from seqmask.scan._masked import masked_scan\n"
        "seqmask.cells._base.Cell\n"
        "sc._layout\n"
        "seqmask.cells.LSTMCarry._fields\n"
        "seqmask.rnn\n"
    )
    assert sorted(_private_uses(script)) == [
        "from seqmask.cli import _encode",
        "from seqmask.scan._masked import ...",
        "sc._layout",
        "seqmask.cells._base",
    ]
    layers = (
        "from seqmask import _checks\n"
        "from seqmask.cells import Cell\n"
        "from seqmask.cells._base import make_cell\n"
        "from seqmask.scan import _masked\n"
        "from seqmask.layers._compose import _merge\n"
        "from ._compose import _merge\n"
        "from seqmask._checks import fail\n"
        "from seqmask._checks._core import listing\n"
    )
    assert sorted(_private_imports(layers, "seqmask.layers._rnn", package=False)) == [
        "seqmask.layers._rnn: imports _masked from seqmask.scan",
        "seqmask.layers._rnn: imports seqmask._checks._core",
        "seqmask.layers._rnn: imports seqmask.cells._base",
    ]
