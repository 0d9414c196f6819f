"""Shared pieces of the benchmark suite: paths, inputs (real and synthetic), worker processes, tables.

Every timed stage runs in a child process (ours with this venv, the reference with
``bench/.venv-ref``) that prints one ``RESULT {json}`` line per finished item. The parent enforces a
wall-clock and a memory budget, so a reference run that cannot finish a size becomes a row that says
so instead of a missing row or a machine that swaps.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import numpy as np

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"
INPUTS = RESULTS / "inputs"
OUR_PYTHON = Path(sys.executable)
DIM = 384

sys.path.insert(0, str(BENCH))
from memwatch import rss_bytes  # noqa: E402


def data_dir() -> Path:
    env = os.environ.get("HSAE_DATA_DIR")
    path = Path(env) if env else REPO.parent / "shared" / "data"
    if not (path / "yelp_reviews_demo").is_dir():
        raise SystemExit(f"Benchmark data not found at {path}: put ../shared/data beside the checkout or set HSAE_DATA_DIR")
    return path


def setup_env() -> None:
    """Embedding cache under bench/results, never the network."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    INPUTS.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HSAE_CACHE_DIR", str(RESULTS / "cache"))
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    import torch

    torch.set_num_threads(bench_threads())


def bench_threads() -> int:
    """Threads every measured stage uses (HSAE_BENCH_THREADS, default 1), on both sides."""
    return int(os.environ.get("HSAE_BENCH_THREADS", "1"))


# ----------------------------------------------------------------------------- inputs
def embed_cached(texts: list[str]) -> np.ndarray:
    """MiniLM embeddings through the product's own disk cache (input preparation: all cores, not timed)."""
    import torch

    from hsae_core.embed import default_embedder, embed_texts

    before = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    try:
        return embed_texts(texts, default_embedder())
    finally:
        torch.set_num_threads(before)


def yelp_frames():
    import pandas as pd

    folder = data_dir() / "yelp_reviews_demo"
    train = pd.read_json(folder / "yelp-demo-val-2K.jsonl", lines=True)
    hold = pd.read_json(folder / "yelp-demo-holdout-2K.jsonl", lines=True)
    return train, hold


def yelp_embeddings() -> Path:
    """The 4,000 real Yelp reviews (val file then holdout file) embedded, as an .npy path."""
    out = INPUTS / "yelp4k.npy"
    if not out.exists():
        train, hold = yelp_frames()
        X = embed_cached(train["text"].tolist() + hold["text"].tolist())
        np.save(out, X.astype(np.float32))
    return out


def synthetic_embeddings(n: int, seed: int = 0, n_concepts: int = 2048, active: int = 8, noise: float = 0.3,
                         with_texts: bool = False):
    """Reproducible unit-norm vectors built like text embeddings are thought to be: a few concepts each.

    Each row mixes ``active`` of ``n_concepts`` random unit directions (Zipf-like popularity, positive
    exponential weights) plus isotropic noise, then is normalised. Generated in chunks, float32.
    With ``with_texts`` also returns one pseudo-document per row naming its concepts ("c12 c907 ..."),
    so text-based steps (keyword labels) have something consistent to read.
    """
    rng = np.random.default_rng(seed)
    dirs = rng.standard_normal((n_concepts, DIM)).astype(np.float32)
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    popularity = 1.0 / np.arange(1, n_concepts + 1) ** 0.7
    popularity /= popularity.sum()
    out = np.empty((n, DIM), dtype=np.float32)
    texts: list[str] = []
    for start in range(0, n, 50_000):
        rows = min(50_000, n - start)
        picks = rng.choice(n_concepts, size=(rows, active), p=popularity)
        weights = rng.exponential(1.0, size=(rows, active)).astype(np.float32)
        block = np.einsum("ra,rad->rd", weights, dirs[picks])
        block += noise * rng.standard_normal((rows, DIM)).astype(np.float32) / np.sqrt(DIM) * np.linalg.norm(block, axis=1, keepdims=True)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start : start + rows] = block
        if with_texts:
            texts.extend(" ".join(f"c{c}" for c in row) for row in picks.tolist())
    return (out, texts) if with_texts else out


def synthetic_path(n: int, seed: int = 0) -> Path:
    out = INPUTS / f"synthetic_{n}_{seed}.npy"
    if not out.exists():
        np.save(out, synthetic_embeddings(n, seed))
    return out


# ----------------------------------------------------------------------------- workers
def run_worker(python: Path, script: str, task: dict, timeout: float, mem_limit_gib: float,
               expect: Iterable[str] = ()) -> list[dict]:
    """Run ``bench/<script>`` with ``task`` (JSON) under a time and memory budget.

    Returns the worker's RESULT dicts; every name in ``expect`` that did not come back gets a dict
    ``{"item": name, "failed": "<why>"}`` so tables can say why a row is empty.
    """
    # Same thread count on both sides (torch, BLAS, FAISS); 1 by default so a shared, oversubscribed
    # machine does not distort the ratios (2 threads ran 3x slower than 1 under load here).
    threads = str(bench_threads())
    env = dict(os.environ, OPENAI_API_KEY="sk-offline-benchmark-never-used", HF_HUB_OFFLINE="1",
               PYTHONPATH=str(BENCH), PYTHONUNBUFFERED="1", OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads,
               OPENBLAS_NUM_THREADS=threads)
    env.pop("OPENAI_BASE_URL", None)
    proc = subprocess.Popen([str(python), str(BENCH / script), json.dumps(task)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=str(REPO))
    results: list[dict] = []
    err_tail: list[str] = []

    def read_out():
        for line in proc.stdout:
            if line.startswith("RESULT "):
                results.append(json.loads(line[7:]))

    def read_err():
        for line in proc.stderr:
            err_tail.append(line.rstrip())
            del err_tail[:-20]

    readers = [threading.Thread(target=read_out, daemon=True), threading.Thread(target=read_err, daemon=True)]
    for t in readers:
        t.start()
    why, t0, limit = None, time.monotonic(), mem_limit_gib * 2**30
    while proc.poll() is None:
        if time.monotonic() - t0 > timeout:
            why = f"not finished within {timeout:.0f} s"
        elif rss_bytes(proc.pid) > limit:
            why = f"exceeded the {mem_limit_gib:g} GiB memory budget"
        if why:
            proc.kill()
            break
        time.sleep(0.05)
    proc.wait()
    for t in readers:
        t.join(timeout=5)
    if why is None and proc.returncode != 0:
        last = next((l for l in reversed(err_tail) if l.strip()), "no message")
        why = f"crashed (exit {proc.returncode}): {last[:160]}"
    done = {r.get("item") for r in results}
    for name in expect:
        if name not in done:
            results.append({"item": name, "failed": why or "no result"})
    return results


def emit(item: str, **fields) -> None:
    """Worker side: report one finished item to the parent."""
    print("RESULT " + json.dumps({"item": item, **fields}, default=float), flush=True)


# ----------------------------------------------------------------------------- output
def fmt(value, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if value != value:
            return "—"
        return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def ratio(ours: Optional[float], theirs: Optional[float]) -> str:
    """ours/theirs as text; below 1 means we are faster/smaller."""
    if ours is None or theirs is None or theirs == 0:
        return "—"
    return f"{ours / theirs:.3g}"


def ratio_or_bound(ours: Optional[float], theirs: Optional[float], their_failure: str = "", limit: float = 0) -> str:
    """Like ``ratio``; when the reference ran out of time, the bound that still tells: ``< ours/limit``."""
    if theirs is None and ours is not None and their_failure.startswith("not finished") and limit:
        return f"< {ours / limit:.3g}"
    return ratio(ours, theirs)


def markdown_table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def script_main(suite: str, run, tables, quick_help: str, doc: str) -> None:
    """Command line of one suite's script: run it (or its --quick smoke version), save JSON, print tables."""
    import argparse

    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help=quick_help)
    args = ap.parse_args()
    res = run(args.quick)
    save_json(suite + ("_quick" if args.quick else ""), res)
    print(tables(res))


def save_json(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=float))
    return path


def machine_description() -> dict:
    cpu = "unknown"
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    try:
        import torch

        torch_v, threads = torch.__version__, bench_threads()
    except ImportError:
        torch_v, threads = "?", "?"
    load = os.getloadavg()
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem_gib, 1), "python": platform.python_version(),
            "torch": torch_v, "torch_threads": threads, "gpu": "none",
            "load_avg_1m_at_start": round(load[0], 2),
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
