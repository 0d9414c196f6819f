"""Scale-suite worker: steered search latency/recall and dashboard page-open times on a built workspace.

    python bench/worker_scale.py '{"kind": "search"|"pages", "workspace": PATH, ...}'

Prints one ``RESULT {json}`` line per finished item (see common.emit).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import emit  # noqa: E402
from memwatch import rss_bytes  # noqa: E402


def do_search(task: dict) -> None:
    """p50/p95 of SteeredSearch.search (one query at a time, one thread) and recall@10 against exact search.

    Queries are random corpus documents, steered by raising their strongest feature's activation by half;
    each query's own document is left out of both result lists before recall is counted.
    """
    import faiss
    import torch

    from hsae_core.search import SteeredSearch, exact_neighbours
    from hsae_core.workspace import Workspace

    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    t0 = time.perf_counter()
    ws = Workspace.open(task["workspace"])
    engine = SteeredSearch(ws.embeddings, ws.sae, ws.codes, index=ws.index, nprobe=ws.index_info.get("nprobe"))
    open_s = time.perf_counter() - t0
    rng = np.random.default_rng(7)
    ids = rng.choice(len(ws), size=task.get("queries", 200), replace=False)
    timings = {"unsteered": [], "steered": []}
    found = {"unsteered": [], "steered": []}
    vectors = {"unsteered": [], "steered": []}
    for i in ids:
        q = np.array(ws.embeddings[i], dtype=np.float32)
        latents, acts = engine.query_code(q)  # the user picks a feature of the query: not timed
        edits = {int(latents[0]): 1.5 * float(acts[0])} if len(latents) else {}
        for name, e in (("unsteered", {}), ("steered", edits)):
            t = time.perf_counter()
            res = engine.search(q, e, k=11)
            timings[name].append(time.perf_counter() - t)
            found[name].append([int(d) for d in res.ids if d != i][:10])
            vectors[name].append(engine.steer(q, e)[0] if e else q)
    out = {"open_s": round(open_s, 2), "index": ws.index_info, "n": len(ws), "queries": len(ids)}
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    for name in timings:
        q = np.stack(vectors[name])
        truth = exact_neighbours(ws.embeddings, q / np.linalg.norm(q, axis=1, keepdims=True), 11)
        recall = [
            len(set(f) & set([int(t) for t in row if t != i][:10])) / 10 for f, row, i in zip(found[name], truth, ids)
        ]
        ms = np.array(timings[name]) * 1e3
        out[name] = {
            "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p95_ms": round(float(np.percentile(ms, 95)), 2),
            "recall_at_10": round(float(np.mean(recall)), 4),
        }
    emit("search", **out)


PAGES = {
    "Overview": "app.py",
    "Features": "pages/1_Features.py",
    "Search": "pages/2_Search.py",
    "Hypotheses": "pages/3_Hypotheses.py",
    "Map": "pages/4_Map.py",
}


def do_pages(task: dict) -> None:
    """Server-side seconds of each dashboard page (streamlit.testing AppTest): the first load, then a fresh
    session opening it again (Streamlit's resource caches are per process, as in a running server), then
    one interaction per page."""
    from streamlit.testing.v1 import AppTest

    from hsae_core.workspace import Workspace

    os.environ["HSAE_WORKSPACE"] = task["workspace"]
    repo = Path(__file__).resolve().parents[1]
    ws = Workspace.open(task["workspace"])
    if not ws.has_layout:  # the Map page would start it in the background and show no map: lay it out first
        print("  computing the map's layout first (not timed)", file=sys.stderr, flush=True)
        ws.layout()

    def run(path, setup=None, timeout=1800):
        at = AppTest.from_file(str(repo / path), default_timeout=timeout)
        t = time.perf_counter()
        at.run()
        first = time.perf_counter() - t
        if at.exception:
            raise RuntimeError(f"{path}: {at.exception[0].message}")
        again = None
        if setup is not None:
            setup(at)
            t = time.perf_counter()
            at.run()
            again = time.perf_counter() - t
            if at.exception:
                raise RuntimeError(f"{path} after interaction: {at.exception[0].message}")
        return first, again

    def narrow_map(at):
        lo, hi = at.slider(key="map_x").value
        at.slider(key="map_x").set_value((lo, lo + (hi - lo) * 0.3))

    interactions = {
        "Search": lambda at: at.radio(key="search_mode").set_value("More like this document"),
        "Features": lambda at: at.number_input(key="feature_open").set_value(3),
        "Map": narrow_map,
        "Overview": None,
        "Hypotheses": None,
    }
    rows = {}
    for name, path in PAGES.items():
        first, _ = run(path)
        warm, action = run(path, interactions[name])
        rows[name] = {
            "first_s": round(first, 2),
            "open_s": round(warm, 2),
            "interaction_s": None if action is None else round(action, 2),
        }
        print(f"  page {name}: {rows[name]}", file=sys.stderr, flush=True)
    emit("pages", pages=rows, rss_mib=round(rss_bytes() / 2**20))


if __name__ == "__main__":
    task = json.loads(sys.argv[1])
    {"search": do_search, "pages": do_pages}[task["kind"]](task)
