"""python -m dlm generate | animate | elbo, on tiny models; bad input exits 2 with one line on stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from dlm.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_generate_json(capsys, roberta_dir):
    code, out, err = run(capsys, "generate", "--model", roberta_dir, "--prompt", "the cat", "--length", "8",
                         "--steps", "4", "--seed", "3", "--remasking", "margin", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["text"].startswith("the cat") and result["nfe"] == 4 and result["seconds"] > 0
    assert result["config"]["remasking"] == "margin"
    code, again, _ = run(capsys, "generate", "--model", roberta_dir, "--prompt", "the cat", "--length", "8",
                         "--steps", "4", "--seed", "3", "--remasking", "margin", "--json")
    assert json.loads(again)["text"] == result["text"], "same seed, same text"


def test_generate_plain_ar_and_infill(capsys, gpt2_dir, roberta_dir, tmp_path):
    code, out, _ = run(capsys, "generate", "--model", gpt2_dir, "--prompt", "once upon", "--length", "5")
    assert code == 0 and out.startswith("once upon")
    code, out, _ = run(capsys, "generate", "--model", roberta_dir, "--infill", "the [MASK] sat on the [MASK]",
                       "--trace", str(tmp_path / "t.json"))
    assert code == 0 and out.startswith("the")
    assert json.loads((tmp_path / "t.json").read_text())["kind"] == "masked"


def test_animate(capsys, roberta_dir, tmp_path):
    gif = tmp_path / "run.gif"
    code, out, err = run(capsys, "animate", "--model", roberta_dir, "--prompt", "the", "--length", "6",
                         "--steps", "3", "--out", str(gif))
    assert code == 0, err
    assert Image.open(gif).n_frames == 3 + 1
    html = tmp_path / "run.html"
    assert run(capsys, "animate", "--model", roberta_dir, "--length", "4", "--out", str(html))[0] == 0
    assert "<script" in html.read_text()


def test_elbo(capsys, uniform_dir, gpt2_dir):
    code, out, _ = run(capsys, "elbo", "--model", uniform_dir, "--text", "the cat sat", "--samples", "4", "--json")
    result = json.loads(out)
    assert code == 0 and not result["exact"] and result["num_samples"] == 4
    code, out, _ = run(capsys, "elbo", "--model", gpt2_dir, "--text", "the cat sat")
    assert code == 0 and "log p(text) =" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["generate", "--model", "no/such-model"], "cannot load model"),
        (["generate", "--length", "4", "--steps", "9"], "steps"),
        (["generate", "--remasking", "random", "--top-p", "2"], "top_p"),
        (["animate", "--out", "run.png"], "--out must end in"),
        (["elbo", "--text", ""], "empty"),
    ],
)
def test_bad_input_exits_2(capsys, roberta_dir, argv, message):
    if "--model" not in argv:
        argv = [argv[0], "--model", roberta_dir, *argv[1:]]
    code, out, err = run(capsys, *argv)
    assert code == 2 and message in err and err.startswith("error:") and out == ""


def test_module_entry_point(roberta_dir):
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-m", "dlm", "generate", "--model", roberta_dir, "--length", "4", "--json"],
                          cwd=root, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["nfe"] == 4
    bad = subprocess.run([sys.executable, "-m", "dlm", "generate", "--model", "nope/nope"], cwd=root,
                         capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert bad.returncode == 2 and "cannot load model" in bad.stderr


def test_prompt_with_script_is_escaped_in_html(capsys, roberta_dir, tmp_path):
    html = tmp_path / "x.html"
    code, _, err = run(capsys, "animate", "--model", roberta_dir, "--prompt", "<script>alert(1)</script>",
                       "--length", "4", "--out", str(html))
    assert code == 0, err
    page = html.read_text()
    assert "<script>alert(1)</script>" not in page
    assert page.count("<script") == 2  # the player's own code and its JSON data, nothing else
