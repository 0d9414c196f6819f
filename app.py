"""hsae dashboard: `streamlit run app.py`. Registers the pages (Overview first) and runs the chosen one."""

from __future__ import annotations

import ui

ui.run_app()
