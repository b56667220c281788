"""Giving memory back. A request allocates and frees tens of megabytes of tensors (logits, canvases,
rendered frames); glibc keeps freed heap pages for reuse, per thread arena, so the server's resident
memory ratchets up with every new worker thread and burst of requests although nothing is retained.
`release_memory` returns the free pages to the system; the server's lifespan calls it every minute and
whenever the queue goes idle after work (`webapp.files.lifespan`)."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from functools import cache


@cache
def _libc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


def release_memory() -> bool:
    """Collect garbage, then hand the allocator's free pages back to the OS (glibc's malloc_trim).
    Returns whether any memory was released (False where the C library has no malloc_trim)."""
    gc.collect()
    libc = _libc()
    return bool(libc.malloc_trim(0)) if libc is not None else False
