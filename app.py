"""hsae dashboard: Overview (workspace picker, corpus and SAE summary, new workspace from an upload)."""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import numpy as np
import plotly.express as px
import streamlit as st

from hsae_core import ui
from hsae_core.data import TABLE_SUFFIXES, read_table
from hsae_core.errors import HsaeError
from hsae_core.workspace import DEMO_HELP, build_demo_workspace, build_workspace, workspaces_dir

st.set_page_config(page_title="hsae", layout="wide")
st.title("hsae: Overview")


def build_demo() -> None:
    progress, bar = ui.progress_bar("Building the demo workspace (Yelp reviews)")
    try:
        ws = build_demo_workspace(workspaces_dir(), progress=progress)
    except HsaeError as exc:
        bar.empty()
        st.error(str(exc))
        return
    bar.empty()
    st.session_state["workspace_path"] = str(ws.path)
    st.success(f"Built {ws.name}: {len(ws):,} documents.")


def new_workspace_form() -> None:
    """Upload a table, pick its text column, build a workspace through the same code as `hsae build`."""
    upload = st.file_uploader("Table (CSV, TSV, JSON, JSONL or Parquet)", type=[s[1:] for s in TABLE_SUFFIXES],
                              key="upload")
    if upload is None:
        return
    suffix = Path(upload.name).suffix.lower()
    with tempfile.NamedTemporaryFile(suffix=suffix, delete=False) as fh:
        fh.write(upload.getvalue())
        tmp = fh.name
    try:
        frame = read_table(tmp)
    except HsaeError as exc:
        st.error(f"Could not use {upload.name}: {exc}")
        return
    finally:
        os.unlink(tmp)
    st.write(f"{len(frame):,} rows, columns: {', '.join(map(str, frame.columns))}")
    text_like = [c for c in frame.columns if frame[c].dtype == object] or list(frame.columns)
    text_col = st.selectbox("Text column", text_like, key="new_text_col")
    default_name = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(upload.name).stem) or "workspace"
    name = st.text_input("Workspace name", value=default_name, key="new_name")
    c1, c2 = st.columns(2)
    m = c1.number_input("Features (m)", min_value=8, max_value=16384, value=256, step=8, key="new_m")
    k = c2.number_input("Active per document (k)", min_value=1, max_value=128, value=8, key="new_k")
    if st.button("Build workspace", key="new_build"):
        safe = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "workspace"
        progress, bar = ui.progress_bar(f"Building {safe}")
        try:
            ws = build_workspace(workspaces_dir() / safe, frame=frame, text_col=text_col, m=int(m), k=int(k),
                                 progress=progress, name=name)
        except HsaeError as exc:
            bar.empty()
            st.error(f"Build failed (any previous workspace of that name is unchanged): {exc}")
            return
        bar.empty()
        st.session_state["workspace_path"] = str(ws.path)
        st.success(f"Built {ws.name}: {len(ws):,} documents. Pick it in the sidebar.")


choices = ui.workspace_choices()
if not choices and not st.session_state.get("demo_attempted"):
    # First start: build the demo workspace once per session (it is reused from disk afterwards).
    st.session_state["demo_attempted"] = True
    if os.environ.get("HSAE_DATA_DIR"):
        build_demo()
        choices = ui.workspace_choices()
    else:
        st.error("No workspace yet and no demo data: HSAE_DATA_DIR is not set. " + DEMO_HELP)
elif not choices:
    st.warning("No workspace yet. " + DEMO_HELP)
    if st.button("Try building the demo workspace again"):
        build_demo()

with st.expander("New workspace from a table", expanded=not choices):
    new_workspace_form()

ws = ui.pick_workspace() if ui.workspace_choices() else None
if ws is not None:
    info = ws.overview()
    st.header(info["name"])
    c = st.columns(4)
    c[0].metric("Documents", f"{info['n_docs']:,}")
    c[1].metric("SAE shape", f"m={info['m']}, k={info['k']}")
    c[2].metric("Normalised MSE", f"{info['nmse']:.3f}" if info["nmse"] is not None else "n/a")
    c[3].metric("Dead latents", f"{info['dead_frac']:.1%}")
    st.write(f"**Text column:** `{info['text_col']}` · **Embeddings:** {info['embedding_model']} ({info['dim']}-d) · "
             f"**SAE:** {info['source']} · **Columns:** {', '.join(info['columns'])}")
    density = ws.features["density"].to_numpy()
    alive = density[density > 0]
    fig = px.histogram(x=np.log10(alive) if len(alive) else [], nbins=40,
                       labels={"x": "log10(share of documents where the feature fires)"},
                       title=f"Feature density ({len(alive)} of {len(density)} features ever fire)")
    fig.update_layout(yaxis_title="features", height=320, margin=dict(t=40, b=10))
    st.plotly_chart(fig, key="density_hist")
    st.subheader("Corpus sample")
    st.dataframe(ws.frame.head(20), key="corpus_head")
    st.caption("Pages: Features (browse concepts), Search (steer with sliders), Hypotheses (test against a target), Map.")
