"""dlm.continuous: the closed-form forward process, DDIM/DDPM updates, rounding, guidance, a real short
training run, and streaming a tiny real model through the shared step interface and renderers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import dlm
from dlm.continuous import (
    GENERATE,
    GIVEN,
    WITHHELD,
    ContinuousConfig,
    ContinuousDiffusionLM,
    NoiseSchedule,
    predict_x0,
)
from tests.conftest import bpe_tokenizer

LINE_CORPUS = [f"the {a} sat on the {b} and the {c} ran to the {d}"
               for a in ("cat", "dog", "fox", "girl") for b in ("mat", "log", "hill")
               for c in ("bird", "man", "dog") for d in ("road", "boat", "hill")]  # 108 regular lines


def tiny_model(tokenizer, seed: int = 0, **overrides) -> ContinuousDiffusionLM:
    torch.manual_seed(seed)
    sizes = dict(vocab_size=len(tokenizer), embedding_dim=8, hidden_size=32, num_hidden_layers=2,
                 num_attention_heads=2, intermediate_size=64, max_position_embeddings=96,
                 pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                 eos_token_id=tokenizer.eos_token_id)
    return ContinuousDiffusionLM(ContinuousConfig(**{**sizes, **overrides})).eval()


@pytest.fixture(scope="module")
def continuous_dir(tmp_path_factory):
    """A tiny untrained continuous model saved like training.train_continuous saves one."""
    tokenizer = bpe_tokenizer()
    model = tiny_model(tokenizer)
    model.config.dlm = {"kind": "continuous", "sampler": {"length": 12, "steps": 10, "solver": "ddpm", "clamp": False}}
    folder = tmp_path_factory.mktemp("continuous")
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def continuous(continuous_dir):
    return dlm.load(str(continuous_dir), device="cpu")


# ---- the forward process -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sqrt", "cosine"])
def test_forward_noising_matches_its_closed_form(name):
    schedule = NoiseSchedule(name, 1000)
    abar = schedule.alpha_bars
    assert abar[0] == 1 and (abar[1:] < abar[:-1]).all() and abar[-1] < 1e-3, "from clean data to pure noise"
    curve = {"sqrt": lambda s: 1 - math.sqrt(s + 1e-4), "cosine": lambda s: math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2}[name]
    for t in (1, 10, 250, 500, 900):  # before any beta is capped, abar_t = abar(t/T) / abar(0)
        assert float(abar[t]) == pytest.approx(curve(t / 1000) / curve(0), rel=1e-9)
    n, generator = 50_000, torch.Generator().manual_seed(0)
    x0 = torch.tensor([1.5, -0.5, 0.0, 2.0])
    for t in (1, 100, 500, 999):
        noise = torch.randn(n, 1, 4, generator=generator)
        x_t = schedule.add_noise(x0.expand(n, 1, 4), noise, torch.full((n,), t))[:, 0]  # (n, 4)
        mean, var = math.sqrt(float(abar[t])), 1 - float(abar[t])
        assert torch.allclose(x_t.mean(0), mean * x0, atol=5 * math.sqrt(var / n)), f"mean at t={t}"
        assert torch.allclose(x_t.var(0), torch.full((4,), var), rtol=0.03, atol=1e-6), f"variance at t={t}"


def test_ddim_over_all_steps_with_exact_x0_recovers_x0():
    schedule = NoiseSchedule("sqrt", 1000)
    generator = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 5, 8, generator=generator)
    x_start = torch.randn(2, 5, 8, generator=generator)
    times = schedule.timesteps(1000)
    assert times[0] == 1000 and times[-1] == 0 and len(times) == 1001
    x, implied = x_start, []
    for t, t_next in zip(times[:-1], times[1:]):
        abar = float(schedule.alpha_bars[t])
        implied.append((x - math.sqrt(abar) * x0) / math.sqrt(1 - abar))
        assert torch.allclose(implied[-1], implied[0], atol=1e-4), "DDIM keeps the implied noise fixed"
        x = schedule.step(x, x0, t, t_next, eta=0.0, noise=None)
    assert torch.allclose(x, x0, atol=1e-6)
    for eta, steps in ((0.0, 7), (1.0, 1000), (1.0, 13)):  # strided DDIM; DDPM's posterior also ends at x0
        x = x_start
        times = schedule.timesteps(steps)
        for t, t_next in zip(times[:-1], times[1:]):
            x = schedule.step(x, x0, t, t_next, eta=eta, noise=torch.randn(x.shape, generator=generator))
        assert torch.allclose(x, x0, atol=1e-6), (eta, steps)
    with pytest.raises(ValueError, match="between 1 and the 1000"):
        schedule.timesteps(1001)


@pytest.mark.parametrize("name", ["sqrt", "cosine"])
def test_ddpm_step_samples_the_forward_posterior(name):
    """eta = 1 over a stride t -> t' is q(x_t' | x_t, x0) = N(mean, var) with abar_t / abar_t' as the step's alpha:
    mean = sqrt(abar') b / (1 - abar) x0 + sqrt(abar / abar') (1 - abar') / (1 - abar) x_t, var = (1 - abar') / (1 - abar) b,
    b = 1 - abar / abar' (DDPM, Ho et al. 2020, eq. 7)."""
    schedule = NoiseSchedule(name, 1000)
    generator = torch.Generator().manual_seed(0)
    x0, x_t = torch.randn(3, 4, generator=generator), torch.randn(3, 4, generator=generator)
    for t, t_next in ((1000, 900), (500, 499), (300, 7), (20, 0)):
        abar, abar_next = float(schedule.alpha_bars[t]), float(schedule.alpha_bars[t_next])
        b = 1 - abar / abar_next
        mean = (math.sqrt(abar_next) * b / (1 - abar)) * x0 + (math.sqrt(abar / abar_next) * (1 - abar_next) / (1 - abar)) * x_t
        std = math.sqrt((1 - abar_next) / (1 - abar) * b)
        at_mean = schedule.step(x_t, x0, t, t_next, eta=1.0, noise=torch.zeros(3, 4))
        assert torch.allclose(at_mean, mean, atol=1e-5), (t, t_next)
        one_sigma = schedule.step(x_t, x0, t, t_next, eta=1.0, noise=torch.ones(3, 4)) - at_mean
        assert torch.allclose(one_sigma, torch.full((3, 4), std), atol=1e-6), (t, t_next)


def test_sampler_with_an_exact_x0_model_recovers_the_text(continuous):
    """Every step of the real sampling loop, over all T steps, with a model that always predicts the
    clean embeddings of one text: the prompt stays and the rounded canvas is that text."""

    class Oracle(ContinuousDiffusionLM):
        def denoise(self, x_t, t, segment, x_self=None):
            return self.embed(self.target.expand(x_t.shape[0], -1))

    oracle = Oracle(continuous.model.config)
    oracle.load_state_dict(continuous.model.state_dict())
    lm = dlm.LanguageModel(oracle.eval(), continuous.tokenizer, "continuous", continuous.settings, "oracle", "", {})
    prompt = dlm.generation.encode(lm.tokenizer, "the cat")
    text = dlm.generation.encode(lm.tokenizer, " sat on the mat and the dog ran")
    oracle.target = torch.tensor([lm.bos_id, *prompt, *text])
    for solver, steps in (("ddim", 1000), ("ddpm", 50)):
        trace = dlm.generate(lm, "the cat", length=len(text), steps=steps, seed=0, solver=solver, clamp=False)
        assert len(trace.steps) == steps and trace.nfe == steps
        assert trace.final[0].tolist() == oracle.target.tolist()
        assert trace.texts[0] == "the cat sat on the mat and the dog ran"


# ---- rounding and guidance -----------------------------------------------------------------------


def test_rounding_maps_an_embedding_to_its_own_token(continuous):
    model = continuous.model
    ids = torch.arange(model.config.vocab_size).unsqueeze(0)  # (1, V): every token
    assert torch.equal(model.nearest(model.embed(ids)), ids)
    assert torch.equal(model.logits(model.embed(ids)).argmax(-1), ids), "with no bias the decoder agrees"
    with torch.no_grad():  # a bias (the learned token prior) moves the decoder's choice, never the nearest
        bias = model.output_bias.clone()
        model.output_bias.copy_(torch.linspace(0, 100, len(bias)))
        try:
            assert torch.equal(model.nearest(model.embed(ids)), ids)
            assert not torch.equal(model.logits(model.embed(ids)).argmax(-1), ids)
        finally:
            model.output_bias.copy_(bias)
    assert torch.allclose(model.table().norm(dim=-1), torch.full((len(bias),), math.sqrt(8.0)), rtol=1e-5)


def test_guidance_is_conditional_at_zero_and_linear_in_the_scale(continuous):
    model = continuous.model
    generator = torch.Generator().manual_seed(0)
    x_t = torch.randn(2, 10, 8, generator=generator)
    t = torch.tensor([700, 300])
    segment = torch.full((2, 10), GENERATE)
    segment[:, :4] = GIVEN
    x_self = torch.randn(2, 10, 8, generator=generator)
    with torch.no_grad():
        cond = model.denoise(x_t, t, segment, x_self)
        uncond = model.denoise(x_t, t, segment.masked_fill(segment == GIVEN, WITHHELD), x_self)
        assert (cond - uncond).abs().max() > 1e-3, "the prompt matters, so the test can fail"
        guided = {s: predict_x0(model, x_t, t, segment, x_self, s) for s in (0.0, 0.5, 1.0, 3.0)}
    assert torch.equal(guided[0.0], cond), "cfg_scale 0 is the conditional branch alone"
    for s, x0 in guided.items():
        assert torch.allclose(x0, uncond + (1 + s) * (cond - uncond), atol=1e-5), s
    assert torch.allclose(guided[3.0] - guided[1.0], 4 * (guided[1.0] - guided[0.5]), atol=1e-5), "linear"


def test_withheld_positions_are_invisible(continuous):
    """The unconditional branch must not see the prompt: what withheld positions hold changes nothing."""
    model = continuous.model
    generator = torch.Generator().manual_seed(1)
    segment = torch.full((1, 9), GENERATE)
    segment[:, :3] = WITHHELD
    x_t = torch.randn(1, 9, 8, generator=generator)
    other = x_t.clone()
    other[:, :3] = torch.randn(1, 3, 8, generator=generator)
    with torch.no_grad():
        a = model.denoise(x_t, torch.tensor([500]), segment, x_t)
        b = model.denoise(other, torch.tensor([500]), segment, other)
    assert torch.allclose(a, b, atol=1e-6)


# ---- the step interface --------------------------------------------------------------------------


def test_stream_yields_steps_like_the_other_families(continuous):
    assert continuous.kind == "continuous" and isinstance(continuous.model, ContinuousDiffusionLM)
    generation = dlm.stream(continuous, "the cat", length=12, steps=6, seed=0, num_samples=2)
    steps = list(generation)
    initial, fixed = generation.initial, generation.canvas.fixed
    assert len(steps) == 6 and initial.shape == (2, fixed.numel())
    assert (initial[:, ~fixed] == -1).all() and int((~fixed).sum()) == 12
    for k, step in enumerate(steps):
        assert step.index == k and step.nfe == k + 1
        assert step.canvas.shape == step.guess.shape == step.confidence.shape == step.committed.shape == initial.shape
        assert torch.equal(step.canvas[:, fixed], initial[:, fixed]), "the prompt never changes"
        assert (step.canvas >= 0).all() and not step.committed[:, fixed].any()
        assert ((step.confidence >= 0) & (step.confidence <= 1)).all()
        previous = initial if k == 0 else steps[k - 1].canvas
        assert torch.equal(step.committed, (step.canvas != previous) & ~fixed)
    assert steps[0].committed[:, ~fixed].all(), "the first step fills every generated position"
    special = set(continuous.tokenizer.all_special_ids) - {continuous.eos_id}
    assert not any(int(i) in special for i in steps[-1].canvas[:, ~fixed].flatten())
    trace = generation.trace()
    assert trace.kind == "continuous" and trace.mask_id == -1 and trace.config["solver"] == "ddpm"
    assert trace.config["steps"] == 6 and all(text.startswith("the cat") for text in trace.texts)


def test_same_seed_same_text_whatever_the_batch(continuous):
    def run(**kwargs):
        return dlm.generate(continuous, "the dog", length=10, steps=8, **kwargs)

    a, b = run(seed=3), run(seed=3)
    assert [s.canvas.tolist() for s in a.steps] == [s.canvas.tolist() for s in b.steps]
    assert run(seed=4).final.tolist() != a.final.tolist(), "another seed, another start noise"
    batch = run(seed=3, num_samples=3)
    assert torch.equal(batch.final[0], a.final[0]), "row 0 draws the same noise at batch size 1 and 3"
    ddim = [run(seed=s, solver="ddim", rounding="logits", clamp=True).final.tolist() for s in (5, 5)]
    assert ddim[0] == ddim[1]


def test_guided_runs_cost_two_passes_per_step(continuous):
    guided = dlm.generate(continuous, "the cat", length=8, steps=5, seed=0, cfg_scale=2.0)
    assert guided.nfe == 10
    unprompted = dlm.generate(continuous, "", length=8, steps=5, seed=0, cfg_scale=2.0)
    assert unprompted.nfe == 5, "nothing to guide by without a prompt"


def test_infill_and_fixed_tokens_stay(continuous):
    trace = dlm.generate(continuous, infill="the [MASK] sat on the [MASK]", steps=4, seed=0)
    assert trace.config["length"] and trace.texts[0].startswith("the") and " sat on the" in trace.texts[0]
    pinned = dlm.stream(continuous, "the", length=8, steps=4, seed=0, fixed={3: " mat"})
    run = pinned.run()
    mat = dlm.generation.encode(continuous.tokenizer, " mat")
    start = int((~pinned.canvas.fixed).nonzero()[0]) + 3
    assert run.final[0, start : start + len(mat)].tolist() == mat


def test_bad_options_fail_with_the_choices(continuous):
    with pytest.raises(ValueError, match="choose from"):
        dlm.stream(continuous, "the", solver="euler")
    with pytest.raises(ValueError, match="choose from"):
        dlm.stream(continuous, "the", rounding="round")
    with pytest.raises(ValueError, match="unknown sampler option"):
        dlm.stream(continuous, "the", guidance=2)
    with pytest.raises(ValueError, match="between 1 and the 1000"):
        dlm.stream(continuous, "the", steps=5000)


def test_a_trace_renders_to_gif_and_html(continuous, tmp_path):
    from PIL import Image

    from dlm import render

    trace = dlm.generate(continuous, "the cat", length=10, steps=5, seed=0)
    gif = render.to_gif(trace, tmp_path / "run.gif", frame_ms=100)
    with Image.open(gif) as image:
        assert image.n_frames == len(trace.steps) + 1
    html = render.to_html(trace, tmp_path / "run.html")
    assert "continuous diffusion" in html
    assert dlm.Trace.from_dict(json.loads(json.dumps(trace.to_dict()))).kind == "continuous"


# ---- training ------------------------------------------------------------------------------------


def test_collator_segments():
    from training.collator import ContinuousCollator

    collator = ContinuousCollator(8, 1000, prefix_fraction=0.5, infill_fraction=0.2, cfg_dropout=0.3,
                                  crop_fraction=0.0, seed=0)
    batch = collator([{"input_ids": list(range(10, 42))} for _ in range(400)])
    segment = batch["segment"]
    assert batch["noise"].shape == (400, 32, 8) and batch["timesteps"].min() >= 1 and batch["timesteps"].max() <= 1000
    assert (segment == GENERATE).any(dim=1).all(), "every sample has something to predict"
    prompted = (segment != GENERATE).any(dim=1)
    withheld = (segment == WITHHELD).any(dim=1)
    assert not ((segment == GIVEN).any(dim=1) & withheld).any(), "a prompt is given or withheld, never both"
    assert 0.15 < float(withheld.sum() / prompted.sum()) < 0.45, "about cfg_dropout of the prompts are withheld"
    assert 0.55 < float(prompted.float().mean()) < 0.85
    first, second = (ContinuousCollator(8, 1000, seed=7)([{"input_ids": [5] * 16}] * 4) for _ in range(2))
    assert all(torch.equal(first[k], second[k]) for k in first), "a seeded collator repeats its batches"


def test_short_training_run_lowers_the_loss(tmp_path):
    from training import train_continuous

    data = tmp_path / "lines.txt"
    data.write_text("\n".join(LINE_CORPUS) + "\n")
    out = tmp_path / "run"
    code = train_continuous.main([
        "--data", str(data), "--output-dir", str(out), "--embedding-dim", "16", "--hidden-size", "32", "--layers", "2",
        "--heads", "2", "--intermediate-size", "64", "--block-size", "32", "--batch-size", "8", "--lr", "3e-3",
        "--warmup-steps", "2", "--max-steps", "60", "--eval-steps", "30", "--save-steps", "30", "--logging-steps", "10",
        "--eval-blocks", "8", "--num-samples", "2", "--threads", "1",
    ])
    assert code == 0
    history = json.loads((out / "checkpoint-60" / "trainer_state.json").read_text())["log_history"]
    losses = [h["loss"] for h in history if "loss" in h]
    evals = [h["eval_loss"] for h in history if "eval_loss" in h]
    assert losses[-1] < losses[0] - 1.0 and evals[-1] < evals[0]
    assert any("ce_t_00_010" in h for h in history), "the rounding loss is logged per band of t"
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "dlm-continuous" and config["dlm"]["kind"] == "continuous"
    assert config["dlm"]["sampler"]["solver"] == "ddpm"
    card = (out / "README.md").read_text()
    assert "continuous-diffusion" in card and "seed 1" in card
    lm = dlm.load(str(out))
    assert lm.kind == "continuous" and len(lm.tokenizer) == 4096, "the bundled tokenizer by default"
    assert dlm.generate(lm, "the cat", seed=0).texts[0].startswith("the cat")


# ---- the CLI and the app take it as they take the other families ---------------------------------


def test_cli_generates_with_continuous_options(continuous_dir, capsys):
    from dlm import cli, continuous

    assert set(cli.SOLVERS) == set(continuous.SOLVERS) and set(cli.ROUNDINGS) == set(continuous.ROUNDINGS)
    code = cli.main(["generate", "--model", str(continuous_dir), "--prompt", "the cat", "--length", "6", "--steps", "4",
                     "--solver", "ddim", "--rounding", "logits", "--no-clamp", "--cfg-scale", "1", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["steps"] == 4 and out["nfe"] == 8 and out["text"].startswith("the cat")
    assert (out["config"]["solver"], out["config"]["rounding"], out["config"]["clamp"]) == ("ddim", "logits", False)


def test_the_app_generates_and_animates_with_a_continuous_model(continuous_dir, gpt2_dir):
    from webapp import models
    from webapp.settings import AR, DIFFUSION
    from webapp.tabs.animate import animate
    from webapp.tabs.generate import generate

    before = models.MODELS
    models.configure({DIFFUSION: str(continuous_dir), AR: gpt2_dir})
    try:
        settings = dict(model=DIFFUSION, text="the cat", length=8, steps=4, seed=0, guidance=0.5)
        *_, final = generate(**settings)
        assert final[-3].startswith("**Done** in 4 steps · NFE 8") and final[-2].startswith("the cat")
        *_, (gif, files, race_image, note) = animate(**settings, frame_ms=100, race_ar=True)  # a generator
        assert [Path(f).suffix for f in files[:3]] == [".gif", ".mp4", ".html"] and race_image.visible
        assert "continuous diffusion" in Path(files[2]).read_text() and "4 steps" in note
    finally:
        models.MODELS = before
