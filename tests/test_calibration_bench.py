"""bench/calibration.py: how sure a masked model is at masked positions, and whether it is right to be."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bench import calibration


def test_reliability_of_known_predictions():
    confidence = torch.tensor([0.95, 0.95, 0.95, 0.95, 0.15, 0.15, 0.15, 0.15])
    right = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0])
    rows, ece = calibration.reliability(confidence, right)
    assert [(r["positions"], r["accuracy"]) for r in rows] == [(4, 0.25), (4, 0.75)]
    assert ece == pytest.approx(0.5 * 0.1 + 0.5 * 0.2)


def test_a_uniform_model_is_never_sure(uniform_dir, tmp_path, capsys):
    texts = tmp_path / "texts.txt"
    texts.write_text("the cat sat on the mat\nthe dog ran to the log and back\n")
    out = tmp_path / "calibration.json"
    assert calibration.main(["--model", str(uniform_dir), "--file", str(texts), "--texts", "2", "--rates", "0.5", "1.0",
                             "--json", str(out), "--no-progress"]) == 0
    result = json.loads(out.read_text())
    vocab = json.loads((Path(uniform_dir) / "config.json").read_text())["vocab_size"]
    for r in result["by_rate"]:
        assert r["positions"] > 0 and r["share_at_least_0.5"] == 0.0
        assert r["mean_confidence"] == pytest.approx(1 / vocab, rel=1e-3)
    assert "expected calibration error" in capsys.readouterr().out
