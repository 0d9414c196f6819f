"""Holdout statistics against statsmodels / scipy references, degenerate inputs, and real Yelp data."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats as sps
from scipy.special import expit
from sklearn.linear_model import LinearRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import KFold, cross_val_predict
from statsmodels.stats.multitest import multipletests

from hsae_core.errors import DataError
from hsae_core.report import verdict_line
from hsae_core.sae import SparseAutoencoder
from hsae_core.select import select_latents
from hsae_core.stats import COLUMNS, embedding_baseline, evaluate_hypotheses, few_cases_note, logit_sandwich_cov


@pytest.fixture(scope="module")
def holdout():
    """500 documents x 6 hypotheses: two real effects, four nulls, a few failed annotations."""
    rng = np.random.default_rng(7)
    n = 500
    A = (rng.random((n, 6)) < [0.3, 0.5, 0.2, 0.4, 0.6, 0.1]).astype(float)
    y = 0.8 * A[:, 0] - 0.5 * A[:, 1] + rng.normal(0, 1, n)
    A[rng.random(n) < 0.05, 2] = np.nan
    A[rng.random(n) < 0.03, 4] = np.nan
    return A, y


def complete_rows(A):
    return ~np.isnan(A).any(axis=1)


def test_univariate_columns_match_scipy_welch(holdout):
    A, y = holdout
    table, _ = evaluate_hypotheses(A, y, "continuous", names=list("abcdef"))
    assert list(table.columns) == COLUMNS and list(table["hypothesis"]) == list("abcdef")
    for j in range(A.shape[1]):
        seen = ~np.isnan(A[:, j])
        a, yy = A[seen, j], y[seen]
        ref = sps.ttest_ind(yy[a == 1], yy[a == 0], equal_var=False)
        row = table.iloc[j]
        assert row["n"] == seen.sum()
        assert row["prevalence"] == pytest.approx(a.mean())
        assert row["separation"] == pytest.approx(yy[a == 1].mean() - yy[a == 0].mean())
        assert row["separation_t"] == pytest.approx(ref.statistic)
        assert row["separation_p"] == pytest.approx(ref.pvalue)


def test_ols_hc3_and_corrections_match_statsmodels(holdout):
    A, y = holdout
    table, summary = evaluate_hypotheses(A, y, "continuous", alpha=0.05)
    keep = complete_rows(A)
    ref = sm.OLS(y[keep], sm.add_constant(A[keep])).fit(cov_type="HC3")
    np.testing.assert_allclose(table["coef"], ref.params[1:], rtol=1e-10)
    np.testing.assert_allclose(table["coef_se"], ref.bse[1:], rtol=1e-10)
    np.testing.assert_allclose(table["coef_p"], ref.pvalues[1:], rtol=1e-8)
    assert summary["r2_in_sample"] == pytest.approx(ref.rsquared)
    assert summary["n_complete_rows"] == keep.sum() and summary["n_rows"] == len(y)
    assert summary["n_missing_annotations"] == np.isnan(A).sum()

    reject_b, p_b, _, _ = multipletests(ref.pvalues[1:], alpha=0.05, method="bonferroni")
    reject_q, q, _, _ = multipletests(ref.pvalues[1:], alpha=0.05, method="fdr_bh")
    np.testing.assert_allclose(table["p_bonferroni"], p_b)
    np.testing.assert_allclose(table["q_fdr"], q)
    np.testing.assert_array_equal(table["significant_bonferroni"], reject_b)
    np.testing.assert_array_equal(table["significant_fdr"], reject_q)
    # The two planted effects are found, with the right signs.
    assert table.loc[0, "significant_bonferroni"] and table.loc[0, "coef"] > 0
    assert table.loc[1, "significant_bonferroni"] and table.loc[1, "coef"] < 0
    assert summary["n_significant_bonferroni"] == int(reject_b.sum())


def test_cross_validated_r2_is_seeded_out_of_fold_ols(holdout):
    A, y = holdout
    _, s1 = evaluate_hypotheses(A, y, "continuous", cv_folds=5, seed=3)
    _, s2 = evaluate_hypotheses(A, y, "continuous", cv_folds=5, seed=3)
    keep = complete_rows(A)
    pred = cross_val_predict(LinearRegression(), A[keep], y[keep], cv=KFold(5, shuffle=True, random_state=3))
    want = 1 - np.sum((y[keep] - pred) ** 2) / np.sum((y[keep] - y[keep].mean()) ** 2)
    assert s1["r2_cv"] == pytest.approx(want) == s2["r2_cv"]
    assert 0 < s1["r2_cv"] < s1["r2_in_sample"]


def test_degenerate_columns_are_explained_not_fatal(holdout):
    A, y = holdout
    n = len(y)
    extra = np.column_stack([np.ones(n), np.zeros(n), A[:, 0], 1 - A[:, 1], np.full(n, np.nan)])
    A2 = np.column_stack([A, extra])
    names = [f"h{j}" for j in range(A2.shape[1])]
    table, summary = evaluate_hypotheses(A2, y, "continuous", names=names)
    bad = table.iloc[6:]
    assert bad["coef"].isna().all() and bad["coef_p"].isna().all()
    assert not bad["significant_bonferroni"].any() and not bad["significant_fdr"].any()
    notes = list(bad["note"])
    assert "present in every" in notes[0] and "absent from every" in notes[1]
    assert "'h0' (identical)" in notes[2] and "'h1' (its complement)" in notes[3]
    assert "no successful annotation" in notes[4]
    assert np.isnan(bad.iloc[0]["separation_p"])  # nothing to compare against
    # The healthy hypotheses get exactly the model without the degenerate ones.
    keep = complete_rows(A)
    ref = sm.OLS(y[keep], sm.add_constant(A[keep])).fit(cov_type="HC3")
    np.testing.assert_allclose(table["coef_p"][:6], ref.pvalues[1:], rtol=1e-8)
    assert summary["n_in_model"] == 6 and summary["n_tested"] == 6
    # Bonferroni counts only the tested hypotheses.
    np.testing.assert_allclose(table["p_bonferroni"][:6], np.minimum(ref.pvalues[1:] * 6, 1))


def test_binary_target_logistic_with_hc3_sandwich(holdout):
    A, _ = holdout
    rng = np.random.default_rng(11)
    keep_all = complete_rows(A)
    logits = -0.3 + 1.2 * A[:, 0] - 0.8 * A[:, 1]
    y = (rng.random(len(A)) < expit(np.nan_to_num(logits))).astype(float)
    table, summary = evaluate_hypotheses(A, y, "binary")
    X = sm.add_constant(A[keep_all])
    ref = sm.Logit(y[keep_all], X).fit(disp=0)
    np.testing.assert_allclose(table["coef"], ref.params[1:], rtol=1e-6)
    # HC0 through our sandwich equals statsmodels' robust covariance...
    hc0 = sm.Logit(y[keep_all], X).fit(disp=0, cov_type="HC0")
    np.testing.assert_allclose(
        np.sqrt(np.diag(logit_sandwich_cov(X, y[keep_all], ref.params, "HC0"))), hc0.bse, rtol=1e-6
    )
    # ...and HC3 equals the textbook per-row formula.
    p = expit(X @ ref.params)
    bread = np.linalg.inv((X * (p * (1 - p))[:, None]).T @ X)
    meat = np.zeros_like(bread)
    for i in range(len(X)):
        h = p[i] * (1 - p[i]) * X[i] @ bread @ X[i]
        u = X[i] * (y[keep_all][i] - p[i]) / (1 - h)
        meat += np.outer(u, u)
    se3 = np.sqrt(np.diag(bread @ meat @ bread))
    np.testing.assert_allclose(table["coef_se"], se3[1:], rtol=1e-6)
    np.testing.assert_allclose(table["coef_p"], 2 * sps.norm.sf(np.abs(ref.params[1:] / se3[1:])), rtol=1e-6)
    assert summary["metric"] == "auc" and "r2_cv" not in summary
    assert summary["auc_in_sample"] == pytest.approx(roc_auc_score(y[keep_all], ref.predict()))
    assert 0.5 < summary["auc_cv"] <= summary["auc_in_sample"] + 0.05
    assert table.loc[0, "significant_fdr"] and table.loc[0, "coef"] > 0


def test_logistic_separation_never_crashes():
    rng = np.random.default_rng(5)
    n = 300
    A = (rng.random((n, 3)) < 0.5).astype(float)
    # Jointly separable, though each hypothesis alone has both classes on each side.
    y = (A[:, 0] + A[:, 1] - A[:, 2] >= 1).astype(float)
    table, summary = evaluate_hypotheses(A, y, "binary")
    # No MLE: the penalised fit gives each a finite coefficient, in the direction of its effect, and a test
    assert np.isfinite(table["coef"]).all() and np.sign(table["coef"]).tolist() == [1, 1, -1]
    assert table["significant_bonferroni"].all() and (table["note"] == "").all(), "tested, so no 'not tested' note"
    assert "log-F(1,1)-penalised likelihood" in summary["notes"][0] and summary["cov_type"] == "penalised"
    assert summary["auc_in_sample"] == pytest.approx(1.0)
    said = verdict_line({**summary, "embedding_baseline": {"value": 0.9}})
    assert said.endswith(
        "Some hypotheses separate the target on the holdout (present only on one side of it), so there is no "
        "ordinary fit: the coefficients carry a weak pull toward no effect (log-F(1,1)) and the p-values are "
        "penalised likelihood-ratio tests."
    ), said
    # A single hypothesis present only in positive texts, the strongest finding, used to be left out untested
    y2 = (rng.random(n) < 0.4).astype(float)
    A2 = np.column_stack([(rng.random(n) < 0.5).astype(float), y2 * (rng.random(n) < 0.5)])
    table2, summary2 = evaluate_hypotheses(A2, y2, "binary")
    assert table2.loc[1, "coef"] > 2 and table2.loc[1, "significant_bonferroni"]
    assert np.isfinite(table2["coef_p"]).all() and summary2["n_tested"] == 2


def test_the_penalised_fit_is_the_maximum_of_its_stated_likelihood_and_keeps_the_sign_the_data_point_to():
    """Exact on constructed tables with a zero cell (no MLE): the estimate and its likelihood-ratio p-value are
    those of the log-F(1,1)-penalised likelihood maximised here independently (scipy's optimiser)."""
    from scipy.optimize import minimize

    from hsae_core.penalised_logit import penalised_logit

    def table(present_yes, present_no, absent_yes, absent_no):
        x = np.r_[np.ones(present_yes + present_no), np.zeros(absent_yes + absent_no)]
        y = np.r_[np.ones(present_yes), np.zeros(present_no), np.ones(absent_yes), np.zeros(absent_no)]
        return np.column_stack([np.ones_like(x), x]), y

    def objective(X, y):
        def minus(b):
            eta = X @ b
            return -(y @ eta - np.logaddexp(0, eta).sum() + b[1] / 2 - np.logaddexp(0, b[1]))

        return minus

    opts = {"xatol": 1e-10, "fatol": 1e-13, "maxiter": 20000}
    for cells in [(12, 0, 10, 30), (0, 3, 6, 173)]:  # present only with the class; absent from a rare class
        X, y = table(*cells)
        fit = penalised_logit(X, y)
        minus = objective(X, y)
        full = minimize(minus, np.zeros(2), method="Nelder-Mead", options=opts)
        held = minimize(lambda b, f=minus: f(np.array([b[0], 0.0])), np.zeros(1), method="Nelder-Mead", options=opts)
        np.testing.assert_allclose(fit.params, full.x, atol=1e-5)
        assert fit.penalised_loglik == pytest.approx(-full.fun, abs=1e-9)
        assert fit.p[1] == pytest.approx(sps.chi2.sf(2 * (held.fun - full.fun), 1), rel=1e-4)
        assert np.isnan(fit.p[0]), "the intercept is not tested"
    # 12 of 12 present texts have the class: a large positive, significant effect; 0 of 3 present texts in a
    # class of 6 in 182 (ICLR 2018's orals): slightly negative and nowhere near significant (Firth's penalty
    # made it positive)
    strong, weak = penalised_logit(*table(12, 0, 10, 30)), penalised_logit(*table(0, 3, 6, 173))
    assert strong.params[1] > 2 and strong.p[1] < 1e-4
    assert weak.params[1] < 0 and weak.p[1] > 0.3
    # Far from separation it is the ordinary maximum likelihood, near enough
    rng = np.random.default_rng(0)
    A = (rng.random((2000, 5)) < 0.3).astype(float)
    yy = (rng.random(2000) < expit(A @ [1.0, -1.0, 0.5, 0.0, 0.0] - 0.5)).astype(float)
    design = np.column_stack([np.ones(2000), A])
    mle = sm.Logit(yy, design).fit(disp=0)
    np.testing.assert_allclose(penalised_logit(design, yy).params, mle.params, atol=0.01)


def test_the_terminal_says_why_a_hypothesis_was_not_tested():
    from hsae_core.pipeline import untested_lines

    rng = np.random.default_rng(9)
    A = (rng.random((60, 3)) < 0.5).astype(float)
    A[:, 1] = 0
    A[7, 1] = 1  # present in one holdout row: its coef and p are NaN in the table
    table, _ = evaluate_hypotheses(A, rng.normal(size=60), "continuous", names=["often", "once", "also often"])
    table.insert(0, "latent", [4, 9, 12])  # as the run's table carries them
    assert untested_lines(table) == [
        "Not tested: #9 \u201conce\u201d: present in 1 of the 60 rows annotated for every hypothesis; "
        "needs at least 2 present and absent to enter the model."
    ]
    assert untested_lines(table.assign(note="")) == [] == untested_lines(table.assign(note=np.nan))  # as read from CSV


def test_rare_hypothesis_and_too_few_rows():
    rng = np.random.default_rng(9)
    A = (rng.random((60, 2)) < 0.5).astype(float)
    A[:, 1] = 0
    A[7, 1] = 1  # present once: leverage 1, no robust SE
    y = rng.normal(size=60)
    table, _ = evaluate_hypotheses(A, y, "continuous")
    assert np.isfinite(table.loc[0, "coef_p"]) and np.isnan(table.loc[1, "coef_p"])
    assert "present in 1 of the 60" in table.loc[1, "note"]
    # 6 healthy, independent hypotheses but only 7 rows annotated for all of them: no residual df left.
    A3 = np.zeros((9, 6))
    for j in range(6):
        A3[[j, j + 1, 8 - j % 2], j] = 1
    A3[7:, 5] = np.nan
    table3, summary3 = evaluate_hypotheses(A3, rng.normal(size=9), "continuous")
    assert table3["coef_p"].isna().all() and "only 7 rows" in summary3["notes"][0]
    assert np.isfinite(table3["separation"]).all()  # univariate results still reported


def test_end_to_end_on_real_yelp_codes(yelp_embedded):
    """Select latents on train, annotate holdout by activation, test against holdout stars."""
    train, hold, X_train, X_hold = yelp_embedded
    sae = SparseAutoencoder(m=64, k=4, max_epochs=20, seed=0).fit(X_train)
    sel = select_latents(sae.transform(X_train), train["stars"].to_numpy(float), "separation", n=6, top_n=50)
    annotations = (sae.transform(X_hold)[:, sel.latents].toarray() > 0).astype(float)
    table, summary = evaluate_hypotheses(
        annotations, hold["stars"].to_numpy(float), "continuous", names=[f"latent {j}" for j in sel.latents]
    )
    assert summary["n_rows"] == len(hold) and summary["r2_in_sample"] > 0.05
    assert summary["n_significant_fdr"] >= 1
    # Train-side sign of separation agrees with holdout for the significant hypotheses.
    sig = table["significant_fdr"].to_numpy()
    assert np.all(np.sign(table["separation"].to_numpy()[sig]) == np.sign(sel.scores[sig]))

    base = embedding_baseline(X_train, train["stars"], X_hold, hold["stars"], "continuous")
    assert base["model"] == "ridge" and base["metric"] == "r2" and base["value"] > summary["r2_cv"]
    good_tr, good_ho = (train["stars"] >= 4).astype(float), (hold["stars"] >= 4).astype(float)
    base_b = embedding_baseline(X_train, good_tr, X_hold, good_ho, "binary", seed=0)
    assert base_b["model"] == "logistic" and base_b["value"] > 0.8 and base_b["C"] > 0


@pytest.mark.parametrize(
    "args, message",
    [
        (dict(annotations=np.zeros((5, 2)), y=np.arange(4.0), kind="continuous"), "same holdout documents"),
        (dict(annotations=np.full((5, 1), 2.0), y=np.arange(5.0), kind="continuous"), "0 .absent., 1 .present. or NaN"),
        (dict(annotations=np.zeros((5, 2)), y=np.ones(5), kind="continuous"), "constant"),
        (dict(annotations=np.zeros((5, 2)), y=np.arange(5.0), kind="binary"), "coded 0/1"),
        (dict(annotations=np.zeros((5, 2)), y=np.arange(5.0), kind="ordinal"), "continuous, binary"),
        (dict(annotations=np.zeros((5, 2)), y=np.arange(5.0), kind="continuous", names=["a"]), "2 annotation columns"),
        (dict(annotations=np.zeros((5, 2)), y=np.arange(5.0), kind="continuous", cv_folds=1), "cv_folds"),
    ],
)
def test_bad_inputs_raise_clear_data_errors(args, message):
    with pytest.raises(DataError, match=message):
        evaluate_hypotheses(**args)


def test_embedding_baseline_rejects_mismatched_inputs():
    X = np.random.default_rng(0).normal(size=(20, 4))
    with pytest.raises(DataError, match="same model"):
        embedding_baseline(X, np.arange(20.0), X[:, :3], np.arange(20.0), "continuous")
    with pytest.raises(DataError, match="single class"):
        embedding_baseline(X, np.r_[np.zeros(10), np.ones(10)], X, np.zeros(20), "binary")


def test_a_holdout_with_few_rows_of_one_value_is_said():
    note = few_cases_note(np.r_[np.ones(4), np.zeros(94)], "'oral'", "not 'oral'")
    assert note.startswith("only 4 holdout rows are 'oral': the AUC")
    assert few_cases_note(np.r_[np.ones(90), np.zeros(1)], "'1'", "'0'").startswith("only 1 holdout row is '0':")
    assert few_cases_note(np.r_[np.ones(10), np.zeros(80)], "'1'", "'0'") is None


def test_a_run_on_a_rare_class_warns_about_it(yelp_embedded):
    from hsae_core.pipeline import HypothesisConfig, hypothesize

    train, hold, _, _ = yelp_embedded
    hold = hold.assign(label=np.where(np.arange(len(hold)) < 6, "rare", "common"))  # 6 holdout rows are "rare"
    train = train.assign(label=np.where(train["stars"] == 1, "rare", "common"))
    config = HypothesisConfig(m=32, k=4, levels=(), n=3)
    run = hypothesize(train, text_col="text", target_col="label", holdout=hold, config=config)
    assert "holdout: only 6 holdout rows are 'rare': the AUC" in " | ".join(run.summary["warnings"])


def test_iterative_fits_run_on_one_blas_thread_then_give_the_rest_back(monkeypatch, capsys, tmp_path):
    """BLAS threads woken for every small product of an iterative fit cost more than they give (20x on the
    logistic ceiling here: bench/bench_blas_threads.py), so a fit runs on HSAE_FIT_BLAS_THREADS threads
    (default 1) and leaves BLAS as it found it; 0 leaves BLAS alone; a malformed value is refused in one line,
    by a run before it reads anything."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from hsae_core.blas import fit_threads
    from hsae_core.cli import main

    def blas_threads():
        return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]

    with threadpool_limits(limits=2, user_api="blas"):
        assert set(blas_threads()) == {2}
        with fit_threads():
            assert set(blas_threads()) == {1}
        assert set(blas_threads()) == {2}
        # fits of two threads (two dashboard sessions) take turns, so neither restores a count the other set
        # (the count is read here in the main thread only: OpenBLAS reports it per thread once it is set)
        import threading

        first_in, second_tries, events, first_is_inside = threading.Event(), threading.Event(), [], [False]

        def first():
            with fit_threads():
                first_is_inside[0] = True
                first_in.set()
                second_tries.wait(10)
                threading.Event().wait(0.2)  # the second is waiting at the door now
                events.append("first inside")
                first_is_inside[0] = False

        def second():
            first_in.wait(10)
            second_tries.set()
            with fit_threads():
                events.append(("second inside, the first too", first_is_inside[0]))

        workers = [threading.Thread(target=first), threading.Thread(target=second)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(20)
        assert events == ["first inside", ("second inside, the first too", False)]
        assert set(blas_threads()) == {2}
        with fit_threads(), fit_threads():  # nested: a decorated fit called inside a limited block
            assert set(blas_threads()) == {1}
        assert set(blas_threads()) == {2}
        monkeypatch.setenv("HSAE_FIT_BLAS_THREADS", "0")
        with fit_threads():
            assert set(blas_threads()) == {2}
        monkeypatch.setenv("HSAE_FIT_BLAS_THREADS", "two")
        with pytest.raises(DataError, match="HSAE_FIT_BLAS_THREADS must be a whole number"):
            with fit_threads():
                pass
        data = tmp_path / "few.csv"
        data.write_text("t,y\nsome text,1\nmore text,0\n")
        args = ["--data", str(data), "--text-col", "t", "--target-col", "y", "--out", str(tmp_path / "run")]
        assert main(["hypothesize", *args]) != 0
        assert "hsae: error: HSAE_FIT_BLAS_THREADS must be a whole number" in capsys.readouterr().err
