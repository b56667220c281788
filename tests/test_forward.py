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
