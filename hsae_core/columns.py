"""Which columns of a table can play which role (target, holdout split) in a hypothesis run."""
from __future__ import annotations

import pandas as pd


def target_columns(frame: pd.DataFrame, text_col: str) -> list[str]:
    """Columns usable as a target: numeric with 2+ values, or categorical with 2..50 values."""
    out = []
    for col in frame.columns:
        if col == text_col:
            continue
        values = frame[col].dropna()
        n_unique = values.nunique()
        numeric = pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)
        if n_unique >= 2 and (numeric or n_unique <= 50):
            out.append(col)
    return out


def split_columns(frame: pd.DataFrame, text_col: str, target: str) -> list[str]:
    """Columns that can define the train/holdout split (2..10 distinct values, not the target)."""
    return [c for c in frame.columns if c not in (text_col, target) and 2 <= frame[c].nunique() <= 10]
