"""Dream (Dream-org/Dream-v0-Base-7B, Dream-v0-Instruct-7B, and checkpoints built on the same code, e.g.
DiffuCoder) as transformers' own Qwen2ForCausalLM.

Dream's remote code (modeling_dream.py) is Qwen2 with the tensor names unchanged: q/k/v projections with
biases, o_proj without, SwiGLU MLP, RMSNorm, rotary embeddings, an untied lm_head; it never applies a
sliding window. It runs with full attention (`is_causal = False`, SDPA with no mask when nothing is
padded), and it is shifted: the output at position i predicts token i + 1, so its sampler reads
`torch.cat([logits[:, :1], logits[:, :-1]], 1)`, exactly `dlm.shifted.shift_logits`. So it is
Qwen2ForCausalLM made bidirectional (`dlm.shifted.make_bidirectional`) with the `dlm` block
`{"kind": "masked", "shifted": true, "attention": "bidirectional"}`; `dlm.shifted.canvas_logits` shifts.

config.json already uses Qwen2's keys; the mask token (`<|mask|>`, 151666) is `mask_token_id` there, and
the length limit is `max_position_embeddings`. The tokenizer files are Qwen2's (vocab.json, merges.txt)
behind a remote `DreamTokenizer` class, a copy of Qwen2Tokenizer: they are read with Qwen2Tokenizer.
"""

from __future__ import annotations

from dlm.checkpoints.layout import Layout

# DreamConfig's defaults (configuration_dream.py): what a key absent from config.json means.
DEFAULTS = {
    "vocab_size": 151936, "hidden_size": 4096, "intermediate_size": 22016, "num_hidden_layers": 32,
    "num_attention_heads": 32, "num_key_value_heads": 32, "hidden_act": "silu", "max_position_embeddings": 32768,
    "initializer_range": 0.02, "rms_norm_eps": 1e-6, "tie_word_embeddings": False, "rope_theta": 10000.0,
    "rope_scaling": None, "attention_dropout": 0.0, "mask_token_id": 151666, "pad_token_id": 151643,
}


def _get(raw: dict, key: str):
    value = raw.get(key)
    return DEFAULTS[key] if value is None else value


def mask_id(raw: dict) -> int:
    return int(_get(raw, "mask_token_id"))


def max_positions(raw: dict) -> int:
    return int(_get(raw, "max_position_embeddings"))


def rope_parameters(raw: dict) -> dict:
    """Dream's `rope_theta` and `rope_scaling` (transformers 4 style) as transformers 5's `rope_parameters`."""
    scaling = dict(_get(raw, "rope_scaling") or {})
    rope_type = scaling.pop("rope_type", scaling.pop("type", "default"))
    return {**scaling, "rope_type": rope_type, "rope_theta": float(_get(raw, "rope_theta"))}


def build_config(raw: dict):
    """Dream's config.json -> the Qwen2Config of the same network."""
    from transformers import Qwen2Config

    hidden, heads = _get(raw, "hidden_size"), _get(raw, "num_attention_heads")
    kv = raw.get("num_key_value_heads") or heads  # DreamConfig: None means as many as the query heads
    return Qwen2Config(
        vocab_size=_get(raw, "vocab_size"),
        hidden_size=hidden,
        intermediate_size=_get(raw, "intermediate_size"),
        num_hidden_layers=_get(raw, "num_hidden_layers"),
        num_attention_heads=heads,
        num_key_value_heads=kv,
        hidden_act=_get(raw, "hidden_act"),
        max_position_embeddings=max_positions(raw),
        initializer_range=_get(raw, "initializer_range"),
        rms_norm_eps=_get(raw, "rms_norm_eps"),
        rope_parameters=rope_parameters(raw),
        use_sliding_window=False,  # Dream's attention never applies one, whatever its config says
        attention_dropout=_get(raw, "attention_dropout"),
        tie_word_embeddings=bool(_get(raw, "tie_word_embeddings")),
        bos_token_id=raw.get("bos_token_id"),
        eos_token_id=raw.get("eos_token_id"),
        pad_token_id=_get(raw, "pad_token_id"),
    )


LAYOUT = Layout(
    name="Dream",
    model_types=("Dream",),
    architectures=("DreamModel",),
    model_class="Qwen2ForCausalLM",
    shifted=True,
    build_config=build_config,
    mask_id=mask_id,
    max_positions=max_positions,
    key_mapping={},  # Dream's tensor names are Qwen2's
    tokenizer_type="qwen2",
)
