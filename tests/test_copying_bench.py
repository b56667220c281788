"""bench/copying.py: the share of generated word n-grams found verbatim in the training texts."""

from __future__ import annotations

import json

import pytest

from bench import copying


def test_copied_ngrams_are_counted_and_new_ones_are_not():
    corpus = copying.words("It is a truth universally acknowledged, that a single man in possession of a good fortune")
    grams = set(copying.ngrams(corpus, 4))
    copied = "A truth universally acknowledged that"  # 2 of its 4-grams occur (case and punctuation ignored)
    fresh = "the whale swam far away today"
    rate, count = copying.copy_rates([copied, fresh], grams, 4)
    assert count == 2 + 3 and rate == pytest.approx(2 / 5)
    assert copying.copy_rates(["too short"], grams, 4)[1] == 0


def test_every_setting_of_a_race_is_scored(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(copying, "training_words", lambda: copying.words("one two three four five six"))
    results = tmp_path / "race.json"
    results.write_text(json.dumps({"records": [
        {"family": "diffusion", "model": "d", "steps": 8, "length": 6, "outputs": ["one two three four five six"]},
        {"family": "ar", "model": "a", "length": 6, "outputs": ["six five four three two one"]},
    ]}))
    out = tmp_path / "copying.json"
    assert copying.main([str(results), "--n", "3", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["setting"], r["copied_3"], r["ngrams_3"]) for r in rows] == [("diffusion, 8 steps", 1.0, 4), ("ar", 0.0, 4)]
    assert "| diffusion, 8 steps | 6 | 100.0% |" in capsys.readouterr().out
