"""The Map: density aggregation, selections, filters and feature-labelled regions (hsae_core.mapping), and the
page itself on the small real workspace, both as a scatter and, with the density threshold lowered, as the
density image a million-document workspace gets; plus a workspace without a stored layout computing it in the
background."""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from streamlit.testing.v1 import AppTest
from ws_fixtures import SMALL_K, SMALL_M, small_frame, small_workspace  # noqa: F401

from hsae_core import settings
from hsae_core.errors import DataError
from hsae_core.interpret import fit
from hsae_core.mapping import (
    category_labels,
    category_values,
    compute_layout,
    density_grid,
    filter_mask,
    fold_rare_values,
    map_regions,
    points_in_box,
    points_in_polygon,
    region_overrepresentation,
    selection_mask,
    spread_labels,
    strongest_documents,
)
from hsae_core.unique_labels import label_words
from hsae_core.workspace import Workspace, build_workspace

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ws(small_workspace):
    return Workspace.open(small_workspace)


def test_density_grid_counts_every_point_once_and_averages_values():
    rng = np.random.default_rng(0)
    coords = rng.normal(size=(5000, 2)).astype(np.float32)
    values = rng.random(5000)
    mask = rng.random(5000) < 0.5
    g = density_grid(coords, mask, values, bins=40, engine="numpy")
    assert g["count"].shape == (40, 40) and g["count"].sum() == mask.sum()
    # the cell of one point holds it; its mean equals the mean of the points that fall in that cell
    x0, x1, y0, y1 = g["extent"]
    i = int(np.flatnonzero(mask)[0])
    cx = min(int((coords[i, 0] - x0) / (x1 - x0) * 40), 39)
    cy = min(int((coords[i, 1] - y0) / (y1 - y0) * 40), 39)
    same = (
        mask
        & (np.minimum(((coords[:, 0] - x0) / (x1 - x0) * 40).astype(int), 39) == cx)
        & (np.minimum(((coords[:, 1] - y0) / (y1 - y0) * 40).astype(int), 39) == cy)
    )
    assert g["count"][cy, cx] == same.sum() and np.isclose(g["mean"][cy, cx], values[same].mean())
    assert np.isnan(g["mean"][g["count"] == 0]).all()


def test_datashader_engine_agrees_with_numpy():
    pytest.importorskip("datashader")
    rng = np.random.default_rng(1)
    coords = rng.normal(size=(20000, 2)).astype(np.float32)
    values = rng.random(20000)
    a = density_grid(coords, values=values, bins=60, engine="numpy")
    b = density_grid(coords, values=values, bins=60, engine="datashader")
    assert b["engine"] == "datashader" and a["count"].sum() == b["count"].sum() == 20000
    assert (a["count"] != b["count"]).mean() < 0.01  # only points exactly on a cell edge may differ


def test_the_layout_starts_from_pca_and_from_a_seeded_random_start_where_pca_has_no_axis():
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(1, 16)) + 0.1 * rng.normal(size=(60, 16))).astype(np.float32)
    coords, info = compute_layout(X, with_info=True)
    assert info["init"] == "pca" and np.array_equal(coords, compute_layout(X))
    # every document the same (identical stored vectors): PCA's start is 0/0, NaN everywhere
    same = np.ones((40, 16), dtype=np.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        coords, info = compute_layout(same, with_info=True)
    assert info["init"] == "random (the embeddings spread along no direction)"
    assert np.isfinite(coords).all() and np.array_equal(coords, compute_layout(same))
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)]
    with pytest.raises(DataError, match="Unknown layout start 'tsne'"):
        compute_layout(X, init="tsne")


def _nearest(X: np.ndarray, k: int, cosine: bool) -> np.ndarray:
    """Each row's ``k`` nearest other rows, by cosine or by euclidean distance."""
    if cosine:
        unit = X / np.linalg.norm(X, axis=1, keepdims=True)
        distance = 1 - unit @ unit.T
    else:
        distance = ((X[:, None, :] - X[None, :, :]) ** 2).sum(axis=2)
    np.fill_diagonal(distance, np.inf)
    return np.argsort(distance, axis=1, kind="stable")[:, :k]


def test_the_map_is_drawn_from_each_reviews_exact_neighbours_and_keeps_them_close(ws):
    # UMAP's own neighbour search sent every pair of documents through a Python call (22 s for the 4,000 demo
    # reviews, blocking the pages meanwhile); the layout now takes the exact neighbours from FAISS
    from hsae_core.mapping import _exact_cosine_neighbours

    X = np.asarray(ws.embeddings, dtype=np.float32)
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    found, distances, _ = _exact_cosine_neighbours(unit, 15)
    expected = np.sort(1 - unit @ unit.T, axis=1)[:, :15]
    assert found.shape == (len(X), 15) and np.allclose(distances, np.clip(expected, 0, 2), atol=1e-5)
    assert (found == np.arange(len(X))[:, None]).any(axis=1).all()  # each review is among its own neighbours
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        coords = compute_layout(X)
    assert not [str(w.message) for w in caught if "umap" in w.filename], "UMAP's warnings reach the user"
    # of each review's 10 nearest by cosine, the share that are among its 10 nearest on the map (random: 0.017)
    on_map, in_embedding = _nearest(coords.astype(np.float64), 10, cosine=False), _nearest(X, 10, cosine=True)
    kept = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(on_map, in_embedding)])
    assert kept > 0.15, kept


def test_selections_box_lasso_and_clicked_points():
    coords = np.array([[0, 0], [1, 1], [2, 2], [0.5, 1.5], [3, 0]], dtype=np.float32)
    assert points_in_box(coords, (0.9, 2.1), (0.9, 2.1)).tolist() == [False, True, True, False, False]
    triangle = ([0, 2.5, 0], [0, 2.5, 2.5])  # above the diagonal, plus the diagonal's lower part
    assert points_in_polygon(coords, *triangle).tolist() == [False, False, False, True, False]
    assert selection_mask(coords, {"box": [{"x": [2.1, 0.9], "y": [0.9, 2.1]}], "lasso": [], "points": []}).sum() == 2
    assert selection_mask(coords, {"box": [], "lasso": [{"x": triangle[0], "y": triangle[1]}], "points": []})[3]
    clicked = selection_mask(coords, {"box": [], "lasso": [], "points": [{"customdata": [4]}]})
    assert clicked.tolist() == [False, False, False, False, True]
    assert selection_mask(coords, {"box": [], "lasso": [], "points": []}) is None


def test_filters_by_column_value_range_and_feature(ws):
    frame = ws.frame
    five = filter_mask(frame, "stars", values=[5])
    assert five.sum() == (frame["stars"] == 5).sum()
    low = filter_mask(frame, "stars", value_range=(1, 2))
    assert low.sum() == frame["stars"].between(1, 2).sum()
    docs = np.array([1, 5, 9])
    both = filter_mask(frame, "stars", values=[frame["stars"].iloc[5]], feature_docs=docs)
    assert set(np.flatnonzero(both)) <= {1, 5, 9} and both[5]


def test_region_names_that_would_overlap_move_by_whole_lines():
    # the 670 x 580 px plot area names are spread for, over data ranges 67 x 58: a character is 0.6 wide, a line 1.8 high
    x, y = [10.0, 10.0, 10.0, 60.0], [30.0, 30.0, 30.5, 30.0]
    texts = ["ten chars.", "ten chars.", "ten chars.", "far away"]
    new = spread_labels(x, y, texts, 67.0, 58.0)
    # the second goes up a line; the third (its own y 30.5) finds 32.3 and 28.7 taken, so two lines up
    np.testing.assert_allclose(new, [30.0, 31.8, 34.1, 30.0])
    # side by side, wider apart than their half widths: no move
    np.testing.assert_allclose(spread_labels([10.0, 16.1], [30.0, 30.0], texts[:2], 67.0, 58.0), [30.0, 30.0])
    # the order says who keeps its place
    np.testing.assert_allclose(spread_labels(x[:2], y[:2], texts[:2], 67.0, 58.0, order=[1, 0]), [31.8, 30.0])


def test_regions_are_named_by_their_most_overrepresented_feature(ws):
    coords = ws.layout()
    region, regions = map_regions(coords, ws.codes, ws.features["label"].to_numpy(), n_regions=6)
    assert len(regions) == 6 and region.shape == (len(ws),) and set(np.unique(region)) == set(range(6))
    named = regions[regions["latent"] >= 0]
    assert named["latent"].is_unique, "no label twice on the map"
    for r in named.itertuples():
        over = region_overrepresentation(ws.codes, region == r.region, top=ws.codes.shape[1], min_inside=5)
        ranked = over["latent"].tolist()
        assert r.label == ws.features["label"].iloc[r.latent] and r.inside_rate > r.outside_rate
        # Its most over-represented feature, unless a region where that feature stands out more took it first
        for better in ranked[: ranked.index(r.latent)]:
            holder = regions[regions["latent"] == better]
            assert len(holder) == 1 and holder["z"].iloc[0] >= r.z


def test_two_regions_with_the_same_top_feature_get_two_names():
    """Three far-apart blobs of 40 documents: feature 0 fires on 36 of A and 32 of B, 1 on 8 of A, 2 on 8 of B,
    3 on all of C. Feature 0 is the most over-represented in both A and B; it stands out more in A, so A keeps
    it and B is named by its own next feature."""
    rng = np.random.default_rng(0)
    coords = np.vstack([rng.normal(c, 1.0, size=(40, 2)) for c in [(0.0, 0.0), (100.0, 0.0), (50.0, 100.0)]])
    rows, cols = [], []
    for doc in range(120):
        blob, i = divmod(doc, 40)
        feats = [
            ([0] if i < 36 else []) + ([1] if i < 8 else []),
            ([0] if i < 32 else []) + ([2] if i < 8 else []),
            [3],
        ][blob]
        rows += [doc] * len(feats)
        cols += feats
    codes = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(120, 4))
    region, regions = map_regions(coords, codes, np.array(["zero", "one", "two", "three"]), n_regions=3)
    for blob in (0, 40):  # without the rule both would read "zero"
        top = region_overrepresentation(codes, region == region[blob], top=1, min_inside=5)
        assert int(top["latent"].iloc[0]) == 0
    named = regions.set_index("region")["label"]
    assert [named[region[0]], named[region[40]], named[region[80]]] == ["zero", "two", "three"]
    # Features whose labels say one name in more or fewer words ("Adversarial examples", "mentions attack and
    # adversarial examples"), the second B's strongest once the first is taken: B is named by a third feature.
    # (On the ICLR 2017 map two regions read "Adversarial examples" and "mentions adversarial examples".)
    for twin in ("mentions adversarial example", "mentions attack and adversarial examples"):
        labels = np.array(["Adversarial examples", "one", "two", "three", twin])
        doubled = sp.hstack([codes, codes[:, [0]]]).tocsr()  # feature 4 fires where feature 0 does
        _, regions = map_regions(coords, doubled, labels, n_regions=3)
        named = regions.set_index("region")["label"]
        assert [named[region[0]], named[region[40]], named[region[80]]] == ["Adversarial examples", "two", "three"]
    assert label_words("mentions bars and city") == label_words("mentions city and bar") == {"bar", "city"}


def test_overrepresentation_among_filtered_documents_and_strongest_first(ws):
    coords = ws.layout()
    keep = filter_mask(ws.frame, "stars", values=[1, 2])
    inside = points_in_box(coords, (coords[:, 0].min(), np.median(coords[:, 0])), (-1e9, 1e9))
    over = region_overrepresentation(ws.codes, inside, among=keep, min_inside=1)
    top = int(over["latent"].iloc[0])
    chosen = inside & keep
    assert over["inside"].iloc[0] == int((ws.codes[np.flatnonzero(chosen)][:, top] > 0).sum())
    docs = strongest_documents(ws.codes.tocsc(), chosen, top, limit=20)
    assert chosen[docs].all() and len(docs) == min(20, chosen.sum())
    acts = ws.codes[docs][:, top].toarray().ravel()
    firing = acts[acts > 0]
    assert (np.diff(firing) <= 0).all() and (acts[len(firing) :] == 0).all()


def _map(env_ws, monkeypatch, **scale) -> AppTest:
    monkeypatch.setenv("HSAE_WORKSPACE", str(env_ws))
    if scale:
        monkeypatch.setattr(settings, "SCALE", dataclasses.replace(settings.SCALE, **scale))
    at = AppTest.from_file(str(REPO / "pages/4_Map.py"), default_timeout=300)
    at.run()
    assert not at.exception, at.exception
    return at


def _spec(at) -> dict:
    return json.loads(at.get("plotly_chart")[0].proto.spec)


def _values(data) -> np.ndarray:
    """A plotly trace array: a JSON list, or plotly's base64 typed array ({"dtype", "bdata"[, "shape"]})."""
    if isinstance(data, dict) and "bdata" in data:
        import base64

        out = np.frombuffer(base64.b64decode(data["bdata"]), dtype=np.dtype(data["dtype"]))
        return out.reshape([int(x) for x in str(data["shape"]).split(",")]) if "shape" in data else out
    return np.asarray(data)


def test_map_page_density_image_for_a_large_corpus(small_workspace, monkeypatch):
    at = _map(small_workspace, monkeypatch, map_points=100, map_hover_points=150)
    spec = _spec(at)
    kinds = [t["type"] for t in spec["data"]]
    assert kinds == ["heatmap", "scattergl"], "a density image plus a sample of points"
    assert len(_values(spec["data"][1]["x"])) == 150, "only the hover sample is sent"
    assert len(spec["layout"]["annotations"]) == 12, "regions are labelled on the map"
    labels = set(Workspace.open(small_workspace).features["label"])
    assert all(
        a["text"] in {fit(lbl, 40) for lbl in labels} | {"(no distinctive feature)"}
        for a in spec["layout"]["annotations"]
    )
    # a column as colour: the share of one value per cell
    at.radio(key="map_colour").set_value("column").run()
    at.selectbox(key="map_column").set_value("stars").run()
    assert not at.exception and "share stars=" in json.dumps(_spec(at)["data"][0])
    # narrowing the box lists the documents in it and its over-represented features
    lo, hi = at.slider(key="map_x").value
    at.slider(key="map_x").set_value((lo, lo + (hi - lo) * 0.4)).run()
    assert not at.exception
    docs = next(e.value for e in at.dataframe if e.proto.id.endswith("-map_docs"))
    assert len(docs) > 0 and "text" in docs.columns
    region = next(e.value for e in at.dataframe if "ratio" in e.value.columns)  # no key: found by its columns
    assert len(region) > 0 and (region["inside_rate"] > region["outside_rate"]).all()


def test_map_page_filters_change_what_is_drawn_and_selected(small_workspace, monkeypatch):
    at = _map(small_workspace, monkeypatch)
    n_all = len(_values(_spec(at)["data"][0]["x"]))
    at.selectbox(key="map_filter_col").set_value("stars").run()
    at.multiselect(key="map_filter_values_stars").set_value(["5"]).run()
    n_five = len(_values(_spec(at)["data"][0]["x"]))
    frame = Workspace.open(small_workspace).frame
    assert n_all == len(frame) and n_five == (frame["stars"] == 5).sum()
    ws = Workspace.open(small_workspace)
    j = int(ws.features.sort_values("n_active", ascending=False)["latent"].iloc[0])
    at.selectbox(key="map_filter_feature").set_value(j).run()
    fires = set(np.flatnonzero(ws.codes[:, j].toarray().ravel() > 0))
    custom = _values(_spec(at)["data"][0]["customdata"])  # one row per point; the document id comes first
    custom = custom.reshape(len(custom), -1) if custom.ndim > 1 else custom[:, None]
    shown = {int(c) for c in custom[:, 0]}
    assert shown and shown <= fires and all(frame["stars"].iloc[d] == 5 for d in shown)


def test_map_page_colours_stars_in_order_from_red_to_blue(small_workspace, monkeypatch):
    """Stars as colour were five unordered categories: the legend read 5, 1, 4, 3, 2 (commonest first) in
    five unrelated colours."""
    at = _map(small_workspace, monkeypatch)
    at.radio(key="map_colour").set_value("column").run()
    at.selectbox(key="map_column").set_value("stars").run()
    assert not at.exception
    traces = [t for t in _spec(at)["data"] if t.get("name") in {"1", "2", "3", "4", "5"}]
    assert [t["name"] for t in traces] == ["1", "2", "3", "4", "5"]
    rgb = [[float(v) for v in t["marker"]["color"].split("(")[1].rstrip(")").split(",")] for t in traces]
    assert len({tuple(c) for c in rgb}) == 5 and rgb[0][0] > rgb[0][2] and rgb[-1][2] > rgb[-1][0], "1 red, 5 blue"
    frame = Workspace.open(small_workspace).frame
    assert [len(_values(t["x"])) for t in traces] == [int((frame["stars"] == s).sum()) for s in range(1, 6)]


def test_a_category_of_many_values_is_drawn_in_distinct_colours_the_rare_ones_as_one_grey_other(
    tmp_path, yelp_frames, yelp_embedded, monkeypatch
):
    """A column of four categories was drawn in the theme's two blues and two reds (cs.AI beside stat.ML); one of
    twelve repeated colours."""
    frame = small_frame(yelp_frames).iloc[:240].copy()
    counts = [40, 35, 30, 25, 22, 20, 18, 15, 12, 10, 8, 5]  # 12 values, city 00 the commonest
    frame["city"] = np.repeat([f"city {i:02d}" for i in range(12)], counts)
    out = tmp_path / "cities"
    build_workspace(out, frame=frame, text_col="text", m=SMALL_M, k=SMALL_K)
    at = _map(out, monkeypatch)
    at.radio(key="map_colour").set_value("column").run()
    at.selectbox(key="map_column").set_value("city").run()
    assert not at.exception
    traces = [t for t in _spec(at)["data"] if t.get("marker", {}).get("color") and t.get("name")]
    names = [t["name"] for t in traces]
    assert names[:9] == [f"city {i:02d}" for i in range(9)] and names[9:] == ["other (3 values)"]
    colours = [t["marker"]["color"] for t in traces]
    assert len(set(colours[:9])) == 9 and colours[9] == "#7f7f7f", "nine hues, the rest grey"
    assert sum(len(_values(t["x"])) for t in traces) == 240, "every document drawn"
    assert len(_values(traces[9]["x"])) == int(frame["city"].isin(["city 09", "city 10", "city 11"]).sum())


def test_rare_values_fold_into_one_other_past_the_colours_a_reader_tells_apart():
    labels = np.array(["a", "b", "a", "c", "d", "e", "a", "b"], dtype=object)
    folded, legend = fold_rare_values(labels, ["a", "b", "c", "d", "e"], keep=2)
    assert legend == ["a", "b", "other (3 values)"]
    assert folded.tolist() == ["a", "b", "a"] + ["other (3 values)"] * 3 + ["a", "b"]
    same, legend = fold_rare_values(labels, ["a", "b", "c"], keep=2)  # one more value than colours: no "other"
    assert legend == ["a", "b", "c"] and same is labels


def test_category_values_list_numbers_in_order_and_other_values_commonest_first():
    stars = pd.Series([5, 5, 5, 1, 4, 4, 2, None])  # floats, for the gap
    assert category_values(stars) == (["1", "2", "4", "5"], True)
    assert category_labels(stars).tolist() == ["5", "5", "5", "1", "4", "4", "2", "(missing)"]
    assert category_values(pd.Series([0.5, 1.5, 0.5])) == (["0.5", "1.5"], True)
    decision = pd.Series([0, 2, -1, 1, 0], name="Decision")  # ICLR: workshop, reject, oral, poster: codes
    assert category_values(decision) == (["-1", "0", "1", "2"], False)
    frame = pd.DataFrame({"stars": stars})
    assert filter_mask(frame, "stars", ["5", "(missing)"]).tolist() == [1, 1, 1, 0, 0, 0, 0, 1]
    venue = pd.Series(["ACL", "NeurIPS", "NeurIPS", "ICML", "NeurIPS", "ICML"])
    assert category_values(venue) == (["NeurIPS", "ICML", "ACL"], False)
    assert category_values(pd.Series([True, False, True])) == (["True", "False"], False)


def test_a_workspace_without_its_map_computes_it_in_the_background(tmp_path, yelp_frames, yelp_embedded, monkeypatch):
    out = tmp_path / "no-map"
    build_workspace(out, frame=small_frame(yelp_frames).iloc[:200], text_col="text", m=SMALL_M, k=SMALL_K, layout=False)
    assert not Workspace.open(out).has_layout
    at = _map(out, monkeypatch)
    # said as a step of the first visit, not as something the user left out of the build
    assert any(i.value.startswith("Laying out the map: the first visit computes it") for i in at.info)
    assert not any("built without" in i.value for i in at.info)
    assert not at.get("plotly_chart")
    deadline = time.time() + 300
    while not Workspace.open(out).has_layout and time.time() < deadline:
        time.sleep(1)
    at.run()
    assert not at.exception and at.get("plotly_chart"), "the map appears once the background job is done"
