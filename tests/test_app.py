"""The Gradio app: handlers called directly, then the launched app driven through gradio_client.

Tiny fixture models stand in for the bundled ones (tests/conftest.py); nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import time
from pathlib import Path

import pytest

from webapp import cards as app_cards
from webapp import files as app_files
from webapp import models as app_models
from webapp.tabs import animate as animate_tab
from webapp.tabs import classify as classify_tab
from webapp.tabs import compare as compare_tab
from webapp.tabs import generate as generate_tab
from webapp.tabs import learn as learn_tab

ROOT = Path(__file__).resolve().parents[1]

GOOD = dict(text="the cat", length=12, steps=4, seed=0)  # a quick, valid generation on the tiny models


@pytest.fixture(scope="module")
def app(roberta_dir, gpt2_dir, classifier_dir):
    import app as module

    module.configure({"diffusion": roberta_dir, "autoregressive": gpt2_dir, "classifier": classifier_dir})
    return module


def last(updates):
    *_, final = updates
    return final


def run_animate(**kwargs):
    """The Animate handler run to its end (it yields between phases, so an abandoned request stops)."""
    return last(animate_tab.animate(**kwargs))


def error_message(app, call) -> str:
    import gradio as gr

    with pytest.raises(gr.Error) as caught:
        result = call()
        if hasattr(result, "__next__"):
            list(result)
    return caught.value.message


def pairs(component) -> list[tuple[str, object]]:
    """(token, label) pairs shown by a HighlightedText update."""
    return [(d["token"], d["class_or_confidence"]) for d in component.value]


def write_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


# ---- Generate ------------------------------------------------------------------------------------


def test_generate_streams_from_masks_to_text(app):
    updates = list(generate_tab.generate(**GOOD))
    assert len(updates) >= 2
    first_canvas = updates[0][0]
    labels = [label for _, label in pairs(first_canvas)]
    assert "masked" in labels and "new" not in labels  # the initial canvas: prompt and masks only
    canvases, stats, text, cached = last(updates)[0], last(updates)[4], last(updates)[5], last(updates)[6]
    assert "masked" not in [label for _, label in pairs(canvases)]
    assert stats.startswith("**Done**") and "NFE 4" in stats and "tokens/s" in stats
    assert text.startswith("the cat")
    assert cached["trace"].texts[0] == text


def test_generate_is_seeded_and_samples_show_side_by_side(app):
    one = last(generate_tab.generate(**GOOD, num_samples=2, temperature=1.0))
    two = last(generate_tab.generate(**GOOD, num_samples=2, temperature=1.0))
    assert one[5] == two[5]
    assert one[0].visible and one[1].visible and not one[2].visible
    assert one[1].label == "Sample 2" and "[sample 2]" in one[5]


def test_final_temperature_anneals_and_0_keeps_it_constant(app):
    """The Final temperature slider reaches the sampler (the run's config records it; 0 = constant), and
    greedy decoding (temperature 0) ignores it rather than refusing the request."""
    annealed = last(generate_tab.generate(**GOOD, temperature=1.2, temperature_end=0.6))
    assert annealed[6]["trace"].config["temperature_end"] == 0.6 and annealed[5].startswith("the cat")
    constant = last(generate_tab.generate(**GOOD, temperature=1.2, temperature_end=0))
    assert constant[6]["trace"].config["temperature_end"] is None
    greedy = last(generate_tab.generate(**GOOD, temperature=0, temperature_end=0.6))
    assert greedy[4].startswith("**Done**") and greedy[5] == last(generate_tab.generate(**GOOD, temperature=0))[5]


def test_min_p_reaches_the_sampler_and_a_bad_value_is_refused(app):
    """The Min-p slider reaches the sampler (the run's config records it) and changes what is sampled at a
    temperature of 1 (the tiny untrained model's distributions are nearly flat: 0.99 keeps few tokens); a
    value outside [0, 1] gets the core's message."""
    warm = dict(GOOD, temperature=1.0, seed=3)
    cut = last(generate_tab.generate(**warm, min_p=0.99))
    assert cut[6]["trace"].config["min_p"] == 0.99 and cut[5].startswith("the cat")
    assert cut[5] != last(generate_tab.generate(**warm, min_p=0))[5]
    assert "min_p must be in [0, 1]" in error_message(app, lambda: generate_tab.generate(**GOOD, min_p=1.5))


def test_infill_keeps_the_template(app):
    final = last(generate_tab.generate(mode="infill", text="the [MASK] sat on the [MASK]", steps=8))
    assert final[5].startswith("the") and " sat on the" in final[5]
    assert "NFE 2" in final[4]  # 2 blanks: steps lowered to 2, with a note


def test_key_value_cache_setting(app):
    cached = last(generate_tab.generate(**{**GOOD, "block_length": 4, "cache": "dual", "remasking": "low_confidence"}))
    assert cached[4].startswith("**Done**") and "NFE 4" in cached[4] and cached[5].startswith("the cat")


def test_continuous_model_generates_and_races(app):
    """The third role: the bundled embedding-space model streams through the same tab, and races AR."""
    final = last(generate_tab.generate(model="continuous", text="the cat", length=12, steps=4, remasking="margin", cache="dual"))
    assert final[4].startswith("**Done**") and "NFE 4" in final[4] and final[5].startswith("the cat")
    gif, files, race, note = run_animate(model="continuous", text="the cat", length=12, steps=4, frame_ms=100,
                                         race_ar=True)
    names = [f.rsplit("/", 1)[-1] for f in files]
    assert names == ["denoising.gif", "denoising.mp4", "denoising.html", "race.gif", "race.html"]
    assert "continuous diffusion" in open(files[2], encoding="utf-8").read()


def test_autoregressive_generation(app):
    final = last(generate_tab.generate(model="autoregressive", text="the cat", length=10, steps=3, cache="dual"))
    assert final[5].startswith("the cat") and "NFE 10" in final[4]


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(text="", length=None), "prompt is empty and no length"),
        (dict(length=0), "length must be between 1 and 256"),
        (dict(length=1000), "length must be between 1 and 256"),
        (dict(steps=0), "steps must be between 1 and 256"),
        (dict(length=8, steps=20), "steps (20) cannot exceed the length (8)"),
        (dict(model="gpt-17"), "unknown model 'gpt-17'"),
        (dict(mode="infill", text="no blanks here"), "no blanks"),
        (dict(mode="infill", model="autoregressive", text="a [MASK]"), "needs the diffusion model"),
        (dict(text="the cat " * 100, length=200), "positions"),
        (dict(remasking="sideways"), "unknown remasking 'sideways'"),
        (dict(cache="<b>all</b>"), "unknown key/value cache"),
        (dict(seed=-1), "seed must be between"),
        (dict(num_samples=9), "number of samples must be between 1 and 4"),
    ],
)
def test_bad_generate_input_gets_a_clear_message_and_the_next_request_works(app, overrides, message):
    assert message in error_message(app, lambda: generate_tab.generate(**{**GOOD, **overrides}))
    assert last(generate_tab.generate(**GOOD))[4].startswith("**Done**")


def test_unknown_model_id_is_reported_not_crashed(app, monkeypatch):
    monkeypatch.setattr(app_models, "MODELS", app_models.Models({"diffusion": "no-such-org/no-such-model-xyz"}))
    message = error_message(app, lambda: generate_tab.generate(**GOOD))
    assert "could not be loaded" in message and "no-such-model-xyz" in message
    summary, _ = app_cards.model_overview()
    assert "✗" in summary and "no-such-model-xyz" in summary


def test_error_messages_are_escaped(app):
    message = error_message(app, lambda: generate_tab.generate(**{**GOOD, "remasking": "<img src=x onerror=alert(1)>"}))
    assert "<img" not in message and "&lt;img" in message


def test_main_refuses_an_unknown_model(app, capsys, monkeypatch):
    monkeypatch.delenv("SPACE_ID", raising=False)
    assert app.main(["--model", "no-such-model-xyz", "--no-warm-up"]) == 2
    assert "cannot load model 'no-such-model-xyz'" in capsys.readouterr().err


def test_gpu_decorator_is_a_no_op_off_spaces(app):
    def f():
        return 1

    assert app_models.gpu(f) is f


# ---- Animate -------------------------------------------------------------------------------------


def test_animate_writes_gif_mp4_html_and_the_race(app):
    from PIL import Image

    gif, files, race, note = run_animate(**{**GOOD, "text": "<b>bold</b> the cat"}, frame_ms=100, race_ar=True)
    with Image.open(gif) as image:
        assert image.n_frames == 5  # the initial canvas, then one frame per step
    names = [f.rsplit("/", 1)[-1] for f in files]
    assert names == ["denoising.gif", "denoising.mp4", "denoising.html", "race.gif", "race.html"]
    assert all(f.startswith(str(app_files.output_dir())) for f in files)
    page = open(files[2], encoding="utf-8").read()
    assert "<b>bold</b>" not in page
    assert race.visible and race.value["orig_name"] == "race.gif"
    with Image.open(files[3]) as image:
        assert image.n_frames > 1


def test_animate_reuses_the_streamed_run(app, monkeypatch):
    cached = last(generate_tab.generate(**GOOD))[6]

    def must_not_run(*args, **kwargs):
        raise AssertionError("the streamed run should have been reused")

    real_start = animate_tab.start_generation
    monkeypatch.setattr(animate_tab, "start_generation", must_not_run)
    gif, files, race, note = run_animate(**GOOD, race_ar=False, last_run=cached)
    assert not race.visible and len(files) == 3
    started = []  # the race times fresh runs of both models: a streamed run's clock includes its pauses
    monkeypatch.setattr(animate_tab, "start_generation", lambda lm, request: started.append(lm.kind) or real_start(lm, request))
    run_animate(**GOOD, race_ar=True, last_run=cached)
    assert sorted(started) == ["causal", "masked"]


def test_animate_rejects_a_bad_frame_speed(app):
    assert "frame speed (ms) must be between" in error_message(app, lambda: run_animate(**GOOD, frame_ms=5))


def folders() -> set:
    """The request folders in the app's output folder."""
    return set(app_files.output_dir().iterdir())


def must_not_run(*args, **kwargs):
    raise AssertionError("no generation may start for a request that cannot fit")


def prompt_tokens(app, text: str = "the cat") -> int:
    return len(app_models.MODELS.get("diffusion").tokenizer(text, add_special_tokens=False)["input_ids"])


def test_generate_checks_the_models_positions_up_front(app, monkeypatch):
    """Both fixtures have 128 positions: AR needs <s> + prompt + length, masked diffusion one more (</s>)."""
    monkeypatch.setattr(generate_tab, "start_generation", must_not_run)
    n = prompt_tokens(app)
    message = error_message(app, lambda: generate_tab.generate(**{**GOOD, "model": "autoregressive", "length": 200}))
    assert message == f"the autoregressive model has 128 positions; prompt + length need {1 + n + 200}: " \
                      f"lower the length to at most {128 - 1 - n}"
    message = error_message(app, lambda: generate_tab.generate(**{**GOOD, "length": 200}))
    assert message == f"the diffusion model has 128 positions; prompt + length need {2 + n + 200}: " \
                      f"lower the length to at most {128 - 2 - n}"
    long = "the cat " * 100
    message = error_message(app, lambda: generate_tab.generate(**{**GOOD, "text": long, "length": 20}))
    alone = 2 + prompt_tokens(app, long)
    assert message == f"the diffusion model has 128 positions; the prompt alone needs {alone}: shorten the prompt"


def test_animate_checks_the_race_model_before_any_work_and_leaves_no_files(app, monkeypatch):
    """The continuous model has 192 positions, the AR fixture 128: a length of 150 fits one, not the other."""
    monkeypatch.setattr(animate_tab, "start_generation", must_not_run)
    before, n = folders(), prompt_tokens(app)
    message = error_message(app, lambda: run_animate(model="continuous", text="the cat", length=150, steps=4,
                                                             frame_ms=100, race_ar=True))
    assert message == f"the autoregressive model has 128 positions; prompt + length need {1 + n + 150}: " \
                      f"lower the length to at most {128 - 1 - n}"
    assert folders() == before


def test_compare_checks_both_models_before_either_starts(app, monkeypatch):
    monkeypatch.setitem(app_models.MODELS.sources, "diffusion", app_models.MODELS.source("continuous"))
    monkeypatch.setattr(compare_tab, "start_generation", must_not_run)
    message = error_message(app, lambda: compare_tab.compare(text="the cat", length=150, steps=4))
    assert message.startswith("the autoregressive model has 128 positions; prompt + length need ")


@pytest.mark.parametrize("error", [ValueError("the race could not be drawn"), RuntimeError("out of memory")])
def test_a_failed_animation_leaves_no_files_behind(app, monkeypatch, error):
    def broken(*args, **kwargs):
        raise error

    monkeypatch.setattr(animate_tab, "render_race", broken)
    before = folders()
    with pytest.raises(Exception, match=str(error)):
        run_animate(**GOOD, frame_ms=100, race_ar=True)
    assert folders() == before


def test_the_canvas_shows_non_ascii_prompt_text_whole(app):
    """Byte-level BPE splits é and Hebrew letters into byte tokens that are no text on their own. (The tiny
    untrained model may write such bytes with nothing to complete them: only the prompt is checked whole.)"""
    prompt = "café naïve עברית"
    updates = list(generate_tab.generate(text=prompt, length=8, steps=2, seed=0))
    initial = "".join(token for token, _ in pairs(updates[0][0]))
    assert "\ufffd" not in initial and initial.startswith(prompt)
    finished = pairs(last(updates)[0])
    assert "".join(token for token, label in finished if label == "prompt") == prompt
    assert last(updates)[5].startswith(prompt)
    compared = last(compare_tab.compare(text=prompt, length=6, steps=2))
    for canvas in (compared[0], compared[2]):
        assert "".join(token for token, label in pairs(canvas) if label == "prompt") == prompt


# ---- Classify ------------------------------------------------------------------------------------


class NoProgress:
    def tqdm(self, iterable, desc=None):
        return iterable


def classify(app, **kwargs):
    return last(classify_tab.classify(**kwargs, progress=NoProgress()))


def test_classify_a_csv_with_labels(app, tmp_path):
    rows = [("the cat sat on the mat", "positive"), ("it was the worst of times", "Negative"),
            ("once upon a time", "positive"), ("a dog", "neutral")]
    path = write_csv(tmp_path / "reviews.csv", ["id", "review", "sentiment"], [(i, t, l) for i, (t, l) in enumerate(rows)])
    with pytest.warns(UserWarning, match=r"1 row\(s\) have labels that are not classes \(\['neutral'\]\)"):
        probs, explanation, table, csv_path, summary, confusion, state = classify(
            app, file=path, text_column="review", label_column="sentiment", samples=8)
    assert len(table) == 4 and list(table["prediction"].unique())[0] in ("positive", "negative")
    assert math.isclose(sum(probs.values()), 1.0)
    assert "Accuracy" in summary and "/3;" in summary  # "neutral" is not a class: left out, with a warning
    assert confusion.visible and confusion.value["headers"][1:] == ["positive", "negative"]
    with open(csv_path, encoding="utf-8") as f:
        saved = list(csv.DictReader(f))
    assert [r["text"] for r in saved] == [t for t, _ in rows] and "p(positive)" in saved[0]
    assert pairs(explanation) and all(-1 <= s <= 1 for _, s in pairs(explanation))
    assert len(state) == 4


FORMULAS = ["=1+1", "@SUM(A1)", "-2+3", "+1", "=HYPERLINK(\"http://x\",\"y\")"]  # what a spreadsheet runs


def test_the_results_csv_defuses_spreadsheet_formulas(app, tmp_path):
    """OWASP's advice against CSV injection: a text cell that a spreadsheet would read as a formula gets a
    leading ' in the download; the table on the page shows the text as it is, and numbers stay numbers."""
    rows = [(text, "=cmd|' /C calc'!A0" if i == 0 else "positive") for i, text in enumerate(FORMULAS)]
    rows.append(("the cat", "negative"))
    path = write_csv(tmp_path / "formulas.csv", ["text", "label"], rows)
    with pytest.warns(UserWarning, match="labels that are not classes"):
        _, _, table, csv_path, *_ = classify(app, file=path, text_column="text", label_column="label", samples=4)
    assert list(table["text"]) == [text for text, _ in rows]  # on screen: as written
    with open(csv_path, encoding="utf-8", newline="") as f:
        saved = list(csv.DictReader(f))
    assert [r["text"] for r in saved] == ["'" + text for text in FORMULAS] + ["the cat"]
    assert saved[0]["true label"] == "'=cmd|' /C calc'!A0" and saved[-1]["true label"] == "negative"
    for record in saved:
        assert float(record["p(positive)"]) >= 0 and float(record["log p(text | positive)"]) < 0  # numbers, unquoted


def test_the_csv_also_defuses_tab_and_carriage_return_prefixes():
    """Spreadsheets strip a leading tab or carriage return and read on: `\t=1+1` is a formula too."""
    import pandas as pd

    frame = pd.DataFrame({"text": ["\t=1+1", "\r=1+1", "a=1", "", "'quoted"], "log p": [-1.5, -2.0, -3.0, -4.0, -5.0]})
    safe = classify_tab.spreadsheet_safe(frame)
    assert list(safe["text"]) == ["'\t=1+1", "'\r=1+1", "a=1", "", "'quoted"]
    assert list(safe["log p"]) == [-1.5, -2.0, -3.0, -4.0, -5.0]
    assert frame["text"][0] == "\t=1+1"  # the frame shown on the page is left alone


def test_classify_pasted_lines_and_a_txt(app, tmp_path):
    _, _, table, _, summary, confusion, _ = classify(app, text="the cat sat\n\nonce upon a time\n", samples=4)
    assert len(table) == 2 and not confusion.visible
    zero_shot = classify(app, text="the cat sat", labels="a, b, c", label_prompt="{label}:", samples=4, mode="zero-shot")
    assert {"p(a)", "p(b)", "p(c)", "log p | c"} <= set(zero_shot[2].columns) and "zero-shot" in zero_shot[4]
    path = tmp_path / "texts.txt"
    path.write_text("the cat\nthe dog\n\nthe log\n", encoding="utf-8")
    assert len(classify(app, file=str(path), samples=4)[2]) == 3


@pytest.mark.parametrize(
    "content, name, message",
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "picture.csv", "looks like a binary file"),
        ("caf\u00e9,label\n".encode("latin-1") + b"x,y\n", "latin.csv", "is not UTF-8 text (byte 0xe9"),
        (b"id,score\n1,0.5\n2,0.7\n", "numbers.csv", "has no text column"),
        (b"header only\n", "empty.csv", "needs a header row and at least one row"),
        (b"\n\n", "empty.txt", "has no text"),
        (b"a,b\n", "data.json", "upload a .txt"),
        (b"text,label\nhello, world,positive\n", "unquoted.csv", "line 2 has 3 cells but the header has 2"),
    ],
)
def test_bad_files_get_a_clear_message(app, tmp_path, content, name, message):
    path = tmp_path / name
    path.write_bytes(content)
    assert message in error_message(app, lambda: classify(app, file=str(path)))
    assert len(classify(app, text="the cat", samples=4)[2]) == 1  # the next request works


def test_a_50_mb_file_is_refused_before_it_is_read(app, tmp_path):
    path = tmp_path / "huge.csv"
    with open(path, "wb") as f:
        f.truncate(50 * 2**20)  # sparse: 50 MB on paper, nothing written
    assert "is 50.0 MB; the limit is 5 MB" in error_message(app, lambda: classify(app, file=str(path)))


def test_a_missing_text_column_names_the_columns(app, tmp_path):
    path = write_csv(tmp_path / "r.csv", ["body", "label"], [("the cat", "positive")])
    message = error_message(app, lambda: classify(app, file=path, text_column="text"))
    assert "no column 'text'" in message and "['body', 'label']" in message


def test_upload_fills_the_column_choosers(app, tmp_path):
    path = write_csv(tmp_path / "r.csv", ["id", "review", "sentiment"], [(1, "the cat sat", "positive")])
    text_column, label_column, info = classify_tab.inspect_upload(path)
    assert text_column.value == "review" and label_column.value == "sentiment" and text_column.visible
    assert "1 rows" in info


def test_a_bad_upload_is_explained_beside_the_file(app, tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("text\ncaf\u00e9 <b>\n".encode("latin-1"))
    with pytest.warns(UserWarning, match="is not UTF-8 text"):
        text_column, label_column, info = classify_tab.inspect_upload(str(path))
    assert not text_column.visible and info.startswith("⚠️ latin.csv is not UTF-8 text")


@pytest.mark.parametrize(
    "labels, template, message",
    [("positive", "A {label} review:", "at least two labels"), ("a, b", "A review:", "must contain {label}"),
     ("a, A", "{label}", "distinct"), ("a," * 9, "{label}", "at most 8 labels")],
)
def test_bad_labels(app, labels, template, message):
    assert message in error_message(
        app, lambda: classify(app, text="the cat", labels=labels, label_prompt=template, mode="zero-shot"))


def test_trained_mode_uses_the_classifiers_own_labels(app):
    probs, explanation, table, _, summary, _, state = classify(
        app, text="the cat sat\nthe dog", labels="x, y, z", label_prompt="nonsense", samples=8)  # ignored: trained
    assert set(probs) == {"positive", "negative"} and set(table["prediction"]) <= {"positive", "negative"}
    assert {"p(positive)", "p(negative)", "log p | positive", "log p | negative"} <= set(table.columns)
    assert "p(x)" not in table.columns
    assert "trained classifier" in summary and "per-class, masked diffusion" in summary and "temperature 1.00" in summary
    assert len(explanation.value) == len(state[0]["tokens"])  # the per-token explanation works here too
    assert "unknown classifier mode 'both'" in error_message(app, lambda: classify(app, text="the cat", mode="both"))


def test_the_samples_cap_changes_the_forward_passes(app):
    import re

    def forward_passes(samples):
        summary = classify(app, text="it was the best of times", samples=samples)[4]
        return int(re.search(r"([\d,]+) forward passes", summary).group(1).replace(",", ""))

    trained = app_models.MODELS.classifier().classifier
    assert forward_passes(2) == 2 * 2  # one round of 2 shared masks, both classes: the cap
    assert 2 * trained.round_samples <= forward_passes(32) <= 2 * 32  # rounds until the top class is clear, or the cap
    capped = classify_tab.make_classifier("trained", 16, trained=trained)
    assert capped.max_samples == 16 and trained.max_samples != 16  # the loaded classifier is left alone


def test_a_discriminative_classifier_has_no_likelihood_columns(app, roberta_dir, discriminative_dir, monkeypatch):
    monkeypatch.setattr(app_models, "MODELS", app_models.Models({"diffusion": roberta_dir, "classifier": discriminative_dir}))
    probs, explanation, table, _, summary, _, state = classify(app, text="the cat sat\nthe dog", samples=8)
    assert {"p(positive)", "p(negative)"} <= set(table.columns) and not any(c.startswith("log p") for c in table.columns)
    assert "discriminative" in summary and "2 forward passes" in summary
    assert len(explanation.value) == len(state[0]["tokens"])


@pytest.mark.parametrize("broken", ["no-file", "no-labels"])
def test_an_unloadable_classifier_is_reported_and_zero_shot_still_works(app, roberta_dir, tmp_path, monkeypatch, broken):
    folder = tmp_path / "broken"
    folder.mkdir()
    if broken == "no-labels":
        (folder / "classifier.json").write_text(json.dumps({"design": "per-class", "models": {}}), encoding="utf-8")
    monkeypatch.setattr(app_models, "MODELS", app_models.Models({"diffusion": roberta_dir, "classifier": str(folder)}))
    message = error_message(app, lambda: classify(app, text="the cat"))
    assert "trained classifier" in message and "could not be loaded" in message and "Zero-shot mode still works" in message
    assert ("has no classifier.json" if broken == "no-file" else "has no 'labels'") in message
    summary, _ = app_cards.model_overview()
    assert "**classifier**: ✗" in summary and "**diffusion**: `" in summary
    assert "not loaded" in classify_tab.classifier_info("trained")
    assert len(classify(app, text="the cat", samples=4, mode="zero-shot")[2]) == 1


def test_too_many_rows_are_cut_with_a_note(app, tmp_path, monkeypatch):
    monkeypatch.setattr(classify_tab, "MAX_ROWS", 3)
    path = tmp_path / "many.txt"
    path.write_text("\n".join(["the cat"] * 5), encoding="utf-8")
    with pytest.warns(UserWarning, match="many.txt has 5 texts; only the first 3 are used"):
        assert len(classify(app, file=str(path), samples=4)[2]) == 3


def test_explain_row_follows_the_click(app):
    import gradio as gr

    *_, state = classify(app, text="the cat\nthe dog sat on the log", samples=4)
    event = gr.SelectData(None, {"index": [1, 0], "value": "", "selected": True})
    probs, explanation = classify_tab.explain_row(state, event)
    assert explanation.label.startswith("Text 2:") and len(explanation.value) == len(state[1]["tokens"])


# ---- dlm.classify: the zero-shot classifier --------------------------------------------------------


def test_uniform_model_scores_exactly_minus_l_log_v(uniform):
    from dlm.classify import ZeroShotClassifier

    clf = ZeroShotClassifier(uniform, ["a", "b"], ["first:", "second one:"], num_samples=8)
    [prediction] = clf.classify(["the cat sat on the mat"])
    n_tokens, vocab = len(prediction.tokens), uniform.model.config.vocab_size
    for value in prediction.log_likelihoods.values():
        assert math.isclose(value, -n_tokens * math.log(vocab), rel_tol=1e-6)  # float32 logits
    assert math.isclose(prediction.probabilities["a"], 0.5)


def test_contributions_sum_to_the_log_odds_and_masks_are_shared(roberta, gpt2):
    from dlm.classify import ZeroShotClassifier

    for lm in (roberta, gpt2):
        clf = ZeroShotClassifier(lm, ["x", "y", "z"], ["the cat", "the dog", "the cat"], num_samples=16)
        [p] = clf.classify(["sat on the mat"])
        gap = p.log_likelihoods[p.label] - p.log_likelihoods[p.runner_up]
        assert math.isclose(sum(p.contributions), gap, abs_tol=1e-9)
        assert p.log_likelihoods["x"] == p.log_likelihoods["z"]  # same prompt, same masks: same score
        assert math.isclose(sum(p.probabilities.values()), 1.0)


def test_causal_scores_match_the_core_likelihood(gpt2):
    import dlm
    from dlm.classify import ZeroShotClassifier

    [p] = ZeroShotClassifier(gpt2, ["x", "y"], ["the cat", "once upon"]).classify(["sat on the mat"])
    assert math.isclose(p.log_likelihoods["x"], dlm.log_likelihood(gpt2, "sat on the mat", prompt="the cat").log_likelihood,
                        rel_tol=1e-6)


def test_long_texts_are_cut_and_say_so(roberta):
    from dlm.classify import ZeroShotClassifier

    clf = ZeroShotClassifier(roberta, ["x", "y"], ["a", "b"], num_samples=4, max_tokens=5, max_pieces=2)
    [p] = clf.classify(["the cat " * 20])
    assert p.truncated and len(p.tokens) == 10 == clf.max_text_tokens  # two pieces of 5 tokens, the rest cut
    assert p.nfe == 2 * 4 * 2


# ---- Compare and Learn ---------------------------------------------------------------------------


def test_compare_races_both_and_reports_metrics(app, monkeypatch):
    used = {}  # each lane's model and settings, from the real start_generation
    real = compare_tab.start_generation

    def spy(lm, request):
        used[request.role] = (lm.settings, request.overrides)
        return real(lm, request)

    monkeypatch.setattr(compare_tab, "start_generation", spy)
    updates = list(compare_tab.compare(text="the cat", length=10, steps=5, temperature=1.1, seed=0))
    (diffusion, d), (ar, a) = used["diffusion"], used["autoregressive"]
    # each model decodes as its card recommends; the request sets length, steps, the diffusion temperature
    assert (d["temperature"], d["steps"], d["length"]) == (1.1, 5, 10)
    assert (d["remasking"], d["top_k"], d["top_p"]) == (diffusion.remasking, diffusion.top_k, diffusion.top_p)
    assert (a["temperature"], a["top_k"], a["top_p"], a["length"]) == (ar.temperature, ar.top_k, ar.top_p, 10)
    assert len(updates) >= 2
    final = last(updates)
    metrics = final[4].set_index("metric")
    assert list(metrics.columns) == ["diffusion", "autoregressive"]
    assert metrics.loc["NFE (forward passes)"].tolist() == ["5", "10"]
    assert metrics.loc["tokens"].tolist() == ["10", "10"]
    assert set(metrics.index) == set(compare_tab.METRIC_FORMATS)
    assert "finished first" in final[8]
    assert list(final[5]["model"]) == ["diffusion", "autoregressive"]


def test_race_lets_the_lane_behind_go_next(roberta, gpt2):
    import dlm
    from dlm.race import Lane, race

    lanes = [Lane("d", dlm.stream(roberta, "the", length=6, steps=6, seed=0)), Lane("a", dlm.stream(gpt2, "the", length=6))]
    clocks = [0.0, 0.0]
    for lane in race(lanes):
        i = lanes.index(lane)
        assert all(clocks[i] <= clocks[j] for j in range(2) if j != i and not lanes[j].done)  # the one behind went
        clocks = [other.clock for other in lanes]
    assert all(lane.done and lane.first_step is not None for lane in lanes)
    assert lanes[0].metrics()["NFE (forward passes)"] == 6 and lanes[1].metrics()["tokens"] == 6


def test_quality_chart_shows_one_length_from_the_benchmark_json(app, tmp_path, monkeypatch):
    full, quick = tmp_path / "ar_vs_diffusion.json", tmp_path / "ar_vs_diffusion_quick.json"
    monkeypatch.setattr(compare_tab, "QUALITY_FILES", (full, quick))
    chart = compare_tab.quality_chart()
    assert chart.frame is None and "has not been run" in chart.note

    def record(family, length, steps, threshold, nfe, wall, perplexity):
        return {"family": family, "model": "m", "length": length, "steps": steps, "threshold": threshold, "nfe": nfe,
                "wall_seconds": wall, "judge_perplexity": perplexity}

    quick.write_text(json.dumps({"machine": {"device": "cpu"}, "command": "python bench/ar_vs_diffusion.py --quick",
                                 "quick": True, "records": [record("diffusion", 64, 4, None, 4, 0.1, 900.0)]}))
    assert compare_tab.quality_chart().lengths == [64]  # no full sweep: the quick one
    full.write_text(json.dumps({
        "machine": {"device": "cpu", "cpu": "Test CPU", "cpu_count": 2}, "command": "python bench/ar_vs_diffusion.py",
        "human": [{"length": 64, "judge_perplexity": 40.0}, {"length": 128, "judge_perplexity": 45.0}],
        "records": [record("diffusion", 64, 4, None, 4, 0.1, 900.0), record("diffusion", 64, 64, None, 64, 2.0, 300.0),
                    record("ar", 64, None, None, 64, 0.4, 120.0),
                    record("diffusion", 128, 8, None, 8, 0.3, 1000.0), record("diffusion", 128, None, 0.9, 70, 2.5, 60.0),
                    record("ar", 128, None, None, 128, 0.8, 110.0), {"family": "diffusion", "length": 128},
                    {**record("diffusion", 128, 32, None, 32, 0.3, 100.0), "block_length": 32, "cache": "dual"},
                    {**record("diffusion", 128, 64, None, 64, 1.1, 90.0), "block_length": 32, "decoding": "fixed steps"},
                    {**record("diffusion", 128, None, None, 40, 0.5, 95.0), "factor": 1.0, "block_length": 32,
                     "cache": "dual", "decoding": "factor 1, b32, dual cache"},
                    record("continuous", 128, 64, None, 64, 0.9, 200.0)]}))
    chart = compare_tab.quality_chart()
    assert chart.lengths == [64, 128] and chart.length == 128  # 128 by default, no averaging across lengths
    frame = chart.frame.set_index("setting")
    assert frame.loc["diffusion, 8 steps", "judge perplexity"] == 1000.0
    assert frame.loc["diffusion, threshold 0.9", "series"] == "diffusion, parallel decoding"
    assert frame.loc["diffusion, factor 1, b32, dual cache", "series"] == "diffusion, parallel decoding"
    assert frame.loc["diffusion, 32 steps, blocks of 32, dual cache", "series"] == "diffusion, semi-AR + KV cache"
    # the model's recommended sampler uses blocks of its own: still the fixed-steps series
    assert frame.loc["diffusion, 64 steps, blocks of 32", "series"] == "diffusion, fixed steps"
    assert frame.loc["continuous diffusion, 64 steps", "series"] == "continuous diffusion"
    assert frame.loc["autoregressive (m)", "NFE"] == 128 and frame.loc["autoregressive (m)", "wall time (s)"] == 0.8
    assert set(chart.frame[chart.frame["series"] == "human text (reference)"]["judge perplexity"]) == {45.0}
    assert "Test CPU" in chart.note and "`python bench/ar_vs_diffusion.py`" in chart.note
    short = compare_tab.quality_chart(64).frame
    assert sorted(short[short["series"] != "human text (reference)"]["judge perplexity"]) == [120.0, 300.0, 900.0]
    assert compare_tab.quality_chart(256).frame is None
    for broken in ("{not json", json.dumps([1, 2]), json.dumps({"records": "x", "human": 3}),
                   json.dumps({"records": [{"length": "64", "nfe": None}]})):
        full.write_text(broken)
        chart = compare_tab.quality_chart()
        assert chart.frame is None and chart.note  # a note, never an exception


def test_learn_tells_measured_numbers(app):
    text = learn_tab.learn()
    assert "Measured here" in text and "| autoregressive, 64 tokens, KV cache |" in text
    assert "94%" not in text  # no seed claims


def test_models_load_once_under_concurrency(app, roberta_dir):
    import threading

    models = app_models.Models({"diffusion": roberta_dir})
    loaded = []
    threads = [threading.Thread(target=lambda: loaded.append(models.get("diffusion"))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(lm) for lm in loaded}) == 1


def test_the_trained_classifier_loads_once_under_concurrency(app, classifier_dir):
    import threading

    models = app_models.Models({"classifier": classifier_dir})
    loaded = []
    threads = [threading.Thread(target=lambda: loaded.append(models.classifier())) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(c) for c in loaded}) == 1 and models.loaded_classifier() is loaded[0]
    assert loaded[0].design == "per-class" and list(loaded[0].classifier.labels) == ["positive", "negative"]
    assert "unknown model role 'classifier'" in str(pytest.raises(ValueError, models.get, "classifier").value)


def test_the_header_describes_the_classifier(app):
    summary, cards = app_cards.model_overview()
    lm = app_models.MODELS.get("diffusion")  # every model's weight memory, in the header and on its card
    assert f"{app_cards.memory(lm)}, cpu)" in summary and f"**Memory**: {app_cards.memory(lm)} of weights" in cards
    assert app_cards.memory(lm).endswith("MB in float32") and lm.weight_bytes == 4 * lm.num_parameters
    assert "**classifier**: `" in summary and "per-class, masked diffusion" in summary and "positive / negative" in summary
    assert "### classifier:" in cards and "no validation figures" in cards
    assert "Labels: “positive”, “negative”" in classify_tab.classifier_info("trained")


# ---- the launched app, through gradio_client --------------------------------------------------------


@pytest.fixture(scope="module")
def served(app):
    """The page for the configured test models, launched on 127.0.0.1."""
    demo = app.build_demo()
    demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, **app.launch_options())
    try:
        yield demo
    finally:
        demo.close()


@pytest.fixture(scope="module")
def client(served):
    from gradio_client import Client

    return Client(served.local_url, verbose=False)


def raw_call(client, endpoint: str, data: list) -> str:
    """POST `data` to an endpoint as plain JSON, past gradio_client (which cannot send NaN, a lone surrogate
    or too few values), and return the error the app sends back ("" when none)."""
    import httpx

    body = json.dumps({"data": data})  # ensure_ascii: a lone surrogate travels as its \u escape; NaN as NaN
    url = client.src.rstrip("/") + f"/gradio_api/call/{endpoint}"
    posted = httpx.post(url, content=body, headers={"content-type": "application/json"})
    posted.raise_for_status()
    stream = httpx.get(f"{url}/{posted.json()['event_id']}", timeout=120).text
    errors = [json.loads(line[len("data: "):]) for previous, line in zip(stream.splitlines(), stream.splitlines()[1:])
              if previous == "event: error" and line.startswith("data: ")]
    return str(errors[0].get("error")) if errors else ""


def api_defaults(client, endpoint: str) -> list:
    """Every parameter's default value, in order (what a full raw call sends)."""
    parameters = client.view_api(print_info=False, return_format="dict")["named_endpoints"][endpoint]["parameters"]
    return [parameter["parameter_default"] for parameter in parameters]


def test_api_generate_streams(client):
    job = client.submit(text="the cat", length=12, steps=6, seed=0, api_name="/generate")
    updates = list(job)
    assert len(updates) >= 2
    final = job.outputs()[-1]
    stats, text = final[4], final[5]
    assert stats.startswith("**Done**") and text.startswith("the cat")


def test_api_generate_autoregressive_streams_across_worker_threads(client):
    job = client.submit(model="autoregressive", text="the cat", length=16, seed=0, api_name="/generate")
    assert len(list(job)) >= 2
    assert job.outputs()[-1][4].startswith("**Done**")


def test_api_animate_returns_an_animated_gif(client):
    from PIL import Image

    gif, files, race, note = client.predict(text="the cat", length=12, steps=6, frame_ms=100, api_name="/animate")
    with Image.open(gif) as image:
        assert image.n_frames > 1
    assert len(files) == 5 and {f["path"].rsplit(".", 1)[-1] if isinstance(f, dict) else f.rsplit(".", 1)[-1]
                                for f in files} == {"gif", "mp4", "html"}


def test_api_classify_a_csv(client, tmp_path):
    from gradio_client import handle_file

    path = write_csv(tmp_path / "r.csv", ["text", "label"], [("the cat sat", "positive"), ("the worst", "negative")])
    probs, explanation, table, csv_path, summary, confusion, *_ = client.predict(
        text="", file=handle_file(path), text_column="text", label_column="label", samples=8, api_name="/classify")
    assert len(table["data"]) == 2 and "Accuracy" in summary
    assert probs["label"] in ("positive", "negative")


def test_api_compare_returns_metrics(client):
    result = client.predict(text="the cat", length=10, steps=5, api_name="/compare")
    metrics = result[4]
    assert metrics["headers"] == ["metric", "diffusion", "autoregressive"]
    assert [row[0] for row in metrics["data"]][:3] == ["wall time (s)", "time to first step (s)", "tokens"]


@pytest.mark.parametrize(
    "endpoint, kwargs, message",
    [
        ("/generate", dict(text="", length=None), "prompt is empty and no length"),
        ("/generate", dict(length=1000), "Length (tokens) must be between 1 and 256, got 1000"),
        ("/generate", dict(length=8, steps=20), "steps (20) cannot exceed the length (8)"),
        ("/generate", dict(model="gpt-17"), "'gpt-17' (type: <class 'str'>) is not in the list of choices"),
        ("/classify", dict(text="", file="latin"), "is not UTF-8 text"),
        ("/classify", dict(text="", file="binary"), "looks like a binary file"),
        ("/classify", dict(text="", file="numbers"), "has no text column"),
        ("/classify", dict(text="", file="huge"), "exceeds the maximum file size of 5242880 bytes"),
    ],
)
def test_api_bad_input_gets_its_message_and_the_next_request_works(client, tmp_path, endpoint, kwargs, message):
    from gradio_client import handle_file

    files = {
        "latin": ("latin.csv", "text\ncaf\u00e9\n".encode("latin-1")),
        "binary": ("b.txt", b"\x00\x01\x02binary"),
        "numbers": ("n.csv", b"id,score\n1,2\n"),
        "huge": ("huge.csv", None),
    }
    if "file" in kwargs:
        name, content = files[kwargs["file"]]
        path = tmp_path / name
        if content is None:
            with open(path, "wb") as f:
                f.truncate(50 * 2**20)
        else:
            path.write_bytes(content)
        kwargs = {**kwargs, "file": handle_file(str(path))}
    if endpoint == "/generate":
        kwargs = {**GOOD, **kwargs}
    with pytest.raises(Exception) as caught:
        client.predict(**kwargs, api_name=endpoint)
    assert message in str(caught.value)
    assert client.predict(**GOOD, api_name="/generate")[4].startswith("**Done**")


def test_api_steps_go_up_to_the_limit_and_the_handler_checks_them_against_the_length(client):
    """The page keeps the Steps slider at the length; the API may ask for any steps up to MAX_STEPS."""
    final = client.predict(text="the cat", length=100, steps=100, seed=0, api_name="/generate")
    assert final[4].startswith("**Done** in 100 steps") and "NFE 100" in final[4]
    for steps, message in [(150, "steps (150) cannot exceed the length (100)"),
                           (300, "Steps must be between 1 and 256, got 300")]:
        with pytest.raises(Exception) as caught:
            client.predict(text="the cat", length=100, steps=steps, seed=0, api_name="/generate")
        assert message in str(caught.value)


def test_the_page_keeps_the_steps_slider_at_the_length(app):
    from webapp.settings import MAX_STEPS

    demo = app.build_demo()
    steps = {fn.api_name: fn for fn in demo.fns.values()}["generate"].inputs[4]
    assert steps.maximum == MAX_STEPS  # what the API accepts
    assert generate_tab.cap_steps(100, 120).maximum == 100  # what the page shows, once the length moves
    length = {fn.api_name: fn for fn in demo.fns.values()}["generate"].inputs[3]
    load = next(fn for fn in demo.fns.values() if fn.name == "on_load")
    update = load.fn()[load.outputs.index(steps)]
    assert update.maximum == length.value  # and what the page shows from the start


@pytest.mark.parametrize("endpoint", ["/generate", "/compare"])
@pytest.mark.parametrize("seed", ["x", "nan", "inf", 1.5, -1])
def test_api_a_bad_seed_is_named(client, endpoint, seed):
    with pytest.raises(Exception) as caught:
        client.predict(**{**GOOD, "length": 8, "seed": seed}, api_name=endpoint)
    assert f"Seed must be a whole number between 0 and 2147483647, got {seed!r}" in str(caught.value)


@pytest.mark.parametrize("value, shown", [(float("nan"), "nan"), (float("inf"), "inf")])
def test_api_a_seed_of_nan_or_infinity_is_named(client, value, shown):
    data = api_defaults(client, "/generate")
    data[14] = value  # seed
    assert f"Seed must be a whole number between 0 and 2147483647, got {shown}" in raw_call(client, "generate", data)


def test_api_a_lone_surrogate_is_refused_with_its_field(client):
    data = api_defaults(client, "/generate")
    data[2] = "the \ud800cat"
    assert "a lone surrogate (U+D800) at character 5 of the text" in raw_call(client, "generate", data)
    assert "a lone surrogate (U+D800) at character 5 of the text" in raw_call(
        client, "classify", ["the \ud800cat", None, None, None, "a, b", "{label}:", 8, "zero-shot"])
    assert "a lone surrogate (U+DFFF) at character 4 of the labels" in raw_call(
        client, "classify", ["the cat", None, None, None, "a, \udfff", "{label}:", 8, "zero-shot"])
    assert raw_call(client, "generate", api_defaults(client, "/generate")) == ""  # the next request works


def test_api_too_few_values_are_named(client):
    message = raw_call(client, "generate", ["diffusion", "continue"])
    assert "/generate takes 20 values (model, mode, text, length, steps," in message
    assert "got 2: text, length, steps" in message and "colours, temperature_end, min_p are missing" in message


def test_api_a_file_that_was_not_uploaded_is_refused_with_its_field(client, tmp_path):
    path = write_csv(tmp_path / "r.csv", ["text"], [("the cat",)])
    with pytest.raises(Exception) as caught:
        client.predict(text="", file=path, api_name="/classify")  # a bare path: never uploaded
    assert "file must be a file sent with gradio_client.handle_file(path), got" in str(caught.value)
    file = {"path": path, "meta": {"_type": "gradio.FileData"}}  # gradio_client would upload it: sent raw
    message = raw_call(client, "classify", ["", file, None, None, "a, b", "{label}:", 8, "trained"])
    assert message.startswith(f"file: Cannot move {path} to the gradio cache dir because it was not uploaded by a user")
    assert len(client.predict(text="the cat", samples=4, api_name="/classify")[2]["data"]) == 1


def readme_client_snippet(url: str) -> str:
    """The README's gradio_client example (the App section's **API.** block), pointed at `url`."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("```python", text.index("**API.**")) + len("```python")
    return text[start : text.index("```", start)].replace('"http://127.0.0.1:7860"', repr(url))


def run_readme_client_snippet(url: str, seconds: float) -> tuple[dict, BaseException | None]:
    """Run the snippet in a thread; fail if it has not ended in `seconds`."""
    import threading

    snippet = readme_client_snippet(url)
    scope: dict = {}
    outcome: list[BaseException | None] = []

    def run():
        try:
            exec(compile(snippet, "README.md", "exec"), scope)  # noqa: S102  (our own README)
            outcome.append(None)
        except BaseException as error:  # noqa: BLE001  (handed to the test)
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"the README's client example has not ended after {seconds} s"
    return scope, outcome[0]


@pytest.fixture
def reviews(tmp_path, monkeypatch):
    """The reviews.csv the README's example classifies, in the current folder."""
    monkeypatch.chdir(tmp_path)
    write_csv(tmp_path / "reviews.csv", ["review", "sentiment"], [("the cat sat", "positive"), ("the dog", "negative")])


def test_the_readme_client_snippet_runs(client, reviews, capsys):
    from importlib.metadata import version

    scope, error = run_readme_client_snippet(client.src.rstrip("/"), 300)
    assert error is None
    printed = capsys.readouterr().out
    assert "**Step 1 / 24**" in printed and printed.rstrip().endswith(scope["text"])  # every step, then the text
    assert scope["text"].startswith("Once upon a time")
    assert scope["metrics"]["headers"][0] == "metric" and "Accuracy" in scope["summary"]
    assert scope["gif"].endswith(".gif") and len(scope["files"]) == 5
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"gradio_client {version('gradio_client')}" in readme  # the version the example is tested with


def test_the_readme_client_snippet_ends_when_the_queue_is_full(served, client, reviews, capsys, monkeypatch):
    """gradio_client marks a job the full queue refused as done, but `for update in job` never ends."""
    from gradio_client.utils import QueueError

    monkeypatch.setattr(served._queue, "max_size", 0)  # every request refused, as by a full queue
    _, error = run_readme_client_snippet(client.src.rstrip("/"), 60)
    assert "no text: Queue is full" in capsys.readouterr().out
    assert isinstance(error, QueueError)  # the next call, client.predict, raises it
    monkeypatch.undo()
    assert client.predict(**GOOD, api_name="/generate")[4].startswith("**Done**")


# ---- the page as a package of tabs ---------------------------------------------------------------


def api_signature(demo) -> dict:
    info = demo.get_api_info()["named_endpoints"]
    return {name: {"parameters": [[p["parameter_name"], p["component"]] for p in endpoint["parameters"]],
                   "returns": [r["component"] for r in endpoint["returns"]]} for name, endpoint in sorted(info.items())}


def test_the_page_has_the_same_named_endpoints_and_parameters_as_before(app):
    """tests/app_endpoints.json was written from the one-file app.py before it became webapp/ (since then
    /generate and /animate gained temperature_end, after colours, then min_p after it)."""
    before = json.loads((ROOT / "tests" / "app_endpoints.json").read_text())
    assert api_signature(app.build_demo()) == before
    assert api_signature(app.demo) == before


def component(demo, elem_id: str):
    found = [block for block in demo.blocks.values() if getattr(block, "elem_id", None) == elem_id]
    assert len(found) == 1, elem_id
    return found[0]


def test_controls_start_at_the_models_recommendations_and_the_buttons_are_ready(app, roberta_dir):
    import dlm

    demo = app.build_demo()
    settings = dlm.load(roberta_dir).settings
    generate_inputs = {fn.api_name: fn for fn in demo.fns.values()}["generate"].inputs
    length, steps = generate_inputs[3], generate_inputs[4]
    assert (length.value, steps.value) == (settings.length, settings.steps)
    assert component(demo, "generate-button").interactive is not False
    assert component(demo, "race-button").interactive is not False


def test_without_the_settings_at_hand_the_buttons_wait_for_the_page_load(app, monkeypatch):
    monkeypatch.setattr(app_models, "MODELS", app_models.Models({"diffusion": "no-such-org/not-in-the-cache"}))
    demo = app.build_demo()
    for button in ("generate-button", "animate-button", "race-button"):
        assert component(demo, button).interactive is False and "loading" in component(demo, button).value


def test_outputs_have_empty_states(app):
    demo = app.build_demo()
    results = component(demo, "results")
    assert list(results.value["headers"]) == ["#", "text", "prediction"]
    metrics = component(demo, "metrics")
    assert [row[0] for row in metrics.value["data"]] == list(compare_tab.METRIC_FORMATS)
    assert "Press **Generate**" in component(demo, "stats").value
    assert "No texts classified yet" in component(demo, "classify-summary").value


# ---- fair use: work per request, abandoned requests, requests per client (issue 15, item 5) ---------


def test_a_request_over_the_work_limit_is_refused_with_the_product(app, monkeypatch):
    from webapp import limits

    monkeypatch.setattr(limits, "MAX_CLASSIFY_PASSES", 10)
    message = error_message(app, lambda: classify(app, text="the cat\nthe dog", labels="a, b", label_prompt="{label}:",
                                                  samples=4, mode="zero-shot"))
    assert "16 forward passes (2 texts x 2 labels x 4 samples)" in message and "limit per request is 10" in message
    # a long text is read as several pieces (each a row per label and mask pattern): they count, and
    # when reading it whole would exceed the limit it is read to its first pieces, with a warning
    from webapp.settings import DIFFUSION
    from webapp.tabs.classify import fit_work, make_classifier

    long = " ".join(["the cat sat on the mat and the dog ran to the road"] * 40)  # more than 5 pieces
    zero_shot = make_classifier("zero-shot", 4, lm=app_models.MODELS.get(DIFFUSION), labels=["a", "b"],
                                prompts=["a:", "b:"])
    [pieces] = zero_shot.count_pieces([long])
    assert pieces >= 5 and zero_shot.max_pieces >= pieces
    monkeypatch.setattr(limits, "MAX_CLASSIFY_PASSES", 8 * 4)  # 4 pieces of 2 labels x 4 samples
    fitted, note = fit_work(zero_shot, ["the cat", long], 4)
    piece = zero_shot.max_text_tokens // zero_shot.max_pieces  # read head+tail: 2 first pieces and the last one
    assert fitted.max_pieces == 3 and (f"1 long text(s) were each read to its first {2 * piece:,} and last {piece:,} "
                                       "tokens (3 piece(s))") in note
    assert fitted.count_pieces(["the cat", long]) == [1, 3] and zero_shot.max_pieces == pieces  # a copy
    with pytest.warns(UserWarning, match=r"read to its first [\d,]+ and last [\d,]+ tokens \(3 piece\(s\)\)"):
        summary = classify(app, text=f"the cat\n{long}", labels="a, b", label_prompt="{label}:", samples=4,
                           mode="zero-shot")[4]
    assert f"1 long text(s) were cut: each read to its first {2 * piece:,} and last {piece:,} tokens." in summary
    assert fit_work(zero_shot, ["the cat", "the dog"], 4) == (zero_shot, None)  # short texts: as they are
    monkeypatch.setattr(limits, "MAX_CLASSIFY_PASSES", 8)  # not even the first pieces fit: refused
    message = error_message(app, lambda: classify(app, text=f"the cat\n{long}", labels="a, b", label_prompt="{label}:",
                                                  samples=4, mode="zero-shot"))
    assert "16 forward passes (2 texts x 2 labels x 4 samples)" in message
    monkeypatch.setattr(limits, "MAX_GENERATION_WORK", 50)
    message = error_message(app, lambda: last(generate_tab.generate(**{**GOOD, "length": 12, "steps": 6})))
    assert "72 units of work (12 tokens x 6 steps x 1 sample(s))" in message and "lower the length" in message
    message = error_message(app, lambda: last(generate_tab.generate(**{**GOOD, "model": "autoregressive",
                                                                          "length": 12})))
    assert "12 tokens x 12 tokens" in message  # an AR model: one pass per token


def test_an_abandoned_classification_stops_within_one_text(app, monkeypatch):
    """A generator handler: Gradio closes it at its next yield when the client leaves or presses Stop."""
    from dlm.classify import GenerativeClassifier

    done = []
    real = GenerativeClassifier.classify
    monkeypatch.setattr(GenerativeClassifier, "classify", lambda self, texts: done.append(texts) or real(self, texts))
    run = classify_tab.classify(text="\n".join(f"the cat {i}" for i in range(20)), samples=4, progress=NoProgress())
    next(run)  # the first text is classified; the client goes away
    run.close()
    assert len(done) == 1


def test_stop_and_a_gone_client_end_a_running_classification(served, client, monkeypatch):
    """Over the API: a job cancelled midway runs no further texts."""
    import threading

    from dlm.classify import GenerativeClassifier

    done, first = [], threading.Event()
    real = GenerativeClassifier.classify

    def slow(self, texts):
        done.append(texts)
        first.set()
        time.sleep(0.2)
        return real(self, texts)

    monkeypatch.setattr(GenerativeClassifier, "classify", slow)
    job = client.submit(text="\n".join(f"the cat {i}" for i in range(100)), samples=4, api_name="/classify")
    assert first.wait(60)
    job.cancel()
    time.sleep(2)
    stopped_at = len(done)
    time.sleep(1.5)
    assert len(done) == stopped_at < 100


def test_one_client_cannot_fill_the_queue(served, client, monkeypatch):
    """MAX_QUEUED_PER_CLIENT requests of one address wait or run; its next gets a 429 with a message, while
    another client (a different address behind the proxy) is still served."""
    import threading

    import httpx
    from gradio_client import Client

    from webapp.limits import pending_for
    from webapp.settings import MAX_QUEUED_PER_CLIENT

    gate = threading.Event()
    real = generate_tab.start_generation

    def held(lm, request):
        gate.wait(60)
        return real(lm, request)

    monkeypatch.setattr(generate_tab, "start_generation", held)
    try:
        jobs = [client.submit(**GOOD, api_name="/generate") for _ in range(MAX_QUEUED_PER_CLIENT)]
        deadline = time.time() + 30
        while time.time() < deadline and pending_for(served._queue, "127.0.0.1") < MAX_QUEUED_PER_CLIENT:
            time.sleep(0.1)  # until all of them have joined the queue (2 running, the rest waiting)
        url = client.src.rstrip("/") + "/gradio_api/queue/join"
        refused = httpx.post(url, json={"data": [], "fn_index": 0, "session_hash": "another-tab"})
        assert refused.status_code == 429 and "requests waiting or running" in refused.json()["detail"]
        other = Client(served.local_url, verbose=False, headers={"X-Forwarded-For": "10.9.8.7"})
        other_job = other.submit(**GOOD, api_name="/generate")
    finally:
        gate.set()
    assert all(job.result(timeout=120)[4].startswith("**Done**") for job in jobs)
    assert other_job.result(timeout=120)[4].startswith("**Done**")


def test_the_client_key_trusts_the_forwarded_address_only_from_a_proxy():
    from webapp.limits import client_key

    assert client_key({"x-forwarded-for": "203.0.113.9, 10.0.0.1"}, "10.0.0.1") == "203.0.113.9"  # behind Spaces
    assert client_key({"x-forwarded-for": "203.0.113.9"}, "127.0.0.1") == "203.0.113.9"
    assert client_key({"x-forwarded-for": "1.2.3.4"}, "8.8.8.8") == "8.8.8.8"  # a public peer cannot pick
    assert client_key({}, "8.8.8.8") == "8.8.8.8"


# ---- disk: one copy of each file, expired and removed (issue 15, item 9) -----------------------------


def test_a_served_file_is_stored_once(served):
    """The app writes into Gradio's cache folder, so Gradio serves the file where it is, with no copy."""
    import hashlib

    from gradio.utils import get_upload_folder

    from gradio_client import Client

    # download_files=False: the client downloads nothing (its downloads would land in the same temp folder)
    served_file = Client(served.local_url, verbose=False, download_files=False).predict(
        text="the cat", length=8, steps=4, frame_ms=100, race_ar=False, api_name="/animate")[0]
    gif = served_file["path"] if isinstance(served_file, dict) else served_file
    digest = hashlib.sha256(Path(gif).read_bytes()).hexdigest()
    copies = [p for p in Path(get_upload_folder()).rglob("*.gif")
              if p.is_file() and hashlib.sha256(p.read_bytes()).hexdigest() == digest]
    assert len(copies) == 1 and copies[0].is_relative_to(app_files.output_dir())


def test_leftovers_of_ended_processes_are_removed_and_running_apps_kept():
    import os
    import subprocess
    import sys

    gone = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout)
    parent = app_files.output_dir().parent
    dead = parent / f"dlm-app-{gone}-0123abcd"
    running = parent / f"dlm-app-{os.getppid()}-0123abcd"  # another app, still running
    for folder in (dead, running):
        (folder / "0123456789ab").mkdir(parents=True)
        (folder / "0123456789ab" / "run.gif").write_bytes(b"GIF89a")
    try:
        assert app_files.remove_leftovers() >= 1
        assert not dead.exists() and running.exists() and app_files.output_dir().is_dir()
    finally:
        shutil.rmtree(running, ignore_errors=True)
        shutil.rmtree(dead, ignore_errors=True)


def test_memory_is_given_back_when_the_queue_goes_idle(app, monkeypatch):
    """After a request the server gives freed heap pages back within seconds of going idle, not only at
    the minute's sweep (which this test never reaches)."""
    from gradio_client import Client

    import webapp.memory

    calls = []
    real = webapp.memory.release_memory
    monkeypatch.setattr(webapp.memory, "release_memory", lambda: calls.append(time.monotonic()) or real())
    demo = app.build_demo()
    demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, **app.launch_options())
    try:
        client = Client(demo.local_url, verbose=False)
        time.sleep(2 * app_files.IDLE_CHECK_SECONDS)
        assert calls == []  # nothing ran yet: nothing to give back
        job = client.submit(text="the cat", length=32, steps=32, api_name="/generate")
        while not job.done():
            time.sleep(0.05)
        finished = time.monotonic()
        time.sleep(3 * app_files.IDLE_CHECK_SECONDS)
        assert calls and calls[0] >= finished - app_files.IDLE_CHECK_SECONDS, calls
        assert len(calls) == 1  # once per busy spell, not at every idle check
    finally:
        demo.close()


def test_expired_outputs_are_swept_and_all_are_removed_at_shutdown(app):
    import os

    from gradio_client import Client

    old = app_files.request_dir()
    (old / "run.gif").write_bytes(b"GIF89a")
    past = time.time() - app_files.OUTPUT_TTL_SECONDS - 5
    os.utime(old, (past, past))
    fresh = app_files.request_dir()
    assert app_files.sweep() == 0 and not old.exists() and fresh.exists()  # the new request swept the old one

    demo = app.build_demo()
    demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, **app.launch_options())
    try:
        Client(demo.local_url, verbose=False).predict(text="the cat", length=8, steps=4, frame_ms=100, race_ar=False,
                                                      api_name="/animate")
        assert any(app_files.output_dir().iterdir())
    finally:
        demo.close()
    assert not app_files._root().exists()  # nothing the app wrote is left on disk
    assert app_files.output_dir().is_dir()  # a later launch in this process writes again
