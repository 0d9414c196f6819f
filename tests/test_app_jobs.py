"""A hypothesis run and a relabelling in the dashboard go on in the background: while the user touches a widget,
picks another workspace, opens another page or opens the page a second time, and they show what they made (or
their error, once) in the session and workspace they were started in. On copies of the small real workspace;
``held_jobs`` holds each job at its first progress report, so that the test acts mid-job on any machine."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from openai_server import openai_server  # noqa: F401  (fixture)
from streamlit.testing.v1 import AppTest
from ws_fixtures import (  # noqa: F401
    JOB_TIMEOUT,
    finish_jobs,
    held_jobs,
    progress_lines,
    small_workspace,
    wait_until,
)

from hsae_core.pipeline import HypothesisConfig
from hsae_core.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]
PAGES = {"Features": 1, "Search": 2, "Hypotheses": 3}


def page(name: str) -> AppTest:
    """The app as a browser opens it (app.py's navigation, the Overview first), then the page ``name``."""
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=JOB_TIMEOUT)
    at.run()
    return switch(at, name)


def switch(at: AppTest, name: str) -> AppTest:
    """A click on ``name`` in the sidebar's page list."""
    at.switch_page(f"pages/{PAGES[name]}_{name}.py").run()
    assert not at.exception, at.exception
    return at


def sidebar_says(at: AppTest, text: str) -> bool:
    return any(text in c.value for c in at.sidebar.caption)


def hypotheses_table(at: AppTest):
    return next(e.value for e in at.dataframe if "hyp_table" in e.proto.id)  # keyed per run


def copy_of(small_workspace, folder: Path, with_run_for: str | None = None) -> Path:
    """A copy of the small workspace without its runs; with a saved run of ``with_run_for`` (3 hypotheses)."""
    shutil.copytree(small_workspace, folder, ignore=shutil.ignore_patterns("runs"))
    if with_run_for:
        ws = Workspace.open(folder)
        ws.hypothesize(with_run_for, HypothesisConfig(n=3), out_dir=ws.new_run_dir(with_run_for))
    return folder


@pytest.fixture
def one_workspace(monkeypatch, small_workspace, tmp_path):
    folder = copy_of(small_workspace, tmp_path / "yelp-copy")
    monkeypatch.setenv("HSAE_WORKSPACE", str(folder))
    monkeypatch.setenv("HSAE_WORKSPACES_DIR", str(tmp_path / "workspaces"))
    return folder


@pytest.fixture
def two_workspaces(monkeypatch, small_workspace, tmp_path):
    """a-first and b-second, each with a run for 'stars' (the target the Hypotheses form opens on)."""
    root = tmp_path / "workspaces"
    pair = [copy_of(small_workspace, root / name, with_run_for="stars") for name in ("a-first", "b-second")]
    monkeypatch.delenv("HSAE_WORKSPACE", raising=False)
    monkeypatch.setenv("HSAE_WORKSPACES_DIR", str(root))
    return pair


def test_a_hypothesis_run_goes_on_while_the_user_moves_away_and_opens_in_its_workspace_when_done(
    held_jobs, two_workspaces
):
    """Inside the click's script run, touching a widget, picking another workspace or opening another page
    stopped the run without a word. Now it goes on; once done it opens in the workspace it was started in, even
    when the form there shows another target, and never in the other workspace."""
    a, b = two_workspaces
    b_run = str(Workspace.open(b).list_runs()[0]["path"])
    at = page("Hypotheses")
    assert at.session_state["workspace_path"] == str(a)
    at.selectbox(key="hyp_target").set_value("useful").run()
    at.number_input(key="hyp_n").set_value(3)
    at.button(key="hyp_run").click().run()
    # The click's run ends at once and shows the run's progress; nothing is saved yet.
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert [line.split(":")[0] for line in progress_lines(at)] == ["Hypotheses for 'useful' in a-first"]
    assert len(Workspace.open(a).list_runs()) == 1
    # A second click starts no second run, and says so.
    at.button(key="hyp_run").click().run()
    assert [i.value for i in at.info if "already going" in i.value] == [
        "A run for 'useful' with these settings on this workspace is already going (its progress is below): "
        "nothing new started."
    ]
    assert len(progress_lines(at)) == 1
    # Another widget's value, another workspace, another page: the run goes on, and the sidebar says so.
    at.slider(key="hyp_frac").set_value(0.3).run()
    assert len(progress_lines(at)) == 1
    at.sidebar.selectbox[0].set_value(str(b)).run()
    assert not at.exception and not progress_lines(at), "b-second's page shows none of a-first's run"
    assert sidebar_says(at, "Hypotheses for 'useful' in a-first in the background")
    switch(at, "Search")
    assert sidebar_says(at, "Hypotheses for 'useful' in a-first in the background")
    held_jobs.set()
    wait_until(lambda: not sidebar_says(at.run(), "in the background"))  # the line goes once the run is done
    assert len(Workspace.open(a).list_runs()) == 2
    # b-second's Hypotheses page keeps its own run.
    switch(at, "Hypotheses")
    assert at.selectbox(key="hyp_run_pick").value == b_run and not at.error
    # a-first opens on the new run, although its form now shows 'stars' and a-first has a run for 'stars'.
    at.sidebar.selectbox[0].set_value(str(a)).run()
    finish_jobs(at)
    old, new = (str(r["path"]) for r in reversed(Workspace.open(a).list_runs()))
    assert at.selectbox(key="hyp_target").value == "stars"
    assert at.selectbox(key="hyp_run_pick").value == new
    assert any(s.value.startswith("Results: target 'useful'") for s in at.subheader)
    assert len(hypotheses_table(at)) == 3
    # Once: another run picked afterwards stays picked.
    at.selectbox(key="hyp_run_pick").set_value(old).run()
    assert at.selectbox(key="hyp_run_pick").value == old


def test_another_tab_sees_the_run_going_and_only_the_tab_that_started_it_hears_of_its_error(held_jobs, one_workspace):
    """A second session (a reload, another tab) shows the run's progress and starts no duplicate; when the run
    fails, its one line is said once, to the session that started it."""
    at = page("Hypotheses")
    at.number_input(key="hyp_n").set_value(3)
    at.button(key="hyp_run").click().run()
    assert [line.split(":")[0] for line in progress_lines(at)] == ["Hypotheses for 'stars' in yelp-copy"]
    other = page("Hypotheses")
    assert [line.split(":")[0] for line in progress_lines(other)] == ["Hypotheses for 'stars' in yelp-copy"]
    other.number_input(key="hyp_n").set_value(3)  # the same settings: the run going on, not a second one
    other.button(key="hyp_run").click().run()
    assert any("already going" in i.value for i in other.info) and len(progress_lines(other)) == 1
    # The disk changes under the run: its runs folder becomes a file, so the run cannot be saved.
    runs = one_workspace / "runs"
    shutil.rmtree(runs, ignore_errors=True)
    runs.write_text("not a folder")
    held_jobs.set()
    finish_jobs(at)
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and errors[0].startswith("Hypotheses for 'stars' in yelp-copy failed: "), errors
    assert "\n" not in errors[0] and "Traceback" not in errors[0]
    at.run()
    assert not at.error, "said once"
    finish_jobs(other)
    assert not other.error and not progress_lines(other)


def test_a_run_with_other_settings_starts_beside_the_one_going(held_jobs, one_workspace):
    """While a run for 'stars' goes on, a click with other settings (3 hypotheses, then 4) starts a second run
    instead of being refused as 'already going' with the new settings dropped; both finish and are saved."""
    at = page("Hypotheses")
    at.number_input(key="hyp_n").set_value(3)
    at.button(key="hyp_run").click().run()
    at.number_input(key="hyp_n").set_value(4)
    at.button(key="hyp_run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert not [i.value for i in at.info if "already going" in i.value]
    assert [line.split(":")[0] for line in progress_lines(at)] == [
        "Hypotheses for 'stars' in yelp-copy",
        "Hypotheses for 'stars' in yelp-copy (run 2)",
    ]
    assert any(i.value.startswith("Another run for 'stars' on this workspace") for i in at.info)
    # each run marks itself going, in this process, as its thread starts it
    wait_until(lambda: len(list((one_workspace / "runs").glob(".going-*"))) == 2)
    held_jobs.set()
    finish_jobs(at)
    runs = Workspace.open(one_workspace).list_runs()
    assert sorted(r["summary"]["config"]["n"] for r in runs) == [3, 4]
    assert not list((one_workspace / "runs").glob(".going-*")) and not at.warning  # nothing said lost


def test_a_run_whose_process_was_killed_is_said_lost_once(one_workspace):
    """A dashboard restart lost a running run without a word. A run killed mid-way (here a real run in another
    process, killed with SIGKILL once it is under way) is named on the Hypotheses page once, in every session's
    first look after it, and leaves no run behind."""
    at = page("Hypotheses")
    code = (  # a run that trains its own SAE: seconds of work after the run marks itself going
        "import sys; from hsae_core.workspace import Workspace; from hsae_core.pipeline import HypothesisConfig; "
        "Workspace.open(sys.argv[1]).hypothesize('stars', HypothesisConfig(n=3, cache_sae=False), own_features=False)"
    )
    runner = subprocess.Popen([sys.executable, "-c", code, str(one_workspace)], cwd=REPO)
    wait_until(lambda: list((one_workspace / "runs").glob(".going-*")) or runner.poll() is not None)
    at.run()  # while it goes on, in another process on this machine: nothing is said
    assert runner.poll() is None, "the run ended before it could be killed"
    assert not [w.value for w in at.warning if "stopped before it finished" in w.value]
    os.kill(runner.pid, signal.SIGKILL)
    runner.wait()
    at.run()
    lost = [w.value for w in at.warning if "stopped before it finished" in w.value]
    assert len(lost) == 1 and lost[0].startswith("A run for 'stars' started "), lost
    assert not Workspace.open(one_workspace).list_runs() and not list((one_workspace / "runs").glob(".going-*"))
    assert not [w.value for w in page("Hypotheses").warning if "stopped before" in w.value]  # said once


def test_relabelling_goes_on_while_the_user_reads_another_page_and_shows_its_labels_when_done(held_jobs, one_workspace):
    at = page("Features")
    assert at.sidebar.selectbox(key="label_set_pick").value == "phrases"
    at.radio(key="relabel_kind").set_value("keywords").run()
    at.button(key="relabel_go").click().run()
    assert not at.exception and not at.error
    assert [line.split(":")[0] for line in progress_lines(at)] == ["Relabelling the features of yelp-copy (keywords)"]
    at.button(key="relabel_go").click().run()
    assert any("already being relabelled" in i.value for i in at.info) and len(progress_lines(at)) == 1
    switch(at, "Search")
    assert sidebar_says(at, "Relabelling the features of yelp-copy (keywords) in the background")
    held_jobs.set()
    switch(at, "Features")
    finish_jobs(at)
    assert [s.value for s in at.success] == ["Label set 'keywords' made and shown"]
    assert at.sidebar.selectbox(key="label_set_pick").value == "keywords"
    labels = next(e.value for e in at.dataframe if e.proto.id.endswith("-feature_table"))["label"]
    assert labels.iloc[0].count(",") == 2  # keyword lists, not phrases
    at.run()
    assert not at.success, "said once"


def test_an_llm_relabelling_keeps_the_typed_key_in_memory_and_says_its_error_once(
    held_jobs, one_workspace, openai_server, monkeypatch
):
    """The key typed into the page reaches the background job through its client, never through a file; every
    LLM call failing is said once, when the user is back on the Features page."""
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    seen = []

    def first_call_only(request):  # the client's check call passes; every labelling call is refused
        seen.append(request)
        return "OK" if len(seen) == 1 else (400, {"error": {"message": "no such model"}}, {})

    openai_server.responder = first_call_only
    key = f"sk-test-{uuid.uuid4().hex}"
    at = page("Features")
    at.radio(key="relabel_kind").set_value("llm").run()
    at.text_input(key="session_api_key").input(key).run()
    at.button(key="relabel_go").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert [line.split(":")[0] for line in progress_lines(at)] == ["Relabelling the features of yelp-copy (llm)"]
    switch(at, "Search")
    assert sidebar_says(at, "Relabelling the features of yelp-copy (llm) in the background")
    held_jobs.set()
    switch(at, "Features")
    finish_jobs(at)
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "failed: Every LLM call failed" in errors[0], errors
    assert at.sidebar.selectbox(key="label_set_pick").value == "phrases", "no label set made"
    at.run()
    assert not at.error, "said once"
    assert len(seen) > 1, "the job called the server with the typed key"
    for folder in (one_workspace, Path(os.environ["HSAE_CACHE_DIR"])):
        for path in folder.rglob("*"):
            assert not path.is_file() or key.encode() not in path.read_bytes(), f"the API key is in {path}"
