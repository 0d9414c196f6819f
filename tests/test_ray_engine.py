"""The Ray engine on a local Ray (num_cpus=2) started here, on 300 real Yelp reviews with MiniLM:
same embeddings and exactly the same codes as the single-process build, workers killed mid-shard lose nothing,
a rerun redoes only missing shards, and the result is an ordinary workspace the dashboard's classes query."""

from __future__ import annotations

import json
import mmap
import os
import shutil
import sys

import numpy as np
import pytest

from hsae_core import settings
from hsae_core.errors import EngineError

pytestmark = pytest.mark.slow
N_ROWS, SHARD_ROWS, M, K = 300, 100, 64, 4
M_ALL = M + sum(size for size, _ in settings.SAE.levels)  # the default levels are trained beside m, k


def _mapped(array) -> bool:
    while array is not None and not isinstance(array, mmap.mmap):
        array = getattr(array, "base", None)
    return array is not None


@pytest.fixture(scope="module")
def frame(yelp_frames):
    df = yelp_frames[0].iloc[:N_ROWS][["text", "stars"]].copy()
    df.loc[5, "text"] = "   "  # an empty text: dropped and counted, like the single-process path does
    return df


@pytest.fixture(scope="module")
def ray_session(tmp_path_factory):
    """A local Ray whose workers die once: in the first attempt at shard 2's embedding and shard 1's encoding."""
    ray = pytest.importorskip("ray", reason="the Ray engine needs the optional extra: pip install -e .[ray]")
    markers = tmp_path_factory.mktemp("faults")
    faults = {"embed": markers / "embed-killed", "encode": markers / "encode-killed"}
    env = {"HSAE_RAY_FAULT": f"embed:2:{faults['embed']};encode:1:{faults['encode']}"}
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", runtime_env={"env_vars": env})
    yield ray, faults
    ray.shutdown()


@pytest.fixture(scope="module")
def ray_built(ray_session, frame, tmp_path_factory, isolated_cache):
    """The workspace built with --engine ray, embedding into a fresh cache (independent of the in-process one)."""
    from hsae_core.ray_engine import build_workspace_ray

    root = tmp_path_factory.mktemp("ray-ws")
    fresh_cache = tmp_path_factory.mktemp("ray-cache")
    old = os.environ["HSAE_CACHE_DIR"]
    os.environ["HSAE_CACHE_DIR"] = str(fresh_cache)
    try:
        ws = build_workspace_ray(
            root / "ws",
            frame=frame,
            text_col="text",
            m=M,
            k=K,
            seed=0,
            shard_rows=SHARD_ROWS,
            keep_work=True,
            name="ray test",
        )
    finally:
        os.environ["HSAE_CACHE_DIR"] = old
    return ws, root


def test_same_embeddings_and_codes_as_single_process(ray_built, frame, embedder, tmp_path):
    from hsae_core.embed import embed_texts
    from hsae_core.workspace import build_workspace

    ws, _ = ray_built
    kept = frame[frame["text"].str.strip() != ""]
    assert len(ws) == len(kept) == N_ROWS - 1 and ws.manifest["counts"]["dropped_empty_text"] == 1
    # Embeddings computed in this process, with MiniLM, from the session cache (not the Ray workers' cache).
    X_local = embed_texts(kept["text"].str.strip().tolist(), embedder)
    assert np.allclose(np.asarray(ws.embeddings), X_local, atol=1e-5)
    # The single-process build on the same embeddings trains the same SAE and gives exactly the same codes.
    full = np.zeros((len(frame), ws.embeddings.shape[1]), np.float32)
    full[kept.index.to_numpy()] = ws.embeddings
    local = build_workspace(tmp_path / "local", frame=frame, text_col="text", m=M, k=K, seed=0, embeddings=full)
    np.testing.assert_array_equal(local.sae.decoder_directions, ws.sae.decoder_directions)
    assert local.codes.shape == ws.codes.shape == (N_ROWS - 1, M_ALL)
    np.testing.assert_array_equal(local.codes.indptr, ws.codes.indptr)
    np.testing.assert_array_equal(local.codes.indices, ws.codes.indices)
    np.testing.assert_array_equal(local.codes.data, ws.codes.data)
    assert ws.manifest["sae"]["source"] == "trained"
    assert ws.manifest["embedding_model"] == "sentence-transformers/all-MiniLM-L6-v2"


def test_killed_workers_shards_are_redone(ray_built, ray_session):
    _, faults = ray_session
    ws, _ = ray_built
    # The hook really killed the workers holding shard 2's embedding and shard 1's encoding on their first attempt
    for marker in faults.values():
        assert marker.is_file() and "killed pid" in marker.read_text()
    # ... and Ray's retries redid them: those rows have embeddings and codes (equal to the single-process ones:
    # test_same_embeddings_and_codes_as_single_process).
    assert np.abs(np.asarray(ws.embeddings[200:])).sum(axis=1).min() > 0
    assert np.diff(ws.codes.indptr)[100:200].min() >= 1


def test_rerun_redoes_only_missing_shards(ray_built, ray_session, frame):
    from hsae_core.data import prepare_corpus
    from hsae_core.ray_engine import assemble, plan_shards, run_ray_stages

    ws, root = ray_built
    work = root / ".ws.ray"
    texts = prepare_corpus(frame, "text").texts
    [emb_dir] = [p for p in next(work.glob("table-*")).glob("emb-*")]
    [codes_dir] = list(emb_dir.glob("codes-*"))
    shards = plan_shards(len(texts), SHARD_ROWS)
    # A build killed mid-way: shard 0's codes never written, shard 2's embeddings half-written (a temp file only).
    shutil.rmtree(next((codes_dir / shards[0].name).glob("part-*")))
    emb_part = next((emb_dir / shards[2].name).glob("part-*"))
    os.replace(emb_part, emb_part.parent / f".tmp-{emb_part.name}-dead")
    untouched = {
        p: p.stat().st_mtime_ns
        for p in (next((emb_dir / shards[1].name).glob("part-*")), next((codes_dir / shards[1].name).glob("part-*")))
    }
    out = run_ray_stages(work, texts, m=M, k=K, seed=0, shard_rows=SHARD_ROWS, sae=ws.sae)
    assert out.ran == {"embed": [2], "encode": [0, 2]}  # re-embedded rows are encoded again
    assert {p: p.stat().st_mtime_ns for p in untouched} == untouched
    X, codes = assemble(out, root / "reassembled")
    assert np.allclose(np.asarray(X), np.asarray(ws.embeddings), atol=1e-5)
    assert codes.shape == ws.codes.shape
    assert (codes[:200] != ws.codes[:200]).nnz == 0


def test_workspace_opens_memory_mapped_and_answers_queries(ray_built):
    from hsae_core.features import FeatureExplorer
    from hsae_core.search import SteeredSearch
    from hsae_core.workspace import Workspace

    ws = Workspace.open(ray_built[0].path)
    assert _mapped(ws.codes.indices) and isinstance(ws.embeddings, np.memmap)
    explorer = FeatureExplorer(ws.codes, ws.sae.decoder_directions)
    latent = int(np.argmax(np.diff(explorer.csc.indptr)))
    top = explorer.top_documents(latent, n=5)
    assert len(top) == 5 and (top["activation"] > 0).all()
    search = SteeredSearch(np.asarray(ws.embeddings), ws.sae, ws.codes, index=ws.index)
    query = ws.embed_query("The pizza was cold and the waiter ignored us")
    result = search.search(query, k=10)
    assert len(result.ids) == 10 and len(result.query_latents) > 0
    steered = search.search(query, edits={int(result.query_latents[0]): 0.0}, k=10)
    assert steered.scores.shape == (10,)
    assert len(ws.features) == M_ALL and ws.index.ntotal == len(ws)


def test_cli_engine_ray_with_stored_embeddings(ray_built, frame, tmp_path, capsys):
    """`hsae build --engine ray` with a .npy beside the table: no embedding workers, same SAE, same codes."""
    from hsae_core.cli import main
    from hsae_core.workspace import Workspace

    ws, _ = ray_built
    table = tmp_path / "reviews.parquet"
    frame.to_parquet(table)
    np.save(tmp_path / "reviews.npy", np.asarray(ws.embeddings))  # one row per kept text, as `hsae embed` writes
    code = main(
        [
            "build",
            "--engine",
            "ray",
            "--data",
            str(table),
            "--text-col",
            "text",
            "--m",
            str(M),
            "--k",
            str(K),
            "--shard-rows",
            "300",
            "--out",
            str(tmp_path / "cli-ws"),
            "--device",
            "cpu",
        ]
    )
    assert code == 0, capsys.readouterr().err
    cli_ws = Workspace.open(tmp_path / "cli-ws")
    assert (cli_ws.codes != ws.codes).nnz == 0 and cli_ws.codes.nnz == ws.codes.nnz
    assert not (tmp_path / ".cli-ws.ray").exists(), "the work folder is removed after a successful build"


def test_missing_ray_is_one_line(monkeypatch):
    from hsae_core.ray_engine import require_ray

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(EngineError, match=r"pip install -e \.\[ray\]") as err:
        require_ray()
    assert "\n" not in str(err.value)


def test_parts_tile_a_shard_only_when_complete(tmp_path):
    from hsae_core.ray_engine import Shard, embedding_part_ok, part_name, save_npy_atomic, tile_parts

    shard, ok = Shard(3, 300, 400), embedding_part_ok(4)
    folder = tmp_path / shard.name
    for lo, hi in ((300, 350), (350, 400), (300, 320)):  # two pieces, and a stray one from an earlier attempt
        save_npy_atomic(folder / part_name(lo, hi, ".npy"), np.full((hi - lo, 4), lo, np.float32))
    assert [(lo, hi) for lo, hi, _ in tile_parts(folder, shard, ok)] == [(300, 350), (350, 400)]
    np.save(folder / part_name(350, 400, ".npy"), np.zeros((49, 4), np.float32))  # a truncated part
    assert tile_parts(folder, shard, ok) is None


def test_pieces_of_a_shard_are_encoded_as_the_whole_shard(ray_built, tmp_path):
    """Ray may hand a shard over in pieces (a single row even); the codes are still those of the whole shard."""
    from hsae_core.ray_engine import EncodeBatches

    ws, root = ray_built
    [emb_dir] = list(next((root / ".ws.ray").glob("table-*")).glob("emb-*"))
    ws.sae.save(tmp_path / "sae")
    config = json.loads((tmp_path / "sae" / "config.json").read_text())
    encode = EncodeBatches(
        config,
        (tmp_path / "sae" / "model.safetensors").read_bytes(),
        "cpu",
        str(emb_dir),
        str(tmp_path / "codes"),
        ws.embeddings.shape[1],
    )
    for rows in (np.arange(199, 200), np.arange(100, 199)):  # the last row first, then the rest
        encode({"shard": np.ones(len(rows), np.int64), "row": rows})
    [part] = (tmp_path / "codes" / "shard-00001").iterdir()
    assert part.name == "part-000000000100-000000000200"
    indptr, indices, data = (np.load(part / f"{a}.npy") for a in ("indptr", "indices", "data"))
    expected = ws.codes[100:200]
    np.testing.assert_array_equal(indptr, expected.indptr)
    np.testing.assert_array_equal(indices, expected.indices)
    np.testing.assert_array_equal(data, expected.data)
