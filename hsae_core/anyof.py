"""The concept as a short rule: "the class holds when any of these few hypotheses is present".

Twenty hypotheses chosen for a broad class (a whole arXiv field) are mostly positive, and together they
fire on far more than the class: each fine feature also catches some texts of other classes. A reader
wants the few that, taken together, mark the class. :func:`fit_any_of` picks them greedily on the
training split: it adds the positive hypothesis whose presence most raises the F1 of "any of them is
present" against the class, and stops when no hypothesis raises it by ``min_gain`` or ``max_terms`` are
in (the search starts once from each hypothesis and keeps the best). The holdout is never looked at;
:func:`any_of_scores` then measures the rule there. :func:`best_marker` is the one-hypothesis case: the
latent stepwise selection starts from for a class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .errors import DataError

MIN_GAIN = 0.005  # smallest rise in training F1 that earns a hypothesis a place in the rule
MAX_TERMS = 5  # a rule longer than this is no longer read at a glance


@dataclass
class AnyOfRule:
    """Positions (in the hypothesis list) of the rule's members, in the order they were added, and its
    training scores."""

    members: list[int]
    train: dict  # f1, precision, recall, present (rows where any member is present)
    # True when the best rule found was no better than calling every training row the class, so there is none
    outdone_by_every_row: bool = False


def any_of_scores(presence, y, members) -> dict:
    """F1, precision and recall of "any of ``members`` (column positions) is present" against 0/1 ``y``."""
    presence = sp.csc_matrix(presence)
    y = _binary(y, presence.shape[0])
    if len(members):
        hit = np.asarray(presence[:, list(members)].sum(axis=1)).ravel() > 0
    else:
        hit = np.zeros(presence.shape[0], dtype=bool)
    return _scores(int((hit & (y > 0)).sum()), int(hit.sum()), int((y > 0).sum()))


def best_marker(presence, y) -> int | None:
    """The column of ``presence`` (rows x hypotheses, 0/1) whose presence alone best marks the 0/1 class
    ``y`` by F1, or None when none marks it better than calling every row the class would (F1 2q/(1+q) at
    class share q). Beating that bar needs recall above the column's own share of rows, so the marker
    always goes with the class. Among equal F1 the first column."""
    P = sp.csc_matrix(presence, dtype=np.float64)
    y = _binary(y, P.shape[0])
    P.data = (P.data > 0).astype(np.float64)
    P.eliminate_zeros()
    positives = float(y.sum())
    if positives == 0 or P.shape[1] == 0:
        return None
    present = np.diff(P.indptr).astype(np.float64)
    in_class = np.asarray(P.T @ y).ravel()
    f1 = 2 * in_class / np.maximum(present + positives, 1)
    j = int(np.argmax(f1))
    return j if f1[j] > every_row_f1(y) else None


def every_row_f1(y) -> float:
    """F1 of calling every row the class (0/1 ``y``): 2q/(1+q) at class share q; the bar a marker must pass."""
    y = np.asarray(y, dtype=np.float64).ravel()
    positives = float((y > 0).sum())
    return 2 * positives / (len(y) + positives) if len(y) else 0.0


def fit_any_of(
    presence,
    y,
    candidates=None,
    min_gain: float = MIN_GAIN,
    max_terms: int = MAX_TERMS,
    must_beat_every_row: bool = True,
) -> AnyOfRule:
    """Greedy any-of rule on the training rows: ``presence`` is rows x hypotheses (0/1, dense or sparse),
    ``y`` the 0/1 class, ``candidates`` a mask or list of the hypotheses allowed in (default: all).

    The greedy search runs once from each allowed hypothesis (a plain greedy's first pick can be a broad
    hypothesis that covers the whole class and leaves nothing to add) and the best training F1 wins;
    among equal F1 the shorter rule. With ``must_beat_every_row`` a rule must mark the class better than
    calling every row the class (F1 2q/(1+q)), which a majority class scores with no hypothesis at all;
    otherwise there is none (``outdone_by_every_row``)."""
    rows = _PresentRows(presence, y)
    allowed = np.ones(rows.n_hyp, dtype=bool) if candidates is None else _mask(candidates, rows.n_hyp)
    best: AnyOfRule | None = None
    for first in np.flatnonzero(allowed):
        rule = _greedy_from(int(first), rows, allowed, min_gain, max_terms)
        if best is None or (rule.train["f1"], -len(rule.members)) > (best.train["f1"], -len(best.members)):
            best = rule
    none = AnyOfRule(members=[], train=_scores(0, 0, rows.positives))
    if must_beat_every_row and best is not None and best.members and best.train["f1"] <= every_row_f1(rows.y):
        none.outdone_by_every_row = True
        return none
    return best or none


class _PresentRows:
    """The presence both ways (rows of each hypothesis; hypotheses of each row) and the class, so that
    what a hypothesis would still add is updated from the newly covered rows alone."""

    def __init__(self, presence, y):
        P = sp.csr_matrix(presence, dtype=np.float64)
        P.data = (P.data > 0).astype(np.float64)
        P.eliminate_zeros()
        self.by_row = P
        self.by_hyp = P.tocsc()
        self.y = _binary(y, P.shape[0])
        self.n_hyp = P.shape[1]
        self.positives = int(self.y.sum())
        self.present = np.diff(self.by_hyp.indptr)  # rows where each hypothesis holds
        self.in_class = np.asarray(self.by_hyp.T @ self.y).ravel()  # of them in the class

    def rows_of(self, j: int) -> np.ndarray:
        return self.by_hyp.indices[self.by_hyp.indptr[j] : self.by_hyp.indptr[j + 1]]

    def counts_in(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per hypothesis: how many of ``rows`` it holds on, and how many of those are in the class."""
        part = self.by_row[rows]
        weights = np.repeat(self.y[rows], np.diff(part.indptr))
        return (
            np.bincount(part.indices, minlength=self.n_hyp),
            np.bincount(part.indices, weights=weights, minlength=self.n_hyp),
        )


def _greedy_from(first: int, rows: _PresentRows, allowed, min_gain: float, max_terms: int) -> AnyOfRule:
    """Start from hypothesis ``first``; add the one that raises F1 most while it rises by ``min_gain``."""
    covered = np.zeros(rows.by_row.shape[0], dtype=bool)
    add_pred, add_tp = rows.present.astype(np.float64), rows.in_class.copy()  # what each would add
    members: list[int] = []
    tp = pred = 0
    j = first
    while True:
        fresh = rows.rows_of(j)
        fresh = fresh[~covered[fresh]]
        gone_pred, gone_tp = rows.counts_in(fresh)
        add_pred -= gone_pred
        add_tp -= gone_tp
        covered[fresh] = True
        members.append(j)
        tp, pred = tp + int(rows.y[fresh].sum()), pred + len(fresh)
        if tp == 0:  # a hypothesis that never holds on the class starts no rule
            return AnyOfRule(members=[], train=_scores(0, 0, rows.positives))
        f1_now = _scores(tp, pred, rows.positives)["f1"]
        if len(members) >= max_terms:
            break
        f1 = 2 * (tp + add_tp) / np.maximum(pred + add_pred + rows.positives, 1)
        f1[~allowed] = -np.inf
        f1[members] = -np.inf
        j = int(np.argmax(f1))
        if not np.isfinite(f1[j]) or f1[j] < f1_now + min_gain:
            break
    return AnyOfRule(members=members, train=_scores(tp, pred, rows.positives))


def _scores(tp: int, pred: int, positives: int) -> dict:
    precision = tp / pred if pred else 0.0
    recall = tp / positives if positives else 0.0
    f1 = 2 * tp / (pred + positives) if pred + positives else 0.0
    return {"f1": f1, "precision": precision, "recall": recall, "present": pred}


def _binary(y, n_rows: int) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64).ravel()
    if len(y) != n_rows:
        raise DataError(f"The presence has {n_rows} rows but the target has {len(y)} values")
    if not np.isin(y, (0.0, 1.0)).all():
        raise DataError("An any-of rule needs a 0/1 target (one class against the rest)")
    return y


def _mask(candidates, n: int) -> np.ndarray:
    candidates = np.asarray(candidates)
    if candidates.dtype == bool:
        if len(candidates) != n:
            raise DataError(f"`candidates` needs one entry per hypothesis ({n}), got {len(candidates)}")
        return candidates
    mask = np.zeros(n, dtype=bool)
    mask[candidates.astype(np.int64)] = True
    return mask
