"""Every dashboard page under streamlit.testing.v1.AppTest, through app.py's navigation, on small workspaces built
from real Yelp reviews and real Upworthy headlines."""

from __future__ import annotations

import dataclasses
import html
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest
from ws_fixtures import (  # noqa: F401
    finish_jobs,
    first_start_with_demo_data,
    held_jobs,
    progress_lines,
    small_workspace,
    upworthy_frame,
    upworthy_workspace,
    wait_until,
)

from hsae_core import settings
from hsae_core.labelsets import features_with_labels
from hsae_core.pipeline import HypothesisConfig
from hsae_core.report import verdict_line
from hsae_core.splits import duplicate_mask
from hsae_core.workspace import DEMO_NAME, Workspace

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 300


@pytest.fixture
def app_env(monkeypatch, small_workspace, tmp_path):
    monkeypatch.setenv("HSAE_WORKSPACE", str(small_workspace))
    monkeypatch.setenv("HSAE_WORKSPACES_DIR", str(tmp_path / "workspaces"))
    return small_workspace


@pytest.fixture
def app_env_without_runs(monkeypatch, small_workspace, tmp_path):
    """A copy of the small workspace without saved hypothesis runs (test_browser saves some in the shared one)."""
    copy = tmp_path / "copy" / small_workspace.name
    shutil.copytree(small_workspace, copy, ignore=shutil.ignore_patterns("runs"))
    monkeypatch.setenv("HSAE_WORKSPACE", str(copy))
    monkeypatch.setenv("HSAE_WORKSPACES_DIR", str(tmp_path / "workspaces"))
    return copy


@pytest.fixture
def upworthy_env(monkeypatch, upworthy_workspace, tmp_path):
    monkeypatch.setenv("HSAE_WORKSPACE", str(upworthy_workspace))
    monkeypatch.setenv("HSAE_WORKSPACES_DIR", str(tmp_path / "workspaces"))
    return upworthy_workspace


def page(name: str = "Overview", **query) -> AppTest:
    """The app as a browser opens it: app.py's navigation, then the named page (with ?query parameters)."""
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    if name != "Overview":
        at.switch_page(f"pages/{ {'Features': 1, 'Search': 2, 'Hypotheses': 3, 'Map': 4}[name] }_{name}.py")
        for key, value in query.items():
            at.query_params[key] = str(value)
        at.run()
        assert not at.exception, at.exception
    return at


# Each page in turn in one fresh interpreter, as a server's first visitor opens it, and the heavy libraries
# loaded after it (the Search page encodes the query, so it loads the SAE's estimator and is run last).
_PAGES_IN_A_FRESH_PROCESS = """
import sys
from streamlit.testing.v1 import AppTest
at = AppTest.from_file("app.py", default_timeout=300)
at.run()
for page in sys.argv[1:]:
    if page != "app.py":
        at.switch_page(page)
        at.run()
    assert not at.exception and not at.error, ([e.value for e in at.exception], [e.value for e in at.error])
    print(page, [m for m in ("torch", "sklearn") if m in sys.modules])
"""


def test_pages_that_encode_no_text_open_without_torch(app_env):
    # Opening a workspace loaded the SAE's estimator, so every first page paid 2-3 s importing torch and
    # scikit-learn for facts its files hold (bench/first_page.py measures what the user waits)
    pages = ["app.py", "pages/1_Features.py", "pages/3_Hypotheses.py", "pages/4_Map.py", "pages/2_Search.py"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", _PAGES_IN_A_FRESH_PROCESS, *pages],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    loaded = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if line.split(" ", 1)[0] in pages)
    # the Map may import scikit-learn, on which UMAP is built, when it lays out a workspace for the first time
    assert {page: loaded[page] for page in pages[:3]} == dict.fromkeys(pages[:3], "[]"), loaded
    assert "torch" not in loaded["pages/4_Map.py"] and "torch" in loaded["pages/2_Search.py"], loaded


# Dataframes without a selection have no key in the element tree, so they are found by their place on the page.
ORDER = {"nearest": 3, "cooccurring": 4, "try_result": 5, "region_features": 1, "corpus_head": 0}


def full_key(at: AppTest, key: str):
    """The key of the table shown as ``key`` (pages suffix keys per feature, query or run: ``top_docs_5``)."""
    for element in at.dataframe:
        found = re.search(rf"-({re.escape(key)}(?:_.*)?)$", element.proto.id)
        if found:
            return found.group(1), element
    return None, None


def df(at: AppTest, key: str):
    frames = at.dataframe
    _, element = full_key(at, key)
    if element is not None:
        return element.value
    assert key in ORDER and len(frames) > ORDER[key], f"dataframe {key} not shown (page has {len(frames)} tables)"
    return frames[ORDER[key]].value


def click_row(at: AppTest, key: str, row: int) -> AppTest:
    """What a click on a table row sends: the selection state of that dataframe."""
    name, _ = full_key(at, key)
    assert name, f"no table {key}"
    at.session_state[name] = {"selection": {"rows": [row], "columns": [], "cells": []}}
    return at.run()


def column_formats(at: AppTest, key: str) -> dict:
    """{column: its number format} as the table is configured to show it."""
    _, element = full_key(at, key)
    element = element if element is not None else at.dataframe[ORDER[key]]
    config = json.loads(element.proto.columns or "{}")
    return {col: c["type_config"]["format"] for col, c in config.items() if (c.get("type_config") or {}).get("format")}


def texts(workspace) -> list[str]:
    return Workspace.open(workspace).texts


def last_run(workspace) -> Path:
    return Path(Workspace.open(workspace).list_runs()[0]["path"])


def shown_documents(at: AppTest) -> list[str]:
    """The plain text of the documents shown by the reader panels (st.html with <mark> highlights)."""
    return [html.unescape(re.sub(r"<[^>]+>", "", h.proto.body)) for h in at.get("html")]


def test_overview_is_the_first_page_and_shows_validation_nmse(app_env):
    at = page()
    assert at.title[0].value == "hsae: Overview"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Documents"] == "600" and metrics["SAE shape"] == "m=64, k=4"
    m_all = 64 + 2 + 3 + 4 + 5 + 16 + 128
    assert f"+ 6 levels: 2/1, 3/1, 4/1, 5/1, 16/2, 128/16; {m_all} features in all" in [c.value for c in at.caption]
    manifest = Workspace.open(app_env).manifest
    assert metrics["Validation NMSE"] == f"{manifest['sae']['metrics']['val_nmse']:.3f}"
    assert at.get("plotly_chart"), "density histogram drawn"
    assert "Feature density" in at.get("plotly_chart")[0].proto.spec
    links = [link.proto.label for link in at.get("page_link")]
    assert any(label.startswith("Features") for label in links) and any("Hypotheses" in x for x in links)


def test_features_table_row_click_opens_the_feature_and_documents_read_in_full(app_env):
    at = page("Features")
    table = df(at, "feature_table")
    n_levels = sum(s for s, _ in settings.SAE.levels)
    assert len(table) == 64 + n_levels and table["level"].iloc[0] == "2/1" and table["level"].iloc[-1] == "128/16"
    levels = list(dict.fromkeys(table["level"]))  # broad to fine: the levels in order of their size
    assert levels == sorted(levels, key=lambda name: int(name.split("/")[0])) and "64/4" in levels
    first = int(table["latent"].iloc[0])  # the page opens on the table's first feature: the broadest level's busiest
    assert at.header[0].value.startswith(f"Feature #{first}:") and table["density"].iloc[0] >= table["density"].iloc[1]
    at.selectbox(key="feat_level").set_value("4/1").run()  # one level's features: four broad groups
    assert df(at, "feature_table")["level"].tolist() == ["4/1"] * 4
    at.selectbox(key="feat_level").set_value("all levels").run()
    click_row(at, "feature_table", 5)
    assert not at.exception
    opened = int(table["latent"].iloc[5])
    assert at.header[0].value.startswith(f"Feature #{opened}:")
    assert at.query_params["feature"] in (str(opened), [str(opened)])
    # The number box still works after a click, and a new click wins over it.
    at.number_input(key="feature_open").set_value(9).run()
    assert at.header[0].value.startswith("Feature #9:")
    top = df(at, "top_docs")
    assert len(top) > 0 and top["activation"].is_monotonic_decreasing
    corpus = texts(app_env)
    assert all(t == corpus[d] for d, t in zip(top["doc"], top["text"])), "table cells hold the whole text"
    click_row(at, "top_docs", 0)
    doc = int(top["doc"].iloc[0])
    assert corpus[doc] in shown_documents(at), "the clicked document is shown whole"
    assert len(df(at, "nearest")) == 10 and len(df(at, "cooccurring")) > 0
    # one number of decimals down a column ("fires on" in %, cosines and lifts to three; rounding printed 0.47)
    assert column_formats(at, "feature_table")["density"] == "%.1f%%" and table["density"].max() > 1
    assert column_formats(at, "nearest")["cosine"] == "%.3f" and "latent" not in column_formats(at, "nearest")
    assert {"share", "lift"} <= set(column_formats(at, "cooccurring"))
    # Their headers say what they mean ("lift", "share", "cosine" stood there unexplained)
    for key, cols in (("nearest", ["cosine"]), ("cooccurring", ["together", "share", "lift"])):
        _, element = full_key(at, key)
        element = element if element is not None else at.dataframe[ORDER[key]]
        config = json.loads(element.proto.columns or "{}")
        assert all(config[c].get("help") for c in cols), (key, config)
    # A label's held-out scores are named as on the Hypotheses page and in `hsae features` (it said "fidelity AUC")
    _, element = full_key(at, "feature_table")
    config = json.loads((element if element is not None else at.dataframe[ORDER["feature_table"]]).proto.columns)
    assert (config["fidelity_auc"]["label"], config["fidelity_f1"]["label"]) == ("label AUC", "label F1"), config
    # The open feature's share reads as its "fires on" cell does (62.6%, not 62.58% below 62.6% in the table)
    share = {m.label: m.value for m in at.metric}["Share of documents where it fires"]
    assert share == f"{table.set_index('latent')['density'].loc[9]:.1f}%", share
    # Prevalence opens on the column a user means (stars), not on the val/holdout bookkeeping listed first
    prevalence = at.selectbox(key="prev_col")
    assert prevalence.value == "stars" and "split" in prevalence.options, prevalence.options


def test_features_link_with_query_parameter_opens_that_feature(app_env):
    at = page("Features", feature=7)
    assert at.header[0].value.startswith("Feature #7:")


def test_features_correlation_with_a_text_category_asks_for_its_value(app_env):
    at = page("Features")
    at.selectbox(key="feat_corr_col").set_value("stars").run()
    table = df(at, "feature_table")
    assert "corr(stars)" in table.columns and table["corr(stars)"].abs().max() > 0.2
    # beside the label, the strongest first of either sign (it was the last column, the table unsorted)
    assert list(table.columns).index("corr(stars)") == list(table.columns).index("label") + 1
    strength = table["corr(stars)"].abs().fillna(-1).to_numpy()
    assert (np.diff(strength) <= 0).all()
    # the strongest feature heads the table and is the one open below it (the page kept the old order's first)
    assert at.header[0].value.startswith(f"Feature #{int(table['latent'].iloc[0])}:"), at.header[0].value
    at.number_input(key="feature_open").set_value(9).run()  # a feature the user opens stays open on a new order
    at.selectbox(key="feat_corr_col").set_value("(none)").run()
    assert at.header[0].value.startswith("Feature #9:")
    at.selectbox(key="feat_corr_col").set_value("split").run()  # a `str` column under pandas 3
    assert at.selectbox(key="feat_corr_val").options == ["holdout", "val"]
    assert not at.warning and "corr(split=holdout)" in df(at, "feature_table").columns
    at.text_area(key="try_text").input("The waiter ignored us and the soup was cold.")
    at.button(key="try_go").click().run()
    assert len(df(at, "try_result")) > 0
    at.text_area(key="try_text").input("   ")
    at.button(key="try_go").click().run()
    assert any("empty" in e.value for e in at.error) and not at.exception


def test_the_corpus_sample_heads_the_texts_with_their_column_and_promises_no_reader(upworthy_env):
    at = page()
    assert any("Text column:" in m.value and "headline" in m.value for m in at.markdown)
    _, element = full_key(at, "corpus_head")
    element = element if element is not None else at.dataframe[ORDER["corpus_head"]]
    config = json.loads(element.proto.columns or "{}")["headline"]
    # It read "text" above Upworthy's headlines, and its help said "Click the row to read the whole text", where a
    # click on this table opens nothing
    assert config["label"] == "headline" and "Click" not in config.get("help", ""), config


def test_features_correlation_adjusted_for_the_ab_test_is_the_within_test_correlation(upworthy_env):
    at = page("Features")
    at.selectbox(key="feat_corr_col").set_value("ctr").run()
    assert "clickability_test_id" in at.multiselect(key="feat_corr_controls_ctr").options
    at.multiselect(key="feat_corr_controls_ctr").select("clickability_test_id").run()
    assert not at.exception and not at.warning, [w.value for w in at.warning]
    table = df(at, "feature_table")
    (name,) = [c for c in table.columns if c.endswith("| clickability_test_id")]
    assert table[name].abs().max() > 0.05
    # the same number as correlating each feature's activation and ctr, each less its own test's mean
    ws = Workspace.open(upworthy_env)
    frame, codes = ws.frame, ws.codes.toarray()
    tests = frame["clickability_test_id"]
    ctr = frame["ctr"].to_numpy(float)
    y = ctr - frame.groupby("clickability_test_id")["ctr"].transform("mean").to_numpy()
    A = codes - pd.DataFrame(codes).groupby(tests.to_numpy()).transform("mean").to_numpy()
    for latent, shown in zip(table["latent"], table[name]):
        a = A[:, int(latent)]
        expected = 0.0 if np.linalg.norm(a) < 1e-8 else a @ y / (np.linalg.norm(a) * np.linalg.norm(y))
        assert shown == pytest.approx(expected, abs=1e-6), latent


def test_search_sliders_steer_and_untouched_sliders_match_baseline(app_env):
    at = page("Search")
    at.text_input(key="search_text").input("great tacos and cheap margaritas").run()
    assert not at.exception
    steered, baseline = df(at, "steered_results"), df(at, "baseline_results")
    np.testing.assert_array_equal(steered["doc"], baseline["doc"])
    assert list(steered.columns[:4]) == ["rank", "doc", "change", "text"], "the text stays in view"
    corpus = texts(app_env)
    assert all(t == corpus[d] for d, t in zip(steered["doc"], steered["text"]))
    sliders = [s for s in at.slider if s.key.startswith("steer_")]
    assert sliders, "the query's features become sliders"
    assert len(sliders) == 12, "the strongest 12 of the query's 4 + levels' active features, no wall of sliders"
    first = sliders[0]
    first.set_value(first.min).run()  # push the strongest feature far below zero
    assert not at.exception
    moved = df(at, "steered_results")
    assert not np.array_equal(moved["doc"], baseline["doc"])
    np.testing.assert_array_equal(df(at, "baseline_results")["doc"], baseline["doc"])
    assert (moved["change"] == "new").any() and any("entered" in s.value for s in at.success)
    click_row(at, "steered_results", 0)
    doc = int(df(at, "steered_results")["doc"].iloc[0])
    assert corpus[doc] in shown_documents(at), "the clicked document is shown whole"


def test_more_like_this_leaves_out_the_query_and_back_to_start_reproduces_baseline(app_env):
    at = page("Search")
    at.radio(key="search_mode").set_value("More like this document").run()
    at.number_input(key="search_doc").set_value(42).run()
    base = df(at, "baseline_results")
    assert 42 not in base["doc"].tolist() and len(base) == 10
    slider = [s for s in at.slider if s.key.startswith("steer_")][0]
    start = slider.value
    slider.set_value(slider.max).run()
    assert not np.array_equal(df(at, "steered_results")["doc"], base["doc"])
    assert 42 not in df(at, "steered_results")["doc"].tolist()
    [s for s in at.slider if s.key == slider.key][0].set_value(start).run()
    np.testing.assert_array_equal(df(at, "steered_results")["doc"], base["doc"])
    np.testing.assert_array_equal(df(at, "steered_results")["score"], base["score"])


def test_search_sidebar_says_how_to_list_features_to_add(app_env):
    at = page("Search")
    at.text_input(key="search_text").input("friendly staff").run()
    assert not at.exception
    # The "Add to the sliders" list is empty until a word finds features; it said only "No options to select"
    assert any("to list features to add" in c.value for c in at.sidebar.caption), [c.value for c in at.sidebar.caption]
    at.sidebar.text_input(key="add_query").input("zzzqqq").run()
    assert any("zzzqqq" in c.value and "try another word" in c.value for c in at.sidebar.caption)
    keywords = Workspace.open(app_env).features["keywords"].dropna().astype(str)
    word = keywords[keywords.str.strip() != ""].iloc[0].split(",")[0].strip()
    at.sidebar.text_input(key="add_query").input(word).run()
    assert at.sidebar.multiselect[0].options and not any("features to add" in c.value for c in at.sidebar.caption)


def test_search_empty_query_is_a_message_not_a_crash(app_env):
    at = page("Search")
    assert any("Type a query" in i.value for i in at.info)
    # Said once: the page showed a second box that repeated the first ("Type a query to search the documents (or
    # switch to 'More like this document')." above "Type a query (or pick a document for 'more like this'). ...").
    assert len(at.info) == 1, [i.value for i in at.info]
    # The example in the box is one of this corpus's feature labels, not a fixed Yelp sentence
    example = at.text_input(key="search_text").placeholder.removeprefix("e.g. ")
    labels = features_with_labels(Workspace.open(app_env), None)
    assert example in set(labels.loc[labels["density"].between(0.01, 0.2), "label"])
    at.text_input(key="search_text").input("   ").run()
    assert not at.exception and any("empty" in e.value for e in at.error)


def test_hypotheses_defaults_run_table_effects_and_evidence(app_env_without_runs):
    app_env = app_env_without_runs
    at = page("Hypotheses")
    assert at.selectbox(key="hyp_target").value == "stars"
    assert at.radio(key="hyp_split").value == "random rows"
    assert at.radio(key="hyp_features").value == "this workspace's features"
    assert at.checkbox(key="hyp_dedupe").value is True
    # "Levels" changes the SAE, so it is offered only when a run trains a new one (tested below).
    assert not [c for c in at.checkbox if c.key == "hyp_levels"]
    # The hint before a run names the control the results table has (a box to tick), as the table's caption does;
    # it said "Click a result row", and a click on a row selects nothing
    assert any("Tick a result row's box" in i.value for i in at.info), [i.value for i in at.info]
    at.number_input(key="hyp_n").set_value(5)
    finish_jobs(at.button(key="hyp_run").click().run())
    assert not at.exception and not at.error, [e.value for e in at.error]
    metrics = {m.label: m.value for m in at.metric}
    assert list(metrics)[:3] == ["Holdout R² (5-fold CV)", "Embedding ceiling R²", "Holdout R² (in sample)"]
    assert float(metrics["Embedding ceiling R²"]) > 0
    table = df(at, "hyp_table")
    assert len(table) == 5
    for col in ["latent", "hypothesis", "threshold", "prevalence", "separation", "separation_p", "coef", "coef_p"]:
        assert col in table.columns
    assert all(isinstance(p, str) and p != "0.0" for p in table["coef_p"]), "p-values are formatted, never 0"
    # Shares read in % with one decimal in every row (Streamlit's "percent" showed 17.5% beside 30.38%)
    assert column_formats(at, "hyp_table")["prevalence"] == "%.1f%%"
    run_table = pd.read_csv(last_run(app_env) / "hypotheses.csv")
    np.testing.assert_allclose(table["prevalence"], run_table["prevalence"] * 100)
    assert any(" · interpreter: phrases · annotator: activation" in c.value for c in at.caption)  # names, not classes
    # Presence is the learned threshold (the default), as the terminal says; the caption said "present where its
    # feature fires", which is --presence positive
    said = [c.value for c in at.caption if "annotator: activation" in c.value][0]
    assert "present where the feature's activation > its threshold learned on the training split" in said, said
    assert "where its feature fires" not in said
    assert "Effect of each hypothesis" in at.get("plotly_chart")[-1].proto.spec
    # The run used the workspace's own SAE: its latents are the Features page's features.
    from hsae_core.workspace import Workspace

    ws = Workspace.open(app_env)
    summary = ws.list_runs()[0]["summary"]
    assert "this workspace's SAE" in summary["sae"]["origin"]
    assert summary["sae"]["m"] == ws.overview()["m"] and table["latent"].lt(ws.overview()["m"]).all()
    assert at.get("download_button")

    corpus = texts(app_env)
    frame = Workspace.open(app_env).frame
    click_row(at, "hyp_table", 2)
    latent = int(table["latent"].iloc[2])
    assert any(f"(feature #{latent})" in s.value for s in at.subheader)
    link = at.get("page_link")[-1].proto
    assert link.page == "Features" and link.query_string == f"feature={latent}&ws={app_env.name}"  # with its workspace
    # The run names the feature from its training rows; where the Features page calls it otherwise, the link
    # gives that name too, so a reader knows they are one feature
    page_label = ws.features["label"].iloc[latent]
    named = table["hypothesis"].iloc[2]
    assert link.label == f"Open feature #{latent} on the Features page" + (
        "" if page_label == named else f" (labelled there “{page_label}”)"
    )
    support, counter = df(at, "hyp_support"), df(at, "hyp_counter")
    assert len(support) + len(counter) > 0
    for part in (support, counter):
        assert part["activation"].is_monotonic_decreasing, "strongest first"
        assert list(part["stars"]) == frame["stars"].to_numpy()[part["doc"]].tolist(), "the target beside each"
        assert all(t == corpus[d] for d, t in zip(part["doc"], part["text"]))
    run_dir = last_run(app_env)
    centre = pd.read_parquet(run_dir / "holdout_annotations.parquet")["target"].mean()
    sign = np.sign(pd.read_csv(run_dir / "hypotheses.csv").set_index("latent").loc[latent, "separation"])
    assert (np.sign(support["stars"] - centre) == sign).all() and (np.sign(counter["stars"] - centre) == -sign).all()
    # The run is saved in the workspace and reopens from disk in a fresh session.
    again = page("Hypotheses")
    assert len(again.selectbox(key="hyp_run_pick").options) >= 1
    assert len(df(again, "hyp_table")) == 5


def test_a_small_holdout_tests_fewer_hypotheses_and_the_results_say_so(app_env):
    at = page("Hypotheses")
    finish_jobs(at.button(key="hyp_run").click().run())  # n 20 asked; 20% of 600 documents is 120 holdout rows
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert len(df(at, "hyp_table")) == 6
    said = [c.value for c in at.caption if c.value.startswith("6 hypotheses, not 20:")]
    assert said and said[0].endswith("a larger holdout fraction tests more.")
    at.slider(key="hyp_frac").set_value(0.5)
    finish_jobs(at.button(key="hyp_run").click().run())
    assert len(df(at, "hyp_table")) == 15  # 300 holdout rows


def test_hypotheses_default_run_learns_thresholds_on_the_workspace_features(app_env):
    at = page("Hypotheses")
    at.number_input(key="hyp_n").set_value(5)
    finish_jobs(at.button(key="hyp_run").click().run())  # a first run, so the past-runs picker already holds a choice
    assert not at.exception and not at.error, [e.value for e in at.error]
    at.number_input(key="hyp_n").set_value(6)
    finish_jobs(at.button(key="hyp_run").click().run())
    assert not at.exception and not at.error, [e.value for e in at.error]
    run_dir = last_run(app_env)
    assert at.selectbox(key="hyp_run_pick").value == str(run_dir), "the page shows the run just made"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["config"]["presence"] == "learned" and summary["config"]["max_overlap"] == 0.5
    # The page's defaults are the library's (a user gets what `hsae hypothesize` with no flags gives).
    assert summary["config"]["select"] == HypothesisConfig().select == "stepwise"
    assert "this workspace's SAE" in summary["sae"]["origin"]  # still the Features page's features
    # Each holdout annotation is the workspace feature's activation above the threshold the run learned.
    from hsae_core.workspace import Workspace

    codes = Workspace.open(app_env).codes
    stored = pd.read_csv(run_dir / "hypotheses.csv")
    assert len(stored) == 6 and (stored["threshold"] > 0).any(), "learned cuts, not only 'fires at all'"
    annotations = pd.read_parquet(run_dir / "holdout_annotations.parquet")
    rows = annotations["row_id"].to_numpy()
    for col, latent, threshold in zip(stored["annotation_col"], stored["latent"], stored["threshold"]):
        activation = codes[rows][:, int(latent)].toarray().ravel()
        np.testing.assert_array_equal(annotations[col].to_numpy() > 0, activation > threshold)
    np.testing.assert_allclose(df(at, "hyp_table")["threshold"].to_numpy(), stored["threshold"].to_numpy())


def test_a_few_valued_numeric_target_can_be_read_as_classes(app_env):
    at = page("Hypotheses")
    assert at.radio(key="hyp_read_as_stars").value == "a score" and not [
        s for s in at.selectbox if s.key == "hyp_class"
    ]
    at.radio(key="hyp_read_as_stars").set_value("classes").run()
    assert at.selectbox(key="hyp_class").options == ["every class", "1", "2", "3", "4", "5"]
    at.selectbox(key="hyp_class").set_value("5")
    at.number_input(key="hyp_n").set_value(4)
    finish_jobs(at.button(key="hyp_run").click().run())
    assert not at.exception and not at.error, [e.value for e in at.error]
    summary = json.loads((last_run(app_env) / "summary.json").read_text())
    assert summary["target"]["kind"] == "multiclass" and list(summary["metrics"]) == ["5"]
    assert any("Class 5" in m.value for m in at.markdown) and "Holdout AUC (5-fold CV)" in [m.label for m in at.metric]


def test_numbers_in_a_column_named_as_codes_are_read_as_classes_unless_a_score_is_asked_for(
    shared_data, tmp_path, monkeypatch
):
    """ICLR's Decision is -1 workshop, 0 reject, 1 oral, 2 poster: as a score, 'poster' would rank above 'oral'."""
    from hsae_core.workspace import build_workspace

    frame = pd.read_csv(shared_data / "iclr_nips_abstracts" / "ICLR17_submissions.csv").head(300)
    vectors = np.random.default_rng(0).normal(size=(len(frame), 16)).astype(np.float32)  # no embedding needed here
    ws = build_workspace(tmp_path / "iclr", frame=frame, text_col="Abstract", embeddings=vectors, m=8, k=2)
    monkeypatch.setenv("HSAE_WORKSPACE", str(ws.path))
    monkeypatch.setenv("HSAE_WORKSPACES_DIR", str(tmp_path / "none"))
    at = page("Hypotheses")
    at.selectbox(key="hyp_target").set_value("Decision").run()
    assert at.radio(key="hyp_read_as_Decision").value == "classes"
    assert at.selectbox(key="hyp_class").options == ["every class", "-1", "0", "1", "2"]
    at.radio(key="hyp_read_as_Decision").set_value("a score").run()
    at.number_input(key="hyp_n").set_value(3)
    finish_jobs(at.button(key="hyp_run").click().run())
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert json.loads((last_run(ws.path) / "summary.json").read_text())["target"]["kind"] == "continuous"
    # The Features page correlates features with one decision at a time, not with the codes as a scale
    at = page("Features")
    at.selectbox(key="feat_corr_col").set_value("Decision").run()
    assert at.selectbox(key="feat_corr_val").options == ["-1", "0", "1", "2"]
    at.selectbox(key="feat_corr_val").set_value("2").run()
    assert not at.exception and "corr(Decision=2)" in df(at, "feature_table").columns


def test_a_heavy_tailed_count_is_modelled_as_its_log_and_the_results_say_so(app_env):
    at = page("Hypotheses")
    at.selectbox(key="hyp_target").set_value("useful").run()
    assert at.radio(key="hyp_scale").value == "auto"
    at.number_input(key="hyp_n").set_value(4)
    finish_jobs(at.button(key="hyp_run").click().run())
    assert not at.exception and not at.error, [e.value for e in at.error]
    summary = json.loads((last_run(app_env) / "summary.json").read_text())
    assert summary["target"]["scale"]["applied"] == "log1p"
    said = [c.value for c in at.caption if "modelled as log(1 + useful)" in c.value]
    assert said and said[0].endswith("“as it is” keeps it as it is.")
    at.radio(key="hyp_scale").set_value("as it is")
    finish_jobs(at.button(key="hyp_run").click().run())
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "scale" not in json.loads((last_run(app_env) / "summary.json").read_text())["target"]
    assert not [c for c in at.caption if "modelled as" in c.value]


def test_hypotheses_new_sae_without_levels_is_one_dictionary(app_env):
    at = page("Hypotheses")
    at.radio(key="hyp_features").set_value("a new SAE trained on the training rows only").run()
    at.number_input(key="hyp_n").set_value(5)
    assert at.checkbox(key="hyp_levels").value is True
    at.number_input(key="hyp_m").set_value(32)
    at.number_input(key="hyp_k").set_value(8)
    at.checkbox(key="hyp_levels").uncheck().run()
    finish_jobs(at.button(key="hyp_run").click().run())
    assert not at.exception and not at.error, [e.value for e in at.error]
    summary = json.loads((last_run(app_env) / "summary.json").read_text())
    assert (summary["sae"]["m"], summary["sae"]["k"], summary["sae"]["levels"]) == (32, 8, [])
    assert "this workspace's SAE" not in summary["sae"]["origin"]
    assert "level" not in df(at, "hyp_table").columns  # one dictionary: no level to tell apart


def test_hypotheses_llm_without_key_is_a_clear_error(app_env):
    at = page("Hypotheses")
    at.selectbox(key="hyp_interp").set_value("llm")
    finish_jobs(at.button(key="hyp_run").click().run())
    assert not at.exception
    assert any("OPENAI_API_KEY" in e.value for e in at.error)


def test_upworthy_split_is_random_by_default_grouped_by_test_one_choice_away(upworthy_env, upworthy_frame):
    at = page("Hypotheses")
    assert at.selectbox(key="hyp_target").value == "ctr"  # named like a target; impressions is the first numeric
    at.selectbox(key="hyp_target").set_value("ctr").run()
    assert at.radio(key="hyp_split").value == "random rows"
    # Random rows cut A/B tests in two: said before anything runs, with the way out
    (leak,) = [w.value for w in at.warning if "holdout rows" in w.value]
    assert "'clickability_test_id'" in leak and "with a split grouped by" in leak
    # An outcome-related holdout column is flagged before anything runs, checked on the split the run makes:
    # with duplicate headlines dropped the 17 winning arms differ at p 0.04 only, kept they differ at p 0.009
    at.radio(key="hyp_split").set_value("by a column's value").run()
    at.selectbox(key="hyp_split_col").set_value("winner").run()
    at.selectbox(key="hyp_holdout_value").set_value("True").run()
    assert not any("associated with the target" in w.value for w in at.warning)
    at.checkbox(key="hyp_dedupe").uncheck().run()
    assert any("associated with the target" in w.value for w in at.warning)
    at.checkbox(key="hyp_dedupe").check()
    # The grouped split: one choice, the test id preselected.
    at.radio(key="hyp_split").set_value("grouped by a column").run()
    assert at.selectbox(key="hyp_group_col").value == "clickability_test_id"
    assert not any("associated with the target" in w.value or "share their" in w.value for w in at.warning)
    at.number_input(key="hyp_n").set_value(4)
    finish_jobs(at.button(key="hyp_run").click().run())
    assert not at.exception and not at.error, [e.value for e in at.error]
    run_dir = last_run(upworthy_env)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["split"]["method"] == "grouped" and summary["split"]["column"] == "clickability_test_id"
    dups = int(upworthy_frame["headline"].duplicated().sum())
    assert summary["split"]["dropped_duplicate_text"] >= dups > 0
    hold = set(pd.read_parquet(run_dir / "holdout_annotations.parquet")["row_id"])
    tests_hold = set(upworthy_frame["clickability_test_id"].iloc[sorted(hold)])
    kept = np.flatnonzero(~duplicate_mask(upworthy_frame["headline"]))
    train_rows = set(kept.tolist()) - hold
    assert len(train_rows) + len(hold) == len(kept)
    assert not tests_hold & set(upworthy_frame["clickability_test_id"].iloc[sorted(train_rows)])
    assert any("duplicate texts dropped" in c.value for c in at.caption)


def test_hypotheses_adjusted_for_the_ab_test_compare_headlines_within_it(upworthy_env):
    at = page("Hypotheses")
    at.selectbox(key="hyp_target").set_value("ctr").run()
    options = at.multiselect(key="hyp_controls_ctr").options
    assert "clickability_test_id" in options and "test_week" in options
    assert "headline" not in options and "ctr" not in options  # the text and the target are not controls
    assert at.radio(key="hyp_split").value == "random rows"
    at.multiselect(key="hyp_controls_ctr").select("clickability_test_id").run()
    # the random row split becomes whole tests, said before the run (and no warning about shared ids)
    assert any("random 20% of the groups of 'clickability_test_id', not of the rows" in c.value for c in at.caption)
    assert not [w.value for w in at.warning if "holdout rows" in w.value]
    at.number_input(key="hyp_n").set_value(4)
    finish_jobs(at.button(key="hyp_run").click().run())
    assert not at.exception and not at.error, [e.value for e in at.error]
    summary = json.loads((last_run(upworthy_env) / "summary.json").read_text())
    assert summary["controls"]["absorbed"] == "clickability_test_id"
    assert summary["split"]["column"] == "clickability_test_id" and summary["split"]["grouped_because"] == "controls"
    results = df(at, "hyp_table")
    assert {"within_pairs", "within_pairs_n"} <= set(results.columns)  # shown as "pairs its way" and "pairs"
    # a share, shown in % (one decimal) as "present in" is
    assert column_formats(at, "hyp_table")["within_pairs"] == "%.1f%%"
    run_table = pd.read_csv(last_run(upworthy_env) / "hypotheses.csv")
    np.testing.assert_allclose(results["within_pairs"], run_table["within_pairs"] * 100)
    assert ((results["within_pairs"].dropna() >= 0) & (results["within_pairs"].dropna() <= 100)).all()
    assert any(c.value.startswith("Adjusted for clickability_test_id (compared within") for c in at.caption)
    assert [m.label for m in at.metric][:3] == [
        "Partial R² (5-fold CV)",
        "Ceiling partial R²",
        "Partial R² (in sample)",
    ]
    assert any(md.value.startswith("Beyond the controls: ") for md in at.markdown)
    # the evidence is read as the run read it: each headline against its own test
    support, counter = df(at, "hyp_support"), df(at, "hyp_counter")
    assert "beyond the controls" in support.columns and "beyond the controls" in counter.columns
    assert any("on the side it predicts (beyond the controls)" in md.value for md in at.markdown)
    # and read within the test: an arm with the hypothesis beside one without, with the share that went its way
    assert any(md.value.startswith("**Within one 'clickability_test_id'**") for md in at.markdown)
    (said,) = [c.value for c in at.caption if "pairs of holdout rows in one 'clickability_test_id'" in c.value]
    assert re.search(r"whose ctr differs, \d+% went the way it predicts", said)
    pairs = next(d.value for d in at.dataframe if "with it" in d.value.columns)
    assert {"clickability_test_id", "with it", "without it", "ctr with", "ctr without", "went"} <= set(pairs.columns)
    # a selection that cannot hold controls is refused in one line, and nothing runs
    runs = len(Workspace.open(upworthy_env).list_runs())
    at.selectbox(key="hyp_method").set_value("lasso")
    finish_jobs(at.button(key="hyp_run").click().run())
    assert [e.value for e in at.error] and "stepwise" in at.error[0].value
    assert len(Workspace.open(upworthy_env).list_runs()) == runs


def test_which_arm_comes_first_within_its_test_reads_as_a_within_test_auc(upworthy_env):
    at = page("Hypotheses")
    at.selectbox(key="hyp_target").set_value("first_place").run()
    yes = at.radio(key="hyp_yes_first_place")  # a yes/no target: which value is the 1, the later by default
    assert yes.options == ["True", "False"] and yes.value == "True"
    at.multiselect(key="hyp_controls_first_place").select("clickability_test_id")
    at.number_input(key="hyp_n").set_value(3)
    finish_jobs(at.button(key="hyp_run").click().run())
    assert not at.exception and not at.error, [e.value for e in at.error]
    summary = json.loads((last_run(upworthy_env) / "summary.json").read_text())
    metrics = next(iter(summary["metrics"].values()))
    # penalised where a hypothesis wins every comparison it enters (it depends on the machine's embeddings)
    assert metrics["auc_within"] and metrics["cov_type"] in ("conditional", "penalised conditional")
    assert [m.label for m in at.metric][:3] == [
        "Within AUC (5-fold CV)",
        "Ceiling within AUC",
        "Within AUC (in sample)",
    ]
    assert any("AUC is within each 'clickability_test_id'" in c.value for c in at.caption)


def test_a_sampled_run_is_warned_about_the_split_it_will_make(upworthy_env, monkeypatch):
    monkeypatch.setattr(settings, "SCALE", dataclasses.replace(settings.SCALE, run_rows=300))
    at = page("Hypotheses")
    at.selectbox(key="hyp_target").set_value("ctr")
    at.checkbox(key="hyp_dedupe").uncheck().run()  # arms sharing a headline stay: more tests cut in two
    assert any("a run uses a random 300 of them" in c.value for c in at.caption)
    (leak,) = [w.value for w in at.warning if "holdout rows" in w.value]
    said = int(re.search(r"of the ([0-9,]+) holdout rows", leak).group(1).replace(",", ""))
    at.number_input(key="hyp_n").set_value(3)
    finish_jobs(at.button(key="hyp_run").click().run())
    assert not at.exception and not at.error, [e.value for e in at.error]
    summary = json.loads((last_run(upworthy_env) / "summary.json").read_text())
    assert summary["rows"]["holdout"] == said  # the warning spoke of the run's own holdout
    assert any(w.startswith("split: ") and leak in w for w in summary["warnings"])


def test_upload_picks_the_text_column_from_content(upworthy_env, upworthy_frame, tmp_path):
    at = page()
    path = tmp_path / "upworthy.parquet"
    upworthy_frame.to_parquet(path)
    at.get("file_uploader")[0].set_value(("upworthy.parquet", path.read_bytes(), "application/octet-stream"))
    at.run()
    assert not at.exception
    picker = at.selectbox(key="new_text_col")
    assert picker.value == "headline"
    assert picker.options[:3] == ["headline (text)", "lede (text)", "excerpt (text)"]
    assert not [c.value for c in at.caption if "HTML" in c.value]
    # The ledes are HTML fragments: the form says they are read without their tags before anything is built
    picker.set_value("lede").run()
    said = [c.value for c in at.caption if "HTML" in c.value]
    assert len(said) == 1 and said[0].endswith(
        "texts were HTML: read without their tags and entities, as a browser shows them."
    )


def test_a_workspace_built_from_an_upload_trains_the_product_sae(shared_data, monkeypatch, tmp_path):
    """The upload form starts from the SAE every other door trains (m, k and levels of settings.SAE), so a
    workspace built here gives hypotheses the numbers BENCHMARKS.md reports."""
    from hsae_core.settings import SAE, format_levels

    monkeypatch.delenv("HSAE_WORKSPACE", raising=False)
    monkeypatch.delenv("HSAE_DATA_DIR", raising=False)
    monkeypatch.setenv("HSAE_WORKSPACES_DIR", str(tmp_path / "workspaces"))
    frame = pd.read_json(shared_data / "yelp_reviews_demo" / "yelp-demo-val-2K.jsonl", lines=True).head(300)
    path = tmp_path / "reviews.csv"
    frame[["stars", "text"]].to_csv(path, index=False)
    at = page()
    at.get("file_uploader")[0].set_value(("reviews.csv", path.read_bytes(), "text/csv")).run()
    assert (at.number_input(key="new_m").value, at.number_input(key="new_k").value) == (SAE.m, SAE.k)
    assert at.checkbox(key="new_levels").value and format_levels(SAE.levels) in at.checkbox(key="new_levels").help
    finish_jobs(at.button(key="new_build").click().run())
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("Built reviews: 300 documents" in s.value for s in at.success)
    shape = {m.label: m.value for m in at.metric}["SAE shape"]
    assert shape == f"m={SAE.m}, k={SAE.k}"
    m_all = SAE.m + sum(m for m, _ in SAE.levels)
    said = f"+ {len(SAE.levels)} levels: {format_levels(SAE.levels)}; {m_all} features in all"
    assert said in [c.value for c in at.caption]
    # The corpus sample starts with the texts, wherever the table had them (the ML stance table's abstracts
    # came fifth, after its URLs, and were off screen)
    assert list(df(at, "corpus_head").columns) == ["text", "stars"]


def test_a_build_under_a_taken_name_asks_first_and_a_pinned_dashboard_says_how_to_open_it(
    app_env, shared_data, tmp_path
):
    """A build under an existing workspace's name replaced it without a word; with HSAE_WORKSPACE set, the build
    said "it is open now" while the dashboard could not show it (the sidebar lists only the pinned one)."""
    workspaces = tmp_path / "workspaces"
    shutil.copytree(app_env, workspaces / "reviews", ignore=shutil.ignore_patterns("runs"))
    frame = pd.read_json(shared_data / "yelp_reviews_demo" / "yelp-demo-val-2K.jsonl", lines=True).head(300)
    path = tmp_path / "reviews.csv"
    frame[["stars", "text"]].to_csv(path, index=False)
    at = page()
    at.get("file_uploader")[0].set_value(("reviews.csv", path.read_bytes(), "text/csv")).run()
    said = [w.value for w in at.warning if "A workspace named 'reviews' exists" in w.value]
    assert len(said) == 1 and f"({len(Workspace.open(app_env)):,} documents, columns " in said[0]
    assert at.button(key="new_build").disabled
    at.checkbox(key="new_replace").check().run()
    assert not at.button(key="new_build").disabled
    finish_jobs(at.button(key="new_build").click().run())
    assert not at.exception and not at.error, [e.value for e in at.error]
    built = [s.value for s in at.success if s.value.startswith("Built reviews: 300 documents")]
    assert len(built) == 1 and "it is open now" not in built[0], built
    assert f"This dashboard opens only {app_env} (HSAE_WORKSPACE is set)" in built[0]
    assert f"HSAE_WORKSPACE={(workspaces / 'reviews').resolve()} " in built[0]
    assert len(Workspace.open(workspaces / "reviews")) == 300
    # the tick was spent on that build: another one under the name asks again
    assert not at.checkbox(key="new_replace").value and at.button(key="new_build").disabled


def test_map_page_layout_and_region_features(app_env):
    at = page("Map")
    chart = at.get("plotly_chart")[0].proto.spec
    assert '"x"' in chart and "feature #" in chart
    # The hover gives the feature's activation to 3 decimals (it read "feature #64=0.6697918772697449")
    hover = json.loads(chart)["data"][0]["hovertemplate"]
    assert re.search(r"feature #\d+=%\{marker\.color:\.3f\}", hover), hover
    # Region names: whole, or cut at a word with an ellipsis, the whole label on hover
    notes = json.loads(chart)["layout"]["annotations"]
    assert notes and all(len(a["text"]) <= 40 for a in notes)
    for a in notes:
        assert a["text"] == a["hovertext"] or (
            a["text"].endswith("…") and a["hovertext"].startswith(a["text"][:-1]) and len(a["hovertext"]) > 40
        )
    x = at.slider(key="map_x")
    lo, hi = x.value
    x.set_value((lo, lo + (hi - lo) * 0.3)).run()
    assert not at.exception
    region = df(at, "region_features")
    strongest = region.head(5)  # (the Haldane-smoothed log-odds can be > 0 for a weak feature with equal rates)
    assert len(region) > 0 and region["z"].is_monotonic_decreasing
    assert (strongest["inside_rate"] > strongest["outside_rate"]).all()
    at.radio(key="map_colour").set_value("column").run()
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    stars = {trace["name"]: trace["marker"]["color"] for trace in spec["data"]}
    assert sorted(stars) == ["1", "2", "3", "4", "5"], sorted(stars)
    # every star value reads on the white background (3:1 contrast, WCAG's bar for graphics): RdYlBu's pale
    # middle drew 3-star reviews nearly white
    for name, colour in stars.items():
        channels = [int(c) / 255 for c in re.findall(r"\d+", colour)[:3]]
        linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
        assert 1.05 / (luminance + 0.05) >= 3.0, (name, colour)


def test_a_build_goes_on_while_the_user_moves_away_and_opens_when_done(
    held_jobs, small_workspace, yelp_embedded, monkeypatch, tmp_path
):
    """A build runs in the background: a second click, another workspace picked in the sidebar, another widget
    value and another page meanwhile neither stop it (inside the script run, each of them stopped the build
    without a word) nor start a second build into the same folder; the sidebar lists the workspace at the next
    rerun after it is done, and the Overview then opens it."""
    monkeypatch.delenv("HSAE_WORKSPACE", raising=False)
    monkeypatch.delenv("HSAE_DATA_DIR", raising=False)
    root = tmp_path / "workspaces"
    for name in ("a-first", "b-second"):
        shutil.copytree(small_workspace, root / name, ignore=shutil.ignore_patterns("runs"))
    monkeypatch.setenv("HSAE_WORKSPACES_DIR", str(root))
    path = tmp_path / "moving.csv"  # texts the session has embeddings of: the build takes the SAE's and labels' time
    yelp_embedded[0].iloc[:200][["stars", "text"]].to_csv(path, index=False)
    at = page()
    assert Path(at.session_state["workspace_path"]).name == "a-first"
    at.get("file_uploader")[0].set_value(("moving.csv", path.read_bytes(), "text/csv")).run()
    at.number_input(key="new_m").set_value(32)
    at.number_input(key="new_k").set_value(4)
    at.checkbox(key="new_levels").uncheck()
    at.button(key="new_build").click().run()
    assert not at.exception, at.exception
    # The click's run ends at once and shows the build's progress; the workspace is not there yet.
    assert progress_lines(at) and progress_lines(at)[0].startswith("Building moving"), progress_lines(at)
    assert not Workspace.is_workspace(root / "moving")
    # A second click follows the running build instead of starting another into the same folder.
    at.button(key="new_build").click().run()
    assert any("A build into" in w.value and "is already running" in w.value for w in at.warning)
    assert len(progress_lines(at)) == 1
    # Another workspace picked in the sidebar, another widget's value: reruns of the page.
    at.sidebar.selectbox[0].set_value(str(root / "b-second")).run()
    assert not at.exception, at.exception
    assert Path(at.session_state["workspace_path"]).name == "b-second"
    at.text_input(key="new_name").input("another-name").run()
    assert len(progress_lines(at)) == 1 and progress_lines(at)[0].startswith("Building moving")
    # Another page meanwhile says that the build goes on, and lists the workspace at its first rerun once built.
    at.switch_page("pages/1_Features.py").run()
    assert not at.exception, at.exception
    assert any("Building moving in the background" in c.value for c in at.sidebar.caption)
    held_jobs.set()
    wait_until(lambda: Workspace.is_workspace(root / "moving"))
    at.run()
    assert not at.exception, at.exception
    assert at.sidebar.selectbox[0].options == ["a-first", "b-second", "moving"]
    assert Path(at.session_state["workspace_path"]).name == "b-second", "another page does not switch workspace"
    # Back on the Overview: what was built, open.
    at.switch_page("pages/0_Overview.py").run()
    finish_jobs(at)
    assert any("Built moving: 200 documents; it is open now" in s.value for s in at.success), at.success
    assert not at.error, [e.value for e in at.error]
    assert {m.label: m.value for m in at.metric}["Documents"] == "200"
    assert Path(at.session_state["workspace_path"]) == root / "moving"
    assert Workspace.open(root / "moving").sae.config_.m == 32


def test_the_first_start_demo_build_goes_on_while_another_page_is_open(held_jobs, yelp_frames, monkeypatch, tmp_path):
    first_start_with_demo_data(yelp_frames, tmp_path, monkeypatch)  # rows the session has embeddings of
    root = tmp_path / "workspaces"
    monkeypatch.setenv("HSAE_WORKSPACES_DIR", str(root))
    at = page()
    assert progress_lines(at) and progress_lines(at)[0].startswith("Building the demo workspace (Yelp reviews)")
    assert not Workspace.is_workspace(root / DEMO_NAME)
    at.switch_page("pages/2_Search.py").run()
    assert not at.exception, at.exception
    assert any("one is being built in the background" in i.value for i in at.info)
    at.switch_page("pages/0_Overview.py").run()
    assert not [w.value for w in at.warning if "No workspace yet" in w.value], "no 'try again' while it builds"
    assert progress_lines(at)[0].startswith("Building the demo workspace (Yelp reviews)")
    held_jobs.set()
    finish_jobs(at)
    assert any("Built Yelp reviews (demo): 300 documents; it is open now" in s.value for s in at.success)
    assert {m.label: m.value for m in at.metric}["Documents"] == "300"


def test_a_background_job_runs_once_per_key_and_ends_in_one_line_whatever_fails():
    import ui

    gate, key = threading.Event(), f"test:{uuid.uuid4().hex}"

    def work(progress):
        progress(1, 4, "step: 1 of 4")
        assert gate.wait(60)
        raise ValueError("a bug,\n  not a library error")

    job, started = ui.start_job(key, "Testing", work)
    same, started_again = ui.start_job(key, "Testing", work)
    assert started and same is job and not started_again, "one job per key while it runs"
    wait_until(lambda: job.message, 60)
    assert job.fraction == 0.25 and job.status == "Testing: step: 1 of 4" and not job.finished
    gate.set()
    wait_until(lambda: job.finished, 60)
    assert job.error == "ValueError: a bug, not a library error" and job.result is None  # one line, no traceback
    assert ui.start_job(key, "Testing", work, again=False) == (job, False), "kept as it ended"
    again, restarted = ui.start_job(key, "Testing", lambda progress: 42)
    assert restarted and again is not job
    wait_until(lambda: again.finished, 60)
    assert again.result == 42 and again.error is None


def test_bad_upload_shows_an_error_not_a_traceback(app_env):
    at = page()
    uploader = at.get("file_uploader")[0]
    uploader.set_value(("broken.parquet", b"not parquet at all", "application/octet-stream"))
    at.run()
    assert not at.exception
    assert any("Could not use broken.parquet" in e.value for e in at.error)


def test_an_upload_too_small_to_train_on_is_refused_before_build(app_env, shared_data, tmp_path):
    """A table with too few usable texts is said to be so as soon as its text column is picked, with no Build
    button; it used to be refused only after the user named the workspace and clicked Build."""
    frame = pd.read_json(shared_data / "yelp_reviews_demo" / "yelp-demo-val-2K.jsonl", lines=True).head(60)
    frame.loc[:19, "text"] = "  "  # 40 usable texts of 60 rows
    path = tmp_path / "few.csv"
    frame[["stars", "text"]].to_csv(path, index=False)
    at = page()
    at.get("file_uploader")[0].set_value(("few.csv", path.read_bytes(), "text/csv")).run()
    assert not at.exception, at.exception
    assert [e.value for e in at.error] == [
        f"Cannot build from 'text': Only 40 usable rows (after dropping 20); need at least {settings.MIN_SAE_ROWS}"
    ]
    assert not [b for b in at.button if b.key == "new_build"]
    frame.loc[:9, "text"] = frame.loc[20:29, "text"].to_numpy()  # 50 usable: enough
    frame[["stars", "text"]].to_csv(path, index=False)
    at.get("file_uploader")[0].set_value(("few.csv", path.read_bytes(), "text/csv")).run()
    assert not at.error, [e.value for e in at.error]
    assert "50 texts to build from; 10 rows with an empty text are left out." in [c.value for c in at.caption]
    assert at.button(key="new_build")


def test_no_workspace_and_no_data_says_what_to_download_and_what_next(monkeypatch, tmp_path):
    monkeypatch.delenv("HSAE_WORKSPACE", raising=False)
    monkeypatch.setenv("HSAE_WORKSPACES_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("HSAE_DATA_DIR", str(tmp_path / "empty-data"))
    at = page()
    text = " ".join(e.value for e in at.error)  # the user asked for the demo data there: an error
    assert "yelp-demo-val-2K.jsonl" in text and "demo_data" in text
    # With no data folder set, a newcomer is told to upload a table first, as information, not an error
    monkeypatch.delenv("HSAE_DATA_DIR")
    at = page()
    assert not at.error
    first = at.info[0].value
    assert first.startswith("No workspace yet: upload a table below") and "yelp-demo-val-2K.jsonl" in first
    for name in ["Features", "Search", "Hypotheses", "Map"]:
        infos = [i.value for i in page(name).info]
        # one box: the page's own steps ("Tick a row's box in the table ...") stood under it, with no table
        assert len(infos) == 1 and infos[0].startswith("No workspace yet"), (name, infos)


def test_multiclass_target_offers_its_classes(shared_data, tmp_path, monkeypatch):
    """A category held as pandas 3 `str` (arXiv categories) gets the one-vs-rest class picker."""
    from hsae_core.workspace import build_workspace

    frame = pd.read_csv(shared_data / "arxiv_cs_categories_small" / "arxiv_data.csv")
    frame = frame.groupby("category").head(50).reset_index(drop=True)  # 50 abstracts of each of the 4 categories
    assert frame["category"].dtype != object
    vectors = np.random.default_rng(0).normal(size=(len(frame), 16)).astype(np.float32)  # no embedding needed here
    ws = build_workspace(tmp_path / "arxiv", frame=frame, text_col="summary", embeddings=vectors, m=8, k=2)
    monkeypatch.setenv("HSAE_WORKSPACE", str(ws.path))
    monkeypatch.setenv("HSAE_WORKSPACES_DIR", str(tmp_path / "none"))
    at = page("Hypotheses")
    assert at.selectbox(key="hyp_target").options == ["category"]
    assert at.selectbox(key="hyp_class").options == ["every class"] + sorted(frame["category"].unique())
    # One class: the page states the class's any-of rule as the run's summary has it
    at.selectbox(key="hyp_class").set_value("cs.CR")
    at.number_input(key="hyp_n").set_value(3)
    finish_jobs(at.button(key="hyp_run").click().run())
    assert not at.exception and not at.error, [e.value for e in at.error]
    rule = json.loads((last_run(ws.path) / "summary.json").read_text())["metrics"]["cs.CR"]["any_of"]
    shown = [m.value for m in at.markdown if m.value.startswith("**In short:**")]
    assert shown and shown[0].startswith("**In short:** cs\\.CR = any of")  # a document's characters are escaped
    shown = [text.replace("\\", "") for text in shown]  # as the page shows it
    assert rule["latents"], "some of the 3 hypotheses go with cs.CR on the training rows"
    assert len(shown) == 1 and f"cs.CR = any of {len(rule['latents'])} hypothes" in shown[0]
    assert all(f"(#{j})" in shown[0] for j in rule["latents"])
    assert f"Holdout F1 {rule['holdout']['f1']:.3f}" in shown[0]
    # Above the rule, one sentence on whether the class's hypotheses hold up on the holdout at all
    metrics = json.loads((last_run(ws.path) / "summary.json").read_text())["metrics"]["cs.CR"]
    verdict = verdict_line(metrics)
    assert f"of the {metrics['n_hypotheses']} hypothes" in verdict
    assert [m.value.replace("\\", "") for m in at.markdown].count(verdict) == 1
    table = df(at, "hyp_table")
    assert sorted(table.loc[table["any_of"], "latent"]) == sorted(rule["latents"])  # ticked in the table
    # The Features page groups a feature's prevalence by the category, never by titles (one document each)
    at = page("Features")
    assert at.selectbox(key="prev_col").options == ["category"]
    chart = at.get("plotly_chart")[-1].proto.spec
    assert all(c in chart for c in frame["category"].unique()) and frame["title"].iloc[0] not in chart


def test_two_valued_target_states_a_rule_for_each_value(shared_data, tmp_path, monkeypatch):
    """Accept/reject, good/bad: each value is a class a reader asks about, so each gets its any-of rule."""
    from hsae_core.workspace import build_workspace

    frame = pd.read_json(shared_data / "yelp_reviews_demo" / "yelp-demo-val-2K.jsonl", lines=True).head(400)
    frame = frame.assign(rating=np.where(frame["stars"] >= 4, "good", "bad"))[["text", "rating"]]
    # Random vectors with a direction for the bad reviews: features on either side of the target, no embedding run
    vectors = np.random.default_rng(0).normal(size=(len(frame), 16)).astype(np.float32)
    vectors[:, 0] += 3.0 * (frame["rating"] == "bad").to_numpy()
    ws = build_workspace(tmp_path / "yelp", frame=frame, text_col="text", embeddings=vectors, m=8, k=2)
    monkeypatch.setenv("HSAE_WORKSPACE", str(ws.path))
    monkeypatch.setenv("HSAE_WORKSPACES_DIR", str(tmp_path / "none"))
    at = page("Hypotheses")
    at.selectbox(key="hyp_target").set_value("rating")
    at.number_input(key="hyp_n").set_value(6)
    finish_jobs(at.button(key="hyp_run").click().run())
    assert not at.exception and not at.error, [e.value for e in at.error]
    metrics = json.loads((last_run(ws.path) / "summary.json").read_text())["metrics"]["overall"]
    shown = [m.value.replace("\\", "") for m in at.markdown if m.value.startswith("**In short:**")]
    assert len(shown) == 2 and "rating = good" in shown[0] and "rating = bad" in shown[1]
    other = metrics["any_of_other"]
    assert other["latents"], "the bad reviews' direction gives hypotheses that go with 'bad'"
    assert all(f"(#{j})" in shown[1] for j in other["latents"])
    assert "if every text were called rating = bad" in shown[1]
    table = df(at, "hyp_table")
    assert sorted(table.loc[table["any_of_other"], "latent"]) == sorted(other["latents"])  # ticked in its column


def test_a_link_a_reload_or_a_new_tab_keeps_its_workspace(monkeypatch, small_workspace, upworthy_workspace, tmp_path):
    """The workspace is in the address (?ws=NAME): a reload or a new tab used to open the first one instead, with
    the same feature number of another workspace on screen."""
    folder = tmp_path / "workspaces"
    folder.mkdir()
    (folder / "a-reviews").symlink_to(small_workspace)
    (folder / "b-headlines").symlink_to(upworthy_workspace)
    monkeypatch.delenv("HSAE_WORKSPACE", raising=False)
    monkeypatch.setenv("HSAE_WORKSPACES_DIR", str(folder))
    at = page("Features", ws="b-headlines", feature=3)  # a fresh session opening a link: the second workspace
    assert at.sidebar.selectbox[0].value == str(folder / "b-headlines")
    assert at.header[0].value.startswith("Feature #3:") and not at.warning
    assert at.query_params["ws"] in ("b-headlines", ["b-headlines"])
    at.sidebar.selectbox[0].set_value(str(folder / "a-reviews")).run()  # the picker still switches, and says so
    assert at.query_params["ws"] in ("a-reviews", ["a-reviews"])
    at = page("Features", ws="gone", feature=10**6)  # neither exists: said, not silently replaced
    said = [w.value for w in at.warning]
    assert any("No workspace named 'gone'" in w for w in said) and any("No feature #1000000 here" in w for w in said)


def test_a_fresh_page_shows_the_latest_run_for_the_target_its_form_shows(monkeypatch, small_workspace, tmp_path):
    """Opening the page (or switching workspace) used to show the latest run whatever its target, below a form
    set to another target."""
    import shutil

    copy = tmp_path / "workspaces" / "yelp-runs"
    shutil.copytree(small_workspace, copy, ignore=shutil.ignore_patterns("runs"))
    monkeypatch.delenv("HSAE_WORKSPACE", raising=False)
    monkeypatch.setenv("HSAE_WORKSPACES_DIR", str(copy.parent))
    ws = Workspace.open(copy)
    for target in ("stars", "useful"):  # the run for 'useful' is the latest
        ws.hypothesize(target, HypothesisConfig(n=3), own_features=True, out_dir=ws.new_run_dir(target))
    at = page("Hypotheses")
    assert at.selectbox(key="hyp_target").value == "stars"
    shown = Workspace.open(copy).list_runs()
    assert [r["summary"]["target"]["column"] for r in shown] == ["useful", "stars"]
    assert at.selectbox(key="hyp_run_pick").value == str(shown[1]["path"]), "the run for the form's target"
    assert any(s.value.startswith("Results: target 'stars'") for s in at.subheader)
    at.selectbox(key="hyp_run_pick").set_value(str(shown[0]["path"])).run()  # any run still opens when picked
    assert any(s.value.startswith("Results: target 'useful'") for s in at.subheader)
