"""Corpora that come with their embeddings: a table column of vectors, or a dataset on the Hugging Face Hub.

Pretrained SAEs over OpenAI embeddings are only usable if the texts' embeddings from that same model
are at hand; these loaders read them from where they are stored instead of recomputing them.
No ``datasets`` package: files are fetched with ``huggingface_hub`` and read with pandas.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from .data import read_table
from .errors import DataError

TEXT_COLUMN_GUESSES = ("abstract", "text", "abstracts", "content", "body", "document", "title")
EMBEDDING_COLUMN_GUESSES = ("embedding", "embeddings", "embed", "abstract_embedding", "abstract_embeddings",
                            "vector", "emb")
DATA_FILE_PATTERNS = ("*.parquet", "*.jsonl", "*.csv", "*.tsv", "*.json", "**/*.parquet", "**/*.jsonl",
                      "**/*.csv", "**/*.tsv", "**/*.json")


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
            raise DataError(f"Embedding column '{col}' is ragged: row 0 has {width} numbers but row {i} has "
                            f"{row.shape[0]}; every row needs a vector of the same length")
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
            raise DataError(f"Embedding column '{col}', row {i}: the text is not a JSON list of numbers "
                            f"(starts with {value[:30]!r})") from None
    if value is None or (isinstance(value, float) and np.isnan(value)):
        raise DataError(f"Embedding column '{col}', row {i} has no embedding; drop such rows or fill them in")
    try:
        vec = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"Embedding column '{col}', row {i} is not a list of numbers "
                        f"(got {type(value).__name__}); store one vector per row") from None
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


def load_hub_corpus(repo_id: str, filename: Optional[str] = None, revision: Optional[str] = None,
                    text_col: Optional[str] = None, embedding_col: Optional[str] = None,
                    cache_dir: Optional[str] = None, max_rows: Optional[int] = None
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
    frames = []
    for path in files:
        frames.append(read_table(path))
        if max_rows is not None and sum(len(f) for f in frames) >= max_rows:
            break
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if max_rows is not None:
        df = df.iloc[:max_rows].reset_index(drop=True)
    text = text_col or guess_column(df, TEXT_COLUMN_GUESSES)
    if text is None or text not in df.columns:
        raise DataError(f"{repo_id}: no text column {'named ' + repr(text_col) if text_col else 'found'}; "
                        f"pass text_col (columns: {', '.join(map(str, df.columns))})")
    emb_name = embedding_col or guess_column(df, EMBEDDING_COLUMN_GUESSES)
    if embedding_col and embedding_col not in df.columns:
        raise DataError(f"{repo_id}: no embedding column '{embedding_col}' (columns: {', '.join(map(str, df.columns))})")
    X = embeddings_from_column(df, emb_name) if emb_name else None
    rest = [c for c in df.columns if c not in (text, emb_name)]
    return df[[text, *rest]].reset_index(drop=True), X


def _snapshot_files(repo_id: str, revision: Optional[str], cache_dir: Optional[str], offline: bool) -> list[Path]:
    from huggingface_hub import errors as hf_errors
    from huggingface_hub import snapshot_download

    where = f"dataset {repo_id}" + (f"@{revision}" if revision else "")
    try:
        folder = Path(snapshot_download(repo_id, repo_type="dataset", revision=revision, cache_dir=cache_dir,
                                        local_files_only=offline, allow_patterns=list(DATA_FILE_PATTERNS)))
    except hf_errors.LocalEntryNotFoundError:
        raise DataError(f"{where} is not in the local Hugging Face cache ({cache_dir or 'default'}) and downloads "
                        f"are off (HF_HUB_OFFLINE) or the Hub is unreachable") from None
    except hf_errors.RepositoryNotFoundError:
        raise DataError(f"{where}: no such dataset on the Hub (or it is private: set HF_TOKEN)") from None
    except hf_errors.RevisionNotFoundError:
        raise DataError(f"{where}: that revision does not exist") from None
    except (hf_errors.HfHubHTTPError, OSError, ValueError) as exc:
        raise DataError(f"Could not download {where}: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc}") from None
    found = [p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")]
    # One format only, the most table-like present: a dataset's stray .json metadata is not data.
    for suffixes in ((".parquet", ".pq"), (".jsonl", ".ndjson"), (".csv",), (".tsv",), (".json",)):
        files = sorted(p for p in found if p.suffix.lower() in suffixes)
        if files:
            return files
    raise DataError(f"{where} holds no parquet/jsonl/csv/json data files")
