"""The Monte-Carlo masked ELBO and the exact causal log-likelihood."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import dlm
from dlm.generation import encode, special_framing
from dlm.likelihood import elbo_estimates
from dlm.masking import mask_by_count, mask_by_rate, mask_rates, stratified_counts, tiled_masks


def test_uniform_logits_elbo_is_minus_L_log_V(uniform):
    text = "the cat sat on the mat"
    length = len(encode(uniform.tokenizer, text))
    vocab = uniform.model.config.vocab_size
    result = dlm.log_likelihood(uniform, text, num_samples=16)
    assert result.num_tokens == length
    assert result.log_likelihood == pytest.approx(-length * math.log(vocab), rel=1e-6)
    assert result.stderr == pytest.approx(0.0, abs=1e-6)
    assert result.perplexity == pytest.approx(vocab, rel=1e-5)
    with_prompt = dlm.log_likelihood(uniform, " on the mat", prompt="the cat sat", num_samples=8)
    assert with_prompt.num_tokens == len(encode(uniform.tokenizer, " on the mat"))


def test_elbo_estimator_is_unbiased(roberta):
    """The Monte-Carlo mean matches the exact expectation over every mask pattern (L = 3)."""
    text = "the cat"
    target = encode(roberta.tokenizer, text)
    length = len(target)
    assert 2 <= length <= 4
    prefix, suffix = special_framing(roberta.tokenizer)
    ids = torch.tensor(prefix + target + suffix)
    positions = list(range(len(prefix), len(prefix) + length))
    exact = 0.0
    for l in range(1, length + 1):  # l ~ U{1..L}, then a uniform subset of size l
        subsets = list(itertools.combinations(positions, l))
        masks = torch.zeros(len(subsets), len(ids), dtype=torch.bool)
        for row, subset in enumerate(subsets):
            masks[row, list(subset)] = True
        exact += float(elbo_estimates(roberta, ids, masks, length).mean()) / length
    estimate = dlm.log_likelihood(roberta, text, num_samples=2000, batch_size=500, seed=0)
    assert abs(estimate.log_likelihood - exact) < 4 * estimate.stderr + 1e-6
    assert estimate.stderr > 0 and estimate.nfe == 2000


def test_causal_log_likelihood_is_exact(gpt2):
    prompt, text = "the cat", " sat on the mat"
    context, target = encode(gpt2.tokenizer, prompt), encode(gpt2.tokenizer, text)
    ids = torch.tensor([[gpt2.bos_id] + context + target])
    with torch.no_grad():
        logp = torch.log_softmax(gpt2.model(ids).logits[0].double(), -1)
    expected = sum(float(logp[i - 1, ids[0, i]]) for i in range(ids.shape[1] - len(target), ids.shape[1]))
    result = dlm.log_likelihood(gpt2, text, prompt=prompt)
    assert result.exact and result.stderr == 0 and result.num_tokens == len(target)
    assert result.log_likelihood == pytest.approx(expected, abs=1e-4)


def test_empty_text_is_an_error(roberta):
    with pytest.raises(ValueError, match="empty"):
        dlm.log_likelihood(roberta, "   ")


def test_masking_process():
    g = torch.Generator().manual_seed(0)
    rates = mask_rates(1000, eps=1e-3, generator=g)
    assert rates.min() > 1e-3 - 1e-9 and rates.max() <= 1.0
    # stratified: one rate in each 1/n stratum
    strata = ((rates - 1e-3) / (1 - 1e-3) * 1000).ceil().long().clamp(1, 1000)
    assert sorted(strata.tolist()) == list(range(1, 1001))
    ids = torch.arange(40).repeat(1000, 1)
    maskable = torch.ones_like(ids, dtype=torch.bool)
    maskable[:, :5] = False
    noisy, masked = mask_by_rate(ids, maskable, rates, mask_id=-7, generator=g)
    assert not masked[:, :5].any() and ((noisy == -7) == masked).all()
    observed = masked[:, 5:].float().mean(1)
    assert torch.corrcoef(torch.stack([observed, rates]))[0, 1] > 0.95
    counts = stratified_counts(8, 5, g)
    assert counts.min() >= 1 and counts.max() <= 5
    chosen = mask_by_count(maskable[:8], counts, g)
    assert torch.equal(chosen.sum(1), counts) and not chosen[:, :5].any()


def test_tiled_masks_cover_positions_evenly_and_each_row_is_a_uniform_subset():
    from scipy.stats import chisquare

    g = torch.Generator().manual_seed(0)
    for length, n in [(5, 8), (13, 4), (40, 16), (1, 3)]:
        counts = stratified_counts(n, length, g)
        masks = tiled_masks(counts, length, g)
        assert torch.equal(masks.sum(1), counts)
        coverage = masks.sum(0)
        assert int(coverage.max() - coverage.min()) <= 1 and int(coverage.sum()) == int(counts.sum())
    # each row alone: every subset of its size equally likely (what mask_by_count draws)
    counts = torch.tensor([2, 3, 1, 4])
    seen = [dict() for _ in counts]
    for _ in range(6000):
        for j, row in enumerate(tiled_masks(counts, 5, g)):
            key = tuple(row.tolist())
            seen[j][key] = seen[j].get(key, 0) + 1
    for j, c in enumerate(counts.tolist()):
        assert len(seen[j]) == math.comb(5, c)
        if len(seen[j]) > 1:
            assert chisquare(list(seen[j].values())).pvalue > 1e-3
