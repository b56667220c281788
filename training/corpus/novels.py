"""The novels: Jane Austen's six (`r-cran-janeaustenr`) and Moby Dick (`r-cran-tokenizers`).

Both ship as R lazy-load data (`read_lazyload`); the text is cut into paragraphs without headings.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import re
import zlib
from collections.abc import Iterable
from pathlib import Path

from training.corpus.splits import normalize_whitespace

AUSTEN_DATA = "usr/lib/R/site-library/janeaustenr/data/Rdata"  # lazy-load pair Rdata.rdx / Rdata.rdb
MOBYDICK_DATA = "usr/lib/R/site-library/tokenizers/data/Rdata"
AUSTEN_NOVELS = ("sensesensibility", "prideprejudice", "mansfieldpark", "emma", "northangerabbey", "persuasion")


# ------------------------------------------------------------------------------ R lazy-load data


def read_lazyload(base: Path) -> dict[str, object]:
    """Every object in an R lazy-load database `base.rdx` + `base.rdb`, converted by `rdata`.

    The .rdx is a gzip-compressed R serialization of list(variables = name -> c(offset, length),
    references, compressed). Each record of the .rdb is the serialized object itself for
    compressed = FALSE (0); for TRUE (1) a 4-byte big-endian uncompressed length and a zlib stream;
    for 2 and 3 the length, a type byte ('Z' xz, '2' bzip2, '1' zlib, '0' stored) and the data, as
    in R's serialize.c (R_decompress1/2/3). Each object is an ordinary R serialization (rdata).
    """
    import rdata  # heavy (pandas, xarray): imported only when a corpus is built

    def unserialize(raw: bytes) -> object:
        return rdata.conversion.convert(rdata.parser.parse_data(raw, extension=".rds"))

    index = unserialize(gzip.decompress(base.with_suffix(".rdx").read_bytes()))
    compressed = int(index["compressed"][0])
    blob = base.with_suffix(".rdb").read_bytes()
    objects = {}
    for name, (offset, length) in index["variables"].items():
        record = blob[int(offset) : int(offset) + int(length)]
        if compressed == 0:
            raw = record
        elif compressed == 1:
            raw = zlib.decompress(record[4:])
        else:
            kind, body = record[4:5], record[5:]
            decompress = {b"Z": lzma.decompress, b"2": bz2.decompress, b"1": zlib.decompress, b"0": bytes}
            if kind not in decompress:
                raise ValueError(f"{base}.rdb: record {name!r} has unknown compression type {kind!r}")
            raw = decompress[kind](body)
        objects[str(name)] = unserialize(raw)
    return objects


# ------------------------------------------------------------------------------ novels

# "CHAPTER I", "Chapter 12", "VOLUME II", "CHAPTER 32. Cetology." (short lines only; see is_heading)
_HEADING = re.compile(r"(CHAPTER|Chapter|VOLUME|Volume|BOOK|Book)\s+([IVXLCDM]+|\d+)(\.|\.\s.*)?|Epilogue")
_END_OF_NOVEL = {"the end", "finis", "a note on the text"}  # Northanger Abbey ends with an editor's note


def is_heading(paragraph: str) -> bool:
    """A chapter or volume heading, a title, or a table: short 'CHAPTER ...' lines, or no lowercase letter."""
    short_heading = len(paragraph.split()) <= 12 and _HEADING.fullmatch(paragraph) is not None
    return short_heading or not any(ch.islower() for ch in paragraph)


def unwrap_paragraphs(lines: Iterable[str]) -> list[str]:
    """Join hard-wrapped lines into paragraphs; blank lines separate paragraphs."""
    paragraphs, current = [], []
    for line in list(lines) + [""]:
        if line.strip():
            current.append(line.strip())
        elif current:
            paragraphs.append(normalize_whitespace(" ".join(current)))
            current = []
    return paragraphs


def novel_paragraphs(lines: Iterable[str]) -> list[str]:
    """The paragraphs of a novel: from its first chapter heading to 'THE END', without headings.

    Title pages, prefaces and (Moby Dick) the etymology and extracts come before the first chapter.
    """
    paragraphs = unwrap_paragraphs(lines)
    start = next((i for i, p in enumerate(paragraphs) if _HEADING.fullmatch(p)), 0)
    kept = []
    for paragraph in paragraphs[start:]:
        if paragraph.lower().strip(".") in _END_OF_NOVEL:
            break
        if not is_heading(paragraph):
            kept.append(paragraph)
    return kept


def mobydick_paragraphs(text: str) -> list[str]:
    """Moby Dick's paragraphs (one CRLF string), from CHAPTER 1 to the end of the Project Gutenberg text."""
    end = text.find("End of Project Gutenberg")
    if end < 0:
        raise ValueError("Moby Dick text lacks the 'End of Project Gutenberg' marker")
    return novel_paragraphs(text[:end].replace("\r\n", "\n").split("\n"))


# ------------------------------------------------------------------------------ readers of the unpacked packages


def _austen(package_root: Path) -> list[str]:
    novels = read_lazyload(package_root / AUSTEN_DATA)
    return [p for name in AUSTEN_NOVELS for p in novel_paragraphs(str(line) for line in novels[name])]


def _moby_dick(package_root: Path) -> list[str]:
    return mobydick_paragraphs(str(read_lazyload(package_root / MOBYDICK_DATA)["mobydick"][0]))
