"""The cache of built corpora: where it lives, finding a finished build, publishing a new one."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

from training.corpus.fetch import sha256_of

FORMAT_VERSION = 1  # bump when the parsing changes, so cached builds are rebuilt


def default_cache_dir() -> Path:
    """$DLM_CACHE, else ~/.cache/dlm/corpus."""
    return Path(os.environ.get("DLM_CACHE") or Path.home() / ".cache" / "dlm" / "corpus")


def _cached(out_dir: Path, options: dict, names: list[str]) -> dict | None:
    """The manifest of a finished build whose options match and whose files (`names`) match their sha256."""
    try:
        manifest = json.loads((out_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("format") != FORMAT_VERSION or manifest.get("options") != options:
        return None
    if sorted(manifest.get("files", {})) != sorted(names):
        return None
    for name, expected in manifest.get("files", {}).items():
        path = out_dir / name
        if not path.is_file() or sha256_of(path) != expected:
            print(f"{path} is missing or changed: rebuilding", file=sys.stderr)
            return None
    return manifest


def _publish(out_dir: Path, files: dict[str, bytes], manifest: dict) -> None:
    """Write the files and manifest into a fresh folder, then move it into place."""
    partial = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for name, data in files.items():
        (partial / name).write_bytes(data)
    manifest["files"] = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    (partial / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    partial.rename(out_dir)


def _source_entry(name: str, fetched: Path, texts: list[str] | None = None, **extra) -> dict:
    """A manifest entry for one source: the file fetched, its sha256, and what it gave."""
    entry = {"name": name, "file": fetched.name, "sha256": sha256_of(fetched), **extra}
    if texts is not None:
        entry.update(examples=len(texts), words=sum(len(t.split()) for t in texts))
    return entry
