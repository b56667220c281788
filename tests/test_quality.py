"""Generated-text quality beyond perplexity: per-sample unigram entropy and MAUVE with the judge's features."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dlm.quality import (
    judge_features,
    judge_mauve,
    load_judge,
    mauve_buckets,
    mauve_score,
    mean_interval,
    paired_perplexity_ratio,
    perplexity_interval,
    unigram_entropy,
)


def split_words(text: str, add_special_tokens: bool = False) -> dict:
    """A stand-in tokenizer for closed forms: one token per whitespace-separated word."""
    return {"input_ids": text.split()}


# ---- unigram entropy ------------------------------------------------------------------------------


def test_unigram_entropy_closed_forms():
    k_equal = " ".join(["a", "b", "c", "d", "e"] * 7)  # 5 distinct tokens, 7 times each
    two_to_one = "x x y"
    got = unigram_entropy([k_equal, "z z z z", two_to_one, "   "], split_words)
    assert got[0] == pytest.approx(math.log(5))  # k tokens equally often: ln k
    assert got[1] == 0.0  # one token repeated
    assert got[2] == pytest.approx(-(2 / 3) * math.log(2 / 3) - (1 / 3) * math.log(1 / 3))
    assert math.isnan(got[3])  # no tokens, no distribution


def test_looping_text_has_lower_entropy_than_varied_text(gpt2_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gpt2_dir)
    looping = " the cat sat on the mat" * 8
    varied = ("once upon a time there was a little girl who lived in a village. it was the best of times, "
              "it was the worst of times. call me ishmael. in the beginning god created the heaven and the earth")
    loop_ids = tokenizer(looping, add_special_tokens=False)["input_ids"]
    varied_ids = tokenizer(varied, add_special_tokens=False)["input_ids"]
    assert abs(len(loop_ids) - len(varied_ids)) < 0.5 * len(varied_ids)  # comparable lengths
    h_loop, h_varied = unigram_entropy([looping, varied], tokenizer)
    assert len(set(loop_ids)) <= 8 and h_loop <= math.log(len(set(loop_ids))) + 1e-9  # one short phrase, looping
    assert h_loop < h_varied - 0.5
    # special tokens are not counted: one word repeated is exactly 0 although the tokenizer frames texts in <s> ... </s>
    [token] = tokenizer(" the", add_special_tokens=False)["input_ids"]
    assert len(tokenizer(" the the the", add_special_tokens=True)["input_ids"]) == 5
    assert unigram_entropy([" the the the"], tokenizer) == [0.0]


def test_mean_interval_bootstrap():
    values = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, float("nan")]
    summary = mean_interval(values, seed=0)
    assert summary["n"] == 8 and summary["mean"] == pytest.approx(4.5)  # NaN left out
    assert summary["low"] < 4.5 < summary["high"] and 2.0 < summary["low"] and summary["high"] < 7.0
    assert mean_interval(values, seed=0) == summary  # the seed fixes the resamples
    wider = mean_interval(values, confidence=0.99, seed=0)
    assert wider["low"] <= summary["low"] and wider["high"] >= summary["high"]
    constant = mean_interval([2.5] * 10)
    assert constant["low"] == constant["mean"] == constant["high"] == 2.5
    assert math.isnan(mean_interval([])["mean"]) and mean_interval([float("nan")])["n"] == 0
    with pytest.raises(ValueError, match="confidence"):
        mean_interval(values, confidence=1.0)


def test_perplexity_interval_is_the_corpus_ratio_with_a_bootstrap_over_texts():
    nll = [10.0, 30.0, None, 12.0, 50.0]  # nats per text; None: a text the judge skipped
    tokens = [5, 10, 0, 6, 12]
    got = perplexity_interval(nll, tokens, seed=0)
    assert got["n"] == 4 and got["perplexity"] == pytest.approx(math.exp(102.0 / 33))  # tokens weigh, not texts
    assert got["low"] < got["perplexity"] < got["high"]
    rates = [x / t for x, t in zip(nll, tokens) if x is not None]
    assert math.exp(min(rates)) <= got["low"] and got["high"] <= math.exp(max(rates))  # a ratio of sums stays inside
    assert perplexity_interval(nll, tokens, seed=0) == got  # the seed fixes the resamples
    same_rate = perplexity_interval([2.0, 6.0, 4.0], [1, 3, 2])  # every text at 2 nats/token: no spread at all
    assert same_rate["low"] == pytest.approx(math.exp(2)) and same_rate["high"] == pytest.approx(math.exp(2))
    assert math.isnan(perplexity_interval([None], [0])["perplexity"])
    with pytest.raises(ValueError, match="token counts"):
        perplexity_interval([1.0], [1, 2])


def test_paired_ratio_cancels_what_two_settings_share():
    generator = torch.Generator().manual_seed(0)
    hardness = (torch.rand(40, generator=generator) * 3 + 2).tolist()  # nats/token per prompt: a wide spread
    tokens = [20] * 40
    a = ([h * 20 for h in hardness], tokens)
    b = ([(h + 0.1) * 20 for h in hardness], tokens)  # b is worse by exactly 0.1 nats/token on every prompt
    paired = paired_perplexity_ratio(b, a, seed=0)
    assert paired["n"] == 40 and paired["ratio"] == pytest.approx(math.exp(0.1))
    assert paired["low"] == pytest.approx(math.exp(0.1)) and paired["high"] == pytest.approx(math.exp(0.1))
    alone_a, alone_b = perplexity_interval(*a), perplexity_interval(*b)
    assert alone_b["low"] < alone_a["high"]  # judged apart, their intervals overlap: the prompts' spread hides it
    itself = paired_perplexity_ratio(a, a)
    assert itself["ratio"] == itself["low"] == itself["high"] == 1.0
    noisy = ([h * 20 + (5 if i % 2 else -5) for i, h in enumerate(hardness)], tokens)  # same mean, prompt noise
    spread = paired_perplexity_ratio(noisy, a, seed=0)
    assert spread["low"] < 1 < spread["high"]
    skipped = paired_perplexity_ratio(([None, *a[0][1:]], [0, *tokens[1:]]), a)
    assert skipped["n"] == 39  # a prompt skipped in either set is left out of both
    with pytest.raises(ValueError, match="same prompts"):
        paired_perplexity_ratio(a, ([1.0], [1]))


# ---- MAUVE ----------------------------------------------------------------------------------------


def test_mauve_buckets_keep_ten_samples_per_bucket():
    assert [mauve_buckets(n) for n in (1, 16, 25, 256, 1000)] == [2, 2, 2, 25, 100]
    with pytest.raises(ValueError, match="n must be"):
        mauve_buckets(0)


def test_mauve_is_high_for_one_distribution_and_low_for_two():
    rng = np.random.default_rng(0)
    p = rng.normal(size=(200, 16))
    same = rng.normal(size=(200, 16))  # another sample of the same distribution
    shifted = rng.normal(size=(200, 16)) + np.eye(16)[0] * 9.0  # far apart along one axis
    close = mauve_score(p, same)
    far = mauve_score(p, shifted)
    assert close["mean"] > 0.9 and far["mean"] < 0.1
    assert close["n_p"] == close["n_q"] == 200 and close["num_buckets"] == 20
    assert len(close["per_seed"]) == 5 and close["seeds"] == [0, 1, 2, 3, 4]
    assert close["std"] == pytest.approx(np.std(close["per_seed"], ddof=1))
    assert mauve_score(p, p, seeds=2)["per_seed"] == pytest.approx([1.0, 1.0])  # identical features: exactly 1
    assert mauve_score(p, shifted[:50], seeds=1)["num_buckets"] == 5  # the smaller side sets k


def test_mauve_rejects_bad_inputs():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="same D"):
        mauve_score(rng.normal(size=(20, 4)), rng.normal(size=(20, 5)))
    with pytest.raises(ValueError, match="num_buckets"):
        mauve_score(rng.normal(size=(3, 4)), rng.normal(size=(3, 4)), num_buckets=7)
    with pytest.raises(ValueError, match="seeds"):
        mauve_score(rng.normal(size=(20, 4)), rng.normal(size=(20, 4)), seeds=0)


# ---- MAUVE with the judge's features --------------------------------------------------------------

TEXTS = [" the cat sat on the mat", " and the dog sat on the log", " there was a little girl", " it was the best of times",
         " some years ago, never mind how long", " god created the heaven and the earth"]
CONTEXTS = ["once upon a time", "call me ishmael.", "the quick brown fox", "in the beginning", "it is a truth", "a"]


def test_judge_features_are_the_mean_hidden_state_of_the_text(gpt2_dir):
    judge = load_judge(gpt2_dir, device="cpu")
    tok = judge.tokenizer
    features = judge_features(judge, TEXTS, batch_size=4, contexts=CONTEXTS)  # unequal lengths: padding
    assert features.shape == (len(TEXTS), judge.model.config.n_embd) and features.dtype == torch.float32
    for i in (0, 5):  # by hand, one text at a time: start token, context, text; mean over the text's positions
        context = tok(CONTEXTS[i], add_special_tokens=False)["input_ids"]
        target = tok(TEXTS[i], add_special_tokens=False)["input_ids"]
        ids = torch.tensor([[judge.start_id] + context + target])
        with torch.no_grad():
            hidden = judge.model(input_ids=ids, output_hidden_states=True).hidden_states[-1][0]  # (T, D), after ln_f
        torch.testing.assert_close(features[i], hidden[-len(target) :].mean(dim=0), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(judge_features(judge, TEXTS, batch_size=1, contexts=CONTEXTS), features,
                               rtol=1e-4, atol=1e-5)  # batching changes nothing
    assert not torch.allclose(judge_features(judge, TEXTS[:1]), features[:1])  # the context is read
    with pytest.raises(ValueError, match="text 1 is blank"):
        judge_features(judge, ["a", "  "])
    with pytest.raises(ValueError, match="contexts"):
        judge_features(judge, TEXTS, contexts=CONTEXTS[:2])


def test_judge_mauve_end_to_end(gpt2_dir):
    judge = load_judge(gpt2_dir, device="cpu")
    same = judge_mauve(judge, TEXTS, TEXTS, contexts=CONTEXTS, reference_contexts=CONTEXTS, seeds=2)
    assert same["per_seed"] == pytest.approx([1.0, 1.0]) and same["n_p"] == same["n_q"] == 6
    looping = [" the the the the the the"] * 6
    other = judge_mauve(judge, looping, TEXTS, contexts=CONTEXTS, reference_contexts=CONTEXTS, seeds=2)
    assert 0 <= other["mean"] <= 1 and other["num_buckets"] == 2
