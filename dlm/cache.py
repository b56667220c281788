"""Approximate key/value caching for bidirectional (masked) models, in the spirit of Fast-dLLM.

A masked model attends over the whole canvas, so no key or value is final until the last step.
Fast-dLLM (Wu et al., 2025) observes that they change little within a semi-autoregressive block:
run the whole canvas once when a block starts, keep every layer's keys and values, and for the
rest of the block feed only the block's positions, whose queries attend over the kept keys and
values with the block's own fresh ones spliced in. "prefix" feeds the block and everything right
of it (only the keys left of the block are reused); "dual" feeds the block alone.

A shifted model (`dlm.shifted`: the prediction for position i is the output at i - 1) needs the
output of the position just before the window, so its window is fed from lo - 1: that position is
recomputed with the window (its key and value fresh too) and its output becomes the prediction for
lo. Fast-dLLM's Dream code sidesteps the question instead, by committing a block's first token in
the block's full forward; feeding one more position keeps every remasking rule free to choose, and
on an unchanged canvas gives exactly the full forward's logits.

It works through transformers' attention interface: the model's attention implementation becomes
`dlm_cache`, which behaves exactly like the one it replaces (`sdpa`) unless a `KVCache` is active
in the calling thread, so other callers of the same model are unaffected.

    cache = KVCache(lm.model)
    with cache.fill():
        full = canvas_logits(lm.model, canvas)          # (B, T, V), keys and values kept
    part = cache.forward(canvas, lo, hi)                # (B, hi - lo, V), only the window fed
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
from collections.abc import Iterator

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

from dlm.loading import PADDING_OFFSET_POSITIONS
from dlm.shifted import canvas_logits, is_bidirectional, is_shifted

NAME = "dlm_cache"
CACHES = ("prefix", "dual")

_active: contextvars.ContextVar[KVCache | None] = contextvars.ContextVar("dlm_kv_cache", default=None)


class KVCache:
    """Every attention layer's keys, values and mask rows from the last full forward of one model."""

    def __init__(self, model: torch.nn.Module):
        install(model)
        self.model = model
        # keyed by the attention call's order in the forward pass, not by module: ALBERT runs one shared
        # attention module in every layer, and each of those calls has its own keys and values
        self.layers: dict[int, tuple[torch.nn.Module, torch.Tensor, torch.Tensor, torch.Tensor | None]] = {}
        self.calls = 0  # attention calls so far in the current forward pass
        self.mode: str | None = None
        self.lo = self.hi = 0
        # explicit position ids must start past the padding index where the model's own do (fairseq's convention)
        self.offset = model.config.pad_token_id + 1 if model.config.model_type in PADDING_OFFSET_POSITIONS else 0

    @contextlib.contextmanager
    def fill(self) -> Iterator[None]:
        """Forward passes inside this block run normally and keep their keys and values."""
        self.layers.clear()
        with self._as("fill"):
            yield

    @contextlib.contextmanager
    def window(self, lo: int, hi: int) -> Iterator[None]:
        """Forward passes inside this block hold canvas positions lo..hi-1 only."""
        if not self.layers:
            raise RuntimeError("the cache is empty: run a full forward inside fill() first")
        self.lo, self.hi = lo, hi
        with self._as("window"):
            yield

    def forward(self, canvas: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        """(B, hi - lo, V) float32 logits of canvas positions lo..hi-1, feeding only those positions of
        the (B, T) canvas (and, for a shifted model, position lo - 1, whose output predicts lo)."""
        start = lo - 1 if is_shifted(self.model) else lo
        if start < 0:
            raise ValueError("a shifted model has no prediction for position 0 (it is never generated)")
        ids = canvas[:, start:hi]
        positions = torch.arange(start, hi, device=ids.device).unsqueeze(0).expand_as(ids) + self.offset
        with self.window(start, hi):
            logits = canvas_logits(self.model, ids, position_ids=positions).float()  # (B, hi - start, V)
        return logits[:, lo - start :]

    @contextlib.contextmanager
    def _as(self, mode: str) -> Iterator[None]:
        self.mode, self.calls = mode, 0
        token = _active.set(self)
        try:
            yield
        finally:
            _active.reset(token)
            self.mode = None

    def attend(self, module, query, key, value, attention_mask, **kwargs):
        call, self.calls = self.calls, self.calls + 1
        if self.mode == "fill":
            self.layers[call] = (module, key, value, attention_mask)
            return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
        if call not in self.layers or self.layers[call][0] is not module:
            raise RuntimeError("this layer was not in the cached forward pass")
        _, full_key, full_value, full_mask = self.layers[call]
        lo, hi = self.lo, self.hi
        if hi - lo != key.shape[2] or full_key.shape[0] != key.shape[0]:
            raise RuntimeError(f"the window {lo}..{hi} does not match the {key.shape[2]} positions fed")
        key = torch.cat([full_key[:, :, :lo], key, full_key[:, :, hi:]], dim=2)
        value = torch.cat([full_value[:, :, :lo], value, full_value[:, :, hi:]], dim=2)
        mask = None if full_mask is None else full_mask[..., lo:hi, :]  # sliding-window layers keep their band
        return sdpa_attention_forward(module, query, key, value, mask, **{**kwargs, "is_causal": False})


def _attention(module, query, key, value, attention_mask, **kwargs):
    cache = _active.get()
    if cache is None or cache.mode is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    return cache.attend(module, query, key, value, attention_mask, **kwargs)


AttentionInterface.register(NAME, _attention)
AttentionMaskInterface.register(NAME, sdpa_mask)  # masks (padding, sliding windows) built as for sdpa


def install(model: torch.nn.Module) -> None:
    """Route the model's attention through `dlm_cache` (identical to sdpa while no cache is active)."""
    if model.config._attn_implementation == NAME:
        return
    masked_lms = set(MODEL_FOR_MASKED_LM_MAPPING_NAMES.values())
    bidirectional = type(model).__name__ in masked_lms or is_bidirectional(model)  # a causal LM made bidirectional
    takes_positions = "position_ids" in inspect.signature(model.forward).parameters
    if not bidirectional or not takes_positions or not getattr(model, "_supports_sdpa", False):
        raise ValueError(
            f"key/value caching needs a bidirectional model with sdpa attention that takes position ids; "
            f"{type(model).__name__} is not one"
        )
    if getattr(model.config, "trigram_input", False):
        raise ValueError(f"key/value caching feeds a window of positions alone, and {type(model).__name__} embeds each "
                         "token together with its neighbours (trigram input), so a window's edges would differ from "
                         "the full forward")
    model.set_attn_implementation(NAME)
    if model.config._attn_implementation != NAME:
        raise ValueError(f"{type(model).__name__} cannot route its attention through transformers' interface")
