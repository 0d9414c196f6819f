"""Scale: building the searchable workspace parts and steered search latency at 10k, 100k and 1M documents.

Synthetic 384-d vectors (the mixture-of-concepts generator in common.py) stand in for embeddings;
embedding itself is excluded and discussed in BENCHMARKS.md. Each size runs in its own process:
SAE training (M=1024, K=8, fixed epochs, on at most 100k rows), encoding all N rows to CSR, the exact
(IndexFlatIP) and approximate (IVF-Flat, nlist = 4·sqrt(N)) FAISS indexes, writing the folder; then
200 steered single-thread queries timed end to end on the server side (encode, edit one latent, decode,
add back the residual, search top 10), with recall@10 of the approximate index against the exact one.

    python bench/bench_scale.py [--quick]
"""
from __future__ import annotations

import argparse

from common import OUR_PYTHON, RESULTS, markdown_table, run_worker, save_json, setup_env


def run(quick: bool = False, timeout: float = 420, mem_gib: float = 10) -> dict:
    setup_env()
    sizes = (10_000,) if quick else (10_000, 100_000, 1_000_000)
    rows = []
    for n in sizes:
        task = {"kind": "scale", "n": n, "m": 1024, "k": 8, "epochs": 2, "fit_rows": 100_000, "nprobe": 16,
                "queries": 50 if quick else 200, "tmp": str(RESULTS)}
        res = {r["item"]: r for r in run_worker(OUR_PYTHON, "worker_ours.py", task, timeout=timeout,
                                                mem_limit_gib=mem_gib, expect=("build", "search"))}
        rows.append({"n": n, **res})
        print(f"  scale n={n:,}", flush=True)
    return {"rows": rows, "timeout_s": timeout, "mem_budget_gib": mem_gib}


def tables(result: dict) -> str:
    build, search = [], []
    for r in result["rows"]:
        b, s = r["build"], r["search"]
        if "failed" in b:
            build.append([f"{r['n']:,}", f"failed: {b['failed']}"] + [None] * 7)
        else:
            st = b["stages"]
            build.append([f"{r['n']:,}", b["build_s"], st["train_sae"][0], st["encode"][0], st["index_exact"][0],
                          st["index_approx"][0], st["write"][0], b["peak_extra_mib"],
                          f"{b['codes_bytes'] / 2**20:.1f} (dense would be {b['dense_codes_bytes'] / 2**20:,.0f})"])
        if "failed" in s:
            search.append([f"{r['n']:,}", f"failed: {s['failed']}"] + [None] * 5)
        else:
            lat = s["latency"]
            search.append([f"{r['n']:,}", lat["exact"]["p50_ms"], lat["exact"]["p95_ms"], lat["approx"]["p50_ms"],
                           lat["approx"]["p95_ms"], s["recall_at_10"]])
    return ("### Building a workspace without embedding (seconds per stage, peak extra MiB, CSR codes MiB)\n\n"
            + markdown_table(["N", "total s", "SAE fit s", "encode s", "exact index s", "IVF index s", "write s",
                              "peak extra MiB", "codes MiB"], build)
            + "\n\n### Steered search, one query, server side (ms; IVF nprobe=16; recall@10 vs exact)\n\n"
            + markdown_table(["N", "exact p50", "exact p95", "IVF p50", "IVF p95", "IVF recall@10"], search))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10k documents only (smoke test)")
    args = ap.parse_args()
    res = run(args.quick)
    save_json("scale", res)
    print(tables(res))
