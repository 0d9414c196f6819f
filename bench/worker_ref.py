"""Reference side of the benchmarks: runs inside bench/.venv-ref with the PyPI ``hypothesaes`` package.

Only the reference's own public functions are called (its SparseAutoencoder fit/get_activations and
its select_neurons_* functions); everything else here is measurement. The package's ``__init__``
imports its LLM and embedding stack, so the two modules we need are loaded from their files directly:
that keeps the network-facing code unloaded and start-up short. Usage: ``python worker_ref.py JSON``.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from common_worker import best_f1, emit, nmse_of, synthetic_task_codes, warm_up_optimizer  # noqa: F401
from memwatch import PeakRSS

_PKG = Path(importlib.util.find_spec("hypothesaes").submodule_search_locations[0])


@functools.cache
def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"ref_{name}", _PKG / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def train_sae(X: np.ndarray, m: int, k: int, epochs: int, patience: int, seed: int, batch_size: int = 512):
    """The reference's SAE, with the same 90/10 train/validation split size as ours."""
    ref = _load("sae")
    torch.manual_seed(seed)
    order = np.random.default_rng(seed).permutation(len(X))
    n_val = int(round(len(X) * 0.1))
    X_val, X_tr = torch.from_numpy(X[np.sort(order[:n_val])]), torch.from_numpy(X[np.sort(order[n_val:])])
    sae = ref.SparseAutoencoder(input_dim=X.shape[1], m_total_neurons=m, k_active_neurons=k, device="cpu")
    history = sae.fit(
        X_tr, X_val, batch_size=batch_size, learning_rate=5e-4, n_epochs=epochs, patience=patience, show_progress=False
    )
    return sae, len(history["train_loss"])


def reconstruct(sae, X: np.ndarray) -> np.ndarray:
    sae.eval()
    out = []
    with torch.no_grad():
        for s in range(0, len(X), 8192):
            recon, _ = sae(torch.from_numpy(X[s : s + 8192]))
            out.append(recon.numpy())
    return np.concatenate(out)


def do_train(task: dict) -> None:
    X = np.load(task["x"])
    _load("sae")  # module import outside the timer, as for ours
    warm_up_optimizer()
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        sae, epochs = train_sae(X, task["m"], task["k"], task["epochs"], task["epochs"] + 1, task["seed"])
        fit_s = time.perf_counter() - t0
    emit(
        "train",
        fit_s=fit_s,
        epochs=epochs,
        s_per_epoch=fit_s / epochs,
        nmse=nmse_of(reconstruct(sae, X), X),
        extra_mib=mem.extra_mib,
    )
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        acts = sae.get_activations(X, show_progress=False)
        enc_s = time.perf_counter() - t0
    emit(
        "encode",
        encode_s=enc_s,
        codes_bytes=int(acts.nbytes),
        codes_format=f"dense {acts.dtype}",
        extra_mib=mem.extra_mib,
    )


WARMUP_ROWS = 2000  # rows of the warm-up call before each timed selection (both sides)


def do_select(task: dict) -> None:
    sel = _load("select_neurons")
    codes = sp.load_npz(task["codes"]).toarray()  # the reference keeps activations dense (get_activations)
    y = np.load(task["y"])
    fn = {
        "correlation": sel.select_neurons_correlation,
        "separation": sel.select_neurons_separation_score,
        "lasso": sel.select_neurons_lasso,
    }[task["method"]]
    kwargs = {"n_top_activating": 100} if task["method"] == "separation" else {}
    if task["method"] == "lasso":
        kwargs["classification"] = bool(task.get("classification", False))
    # Warm-up on a small slice, as on our side, so neither figure includes first-call costs.
    fn(codes[:WARMUP_ROWS], y[:WARMUP_ROWS], task["n"], **kwargs)
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        idx, _ = fn(codes, y, task["n"], **kwargs)
        secs = time.perf_counter() - t0
    emit(
        task["method"],
        seconds=secs,
        extra_mib=mem.extra_mib,
        latents=[int(i) for i in idx],
        input_bytes=int(codes.nbytes),
    )


def do_discover(task: dict) -> None:
    """Train the reference SAE on each dataset/seed, select per concept, score F1 on the holdout."""
    sel = _load("select_neurons")
    for job in task["jobs"]:
        X_tr, X_ho = np.load(job["x_train"]), np.load(job["x_hold"])
        t0 = time.perf_counter()
        sae, epochs = train_sae(X_tr, job["m"], job["k"], job["epochs"], job["patience"], job["seed"])
        A_tr = sae.get_activations(X_tr, show_progress=False)
        A_ho = sae.get_activations(X_ho, show_progress=False)
        for concept in job["concepts"]:
            y_tr, y_ho = np.load(concept["y_train"]), np.load(concept["y_hold"])
            for method in job["methods"]:
                if method == "correlation":
                    idx, _ = sel.select_neurons_correlation(A_tr, y_tr, job["n"])
                else:
                    idx, _ = sel.select_neurons_separation_score(A_tr, y_tr, job["n"], n_top_activating=100)
                f1, best = best_f1(A_ho[:, idx] > 0, y_ho)
                emit(
                    f"{job['dataset']}|{concept['name']}|{method}|{job['seed']}",
                    f1=f1,
                    latent=int(idx[best]) if best is not None else None,
                    epochs=epochs,
                    seconds=time.perf_counter() - t0,
                )


if __name__ == "__main__":
    task = json.loads(sys.argv[1])
    {"train": do_train, "select": do_select, "discover": do_discover}[task["kind"]](task)
