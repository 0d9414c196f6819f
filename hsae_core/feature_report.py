"""A workspace's features as plain text for a terminal (``hsae features``): the list in reading order, and one
feature's page. The dashboard's Features page shows the same numbers; nothing is computed here that
:mod:`hsae_core.features` does not compute."""

from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd

from .errors import DataError
from .features import FeatureExplorer, column_correlations, reading_order, search_features, strongest_first
from .interpret import fit, snippet


def features_listing(
    ws,
    table: pd.DataFrame,
    level: Optional[str] = None,
    query: Optional[str] = None,
    n: int = 30,
    width: int = 60,
    correlations: Optional[tuple[str, np.ndarray]] = None,
) -> str:
    """The features of ``ws`` (``table``: its feature table with a label set) as lines of text: broad levels
    first and the busiest first within each (as the Features page lists them), or those whose label or keywords
    hold every word of ``query``; ``level`` keeps one level ("4/1"); ``n`` rows at most (0: all).
    ``correlations`` ((title, one number per feature), :func:`~hsae_core.features.column_correlations`) adds
    that column and lists the strongest first, of either sign."""
    levels = ws.level_names  # "m/k" for every latent of a plain SAE
    shown = table.assign(level=levels)
    if level is not None:
        known = list(dict.fromkeys(shown["level"].iloc[reading_order(table, levels)]))
        if level not in known:
            raise DataError(f"No level '{level}' in this SAE (levels: {', '.join(known)})")
    shown = search_features(shown, query, limit=len(shown)) if query else shown.iloc[reading_order(table, levels)]
    if correlations is not None:
        title, r = correlations
        r = np.asarray(r, dtype=np.float64)[shown["latent"].to_numpy()]
        shown = shown.assign(_r=r).iloc[strongest_first(r)]
    if level is not None:
        shown = shown[shown["level"] == level]
    total = len(shown)
    if n:
        shown = shown.head(n)
    if shown.empty:
        where = f" of level {level}" if level is not None else ""
        return f"No feature{where} has '{query}' in its label or keywords." if query else "No features."
    columns = {
        "feature": [str(int(j)) for j in shown["latent"]],
        "level": list(shown["level"]),
        "fires on": [f"{d:.1%}" for d in shown["density"]],
        "label AUC": ["" if pd.isna(a) else f"{a:.2f}" for a in shown["fidelity_auc"]],
    }
    if correlations is not None:
        columns[correlations[0]] = ["" if pd.isna(v) else f"{v:+.3f}" for v in shown["_r"]]
    columns["label"] = [fit(s, width) for s in shown["label"]]
    columns["keywords"] = [fit(s, 40) for s in shown["keywords"].fillna("")]
    head = f"{total:,} of {len(table):,} features" + (f" matching '{query}'" if query else "")
    broad_first = (
        " · broad levels first, the busiest first within a level" if ws.sae_config.levels else " · busiest first"
    )
    if correlations is not None:
        head += " · the strongest correlation first (either sign)"
    else:
        head += "" if query else broad_first
    more = [f"… {total - len(shown):,} more (--n 0 lists them all)"] if total > len(shown) else []
    numbers = {"feature", "fires on", "label AUC"} | ({correlations[0]} if correlations is not None else set())
    return "\n".join([head, *_aligned(columns, right=numbers), *more])


def workspace_correlations(ws, column: str, value=None, controls=()) -> tuple[str, np.ndarray]:
    """Every feature of ``ws`` correlated with its table's ``column`` (one ``value`` of a category; partial
    beyond ``controls``), as the Features page's "Correlate with column" computes it."""
    explorer = FeatureExplorer(ws.codes, ws.decoder_directions)
    return column_correlations(explorer, ws.frame, column, value, controls, ws.text_col)


def _aligned(columns: dict[str, list[str]], right: set) -> list[str]:
    """Lines of a plain-text table: numbers right-aligned, words left-aligned, two spaces between columns."""
    widths = {name: max([len(name)] + [len(v) for v in values]) for name, values in columns.items()}

    def cell(name: str, value: str) -> str:
        return value.rjust(widths[name]) if name in right else value.ljust(widths[name])

    rows = zip(*columns.values())
    lines = ["  ".join(cell(name, name) for name in columns)]
    lines += ["  ".join(cell(name, value) for name, value in zip(columns, row)) for row in rows]
    return [line.rstrip() for line in lines]


def feature_page(ws, table: pd.DataFrame, latent: int, docs: int = 5, width: int = 100) -> str:
    """One feature as text: label and fidelity, how often it fires, its keywords, its strongest documents (each
    text once), and its nearest features by decoder direction."""
    if not 0 <= int(latent) < len(table):
        raise DataError(f"Feature {latent} does not exist (this SAE has {len(table)} features, 0..{len(table) - 1})")
    latent = int(latent)
    explorer = FeatureExplorer(ws.codes, ws.decoder_directions)
    row = table.iloc[latent]
    auc = row.get("fidelity_auc")
    facts = [f"level {ws.level_names[latent]}"] if ws.sae_config.levels else []
    facts.append(f"fires on {int(row['n_active']):,} of {explorer.n:,} documents ({row['density']:.1%})")
    facts.append(
        f"label by {row.get('label_method', 'unknown')}" + ("" if pd.isna(auc) else f", held-out AUC {auc:.2f}")
    )
    lines = [f"Feature #{latent}: {row['label']}", " · ".join(facts), f"keywords: {row['keywords'] or '—'}"]
    top = explorer.top_documents(latent, n=docs)
    if len(top):
        lines.append("strongest documents:")
        texts = ws.texts
        names = [f"#{d}" + (f" (×{c})" if c > 1 else "") for d, c in zip(top["doc"], top["copies"])]
        wide = max(map(len, names))  # the activations and texts line up whatever the documents' numbers
        for name, d, a in zip(names, top["doc"], top["activation"]):
            lines.append(f"  {name.ljust(wide)}  {a:.3f}  {snippet(texts[int(d)], width)}")
    near = explorer.nearest(latent, n=5)
    names = table["label"].to_numpy()
    lines.append("nearest features: " + "; ".join(f"#{j} {fit(names[j], 40)}" for j in near["latent"]))
    return "\n".join(lines)
