"""Is the holdout's out-of-fold partial R² honest? A run takes the controls out of the whole holdout before its
5 folds (one residualisation, :func:`hsae_core.controls.residualise`); the textbook way fits them inside each
fold, on the training folds only. This runs both on the same simulated holdouts, side by side:

- 20 presence columns (rates 5-50%), numeric controls (one tied to a hypothesis), optionally 200 absorbed
  groups with their own means, and a target that the controls move;
- "null": no hypothesis moves the target beyond the controls, so an honest out-of-fold R² is at most 0 on
  average; "effect": three hypotheses do.

Inside-the-fold reference: numbers are fit on the training folds and applied to the test fold; with groups,
each fold holds whole groups (as the run's folds do) and a test group's mean comes from its own rows, since
no other fold has seen it.

    python bench/bench_partial_r2.py [--quick]
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
from common import markdown_table, script_main
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import GroupKFold, KFold

from hsae_core.controls import ControlDesign
from hsae_core.stats import _adjusted_cv

FOLDS, HYPOTHESES = 5, 20
SETTINGS = (  # name, holdout rows, numeric controls, absorbed groups, effect of each of 3 hypotheses
    ("null, 3 numbers", 1000, 3, None, 0.0),
    ("null, 10 numbers, 300 rows", 300, 10, None, 0.0),
    ("null, 200 groups + 2 numbers", 1000, 2, 200, 0.0),
    ("effect, 3 numbers", 1000, 3, None, 0.4),
    ("effect, 10 numbers, 300 rows", 300, 10, None, 0.4),
    ("effect, 200 groups + 2 numbers", 1000, 2, 200, 0.4),
)


def _within(M: np.ndarray, groups: np.ndarray) -> np.ndarray:
    frame = pd.DataFrame(np.asarray(M, dtype=np.float64).reshape(len(M), -1))
    return (frame - frame.groupby(groups).transform("mean")).to_numpy().reshape(np.shape(M))


def _fit_in_fold(
    X: np.ndarray, y: np.ndarray, C: np.ndarray, groups, train: np.ndarray, test: np.ndarray
) -> tuple[np.ndarray, ...]:
    """(X, y) of the training and test folds less the controls fitted on the training fold."""
    if groups is None:
        D_train = np.column_stack([np.ones(len(train)), C[train]])
        D_test = np.column_stack([np.ones(len(test)), C[test]])
        Xy_train, Xy_test = np.column_stack([X[train], y[train]]), np.column_stack([X[test], y[test]])
    else:
        D_train, D_test = _within(C[train], groups[train]), _within(C[test], groups[test])
        Xy_train = _within(np.column_stack([X[train], y[train]]), groups[train])
        Xy_test = _within(np.column_stack([X[test], y[test]]), groups[test])
    beta, *_ = np.linalg.lstsq(D_train, Xy_train, rcond=None)
    left_train, left_test = Xy_train - D_train @ beta, Xy_test - D_test @ beta
    return left_train[:, :-1], left_train[:, -1], left_test[:, :-1], left_test[:, -1]


def in_fold_partial_r2(X: np.ndarray, y: np.ndarray, C: np.ndarray, groups, seed: int) -> float:
    """Pooled out-of-fold partial R² with the controls fitted inside each fold."""
    splitter = KFold(FOLDS, shuffle=True, random_state=seed) if groups is None else GroupKFold(FOLDS)
    pred, left = np.empty(len(y)), np.empty(len(y))
    for train, test in splitter.split(X, y, groups):
        X_train, y_train, X_test, left[test] = _fit_in_fold(X, y, C, groups, train, test)
        pred[test] = LinearRegression().fit(X_train, y_train).predict(X_test)
    return float(1 - np.sum((left - pred) ** 2) / np.sum((left - left.mean()) ** 2))


def run(quick: bool = False) -> dict:
    rng = np.random.default_rng(0)
    reps = 20 if quick else 200
    rows = []
    for name, n, q, n_groups, effect in SETTINGS:
        ours, reference = [], []
        for rep in range(reps):
            X = (rng.random((n, HYPOTHESES)) < rng.uniform(0.05, 0.5, HYPOTHESES)).astype(np.float64)
            C = rng.normal(size=(n, q))
            C[:, 0] += X[:, 0]  # a control tied to a hypothesis: what it explains is not the hypothesis's
            y = C @ rng.normal(size=q) + effect * X[:, 1:4].sum(1) + rng.normal(size=n)
            design = ControlDesign(C, None if n_groups is None else rng.integers(0, n_groups, n))
            if design.groups is not None:
                y = y + rng.normal(size=design.groups.max() + 1)[design.groups]
            ours.append(_adjusted_cv(X, y, "continuous", FOLDS, rep, design)[0])
            reference.append(in_fold_partial_r2(X, y, C, design.groups, rep))
        gap = np.array(ours) - np.array(reference)
        rows.append(
            {
                "setting": name,
                "replications": reps,
                "run": float(np.mean(ours)),
                "in_fold": float(np.mean(reference)),
                "gap": float(gap.mean()),
                "gap_se": float(gap.std(ddof=1) / np.sqrt(reps)),
                "gap_max": float(gap.max()),
            }
        )
        print(rows[-1], flush=True)
    return {"rows": rows, "load": os.getloadavg()[0]}


def tables(result: dict) -> str:
    head = [
        "setting",
        "replications",
        "run's R² (mean)",
        "in-fold R² (mean)",
        "gap (run − in-fold)",
        "gap's SE",
        "largest gap",
    ]
    body = [
        [r["setting"], r["replications"], r["run"], r["in_fold"], r["gap"], r["gap_se"], r["gap_max"]]
        for r in result["rows"]
    ]
    return markdown_table(head, body) + f"\n\nload average (1 min) at the end: {result['load']:.2f}"


if __name__ == "__main__":
    script_main("partial_r2", run, tables, "20 replications of each setting", __doc__)
