"""The diffusion training batch: mask each sample at its own rate, keep a random prefix clean.

Per sample b: a mask rate p_b = (1 - eps) t_b + eps with t_b stratified over the batch (MDLM's low-discrepancy sampler; i.i.d. as an option) (dlm.masking,
the same forward process the likelihood uses), or, as an option, one rate per batch drawn from a list
of discrete levels (the seed projects' recipe). For `prefix_fraction` of the samples a prefix of
random length stays unmasked and out of the loss, so the model learns to continue prompts of any
length. Padding is never masked and never scored, nor are the first `clean_start` positions of a row (a
shifted model's position 0). Each sample carries weight 1 / p_b (the ELBO) or 1.

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
    clean_start: int = 0  # leading positions never masked: 1 for a shifted model (its position 0 has no prediction)
    stratified: bool = True  # t spread evenly over the batch (MDLM's low-discrepancy sampler); False: i.i.d. t

    def __post_init__(self):
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"unknown weighting {self.weighting!r}; choose from {list(WEIGHTINGS)}")
        if not 0 < self.eps < 1:
            raise ValueError(f"eps must be in (0, 1), got {self.eps}")
        if not 0 <= self.prefix_fraction <= 1:
            raise ValueError(f"prefix_fraction must be in [0, 1], got {self.prefix_fraction}")
        if self.clean_start < 0:
            raise ValueError(f"clean_start must be >= 0, got {self.clean_start}")
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
            rates = mask_rates(b, self.eps, generator=g, stratified=self.stratified)  # (B,)
        # a clean prefix of 1..L-1 tokens for some samples
        has_prefix = torch.rand(b, generator=g) < self.prefix_fraction
        prefix_len = torch.randint(1, length, (b,), generator=g) * has_prefix
        given = torch.tensor([e.get("clean_prefix", 0) for e in examples])  # (B,) always clean
        prefix_len = torch.maximum(prefix_len, given).clamp(min=self.clean_start)
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


@dataclass
class ContinuousCollator:
    """A continuous-diffusion batch: the randomness of one training step of `dlm.continuous`.

    Per sample: a step t ~ U{1..T}, Gaussian noise (L, D), and which positions are given clean: a
    prefix of random length (`prefix_fraction` of samples), scattered tokens at a random rate up to
    one half (`infill_fraction`: in-painting), or none. For `cfg_dropout` of the samples with a prompt
    the given positions are withheld instead (classifier-free guidance's unconditional branch).
    `crop_fraction` of the batches are cut to a random length, so short canvases are not new to the
    model. Half the batches ask for self-conditioning.
    """

    embedding_dim: int  # D of the model
    num_steps: int = 1000  # T of the model's noise schedule
    prefix_fraction: float = 0.5  # samples whose prefix of 1..L-1 tokens is given (a prompt)
    infill_fraction: float = 0.1  # samples with scattered given tokens instead (infilling)
    cfg_dropout: float = 0.1  # samples with a prompt that have it withheld instead
    crop_fraction: float = 0.25  # batches cut to a random length in [min_length, L]
    min_length: int = 16  # shortest crop
    self_condition_rate: float = 0.5  # batches trained with a self-conditioning estimate
    seed: int | None = None  # fixes everything (evaluation); None draws fresh randomness every batch

    def __post_init__(self):
        for name in ("prefix_fraction", "infill_fraction", "cfg_dropout", "crop_fraction", "self_condition_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.prefix_fraction + self.infill_fraction > 1:
            raise ValueError("prefix_fraction + infill_fraction must be at most 1")
        self.reset()

    def reset(self) -> None:
        """Start the random stream again (a seeded collator then repeats its batches)."""
        self._generator = torch.Generator().manual_seed(self.seed) if self.seed is not None else None

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        from dlm.continuous import GENERATE, GIVEN, WITHHELD

        g = self._generator
        ids = torch.stack([torch.as_tensor(e["input_ids"]) for e in examples])  # (B, L): packed, no padding
        b, length = ids.shape
        if length > self.min_length and float(torch.rand(1, generator=g)) < self.crop_fraction:
            length = int(torch.randint(self.min_length, length + 1, (1,), generator=g))
            ids = ids[:, :length]
        mode = torch.rand(b, generator=g)  # < prefix: a prompt; < prefix + infill: scattered; else none
        prefix = mode < self.prefix_fraction
        scattered = ~prefix & (mode < self.prefix_fraction + self.infill_fraction)
        positions = torch.arange(length).unsqueeze(0)
        prefix_len = torch.randint(1, length, (b, 1), generator=g)
        given = prefix.unsqueeze(1) & (positions < prefix_len)
        rate = 0.5 * torch.rand(b, 1, generator=g)
        given |= scattered.unsqueeze(1) & (torch.rand(b, length, generator=g) < rate)
        given[given.all(dim=1)] = False  # always something to predict
        dropped = torch.rand(b, generator=g) < self.cfg_dropout
        segment = torch.full((b, length), GENERATE)
        segment[given] = GIVEN
        segment[given & dropped.unsqueeze(1)] = WITHHELD
        return {
            "input_ids": ids,
            "timesteps": torch.randint(1, self.num_steps + 1, (b,), generator=g),
            "noise": torch.randn(b, length, self.embedding_dim, generator=g),
            "segment": segment,
            "self_condition": torch.tensor(float(torch.rand(1, generator=g)) < self.self_condition_rate),
        }
