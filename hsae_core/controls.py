"""Adjusting for columns ("controls"): what the text says beyond what a date, a field or an A/B test explains.

A citation count depends on a paper's age; a headline's click rate on the story and week it was tested in.
Hypotheses about the text should be tested beyond such columns, or they rediscover them. The columns
are read on the training rows (:func:`fit_controls`) and turned into a design for any split
(:meth:`Controls.design`):

- numbers (and dates, as years) enter as one standardised column; missing values are filled with the
  training mean and flagged by a column of their own;
- categories with at most ``MAX_LEVELS`` values (and numbers that are codes, such as a decision) enter
  as one 0/1 column per value but the most common;
- one column of many values (an A/B test's id, a restaurant) is *absorbed*: every quantity is compared
  within its groups (fixed effects), and standard errors are clustered on it.

Everything downstream uses one operation, :func:`residualise`: a column minus its least-squares fit on
the controls (with an intercept, or within the groups). By Frisch-Waugh-Lovell, a regression on
residualised columns gives the same coefficients as one that includes the controls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .errors import DataError
from .splits import group_codes

MAX_LEVELS = 20  # more values than this and a category is absorbed as groups, not given a column each
MISSING = "(missing)"
ALONE_SHARE = 0.1  # warn when at least this share of holdout rows are alone in their absorbed group


@dataclass
class ControlDesign:
    """The controls of one split: ``matrix`` (rows x columns, standardised numbers and 0/1 values) and
    ``groups`` (an integer group per row for an absorbed column, or None)."""

    matrix: np.ndarray
    groups: Optional[np.ndarray] = None
    names: list[str] = field(default_factory=list)
    _basis: Optional[np.ndarray] = field(default=None, init=False, repr=False, compare=False)  # control_basis's

    def __post_init__(self):
        matrix = np.asarray(self.matrix, dtype=np.float64)
        self.matrix = matrix if matrix.ndim == 2 else matrix.reshape(len(matrix), -1)
        if self.groups is not None:  # any labels -> 0..G-1 with no empty group
            self.groups = np.unique(np.asarray(self.groups), return_inverse=True)[1].ravel()
            if len(self.groups) != len(self.matrix):
                raise DataError(f"The controls have {len(self.matrix)} rows but {len(self.groups)} group labels")

    def rows(self, mask) -> ControlDesign:
        """The design restricted to the rows of ``mask`` (bool or positions); groups renumbered."""
        return ControlDesign(self.matrix[mask], None if self.groups is None else self.groups[mask], self.names)


@dataclass
class _Column:
    name: str
    kind: str  # "number", "date", "levels" or "groups"
    mean: float = 0.0
    sd: float = 1.0
    has_missing: bool = False
    levels: list = field(default_factory=list)  # the values given a column each (all but the most common)
    n_values: int = 0
    n_missing: int = 0  # training rows without a value (of an absorbed column: each a group of its own)


@dataclass
class Controls:
    """Control columns as read on the training rows; :meth:`design` encodes any split the same way."""

    columns: list[_Column]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def absorbed(self) -> Optional[str]:
        """The column whose groups every comparison is made within, or None."""
        return next((c.name for c in self.columns if c.kind == "groups"), None)

    def design(self, frame: pd.DataFrame) -> ControlDesign:
        """The controls of the rows of ``frame`` (a split of the table they were read on)."""
        parts, names, groups = [], [], None
        for col in self.columns:
            values = frame[col.name]
            if col.kind == "groups":
                groups = group_codes(values)  # a row without a value: a group of its own, compared with nothing
                continue
            if col.kind == "levels":
                keys = _level_keys(values)
                for level in col.levels:
                    parts.append((keys == level).to_numpy(dtype=np.float64))
                    names.append(f"{col.name} = {level}")
                continue
            numbers = _as_numbers(values, col.kind)
            missing = np.isnan(numbers)
            parts.append(np.where(missing, 0.0, (numbers - col.mean) / col.sd))
            names.append(col.name)
            if col.has_missing:
                parts.append(missing.astype(np.float64))
                names.append(f"{col.name} {MISSING}")
        matrix = np.column_stack(parts) if parts else np.zeros((len(frame), 0))
        return ControlDesign(matrix, groups, names)

    def describe(self) -> list[str]:
        """One phrase per column: how it is adjusted for."""
        out = []
        for c in self.columns:
            if c.kind == "groups":
                alone = (
                    f"; the {c.n_missing:,} training rows without one are each compared with nothing"
                    if c.n_missing
                    else ""
                )
                out.append(f"{c.name} (compared within each of its {c.n_values:,} values{alone})")
            elif c.kind == "levels":
                out.append(f"{c.name} ({c.n_values} values)")
            else:
                out.append(f"{c.name} ({'a date, in years' if c.kind == 'date' else 'a number'})")
        return out

    def alone_line(self, holdout: ControlDesign, group_col: Optional[str] = None) -> Optional[str]:
        """A warning when many holdout rows are alone in their group of the absorbed column there (compared
        within their group, they test nothing), naming the split that avoids it; None otherwise."""
        if self.absorbed is None or holdout.groups is None or group_col == self.absorbed:
            return None
        sizes = np.bincount(holdout.groups)
        alone = int((sizes[holdout.groups] == 1).sum())
        if alone < ALONE_SHARE * len(holdout.groups):
            return None
        return (
            f"{alone:,} of the {len(holdout.groups):,} holdout rows are the only row of their '{self.absorbed}' "
            f"there, so compared within it they test nothing; a split grouped by '{self.absorbed}' keeps each "
            f"group whole (CLI: --group-col {self.absorbed})"
        )

    def as_dict(self) -> dict:
        return {"columns": self.names, "absorbed": self.absorbed, "described": self.describe()}


def fit_controls(frame: pd.DataFrame, columns, *, text_col: str, target_col: str) -> Optional[Controls]:
    """Read the control ``columns`` on the training rows ``frame``; None when there are none.

    Raises a one-line DataError for a missing column, the text or target itself, free text, a column
    with one value, or more than one many-valued column.
    """
    from .data import require_columns

    columns = [str(c) for c in (columns or ())]
    if not columns:
        return None
    if len(set(columns)) < len(columns):
        raise DataError(f"A control column is named twice: {', '.join(columns)}")
    require_columns(frame, *columns)
    read = []
    for name in columns:
        if name in (text_col, target_col):
            what = "text" if name == text_col else "target"
            raise DataError(f"`{name}` is the {what} column; it cannot also be a control")
        values = frame[name]
        if values.nunique(dropna=False) < 2:
            raise DataError(f"Control `{name}` takes a single value on the training rows, so it adjusts for nothing")
        reading, counts = _reading(values, name)
        if reading in ("number", "date"):
            read.append(_number_column(name, values, reading))
        elif reading == "levels":
            read.append(_Column(name, "levels", levels=list(counts.index[1:]), n_values=len(counts)))
        else:
            n_missing = int(values.isna().sum())
            read.append(_Column(name, "groups", n_values=len(counts) - bool(n_missing), n_missing=n_missing))
    absorbed = [c.name for c in read if c.kind == "groups"]
    if len(absorbed) > 1:
        raise DataError(
            f"Controls {', '.join(absorbed)} each take more than {MAX_LEVELS} values; only one can be absorbed "
            "(compared within); keep the one the texts were grouped by"
        )
    return Controls(read)


def absorbed_control(frame: pd.DataFrame, columns, *, text_col: str, target_col: str) -> Optional[str]:
    """The control among ``columns`` that a run compares within (more than ``MAX_LEVELS`` values on
    ``frame``), or None. Columns that :func:`fit_controls` would refuse are passed over: it refuses them."""
    for name in columns or ():
        if name not in frame.columns or name in (text_col, target_col):
            continue
        try:
            if _reading(frame[name], name)[0] == "groups":
                return str(name)
        except DataError:
            continue
    return None


def _reading(values: pd.Series, name: str) -> tuple[str, Optional[pd.Series]]:
    """How a control column is read: ("number" or "date", None), or ("levels" (a column per value) or
    "groups" (absorbed), the count of each value, the most common first)."""
    from .columns import profile_column
    from .data import holds_codes

    kind = profile_column(values, name).kind
    if kind in ("text", "other"):
        raise DataError(f"Control `{name}` holds free text or nested values; adjust for a number, date or category")
    if kind in ("numeric", "date") and not holds_codes(values):
        return ("date" if kind == "date" else "number"), None
    counts = _level_keys(values).value_counts()
    return ("levels" if len(counts) <= MAX_LEVELS else "groups"), counts


def _number_column(name: str, values: pd.Series, kind: str) -> _Column:
    numbers = _as_numbers(values, kind)
    seen = numbers[~np.isnan(numbers)]
    if len(seen) < 2 or np.ptp(seen) == 0:
        raise DataError(f"Control `{name}` takes a single value on the training rows, so it adjusts for nothing")
    return _Column(name, kind, float(seen.mean()), float(seen.std()), bool(np.isnan(numbers).any()))


def _as_numbers(values: pd.Series, kind: str) -> np.ndarray:
    """Numbers as floats (NaN where missing or unreadable); dates as years (2018.5 is July 2018)."""
    if kind != "date":
        return pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    stamps = pd.to_datetime(values, errors="coerce", utc=True, format="mixed")
    seconds = (stamps - pd.Timestamp("1970-01-01", tz="UTC")).dt.total_seconds()
    return 1970.0 + seconds.to_numpy(dtype=np.float64) / (365.2425 * 86400)


def _level_keys(values: pd.Series) -> pd.Series:
    """Each value as the text a level is named by (whole numbers without ".0"; missing as its own value)."""
    keys = values.map(
        lambda v: str(int(v)) if isinstance(v, (float, np.floating)) and float(v).is_integer() else str(v)
    )
    return keys.where(values.notna(), MISSING)


def residualise(M, design: Optional[ControlDesign]) -> np.ndarray:
    """``M`` (a vector or rows x columns) minus its least-squares fit on the controls: the column means
    (an intercept), or the group means of an absorbed column, and the control columns. Without controls,
    ``M`` centred."""
    M = np.asarray(M, dtype=np.float64)
    flat = M.ndim == 1
    M = M[:, None] if flat else M.copy()
    groups = None if design is None else design.groups
    M = within(M, groups)
    if design is not None and design.matrix.shape[1]:
        basis = control_basis(design)
        M -= basis @ (basis.T @ M)
    return M[:, 0] if flat else M


def nothing_left(y, design: Optional[ControlDesign]) -> bool:
    """Whether the controls (or, without any, the mean) explain ``y`` entirely, up to rounding."""
    y = np.asarray(y, dtype=np.float64)
    left = residualise(y, design)
    return float(left @ left) <= 1e-20 * max(float(y @ y), 1e-300)


def control_basis(design: ControlDesign) -> np.ndarray:
    """An orthonormal basis (rows x r) of the control columns once the intercept or groups are taken out;
    columns that repeat others (or vary only between groups) are dropped. Computed once per design: selection,
    the holdout model, its cross-validation and the ceiling each residualise on it."""
    if design._basis is None:
        C = within(np.asarray(design.matrix, dtype=np.float64), design.groups)
        if C.shape[1]:
            q, r = np.linalg.qr(C)
            scale = np.abs(np.diag(r))
            C = q[:, scale > 1e-8 * max(scale.max(initial=0.0), 1e-300) * np.sqrt(len(C))]
        design._basis = C
    return design._basis


def within(M: np.ndarray, groups: Optional[np.ndarray]) -> np.ndarray:
    """Columns of ``M`` minus their means within each group (one group: the column means)."""
    if groups is None:
        return M - M.mean(axis=0)
    indicator = group_indicator(groups)
    means = (indicator.T @ M) / np.asarray(indicator.sum(axis=0)).ravel()[:, None]
    return M - means[groups]


def group_indicator(groups: np.ndarray) -> sp.csr_matrix:
    """The rows x groups 0/1 matrix of an integer group per row (sparse)."""
    groups = np.asarray(groups, dtype=np.int64)
    n = len(groups)
    return sp.csr_matrix((np.ones(n), (np.arange(n), groups)), shape=(n, int(groups.max(initial=-1)) + 1))


def group_projection(A: sp.spmatrix, groups: Optional[np.ndarray]) -> np.ndarray:
    """||projection of each column of the sparse ``A`` on the group indicators||², i.e. the part of each
    column's sum of squares its group means hold (one group: its mean), without densifying ``A``."""
    A = sp.csc_matrix(A, dtype=np.float64)
    if groups is None:
        sums = np.asarray(A.sum(axis=0)).ravel()
        return sums**2 / max(A.shape[0], 1)
    G = group_indicator(groups)
    sums = sp.csr_matrix(G.T @ A)  # per group, each column's sum
    sizes = np.asarray(G.sum(axis=0)).ravel()
    return np.asarray((sp.diags(1.0 / sizes) @ sums.multiply(sums)).sum(axis=0)).ravel()


def partial_correlations(A: sp.spmatrix, y: np.ndarray, design: Optional[ControlDesign]) -> np.ndarray:
    """Pearson correlation of every column of the sparse ``A`` with ``y`` once the controls are taken out of
    both (partial correlation; without controls, the plain one). Exact, and never forms a dense ``A``: the
    column's residual sum of squares is its sum of squares less what the group means and the control basis
    hold. 0 for a column the controls explain entirely."""
    A = sp.csc_matrix(A, dtype=np.float64)
    left = residualise(y, design)
    groups = None if design is None else design.groups
    basis = control_basis(design) if design is not None and design.matrix.shape[1] else np.zeros((A.shape[0], 0))
    squares = np.asarray(A.multiply(A).sum(axis=0)).ravel()
    held = group_projection(A, groups) + (((A.T @ basis) ** 2).sum(axis=1) if basis.shape[1] else 0.0)
    var = np.clip(squares - held, 0.0, None)
    denom = np.sqrt(var * float(left @ left))
    ok = var > 1e-10 * np.maximum(squares, 1e-300)
    return np.divide(A.T @ left, denom, out=np.zeros(A.shape[1]), where=ok & (denom > 0))
