"""Where a denoising step's time goes: the model's forward pass versus the engine around it.

    python bench/sampler.py                       # the bundled default model
    python bench/sampler.py --model runs/diffusion --repeats 5 --json bench/results/sampler.json

For length 128, steps 8 / 32 / 128 and batch 1 / 4 / 8, prints milliseconds per step split into the
model forward (timed by hooks on the model) and everything else (sampling, scoring, selection,
recording the step): the engine's own overhead. Medians over --repeats runs, measured in one process.
Throughput (generated tokens per second, all samples of the batch) is given twice: end to end, and
as the forward alone would allow; each also as a multiple of batch 1's at the same steps, so how far
batching pays, and whether the engine keeps up with the forward's own scaling, can be read off.
--temperature 0 is greedy; --top-k / --top-p / --min-p / --temperature, --remasking, --block-length, --cache and the
parallel rules (--threshold, --factor, --entropy-bound) override the model's recommendation.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dlm  # noqa: E402
from dlm.allocator import keep_freed_memory  # noqa: E402
from dlm.cli import add_progress_option, progress_bar  # noqa: E402


class ForwardTimer:
    """Accumulates wall time spent inside `model.forward` through forward hooks."""

    def __init__(self, model: torch.nn.Module):
        self.seconds = 0.0
        self._start = 0.0
        self._cuda = next(model.parameters()).device.type == "cuda"
        model.register_forward_pre_hook(self._before)
        model.register_forward_hook(self._after)

    def _sync(self):
        if self._cuda:
            torch.cuda.synchronize()

    def _before(self, module, args):
        self._sync()
        self._start = time.perf_counter()

    def _after(self, module, args, output):
        self._sync()
        self.seconds += time.perf_counter() - self._start


def measure(lm, timer: ForwardTimer, length: int, steps: int, batch: int, seed: int, **sampling) -> dict:
    timer.seconds = 0.0
    trace = dlm.generate(lm, "It was", length=length, steps=steps, num_samples=batch, seed=seed, **sampling)
    total = trace.seconds
    return {"total_ms": 1000 * total / len(trace.steps), "forward_ms": 1000 * timer.seconds / len(trace.steps)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--steps", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--temperature", type=float, help="default: the model's recommendation")
    parser.add_argument("--top-p", type=float, help="default: the model's recommendation")
    parser.add_argument("--top-k", type=int, help="default: the model's recommendation")
    parser.add_argument("--min-p", type=float, help="default: the model's recommendation")
    parser.add_argument("--remasking", help="default: the model's recommendation")
    parser.add_argument("--block-length", type=int, help="default: the model's recommendation; 0 = one block")
    parser.add_argument("--cache", choices=["none", "prefix", "dual"], help="default: the model's recommendation")
    parser.add_argument("--threshold", type=float, help="Fast-dLLM's confidence threshold (default: off)")
    parser.add_argument("--factor", type=float, help="Fast-dLLM's factor rule (default: off)")
    parser.add_argument("--entropy-bound", type=float, help="the EB-sampler's entropy bound (default: off)")
    parser.add_argument("--system-malloc", action="store_true",
                        help="keep glibc's own mmap and trim thresholds (default: dlm.allocator's, as the app)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    add_progress_option(parser)
    args = parser.parse_args(argv)
    allocator = "system" if args.system_malloc or not keep_freed_memory() else "dlm.allocator"

    lm = dlm.load(args.model)
    if lm.kind != "masked":
        parser.error("the sampler benchmark needs a masked (diffusion) model")
    timer = ForwardTimer(lm.model)
    sampling = {k: v for k, v in (("temperature", args.temperature), ("top_p", args.top_p), ("top_k", args.top_k),
                                  ("min_p", args.min_p), ("remasking", args.remasking), ("threshold", args.threshold),
                                  ("factor", args.factor), ("entropy_bound", args.entropy_bound)) if v is not None}
    if args.block_length is not None:
        sampling["block_length"] = args.block_length or None
    if args.cache is not None:
        sampling["cache"] = None if args.cache == "none" else args.cache
    measure(lm, timer, args.length, args.steps[0], 1, seed=0, **sampling)  # warm-up
    rows = []
    with progress_bar(total=len(args.batch) * len(args.steps) * args.repeats, desc="timing", unit="run",
                      show=args.progress) as bar:  # moved between runs, outside what they time
        for batch in args.batch:
            for steps in args.steps:
                bar.set_postfix_str(f"batch {batch}, steps {steps}")
                runs = []
                for repeat in range(args.repeats):
                    runs.append(measure(lm, timer, args.length, steps, batch, seed=repeat, **sampling))
                    bar.update()
                total = statistics.median(r["total_ms"] for r in runs)
                forward = statistics.median(r["forward_ms"] for r in runs)
                tokens = batch * args.length
                rows.append({"length": args.length, "steps": steps, "batch": batch, "ms_per_step": total,
                             "forward_ms": forward, "other_ms": total - forward,
                             "overhead_pct": 100 * (total - forward) / total,
                             "tokens_per_second": tokens / (steps * total / 1000),
                             "forward_tokens_per_second": tokens / (steps * forward / 1000)})
    for r in rows:  # batching's gain against batch 1 at the same steps, end to end and for the forward alone
        one = next((o for o in rows if o["steps"] == r["steps"] and o["batch"] == 1), None)
        r["throughput_vs_batch_1"] = r["tokens_per_second"] / one["tokens_per_second"] if one else None
        r["forward_throughput_vs_batch_1"] = (r["forward_tokens_per_second"] / one["forward_tokens_per_second"]
                                              if one else None)
    device = torch.cuda.get_device_name(0) if lm.device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    settings = lm.settings.replace(**sampling)
    print(f"model {args.model} ({lm.num_parameters / 1e6:.1f}M parameters) on {device}; temperature "
          f"{settings.temperature}, top_k {settings.top_k}, top_p {settings.top_p}, min_p {settings.min_p}, "
          f"remasking {settings.remasking}, "
          f"blocks {settings.block_length}, cache {settings.cache}, threshold {settings.threshold}, factor "
          f"{settings.factor}, entropy bound {settings.entropy_bound}; malloc thresholds {allocator}; "
          f"medians of {args.repeats} runs\n")
    print("| length | steps | batch | ms/step | forward ms | other ms | overhead | tokens/s | vs batch 1 | "
          "forward-only tokens/s | vs batch 1 |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    ratio = lambda x: "—" if x is None else f"{x:.2f}x"  # noqa: E731
    for r in rows:
        print(f"| {r['length']} | {r['steps']} | {r['batch']} | {r['ms_per_step']:.2f} | {r['forward_ms']:.2f} | "
              f"{r['other_ms']:.2f} | {r['overhead_pct']:.1f}% | {r['tokens_per_second']:.0f} | "
              f"{ratio(r['throughput_vs_batch_1'])} | {r['forward_tokens_per_second']:.0f} | "
              f"{ratio(r['forward_throughput_vs_batch_1'])} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        result = {"model": args.model, "device": device, "allocator": allocator, "settings": settings.to_dict(),
                  "rows": rows}
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
