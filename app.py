"""hsae dashboard: `streamlit run app.py` (`make dashboard` starts it through hsae_core.warm_start, which imports
the heavy libraries once the server answers). Registers the pages (Overview first) and runs the chosen one."""

from __future__ import annotations

from hsae_core import warm_start

warm_start.wait()  # the first session waits for the launcher's imports rather than racing them

import ui  # noqa: E402

ui.run_app()
