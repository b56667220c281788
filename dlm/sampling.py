"""Token sampling and position scoring, shared by the masked and the causal sampler.

Randomness: every sample (row) has its own `torch.Generator`, seeded from the caller's generator in
row order, and draws only a few uniforms per position per step. Row b therefore sees the same random
numbers whatever the batch size, so the same seed gives the same text at batch size 1 and 8.
Sampling is by inverse CDF (one uniform per position), which also keeps the random stream small.
"""

from __future__ import annotations

import torch
from transformers.generation.logits_process import (
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from dlm.config import REMASKING, SamplerConfig


def row_generators(generator: torch.Generator | None, seed: int | None, num_rows: int) -> list[torch.Generator]:
    """One CPU generator per row. Row b's seed is the b-th draw from the base generator (or `seed`)."""
    if generator is None:
        generator = torch.Generator().manual_seed(seed if seed is not None else torch.seed())
    seeds = [int(torch.randint(0, 2**62, (1,), generator=generator)) for _ in range(num_rows)]
    return [torch.Generator().manual_seed(s) for s in seeds]


def row_uniforms(generators: list[torch.Generator], n: int, device: torch.device) -> torch.Tensor:
    """(B, n) uniforms in (0, 1], row b drawn from generators[b]."""
    u = torch.stack([1.0 - torch.rand(n, generator=g, dtype=torch.float64) for g in generators])
    return u.to(device)


def logits_warpers(config: SamplerConfig) -> LogitsProcessorList:
    """transformers' own warpers for temperature, top-k and top-p, applied in that order."""
    warpers = LogitsProcessorList()
    if config.temperature > 0 and config.temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(config.temperature))
    if config.top_k > 0:
        warpers.append(TopKLogitsWarper(config.top_k))
    if config.top_p < 1.0:
        warpers.append(TopPLogitsWarper(config.top_p))
    return warpers


def sample_tokens(logits: torch.Tensor, config: SamplerConfig, uniforms: torch.Tensor | None) -> torch.Tensor:
    """Draw one token per position.

    logits: (B, T, V); uniforms: (B, T) in (0, 1], unused when greedy. Returns (B, T) long.
    Greedy (temperature 0) takes the argmax; otherwise the warped distribution is sampled by
    inverse CDF in float64 (low-precision sampling distorts the tail, as LLaDA notes for Gumbel-max),
    over the kept tokens in vocabulary order: the token the full warped distribution would give.

    Temperature is one division; top-k and top-p never sort the vocabulary: `support` finds the kept
    tokens by partial selection (`torch.topk`), the same set as transformers' warpers
    (`logits_warpers`), which still decide the rare rows whose cut-off splits a group of tied logits.
    """
    if config.temperature == 0:
        return logits.argmax(dim=-1)
    b, t, v = logits.shape
    scores = logits.reshape(b * t, v).float()
    if config.temperature != 1.0:
        scores = scores / config.temperature  # as TemperatureLogitsWarper, in float32
    u = uniforms.reshape(b * t, 1)
    if config.top_k <= 0 and config.top_p >= 1.0:
        return _inverse_cdf(scores, u).reshape(b, t)
    tokens = torch.empty(b * t, dtype=torch.long, device=logits.device)
    groups, tied = support(scores, config.top_k, config.top_p)
    for rows, index, size in groups:
        kept = index[:, : int(size.max())]  # (R, K) the most likely tokens, descending
        in_nucleus = torch.arange(kept.shape[1], device=kept.device) < size.unsqueeze(1)
        order = kept.masked_fill(~in_nucleus, v).argsort(dim=-1)  # the nucleus in vocabulary order, first
        ids = kept.gather(1, order)
        cand = scores[rows].gather(1, ids).masked_fill_(~in_nucleus.gather(1, order), float("-inf"))
        tokens[rows] = ids.gather(1, _inverse_cdf(cand, u[rows]).unsqueeze(1)).squeeze(1)
    if tied.numel():  # the cut-off splits tied logits: transformers' own warpers pick which stay
        warped = logits_warpers(config)(None, logits.reshape(b * t, v)[tied].float())
        tokens[tied] = _inverse_cdf(warped, u[tied])
    return tokens.reshape(b, t)


def _inverse_cdf(scores: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """(N,) the first index where the float64 CDF of softmax(scores (N, K)) reaches u (N, 1) in (0, 1]."""
    cdf = torch.softmax(scores.double(), dim=-1).cumsum(dim=-1)
    target = u * cdf[:, -1:]  # scale by the total to absorb rounding
    return torch.searchsorted(cdf, target).clamp_(max=scores.shape[-1] - 1).squeeze(1)


def support(
    scores: torch.Tensor, top_k: int, top_p: float, start: int = 64
) -> tuple[list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], torch.Tensor]:
    """The tokens that top-k then top-p keep, found by partial selection instead of a full sort.

    scores: (N, V) float32, after temperature. The rule of transformers' TopKLogitsWarper (keep every
    score >= the k-th largest) then TopPLogitsWarper (drop the tokens whose ascending cumulative
    probability is <= 1 - top_p, keeping at least one). Equivalently the nucleus is the n most
    likely tokens, n the number of ranks whose strictly more likely tokens hold < top_p, at least 1.
    Without top-k, `torch.topk` starts at `start` tokens and doubles only for the rows whose
    candidates still fall short of the nucleus, so usually one small selection does.

    Returns (groups, tied). Each group is (rows (R,), index (R, K), size (R,)): row rows[i] keeps
    index[i, :size[i]], its most likely tokens in descending order. tied (M,) are the rows whose
    cut-off falls inside a group of equal scores: which of them stay is the order of transformers'
    sort to decide, so they are left to its warpers.
    """
    n_rows, v = scores.shape
    device = scores.device
    rows = torch.arange(n_rows, device=device)
    tied, groups = [], []
    if 0 < top_k < v:
        vals, idx = scores.topk(top_k + 1, dim=-1)  # one beyond, to see a tie across the cut
        split = vals[:, top_k] == vals[:, top_k - 1]
        tied.append(rows[split])
        rows, vals, idx = rows[~split], vals[~split, :top_k], idx[~split, :top_k]
        if top_p >= 1.0:
            return [(rows, idx, torch.full_like(rows, top_k))], torch.cat(tied)
        log_z = torch.logsumexp(vals.double(), dim=-1, keepdim=True)  # top-k renormalises over its k
        candidates = [(rows, vals, idx, log_z)]
    else:
        if top_p >= 1.0:  # nothing is removed (the warper also drops probabilities that underflow to 0)
            return [(rows, torch.arange(v, device=device).expand(n_rows, v), torch.full_like(rows, v))], rows[:0]
        top = scores.amax(dim=-1, keepdim=True)  # (N, 1) log normaliser: one pass, no sort, float64 sum
        log_z = top.double() + (scores - top).exp_().sum(-1, keepdim=True, dtype=torch.float64).log_()
        candidates = None
    k = min(start, v)
    while rows.numel():
        if candidates is None:
            vals, idx = scores[rows].topk(k, dim=-1)
            lz = log_z[rows]
        else:
            (rows, vals, idx, lz), = candidates
            k = vals.shape[1]
        probs = torch.exp(vals.double() - lz)  # (R, k) descending
        above = probs.cumsum(-1) - probs  # mass of the strictly more likely ranks
        size = (above < top_p).sum(-1).clamp_(min=1)  # (R,) the nucleus size, if it fits in k
        done = (size < k) | (k == v) | (candidates is not None)  # size < k: rank `size` shows a tie
        last = vals.gather(1, (size - 1).unsqueeze(1)).squeeze(1)
        after = vals.gather(1, size.clamp(max=k - 1).unsqueeze(1)).squeeze(1)
        split = done & (size < k) & (after == last)
        tied.append(rows[split])
        ok = done & ~split
        groups.append((rows[ok], idx[ok], size[ok]))
        rows, k = rows[~done], min(2 * k, v)
        if candidates is not None:
            break
    return [g for g in groups if g[0].numel()], torch.cat(tied)


def position_scores(
    probs: torch.Tensor, tokens: torch.Tensor, remasking: str, uniforms: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """How much each position deserves to be committed now (higher first), and its confidence.

    probs: (B, T, V) the model's distribution; tokens: (B, T) the sampled guesses.
    Returns (score, confidence), both (B, T); confidence is the probability of the guess.
    """
    confidence = probs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)  # (B, T)
    if remasking == "low_confidence":
        score = confidence
    elif remasking == "margin":
        top2 = probs.topk(2, dim=-1).values  # (B, T, 2)
        score = top2[..., 0] - top2[..., 1]
    elif remasking == "entropy":
        score = (probs * probs.clamp_min(1e-30).log()).sum(-1)  # negative entropy
    elif remasking == "random":
        if uniforms is None:
            raise ValueError("random remasking needs uniforms")
        score = uniforms.to(probs.dtype)
    else:
        raise ValueError(f"unknown remasking {remasking!r}; choose from {sorted(REMASKING)}")
    return score, confidence


def forbid(logits: torch.Tensor, token_ids: list[int]) -> torch.Tensor:
    """Set the logits of `token_ids` to -inf in place: they can never be sampled."""
    if token_ids:
        logits[..., token_ids] = float("-inf")
    return logits
