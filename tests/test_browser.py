"""End to end in a real browser: `streamlit run app.py` on 127.0.0.1 driven by Debian's Chromium via Playwright.

Visits every page, interacts once on each, checks the key elements and saves screenshots to
test-artifacts/ (git-ignored). Skipped only when /usr/bin/chromium is absent (`make browser` installs it).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from ws_fixtures import small_workspace  # noqa: F401

pytestmark = pytest.mark.browser
REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("HSAE_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(os.environ.get("HSAE_ARTIFACTS", REPO / "test-artifacts"))
CHROME_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shoot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@pytest.fixture
def server(small_workspace, tmp_path):
    """A real Streamlit server on a free local port, stopped by its own PID."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (make browser) to run the browser test")
    port = _free_port()
    env = dict(os.environ, HSAE_WORKSPACE=str(small_workspace), HSAE_WORKSPACES_DIR=str(tmp_path / "ws"))
    log = open(tmp_path / "streamlit.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"), "--server.headless", "true",
         "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(url + "/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("streamlit did not start: " + (tmp_path / "streamlit.log").read_text()[-2000:])
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    log.close()


def _no_exception(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0, page.locator('[data-testid="stException"]').first.inner_text()


def test_every_page_in_a_real_browser(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROME_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(180_000)

        # Overview: metrics and the density histogram; open the new-workspace form.
        page.goto(server)
        page.get_by_text("hsae: Overview").wait_for()
        page.locator(".js-plotly-plot").first.wait_for()
        assert page.get_by_text("Documents").count() > 0 and "600" in page.inner_text("body")
        page.get_by_text("New workspace from a table").click()
        page.get_by_text("Build workspace").count()  # the form is there (button appears after an upload)
        _no_exception(page)
        shoot(page, "1_overview")

        # Features: search the labels, then the feature page renders with its histogram.
        page.goto(server + "/Features")
        page.get_by_text("Top-activating documents", exact=True).wait_for()
        page.get_by_label("Search labels and keywords").fill("food")
        page.keyboard.press("Enter")
        page.get_by_text("of 64 features").wait_for()
        page.locator(".js-plotly-plot").first.wait_for()
        _no_exception(page)
        shoot(page, "2_features")

        # Search: a typed query gives sliders; moving one changes the ranking.
        page.goto(server + "/Search")
        box = page.get_by_label("Search text")
        box.wait_for()
        box.fill("great tacos and cheap margaritas")
        box.press("Enter")
        page.get_by_text("Steered results", exact=True).wait_for()
        page.get_by_text("No slider moved").wait_for()
        thumb = page.locator('[data-testid="stSlider"] input[type="range"]').first
        thumb.focus()
        thumb.press("Home")  # jump the strongest feature to its minimum (far below zero)
        page.get_by_text("entered").first.wait_for()
        _no_exception(page)
        shoot(page, "3_search")

        # Hypotheses: run on `stars` with the workspace's own split column.
        page.goto(server + "/Hypotheses")
        page.get_by_text("Target column").wait_for()
        page.get_by_role("button", name="Run").click()
        page.get_by_text("Results: target 'stars'").wait_for(timeout=420_000)
        page.get_by_text("Supporting holdout documents", exact=True).wait_for()
        _no_exception(page)
        shoot(page, "4_hypotheses")

        # Map: the UMAP scatter draws; colour it by a column.
        page.goto(server + "/Map")
        page.locator(".js-plotly-plot").first.wait_for(timeout=420_000)
        page.get_by_text("column", exact=True).click()
        page.get_by_text("Column", exact=True).wait_for()
        page.locator(".js-plotly-plot").first.wait_for()
        _no_exception(page)
        shoot(page, "5_map")
        browser.close()
    for name in ["1_overview", "2_features", "3_search", "4_hypotheses", "5_map"]:
        assert (ARTIFACTS / f"{name}.png").stat().st_size > 10_000
