"""Time one training step (forward, backward, AdamW) in float32 and under bfloat16 autocast (`--bf16`).

    python bench/train_step.py --models default default-ar --threads 1 2 --repeats 7 --json bench/results/train_step.json

Each model trains on the same real batch (prose from the offline corpus; a masked model gets a random mask
rate per row, a causal one next-token labels), both precisions alternating step by step so drift on a
shared machine hits them alike. Per row: median seconds per step, training tokens/s, bf16's speed-up, and
how far bf16 moves the step: the loss difference and the cosine between the two gradients (for scale, the
cosine between the gradients of two different batches is printed too). Weights and optimizer are float32 in
both; the trainers' `--bf16` on a CPU is this autocast, in the training step only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dlm  # noqa: E402


def batches(lm, count: int, batch: int, block: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`count` (input_ids, labels) batches of real prose, masked at a random rate per row (masked models)."""
    from training.corpus import build_prose_corpus

    text = (build_prose_corpus() / "train.txt").read_text(encoding="utf-8")[: 60 * batch * block * count]
    ids = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
    need = count * batch * block
    if len(ids) < need:
        raise SystemExit(f"the corpus gives {len(ids)} tokens, {need} needed")
    ids = torch.tensor(ids[:need]).view(count, batch, block)
    g = torch.Generator().manual_seed(seed)
    out = []
    for x in ids:
        if lm.kind == "causal":
            out.append((x, x.clone()))
            continue
        masked = torch.rand(batch, block, generator=g) < torch.rand(batch, 1, generator=g).clamp(min=0.05)
        out.append((x.masked_fill(masked, lm.tokenizer.mask_token_id), x.masked_fill(~masked, -100)))
    return out


def loss_of(model, inputs: torch.Tensor, labels: torch.Tensor, causal: bool) -> torch.Tensor:
    logits = model(input_ids=inputs).logits
    if causal:
        logits, labels = logits[:, :-1], labels[:, 1:]
    return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100)


def gradient(model, batch, causal: bool, bf16: bool) -> tuple[float, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = loss_of(model, *batch, causal)
    loss.backward()
    return loss.item(), torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def measure(source: str, threads: int, batch: int, block: int, repeats: int) -> dict:
    torch.set_num_threads(threads)
    lm = dlm.load(source, device="cpu", dtype=torch.float32)
    model, causal = lm.model.train(), lm.kind == "causal"
    data = batches(lm, 2, batch, block)
    loss32, grad32 = gradient(model, data[0], causal, False)
    loss16, grad16 = gradient(model, data[0], causal, True)
    _, other = gradient(model, data[1], causal, False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-8)  # a real step that leaves the weights as they were
    times = {False: [], True: []}
    for i in range(repeats + 1):  # the first round warms both up
        for bf16 in (False, True):
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = loss_of(model, *data[0], causal)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if i:
                times[bf16].append(time.perf_counter() - start)
    fp32, bf16 = statistics.median(times[False]), statistics.median(times[True])
    return {"model": source, "kind": lm.kind, "parameters": sum(p.numel() for p in model.parameters()),
            "threads": threads, "batch": batch, "block": block, "repeats": repeats,
            "fp32_seconds": fp32, "bf16_seconds": bf16, "speedup": fp32 / bf16,
            "fp32_tokens_per_second": batch * block / fp32, "bf16_tokens_per_second": batch * block / bf16,
            "fp32_loss": loss32, "bf16_loss": loss16,
            "gradient_cosine": F.cosine_similarity(grad32.double(), grad16.double(), dim=0).item(),
            "gradient_norm_ratio": (grad16.norm() / grad32.norm()).item(),
            "other_batch_cosine": F.cosine_similarity(grad32.double(), other.double(), dim=0).item()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["default"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--block", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    machine = {"processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                "torch": torch.__version__, "cpu_bf16_native": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())}
    rows = [measure(m, t, args.batch, args.block, args.repeats) for m in args.models for t in args.threads]
    print(f"training step, batch {args.batch} x {args.block} tokens, medians of {args.repeats}\n")
    print("| model | threads | fp32 s/step | bf16 s/step | bf16 speed-up | tokens/s fp32 → bf16 | loss fp32 / bf16 "
          "| gradient cosine (bf16 vs fp32) | cosine, another batch |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['threads']} | {r['fp32_seconds']:.3f} | {r['bf16_seconds']:.3f} | "
              f"{r['speedup']:.2f}x | {r['fp32_tokens_per_second']:.0f} → {r['bf16_tokens_per_second']:.0f} | "
              f"{r['fp32_loss']:.4f} / {r['bf16_loss']:.4f} | {r['gradient_cosine']:.4f} | {r['other_batch_cosine']:.3f} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": machine, "command": " ".join(sys.argv), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
