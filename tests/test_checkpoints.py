"""LLaDA and Dream checkpoints without remote code (dlm.checkpoints): tiny checkpoints in the published
layouts (tests/data/remote/layouts.py: the public tensor names and config keys, toy sizes) load with
`dlm.load(folder)` onto transformers' LlamaForCausalLM / Qwen2ForCausalLM, and their logits equal the
ORIGINAL modeling code's (tests/data/{llada,dream}_parity.safetensors, made by
tests/data/remote/make_fixtures.py from the copies in tests/data/remote/<family>/). Then the sampler, the
ELBO and the key/value cache on both, and the guards: the mask id and the length limit come from
config.json, no remote module is ever imported, and trust_remote_code=True skips the mapping."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import dlm
from dlm import checkpoints
from dlm.cache import KVCache
from dlm.config import REMASKING
from dlm.shifted import canvas_logits, is_bidirectional, shift_logits
from tests.data.remote import layouts

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = {
    "llada": (layouts.write_llada, layouts.LLADA_CONFIG, "LlamaForCausalLM", False),
    "dream": (layouts.write_dream, layouts.DREAM_CONFIG, "Qwen2ForCausalLM", True),
}
TOLERANCE = 1e-4  # max |delta logit| against the original code, fp32


def remote_modules(folder: Path | None = None) -> set[str]:
    """Modules that transformers' remote-code loader (or anything else) imported from a checkpoint: the
    `transformers_modules` namespace, and any module whose file lies in `folder`."""
    found = {name for name in sys.modules if name.split(".")[0] == "transformers_modules"}
    if folder is not None:
        root = str(folder.resolve())
        found |= {name for name, module in list(sys.modules.items())
                  if str(getattr(module, "__file__", None) or "").startswith(root)}
    return found


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """Both tiny checkpoints, each with the original remote code beside it (which must stay unread)."""
    base = tmp_path_factory.mktemp("published")
    return {family: write(base / family) for family, (write, *_rest) in FAMILIES.items()}


@pytest.fixture(scope="module")
def models(folders) -> dict[str, dlm.LanguageModel]:
    before = remote_modules()
    loaded = {family: dlm.load(str(folder)) for family, folder in folders.items()}
    for family, folder in folders.items():
        assert remote_modules(folder) - before == set(), f"{family}: a native load imported remote code"
    return loaded


@pytest.fixture(params=sorted(FAMILIES))
def family(request) -> str:
    return request.param


def fixture(family: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(layouts.DATA / f"{family}_parity.safetensors")


# ---- recognising and mapping the layouts -----------------------------------------------------------


def test_layouts_are_recognised_by_their_published_config():
    assert checkpoints.recognise(layouts.LLADA_CONFIG) is checkpoints.llada.LAYOUT
    assert checkpoints.recognise(layouts.DREAM_CONFIG) is checkpoints.dream.LAYOUT
    assert checkpoints.llada.LAYOUT.model_types == ("llada",) and checkpoints.dream.LAYOUT.model_types == ("Dream",)
    others = [
        {"model_type": "llama", "architectures": ["LlamaForCausalLM"]},
        {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"]},
        {"model_type": "dream", "architectures": ["DreamModel"]},  # model_type is case-sensitive
        {**layouts.DREAM_CONFIG, "architectures": ["DreamForCausalLM"]},  # another class behind the same type
        {**layouts.LLADA_CONFIG, "architectures": ["LLaDAMoEModelLM"]},
        {},
        None,
    ]
    for raw in others:
        assert checkpoints.recognise(raw) is None, raw


def test_tensor_names_map_onto_the_transformers_model(family):
    """Every published tensor name renames to exactly the transformers model's parameter names."""
    import transformers

    _, raw, model_class, _ = FAMILIES[family]
    layout = checkpoints.recognise(raw)
    names = (layouts.llada_tensors if family == "llada" else layouts.dream_tensors)(raw)
    with torch.device("meta"):
        model = getattr(transformers, model_class)(layout.build_config(raw))
    expected = {name: tuple(p.shape) for name, p in model.state_dict().items()}
    renamed = {layout.rename(name): shape for name, shape in names.items()}
    assert renamed == expected


def test_config_translation():
    llada = checkpoints.llada.build_config(layouts.LLADA_CONFIG)
    assert (llada.hidden_size, llada.num_hidden_layers, llada.num_attention_heads, llada.num_key_value_heads,
            llada.intermediate_size, llada.vocab_size, llada.max_position_embeddings) == (32, 2, 4, 2, 64, 128, 48)
    assert llada.rope_parameters["rope_theta"] == 500000.0 and llada.rms_norm_eps == 1e-5
    assert not llada.tie_word_embeddings and not llada.attention_bias
    dream = checkpoints.dream.build_config(layouts.DREAM_CONFIG)
    assert (dream.hidden_size, dream.num_hidden_layers, dream.num_attention_heads, dream.num_key_value_heads,
            dream.intermediate_size, dream.vocab_size, dream.max_position_embeddings) == (32, 2, 4, 2, 64, 128, 40)
    assert dream.rope_parameters["rope_theta"] == 1e6 and not dream.use_sliding_window
    # a published 8B config: LLaDA's own defaults fill what it leaves out, e.g. n_kv_heads -> n_heads
    real = {**layouts.LLADA_CONFIG, "d_model": 4096, "n_heads": 32, "n_kv_heads": None, "n_layers": 32,
            "mlp_hidden_size": 12288, "embedding_size": 126464, "vocab_size": 126464, "max_sequence_length": 4096,
            "mask_token_id": 126336}
    config = checkpoints.native_config(checkpoints.llada.LAYOUT, real)
    assert (config.num_key_value_heads, config.head_dim, config.max_position_embeddings) == (32, 128, 4096)
    assert config.mask_token_id == 126336 and config.dlm["mask_token_id"] == 126336


@pytest.mark.parametrize("key, value", [("include_bias", True), ("block_type", "sequential"), ("rope", False),
                                        ("activation_type", "swiglu"), ("attention_layer_norm", True)])
def test_a_llada_feature_llama_lacks_is_refused(key, value):
    with pytest.raises(ValueError, match=f"{key}=.*trust_remote_code=True"):
        checkpoints.llada.build_config({**layouts.LLADA_CONFIG, key: value})


# ---- parity with the original code -----------------------------------------------------------------


def test_logits_equal_the_original_code(models, family):
    """The fixture holds the original model's logits for these ids (fp32); the native model gives the same,
    and the canvas logits the sampler reads are them (LLaDA) or them shifted by one (Dream)."""
    lm, stored = models[family], fixture(family)
    ids, original = stored["input_ids"], stored["logits"]
    assert original.shape == (*ids.shape, FAMILIES[family][1]["vocab_size"])
    with torch.inference_mode():
        raw = lm.model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.float()
        unmasked = lm.model(input_ids=ids).logits.float()
        canvas = canvas_logits(lm.model, ids, torch.ones_like(ids)).float()
    delta = (raw - original).abs().max().item()
    print(f"{family}: max |native - original logit| = {delta:.3g}")
    assert delta < TOLERANCE
    assert (unmasked - original).abs().max().item() < TOLERANCE
    expected = shift_logits(original) if lm.shifted else original
    assert (canvas - expected).abs().max().item() < TOLERANCE
    assert original.std() > 0.5, "the fixture is not degenerate"


@pytest.mark.slow  # a fresh interpreter that imports transformers and runs both originals: ~15 s of CPU
def test_the_fixtures_come_from_the_original_code():
    """Recompute both fixtures from the original modeling code (in a fresh interpreter, so its modules
    never enter this one) and compare them with the stored ones: the stored logits are still what the
    original code computes under the installed torch and transformers."""
    result = subprocess.run([sys.executable, str(ROOT / "tests/data/remote/make_fixtures.py"), "--check"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "llada: max" in result.stdout and "dream: max" in result.stdout


# ---- what the native load produces -----------------------------------------------------------------


def test_loaded_model(models, family):
    _, raw, model_class, shifted = FAMILIES[family]
    lm = models[family]
    assert type(lm.model).__name__ == model_class and lm.kind == "masked"
    assert lm.shifted is shifted and is_bidirectional(lm.model) and lm.model.config.is_causal is False
    assert lm.card == {"kind": "masked", "shifted": shifted, "attention": "bidirectional",
                       "mask_token_id": raw["mask_token_id"], "layout": "LLaDA" if family == "llada" else "Dream"}
    assert not lm.model.training and lm.model.dtype == torch.float32


def test_mask_id_and_length_limit_come_from_the_config(models, folders, family, tmp_path):
    import shutil

    _, raw, _, _ = FAMILIES[family]
    lm = models[family]
    limit_key = "max_sequence_length" if family == "llada" else "max_position_embeddings"
    assert lm.tokenizer.mask_token_id is None, "the tokenizer names no mask: the id can only come from config.json"
    assert lm.mask_id == raw["mask_token_id"] and lm.max_positions == raw[limit_key]
    # change both in config.json: the loaded model follows
    folder = tmp_path / family
    shutil.copytree(folders[family], folder)
    config = json.loads((folder / "config.json").read_text())
    config["mask_token_id"], config[limit_key] = 3, 24
    (folder / "config.json").write_text(json.dumps(config))
    changed = dlm.load(str(folder))
    assert changed.mask_id == 3 and changed.max_positions == 24
    with pytest.raises(ValueError, match="24"):
        dlm.generate(changed, "the cat", length=30, steps=2)


def test_no_remote_code_is_imported(folders, family):
    """The folders hold the original modeling files (and auto_map points at them): a native load reads
    none of them, and neither does its tokenizer (Dream's names a remote DreamTokenizer)."""
    before = remote_modules()
    lm = dlm.load(str(folders[family]))
    assert remote_modules(folders[family]) - before == set()
    assert type(lm.tokenizer).__module__.startswith("transformers.")


def test_trust_remote_code_runs_the_checkpoints_own_code(folders, monkeypatch):
    """With trust_remote_code=True the native mapping is skipped: loading goes straight to transformers'
    Auto classes with trust_remote_code=True (stopped here before any remote code runs)."""
    import transformers

    calls = []

    def refuse(*args, **kwargs):
        calls.append(kwargs.get("trust_remote_code"))
        raise RuntimeError("the Auto classes were asked")

    monkeypatch.setattr(checkpoints, "load", lambda *a, **k: pytest.fail("the native mapping ran"))
    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", refuse)
    for folder in folders.values():
        with pytest.raises(RuntimeError, match="Auto classes"):
            dlm.load(str(folder), trust_remote_code=True)
    assert calls == [True, True]


def test_wrong_kind_and_mismatched_tensors_are_refused(folders, tmp_path):
    import shutil

    with pytest.raises(ValueError, match="masked-diffusion"):
        dlm.load(str(folders["llada"]), kind="causal")
    folder = tmp_path / "three-layers"
    shutil.copytree(folders["llada"], folder)
    config = json.loads((folder / "config.json").read_text())
    config["n_layers"] = 3  # the checkpoint has two
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="missing_keys"):
        dlm.load(str(folder))


# ---- sampler, cache and ELBO on both ---------------------------------------------------------------


def check_trace(trace, mask_id: int) -> None:
    previous = trace.initial
    for step in trace.steps:
        assert step.committed.sum() >= 1
        assert (step.committed <= (previous == mask_id)).all(), "only masked positions are committed"
        assert torch.equal(step.canvas[:, trace.fixed], trace.initial[:, trace.fixed])
        previous = step.canvas
    assert not (previous == mask_id).any(), "no mask left"


@pytest.mark.parametrize("remasking", sorted(REMASKING))
def test_generate(models, family, remasking):
    lm = models[family]
    for options in (dict(length=8, steps=4), dict(length=12, steps=6, block_length=4, cache="dual"),
                    dict(length=12, steps=6, block_length=4, cache="prefix", temperature=0.8, num_samples=2)):
        trace = dlm.generate(lm, "the cat", remasking=remasking, seed=0, **options)
        check_trace(trace, lm.mask_id)
        assert len(trace.texts) == options.get("num_samples", 1) and trace.texts[0].startswith("the cat")
    check_trace(dlm.generate(lm, length=6, steps=3, seed=0), lm.mask_id)  # no prompt (Dream: BOS goes first)


def test_cache_windows_equal_the_full_forward(models, family):
    """Fast-dLLM's cache on an unchanged canvas gives the full forward's canvas logits (shifted or not)."""
    lm = models[family]
    ids = torch.randint(3, 100, (2, 20), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        cache = KVCache(lm.model)
        with cache.fill():
            full = canvas_logits(lm.model, ids).float()
        for lo, hi in ((1, 20), (5, 9), (5, 20), (16, 20)):
            torch.testing.assert_close(cache.forward(ids, lo, hi), full[:, lo:hi], atol=1e-5, rtol=1e-5)


def exact_elbo(lm, ids: torch.Tensor, scored: list[int]) -> float:
    """The ELBO by enumerating every mask pattern of the scored positions, reading log p(x_i | .) from
    the raw output at i - 1 (Dream) or i (LLaDA)."""
    shift, total, L = int(lm.shifted), 0.0, len(scored)
    for count in range(1, L + 1):
        subsets = list(itertools.combinations(scored, count))
        for subset in subsets:
            noisy = ids.clone()
            noisy[list(subset)] = lm.mask_id
            with torch.inference_mode():
                raw = lm.model(input_ids=noisy[None], attention_mask=torch.ones_like(noisy[None])).logits[0]
            logp = torch.log_softmax(raw.double(), dim=-1)
            total += L / count * sum(float(logp[i - shift, ids[i]]) for i in subset) / (L * len(subsets))
    return total


def test_log_likelihood(models, family):
    """The Monte-Carlo ELBO converges to the enumerated one: Dream's reads the shifted outputs."""
    from dlm.generation import encode, special_framing, start_ids

    lm = models[family]
    text = "the cat sat"
    target = encode(lm.tokenizer, text)
    prefix, suffix = special_framing(lm.tokenizer)
    if lm.shifted and not prefix:
        prefix = start_ids(lm)
    assert 2 <= len(target) <= 5 and (not lm.shifted or prefix)
    ids = torch.tensor(prefix + target + suffix)
    exact = exact_elbo(lm, ids, list(range(len(prefix), len(prefix) + len(target))))
    result = dlm.log_likelihood(lm, text, num_samples=600, batch_size=200, seed=0)
    assert result.num_tokens == len(target) and math.isfinite(result.log_likelihood) and result.log_likelihood < 0
    assert abs(result.log_likelihood - exact) < 4 * result.stderr + 1e-3, (result.log_likelihood, exact, result.stderr)


def test_trust_remote_code_really_runs_their_code_or_says_why(tmp_path):
    """With the original code in the folder and trust_remote_code=True, dlm builds the checkpoint's own class
    (AutoModel, from its auto_map) with the mask id and shift of its layout. Their code was written for
    transformers 4.4x: where it cannot run, the error names it and the way out, and the native path works."""
    for family, (write, _, _, shifted) in FAMILIES.items():
        folder = write(tmp_path / family)
        try:
            lm = dlm.load(str(folder), trust_remote_code=True)
        except ValueError as error:
            assert "own code failed on transformers" in str(error) and "without trust_remote_code" in str(error)
        else:
            assert lm.card["remote_code"] and lm.shifted == shifted and lm.kind == "masked"
            assert type(lm.model).__module__.startswith("transformers_modules")
            assert dlm.generate(lm, "hello", length=4, steps=2, seed=0).texts
        assert dlm.load(str(folder)).kind == "masked"
