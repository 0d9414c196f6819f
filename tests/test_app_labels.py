"""Label sets and their fidelity in the dashboard: the picker, the Features table and filter, slider names,
the hypothesis table, and relabelling under a progress bar (on a copy of the small real workspace)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from ws_fixtures import finish_jobs, small_workspace  # noqa: F401

from hsae_core import settings

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def ws_env(monkeypatch, small_workspace, tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(small_workspace, ws)
    monkeypatch.setenv("HSAE_WORKSPACE", str(ws))
    monkeypatch.setenv("HSAE_WORKSPACES_DIR", str(tmp_path / "workspaces"))
    return ws


def page(name: str) -> AppTest:
    """The app as a browser opens it (app.py's navigation), then the page file ``name``."""
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=300)
    at.run()
    assert not at.exception, at.exception
    at.switch_page(name)
    at.run()
    assert not at.exception, at.exception
    return at


def feature_table(at: AppTest):
    return next(e.value for e in at.dataframe if e.proto.id.endswith("-feature_table"))


def test_features_table_shows_fidelity_filters_low_fidelity_and_switches_label_sets(ws_env):
    at = page("pages/1_Features.py")
    picker = at.sidebar.selectbox(key="label_set_pick")
    assert picker.options[0].startswith("phrases (median AUC 0.") and picker.options[1].startswith("keywords (")
    assert picker.value == "phrases"
    table = feature_table(at)
    assert {"fidelity_auc", "fidelity_f1"} <= set(table.columns) and table["fidelity_auc"].notna().sum() > 40
    phrases = table["label"].tolist()

    at.selectbox(key="feat_fidelity").set_value("low fidelity only").run()
    low = feature_table(at)
    assert 0 < len(low) < len(table) and (low["fidelity_auc"] < settings.LABELS.low_fidelity_auc).all()
    at.selectbox(key="feat_fidelity").set_value("trusted only").run()
    trusted = feature_table(at)
    assert (trusted["fidelity_auc"] >= settings.LABELS.low_fidelity_auc).all()
    assert len(trusted) + len(low) <= len(table)
    at.selectbox(key="feat_fidelity").set_value("all labels").run()

    at.sidebar.selectbox(key="label_set_pick").set_value("keywords").run()
    assert not at.exception
    keywords = feature_table(at)["label"].tolist()
    assert sum(a != b for a, b in zip(phrases, keywords)) > 40 and keywords[0].count(",") == 2


def test_relabel_control_makes_and_shows_a_new_label_set(ws_env):
    at = page("pages/1_Features.py")
    at.radio(key="relabel_kind").set_value("keywords").run()
    finish_jobs(at.button(key="relabel_go").click().run())
    assert not at.exception and not at.error
    assert any("Label set 'keywords' made and shown" in s.value for s in at.success)
    assert at.sidebar.selectbox(key="label_set_pick").value == "keywords"
    assert feature_table(at)["label"].iloc[0].count(",") == 2
    # the LLM choice shows its cost estimate before anything runs, and without a key it says what is missing
    at.radio(key="relabel_kind").set_value("llm").run()
    assert any(i.value.startswith("LLM estimate for") for i in at.info)
    finish_jobs(at.button(key="relabel_go").click().run())
    assert not at.exception and any("OPENAI_API_KEY" in e.value for e in at.error)


@pytest.fixture
def widget_warnings(caplog, monkeypatch):
    """The records of Streamlit's warning that a widget got a default value and a value from session state both.
    Its logger does not propagate to the root logger, and it warns once per process: both undone here."""
    from streamlit.elements.lib import policies

    monkeypatch.setattr(policies, "_shown_default_value_warning", False)
    logger = logging.getLogger(policies.__name__)
    logger.addHandler(caplog.handler)
    yield lambda: [r.getMessage() for r in caplog.records if "set via the Session State API" in r.getMessage()]
    logger.removeHandler(caplog.handler)


def test_a_relabelling_shows_its_set_in_the_picker_without_a_widget_state_warning(ws_env, widget_warnings):
    """The picker switches from the set it showed (phrases) to the one a relabelling made, its value set through
    session state alone: Streamlit logs no warning that it had a default value as well."""
    at = page("pages/1_Features.py")
    assert at.sidebar.selectbox(key="label_set_pick").value == "phrases"
    at.radio(key="relabel_kind").set_value("keywords").run()
    finish_jobs(at.button(key="relabel_go").click().run())
    assert not at.exception and any("Label set 'keywords' made and shown" in s.value for s in at.success)
    assert at.sidebar.selectbox(key="label_set_pick").value == "keywords"
    assert feature_table(at)["label"].iloc[0].count(",") == 2
    assert widget_warnings() == []


def test_search_slider_names_and_hypothesis_table_carry_fidelity(ws_env):
    at = page("pages/2_Search.py")
    at.text_input(key="search_text").input("great tacos and cheap margaritas").run()
    sliders = [s for s in at.slider if s.key.startswith("steer_")]
    assert sliders and all("(AUC " in s.label for s in sliders)

    at = page("pages/3_Hypotheses.py")
    assert at.selectbox(key="hyp_interp").value == "phrases"
    at.number_input(key="hyp_n").set_value(3)  # on the workspace's own features (the page's default)
    finish_jobs(at.button(key="hyp_run").click().run())
    assert not at.exception and not at.error, [e.value for e in at.error]
    table = next(e.value for e in at.dataframe if "hyp_table" in e.proto.id)  # keyed per run
    assert "fidelity_auc" in table.columns and table["fidelity_auc"].notna().all()


def test_features_page_says_when_features_share_a_label_and_relabelling_clears_it(ws_env):
    """A label set made before labels were kept distinct: the page says how many features share one."""
    from hsae_core.labelsets import load_label_set, read_manifest_codes_key, write_label_set
    from hsae_core.workspace import Workspace

    at = page("pages/1_Features.py")
    assert not [i.value for i in at.info if "share their label" in i.value]  # made today: distinct
    ws = Workspace.open(ws_env)
    table = load_label_set(ws, "phrases")
    table.loc[1:2, "label"] = table.loc[0, "label"]  # three features, one label
    write_label_set(ws_env, "phrases", table, codes_key=read_manifest_codes_key(ws_env))
    at = page("pages/1_Features.py")
    assert [i.value for i in at.info if "share their label" in i.value] == [
        "3 features share their label with another feature: relabelling gives each its own where it can."
    ]
    at.radio(key="relabel_kind").set_value("phrases").run()
    finish_jobs(at.button(key="relabel_go").click().run())
    assert not at.exception and not at.error
    assert not [i.value for i in at.info if "share their label" in i.value]
