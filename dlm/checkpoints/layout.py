"""What dlm needs to know to load one published checkpoint layout without its remote code.

A `Layout` describes a family of checkpoints whose config.json names classes that live in the repo's own
Python files (`auto_map`), but whose network is one transformers already ships: how to recognise the
config, which transformers class runs it, how to translate the config and the tensor names, where the
mask id and the length limit are, whether its logits are shifted (`dlm.shifted`), and which tokenizer
class reads its tokenizer files. `dlm.checkpoints` loads any of them; one module per family fills one in.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Layout:
    name: str  # the family's name in messages and in the `dlm` block ("LLaDA", "Dream")
    model_types: tuple[str, ...]  # config.json `model_type` values of the family, exactly as published
    architectures: tuple[str, ...]  # config.json `architectures` it may name (another one is not this layout)
    model_class: str  # the transformers class that runs it ("LlamaForCausalLM", "Qwen2ForCausalLM")
    shifted: bool  # True when the output at i predicts token i + 1 (Dream); False: token i itself (LLaDA)
    build_config: Callable[[dict], object]  # config.json (a dict) -> the transformers config of `model_class`
    mask_id: Callable[[dict], int]  # config.json -> the id of the mask token
    max_positions: Callable[[dict], int]  # config.json -> how many positions the model was trained over
    key_mapping: dict[str, str] = field(default_factory=dict)  # checkpoint tensor name regex -> transformers name
    tokenizer_type: str | None = None  # a transformers tokenizer type to read the tokenizer files with (None: auto)

    def recognises(self, raw: dict) -> bool:
        """Whether this config.json is one of this layout's checkpoints."""
        if raw.get("model_type") not in self.model_types:
            return False
        architectures = raw.get("architectures") or []
        return all(name in self.architectures for name in architectures)

    def rename(self, name: str) -> str:
        """A checkpoint tensor name as the transformers model calls it (every matching rule applies in
        order, as transformers' own `key_mapping` does)."""
        for pattern, replacement in self.key_mapping.items():
            name = re.sub(pattern, replacement, name)
        return name

    def rename_state_dict(self, state: dict) -> dict:
        """A whole checkpoint state dict, renamed for `model_class`."""
        return {self.rename(name): tensor for name, tensor in state.items()}


def require(raw: dict, defaults: dict, supported: dict, family: str) -> None:
    """Refuse a config that sets a feature the transformers class does not have: `supported` maps a key
    to the one value the mapping reproduces (an absent key counts as its `defaults` value)."""
    for key, value in supported.items():
        found = raw.get(key, defaults.get(key))
        if found != value:
            raise ValueError(f"this {family} checkpoint sets {key}={found!r}; dlm's native {family} mapping reproduces "
                             f"only {key}={value!r}: load it with trust_remote_code=True to run its own code")
