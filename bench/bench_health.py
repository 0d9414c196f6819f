"""The dashboard's health check under load, with and without Streamlit's file watcher (issue 12, item 10).

    python bench/bench_health.py [--workspace WS] [--clients 20] [--seconds 30] [--views 2] [--watchers none,auto]

For each file-watcher setting a real ``streamlit run app.py`` is started on 127.0.0.1 (loopback only) from the
repository root, so ``.streamlit/config.toml`` applies except for the watcher, which ``--server.fileWatcherType``
overrides. During a bounded window of ``--seconds``:

- ``--clients`` threads call ``GET /_stcore/health`` back to back (each waits for its answer);
- ``--views`` headless Chromium pages (Playwright, Debian's /usr/bin/chromium) reload the Overview page and wait
  until it shows its metrics: the page views whose cost the watcher multiplies.

Printed per setting: health-check requests, p50/p95/max latency and errors; page views; the server's CPU seconds
per page view; server log lines per page view. The interpreter is ``--python`` (default: this one); run it with
the repository's own ``.venv/bin/python`` (what ``make dashboard`` creates) to measure the layout where the
watcher also sees every installed package.
"""

from __future__ import annotations

import argparse
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

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("HSAE_CHROMIUM", "/usr/bin/chromium"))
CHROME_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (Linux /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tiny_workspace(folder: Path) -> Path:
    """200 Yelp reviews (m=32, k=4): the page under test, built through the product's own code."""
    import pandas as pd

    sys.path.insert(0, str(REPO))
    from hsae_core.workspace import build_workspace

    data = Path(os.environ.get("HSAE_DATA_DIR") or REPO.parent / "shared" / "data")
    frame = pd.read_json(data / "yelp_reviews_demo" / "yelp-demo-val-2K.jsonl", lines=True).iloc[:200]
    out = folder / "bench-health"
    build_workspace(out, frame=frame[["text", "stars"]], text_col="text", m=32, k=4, name="health bench")
    return out


def start_server(python: str, workspace: Path, watcher: str, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "HSAE_WORKSPACE": str(workspace), "PYTHONPATH": str(REPO)}
    cmd = [
        python,
        "-m",
        "streamlit",
        "run",
        "app.py",
        "--server.headless",
        "true",
        "--server.address",
        "127.0.0.1",
        "--server.port",
        str(port),
        "--server.fileWatcherType",
        watcher,
        "--browser.gatherUsageStats",
        "false",
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                if r.read() == b"ok":
                    return proc, url
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit(f"streamlit did not start; see {log}")


def health_clients(url: str, n: int, stop: threading.Event) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def client():
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=30) as r:
                    ok = r.read() == b"ok"
            except OSError:
                ok = False
            with lock:
                if ok:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors[0] += 1

    threads = [threading.Thread(target=client, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    stop.wait()
    for t in threads:
        t.join(timeout=60)
    return latencies, errors[0]


def page_views(url: str, n_pages: int, stop: threading.Event, counter: list) -> None:
    if n_pages <= 0 or not CHROMIUM.exists():
        return
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROME_ARGS)
        pages = [browser.new_page() for _ in range(n_pages)]
        while not stop.is_set():
            for page in pages:
                page.goto(url, wait_until="domcontentloaded")
            for page in pages:
                page.wait_for_selector("text=Documents", timeout=120_000)
                counter[0] += 1
        browser.close()


def measure(python: str, workspace: Path, watcher: str, clients: int, seconds: float, views: int, folder: Path) -> dict:
    log = folder / f"streamlit-{watcher}.log"
    proc, url = start_server(python, workspace, watcher, log)
    try:
        stop, viewed = threading.Event(), [0]
        viewer = threading.Thread(target=page_views, args=(url, views, stop, viewed), daemon=True)
        cpu0, lines0 = cpu_seconds(proc.pid), len(log.read_text().splitlines())
        viewer.start()
        timer = threading.Timer(seconds, stop.set)
        timer.start()
        latencies, errors = health_clients(url, clients, stop)
        viewer.join(timeout=180)
        cpu = cpu_seconds(proc.pid) - cpu0
        lines = len(log.read_text().splitlines()) - lines0
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    ms = sorted(x * 1000 for x in latencies)
    return dict(
        watcher=watcher,
        requests=len(ms),
        errors=errors,
        views=viewed[0],
        p50_ms=statistics.median(ms) if ms else None,
        p95_ms=ms[min(len(ms) - 1, int(0.95 * len(ms)))] if ms else None,
        max_ms=ms[-1] if ms else None,
        server_cpu_s=cpu,
        cpu_per_view_s=cpu / viewed[0] if viewed[0] else None,
        log_lines_per_view=lines / viewed[0] if viewed[0] else None,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", default=None, help="workspace to serve (default: build a 200-review one)")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--views", type=int, default=2, help="Chromium pages reloading the Overview page")
    parser.add_argument("--watchers", default="none,auto")
    parser.add_argument("--python", default=sys.executable)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hsae-health-") as tmp:
        folder = Path(tmp)
        workspace = Path(args.workspace) if args.workspace else tiny_workspace(folder)
        print(f"load before: {os.getloadavg()[0]:.2f} (1-min); {os.cpu_count()} cores; python {args.python}")
        print(
            f"{'watcher':<8} {'requests':>8} {'errors':>6} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'views':>6} "
            f"{'CPU s/view':>10} {'log lines/view':>14}"
        )
        for watcher in args.watchers.split(","):
            r = measure(args.python, workspace, watcher, args.clients, args.seconds, args.views, folder)

            def f(v, d=1):
                return "n/a" if v is None else f"{v:.{d}f}"

            print(
                f"{r['watcher']:<8} {r['requests']:>8} {r['errors']:>6} {f(r['p50_ms']):>8} {f(r['p95_ms']):>8} "
                f"{f(r['max_ms']):>8} {r['views']:>6} {f(r['cpu_per_view_s'], 2):>10} "
                f"{f(r['log_lines_per_view']):>14}",
                flush=True,
            )
        print(f"load after: {os.getloadavg()[0]:.2f} (1-min)")


if __name__ == "__main__":
    main()
