"""bench/classify_rates.py: a diffusion classifier's score gap per band of mask rates."""

from __future__ import annotations

import random

import pytest
import torch

from bench import classify_rates


@pytest.mark.parametrize("length", [1, 7, 50, 128])
def test_each_band_s_mask_counts_fall_in_that_band(length):
    counts, bands = classify_rates.band_counts(length, 10, 3, torch.Generator().manual_seed(length))
    assert len(counts) == 30 and bands == [b for b in range(10) for _ in range(3)]
    for count, band in zip(counts.tolist(), bands):
        assert 1 <= count <= length
        if length >= 10:  # the count's rate lies in its band (up to rounding up to a whole token)
            assert band / 10 < count / length <= (band + 1) / 10 + 1 / length


def test_the_analysis_finds_the_band_that_carries_the_label():
    """Synthetic per-band scores: only band 2 separates the classes; the others are noise."""
    rng = random.Random(0)
    truth, scores = [], []
    for i in range(400):
        label = i % 2
        truth.append(["neg", "pos"][label])
        gaps = [rng.gauss(0, 3) for _ in range(4)]
        gaps[2] = (1 if label else -1) * 2 + rng.gauss(0, 0.5)
        scores.append([[0.0] * 4, gaps])  # [class][band]: log p(x | neg) = 0, log p(x | pos) = the gap
    data = {"labels": ["neg", "pos"], "priors": [0.5, 0.5], "truth": truth, "scores": scores}
    result = classify_rates.analyse(None, data)
    accuracy = result["accuracy"]
    assert accuracy["band 50-75%"] > 0.99 and max(accuracy[f"band {b}"] for b in ("0-25%", "25-50%", "75-100%")) < 0.65
    assert accuracy["fitted band weights (10-fold CV)"] > accuracy["uniform (the ELBO)"] + 0.05
    weights = result["weights"]
    assert abs(weights[2]) > 5 * max(abs(w) for i, w in enumerate(weights) if i != 2)
