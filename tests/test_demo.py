"""seqmask.demo: the tasks, the encoding and the metrics of the main job,
against independent readings (``datetime``, a parser of number words, plain
loops)."""

from __future__ import annotations

import datetime
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqmask import demo


def words_to_number(words):
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


FULL_DATE_FORMATS = [
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


def check_date(source: str, iso: str) -> None:
    if iso.startswith("--"):  # a day of a month
        day = datetime.date(2000, int(iso[2:4]), int(iso[5:7]))
        assert day.strftime("%B")[:3] in source and str(day.day) in source
    elif len(iso) == 7:  # a month of a year
        day = datetime.date(int(iso[:4]), int(iso[5:7]), 1)
        assert iso[:4] in source
        assert day.strftime("%B")[:3] in source or f"{day.month:02d}/" in source
    else:
        day = datetime.date.fromisoformat(iso)
        text = re.sub(r"^the (\d+)(st|nd|rd|th) of", r"\1", source)
        parsed = set()
        for pattern in FULL_DATE_FORMATS:
            try:
                parsed.add(datetime.datetime.strptime(text, pattern).date())
            except ValueError:
                pass
        assert parsed == {day}, (source, iso)


def test_tasks_generate_correct_pairs():
    rng = np.random.default_rng(0)
    for _ in range(300):
        source, words = demo.number_example(rng)
        assert words_to_number(words) == int(source.replace(",", "").replace(" ", ""))
        source, target = demo.date_example(rng)
        check_date(source, "".join(target))


@pytest.mark.parametrize("task", sorted(demo.TASKS))
def test_examples_fit_the_task(task):
    task = demo.TASKS[task]
    rng = np.random.default_rng(1)
    for source, target in (task.example(rng) for _ in range(500)):
        assert 1 <= len(source) <= task.max_source_len
        assert 1 <= len(target) <= task.max_target_len
        assert set(source) <= set(task.source_symbols)
        assert set(target) <= set(task.target_symbols)


def test_number_words_bounds():
    assert demo.number_words(0) == ("zero",)
    assert words_to_number(demo.number_words(999_999)) == 999_999
    with pytest.raises(ValueError, match="number_words"):
        demo.number_words(10**6)


def test_held_out_split_is_a_stable_five_percent():
    task = demo.TASKS["dates"]
    rng = np.random.default_rng(2)
    targets = {task.example(rng)[1] for _ in range(4000)}
    held = [t for t in targets if demo.is_held_out(t, seed=0)]
    assert 0.03 < len(held) / len(targets) < 0.07
    # Another seed, another split; the same seed, the same one.
    assert {t for t in targets if demo.is_held_out(t, seed=1)} != set(held)
    assert all(demo.is_held_out(t, seed=0) for t in held)
    train = demo.make_examples(task, rng, 300, held_out=False, seed=0)
    test = demo.make_examples(task, rng, 50, held_out=True, seed=0)
    assert not {t for _, t in train} & {t for _, t in test}


@pytest.mark.parametrize("shift", [False, True])
def test_encode_round_trips_and_pads_with_symbols(shift):
    task = demo.TASKS["dates"]
    rng = np.random.default_rng(3)
    pairs = demo.make_examples(task, rng, 64, held_out=False, seed=0)
    batch = demo.encode(pairs, task, rng, shift_sources=shift)
    assert batch.source.dtype == batch.targets.dtype == np.int32
    offsets = set()
    for row, (source, target) in enumerate(pairs):
        positions = np.flatnonzero(batch.source_mask[row])
        # The valid positions are contiguous and spell the source.
        assert list(positions) == list(range(positions[0], positions[0] + len(source)))
        offsets.add(int(positions[0]))
        text = "".join(task.source_vocabulary[i] for i in batch.source[row, positions])
        assert text == source
        length = int(batch.target_lengths[row])
        assert length == len(target) + 1
        assert batch.targets[row, length - 1] == demo.EOS
        assert demo.decode_text(batch.targets[row], length, task) == "".join(target)
    # Padding holds symbols, never a special id.
    assert np.all(batch.source[~batch.source_mask] >= len(demo.SPECIALS))
    valid = np.arange(batch.targets.shape[1]) < batch.target_lengths[:, None]
    assert np.all(batch.targets[~valid] >= len(demo.SPECIALS))
    assert (len(offsets) > 5) == shift


def test_decode_text_stops_at_the_length():
    task = demo.TASKS["dates"]
    ids = [task.target_vocabulary.index(c) for c in "2024-03"]
    assert demo.decode_text([*ids, demo.EOS, 5, 5], 8, task) == "2024-03"
    assert demo.decode_text([*ids, demo.EOS], 4, task) == "2024"
    assert demo.decode_text([*ids], 0, task) == ""


@pytest.mark.parametrize("steps", [1, 2, 5])
def test_make_optimizer_takes_any_positive_step_count(steps):
    """One step (``seqmask demo --steps 1``) raised optax's error: the
    warm-up was as long as the run. Every update is finite."""
    optimizer = demo.make_optimizer(steps)
    params = {"w": jnp.ones(3)}
    state = optimizer.init(params)
    with jax.numpy_dtype_promotion("standard"):  # optax's schedules need it
        for _ in range(steps):
            updates, state = optimizer.update({"w": jnp.ones(3)}, state, params)
            assert np.all(np.isfinite(np.asarray(updates["w"])))
    with pytest.raises(ValueError, match="make_optimizer: steps must be a positive"):
        demo.make_optimizer(0)


def test_number_words_and_encode_name_a_bad_argument():
    with pytest.raises(TypeError, match="number_words: n must be an int"):
        demo.number_words(3.0)
    task = demo.TASKS["numbers"]
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"encode: a source holds symbols .*\['a'\]"):
        demo.encode([("1a", ("one",))], task, rng)
    with pytest.raises(ValueError, match="encode: a source of 8 symbols is longer"):
        demo.encode([("12345678", ("one",))], task, rng)
    with pytest.raises(ValueError, match=r"encode: a target holds .*\['onze'\]"):
        demo.encode([("11", ("onze",))], task, rng)
