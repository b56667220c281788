"""Masked cross-entropy per mask-rate bucket at the start and the end of a diffusion training run.

    python bench/mask_buckets.py runs/diffusion          # reads the last checkpoint's trainer_state.json

Low mask rates are easy (most context visible); at 90-100% the model predicts nearly from nothing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.common import mask_bucket_losses  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    run = Path((argv or sys.argv[1:])[0])
    states = sorted(run.glob("checkpoint-*/trainer_state.json"), key=lambda p: int(p.parent.name.split("-")[1]))
    if not states:
        print(f"error: no checkpoint-*/trainer_state.json in {run}", file=sys.stderr)
        return 2
    buckets = mask_bucket_losses(json.loads(states[-1].read_text())["log_history"])
    print(f"| mask rate | CE at step {buckets['first_step']} | CE at step {buckets['last_step']} |")
    print("|---|---:|---:|")
    for name, first in buckets["first"].items():
        lo, hi = name.split("_")
        print(f"| {int(lo)}–{int(hi)}% | {first:.3f} | {buckets['last'].get(name, float('nan')):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
