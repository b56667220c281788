"""The World English Bible (`sword-text-web`): a SWORD zText module of OSIS entries, grouped into passages."""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

from training.corpus.splits import normalize_whitespace

BIBLE_MODULE = "usr/share/sword/modules/texts/ztext/engWEB2015eb"  # {ot,nt}.{bzs,bzv,bzz}
BIBLE_MIN_WORDS = 40  # short paragraphs ("He said,") are joined to the next one in the chapter
BIBLE_MAX_VERSES = 10  # long paragraphs and poems are cut into passages of at most this many verses


def read_ztext(module_dir: Path, testament: str) -> Iterator[str]:
    """Every entry of one testament ('ot' or 'nt') of a SWORD zText module, in order, as OSIS text.

    `.bzs`: one little-endian (offset, size, uncompressed size) `<III` per zlib block of `.bzz`;
    `.bzv`: one (block, offset, size) `<IIH` per entry: module, testament, book and chapter headings
    and verses, in versification order. Empty entries are yielded as ''.
    """
    bzs, bzv, bzz = (module_dir.joinpath(f"{testament}.{ext}").read_bytes() for ext in ("bzs", "bzv", "bzz"))
    blocks = list(struct.iter_unpack("<III", bzs))
    cache: dict[int, bytes] = {}
    for block, offset, size in struct.iter_unpack("<IIH", bzv):
        if size == 0:
            yield ""
            continue
        if block not in cache:
            start, length, uncompressed = blocks[block]
            cache = {block: zlib.decompress(bzz[start : start + length])}  # entries come block by block
            if len(cache[block]) != uncompressed:
                where = f"{module_dir}/{testament}.bzz block {block}"
                raise ValueError(f"{where}: {len(cache[block])} bytes uncompressed, the .bzs index says {uncompressed}")
        yield cache[block][offset : offset + size].decode("utf-8")


# Sentinels that survive tag stripping: chapter start, paragraph start, verse end, note.
_CHAPTER, _PARAGRAPH, _VERSE, _NOTE = "\x1c", "\x1d", "\x1e", "\x1f"
_BOOK_HEADER = re.compile(r'<div\b(?=[^>]*\bsID=)(?=[^>]*\btype="(?:book|front|introduction|glossary)")[^>]*>')
_OSIS_NOTE = re.compile(r"<note\b.*?</note>", re.S)
_OSIS_HEADING = re.compile(r"<(title|speaker)\b[^>]*>.*?</\1>", re.S)  # section titles, psalm titles, speakers
_OSIS_CHAPTER = re.compile(r"<chapter\b[^>]*\bsID=[^>]*>")
_OSIS_PARAGRAPH = re.compile(r'<(?:div\b(?=[^>]*\bsID=)(?=[^>]*type="x-p")|lg\b(?=[^>]*\bsID=))[^>]*>')
_OSIS_INLINE = re.compile(r"</?(?:w|name|seg|q|rdg|reference|transChange|hi|foreign|divineName)\b[^>]*>")
_OSIS_TAG = re.compile(r"<[^>]*>")


def osis_to_text(entry: str) -> str:
    """Plain text of one OSIS entry: notes, titles, tags removed; chapter and paragraph starts as sentinels."""
    text = _OSIS_NOTE.sub(_NOTE, entry)
    text = _OSIS_HEADING.sub(" ", text)
    text = _OSIS_CHAPTER.sub(_CHAPTER, text)
    text = _OSIS_PARAGRAPH.sub(_PARAGRAPH, text)
    text = _OSIS_INLINE.sub("", text)  # word-level markup: <w>God</w>’s must stay one word
    text = _OSIS_TAG.sub(" ", text)  # line and block markup: a space
    # A note sat between two words (God<note/>created) or before punctuation (Christ<note/>,).
    text = re.sub(_NOTE + r"+(?=[\s,.;:!?’”)\]]|$)", "", text)
    return text.replace(_NOTE, " ")


def bible_passages(
    entries: Iterable[str], min_words: int = BIBLE_MIN_WORDS, max_verses: int = BIBLE_MAX_VERSES
) -> list[str]:
    """Group verses into passages that read like prose.

    Passages follow the translation's paragraphs (and poem stanzas) inside each chapter; a paragraph
    shorter than `min_words` is joined to the next, one longer than `max_verses` verses is cut.
    Book introductions and front matter are left out.
    """
    stream = _VERSE.join(osis_to_text(e) for e in entries if not _BOOK_HEADER.search(e))
    passages = []
    for chapter in stream.split(_CHAPTER):
        first = len(passages)  # this chapter's first passage
        pending: list[str] = []  # verses of the passage being built
        for paragraph in chapter.split(_PARAGRAPH):
            for verse in filter(None, map(normalize_whitespace, paragraph.split(_VERSE))):
                pending.append(verse)
                if len(pending) == max_verses:
                    passages.append(" ".join(pending))
                    pending = []
            if pending and len(" ".join(pending).split()) >= min_words:
                passages.append(" ".join(pending))
                pending = []
        if pending and len(passages) > first:  # a short end of chapter joins the passage before it
            passages[-1] += " " + " ".join(pending)
        elif pending:
            passages.append(" ".join(pending))
    return passages


def _bible(package_root: Path) -> list[str]:
    module = package_root / BIBLE_MODULE
    return bible_passages(entry for testament in ("ot", "nt") for entry in read_ztext(module, testament))
