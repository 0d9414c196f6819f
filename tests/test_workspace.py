"""Workspaces: built step by step from real data, reused when unchanged, intact after a failed build."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest
from ws_fixtures import LEVEL_ACTIVE, LEVEL_LATENTS, SMALL_K, SMALL_M, small_frame, small_workspace  # noqa: F401

from hsae_core import settings
from hsae_core.errors import DataError, HsaeError, ModelError
from hsae_core.sae import SparseAutoencoder
from hsae_core.workspace import DEMO_HELP, FILES, MANIFEST, Workspace, build_workspace, demo_frame, list_workspaces


def test_build_produces_every_part(small_workspace):
    ws = Workspace.open(small_workspace)
    assert len(ws) == 600 and len(ws.frame) == 600
    assert ws.embeddings.shape == (600, 384)
    assert ws.codes.shape == (600, SMALL_M + LEVEL_LATENTS)
    assert np.diff(ws.codes[:, :SMALL_M].tocsr().indptr).max() <= SMALL_K  # the main level's k per document
    assert np.diff(ws.codes.indptr).max() <= SMALL_K + LEVEL_ACTIVE
    assert ws.index.ntotal == 600
    feats = ws.features
    assert len(feats) == SMALL_M + LEVEL_LATENTS and set(["label", "keywords", "density", "mean_activation"]) <= set(
        feats.columns
    )
    alive = feats[feats["n_active"] > 0]
    assert (alive["keywords"].str.len() > 0).mean() > 0.8, "most live features get keywords"
    info = ws.overview()
    assert info["m"] == SMALL_M + LEVEL_LATENTS and info["k"] == SMALL_K + LEVEL_ACTIVE and 0 < info["nmse"] < 1
    assert info["levels"][0] == [SMALL_M, SMALL_K] and len(info["levels"]) == 1 + len(settings.SAE.levels)
    assert info["embedding_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert "split" in info["columns"] and ws.text_col == "text"
    assert small_workspace in list_workspaces(small_workspace.parent)


def test_a_workspace_opens_by_its_folder_alone(small_workspace, tmp_path):
    """Workspace("folder") raised TypeError (a missing 'manifest'); it now opens as Workspace.open does."""
    ws = Workspace(small_workspace)
    assert len(ws) == 600 and ws.manifest == Workspace.open(small_workspace).manifest
    with pytest.raises(DataError, match="is not a workspace"):
        Workspace(tmp_path)


def _stats(ws_dir):
    ws = Workspace.open(ws_dir)
    return {s: (ws.file(s).name, os.stat(ws.file(s)).st_mtime_ns) for s in FILES}


def test_rebuild_reuses_every_step(small_workspace, yelp_frames):
    before = _stats(small_workspace)
    messages = []
    build_workspace(
        small_workspace,
        frame=small_frame(yelp_frames),
        text_col="text",
        m=SMALL_M,
        k=SMALL_K,
        progress=lambda d, t, msg="": messages.append(msg),
    )
    assert sorted(m for m in messages if m.endswith("reused")) == sorted(f"{s}: reused" for s in [*FILES, "layout"])
    assert _stats(small_workspace) == before


def test_changed_k_retrains_but_keeps_embeddings(tmp_path, small_workspace, yelp_frames):
    import shutil

    ws_dir = tmp_path / "copy"
    shutil.copytree(small_workspace, ws_dir)
    emb_before = _stats(ws_dir)["embeddings"]
    messages = []
    ws = build_workspace(
        ws_dir,
        frame=small_frame(yelp_frames),
        text_col="text",
        m=SMALL_M,
        k=2,
        progress=lambda d, t, msg="": messages.append(msg),
    )
    assert "embeddings: reused" in messages and "table: reused" in messages
    assert "sae: reused" not in messages
    assert _stats(ws_dir)["embeddings"] == emb_before
    assert np.diff(ws.codes[:, :SMALL_M].tocsr().indptr).max() <= 2 and ws.overview()["levels"][0] == [SMALL_M, 2]


def test_failed_build_leaves_previous_workspace_intact(tmp_path, small_workspace, yelp_frames):
    import shutil

    ws_dir = tmp_path / "copy"
    shutil.copytree(small_workspace, ws_dir)
    manifest = (ws_dir / MANIFEST).read_text()
    wrong_width = SparseAutoencoder(m=8, k=2, max_epochs=1).fit(np.random.default_rng(0).normal(size=(64, 16)))
    # A different table (first 100 rows) is staged, then the incompatible SAE fails the build.
    with pytest.raises(ModelError, match="16-d inputs"):
        build_workspace(ws_dir, frame=small_frame(yelp_frames).iloc[:100], text_col="text", sae=wrong_width)
    assert (ws_dir / MANIFEST).read_text() == manifest
    ws = Workspace.open(ws_dir)
    assert len(ws.frame) == 600 and ws.codes.shape[0] == 600
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".copy.build-")], "staging folder cleaned up"


def test_bad_inputs_give_one_line_errors(tmp_path, yelp_frames):
    frame = small_frame(yelp_frames).iloc[:20]
    with pytest.raises(DataError, match="Column 'body' not found"):
        build_workspace(tmp_path / "a", frame=frame, text_col="body")
    with pytest.raises(DataError, match="holds no text"):
        build_workspace(tmp_path / "b", frame=frame.assign(text=""), text_col="text")
    not_table = tmp_path / "notes.txt"
    not_table.write_text("hello")
    with pytest.raises(DataError, match="Unknown file type"):
        build_workspace(tmp_path / "c", data_path=not_table, text_col="text")
    garbage = tmp_path / "broken.parquet"
    garbage.write_bytes(b"this is not parquet")
    with pytest.raises(DataError, match="Could not read"):
        build_workspace(tmp_path / "d", data_path=garbage, text_col="text")
    with pytest.raises(DataError, match="not a workspace"):
        Workspace.open(tmp_path)
    assert not (tmp_path / "a").exists() or not (tmp_path / "a" / MANIFEST).exists()


def test_stored_embeddings_workspace_works_without_an_embedder(tmp_path, yelp_embedded):
    train, _, X_train, _ = yelp_embedded
    frame = train.iloc[:200][["text", "stars"]]
    ws = build_workspace(tmp_path / "stored", frame=frame, text_col="text", embeddings=X_train[:200], m=16, k=2)
    assert ws.embedding_model == "stored"
    np.testing.assert_array_equal(np.asarray(ws.embeddings), X_train[:200])
    with pytest.raises(HsaeError, match="more like this document"):
        ws.embed_query("great pizza")
    with pytest.raises(DataError, match="one row per table row"):
        build_workspace(tmp_path / "bad", frame=frame, text_col="text", embeddings=X_train[:10])
    # A row of zeros (a text never embedded) or of NaN is named by its row, and nothing is built.
    for row, value, what in ((37, 0.0, "is all zeros"), (5, np.nan, "contains NaN")):
        broken = X_train[:200].copy()
        broken[row] = value
        with pytest.raises(DataError, match=rf"row {row} {what}") as info:
            build_workspace(tmp_path / "broken", frame=frame, text_col="text", embeddings=broken, m=16, k=2)
        assert "\n" not in str(info.value) and not (tmp_path / "broken" / MANIFEST).exists()
    # With empty texts dropped, the row named is still the table's.
    gappy = frame.copy()
    gappy.iloc[:3, gappy.columns.get_loc("text")] = ""
    broken = X_train[:200].copy()
    broken[:3] = 0.0  # the dropped rows' zeros are never read
    broken[50] = 0.0
    with pytest.raises(DataError, match=r"row 50 is all zeros"):
        build_workspace(tmp_path / "gappy", frame=gappy, text_col="text", embeddings=broken, m=16, k=2)
    # One row per kept text, as `hsae embed` writes them (it drops empty texts), is read as such
    kept = build_workspace(tmp_path / "kept", frame=gappy, text_col="text", embeddings=X_train[3:200], m=16, k=2)
    np.testing.assert_array_equal(np.asarray(kept.embeddings), X_train[3:200])
    with pytest.raises(DataError, match=r"expected one row per table row \(200\) or per non-empty text \(197\)"):
        build_workspace(tmp_path / "bad", frame=gappy, text_col="text", embeddings=X_train[:150])


def test_embed_query_rejects_empty_text(small_workspace):
    with pytest.raises(DataError, match="empty"):
        Workspace.open(small_workspace).embed_query("   ")


def test_demo_frame_reads_both_files_and_marks_the_split(shared_data, tmp_path):
    df = demo_frame(shared_data)
    assert len(df) == 4000
    assert df["split"].value_counts().to_dict() == {"val": 2000, "holdout": 2000}
    assert {"text", "stars", "useful", "funny", "cool"} <= set(df.columns)
    with pytest.raises(DataError) as err:
        demo_frame(tmp_path)
    assert "demo_data" in str(err.value) and "yelp-demo-val-2K.jsonl" in str(err.value)
    assert "HypotheSAEs" in DEMO_HELP


def test_a_rebuild_on_another_table_moves_the_runs_it_makes_stale_and_keeps_them_whole(tmp_path, yelp_embedded):
    """A workspace rebuilt on another corpus listed the old corpus's runs, whose row numbers then showed other
    texts as their evidence (library audit)."""
    import hashlib
    import re

    from hsae_core.pipeline import HypothesisConfig, load_run

    train, _, X_train, _ = yelp_embedded
    frame, other = train.iloc[:200][["text", "stars"]], train.iloc[200:400][["text", "stars"]]
    out = tmp_path / "ws"
    ws = build_workspace(out, frame=frame, text_col="text", embeddings=X_train[:200], m=16, k=2, layout=False)
    config = HypothesisConfig(n=3)
    own = ws.hypothesize("stars", config, own_features=True)  # reads the workspace's features
    trained = ws.hypothesize("stars", HypothesisConfig(n=3, m=16, k=2, levels=()), own_features=False)
    assert own is not None and trained is not None and len(ws.list_runs()) == 2

    def digests(folder):
        return {
            p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
        }

    before = {r["id"]: digests(r["path"]) for r in ws.list_runs()}
    assert load_run(own.out_dir).sae.config_ == ws.sae.config_, "a reopened run gives the workspace SAE it read"
    again = build_workspace(out, frame=frame, text_col="text", embeddings=X_train[:200], m=16, k=2, layout=False)
    assert again.moved_runs_line() is None and len(again.list_runs()) == 2, "an unchanged rebuild moves nothing"
    # Another SAE on the same table: the run on the workspace's features goes, the one with its own SAE stays
    resized = build_workspace(out, frame=frame, text_col="text", embeddings=X_train[:200], m=24, k=2, layout=False)
    assert [r["summary"].get("features") for r in resized.list_runs()] == [None], "the run with its own SAE stays"
    line = resized.moved_runs_line()
    assert line.startswith("1 hypothesis run made before this build moved to ") and "features of the SAE" in line
    (moved,) = out.glob(f"runs-before-*/{own.out_dir.name}")
    said = f"Run {moved} read the features of workspace {out}'s SAE, which a rebuild has replaced since"
    with pytest.raises(ModelError, match="^" + re.escape(said)):
        _ = load_run(moved).sae  # its SAE is gone: said in one line, where load_run gave None without a word
    assert load_run(trained.out_dir).sae.config_.m == 16, "a run with its own SAE keeps it in its folder"
    # Another table: every run goes, byte for byte, into a folder beside runs/
    rebuilt = build_workspace(out, frame=other, text_col="text", embeddings=X_train[200:400], m=24, k=2, layout=False)
    assert rebuilt.list_runs() == []
    assert "made on the table this build replaced" in rebuilt.moved_runs_line()
    kept = {p.name: digests(p) for folder in out.glob("runs-before-*") for p in folder.iterdir()}
    assert kept == before


def test_only_runs_whose_process_died_are_reported_lost(small_workspace, tmp_path):
    """runs/.going-*.json markers: a dead process's run is reported once; a live process's, another machine's
    (which cannot be told) and the saved runs are left alone; an unreadable marker goes without a word."""
    folder = tmp_path / "ws"
    shutil.copytree(small_workspace, folder, ignore=shutil.ignore_patterns("runs"))
    runs = folder / "runs"
    runs.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", ""])
    dead.wait()
    here = socket.gethostname()
    markers = {
        "dead": {"target": "stars", "started": "2026-11-24 21:40", "pid": dead.pid, "host": here},
        "alive": {"target": "useful", "started": "2026-11-24 21:41", "pid": os.getpid(), "host": here},
        "elsewhere": {"target": "funny", "started": "2026-11-24 21:42", "pid": dead.pid, "host": here + "-other"},
    }
    for name, info in markers.items():
        (runs / f".going-{name}.json").write_text(json.dumps(info))
    (runs / ".going-garbled.json").write_text("{not json")
    ws = Workspace.open(folder)
    assert ws.interrupted_runs() == [{"target": "stars", "started": "2026-11-24 21:40"}]
    assert ws.interrupted_runs() == [] and ws.list_runs() == []
    assert sorted(p.name for p in runs.iterdir()) == [".going-alive.json", ".going-elsewhere.json"]
