"""Soak and abuse: launch the app, drive many client sessions through mixed requests, watch memory and disk.

    python bench/soak.py --clients 64 --requests 200 --json bench/results/soak_64.json
    python bench/soak.py --clients 8 --requests 1000 --sessions 200 --json bench/results/soak_1000.json \\
        --plot bench/results/soak_rss.png

The app runs in its own process (`python app.py`, bundled models, a fresh GRADIO_TEMP_DIR), so its
memory and files are its own. Each request opens a new client session (a gradio_client `Client`)
unless --sessions caps them (then sessions are reused round-robin), and comes from its own address
(an `X-Forwarded-For` header, trusted from loopback as from the Space's proxy), so the per-client
queue limit treats them as different users. The mix: streamed generation, animation, classification
(pasted lines), the AR-vs-diffusion race, some cancelled midway, some malformed (a seed of 'x', steps
above the length, an unknown model). Every request must end: completed, refused with a message
(queue full, per-client limit, a named bad value), or counted as a failure by kind; a request still
running after --timeout seconds is a hang.

Reported: outcomes by kind, p50 / p95 latency of completed requests, the server's RSS after warm-up,
its peak and at the end (after --settle seconds idle), the files under the app's temp folder at the
end and after shutdown. Writes JSON; --plot draws the RSS curve.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("generate", "animate", "classify", "compare", "cancel", "malformed")
WEIGHTS = (40, 10, 15, 15, 10, 10)  # how often each kind is drawn


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def files_under(folder: Path) -> tuple[int, int]:
    """(files, bytes) under a folder."""
    count = size = 0
    for path in folder.rglob("*"):
        if path.is_file():
            count += 1
            size += path.stat().st_size
    return count, size


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(port: int, temp_dir: Path, threads: int) -> subprocess.Popen:
    env = {**os.environ, "GRADIO_TEMP_DIR": str(temp_dir), "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
           "DLM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    # the app's log goes to a file beside (not inside) its temp folder: a pipe nobody reads fills up (64 KB)
    # and then blocks the server's event loop at its next write, the harness hanging the app
    log_path = temp_dir.with_name(temp_dir.name + ".log")
    with log_path.open("w") as log:
        process = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=ROOT, env=env,
                                   stdout=subprocess.DEVNULL, stderr=log, text=True)
    process.log_path = log_path
    return process


def app_log(process: subprocess.Popen) -> str:
    """What the app wrote to its log so far."""
    return Path(process.log_path).read_text(errors="replace")


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 300) -> None:
    import httpx

    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the app exited: {app_log(process)[-2000:]}")
        try:
            if httpx.get(url + "/gradio_api/info", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise SystemExit("the app did not start in time")


class Sessions:
    """Client sessions, a fresh one per request or at most `cap` reused round-robin."""

    def __init__(self, url: str, cap: int | None, http_timeout: float = 60):
        self.url, self.cap, self.http_timeout = url, cap, http_timeout
        self.pool: list = []
        self.lock = threading.Lock()
        self.counter = itertools.count()
        self.opened = 0

    def get(self, address: str):
        from gradio_client import Client

        n = next(self.counter)
        with self.lock:
            if self.cap and len(self.pool) >= self.cap:
                return self.pool[n % self.cap]
        client = Client(self.url, verbose=False, headers={"X-Forwarded-For": address}, download_files=False,
                        httpx_kwargs={"timeout": self.http_timeout})
        with self.lock:
            self.opened += 1
            if self.cap and len(self.pool) < self.cap:
                self.pool.append(client)
        return client


def classify_error(error: BaseException) -> str:
    """What ended a request: a refusal with a message, or a failure by kind."""
    text = f"{type(error).__name__}: {error}"
    if "Queue is full" in text or "QueueError" in text:
        return "refused: queue full"
    if "429" in text:
        return "refused: per-client limit"
    if type(error).__name__ == "AppError" and str(error).strip() and "null" not in str(error):
        return "refused: named bad input"
    return f"failure: {type(error).__name__}"


def one_request(sessions: Sessions, kind: str, n: int, timeout: float) -> dict:
    address = f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"
    start = time.perf_counter()
    connect = None
    try:
        client = sessions.get(address)
        connect = time.perf_counter() - start  # opening a session (Gradio's config and API info); ~0 when reused
        if kind == "generate":
            job = client.submit(text="Once upon a time", length=48, steps=24, seed=n, api_name="/generate")
            result = job.result(timeout=timeout)
            assert result[4].startswith("**Done**"), result[4]
        elif kind == "animate":  # every request waits at most `timeout`: one still running then is a hang
            client.submit(text="The old man", length=32, steps=16, seed=n, frame_ms=100, race_ar=n % 2 == 0,
                          api_name="/animate").result(timeout=timeout)
        elif kind == "classify":
            client.submit(text="A gripping, beautifully acted film.\nDull, slow and far too long.", samples=8,
                          api_name="/classify").result(timeout=timeout)
        elif kind == "compare":
            client.submit(text="It was a dark night", length=32, steps=16, seed=n,
                          api_name="/compare").result(timeout=timeout)
        elif kind == "cancel":
            job = client.submit(text="Call me", length=128, steps=128, seed=n, api_name="/generate")
            time.sleep(random.uniform(0.2, 1.5))
            job.cancel()
            outcome = "cancelled"
            return {"kind": kind, "outcome": outcome, "seconds": time.perf_counter() - start, "connect_s": connect}
        else:  # malformed
            bad = [dict(seed="x"), dict(length=8, steps=64), dict(model="no-such-model")][n % 3]
            args = dict(text="the cat", length=16, steps=8) | bad
            client.submit(**args, api_name="/generate").result(timeout=timeout)
            return {"kind": kind, "outcome": "failure: accepted bad input", "seconds": time.perf_counter() - start, "connect_s": connect}
    except TimeoutError:
        return {"kind": kind, "outcome": "hang", "seconds": time.perf_counter() - start, "connect_s": connect}
    except Exception as error:  # noqa: BLE001 - every outcome is counted
        outcome = classify_error(error)
        if kind == "malformed" and outcome == "refused: named bad input":
            outcome = "refused: named bad input"
        return {"kind": kind, "outcome": outcome, "seconds": time.perf_counter() - start, "connect_s": connect, "error": str(error)[:200]}
    return {"kind": kind, "outcome": "ok", "seconds": time.perf_counter() - start, "connect_s": connect}


def soak(clients: int, requests: int, sessions_cap: int | None, timeout: float, settle: float, threads: int,
         seed: int = 0, http_timeout: float = 60) -> dict:
    random.seed(seed)
    temp_dir = Path(tempfile.mkdtemp(prefix="dlm-soak-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = launch(port, temp_dir, threads)
    samples: list[tuple[float, float]] = []
    try:
        wait_ready(url, process)
        t0 = time.perf_counter()
        # warm-up: one of each kind, so the models are loaded and the first-use costs are paid
        warm = Sessions(url, None, http_timeout)
        for i, kind in enumerate(("generate", "animate", "classify", "compare")):
            one_request(warm, kind, 10_000 + i, timeout)
        baseline = rss_mb(process.pid)
        files_warm = files_under(temp_dir)
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                samples.append((time.perf_counter() - t0, rss_mb(process.pid)))
                stop.wait(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        sessions = Sessions(url, sessions_cap, http_timeout)
        kinds = random.choices(KINDS, WEIGHTS, k=requests)
        with ThreadPoolExecutor(clients) as pool:
            results = list(pool.map(lambda nk: one_request(sessions, nk[1], nk[0], timeout), enumerate(kinds)))
        time.sleep(settle)
        end = rss_mb(process.pid)
        stop.set()
        sampler.join()
        files_end = files_under(temp_dir)
    finally:
        process.send_signal(signal.SIGINT)  # a clean shutdown: the app's lifespan removes its files
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
    files_after = files_under(temp_dir)
    outcomes: dict[str, int] = {}
    for r in results:
        outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
    latency = {}
    for kind in KINDS:
        done = sorted(r["seconds"] for r in results if r["kind"] == kind and r["outcome"] == "ok")
        if done:
            latency[kind] = {"n": len(done), "p50": statistics.median(done),
                             "p95": done[min(len(done) - 1, int(0.95 * len(done)))]}
    opened = sorted(r["connect_s"] for r in results if r.get("connect_s") and r["connect_s"] > 0.005)
    connect = ({"n": len(opened), "p50": statistics.median(opened), "p95": opened[min(len(opened) - 1, int(0.95 * len(opened)))]}
               if opened else None)  # opening a new session: Gradio's config and API info
    peak = max((mb for _, mb in samples), default=float("nan"))
    return {
        "clients": clients, "requests": requests, "sessions": sessions.opened, "timeout_s": timeout,
        "http_timeout_s": http_timeout, "outcomes": outcomes, "latency_s": latency, "new_session_s": connect,
        "rss_mb": {"after_warm_up": baseline, "peak": peak, "end": end, "end_over_warm_up": end / baseline},
        "files": {"after_warm_up": files_warm[0], "end": files_end[0], "end_bytes": files_end[1],
                  "after_shutdown": files_after[0]},
        "rss_curve": samples,
        "failures": [r for r in results if r["outcome"].startswith(("failure", "hang"))][:20],
    }


def print_table(report: dict) -> None:
    print(f"{report['requests']} requests, {report['clients']} concurrent clients, {report['sessions']} sessions")
    print("| outcome | requests |\n|---|---:|")
    for outcome, n in sorted(report["outcomes"].items()):
        print(f"| {outcome} | {n} |")
    print("\n| kind | completed | p50 (s) | p95 (s) |\n|---|---:|---:|---:|")
    for kind, row in report["latency_s"].items():
        print(f"| {kind} | {row['n']} | {row['p50']:.2f} | {row['p95']:.2f} |")
    if report.get("new_session_s"):
        c = report["new_session_s"]
        print(f"\nopening a session (config and API info; HTTP timeout {report['http_timeout_s']:g} s): "
              f"p50 {c['p50']:.2f} s, p95 {c['p95']:.2f} s over {c['n']} sessions")
    rss, files = report["rss_mb"], report["files"]
    print(f"\nRSS: {rss['after_warm_up']:.0f} MB after warm-up, peak {rss['peak']:.0f} MB, {rss['end']:.0f} MB at the end "
          f"({rss['end_over_warm_up']:.2f}x)")
    print(f"files: {files['after_warm_up']} after warm-up, {files['end']} at the end ({files['end_bytes'] / 1e6:.1f} MB), "
          f"{files['after_shutdown']} after shutdown")


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs, ys = zip(*report["rss_curve"]) if report["rss_curve"] else ((), ())
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(xs, ys, color="#6366f1")
    ax.axhline(report["rss_mb"]["after_warm_up"], color="#9ca3af", linestyle="--", label="after warm-up")
    ax.axhline(1.2 * report["rss_mb"]["after_warm_up"], color="#f97316", linestyle=":", label="1.2x warm-up")
    ax.set_xlabel("seconds")
    ax.set_ylabel("server RSS (MB)")
    ax.set_title(f"{report['requests']} requests, {report['sessions']} sessions, {report['clients']} concurrent")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16, help="requests in flight at once")
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--sessions", type=int, help="reuse at most this many client sessions (default: one per request)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds after which a request counts as a hang")
    parser.add_argument("--http-timeout", type=float, default=60,
                        help="seconds a client waits for one HTTP answer (opening its session, joining the queue), as a "
                             "browser waits for the page; gradio_client's own default is 5")
    parser.add_argument("--settle", type=float, default=5, help="idle seconds before the final RSS")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per request in the app (DLM_THREADS)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args(argv)
    report = soak(args.clients, args.requests, args.sessions, args.timeout, args.settle, args.threads,
                  http_timeout=args.http_timeout)
    print_table(report)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    if args.plot:
        plot(report, args.plot)
    bad = sum(n for outcome, n in report["outcomes"].items() if outcome.startswith(("failure", "hang")))
    return int(bad > 0)


if __name__ == "__main__":
    sys.exit(main())
