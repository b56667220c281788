"""LLaDA (GSAI-ML/LLaDA-8B-Base, LLaDA-8B-Instruct, LLaDA-1.5) as transformers' own LlamaForCausalLM.

LLaDA's remote code (modeling_llada.py, derived from OLMo) with `block_type: "llama"` is a Llama decoder:
RMSNorm before attention and MLP, rotary embeddings (`rope_theta`, rotate-half), SwiGLU MLP
(`ff_proj` the gate, `up_proj` the up projection, `ff_out` the down projection), no biases, a final RMSNorm
and an untied output layer. Its attention is full (`is_causal=False`, and no mask at all), and logits[:, i]
is the model's belief about the token AT position i (no shift). So it is LlamaForCausalLM made
bidirectional (`dlm.shifted.make_bidirectional`), with its `dlm` block saying
`{"kind": "masked", "shifted": false, "attention": "bidirectional"}`.

config.json keys (OLMo style) -> LlamaConfig: d_model -> hidden_size, n_layers -> num_hidden_layers,
n_heads -> num_attention_heads, n_kv_heads -> num_key_value_heads, mlp_hidden_size -> intermediate_size,
embedding_size (or vocab_size) -> vocab_size, rms_norm_eps, rope_theta, max_sequence_length ->
max_position_embeddings (dlm's length limit), weight_tying -> tie_word_embeddings. The mask token
(`<|mdm_mask|>`, 126336) is `mask_token_id` in config.json; the tokenizer does not name it.

Numerics: with `rope_full_precision` LLaDA rotates q and k in fp32 and casts back, while Llama applies
fp32-computed cos/sin in the model dtype; in fp32 the two are the same computation, in bf16 they differ
by rounding only.
"""

from __future__ import annotations

from dlm.checkpoints.layout import Layout, require

# LLaDA's ModelConfig defaults (configuration_llada.py): what a key absent from config.json means.
DEFAULTS = {
    "d_model": 768, "n_heads": 12, "n_kv_heads": None, "n_layers": 12, "mlp_ratio": 4, "mlp_hidden_size": None,
    "activation_type": "swiglu", "block_type": "sequential", "block_group_size": 1, "alibi": False, "rope": False,
    "multi_query_attention": None, "attention_layer_norm": False, "input_emb_norm": False,
    "layer_norm_type": "default", "layer_norm_with_affine": True, "rms_norm_eps": 1e-05,
    "max_sequence_length": 1024, "rope_theta": 10000.0, "include_qkv_bias": False, "include_bias": False,
    "bias_for_layer_norm": None, "scale_logits": False, "vocab_size": 50257, "embedding_size": 50304,
    "weight_tying": True, "eos_token_id": 50256, "pad_token_id": 50256, "mask_token_id": 50256,
}

# The features every published LLaDA checkpoint has, and the only ones LlamaForCausalLM reproduces.
SUPPORTED = {
    "block_type": "llama", "activation_type": "silu", "layer_norm_type": "rms", "layer_norm_with_affine": True,
    "rope": True, "alibi": False, "include_bias": False, "include_qkv_bias": False, "attention_layer_norm": False,
    "input_emb_norm": False, "scale_logits": False, "block_group_size": 1,
}

# checkpoint tensor name -> LlamaForCausalLM's (regexes, applied in order; each rule's output matches no other)
KEY_MAPPING = {
    r"^model\.transformer\.wte\.": "model.embed_tokens.",
    r"^model\.transformer\.ln_f\.": "model.norm.",
    r"^model\.transformer\.ff_out\.": "lm_head.",
    r"^model\.transformer\.blocks\.(\d+)\.attn_norm\.": r"model.layers.\1.input_layernorm.",
    r"^model\.transformer\.blocks\.(\d+)\.q_proj\.": r"model.layers.\1.self_attn.q_proj.",
    r"^model\.transformer\.blocks\.(\d+)\.k_proj\.": r"model.layers.\1.self_attn.k_proj.",
    r"^model\.transformer\.blocks\.(\d+)\.v_proj\.": r"model.layers.\1.self_attn.v_proj.",
    r"^model\.transformer\.blocks\.(\d+)\.attn_out\.": r"model.layers.\1.self_attn.o_proj.",
    r"^model\.transformer\.blocks\.(\d+)\.ff_norm\.": r"model.layers.\1.post_attention_layernorm.",
    r"^model\.transformer\.blocks\.(\d+)\.ff_proj\.": r"model.layers.\1.mlp.gate_proj.",
    r"^model\.transformer\.blocks\.(\d+)\.up_proj\.": r"model.layers.\1.mlp.up_proj.",
    r"^model\.transformer\.blocks\.(\d+)\.ff_out\.": r"model.layers.\1.mlp.down_proj.",
}


def _get(raw: dict, key: str):
    return raw[key] if key in raw else DEFAULTS[key]


def kv_heads(raw: dict) -> int:
    """LLaDA's `effective_n_kv_heads`."""
    n_kv, mqa = _get(raw, "n_kv_heads"), _get(raw, "multi_query_attention")
    if n_kv is None:
        return 1 if mqa else _get(raw, "n_heads")
    if mqa is not None and n_kv != (1 if mqa else _get(raw, "n_heads")):
        raise ValueError(f"LLaDA config: n_kv_heads={n_kv} contradicts multi_query_attention={mqa}")
    return n_kv


def mask_id(raw: dict) -> int:
    return int(_get(raw, "mask_token_id"))


def max_positions(raw: dict) -> int:
    return int(_get(raw, "max_sequence_length"))


def build_config(raw: dict):
    """LLaDA's config.json -> the LlamaConfig of the same network."""
    from transformers import LlamaConfig

    require(raw, DEFAULTS, SUPPORTED, "LLaDA")
    d_model, n_heads = _get(raw, "d_model"), _get(raw, "n_heads")
    if d_model % n_heads:
        raise ValueError(f"LLaDA config: d_model={d_model} is not a multiple of n_heads={n_heads}")
    hidden = _get(raw, "mlp_hidden_size") or _get(raw, "mlp_ratio") * d_model
    return LlamaConfig(
        vocab_size=_get(raw, "embedding_size") or _get(raw, "vocab_size"),  # the embedding and output rows
        hidden_size=d_model,
        intermediate_size=hidden,
        num_hidden_layers=_get(raw, "n_layers"),
        num_attention_heads=n_heads,
        num_key_value_heads=kv_heads(raw),
        head_dim=d_model // n_heads,
        hidden_act="silu",
        max_position_embeddings=max_positions(raw),
        rms_norm_eps=_get(raw, "rms_norm_eps"),
        rope_parameters={"rope_type": "default", "rope_theta": float(_get(raw, "rope_theta"))},
        attention_bias=False,
        mlp_bias=False,
        tie_word_embeddings=bool(_get(raw, "weight_tying")),
        bos_token_id=raw.get("bos_token_id"),
        eos_token_id=_get(raw, "eos_token_id"),
        pad_token_id=_get(raw, "pad_token_id"),
    )


LAYOUT = Layout(
    name="LLaDA",
    model_types=("llada",),
    architectures=("LLaDAModelLM",),
    model_class="LlamaForCausalLM",
    shifted=False,
    build_config=build_config,
    mask_id=mask_id,
    max_positions=max_positions,
    key_mapping=KEY_MAPPING,
)
