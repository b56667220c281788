"""Tiny checkpoints in the published layouts of LLaDA (GSAI-ML/LLaDA-8B-Base, -Instruct) and Dream
(Dream-org/Dream-v0-Base-7B, -Instruct-7B): the same config.json keys and safetensors tensor names as the
public checkpoints, at toy sizes, with deterministic weights (no RNG: the same bytes on every machine and
torch version), a tokenizer in the same style, and a copy of the original remote code beside them (which a
native load must never import).

Used by tests/test_checkpoints.py and by tests/data/remote/make_fixtures.py, which runs these checkpoints
through the original modeling code and stores the logits that dlm's native mapping must reproduce.
Importing this module imports no original modeling code.
"""

from __future__ import annotations

import json
import math
import shutil
import zlib
from pathlib import Path

import torch

REMOTE = Path(__file__).resolve().parent  # tests/data/remote: the original code, one folder per family
DATA = REMOTE.parent  # tests/data: the parity fixtures

# The words the tiny tokenizers are trained on (lower-case ASCII, so a byte-level BPE needs no full alphabet).
CORPUS = [
    "the cat sat on the mat and the dog sat on the log",
    "once upon a time there was a little girl who lived in a village",
    "it was the best of times, it was the worst of times",
    "in the beginning god created the heaven and the earth",
    "the quick brown fox jumps over the lazy dog",
] * 4

# ---- LLaDA -----------------------------------------------------------------------------------------
# config.json of GSAI-ML/LLaDA-8B-Base / -Instruct (key for key), with toy sizes where the comment says so.
LLADA_CONFIG = {
    "activation_type": "silu",
    "alibi": False,
    "alibi_bias_max": 8.0,
    "architectures": ["LLaDAModelLM"],
    "attention_dropout": 0.0,
    "attention_layer_norm": False,
    "attention_layer_norm_with_affine": True,
    "auto_map": {
        "AutoConfig": "configuration_llada.LLaDAConfig",
        "AutoModelForCausalLM": "modeling_llada.LLaDAModelLM",
        "AutoModel": "modeling_llada.LLaDAModelLM",
    },
    "bias_for_layer_norm": False,
    "block_group_size": 1,
    "block_type": "llama",
    "d_model": 32,  # 4096
    "embedding_dropout": 0.0,
    "embedding_size": 128,  # 126464
    "eos_token_id": 1,  # 126081 (<|endoftext|>; the tiny tokenizer's id)
    "flash_attention": False,
    "include_bias": False,
    "include_qkv_bias": False,
    "init_cutoff_factor": None,
    "init_device": "meta",
    "init_fn": "mitchell",
    "init_std": 0.02,
    "input_emb_norm": False,
    "layer_norm_type": "rms",
    "layer_norm_with_affine": True,
    "mask_token_id": 2,  # 126336 (<|mdm_mask|>; the tiny tokenizer's id)
    "max_sequence_length": 48,  # 4096
    "mlp_hidden_size": 64,  # 12288
    "mlp_ratio": 4,
    "model_type": "llada",
    "multi_query_attention": None,
    "n_heads": 4,  # 32
    "n_kv_heads": 2,  # 32 (2 here, so grouped-query attention is covered too)
    "n_layers": 2,  # 32
    "pad_token_id": 1,  # 126081
    "precision": "amp_bf16",
    "residual_dropout": 0.0,
    "rms_norm_eps": 1e-05,
    "rope": True,
    "rope_full_precision": True,
    "rope_theta": 500000.0,
    "scale_logits": False,
    "transformers_version": "4.46.3",
    "use_cache": False,
    "vocab_size": 128,  # 126464
    "weight_tying": False,
}
LLADA_SPECIALS = ["<|startoftext|>", "<|endoftext|>", "<|mdm_mask|>"]  # ids 0, 1, 2


def llada_tensors(config: dict = LLADA_CONFIG) -> dict[str, tuple[int, ...]]:
    """The tensor names and shapes of a LLaDA checkpoint (LLaDAModelLM.state_dict(), block_type "llama")."""
    d, vocab, hidden = config["d_model"], config["embedding_size"] or config["vocab_size"], config["mlp_hidden_size"]
    kv = (config["n_kv_heads"] or config["n_heads"]) * (d // config["n_heads"])
    shapes = {"model.transformer.wte.weight": (vocab, d)}
    for i in range(config["n_layers"]):
        block = f"model.transformer.blocks.{i}"
        shapes |= {
            f"{block}.attn_out.weight": (d, d),
            f"{block}.ff_out.weight": (d, hidden),
            f"{block}.attn_norm.weight": (d,),
            f"{block}.ff_norm.weight": (d,),
            f"{block}.q_proj.weight": (d, d),
            f"{block}.k_proj.weight": (kv, d),
            f"{block}.v_proj.weight": (kv, d),
            f"{block}.ff_proj.weight": (hidden, d),
            f"{block}.up_proj.weight": (hidden, d),
        }
    shapes |= {"model.transformer.ln_f.weight": (d,), "model.transformer.ff_out.weight": (vocab, d)}
    return shapes


# ---- Dream -----------------------------------------------------------------------------------------
# config.json of Dream-org/Dream-v0-Base-7B / -Instruct-7B (key for key), with toy sizes where the comment says so.
DREAM_CONFIG = {
    "architectures": ["DreamModel"],
    "attention_dropout": 0.0,
    "auto_map": {
        "AutoConfig": "configuration_dream.DreamConfig",
        "AutoModel": "modeling_dream.DreamModel",
    },
    "bos_token_id": 1,  # 151643 (the tiny tokenizer's <|beginoftext|>)
    "eos_token_id": 0,  # 151643 (<|endoftext|>)
    "hidden_act": "silu",
    "hidden_size": 32,  # 3584
    "initializer_range": 0.02,
    "intermediate_size": 64,  # 18944
    "mask_token_id": 2,  # 151666 (<|mask|>)
    "max_position_embeddings": 40,  # 131072
    "max_window_layers": 2,  # 28
    "model_type": "Dream",
    "num_attention_heads": 4,  # 28
    "num_hidden_layers": 2,  # 28
    "num_key_value_heads": 2,  # 4
    "pad_token_id": 0,  # 151643
    "rms_norm_eps": 1e-06,
    "rope_scaling": None,
    "rope_theta": 1000000.0,
    "sliding_window": None,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.46.2",
    "use_cache": False,
    "use_sliding_window": False,
    "vocab_size": 128,  # 152064
}
DREAM_SPECIALS = ["<|endoftext|>", "<|beginoftext|>", "<|mask|>"]  # ids 0, 1, 2


def dream_tensors(config: dict = DREAM_CONFIG) -> dict[str, tuple[int, ...]]:
    """The tensor names and shapes of a Dream checkpoint (DreamModel.state_dict(): Qwen2's names)."""
    d, vocab, hidden = config["hidden_size"], config["vocab_size"], config["intermediate_size"]
    kv = config["num_key_value_heads"] * (d // config["num_attention_heads"])
    shapes = {"model.embed_tokens.weight": (vocab, d)}
    for i in range(config["num_hidden_layers"]):
        layer = f"model.layers.{i}"
        shapes |= {
            f"{layer}.self_attn.q_proj.weight": (d, d),
            f"{layer}.self_attn.q_proj.bias": (d,),
            f"{layer}.self_attn.k_proj.weight": (kv, d),
            f"{layer}.self_attn.k_proj.bias": (kv,),
            f"{layer}.self_attn.v_proj.weight": (kv, d),
            f"{layer}.self_attn.v_proj.bias": (kv,),
            f"{layer}.self_attn.o_proj.weight": (d, d),
            f"{layer}.mlp.gate_proj.weight": (hidden, d),
            f"{layer}.mlp.up_proj.weight": (hidden, d),
            f"{layer}.mlp.down_proj.weight": (d, hidden),
            f"{layer}.input_layernorm.weight": (d,),
            f"{layer}.post_attention_layernorm.weight": (d,),
        }
    shapes |= {"model.norm.weight": (d,), "lm_head.weight": (vocab, d)}
    return shapes


# ---- weights, tokenizers, folders ------------------------------------------------------------------


def values(name: str, shape: tuple[int, ...]) -> torch.Tensor:
    """Deterministic pseudo-random float32 weights for the tensor `name`, without any RNG: a sine hash of
    the element index, seeded by the name's CRC32. Norm weights sit around 1, biases around 0, matrices
    and embeddings are scaled like a fan-in initialisation, so the logits are O(1) and far from uniform."""
    n = math.prod(shape)
    seed = zlib.crc32(name.encode()) % 100_003
    i = torch.arange(n, dtype=torch.float64)
    u = torch.frac(torch.sin(i * 12.9898 + seed * 78.233) * 43758.5453)  # in (-1, 1)
    if name.endswith(("norm.weight", "ln_f.weight")):
        x = 1.0 + 0.3 * u
    elif name.endswith(".bias"):
        x = 0.2 * u
    elif len(shape) == 2 and ("wte" in name or "embed_tokens" in name):
        x = u * math.sqrt(3.0)
    else:
        x = u * math.sqrt(3.0 / shape[-1]) * 1.5
    return x.to(torch.float32).reshape(shape).contiguous()


def state_dict(shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    return {name: values(name, shape) for name, shape in shapes.items()}


def _bpe(specials: list[str], vocab_size: int):
    """A byte-level BPE over CORPUS, its special tokens first (ids 0, 1, 2, ...)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials))
    return tok


def write_llada(folder: str | Path, *, with_code: bool = True) -> Path:
    """A tiny LLaDA checkpoint: config.json, model.safetensors (one shard, as the index layout is
    covered by `write_dream`), tokenizer.json + tokenizer_config.json (PreTrainedTokenizerFast, with no
    mask token named: the mask id lives in config.json), and the original remote code when `with_code`."""
    from safetensors.torch import save_file
    from transformers import PreTrainedTokenizerFast

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(LLADA_CONFIG, indent=2), encoding="utf-8")
    save_file(state_dict(llada_tensors()), folder / "model.safetensors", metadata={"format": "pt"})
    tok = PreTrainedTokenizerFast(tokenizer_object=_bpe(LLADA_SPECIALS, 100), bos_token="<|startoftext|>",
                                  eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    tok.save_pretrained(folder)
    if with_code:
        for name in ("configuration_llada.py", "modeling_llada.py"):
            shutil.copy(REMOTE / "llada" / name, folder / name)
    return folder


def write_dream(folder: str | Path, *, with_code: bool = True) -> Path:
    """A tiny Dream checkpoint: config.json, two safetensors shards with model.safetensors.index.json (as
    the 7B checkpoints are sharded), generation_config.json, and a Qwen-style slow tokenizer (vocab.json +
    merges.txt, tokenizer_config.json naming the remote DreamTokenizer class, no tokenizer.json), plus the
    original remote code when `with_code`."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(DREAM_CONFIG, indent=2), encoding="utf-8")
    tensors = state_dict(dream_tensors())
    names = list(tensors)
    shards = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2 :]}
    weight_map = {}
    for shard, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, folder / shard, metadata={"format": "pt"})
        weight_map |= dict.fromkeys(keys, shard)
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2), encoding="utf-8")
    generation = {"bos_token_id": 1, "eos_token_id": 0, "pad_token_id": 0, "mask_token_id": 2,
                  "transformers_version": "4.46.2", "alg": "entropy", "steps": 512, "temperature": 0.2}
    (folder / "generation_config.json").write_text(json.dumps(generation, indent=2), encoding="utf-8")

    model = json.loads(_bpe(DREAM_SPECIALS, 100).to_str())["model"]
    vocab = {token: i for token, i in model["vocab"].items()}
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    added = {str(i): {"content": t, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
                      "special": True} for i, t in enumerate(DREAM_SPECIALS)}
    tokenizer_config = {
        "add_bos_token": False, "add_prefix_space": False, "added_tokens_decoder": added,
        "auto_map": {"AutoTokenizer": ["tokenization_dream.DreamTokenizer", None]},
        "bos_token": "<|beginoftext|>", "clean_up_tokenization_spaces": False, "eos_token": "<|endoftext|>",
        "errors": "replace", "model_max_length": 131072, "pad_token": "<|endoftext|>", "split_special_tokens": False,
        "tokenizer_class": "DreamTokenizer", "unk_token": None,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2), encoding="utf-8")
    specials_map = {"bos_token": "<|beginoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}
    (folder / "special_tokens_map.json").write_text(json.dumps(specials_map, indent=2), encoding="utf-8")
    if with_code:
        for name in ("configuration_dream.py", "modeling_dream.py", "generation_utils.py"):
            shutil.copy(REMOTE / "dream" / name, folder / name)
    return folder


# The parity inputs: two rows over the model vocabulary with mask tokens in them, as a denoising step sees.
def parity_ids(config: dict) -> torch.Tensor:
    """(2, 12) token ids: deterministic, inside the vocabulary, with a run of mask tokens in each row."""
    vocab, mask = config.get("embedding_size") or config["vocab_size"], config["mask_token_id"]
    ids = (torch.arange(24).reshape(2, 12) * 37 + 11) % vocab
    ids[0, 7:11] = mask
    ids[1, 2:5] = mask
    ids[1, 9] = mask
    return ids
