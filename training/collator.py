"""The diffusion training batch: mask each sample at its own rate, keep a random prefix clean.

Per sample b: a mask rate p_b = (1 - eps) t_b + eps with t_b stratified over the batch (dlm.masking,
the same forward process the likelihood uses), or, as an option, one rate per batch drawn from a list
of discrete levels (the seed projects' recipe). For `prefix_fraction` of the samples a prefix of
random length stays unmasked and out of the loss, so the model learns to continue prompts of any
length. Padding is never masked and never scored. Each sample carries weight 1 / p_b (the ELBO) or 1.

An example may also carry `clean_prefix` / `clean_suffix` token counts that are never masked (a
class-conditional model's label prompt and the tokenizer's framing), so the loss is an ELBO of the
text given its prompt: exactly what `dlm.classify` scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dlm.masking import mask_by_rate, mask_rates

WEIGHTINGS = ("elbo", "uniform")


@dataclass
class DiffusionCollator:
    mask_id: int  # the tokenizer's mask token id
    pad_id: int  # the tokenizer's pad token id (never masked, never in the loss)
    eps: float = 1e-3  # smallest mask rate: p = (1 - eps) t + eps
    weighting: str = "elbo"  # "elbo": weight 1/p (a bound on the NLL); "uniform": plain masked CE
    prefix_fraction: float = 0.3  # share of samples that keep a clean prompt prefix of random length
    levels: tuple[float, ...] | None = None  # if set: one rate per batch from these (seed projects' recipe)
    seed: int | None = None  # fixes the masks (evaluation); None draws fresh masks every batch

    def __post_init__(self):
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"unknown weighting {self.weighting!r}; choose from {list(WEIGHTINGS)}")
        if not 0 < self.eps < 1:
            raise ValueError(f"eps must be in (0, 1), got {self.eps}")
        if not 0 <= self.prefix_fraction <= 1:
            raise ValueError(f"prefix_fraction must be in [0, 1], got {self.prefix_fraction}")
        if self.levels is not None and not all(0 < level <= 1 for level in self.levels):
            raise ValueError(f"mask levels must be in (0, 1], got {self.levels}")
        self.reset()

    def reset(self) -> None:
        """Start the random stream again (a seeded collator then repeats its masks)."""
        self._generator = torch.Generator().manual_seed(self.seed) if self.seed is not None else None

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        ids = _pad([torch.as_tensor(e["input_ids"]) for e in examples], self.pad_id)  # (B, L)
        g = self._generator
        b, length = ids.shape
        not_pad = ids != self.pad_id
        if self.levels is not None:
            level = self.levels[int(torch.randint(len(self.levels), (1,), generator=g))]
            rates = torch.full((b,), float(level))
        else:
            rates = mask_rates(b, self.eps, generator=g)  # (B,)
        # a clean prefix of 1..L-1 tokens for some samples
        has_prefix = torch.rand(b, generator=g) < self.prefix_fraction
        prefix_len = torch.randint(1, length, (b,), generator=g) * has_prefix
        given = torch.tensor([e.get("clean_prefix", 0) for e in examples])  # (B,) always clean
        prefix_len = torch.maximum(prefix_len, given)
        suffix_start = not_pad.sum(dim=1) - torch.tensor([e.get("clean_suffix", 0) for e in examples])  # (B,)
        positions = torch.arange(length).unsqueeze(0)
        in_prefix = (positions < prefix_len.unsqueeze(1)) | (positions >= suffix_start.unsqueeze(1))
        maskable = not_pad & ~in_prefix
        noisy, masked = mask_by_rate(ids, maskable, rates, self.mask_id, generator=g)
        labels = ids.masked_fill(~masked, -100)
        weights = 1.0 / rates if self.weighting == "elbo" else torch.ones(b)
        return {
            "input_ids": noisy,
            "attention_mask": not_pad.long(),
            "labels": labels,
            "loss_weight": weights,  # (B,)
            "mask_rate": rates,  # (B,) for per-bucket logging
            "num_scored": maskable.sum(),  # tokens the ELBO covers: the normaliser of the loss
        }


@dataclass
class CausalCollator:
    """Right-padded next-token batches; `labels` is -100 on padding and on each example's clean prefix."""

    pad_id: int

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        ids = _pad([torch.as_tensor(e["input_ids"]) for e in examples], self.pad_id)  # (B, L)
        lengths = torch.tensor([len(e["input_ids"]) for e in examples])
        positions = torch.arange(ids.shape[1]).unsqueeze(0)
        real = positions < lengths.unsqueeze(1)
        given = torch.tensor([e.get("clean_prefix", 0) for e in examples]).unsqueeze(1)
        labels = ids.masked_fill(~real | (positions < given), -100)
        return {"input_ids": ids, "attention_mask": real.long(), "labels": labels}


@dataclass
class LabelCollator:
    """Right-padded batches with one class index per example (a sequence-classification head)."""

    pad_id: int

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        ids = _pad([torch.as_tensor(e["input_ids"]) for e in examples], self.pad_id)
        lengths = torch.tensor([len(e["input_ids"]) for e in examples])
        real = torch.arange(ids.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)
        return {"input_ids": ids, "attention_mask": real.long(), "labels": torch.tensor([e["label"] for e in examples])}


def _pad(rows: list[torch.Tensor], pad_id: int) -> torch.Tensor:
    length = max(len(r) for r in rows)
    out = torch.full((len(rows), length), pad_id, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out
