"""Masked diffusion on a causal LM's own architecture and weights, as Dream and DiffuLLaMA do it.

A causal LM becomes a masked-diffusion LM with two changes (Gong et al. 2025, "Scaling Diffusion
Language Models via Adaptation from Autoregressive Models"; Ye et al. 2025, "Dream 7B"):
1. attention is bidirectional, so every position sees the whole canvas (`make_bidirectional`);
2. each output keeps its old job of predicting the token *after* it, so the logits are shifted by one:
       logits[:, i] = output[:, i - 1]        (Dream: torch.cat([logits[:, :1], logits[:, :-1]], 1))
   and the pretrained head and most of what the causal model knew carry over.
Position 0 has no output before it, so it is never generated: every canvas starts with a given token
(BOS, a framing token or the prompt), and training never masks it.

`canvas_logits` is the one forward pass of every masked model in dlm: the sampler, the likelihood,
the key/value cache and the training loss all call it, so the shift lives here and nowhere else.
A checkpoint is shifted when its `dlm` block in config.json says `"shifted": true`.
"""

from __future__ import annotations

import torch

from dlm.config import SETTINGS_KEY

SHIFTED = "shifted"  # key in the `dlm` block: true when logits[:, i] comes from the output at i - 1
ATTENTION = "attention"  # key in the `dlm` block: "bidirectional" for a causal architecture with full attention
BIDIRECTIONAL = "bidirectional"
SETTINGS = {"kind": "masked", SHIFTED: True, ATTENTION: BIDIRECTIONAL}  # the `dlm` block of such a checkpoint


def from_causal_lm(model: torch.nn.Module) -> torch.nn.Module:
    """Turn a transformers causal LM into a shifted masked-diffusion model, in place: full attention,
    and a `dlm` block in its config saying so (read by `canvas_logits`, saved by `save_pretrained`,
    honoured by `dlm.load`). Its weights still need diffusion training to be any good at it."""
    make_bidirectional(model)
    setattr(model.config, SETTINGS_KEY, dict(SETTINGS))
    return model


def is_shifted(model: torch.nn.Module) -> bool:
    """Whether the model's prediction for position i is its output at position i - 1."""
    return bool((getattr(model.config, SETTINGS_KEY, None) or {}).get(SHIFTED, False))


def shift_logits(logits: torch.Tensor) -> torch.Tensor:
    """(B, T, V) -> (B, T, V): position i gets the output at i - 1; position 0 a copy of its own output
    (Dream's convention; no canvas asks for position 0)."""
    return torch.cat([logits[:, :1], logits[:, :-1]], dim=1)


def canvas_logits(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
    *,
    shifted: bool | None = None,
) -> torch.Tensor:
    """(B, T, V) logits in which [:, i] is the model's belief about the token at position i.

    input_ids: (B, T) a canvas with masks; attention_mask: (B, T) 1 for real tokens (or None);
    position_ids: (B, T), only when the ids are a slice of a longer canvas (the key/value cache);
    shifted: None reads it from the model's config (pass it for a wrapped model, e.g. DDP in training).
    A plain masked LM's logits come back as they are; a shifted model's are shifted by one.
    """
    extra = {} if position_ids is None else {"position_ids": position_ids}
    logits = model(input_ids=input_ids, attention_mask=attention_mask, **extra).logits
    return shift_logits(logits) if (is_shifted(model) if shifted is None else shifted) else logits


def make_bidirectional(model: torch.nn.Module) -> torch.nn.Module:
    """Give a transformers causal LM (GPT-2, Llama, Qwen2, ...) full attention, in place; no remote code.

    transformers decides causality in two places, so both are switched: the mask builder
    (`create_causal_mask` builds a bidirectional mask when `config.is_causal` is False; the flag is
    saved with the config) and the attention kernels (sdpa and flash attention fall back to each
    attention module's `is_causal` flag when no mask was built, which is whenever nothing is padded).
    """
    layers = attention_layers(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no attention layers with an `is_causal` flag: dlm can make "
                         "only transformers' own causal LMs bidirectional")
    for config in {id(c): c for c in (model.config, model.config.get_text_config())}.values():
        config.is_causal = False
    for layer in layers:
        layer.is_causal = False
    return model


def is_bidirectional(model: torch.nn.Module) -> bool:
    """True when `make_bidirectional` was applied: the config and every attention layer are non-causal."""
    layers = attention_layers(model)
    causal = getattr(model.config, "is_causal", True) or any(layer.is_causal for layer in layers)
    return bool(layers) and not causal


def attention_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The modules that carry transformers' `is_causal` flag (self- and cross-attention)."""
    return [m for m in model.modules() if isinstance(getattr(m, "is_causal", None), bool)]
