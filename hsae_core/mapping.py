"""The Map's numbers: a 2-D layout of the documents, density images, filters, regions labelled by their
most over-represented feature, and what a selected region holds.

The layout is UMAP (cosine) fitted on at most ``settings.SCALE.map_fit_rows`` documents; every other
document is placed at the similarity-weighted mean position of its nearest fitted documents (FAISS
IVF search over the fitted sample, in its top principal directions), so a million documents are laid
out in minutes, not hours.
Nothing here sends points anywhere: above ``settings.SCALE.map_points`` the page draws the aggregated
grid of :func:`density_grid` plus a sample of points for hover.
"""

from __future__ import annotations

import time
import warnings
from typing import Optional

import numpy as np
import pandas as pd
import scipy.sparse as sp

from . import settings
from .errors import DataError
from .progress import ProgressFn, report
from .unique_labels import label_words

# 1: UMAP transform beyond 50k; 2: neighbour placement; 3: neighbours found in PCA-64; 4: PCA start;
# 5: UMAP's neighbour graph from an exact FAISS search
LAYOUT_VERSION = 5
PLACE_NEIGHBOURS = 10
PLACE_CHUNK = 50_000
PLACE_DIMS = 64
SAME_POINT = 1e-5  # cosine distances below this are rounding: the same point (itself, or a duplicate text)
# UMAP's own start, spectral, solves an eigenproblem per part of its graph; on parts of a few near-identical
# texts (duplicated Upworthy headlines) the solver's answer differs from run to run, and so did the whole map
# (points moved by up to 32 units between two builds). A PCA start is the same every run and keeps at least
# as many of each document's 10 nearest neighbours (BENCHMARKS.md, "The Map's layout").
LAYOUT_INITS = ("pca", "spectral")


# ---------------------------------------------------------------------------------------------- layout
def compute_layout(
    embeddings: np.ndarray,
    seed: int = 0,
    n_neighbors: int = 15,
    fit_rows: int = settings.SCALE.map_fit_rows,
    progress: Optional[ProgressFn] = None,
    with_info: bool = False,
    init: str = "pca",
):
    """(N, 2) float32 layout (UMAP, cosine metric, started from ``init``: pca, the same every run, or UMAP's
    spectral); with ``with_info`` also a dict saying how it was made.

    Beyond ``fit_rows`` documents UMAP is fitted on a random sample and each remaining document is put at
    the similarity-weighted mean of its nearest sampled documents' positions (read in chunks: ``embeddings``
    may be a memory map).
    """
    from .chunked import release, sample_matrix, sample_rows

    t0 = time.perf_counter()
    n = len(embeddings)
    if n < 3:
        raise DataError(f"A map needs at least 3 documents, this workspace has {n}")
    fit = sample_rows(n, fit_rows, seed)
    n_fit = n if fit is None else len(fit)
    report(progress, 0, 3, "loading UMAP")
    import umap

    X_fit = _unit(np.asarray(embeddings, dtype=np.float32) if fit is None else sample_matrix(embeddings, fit))
    release(embeddings)
    report(progress, 1, 3, f"UMAP on {n_fit:,} documents")
    fitted, start = _fit_umap(umap, X_fit, min(n_neighbors, n_fit - 1), seed, init)
    if fit is None:
        coords = fitted
    else:
        coords = np.empty((n, 2), dtype=np.float32)
        coords[fit] = fitted
        rest = np.setdiff1d(np.arange(n), fit, assume_unique=True)
        _place_by_neighbours(embeddings, rest, X_fit, fitted, coords, progress)
    report(progress, 3, 3, "layout done")
    info = {
        "method": "umap" if fit is None else "umap on a sample + nearest-neighbour placement",
        "init": start,
        "fit_rows": int(n_fit),
        "n_docs": int(n),
        "seconds": round(time.perf_counter() - t0, 1),
        "version": LAYOUT_VERSION,
    }
    return (coords, info) if with_info else coords


def _fit_umap(umap, X: np.ndarray, n_neighbors: int, seed: int, init: str) -> tuple[np.ndarray, str]:
    """UMAP's float32 layout of ``X`` and the start it took. Documents whose embeddings spread along no
    direction (every one the same) have no principal axes: they start at random (seeded) instead."""
    if init not in LAYOUT_INITS:
        raise DataError(f"Unknown layout start '{init}'; use one of {', '.join(LAYOUT_INITS)}")

    neighbours = _exact_cosine_neighbours(X, n_neighbors)

    def fit(start: str) -> np.ndarray:
        reducer = umap.UMAP(
            n_components=2,
            n_neighbors=n_neighbors,
            metric="cosine",
            random_state=seed,
            n_jobs=1,
            low_memory=True,
            precomputed_knn=neighbours,
            init=start,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # PCA's 0/0 on such documents, handled below
            warnings.filterwarnings("ignore", "precomputed_knn", UserWarning)  # it cannot transform: not needed
            return np.asarray(reducer.fit_transform(X), dtype=np.float32)

    fitted = fit(init)
    if init == "pca" and not np.isfinite(fitted).all():
        return fit("random"), "random (the embeddings spread along no direction)"
    return fitted, init


def _exact_cosine_neighbours(X_unit: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, None]:
    """Each row's ``k`` nearest rows by cosine (itself among them), as UMAP's ``precomputed_knn``: (indices,
    cosine distances, no search index). UMAP's own search below 4,096 rows sends every pair of rows through a
    Python call (22 s for the 4,000 demo reviews in bench/bench_layout.py, holding the GIL that the dashboard's
    pages need meanwhile); above, it approximates. FAISS's exact search gives the exact neighbours in a fraction
    of a second."""
    import faiss

    X_unit = np.ascontiguousarray(X_unit, dtype=np.float32)
    index = faiss.IndexFlatIP(X_unit.shape[1])
    index.add(X_unit)
    similarity, found = index.search(X_unit, k)
    distance = np.clip(1.0 - similarity, 0.0, 2.0).astype(np.float32)
    # A row's distance to itself (or to a duplicate) comes out as float32 rounding, up to ~1e-7, not 0; UMAP
    # scales each row's neighbourhood from its nearest non-zero distance, so that rounding must read as 0.
    distance[distance < SAME_POINT] = 0.0
    return found.astype(np.int64), distance, None


def _unit(X: np.ndarray) -> np.ndarray:
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


def _place_by_neighbours(
    embeddings,
    rest: np.ndarray,
    X_fit: np.ndarray,
    fitted: np.ndarray,
    coords: np.ndarray,
    progress: Optional[ProgressFn],
    dims: int = PLACE_DIMS,
) -> None:
    """Neighbours are searched among the fitted documents in their top ``dims`` principal directions (IVF,
    8 of ~sqrt(n_fit) lists): an approximation that only decides where a point is drawn, at a sixth of the
    cost of a full-width search."""
    import faiss

    from .chunked import release

    mean = X_fit.mean(axis=0)
    centred = X_fit - mean
    # principal directions from the d x d covariance (an SVD of the n x d sample is ~50x slower here)
    _, vecs = np.linalg.eigh((centred.T @ centred).astype(np.float64))
    basis = np.ascontiguousarray(vecs[:, ::-1][:, : min(dims, vecs.shape[1])], dtype=np.float32)
    project = lambda X: _unit(np.ascontiguousarray((X - mean) @ basis, dtype=np.float32))  # noqa: E731
    P_fit = project(X_fit)
    d = P_fit.shape[1]
    nlist = max(1, int(np.sqrt(len(P_fit))))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.spherical = True
    index.train(P_fit)
    index.add(P_fit)
    index.nprobe = min(nlist, 8)
    for start in range(0, len(rest), PLACE_CHUNK):
        rows = rest[start : start + PLACE_CHUNK]
        q = project(_unit(np.ascontiguousarray(embeddings[rows], dtype=np.float32)))
        release(embeddings)
        sims, ids = index.search(q, PLACE_NEIGHBOURS)
        ok = ids >= 0
        # closer neighbours weigh more; cosine distance 1 - sim, floored so an exact duplicate does not divide by 0
        w = np.where(ok, 1.0 / np.maximum(1.0 - sims, 1e-3), 0.0).astype(np.float32)
        w_sum = np.maximum(w.sum(axis=1, keepdims=True), 1e-12)
        pos = fitted[np.where(ok, ids, 0)]  # (rows, neighbours, 2)
        coords[rows] = (w[:, :, None] * pos).sum(axis=1) / w_sum
        report(progress, 2, 3, f"placed {min(start + PLACE_CHUNK, len(rest)):,} of {len(rest):,} other documents")


# ---------------------------------------------------------------------------------------------- density
def density_grid(
    coords: np.ndarray,
    mask: Optional[np.ndarray] = None,
    values: Optional[np.ndarray] = None,
    bins: int = 300,
    extent: Optional[tuple[float, float, float, float]] = None,
    engine: str = "auto",
) -> dict:
    """Points aggregated on a ``bins`` x ``bins`` grid: counts and (with ``values``) the mean value per cell.

    Returns ``{"count", "mean", "x", "y", "extent", "engine"}``; arrays are (bins_y, bins_x) with row 0 at
    the bottom; ``x``/``y`` are the cell centres. ``engine`` is "numpy" or "datashader" (the optional
    ``map`` extra); "auto" reads ``$HSAE_MAP_ENGINE`` and defaults to numpy, which measured as fast as
    datashader at this grid size (and needs no JIT compilation on first use). Only this grid goes to the
    browser, whatever the number of points.
    """
    x0, x1, y0, y1 = extent or _extent(coords)
    sel = slice(None) if mask is None else np.asarray(mask, dtype=bool)
    x, y = coords[sel, 0], coords[sel, 1]
    v = None if values is None else np.asarray(values, dtype=np.float64)[sel]
    if engine == "auto":
        engine = settings.map_engine()
    if engine not in ("numpy", "datashader"):
        raise DataError(f"Unknown map engine {engine!r}: use 'numpy' or 'datashader'")
    use_ds = engine == "datashader"
    if use_ds and not _has_datashader():
        raise DataError("The datashader map engine needs the optional package: pip install -e .[map]")
    if use_ds:
        count, total = _datashader_grid(x, y, v, bins, (x0, x1, y0, y1))
    else:
        count, total = _numpy_grid(x, y, v, bins, (x0, x1, y0, y1))
    mean = None
    if v is not None:
        mean = np.full(count.shape, np.nan)
        np.divide(total, count, out=mean, where=count > 0)
    xs = x0 + (np.arange(bins) + 0.5) * (x1 - x0) / bins
    ys = y0 + (np.arange(bins) + 0.5) * (y1 - y0) / bins
    return {
        "count": count,
        "mean": mean,
        "x": xs,
        "y": ys,
        "extent": (x0, x1, y0, y1),
        "engine": "datashader" if use_ds else "numpy",
    }


def _extent(coords: np.ndarray) -> tuple[float, float, float, float]:
    x0, y0 = coords.min(axis=0)
    x1, y1 = coords.max(axis=0)
    pad_x, pad_y = max((x1 - x0) * 0.01, 1e-6), max((y1 - y0) * 0.01, 1e-6)
    return float(x0 - pad_x), float(x1 + pad_x), float(y0 - pad_y), float(y1 + pad_y)


def _numpy_grid(x, y, v, bins, extent):
    x0, x1, y0, y1 = extent
    ix = np.clip(((x - x0) * (bins / (x1 - x0))).astype(np.int64), 0, bins - 1)
    iy = np.clip(((y - y0) * (bins / (y1 - y0))).astype(np.int64), 0, bins - 1)
    cell = iy * bins + ix
    count = np.bincount(cell, minlength=bins * bins).reshape(bins, bins).astype(np.float64)
    total = None if v is None else np.bincount(cell, weights=v, minlength=bins * bins).reshape(bins, bins)
    return count, total


def _has_datashader() -> bool:
    try:
        import datashader  # noqa: F401
    except ImportError:
        return False
    return True


def _datashader_grid(x, y, v, bins, extent):
    import datashader as ds

    x0, x1, y0, y1 = extent
    frame = pd.DataFrame({"x": x, "y": y, **({} if v is None else {"v": v})})
    canvas = ds.Canvas(plot_width=bins, plot_height=bins, x_range=(x0, x1), y_range=(y0, y1))
    count = np.nan_to_num(canvas.points(frame, "x", "y", agg=ds.count()).values.astype(np.float64))
    total = None if v is None else np.nan_to_num(canvas.points(frame, "x", "y", agg=ds.sum("v")).values)
    return count, total


def hover_sample(n_or_mask, size: int = settings.SCALE.map_hover_points, seed: int = 0) -> np.ndarray:
    """Sorted document ids of a random sample (of every document, or of those where a mask is True)."""
    ids = np.arange(n_or_mask) if np.isscalar(n_or_mask) else np.flatnonzero(n_or_mask)
    if len(ids) <= size:
        return ids
    return np.sort(np.random.default_rng(seed).choice(ids, size=size, replace=False))


# ---------------------------------------------------------------------------------------------- selection
def points_in_box(coords: np.ndarray, x_range: tuple[float, float], y_range: tuple[float, float]) -> np.ndarray:
    """Boolean mask of points inside an axis-aligned box."""
    x, y = coords[:, 0], coords[:, 1]
    (xa, xb), (ya, yb) = sorted(x_range), sorted(y_range)
    return (x >= xa) & (x <= xb) & (y >= ya) & (y <= yb)


def points_in_polygon(coords: np.ndarray, xs, ys) -> np.ndarray:
    """Boolean mask of points inside a polygon (even-odd rule), e.g. a lasso selection."""
    px, py = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
    if len(px) < 3:
        return np.zeros(len(coords), dtype=bool)
    x, y = coords[:, 0].astype(np.float64), coords[:, 1].astype(np.float64)
    inside = np.zeros(len(coords), dtype=bool)
    candidates = points_in_box(coords, (px.min(), px.max()), (py.min(), py.max()))
    cx, cy = x[candidates], y[candidates]
    hit = np.zeros(len(cx), dtype=bool)
    for i in range(len(px)):
        xa, ya, xb, yb = px[i - 1], py[i - 1], px[i], py[i]
        crosses = (ya > cy) != (yb > cy)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_cross = xa + (cy - ya) * (xb - xa) / (yb - ya)
        hit ^= crosses & (cx < x_cross)
    inside[np.flatnonzero(candidates)] = hit
    return inside


def selection_mask(coords: np.ndarray, selection) -> Optional[np.ndarray]:
    """Documents inside a plotly selection (``{"box": [...], "lasso": [...], "points": [...]}``), or None.

    Boxes and lassos select every document in the drawn area, not only the points drawn in the browser;
    a click on single points (no area) selects those points' ``customdata`` document ids.
    """
    if not selection:
        return None
    mask = np.zeros(len(coords), dtype=bool)
    found = False
    for box in selection.get("box") or []:
        if len(box.get("x") or []) >= 2 and len(box.get("y") or []) >= 2:
            mask |= points_in_box(coords, (min(box["x"]), max(box["x"])), (min(box["y"]), max(box["y"])))
            found = True
    for lasso in selection.get("lasso") or []:
        if len(lasso.get("x") or []) >= 3:
            mask |= points_in_polygon(coords, lasso["x"], lasso["y"])
            found = True
    if not found:
        docs = [int(p["customdata"][0]) for p in selection.get("points") or [] if p.get("customdata")]
        if not docs:
            return None
        mask[np.asarray(docs)[(np.asarray(docs) >= 0) & (np.asarray(docs) < len(coords))]] = True
    return mask


# ---------------------------------------------------------------------------------------------- filters
def category_labels(values: pd.Series) -> pd.Series:
    """A category column's values as the text a legend shows: whole numbers without ".0" (a stars column with a
    gap reads as floats), and "(missing)" for no value."""
    out = values.astype(str)
    if pd.api.types.is_float_dtype(values):
        whole = values.notna() & (values == values.round())
        out[whole] = values[whole].astype(np.int64).astype(str)
    return out.where(values.notna(), "(missing)")


def fold_rare_values(labels: np.ndarray, legend: list[str], keep: int) -> tuple[np.ndarray, list[str]]:
    """(labels, legend) with every value past the legend's first ``keep`` - the commonest, as
    :func:`category_values` lists an unordered column - merged into one "other (N values)", so that a map
    has no more colours than a reader can tell apart; unchanged when the legend is no longer than ``keep + 1``."""
    if len(legend) <= keep + 1:
        return labels, legend
    rest = f"other ({len(legend) - keep} values)"
    labels = np.asarray(labels, dtype=object)
    return np.where(np.isin(labels, legend[:keep]), labels, rest), legend[:keep] + [rest]


def category_values(values: pd.Series, limit: int = 50) -> tuple[list[str], bool]:
    """(the values of a category column as :func:`category_labels` writes them, in the order a legend lists
    them; whether they are ordered): numbers in ascending order (1 to 5 stars, then drawn on an ordered colour
    scale; numbers in a column named as codes, ICLR's Decision, are listed in order but not ordered), anything
    else commonest first. At most ``limit`` values."""
    from .data import names_codes

    present = values.dropna()
    counts = category_labels(present).value_counts()
    numbers = pd.to_numeric(pd.Series(counts.index), errors="coerce")
    if len(counts) and numbers.notna().all() and not pd.api.types.is_bool_dtype(present):
        in_order = [counts.index[i] for i in np.argsort(numbers.to_numpy(), kind="stable")][:limit]
        return in_order, not names_codes(values.name)
    return counts.index.tolist()[:limit], False


def filter_mask(
    frame: pd.DataFrame,
    column: Optional[str] = None,
    values=None,
    value_range: Optional[tuple[float, float]] = None,
    feature_docs: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Documents kept by the Map's filters: a column equal to one of ``values`` or within ``value_range``,
    and (with ``feature_docs``, e.g. where a feature fires) only those documents."""
    keep = np.ones(len(frame), dtype=bool)
    if column is not None:
        if column not in frame.columns:
            raise DataError(f"No column '{column}' to filter on")
        col = frame[column]
        if value_range is not None:
            num = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
            keep &= (num >= value_range[0]) & (num <= value_range[1])
        if values is not None:
            keep &= category_labels(col).isin([str(v) for v in values]).to_numpy()  # as the legend writes them
    if feature_docs is not None:
        only = np.zeros(len(frame), dtype=bool)
        only[np.asarray(feature_docs, dtype=np.int64)] = True
        keep &= only
    return keep


# ---------------------------------------------------------------------------------------------- over-representation
def _csr(codes) -> sp.csr_matrix:
    return codes if sp.issparse(codes) and codes.format == "csr" else sp.csr_matrix(codes)


def fire_counts(codes: sp.csr_matrix, rows: Optional[np.ndarray] = None) -> np.ndarray:
    """(m,) number of documents (all, or the boolean/positional ``rows``) where each latent fires."""
    codes = _csr(codes)
    if rows is not None:
        rows = np.asarray(rows)
        codes = codes[np.flatnonzero(rows) if rows.dtype == bool else rows]
    return np.bincount(codes.indices[codes.data > 0], minlength=codes.shape[1]).astype(np.float64)


def _log_odds(fire_in, n_in, fire_out, n_out):
    a, b = fire_in + 0.5, n_in - fire_in + 0.5
    c, d = fire_out + 0.5, n_out - fire_out + 0.5
    log_odds = np.log(a / b) - np.log(c / d)
    return log_odds, log_odds / np.sqrt(1 / a + 1 / b + 1 / c + 1 / d)


def region_overrepresentation(
    codes: sp.spmatrix, inside: np.ndarray, top: int = 20, min_inside: int = 3, among: Optional[np.ndarray] = None
) -> pd.DataFrame:
    """Features that fire more often inside a region than outside it (``among``: only these documents count).

    For each latent: counts of documents where it fires inside/outside, the two rates, their ratio and
    the smoothed log-odds ratio with its z-score (Haldane +0.5 correction). Sorted by z, strongest first;
    latents firing in fewer than ``min_inside`` selected documents are left out.
    """
    codes = _csr(codes)
    inside = np.asarray(inside, dtype=bool)
    if inside.shape[0] != codes.shape[0]:
        raise DataError(f"Selection has {inside.shape[0]} points but there are {codes.shape[0]} documents")
    universe = np.ones(len(inside), dtype=bool) if among is None else np.asarray(among, dtype=bool)
    inside = inside & universe
    n_in, n_out = int(inside.sum()), int((universe & ~inside).sum())
    if n_in == 0:
        raise DataError("The selected region holds no documents; select a region on the map")
    fire_in = fire_counts(codes, inside)
    fire_out = (fire_counts(codes) if among is None else fire_counts(codes, universe)) - fire_in
    log_odds, z = _log_odds(fire_in, n_in, fire_out, n_out)
    rate_in = fire_in / n_in
    rate_out = fire_out / max(n_out, 1)
    ratio = (fire_in + 0.5) / n_in / ((fire_out + 0.5) / max(n_out, 1))
    table = pd.DataFrame(
        {
            "latent": np.arange(codes.shape[1]),
            "inside": fire_in.astype(int),
            "outside": fire_out.astype(int),
            "inside_rate": rate_in,
            "outside_rate": rate_out,
            "ratio": ratio,
            "log_odds": log_odds,
            "z": z,
        }
    )
    table = table[(table["inside"] >= min_inside) & (table["log_odds"] > 0)]
    return table.sort_values("z", ascending=False).head(top).reset_index(drop=True)


def map_regions(
    coords: np.ndarray,
    codes: sp.csr_matrix,
    labels,
    n_regions: int = 12,
    seed: int = 0,
    fit_sample: int = 50_000,
    min_docs: int = 5,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Split the map into regions (k-means on the 2-D positions) and name each by its most over-represented
    feature that no region with a stronger name took, nor one whose label says the same in more or fewer words
    ("mentions adversarial examples" beside "Adversarial examples": the same name twice on a map says less
    than two names; a region with nothing left over-represented says so). Returns (region of every document, one row
    per region: region, x, y (label position), n_docs, latent, label, z, inside_rate, outside_rate)."""
    from sklearn.cluster import KMeans

    n = len(coords)
    n_regions = int(max(1, min(n_regions, n // max(min_docs, 1))))
    rng = np.random.default_rng(seed)
    fit = coords if n <= fit_sample else coords[rng.choice(n, size=fit_sample, replace=False)]
    km = KMeans(n_clusters=n_regions, n_init=3, random_state=seed).fit(np.asarray(fit, dtype=np.float64))
    region = km.predict(np.asarray(coords, dtype=np.float64)).astype(np.int32)
    codes = _csr(codes)
    # documents x regions one-hot; (codes > 0)^T @ onehot gives every region's fire counts in one product
    onehot = sp.csr_matrix((np.ones(n, dtype=np.float32), (np.arange(n), region)), shape=(n, n_regions))
    active = codes.astype(np.float32, copy=True)
    active.data = (active.data > 0).astype(np.float32)
    fire_in = np.asarray((active.T @ onehot).todense())  # (m, regions)
    fire_all = fire_in.sum(axis=1, keepdims=True)
    n_in = np.bincount(region, minlength=n_regions).astype(np.float64)[None, :]
    log_odds, z = _log_odds(fire_in, n_in, fire_all - fire_in, n - n_in)
    z[fire_in < min_docs] = -np.inf
    labels = np.asarray(labels)
    z[~(log_odds > 0)] = -np.inf
    name = _distinct_names(z, [label_words(label) for label in labels])
    rows = []
    for r in range(n_regions):
        j = name[r]
        ok = j >= 0
        members = coords[region == r]
        cx, cy = np.median(members, axis=0) if len(members) else km.cluster_centers_[r]
        rows.append(
            {
                "region": r,
                "x": float(cx),
                "y": float(cy),
                "n_docs": int(n_in[0, r]),
                "latent": int(j) if ok else -1,
                "label": str(labels[j]) if ok else "(no distinctive feature)",
                "z": float(z[j, r]) if ok else float("nan"),
                "inside_rate": float(fire_in[j, r] / max(n_in[0, r], 1)) if ok else float("nan"),
                "outside_rate": float((fire_all[j, 0] - fire_in[j, r]) / max(n - n_in[0, r], 1))
                if ok
                else float("nan"),
            }
        )
    return region, pd.DataFrame(rows)


# Region names on the Map: 11 px text is at most about 6 px a character (4.3-5.4 measured in Chromium) and, with
# its background, 18 px a line. The server never learns how wide the browser draws the chart, so the names are
# spread for a laptop: in a 1280 px window with the sidebar open, the plot area (the chart less its colour bar
# and 10 px margins) is 673 px wide and 580 px high; wider windows only leave more room between names.
LABEL_CHAR_PX, LABEL_LINE_PX, MAP_WIDTH_PX, MAP_HEIGHT_PX = 6.0, 18.0, 670.0, 580.0


def spread_labels(x, y, texts, x_span: float, y_span: float, order=None) -> np.ndarray:
    """New y positions for text labels centred at (x, y) so that no two overlap: each label, in ``order``
    (default: as given; put the largest regions first), keeps its place if it is free, else moves up or down
    by whole lines to the nearest free place (at most 4 lines). ``x_span``/``y_span``: the chart's data ranges."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    char_w = x_span * LABEL_CHAR_PX / MAP_WIDTH_PX
    line_h = y_span * LABEL_LINE_PX / MAP_HEIGHT_PX
    half_w = np.array([len(str(t)) * char_w / 2 for t in texts])
    placed: list[tuple[float, float, float]] = []  # (x, y, half width) of the labels placed so far
    out = y.copy()
    steps = [0, 1, -1, 2, -2, 3, -3, 4, -4]
    for i in range(len(x)) if order is None else order:
        for step in steps:
            cy = y[i] + step * line_h
            if all(abs(cy - py) >= line_h or abs(x[i] - px) >= half_w[i] + pw for px, py, pw in placed):
                out[i] = cy
                break
        placed.append((x[i], out[i], half_w[i]))
    return out


def _distinct_names(z: np.ndarray, names: Optional[list[frozenset]] = None) -> np.ndarray:
    """Per region (column of ``z``, latents x regions; -inf where a latent cannot name it): a latent no other
    region has, taken strongest z first; -1 where none is left. With ``names`` (each latent's label as
    :func:`~hsae_core.unique_labels.label_words`), taking a latent also takes those whose label's words hold
    its label's words or are held by them ("Adversarial examples", "mentions attack and adversarial
    examples")."""
    name = np.full(z.shape[1], -1)
    taken = np.zeros(z.shape[0], dtype=bool)
    order = np.argsort(-z, axis=0, kind="stable")  # each region's candidates, best first
    next_pick = np.zeros(z.shape[1], dtype=np.int64)
    open_regions = set(range(z.shape[1]))
    while open_regions:
        # The open region whose best untaken candidate is strongest picks it.
        best_r, best_z = None, -np.inf
        for r in sorted(open_regions):  # ties go to the lower region number
            while next_pick[r] < z.shape[0] and taken[order[next_pick[r], r]]:
                next_pick[r] += 1
            if next_pick[r] == z.shape[0] or not np.isfinite(z[order[next_pick[r], r], r]):
                open_regions.discard(r)  # nothing left that is over-represented here
                continue
            if z[order[next_pick[r], r], r] > best_z:
                best_r, best_z = r, z[order[next_pick[r], r], r]
        if best_r is None:
            break
        j = order[next_pick[best_r], best_r]
        name[best_r], taken[j] = j, True
        if names is not None and names[j]:
            taken |= np.array([bool(w) and (w <= names[j] or names[j] <= w) for w in names], dtype=bool)
        open_regions.discard(best_r)
    return name


def strongest_documents(
    codes_csc: sp.csc_matrix, docs_mask: np.ndarray, latent: Optional[int], limit: int = 100
) -> np.ndarray:
    """Up to ``limit`` document ids from ``docs_mask``, strongest on ``latent`` first (then in document order)."""
    chosen = np.flatnonzero(docs_mask)
    if latent is None or latent < 0 or len(chosen) == 0:
        return chosen[:limit]
    lo, hi = codes_csc.indptr[latent], codes_csc.indptr[latent + 1]
    rows, vals = codes_csc.indices[lo:hi], codes_csc.data[lo:hi]
    keep = docs_mask[rows] & (vals > 0)
    rows, vals = rows[keep], vals[keep]
    top = rows[np.argsort(-vals, kind="stable")][:limit]
    if len(top) < limit:
        rest = chosen[~np.isin(chosen, top)][: limit - len(top)]
        top = np.concatenate([top, rest])
    return top.astype(np.int64)
