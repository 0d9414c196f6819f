"""End to end in a real browser: the dashboard as `make dashboard` starts it (`python -m hsae_core.warm_start`,
`streamlit run app.py` with its imports under way) on 127.0.0.1, driven by Debian's Chromium via Playwright.

Visits every page as a newcomer would: clicks table rows (the grid is a canvas, so by coordinates) and checks
that the page they promise opens, reads whole documents on Features and Search and checks that no table cell it
reads is cut, runs a hypothesis and follows its link to the feature page. Saves screenshots to test-artifacts/
(git-ignored); with HSAE_SCREENSHOTS=docs/screenshots also the README's screenshots. HSAE_BROWSER_WORKSPACE
points the run at another workspace (e.g. the demo) instead of the small test workspace. Skipped only when
/usr/bin/chromium is absent (`make browser` installs it).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import dashboard_server
import pandas as pd
import pytest
from ws_fixtures import small_workspace  # noqa: F401

pytestmark = pytest.mark.browser
REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("HSAE_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(os.environ.get("HSAE_ARTIFACTS", REPO / "test-artifacts"))
README_SHOTS = os.environ.get("HSAE_SCREENSHOTS")
CHROME_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HEADER_H, ROW_H = 35, 35  # Streamlit's grid: header and default row height (px)


def shoot(page, name: str, readme_name: str | None = None, height: int = 1500) -> None:
    """Screenshot the window (Streamlit scrolls inside the page, so a full-page shot shows no more), ``height`` tall."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 1400, "height": height})
    page.wait_for_timeout(500)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
    if README_SHOTS and readme_name:
        Path(README_SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(README_SHOTS) / f"{readme_name}.png"))
    page.set_viewport_size({"width": 1400, "height": 1500})


@pytest.fixture
def workspace(request, tmp_path):
    """The workspace to browse: $HSAE_BROWSER_WORKSPACE (copied, so runs do not pile up in it) or the small one."""
    chosen = os.environ.get("HSAE_BROWSER_WORKSPACE")
    if not chosen:
        return request.getfixturevalue("small_workspace")
    import shutil

    copy = tmp_path / "browse" / Path(chosen).name
    shutil.copytree(chosen, copy, ignore=shutil.ignore_patterns("runs"))
    return copy


@contextlib.contextmanager
def _streamlit(tmp_path, env: dict):
    """A real Streamlit server with ``env`` on a free local port (its URL), stopped by its own PID."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (make browser) to run the browser test")
    log = tmp_path / "streamlit.log"
    proc, url = dashboard_server.start(env, log)
    if not dashboard_server.answering(proc, url):
        proc.kill()
        pytest.fail("streamlit did not start: " + log.read_text()[-2000:])
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    text = log.read_text()
    assert "Inotify" not in text, "Streamlit is watching files (see .streamlit/config.toml)"


@pytest.fixture
def server(workspace, tmp_path):
    """The dashboard on ``workspace``."""
    with _streamlit(
        tmp_path, dict(os.environ, HSAE_WORKSPACE=str(workspace), HSAE_WORKSPACES_DIR=str(tmp_path / "ws"))
    ) as url:
        yield url


@pytest.fixture
def empty_server(tmp_path):
    """The dashboard with no workspace yet, no demo data (so no demo build) and an empty embedding cache."""
    env = {k: v for k, v in os.environ.items() if k not in ("HSAE_WORKSPACE", "HSAE_DATA_DIR")}
    env.update(HSAE_WORKSPACES_DIR=str(tmp_path / "workspaces"), HSAE_CACHE_DIR=str(tmp_path / "cache"))
    with _streamlit(tmp_path, env) as url:
        yield url


def _no_exception(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0, page.locator(
        '[data-testid="stException"]'
    ).first.inner_text()


def grid(page, key: str):
    """The dataframe shown with ``key`` (Streamlit gives its container the class st-key-<key>; pages suffix keys
    per feature, query or run, as in top_docs_5)."""
    return page.locator(f"[class*='st-key-{key}'] [data-testid='stDataFrame']").first


def cell(page, key: str, row: int, col: int) -> str:
    """The full content of one cell, read from the grid's accessible table (what the canvas draws from)."""
    return grid(page, key).locator(f"[data-testid='glide-cell-{col}-{row}']").inner_text()


def column_index(page, key: str, name: str) -> int:
    grid(page, key).locator(f"th[role='columnheader']:text-is('{name}')").wait_for(state="attached")
    headers = grid(page, key).locator("th[role='columnheader']").all_inner_texts()
    return headers.index(name) + 1  # column 0 is the row-selection column


def click_row(page, key: str, row: int, row_height: int = ROW_H) -> None:
    """Click the row's selection box: the grid is a canvas, so by coordinates."""
    box = grid(page, key).bounding_box()
    page.mouse.click(box["x"] + 18, box["y"] + HEADER_H + row_height * row + row_height / 2)


def reader_text(page) -> str:
    return page.locator(".hsae-doc").first.inner_text()


def reader_doc(page) -> int:
    """The document number the reader panel shows ("Document N · ...")."""
    text = page.locator("[class*='st-key-'][class*='_reader_']").first.inner_text()
    return int(re.search(r"Document (\d+)", text).group(1))


def wait_for_new_run(space, known: set, timeout_s: float) -> str:
    """The id of the first hypothesis run saved in ``space`` that is not in ``known``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        new = [r["id"] for r in space.list_runs() if r["id"] not in known]
        if new:
            return new[0]
        time.sleep(0.5)
    raise AssertionError(f"No new hypothesis run was saved within {timeout_s:.0f} s")


def test_every_page_in_a_real_browser(server, workspace):
    from playwright.sync_api import sync_playwright

    import ui
    from hsae_core.workspace import Workspace

    opened = Workspace.open(workspace)
    corpus, n_docs, m = opened.texts, len(opened), opened.codes.shape[1]

    def check_texts(page, key: str, n_rows: int) -> None:
        """Every text cell read holds its document whole (no snippet, no ellipsis)."""
        doc_col, text_col = column_index(page, key, "doc"), column_index(page, key, "text")
        for r in range(n_rows):
            doc, text = int(cell(page, key, r, doc_col)), cell(page, key, r, text_col)
            assert text == " ".join(corpus[doc].split()) or text == corpus[doc], (key, r, text[-40:])
            assert not text.endswith("…")

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROME_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1500})
        page.set_default_timeout(180_000)

        # Overview: the first page is named Overview; metrics, density histogram, what to do next.
        page.goto(server)
        page.get_by_text("hsae: Overview").wait_for()
        page.locator(".js-plotly-plot").first.wait_for()
        # the links come after the chart in the script: wait for the last, or a slow run reads the page too early
        links = page.locator('[data-testid="stPageLink-NavLink"]')
        links.nth(3).wait_for()
        nav = page.locator('[data-testid="stSidebarNav"]').inner_text().split()
        assert "Overview" in nav and "app" not in nav
        body = page.inner_text("body")
        assert f"{n_docs:,}" in body and "Validation NMSE" in body and "What next" in body
        assert page.locator('[data-testid="stAppDeployButton"]').count() == 0, "Deploy is hidden"
        assert links.count() == 4, "What next links to Features, Search, Hypotheses and Map"
        cut = page.evaluate(
            """() => [...document.querySelectorAll('[data-testid="stPageLink-NavLink"]')].filter(
                a => [a, ...a.querySelectorAll('*')].some(e => e.scrollWidth > e.clientWidth + 1)
            ).map(a => a.innerText)"""
        )
        assert not cut, f"What next labels cut off: {cut}"
        cut = page.evaluate(
            """() => [...document.querySelectorAll('[data-testid="stMetricValue"]')].filter(
                m => [m, ...m.querySelectorAll('*')].some(e => e.scrollWidth > e.clientWidth + 1)
            ).map(m => m.innerText)"""
        )
        assert not cut, f"Overview numbers cut off: {cut}"
        _no_exception(page)
        shoot(page, "1_overview", "overview", height=1600)

        # Features: a click on a table row opens that feature; documents read whole.
        page.locator('[data-testid="stSidebarNav"] a:has-text("Features")').click()
        page.get_by_text("Top-activating documents", exact=True).wait_for()
        grid(page, "feature_table").locator("[data-testid='glide-cell-1-3']").wait_for(state="attached")
        wanted = int(cell(page, "feature_table", 3, 1))
        click_row(page, "feature_table", 3)
        page.get_by_role("heading", name=re.compile(rf"^Feature #{wanted}:")).wait_for()
        top_docs = f"top_docs_{wanted}"  # the feature's own table (keys carry the feature number)
        check_texts(page, top_docs, 3)
        top_doc = int(cell(page, top_docs, 0, column_index(page, top_docs, "doc")))
        click_row(page, top_docs, 0, ui.DOC_ROW_HEIGHT)
        page.locator(".hsae-doc").first.wait_for()
        assert reader_doc(page) == top_doc
        assert reader_text(page).strip() == corpus[top_doc].strip(), "the whole document, wrapped"
        keywords = [k.strip() for k in str(opened.features["keywords"].iloc[wanted] or "").split(",") if k.strip()]
        if any(re.search(rf"\b{re.escape(k)}\b", corpus[top_doc], re.IGNORECASE) for k in keywords):
            assert page.locator(".hsae-doc mark").count() > 0, "keywords highlighted"
        page.get_by_label("Search labels and keywords").fill("food")
        page.keyboard.press("Enter")
        page.get_by_text(f"of {m} features").wait_for()
        _no_exception(page)
        shoot(page, "2_features", "features", height=2000)

        # Search: a typed query gives sliders; moving one changes the ranking; a result reads whole.
        page.locator('[data-testid="stSidebarNav"] a:has-text("Search")').click()
        box = page.get_by_label("Search text")
        box.wait_for()
        box.fill("great tacos and cheap margaritas")
        box.press("Enter")
        page.get_by_text("Steered results", exact=True).wait_for()
        page.get_by_text("No slider moved").wait_for()
        grid(page, "steered_results").locator("[data-testid='glide-cell-1-0']").wait_for(state="attached")
        assert column_index(page, "steered_results", "text") == 4, "text right after rank, doc and change"
        check_texts(page, "steered_results", 5)
        thumb = page.locator('[data-testid="stSlider"] input[type="range"]').first
        thumb.focus()
        thumb.press("Home")  # jump the strongest feature to its minimum (far below zero)
        page.get_by_text("entered").first.wait_for()
        page.wait_for_timeout(1000)  # let the grid redraw the steered list before clicking it
        click_row(page, "steered_results", 0, ui.DOC_ROW_HEIGHT)
        page.locator(".hsae-doc").first.wait_for()
        hit = int(cell(page, "steered_results", 0, column_index(page, "steered_results", "doc")))
        assert reader_doc(page) == hit and reader_text(page).strip() == corpus[hit].strip()
        _no_exception(page)
        shoot(page, "3_search", "search", height=2000)

        # Hypotheses: run with the defaults; a click on a row shows its evidence and links to its feature.
        page.locator('[data-testid="stSidebarNav"] a:has-text("Hypotheses")').click()
        page.get_by_text("Target column (what to explain)").wait_for()
        # Other tests may have saved runs in this workspace, and the page shows the newest one before Run
        # is clicked: wait for this click's run to be saved and shown, not for any results.
        known = {r["id"] for r in opened.list_runs()}
        page.get_by_role("button", name="Run").click()
        new_run = wait_for_new_run(opened, known, timeout_s=420)
        # The past-runs picker holds its choice as its input's value.
        page.locator(f'[data-testid="stSelectbox"] input[value="{new_run} · target stars"]').wait_for()
        page.get_by_text("Results: target").wait_for()
        page.get_by_text("Embedding ceiling").first.wait_for()
        grid(page, "hyp_table").locator("[data-testid='glide-cell-1-2']").wait_for(state="attached")
        latent = int(cell(page, "hyp_table", 2, column_index(page, "hyp_table", "feature")))
        p_value = cell(page, "hyp_table", 2, column_index(page, "hyp_table", "p (coefficient)"))
        assert re.fullmatch(r"< 1e-16|\d\.\de-\d\d|0\.\d+|n/a", p_value), p_value
        click_row(page, "hyp_table", 2)
        page.get_by_role("heading", name=re.compile(rf"\(feature #{latent}\)$")).wait_for()
        page.locator(".js-plotly-plot").first.wait_for()
        assert "Effect of each hypothesis" in page.inner_text("body")
        _no_exception(page)
        page.get_by_text("Results: target").evaluate("e => e.scrollIntoView({block: 'start'})")
        page.wait_for_timeout(500)
        shoot(page, "4_hypotheses", "hypotheses", height=2400)
        page.get_by_text(f"Open feature #{latent} on the Features page").click()
        page.get_by_role("heading", name=re.compile(rf"^Feature #{latent}:")).wait_for()
        _no_exception(page)

        # Map: the UMAP scatter draws; colour it by a column.
        page.locator('[data-testid="stSidebarNav"] a:has-text("Map")').click()
        page.locator(".js-plotly-plot").first.wait_for(timeout=420_000)
        page.get_by_text("column", exact=True).click()
        page.get_by_text("Column", exact=True).wait_for()
        page.locator(".js-plotly-plot").first.wait_for()
        _no_exception(page)
        shoot(page, "5_map", "map")
        browser.close()
    for name in ["1_overview", "2_features", "3_search", "4_hypotheses", "5_map"]:
        assert (ARTIFACTS / f"{name}.png").stat().st_size > 10_000


def test_a_page_link_opened_first_on_a_new_server_keeps_the_app_navigation(server):
    """A bookmark or a tab left open across a restart is the server's first visit to a page URL: the page must
    still open inside app.py's navigation (Overview first, with icons), for that tab and every later one."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROME_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(120_000)
        page.goto(server + "/Features?feature=3")
        page.get_by_text("Top-activating documents", exact=True).wait_for()
        assert page.locator("h2").first.inner_text().startswith("Feature #3:")  # the link's feature, opened
        for tab in (page, browser.new_page()):
            if tab is not page:
                tab.goto(server + "/Map")
                tab.locator("h1:has-text('Map')").wait_for()
            nav = tab.locator('[data-testid="stSidebarNav"]')
            nav.get_by_text("Overview").wait_for()
            words = nav.inner_text().split()
            assert "app" not in words and words[:2] == ["home", "Overview"], words  # the icon, then the title
            _no_exception(tab)
        browser.close()


def test_a_build_goes_on_while_the_user_visits_another_page(empty_server, shared_data, tmp_path):
    """Build a workspace from an uploaded table, open another page while it builds and come back: the build went
    on and its workspace is open. (Built inside the script run, the page switch stopped it without a word.) The
    server's embedding cache is empty, so the build takes the tens of seconds the page switch needs."""
    from playwright.sync_api import sync_playwright

    frame = pd.read_json(shared_data / "yelp_reviews_demo" / "yelp-demo-val-2K.jsonl", lines=True).iloc[:80]
    path = tmp_path / "reviews.csv"
    frame[["stars", "text"]].to_csv(path, index=False)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROME_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        page.set_default_timeout(120_000)
        page.goto(empty_server)
        page.get_by_text("hsae: Overview").wait_for()
        page.locator(".st-key-upload input[type='file']").set_input_files(str(path))
        page.locator(".st-key-new_build button").click()
        page.get_by_text(re.compile(r"^Building reviews")).first.wait_for()
        shoot(page, "6_building", height=1200)
        page.locator('[data-testid="stSidebarNav"] a:has-text("Features")').click()
        page.locator("h1:has-text('Features')").wait_for()
        _no_exception(page)
        page.locator('[data-testid="stSidebarNav"] a:has-text("Overview")').click()
        page.get_by_text("Built reviews: 80 documents; it is open now").wait_for(timeout=420_000)
        page.locator('[data-testid="stMetricValue"]').first.wait_for()
        assert page.locator('[data-testid="stMetricValue"]').first.inner_text() == "80"
        page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"] input[value="reviews"]').wait_for()
        _no_exception(page)
        shoot(page, "7_built", height=1200)
        browser.close()
