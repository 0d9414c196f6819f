"""The conditional logit of :mod:`hsae_core.conditional_logit` against statsmodels' ``ConditionalLogit``, side by
side on the same simulated A/B tests: groups of 2-7 arms, 20 presence columns of which three move the chance
of coming first. Settings: one first arm per test (a softmax within each test, solved in closed form), the
first two arms in a third of the tests (the general recursion), and one first arm per test beside one test of
2,000 arms with 500 first (the recursion, its cost dominated by one large group). Prints the time of one fit
with standard errors, and how far the two answers are apart (coefficients and SEs).

    python bench/bench_conditional_logit.py [--quick]
"""

from __future__ import annotations

import os
import time
import warnings

import numpy as np
import pandas as pd
from common import markdown_table, script_main

from hsae_core import conditional_logit


def _tests(
    n_groups: int, rng: np.random.Generator, two_first: float = 0.0, large: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Simulated tests; in a share ``two_first`` of them (those of 3 arms or more) the first two arms have the
    target. With ``large``, one more group of that many rows, a quarter of them with the target."""
    sizes = rng.integers(2, 8, n_groups)
    winners = np.where((rng.random(n_groups) < two_first) & (sizes >= 3), 2, 1)
    if large:
        sizes, winners = np.append(sizes, large), np.append(winners, large // 4)
    groups = np.repeat(np.arange(len(sizes)), sizes)
    X = (rng.random((len(groups), 20)) < 0.3).astype(np.float64)
    utility = X[:, :3] @ np.array([0.8, -0.5, 0.3]) + rng.gumbel(size=len(groups))
    rank = pd.Series(utility).groupby(groups).rank(method="first", ascending=False).to_numpy()
    return X, (rank <= winners[groups]).astype(np.float64), groups


def run(quick: bool = False) -> dict:
    from statsmodels.discrete.conditional_models import ConditionalLogit

    rng = np.random.default_rng(0)
    conditional_logit.fit(*_tests(10, rng), _recursion=True)  # torch's first autograd call is not the fit's cost
    rows = []
    settings = [(n, share, 0) for n in ([4_000] if quick else [4_000, 40_000]) for share in (0.0, 1 / 3)]
    settings += [] if quick else [(4_000, 0.0, 2_000)]
    names = {0.0: "one per test", 1 / 3: "two in a third of the tests"}
    for n_groups, two_first, large in settings:
        X, y, groups = _tests(n_groups, rng, two_first, large)
        t0 = time.perf_counter()
        ours = conditional_logit.fit(X, y, groups)
        ours_s = time.perf_counter() - t0
        row = {
            "groups": n_groups + bool(large),
            "first arms": names[two_first]
            + (f", and one test of {large:,} arms with {large // 4} first" if large else ""),
            "rows": len(y),
            "ours_s": ours_s,
            "statsmodels_s": None,
            "coef_gap": None,
            "se_gap": None,
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            try:
                theirs = ConditionalLogit(y, X, groups=groups).fit(disp=0)
            except RecursionError:  # its likelihood recurses once per row of a group, in Python
                row["statsmodels_fails"] = "RecursionError"
            else:
                row["statsmodels_s"] = time.perf_counter() - t0
                row["coef_gap"] = float(np.abs(ours.coef - np.asarray(theirs.params)).max())
                row["se_gap"] = float(np.abs(ours.se - np.asarray(theirs.bse)).max())
        rows.append(row)
        print(rows[-1], flush=True)
    return {"rows": rows, "load": os.getloadavg()[0]}


def tables(result: dict) -> str:
    head = [
        "groups",
        "first arms",
        "rows",
        "ours s",
        "statsmodels s",
        "statsmodels / ours",
        "largest coef gap",
        "largest SE gap",
    ]
    body = [
        [
            f"{r['groups']:,}",
            r.get("first arms", "one per test"),
            f"{r['rows']:,}",
            r["ours_s"],
            r["statsmodels_s"] if r["statsmodels_s"] is not None else f"fails ({r['statsmodels_fails']})",
            r["statsmodels_s"] / r["ours_s"] if r["statsmodels_s"] is not None else "–",
            r["coef_gap"] if r["coef_gap"] is not None else "–",
            r["se_gap"] if r["se_gap"] is not None else "–",
        ]
        for r in result["rows"]
    ]
    return markdown_table(head, body) + f"\n\nload average (1 min) at the end: {result['load']:.2f}"


if __name__ == "__main__":
    script_main("conditional_logit", run, tables, "4,000 groups only", __doc__)
