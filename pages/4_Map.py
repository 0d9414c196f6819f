"""Map: the documents in 2-D, regions named by their most over-represented feature, filters by column and
feature, and what a selected region holds. Large corpora are drawn as a density image plus a sample of points."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st
from plotly.colors import sample_colorscale

import ui
from hsae_core import settings
from hsae_core.features import reading_order
from hsae_core.interpret import fit
from hsae_core.mapping import (
    category_labels,
    density_grid,
    filter_mask,
    fold_rare_values,
    hover_sample,
    points_in_box,
    region_overrepresentation,
    selection_mask,
    spread_labels,
    strongest_documents,
)
from hsae_core.target_scale import readable_scale

MAX_NAME_CHARS = 40  # a region name on the map, cut at a word with "…" beyond this
GREY = "#7f7f7f"  # values folded into "other", and "(missing)"
DISTINCT_COLOURS = [c for c in px.colors.qualitative.D3 if c.lower() != GREY]  # nine saturated hues, none near another
# ordered values (stars) from red to blue through purple: a diverging scale's pale middle (RdYlBu's 3 stars)
# vanished on the white background
ORDERED_SCALE = [[0.0, "#d62728"], [0.5, "#9467bd"], [1.0, "#1f77b4"]]

ui.page_setup("Map")
st.title("Map")
ws = ui.pick_workspace("Map")
if ws is None:
    st.stop()
try:
    coords = ui.map_layout(ws)
except ui.ERRORS as exc:  # e.g. a read-only workspace folder cannot keep a map computed now
    st.error(ui.error_line(exc))
    st.stop()
if coords is None:
    st.stop()
table = ui.feature_table(ws)
labels = table["label"].to_numpy()
fx = ui.explorer(ws)
kinds = ui.map_columns(ws)
n = len(coords)
features_in_order = reading_order(table, ws.level_names).tolist()

# ---- filters
with st.expander("Filters", expanded=False):
    f1, f2 = st.columns(2)
    f_col = f1.selectbox("Filter by column", ["(none)"] + list(kinds), key="map_filter_col")
    f_values = f_range = None
    if f_col != "(none)":
        kind, info = kinds[f_col]
        if kind == "numeric":
            f_range = f1.slider(f"{f_col} between", info[0], info[1], info, key=f"map_filter_range_{f_col}")
        else:
            f_values = f1.multiselect(f"{f_col} is one of", info, default=info[:1], key=f"map_filter_values_{f_col}")
    f_feat = f2.selectbox(
        "Only documents where this feature fires",
        [None] + features_in_order,
        key="map_filter_feature",
        format_func=lambda j: "(any document)" if j is None else ui.feature_name(table, j),
    )
try:
    keep = filter_mask(
        ws.frame,
        None if f_col == "(none)" else f_col,
        f_values,
        f_range,
        None if f_feat is None else fx.activations(int(f_feat))[0],
    )
except ui.ERRORS as exc:
    st.error(ui.error_line(exc))
    st.stop()
n_keep = int(keep.sum())
if n_keep == 0:
    st.warning("No document passes these filters; loosen them.")
    st.stop()

# ---- colour
c1, c2, c3 = st.columns([2, 2, 1])
colour_by = c1.radio("Colour by", ["feature activation", "column", "document count"], horizontal=True, key="map_colour")
colour, colour_name, category = None, "documents", False
if colour_by == "feature activation":
    j = c2.selectbox("Feature", features_in_order, key="map_feature", format_func=lambda j: ui.feature_name(table, j))
    docs, acts = fx.activations(int(j))
    colour = np.zeros(n)
    colour[docs] = acts
    colour_name = f"feature #{j}"
elif colour_by == "column" and kinds:
    col = c2.selectbox(
        "Column", list(kinds), index=list(kinds).index("stars") if "stars" in kinds else 0, key="map_column"
    )
    colour_kind, legend = kinds[col]
    if colour_kind == "numeric":
        colour_name, colour = readable_scale(pd.to_numeric(ws.frame[col], errors="coerce"), col)  # log of a count
    else:
        colour, colour_name, category = category_labels(ws.frame[col]).to_numpy(), col, True
        if colour_kind != "ordered":  # no more colours than a reader tells apart: the rest share one grey
            colour, legend = fold_rare_values(colour, legend, keep=len(DISTINCT_COLOURS))
show_regions = c3.checkbox("Label regions", value=True, key="map_regions")

dense = n_keep > settings.SCALE.map_points
if dense and category:  # a density image averages numbers: a category becomes the share of one value
    value = c2.selectbox(f"Share of documents with {colour_name} =", legend, key="map_share_value")
    colour, colour_name, category = (colour == str(value)).astype(np.float64), f"share {colour_name}={value}", False

# ---- the figure: every point when few, else a density image plus a sample of points for hover
if dense:
    grid = density_grid(coords, keep, None if colour is None else colour)
    z = np.log10(1 + grid["count"]) if colour is None else grid["mean"]
    if colour is None:
        z[grid["count"] == 0] = np.nan
    fig = go.Figure(
        go.Heatmap(
            x=grid["x"],
            y=grid["y"],
            z=z,
            colorscale="Viridis",
            hoverongaps=False,
            colorbar=dict(title="log10 docs" if colour is None else colour_name),
            hovertemplate="x %{x:.2f}, y %{y:.2f}<br>%{z:.3g}<extra></extra>",
        )
    )
    shown = hover_sample(keep, settings.SCALE.map_hover_points)
    fig.add_trace(
        go.Scattergl(
            x=coords[shown, 0],
            y=coords[shown, 1],
            mode="markers",
            customdata=shown[:, None],
            hovertext=[ui.snippet(ws.texts[i], 160) for i in shown],
            hoverinfo="text",
            marker=dict(size=3, color="rgba(255,255,255,0.45)"),
            name="sample",
            showlegend=False,
        )
    )
    caption = (
        f"{n_keep:,} documents drawn as a {len(grid['x'])}x{len(grid['y'])} density image "
        f"({grid['engine']}); hover shows a sample of {len(shown):,}. Box or lasso selects every document "
        "in the area, not only the sampled points."
    )
else:
    shown = np.flatnonzero(keep)
    plot = pd.DataFrame(
        {
            "x": coords[shown, 0],
            "y": coords[shown, 1],
            "doc": shown,
            "text": [ui.snippet(ws.texts[i], 160) for i in shown],
        }
    )
    if colour is not None:
        plot[colour_name] = colour[shown]
    legend_style = {}
    if category:  # numbers such as stars: in order, on an ordered scale from red (lowest) to blue
        legend_style = {"category_orders": {colour_name: legend}}
        if colour_kind == "ordered":
            legend_style["color_discrete_sequence"] = sample_colorscale(
                ORDERED_SCALE, np.linspace(0, 1, max(len(legend), 2))
            )
        else:  # distinct hues (the theme's default paired two blues and two reds); "other", "(missing)" grey
            legend_style["color_discrete_map"] = dict(zip(legend, DISTINCT_COLOURS)) | {
                value: GREY for value in legend if value == "(missing)" or value.startswith("other (")
            }
    fig = px.scatter(
        plot,
        x="x",
        y="y",
        color=None if colour is None else colour_name,
        **legend_style,
        # a number on hover to 3 decimals (it read "feature #64=0.6697918772697449")
        hover_data={"text": True, "doc": True, "x": False, "y": False}
        | ({colour_name: ":.3f"} if colour is not None and not category else {}),
        custom_data=["doc"],
        render_mode="webgl",
    )
    fig.update_traces(marker=dict(size=4))
    caption = f"{n_keep:,} documents."
if show_regions:
    _, regions = ui.map_regions(ws, labels)
    names = [fit(label, MAX_NAME_CHARS) for label in regions["label"]]
    x_span, y_span = np.ptp(coords, axis=0)
    bigger_first = np.argsort(-regions["n_docs"].to_numpy(), kind="stable")
    label_y = spread_labels(regions["x"], regions["y"], names, x_span, y_span, order=bigger_first)
    for r, name, y in zip(regions.itertuples(), names, label_y):
        fig.add_annotation(
            x=r.x,
            y=y,
            text=name,
            hovertext=str(r.label),
            showarrow=False,
            font=dict(size=11, color="black"),
            bgcolor="rgba(255,255,255,0.7)",
        )
fig.update_layout(
    dragmode="select",
    height=600,
    margin=dict(t=10, b=10, l=10, r=10),
    xaxis=dict(showticklabels=False, title=None),
    yaxis=dict(showticklabels=False, title=None),
)
event = st.plotly_chart(fig, key="map_chart", on_select="rerun", selection_mode=("box", "lasso"))
layout_how = ws.layout_info.get("method", "umap")
st.caption(f"{caption} Layout: {layout_how}.")

# ---- the selected region
selected = selection_mask(coords, getattr(event, "selection", None) if event is not None else None)
with st.expander("…or type a box", expanded=selected is None):
    x_lo, x_hi = float(coords[:, 0].min()), float(coords[:, 0].max())
    y_lo, y_hi = float(coords[:, 1].min()), float(coords[:, 1].max())
    xr = st.slider("x range", x_lo, x_hi, (x_lo, x_hi), key="map_x")
    yr = st.slider("y range", y_lo, y_hi, (y_lo, y_hi), key="map_y")
inside = (selected if selected is not None else points_in_box(coords, xr, yr)) & keep
if show_regions:
    with st.expander("Regions and the feature each is named after"):
        ui.numbers_table(
            regions[["region", "label", "latent", "n_docs", "inside_rate", "outside_rate", "z"]],
            key="map_region_labels",
        )
if inside.sum() == keep.sum():
    ui.next_steps("Map")
    st.stop()
if not inside.any():
    st.warning("The selected region holds no document that passes the filters.")
    st.stop()
over = region_overrepresentation(ws.codes, inside, among=keep)
over.insert(1, "label", labels[over["latent"]] if len(over) else [])
top_latent = int(over["latent"].iloc[0]) if len(over) else None
left, right = st.columns(2)
with left:
    st.subheader(f"Features over-represented in the {int(inside.sum()):,} selected documents")
    ui.numbers_table(over, key="region_features")
with right:
    docs = strongest_documents(fx.csc, inside, top_latent, limit=100)
    st.subheader("Selected documents")
    if top_latent is not None:
        st.caption(
            f"Strongest on the most over-represented feature ({ui.feature_name(table, top_latent)}) first; "
            f"{min(len(docs), 100)} of {int(inside.sum()):,} shown."
        )
    ui.documents(ws, ui.docs_table(ws, docs, text_first=True), key="map_docs", height=400)
