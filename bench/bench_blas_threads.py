"""Iterative model fits with BLAS as it comes (every core) and with one thread, side by side in one process.

hsae limits BLAS to ``HSAE_FIT_BLAS_THREADS`` threads (default 1) inside its iterative fits (:mod:`hsae_core.blas`);
this sets the variable to 0 (no limit) and to 1 in turn around the product's own functions:

- the embeddings' logistic ceiling of a yes/no target (7 strengths x 5 folds) on the arXiv 2018 abstracts, one
  field against the rest, 80% of the papers to train;
- the holdout model of 20 yes/no hypotheses (logistic MLE with HC3 errors, then 5-fold CV) on the other 20%,
  the hypotheses here being the 20 embedding dimensions most tied to the field, read as "above the median";
- a conditional logit with standard errors on simulated A/B tests (4,000 tests of 2-7 arms, one first arm or,
  in a third of the tests, two).

Each call is timed twice per setting, alternating, and the best kept; the answers must agree.

    python bench/bench_blas_threads.py [--quick]
"""

from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd
from common import data_dir, embed_cached, markdown_table, script_main, setup_env

from hsae_core import conditional_logit
from hsae_core.blas import fit_threads
from hsae_core.stats import embedding_baseline, evaluate_hypotheses

SETTINGS = (("every core", "0"), ("one thread", "1"))


def _timed(setting: str, fn):
    os.environ["HSAE_FIT_BLAS_THREADS"] = setting
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _side_by_side(name: str, fn, same) -> dict:
    seconds = {label: np.inf for label, _ in SETTINGS}
    answers = {}
    for _ in range(2):
        for label, setting in SETTINGS:
            took, answers[label] = _timed(setting, fn)
            seconds[label] = min(seconds[label], took)
    first, second = (answers[label] for label, _ in SETTINGS)
    row = {"fit": name, **{f"{label} s": seconds[label] for label, _ in SETTINGS}, "same answer": same(first, second)}
    print(row, flush=True)
    return row


def _tests(n_groups: int, rng: np.random.Generator):
    sizes = rng.integers(2, 8, n_groups)
    groups = np.repeat(np.arange(n_groups), sizes)
    X = (rng.random((len(groups), 20)) < 0.3).astype(np.float64)
    utility = X[:, :3] @ np.array([0.8, -0.5, 0.3]) + rng.gumbel(size=len(groups))
    rank = pd.Series(utility).groupby(groups).rank(method="first", ascending=False).to_numpy()
    winners = np.where((rng.random(n_groups) < 1 / 3) & (sizes >= 3), 2, 1)
    return X, (rank <= winners[groups]).astype(np.float64), groups


def run(quick: bool = False) -> dict:
    setup_env()
    frame = pd.read_csv(data_dir() / "arxiv_2018_citations" / "arxiv_2018_with_citations.csv")
    texts = (frame["title"].fillna("") + ". " + frame["abstract"].fillna("")).tolist()
    X = np.asarray(embed_cached(texts), dtype=np.float64)
    order = np.random.default_rng(0).permutation(len(frame))
    train, hold = order[: int(0.8 * len(order))], order[int(0.8 * len(order)) :]
    load_before = os.getloadavg()[0]
    rows = []
    for field in ["physics"] if quick else ["physics", "mathematics", "computer_science"]:
        y = (frame["field"] == field).to_numpy(np.float64)
        rows.append(
            _side_by_side(
                f"logistic ceiling, {field} (train {len(train):,} x {X.shape[1]})",
                lambda y=y: embedding_baseline(X[train], y[train], X[hold], y[hold], "binary"),
                lambda a, b: a["C"] == b["C"] and abs(a["value"] - b["value"]) < 1e-6,
            )
        )
        tied = np.argsort(-np.abs(np.corrcoef(X[train].T, y[train])[-1, :-1]))[:20]
        present = (X[hold][:, tied] > np.median(X[train][:, tied], axis=0)).astype(np.float64)
        rows.append(
            _side_by_side(
                f"holdout model + 5-fold CV, {field} (holdout {len(hold):,} x 20)",
                lambda y=y, present=present: evaluate_hypotheses(present, y[hold], "binary")[1],
                lambda a, b: abs(a["auc_cv"] - b["auc_cv"]) < 1e-6,
            )
        )
    Xc, yc, groups = _tests(4_000, np.random.default_rng(0))
    rows.append(
        _side_by_side(
            f"conditional logit, 4,000 tests ({len(yc):,} arms x 20)",
            lambda: conditional_logit.fit(Xc, yc, groups),
            lambda a, b: np.allclose(a.coef, b.coef, atol=1e-6),
        )
    )
    with fit_threads():  # what a fit sees by default
        from threadpoolctl import threadpool_info

        inside = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
    from threadpoolctl import threadpool_info

    outside = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
    return {
        "rows": rows,
        "blas_threads": outside,
        "blas_threads_in_a_fit": inside,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
    }


def tables(result: dict) -> str:
    labels = [label for label, _ in SETTINGS]
    head = ["fit", *(f"{label} s" for label in labels), "every core / one thread", "same answer"]
    body = [
        [r["fit"], *(r[f"{label} s"] for label in labels), r[f"{labels[0]} s"] / r[f"{labels[1]} s"], r["same answer"]]
        for r in result["rows"]
    ]
    return markdown_table(head, body) + (
        f"\n\nBLAS threads: {result['blas_threads']} outside a fit, {result['blas_threads_in_a_fit']} inside one;"
        f" load average (1 min) {result['load_before']:.2f} before, {result['load_after']:.2f} after"
    )


if __name__ == "__main__":
    script_main("blas_threads", run, tables, "one field only", __doc__)
