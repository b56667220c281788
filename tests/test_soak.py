"""A short soak in CI: the app in its own process (bundled models), 20 client sessions through mixed
requests (some cancelled, some malformed). Every request ends, none fails, memory stays bounded with a
generous margin, and nothing is left on disk after shutdown. The full soak is `bench/soak.py`."""

from __future__ import annotations

import sys

import pytest

from bench import soak
from webapp.memory import release_memory


def test_a_short_soak_ends_every_request_and_stays_bounded():
    report = soak.soak(clients=4, requests=20, sessions_cap=None, timeout=300, settle=2, threads=1)
    assert sum(report["outcomes"].values()) == 20
    assert not [o for o in report["outcomes"] if o.startswith(("failure", "hang"))], report["failures"]
    assert report["outcomes"].get("ok", 0) >= 8
    assert report["rss_mb"]["end_over_warm_up"] < 1.5, report["rss_mb"]
    assert report["files"]["after_shutdown"] == 0


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's malloc_trim")
def test_freed_memory_is_given_back():
    """Many small tensors freed stay resident (glibc keeps the heap pages) until release_memory."""
    import os

    import torch

    pid = os.getpid()
    tensors = [torch.empty(512) for _ in range(40_000)]  # 2 KB each, 80 MB, below the mmap threshold
    tensors = tensors[-1:]  # free all but the last (which pins the top of the heap the others sit under)
    before = soak.rss_mb(pid)
    assert release_memory() is True
    assert before - soak.rss_mb(pid) > 40
