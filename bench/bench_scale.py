"""Scale: `hsae build` on 10k, 100k and 1M documents with stored embeddings, then steered search and page opens.

Synthetic-but-text-like corpora (common.synthetic_corpus with TEXT_LIKE topics: 384-d mixture-of-concepts
vectors whose neighbourhoods were calibrated against real MiniLM embeddings of the shared data, ~40-word
texts from each concept's own vocabulary, a rating and a source column) stand in for an embedded corpus;
the embedding step itself is excluded and measured separately (its throughput is the last line). Each size:

1. ``hsae build --data corpus.parquet --text-col text --embeddings corpus.npy --m 1024 --k 8`` in a child
   process (plus ``--epochs 5`` up to 100k documents, where the SAE otherwise trains on every row until early
   stopping; above 100k the product itself trains 5 epochs on a 100k sample): the product path
   (build_workspace), wall time, CPU time and peak RSS, seconds per step from the workspace manifest;
2. steered search through ``SteeredSearch.search`` on the built workspace, one query at a time with FAISS and
   torch on one thread: p50/p95, and recall@10 against exact search (queries: 200 corpus documents, their
   own row excluded; unsteered and steered by raising their strongest feature);
3. every dashboard page under streamlit.testing AppTest: first load, a fresh session's open, one interaction.

Last, the calibration: neighbourhood statistics and IVF difficulty of real embeddings vs the generator.

    python bench/bench_scale.py [--quick]
    python bench/bench_scale.py --sizes 1000000 --levels default --levels none   # one size, two SAE settings

``--levels`` (repeatable) builds each size once per setting, side by side in one run: ``default`` is the
product's SAE levels, anything else is passed to ``hsae build --levels`` (``none``: the main dictionary
alone, as before the levels). A run with ``--sizes`` or ``--levels`` skips the calibration and the
embedding throughput and saves ``scale_custom.json``, leaving the full run's results alone.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from typing import Optional

from common import (
    OUR_PYTHON,
    REPO,
    RESULTS,
    TEXT_LIKE,
    bench_threads,
    data_dir,
    markdown_table,
    real_mix_embeddings,
    run_worker,
    save_json,
    setup_env,
    synthetic_corpus,
    synthetic_corpus_files,
)
from memwatch import rss_bytes

M, K = 1024, 8
SMALL_EPOCHS = 5


def hsae_build(table, emb, out, timeout: float, epochs: Optional[int] = None, levels: str = "default") -> dict:
    """Run `hsae build` in a child process; wall seconds, peak RSS (GiB) and the manifest's per-step seconds."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [
        str(OUR_PYTHON),
        "-m",
        "hsae_core.cli",
        "build",
        "--data",
        str(table),
        "--text-col",
        "text",
        "--embeddings",
        str(emb),
        "--m",
        str(M),
        "--k",
        str(K),
        "--out",
        str(out),
    ]
    cmd += ["--epochs", str(epochs)] if epochs else []
    cmd += [] if levels == "default" else ["--levels", levels]
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    load_before = os.getloadavg()[0]
    t0 = time.monotonic()
    err_file = open(out.parent / f"{out.name}.stderr.txt", "w")  # closed below, after the child is reaped
    proc = subprocess.Popen(cmd, env=env, cwd=str(REPO), stdout=subprocess.DEVNULL, stderr=err_file)
    peak, why, usage, status = 0, None, None, 0
    while usage is None:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)  # reaping ourselves gives the child's CPU time
        if pid:
            usage = ru
            break
        peak = max(peak, rss_bytes(proc.pid))
        if time.monotonic() - t0 > timeout and why is None:
            proc.kill()
            why = f"not finished within {timeout:.0f} s"
        time.sleep(0.05)
    wall = time.monotonic() - t0
    err_file.close()
    code = os.waitstatus_to_exitcode(status)
    if why or code != 0:
        last = (out.parent / f"{out.name}.stderr.txt").read_text().strip().splitlines()
        return {"failed": why or f"exit {code}: {last[-1] if last else ''}"}
    manifest = json.loads((out / "workspace.json").read_text())
    return {
        "wall_s": round(wall, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "peak_rss_gib": round(max(peak, usage.ru_maxrss * 1024) / 2**30, 2),
        "seconds": manifest.get("seconds", {}),
        "index": manifest.get("index", {}),
        "layout": manifest.get("layout", {}),
        "load_1m_before": round(load_before, 2),
        "load_1m_after": round(os.getloadavg()[0], 2),
        "command": "hsae " + " ".join(cmd[3:]).replace(str(RESULTS), "bench/results"),
    }


def run(
    quick: bool = False,
    timeout: float = 1800,
    mem_gib: float = 12,
    sizes: Optional[tuple] = None,
    levels: tuple = ("default",),
) -> dict:
    setup_env()
    custom = sizes is not None or tuple(levels) != ("default",)
    sizes = sizes or ((10_000,) if quick else (10_000, 100_000, 1_000_000))
    rows = []
    for n in sizes:
        table, emb = synthetic_corpus_files(n, seed=3)
        for setting in levels:
            tag = "" if setting == "default" else "-levels-" + setting.replace("/", "-").replace(",", "_")
            out = RESULTS / f"ws-scale-{n}{tag}"
            # Up to 100k documents the SAE trains on every row with early stopping; cap it like the 1M default.
            epochs = SMALL_EPOCHS if n <= 100_000 else None
            build = hsae_build(table, emb, out, timeout, epochs=epochs, levels=setting)
            row = {"n": n, "levels": setting, "build": build}
            if "failed" not in build:
                for kind, expect in (("search", "search"), ("pages", "pages")):
                    res = run_worker(
                        OUR_PYTHON,
                        "worker_scale.py",
                        {"kind": kind, "workspace": str(out), "queries": 50 if quick else 200},
                        timeout=timeout,
                        mem_limit_gib=mem_gib,
                        expect=(expect,),
                    )
                    row[kind] = res[0]
            rows.append(row)
            print(f"  scale n={n:,} levels {setting}: {json.dumps(row)[:300]}", file=sys.stderr, flush=True)
    result = {"rows": rows, "threads": bench_threads(), "timeout_s": timeout, "m": M, "k": K, "custom": custom}
    if custom:
        return result
    result["realism"] = [] if quick else neighbourhood_realism()
    embed_task = {
        "kind": "embed",
        "n": 100 if quick else 300,
        "tmp": str(RESULTS),
        "path": str(data_dir() / "yelp_reviews_demo" / "yelp-demo-holdout-2K.jsonl"),
    }
    result["embed"] = run_worker(
        OUR_PYTHON, "worker_ours.py", embed_task, timeout=300, mem_limit_gib=4, expect=("embed",)
    )[0]
    return result


def neighbourhood_realism() -> list[dict]:
    """Nearest-neighbour cosines and the IVF nprobe that reaches recall@10 0.95 (nlist = sqrt(N)): real MiniLM
    embeddings of every distinct text in the shared data vs the synthetic generator, plain and TEXT_LIKE."""
    import numpy as np

    from hsae_core.search import build_search_index

    real = np.load(real_mix_embeddings())
    out = []
    for name, X in (
        ("real texts (MiniLM)", real),
        ("synthetic, plain mixture", synthetic_corpus(len(real), 3)[0]),
        ("synthetic, TEXT_LIKE (used above)", synthetic_corpus(len(real), 3, **TEXT_LIKE)[0]),
    ):
        X = X / np.linalg.norm(X, axis=1, keepdims=True)
        ids = np.random.default_rng(0).choice(len(X), 300, replace=False)
        S = X[ids] @ X.T
        S[np.arange(len(ids)), ids] = -1
        top = -np.sort(-S, axis=1)[:, :10]
        info = build_search_index(X, exact_limit=0, target_recall=0.95, n_queries=500)
        out.append(
            {
                "data": name,
                "n": len(X),
                "median_cos": float(np.median(S)),
                "nn1": float(top[:, 0].mean()),
                "nn10": float(top[:, 9].mean()),
                "nlist": info.nlist,
                "nprobe": info.nprobe,
                "probed_share": info.nprobe / info.nlist,
                "recall_at_10": info.recall_at_10,
            }
        )
        print(f"  realism: {out[-1]}", file=sys.stderr, flush=True)
    return out


def _row_name(row: dict) -> str:
    """A table row's N, with the SAE levels when they are not the product's default."""
    setting = row.get("levels", "default")
    return f"{row['n']:,}" + ("" if setting == "default" else f" (levels {setting})")


STEPS = ("prepare", "table", "embeddings", "sae", "codes", "features", "index", "layout")


def tables(result: dict) -> str:
    build, steps, search, pages = [], [], [], []
    for r in result["rows"]:
        n, b = _row_name(r), r["build"]
        if "failed" in b:
            build.append([n, f"failed: {b['failed']}"] + [None] * 6)
            continue
        idx = b.get("index", {})
        kind = (
            "exact" if idx.get("kind") == "exact" else f"IVF-Flat nlist {idx.get('nlist')} nprobe {idx.get('nprobe')}"
        )
        build.append(
            [
                n,
                b["wall_s"],
                b["cpu_s"],
                b["peak_rss_gib"],
                kind,
                idx.get("recall_at_10"),
                f"{b['load_1m_before']} → {b['load_1m_after']}",
                b.get("layout", {}).get("method"),
            ]
        )
        steps.append([n] + [b["seconds"].get(s) for s in STEPS])
        s = r.get("search", {})
        if "failed" in s:
            search.append([n, f"failed: {s['failed']}"] + [None] * 5)
        else:
            search.append(
                [
                    n,
                    s["unsteered"]["p50_ms"],
                    s["unsteered"]["p95_ms"],
                    s["unsteered"]["recall_at_10"],
                    s["steered"]["p50_ms"],
                    s["steered"]["p95_ms"],
                    s["steered"]["recall_at_10"],
                ]
            )
        p = r.get("pages", {})
        if "failed" in p:
            pages.append([n, f"failed: {p['failed']}"] + [None] * 4)
        else:
            pages.append(
                [n]
                + [
                    f"{v['first_s']} / **{v['open_s']}**"
                    + (f" / {v['interaction_s']}" if v["interaction_s"] is not None else "")
                    for v in p["pages"].values()
                ]
            )
    e = result.get("embed", {})
    if result.get("custom"):
        embed_line = ""
    elif "texts_per_s" in e:
        rate = e["texts_per_s"]
        embed_line = (
            f"\n\nEmbedding (excluded above), measured: {e['n']} real Yelp reviews (mean {e['mean_words']:.0f} words) "
            f"with all-MiniLM-L6-v2 on {result.get('threads', '?')} CPU thread(s), empty cache: "
            f"{rate:.1f} texts/s, so 10k ≈ {1e4 / rate / 60:.0f} min, 100k ≈ {1e5 / rate / 3600:.1f} h, "
            f"1M ≈ {1e6 / rate / 3600:.0f} h on this machine."
        )
    else:
        embed_line = f"\n\nEmbedding throughput not measured: {e.get('failed', 'no result')}"
    page_names = ["Overview", "Features", "Search", "Hypotheses", "Map"]
    realism = [
        [
            r["data"],
            f"{r['n']:,}",
            r["median_cos"],
            r["nn1"],
            r["nn10"],
            f"{r['nprobe']} of {r['nlist']}",
            r["probed_share"],
            r["recall_at_10"],
        ]
        for r in result.get("realism", [])
    ]
    realism_table = (
        "\n\n### How realistic are the synthetic neighbourhoods? (cosines; IVF nprobe for recall@10 >= 0.95)\n\n"
        + markdown_table(
            [
                "data",
                "N",
                "median cosine",
                "1st neighbour",
                "10th neighbour",
                "nprobe needed",
                "share of lists probed",
                "recall@10",
            ],
            realism,
        )
        if realism
        else ""
    )
    return (
        f"### `hsae build` with stored embeddings (M={result.get('m')}, K={result.get('k')}; wall s, peak RSS of "
        "the build process)\n\n"
        + markdown_table(
            [
                "N",
                "wall s",
                "CPU s",
                "peak RSS GiB",
                "index",
                "recall@10 at build",
                "1-min load before → after",
                "map layout",
            ],
            build,
        )
        + "\n\nSeconds per step (from the workspace manifest):\n\n"
        + markdown_table(["N", *STEPS], steps)
        + "\n\n### Steered search, one query, one thread, server side (ms; recall@10 against exact search)\n\n"
        + markdown_table(
            ["N", "plain p50", "plain p95", "plain recall@10", "steered p50", "steered p95", "steered recall@10"],
            search,
        )
        + "\n\n### Dashboard pages, server side (s): first load / **open in a new session** / one interaction\n\n"
        + markdown_table(["N", *page_names], pages)
        + realism_table
        + embed_line
    )


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10k documents only (smoke test)")
    ap.add_argument("--sizes", type=lambda v: tuple(int(n) for n in v.split(",")), help="e.g. 1000000 or 10000,100000")
    ap.add_argument(
        "--levels",
        action="append",
        help="SAE levels to build with, repeatable: 'default' (the product's), 'none', or pairs such as 16/2,128/16",
    )
    args = ap.parse_args()
    res = run(args.quick, sizes=args.sizes, levels=tuple(args.levels or ("default",)))
    save_json("scale" + ("_custom" if res["custom"] else "_quick" if args.quick else ""), res)
    print(tables(res))


if __name__ == "__main__":
    main()
