"""Safe train/holdout splits: duplicate texts removed before splitting, groups kept on one side, a check that
the column defining the holdout is not itself associated with the target, and one that random rows do not cut
the rows of one id (a paper's reviews) in two.

Why each matters: a text that appears on both sides leaks the holdout into training; arms of one A/B test
(or reviews of one business) on both sides make the holdout easier than new data; a holdout chosen by an
outcome-related column (``winner = True``) tests the hypotheses on a different population.
"""

from __future__ import annotations

import re
from typing import Optional

import numpy as np
import pandas as pd

from .errors import DataError

_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)
# Below these a difference between training and holdout rows is noise or too small to matter.
ASSOCIATION_P = 0.01
ASSOCIATION_EFFECT = 0.1
# A random split is called leaky when at least this share of the holdout rows has an id (a paper's, an A/B
# test's) that training rows have too. Below it most holdout rows are new units; Yelp's business id reaches
# 0.24 on the 4,000 demo reviews, ICLR 2017 reviews' paper id 0.97, Upworthy's test id 0.996.
SHARED_ID_SHARE = 1 / 3


def text_key(text: str) -> str:
    """A text reduced to its words: case, punctuation and spacing differences do not count."""
    return " ".join(_NON_WORD.sub(" ", str(text).casefold()).split())


def duplicate_mask(texts) -> np.ndarray:
    """True for every text whose :func:`text_key` already appeared earlier (the first occurrence is kept)."""
    keys = pd.Series([text_key(t) for t in texts], dtype=object)
    return keys.duplicated(keep="first").to_numpy()


def repeated_texts(train_texts, hold_texts) -> int:
    """How many holdout texts repeat a training text (up to case, punctuation and spacing)."""
    seen = {text_key(t) for t in train_texts}
    return sum(text_key(t) in seen for t in hold_texts)


def refuse_a_holdout_of_training_texts(repeated: int, n_hold: int) -> None:
    """A holdout table most of whose texts are training texts (the same file given twice) tests nothing."""
    if n_hold and repeated >= 0.5 * n_hold:
        raise DataError(
            f"The holdout table repeats {repeated:,} of its {n_hold:,} texts from the training table (the same "
            "file twice?): a holdout must hold texts the hypotheses were not chosen on; give another table, drop "
            "the copies with `dedupe`, or hold out a share of this one with `holdout_frac`"
        )


def holdout_table_warnings(hold) -> list[str]:
    """Warnings about a separate holdout table: some of its texts repeat training texts."""
    repeated, n = int(hold.counts.get("repeats_training_text", 0)), len(hold)
    if not repeated:
        return []
    return [
        f"{repeated:,} of the holdout's {n:,} texts ({repeated / n:.1%}) repeat a training text: those rows test "
        "what the hypotheses were chosen on (--dedupe drops them)"
    ]


def group_codes(values) -> np.ndarray:
    """One integer per row naming its group (values compared as text), 0..G-1 in order of first appearance; a
    row without a value is in no known group, so it is a group of its own (in a grouped split, a controls'
    absorbed column, a ceiling's folds and the evidence's pairs alike)."""
    values = pd.Series(values).reset_index(drop=True)
    codes = pd.factorize(values.astype(str).where(values.notna(), None), use_na_sentinel=True)[0].astype(np.int64)
    missing = codes < 0
    codes[missing] = codes.max(initial=-1) + 1 + np.arange(int(missing.sum()))
    return codes


def grouped_split(groups, holdout_frac: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train positions, holdout positions), sorted, with every group entirely on one side.

    Groups are drawn in a seeded random order until the holdout holds about ``holdout_frac`` of the rows;
    a missing group value counts as a group of its own row.
    """
    if not 0.0 < holdout_frac < 1.0:
        raise DataError(f"`holdout_frac` must be between 0 and 1, got {holdout_frac}")
    codes = group_codes(groups)
    n = len(codes)
    n_groups = int(codes.max(initial=-1)) + 1
    if n_groups < 2:
        raise DataError("The `group_col` column has a single group; a grouped split needs at least two")
    sizes = np.bincount(codes, minlength=n_groups)
    order = np.random.default_rng(seed).permutation(n_groups)
    filled = np.cumsum(sizes[order])
    n_take = int(np.argmin(np.abs(filled - holdout_frac * n))) + 1
    n_take = min(max(n_take, 1), n_groups - 1)
    is_hold = np.isin(codes, order[:n_take])
    return np.flatnonzero(~is_hold), np.flatnonzero(is_hold)


def holdout_association(y: np.ndarray, is_hold: np.ndarray, kind: str) -> dict:
    """How different the target is on holdout rows vs training rows.

    Continuous: Welch's t-test and the standardised mean difference (``effect``); binary/multiclass: a
    chi-square test of the class counts and Cramér's V (``effect``). ``associated`` is True when the
    difference is both clear (p < 0.01) and not tiny (effect >= 0.1).
    """
    from scipy import stats as sps

    y = np.asarray(y)
    is_hold = np.asarray(is_hold, dtype=bool)
    hold, train = y[is_hold], y[~is_hold]
    if len(hold) < 2 or len(train) < 2:
        return {"associated": False, "p": float("nan"), "effect": float("nan")}
    if kind == "continuous":
        hold, train = hold.astype(float), train.astype(float)
        pooled = np.sqrt((hold.var(ddof=1) + train.var(ddof=1)) / 2)
        effect = float(abs(hold.mean() - train.mean()) / pooled) if pooled > 0 else 0.0
        p = float(sps.ttest_ind(hold, train, equal_var=False).pvalue) if pooled > 0 else 1.0
        out = {"hold_mean": float(hold.mean()), "train_mean": float(train.mean())}
    else:
        classes = np.unique(y)
        table = np.array([[np.sum(part == c) for c in classes] for part in (hold, train)])
        table = table[:, table.sum(0) > 0]
        if table.shape[1] < 2:
            return {"associated": False, "p": 1.0, "effect": 0.0}
        chi2, p, _, _ = sps.chi2_contingency(table, correction=False)
        effect = float(np.sqrt(chi2 / table.sum()))  # Cramér's V with two rows
        p = float(p)
        out = {
            "hold_rates": (table[0] / table[0].sum()).round(3).tolist(),
            "train_rates": (table[1] / table[1].sum()).round(3).tolist(),
        }
    return {"associated": bool(p < ASSOCIATION_P and effect >= ASSOCIATION_EFFECT), "p": p, "effect": effect, **out}


def association_warning(
    y: np.ndarray, is_hold: np.ndarray, kind: str, split_col: str, holdout_value, target_col: str
) -> Optional[str]:
    """One sentence when choosing the holdout by ``split_col`` = ``holdout_value`` also selects on the target."""
    from .stats import format_p

    a = holdout_association(y, is_hold, kind)
    if not a["associated"]:
        return None
    if kind == "continuous":
        detail = f"mean {a['hold_mean']:.4g} on the holdout vs {a['train_mean']:.4g} on the training rows"
    else:
        detail = f"class shares {a['hold_rates']} on the holdout vs {a['train_rates']} on the training rows"
    return (
        f"The holdout ({split_col} = {holdout_value}) differs from the training rows in '{target_col}' "
        f"({detail}, p {format_p(a['p'])}): the column that defines the holdout is associated with the target, "
        "so the hypotheses are trained on one population and tested on another. Prefer a random or grouped split."
    )


def shared_id_warning(train_frame: pd.DataFrame, hold_frame: pd.DataFrame) -> Optional[str]:
    """One sentence when random rows split an id column's units (a paper and its reviews, an A/B test and its
    arms) between the two sides, i.e. when at least a third of the holdout rows share an id with training rows.
    Every such id is named, the one most holdout rows share first."""
    from .columns import profile_columns

    n_hold = len(hold_frame)
    leaks = []
    for col, profile in profile_columns(pd.concat([train_frame, hold_frame], ignore_index=True)).items():
        if profile.kind != "id" or not n_hold:
            continue
        values = hold_frame[col]
        try:
            shared = int((values.notna() & values.isin(set(train_frame[col].dropna()))).sum())
        except TypeError:  # unhashable cells
            continue
        if shared >= SHARED_ID_SHARE * n_hold:
            leaks.append((-shared, str(col)))
    if not leaks:
        return None
    leaks = [(-neg, col) for neg, col in sorted(leaks)]

    def share(n: int) -> str:
        return f"{n / n_hold:.0%}" if n / n_hold < 0.995 else "nearly all"

    (shared, col), others = leaks[0], leaks[1:]
    more = "".join(f"; {n:,} ({share(n)}) their '{c}'" for n, c in others)
    alternatives = "".join(f" or {c}" for _, c in others)
    return (
        f"{shared:,} of the {n_hold:,} holdout rows ({share(shared)}) share their '{col}' with training rows{more}: "
        "the holdout tests the hypotheses on the units they were chosen on, not on new ones. "
        f"Keep each {col} on one side with a split grouped by {col}{alternatives} (CLI: --group-col {col})."
    )


def split_warnings(train, hold, config) -> list[str]:
    """Warnings about a (train, holdout) split made by :func:`hsae_core.pipeline.load_split` with ``config``."""
    if not getattr(config, "split_col", None) and not getattr(config, "group_col", None):
        message = shared_id_warning(train.frame, hold.frame)
        return [message] if message else []
    if not getattr(config, "split_col", None) or train.y is None or hold.y is None:
        return []
    y = np.concatenate([np.asarray(train.y), np.asarray(hold.y)])
    is_hold = np.r_[np.zeros(len(train), bool), np.ones(len(hold), bool)]
    message = association_warning(
        y, is_hold, train.target_kind, config.split_col, config.holdout_value, train.target_col
    )
    return [message] if message else []
