"""Forward stepwise selection on sparse 0/1 presence equals a brute-force greedy OLS search."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from hsae_core.choose import choose_hypotheses
from hsae_core.errors import DataError
from hsae_core.presence import presence_matrix
from hsae_core.stepwise import forward_select


def ols_r2(X: np.ndarray, y: np.ndarray) -> float:
    design = np.column_stack([np.ones(len(y)), X])
    beta, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ beta
    return 1.0 - resid @ resid / ((y - y.mean()) @ (y - y.mean()))


def brute_force_greedy(P: np.ndarray, y: np.ndarray, n: int) -> list[int]:
    chosen: list[int] = []
    for _ in range(n):
        base = ols_r2(P[:, chosen], y) if chosen else 0.0
        gains = {
            j: ols_r2(P[:, chosen + [j]], y) - base for j in range(P.shape[1]) if j not in chosen and P[:, j].std() > 0
        }
        chosen.append(max(gains, key=gains.get))
    return chosen


def test_forward_selection_matches_brute_force():
    rng = np.random.default_rng(0)
    N, m = 300, 25
    P = (rng.random((N, m)) < rng.uniform(0.05, 0.5, m)).astype(float)
    P[:, 7] = P[:, 3]  # an exact copy: never both chosen
    y = 2 * P[:, 3] - 1.5 * P[:, 11] + P[:, 20] + rng.normal(0, 1, N)
    got = forward_select(sp.csc_matrix(P), y, n=6)
    want = brute_force_greedy(P, y, 6)
    assert list(got.latents) == want
    assert not {3, 7} <= set(got.latents)
    assert got.r2 == pytest.approx(ols_r2(P[:, want], y))
    assert got.gains.sum() == pytest.approx(got.r2)


def test_overlap_cap_and_early_stop():
    rng = np.random.default_rng(1)
    N = 200
    a = (rng.random(N) < 0.3).astype(float)
    near = a.copy()
    near[np.flatnonzero(a)[:3]] = 0  # almost the same rows as a (Jaccard > 0.9)
    other = (rng.random(N) < 0.3).astype(float)
    P = np.column_stack([a, near, other, np.zeros(N)])  # the last column never varies
    y = a + 0.8 * near + 0.5 * other + rng.normal(0, 0.3, N)
    capped = forward_select(sp.csc_matrix(P), y, n=4, max_overlap=0.5)
    assert 2 == len(capped.latents) and capped.n_overlapping == 1  # a (or near) and other; the empty one never
    assert set(capped.latents) in ({0, 2}, {1, 2})
    free = forward_select(sp.csc_matrix(P), y, n=4)
    assert len(free.latents) == 3 and 3 not in free.latents


def test_presence_matrix_applies_each_threshold():
    codes = sp.csr_matrix(np.array([[0.5, 0.0], [0.2, 3.0], [0.0, 1.0]]))
    P = presence_matrix(codes, [0.3, 0.0]).toarray()
    np.testing.assert_array_equal(P, [[1, 0], [0, 1], [0, 1]])
    with pytest.raises(DataError, match="thresholds"):
        presence_matrix(codes, [0.3])


def test_stepwise_choice_reports_thresholds_and_signs():
    rng = np.random.default_rng(2)
    N, m = 400, 30
    dense = rng.exponential(1.0, (N, m)) * (rng.random((N, m)) < 0.25)
    y = (dense[:, 4] > 1.0).astype(float) - (dense[:, 9] > 0.5) + rng.normal(0, 0.5, N)
    choice = choose_hypotheses(sp.csr_matrix(dense), y, method="stepwise", n=5, kind="continuous", top_n=100)
    assert list(choice.latents[:2]) in ([4, 9], [9, 4])
    i4, i9 = list(choice.latents).index(4), list(choice.latents).index(9)
    assert choice.thresholds[i4] == pytest.approx(1.0, abs=0.2) and choice.scores[i4] > 0
    assert choice.scores[i9] < 0
    np.testing.assert_allclose(choice.scores, choice.train_corr)


def test_for_a_class_the_best_single_marker_enters_first():
    """A narrow column all inside the class has the higher correlation; a broad one catching most of the
    class has the higher F1. For a binary target the broad one comes first; the continuous path is plain R²."""
    N = 1000
    y = np.zeros(N)
    y[:300] = 1
    narrow = np.zeros(N)
    narrow[:150] = 1  # half the class, nothing else: r 0.642, F1 0.667
    broad = np.zeros(N)
    broad[45:300] = broad[300:445] = 1  # 255 of the class and 145 others: r 0.601, F1 0.729
    codes = sp.csr_matrix(np.column_stack([narrow, broad]))
    kw = dict(method="stepwise", n=2, top_n=100, presence_mode="positive", max_overlap=1.0)
    assert list(choose_hypotheses(codes, y, kind="binary", **kw).latents) == [1, 0]
    assert list(choose_hypotheses(codes, y, kind="continuous", **kw).latents) == [0, 1]
    P = sp.csc_matrix(codes)
    assert list(forward_select(P, y, n=2, first=1).latents) == [1, 0]
    assert list(forward_select(P, y, n=1, first=1, eligible=[True, False]).latents) == [0]  # first must be eligible
