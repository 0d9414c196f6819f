"""Evidence for a hypothesis: the holdout documents where it is present, strongest first, on the side of the
target it predicts (supporting) and on the other side (counterexamples).

"Strongest" is the hypothesis latent's activation under the SAE the run used; the target side comes from
the run's stored holdout target (the ``target`` column of ``holdout_annotations.parquet``), so the
evidence agrees with the statistics in the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .errors import DataError
from .splits import group_codes
from .stats import pair_counts, predicted_sign

EVIDENCE_COLUMNS = ("doc", "activation", "text")
BEYOND = "beyond the controls"  # the column of what the controls leave of the target, in a run adjusted for some


def run_sae(run):
    """The SAE a run used (a reopened run loads it from disk: its ``sae/`` folder or its workspace's SAE)."""
    if run.sae is None:
        raise DataError("This run kept no SAE, so its activations cannot be recomputed")
    return run.sae


def holdout_codes(run, embeddings) -> sp.csr_matrix:
    """SAE codes of the run's holdout rows, in the row order of its annotations.

    ``embeddings`` has one row per row of the table the holdout came from (e.g. a workspace's embeddings).
    """
    row_ids = run.annotations["row_id"].to_numpy(dtype=np.int64)
    if len(row_ids) and (row_ids.min() < 0 or row_ids.max() >= len(embeddings)):
        raise DataError("The run's holdout rows do not fit these embeddings (was it run on another table?)")
    X = np.asarray(embeddings[np.sort(row_ids)], dtype=np.float32)
    codes = run_sae(run).transform(X)
    return codes[np.argsort(np.argsort(row_ids))]  # back to annotation order


def _target_side(run, row: pd.Series, frame: pd.DataFrame, left=None) -> tuple[np.ndarray, np.ndarray]:
    """(on the predicted side, on the other side) masks over the annotation rows, from the stored target.

    Binary / one class of a multiclass target: positive class vs the rest. Continuous: above vs below the
    holdout mean (rows exactly at the mean count for neither side), or with ``left`` (:func:`target_left`)
    above vs below what the controls predict.
    """
    ann = run.annotations
    target = run.summary.get("target", {})
    kind, classes = target.get("kind"), target.get("classes") or []
    if "target" in ann.columns:
        y = ann["target"].to_numpy(dtype=np.float64)
    else:  # runs written before the target was stored: read it back from the table
        raw = frame[target.get("column")].iloc[ann["row_id"].to_numpy(dtype=np.int64)]
        if kind == "continuous":
            y = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
        else:
            index = {str(c): i for i, c in enumerate(classes)}
            y = raw.astype(str).map(index).to_numpy(dtype=np.float64)
    if left is not None:
        y = left  # what the controls leave: above or below what they predict for that document
    if kind == "multiclass":
        names = [str(c) for c in classes]
        cls = str(row.get("class"))
        high = y == (names.index(cls) if cls in names else -1)
        low = ~high
    elif kind == "binary":
        high, low = y == 1, y == 0
    else:
        centre = 0.0 if left is not None else np.nanmean(y)
        high, low = y > centre, y < centre
    if _direction(run, row) < 0:
        high, low = low, high
    return high, low


def _direction(run, row: pd.Series) -> float:
    """The side a hypothesis predicts: the sign of its difference, or beyond controls of its coefficient."""
    coef = row.get("coef") if run.summary.get("controls") else None
    return predicted_sign(coef, row.get("separation"))


def target_left(run, frame: pd.DataFrame, y=None) -> Optional[np.ndarray]:
    """For a continuous run adjusted for columns: what the controls leave of each holdout row's target (in the
    annotations' row order; ``y`` the stored target), so that a document's side is read as the run read it,
    e.g. above or below its own A/B test's mean. None for other runs, or where the holdout rows alone cannot
    carry the controls (a control with one value there)."""
    from .controls import fit_controls, residualise

    summary = run.summary
    columns = (summary.get("controls") or {}).get("columns") or []
    target = summary.get("target") or {}
    if not columns or target.get("kind") != "continuous" or not set(columns) <= set(frame.columns):
        return None
    ann = run.annotations
    rows = frame.iloc[ann["row_id"].to_numpy(dtype=np.int64)].reset_index(drop=True)
    if y is None:
        y = ann["target"].to_numpy(dtype=np.float64)
    try:
        controls = fit_controls(rows, columns, text_col=summary.get("text_col"), target_col=target.get("column"))
    except DataError:
        return None
    return residualise(np.asarray(y, dtype=np.float64), controls.design(rows))


def hypothesis_evidence(
    run, frame: pd.DataFrame, text_col: str, row: pd.Series, codes: Optional[sp.csr_matrix] = None, n: int = 5
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(supporting, counterexamples): up to ``n`` holdout documents each where the hypothesis is present.

    Supporting documents have the target on the side the hypothesis predicts; counterexamples on the other
    side. Both are ordered by the hypothesis latent's activation, strongest first (``codes``: holdout codes
    in annotation order, see :func:`holdout_codes`; without them, in holdout order). Columns: ``doc`` (row
    of ``frame``), ``activation``, the target column's value, for a continuous run adjusted for columns
    what they leave of it (:data:`BEYOND`, whose sign is the side), and the full ``text``.
    """
    ann = run.annotations
    target_col = run.summary.get("target", {}).get("column")
    ann_col = row.get("annotation_col")
    if ann_col not in ann.columns:
        ann_col = f"latent_{int(row['latent'])}"
    if ann_col not in ann.columns:
        raise DataError(f"The run has no annotations for hypothesis #{int(row['latent'])}")
    row_ids = ann["row_id"].to_numpy(dtype=np.int64)
    present = (ann[ann_col] == 1).to_numpy() & (row_ids >= 0) & (row_ids < len(frame))
    if codes is not None:
        activation = np.asarray(codes[:, int(row["latent"])].toarray()).ravel()
    else:
        activation = np.full(len(ann), np.nan)
    left = target_left(run, frame) if "target" in ann.columns else None
    high, low = _target_side(run, row, frame, left)

    def table(mask: np.ndarray) -> pd.DataFrame:
        where = np.flatnonzero(mask)
        if codes is not None:
            where = where[np.argsort(-activation[where], kind="stable")]
        where = where[:n]
        docs = row_ids[where]
        out = pd.DataFrame({"doc": docs, "activation": activation[where]})
        if target_col in frame.columns:
            out[target_col] = frame[target_col].to_numpy()[docs]
        if left is not None:  # the side it was read on: e.g. above or below its own A/B test's mean
            out[BEYOND] = left[where]
        out["text"] = frame[text_col].astype(str).to_numpy()[docs]
        return out

    return table(present & high), table(present & low)


@dataclass
class GroupPairs:
    """A hypothesis read within the groups of a run's absorbed column: ``table`` has one row per group (an A/B
    test) with a holdout row where the hypothesis is present beside one where it is not, and how their targets
    went; ``decided`` counts every such pair in the holdout whose targets differ, ``agreeing`` those that went
    the way the hypothesis predicts, and ``groups`` the groups that hold both kinds of row."""

    column: str
    table: pd.DataFrame
    decided: int
    agreeing: int
    groups: int

    @property
    def share(self) -> float:
        return self.agreeing / self.decided if self.decided else float("nan")

    @property
    def number_columns(self) -> list[str]:
        """The target's two columns where they hold numbers (a click rate; not a yes/no)."""
        return [
            c
            for c in self.table.columns[[2, 4]]
            if pd.api.types.is_numeric_dtype(self.table[c]) and not pd.api.types.is_bool_dtype(self.table[c])
        ]


AS_PREDICTED, AGAINST, TIED = "as predicted", "against", "tied"


def within_group_pairs(
    run, frame: pd.DataFrame, text_col: str, row: pd.Series, codes: Optional[sp.csr_matrix] = None, n: int = 5
) -> Optional[GroupPairs]:
    """For a run that compares within the groups of a column (an absorbed control): in each holdout group where
    the hypothesis is present on some rows and absent on others, its strongest row beside a row without it
    (one whose target differs where there is one, the weakest such; ``codes``: holdout codes in annotation
    order, without them the first of each), up to ``n`` groups, decided pairs first and strongest first; and
    over every (present, absent) pair of rows in one group, how often the target went the way the hypothesis
    predicts. None for a run without an absorbed column."""
    column = (run.summary.get("controls") or {}).get("absorbed")
    ann = run.annotations
    ann_col = row.get("annotation_col")
    if not column or column not in frame.columns or "target" not in ann.columns or ann_col not in ann.columns:
        return None
    row_ids = ann["row_id"].to_numpy(dtype=np.int64)
    target = run.summary.get("target", {})
    y = ann["target"].to_numpy(dtype=np.float64)
    if target.get("kind") == "multiclass":
        names = [str(c) for c in target.get("classes") or []]
        y = (y == (names.index(str(row.get("class"))) if str(row.get("class")) in names else -1)).astype(np.float64)
    direction = _direction(run, row)
    present = (ann[ann_col] == 1).to_numpy()
    known = ann[ann_col].notna().to_numpy()  # a row the annotator failed on is neither side
    groups = group_codes(frame[column].to_numpy()[row_ids])  # as the run's controls read them
    decided, agreeing, n_groups = pair_counts((y * direction)[known], present[known], groups[known])
    activation = np.asarray(codes[:, int(row["latent"])].toarray()).ravel() if codes is not None else np.zeros(len(ann))
    rows = pd.DataFrame({"g": groups, "present": present, "activation": activation, "pos": np.arange(len(ann))})
    rows = rows[known]
    share = rows.groupby("g")["present"].transform("mean").to_numpy()
    rows = rows[(share > 0) & (share < 1)]  # groups with the hypothesis on some rows and not on others
    with_it = rows[rows["present"]].sort_values("activation", ascending=False, kind="stable").groupby("g").head(1)
    # beside it, a row without the hypothesis whose target differs where the group has one (a tie says nothing),
    # the one where the feature is weakest; groups whose pair is decided first, strongest first within each
    pairs = with_it.merge(rows[~rows["present"]], on="g", suffixes=("_with", "_without"))
    pairs["decided"] = y[pairs["pos_with"].to_numpy()] != y[pairs["pos_without"].to_numpy()]
    pairs = pairs.sort_values(["decided", "activation_without"], ascending=[False, True], kind="stable")
    pairs = pairs.groupby("g").head(1)
    pairs = pairs.sort_values(["decided", "activation_with"], ascending=[False, False], kind="stable").head(n)
    a, b = pairs["pos_with"].to_numpy(dtype=np.int64), pairs["pos_without"].to_numpy(dtype=np.int64)
    raw = frame[target.get("column")].to_numpy() if target.get("column") in frame.columns else y
    texts = frame[text_col].astype(str).to_numpy()
    gap = direction * (y[a] - y[b])
    table = pd.DataFrame(
        {
            "went": np.where(gap > 0, AS_PREDICTED, np.where(gap < 0, AGAINST, TIED)),
            "with it": texts[row_ids[a]],
            f"{target.get('column')} with": raw[row_ids[a]],
            "without it": texts[row_ids[b]],
            f"{target.get('column')} without": raw[row_ids[b]],
            column: frame[column].astype(str).to_numpy()[row_ids[a]],
        }
    )
    return GroupPairs(str(column), table, decided, agreeing, n_groups)
