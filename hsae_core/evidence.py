"""Evidence for a hypothesis: holdout documents where it is present, on the side of the target it predicts
(supporting) and on the other side (counterexamples)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .interpret import snippet


def hypothesis_evidence(run, frame: pd.DataFrame, text_col: str, row: pd.Series, n: int = 5) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(supporting, counterexamples) holdout documents for one hypothesis of a run.

    Both sets have the hypothesis present; supporting documents have the target on the side the
    hypothesis predicts (above the holdout median, or the positive class, when separation > 0), and
    counterexamples on the other side.
    """
    target = run.summary.get("target", {})
    col, kind = target.get("column"), target.get("kind")
    ann_col = row.get("annotation_col")
    ann = run.annotations
    if ann_col not in ann.columns:
        ann_col = f"latent_{int(row['latent'])}"
    present = ann[ann[ann_col] == 1]["row_id"].to_numpy(dtype=np.int64)
    present = present[(present >= 0) & (present < len(frame))]
    y_all = frame[col]
    hold = ann["row_id"].to_numpy(dtype=np.int64)
    if kind == "multiclass":
        pos = y_all.astype(str) == str(row.get("class"))
        high = pos.to_numpy()
    elif kind == "binary":
        classes = target.get("classes") or sorted(y_all.dropna().unique().tolist())
        high = (y_all.astype(str) == str(classes[-1])).to_numpy()
    else:
        y_num = pd.to_numeric(y_all, errors="coerce")
        high = (y_num > np.nanmedian(y_num.to_numpy()[hold])).to_numpy()
    sep = float(row.get("separation", 0.0) or 0.0)
    agrees = high[present] if sep >= 0 else ~high[present]
    cols = [text_col, col] if col else [text_col]

    def table(rows):
        out = frame.iloc[rows[:n]][cols].copy()
        out.insert(0, "doc", rows[:n])
        out[text_col] = out[text_col].map(lambda t: snippet(t, 300))
        return out.reset_index(drop=True)

    return table(present[agrees]), table(present[~agrees])
