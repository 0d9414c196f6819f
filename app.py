"""hsae dashboard: `streamlit run app.py`. Registers the pages (Overview first) and runs the chosen one."""

from __future__ import annotations

import streamlit as st

import ui

st.set_page_config(page_title="hsae", layout="wide")
TITLES = {
    "Overview": ":material/home:",
    "Features": ":material/category:",
    "Search": ":material/search:",
    "Hypotheses": ":material/science:",
    "Map": ":material/scatter_plot:",
}
pages = [
    st.Page(
        path, title=name, icon=TITLES[name], url_path=None if name == "Overview" else name, default=name == "Overview"
    )
    for name, path in ui.PAGES.items()
]
st.navigation(pages).run()
