"""The one folder the app writes to (and the only extra path Gradio may serve), one subfolder per request.

It lies inside Gradio's own cache folder, so Gradio serves the files where they are instead of copying
each one into its cache (every file used to be stored twice). Gradio deletes only the copies it made,
so the app removes its own files: a request's folder once it is OUTPUT_TTL_SECONDS old (checked at
every new request and every SWEEP_SECONDS while the app runs), and the whole folder when the app stops.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import asynccontextmanager, contextmanager
from functools import cache
from pathlib import Path

from webapp.settings import OUTPUT_TTL_SECONDS

SWEEP_SECONDS = 60  # how often a running app looks for expired request folders


@cache
def _root() -> Path:
    from gradio.utils import get_upload_folder

    root = Path(get_upload_folder()) / f"dlm-app-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    atexit.register(remove_outputs)  # also when the process ends without the server's shutdown
    return root


def output_dir() -> Path:
    """The one folder this app writes to (and the only extra path Gradio may serve), inside Gradio's cache."""
    root = _root()
    root.mkdir(parents=True, exist_ok=True)
    return root


def sweep(now: float | None = None) -> int:
    """Remove request folders older than OUTPUT_TTL_SECONDS; returns how many were removed."""
    root = _root()
    if not root.is_dir():
        return 0
    cutoff = (now or time.time()) - OUTPUT_TTL_SECONDS
    removed = 0
    for old in root.iterdir():
        if old.is_dir() and old.stat().st_mtime < cutoff:
            shutil.rmtree(old, ignore_errors=True)
            removed += 1
    return removed


def remove_outputs() -> None:
    """Remove every file this app wrote (at shutdown)."""
    shutil.rmtree(_root(), ignore_errors=True)


def request_dir() -> Path:
    """A fresh subfolder for one request's files; folders older than OUTPUT_TTL_SECONDS are removed."""
    root = output_dir()
    sweep()
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


@asynccontextmanager
async def lifespan(app):
    """The server's lifespan (FastAPI): every SWEEP_SECONDS, sweep expired request folders and give freed
    memory back (`webapp.memory`); remove every output when it stops."""

    from webapp.memory import release_memory

    async def sweeping():
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            sweep()
            await asyncio.to_thread(release_memory)

    task = asyncio.create_task(sweeping())
    try:
        yield
    finally:
        task.cancel()
        remove_outputs()
