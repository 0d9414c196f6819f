"""Start the dashboard with its heavy imports already under way: ``python -m hsae_core.warm_start [streamlit
options]`` is ``streamlit run app.py [options]`` plus a thread that imports torch, scikit-learn and plotly as
soon as the server answers, while the newcomer reads its URL and clicks it. A page's first run otherwise spends
about 4 s importing them (bench/bench_prep.py) before it shows anything; `make dashboard` starts the dashboard
this way.

app.py calls :func:`wait` before it imports anything heavy, so a session that arrives while the imports are
still running waits for them instead of importing the same modules from a second thread (two threads
importing one large package at once can each see the other's half-initialised modules).
"""

from __future__ import annotations

import importlib
import sys
import threading
import time
from pathlib import Path
from typing import Optional

# What a page's first run imports beyond Streamlit and pandas, slowest first (python -X importtime -c "import ui")
HEAVY_MODULES = ("torch", "sklearn.base", "scipy.stats", "plotly.graph_objects", "hsae_core.workspace")
APP = Path(__file__).resolve().parents[1] / "app.py"

_thread: Optional[threading.Thread] = None


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


def _import_all() -> None:
    _server_started()
    for name in HEAVY_MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # the page's own import raises it again, where the user can read it
            return


def start() -> None:
    """Begin importing :data:`HEAVY_MODULES` in a background thread (once per process)."""
    global _thread
    if _thread is None:
        _thread = threading.Thread(target=_import_all, name="hsae-warm-start", daemon=True)
        _thread.start()


def wait(timeout: float = 120.0) -> None:
    """Return once the background imports are done; at once when :func:`start` was never called (the app was
    started with plain ``streamlit run app.py``, or under a test)."""
    if _thread is not None:
        _thread.join(timeout)


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
