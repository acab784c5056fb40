"""The documentation site: every public name has a page entry, the
docstring markup converts, the completeness check can fail, and the guides'
code runs. (``mkdocs build --strict`` itself runs in ``.ci/run``.)"""

from __future__ import annotations

import importlib
import inspect
import sys
import textwrap
import types
from pathlib import Path

import pytest
from markdown_code import python_blocks, run_blocks

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
sys.path.insert(0, str(DOCS))

import public_api  # noqa: E402

# Fragments of a multi-host program: they need several hosts to run.
NOT_RUNNABLE = {"scaling_out.md"}
GUIDES = sorted(
    path
    for path in [DOCS / "index.md", *DOCS.glob("guides/*.md")]
    if path.name not in NOT_RUNNABLE
)


def modules_on_disk() -> set[str]:
    """Public module names read off the file tree (an independent walk)."""
    found = {"seqmask"}
    for path in (ROOT / "seqmask").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if not any(part.startswith("_") for part in parts):
            found.add(".".join(parts))
    return found


def test_every_public_module_has_a_page():
    assert set(public_api.public_modules()) == modules_on_disk() - {"seqmask.__main__"}


@pytest.mark.parametrize("module", public_api.public_modules())
def test_every_exported_name_has_one_documented_home(module):
    page = public_api.api_page(module)
    homes = public_api.homes()
    value = importlib.import_module(module)
    names = getattr(value, "__all__", None) or public_api.exported(module)
    for name in names:
        member = getattr(value, name)
        if isinstance(member, types.ModuleType):  # a page of its own, linked
            assert member.__name__ in public_api.public_modules(), name
            assert f"[`{member.__name__}`][{member.__name__}]" in page, name
            continue
        path, home = f"{module}.{name}", homes[f"{module}.{name}"]
        if home == path:
            assert f"::: {path}\n" in page, name
        else:  # documented where users meet it; this page links there
            assert f"[`{home}`][{home}]" in page, name
            home_module = home.rsplit(".", 1)[0]
            assert f"::: {home}\n" in public_api.api_page(home_module), name
            assert (
                getattr(importlib.import_module(home_module), home.rsplit(".")[-1])
                is member
            )


def argument_names(doc: str) -> set[str]:
    """The names the ``Args:`` section of ``doc`` describes: an entry is
    ``name: text`` or ``a, b, c: text``, its names maybe on several lines."""
    lines = doc.splitlines()
    heads = [i for i, line in enumerate(lines) if line.strip() == "Args:"]
    names: set[str] = set()
    for head in heads:
        outer = len(lines[head]) - len(lines[head].lstrip())
        entry, pending = None, ""
        for line in lines[head + 1 :]:
            if not line.strip():
                continue
            indent = len(line) - len(line.lstrip())
            if indent <= outer:
                break
            entry = indent if entry is None else entry
            if indent == entry:
                pending = ""
            elif not pending:
                continue  # the text of an entry
            pending += " " + line.strip()
            if ":" in line:
                names.update(n.strip(" *`") for n in pending.split(":")[0].split(","))
                pending = ""
    return names - {""}


def undocumented_arguments(function) -> tuple[set[str], set[str]]:
    """``(parameters the Args section misses, names it has that are no
    parameters)``; both empty when ``function`` has no Args section."""
    doc = inspect.getdoc(function) or ""
    if inspect.isclass(function) and "__init__" in vars(function):
        function = function.__init__  # Flax NNX modules hide it behind a metaclass
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # a builtin without a signature
        return set(), set()
    named = argument_names(doc)
    if not named:
        return set(), set()
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    parameters = {p.name for p in signature.parameters.values()} - {"self", "cls"}
    optional = {p.name for p in signature.parameters.values() if p.kind in variadic}
    return parameters - optional - named, named - parameters


def public_callables():
    """Every documented function and class, and the public methods
    (``__call__`` included) of the classes."""
    for home in sorted(set(public_api.homes().values())):
        module, _, name = home.rpartition(".")
        value = getattr(importlib.import_module(module), name)
        if not callable(value) or isinstance(value, types.ModuleType):
            continue
        yield home, value
        if inspect.isclass(value):
            for attribute, member in vars(value).items():
                public = not attribute.startswith("_") or attribute == "__call__"
                if public and inspect.isfunction(member):
                    yield f"{home}.{attribute}", member


def test_every_parameter_is_documented():
    offences = []
    for path, function in public_callables():
        missing, unknown = undocumented_arguments(function)
        if missing:
            offences.append(f"{path}: Args misses {sorted(missing)}")
        if unknown:
            offences.append(f"{path}: Args names {sorted(unknown)}, no parameters")
    assert len(dict(public_callables())) > 100  # the walk finds the API
    assert offences == []


def test_the_argument_check_finds_offences():
    def f(a, b, *, c=None, **kwargs):
        """Text.

        Args:
          a, b: first two; a long
            description.
          d: gone.

        Returns:
          Nothing.
        """

    assert argument_names(inspect.getdoc(f) or "") == {"a", "b", "d"}
    assert undocumented_arguments(f) == ({"c"}, {"d"})


def test_completeness_check_finds_a_missing_name(tmp_path):
    hooks = pytest.importorskip("hooks", reason="needs mkdocs (the docs extra)")
    expected = sorted(set(public_api.homes().values()))
    for module in public_api.public_modules():
        page = tmp_path / "api" / module / "index.html"
        page.parent.mkdir(parents=True)
        ids = [module] + [f"{module}.{n}" for n in public_api.documented(module)]
        page.write_text("".join(f'<h2 id="{i}">{i}</h2>' for i in ids))
    assert hooks.missing_names(tmp_path) == []
    dropped = expected[len(expected) // 2]
    module = max(
        (m for m in public_api.public_modules() if dropped.startswith(m + ".")),
        key=len,
        default=dropped,
    )
    page = tmp_path / "api" / module / "index.html"
    page.write_text(page.read_text().replace(f'id="{dropped}"', 'id="gone"'))
    assert hooks.missing_names(tmp_path) == [dropped]


def test_docstring_markup_becomes_markdown():
    griffe_rst = pytest.importorskip("griffe_rst", reason="needs griffe (docs extra)")
    text = textwrap.dedent(
        """\
    Runs :func:`seqmask.layers.rnn` like :func:`jax.lax.scan`.

    See :class:`~seqmask.cells.Cell` and :func:`greedy`; :math:`x^2`;
    :attr:`seqmask.decoding.Decoded.tokens`.

    .. math::
      y = a x + b

    Args:
      xs, mask: as :func:`rnn`.
      broken: :func:`seqmask.no_such_function`.

    Written as a loop::

        for t in range(T):
            step()
    """
    )
    out = griffe_rst.to_markdown(text, "seqmask.decoding.beam_search")
    assert "[`seqmask.layers.rnn`][seqmask.rnn]" in out  # the documented home
    assert "`jax.lax.scan`" in out and "[`jax" not in out
    assert "[`Cell`][seqmask.cells.Cell]" in out
    assert "[`greedy`][seqmask.decoding.greedy]" in out  # relative to the module
    assert "$x^2$" in out
    # A NamedTuple field has no anchor of its own: its class documents it.
    assert "[`seqmask.decoding.Decoded.tokens`][seqmask.decoding.Decoded]" in out
    assert "$$\ny = a x + b\n$$" in out
    assert "  xs: as [`rnn`][seqmask.rnn].\n  mask: as [`rnn`][seqmask.rnn]." in out
    # A full seqmask path that resolves to nothing stays a reference, which
    # fails the strict build.
    assert "[`seqmask.no_such_function`][seqmask.no_such_function]" in out
    assert "Written as a loop:\n\n```python\nfor t in range(T):\n    step()\n```" in out


@pytest.mark.parametrize("path", GUIDES, ids=[p.stem for p in GUIDES])
def test_guide_code_runs(path):
    if not python_blocks(path):
        pytest.skip("no Python blocks")
    run_blocks(path)
