"""Selecting 20 latents by correlation, separation score and L1, ours vs the reference.

Inputs are synthetic SAE codes (N x M, K=32 active latents per row, Zipf-like latent popularity) and
a continuous target tied to 10 latents, written once to disk. We read them as CSR; the reference gets
the dense matrix its ``get_activations`` would have produced (conversion not timed). Each method runs
in its own process under a time and memory budget, so a size the reference cannot finish shows up as
a row that says why. Ratios are ours/theirs.

    python bench/bench_selection.py [--quick]
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from common import INPUTS, OUR_PYTHON, markdown_table, ratio_or_bound, run_worker, script_main, setup_env
from common_worker import synthetic_task_codes
from reference_env import ensure_reference_env

METHODS = ("correlation", "separation", "lasso")
K_ACTIVE = 32


def codes_path(n: int, m: int) -> tuple[str, str]:
    codes, target = INPUTS / f"codes_{n}_{m}_{K_ACTIVE}.npz", INPUTS / f"codes_{n}_{m}_{K_ACTIVE}_y.npy"
    if not codes.exists() or not target.exists():
        indptr, indices, data, y = synthetic_task_codes(n, m, K_ACTIVE, seed=1)
        sp.save_npz(codes, sp.csr_matrix((data, indices, indptr), shape=(n, m)), compressed=False)
        np.save(target, y)
    return str(codes), str(target)


def plan(quick: bool) -> list[tuple[int, int]]:
    return [(20_000, 1024)] if quick else [(20_000, 1024), (20_000, 4096), (200_000, 1024), (200_000, 4096)]


def run(quick: bool = False, timeout: float = 60, mem_gib: float = 8) -> dict:
    setup_env()
    ref_python = ensure_reference_env()
    rows = []
    for n, m in plan(quick):
        codes, y = codes_path(n, m)
        for method in METHODS:
            task = {"kind": "select", "codes": codes, "y": y, "method": method, "n": 20}
            out = {}
            for side, python, script in (("ours", OUR_PYTHON, "worker_ours.py"), ("ref", ref_python, "worker_ref.py")):
                res = run_worker(python, script, task, timeout=timeout, mem_limit_gib=mem_gib, expect=(method,))
                out[side] = res[0]
            ours, ref = out["ours"].get("latents"), out["ref"].get("latents")
            overlap = len(set(ours) & set(ref)) if ours and ref else None
            rows.append({"n": n, "m": m, "method": method, "overlap_of_20": overlap, **out})
            print(f"  selected n={n} m={m} {method}", flush=True)
    return {"rows": rows, "timeout_s": timeout, "mem_budget_gib": mem_gib, "k_active": K_ACTIVE}


def tables(result: dict) -> str:
    rows = []
    for r in result["rows"]:
        o, t = r["ours"], r["ref"]
        ref_s = t.get("seconds")
        rows.append(
            [
                f"{r['n']:,}",
                r["m"],
                r["method"],
                o.get("seconds", "failed: " + o.get("failed", "")),
                ref_s if ref_s is not None else "failed: " + t.get("failed", ""),
                ratio_or_bound(o.get("seconds"), ref_s, t.get("failed", ""), result["timeout_s"]),
                r["overlap_of_20"],
                o.get("extra_mib"),
                t.get("extra_mib"),
                round(o["input_bytes"] / 2**20, 1) if "input_bytes" in o else None,
                round(t["input_bytes"] / 2**20, 1) if "input_bytes" in t else None,
            ]
        )
    return (
        "### Selecting 20 latents (seconds, same latents chosen, peak extra MiB, codes held in MiB)\n\n"
        + markdown_table(
            [
                "N",
                "M",
                "method",
                "ours s",
                "ref s",
                "ours/ref",
                "same of 20",
                "ours MiB",
                "ref MiB",
                "ours codes MiB",
                "ref codes MiB",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    script_main("selection", run, tables, "one small size only (smoke test)", __doc__)
