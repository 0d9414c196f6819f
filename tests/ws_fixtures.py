"""A small real workspace (600 Yelp reviews, m=64, k=4) shared by the workspace, search, feature and app tests,
and the helpers the dashboard tests share to act while a background job runs (held_jobs, finish_jobs).

Imported by several test modules; the workspace is built once per session in a fixed folder, and a second
build there only re-checks that every step can be reused.
"""

from __future__ import annotations

import threading
import time

import pandas as pd
import pytest

from hsae_core import settings

SMALL_M, SMALL_K = 64, 4
# The default levels ride along beside m and k (as in every product build): their latents follow the main ones.
LEVEL_LATENTS = sum(size for size, _ in settings.SAE.levels)
LEVEL_ACTIVE = sum(active for _, active in settings.SAE.levels)


def small_frame(yelp_frames) -> pd.DataFrame:
    train, hold = yelp_frames
    cols = ["text", "stars", "useful", "funny", "cool"]
    a, b = train.iloc[:450][cols].copy(), hold.iloc[:150][cols].copy()
    a["split"], b["split"] = "val", "holdout"
    return pd.concat([a, b], ignore_index=True)


@pytest.fixture(scope="session")
def small_workspace(tmp_path_factory, yelp_frames, yelp_embedded):
    """Path of a built workspace; embeddings come from the session's warm embedding cache."""
    from hsae_core.workspace import build_workspace

    out = tmp_path_factory.getbasetemp() / "ws-small" / "yelp-small"
    build_workspace(
        out, frame=small_frame(yelp_frames), text_col="text", m=SMALL_M, k=SMALL_K, seed=0, name="Yelp small (test)"
    )
    return out


UPWORTHY_ROWS = 600


@pytest.fixture(scope="session")
def upworthy_frame(shared_data) -> pd.DataFrame:
    """The first 600 arms of the real Upworthy archive (whole A/B tests, several arms sharing a headline)."""
    path = shared_data / "upworthy_headlines" / "upworthy_exploratory_packages.parquet"
    return pd.read_parquet(path).iloc[:UPWORTHY_ROWS].reset_index(drop=True)


@pytest.fixture(scope="session")
def upworthy_workspace(tmp_path_factory, upworthy_frame, isolated_cache):
    """A workspace over those headlines (m=32, k=4), for the split and column-type checks of the dashboard."""
    from hsae_core.workspace import build_workspace

    out = tmp_path_factory.getbasetemp() / "ws-upworthy" / "upworthy-small"
    build_workspace(out, frame=upworthy_frame, text_col="headline", m=32, k=4, seed=0, name="Upworthy (test)")
    return out


JOB_TIMEOUT = 300  # seconds a held background job waits for its test, and a test for a condition


def finish_jobs(at, timeout: float = 600.0):
    """Rerun the dashboard page, as its progress bars do every 2 s, until it has shown what became of every
    background job this session follows (builds, hypothesis runs, relabelling run in background threads; a click
    only starts one). The page must be the one that shows them (the Overview for builds; for a run or a
    relabelling, the Hypotheses or Features page of its workspace)."""
    from ui import FOLLOWED_JOBS

    deadline = time.monotonic() + timeout
    while at.session_state[FOLLOWED_JOBS] if FOLLOWED_JOBS in at.session_state else False:
        assert time.monotonic() < deadline, f"background jobs still running after {timeout:.0f} s"
        assert not at.exception, at.exception
        time.sleep(0.5)
        at.run()
    assert not at.exception, at.exception
    return at


@pytest.fixture
def held_jobs(monkeypatch):
    """The dashboard's background jobs wait at their first progress report until ``.set()``, so that a test acts
    mid-job however fast the machine works (the work itself is the real one). Work done inside the click's
    script run, as before it became a job, is not held: the click's run then returns only when it is over."""
    import ui

    gate, real = threading.Event(), ui._run_job

    def held_run(job, work, weights):
        def held_work(progress):
            def wait_then_report(done: int, total: int, message: str = "") -> None:
                gate.wait(JOB_TIMEOUT)
                progress(done, total, message)

            return work(wait_then_report)

        return real(job, held_work, weights)

    monkeypatch.setattr(ui, "_run_job", held_run)
    yield gate
    gate.set()


def progress_lines(at) -> list[str]:
    """The text of every progress bar on the page."""
    return [bar.proto.text for bar in at.get("progress")]


def wait_until(ready, timeout: float = JOB_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, f"not ready after {timeout:.0f} s"
        time.sleep(0.5)


def first_start_with_demo_data(yelp_frames, tmp_path, monkeypatch, rows: int = 150) -> None:
    """A first start: the demo's two Yelp files (``rows`` reviews each) under ``tmp_path/data``, HSAE_DATA_DIR
    pointing there, and no HSAE_WORKSPACE."""
    train, hold = yelp_frames
    data = tmp_path / "data" / "yelp_reviews_demo"
    data.mkdir(parents=True)
    train.iloc[:rows].to_json(data / "yelp-demo-val-2K.jsonl", orient="records", lines=True, date_format="iso")
    hold.iloc[:rows].to_json(data / "yelp-demo-holdout-2K.jsonl", orient="records", lines=True, date_format="iso")
    monkeypatch.setenv("HSAE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("HSAE_WORKSPACE", raising=False)
