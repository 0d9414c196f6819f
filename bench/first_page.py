"""How long a started dashboard keeps a newcomer waiting for its first page: plain `streamlit run app.py` against
`python -m hsae_core.warm_start` (what `make dashboard` runs), side by side on one workspace.

    python bench/first_page.py                      # the demo workspace, built first if needed; 3 rounds
    python bench/first_page.py --workspace PATH --rounds 5 --delay 0,5

Each round starts a fresh server process per launcher (alternating which goes first) and opens Chromium at the
Overview once the server answers, after ``--delay`` seconds more (a person reading the URL and clicking it;
0: a browser opened as soon as it can). Prints, per launcher and delay, the median seconds from the launch to
the server answering, and from opening the page to the Overview showing the workspace (its SAE panel and first
chart). Needs /usr/bin/chromium (`make browser`) and, for the demo, ../shared/data (or HSAE_DATA_DIR). Not part
of `make bench`.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from first_start import CHROME_ARGS, free_port, load

REPO = Path(__file__).resolve().parents[1]
LAUNCHERS = {
    "streamlit run app.py": ["-m", "streamlit", "run", str(REPO / "app.py")],
    "hsae_core.warm_start": ["-m", "hsae_core.warm_start"],
}
SERVER_FLAGS = ["--server.headless", "true", "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"]


def demo_workspace(root: Path) -> Path:
    """The demo workspace under ``root``, built by `hsae demo` (the embedding cache makes a rebuild quick)."""
    from hsae_core.workspace import Workspace

    subprocess.run([sys.executable, "-m", "hsae_core.cli", "demo", "--root", str(root)], check=True, cwd=REPO)
    (found,) = [p for p in root.iterdir() if Workspace.is_workspace(p)]
    return found


def one_start(argv: list[str], workspace: Path, delay: float, log: Path) -> tuple[float, float]:
    """(seconds from launch to the server answering, seconds from opening the page to the workspace showing)."""
    from playwright.sync_api import sync_playwright

    port = free_port()
    env = dict(os.environ, HSAE_WORKSPACE=str(workspace))
    start = time.perf_counter()
    with open(log, "a") as out:
        proc = subprocess.Popen(
            [sys.executable, *argv, *SERVER_FLAGS, "--server.port", str(port)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        while True:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.1)
            if proc.poll() is not None:
                sys.exit("the server stopped:\n" + log.read_text()[-3000:])
        answered = time.perf_counter() - start
        time.sleep(delay)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=CHROME_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(300_000)
            opened = time.perf_counter()
            page.goto(f"http://127.0.0.1:{port}/")
            page.get_by_text("Validation NMSE").wait_for()
            page.locator(".js-plotly-plot").first.wait_for()
            shown = time.perf_counter() - opened
            browser.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    return answered, shown


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", help="a built workspace (default: the demo, built under a temporary folder)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--delay", default="0,5", help="comma-separated seconds between the server answering and the click")
    args = ap.parse_args()
    if not Path("/usr/bin/chromium").exists():
        sys.exit("No /usr/bin/chromium: run `make browser` first")
    with tempfile.TemporaryDirectory(prefix="hsae-first-page-") as work:
        return measure(args, Path(work))


def measure(args, work: Path) -> int:
    """The rounds of :func:`main`, with ``work`` for the demo workspace and the servers' log."""
    workspace = Path(args.workspace) if args.workspace else demo_workspace(work / "workspaces")
    delays = [float(d) for d in args.delay.split(",")]
    print(f"workspace: {workspace}\nload before: {load()}", flush=True)
    times: dict[tuple[str, float], list[tuple[float, float]]] = {}
    for r in range(args.rounds):
        for delay in delays:
            order = list(LAUNCHERS) if r % 2 == 0 else list(reversed(LAUNCHERS))
            for name in order:
                answered, shown = one_start(LAUNCHERS[name], workspace, delay, work / "server.log")
                times.setdefault((name, delay), []).append((answered, shown))
                print(f"  round {r + 1}, {name}, delay {delay:g} s: answered {answered:.1f} s, page {shown:.1f} s")
    print(
        "\n| launcher | click after the server answers | server answered (median s) | Overview shown after the click (median s) |"
    )
    print("|---|---|---|---|")
    for (name, delay), got in times.items():
        answered = statistics.median(a for a, _ in got)
        shown = statistics.median(s for _, s in got)
        print(f"| {name} | {delay:g} s | {answered:.1f} | {shown:.1f} |")
    print(f"\nload after: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
