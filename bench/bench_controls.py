"""What adjusting for columns costs: the stepwise choice of 20 hypotheses and the holdout model, without
controls, with 3 numeric controls, and with an absorbed column of one group per 5 rows (an A/B test id).

Synthetic codes (N rows x 350 latents, 32 active per row, Zipf-like popularity) and a target tied to a few
latents; all three settings run in this one process, side by side, on the same inputs. Peak extra memory is
numpy's own allocations (tracemalloc) during the call.

    python bench/bench_controls.py [--quick]
"""

from __future__ import annotations

import os
import time
import tracemalloc

import numpy as np
import scipy.sparse as sp
from common import markdown_table, script_main
from common_worker import synthetic_task_codes

from hsae_core.choose import choose_hypotheses
from hsae_core.controls import ControlDesign
from hsae_core.stats import evaluate_hypotheses

M, K_ACTIVE, N_HYPOTHESES = 350, 32, 20


def _timed(fn, *args, **kwargs):
    tracemalloc.start()
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return out, seconds, peak


def run(quick: bool = False) -> dict:
    rng = np.random.default_rng(0)
    evaluate_hypotheses(rng.integers(0, 2, (50, 2)).astype(float), rng.normal(size=50), "continuous")  # imports
    rows = []
    for n in [20_000] if quick else [20_000, 200_000, 1_000_000]:
        indptr, indices, data, y = synthetic_task_codes(n, M, K_ACTIVE, seed=1)
        codes = sp.csr_matrix((data, indices, indptr), shape=(n, M))
        settings = {
            "none": None,
            "3 numbers": ControlDesign(rng.normal(size=(n, 3))),
            f"{n // 5:,} groups": ControlDesign(np.zeros((n, 0)), rng.integers(0, n // 5, n)),
        }
        for name, controls in settings.items():
            choice, select_s, select_mib = _timed(
                choose_hypotheses,
                codes,
                y,
                method="stepwise",
                n=N_HYPOTHESES,
                kind="continuous",
                top_n=100,
                controls=controls,
            )
            annotations = np.column_stack(
                [(codes[:, j].toarray().ravel() > t) for j, t in zip(choice.latents, choice.thresholds)]
            ).astype(np.float64)
            (_, summary), eval_s, eval_mib = _timed(
                evaluate_hypotheses, annotations, y, "continuous", controls=controls
            )
            rows.append(
                {
                    "rows": n,
                    "controls": name,
                    "select_s": select_s,
                    "select_peak_mib": select_mib,
                    "evaluate_s": eval_s,
                    "evaluate_peak_mib": eval_mib,
                    "r2_cv": summary["r2_cv"],
                }
            )
            print(rows[-1], flush=True)
    return {"rows": rows, "load": os.getloadavg()[0]}


def tables(result: dict) -> str:
    head = ["rows", "controls", "select s", "select peak MiB", "evaluate s", "evaluate peak MiB", "R² out of fold"]
    body = [
        [
            f"{r['rows']:,}",
            r["controls"],
            r["select_s"],
            r["select_peak_mib"],
            r["evaluate_s"],
            r["evaluate_peak_mib"],
            r["r2_cv"],
        ]
        for r in result["rows"]
    ]
    return markdown_table(head, body) + f"\n\nload average (1 min) at the end: {result['load']:.2f}"


if __name__ == "__main__":
    script_main("controls", run, tables, "20,000 rows only", __doc__)
