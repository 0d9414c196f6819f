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
from pathlib import Path

from first_start import free_port, launch, load, seconds_to_overview, wait_until_answering

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
    port = free_port()
    env = dict(os.environ, HSAE_WORKSPACE=str(workspace))
    start = time.perf_counter()
    proc = launch([sys.executable, *argv, *SERVER_FLAGS, "--server.port", str(port)], REPO, env, log)
    try:
        wait_until_answering(port, proc, log)
        answered = time.perf_counter() - start
        time.sleep(delay)
        shown = seconds_to_overview(port)
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
