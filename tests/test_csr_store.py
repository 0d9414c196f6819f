"""Sparse codes stored as a folder of .npy arrays: exact round trip, memory-mapped opening, streamed concatenation,
and workspaces built before the folder form (codes.npz) still open."""

from __future__ import annotations

import json
import mmap
import shutil

import numpy as np
import pytest
import scipy.sparse as sp
from ws_fixtures import SMALL_K, SMALL_M, small_frame, small_workspace  # noqa: F401

from hsae_core.csr_store import concat_csr, load_csr, save_csr
from hsae_core.errors import DataError
from hsae_core.workspace import LEGACY_CODES, MANIFEST, Workspace, build_workspace


def _mapped(array: np.ndarray) -> bool:
    base = array
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "base", None)
    return base is not None


def _codes(seed=0, n=500, m=300) -> sp.csr_matrix:
    return sp.random(n, m, density=0.03, format="csr", dtype=np.float32, random_state=seed)


def test_round_trip_is_exact_and_memory_mapped(tmp_path):
    codes = _codes()
    save_csr(tmp_path / "codes", codes)
    back = load_csr(tmp_path / "codes")
    assert back.shape == codes.shape and (back != codes).nnz == 0
    assert all(_mapped(a) for a in (back.indptr, back.indices, back.data)), "scipy must wrap the mapped arrays"
    back.data[0] = 123.0  # copy-on-write: allowed in memory, never written to the file
    assert load_csr(tmp_path / "codes").data[0] == codes.data[0]


def test_concat_streams_row_blocks(tmp_path):
    codes = _codes(1)
    save_csr(tmp_path / "whole", codes)
    cuts = [0, 7, 7, 200, 499, 500]  # includes an empty block
    parts = [(codes[a:b].indptr, codes[a:b].indices, codes[a:b].data) for a, b in zip(cuts[:-1], cuts[1:])]
    concat_csr(tmp_path / "joined", parts, codes.shape[1])
    joined = load_csr(tmp_path / "joined")
    assert joined.shape == codes.shape and (joined != codes).nnz == 0
    assert joined.indptr.dtype == joined.indices.dtype == np.int32


def test_corrupt_folder_is_one_line(tmp_path):
    save_csr(tmp_path / "codes", _codes())
    np.save(tmp_path / "codes" / "data.npy", np.zeros(3, np.float32))
    with pytest.raises(DataError, match="Corrupt sparse codes"):
        load_csr(tmp_path / "codes")


def test_legacy_npz_workspace_opens_and_rebuild_migrates(tmp_path, small_workspace, yelp_frames):
    ws_dir = tmp_path / "old"
    shutil.copytree(small_workspace, ws_dir)
    first = Workspace.open(ws_dir)
    expected = first.codes.copy()
    # The layout written before code folders existed: codes.npz, which the manifest does not name.
    shutil.rmtree(first.file("codes"))
    manifest = json.loads((ws_dir / MANIFEST).read_text())
    del manifest["files"]["codes"]
    (ws_dir / MANIFEST).write_text(json.dumps(manifest))
    sp.save_npz(ws_dir / LEGACY_CODES, expected)
    old = Workspace.open(ws_dir)
    assert (old.codes != expected).nnz == 0
    ws = build_workspace(ws_dir, frame=small_frame(yelp_frames), text_col="text", m=SMALL_M, k=SMALL_K)
    assert ws.file("codes").is_dir() and not (ws_dir / LEGACY_CODES).exists()
    assert (ws.codes != expected).nnz == 0 and _mapped(ws.codes.indices)
