"""dlm.render on hand-built traces: labels, GIF/MP4 frames, and a self-contained, injection-proof HTML page."""

from __future__ import annotations

import json
import re
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from dlm.render import (
    COLOR_MAP,
    MASK_PLACEHOLDER,
    FrameRenderer,
    highlight,
    snapshot,
    to_gif,
    to_gif_side_by_side,
    to_html,
    to_html_side_by_side,
    to_mp4,
)
from dlm.render.player import script_json
from dlm.trace import Step, Trace

MASK = 99
XSS = "<script>alert(1)</script>"

# masked trace: <s> (hidden), a 2-token prompt, then 8 generated positions revealed 2 per step
MASKED_TOKENS = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
MASKED_PIECES = {0: "<s>", 1: "The", 2: " cat", 3: " sat", 4: " on", 5: " the", 6: " naïve", 7: " 中文",
                 8: ".\n", 9: "Next", 10: " line"}  # fmt: skip
REVEAL_ORDER = [(3, 7), (5, 9), (4, 10), (6, 8)]  # positions committed by each step
STEP_CONFIDENCE = [0.95, 0.7, 0.3, 0.92]  # the model's confidence in each step: high, mid, low, high
STEP_SECONDS = 0.1  # wall time per diffusion step

# causal trace: a 2-token prompt, then 8 tokens left to right; unfilled slots hold -1
CAUSAL_TOKENS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
CAUSAL_SECONDS = 0.075  # wall time per token: 8 tokens take 0.6 s, the diffusion run 0.4 s


def _step(index, canvas, guess, confidence, committed, seconds):
    length = len(canvas)
    mask = torch.zeros(1, length, dtype=torch.bool)
    mask[0, list(committed)] = True
    return Step(
        index=index,
        canvas=torch.tensor([canvas]),
        guess=torch.tensor([guess]),
        confidence=torch.full((1, length), confidence),
        committed=mask,
        nfe=index + 1,
        elapsed=seconds * (index + 1),
    )


def masked_trace(pieces=None, prompt="The cat", model="toy-mdm") -> Trace:
    length = len(MASKED_TOKENS)
    initial = MASKED_TOKENS[:3] + [MASK] * (length - 3)
    canvas, steps = list(initial), []
    for index, positions in enumerate(REVEAL_ORDER):
        for position in positions:
            canvas[position] = MASKED_TOKENS[position]
        steps.append(_step(index, canvas, MASKED_TOKENS, STEP_CONFIDENCE[index], positions, STEP_SECONDS))
    fixed = torch.tensor([True] * 3 + [False] * (length - 3))
    hidden = torch.zeros(length, dtype=torch.bool)
    hidden[0] = True
    return Trace(
        kind="masked",
        mask_id=MASK,
        initial=torch.tensor([initial]),
        fixed=fixed,
        hidden=hidden,
        pieces=dict(MASKED_PIECES if pieces is None else pieces),
        prompt=prompt,
        model=model,
        steps=steps,
    )


def causal_trace() -> Trace:
    length = len(CAUSAL_TOKENS)
    canvas, steps = CAUSAL_TOKENS[:2] + [-1] * (length - 2), []
    initial = list(canvas)
    for index, position in enumerate(range(2, length)):
        canvas[position] = CAUSAL_TOKENS[position]
        guess = [-1] * length
        guess[position] = CAUSAL_TOKENS[position]
        steps.append(_step(index, canvas, guess, 0.8, [position], CAUSAL_SECONDS))
    return Trace(
        kind="causal",
        mask_id=-1,
        initial=torch.tensor([initial]),
        fixed=torch.tensor([True, True] + [False] * (length - 2)),
        hidden=torch.zeros(length, dtype=torch.bool),
        pieces={token: MASKED_PIECES[token] for token in CAUSAL_TOKENS},
        prompt="The cat",
        model="toy-ar",
        steps=steps,
    )


def embedded_json(page: str) -> dict:
    match = re.search(r'<script type="application/json" id="trace-data">(.*?)</script>', page, re.S)
    assert match, "the page embeds its data"
    return json.loads(match.group(1))


# --- highlight ---------------------------------------------------------------------------------


def test_highlight_state_labels_follow_the_steps():
    trace = masked_trace()
    for index, positions in enumerate(REVEAL_ORDER):
        pairs = highlight(trace, step=index)
        labels = [label for _, label in pairs]
        assert len(pairs) == len(MASKED_TOKENS) - 1  # <s> is hidden
        assert "<s>" not in [text for text, _ in pairs]
        assert labels.count("prompt") == 2
        assert labels.count("masked") == 8 - 2 * (index + 1)  # masks only ever fall
        assert [text for text, label in pairs if label == "new"] == [MASKED_PIECES[p] for p in sorted(positions)]
        assert labels.count(None) == 2 * index  # earlier commits are plain
        assert set(labels) <= set(COLOR_MAP["state"]) | {None}


def test_highlight_initial_canvas_and_default_last_step():
    trace = masked_trace()
    initial = highlight(trace, step=None)
    assert "".join(text for text, _ in initial) == "The cat" + f" {MASK_PLACEHOLDER}" * 8
    assert [label for _, label in initial].count("new") == 0
    final = highlight(trace)
    assert final == highlight(trace, step=len(trace.steps) - 1)
    assert "".join(text for text, _ in final) == "".join(MASKED_PIECES[t] for t in MASKED_TOKENS[1:])


def test_highlight_confidence_uses_the_confidence_at_commit_time():
    trace = masked_trace()
    labels = {pairs_text: label for pairs_text, label in highlight(trace, mode="confidence")}
    for index, positions in enumerate(REVEAL_ORDER):
        expected = {0.95: "high", 0.92: "high", 0.7: "mid", 0.3: "low"}[STEP_CONFIDENCE[index]]
        assert all(labels[MASKED_PIECES[p]] == expected for p in positions)
    assert labels["The"] is None  # the prompt has no confidence
    midway = [label for _, label in highlight(trace, step=1, mode="confidence")]
    assert midway.count("masked") == 4
    assert set(midway) <= set(COLOR_MAP["confidence"]) | {None}


def test_highlight_causal_trace():
    trace = causal_trace()
    first = highlight(trace, step=0)
    assert [label for _, label in first].count("masked") == 7
    assert [text for text, label in first if label == "new"] == [" sat"]
    assert "masked" not in [label for _, label in highlight(trace)]


def test_highlight_fails_loudly():
    trace = masked_trace()
    with pytest.raises(ValueError, match="choose from"):
        highlight(trace, mode="rainbow")
    with pytest.raises(IndexError, match="or None"):
        highlight(trace, step=len(trace.steps))
    with pytest.raises(IndexError, match="row"):
        highlight(trace, row=1)


def test_snapshot_progress():
    trace = masked_trace()
    assert snapshot(trace, None).progress == 0.0
    assert snapshot(trace, 1).progress == 0.5
    assert snapshot(trace, -1).progress == 1.0


def test_a_character_split_over_tokens_shows_whole_at_the_token_that_completes_it(tmp_path):
    """Byte-level BPE may split "ï" (bytes C3 AF) over two tokens. The trace keeps such bytes as surrogate
    escapes (dlm.generation.raw_pieces); every renderer shows the character whole, at the token that
    completes it, and a byte whose neighbour is still undecided as U+FFFD."""
    pieces = MASKED_PIECES | {6: " na\udcc3", 7: "\udcafve 中文"}
    trace = masked_trace(pieces)
    final = [text for text, _ in highlight(trace)]
    assert final[5:7] == [" na", "ïve 中文"]  # positions 6 and 7 (<s> is hidden)
    assert "".join(final) == "The cat sat on the naïve 中文.\nNext line"
    assert [label for _, label in highlight(trace, mode="confidence")] == [
        label for _, label in highlight(masked_trace(), mode="confidence")]  # one pair per token, coloured as before
    early = highlight(trace, step=0)  # position 7 decided, position 6 (its first byte) still masked
    assert early[6] == ("\ufffdve 中文", "new")
    loaded = Trace.load(trace.save(tmp_path / "trace.json"))
    assert highlight(loaded) == highlight(trace)
    page = to_html(trace, tmp_path / "run.html")  # written as UTF-8, which has no surrogates
    (pane,) = embedded_json(page)["panes"]
    assert pane["pieces"]["6"] == " na\ufffd" and pane["frames"][-1]["text"] == {"5": " na", "6": "ïve 中文"}
    assert "text" not in pane["frames"][0]  # nothing to correct: the player shows the pieces
    to_gif(trace, tmp_path / "run.gif")


def test_non_ascii_prompt_text_shows_whole(roberta):
    import dlm
    from dlm.generation import encode, token_pieces

    prompt = "café naïve עברית"
    trace = dlm.generate(roberta, prompt, length=4, steps=2, seed=0)
    for step in (None, -1):
        pairs = highlight(trace, step)
        assert len(pairs) == int((~trace.hidden).sum())  # still one pair per token
        assert "".join(text for text, label in pairs if label == "prompt") == prompt
    assert "\ufffd" not in "".join(text for text, _ in highlight(trace, None))
    ids = encode(roberta.tokenizer, prompt)
    assert len(ids) > len(prompt.split())
    assert "".join(token_pieces(roberta.tokenizer, ids)) == prompt  # the Classify tab's tokens, in a text's order


# --- GIF and MP4 -------------------------------------------------------------------------------


def gif_frames(path) -> list[tuple[tuple[int, int], int]]:
    """(size, duration) of every frame."""
    frames = []
    with Image.open(path) as image:
        for index in range(image.n_frames):
            image.seek(index)
            frames.append((image.size, image.info["duration"]))
    return frames


@pytest.mark.parametrize("mode", ["state", "confidence"])
def test_gif_has_one_frame_per_step_plus_the_initial_canvas(tmp_path, mode):
    trace = masked_trace()
    path = to_gif(trace, tmp_path / "run.gif", frame_ms=120, final_ms=1500, width=400, mode=mode)
    frames = gif_frames(path)
    assert len(frames) == len(trace.steps) + 1
    assert {size for size, _ in frames} == {frames[0][0]}  # every frame the same size
    assert frames[0][0][0] == 400
    assert [duration for _, duration in frames] == [120] * len(trace.steps) + [1500]


def test_gif_frames_decode_to_what_the_renderer_drew(tmp_path):
    trace = masked_trace()
    renderer = FrameRenderer(trace, width=400)
    path = to_gif(trace, tmp_path / "run.gif", width=400)  # frames after the first store only changes
    with Image.open(path) as gif:
        for frame in range(gif.n_frames):
            gif.seek(frame)
            decoded = np.asarray(gif.convert("RGB"), dtype=int)
            drawn = np.asarray(renderer.draw(frame), dtype=int)
            assert (decoded != drawn).any(axis=-1).mean() < 0.02  # only a few anti-aliased edge pixels differ


def test_gif_wraps_long_and_odd_text(tmp_path):
    pieces = MASKED_PIECES | {4: " " + "x" * 300, 6: "\t😀\u200b\r\n", 10: " é—“ok”"}
    path = to_gif(masked_trace(pieces), tmp_path / "odd.gif", width=240)
    frames = gif_frames(path)
    assert len(frames) == len(REVEAL_ORDER) + 1
    assert frames[0][0][0] == 240


def test_gif_of_causal_trace(tmp_path):
    trace = causal_trace()
    assert len(gif_frames(to_gif(trace, tmp_path / "ar.gif"))) == len(trace.steps) + 1


def test_mp4_is_written(tmp_path):
    imageio = pytest.importorskip("imageio.v2")
    pytest.importorskip("imageio_ffmpeg")
    trace = masked_trace()
    path = to_mp4(trace, tmp_path / "run.mp4", fps=8, width=410, final_ms=1000)
    assert path.stat().st_size > 0
    with imageio.get_reader(path) as reader:
        height, width = reader.get_data(0).shape[:2]
        frames = reader.count_frames()
    assert width % 16 == 0 and height % 16 == 0 and width >= 410
    assert frames == len(trace.steps) + 1 + 8  # plus the final frame held 1 s at 8 fps


def test_mp4_without_imageio_ffmpeg_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # makes `import imageio_ffmpeg` fail
    with pytest.raises(RuntimeError, match="pip install imageio-ffmpeg"):
        to_mp4(masked_trace(), tmp_path / "run.mp4")


def test_side_by_side_gif_races_in_wall_clock_time(tmp_path):
    traces = [masked_trace(), causal_trace()]  # done after 0.4 s and 0.6 s
    path = to_gif_side_by_side(traces, tmp_path / "race.gif", frame_ms=100, width=300)
    frames = gif_frames(path)
    assert len(frames) == 7  # t = 0, 0.1, ..., 0.6
    width, _ = frames[0][0]
    assert 600 <= width <= 700  # two 300-pixel columns and a gap

    by_step = gif_frames(to_gif_side_by_side(traces, tmp_path / "steps.gif", align="step", width=300))
    assert len(by_step) == max(len(trace.steps) for trace in traces) + 1


def test_side_by_side_rejects_bad_arguments(tmp_path):
    traces = [masked_trace(), causal_trace()]
    with pytest.raises(ValueError, match="choose from"):
        to_gif_side_by_side(traces, tmp_path / "x.gif", align="photo-finish")
    with pytest.raises(ValueError, match="one per trace"):
        to_gif_side_by_side(traces, tmp_path / "x.gif", titles=["only one"])


# --- HTML --------------------------------------------------------------------------------------


def test_html_escapes_every_piece_of_trace_text(tmp_path):
    pieces = MASKED_PIECES | {4: XSS, 5: " </SCRIPT><!-- & \u2028"}
    trace = masked_trace(pieces, prompt=XSS, model=XSS)
    page = to_html(trace, tmp_path / "run.html", title=XSS)
    assert (tmp_path / "run.html").read_text(encoding="utf-8") == page
    assert XSS not in page
    assert page.lower().count("<script") == 2  # the data block and the player
    assert page.lower().count("</script") == 2
    assert "\u2028" not in page
    data = embedded_json(page)
    assert data["panes"][0]["pieces"]["4"] == XSS  # escaped in the page, intact in the data


def test_html_embeds_the_trace_data():
    trace = masked_trace()
    data = embedded_json(to_html(trace))
    (pane,) = data["panes"]
    visible = [p for p in range(len(MASKED_TOKENS)) if not trace.hidden[p]]
    assert pane["positions"] == visible
    assert len(pane["frames"]) == len(trace.steps) + 1
    assert pane["frames"][0]["canvas"] == trace.initial[0, visible].tolist()
    for step, frame in zip(trace.steps, pane["frames"][1:]):
        assert frame["canvas"] == step.canvas[0, visible].tolist()
        assert frame["guess"] == step.guess[0, visible].tolist()
        assert frame["confidence"] == pytest.approx(step.confidence[0, visible].tolist(), abs=1e-3)
        assert [visible[c] for c in frame["committed"]] == step.committed_positions(0)
        assert (frame["nfe"], frame["elapsed"]) == (step.nfe, pytest.approx(step.elapsed))
    for token in trace.steps[-1].canvas[0, visible].tolist():
        assert pane["pieces"][str(token)] == MASKED_PIECES[token]
    labels = data["labels"]["state"]
    assert [labels[i] for i in pane["frames"][1]["labels"]["state"]].count("new") == 2
    assert data["ticks"] == [[float(j), j] for j in range(len(trace.steps) + 1)]


def test_html_is_self_contained():
    page = to_html(masked_trace())
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"<(link|img|iframe)\b|\bsrc=|@import|url\(", page, re.I)


def test_html_side_by_side_shares_one_time_slider():
    traces = [masked_trace(), causal_trace()]
    data = embedded_json(to_html_side_by_side(traces, titles=["diffusion", "autoregressive"]))
    assert len(data["panes"]) == 2 and data["align"] == "time"
    for time, *frames in data["ticks"]:
        for trace, frame in zip(traces, frames):
            assert frame == sum(step.elapsed <= time for step in trace.steps)  # last step finished by then
    assert data["ticks"][-1][1:] == [len(trace.steps) for trace in traces]
    by_step = embedded_json(to_html_side_by_side(traces, align="step"))
    assert len(by_step["ticks"]) == max(len(trace.steps) for trace in traces) + 1


def test_script_json_round_trips_and_cannot_close_the_script():
    value = {"text": "</script><!-- a & b \u2028 \u2029 > <"}
    encoded = script_json(value)
    assert not set("<>&\u2028\u2029") & set(encoded)
    assert json.loads(encoded) == value
