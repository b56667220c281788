"""Compare two `bench/decoding.py` runs on the same prompts, setting by setting, with paired intervals.

    python bench/compare_decoding.py bench/results/decoding_128prompts_cont3.json \\
        bench/results/decoding_128prompts_cont4.json --json bench/results/decoding_128prompts_paired.json

Two checkpoints (or one before and after a change) sampled at the same settings on the same prompts
write text that differs by the checkpoint and by the prompts' luck. Separate intervals on each judge
perplexity are wide (a hard prompt is hard for both), so this pairs them: for every setting in both
runs, B's judge perplexity over A's with a bootstrap interval that resamples prompts jointly
(`dlm.quality.paired_perplexity_ratio`), and B's mean entropy minus A's, paired the same way. A ratio
whose interval holds 1 is a difference these prompts cannot tell from noise.

Runs written before the per-prompt NLLs were stored are judged again (the continuations are in the
JSON): the same judge, the same contexts.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.ar_vs_diffusion import text_quality  # noqa: E402
from dlm.quality import load_judge, mean_interval, paired_perplexity_ratio  # noqa: E402


def read_run(path: Path) -> dict:
    run = json.loads(path.read_text())
    if not isinstance(run.get("prompts"), list) or not run.get("rows"):
        raise ValueError(f"{path} is not a bench/decoding.py result (no prompts list or no rows)")
    return run


def compare(a: dict, b: dict, judge_name: str = "smollm2", pairs: list[tuple[str, str]] | None = None) -> list[dict]:
    """One row per setting both runs measured, AR's reference included (re-judging rows that lack NLLs, in place);
    with `pairs`, one row per (setting in A, setting in B) named there instead, AR's other settings included:
    two decodings (of one model or two) on the same prompts."""
    if a["prompts"] != b["prompts"]:
        raise ValueError("the two runs continued different prompts: a paired comparison needs the same ones "
                         "(run bench/decoding.py with the same --prompts, --length and --paragraphs)")
    rows_a = {r["decoding"]: r for r in [*a["rows"], a["ar_row"], *a.get("ar_rows", [])]}
    rows_b = {r["decoding"]: r for r in [*b["rows"], b["ar_row"], *b.get("ar_rows", [])]}
    if pairs:
        for name, rows, run in [(n, rows_a, "A") for n, _ in pairs] + [(n, rows_b, "B") for _, n in pairs]:
            if name not in rows:
                raise ValueError(f"run {run} has no setting {name!r}; it has {sorted(rows)}")
    else:
        pairs = [(name, name) for name in rows_a if name in rows_b]
        if not pairs:
            raise ValueError("the two runs share no setting")
    judge = None
    out = []
    for name_a, name_b in pairs:
        ra, rb = rows_a[name_a], rows_b[name_b]
        name = name_a if name_a == name_b else f"{name_b} / {name_a}"
        for r in (ra, rb):
            if "judge_nll_per_sample" not in r:  # written before per-prompt NLLs were stored
                judge = judge or load_judge(judge_name)
                r.update(text_quality(judge, r["outputs"], a["prompts"], batch_size=8))
        ratio = paired_perplexity_ratio((rb["judge_nll_per_sample"], rb["judge_tokens_per_sample"]),
                                        (ra["judge_nll_per_sample"], ra["judge_tokens_per_sample"]))
        delta = mean_interval([eb - ea for ea, eb in zip(ra["entropy_per_sample"], rb["entropy_per_sample"])])
        out.append({"decoding": name, "judge_perplexity": [ra["judge_perplexity"], rb["judge_perplexity"]],
                    "entropy": [ra["entropy"], rb["entropy"]], "ratio": ratio, "entropy_difference": delta})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", type=Path, help="the first run's JSON (the baseline)")
    parser.add_argument("b", type=Path, help="the second run's JSON")
    parser.add_argument("--pair", nargs=2, action="append", metavar=("SETTING_A", "SETTING_B"),
                        help="compare this setting of A with this one of B (their `decoding` names, e.g. "
                             "'AR, T 0.9, top-k 20'), instead of every setting both share; repeatable")
    parser.add_argument("--judge", default="smollm2", help="the judge, if a run must be judged again")
    parser.add_argument("--threads", type=int, help="torch threads (default: all)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    a, b = read_run(args.a), read_run(args.b)
    try:
        rows = compare(a, b, args.judge, [tuple(p) for p in args.pair] if args.pair else None)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"\nA = {a['model']} ({args.a}), B = {b['model']} ({args.b}); {len(a['prompts'])} shared prompts\n")
    print("| decoding | judge PPL A → B | B / A (paired 95% CI) | entropy A → B | B − A (paired 95% CI) |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        ratio, delta = r["ratio"], r["entropy_difference"]
        print(f"| {r['decoding']} | {r['judge_perplexity'][0]:.1f} → {r['judge_perplexity'][1]:.1f} | "
              f"{ratio['ratio']:.3f} ({ratio['low']:.3f}–{ratio['high']:.3f}) | "
              f"{r['entropy'][0]:.3f} → {r['entropy'][1]:.3f} | {delta['mean']:+.3f} ({delta['low']:+.3f}–{delta['high']:+.3f}) |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"a": str(args.a), "b": str(args.b), "model_a": a["model"],
                                         "model_b": b["model"], "prompts": len(a["prompts"]), "rows": rows},
                                        indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
