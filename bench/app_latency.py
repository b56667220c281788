"""How fast the app is for its users: launch to ready, time to the first streamed step, and 8 users at once.

    python bench/app_latency.py                                   # the bundled models
    python bench/app_latency.py --model runs/diffusion/checkpoint-1800 --ar-model runs/ar/checkpoint-1800 \\
        --users 8 --json bench/results/app_latency.json

Starts `python app.py` in a subprocess on a free port (its models load in the app's warm-up thread, as
in production) and talks to it only through gradio_client, like a user's browser or script would:

- launch to ready: from starting the process until the server answers HTTP;
- first streamed step: from submitting /generate until the first update that shows a finished
  denoising step (the very first request, then the median of --repeats warm ones);
- concurrency: for each count in --users (default 1 2 4 8), that many clients submit /generate at the
  same moment; every request must succeed, and the table gives the median and worst end-to-end
  latency and the throughput, requests per minute = users x 60 / the time until the last one ended,
  with its ratio to one user's: how the app's throughput scales with concurrent users on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REQUEST = dict(text="Once upon a time", length=48, steps=24, seed=0)  # what every concurrent client asks for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"app.py exited with status {process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url + "/config", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"app.py was not ready after {timeout:.0f} s")


def first_step_seconds(client, request: dict) -> tuple[float, float]:
    """(seconds to the first update showing a finished step, seconds to the end) of one /generate."""
    start = time.perf_counter()
    first = None
    job = client.submit(**request, api_name="/generate")
    for update in job:
        stats = update[4] or ""
        if first is None and ("Step " in stats and not stats.startswith("**Step 0 ") or "Done" in stats):
            first = time.perf_counter() - start
    total = time.perf_counter() - start
    if not (job.outputs()[-1][4] or "").startswith("**Done**"):
        raise RuntimeError(f"the request did not finish: {job.outputs()[-1][4]!r}")
    return first if first is not None else total, total


def progress_bar(*, total: int, desc: str, unit: str, show: bool | None = None):
    """A tqdm bar on stderr (the tables stay alone on stdout); show None: only when stderr is a terminal.
    (dlm.cli.progress_bar's twin: importing dlm here would load torch into this light client.)"""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True,
                disable=None if show is None else not show)


def concurrent_users(url: str, users: int, request: dict, done=None) -> list[dict]:
    """`users` clients submit at once; each result has ok, seconds and error. done(): called as each
    user's request ends (after its time is taken). Each comes from its own address, as a proxy in front
    of the app (Spaces') reports it in X-Forwarded-For: the app limits how many requests one address may
    have waiting (webapp.limits), and these are different users, not one user's burst."""
    from gradio_client import Client

    clients = [Client(url, verbose=False, headers={"X-Forwarded-For": f"10.0.{i // 250}.{i % 250 + 1}"})
               for i in range(users)]
    results: list[dict] = [{} for _ in range(users)]
    barrier = threading.Barrier(users)
    lock = threading.Lock()

    def user(i: int) -> None:
        barrier.wait()
        start = time.perf_counter()
        try:
            output = clients[i].predict(**{**request, "seed": i}, api_name="/generate")
            ok = output[4].startswith("**Done**")
            results[i] = {"ok": ok, "seconds": time.perf_counter() - start, "error": None if ok else output[4]}
        except Exception as error:  # any failure counts against the app: record it, keep the others going
            results[i] = {"ok": False, "seconds": time.perf_counter() - start, "error": repr(error)[:300]}
        if done is not None:
            with lock:
                done()

    threads = [threading.Thread(target=user, args=(i,)) for i in range(users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default", help="diffusion model (bundled name, folder or Hub id)")
    parser.add_argument("--ar-model", default="default-ar")
    parser.add_argument("--users", type=int, nargs="+", default=[1, 2, 4, 8],
                        help="concurrent gradio_client users, one burst per count")
    parser.add_argument("--repeats", type=int, default=5, help="warm first-step measurements")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for the app to start")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bar on stderr (default: only when stderr is a terminal)")
    args = parser.parse_args(argv)

    from gradio_client import Client

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    command = [sys.executable, str(ROOT / "app.py"), "--model", args.model, "--ar-model", args.ar_model,
               "--port", str(port)]
    load = os.getloadavg()[0]  # other work on the machine slows everything below: say how much there was
    log = tempfile.TemporaryFile(mode="w+")  # the app's output, shown if it fails
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        try:
            wait_ready(url, process, args.timeout)
        except (RuntimeError, TimeoutError):
            log.seek(0)
            print(log.read()[-3000:], file=sys.stderr)
            raise
        ready = time.perf_counter() - start
        client = Client(url, verbose=False)
        with progress_bar(total=1 + args.repeats + sum(args.users), desc="requests", unit="request",
                          show=args.progress) as bar:  # moved between requests, outside what they time
            cold_first, cold_total = first_step_seconds(client, REQUEST)
            bar.update()
            warm = []
            for i in range(args.repeats):
                warm.append(first_step_seconds(client, {**REQUEST, "seed": i + 1}))
                bar.update()
            bursts = []
            for users in args.users:
                start_burst = time.perf_counter()
                runs = concurrent_users(url, users, REQUEST, done=bar.update)
                bursts.append((users, runs, time.perf_counter() - start_burst))
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
    concurrency = []
    for users, runs, seconds in bursts:
        latencies = [r["seconds"] for r in runs]
        concurrency.append({"users": users, "succeeded": sum(r["ok"] for r in runs),
                            "latency_median_s": statistics.median(latencies), "latency_max_s": max(latencies),
                            "requests_per_minute": 60 * users / max(latencies), "burst_seconds": seconds,
                            "errors": [r["error"] for r in runs if not r["ok"]]})
    single = next((c for c in concurrency if c["users"] == 1), concurrency[0])
    for c in concurrency:
        c["throughput_vs_one_user"] = c["requests_per_minute"] / single["requests_per_minute"]
    result = {
        "model": args.model,
        "ar_model": args.ar_model,
        "request": REQUEST,
        "launch_to_ready_s": ready,
        "first_step_cold_s": cold_first,
        "generation_cold_s": cold_total,
        "first_step_warm_median_s": statistics.median(w[0] for w in warm),
        "generation_warm_median_s": statistics.median(w[1] for w in warm),
        "concurrency": concurrency,
        "errors": [e for c in concurrency for e in c["errors"]],
        "cpu_cores": len(os.sched_getaffinity(0)),
        "load_average_1min_at_start": load,
        "torch_threads_per_request": os.environ.get("DLM_THREADS") or "cores // concurrency",
    }
    rows = [
        ("launch to ready", f"{ready:.1f} s"),
        ("first streamed step, first request", f"{cold_first:.2f} s (whole generation {cold_total:.2f} s)"),
        (f"first streamed step, warm (median of {args.repeats})",
         f"{result['first_step_warm_median_s']:.3f} s (whole generation {result['generation_warm_median_s']:.2f} s)"),
    ]
    print(f"app: --model {args.model} --ar-model {args.ar_model}; request {REQUEST}; "
          f"{result['cpu_cores']} CPU cores, load average {load:.1f} at start\n")
    print("| measure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    print("\n| users at once | succeeded | latency median s | latency max s | requests / min | throughput vs 1 user |")
    print("|---:|---:|---:|---:|---:|---:|")
    for c in concurrency:
        print(f"| {c['users']} | {c['succeeded']}/{c['users']} | {c['latency_median_s']:.2f} | {c['latency_max_s']:.2f} | "
              f"{c['requests_per_minute']:.1f} | {c['throughput_vs_one_user']:.2f}x |")
    for error in result["errors"]:
        print(f"error: {error}", file=sys.stderr)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if all(c["succeeded"] == c["users"] for c in concurrency) else 1


if __name__ == "__main__":
    sys.exit(main())
