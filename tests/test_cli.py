"""python -m dlm generate | animate | elbo | classify, on tiny models; bad input exits 2 with one line on stderr;
long commands show a progress bar on stderr only (stdout, --json included, carries only the results)."""

from __future__ import annotations

import io
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
    code, annealed, err = run(capsys, "generate", "--model", roberta_dir, "--prompt", "the cat", "--length", "8",
                              "--steps", "4", "--temperature", "1.2", "--temperature-end", "0.6", "--json")
    assert code == 0, err
    assert json.loads(annealed)["config"]["temperature_end"] == 0.6
    code, constant, err = run(capsys, "generate", "--model", roberta_dir, "--prompt", "the cat", "--length", "8",
                              "--steps", "4", "--temperature", "1.2", "--temperature-end", "0", "--json")
    assert code == 0 and json.loads(constant)["config"]["temperature_end"] is None, err  # 0: constant


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
        (["elbo", "--input", "no/such/file.txt"], "does not exist"),
        (["classify", "--input", "no/such/file.txt"], "does not exist"),
        (["classify", "--input", "no/such/file.txt", "--batch-size", "0"], "--batch-size"),
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


# ---- many texts: progress on stderr, results on stdout ----------------------------------------------

TEXTS = ["the cat sat on the mat", "once upon a time there was a little girl",
         "it was the best of times, it was the worst of times", "call me ishmael", "the quick brown fox"]


class Terminal(io.StringIO):
    """A stderr that says it is a terminal, as an interactive shell's is."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def reviews(tmp_path):
    path = tmp_path / "reviews.csv"
    labels = ["positive", "negative", "negative", "positive", "negative"]
    path.write_text("text,label\n" + "".join(f'"{t}",{y}\n' for t, y in zip(TEXTS, labels)), encoding="utf-8")
    return path


def test_classify_file_progress_on_stderr_json_on_stdout(capsys, monkeypatch, classifier_dir, reviews):
    argv = ["classify", "--model", classifier_dir, "--input", str(reviews), "--label-column", "label", "--json"]
    code, out, err = run(capsys, *argv, "--progress", "--batch-size", "2")
    assert code == 0, err
    result = json.loads(out)  # stdout is the JSON object and nothing else
    assert [r["text"] for r in result["predictions"]] == TEXTS and result["metrics"]["labelled"] == len(TEXTS)
    assert "classifying" in err and f"{len(TEXTS)}/{len(TEXTS)}" in err
    assert "classifying" not in out

    code, quiet_out, quiet_err = run(capsys, *argv, "--no-progress")
    assert code == 0 and "classifying" not in quiet_err
    code, auto_out, auto_err = run(capsys, *argv)  # captured stderr is no terminal: no bar by default
    assert code == 0 and "classifying" not in auto_err and auto_out == quiet_out
    # the texts scored 2, 8 (the default) or 1 per call: the same labels and forward passes, each text's
    # masks are seeded by the text itself; the probabilities agree up to float rounding
    code, single_out, _ = run(capsys, *argv, "--no-progress", "--batch-size", "1")
    for many in (json.loads(quiet_out), json.loads(single_out)):
        for a, b in zip(result["predictions"], many["predictions"]):
            assert (a["label"], a["nfe"]) == (b["label"], b["nfe"])
            assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-5)

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)  # on a terminal the bar shows without being asked for
    code, out, _ = run(capsys, *argv)
    assert code == 0 and json.loads(out)["predictions"] and "classifying" in terminal.getvalue()


def test_classify_plain_output_and_txt(capsys, classifier_dir, tmp_path):
    path = tmp_path / "texts.txt"
    path.write_text("\n".join(TEXTS[:3]) + "\n\n", encoding="utf-8")
    code, out, err = run(capsys, "classify", "--model", classifier_dir, "--input", str(path), "--progress")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith("1\t") and "classifying" not in out and "classifying" in err


def test_elbo_over_a_file(capsys, uniform_dir, gpt2_dir, tmp_path):
    path = tmp_path / "held_out.txt"
    path.write_text("\n".join(TEXTS[:3]) + "\n", encoding="utf-8")
    code, out, err = run(capsys, "elbo", "--model", uniform_dir, "--input", str(path), "--samples", "4", "--json",
                         "--progress")
    assert code == 0, err
    result = json.loads(out)
    assert "scoring" in err and "3/3" in err and "scoring" not in out
    assert [r["text"] for r in result["results"]] == TEXTS[:3]
    for row in result["results"]:  # each text exactly as `elbo --text` scores it alone, with the same seed
        _, alone, _ = run(capsys, "elbo", "--model", uniform_dir, "--text", row["text"], "--samples", "4", "--json")
        single = json.loads(alone)
        assert row["log_likelihood"] == single["log_likelihood"] and row["num_samples"] == single["num_samples"] == 4
    total = result["total"]
    assert total["texts"] == 3 and not total["exact"]
    assert total["num_tokens"] == sum(r["num_tokens"] for r in result["results"])
    assert total["log_likelihood"] == pytest.approx(sum(r["log_likelihood"] for r in result["results"]))

    code, out, err = run(capsys, "elbo", "--model", gpt2_dir, "--input", str(path), "--no-progress")
    assert code == 0 and "scoring" not in err
    lines = out.strip().splitlines()
    assert len(lines) == 4 and "log p =" in lines[0] and lines[-1].startswith("all 3 texts: log p =")
