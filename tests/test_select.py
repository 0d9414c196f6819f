"""Latent selection against dense / brute-force references, on random and real SAE codes."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.linear_model import Lasso, LogisticRegression

from hsae_core.errors import DataError
from hsae_core.sae import SparseAutoencoder
from hsae_core.select import Selection, correlation_scores, lasso_path_fit, select_latents, separation_scores


@pytest.fixture(scope="module")
def random_codes():
    """300 x 40 non-negative sparse codes with awkward columns, and a target driven by two latents."""
    rng = np.random.default_rng(1)
    n, m = 300, 40
    dense = rng.exponential(1.0, (n, m)) * (rng.random((n, m)) < 0.15)
    dense[:, 0] = 0.0  # dead latent: never positive
    dense[:, 1] = 0.0
    dense[[3, 50, 90], 1] = [2.0, 0.5, 1.0]  # only three positives
    dense[:, 2] = np.where(rng.random(n) < 0.3, 1.0, 0.0)  # many exact ties at the same value
    dense[:, 3] = 2.5  # never zero, never varies
    y = 1.5 * dense[:, 5] - 1.0 * dense[:, 7] + rng.normal(0, 1.0, n)
    codes = sp.csr_matrix(dense)
    # An explicitly stored zero must count as a zero row, not as an activation.
    coo = codes.tocoo()
    codes = sp.csr_matrix((np.append(coo.data, 0.0), (np.append(coo.row, 0), np.append(coo.col, 4))), shape=(n, m))
    return codes, dense, y


@pytest.fixture(scope="module")
def real_codes(yelp_embedded):
    train, _, X_train, _ = yelp_embedded
    sae = SparseAutoencoder(m=64, k=4, max_epochs=20, seed=0).fit(X_train)
    return sae.transform(X_train), train["stars"].to_numpy(dtype=float)


def dense_corr(dense: np.ndarray, y: np.ndarray) -> np.ndarray:
    out = np.zeros(dense.shape[1])
    for j in range(dense.shape[1]):
        if dense[:, j].std() > 0:
            out[j] = np.corrcoef(dense[:, j], y)[0, 1]
    return out


def brute_separation(dense: np.ndarray, y: np.ndarray, top_n: int) -> np.ndarray:
    """The definition, one latent at a time: top positives by value (ties: earlier row) vs exact zeros."""
    out = np.full(dense.shape[1], np.nan)
    for j in range(dense.shape[1]):
        positives = sorted((-dense[i, j], i) for i in range(len(y)) if dense[i, j] > 0)[:top_n]
        zeros = [i for i in range(len(y)) if dense[i, j] == 0]
        if positives and zeros:
            out[j] = np.mean([y[i] for _, i in positives]) - np.mean(y[zeros])
    return out


def test_correlation_matches_numpy_corrcoef(random_codes):
    codes, dense, y = random_codes
    r = correlation_scores(codes, y)
    np.testing.assert_allclose(r, dense_corr(dense, y), atol=1e-10)
    assert r[0] == 0 and r[3] == 0  # dead and constant latents score 0, not NaN
    assert set(np.argsort(-np.abs(r))[:2]) == {5, 7}


def test_correlation_matches_numpy_on_real_sae_codes(real_codes):
    codes, stars = real_codes
    assert sp.isspmatrix_csr(codes) or isinstance(codes, sp.csr_matrix)
    r = correlation_scores(codes, stars)
    np.testing.assert_allclose(r, dense_corr(codes.toarray().astype(np.float64), stars), atol=1e-8)
    assert np.abs(r).max() > 0.2  # some MiniLM concept tracks review stars


@pytest.mark.parametrize("top_n", [1, 5, 40])
def test_separation_matches_brute_force(random_codes, top_n):
    codes, dense, y = random_codes
    got = separation_scores(codes, y, top_n=top_n)
    want = brute_separation(dense, y, top_n)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got[~np.isnan(want)], want[~np.isnan(want)], atol=1e-10)
    assert np.isnan(got[0]) and np.isnan(got[3])  # no positives / no zero rows
    assert np.isfinite(got[1])  # fewer positives than top_n: uses all three


def test_separation_on_real_codes_matches_brute_force(real_codes):
    codes, stars = real_codes
    np.testing.assert_allclose(
        separation_scores(codes, stars, top_n=30),
        brute_separation(codes.toarray().astype(np.float64), stars, 30),
        atol=1e-9,
        equal_nan=True,
    )


def test_separation_selection_skips_nan_latents(random_codes):
    codes, _, y = random_codes
    sel = select_latents(codes, y, method="separation", n=40, top_n=10)
    assert 0 not in sel.latents and 3 not in sel.latents
    assert len(sel.latents) == 38 and sel.warnings  # told why it returned fewer than asked
    assert np.isfinite(sel.scores).all()


def test_selection_ranks_by_magnitude_and_keeps_sign(random_codes):
    codes, _, y = random_codes
    sel = select_latents(codes, y, method="correlation", n=5)
    assert isinstance(sel, Selection) and sel.method == "correlation"
    assert list(sel.latents[:2]) == [5, 7]
    assert sel.scores[0] > 0 > sel.scores[1]
    assert np.all(np.diff(np.abs(sel.scores)) <= 0)
    np.testing.assert_allclose(sel.all_scores[sel.latents], sel.scores)


def _standardised_dense(codes) -> np.ndarray:
    dense = codes.toarray().astype(np.float64)
    sd = dense.std(axis=0)
    return np.divide(dense, sd, out=np.zeros_like(dense), where=sd > 0)


@pytest.mark.parametrize("n", [1, 4, 10])
def test_lasso_lands_on_exactly_n_and_matches_sklearn(random_codes, n):
    codes, _, y = random_codes
    path = lasso_path_fit(codes, y, n, "continuous")
    assert len(path.latents) == n and path.n_nonzero == n and not path.warnings
    ref = Lasso(alpha=path.regularisation, max_iter=100_000, tol=1e-10).fit(_standardised_dense(codes), y)
    assert set(np.flatnonzero(ref.coef_)) == set(path.latents)
    np.testing.assert_allclose(path.coefs, ref.coef_[path.latents], rtol=1e-3, atol=1e-5)
    assert np.all(np.diff(np.abs(path.coefs)) <= 0)
    again = lasso_path_fit(codes, y, n, "continuous")  # deterministic: the same latents and coefficients
    np.testing.assert_array_equal(again.latents, path.latents)
    np.testing.assert_array_equal(again.coefs, path.coefs)


def test_binary_l1_logistic_lands_on_exactly_n_and_matches_sklearn(real_codes):
    codes, stars = real_codes
    good = (stars >= 4).astype(float)
    path = lasso_path_fit(codes, good, 8, "binary")
    assert len(path.latents) == 8 and path.n_nonzero == 8
    ref = LogisticRegression(
        C=path.regularisation, l1_ratio=1.0, solver="liblinear", intercept_scaling=100.0, tol=1e-6, max_iter=10_000
    ).fit(_standardised_dense(codes), good)
    assert set(np.flatnonzero(ref.coef_.ravel())) == set(path.latents)
    sel = select_latents(codes, good, method="lasso", n=8, kind="binary")
    assert set(sel.latents) == set(path.latents) and sel.details["regularisation_name"] == "C"


def test_lasso_grows_a_too_small_working_set_to_the_exact_answer():
    """Started from 5 of 400 latents, both L1 paths must pull in the rest and match sklearn on all 400."""
    rng = np.random.default_rng(7)
    dense = rng.exponential(1.0, (600, 400)) * (rng.random((600, 400)) < 0.05)
    # Two latents that fire together; y follows their small difference, which neither tracks alone.
    dense[:, 391] = dense[:, 390] + 0.3 * rng.random(600) * (dense[:, 390] > 0)
    y = 0.4 * dense[:, :15].sum(axis=1) + 6.0 * (dense[:, 391] - dense[:, 390]) + rng.normal(0, 1.0, 600)
    codes, Z = sp.csr_matrix(dense), _standardised_dense(sp.csr_matrix(dense))

    small = lasso_path_fit(codes, y, 10, "continuous", working_set=5)
    assert small.n_fits > 1 and small.n_nonzero == 10 and not small.warnings  # the set had to grow
    ref = Lasso(alpha=small.regularisation, max_iter=100_000, tol=1e-10).fit(Z, y)
    assert set(np.flatnonzero(ref.coef_)) == set(small.latents)
    np.testing.assert_allclose(small.coefs, ref.coef_[small.latents], rtol=1e-3, atol=1e-5)
    assert set(lasso_path_fit(codes, y, 10, "continuous").latents) == set(small.latents)

    good = (y > np.median(y)).astype(float)
    small = lasso_path_fit(codes, good, 10, "binary", working_set=5)
    assert small.n_nonzero == 10 and not small.warnings
    ref = LogisticRegression(
        C=small.regularisation, l1_ratio=1.0, solver="liblinear", intercept_scaling=100.0, tol=1e-6, max_iter=10_000
    ).fit(Z, good)
    assert set(np.flatnonzero(ref.coef_.ravel())) == set(small.latents)


def test_lasso_returns_fewer_with_a_warning_when_n_cannot_be_reached():
    rng = np.random.default_rng(3)
    dense = np.zeros((200, 8))
    dense[:, :3] = rng.exponential(1.0, (200, 3)) * (rng.random((200, 3)) < 0.4)  # only 3 latents ever fire
    y = dense[:, :3] @ np.array([2.0, -1.0, 0.5]) + rng.normal(0, 0.5, 200)
    path = lasso_path_fit(sp.csr_matrix(dense), y, 5, "continuous")
    assert set(path.latents) == {0, 1, 2}
    assert "keeps only 3" in path.warnings[0]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda c, y: select_latents(c, y[:-1]), "same documents"),
        (lambda c, y: select_latents(c, y, n=0), "between 1 and 40"),
        (lambda c, y: select_latents(c, y, n=41), "between 1 and 40"),
        (lambda c, y: select_latents(c, y, method="magic"), "correlation, separation, lasso"),
        (lambda c, y: select_latents(c, np.ones_like(y)), "constant"),
        (lambda c, y: select_latents(c, y, kind="ordinal"), "continuous, binary"),
        (lambda c, y: select_latents(c, y, method="lasso", kind="binary"), "coded 0/1"),
        (lambda c, y: separation_scores(c, y, top_n=0), "top_n"),
        (lambda c, y: correlation_scores(c, np.where(np.arange(len(y)) == 0, np.nan, y)), "missing"),
    ],
)
def test_bad_inputs_raise_clear_data_errors(random_codes, call, message):
    codes, _, y = random_codes
    with pytest.raises(DataError, match=message):
        call(codes, y)
