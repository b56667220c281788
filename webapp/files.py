"""The one folder the app writes to (and the only extra path Gradio may serve), one subfolder per request.

It lies inside Gradio's own cache folder, so Gradio serves the files where they are instead of copying
each one into its cache (every file used to be stored twice). Gradio deletes only the copies it made,
so the app removes its own files: a request's folder once it is OUTPUT_TTL_SECONDS old (checked at
every new request and every SWEEP_SECONDS while the app runs), and the whole folder as soon as the app is
asked to stop (`close`), before the server waits for its clients to disconnect: a shutdown that never
finishes (clients that stay connected, a second signal, a kill) still leaves nothing behind. At start it
removes what an earlier app process left there if that process was killed (`remove_leftovers`).
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
IDLE_CHECK_SECONDS = 2  # how often it checks whether the queue went idle (then it gives memory back)
_PREFIX = "dlm-app-"  # then the process id: an earlier process's folder is removed once that process is gone
_closing = False  # set by `close`: no new request folders once shutdown has begun


@cache
def _root() -> Path:
    from gradio.utils import get_upload_folder

    root = Path(get_upload_folder()) / f"{_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
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


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_leftovers() -> int:
    """Remove the output folders of earlier app processes that are no longer running (killed before they
    could clean up); returns how many were removed. Folders of apps still running are kept."""
    removed = 0
    for folder in _root().parent.glob(f"{_PREFIX}*"):
        pid = folder.name[len(_PREFIX):].split("-")[0]
        if folder != _root() and folder.is_dir() and pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


def close() -> None:
    """The process is shutting down (`webapp.page.serve`): remove every output now and refuse new
    request folders from here on."""
    global _closing
    _closing = True
    remove_outputs()


def request_dir() -> Path:
    """A fresh subfolder for one request's files; folders older than OUTPUT_TTL_SECONDS are removed."""
    if _closing:
        import gradio as gr

        raise gr.Error("The app is shutting down; try again in a minute.")
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


def _activity(app) -> tuple[int, bool]:
    """(requests the app's queue has taken so far, whether one is waiting or running now)."""
    blocks = getattr(app, "get_blocks", lambda: None)()
    queue = getattr(blocks, "_queue", None)
    if queue is None:
        return 0, False
    waiting = any(events.queue for events in queue.event_queue_per_concurrency_id.values())
    return queue.events_recorded, waiting or any(job is not None for job in queue.active_jobs)


@asynccontextmanager
async def lifespan(app):
    """The server's lifespan (FastAPI): at start, remove what killed earlier processes left; every
    SWEEP_SECONDS, sweep expired request folders and give freed memory back (`webapp.memory`), and
    give it back as soon as the queue goes idle after work (checked every IDLE_CHECK_SECONDS), so an
    idle Space holds no more than it needs; remove every output when it stops."""

    from webapp.memory import release_memory

    remove_leftovers()

    async def housekeeping():
        released_at, last_sweep = _activity(app)[0], time.monotonic()
        while True:
            await asyncio.sleep(IDLE_CHECK_SECONDS)
            taken, busy = _activity(app)
            due = time.monotonic() - last_sweep >= SWEEP_SECONDS
            if due:
                sweep()
                last_sweep = time.monotonic()
            if due or (taken != released_at and not busy):  # every minute, and once idle after work
                await asyncio.to_thread(release_memory)
                released_at = taken

    task = asyncio.create_task(housekeeping())
    try:
        yield
    finally:
        task.cancel()
        remove_outputs()
