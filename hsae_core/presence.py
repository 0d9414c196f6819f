"""When is a hypothesis "present" in a text? Its latent's activation above a threshold learned on the training split.

A latent fires (activation > 0) on far more texts than the concept it names: top-k coding gives every
text k latents, so weak activations are often noise. For each latent, :func:`learn_thresholds` scans
every cut of its training activations (present = the rows above the cut) and keeps the cut whose 0/1
presence correlates most strongly with the target (Pearson's r, which for a 0/1 target is the phi
coefficient / Matthews correlation). The threshold sits halfway between the lowest activation kept and
the highest one left out, or at 0 when every firing row is kept, so ``activation > threshold``
reproduces the training partition exactly. The holdout is never looked at.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .errors import DataError


@dataclass
class Thresholds:
    """Per latent: the presence threshold, the correlation of its presence with y, and how many rows it keeps."""

    threshold: np.ndarray  # (m,) float; 0 means "fires at all"
    corr: np.ndarray  # (m,) signed r of 1[a > threshold] with y on the training rows; 0 where undefined
    n_present: np.ndarray  # (m,) int, training rows present at that threshold


# Latents are scanned in blocks of about this many activations, so that the sort and its per-entry arrays
# stay near 100 MB each whatever the corpus size (one pass over 32 million activations peaked at 3.8 GiB).
BLOCK_ACTIVATIONS = 2_000_000


def learn_thresholds(
    codes, y, min_present: int = 1, direction=None, block_activations: int = BLOCK_ACTIVATIONS
) -> Thresholds:
    """For every latent, the presence threshold whose 0/1 presence has the largest |r| with ``y``.

    Candidate cuts keep the top firing rows (ties in activation are kept or dropped together), at least
    ``min_present`` of them; a latent firing on fewer rows, or on every row with no cut below it, gets
    threshold 0 and r 0. Among equal |r| the lowest threshold (most rows) wins. ``direction`` (+1/-1 per
    latent, e.g. the sign of its selection score) asks for the largest r in that direction instead of
    the largest |r|, so a latent chosen for going with the target is not given a cut that goes against it.
    Latents are independent of each other, so they are scanned in blocks of about ``block_activations``
    non-zero activations (the answer does not depend on the block size).
    """
    codes = sp.csc_matrix(codes, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).ravel()
    n, m = codes.shape
    if len(y) != n:
        raise DataError(f"The codes have {n} rows but the target has {len(y)} values")
    if not np.isfinite(y).all():
        raise DataError("The target contains missing or infinite values; drop those rows first")
    sign = None
    if direction is not None:
        sign = np.sign(np.asarray(direction, dtype=np.float64).ravel())
        if len(sign) != m:
            raise DataError(f"`direction` needs one sign per latent ({m}), got {len(sign)}")
    codes.eliminate_zeros()
    codes.sort_indices()
    y_c = y - y.mean()
    var_y = float(np.mean(y_c**2))
    out = Thresholds(threshold=np.zeros(m), corr=np.zeros(m), n_present=np.zeros(m, dtype=np.int64))
    for a, b in _column_blocks(codes.indptr, max(int(block_activations), 1)):
        part = _block_thresholds(codes[:, a:b], y_c, var_y, min_present, None if sign is None else sign[a:b])
        out.threshold[a:b], out.corr[a:b], out.n_present[a:b] = part.threshold, part.corr, part.n_present
    return out


def _column_blocks(indptr: np.ndarray, size: int) -> list[tuple[int, int]]:
    """Consecutive column ranges holding about ``size`` non-zeros each (a column is never split)."""
    m = len(indptr) - 1
    blocks, a = [], 0
    while a < m:
        b = int(np.searchsorted(indptr, indptr[a] + size, side="right")) - 1
        b = min(max(b, a + 1), m)
        blocks.append((a, b))
        a = b
    return blocks


def _block_thresholds(codes: sp.csc_matrix, y_c: np.ndarray, var_y: float, min_present: int, sign) -> Thresholds:
    """:func:`learn_thresholds` for one block of latents (``y_c``: the centred target; ``sign``: their directions)."""
    n, m = codes.shape
    counts = np.diff(codes.indptr)
    col = np.repeat(np.arange(m), counts)
    # Within each column, activations from high to low.
    order = np.lexsort((-codes.data, col))
    vals, rows, col = codes.data[order], codes.indices[order], col[order]
    start = np.repeat(codes.indptr[:-1], counts)
    rank = np.arange(len(vals)) - start + 1  # rows kept by a cut after this entry
    sum_y = np.cumsum(y_c[rows])
    sum_y -= np.repeat(np.concatenate([[0.0], sum_y])[codes.indptr[:-1]], counts)  # restart per column
    frac = rank / n
    var_i = frac * (1.0 - frac)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (sum_y / n) / np.sqrt(var_i * var_y)
    # A cut is valid between two different activations (or after the column's last firing row).
    last = rank == np.repeat(counts, counts)
    nxt = np.append(vals[1:], 0.0)
    r = np.where((var_i > 0) & np.isfinite(r), r, 0.0)
    valid = (last | (nxt < vals)) & (rank >= min_present) & (var_i > 0)
    cut = np.where(last, 0.0, (vals + nxt) / 2)
    if sign is None:
        strength = np.abs(r)
    else:
        strength = r * np.where(sign == 0, 1.0, sign)[col]
        valid &= strength > 0

    threshold = np.zeros(m)
    corr = np.zeros(m)
    n_present = np.zeros(m, dtype=np.int64)
    idx = np.flatnonzero(valid)
    if len(idx):
        # Best per column; ties go to the larger rank (lower threshold): sort by column, strength, rank.
        # Strength rounded so that cuts equal up to float noise count as ties.
        best = idx[np.lexsort((rank[idx], np.round(strength[idx], 12), col[idx]))]
        keep = np.append(col[best][1:] != col[best][:-1], True)  # the last entry of each column's run
        best = best[keep]
        threshold[col[best]] = cut[best]
        corr[col[best]] = r[best]
        n_present[col[best]] = rank[best]
    # Latents with no admissible cut keep threshold 0: present wherever they fire.
    no_cut = (counts > 0) & (n_present == 0)
    n_present[no_cut] = counts[no_cut]
    corr[no_cut] = r[last][no_cut[col[last]]]
    return Thresholds(threshold=threshold, corr=corr, n_present=n_present)


def presence(codes, latents, thresholds) -> np.ndarray:
    """(N x len(latents)) 0/1 float matrix: activation of each latent above its threshold (the dense view
    of :func:`chosen_presence`, as the holdout annotation uses it)."""
    return chosen_presence(codes, latents, thresholds).toarray()


def chosen_presence(codes, latents, thresholds) -> sp.csc_matrix:
    """Sparse 0/1 (N x len(latents)): activation of each of a few chosen latents above its threshold."""
    latents = np.asarray([int(j) for j in latents], dtype=np.int64)
    return presence_matrix(sp.csc_matrix(codes)[:, latents], thresholds)


def presence_matrix(codes, thresholds) -> sp.csc_matrix:
    """Sparse 0/1 (rows x latents): activation above each latent's threshold."""
    codes = sp.csc_matrix(codes, dtype=np.float64)
    t = np.asarray(thresholds, dtype=np.float64).ravel()
    if len(t) != codes.shape[1]:
        raise DataError(f"{codes.shape[1]} latents but {len(t)} thresholds")
    col = np.repeat(np.arange(codes.shape[1]), np.diff(codes.indptr))
    data = (codes.data > t[col]).astype(np.float64)
    out = sp.csc_matrix((data, codes.indices, codes.indptr), shape=codes.shape)
    out.eliminate_zeros()
    return out
