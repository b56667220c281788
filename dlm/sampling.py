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
    inverse CDF in float64 (low-precision sampling distorts the tail, as LLaDA notes for Gumbel-max).
    """
    if config.temperature == 0:
        return logits.argmax(dim=-1)
    b, t, v = logits.shape
    warped = logits_warpers(config)(None, logits.reshape(b * t, v).float())
    probs = torch.softmax(warped.double(), dim=-1)  # (B*T, V)
    cdf = probs.cumsum(dim=-1)
    target = uniforms.reshape(b * t, 1) * cdf[:, -1:]  # scale by the total to absorb rounding
    tokens = torch.searchsorted(cdf, target).clamp_(max=v - 1)  # first index with cdf >= target
    return tokens.reshape(b, t)


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
