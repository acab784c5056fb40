"""A griffe extension: seqmask's reStructuredText markup in Markdown.

The docstrings are Google style with a little reStructuredText, as in JAX and
optax: ``:func:`name``` roles, ``:math:`x``` and ``.. math::`` blocks, and
literal blocks after ``::``. mkdocstrings renders Markdown, so this rewrites
each docstring once it is loaded:

* a role naming a seqmask object becomes a cross-reference to the object's
  documented home; a full ``seqmask.`` path that resolves to nothing stays a
  reference, so that ``mkdocs build --strict`` fails on it. Other libraries'
  names (``jax.lax.scan``) and relative names that are no documented object
  (an argument, an instance attribute) become code;
* ``:math:`x``` becomes ``$x$`` and a ``.. math::`` block ``$$ ... $$``
  (rendered by MathJax through ``pymdownx.arithmatex``);
* a ``::`` literal block becomes a fenced Python block.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
import textwrap
from pathlib import Path

import griffe

sys.path.insert(0, str(Path(__file__).parent))
import public_api  # noqa: E402

ROLE = re.compile(r":(?:func|class|meth|mod|data|attr|obj|exc|const):`(~?)([^`]+)`")
MATH = re.compile(r":math:`([^`]+)`")


def _lookup(path: str):
    """The Python object at a dotted ``path``, or raise LookupError."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            value = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:]:
            try:
                value = getattr(value, part)
            except AttributeError as error:
                raise LookupError(path) from error
        return value
    raise LookupError(path)


def home(path: str) -> str | None:
    """The documented path of the seqmask object at ``path``, if any."""
    table = public_api.homes()
    if path in table:
        return table[path]
    try:
        value = _lookup(path)
    except LookupError:
        return None
    if inspect.ismodule(value):
        return value.__name__ if value.__name__ in public_api.public_modules() else None
    if inspect.isfunction(value) or inspect.isclass(value):
        found = table.get(f"{value.__module__}.{value.__qualname__}")
        if found is not None:
            return found
    parent, _, member = path.rpartition(".")
    parent_home = home(parent) if parent else None
    if parent_home is None:
        return None
    if member in getattr(_lookup(parent), "_fields", ()):
        return parent_home  # a NamedTuple field: its class documents it
    return f"{parent_home}.{member}"


def reference(target: str, short: bool, context: str) -> str:
    """Markdown for a role naming ``target``, seen from the object ``context``."""
    target = target.strip()
    if target.endswith("()"):
        target = target[:-2]
    shown = target.rsplit(".", 1)[-1] if short else target
    if target.split(".")[0] == public_api.PACKAGE:
        candidates = [target]
    elif "." in target and target.split(".")[0] in sys.modules:
        return f"`{shown}`"  # another library's name: no inventory offline
    else:  # relative to the object, its class, its module ...
        parts = context.split(".")
        candidates = [
            ".".join([*parts[:cut], target]) for cut in range(len(parts), 0, -1)
        ]
    for candidate in candidates:
        found = home(candidate)
        if found is not None and not found.rsplit(".", 1)[-1].startswith("_"):
            return f"[`{shown}`][{found}]"
    if len(candidates) == 1:  # a full seqmask path: broken, strict builds fail
        return f"[`{shown}`][{target}]"
    return f"`{shown}`"  # relative: an argument or an instance attribute


def _math_blocks(text: str) -> str:
    lines = text.splitlines()
    out: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        match = re.match(r"^(\s*)\.\. math::\s*$", line)
        if not match:
            out.append(line)
            index += 1
            continue
        indent = match.group(1)
        index += 1
        body: list[str] = []
        while index < len(lines) and (
            not lines[index].strip() or lines[index].startswith(indent + " ")
        ):
            body.append(lines[index])
            index += 1
        while body and not body[-1].strip():
            body.pop()
        formula = textwrap.dedent("\n".join(body)).strip("\n")
        out += [f"{indent}$$", *(indent + row for row in formula.splitlines())]
        out += [f"{indent}$$", ""]
    return "\n".join(out)


def _literal_blocks(text: str) -> str:
    lines = text.splitlines()
    out: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        out.append(line)
        index += 1
        if not line.rstrip().endswith("::") or line.strip().startswith(".."):
            continue
        stripped = line.rstrip()[:-2]
        out[-1] = stripped + ("" if stripped.endswith(" ") or not stripped else ":")
        out[-1] = out[-1].rstrip()
        indent = len(line) - len(line.lstrip())
        body: list[str] = []
        while index < len(lines) and (
            not lines[index].strip()
            or len(lines[index]) - len(lines[index].lstrip()) > indent
        ):
            body.append(lines[index])
            index += 1
        while body and not body[-1].strip():
            body.pop()
        code = textwrap.dedent("\n".join(body)).strip("\n")
        pad = " " * indent
        out += ["", f"{pad}```python", *(pad + row for row in code.splitlines())]
        out += [f"{pad}```", ""]
    return "\n".join(out)


GROUP_START = re.compile(r"^(\s+)(\w+(?:,\s*\w+)*,)\s*$")
GROUP = re.compile(r"^(\s+)(\w+(?:,\s*\w+)+):\s*(.*)$")


def _grouped_entries(text: str) -> str:
    """``a, b: description`` (one entry for several arguments, perhaps over
    two lines) as one entry per argument, which Google-style parsers read."""
    lines = text.splitlines()
    out: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        while GROUP_START.match(line) and index + 1 < len(lines):
            index += 1
            line = f"{line.rstrip()} {lines[index].strip()}"
        index += 1
        match = GROUP.match(line)
        if not match:
            out.append(line)
            continue
        indent, names, description = match.groups()
        for name in re.split(r",\s*", names):
            out.append(f"{indent}{name}: {description}")
    return "\n".join(out)


def to_markdown(text: str, context: str) -> str:
    """``text`` (a docstring) with its reStructuredText markup in Markdown."""
    text = _grouped_entries(text)
    text = _math_blocks(text)
    text = _literal_blocks(text)
    text = MATH.sub(lambda m: f"${m.group(1)}$", text)
    return ROLE.sub(lambda m: reference(m.group(2), bool(m.group(1)), context), text)


class RstToMarkdown(griffe.Extension):
    """Rewrites every docstring of the package once it is loaded."""

    def on_object(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = to_markdown(obj.docstring.value, obj.path)
