"""Autoregressive generation through the same step interface as the diffusion sampler.

One token per step, left to right, with the model's KV cache (so each step costs one forward over a
single new position). Each step records the canvas with the new token, so AR and diffusion runs can
be streamed, rendered and raced alike. Unfilled slots hold -1.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator

import torch

from dlm.config import SamplerConfig
from dlm.generation import Generation, causal_canvas, forbidden_ids
from dlm.loading import LanguageModel
from dlm.sampling import forbid, row_uniforms, sample_tokens
from dlm.trace import Step


def cache_argument(model) -> str:
    """The keyword a causal LM takes its key/value cache by: `cache` since transformers 5 renamed it
    (`past_key_values` is deprecated there, to be removed in 5.40), `past_key_values` before that and in
    remote code that still uses it."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


class CausalGeneration(Generation):
    """An autoregressive run; see `dlm.stream` for how to start one."""

    def _run(self) -> Iterator[Step]:
        config, lm = self.config, self.lm
        device = lm.device
        canvas = self.initial.clone()  # (B, T) on CPU; -1 = not generated yet
        confidence = torch.zeros(canvas.shape, dtype=torch.float32)  # probability of each token when chosen
        num_rows, num_positions = canvas.shape
        start = int(self.canvas.fixed.sum())  # BOS + prompt come first
        forbidden = forbidden_ids(lm, config.allow_eos)
        eos = lm.eos_id
        ended = torch.zeros(num_rows, dtype=torch.bool)
        inputs = canvas[:, :start].to(device)  # the whole prompt first, then one token at a time
        past, nfe = None, 0
        cache_keyword = cache_argument(lm.model)
        # only the last position's logits are read: transformers' causal LMs project just that one (as
        # the masked sampler projects only its open positions); remote code without the keyword, all
        last_only = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(lm.model.forward).parameters else {}
        for index, position in enumerate(range(start, num_positions)):
            out = lm.model(input_ids=inputs, use_cache=True, **{cache_keyword: past}, **last_only)
            past, nfe = out.get("cache") or out.get("past_key_values"), nfe + 1
            logits = forbid(out.logits[:, -1:, :].float(), forbidden)  # (B, 1, V)
            draw = row_uniforms(self.generators, 1, device) if config.temperature > 0 else None
            token = sample_tokens(logits, config, draw)  # (B, 1)
            prob = torch.softmax(logits, dim=-1).gather(-1, token.unsqueeze(-1)).squeeze(-1)  # (B, 1)
            token, prob = token[:, 0].cpu(), prob[:, 0].float().cpu()
            canvas[:, position] = torch.where(ended, -1, token)  # rows that ended stay empty
            confidence[:, position] = torch.where(ended, 0.0, prob)
            committed = torch.zeros_like(canvas, dtype=torch.bool)
            committed[:, position] = ~ended
            yield Step(
                index=index,
                canvas=canvas.clone(),
                guess=canvas.clone(),
                confidence=confidence.clone(),
                committed=committed,
                nfe=nfe,
                elapsed=self._elapsed(),
            )
            if eos is not None:
                ended |= token == eos
                if ended.all():
                    break
                token = torch.where(ended, eos, token)
            inputs = token.unsqueeze(1).to(device)  # (B, 1)


def causal_stream(
    lm: LanguageModel,
    prompt: str = "",
    *,
    config: SamplerConfig | None = None,
    infill: str | None = None,
    fixed: dict[int, str | int] | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    **overrides,
) -> CausalGeneration:
    """`dlm.stream` for causal models (the front door dispatches here): continuation only."""
    config = (config or lm.settings).replace(**overrides)
    if infill is not None and prompt:
        raise ValueError("give either a prompt to continue or an infill template, not both")
    if infill is not None or fixed:
        raise ValueError("infilling and fixed tokens need a masked (diffusion) model; this one is causal")
    canvas = causal_canvas(lm, prompt, config.length)
    return CausalGeneration(lm, canvas, config, generator, seed, prompt)
