""" "csLG with its corpus": the published SAE, the Hub dataset charlieoneill/csLG (id, title, abstract) and the
authors' vector store (an embeddings .npy beside pickled document lists), all from an offline Hugging Face
cache folder laid out as the Hub serves them; one `hsae build` command and one dashboard choice.

The texts are real arXiv abstracts; the "OpenAI" embeddings are test_corpora's deterministic TF-IDF projections.
The vector store's pickles are booby-trapped: unpickling them would create a marker file.
"""

from __future__ import annotations

import pathlib
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hf_cache import add_to_cache, commit_id, published_state_dict, save_state_dict
from streamlit.testing.v1 import AppTest
from test_corpora import pseudo_openai_embeddings
from ws_fixtures import finish_jobs

from hsae_core.cli import main
from hsae_core.corpora import PUBLISHED_CORPORA, load_published_corpus
from hsae_core.errors import DataError
from hsae_core.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]
SAE_REPO, SAE_FILE, SAE_NAME = "charlieoneill/embedding-saes", "csLG_16_3072_32.pth", "csLG_16_3072_32"
CORPUS = PUBLISHED_CORPORA["csLG"]
N_DOCS = 90


class _Trap:
    """Unpickling this touches a marker file: proof that nothing reads the vector store's pickles."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


@pytest.fixture(scope="module")
def cslg(shared_data, tmp_path_factory):
    """(papers frame, 1536-d embeddings in dataset order, folder with the files to put in a cache)."""
    df = pd.read_csv(shared_data / "arxiv_cs_categories_small" / "arxiv_data.csv").iloc[:N_DOCS]
    papers = pd.DataFrame(
        {"id": [f"24{i:02d}.{i:05d}" for i in range(N_DOCS)], "title": df["title"], "abstract": df["summary"]}
    )
    X = pseudo_openai_embeddings((papers["title"] + "\n\n" + papers["abstract"]).tolist())
    folder = tmp_path_factory.mktemp("cslg-files")
    papers.iloc[:50].to_parquet(folder / "train-00000-of-00002.parquet", index=False)
    papers.iloc[50:].to_parquet(folder / "train-00001-of-00002.parquet", index=False)
    np.save(folder / "embeddings_matrix.npy", X)
    save_state_dict(published_state_dict(n=3072, d=1536, seed=5), folder / SAE_FILE)
    return papers, X, folder


@pytest.fixture
def cslg_cache(offline_cache, cslg, tmp_path):
    """The offline cache: the SAE, the csLG dataset (two Parquet shards) and the vector store with pickles."""
    papers, X, folder = cslg
    marker = tmp_path / "UNPICKLED"
    trap = pickle.dumps(_Trap(marker))
    add_to_cache(offline_cache, SAE_REPO, {SAE_FILE: folder / SAE_FILE}, commit=commit_id("sae"))
    add_to_cache(
        offline_cache,
        CORPUS.dataset,
        {
            "data/train-00000-of-00002.parquet": folder / "train-00000-of-00002.parquet",
            "data/train-00001-of-00002.parquet": folder / "train-00001-of-00002.parquet",
            "README.md": b"# csLG\n",
        },
        repo_type="dataset",
        commit=commit_id("cslg-data"),
    )
    add_to_cache(
        offline_cache,
        CORPUS.embeddings_repo,
        {
            CORPUS.embeddings_file: folder / "embeddings_matrix.npy",
            "documents.pkl": trap,
            "document_index.pkl": trap,
            "index_mapping.pkl": trap,
        },
        repo_type="dataset",
        commit=commit_id("cslg-vs"),
    )
    return marker


def test_loader_joins_texts_and_stored_embeddings_in_order(cslg, cslg_cache):
    papers, X, _ = cslg
    frame, E = load_published_corpus("csLG")
    assert list(frame.columns) == ["text", "id", "title", "abstract"] and len(frame) == N_DOCS
    assert frame["text"].iloc[3] == papers["title"].iloc[3] + "\n\n" + papers["abstract"].iloc[3]
    np.testing.assert_array_equal(E, X)
    head, E_head = load_published_corpus("cslg", max_rows=60)  # crosses the shard boundary at 50
    assert head["id"].tolist() == papers["id"].iloc[:60].tolist() and E_head.shape == (60, 1536)
    np.testing.assert_array_equal(E_head, X[:60])
    assert not cslg_cache.exists(), "a vector-store pickle was unpickled"


def test_one_build_command_for_cslg_with_its_corpus(cslg, cslg_cache, tmp_path, capsys):
    papers, X, _ = cslg
    out = tmp_path / "ws"
    assert main(["build", "--corpus", "csLG", "--sae", SAE_NAME, "--max-rows", "70", "--out", str(out)]) == 0
    assert "Workspace ready" in capsys.readouterr().out
    ws = Workspace.open(out)
    assert len(ws) == 70 and ws.text_col == "text" and ws.overview()["source"] == "pretrained"
    assert ws.sae.config_.m == 3072 and ws.embedding_model == "openai/text-embedding-3-small"
    np.testing.assert_array_equal(ws.embeddings, X[:70])
    assert ws.frame["title"].tolist() == papers["title"].iloc[:70].tolist()
    assert ws.has_layout and ws.features["n_active"].sum() > 0
    assert not cslg_cache.exists()


def test_misaligned_or_missing_vector_store_is_one_line(cslg, offline_cache, tmp_path, capsys):
    papers, X, folder = cslg
    add_to_cache(
        offline_cache,
        CORPUS.dataset,
        {"data/train.parquet": folder / "train-00000-of-00002.parquet"},
        repo_type="dataset",
        commit=commit_id("half"),
    )
    with pytest.raises(DataError, match="cs-embeddings/embeddings_matrix.npy is not in the local Hugging Face cache"):
        load_published_corpus("csLG")
    np.save(tmp_path / "all.npy", X)  # 90 rows for a 50-row dataset
    assert (
        main(["build", "--corpus", "csLG", "--embeddings", str(tmp_path / "all.npy"), "--out", str(tmp_path / "ws")])
        == 2
    )
    err = capsys.readouterr().err
    assert "stored embeddings have 90 rows but charlieoneill/csLG has 50" in err and err.count("\n") == 1
    with pytest.raises(DataError, match="Unknown published corpus 'astro'"):
        load_published_corpus("astro")


def test_dashboard_opens_cslg_with_its_corpus_in_one_choice(cslg, cslg_cache, tmp_path, monkeypatch):
    monkeypatch.delenv("HSAE_WORKSPACE", raising=False)
    monkeypatch.delenv("HSAE_DATA_DIR", raising=False)
    monkeypatch.setenv("HSAE_WORKSPACES_DIR", str(tmp_path / "workspaces"))
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=300)
    at.run()
    at.selectbox(key="pre_pick").set_value(SAE_NAME).run()
    assert at.radio(key="pre_source").value == "Its published corpus", "the SAE's own corpus is the first choice"
    at.number_input(key="pre_own_rows").set_value(40)
    finish_jobs(at.button(key="pre_build").click().run())
    assert not at.error, [e.value for e in at.error]
    assert {m.label: m.value for m in at.metric}["Documents"] == "40"
    ws = Workspace.open(next(p for p in (tmp_path / "workspaces").iterdir() if p.is_dir()))  # beside it: its lock
    np.testing.assert_array_equal(ws.embeddings, cslg[1][:40])
    assert not cslg_cache.exists()
