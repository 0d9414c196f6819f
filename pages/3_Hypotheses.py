"""Hypotheses: pick a target column and settings, run the method with a progress bar, browse the results."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

import ui
from hsae_core.columns import split_columns, target_columns
from hsae_core.errors import HsaeError
from hsae_core.evidence import hypothesis_evidence
from hsae_core.llm import LLMClient
from hsae_core.pipeline import TABLE_COLUMNS, HypothesisConfig, load_run
from hsae_core.settings import ANNOTATORS, INTERPRETERS, SELECT_METHODS

st.set_page_config(page_title="hsae: Hypotheses", layout="wide")
st.title("Hypotheses")
ws = ui.pick_workspace()
if ws is None:
    st.stop()


@st.cache_resource(max_entries=16, show_spinner=False)
def open_run(path: str, stamp: float):
    return load_run(path)


targets = target_columns(ws.frame, ws.text_col)
if not targets:
    st.error("This workspace has no column that can be a target (numeric, binary or categorical with 2+ values).")
    st.stop()

with st.container(border=True):
    c1, c2, c3 = st.columns(3)
    target = c1.selectbox("Target column", targets, index=targets.index("stars") if "stars" in targets else 0,
                          key="hyp_target")
    values = ws.frame[target].dropna()
    target_class = None
    if values.dtype == object and values.nunique() > 2:
        choice = c1.selectbox("Class (one-vs-rest)", ["every class"] + sorted(values.astype(str).unique()),
                              key="hyp_class")
        target_class = None if choice == "every class" else choice
    split_cols = split_columns(ws.frame, ws.text_col, target)
    split_mode = c2.radio("Holdout", (["by column"] if split_cols else []) + ["random fraction"], key="hyp_split")
    split_col = holdout_value = None
    frac = 0.2
    if split_mode == "by column":
        split_col = c2.selectbox("Split column", split_cols, key="hyp_split_col",
                                 index=split_cols.index("split") if "split" in split_cols else 0)
        opts = sorted(ws.frame[split_col].dropna().astype(str).unique())
        holdout_value = c2.selectbox("Holdout rows are those equal to", opts,
                                     index=opts.index("holdout") if "holdout" in opts else len(opts) - 1,
                                     key="hyp_holdout_value")
    else:
        frac = c2.slider("Holdout fraction", 0.1, 0.5, 0.2, 0.05, key="hyp_frac")
    method = c3.selectbox("Selection", SELECT_METHODS, key="hyp_method")
    n = int(c3.number_input("Hypotheses (n)", 1, 100, HypothesisConfig.n, key="hyp_n"))
    d1, d2, d3 = st.columns(3)
    # Hypotheses use the workspace's own SAE, so each one is a feature of the Features page.
    d1.caption(f"SAE: this workspace's ({ws.overview()['m']} features, k={ws.overview()['k']})")
    interpreter = d2.selectbox("Interpreter", INTERPRETERS, key="hyp_interp")
    annotator = d3.selectbox("Annotator", ANNOTATORS, key="hyp_annot")
    api_key = ui.api_key_box()
    submitted = st.button("Run", type="primary", key="hyp_run")

if submitted:
    needs_llm = "llm" in (interpreter, annotator)
    try:
        client = None
        if needs_llm:
            # Never written to disk: the key lives only in this session's memory.
            client = LLMClient(api_key=api_key) if api_key else LLMClient()
        config = HypothesisConfig(select=method, n=n, interpreter=interpreter, annotator=annotator,
                                  target_class=target_class, holdout_frac=frac, split_col=split_col,
                                  holdout_value=holdout_value)
        progress, bar = ui.progress_bar(f"Generating hypotheses for '{target}'")
        out_dir = ws.new_run_dir(target)
        run = ws.hypothesize(target, config, out_dir=out_dir, progress=progress, llm_client=client)
        bar.empty()
        st.session_state["run_path"] = str(out_dir)
    except HsaeError as exc:
        st.error(str(exc))

runs = ws.list_runs()
if not runs:
    st.info("No runs yet for this workspace: choose a target and press Run.")
    st.stop()
paths = [str(r["path"]) for r in runs]
current = st.session_state.get("run_path")
labels = {str(r["path"]): f"{r['id']} · target {r['summary'].get('target', {}).get('column')}" for r in runs}
chosen = st.selectbox("Past runs of this workspace", paths, index=paths.index(current) if current in paths else 0,
                      format_func=labels.get, key="hyp_run_pick")
st.session_state["run_path"] = chosen
try:
    run = open_run(chosen, Path(chosen, "summary.json").stat().st_mtime)
except (HsaeError, OSError) as exc:
    st.error(str(exc))
    st.stop()

summary = run.summary
tgt = summary.get("target", {})
st.subheader(f"Results: target '{tgt.get('column')}' ({tgt.get('kind')})")
for name, metrics in summary.get("metrics", {}).items():
    shown = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if shown:
        cols = st.columns(min(len(shown), 5))
        for col, (key, value) in zip(cols, list(shown.items())[:5]):
            col.metric(f"{name}: {key}" if name != "overall" else key,
                       f"{value:,}" if isinstance(value, int) else f"{value:.3f}")
st.caption(f"Interpreter: {summary.get('interpreter')} · annotator: {summary.get('annotator')}"
           + (" (offline: a hypothesis is 'present' where its feature fires)" if summary.get("offline_annotation") else ""))
table = run.table
show_cols = [c for c in ["class"] + TABLE_COLUMNS if c in table.columns]
event = st.dataframe(table[show_cols].round(4), key="hyp_table", on_select="rerun", selection_mode="single-row",
                     hide_index=True)
st.download_button("Download CSV", table.to_csv(index=False).encode(), file_name="hypotheses.csv",
                   mime="text/csv", key="hyp_download")
picked = event.selection.rows if event is not None and hasattr(event, "selection") else []
row_index = st.selectbox("Evidence for hypothesis", list(range(len(table))), index=picked[0] if picked else 0,
                         format_func=lambda i: f"{table['hypothesis'].iloc[i]} (#{int(table['latent'].iloc[i])})",
                         key=f"hyp_evidence_{chosen}_{picked[0] if picked else 'none'}")
row = table.iloc[row_index]
supporting, counter = hypothesis_evidence(run, ws.frame, ws.text_col, row)
left, right = st.columns(2)
with left:
    st.subheader("Supporting holdout documents")
    st.dataframe(supporting, key="hyp_support", hide_index=True)
with right:
    st.subheader("Counterexamples (present, target on the other side)")
    st.dataframe(counter, key="hyp_counter", hide_index=True)
