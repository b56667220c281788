"""The forward (masking) process of masked diffusion, shared by training and the likelihood.

At noise level t a token is replaced by [MASK] with probability p_mask(t) = (1 - eps) t + eps
(LLaDA; MDLM's linear schedule), independently per position. The likelihood uses the same process
with the number of masked tokens l drawn instead of t (LLaDA's estimator), which has lower variance:
    log p(x) >= E_l [ L / l * sum_{i masked} log p(x_i | x_masked) ],  l ~ U{1..L}.
"""

from __future__ import annotations

import torch


def mask_rates(n: int, eps: float, generator: torch.Generator | None = None, stratified: bool = True) -> torch.Tensor:
    """(n,) masking probabilities in (eps, 1]: p = (1 - eps) t + eps with t in (0, 1].

    Stratified: t_i = 1 - ((u + i / n) mod 1), one uniform shared by the batch, so the batch covers
    the noise levels evenly (MDLM's low-discrepancy sampler) and the loss varies less.
    """
    if stratified:
        u = (torch.rand(1, generator=generator) + torch.arange(n) / n) % 1.0
    else:
        u = torch.rand(n, generator=generator)
    t = 1.0 - u  # in (0, 1]
    return (1.0 - eps) * t + eps


def mask_by_rate(
    ids: torch.Tensor, maskable: torch.Tensor, rates: torch.Tensor, mask_id: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask each maskable position of row b with probability rates[b].

    ids, maskable: (B, L); rates: (B,). Returns (noisy ids, masked) both (B, L).
    """
    draw = torch.rand(ids.shape, generator=generator).to(ids.device)
    masked = (draw < rates.to(ids.device).unsqueeze(1)) & maskable
    return ids.masked_fill(masked, mask_id), masked


def stratified_counts(n: int, length: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(n,) numbers of tokens to mask, spread evenly over 1..length from one random offset (LLaDA)."""
    k = int(torch.randint(1, length + 1, (1,), generator=generator))
    x = torch.round(torch.linspace(float(k), k + (n - 1) * (length / n), steps=n)).long()
    return (x - 1) % length + 1


def mask_by_count(
    maskable: torch.Tensor, counts: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Exactly counts[b] maskable positions of row b, chosen uniformly at random. (B, L) bool."""
    draw = torch.rand(maskable.shape, generator=generator).masked_fill(~maskable.cpu(), 2.0)
    ranks = draw.argsort(dim=1).argsort(dim=1)  # rank of each position in a random order
    return ((ranks < counts.unsqueeze(1)) & maskable.cpu()).to(maskable.device)


def tiled_masks(counts: torch.Tensor, length: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(n, length) bool: row j masks exactly counts[j] positions, the rows laid end to end on one random
    circular order of the positions, so together they cover every position almost equally often.

    Row j takes the counts[j] positions that follow row j - 1's on a uniformly random cyclic order that
    starts at a random point. Any fixed stretch of a uniformly random order is a uniformly random
    subset, so each row alone is distributed exactly as `mask_by_count` draws it (the ELBO estimate of
    every row stays unbiased); jointly, each position is masked sum(counts) / length times, to within
    one, instead of a binomial number of times. That stratifies the estimate over positions as
    `stratified_counts` stratifies it over mask counts: a token the model finds hard is never left out
    of, or piled into, a text's samples by chance.
    """
    order = torch.randperm(length, generator=generator)
    start = int(torch.randint(length, (1,), generator=generator))
    offsets = start + torch.cumsum(counts, 0) - counts  # where each row's run begins on the circle
    steps = (offsets.unsqueeze(1) + torch.arange(length)) % length  # (n, length): a full turn from there
    chosen = torch.arange(length) < counts.unsqueeze(1)  # the first counts[j] of that turn
    masks = torch.zeros(len(counts), length, dtype=torch.bool)
    return masks.scatter_(1, order[steps], chosen)
