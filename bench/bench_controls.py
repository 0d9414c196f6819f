"""What adjusting for columns costs: the stepwise choice of 20 hypotheses and the holdout model, without
controls, with 3 numeric controls, and with an absorbed column of one group per 5 rows (an A/B test id),
for the continuous target and for a yes/no one (the row that is first in its group: a conditional logit).

Synthetic codes (N rows x 350 latents, 32 active per row, Zipf-like popularity) and a target tied to a few
latents; every setting runs in this one process, side by side, on the same inputs. Each call is timed alone,
then repeated for its peak extra memory: numpy's own allocations (tracemalloc) during the call.

    python bench/bench_controls.py [--quick]
"""

from __future__ import annotations

import os
import time
import tracemalloc

import numpy as np
import pandas as pd
import scipy.sparse as sp
from common import markdown_table, script_main
from common_worker import synthetic_task_codes
from memwatch import PeakRSS

from hsae_core.choose import choose_hypotheses
from hsae_core.controls import ControlDesign
from hsae_core.stats import evaluate_hypotheses

M, K_ACTIVE, N_HYPOTHESES = 350, 32, 20


def _timed(fn, *args, **kwargs):
    """(result, seconds, peak MiB): timed on its own, then called again under tracemalloc for the peak (tracing
    slows Python-heavy work such as the conditional logit's autograd several-fold, numpy's hardly). Tracing
    sees numpy's allocations, not torch's: the larger of it and the process's resident-memory rise during the
    timed call (sampled; memory freed by earlier calls and reused does not show) is the peak."""
    with PeakRSS() as rss:
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        seconds = time.perf_counter() - t0
    tracemalloc.start()
    fn(*args, **kwargs)
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return out, seconds, max(peak, rss.extra_mib)


def run(quick: bool = False) -> dict:
    rng = np.random.default_rng(0)
    evaluate_hypotheses(rng.integers(0, 2, (50, 2)).astype(float), rng.normal(size=50), "continuous")  # imports
    rows = []
    for n in [20_000] if quick else [20_000, 200_000, 1_000_000]:
        indptr, indices, data, y = synthetic_task_codes(n, M, K_ACTIVE, seed=1)
        codes = sp.csr_matrix((data, indices, indptr), shape=(n, M))
        groups = rng.integers(0, n // 5, n)
        first = (pd.Series(y).groupby(groups).rank(method="first", ascending=False) == 1).to_numpy(np.float64)
        settings = {  # name: (controls, kind, target)
            "none": (None, "continuous", y),
            "3 numbers": (ControlDesign(rng.normal(size=(n, 3))), "continuous", y),
            f"{n // 5:,} groups": (ControlDesign(np.zeros((n, 0)), groups), "continuous", y),
            f"{n // 5:,} groups, yes/no (first in its group)": (
                ControlDesign(np.zeros((n, 0)), groups),
                "binary",
                first,
            ),
        }
        for name, (controls, kind, target) in settings.items():
            choice, select_s, select_mib = _timed(
                choose_hypotheses,
                codes,
                target,
                method="stepwise",
                n=N_HYPOTHESES,
                kind=kind,
                top_n=100,
                controls=controls,
            )
            annotations = np.column_stack(
                [(codes[:, j].toarray().ravel() > t) for j, t in zip(choice.latents, choice.thresholds)]
            ).astype(np.float64)
            (_, summary), eval_s, eval_mib = _timed(evaluate_hypotheses, annotations, target, kind, controls=controls)
            rows.append(
                {
                    "rows": n,
                    "controls": name,
                    "select_s": select_s,
                    "select_peak_mib": select_mib,
                    "evaluate_s": eval_s,
                    "evaluate_peak_mib": eval_mib,
                    "metric_cv": summary[f"{summary['metric']}_cv"],
                    "metric": "within AUC" if summary.get("auc_within") else "R²",
                }
            )
            print(rows[-1], flush=True)
    return {"rows": rows, "load": os.getloadavg()[0]}


def tables(result: dict) -> str:
    head = ["rows", "controls", "select s", "select peak MiB", "evaluate s", "evaluate peak MiB", "out of fold"]
    body = [
        [
            f"{r['rows']:,}",
            r["controls"],
            r["select_s"],
            r["select_peak_mib"],
            r["evaluate_s"],
            r["evaluate_peak_mib"],
            f"{r['metric']} {r['metric_cv']:.3f}",
        ]
        for r in result["rows"]
    ]
    return markdown_table(head, body) + f"\n\nload average (1 min) at the end: {result['load']:.2f}"


if __name__ == "__main__":
    script_main("controls", run, tables, "20,000 rows only", __doc__)
