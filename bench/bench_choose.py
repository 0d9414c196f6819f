"""Choosing 20 hypotheses the product's way: selection, learned presence thresholds, near-duplicate removal.

``bench_selection.py`` times the ranking step alone against the reference; this times the whole
``hsae_core.choose.choose_hypotheses`` call with the product's defaults (``settings.SELECTION``) on the
same synthetic codes (N x M, 32 active latents per row), for each selection method. With near-duplicate
removal on, every latent is a candidate, so this is where a dense rows x latents step would show. After
it, the any-of rule a binary target gets (``hsae_core.anyof``; here for the target above its median) is
timed on the chosen hypotheses. Each measurement runs in its own process (peak extra RSS is that
process's own).

    python bench/bench_choose.py [--quick]
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from bench_selection import codes_path, plan
from common import OUR_PYTHON, markdown_table, script_main, setup_env

# "stepwise-binary": stepwise for a 0/1 target (the target above its median), which starts from the best
# single marker (hsae_core.anyof.best_marker) before the R² steps.
METHODS = ("correlation", "stepwise", "stepwise-binary", "separation", "lasso")


def measure_one(codes: str, y: str, method: str) -> dict:
    """One choose_hypotheses call in this process: seconds and peak extra MiB."""
    import numpy as np
    import scipy.sparse as sp
    from memwatch import PeakRSS

    from hsae_core.anyof import fit_any_of
    from hsae_core.choose import choose_hypotheses
    from hsae_core.presence import chosen_presence
    from hsae_core.settings import SELECTION

    X, target = sp.load_npz(codes).tocsr(), np.load(y)
    above = (target > np.median(target)).astype(float)
    kind = "binary" if method == "stepwise-binary" else "continuous"
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        got = choose_hypotheses(
            X,
            above if kind == "binary" else target,
            method=method.removesuffix("-binary"),
            n=SELECTION.n,
            kind=kind,
            top_n=SELECTION.top_n,
            presence_mode=SELECTION.presence,
            max_overlap=SELECTION.max_overlap,
            min_present_frac=SELECTION.min_present_frac,
        )
        seconds = time.perf_counter() - t0
        # The any-of rule a binary target gets next (here: the target above its median), on the chosen hypotheses
        t1 = time.perf_counter()
        chosen = chosen_presence(X, got.latents, got.thresholds)
        rule = fit_any_of(chosen, above, candidates=got.scores > 0)
        any_of_seconds = time.perf_counter() - t1
    return {
        "seconds": round(seconds, 3),
        "extra_mib": mem.extra_mib,
        "n_chosen": len(got.latents),
        "any_of_seconds": round(any_of_seconds, 3),
        "any_of_size": len(rule.members),
    }


def run(quick: bool = False, timeout: float = 600) -> dict:
    from hsae_core.settings import SELECTION

    setup_env()
    rows = []
    for n, m in plan(quick):
        codes, y = codes_path(n, m)
        for method in METHODS[:2] if quick else METHODS:
            cmd = [OUR_PYTHON, __file__, "--one", codes, y, method]
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
                out = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else None
                failed = None if out else (proc.stderr.strip().splitlines() or ["no output"])[-1]
            except subprocess.TimeoutExpired:
                out, failed = None, f"over {timeout:g} s"
            rows.append({"n": n, "m": m, "method": method, **(out or {"failed": failed})})
            print(f"  chose n={n} m={m} {method}: {rows[-1]}", flush=True)
    defaults = {"presence": SELECTION.presence, "max_overlap": SELECTION.max_overlap, "n": SELECTION.n}
    return {"rows": rows, "defaults": defaults, "timeout_s": timeout}


def tables(result: dict) -> str:
    d = result["defaults"]
    rows = [
        [
            f"{r['n']:,}",
            r["m"],
            r["method"],
            r.get("seconds", "failed: " + str(r.get("failed"))),
            r.get("extra_mib"),
            r.get("any_of_seconds"),
        ]
        for r in result["rows"]
    ]
    return (
        f"### Choosing {d['n']} hypotheses with the product's defaults (presence {d['presence']}, max overlap "
        f"{d['max_overlap']}; seconds, peak extra MiB)\n\n"
        + markdown_table(["N", "M", "method", "seconds", "peak extra MiB", "then the any-of rule, seconds"], rows)
    )


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--one":
        setup_env()
        print(json.dumps(measure_one(*sys.argv[2:])))
    else:
        script_main("choose", run, tables, "the smallest size, correlation and stepwise only (smoke test)", __doc__)
