"""dlm.allocator: glibc's mmap and trim thresholds, set where glibc is the C library and left alone elsewhere."""

from __future__ import annotations

import platform
import sys

import numpy as np
import pytest

from dlm.allocator import keep_freed_memory


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_the_thresholds_are_set_on_glibc_and_memory_still_works():
    assert keep_freed_memory() is True
    assert keep_freed_memory() is True  # idempotent
    blocks = [np.full((16, 4096), float(i), dtype=np.float32) for i in range(64)]  # 256 KiB each, now heap-served
    assert [float(b[3, 7]) for b in blocks[::16]] == [0.0, 16.0, 32.0, 48.0]
    del blocks
    assert float(np.ones((1024, 1024)).sum()) == 1024 * 1024  # 8 MiB, freed and reused


def test_elsewhere_it_changes_nothing(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert keep_freed_memory() is False
