"""Keep hypotheses that are different concepts: drop a candidate whose training-split presence nearly
repeats one already kept.

Two latents can split one concept between them (an SAE has no reason not to), and both then rank high.
Overlap is the Jaccard index of the rows where each is present, |A ∩ B| / |A ∪ B|, on the training
rows: 1 for the same rows, 0 for disjoint ones. Candidates are walked best first, so of two near-duplicates
the better-ranked one stays.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .errors import DataError


@dataclass
class Distinct:
    kept: list[int]  # positions in the candidate list, best first
    dropped: dict[int, tuple[int, float]] = field(default_factory=dict)  # position -> (kept position, overlap)


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """|a ∩ b| / |a ∪ b| of two 0/1 vectors; 0 when both are empty."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    union = int((a | b).sum())
    return int((a & b).sum()) / union if union else 0.0


def drop_near_duplicates(present, n: int, max_overlap: float) -> Distinct:
    """Walk the candidates (columns of ``present``, best first) and keep up to ``n`` of them, skipping each
    one whose Jaccard overlap with an already kept column exceeds ``max_overlap`` (1 keeps everything).

    ``present`` may be dense or a scipy sparse 0/1 matrix; it is used sparse, so every latent of a large
    SAE can be a candidate without a dense rows x candidates matrix.
    """
    if not 0.0 <= float(max_overlap) <= 1.0:
        raise DataError(f"`max_overlap` must be between 0 and 1, got {max_overlap}")
    if not sp.issparse(present) and np.ndim(present) != 2:
        raise DataError(f"`present` must be a (rows x candidates) matrix, got shape {np.shape(present)}")
    P = sp.csc_matrix(present, dtype=bool).astype(np.int64)
    P.eliminate_zeros()
    sizes = np.diff(P.indptr)
    out = Distinct(kept=[])
    for i in range(P.shape[1]):
        if len(out.kept) >= n:
            break
        if out.kept and max_overlap < 1.0:
            inter = np.asarray((P[:, out.kept].T @ P[:, i]).toarray()).ravel()
            union = sizes[out.kept] + sizes[i] - inter
            overlap = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
            worst = int(np.argmax(overlap))
            if overlap[worst] > max_overlap:
                out.dropped[i] = (out.kept[worst], float(overlap[worst]))
                continue
        out.kept.append(i)
    return out
