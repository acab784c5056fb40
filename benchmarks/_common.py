"""What the benchmark scripts share: arguments, timing, records, peers.

Every ratio a benchmark prints or records follows one convention,
:data:`RATIO`: a time divided by its baseline's time, measured in the same
run, so below 1 is faster than the baseline. Column headers say which
baseline (``fwd / optax``, ``x floor``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import time
from pathlib import Path
from typing import Any

import jax

RESULTS = Path(__file__).resolve().parent / "results"
RATIO = "ratio = time / the baseline's time in the same run: below 1 is faster"


def parser(doc: str | None, *, repeats: int) -> argparse.ArgumentParser:
    """A parser with the options every benchmark has: ``--repeats``,
    ``--quick`` (a small smoke run) and ``--out`` (the records' folder)."""
    result = argparse.ArgumentParser(
        description=(doc or "").splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    result.add_argument(
        "--repeats", type=int, default=repeats, help="timed calls per measurement"
    )
    result.add_argument(
        "--quick",
        action="store_true",
        help="small shapes for a smoke run (records end in -quick.json)",
    )
    result.add_argument("--out", default=str(RESULTS), help="folder of the records")
    return result


def compile_timed(function, *args):
    """``(compiled, seconds)``: tracing, lowering and compiling, no execution."""
    start = time.perf_counter()
    compiled = jax.jit(function).lower(*args).compile()
    return compiled, time.perf_counter() - start


def round_robin(cases, repeats: int) -> dict[Any, float]:
    """``{name: median seconds}`` of zero-argument callables, timed in turn.

    Each round calls every case once, in a fresh random order, so load that
    comes and goes on a shared machine hits all of them alike, and no case
    always pays for following the same one (a large free before it, say).
    The callables must wait for their results (``jax.block_until_ready``).
    """
    for call in cases.values():  # warm up (compiled already)
        call()
    times: dict[Any, list[float]] = {name: [] for name in cases}
    order = list(cases)
    rng = random.Random(0)
    for _ in range(repeats):
        rng.shuffle(order)
        for name in order:
            start = time.perf_counter()
            cases[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def environment() -> dict[str, Any]:
    """Where a record was taken: versions, device, machine and load."""
    device = jax.devices()[0]
    return {
        "jax": jax.__version__,
        "device": f"{device.platform} ({device.device_kind})",
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
    }


def write_record(record: dict, out: str | Path, stem: str, quick: bool) -> Path:
    """Write ``record`` as ``<out>/<stem>[-quick].json`` and say so."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}-quick.json" if quick else folder / f"{stem}.json"
    path.write_text(json.dumps({**record, "quick": quick}, indent=2))
    print(f"wrote {path}")
    return path


def save_figure(figure, path: str | Path) -> None:
    """Save a matplotlib figure and say so."""
    figure.savefig(path, dpi=120)
    print(f"wrote {path}")


def pyplot():
    """matplotlib's pyplot (non-interactive), or None with a note."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print('matplotlib is not installed: no plot (pip install -e ".[bench]")')
        return None
    return plt


def torch_or_none(wanted: bool = True):
    """PyTorch, or None with a note when it is missing or not wanted."""
    if not wanted:
        print("PyTorch left out (--no-torch)")
        return None
    try:
        import torch
    except ImportError:
        print(
            "PyTorch is not installed: its rows are left out "
            '(pip install -e ".[bench-torch]" adds torch==2.13.0)'
        )
        return None
    return torch
