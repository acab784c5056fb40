"""What the API reference documents: every public module and its ``__all__``.

Shared by the site's build hooks (``docs/hooks.py``), the docstring
extension (``docs/griffe_rst.py``) and ``tests/test_docs.py``. A public
module is one of ``seqmask``'s modules with no ``_``-prefixed part in its
name; its public names are its ``__all__``. Each name has one documented
home: the first page (the top level first, then the modules in alphabetical
order) whose ``__all__`` exports the same object; other modules that export
it link there.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from functools import cache
from types import ModuleType

PACKAGE = "seqmask"
# Modules that are entry points, not APIs to document.
SKIPPED = {"seqmask.__main__"}


def public_modules() -> list[str]:
    """``seqmask`` and its public submodules, the top level first."""
    package = importlib.import_module(PACKAGE)
    names = [
        info.name
        for info in pkgutil.walk_packages(package.__path__, f"{PACKAGE}.")
        if not any(part.startswith("_") for part in info.name.split("."))
    ]
    return [PACKAGE] + sorted(set(names) - SKIPPED)


def exported(module: str) -> list[str]:
    """The public names of ``module``: its ``__all__``, in order.

    A module without ``__all__`` falls back to what its source makes public:
    explicit re-exports (``from ._x import name as name``) and its own
    top-level definitions and assignments without a leading ``_``, in source
    order.
    """
    value = importlib.import_module(module)
    names = getattr(value, "__all__", None)
    if names is not None:
        return list(names)
    tree = ast.parse(inspect.getsource(value))
    found: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            found += [a.asname for a in node.names if a.asname == a.name]
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            found.append(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            found += [t.id for t in targets if isinstance(t, ast.Name)]
    return [
        name
        for name in dict.fromkeys(found)
        if not name.startswith("_")
        and not isinstance(getattr(value, name, None), ModuleType)
    ]


def _is_documented_by_identity(value) -> bool:
    # Functions and classes are the same object wherever they are exported;
    # a constant (an int, a dict) is documented where its module lists it.
    return inspect.isfunction(value) or inspect.isclass(value)


@cache
def homes() -> dict[str, str]:
    """``{exported path: documented path}`` for every public name, and for
    each function and class also its defining path (``module.qualname``)."""
    table: dict[str, str] = {}
    by_identity: dict[int, str] = {}
    for module_name in public_modules():
        module = importlib.import_module(module_name)
        for name in exported(module_name):
            value = getattr(module, name)
            path = f"{module_name}.{name}"
            if isinstance(value, ModuleType):
                table[path] = value.__name__
                continue
            if _is_documented_by_identity(value):
                home = by_identity.setdefault(id(value), path)
                table[path] = home
                table.setdefault(f"{value.__module__}.{value.__qualname__}", home)
            else:
                table[path] = path
    return table


def documented(module: str) -> list[str]:
    """The names whose documented home is ``module``, in ``__all__`` order
    (submodules have pages of their own)."""
    table = homes()
    value = importlib.import_module(module)
    return [
        name
        for name in exported(module)
        if table[f"{module}.{name}"] == f"{module}.{name}"
        and not isinstance(getattr(value, name), ModuleType)
    ]


def linked(module: str) -> list[tuple[str, str]]:
    """``(name, home)`` for the names ``module`` exports but documents
    elsewhere (re-exports and submodules)."""
    table = homes()
    shown = set(documented(module))
    return [
        (name, table[f"{module}.{name}"])
        for name in exported(module)
        if name not in shown
    ]


def page_path(module: str) -> str:
    """Where the page of ``module`` lives in the site's sources."""
    return f"api/{module}.md"


def api_page(module: str) -> str:
    """The Markdown of the API page of ``module``."""
    lines = [
        f"::: {module}",
        "    options:",
        "      members: false",
        "      heading_level: 1",
        "",
    ]
    for name in documented(module):
        lines += [f"::: {module}.{name}", ""]
    links = linked(module)
    if links:
        lines += ["## Documented elsewhere", ""]
        lines += [f"- `{name}`: [`{home}`][{home}]" for name, home in links]
        lines.append("")
    return "\n".join(lines)
