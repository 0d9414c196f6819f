"""The large-corpus path at small size: with settings.SCALE's thresholds lowered, 1,200 real Yelp reviews go
through `hsae build --embeddings FILE.npy` exactly as a million documents would (IVF index with nprobe tuned
for recall, SAE on a sample, keyword labels on a sample, map by UMAP on a sample + neighbour placement), and
the chunked readers give the same numbers as the plain ones."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from ws_fixtures import small_workspace  # noqa: F401

from hsae_core import settings
from hsae_core.chunked import content_digest, encode_in_chunks, load_embeddings, write_rows
from hsae_core.cli import main
from hsae_core.corpora import embeddings_from_column, parquet_embeddings, read_table_rows
from hsae_core.errors import DataError
from hsae_core.workspace import Workspace

SMALL_SCALE = dict(
    exact_index_limit=300,
    sae_fit_rows=500,
    sae_sample_epochs=3,
    label_sample_docs=200,
    map_fit_rows=400,
    map_points=100,
    map_hover_points=150,
    run_rows=600,
)


@pytest.fixture
def small_scale(monkeypatch):
    """settings.SCALE with every large-corpus threshold below the test corpus size."""
    monkeypatch.setattr(settings, "SCALE", dataclasses.replace(settings.SCALE, **SMALL_SCALE))
    return settings.SCALE


@pytest.fixture(scope="module")
def corpus_files(yelp_embedded, tmp_path_factory):
    """1,200 real reviews as a Parquet table (with one empty text) and their MiniLM embeddings as a .npy."""
    train, hold, X_train, X_hold = yelp_embedded
    frame = pd.concat([train[["text", "stars"]], hold[["text", "stars"]]], ignore_index=True)
    X = np.vstack([X_train, X_hold]).astype(np.float32)
    frame.loc[7, "text"] = "   "  # dropped by the build: stored embedding rows must follow the kept rows
    folder = tmp_path_factory.mktemp("scale-corpus")
    np.save(folder / "emb.npy", X)
    frame.to_parquet(folder / "table.parquet", index=False)
    frame.assign(embedding=list(X)).to_parquet(folder / "with-vectors.parquet", index=False)
    return folder, frame, X


def test_hsae_build_with_a_npy_takes_the_large_corpus_path(small_scale, corpus_files, tmp_path, capsys):
    folder, frame, X = corpus_files
    out = tmp_path / "ws"
    assert (
        main(
            [
                "build",
                "--data",
                str(folder / "table.parquet"),
                "--text-col",
                "text",
                "--embeddings",
                str(folder / "emb.npy"),
                "--m",
                "64",
                "--k",
                "4",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "IVF index, nprobe" in capsys.readouterr().out
    ws = Workspace.open(out)
    kept = np.delete(np.arange(len(frame)), 7)
    assert len(ws) == len(kept) and isinstance(ws.embeddings, np.memmap)
    np.testing.assert_array_equal(ws.embeddings, X[kept])
    index = ws.index_info
    assert index["kind"] == "ivf" and type(ws.index).__name__ == "IndexIVFFlat"
    assert index["recall_at_10"] >= 0.95 and ws.index.nprobe == index["nprobe"] and index["tuning_queries"] > 0
    metrics = ws.manifest["sae"]["metrics"]
    assert metrics["n_train"] + metrics["n_val"] == 500 and metrics["epochs"] <= 3, "SAE trained on a 500-row sample"
    assert ws.codes.shape == (len(kept), 64 + sum(s for s, _ in settings.SAE.levels))
    assert np.diff(ws.codes[:, :64].tocsr().indptr).max() <= 4
    assert (
        "read" in ws.features["label_method"].iloc[0]
        and f"of {len(kept):,} documents" in ws.features["label_method"].iloc[0]
    )
    alive = ws.features[ws.features["n_active"] > 0]
    assert (alive["keywords"].str.len() > 0).mean() > 0.7, "labels from a sample still name most features"
    assert ws.has_layout and ws.layout().shape == (len(kept), 2) and np.isfinite(ws.layout()).all()
    assert ws.layout_info["method"].startswith("umap on a sample") and ws.layout_info["fit_rows"] == 400
    assert set(ws.manifest["seconds"]) >= {"table", "embeddings", "sae", "codes", "features", "index", "layout"}


def test_layout_placement_keeps_neighbours_close(small_scale, corpus_files, tmp_path):
    """Documents placed by neighbours land near the sampled documents most similar to them."""
    from hsae_core.mapping import compute_layout

    _, _, X = corpus_files
    coords, info = compute_layout(X, fit_rows=400, with_info=True)
    assert info["fit_rows"] == 400 and coords.shape == (len(X), 2)
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    rng = np.random.default_rng(0)
    near, far = [], []
    for i in rng.choice(len(X), 60, replace=False):
        order = np.argsort(-(Xn @ Xn[i]))
        near.append(np.linalg.norm(coords[order[1:6]] - coords[i], axis=1).mean())
        far.append(np.linalg.norm(coords[order[-5:]] - coords[i], axis=1).mean())
    assert np.median(near) < 0.5 * np.median(far)


def test_chunked_helpers_match_the_plain_computation(corpus_files, tmp_path, small_workspace):
    _, _, X = corpus_files
    rows = np.array([5, 1, 9, 1000, 3])
    import hashlib

    assert content_digest(X, rows) == hashlib.sha256(np.ascontiguousarray(X[rows]).tobytes()).hexdigest()
    write_rows(load_embeddings(_save(tmp_path / "x.npy", X)), rows, tmp_path / "y.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), X[rows])
    ws = Workspace.open(small_workspace)
    chunked = encode_in_chunks(ws.sae, ws.embeddings, chunk=128)
    assert (chunked != ws.sae.transform(np.array(ws.embeddings))).nnz == 0
    (tmp_path / "emb.csv").write_text("1,2\n")
    with pytest.raises(DataError, match="must be a .npy"):
        load_embeddings(tmp_path / "emb.csv")
    (tmp_path / "emb2.npy").write_bytes(b"not a numpy file")
    with pytest.raises(DataError, match="Could not read embeddings emb2.npy"):
        load_embeddings(tmp_path / "emb2.npy")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="Could not read embeddings obj.npy"):  # never unpickled
        load_embeddings(tmp_path / "obj.npy")


def _save(path, X):
    np.save(path, X)
    return path


def test_parquet_embedding_column_read_in_batches(corpus_files, monkeypatch):
    import hsae_core.corpora as corpora

    folder, frame, X = corpus_files
    monkeypatch.setattr(corpora, "BATCH_ROWS", 100)  # many batches
    rest, E = parquet_embeddings(folder / "with-vectors.parquet", "embedding")
    np.testing.assert_array_equal(
        E, embeddings_from_column(pd.read_parquet(folder / "with-vectors.parquet"), "embedding")
    )
    assert list(rest.columns) == ["text", "stars"] and len(rest) == len(frame)
    head, E_head = parquet_embeddings(folder / "with-vectors.parquet", "embedding", max_rows=250)
    assert len(head) == 250 and E_head.shape == (250, X.shape[1])
    np.testing.assert_array_equal(E_head, X[:250])
    assert len(read_table_rows(folder / "table.parquet", 333)) == 333


@pytest.mark.parametrize(
    "cells, message",
    [
        ([[1.0, 2.0], [1.0, 2.0, 3.0]], r"ragged: row 0 has 2 numbers but row 1 has 3"),
        ([[1.0, 2.0], None], r"row 1 has no embedding"),
        ([[1.0, float("nan")], [1.0, 2.0]], r"row 0 contains NaN"),
    ],
)
def test_parquet_embedding_errors_are_one_line(tmp_path, cells, message):
    path = tmp_path / "bad.parquet"
    pd.DataFrame({"text": ["a", "b"], "e": pd.Series(cells, dtype=object)}).to_parquet(path)
    with pytest.raises(DataError, match=message) as info:
        parquet_embeddings(path, "e")
    assert "\n" not in str(info.value)
    with pytest.raises(DataError, match="No embedding column 'vec'"):
        parquet_embeddings(path, "vec")


def test_cli_build_with_a_parquet_vector_column(small_scale, corpus_files, tmp_path):
    folder, frame, X = corpus_files
    out = tmp_path / "ws"
    assert (
        main(
            [
                "build",
                "--data",
                str(folder / "with-vectors.parquet"),
                "--text-col",
                "text",
                "--embedding-col",
                "embedding",
                "--m",
                "32",
                "--k",
                "4",
                "--no-map",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    ws = Workspace.open(out)
    assert "embedding" not in ws.frame.columns and not ws.has_layout
    np.testing.assert_array_equal(ws.embeddings, np.delete(X, 7, axis=0))
    assert "layout" not in json.loads((out / "workspace.json").read_text())["steps"]


def test_cli_refuses_conflicting_or_missing_inputs(corpus_files, tmp_path, capsys):
    folder, _, _ = corpus_files
    assert main(["build", "--out", str(tmp_path / "w")]) == 2
    assert "Give --data (and --text-col), or --corpus NAME" in capsys.readouterr().err
    assert (
        main(
            [
                "build",
                "--data",
                str(folder / "with-vectors.parquet"),
                "--text-col",
                "text",
                "--embedding-col",
                "embedding",
                "--embeddings",
                str(folder / "emb.npy"),
                "--out",
                str(tmp_path / "w"),
            ]
        )
        == 2
    )
    assert "not both" in capsys.readouterr().err
    np.save(tmp_path / "short.npy", np.zeros((3, 384), np.float32))
    assert (
        main(
            [
                "build",
                "--data",
                str(folder / "table.parquet"),
                "--text-col",
                "text",
                "--embeddings",
                str(tmp_path / "short.npy"),
                "--out",
                str(tmp_path / "w"),
            ]
        )
        == 2
    )
    assert "expected one row per table row" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def test_feature_labels_read_every_top_document_plus_a_sample(small_workspace):
    from hsae_core.features import label_rows

    ws = Workspace.open(small_workspace)
    rows = label_rows(ws.codes, top_docs=5, sample_docs=100, seed=0)
    assert rows is not None and len(rows) < len(ws)
    csc = sp.csc_matrix(ws.codes)
    for j in range(csc.shape[1]):
        lo, hi = csc.indptr[j], csc.indptr[j + 1]
        top = csc.indices[lo:hi][np.argsort(-csc.data[lo:hi])][:5]
        assert set(top.tolist()) <= set(rows.tolist())
    assert label_rows(ws.codes, top_docs=5, sample_docs=len(ws)) is None
