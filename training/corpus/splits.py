"""The split rule shared by every corpus: `dedupe_key`, `split_of`, deduplication, whitespace."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

SPLITS = ("train", "validation", "test")


def dedupe_key(text: str) -> str:
    """sha1 (hex) of the text lowercased with every character that is not a letter or digit removed.

    Texts with the same key are the same text: "Hello, World!" and "hello world" share one.
    """
    kept = "".join(ch for ch in text.lower() if ch.isalnum())
    return hashlib.sha1(kept.encode("utf-8")).hexdigest()


def split_of(text: str) -> str:
    """The split a text belongs to: int(dedupe_key, 16) % 10 == 0 test, == 1 validation, else train."""
    return _split_of_key(dedupe_key(text))


def _split_of_key(key: str) -> str:
    bucket = int(key, 16) % 10
    return "test" if bucket == 0 else "validation" if bucket == 1 else "train"


def normalize_whitespace(text: str) -> str:
    """One line: every run of whitespace (newlines included) becomes one space; ends stripped."""
    return " ".join(text.split())


def _split_dedupe(items: Iterable, text_of=lambda item: item) -> tuple[dict[str, list], int]:
    """Items by split (the first item of each dedupe key kept, in order) and the number dropped."""
    seen: set[str] = set()
    by_split: dict[str, list] = {s: [] for s in SPLITS}
    dropped = 0
    for item in items:
        key = dedupe_key(text_of(item))
        if key in seen:
            dropped += 1
            continue
        seen.add(key)
        by_split[_split_of_key(key)].append(item)
    return by_split, dropped
