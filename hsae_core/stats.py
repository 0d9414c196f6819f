"""Holdout statistics for hypotheses: is each one related to the target, alone and together?

Per hypothesis (a 0/1 annotation of each holdout document, NaN where annotation failed):
prevalence, separation E[y|present] - E[y|absent] with Welch's t-test, a coefficient in one
multivariate model (OLS for a continuous target, logistic for a binary one) with HC3 robust
standard errors, and Bonferroni / Benjamini-Hochberg corrections of the model's p-values.
Overall: in-sample and cross-validated R^2 (continuous) or AUC (binary) of that model. Beside
controls (:mod:`controls`) the model holds them: within-group OLS with clustered errors where a column
is absorbed, and for a binary target there a conditional logit whose AUC is taken within groups.

Degenerate inputs never crash: constant, too-rare or collinear hypotheses are left out of the model with
NaN coefficients and a ``note`` that says why; hypotheses that separate a yes/no target (alone or together)
stay in, fitted by a penalised likelihood (:mod:`penalised_logit`), as do hypotheses that win or lose every
comparison within groups in a conditional logit (:func:`conditional_logit.penalised_fit`).
"""

from __future__ import annotations

import warnings
from typing import Optional

import numpy as np
import pandas as pd
from scipy.special import expit

from .blas import fit_threads
from .controls import ControlDesign, control_basis, residualise, within
from .data import one_column
from .errors import DataError

KINDS = ("continuous", "binary")
# Within-group minimum for Welch's t-test and for a hypothesis to enter the model.
MIN_ROWS_PER_SIDE = 2
# Beyond this |log-odds| a logistic coefficient means separation, not an estimate.
MAX_LOGIT_COEF = 15.0

COLUMNS = [
    "hypothesis",
    "n",
    "prevalence",
    "mean_present",
    "mean_absent",
    "separation",
    "separation_t",
    "separation_p",
    "coef",
    "coef_se",
    "coef_ci_low",
    "coef_ci_high",
    "coef_p",
    "p_bonferroni",
    "q_fdr",
    "significant_bonferroni",
    "significant_fdr",
    "note",
]
# p-values below this are shown as "< 1e-16": beyond double precision of 1 - CDF they only say "tiny".
P_FLOOR = 1e-16


FEW_HOLDOUT_CASES = 10  # fewer holdout rows of one value than this, and its AUC and p-values swing with a text


def few_cases_note(y_hold, value: str, other: str) -> Optional[str]:
    """A sentence when a 0/1 holdout target has fewer than ``FEW_HOLDOUT_CASES`` rows of one value
    (``value`` names the 1s, ``other`` the 0s), or None."""
    y_hold = np.asarray(y_hold)
    ones = int((y_hold == 1).sum())
    count, name = (ones, value) if ones <= len(y_hold) - ones else (len(y_hold) - ones, other)
    if count >= FEW_HOLDOUT_CASES:
        return None
    return (
        f"only {count} holdout row{'s' if count != 1 else ''} {'are' if count != 1 else 'is'} {name}: the AUC, "
        "the any-of rule's F1 and the p-values rest on them and can change with one text"
    )


def format_p(p, equals: bool = False) -> str:
    """A p-value for people: ``< 1e-16``, ``3.2e-05``, ``0.012`` or ``n/a``; ``equals`` prefixes "= " to a value."""
    try:
        p = float(p)
    except (TypeError, ValueError):
        return "n/a"
    if not np.isfinite(p):
        return "n/a"
    if p < P_FLOOR:
        return "< 1e-16"
    text = f"{p:.2g}" if p >= 1e-3 else f"{p:.1e}"
    return f"= {text}" if equals else text


def coef_ci(coef, se, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Normal-approximation confidence interval (low, high) of coefficients with (robust) standard errors ``se``.

    The same approximation as the coefficients' p-values (statsmodels' robust covariances use z, not t).
    """
    from scipy import stats as sps  # here, not at the top: scipy.stats takes about 1 s to import

    if not 0 < level < 1:
        raise DataError(f"`level` must be between 0 and 1, got {level}")
    coef, se = np.asarray(coef, dtype=np.float64), np.asarray(se, dtype=np.float64)
    half = sps.norm.ppf(0.5 + level / 2) * se
    return coef - half, coef + half


# ---------------------------------------------------------------------------- validation
def _validate(annotations, y, kind: str, names, alpha: float, cv_folds: int):
    if kind not in KINDS:
        raise DataError(f"Unknown target kind '{kind}'; use one of {', '.join(KINDS)} (multiclass: one class vs rest)")
    A = np.asarray(annotations, dtype=np.float64)
    if A.ndim == 1:
        A = A[:, None]
    if A.ndim != 2 or A.shape[1] == 0:
        raise DataError(f"Annotations must be a (documents x hypotheses) matrix, got shape {np.shape(annotations)}")
    observed = A[~np.isnan(A)]
    if not np.isin(observed, (0.0, 1.0)).all():
        bad = observed[~np.isin(observed, (0.0, 1.0))][0]
        raise DataError(f"Annotations must be 0 (absent), 1 (present) or NaN (failed); found {bad:g}")
    y = one_column(y, "The holdout target").astype(np.float64)
    if len(y) != A.shape[0]:
        raise DataError(
            f"Annotations have {A.shape[0]} rows but the target has {len(y)}; they must describe the same holdout documents"
        )
    if not np.isfinite(y).all():
        raise DataError("The holdout target contains missing or infinite values; drop those rows first")
    if len(y) < 3 or np.ptp(y) == 0:
        raise DataError(
            "The holdout target is constant (or has fewer than 3 rows), so nothing can be tested against it"
        )
    if kind == "binary" and not np.isin(y, (0.0, 1.0)).all():
        raise DataError("A binary target must be coded 0/1; use kind='continuous' or recode the target")
    if names is None:
        names = [f"h{j + 1}" for j in range(A.shape[1])]
    names = [str(x) for x in names]
    if len(names) != A.shape[1]:
        raise DataError(f"Got {len(names)} hypothesis names for {A.shape[1]} annotation columns")
    if not 0 < alpha < 1:
        raise DataError(f"alpha must be between 0 and 1, got {alpha}")
    if int(cv_folds) < 2:
        raise DataError(f"cv_folds must be at least 2, got {cv_folds}")
    return A, y, names


# ---------------------------------------------------------------------------- univariate
def _univariate(a: np.ndarray, y: np.ndarray) -> dict:
    from scipy import stats as sps

    seen = ~np.isnan(a)
    a, y = a[seen], y[seen]
    present, absent = y[a == 1], y[a == 0]
    row = {
        "n": int(seen.sum()),
        "prevalence": float(a.mean()) if len(a) else np.nan,
        "mean_present": float(present.mean()) if len(present) else np.nan,
        "mean_absent": float(absent.mean()) if len(absent) else np.nan,
    }
    row["separation"] = row["mean_present"] - row["mean_absent"]
    row["separation_t"] = row["separation_p"] = np.nan
    if len(present) >= MIN_ROWS_PER_SIDE and len(absent) >= MIN_ROWS_PER_SIDE:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # both sides constant: t is NaN, which is the answer
            test = sps.ttest_ind(present, absent, equal_var=False)
        row["separation_t"], row["separation_p"] = float(test.statistic), float(test.pvalue)
    return row


# ---------------------------------------------------------------------------- model columns
def _model_columns(A: np.ndarray, y: np.ndarray, kind: str, names: list[str], controls=None):
    """Pick the hypotheses that can enter one multivariate model; say why the others cannot. With
    ``controls``, a hypothesis the controls account for entirely (e.g. one constant within every group of
    an absorbed column) cannot enter either.

    Returns (kept column ids, complete-row mask, {column: note}).
    """
    H = A.shape[1]
    notes: dict[int, str] = {}
    for j in range(H):
        seen = A[~np.isnan(A[:, j]), j]
        if len(seen) == 0:
            notes[j] = "no successful annotation; left out of the model"
        elif seen.min() == seen.max():
            notes[j] = f"{'present in' if seen[0] == 1 else 'absent from'} every annotated row; left out of the model"
    candidates = [j for j in range(H) if j not in notes]
    complete = ~np.isnan(A[:, candidates]).any(axis=1) if candidates else np.ones(len(y), bool)

    kept: list[int] = []
    yc = y[complete]
    # Collinearity is judged on what is left of each column once the controls are taken out.
    left = A[complete] if controls is None else _left_by(A[complete], controls.rows(complete), candidates)
    within_groups = kind == "binary" and controls is not None and controls.groups is not None
    if within_groups:
        groups = pd.factorize(np.asarray(controls.rows(complete).groups))[0]
        informative = informative_rows(yc, groups)
    for j in candidates:
        col = A[complete, j]
        n_present = int(col.sum())
        if min(n_present, len(col) - n_present) < MIN_ROWS_PER_SIDE:
            notes[j] = (
                f"present in {n_present} of the {len(col)} rows annotated for every hypothesis; "
                f"needs at least {MIN_ROWS_PER_SIDE} present and absent to enter the model"
            )
            continue
        if controls is not None and np.linalg.norm(left[:, j]) <= 1e-8 * max(np.linalg.norm(col - col.mean()), 1e-12):
            notes[j] = "does not vary once the controls are held fixed; left out of the model"
            continue
        if within_groups and not _varies_within_decided_groups(col[informative], groups[informative]):
            notes[j] = "does not vary within any group that holds both values of the target; left out of the model"
            continue
        twin = _collinear_with(left[:, kept], left[:, j], [names[k] for k in kept])
        if twin is not None:
            notes[j] = f"perfectly collinear with {twin}; left out of the model"
            continue
        kept.append(j)
    return kept, complete, notes


def _varies_within_decided_groups(col: np.ndarray, groups: np.ndarray) -> bool:
    """Whether a 0/1 hypothesis is present in some rows and absent in others of one group, among the rows of the
    groups that hold both values of the target: the only comparisons a conditional logit reads. A hypothesis
    that wins (or loses) every such comparison stays in: the model is then fitted with a penalty
    (:func:`_fit_conditional_logit`)."""
    codes = pd.factorize(groups)[0]
    size, present = np.bincount(codes), np.bincount(codes, weights=col)
    return bool(((present > 0) & (present < size)).any())


def _left_by(A: np.ndarray, controls: ControlDesign, columns: list[int]) -> np.ndarray:
    """``A`` with the given columns replaced by what the controls leave of them (others untouched)."""
    out = A.copy()
    if columns:
        out[:, columns] = residualise(A[:, columns], controls)
    return out


def _collinear_with(X: np.ndarray, col: np.ndarray, kept_names: list[str]) -> Optional[str]:
    """Name what ``col`` is an exact linear combination of (with an intercept), or None."""
    design = np.column_stack([np.ones(len(col)), X])
    fit, *_ = np.linalg.lstsq(design, col, rcond=None)
    resid = col - design @ fit
    if np.linalg.norm(resid) > 1e-8 * max(np.linalg.norm(col - col.mean()), 1e-12):
        return None
    for k in range(X.shape[1]):
        if np.array_equal(X[:, k], col):
            return f"'{kept_names[k]}' (identical)"
        if np.array_equal(X[:, k], 1 - col):
            return f"'{kept_names[k]}' (its complement)"
    return "a combination of earlier hypotheses"


# ---------------------------------------------------------------------------- models
def logit_sandwich_cov(X: np.ndarray, y: np.ndarray, params: np.ndarray, hc: str = "HC3") -> np.ndarray:
    """Robust covariance of logistic coefficients: bread @ meat @ bread with the GLM hat matrix.

    HC0 weights each row's score outer product by 1; HC3 by 1 / (1 - h_i)^2 (h_i: leverage of row i
    in the weighted hat matrix), which is what R's ``sandwich::vcovHC(type = "HC3")`` does for a glm.
    (statsmodels' Logit quietly treats HC1-HC3 as HC0.)
    """
    p = expit(X @ params)
    w = p * (1 - p)
    bread = np.linalg.pinv(X.T @ (w[:, None] * X))
    scores = X * (y - p)[:, None]
    if hc == "HC3":
        h = w * np.einsum("ij,jk,ik->i", X, bread, X)
        scores = scores / np.clip(1 - h, 1e-12, None)[:, None]
    elif hc != "HC0":
        raise ValueError(f"hc must be 'HC0' or 'HC3', got {hc}")
    return bread @ (scores.T @ scores) @ bread


def _with_intercept(X: np.ndarray) -> np.ndarray:
    """X with a leading column of ones (the model's intercept; its coefficient is dropped from the results)."""
    X = np.asarray(X, dtype=np.float64)
    return np.column_stack([np.ones(len(X)), X])


def _fit_ols(X: np.ndarray, y: np.ndarray):
    """OLS with HC3 SEs. Returns (coef, se, p, fitted values, note or None) for the columns of X."""
    from statsmodels.regression.linear_model import OLS  # not statsmodels.api: a third of a second less per run

    design = _with_intercept(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = OLS(y, design).fit(cov_type="HC3")
    coef, se, p = res.params[1:], res.bse[1:], res.pvalues[1:]
    note = None
    if not np.isfinite(se).all():
        note = "robust standard error undefined (a row with leverage 1); no p-value"
        se, p = np.where(np.isfinite(se), se, np.nan), np.where(np.isfinite(se), p, np.nan)
    return coef, se, p, res.fittedvalues, note


PENALISED_NOTE = (
    "hypotheses separate the target, so the logistic MLE does not exist; coefficients from a log-F(1,1)-penalised "
    "likelihood (a weak pull toward no effect), p-values from penalised likelihood-ratio tests"
)
PENALISED_WITHIN_NOTE = (
    "hypotheses win or lose every comparison they enter within a group, so the conditional MLE does not exist; "
    "coefficients from a log-F(1,1)-penalised conditional likelihood (a weak pull toward no effect), p-values "
    "from penalised likelihood-ratio tests"
)


@fit_threads()
def _fit_logit(X: np.ndarray, y: np.ndarray):
    """Logistic MLE with HC3 sandwich SEs; where the hypotheses separate the target (no MLE), a log-F(1,1)-penalised
    fit with penalised likelihood-ratio p-values (:mod:`penalised_logit`); a lightly L2-penalised fit, no p, only
    if that fails too."""
    from scipy import stats as sps
    from sklearn.linear_model import LogisticRegression
    from statsmodels.discrete.discrete_model import Logit

    from .penalised_logit import PenalisedFitFailed, penalised_logit

    design = _with_intercept(X)
    params = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = Logit(y, design).fit(method="newton", maxiter=100, disp=0)
        if (
            res.mle_retvals.get("converged", False)
            and np.isfinite(res.params).all()
            and np.abs(res.params[1:]).max(initial=0) < MAX_LOGIT_COEF
        ):
            params = np.asarray(res.params)
    except Exception:  # noqa: BLE001 - singular Hessian, PerfectSeparationError...: fall back below
        params = None
    if params is not None:
        se = np.sqrt(np.clip(np.diag(logit_sandwich_cov(design, y, params, "HC3")), 0, None))
        z = params / se
        p = 2 * sps.norm.sf(np.abs(z))
        return params[1:], se[1:], p[1:], expit(design @ params), None
    try:
        fit = penalised_logit(design, y)
        return fit.params[1:], fit.se[1:], fit.p[1:], fit.fitted, PENALISED_NOTE
    except PenalisedFitFailed:
        pass
    model = LogisticRegression(C=10.0, max_iter=5000).fit(X, y)
    nan = np.full(X.shape[1], np.nan)
    note = (
        "neither the logistic MLE nor its penalised fit could be computed; coefficient from a lightly "
        "L2-penalised fit (C=10), no p-value"
    )
    return model.coef_.ravel(), nan, nan.copy(), model.predict_proba(X)[:, 1], note


def _fit_within_ols(X: np.ndarray, y: np.ndarray, groups: np.ndarray):
    """OLS of already within-group ``y`` on within-group ``X`` (no intercept: the groups hold it), with
    standard errors clustered on the groups. Returns what :func:`_fit_ols` returns."""
    from statsmodels.regression.linear_model import OLS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = OLS(y, X).fit(cov_type="cluster", cov_kwds={"groups": groups})
    coef, se, p = np.asarray(res.params), np.asarray(res.bse), np.asarray(res.pvalues)
    note = None
    if not np.isfinite(se).all():
        note = "clustered standard error undefined; no p-value"
        se, p = np.where(np.isfinite(se), se, np.nan), np.where(np.isfinite(se), p, np.nan)
    return coef, se, p, np.asarray(res.fittedvalues), note


def _fit_conditional_logit(X: np.ndarray, y: np.ndarray, groups: np.ndarray):
    """Conditional (fixed-effects) logit of a 0/1 ``y`` on ``X`` within ``groups`` (:mod:`conditional_logit`):
    the chance that these rows of a group, and not others of it, have the target, given how many do. Group
    constants cancel, so nothing that differs only between groups can explain the answer. Returns what
    :func:`_fit_logit` returns, the fitted values being the linear score (what ranks rows within a group)."""
    from scipy import stats as sps

    from . import conditional_logit

    found = conditional_logit.fit(X, y, groups)
    coef, se = found.coef, found.se
    nan = np.full(X.shape[1], np.nan)
    if not np.isfinite(coef).all():
        return nan, nan.copy(), nan.copy(), np.zeros(len(y)), "the conditional logit could not be fitted; no p-value"
    if not found.converged or np.abs(coef).max(initial=0) >= MAX_LOGIT_COEF:  # no MLE: separation within groups
        penalised, p = conditional_logit.penalised_fit(X, y, groups)
        if np.isfinite(penalised.coef).all() and np.isfinite(p).all():
            return penalised.coef, penalised.se, p, X @ penalised.coef, PENALISED_WITHIN_NOTE
        note = "hypotheses together separate the target within groups: no finite coefficient, no p-value"
        return coef, nan, nan.copy(), X @ coef, note
    finite = np.isfinite(se) & (se > 0)
    p = np.where(finite, 2 * sps.norm.sf(np.abs(coef / np.where(finite, se, 1.0))), np.nan)
    note = None if finite.all() else "standard error undefined; no p-value"
    return coef, np.where(finite, se, np.nan), p, X @ coef, note


def within_group_auc(y, score, groups) -> float:
    """Of all pairs of rows in one group, one with the target (1) and one without, the share the score ranks
    right (ties half): the AUC of a comparison made within groups. NaN when no group holds both."""
    positive = np.asarray(y, dtype=np.float64) == 1
    groups = pd.factorize(np.asarray(groups))[0]
    n_groups = int(groups.max(initial=-1)) + 1
    total = int(
        (np.bincount(groups[positive], minlength=n_groups) * np.bincount(groups[~positive], minlength=n_groups)).sum()
    )
    decided, right, _ = pair_counts(np.asarray(score, dtype=np.float64), positive, groups)
    return (right + 0.5 * (total - decided)) / total if total else float("nan")


def informative_rows(y, groups) -> np.ndarray:
    """Rows of the groups that hold both values of a 0/1 ``y``: the only ones a within-group comparison reads."""
    frame = pd.DataFrame({"g": np.asarray(groups), "y": np.asarray(y, dtype=np.float64)})
    spread = frame.groupby("g")["y"].transform("max") - frame.groupby("g")["y"].transform("min")
    return spread.to_numpy() > 0


def _fit_adjusted(X: np.ndarray, y: np.ndarray, kind: str, controls: ControlDesign):
    """The multivariate model with the controls in it. Returns (coef, se, p, note) for the columns of ``X``
    only, and the in-sample metric: AUC, or for a continuous target the partial R², the share of what the
    controls leave of the target that the hypotheses explain."""
    from sklearn.metrics import roc_auc_score

    # The controls enter as an orthonormal basis scaled to unit variance: X's coefficients are those of a
    # model with the raw control columns, without their collinearity or scale.
    basis = control_basis(controls) * np.sqrt(len(y))
    k = basis.shape[1]
    if kind == "binary" and controls.groups is not None:
        coef, se, p, score, note = _fit_conditional_logit(np.column_stack([basis, X]), y, controls.groups)
        return coef[k:], se[k:], p[k:], within_group_auc(y, score, controls.groups), note
    if kind == "binary":
        coef, se, p, fitted, note = _fit_logit(np.column_stack([basis, X]), y)
        return coef[k:], se[k:], p[k:], float(roc_auc_score(y, fitted)), note
    left = residualise(y, controls)
    if controls.groups is not None:
        coef, se, p, fitted, note = _fit_within_ols(
            np.column_stack([basis, within(X, controls.groups)]), left, controls.groups
        )
        resid = left - fitted
    else:
        coef, se, p, fitted, note = _fit_ols(np.column_stack([basis, X]), y)
        resid = y - fitted
    return coef[k:], se[k:], p[k:], float(1.0 - (resid @ resid) / (left @ left)), note


def _cross_validated(X: np.ndarray, y: np.ndarray, kind: str, folds: int, seed: int, groups=None) -> float:
    """Pooled out-of-fold R^2 (OLS) or AUC (logistic, lightly penalised so folds with separation still fit).
    With ``groups``, folds hold whole groups."""
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold

    if kind == "continuous":
        folds = min(folds, len(y) if groups is None else len(np.unique(groups)))
        if folds < 2:
            return np.nan
        splitter = KFold(folds, shuffle=True, random_state=seed) if groups is None else GroupKFold(folds)
        model = LinearRegression()
    else:
        folds = min(folds, int(np.bincount(y.astype(int), minlength=2).min()))
        if folds < 2:
            return np.nan
        splitter, model = (
            StratifiedKFold(folds, shuffle=True, random_state=seed),
            LogisticRegression(C=100.0, max_iter=5000),
        )
    pred = np.empty(len(y))
    with fit_threads():
        for train, test in splitter.split(X, y, groups):
            model.fit(X[train], y[train])
            pred[test] = model.predict(X[test]) if kind == "continuous" else model.predict_proba(X[test])[:, 1]
    if kind == "continuous":
        return float(1 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2))
    return float(roc_auc_score(y, pred))


# ---------------------------------------------------------------------------- entry points
def evaluate_hypotheses(
    annotations: np.ndarray,
    y: np.ndarray,
    kind: str,
    names: Optional[list[str]] = None,
    alpha: float = 0.05,
    cv_folds: int = 5,
    seed: int = 0,
    controls: Optional[ControlDesign] = None,
) -> tuple[pd.DataFrame, dict]:
    """Test each hypothesis against the holdout target; one row per hypothesis, in input order.

    Univariate columns use every row where that hypothesis was annotated; the multivariate model uses
    the rows annotated for all hypotheses in it (``n_complete_rows`` in the summary). Corrections
    (Bonferroni, BH) are over the hypotheses with a model p-value (``n_tested``).

    With ``controls`` (the holdout rows' design, :mod:`controls`) the model holds them too: coefficients
    are beyond them; R² (in sample and out of fold) is partial, the share of what they leave; AUC is of the
    model with them, beside the controls' own out-of-fold AUC (``controls`` in the summary). A yes/no target
    compared within the groups of an absorbed column is modelled by a conditional logit on the groups that
    hold both values, and its AUCs are within groups (``auc_within``; the groups alone score 0.5). The
    univariate columns stay raw.
    """
    from sklearn.metrics import r2_score, roc_auc_score
    from statsmodels.stats.multitest import multipletests

    A, y, names = _validate(annotations, y, kind, names, alpha, cv_folds)
    _check_controls(controls, len(y))
    H = A.shape[1]
    rows = [{"hypothesis": names[j], **_univariate(A[:, j], y)} for j in range(H)]
    table = pd.DataFrame(rows)
    for col in ("coef", "coef_se", "coef_p", "p_bonferroni", "q_fdr"):
        table[col] = np.nan
    notes = [""] * H

    # Compared within groups, a yes/no target is read only where a group holds both values (conditional logit).
    by_group = kind == "binary" and controls is not None and controls.groups is not None
    modelled = informative_rows(y, controls.groups) if by_group else np.ones(len(y), bool)
    if modelled.any():
        kept, complete, exclusions = _model_columns(
            A[modelled], y[modelled], kind, names, None if controls is None else controls.rows(modelled)
        )
        complete = _scatter(complete, modelled)
    else:
        kept, complete = [], modelled
        exclusions = {
            j: "no group holds both values of the target, so nothing is compared within them" for j in range(H)
        }
    for j, text in exclusions.items():
        notes[j] = text
    summary_notes: list[str] = []
    X, yc = A[complete][:, kept], y[complete]
    in_sample = cv = controls_cv = np.nan
    held = None if controls is None else controls.rows(complete)  # the controls of the model's rows
    n_controls = 0 if held is None else control_basis(held).shape[1]
    if kept and len(yc) <= len(kept) + n_controls + 1:
        summary_notes.append(
            f"only {len(yc)} rows are annotated for every hypothesis, too few for a model with {len(kept)} hypotheses"
        )
        for j in kept:
            notes[j] = "too few complete rows for the multivariate model"
        kept = []
    if kept and controls is None:
        coef, se, p, fitted, note = (_fit_ols if kind == "continuous" else _fit_logit)(X, yc)
        in_sample = r2_score(yc, fitted) if kind == "continuous" else roc_auc_score(yc, fitted)
        cv = _cross_validated(X, yc, kind, int(cv_folds), seed)
    elif kept:
        coef, se, p, in_sample, note = _fit_adjusted(X, yc, kind, held)
        cv, controls_cv = _adjusted_cv(X, yc, kind, int(cv_folds), seed, held)
    if kept:
        table.loc[kept, "coef"], table.loc[kept, "coef_se"], table.loc[kept, "coef_p"] = coef, se, p
        if note:
            summary_notes.append(note)
            for j, pj in zip(kept, p):
                if not np.isfinite(pj):
                    notes[j] = note
    elif not summary_notes:
        summary_notes.append("no hypothesis could enter the multivariate model")

    table["coef_ci_low"], table["coef_ci_high"] = coef_ci(table["coef"], table["coef_se"], 1 - alpha)
    tested = np.flatnonzero(np.isfinite(table["coef_p"].to_numpy()))
    if len(tested):
        pvals = table["coef_p"].to_numpy()[tested]
        table.loc[tested, "p_bonferroni"] = np.minimum(pvals * len(tested), 1.0)
        table.loc[tested, "q_fdr"] = multipletests(pvals, alpha=alpha, method="fdr_bh")[1]
    table["significant_bonferroni"] = (table["p_bonferroni"] <= alpha).fillna(False).astype(bool)
    table["significant_fdr"] = (table["q_fdr"] <= alpha).fillna(False).astype(bool)
    table["note"] = notes
    table = table[COLUMNS]
    if controls is not None and controls.groups is not None:
        table["within_pairs"], table["within_pairs_n"] = _within_pairs(A, y, controls.groups, table)

    metric = "r2" if kind == "continuous" else "auc"
    cov_type = "HC3" if controls is None or controls.groups is None else "conditional" if by_group else "cluster"
    if kept and note == PENALISED_NOTE:
        cov_type = "penalised"  # model-based: the p-values are penalised likelihood-ratio tests
    elif kept and note == PENALISED_WITHIN_NOTE:
        cov_type = "penalised conditional"
    summary = {
        "metric": metric,
        f"{metric}_in_sample": float(in_sample),
        f"{metric}_cv": float(cv),
        "n_significant_bonferroni": int(table["significant_bonferroni"].sum()),
        "n_significant_fdr": int(table["significant_fdr"].sum()),
        "n_rows": int(len(y)),
        "n_hypotheses": int(H),
        "n_complete_rows": int(complete.sum()) if kept else 0,
        "n_in_model": len(kept),
        "n_tested": int(len(tested)),
        "n_missing_annotations": int(np.isnan(A).sum()),
        "cov_type": cov_type,
        "alpha": float(alpha),
        "cv_folds": int(cv_folds),
        "notes": summary_notes,
    }
    if controls is not None:
        summary["controls"] = {"n_columns": int(n_controls), "absorbed": controls.groups is not None}
        if kind == "continuous":  # R² above is partial; this is how much of the target the controls hold
            summary["controls"]["r2"] = float(1.0 - _sum_sq(residualise(y, controls)) / _sum_sq(y - y.mean()))
        else:
            summary["controls"]["auc_cv"] = float(controls_cv)
    if by_group:  # the AUCs are within groups: a row with the target against one without in the same group
        summary["auc_within"] = True
        summary["n_groups_informative"] = int(len(np.unique(controls.groups[modelled])))
        summary["n_groups"] = int(len(np.unique(controls.groups)))
        if not modelled.any():
            summary_notes.append("no group holds both values of the target, so nothing is compared within them")
    return table, summary


def _within_pairs(A: np.ndarray, y: np.ndarray, groups: np.ndarray, table: pd.DataFrame):
    """Per hypothesis, over every pair of holdout rows in one group, one where it is present and one where it is
    absent, whose targets differ: the share where the target went the way it predicts (the sign of its
    coefficient, or of its difference where it has none), and how many such pairs there are."""
    shares, counts = [], []
    for j in range(A.shape[1]):
        seen = ~np.isnan(A[:, j])
        direction = predicted_sign(table["coef"].iloc[j], table["separation"].iloc[j])
        decided, agreeing, _ = pair_counts(direction * y[seen], A[seen, j] == 1, groups[seen])
        shares.append(agreeing / decided if decided else np.nan)
        counts.append(decided)
    return shares, counts


def predicted_sign(coef, separation) -> float:
    """The side a hypothesis predicts, +1 or -1: its coefficient's sign where it has one, else its difference's
    (up where neither says)."""
    for value in (coef, separation):
        value = pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0]
        if np.isfinite(value) and value != 0:
            return float(np.sign(value))
    return 1.0


def pair_counts(score: np.ndarray, present: np.ndarray, groups: np.ndarray) -> tuple[int, int, int]:
    """(pairs whose scores differ, of those the ones where the present row scores higher, groups holding both)
    over every (present, absent) pair of rows in one group; by sorted search, never forming the pairs."""
    groups = np.asarray(groups, dtype=np.int64)
    present = np.asarray(present, dtype=bool)
    rank = np.unique(score, return_inverse=True)[1].ravel().astype(np.int64)
    width = int(rank.max(initial=0)) + 2
    key = groups * width + rank
    absent_keys = np.sort(key[~present])
    start = groups[present] * width
    at = key[present]
    below = np.searchsorted(absent_keys, at, "left") - np.searchsorted(absent_keys, start, "left")
    above = np.searchsorted(absent_keys, start + width, "left") - np.searchsorted(absent_keys, at, "right")
    holds = np.bincount(groups[present], minlength=int(groups.max(initial=-1)) + 1)
    lacks = np.bincount(groups[~present], minlength=len(holds))
    return int(below.sum() + above.sum()), int(below.sum()), int(((holds > 0) & (lacks > 0)).sum())


def _scatter(mask: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """A mask over the rows of ``rows`` (a bool mask) as a mask over all rows (False elsewhere)."""
    out = np.zeros(len(rows), dtype=bool)
    out[rows] = mask
    return out


def _check_controls(controls: Optional[ControlDesign], n_rows: int) -> None:
    if controls is None:
        return
    if len(controls.matrix) != n_rows:
        raise DataError(f"The controls have {len(controls.matrix)} rows but the target has {n_rows}")


def _sum_sq(v: np.ndarray) -> float:
    return float(v @ v)


def _adjusted_cv(X: np.ndarray, y: np.ndarray, kind: str, folds: int, seed: int, controls: ControlDesign):
    """Out-of-fold metric of the model with controls, and of the controls alone: for a continuous target the
    partial R² (OLS of what the controls leave of y on what they leave of X; folds hold whole groups of an
    absorbed column) and 0; for a binary one the AUC of a logistic model with and without X."""
    if kind == "continuous":
        left_y, left_X = residualise(y, controls), residualise(X, controls)
        return _cross_validated(left_X, left_y, kind, folds, seed, groups=controls.groups), 0.0
    basis = control_basis(controls) * np.sqrt(len(y))
    if controls.groups is not None:  # within groups: the groups alone rank nothing (0.5)
        alone = _within_cv(basis, y, controls.groups, folds) if basis.shape[1] else 0.5
        return _within_cv(np.column_stack([basis, X]), y, controls.groups, folds), alone
    alone = _cross_validated(basis, y, kind, folds, seed) if basis.shape[1] else 0.5
    return _cross_validated(np.column_stack([basis, X]), y, kind, folds, seed), alone


def _within_cv(X: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int) -> float:
    """Pooled out-of-fold within-group AUC of a conditional logit; folds hold whole groups."""
    from sklearn.model_selection import GroupKFold

    from . import conditional_logit

    folds = min(folds, len(np.unique(groups)))
    if folds < 2:
        return np.nan
    score = np.empty(len(y))
    for train, test in GroupKFold(folds).split(X, y, groups):
        coef = conditional_logit.fit(X[train], y[train], groups[train], standard_errors=False).coef
        score[test] = X[test] @ np.where(np.isfinite(coef), coef, 0.0)
    return within_group_auc(y, score, groups)


def embedding_baseline(
    X_train,
    y_train,
    X_hold,
    y_hold,
    kind: str,
    seed: int = 0,
    controls_train: Optional[ControlDesign] = None,
    controls_hold: Optional[ControlDesign] = None,
    cv_groups=None,
) -> dict:
    """How well the raw embeddings predict the target: ridge (R^2) or logistic (AUC) scored on the holdout.

    The regularisation is chosen on the training rows only (RidgeCV's efficient leave-one-out over a
    log grid of alphas; 5-fold stratified CV over C for logistic). Where rows come in groups, the folds
    hold whole groups instead: those of an absorbed column, or ``cv_groups`` (one label per training row,
    e.g. the column a grouped split kept whole), since a row's group-mates (the arms of one A/B test, often
    near-copies) would otherwise tell it. With controls (each split's design),
    the ridge reads what the controls leave of the embeddings and the target in each split and scores the
    partial R²; the logistic model reads the embeddings beside the control columns.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import r2_score, roc_auc_score
    from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold, StratifiedKFold

    if kind not in KINDS:
        raise DataError(f"Unknown target kind '{kind}'; use one of {', '.join(KINDS)} (multiclass: one class vs rest)")
    X_train, y_train = _matrix_and_target(X_train, y_train, "training")
    X_hold, y_hold = _matrix_and_target(X_hold, y_hold, "holdout")
    if X_train.shape[1] != X_hold.shape[1]:
        raise DataError(
            f"Training embeddings have width {X_train.shape[1]} but holdout ones {X_hold.shape[1]}; embed both with the same model"
        )
    if (controls_train is None) != (controls_hold is None):
        raise DataError("Give the controls of both splits, or of neither")
    _check_controls(controls_train, len(y_train))
    _check_controls(controls_hold, len(y_hold))
    if kind == "binary" and controls_train is not None and controls_train.groups is not None:
        return _within_baseline(X_train, y_train, X_hold, y_hold, controls_train, controls_hold)
    if kind == "continuous" and controls_train is not None:
        X_train, y_train = residualise(X_train, controls_train), residualise(y_train, controls_train)
        X_hold, y_hold = residualise(X_hold, controls_hold), residualise(y_hold, controls_hold)
    elif controls_train is not None:
        X_train = np.column_stack([X_train, controls_train.matrix])
        X_hold = np.column_stack([X_hold, controls_hold.matrix])
    if kind == "continuous":
        if np.ptp(y_train) == 0:
            raise DataError("The training target is constant; a baseline cannot be fitted")
        absorbed = None if controls_train is None else controls_train.groups
        model, alpha = _ridge(X_train, y_train, absorbed if absorbed is not None else cv_groups)
        return {
            "metric": "r2",
            "value": float(r2_score(y_hold, model.predict(X_hold))),
            "model": "ridge",
            "alpha": alpha,
        }
    for part, target in (("training", y_train), ("holdout", y_hold)):
        if not np.isin(target, (0.0, 1.0)).all():
            raise DataError(f"A binary target must be coded 0/1; the {part} target is not")
        if target.min() == target.max():
            raise DataError(f"The {part} target has a single class; AUC needs both")
    folds = min(5, int(np.bincount(y_train.astype(int), minlength=2).min()))
    if folds < 2:
        raise DataError("The training target has fewer than 2 rows of one class; cannot cross-validate the baseline")
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    if cv_groups is not None:
        splitter = StratifiedGroupKFold(min(folds, len(np.unique(cv_groups))), shuffle=True, random_state=seed)
    with fit_threads():
        search = GridSearchCV(
            LogisticRegression(max_iter=5000), {"C": np.logspace(-3, 3, 7)}, scoring="roc_auc", cv=splitter
        ).fit(X_train, y_train, groups=cv_groups)
    score = search.best_estimator_.decision_function(X_hold)
    return {
        "metric": "auc",
        "value": float(roc_auc_score(y_hold, score)),
        "model": "logistic",
        "C": float(search.best_params_["C"]),
    }


RIDGE_ALPHAS = np.logspace(-3, 5, 17)


def _ridge(X: np.ndarray, y: np.ndarray, groups: Optional[np.ndarray] = None):
    """A ridge whose strength is chosen on these rows: by efficient leave-one-out, or with ``groups`` (rows taken
    within their groups) by 5-fold CV over whole groups. Leave-one-out is no test there: a row's group-mates
    were demeaned with it, so they carry it, and it picks too weak a penalty (on the 2017 ICLR reviews within
    their paper, a holdout R² of -0.2). Returns the fitted model and its strength."""
    from sklearn.linear_model import Ridge, RidgeCV
    from sklearn.model_selection import GroupKFold

    folds = 0 if groups is None else min(5, len(np.unique(groups)))
    if folds < 2:
        model = RidgeCV(alphas=RIDGE_ALPHAS).fit(X, y)
        return model, float(model.alpha_)
    scores = ridge_fold_scores(X, y, list(GroupKFold(folds).split(X, y, groups)), RIDGE_ALPHAS)
    # the highest mean held-out R², the weakest penalty where several tie: what RidgeCV picks with these folds
    alpha = float(RIDGE_ALPHAS[int(np.argmax(scores.mean(axis=0)))])
    return Ridge(alpha=alpha).fit(X, y), alpha


def ridge_fold_scores(X: np.ndarray, y: np.ndarray, folds: list, alphas: np.ndarray) -> np.ndarray:
    """Held-out R² (folds x strengths) of a ridge with an intercept fitted on the rest of the rows, for every
    strength at once: one eigendecomposition of each fold's centred Gram matrix instead of one fit per
    strength and fold (what scikit-learn's RidgeCV does with given folds: 85 fits for 17 strengths)."""
    gram, sums, cross, total = X.T @ X, X.sum(axis=0), X.T @ y, y.sum()
    scores = np.empty((len(folds), len(alphas)))
    for f, (_, test) in enumerate(folds):
        X_test, y_test = X[test], y[test]
        n = len(y) - len(test)
        mean = (sums - X_test.sum(axis=0)) / n
        y_mean = (total - y_test.sum()) / n
        centred_gram = gram - X_test.T @ X_test - n * np.outer(mean, mean)
        centred_cross = cross - X_test.T @ y_test - n * mean * y_mean
        eigenvalues, vectors = np.linalg.eigh(centred_gram)
        shrunk = (vectors.T @ centred_cross)[:, None] / (np.clip(eigenvalues, 0, None)[:, None] + alphas[None, :])
        predicted = ((X_test - mean) @ vectors) @ shrunk + y_mean  # held-out rows x strengths
        error = ((y_test[:, None] - predicted) ** 2).sum(axis=0)
        spread = ((y_test - y_test.mean()) ** 2).sum()
        scores[f] = 1 - error / spread if spread > 0 else np.where(error == 0, 1.0, 0.0)
    return scores


def _within_baseline(X_train, y_train, X_hold, y_hold, controls_train, controls_hold) -> dict:
    """The embeddings' ceiling for a yes/no target compared within groups: a ridge on what the groups and
    controls leave of the embeddings and the target (a linear probability model, trained on the training
    groups that hold both values), scored by its within-group AUC on the holdout."""
    rows = informative_rows(y_train, controls_train.groups)
    if not rows.any():
        raise DataError("No training group holds both values of the target; nothing can be compared within them")
    design = controls_train.rows(rows)
    model, alpha = _ridge(residualise(X_train[rows], design), residualise(y_train[rows], design), design.groups)
    score = model.predict(residualise(X_hold, controls_hold))
    return {
        "metric": "auc",
        "value": within_group_auc(y_hold, score, controls_hold.groups),
        "model": "ridge within groups",
        "alpha": alpha,
    }


def _matrix_and_target(X, y, part: str) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=np.float64)
    y = one_column(y, f"The {part} target").astype(np.float64)
    if X.ndim != 2:
        raise DataError(f"The {part} embeddings must be a 2-D matrix, got shape {X.shape}")
    if len(X) != len(y):
        raise DataError(f"The {part} embeddings have {len(X)} rows but the target has {len(y)}")
    if len(y) < 2 or not np.isfinite(X).all() or not np.isfinite(y).all():
        raise DataError(f"The {part} embeddings or target are empty or contain NaN/infinite values")
    return X, y
