"""Choose the SAE latents most related to a target, straight from sparse codes.

Three methods, all on the N x m CSR codes without ever densifying them:

- ``correlation``: Pearson r of each latent's activation with y (from sparse column sums).
- ``separation``: mean y over a latent's top-``top_n`` *positive* activations minus mean y over the
  rows where it is exactly zero. Latents with no positive activation (or that are never zero) get
  NaN and are never chosen; latents with fewer than ``top_n`` positives use all of them.
- ``lasso``: an L1 path (Lasso for a continuous target, L1-logistic for a binary one) at a
  regularisation where exactly ``n`` latents are non-zero (read off a LARS path, or bisected).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import scipy.sparse as sp

from .data import one_column
from .errors import DataError

METHODS = ("correlation", "separation", "lasso")
KINDS = ("continuous", "binary")


@dataclass
class Selection:
    latents: np.ndarray  # int, the chosen latent ids, best first
    scores: np.ndarray  # float, the method's score for each chosen latent (signed where the method has a sign)
    method: str  # 'correlation' | 'separation' | 'lasso'
    all_scores: Optional[np.ndarray] = None  # (m,) scores for every latent when the method defines them
    warnings: list[str] = field(default_factory=list)  # anything the caller should tell the user
    details: dict = field(default_factory=dict)  # method specifics, e.g. the lasso's regularisation


# ---------------------------------------------------------------------------- validation
def _as_codes(codes) -> sp.csr_matrix:
    if not sp.issparse(codes):
        arr = np.asarray(codes)
        if arr.ndim != 2:
            raise DataError(f"SAE codes must be a 2-D matrix (documents x latents), got shape {arr.shape}")
        codes = sp.csr_matrix(arr)
    codes = sp.csr_matrix(codes, dtype=np.float64)
    if codes.nnz and not np.isfinite(codes.data).all():
        raise DataError("SAE codes contain NaN or infinite values; re-encode the documents")
    return codes


def _as_target(y, n_rows: int) -> np.ndarray:
    y = one_column(y).astype(np.float64)
    if len(y) != n_rows:
        raise DataError(
            f"The codes have {n_rows} rows but the target has {len(y)} values; they must describe the same documents"
        )
    if not np.isfinite(y).all():
        raise DataError("The target contains missing or infinite values; drop those rows first")
    if len(y) < 2 or np.ptp(y) == 0:
        raise DataError("The target is constant, so no latent can be related to it; pick a target that varies")
    return y


def _check_kind(kind: str, y: np.ndarray) -> None:
    if kind not in KINDS:
        raise DataError(f"Unknown target kind '{kind}'; use one of {', '.join(KINDS)} (multiclass: one class vs rest)")
    if kind == "binary" and not np.isin(y, (0.0, 1.0)).all():
        raise DataError("A binary target must be coded 0/1; use kind='continuous' or recode the target")


# ---------------------------------------------------------------------------- scores
def _column_moments(codes: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """Column means and (population) variances from sparse sums; variances below rounding are 0."""
    n = codes.shape[0]
    mean = np.asarray(codes.sum(axis=0)).ravel() / n
    mean_sq = np.asarray(codes.multiply(codes).sum(axis=0)).ravel() / n
    var = mean_sq - mean**2
    # E[x^2] - E[x]^2 cancels for a latent that is (almost) constant; call that no variation.
    var[var <= 1e-12 * np.maximum(mean_sq, 1e-300)] = 0.0
    return mean, var


def correlation_scores(codes: sp.csr_matrix, y: np.ndarray) -> np.ndarray:
    """(m,) Pearson r of each latent's activation with y; 0 for latents that never vary."""
    codes = _as_codes(codes)
    y = _as_target(y, codes.shape[0])
    n = codes.shape[0]
    y_c = y - y.mean()  # centring y makes E[x y_c] the covariance directly
    cov = np.asarray(codes.T @ y_c).ravel() / n
    _, var = _column_moments(codes)
    sd_y = np.sqrt(np.mean(y_c**2))
    r = np.zeros(codes.shape[1])
    ok = var > 0
    r[ok] = cov[ok] / (np.sqrt(var[ok]) * sd_y)
    return np.clip(r, -1.0, 1.0)


def separation_scores(codes, y, top_n: int = 100) -> np.ndarray:
    """(m,) mean y over each latent's top-``top_n`` positive activations minus mean y where it is exactly 0.

    Ties at the top-``top_n`` boundary are broken by row order (earlier rows first). NaN for a latent
    with no positive activation or with no zero row.
    """
    codes = _as_codes(codes)
    y = _as_target(y, codes.shape[0])
    if int(top_n) < 1:
        raise DataError(f"top_n must be at least 1, got {top_n}")
    n, m = codes.shape
    y = y - y.mean()  # a difference of means is shift-invariant; centring keeps the sums accurate
    codes = codes.copy()
    codes.eliminate_zeros()  # explicitly stored zeros count as zero rows

    # Rows where the latent is exactly zero: everything minus its non-zero rows.
    is_nonzero = codes.copy()
    is_nonzero.data = np.ones_like(is_nonzero.data)
    n_zero = n - np.asarray(is_nonzero.sum(axis=0)).ravel()
    y_zero = y.sum() - np.asarray(is_nonzero.T @ y).ravel()

    # Positive activations only, one column per latent (rows ascending within a column).
    positive = codes.multiply(codes > 0).tocsc()
    positive.eliminate_zeros()
    positive.sort_indices()
    counts = np.diff(positive.indptr)
    y_rows = y[positive.indices]
    # Latents with at most top_n positives use all of them: one vectorised sum.
    n_top = np.minimum(counts, top_n).astype(np.float64)
    running = np.concatenate([[0.0], np.cumsum(y_rows)])
    y_top = running[positive.indptr[1:]] - running[positive.indptr[:-1]]
    # Latents with more: keep the top_n largest, ties at the cut broken by row order. The loop is over
    # latents (thousands), each a partial sort of that latent's positives.
    for j in np.flatnonzero(counts > top_n):
        lo, hi = positive.indptr[j], positive.indptr[j + 1]
        vals = positive.data[lo:hi]
        cut = np.partition(vals, len(vals) - top_n)[len(vals) - top_n]
        above = vals > cut
        at_cut = np.flatnonzero(vals == cut)[: top_n - int(above.sum())]
        y_top[j] = y_rows[lo:hi][above].sum() + y_rows[lo:hi][at_cut].sum()

    score = np.full(m, np.nan)
    ok = (n_top > 0) & (n_zero > 0)
    score[ok] = y_top[ok] / n_top[ok] - y_zero[ok] / n_zero[ok]
    return score


def _rank_by_magnitude(scores: np.ndarray, eligible: np.ndarray, n: int) -> np.ndarray:
    """Indices of the n eligible scores with the largest |score|, best first (ties: lower id first)."""
    idx = np.flatnonzero(eligible & np.isfinite(scores))
    order = np.lexsort((idx, -np.abs(scores[idx])))
    return idx[order[:n]]


# ---------------------------------------------------------------------------- lasso
@dataclass
class LassoPath:
    """What ``lasso_path_fit`` found: chosen latents and coefficients, plus how it got there."""

    latents: np.ndarray
    coefs: np.ndarray  # per standard deviation of the latent's activation, signed
    kind: str
    regularisation: float  # Lasso ``alpha`` (continuous) or logistic ``C`` (binary)
    n_nonzero: int  # non-zero latents at that regularisation (== n unless ties made n unreachable)
    n_fits: int
    warnings: list[str] = field(default_factory=list)


def standardised_codes(codes) -> tuple[sp.csr_matrix, np.ndarray]:
    """Codes with each column divided by its standard deviation (no centring, so they stay sparse).

    Returns (scaled codes, per-column scale); latents that never vary get scale 0 and an all-zero column.
    """
    codes = _as_codes(codes)
    _, var = _column_moments(codes)
    sd = np.sqrt(var)
    inv = np.zeros_like(sd)
    inv[sd > 0] = 1.0 / sd[sd > 0]
    scaled = sp.csr_matrix(codes @ sp.diags(inv))
    scaled.eliminate_zeros()
    return scaled, sd


def l1_model(kind: str, strength: float):
    """The sklearn estimator fitted at one L1 strength (public so callers and tests can refit it)."""
    from sklearn.linear_model import Lasso, LogisticRegression

    if kind == "continuous":
        return Lasso(alpha=strength, fit_intercept=True, max_iter=10_000, tol=1e-6, selection="cyclic")
    # liblinear is the fast sparse L1-logistic solver (it has no warm start). It penalises the
    # intercept like a feature; a large intercept_scaling makes that negligible.
    return LogisticRegression(
        C=strength,
        l1_ratio=1.0,
        solver="liblinear",
        fit_intercept=True,
        intercept_scaling=100.0,
        max_iter=10_000,
        tol=1e-6,
    )


class _L1Path:
    """L1-logistic fits along the regularisation path on some columns of X, remembering each."""

    def __init__(self, kind: str, X: sp.csr_matrix, y: np.ndarray):
        self.kind, self.X, self.y = kind, X, y
        self.fits: dict[float, np.ndarray] = {}
        self.intercepts: dict[float, float] = {}

    def coef(self, strength: float) -> np.ndarray:
        if strength in self.fits:
            return self.fits[strength]
        from sklearn.exceptions import ConvergenceWarning

        model = l1_model(self.kind, strength)
        with warnings.catch_warnings():
            # A fit that stops at max_iter still ranks latents sensibly; the search only needs counts.
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(self.X, self.y)
        self.fits[strength] = np.ravel(model.coef_).copy()
        self.intercepts[strength] = float(np.ravel(model.intercept_)[0])
        return self.fits[strength]

    def count(self, strength: float) -> int:
        return int(np.count_nonzero(self.coef(strength)))


def _lars_interval_pick(alphas: np.ndarray, coefs: np.ndarray, n: int):
    """On a LARS-lasso path, the L1 strength and coefficients where exactly ``n`` variables are non-zero.

    Between knots k and k+1 the active set is fixed and coefficients are linear in alpha, so the
    midpoint (in log scale) of the first interval with ``n`` non-zero gives an exact Lasso solution.
    Returns (alpha, coef, n_nonzero): n_nonzero != n when ties make n unreachable (the first interval
    with more) or when the path ends with fewer (its last knot).
    """
    over = None
    for k in range(len(alphas) - 1):
        hi, lo = alphas[k], alphas[k + 1]
        if not hi > lo * (1 + 1e-12):
            continue  # zero-length interval: variables entering at the same alpha
        alpha = float(np.sqrt(hi * lo)) if lo > 0 else hi / 2
        w = (hi - alpha) / (hi - lo)
        coef = coefs[:, k] + w * (coefs[:, k + 1] - coefs[:, k])
        count = int(np.count_nonzero(coef))
        if count == n:
            return alpha, coef, count
        if count > n and over is None:
            over = (alpha, coef, count)
            break
    if over is not None:
        return over
    return float(alphas[-1]), coefs[:, -1].copy(), int(np.count_nonzero(coefs[:, -1]))


def _lasso_by_lars(X: sp.csr_matrix, sd: np.ndarray, y: np.ndarray, n: int, size: int):
    """Continuous target: one LARS-lasso path on a working set of latents, checked against all of them.

    The path runs on a precomputed Gram matrix of the centred, standardised columns of a working set
    (the latents most correlated with y), built sparsely, so neither an N x m dense matrix nor an m x m
    Gram is formed. The solution found is then checked against every latent's optimality condition
    (|x_j^T r| / N <= alpha); latents that violate it join the working set and the path is rerun, so the
    answer is the exact Lasso solution over all latents. Returns (alpha, coef (m,), n_nonzero, n_paths).
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import lars_path_gram

    N, m = X.shape
    mu = np.asarray(X.mean(axis=0)).ravel()  # column means of the scaled codes
    y_c = y - y.mean()
    corr = np.asarray(X.T @ y_c).ravel()  # centring y is enough: sum(y_c) = 0
    varying = np.flatnonzero(sd > 0)
    order = varying[np.lexsort((varying, -np.abs(corr[varying])))]
    size = min(len(order), size)
    work = np.sort(order[:size])
    X_csc = X.tocsc()
    for n_paths in range(1, 50):
        Xw = X_csc[:, work]
        gram = (Xw.T @ Xw).toarray() - N * np.outer(mu[work], mu[work])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            max_iter = 4 * n + 20
            while True:
                alphas, _, path = lars_path_gram(corr[work], gram, n_samples=N, method="lasso", max_iter=max_iter)
                if len(alphas) <= max_iter or np.count_nonzero(path[:, -1]) >= n:
                    break
                max_iter *= 2  # many drops along the path: give it more steps
        alpha, coef_w, count = _lars_interval_pick(alphas, path, n)
        coef = np.zeros(m)
        coef[work] = coef_w
        # Optimality over all latents: the residual's correlation may not exceed alpha off the working set.
        fitted = Xw @ coef_w
        grad = np.abs(np.asarray(X.T @ (y_c - (fitted - fitted.mean()))).ravel()) / N
        outside = np.ones(m, dtype=bool)
        outside[work] = False
        outside &= sd > 0
        violators = np.flatnonzero(outside & (grad > alpha * (1 - 1e-9)))
        if len(violators) == 0:
            return alpha, coef, count, n_paths
        # Grow by the violators plus as many again of the next most correlated, to converge in few rounds.
        extra = order[~np.isin(order, work)][: max(len(violators), size)]
        work = np.union1d(work, np.union1d(violators, extra))
    return alpha, coef, count, n_paths


def _continuous_lasso(X: sp.csr_matrix, sd: np.ndarray, y: np.ndarray, n: int, size: int) -> LassoPath:
    alpha, coef, count, n_paths = _lasso_by_lars(X, sd, y, n, size)
    notes: list[str] = []
    if count > n:
        notes.append(
            f"No L1 strength gives exactly {n} latents (tied latents enter together); "
            f"kept the {n} largest of {count} at the first strength with more"
        )
    elif count < n:
        notes.append(
            f"The L1 path keeps only {count} latents even at its weakest penalty; returning those instead of {n}"
        )
    nonzero = np.flatnonzero(coef)
    order = np.lexsort((nonzero, -np.abs(coef[nonzero])))
    chosen = nonzero[order[:n]]
    return LassoPath(
        latents=chosen.astype(np.int64),
        coefs=coef[chosen],
        kind="continuous",
        regularisation=alpha,
        n_nonzero=count,
        n_fits=n_paths,
        warnings=notes,
    )


def lasso_path_fit(codes, y, n: int, kind: str, max_fits: int = 60, working_set: Optional[int] = None) -> LassoPath:
    """Find an L1 strength at which exactly ``n`` latents are non-zero, and the fit there.

    Features are the codes scaled to unit standard deviation with an intercept. A continuous target
    reads the strength off one exact LARS-lasso path (``regularisation`` is sklearn's Lasso ``alpha``);
    a binary one bisects the L1-logistic ``C`` (log scale). Both work on a set of the latents most
    correlated with y and then check every other latent's optimality condition, growing the set until
    none is violated. If no strength gives exactly ``n`` (tied latents enter together), the closest
    count above ``n`` is used and its ``n`` largest |coef| kept; if even the weakest penalty keeps fewer,
    those are returned; ``warnings`` says so. ``working_set`` is the size of the first set of latents
    (default ``max(5n + 50, 100)``); the answer does not depend on it, only the time taken.
    """
    codes = _as_codes(codes)
    y = _as_target(y, codes.shape[0])
    _check_kind(kind, y)
    m = codes.shape[1]
    if not 1 <= int(n) <= m:
        raise DataError(f"Cannot select {n} latents from an SAE with {m}; choose n between 1 and {m}")
    n = int(n)
    X, sd = standardised_codes(codes)
    if not (sd > 0).any():
        raise DataError("No latent varies across these documents, so none can predict the target")
    size = max(5 * n + 50, 100) if working_set is None else max(int(working_set), 1)
    if kind == "continuous":
        return _continuous_lasso(X, sd, y, n, size)
    # L1-logistic: bisect C on a working set of the latents most correlated with y (cheap fits), then
    # check every other latent's optimality condition at the C found and refit with any that violate it.
    corr = np.abs(np.asarray(X.T @ (y - y.mean())).ravel())
    varying = np.flatnonzero(sd > 0)
    order = varying[np.lexsort((varying, -corr[varying]))]
    size = min(len(order), size)
    work = np.sort(order[:size])
    X_csc, total_fits = X.tocsc(), 0
    while True:
        Xw = sp.csr_matrix(X_csc[:, work])
        strength, coef_w, n_fits, notes, path = _bisect_strength(Xw, y, n, kind, max_fits)
        total_fits += n_fits
        if len(work) == len(varying):
            break
        # liblinear's optimum: C * |x_j^T (y - p)| <= 1 for every latent left at zero.
        p = 1.0 / (1.0 + np.exp(-(Xw @ coef_w + path.intercepts[strength])))  # intercept_ is already scaled
        grad = strength * np.abs(np.asarray(X.T @ (y - p)).ravel())
        outside = np.ones(m, dtype=bool)
        outside[work] = False
        violators = np.flatnonzero(outside & (sd > 0) & (grad > 1.0 + 1e-3))
        if len(violators) == 0:
            break
        extra = order[~np.isin(order, work)][: max(len(violators), size)]
        work = np.union1d(work, np.union1d(violators, extra))
    coef = np.zeros(m)
    coef[work] = coef_w
    nonzero = np.flatnonzero(coef)
    order = np.lexsort((nonzero, -np.abs(coef[nonzero])))
    chosen = nonzero[order[:n]]
    return LassoPath(
        latents=chosen.astype(np.int64),
        coefs=coef[chosen],
        kind=kind,
        regularisation=strength,
        n_nonzero=int(len(nonzero)),
        n_fits=total_fits,
        warnings=notes,
    )


def _bisect_strength(X: sp.csr_matrix, y: np.ndarray, n: int, kind: str, max_fits: int):
    """Bisect the L1 strength (log scale) until exactly n columns of X are non-zero.

    Returns (strength, coef, n_fits, notes, path); the closest count above n or, failing that, the
    weakest strength tried stands in when exactly n is unreachable, with a note saying so.
    """
    from sklearn.svm import l1_min_c

    path = _L1Path(kind, X, y)
    count = path.count
    # The strength at which the first latent enters; beyond it the model is empty. Step towards a
    # weaker penalty by 10x until at least n latents are in (sparse fits first: they are the cheap ones).
    edge = float(l1_min_c(X, y, loss="log", fit_intercept=True, intercept_scaling=100.0))
    weaker = 10.0  # larger C, more latents
    below, above = edge, None  # strengths known to give < n and >= n latents
    for _ in range(8):
        candidate = below * weaker
        if count(candidate) >= n:
            above = candidate
            break
        below = candidate
    found = above if above is not None and count(above) == n else None
    while found is None and above is not None and len(path.fits) < max_fits:
        mid = float(np.sqrt(above * below))  # bisect in log scale
        c = count(mid)
        if c == n:
            found = mid
        elif c > n:
            above = mid
        else:
            below = mid
        if abs(np.log(above) - np.log(below)) < 1e-9:
            break

    notes: list[str] = []
    if found is not None:
        strength = found
    elif above is not None:
        strength = above
        notes.append(
            f"No L1 strength gives exactly {n} latents (tied latents enter together); "
            f"kept the {n} largest of {count(above)} at the closest strength above"
        )
    else:
        strength = below
        notes.append(
            f"Even the weakest L1 penalty tried keeps only {count(below)} latents; returning those instead of {n}"
        )
    return strength, path.fits[strength], len(path.fits), notes, path


# ---------------------------------------------------------------------------- entry point
def select_latents(
    codes, y, method: str = "correlation", n: int = 20, kind: str = "continuous", top_n: int = 100
) -> Selection:
    """The ``n`` latents most related to ``y`` by ``method``, best first."""
    if method not in METHODS:
        raise DataError(f"Unknown selection method '{method}'; use one of {', '.join(METHODS)}")
    codes = _as_codes(codes)
    y = _as_target(y, codes.shape[0])
    _check_kind(kind, y)
    m = codes.shape[1]
    if not isinstance(n, (int, np.integer)) or not 1 <= n <= m:
        raise DataError(f"Cannot select {n} latents from an SAE with {m}; choose n between 1 and {m}")

    if method == "lasso":
        path = lasso_path_fit(codes, y, int(n), kind)
        return Selection(
            latents=path.latents,
            scores=path.coefs,
            method=method,
            all_scores=None,
            warnings=list(path.warnings),
            details={
                "regularisation": path.regularisation,
                "regularisation_name": "alpha" if kind == "continuous" else "C",
                "n_nonzero": path.n_nonzero,
                "n_fits": path.n_fits,
            },
        )

    if method == "correlation":
        scores = correlation_scores(codes, y)
        _, var = _column_moments(codes)
        eligible = var > 0
        reason = "vary across the documents"
    else:
        scores = separation_scores(codes, y, top_n=top_n)
        eligible = np.isfinite(scores)
        reason = "have both positive activations and zero rows"
    chosen = _rank_by_magnitude(scores, eligible, int(n))
    notes = []
    if len(chosen) < n:
        notes.append(f"Only {len(chosen)} latents {reason}; returning {len(chosen)} instead of {n}")
    return Selection(
        latents=chosen.astype(np.int64),
        scores=scores[chosen],
        method=method,
        all_scores=scores,
        warnings=notes,
        details={"top_n": int(top_n)} if method == "separation" else {},
    )
