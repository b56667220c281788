"""The conditional classifier design: training rows (label prompt, label dropout, contrast rows), the
Bayes-rule trainer, p(text) from the null prompt, and old classifier folders."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

from dlm.classify import GenerativeClassifier, framing, load_classifier
from dlm.generation import encode
from training.conditional import NULL_CLASS, ConditionalCollator, ConditionalTrainer

PROMPTS = [[7, 8, 9], [10, 11]]  # two labels' prompts of different lengths
NULL = [12]
PREFIX, SUFFIX = [0], [2]
PAD, MASK = 1, 4


def batch_examples(n: int = 12) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    return [{"piece": torch.randint(20, 90, (int(torch.randint(3, 15, (1,), generator=g)),), generator=g).tolist(),
             "label": k % 2} for k in range(n)]


def rows_of(batch: dict) -> list[dict]:
    """Each row's clean sequence (masks filled back in from the labels), split into its parts."""
    clean = torch.where(batch["labels"] != -100, batch["labels"], batch["input_ids"])
    out = []
    for r in range(len(clean)):
        length = int(batch["attention_mask"][r].sum())
        out.append({"ids": clean[r, :length].tolist(), "noisy": batch["input_ids"][r, :length].tolist(),
                    "scored": (batch["labels"][r, :length] != -100).tolist(), "example": int(batch["example"][r]),
                    "class": int(batch["row_class"][r]), "target": bool(batch["is_target"][r])})
    return out


@pytest.mark.parametrize("mask_id", [MASK, None], ids=["masked", "causal"])
def test_the_label_prompt_and_the_framing_are_never_masked_nor_scored(mask_id):
    examples = batch_examples()
    collator = ConditionalCollator(PROMPTS, NULL, PREFIX, SUFFIX if mask_id else [], PAD, mask_id, label_dropout=0.3, seed=0)
    seen_dropped = seen_masked = 0
    for _ in range(20):
        batch = collator(examples)
        for row in rows_of(batch):
            example = examples[row["example"]]
            prompt = NULL if row["class"] == NULL_CLASS else PROMPTS[row["class"]]
            head, tail = PREFIX + prompt, (SUFFIX if mask_id else [])
            assert row["ids"] == head + example["piece"] + tail  # framed as dlm.classify scores it
            assert row["noisy"][: len(head)] == head and row["noisy"][len(row["ids"]) - len(tail):] == tail
            assert not any(row["scored"][: len(head)]) and not any(row["scored"][len(head) + len(example["piece"]):])
            piece_scored = row["scored"][len(head) : len(head) + len(example["piece"])]
            if mask_id is None:
                assert all(piece_scored)  # a causal model scores every text token
            else:
                noisy_piece = row["noisy"][len(head) : len(head) + len(example["piece"])]
                assert [t == MASK for t in noisy_piece] == piece_scored
                seen_masked += sum(piece_scored)
            seen_dropped += row["class"] == NULL_CLASS
    assert seen_dropped > 0 and (mask_id is None or seen_masked > 0)


def test_labelled_pieces_get_a_row_per_label_with_the_same_masks_and_one_target():
    examples = batch_examples()
    batch = ConditionalCollator(PROMPTS, NULL, PREFIX, SUFFIX, PAD, MASK, label_dropout=0.0, seed=3)(examples)
    rows = rows_of(batch)
    assert len(rows) == 2 * len(examples) and batch["true_class"].tolist() == [e["label"] for e in examples]
    for k, example in enumerate(examples):
        mine = [r for r in rows if r["example"] == k]
        assert sorted(r["class"] for r in mine) == [0, 1]
        assert [r["class"] for r in mine if r["target"]] == [example["label"]]  # only the true label is learned
        masks = [r["scored"][len(PREFIX) + len(PROMPTS[r["class"]]):][: len(example["piece"])] for r in mine]
        assert masks[0] == masks[1]  # common random numbers: the same positions under every label
    target_tokens = sum(len(e["piece"]) for e in examples)
    assert int(batch["num_scored"]) == target_tokens
    assert torch.equal(batch["loss_weight"], 1 / batch["mask_rate"])


def test_labelled_pieces_are_masked_where_the_label_decides_and_null_pieces_at_every_rate():
    examples = batch_examples(400)
    batch = ConditionalCollator(PROMPTS, NULL, PREFIX, SUFFIX, PAD, MASK, label_dropout=0.5, contrast_min_rate=0.6,
                                seed=0)(examples)
    null = batch["row_class"] == NULL_CLASS
    assert (batch["mask_rate"][~null] >= 0.6).all() and (batch["mask_rate"][null] < 0.6).any()
    plain = ConditionalCollator(PROMPTS, NULL, PREFIX, SUFFIX, PAD, MASK, label_dropout=0.0, contrast_min_rate=0.0,
                                seed=0)(examples)
    assert (plain["mask_rate"] < 0.3).any()


def test_label_dropout_puts_the_null_prompt_in_place_of_the_label():
    examples = batch_examples(200)
    batch = ConditionalCollator(PROMPTS, NULL, PREFIX, SUFFIX, PAD, MASK, label_dropout=0.25, seed=0)(examples)
    rows = rows_of(batch)
    dropped = {r["example"] for r in rows if r["class"] == NULL_CLASS}
    assert 25 <= len(dropped) <= 75  # about a quarter of 200
    for k in dropped:
        [row] = [r for r in rows if r["example"] == k]  # the null row only: no label, no contrast
        assert row["target"] and row["ids"][: len(PREFIX) + len(NULL)] == PREFIX + NULL
    everything = ConditionalCollator(PROMPTS, NULL, PREFIX, SUFFIX, PAD, MASK, label_dropout=1.0, seed=0)(examples)
    assert (everything["row_class"] == NULL_CLASS).all() and everything["is_target"].all()
    with pytest.raises(ValueError, match="label_dropout"):
        ConditionalCollator(PROMPTS, NULL, PREFIX, SUFFIX, PAD, MASK, label_dropout=1.5)


def test_the_bayes_term_is_the_cross_entropy_of_bayes_rule_over_the_rows():
    """Row log-likelihoods -> z_c = log p(piece | c) + log p(c) -> -log softmax(z)[true], by hand."""
    trainer = ConditionalTrainer.__new__(ConditionalTrainer)  # only the Bayes-rule arithmetic, no Trainer
    trainer.log_priors, trainer.bayes_temperature = torch.log(torch.tensor([0.25, 0.75])), 1.0
    trainer._label_sums = {True: torch.zeros(3, dtype=torch.float64), False: torch.zeros(3, dtype=torch.float64)}
    row_nll = torch.tensor([3.0, 5.0, 2.0, 4.0, 1.0])  # example 0: two labels; 1: two labels; 2: dropped
    inputs = {"true_class": torch.tensor([0, 1, 0]), "example": torch.tensor([0, 0, 1, 1, 2]),
              "row_class": torch.tensor([0, 1, 1, 0, NULL_CLASS])}
    loss = trainer._bayes_rule(row_nll, inputs, training=True)
    z0 = torch.tensor([-3.0, -5.0]) + trainer.log_priors
    z1 = torch.tensor([-4.0, -2.0]) + trainer.log_priors
    expected = (-torch.log_softmax(z0, 0)[0] - torch.log_softmax(z1, 0)[1]) / 2
    assert math.isclose(float(loss), float(expected), rel_tol=1e-6)
    assert trainer._label_sums[True][1:].tolist() == [2.0, 2.0]  # both decided right, two examples counted
    trainer.bayes_temperature = 4.0  # Bayes' rule on z / T: log p(piece | c) / T + log p(c)
    z0, z1 = torch.tensor([-3.0, -5.0]) / 4 + trainer.log_priors, torch.tensor([-4.0, -2.0]) / 4 + trainer.log_priors
    expected = (-torch.log_softmax(z0, 0)[0] - torch.log_softmax(z1, 0)[1]) / 2
    assert math.isclose(float(trainer._bayes_rule(row_nll, inputs, training=True)), float(expected), rel_tol=1e-6)


# ---- scoring p(text) with the null prompt ----------------------------------------------------------------


def test_the_null_prompt_scores_log_p_text_with_the_same_masks(roberta, uniform):
    text = "the cat sat on the mat and the dog sat on the log"
    # a label whose prompt is the null prompt gets exactly log p(text): same context, same masks
    clf = GenerativeClassifier([roberta] * 2, ["plain", "story"], prompts=["", "once upon a time"], null_prompt="",
                               round_samples=4, max_samples=4)
    [p] = clf.classify([text], marginal=True)
    assert p.log_marginal == p.log_likelihoods["plain"] and p.nfe == 3 * 4
    assert p.pmi["plain"] == 0.0 and p.pmi["story"] == p.log_likelihoods["story"] - p.log_marginal
    [q] = clf.classify([text])
    assert q.log_marginal is None and q.label == p.label and q.nfe == 2 * 4  # never part of the decision
    # closed form: uniform logits over V give log p(text) = -L log V
    flat = GenerativeClassifier([uniform] * 2, ["a", "b"], prompts=["a:", "b:"], null_prompt="", round_samples=2,
                                max_samples=2)
    [u] = flat.classify([text], marginal=True)
    length = len(encode(uniform.tokenizer, text))
    assert math.isclose(u.log_marginal, -length * math.log(uniform.model.config.vocab_size), rel_tol=1e-6)


def test_the_null_prompt_of_a_causal_model_is_exact(gpt2):
    clf = GenerativeClassifier([gpt2] * 2, ["plain", "story"], prompts=["", "once upon a time"], null_prompt="")
    [p] = clf.classify(["the cat sat on the mat"], marginal=True)
    assert p.log_marginal == p.log_likelihoods["plain"] and p.nfe == 3


def test_marginal_needs_a_null_prompt_and_one_shared_model(roberta, classifier_dir):
    clf = GenerativeClassifier([roberta] * 2, ["a", "b"], prompts=["a:", "b:"])
    with pytest.raises(ValueError, match="no null prompt"):
        clf.classify(["the cat sat"], marginal=True)
    per_class = load_classifier(classifier_dir)
    with pytest.raises(ValueError, match="one model for every class"):
        GenerativeClassifier(list(per_class.models), ["positive", "negative"], null_prompt="")


def test_training_rows_are_framed_as_the_classifier_scores(roberta, gpt2):
    """The collator train_classifier builds gives the very row dlm.classify scores: framing, prompt, text."""
    from argparse import Namespace

    from training.train_classifier import conditional_collator

    args = Namespace(label_dropout=0.0, bayes_weight=1.0, contrast_min_rate=0.0, weighting="elbo")
    for lm in (roberta, gpt2):
        prompts = [encode(lm.tokenizer, p) for p in ("negative:", "positive:")]
        piece = encode(lm.tokenizer, "the cat sat on the mat")
        batch = conditional_collator(lm.tokenizer, lm.kind, prompts, [], args, seed=0)([{"piece": piece, "label": 1}])
        prefix, suffix = framing(lm.tokenizer, lm.kind)
        if lm.kind == "causal":
            assert prefix == [lm.bos_id] and suffix == []
        else:
            assert prefix + suffix == lm.tokenizer("", add_special_tokens=True)["input_ids"]
        for row in rows_of(batch):
            assert row["ids"] == prefix + prompts[row["class"]] + piece + suffix  # as GenerativeClassifier builds it


# ---- old folders ---------------------------------------------------------------------------------------------


def test_a_conditional_folder_without_label_dropout_still_loads_and_scores(roberta_dir, tmp_path):
    """classifier.json as written before label dropout: no null_prompt, label_dropout or bayes_weight."""
    shutil.copytree(roberta_dir, tmp_path / "model")
    spec = {"format": 1, "design": "conditional", "family": "masked", "labels": ["negative", "positive"],
            "priors": [0.5, 0.5], "prompts": ["negative:", "positive:"], "models": {"*": "model"}, "max_tokens": 64,
            "temperature": 2.0, "training": {"wall_seconds": 0, "models": {}}}
    (tmp_path / "classifier.json").write_text(json.dumps(spec))
    clf = load_classifier(str(tmp_path), max_samples=8)
    assert clf.null_prompt is None and clf.temperature == 2.0
    [p] = clf.classify(["the cat sat on the mat"])
    assert p.label in spec["labels"] and p.log_marginal is None
    with pytest.raises(ValueError, match="no null prompt"):
        clf.classify(["the cat sat on the mat"], marginal=True)
