"""Concept recovery: do the default hypotheses name the labelled concepts, and do they stay valid on Yelp?

The product's own path, no flags: ``hsae_core.pipeline.hypothesize(...)`` with a default
``HypothesisConfig`` (only its ``seed`` varies) on real labelled corpora, text = ``title + ". " + abstract``:

* arXiv 2018 ``field`` (computer_science / mathematics / physics), arXiv cs ``category`` (cs.AI / cs.CR /
  cs.LG / stat.ML; duplicated titles dropped), ICLR 2017+2018 accept (Decision 1 or 2) and the venue group
  of the ML/NLP abstracts (NLP venues ACL, NAACL, EMNLP, COLING, CL, CoNLL, SemEval vs ML venues).
  A multiclass label runs one-vs-rest, one concept per class. One fixed random split (30% holdout,
  seed 0); SAE seeds 0, 1, 2.
* Per concept, on the holdout: the best F1 of one hypothesis's 0/1 annotation against the concept
  (beside it the best F1 of any of the SAE's latents, at its training-learned cut but picked on the
  holdout: an optimistic ceiling that tells a choice that missed a latent from an SAE that has none),
  the F1 of the union (OR) of the hypotheses positively related to it on the training split, the F1 of
  the run's any-of rule (the few positive hypotheses whose union best marks the class on the training
  split, ``hsae_core.anyof``), and the
  5-fold cross-validated AUC of a logistic model on all the hypotheses' annotations (the pipeline's
  ``auc_cv``), and how many of the hypotheses are Bonferroni-significant in that logistic model (a
  hypothesis that names the concept well can leave the others nothing to add). Beside them a linear probe on the same embeddings (logistic, C chosen by 5-fold CV on the
  training split; F1 of its 0/1 prediction at probability 0.5 and at the F1-best cut of its out-of-fold
  training scores, AUC of its score): the ceiling for what the embeddings know.
* Yelp (2,000 training reviews, 2,000 holdout, stars), same defaults: Bonferroni-significant hypotheses
  of 20 and the holdout R² in sample and by 5-fold CV, so no recovery gain is bought with a validity loss.
  The other continuous targets of the shared data run when ``--only`` names them: "ML stance" (the human
  stance score of the ML/NLP abstracts), "arXiv citations" (the citation counts of the 2018 abstracts that
  have one, which the product's target scale models as log(1 + citations)), "Upworthy CTR" (headline click
  rate, A/B tests kept whole on one side) and "Yelp useful votes" (the demo reviews' "useful" counts).

    python bench/bench_recovery.py                     # the defaults, written to bench/results/recovery.json
    python bench/bench_recovery.py --quick             # arXiv field only, one seed
    python bench/bench_recovery.py --config before_issue_9 --config default   # candidates side by side
    python bench/bench_recovery.py --config '{"name": "m256", "m": 256}'       # any HypothesisConfig fields
    python bench/bench_recovery.py --only Yelp --seeds 10 --config default     # Yelp alone, seeds 0-9
    python bench/bench_recovery.py --only "Yelp,ML stance,arXiv citations,Upworthy CTR,Yelp useful votes"  # continuous
    python bench/bench_recovery.py --only "arXiv citations,Yelp useful votes" --config default \
        --config '{"name": "as it is", "target_scale": "none"}'   # heavy-tailed counts: log(1 + y) against raw
    python bench/bench_recovery.py --config '{"name": "pooled", "pool": [[4, 1], [16, 2]]}'  # bench/pooled.py
    python bench/bench_recovery.py --only "arxiv field" --prefixes 3,5,8,10,15   # the first n hypotheses alone
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from common import data_dir, embed_cached, machine_description, markdown_table, save_json, setup_env, yelp_frames
from common_worker import best_f1
from pooled import pooled_codes, pooled_hypotheses, product_embeddings, source_of

from hsae_core.settings import CONCEPT_SAE, CONCEPT_SELECTION

SEEDS = (0, 1, 2)
HOLDOUT_FRAC, SPLIT_SEED = 0.3, 0
NLP_VENUES = ("ACL", "NAACL", "EMNLP", "COLING", "CL", "CoNLL", "SemEval")
# Named candidates for --config: overrides of HypothesisConfig's fields. "default" is the product as it is.
PRESETS: dict[str, dict] = {
    "default": {},
    # The defaults before issue 9 changed them (the baseline in BENCHMARKS.md).
    "before_issue_9": {
        "m": 128,
        "k": 16,
        "matryoshka": (),
        "levels": (),
        "presence": "positive",
        "max_overlap": 1.0,
        "select": "correlation",
    },
    # The default from issue 9's stepwise change until levels: one m 64, k 16 SAE.
    "single_sae": {"k": 16, "levels": ()},
    # The opt-in concept settings: an m 128, k 8 SAE with Matryoshka prefixes 4, 16, 64, presence
    # thresholds learned on the training split, near-duplicates (Jaccard > 0.5) left out.
    "concepts": {**CONCEPT_SAE, **CONCEPT_SELECTION},
}


# Keys of a --config that are not HypothesisConfig fields: "name" labels the rows; "pool" ([[m, k], ...])
# lets the choice pick from those SAEs' latents too (bench/pooled.py: an experiment, not a product setting).
BENCH_ONLY = ("name", "pool")


@dataclass
class ConceptSet:
    """One labelled corpus: a frame with ``text`` and ``label``, split once for every seed."""

    name: str
    frame: pd.DataFrame
    binary_concept: str | None = None  # for a 0/1 label: the concept's name; None: one concept per class

    def split(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        from hsae_core.data import split_indices

        tr, ho = split_indices(len(self.frame), HOLDOUT_FRAC, seed=SPLIT_SEED)
        return self.frame.iloc[tr].reset_index(drop=True), self.frame.iloc[ho].reset_index(drop=True)

    def concepts(self) -> list[str]:
        return [self.binary_concept] if self.binary_concept else sorted(self.frame["label"].unique())

    def indicator(self, frame: pd.DataFrame, concept: str) -> np.ndarray:
        if self.binary_concept:
            return frame["label"].to_numpy().astype(np.int64)
        return (frame["label"].to_numpy() == concept).astype(np.int64)


def concept_sets(quick: bool = False) -> list[ConceptSet]:
    """The labelled corpora (the discovery benchmark's loaders, with titles) plus the ML/NLP venue group."""
    from bench_discovery import concept_datasets

    found = concept_datasets(titled=True)
    sets = []
    for name, (texts, labels) in found.items():
        frame = pd.DataFrame({"text": texts, "label": labels.to_numpy()})
        if name == "ICLR decision":
            frame["label"] = (frame["label"] == "accept").astype(np.int64)
            sets.append(ConceptSet("ICLR decision", frame, binary_concept="accept"))
        else:
            sets.append(ConceptSet(name, frame))
    stance = pd.read_json(data_dir() / "ml_nlp_abstracts_stance" / "human_annotated_all.json")
    venue = pd.DataFrame(
        {
            "text": (stance["title"].fillna("").astype(str) + ". " + stance["abstract"].astype(str)).tolist(),
            "label": stance["venue"].isin(NLP_VENUES).astype(np.int64).to_numpy(),
        }
    )
    sets.append(ConceptSet("ML/NLP venue", venue, binary_concept="NLP venue"))
    return sets[:1] if quick else sets


# ----------------------------------------------------------------------------- measures
def union_f1(present: np.ndarray, concept: np.ndarray) -> float:
    """F1 of 'any of these hypotheses is present' against the concept (0 when there is none)."""
    if present.shape[1] == 0:
        return 0.0
    return best_f1(present.any(axis=1), concept)[0]


def probe(X_train, y_train, X_hold, y_hold, seed: int = 0) -> dict:
    """Logistic probe on raw embeddings, C by 5-fold CV on the training rows: holdout AUC of its score, and
    holdout F1 of its 0/1 call at two cuts: probability 0.5, and the cut that maximises F1 on its
    out-of-fold training scores (the fair ceiling for a hypothesis, whose threshold is learned on training
    too; at 0.5 a probe calls a small class almost never, so its F1 there can read 0)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score, roc_auc_score
    from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_predict

    from hsae_core.blas import fit_threads

    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    with fit_threads():
        search = GridSearchCV(
            LogisticRegression(max_iter=5000), {"C": np.logspace(-3, 3, 7)}, scoring="roc_auc", cv=folds
        ).fit(X_train, y_train)
        model = search.best_estimator_
        out_of_fold = cross_val_predict(model, X_train, y_train, cv=folds, method="decision_function")
    score_hold = model.decision_function(X_hold)
    return {
        "f1": float(f1_score(y_hold, model.predict(X_hold))),
        "f1_trained_cut": float(f1_score(y_hold, score_hold >= f1_best_cut(out_of_fold, y_train))),
        "auc": float(roc_auc_score(y_hold, score_hold)),
    }


def f1_best_cut(scores: np.ndarray, y: np.ndarray) -> float:
    """The score cut (call 'score >= cut' the class) with the highest F1 against 0/1 ``y``."""
    order = np.argsort(-scores, kind="stable")
    ranked, hits = scores[order], np.cumsum(np.asarray(y)[order])
    f1 = 2 * hits / (np.arange(1, len(y) + 1) + hits[-1])
    valid = np.append(ranked[1:] < ranked[:-1], True)  # a cut between two different scores, or below all
    i = int(np.argmax(np.where(valid, f1, -1.0)))
    return float(ranked[i])


def concept_scores(run, cset: ConceptSet, concept: str, y_hold: np.ndarray, prefixes=()) -> dict:
    """Recovery measures of one run for one concept, from its table and holdout annotations; with
    ``prefixes``, the union F1 and AUC of only the first n hypotheses (selection order) for each n."""
    table = run.table
    if "class" in table.columns:
        table = table[table["class"].astype(str) == str(concept)]
        metrics = run.summary["metrics"][str(concept)]
    else:
        metrics = run.summary["metrics"]["overall"]
    present = run.annotations[table["annotation_col"].tolist()].to_numpy() > 0
    positive = table["selection_score"].to_numpy() > 0
    f1, best = best_f1(present, y_hold)
    return {
        "best_f1": f1,
        "union_f1": union_f1(present[:, positive], y_hold),
        **_any_of_scores(metrics),
        "auc_cv": metrics.get("auc_cv"),
        "auc_in_sample": metrics.get("auc_in_sample"),
        "n_hypotheses": int(len(table)),
        "n_positive": int(positive.sum()),
        "n_significant_bonferroni": metrics.get("n_significant_bonferroni"),
        "best_latent": int(table["latent"].iloc[best]) if best is not None else None,
        "best_hypothesis": str(table["hypothesis"].iloc[best]) if best is not None else None,
        **({"best_level": str(table["level"].iloc[best]) if best is not None else None} if "level" in table else {}),
        **({"prefixes": prefix_scores(present, positive, y_hold, prefixes)} if prefixes else {}),
    }


def prefix_scores(present: np.ndarray, positive: np.ndarray, y_hold: np.ndarray, prefixes) -> dict:
    """What a run that stopped after its first n hypotheses would score, per n: the union F1 of its
    positive ones and the 5-fold CV AUC of the logistic model on them (the pipeline's own statistics, so
    n = all reproduces the run's AUC). Tells whether choosing n can meet the union and AUC lines at once."""
    from hsae_core.stats import evaluate_hypotheses

    out = {}
    for n in sorted(p for p in prefixes if p <= present.shape[1]):
        _, metrics = evaluate_hypotheses(present[:, :n].astype(np.float64), y_hold.astype(np.float64), "binary")
        out[str(n)] = {
            "union_f1": union_f1(present[:, :n][:, positive[:n]], y_hold),
            "auc_cv": metrics["auc_cv"],
            "n_positive": int(positive[:n].sum()),
        }
    return out


def sae_best_latent_f1(codes_train, codes_hold, y_train, y_hold, min_present_frac: float) -> float:
    """Holdout F1 of the SAE's best latent for the concept, each latent at the presence cut the product
    learns for it on the training rows (going with the concept), the best picked on the holdout itself:
    an optimistic ceiling for "best single F1" that says whether the choice or the SAE is the limit."""
    from hsae_core.choose import min_present_rows
    from hsae_core.presence import learn_thresholds, presence_matrix

    direction = np.ones(codes_train.shape[1])
    cut = learn_thresholds(
        codes_train, y_train, min_present=min_present_rows(len(y_train), min_present_frac), direction=direction
    ).threshold
    return best_f1(presence_matrix(codes_hold, cut), y_hold)[0]


def _any_of_scores(metrics: dict) -> dict:
    """The run's any-of rule (its few positive hypotheses chosen on the training split): holdout F1, size and
    the bar (F1 of calling every holdout text the class); for a two-valued target the same of the other
    value's rule, prefixed ``other_``."""
    out = {}
    for key, prefix in (("any_of", ""), ("any_of_other", "other_")):
        if key in metrics or not prefix:
            rule = metrics.get(key) or {}
            hold = rule.get("holdout") or {}
            out[f"{prefix}any_of_f1"] = hold.get("f1")
            out[f"{prefix}any_of_size"] = len(rule.get("latents") or [])
            out[f"{prefix}any_of_bar"] = hold.get("every_row_f1")
    return out


def _or_nan(value) -> float:
    return float("nan") if value is None else value


def pooled_scores(codes, y_train, y_hold, kind: str, config) -> dict:
    """The recovery measures of a choice from several SAEs' latents (bench/pooled.py)."""
    codes_train, codes_hold, sizes = codes
    found = pooled_hypotheses(codes_train, codes_hold, y_train, y_hold, kind, config)
    present = found["annotations"] > 0
    f1, best = best_f1(present, y_hold)
    return {
        "best_f1": f1,
        "union_f1": union_f1(present[:, found["positive"]], y_hold),
        "auc_cv": found["metrics"].get("auc_cv"),
        "auc_in_sample": found["metrics"].get("auc_in_sample"),
        "n_hypotheses": int(present.shape[1]),
        "n_positive": int(found["positive"].sum()),
        "n_significant_bonferroni": found["metrics"].get("n_significant_bonferroni"),
        "best_latent": int(found["latents"][best]) if best is not None else None,
        "best_from_sae": source_of(found["latents"][[best]], sizes)[0] if best is not None else None,
        "from_sae": source_of(found["latents"], sizes),
    }


def _sae_summary(run, overrides: dict) -> dict:
    if run is None:
        return {"pool": overrides["pool"]}
    return {k: run.summary["sae"].get(k) for k in ("m", "k", "matryoshka", "levels", "epochs", "val_nmse")}


# ----------------------------------------------------------------------------- runs
def _config(overrides: dict, seed: int, **fixed):
    from hsae_core.pipeline import HypothesisConfig

    fields = {k: (tuple(v) if isinstance(v, list) else v) for k, v in overrides.items() if k not in BENCH_ONLY}
    return HypothesisConfig(seed=seed, **fixed, **fields)


def recovery(cset: ConceptSet, overrides: dict, seeds, probes: dict, prefixes=()) -> list[dict]:
    """Every concept of one corpus, one pipeline run per seed (multiclass: one-vs-rest in one run)."""
    from hsae_core.pipeline import hypothesize

    train, hold = cset.split()
    X_train = embed_cached(train["text"].tolist())  # cache hits after the first time; the probe reads them
    X_hold = embed_cached(hold["text"].tolist())
    rows = []
    for concept in cset.concepts():
        key = (cset.name, concept)
        if key not in probes:
            probes[key] = probe(X_train, cset.indicator(train, concept), X_hold, cset.indicator(hold, concept))
    pooled = bool(overrides.get("pool"))
    for seed in seeds:
        t0 = time.perf_counter()
        config = _config(overrides, seed, target_kind="binary" if cset.binary_concept else "auto")
        if pooled:
            X_pair = product_embeddings(train, hold, "text", "label", config)
            codes = pooled_codes(*X_pair, config, overrides["pool"])
        else:
            run = hypothesize(train, text_col="text", target_col="label", holdout=hold, config=config)
        seconds = time.perf_counter() - t0
        if not pooled:  # for the ceiling column, not timed
            codes_train, codes_hold = run.sae.transform(X_train), run.sae.transform(X_hold)
        for concept in cset.concepts():
            y_hold = cset.indicator(hold, concept)
            if pooled:
                scores = pooled_scores(codes, cset.indicator(train, concept), y_hold, "binary", config)
            else:
                scores = concept_scores(run, cset, concept, y_hold, prefixes)
                scores["sae_best_latent_f1"] = sae_best_latent_f1(
                    codes_train, codes_hold, cset.indicator(train, concept), y_hold, config.min_present_frac
                )
            rows.append(
                {
                    "dataset": cset.name,
                    "concept": concept,
                    "seed": seed,
                    "seconds": seconds,
                    "sae": _sae_summary(None if pooled else run, overrides),
                    **scores,
                    "probe_f1": probes[(cset.name, concept)]["f1"],
                    "probe_f1_trained_cut": probes[(cset.name, concept)]["f1_trained_cut"],
                    "probe_auc": probes[(cset.name, concept)]["auc"],
                }
            )
            print(
                f"  {cset.name} | {concept} | seed {seed}: best F1 {scores['best_f1']:.3f}, union F1 "
                f"{scores['union_f1']:.3f}, any-of rule F1 {_or_nan(scores.get('any_of_f1')):.3f} "
                f"({scores.get('any_of_size', 0)} in it; calling every text the class {_or_nan(scores.get('any_of_bar')):.3f})"
                + (
                    f", the other value's rule F1 {_or_nan(scores['other_any_of_f1']):.3f} ({scores['other_any_of_size']} "
                    f"in it; bar {_or_nan(scores['other_any_of_bar']):.3f})"
                    if "other_any_of_f1" in scores
                    else ""
                )
                + f", AUC(cv) {scores['auc_cv']:.3f}, {scores['n_significant_bonferroni']} Bonferroni-significant "
                f"({seconds:.0f} s)",
                flush=True,
            )
    return rows


def continuous_frames(name: str):
    """(train, holdout, text column, target column) of a continuous target: the Yelp demo files, or one of
    the other continuous targets in the shared data on the fixed 30% split (Upworthy by A/B test)."""
    from hsae_core.data import split_indices
    from hsae_core.splits import grouped_split

    if name == "Yelp":
        train, hold = yelp_frames()
        return train, hold, "text", "stars"
    folder = data_dir()
    if name == "ML stance":
        frame = pd.DataFrame(json.loads((folder / "ml_nlp_abstracts_stance" / "human_annotated_all.json").read_text()))
        frame = frame.assign(text=frame["title"] + ". " + frame["abstract"])[["text", "stance"]]
        target = "stance"
    elif name == "arXiv citations":
        frame = pd.read_csv(folder / "arxiv_2018_citations" / "arxiv_2018_with_citations.csv")
        frame = frame.dropna(subset=["citation_count"])
        # The raw counts: the product's target scale (auto) models them as log(1 + citations), as it tells
        frame = frame.assign(text=frame["title"] + ". " + frame["abstract"])[["text", "citation_count"]]
        target = "citation_count"
    elif name == "Yelp useful votes":
        train, hold = yelp_frames()
        return train, hold, "text", "useful"
    elif name == "Upworthy CTR":
        frame = pd.read_parquet(folder / "upworthy_headlines" / "upworthy_exploratory_packages.parquet")
        frame = frame.rename(columns={"headline": "text"})[["text", "ctr", "clickability_test_id"]]
        train_pos, hold_pos = grouped_split(frame["clickability_test_id"], HOLDOUT_FRAC, SPLIT_SEED)
        return frame.iloc[train_pos], frame.iloc[hold_pos], "text", "ctr"
    else:
        raise ValueError(f"unknown continuous target {name!r}")
    train_pos, hold_pos = split_indices(len(frame), HOLDOUT_FRAC, SPLIT_SEED)
    return frame.iloc[train_pos], frame.iloc[hold_pos], "text", target


# Continuous targets besides Yelp, run when --only names them (Yelp runs by default).
OTHER_CONTINUOUS = ("ML stance", "arXiv citations", "Upworthy CTR", "Yelp useful votes")


def yelp_validity(overrides: dict, seeds) -> list[dict]:
    """The same defaults on Yelp stars: significant hypotheses and holdout R² (in sample, 5-fold CV)."""
    return continuous_validity("Yelp", overrides, seeds)


def continuous_validity(name: str, overrides: dict, seeds) -> list[dict]:
    """One continuous target (see :func:`continuous_frames`): significant hypotheses and holdout R²."""
    from hsae_core.pipeline import hypothesize
    from hsae_core.stats import embedding_baseline
    from hsae_core.target_scale import choose_scale

    train, hold, text_col, target_col = continuous_frames(name)
    rows = []
    for seed in seeds:
        t0 = time.perf_counter()
        config = _config(overrides, seed, target_kind="continuous")
        if overrides.get("pool"):
            X_train, X_hold = product_embeddings(train, hold, text_col, target_col, config)
            codes = pooled_codes(X_train, X_hold, config, overrides["pool"])
            scale = choose_scale(train[target_col], config.target_scale, target_col, hold[target_col])
            y_train, y_hold = scale.apply(train[target_col]), scale.apply(hold[target_col])
            applied = scale.applied
            overall = pooled_hypotheses(codes[0], codes[1], y_train, y_hold, "continuous", config)["metrics"]
            overall["embedding_baseline"] = embedding_baseline(
                X_train, y_train, X_hold, y_hold, "continuous", seed=config.seed
            )
        else:
            run = hypothesize(train, text_col=text_col, target_col=target_col, holdout=hold, config=config)
            overall = run.summary["metrics"]["overall"]
            applied = (run.summary["target"].get("scale") or {}).get("applied", "none")
        rows.append(
            {
                "seed": seed,
                "seconds": time.perf_counter() - t0,
                "n_hypotheses": overall["n_hypotheses"],
                "n_significant_bonferroni": overall["n_significant_bonferroni"],
                "r2_in_sample": overall["r2_in_sample"],
                "r2_cv": overall["r2_cv"],
                "ridge_r2": overall["embedding_baseline"]["value"],
                "scale": applied,
            }
        )
        print(
            f"  {name} seed {seed}: {rows[-1]['n_significant_bonferroni']}/{rows[-1]['n_hypotheses']} significant, "
            f"R² {rows[-1]['r2_in_sample']:.3f}, CV R² {rows[-1]['r2_cv']:.3f} (target scale {applied})",
            flush=True,
        )
    return rows


def resolve_config(spec: str) -> dict:
    """A preset name or a JSON object of HypothesisConfig overrides (its "name" labels the rows)."""
    if spec in PRESETS:
        return {"name": spec, **PRESETS[spec]}
    try:
        parsed = json.loads(spec)
    except json.JSONDecodeError:
        raise SystemExit(f"--config {spec!r}: not a preset ({', '.join(PRESETS)}) nor a JSON object") from None
    if not isinstance(parsed, dict):
        raise SystemExit(f"--config {spec!r}: the JSON must be an object of HypothesisConfig fields")
    return {"name": parsed.get("name") or json.dumps(parsed, sort_keys=True), **parsed}


def run(
    quick: bool = False,
    configs: tuple[str, ...] = ("default",),
    only: tuple[str, ...] = (),
    partial: str = "recovery_partial",
    n_seeds: int = len(SEEDS),
    prefixes: tuple[int, ...] = (),
) -> dict:
    """Every candidate config on every concept set and on Yelp; ``only`` limits the concept sets by name.

    What is done so far is saved after each corpus as ``bench/results/<partial>.json``, so a run cut
    short still leaves its numbers."""
    from hsae_core.pipeline import HypothesisConfig

    setup_env()
    seeds = SEEDS[:1] if quick else tuple(range(n_seeds))
    sets = [c for c in concept_sets(quick) if not only or c.name in only]
    probes: dict = {}
    result = {"seeds": list(seeds), "holdout_frac": HOLDOUT_FRAC, "split_seed": SPLIT_SEED, "candidates": []}
    for spec in configs:
        overrides = resolve_config(spec)
        t0 = time.perf_counter()
        print(f"== config {overrides['name']}", flush=True)
        cand = {
            "name": overrides["name"],
            "overrides": overrides,
            "config": {
                **vars(_config(overrides, seeds[0])),
                **({"pool": overrides["pool"]} if "pool" in overrides else {}),
            },
            "concepts": [],
        }
        result["candidates"].append(cand)
        for cset in sets:
            cand["concepts"] += recovery(cset, overrides, seeds, probes, prefixes)
            save_json(partial, result)
        cand["yelp"] = [] if quick or "Yelp" not in (only or ("Yelp",)) else yelp_validity(overrides, seeds)
        cand["continuous"] = {}
        for name in [n for n in OTHER_CONTINUOUS if n in only and not quick]:
            cand["continuous"][name] = continuous_validity(name, overrides, seeds)
            save_json(partial, result)
        cand["seconds"] = time.perf_counter() - t0
        save_json(partial, result)
    result["product_defaults"] = vars(HypothesisConfig())
    return result


# ----------------------------------------------------------------------------- tables
def _mean_sd(values, digits: int = 3) -> str:
    vals = [v for v in values if v is not None and v == v]
    if not vals:
        return "—"
    sd = np.std(vals, ddof=1) if len(vals) > 1 else 0.0
    return f"{np.mean(vals):.{digits}f} ± {sd:.{digits}f}"


def _mean(values) -> str:
    vals = [v for v in values if v is not None and v == v]
    return f"{np.mean(vals):.3f}" if vals else "—"


def tables(result: dict) -> str:
    """One recovery table (rows: concept; column groups: candidates) and one Yelp table."""
    cands = result["candidates"]
    keys = list(dict.fromkeys((r["dataset"], r["concept"]) for c in cands for r in c["concepts"]))
    headers = ["dataset", "concept"]
    for c in cands:
        tag = f" ({c['name']})" if len(cands) > 1 else ""
        headers += [
            f"best single F1{tag}",
            f"SAE's best latent F1{tag}",
            f"union F1{tag}",
            f"any-of rule F1{tag}",
            f"AUC 5-fold CV{tag}",
            f"Bonferroni-significant{tag}",
        ]
    headers += ["probe F1 (0.5 cut)", "probe F1 (cut from training)", "probe AUC"]
    rows = []
    for key in keys:
        row = list(key)
        probe_row = None
        for c in cands:
            rs = [r for r in c["concepts"] if (r["dataset"], r["concept"]) == key]
            row += [
                _mean_sd([r["best_f1"] for r in rs]),
                _mean_sd([r.get("sae_best_latent_f1") for r in rs]),
                _mean_sd([r["union_f1"] for r in rs]),
                _mean_sd([r.get("any_of_f1") for r in rs]),
                _mean_sd([r["auc_cv"] for r in rs]),
                _mean_sd([r.get("n_significant_bonferroni") for r in rs], 1),
            ]
            probe_row = rs[0] if rs else probe_row
        row += [
            _mean([probe_row["probe_f1"]] if probe_row else []),
            _mean([probe_row.get("probe_f1_trained_cut", np.nan)] if probe_row else []),
            _mean([probe_row["probe_auc"]] if probe_row else []),
        ]
        rows.append(row)
    described = "; ".join(f"{c['name']}: {_describe(c['config'])}" for c in cands)
    text = f"Settings: {described}."
    if rows:  # none with --only Yelp
        text = (
            f"### Concept recovery on the holdout (mean ± sd over SAE seeds {result['seeds']}; fixed "
            f"{int(result['holdout_frac'] * 100)}% holdout, split seed {result['split_seed']})\n\n"
            + text
            + "\n\n"
            + markdown_table(headers, rows)
        )
    yrows = [
        [
            c["name"],
            _mean_sd([r["n_significant_bonferroni"] for r in c["yelp"]], 1),
            _mean_sd([r["r2_in_sample"] for r in c["yelp"]]),
            _mean_sd([r["r2_cv"] for r in c["yelp"]]),
            _mean([r["ridge_r2"] for r in c["yelp"]]),
        ]
        for c in cands
        if c.get("yelp")
    ]
    if yrows:
        text += (
            "\n\n### Yelp validity with the same settings (2,000 train / 2,000 holdout reviews, stars; mean ± sd "
            f"over SAE seeds {result['seeds']})\n\n"
            + markdown_table(
                [
                    "settings",
                    "Bonferroni-significant",
                    "holdout R² (in sample)",
                    "holdout R² (5-fold CV)",
                    "ridge on embeddings R² (ceiling)",
                ],
                yrows,
            )
        )
    crows = [
        [
            c["name"],
            name,
            _mean_sd([r["n_significant_bonferroni"] for r in rs], 1),
            _mean_sd([r["r2_cv"] for r in rs]),
            _mean([r["ridge_r2"] for r in rs]),
        ]
        for name in OTHER_CONTINUOUS
        for c in cands
        if (rs := (c.get("continuous") or {}).get(name))
    ]
    if crows:
        text += (
            "\n\n### Other continuous targets with the same settings (fixed 30% holdout, split seed 0; Upworthy "
            f"grouped by A/B test; mean ± sd over SAE seeds {result['seeds']})\n\n"
            + markdown_table(
                ["settings", "target", "Bonferroni-significant", "holdout R² (5-fold CV)", "ridge R² (ceiling)"],
                crows,
            )
        )
    return text + prefix_table(result)


def prefix_table(result: dict) -> str:
    """With --prefixes: per concept and n, the union F1 and AUC of the first n hypotheses (mean over seeds)."""
    rows = []
    for c in result["candidates"]:
        keys = list(dict.fromkeys((r["dataset"], r["concept"]) for r in c["concepts"] if r.get("prefixes")))
        for key in keys:
            rs = [r for r in c["concepts"] if (r["dataset"], r["concept"]) == key and r.get("prefixes")]
            for n in dict.fromkeys(n for r in rs for n in r["prefixes"]):
                at = [r["prefixes"][n] for r in rs if n in r["prefixes"]]
                rows.append(
                    [c["name"], *key, n]
                    + [_mean_sd([a[k] for a in at], d) for k, d in (("n_positive", 1), ("union_f1", 3), ("auc_cv", 3))]
                )
    if not rows:
        return ""
    return (
        f"\n\n### The first n hypotheses only (selection order; mean ± sd over SAE seeds {result['seeds']})\n\n"
        + markdown_table(["settings", "dataset", "concept", "n", "positive", "union F1", "AUC 5-fold CV"], rows)
    )


def _describe(cfg: dict) -> str:
    from hsae_core.settings import matryoshka_prefixes

    parts = [
        f"m={cfg['m']}",
        f"k={cfg['k']}",
        f"matryoshka={list(matryoshka_prefixes(cfg['matryoshka'], cfg['m'])) or 'none'}",
        f"select={cfg['select']}",
        f"n={cfg['n']}",
    ]
    for name in ("presence", "max_overlap", "levels", "pool"):
        if name in cfg:
            parts.append(f"{name}={cfg[name]}")
    return ", ".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="arXiv field only, one seed, no Yelp (smoke test)")
    ap.add_argument(
        "--config",
        action="append",
        default=None,
        help=f"a preset ({', '.join(PRESETS)}) or a JSON object of HypothesisConfig overrides; repeat "
        "to compare candidates side by side (default: the product's defaults)",
    )
    ap.add_argument(
        "--only",
        default="",
        help="comma-separated concept sets to run (names as in the table; 'Yelp' and the other continuous "
        "targets: " + ", ".join(OTHER_CONTINUOUS) + ")",
    )
    ap.add_argument(
        "--seeds",
        type=int,
        default=len(SEEDS),
        help=f"SAE seeds 0..N-1 (default {len(SEEDS)}); more seeds tell a small difference from seed noise",
    )
    ap.add_argument(
        "--prefixes",
        default="",
        help="comma-separated n: also score the first n hypotheses of each run alone (union F1, AUC), e.g. 3,5,8,10,15",
    )
    args = ap.parse_args()
    try:
        prefixes = tuple(int(p) for p in args.prefixes.split(",") if p.strip())
    except ValueError:
        raise SystemExit(f"--prefixes must be comma-separated whole numbers, got {args.prefixes!r}") from None
    if any(p < 1 for p in prefixes):
        raise SystemExit(f"--prefixes must be at least 1, got {args.prefixes!r}")
    if args.seeds < 1:
        raise SystemExit(f"--seeds must be at least 1, got {args.seeds}")
    configs = tuple(args.config or ("default",))
    if prefixes and any(resolve_config(spec).get("pool") for spec in configs):
        raise SystemExit("--prefixes scores a pipeline run's hypotheses in order; a `pool` config has no such run")
    only = tuple(s.strip() for s in args.only.split(",") if s.strip())
    t0, machine = time.perf_counter(), machine_description()
    res = run(args.quick, configs, only, n_seeds=args.seeds, prefixes=prefixes)
    res.update(seconds=time.perf_counter() - t0, machine=machine, quick=args.quick)
    res["command"] = (
        "python bench/bench_recovery.py"
        + "".join(f" --config '{c}'" for c in args.config or ())
        + (f" --only '{args.only}'" if only else "")
        + (f" --seeds {args.seeds}" if args.seeds != len(SEEDS) else "")
        + (f" --prefixes {args.prefixes}" if prefixes else "")
        + (" --quick" if args.quick else "")
    )
    full = configs == ("default",) and not only and not args.quick and args.seeds == len(SEEDS) and not prefixes
    tag = "_".join(
        "".join(c if c.isalnum() else "-" for c in str(resolve_config(spec)["name"]))[:40] for spec in configs
    )
    seeds_tag = (f"_{args.seeds}seeds" if args.seeds != len(SEEDS) else "") + ("_prefixes" if prefixes else "")
    name = "recovery" if full else "recovery_" + ("quick" if args.quick else f"compare_{tag}{seeds_tag}")
    print(f"wrote {save_json(name, res)}")
    print(tables(res))


if __name__ == "__main__":
    main()
