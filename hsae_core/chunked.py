"""Chunked work over large embedding matrices, so a million-row workspace builds in a few GiB of memory.

Embeddings stay memory-mapped (``np.load(..., mmap_mode="r")``); every pass over them reads a chunk of
rows at a time: hashing, copying into the workspace, encoding into CSR. The SAE of a large corpus is
trained on a random sample of rows (:data:`settings.SCALE`), never on an N x d copy.
"""

from __future__ import annotations

import hashlib
import mmap
from pathlib import Path
from typing import Optional

import numpy as np
import scipy.sparse as sp

from . import settings
from .errors import DataError
from .progress import ProgressFn, report

CHUNK_ROWS = 65_536


def load_embeddings(source) -> np.ndarray:
    """An (N, d) float matrix from an array or a ``.npy`` path (memory-mapped, never unpickled)."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise DataError(f"Embeddings file not found: {path}")
        if path.suffix.lower() != ".npy":
            raise DataError(f"Embeddings must be a .npy file (got {path.name}); save them with numpy.save")
        try:
            X = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"Could not read embeddings {path.name}: {str(exc).splitlines()[0]}") from None
    else:
        X = source if isinstance(source, np.ndarray) else np.asarray(source)
    if X.ndim != 2 or X.shape[1] == 0:
        raise DataError(f"Embeddings must be a 2-D matrix (rows x dimensions), got shape {X.shape}")
    if not np.issubdtype(X.dtype, np.floating):
        raise DataError(f"Embeddings must be floating-point numbers, got {X.dtype}")
    return X


def release(X) -> None:
    """Drop a memory map's pages from this process (they stay in the OS page cache, so a re-read is cheap).

    A pass over a memory-mapped matrix otherwise leaves every page it touched resident and counted in the
    process's RSS; releasing after each chunk keeps a million-row build's footprint to what it computes with.
    """
    mm = getattr(X, "_mmap", None)
    if isinstance(mm, mmap.mmap) and hasattr(mm, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
        try:
            mm.madvise(mmap.MADV_DONTNEED)
        except (OSError, ValueError):  # closed map or an unsupported platform: only memory accounting is lost
            pass


def _is_all_rows(rows: np.ndarray, n: int) -> bool:
    return len(rows) == n and (n == 0 or (rows[0] == 0 and rows[-1] == n - 1))


def iter_rows(X: np.ndarray, rows: Optional[np.ndarray] = None, chunk: int = CHUNK_ROWS):
    """Yield (start, float32 C-contiguous block) over ``X[rows]`` (all rows when None), chunk by chunk."""
    n = len(X) if rows is None else len(rows)
    whole = rows is None or _is_all_rows(np.asarray(rows), len(X))
    for start in range(0, n, chunk):
        block = X[start : start + chunk] if whole else X[np.asarray(rows[start : start + chunk])]
        block = np.array(block, dtype=np.float32, order="C")  # a writable copy of one chunk
        release(X)
        yield start, block


def content_digest(X: np.ndarray, rows: Optional[np.ndarray] = None) -> str:
    """sha256 of the float32 bytes of ``X[rows]`` (the same digest as hashing the gathered copy at once).

    Refuses, naming the first such row of ``X``, a row with NaN or infinite values or a row of zeros (no
    embedding model gives one: a text that was never embedded, whose cosine to anything is undefined)."""
    h = hashlib.sha256()
    for start, block in iter_rows(X, rows):
        for bad, what in (
            (~np.isfinite(block).all(axis=1), "contains NaN or infinite values"),
            (~block.any(axis=1), "is all zeros"),
        ):
            if bad.any():
                at = start + int(np.argmax(bad))
                row = at if rows is None else int(np.asarray(rows)[at])
                raise DataError(f"The embeddings' row {row} {what}; embed that text again or drop the row")
        h.update(block.data)
    return h.hexdigest()


def write_rows(X: np.ndarray, rows: Optional[np.ndarray], path: Path, progress: Optional[ProgressFn] = None) -> None:
    """Write ``X[rows]`` as a float32 ``.npy`` at ``path`` without holding more than one chunk in memory."""
    n = len(X) if rows is None else len(rows)
    header = {
        "descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
        "fortran_order": False,
        "shape": (n, int(X.shape[1])),
    }
    with open(path, "wb") as fh:  # plain writes: no dirty mapped pages piling up in this process
        np.lib.format.write_array_header_1_0(fh, header)
        for start, block in iter_rows(X, rows):
            fh.write(block.tobytes())
            report(progress, start + len(block), n, "writing embeddings")


def sample_rows(n: int, limit: int, seed: int) -> Optional[np.ndarray]:
    """Sorted random row positions when ``n`` exceeds ``limit``; None means: use every row."""
    if n <= limit:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def training_plan(n: int, seed: int) -> tuple[Optional[np.ndarray], dict]:
    """(rows to train the SAE on, training options) for a corpus of ``n`` documents: (None, {}) = every row and
    the defaults; above ``settings.SCALE.sae_fit_rows`` a random sample of that size, at most
    ``sae_sample_epochs`` epochs in batches of ``sae_sample_batch_size``."""
    rows = sample_rows(n, settings.SCALE.sae_fit_rows, seed)
    if rows is None:
        return None, {}
    return rows, {"max_epochs": settings.SCALE.sae_sample_epochs, "batch_size": settings.SCALE.sae_sample_batch_size}


def sample_matrix(X: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``X[rows]`` as a float32 array, then the memory map's pages released."""
    out = np.ascontiguousarray(X[rows], dtype=np.float32)
    release(X)
    return out


def encode_in_chunks(
    sae, X: np.ndarray, progress: Optional[ProgressFn] = None, chunk: int = CHUNK_ROWS
) -> sp.csr_matrix:
    """SAE codes of every row of ``X`` (CSR), encoded one chunk of rows at a time."""
    parts = []
    for start, block in iter_rows(X, chunk=chunk):
        parts.append(sae.transform(block))
        report(progress, start + len(block), len(X), "encoding")
    if not parts:
        return sp.csr_matrix((0, sae.config_.m), dtype=np.float32)
    codes = sp.vstack(parts, format="csr") if len(parts) > 1 else parts[0]
    codes.sort_indices()
    return codes


def save_codes(path: Path, codes: sp.csr_matrix) -> None:
    """``codes.npz``; uncompressed above a few million non-zeros (zlib would cost more time than the disk saves)."""
    sp.save_npz(path, codes, compressed=codes.nnz < 4_000_000)
