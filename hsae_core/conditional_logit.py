"""Conditional (fixed-effects) logit: which rows of a group have a 0/1 target, given how many do.

For a group whose rows have linear scores s_1..s_n and k of them the target, the chance that it is exactly
the set S is exp(sum of s over S) / e_k(exp s), with e_k the k-th elementary symmetric polynomial of the
exponentiated scores. Anything constant within a group cancels, so a comparison within groups (which arm of
an A/B test came first) cannot be explained by what differs between them.

All groups are computed at once: rows are laid out as groups x positions (padded), and e_k follows the
recursion e_j <- e_j + e_{j-1} * exp(s_t) over the positions, in log space. A group with more positives than
negatives is read through its complement (the rows without the target, scores negated), which gives the same
likelihood with a shorter recursion. The gradient and Hessian are exact (torch autograd, float64).
Groups whose rows all have the target, or none, carry no information and are dropped.

Where every informative group has one row with the target (or one without: which arm came first in its
test), the likelihood is a softmax within each group, whose gradient and Hessian have closed forms; Newton's
method on them needs a handful of passes over the rows instead of a quasi-Newton search through the
recursion.

Where a hypothesis wins (or loses) every comparison it enters within a group, the likelihood keeps rising as
its coefficient grows and no optimum exists. ``penalised_fit`` then adds a log-F(1,1) penalty to each
coefficient, as :mod:`penalised_logit` does for the plain logit, and tests each by a penalised
likelihood-ratio test.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as sps
from scipy.special import expit

from .blas import fit_threads

# log(0) as a finite number: -inf would give NaN gradients through logaddexp(-inf, -inf), and NaN times a
# zero upstream gradient is still NaN
LOG_ZERO = -1e30


@dataclass
class ConditionalFit:
    """Coefficients, their standard errors (inverse information; NaN when not asked for), the log-likelihood
    at the optimum and whether it was reached."""

    coef: np.ndarray
    se: np.ndarray
    loglik: float
    converged: bool


class _Layout:
    """The informative rows as groups x positions arrays (padded), each group's number of positives (after
    reading it through its complement where that is shorter) and the sign its scores take there. Groups are
    bucketed by size and number of positives (powers of two), so one large group pads only its own bucket:
    the recursion costs about the sum over groups of size x positives, not the number of groups times the
    largest of each."""

    def __init__(self, y: np.ndarray, groups: np.ndarray):
        _, g = np.unique(groups, return_inverse=True)
        g = g.ravel()
        positives = np.bincount(g, weights=y)
        sizes = np.bincount(g)
        keep = (positives > 0) & (positives < sizes)
        rows = np.flatnonzero(keep[g])
        _, local = np.unique(g[rows], return_inverse=True)
        local = local.ravel()
        order = np.argsort(local, kind="stable")
        rows, local = rows[order], local[order]
        n_groups = int(local.max(initial=-1)) + 1
        size = np.bincount(local, minlength=n_groups)
        start = np.concatenate([[0], np.cumsum(size)[:-1]])
        position = np.arange(len(rows)) - start[local]
        k = np.bincount(local, weights=y[rows], minlength=n_groups).astype(np.int64)
        flip = k > size - k
        self.sign = np.where(flip, -1.0, 1.0)
        self.k = np.where(flip, size - k, k)
        # per bucket: slot[g, t], which informative row is position t of the bucket's group g (len(rows)
        # where the group is shorter), and each of its groups' number of positives
        self.buckets: list[tuple[np.ndarray, np.ndarray]] = []
        key = np.ceil(np.log2(np.maximum(size, 1))).astype(np.int64) * 64 + np.ceil(np.log2(self.k + 1)).astype(
            np.int64
        )
        for bucket in np.unique(key):
            members = np.flatnonzero(key == bucket)
            index = np.full(n_groups, -1)
            index[members] = np.arange(len(members))
            inside = np.flatnonzero(index[local] >= 0)
            slot = np.full((len(members), int(size[members].max())), len(rows), dtype=np.int64)
            slot[index[local[inside]], position[inside]] = inside
            self.buckets.append((slot, self.k[members]))
        # the rows that count as "with the target" once a flipped group is read through its complement
        self.chosen = np.where(flip[local], 1.0 - y[rows], y[rows])
        self.rows, self.local = rows, local
        self.n_groups = n_groups
        self.starts = start


def _softmax_parts(beta: np.ndarray, Xs: np.ndarray, layout: _Layout, chosen_sum: np.ndarray, indicator):
    """Minus the log-likelihood where each group has one chosen row (a softmax within the group), its gradient
    and its Hessian, in closed form. ``Xs`` holds the informative rows, signed as the layout reads them;
    ``chosen_sum`` is the sum of the chosen rows of ``Xs``; ``indicator`` is the sparse groups x rows 0/1
    matrix that sums rows by group."""
    z = Xs @ beta
    top = np.maximum.reduceat(z, layout.starts)
    weight = np.exp(z - top[layout.local])
    total = np.add.reduceat(weight, layout.starts)
    value = float((top + np.log(total)).sum() - chosen_sum @ beta)
    prob = weight / total[layout.local]  # each row's chance of being its group's chosen one
    weighted = Xs * prob[:, None]
    grad = weighted.sum(axis=0) - chosen_sum
    # the covariance of the rows' features under each group's softmax, summed over groups
    mean = indicator @ weighted
    return value, grad, weighted.T @ Xs - mean.T @ mean


def _log_f_penalty(beta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Minus the log-F(1,1) log-density of each coefficient, summed (b/2 - log(1 + e^b), negated), with its
    gradient and the diagonal of its Hessian."""
    prob = expit(beta)
    return float((np.logaddexp(0.0, beta) - beta / 2).sum()), prob - 0.5, prob * (1 - prob)


def _fit_one_chosen(Xs: np.ndarray, layout: _Layout, standard_errors: bool, penalised: bool) -> ConditionalFit:
    """Newton's method with step halving on the closed-form softmax likelihood (it is concave, so this reaches
    its optimum wherever one exists); converged when the Newton decrement is negligible. ``penalised``: with
    the log-F(1,1) penalty on each coefficient (the optimum then always exists)."""
    import scipy.sparse as sp

    p = Xs.shape[1]
    nan = np.full(p, np.nan)
    indicator = sp.csr_matrix(
        (np.ones(len(layout.local)), (layout.local, np.arange(len(layout.local)))),
        shape=(layout.n_groups, len(layout.local)),
    )
    chosen_sum = Xs[layout.chosen == 1].sum(axis=0)

    def parts(b):
        value, grad, hessian = _softmax_parts(b, Xs, layout, chosen_sum, indicator)
        if penalised:
            extra, extra_grad, extra_curvature = _log_f_penalty(b)
            value, grad, hessian = value + extra, grad + extra_grad, hessian + np.diag(extra_curvature)
        return value, grad, hessian

    beta = np.zeros(p)
    value, grad, hessian = parts(beta)
    converged = False
    for _ in range(100):
        # least squares, not solve: a column that never varies within a group has no curvature, and its
        # coefficient should stay where it started (as the quasi-Newton search leaves it) instead of drifting
        step = np.linalg.lstsq(hessian, grad, rcond=1e-10)[0]
        decrement = float(grad @ step)
        if not np.isfinite(decrement) or decrement < 0:
            break
        if decrement / 2 < 1e-12:
            converged = True
            break
        size = 1.0
        while size > 1e-10:  # halve until the step gains what its slope promises (Armijo)
            trial = parts(beta - size * step)
            if trial[0] <= value - 0.25 * size * decrement:
                break
            size /= 2
        else:
            break
        beta = beta - size * step
        value, grad, hessian = trial
    if not standard_errors:
        return ConditionalFit(beta, nan, -value, converged)
    if np.linalg.matrix_rank(hessian) < p:  # singular information: no coefficient is identified alone
        return ConditionalFit(nan, nan.copy(), float("nan"), False)
    se = np.sqrt(np.clip(np.diag(np.linalg.inv(hessian)), 0, None)) if converged else nan
    return ConditionalFit(beta, se, -value, converged)


def _logaddexp(a, b):
    """log(exp a + exp b) with finite first and second derivatives everywhere (torch's own gives NaN second
    derivatives where the two are far apart, as they are beside ``LOG_ZERO``)."""
    import torch

    return torch.maximum(a, b) + torch.log1p(torch.exp(-torch.abs(a - b)))


def _negative_loglik(beta, X, layout: _Layout):
    import torch

    score = X @ beta  # (informative rows,)
    signed = score * torch.as_tensor(layout.sign[layout.local])
    chosen_sum = (signed * torch.as_tensor(layout.chosen)).sum()
    with_pad = torch.cat([signed, torch.full((1,), LOG_ZERO, dtype=torch.float64)])
    denominator = 0.0
    for slot, k in layout.buckets:
        slot = torch.as_tensor(slot)
        present = slot < len(layout.rows)
        padded = with_pad[slot]
        log_e = torch.full((len(k), int(k.max()) + 1), LOG_ZERO, dtype=torch.float64)
        log_e[:, 0] = 0.0
        for t in range(slot.shape[1]):
            step = _logaddexp(log_e[:, 1:], log_e[:, :-1] + padded[:, t : t + 1])
            step = torch.where(present[:, t : t + 1], step, log_e[:, 1:])
            log_e = torch.cat([log_e[:, :1], step], dim=1)
        denominator = denominator + log_e.gather(1, torch.as_tensor(k)[:, None]).sum()
    return denominator - chosen_sum


@fit_threads()
def fit(
    X: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    standard_errors: bool = True,
    penalised: bool = False,
    _recursion: bool = False,
) -> ConditionalFit:
    """The conditional logit of 0/1 ``y`` on the columns of ``X`` within ``groups`` (no intercept: the groups
    hold it). Returns :class:`ConditionalFit`; ``converged`` is False where the optimum was not reached (e.g.
    separation within groups), and coefficients are NaN where the information matrix is singular (a column
    that never varies within a group that holds both values). Without ``standard_errors`` (what a
    cross-validation fold needs) the exact Hessian is skipped and the SEs are NaN. ``_recursion`` forces the
    general path where the closed-form softmax would do (to compare the two). ``penalised``: maximise the
    log-likelihood plus a log-F(1,1) log-density for each coefficient (``loglik`` is then that sum)."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    layout = _Layout(y, np.asarray(groups))
    p = X.shape[1]
    nan = np.full(p, np.nan)
    if layout.n_groups == 0 or p == 0:
        return ConditionalFit(nan, nan.copy(), float("nan"), False)
    if layout.k.max() == 1 and not _recursion:
        return _fit_one_chosen(X[layout.rows] * layout.sign[layout.local][:, None], layout, standard_errors, penalised)
    import torch
    from scipy.optimize import minimize

    Xt = torch.as_tensor(X[layout.rows])

    def objective(b):
        value = _negative_loglik(b, Xt, layout)
        if penalised:  # minus the log-F(1,1) log-density of each coefficient
            value = value + (torch.nn.functional.softplus(b) - b / 2).sum()
        return value

    def value_and_gradient(b: np.ndarray):
        b = torch.tensor(b, dtype=torch.float64, requires_grad=True)
        value = objective(b)
        (grad,) = torch.autograd.grad(value, b)
        return float(value.detach()), grad.numpy()

    # Quasi-Newton on the exact gradient (a few milliseconds per call); the Hessian, p backward passes, is
    # formed once at the end, for the standard errors and one Newton step that polishes the optimum.
    found = minimize(value_and_gradient, np.zeros(p), jac=True, method="BFGS", options={"gtol": 1e-9, "maxiter": 1000})
    beta = found.x
    value, grad = value_and_gradient(beta)
    if not standard_errors or not np.isfinite(beta).all():
        return ConditionalFit(beta, nan.copy(), -value, bool(found.success))
    hessian = torch.autograd.functional.hessian(objective, torch.as_tensor(beta)).numpy()
    try:
        step = np.linalg.solve(hessian, grad)
        cov = np.linalg.inv(hessian)
    except np.linalg.LinAlgError:
        return ConditionalFit(nan, nan.copy(), float("nan"), False)
    # Newton decrement: how far (second order) the log-likelihood is from its optimum, whatever the scale of n
    converged = bool(0 <= float(grad @ step) / 2 < 1e-6)
    if converged:
        beta = beta - step
        value = value_and_gradient(beta)[0]
    return ConditionalFit(beta, np.sqrt(np.clip(np.diag(cov), 0, None)), -value, converged)


def penalised_fit(X: np.ndarray, y: np.ndarray, groups: np.ndarray) -> tuple[ConditionalFit, np.ndarray]:
    """(The log-F(1,1)-penalised conditional logit, each coefficient's p-value): a penalised likelihood-ratio
    test of each against the fit with it held at 0 (its column zeroed, which the penalty then holds at 0),
    since Wald tests are at their worst where a coefficient would run off without the penalty."""
    full = fit(X, y, groups, penalised=True)
    p = np.full(X.shape[1], np.nan)
    if not (full.converged and np.isfinite(full.coef).all()):
        return full, p
    for j in range(X.shape[1]):
        held = np.array(X, dtype=np.float64, copy=True)
        held[:, j] = 0.0
        without = fit(held, y, groups, standard_errors=False, penalised=True)
        if without.converged:
            p[j] = float(sps.chi2.sf(max(2.0 * (full.loglik - without.loglik), 0.0), df=1))
    return full, p
