"""Hypotheses: pick a target column and a safe split, run the method in the background, read the results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import plotly.express as px
import streamlit as st

import ui
from hsae_core.columns import ColumnRoles, column_roles
from hsae_core.data import holds_codes, ordered_values
from hsae_core.errors import HsaeError
from hsae_core.evidence import BEYOND, hypothesis_evidence, within_group_pairs
from hsae_core.llm import LLMClient
from hsae_core.pipeline import (
    FEW_TARGET_VALUES,
    HypothesisConfig,
    controls_line,
    fewer_hypotheses_line,
    load_run,
    load_split,
)
from hsae_core.report import (
    COLUMNS,
    any_of_lines,
    effect_rows,
    fixed_decimals,
    headline_metrics,
    presence_rule,
    readable_table,
    rule_column_names,
    split_summary,
    verdict_line,
)
from hsae_core.settings import ANNOTATORS, INTERPRETERS, SELECT_METHODS, format_levels
from hsae_core.splits import split_warnings
from hsae_core.target_scale import TargetScale

ui.page_setup("Hypotheses")
st.title("Hypotheses")
ws = ui.pick_workspace("Hypotheses")
if ws is None:  # the picker said why, and what to do; this page's own steps need a workspace
    st.stop()
for lost in ws.interrupted_runs():  # said once, by the first page to look: a restart lost the run without a word
    st.warning(
        f"A run for '{lost['target']}' started {lost['started']} stopped before it finished: the process running it "
        "ended (a dashboard restart or a kill), so nothing of it was saved. Press Run to start it again."
    )

SPLITS = ("random rows", "grouped by a column", "by a column's value")
FEATURE_SOURCES = ("this workspace's features", "a new SAE trained on the training rows only")
SCALES = {"auto": "auto", "as it is": "none", "log(1 + y)": "log1p"}  # shown -> HypothesisConfig.target_scale


# Columns of the results table, in order, and how they are shown; a new column is one more entry here.
HYPOTHESIS_COLUMNS = [
    "class",
    "latent",
    "level",
    "hypothesis",
    "any_of",
    "any_of_other",
    "fidelity_auc",
    "fidelity_f1",
    "coef",
    "coef_p",
    "significant_bonferroni",
    "significant_fdr",
    "prevalence",
    "separation",
    "separation_p",
    "within_pairs",
    "within_pairs_n",
    "selection_score",
    "threshold",
]
FORMATS = {
    "fidelity_auc": "%.2f",
    "fidelity_f1": "%.2f",
    "selection_score": "%.3f",
    "threshold": "%.3f",
    # shares, shown in % with one decimal everywhere (Streamlit's "percent" showed 17.5% beside 30.38%)
    "prevalence": "%.1f%%",
    "within_pairs": "%.1f%%",
    "within_pairs_n": "%d",
}


def column_config(col: str, names: dict, table):
    name, help_text = COLUMNS[col]
    name = names.get(col, name)
    if col == "hypothesis":
        return st.column_config.TextColumn(name, help=help_text, width="medium")
    if col in ("coef", "separation"):
        return st.column_config.NumberColumn(name, help=help_text, format=f"%.{fixed_decimals(table[col])}f")
    if col in FORMATS:
        return st.column_config.NumberColumn(name, help=help_text, format=FORMATS[col])
    return st.column_config.Column(name, help=help_text)


@st.cache_resource(max_entries=16, show_spinner=False)
def open_run(path: str, stamp: float):
    return load_run(path)


@st.cache_resource(max_entries=8, show_spinner="Computing activations of the holdout documents…")
def run_codes(path: str, stamp: float, ws_path: str, ws_stamp: float):
    """Holdout codes under the run's SAE (the workspace's own codes when the run used the workspace SAE)."""
    from hsae_core.evidence import holdout_codes

    run, space = open_run(path, stamp), ui._open(ws_path, ws_stamp)
    rows = run.annotations["row_id"].to_numpy()
    used = space.run_rows(path)  # a run on a sample of a large workspace: its rows are positions in the sample
    if uses_workspace_features(run, space):
        return space.codes[rows if used is None else used[rows]]
    return holdout_codes(run, space.embeddings if used is None else np.asarray(space.embeddings[used]))


@st.cache_data(max_entries=8, show_spinner=False)
def roles(path: str, stamp: float) -> ColumnRoles:
    space = ui._open(path, stamp)
    return column_roles(space.frame, space.text_col)


@st.cache_data(max_entries=32, show_spinner=False)
def split_check(path: str, stamp: float, target: str, frac: float, dedupe: bool, split_col, value) -> list[str]:
    """The split's warnings before running (the same check the run records: a holdout column tied to the
    target, rows of one id on both sides), on the rows a run would use (a sample of a large workspace)."""
    space = ui._open(path, stamp)
    config = HypothesisConfig(holdout_frac=frac, dedupe=dedupe, split_col=split_col, holdout_value=value)
    sample = space.run_sample()
    frame = space.frame if sample is None else space.frame.iloc[sample].reset_index(drop=True)
    try:
        train, hold = load_split(frame, space.text_col, target, config=config)
    except HsaeError as exc:
        return [str(exc)]
    return split_warnings(train, hold, config)


def uses_workspace_features(run, space) -> bool:
    return (run.summary.get("features") or {}).get("sae_key") == space.manifest.get("steps", {}).get("sae")


stamp = ui._stamp(ws.path)
found = roles(str(ws.path), stamp)
targets, split_opts, group_opts, likely_target = (
    found.targets,
    found.split_options,
    found.group_options,
    found.likely_target,
)
if not targets:
    st.error("This workspace has no column that can be a target (numeric, or a category with 2 to 50 values).")
    st.stop()
kinds = ui.column_kinds(ws)

with st.container(border=True):
    c1, c2, c3 = st.columns(3)
    target = c1.selectbox(
        "Target column (what to explain)",
        targets,
        key="hyp_target",
        index=targets.index(likely_target) if likely_target in targets else 0,
    )
    values = ws.frame[target].dropna()
    target_class, target_kind = None, "auto"
    if kinds.get(target) == "numeric" and 2 < values.nunique() <= FEW_TARGET_VALUES:
        read_as = c1.radio(
            f"Read its {values.nunique()} values as",
            ("a score", "classes"),
            index=1 if holds_codes(values) else 0,  # "Decision", "label": numbers that are codes
            horizontal=True,
            key=f"hyp_read_as_{target}",  # each column its own choice, and its own default
            help="Numbers can be codes for classes (ICLR decisions -1/0/1/2 are workshop, reject, oral, poster): "
            "as classes, each value is analysed one-vs-rest.",
        )
        target_kind = "multiclass" if read_as == "classes" else "continuous"
    target_scale = "auto"
    if kinds.get(target) == "numeric" and values.nunique() > 2 and target_kind != "multiclass":
        target_scale = SCALES[
            c1.radio(
                "Model the target",
                list(SCALES),
                horizontal=True,
                key="hyp_scale",
                help="auto: a heavy-tailed count (citations, clicks, votes: every value at least 0, skewness above 2 "
                "on the training rows, and the log at least halves it) is modelled as log(1 + y), so that a few "
                "large values do not carry the fit; the results say which was used.",
            )
        ]
    if values.nunique() == 2:
        no, yes = (str(v) for v in ordered_values(values))
        target_class = c1.radio(
            "Counts as 1 (the value the hypotheses explain)",
            (yes, no),
            horizontal=True,
            key=f"hyp_yes_{target}",
            help="Positive coefficients, the any-of rule and its F1 are about this value; the other one gets "
            "a rule of its own.",
        )
    if (kinds.get(target) == "category" and values.nunique() > 2) or target_kind == "multiclass":
        classes = [str(v) for v in sorted(values.unique())] if target_kind == "multiclass" else None
        choice = c1.selectbox(
            "Class (one-vs-rest)",
            ["every class"] + (classes or sorted(values.astype(str).unique())),
            key="hyp_class",
        )
        target_class = None if choice == "every class" else choice
    split_mode = c2.radio(
        "Holdout",
        SPLITS,
        key="hyp_split",
        horizontal=True,
        help="The holdout is never used to select or name the hypotheses; the statistics are computed on it.",
    )
    split_col = holdout_value = group_col = None
    frac = 0.2
    if split_mode == SPLITS[1]:
        if group_opts[target]:
            group_col = c2.selectbox(
                "Keep rows with the same value together",
                group_opts[target],
                key="hyp_group_col",
                help="e.g. the A/B test id: all arms of one test go to the same side",
            )
        else:
            c2.warning("No column groups the rows (ids or categories that repeat); using random rows.")
    if split_mode == SPLITS[2]:
        if split_opts[target]:
            split_col = c2.selectbox(
                "Split column",
                split_opts[target],
                key="hyp_split_col",
                index=split_opts[target].index("split") if "split" in split_opts[target] else 0,
            )
            opts = sorted(ws.frame[split_col].dropna().astype(str).unique())
            holdout_value = c2.selectbox(
                "Holdout rows are those equal to",
                opts,
                index=opts.index("holdout") if "holdout" in opts else len(opts) - 1,
                key="hyp_holdout_value",
            )
        else:
            c2.warning("No column has 2 to 10 values to split on; using random rows.")
    if split_col is None:
        frac = c2.slider("Holdout fraction", 0.1, 0.5, HypothesisConfig.holdout_frac, 0.05, key="hyp_frac")
    dedupe = c2.checkbox(
        "Drop duplicate texts first",
        value=True,
        key="hyp_dedupe",
        help="Texts identical up to case, punctuation and spacing are kept once, so that no text "
        "is on both sides and top examples are not copies of one story.",
    )
    controls = c2.multiselect(
        "Adjust for",
        found.control_options.get(target, []),
        key=f"hyp_controls_{target}",
        help="Columns the hypotheses are chosen and tested beyond: a publication date for citations, the A/B "
        "test for clicks. Numbers and dates enter as one term, categories one term per value; a column of more "
        "than 20 values (a test id) is compared within: only differences inside each of its groups count (a yes/no "
        "target: which rows of a group have it, by a conditional logit).",
    )
    within = ui.compared_within(ws, target, controls) if split_col is None and group_col is None else None
    if within:
        c2.caption(
            f"The holdout will be a random {frac:.0%} of the groups of '{within}', not of the rows: the run "
            "compares within them, and a row alone in its group there would test nothing."
        )
    if group_col is None and within is None:  # a grouped split has nothing to check; a by-value or a random one has
        for warning in split_check(str(ws.path), stamp, target, frac, dedupe, split_col, holdout_value):
            c2.warning(warning)
    method = c3.selectbox(
        "Selection",
        SELECT_METHODS,
        index=SELECT_METHODS.index(HypothesisConfig.select),
        key="hyp_method",
        help="stepwise: each next feature adds most to the ones chosen (distinct concepts; for a class, the "
        "first is the one that alone marks it best); correlation, "
        "separation: the top n by their own score; lasso: an L1 model's n",
    )
    n = int(
        c3.number_input(
            "Hypotheses (n)",
            1,
            100,
            HypothesisConfig.n,
            key="hyp_n",
            help=f"At most this many: a holdout with fewer than {HypothesisConfig.rows_per_hypothesis} rows per "
            "hypothesis tests fewer (at least 3), so that the joint model and the Bonferroni correction do not "
            "spread them thin; the results say so.",
        )
    )
    source = c3.radio(
        "Features",
        FEATURE_SOURCES,
        key="hyp_features",
        help="This workspace's features: each hypothesis is a feature you can open on the Features "
        "page (that SAE saw every text, never the target). A new SAE sees only training texts.",
    )
    d1, d2, d3, d4 = st.columns(4)
    interpreter = d1.selectbox(
        "Interpreter",
        INTERPRETERS,
        key="hyp_interp",
        help="phrases: offline short phrases with their held-out fidelity; keywords: offline keyword labels; "
        "llm: names from an OpenAI-compatible model",
    )
    annotator = d2.selectbox(
        "Annotator",
        ANNOTATORS,
        key="hyp_annot",
        help="activation: present where the feature fires (offline); llm: a model reads each text",
    )
    new_sae = source == FEATURE_SOURCES[1]
    m, k, levels = HypothesisConfig.m, HypothesisConfig.k, HypothesisConfig.levels
    if new_sae:
        m = int(d3.number_input("SAE features (m)", min_value=8, max_value=4096, value=m, step=8, key="hyp_m"))
        k = int(d4.number_input("Active per doc (k)", min_value=1, max_value=64, value=k, key="hyp_k"))
        levels_text = format_levels(levels)
        with_levels = st.checkbox(
            "Levels",
            value=True,
            key="hyp_levels",
            help=f"Train the new SAE with its levels ({levels_text}, as latents/active) beside the m main "
            "features: broad groups to fine features, so a target that is a whole topic can be named by one "
            "feature. Off: one dictionary of m features.",
        )
        levels = levels if with_levels else ()
    api_key = ui.api_key_box() if "llm" in (interpreter, annotator) else None
    sample = ws.run_sample()
    if sample is not None:
        st.caption(
            f"This workspace holds {len(ws):,} documents: a run uses a random {len(sample):,} of them "
            "(seed 0), split into train and holdout as chosen above."
        )
    submitted = st.button("Run", type="primary", key="hyp_run")

if submitted:
    needs_llm = "llm" in (interpreter, annotator)
    try:
        # Never written to disk: the key lives only in this session's memory (and in the run's client).
        client = (LLMClient(api_key=api_key) if api_key else LLMClient()) if needs_llm else None
        config = HypothesisConfig(
            m=m,
            k=k,
            select=method,
            n=n,
            interpreter=interpreter,
            annotator=annotator,
            target_class=target_class,
            target_kind=target_kind,
            target_scale=target_scale,
            holdout_frac=frac,
            split_col=split_col,
            holdout_value=holdout_value,
            group_col=group_col,
            dedupe=dedupe,
            controls=tuple(controls),
            levels=levels,
        )
    except ui.ERRORS as exc:
        st.error(ui.error_line(exc))
    else:
        ui.start_hypotheses(
            ws, target, config, own_features=source == FEATURE_SOURCES[0], sample=sample, llm_client=client
        )
new_run = ui.follow_hypotheses(ws)  # runs going on in the background, started here or before, in any session
if new_run:
    # Show the new run: the picker below keeps its own state, so it is told, not just given an index.
    st.session_state["hyp_run_pick"] = new_run

runs = ws.list_runs()
if not runs:
    ui.next_steps("Hypotheses")
    st.stop()
paths = [str(r["path"]) for r in runs]
labels = {str(r["path"]): f"{r['id']} · target {r['summary'].get('target', {}).get('column')}" for r in runs}
if st.session_state.get("hyp_run_pick") not in paths:  # first visit, another workspace, or the run was deleted
    # the latest run for the target the form shows, so the form and the results below it agree
    same_target = [str(r["path"]) for r in runs if r["summary"].get("target", {}).get("column") == target]
    st.session_state["hyp_run_pick"] = (same_target or paths)[0]
chosen = st.selectbox("Past runs of this workspace", paths, format_func=labels.get, key="hyp_run_pick")
try:
    run_stamp = Path(chosen, "summary.json").stat().st_mtime
    run = open_run(chosen, run_stamp)
except ui.ERRORS as exc:
    st.error(ui.error_line(exc))
    st.stop()

# ---- headline numbers, in words
summary = run.summary
tgt = summary.get("target", {})
st.subheader(f"Results: target '{tgt.get('column')}' ({tgt.get('kind')})")
if tgt.get("scale"):
    st.caption(TargetScale(**tgt["scale"]).describe(tgt.get("column"), undo="“as it is” keeps it as it is"))
fewer = fewer_hypotheses_line(summary, undo="a larger holdout fraction tests more")
if fewer:
    st.caption(fewer)
adjusted = controls_line(summary)
if adjusted:
    st.caption(adjusted)
for name, metrics in summary.get("metrics", {}).items():
    if name != "overall":
        st.markdown(f"**Class {ui.plain_markdown(name)}** (one vs rest)")
    cols = st.columns(5)
    for col, (label, value, help_text) in zip(cols, headline_metrics(metrics)):
        col.metric(label, value, help=help_text)
    verdict = verdict_line(metrics)
    if verdict:
        st.markdown(ui.plain_markdown(verdict))
    for rule in any_of_lines(summary, name):
        st.markdown(f"**In short:** {ui.plain_markdown(rule)}")
linked = uses_workspace_features(run, ws)
st.caption(
    split_summary(summary)
    + f" · interpreter: {(summary.get('config') or {}).get('interpreter') or summary.get('interpreter')} · annotator: "
    f"{summary.get('annotator')}"
    + (
        f" (offline: a hypothesis is present where {presence_rule(summary, 'feature')})"
        if summary.get("offline_annotation")
        else ""
    )
    + (" · features: this workspace's" if linked else " · features: an SAE trained for this run")
)
for warning in summary.get("warnings", []):
    st.warning(warning)

# ---- the table (click a row for its evidence) and the effect plot
table = run.table
shown = readable_table(table)
show_cols = [c for c in HYPOTHESIS_COLUMNS if c in shown.columns]
run_key = Path(chosen).name  # each run's tables get their own keys: a row picked in one run is not reread in another
percents = {c: shown[c] * 100 for c in ("prevalence", "within_pairs") if c in show_cols}
event = st.dataframe(
    shown[show_cols].assign(**percents),
    key=f"hyp_table_{run_key}",
    on_select="rerun",
    selection_mode="single-row",
    hide_index=True,
    column_config={c: column_config(c, rule_column_names(summary), table) for c in show_cols},
)
st.caption("Tick a row's box, at its left, to see its strongest supporting documents and counterexamples below.")
st.download_button(
    "Download CSV", table.to_csv(index=False).encode(), file_name="hypotheses.csv", mime="text/csv", key="hyp_download"
)

effects = effect_rows(table)
if len(effects):
    fig = px.scatter(
        effects,
        x="coef",
        y="hypothesis",
        color="significant",
        error_x=effects["high"] - effects["coef"],
        error_x_minus=effects["coef"] - effects["low"],
        color_discrete_map={"Bonferroni-significant": "#1f77b4", "FDR only": "#7fb3d5", "not significant": "#b0b0b0"},
        # the legend in order of strength, whichever kind the first row has
        category_orders={"significant": ["Bonferroni-significant", "FDR only", "not significant"]},
        labels={"coef": "coefficient in the joint model (95% CI)", "hypothesis": ""},
        title="Effect of each hypothesis on the target (holdout)",
    )
    fig.update_yaxes(categoryorder="array", categoryarray=effects["hypothesis"].tolist())  # by effect, not colour
    fig.add_vline(x=0, line_dash="dot", line_color="grey")
    fig.update_layout(height=max(260, 28 * len(effects) + 120), margin=dict(t=40, b=10), legend_title_text="")
    st.plotly_chart(fig, key="hyp_effects")

# ---- evidence for the clicked hypothesis
picked = ui.selected_row(event)
row_index = picked if picked is not None and picked < len(table) else 0
row = table.iloc[row_index]
latent = int(row["latent"])
st.subheader(f"Evidence: {row['hypothesis']} (feature #{latent})")
if linked:
    # The run names its hypotheses from its training rows only; the Features page's labels come from every
    # document, so one feature can carry two names: the link says the other one.
    page_label = str(ui.feature_table(ws)["label"].iloc[latent])
    st.page_link(
        ui.PAGES["Features"],
        label=f"Open feature #{latent} on the Features page"
        + ("" if page_label == str(row["hypothesis"]) else f" (labelled there “{page_label}”)"),
        query_params={"feature": str(latent), "ws": ws.path.name},
        icon=":material/open_in_new:",
    )
else:
    st.caption("This run trained its own SAE, so its feature numbers are not the Features page's.")
try:
    codes = run_codes(chosen, run_stamp, str(ws.path), stamp)
except ui.ERRORS as exc:
    st.warning(f"Documents shown in holdout order: {ui.error_line(exc)}")
    codes = None
used = ws.run_rows(chosen)
supporting, counter = hypothesis_evidence(
    run, ws.frame if used is None else ws.frame.iloc[used], ws.text_col, row, codes=codes
)
if used is not None:  # back from positions in the run's sample to the workspace's documents
    supporting["doc"] = used[supporting["doc"].to_numpy(dtype=np.int64)]
    counter["doc"] = used[counter["doc"].to_numpy(dtype=np.int64)]
terms = [t.strip() for t in str(row.get("keywords") or "").split(",")]
target_name = summary.get("target", {}).get("column")
small = {target_name: st.column_config.Column(target_name, width="small")}
beyond = BEYOND in supporting.columns  # a continuous run adjusted for columns: sides are read beyond them
if beyond:
    small[BEYOND] = st.column_config.NumberColumn(
        BEYOND,
        width="medium",  # its name is read in full
        format=f"%+.{fixed_decimals(supporting[BEYOND])}f",
        help="The target minus what the controls predict for this document (e.g. its A/B test's mean): its sign "
        "is the side the document is on.",
    )
pairs = within_group_pairs(run, ws.frame if used is None else ws.frame.iloc[used], ws.text_col, row, codes=codes)
if pairs is not None and len(pairs.table):  # compared within groups: the arm with it beside one without
    st.markdown(
        f"**Within one '{pairs.column}'**: a holdout row with the hypothesis beside one without it; pairs whose "
        f"{target_name} differs first"
    )
    st.caption(
        f"Of the {pairs.decided:,} pairs of holdout rows in one '{pairs.column}', one with the hypothesis and one "
        f"without, whose {target_name} differs, {pairs.share:.0%} went the way it predicts "
        f"({pairs.groups:,} groups hold both kinds of row; a description, not a test: pairs share rows)."
        if pairs.decided
        else f"No pair of holdout rows in one '{pairs.column}', one with the hypothesis and one without, differs "
        f"in {target_name}."
    )
    st.dataframe(
        pairs.table,
        key=f"hyp_pairs_{run_key}_{row_index}",
        hide_index=True,
        column_config={
            "went": st.column_config.TextColumn("went", width="small"),
            "with it": st.column_config.TextColumn("with it", width="medium"),
            "without it": st.column_config.TextColumn("without it", width="medium"),
            **{  # both sides with the same decimals, enough for the larger
                c: st.column_config.NumberColumn(
                    c, width="small", format=f"%.{fixed_decimals(pairs.table[pairs.number_columns].stack())}f"
                )
                for c in pairs.number_columns
            },
        },
    )
st.markdown(
    "**Supporting holdout documents**: the hypothesis is present and the target is on the side it predicts"
    + (" (beyond the controls)" if beyond else "")
    + "; strongest first"
)
ui.documents(ws, supporting, f"hyp_support_{run_key}_{row_index}", terms, column_config=small)
st.markdown("**Counterexamples**: present, but the target is on the other side; strongest first")
ui.documents(ws, counter, f"hyp_counter_{run_key}_{row_index}", terms, column_config=small)
