"""Small helpers shared by the dashboard pages: workspace picking, cached loading, progress bars,
error display, and the few table shapings the pages need. No heavy maths here."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import streamlit as st

from .errors import HsaeError
from .workspace import MANIFEST, Workspace, list_workspaces, workspaces_dir

SNIPPET = 300


def snippet(text: str, limit: int = SNIPPET) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _stamp(path: Path) -> float:
    """Changes when the workspace is rebuilt, so cached objects are reloaded."""
    try:
        return (path / MANIFEST).stat().st_mtime
    except OSError:
        return 0.0


@st.cache_resource(show_spinner="Opening workspace…", max_entries=4)
def _open(path: str, stamp: float) -> Workspace:
    ws = Workspace.open(path)
    # Touch the heavy parts once so that no page rerun pays for them.
    _ = ws.frame, ws.codes, ws.features, ws.sae
    return ws


@st.cache_resource(show_spinner="Loading search index…", max_entries=4)
def _search(path: str, stamp: float):
    from .search import SteeredSearch

    ws = _open(path, stamp)
    return SteeredSearch(np.asarray(ws.embeddings), ws.sae, ws.codes, index=ws.index)


@st.cache_resource(show_spinner="Indexing features…", max_entries=4)
def _explorer(path: str, stamp: float):
    from .features import FeatureExplorer

    ws = _open(path, stamp)
    return FeatureExplorer(ws.codes, ws.sae.decoder_directions)


@st.cache_resource(show_spinner="Reading the table…", max_entries=2)
def _read_table(path: str, mtime: float, size: int) -> pd.DataFrame:
    from .data import read_table

    return read_table(path)


def read_table_cached(path: str) -> pd.DataFrame:
    """A table on this machine, read once per version of the file (large local tables are not re-read on reruns).

    Callers must not modify the returned frame in place.
    """
    from .errors import DataError

    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"No file at {p}; give the path of a CSV, TSV, JSON, JSONL or Parquet table on this machine")
    stat = p.stat()
    return _read_table(str(p.resolve()), stat.st_mtime, stat.st_size)


def workspace_choices() -> list[Path]:
    """$HSAE_WORKSPACE (one folder) if set, else every workspace under $HSAE_WORKSPACES_DIR (./workspaces)."""
    fixed = os.environ.get("HSAE_WORKSPACE")
    if fixed:
        return [Path(fixed)]
    return list_workspaces(workspaces_dir())


def pick_workspace() -> Optional[Workspace]:
    """Sidebar workspace picker; returns the opened workspace or None (after saying why)."""
    choices = workspace_choices()
    if not choices:
        st.info("No workspace yet. Open the **Overview** page (app) to build the demo workspace or upload a table.")
        return None
    labels = [str(p) for p in choices]
    current = st.session_state.get("workspace_path")
    index = labels.index(current) if current in labels else 0
    chosen = st.sidebar.selectbox("Workspace", labels, index=index, format_func=lambda p: Path(p).name)
    st.session_state["workspace_path"] = chosen
    try:
        return _open(chosen, _stamp(Path(chosen)))
    except HsaeError as exc:
        st.error(str(exc))
        return None


def search_engine(ws: Workspace):
    return _search(str(ws.path), _stamp(ws.path))


def explorer(ws: Workspace):
    return _explorer(str(ws.path), _stamp(ws.path))


def progress_bar(label: str):
    """A ProgressFn drawing a Streamlit progress bar with the step's message."""
    bar = st.progress(0.0, text=label)

    def update(done: int, total: int, message: str = "") -> None:
        frac = 0.0 if total <= 0 else min(max(done / total, 0.0), 1.0)
        bar.progress(frac, text=f"{label}: {message}" if message else label)

    return update, bar


def run_build(name: str, build) -> Optional[Workspace]:
    """Run ``build(progress)`` under a progress bar and open the result; on an HsaeError show one line and
    keep whatever workspace was open (the library never half-replaces one)."""
    progress, bar = progress_bar(f"Building {name}")
    try:
        ws = build(progress)
    except HsaeError as exc:
        st.error(f"Build failed (any previous workspace is unchanged): {exc}")
        return None
    finally:
        bar.empty()
    st.session_state["workspace_path"] = str(ws.path)
    return ws


def feature_name(table: pd.DataFrame, latent: int) -> str:
    return f"#{int(latent)} {table['label'].iloc[int(latent)]}"


def docs_table(ws: Workspace, docs, extra: Optional[dict] = None, columns: Optional[list] = None) -> pd.DataFrame:
    """Documents as a table: doc id, chosen columns, a text snippet, plus extra columns."""
    docs = np.asarray(docs, dtype=np.int64)
    out = pd.DataFrame({"doc": docs})
    for key, values in (extra or {}).items():
        out[key] = list(values)
    for col in columns or []:
        out[col] = ws.frame[col].to_numpy()[docs]
    out["text"] = [snippet(ws.texts[i]) for i in docs]
    return out


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
        out[text_col] = out[text_col].map(snippet)
        return out.reset_index(drop=True)

    return table(present[agrees]), table(present[~agrees])


def api_key_box() -> Optional[str]:
    """An API key from the environment, or typed into a password field (kept in this session only)."""
    if os.environ.get("OPENAI_API_KEY", "").strip():
        st.caption("LLM: using OPENAI_API_KEY from the environment.")
        return os.environ["OPENAI_API_KEY"].strip()
    typed = st.text_input("OpenAI-compatible API key (kept for this browser session only, never saved)",
                          type="password", key="session_api_key")
    return typed.strip() or None


def target_columns(ws: Workspace) -> list[str]:
    """Columns usable as a target: numeric with 2+ values, or categorical with 2..50 values."""
    out = []
    for col in ws.frame.columns:
        if col == ws.text_col:
            continue
        values = ws.frame[col].dropna()
        n_unique = values.nunique()
        numeric = pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)
        if n_unique >= 2 and (numeric or n_unique <= 50):
            out.append(col)
    return out


def split_columns(ws: Workspace, target: str) -> list[str]:
    """Columns that can define the train/holdout split (2..10 distinct values, not the target)."""
    return [c for c in ws.frame.columns
            if c not in (ws.text_col, target) and 2 <= ws.frame[c].nunique() <= 10]


def workspace_split(ws: Workspace, target_col: str, split_col: Optional[str] = None, holdout_value=None,
                    holdout_frac: float = 0.2, seed: int = 0, target_kind: str = "auto"):
    """(train, holdout, X_train, X_hold) for a hypothesis run on this workspace's texts and stored embeddings.

    The holdout is either the rows whose ``split_col`` equals ``holdout_value`` or a random fraction.
    Row ids are positions in the workspace table.
    """
    from .data import prepare_corpus, split_indices
    from .errors import DataError

    corpus = prepare_corpus(ws.frame, ws.text_col, target_col, target_kind)
    if split_col:
        is_hold = (corpus.frame[split_col].astype(str) == str(holdout_value)).to_numpy()
        if is_hold.all() or not is_hold.any():
            raise DataError(f"Splitting on {split_col} = {holdout_value} leaves no rows on one side")
        train_pos, hold_pos = np.flatnonzero(~is_hold), np.flatnonzero(is_hold)
    else:
        train_pos, hold_pos = split_indices(len(corpus), holdout_frac, seed)
    train, hold = corpus.subset(train_pos), corpus.subset(hold_pos)
    E = ws.embeddings
    return train, hold, np.array(E[train.row_ids], dtype=np.float32), np.array(E[hold.row_ids], dtype=np.float32)
