"""How long a started dashboard keeps a newcomer waiting for its first page: plain `streamlit run app.py` against
`python -m hsae_core.warm_start` (what `make dashboard` runs), side by side on one workspace.

    python bench/first_page.py                      # the demo workspace, built first if needed; 3 rounds
    python bench/first_page.py --workspace PATH --rounds 5 --delay 0,5
    python bench/first_page.py --without-map        # as the first start after `hsae demo`: the map not laid out
    python bench/first_page.py --compare-to ../old  # each round also with another checkout's code

Each round starts a fresh server process per launcher (alternating which goes first) and opens Chromium at the
Overview once the server answers, after ``--delay`` seconds more (a person reading the URL and clicking it;
0: a browser opened as soon as it can). Prints, per launcher and delay, the median seconds from the launch to
the server answering, from opening the page to the Overview showing the workspace (its SAE panel and first
chart), and then from clicking Search to its query box showing (the first page that loads torch). Needs
/usr/bin/chromium (`make browser`) and, for the demo, ../shared/data (or HSAE_DATA_DIR). Not part of
`make bench`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from first_start import browser_page, free_port, launch, load, overview_seconds, wait_until_answering

REPO = Path(__file__).resolve().parents[1]
LAUNCHERS = {
    "streamlit run app.py": ["-m", "streamlit", "run", "app.py"],
    "hsae_core.warm_start": ["-m", "hsae_core.warm_start"],
}
SERVER_FLAGS = ["--server.headless", "true", "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"]


def demo_workspace(root: Path) -> Path:
    """The demo workspace under ``root``, built by `hsae demo` (the embedding cache makes a rebuild quick)."""
    from hsae_core.workspace import Workspace

    subprocess.run([sys.executable, "-m", "hsae_core.cli", "demo", "--root", str(root)], check=True, cwd=REPO)
    (found,) = [p for p in root.iterdir() if Workspace.is_workspace(p)]
    return found


def seconds_to_overview_then_search(port: int) -> tuple[float, float]:
    """Open Chromium at the dashboard: (seconds until the Overview shows the workspace, its SAE panel and first
    chart; then seconds from clicking Search in the sidebar until its query box shows). Chromium's own start is
    not counted. The Search page is the first that encodes text, so it is the one that loads torch."""
    with browser_page() as page:
        overview = overview_seconds(page, port)
        clicked = time.perf_counter()
        page.locator('[data-testid="stSidebarNav"] a:has-text("Search")').click()
        page.get_by_label("Search text").wait_for()
        return overview, time.perf_counter() - clicked


def copy_workspace(workspace: Path, to: Path, with_map: bool) -> Path:
    """A fresh copy of ``workspace`` at ``to``, with its Map's layout computed and stored, or without one."""
    from hsae_core.workspace import LAYOUT_FILE, LAYOUT_META, Workspace

    shutil.rmtree(to, ignore_errors=True)
    shutil.copytree(workspace, to)
    for name in (LAYOUT_FILE, LAYOUT_META):
        (to / name).unlink(missing_ok=True)
    if with_map:
        Workspace.open(to).layout()
    return to


def one_start(
    argv: list[str], workspace: Path, delay: float, log: Path, checkout: Path = REPO
) -> tuple[float, float, float]:
    """(seconds from launch to the server answering, from opening the page to the workspace showing, and from
    clicking Search to its query box showing), with the code of ``checkout``."""
    port = free_port()
    env = dict(os.environ, HSAE_WORKSPACE=str(workspace))
    if checkout != REPO:
        env["PYTHONPATH"] = str(checkout)  # its hsae_core, not the one installed in the venv
    start = time.perf_counter()
    proc = launch([sys.executable, *argv, *SERVER_FLAGS, "--server.port", str(port)], checkout, env, log)
    try:
        wait_until_answering(port, proc, log)
        answered = time.perf_counter() - start
        time.sleep(delay)
        shown, search = seconds_to_overview_then_search(port)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    return answered, shown, search


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", help="a built workspace (default: the demo, built under a temporary folder)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--delay", default="0,5", help="comma-separated seconds between the server answering and the click")
    ap.add_argument(
        "--without-map",
        action="store_true",
        help="each start on a copy without the Map's layout, as the first start after `hsae demo`: the Overview "
        "computes it in the background while the pages are used (default: a copy with its layout stored)",
    )
    ap.add_argument("--compare-to", help="another checkout: each round also starts the dashboard with its code")
    args = ap.parse_args()
    if not Path("/usr/bin/chromium").exists():
        sys.exit("No /usr/bin/chromium: run `make browser` first")
    with tempfile.TemporaryDirectory(prefix="hsae-first-page-") as work:
        return measure(args, Path(work))


def measure(args, work: Path) -> int:
    """The rounds of :func:`main`, with ``work`` for the demo workspace and the servers' log."""
    given = Path(args.workspace) if args.workspace else demo_workspace(work / "workspaces")
    workspace = copy_workspace(given, work / "copy" / given.name, with_map=not args.without_map)
    delays = [float(d) for d in args.delay.split(",")]
    state = "a fresh copy without its map each start" if args.without_map else "a copy with its map stored"
    print(f"workspace: {given} ({state})\nload before: {load()}", flush=True)
    checkouts = {"": REPO} | ({f"{args.compare_to}: ": Path(args.compare_to).resolve()} if args.compare_to else {})
    starts = [(label + name, argv, path) for label, path in checkouts.items() for name, argv in LAUNCHERS.items()]
    times: dict[tuple[str, float], list[tuple[float, float, float]]] = {}
    for r in range(args.rounds):
        for delay in delays:
            for name, argv, checkout in starts if r % 2 == 0 else list(reversed(starts)):
                if args.without_map:
                    copy_workspace(given, workspace, with_map=False)
                answered, shown, search = one_start(argv, workspace, delay, work / "server.log", checkout)
                times.setdefault((name, delay), []).append((answered, shown, search))
                print(
                    f"  round {r + 1}, {name}, delay {delay:g} s: answered {answered:.1f} s, page {shown:.1f} s, "
                    f"then Search {search:.1f} s"
                )
    print(
        "\n| launcher | click after the server answers | server answered (median s) | Overview shown after the click"
        " (median s) | then Search shown after its click (median s) |"
    )
    print("|---|---|---|---|---|")
    for (name, delay), got in times.items():
        answered, shown, search = (statistics.median(row[i] for row in got) for i in range(3))
        print(f"| {name} | {delay:g} s | {answered:.1f} | {shown:.1f} | {search:.1f} |")
    print(f"\nload after: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
