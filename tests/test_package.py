"""The package as a user meets it: imports and the command line."""

import datetime
import re
import subprocess
import sys

import numpy as np

from seqmask.cli import date_example, number_example


def run_python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return result.stdout


def test_import_does_not_import_flax_or_torch():
    out = run_python(
        "import sys, seqmask, seqmask.cells, seqmask.masks, seqmask.interop\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('flax', 'torch', 'optax', 'tqdm')))"
    )
    assert out.strip() == "[]"


def _words_to_number(words):
    """An independent reading of English number words."""
    units = (
        "zero one two three four five six seven eight nine ten eleven twelve "
        "thirteen fourteen fifteen sixteen seventeen eighteen nineteen"
    ).split()
    tens = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
    total = current = 0
    for word in words:
        if word in units:
            current += units.index(word)
        elif word in tens[2:]:
            current += 10 * tens.index(word)
        elif word == "hundred":
            current *= 100
        else:
            assert word == "thousand"
            total, current = (total + current) * 1000, 0
    return total + current


def test_demo_tasks_generate_correct_pairs():
    rng = np.random.default_rng(0)
    for _ in range(300):
        source, words = number_example(rng)
        assert _words_to_number(words) == int(source.replace(",", "").replace(" ", ""))
        source, target = date_example(rng)
        iso = "".join(target)
        if iso.startswith("--"):  # a day of a month
            day = datetime.date(2000, int(iso[2:4]), int(iso[5:7]))
            assert day.strftime("%B")[:3] in source and str(day.day) in source
        elif len(iso) == 7:  # a month of a year
            day = datetime.date(int(iso[:4]), int(iso[5:7]), 1)
            assert iso[:4] in source
            assert day.strftime("%B")[:3] in source or f"{day.month:02d}/" in source
        else:
            day = datetime.date.fromisoformat(iso)
            formats = [
                "%d %B %Y",
                "%B %d, %Y",
                "%b %d, %Y",
                "%d %b %Y",
                "%A, %B %d, %Y",
                "%a %d %b %Y",
                "%d.%m.%Y",
                "%m/%d/%Y",
                "%Y/%m/%d",
                "%Y%m%d",
                "%B %d %Y",
                "%d-%b-%Y",
            ]
            text = re.sub(r"^the (\d+)(st|nd|rd|th) of", r"\1", source)
            parsed = set()
            for pattern in formats:
                try:
                    parsed.add(datetime.datetime.strptime(text, pattern).date())
                except ValueError:
                    pass
            assert parsed == {day}, (source, iso)


def test_demo_runs_from_the_command_line():
    result = subprocess.run(
        [sys.executable, "-m", "seqmask", "demo", "--quick", "--no-progress"],
        capture_output=True,
        text=True,
        check=True,
    )
    out = result.stdout
    assert re.search(
        r"held-out exact match on 64 examples .*greedy [\d.]+%, "
        r"beam search \(width 2\) [\d.]+%",
        out,
    )
    # What holds whatever the training did: beam width 1 is greedy, and the
    # outputs do not depend on the padding or on where a source sits.
    assert "beam search of width 1 equals greedy on 64/64 rows" in out
    assert "greedy outputs agree on 64/64 rows" in out
    difference = float(re.search(r"logits differ by at most (\S+)", out).group(1))
    assert difference < 1e-4
    assert out.count("   [") == 5  # five examples


def test_cli_without_command_prints_help():
    result = subprocess.run(
        [sys.executable, "-m", "seqmask"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "demo" in result.stdout
