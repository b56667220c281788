"""training/: collator invariants, real short runs, resume after kill -9, bad input, push and pull."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.hubserver import hub_network, hub_online, hub_server  # noqa: F401  (fixtures)
from training.collator import DiffusionCollator

RUN_FLAGS = ["--block-size", "32", "--batch-size", "8", "--lr", "3e-3", "--warmup-steps", "2",
             "--logging-steps", "5", "--num-samples", "2", "--eval-blocks", "16"]
TINY_FLAGS = ["--vocab-size", "300", "--hidden-size", "32", "--layers", "2", "--heads", "2",
              "--intermediate-size", "64", *RUN_FLAGS]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Four hundred distinct, very regular sentences: learnable in a few dozen steps."""
    import random

    rng = random.Random(0)
    animals, places = ["cat", "dog", "bird", "fox", "girl", "man"], ["mat", "log", "hill", "boat", "road"]
    lines = {f"the {rng.choice(animals)} sat on the {rng.choice(places)} and the {rng.choice(animals)} "
             f"ran to the {rng.choice(places)} {rng.randint(0, 99)}" for _ in range(2000)}
    path = tmp_path_factory.mktemp("data") / "corpus.txt"
    path.write_text("\n".join(sorted(lines)[:400]) + "\n")
    return path


@pytest.fixture(scope="module")
def diffusion_run(corpus, tmp_path_factory) -> Path:
    from training import train_diffusion

    out = tmp_path_factory.mktemp("runs") / "diffusion"
    code = train_diffusion.main(["--data", str(corpus), "--output-dir", str(out), "--max-steps", "40",
                                 "--eval-steps", "20", "--save-steps", "20", *TINY_FLAGS])
    assert code == 0
    return out


def log_history(run: Path) -> list[dict]:
    checkpoints = sorted(run.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    return json.loads((checkpoints[-1] / "trainer_state.json").read_text())["log_history"]


# ---- the collator --------------------------------------------------------------------------------


def test_collator_invariants():
    mask_id, pad_id = 4, 1
    collator = DiffusionCollator(mask_id, pad_id, eps=0.05, prefix_fraction=0.5, seed=0)
    rows = [{"input_ids": list(range(10, 10 + n))} for n in (32, 20, 32, 7)] * 16  # ragged: padding
    batch = collator(rows)
    ids, labels = batch["input_ids"], batch["labels"]
    padded = batch["attention_mask"] == 0
    assert (labels[padded] == -100).all() and (ids[padded] == pad_id).all(), "pad never masked or scored"
    masked = labels != -100
    assert (ids[masked] == mask_id).all() and not (ids[~masked] == mask_id).any()
    rates = batch["mask_rate"]
    assert (rates > 0.05 - 1e-6).all() and (rates <= 1).all(), "t within (eps, 1]"
    assert torch.allclose(batch["loss_weight"], 1 / rates), "weights are 1/t"
    # the clean prefix: the first positions of some rows are never masked, and no row starts masked more
    # often than the rate predicts
    first_masked = masked[:, 0].float().mean()
    assert first_masked < masked[:, -1].float().mean() + 0.2
    assert int(batch["num_scored"]) <= int((~padded).sum())
    uniform = DiffusionCollator(mask_id, pad_id, weighting="uniform", seed=0)(rows)
    assert (uniform["loss_weight"] == 1).all()
    levels = DiffusionCollator(mask_id, pad_id, levels=(0.5, 1.0), prefix_fraction=0, seed=0)(rows)
    assert levels["mask_rate"].unique().numel() == 1 and float(levels["mask_rate"][0]) in (0.5, 1.0)


def test_prefix_never_masked():
    # mask rate 1: everything outside the clean prefix is masked, so the masks form a suffix after it
    collator = DiffusionCollator(4, 1, prefix_fraction=1.0, levels=(1.0,), seed=3)
    batch = collator([{"input_ids": list(range(10, 42))} for _ in range(200)])
    masked = batch["labels"] != -100
    prefix = (~masked).sum(dim=1)  # (B,)
    assert (prefix >= 1).all() and (prefix <= 31).all()
    assert torch.equal(masked, torch.arange(32).unsqueeze(0) >= prefix.unsqueeze(1))
    assert prefix.unique().numel() > 10, "prefix lengths are random"


def test_stratified_t_covers_the_noise_levels_evenly():
    rows = [{"input_ids": list(range(10, 42))} for _ in range(8)]
    for seed in range(20):
        stratified = DiffusionCollator(4, 1, eps=1e-3, seed=seed)(rows)["mask_rate"]
        # one rate in each eighth of (0, 1]: the batch never bunches at one noise level
        assert sorted(int(r * 8 - 1e-9) for r in stratified.tolist()) == list(range(8))
    bins = [int(r * 8 - 1e-9) for seed in range(20)
            for r in DiffusionCollator(4, 1, eps=1e-3, seed=seed, stratified=False)(rows)["mask_rate"].tolist()]
    assert len(set(bins)) > 1 and any(bins.count(b) > 20 for b in set(bins)), "i.i.d. t bunches somewhere"


def test_sources_mix(tmp_path):
    from training.data import DataError, load_texts

    a, b = tmp_path / "a.txt", tmp_path / "b.csv"
    a.write_text("\n".join(f"prose line number {i} of the first source" for i in range(60)) + "\n")
    b.write_text("text,label\n" + "".join(f"review {i} was fine,1\n" for i in range(60)))
    one, two = load_texts(str(a)), load_texts(str(b))
    mixed = load_texts(f"{a},{b}")
    assert len(mixed.train) == len(one.train) + len(two.train)
    assert len(mixed.validation) == len(one.validation) + len(two.validation)
    assert set(mixed.train["text"]) == set(one.train["text"]) | set(two.train["text"])
    assert " + " in mixed.description
    with pytest.raises(DataError, match="empty source"):
        load_texts(f"{a},,{b}")


def test_collator_rejects_bad_options():
    with pytest.raises(ValueError, match="choose from"):
        DiffusionCollator(4, 1, weighting="median")
    with pytest.raises(ValueError, match="eps"):
        DiffusionCollator(4, 1, eps=0)


# ---- real runs -----------------------------------------------------------------------------------


def test_diffusion_training_lowers_the_loss(diffusion_run):
    history = log_history(diffusion_run)
    losses = [h["loss"] for h in history if "loss" in h]
    evals = [h["eval_loss"] for h in history if "eval_loss" in h]
    assert losses[-1] < losses[0]
    assert evals[-1] < math.log(300) - 0.5  # far below a uniform guess over the vocabulary
    assert any(k.startswith("loss_mask_") for k in history[0]), "loss logged per mask-rate bucket"
    config = json.loads((diffusion_run / "config.json").read_text())  # the settings dlm.load reads
    assert config["dlm"]["kind"] == "masked" and config["dlm"]["sampler"]["steps"] >= 1
    card = (diffusion_run / "README.md").read_text()
    assert "text-diffusion" in card and "pipeline_tag: fill-mask" in card and "seed 1" in card


def test_bundled_style_load_and_generate(diffusion_run):
    import dlm

    lm = dlm.load(str(diffusion_run))
    assert lm.kind == "masked" and lm.settings.length == 16
    trace = dlm.generate(lm, "the cat", seed=0)
    assert len(trace.steps) == 16 and trace.texts[0].startswith("the cat")


def test_a_warmup_stable_decay_run_keeps_its_weights_from_before_the_decay_to_continue_from(corpus, tmp_path):
    import dlm
    from training import train_diffusion

    out = tmp_path / "wsd"
    flags = [*TINY_FLAGS, "--schedule", "wsd", "--decay-steps", "4", "--logging-steps", "1"]
    assert train_diffusion.main(["--data", str(corpus), "--output-dir", str(out), "--max-steps", "12",
                                 "--eval-steps", "12", "--save-steps", "12", *flags]) == 0
    rates = {h["step"]: h["learning_rate"] for h in log_history(out) if "learning_rate" in h}
    # the rate each update used: 2 warm-up steps, the peak for updates 3-9 (the cosine starts at 1), then down
    assert all(rates[step] == pytest.approx(3e-3) for step in range(3, 10))
    assert 3e-3 > rates[10] > rates[11] > rates[12] and rates[12] < 3e-3 / 5
    info = json.loads((out / "dlm_run.json").read_text())
    assert info["schedule"] == {"type": "wsd", "decay_steps": 4, "stable": "stable"}
    stable = json.loads((out / "stable" / "dlm_run.json").read_text())
    tokens_per_step = 8 * 32
    assert stable["steps"] == 8 and stable["tokens_seen_total"] == 8 * tokens_per_step
    lm = dlm.load(str(out / "stable"))
    assert lm.kind == "masked" and lm.settings.length == 16  # the run's own settings, as the final model has
    assert json.loads((out / "stable" / "config.json").read_text())["dlm"]["training"]["steps"] == 8

    # a next run continues the stable phase from those weights, and counts the tokens they had seen
    more = tmp_path / "more"
    assert train_diffusion.main(["--init", str(out / "stable"), "--data", str(corpus), "--output-dir", str(more),
                                 "--max-steps", "4", "--eval-steps", "4", "--save-steps", "4", *RUN_FLAGS]) == 0
    assert json.loads((more / "dlm_run.json").read_text())["start_tokens"] == 8 * tokens_per_step


def test_the_weight_average_follows_its_decay_and_leaves_the_model_its_own_weights():
    import torch

    from training.common import EmaWeights

    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema = EmaWeights(trainer=None, decay=0.25, resume_from=False)
    ema.on_train_begin(None, None, None, model=model)
    expected = 1.0
    for update, value in enumerate([3.0, 5.0, -1.0], start=1):
        with torch.no_grad():
            model.weight.fill_(value)
        ema.on_step_end(None, None, None, model=model)
        decay = min(0.25, (1 + update) / (10 + update))  # 2/11, then the decay itself (3/12 = 0.25 < 4/13)
        expected = decay * expected + (1 - decay) * value
        assert ema.shadow[0].flatten().tolist() == pytest.approx([expected, expected])
    with ema.applied(model):
        assert model.weight.detach().flatten().tolist() == pytest.approx([expected, expected])
    assert model.weight.detach().flatten().tolist() == [-1.0, -1.0]


def test_a_run_with_a_weight_average_evaluates_it_saves_it_as_a_model_and_resumes_it(corpus, tmp_path):
    import shutil

    import torch
    from safetensors.torch import load_file

    import dlm
    from training import train_diffusion

    flags = [*TINY_FLAGS, "--ema", "0.9", "--max-steps", "8", "--save-steps", "4", "--eval-steps", "4"]
    out = tmp_path / "ema"
    assert train_diffusion.main(["--data", str(corpus), "--output-dir", str(out), *flags]) == 0
    history = log_history(out)
    assert [h["step"] for h in history if "ema_perplexity" in h] == [4, 8]  # beside every evaluation
    assert [h["step"] for h in history if "eval_perplexity" in h] == [4, 8]
    import importlib.util

    spec = importlib.util.spec_from_file_location("learning_curve", Path(__file__).resolve().parents[1] / "bench" / "learning_curve.py")
    learning_curve = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(learning_curve)
    curve = learning_curve.read_run(out)["points"]  # the learning curve shows both
    assert [p["step"] for p in curve] == [4, 8] and all(p["ema_perplexity"] != p["perplexity"] for p in curve)
    info = json.loads((out / "dlm_run.json").read_text())
    assert info["ema"]["decay"] == 0.9 and info["ema"]["updates"] == 8 and info["ema"]["folder"] == "ema"
    average = json.loads((out / "ema" / "dlm_run.json").read_text())
    assert average["perplexity"] == info["ema"]["perplexity"] != info["perplexity"]
    assert average["steps"] == 8 and "moving average" in average["note"]
    lm = dlm.load(str(out / "ema"))  # a model of its own, with the run's settings
    assert lm.kind == "masked" and lm.settings.length == 16
    assert "weight average" in (out / "ema" / "README.md").read_text()
    saved = load_file(str(out / "checkpoint-4" / "ema.safetensors"))
    weights = load_file(str(out / "checkpoint-4" / "model.safetensors"))
    assert any(not torch.equal(saved[name], weights[name]) for name in saved if name in weights)

    # resumed from step 4, the run reads the average back instead of restarting it from the weights
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(out / "checkpoint-4", resumed / "checkpoint-4")
    assert train_diffusion.main(["--data", str(corpus), "--output-dir", str(resumed), *flags, "--resume"]) == 0
    assert json.loads((resumed / "dlm_run.json").read_text())["ema"]["updates"] == 8  # 4 read back + 4 new
    from transformers import AutoModelForMaskedLM

    from training.common import EmaWeights

    ema = EmaWeights(trainer=None, decay=0.9, resume_from=str(out / "checkpoint-4"))
    ema.on_train_begin(None, None, None, model=AutoModelForMaskedLM.from_pretrained(out / "checkpoint-4"))
    assert ema.updates == 4 and all(torch.equal(a, saved[name]) for name, a in zip(ema.names, ema.shadow))


def test_an_average_started_from_an_average_continues_it_at_the_full_decay(tmp_path):
    import torch
    from safetensors import safe_open

    from training.common import EMA_FILE, EmaWeights

    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema = EmaWeights(trainer=None, decay=0.9, resume_from=False, continues="runs/earlier/ema")
    ema.on_train_begin(None, None, None, model=model)
    with torch.no_grad():
        model.weight.fill_(3.0)
    ema.on_step_end(None, None, None, model=model)
    assert ema.shadow[0].flatten().tolist() == pytest.approx([0.9 * 1.0 + 0.1 * 3.0] * 2)  # not the ramp's 2/11

    # the checkpoint remembers it, so a resumed run keeps the full decay
    class Args:
        output_dir = str(tmp_path)

    class State:
        global_step, is_world_process_zero = 1, True

    (tmp_path / "checkpoint-1").mkdir()
    ema.on_save(Args, State, None)
    with safe_open(str(tmp_path / "checkpoint-1" / EMA_FILE), framework="pt") as f:
        assert f.metadata()["continues"] == "runs/earlier/ema"
    resumed = EmaWeights(trainer=None, decay=0.9, resume_from=str(tmp_path / "checkpoint-1"))
    resumed.on_train_begin(None, None, None, model=model)
    assert resumed.continues == "runs/earlier/ema" and resumed.updates == 1


def test_a_run_from_a_weight_average_continues_it_and_its_checkpoints_drop_the_init_s_record(corpus, tmp_path):
    from safetensors import safe_open

    from training import train_diffusion

    flags = [*TINY_FLAGS, "--ema", "0.9", "--max-steps", "4", "--save-steps", "4", "--eval-steps", "4"]
    first = tmp_path / "first"
    assert train_diffusion.main(["--data", str(corpus), "--output-dir", str(first), *flags]) == 0
    cases = {"average": ["--init", str(first / "ema")], "fresh": ["--init", str(first / "ema"), "--ema-fresh"],
             "weights": ["--init", str(first)]}  # the final weights: not an average
    for name, init in cases.items():
        out = tmp_path / name
        assert train_diffusion.main(["--data", str(corpus), "--output-dir", str(out), *init, *flags]) == 0
        info = json.loads((out / "dlm_run.json").read_text())
        assert info["ema"]["continues"] == (str(first / "ema") if name == "average" else None), name
        with safe_open(str(out / "checkpoint-4" / "ema.safetensors"), framework="pt") as f:
            assert f.metadata()["continues"] == (str(first / "ema") if name == "average" else "")
        # the checkpoint's config no longer claims the init's training (its steps, perplexity, average)
        config = json.loads((out / "checkpoint-4" / "config.json").read_text())
        assert "training" not in config.get("dlm", {}), name
        assert json.loads((out / "config.json").read_text())["dlm"]["training"]["steps"] == 4


def test_bf16_on_a_cpu_autocasts_the_training_step_and_evaluates_in_float32(corpus, tmp_path, monkeypatch):
    import torch

    from training import train_diffusion
    from training.trainers import DiffusionTrainer

    seen = []  # (training?, autocast on?, dtype of the logits the loss reads)
    original = DiffusionTrainer.compute_loss

    def spy(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, outputs = original(self, model, inputs, return_outputs=True)
        seen.append((model.training, torch.is_autocast_enabled("cpu"), outputs["logits"].dtype))
        return (loss, outputs) if return_outputs else loss

    monkeypatch.setattr(DiffusionTrainer, "compute_loss", spy)
    out = tmp_path / "bf16"
    assert train_diffusion.main(["--data", str(corpus), "--output-dir", str(out), *TINY_FLAGS, "--bf16",
                                 "--max-steps", "4", "--eval-steps", "4", "--save-steps", "4"]) == 0
    training = [s for s in seen if s[0]]
    evaluation = [s for s in seen if not s[0]]
    assert len(training) == 4 and all(on and dtype == torch.bfloat16 for _, on, dtype in training)
    assert evaluation and all(not on and dtype == torch.float32 for _, on, dtype in evaluation)
    from safetensors.torch import load_file

    assert all(t.dtype == torch.float32 for t in load_file(str(out / "checkpoint-4" / "model.safetensors")).values())
    assert json.loads((out / "dlm_run.json").read_text())["perplexity"] < 300  # it learned (uniform: 300)


def test_bf16_on_a_cpu_trains_the_ar_and_continuous_models_too(diffusion_run, corpus, tmp_path, monkeypatch):
    import math

    import torch

    from training import train_ar, train_continuous
    from training.trainers import CausalTrainer, ContinuousTrainer

    seen = []  # (trainer, training?, autocast on?) at every loss the trainers compute
    for cls in (CausalTrainer, ContinuousTrainer):
        def spy(self, model, inputs, *args, _cls=cls, _original=cls.compute_loss, **kwargs):
            seen.append((_cls.__name__, model.training, torch.is_autocast_enabled("cpu")))
            return _original(self, model, inputs, *args, **kwargs)

        monkeypatch.setattr(cls, "compute_loss", spy)
    assert train_ar.main(["--match", str(diffusion_run), "--data", str(corpus), "--output-dir", str(tmp_path / "ar"),
                          "--max-steps", "4", "--eval-steps", "4", "--save-steps", "4", "--bf16", *RUN_FLAGS]) == 0
    assert train_continuous.main([
        "--data", str(corpus), "--output-dir", str(tmp_path / "continuous"), "--embedding-dim", "16",
        "--hidden-size", "32", "--layers", "1", "--heads", "2", "--intermediate-size", "64", "--block-size", "32",
        "--batch-size", "4", "--max-steps", "4", "--eval-steps", "4", "--save-steps", "4", "--eval-blocks", "2",
        "--num-samples", "1", "--threads", "1", "--bf16"]) == 0
    for trainer in ("CausalTrainer", "ContinuousTrainer"):
        steps = [on for name, training, on in seen if name == trainer and training]
        evaluations = [on for name, training, on in seen if name == trainer and not training]
        assert len(steps) == 4 and all(steps) and evaluations and not any(evaluations), trainer
    for run in ("ar", "continuous"):
        assert math.isfinite(json.loads((tmp_path / run / "dlm_run.json").read_text())["eval_loss"]), run


def test_a_checkpoint_s_weight_average_becomes_a_model_while_the_run_goes_on(corpus, tmp_path, capsys):
    import torch
    from safetensors.torch import load_file

    import dlm
    from training import average, train_diffusion

    flags = [*TINY_FLAGS, "--ema", "0.9", "--max-steps", "8", "--save-steps", "4", "--eval-steps", "4"]
    out = tmp_path / "run"
    assert train_diffusion.main(["--data", str(corpus), "--output-dir", str(out), *flags]) == 0

    # mid-run: the average at step 4 as a model, its weights the checkpoint's average, its settings the checkpoint's
    assert average.main([str(out / "checkpoint-4"), "--output-dir", str(tmp_path / "avg4")]) == 0
    saved = load_file(str(out / "checkpoint-4" / "ema.safetensors"))
    lm = dlm.load(str(tmp_path / "avg4"))
    weights = dict(lm.model.named_parameters())
    assert saved and all(torch.equal(weights[name].detach(), tensor) for name, tensor in saved.items())
    assert lm.kind == "masked" and lm.settings == dlm.load(str(out / "checkpoint-4")).settings
    record = json.loads((tmp_path / "avg4" / "dlm_run.json").read_text())
    at_4 = [h for h in log_history(out) if h.get("step") == 4 and "ema_perplexity" in h][0]
    assert record["steps"] == 4 and record["perplexity"] == at_4["ema_perplexity"] and record["ema"]["updates"] == 4
    assert lm.model.config.dlm["training"]["perplexity"] == at_4["ema_perplexity"]

    # the last checkpoint's average is the model the run wrote to OUTPUT_DIR/ema when it ended
    assert average.main([str(out / "checkpoint-8"), "--output-dir", str(tmp_path / "avg8")]) == 0
    final = load_file(str(out / "ema" / "model.safetensors"))
    exported = load_file(str(tmp_path / "avg8" / "model.safetensors"))
    assert final.keys() == exported.keys() and all(torch.equal(final[k], exported[k]) for k in final)

    # a checkpoint moved away from its run folder still exports, with a warning that its start is unknown
    import shutil

    capsys.readouterr()
    shutil.copytree(out / "checkpoint-4", tmp_path / "moved" / "checkpoint-4")
    assert average.main([str(tmp_path / "moved" / "checkpoint-4"), "--output-dir", str(tmp_path / "avg-moved")]) == 0
    assert "has no run record beside it" in capsys.readouterr().err
    assert json.loads((tmp_path / "avg-moved" / "dlm_run.json").read_text())["steps"] == 4

    # a checkpoint without an average, or an output folder in use, is refused and nothing is written
    capsys.readouterr()
    (tmp_path / "plain").mkdir()
    for file in ("config.json", "model.safetensors", "trainer_state.json"):
        (tmp_path / "plain" / file).write_bytes((out / "checkpoint-4" / file).read_bytes())
    assert average.main([str(tmp_path / "plain"), "--output-dir", str(tmp_path / "none")]) == 2
    assert "holds no weight average" in capsys.readouterr().err and not (tmp_path / "none").exists()
    assert average.main([str(out / "checkpoint-4"), "--output-dir", str(tmp_path / "avg8")]) == 2
    assert "not empty" in capsys.readouterr().err
    assert torch.equal(load_file(str(tmp_path / "avg8" / "model.safetensors"))[next(iter(final))], final[next(iter(final))])


def test_a_run_keeps_several_averages_and_one_added_on_resume_starts_from_the_first(corpus, tmp_path, capsys):
    import importlib.util
    import shutil

    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file

    from training import average, train_diffusion
    from training.common import EmaWeights

    flags = [*TINY_FLAGS, "--max-steps", "8", "--save-steps", "4", "--eval-steps", "4"]
    out = tmp_path / "two"
    assert train_diffusion.main(["--data", str(corpus), "--output-dir", str(out), *flags, "--ema", "0.9,0.2"]) == 0
    for step in (4, 8):
        assert {f.name for f in (out / f"checkpoint-{step}").glob("ema*.safetensors")} == {"ema.safetensors",
                                                                                          "ema-0.2.safetensors"}
    history = log_history(out)
    for key in ("eval_perplexity", "ema_perplexity", "ema-0.2_perplexity"):  # each evaluated once per evaluation
        assert [h["step"] for h in history if key in h] == [4, 8], key
    at_8 = [h for h in history if h.get("step") == 8]  # the ramp (1 + n)/(10 + n) passes 0.2 at the second update
    assert next(h["ema_perplexity"] for h in at_8 if "ema_perplexity" in h) != \
        next(h["ema-0.2_perplexity"] for h in at_8 if "ema-0.2_perplexity" in h)
    info = json.loads((out / "dlm_run.json").read_text())
    assert info["ema"]["decay"] == 0.9 and [o["decay"] for o in info["ema"]["others"]] == [0.2]
    assert info["ema"]["others"][0]["folder"] == "ema-0.2" and (out / "ema-0.2" / "model.safetensors").is_file()
    assert json.loads((out / "ema-0.2" / "dlm_run.json").read_text())["perplexity"] == info["ema"]["others"][0]["perplexity"]
    spec = importlib.util.spec_from_file_location("learning_curve", Path(__file__).resolve().parents[1] / "bench" / "learning_curve.py")
    learning_curve = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(learning_curve)
    assert all("ema-0.2_perplexity" in p for p in learning_curve.read_run(out)["points"])

    # training.average picks one by its decay; one the checkpoint does not keep is refused
    assert average.main([str(out / "checkpoint-8"), "--output-dir", str(tmp_path / "half"), "--decay", "0.2"]) == 0
    kept = load_file(str(out / "checkpoint-8" / "ema-0.2.safetensors"))
    exported = load_file(str(tmp_path / "half" / "model.safetensors"))
    assert all(torch.equal(exported[k], v) for k, v in kept.items() if k in exported)
    record = json.loads((tmp_path / "half" / "dlm_run.json").read_text())
    assert record["ema"]["decay"] == 0.2 and record["perplexity"] == info["ema"]["others"][0]["perplexity"]
    capsys.readouterr()
    assert average.main([str(out / "checkpoint-8"), "--output-dir", str(tmp_path / "none"), "--decay", "0.7"]) == 2
    assert "keeps no average with decay 0.7 (it keeps 0.2, 0.9)" in capsys.readouterr().err

    # a run resumed with one more decay starts it from the checkpoint's first average, at its full decay
    one = tmp_path / "one"
    assert train_diffusion.main(["--data", str(corpus), "--output-dir", str(one), *flags, "--ema", "0.9"]) == 0
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(one / "checkpoint-4", resumed / "checkpoint-4")
    added = EmaWeights(trainer=None, decay=0.2, resume_from=str(resumed / "checkpoint-4"), name="ema-0.2")
    from transformers import AutoModelForMaskedLM

    added.on_train_begin(None, None, None, model=AutoModelForMaskedLM.from_pretrained(resumed / "checkpoint-4"))
    first = load_file(str(one / "checkpoint-4" / "ema.safetensors"))
    assert all(torch.equal(a, first[name]) for name, a in zip(added.names, added.shadow))
    assert added.continues == "checkpoint-4/ema.safetensors"
    assert train_diffusion.main(["--data", str(corpus), "--output-dir", str(resumed), *flags, "--ema", "0.9,0.2",
                                 "--resume"]) == 0
    with safe_open(str(resumed / "checkpoint-8" / "ema-0.2.safetensors"), framework="pt") as f:
        assert f.metadata()["continues"] == "checkpoint-4/ema.safetensors"
    assert json.loads((resumed / "dlm_run.json").read_text())["ema"]["others"][0]["continues"] == \
        "checkpoint-4/ema.safetensors"


def test_a_weight_average_needs_a_decay_below_one(corpus, tmp_path, capsys):
    from training import train_diffusion

    with pytest.raises(SystemExit) as refused:  # refused with the flags, before any data is read
        train_diffusion.main(["--data", str(corpus), "--output-dir", str(tmp_path / "bad"), "--ema", "1.5", *TINY_FLAGS])
    assert refused.value.code == 2 and "--ema must be a decay in (0, 1)" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_a_decay_longer_than_the_run_is_refused(corpus, tmp_path, capsys):
    from training import train_diffusion

    code = train_diffusion.main(["--data", str(corpus), "--output-dir", str(tmp_path / "bad"), "--max-steps", "10",
                                 "--schedule", "wsd", "--decay-steps", "9", *TINY_FLAGS])
    assert code == 2 and "--decay-steps must be in [1, 8]" in capsys.readouterr().err


def test_bundle_keeps_a_tokenizer_saved_offline_loadable_from_the_hub(diffusion_run, tmp_path, monkeypatch):
    import shutil

    from training import bundle

    run = tmp_path / "run"
    shutil.copytree(diffusion_run, run, ignore=shutil.ignore_patterns("checkpoint-*"))
    config_file = run / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    config["local_files_only"] = True  # what transformers records when the run saved under HF_HUB_OFFLINE
    config_file.write_text(json.dumps(config))
    monkeypatch.setattr(bundle, "BUNDLED_DIR", tmp_path / "models")
    (tmp_path / "models").mkdir()

    target = bundle.bundle(run, "mine")
    bundled = json.loads((target / "tokenizer_config.json").read_text())
    assert bundled["local_files_only"] is False
    assert {k: v for k, v in bundled.items() if k != "local_files_only"} == \
        {k: v for k, v in config.items() if k != "local_files_only"}
    assert json.loads(config_file.read_text())["local_files_only"] is True  # the run itself is left alone


def test_ar_matched_to_diffusion(diffusion_run, corpus, tmp_path):
    from training import train_ar

    out = tmp_path / "ar"
    code = train_ar.main(["--match", str(diffusion_run), "--data", str(corpus), "--output-dir", str(out),
                          "--max-steps", "20", "--eval-steps", "20", "--save-steps", "20", *RUN_FLAGS])
    assert code == 0
    import dlm

    ar, diffusion = dlm.load(str(out)), dlm.load(str(diffusion_run))
    assert ar.kind == "causal"
    assert abs(ar.num_parameters / diffusion.num_parameters - 1) <= 0.10
    assert ar.tokenizer.get_vocab() == diffusion.tokenizer.get_vocab()
    assert json.loads((out / "dlm_run.json").read_text())["perplexity"] < 300 / 2  # far below uniform


def test_resume_skips_a_checkpoint_killed_while_saving(tmp_path, capsys):
    from training.common import prepare_output_dir

    for step, complete in ((10, True), (20, True), (30, False)):
        checkpoint = tmp_path / f"checkpoint-{step}"
        checkpoint.mkdir()
        (checkpoint / "model.safetensors").write_bytes(b"")
        if complete:
            (checkpoint / "trainer_state.json").write_text("{}")
    assert prepare_output_dir(tmp_path, resume=True, overwrite=False) == str(tmp_path / "checkpoint-20")
    assert "skipping checkpoint-30" in capsys.readouterr().err


def test_resume_after_kill(corpus, tmp_path):
    """kill -9 in the middle of a run, then --resume: only the steps since the last checkpoint are lost."""
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "training.train_diffusion", "--data", str(corpus), "--output-dir", str(out),
               "--max-steps", "5000", "--save-steps", "10", "--eval-steps", "1000", *TINY_FLAGS]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    root = Path(__file__).resolve().parents[1]
    process = subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 600  # generous: a loaded CI machine is slow, and the loop stops as soon as it can
        while not any(int(p.name.split("-")[1]) >= 20 and (p / "trainer_state.json").exists() for p in out.glob("checkpoint-*")):
            assert process.poll() is None, "training ended before it could be killed"
            assert time.time() < deadline, "no checkpoint within ten minutes"
            time.sleep(0.2)
        time.sleep(0.5)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    # the last complete checkpoint (the kill may land while the next one is being written: --resume skips that)
    saved = max(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*") if (p / "trainer_state.json").is_file())
    assert saved >= 20 and not (out / "model.safetensors").exists()
    # without --resume the folder is refused, never overwritten
    refused = subprocess.run(command[:-len(TINY_FLAGS)] + TINY_FLAGS, cwd=root, env=env, capture_output=True, text=True)
    assert refused.returncode == 2 and "--resume" in refused.stderr
    finish = command.copy()
    finish[finish.index("5000")] = str(saved + 10)
    done = subprocess.run(finish + ["--resume"], cwd=root, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    history = json.loads((out / f"checkpoint-{saved + 10}" / "trainer_state.json").read_text())["log_history"]
    steps = [h["step"] for h in history if "loss" in h]
    assert steps[0] == 1 and steps[-1] == saved + 10, "the log continues the killed run"
    assert json.loads((out / "dlm_run.json").read_text())["steps"] == saved + 10
    # the killed session's time is not lost: the ledger has both sessions, and the run's wall time sums them
    sessions = json.loads((out / "dlm_time.json").read_text())["sessions"]
    # (the kill may land between a checkpoint and the ledger's update after it: one checkpoint behind at most)
    assert len(sessions) == 2 and sessions[0]["start_step"] == 0 and sessions[0]["end_step"] >= saved - 10
    assert sessions[1]["start_step"] == saved and sessions[1]["end_step"] == saved + 10
    assert all(s["seconds"] > 0 for s in sessions)
    run = json.loads((out / "dlm_run.json").read_text())
    assert run["wall_seconds"] == pytest.approx(sum(s["seconds"] for s in sessions))
    assert [s["steps"] for s in run["sessions"]] == [sessions[0]["end_step"], 10]


# ---- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, flags, message",
    [
        (lambda d: d / "missing.txt", [], "does not exist"),
        (lambda d: (d / "empty.txt").write_text("") and d / "empty.txt" or d / "empty.txt", [], "empty"),
        (lambda d: (d / "blank.txt").write_text("\n\n  \n") and d / "blank.txt", [], "no non-empty text"),
        (lambda d: (d / "t.csv").write_text("review,label\nhello,1\n") and d / "t.csv", [], "no column 'text'"),
        (lambda d: (d / "t.csv").write_text("review,label\nhello,1\n") and d / "t.csv", ["--txt-sample-by", "page"], "invalid choice"),
    ],
)
def test_bad_data_gets_a_clear_message(tmp_path, capsys, make, flags, message):
    from training import train_diffusion

    data = make(tmp_path)
    try:
        code = train_diffusion.main(["--data", str(data), "--output-dir", str(tmp_path / "out"), *flags, *TINY_FLAGS])
    except SystemExit as exit_:  # argparse rejects bad choices itself, with status 2
        code = exit_.code
    assert code == 2
    assert message in capsys.readouterr().err


def test_unwritable_and_mismatched(tmp_path, capsys, corpus, bert_dir, diffusion_run):
    from training import train_diffusion

    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = train_diffusion.main(["--data", str(corpus), "--output-dir", str(blocker / "sub"), *TINY_FLAGS])
    assert code == 2 and "cannot write" in capsys.readouterr().err
    # a tokenizer that does not belong to the checkpoint: 300-token BPE vs a ~120-token BERT
    code = train_diffusion.main(["--data", str(corpus), "--output-dir", str(tmp_path / "m"), "--init", bert_dir,
                                 "--tokenizer", str(diffusion_run / "tokenizer"), *TINY_FLAGS])
    assert code == 2 and "do not belong together" in capsys.readouterr().err


# ---- push and pull through a stand-in Hub --------------------------------------------------------


def test_push_then_load_from_the_hub(diffusion_run, hub_online):  # noqa: F811
    import dlm
    from huggingface_hub import HfApi

    from training.push import PushError, push

    hub = hub_online
    api = HfApi(endpoint=hub.url, token=hub.token)
    hub.fail_next_commits(1)  # the first attempt fails on the server: push retries
    url = push(diffusion_run, "test-user/tiny-diffusion", api=api, backoff=0.01)
    assert "tiny-diffusion" in url
    files = set(api.list_repo_files("test-user/tiny-diffusion"))
    assert {"config.json", "model.safetensors", "README.md", "tokenizer.json"} <= files
    assert not any(f.startswith("checkpoint-") for f in files)
    lm = dlm.load("test-user/tiny-diffusion")  # pulled through the server, settings from config.json
    assert lm.kind == "masked" and lm.settings.length == 16
    assert dlm.generate(lm, "the", seed=0).texts[0].startswith("the")
    hub.fail_next_commits(10)  # a push that keeps failing is reported as failed, not done
    with pytest.raises(PushError, match="failed after 2 attempts"):
        push(diffusion_run, "test-user/tiny-diffusion-2", api=api, retries=2, backoff=0.01)
    with pytest.raises(PushError, match="config.json"):
        push(diffusion_run / "tokenizer", "test-user/x", api=api)


def test_a_push_sends_the_final_model_and_leaves_the_run_s_other_models_behind(tmp_path):
    from training.push import files_to_push

    for name in ("config.json", "model.safetensors", "README.md", "tokenizer.json", "checkpoint-8/model.safetensors",
                 "checkpoint-8/ema.safetensors", "checkpoint-8/optimizer.pt", "ema/model.safetensors",
                 "ema/config.json", "stable/model.safetensors", "training_args.bin"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    assert files_to_push(tmp_path) == ["README.md", "config.json", "model.safetensors", "tokenizer.json"]
    assert files_to_push(tmp_path / "ema") == ["config.json", "model.safetensors"]  # the average, pushed itself


def test_run_records_are_replaced_whole(tmp_path, monkeypatch):
    """The ledger and the run record are rewritten at every log; a run killed in the middle of a write
    leaves the last complete version for --resume (a truncated file made --resume fail to read it)."""
    from training import common

    path = tmp_path / common.TIME_FILE
    common.write_json(path, {"sessions": [{"start_step": 0}]})
    real_write = Path.write_text

    def killed_half_way(self, text, *args, **kwargs):
        real_write(self, text[: len(text) // 2])
        raise KeyboardInterrupt  # the process dies here

    monkeypatch.setattr(Path, "write_text", killed_half_way)
    with pytest.raises(KeyboardInterrupt):
        common.write_json(path, {"sessions": [{"start_step": 0}, {"start_step": 10}]})
    monkeypatch.undo()
    assert common.read_time_ledger(tmp_path) == [{"start_step": 0}]


def test_a_card_refresh_changes_the_recommended_settings_and_0_turns_blocks_off(diffusion_run, tmp_path):
    """`python -m training.card RUN --block-length 32` then `--block-length 0`: the settings config.json
    hands the sampler, and the card that states them, follow; other settings are kept."""
    import shutil

    import dlm
    from training import card

    run = tmp_path / "run"
    shutil.copytree(diffusion_run, run)
    assert card.main([str(run), "--num-samples", "1", "--remasking", "entropy", "--temperature", "0.8",
                      "--block-length", "8"]) == 0
    settings = dlm.load(str(run)).settings
    assert (settings.remasking, settings.temperature, settings.block_length) == ("entropy", 0.8, 8)
    assert "block_length 8" in (run / "README.md").read_text()
    assert card.main([str(run), "--num-samples", "1", "--remasking", "random", "--block-length", "0"]) == 0
    settings = dlm.load(str(run)).settings
    assert (settings.remasking, settings.temperature, settings.block_length) == ("random", 0.8, None)
    assert "block_length" not in json.loads((run / "config.json").read_text())["dlm"]["sampler"]
    assert "block_length" not in (run / "README.md").read_text()
    assert card.main([str(run), "--num-samples", "1", "--temperature-end", "0.5"]) == 0  # annealed, 0.8 -> 0.5
    assert dlm.load(str(run)).settings.temperature_end == 0.5
    assert "temperature 0.8, temperature_end 0.5" in (run / "README.md").read_text()
    assert card.main([str(run), "--num-samples", "1", "--temperature-end", "0"]) == 0  # constant again
    assert dlm.load(str(run)).settings.temperature_end is None
    assert "temperature_end" not in (run / "README.md").read_text()
