"""hsae dashboard: `streamlit run app.py` (`make dashboard` starts it through hsae_core.warm_start, which imports
the heavy libraries in the background). Registers the pages (Overview first) and runs the chosen one."""

from __future__ import annotations

from hsae_core import warm_start

warm_start.page_starts()  # waits while the launcher imports what this run would import beside it
try:
    import ui

    ui.run_app()
finally:
    warm_start.page_ends()
