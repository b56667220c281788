"""Published diffusion checkpoints that ship their own modeling code, loaded with transformers' own classes.

LLaDA (GSAI-ML/LLaDA-8B-Base, -Instruct) and Dream (Dream-org/Dream-v0-Base-7B, -Instruct-7B) publish
config.json files whose `auto_map` points at Python files in their repos, which transformers runs only
with `trust_remote_code=True` (dlm's default is False). Their networks are standard decoders, so each
maps onto a class transformers ships, with full attention (`dlm.shifted.make_bidirectional`):

    LLaDA  -> LlamaForCausalLM,  not shifted (logits[:, i] is about token i)       dlm/checkpoints/llada.py
    Dream  -> Qwen2ForCausalLM,  shifted (the output at i - 1 is about token i)   dlm/checkpoints/dream.py

The loaded model carries the usual `dlm` block (`{"kind": "masked", "shifted": ..., "attention":
"bidirectional", "mask_token_id": ...}`), so the sampler, the ELBO and the key/value cache treat it like
any other masked model. Weights load from safetensors through transformers' own loader with a
`key_mapping` (sharded checkpoints, dtypes and the Hub cache as usual); no file of the repo's code is read.

`dlm.load` calls `load` first whenever `trust_remote_code` is False; with `trust_remote_code=True` the
checkpoint's own code runs instead (its AutoModel class, given the same `dlm` block: `card_for`); where
that code cannot run on the installed transformers (LLaDA's and Dream's were written for 4.4x and fail
on 5.x), the error says so and points back to the native path. Tests: tests/test_checkpoints.py checks logit parity with the
original code on tiny checkpoints of both layouts (fixtures made by tests/data/remote/make_fixtures.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dlm.checkpoints import dream, llada
from dlm.checkpoints.layout import Layout
from dlm.config import SETTINGS_KEY
from dlm.shifted import ATTENTION, BIDIRECTIONAL, SHIFTED, make_bidirectional

LAYOUTS: tuple[Layout, ...] = (llada.LAYOUT, dream.LAYOUT)


@dataclass
class NativeCheckpoint:
    """What `load` returns: the model (bidirectional, on CPU, in eval mode), its tokenizer and `dlm` block."""

    model: torch.nn.Module
    tokenizer: object
    card: dict  # the `dlm` block, also set on model.config
    layout: Layout


def read_config(path: str, *, revision: str | None = None) -> dict | None:
    """The checkpoint's config.json as a plain dict (no config class is resolved, no code runs), or None
    when there is none to read (the usual loader then says why)."""
    from transformers import PretrainedConfig

    try:
        raw, _ = PretrainedConfig.get_config_dict(path, revision=revision)
    except (OSError, ValueError):
        return None
    return raw


def recognise(raw: dict | None) -> Layout | None:
    """The layout this config.json belongs to, or None for any other checkpoint."""
    if not raw:
        return None
    return next((layout for layout in LAYOUTS if layout.recognises(raw)), None)


def card_for(layout: Layout, raw: dict) -> dict:
    """The `dlm` block of a checkpoint of this layout."""
    return {"kind": "masked", SHIFTED: layout.shifted, ATTENTION: BIDIRECTIONAL,
            "mask_token_id": layout.mask_id(raw), "layout": layout.name}


def native_config(layout: Layout, raw: dict):
    """The transformers config that runs this checkpoint, carrying its `dlm` block and mask id."""
    config = layout.build_config(raw)
    card = card_for(layout, raw)
    setattr(config, SETTINGS_KEY, card)
    config.mask_token_id = card["mask_token_id"]
    return config


def load(path: str, *, kind: str | None = None, dtype: torch.dtype = torch.float32,
         revision: str | None = None) -> NativeCheckpoint | None:
    """Load `path` (a folder or Hub repo id) natively if it is a LLaDA or Dream checkpoint; None otherwise.

    Raises ValueError when it is one but cannot run as `kind`, sets a feature the mapping does not
    reproduce, or its tensors do not match the mapped model's (missing, unexpected or misshapen names).
    """
    raw = read_config(path, revision=revision)
    layout = recognise(raw)
    if layout is None:
        return None
    if kind not in (None, "masked"):
        raise ValueError(f"{path} is a {layout.name} checkpoint, a masked-diffusion model; it cannot run as "
                         f"kind {kind!r}")
    config = native_config(layout, raw)
    model = load_model(layout, path, config, dtype=dtype, revision=revision)
    tokenizer = load_tokenizer(layout, path, config, revision=revision)
    return NativeCheckpoint(model, tokenizer, dict(getattr(config, SETTINGS_KEY)), layout)


def load_model(layout: Layout, path: str, config, *, dtype: torch.dtype, revision: str | None = None):
    """The checkpoint's safetensors weights in `layout.model_class`, renamed by `layout.key_mapping`, with
    full attention. Every tensor must find its place, and every parameter must be found."""
    import transformers

    model_class = getattr(transformers, layout.model_class)
    model, info = model_class.from_pretrained(
        path, config=config, dtype=dtype, use_safetensors=True, revision=revision, trust_remote_code=False,
        key_mapping=layout.key_mapping or None, output_loading_info=True,
    )
    problems = {name: sorted(map(str, found)) for name in ("missing_keys", "unexpected_keys", "mismatched_keys")
                if (found := info.get(name))}
    if problems:
        raise ValueError(f"{path}: the {layout.name} checkpoint's tensors do not match {layout.model_class}: {problems}")
    return make_bidirectional(model).eval()


def load_tokenizer(layout: Layout, path: str, config, *, revision: str | None = None):
    """The checkpoint's tokenizer, read by transformers' own classes (a remote tokenizer class is never
    imported: Dream's DreamTokenizer files are read with Qwen2Tokenizer)."""
    from transformers import AutoTokenizer

    extra = {"tokenizer_type": layout.tokenizer_type} if layout.tokenizer_type else {}
    return AutoTokenizer.from_pretrained(path, config=config, revision=revision, trust_remote_code=False, **extra)
