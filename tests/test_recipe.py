"""training.recipe: every preset's commands parse with their trainers; the toy preset trains and bundles the lot."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from training import recipe


@pytest.mark.parametrize("preset", sorted(recipe.PRESETS))
def test_every_stage_command_parses_with_its_trainer(preset, tmp_path):
    import importlib

    plan = recipe.commands(recipe.PRESETS[preset], tmp_path, "prose", "reviews", resume=False)
    assert list(plan) == list(recipe.STAGES)
    for stage, (module, argv) in plan.items():
        if stage == "card":
            continue
        args = importlib.import_module(module).build_parser().parse_args(argv)
        assert args.output_dir == str(tmp_path / stage)
        assert args.bf16 is recipe.PRESETS[preset].bf16
    # the two language models get the same token budget
    lm = {stage: importlib.import_module(module).build_parser().parse_args(argv) for stage, (module, argv)
          in plan.items() if stage in ("diffusion", "ar")}
    budget = {s: a.max_steps * a.batch_size * a.block_size for s, a in lm.items()}
    assert budget["diffusion"] == budget["ar"]


def test_a_gpu_preset_refuses_to_run_without_a_gpu(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(recipe.torch.cuda, "is_available", lambda: False)
    assert recipe.main(["--preset", "h200", "--output-dir", str(tmp_path)]) == 2
    assert "GPU" in capsys.readouterr().err


def test_toy_recipe_trains_every_model_and_bundles_them(tmp_path, monkeypatch, capsys):
    import dlm
    from dlm.classify import load_classifier
    from training import bundle

    rng = random.Random(0)
    animals, places = ["cat", "dog", "bird", "fox"], ["mat", "log", "hill", "boat"]
    lines = {f"the {rng.choice(animals)} sat on the {rng.choice(places)} {rng.randint(0, 999)}" for _ in range(600)}
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(sorted(lines)) + "\n")
    reviews = tmp_path / "reviews.csv"
    rows = [f"a {rng.choice(['good', 'fine', 'great'])} film {i},positive" for i in range(40)]
    rows += [f"a {rng.choice(['bad', 'dull', 'poor'])} film {i},negative" for i in range(40)]
    reviews.write_text("text,label\n" + "\n".join(rows) + "\n")
    package = tmp_path / "models"
    package.mkdir()
    monkeypatch.setattr(bundle, "BUNDLED_DIR", package)
    out = tmp_path / "run"

    argv = ["--preset", "toy", "--output-dir", str(out), "--data", str(corpus), "--reviews", str(reviews)]
    assert recipe.main([*argv, "--bundle"]) == 0
    for stage in ("diffusion", "ar", "continuous", "classifier"):
        assert recipe.finished(stage, out), stage
    assert {p.name for p in package.iterdir()} == set(recipe.BUNDLED_NAMES.values())
    for name, kind in (("default", "masked"), ("default-ar", "causal"), ("default-continuous", "continuous")):
        assert dlm.load(str(package / name)).kind == kind
    assert load_classifier(str(package / "default-classifier")).labels
    # the card stage wrote the preset's decoding into the diffusion model's settings
    assert dlm.load(str(out / "diffusion")).settings.remasking == recipe.PRESETS["toy"].decoding["remasking"]

    capsys.readouterr()
    assert recipe.main(argv) == 0  # a second run finds every model finished
    assert capsys.readouterr().out.count("finished in an earlier run, skipped") == 4
