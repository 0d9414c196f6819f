"""Every dashboard page under streamlit.testing.v1.AppTest, on a small workspace built from real Yelp reviews."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest
from ws_fixtures import small_workspace  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 300


@pytest.fixture
def app_env(monkeypatch, small_workspace, tmp_path):
    monkeypatch.setenv("HSAE_WORKSPACE", str(small_workspace))
    monkeypatch.setenv("HSAE_WORKSPACES_DIR", str(tmp_path / "workspaces"))
    return small_workspace


def page(name: str) -> AppTest:
    at = AppTest.from_file(str(REPO / name), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    return at


# Dataframes without a selection have no key in the element tree, so they are found by their place on the page.
ORDER = {
    "feature_table": 0, "top_docs": 1, "quantile_docs": 2, "nearest": 3, "cooccurring": 4, "try_result": 5,
    "steered_results": 0, "baseline_results": 1, "left_results": 2,
    "hyp_table": 0, "hyp_support": 1, "hyp_counter": 2,
    "region_features": 0, "corpus_head": 0,
}


def df(at: AppTest, key: str):
    frames = at.dataframe
    for element in frames:
        if element.proto.id.endswith("-" + key):
            return element.value
    assert len(frames) > ORDER[key], f"dataframe {key} not shown (page has {len(frames)} tables)"
    return frames[ORDER[key]].value


def test_overview_shows_corpus_and_sae(app_env):
    at = page("app.py")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Documents"] == "600" and metrics["SAE shape"] == "m=64, k=4"
    assert 0 < float(metrics["Normalised MSE"]) < 1
    assert at.get("plotly_chart"), "density histogram drawn"
    assert "Feature density" in at.get("plotly_chart")[0].proto.spec


def test_features_page_table_feature_page_and_typed_text(app_env):
    at = page("pages/1_Features.py")
    assert len(df(at, "feature_table")) == 64
    at.selectbox(key="feat_corr_col").set_value("stars").run()
    table = df(at, "feature_table")
    assert "corr(stars)" in table.columns and table["corr(stars)"].abs().max() > 0.2
    at.number_input(key="feature_open").set_value(5).run()
    assert not at.exception
    assert at.header[0].value.startswith("Feature #5")
    top = df(at, "top_docs")
    assert len(top) > 0 and top["activation"].is_monotonic_decreasing
    assert len(df(at, "nearest")) == 10 and len(df(at, "cooccurring")) > 0
    at.text_area(key="try_text").input("The waiter ignored us and the soup was cold.")
    at.button(key="try_go").click().run()
    assert len(df(at, "try_result")) > 0
    at.text_area(key="try_text").input("   ")
    at.button(key="try_go").click().run()
    assert any("empty" in e.value for e in at.error) and not at.exception


def test_search_sliders_steer_and_untouched_sliders_match_baseline(app_env):
    at = page("pages/2_Search.py")
    at.text_input(key="search_text").input("great tacos and cheap margaritas").run()
    assert not at.exception
    steered, baseline = df(at, "steered_results"), df(at, "baseline_results")
    np.testing.assert_array_equal(steered["doc"], baseline["doc"])
    sliders = [s for s in at.slider if s.key.startswith("steer_")]
    assert sliders, "the query's features become sliders"
    first = sliders[0]
    first.set_value(first.min).run()  # push the strongest feature far below zero
    assert not at.exception
    moved = df(at, "steered_results")
    assert not np.array_equal(moved["doc"], baseline["doc"])
    np.testing.assert_array_equal(df(at, "baseline_results")["doc"], baseline["doc"])
    assert (moved["change"] == "new").any() and any("entered" in s.value for s in at.success)


def test_search_back_to_start_value_reproduces_baseline_and_more_like_this(app_env):
    at = page("pages/2_Search.py")
    at.radio(key="search_mode").set_value("More like this document").run()
    at.number_input(key="search_doc").set_value(42).run()
    base = df(at, "baseline_results")
    assert base["doc"].iloc[0] == 42
    slider = [s for s in at.slider if s.key.startswith("steer_")][0]
    start = slider.value
    slider.set_value(slider.max).run()
    assert not np.array_equal(df(at, "steered_results")["doc"], base["doc"])
    [s for s in at.slider if s.key == slider.key][0].set_value(start).run()
    np.testing.assert_array_equal(df(at, "steered_results")["doc"], base["doc"])
    np.testing.assert_array_equal(df(at, "steered_results")["score"], base["score"])


def test_search_empty_query_is_a_message_not_a_crash(app_env):
    at = page("pages/2_Search.py")
    assert any("Type a query" in i.value for i in at.info)
    at.text_input(key="search_text").input("   ").run()
    assert not at.exception and any("empty" in e.value for e in at.error)


def test_hypotheses_run_shows_table_evidence_and_past_runs(app_env):
    at = page("pages/3_Hypotheses.py")
    assert at.selectbox(key="hyp_target").value == "stars"
    at.radio(key="hyp_split").set_value("by column").run()
    assert at.selectbox(key="hyp_split_col").value == "split"
    assert at.selectbox(key="hyp_holdout_value").value == "holdout"
    at.number_input(key="hyp_n").set_value(5)
    at.button(key="hyp_run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    table = df(at, "hyp_table")
    assert len(table) == 5
    for col in ["latent", "hypothesis", "threshold", "prevalence", "separation", "separation_p", "coef", "coef_p",
                "significant_bonferroni", "significant_fdr"]:
        assert col in table.columns
    # The run used the workspace's own SAE: its latents are the Features page's features.
    from hsae_core.workspace import Workspace

    ws = Workspace.open(app_env)
    summary = ws.list_runs()[0]["summary"]
    assert "this workspace's SAE" in summary["sae"]["origin"]
    assert summary["sae"]["m"] == ws.overview()["m"] and table["latent"].lt(ws.overview()["m"]).all()
    support, counter = df(at, "hyp_support"), df(at, "hyp_counter")
    assert len(support) + len(counter) > 0 and "stars" in support.columns
    assert at.get("download_button")
    # The run is saved in the workspace and reopens from disk in a fresh session.
    again = page("pages/3_Hypotheses.py")
    assert len(again.selectbox(key="hyp_run_pick").options) >= 1
    assert len(df(again, "hyp_table")) == 5


def test_hypotheses_llm_without_key_is_a_clear_error(app_env):
    at = page("pages/3_Hypotheses.py")
    at.selectbox(key="hyp_interp").set_value("llm")
    at.button(key="hyp_run").click().run()
    assert not at.exception
    assert any("OPENAI_API_KEY" in e.value for e in at.error)


def test_map_page_layout_and_region_features(app_env):
    at = page("pages/4_Map.py")
    chart = at.get("plotly_chart")[0].proto.spec
    assert '"x"' in chart and "feature #" in chart
    x = at.slider(key="map_x")
    lo, hi = x.value
    x.set_value((lo, lo + (hi - lo) * 0.3)).run()
    assert not at.exception
    region = df(at, "region_features")
    assert len(region) > 0 and (region["inside_rate"] > region["outside_rate"]).all()
    at.radio(key="map_colour").set_value("column").run()
    assert "stars" in at.get("plotly_chart")[0].proto.spec


def test_bad_upload_shows_an_error_not_a_traceback(app_env):
    at = page("app.py")
    uploader = at.get("file_uploader")[0]
    uploader.set_value(("broken.parquet", b"not parquet at all", "application/octet-stream"))
    at.run()
    assert not at.exception
    assert any("Could not use broken.parquet" in e.value for e in at.error)


def test_no_workspace_and_no_data_says_what_to_download(monkeypatch, tmp_path):
    monkeypatch.delenv("HSAE_WORKSPACE", raising=False)
    monkeypatch.setenv("HSAE_WORKSPACES_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("HSAE_DATA_DIR", str(tmp_path / "empty-data"))
    at = page("app.py")
    text = " ".join(e.value for e in at.error)
    assert "yelp-demo-val-2K.jsonl" in text and "demo_data" in text
    for name in ["pages/1_Features.py", "pages/2_Search.py", "pages/3_Hypotheses.py", "pages/4_Map.py"]:
        assert any("No workspace yet" in i.value for i in page(name).info)
