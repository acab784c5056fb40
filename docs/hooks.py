"""mkdocs hooks: the generated parts of the site, and its completeness check.

* one API page per public module (``docs/public_api.py``), with a
  mkdocstrings entry for each name of its ``__all__``;
* the notebooks (``notebooks/[0-9]*.py``, jupytext percent scripts) as pages
  with their outputs and figures. Executed copies are taken from the folder
  named by ``SEQMASK_EXECUTED_NOTEBOOKS`` when it holds them (the notebook
  tests write them there, so CI runs each notebook once); otherwise each
  notebook is executed here, in quick mode (``SEQMASK_QUICK=1``).
  ``SEQMASK_DOCS_SKIP_NOTEBOOKS=1`` leaves them out (a quick look at the rest);
* after the build, every public name must have its anchor on the site.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import tempfile
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
NOTEBOOKS = ROOT / "notebooks"
for path in (str(ROOT), str(DOCS)):
    if path not in sys.path:
        sys.path.insert(0, path)

import public_api  # noqa: E402


def notebook_sources() -> list[Path]:
    return sorted(p for p in NOTEBOOKS.glob("[0-9]*.py"))


def _title(path: Path) -> str:
    """The first Markdown heading of a notebook source."""
    for line in path.read_text().splitlines():
        if line.startswith("# # "):
            return line[4:].strip()
    return path.stem


def _execute(path: Path):
    """Run a notebook in a fresh kernel of this interpreter, in quick mode."""
    import jupytext
    import nbclient

    notebook = jupytext.read(path)
    with tempfile.TemporaryDirectory() as folder:
        spec = Path(folder, "kernels", "python3")
        spec.mkdir(parents=True)
        argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        kernel = {"argv": argv, "display_name": "Python 3", "language": "python"}
        (spec / "kernel.json").write_text(json.dumps(kernel))
        saved = {k: os.environ.get(k) for k in ("JUPYTER_PATH", "SEQMASK_QUICK")}
        saved["PYTHONPATH"] = os.environ.get("PYTHONPATH")
        os.environ["JUPYTER_PATH"] = folder
        os.environ["SEQMASK_QUICK"] = "1"
        os.environ["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT)] + ([saved["PYTHONPATH"]] if saved["PYTHONPATH"] else [])
        )
        try:
            nbclient.NotebookClient(
                notebook,
                timeout=600,
                kernel_name="python3",
                resources={"metadata": {"path": str(NOTEBOOKS)}},
            ).execute()
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    return notebook


def executed_notebook(path: Path):
    """The executed notebook of a source: a copy made by the tests, or run."""
    import nbformat

    folder = os.environ.get("SEQMASK_EXECUTED_NOTEBOOKS")
    if folder:
        copy = Path(folder, f"{path.stem}.ipynb")
        if copy.exists() and copy.stat().st_mtime >= path.stat().st_mtime:
            return nbformat.read(copy, as_version=4)
    return _execute(path)


def notebook_page(path: Path) -> tuple[str, dict[str, bytes]]:
    """The Markdown of an executed notebook, and its figures by file name."""
    from nbconvert import MarkdownExporter

    exporter = MarkdownExporter()
    resources = {"output_files_dir": f"{path.stem}_files"}
    body, resources = exporter.from_notebook_node(
        executed_notebook(path), resources=resources
    )
    source = f"notebooks/{path.name}"
    note = (
        f"!!! note\n    This page is `{source}`, executed in quick mode "
        "(`SEQMASK_QUICK=1`: fewer steps, smaller models). Run it yourself with "
        "the command in `notebooks/README.md`.\n\n"
    )
    lines = body.splitlines()
    head = next((i for i, line in enumerate(lines) if line.startswith("# ")), -1)
    text = "\n".join(lines[: head + 1] + ["", note] + lines[head + 1 :])
    return text, resources.get("outputs", {})


def api_index() -> str:
    lines = [
        "# API reference",
        "",
        "Every public name of every module, from its docstring. A name "
        "exported by several modules is documented once, where it is defined "
        "for users (for example `seqmask.rnn`, also exported by "
        "`seqmask.layers`); the other modules link there.",
        "",
        "| module | what it holds |",
        "| --- | --- |",
    ]
    for module in public_api.public_modules():
        doc = (importlib.import_module(module).__doc__ or "").strip().splitlines()
        summary = doc[0].rstrip(".").replace("|", "\\|") if doc else ""
        lines.append(f"| [`{module}`]({module}.md) | {summary} |")
    return "\n".join(lines) + "\n"


def _fill_nav(nav: list, section: str, pages: list) -> None:
    for entry in nav:
        if isinstance(entry, dict) and section in entry:
            entry[section] = pages
            return
    nav.append({section: pages})


def on_config(config):
    modules = public_api.public_modules()
    api = [{"Overview": "api/index.md"}]
    api += [{module: public_api.page_path(module)} for module in modules]
    _fill_nav(config["nav"], "API reference", api)
    notebooks = [
        {_title(path): f"notebooks/{path.stem}.md"} for path in notebook_sources()
    ]
    _fill_nav(config["nav"], "Notebooks", notebooks)
    return config


def _generated(config, path: str, content) -> File:
    return File.generated(config, path, content=content)


@event_priority(100)  # before the other plugins see the files
def on_files(files, config):
    files.append(_generated(config, "api/index.md", api_index()))
    for module in public_api.public_modules():
        page = public_api.page_path(module)
        files.append(_generated(config, page, public_api.api_page(module)))
    skip = os.environ.get("SEQMASK_DOCS_SKIP_NOTEBOOKS") == "1"
    for path in notebook_sources():
        if skip:  # a quick look at the rest of the site
            text = f"# {_title(path)}\n\nNot executed in this build.\n"
            files.append(_generated(config, f"notebooks/{path.stem}.md", text))
            continue
        text, figures = notebook_page(path)
        files.append(_generated(config, f"notebooks/{path.stem}.md", text))
        for name, data in figures.items():
            files.append(_generated(config, f"notebooks/{name}", data))
    flax = "guides/coming_from_flax.md"
    if files.get_file_from_path(flax) is None:
        files.append(_generated(config, flax, _FLAX_PLACEHOLDER))
    return files


_FLAX_PLACEHOLDER = """# Coming from Flax

This guide (the mapping of every `flax.linen.RNN`, `flax.nnx.RNN` and
`nn.Bidirectional` argument to seqmask, the carry-order and initialiser
differences, and the migration of Flax's seq2seq example) is not written
yet. Until then, see [`seqmask.linen`][seqmask.linen] and
[`seqmask.nnx`][seqmask.nnx].
"""


def missing_names(site_dir: str | Path) -> list[str]:
    """The documented paths of public names with no anchor on the built site."""
    site = Path(site_dir)
    anchors = set()
    for module in public_api.public_modules():
        html = site / "api" / module / "index.html"
        if not html.exists():
            html = site / "api" / f"{module}.html"
        text = html.read_text() if html.exists() else ""
        anchors |= {
            path
            for path in [module]
            + [f"{module}.{n}" for n in public_api.documented(module)]
            if f'id="{path}"' in text
        }
    expected = set(public_api.homes().values())
    return sorted(expected - anchors)


def on_post_build(config):
    missing = missing_names(config["site_dir"])
    if missing:
        raise PluginError(
            "public names missing from the API reference: " + ", ".join(missing)
        )
