"""Near-duplicate hypotheses are dropped by training-split presence overlap, best-ranked first."""

from __future__ import annotations

import numpy as np
import pytest

from hsae_core.distinct import drop_near_duplicates, jaccard
from hsae_core.errors import DataError


def test_duplicates_dropped_on_a_constructed_case():
    rows = 20
    a = np.zeros(rows, bool)
    a[:10] = True  # concept A: rows 0-9
    a_twin = a.copy()
    a_twin[9], a_twin[10] = False, True  # A again, one row moved: Jaccard 9 / 11 = 0.818
    b = np.zeros(rows, bool)
    b[10:16] = True  # concept B: disjoint from A
    a_part = np.zeros(rows, bool)
    a_part[:4] = True  # a narrow part of A: Jaccard 4 / 10 = 0.4 with A
    present = np.column_stack([a, a_twin, b, a_part, a_twin])
    assert jaccard(a, a_twin) == pytest.approx(9 / 11)
    assert jaccard(a, a_part) == pytest.approx(0.4)

    got = drop_near_duplicates(present, n=10, max_overlap=0.5)
    assert got.kept == [0, 2, 3]
    assert set(got.dropped) == {1, 4}
    assert got.dropped[1] == (0, pytest.approx(9 / 11))

    # A stricter cap also drops the narrow part of A; a cap of 1 keeps everything.
    assert drop_near_duplicates(present, n=10, max_overlap=0.3).kept == [0, 2]
    assert drop_near_duplicates(present, n=10, max_overlap=1.0).kept == [0, 1, 2, 3, 4]


def test_refills_up_to_n_from_lower_ranked_candidates():
    rng = np.random.default_rng(0)
    base = rng.random((200, 1)) < 0.3
    present = np.column_stack([base, base, base, rng.random((200, 5)) < 0.3])
    got = drop_near_duplicates(present, n=4, max_overlap=0.5)
    assert got.kept == [0, 3, 4, 5]  # the two copies of column 0 give way to the next candidates
    assert len(got.kept) == 4


def test_empty_columns_and_bad_inputs():
    present = np.zeros((5, 3), bool)
    assert drop_near_duplicates(present, n=3, max_overlap=0.5).kept == [0, 1, 2]  # nothing overlaps nothing
    with pytest.raises(DataError, match="max_overlap"):
        drop_near_duplicates(present, n=3, max_overlap=1.5)
    with pytest.raises(DataError, match="matrix"):
        drop_near_duplicates(np.zeros(5, bool), n=3, max_overlap=0.5)


def test_sparse_presence_gives_the_same_choice_as_dense():
    # choose_hypotheses passes every latent of a large SAE as a sparse matrix; the answer must not change.
    import scipy.sparse as sp

    rng = np.random.default_rng(1)
    base = rng.random((300, 2)) < 0.2
    present = np.column_stack([base[:, 0], base[:, 0], base[:, 1], rng.random((300, 6)) < 0.1, base[:, 1]])
    dense = drop_near_duplicates(present, n=5, max_overlap=0.5)
    sparse = drop_near_duplicates(sp.csc_matrix(present), n=5, max_overlap=0.5)
    assert sparse.kept == dense.kept
    assert sparse.dropped == dense.dropped
    assert 1 in dense.dropped  # the copy of column 0 was dropped
