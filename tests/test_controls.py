"""Adjusting for columns: the stepwise choice and the holdout model beyond controls are the exact least-squares
answers, a hypothesis that only tracks a control stops looking significant, and bad controls are refused in one
line. Real data: arXiv 2018 (a date, a field, a constant year) and Upworthy A/B tests (a test id)."""

from __future__ import annotations

import json
from itertools import combinations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy.optimize import minimize
from scipy.special import logsumexp
from scipy.stats import chi2
from statsmodels.discrete.discrete_model import Logit
from statsmodels.regression.linear_model import OLS
from ws_fixtures import upworthy_frame  # noqa: F401

from hsae_core import conditional_logit
from hsae_core.choose import choose_hypotheses
from hsae_core.cli import main
from hsae_core.controls import ControlDesign, absorbed_control, fit_controls, residualise
from hsae_core.errors import DataError, HsaeError
from hsae_core.evidence import BEYOND, hypothesis_evidence, within_group_pairs
from hsae_core.pipeline import HypothesisConfig, hypothesize, load_run
from hsae_core.report import fixed_decimals, headline_metrics
from hsae_core.stats import embedding_baseline, evaluate_hypotheses, pair_counts, within_group_auc
from hsae_core.stepwise import forward_select

N_GROUPS = 15


@pytest.fixture
def constructed():
    """300 rows: 20 presence columns, 2 numeric controls (one tied to column 3) and 15 groups that move y."""
    rng = np.random.default_rng(0)
    n, m = 300, 20
    P = (rng.random((n, m)) < rng.uniform(0.05, 0.5, m)).astype(float)
    groups = rng.integers(0, N_GROUPS, n)
    C = rng.normal(size=(n, 2))
    C[:, 1] += P[:, 3]
    y = P[:, 1] + 0.5 * P[:, 3] + C[:, 0] + 0.1 * groups + rng.normal(size=n)
    return P, C, groups, y


def _rss(y, *blocks) -> float:
    D = np.column_stack(blocks)
    beta, *_ = np.linalg.lstsq(D, y, rcond=None)
    e = y - D @ beta
    return float(e @ e)


@pytest.mark.parametrize("with_groups", [True, False])
def test_stepwise_beyond_controls_is_exact_greedy_least_squares(constructed, with_groups):
    P, C, groups, y = constructed
    base = [np.eye(N_GROUPS)[groups] if with_groups else np.ones((len(y), 1)), C]
    design = ControlDesign(C, groups if with_groups else None)
    found = forward_select(sp.csr_matrix(P), y, 5, controls=design)

    total, chosen, gains = _rss(y, *base), [], []
    for _ in range(5):  # brute force: refit with every remaining column, keep the one that lowers RSS most
        before = _rss(y, *base, P[:, chosen])
        drop = {j: before - _rss(y, *base, P[:, chosen + [j]]) for j in range(P.shape[1]) if j not in chosen}
        best = max(drop, key=drop.get)
        chosen.append(best)
        gains.append(drop[best] / total)
    assert found.latents.tolist() == chosen
    np.testing.assert_allclose(found.gains, gains, atol=1e-12)
    assert found.r2 == pytest.approx(1 - _rss(y, *base, P[:, chosen]) / total, abs=1e-12)


def test_stepwise_without_controls_is_unchanged(constructed):
    P, _, _, y = constructed
    plain = forward_select(sp.csr_matrix(P), y, 5)
    centred_only = forward_select(sp.csr_matrix(P), y, 5, controls=ControlDesign(np.zeros((len(y), 0))))
    assert plain.latents.tolist() == centred_only.latents.tolist()
    np.testing.assert_allclose(plain.gains, centred_only.gains, atol=1e-12)


def test_holdout_model_beyond_controls_matches_the_explicit_model(constructed):
    P, C, groups, y = constructed
    A = P[:, :4]
    # groups absorbed: the coefficients of a model with one dummy per group; SEs clustered on the groups
    table, summary = evaluate_hypotheses(A, y, "continuous", controls=ControlDesign(C, groups))
    explicit = OLS(y, np.column_stack([np.eye(N_GROUPS)[groups], C, A])).fit(
        cov_type="cluster", cov_kwds={"groups": groups}
    )
    np.testing.assert_allclose(table["coef"], explicit.params[-4:], atol=1e-10)
    # the explicit model counts the 15 group means as parameters in its small-sample factor; absorbed, they
    # are not (the clusters nest the groups), so its SEs are larger by exactly that factor
    n, k_absorbed, k_explicit = len(y), 2 + 4, N_GROUPS + 2 + 4
    np.testing.assert_allclose(
        table["coef_se"], explicit.bse[-4:] * np.sqrt((n - k_explicit) / (n - k_absorbed)), rtol=1e-8
    )
    assert summary["cov_type"] == "cluster" and summary["controls"]["absorbed"]
    partial = 1 - _rss(y, np.eye(N_GROUPS)[groups], C, A) / _rss(y, np.eye(N_GROUPS)[groups], C)
    assert summary["r2_in_sample"] == pytest.approx(partial, abs=1e-12)

    # numeric controls only: OLS with an intercept and the raw control columns, HC3
    table, summary = evaluate_hypotheses(A, y, "continuous", controls=ControlDesign(C))
    explicit = OLS(y, np.column_stack([np.ones(len(y)), C, A])).fit(cov_type="HC3")
    np.testing.assert_allclose(table["coef"], explicit.params[-4:], atol=1e-10)
    np.testing.assert_allclose(table["coef_se"], explicit.bse[-4:], rtol=1e-8)

    # a yes/no target: logistic with the controls beside the hypotheses
    yb = (y > np.median(y)).astype(float)
    table, summary = evaluate_hypotheses(A, yb, "binary", controls=ControlDesign(C))
    explicit = Logit(yb, np.column_stack([np.ones(len(y)), C, A])).fit(disp=0)
    np.testing.assert_allclose(table["coef"], explicit.params[-4:], atol=1e-6)
    assert 0.5 < summary["controls"]["auc_cv"] < summary["auc_cv"]


def _conditional_nll(beta, X, y, groups):
    """Minus the conditional log-likelihood, by enumerating every subset of each group of its size (small
    groups only): the textbook definition, independent of the library's recursion."""
    total = 0.0
    for g in np.unique(groups):
        rows = np.flatnonzero(groups == g)
        k = int(y[rows].sum())
        if 0 < k < len(rows):
            score = X[rows] @ beta
            subsets = [score[list(c)].sum() for c in combinations(range(len(rows)), k)]
            total -= score[y[rows] == 1].sum() - logsumexp(subsets)
    return total


def test_a_yes_no_target_within_groups_is_a_conditional_logit():
    """Which arm of each test wins: groups of 2-6 rows with one or two rows of the target, and groups with
    none (which say nothing within). Coefficients equal the textbook conditional likelihood's optimum; a
    hypothesis that only differs between groups cannot enter; the AUC is within groups."""
    rng = np.random.default_rng(3)
    sizes = rng.integers(2, 7, 300)
    groups = np.repeat(np.arange(len(sizes)), sizes)
    P = (rng.random((len(groups), 4)) < 0.4).astype(float)
    P[:, 3] = (rng.random(len(sizes)) < 0.5)[groups]  # constant within each group
    utility = P[:, :3] @ np.array([1.0, -0.7, 0.0]) + rng.gumbel(size=len(groups))
    rank = pd.Series(utility).groupby(groups).rank(ascending=False).to_numpy()
    winners = np.where(rng.random(len(sizes)) < 0.3, 2, 1)[groups]
    y = (rank <= winners).astype(float)
    y[groups >= 250] = 0.0  # 50 tests without a winner
    table, summary = evaluate_hypotheses(P, y, "binary", controls=ControlDesign(np.zeros((len(y), 0)), groups))
    fit = minimize(_conditional_nll, np.zeros(3), args=(P[:, :3], y, groups), method="BFGS", options={"gtol": 1e-8})
    np.testing.assert_allclose(table["coef"][:3], fit.x, atol=1e-6)
    # standard errors: the inverse of the textbook likelihood's curvature at its optimum (central differences)
    h, eye = 1e-4, np.eye(3)
    curvature = np.array(
        [
            [
                (
                    _conditional_nll(fit.x + h * (eye[a] + eye[b]), P[:, :3], y, groups)
                    - _conditional_nll(fit.x + h * (eye[a] - eye[b]), P[:, :3], y, groups)
                    - _conditional_nll(fit.x - h * (eye[a] - eye[b]), P[:, :3], y, groups)
                    + _conditional_nll(fit.x - h * (eye[a] + eye[b]), P[:, :3], y, groups)
                )
                / (4 * h * h)
                for b in range(3)
            ]
            for a in range(3)
        ]
    )
    np.testing.assert_allclose(table["coef_se"][:3], np.sqrt(np.diag(np.linalg.inv(curvature))), rtol=1e-4)
    # a score that separates the target within every group has no finite coefficient
    separated = conditional_logit.fit(np.column_stack([y + 0.1 * P[:, 0]]), y, groups)
    assert not separated.converged or abs(separated.coef[0]) >= 15
    assert table["coef_p"][0] < 1e-6 and table["coef_p"][1] < 1e-3 and table["coef_p"][2] > 0.01
    assert np.isnan(table["coef"][3]) and "does not vary once the controls are held fixed" in table["note"][3]
    assert summary["auc_within"] and summary["cov_type"] == "conditional"
    wins = pd.Series(y).groupby(groups).agg(["sum", "size"])
    both = wins[(wins["sum"] > 0) & (wins["sum"] < wins["size"])].index  # not the 50 without, nor 2 of 2
    assert 200 < len(both) < 250
    assert summary["n_groups_informative"] == len(both) and summary["n_groups"] == 300
    assert summary["n_complete_rows"] == int(np.isin(groups, both).sum())
    assert summary["controls"]["auc_cv"] == 0.5  # the groups alone rank nothing within them
    assert 0.6 < summary["auc_cv"] < summary["auc_in_sample"] < 1.0


def test_a_yes_no_target_within_groups_beyond_numeric_controls_too():
    """A number that moves the chance of coming first (an arm's position on the page, say) and is tied to a
    hypothesis: the hypothesis's coefficient is the one of the textbook likelihood with the number in it, and
    the number alone ranks arms above chance within their groups."""
    rng = np.random.default_rng(5)
    sizes = rng.integers(2, 6, 250)
    groups = np.repeat(np.arange(len(sizes)), sizes)
    P = (rng.random((len(groups), 2)) < 0.4).astype(float)
    position = rng.normal(size=len(groups)) + P[:, 0]
    utility = 0.8 * P[:, 0] + 0.9 * position + rng.gumbel(size=len(groups))
    y = (pd.Series(utility).groupby(groups).rank(ascending=False).to_numpy() == 1).astype(float)
    table, summary = evaluate_hypotheses(P, y, "binary", controls=ControlDesign(position[:, None], groups))
    X = np.column_stack([position, P])
    fit = minimize(_conditional_nll, np.zeros(3), args=(X, y, groups), method="BFGS", options={"gtol": 1e-8})
    np.testing.assert_allclose(table["coef"], fit.x[1:], atol=1e-6)
    assert summary["controls"]["auc_cv"] > 0.6  # the position alone, out of fold, within groups


def test_one_large_group_beside_small_ones_gives_statsmodels_answer():
    """Groups of every size in one fit (tests of 2-7 arms, and one of 60 with 15 first): the recursion runs
    over buckets of similar groups, so the large one pads only itself, and the answer is statsmodels'
    (its own recursion over each group)."""
    import warnings

    from statsmodels.discrete.conditional_models import ConditionalLogit

    rng = np.random.default_rng(6)
    sizes = np.append(rng.integers(2, 8, 300), 60)
    winners = np.append(np.where(rng.random(300) < 0.3, 2, 1), 15)
    groups = np.repeat(np.arange(len(sizes)), sizes)
    X = np.column_stack([rng.random(len(groups)) < 0.4, rng.normal(size=len(groups))]).astype(float)
    utility = X @ np.array([0.7, -0.5]) + rng.gumbel(size=len(groups))
    y = (pd.Series(utility).groupby(groups).rank(method="first", ascending=False) <= winners[groups]).to_numpy(float)
    ours = conditional_logit.fit(X, y, groups)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = ConditionalLogit(y, X, groups=groups).fit(method="newton", disp=0)
    np.testing.assert_allclose(ours.coef, theirs.params, atol=1e-6)
    np.testing.assert_allclose(ours.se, theirs.bse, rtol=1e-5)
    assert ours.loglik == pytest.approx(theirs.llf, abs=1e-6)


def test_a_hypothesis_that_wins_every_comparison_within_groups_is_tested_with_a_penalty():
    """A rare hypothesis on a rare target within groups (an A/B test's declared winner) can win every
    comparison it enters without separating the target across all rows (it is on losers too, beside a winner
    that has it): no conditional MLE exists. It stays in the model, which is then fitted with a log-F(1,1)
    penalty on each coefficient: every coefficient is the penalised textbook likelihood's optimum, the winner's
    is positive and significant, and its p-value is the penalised likelihood-ratio test. One that varies only
    within groups without a winner is still left out. Before, the winner was left out untested, though it is
    the strongest finding there."""
    rng = np.random.default_rng(8)
    sizes = rng.integers(3, 7, 400)
    groups = np.repeat(np.arange(len(sizes)), sizes)
    P = (rng.random((len(groups), 4)) < 0.35).astype(float)
    utility = P[:, :2] @ np.array([1.0, -0.8]) + rng.gumbel(size=len(groups))
    y = (pd.Series(utility).groupby(groups).rank(method="first", ascending=False).to_numpy() == 1).astype(float)
    y[groups >= 300] = 0.0  # 100 tests without a winner
    informative = groups < 300
    P[:, 2] = 0.0
    chosen = np.flatnonzero(informative & (y == 1))[:12]
    P[chosen, 2] = 1.0  # on 12 winners, and on a loser in half of their tests: it never loses within one
    P[[np.flatnonzero((groups == groups[w]) & (y == 0))[0] for w in chosen[:6]], 2] = 1.0
    P[groups >= 300, 2] = rng.random(int((groups >= 300).sum())) < 0.5  # varies where nothing is decided
    P[informative, 3] = (rng.random(300) < 0.4)[groups[informative]]  # constant within every decided test
    P[~informative, 3] = rng.random(int((~informative).sum())) < 0.4
    table, summary = evaluate_hypotheses(P, y, "binary", controls=ControlDesign(np.zeros((len(y), 0)), groups))
    assert "does not vary once the controls are held fixed" in table["note"][3]  # on the decided tests
    assert table["note"][:3].isna().all() or (table["note"][:3].fillna("") == "").all()
    assert np.isnan(table["coef"][3])
    assert summary["cov_type"] == "penalised conditional" and any("log-F(1,1)-penalised" in n for n in summary["notes"])

    def penalised_nll(beta, X):
        return _conditional_nll(beta, X, y, groups) + (np.logaddexp(0.0, beta) - beta / 2).sum()

    textbook = minimize(penalised_nll, np.zeros(3), args=(P[:, :3],), method="BFGS", options={"gtol": 1e-8})
    np.testing.assert_allclose(table["coef"][:3], textbook.x, atol=1e-5)
    assert table["coef"][2] > 1 and table["coef_p"][2] < 1e-3  # 12 winners, no loss: the strongest effect
    held = minimize(lambda b: penalised_nll(np.r_[b, 0.0], P[:, :3]), np.zeros(2), method="BFGS")
    statistic = 2 * (held.fun - textbook.fun)
    assert table["coef_p"][2] == pytest.approx(chi2.sf(statistic, 1), rel=1e-3)
    assert table["coef_p"][0] < 1e-6 and table["coef_p"][1] < 1e-4


def test_one_chosen_row_per_group_is_solved_in_closed_form_with_the_same_answer():
    """Which arm came first, and in some tests which arm came last (every row but one has the target, read
    through its complement): the closed-form Newton path gives the textbook likelihood's optimum and the
    general recursion's coefficients and standard errors. A column constant within every group stays where it
    started in a fold (where it cannot move a ranking within groups) and leaves nothing identified when the
    standard errors are asked for."""
    rng = np.random.default_rng(11)
    sizes = rng.integers(2, 6, 200)
    groups = np.repeat(np.arange(len(sizes)), sizes)
    X = np.column_stack([(rng.random(len(groups)) < 0.4), rng.normal(size=len(groups))]).astype(float)
    utility = X @ np.array([0.9, -0.6]) + rng.gumbel(size=len(groups))
    rank = pd.Series(utility).groupby(groups).rank(method="first", ascending=False).to_numpy()
    last_out = (rng.random(len(sizes)) < 0.3)[groups]
    y = np.where(last_out, rank < sizes[groups], rank == 1).astype(float)
    closed = conditional_logit.fit(X, y, groups)
    general = conditional_logit.fit(X, y, groups, _recursion=True)
    textbook = minimize(_conditional_nll, np.zeros(2), args=(X, y, groups), method="BFGS", options={"gtol": 1e-8})
    assert closed.converged
    np.testing.assert_allclose(closed.coef, textbook.x, atol=1e-6)
    np.testing.assert_allclose(closed.coef, general.coef, atol=1e-8)
    np.testing.assert_allclose(closed.se, general.se, rtol=1e-6)
    assert closed.loglik == pytest.approx(-_conditional_nll(closed.coef, X, y, groups), abs=1e-9)

    per_group = np.column_stack([X, rng.random(len(sizes))[groups]])
    fold = conditional_logit.fit(per_group, y, groups, standard_errors=False)
    np.testing.assert_allclose(fold.coef[:2], closed.coef, atol=1e-8)
    assert abs(fold.coef[2]) < 1e-8
    assert np.isnan(conditional_logit.fit(per_group, y, groups).coef).all()


def test_within_group_auc_counts_pairs_inside_groups_only():
    rng = np.random.default_rng(1)
    groups = rng.integers(0, 30, 400)
    y = (rng.random(400) < 0.3).astype(float)
    score = np.round(rng.normal(size=400) + y, 1)  # ties too
    right = total = 0.0
    for g in np.unique(groups):
        pos, neg = score[(groups == g) & (y == 1)], score[(groups == g) & (y == 0)]
        diff = pos[:, None] - neg[None, :]
        right += (diff > 0).sum() + 0.5 * (diff == 0).sum()
        total += diff.size
    assert within_group_auc(y, score, groups) == pytest.approx(right / total, abs=1e-12)
    # a score that only differs between groups ranks nothing within them
    assert within_group_auc(y, groups.astype(float), groups) == 0.5


def test_a_yes_no_target_with_no_group_of_both_values_is_untested(constructed):
    P, C, groups, y = constructed
    per_group = (pd.Series(y).groupby(groups).transform("mean") > np.median(y)).to_numpy(dtype=float)
    table, summary = evaluate_hypotheses(P[:, :3], per_group, "binary", controls=ControlDesign(C, groups))
    assert table["coef"].isna().all() and summary["n_groups_informative"] == 0
    assert all("no group holds both values" in note for note in table["note"])
    with pytest.raises(DataError, match="rows"):
        evaluate_hypotheses(P[:, :3], y, "continuous", controls=ControlDesign(C[:-1]))


def test_group_labels_may_be_any_values_with_gaps(constructed):
    """Test ids as text, or numbers with unused values between them, give the same answer as 0..G-1."""
    P, C, groups, y = constructed
    A = P[:, :4]
    expected, _ = evaluate_hypotheses(A, y, "continuous", controls=ControlDesign(C, groups))
    for labels in (groups * 7 + 100, np.array([f"test-{g}" for g in groups])):
        table, _ = evaluate_hypotheses(A, y, "continuous", controls=ControlDesign(C, labels))
        np.testing.assert_allclose(table["coef"], expected["coef"], atol=1e-12)
        found = forward_select(sp.csr_matrix(P), y, 3, controls=ControlDesign(C, labels))
        assert (
            found.latents.tolist()
            == forward_select(sp.csr_matrix(P), y, 3, controls=ControlDesign(C, groups)).latents.tolist()
        )


def test_a_hypothesis_that_only_tracks_the_group_is_not_significant_within_it():
    """Half the groups have high y and the hypothesis is common there, but within a group it changes nothing:
    raw it looks like a strong finding; compared within the groups it is not. A real effect survives both."""
    rng = np.random.default_rng(3)
    n, n_groups = 2000, 100
    groups = rng.integers(0, n_groups, n)
    high = groups % 2 == 1
    tracks_group = (rng.random(n) < np.where(high, 0.7, 0.2)).astype(float)
    real = (rng.random(n) < 0.3).astype(float)
    constant_within = (groups < n_groups // 2).astype(float)  # a group's own property: nothing left within it
    y = 2.0 * high + 0.5 * real + rng.normal(size=n)
    A = np.column_stack([tracks_group, real, constant_within])

    raw, _ = evaluate_hypotheses(A[:, :2], y, "continuous", names=["tracks", "real"])
    assert raw["coef_p"].iloc[0] < 1e-10 and raw["coef_p"].iloc[1] < 1e-10

    adjusted, summary = evaluate_hypotheses(
        A, y, "continuous", names=["tracks", "real", "group side"], controls=ControlDesign(np.zeros((n, 0)), groups)
    )
    assert adjusted["coef_p"].iloc[0] > 0.01
    assert adjusted["coef_p"].iloc[1] < 1e-10
    assert "does not vary once the controls are held fixed" in adjusted["note"].iloc[2]
    assert summary["n_tested"] == 2


def test_choose_beyond_controls_skips_what_the_controls_explain(constructed):
    """Column 3 goes with control 1 and column 1 with the target: beyond the controls, presence of column 3
    adds less than it does alone, and the choice says so by its order."""
    P, C, groups, y = constructed
    codes = sp.csr_matrix(P * np.linspace(0.5, 1.5, P.shape[1]))
    plain = choose_hypotheses(codes, y, method="stepwise", n=3, kind="continuous", top_n=100)
    adjusted = choose_hypotheses(
        codes, y, method="stepwise", n=3, kind="continuous", top_n=100, controls=ControlDesign(C, groups)
    )
    assert plain.latents[0] == 1 and adjusted.latents[0] == 1
    left = residualise(y, ControlDesign(C, groups))
    r = [np.corrcoef((P[:, j] > 0).astype(float), left)[0, 1] for j in adjusted.latents]
    np.testing.assert_allclose(adjusted.train_corr, r, atol=1e-10)
    with pytest.raises(DataError, match="stepwise"):
        choose_hypotheses(codes, y, method="correlation", n=3, kind="continuous", top_n=100, controls=ControlDesign(C))


def test_embedding_ceiling_beyond_controls_is_a_partial_r2():
    rng = np.random.default_rng(5)
    n = 400
    X = rng.normal(size=(2 * n, 8))
    groups = rng.integers(0, 40, 2 * n)
    y = X[:, 0] + 3.0 * groups + 0.5 * rng.normal(size=2 * n)
    tr, ho = np.arange(n), np.arange(n, 2 * n)
    raw = embedding_baseline(X[tr], y[tr], X[ho], y[ho], "continuous")
    design = ControlDesign(np.zeros((2 * n, 0)), groups)
    within = embedding_baseline(
        X[tr], y[tr], X[ho], y[ho], "continuous", controls_train=design.rows(tr), controls_hold=design.rows(ho)
    )
    assert raw["value"] < 0.1  # the groups carry the variance, and the embeddings do not see them
    assert within["value"] > 0.7  # within the groups, the first embedding dimension is most of what is left


# ---------------------------------------------------------------------------- reading the columns
@pytest.fixture(scope="module")
def arxiv(shared_data) -> pd.DataFrame:
    return pd.read_csv(shared_data / "arxiv_2018_citations" / "arxiv_2018_with_citations.csv")


def test_the_embedding_ceiling_within_groups_picks_its_penalty_on_whole_groups():
    """Pure noise in pairs of rows (a paper's two reviews): within their pair nothing is predictable, and the
    ceiling says about 0. Leave-one-out on the demeaned rows, where a row's pair-mate carries it, picks a
    weaker penalty and reports a clearly negative R² (computed here with scikit-learn directly)."""
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import r2_score

    rng = np.random.default_rng(0)

    def pairs(n_groups: int):
        groups = np.repeat(np.arange(n_groups), 2)
        y = rng.normal(size=len(groups)) + rng.normal(size=n_groups)[groups]
        return rng.normal(size=(len(groups), 100)), y, ControlDesign(np.zeros((len(groups), 0)), groups)

    (X_train, y_train, train), (X_hold, y_hold, hold) = pairs(400), pairs(100)
    found = embedding_baseline(X_train, y_train, X_hold, y_hold, "continuous", controls_train=train, controls_hold=hold)
    loo = RidgeCV(alphas=np.logspace(-3, 5, 17)).fit(residualise(X_train, train), residualise(y_train, train))
    leave_one_out = r2_score(residualise(y_hold, hold), loo.predict(residualise(X_hold, hold)))
    assert -0.02 < found["value"] < 0.02 and leave_one_out < -0.04
    assert found["alpha"] > loo.alpha_


def test_ridge_scores_on_folds_are_scikit_learns_for_every_strength():
    """The ceiling's penalty on whole groups comes from one eigendecomposition per fold, not 85 ridge fits:
    every fold's held-out R² at every strength equals scikit-learn's grid search over the same folds, so the
    strength it picks is the same."""
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import GridSearchCV, GroupKFold

    from hsae_core.stats import RIDGE_ALPHAS, ridge_fold_scores

    rng = np.random.default_rng(4)
    groups = rng.integers(0, 150, 1500)
    X = rng.normal(size=(1500, 40)) + rng.normal(size=(150, 40))[groups] + 3.0
    y = X[:, :10].sum(axis=1) * 0.3 + rng.normal(size=1500) * 2 + rng.normal(size=150)[groups]
    folds = list(GroupKFold(5).split(X, y, groups))
    search = GridSearchCV(Ridge(), {"alpha": RIDGE_ALPHAS}, cv=folds).fit(X, y)
    ours = ridge_fold_scores(X, y, folds, RIDGE_ALPHAS)
    theirs = np.array([search.cv_results_[f"split{f}_test_score"] for f in range(5)])
    np.testing.assert_allclose(ours, theirs, atol=1e-9)
    assert 0 < np.argmax(ours.mean(axis=0)) < len(RIDGE_ALPHAS) - 1  # a strength inside the grid is picked


def test_the_embedding_ceiling_of_a_grouped_split_keeps_groups_whole_when_it_picks_its_penalty():
    """Near-copies in threes (the arms of one A/B test) whose target is a coin per test, unrelated to the text:
    on new tests nothing is predictable. With the groups given, the penalty is picked on whole groups and the
    ceiling says about 0; leave-one-out lets each row's near-copies tell it, picks a weak penalty and reports a
    clearly negative R² (scikit-learn directly). The logistic ceiling takes its C on whole groups too."""
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import r2_score

    rng = np.random.default_rng(0)

    def tests(n: int):
        groups = np.repeat(np.arange(n), 3)
        X = rng.normal(size=(n, 50))[groups] + 0.1 * rng.normal(size=(3 * n, 50))
        return X, rng.normal(size=n)[groups] + 0.1 * rng.normal(size=3 * n), groups

    (X_train, y_train, groups), (X_hold, y_hold, _) = tests(300), tests(100)
    found = embedding_baseline(X_train, y_train, X_hold, y_hold, "continuous", cv_groups=groups)
    loo = RidgeCV(alphas=np.logspace(-3, 5, 17)).fit(X_train, y_train)
    assert found["value"] > -0.05 and r2_score(y_hold, loo.predict(X_hold)) < -0.1 and found["alpha"] > loo.alpha_
    yes, yes_hold = (y_train > 0).astype(float), (y_hold > 0).astype(float)
    grouped = embedding_baseline(X_train, yes, X_hold, yes_hold, "binary", cv_groups=groups)
    assert grouped["C"] < embedding_baseline(X_train, yes, X_hold, yes_hold, "binary")["C"]


def test_arxiv_date_and_field_are_read_as_a_year_and_three_values(arxiv):
    controls = fit_controls(arxiv, ["published", "field"], text_col="abstract", target_col="citation_count")
    assert controls.describe() == ["published (a date, in years)", "field (3 values)"]
    design = controls.design(arxiv)
    assert design.groups is None and design.matrix.shape == (len(arxiv), 1 + 2)
    # the date is standardised years: the paper of 31 December 2018 is the latest
    assert np.argmax(design.matrix[:, 0]) == pd.to_datetime(arxiv["published"]).argmax()
    assert design.names[1:] == [f"field = {v}" for v in arxiv["field"].value_counts().index[1:]]


def test_upworthy_test_id_is_absorbed(upworthy_frame):  # noqa: F811
    controls = fit_controls(
        upworthy_frame, ["clickability_test_id", "test_week"], text_col="headline", target_col="ctr"
    )
    assert controls.absorbed == "clickability_test_id"
    design = controls.design(upworthy_frame)
    assert design.groups.max() + 1 == upworthy_frame["clickability_test_id"].nunique()
    assert design.names == ["test_week"]


@pytest.mark.parametrize(
    "columns, message",
    [
        (["publshed"], "publshed"),
        (["abstract"], "is the text column"),
        (["citation_count"], "is the target column"),
        (["year"], "`year` takes a single value"),
        (["title"], "free text"),
        (["field", "field"], "named twice"),
        (["paper_id", "arxiv_id_full"], "only one can be absorbed"),
    ],
)
def test_bad_controls_are_refused_in_one_line(arxiv, columns, message):
    with pytest.raises(DataError, match=message) as err:
        fit_controls(arxiv, columns, text_col="abstract", target_col="citation_count")
    assert "\n" not in str(err.value)


def test_controls_need_the_stepwise_selection():
    with pytest.raises(DataError, match="stepwise"):
        HypothesisConfig(select="lasso", controls=("field",)).validate()


# ---------------------------------------------------------------------------- end to end
def test_cli_run_on_upworthy_compares_headlines_within_their_test(upworthy_frame, tmp_path, capsys):  # noqa: F811
    """The command a user types: ctr beyond the A/B test, no split named. The holdout is whole tests (a random
    row split would leave arms alone in their test), the printed lines say so and name the test id, and the
    coefficients are those of a model with one dummy per test on the run's own holdout annotations."""
    data = tmp_path / "upworthy.parquet"
    upworthy_frame.to_parquet(data)
    out = tmp_path / "run"
    args = ["--data", str(data), "--text-col", "headline", "--target-col", "ctr", "--n", "5"]
    args += ["--control", "clickability_test_id", "--out", str(out)]
    assert main(["hypothesize", *args]) == 0
    printed = capsys.readouterr().out
    assert "Adjusted for clickability_test_id (compared within each of its" in printed
    assert "R² is partial" in printed
    assert "groups of 'clickability_test_id'" in printed and "whole groups because the run compares within" in printed
    summary = json.loads((out / "summary.json").read_text())
    metrics = summary["metrics"]["overall"]
    assert summary["controls"]["absorbed"] == "clickability_test_id" and metrics["cov_type"] == "cluster"
    assert summary["split"]["method"] == "grouped" and summary["split"]["grouped_because"] == "controls"
    assert summary["config"]["group_col"] == "clickability_test_id"  # the run's record repeats its split
    assert not any(w.startswith("controls:") for w in summary.get("warnings", []))  # whole tests: none alone
    assert any(line.startswith("Beyond the controls: ") for line in printed.splitlines())

    table = pd.read_csv(out / "hypotheses.csv")
    ann = pd.read_parquet(out / "holdout_annotations.parquet")
    tests = upworthy_frame["clickability_test_id"].iloc[ann["row_id"]].to_numpy()
    others = upworthy_frame["clickability_test_id"].drop(index=ann["row_id"])
    assert not set(tests) & set(others)  # no test has arms on both sides
    tested = table[table["coef"].notna()]
    A = ann[tested["annotation_col"]].to_numpy(float)
    dummies = pd.get_dummies(tests).to_numpy(float)
    explicit = OLS(ann["target"].to_numpy(float), np.column_stack([dummies, A])).fit()
    np.testing.assert_allclose(tested["coef"], explicit.params[-len(tested) :], rtol=1e-6, atol=1e-9)
    # a click rate's effects are thousandths: printed with the decimals they need, not as 0.000
    places = fixed_decimals(table["coef"])
    assert places >= 4
    assert all(f"{v:.{places}f}" in printed for v in tested["coef"])


def test_rows_without_a_test_id_are_each_a_group_of_their_own(upworthy_frame, tmp_path, capsys):  # noqa: F811
    """A row whose A/B test is unknown is in no known group: compared with nothing, as the grouped split already
    held it out alone, not lumped with every other such row into one giant test (which compared unrelated
    headlines, and for a yes/no target took minutes in the recursion over a group of hundreds of winners). The
    model is then the one on the rows with a test id, and the lines say how the rows without one were read."""
    frame = upworthy_frame.copy()
    frame.loc[::7, "clickability_test_id"] = None
    missing = frame["clickability_test_id"].isna().to_numpy()
    controls = fit_controls(frame, ["clickability_test_id"], text_col="headline", target_col="first_place")
    design = controls.design(frame)
    assert len(np.unique(design.groups[missing])) == missing.sum()
    assert not np.isin(design.groups[missing], design.groups[~missing]).any()
    assert f"the {missing.sum()} training rows without one are each compared with nothing" in controls.describe()[0]

    rng = np.random.default_rng(2)
    P = (rng.random((len(frame), 3)) < 0.4).astype(float)
    y = frame["first_place"].to_numpy(float)
    with_missing, _ = evaluate_hypotheses(P, y, "binary", controls=design)
    known, _ = evaluate_hypotheses(P[~missing], y[~missing], "binary", controls=controls.design(frame[~missing]))
    np.testing.assert_allclose(with_missing["coef"], known["coef"], atol=1e-10)
    np.testing.assert_allclose(with_missing["coef_se"], known["coef_se"], rtol=1e-8)

    data = tmp_path / "upworthy.parquet"
    frame.to_parquet(data)
    args = ["--data", str(data), "--text-col", "headline", "--target-col", "ctr", "--n", "3"]
    assert main(["hypothesize", *args, "--control", "clickability_test_id", "--out", str(tmp_path / "run")]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    groups = summary["split"]["groups"]
    assert groups["without_value"] == missing.sum()
    assert groups["train"] + groups["holdout"] == frame["clickability_test_id"].nunique() + missing.sum()
    assert f"each of the {missing.sum()} rows without a value is a group of its own" in printed
    # the evidence's pairs read the groups as the model does: rows without an id pair with nothing
    run = load_run(tmp_path / "run")
    holdout = frame.iloc[run.annotations["row_id"]].reset_index(drop=True)
    assert holdout["clickability_test_id"].isna().any()
    for _, row in run.table.iterrows():
        present = run.annotations[row["annotation_col"]].to_numpy() == 1
        decided = sum(  # groupby leaves the rows without an id out
            int((test["ctr"][test["present"]].to_numpy()[:, None] != test["ctr"][~test["present"]].to_numpy()).sum())
            for _, test in holdout.assign(present=present).groupby("clickability_test_id")
        )
        assert within_group_pairs(run, frame, "headline", row).decided == row["within_pairs_n"] == decided


def test_cli_run_on_which_headline_comes_first_in_its_test(upworthy_frame, tmp_path, capsys):  # noqa: F811
    """A yes/no target compared within each A/B test: which arm came first. The run holds out whole tests,
    fits a conditional logit on the tests that have a first arm and others, and says its AUC is within tests;
    the coefficients are the textbook conditional likelihood's optimum on the run's own annotations."""
    data = tmp_path / "upworthy.parquet"
    upworthy_frame.to_parquet(data)
    out = tmp_path / "run"
    args = ["--data", str(data), "--text-col", "headline", "--target-col", "first_place", "--n", "3"]
    assert main(["hypothesize", *args, "--control", "clickability_test_id", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "AUC is within each 'clickability_test_id'" in printed and "conditional logit" in printed
    assert "holdout within-group AUC of the hypotheses" in printed
    summary = json.loads((out / "summary.json").read_text())
    metrics = summary["metrics"]["overall"]
    assert (
        metrics["auc_within"]
        and metrics["cov_type"] in ("conditional", "penalised conditional")
        and summary["split"]["method"] == "grouped"
    )
    assert "any_of" not in metrics and "any_of_other" not in metrics  # a place within a test, not a kind of text
    assert "any-of rule" not in printed and " = any of " not in printed
    assert metrics["embedding_baseline"]["model"] == "ridge within groups"
    assert [label for label, _, _ in headline_metrics(metrics)][:3] == [
        "Within AUC (5-fold CV)",
        "Ceiling within AUC",
        "Within AUC (in sample)",
    ]

    table = pd.read_csv(out / "hypotheses.csv")
    assert "any_of" not in table.columns
    ann = pd.read_parquet(out / "holdout_annotations.parquet")
    tests = upworthy_frame["clickability_test_id"].iloc[ann["row_id"]].to_numpy()
    y = ann["target"].to_numpy(float)
    first = pd.Series(y).groupby(tests).agg(["sum", "size"])
    both = first[(first["sum"] > 0) & (first["sum"] < first["size"])].index
    assert metrics["n_groups_informative"] == len(both) > 10
    assert f"read within the {len(both)} of {len(first)} holdout groups that hold both values" in printed
    tested = table[table["coef"].notna()]
    assert len(tested) >= 2
    rows = np.isin(tests, both)
    X = ann[tested["annotation_col"]].to_numpy(float)[rows]
    penalised = metrics["cov_type"] == "penalised conditional"  # where a hypothesis wins every comparison it enters

    def nll(beta):
        penalty = (np.logaddexp(0.0, beta) - beta / 2).sum() if penalised else 0.0
        return _conditional_nll(beta, X, y[rows], tests[rows]) + penalty

    fit = minimize(nll, np.zeros(len(tested)), method="BFGS", options={"gtol": 1e-9})
    np.testing.assert_allclose(tested["coef"], fit.x, atol=1e-5)


def test_evidence_of_an_adjusted_run_reads_each_headline_against_its_own_test(upworthy_frame, tmp_path):  # noqa: F811
    """Supporting headlines are those above their own test's holdout mean (for a positive effect), not above the
    archive's: the page shows that difference beside the click rate."""
    data = tmp_path / "upworthy.parquet"
    upworthy_frame.to_parquet(data)
    out = tmp_path / "run"
    args = ["--data", str(data), "--text-col", "headline", "--target-col", "ctr", "--n", "5", "--group-col"]
    assert (
        main(["hypothesize", *args, "clickability_test_id", "--control", "clickability_test_id", "--out", str(out)])
        == 0
    )
    run = load_run(out)
    ann = run.annotations
    holdout = upworthy_frame.iloc[ann["row_id"]]
    own_test_mean = holdout.groupby("clickability_test_id")["ctr"].transform("mean").to_numpy()
    expected = ann["target"].to_numpy() - own_test_mean
    for _, row in run.table[run.table["coef"].notna()].iterrows():
        supporting, counter = hypothesis_evidence(run, upworthy_frame, "headline", row, n=1000)
        sign = np.sign(row["coef"])
        for shown, side in ((supporting, sign), (counter, -sign)):
            assert (np.sign(shown[BEYOND]) == side).all()
            positions = [int(np.flatnonzero(ann["row_id"].to_numpy() == d)[0]) for d in shown["doc"]]
            np.testing.assert_allclose(shown[BEYOND], expected[positions], atol=1e-12)
        present = int((ann[row["annotation_col"]] == 1).sum())
        assert len(supporting) + len(counter) <= present


def test_pairs_within_a_test_are_counted_as_every_pair_would_be():
    """Every (with, without) pair of rows in one group, counted by sorted search, against the pairs themselves."""
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 40, 300)
    score = np.round(rng.normal(size=300), 1)  # ties too
    present = rng.random(300) < 0.4
    decided = agreeing = 0
    for g in np.unique(groups):
        diff = score[(groups == g) & present][:, None] - score[(groups == g) & ~present][None, :]
        decided, agreeing = decided + int((diff != 0).sum()), agreeing + int((diff > 0).sum())
    both = sum(present[groups == g].any() and not present[groups == g].all() for g in np.unique(groups))
    assert pair_counts(score, present, groups) == (decided, agreeing, both)


def test_evidence_within_a_test_sets_each_arm_with_it_beside_one_without(upworthy_frame, tmp_path):  # noqa: F811
    """For a run within A/B tests: a headline with the hypothesis beside one of the same test without it, and
    over all such pairs in the holdout the share whose click rates went the way the coefficient says."""
    data = tmp_path / "upworthy.parquet"
    upworthy_frame.to_parquet(data)
    out = tmp_path / "run"
    args = ["--data", str(data), "--text-col", "headline", "--target-col", "ctr", "--n", "5"]
    assert main(["hypothesize", *args, "--control", "clickability_test_id", "--out", str(out)]) == 0
    run = load_run(out)
    ann = run.annotations
    holdout = upworthy_frame.iloc[ann["row_id"]].reset_index(drop=True)
    seen, decided_any = [], False
    for _, row in run.table[run.table["coef"].notna()].iterrows():
        pairs = within_group_pairs(run, upworthy_frame, "headline", row, n=1000)
        present = ann[row["annotation_col"]].to_numpy() == 1
        decided = agreeing = groups = 0
        for _, test in holdout.assign(present=present).groupby("clickability_test_id"):
            if test["present"].any() and not test["present"].all():
                groups += 1
                gap = test["ctr"][test["present"]].to_numpy()[:, None] - test["ctr"][~test["present"]].to_numpy()
                decided += int((gap != 0).sum())
                agreeing += int((np.sign(gap) == np.sign(row["coef"])).sum())
        assert (pairs.decided, pairs.agreeing, pairs.groups) == (decided, agreeing, groups)
        # the run's table carries the same count and share for every hypothesis (hypotheses.csv, the CLI, the page)
        assert row["within_pairs_n"] == decided
        assert row["within_pairs"] == pytest.approx(agreeing / decided) if decided else np.isnan(row["within_pairs"])
        seen.append(groups)
        decided_any = decided_any or decided > 0
        table = pairs.table
        assert len(table) == groups and table["clickability_test_id"].is_unique
        by_text = dict(zip(holdout["headline"], holdout["clickability_test_id"]))
        assert all(
            by_text[a] == t == by_text[b]
            for a, b, t in zip(table["with it"], table["without it"], table["clickability_test_id"])
        )
        went = np.sign(row["coef"]) * (table["ctr with"] - table["ctr without"])
        expected = np.where(went > 0, "as predicted", np.where(went < 0, "against", "tied"))
        assert (table["went"] == expected).all()
    assert max(seen) >= 3 and decided_any  # not vacuous: hypotheses read in several tests, with pairs that differ
    without_tests = upworthy_frame.drop(columns="clickability_test_id")
    assert within_group_pairs(load_run(out), without_tests, "headline", row) is None
    # a row an annotator failed on (NaN, as an LLM's can be) is on neither side: the same as leaving it out
    failed = load_run(out)
    column = row["annotation_col"]
    failed.annotations.loc[failed.annotations.index[::3], column] = np.nan
    kept = failed.annotations[column].notna().to_numpy()
    dropped = load_run(out)
    dropped.annotations = dropped.annotations[kept].reset_index(drop=True)
    got, want = (within_group_pairs(r, upworthy_frame, "headline", row, n=1000) for r in (failed, dropped))
    assert (got.decided, got.agreeing, got.groups) == (want.decided, want.agreeing, want.groups)
    pd.testing.assert_frame_equal(got.table, want.table)


def test_holdout_rows_alone_in_their_group_are_counted_with_the_way_out(upworthy_frame):  # noqa: F811
    """A random row split leaves many arms of a test alone in the holdout: compared within the test they test
    nothing, and the run says how many, naming the grouped split."""
    controls = fit_controls(upworthy_frame, ["clickability_test_id"], text_col="headline", target_col="ctr")
    rng = np.random.default_rng(0)
    holdout = upworthy_frame.iloc[np.sort(rng.choice(len(upworthy_frame), 120, replace=False))]
    design = controls.design(holdout)
    alone = int((holdout["clickability_test_id"].map(holdout["clickability_test_id"].value_counts()) == 1).sum())
    line = controls.alone_line(design)
    assert alone > 12 and line.startswith(f"{alone:,} of the 120 holdout rows are the only row")
    assert "--group-col clickability_test_id" in line
    assert controls.alone_line(design, group_col="clickability_test_id") is None  # already grouped
    arms = upworthy_frame["clickability_test_id"].map(upworthy_frame["clickability_test_id"].value_counts())
    assert controls.alone_line(controls.design(upworthy_frame[arms >= 2])) is None  # whole tests of 2+ arms


def test_only_a_column_of_many_values_is_compared_within(upworthy_frame, arxiv):  # noqa: F811
    """The column a run groups its holdout by: the A/B test id, never a date or a three-value field, and
    nothing the controls would refuse (the text itself)."""
    keys = {"text_col": "headline", "target_col": "ctr"}
    assert absorbed_control(upworthy_frame, ["clickability_test_id"], **keys) == "clickability_test_id"
    assert absorbed_control(upworthy_frame, ["headline", "clickability_test_id"], **keys) == "clickability_test_id"
    assert absorbed_control(upworthy_frame, ["headline"], **keys) is None
    keys = {"text_col": "abstract", "target_col": "citation_count"}
    assert absorbed_control(arxiv, ["published", "field"], **keys) is None


def test_a_split_by_value_is_kept_when_a_control_is_absorbed(upworthy_frame):  # noqa: F811
    """The user's own split stands (only a random row split becomes whole groups); the run then counts the
    holdout rows alone in their test."""
    frame = upworthy_frame.assign(part=np.where(np.arange(len(upworthy_frame)) % 5 == 0, "holdout", "train"))
    rng = np.random.default_rng(0)
    X = rng.normal(size=(len(frame), 16)).astype(np.float32)
    config = HypothesisConfig(
        n=3,
        m=16,
        k=4,
        matryoshka="none",
        max_epochs=2,
        split_col="part",
        holdout_value="holdout",
        controls=("clickability_test_id",),
    )
    run = hypothesize(frame, text_col="headline", target_col="ctr", config=config, embeddings=X)
    assert run.summary["split"]["method"] == "by value" and "grouped_because" not in run.summary["split"]
    tests = frame["clickability_test_id"].iloc[run.annotations["row_id"]]
    alone = int((tests.map(tests.value_counts()) == 1).sum())
    assert alone > 0.1 * len(tests)
    said = f"controls: {alone:,} of the {len(tests):,} holdout rows are the only row of their 'clickability_test_id'"
    assert any(w.startswith(said) for w in run.summary["warnings"])


def test_decimals_show_the_largest_value_with_three_digits():
    assert fixed_decimals([-0.829, 0.3, np.nan]) == 3  # star ratings: as before
    assert fixed_decimals([0.00167, -0.00056]) == 5
    assert fixed_decimals([12.5, 3]) == 3  # never fewer than 3
    assert fixed_decimals([np.nan, 0.0]) == 3


def test_cli_refuses_a_control_that_is_not_there(upworthy_frame, tmp_path, capsys):  # noqa: F811
    data = tmp_path / "upworthy.parquet"
    upworthy_frame.to_parquet(data)
    args = ["--data", str(data), "--text-col", "headline", "--target-col", "ctr", "--control", "test_wek"]
    assert main(["hypothesize", *args, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "test_wek" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_a_target_that_never_varies_within_the_groups_is_refused_before_embedding(upworthy_frame, monkeypatch):  # noqa: F811
    """Whether a test ran in its first week is the same for all its arms: compared within tests nothing is left.
    The run says so before it asks for a single embedding (the endpoint here is a closed port: a run that got as
    far as embedding, as the ctr one does, fails on the connection instead)."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    frame = upworthy_frame.assign(first_week=upworthy_frame["test_week"].astype(str) == "201446")
    config = HypothesisConfig(n=3, controls=("clickability_test_id",))
    args = {"text_col": "headline", "config": config, "embedder": "openai:text-embedding-3-small"}
    with pytest.raises(DataError, match=r"The controls explain 'first_week' entirely on the training rows") as err:
        hypothesize(frame, target_col="first_week", **args)
    assert "\n" not in str(err.value)
    with pytest.raises(HsaeError, match="embedding request failed"):
        hypothesize(frame, target_col="ctr", **args)


def test_partial_correlations_equal_the_dense_computation(constructed):
    """Every feature's correlation with the target once the controls are out of both, from sparse codes: the
    same numbers as residualising the dense activations and correlating."""
    from hsae_core.controls import partial_correlations

    P, C, groups, y = constructed
    rng = np.random.default_rng(1)
    A = P * rng.exponential(1.0, P.shape)  # activations, zero where absent
    A[:, 7] = 0.0  # a feature that never fires
    A[:, 8] = groups % 3  # varies only between groups: nothing left within them
    for design in (ControlDesign(C, groups), ControlDesign(C), None):
        found = partial_correlations(sp.csr_matrix(A), y, design)
        left_A, left_y = residualise(A, design), residualise(y, design)
        for j in range(A.shape[1]):
            norm = np.linalg.norm(left_A[:, j])
            expected = 0.0 if norm < 1e-8 else left_A[:, j] @ left_y / (norm * np.linalg.norm(left_y))
            assert found[j] == pytest.approx(expected, abs=1e-10), (j, design is None)
    assert partial_correlations(sp.csr_matrix(A), y, ControlDesign(C, groups))[8] == 0.0
