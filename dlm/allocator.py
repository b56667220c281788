"""Keep freed memory in the process for the next allocation instead of handing it back to the kernel.

On the CPU, PyTorch and NumPy allocate a fresh buffer for almost every intermediate result. glibc's
malloc serves a block above its mmap threshold (128 KiB at start, raised as large blocks are freed)
straight from the kernel and unmaps it again on free, and it trims the top of its heap as soon as
more than twice that lies free there; so a denoising step, which makes a few dozen temporaries of tens
to hundreds of KiB (a (16, 4,096) float32 array is 256 KiB), pays a page fault for every 4 KiB of
each, every step. PyTorch's CPU tuning guides fix this with jemalloc or tcmalloc (`LD_PRELOAD`); the
same effect without a second allocator is two `mallopt` settings: serve blocks up to 32 MiB from the
heap (glibc's own threshold never rises above that on 64-bit), and trim the heap only when 256 MiB lie
free at its top. Memory then stays near its peak rather than falling back after each step.

`keep_freed_memory()` is called by the app, the `dlm` command line and the timing benchmarks; a
program that imports `dlm` decides for itself (the library changes no process-wide setting on import).
On anything but glibc (macOS, musl, Windows) it does nothing and says so.
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # the most glibc's dynamic threshold reaches on 64-bit
TRIM_THRESHOLD = 256 * 1024 * 1024


def keep_freed_memory(mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Set glibc's mmap and trim thresholds (see the module's docstring). True when both were set; False
    where the C library is not glibc or refuses a value (nothing is changed then, or only the first)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # no mallopt: not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(M_TRIM_THRESHOLD, trim_threshold))
