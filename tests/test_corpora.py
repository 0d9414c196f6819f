"""Corpora with stored embeddings: a table's vector column, a Hub dataset read offline from a cache folder,
and the issue's done-when: `hsae build --sae hub:charlieoneill/embedding-saes/csLG_16_3072_32.pth` over a
table of real arXiv abstracts with a 1536-d embedding column, then the workspace used without OPENAI_API_KEY.

We have no OpenAI access, so the 1536-d "OpenAI" embeddings are synthetic but deterministic and
text-dependent: L2-normalised TF-IDF of each abstract through a fixed Gaussian projection to 1536-d
(cosines are preserved up to small noise, so similar abstracts stay close).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hf_cache import add_to_cache, commit_id, published_state_dict, save_state_dict

from hsae_core.corpora import embeddings_from_column, load_hub_corpus
from hsae_core.errors import DataError, HsaeError

REPO_ROOT = Path(__file__).resolve().parents[1]
SAE_REPO, SAE_FILE = "charlieoneill/embedding-saes", "csLG_16_3072_32.pth"
N_DOCS = 120


def pseudo_openai_embeddings(texts, d: int = 1536, seed: int = 7) -> np.ndarray:
    from sklearn.feature_extraction.text import TfidfVectorizer

    tfidf = TfidfVectorizer(sublinear_tf=True, stop_words="english").fit_transform(texts)
    proj = np.random.default_rng(seed).normal(size=(tfidf.shape[1], d)).astype(np.float32)
    X = np.asarray(tfidf @ proj, dtype=np.float32)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def arxiv(shared_data):
    df = pd.read_csv(shared_data / "arxiv_cs_categories_small" / "arxiv_data.csv").iloc[:N_DOCS]
    df = df.rename(columns={"summary": "abstract"}).reset_index(drop=True)
    return df, pseudo_openai_embeddings(df["abstract"].tolist())


# ------------------------------------------------------------------------------- embeddings_from_column
def test_embedding_cells_as_lists_arrays_or_json_give_the_same_matrix():
    rows = np.arange(12, dtype=np.float64).reshape(3, 4) / 7
    as_lists = pd.DataFrame({"e": [list(r) for r in rows]})
    as_arrays = pd.DataFrame({"e": [r.copy() for r in rows]})
    as_json = pd.DataFrame({"e": [json.dumps(list(r)) for r in rows]})
    for df in (as_lists, as_arrays, as_json):
        X = embeddings_from_column(df, "e")
        assert X.dtype == np.float32 and X.shape == (3, 4)
        np.testing.assert_allclose(X, rows, rtol=1e-6)


def test_parquet_list_column_round_trips(tmp_path, arxiv):
    df, X = arxiv
    path = tmp_path / "t.parquet"
    df.assign(embedding=list(X[:, :8].astype(np.float64))).to_parquet(path)
    back = embeddings_from_column(pd.read_parquet(path), "embedding")
    np.testing.assert_allclose(back, X[:, :8], rtol=1e-6)


@pytest.mark.parametrize(
    "cells, message",
    [
        ([[1.0, 2.0], [1.0, 2.0, 3.0]], r"ragged: row 0 has 2 numbers but row 1 has 3"),
        ([[1.0, 2.0], ["a", "b"]], r"row 1 is not a list of numbers"),
        ([[1.0, 2.0], None], r"row 1 has no embedding"),
        (["[1, 2]", "not json"], r"row 1: the text is not a JSON list of numbers"),
        ([[1.0, float("nan")], [1.0, 2.0]], r"row 0 contains NaN"),
        ([[[1.0], [2.0]], [[1.0], [2.0]]], r"row 0 is not a flat vector"),
    ],
)
def test_bad_embedding_cells_give_one_clear_error(cells, message):
    with pytest.raises(DataError, match=message) as info:
        embeddings_from_column(pd.DataFrame({"e": pd.Series(cells, dtype=object)}), "e")
    assert "\n" not in str(info.value)


def test_missing_embedding_column_lists_the_columns():
    with pytest.raises(DataError, match=r"No embedding column 'emb'.*columns are: text, vec"):
        embeddings_from_column(pd.DataFrame({"text": ["a"], "vec": [[1.0]]}), "emb")


# ------------------------------------------------------------------------------- Hub datasets
def test_hub_dataset_with_stored_embeddings_loads_offline(tmp_path, arxiv, offline_cache):
    df, X = arxiv
    table = df.assign(embed=list(X))
    half = N_DOCS // 2
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    table.iloc[:half].to_parquet(a)
    table.iloc[half:].to_parquet(b)
    add_to_cache(
        offline_cache,
        "charlieoneill/csLG",
        {
            "data/train-00000-of-00002.parquet": a,
            "data/train-00001-of-00002.parquet": b,
            "README.md": b"# csLG\n",
            "dataset_info.json": b'{"features": {}}',
        },
        repo_type="dataset",
        commit=commit_id("csLG"),
    )
    frame, emb = load_hub_corpus("charlieoneill/csLG")
    assert frame.columns[0] == "abstract" and "embed" not in frame.columns
    assert frame["abstract"].tolist() == df["abstract"].tolist()
    np.testing.assert_allclose(emb, X, rtol=1e-6)

    one, emb_one = load_hub_corpus("charlieoneill/csLG", filename="data/train-00001-of-00002.parquet", text_col="title")
    assert one.columns[0] == "title" and len(one) == N_DOCS - half
    np.testing.assert_allclose(emb_one, X[half:], rtol=1e-6)

    with pytest.raises(DataError, match="no embedding column 'vectors'"):
        load_hub_corpus("charlieoneill/csLG", embedding_col="vectors")


def test_hub_dataset_as_jsonl_without_embeddings(tmp_path, arxiv, offline_cache):
    df, _ = arxiv
    lines = "\n".join(json.dumps({"text": t, "category": c}) for t, c in zip(df["abstract"], df["category"]))
    add_to_cache(offline_cache, "someone/abstracts", {"train.jsonl": lines.encode()}, repo_type="dataset")
    frame, emb = load_hub_corpus("someone/abstracts")
    assert emb is None and frame.columns[0] == "text" and len(frame) == N_DOCS


def test_absent_hub_dataset_offline_says_so(offline_cache):
    with pytest.raises(HsaeError, match=r"dataset nobody/nothing is not in the local Hugging Face cache"):
        load_hub_corpus("nobody/nothing")


# ------------------------------------------------------------------------------- done-when, end to end
def _run_cli(args, env, cwd):
    return subprocess.run(
        [sys.executable, "-m", "hsae_core.cli", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=600
    )


def test_build_with_published_sae_and_stored_embeddings_then_use_workspace_without_key(tmp_path, arxiv, offline_cache):
    from hsae_core.search import SteeredSearch
    from hsae_core.workspace import Workspace

    df, X = arxiv
    sae_file = save_state_dict(published_state_dict(n=3072, d=1536, seed=5), tmp_path / SAE_FILE)
    commit = commit_id("published-e2e")
    add_to_cache(offline_cache, SAE_REPO, {SAE_FILE: sae_file}, commit=commit)
    data = tmp_path / "table.parquet"
    df.assign(embedding=list(X)).to_parquet(data)

    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    env.update(HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(offline_cache))
    ws_dir = tmp_path / "WS"
    done = _run_cli(
        [
            "build",
            "--sae",
            f"hub:{SAE_REPO}/{SAE_FILE}",
            "--data",
            str(data),
            "--embedding-col",
            "embedding",
            "--text-col",
            "abstract",
            "--out",
            str(ws_dir),
        ],
        env,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]

    ws = Workspace.open(ws_dir)
    assert len(ws) == N_DOCS and ws.embedding_model == "openai/text-embedding-3-small"
    assert ws.sae.config_.m == 3072 and ws.sae.config_.k == 16 and ws.sae.d_in == 1536
    assert ws.sae.source_["repo_id"] == SAE_REPO and ws.sae.source_["revision"] == commit
    codes = ws.codes
    assert codes.shape == (N_DOCS, 3072) and np.diff(codes.indptr).max() <= 16
    assert (codes != ws.sae.transform(np.asarray(ws.embeddings))).nnz == 0
    assert len(ws.features) > 0

    # "More like this document": the document itself is the top hit, and its neighbours share features.
    search = SteeredSearch(np.asarray(ws.embeddings), ws.sae, codes, index=ws.index)
    result = search.search(np.asarray(ws.embeddings[3]), k=5)
    assert int(result.ids[0]) == 3 and len(result.query_latents) > 0
    # Typed queries need the key, and say so.
    with pytest.raises(HsaeError, match="OPENAI_API_KEY"):
        ws.embed_query("diffusion models for perception")

    # Without stored embeddings the 384-d default embedder is refused before any work, naming the model needed.
    refused = _run_cli(
        [
            "build",
            "--sae",
            f"hub:{SAE_REPO}/{SAE_FILE}",
            "--data",
            str(data),
            "--text-col",
            "abstract",
            "--out",
            str(tmp_path / "WS2"),
        ],
        env,
        tmp_path,
    )
    assert refused.returncode == 2
    # (sentence-transformers may draw a model-loading bar above it; the error itself is one line)
    err = refused.stderr.strip().splitlines()[-1]
    assert err.startswith("hsae: error: ") and "Traceback" not in refused.stderr
    assert "expects 1536-d embeddings from openai/text-embedding-3-small; got 384-d" in err
