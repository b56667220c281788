"""What a small operation costs right after the model's forward pass: the floor under the engine.

    python bench/cold_start.py                               # the bundled default model, one thread
    python bench/cold_start.py --repeats 50 --json bench/results/cold_start.json

A denoising step is one forward pass and then the engine's few dozen small operations (gathering the
masked rows, softmax, argmax, scoring, choosing, sampling: `bench/sampler.py` times the split). On a
CPU the forward streams the model's weights and activations through the caches, so the engine's
operations start cold: their code, their lookup tables and the interpreter's own state have been
evicted. For each operation, at the engine's sizes (--vocab tokens, --rows masked rows), this times
its first call right after a forward and the same call repeated (the fifth in a row, warm), medians
over --repeats forwards. The ratio says how much of the engine's cost is the number of distinct
operations rather than their arithmetic, which is why fewer, larger operations pay more than faster ones.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dlm  # noqa: E402
from bench.ar_vs_diffusion import machine_info  # noqa: E402


def operations(vocab: int, rows: int) -> dict:
    """name -> a zero-argument call at the engine's sizes."""
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(rows, vocab, generator=gen) * 3
    row = logits[0].numpy().copy()
    index = torch.arange(0, rows, 2)
    canvas_scores = torch.randn(1, 130, generator=gen)
    return {
        f"torch.softmax ({rows} x {vocab})": lambda: torch.softmax(logits, dim=-1),
        f"index_select ({len(index)} of {rows} rows)": lambda: logits.index_select(0, index),
        f"NumPy argmax ({rows} x {vocab})": lambda: logits.numpy().argmax(-1),
        "torch.argsort (1 x 130, stable)": lambda: canvas_scores.argsort(dim=1, descending=True, stable=True),
        f"torch.exp ({vocab})": lambda: torch.exp(logits[0]),
        f"np.exp ({vocab} float32)": lambda: np.exp(row),
        f"np.sort ({vocab} float32)": lambda: np.sort(row),
        "torch.zeros (1 x 130)": lambda: torch.zeros(1, 130),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--length", type=int, default=130, help="canvas positions of the forward")
    parser.add_argument("--rows", type=int, default=64, help="masked rows the engine works on")
    parser.add_argument("--repeats", type=int, default=30, help="forwards per operation (medians)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    lm = dlm.load(args.model, device="cpu")
    vocab = lm.model.config.vocab_size
    ids = torch.randint(0, vocab, (1, args.length), generator=torch.Generator().manual_seed(1))
    results = []
    with torch.inference_mode():
        for name, call in operations(vocab, args.rows).items():
            first, warm = [], []
            for _ in range(args.repeats):
                lm.model(input_ids=ids)
                for k in range(5):
                    start = time.perf_counter()
                    call()
                    seconds = time.perf_counter() - start
                    if k == 0:
                        first.append(seconds)
                warm.append(seconds)
            results.append({"operation": name, "first_us": 1e6 * statistics.median(first),
                            "warm_us": 1e6 * statistics.median(warm)})
    info = machine_info(lm.device)
    machine = f"{info['cpu']}, {info['cpu_count']} cores, {info['torch_threads']} torch thread(s)"
    print(f"model {args.model}, canvas {args.length}, {args.rows} rows of {vocab}; {machine}; medians of "
          f"{args.repeats} forwards\n")
    print("| operation | first call after a forward (us) | warm (us) | ratio |")
    print("|---|---:|---:|---:|")
    for r in results:
        r["ratio"] = r["first_us"] / r["warm_us"]
        print(f"| {r['operation']} | {r['first_us']:.1f} | {r['warm_us']:.1f} | {r['ratio']:.1f}x |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model": args.model, "machine": machine, "length": args.length,
                                         "rows": args.rows, "repeats": args.repeats, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
