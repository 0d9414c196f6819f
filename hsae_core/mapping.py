"""2-D map of the documents (UMAP) and which features are over-represented in a selected region."""
from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .errors import DataError
from .progress import ProgressFn, report

FIT_SAMPLE = 50_000


def compute_layout(embeddings: np.ndarray, seed: int = 0, n_neighbors: int = 15, fit_sample: int = FIT_SAMPLE,
                   progress: Optional[ProgressFn] = None) -> np.ndarray:
    """(N, 2) float32 UMAP layout (cosine metric). Beyond ``fit_sample`` documents UMAP is fitted on a
    random sample and the rest are placed with ``transform``, so time grows linearly with N."""
    X = np.asarray(embeddings, dtype=np.float32)
    n = len(X)
    if n < 3:
        raise DataError(f"A map needs at least 3 documents, this workspace has {n}")
    report(progress, 0, 2, "loading UMAP")
    import umap

    reducer = umap.UMAP(n_components=2, n_neighbors=min(n_neighbors, n - 1), metric="cosine", random_state=seed,
                        low_memory=True, force_approximation_algorithm=n > 4_000)
    report(progress, 1, 2, f"laying out {n:,} documents")
    if n <= fit_sample:
        coords = reducer.fit_transform(X)
    else:
        rng = np.random.default_rng(seed)
        fit_rows = np.sort(rng.choice(n, size=fit_sample, replace=False))
        coords = np.empty((n, 2), dtype=np.float32)
        coords[fit_rows] = reducer.fit_transform(X[fit_rows])
        rest = np.setdiff1d(np.arange(n), fit_rows)
        coords[rest] = reducer.transform(X[rest])
    report(progress, 2, 2, "layout done")
    return np.asarray(coords, dtype=np.float32)


def points_in_box(coords: np.ndarray, x_range: tuple[float, float], y_range: tuple[float, float]) -> np.ndarray:
    """Boolean mask of points inside an axis-aligned box."""
    x, y = coords[:, 0], coords[:, 1]
    return (x >= x_range[0]) & (x <= x_range[1]) & (y >= y_range[0]) & (y <= y_range[1])


def region_overrepresentation(codes: sp.spmatrix, inside: np.ndarray, top: int = 20, min_inside: int = 3) -> pd.DataFrame:
    """Features that fire more often inside a region than outside it.

    For each latent: counts of documents where it fires inside/outside, the two rates, their ratio and
    the smoothed log-odds ratio with its z-score (Haldane +0.5 correction). Sorted by z, strongest first;
    latents firing in fewer than ``min_inside`` selected documents are left out.
    """
    codes = sp.csr_matrix(codes)
    inside = np.asarray(inside, dtype=bool)
    if inside.shape[0] != codes.shape[0]:
        raise DataError(f"Selection has {inside.shape[0]} points but there are {codes.shape[0]} documents")
    n_in, n_out = int(inside.sum()), int((~inside).sum())
    if n_in == 0:
        raise DataError("The selected region holds no documents; select a region on the map")
    active = (codes > 0).astype(np.float32)
    fire_in = np.asarray(active.T @ inside.astype(np.float32)).ravel()
    fire_all = np.asarray(active.sum(axis=0)).ravel()
    fire_out = fire_all - fire_in
    a, b = fire_in + 0.5, n_in - fire_in + 0.5
    c, d = fire_out + 0.5, n_out - fire_out + 0.5
    log_odds = np.log(a / b) - np.log(c / d)
    z = log_odds / np.sqrt(1 / a + 1 / b + 1 / c + 1 / d)
    rate_in = fire_in / n_in
    rate_out = fire_out / max(n_out, 1)
    ratio = (fire_in + 0.5) / n_in / ((fire_out + 0.5) / max(n_out, 1))
    table = pd.DataFrame({"latent": np.arange(codes.shape[1]), "inside": fire_in.astype(int),
                          "outside": fire_out.astype(int), "inside_rate": rate_in, "outside_rate": rate_out,
                          "ratio": ratio, "log_odds": log_odds, "z": z})
    table = table[(table["inside"] >= min_inside) & (table["log_odds"] > 0)]
    return table.sort_values("z", ascending=False).head(top).reset_index(drop=True)
