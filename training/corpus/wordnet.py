"""WordNet's example sentences (`wordnet-base`), an optional part of the prose corpus."""

from __future__ import annotations

import re
from pathlib import Path

from training.corpus.splits import normalize_whitespace

WORDNET_DICT = "usr/share/wordnet"  # data.{noun,verb,adj,adv}


def wordnet_examples(dict_dir: Path) -> list[str]:
    """WordNet's quoted example sentences: `offset lex ss_type ... | gloss; "example"; "example"`."""
    examples = []
    for pos in ("noun", "verb", "adj", "adv"):
        for line in (dict_dir / f"data.{pos}").read_text(encoding="utf-8").splitlines():
            if line.startswith("  ") or "|" not in line:  # the licence header
                continue
            examples += [normalize_whitespace(e) for e in re.findall(r'"([^"]+)"', line.split("|", 1)[1])]
    return [e for e in examples if e]


def _wordnet(package_root: Path) -> list[str]:
    return wordnet_examples(package_root / WORDNET_DICT)
