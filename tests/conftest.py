"""Shared fixtures: tiny real models (BERT, RoBERTa, GPT-2) with tokenizers trained here, offline."""

from __future__ import annotations

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
