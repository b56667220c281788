"""The Fast-dLLM key/value cache (dlm.cache) and the sampler's use of it."""

from __future__ import annotations

import pytest
import torch

import dlm
from dlm.cache import KVCache, install
from tests.conftest import TINY, _save, bpe_tokenizer


@pytest.fixture(scope="module")
def modernbert(tmp_path_factory):
    """A tiny ModernBERT (rotary positions) with a sliding-window layer between two global ones."""
    from transformers import ModernBertConfig, ModernBertForMaskedLM

    tok = bpe_tokenizer()
    torch.manual_seed(0)
    config = ModernBertConfig(
        vocab_size=len(tok), max_position_embeddings=128, pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, cls_token_id=tok.bos_token_id,
        sep_token_id=tok.eos_token_id, num_hidden_layers=3, global_attn_every_n_layers=2, local_attention=8,
        hidden_size=32, num_attention_heads=2, intermediate_size=64,
    )
    return dlm.load(_save(ModernBertForMaskedLM(config), tok, tmp_path_factory.mktemp("modernbert")))


@pytest.fixture(params=["bert", "roberta", "modernbert"])
def masked(request):
    return request.getfixturevalue(request.param)


def test_window_of_an_unchanged_canvas_equals_the_full_forward(masked):
    """Positions fed alone, the rest from the cache, give the full forward's logits exactly: the
    positions (absolute, fairseq-offset or rotary) and sliding-window masks line up."""
    model = masked.model
    torch.manual_seed(1)
    ids = torch.randint(5, masked.tokenizer.vocab_size - 1, (2, 40))
    with torch.inference_mode():
        before = model(input_ids=ids).logits.float()
        cache = KVCache(model)
        with cache.fill():
            full = model(input_ids=ids).logits.float()
        for lo, hi in ((0, 40), (13, 29), (30, 40)):
            torch.testing.assert_close(cache.forward(ids, lo, hi), full[:, lo:hi], atol=1e-5, rtol=1e-5)
        # outside a cache's context the routed attention is the plain one
        torch.testing.assert_close(model(input_ids=ids).logits.float(), before)
        changed = ids.clone()
        changed[:, 20] = 7
        window = cache.forward(changed, 13, 29)
        exact = model(input_ids=changed).logits.float()[:, 13:29]
        assert not torch.allclose(window, full[:, 13:29])  # the window sees its own new token
        assert not torch.allclose(window, exact)  # but the rest of the canvas through stale keys: approximate


def test_empty_cache_and_causal_models_are_refused(roberta, gpt2):
    cache = KVCache(roberta.model)
    with pytest.raises(RuntimeError, match="empty"):
        cache.forward(torch.tensor([[5, 6]]), 0, 2)
    with pytest.raises(ValueError, match="bidirectional"):
        install(gpt2.model)
    with pytest.raises(ValueError, match="cache"):
        dlm.stream(roberta, "the", length=8, cache="full")


@pytest.mark.parametrize("cfg_scale", [0.0, 1.5])
def test_one_step_per_block_is_exact(modernbert, cfg_scale):
    """Every step is then a block's first, which sees the whole canvas: the cache changes nothing."""
    options = dict(length=24, steps=3, block_length=8, temperature=0.9, seed=3, cfg_scale=cfg_scale, num_samples=2)
    exact = dlm.generate(modernbert, "the cat", **options)
    for cache in ("prefix", "dual"):
        cached = dlm.generate(modernbert, "the cat", cache=cache, **options)
        assert cached.texts == exact.texts
        for a, b in zip(cached.steps, exact.steps):
            assert torch.equal(a.canvas, b.canvas) and a.nfe == b.nfe


def test_cached_run_feeds_only_its_window(modernbert):
    """Within a block the later steps change guesses only inside the window ("dual": the block;
    "prefix": the block and what follows), and the run keeps every sampler invariant."""
    options = dict(length=24, steps=12, block_length=8, remasking="low_confidence", seed=0)
    for cache in ("prefix", "dual"):
        trace = dlm.generate(modernbert, "the cat", cache=cache, **options)
        generated = (~trace.fixed).nonzero().flatten()
        start = int(generated[0])
        for previous, step in zip(trace.steps, trace.steps[1:]):
            if step.index % 4 == 0:  # a block's first step (4 steps per block of 8) sees the whole canvas
                continue
            block = (step.index // 4) * 8 + start
            hi = block + 8 if cache == "dual" else trace.initial.shape[1]
            outside = torch.ones(trace.initial.shape[1], dtype=torch.bool)
            outside[block:hi] = False
            assert torch.equal(step.guess[:, outside], previous.guess[:, outside])
            assert step.committed[:, outside].sum() == 0
        final = trace.steps[-1].canvas
        assert not (final == modernbert.mask_id).any()
        assert torch.equal(final[0, trace.fixed], trace.initial[0, trace.fixed])
        assert [s.nfe for s in trace.steps] == list(range(1, 13))
