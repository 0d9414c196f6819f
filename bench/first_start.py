"""Time a newcomer's first start: `make dashboard` on a fresh clone until Chromium shows the Overview page with
the demo workspace. The install is excluded (the clone borrows an installed .venv) and the embedding cache
starts empty, so the demo's 4,000 reviews are really embedded.

    python bench/first_start.py                       # clones this checkout (its last commit) into a temp folder
    python bench/first_start.py --venv /path/.venv    # which installed venv to borrow (default: this repo's .venv)

Prints the machine load before and after, the build's seconds per step (from `hsae demo`) and the wall time
until the server answered and until the page showed the workspace. Needs ../shared/data (or HSAE_DATA_DIR)
and /usr/bin/chromium (`make browser`). Not part of `make bench`: it takes minutes and a browser.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROME_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def load() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "n/a"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(command: list[str], cwd: Path, env: dict, log: Path) -> subprocess.Popen:
    """``command`` in a process group of its own (so a signal stops its children too), its output added to ``log``."""
    with open(log, "a") as out:
        return subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def wait_until_answering(port: int, proc: subprocess.Popen, log: Path) -> None:
    """Poll the local server's health check until it answers; exit with the end of ``log`` if ``proc`` stops."""
    while True:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).read() == b"ok":
                return
        except OSError:
            time.sleep(0.1)
        if proc.poll() is not None:
            sys.exit("the dashboard stopped:\n" + log.read_text()[-3000:])


@contextlib.contextmanager
def browser_page():
    """A page of a headless Chromium (started before any timing begins)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=CHROME_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(600_000)
        try:
            yield page
        finally:
            browser.close()


def overview_seconds(page, port: int) -> float:
    """Seconds from asking ``page`` for the dashboard until the Overview shows the workspace (its SAE panel and
    first chart)."""
    opened = time.perf_counter()
    page.goto(f"http://127.0.0.1:{port}/")
    page.get_by_text("Validation NMSE").wait_for()
    page.locator(".js-plotly-plot").first.wait_for()
    return time.perf_counter() - opened


def seconds_to_overview(port: int) -> float:
    """Open Chromium at the dashboard: seconds from the request until the Overview shows the workspace (its SAE
    panel and first chart; Chromium's own start is not counted)."""
    with browser_page() as page:
        return overview_seconds(page, port)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", default=str(REPO / ".venv"), help="installed venv to borrow (symlinked as .venv)")
    args = parser.parse_args()
    data = os.environ.get("HSAE_DATA_DIR") or str((REPO.parent / "shared" / "data").resolve())
    if not Path(data, "yelp_reviews_demo").is_dir():
        sys.exit(f"No demo data under {data}; set HSAE_DATA_DIR")
    venv = Path(args.venv).resolve()
    if not (venv / "bin" / "python").exists():
        sys.exit(f"No venv at {venv}; run `make install` first or pass --venv")
    work = Path(tempfile.mkdtemp(prefix="hsae-first-start-"))
    clone = work / "hsae"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    (clone / ".venv").symlink_to(venv)
    port = free_port()
    env = dict(os.environ, HSAE_CACHE_DIR=str(work / "empty-cache"), HSAE_DATA_DIR=data, PORT=str(port))
    for name in ("HSAE_WORKSPACE", "HSAE_WORKSPACES_DIR", "PYTHONPATH"):
        env.pop(name, None)
    print(
        f"clone: {clone} ({subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=clone, text=True, capture_output=True).stdout.strip()})"
    )
    print(f"load average before: {load()}", flush=True)
    start = time.perf_counter()
    # -o: treat the borrowed venv as installed (the install is not part of the first start measured here)
    proc = launch(["make", "-o", ".venv/.installed", "dashboard", f"PORT={port}"], clone, env, work / "make.log")
    try:
        wait_until_answering(port, proc, work / "make.log")
        server = time.perf_counter() - start
        seconds_to_overview(port)
        ready = time.perf_counter() - start
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    build = re.search(r"Demo workspace ready: .*", (work / "make.log").read_text())
    print(build.group(0) if build else "(no build line: the demo workspace was already there?)")
    print(f"server answered after {server:.1f} s; Overview showing the demo workspace after {ready:.1f} s")
    print(f"load average after: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
