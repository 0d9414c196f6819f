"""Server-side time of the dashboard's two interactive paths: a slider change (steered search) and opening a
feature page (all statistics for one feature), on the demo workspace and on a 100k-document synthetic one.

    .venv/bin/python bench/bench_dashboard.py [--demo workspaces/yelp-demo] [--n-synthetic 100000] [--repeats 30]

What is timed is exactly what a page rerun computes after its cached objects (workspace, SAE, FAISS index,
CSC codes) are loaded: `SteeredSearch.search(vector, edits)` and `FeatureExplorer.page(latent, column)`.
The synthetic workspace uses unit-norm random embeddings and an SAE trained briefly on a sample of them
(its quality is irrelevant to timing; the code's sparsity k and width m are what matter).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hsae_core.features import FeatureExplorer  # noqa: E402
from hsae_core.sae import SparseAutoencoder  # noqa: E402
from hsae_core.search import SteeredSearch, build_index  # noqa: E402
from hsae_core.workspace import Workspace  # noqa: E402


def timed(fn, repeats: int) -> tuple[float, float]:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(0.95 * len(times)))]


def measure(name, embeddings, sae, codes, column, repeats, index=None) -> list[dict]:
    t0 = time.perf_counter()
    engine = SteeredSearch(embeddings, sae, codes, index=index)
    fx = FeatureExplorer(codes, sae.decoder_directions)
    load_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    queries = embeddings[rng.choice(len(embeddings), size=repeats, replace=False)]
    state = {"i": 0}

    def slider_change():
        q = np.asarray(queries[state["i"] % len(queries)])
        state["i"] += 1
        latents, acts = engine.query_code(q)
        engine.search(q, {int(latents[0]): -float(acts[0])}, k=10)

    def unsteered():
        engine.search(np.asarray(queries[state["i"] % len(queries)]), {}, k=10)

    busy = np.argsort(-np.asarray((codes > 0).sum(axis=0)).ravel())[:repeats]

    def feature_page():
        fx.page(int(busy[state["i"] % len(busy)]), column)
        state["i"] += 1

    rows = []
    for what, fn in (
        ("slider change (steered search)", slider_change),
        ("unsteered search", unsteered),
        ("open feature page", feature_page),
    ):
        med, p95 = timed(fn, repeats)
        rows.append(
            {
                "workspace": name,
                "docs": len(embeddings),
                "m": sae.config_.m,
                "k": sae.config_.k,
                "action": what,
                "median_ms": round(med, 2),
                "p95_ms": round(p95, 2),
                "cached_load_s": round(load_s, 2),
            }
        )
    return rows


def synthetic(n: int, d: int = 384, m: int = 4096, k: int = 32, seed: int = 0):
    rng = np.random.default_rng(seed)
    # Clustered, unit-norm vectors so that neighbours and features are not uniform noise.
    centres = rng.normal(size=(256, d)).astype(np.float32)
    X = centres[rng.integers(0, 256, n)] + 0.6 * rng.normal(size=(n, d)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    sae = SparseAutoencoder(m=m, k=k, seed=seed, max_epochs=2, batch_size=1024).fit(X[:20_000])
    codes = sae.transform(X)
    column = pd.Series(rng.integers(1, 6, n), name="stars")
    return X, sae, codes, column


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", default="workspaces/yelp-demo")
    ap.add_argument("--n-synthetic", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()
    rows = []
    if Workspace.is_workspace(args.demo):
        ws = Workspace.open(args.demo)
        col = ws.frame["stars"] if "stars" in ws.frame else None
        rows += measure(f"demo ({ws.name})", np.asarray(ws.embeddings), ws.sae, ws.codes, col, args.repeats, ws.index)
    else:
        print(f"(no demo workspace at {args.demo}: start the dashboard once to build it)")
    if args.n_synthetic:
        t0 = time.perf_counter()
        X, sae, codes, column = synthetic(args.n_synthetic)
        print(f"synthetic workspace built in {time.perf_counter() - t0:.1f} s")
        rows += measure("synthetic", X, sae, codes, column, args.repeats, build_index(X))
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
