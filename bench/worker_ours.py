"""Our side of the speed benchmarks: the same stages as worker_ref.py, through hsae_core's public API.

Usage: ``python worker_ours.py JSON`` (run by the bench scripts, one process per measurement).
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np
import scipy.sparse as sp
import torch

from memwatch import PeakRSS
from common_worker import emit, nmse_of


def csr_bytes(codes: sp.csr_matrix) -> int:
    return int(codes.data.nbytes + codes.indices.nbytes + codes.indptr.nbytes)


def do_train(task: dict) -> None:
    from hsae_core.sae import SparseAutoencoder

    X = np.load(task["x"])
    sae = SparseAutoencoder(m=task["m"], k=task["k"], batch_size=512, lr=5e-4, max_epochs=task["epochs"],
                            patience=task["epochs"] + 1, val_frac=0.1, seed=task["seed"])
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        sae.fit(X)
        fit_s = time.perf_counter() - t0
    epochs = sae.metrics_["epochs"]
    emit("train", fit_s=fit_s, epochs=epochs, s_per_epoch=fit_s / epochs, nmse=nmse_of(sae.reconstruct(X), X),
         extra_mib=mem.extra_mib)
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        codes = sae.transform(X)
        enc_s = time.perf_counter() - t0
    emit("encode", encode_s=enc_s, codes_bytes=csr_bytes(codes),
         codes_format=f"CSR {codes.data.dtype}/{codes.indices.dtype}", extra_mib=mem.extra_mib)


def do_select(task: dict) -> None:
    from hsae_core.select import select_latents

    codes = sp.load_npz(task["codes"]).tocsr()
    y = np.load(task["y"])
    kind = "binary" if task.get("classification") else "continuous"
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        selection = select_latents(codes, y, method=task["method"], n=task["n"], kind=kind, top_n=100)
        secs = time.perf_counter() - t0
    emit(task["method"], seconds=secs, extra_mib=mem.extra_mib, latents=[int(i) for i in selection.latents],
         input_bytes=csr_bytes(codes))



def do_scale(task: dict) -> None:
    """Build the searchable parts of a workspace at size N (embedding excluded), then time steered search.

    Mirrors what the product does for one corpus: train the SAE (on at most ``fit_rows`` rows, a fixed
    number of epochs), encode every row to CSR, build the exact and the approximate FAISS index over the
    embeddings, write embeddings, codes and SAE to a folder. Then one query at a time: encode the query,
    turn one latent up, decode, add back the query's own residual, normalise, search top 10.
    """
    import os
    import tempfile

    import faiss

    from common import synthetic_embeddings
    from hsae_core.sae import SparseAutoencoder

    n, m, k = task["n"], task["m"], task["k"]
    X = synthetic_embeddings(n, seed=3)
    folder = tempfile.mkdtemp(prefix="hsae-scale-", dir=task.get("tmp"))
    stages = {}
    with PeakRSS() as total:
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            rng = np.random.default_rng(0)
            fit_rows = X if n <= task["fit_rows"] else X[np.sort(rng.choice(n, task["fit_rows"], replace=False))]
            sae = SparseAutoencoder(m=m, k=k, max_epochs=task["epochs"], patience=task["epochs"] + 1, seed=0).fit(fit_rows)
            stages["train_sae"] = (time.perf_counter() - t0, mem.extra_mib)
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            codes = sae.transform(X)
            stages["encode"] = (time.perf_counter() - t0, None)
        stages["encode"] = (stages["encode"][0], mem.extra_mib)
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            exact = faiss.IndexFlatIP(X.shape[1])
            exact.add(X)
            stages["index_exact"] = (time.perf_counter() - t0, mem.extra_mib)
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            nlist = int(4 * np.sqrt(n))
            approx = faiss.IndexIVFFlat(faiss.IndexFlatIP(X.shape[1]), X.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
            train_rows = X[np.random.default_rng(1).choice(n, min(n, 64 * nlist), replace=False)]
            approx.train(train_rows)
            approx.add(X)
            approx.nprobe = task["nprobe"]
            stages["index_approx"] = (time.perf_counter() - t0, mem.extra_mib)
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            np.save(os.path.join(folder, "embeddings.npy"), X)
            sp.save_npz(os.path.join(folder, "codes.npz"), codes, compressed=False)
            sae.save(os.path.join(folder, "sae"))
            faiss.write_index(approx if n > 100_000 else exact, os.path.join(folder, "index.faiss"))
            stages["write"] = (time.perf_counter() - t0, mem.extra_mib)
    build_s = sum(s for s, _ in stages.values())
    emit("build", n=n, build_s=build_s, peak_extra_mib=total.extra_mib, stages=stages,
         codes_bytes=csr_bytes(codes), codes_nnz_per_row=codes.nnz / n, dense_codes_bytes=n * m * 4,
         embeddings_bytes=int(X.nbytes), codes_sparse=bool(sp.issparse(codes)))

    # --- steered single-query search, server side
    faiss.omp_set_num_threads(1)
    queries = synthetic_embeddings(task["queries"], seed=99)
    W = sae.decoder_directions
    times = {"exact": [], "approx": []}
    recalls = []
    for i, q in enumerate(queries):
        for name, index in (("exact", exact), ("approx", approx)):
            t0 = time.perf_counter()
            qx = q[None, :]
            code = sae.transform(qx)
            residual = qx - sae.decode(code)
            steered = code.toarray()
            latent = int(code.indices[0]) if code.nnz else 0
            steered[0, latent] += 1.0  # turn one present latent up
            v = steered @ W + sae.model_.b_pre.detach().numpy() + residual
            v = (v / np.linalg.norm(v)).astype(np.float32)
            _, ids = index.search(v, 10)
            times[name].append(time.perf_counter() - t0)
            if name == "exact":
                truth = set(ids[0].tolist())
            else:
                recalls.append(len(truth & set(ids[0].tolist())) / 10)
    lat = {name: {"p50_ms": float(np.percentile(t, 50) * 1e3), "p95_ms": float(np.percentile(t, 95) * 1e3)}
           for name, t in times.items()}
    emit("search", n=n, latency=lat, recall_at_10=float(np.mean(recalls)), nprobe=task["nprobe"], nlist=int(4 * np.sqrt(n)))
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    task = json.loads(sys.argv[1])
    {"train": do_train, "select": do_select, "scale": do_scale}[task["kind"]](task)
