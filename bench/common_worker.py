"""Measurement helpers both worker processes share (numpy + stdlib only, so the reference venv can import it)."""

from __future__ import annotations

import json

import numpy as np


def emit(item: str, **fields) -> None:
    """Report one finished item to the parent process (one JSON line)."""
    print("RESULT " + json.dumps({"item": item, **fields}, default=float), flush=True)


def nmse_of(X_hat: np.ndarray, X: np.ndarray) -> float:
    """Squared reconstruction error over the data's total variance (same formula for both sides)."""
    X = X.astype(np.float64)
    return float(((X_hat - X) ** 2).sum() / ((X - X.mean(0)) ** 2).sum())


def best_f1(present: np.ndarray, concept: np.ndarray) -> tuple[float, int | None]:
    """Best F1 over columns of a boolean (N x n) presence matrix against a 0/1 concept; (f1, column)."""
    if hasattr(present, "toarray"):
        present = present.toarray()
    present = np.asarray(present, dtype=bool)
    if present.ndim == 1:
        present = present[:, None]
    concept = np.asarray(concept).astype(bool)
    tp = (present & concept[:, None]).sum(0)
    denom = present.sum(0) + concept.sum()
    f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    if f1.size == 0:
        return 0.0, None
    j = int(np.argmax(f1))
    return float(f1[j]), j


def synthetic_task_codes(n: int, m: int, k: int, seed: int = 0):
    """Sparse (N x m) codes with k active latents per row and a continuous target tied to a few latents.

    Returns (indptr, indices, data, y) so the caller builds its own CSR; popularity of latents is
    Zipf-like, as in trained SAEs, so some latents are dense and many are rare.
    """
    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, m + 1) ** 0.8
    pop /= pop.sum()
    cols = rng.choice(m, size=(n, k), p=pop)
    cols.sort(axis=1)
    vals = rng.exponential(1.0, size=(n, k)).astype(np.float32)
    dup = np.zeros_like(cols, dtype=bool)
    dup[:, 1:] = cols[:, 1:] == cols[:, :-1]
    vals[dup] = 0.0  # a repeated latent counts once
    informative = rng.choice(m, size=10, replace=False)
    weights = rng.normal(0, 1, size=10)
    y = rng.normal(0, 1, size=n)
    for lat, w in zip(informative, weights):
        y += w * (vals * (cols == lat)).sum(1)
    keep = vals > 0
    counts = keep.sum(1)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return indptr, cols[keep].astype(np.int32), vals[keep], y.astype(np.float64)


def warm_up_optimizer() -> None:
    """Create a throwaway Adam: torch imports its compiler stack (seconds) on the first optimizer of a
    process, a one-time cost that would otherwise land inside whichever fit is timed first."""
    import torch

    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
