"""Pillow drawings of a trace, one image per frame: what the GIF and MP4 writers animate.

Every frame of a trace has the same size and the same layout, that of the final text:

    model · masked diffusion                           <- title
    step 12/32 · NFE 12 · 1.25 s           63% decided <- counter
    ███████████████████░░░░░░░░░░░                     <- progress: generated positions decided
    The cat [  ] on the [   ] [ ] mat                  <- canvas, wrapped; [  ]: grey box, undecided

Text is drawn with Pillow's bundled font by default, so nothing has to be installed or downloaded.
That font covers ASCII only: other characters are transliterated where Unicode allows ("é" -> "e",
"—" -> "-") and drawn as "?" otherwise. Pass `FrameStyle(font_path=...)` for a font with wider coverage.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import cache

from PIL import Image, ImageDraw, ImageFont

from dlm.render.palette import (
    BACKGROUND,
    BAR_FILL,
    BAR_TRACK,
    COLOR_MAP,
    DIVIDER,
    MUTED,
    NEW_OUTLINE,
    PROMPT_TEXT,
    TEXT,
    check_mode,
    label,
)
from dlm.render.snapshot import MASKED, NEW, PROMPT, Cell, Snapshot, counter_text, default_title, snapshots
from dlm.trace import Trace

MISSING_GLYPH = "?"  # drawn for a character the font cannot draw and Unicode cannot simplify
PROBE = "\U0010ffff"  # a noncharacter: every font draws its "missing glyph" box for it
ELLIPSIS = "..."  # ends a title cut to fit the width
COLUMN_GAP = 40  # pixels between side-by-side columns, a divider line in the middle


@dataclass(frozen=True)
class FrameStyle:
    """Typography and spacing of a frame, in pixels (its width and colouring mode are arguments)."""

    font_size: int = 18  # canvas text
    title_size: int = 22  # title line
    counter_size: int = 15  # step counter and percentage decided
    font_path: str | None = None  # a TrueType/OpenType font file or name (e.g. "DejaVuSans.ttf"); None: Pillow's own
    margin: int = 20  # blank border around the frame
    gap: int = 8  # vertical space between title, counter, progress bar and canvas
    line_spacing: int = 6  # extra space between canvas lines
    box_pad: int = 2  # padding around a token's text inside its coloured box
    mask_width: int = 22  # width of the grey box that stands for an undecided position
    mask_gap: int = 3  # blank space either side of a mask box
    radius: int = 4  # corner radius of token boxes and the progress bar
    bar_height: int = 8  # progress bar thickness
    outline: int = 2  # width of the outline marking this step's tokens in "confidence" mode


@dataclass(frozen=True)
class _Box:
    """A slot of the canvas: where (part of) one position's text goes, the same in every frame."""

    line: int  # 0-based canvas line
    x: int  # left edge in pixels
    width: int  # in pixels, padding included
    text: str  # the part of the position's final text it holds ("" for a mask-sized blank)


class FrameRenderer:
    """Draws the frames of one sample of a trace as equally sized RGB images.

    Frame 0 is the initial canvas, frame k the canvas after step k (len(renderer) == len(trace.steps) + 1).
    The canvas is laid out once, from the final frame: every position keeps its place in every frame,
    so tokens appear where they will stay and the text never jumps. An undecided position is a grey
    box the size of the token it becomes (of `style.mask_width` if it is still undecided at the end).
    """

    def __init__(
        self,
        trace: Trace,
        row: int = 0,
        width: int = 800,
        mode: str = "state",
        style: FrameStyle = FrameStyle(),
        title: str | None = None,
    ):
        check_mode(mode)
        smallest = 2 * style.margin + style.mask_width + 2 * style.mask_gap
        if width < smallest:
            raise ValueError(f"width {width} is too narrow; this style needs at least {smallest} pixels")
        self.width, self.mode, self.style = width, mode, style
        self.snapshots = list(snapshots(trace, row))
        self._text = _Typeface(style.font_path, style.font_size)
        self._title = _Typeface(style.font_path, style.title_size)
        self._counter = _Typeface(style.font_path, style.counter_size)
        self._left, self._right = style.margin, width - style.margin
        self.title = self._title.fit(default_title(trace) if title is None else title, self._right - self._left)

        self._box_height = self._text.height + 2 * style.box_pad
        self._line_height = self._box_height + style.line_spacing
        self._bar_top = style.margin + self._title.height + style.gap + self._counter.height + style.gap
        self._canvas_top = self._bar_top + style.bar_height + 2 * style.gap
        final = self.snapshots[-1].cells
        self._final_text = {cell.position: cell.text for cell in final}
        cursor = _Cursor(self._left, self._right)
        self._slots = {cell.position: self._place(cell, cursor) for cell in final}  # position -> its boxes
        self.size = (width, self._canvas_top + (cursor.line + 1) * self._line_height + style.margin)
        self._sprites: dict[tuple, Image.Image] = {}  # drawn boxes, reused across frames

    def __len__(self) -> int:
        return len(self.snapshots)

    def draw(self, frame: int, seconds: float | None = None) -> Image.Image:
        """Frame `frame` as an image; `seconds` replaces the clock in its counter (races show wall time)."""
        snapshot = self.snapshots[frame]
        image = Image.new("RGB", self.size, BACKGROUND)
        self._draw_header(ImageDraw.Draw(image), snapshot, seconds)
        for cell in snapshot.cells:
            boxes = self._slots[cell.position]
            for box, text in zip(boxes, self._box_texts(cell, boxes)):
                if not text and cell.state != MASKED:
                    continue  # a decided token with nothing to draw (" ", "\n"): leave its slot blank
                top = self._canvas_top + box.line * self._line_height
                image.paste(self._sprite(cell, box.width, text), (box.x, top))
        return image

    def _draw_header(self, draw: ImageDraw.ImageDraw, snapshot: Snapshot, seconds: float | None) -> None:
        """Title, step counter, percentage decided and progress bar."""
        style, left, right = self.style, self._left, self._right
        top = style.margin
        self._title.draw(draw, (left, top), self.title, TEXT)
        top += self._title.height + style.gap
        self._counter.draw(draw, (left, top), counter_text(snapshot, seconds), MUTED)
        self._counter.draw(draw, (right, top), f"{snapshot.progress:.0%} decided", MUTED, align_right=True)

        bar = (left, self._bar_top, right, self._bar_top + style.bar_height)
        draw.rounded_rectangle(bar, radius=style.radius, fill=BAR_TRACK)
        filled = round((right - left) * snapshot.progress)
        if filled > 0:
            radius = min(style.radius, filled // 2)  # a sliver of progress cannot have full round ends
            draw.rounded_rectangle((left, bar[1], left + filled, bar[3]), radius=radius, fill=BAR_FILL)

    def _box_texts(self, cell: Cell, boxes: tuple[_Box, ...]) -> list[str]:
        """What each box of a cell's slot shows in this frame."""
        if cell.state == MASKED:
            return [""] * len(boxes)
        if cell.text == self._final_text[cell.position]:
            return [box.text for box in boxes]
        # a token the sampler later replaced: all of it in the first box, cut at the box's edge
        return [self._text.clean(cell.text).replace("\n", " ").strip(" ")] + [""] * (len(boxes) - 1)

    def _sprite(self, cell: Cell, width: int, text: str) -> Image.Image:
        """A box `width` wide with `text` in the cell's colours (drawn once, then reused)."""
        fill = COLOR_MAP[self.mode].get(label(cell, self.mode))
        outline = NEW_OUTLINE if self.mode == "confidence" and cell.state == NEW else None  # colour shows confidence
        ink = PROMPT_TEXT if cell.state == PROMPT else TEXT
        key = (width, text, fill, outline, ink)
        if key not in self._sprites:
            style = self.style
            sprite = Image.new("RGB", (width, self._box_height), BACKGROUND)
            draw = ImageDraw.Draw(sprite)
            if fill or outline:
                corners = (0, 0, width - 1, self._box_height - 1)
                draw.rounded_rectangle(corners, radius=style.radius, fill=fill, outline=outline, width=style.outline)
            if text:
                self._text.draw(draw, (style.box_pad, style.box_pad), text, ink)
            self._sprites[key] = sprite
        return self._sprites[key]

    def _place(self, cell: Cell, cursor: _Cursor) -> tuple[_Box, ...]:
        """The boxes of one position, laid out from its final text. Leading and trailing spaces become
        blank advances (none at the start of a line), a newline starts a new line, a piece wider than a
        line is split, and a piece with nothing to draw (undecided, "", " ", "\n") gets a mask-sized
        box, so it stays visible while undecided."""
        style = self.style
        text = "" if cell.state == MASKED else self._text.clean(cell.text)
        if not text.strip():
            line, x = cursor.place(style.mask_width + 2 * style.mask_gap)
            for _ in range(text.count("\n")):
                cursor.newline()
            return (_Box(line, x + style.mask_gap, style.mask_width, ""),)

        boxes = []
        space = self._text.width(" ")
        for index, segment in enumerate(text.split("\n")):
            if index:
                cursor.newline()
            body = segment.strip(" ")
            cursor.space(space * (len(segment) - len(segment.lstrip(" "))))
            for chunk in self._text.split(body, cursor.right - cursor.left - 2 * style.box_pad):
                width = self._text.width(chunk) + 2 * style.box_pad
                line, x = cursor.place(width)
                boxes.append(_Box(line, x, width, chunk))
            if body:
                cursor.space(space * (len(segment) - len(segment.rstrip(" "))))
        return tuple(boxes)


class _Cursor:
    """Left-to-right placement between `left` and `right`, moving to a new line when a box would overflow."""

    def __init__(self, left: int, right: int):
        self.left, self.right = left, right
        self.x, self.line = left, 0

    def newline(self) -> None:
        self.x, self.line = self.left, self.line + 1

    def space(self, width: int) -> None:
        """Blank advance; none at the start of a line, where it would only indent."""
        if self.x > self.left:
            self.x += width

    def place(self, width: int) -> tuple[int, int]:
        """(line, x) for a box `width` wide, wrapping first unless it starts a line anyway."""
        if self.x + width > self.right and self.x > self.left:
            self.newline()
        position = (self.line, self.x)
        self.x += width
        return position


class _Typeface:
    """A font at one size, with what the layout needs: measuring, cleaning and drawing text."""

    def __init__(self, path: str | None, size: int):
        self.font = _load_font(path, size)
        ascent, descent = self.font.getmetrics()
        self.ascent, self.height = ascent, ascent + descent
        self._missing = _glyph(self.font, PROBE)
        self._widths: dict[str, int] = {}
        self._characters: dict[str, str] = {}

    def width(self, text: str) -> int:
        if text not in self._widths:
            self._widths[text] = round(self.font.getlength(text))
        return self._widths[text]

    def draw(
        self, draw: ImageDraw.ImageDraw, corner: tuple[int, int], text: str, fill: str, align_right: bool = False
    ) -> None:
        """Draw `text` with its line box's top at corner[1], starting (or ending) at corner[0]."""
        x, top = corner
        anchor = "rs" if align_right else "ls"  # right / left end, on the baseline
        draw.text((x, top + self.ascent), self.clean(text), font=self.font, fill=fill, anchor=anchor)

    def clean(self, text: str) -> str:
        """`text` with every character this font can draw: tabs and odd spaces become spaces, "\\r\\n"
        and "\\r" become "\\n", other control and format characters go, and characters outside the
        font are simplified (see _fallback)."""
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        return "".join(self._character(character) for character in text)

    def fit(self, text: str, width: int) -> str:
        """`text` cleaned and cut (with an ellipsis) to at most `width` pixels."""
        text = self.clean(text).replace("\n", " ")
        if self.width(text) <= width:
            return text
        while text and self.width(text + ELLIPSIS) > width:
            text = text[:-1]
        return text + ELLIPSIS

    def split(self, text: str, width: int) -> list[str]:
        """`text` as chunks of at most `width` pixels (single characters excepted), cut after a space
        where there is one, else anywhere; [] for ""."""
        chunks: list[str] = []
        while text:
            end = len(text)
            while end > 1 and self.width(text[:end]) > width:
                end -= 1
            if end < len(text) and " " in text[1:end]:
                end = text.rindex(" ", 1, end) + 1
            chunks.append(text[:end])
            text = text[end:]
        return chunks

    def _character(self, character: str) -> str:
        if character not in self._characters:
            self._characters[character] = self._fallback(character)
        return self._characters[character]

    def _fallback(self, character: str) -> str:
        if character == "\n":
            return character
        category = unicodedata.category(character)
        if category in ("Zs", "Zl", "Zp") or character == "\t":  # any space, and tabs
            return " "
        if category in ("Cc", "Cf"):  # control and zero-width format characters
            return ""
        if self._covers(character):
            return character
        # compatibility decomposition keeps the base letters: "é" -> "e" + accent, "ﬁ" -> "fi", "²" -> "2"
        simpler = "".join(c for c in unicodedata.normalize("NFKD", character) if not unicodedata.combining(c))
        if simpler and simpler != character and all(self._covers(c) for c in simpler):
            return simpler
        return _PUNCTUATION.get(character, MISSING_GLYPH)

    def _covers(self, character: str) -> bool:
        """Whether the font has a glyph for `character` (its drawing differs from the missing-glyph box)."""
        return _glyph(self.font, character) != self._missing


# typographic punctuation that NFKD leaves alone, as the ASCII it stands for
# fmt: off
_PUNCTUATION = {
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2015": "-", "\u2212": "-",
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"', "\u00ab": '"', "\u00bb": '"',
    "\u2022": "*", "\u00b7": "*", "\u2026": "...", "\u2192": "->", "\u2190": "<-",
}
# fmt: on


@cache
def _load_font(path: str | None, size: int) -> ImageFont.FreeTypeFont:
    """Pillow's bundled font (path None) or the given font file, at `size` pixels."""
    font = ImageFont.load_default(size=size) if path is None else ImageFont.truetype(path, size)
    if not isinstance(font, ImageFont.FreeTypeFont):
        raise RuntimeError("drawing frames needs Pillow built with FreeType (any Pillow wheel from PyPI has it)")
    return font


def _glyph(font: ImageFont.FreeTypeFont, character: str) -> tuple[tuple[int, int], bytes]:
    """The bitmap the font draws for `character`, comparable with ==."""
    mask = font.getmask(character)
    return mask.size, bytes(mask)


def hstack(images: list[Image.Image], gap: int = COLUMN_GAP) -> Image.Image:
    """Images side by side, top-aligned, with a divider line in the middle of each `gap`."""
    width = sum(image.width for image in images) + gap * (len(images) - 1)
    height = max(image.height for image in images)
    strip = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(strip)
    x = 0
    for index, image in enumerate(images):
        if index:
            draw.line((x - gap // 2, 0, x - gap // 2, height), fill=DIVIDER)
        strip.paste(image, (x, 0))
        x += image.width + gap
    return strip
