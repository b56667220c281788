"""Shared fixtures: tiny real models (BERT, RoBERTa, GPT-2) with tokenizers trained here, offline,
and trained-classifier folders built from them."""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

CORPUS = [
    "the cat sat on the mat and the dog sat on the log",
    "once upon a time there was a little girl who lived in a village",
    "it was the best of times, it was the worst of times",
    "call me ishmael. some years ago, never mind how long precisely",
    "in the beginning god created the heaven and the earth",
    "it is a truth universally acknowledged that a single man in possession of a good fortune",
    "the quick brown fox jumps over the lazy dog <script>alert(1)</script>",
] * 4


def bpe_tokenizer(vocab_size: int = 320):
    """A byte-level BPE tokenizer with RoBERTa's special tokens, trained on CORPUS."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
        mask_token="<mask>", cls_token="<s>", sep_token="</s>",
    )


def wordpiece_tokenizer(vocab_size: int = 120):
    """A BERT-style WordPiece tokenizer trained on CORPUS."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(CORPUS, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]",
    )


def _save(model, tokenizer, folder):
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return str(folder)


TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)


@pytest.fixture(scope="session")
def roberta_dir(tmp_path_factory):
    from transformers import RobertaConfig, RobertaForMaskedLM

    tok = bpe_tokenizer()
    torch.manual_seed(0)
    config = RobertaConfig(
        vocab_size=len(tok), max_position_embeddings=130, pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, **TINY,
    )
    return _save(RobertaForMaskedLM(config), tok, tmp_path_factory.mktemp("roberta"))


@pytest.fixture(scope="session")
def bert_dir(tmp_path_factory):
    from transformers import BertConfig, BertForMaskedLM

    tok = wordpiece_tokenizer()
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tok), max_position_embeddings=128, pad_token_id=tok.pad_token_id, **TINY)
    return _save(BertForMaskedLM(config), tok, tmp_path_factory.mktemp("bert"))


@pytest.fixture(scope="session")
def gpt2_dir(tmp_path_factory):
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = bpe_tokenizer()
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tok), n_positions=128, n_embd=32, n_layer=2, n_head=2,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    return _save(GPT2LMHeadModel(config), tok, tmp_path_factory.mktemp("gpt2"))


@pytest.fixture(scope="session")
def uniform_dir(tmp_path_factory):
    """A real BERT masked LM whose output layer is zeroed: its logits are uniform over the vocabulary."""
    from transformers import BertConfig, BertForMaskedLM

    tok = wordpiece_tokenizer()
    config = BertConfig(vocab_size=len(tok), max_position_embeddings=128, pad_token_id=tok.pad_token_id, **TINY)
    model = BertForMaskedLM(config)
    with torch.no_grad():
        model.cls.predictions.decoder.weight.zero_()
        model.cls.predictions.bias.zero_()
    return _save(model, tok, tmp_path_factory.mktemp("uniform"))


@pytest.fixture(scope="session")
def roberta(roberta_dir):
    import dlm

    return dlm.load(roberta_dir)


@pytest.fixture(scope="session")
def bert(bert_dir):
    import dlm

    return dlm.load(bert_dir)


@pytest.fixture(scope="session")
def gpt2(gpt2_dir):
    import dlm

    return dlm.load(gpt2_dir)


@pytest.fixture(scope="session")
def uniform(uniform_dir):
    import dlm

    return dlm.load(uniform_dir)


def write_classifier(folder, design: str, models: dict, labels=("positive", "negative")) -> str:
    """A classifier.json by hand, as training.train_classifier writes it (no validation figures)."""
    spec = {"format": 1, "design": design, "family": "masked" if design != "discriminative" else "discriminative",
            "labels": list(labels), "priors": [1 / len(labels)] * len(labels), "prompts": None, "models": models,
            "max_tokens": 64, "temperature": 1.0, "training": {"wall_seconds": 0, "models": {}}}
    (folder / "classifier.json").write_text(json.dumps(spec), encoding="utf-8")
    return str(folder)


@pytest.fixture(scope="session")
def classifier_dir(roberta_dir, tmp_path_factory):
    """A per-class classifier of two tiny real masked models, not trained on classes: the negative one's
    weights are nudged so the two classes score differently (identical models would always tie)."""
    import shutil

    from transformers import AutoModelForMaskedLM

    folder = tmp_path_factory.mktemp("classifier")
    for label in ("positive", "negative"):
        shutil.copytree(roberta_dir, folder / f"class-{label}")
    model = AutoModelForMaskedLM.from_pretrained(folder / "class-negative")
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    model.save_pretrained(folder / "class-negative", safe_serialization=True)
    return write_classifier(folder, "per-class", {"positive": "class-positive", "negative": "class-negative"})


@pytest.fixture(scope="session")
def discriminative_dir(roberta_dir, tmp_path_factory):
    """A tiny untrained sequence-classification head on the RoBERTa fixture's encoder."""
    from transformers import AutoConfig, AutoTokenizer, RobertaForSequenceClassification

    folder = tmp_path_factory.mktemp("discriminative")
    torch.manual_seed(0)
    model = RobertaForSequenceClassification(AutoConfig.from_pretrained(roberta_dir, num_labels=2))
    model.save_pretrained(folder / "model", safe_serialization=True)
    AutoTokenizer.from_pretrained(roberta_dir).save_pretrained(folder / "model")
    return write_classifier(folder, "discriminative", {"*": "model"})
