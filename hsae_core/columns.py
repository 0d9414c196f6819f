"""What each column of a table holds, decided from its content (not its dtype), and which columns can play
which role (text, target, holdout split, grouping) in a run.

The kinds: ``text`` (prose: several words, mostly distinct), ``id`` (codes without spaces, or many
distinct short strings, or numbers with more than 10 values in a column named as ids), ``numeric``,
``category`` (few distinct values, booleans included), ``date`` and ``other`` (empty columns, lists, nested
objects, and lists or records written out as text). Decisions hold under pandas 2 (text as ``object``) and
pandas 3 (text as ``str``): they read the values, never compare a dtype with ``object``.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

KINDS = ("text", "id", "numeric", "category", "date", "other")
MAX_CATEGORIES = 50  # more distinct labels than this is not a usable class label (as in data.MAX_CLASSES)
MAX_SPLIT_VALUES = 10  # a column defining the holdout by value has at most this many values
SAMPLE = 2_000  # values read per column; enough to decide, fast on a million rows
TEXT_NAMES = (
    "text",
    "abstract",
    "abstracts",
    "headline",
    "review",
    "content",
    "body",
    "document",
    "title",
    "sentence",
    "description",
    "summary",
    "tweet",
    "comment",
    "message",
)
TARGET_NAMES = (
    "stars",
    "rating",
    "score",
    "label",
    "target",
    "class",
    "category",
    "stance",
    "sentiment",
    "decision",
    "outcome",
    "ctr",
    "citation_count",
    "citations",
)
_MARKUP = re.compile(r"<[A-Za-z/][^>]*>")
_LIST_LITERAL = re.compile(r"^\[.*\]$|^\{.*\}$", re.S)  # "['Computer vision', 'Theory']": a list written out
_DATE_CHARS = re.compile(r"^[0-9][0-9 :/\-.TZ+]*$|^[A-Za-z]{3,9}\.? [0-9]{1,2},? [0-9]{4}")


@dataclass(frozen=True)
class ColumnProfile:
    """What one column holds; ``text_score`` ranks text columns (distinct share x log words, less for markup)."""

    name: str
    kind: str
    n_unique: int
    distinct_share: float
    mean_words: float = 0.0
    text_score: float = 0.0


def _sample(values: pd.Series) -> pd.Series:
    values = values.dropna()
    if len(values) > SAMPLE:
        values = values.sample(SAMPLE, random_state=0)
    return values


def _n_unique(values: pd.Series) -> int:
    try:
        return int(values.nunique(dropna=True))
    except TypeError:  # unhashable cells (lists, dicts)
        return int(values.dropna().astype(str).nunique())


def name_words(name) -> list[str]:
    """A column name's words in lower case: "paper_id" -> paper, id; "TopicId" -> topic, id."""
    return [w.lower() for w in re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+", str(name))]


def names_an_id(name) -> bool:
    """Whether a column's name says it holds identifiers ("id", "paper_id", "arxiv_id_full", "PID", "uuid"),
    or is a saved row index ("Unnamed: 0"): numbers there are not a quantity to explain or correlate with."""
    words = name_words(name)
    return bool(set(words) & {"id", "ids", "pid", "uid", "uuid", "guid"}) or bool(
        re.fullmatch(r"Unnamed: \d+(?:\.\d+)?", str(name))
    )


def _numbers_kind(name, n_unique: int) -> str:
    """Numbers are ids where the column's name says so and they take more values than codes would."""
    return "id" if names_an_id(name) and n_unique > MAX_SPLIT_VALUES else "numeric"


def profile_column(series: pd.Series, name=None) -> ColumnProfile:
    """Profile one column (see the module docstring for the kinds)."""
    name = series.name if name is None else name
    present = series.dropna()
    if len(present) == 0:
        return ColumnProfile(name, "other", 0, 0.0)
    if isinstance(present.iloc[0], (list, tuple, dict, set, np.ndarray)):  # vectors, nested records
        return ColumnProfile(name, "other", 0, 0.0)
    n_unique = _n_unique(present)
    share = n_unique / len(present)
    if pd.api.types.is_bool_dtype(present):
        return ColumnProfile(name, "category", n_unique, share)
    if pd.api.types.is_datetime64_any_dtype(present):
        return ColumnProfile(name, "date", n_unique, share)
    if pd.api.types.is_numeric_dtype(present):
        return ColumnProfile(name, _numbers_kind(name, n_unique), n_unique, share)
    sample = _sample(present)
    is_str = sample.map(lambda v: isinstance(v, str))
    if is_str.mean() < 0.95:
        bools = sample.map(lambda v: isinstance(v, (bool, np.bool_)))
        nums = sample.map(lambda v: isinstance(v, (int, float, np.number)) and not isinstance(v, bool))
        if bools.all():
            return ColumnProfile(name, "category", n_unique, share)
        if nums.all():
            return ColumnProfile(name, "numeric", n_unique, share)
        kind = "category" if (is_str | bools | nums).all() and n_unique <= MAX_CATEGORIES else "other"
        return ColumnProfile(name, kind, n_unique, share)
    return _profile_strings(name, sample[is_str].str.strip(), n_unique, share)


def _profile_strings(name, strings: pd.Series, n_unique: int, share: float) -> ColumnProfile:
    strings = strings[strings.str.len() > 0]
    if len(strings) == 0:
        return ColumnProfile(name, "other", n_unique, share)
    if pd.to_numeric(strings, errors="coerce").notna().mean() >= 0.95:  # "1901.00064": an arXiv id, if named so
        return ColumnProfile(name, _numbers_kind(name, n_unique), n_unique, share)
    if strings.str.match(_LIST_LITERAL).mean() >= 0.95:  # lists or records saved as text: not prose, not labels
        return ColumnProfile(name, "other", n_unique, share)
    words = strings.str.split().str.len()
    mean_words = float(words.mean())
    spaced = float((words > 1).mean())
    if _looks_like_dates(strings):
        return ColumnProfile(name, "date", n_unique, share, mean_words)
    few = n_unique <= MAX_CATEGORIES and (share <= 0.5 or n_unique <= 10)
    if few and mean_words < 6:
        return ColumnProfile(name, "category", n_unique, share, mean_words)
    if mean_words >= 3 and spaced >= 0.5:
        markup = float(strings.str.contains(_MARKUP).mean())
        score = share * math.log1p(mean_words) * (1.0 - 0.5 * markup)
        return ColumnProfile(name, "text", n_unique, share, mean_words, score)
    if few:
        return ColumnProfile(name, "category", n_unique, share, mean_words)
    return ColumnProfile(name, "id", n_unique, share, mean_words)


def _looks_like_dates(strings: pd.Series) -> bool:
    head = strings.head(200)
    if head.str.len().max() > 40 or not head.str.match(_DATE_CHARS).mean() >= 0.9:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "could not infer format" chatter
        parsed = pd.to_datetime(head, errors="coerce", format="mixed")
    return bool(parsed.notna().mean() >= 0.9)


def profile_columns(frame: pd.DataFrame) -> dict:
    """{column: ColumnProfile} for every column of ``frame``."""
    return {col: profile_column(frame[col], col) for col in frame.columns}


def column_kinds(frame: pd.DataFrame) -> dict:
    """{column: kind} for every column of ``frame``."""
    return {col: p.kind for col, p in profile_columns(frame).items()}


def text_columns(frame: pd.DataFrame) -> list:
    """Columns holding prose, best first (a common text name first, then more distinct and longer texts)."""
    profiles = [p for p in profile_columns(frame).values() if p.kind == "text"]
    return [p.name for p in sorted(profiles, key=lambda p: -_text_rank(p))]


def _text_rank(p: ColumnProfile) -> float:
    return p.text_score * (1.5 if str(p.name).lower() in TEXT_NAMES else 1.0)


def guess_text_column(frame: pd.DataFrame):
    """The column most likely to hold the documents, or None when no column holds prose."""
    found = text_columns(frame)
    return found[0] if found else None


def target_columns(frame: pd.DataFrame, text_col: str) -> list[str]:
    """Columns usable as a target: numeric with 2+ values, or categories with 2..50 values (no text, ids, dates)."""
    return _targets(profile_columns(frame), text_col)


def guess_target_column(frame: pd.DataFrame, text_col: str):
    """The target a user most likely means: the first usable target column with a common target name
    (stars, rating, label, stance, ctr, ...), else the first usable one; None when there is none."""
    return _likely_target(_targets(profile_columns(frame), text_col))


@dataclass
class ColumnRoles:
    """What each column of a table can be in a hypothesis run, from one profile of the table."""

    targets: list  # usable targets (target_columns)
    split_options: dict  # {target: columns that can define the holdout by value} (split_columns)
    group_options: dict  # {target: columns that group rows onto one side} (group_columns)
    likely_target: object  # guess_target_column's choice, or None
    control_options: dict = field(default_factory=dict)  # {target: columns it can be adjusted for}


def column_roles(frame: pd.DataFrame, text_col: str) -> ColumnRoles:
    """Targets, split and group options for every target, and the likely target, profiling each column once
    (the separate functions each profile the whole table: on the 22,666 Upworthy rows with 8 targets, 2.2 s
    against 0.15 s)."""
    profiles = profile_columns(frame)
    targets = _targets(profiles, text_col)
    return ColumnRoles(
        targets=targets,
        split_options={t: _splits(profiles, text_col, t) for t in targets},
        group_options={t: _groups(profiles, len(frame), text_col, t) for t in targets},
        likely_target=_likely_target(targets),
        control_options={t: _controls(profiles, len(frame), text_col, t) for t in targets},
    )


def _targets(profiles: dict, text_col: str) -> list:
    out = []
    for col, p in profiles.items():
        if col == text_col or p.n_unique < 2:
            continue
        if p.kind == "numeric" or (p.kind == "category" and p.n_unique <= MAX_CATEGORIES):
            out.append(col)
    return out


def _likely_target(targets: list):
    named = [c for c in targets if str(c).strip().lower() in TARGET_NAMES]
    return (named or targets or [None])[0]


def is_categorical(series: pd.Series) -> bool:
    """True when the column holds labels (including booleans), not numbers or free text."""
    return profile_column(series).kind == "category"


def split_columns(frame: pd.DataFrame, text_col: str, target: str) -> list[str]:
    """Columns that can define the holdout by value (2..10 distinct values, not the text or the target)."""
    return _splits(profile_columns(frame), text_col, target)


def group_columns(frame: pd.DataFrame, text_col: str, target: str) -> list[str]:
    """Columns whose values group rows that must stay on one side of the split (ids and categories that repeat),
    most plausible first: ids, then categories, coarser groupings (fewer, larger groups) first."""
    return _groups(profile_columns(frame), len(frame), text_col, target)


def _splits(profiles: dict, text_col: str, target: str) -> list:
    return [c for c, p in profiles.items() if c not in (text_col, target) and 2 <= p.n_unique <= MAX_SPLIT_VALUES]


def control_columns(frame: pd.DataFrame, text_col: str, target: str) -> list[str]:
    """Columns a column can be adjusted for (:mod:`controls`); see :func:`_controls`."""
    return _controls(profile_columns(frame), len(frame), text_col, target)


def _controls(profiles: dict, n_rows: int, text_col: str, target: str) -> list:
    """Columns a target can be adjusted for (:mod:`controls`): numbers, dates, categories, and ids that
    repeat (compared within); not the text, the target, a column of one value or an id on every row."""
    out = []
    for col, p in profiles.items():
        if col in (text_col, target) or p.kind not in ("numeric", "date", "category", "id") or p.n_unique < 2:
            continue
        if p.kind == "id" and p.n_unique >= n_rows:
            continue
        out.append(col)
    return out


def _groups(profiles: dict, n_rows: int, text_col: str, target: str) -> list:
    out = []
    n = max(n_rows, 1)
    for col, p in profiles.items():
        if col in (text_col, target) or p.kind not in ("id", "category", "date"):
            continue
        if p.n_unique < 3 or p.n_unique >= n:  # every row its own group is no grouping
            continue
        out.append((0 if p.kind == "id" else 1, p.n_unique, col))
    return [col for _, _, col in sorted(out, key=lambda t: (t[0], t[1]))]
