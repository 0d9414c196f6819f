"""Read a table, pick the text and target columns, and validate them.

Rows with an empty/NaN text or a NaN target are dropped and counted, never silently.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from .errors import DataError, first_line

TABLE_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".ndjson", ".parquet", ".pq")
TARGET_KINDS = ("binary", "continuous", "multiclass")
# A non-numeric column with more distinct values than this is not a usable class label.
MAX_CLASSES = 50
FEW_TARGET_VALUES = 10  # a numeric target with at most this many values may be classes coded as numbers
# Column names whose numbers are codes for classes, not a score: ICLR's Decision (-1 workshop, 0 reject,
# 1 oral, 2 poster), a news corpus's label or topic 0-3. Read one word at a time ("paper_decision", "TopicId").
CODE_NAME_WORDS = frozenset(
    {"decision", "label", "class", "category", "type", "topic", "outcome", "status", "verdict", "group", "kind"}
)


def read_table(path: str | Path) -> pd.DataFrame:
    """Read CSV, TSV, JSON (array or lines), JSONL or Parquet into a DataFrame."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"File not found: {path}")
    suffix = path.suffix.lower()
    if path.is_dir() and suffix != ".parquet":  # a folder of Parquet parts is one table; no other folder is
        raise DataError(f"{path} is a folder; give a table file ({', '.join(TABLE_SUFFIXES)})")
    if suffix not in TABLE_SUFFIXES:
        raise DataError(f"Unknown file type '{suffix or path.name}': use one of {', '.join(TABLE_SUFFIXES)}")
    try:
        if suffix in (".csv", ".tsv"):
            df = _read_delimited(path, "\t" if suffix == ".tsv" else None)
        elif suffix in (".jsonl", ".ndjson"):
            df = pd.read_json(path, lines=True)
        elif suffix == ".json":
            df = _read_json_any(path)
        else:
            df = pd.read_parquet(path)
    except DataError:
        raise
    except Exception as exc:  # pandas raises many types; the user needs one line
        reason = first_line(exc)
        for shown in {str(path.resolve()), str(path.absolute()), str(path)}:  # name the file as the user knows it
            reason = reason.replace(shown, path.name)
        raise DataError(f"Could not read {path.name} as {suffix[1:].upper()}: {reason}") from None
    if not isinstance(df, pd.DataFrame) or df.shape[1] == 0:
        raise DataError(f"{path.name} holds no table (no columns found)")
    return df


def _read_delimited(path: Path, sep: Optional[str]) -> pd.DataFrame:
    """A CSV (``sep`` None: commas, or the semicolons or tabs its header uses, as spreadsheets in many locales
    write them) or TSV, in UTF-8 or, with a byte-order mark, UTF-16. Other encodings are refused by name."""
    with open(path, "rb") as fh:
        head = fh.read(65536)
    encoding = "utf-16" if head[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
    if sep is None:
        header = head.decode(encoding, errors="ignore").lstrip("\ufeff").split("\n", 1)[0]
        sep = next((c for c in (",", ";", "\t") if c in header), ",")
    try:
        df = pd.read_csv(path, sep=sep, encoding=encoding)
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path.name} is not UTF-8 text (it holds the byte 0x{exc.object[exc.start]:02x}, e.g. an accent in "
            "Latin-1 or Windows-1252): save it as UTF-8 (a spreadsheet's 'CSV UTF-8') and read it again"
        ) from None
    # A first row of data read as the header: a sentence beside numbers (a review and its stars), where a
    # survey's long question headers stand beside other words
    wordy = next((str(c) for c in df.columns if len(str(c).split()) > 12), None)
    if wordy is not None and any(_is_number(c) for c in df.columns):
        raise DataError(
            f"{path.name} seems to have no header row: its first row became the column names ('{wordy[:60]}…'); "
            "add a first row that names the columns"
        )
    return df


def _is_number(name) -> bool:
    try:
        float(str(name))
    except ValueError:
        return False
    return True


def _read_json_any(path: Path) -> pd.DataFrame:
    """A .json file may be one array/object or JSON Lines; try both."""
    try:
        return pd.read_json(path)
    except ValueError:
        return pd.read_json(path, lines=True)


@dataclass
class Corpus:
    """Validated texts (and optionally a target) ready for the pipeline.

    ``row_ids`` are positions in the table that was read, so results can be joined back.
    """

    texts: list[str]
    frame: pd.DataFrame
    row_ids: np.ndarray
    text_col: str
    target_col: Optional[str] = None
    y: Optional[np.ndarray] = None
    target_kind: Optional[str] = None
    classes: Optional[list] = None
    counts: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, positions: np.ndarray, counts: Optional[dict] = None) -> Corpus:
        """The corpus restricted to the given positions (e.g. a train or holdout split).

        ``counts`` replaces the row counts when the part came from a table of its own (see :func:`part_counts`).
        """
        positions = np.asarray(positions)
        return Corpus(
            texts=[self.texts[i] for i in positions],
            frame=self.frame.iloc[positions].reset_index(drop=True),
            row_ids=self.row_ids[positions],
            text_col=self.text_col,
            target_col=self.target_col,
            y=None if self.y is None else self.y[positions],
            target_kind=self.target_kind,
            classes=self.classes,
            counts=dict(counts or self.counts, kept=len(positions)),
        )


def require_columns(df: pd.DataFrame, *columns: Optional[str]) -> None:
    """Raise a DataError naming the missing column and the ones that exist."""
    for col in columns:
        if col is not None and col not in df.columns:
            shown = ", ".join(map(str, list(df.columns)[:20]))
            raise DataError(f"Column '{col}' not found; the table has: {shown}")
        copies = int((df.columns == col).sum()) if col is not None else 1
        if copies > 1:
            raise DataError(f"Column '{col}' appears {copies} times in the table: rename or drop the copies")


def prepare_corpus(
    df: pd.DataFrame,
    text_col: str,
    target_col: Optional[str] = None,
    target_kind: str = "auto",
    min_rows: int = 1,
) -> Corpus:
    """Validate the text (and target) columns and drop unusable rows, counting them."""
    require_columns(df, text_col, target_col)
    n_read = len(df)
    text = df[text_col]
    is_text = text.map(lambda v: isinstance(v, str))
    if n_read and not is_text.any():
        raise DataError(f"Column '{text_col}' holds no text (found {text.dtype} values); pick the text column")
    stripped, n_markup = without_markup(text.where(is_text, "").astype(str).str.strip())
    empty, missing = _unusable_rows(stripped, df, target_col)
    counts = {"read": int(n_read), "dropped_empty_text": int(empty.sum())}
    if n_markup:
        counts["markup_removed"] = n_markup
    keep = ~empty
    y = kind = classes = None
    if target_col is not None:
        raw_target = df[target_col]
        counts["dropped_missing_target"] = int((missing & keep).sum())
        keep &= ~missing
        if keep.sum() == 0:
            raise DataError(f"No rows left: every row has an empty text or a missing '{target_col}'")
        y, kind, classes = encode_target(raw_target[keep], target_col, target_kind)
    positions = np.flatnonzero(keep)
    counts["kept"] = int(len(positions))
    if len(positions) < min_rows:
        raise DataError(
            f"Only {len(positions)} usable rows (after dropping {n_read - len(positions)}); need at least {min_rows}"
        )
    frame = df.iloc[positions].reset_index(drop=True)
    if n_markup:  # the pages and the labels show the texts that were embedded, not their tags
        frame[text_col] = stripped.iloc[positions].to_numpy()
    return Corpus(
        texts=stripped.iloc[positions].tolist(),
        frame=frame,
        row_ids=positions,
        text_col=text_col,
        target_col=target_col,
        y=y,
        target_kind=kind,
        classes=classes,
        counts=counts,
    )


TARGET_VALUES = (pd.Series, pd.DataFrame, np.ndarray, list)  # a target given as values rather than a column name


def one_column(values, what: str = "The target") -> np.ndarray:
    """``values`` as a 1-D array: a one-column table or an (N, 1) array is read as its column; anything
    wider (an (N, 2) array, a table of two columns) is refused in one line naming its shape."""
    if isinstance(values, pd.DataFrame):
        if values.shape[1] != 1:
            shown = ", ".join(repr(c) for c in list(values.columns)[:4])
            raise DataError(
                f"{what} is one column; got a table of {values.shape[1]} columns ({shown}): pass one of them, "
                f"e.g. df[{values.columns[0]!r}]"
            )
        values = values.iloc[:, 0]
    arr = np.asarray(values)
    if arr.ndim == 2 and arr.shape[1] == 1:
        return arr[:, 0]
    if arr.ndim != 1:
        raise DataError(
            f"{what} is one column of values, one per row; got an array of shape {arr.shape}: pass one column, "
            "e.g. y[:, 0]"
        )
    return arr


def target_in_table(frame: pd.DataFrame, target, text_col: str) -> tuple[pd.DataFrame, object]:
    """(table, target column name) for a target named by its column, or given as values, which are then added
    to a copy of the table. A Series (or one-column DataFrame) is matched to the table's rows as pandas matches
    them, by index label; one with the default index 0..N-1 whose labels are not the table's is read by
    position, as are an array and a list. A Series that fits neither way is refused in one line."""
    if not isinstance(target, TARGET_VALUES):
        return frame, target
    if isinstance(target, pd.DataFrame):
        one_column(target)  # refuses a wider table
        target = target.iloc[:, 0]
    if isinstance(target, pd.Series):
        values, name = _matched_to_rows(target, frame.index), target.name
    else:
        values, name = pd.Series(one_column(target)), None
        _check_one_per_row(len(values), len(frame))
    name = _target_name(name, frame, text_col)
    return frame.assign(**{name: values.array}), name  # .array: by position, with its dtype


def _matched_to_rows(target: pd.Series, rows: pd.Index) -> pd.Series:
    """The Series's values in the order of the table's row labels ``rows``."""
    labels = target.index
    if labels.equals(rows):
        return target
    if labels.is_unique and rows.is_unique and len(labels) == len(rows) and labels.isin(rows).all():
        return target.reindex(rows)  # the same labels in another order (a shuffled or sorted copy)
    if len(target) == len(rows) and labels.equals(pd.RangeIndex(len(target))):  # a default index: read by position
        return target.set_axis(rows)
    repeated = labels[labels.duplicated()] if not labels.is_unique else rows[rows.duplicated()]
    if len(repeated):
        whose = "target's" if not labels.is_unique else "table's"
        raise DataError(
            f"The {whose} index repeats labels (e.g. {_shown(repeated[0])}), so the target cannot be matched to the "
            "table's rows by label: give its values in the table's order (target.to_numpy())"
        )
    foreign, lacking = labels[~labels.isin(rows)], rows[~rows.isin(labels)]
    raise DataError(
        f"The target's index does not match the table's ({len(labels):,} values for {len(rows):,} rows): "
        f"{len(foreign):,} of its labels are not rows of the table"
        + (f" (e.g. {_shown(foreign[0])})" if len(foreign) else "")
        + f" and {len(lacking):,} rows of the table have no value"
        + (f" (e.g. {_shown(lacking[0])})" if len(lacking) else "")
        + "; give a Series indexed like the table (target.reindex(table.index) leaves the rows it lacks without a "
        "target: they are dropped and counted), or its values in the table's order (target.to_numpy())"
    )


def _shown(label) -> str:
    """An index label as the user wrote it: 7, not np.int64(7)."""
    return repr(label.item() if isinstance(label, np.generic) else label)


def _check_one_per_row(n_values: int, n_rows: int) -> None:
    if n_values != n_rows:
        raise DataError(
            f"The target has {n_values:,} values and the table {n_rows:,} rows: give one value per row, in the "
            "table's order (or a Series indexed like the table)"
        )


def _target_name(name, frame: pd.DataFrame, text_col: str) -> str:
    """The column a target given as values goes into: its own name (a Series of the table replaces that
    column), or ``target`` (``target_2``, ... beside columns of that name) when it has none or the text's."""
    if isinstance(name, str) and name and name != text_col:
        return name
    name, n = "target", 1
    while name in frame.columns:
        n += 1
        name = f"target_{n}"
    return name


# Tags of the HTML that web exports wrap their texts in (Upworthy's ledes: '<p>When I saw ...</p>'), and those of
# them that end a line. Named tags only: a formula's 'p<0.05' or 'a <b> c' in prose is no tag.
_HTML_TAG = re.compile(
    r"<\s*/?\s*(?:p|br|div|span|a|em|strong|b|i|u|s|ul|ol|li|h[1-6]|blockquote|img|hr|sup|sub|small|font|"
    r"table|thead|tbody|tr|td|th)\b[^<>]*>",
    re.IGNORECASE,
)
_LINE_TAG = re.compile(r"<\s*/?\s*(?:p|br|div|ul|ol|li|h[1-6]|blockquote|hr|table|tr)\b[^<>]*>", re.IGNORECASE)
MARKUP_SHARE = 0.5  # the share of non-empty texts holding a tag that makes a column HTML


def without_markup(texts: pd.Series) -> tuple[pd.Series, int]:
    """(texts, how many changed): a column of HTML fragments (at least ``MARKUP_SHARE`` of its non-empty texts
    hold a tag) with its tags and entities replaced by what a browser shows, paragraphs and line breaks as new
    lines; any other column as it is. Embedded with their tags, the texts' labels and search results read
    '<p>' and '&amp;'."""
    has_tag = texts.str.contains(_HTML_TAG)
    non_empty = texts.str.len() > 0
    if not non_empty.any() or has_tag[non_empty].mean() < MARKUP_SHARE:
        return texts, 0
    shown = texts.str.replace(_LINE_TAG, "\n", regex=True).str.replace(_HTML_TAG, "", regex=True).map(html.unescape)
    # runs of spaces, tabs and no-break spaces read as one space; a lone space is not replaced by itself (2.8 s
    # -> 1.6 s on 100k 600-character texts: the whole function takes about 3 s there, beside embedding them)
    shown = shown.str.replace(r"[ \t\u00a0]{2,}|[\t\u00a0]", " ", regex=True)
    shown = shown.str.replace(r" *\n\s*", "\n", regex=True).str.strip()
    return shown, int((shown != texts).sum())


def markup_line(counts: dict) -> str | None:
    """What was done to HTML texts, for the people reading a build's or a run's row counts; None when nothing."""
    n = int(counts.get("markup_removed", 0) or 0)
    return f"{n:,} texts were HTML: read without their tags and entities, as a browser shows them" if n else None


def _unusable_rows(
    stripped_text: pd.Series, df: pd.DataFrame, target_col: Optional[str]
) -> tuple[np.ndarray, np.ndarray]:
    """(empty text, missing target) masks over the rows of ``df``."""
    empty = (stripped_text.str.len() == 0).to_numpy()
    missing = df[target_col].isna().to_numpy() if target_col is not None else np.zeros(len(df), dtype=bool)
    return empty, missing


def part_counts(df: pd.DataFrame, text_col: str, target_col: Optional[str], parts: list[slice]) -> list[dict]:
    """Row counts (read, dropped empty text, HTML texts read without their tags, dropped missing target) of each
    part of ``df``, e.g. of each input file; the texts are read once for all the parts."""
    text = df[text_col]
    as_read = text.where(text.map(lambda v: isinstance(v, str)), "").astype(str).str.strip()
    stripped, n_markup = without_markup(as_read)
    empty_all, missing_all = _unusable_rows(stripped, df, target_col)
    changed = (stripped != as_read).to_numpy() if n_markup else None
    out = []
    for rows in parts:
        empty, missing = empty_all[rows], missing_all[rows]
        counts = {"read": int(len(empty)), "dropped_empty_text": int(empty.sum())}
        if changed is not None:
            counts["markup_removed"] = int(changed[rows].sum())
        if target_col is not None:
            counts["dropped_missing_target"] = int((missing & ~empty).sum())
        out.append(counts)
    return out


def names_codes(name) -> bool:
    """Whether a column's name says that its few numbers are codes for classes ("Decision", "label",
    "topic_id"), so that ``auto`` reads them as classes rather than as a score."""
    from .columns import name_words

    return any(w in CODE_NAME_WORDS or w.rstrip("s") in CODE_NAME_WORDS for w in name_words(name))


def holds_codes(values: pd.Series) -> bool:
    """Whether a column of numbers is codes for classes: 3 to ``FEW_TARGET_VALUES`` numbers in a column whose
    name says so (:func:`names_codes`), so that it is compared one value at a time, never as a scale."""
    present = values.dropna()
    numbers = pd.to_numeric(present, errors="coerce")
    if not len(present) or numbers.isna().any() or pd.api.types.is_bool_dtype(present):
        return False
    return 2 < numbers.nunique() <= FEW_TARGET_VALUES and names_codes(values.name)


def encode_target(values: pd.Series, name: str, kind: str = "auto") -> tuple[np.ndarray, str, Optional[list]]:
    """Turn a target column into numbers and say which kind of target it is.

    binary: y in {0, 1} with ``classes`` = [negative, positive];
    continuous: float y;
    multiclass: y = integer class index into ``classes``.
    ``auto`` reads two values as binary, numbers as continuous (but up to ``FEW_TARGET_VALUES`` numbers in a
    column whose name says they are codes, :func:`names_codes`, as classes), and other values as classes.
    """
    if kind not in ("auto",) + TARGET_KINDS:
        raise DataError(f"Unknown target kind '{kind}'; use auto, {', '.join(TARGET_KINDS)}")
    values = values.reset_index(drop=True)
    _refuse_unhashable(values, name)
    uniques = pd.unique(values)
    if len(uniques) < 2:
        shown = uniques[0] if len(uniques) else "nothing"
        raise DataError(f"Target '{name}' has a single value ({shown}); it needs at least two")
    numeric = pd.to_numeric(values, errors="coerce")
    is_numeric = bool(numeric.notna().all()) and values.map(lambda v: not isinstance(v, bool)).all()
    if kind == "auto":
        _refuse_numbers_mixed_with_text(values, numeric, name)
        if len(uniques) == 2:
            kind = "binary"
        elif is_numeric and len(uniques) <= FEW_TARGET_VALUES and names_codes(name):
            kind = "multiclass"
        elif is_numeric:
            kind = "continuous"
        elif len(uniques) <= MAX_CLASSES:
            kind = "multiclass"
        else:
            raise DataError(_too_many_text_values(values, uniques, name))
    if kind == "continuous":
        if not is_numeric:
            bad = values[numeric.isna()].iloc[0]
            raise DataError(f"Target '{name}' is not numeric (e.g. {bad!r}); use `target_kind` multiclass for labels")
        y = numeric.to_numpy(dtype=np.float64)
        if not np.isfinite(y).all():
            raise DataError(f"Target '{name}' contains infinite values")
        return y, "continuous", None
    classes = ordered_values(uniques)
    if kind == "binary" and len(classes) != 2:
        raise DataError(f"Target '{name}' has {len(classes)} values; a binary target needs exactly 2")
    if len(classes) > MAX_CLASSES:
        raise DataError(f"Target '{name}' has {len(classes)} classes; at most {MAX_CLASSES} are supported")
    index = {c: i for i, c in enumerate(classes)}
    y = values.map(index).to_numpy(dtype=np.int64)
    return y, kind, classes


_NUMBER_MARKS = re.compile(r"[%$\u20ac\u00a3,\s]")  # percent, currency and thousands marks around a number


def _too_many_text_values(values: pd.Series, uniques, name: str) -> str:
    """Why a text target of too many values cannot be tested: numbers written with marks ("4.91%", "$1,200")
    are said as such, with what to strip; otherwise its values, shown, are too many to be classes."""
    shown = ", ".join(repr(v) for v in uniques[:3])
    stripped = pd.to_numeric(values.astype(str).str.replace(_NUMBER_MARKS, "", regex=True), errors="coerce")
    if stripped.notna().mean() >= 0.9:
        marks = sorted(set("".join(_NUMBER_MARKS.findall("".join(map(str, uniques[:1000]))))) - {" ", "\t"})
        what = " and ".join(repr(m) for m in marks) or "spaces"
        return f"Target '{name}' holds numbers written as text ({shown}): remove the {what} from its cells so they read as numbers"
    return (
        f"Target '{name}' is not numeric and has {len(uniques):,} distinct values ({shown}, …); give a numeric, "
        f"binary or categorical column (at most {MAX_CLASSES} classes)"
    )


def _refuse_unhashable(values: pd.Series, name: str) -> None:
    """A target whose cells hold lists, dicts or arrays (a JSON field of tags) has no classes or scale to test."""
    if values.dtype != object:  # numbers, text, categories: hashable by their type
        return
    for value in values:
        try:
            hash(value)
        except TypeError:
            raise DataError(
                f"Target '{name}' holds {type(value).__name__}s (e.g. {repr(value)[:40]}): the target must hold "
                "numbers or category names, one per row"
            ) from None


def _refuse_numbers_mixed_with_text(values: pd.Series, numeric: pd.Series, name: str) -> None:
    """A column of numbers with a few text cells ("?", "four", "n.a.") is a score with placeholders, not
    classes: reading it as classes would silently test "?" as a class of its own, so it is refused."""
    text = numeric.isna().to_numpy()
    if not text.any() or text.all() or numeric.nunique() < 3 or text.mean() >= 0.5:
        return
    shown = ", ".join(repr(v) for v in pd.unique(values[text])[:3])
    raise DataError(
        f"Target '{name}' holds numbers, but {int(text.sum()):,} of its rows hold text instead ({shown}): "
        "empty those cells (rows without a target are dropped and counted), or read every value as a class "
        "with `target_kind` multiclass"
    )


def ordered_values(values) -> list:
    """A target's distinct values in the order its classes take: numbers first, by value, then text. Of two
    values the later one is a yes/no target's 1 (0/1, False/True, accept/reject: reject)."""
    return sorted(pd.unique(pd.Series(values).dropna()).tolist(), key=_sort_key)


def _sort_key(value):
    # Numbers sort numerically and before strings, so 0/1 and False/True map to negative/positive.
    return (0, float(value), "") if isinstance(value, (int, float, np.number, bool)) else (1, 0.0, str(value))


def one_vs_rest(y: np.ndarray, class_index: int) -> np.ndarray:
    """Binary 0/1 target for one class of a multiclass target."""
    return (np.asarray(y) == class_index).astype(np.int64)


def split_indices(n: int, holdout_frac: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random train/holdout positions (sorted), reproducible with a seed."""
    if not 0.0 < holdout_frac < 1.0:
        raise DataError(f"`holdout_frac` must be between 0 and 1, got {holdout_frac}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    n_hold = int(round(n * holdout_frac))
    if n_hold < 1 or n_hold >= n:
        raise DataError(f"A holdout fraction of {holdout_frac} leaves no rows on one side of {n} rows")
    return np.sort(order[n_hold:]), np.sort(order[:n_hold])
