"""What a run pays before any learning: hashing embeddings for the SAE cache, row digests, reading HTML texts,
the imports a process (a dashboard page, a CLI command) starts with, and whole commands that only read files.

    python bench/bench_prep.py                # 100k and 1M rows
    python bench/bench_prep.py --rows 100000  # one size
    python bench/bench_prep.py --workspace workspaces/yelp-demo  # also `hsae features` on it (after `hsae demo`)
    python bench/bench_prep.py --workspace workspaces/yelp-demo --compare-to ../old  # and with another checkout

Prints seconds per step, each the best of ``--repeat`` runs in this process (the imports: in fresh processes),
the most memory a step held above what the process held before it, and the machine's load before and after.
Inputs are the shared data's real texts repeated to size (the 4,000 Yelp demo reviews, plain; Upworthy ledes,
98% HTML) and random float32 embeddings of width 384 (hashing reads bytes, so their values do not matter). Not part of `make bench`: these are seconds beside minutes of training.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DIM, REPO, data_dir, yelp_frames  # noqa: E402
from memwatch import PeakRSS  # noqa: E402

HTML_ROWS = 100_000  # the ledes are longer than reviews' first lines; the s41 note's 3 s was measured here


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def best_of(repeat: int, fn) -> tuple[float, float]:
    """(seconds, peak extra MiB): the fastest of ``repeat`` calls (the others include page faults and a busy
    neighbour), and the most memory any call held above what the process held before it."""
    times, extra = [], 0.0
    for _ in range(repeat):
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        extra = max(extra, mem.extra_mib)
    return min(times), extra


def repeated(texts: pd.Series, rows: int) -> pd.Series:
    return pd.Series(np.resize(texts.to_numpy(dtype=object), rows), dtype=object)


def process_seconds(argv: list[str], repeat: int, code: Path = REPO, status: int = 0) -> float:
    """Wall seconds of a fresh ``python argv...`` run in the checkout ``code`` (its hsae_core), fastest of
    ``repeat``; it must exit with ``status`` (2: the command refuses its input)."""

    def once() -> float:
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, *argv], cwd=code, capture_output=True, text=True)
        if done.returncode != status:
            raise SystemExit(f"{argv} exited with {done.returncode}, not {status}: {done.stderr.strip()[-300:]}")
        return time.perf_counter() - t0

    return min(once() for _ in range(repeat))


def import_seconds(statement: str, repeat: int) -> float:
    """Wall seconds of ``python -c statement`` minus a bare interpreter's, fastest of ``repeat``."""
    return process_seconds(["-c", statement], repeat) - process_seconds(["-c", "pass"], repeat)


def one_size(rows: int, reviews: pd.Series, repeat: int) -> None:
    """The steps whose cost grows with the rows, on ``rows`` embeddings and reviews."""
    from hsae_core.data import without_markup
    from hsae_core.sae import row_digests
    from hsae_core.sae_cache import cache_key

    X = np.random.default_rng(0).standard_normal((rows, DIM), dtype=np.float32)
    plain = repeated(reviews, rows)
    steps = {
        f"SAE cache key (sha256 of {DIM}-wide float32)": lambda: cache_key(X, {"m": 64, "k": 24}),
        "row digests (BLAKE2b per row)": lambda: row_digests(X),
        "HTML check on plain reviews": lambda: without_markup(plain),
    }
    for name, step in steps.items():
        seconds, extra = best_of(repeat, step)
        print(f"| {name} | {rows:,} | {seconds:.2f} | {extra:.0f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="100000,1000000", help="comma-separated row counts")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workspace", default=None, help="also time `hsae features` (a listing, one feature) on it")
    ap.add_argument("--compare-to", default=None, help="another checkout: time `hsae features` with its code too")
    args = ap.parse_args()
    from hsae_core.data import without_markup

    folder = data_dir()
    reviews = pd.concat([f["text"] for f in yelp_frames()]).astype(str)
    ledes = pd.read_parquet(folder / "upworthy_headlines" / "upworthy_exploratory_packages.parquet")["lede"]
    ledes = ledes.dropna().astype(str)
    print(f"load before: {load_average()}")
    print("| step | rows | seconds | peak extra MiB |\n|---|---|---|---|")
    for rows in (int(r) for r in args.rows.split(",")):
        one_size(rows, reviews, args.repeat)
    html = repeated(ledes, HTML_ROWS)
    changed = without_markup(html)[1]
    seconds, extra = best_of(args.repeat, lambda: without_markup(html))
    print(f"| HTML removed from Upworthy ledes ({changed:,} changed) | {HTML_ROWS:,} | {seconds:.2f} | {extra:.0f} |")
    print(f"| `import torch` (fresh process) | | {import_seconds('import torch', args.repeat):.2f} | |")
    print(f"| `import ui` (what a dashboard page imports first) | | {import_seconds('import ui', args.repeat):.2f} | |")
    print(f"| `import hsae_core.cli` | | {import_seconds('import hsae_core.cli', args.repeat):.2f} | |")
    other = Path(args.compare_to).resolve() if args.compare_to else None
    reviews_file = str(data_dir() / "yelp_reviews_demo" / "yelp-demo-val-2K.jsonl")
    missing_column = ["--data", reviews_file, "--text-col", "review", "--target-col", "stars"]
    commands = {  # shown as -> (the CLI's arguments, the exit status they must give)
        "hsae models": (["models"], 0),
        "hsae hypothesize naming a column the table lacks": (["hypothesize", *missing_column, "--out", "o"], 2),
        "hsae build naming a column the table lacks": (["build", *missing_column[:4], "--out", "o"], 2),
    }
    if args.workspace:
        workspace = str(Path(args.workspace).resolve())
        commands["hsae features WS"] = (["features", workspace], 0)
        commands["hsae features WS --feature 0"] = (["features", workspace, "--feature", "0"], 0)
    for shown, (command, status) in commands.items():
        argv = ["-m", "hsae_core.cli", *command]
        seconds = process_seconds(argv, args.repeat, status=status)
        beside = ""
        if other:
            beside = f" (with {other.name}: {process_seconds(argv, args.repeat, other, status):.2f})"
        print(f"| `{shown}` (whole process) | | {seconds:.2f}{beside} | |")
    print(f"load after: {load_average()}")


if __name__ == "__main__":
    main()
