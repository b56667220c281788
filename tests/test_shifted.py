"""Shifted masked diffusion on a causal LM (dlm.shifted; Dream, DiffuLLaMA): bidirectional attention,
the logits shift, the sampler, the ELBO against exact enumeration, the key/value cache, and
`train_diffusion --init-from-ar`. Tiny real transformers models, built here."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import math
import random
from pathlib import Path

import pytest
import torch

import dlm
from dlm.cache import KVCache
from dlm.config import REMASKING
from dlm.generation import forbidden_ids, infill_canvas, prompt_canvas
from dlm.likelihood import elbo_estimates
from dlm.sampling import forbid
from dlm.shifted import canvas_logits, from_causal_lm, is_bidirectional, is_shifted, make_bidirectional
from tests.conftest import _save, bpe_tokenizer


def tiny_causal_lms() -> dict[str, torch.nn.Module]:
    """GPT-2 (our AR baseline), Llama (LLaDA's family) and Qwen2 (Dream's), at toy size, in eval mode."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    sizes = dict(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                 num_key_value_heads=1, max_position_embeddings=32, bos_token_id=0, eos_token_id=1, pad_token_id=2)
    models = {
        "gpt2": GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=32, n_embd=16, n_layer=2, n_head=2,
                                           bos_token_id=0, eos_token_id=1, pad_token_id=2)),
        "llama": LlamaForCausalLM(LlamaConfig(**sizes)),
        "qwen2": Qwen2ForCausalLM(Qwen2Config(**sizes)),
    }
    return {name: model.eval() for name, model in models.items()}


@pytest.fixture(scope="module")
def shifted_dir(tmp_path_factory):
    """A tiny GPT-2 with our BPE tokenizer (which has <mask>), saved as a shifted diffusion checkpoint."""
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = bpe_tokenizer()
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=2, n_head=2,
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model = from_causal_lm(GPT2LMHeadModel(config))
    model.config.dlm = {**model.config.dlm, "mask_token": tok.mask_token, "sampler": {"length": 12, "steps": 12}}
    return _save(model, tok, tmp_path_factory.mktemp("shifted"))


@pytest.fixture(scope="module")
def shifted(shifted_dir):
    return dlm.load(shifted_dir)


def raw_logits(lm, ids: torch.Tensor) -> torch.Tensor:
    """The model's own outputs, unshifted: [:, i] is its output at position i."""
    with torch.inference_mode():
        return lm.model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.float()


# ---- (a) bidirectional attention -------------------------------------------------------------------


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_bidirectional_attention_sees_the_future(implementation):
    """After `make_bidirectional` the output at i depends on a token after i; before, it does not.
    With and without a padding mask: transformers skips building the mask when nothing is padded,
    and the kernel then falls back to each layer's own `is_causal`, so both switches matter."""
    ids = torch.randint(3, 50, (2, 10), generator=torch.Generator().manual_seed(0))
    later = ids.clone()
    later[:, 7] = torch.where(ids[:, 7] == 3, 4, 3)  # another token, after every position < 7
    padded = torch.tensor([[1] * 10, [1] * 9 + [0]])
    for name, causal in tiny_causal_lms().items():
        causal.set_attn_implementation(implementation)
        full = make_bidirectional(copy.deepcopy(causal))
        assert is_bidirectional(full) and not is_bidirectional(causal), name
        for attention in (None, torch.ones_like(ids), padded):
            with torch.no_grad():
                out = [m(input_ids=x, attention_mask=attention).logits[:, :7] for m in (causal, full) for x in (ids, later)]
            torch.testing.assert_close(out[0], out[1], msg=f"{name}: the causal model must not see the future")
            assert (out[2] - out[3]).abs().max() > 1e-4, f"{name} ({implementation}): bidirectional must see it"


def test_switch_is_refused_for_a_model_without_attention_flags():
    with pytest.raises(ValueError, match="no attention layers"):
        make_bidirectional(torch.nn.Sequential(torch.nn.Linear(2, 2)))


def test_checkpoint_format_and_loading(shifted, shifted_dir):
    config = json.loads((Path(shifted_dir) / "config.json").read_text())
    assert config["architectures"] == ["GPT2LMHeadModel"], "the causal LM's own architecture"
    assert config["dlm"]["kind"] == "masked" and config["dlm"]["shifted"] is True
    assert config["dlm"]["attention"] == "bidirectional" and config["is_causal"] is False
    assert shifted.kind == "masked" and shifted.shifted and is_bidirectional(shifted.model)
    assert shifted.mask_id == shifted.tokenizer.mask_token_id
    assert shifted.max_positions == 64  # GPT-2's n_positions
    with pytest.raises(ValueError, match="shifted"):
        dlm.load(shifted_dir, kind="causal")


def test_foreign_checkpoint_names_its_mask_in_the_config(shifted_dir, tmp_path):
    """A checkpoint whose tokenizer has no mask token (Dream's names it only in config.json)."""
    import shutil

    folder = tmp_path / "foreign"
    shutil.copytree(shifted_dir, folder)
    mask = bpe_tokenizer().mask_token_id
    config = json.loads((folder / "config.json").read_text())
    config["dlm"] = {"kind": "masked", "shifted": True, "attention": "bidirectional"}
    config["mask_token_id"] = mask
    (folder / "config.json").write_text(json.dumps(config))
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    tokenizer_config.pop("mask_token", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    lm = dlm.load(str(folder))
    assert lm.tokenizer.mask_token_id is None and lm.mask_id == mask
    assert mask in forbidden_ids(lm, allow_eos=True)
    trace = dlm.generate(lm, "the cat", length=6, steps=3, seed=0)
    assert not (trace.steps[-1].canvas == mask).any()


# ---- (b) the shift ---------------------------------------------------------------------------------


def test_canvas_logits_are_the_outputs_one_position_earlier(shifted):
    ids = torch.randint(5, 300, (2, 20), generator=torch.Generator().manual_seed(0))
    raw = raw_logits(shifted, ids)
    with torch.inference_mode():
        seam = canvas_logits(shifted.model, ids, torch.ones_like(ids)).float()
    torch.testing.assert_close(seam[:, 1:], raw[:, :-1])
    assert is_shifted(shifted.model)
    rows = torch.rand(2, 20, generator=torch.Generator().manual_seed(1)) < 0.4
    rows[0, 0] = rows[0, 1] = True  # position 0 reads its own output, position 1 the same one
    with torch.inference_mode():
        some = canvas_logits(shifted.model, ids, torch.ones_like(ids), rows=rows).float()
    torch.testing.assert_close(some, seam[rows])  # the projection run only there gives the same logits


def test_sampler_logits_for_position_i_come_from_output_i_minus_1(shifted):
    """The sampler's own logits (with and without guidance), and the first step's greedy guesses."""
    generation = dlm.stream(shifted, "the cat", length=8, steps=8, seed=0)
    canvas = generation.initial
    prompt = generation.canvas.fixed & ~generation.canvas.hidden
    raw = raw_logits(shifted, canvas)
    everywhere = torch.ones_like(canvas, dtype=torch.bool)
    with torch.inference_mode():
        logits = generation._logits(canvas, prompt, everywhere).reshape(*canvas.shape, -1)
    torch.testing.assert_close(logits[:, 1:], raw[:, :-1])

    guided = dlm.stream(shifted, "the cat", length=8, steps=8, seed=0, cfg_scale=2.0)
    uncond = raw_logits(shifted, canvas.masked_fill(prompt, shifted.mask_id))
    with torch.inference_mode():
        logits = guided._logits(canvas, prompt, everywhere).reshape(*canvas.shape, -1)
    torch.testing.assert_close(logits[:, 1:], (uncond + 3.0 * (raw - uncond))[:, :-1])

    first = next(iter(dlm.stream(shifted, "the cat", length=8, steps=8, seed=0, temperature=0.0)))
    expected = raw.clone()
    forbid(expected, forbidden_ids(shifted, allow_eos=True))
    generated = ~generation.canvas.fixed
    assert torch.equal(first.guess[:, generated], expected.argmax(-1)[:, :-1][:, generated[1:]])


# ---- (c) the ELBO against exact enumeration --------------------------------------------------------


def exact_elbo(lm, ids: torch.Tensor, scored: list[int], shift: int = 1) -> tuple[float, list, list]:
    """E_l E_{M | l} [ L / l * sum_{i in M} log p(x_i | x_M) ], l ~ U{1..L}, M uniform of size l, by
    enumerating every mask pattern; log p(x_i | .) is read from the raw output at i - shift."""
    L = len(scored)
    total, patterns, terms = 0.0, [], []
    for count in range(1, L + 1):
        subsets = list(itertools.combinations(scored, count))
        for subset in subsets:
            noisy = ids.clone()
            noisy[list(subset)] = lm.mask_id
            logp = torch.log_softmax(raw_logits(lm, noisy.unsqueeze(0))[0].double(), dim=-1)
            term = L / count * sum(float(logp[i - shift, ids[i]]) for i in subset)
            total += term / (L * len(subsets))
            mask = torch.zeros(len(ids), dtype=torch.bool)
            mask[list(subset)] = True
            patterns.append(mask)
            terms.append(term)
    return total, patterns, terms


def test_elbo_equals_exact_enumeration(shifted):
    text = "the cat sat"
    prefix, suffix = [shifted.tokenizer.bos_token_id], [shifted.tokenizer.eos_token_id]
    target = shifted.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert 2 <= len(target) <= 5
    ids = torch.tensor(prefix + target + suffix)
    scored = list(range(1, 1 + len(target)))
    exact, patterns, terms = exact_elbo(shifted, ids, scored)
    # every pattern's estimate is exactly its enumerated term: the estimator targets `exact`
    estimates = elbo_estimates(shifted, ids, torch.stack(patterns), len(target))
    torch.testing.assert_close(estimates, torch.tensor(terms, dtype=torch.float64), rtol=1e-5, atol=1e-5)
    # reading the unshifted outputs would give another number: the test can tell the two apart
    assert abs(exact_elbo(shifted, ids, scored, shift=0)[0] - exact) > 0.05
    # the Monte-Carlo estimate converges to it
    result = dlm.log_likelihood(shifted, text, num_samples=1200, batch_size=400, seed=0)
    assert result.num_tokens == len(target)
    assert abs(result.log_likelihood - exact) < 4 * result.stderr + 1e-3, (result.log_likelihood, exact, result.stderr)
    assert result.stderr < 0.02 * abs(exact)


# ---- (d) the sampler on a shifted model ------------------------------------------------------------


def check_invariants(trace, mask_id: int) -> None:
    fixed = trace.fixed
    previous = trace.initial
    assert fixed[0], "position 0 is never generated"
    for step in trace.steps:
        canvas = step.canvas
        assert torch.equal(canvas[:, fixed], trace.initial[:, fixed]), "prompt and fixed tokens never change"
        assert step.committed.sum() >= 1, "every step commits at least one token"
        assert (step.committed <= (previous == mask_id)).all(), "only masked positions are committed"
        assert ((canvas == mask_id) <= (previous == mask_id)).all(), "masks never come back"
        assert torch.equal(canvas[~step.committed], previous[~step.committed]), "only committed positions change"
        previous = canvas
    assert not (previous == mask_id).any(), "no mask left"


@pytest.mark.parametrize("remasking", sorted(REMASKING))
@pytest.mark.parametrize("block_length", [None, 4])
def test_sampler_invariants(shifted, remasking, block_length):
    options = dict(length=12, steps=6, remasking=remasking, block_length=block_length, temperature=0.9,
                   num_samples=2, seed=1)
    for extra in ({}, {"threshold": 0.05}, {"cfg_scale": 1.0}):
        trace = dlm.generate(shifted, "the cat", **options, **extra)
        check_invariants(trace, shifted.mask_id)
        if not extra:
            assert len(trace.steps) == 6 and all(s.committed.sum() == 4 for s in trace.steps)  # 2 rows x 2 per step


def test_infill_and_fixed_tokens(shifted):
    trace = dlm.generate(shifted, infill="[MASK] cat [MASK] [MASK] the mat", steps=3, seed=0)
    check_invariants(trace, shifted.mask_id)
    trace = dlm.generate(shifted, "the", length=8, steps=4, fixed={3: "dog"}, seed=0)
    check_invariants(trace, shifted.mask_id)


def test_a_canvas_never_needs_position_0(shifted):
    """With a tokenizer that frames nothing, BOS goes in front of a canvas that would start masked."""
    from tokenizers import processors

    tok = copy.deepcopy(shifted.tokenizer)
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(single="$A", special_tokens=[])
    bare = dataclasses.replace(shifted, tokenizer=tok)
    for canvas in (prompt_canvas(bare, "", 6, {}), infill_canvas(bare, "[MASK] cat [MASK]")):
        assert canvas.ids[0] == tok.bos_token_id and canvas.fixed[0] and canvas.hidden[0]
    assert prompt_canvas(bare, "the", 6, {}).ids[0] != tok.bos_token_id  # a prompt gives position 0 itself
    check_invariants(dlm.generate(bare, length=6, steps=3, seed=0), shifted.mask_id)
    assert math.isfinite(dlm.log_likelihood(bare, "the cat", num_samples=4).log_likelihood)


def test_cli_generate_and_elbo(shifted, shifted_dir, capsys):
    """`python -m dlm generate / elbo`; then a run with the Generate tab's kind of settings (it calls
    `dlm.stream` like this; importing the app here would cost more than the rest of the file)."""
    from dlm.cli import main

    assert main(["generate", "--model", shifted_dir, "--prompt", "the cat", "--length", "8", "--steps", "4",
                 "--seed", "0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["text"].startswith("the cat")
    assert main(["elbo", "--model", shifted_dir, "--text", "the cat sat", "--samples", "8", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert not result["exact"] and math.isfinite(result["log_likelihood"])
    generation = dlm.stream(shifted, "the cat", seed=0, length=8, steps=4, temperature=0.8, top_p=0.95,
                            remasking="margin", block_length=4, cache="dual", cfg_scale=0.5, num_samples=2)
    check_invariants(generation.run(), shifted.mask_id)


# ---- (e) the key/value cache -----------------------------------------------------------------------


def test_cache_windows_equal_the_full_forward(shifted):
    """Prefix and dual windows of an unchanged canvas give the full forward's (shifted) logits exactly,
    including the window's first position, whose prediction is the output just before the window."""
    ids = torch.randint(5, 300, (2, 40), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        cache = KVCache(shifted.model)
        with cache.fill():
            full = canvas_logits(shifted.model, ids).float()
        torch.testing.assert_close(full[:, 1:], raw_logits(shifted, ids)[:, :-1], atol=1e-5, rtol=1e-5)
        for lo, hi in ((1, 40), (13, 21), (13, 40), (32, 40)):  # dual blocks and prefix windows
            torch.testing.assert_close(cache.forward(ids, lo, hi), full[:, lo:hi], atol=1e-5, rtol=1e-5)
        with pytest.raises(ValueError, match="position 0"):
            cache.forward(ids, 0, 8)
        changed = ids.clone()
        changed[:, 15] = 7
        window = cache.forward(changed, 13, 21)
        assert not torch.allclose(window, full[:, 13:21])  # the window sees its own new token
        assert not torch.allclose(window, canvas_logits(shifted.model, changed).float()[:, 13:21])  # approximate


def test_cached_sampling(shifted):
    """One step per block: the cache changes nothing. More: guesses change only in the window."""
    options = dict(length=24, steps=3, block_length=8, temperature=0.9, seed=3, num_samples=2)
    exact = dlm.generate(shifted, "the cat", **options)
    for cache in ("prefix", "dual"):
        cached = dlm.generate(shifted, "the cat", cache=cache, **options)
        assert all(torch.equal(a.canvas, b.canvas) for a, b in zip(cached.steps, exact.steps))
    options = dict(length=24, steps=12, block_length=8, seed=0)
    for cache in ("prefix", "dual"):
        trace = dlm.generate(shifted, "the cat", cache=cache, **options)
        check_invariants(trace, shifted.mask_id)
        start = int((~trace.fixed).nonzero()[0])
        for previous, step in zip(trace.steps, trace.steps[1:]):
            if step.index % 4 == 0:  # a block's first step sees the whole canvas
                continue
            lo = (step.index // 4) * 8 + start
            hi = lo + 8 if cache == "dual" else trace.initial.shape[1]
            outside = torch.ones(trace.initial.shape[1], dtype=torch.bool)
            outside[lo:hi] = False
            assert torch.equal(step.guess[:, outside], previous.guess[:, outside])


# ---- (f) training from the AR model ----------------------------------------------------------------


def test_collator_keeps_position_0_clean():
    from training.collator import DiffusionCollator

    rows = [{"input_ids": list(range(10, 42))}] * 64
    batch = DiffusionCollator(4, 1, eps=0.5, prefix_fraction=0.0, clean_start=1, seed=0)(rows)
    assert not (batch["labels"][:, 0] != -100).any() and (batch["labels"][:, 1] != -100).any()
    assert int(batch["num_scored"]) == 64 * 31


def test_init_from_ar_trains_loads_and_generates(tmp_path, capsys):
    """A tiny AR GPT-2 (built here) becomes a shifted diffusion model in a short real run whose loss
    falls; the result loads as kind masked and generates, and says where it came from."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from training import train_diffusion

    tok = bpe_tokenizer()
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tok), n_positions=48, n_embd=32, n_layer=2, n_head=2, n_inner=64,
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    ar = _save(GPT2LMHeadModel(config), tok, tmp_path / "ar")
    rng = random.Random(0)  # regular sentences, learnable in a few dozen steps
    animals, places = ["cat", "dog", "bird", "fox", "girl", "man"], ["mat", "log", "hill", "boat", "road"]
    lines = {f"the {rng.choice(animals)} sat on the {rng.choice(places)} and the {rng.choice(animals)} "
             f"ran to the {rng.choice(places)} {rng.randint(0, 99)}" for _ in range(400)}
    data = tmp_path / "corpus.txt"
    data.write_text("\n".join(sorted(lines)) + "\n")

    def run(out, block_size: int, steps: int) -> int:
        return train_diffusion.main([
            "--init-from-ar", ar, "--data", str(data), "--output-dir", str(out), "--block-size", str(block_size),
            "--batch-size", "8", "--lr", "3e-3", "--warmup-steps", "2", "--max-steps", str(steps), "--logging-steps",
            "1", "--eval-steps", str(steps), "--save-steps", str(steps), "--eval-blocks", "8", "--num-samples", "1",
            "--threads", "1"])

    assert run(tmp_path / "too-long", 64, 1) == 2
    assert "longer than" in capsys.readouterr().err  # the AR model has 48 positions
    out = tmp_path / "from-ar"
    assert run(out, 32, 30) == 0
    history = json.loads((out / "checkpoint-30" / "trainer_state.json").read_text())["log_history"]
    losses = [h["loss"] for h in history if "loss" in h]
    assert sum(losses[-10:]) / 10 < sum(losses[:5]) / 5 - 0.5, losses  # per-batch losses are noisy (1/t weights)

    lm = dlm.load(str(out))
    assert lm.kind == "masked" and lm.shifted and is_bidirectional(lm.model)
    assert type(lm.model).__name__ == "GPT2LMHeadModel"
    trace = dlm.generate(lm, "the cat", seed=0)
    check_invariants(trace, lm.mask_id)
    assert trace.texts[0].startswith("the cat")
    record = json.loads((out / "dlm_run.json").read_text())
    assert record["init_from_ar"] == ar and record["base_model"] == ar
    assert record["dlm"]["shifted"] is True and ar in record["dlm"]["objective"]
    assert "initialised from the autoregressive model" in (out / "README.md").read_text()

    # continuing the shifted model (--init) keeps it shifted and says where it came from
    more = tmp_path / "continued"
    assert train_diffusion.main([
        "--init", str(out), "--data", str(data), "--output-dir", str(more), "--block-size", "32", "--batch-size", "8",
        "--lr", "1e-3", "--warmup-steps", "1", "--max-steps", "5", "--eval-steps", "5", "--save-steps", "5",
        "--eval-blocks", "8", "--num-samples", "0", "--threads", "1"]) == 0
    again = dlm.load(str(more))
    assert again.shifted and is_bidirectional(again.model)
    record = json.loads((more / "dlm_run.json").read_text())
    assert record["dlm"]["init_from_ar"] == ar and record["start_tokens"] > 0


def test_per_class_classifier_on_a_shifted_base(shifted_dir, tmp_path):
    """A shifted base fine-tunes into per-class models that load and score (its causal class, full attention)."""
    from training import train_classifier

    rows = [(f"the cat sat on the mat number {i}", "cat") for i in range(40)]
    rows += [(f"a dog ran down the road again {i}", "dog") for i in range(40)]
    data = tmp_path / "labelled.csv"
    data.write_text("text,label\n" + "".join(f"{t},{label}\n" for t, label in rows))
    out = tmp_path / "clf"
    assert train_classifier.main(["--design", "per-class", "--init", str(shifted_dir), "--data", str(data),
                                  "--output-dir", str(out), "--max-steps", "3", "--batch-size", "8",
                                  "--calibration-texts", "0", "--threads", "1", "--eval-pieces", "8"]) == 0
    for label in ("cat", "dog"):
        lm = dlm.load(str(out / f"class-{label}"))
        assert lm.shifted and is_bidirectional(lm.model)
    from dlm.classify import load_classifier

    predictions = load_classifier(out, max_samples=8).classify(["the cat sat on the mat", "a dog ran down the road"])
    assert [set(p.probabilities) for p in predictions] == [{"cat", "dog"}] * 2
    assert all(math.isfinite(v) for p in predictions for v in p.log_likelihoods.values())
