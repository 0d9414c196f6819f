"""Search: a query's SAE features become sliders; moving them steers the search, next to the unsteered baseline."""

from __future__ import annotations

import hashlib

import numpy as np
import streamlit as st

import ui
from hsae_core.errors import HsaeError
from hsae_core.features import example_query, search_features

MAX_SLIDERS = 12

ui.page_setup("Search")
st.title("Search")
ws = ui.pick_workspace("Search")
if ws is None:  # the picker said why, and what to do; this page's own steps need a workspace
    st.stop()
engine = ui.search_engine(ws)
table = ui.feature_table(ws)

mode = st.radio("Query", ["Typed text", "More like this document"], horizontal=True, key="search_mode")
if mode == "Typed text":
    example = example_query(table)
    text = st.text_input(
        "Search text",
        key="search_text",
        placeholder=f"e.g. {example}" if example else "a sentence in your own words",
    )
    if text == "":
        ui.next_steps("Search")
        st.stop()
    cache = st.session_state.setdefault("query_vectors", {})
    if text not in cache:
        try:
            cache[text] = ws.embed_query(text)
        except HsaeError as exc:
            st.error(str(exc))
            st.stop()
    vector, query_id = cache[text], "t:" + text
else:
    doc = int(st.number_input("Document #", min_value=0, max_value=len(ws) - 1, value=0, key="search_doc"))
    with st.expander(f"Document {doc} (the query; left out of the results)", expanded=False):
        st.write(ws.texts[doc])
    vector, query_id = np.array(ws.embeddings[doc], dtype=np.float32), f"d:{doc}"
qkey = hashlib.sha1(query_id.encode()).hexdigest()[:8]  # sliders reset when the query changes

latents, acts = engine.query_code(vector)
# The strongest features get sliders (an SAE with levels activates dozens per query); the sidebar adds any other.
initial = {int(l): float(a) for l, a in zip(latents[:MAX_SLIDERS], acts[:MAX_SLIDERS])}
with st.sidebar:
    st.subheader("Add features")
    wanted = st.text_input("Find features by label", key="add_query")
    found = search_features(table, wanted, limit=30)
    if not len(found):  # the list below is empty until a word finds features: say so, not only "No options"
        st.caption(ui.add_features_hint(wanted))
    added = st.multiselect(
        "Add to the sliders",
        found["latent"].tolist(),
        key=f"added_{qkey}",
        format_func=lambda j: ui.feature_name(table, j),
    )
z = engine.code(vector)
for j in added:
    initial.setdefault(int(j), float(z[int(j)]))

st.subheader("Steer: the query's features")
if not initial:
    st.info("The query activates no feature; add features from the sidebar to steer.")
elif len(latents) > MAX_SLIDERS:
    st.caption(
        f"The {MAX_SLIDERS} strongest of the query's {len(latents)} active features"
        + (" (each level of the SAE adds its own)" if ws.sae_config.levels else "")
        + "; add others from the sidebar."
    )
edits = {}
cols = st.columns(2)
for i, (j, a) in enumerate(initial.items()):
    start = round(a, 3)
    span = max(3 * abs(a), 2 * float(table["max_activation"].iloc[j]), 0.5)
    value = cols[i % 2].slider(
        ui.feature_name(table, j),
        min_value=-round(span, 3),
        max_value=round(span, 3),
        value=start,
        step=0.001,
        format="%.3f",
        key=f"steer_{qkey}_{j}",
    )
    if abs(value - start) > 1e-9:  # an untouched slider sends no edit, so the baseline is reproduced exactly
        edits[j] = value
k = int(st.number_input("Results", min_value=5, max_value=100, value=10, step=5, key="search_k"))
res = engine.search(vector, edits, k=k, exclude=[doc] if mode != "Typed text" else ())

labels = table["label"].to_numpy()
base_rank = {int(d): r for r, d in enumerate(res.baseline_ids)}
change = []
for r, d in enumerate(res.ids):
    d = int(d)
    change.append("new" if d not in base_rank else ("" if base_rank[d] == r else f"{base_rank[d] - r:+d}"))
# The text comes right after the short rank, doc and change columns so that it stays in view; features go last.
steered = ui.docs_table(ws, res.ids, {"rank": range(1, len(res.ids) + 1), "change": change}, text_first=True)
steered["score"] = np.round(res.scores, 4)
steered["shared features"] = ["; ".join(labels[s][:4]) for s in res.shared]
steered = steered[["rank", "doc", "change", "text", "score", "shared features"]]
baseline = ui.docs_table(ws, res.baseline_ids, {"rank": range(1, len(res.baseline_ids) + 1)}, text_first=True)
baseline["score"] = np.round(res.baseline_scores, 4)
baseline = baseline[["rank", "doc", "text", "score"]]
terms = [w for j in res.query_latents[:5] for w in str(table["keywords"].iloc[int(j)] or "").split(", ")]
if edits:
    st.success(f"Steered with {len(edits)} edit(s): {len(res.entered)} entered, {len(res.left)} left the top {k}.")
else:
    st.caption("No slider moved: the steered results are exactly the baseline.")
# One above the other, each the page's width, so that the texts have room; "change" compares them row by row.
st.subheader("Steered results")
ui.documents(
    ws,
    steered,
    f"steered_results_{qkey}",
    terms,
    column_config={
        "change": st.column_config.TextColumn(
            "change", width="small", help="new: entered the top list; +n / -n: moved up / down"
        )
    },
)
with st.expander("Baseline (unsteered)", expanded=bool(edits)):
    ui.documents(ws, baseline, f"baseline_results_{qkey}", terms)
if res.left:
    st.subheader("Left the results")
    ui.documents(ws, ui.docs_table(ws, res.left, text_first=True), f"left_results_{qkey}", terms)
