"""The Map's layout from UMAP's spectral start and from a PCA start, side by side on the shared corpora.

For each corpus the product's own ``hsae_core.mapping.compute_layout`` runs twice per start in one process, on
the MiniLM embeddings of its texts (Upworthy headlines, arXiv 2018 abstracts, the Yelp demo reviews, the ML/NLP
abstracts, the arXiv cs abstracts). Printed per start:

- how far any document moved between the two runs (0: the same map every build);
- the share of each document's 10 nearest neighbours (cosine, in the embedding) that are also its 10 nearest
  on the map, over 2,000 sampled documents (how much of the local structure the map keeps);
- seconds per layout (the faster of the two), and for the PCA start, the product's, the seconds of one layout
  in a new interpreter: what a dashboard server's first map pays, UMAP compiling its numba code included.

    python bench/bench_layout.py [--quick]     # --quick: the arXiv cs abstracts only
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from common import data_dir, embed_cached, markdown_table, script_main, setup_env

from hsae_core.mapping import compute_layout

STARTS = ("spectral", "pca")
NEIGHBOURS, SAMPLE = 10, 2_000


def corpora(quick: bool) -> dict[str, list[str]]:
    root = data_dir()
    cs = pd.read_csv(root / "arxiv_cs_categories_small" / "arxiv_data.csv")
    found = {"arXiv cs abstracts": cs["summary"].astype(str).tolist()}
    if quick:
        return found
    upworthy = pd.read_parquet(root / "upworthy_headlines" / "upworthy_exploratory_packages.parquet")
    arxiv = pd.read_csv(root / "arxiv_2018_citations" / "arxiv_2018_with_citations.csv")
    yelp = [
        pd.read_json(root / "yelp_reviews_demo" / f"yelp-demo-{p}-2K.jsonl", lines=True) for p in ("val", "holdout")
    ]
    stance = pd.read_json(root / "ml_nlp_abstracts_stance" / "human_annotated_all.json")
    return {
        "Upworthy headlines": upworthy["headline"].astype(str).tolist(),
        "arXiv 2018 abstracts": arxiv["abstract"].astype(str).tolist(),
        "Yelp demo reviews": pd.concat(yelp)["text"].astype(str).tolist(),
        "ML/NLP abstracts": stance["abstract"].astype(str).tolist(),
        **found,
    }


def neighbours_kept(X: np.ndarray, coords: np.ndarray, seed: int = 0) -> float:
    """Mean share of a sampled document's 10 nearest neighbours (cosine) that stay among its 10 nearest on the map."""
    rows = np.random.default_rng(seed).choice(len(X), size=min(SAMPLE, len(X)), replace=False)
    unit = X[rows] / np.linalg.norm(X[rows], axis=1, keepdims=True)
    near = unit @ unit.T
    np.fill_diagonal(near, -np.inf)
    flat = coords[rows].astype(np.float64)
    far = ((flat[:, None, :] - flat[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(far, np.inf)
    a = np.argsort(-near, axis=1)[:, :NEIGHBOURS]
    b = np.argsort(far, axis=1)[:, :NEIGHBOURS]
    return float(np.mean([len(set(x) & set(y)) for x, y in zip(a, b)]) / NEIGHBOURS)


_FRESH = """
import sys, time
import numpy as np
from hsae_core.mapping import compute_layout
X = np.load(sys.argv[1])
t0 = time.perf_counter()
compute_layout(X, init="pca")
print(time.perf_counter() - t0)
"""


def fresh_process_seconds(X: np.ndarray) -> float:
    """Seconds of one PCA-started layout in a new interpreter (its imports not counted; UMAP's compiling is)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "embeddings.npy"
        np.save(path, X)
        done = subprocess.run([sys.executable, "-c", _FRESH, str(path)], capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> dict:
    setup_env()
    rows = []
    for name, texts in corpora(quick).items():
        X = embed_cached(texts)
        fresh = fresh_process_seconds(X)
        for start in STARTS:
            maps, seconds = [], []
            for _ in range(2):
                t0 = time.perf_counter()
                maps.append(compute_layout(X, init=start))
                seconds.append(time.perf_counter() - t0)
            row = {
                "corpus": name,
                "documents": len(X),
                "start": start,
                "moved": float(np.abs(maps[0] - maps[1]).max()),
                "neighbours_kept": neighbours_kept(X, maps[0]),
                "seconds": min(seconds),
                "fresh_process_seconds": fresh if start == "pca" else None,
            }
            print(row, flush=True)
            rows.append(row)
    return {"rows": rows}


def tables(result: dict) -> str:
    head = [
        "corpus",
        "documents",
        "start",
        "largest move between two runs",
        "10 nearest kept on the map",
        "s",
        "s in a new process",
    ]
    body = [
        [
            r["corpus"],
            f"{r['documents']:,}",
            r["start"],
            round(r["moved"], 3),
            round(r["neighbours_kept"], 3),
            round(r["seconds"], 1),
            "" if r.get("fresh_process_seconds") is None else round(r["fresh_process_seconds"], 1),
        ]
        for r in result["rows"]
    ]
    return markdown_table(head, body)


if __name__ == "__main__":
    script_main("layout", run, tables, "the arXiv cs abstracts only", __doc__)
