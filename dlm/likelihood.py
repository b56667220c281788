"""Log-likelihood of a text: exact for causal models, a Monte-Carlo ELBO for masked ones.

Both score the same tokens (the text, given an optional prompt) in nats, so the two families give
comparable perplexities when they share a tokenizer. The masked estimate is LLaDA's
`get_log_likelihood`: the number of masked tokens l is stratified across samples and each sample's
log-probability of its masked tokens is weighted by L / l (= 1 / p_mask).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from dlm.families import family
from dlm.generation import encode, special_framing, start_ids
from dlm.loading import LanguageModel
from dlm.masking import mask_by_count, stratified_counts
from dlm.shifted import canvas_logits


@dataclass(frozen=True)
class Likelihood:
    log_likelihood: float  # nats: log p(text | prompt), or its ELBO lower bound for masked models
    num_tokens: int  # tokens scored
    stderr: float  # Monte-Carlo standard error of log_likelihood (0 when exact)
    num_samples: int  # Monte-Carlo samples (1 when exact)
    nfe: int  # forward passes spent
    exact: bool  # True for causal models

    @property
    def per_token(self) -> float:
        return self.log_likelihood / self.num_tokens

    @property
    def perplexity(self) -> float:
        return math.exp(-self.per_token)

    def to_dict(self) -> dict:
        return {
            "log_likelihood": self.log_likelihood,
            "nats_per_token": self.per_token,
            "perplexity": self.perplexity,
            "stderr": self.stderr,
            "num_tokens": self.num_tokens,
            "num_samples": self.num_samples,
            "nfe": self.nfe,
            "exact": self.exact,
        }


def log_likelihood(
    lm: LanguageModel,
    text: str,
    prompt: str = "",
    *,
    num_samples: int = 64,
    batch_size: int = 32,
    generator: torch.Generator | None = None,
    seed: int | None = 0,
) -> Likelihood:
    """Score `text` (given `prompt`) under a masked model (ELBO) or a causal one (exact).

    Args:
        num_samples, batch_size: Monte-Carlo samples for masked models, and how many per forward.
        generator / seed: the masks' randomness (a fixed seed by default, so scores repeat).
    """
    if not text or not text.strip():
        raise ValueError("text to score is empty")
    return family(lm.kind).score_function()(lm, text, prompt, num_samples=num_samples, batch_size=batch_size,
                                            generator=generator, seed=seed)


def masked_log_likelihood(
    lm: LanguageModel,
    text: str,
    prompt: str = "",
    *,
    num_samples: int = 64,
    batch_size: int = 32,
    generator: torch.Generator | None = None,
    seed: int | None = 0,
) -> Likelihood:
    """`log_likelihood` for masked models (the front door dispatches here): the Monte-Carlo ELBO."""
    target = encode(lm.tokenizer, text)
    context = encode(lm.tokenizer, prompt)
    if generator is None:
        generator = torch.Generator().manual_seed(seed if seed is not None else torch.seed())
    prefix, suffix = special_framing(lm.tokenizer)
    if lm.shifted and not prefix + context:
        prefix = start_ids(lm)  # a shifted model has no prediction for position 0, so it must be given
    ids = torch.tensor(prefix + context + target + suffix)
    scored = torch.zeros(len(ids), dtype=torch.bool)
    scored[len(prefix) + len(context) : len(prefix) + len(context) + len(target)] = True
    _check_length(lm, len(ids))
    counts = stratified_counts(num_samples, len(target), generator)
    masked = mask_by_count(scored.expand(num_samples, -1), counts, generator)
    estimates = elbo_estimates(lm, ids, masked, len(target), batch_size)
    mean = float(estimates.mean())
    stderr = float(estimates.std() / math.sqrt(num_samples)) if num_samples > 1 else float("nan")
    return Likelihood(mean, len(target), stderr, num_samples, num_samples, exact=False)


def causal_log_likelihood(lm: LanguageModel, text: str, prompt: str = "", **_sampling) -> Likelihood:
    """`log_likelihood` for causal models (the front door dispatches here): exact, one forward pass.
    The Monte-Carlo arguments (`num_samples`, `seed`, ...) mean nothing here and are ignored."""
    return exact_log_likelihood(lm, encode(lm.tokenizer, prompt), encode(lm.tokenizer, text))


def elbo_estimates(
    lm: LanguageModel, ids: torch.Tensor, masked: torch.Tensor, num_scored: int, batch_size: int = 32
) -> torch.Tensor:
    """One unbiased ELBO estimate per mask pattern: L / l * sum of log p(x_i | x_masked) over masked i.

    ids: (T,) the clean canvas; masked: (n, T) bool, row j masking l_j >= 1 of the L = `num_scored`
    scored positions. The caller draws the masks, so the same ones can be reused across models or
    classes (common random numbers). Returns (n,) float64, nats.
    """
    num_masked = masked.sum(dim=1)  # (n,) l_j
    if (num_masked == 0).any():
        raise ValueError("every mask pattern must mask at least one position")
    device = lm.device
    sums = []
    with torch.inference_mode():
        for rows in masked.split(batch_size):
            rows = rows.to(device)
            clean = ids.to(device).expand(rows.shape[0], -1)  # (b, T)
            noisy = clean.masked_fill(rows, lm.mask_id)
            logits = canvas_logits(lm.model, noisy, torch.ones_like(noisy)).float()  # (b, T, V)
            logp = torch.log_softmax(logits, dim=-1).gather(-1, clean.unsqueeze(-1)).squeeze(-1)  # (b, T)
            sums.append((logp * rows).sum(dim=1).double().cpu())  # (b,)
    return torch.cat(sums) * num_scored / num_masked.double()


def exact_log_likelihood(lm: LanguageModel, context: list[int], target: list[int]) -> Likelihood:
    """Exact sum of log p(x_i | x_<i) over the target tokens, after BOS and the context."""
    prefix = [lm.bos_id] if lm.bos_id is not None and context[:1] != [lm.bos_id] else []  # never a second BOS
    ids = prefix + context + target
    if len(prefix + context) == 0:
        raise ValueError("this causal model has no BOS token, so the first token cannot be scored without a prompt")
    _check_length(lm, len(ids))
    inputs = torch.tensor([ids], device=lm.device)
    with torch.inference_mode():
        logits = lm.model(input_ids=inputs).logits.float()[0, :-1]  # (T-1, V): predicts ids[1:]
    logp = torch.log_softmax(logits, dim=-1).gather(-1, inputs[0, 1:].unsqueeze(-1)).squeeze(-1)
    total = float(logp[-len(target) :].double().sum())
    return Likelihood(total, len(target), 0.0, 1, 1, exact=True)


def _check_length(lm: LanguageModel, length: int) -> None:
    limit = lm.max_positions
    if limit is not None and length > limit:
        raise ValueError(f"prompt and text need {length} positions, but the model has {limit}")
