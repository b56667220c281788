"""The forward pass itself: achieved GFLOP/s of a model's forward against this machine's ceiling.

    python bench/forward.py                                  # the bundled default model, this CPU
    python bench/forward.py --model runs/long-diffusion --threads 1 2 --json bench/results/forward.json

A denoising step is one forward over the whole canvas, so the forward is the physical limit of the
sampler (`bench/sampler.py` splits a step into forward and engine). Here the forward alone, on a
canvas of --length tokens at batch 1 and 8, in every variant that could make it faster:

- attention implementation: transformers' `sdpa` (PyTorch's fused scaled_dot_product_attention)
  and `eager` (the reference matmul + softmax);
- `torch.compile` (inductor) of the sdpa model;
- bfloat16 weights and activations (autocast) beside float32;
- torch's intra-op threads (--threads).

FLOPs per forward are counted by `torch.utils.flop_counter.FlopCounterMode` (matmuls and attention; a
multiply-add is 2 FLOPs), so GFLOP/s = counted FLOPs / median wall time. The ceiling is a square
float32 (and bfloat16) matrix multiply of --gemm size at the same thread count: what this CPU's
BLAS reaches when the shapes are kind, against which a small model's skinny matrices are compared.
A variant's outputs are checked against float32 sdpa (max |delta logit|), since a faster forward that
changes the logits is not the same model. Medians over --repeats timed calls after --warmup calls.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dlm  # noqa: E402
from dlm.cli import add_progress_option, progress_bar  # noqa: E402


def count_flops(model: torch.nn.Module, ids: torch.Tensor) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(input_ids=ids, attention_mask=torch.ones_like(ids))
    return counter.get_total_flops()


def median_seconds(call, repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def gemm_ceiling(size: int, dtype: torch.dtype, repeats: int) -> float:
    """GFLOP/s of a square size x size matrix multiply."""
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    seconds = median_seconds(lambda: torch.mm(a, b), repeats, warmup=2)
    return 2 * size**3 / seconds / 1e9


def variants(model: torch.nn.Module) -> dict:
    """name -> (callable taking ids and returning logits, a note)."""
    sdpa = model
    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    out = {}

    def run(m, bf16=False):
        def call(ids):
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                return m(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.float()
        return call

    out["float32, sdpa"] = run(sdpa)
    out["float32, eager attention"] = run(eager)
    out["bfloat16 autocast, sdpa"] = run(sdpa, bf16=True)
    compiled = torch.compile(copy.deepcopy(model), dynamic=False)
    out["float32, sdpa, torch.compile"] = run(compiled)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default", help="masked model: bundled name, folder or Hub id")
    parser.add_argument("--length", type=int, default=128, help="canvas tokens (prompt and masks alike)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch intra-op thread counts")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--gemm", type=int, default=1024, help="size of the square GEMM that sets the ceiling")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile (it needs a C++ compiler)")
    parser.add_argument("--json", type=Path)
    add_progress_option(parser)
    args = parser.parse_args(argv)

    lm = dlm.load(args.model, device="cpu")
    model = lm.model.eval()
    parameters = sum(p.numel() for p in model.parameters())
    generator = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    runs = variants(model)
    if args.no_compile:
        runs.pop("float32, sdpa, torch.compile")
    rows, ceilings = [], []
    with progress_bar(total=len(args.threads) * len(args.batch) * len(runs), desc="forward", unit="variant",
                      show=args.progress) as bar:
        for threads in args.threads:
            torch.set_num_threads(threads)
            ceilings.append({"threads": threads, "float32": gemm_ceiling(args.gemm, torch.float32, 10),
                             "bfloat16": gemm_ceiling(args.gemm, torch.bfloat16, 10)})
            for batch in args.batch:
                ids = torch.randint(5, vocab, (batch, args.length), generator=generator)
                ids[:, args.length // 4 :] = lm.mask_id  # a canvas mid-generation: prompt, then masks
                flops = count_flops(model, ids)
                reference = runs["float32, sdpa"](ids)
                for name, call in runs.items():
                    seconds = median_seconds(lambda call=call, ids=ids: call(ids), args.repeats, args.warmup)
                    delta = float((call(ids) - reference).abs().max())
                    rows.append({"threads": threads, "batch": batch, "variant": name, "ms": 1000 * seconds,
                                 "gflops_per_forward": flops / 1e9, "gflop_per_s": flops / seconds / 1e9,
                                 "max_abs_logit_delta": delta})
                    bar.update(1)
    ceiling = {c["threads"]: c for c in ceilings}
    fastest = {}
    for r in rows:
        r["pct_of_gemm_fp32"] = 100 * r["gflop_per_s"] / ceiling[r["threads"]]["float32"]
        key = (r["threads"], r["batch"])
        base = next(b for b in rows if (b["threads"], b["batch"]) == key and b["variant"] == "float32, sdpa")
        r["speedup_vs_sdpa_fp32"] = base["ms"] / r["ms"]
        fastest[key] = min(fastest.get(key, r), r, key=lambda x: x["ms"])

    print(f"{args.model}: {parameters:,} parameters, canvas {args.length} tokens; "
          f"{platform.processor() or platform.machine()}, torch {torch.__version__}\n")
    print("| threads | GEMM ceiling fp32 / bf16 GFLOP/s |")
    print("|---:|---|")
    for c in ceilings:
        print(f"| {c['threads']} | {c['float32']:.1f} / {c['bfloat16']:.1f} |")
    print("\n| threads | batch | variant | ms / forward (median) | GFLOP / forward | GFLOP/s | % of fp32 GEMM | "
          "vs fp32 sdpa | max abs logit delta |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['threads']} | {r['batch']} | {r['variant']} | {r['ms']:.2f} | {r['gflops_per_forward']:.2f} | "
              f"{r['gflop_per_s']:.1f} | {r['pct_of_gemm_fp32']:.0f}% | {r['speedup_vs_sdpa_fp32']:.2f}x | "
              f"{r['max_abs_logit_delta']:.1e} |")
    print("\nfastest: " + "; ".join(f"{t} thread(s), batch {b}: {r['variant']} ({r['ms']:.2f} ms)"
                                   for (t, b), r in fastest.items()))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "command": "python bench/forward.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "model": args.model, "parameters": parameters, "length": args.length, "machine": {
                "processor": platform.processor() or platform.machine(), "cpu_count": torch.get_num_threads(),
                "torch": torch.__version__}, "ceilings": ceilings, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
