"""Animated GIFs and MP4s of traces, from the frames `dlm.render.frames` draws.

    to_gif(trace, "run.gif")                           # initial canvas, then one frame per step
    to_mp4(trace, "run.mp4")                           # the same as an h264 video
    to_gif_side_by_side([diffusion, ar], "race.gif")   # columns raced in real (wall-clock) time
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageColor

from dlm.render.frames import FrameRenderer, FrameStyle, hstack
from dlm.render import palette
from dlm.render.palette import BACKGROUND
from dlm.render.timeline import (
    Tick,
    check_alignment,
    check_titles,
    race_duration,
    step_ticks,
    time_ticks,
    uniform_times,
)
from dlm.trace import Trace

MACRO_BLOCK = 16  # h264 encodes 16x16 blocks: video sides are padded to a multiple of this
VIDEO_QUALITY = 8  # imageio's 0-10 scale; small text smears at its default of 5
MAX_RACE_FRAMES = 1500  # a longer real-time race asks for a higher speed instead of a huge GIF
TRANSPARENT = 255  # GIF palette index for "unchanged since the last frame"; the other 255 hold colours
SWATCH = sorted(  # every colour the frames use, so the GIF palette holds each one exactly
    {colour for colours in palette.COLOR_MAP.values() for colour in colours.values()}
    | {palette.BACKGROUND, palette.TEXT, palette.PROMPT_TEXT, palette.MUTED, palette.BAR_TRACK, palette.BAR_FILL,
       palette.NEW_OUTLINE, palette.DIVIDER}
)


def to_gif(
    trace: Trace,
    path: str | Path,
    row: int = 0,
    frame_ms: int = 250,
    final_ms: int = 2000,
    width: int = 800,
    mode: str = "state",
    style: FrameStyle = FrameStyle(),
    title: str | None = None,
) -> Path:
    """Write sample `row` of `trace` as a looping GIF: the initial canvas, then one frame per step.

    Args:
        frame_ms: how long each frame shows; final_ms: how long the last one is held.
        width: image width in pixels (the height follows from the text).
        mode: token colours, "state" or "confidence" (see dlm.render.palette).
        style: fonts and spacing; title: the heading (default: model and kind).

    The GIF has len(trace.steps) + 1 frames: each shows a different step counter, so the encoder
    never merges two of them.
    """
    _check_durations(frame_ms, final_ms)
    renderer = FrameRenderer(trace, row, width, mode, style, title)
    return _save_gif(renderer.draw, _durations(len(renderer), frame_ms, final_ms), path)


def to_mp4(
    trace: Trace,
    path: str | Path,
    row: int = 0,
    fps: float = 8,
    width: int = 800,
    final_ms: int = 2000,
    mode: str = "state",
    style: FrameStyle = FrameStyle(),
    title: str | None = None,
) -> Path:
    """Write sample `row` of `trace` as an h264 MP4: the frames of `to_gif`, `fps` steps per second,
    the last held for `final_ms`. Needs imageio-ffmpeg (which ships its own ffmpeg binary)."""
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if final_ms < 0:
        raise ValueError(f"final_ms must not be negative, got {final_ms}")
    renderer = FrameRenderer(trace, row, width, mode, style, title)
    repeats = [1] * (len(renderer) - 1) + [1 + round(final_ms / 1000 * fps)]  # hold the last frame
    return _save_mp4(renderer.draw, repeats, path, fps)


def to_gif_side_by_side(
    traces: list[Trace],
    path: str | Path,
    titles: list[str] | None = None,
    row: int = 0,
    align: str = "time",
    frame_ms: int = 100,
    final_ms: int = 2000,
    speed: float = 1.0,
    width: int = 480,
    mode: str = "state",
    style: FrameStyle = FrameStyle(),
) -> Path:
    """Write several traces as columns of one GIF, e.g. a diffusion model racing an autoregressive one.

    Args:
        traces: the runs, one column each, left to right (usually two).
        titles: one heading per column (default: each trace's model and kind).
        row: which sample of each trace.
        align: "time" shows, every frame_ms, what each run had produced by that moment of its own
            wall clock (times `speed`), so the race runs in real time and each column's clock stops
            when it finishes; "step" shows step j of every run in frame j (len = longest + 1 frames).
        frame_ms: how long each frame shows; final_ms: how long the last one is held.
        speed: "time" only: sampling seconds per second of animation (2.0 plays twice as fast).
        width: width of each column in pixels.
    """
    _check_durations(frame_ms, final_ms)
    check_alignment(align)
    titles = check_titles(traces, titles)
    renderers = [FrameRenderer(trace, row, width, mode, style, title) for trace, title in zip(traces, titles)]
    if align == "step":
        ticks, clocks = step_ticks(traces), None
    else:
        ticks = time_ticks(traces, _race_times(traces, frame_ms, speed))
        clocks = [trace.seconds for trace in traces]  # each column's clock stops at its finish

    def draw(index: int) -> Image.Image:
        return _race_frame(renderers, ticks[index], clocks)

    return _save_gif(draw, _durations(len(ticks), frame_ms, final_ms), path)


def _race_frame(renderers: list[FrameRenderer], tick: Tick, finishes: list[float] | None) -> Image.Image:
    """The columns at one tick; with `finishes`, each counter shows the race clock up to its finish."""
    columns = []
    for index, (renderer, frame) in enumerate(zip(renderers, tick.frames)):
        seconds = None if finishes is None else min(tick.time, finishes[index])
        columns.append(renderer.draw(frame, seconds))
    return hstack(columns)


def _race_times(traces: list[Trace], frame_ms: int, speed: float) -> list[float]:
    """The clock time of every frame of a real-time race: one per frame_ms of animation."""
    if speed <= 0:
        raise ValueError(f"speed must be positive, got {speed}")
    interval = frame_ms / 1000 * speed  # sampling seconds per frame
    duration = race_duration(traces)
    if duration / interval + 1 > MAX_RACE_FRAMES:
        needed = duration / ((MAX_RACE_FRAMES - 1) * frame_ms / 1000)
        raise ValueError(
            f"a {duration:.1f} s race at speed {speed} and frame_ms {frame_ms} needs more than "
            f"{MAX_RACE_FRAMES} frames; pass speed >= {needed:.2f}, a larger frame_ms, or align='step'"
        )
    return uniform_times(duration, interval)


def _check_durations(frame_ms: int, final_ms: int) -> None:
    if frame_ms <= 0 or final_ms <= 0:
        raise ValueError(f"frame_ms and final_ms must be positive, got {frame_ms} and {final_ms}")


def _durations(count: int, frame_ms: int, final_ms: int) -> list[int]:
    """Milliseconds per frame: frame_ms each, the last held final_ms."""
    return [frame_ms] * (count - 1) + [final_ms]


def _save_gif(draw: Callable[[int], Image.Image], durations: list[int], path: str | Path) -> Path:
    """A looping GIF of the frames draw(0), draw(1), ..., one per duration (milliseconds).

    Frames are drawn one at a time and kept only as palette indices. All frames share one palette
    (no colour flickers between frames) with index TRANSPARENT kept free: after the first frame,
    every pixel equal to the previous frame's becomes transparent, and with disposal 1 (draw over the
    previous frame) viewers keep the old pixel. Long transparent runs compress far better than
    redrawn text; Pillow's optimize=True does the same, but several times slower.
    """
    path = Path(path)
    count = len(durations)
    quantize = _Quantizer(_palette_colours(draw(0), draw(count - 1)))
    frames = (quantize(draw(index)) for index in range(count))
    first = next(frames)
    first_image = quantize.image(first)
    first_image.save(
        path,
        save_all=True,
        append_images=_only_changes(first, frames, quantize),
        duration=durations,
        loop=0,
        optimize=False,
        disposal=1,
        transparency=TRANSPARENT,
    )
    return path


def _palette_colours(first: Image.Image, last: Image.Image) -> np.ndarray:
    """(N, 3) colours, N <= TRANSPARENT, that suit every frame: the SWATCH (every background, box and
    text colour), then the commonest other colours of the first and last frames (mostly the
    anti-aliased edges of text)."""
    source = Image.new("RGB", (first.width, first.height + last.height))
    source.paste(first, (0, 0))
    source.paste(last, (0, first.height))
    blends = source.quantize(colors=TRANSPARENT - len(SWATCH), method=Image.Quantize.MEDIANCUT)
    exact = np.array([ImageColor.getrgb(colour) for colour in SWATCH], dtype=np.uint8)
    return np.concatenate([exact, np.array(blends.getpalette(), dtype=np.uint8).reshape(-1, 3)])


class _Quantizer:
    """Maps RGB frames to indices into a fixed list of colours: exactly where a colour is in the list,
    else to the nearest. (Pillow's quantize(palette=...) looks colours up in a coarse cache, which
    turns pure white into (252, 252, 252).) Each distinct colour is matched once, then looked up."""

    def __init__(self, colours: np.ndarray):
        self.colours = colours  # (N, 3) uint8
        self._index = np.full(1 << 24, -1, dtype=np.int16)  # 0xBBGGRR -> palette index, -1: not matched yet

    def __call__(self, image: Image.Image) -> np.ndarray:
        """(H, W) uint8 palette indices of an RGB image."""
        rgba = np.frombuffer(image.convert("RGBA").tobytes(), dtype="<u4")  # (H*W,) 0xAABBGGRR
        keys = rgba & 0xFFFFFF
        indices = self._index[keys]
        if (indices < 0).any():
            self._match(np.unique(keys[indices < 0]))
            indices = self._index[keys]
        return indices.astype(np.uint8).reshape(image.height, image.width)

    def _match(self, keys: np.ndarray) -> None:
        """Find the nearest palette colour for each new 0xBBGGRR key."""
        pixels = np.stack([keys & 0xFF, (keys >> 8) & 0xFF, keys >> 16], axis=1).astype(np.int32)  # (M, 3)
        distances = ((pixels[:, None, :] - self.colours[None].astype(np.int32)) ** 2).sum(-1)  # (M, N)
        self._index[keys] = distances.argmin(axis=1)

    def image(self, indices: np.ndarray) -> Image.Image:
        """A "P" image of palette indices, with this palette."""
        image = Image.fromarray(indices, mode="P")
        image.putpalette(self.colours.tobytes())
        return image


def _only_changes(first: np.ndarray, frames: Iterator[np.ndarray], quantize: _Quantizer) -> Iterator[Image.Image]:
    """Each of `frames` (palette indices) as an image, with what equals the frame before transparent."""
    previous = first
    for frame in frames:
        changes = frame.copy()
        changes[frame == previous] = TRANSPARENT
        yield quantize.image(changes)
        previous = frame


def _save_mp4(draw: Callable[[int], Image.Image], repeats: list[int], path: str | Path, fps: float) -> Path:
    """An h264 MP4 showing draw(i) for repeats[i] video frames."""
    path = Path(path)
    with _video_writer(path, fps) as writer:
        for index, count in enumerate(repeats):
            pixels = np.asarray(_pad_to_multiple(draw(index), MACRO_BLOCK))  # (H, W, 3) uint8
            for _ in range(count):
                writer.append_data(pixels)
    return path


def _video_writer(path: Path, fps: float):
    """imageio's ffmpeg writer, or a RuntimeError that says what to install."""
    try:
        import imageio.v2 as imageio
    except ImportError as error:
        raise RuntimeError("to_mp4 needs imageio and imageio-ffmpeg: pip install imageio imageio-ffmpeg") from error
    try:
        import imageio_ffmpeg  # noqa: F401  (the ffmpeg binary imageio drives)
    except ImportError as error:
        raise RuntimeError("to_mp4 needs the ffmpeg binary from imageio-ffmpeg: pip install imageio-ffmpeg") from error
    return imageio.get_writer(
        path,
        format="FFMPEG",
        mode="I",
        fps=fps,
        codec="libx264",
        pixelformat="yuv420p",  # what every player decodes
        quality=VIDEO_QUALITY,
        macro_block_size=MACRO_BLOCK,
        ffmpeg_log_level="error",
    )


def _pad_to_multiple(image: Image.Image, multiple: int) -> Image.Image:
    """`image` centred on a background whose sides are multiples of `multiple`."""
    width = -(-image.width // multiple) * multiple  # round up
    height = -(-image.height // multiple) * multiple
    if (width, height) == image.size:
        return image
    padded = Image.new("RGB", (width, height), BACKGROUND)
    padded.paste(image, ((width - image.width) // 2, (height - image.height) // 2))
    return padded
