"""Scale: building a workspace and steered search latency at 10k, 100k and 1M documents.

Synthetic 384-d vectors with pseudo-texts (the mixture-of-concepts generator in common.py) stand in
for an embedded corpus; embedding itself is excluded and discussed in BENCHMARKS.md. Each size runs
in its own process: SAE training (M=1024, K=8, 2 epochs on at most 100k rows), then the product's
``build_workspace`` with those vectors and that SAE (table, embeddings, CSR codes, keyword feature
labels, FAISS index: exact IndexFlatIP up to 100k, HNSW beyond). At 1M the product's HNSW build
alone would take longer than this suite's budget on 2 cores, so the 1M row builds the same parts one
by one (no keyword labels) with an IVF-Flat index (nlist 1024, nprobe 32). Then steered single
queries through ``SteeredSearch.search`` (p50/p95, server side, FAISS on one thread) with the exact
and the approximate index, and recall@10 of the approximate one against exact.

    python bench/bench_scale.py [--quick]
"""
from __future__ import annotations

from common import OUR_PYTHON, RESULTS, bench_threads, data_dir, markdown_table, run_worker, script_main, setup_env


def run(quick: bool = False, timeout: float = 420, mem_gib: float = 10) -> dict:
    setup_env()
    sizes = (10_000,) if quick else (10_000, 100_000, 1_000_000)
    rows = []
    for n in sizes:
        task = {"kind": "scale", "n": n, "m": 1024, "k": 8, "epochs": 2, "fit_rows": 100_000, "nprobe": 32,
                "mode": "product" if n <= 100_000 else "components", "queries": 50 if quick else 200,
                "tmp": str(RESULTS)}
        res = {r["item"]: r for r in run_worker(OUR_PYTHON, "worker_ours.py", task, timeout=timeout,
                                                mem_limit_gib=mem_gib, expect=("build", "search"))}
        rows.append({"n": n, **res})
        print(f"  scale n={n:,}", flush=True)
    embed_task = {"kind": "embed", "n": 100 if quick else 300, "tmp": str(RESULTS),
                  "path": str(data_dir() / "yelp_reviews_demo" / "yelp-demo-holdout-2K.jsonl")}
    embed = run_worker(OUR_PYTHON, "worker_ours.py", embed_task, timeout=300, mem_limit_gib=4, expect=("embed",))[0]
    return {"rows": rows, "embed": embed, "threads": bench_threads(), "timeout_s": timeout, "mem_budget_gib": mem_gib}


def tables(result: dict) -> str:
    build, search = [], []
    for r in result["rows"]:
        b, s = r["build"], r["search"]
        if "failed" in b:
            build.append([f"{r['n']:,}", None, f"failed: {b['failed']}"] + [None] * 6)
        else:
            build.append([f"{r['n']:,}", b["mode"], b["total_s"], b["fit_s"], b["build_s"], b["peak_extra_mib"],
                          f"{b['codes_bytes'] / 2**20:.1f} (dense: {b['dense_codes_bytes'] / 2**20:,.0f})",
                          "yes" if b["codes_sparse"] else "NO", b["index_kind"]])
        if "failed" in s:
            search.append([f"{r['n']:,}", f"failed: {s['failed']}"] + [None] * 7)
        else:
            lat = s["latency"]
            search.append([f"{r['n']:,}", lat["exact"]["p50_ms"], lat["exact"]["p95_ms"], lat["approx"]["p50_ms"],
                           lat["approx"]["p95_ms"], s["approx_kind"], s["recall_at_10"], s["other_index_s"]])
    e = result.get("embed", {})
    if "texts_per_s" in e:
        rate = e["texts_per_s"]
        embed_line = (f"\n\nEmbedding (excluded above), measured: {e['n']} real Yelp reviews (mean {e['mean_words']:.0f} words) "
                      f"with all-MiniLM-L6-v2 on {result.get('threads', '?')} CPU thread(s), empty cache: "
                      f"{rate:.1f} texts/s, so 10k ≈ {1e4 / rate / 60:.0f} min, 100k ≈ {1e5 / rate / 3600:.1f} h, "
                      f"1M ≈ {1e6 / rate / 3600:.0f} h on this machine.")
    else:
        embed_line = f"\n\nEmbedding throughput not measured: {e.get('failed', 'no result')}"
    return ("### Building a workspace, embedding excluded (seconds, peak extra MiB over the process's inputs)\n\n"
            + markdown_table(["N", "how", "total s", "SAE fit s", "build_workspace s", "peak extra MiB",
                              "CSR codes MiB", "sparse", "product index"], build)
            + "\n\n### Steered search, one query, server side (ms; recall@10 of the approximate index against exact)\n\n"
            + markdown_table(["N", "exact p50", "exact p95", "approx p50", "approx p95", "approx index",
                              "recall@10", "s to build the non-product index"], search)
            + embed_line)


if __name__ == "__main__":
    script_main("scale", run, tables, "10k documents only (smoke test)", __doc__)
