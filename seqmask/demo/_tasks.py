"""The demo's tasks: translation-like pairs generated in code.

Each task turns a short human-written string into a sequence of target
tokens; sources and targets have different, varying lengths. A hash of the
target (per seed) puts 5% of all targets in a held-out split that training
never sees.
"""

from __future__ import annotations

import datetime
import string
import zlib
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

import seqmask._checks as _checks

PAD = 0
"""The padding id, in both vocabularies."""
BOS = 1
"""The id that starts decoding (beginning of sequence)."""
EOS = 2
"""The id that ends every target (end of sequence)."""
SPECIALS = ("<pad>", "<bos>", "<eos>")
"""The names of the ids ``PAD``, ``BOS`` and ``EOS``, in id order."""
HELD_OUT_PERCENT = 5
"""About this percentage of a task's targets is held out of training."""

Pair = tuple[str, tuple[str, ...]]


class Task(NamedTuple):
    """A generated translation-like task.

    Token ids: ``0, 1, 2`` are :data:`SPECIALS` (PAD, BOS, EOS); the symbols
    follow in order, so the id of ``source_symbols[i]`` is ``i + 3``.

    Attributes:
      name: the ``--task`` name.
      description: one line for the demo's header.
      example: ``(rng) -> (source, target)``: a source string and its target
        as a tuple of target tokens.
      source_symbols: every character a source may contain.
      target_symbols: every target token.
      separator: how target tokens are joined for printing.
      max_source_len: the longest source, in characters.
      max_target_len: the longest target, in tokens (EOS not counted).
      steps: the default number of training steps.
    """

    name: str
    description: str
    example: Callable[[np.random.Generator], Pair]
    source_symbols: str
    target_symbols: tuple[str, ...]
    separator: str
    max_source_len: int
    max_target_len: int
    steps: int

    @property
    def source_vocabulary(self) -> tuple[str, ...]:
        """Every source token, indexed by its id: the specials, then symbols."""
        return (*SPECIALS, *self.source_symbols)

    @property
    def target_vocabulary(self) -> tuple[str, ...]:
        """Every target token, indexed by its id: the specials, then symbols."""
        return (*SPECIALS, *self.target_symbols)


_MONTHS = (
    "January February March April May June July August September October "
    "November December"
).split()
_WEEKDAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
_FIRST_DAY = datetime.date(1950, 1, 1).toordinal()
_LAST_DAY = datetime.date(2049, 12, 31).toordinal()


def _suffix(day: int) -> str:
    if 11 <= day % 100 <= 13:
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")


def _month(d: datetime.date) -> str:
    return _MONTHS[d.month - 1]


def _weekday(d: datetime.date) -> str:
    return _WEEKDAYS[d.weekday()]


# (what the source gives: "full" date, "month" of a year or "day" of a
# month; how it is written). Each separator style implies one field order,
# so every source has exactly one reading.
_DATE_FORMATS: tuple[tuple[str, Callable[[datetime.date], str]], ...] = (
    ("full", lambda d: f"{d.day} {_month(d)} {d.year}"),
    ("full", lambda d: f"{_month(d)} {d.day}, {d.year}"),
    ("full", lambda d: f"{_month(d)[:3]} {d.day}, {d.year}"),
    ("full", lambda d: f"{d.day} {_month(d)[:3]} {d.year}"),
    ("full", lambda d: f"{_weekday(d)}, {_month(d)} {d.day}, {d.year}"),
    ("full", lambda d: f"{_weekday(d)[:3]} {d.day} {_month(d)[:3]} {d.year}"),
    ("full", lambda d: f"{d.day:02d}.{d.month:02d}.{d.year}"),
    ("full", lambda d: f"{d.month}/{d.day}/{d.year}"),
    ("full", lambda d: f"{d.year}/{d.month:02d}/{d.day:02d}"),
    ("full", lambda d: f"{d.year}{d.month:02d}{d.day:02d}"),
    ("full", lambda d: f"the {d.day}{_suffix(d.day)} of {_month(d)} {d.year}"),
    ("full", lambda d: f"{_month(d).lower()} {d.day} {d.year}"),
    ("full", lambda d: f"{d.day:02d}-{_month(d)[:3].upper()}-{d.year}"),
    ("month", lambda d: f"{_month(d)} {d.year}"),
    ("month", lambda d: f"{_month(d)[:3]} {d.year}"),
    ("month", lambda d: f"{d.month:02d}/{d.year}"),
    ("day", lambda d: f"{_month(d)} {d.day}"),
    ("day", lambda d: f"{d.day} {_month(d)}"),
    ("day", lambda d: f"{_month(d)[:3]} {d.day}"),
)
_DATE_KINDS = np.array([kind for kind, _ in _DATE_FORMATS])
# Full dates make up 80% of the examples; each kind is spread evenly over
# its formats.
_DATE_WEIGHTS = np.array(
    [{"full": 0.8, "month": 0.1, "day": 0.1}[kind] for kind in _DATE_KINDS]
) / np.array([np.sum(_DATE_KINDS == kind) for kind in _DATE_KINDS])


def date_example(rng: np.random.Generator) -> Pair:
    """A date between 1950 and 2049 in a random human format, and its ISO form.

    Full dates map to ``YYYY-MM-DD``, a month of a year ("March 2024") to
    ``YYYY-MM`` and a day of a month ("7 March") to ``--MM-DD``, all
    ISO 8601 forms.

    Args:
      rng: the random generator to draw from.

    Returns:
      ``(source, target)``: the written date and its ISO form as a tuple of
      characters.

    Examples:
      >>> import numpy as np
      >>> from seqmask.demo import date_example
      >>> rng = np.random.default_rng(3)
      >>> for source, target in (date_example(rng) for _ in range(3)):
      ...     print(f"{source!r} -> {''.join(target)}")
      '25 Feb 2031' -> 2031-02-25
      'July 1958' -> 1958-07
      'December 3, 2036' -> 2036-12-03
    """
    day = datetime.date.fromordinal(int(rng.integers(_FIRST_DAY, _LAST_DAY + 1)))
    index = int(rng.choice(len(_DATE_FORMATS), p=_DATE_WEIGHTS))
    kind, write = _DATE_FORMATS[index]
    if kind == "full":
        target = day.isoformat()
    elif kind == "month":
        target = f"{day.year:04d}-{day.month:02d}"
    else:
        target = f"--{day.month:02d}-{day.day:02d}"
    return write(day), tuple(target)


_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve "
    "thirteen fourteen fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def _below_thousand(n: int) -> list[str]:
    hundreds, rest = divmod(n, 100)
    words = [_ONES[hundreds], "hundred"] if hundreds else []
    if rest >= 20:
        tens, ones = divmod(rest, 10)
        words += [_TENS[tens]] + ([_ONES[ones]] if ones else [])
    elif rest:
        words.append(_ONES[rest])
    return words


def number_words(n: int) -> tuple[str, ...]:
    """The English words for ``0 <= n < 10**6`` (no "and", no hyphens).

    Args:
      n: the number.

    Returns:
      The words, in order.

    Raises:
      ValueError: if ``n`` is outside ``[0, 10**6)``.

    Examples:
      >>> from seqmask.demo import number_words
      >>> " ".join(number_words(472_019))
      'four hundred seventy two thousand nineteen'
    """
    n = _checks.integer(n, "n", "number_words")
    if not 0 <= n < 10**6:
        raise ValueError(f"number_words: n must be in [0, 10**6); got {n}.")
    if n == 0:
        return ("zero",)
    thousands, rest = divmod(n, 1000)
    words = _below_thousand(thousands) + ["thousand"] if thousands else []
    return tuple(words + _below_thousand(rest))


def number_example(rng: np.random.Generator) -> Pair:
    """A number of 1 to 6 digits, written plain or grouped, and its words.

    Args:
      rng: the random generator to draw from.

    Returns:
      ``(source, words)``: the written number and its English words.

    Examples:
      >>> import numpy as np
      >>> from seqmask.demo import number_example
      >>> source, words = number_example(np.random.default_rng(0))
      >>> source, " ".join(words)
      ('673,265', 'six hundred seventy three thousand two hundred sixty five')
    """
    digits = int(rng.integers(1, 7))
    low = 0 if digits == 1 else 10 ** (digits - 1)
    n = int(rng.integers(low, 10**digits))
    style = int(rng.integers(3)) if n >= 1000 else 0
    source = (f"{n}", f"{n:,}", f"{n:,}".replace(",", " "))[style]
    return source, number_words(n)


_NUMBER_WORDS = tuple(dict.fromkeys(_ONES + _TENS[2:] + ["hundred", "thousand"]))

TASKS: dict[str, Task] = {
    "dates": Task(
        name="dates",
        description=(
            "dates in 19 human formats -> ISO 8601 (2024-03-07, 2024-03, --03-07); "
            "sources of 5-29 characters, targets of 7 or 10"
        ),
        example=date_example,
        source_symbols=" ,./-" + string.digits + string.ascii_letters,
        target_symbols=tuple(string.digits + "-"),
        separator="",
        max_source_len=29,
        max_target_len=10,
        steps=1000,
    ),
    "numbers": Task(
        name="numbers",
        description=(
            "numbers (0 to 999 999, plain or grouped) -> English words; sources of "
            "1-7 characters, targets of 1-10 words"
        ),
        example=number_example,
        source_symbols=" ," + string.digits,
        target_symbols=_NUMBER_WORDS,
        separator=" ",
        max_source_len=7,
        max_target_len=10,
        steps=1000,
    ),
}
"""The demo's tasks by name: ``"dates"`` and ``"numbers"``."""


def is_held_out(target: tuple[str, ...], seed: int) -> bool:
    """Whether ``target`` belongs to the held-out split of ``seed``.

    A hash of the seed and the target decides, so a target is held out (or
    not) wherever it is drawn, and about :data:`HELD_OUT_PERCENT` percent of
    all targets are.

    Args:
      target: a target, as a tuple of tokens.
      seed: the run's seed.

    Returns:
      True for a held-out target.

    Examples:
      >>> from seqmask.demo import is_held_out
      >>> is_held_out(tuple("2024-03-07"), seed=0)
      False
    """
    key = f"{seed}|{'|'.join(target)}".encode()
    return zlib.crc32(key) % 100 < HELD_OUT_PERCENT


def make_examples(
    task: Task, rng: np.random.Generator, count: int, *, held_out: bool, seed: int
) -> list[Pair]:
    """``count`` examples of ``task`` whose targets are (or are not) held out.

    Args:
      task: the task to draw from.
      rng: the random generator to draw from.
      count: how many pairs.
      held_out: true for held-out targets only (evaluation), false for
        training targets only.
      seed: the run's seed, which decides the split (:func:`is_held_out`).

    Returns:
      A list of ``(source, target)`` pairs.

    Examples:
      >>> import numpy as np
      >>> from seqmask.demo import TASKS, is_held_out, make_examples
      >>> pairs = make_examples(
      ...     TASKS["dates"], np.random.default_rng(0), 20, held_out=True, seed=0
      ... )
      >>> len(pairs), all(is_held_out(target, 0) for _, target in pairs)
      (20, True)
    """
    pairs = []
    while len(pairs) < count:
        source, target = task.example(rng)
        if is_held_out(target, seed) == held_out:
            pairs.append((source, target))
    return pairs
