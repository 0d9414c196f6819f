"""Overview: workspace picker, corpus and SAE summary, new workspace from an upload or a pretrained SAE."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import plotly.express as px
import streamlit as st

import ui
from hsae_core.columns import guess_text_column, profile_columns
from hsae_core.corpora import (
    EMBEDDING_COLUMN_GUESSES,
    TEXT_COLUMN,
    corpus_for_sae,
    guess_column,
    load_hub_corpus,
    load_published_corpus,
)
from hsae_core.data import TABLE_SUFFIXES, markup_line, prepare_corpus
from hsae_core.errors import DataError, HsaeError, ModelError
from hsae_core.hub import registry
from hsae_core.settings import MIN_SAE_ROWS, SAE, format_levels
from hsae_core.workspace import (
    DEMO_HELP,
    DEMO_NAME,
    build_demo_workspace,
    build_pretrained_workspace,
    build_workspace,
    demo_frame,
    workspaces_dir,
)

ui.page_setup("Overview")
st.title("hsae: Overview")


def build_demo() -> None:
    """Build the demo workspace in the background (a missing download is said at once, before any building)."""
    try:
        demo_frame()
    except ui.ERRORS as exc:
        st.error(ui.error_line(exc))
        return
    root = workspaces_dir()
    ui.start_build(
        root / DEMO_NAME,
        "the demo workspace (Yelp reviews)",
        lambda progress: build_demo_workspace(root, progress=progress),
        lambda ws: f"Built {ws.name}: {len(ws):,} documents",
    )


def text_column_picker(frame, key: str, container=st):
    """A selectbox of the columns, prose first and the likeliest text column chosen (decided from content)."""
    profiles = profile_columns(frame)
    cols = list(frame.columns)
    order = sorted(cols, key=lambda c: (profiles[c].kind != "text", cols.index(c)))
    guess = guess_text_column(frame)
    return container.selectbox(
        "Text column",
        order,
        index=order.index(guess) if guess in order else 0,
        key=key,
        format_func=lambda c: f"{c} ({profiles[c].kind})",
    )


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "workspace"


def new_workspace_form() -> None:
    """Upload a table, pick its text column, build a workspace through the same code as `hsae build`."""
    upload = st.file_uploader(
        "Table (CSV, TSV, JSON, JSONL or Parquet)", type=[s[1:] for s in TABLE_SUFFIXES], key="upload"
    )
    if upload is None:
        return
    try:
        frame = ui.read_upload(upload)
    except HsaeError as exc:
        st.error(f"Could not use {upload.name}: {exc}")
        return
    st.write(f"{len(frame):,} rows, columns: {', '.join(map(str, frame.columns))}")
    text_col = text_column_picker(frame, key="new_text_col")
    try:  # said now, not after the user has named the workspace and clicked Build
        corpus = prepare_corpus(frame, text_col, min_rows=MIN_SAE_ROWS)
    except HsaeError as exc:
        st.error(f"Cannot build from '{text_col}': {exc}")
        return
    dropped = corpus.counts["read"] - corpus.counts["kept"]
    if dropped:
        st.caption(f"{corpus.counts['kept']:,} texts to build from; {dropped:,} rows with an empty text are left out.")
    markup = markup_line(corpus.counts)
    if markup:
        st.caption(markup + ".")
    default_name = safe_name(Path(upload.name).stem)
    name = st.text_input("Workspace name", value=default_name, key="new_name")
    # The same SAE as `hsae build` and a Hypotheses run (settings.SAE), so numbers match across doors.
    c1, c2 = st.columns(2)
    m = c1.number_input("Features (m)", min_value=8, max_value=16384, value=SAE.m, step=8, key="new_m")
    k = c2.number_input("Active per document (k)", min_value=1, max_value=128, value=SAE.k, key="new_k")
    with_levels = st.checkbox(
        "Levels",
        value=True,
        key="new_levels",
        help=f"Train the SAE with its levels ({format_levels(SAE.levels)}, as latents/active) beside the m main "
        "features: broad groups to fine features, so a whole topic can be one feature. Off: one dictionary of "
        "m features.",
    )
    safe = safe_name(name)
    out = workspaces_dir() / safe
    allowed = ui.may_replace(out, key="new")
    if st.button("Build workspace", key="new_build", disabled=not allowed):
        ui.consent_used("new")
        ui.start_build(
            out,
            safe,
            lambda progress: build_workspace(
                out,
                frame=frame,
                text_col=text_col,
                m=int(m),
                k=int(k),
                levels=SAE.levels if with_levels else (),
                progress=progress,
                name=name,
            ),
            lambda ws: f"Built {ws.name}: {len(ws):,} documents",
        )


SAE_CHOICES = ("Published SAE", "Type a spec or folder")
CORPUS_CHOICES = ("Upload a table", "Table on this machine", "Hugging Face dataset")
OWN_CORPUS = "Its published corpus"


def pick_pretrained_sae() -> tuple[str, dict | None]:
    """(spec, registry entry or None): a published SAE from the registry, or a typed spec."""
    try:
        entries = {e["name"]: e for e in registry()}
    except HsaeError as exc:
        st.error(str(exc))
        entries = {}
    how = st.radio("SAE", SAE_CHOICES, horizontal=True, key="pre_how") if entries else SAE_CHOICES[1]
    if how == SAE_CHOICES[1]:
        spec = st.text_input(
            "SAE spec",
            key="pre_spec",
            placeholder="hub:owner/repo/file.pth, hub:owner/repo, a registry name or a local folder",
        )
        return spec.strip(), None
    name = st.selectbox(
        "Published SAE",
        list(entries),
        key="pre_pick",
        format_func=lambda n: (
            f"{n}: k={entries[n]['k']}, n={entries[n]['n']} latents, {entries[n]['domain']} "
            f"(needs {entries[n]['d_in']}-d {entries[n]['embedding_model']})"
        ),
    )
    entry = entries[name]
    st.caption(
        f"Spec: `hub:{entry['repo_id']}/{entry['filename']}` · "
        f"{(entry.get('corpus') or {}).get('description', 'training corpus not recorded')}"
    )
    return f"hub:{entry['repo_id']}/{entry['filename']}", entry


def pretrained_form() -> None:
    """A pretrained SAE plus texts with their stored embeddings from the SAE's embedding model -> a workspace."""
    spec, entry = pick_pretrained_sae()
    own = corpus_for_sae(entry)
    choices = ((OWN_CORPUS,) if own else ()) + CORPUS_CHOICES
    source = st.radio("Corpus: texts with stored embeddings", choices, horizontal=True, key="pre_source")
    frame, text_col, emb_col, label, max_rows = None, None, None, "table", None
    if source == OWN_CORPUS:
        st.caption(
            f"{own.description}: texts from the Hub dataset `{own.dataset}`, embeddings from "
            f"`{own.embeddings_repo}/{own.embeddings_file}` (read without unpickling anything)."
        )
        max_rows = (
            int(st.number_input("Documents to read (0 = all)", min_value=0, value=0, step=10_000, key="pre_own_rows"))
            or None
        )
        label = f"{own.name}-corpus"
    elif source == CORPUS_CHOICES[2]:
        suggested = ((entry or {}).get("corpus") or {}).get("hub_dataset")
        if suggested and ("pre_dataset" not in st.session_state or st.session_state.get("pre_dataset_for") != spec):
            st.session_state["pre_dataset"] = suggested  # prefill with the chosen SAE's own corpus
        st.session_state["pre_dataset_for"] = spec
        dataset = st.text_input("Dataset repo id", key="pre_dataset", placeholder="owner/name").strip()
        c1, c2 = st.columns(2)
        text_col = c1.text_input("Text column (blank: guess)", key="pre_ds_text").strip() or None
        emb_col = c2.text_input("Embedding column (blank: guess)", key="pre_ds_emb").strip() or None
        max_rows = (
            int(
                st.number_input(
                    "Rows to read (0 = all; read in batches)",
                    min_value=0,
                    value=100_000,
                    step=10_000,
                    key="pre_ds_rows",
                )
            )
            or None
        )
        label = dataset.split("/")[-1] or label
    else:
        try:
            if source == CORPUS_CHOICES[0]:
                upload = st.file_uploader(
                    "Table (CSV, TSV, JSON, JSONL or Parquet)", type=[s[1:] for s in TABLE_SUFFIXES], key="pre_upload"
                )
                if upload is not None:
                    label, frame = Path(upload.name).stem, ui.read_upload(upload)
            else:
                path = st.text_input(
                    "Path to a table on this machine (CSV, TSV, JSON, JSONL or Parquet)", key="pre_path"
                ).strip()
                if path:
                    label, frame = Path(path).stem, ui.read_table_cached(path)
        except HsaeError as exc:
            st.error(f"Could not use that table: {exc}")
            return
        if frame is None:
            return
        cols = list(frame.columns)
        st.write(f"{len(frame):,} rows, columns: {', '.join(map(str, cols))}")
        guess_emb = guess_column(frame, EMBEDDING_COLUMN_GUESSES) or cols[-1]
        c1, c2 = st.columns(2)
        text_col = text_column_picker(frame, key="pre_text_col", container=c1)
        emb_col = c2.selectbox("Embedding column", cols, index=cols.index(guess_emb), key="pre_emb_col")
    default = safe_name(f"{entry['name']}-{label}" if entry else label)
    name = st.text_input("Workspace name", value=default, key="pre_ws_name")
    safe = safe_name(name)
    out = workspaces_dir() / safe
    allowed = ui.may_replace(out, key="pre")
    if not st.button("Build workspace", key="pre_build", disabled=not allowed):
        return
    ui.consent_used("pre")

    def build(progress):
        frame_, text_col_, embeddings = frame, text_col, None
        if not spec:
            raise ModelError(
                "Choose a published SAE or type a spec (hub:owner/repo/file.pth, hub:owner/repo or a folder)"
            )
        if source == OWN_CORPUS:
            frame_, embeddings = load_published_corpus(own.name, max_rows=max_rows)
            text_col_ = TEXT_COLUMN
        elif source == CORPUS_CHOICES[2]:
            if not dataset:
                raise DataError("Type the Hugging Face dataset repo id (owner/name)")
            frame_, embeddings = load_hub_corpus(dataset, text_col=text_col, embedding_col=emb_col, max_rows=max_rows)
            if embeddings is None:
                raise DataError(
                    f"{dataset} has no embedding column (columns: {', '.join(map(str, frame_.columns))}); "
                    "type the column holding the stored embeddings"
                )
            text_col_ = frame_.columns[0]
        return build_pretrained_workspace(
            out,
            spec,
            frame=frame_,
            text_col=text_col_,
            embedding_col=emb_col,
            embeddings=embeddings,
            progress=progress,
            name=name,
        )

    ui.start_build(
        out,
        safe,
        build,
        lambda ws: f"Built {ws.name}: {len(ws):,} documents with {ws.sae_config.m:,} pretrained features",
    )


builds = st.container()  # this session's builds: their progress, then what they built (ui.follow_builds)
choices = ui.workspace_choices()
if not choices and not st.session_state.get("demo_attempted"):
    # First start: build the demo workspace once per session (it is reused from disk afterwards).
    st.session_state["demo_attempted"] = True
    if os.environ.get("HSAE_DATA_DIR"):
        build_demo()
    else:
        # Not an error: a table of the user's own is the usual start, and the demo is optional.
        st.info(
            "No workspace yet: upload a table below to build one (any CSV, TSV, JSON, JSONL or Parquet with a "
            "text column). To open the Yelp demo instead: " + DEMO_HELP
        )
elif not choices and not ui.builds_running():
    st.warning("No workspace yet. " + DEMO_HELP)
    if st.button("Try building the demo workspace again"):
        build_demo()

with st.expander("New workspace from a table", expanded=not choices):
    new_workspace_form()
with st.expander("Open a pretrained SAE"):
    pretrained_form()

ui.follow_builds(builds)  # before the sidebar's picker: a build finished here opens its workspace
ws = ui.pick_workspace("Overview") if ui.workspace_choices() else None
if ws is not None:
    ui.start_layout(ws)  # a workspace built without its map (the demo) gets it in the background meanwhile
    info = ws.overview()
    st.header(info["name"])
    c = st.columns(4)
    c[0].metric("Documents", f"{info['n_docs']:,}")
    if info["levels"]:
        (main_m, main_k), *more = info["levels"]
        c[1].metric(
            "SAE shape",
            f"m={main_m}, k={main_k}",
            help=f"{info['m']} features in all: the main level (m={main_m}, k={main_k}) and the levels "
            + format_levels(more)
            + " (latents/active; 4/1 puts almost every document in one of 4 broad groups). Reconstruction numbers are "
            "the main level's.",
        )
        c[1].caption(  # beside the value, which would be cut
            f"+ {len(more)} levels: {format_levels(more)}; {info['m']} features in all"
        )
    else:
        c[1].metric("SAE shape", f"m={info['m']}, k={info['k']}")
    if info.get("val_nmse") is not None:
        c[2].metric(
            "Validation NMSE",
            f"{info['val_nmse']:.3f}",
            help="Reconstruction error on documents held out from SAE training, as a share of the "
            "embeddings' variance (0 = perfect, 1 = no better than the mean).",
        )
    else:
        c[2].metric(
            "NMSE (all documents)",
            f"{info['nmse']:.3f}" if info["nmse"] is not None else "n/a",
            help="Reconstruction error on this workspace's documents as a share of their variance; "
            "the SAE was not trained here, so no validation split is known.",
        )
    c[3].metric("Dead latents", f"{info['dead_frac']:.1%}")
    st.write(
        f"**Text column:** `{info['text_col']}` · **Embeddings:** {info['embedding_model']} ({info['dim']}-d) · "
        f"**SAE:** {info['source']} · **Columns:** {', '.join(info['columns'])}"
    )
    density = ws.features["density"].to_numpy()
    alive = density[density > 0]
    fig = px.histogram(
        x=np.log10(alive) if len(alive) else [],
        nbins=40,
        labels={"x": "log10(share of documents where the feature fires)"},
        title=f"Feature density ({len(alive)} of {len(density)} features ever fire)",
    )
    fig.update_layout(yaxis_title="features", height=320, margin=dict(t=40, b=10))
    st.plotly_chart(fig, key="density_hist")
    st.subheader("Corpus sample")
    text_first = [info["text_col"]] + [c for c in ws.frame.columns if c != info["text_col"]]
    st.dataframe(
        ws.frame.head(20)[text_first],
        key="corpus_head",
        column_config={info["text_col"]: ui.corpus_text_column(info["text_col"])},
    )
    st.subheader("What next")
    # One link per line: in three columns the third label was cut off at a 1,400 px wide window.
    st.page_link(ui.PAGES["Features"], label="Features: read the concepts", icon=ui.ICONS["Features"])
    st.page_link(ui.PAGES["Search"], label="Search: steer a query feature by feature", icon=ui.ICONS["Search"])
    st.page_link(
        ui.PAGES["Hypotheses"], label="Hypotheses: which concepts predict a column", icon=ui.ICONS["Hypotheses"]
    )
    st.page_link(ui.PAGES["Map"], label="Map: the corpus laid out by its concepts", icon=ui.ICONS["Map"])
else:
    ui.next_steps("Overview")
