"""Our side of the speed benchmarks: the same stages as worker_ref.py, through hsae_core's public API.

Usage: ``python worker_ours.py JSON`` (run by the bench scripts, one process per measurement).
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import scipy.sparse as sp
from common_worker import emit, nmse_of, warm_up_optimizer
from memwatch import PeakRSS


def csr_bytes(codes: sp.csr_matrix) -> int:
    return int(codes.data.nbytes + codes.indices.nbytes + codes.indptr.nbytes)


def do_train(task: dict) -> None:
    from hsae_core.sae import SparseAutoencoder

    X = np.load(task["x"])
    warm_up_optimizer()
    # The reference trains plain top-k: no Matryoshka prefixes on our side either, like for like.
    sae = SparseAutoencoder(
        m=task["m"],
        k=task["k"],
        batch_size=512,
        lr=5e-4,
        max_epochs=task["epochs"],
        patience=task["epochs"] + 1,
        val_frac=0.1,
        seed=task["seed"],
        matryoshka=(),
    )
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        sae.fit(X)
        fit_s = time.perf_counter() - t0
    epochs = sae.metrics_["epochs"]
    emit(
        "train",
        fit_s=fit_s,
        epochs=epochs,
        s_per_epoch=fit_s / epochs,
        nmse=nmse_of(sae.reconstruct(X), X),
        extra_mib=mem.extra_mib,
    )
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        codes = sae.transform(X)
        enc_s = time.perf_counter() - t0
    emit(
        "encode",
        encode_s=enc_s,
        codes_bytes=csr_bytes(codes),
        codes_format=f"CSR {codes.data.dtype}/{codes.indices.dtype}",
        extra_mib=mem.extra_mib,
    )


WARMUP_ROWS = 2000  # rows of the warm-up call before each timed selection (both sides)


def do_select(task: dict) -> None:
    # The reference module imports scikit-learn and scipy.stats at load time, outside its timer; ours
    # imports them lazily inside the call. Load them here so neither side's figure includes an import.
    import scipy.stats  # noqa: F401
    import sklearn.linear_model  # noqa: F401
    import sklearn.svm  # noqa: F401

    from hsae_core.select import select_latents

    codes = sp.load_npz(task["codes"]).tocsr()
    y = np.load(task["y"])
    kind = "binary" if task.get("classification") else "continuous"
    # Warm-up on a small slice, as on the reference's side, so neither figure includes first-call costs.
    select_latents(codes[:WARMUP_ROWS], y[:WARMUP_ROWS], method=task["method"], n=task["n"], kind=kind, top_n=100)
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        selection = select_latents(codes, y, method=task["method"], n=task["n"], kind=kind, top_n=100)
        secs = time.perf_counter() - t0
    emit(
        task["method"],
        seconds=secs,
        extra_mib=mem.extra_mib,
        latents=[int(i) for i in selection.latents],
        input_bytes=csr_bytes(codes),
    )


def do_embed(task: dict) -> None:
    """Embedding throughput of the default offline model on real reviews, with an empty cache."""
    import os
    import tempfile

    import pandas as pd

    os.environ["HSAE_CACHE_DIR"] = tempfile.mkdtemp(prefix="hsae-embed-", dir=task.get("tmp"))
    from hsae_core.embed import default_embedder, embed_texts

    texts = pd.read_json(task["path"], lines=True)["text"].astype(str).tolist()[: task["n"]]
    emb = default_embedder()
    emb.embed(["warm up"])  # model load is not throughput
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        X = embed_texts(texts, emb)
        secs = time.perf_counter() - t0
    emit(
        "embed",
        n=len(texts),
        seconds=secs,
        texts_per_s=len(texts) / secs,
        dim=int(X.shape[1]),
        extra_mib=mem.extra_mib,
        mean_words=float(np.mean([len(t.split()) for t in texts])),
    )
    import shutil

    shutil.rmtree(os.environ["HSAE_CACHE_DIR"], ignore_errors=True)


def _components_build(X, sae, folder, nprobe):
    """What build_workspace does minus keyword labels, with an IVF index instead of HNSW (used at 1M)."""
    import os

    import faiss

    from hsae_core.features import feature_stats

    os.makedirs(folder, exist_ok=True)
    np.save(os.path.join(folder, "embeddings.npy"), X)
    codes = sae.transform(X)
    sp.save_npz(os.path.join(folder, "codes.npz"), codes)
    sae.save(os.path.join(folder, "sae"))
    feature_stats(codes).to_parquet(os.path.join(folder, "features.parquet"))
    d, nlist = X.shape[1], 1024
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
    index.train(X[np.random.default_rng(1).choice(len(X), min(len(X), 64 * nlist), replace=False)])
    index.add(X)
    index.nprobe = nprobe
    faiss.write_index(index, os.path.join(folder, "index.faiss"))
    return codes, index


def do_scale(task: dict) -> None:
    """Build a workspace at size N through the product (embedding excluded), then time steered search.

    The SAE is trained first (fixed epochs on at most ``fit_rows`` rows, timed on its own) and handed to
    ``build_workspace`` with the precomputed vectors, which then writes the table, embeddings, SAE,
    CSR codes, feature labels and the FAISS index exactly as ``hsae build`` does. Search goes through
    ``SteeredSearch.search`` (query code, one latent turned up, decode + residual, baseline and steered
    k-NN, shared features per hit), once with the product's index and once with the other kind.
    With ``mode="components"`` (1M) the same parts are built one by one, without keyword labels and
    with an IVF-Flat index, because the product's HNSW build does not fit the time budget there.
    """
    import shutil
    import tempfile

    import faiss
    import pandas as pd
    from common import synthetic_embeddings

    from hsae_core.sae import SparseAutoencoder
    from hsae_core.search import SteeredSearch, build_index
    from hsae_core.workspace import build_workspace

    n, m, k = task["n"], task["m"], task["k"]
    X, texts = synthetic_embeddings(n, seed=3, with_texts=True)
    frame = pd.DataFrame({"text": texts})
    del texts
    root = tempfile.mkdtemp(prefix="hsae-scale-", dir=task.get("tmp"))
    try:
        with PeakRSS() as total:
            with PeakRSS() as mem:
                t0 = time.perf_counter()
                rows = (
                    X
                    if n <= task["fit_rows"]
                    else X[np.sort(np.random.default_rng(0).choice(n, task["fit_rows"], replace=False))]
                )
                sae = SparseAutoencoder(m=m, k=k, max_epochs=task["epochs"], patience=task["epochs"] + 1, seed=0).fit(
                    rows
                )
                del rows
                fit_s, fit_mib = time.perf_counter() - t0, mem.extra_mib
            with PeakRSS() as mem:
                t0 = time.perf_counter()
                if task["mode"] == "product":
                    ws = build_workspace(f"{root}/ws", frame=frame, text_col="text", embeddings=X, sae=sae)
                    codes, index = ws.codes, ws.index
                else:
                    codes, index = _components_build(X, sae, f"{root}/parts", task["nprobe"])
                build_s, build_mib = time.perf_counter() - t0, mem.extra_mib
        emit(
            "build",
            n=n,
            mode=task["mode"],
            fit_s=fit_s,
            fit_mib=fit_mib,
            build_s=build_s,
            build_mib=build_mib,
            total_s=fit_s + build_s,
            peak_extra_mib=total.extra_mib,
            codes_sparse=bool(sp.issparse(codes)),
            codes_bytes=csr_bytes(codes),
            dense_codes_bytes=n * m * 4,
            index_kind=type(index).__name__,
        )

        # The other index kind, for the latency comparison and recall of the approximate one.
        t0 = time.perf_counter()
        if task["mode"] == "product":
            other = build_index(X, exact_limit=0 if n <= 100_000 else n)
            exact, approx = (index, other) if n <= 100_000 else (other, index)
        else:
            other = build_index(X, exact_limit=n)
            exact, approx = other, index
        other_s = time.perf_counter() - t0
        queries = synthetic_embeddings(task["queries"], seed=99)
        lat, recalls = {}, []
        for name, idx in (("exact", exact), ("approx", approx)):
            search = SteeredSearch(X, sae, codes, index=idx)
            times, hits = [], []
            for q in queries:
                z_ids, _ = search.query_code(q)  # the user picks a feature of the query: not timed
                t0 = time.perf_counter()
                res = search.search(q, edits={int(z_ids[0]) if len(z_ids) else 0: 2.0}, k=10)
                times.append(time.perf_counter() - t0)
                hits.append(set(res.ids.tolist()))
            lat[name] = {
                "p50_ms": float(np.percentile(times, 50) * 1e3),
                "p95_ms": float(np.percentile(times, 95) * 1e3),
            }
            if name == "exact":
                truth = hits
            else:
                recalls = [len(a & b) / 10 for a, b in zip(truth, hits)]
        emit(
            "search",
            n=n,
            latency=lat,
            recall_at_10=float(np.mean(recalls)),
            approx_kind=type(approx).__name__,
            other_index_s=other_s,
            faiss_threads=faiss.omp_get_max_threads(),
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    task = json.loads(sys.argv[1])
    {"train": do_train, "select": do_select, "scale": do_scale, "embed": do_embed}[task["kind"]](task)
