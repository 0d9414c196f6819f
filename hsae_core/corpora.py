"""Corpora that come with their embeddings: a table column of vectors, or a dataset on the Hugging Face Hub.

Pretrained SAEs over OpenAI embeddings are only usable if the texts' embeddings from that same model
are at hand; these loaders read them from where they are stored instead of recomputing them.
No ``datasets`` package: files are fetched with ``huggingface_hub`` and read with pandas.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from .data import read_table
from .errors import DataError, HsaeError
from .progress import ProgressFn, report

TEXT_COLUMN_GUESSES = ("abstract", "text", "abstracts", "content", "body", "document", "title")
EMBEDDING_COLUMN_GUESSES = (
    "embedding",
    "embeddings",
    "embed",
    "abstract_embedding",
    "abstract_embeddings",
    "vector",
    "emb",
)
DATA_FILE_PATTERNS = (
    "*.parquet",
    "*.jsonl",
    "*.csv",
    "*.tsv",
    "*.json",
    "**/*.parquet",
    "**/*.jsonl",
    "**/*.csv",
    "**/*.tsv",
    "**/*.json",
)


def embeddings_from_column(df: pd.DataFrame, col: str) -> np.ndarray:
    """The (N, d) float32 matrix stored in column ``col``: cells are lists, arrays or JSON strings of numbers.

    Raises one DataError naming the first bad row for missing, ragged or non-numeric cells.
    """
    if col not in df.columns:
        raise DataError(f"No embedding column '{col}' in the table; columns are: {', '.join(map(str, df.columns))}")
    cells = df[col].to_numpy(dtype=object)
    if len(cells) == 0:
        raise DataError(f"Embedding column '{col}' is empty (the table has no rows)")
    rows = [_cell_vector(cell, i, col) for i, cell in enumerate(cells)]
    width = rows[0].shape[0]
    for i, row in enumerate(rows):
        if row.shape[0] != width:
            raise DataError(
                f"Embedding column '{col}' is ragged: row 0 has {width} numbers but row {i} has "
                f"{row.shape[0]}; every row needs a vector of the same length"
            )
    X = np.stack(rows).astype(np.float32, copy=False)
    if width == 0:
        raise DataError(f"Embedding column '{col}' holds empty vectors")
    bad = ~np.isfinite(X).all(axis=1)
    if bad.any():
        raise DataError(f"Embedding column '{col}': row {int(np.argmax(bad))} contains NaN or infinite values")
    return X


def _cell_vector(cell, i: int, col: str) -> np.ndarray:
    value = cell
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise DataError(
                f"Embedding column '{col}', row {i}: the text is not a JSON list of numbers "
                f"(starts with {value[:30]!r})"
            ) from None
    if value is None or (isinstance(value, float) and np.isnan(value)):
        raise DataError(f"Embedding column '{col}', row {i} has no embedding; drop such rows or fill them in")
    try:
        vec = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(
            f"Embedding column '{col}', row {i} is not a list of numbers "
            f"(got {type(value).__name__}); store one vector per row"
        ) from None
    if vec.ndim != 1:
        raise DataError(f"Embedding column '{col}', row {i} is not a flat vector (shape {vec.shape})")
    return vec


def guess_column(df: pd.DataFrame, guesses: tuple[str, ...]) -> Optional[str]:
    """The first column whose lower-cased name is in ``guesses`` (in order of preference), or None."""
    lower = {str(c).lower(): c for c in df.columns}
    for name in guesses:
        if name in lower:
            return lower[name]
    return None


def load_hub_corpus(
    repo_id: str,
    filename: Optional[str] = None,
    revision: Optional[str] = None,
    text_col: Optional[str] = None,
    embedding_col: Optional[str] = None,
    cache_dir: Optional[str] = None,
    max_rows: Optional[int] = None,
) -> tuple[pd.DataFrame, Optional[np.ndarray]]:
    """Read a Hub dataset (parquet/jsonl/csv files) into a table plus its stored embeddings, if it has any.

    With ``filename`` only that file is fetched; otherwise every data file of the dataset snapshot is read
    and concatenated in name order. The text column is ``text_col`` or a guess (``abstract``, ``text``, ...);
    the embedding column is ``embedding_col`` or a guess (``embedding``, ``embed``, ...). The returned frame
    has the text column first; the embedding column is removed from it (returned as the matrix).
    """
    from .hub import _download, _offline, hub_cache_dir

    if filename:
        files = [_download(repo_id, filename, revision, cache_dir, repo_type="dataset")]
    else:
        files = _snapshot_files(repo_id, revision, hub_cache_dir(cache_dir), _offline())
    frames, left = [], max_rows
    for path in files:
        frames.append(read_table_rows(path, left))
        left = None if max_rows is None else max_rows - sum(len(f) for f in frames)
        if left is not None and left <= 0:
            break
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if max_rows is not None:
        df = df.iloc[:max_rows].reset_index(drop=True)
    text = text_col or guess_column(df, TEXT_COLUMN_GUESSES)
    if text is None or text not in df.columns:
        raise DataError(
            f"{repo_id}: no text column {'named ' + repr(text_col) if text_col else 'found'}; "
            f"pass text_col (columns: {', '.join(map(str, df.columns))})"
        )
    emb_name = embedding_col or guess_column(df, EMBEDDING_COLUMN_GUESSES)
    if embedding_col and embedding_col not in df.columns:
        raise DataError(
            f"{repo_id}: no embedding column '{embedding_col}' (columns: {', '.join(map(str, df.columns))})"
        )
    X = embeddings_from_column(df, emb_name) if emb_name else None
    rest = [c for c in df.columns if c not in (text, emb_name)]
    return df[[text, *rest]].reset_index(drop=True), X


def _snapshot_files(repo_id: str, revision: Optional[str], cache_dir: Optional[str], offline: bool) -> list[Path]:
    from huggingface_hub import errors as hf_errors
    from huggingface_hub import snapshot_download

    where = f"dataset {repo_id}" + (f"@{revision}" if revision else "")
    try:
        folder = Path(
            snapshot_download(
                repo_id,
                repo_type="dataset",
                revision=revision,
                cache_dir=cache_dir,
                local_files_only=offline,
                allow_patterns=list(DATA_FILE_PATTERNS),
            )
        )
    except hf_errors.LocalEntryNotFoundError:
        raise DataError(
            f"{where} is not in the local Hugging Face cache ({cache_dir or 'default'}) and downloads "
            f"are off (HF_HUB_OFFLINE) or the Hub is unreachable"
        ) from None
    except hf_errors.RepositoryNotFoundError:
        raise DataError(f"{where}: no such dataset on the Hub (or it is private: set HF_TOKEN)") from None
    except hf_errors.RevisionNotFoundError:
        raise DataError(f"{where}: that revision does not exist") from None
    except (hf_errors.HfHubHTTPError, OSError, ValueError) as exc:
        raise DataError(
            f"Could not download {where}: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc}"
        ) from None
    found = [p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")]
    # One format only, the most table-like present: a dataset's stray .json metadata is not data.
    for suffixes in ((".parquet", ".pq"), (".jsonl", ".ndjson"), (".csv",), (".tsv",), (".json",)):
        files = sorted(p for p in found if p.suffix.lower() in suffixes)
        if files:
            return files
    raise DataError(f"{where} holds no parquet/jsonl/csv/json data files")


# ------------------------------------------------------------------------------- large tables, read in chunks
BATCH_ROWS = 65_536


def read_table_rows(
    path: str | Path, max_rows: Optional[int] = None, columns: Optional[list[str]] = None
) -> pd.DataFrame:
    """A table's first ``max_rows`` rows (all when None). Parquet is read batch by batch, so a row limit
    on a large file reads only what it keeps; other formats are read whole and then cut."""
    path = Path(path)
    if path.suffix.lower() not in (".parquet", ".pq"):
        df = read_table(path)
        return df if max_rows is None else df.iloc[:max_rows].reset_index(drop=True)
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        if max_rows is None:
            return pf.read(columns=columns).to_pandas()
        batches, have = [], 0
        for batch in pf.iter_batches(batch_size=min(BATCH_ROWS, max(max_rows, 1)), columns=columns):
            batches.append(batch.slice(0, max_rows - have))
            have += len(batches[-1])
            if have >= max_rows:
                break
        schema = pf.schema_arrow if columns is None else pa.schema([pf.schema_arrow.field(c) for c in columns])
        return pa.Table.from_batches(batches, schema=schema).to_pandas()
    except (OSError, ValueError, KeyError, pa.ArrowException) as exc:
        raise DataError(f"Could not read {path.name} as PARQUET: {str(exc).strip().splitlines()[0]}") from None


def parquet_embeddings(
    path: str | Path, col: str, max_rows: Optional[int] = None, progress: Optional[ProgressFn] = None
) -> tuple[pd.DataFrame, np.ndarray]:
    """(the table without ``col``, its (N, d) float32 embeddings) from a Parquet file, the vector column
    read one batch at a time into a preallocated matrix (no Python list per row)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    path = Path(path)
    try:
        pf = pq.ParquetFile(path)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise DataError(f"Could not read {path.name} as PARQUET: {str(exc).strip().splitlines()[0]}") from None
    names = pf.schema_arrow.names
    if col not in names:
        raise DataError(f"No embedding column '{col}' in the table; columns are: {', '.join(names)}")
    kind = pf.schema_arrow.field(col).type
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)):
        frame = read_table_rows(path, max_rows)  # JSON strings or other cells: the general (slower) reader
        return frame.drop(columns=[col]), embeddings_from_column(frame, col)
    n = pf.metadata.num_rows if max_rows is None else min(max_rows, pf.metadata.num_rows)
    X, done = None, 0
    for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=[col]):
        cells = batch.column(0).slice(0, n - done)
        if cells.null_count:
            bad = done + int(np.flatnonzero(cells.is_null().to_numpy(zero_copy_only=False))[0])
            raise DataError(f"Embedding column '{col}', row {bad} has no embedding; drop such rows or fill them in")
        lengths = pc.list_value_length(cells).to_numpy(zero_copy_only=False)
        if X is None:
            if len(lengths) == 0 or lengths[0] == 0:
                raise DataError(f"Embedding column '{col}' holds empty vectors")
            X = np.empty((n, int(lengths[0])), dtype=np.float32)
        if (lengths != X.shape[1]).any():
            bad = done + int(np.flatnonzero(lengths != X.shape[1])[0])
            raise DataError(
                f"Embedding column '{col}' is ragged: row 0 has {X.shape[1]} numbers but row {bad} has "
                f"{int(lengths[bad - done])}; every row needs a vector of the same length"
            )
        try:
            values = cells.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
        except (pa.ArrowException, TypeError, ValueError):
            raise DataError(f"Embedding column '{col}' is not a list of numbers in every row") from None
        block = values.reshape(len(cells), X.shape[1])
        if not np.isfinite(block).all():
            bad = done + int(np.argmax(~np.isfinite(block).all(axis=1)))
            raise DataError(f"Embedding column '{col}': row {bad} contains NaN or infinite values")
        X[done : done + len(cells)] = block
        done += len(cells)
        report(progress, done, n, "reading embeddings")
        if done >= n:
            break
    if X is None:
        raise DataError(f"Embedding column '{col}' is empty (the table has no rows)")
    frame = read_table_rows(path, n, columns=[c for c in names if c != col])
    return frame, X


# ------------------------------------------------------------------------------- published corpora
@dataclass(frozen=True)
class PublishedCorpus:
    """Where a published SAE's training corpus lives: its texts (a Hub dataset) and their stored embeddings
    (an ``.npy`` matrix in a vector-store repo, rows in dataset order, read with ``allow_pickle=False``; the
    pickled document lists beside it are never opened)."""

    name: str
    dataset: str
    columns: tuple[str, ...]
    embeddings_repo: str
    embeddings_file: str
    embedding_model: str
    description: str

    @staticmethod
    def text(frame: pd.DataFrame) -> pd.Series:
        r"""The SAE's input text: ``title + "\n\n" + abstract`` (as the authors embedded it)."""
        return frame["title"].fillna("").astype(str) + "\n\n" + frame["abstract"].fillna("").astype(str)


PUBLISHED_CORPORA = {
    "csLG": PublishedCorpus(
        name="csLG",
        dataset="charlieoneill/csLG",
        columns=("id", "title", "abstract"),
        embeddings_repo="JSALT2024-Astro-LLMs/cs-embeddings",
        embeddings_file="embeddings_matrix.npy",
        embedding_model="openai/text-embedding-3-small",
        description="arXiv cs.LG papers (title + abstract) with their text-embedding-3-small vectors",
    ),
}
TEXT_COLUMN = "text"


def published_corpus(name: str) -> PublishedCorpus:
    """The published corpus called ``name`` (e.g. ``csLG``), or a DataError listing the known ones."""
    for key, corpus in PUBLISHED_CORPORA.items():
        if key.lower() == str(name).lower():
            return corpus
    raise DataError(f"Unknown published corpus '{name}'; known: {', '.join(PUBLISHED_CORPORA)}")


def corpus_for_sae(entry: Optional[dict]) -> Optional[PublishedCorpus]:
    """The published corpus a registry entry's SAE was trained on, if we know where it lives."""
    if not entry:
        return None
    dataset = (entry.get("corpus") or {}).get("hub_dataset")
    return next((c for c in PUBLISHED_CORPORA.values() if c.dataset == dataset or c.name == entry.get("domain")), None)


def load_published_corpus(
    name: str,
    max_rows: Optional[int] = None,
    embeddings_path: Optional[str | Path] = None,
    revision: Optional[str] = None,
    cache_dir: Optional[str] = None,
    progress: Optional[ProgressFn] = None,
) -> tuple[pd.DataFrame, np.ndarray]:
    """(table with ``text`` first, then id/title/abstract; the (N, d) embeddings, memory-mapped) of a
    published corpus, the first ``max_rows`` rows (all when None).

    The texts come from the Hub dataset, read in batches; the embeddings from ``embeddings_path`` (a local
    copy of the vector store's ``.npy``) or the vector-store repo on the Hub. Row i of the matrix is row i
    of the dataset; a row-count mismatch is an error, never a silent misalignment.
    """
    corpus = published_corpus(name)
    report(progress, 0, 3, f"reading {corpus.dataset}")
    from .hub import _offline, hub_cache_dir

    files = _snapshot_files(corpus.dataset, revision, hub_cache_dir(cache_dir), _offline())
    frames, left = [], max_rows
    for path in files:
        if path.suffix.lower() not in (".parquet", ".pq"):
            raise DataError(f"{corpus.dataset}: expected Parquet data files, found {path.name}")
        frames.append(_published_columns(read_table_rows(path, left), corpus, path))
        left = None if max_rows is None else max_rows - sum(len(f) for f in frames)
        if left is not None and left <= 0:
            break
    table = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    report(progress, 1, 3, f"{len(table):,} texts read; opening the stored embeddings")
    X = _published_embeddings(corpus, embeddings_path, revision, cache_dir)
    n_total = sum(_parquet_rows(p) for p in files)
    if len(X) != n_total:
        raise DataError(
            f"The stored embeddings have {len(X):,} rows but {corpus.dataset} has {n_total:,}; "
            "they must be the same documents in the same order"
        )
    table.insert(0, TEXT_COLUMN, corpus.text(table))
    report(progress, 3, 3, "corpus ready")
    return table, X[: len(table)]


def _published_columns(frame: pd.DataFrame, corpus: PublishedCorpus, path: Path) -> pd.DataFrame:
    missing = [c for c in corpus.columns if c not in frame.columns]
    if missing:
        raise DataError(
            f"{corpus.dataset}/{path.name} lacks column(s) {', '.join(missing)} "
            f"(has: {', '.join(map(str, frame.columns))})"
        )
    return frame[list(corpus.columns)]


def _parquet_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


def _published_embeddings(corpus: PublishedCorpus, local: Optional[str | Path], revision, cache_dir) -> np.ndarray:
    from .chunked import load_embeddings

    if local is None:
        local = _download_vector_store(corpus, revision, cache_dir)
    X = load_embeddings(local)
    return X


def _download_vector_store(corpus: PublishedCorpus, revision, cache_dir) -> Path:
    """The vector store's ``.npy`` from the Hub (a dataset repo, or a model repo as a fallback)."""
    from .hub import _download

    errors = []
    for repo_type in ("dataset", "model"):
        try:
            return _download(corpus.embeddings_repo, corpus.embeddings_file, revision, cache_dir, repo_type=repo_type)
        except HsaeError as exc:
            errors.append(str(exc))
    raise DataError(f"{errors[0]}; or download {corpus.embeddings_file} yourself and pass its path (`embeddings_path`)")
