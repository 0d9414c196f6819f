"""Dashboard helpers shared by app.py and pages/: workspace picking, cached loading, progress bars,
error display and table shaping. The only module besides the pages that imports Streamlit; no maths here
(anything a CLI user could also want lives in hsae_core)."""

from __future__ import annotations

import hashlib
import html
import logging
import re
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import streamlit as st

from hsae_core import settings
from hsae_core.errors import HsaeError, WorkspaceChangedError
from hsae_core.fsutil import describe_os_error
from hsae_core.interpret import snippet  # noqa: F401  (re-exported: the Map page shows ui.snippet)
from hsae_core.mapping import category_values
from hsae_core.workspace import MANIFEST, Workspace, dashboard_command, list_workspaces, workspaces_dir

SNIPPET = 300
# Every page, by the name the pages use for links (app.py registers them with st.navigation).
PAGES = {
    "Overview": "pages/0_Overview.py",
    "Features": "pages/1_Features.py",
    "Search": "pages/2_Search.py",
    "Hypotheses": "pages/3_Hypotheses.py",
    "Map": "pages/4_Map.py",
}
# What a newcomer can do next on each page (shown when the page has nothing to show yet).
NEXT_STEPS = {
    "Overview": "Pick a workspace in the sidebar, or build one from a table (**New workspace from a table** "
    "above). Then open **Features** to read the concepts, **Search** to steer a query, **Hypotheses** to test "
    "concepts against a column.",
    "Features": "Tick a row's box in the table to open that feature: its strongest documents, how often it fires and "
    "its neighbours. Type in the search box to find features by label or keyword.",
    "Search": "Type a query (or pick a document for 'more like this'). Its features become sliders: move one and "
    "watch which documents enter or leave the results.",
    "Hypotheses": "Choose the column to explain (the target) and press **Run**: the SAE features that predict it "
    "are named and tested on a holdout. Tick a result row's box to read its evidence.",
    "Map": "Regions carry the label of their most over-represented feature (each label once). Colour the map "
    "by a feature or a column, filter it, and select a region (box or lasso, or type its ranges) to list its "
    "documents and the features over-represented there.",
}


def add_features_hint(query: str) -> str:
    """What the Search sidebar says while its "Add to the sliders" list is empty: what to type, or that nothing
    matched what was typed."""
    if not str(query).strip():
        return "Type a word of a feature's label or keywords above to list features to add."
    return f"No feature's label or keywords hold every word of “{str(query).strip()}”; try another word."


ERRORS = (HsaeError, OSError)  # what a page shows as one st.error line instead of an exception box


ICONS = {
    "Overview": ":material/home:",
    "Features": ":material/category:",
    "Search": ":material/search:",
    "Hypotheses": ":material/science:",
    "Map": ":material/scatter_plot:",
}


def run_app() -> None:
    """The dashboard (app.py): registers the pages with st.navigation, Overview first, and runs the chosen one."""
    st.set_page_config(page_title="hsae", layout="wide")
    pages = [
        st.Page(
            path,
            title=name,
            icon=ICONS[name],
            url_path=None if name == "Overview" else name,
            default=name == "Overview",
        )
        for name, path in PAGES.items()
    ]
    st.navigation(pages).run()


def page_setup(title: str) -> None:
    """Every page's first call: its browser title and the wide layout, inside app.py's navigation."""
    if _run_outside_app_navigation():
        run_app()  # the same page again, now as app.py's navigation runs it
        st.stop()
    st.set_page_config(page_title=f"hsae: {title}", layout="wide")


def _run_outside_app_navigation() -> bool:
    # Streamlit decides once per server, at its first script run, whether a folder named pages/ beside app.py
    # makes this an old-style pages-directory app. When that first run is a page's URL (a bookmark, a tab left
    # open across a restart) it runs the page on its own, and every session of the server then gets the
    # folder's navigation ("app" first, no icons) until someone opens the root URL. Clearing Streamlit's flag
    # puts st.navigation in charge from the next run on; this run goes through it too (run_app, then stop:
    # no rerun, so a click that started this run is not lost). The flag is Streamlit's internal state, so a
    # version without it is left alone.
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:
        return False
    if not getattr(PagesManager, "uses_pages_directory", None):
        return False
    PagesManager.uses_pages_directory = False
    return True


def error_line(exc: BaseException) -> str:
    """One line for a user-facing error (a library error or a filesystem error)."""
    text = describe_os_error(exc, "use") if isinstance(exc, OSError) else str(exc)
    return " ".join(text.split())


def _stamp(path: Path) -> float:
    """Changes when the workspace is rebuilt (its manifest is replaced), so cached objects are reloaded."""
    try:
        st_ = (path / MANIFEST).stat()
        return st_.st_mtime_ns + st_.st_ino
    except OSError:
        return 0.0


@st.cache_resource(show_spinner="Opening workspace…", max_entries=4)
def _open(path: str, stamp: float) -> Workspace:
    ws = Workspace.open(path)
    # Read the parts every page shows once, so that no page rerun pays for them and a damaged file is reported
    # here. The SAE's facts come from its files; the estimator (torch and scikit-learn, 2-3 s to import) loads
    # only on a page that encodes a text (Search, "Try your own text"), whose own error line names a damaged file.
    _ = ws.frame, ws.codes, ws.features, ws.sae_config, ws.decoder_directions, ws.embeddings
    return ws


def open_workspace(path: str) -> Workspace:
    """The cached open workspace; when another process rebuilt it meanwhile, open the new version."""
    try:
        return _open(path, _stamp(Path(path)))
    except WorkspaceChangedError:
        _open.clear()
        return _open(path, _stamp(Path(path)))


@st.cache_resource(show_spinner="Loading search index…", max_entries=4)
def _search(path: str, stamp: float):
    from hsae_core.search import SteeredSearch

    ws = _open(path, stamp)
    return SteeredSearch(np.asarray(ws.embeddings), ws.sae, ws.codes, index=ws.index)


@st.cache_resource(show_spinner="Indexing features…", max_entries=4)
def _explorer(path: str, stamp: float):
    from hsae_core.features import FeatureExplorer

    ws = _open(path, stamp)
    return FeatureExplorer(ws.codes, ws.decoder_directions)


@st.cache_resource(show_spinner="Reading the table…", max_entries=2)
def _read_table(path: str, mtime: float, size: int) -> pd.DataFrame:
    from hsae_core.data import read_table

    return read_table(path)


def read_table_cached(path: str) -> pd.DataFrame:
    """A table on this machine, read once per version of the file (large local tables are not re-read on reruns).

    Callers must not modify the returned frame in place.
    """
    from hsae_core.errors import DataError

    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"No file at {p}; give the path of a CSV, TSV, JSON, JSONL or Parquet table on this machine")
    stat = p.stat()
    return _read_table(str(p.resolve()), stat.st_mtime, stat.st_size)


def read_upload(upload) -> pd.DataFrame:
    """An uploaded table (anything with ``.name`` and ``.getvalue()``), read through a temporary file of the
    same name so that every supported format works and any error names the uploaded file, not a temporary one."""
    from hsae_core.data import read_table

    with tempfile.TemporaryDirectory(prefix="hsae-upload-") as folder:
        path = Path(folder) / (Path(upload.name).name or "upload")
        path.write_bytes(upload.getvalue())
        return read_table(path)


def workspace_choices() -> list[Path]:
    """$HSAE_WORKSPACE (one folder) if set, else every workspace under $HSAE_WORKSPACES_DIR (./workspaces)."""
    fixed = settings.fixed_workspace()
    if fixed:
        return [fixed]
    return list_workspaces(workspaces_dir())


def pick_workspace(page: str = "") -> Optional[Workspace]:
    """Sidebar workspace picker; returns the opened workspace or None (after saying why). ``page``: the page
    calling; a sidebar line names this session's background jobs that go on elsewhere (every one but those this
    page shows itself for the workspace picked)."""
    choices = workspace_choices()
    running = jobs_running()
    elsewhere = st.sidebar.container()  # the line goes above the picker, but depends on the workspace picked
    if not choices:
        _say_jobs_elsewhere(elsewhere, running, page, "")
        if any(job.kind == "build" for job in running):
            st.info(
                "No workspace yet: one is being built in the background. Open the **Overview** page to follow it; "
                "it appears in the sidebar when it is done."
            )
            return None
        st.info(
            "No workspace yet. Open the **Overview** page to build the demo workspace or upload a table "
            "(or run `make dashboard`, which builds the demo first)."
        )
        return None
    labels = [str(p) for p in choices]
    current = st.session_state.get("workspace_path")
    # ?ws=NAME (a link, a reload, a new tab) opens that workspace: the session alone forgets it on reload
    linked = st.query_params.get("ws")
    if linked is not None and linked != st.session_state.get("_ws_from_link"):
        st.session_state["_ws_from_link"] = linked
        named = [p for p in labels if Path(p).name == linked]
        if named:
            current = named[0]
        else:
            st.warning(f"No workspace named '{linked}' here; showing another. Pick one in the sidebar.")
    index = labels.index(current) if current in labels else 0
    chosen = st.sidebar.selectbox("Workspace", labels, index=index, format_func=lambda p: Path(p).name)
    st.session_state["workspace_path"] = chosen
    _say_jobs_elsewhere(elsewhere, running, page, chosen)
    st.query_params["ws"] = st.session_state["_ws_from_link"] = Path(chosen).name
    try:
        return open_workspace(chosen)
    except ERRORS as exc:
        st.error(error_line(exc))
        return None


def search_engine(ws: Workspace):
    """The search engine of the open workspace; a damaged index or embeddings file stops the page with one line."""
    try:
        return _search(str(ws.path), _stamp(ws.path))
    except ERRORS as exc:
        st.error(error_line(exc))
        st.stop()


@st.cache_data(show_spinner=False, max_entries=16)
def _correlations(path: str, stamp: float, column: str, value, controls: tuple) -> tuple[str, np.ndarray]:
    from hsae_core.features import column_correlations

    space = _open(path, stamp)
    return column_correlations(_explorer(path, stamp), space.frame, column, value, controls, space.text_col)


def feature_correlations(ws: Workspace, column: str, value=None, controls=()) -> tuple[str, np.ndarray]:
    """(title, one number per feature): each feature's correlation with ``column`` (one ``value`` of a category
    as 0/1), partial beyond ``controls`` when given; computed once per choice (a second at a million rows)."""
    return _correlations(str(ws.path), _stamp(ws.path), column, value, tuple(controls))


def explorer(ws: Workspace):
    try:
        return _explorer(str(ws.path), _stamp(ws.path))
    except ERRORS as exc:
        st.error(error_line(exc))
        st.stop()


def progress_text(
    label: str, message: str = "", seconds_left: Optional[float] = None, seconds_spent: Optional[float] = None
) -> str:
    """``Building x: embeddings: 512 of 4000 · about 1 min 05 s left``: the line every progress bar shows. Without
    an estimate of the time left, the time spent (``· 42 s so far``): a long step still shows that it goes on."""
    from hsae_core.progress import format_seconds

    # under a second left is no news (a short build read "about 0 s left" at every step)
    if seconds_left is not None and seconds_left >= 1:
        tail = f" · about {format_seconds(seconds_left)} left"
    elif seconds_left is None and seconds_spent is not None and seconds_spent >= 1:
        tail = f" · {format_seconds(seconds_spent)} so far"
    else:
        tail = ""
    return (f"{label}: {message}" if message else label) + tail


def _progress_fn(draw, weights: Optional[dict] = None):
    """A ProgressFn calling ``draw(fraction, message, seconds_left)``: one bar over the weighted stages with the
    time left (hsae_core.progress.StagedProgress), or, without ``weights``, each call's own done/total."""
    from hsae_core.progress import StagedProgress

    if weights:
        return StagedProgress(weights, draw)

    def update(done: int, total: int, message: str = "") -> None:
        draw(0.0 if total <= 0 else min(max(done / total, 0.0), 1.0), message, None)

    return update


def feature_name(table: pd.DataFrame, latent: int) -> str:
    """``#12 label (AUC 0.84)``: a feature's number, label and, where measured, its label's held-out fidelity."""
    return f"#{int(latent)} {table['label'].iloc[int(latent)]}{fidelity_note(table.iloc[int(latent)])}"


def fidelity_note(row) -> str:
    """`` (AUC 0.84)`` / `` (F1 0.71)`` for a feature row, or nothing when its label was not scored."""
    auc, f1 = row.get("fidelity_auc"), row.get("fidelity_f1")
    if auc is not None and pd.notna(auc):
        return f" (AUC {auc:.2f})"
    if f1 is not None and pd.notna(f1):
        return f" (F1 {f1:.2f})"
    return ""


def docs_table(
    ws: Workspace, docs, extra: Optional[dict] = None, columns: Optional[list] = None, text_first: bool = False
) -> pd.DataFrame:
    """Documents as a table: doc id, extra columns, chosen columns and the full text (never cut: the grid wraps
    it to the column width and the reader below a table shows it whole). ``text_first`` puts the text right
    after the doc id, so it stays in view beside many other columns."""
    docs = np.asarray(docs, dtype=np.int64)
    out = pd.DataFrame({"doc": docs})
    if text_first:
        out["text"] = [ws.texts[i] for i in docs]
    for key, values in (extra or {}).items():
        out[key] = list(values)
    for col in columns or []:
        out[col] = ws.frame[col].to_numpy()[docs]
    if not text_first:
        out["text"] = [ws.texts[i] for i in docs]
    return out


DOC_ROW_HEIGHT = 80  # about four wrapped lines per document (the grid wraps text only in rows this tall)
TEXT_COLUMN = st.column_config.TextColumn("text", width="large", help="Click the row to read the whole text")


def corpus_text_column(name: str):
    """The text column of a table that opens no reader (the Overview's corpus sample): headed by its own name, as
    the line above it names it ("Text column: summary"), with no promise that a click opens the text."""
    return st.column_config.TextColumn(name, width="large", help="The texts the features were made from")


SMALL_COLUMNS = {  # short columns beside a document's text, kept narrow so that the text has the room
    "doc": st.column_config.NumberColumn("doc", width="small"),
    "activation": st.column_config.NumberColumn("activation", width="small", format="%.3f"),
    "band": st.column_config.TextColumn("band", width="small"),
    "rank": st.column_config.NumberColumn("rank", width="small"),
    "score": st.column_config.NumberColumn("score", width="small", format="%.4f"),
}


# What the columns of the small number tables (Features, Map) mean, shown on hover over their headers.
NUMBER_HELP = {
    "latent": "Feature number (the Features page opens it: Open feature #)",
    "cosine": "Cosine between the two features' decoder directions: 1 = the same direction in embedding space",
    "together": "Documents where both features fire",
    "share": "Share of this feature's documents where the other one fires too",
    "lift": "That share divided by the other feature's share of all documents: above 1, they fire together more "
    "often than chance",
    "inside": "Selected documents where the feature fires",
    "outside": "Documents outside the selection where the feature fires",
    "inside_rate": "Share of the selected (or region's) documents where the feature fires",
    "outside_rate": "Share of the other documents where the feature fires",
    "ratio": "inside_rate / outside_rate (smoothed)",
    "log_odds": "Log-odds ratio of firing inside against outside (smoothed)",
    "z": "z-score of that log-odds ratio: how surely the feature is over-represented (above ~3: clearly)",
}


def numbers_table(frame: pd.DataFrame, key: str) -> None:
    """A read-only table whose fractional numbers all show three decimals (``round(3)`` alone printed 0.47
    under 0.678); whole-number columns (feature numbers, counts) stay as they are. Columns named in
    NUMBER_HELP explain themselves on hover."""
    fractional = [c for c in frame.columns if pd.api.types.is_float_dtype(frame[c]) and not _whole(frame[c])]
    config = {
        c: st.column_config.NumberColumn(c, format="%.3f" if c in fractional else None, help=NUMBER_HELP.get(c))
        for c in frame.columns
        if c in fractional or c in NUMBER_HELP
    }
    st.dataframe(frame, key=key, hide_index=True, column_config=config)


def _whole(values: pd.Series) -> bool:
    finite = values.dropna().to_numpy()
    return bool(len(finite)) and bool(np.all(finite == np.round(finite)))


def selected_row(event) -> Optional[int]:
    """The row clicked in a ``st.dataframe(..., on_select="rerun", selection_mode="single-row")``, or None."""
    rows = event.selection.rows if event is not None and hasattr(event, "selection") else []
    return int(rows[0]) if rows else None


def plain_markdown(text: str) -> str:
    """``text`` (a label, a class name) escaped so that st.markdown shows it as written: no emphasis,
    links, headings or LaTeX from the characters of a document."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|$~<>])", r"\\\1", str(text))


def highlight_html(text: str, terms=()) -> str:
    """The text as safe HTML with every occurrence of ``terms`` (whole words, any case) marked."""
    words = sorted({t.strip() for t in terms if t and t.strip()}, key=len, reverse=True)
    if not words:
        return html.escape(text)
    pattern = re.compile(r"\b(" + "|".join(re.escape(w) for w in words) + r")\b", re.IGNORECASE)
    parts, last = [], 0
    for match in pattern.finditer(text):
        parts.append(html.escape(text[last : match.start()]))
        parts.append(f"<mark>{html.escape(match.group(0))}</mark>")
        last = match.end()
    parts.append(html.escape(text[last:]))
    return "".join(parts)


def reader(ws: Workspace, doc: int, terms=(), details: Optional[dict] = None, key: str = "reader") -> None:
    """One document in full, wrapped, with ``terms`` highlighted (a side panel for any table of documents)."""
    with st.container(border=True, key=f"{key}_{int(doc)}"):
        facts = " · ".join(f"**{k}:** {v}" for k, v in (details or {}).items())
        st.markdown(f"**Document {int(doc)}**" + (f" · {facts}" if facts else ""))
        st.html(
            f'<div class="hsae-doc" style="white-space: pre-wrap; line-height: 1.5">'
            f"{highlight_html(ws.texts[int(doc)], terms)}</div>"
        )


def documents(
    ws: Workspace, table: pd.DataFrame, key: str, terms=(), column_config: Optional[dict] = None, height="auto"
) -> Optional[int]:
    """A table of documents (with a ``doc`` column) whose clicked row opens below it in full; returns that doc."""
    config = {
        "text": TEXT_COLUMN,
        **{c: SMALL_COLUMNS[c] for c in SMALL_COLUMNS if c in table.columns},
        **(column_config or {}),
    }
    event = st.dataframe(
        table,
        key=key,
        on_select="rerun",
        selection_mode="single-row",
        hide_index=True,
        column_config=config,
        height=height,
        row_height=DOC_ROW_HEIGHT,
    )
    row = selected_row(event)
    if row is None or row >= len(table):
        st.caption("Tick a row's box, at its left, to read the whole document.")
        return None
    doc = int(table["doc"].iloc[row])
    extra = {c: table[c].iloc[row] for c in table.columns if c not in ("doc", "text")}
    reader(ws, doc, terms, {k: _fmt(v) for k, v in extra.items()}, key=f"{key}_reader")
    return doc


def _fmt(value) -> str:
    if isinstance(value, (float, np.floating)):
        return f"{value:.3f}"
    return str(value)


def next_steps(page: str) -> None:
    """The empty-state guide: what to do next on this page."""
    st.info(NEXT_STEPS[page], icon=":material/lightbulb:")


@st.cache_data(show_spinner=False, max_entries=8)
def _kinds(path: str, stamp: float) -> dict:
    from hsae_core.columns import column_kinds

    return column_kinds(_open(path, stamp).frame)


@st.cache_data(show_spinner=False, max_entries=32)
def _control_options(path: str, stamp: float, column: str) -> list:
    from hsae_core.columns import control_columns

    space = _open(path, stamp)
    return control_columns(space.frame, space.text_col, column)


def control_options(ws: Workspace, column: str) -> list:
    """Columns that ``column`` can be adjusted for (numbers, dates, categories, ids that repeat), computed once."""
    return _control_options(str(ws.path), _stamp(ws.path), column)


@st.cache_data(show_spinner=False, max_entries=32)
def _compared_within(path: str, stamp: float, target: str, controls: tuple) -> Optional[str]:
    from hsae_core.controls import absorbed_control

    space = _open(path, stamp)
    return absorbed_control(space.frame, controls, text_col=space.text_col, target_col=target)


def compared_within(ws: Workspace, target: str, controls) -> Optional[str]:
    """The column among ``controls`` that a run for ``target`` compares within (a run with a random split then
    holds out whole groups of it), or None; computed once per choice."""
    return _compared_within(str(ws.path), _stamp(ws.path), target, tuple(controls)) if controls else None


def column_kinds(ws: Workspace) -> dict:
    """{column: kind} of the workspace's table (text, id, numeric, category, date, other), computed once."""
    return _kinds(str(ws.path), _stamp(ws.path))


@st.cache_data(show_spinner=False, max_entries=8)
def _likely_target(path: str, stamp: float):
    from hsae_core.columns import guess_target_column

    space = _open(path, stamp)
    return guess_target_column(space.frame, space.text_col)


def likely_target(ws: Workspace):
    """The column a user most likely means as a target (stars, rating, label, ...; the Hypotheses page's first
    choice), or None; computed once."""
    return _likely_target(str(ws.path), _stamp(ws.path))


def api_key_box() -> Optional[str]:
    """An API key from the environment, or typed into a password field (kept in this session only)."""
    if settings.openai_api_key():
        st.caption("LLM: using OPENAI_API_KEY from the environment.")
        return settings.openai_api_key()
    typed = st.text_input(
        "OpenAI-compatible API key (kept for this browser session only, never saved)",
        type="password",
        key="session_api_key",
    )
    return typed.strip() or None


# ------------------------------------------------------------------ background jobs
# Work that outlives the script run that started it. Streamlit stops a script run whenever the user touches a
# widget, switches the workspace or opens another page; a build, a hypothesis run or a relabelling run inside it
# died there without a word. A job runs in a daemon thread of the server instead, and pages poll it (follow_job).
@dataclass
class Job:
    """One background job: what it last reported, then its result or its one-line error. ``page`` shows its
    progress (the sidebar elsewhere says it goes on); ``workspace``: the folder it is about, for a page that shows
    one workspace's jobs ("" when the page shows it whichever workspace is open)."""

    key: str
    label: str
    page: str = ""
    workspace: str = ""
    fraction: float = 0.0
    message: str = ""
    seconds_left: Optional[float] = None
    result: object = None
    error: Optional[str] = None
    finished: bool = False
    started: float = field(default_factory=time.monotonic)

    @property
    def kind(self) -> str:
        """What the job does: the start of its key (``build``, ``hypotheses``, ``relabel``, ``layout``)."""
        return self.key.partition(":")[0]

    @property
    def status(self) -> str:
        return progress_text(self.label, self.message, self.seconds_left, time.monotonic() - self.started)

    def shown_on(self, page: str, workspace: str) -> bool:
        """Whether ``page``, showing ``workspace``, draws this job's progress."""
        return self.page == page and self.workspace in ("", workspace)


class _JobBoard:
    def __init__(self):
        self.lock = threading.Lock()
        self.jobs: dict[str, Job] = {}


KEEP_FINISHED_JOBS = 32  # finished jobs kept for the pages to read their results (older ones are forgotten)


@st.cache_resource(show_spinner=False)
def _board() -> _JobBoard:
    """Every background job of this server process by key, for every session (a job is about a folder on disk)."""
    return _JobBoard()


def find_job(key: str) -> Optional[Job]:
    return _board().jobs.get(key)


def start_job(
    key: str,
    label: str,
    work,
    weights: Optional[dict] = None,
    again: bool = True,
    page: str = "",
    workspace: str = "",
) -> tuple[Job, bool]:
    """(job, started now): run ``work(progress)`` in a background thread under ``key`` (``kind:what``).

    While a job with this key runs it is returned and nothing new starts (two clicks make one job). A finished
    one is replaced when ``again``, else returned as it ended (work done once, like a workspace's map).
    ``weights`` ({stage: share of the time}) make one bar over the stages with the time left. ``page`` and
    ``workspace``: where its progress shows (Job).
    """
    board = _board()
    with board.lock:
        job = board.jobs.get(key)
        if job is not None and (not job.finished or not again):
            return job, False
        board.jobs.pop(key, None)
        finished = [k for k, j in board.jobs.items() if j.finished]
        for old in finished[: max(0, len(finished) - KEEP_FINISHED_JOBS + 1)]:
            del board.jobs[old]
        job = board.jobs[key] = Job(key, label, page=page, workspace=workspace)
    threading.Thread(target=_run_job, args=(job, work, weights), daemon=True, name=f"hsae-{key}"[-60:]).start()
    return job, True


def _run_job(job: Job, work, weights: Optional[dict]) -> None:
    def draw(fraction: float, message: str, seconds_left: Optional[float] = None) -> None:
        job.fraction, job.message, job.seconds_left = fraction, message, seconds_left

    try:
        job.result = work(_progress_fn(draw, weights))
    except ERRORS as exc:
        job.error = error_line(exc)
    except Exception as exc:  # noqa: BLE001 - a bug: one line on the page (the traceback in the server's log)
        logging.getLogger("hsae_dashboard").exception("Background job %s failed", job.key)
        job.error = " ".join(f"{type(exc).__name__}: {exc}".split())
    except BaseException:  # the thread itself is stopped: say so rather than leave the page waiting
        job.error = "stopped before it finished"
        raise
    finally:
        job.finished = True


def follow_job(job: Job, every: float = 2.0) -> None:
    """A running job's progress bar (step, bar, time left), redrawn every ``every`` seconds; the whole page reruns
    once when the job finishes, to show its result. Draws nothing for a finished job."""
    if job.finished:
        return

    @st.fragment(run_every=every)
    def poll():
        if job.finished:
            st.rerun()
        st.progress(min(max(job.fraction, 0.0), 1.0), text=job.status)

    poll()


FOLLOWED_JOBS = "followed_jobs"  # session state: {job key: whether this session started it}


def _follow(key: str, started_here: bool) -> None:
    followed = dict(st.session_state.get(FOLLOWED_JOBS, {}))
    followed[key] = followed.get(key, False) or started_here
    st.session_state[FOLLOWED_JOBS] = followed


def jobs_running() -> list[Job]:
    """The background jobs this session follows that are still running."""
    jobs = (find_job(key) for key in st.session_state.get(FOLLOWED_JOBS, {}))
    return [job for job in jobs if job is not None and not job.finished]


def _say_jobs_elsewhere(where, running: list[Job], page: str, workspace: str) -> None:
    """The sidebar's line: the running jobs whose progress ``page`` does not show, and where it shows."""
    elsewhere = [job for job in running if not job.shown_on(page, workspace)]
    if elsewhere:
        where.caption(
            " · ".join(
                f"{job.label} in the background (the **{job.page}** page shows the progress)" for job in elsewhere
            )
        )


def follow_jobs(page: str, workspace: str = "", where=None) -> list[tuple[Job, bool]]:
    """The progress of every job ``page`` shows (for ``workspace``) that is running on this server, whichever
    session started it (a reload of the page, or another tab, still sees it); this session follows them from
    now on. Returns the followed ones that have finished, each once, as (job, whether this session started it):
    the page says what they did. ``where``: the container to draw the bars in."""
    where = where if where is not None else st.container()
    board = _board()
    with board.lock:
        running = [key for key, job in board.jobs.items() if job.shown_on(page, workspace) and not job.finished]
    for key in running:
        _follow(key, started_here=False)
    followed = dict(st.session_state.get(FOLLOWED_JOBS, {}))
    done = []
    for key, started_here in list(followed.items()):
        job = find_job(key)
        if job is not None and not job.shown_on(page, workspace):
            continue  # another page's job, or another workspace's: said there
        if job is not None and not job.finished:
            with where:
                follow_job(job)
            continue
        followed.pop(key)
        if job is not None:  # None: forgotten among many later jobs
            done.append((job, started_here))
    st.session_state[FOLLOWED_JOBS] = followed
    return done


# ------------------------------------------------------------------ workspace builds
def _build_key(out: Path) -> str:
    return f"build:{Path(out).expanduser().absolute()}"


def may_replace(out: Path, key: str) -> bool:
    """Whether a build into ``out`` may go ahead: always for a new name; under a workspace's name only once the
    user, told what it holds, ticks "Replace 'NAME'" (a build there replaced it without a word)."""
    if not Workspace.is_workspace(out):
        return True
    try:
        ws = open_workspace(str(out))
        runs = len(ws.list_runs())
        holds = (
            f"{len(ws):,} documents, columns {', '.join(map(str, ws.manifest.get('columns', [])))}"
            + (f", built {ws.manifest['built']}" if ws.manifest.get("built") else "")
            + (f", {runs} hypothesis run{'s' if runs != 1 else ''}" if runs else "")
        )
    except ERRORS as exc:
        holds = f"it does not open: {error_line(exc)}"
    st.warning(
        f"A workspace named '{Path(out).name}' exists ({holds}). Building replaces it; runs of a table or SAE that "
        "changes are moved aside, not deleted."
    )
    return st.checkbox(f"Replace '{Path(out).name}'", value=False, key=f"{key}_replace")


def consent_used(key: str) -> None:
    """A "Replace" box ticked for one build is spent by it: the next build under a taken name asks again."""
    st.session_state.pop(f"{key}_replace", None)


def start_build(out, label: str, build, describe) -> None:
    """Build a workspace into ``out`` in the background: ``build(progress)`` returns it, ``describe(ws)`` says what
    was built. This session's Overview follows it (follow_builds) wherever the user goes meanwhile; the page is
    drawn again at once to show it. While a build into the same folder runs (started by this session or another),
    a click follows that one instead."""
    from hsae_core.workspace import BUILD_WEIGHTS

    def work(progress):
        ws = build(progress)
        return str(ws.path), describe(ws), ws.moved_runs_line()

    key = _build_key(out)
    _, started = start_job(key, f"Building {label}", work, BUILD_WEIGHTS, page="Overview")
    _follow(key, started_here=True)
    if started:  # draw the page again from the top, now with the build's progress (and no "no workspace yet")
        st.rerun()
    else:
        st.warning(
            f"A build into {Path(out).expanduser().absolute()} is already running (its progress shows at the top of "
            "this page); wait for it to finish, or build into another folder."
        )


def builds_running() -> list[Job]:
    """The builds this session follows that are still running."""
    return [job for job in jobs_running() if job.kind == "build"]


def follow_builds(where=None) -> None:
    """The Overview's view of the builds: every build running on this server shows its progress (follow_jobs);
    each finished one is said once, to the sessions that followed it: its one-line error, or its message and the
    workspace opened (in the session that started it; elsewhere the sidebar lists it). Call before
    ui.pick_workspace; ``where``: the container to draw in (the page's top)."""
    where = where if where is not None else st.container()
    for job, started_here in follow_jobs("Overview", where=where):
        with where:
            if job.error:
                st.error(f"Build failed (any previous workspace is unchanged): {job.error}")
                continue
            path, message, moved_runs = job.result
            pinned = settings.fixed_workspace()  # the sidebar lists only this one
            if pinned and Path(path).absolute() != pinned.absolute():
                st.success(
                    f"{message}. This dashboard opens only {pinned} (HSAE_WORKSPACE is set); "
                    f"open the new one with: `{dashboard_command(Path(path))}`"
                )
            elif started_here:
                st.session_state["workspace_path"] = path
                st.success(f"{message}; it is open now (the sidebar picks another).")
            else:
                st.success(f"{message}; pick it in the sidebar to open it.")
            if moved_runs:  # runs of the table or SAE this build replaced (hsae_core.workspace._stale_runs)
                st.info(moved_runs)


# ------------------------------------------------------------------ hypothesis runs
def start_hypotheses(ws: Workspace, target: str, config, **options) -> None:
    """Generate hypotheses for ``target`` in the background, into a new run folder of the workspace; ``options``
    go to Workspace.hypothesize (own_features, sample, llm_client: the client, and any API key typed into it,
    stays in memory). The workspace's Hypotheses page follows it (follow_hypotheses): one bar with the time left, as
    the run reports its overall progress. While a run with these settings for this target of this workspace goes on
    (this session's or another's), a click starts nothing and says so; other settings start a run beside it."""
    from hsae_core.progress import ONE_BAR

    def work(progress) -> str:
        out_dir = ws.new_run_dir(target)
        ws.hypothesize(target, config, out_dir=out_dir, progress=progress, **options)
        return str(out_dir)

    prefix = f"hypotheses:{ws.path}:{target}:"
    key = prefix + _run_settings_digest(config, options)
    going = [job for job in jobs_running_for(prefix) if job.key != key]
    label = f"Hypotheses for '{target}'" + (f" = {config.target_class}" if config.target_class else "")
    label += f" in {ws.path.name}" + (f" (run {len(going) + 1})" if going else "")
    _, started = start_job(key, label, work, ONE_BAR, page="Hypotheses", workspace=str(ws.path))
    _follow(key, started_here=started)
    if not started:
        st.info(
            f"A run for '{target}' with these settings on this workspace is already going (its progress is below): "
            "nothing new started."
        )
    elif going:
        others = "Another run" if len(going) == 1 else f"{len(going)} other runs"
        verb = "is" if len(going) == 1 else "are"
        st.info(f"{others} for '{target}' on this workspace, with other settings, {verb} going on beside this one.")


def _run_settings_digest(config, options: dict) -> str:
    """A short digest of what a hypothesis run computes: its config and options, an LLM client by its model and
    server (never its key), the rows of a sample by their bytes. Two clicks with the same settings make one job."""
    client = options.get("llm_client")
    sample = options.get("sample")
    described = {
        "config": repr(config),
        "own_features": options.get("own_features"),
        "llm": None if client is None else (getattr(client, "model", None), getattr(client, "base_url", None)),
        "sample": None if sample is None else hashlib.sha1(np.asarray(sample).tobytes()).hexdigest(),
    }
    return hashlib.sha1(repr(sorted(described.items())).encode()).hexdigest()[:12]


def jobs_running_for(prefix: str) -> list[Job]:
    """This server's background jobs whose key starts with ``prefix`` and that have not finished (any session's)."""
    board = _board()
    with board.lock:
        return [job for key, job in board.jobs.items() if key.startswith(prefix) and not job.finished]


def follow_hypotheses(ws: Workspace) -> Optional[str]:
    """The progress of this workspace's hypothesis runs going on in the background; returns the folder of a run
    this session started that has finished (for the page to show it), or says its one-line error, once."""
    new_run = None
    for job, started_here in follow_jobs("Hypotheses", str(ws.path)):
        if not started_here:  # another session's run: it is in the list of past runs
            continue
        if job.error:
            st.error(f"{job.label} failed: {job.error}")
        else:
            new_run = job.result
    return new_run


# ------------------------------------------------------------------ the Map
def _layout_key(ws: Workspace) -> str:
    return f"layout:{ws.path}:{_stamp(ws.path)}"


def start_layout(ws: Workspace) -> Optional[Job]:
    """Compute the workspace's missing 2-D layout once, in the background (other pages stay usable; e.g. the demo,
    built without it); None when it has one."""
    if ws.has_layout:
        return None
    path = str(ws.path)

    def work(progress) -> None:  # the map goes to disk; the board keeps no copy of it
        Workspace.open(path).layout(progress=progress)

    return start_job(_layout_key(ws), "Map", work, again=False)[0]


def map_layout(ws: Workspace) -> Optional[np.ndarray]:
    """The workspace's 2-D layout, or None (after saying so) while it is computed in the background."""
    if ws.has_layout:
        return ws.layout()
    job = start_layout(ws)
    if job is None:  # stored meanwhile
        return ws.layout()
    if job.error:
        st.error(f"The map could not be computed: {job.error}")
        return None
    if job.finished:
        return ws.layout()
    st.info(
        "Laying out the map: the first visit computes it in the background, once (a large corpus takes "
        "minutes; the other pages work meanwhile, and later visits show it at once)."
    )
    follow_job(job)
    return None


@st.cache_resource(max_entries=8, show_spinner="Naming the map's regions…")
def _regions(path: str, stamp: float, labels: tuple, n_regions: int):
    from hsae_core.mapping import map_regions

    ws = _open(path, stamp)
    return map_regions(ws.layout(), ws.codes, np.asarray(labels, dtype=object), n_regions=n_regions)


def map_regions(ws: Workspace, labels, n_regions: int = 12):
    """(region of each document, one row per region: label position and the label of its most over-represented
    feature), computed once per workspace and label set."""
    return _regions(str(ws.path), _stamp(ws.path), tuple(map(str, labels)), n_regions)


@st.cache_data(show_spinner=False, max_entries=8)
def _map_columns(path: str, stamp: float) -> dict:
    ws = _open(path, stamp)
    out = {}
    for col, kind in column_kinds(ws).items():
        if col == ws.text_col or kind not in ("numeric", "category"):
            continue
        values = ws.frame[col]
        n_unique = int(values.nunique())
        if kind == "numeric" and n_unique > 20:
            num = pd.to_numeric(values, errors="coerce")
            out[col] = ("numeric", (float(num.min()), float(num.max())))
        elif 2 <= n_unique <= 200:
            shown, ordered = category_values(values)
            out[col] = ("ordered" if ordered else "category", shown)
    return out


def map_columns(ws: Workspace) -> dict:
    """{column: ("numeric", (min, max)), or ("category" | "ordered", its values as the legend lists them)}:
    what the Map filters and colours by (text, id and date columns left out; "ordered": a few numbers such as
    stars, drawn on an ordered colour scale), computed once."""
    return _map_columns(str(ws.path), _stamp(ws.path))


# ------------------------------------------------------------------ label sets (which labels to show, relabelling)
def _labels_stamp(path: Path) -> float:
    try:
        return (path / "labels" / "index.json").stat().st_mtime
    except OSError:
        return 0.0


@st.cache_data(show_spinner=False, max_entries=16)
def _labelled(path: str, stamp: float, labels_stamp: float, name: Optional[str]) -> pd.DataFrame:
    from hsae_core.labelsets import features_with_labels

    return features_with_labels(_open(path, stamp), name)


def feature_table(ws: Workspace) -> pd.DataFrame:
    """The workspace's feature table labelled by the label set picked in the sidebar (callers must not modify it)."""
    from hsae_core.labelsets import label_sets, read_index

    names = label_sets(ws)
    name = None
    if names:
        index = read_index(ws.path)

        def describe(n: str) -> str:
            med = index["sets"].get(n, {}).get("auc", {}).get("median")
            f1 = index["sets"].get(n, {}).get("f1", {}).get("median")
            score = f"median AUC {med:.2f}" if med is not None else (f"median F1 {f1:.2f}" if f1 is not None else "")
            return f"{n} ({score})" if score else n

        # The picker's value comes from session state alone: a default (index=) as well made Streamlit warn when a
        # relabelling set it. "label_set" keeps the choice on pages without the picker (its own state goes there).
        forced = st.session_state.pop("label_set_force", None)  # a relabel just made this set: show it
        if forced in names:
            st.session_state["label_set_pick"] = forced
        elif st.session_state.get("label_set_pick") not in names:
            remembered = st.session_state.get("label_set")
            st.session_state["label_set_pick"] = remembered if remembered in names else names[0]
        name = st.sidebar.selectbox(
            "Feature labels",
            names,
            format_func=describe,
            key="label_set_pick",
            help="Which label set to show. Fidelity is measured on documents the labeller "
            "never saw (AUC: embedding judge; F1: LLM judge).",
        )
        st.session_state["label_set"] = name
    return _labelled(str(ws.path), _stamp(ws.path), _labels_stamp(ws.path), name)


def relabel_control(ws: Workspace) -> None:
    """An expander that relabels every feature (offline or with an LLM) in the background, with its progress
    (start_relabel); when that is done the new label set is shown (follow_relabel)."""
    from hsae_core.refine import Budget, describe_estimate, estimate_llm_labels

    going = find_job(_relabel_key(ws))
    with st.expander(
        "Relabel features",
        expanded="relabel_message" in st.session_state or (going is not None and not going.finished),
    ):
        if "relabel_message" in st.session_state:
            st.success(st.session_state.pop("relabel_message"))
        kind = st.radio(
            "Labeller",
            list(settings.LABELLERS),
            horizontal=True,
            key="relabel_kind",
            format_func={"phrases": "phrases (offline)", "keywords": "keywords (offline)", "llm": "LLM"}.get,
        )
        client = budget = None
        refine = False
        if kind == "llm":
            api_key = api_key_box()
            refine = st.checkbox(
                "Rewrite labels whose validation F1 is under "
                f"{settings.LABELS.refine_f1_bar:.2f} (shows the LLM its mistakes)",
                key="relabel_refine",
            )
            max_calls = int(
                st.number_input(
                    "Stop after this many LLM calls", 0, 10_000_000, 5_000, step=500, key="relabel_max_calls"
                )
            )
            budget = Budget(max_calls=max_calls)
            n_features = int((ws.features["n_active"] > 0).sum())
            st.info(describe_estimate(estimate_llm_labels(ws.texts, n_features, refine=refine, budget=budget), budget))
        if st.button("Relabel", key="relabel_go"):
            try:
                if kind == "llm":
                    from hsae_core.llm import LLMClient

                    client = LLMClient(api_key=api_key) if api_key else LLMClient()  # the key stays in memory
            except HsaeError as exc:
                st.error(error_line(exc))
            else:
                start_relabel(ws, kind, client, budget, refine)
        follow_relabel(ws)


def _relabel_key(ws: Workspace) -> str:
    return f"relabel:{ws.path}"


def start_relabel(ws: Workspace, kind: str, client=None, budget=None, refine: bool = False) -> None:
    """Relabel the workspace's features with labeller ``kind`` in the background (an LLM ``client`` and any API key
    typed into it stay in memory). While the workspace is being relabelled (by this session or another), a click
    starts nothing and says so. Its bar shows the time left, as the relabelling reports its overall progress."""
    from hsae_core.labelsets import relabel_workspace
    from hsae_core.progress import ONE_BAR

    def work(progress) -> tuple[str, str]:
        table = relabel_workspace(ws, kind, llm_client=client, budget=budget, refine=refine, progress=progress)
        name = kind if table["fidelity_judge"].ne("unavailable").any() or kind != "phrases" else "keywords"
        return name, f"Label set '{name}' made and shown" + (f"; {budget.describe()}" if budget else "")

    key = _relabel_key(ws)
    label = f"Relabelling the features of {ws.path.name} ({kind})"
    _, started = start_job(key, label, work, ONE_BAR, page="Features", workspace=str(ws.path))
    _follow(key, started_here=started)
    if not started:
        st.info("This workspace's features are already being relabelled (its progress is below): nothing new started.")


def follow_relabel(ws: Workspace) -> None:
    """The progress of the workspace's relabelling; once it is done, in the session that started it, its label set
    is shown with a success line, or its one-line error is said, once."""
    for job, started_here in follow_jobs("Features", str(ws.path)):
        if not started_here:
            continue
        if job.error:
            st.error(f"{job.label} failed: {job.error}")
            continue
        name, message = job.result
        st.session_state["label_set_force"] = name
        st.session_state["relabel_message"] = message
        st.rerun()  # from the top: the sidebar's label picker, drawn before this, shows the new set
