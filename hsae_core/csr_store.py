"""Sparse codes on disk as a folder of plain ``.npy`` arrays that open memory-mapped.

A code folder holds ``indptr.npy``, ``indices.npy``, ``data.npy`` (the CSR arrays) and ``shape.json``.
Index arrays share one integer type (int32 while it fits) so scipy wraps the mapped arrays without
copying them; a workspace of millions of rows opens its codes without reading them into memory.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .errors import DataError

ARRAYS = ("indptr", "indices", "data")
SHAPE_FILE = "shape.json"
INT32_MAX = np.iinfo(np.int32).max


def row_key(codes: sp.csr_matrix, row: int) -> tuple[bytes, bytes]:
    """A hashable key of one CSR row: equal for rows with the same non-zeros (the same text twice in a corpus
    is embedded alike and coded alike), so pages can show such documents once."""
    lo, hi = codes.indptr[row], codes.indptr[row + 1]
    return codes.indices[lo:hi].tobytes(), codes.data[lo:hi].tobytes()


def index_dtype(nnz: int, n_cols: int) -> type:
    return np.int32 if max(nnz, n_cols) <= INT32_MAX else np.int64


def is_csr_folder(path: str | Path) -> bool:
    path = Path(path)
    return path.is_dir() and (path / SHAPE_FILE).is_file()


def save_csr(folder: str | Path, codes: sp.spmatrix) -> Path:
    """Write ``codes`` (any scipy sparse matrix) as a code folder, replacing ``folder`` atomically."""
    codes = sp.csr_matrix(codes)
    if not codes.has_canonical_format:  # sorted, unique column indices per row; never edits the caller's arrays
        codes = codes.copy()
        codes.sum_duplicates()
    idx = index_dtype(codes.nnz, codes.shape[1])
    return _write_folder(
        folder, codes.shape, [(np.asarray(codes.indptr), np.asarray(codes.indices), np.asarray(codes.data))], idx
    )


def concat_csr(folder: str | Path, parts: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], n_cols: int) -> Path:
    """Stack CSR row blocks ``(indptr, indices, data)`` (each indptr starting at 0) into one code folder,
    streaming: the parts may be memory-mapped and are never all in memory at once."""
    n_rows = sum(len(p[0]) - 1 for p in parts)
    nnz = sum(int(p[0][-1]) for p in parts)
    return _write_folder(folder, (n_rows, n_cols), parts, index_dtype(nnz, n_cols))


def _write_folder(folder, shape, parts: Iterable, idx) -> Path:
    folder = Path(folder)
    tmp = folder.parent / f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        parts = list(parts)
        nnz = sum(int(p[0][-1]) for p in parts)
        open_mm = np.lib.format.open_memmap
        indptr = open_mm(tmp / "indptr.npy", mode="w+", dtype=idx, shape=(shape[0] + 1,))
        indices = open_mm(tmp / "indices.npy", mode="w+", dtype=idx, shape=(nnz,))
        data = open_mm(tmp / "data.npy", mode="w+", dtype=np.float32, shape=(nnz,))
        indptr[0], row, pos = 0, 0, 0
        for p_indptr, p_indices, p_data in parts:
            n, count = len(p_indptr) - 1, int(p_indptr[-1])
            indptr[row + 1 : row + n + 1] = np.asarray(p_indptr[1:], dtype=np.int64) + pos
            indices[pos : pos + count] = p_indices[:count]
            data[pos : pos + count] = p_data[:count]
            row, pos = row + n, pos + count
        for arr in (indptr, indices, data):
            arr.flush()
        del indptr, indices, data
        (tmp / SHAPE_FILE).write_text(json.dumps({"shape": [int(shape[0]), int(shape[1])], "nnz": nnz}))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def load_csr(folder: str | Path) -> sp.csr_matrix:
    """Open a code folder memory-mapped (copy-on-write: in-place edits stay in memory, never reach the file)."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / SHAPE_FILE).read_text())
        indptr, indices, data = (np.load(folder / f"{a}.npy", mmap_mode="c", allow_pickle=False) for a in ARRAYS)
        shape = tuple(int(s) for s in meta["shape"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"Corrupt sparse codes in {folder}: {exc}; build the workspace again") from None
    nnz = int(indptr[-1]) if len(indptr) else -1
    if len(indptr) != shape[0] + 1 or len(indices) != nnz or len(data) != nnz:
        raise DataError(f"Corrupt sparse codes in {folder}: array lengths do not match; build the workspace again")
    codes = sp.csr_matrix((data, indices, indptr), shape=shape, copy=False)
    codes.has_canonical_format = True  # written canonical; saves scipy a pass over the data
    return codes
