"""A short soak in CI: the app in its own process (bundled models), 20 client sessions through mixed
requests (some cancelled, some malformed). Every request ends, none fails, memory stays bounded with a
generous margin, and nothing is left on disk after shutdown. The full soak is `bench/soak.py`."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

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


def test_a_stopped_app_leaves_nothing_behind_with_a_client_still_streaming(tmp_path):
    """SIGTERM (how a Space or a container is stopped) while a client is connected and its generation is
    streaming: the app exits promptly and leaves no file; at start it removed what a killed earlier
    process had left in the same folder."""
    from gradio_client import Client
    from gradio_client.utils import Status

    gone = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout)  # a process that has ended
    leftover = tmp_path / f"dlm-app-{gone}-0123abcd" / "0123456789ab"
    leftover.mkdir(parents=True)
    (leftover / "run.gif").write_bytes(b"GIF89a")
    port = soak.free_port()
    url = f"http://127.0.0.1:{port}"
    process = soak.launch(port, tmp_path, threads=1)
    try:
        soak.wait_ready(url, process)
        client = Client(url, verbose=False, download_files=False)
        client.predict(text="the cat", length=8, steps=4, frame_ms=100, race_ar=False, api_name="/animate")
        assert soak.files_under(tmp_path)[0] > 0 and not leftover.parent.exists()
        job = client.submit(text="Call me", length=128, steps=128, api_name="/generate")
        deadline = time.time() + 60
        while job.status().code != Status.ITERATING and time.time() < deadline:
            time.sleep(0.1)
        assert job.status().code == Status.ITERATING  # streaming when the stop comes
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, soak.app_log(process)[-2000:]
    finally:
        if process.poll() is None:
            process.kill()
    assert soak.files_under(tmp_path) == (0, 0), sorted(tmp_path.rglob("*"))


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
