"""Features: a searchable, sortable table of every latent; click a row (or follow a link) to open its page."""

from __future__ import annotations

import hashlib

import plotly.express as px
import streamlit as st
from pandas.api.types import is_bool_dtype

import ui
from hsae_core import settings
from hsae_core.data import holds_codes
from hsae_core.errors import HsaeError
from hsae_core.features import reading_order, search_features, strongest_first, text_features
from hsae_core.labelsets import low_fidelity, trusted
from hsae_core.report import COLUMN_NAMES
from hsae_core.unique_labels import count_shared

ui.page_setup("Features")
st.title("Features")
ws = ui.pick_workspace("Features")
if ws is None:  # the picker said why, and what to do; this page's own steps need a workspace
    st.stop()
fx = ui.explorer(ws)
table = ui.feature_table(ws).copy()
levels = ws.level_names if ws.sae_config.levels else None
if levels:
    table.insert(1, "level", levels)
order = reading_order(table, levels)  # broad levels first, the busiest feature first within each
other_cols = [c for c in ws.frame.columns if c != ws.text_col]
kinds = ui.column_kinds(ws)

# Columns of the features table and how they are shown; a new column is one more entry here.
FEATURE_COLUMNS = {
    "latent": st.column_config.NumberColumn("feature", help="Feature number (click the row to open it)"),
    "level": st.column_config.TextColumn(
        "level",
        help="The SAE level, as latents/active: 4/1 puts every document in one of 4 broad groups, 128/16 holds "
        "the finest features; the main level (the SAE's m/k) is the one that reconstructs the embeddings",
    ),
    "label": st.column_config.TextColumn("label", width="medium"),
    # named as the Hypotheses table and `hsae features` name them (this table said "fidelity AUC")
    "fidelity_auc": st.column_config.NumberColumn(
        COLUMN_NAMES["fidelity_auc"],
        format="%.2f",
        help="Held-out embedding-judge AUC of the label (documents the "
        "labeller never saw); low = do not trust the label",
    ),
    "fidelity_f1": st.column_config.NumberColumn(
        COLUMN_NAMES["fidelity_f1"], format="%.2f", help="Held-out F1 of the label"
    ),
    "density": st.column_config.NumberColumn(
        # one decimal everywhere, as `hsae features` prints it (Streamlit's "percent" shows 12% beside 5.23%)
        "fires on",
        format="%.1f%%",
        help="Share of documents where the feature is active",
    ),
    "mean_activation": st.column_config.NumberColumn(
        "mean activation", format="%.3f", help="Mean activation where active"
    ),
    "max_activation": st.column_config.NumberColumn("max activation", format="%.3f"),
    "keywords": st.column_config.TextColumn("keywords", width="large"),
}

# ---- which feature is open: a link (?feature=N), a clicked row, or the number box
wanted = st.query_params.get("feature")
if wanted is not None and wanted != st.session_state.get("_feature_from_link"):
    st.session_state["_feature_from_link"] = wanted
    if wanted.isdigit() and int(wanted) < len(table):
        st.session_state["feature_open"] = int(wanted)
    else:
        st.warning(f"No feature #{wanted} here: this workspace's features are #0 to #{len(table) - 1}.")

# ---- the table of all latents
c1, c2, c3 = st.columns([2, 1, 1])
query = c1.text_input("Search labels and keywords", key="feat_query")
corr_options = [c for c in other_cols if kinds.get(c) in ("numeric", "category")]
corr_col = c2.selectbox(
    "Correlate with column",
    ["(none)"] + corr_options,
    key="feat_corr_col",
    help="Adds each feature's correlation with this column (for a category: with one value; for a heavy-tailed "
    "count such as citations: with log(1 + y); documents without a value are left out)",
)
corr_value = None
categorical = kinds.get(corr_col) == "category" or holds_codes(ws.frame[corr_col]) if corr_col != "(none)" else False
if categorical and not is_bool_dtype(ws.frame[corr_col]):  # one value at a time (ICLR's Decision codes too)
    corr_value = c3.selectbox(
        "…equal to", sorted(ws.frame[corr_col].dropna().astype(str).unique()), key="feat_corr_val"
    )
controls = []
if corr_col != "(none)":
    controls = c3.multiselect(
        "…adjusted for",
        ui.control_options(ws, corr_col),
        key=f"feat_corr_controls_{corr_col}",
        help="Partial correlation: the feature's activation and the column, each with these columns taken out "
        "(a date, a field; a column of more than 20 values, such as an A/B test id, is compared within).",
    )
column_config = dict(FEATURE_COLUMNS)
corr_name = None
if corr_col != "(none)":
    try:
        corr_name, correlations = ui.feature_correlations(ws, corr_col, corr_value, controls)
        table[corr_name] = correlations
        column_config[corr_name] = st.column_config.NumberColumn(corr_name, format="%.3f")
    except HsaeError as exc:
        st.warning(str(exc))
if query.strip():
    shown = search_features(table, query, limit=len(table))
elif corr_name is not None:  # strongest first, either sign, as `hsae features --correlate` lists them
    shown = table.iloc[strongest_first(table[corr_name])]
else:
    shown = table.iloc[order]
fidelity_filter = c1.selectbox(
    "Label fidelity",
    ["all labels", "low fidelity only", "trusted only"],
    key="feat_fidelity",
    help="Low: held-out AUC under "
    f"{settings.LABELS.low_fidelity_auc} (or LLM-judged F1 under {settings.LABELS.refine_f1_bar})",
)
if fidelity_filter != "all labels":
    shown = shown[low_fidelity(shown) if fidelity_filter == "low fidelity only" else trusted(shown)]
if levels:
    level = c2.selectbox(
        "Level",
        ["all levels"] + list(dict.fromkeys(levels[j] for j in order)),
        key="feat_level",
        help="Show one level's features: the small levels sort the corpus into a few broad groups",
    )
    if level != "all levels":
        shown = shown[shown["level"] == level]
if query.strip() and shown.empty:
    st.info(f"No feature label or keyword contains '{query}'.")
cols = [c for c in column_config if c in shown.columns]
if corr_name is not None and "label" in cols:  # beside the label, not past the table's right edge
    cols.remove(corr_name)
    cols.insert(cols.index("label") + 1, corr_name)
# A new search or order is a new table: its own key, so that a row picked in the previous list is not reread.
order_key = query.strip() + ("|" + corr_name if corr_name else "")
table_key = "feature_table" if not order_key else "feature_table_" + hashlib.sha1(order_key.encode()).hexdigest()[:8]
event = st.dataframe(
    shown[cols].assign(density=shown["density"] * 100) if "density" in cols else shown[cols],  # a share, in %
    key=table_key,
    on_select="rerun",
    selection_mode="single-row",
    hide_index=True,
    height=300,
    column_config=column_config,
)
st.caption(
    f"{len(shown)} of {len(table)} features · labels: {table['label_method'].iloc[0]} · "
    "tick a row's box, at its left, to open that feature below"
)
shared = count_shared(table["label"])
if shared:  # label sets made before labels were kept distinct, or a feature with no other candidate
    st.info(f"{shared} features share their label with another feature: relabelling gives each its own where it can.")
ui.relabel_control(ws)
picked = ui.selected_row(event)
if picked is not None and picked < len(shown):
    clicked = (table_key, int(shown.iloc[picked]["latent"]))
    if clicked != st.session_state.get("_feature_from_row"):  # a new click wins over the number box
        st.session_state["_feature_from_row"] = clicked
        st.session_state["feature_open"] = clicked[1]
        st.session_state.pop("_feature_auto", None)
# Until the user opens one (a link, a row, the number box), the open feature is the table's first row, and it
# follows the table when a search, a correlation or a filter reorders it: after "Correlate with column" the
# strongest feature heads the table and opens below it, not the feature of the order before.
auto = st.session_state.get("_feature_auto")
if "feature_open" not in st.session_state or (auto is not None and st.session_state["feature_open"] == auto):
    first_row = int(shown["latent"].iloc[0]) if len(shown) else int(order[0])
    st.session_state["feature_open"] = st.session_state["_feature_auto"] = first_row
latent = int(st.number_input("Open feature #", min_value=0, max_value=len(table) - 1, key="feature_open"))
st.query_params["feature"] = str(latent)
st.session_state["_feature_from_link"] = str(latent)

# ---- one feature's page
row = table.iloc[latent]
terms = [t.strip() for t in str(row["keywords"] or "").split(",")]
st.header(f"Feature #{latent}: {row['label']}")
if levels:
    st.caption(f"Level {levels[latent]} (latents/active) of this SAE's levels {', '.join(dict.fromkeys(levels))}")
st.caption(
    f"Label made by: {row['label_method']}{ui.fidelity_note(row)} · keywords: {row['keywords'] or '—'} · "
    "keywords are highlighted in the documents"
)
m1, m2, m3 = st.columns(3)
m1.metric("Share of documents where it fires", f"{row['density']:.1%}")  # as the table's "fires on" shows it
m2.metric("Mean activation (when active)", f"{row['mean_activation']:.3f}")
m3.metric("Max activation", f"{row['max_activation']:.3f}")

page = fx.page(latent)
left, right = st.columns([3, 2])
with left:
    st.subheader("Top-activating documents")
    top = page["top"]
    repeated = top["copies"] > 1
    shown = {"activation": top["activation"].round(3)} | ({"copies": top["copies"]} if repeated.any() else {})
    ui.documents(ws, ui.docs_table(ws, top["doc"], shown), f"top_docs_{latent}", terms)
    if repeated.any():
        st.caption(
            f"{int(repeated.sum())} of these texts appear more than once in the corpus: each is shown once, and "
            "'copies' says how many times it is there."
        )
    st.subheader("Documents from lower activation quantiles")
    q = page["quantiles"]
    ui.documents(
        ws,
        ui.docs_table(ws, q["doc"], {"band": q["band"], "activation": q["activation"].round(3)}),
        f"quantile_docs_{latent}",
        terms,
    )
with right:
    counts, edges = page["histogram"]
    if len(counts):
        fig = px.bar(
            x=(edges[:-1] + edges[1:]) / 2,
            y=counts,
            labels={"x": "activation", "y": "documents"},
            title="Activation histogram (active documents)",
        )
        fig.update_layout(height=280, margin=dict(t=40, b=10))
        st.plotly_chart(fig, key="act_hist")
    else:
        st.info("This feature never fires on this corpus.")
    near = page["nearest"]
    near["label"] = table["label"].to_numpy()[near["latent"]]
    st.subheader("Nearest features (decoder cosine)")
    ui.numbers_table(near, key="nearest")
    co = page["cooccurring"]
    co["label"] = table["label"].to_numpy()[co["latent"].astype(int)] if len(co) else []
    st.subheader("Most co-occurring features")
    ui.numbers_table(co, key="cooccurring")

# Groups of a text or id column are single documents: offer the columns that group them, categories first.
GROUPING_KINDS = ("category", "numeric", "date")
prevalence_cols = sorted(
    (c for c in other_cols if kinds.get(c) in GROUPING_KINDS), key=lambda c: GROUPING_KINDS.index(kinds[c])
)
if prevalence_cols:
    st.subheader("Prevalence across a column")
    # opens on the likely target (the demo's stars), not the first category (the demo's val/holdout split)
    likely = ui.likely_target(ws)
    start = prevalence_cols.index(likely) if likely in prevalence_cols else 0
    by = st.selectbox("Column", prevalence_cols, index=start, key="prev_col")
    prev = fx.prevalence_by(latent, ws.frame[by])
    fig = px.bar(
        prev,
        x="group",
        y="active_share",
        hover_data=["n_docs", "mean_activation"],
        labels={"group": by, "active_share": "share of documents where it fires"},
    )
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
        ui.numbers_table(active, key="try_result")
