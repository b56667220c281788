"""dlm.classify and training.train_classifier: generative classifiers trained here, calibration, the CLI."""

from __future__ import annotations

import csv
import json
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dlm.classify import (
    GenerativeClassifier,
    ZeroShotClassifier,
    calibration_report,
    evaluate,
    expected_calibration_error,
    fit_length_temperature,
    fit_temperature,
    load_classifier,
    report,
)
from dlm.cli import main as cli

FLAGS = ["--batch-size", "8", "--lr", "3e-3", "--warmup-steps", "2", "--logging-steps", "10", "--eval-pieces", "16",
         "--save-steps", "1000", "--eval-steps", "1000", "--max-tokens", "24", "--calibration-texts", "20"]


def animal_text(rng: random.Random) -> str:
    return (f"the {rng.choice(['cat', 'dog', 'fox', 'bird'])} sat on the {rng.choice(['mat', 'log', 'hill', 'boat'])} "
            f"and the {rng.choice(['cat', 'dog', 'fox', 'bird'])} ran to the {rng.choice(['road', 'mat', 'log'])}")


def scripture_text(rng: random.Random) -> str:
    return (f"in the {rng.choice(['beginning', 'end', 'morning'])} god created the {rng.choice(['heaven', 'earth', 'light'])}, "
            f"it was the {rng.choice(['best', 'worst', 'first'])} of {rng.choice(['times', 'days', 'nights', 'years'])}")


@pytest.fixture(scope="module")
def kinds(tmp_path_factory) -> tuple[Path, list[tuple[str, str]]]:
    """A CSV of two kinds of text (labels "animal" and "scripture"), and held-out texts of each."""
    rng = random.Random(0)
    rows = [(animal_text(rng), "animal") for _ in range(300)] + [(scripture_text(rng), "scripture") for _ in range(300)]
    rows = sorted(set(rows))
    rng.shuffle(rows)
    path = tmp_path_factory.mktemp("kinds") / "kinds.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(rows[:-40])
    return path, rows[-40:]


def train(design: str, init: Path, data: Path, out: Path, steps: int = 40) -> Path:
    from training import train_classifier

    code = train_classifier.main(["--design", design, "--init", str(init), "--data", str(data), "--output-dir", str(out),
                                  "--max-steps", str(steps), *FLAGS])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def per_class(kinds, roberta_dir, tmp_path_factory) -> Path:
    return train("per-class", roberta_dir, kinds[0], tmp_path_factory.mktemp("clf") / "per-class")


# ---- trained classifiers separate the two kinds --------------------------------------------------------


def test_two_class_models_trained_on_their_own_text_separate_the_kinds(per_class, kinds):
    spec = json.loads((per_class / "classifier.json").read_text())
    assert spec["design"] == "per-class" and spec["labels"] == ["animal", "scripture"]
    assert sorted(spec["models"].values()) == ["class-animal", "class-scripture"]
    assert math.isclose(sum(spec["priors"]), 1.0) and spec["temperature"] > 0
    assert spec["validation"]["texts"] > 0 and "ece_after" in spec["validation"]
    clf = load_classifier(str(per_class))
    assert clf.models[0] is not clf.models[1]
    held_out = kinds[1]
    predictions = clf.classify([t for t, _ in held_out])
    evaluation = evaluate([p.label for p in predictions], [y for _, y in held_out], list(clf.labels))
    assert evaluation.accuracy >= 0.95
    for p in predictions:
        assert p.nfe % 2 == 0 and 2 * clf.round_samples <= p.nfe <= 2 * clf.max_samples
        gap = p.logits[p.label] - p.logits[p.runner_up]
        prior_gap = math.log(clf.priors[clf.labels.index(p.label)] / clf.priors[clf.labels.index(p.runner_up)])
        assert math.isclose(sum(p.contributions) + prior_gap, gap, rel_tol=1e-9, abs_tol=1e-9)


@pytest.mark.parametrize("design, init", [("conditional", "roberta_dir"), ("conditional", "gpt2_dir"),
                                          ("discriminative", "roberta_dir")])
def test_the_other_designs_train_and_separate_the_kinds(design, init, kinds, request, tmp_path):
    folder = train(design, request.getfixturevalue(init), kinds[0], tmp_path / design, steps=60)
    clf = load_classifier(str(folder))
    spec = json.loads((folder / "classifier.json").read_text())
    assert spec["design"] == design
    held_out = kinds[1]
    if design == "conditional":
        assert spec["prompts"] == ["animal:", "scripture:"] and clf.models[0] is clf.models[1]
        # label dropout: recorded, and the same model scores p(text) under the null prompt
        assert (spec["null_prompt"], spec["label_dropout"], spec["bayes_weight"]) == ("", 0.1, 1.0)
        assert clf.null_prompt == "" and "eval_label_accuracy" in spec["training"]["models"]["*"]
        [p] = clf.classify([held_out[0][0]], marginal=True)
        assert math.isfinite(p.log_marginal) and p.log_marginal < 0
    predictions = clf.classify([t for t, _ in held_out])
    assert evaluate([p.label for p in predictions], [y for _, y in held_out], list(clf.labels)).accuracy >= 0.9
    assert all(len(p.contributions) == len(p.tokens) for p in predictions)


@pytest.mark.parametrize("design", ["per-class", "discriminative"])
def test_bf16_on_a_cpu_trains_a_classifier_in_autocast_and_evaluates_it_in_float32(design, kinds, roberta_dir, tmp_path,
                                                                                monkeypatch):
    import torch

    from training import train_classifier
    from training.trainers import TrainingAutocastMixin

    seen = []  # (training?, autocast on?) each time a loss is computed through the trainer's context
    original = TrainingAutocastMixin.compute_loss_context_manager

    def spy(self):
        stack = original(self)
        seen.append((self.model.training, torch.is_autocast_enabled("cpu")))
        return stack

    monkeypatch.setattr(TrainingAutocastMixin, "compute_loss_context_manager", spy)
    out = tmp_path / design
    assert train_classifier.main(["--design", design, "--init", str(roberta_dir), "--data", str(kinds[0]),
                                  "--output-dir", str(out), "--max-steps", "4", "--bf16", *FLAGS]) == 0
    assert [on for training, on in seen if training] and all(on for training, on in seen if training)
    assert not any(on for training, on in seen if not training)
    predictions = load_classifier(str(out)).classify([text for text, _ in kinds[1][:2]])
    assert all(math.isfinite(v) for p in predictions for v in p.logits.values())


def test_frozen_lower_layers_stay_the_base_s_and_the_class_models_differ_above_them(kinds, roberta_dir, tmp_path, capsys):
    from safetensors.torch import load_file

    from training import train_classifier

    folder = tmp_path / "frozen"
    argv = ["--design", "per-class", "--init", str(roberta_dir), "--data", str(kinds[0]), "--output-dir", str(folder),
            "--max-steps", "20", "--freeze-layers", "1", "--save-dtype", "float32", *FLAGS]
    assert train_classifier.main(argv) == 0
    spec = json.loads((folder / "classifier.json").read_text())
    assert spec["freeze_layers"] == 1
    base = load_file(str(Path(roberta_dir) / "model.safetensors"))
    negative, positive = (load_file(str(folder / spec["models"][c] / "model.safetensors")) for c in ("animal", "scripture"))
    frozen = [k for k in base if "embeddings.word_embeddings" in k or ".layer.0." in k]
    trained = [k for k in base if ".layer.1." in k]
    assert frozen and trained
    for name in frozen:  # the token embeddings (the tied output matrix too) and layer 0: the base's, bit for bit
        assert torch.equal(negative[name], base[name]) and torch.equal(positive[name], base[name]), name
    assert all(not torch.equal(negative[k], positive[k]) for k in trained if k.endswith("weight"))
    info = json.loads((folder / spec["models"]["animal"] / "dlm_train.json").read_text())
    assert 0 < info["trained_parameters"] < info["parameters"]

    capsys.readouterr()
    bad = ["--design", "per-class", "--init", str(roberta_dir), "--data", str(kinds[0]), "--output-dir",
           str(tmp_path / "bad"), "--max-steps", "2", "--freeze-layers", "3", *FLAGS]
    assert train_classifier.main(bad) == 2  # the tiny model has 2 layers
    assert "--freeze-layers must be in [0, 2]" in capsys.readouterr().err


def test_a_bundled_classifier_is_continued_by_its_name_and_only_as_itself(kinds, tmp_path, capsys):
    from safetensors.torch import load_file

    from dlm.loading import BUNDLED_DIR
    from training import train_classifier

    reviews = tmp_path / "reviews.csv"
    rows = [f"a {w} film, {i} times over" for i in range(12) for w in ("good", "dull")]
    reviews.write_text("text,label\n" + "\n".join(f"{r},{'positive' if 'good' in r else 'negative'}" for r in rows) + "\n")
    out = tmp_path / "more"
    argv = ["--design", "per-class", "--init", "default-classifier", "--data", str(reviews), "--output-dir", str(out),
            "--max-steps", "1", "--save-dtype", "float32", *FLAGS]
    assert train_classifier.main(argv) == 0
    spec = json.loads((out / "classifier.json").read_text())
    assert spec["training"]["base_model"] == "default-classifier"  # the card names the bundled one, not a path
    assert spec["training"]["continued_from"]["command"].startswith("python -m training.train_classifier")
    bundled = load_file(str(BUNDLED_DIR / "default-classifier" / "class-positive" / "model.safetensors"))
    continued = load_file(str(out / "class-positive" / "model.safetensors"))
    name = next(k for k in bundled if "layers.3.mlp.Wo" in k)
    assert (continued[name] - bundled[name].float()).abs().max() < 1e-2  # one small step from its weights

    capsys.readouterr()
    other = ["--design", "per-class", "--init", "default-classifier", "--data", str(kinds[0]), "--output-dir",
             str(tmp_path / "other"), "--max-steps", "1", *FLAGS]
    assert train_classifier.main(other) == 2
    assert "it can only be continued as one" in capsys.readouterr().err


def test_freezing_finds_the_layers_of_an_autoregressive_model_too(gpt2_dir):
    from transformers import AutoModelForCausalLM

    from training.train_classifier import freeze_lower

    model = AutoModelForCausalLM.from_pretrained(gpt2_dir)
    left = freeze_lower(model, 2)
    assert not model.transformer.wte.weight.requires_grad and not model.lm_head.weight.requires_grad  # tied
    assert not any(p.requires_grad for p in model.transformer.h.parameters())
    assert model.transformer.ln_f.weight.requires_grad
    assert left == sum(p.numel() for p in model.parameters() if p.requires_grad) > 0


def test_a_text_with_a_clear_winner_stops_early_and_the_cap_holds(per_class, kinds):
    clear = load_classifier(str(per_class), round_samples=4, max_samples=64, margin=2.0)
    [p] = clear.classify([kinds[1][0][0]])
    assert p.nfe < 2 * 64  # stopped before the cap
    capped = load_classifier(str(per_class), round_samples=4, max_samples=8, margin=1e9)
    [q] = capped.classify([kinds[1][0][0]])
    pieces = math.ceil(len(q.tokens) / capped.max_tokens)  # a text longer than one piece: one row per piece
    assert q.nfe == 2 * 8 * pieces


def test_a_budget_set_at_training_time_is_what_every_user_of_the_classifier_gets(per_class, kinds, tmp_path, capsys):
    import shutil

    from training import train_classifier

    folder = tmp_path / "budget"
    shutil.copytree(per_class, folder)
    data = ["--data", str(kinds[0]), "--output-dir", str(folder), "--calibration-texts", "20"]
    assert train_classifier.main(["--calibrate-only", "--scoring", "2:6:1e9:random", *data]) == 0
    spec = json.loads((folder / "classifier.json").read_text())
    assert spec["scoring"] == {"round_samples": 2, "max_samples": 6, "margin": 1e9, "masks": "random"}
    clf = load_classifier(str(folder))
    assert (clf.round_samples, clf.max_samples, clf.masks) == (2, 6, "random")
    [p] = clf.classify([kinds[1][0][0]])
    assert p.nfe == 2 * 6 * math.ceil(len(p.tokens) / clf.max_tokens)  # an unreachable margin: always the cap
    for bad in ("1:6:2:tiled", "4:2:2:tiled", "4:8:0:tiled", "4:8:2:sobol", "4:8:2"):
        with pytest.raises(SystemExit):
            train_classifier.main(["--calibrate-only", "--scoring", bad, *data])
        assert repr(bad) in capsys.readouterr().err
    assert json.loads((folder / "classifier.json").read_text())["scoring"] == spec["scoring"]  # nothing lost
    assert train_classifier.main(["--calibrate-only", "--max-pieces", "3", *data]) == 0  # read longer texts, recalibrated
    spec = json.loads((folder / "classifier.json").read_text())
    assert spec["max_pieces"] == 3 and spec["temperature_exponent"] == spec["validation"]["temperature_exponent"]
    clf = load_classifier(str(folder))
    assert clf.max_pieces == 3 and clf.temperature_exponent == spec["temperature_exponent"]
    assert clf.temperature == spec["temperature"]
    assert train_classifier.main(["--calibrate-only", "--max-pieces", "0", *data]) == 2
    assert "--max-pieces must be >= 1" in capsys.readouterr().err
    assert json.loads((folder / "classifier.json").read_text())["max_pieces"] == 3
    assert spec["truncation"] == "head+tail" and clf.truncation == "head+tail"  # written at training time
    assert train_classifier.main(["--calibrate-only", "--truncation", "head", *data]) == 0
    assert load_classifier(str(folder)).truncation == "head"
    assert "a longer text: its first pieces" in (folder / "README.md").read_text()


@pytest.mark.parametrize("source", ["per_class", "gpt2"])
def test_a_long_text_is_scored_as_its_pieces_and_their_log_likelihoods_add(source, per_class, kinds, request):
    """A text longer than one piece: its score is the sum of its consecutive pieces' scores, each piece
    with the very masks it gets when scored alone (one round at the cap), and the rest is cut (read "head":
    the first pieces; head+tail has its own test)."""
    from dlm.classify.scoring import score_causal, score_masked
    from dlm.generation import encode

    if source == "per_class":
        clf = load_classifier(str(per_class), round_samples=4, max_samples=4, max_tokens=16, max_pieces=3,
                              truncation="head")
    else:
        lm = request.getfixturevalue("gpt2")
        clf = GenerativeClassifier([lm, lm], ["a", "b"], prompts=["animal:", "scripture:"], max_tokens=16, max_pieces=3,
                                   truncation="head")
    text = " ".join(t for t, _ in kinds[1][:6])
    ids = encode(clf.models[0].tokenizer, text)
    assert len(ids) > 48  # more than three pieces: the rest is cut
    [p] = clf.classify([text])
    assert p.truncated and len(p.tokens) == len(p.contributions) == 48 == clf.max_text_tokens
    pieces = [ids[i : i + 16] for i in range(0, 48, 16)]
    if clf.kind == "causal":
        alone = score_causal(clf.models, clf._contexts, pieces, batch_size=8)
    else:
        alone = score_masked(clf.models, clf._contexts, pieces, priors=clf.priors, round_samples=4, max_samples=4,
                             margin=clf.margin, batch_size=8, seed=clf.seed)
    for c, label in enumerate(clf.labels):
        total = sum(float(samples[c].mean()) for _, samples, _ in alone)
        assert math.isclose(p.log_likelihoods[label], total, rel_tol=1e-6, abs_tol=1e-6)
        per_token = torch.cat([terms[c] for terms, _, _ in alone])
        assert per_token.shape == (48,)
    top, second = clf.labels.index(p.label), clf.labels.index(p.runner_up)
    expected = torch.cat([terms[top] - terms[second] for terms, _, _ in alone])
    assert torch.allclose(torch.tensor(p.contributions, dtype=torch.float64), expected, atol=1e-6)
    assert p.nfe == 2 * (1 if clf.kind == "causal" else 4) * 3  # one row per piece, class and sample
    [first] = GenerativeClassifier(clf.models, clf.labels, prompts=clf.prompts, max_tokens=16, max_pieces=1,
                                   round_samples=4, max_samples=4).classify([text])
    assert first.truncated and len(first.tokens) == 16  # one piece: the first 16 tokens only
    assert math.isclose(first.log_likelihoods[clf.labels[0]], float(alone[0][1][0].mean()), rel_tol=1e-6)


def test_head_and_tail_truncation_reads_a_long_text_s_first_and_last_pieces(per_class, kinds):
    """A text over max_pieces read head+tail: its first ceil(n/2) pieces and its last floor(n/2) (where
    a review's verdict usually is), each scored exactly as when scored alone; the display marks the gap."""
    from dlm.classify.classifiers import SKIPPED
    from dlm.classify.scoring import score_masked
    from dlm.generation import encode, token_pieces

    clf = load_classifier(str(per_class), round_samples=4, max_samples=4, max_tokens=16, max_pieces=3,
                          truncation="head+tail")
    text = " ".join(t for t, _ in kinds[1][:6])
    ids = encode(clf.models[0].tokenizer, text)
    assert len(ids) > 60  # the last piece does not overlap the first two
    [p] = clf.classify([text])
    read = ids[:32] + ids[-16:]
    pieces = [ids[:16], ids[16:32], ids[-16:]]
    assert p.truncated and len(p.tokens) == len(p.contributions) == 48 and p.nfe == 2 * 4 * 3
    tail = token_pieces(clf.models[0].tokenizer, ids[-16:])
    assert p.tokens == token_pieces(clf.models[0].tokenizer, ids[:32]) + [SKIPPED + tail[0]] + tail[1:]
    alone = score_masked(clf.models, clf._contexts, pieces, priors=clf.priors, round_samples=4, max_samples=4,
                         margin=clf.margin, batch_size=8, seed=clf.seed)
    for c, label in enumerate(clf.labels):
        assert math.isclose(p.log_likelihoods[label], sum(float(s[c].mean()) for _, s, _ in alone), rel_tol=1e-6)
    assert clf._pieces(text)[0] == read
    short = " ".join(t for t, _ in kinds[1][:1])  # within the budget: read whole, exactly as "head" reads it
    assert clf._pieces(short)[1:] == (False, load_classifier(str(per_class), max_tokens=16, max_pieces=3)._pieces(short)[2], None)
    with pytest.raises(ValueError, match="truncation"):
        load_classifier(str(per_class), truncation="middle")


def test_a_text_of_pieces_stops_as_a_whole(per_class, kinds):
    clf = load_classifier(str(per_class), max_tokens=16, max_pieces=4, round_samples=2, max_samples=12, margin=2.0)
    text = " ".join(t for t, _ in kinds[1][:4])
    [p] = clf.classify([text])
    pieces = len(p.tokens) // 16 + (len(p.tokens) % 16 > 0)
    assert pieces >= 2 and p.nfe % (2 * pieces) == 0  # every piece ran the same rounds
    assert 2 * 2 * pieces <= p.nfe <= 2 * 12 * pieces


def test_batched_scores_equal_one_at_a_time(per_class, kinds):
    clf = load_classifier(str(per_class))
    texts = [t for t, _ in kinds[1][:6]]
    together = clf.classify(texts)
    alone = [clf.classify([t])[0] for t in texts]
    for a, b in zip(together, alone):
        for c in clf.labels:
            assert math.isclose(a.log_likelihoods[c], b.log_likelihoods[c], rel_tol=1e-4, abs_tol=1e-4)


# ---- common random numbers ----------------------------------------------------------------------------


def test_common_random_numbers_shrink_the_variance_of_the_score_difference(roberta):
    """The same masks for both classes vs independent masks: 40 repeats each with fixed seeds."""
    text = "the cat sat on the mat and the dog sat on the log"
    options = dict(round_samples=4, max_samples=4)
    shared, independent = [], []
    for seed in range(40):
        crn = ZeroShotClassifier(roberta, ["a", "b"], ["once upon a time", "in the beginning"], num_samples=4, seed=seed)
        [p] = crn.classify([text])
        shared.append(p.log_likelihoods["a"] - p.log_likelihoods["b"])
        first = GenerativeClassifier([roberta] * 2, ["a", "b"], prompts=["once upon a time", "in the beginning"],
                                     seed=seed, **options)
        second = GenerativeClassifier([roberta] * 2, ["a", "b"], prompts=["once upon a time", "in the beginning"],
                                      seed=seed + 1000, **options)
        independent.append(first.classify([text])[0].log_likelihoods["a"] - second.classify([text])[0].log_likelihoods["b"])
    assert statistics.variance(shared) < 0.5 * statistics.variance(independent)


# ---- calibration ---------------------------------------------------------------------------------------


def test_temperature_scaling_lowers_ece_on_an_over_confident_classifier():
    g = torch.Generator().manual_seed(0)
    n = 2000
    targets = torch.randint(0, 2, (n,), generator=g)
    correct = torch.rand(n, generator=g) < 0.75  # 75% accurate ...
    predicted = torch.where(correct, targets, 1 - targets)
    margin = 8.0 + torch.rand(n, generator=g)  # ... but always > 99.9% sure
    logits = torch.zeros(n, 2)
    logits[torch.arange(n), predicted] = margin
    before = expected_calibration_error(torch.softmax(logits, 1), targets)
    temperature = fit_temperature(logits, targets)
    after = expected_calibration_error(torch.softmax(logits / temperature, 1), targets)
    assert before > 0.2 and after < 0.05 and temperature > 4


def test_a_temperature_growing_with_length_is_recovered_where_one_temperature_cannot_fit():
    """Score gaps that grow as length^0.7 around a true posterior: the fit recovers T and a, and beats
    plain temperature scaling on the same rows, whose one temperature is wrong at both ends."""
    g = torch.Generator().manual_seed(0)
    n, reference, scale, exponent = 20_000, 128.0, 3.0, 0.7
    lengths = torch.exp(torch.empty(n, dtype=torch.float64).uniform_(math.log(8), math.log(1024), generator=g))
    log_odds = 2.0 * torch.randn(n, generator=g, dtype=torch.float64)  # the true posterior's
    targets = (torch.rand(n, generator=g, dtype=torch.float64) < torch.sigmoid(log_odds)).long()
    gap = log_odds * scale * (lengths / reference) ** exponent
    logits = torch.stack([torch.zeros(n, dtype=torch.float64), gap], dim=1)
    fitted_scale, fitted_exponent = fit_length_temperature(logits, targets, lengths, reference)
    assert abs(fitted_scale - scale) < 0.15 and abs(fitted_exponent - exponent) < 0.03
    nll = lambda t: float(torch.nn.functional.cross_entropy(logits / t, targets))  # noqa: E731
    constant = nll(fit_temperature(logits, targets))
    assert nll((fitted_scale * (lengths / reference) ** fitted_exponent).unsqueeze(1)) < constant - 0.01
    long = lengths > 512
    ece = lambda t: expected_calibration_error(torch.softmax(logits[long] / t, 1), targets[long])  # noqa: E731
    assert ece(fit_temperature(logits, targets)) > 0.05 > ece(fitted_scale * (lengths[long] / reference).unsqueeze(1) ** fitted_exponent)


def test_a_classifier_s_temperature_grows_with_the_text_s_scored_tokens(per_class, kinds, tmp_path):
    import shutil

    clf = load_classifier(str(per_class), max_tokens=16, max_pieces=4, temperature=2.0, temperature_exponent=1.0)
    short, long = kinds[1][0][0], " ".join(t for t, _ in kinds[1][:4])
    for p in clf.classify([short, long]):
        temperature = 2.0 * len(p.tokens) / 16
        expected = torch.softmax(torch.tensor([p.logits[c] for c in clf.labels]) / temperature, 0)
        assert torch.allclose(torch.tensor([p.probabilities[c] for c in clf.labels]), expected.float(), atol=1e-6)
    assert math.isclose(clf.text_temperature(64), 8.0) and math.isclose(clf.text_temperature(8), 1.0)
    with pytest.raises(ValueError, match="temperature_exponent"):
        load_classifier(str(per_class), temperature_exponent=float("nan"))
    folder = tmp_path / "old"
    shutil.copytree(per_class, folder)
    spec = json.loads((folder / "classifier.json").read_text())
    spec.pop("temperature_exponent", None)  # a folder from before: one temperature
    (folder / "classifier.json").write_text(json.dumps(spec))
    assert load_classifier(str(folder)).temperature_exponent == 0.0


def test_ece_of_a_perfectly_calibrated_case_is_small_and_of_a_wrong_one_large():
    probabilities = torch.tensor([[0.9, 0.1]] * 10)
    assert math.isclose(expected_calibration_error(probabilities, torch.tensor([0] * 9 + [1])), 0.0, abs_tol=1e-6)
    assert math.isclose(expected_calibration_error(probabilities, torch.tensor([1] * 10)), 0.9, rel_tol=1e-6)


def test_calibration_report_fits_on_the_classifier_scores(per_class, kinds):
    clf = load_classifier(str(per_class))
    texts, labels = [t for t, _ in kinds[1]], [y for _, y in kinds[1]]
    result = calibration_report(clf, texts, labels)
    assert result["texts"] == len(texts) and result["temperature"] > 0
    assert result["nll_after"] <= result["nll_before"] + 1e-9
    # generative: the temperature may grow with length; it fits at least as well as one temperature
    assert result["reference_tokens"] == clf.max_tokens and math.isfinite(result["temperature_exponent"])
    assert result["nll_after"] <= result["constant_temperature"]["nll_after"] + 1e-6


def test_report_metrics_on_known_predictions():
    from dlm.classify import Prediction

    def pred(label, p):
        other = "b" if label == "a" else "a"
        return Prediction(label, {label: p, other: 1 - p}, {}, other, [], [], False, 1)

    predictions = [pred("a", 0.9), pred("a", 0.8), pred("b", 0.7), pred("b", 0.6)]
    result = report(predictions, ["a", "b", "b", "zzz"], ["a", "b"])
    assert result["labelled"] == 3 and result["unknown_labels"] == 1
    assert math.isclose(result["accuracy"], 2 / 3)
    assert result["confusion"] == [[1, 0], [1, 1]]
    assert math.isclose(result["macro_f1"], (2 / 3 + 2 / 3) / 2)  # F1(a) = 2*1/(2+1), F1(b) = 2*1/(1+2)
    low, high = result["accuracy_ci95"]
    assert low < 2 / 3 < high


# ---- the CLI -------------------------------------------------------------------------------------------


def test_cli_classifies_a_txt_without_labels(per_class, kinds, tmp_path, capsys):
    path = tmp_path / "texts.txt"
    path.write_text("\n".join(t for t, _ in kinds[1][:5]) + "\n\n")
    assert cli(["classify", "--model", str(per_class), "--input", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["predictions"]) == 5 and out["metrics"] is None
    for row in out["predictions"]:
        assert row["label"] in ("animal", "scripture") and math.isclose(sum(row["probabilities"].values()), 1.0)
        assert row["nfe"] >= 2


def test_cli_reports_accuracy_and_confusion_for_a_labelled_csv(per_class, kinds, tmp_path, capsys):
    path = tmp_path / "labelled.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "review", "gold"])
        writer.writerows((i, t, y) for i, (t, y) in enumerate(kinds[1]))
    assert cli(["classify", "--model", str(per_class), "--input", str(path), "--label-column", "gold", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)["metrics"]
    assert metrics["labelled"] == len(kinds[1]) and metrics["accuracy"] >= 0.95
    assert sum(map(sum, metrics["confusion"])) == len(kinds[1]) and 0 <= metrics["ece"] <= 1
    assert cli(["classify", "--model", str(per_class), "--input", str(path), "--label-column", "gold"]) == 0
    text = capsys.readouterr().out
    assert "accuracy" in text and "macro-F1" in text and "confusion" in text


@pytest.mark.parametrize("name, content, flags, message", [
    ("binary.csv", b"\x00\x01\x02text", [], "binary file"),
    ("latin1.txt", "caf\xe9 au lait".encode("latin-1"), [], "not UTF-8"),
    ("numbers.csv", b"a,b\n1,2\n3,4\n", [], "no text column"),
    ("labels.csv", b"text,label\nhello there,animal\n", ["--label-column", "sentiment"], "no column 'sentiment'"),
    ("data.json", b"{}", [], "upload a .txt"),
])
def test_cli_bad_files_get_one_clear_line(per_class, tmp_path, capsys, name, content, flags, message):
    path = tmp_path / name
    path.write_bytes(content)
    assert cli(["classify", "--model", str(per_class), "--input", str(path), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "\n" not in err


def test_cli_missing_file_and_unknown_model(per_class, tmp_path, capsys):
    assert cli(["classify", "--model", str(per_class), "--input", str(tmp_path / "nope.txt")]) == 2
    assert "does not exist" in capsys.readouterr().err
    path = tmp_path / "t.txt"
    path.write_text("hello\n")
    assert cli(["classify", "--model", "no-such-classifier", "--input", str(path)]) == 2
    assert "cannot load classifier" in capsys.readouterr().err


# ---- the Monte-Carlo budget: tiled masks ---------------------------------------------------------------


@pytest.mark.parametrize("masks", ["tiled", "random"])
def test_the_classifier_elbo_is_unbiased_with_either_mask_design(roberta, masks):
    """The mean of the per-sample estimates matches the exact expectation over every mask pattern."""
    import itertools

    from dlm.classify.scoring import score_masked
    from dlm.generation import encode, special_framing
    from dlm.likelihood import elbo_estimates

    target = encode(roberta.tokenizer, "the cat sat")
    length = len(target)
    assert 3 <= length <= 6
    prefix, suffix = special_framing(roberta.tokenizer)
    ids = torch.tensor(prefix + target + suffix)
    positions = range(len(prefix), len(prefix) + length)
    exact = 0.0
    for count in range(1, length + 1):
        subsets = list(itertools.combinations(positions, count))
        rows = torch.zeros(len(subsets), len(ids), dtype=torch.bool)
        for r, subset in enumerate(subsets):
            rows[r, list(subset)] = True
        exact += float(elbo_estimates(roberta, ids, rows, length).mean()) / length
    means = []
    for seed in range(300):
        [(_, [samples], _)] = score_masked([roberta], [[]], [target], priors=[1.0], round_samples=4, max_samples=4,
                                           margin=3.0, batch_size=64, seed=seed, masks=masks)
        means.append(float(samples.mean()))
    stderr = statistics.stdev(means) / math.sqrt(len(means))
    assert abs(statistics.mean(means) - exact) < 4 * stderr


def test_tiled_masks_shrink_the_variance_of_the_class_difference(per_class, kinds):
    """The same classifier, the same budget: the decision's log-odds vary less over seeds with tiled masks."""
    text = kinds[1][0][0]
    spread = {}
    for masks in ("tiled", "random"):
        odds = []
        for seed in range(80):
            clf = load_classifier(per_class, round_samples=4, max_samples=4, seed=seed, masks=masks)
            [p] = clf.classify([text])
            odds.append(p.log_likelihoods["animal"] - p.log_likelihoods["scripture"])
        spread[masks] = statistics.variance(odds)
    assert spread["tiled"] < spread["random"]


def test_an_unknown_mask_design_is_refused(per_class):
    with pytest.raises(ValueError, match="masks must be one of"):
        load_classifier(per_class, masks="sobol").classify(["the cat sat"])


# ---- per-class models trained together with Bayes' rule (training.joint) ------------------------------


def test_class_models_trained_together_separate_the_kinds_and_save_as_a_per_class_folder(kinds, roberta_dir, tmp_path):
    from training import train_classifier

    out = tmp_path / "joint"
    code = train_classifier.main(["--design", "per-class", "--bayes-weight", "1", "--init", str(roberta_dir),
                                  "--data", str(kinds[0]), "--output-dir", str(out), "--max-steps", "40", *FLAGS])
    assert code == 0
    spec = json.loads((out / "classifier.json").read_text())
    assert spec["design"] == "per-class" and spec["bayes_weight"] == 1.0
    assert not (out / "joint").exists()  # the joint run's checkpoints are gone, the class folders stay
    for c, folder in spec["models"].items():
        info = json.loads((out / folder / "dlm_train.json").read_text())
        assert info["trained"] == "jointly" and info["steps"] == 40 and 0 <= info["eval_label_accuracy"] <= 1
        assert 0 <= info["start_eval_label_accuracy"] <= 1  # evaluated before the first step too
    assert "trained together" in (out / "README.md").read_text()
    clf = load_classifier(str(out))
    assert clf.models[0] is not clf.models[1]
    held_out = kinds[1]
    predictions = clf.classify([t for t, _ in held_out])
    assert evaluate([p.label for p in predictions], [y for _, y in held_out], list(clf.labels)).accuracy >= 0.95
    # a per-class run without the weight trains each model alone, as before: nothing records a joint run
    assert "bayes_weight" not in json.loads((train("per-class", roberta_dir, kinds[0], tmp_path / "alone", steps=2)
                                             / "classifier.json").read_text())
    assert train_classifier.main(["--design", "discriminative", "--bayes-weight", "1", "--init", str(roberta_dir),
                                  "--data", str(kinds[0]), "--output-dir", str(tmp_path / "disc"), *FLAGS]) == 2


@pytest.mark.parametrize("source", ["roberta_dir", "gpt2_dir"])
def test_the_joint_loss_is_each_piece_s_generative_loss_plus_bayes_rule_over_the_class_models(source, request):
    """PerClassTrainer's loss, by hand: both class models score the same masked pieces."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from dlm.loading import masked_model_from_pretrained
    from training.collator import CausalCollator, DiffusionCollator
    from training.joint import ClassModels, LabelledCollator, PerClassTrainer

    path = request.getfixturevalue(source)
    causal = source == "gpt2_dir"
    tok = AutoTokenizer.from_pretrained(path)
    load = AutoModelForCausalLM.from_pretrained if causal else masked_model_from_pretrained
    models = [load(path), load(path)]
    torch.manual_seed(1)
    with torch.no_grad():  # two different class models
        for p in models[1].parameters():
            p.add_(0.05 * torch.randn_like(p))
    rng = random.Random(0)
    texts = [animal_text(rng), scripture_text(rng), animal_text(rng), scripture_text(rng)]
    examples = [{"input_ids": tok(t)["input_ids"], "label": i % 2, "clean_prefix": 1, "clean_suffix": 0 if causal else 1}
                for i, t in enumerate(texts)]
    collator = (CausalCollator(tok.pad_token_id) if causal
                else DiffusionCollator(tok.mask_token_id, tok.pad_token_id, prefix_fraction=0.0, seed=3))
    batch = LabelledCollator(collator)(examples)
    trainer = PerClassTrainer.__new__(PerClassTrainer)  # the loss arithmetic only, no Trainer
    trainer.log_priors = torch.log(torch.tensor([0.4, 0.6]))
    trainer.bayes_weight, trainer.causal, trainer.bayes_temperature = 0.5, causal, 1.0
    trainer._label_sums = {True: torch.zeros(3, dtype=torch.float64), False: torch.zeros(3, dtype=torch.float64)}
    trainer._bucket_loss, trainer._bucket_tokens = torch.zeros(10, dtype=torch.float64), torch.zeros(10, dtype=torch.float64)
    joint = ClassModels(models, causal=causal).train()
    for module in joint.modules():  # training mode (the Bayes term is a training loss) without dropout's noise
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    loss = trainer.compute_loss(joint, batch)

    labels = batch["labels"][:, 1:] if causal else batch["labels"]
    scored = labels != -100
    row_nll = []
    for model in models:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        logits = logits[:, :-1] if causal else logits
        ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels.clamp(min=0), reduction="none")
        row_nll.append((ce * scored).sum(dim=1))
    row_nll = torch.stack(row_nll, dim=1)  # (B, C)
    true = batch["true_class"]
    own = row_nll[torch.arange(4), true]
    generative = own.sum() / scored.sum() if causal else (own * batch["loss_weight"]).sum() / batch["num_scored"]
    bayes = torch.nn.functional.cross_entropy(-row_nll + trainer.log_priors, true)
    assert torch.allclose(loss, generative + 0.5 * bayes, rtol=1e-5)
    assert trainer._label_sums[True][2] == 4  # every piece was decided by Bayes' rule


def test_class_models_checkpoint_once_per_tensor_and_restore_their_tied_weights(roberta_dir, tmp_path):
    """A checkpoint of ClassModels stores each tensor once (safetensors refuses shared storage) and a
    fresh ClassModels loaded from it (as Trainer resumes: strict=False) computes the same losses."""
    from safetensors.torch import load_file, save_file
    from transformers import AutoTokenizer

    from dlm.loading import masked_model_from_pretrained
    from training.collator import DiffusionCollator
    from training.joint import ClassModels

    models = [masked_model_from_pretrained(roberta_dir) for _ in range(2)]
    torch.manual_seed(2)
    with torch.no_grad():
        for model in models:
            model.get_input_embeddings().weight.add_(0.1 * torch.randn_like(model.get_input_embeddings().weight))
    joint = ClassModels(models).eval()
    assert models[0].get_output_embeddings().weight is models[0].get_input_embeddings().weight  # tied
    state = joint.state_dict()
    assert len(state) < len(torch.nn.Module.state_dict(joint))  # the tied copies are left out
    save_file(state, tmp_path / "model.safetensors")
    fresh = ClassModels([masked_model_from_pretrained(roberta_dir) for _ in range(2)]).eval()
    fresh.load_state_dict(load_file(tmp_path / "model.safetensors"), strict=False)
    tok = AutoTokenizer.from_pretrained(roberta_dir)
    batch = DiffusionCollator(tok.mask_token_id, tok.pad_token_id, prefix_fraction=0.0, seed=0)(
        [{"input_ids": tok("the cat sat on the mat and the dog ran")["input_ids"]}])
    with torch.no_grad():
        args = (batch["input_ids"], batch["attention_mask"], batch["labels"])
        assert torch.allclose(joint(*args), fresh(*args)) and not torch.allclose(
            joint(*args), ClassModels([masked_model_from_pretrained(roberta_dir)] * 2)(*args))


def test_a_joint_run_killed_mid_way_resumes_from_its_last_checkpoint(kinds, roberta_dir, tmp_path):
    """kill -9 during a joint run, then --resume: it continues from the last checkpoint in `joint/` and
    ends as a per-class folder; without --resume the folder is refused."""
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "training.train_classifier", "--design", "per-class", "--bayes-weight", "1",
               "--init", str(roberta_dir), "--data", str(kinds[0]), "--output-dir", str(out), "--max-steps", "5000",
               *FLAGS, "--save-steps", "5", "--calibration-texts", "-1"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    root = Path(__file__).resolve().parents[1]
    process = subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 600
        while not any(int(p.name.split("-")[1]) >= 10 and (p / "trainer_state.json").exists()
                      for p in (out / "joint").glob("checkpoint-*")):
            assert process.poll() is None, "training ended before it could be killed"
            assert time.time() < deadline, "no checkpoint within ten minutes"
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    saved = max(int(p.name.split("-")[1]) for p in (out / "joint").glob("checkpoint-*")
                if (p / "trainer_state.json").is_file())
    refused = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
    assert refused.returncode == 2 and "--resume" in refused.stderr
    finish = command.copy()
    finish[finish.index("5000")] = str(saved + 5)
    done = subprocess.run(finish + ["--resume"], cwd=root, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not (out / "joint").exists()
    for folder in json.loads((out / "classifier.json").read_text())["models"].values():
        assert json.loads((out / folder / "dlm_train.json").read_text())["steps"] == saved + 5
    assert len(load_classifier(str(out)).models) == 2
