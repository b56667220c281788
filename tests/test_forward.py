"""bench/forward.py: FLOPs counted, variants timed and checked against the float32 sdpa forward."""

from __future__ import annotations

import json

import torch

from bench import forward


def test_forward_bench_counts_the_matmuls_and_checks_each_variant(roberta_dir, tmp_path, capsys):
    out = tmp_path / "forward.json"
    code = forward.main(["--model", str(roberta_dir), "--length", "32", "--batch", "1", "2", "--threads", "1",
                         "--repeats", "2", "--warmup", "0", "--gemm", "64", "--no-compile", "--json", str(out),
                         "--no-progress"])
    assert code == 0
    result = json.loads(out.read_text())
    rows = {(r["batch"], r["variant"]): r for r in result["rows"]}
    assert {v for _, v in rows} == {"float32, sdpa", "float32, eager attention", "bfloat16 autocast, sdpa"}
    from transformers import AutoModelForMaskedLM

    model = AutoModelForMaskedLM.from_pretrained(roberta_dir)
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    for batch in (1, 2):
        flops = rows[(batch, "float32, sdpa")]["gflops_per_forward"] * 1e9
        # every linear layer is a matmul over every token, 2 FLOPs per multiply-add; attention adds more
        assert flops >= 2 * linear * 32 * batch
        assert rows[(batch, "float32, eager attention")]["max_abs_logit_delta"] < 1e-4  # the same model
        assert rows[(batch, "float32, sdpa")]["max_abs_logit_delta"] == 0
    assert rows[(2, "float32, sdpa")]["gflops_per_forward"] == 2 * rows[(1, "float32, sdpa")]["gflops_per_forward"]
    assert all(c["float32"] > 0 and c["bfloat16"] > 0 for c in result["ceilings"])
    assert "GEMM ceiling" in capsys.readouterr().out


def test_cold_start_bench_times_each_operation_first_and_warm(roberta_dir, tmp_path, capsys):
    from bench import cold_start

    out = tmp_path / "cold.json"
    assert cold_start.main(["--model", str(roberta_dir), "--length", "16", "--rows", "8", "--repeats", "2",
                            "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    from transformers import AutoConfig

    vocab = AutoConfig.from_pretrained(roberta_dir).vocab_size
    names = [r["operation"] for r in result["results"]]
    assert len(names) == len(set(names)) == 8
    assert f"torch.softmax (8 x {vocab})" in names  # the engine's sizes: the model's vocabulary, --rows rows
    for r in result["results"]:
        assert r["first_us"] > 0 and r["warm_us"] > 0
        assert abs(r["ratio"] - r["first_us"] / r["warm_us"]) < 1e-9
    assert "first call after a forward" in capsys.readouterr().out


def test_sampler_bench_splits_steps_and_takes_the_sampler_settings(roberta_dir, tmp_path, capsys):
    from bench import sampler

    out = tmp_path / "sampler.json"
    assert sampler.main(["--model", str(roberta_dir), "--length", "12", "--steps", "4", "12", "--batch", "1", "2",
                         "--repeats", "1", "--remasking", "low_confidence", "--threshold", "0.9", "--block-length",
                         "0", "--cache", "none", "--top-p", "0.9", "--json", str(out), "--no-progress"]) == 0
    result = json.loads(out.read_text())
    settings = result["settings"]
    assert (settings["threshold"], settings["block_length"], settings["cache"], settings["remasking"],
            settings["top_p"]) == (0.9, None, None, "low_confidence", 0.9)
    rows = {(r["steps"], r["batch"]): r for r in result["rows"]}
    assert set(rows) == {(4, 1), (12, 1), (4, 2), (12, 2)}
    for (steps, batch), r in rows.items():
        assert 0 < r["forward_ms"] < r["ms_per_step"]  # the forward, timed by hooks, is part of the step
        assert abs(r["other_ms"] - (r["ms_per_step"] - r["forward_ms"])) < 1e-9
        one = rows[(steps, 1)]
        assert abs(r["throughput_vs_batch_1"] - r["tokens_per_second"] / one["tokens_per_second"]) < 1e-9
        assert abs(r["tokens_per_second"] - batch * 12 / (steps * r["ms_per_step"] / 1000)) < 1e-6
    assert "threshold 0.9" in capsys.readouterr().out
