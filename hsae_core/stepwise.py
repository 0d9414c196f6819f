"""Forward stepwise selection of hypotheses: each next latent is the one whose 0/1 presence adds most to
what the latents already chosen explain about the target (training split only).

Presence is the latent's activation above its learned threshold (:mod:`presence`), so the model chosen
here is the model the holdout statistics fit: an OLS of y on the hypotheses' 0/1 annotations. At each
step the gain in R² from adding column j is (p_j · r)² / ||p_j⊥||², where r is the current residual and
p_j⊥ is p_j centred and made orthogonal to the columns already chosen (exact forward selection). A latent
that repeats chosen ones explains little that is new, so the chosen set spreads over distinct concepts.
Works on sparse presence (rows x latents) and never forms a dense rows x latents matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import scipy.sparse as sp

from .controls import ControlDesign, control_basis, group_projection, nothing_left, residualise, within
from .errors import DataError

# A candidate whose presence is this close to a combination of the chosen ones adds nothing stable.
MIN_NEW_VARIANCE = 1e-3


@dataclass
class Stepwise:
    latents: np.ndarray  # chosen, in the order they entered
    gains: np.ndarray  # R² added by each when it entered (training rows)
    r2: float  # training R² of the OLS on all chosen presences
    n_overlapping: int = 0  # candidates left out for repeating a chosen one (presence overlap)


def forward_select(
    P, y, n: int, eligible=None, max_overlap: float = 1.0, first=None, controls: Optional[ControlDesign] = None
) -> Stepwise:
    """Choose up to ``n`` columns of the 0/1 matrix ``P`` by forward selection for an OLS of ``y``.

    ``eligible`` (bool per column) limits the candidates; a column whose rows overlap a chosen one's by
    more than ``max_overlap`` (Jaccard) stops being a candidate. ``first`` (a column) enters before any
    other, whatever the others' gains, if it is a candidate that adds anything. Stops early when no
    candidate adds variance. With ``controls`` (:mod:`controls`) the model starts from them: gains and
    ``r2`` are shares of what the controls leave unexplained, and a column is compared within the groups
    of an absorbed control.
    """
    P = sp.csc_matrix(P, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).ravel()
    N, m = P.shape
    if len(y) != N:
        raise DataError(f"The presence matrix has {N} rows but the target has {len(y)} values")
    groups = None if controls is None else controls.groups
    counts = np.asarray(P.sum(axis=0)).ravel()
    var = counts - group_projection(P, groups)  # ||p_j - its mean (within its group)||²
    ok = var > 0 if eligible is None else (np.asarray(eligible, bool) & (var > 0))
    r = residualise(y, controls)
    total = float(r @ r)
    if nothing_left(y, controls):
        if controls is not None:
            raise DataError("The controls explain the target entirely on the training rows; nothing is left to relate")
        raise DataError("The target is constant, so no latent can be related to it; pick a target that varies")
    PT = P.T.tocsr()
    # Orthonormal basis of what the model holds so far, centred (or within groups): the controls, then the chosen.
    Q = control_basis(controls) if controls is not None else np.zeros((N, 0))
    proj = ((PT @ Q) ** 2).sum(axis=1) if Q.shape[1] else np.zeros(m)  # ||Q^T p_j||² for every column
    chosen, gains = [], []
    overlapping = np.zeros(m, dtype=bool)
    for _ in range(int(n)):
        new_var = var - proj
        fit = ok & (new_var > MIN_NEW_VARIANCE * np.maximum(var, 1e-300))
        if not fit.any():
            break
        score = np.zeros(m)
        dot = PT @ r
        score[fit] = dot[fit] ** 2 / new_var[fit]
        j = int(np.argmax(np.where(fit, score, -1.0)))
        if first is not None and not chosen and fit[first] and score[first] > 0:
            j = int(first)
        if score[j] <= 0:
            break
        chosen.append(j)
        gains.append(score[j] / total)
        ok[j] = False
        if max_overlap < 1.0:
            inter = PT @ P[:, j].toarray().ravel()
            union = counts + counts[j] - inter
            near = (union > 0) & (inter > max_overlap * union) & ok
            overlapping |= near
            ok &= ~near
        # Extend the basis with the chosen column, centred and orthogonalised (twice, for stability).
        q = within(P[:, j].toarray(), groups).ravel()
        for _ in range(2):
            q -= Q @ (Q.T @ q)
        q /= np.linalg.norm(q)
        Q = np.column_stack([Q, q])
        r = r - q * (q @ r)
        proj += (PT @ q) ** 2
    return Stepwise(
        latents=np.asarray(chosen, dtype=np.int64),
        gains=np.asarray(gains),
        r2=float(1.0 - (r @ r) / total),
        n_overlapping=int(overlapping.sum()),
    )
