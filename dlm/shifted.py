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

import threading

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
    rows: torch.Tensor | None = None,
) -> torch.Tensor:
    """(B, T, V) logits in which [:, i] is the model's belief about the token at position i.

    input_ids: (B, T) a canvas with masks; attention_mask: (B, T) 1 for real tokens (or None);
    position_ids: (B, T), only when the ids are a slice of a longer canvas (the key/value cache);
    shifted: None reads it from the model's config (pass it for a wrapped model, e.g. DDP in training).
    A plain masked LM's logits come back as they are; a shifted model's are shifted by one.
    rows: (B, T) bool, the positions whose logits are wanted: then (M, V), theirs in row-major order,
    with the vocabulary projection (`model.get_output_embeddings()`, a fifth of a small model's
    forward) run on those positions only, where a sampler's step reads nothing else.
    """
    extra = {} if position_ids is None else {"position_ids": position_ids}
    shift = is_shifted(model) if shifted is None else shifted
    head = None if rows is None else output_layer(model)
    if head is None:
        logits = model(input_ids=input_ids, attention_mask=attention_mask, **extra).logits
        logits = shift_logits(logits) if shift else logits
        return logits if rows is None else logits[rows]
    b, t = rows.shape
    index = rows.flatten().nonzero().flatten()  # the wanted positions, flat
    if shift:  # position i reads output i - 1 (position 0 its own)
        index = torch.where(index % t > 0, index - 1, index)
    _install_gather(head)
    _GATHER.want, _GATHER.gathered = (head, b * t, index), False
    try:
        logits = model(input_ids=input_ids, attention_mask=attention_mask, **extra).logits
    finally:
        _GATHER.want = None
    if not _GATHER.gathered:  # the head saw something else than one hidden state per position: take them all
        logits = shift_logits(logits) if shift else logits
        return logits[rows]
    return logits.reshape(-1, logits.shape[-1])


_GATHER = threading.local()  # this thread's request: (head, positions, flat index), or None
_INSTALL = threading.Lock()


def output_layer(model: torch.nn.Module) -> torch.nn.Module | None:
    """The model's projection to the vocabulary (`get_output_embeddings()`), or None where it has none
    (remote code may not say)."""
    try:
        head = model.get_output_embeddings()
    except (AttributeError, NotImplementedError):
        return None
    return head if isinstance(head, torch.nn.Module) else None


def prepare_rows(model: torch.nn.Module) -> None:
    """Install `canvas_logits`' row hook ahead of time (`dlm.load` does for masked models), so that a
    model shared by threads never gains a hook while another thread runs it."""
    head = output_layer(model)
    if head is not None:
        _install_gather(head)


def _install_gather(head: torch.nn.Module) -> None:
    """Give an output projection, once, the forward pre-hook that keeps only the hidden states the current
    thread asked for. Installed for good and answering to a thread-local request, so that the app's
    threads generating with one model at once never see (or mutate) each other's hooks."""
    with _INSTALL:
        if not getattr(head, "_dlm_gather", False):
            head.register_forward_pre_hook(_gather)
            head._dlm_gather = True


def _gather(module: torch.nn.Module, args: tuple) -> tuple | None:
    want = getattr(_GATHER, "want", None)
    if want is None or want[0] is not module:
        return None
    _, positions, index = want
    hidden = args[0]
    if hidden.dim() < 2 or hidden.shape[:-1].numel() != positions:
        return None
    _GATHER.want, _GATHER.gathered = None, True  # once per forward
    return (hidden.reshape(positions, -1).index_select(0, index).unsqueeze(0), *args[1:])


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
