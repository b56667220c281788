"""The one folder the app writes to (and the only extra path Gradio may serve), one subfolder per request."""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from webapp.settings import OUTPUT_TTL_SECONDS


@cache
def output_dir() -> Path:
    """The one folder this app writes to (and the only extra path Gradio may serve)."""
    return Path(tempfile.mkdtemp(prefix="dlm-app-"))


def request_dir() -> Path:
    """A fresh subfolder for one request's files; folders older than OUTPUT_TTL_SECONDS are removed."""
    root = output_dir()
    cutoff = time.time() - OUTPUT_TTL_SECONDS
    for old in root.iterdir():
        if old.is_dir() and old.stat().st_mtime < cutoff:
            shutil.rmtree(old, ignore_errors=True)
    folder = root / uuid.uuid4().hex[:12]
    folder.mkdir()
    return folder


@contextmanager
def request_folder() -> Iterator[Path]:
    """`request_dir()` for one request's files, removed again if the request fails: half-written files are
    never served, and a failed request leaves nothing behind."""
    folder = request_dir()
    try:
        yield folder
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
