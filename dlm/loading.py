"""One model loader for every part of dlm: `load(source) -> LanguageModel`.

`source` is, tried in this order:
1. the name of a model bundled inside the package (`default`, `default-ar`, ...: `dlm/models/NAME/`),
2. a local folder saved with `save_pretrained`,
3. a Hugging Face Hub repo id (from the local cache first, then the Hub).

Weights load from safetensors only, and remote code runs only when the caller passes
`trust_remote_code=True`. A name that is none of these fails at once with the list of what was
tried: when the Hub cannot be reached we say so after one quick connection attempt rather than
letting the client retry for half a minute.

What a checkpoint is comes from the `dlm` block of its config.json (written by training/), else from
its architecture. A causal LM turned masked-diffusion model (Dream, DiffuLLaMA; `--init-from-ar`)
keeps its causal architecture and says so there:
    "dlm": {"kind": "masked", "shifted": true, "attention": "bidirectional", ...}
It loads as that causal class with full attention, and `dlm.shifted.canvas_logits` shifts its logits.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from urllib.parse import urlparse

import torch

from dlm.config import SETTINGS_KEY, SamplerConfig
from dlm.families import FAMILIES, family
from dlm.shifted import ATTENTION, BIDIRECTIONAL, SHIFTED, is_shifted, make_bidirectional, prepare_rows

BUNDLED_DIR = Path(__file__).parent / "models"
_HUB_PROBE_TIMEOUT = 3.0  # seconds for the one connection attempt that decides the Hub is unreachable


class ModelNotFoundError(ValueError):
    """The source is neither a bundled name, a folder, nor a reachable Hub repo."""


@dataclass
class LanguageModel:
    """A loaded checkpoint with everything the sampler and the likelihood need."""

    model: torch.nn.Module  # an AutoModelForMaskedLM, AutoModelForCausalLM or ContinuousDiffusionLM, in eval mode
    # (a shifted masked model is an AutoModelForCausalLM made bidirectional: see dlm.shifted)
    tokenizer: object  # the checkpoint's tokenizer (a transformers PreTrainedTokenizer*)
    kind: str  # "masked", "causal" or "continuous"
    settings: SamplerConfig  # recommended sampler settings from the checkpoint (defaults otherwise)
    source: str  # what the caller asked for
    path: str  # where it was loaded from (folder or repo id)
    card: dict  # the checkpoint's `dlm` block from config.json ({} for foreign checkpoints)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @cached_property
    def mask_id(self) -> int:
        """Id of the mask token (masked models only): the tokenizer's, else the checkpoint's `mask_token_id`
        (in its `dlm` block or its config, as Dream's config.json has it)."""
        mask_id = self.tokenizer.mask_token_id
        if mask_id is None:
            mask_id = self.card.get("mask_token_id", getattr(self.model.config, "mask_token_id", None))
        if mask_id is None:
            raise ValueError(f"{self.source}: neither the tokenizer nor the config names a mask token, so it "
                             "cannot do masked diffusion")
        return int(mask_id)

    @property
    def shifted(self) -> bool:
        """True when the prediction for position i is read from the output at i - 1 (`dlm.shifted`)."""
        return is_shifted(self.model)

    @cached_property
    def eos_id(self) -> int | None:
        """End of text: the tokenizer's EOS, or its SEP for BERT-style vocabularies."""
        tok = self.tokenizer
        return tok.eos_token_id if tok.eos_token_id is not None else tok.sep_token_id

    @cached_property
    def bos_id(self) -> int | None:
        """Start of text for causal models: BOS, else CLS, else EOS (GPT-2's <|endoftext|>)."""
        tok = self.tokenizer
        for candidate in (tok.bos_token_id, tok.cls_token_id, tok.eos_token_id):
            if candidate is not None:
                return candidate
        return None

    @cached_property
    def max_positions(self) -> int | None:
        """How many positions the model can attend over (None if it does not say)."""
        return max_positions_of(self.model.config)

    @cached_property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @property
    def weight_bytes(self) -> int:
        """Memory the weights take as loaded (their dtype): what a device needs before any activation."""
        return sum(p.numel() * p.element_size() for p in self.model.parameters())

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype


# model types whose position ids start after the padding index (create_position_ids_from_input_ids), so
# padding_idx + 1 of their position embeddings are never usable
PADDING_OFFSET_POSITIONS = {"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "mpnet", "data2vec-text",
                            "roberta-prelayernorm", "ibert", "longformer", "luke", "xmod", "esm"}


def max_positions_of(config) -> int | None:
    """How many positions a model with this transformers config can attend over (None if it does not say)."""
    for name in ("max_position_embeddings", "n_positions", "max_seq_len"):
        value = getattr(config, name, None)
        if value:
            if getattr(config, "model_type", "") in PADDING_OFFSET_POSITIONS:
                value -= (config.pad_token_id or 0) + 1  # RoBERTa positions start after padding_idx
            return int(value)
    return None


def bundled_models() -> list[str]:
    """Names of the models shipped inside the package."""
    if not BUNDLED_DIR.is_dir():
        return []
    return sorted(p.name for p in BUNDLED_DIR.iterdir() if (p / "config.json").is_file())


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    """bf16 on GPUs that have it, fp16 on older ones, fp32 on CPU."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def load(
    source: str,
    *,
    kind: str | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    trust_remote_code: bool = False,
    revision: str | None = None,
) -> LanguageModel:
    """Load a masked, causal or continuous-diffusion language model with its tokenizer and settings.

    Args:
        source: a bundled model name, a local folder, or a Hub repo id.
        kind: "masked", "causal" or "continuous"; detected from the checkpoint when None.
        device: defaults to CUDA when present, else CPU.
        dtype: defaults to bf16/fp16 on GPU, fp32 on CPU.
        trust_remote_code: allow the checkpoint's own Python code (off unless you ask).
        revision: a Hub branch, tag or commit.
    """
    if not isinstance(source, str) or not source.strip():
        raise ModelNotFoundError(f"model source must be a non-empty string, got {source!r}")
    if kind is not None:
        family(kind)  # an unknown kind fails here, before anything is fetched
    path = resolve(source, revision=revision)
    device = torch.device(device) if device is not None else default_device()
    dtype = dtype or default_dtype(device)

    # ---- hook: published checkpoints that ship remote code (LLaDA, Dream) run on transformers' own classes
    # (dlm.checkpoints) unless the caller asks for their code; every other checkpoint goes on below
    if not trust_remote_code:
        from dlm import checkpoints

        native = checkpoints.load(path, kind=kind, dtype=dtype, revision=revision)
        if native is not None:
            settings = SamplerConfig.from_dict(native.card.get("sampler", {}))
            prepare_rows(native.model)
            return LanguageModel(native.model.to(device).eval(), native.tokenizer, "masked", settings, source,
                                 str(path), native.card)

    from transformers import AutoConfig, AutoTokenizer

    for known in FAMILIES.values():
        known.prepare()  # e.g. registers the continuous model type with the Auto classes

    hub_args = {"revision": revision, "trust_remote_code": trust_remote_code}
    config = AutoConfig.from_pretrained(path, **hub_args)
    card = dict(getattr(config, SETTINGS_KEY, None) or {})
    remote = remote_diffusion_card(path, config, revision) if trust_remote_code and not card else None
    if remote:  # LLaDA or Dream on its own code (asked for): what dlm needs to know about it
        card = remote
        setattr(config, SETTINGS_KEY, card)
        config.mask_token_id = card["mask_token_id"]
    kind = kind or card.get("kind") or detect_kind(config)
    shifted = bool(card.get(SHIFTED))
    if shifted and kind != "masked":
        raise ValueError(f"{source} is a shifted masked-diffusion model (a causal architecture with bidirectional "
                         f"attention); it cannot run as kind {kind!r}")
    if kind == "masked":
        refuse_fixed_length(config, source)
    load_args = {"config": config, "dtype": dtype, "use_safetensors": True, **hub_args}
    if remote:
        from transformers import AutoModel

        try:
            model = AutoModel.from_pretrained(path, **load_args)  # the checkpoint's own model class (auto_map)
        except Exception as error:  # noqa: BLE001 - their code, on a transformers it was not written for
            import transformers

            raise ValueError(f"{source}: the checkpoint's own code failed on transformers {transformers.__version__} "
                             f"({type(error).__name__}: {error}); load it without trust_remote_code to run it on "
                             "transformers' own classes") from error
    elif kind == "masked":
        model = masked_model_from_pretrained(path, **load_args)
    else:
        model = _auto_class(kind).from_pretrained(path, **load_args)
    model.to(device).eval()
    if kind == "masked":
        prepare_rows(model)  # the sampler's projection at open positions, hooked before any thread runs it
    tokenizer = AutoTokenizer.from_pretrained(path, **hub_args)
    settings = SamplerConfig.from_dict(card.get("sampler", {}))
    return LanguageModel(model, tokenizer, kind, settings, source, str(path), card)


def remote_diffusion_card(path: str, config, revision: str | None) -> dict | None:
    """The `dlm` block of a LLaDA or Dream checkpoint loaded on its own code (`trust_remote_code=True`):
    masked, shifted or not, its mask id. Their code registers the model under AutoModel only, and the
    model it builds takes a canvas and returns logits, like any masked LM. None for other checkpoints."""
    from dlm import checkpoints

    raw = checkpoints.read_config(path, revision=revision)
    layout = checkpoints.recognise(raw)
    if layout is None:
        return None
    if "AutoModel" not in (getattr(config, "auto_map", None) or {}):
        raise ValueError(f"{path}: a {layout.name} checkpoint without remote code (no AutoModel in its auto_map); "
                         "load it without trust_remote_code to run it on transformers' own classes")
    card = checkpoints.card_for(layout, raw)
    card["remote_code"] = True
    return card


def refuse_fixed_length(config, source: str) -> None:
    """Masked diffusion runs on canvases of every length; refuse, before loading any weights, an
    architecture that computes only at one fixed length."""
    if getattr(config, "model_type", None) == "nystromformer" and config.num_landmarks != config.segment_means_seq_len:
        raise ValueError(f"{source}: this Nystromformer computes only at exactly {config.segment_means_seq_len} tokens "
                         f"(its {config.num_landmarks} landmarks average fixed segments), so it cannot run on "
                         "canvases of other lengths; a config with num_landmarks == segment_means_seq_len "
                         "(full attention) can")


def masked_model_from_pretrained(path: str, config=None, **kwargs) -> torch.nn.Module:
    """A masked-diffusion checkpoint's model: AutoModelForMaskedLM, or, for a shifted checkpoint
    (`dlm.shifted`), its causal class; full attention where its `dlm` block says so. `config`: the
    checkpoint's, when already read; kwargs go to from_pretrained. `load` and the trainers both use it."""
    if config is None:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(path, trust_remote_code=kwargs.get("trust_remote_code", False))
    card = getattr(config, SETTINGS_KEY, None) or {}
    # a shifted checkpoint is a causal LM's own architecture: its class is the causal one
    model = _auto_class("causal" if card.get(SHIFTED) else "masked").from_pretrained(path, config=config, **kwargs)
    return make_bidirectional(model) if card.get(ATTENTION) == BIDIRECTIONAL else model


def resolve(source: str, *, revision: str | None = None) -> str:
    """Turn a bundled name, folder or repo id into something `from_pretrained` accepts, or fail clearly."""
    tried = []
    bundled = bundled_models()
    if source in bundled:
        return str(BUNDLED_DIR / source)
    tried.append(f"bundled models {bundled or '(none installed)'}")

    folder = Path(source).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise ModelNotFoundError(f"folder {str(folder)!r} has no config.json: is it a saved checkpoint?")
        return str(folder)
    tried.append(f"local folder {str(folder)!r} (no such folder)")

    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(source)
    except HFValidationError:
        tried.append(f"Hub repo id {source!r} (not a valid repo id)")
        raise ModelNotFoundError(f"cannot load model {source!r}; tried " + "; ".join(tried)) from None

    if _in_hub_cache(source, revision):
        return source
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        tried.append(f"Hub repo {source!r} (not in the local cache, and HF_HUB_OFFLINE is set)")
        raise ModelNotFoundError(f"cannot load model {source!r}; tried " + "; ".join(tried))
    if not _reachable(constants.ENDPOINT):
        tried.append(f"Hub repo {source!r} ({constants.ENDPOINT} is unreachable)")
        raise ModelNotFoundError(f"cannot load model {source!r}; tried " + "; ".join(tried))
    return _check_on_hub(source, revision, tried)


def detect_kind(config) -> str:
    """'masked', 'causal' or 'continuous', from the model type and architecture the checkpoint declares."""
    model_type = getattr(config, "model_type", None)
    for known in FAMILIES.values():
        if model_type in known.model_types:
            return known.kind
    for arch in getattr(config, "architectures", None) or []:
        if arch.endswith("ForMaskedLM"):
            return "masked"
        if arch.endswith(("ForCausalLM", "LMHeadModel")):
            return "causal"
    # transformers 5 no longer exports the mapping tables from its top level; they live here in 4.x and 5.x
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_FOR_MASKED_LM_MAPPING_NAMES

    if getattr(config, "is_decoder", False) or model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        if model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
            return "causal"
    if model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return "masked"
    raise ValueError(f"cannot tell whether model type {model_type!r} is masked or causal; pass kind=")


def _auto_class(kind: str):
    import transformers

    return getattr(transformers, family(kind).auto_class)


def _in_hub_cache(repo_id: str, revision: str | None) -> bool:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    return isinstance(found, str)


def _reachable(endpoint: str) -> bool:
    """One TCP connection attempt to the Hub endpoint, so an offline machine fails in seconds."""
    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=_HUB_PROBE_TIMEOUT):
            return True
    except OSError:
        return False


def _check_on_hub(repo_id: str, revision: str | None, tried: list[str]) -> str:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    try:
        HfApi().model_info(repo_id, revision=revision)  # token from HF_TOKEN or `hf auth login`
    except RepositoryNotFoundError:
        tried.append(f"Hub repo {repo_id!r} (not found, or private without a token)")
        raise ModelNotFoundError(f"cannot load model {repo_id!r}; tried " + "; ".join(tried)) from None
    except HfHubHTTPError as e:
        tried.append(f"Hub repo {repo_id!r} ({e})")
        raise ModelNotFoundError(f"cannot load model {repo_id!r}; tried " + "; ".join(tried)) from None
    return repo_id
