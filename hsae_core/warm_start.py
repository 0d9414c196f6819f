"""Start the dashboard with its imports already under way: ``python -m hsae_core.warm_start [streamlit options]``
is ``streamlit run app.py [options]`` plus a thread that imports, while the newcomer reads the URL and clicks it,
what the first page needs (plotly, pyarrow, the workspace module), and once that page has run, torch and
scikit-learn, which only a page that encodes a text (Search) needs; `make dashboard` starts the dashboard this
way. Without it the first Search page waits 2-3 s for torch (bench/first_page.py).

app.py brackets every run of a page with :func:`page_starts` and :func:`page_ends`. A page waits for the first
group of imports, and for the second while it is under way; the second begins only while no page runs. So no
page ever imports a module the thread is importing (two threads importing one large package at once can each
see the other's half-initialised modules).
"""

from __future__ import annotations

import importlib
import sys
import threading
import time
from pathlib import Path
from typing import Optional

# What the first page's run imports beyond Streamlit and pandas, slowest first (python -X importtime).
FIRST_PAGE_MODULES = ("plotly.express", "pyarrow.dataset", "hsae_core.workspace")
# What the SAE's estimator imports: the Search page's first run, and "Try your own text" on Features.
ESTIMATOR_MODULES = ("torch", "sklearn.base", "scipy.stats", "hsae_core.sae")
APP = Path(__file__).resolve().parents[1] / "app.py"
FIRST_PAGE_GRACE = 60.0  # seconds the estimator's imports wait for a first page before going ahead


class _Imports:
    """What the background thread has imported, and how many pages are running, under one condition."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.first_page_ready = False  # FIRST_PAGE_MODULES imported (or given up on)
        self.estimator_importing = False  # ESTIMATOR_MODULES under way: pages wait
        self.pages_running = 0
        self.pages_run = 0


_thread: Optional[threading.Thread] = None
_imports = _Imports()


def _server_started(timeout: float = 30.0) -> None:
    """Return once Streamlit's runtime has started (its server answers then), or after ``timeout``: importing
    beside the server's own start slowed its first answer from 0.8 to 2.6 s (bench/first_page.py)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            from streamlit import runtime

            if runtime.exists() and runtime.get_instance().state.name != "INITIAL":
                return
        except Exception:  # an API this Streamlit lacks: import at once rather than not at all
            return
        time.sleep(0.05)


def _import(names: tuple[str, ...]) -> None:
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # the page's own import raises it again, where the user can read it
            return


def _import_all() -> None:
    state = _imports
    try:
        _server_started()
        _import(FIRST_PAGE_MODULES)
    finally:
        with state.changed:
            state.first_page_ready = True
            state.changed.notify_all()
    with state.changed:
        # after the first page has run (or a minute without one), at a moment no page is running
        state.changed.wait_for(lambda: state.pages_run > 0 and state.pages_running == 0, FIRST_PAGE_GRACE)
        state.changed.wait_for(lambda: state.pages_running == 0)
        state.estimator_importing = True
    try:
        _import(ESTIMATOR_MODULES)
    finally:
        with state.changed:
            state.estimator_importing = False
            state.changed.notify_all()


def start() -> None:
    """Begin the background imports (once per process)."""
    global _thread
    if _thread is None:
        _thread = threading.Thread(target=_import_all, name="hsae-warm-start", daemon=True)
        _thread.start()


def page_starts(timeout: float = 120.0) -> None:
    """A page's run begins: wait for the first page's imports, and for the estimator's while they are under way.
    Returns at once when :func:`start` was never called (plain ``streamlit run app.py``, or under a test)."""
    if _thread is None:
        return
    state = _imports
    with state.changed:
        state.changed.wait_for(lambda: state.first_page_ready and not state.estimator_importing, timeout)
        state.pages_running += 1


def page_ends() -> None:
    """A page's run has ended (finished, stopped or rerun): the estimator's imports may begin once none runs."""
    if _thread is None:
        return
    state = _imports
    with state.changed:
        state.pages_running = max(state.pages_running - 1, 0)
        state.pages_run += 1
        state.changed.notify_all()


def main(argv: Optional[list[str]] = None) -> int:
    """``streamlit run app.py`` with ``argv`` as its options, after :func:`start`."""
    if not APP.is_file():
        print(
            f"hsae: error: no dashboard app at {APP}: run this from a checkout of the hsae repository", file=sys.stderr
        )
        return 2
    # Streamlit's own threads may import pandas (and numpy) on their first request: import them here, before
    # the server and the thread start, so that no two threads ever import them at once (0.4 s).
    import pandas  # noqa: F401

    start()
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", str(APP), *(sys.argv[1:] if argv is None else argv)]
    try:
        cli.main()
    except SystemExit as stop:
        return int(stop.code or 0) if not isinstance(stop.code, str) else 1
    return 0


if __name__ == "__main__":
    # Run the package's module, not this __main__ copy, so that app.py's `wait` sees the thread started here.
    from hsae_core import warm_start

    sys.exit(warm_start.main())
