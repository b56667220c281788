"""Copy a finished run into the package as a bundled model, within the weights budget.

    python -m training.bundle runs/diffusion default
    python -m training.bundle runs/ar default-ar

Only what `dlm.load` needs travels (config, safetensors weights, tokenizer, model card, run facts);
checkpoints stay behind. All bundled weights together must fit BUDGET_MB, since every copy stays in
git history: bundle deliberately.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from dlm.loading import BUNDLED_DIR

CLASSIFIER_FILE = "classifier.json"  # a classifier folder (training.train_classifier)
BUDGET_MB = 40.0  # all bundled weights together
KEEP = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
        "special_tokens_map.json", "README.md", "dlm_run.json")


def bundled_weights_mb(exclude: str | None = None) -> float:
    return sum(p.stat().st_size for p in BUNDLED_DIR.rglob("*.safetensors")
               if p.relative_to(BUNDLED_DIR).parts[0] != exclude) / 2**20


def bundle(run_dir: Path, name: str) -> Path:
    if (run_dir / CLASSIFIER_FILE).is_file():
        return bundle_classifier(run_dir, name)
    weights = run_dir / "model.safetensors"
    if not weights.is_file():
        raise ValueError(f"{str(run_dir)!r} has no model.safetensors: has the run finished?")
    total = bundled_weights_mb(exclude=name) + weights.stat().st_size / 2**20
    if total > BUDGET_MB:
        raise ValueError(f"bundling {name} would make {total:.1f} MB of weights, over the {BUDGET_MB:.0f} MB budget; "
                         "train with --save-dtype float16 or a smaller model")
    target = BUNDLED_DIR / name
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for file in KEEP:
        if (run_dir / file).is_file():
            shutil.copy2(run_dir / file, target / file)
    _portable_tokenizer(target)
    _rename_in_card(target, name)
    print(f"bundled {run_dir} as {name!r} in {target} ({total:.1f} MB of bundled weights in all)")
    return target


def bundle_classifier(run_dir: Path, name: str) -> Path:
    """A classifier folder: classifier.json, its card, and each model folder it names."""
    import json

    spec = json.loads((run_dir / CLASSIFIER_FILE).read_text())
    folders = sorted(set(spec["models"].values()))
    weights = [run_dir / f / "model.safetensors" for f in folders]
    missing = [str(w) for w in weights if not w.is_file()]
    if missing:
        raise ValueError(f"{str(run_dir)!r} is missing {missing}: has the run finished?")
    total = bundled_weights_mb(exclude=name) + sum(w.stat().st_size for w in weights) / 2**20
    if total > BUDGET_MB:
        raise ValueError(f"bundling {name} would make {total:.1f} MB of weights, over the {BUDGET_MB:.0f} MB budget")
    target = BUNDLED_DIR / name
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for file in (CLASSIFIER_FILE, "README.md"):
        if (run_dir / file).is_file():
            shutil.copy2(run_dir / file, target / file)
    for folder in folders:
        (target / folder).mkdir()
        for file in (*KEEP, "dlm_train.json"):
            if (run_dir / folder / file).is_file():
                shutil.copy2(run_dir / folder / file, target / folder / file)
        _portable_tokenizer(target / folder)
    print(f"bundled classifier {run_dir} as {name!r} in {target} ({total:.1f} MB of bundled weights in all)")
    return target


def _portable_tokenizer(folder: Path) -> None:
    """A tokenizer saved offline records local_files_only=true; the bundle must also load from the Hub."""
    import json

    config_file = folder / "tokenizer_config.json"
    if not config_file.is_file():
        return
    config = json.loads(config_file.read_text())
    if config.get("local_files_only"):
        config["local_files_only"] = False
        config_file.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")


def _rename_in_card(target: Path, name: str) -> None:
    """The card's example loads the model by its bundled name."""
    import json

    from training.card import write_card

    run_file = target / "dlm_run.json"
    if not run_file.is_file():
        return
    info = json.loads(run_file.read_text())
    info["load_name"] = name
    run_file.write_text(json.dumps(info, indent=2))
    kind = info.get("dlm", {}).get("kind", "masked")
    title = f"dlm {name}: " + {"masked": "masked-diffusion model", "causal": "autoregressive baseline",
                               "continuous": "continuous-diffusion model"}[kind]
    write_card(target, title=title, kind=kind, info=info, samples=info.get("samples", []))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.bundle", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("name", help="the name dlm.load will know it by, e.g. default")
    args = parser.parse_args(argv)
    try:
        bundle(args.run_dir, args.name)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
