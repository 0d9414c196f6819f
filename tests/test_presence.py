"""Presence thresholds learned on the training split: exact on hand-built cases, equal to a brute-force scan."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from hsae_core.errors import DataError
from hsae_core.presence import learn_thresholds, presence


def _r(indicator, y) -> float:
    i, y = np.asarray(indicator, float), np.asarray(y, float)
    return float(((i - i.mean()) * (y - y.mean())).mean() / (i.std() * y.std()))


def test_thresholds_exact_on_a_constructed_case():
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 0], float)
    dense = np.zeros((10, 4))
    dense[:5, 0] = [5, 4, 3, 2, 1]  # the concept is exactly the rows above 2.5
    dense[9, 1] = 1.0  # fires on one non-concept row only
    dense[:4, 2] = [2, 2, 1, 1]  # tied activations: the cuts are after 2 rows or after all 4
    # column 3 never fires
    th = learn_thresholds(sp.csr_matrix(dense), y)

    assert th.threshold[0] == 2.5 and th.corr[0] == pytest.approx(1.0) and th.n_present[0] == 3
    # one firing row: the only cut keeps it, at threshold 0
    assert th.threshold[1] == 0.0 and th.n_present[1] == 1
    assert th.corr[1] == pytest.approx(-0.03 / np.sqrt(0.09 * 0.21))
    # keeping rows 0-1: r = 0.14 / sqrt(0.16 * 0.21) = 0.764; keeping rows 0-3: 0.18 / sqrt(0.24 * 0.21) = 0.802
    assert th.threshold[2] == 0.0 and th.n_present[2] == 4
    assert th.corr[2] == pytest.approx(0.18 / np.sqrt(0.24 * 0.21))
    assert th.threshold[3] == 0.0 and th.corr[3] == 0.0 and th.n_present[3] == 0

    # activation > threshold reproduces the training rows the threshold was chosen for
    got = presence(sp.csr_matrix(dense), [0, 2], th.threshold[[0, 2]])
    np.testing.assert_array_equal(got[:, 0], y)
    np.testing.assert_array_equal(got[:, 1], (dense[:, 2] > 0).astype(float))


def test_negative_association_and_min_present():
    # The latent fires strongly on the 0-rows: its best cut keeps exactly them, a perfect negative r.
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0], float)
    a = np.array([0.1, 0.2, 0, 0, 3, 4, 5, 0.3])
    th = learn_thresholds(sp.csr_matrix(a[:, None]), y)
    assert th.threshold[0] == pytest.approx((0.3 + 0.2) / 2)
    assert th.corr[0] == pytest.approx(-1.0) and th.n_present[0] == 4
    # Requiring at least 5 rows forbids that cut; the better of the two cuts keeping 5+ rows wins instead.
    th5 = learn_thresholds(sp.csr_matrix(a[:, None]), y, min_present=5)
    cuts = [(t, _r(a > t, y)) for t in ((0.2 + 0.1) / 2, 0.0)]
    best_t, best_r = max(cuts, key=lambda c: abs(c[1]))
    assert th5.threshold[0] == pytest.approx(best_t) and th5.corr[0] == pytest.approx(best_r)


def test_ties_in_r_go_to_the_lower_threshold():
    # y is the same on rows 0 and 4, so keeping {0} or keeping {0,1,2,3} (= not row 4) give the same |r|:
    # the lower threshold (more rows) wins.
    y = np.array([1, 0, 0, 0, 1], float)
    a = np.array([3.0, 1.0, 1.0, 1.0, 0])
    th = learn_thresholds(sp.csr_matrix(a[:, None]), y)
    assert abs(_r(a > 2, y)) == pytest.approx(abs(_r(a > 0, y)))
    assert th.threshold[0] == 0.0 and th.n_present[0] == 4


def test_thresholds_match_a_brute_force_scan():
    rng = np.random.default_rng(3)
    n, m = 200, 30
    dense = np.round(rng.exponential(1.0, (n, m)), 1) * (rng.random((n, m)) < 0.3)  # rounding makes ties
    dense[:, 0] = 0.7  # fires everywhere with one value: no cut has variance, so r = 0
    y = dense[:, 3] + rng.normal(0, 1, n)
    th = learn_thresholds(sp.csr_matrix(dense), y, min_present=3)
    for j in range(1, m):
        vals = np.unique(dense[:, j][dense[:, j] > 0])[::-1]  # high to low
        best = (0.0, None)
        for i, v in enumerate(vals):
            keep = dense[:, j] >= v
            if keep.sum() < 3 or keep.all():
                continue
            r = _r(keep, y)
            t = 0.0 if i == len(vals) - 1 else (v + vals[i + 1]) / 2
            if abs(r) > abs(best[0]) + 1e-12 or (abs(abs(r) - abs(best[0])) <= 1e-12 and best[1] is not None):
                best = (r, t)
        assert th.corr[j] == pytest.approx(best[0], abs=1e-9), j
        if best[1] is not None:
            assert th.threshold[j] == pytest.approx(best[1]), j
    assert th.corr[0] == 0.0 and th.threshold[0] == 0.0


def test_bad_inputs_are_refused():
    with pytest.raises(DataError, match="rows"):
        learn_thresholds(sp.csr_matrix(np.ones((3, 2))), [1, 0])
    with pytest.raises(DataError, match="missing"):
        learn_thresholds(sp.csr_matrix(np.ones((2, 2))), [1, np.nan])
    with pytest.raises(DataError, match="thresholds"):
        presence(sp.csr_matrix(np.ones((2, 2))), [0, 1], [0.0])


def test_direction_keeps_the_cut_on_the_chosen_side():
    # High activations go with y = 0: every cut correlates negatively. Unconstrained, the best cut keeps the
    # three y = 0 rows (r = -0.775); asked for a positive association there is no such cut, so the latent
    # keeps threshold 0 (present wherever it fires) and reports that presence's r.
    y = np.array([0, 0, 0, 1, 1, 1, 1, 0], float)
    a = np.array([5, 4, 3, 1, 0, 0, 0, 0], float)[:, None]
    free = learn_thresholds(sp.csr_matrix(a), y)
    assert free.threshold[0] == pytest.approx(2.0) and free.corr[0] == pytest.approx(_r(a[:, 0] > 2, y))
    neg = learn_thresholds(sp.csr_matrix(a), y, direction=[-1])
    assert neg.threshold[0] == pytest.approx(2.0) and neg.corr[0] == pytest.approx(free.corr[0])
    pos = learn_thresholds(sp.csr_matrix(a), y, direction=[1])
    assert pos.threshold[0] == 0.0 and pos.n_present[0] == 4 and pos.corr[0] == pytest.approx(-0.5)
    with pytest.raises(DataError, match="direction"):
        learn_thresholds(sp.csr_matrix(a), y, direction=[1, 1])


def test_direction_matches_a_brute_force_scan():
    rng = np.random.default_rng(5)
    n, m = 150, 12
    dense = np.round(rng.exponential(1.0, (n, m)), 1) * (rng.random((n, m)) < 0.4)
    y = dense[:, 2] - dense[:, 5] + rng.normal(0, 1, n)
    for sign in (1, -1):
        th = learn_thresholds(sp.csr_matrix(dense), y, direction=np.full(m, sign))
        for j in range(m):
            vals = np.unique(dense[:, j][dense[:, j] > 0])[::-1]
            cuts = [
                (0.0 if i == len(vals) - 1 else (v + vals[i + 1]) / 2, _r(dense[:, j] >= v, y))
                for i, v in enumerate(vals)
            ]
            good = [c for c in cuts if sign * c[1] > 0]
            if good:
                t, r = max(good, key=lambda c: (round(sign * c[1], 12), -c[0]))
                assert th.threshold[j] == pytest.approx(t) and th.corr[j] == pytest.approx(r), (sign, j)
            else:
                assert th.threshold[j] == 0.0 and th.corr[j] == pytest.approx(cuts[-1][1]), (sign, j)


@pytest.mark.parametrize("block", [1, 17, 60, 10_000])
def test_blocks_of_latents_give_the_one_pass_answer(block):
    """Latents are scanned a block at a time to bound memory; any block size gives the same thresholds, with
    and without directions, including empty latents and one that fires everywhere."""
    rng = np.random.default_rng(8)
    n, m = 120, 25
    dense = np.round(rng.exponential(1.0, (n, m)), 1) * (rng.random((n, m)) < 0.35)
    dense[:, 4] = 0.0  # never fires
    dense[:, 9] = 0.7  # fires everywhere with one value
    y = dense[:, 3] - dense[:, 6] + rng.normal(0, 1, n)
    direction = rng.choice([-1.0, 0.0, 1.0], m)
    for kwargs in ({}, {"direction": direction}):
        whole = learn_thresholds(sp.csr_matrix(dense), y, min_present=3, block_activations=10**9, **kwargs)
        parts = learn_thresholds(sp.csr_matrix(dense), y, min_present=3, block_activations=block, **kwargs)
        np.testing.assert_array_equal(parts.threshold, whole.threshold)
        np.testing.assert_allclose(parts.corr, whole.corr, rtol=0, atol=1e-12)  # sums in another order
        np.testing.assert_array_equal(parts.n_present, whole.n_present)
