"""Why parallel decoding does or does not fire: how sure a masked model is, and whether it is right to be.

    python bench/calibration.py                                   # the bundled default model
    python bench/calibration.py --model runs/diffusion --texts 60 --json bench/results/calibration.json

Confidence rules (Fast-dLLM's threshold and factor, and the entropy bound) commit several tokens per
step only where the model's top probability is high. This masks held-out text (the prose corpus's
validation split, or --source reviews) at several rates, runs the model once per text and rate, and
reports for the masked positions:

- the share whose top probability reaches 0.5 / 0.7 / 0.9 (what a threshold rule could commit);
- the reliability table: top probability in 10 bins against how often the top token is the right one,
  and the expected calibration error (ECE). A calibrated model that is rarely sure is honestly
  uncertain, and only a stronger model (not a different rule) makes several tokens per step pay.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dlm  # noqa: E402
from dlm.cli import add_progress_option, progress_bar  # noqa: E402
from dlm.generation import encode, special_framing  # noqa: E402

from bench.perplexity import held_out_texts  # noqa: E402

THRESHOLDS = (0.5, 0.7, 0.9)


def masked_predictions(lm, texts: list[str], rates: list[float], max_tokens: int, seed: int,
                       progress: bool | None = False) -> dict[float, tuple[torch.Tensor, torch.Tensor]]:
    """Per mask rate: (top probability, whether the top token is right) at every masked position."""
    generator = torch.Generator().manual_seed(seed)
    prefix, suffix = special_framing(lm.tokenizer)
    out = {}
    with progress_bar(total=len(rates) * len(texts), desc="texts", unit="text", show=progress) as bar:
        for rate in rates:
            confidence, right = [], []
            for text in texts:
                target = torch.tensor(encode(lm.tokenizer, text)[:max_tokens])
                bar.update()
                masked = torch.rand(len(target), generator=generator) < rate
                if not len(target) or not masked.any():
                    continue
                ids = torch.tensor(prefix + target.tolist() + suffix)
                noisy = ids.clone()
                start = len(prefix)
                noisy[start : start + len(target)][masked] = lm.mask_id
                with torch.inference_mode():
                    logits = lm.model(input_ids=noisy[None].to(lm.device),
                                      attention_mask=torch.ones(1, len(ids), dtype=torch.long, device=lm.device)).logits
                probs = torch.softmax(logits[0, start : start + len(target)].float(), -1).cpu()[masked]
                top, token = probs.max(-1)
                confidence.append(top)
                right.append(token == target[masked])
            out[rate] = (torch.cat(confidence), torch.cat(right).float())
    return out


def reliability(confidence: torch.Tensor, right: torch.Tensor, bins: int = 10) -> tuple[list[dict], float]:
    rows, ece = [], 0.0
    edges = torch.linspace(0, 1, bins + 1)
    for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        inside = (confidence >= lo) & ((confidence < hi) if i < bins - 1 else (confidence <= hi))
        if inside.any():
            share = float(inside.float().mean())
            conf, acc = float(confidence[inside].mean()), float(right[inside].mean())
            ece += share * abs(conf - acc)
            rows.append({"bin": [float(lo), float(hi)], "positions": int(inside.sum()), "confidence": conf, "accuracy": acc})
    return rows, ece


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default", help="masked model: bundled name, folder or Hub id")
    parser.add_argument("--source", choices=["prose", "reviews"], default="prose")
    parser.add_argument("--file", type=Path, help="one text per line (default: the --source validation split)")
    parser.add_argument("--texts", type=int, default=60)
    parser.add_argument("--rates", type=float, nargs="+", default=[0.25, 0.5, 0.9], help="shares of tokens masked")
    parser.add_argument("--max-tokens", type=int, default=120)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--json", type=Path)
    add_progress_option(parser)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    lm = dlm.load(args.model)
    if lm.kind != "masked":
        parser.error("calibration of masked predictions needs a masked (diffusion) model")
    texts = held_out_texts(args.file, args.texts, args.source)
    found = masked_predictions(lm, texts, args.rates, args.max_tokens, args.seed, args.progress)
    confidence = torch.cat([c for c, _ in found.values()])
    right = torch.cat([r for _, r in found.values()])
    table, ece = reliability(confidence, right)
    by_rate = [{"rate": rate, "positions": len(c), "mean_confidence": float(c.mean()), "accuracy": float(r.mean()),
                **{f"share_at_least_{t:g}": float((c >= t).float().mean()) for t in THRESHOLDS}}
               for rate, (c, r) in found.items()]
    print(f"{args.model}: {len(texts)} held-out {args.source} texts, masked positions of each at rates {args.rates}\n")
    print("| mask rate | positions | mean top probability | top token right | " +
          " | ".join(f"share ≥ {t:g}" for t in THRESHOLDS) + " |")
    print("|---:|---:|---:|---:|" + "---:|" * len(THRESHOLDS))
    for r in by_rate:
        print(f"| {r['rate']:g} | {r['positions']} | {r['mean_confidence']:.3f} | {r['accuracy']:.3f} | " +
              " | ".join(f"{r[f'share_at_least_{t:g}']:.3f}" for t in THRESHOLDS) + " |")
    print("\n| top probability | positions | mean top probability | top token right |\n|---|---:|---:|---:|")
    for row in table:
        lo, hi = row["bin"]
        print(f"| {lo:.1f}–{hi:.1f} | {row['positions']} | {row['confidence']:.3f} | {row['accuracy']:.3f} |")
    print(f"\nexpected calibration error (10 bins): {ece:.4f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"command": "python bench/calibration.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                                         "model": args.model, "source": args.source, "texts": len(texts),
                                         "by_rate": by_rate, "reliability": table, "ece": ece}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
