"""Hypothesis generation end to end: SAE on the train split -> select latents -> name them ->
annotate the holdout -> holdout statistics, with timings per stage and an output folder.

The holdout is never used for training the SAE, selecting latents or naming them.
"""
from __future__ import annotations

import json
import platform
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from .data import Corpus, one_vs_rest, prepare_corpus, read_table, require_columns, split_indices
from .errors import DataError, ModelError
from .progress import ProgressFn, report
from .sae import SparseAutoencoder

SELECT_METHODS = ("correlation", "separation", "lasso")
MIN_TRAIN_ROWS = 50
MIN_HOLDOUT_ROWS = 20
TABLE_COLUMNS = ["latent", "hypothesis", "selection_score", "prevalence", "separation", "separation_p",
                 "coef", "coef_p", "significant_bonferroni", "significant_fdr"]


@dataclass
class HypothesisConfig:
    """Everything that defines a hypothesis run (saved in summary.json)."""

    m: int = 128
    k: int = 16
    select: str = "correlation"
    n: int = 20
    interpreter: str = "keywords"
    annotator: str = "activation"
    seed: int = 0
    top_n: int = 100
    target_kind: str = "auto"
    target_class: Optional[str] = None
    batch_topk: bool = False
    matryoshka: tuple = ()
    max_epochs: int = 200
    batch_size: int = 256
    lr: float = 5e-4


@dataclass
class HypothesisRun:
    table: pd.DataFrame
    summary: dict
    annotations: pd.DataFrame
    sae: Optional[SparseAutoencoder] = None
    interpretations: list = field(default_factory=list)
    out_dir: Optional[Path] = None


class StageTimer:
    """Wall time per named stage."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - start, 3)


def load_split(data_path, text_col: str, target_col: str, holdout_path=None, holdout_frac: float = 0.2,
               seed: int = 0, target_kind: str = "auto") -> tuple[Corpus, Corpus]:
    """Read the train table (and a holdout table, or split one off) with one consistent target encoding."""
    train_df = read_table(data_path)
    require_columns(train_df, text_col, target_col)
    if holdout_path is not None:
        hold_df = read_table(holdout_path)
        require_columns(hold_df, text_col, target_col)
        both = pd.concat([train_df, hold_df], ignore_index=True)
        corpus = prepare_corpus(both, text_col, target_col, target_kind)
        in_train = corpus.row_ids < len(train_df)
        train, hold = corpus.subset(np.flatnonzero(in_train)), corpus.subset(np.flatnonzero(~in_train))
        hold.row_ids = hold.row_ids - len(train_df)  # row ids are positions within each file
        for part, frame in ((train, train_df), (hold, hold_df)):
            part.counts = _split_counts(part, frame, text_col, target_col)
        return train, hold
    corpus = prepare_corpus(train_df, text_col, target_col, target_kind)
    train_pos, hold_pos = split_indices(len(corpus), holdout_frac, seed)
    train, hold = corpus.subset(train_pos), corpus.subset(hold_pos)
    return train, hold


def _split_counts(part: Corpus, frame: pd.DataFrame, text_col: str, target_col: str) -> dict:
    text = frame[text_col]
    empty = ~text.map(lambda v: isinstance(v, str) and bool(v.strip()))
    return {"read": int(len(frame)), "dropped_empty_text": int(empty.sum()),
            "dropped_missing_target": int((frame[target_col].isna() & ~empty).sum()), "kept": len(part)}


def run_hypotheses(train: Corpus, holdout: Corpus, X_train: np.ndarray, X_hold: np.ndarray,
                   config: HypothesisConfig, out_dir=None, progress: Optional[ProgressFn] = None,
                   llm_client=None, sae: Optional[SparseAutoencoder] = None,
                   embedding_model: Optional[str] = None) -> HypothesisRun:
    """Run the whole method and, if ``out_dir`` is given, write its results there."""
    from .annotate import make_annotator
    from .interpret import make_interpreter
    from .select import select_latents
    from .stats import embedding_baseline, evaluate_hypotheses

    _validate_inputs(train, holdout, X_train, X_hold, config)
    timer = StageTimer()
    stages = ["train_sae", "encode", "select", "interpret", "annotate", "evaluate"]

    def step(i: int, msg: str) -> None:
        report(progress, i, len(stages), msg)

    step(0, "training SAE")
    with timer("train_sae"):
        if sae is None:
            sae = SparseAutoencoder(m=config.m, k=config.k, batch_topk=config.batch_topk, matryoshka=config.matryoshka,
                                    max_epochs=config.max_epochs, batch_size=config.batch_size, lr=config.lr,
                                    seed=config.seed, embedding_model=embedding_model).fit(X_train)
        elif sae.d_in != X_train.shape[1]:
            need = sae.config_.embedding_model or "the model it was trained on"
            raise ModelError(f"The SAE expects {sae.d_in}-d embeddings (from {need}); these are {X_train.shape[1]}-d")
    if config.n > sae.config_.m:
        raise DataError(f"--n {config.n} is more than the SAE's {sae.config_.m} latents")
    step(1, "encoding")
    with timer("encode"):
        codes_train, codes_hold = sae.transform(X_train), sae.transform(X_hold)

    interpreter = make_interpreter(config.interpreter, client=llm_client)
    annotator = make_annotator(config.annotator, client=llm_client)
    names: dict[int, object] = {}
    tables, annotation_cols, metrics, warnings = [], {"row_id": holdout.row_ids}, {}, []
    for target_name, kind, y_train, y_hold in _targets(train, holdout, config):
        step(2, f"selecting latents{_for(target_name)}")
        with timer("select"):
            sel = select_latents(codes_train, y_train, method=config.select, n=config.n, kind=kind, top_n=config.top_n)
        warnings.extend(f"{_for(target_name).strip() or 'selection'}: {w}" for w in sel.warnings)
        latents = [int(j) for j in sel.latents]
        step(3, f"naming {len(latents)} latents{_for(target_name)}")
        with timer("interpret"):
            todo = [j for j in latents if j not in names]
            for item in interpreter.interpret(train.texts, codes_train, todo):
                names[item.latent] = item
        chosen = [names[j] for j in latents]
        step(4, f"annotating the holdout{_for(target_name)}")
        with timer("annotate"):
            ann = annotator.annotate(texts=holdout.texts, codes=codes_hold, interpretations=chosen)
        step(5, f"holdout statistics{_for(target_name)}")
        with timer("evaluate"):
            per_hyp, overall = evaluate_hypotheses(ann, y_hold, kind, [c.label for c in chosen])
            overall["embedding_baseline"] = embedding_baseline(X_train, y_train, X_hold, y_hold, kind, seed=config.seed)
        prefix = f"{target_name}:" if target_name is not None else ""
        cols = [f"{prefix}latent_{j}" for j in latents]
        for col, values in zip(cols, ann.T):
            annotation_cols[col] = values
        table = pd.DataFrame({
            "latent": latents,
            "hypothesis": [c.label for c in chosen],
            "selection_score": sel.scores,
            "label_method": [c.method for c in chosen],
            "keywords": [", ".join(c.keywords) for c in chosen],
        })
        table = pd.concat([table, per_hyp.drop(columns=["hypothesis"], errors="ignore").reset_index(drop=True)], axis=1)
        table["annotation_col"] = cols
        table["annotator"] = annotator.method
        if target_name is not None:
            table.insert(0, "class", target_name)
        tables.append(table)
        metrics[str(target_name) if target_name is not None else "overall"] = overall
    step(6, "done")

    table = pd.concat(tables, ignore_index=True)
    annotations = pd.DataFrame(annotation_cols)
    summary = {
        "config": asdict(config),
        "target": {"column": train.target_col, "kind": train.target_kind, "classes": _jsonable(train.classes)},
        "text_col": train.text_col,
        "embedding_model": embedding_model or sae.config_.embedding_model,
        "interpreter": interpreter.__class__.__name__,
        "annotator": annotator.method,
        "offline_annotation": annotator.method == "activation",
        "rows": {"train": train.counts, "holdout": holdout.counts},
        "sae": {"m": sae.config_.m, "k": sae.config_.k, "d_in": sae.config_.d_in, **_jsonable(sae.metrics_)},
        "metrics": metrics,
        "seconds": timer.seconds,
        "versions": package_versions(),
    }
    if warnings:
        summary["warnings"] = warnings
    if getattr(llm_client, "stats", None):
        summary["llm"] = {"client": dict(llm_client.stats),
                          "interpreter": dict(getattr(interpreter, "stats_", {})),
                          "annotator": dict(getattr(annotator, "stats_", {}))}
    run = HypothesisRun(table=table, summary=summary, annotations=annotations, sae=sae,
                        interpretations=[names[j] for j in sorted(names)])
    if out_dir is not None:
        write_run(run, out_dir)
    return run


def _for(target_name) -> str:
    return f" for class {target_name}" if target_name is not None else ""


def _validate_inputs(train: Corpus, holdout: Corpus, X_train, X_hold, config: HypothesisConfig) -> None:
    if train.y is None or holdout.y is None:
        raise DataError("Hypothesis generation needs a target column")
    if config.select not in SELECT_METHODS:
        raise DataError(f"Unknown selection method '{config.select}'; use one of {', '.join(SELECT_METHODS)}")
    if len(train) < MIN_TRAIN_ROWS:
        raise DataError(f"Only {len(train)} training rows; need at least {MIN_TRAIN_ROWS}")
    if len(holdout) < MIN_HOLDOUT_ROWS:
        raise DataError(f"Only {len(holdout)} holdout rows; need at least {MIN_HOLDOUT_ROWS}")
    if len(X_train) != len(train) or len(X_hold) != len(holdout):
        raise DataError("Embeddings and texts have different row counts")
    for part, y in (("training", train.y), ("holdout", holdout.y)):
        if np.unique(y).size < 2:
            raise DataError(f"The target has a single value in the {part} rows; it needs at least two")


def _targets(train: Corpus, holdout: Corpus, config: HypothesisConfig):
    """(class name or None, kind, y_train, y_hold) for each analysis; multiclass -> one-vs-rest."""
    if train.target_kind != "multiclass":
        return [(None, train.target_kind, train.y, holdout.y)]
    classes = [str(c) for c in train.classes]
    if config.target_class is not None:
        if str(config.target_class) not in classes:
            raise DataError(f"Class '{config.target_class}' not in target; classes are: {', '.join(classes)}")
        wanted = [classes.index(str(config.target_class))]
    else:
        wanted = range(len(classes))
    out = []
    for i in wanted:
        y_tr, y_ho = one_vs_rest(train.y, i), one_vs_rest(holdout.y, i)
        if y_tr.min() == y_tr.max() or y_ho.min() == y_ho.max():
            raise DataError(f"Class '{classes[i]}' is missing from the training or holdout rows")
        out.append((classes[i], "binary", y_tr, y_ho))
    return out


def write_run(run: HypothesisRun, out_dir) -> Path:
    """Write hypotheses.csv, summary.json, holdout_annotations.parquet and the SAE folder."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    run.table.to_csv(out / "hypotheses.csv", index=False)
    run.annotations.to_parquet(out / "holdout_annotations.parquet", index=False)
    if run.sae is not None:
        run.sae.save(out / "sae")
    (out / "summary.json").write_text(json.dumps(run.summary, indent=2, default=_json_default))
    run.out_dir = out
    return out


def load_run(out_dir) -> HypothesisRun:
    """Reopen a finished run from its folder (the SAE stays on disk until asked for)."""
    out = Path(out_dir)
    try:
        table = pd.read_csv(out / "hypotheses.csv")
        summary = json.loads((out / "summary.json").read_text())
        annotations = pd.read_parquet(out / "holdout_annotations.parquet")
    except (OSError, ValueError) as exc:
        raise DataError(f"{out} is not a complete hypothesis run: {exc}") from None
    return HypothesisRun(table=table, summary=summary, annotations=annotations, out_dir=out)


def package_versions() -> dict:
    names = ["hsae", "torch", "numpy", "pandas", "scipy", "scikit-learn", "statsmodels", "sentence-transformers"]
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _jsonable(value):
    return json.loads(json.dumps(value, default=_json_default))


def _json_default(value):
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (tuple, set)):
        return list(value)
    return str(value)


def format_table(run: HypothesisRun, width: int = 60) -> str:
    """The hypothesis table and headline metrics as plain text for a terminal."""
    cols = [c for c in ["class"] + TABLE_COLUMNS if c in run.table.columns]
    shown = run.table[cols].copy()
    shown["hypothesis"] = shown["hypothesis"].astype(str).map(lambda s: s if len(s) <= width else s[: width - 1] + "…")
    for col in ("separation_p", "coef_p"):
        shown[col] = shown[col].map(lambda p: f"{p:.1e}" if pd.notna(p) else "nan")
    lines = [shown.to_string(index=False, float_format=lambda v: f"{v:.3f}")]
    annot = run.summary.get("annotator")
    for name, m in run.summary.get("metrics", {}).items():
        label = "" if name == "overall" else f"[{name}] "
        metric = "r2" if "r2_cv" in m else "auc"
        base = m.get("embedding_baseline", {})
        lines.append(
            f"{label}holdout {metric.upper()} of the hypotheses: in-sample {m.get(metric + '_in_sample', float('nan')):.3f}, "
            f"{m.get('cv_folds', 5)}-fold CV {m.get(metric + '_cv', float('nan')):.3f}; "
            f"embedding {base.get('model', 'ridge')} reference {base.get('value', float('nan')):.3f}; "
            f"Bonferroni-significant {m.get('n_significant_bonferroni')}/{m.get('n_hypotheses')}, "
            f"FDR {m.get('n_significant_fdr')}/{m.get('n_hypotheses')}"
        )
    if annot == "activation":
        lines.append("Holdout presence = the latent's activation > 0 (offline activation annotator, no LLM).")
    return "\n".join(lines)
