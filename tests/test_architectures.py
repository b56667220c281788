"""Checkpoints users bring: kinds detected from any config, ALBERT's shared layers under the key/value
cache, MPNet's position limit, no doubled BOS, and transformers 5's cache keyword. Tiny real models,
built here. And the matrix: every masked architecture transformers ships through every operation
(`bench/architectures.py`)."""

from __future__ import annotations

import warnings

import pytest
import torch

import dlm
from dlm.cache import KVCache
from dlm.generation import causal_canvas
from dlm.loading import detect_kind
from bench import architectures as matrix
from tests.conftest import TINY, _save, bpe_tokenizer, wordpiece_tokenizer


@pytest.mark.parametrize("model_type, architectures, kind", [
    ("bert", None, "masked"),  # no `architectures` at all
    ("bert", ["BertForPreTraining"], "masked"),  # another head of a masked architecture
    ("electra", ["ElectraForPreTraining"], "masked"),
    ("roberta", ["RobertaModel"], "masked"),
    ("gpt2", None, "causal"),
    ("llama", ["LlamaModel"], "causal"),
])
def test_kind_is_detected_from_any_config(model_type, architectures, kind):
    from transformers import AutoConfig

    config = AutoConfig.for_model(model_type)
    config.architectures = architectures
    assert detect_kind(config) == kind


@pytest.fixture(scope="module")
def albert(tmp_path_factory):
    """ALBERT runs one attention module in every layer (num_hidden_groups=1)."""
    from transformers import AlbertConfig, AlbertForMaskedLM

    tok = wordpiece_tokenizer()
    torch.manual_seed(0)
    config = AlbertConfig(vocab_size=len(tok), embedding_size=16, max_position_embeddings=128,
                          pad_token_id=tok.pad_token_id, **{**TINY, "num_hidden_layers": 3})
    return dlm.load(_save(AlbertForMaskedLM(config), tok, tmp_path_factory.mktemp("albert")))


def test_the_cache_is_exact_on_albert_shared_layers(albert):
    model = albert.model
    torch.manual_seed(1)
    ids = torch.randint(5, albert.tokenizer.vocab_size - 1, (2, 30))
    with torch.inference_mode():
        cache = KVCache(model)
        with cache.fill():
            full = model(input_ids=ids).logits.float()
        for lo, hi in ((0, 30), (8, 20)):
            torch.testing.assert_close(cache.forward(ids, lo, hi), full[:, lo:hi], atol=1e-5, rtol=1e-5)
    exact = dlm.generate(albert, "the cat", length=8, steps=8, block_length=4, temperature=0, seed=0)
    cached = dlm.generate(albert, "the cat", length=8, steps=8, block_length=4, temperature=0, seed=0, cache="dual")
    assert cached.texts[0].startswith("the cat") and len(cached.steps) == len(exact.steps) == 8


@pytest.fixture(scope="module")
def mpnet(tmp_path_factory):
    from transformers import MPNetConfig, MPNetForMaskedLM

    tok = bpe_tokenizer()
    torch.manual_seed(0)
    config = MPNetConfig(vocab_size=len(tok), max_position_embeddings=40, pad_token_id=tok.pad_token_id,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, **TINY)
    return dlm.load(_save(MPNetForMaskedLM(config), tok, tmp_path_factory.mktemp("mpnet")))


def test_mpnet_positions_start_after_padding(mpnet):
    limit = 40 - mpnet.tokenizer.pad_token_id - 1
    assert mpnet.max_positions == limit
    dlm.generate(mpnet, "", length=limit - 2, steps=2, seed=0)  # <s> + masks + </s> fills every position
    with pytest.raises(ValueError, match=f"the model has {limit}"):
        dlm.generate(mpnet, "", length=limit - 1, steps=2, seed=0)
    with pytest.raises(ValueError, match="key/value caching needs .* sdpa"):  # MPNet has no sdpa: a clear refusal
        dlm.generate(mpnet, "the", length=8, steps=8, block_length=4, cache="dual", seed=0)


def test_a_prompt_that_starts_with_bos_gets_no_second_one(gpt2):
    bos = gpt2.tokenizer.bos_token
    plain, marked = causal_canvas(gpt2, "the cat", 4), causal_canvas(gpt2, bos + "the cat", 4)
    assert torch.equal(plain.ids, marked.ids)
    assert int((marked.ids == gpt2.bos_id).sum()) == 1
    assert dlm.log_likelihood(gpt2, "sat", bos + "the cat").log_likelihood == pytest.approx(
        dlm.log_likelihood(gpt2, "sat", "the cat").log_likelihood)


def test_causal_generation_uses_transformers_current_cache_keyword(gpt2):
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*past_key_values.*", category=FutureWarning)
        trace = dlm.generate(gpt2, "the cat", length=6, temperature=0, seed=0)
    full = gpt2.model(input_ids=torch.tensor([trace.steps[-1].canvas[0, :-1].tolist()])).logits[0, -1]
    assert int(full.argmax()) == int(trace.steps[-1].canvas[0, -1])  # cached steps equal the uncached forward


# architectures whose attention the key/value cache cannot route (no sdpa with position ids): it refuses them
NO_CACHE = {"mobilebert", "deberta", "deberta-v2", "mpnet", "big_bird", "convbert", "megatron-bert", "rembert", "roformer",
            "squeezebert", "longformer", "funnel", "fnet", "nystromformer", "yoso", "mra", "ibert"}


@pytest.fixture(scope="module")
def tokenizer():
    return matrix.bundled_tokenizer()


@pytest.mark.parametrize("model_type", sorted(matrix.ARCHITECTURES))
def test_every_masked_architecture_runs_every_operation(model_type, tokenizer, tmp_path):
    """Generate (each remasking rule), blocks, both caches (exact on a one-step-per-block run, or a clear
    refusal), CFG, infill, the ELBO and the CLI, on a tiny random checkpoint loaded as a user's folder."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    if model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        pytest.skip(f"this transformers has no {model_type}")
    cells = matrix.check(matrix.build(model_type, tmp_path / "model", tokenizer))
    expected = {op: "ok" for op in matrix.OPERATIONS}
    if model_type in NO_CACHE:
        expected.update({"cache prefix": "refused", "cache dual": "refused"})
    assert {op: cell.split(":")[0] for op, cell in cells.items()} == expected, cells
    for op in ("cache prefix", "cache dual"):
        assert cells[op] == "ok" or "key/value caching" in cells[op]


def test_every_text_masked_architecture_is_in_the_matrix():
    """A transformers upgrade that adds a masked LM shows up here, to be added to the matrix or left out."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    assert set(MODEL_FOR_MASKED_LM_MAPPING_NAMES) <= set(matrix.ARCHITECTURES) | set(matrix.NOT_TEXT_MASKED_LMS)


def test_a_fixed_length_architecture_is_refused_at_load(tokenizer, tmp_path):
    """A Nystromformer with fewer landmarks than its segment length computes only at that one length."""
    from transformers import AutoConfig, AutoModelForMaskedLM

    config = AutoConfig.for_model("nystromformer", vocab_size=len(tokenizer), max_position_embeddings=64,
                                  pad_token_id=tokenizer.pad_token_id, **matrix.TINY,
                                  **matrix.FIXED_LENGTH["nystromformer"])
    AutoModelForMaskedLM.from_config(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="only at exactly 8 tokens"):
        dlm.load(str(tmp_path))
