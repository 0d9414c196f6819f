"""From SAE codes and a target to a set of hypotheses, on the training split only: rank latents
(:mod:`select`), give each a presence threshold (:mod:`presence`), drop near-duplicates (:mod:`distinct`);
or, with the method ``stepwise`` (:mod:`stepwise`), threshold every latent first and add them one at a
time by what their presence adds to the ones already chosen (for a binary target or a class, starting
from the latent whose presence alone best marks it, :func:`anyof.best_marker`).

A hypothesis stays one latent and one number: "present" means its activation is above its threshold.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import scipy.sparse as sp

from . import settings
from .anyof import best_marker
from .controls import ControlDesign, residualise
from .distinct import drop_near_duplicates
from .errors import DataError
from .presence import learn_thresholds, presence_matrix
from .select import select_latents

PRESENCE_MODES = settings.PRESENCE_MODES


@dataclass
class Choice:
    latents: np.ndarray  # chosen latent ids, best first
    scores: np.ndarray  # the selection method's score of each
    thresholds: np.ndarray  # presence threshold of each (0: fires at all)
    train_corr: np.ndarray  # r of each one's 0/1 presence with the training target
    warnings: list[str] = field(default_factory=list)
    dropped: list[dict] = field(default_factory=list)  # near-duplicates left out, and what they repeated


def min_present_rows(n_rows: int, frac: float) -> int:
    """Fewest training rows a learned threshold may keep: ``frac`` of them, at least 5."""
    return max(5, int(np.ceil(frac * n_rows)))


def choose_hypotheses(
    codes,
    y,
    *,
    method: str,
    n: int,
    kind: str,
    top_n: int,
    presence_mode: str = "learned",
    max_overlap: float = 1.0,
    min_present_frac: float = 0.0,
    controls: Optional[ControlDesign] = None,
) -> Choice:
    """The ``n`` best latents for ``y`` by ``method``, each with its presence threshold, no two overlapping
    (Jaccard of training presence) more than ``max_overlap``. Correlation and separation rank every latent,
    so dropped duplicates are replaced by the next ones; the lasso's ``n`` are thinned without refill.
    ``controls`` (the training rows' design, :mod:`controls`; stepwise only): choose by what each adds
    beyond them."""
    if presence_mode not in PRESENCE_MODES:
        raise DataError(f"Unknown `presence` '{presence_mode}'; use one of {', '.join(PRESENCE_MODES)}")
    if method == "stepwise":
        return _stepwise(codes, y, n, kind, presence_mode, max_overlap, min_present_frac, controls)
    if controls is not None:
        raise DataError(f"Adjusting for columns works with the `stepwise` selection (the default), not `{method}`")
    m = codes.shape[1]
    pool = n if method == "lasso" or max_overlap >= 1.0 else m
    sel = select_latents(codes, y, method=method, n=pool, kind=kind, top_n=top_n)
    cand = np.asarray(sel.latents, dtype=np.int64)
    if presence_mode == "learned":
        direction = np.zeros(m)
        direction[cand] = np.sign(sel.scores)  # a cut that goes the way the latent was chosen for
        learned = learn_thresholds(
            codes, y, min_present=min_present_rows(codes.shape[0], min_present_frac), direction=direction
        )
        thresholds, corr = learned.threshold[cand], learned.corr[cand]
    else:
        thresholds = np.zeros(len(cand))
    # Sparse: with near-duplicate removal every latent is a candidate, and a dense rows x latents
    # presence would not fit in memory for a large workspace.
    pool_presence = presence_matrix(_columns(codes, cand), thresholds)
    if presence_mode != "learned":
        corr = _presence_corr(pool_presence, y)
    # A pool larger than n only feeds the duplicate filter; its own "fewer than asked" notes do not apply.
    warnings = list(sel.warnings) if pool == n else []
    keep = np.arange(min(n, len(cand)))
    dropped: list[dict] = []
    if max_overlap < 1.0 and len(cand):
        found = drop_near_duplicates(pool_presence, n=n, max_overlap=max_overlap)
        keep = np.asarray(found.kept, dtype=np.int64)
        dropped = [
            {"latent": int(cand[i]), "repeats": int(cand[j]), "overlap": round(o, 3)}
            for i, (j, o) in sorted(found.dropped.items())
        ]
        if len(keep) < n:
            warnings.append(
                f"Only {len(keep)} distinct latents relate to the target (of {len(cand)} that vary, "
                f"{len(dropped)} repeat a better one with presence overlap above {max_overlap:g}); "
                f"returning {len(keep)} instead of {n}"
            )
    return Choice(
        latents=cand[keep],
        scores=np.asarray(sel.scores)[keep],
        thresholds=thresholds[keep],
        train_corr=corr[keep],
        warnings=warnings,
        dropped=dropped,
    )


def _stepwise(
    codes, y, n: int, kind: str, presence_mode: str, max_overlap: float, min_present_frac: float, controls=None
) -> Choice:
    from .select import _as_codes, _as_target, _check_kind
    from .stepwise import forward_select

    codes = _as_codes(codes)
    y = _as_target(y, codes.shape[0])
    _check_kind(kind, y)
    if not isinstance(n, (int, np.integer)) or not 1 <= n <= codes.shape[1]:
        raise DataError(
            f"Cannot select {n} latents from an SAE with {codes.shape[1]}; choose n between 1 and {codes.shape[1]}"
        )
    # With controls, a cut is learned and a presence scored against what the controls leave of the target.
    y_left = y if controls is None else residualise(y, controls)
    if presence_mode == "learned":
        learned = learn_thresholds(codes, y_left, min_present=min_present_rows(codes.shape[0], min_present_frac))
        thresholds = learned.threshold
    else:
        thresholds = np.zeros(codes.shape[1])
    P = presence_matrix(codes, thresholds)
    # For a class, the hypothesis that best marks it on its own enters first (the R² path's first pick
    # can be a narrower latent with a higher correlation but a lower F1); the rest add what it misses.
    # Beyond controls the question is what adds to them, so no marker goes first.
    first = best_marker(P, y) if kind == "binary" and controls is None else None
    found = forward_select(P, y, int(n), max_overlap=max_overlap, first=first, controls=controls)
    latents = found.latents
    corr = _presence_corr(P[:, latents], y_left)
    warnings = []
    if len(latents) < n:
        warnings.append(
            f"Only {len(latents)} latents add to the ones before them ({found.n_overlapping} left out "
            f"for repeating a chosen one); returning {len(latents)} instead of {n}"
        )
    return Choice(latents=latents, scores=corr, thresholds=thresholds[latents], train_corr=corr, warnings=warnings)


def _columns(codes, latents) -> sp.csc_matrix:
    """The codes of ``latents`` (sparse, in that order)."""
    return sp.csc_matrix(codes)[:, np.asarray(latents, dtype=np.int64)]


def _presence_corr(P, y) -> np.ndarray:
    """r of each 0/1 column of ``P`` (dense or sparse) with y (0 for a constant column)."""
    P = sp.csc_matrix(P, dtype=np.float64)
    y = np.asarray(y, float) - np.mean(y)
    n_rows = P.shape[0]
    counts = np.asarray(P.sum(axis=0)).ravel()
    cross = P.T @ y  # y is centred, so this is the centred column's dot product with y
    denom = np.sqrt(counts * (1.0 - counts / max(n_rows, 1)) * (y**2).sum())
    return np.divide(cross, denom, out=np.zeros(P.shape[1]), where=denom > 0)
