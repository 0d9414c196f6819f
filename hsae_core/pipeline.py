"""Hypothesis generation end to end. :func:`hypothesize` is the one entry point ("table in, hypotheses
out") that the CLI, the dashboard and the benchmarks call: read -> split -> embed -> SAE on the train
split -> select latents -> name them -> annotate the holdout -> holdout statistics -> output folder.

The holdout is never used for training the SAE, selecting latents or naming them.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np
import pandas as pd

from . import settings, validate
from .annotate import ActivationAnnotator, Annotator
from .anyof import any_of_scores, every_row_f1, fit_any_of
from .choose import Choice, choose_hypotheses
from .controls import ControlDesign, Controls, absorbed_control, fit_controls, nothing_left
from .data import (
    FEW_TARGET_VALUES,
    TARGET_VALUES,
    Corpus,
    one_vs_rest,
    part_counts,
    prepare_corpus,
    read_table,
    require_columns,
    split_indices,
    target_in_table,
)
from .embed import Embedder
from .errors import DataError, LLMError, ModelError
from .fsutil import check_cache_dir
from .interpret import Interpreter, KeywordInterpreter, fit
from .presence import chosen_presence
from .progress import Overall, ProgressFn, expected_epochs, progress_span, report, run_weights
from .report import any_of_lines, fixed_decimals, presence_rule, row_counts, split_summary, verdict_line
from .runstore import check_run_folder, new_run_id, verify_run_folder, write_run_folder
from .splits import (
    duplicate_mask,
    group_codes,
    grouped_split,
    holdout_table_warnings,
    refuse_a_holdout_of_training_texts,
    repeated_texts,
    split_warnings,
)
from .stats import embedding_baseline, evaluate_hypotheses, few_cases_note
from .target_scale import TargetScale, choose_scale

if TYPE_CHECKING:  # the estimator imports torch: a run loads it once its inputs have passed the checks
    from .sae import SparseAutoencoder

MIN_TRAIN_ROWS = settings.MIN_SAE_ROWS
MIN_HOLDOUT_ROWS = 20
TABLE_COLUMNS = [
    "latent",
    "level",
    "hypothesis",
    "fidelity_auc",
    "fidelity_f1",
    "selection_score",
    "threshold",
    "prevalence",
    "separation",
    "separation_p",
    "within_pairs",
    "within_pairs_n",
    "coef",
    "coef_p",
    "significant_bonferroni",
    "significant_fdr",
]


@dataclass
class HypothesisConfig:
    """Everything that defines a hypothesis run (saved in summary.json); defaults from :mod:`settings`."""

    # SAE (used when no pretrained SAE is given)
    m: int = settings.SAE.m
    k: int = settings.SAE.k
    batch_topk: bool = settings.SAE.batch_topk
    matryoshka: tuple | str = settings.SAE.matryoshka
    levels: tuple | str = settings.SAE.levels  # further (latents, active) dictionaries beside (m, k); "none"
    max_epochs: int = settings.SAE.max_epochs
    batch_size: int = settings.SAE.batch_size
    lr: float = settings.SAE.lr
    seed: int = settings.SAE.seed
    device: str = settings.DEVICE  # where the SAE trains and encodes: auto (CUDA when present), cpu or cuda
    cache_sae: bool = True  # reuse an SAE trained earlier on the same embeddings with the same settings
    # selection
    select: str = settings.SELECTION.method
    n: int = settings.SELECTION.n  # at most: a small holdout tests fewer (rows_per_hypothesis)
    rows_per_hypothesis: int = settings.SELECTION.rows_per_hypothesis
    top_n: int = settings.SELECTION.top_n
    presence: str = settings.SELECTION.presence
    min_present_frac: float = settings.SELECTION.min_present_frac
    max_overlap: float = settings.SELECTION.max_overlap
    # naming and holdout annotation (names; instances can be passed to ``hypothesize``)
    interpreter: str = settings.LABELS.interpreter
    annotator: str = settings.LABELS.annotator
    # target
    target_kind: str = "auto"
    target_class: Optional[str] = None
    # a continuous target as it is ("none"), as log(1 + y) ("log1p"), or "auto": the log for a heavy-tailed count
    target_scale: str = "auto"
    # holdout split (when no separate holdout table is given)
    holdout_frac: float = settings.SELECTION.holdout_frac
    split_col: Optional[str] = None
    holdout_value: Optional[str] = None
    group_col: Optional[str] = None  # random split of whole groups (e.g. the arms of one A/B test stay together)
    dedupe: bool = False  # drop texts identical up to case, punctuation and spacing before splitting
    # columns to adjust for (:mod:`controls`): hypotheses are chosen and tested beyond them
    controls: tuple = ()

    def validate(self, pretrained: bool = False) -> None:
        """Raise a DataError naming the first parameter out of range, before any heavy work. With
        ``pretrained`` (a given SAE), the SAE's own size bounds `n` instead of `m`."""
        if self.select not in settings.SELECT_METHODS:
            raise DataError(
                f"Unknown selection method '{self.select}' for `select`; use one of "
                f"{', '.join(settings.SELECT_METHODS)}"
            )
        if self.presence not in settings.PRESENCE_MODES:
            raise DataError(f"Unknown `presence` '{self.presence}'; use one of {', '.join(settings.PRESENCE_MODES)}")
        for name in ("max_overlap", "min_present_frac"):
            validate.finite_float(name, getattr(self, name), 0.0, 1.0)
        if self.target_kind not in settings.TARGET_KINDS:
            raise DataError(
                f"Unknown `target_kind` '{self.target_kind}'; use one of {', '.join(settings.TARGET_KINDS)}"
            )
        if self.target_scale not in settings.TARGET_SCALES:
            raise DataError(
                f"Unknown `target_scale` '{self.target_scale}'; use one of {', '.join(settings.TARGET_SCALES)}"
            )
        for name in ("m", "k", "n", "top_n", "max_epochs", "batch_size"):
            validate.positive_int(name, getattr(self, name))
        validate.positive_int("rows_per_hypothesis", self.rows_per_hypothesis, minimum=0)
        if self.k > self.m:
            raise DataError(f"`k` ({self.k}) cannot exceed `m` ({self.m})")
        levels = validate.levels(self.levels)
        latents = self.m + sum(s for s, _ in levels)
        if self.n > latents and not pretrained:
            if levels:
                raise DataError(
                    f"`n` ({self.n}) is more than the SAE's {latents} latents (`m` ({self.m}) and its `levels`)"
                )
            raise DataError(f"`n` ({self.n}) is more than the SAE's `m` ({self.m}) latents")
        validate.finite_float("holdout_frac", self.holdout_frac, 0.0, 1.0, low_open=True, high_open=True)
        validate.finite_float("lr", self.lr, 0.0, 1.0, low_open=True, high_open=True)
        validate.seed("seed", self.seed)
        if not isinstance(self.batch_topk, (bool, np.bool_)):
            raise DataError(f"`batch_topk` must be True or False, got {self.batch_topk!r}")
        try:
            prefixes = list(settings.matryoshka_prefixes(self.matryoshka, self.m))
        except (TypeError, ValueError):
            raise DataError(f"`matryoshka` must be 'auto', 'none' or prefix sizes, got {self.matryoshka!r}") from None
        prefixes = [validate.positive_int("matryoshka", p) for p in prefixes]
        if prefixes != sorted(set(prefixes)) or any(p >= self.m for p in prefixes):
            raise DataError(f"`matryoshka` prefixes must be increasing and below `m` ({self.m}), got {prefixes}")
        if levels and (prefixes or self.batch_topk):
            raise DataError("`levels` cannot be combined with `matryoshka` or `batch_topk`; pass levels 'none'")
        for name, allowed in (("interpreter", settings.INTERPRETERS), ("annotator", settings.ANNOTATORS)):
            if isinstance(getattr(self, name), str) and getattr(self, name) not in allowed:
                raise DataError(f"Unknown `{name}` {getattr(self, name)!r}; use one of {', '.join(allowed)}")
        if self.device not in settings.DEVICES:
            raise DataError(f"`device` must be one of {', '.join(settings.DEVICES)}, got {self.device!r}")
        if self.split_col and self.group_col:
            raise DataError("Give either `split_col` (holdout by value) or `group_col` (grouped split), not both")
        if isinstance(self.controls, str):
            self.controls = (self.controls,)
        if self.controls and self.select != "stepwise":
            raise DataError(
                f"Adjusting for columns (`controls`) works with the `stepwise` selection (the default), not `{self.select}`"
            )


class HypothesisRun:
    """A hypothesis run: ``table`` (one row per hypothesis), ``summary`` (what summary.json holds),
    ``annotations`` (each hypothesis's presence in each holdout row, and the target), ``sae`` (the SAE whose
    latents the hypotheses are), ``interpretations`` (their labels) and ``out_dir`` (where it was written).
    :meth:`report` says it in words, as ``hsae hypothesize`` prints it. A run reopened with :func:`load_run`
    reads its SAE from disk when ``sae`` is first asked for (``sae_loader``)."""

    def __init__(
        self,
        table: pd.DataFrame,
        summary: dict,
        annotations: pd.DataFrame,
        sae: Optional[SparseAutoencoder] = None,
        interpretations: Optional[list] = None,
        out_dir: Optional[Path] = None,
        *,
        sae_loader: Optional[Callable[[], SparseAutoencoder]] = None,
    ):
        self.table, self.summary, self.annotations = table, summary, annotations
        self.interpretations = list(interpretations or [])
        self.out_dir = out_dir
        self._sae, self._sae_loader = sae, sae_loader

    @property
    def sae(self) -> Optional[SparseAutoencoder]:
        """The SAE the run used; a reopened run loads it here, or says in one line why it cannot."""
        if self._sae is None and self._sae_loader is not None:
            self._sae = self._sae_loader()
        return self._sae

    @sae.setter
    def sae(self, value: Optional[SparseAutoencoder]) -> None:
        self._sae, self._sae_loader = value, None

    def report(self, warnings: bool = True) -> str:
        """The run in words, the text ``hsae hypothesize`` prints (see :func:`format_report`)."""
        return format_report(self, warnings=warnings)

    def __repr__(self) -> str:
        target = self.summary.get("target") or {}
        held = int(self.table["significant_bonferroni"].sum()) if "significant_bonferroni" in self.table else 0
        where = f"written to {self.out_dir}" if self.out_dir is not None else "not written"
        return (
            f"<HypothesisRun: {len(self.table)} hypotheses for '{target.get('column')}' ({target.get('kind')}), "
            f"{held} Bonferroni-significant on the holdout; {where}; .report() says it in words>"
        )


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


# ---------------------------------------------------------------------------------------- the one entry point
def hypothesize(
    data,
    *,
    text_col: str,
    target_col,
    holdout=None,
    config: Optional[HypothesisConfig] = None,
    embeddings: Optional[np.ndarray] = None,
    embedder: Optional[Embedder | str] = None,
    sae: Optional[SparseAutoencoder] = None,
    interpreter: Optional[Interpreter | str] = None,
    annotator: Optional[Annotator | str] = None,
    llm_client=None,
    out_dir=None,
    progress: Optional[ProgressFn] = None,
    embed_progress: Optional[ProgressFn] = None,
    sae_origin: Optional[str] = None,
    on_warning: Optional[Callable[[str], None]] = None,
) -> HypothesisRun:
    """Table in, hypotheses out: read, split, embed, SAE, select, name, annotate, evaluate, write.

    ``data`` (and ``holdout``, a separate holdout table) is a path to a CSV/TSV/JSON/JSONL/Parquet table
    or a DataFrame. ``target_col`` names the target column, or gives the target itself (one table only): a
    Series, matched to the table's rows by index as pandas matches them (one with the default index 0..N-1,
    whose labels are not the table's, by position), or a 1-D array or list in the table's order; a one-column
    DataFrame or (N, 1) array is read as its column. ``embeddings`` (one row per row of ``data``, in its order,
    then one per row of ``holdout`` when that is given; e.g. a workspace's stored embeddings) skips embedding;
    otherwise ``embedder`` (an :class:`~hsae_core.embed.Embedder` or a spec; default offline MiniLM) embeds the
    texts through the disk cache. ``sae`` (pretrained, or a workspace's) skips training; ``sae_origin`` says in
    the summary where it came from and which rows it saw. Without ``sae_origin``, a given SAE that records the
    rows it was fitted on (``SparseAutoencoder.fitted_on``) is checked: the run says how many holdout rows it
    saw. Without ``sae``, an SAE is trained on the training rows only (or loaded from the SAE cache after an
    identical training).
    ``interpreter``/``annotator`` may be instances or names and default to ``config``'s names. With
    ``out_dir`` the run is written there (``hypotheses.csv``, ``summary.json``, annotations, ``sae/``).
    ``on_warning`` hears a split's warnings as soon as the split is made, before any embedding or training
    (they are in the summary's warnings too).
    """
    config = _as_config(config)
    sae = _as_sae(sae)
    config.validate(pretrained=sae is not None)
    # Everything that can be refused cheaply is refused before reading, embedding or training.
    asked, model_hint = interpreter or config.interpreter, _embedding_model_hint(embeddings, embedder, sae)
    interpreter = resolve_interpreter(asked, llm_client, embedding_model=model_hint)
    annotator = resolve_annotator(annotator or config.annotator, llm_client)
    if out_dir is not None:
        check_run_folder(out_dir)
    if embeddings is None:
        check_cache_dir(settings.cache_dir())
    settings.fit_blas_threads()  # a malformed HSAE_FIT_BLAS_THREADS is refused now, not at the holdout model
    if sae is not None and config.n > sae.config_.m:
        raise DataError(f"`n` ({config.n}) is more than the SAE's {sae.config_.m} latents")
    for client in llm_clients(interpreter, annotator):
        client.check()  # one cheap call: an unreachable endpoint fails now, in seconds
    timer = StageTimer()
    t0 = time.perf_counter()
    with timer("read"):
        data, target_col = _with_target(_as_frame(data), target_col, holdout, text_col)
        whole_groups = holdout is None and _compared_within(data, text_col, target_col, config)
        if whole_groups:
            config = replace(config, group_col=whole_groups)
        train, hold = load_split(data, text_col, target_col, holdout=holdout, config=config)
        _validate_inputs(train, hold)
        targets, _ = _targets(train, hold, config)  # a missing class or an impossible scale: refused before embedding
        _check_something_left(targets, _controls(train, config), train)
    split_notes = split_warnings(train, hold, config) if holdout is None else holdout_table_warnings(hold)
    for note in split_notes if on_warning is not None else ():
        on_warning(f"split: {note}")
    with timer("embed"):
        X_train, X_hold, model_id = embed_split(
            train,
            hold,
            embeddings=embeddings,
            embedder=embedder,
            sae=sae,
            progress=embed_progress,
            separate_holdout=holdout is not None,
        )
    run = run_hypotheses(
        train,
        hold,
        X_train,
        X_hold,
        config,
        progress=progress,
        llm_client=llm_client,
        sae=sae,
        embedding_model=model_id,
        interpreter=interpreter,
        annotator=annotator,
        sae_origin=sae_origin,
        separate_holdout=holdout is not None,
    )
    run.summary["seconds"] = {**timer.seconds, **run.summary["seconds"], "total": round(time.perf_counter() - t0, 3)}
    run.summary["split"] = describe_split(train, hold, config, separate_holdout=holdout is not None)
    if whole_groups:
        run.summary["split"]["grouped_because"] = "controls"
    if split_notes:
        run.summary["warnings"] = [f"split: {w}" for w in split_notes] + run.summary.get("warnings", [])
    if asked == "phrases" and isinstance(interpreter, KeywordInterpreter):
        run.summary.setdefault("warnings", []).append(_keywords_instead_of_phrases(model_hint))
    if out_dir is not None:
        write_run(run, out_dir)
    return run


def _keywords_instead_of_phrases(model: Optional[str]) -> str:
    """Why a run asked for phrase labels got keyword lists: phrases are judged by embedding them."""
    which = (
        "is not known: pass embedder= naming it (e.g. 'minilm')"
        if model is None
        else f"({model}) cannot embed new text here"
    )
    return (
        "labels: keyword lists, not phrases: a phrase is checked by embedding it with the model that made the "
        f"documents' embeddings, and that model {which}"
    )


def _compared_within(frame: pd.DataFrame, text_col: str, target_col: str, config: HypothesisConfig):
    """The absorbed control column when the split would otherwise be of random rows, else None.

    Compared within a column's groups, a holdout row alone in its group tests nothing, and a random row
    split leaves many so (most Upworthy tests have four or five arms): the holdout is
    then a random share of whole groups instead, as ``group_col`` on that column would make it."""
    if not config.controls or config.group_col or config.split_col:
        return None
    return absorbed_control(frame, config.controls, text_col=text_col, target_col=target_col)


def load_split(
    data, text_col: str, target_col: str, holdout=None, config: Optional[HypothesisConfig] = None
) -> tuple[Corpus, Corpus]:
    """(train, holdout) corpora with one target encoding shared by both.

    The holdout is a separate table (``holdout``), the rows whose ``config.split_col`` equals
    ``config.holdout_value``, a random ``config.holdout_frac`` of the groups of ``config.group_col``, or a
    random ``config.holdout_frac`` of the rows. With ``config.dedupe`` repeated texts are dropped first
    (counted as ``dropped_duplicate_text``; a holdout text equal to a training text goes). Row ids are
    positions in the table each part came from.
    """
    config = config or HypothesisConfig()
    frame, target_col = _with_target(_as_frame(data), target_col, holdout, text_col)
    require_columns(frame, text_col, target_col)
    if holdout is not None:
        hold_frame = _as_frame(holdout)
        try:
            require_columns(hold_frame, text_col, target_col)
        except DataError as exc:
            raise DataError(f"The holdout table: {exc}") from None
        both = pd.concat([frame, hold_frame], ignore_index=True)
        corpus = _prepare_with_holdout(both, frame, text_col, target_col, config.target_kind)
        in_train = corpus.row_ids < len(frame)
        dup = duplicate_mask(corpus.texts) if config.dedupe else np.zeros(len(corpus), dtype=bool)
        parts = []
        both_counts = part_counts(both, text_col, target_col, [slice(0, len(frame)), slice(len(frame), len(both))])
        for side, counts in zip((in_train, ~in_train), both_counts):
            if config.dedupe:
                counts["dropped_duplicate_text"] = int((side & dup).sum())
            parts.append(corpus.subset(np.flatnonzero(side & ~dup), counts=counts))
        train, hold = parts
        hold.row_ids = hold.row_ids - len(frame)  # row ids are positions within each file
        if not config.dedupe:  # with it, such rows were dropped and counted above
            repeated = repeated_texts(train.texts, hold.texts)
            refuse_a_holdout_of_training_texts(repeated, len(hold))
            hold.counts["repeats_training_text"] = repeated
        return _with_positive_class(train, hold, config)
    corpus = prepare_corpus(frame, text_col, target_col, config.target_kind)
    if config.dedupe:
        dup = duplicate_mask(corpus.texts)
        corpus = corpus.subset(np.flatnonzero(~dup), counts={**corpus.counts, "dropped_duplicate_text": int(dup.sum())})
    if config.group_col:
        require_columns(frame, config.group_col)
        train_pos, hold_pos = grouped_split(corpus.frame[config.group_col], config.holdout_frac, config.seed)
    elif config.split_col:
        require_columns(frame, config.split_col)
        is_hold = (corpus.frame[config.split_col].astype(str) == str(config.holdout_value)).to_numpy()
        if is_hold.all() or not is_hold.any():
            seen = corpus.frame[config.split_col].dropna().astype(str).value_counts().index[:8]
            raise DataError(
                f"Splitting on `split_col` {config.split_col} = {config.holdout_value} leaves no rows on one side "
                f"({config.split_col} takes {', '.join(seen)}{'…' if corpus.frame[config.split_col].nunique() > 8 else ''})"
            )
        train_pos, hold_pos = np.flatnonzero(~is_hold), np.flatnonzero(is_hold)
    else:
        train_pos, hold_pos = split_indices(len(corpus), config.holdout_frac, config.seed)
    return _with_positive_class(corpus.subset(train_pos), corpus.subset(hold_pos), config)


def _prepare_with_holdout(both: pd.DataFrame, frame: pd.DataFrame, text_col, target_col, target_kind) -> Corpus:
    """The training and holdout tables read as one, so that both share one target encoding; a target the
    training table alone reads is the holdout table's fault, and the line says so."""
    try:
        return prepare_corpus(both, text_col, target_col, target_kind)
    except DataError as exc:
        try:
            prepare_corpus(frame, text_col, target_col, target_kind)
        except DataError:
            raise exc from None
        raise DataError(f"The holdout table does not read like the training table: {exc}") from None


def _with_positive_class(train: Corpus, hold: Corpus, config: HypothesisConfig) -> tuple[Corpus, Corpus]:
    """A yes/no target's 1 is its later value (0/1, False/True, accept/reject: reject); ``target_class``
    names the other. A target read as a score has no class to name."""
    wanted = config.target_class
    if wanted is None or train.target_kind == "multiclass":
        return train, hold  # a multiclass target's class is checked with its one-vs-rest targets
    if train.target_kind == "continuous":
        raise DataError(
            f"`target_class` names a class, but '{train.target_col}' is read as a score; read its values as "
            "classes with `target_kind` multiclass"
        )
    classes = [str(c) for c in train.classes]
    if str(wanted) not in classes:
        raise DataError(
            f"Class '{wanted}' (`target_class`) not in the target; its two values are: {', '.join(classes)}"
        )
    if classes.index(str(wanted)) == 1:
        return train, hold
    flipped = [train.classes[1], train.classes[0]]
    return tuple(replace(part, y=1 - part.y, classes=flipped) for part in (train, hold))


def describe_split(train: Corpus, hold: Corpus, config: HypothesisConfig, separate_holdout: bool = False) -> dict:
    """How the holdout was made, for the run summary: method, column, and duplicate texts dropped."""
    if separate_holdout:
        method, column = "holdout table", None
    elif config.group_col:
        method, column = "grouped", config.group_col
    elif config.split_col:
        method, column = "by value", config.split_col
    else:
        method, column = "random", None
    if separate_holdout:
        dropped = train.counts.get("dropped_duplicate_text", 0) + hold.counts.get("dropped_duplicate_text", 0)
    else:
        dropped = train.counts.get("dropped_duplicate_text", 0)
    out = {
        "method": method,
        "column": column,
        "holdout_frac": None if separate_holdout or config.split_col else config.holdout_frac,
        "dedupe": bool(config.dedupe),
        "dropped_duplicate_text": int(dropped),
    }
    if method == "grouped":  # a row without a value is a group of its own, as the split made it
        values = {"train": train.frame[column], "holdout": hold.frame[column]}
        out["groups"] = {side: int(v.nunique() + v.isna().sum()) for side, v in values.items()}
        out["groups"]["without_value"] = int(sum(v.isna().sum() for v in values.values()))
    if method == "by value":
        out["holdout_value"] = config.holdout_value
    return out


def _as_frame(data) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        return data
    if not isinstance(data, (str, Path)):
        raise DataError(
            f"The data must be a pandas DataFrame or the path of a table file; got {type(data).__name__} "
            "(pandas.DataFrame(...) makes one from records or columns)"
        )
    return read_table(data)


def _with_target(frame: pd.DataFrame, target, holdout, text_col: str) -> tuple[pd.DataFrame, object]:
    """(table, target column name): a target given as values becomes a column of (a copy of) the table."""
    if holdout is not None and isinstance(target, TARGET_VALUES):
        raise DataError(
            "A target given as values goes with one table; with a separate `holdout` table, name the target "
            "column both tables hold (`target_col`)"
        )
    return target_in_table(frame, target, text_col)


def _as_config(config) -> HypothesisConfig:
    """The run's settings: a HypothesisConfig, None for the defaults, or a dict of its fields."""
    if config is None:
        return HypothesisConfig()
    if isinstance(config, dict):
        names = {f.name for f in fields(HypothesisConfig)}
        unknown = sorted(set(config) - names)
        if unknown:
            raise DataError(f"HypothesisConfig has no setting {', '.join(map(repr, unknown))}")
        return HypothesisConfig(**config)
    if not isinstance(config, HypothesisConfig):
        raise DataError(f"`config` must be a HypothesisConfig (or a dict of its settings); got {type(config).__name__}")
    return config


def _as_sae(sae) -> Optional[SparseAutoencoder]:
    """A given SAE: a trained SparseAutoencoder, or a folder, .pth file, registry name or Hub spec loaded as
    ``hsae hypothesize --sae`` loads it."""
    if sae is None:
        return None
    if isinstance(sae, (str, Path)):
        from .hub import load_sae

        return load_sae(str(sae))  # it names its own source in the summary
    from .sae import SparseAutoencoder

    if isinstance(sae, SparseAutoencoder):
        if not hasattr(sae, "model_"):
            raise ModelError("The SAE given is not trained yet: call its fit() first, or give a trained one")
        return sae
    raise DataError(f"`sae` must be a SparseAutoencoder or where to load one from; got {type(sae).__name__}")


def embed_split(
    train: Corpus,
    hold: Corpus,
    *,
    embeddings: Optional[np.ndarray] = None,
    embedder: Optional[Embedder | str] = None,
    sae: Optional[SparseAutoencoder] = None,
    progress: Optional[ProgressFn] = None,
    separate_holdout: bool = False,
) -> tuple[np.ndarray, np.ndarray, Optional[str]]:
    """(X_train, X_hold, embedding model id): rows of stored ``embeddings`` or freshly embedded (cached) texts.

    Stored ``embeddings`` (an array, a DataFrame or a ``.npy`` path) hold one row per row of the table read, in
    its order; with ``separate_holdout`` (the holdout came from a table of its own) the holdout table's rows
    follow the training table's."""
    if embeddings is not None:
        from .chunked import load_embeddings

        E = load_embeddings(embeddings)
        train_rows = int(train.counts.get("read", train.row_ids.max(initial=-1) + 1))
        hold_rows = int(hold.counts.get("read", hold.row_ids.max(initial=-1) + 1)) if separate_holdout else 0
        if len(E) != train_rows + hold_rows:
            what = (
                f"{train_rows:,} training rows + {hold_rows:,} holdout rows" if separate_holdout else f"{train_rows:,}"
            )
            raise DataError(
                f"`embeddings` has {len(E):,} rows; the table has {what}: give one row per table row, in the "
                "table's order (embeddings of another selection of rows would be matched to the wrong texts)"
            )
        model_id = embedder if isinstance(embedder, str) else getattr(embedder, "model_id", None)
        return (
            np.array(E[train.row_ids], dtype=np.float32),
            np.array(E[hold.row_ids + (train_rows if separate_holdout else 0)], dtype=np.float32),
            model_id,
        )
    from .embed import embed_texts, get_embedder

    model = embedder if embedder is not None and not isinstance(embedder, str) else get_embedder(embedder)
    if sae is not None:  # refuse a width/model mismatch before embedding anything
        from .hub import check_compatible

        check_compatible(sae, model.model_id, model.dim)
    X_train = embed_texts(train.texts, model, progress=progress)
    X_hold = embed_texts(hold.texts, model, progress=progress)
    return X_train, X_hold, model.model_id


# ---------------------------------------------------------------------------------------- the method on embeddings
def run_hypotheses(
    train: Corpus,
    holdout: Corpus,
    X_train: np.ndarray,
    X_hold: np.ndarray,
    config: HypothesisConfig,
    out_dir=None,
    progress: Optional[ProgressFn] = None,
    llm_client=None,
    sae: Optional[SparseAutoencoder] = None,
    embedding_model: Optional[str] = None,
    interpreter: Optional[Interpreter | str] = None,
    annotator: Optional[Annotator | str] = None,
    sae_origin: Optional[str] = None,
    separate_holdout: bool = False,
) -> HypothesisRun:
    """The method on already-embedded splits: SAE, selection, naming, annotation, statistics.
    ``separate_holdout``: the holdout came from a table of its own (its row counts are then its own)."""
    config.validate(pretrained=sae is not None)
    _validate_inputs(train, holdout, X_train, X_hold)
    targets, scale = _targets(train, holdout, config)  # a missing class is refused before any training
    controls = _controls(train, config)
    controls_train = controls_hold = None
    if controls is not None:
        controls_train, controls_hold = controls.design(train.frame), controls.design(holdout.frame)
    n_tested = hypotheses_to_test(config, len(holdout))
    interpreter = resolve_interpreter(interpreter or config.interpreter, llm_client, embedding_model=embedding_model)
    annotator = resolve_annotator(annotator or config.annotator, llm_client)
    timer = StageTimer()
    given = sae is not None
    with timer("train_sae"):
        sae, sae_key = (sae, None) if given else _cached_sae(config, X_train, embedding_model)
        bar = Overall(
            progress,
            _run_weights(config, sae is None, interpreter, annotator, targets, n_tested, len(X_train), len(X_hold)),
        )
        sae = _fit_or_check_sae(sae, given, X_train, config, embedding_model, bar, sae_key)
    origin = _sae_origin(sae, given, sae_origin, len(X_train))
    seen = _holdout_rows_fitted_on(sae, X_train, X_hold) if given and sae_origin is None else 0
    if seen:
        origin += f"; it was fitted on {seen:,} of the {len(X_hold):,} holdout rows"
    encoding = bar.stage("encoding", "encoding")
    with timer("encode"):
        codes_train = sae.transform(X_train, progress=progress_span(encoding, 0, 0.5, "training rows"))
        codes_hold = sae.transform(X_hold, progress=progress_span(encoding, 0.5, 1, "holdout rows"))

    names: dict[int, object] = {}
    tables, annotation_cols, metrics, warnings, duplicates = [], {"row_id": holdout.row_ids}, {}, [], {}
    if seen:
        warnings.append(
            f"sae: the SAE given was fitted on {seen:,} of the {len(X_hold):,} holdout rows (their embeddings are "
            "among the rows it was trained on): it never saw the target, so the holdout still tests the hypotheses, "
            "but its features were shaped by those texts; for a clean test fit it on the training rows only, or "
            "let hypothesize train one"
        )
    alone = None if controls is None else controls.alone_line(controls_hold, config.group_col)
    if alone:
        warnings.append(f"controls: {alone}")
    selections = []
    for i, (target_name, kind, y_train, _) in enumerate(targets):
        where = _for(target_name)
        bar.start(("selecting", i), f"selecting latents{where}")
        with timer("select"):
            sel = choose_for(config, codes_train, y_train, kind, n=n_tested, controls=controls_train)
        warnings.extend(f"{where.strip() or 'selection'}: {w}" for w in sel.warnings)
        if sel.dropped:
            duplicates[str(target_name) if target_name is not None else "overall"] = sel.dropped
        selections.append(sel)
    # Every class's latents named in one call: a labeller keeps its names distinct within a call, and two
    # classes naming theirs apart gave two features one name ("Reinforcement learning" for #39 and #8).
    todo = list(dict.fromkeys(int(j) for sel in selections for j in sel.latents))
    naming = bar.stage("naming", f"naming {len(todo)} latents")
    report(naming, 0, 1)
    with timer("interpret"), LLMStage(interpreter, "naming the latents", warnings):
        # a labeller that judges its labels by embedding them reads the documents' vectors, not re-embeds them
        extra = {"embeddings": X_train} if getattr(interpreter, "accepts_embeddings", False) else {}
        extra.update(_progress_arg(interpreter.interpret, naming))
        for item in interpreter.interpret(train.texts, codes_train, todo, **extra):
            names[item.latent] = item
    for i, ((target_name, kind, y_train, y_hold), sel) in enumerate(zip(targets, selections)):
        where = _for(target_name)
        latents = [int(j) for j in sel.latents]
        chosen = [names[j] for j in latents]
        annotating = bar.stage(("annotating", i), f"annotating the holdout{where}")
        report(annotating, 0, 1)
        with timer("annotate"), LLMStage(annotator, "annotating the holdout", warnings):
            extra = {"thresholds": sel.thresholds} if isinstance(annotator, ActivationAnnotator) else {}
            extra.update(_progress_arg(annotator.annotate, annotating))
            ann = annotator.annotate(texts=holdout.texts, codes=codes_hold, interpretations=chosen, **extra)
        bar.start(("statistics", i), f"holdout statistics{where}", "the hypotheses' model")
        with timer("evaluate"):
            per_hyp, overall = evaluate_hypotheses(ann, y_hold, kind, [c.label for c in chosen], controls=controls_hold)
            bar.start(("baseline", i), f"holdout statistics{where}", "the embedding baseline")
            overall["embedding_baseline"] = embedding_baseline(
                X_train,
                y_train,
                X_hold,
                y_hold,
                kind,
                seed=config.seed,
                controls_train=controls_train,
                controls_hold=controls_hold,
                cv_groups=None if not config.group_col else group_codes(train.frame[config.group_col]),
            )
        if kind == "binary":
            if target_name is not None:
                note = few_cases_note(y_hold, f"'{target_name}'", f"not '{target_name}'")
            else:
                note = few_cases_note(y_hold, f"'{train.classes[1]}'", f"'{train.classes[0]}'")
            if note:
                warnings.append(f"{where.strip() or 'holdout'}: {note}")
        # Compared within groups, the class is a place inside each group (the arm that came first), not a kind
        # of text that a few hypotheses could mark across the corpus: no any-of rule.
        if kind == "binary" and (controls is None or controls.absorbed is None):
            overall["any_of"] = _any_of(codes_train, y_train, ann, y_hold, sel, chosen)
            if target_name is None:  # a two-valued target: its other value is a class too, with a rule of its own
                overall["any_of_other"] = _any_of(codes_train, y_train, ann, y_hold, sel, chosen, other=True)
        table, cols = _hypothesis_table(target_name, latents, sel, chosen, per_hyp, annotator.method)
        if sae.config_.levels:  # which dictionary each feature comes from: its granularity
            table.insert(table.columns.get_loc("latent") + 1, "level", [sae.level_names[j] for j in latents])
        for col in ("any_of_other", "any_of"):  # each inserted right after the hypothesis: any_of comes first
            if col in overall:
                table.insert(
                    table.columns.get_loc("hypothesis") + 1, col, table["latent"].isin(overall[col]["latents"])
                )
        annotation_cols.update(zip(cols, ann.T))
        tables.append(table)
        metrics[str(target_name) if target_name is not None else "overall"] = overall
    bar.finish("done")

    annotation_cols["target"] = holdout.y if scale is None else scale.apply(holdout.y)  # the target as modelled
    summary = _summary(
        train, holdout, config, sae, interpreter, annotator, llm_client, embedding_model, metrics, warnings, timer
    )
    summary["rows"] = row_summary(train, holdout, separate_holdout)
    if scale is not None and scale.applied != "none":
        summary["target"]["scale"] = scale.as_dict()
    if n_tested < config.n:
        summary["fewer_hypotheses"] = {
            "asked": config.n,
            "tested": n_tested,
            "holdout_rows": len(holdout),
            "rows_per_hypothesis": config.rows_per_hypothesis,
        }
    summary["sae"]["origin"] = origin
    if controls is not None:
        summary["controls"] = controls.as_dict()
    summary["presence"] = _presence_note(config, annotator)
    if duplicates:
        summary["near_duplicates_dropped"] = duplicates
    run = HypothesisRun(
        table=pd.concat(tables, ignore_index=True),
        summary=summary,
        annotations=pd.DataFrame(annotation_cols),
        sae=sae,
        interpretations=[names[j] for j in sorted(names)],
    )
    if out_dir is not None:
        write_run(run, out_dir)
    return run


def _run_weights(
    config: HypothesisConfig,
    trains_sae: bool,
    interpreter,
    annotator,
    targets,
    n_tested: int,
    n_train: int,
    n_hold: int,
) -> dict:
    """The weights of the run's stages (:func:`hsae_core.progress.run_weights`) for what it is about to do."""
    n_named = n_tested * len(targets)  # at most: classes may share latents
    planned = getattr(interpreter, "planned_calls", None)
    per_text = getattr(annotator, "calls_per_text", None)
    return run_weights(
        n_train=n_train,
        n_hold=n_hold,
        n_targets=len(targets),
        n_named=n_named,
        trains_sae=trains_sae,
        max_epochs=config.max_epochs,
        naming_calls=planned(n_named) if planned else 0,
        annotation_calls=per_text(n_tested) * n_hold if per_text else 0,
    )


def _progress_arg(method, progress: Optional[ProgressFn]) -> dict:
    """``{"progress": progress}`` when ``method`` (a labeller's or an annotator's) takes a progress callback: one
    written to the protocols of an earlier version may not."""
    import inspect

    try:
        params = inspect.signature(method).parameters
    except (TypeError, ValueError):
        return {}
    takes = "progress" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    return {"progress": progress} if takes else {}


def _embedding_model_hint(embeddings, embedder, sae) -> Optional[str]:
    """Which model made (or will make) the documents' embeddings, as far as the arguments tell."""
    if embedder is not None:
        return embedder if isinstance(embedder, str) else getattr(embedder, "model_id", None)
    if embeddings is None:
        from .embed import DEFAULT_MODEL_ID

        return DEFAULT_MODEL_ID
    return getattr(getattr(sae, "config_", None), "embedding_model", None)


def resolve_interpreter(
    interpreter: Interpreter | str, llm_client=None, embedding_model: Optional[str] = None
) -> Interpreter:
    """An interpreter instance, or one made from its name ('phrases', 'keywords' or 'llm').

    'phrases' judges its labels with the model that made the embeddings (``embedding_model``); when
    that model cannot embed new text here (stored or unknown embeddings) keyword labels are used.
    """
    if isinstance(interpreter, str):
        from .interpret import make_interpreter

        return make_interpreter(interpreter, client=llm_client, embedding_model=embedding_model)
    return interpreter


def resolve_annotator(annotator: Annotator | str, llm_client=None) -> Annotator:
    """An annotator instance, or one made from its name ('activation' or 'llm')."""
    if isinstance(annotator, str):
        from .annotate import make_annotator

        return make_annotator(annotator, client=llm_client)
    return annotator


MIN_TESTED = 3  # a small holdout still tests this many hypotheses (or n, when fewer are asked)


def hypotheses_to_test(config: HypothesisConfig, holdout_rows: int) -> int:
    """How many hypotheses a run chooses: ``config.n``, or fewer when the holdout would give each fewer than
    ``config.rows_per_hypothesis`` rows (at least ``MIN_TESTED``; ``rows_per_hypothesis`` 0 always takes n)."""
    if not config.rows_per_hypothesis:
        return config.n
    return min(config.n, max(MIN_TESTED, holdout_rows // config.rows_per_hypothesis))


def fewer_hypotheses_line(summary: dict, undo: str = "--rows-per-hypothesis 0 chooses all of them") -> Optional[str]:
    """One line when a small holdout made the run choose fewer hypotheses than asked, else None."""
    few = summary.get("fewer_hypotheses")
    if not few:
        return None
    return (
        f"{few['tested']} hypotheses, not {few['asked']}: the holdout's {few['holdout_rows']:,} rows test "
        f"at most one per {few['rows_per_hypothesis']} rows, so that the joint model and the Bonferroni "
        f"correction do not spread them thin; {undo}."
    )


def choose_for(
    config: HypothesisConfig, codes, y, kind: str, n: Optional[int] = None, controls: Optional[ControlDesign] = None
) -> Choice:
    """The hypotheses ``config`` chooses from these training codes (its method, presence and overlap cap; ``n``
    of them, ``config.n`` when not given), beyond the training rows' ``controls`` when given."""
    return choose_hypotheses(
        codes,
        y,
        method=config.select,
        n=config.n if n is None else n,
        kind=kind,
        top_n=config.top_n,
        presence_mode=config.presence,
        max_overlap=config.max_overlap,
        min_present_frac=config.min_present_frac,
        controls=controls,
    )


def _check_something_left(targets: list, controls: Optional[Controls], train: Corpus) -> None:
    """Refuse, before embedding, a target that the controls explain entirely on the training rows (e.g. one that
    never varies within the groups of an absorbed column): there would be nothing left to relate to the text."""
    if controls is None:
        return
    design = controls.design(train.frame)
    for name, _, y_train, _ in targets:
        y = np.asarray(y_train, dtype=np.float64)
        if nothing_left(y, design):
            what = f"'{train.target_col}'" if name is None else f"class '{name}' of '{train.target_col}'"
            raise DataError(
                f"The controls explain {what} entirely on the training rows (it never varies within them); "
                "nothing is left to relate to the text"
            )


def _controls(train: Corpus, config: HypothesisConfig) -> Optional[Controls]:
    """The run's control columns read on the training rows (None without any); bad ones refused in one line."""
    return fit_controls(train.frame, config.controls, text_col=train.text_col, target_col=train.target_col)


def _any_of(codes_train, y_train, annotations: np.ndarray, y_hold, sel: Choice, chosen, other: bool = False) -> dict:
    """The few positive hypotheses whose "any of them is present" best marks the class: chosen on the
    training presence (activation above threshold), scored on the holdout annotations. ``other``: the
    rule for the target's other value (0), from the hypotheses that go with it (negative scores)."""
    scores = np.asarray(sel.scores, dtype=np.float64)
    if other:
        y_train, y_hold, scores = 1 - np.asarray(y_train), 1 - np.asarray(y_hold), -scores
    rule = fit_any_of(chosen_presence(codes_train, sel.latents, sel.thresholds), y_train, candidates=scores > 0)
    return {
        "latents": [int(sel.latents[i]) for i in rule.members],
        "hypotheses": [chosen[i].label for i in rule.members],
        "train": {**rule.train, "every_row_f1": every_row_f1(y_train)},
        "outdone_by_every_row": rule.outdone_by_every_row,
        "holdout": {
            **any_of_scores(np.asarray(annotations) > 0, y_hold, rule.members),
            "every_row_f1": every_row_f1(y_hold),  # the bar: calling every holdout text the class
        },
    }


def _fresh_sae(config: HypothesisConfig, embedding_model: Optional[str]) -> SparseAutoencoder:
    """The SAE ``config`` describes, untrained."""
    from .sae import SparseAutoencoder

    return SparseAutoencoder(
        m=config.m,
        k=config.k,
        batch_topk=config.batch_topk,
        matryoshka=config.matryoshka,
        levels=config.levels,
        max_epochs=config.max_epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        seed=config.seed,
        embedding_model=embedding_model,
        device=config.device,
    )


def _cached_sae(config: HypothesisConfig, X_train: np.ndarray, embedding_model: Optional[str]):
    """(the SAE an identical earlier training left in the SAE cache, or None; its cache key, for the training to
    store under without hashing the embeddings again): with ``config.cache_sae``. Known before the run's progress
    is weighted, as a cached SAE takes no time."""
    if not config.cache_sae:
        return None, None
    from .sae_cache import cache_key, lookup

    fresh = _fresh_sae(config, embedding_model)
    key = cache_key(X_train, fresh.get_params())
    return lookup(fresh, X_train, key=key), key


def _against_expected_epochs(progress: Optional[ProgressFn], max_epochs: int) -> Optional[ProgressFn]:
    """The SAE's progress (epochs of ``max_epochs``) counted against the epochs a training usually takes before
    early stopping (:func:`hsae_core.progress.expected_epochs`); a longer one stays at the end until it is done."""
    if progress is None:
        return None
    expected = expected_epochs(max_epochs)

    def epochs(done: int, total: int, message: str = "") -> None:
        progress(total if done >= total else min(done, expected), total if done >= total else expected, message)

    return epochs


def _fit_or_check_sae(
    sae: Optional[SparseAutoencoder],
    given: bool,
    X_train: np.ndarray,
    config: HypothesisConfig,
    embedding_model: Optional[str],
    bar: Overall,
    cache_key: Optional[str] = None,
) -> SparseAutoencoder:
    """Train the configured SAE on the training rows (its epochs move ``bar``) when ``sae`` is None; else the cached
    one, or check that a ``given`` one reads these embeddings. ``cache_key``: the SAE cache's key of this training,
    from :func:`_cached_sae` (the embeddings are hashed once a run)."""
    if sae is None:
        from .sae_cache import fit_cached

        training = bar.stage("sae", "training the SAE")
        report(training, 0, 1)
        epochs = _against_expected_epochs(training, config.max_epochs)
        fresh = _fresh_sae(config, embedding_model)
        return fit_cached(fresh, X_train, progress=epochs, use_cache=config.cache_sae, key=cache_key)
    if not given:
        bar.start("sae", "training the SAE", "loaded from the SAE cache")
        return sae
    bar.start("sae", "checking the SAE")
    if sae.d_in != X_train.shape[1]:
        need = sae.config_.embedding_model or "the model it was trained on"
        raise ModelError(f"The SAE expects {sae.d_in}-d embeddings (from {need}); these are {X_train.shape[1]}-d")
    if config.n > sae.config_.m:
        raise DataError(f"`n` ({config.n}) is more than the SAE's {sae.config_.m} latents")
    return sae


def _hypothesis_table(
    target_name, latents, sel, chosen, per_hyp: pd.DataFrame, annotator_method: str
) -> tuple[pd.DataFrame, list[str]]:
    """One row per hypothesis of one target, and the names of its annotation columns."""
    prefix = f"{target_name}:" if target_name is not None else ""
    cols = [f"{prefix}latent_{j}" for j in latents]
    table = pd.DataFrame(
        {
            "latent": latents,
            "hypothesis": [c.label for c in chosen],
            "selection_score": sel.scores,
            "threshold": sel.thresholds,
            "train_presence_r": sel.train_corr,
            "label_method": [c.method for c in chosen],
            "keywords": [", ".join(c.keywords) for c in chosen],
        }
    )
    fidelity = [c.fidelity or {} for c in chosen]
    for key in ("auc", "f1", "precision", "recall"):
        table[f"fidelity_{key}"] = pd.to_numeric(
            pd.Series([f.get(key) for f in fidelity], dtype=object), errors="coerce"
        ).astype(float)
    table["fidelity_judge"] = [f.get("judge") or "unavailable" for f in fidelity]
    table.insert(2, "fidelity_auc", table.pop("fidelity_auc"))
    table.insert(3, "fidelity_f1", table.pop("fidelity_f1"))
    table = pd.concat([table, per_hyp.drop(columns=["hypothesis"], errors="ignore").reset_index(drop=True)], axis=1)
    table["annotation_col"] = cols
    table["annotator"] = annotator_method
    if target_name is not None:
        table.insert(0, "class", target_name)
    return table, cols


def _few_values(train: Corpus, holdout: Corpus) -> dict:
    """{"values": [...]} for a numeric target read as a score that takes only a few values (1-5 stars, or
    codes such as ICLR's -1/0/1/2 decisions, which may be classes): the run says how it read them."""
    if train.target_kind != "continuous":
        return {}
    values = np.unique(np.concatenate([np.asarray(train.y, float), np.asarray(holdout.y, float)]))
    if len(values) > FEW_TARGET_VALUES:
        return {}
    return {"values": [int(v) if float(v).is_integer() else float(v) for v in values]}


def row_summary(train: Corpus, holdout: Corpus, separate_holdout: bool = False) -> dict:
    """The summary's ``rows``: how many rows each side kept, and what each table read and dropped, said once
    (``tables.data``; ``tables.holdout`` too when the holdout came from a table of its own)."""

    def read_and_dropped(part: Corpus) -> dict:
        return {key: value for key, value in part.counts.items() if key != "kept"}

    tables = {"data": read_and_dropped(train)}
    if separate_holdout:
        tables["holdout"] = read_and_dropped(holdout)
    return {"train": len(train), "holdout": len(holdout), "tables": tables}


def _summary(
    train: Corpus,
    holdout: Corpus,
    config: HypothesisConfig,
    sae: SparseAutoencoder,
    interpreter,
    annotator,
    llm_client,
    embedding_model,
    metrics: dict,
    warnings: list,
    timer: StageTimer,
) -> dict:
    summary = {
        "config": asdict(config),
        "target": {
            "column": train.target_col,
            "kind": train.target_kind,
            "classes": _jsonable(train.classes),
            **_few_values(train, holdout),
        },
        "text_col": train.text_col,
        "embedding_model": embedding_model or sae.config_.embedding_model,
        "interpreter": interpreter.__class__.__name__,
        "annotator": annotator.method,
        "offline_annotation": annotator.method == "activation",
        "sae": {
            "m": sae.config_.m,
            "k": sae.config_.k,
            "d_in": sae.config_.d_in,
            "matryoshka": list(sae.config_.matryoshka),
            "levels": [list(pair) for pair in sae.config_.levels],
            "batch_topk": bool(sae.config_.batch_topk),
            **_jsonable(sae.metrics_),
        },
        "metrics": metrics,
        "seconds": timer.seconds,
        "versions": package_versions(),
    }
    if warnings:
        summary["warnings"] = warnings
    clients = llm_clients(interpreter, annotator) or ([llm_client] if getattr(llm_client, "stats", None) else [])
    if clients:
        totals = {key: sum(c.stats.get(key, 0) for c in clients) for key in clients[0].stats}
        summary["llm"] = {
            "client": totals,
            "failed_calls": totals.get("failures", 0),
            "last_error": next((c.last_error for c in clients if getattr(c, "last_error", None)), None),
            "interpreter": dict(getattr(interpreter, "stats_", {})),
            "annotator": dict(getattr(annotator, "stats_", {})),
        }
        if getattr(llm_client, "batch_ids", None):  # Batch API jobs behind this run (their state is in the cache)
            summary["llm"]["batch_ids"] = list(llm_client.batch_ids)
    return summary


def llm_clients(*parts) -> list:
    """The distinct LLM clients used by interpreters/annotators (those with a ``client`` that has ``check``)."""
    out = []
    for part in parts:
        client = getattr(part, "client", None)
        if client is not None and hasattr(client, "check") and all(client is not c for c in out):
            out.append(client)
    return out


class LLMStage:
    """Around one LLM stage: when every LLM call of the stage failed, stop the run with the reason (the
    result would be all keyword fallbacks or NaN annotations); when some failed, add a warning."""

    def __init__(self, part, what: str, warnings: list):
        self.clients, self.what, self.warnings = llm_clients(part), what, warnings

    def _counts(self) -> tuple[int, int]:
        failed = sum(c.stats.get("failures", 0) for c in self.clients)
        ok = sum(getattr(c, "answered", 0) + c.stats.get("cache_hits", 0) for c in self.clients)
        return failed, ok

    def __enter__(self):
        self.before = self._counts()
        return self

    def __exit__(self, exc_type, *rest):
        if exc_type is not None or not self.clients:
            return False
        failed, ok = (now - then for now, then in zip(self._counts(), self.before))
        reason = next((c.last_error for c in self.clients if getattr(c, "last_error", None)), "unknown")
        if failed and not ok:
            raise LLMError(
                f"Every LLM call for {self.what} failed ({failed} calls; last error: {reason}); "
                "nothing was written. Check OPENAI_BASE_URL, the model name and the API key, then run again"
            )
        if failed:
            self.warnings.append(
                f"{failed} of {failed + ok} LLM calls for {self.what} failed (last error: {reason}); "
                "those latents kept keyword labels / those annotations are missing"
            )
        return False


def _sae_origin(sae: SparseAutoencoder, given: bool, origin: Optional[str], n_train: int) -> str:
    """One sentence for the summary: where the SAE came from and which rows it saw."""
    if given:
        return origin or f"given: a pretrained SAE ({_source_words(getattr(sae, 'source_', None))}), not trained here"
    how = "loaded from the SAE cache (an identical earlier training)" if getattr(sae, "cached_", False) else "trained"
    return f"{how} on the {n_train:,} training rows only; the holdout rows were never seen"


def _holdout_rows_fitted_on(sae: SparseAutoencoder, X_train: np.ndarray, X_hold: np.ndarray) -> int:
    """How many holdout rows a given SAE was fitted on (0 where it keeps no record), leaving out a holdout row
    whose embedding is also a training row's: the SAE may rightly have seen that one."""
    from .sae import row_digests

    seen = sae.fitted_on(X_hold)
    if seen is None or not seen.any():
        return 0
    return int((seen & ~np.isin(row_digests(X_hold), row_digests(X_train))).sum())


def _source_words(source) -> str:
    """Where a pretrained SAE came from, as a reader names it: a Hub file with its commit, or a path."""
    if not isinstance(source, dict):
        return str(source or "passed in")
    if source.get("type") == "hub":
        where = "/".join(p for p in (source.get("repo_id"), source.get("filename")) if p)
        revision = str(source.get("revision") or "")
        return f"Hub {where}" + (f" @ {revision[:12]}" if revision else "")
    return str(source.get("registry_name") or source.get("path") or "passed in")


def _presence_note(config: HypothesisConfig, annotator) -> str:
    if annotator.method != "activation":
        return f"judged per holdout text by the annotator {annotator.method}"
    if config.presence == "learned":
        return (
            "activation above the hypothesis's threshold (column threshold), learned on the training split: "
            "the cut whose 0/1 presence correlates most with the target"
        )
    return "activation > 0 (the latent fires at all)"


def _for(target_name) -> str:
    return f" for class {target_name}" if target_name is not None else ""


def _validate_inputs(train: Corpus, holdout: Corpus, X_train=None, X_hold=None) -> None:
    if train.y is None or holdout.y is None:
        raise DataError("Hypothesis generation needs a target column (`target_col`)")
    if len(train) < MIN_TRAIN_ROWS:
        raise DataError(f"Only {len(train)} training rows; need at least {MIN_TRAIN_ROWS}")
    if len(holdout) < MIN_HOLDOUT_ROWS:
        raise DataError(f"Only {len(holdout)} holdout rows; need at least {MIN_HOLDOUT_ROWS}")
    if X_train is not None and (len(X_train) != len(train) or len(X_hold) != len(holdout)):
        raise DataError("Embeddings and texts have different row counts")
    for part, y in (("training", train.y), ("holdout", holdout.y)):
        if np.unique(y).size < 2:
            raise DataError(f"The target has a single value in the {part} rows; it needs at least two")


def _targets(train: Corpus, holdout: Corpus, config: HypothesisConfig) -> tuple[list, Optional[TargetScale]]:
    """([(class name or None, kind, y_train, y_hold)] for each analysis, the continuous target's scale or None).
    A multiclass target becomes one-vs-rest; a continuous one is put on its scale (``config.target_scale``)."""
    if train.target_kind == "continuous":
        scale = choose_scale(train.y, config.target_scale, train.target_col, holdout.y)
        return [(None, "continuous", scale.apply(train.y), scale.apply(holdout.y))], scale
    if config.target_scale == "log1p":
        raise DataError(
            f"`target_scale` log1p is for a continuous target; '{train.target_col}' is read as {train.target_kind}"
        )
    if train.target_kind != "multiclass":
        return [(None, train.target_kind, train.y, holdout.y)], None
    classes = [str(c) for c in train.classes]
    if config.target_class is not None:
        if str(config.target_class) not in classes:
            raise DataError(
                f"Class '{config.target_class}' (`target_class`) not in the target; classes are: {', '.join(classes)}"
            )
        wanted = [classes.index(str(config.target_class))]
    else:
        wanted = range(len(classes))
    out = []
    for i in wanted:
        y_tr, y_ho = one_vs_rest(train.y, i), one_vs_rest(holdout.y, i)
        if y_tr.min() == y_tr.max() or y_ho.min() == y_ho.max():
            raise DataError(f"Class '{classes[i]}' is missing from the training or holdout rows")
        out.append((classes[i], "binary", y_tr, y_ho))
    return out, None


def write_run(run: HypothesisRun, out_dir) -> Path:
    """Write hypotheses.csv, summary.json, holdout_annotations.parquet and the SAE folder, all at once: a
    kill while writing leaves the previous run in ``out_dir`` (see :mod:`runstore`)."""
    run_id = new_run_id()
    run.summary["run_id"] = run_id

    def write(folder: Path) -> None:
        run.table.to_csv(folder / "hypotheses.csv", index=False)
        run.annotations.to_parquet(folder / "holdout_annotations.parquet", index=False)
        if run.sae is not None:
            run.sae.save(folder / "sae")
        (folder / "summary.json").write_text(json.dumps(run.summary, indent=2, default=_json_default))

    run.out_dir = write_run_folder(out_dir, run_id, write)
    return run.out_dir


def load_run(out_dir) -> HypothesisRun:
    """Reopen a finished run from its folder (the SAE stays on disk until asked for); a folder whose files
    do not belong together is refused."""
    out = Path(out_dir)
    run_id = verify_run_folder(out)
    try:
        table = pd.read_csv(out / "hypotheses.csv")
        summary = json.loads((out / "summary.json").read_text())
        annotations = pd.read_parquet(out / "holdout_annotations.parquet")
    except (OSError, ValueError) as exc:
        raise DataError(
            f"{out} is not a complete hypothesis run: {str(exc).splitlines()[0] if str(exc) else exc}"
        ) from None
    if not isinstance(summary, dict) or (run_id is not None and summary.get("run_id") != run_id):
        raise DataError(f"Run folder {out}: summary.json does not belong to this run; run the hypotheses again")
    summary["rows"] = row_counts(summary)  # a run written before reads in today's shape
    return HypothesisRun(
        table=table, summary=summary, annotations=annotations, out_dir=out, sae_loader=lambda: saved_sae(out, summary)
    )


def saved_sae(out: Path, summary: dict) -> SparseAutoencoder:
    """The SAE of the run written in ``out``: its own ``sae/`` folder, or the workspace SAE whose features it
    read (a run made by ``Workspace.hypothesize``, which keeps no copy); one ModelError line where it is gone."""
    features = summary.get("features") or {}
    if features.get("source") == "workspace":
        return _workspace_sae(out, features)
    if not (out / "sae").is_dir():
        raise ModelError(f"Run folder {out} holds no sae/ folder and names no workspace SAE: its SAE was not kept")
    from .sae import SparseAutoencoder

    return SparseAutoencoder.load(out / "sae")


def _workspace_sae(out: Path, features: dict) -> SparseAutoencoder:
    """The workspace SAE a run read, found by the key the run recorded: in the workspace it names, or (a run
    written before runs named it) the workspace whose runs/ folder holds the run."""
    from .workspace import Workspace

    key = features.get("sae_key")
    places = list(dict.fromkeys(Path(p) for p in (features.get("workspace"), out.parent.parent) if p))
    rebuilt = None
    for place in filter(Workspace.is_workspace, places):
        space = Workspace.open(place)
        if space.manifest.get("steps", {}).get("sae") == key:
            return space.sae
        rebuilt = rebuilt or place
    if rebuilt is not None:
        raise ModelError(
            f"Run {out} read the features of workspace {rebuilt}'s SAE, which a rebuild has replaced since (the "
            "workspace holds another SAE now): run the hypotheses again on the workspace"
        )
    raise ModelError(
        f"Run {out} read the features of the SAE of workspace {places[0]}, which is not a workspace now "
        "(moved or deleted): open the run where that workspace is, or run the hypotheses again"
    )


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


def untested_lines(table: pd.DataFrame) -> list[str]:
    """One line per hypothesis left out of the holdout model (its coef and p read NaN in the table), saying why."""
    if "note" not in table.columns:
        return []
    out = []
    noted = table["note"].map(lambda v: isinstance(v, str) and bool(v.strip()))  # read back from CSV: NaN if none
    for _, row in table[noted].iterrows():
        where = f"[{row['class']}] " if "class" in table.columns and pd.notna(row.get("class")) else ""
        out.append(f"{where}Not tested: #{row['latent']} \u201c{fit(str(row['hypothesis']), 40)}\u201d: {row['note']}.")
    return out


def controls_line(summary: dict) -> Optional[str]:
    """One line naming the columns a run adjusted for and what that does to its numbers, or None."""
    controls = summary.get("controls")
    if not controls:
        return None
    r2 = (summary.get("target") or {}).get("kind") == "continuous"
    if r2:
        what = "; R² is partial, the share of what they leave of the target."
    elif controls.get("absorbed"):
        what = (
            f"; AUC is within each '{controls['absorbed']}': of two of its rows, one with the target and one "
            "without, how often the model (a conditional logit) ranks them right."
        )
    else:
        what = "; AUC is of a model with them."
    return (
        f"Adjusted for {'; '.join(controls['described'])}: hypotheses are chosen and tested beyond "
        f"{'it' if len(controls['columns']) == 1 else 'them'}" + what
    )


def format_report(run: HypothesisRun, width: int = 60, warnings: bool = True) -> str:
    """The run in words, as ``hsae hypothesize`` prints it: the table and what it says (:func:`format_table`),
    failed LLM calls, and with ``warnings`` the run's warnings (the lines the CLI prints to stderr)."""
    lines = [format_table(run, width)]
    failed = llm_failures_line(run.summary)
    if failed:
        lines.append(failed)
    if warnings:
        lines.extend(warning_lines(run.summary))
    return "\n".join(lines)


def warning_lines(summary: dict) -> list[str]:
    """One ``warning: ...`` line per warning the run recorded (a split's, a labeller's, ...)."""
    return [f"warning: {w}" for w in summary.get("warnings", [])]


def llm_failures_line(summary: dict) -> Optional[str]:
    """One line when some LLM calls failed, else None."""
    llm = summary.get("llm")
    if not llm or not llm.get("failed_calls"):
        return None
    return (
        f"LLM: {llm['failed_calls']} failed call(s) of {llm['client'].get('requests', 0)} requests "
        f"(last error: {llm.get('last_error')}); see summary.json"
    )


def format_table(run: HypothesisRun, width: int = 60) -> str:
    """The hypothesis table and headline metrics as plain text for a terminal."""
    cols = [c for c in ["class"] + TABLE_COLUMNS if c in run.table.columns]
    shown = run.table[cols].copy()
    shown["hypothesis"] = shown["hypothesis"].map(lambda s: fit(s, width))
    for col in ("separation_p", "coef_p"):  # a missing p reads NaN, as pandas prints the coef beside it
        shown[col] = shown[col].map(lambda p: f"{p:.1e}" if pd.notna(p) else "NaN")
    # a click rate's effects are thousandths: more decimals for them, not a column of 0.000
    places = {col: fixed_decimals(shown[col]) for col in ("separation", "coef") if col in shown.columns}
    formatters = {col: (lambda v, d=d: f"{v:.{d}f}") for col, d in places.items()}
    lines = [
        shown.to_string(index=False, float_format=lambda v: f"{v:.3f}", formatters=formatters),
        split_summary(run.summary) + ".",
    ]
    target = run.summary.get("target") or {}
    if target.get("values"):
        shown_values = ", ".join(map(str, target["values"]))
        lines.append(
            f"Target '{target.get('column')}' read as a score ({len(target['values'])} values: {shown_values}); "
            "--target-kind multiclass reads them as classes."
        )
    classes = target.get("classes") or []
    if target.get("kind") == "binary" and len(classes) == 2 and classes not in ([0, 1], [False, True]):
        lines.append(
            f"Target '{target.get('column')}' read as yes/no: {classes[1]!r} is the 1 and {classes[0]!r} the 0 "
            f"(--target-class {classes[0]} makes it the other way round)."
        )
    auto = (run.summary.get("config") or {}).get("target_kind", "auto") == "auto"
    if auto and target.get("kind") == "multiclass" and all(isinstance(c, (int, float)) for c in classes):
        lines.append(
            f"Target '{target.get('column')}' read as classes, one vs rest: its name says its {len(classes)} numbers "
            f"({', '.join(map(str, classes))}) are codes; --target-kind continuous reads them as a score."
        )
    if target.get("scale"):
        lines.append(TargetScale(**target["scale"]).describe(target.get("column")))
    fewer = fewer_hypotheses_line(run.summary)
    if fewer:
        lines.append(fewer)
    adjusted = controls_line(run.summary)
    if adjusted:
        lines.append(adjusted)
    annot = run.summary.get("annotator")
    for name, m in run.summary.get("metrics", {}).items():
        label = "" if name == "overall" else f"[{name}] "
        metric = "r2" if "r2_cv" in m else "auc"
        base = m.get("embedding_baseline", {})
        lines.append(
            f"{label}holdout {'within-group ' if m.get('auc_within') else ''}{'R²' if metric == 'r2' else 'AUC'} of the hypotheses: in-sample {m.get(metric + '_in_sample', float('nan')):.3f}, "
            f"{m.get('cv_folds', 5)}-fold CV {m.get(metric + '_cv', float('nan')):.3f}; "
            f"embedding {base.get('model', 'ridge')} reference {base.get('value', float('nan')):.3f}; "
            f"Bonferroni-significant {m.get('n_significant_bonferroni')}/{m.get('n_hypotheses')}, "
            f"FDR {m.get('n_significant_fdr')}/{m.get('n_hypotheses')}"
            + (
                f"; read within the {m['n_groups_informative']:,} of {m['n_groups']:,} holdout groups that hold both values"
                if m.get("auc_within")
                else ""
            )
        )
        verdict = verdict_line(m)
        if verdict:
            lines.append(f"{label}{verdict}")
        lines.extend(f"{label}{rule}" for rule in any_of_lines(run.summary, name))
    lines.extend(untested_lines(run.table))
    if annot == "activation":
        lines.append(f"Holdout presence = {presence_rule(run.summary)} (offline activation annotator, no LLM).")
    origin = run.summary.get("sae", {}).get("origin")
    if origin:
        lines.append(f"SAE: {origin}.")
    return "\n".join(lines)
