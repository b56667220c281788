"""Turn the weight average a checkpoint keeps (--ema) into a model of its own, while the run goes on.

    python -m training.average runs/diffusion/checkpoint-8000 --output-dir runs/diffusion-average-8000

A run trained with --ema writes its average as a model (OUTPUT_DIR/ema) only when it ends; until then
each checkpoint keeps the average for --resume (`ema.safetensors`). This writes a checkpoint's average with
the checkpoint's config (its `dlm` settings), tokenizer and a run record holding the step, the tokens seen
and the average's held-out perplexity at that step, so `dlm.load`, the benches, `training.card` and
`training.bundle` take it like any run folder. The checkpoint is only read. A run that keeps several
averages (`--ema 0.999,0.9995`: `ema.safetensors`, `ema-0.9995.safetensors`) exports one by its decay:
`--decay 0.9995`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from training.common import EMA_DIR, EMA_FILE, RUN_FILE, OutputDirError, prepare_output_dir, run_cli, save_final, write_json
from training.data import DataError


def average_file(checkpoint: Path, decay: float | None) -> Path:
    """The checkpoint's average with this decay (None: its first one, `EMA_FILE`)."""
    from safetensors import safe_open

    kept = sorted(checkpoint.glob(f"{EMA_DIR}*.safetensors"))
    if not kept:
        raise DataError(f"{str(checkpoint)!r} holds no weight average ({EMA_FILE}): was the run trained with --ema?")
    if decay is None:
        if not (checkpoint / EMA_FILE).is_file():
            raise DataError(f"{str(checkpoint)!r} has no {EMA_FILE}; pick one with --decay")
        return checkpoint / EMA_FILE
    decays = {}
    for file in kept:
        with safe_open(str(file), framework="pt") as f:
            decays[float((f.metadata() or {}).get("decay", "nan"))] = file
    if decay not in decays:
        raise DataError(f"{str(checkpoint)!r} keeps no average with decay {decay:g} "
                        f"(it keeps {', '.join(f'{d:g}' for d in sorted(decays))})")
    return decays[decay]


def export_average(checkpoint: str | Path, output_dir: str | Path, *, save_dtype: str = "float32",
                   overwrite: bool = False, decay: float | None = None) -> Path:
    import dlm
    from safetensors import safe_open

    checkpoint, folder = Path(checkpoint), Path(output_dir)
    averaged = average_file(checkpoint, decay)
    if folder.resolve() == checkpoint.resolve():
        raise OutputDirError("write the average to a folder of its own, not into the checkpoint")
    state = json.loads((checkpoint / "trainer_state.json").read_text()) if (checkpoint / "trainer_state.json").is_file() else {}
    run = checkpoint.parent / RUN_FILE  # the run's record from its start: command, starting checkpoint, tokens
    record = json.loads(run.read_text()) if run.is_file() else {}
    if not record:
        print(f"{checkpoint} has no run record beside it ({RUN_FILE} in its run folder): the tokens seen before "
              f"this run are unknown and counted as 0, and the command is left out", file=sys.stderr)

    lm = dlm.load(str(checkpoint), device="cpu", dtype=torch.float32)
    parameters = dict(lm.model.named_parameters())
    with safe_open(str(averaged), framework="pt") as f:
        names, meta = list(f.keys()), f.metadata() or {}
        unknown = sorted(set(names) - set(parameters))
        if unknown:
            raise DataError(f"{averaged} does not average this checkpoint's model (it has no weight {unknown[0]!r})")
        with torch.no_grad():
            for name in names:
                parameters[name].copy_(f.get_tensor(name))
    prepare_output_dir(folder, resume=False, overwrite=overwrite)

    step = int(state.get("global_step", 0))
    prefix = f"{averaged.stem}_"  # its metrics in the log: `ema_perplexity`, `ema-0.9995_perplexity`, ...
    evaluation = next((h for h in reversed(state.get("log_history", []))
                       if h.get("step") == step and f"{prefix}perplexity" in h), {})
    tokens = int(state.get("num_input_tokens_seen", 0)) or None  # as the trainer counted them
    start = int(record.get("start_tokens", 0))
    decay = float(meta["decay"]) if "decay" in meta else None
    training = {"command": record.get("command"), "steps": step, "tokens_seen": tokens,
                "tokens_seen_total": start + tokens if tokens else None, "perplexity": evaluation.get(f"{prefix}perplexity"),
                "ema": decay}
    config_block = dict(getattr(lm.model.config, "dlm", None) or {})
    lm.model.config.dlm = {**config_block, "training": {k: v for k, v in training.items() if v is not None}}
    save_final(None, lm.tokenizer, folder, save_dtype, model=lm.model)
    write_json(folder / RUN_FILE, {
        **{k: v for k, v in record.items() if k not in ("samples",)},
        **{k: v for k, v in training.items() if k != "ema"},
        "eval_loss": evaluation.get(f"{prefix}loss"),
        "ema": {"decay": decay, "updates": int(meta.get("updates", 0)), "checkpoint": str(checkpoint),
                "file": averaged.name, "continues": meta.get("continues") or None},
        "note": f"exponential moving average of the weights at step {step} (decay {decay}, "
                f"{meta.get('updates', '?')} updates), exported from {checkpoint.name} while the run went on",
    })
    not_averaged = sorted(set(parameters) - set(names))
    if not_averaged:
        print(f"kept the checkpoint's own value of {len(not_averaged)} weights the run did not train "
              f"(e.g. {not_averaged[0]!r})", file=sys.stderr)
    ppl = evaluation.get(f"{prefix}perplexity")
    print(f"wrote the average at step {step} to {folder}" + (f" (held-out perplexity <= {ppl:.2f})" if ppl else ""))
    return folder


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.average", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a checkpoint folder of a run trained with --ema (OUTPUT_DIR/checkpoint-N)")
    parser.add_argument("--output-dir", required=True, help="where the averaged model goes (a new or empty folder)")
    parser.add_argument("--save-dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--decay", type=float, help="which average, for a run that keeps several (--ema 0.999,0.9995); "
                                                    "default: the first")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --output-dir")
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), lambda a: export_average(a.checkpoint, a.output_dir, save_dtype=a.save_dtype,
                                                            overwrite=a.overwrite, decay=a.decay), argv)


if __name__ == "__main__":
    sys.exit(main())
