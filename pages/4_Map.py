"""Map: a 2-D UMAP of the documents, coloured by a feature or a column; select a region to see its features."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st

import ui
from hsae_core.errors import HsaeError
from hsae_core.mapping import points_in_box, region_overrepresentation

st.set_page_config(page_title="hsae: Map", layout="wide")
st.title("Map")
ws = ui.pick_workspace()
if ws is None:
    st.stop()


@st.cache_resource(max_entries=4, show_spinner=False)
def layout(path: str, stamp: float) -> np.ndarray:
    progress, bar = ui.progress_bar("Computing the 2-D map (once per workspace, then cached on disk)")
    coords = ws.layout(progress=progress)
    bar.empty()
    return coords


try:
    coords = layout(str(ws.path), ui._stamp(ws.path))
except ui.ERRORS as exc:  # e.g. a read-only workspace folder cannot keep the computed map
    st.error(ui.error_line(exc))
    st.stop()
table = ui.feature_table(ws)
MAX_POINTS = 20_000  # drawing more points than this only slows the browser

colour_by = st.radio("Colour by", ["feature activation", "column"], horizontal=True, key="map_colour")
if colour_by == "feature activation":
    order = table.sort_values("n_active", ascending=False)["latent"].tolist()
    j = st.selectbox("Feature", order, key="map_feature", format_func=lambda j: ui.feature_name(table, j))
    colour = ws.codes[:, int(j)].toarray().ravel()
    colour_name = f"feature #{j}"
else:
    cols = [c for c in ws.frame.columns if c != ws.text_col]
    col = st.selectbox("Column", cols, index=cols.index("stars") if "stars" in cols else 0, key="map_column")
    colour = ws.frame[col].to_numpy()
    colour_name = col

n = len(coords)
shown = np.arange(n) if n <= MAX_POINTS else np.sort(np.random.default_rng(0).choice(n, MAX_POINTS, replace=False))
plot = pd.DataFrame({"x": coords[shown, 0], "y": coords[shown, 1], colour_name: colour[shown], "doc": shown,
                     "text": [ui.snippet(ws.texts[i], 160) for i in shown]})
fig = px.scatter(plot, x="x", y="y", color=colour_name, hover_data={"text": True, "doc": True, "x": False, "y": False},
                 custom_data=["doc"], render_mode="webgl", height=560)
fig.update_traces(marker=dict(size=4))
fig.update_layout(dragmode="lasso", margin=dict(t=10, b=10))
event = st.plotly_chart(fig, key="map_chart", on_select="rerun", selection_mode=("box", "lasso"))

selected = []
if event is not None and getattr(event, "selection", None):
    selected = [int(p["customdata"][0]) for p in event.selection.get("points", []) if p.get("customdata")]
with st.expander("…or type a box", expanded=not selected):
    x_lo, x_hi = float(coords[:, 0].min()), float(coords[:, 0].max())
    y_lo, y_hi = float(coords[:, 1].min()), float(coords[:, 1].max())
    xr = st.slider("x range", x_lo, x_hi, (x_lo, x_hi), key="map_x")
    yr = st.slider("y range", y_lo, y_hi, (y_lo, y_hi), key="map_y")
if selected:
    inside = np.zeros(n, dtype=bool)
    inside[selected] = True
else:
    inside = points_in_box(coords, xr, yr)
if inside.all():
    st.info("Select a region on the map (box or lasso), or narrow the ranges above, to see its over-represented features.")
    st.stop()
try:
    over = region_overrepresentation(ws.codes, inside)
except HsaeError as exc:
    st.error(str(exc))
    st.stop()
over.insert(1, "label", table["label"].to_numpy()[over["latent"]] if len(over) else [])
st.subheader(f"Features over-represented in the {int(inside.sum()):,} selected documents")
st.dataframe(over.round(3), key="region_features", hide_index=True)
