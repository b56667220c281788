"""dlm.load: bundled names, folders, Hub ids; kinds; safetensors only; clear failures."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

import dlm
from dlm.loading import ModelNotFoundError


def test_kinds(bert, roberta, gpt2):
    assert bert.kind == roberta.kind == "masked"
    assert gpt2.kind == "causal"
    assert bert.mask_id == bert.tokenizer.mask_token_id
    assert bert.eos_id == bert.tokenizer.sep_token_id  # BERT has no EOS: SEP ends a text
    assert bert.device.type == "cpu" and next(bert.model.parameters()).dtype == torch.float32


def test_unknown_name_fails_fast_and_says_what_was_tried():
    start = time.perf_counter()
    with pytest.raises(ModelNotFoundError) as error:
        dlm.load("nobody/no-such-model")
    assert time.perf_counter() - start < 5
    message = str(error.value)
    assert "bundled models" in message and "local folder" in message and "Hub repo" in message
    with pytest.raises(ModelNotFoundError, match="not a valid repo id"):
        dlm.load("not a/valid//name")
    with pytest.raises(ModelNotFoundError, match="non-empty"):
        dlm.load("")


def test_folder_without_config(tmp_path):
    with pytest.raises(ModelNotFoundError, match="config.json"):
        dlm.load(str(tmp_path))


def test_safetensors_only(bert_dir, tmp_path):
    folder = Path(tmp_path) / "pickled"
    folder.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (folder / name).write_bytes((Path(bert_dir) / name).read_bytes())
    bert = dlm.load(bert_dir)
    torch.save(bert.model.state_dict(), folder / "pytorch_model.bin")
    with pytest.raises(OSError):
        dlm.load(str(folder))


def test_settings_come_from_the_checkpoint(roberta_dir, tmp_path):
    folder = Path(tmp_path) / "with-settings"
    folder.mkdir()
    for item in Path(roberta_dir).iterdir():
        (folder / item.name).write_bytes(item.read_bytes())
    config = json.loads((folder / "config.json").read_text())
    config["dlm"] = {"kind": "masked", "sampler": {"steps": 7, "length": 14, "remasking": "margin"}}
    (folder / "config.json").write_text(json.dumps(config))
    lm = dlm.load(str(folder))
    assert (lm.settings.steps, lm.settings.length, lm.settings.remasking) == (7, 14, "margin")
    trace = dlm.generate(lm, "the", seed=0)  # no flags: the checkpoint's settings apply
    assert len(trace.steps) == 7 and int((~trace.fixed).sum()) == 14
    assert trace.config["remasking"] == "margin"
