"""A hypothesis run in words people read: metric names, formatted p-values, the ceiling beside the score,
row counts and the split. Shared by the dashboard and anything else that shows a run; no plotting here."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .data import markup_line
from .stats import format_p

# Column -> (name shown to people, what it means); the files keep the machine names. In reading order.
COLUMNS = {
    "class": ("class", "The class this hypothesis is about (one vs rest)"),
    "latent": ("feature", "The SAE feature behind the hypothesis"),
    "level": (
        "level",
        "The SAE level of the feature, as latents/active: 4/1 sorts documents into 4 broad groups, 64/24 is the main one",
    ),
    "hypothesis": ("hypothesis", "The feature's label"),
    "any_of": (
        "in the rule",
        "One of the few hypotheses whose 'any of them is present' best marks the class on the training rows",
    ),
    "any_of_other": (
        "in the other value's rule",
        "A two-valued target: one of the few hypotheses whose 'any of them is present' best marks its other "
        "value on the training rows",
    ),
    "fidelity_auc": (
        "label AUC",
        "Held-out fidelity of the label: embedding-judge AUC on documents the labeller never saw",
    ),
    "fidelity_f1": ("label F1", "Held-out F1 of the label on documents the labeller never saw"),
    "coef": (
        "coefficient",
        "Effect in one model of the target on all hypotheses (holdout, robust HC3 errors); where the run adjusts "
        "for columns, the effect beyond them (errors clustered on a column compared within; a yes/no target "
        "compared within: the log-odds of a conditional logit)",
    ),
    "coef_p": ("p (coefficient)", "p-value of the coefficient"),
    "significant_bonferroni": ("Bonferroni", "Significant at 5% after a Bonferroni correction"),
    "significant_fdr": ("FDR", "Significant at 5% false discovery rate (Benjamini–Hochberg)"),
    "prevalence": ("present in", "Share of holdout documents where the hypothesis holds"),
    "separation": (
        "difference",
        "Mean target where present minus where absent (holdout; in log(1 + y) where the run models the target so; "
        "never adjusted for columns)",
    ),
    "separation_p": ("p (difference)", "Welch's t-test of that difference"),
    "within_pairs": (
        "pairs its way",
        "Where the run compares within a column's groups (the arms of one test): of the holdout pairs in one group, "
        "one row with the hypothesis and one without, whose targets differ, the share where the target went the "
        "way the hypothesis predicts. A description, not a test: pairs share rows, and it reads the hypothesis "
        "alone where the coefficient holds the others fixed",
    ),
    "within_pairs_n": ("pairs", "How many such pairs the holdout holds"),
    "selection_score": ("training score", "The score that selected it, on the training rows only"),
    "threshold": (
        "present above",
        "The feature's activation above which the hypothesis counts as present, learned on the training rows",
    ),
    "coef_ci_low": ("95% CI low", "Lower end of the coefficient's 95% confidence interval"),
    "coef_ci_high": ("95% CI high", "Upper end of the coefficient's 95% confidence interval"),
    "note": ("note", "Why a hypothesis was left out of the model, if it was"),
}
COLUMN_NAMES = {col: name for col, (name, _) in COLUMNS.items()}
P_COLUMNS = ("separation_p", "coef_p")


def readable_table(table: pd.DataFrame) -> pd.DataFrame:
    """The hypothesis table with p-values as text (``< 1e-16``) and a CI for each coefficient if missing.

    Column names stay the machine names (see :data:`COLUMN_NAMES` for what to show).
    """
    out = table.copy()
    if {"coef", "coef_se"} <= set(out.columns) and "coef_ci_low" not in out.columns:
        from .stats import coef_ci

        out["coef_ci_low"], out["coef_ci_high"] = coef_ci(out["coef"], out["coef_se"])
    for col in P_COLUMNS:
        if col in out.columns:
            out[col] = out[col].map(format_p)
    return out


def fixed_decimals(values, significant: int = 3, least: int = 3) -> int:
    """Decimals that show the largest of ``values`` with ``significant`` digits, and never fewer than ``least``:
    3 for star ratings' effects (0.829), 5 for a click rate's (0.00123), so that no column reads 0.000."""
    finite = np.abs(np.asarray(pd.to_numeric(pd.Series(values), errors="coerce"), dtype=float))
    finite = finite[np.isfinite(finite) & (finite > 0)]
    if not len(finite):
        return least
    return int(max(least, significant - 1 - np.floor(np.log10(finite.max()))))


def headline_metrics(metrics: dict) -> list[tuple[str, str, str]]:
    """(name, value, explanation) for one target's overall metrics: the hypotheses' score beside the ceiling."""
    metric = metrics.get("metric") or ("r2" if "r2_cv" in metrics else "auc")
    name = "R²" if metric == "r2" else "AUC"
    folds = metrics.get("cv_folds", 5)
    base = metrics.get("embedding_baseline") or {}
    model = "OLS" if metric == "r2" else "logistic"
    labels = [f"Holdout {name} ({folds}-fold CV)", f"Embedding ceiling {name}", f"Holdout {name} (in sample)"]
    if metrics.get("controls") is not None:  # adjusted: R² is partial; AUC is of a model that holds the controls
        if metric == "r2":
            labels = [f"Partial R² ({folds}-fold CV)", "Ceiling partial R²", "Partial R² (in sample)"]
        model += " (with the controls)"
    if metrics.get("auc_within"):  # a yes/no target compared within the groups of a column
        labels = [f"Within AUC ({folds}-fold CV)", "Ceiling within AUC", "Within AUC (in sample)"]
        model = "conditional logit (rows ranked within their group)"
    rows = [
        (
            labels[0],
            _num(metrics.get(f"{metric}_cv")),
            f"How well the hypotheses together predict the target on the holdout: a {model} model on their 0/1 "
            f"presence, scored out of fold ({folds}-fold). The number to compare with the ceiling.",
        ),
        (
            labels[1],
            _num(base.get("value")),
            f"A {base.get('model', 'ridge')} model on the raw embeddings, trained on the training rows"
            + (" (beyond the controls, as the hypotheses are)" if metrics.get("controls") is not None else "")
            + ": about as good as anything built from these embeddings gets.",
        ),
        (
            labels[2],
            _num(metrics.get(f"{metric}_in_sample")),
            "The same model fitted and scored on the same holdout rows: optimistic, and on a small holdout it "
            "can pass the ceiling.",
        ),
        (
            "Significant (Bonferroni)",
            f"{metrics.get('n_significant_bonferroni', 0)} / {metrics.get('n_hypotheses', 0)}",
            "Hypotheses whose joint-model coefficient survives a Bonferroni correction at 5%.",
        ),
        (
            "Significant (FDR)",
            f"{metrics.get('n_significant_fdr', 0)} / {metrics.get('n_hypotheses', 0)}",
            "The same with Benjamini–Hochberg false discovery rate control at 5%.",
        ),
    ]
    return rows


def verdict_line(metrics: dict) -> str | None:
    """One plain sentence on whether one target's hypotheses hold up on the holdout: how many are significant,
    and how much of the embedding ceiling they reach together (out of fold, above chance: R² 0, AUC 0.5).
    Where together they predict no better than chance out of fold, it says so first: none holds up, or a
    significant few are likely chance findings; where the holdout model could not be fitted, that they are
    untested. Where hypotheses separate the target, a sentence says how the model was fitted. A last sentence
    counts the hypotheses the holdout model could not test, where some. None when the metrics lack the numbers."""
    metric = metrics.get("metric") or ("r2" if "r2_cv" in metrics else "auc")
    try:
        n, n_bonf, n_fdr = (int(metrics[k]) for k in ("n_hypotheses", "n_significant_bonferroni", "n_significant_fdr"))
        cv = float(metrics[f"{metric}_cv"])
    except (KeyError, TypeError, ValueError):
        return None
    if not n:
        return None
    if not np.isfinite(cv):  # e.g. a class with a handful of holdout rows: the model could not be fitted
        why = "; ".join(metrics.get("notes") or []) or "the holdout model could not be fitted"
        return f"The holdout cannot test these {n} hypotheses ({why}): read them as untested."
    ceiling = (metrics.get("embedding_baseline") or {}).get("value")
    controls = metrics.get("controls")
    if controls is None:
        said = _fitted_verdict(metric, n, n_bonf, n_fdr, cv, ceiling)
    else:  # R² is partial (of what the controls leave, so 0 is still "nothing added"); AUC starts from theirs
        start = 0.0 if metric == "r2" else _finite(controls.get("auc_cv"), 0.5)
        phrase = "0" if metric == "r2" else f"the controls' AUC ({start:.3f})"
        chance = (start, "the controls alone", phrase)
        if metrics.get("auc_within") and start == 0.5:  # the groups alone rank nothing within themselves
            chance = (0.5, "chance", "chance")
        said = "Beyond the controls: " + _lower_first(
            _fitted_verdict(metric, n, n_bonf, n_fdr, cv, ceiling, chance=chance)
        )
    if str(metrics.get("cov_type", "")).startswith("penalised"):  # stats.PENALISED_NOTE / PENALISED_WITHIN_NOTE
        said += (
            " Some hypotheses separate the target on the holdout ("
            + (
                "winning or losing every comparison they enter within a group"
                if metrics.get("auc_within")
                else "present only on one side of it"
            )
            + "), so there is no ordinary fit: the coefficients carry a weak pull toward no effect (log-F(1,1)) and "
            "the p-values are penalised likelihood-ratio tests."
        )
    untested = n - int(metrics.get("n_tested", n))
    return (
        f"{said} {untested} of the {n} could not be tested there (each has a note saying why)."
        if untested > 0
        else said
    )


def _finite(value, default: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return default
    return value if np.isfinite(value) else default


def _lower_first(sentence: str) -> str:
    """A sentence to follow a colon: "No…"/"None…" lower-cased; one that starts with a number as it is."""
    return sentence[:1].lower() + sentence[1:] if sentence.startswith("No") else sentence


def _fitted_verdict(metric: str, n: int, n_bonf: int, n_fdr: int, cv: float, ceiling, chance=None) -> str:
    """The sentence of :func:`verdict_line` for a holdout model that was fitted (``cv`` finite). ``chance``:
    what the hypotheses must beat when not R² 0 or AUC 0.5 (e.g. the controls alone), as (value, what
    "no better than" names, what "from" names)."""
    name = "R²" if metric == "r2" else "AUC"
    if chance is None:
        chance = (0.0, "its mean", "0") if metric == "r2" else (0.5, "chance", "chance")
    chance, start_name, start_phrase = chance
    ceiling = float(ceiling) if ceiling is not None and np.isfinite(float(ceiling)) else None
    # A ceiling at or under chance is a model the holdout was too small or too rare a class for, not a bar
    weak = (
        f" (no better than {'the mean' if metric == 'r2' else 'chance'} here: too few holdout rows for a model on "
        "all the embedding's dimensions)"
        if ceiling is not None and ceiling <= chance
        else ""
    )
    reach = f"{name} {_num(cv)} out of fold" + (
        f"; the embeddings reach {_num(ceiling)}{weak}" if ceiling is not None else ""
    )
    if cv <= chance + 0.01:
        baseline = start_name
        if n_fdr == 0:
            return (
                f"None of the {n} hypotheses holds up on the holdout: none is significant, even at a 5% false "
                f"discovery rate, and together they predict the target no better than {baseline} ({reach})."
            )
        one = n_fdr == 1
        return (
            f"{n_fdr} of the {n} hypotheses {'is' if one else 'are'} significant on the holdout (5% FDR; {n_bonf} "
            f"Bonferroni), but together they predict the target no better than {baseline} ({reach}): take "
            f"{'it' if one else 'them'} as {'a chance finding' if one else 'chance findings'} until another sample "
            f"backs {'it' if one else 'them'}."
        )
    if n_fdr == 0:
        return (
            f"No single hypothesis of the {n} is significant on the holdout; together they reach {name} {_num(cv)} out "
            f"of fold{'' if ceiling is None else f' against {_num(ceiling)} for the embeddings{weak}'}: read each as a "
            "lead, not a finding."
        )
    if n_bonf:
        held = f"{n_bonf} of the {n} hypotheses hold{'s' if n_bonf == 1 else ''} up on the holdout (Bonferroni"
        held += f"; {n_fdr} at a 5% FDR)"
    else:
        held = f"None of the {n} hypotheses survives Bonferroni on the holdout, though {n_fdr} pass a 5% FDR"
    if ceiling is None or ceiling <= chance:
        return f"{held}; together they reach {reach}."
    share = max((cv - chance) / (ceiling - chance), 0.0)
    if metric == "r2":
        part = "as much as the embeddings" if share >= 1 else f"{share:.0%} as much as the embeddings"
        return f"{held}; together they explain {part} (R² {cv:.3f} out of fold against {ceiling:.3f})."
    part = "all the way" if share >= 1 else f"{share:.0%} of the way"
    return (
        f"{held}; together they go {part} from {start_phrase} to the embeddings' AUC ({cv:.3f} out of fold against "
        f"{ceiling:.3f})."
    )


def any_of_lines(summary: dict, metrics_key: str) -> list[str]:
    """The any-of rule sentences of one metrics entry of a run: its class's, or for a two-valued target
    one per value (the positive one, classes[1], first); none for a continuous target."""
    metrics = (summary.get("metrics") or {}).get(metrics_key) or {}
    lines = [any_of_sentence(metrics, concept_name(summary, metrics_key))]
    if "any_of_other" in metrics:
        lines.append(any_of_sentence(metrics, concept_name(summary, metrics_key, other=True), key="any_of_other"))
    return [line for line in lines if line]


def any_of_sentence(metrics: dict, concept: str, key: str = "any_of") -> str | None:
    """One line: the run's any-of rule for ``concept`` (a binary target's value or one class; ``key``: where
    the metrics keep it) and its holdout scores; that it has none when no hypothesis goes with the class;
    None where the metrics have no such rule (a continuous target)."""
    if key not in metrics:
        return None
    rule = metrics[key] or {}
    if not rule.get("latents"):
        if rule.get("outdone_by_every_row"):
            bar = _num((rule.get("train") or {}).get("every_row_f1"))
            return (
                f"{concept}: no rule of its hypotheses marks it better than calling every text {concept} (F1 {bar} on "
                "the training rows), so it has no any-of rule."
            )
        return f"{concept}: no hypothesis goes with it on the training rows, so it has no any-of rule."
    named = ", ".join(f"“{h}” (#{j})" for h, j in zip(rule["hypotheses"], rule["latents"]))
    hold, train = rule.get("holdout") or {}, rule.get("train") or {}
    count = len(rule["latents"])
    bar = f"; {_num(hold['every_row_f1'])} if every text were called {concept}" if "every_row_f1" in hold else ""
    sentence = (
        f"{concept} = any of {count} hypothes{'is' if count == 1 else 'es'}: {named}. Holdout F1 "
        f"{_num(hold.get('f1'))} (precision {_num(hold.get('precision'))}, recall {_num(hold.get('recall'))}{bar}); "
        f"chosen on the training rows (F1 there {_num(train.get('f1'))})."
    )
    if _no_better_than_every_row(hold):
        sentence += f" On the holdout it does no better than calling every text {concept}: the rule does not hold up."
    return sentence


def _no_better_than_every_row(scores: dict) -> bool:
    """True when a rule's F1 is at or below the F1 of calling every row the class (both known)."""
    try:
        f1, bar = float(scores["f1"]), float(scores["every_row_f1"])
    except (KeyError, TypeError, ValueError):
        return False
    return bool(np.isfinite(f1) and np.isfinite(bar) and f1 <= bar)


def rule_column_names(summary: dict) -> dict[str, str]:
    """A two-valued target's rule columns named by their value ("in the rule for accept"), for a table of
    its run; {} for any other target (its one rule column keeps its name)."""
    target = summary.get("target") or {}
    classes = target.get("classes") or []
    if target.get("kind") != "binary" or len(classes) != 2:
        return {}
    return {"any_of": f"in the rule for {classes[1]}", "any_of_other": f"in the rule for {classes[0]}"}


def concept_name(summary: dict, metrics_key: str, other: bool = False) -> str:
    """What a metrics entry is about in words: its class, or for a binary target "column = positive value"
    (``other``: "column = the other value")."""
    if metrics_key != "overall":
        return metrics_key
    target = summary.get("target", {})
    classes = target.get("classes") or []
    return f"{target.get('column')} = {classes[0 if other else 1]}" if len(classes) == 2 else str(target.get("column"))


def _num(value) -> str:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "n/a"
    return f"{value:.3f}".replace("-0.000", "0.000") if np.isfinite(value) else "n/a"


def row_counts(summary: dict) -> dict:
    """A run's ``rows`` as summaries hold them now: ``{"train": kept, "holdout": kept, "tables": {"data": {read,
    dropped_...}, "holdout": {...} for a holdout table of its own}}``. A run written before kept one dict of
    counts per side, which repeated the one table's read and dropped counts on both sides of a split."""
    rows = summary.get("rows") or {}
    if not isinstance(rows.get("train"), dict):
        return rows
    train, hold = rows["train"], rows.get("holdout") or {}

    def read_and_dropped(counts: dict) -> dict:
        return {key: value for key, value in counts.items() if key != "kept"}

    tables = {"data": read_and_dropped(train)}
    if _split_method(summary) == "holdout table":
        tables["holdout"] = read_and_dropped(hold)
    return {"train": train.get("kept", 0), "holdout": hold.get("kept", 0), "tables": tables}


def _split_method(summary: dict) -> str:
    """How a run's holdout was made (random, grouped, by value, holdout table), from its summary."""
    config = summary.get("config", {})
    return (summary.get("split") or {}).get("method") or (
        "grouped" if config.get("group_col") else "by value" if config.get("split_col") else "random"
    )


def presence_rule(summary: dict, unit: str = "latent") -> str:
    """How an offline (activation) annotation decided that a hypothesis is present in a holdout text, in words
    both the terminal and the Hypotheses page say: above the threshold learned on the training rows (the default)
    or wherever the feature fires at all (``presence="positive"``); ``unit`` names the feature as the reader
    knows it (the terminal: latent; the dashboard: feature)."""
    if (summary.get("config") or {}).get("presence") == "learned":
        return f"the {unit}'s activation > its threshold learned on the training split"
    return f"the {unit}'s activation > 0"


def split_summary(summary: dict) -> str:
    """One line: how the holdout was made and how many rows each side kept (duplicates dropped included)."""
    split = summary.get("split") or {}
    config = summary.get("config", {})
    rows = row_counts(summary)
    method = _split_method(summary)
    if method == "grouped":
        groups = split.get("groups") or {}
        alone = groups.get("without_value", 0)
        how = f"random {config.get('holdout_frac', 0):.0%} of the groups of '{config.get('group_col')}'" + (
            f" ({groups['train']:,} groups train, {groups['holdout']:,} holdout"
            + (f"; each of the {alone:,} rows without a value is a group of its own" if alone else "")
            + ")"
            if groups
            else ""
        )
        if split.get("grouped_because") == "controls":
            how += ", whole groups because the run compares within them"
    elif method == "by value":
        how = f"rows where {config.get('split_col')} = {config.get('holdout_value')}"
    elif method == "holdout table":
        how = "a separate holdout table"
    else:
        how = f"random {config.get('holdout_frac', 0):.0%} of the rows"
    parts = [f"Holdout: {how}", f"training rows {rows.get('train', 0):,}", f"holdout rows {rows.get('holdout', 0):,}"]
    if split.get("dedupe"):
        parts.append(f"duplicate texts dropped {split.get('dropped_duplicate_text', 0):,}")
    tables = (rows.get("tables") or {}).values()
    empty = sum(table.get("dropped_empty_text", 0) for table in tables)
    missing = sum(table.get("dropped_missing_target", 0) for table in tables)
    if empty:
        parts.append(f"rows with an empty text dropped {empty:,}")
    markup = markup_line({"markup_removed": sum(table.get("markup_removed", 0) for table in tables)})
    if markup:
        parts.append(markup)
    if missing:
        parts.append(f"rows with no '{summary.get('target', {}).get('column') or 'target'}' dropped {missing:,}")
    return " · ".join(parts)


def effect_rows(table: pd.DataFrame) -> pd.DataFrame:
    """One row per hypothesis with a finite coefficient: name, coefficient, CI and significance, sorted by effect."""
    t = readable_table(table) if "coef_ci_low" not in table.columns else table
    name = t["hypothesis"].astype(str) + " (#" + t["latent"].astype(int).astype(str) + ")"
    if "class" in t.columns:
        name = t["class"].astype(str) + ": " + name
    out = pd.DataFrame(
        {
            "hypothesis": name,
            "coef": t["coef"],
            "low": t["coef_ci_low"],
            "high": t["coef_ci_high"],
            "significant": np.where(
                t.get("significant_bonferroni", False),
                "Bonferroni-significant",
                np.where(t.get("significant_fdr", False), "FDR only", "not significant"),
            ),
        }
    )
    out = out[np.isfinite(out["coef"].to_numpy(dtype=float))]
    return out.sort_values("coef").reset_index(drop=True)
