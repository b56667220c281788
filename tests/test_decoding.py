"""bench/decoding.py: the frontier and the entropy bar, and a real run on tiny models with a tiny judge."""

from __future__ import annotations

import json
import math

import pytest

import dlm
from bench import decoding
from tests.conftest import CORPUS


def row(ppl, entropy):
    return {"judge_perplexity": ppl, "entropy": entropy}


def test_frontier_keeps_only_undominated_settings():
    a, b, c, d = row(50, 3.0), row(40, 2.0), row(60, 2.5), row(50, 3.0)  # c is beaten by a on both
    kept = decoding.frontier([a, b, c, d])
    assert c not in kept and b in kept and a in kept and d in kept  # equal points do not beat each other


def test_tuning_prompts_leave_out_the_benchmark_prompts(roberta, tmp_path):
    paragraphs = tmp_path / "held_out.txt"
    paragraphs.write_text("\n".join(CORPUS[:7]) + "\n")
    prompts, human = decoding.tuning_prompts(roberta.tokenizer, 4, 10, ["The cat sat on"], paragraphs)
    assert prompts and len(prompts) == len(human)
    assert not any(p.lower().startswith("the cat sat on") for p in prompts)


def test_a_real_sweep_picks_an_eligible_setting_and_writes_json(roberta_dir, gpt2_dir, tmp_path, capsys):
    paragraphs = tmp_path / "held_out.txt"
    paragraphs.write_text("\n".join(CORPUS[:7]) + "\n")
    out = tmp_path / "decoding.json"
    code = decoding.main(["--model", roberta_dir, "--ar", gpt2_dir, "--judge", gpt2_dir, "--length", "6",
                          "--prompts", "3", "--limit", "3", "--paragraphs", str(paragraphs),
                          "--entropy-ratio", "0", "--report", "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert len(result["rows"]) == 3 and all(r["eligible"] for r in result["rows"])  # a bar of 0 admits every setting
    best = min(result["rows"], key=lambda r: r["judge_perplexity"])
    assert result["recommended"]["remasking"] == best["remasking"]
    assert best["vs_recommended"] == {"ratio": 1.0, "low": 1.0, "high": 1.0}  # paired against itself
    for r in result["rows"]:  # each row's judge PPL carries its interval, and its ratio to the recommendation's
        low, high = r["judge_perplexity_ci95"]
        assert low <= r["judge_perplexity"] <= high and len(r["judge_nll_per_sample"]) == 3
        assert r["vs_recommended"]["ratio"] == pytest.approx(r["judge_perplexity"] / best["judge_perplexity"])
    assert "apply: python -m training.card" in capsys.readouterr().out
    report = result["report"]  # the recommended setting and AR, again on the benchmark's prompts
    assert report["setting"] == result["recommended"] and report["prompts"] == len(report["diffusion"]["outputs"])
    assert report["ratios"]["entropy"] == report["diffusion"]["entropy"] / report["ar"]["entropy"]


def test_a_setting_may_name_its_steps_and_the_recommendation_keeps_them(roberta_dir, gpt2_dir, tmp_path, capsys,
                                                                        monkeypatch):
    import argparse

    used = []  # the real sampling, recording the schedule each call ran with
    real = decoding.sample_continuations
    monkeypatch.setattr(decoding, "sample_continuations",
                        lambda lm, prompts, config, **kw: used.append((lm.kind, config.steps, config.temperature_end))
                        or real(lm, prompts, config, **kw))

    assert decoding.parse_setting("random:0.7:0.95:0:0") == ("random", 0.7, 0.95, 0, None, None, None, 0.0)
    assert decoding.parse_setting("entropy:0.8:0.95:0:4:2") == ("entropy", 0.8, 0.95, 0, 4, 2, None, 0.0)
    assert decoding.parse_setting("dilated:1.3-0.6:1:20:0:8") == ("dilated", 1.3, 1.0, 20, None, 8, 0.6, 0.0)
    assert decoding.parse_setting("dilated:1.3-0.6:1:0:0:8:0.1") == ("dilated", 1.3, 1.0, 0, None, 8, 0.6, 0.1)
    assert decoding.parse_ar_setting("0.9:1:20") == (0.9, 1.0, 20, 0.0)
    assert decoding.parse_ar_setting("1:1:0:0.05") == (1.0, 1.0, 0, 0.05)
    for bad in ("random:0.7:0.95:0:0:0", "random:0.7:0.95:0:0:x", "random:0.7:0.95:0", "dilated:0-0.6:1:20:0",
                "dilated:1.3-x:1:20:0"):
        with pytest.raises(argparse.ArgumentTypeError):
            decoding.parse_setting(bad)
    paragraphs = tmp_path / "held_out.txt"
    paragraphs.write_text("\n".join(CORPUS[:7]) + "\n")
    out = tmp_path / "decoding.json"
    code = decoding.main(["--model", roberta_dir, "--ar", gpt2_dir, "--judge", gpt2_dir, "--length", "6",
                          "--prompts", "3", "--paragraphs", str(paragraphs), "--entropy-ratio", "0", "--report",
                          "--settings", "random:1.0-0.5:1.0:0:0:2", "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["rows"][0]["decoding"] == "random, T 1→0.5, full, 2 steps"
    assert result["recommended"]["steps"] == 2 and result["recommended"]["temperature_end"] == 0.5
    assert "--steps 2 " in (printed := capsys.readouterr().out) and "--temperature-end 0.5 " in printed
    assert result["report"]["setting"]["steps"] == 2 and result["report"]["setting"]["temperature_end"] == 0.5
    # the sweep, then the benchmark report, each with the setting's steps and final temperature
    assert [(steps, end) for kind, steps, end in used if kind == "masked"] == [(2, 0.5), (2, 0.5)]


def test_an_unreachable_entropy_bar_recommends_nothing(roberta_dir, gpt2_dir, tmp_path, capsys):
    paragraphs = tmp_path / "held_out.txt"
    paragraphs.write_text("\n".join(CORPUS[:7]) + "\n")
    code = decoding.main(["--model", roberta_dir, "--ar", gpt2_dir, "--judge", gpt2_dir, "--length", "6",
                          "--prompts", "3", "--limit", "2", "--paragraphs", str(paragraphs), "--entropy-ratio", "100"])
    assert code == 0
    assert "no setting reaches the entropy bar" in capsys.readouterr().out


def test_explicit_settings_and_an_ar_temperature_sweep(roberta_dir, gpt2_dir, tmp_path, capsys):
    paragraphs = tmp_path / "held_out.txt"
    paragraphs.write_text("\n".join(CORPUS[:7]) + "\n")
    out = tmp_path / "decoding.json"
    code = decoding.main(["--model", roberta_dir, "--ar", gpt2_dir, "--judge", gpt2_dir, "--length", "6",
                          "--prompts", "3", "--paragraphs", str(paragraphs), "--entropy-ratio", "0",
                          "--settings", "margin:0.75:0.95:0:0", "random:0.5:1:0:4",
                          "--ar-temperatures", "0.5", "1.2", "--ar-settings", "0.9:1:20", "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert [(r["remasking"], r["temperature"], r["block_length"]) for r in result["rows"]] == [
        ("margin", 0.75, None), ("random", 0.5, 4)]
    settings = dlm.load(gpt2_dir).settings
    assert [(r["temperature"], r["top_p"], r["top_k"]) for r in result["ar_rows"]] == [
        (0.5, settings.top_p, settings.top_k), (1.2, settings.top_p, settings.top_k), (0.9, 1.0, 20)]
    assert result["ar_rows"][2]["decoding"] == "AR, T 0.9, top-k 20"
    recommended = result["ar_recommended"]  # a bar of 0 admits every AR setting
    assert (recommended["temperature"], recommended["top_k"]) in {(0.5, settings.top_k), (1.2, settings.top_k),
                                                                  (0.9, 20), (settings.temperature, settings.top_k)}
    assert "AR recommended:" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        decoding.main(["--settings", "sideways:1:1:0:0"])
    with pytest.raises(SystemExit):
        decoding.main(["--ar-settings", "0.9:1"])


def test_compare_pairs_two_runs_setting_by_setting(roberta_dir, gpt2_dir, tmp_path, capsys):
    from bench import compare_decoding

    paragraphs = tmp_path / "held_out.txt"
    paragraphs.write_text("\n".join(CORPUS[:7]) + "\n")
    out = tmp_path / "a.json"
    assert decoding.main(["--model", roberta_dir, "--ar", gpt2_dir, "--judge", gpt2_dir, "--length", "6",
                          "--prompts", "3", "--limit", "2", "--paragraphs", str(paragraphs), "--entropy-ratio", "0",
                          "--json", str(out)]) == 0
    a = compare_decoding.read_run(out)
    rows = compare_decoding.compare(a, json.loads(out.read_text()), gpt2_dir)  # a run against itself
    assert len(rows) == 3 and all(r["ratio"]["ratio"] == r["ratio"]["low"] == r["ratio"]["high"] == 1.0 for r in rows)
    assert all(r["entropy_difference"]["mean"] == 0 for r in rows)

    worse = json.loads(out.read_text())  # every prompt 0.2 nats/token worse under B, in every setting
    for r in [*worse["rows"], worse["ar_row"]]:
        r["judge_nll_per_sample"] = [x + 0.2 * t for x, t in zip(r["judge_nll_per_sample"], r["judge_tokens_per_sample"])]
    rows = compare_decoding.compare(a, worse, gpt2_dir)
    assert all(r["ratio"]["low"] == pytest.approx(math.exp(0.2)) == r["ratio"]["high"] for r in rows)

    old = json.loads(out.read_text())  # written before per-prompt NLLs were kept: judged again, to the same figures
    for r in [*old["rows"], old["ar_row"]]:
        del r["judge_nll_per_sample"], r["judge_tokens_per_sample"]
    again = compare_decoding.compare(old, a, gpt2_dir)
    assert [r["ratio"]["ratio"] for r in again] == pytest.approx([1.0] * 3)

    other = json.loads(out.read_text())
    other["prompts"] = other["prompts"][::-1]
    with pytest.raises(ValueError, match="different prompts"):
        compare_decoding.compare(a, other, gpt2_dir)
    assert compare_decoding.main([str(out), str(out), "--judge", gpt2_dir]) == 0
    assert "1.000 (1.000–1.000)" in capsys.readouterr().out

    # --pair: one setting of A against another of B (here the first diffusion setting against AR's, both in A's file)
    first, ar_name = a["rows"][0]["decoding"], a["ar_row"]["decoding"]
    rows = compare_decoding.compare(a, worse, gpt2_dir, [(ar_name, first)])
    b_row, a_row = worse["rows"][0], a["ar_row"]
    expected = math.exp(sum(b_row["judge_nll_per_sample"]) / sum(b_row["judge_tokens_per_sample"])
                        - sum(a_row["judge_nll_per_sample"]) / sum(a_row["judge_tokens_per_sample"]))
    assert len(rows) == 1 and rows[0]["decoding"] == f"{first} / {ar_name}"
    assert rows[0]["ratio"]["ratio"] == pytest.approx(expected)
    assert compare_decoding.main([str(out), str(out), "--judge", gpt2_dir, "--pair", first, "no such setting"]) == 2
    assert "run B has no setting 'no such setting'" in capsys.readouterr().err
