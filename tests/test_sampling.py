"""Top-k / top-p / min-p sampling without sorting the vocabulary, against transformers' own warpers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import chisquare
from transformers.generation.logits_process import MinPLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from dlm.config import SamplerConfig
from dlm.sampling import kept_tokens, logits_warpers, sample_tokens

BOUNDARY = 1e-6  # float32 rounding in transformers' cumulative sum: a cut closer than this may go either way


def kept_mask(scores: torch.Tensor, top_k: int, top_p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, V) the tokens `kept_tokens` keeps, and (N,) the rows it leaves to transformers (tied cut-off)."""
    mask, tied = kept_tokens(scores, top_k, top_p)
    left = torch.zeros(scores.shape[0], dtype=torch.bool)
    left[tied] = True
    return mask, left


def reference(scores: torch.Tensor, top_k: int, top_p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """transformers' kept set, and the rows whose cut-off lies within BOUNDARY of 1 - top_p."""
    if top_k > 0:
        scores = TopKLogitsWarper(top_k)(None, scores.clone())
    kept = TopPLogitsWarper(top_p)(None, scores) > float("-inf")
    cum = scores.sort().values.softmax(-1).cumsum(-1).double()
    near = ((cum - (1 - top_p)).abs() < BOUNDARY).any(-1)
    return kept, near


@pytest.fixture(params=["torch", "numpy"])
def top_p_path(request, monkeypatch):
    """On the CPU top-p and min-p (and top-k on a few rows) go a few rows at a time through NumPy; on an
    accelerator, and top-k on many rows, through torch for all rows at once. Run a test through each,
    every option through each path, the torch path here on the CPU."""
    import dlm.sampling

    if request.param == "torch":
        monkeypatch.setattr(dlm.sampling, "_by_row", lambda scores, top_k=0: False)
    else:  # top-k too, at any number of rows
        monkeypatch.setattr(dlm.sampling, "_by_row", lambda scores, top_k=0: True)
    return request.param


@pytest.mark.parametrize("top_k", [0, 3, 40])
@pytest.mark.parametrize("kind", ["normal", "ties"])
def test_nucleus_equals_transformers(top_k, kind, top_p_path):
    gen = torch.Generator().manual_seed(1 + top_k)
    tops = [1e-9, 1e-3, 0.05, 0.3, 0.5, 0.9, 0.95, 0.999, 1.0] + torch.rand(20, generator=gen).tolist()
    checked = left_total = 0
    for top_p in tops:
        for v in (7, 150, 1000):
            if kind == "ties":  # few distinct values: the cut-off often splits a tie group
                scores = torch.randint(-3, 3, (16, v), generator=gen).float()
            else:
                scale = float(torch.rand(1, generator=gen)) * 6 + 0.1
                scores = torch.randn(16, v, generator=gen) * scale
            scores[0, : v // 3] = float("-inf")  # forbidden tokens
            mine, left = kept_mask(scores, top_k, top_p)
            ref, near = reference(scores, top_k, top_p)
            rows = ~left & ~near
            assert torch.equal(mine[rows], ref[rows]), (top_p, v)
            assert (mine.sum(-1)[~left] >= 1).all()
            checked += int(rows.sum())
            left_total += int(left.sum())
    if kind == "normal":  # distinct logits: almost every row compared, none needs transformers' sort
        assert checked > 0.9 * len(tops) * 3 * 16
        assert left_total == 0
    else:
        assert checked > 0.1 * len(tops) * 3 * 16  # a top-k cut splits integer ties often


def test_tied_rows_follow_transformers(top_p_path):
    """Rows whose cut-off splits tied logits are drawn exactly as the full warpers would draw them."""
    logits = torch.zeros(1, 50, 10)  # all tied: top-p 0.45 keeps 5 of 10, chosen by transformers' sort
    config = SamplerConfig(temperature=1.0, top_p=0.45)
    u = torch.rand(1, 50, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    allowed = torch.nonzero(logits_warpers(config)(None, logits[0, :1]) > float("-inf"))[:, 1]
    tokens = sample_tokens(logits, config, u)
    assert set(tokens.flatten().tolist()) <= set(allowed.tolist())


def expected_probs(logits: torch.Tensor, config: SamplerConfig) -> torch.Tensor:
    return torch.softmax(logits_warpers(config)(None, logits.unsqueeze(0).float()).double(), -1)[0]


@pytest.mark.parametrize(
    "options", [dict(top_p=0.8), dict(top_p=0.5, temperature=0.7), dict(top_k=6, top_p=0.9), dict(top_k=5), dict(),
                dict(min_p=0.1), dict(min_p=0.3, temperature=1.5), dict(top_k=8, top_p=0.95, min_p=0.05)]
)
def test_distribution_matches_transformers(options, top_p_path):
    """20,000 draws at one position against transformers' warped probabilities: chi-squared, p > 0.001."""
    config = SamplerConfig(**{"temperature": 1.0, **options})
    logits = torch.randn(12, generator=torch.Generator().manual_seed(3)) * 1.5
    n = 20_000
    u = 1.0 - torch.rand(1, n, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    tokens = sample_tokens(logits.expand(1, n, 12).contiguous(), config, u)
    counts = torch.bincount(tokens.flatten(), minlength=12).double()
    probs = expected_probs(logits, config)
    support_ = probs > 0
    assert counts[~support_].sum() == 0, "a token outside the nucleus was drawn"
    assert int(support_.sum()) >= 2
    result = chisquare(counts[support_].numpy(), (probs[support_] * n).numpy())
    assert result.pvalue > 0.001, (options, result)


@pytest.mark.parametrize("options", [dict(top_p=0.9), dict(top_k=20, top_p=0.9), dict(top_k=20), dict(),
                                     dict(min_p=0.05), dict(top_k=20, min_p=0.1)])
def test_fixed_uniforms_same_tokens_and_same_as_full_warpers(options, top_p_path):
    """Same uniforms give the same tokens, run to run, and (distinct logits) the very tokens of the
    full sort: the nucleus is drawn in vocabulary order as the whole distribution was."""
    config = SamplerConfig(**{"temperature": 0.8, **options})
    gen = torch.Generator().manual_seed(5)
    logits = torch.randn(2, 64, 500, generator=gen) * 3
    u = 1.0 - torch.rand(2, 64, generator=gen, dtype=torch.float64)
    first = sample_tokens(logits, config, u)
    assert torch.equal(first, sample_tokens(logits, config, u))
    warped = logits_warpers(config)(None, logits.reshape(-1, 500).float())
    cdf = torch.softmax(warped.double(), -1).cumsum(-1)
    full = torch.searchsorted(cdf, u.reshape(-1, 1) * cdf[:, -1:]).clamp_(max=499).reshape(2, 64)
    assert (first == full).float().mean() > 0.99  # equal up to float64 rounding at a CDF boundary
    assert torch.equal(sample_tokens(logits, SamplerConfig(temperature=0.0), u), logits.argmax(-1))


@pytest.mark.parametrize("top_k, top_p", [(0, 1.0), (3, 1.0), (40, 1.0), (0, 0.9), (40, 0.95)])
def test_min_p_keeps_what_transformers_keeps(top_k, top_p, top_p_path):
    """Min-p after top-k / top-p: the kept set of transformers' MinPLogitsWarper (which compares float32
    probabilities) on every row not left to it; rows left to it are those with a score within rounding of
    the floor, none here but the contrived one (unless top-k or top-p removed it already); the top token
    always stays."""
    gen = torch.Generator().manual_seed(11 + top_k)
    for min_p in (1e-4, 0.01, 0.05, 0.2, 0.5, 0.9):
        for v in (7, 150, 4096):
            scores = torch.randn(16, v, generator=gen) * (float(torch.rand(1, generator=gen)) * 6 + 0.1)
            scores[0, : v // 3] = float("-inf")  # forbidden tokens
            scores[1, 1] = scores[1].max() + math.log(min_p)  # a score right at the floor: left to transformers
            mask, tied = kept_tokens(scores, top_k, top_p, min_p)
            left = torch.zeros(16, dtype=torch.bool)
            left[tied] = True
            warped = TopKLogitsWarper(top_k)(None, scores.clone()) if top_k else scores.clone()
            warped = TopPLogitsWarper(top_p)(None, warped) if top_p < 1 else warped
            ref = MinPLogitsWarper(min_p)(None, warped) > float("-inf")
            rows = ~left & ~reference(scores, top_k, top_p)[1] if top_p < 1 else ~left  # nor a top-p cut within rounding
            assert int(rows.sum()) >= 12
            assert (left[1] or warped[1, 1] == float("-inf")) and not left[2:].any(), (min_p, v)  # or cut before
            assert torch.equal(mask[rows], ref[rows]), (min_p, v)
            assert mask[torch.arange(16), scores.argmax(-1)].all()
    with pytest.raises(ValueError, match="min_p must be in"):
        SamplerConfig(min_p=1.5)


def test_the_histogram_finds_wide_nuclei_exactly(top_p_path):
    """Flat distributions over 4,096 tokens (a weak model's): nuclei of thousands, found by a histogram
    with one bucket of dozens ranked, equal to transformers' kept set; also with a whole bucket's worth of
    scores crowded together (thousands of undecided tokens), and with one peaked row beside them."""
    gen = torch.Generator().manual_seed(7)
    scores = torch.randn(24, 4096, generator=gen) * 0.7
    scores[3, :100] = float("-inf")  # forbidden tokens
    scores[5] = torch.randn(4096, generator=gen) * 1e-3  # all within one bucket
    scores[6] = torch.randn(4096, generator=gen) * 4  # peaked
    for top_p in (0.3, 0.5, 0.9, 0.95, 0.999):
        mine, left = kept_mask(scores, 0, top_p)
        ref, near = reference(scores, 0, top_p)
        rows = ~left & ~near
        assert int(rows.sum()) >= 20
        assert not left.any()
        assert torch.equal(mine[rows], ref[rows]), top_p
        assert int(mine[rows].sum(-1).max()) > 1024  # wide indeed


@pytest.mark.parametrize("options", [dict(top_p=0.9), dict(min_p=0.05), dict(top_k=20), dict(top_p=0.5, min_p=0.2)])
def test_the_ends_of_the_cdf_draw_the_first_and_last_kept_tokens(options, top_p_path):
    """u at the top of (0, 1] draws each row's last kept token in vocabulary order, u near 0 its first,
    whatever rounding the block sums (NumPy) or the cumulative sum (torch) carry: never a dropped token."""
    config = SamplerConfig(**{"temperature": 1.0, **options})
    gen = torch.Generator().manual_seed(9)
    scores = torch.randn(40, 1000, generator=gen) * 2
    kept, tied = kept_tokens(scores, config.top_k, config.top_p, config.min_p)
    assert tied.numel() == 0
    ids = torch.arange(1000).expand(40, 1000)
    last = torch.where(kept, ids, -1).amax(-1)
    first = torch.where(kept, ids, 1000).amin(-1)
    for u, expected in ((1.0, last), (1e-300, first)):
        tokens = sample_tokens(scores.unsqueeze(0), config, torch.full((1, 40), u, dtype=torch.float64))[0]
        assert torch.equal(tokens, expected), u


def test_a_draw_where_block_sums_and_running_sums_disagree_still_lands_on_a_kept_token():
    """One probability near 1 and 62 near 2^-55 (each below half an ulp of 1, so a running float64 sum
    never moves, while summed among themselves first they do), the last token dropped: u = 1 must draw
    the last kept token however the block's total was summed."""
    from dlm.sampling import _draw_rows

    x = np.full((1, 64), -55 * math.log(2), dtype=np.float32)
    x[0, 0], x[0, 63] = 0.0, -np.inf
    top, cut = np.zeros((1, 1), dtype=np.float32), np.full((1, 1), -60.0, dtype=np.float32)
    weights = np.exp(x - top)
    assert _draw_rows(x, top, cut, np.array([1.0]), weights).tolist() == [62]
    assert _draw_rows(x, top, cut, np.array([0.5]), weights).tolist() == [0]
