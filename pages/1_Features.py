"""Features: a searchable, sortable table of every latent and one feature's page."""
from __future__ import annotations

import plotly.express as px
import streamlit as st

import ui
from hsae_core import settings
from hsae_core.errors import HsaeError
from hsae_core.features import numeric_target, search_features, text_features
from hsae_core.labelsets import low_fidelity, trusted

st.set_page_config(page_title="hsae: Features", layout="wide")
st.title("Features")
ws = ui.pick_workspace()
if ws is None:
    st.stop()
fx = ui.explorer(ws)
table = ui.feature_table(ws).copy()
other_cols = [c for c in ws.frame.columns if c != ws.text_col]

# ---- the table of all latents
c1, c2, c3 = st.columns([2, 1, 1])
query = c1.text_input("Search labels and keywords", key="feat_query")
corr_col = c2.selectbox("Correlate with column", ["(none)"] + other_cols, key="feat_corr_col")
corr_value = None
if corr_col != "(none)" and ws.frame[corr_col].nunique() <= 50 and ws.frame[corr_col].dtype == object:
    corr_value = c3.selectbox("…equal to", sorted(ws.frame[corr_col].dropna().astype(str).unique()), key="feat_corr_val")
if corr_col != "(none)":
    try:
        table[f"corr({corr_col})"] = fx.correlations(numeric_target(ws.frame[corr_col], corr_value))
    except HsaeError as exc:
        st.warning(str(exc))
shown = search_features(table, query, limit=len(table)) if query.strip() else table
fidelity_filter = c1.selectbox("Label fidelity", ["all labels", "low fidelity only", "trusted only"],
                               key="feat_fidelity", help="Low: held-out AUC under "
                               f"{settings.LABELS.low_fidelity_auc} (or LLM-judged F1 under {settings.LABELS.refine_f1_bar})")
if fidelity_filter != "all labels":
    shown = shown[low_fidelity(shown) if fidelity_filter == "low fidelity only" else trusted(shown)]
if query.strip() and shown.empty:
    st.info(f"No feature label or keyword contains '{query}'.")
cols = ["latent", "label", "fidelity_auc", "fidelity_f1", "density", "mean_activation", "max_activation", "keywords"] + \
       [c for c in shown.columns if c.startswith("corr(")]
event = st.dataframe(shown[cols], key="feature_table", on_select="rerun", selection_mode="single-row",
                     hide_index=True, height=300)
st.caption(f"{len(shown)} of {len(table)} features · labels: {table['label_method'].iloc[0]} · click a row to open it")
ui.relabel_control(ws)
picked = event.selection.rows if event is not None and hasattr(event, "selection") else []
if picked:
    st.session_state["feature_id"] = int(shown.iloc[picked[0]]["latent"])
default = int(st.session_state.get("feature_id", int(table.sort_values("n_active", ascending=False)["latent"].iloc[0])))
latent = int(st.number_input("Open feature #", min_value=0, max_value=len(table) - 1, value=default, key="feature_open"))
st.session_state["feature_id"] = latent

# ---- one feature's page
row = table.iloc[latent]
st.header(f"Feature #{latent}: {row['label']}")
st.caption(f"Label made by: {row['label_method']}{ui.fidelity_note(row)} · keywords: {row['keywords'] or '—'}")
m1, m2, m3 = st.columns(3)
m1.metric("Share of documents where it fires", f"{row['density']:.2%}")
m2.metric("Mean activation (when active)", f"{row['mean_activation']:.3f}")
m3.metric("Max activation", f"{row['max_activation']:.3f}")

page = fx.page(latent)
left, right = st.columns(2)
with left:
    st.subheader("Top-activating documents")
    top = page["top"]
    st.dataframe(ui.docs_table(ws, top["doc"], {"activation": top["activation"].round(3)}), key="top_docs",
                 hide_index=True)
    st.subheader("Documents from lower activation quantiles")
    q = page["quantiles"]
    st.dataframe(ui.docs_table(ws, q["doc"], {"band": q["band"], "activation": q["activation"].round(3)}),
                 key="quantile_docs", hide_index=True)
with right:
    counts, edges = page["histogram"]
    if len(counts):
        fig = px.bar(x=(edges[:-1] + edges[1:]) / 2, y=counts, labels={"x": "activation", "y": "documents"},
                     title="Activation histogram (active documents)")
        fig.update_layout(height=280, margin=dict(t=40, b=10))
        st.plotly_chart(fig, key="act_hist")
    else:
        st.info("This feature never fires on this corpus.")
    near = page["nearest"]
    near["label"] = table["label"].to_numpy()[near["latent"]]
    st.subheader("Nearest features (decoder cosine)")
    st.dataframe(near.round(3), key="nearest", hide_index=True)
    co = page["cooccurring"]
    co["label"] = table["label"].to_numpy()[co["latent"].astype(int)] if len(co) else []
    st.subheader("Most co-occurring features")
    st.dataframe(co.round(3), key="cooccurring", hide_index=True)

if other_cols:
    st.subheader("Prevalence across a column")
    by = st.selectbox("Column", other_cols, key="prev_col")
    prev = fx.prevalence_by(latent, ws.frame[by])
    fig = px.bar(prev, x="group", y="active_share", hover_data=["n_docs", "mean_activation"],
                 labels={"group": by, "active_share": "share of documents where it fires"})
    fig.update_layout(height=300, margin=dict(t=20, b=10))
    st.plotly_chart(fig, key="prevalence")

st.subheader("Try your own text")
typed = st.text_area("Type a text to see which features it activates", key="try_text")
if st.button("Show its features", key="try_go"):
    try:
        active = text_features(ws.sae, ws.embed_query(typed), table)
    except HsaeError as exc:
        st.error(str(exc))
    else:
        st.dataframe(active.round(3), key="try_result", hide_index=True)
