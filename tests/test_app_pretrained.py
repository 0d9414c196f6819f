"""The dashboard's "Open a pretrained SAE": the published csLG SAE from an offline Hugging Face cache folder over
real arXiv abstracts with a stored 1536-d embedding column, then the Features and Search pages on the result.

The "OpenAI" embeddings are the deterministic TF-IDF projections of tests/test_corpora.py (no OpenAI access here).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hf_cache import add_to_cache, commit_id, published_state_dict, save_state_dict
from streamlit.testing.v1 import AppTest
from test_corpora import pseudo_openai_embeddings
from ws_fixtures import finish_jobs

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 300
SAE_REPO, SAE_FILE, SAE_NAME = "charlieoneill/embedding-saes", "csLG_16_3072_32.pth", "csLG_16_3072_32"
N_DOCS = 120


@pytest.fixture(scope="module")
def arxiv_table(shared_data, tmp_path_factory):
    """(frame, embeddings, parquet path): 120 real arXiv abstracts with a 1536-d `embedding` column."""
    df = pd.read_csv(shared_data / "arxiv_cs_categories_small" / "arxiv_data.csv").iloc[:N_DOCS]
    df = df.rename(columns={"summary": "abstract"}).reset_index(drop=True)
    X = pseudo_openai_embeddings(df["abstract"].tolist())
    path = tmp_path_factory.mktemp("arxiv") / "arxiv-abstracts.parquet"
    df.assign(embedding=list(X)).to_parquet(path)
    return df, X, path


@pytest.fixture(scope="module")
def sae_file(tmp_path_factory):
    return save_state_dict(published_state_dict(n=3072, d=1536, seed=5), tmp_path_factory.mktemp("sae") / SAE_FILE)


@pytest.fixture
def offline_hub(tmp_path, monkeypatch, sae_file):
    """An HF cache holding only csLG_16_3072_32.pth, downloads off, no workspace yet and no demo data."""
    cache = tmp_path / "hf-cache"
    add_to_cache(cache, SAE_REPO, {SAE_FILE: sae_file}, commit=commit_id("app-pretrained"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_HOME", raising=False)
    monkeypatch.delenv("HSAE_WORKSPACE", raising=False)
    monkeypatch.delenv("HSAE_DATA_DIR", raising=False)
    monkeypatch.setenv("HSAE_WORKSPACES_DIR", str(tmp_path / "workspaces"))
    return cache


def overview() -> AppTest:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    return at


def table_by_key(at: AppTest, key: str, position: int):
    for element in at.dataframe:  # pages may suffix a key per query or feature (baseline_results_1a2b3c4d)
        if element.proto.id.endswith("-" + key) or f"-{key}_" in element.proto.id:
            return element.value
    return at.dataframe[position].value


def build(at: AppTest) -> AppTest:
    """Click Build (ticking "Replace" first, as a user must, under the name of a workspace built before) and wait
    for the background build to finish and be shown."""
    replace = [c for c in at.checkbox if c.key == "pre_replace"]
    if replace and not replace[0].value:
        assert at.button(key="pre_build").disabled, "a taken name is not built over without the box"
        replace[0].check().run()
    at.button(key="pre_build").click().run()
    assert not at.exception, at.exception
    return finish_jobs(at)


def metrics(at: AppTest) -> dict:
    return {m.label: m.value for m in at.metric}


def test_upload_builds_workspace_then_features_and_search_work_without_a_key(offline_hub, arxiv_table):
    df, X, path = arxiv_table
    at = overview()
    assert not at.metric, "no workspace yet"
    picker = at.selectbox(key="pre_pick")
    # Options show k, n, domain and the embedding model each SAE needs.
    assert f"{SAE_NAME}: k=16, n=3072 latents, csLG (needs 1536-d openai/text-embedding-3-small)" in picker.options
    assert len(picker.options) >= 10
    picker.set_value(SAE_NAME).run()
    assert any("hub:charlieoneill/embedding-saes/csLG_16_3072_32.pth" in c.value for c in at.caption)
    at.radio(key="pre_source").set_value("Upload a table").run()
    at.file_uploader(key="pre_upload").set_value((path.name, path.read_bytes(), "application/octet-stream")).run()
    assert not at.exception, at.exception
    # The text and embedding columns are guessed from their names.
    assert at.selectbox(key="pre_text_col").value == "abstract"
    assert at.selectbox(key="pre_emb_col").value == "embedding"
    build(at)
    assert not [e.value for e in at.error if "Build failed" in e.value]
    assert any("3,072 pretrained features" in s.value for s in at.success)
    shown = metrics(at)
    assert shown["Documents"] == "120" and shown["SAE shape"] == "m=3072, k=16"
    assert any("openai/text-embedding-3-small (1536-d)" in m.value for m in at.markdown)
    assert len(table_by_key(at, "corpus_head", 0)) == 20

    at.switch_page("pages/1_Features.py").run()
    assert not at.exception, at.exception
    features = table_by_key(at, "feature_table", 0)
    assert len(features) == 3072 and features["density"].max() > 0

    at.switch_page("pages/2_Search.py").run()
    assert not at.exception, at.exception
    at.radio(key="search_mode").set_value("More like this document").run()
    at.number_input(key="search_doc").set_value(3).run()
    assert not at.exception, at.exception
    hits = table_by_key(at, "baseline_results", 1)
    assert 3 not in hits["doc"].tolist() and len(hits) == 10  # the query document itself is left out
    # Neighbours by stored embedding: the top hits really are the closest other abstracts by cosine.
    cos = X @ X[3]
    assert set(hits["doc"].iloc[:5]) == set([d for d in np.argsort(-cos).tolist() if d != 3][:5])
    assert [s for s in at.slider if s.key.startswith("steer_")], "the document's features become sliders"

    at.radio(key="search_mode").set_value("Typed text").run()
    at.text_input(key="search_text").input("diffusion models for perception").run()
    assert not at.exception, at.exception
    assert any("OPENAI_API_KEY" in e.value for e in at.error)


def test_hub_dataset_corpus_is_prefilled_from_the_registry(offline_hub, arxiv_table, tmp_path):
    df, X, _ = arxiv_table
    data = tmp_path / "train-00000-of-00001.parquet"
    df.assign(embed=list(X)).to_parquet(data)
    add_to_cache(offline_hub, "charlieoneill/csLG", {"data/train-00000-of-00001.parquet": data}, repo_type="dataset")
    at = overview()
    at.radio(key="pre_source").set_value("Hugging Face dataset").run()
    assert at.text_input(key="pre_dataset").value == "charlieoneill/csLG"  # the SAE's own corpus, from the registry
    at.text_input(key="pre_ws_name").input("cslg-from-hub").run()
    build(at)
    assert not [e.value for e in at.error if "Build failed" in e.value]
    assert metrics(at)["Documents"] == "120"
    assert Path(at.session_state["workspace_path"]).name == "cslg-from-hub"


def test_bad_choices_are_one_line_errors_and_the_open_workspace_stays(offline_hub, arxiv_table, tmp_path):
    df, X, path = arxiv_table
    at = overview()
    at.radio(key="pre_source").set_value("Table on this machine").run()
    at.text_input(key="pre_path").input(str(path)).run()
    build(at)  # a good workspace first, so that we can see it survive the failures below
    opened = at.session_state["workspace_path"]
    assert metrics(at)["SAE shape"] == "m=3072, k=16"

    def failed(expected: str):
        errors = [e.value for e in at.error if "Build failed" in e.value]
        assert len(errors) == 1 and expected in errors[0], errors
        assert "\n" not in errors[0] and "Traceback" not in errors[0]
        assert at.session_state["workspace_path"] == opened
        assert metrics(at)["Documents"] == "120" and metrics(at)["SAE shape"] == "m=3072, k=16"

    # An unknown name lists the known ones.
    at.radio(key="pre_how").set_value("Type a spec or folder").run()
    at.text_input(key="pre_spec").input("csLG_99_3072_32").run()
    build(at)
    failed("Unknown pretrained SAE 'csLG_99_3072_32'")
    failed(f"e.g. {SAE_NAME}")

    # A published SAE that the offline cache does not hold.
    at.radio(key="pre_how").set_value("Published SAE").run()
    at.selectbox(key="pre_pick").set_value("csLG_16_4608_32").run()
    build(at)
    failed("csLG_16_4608_32.pth is not in the local Hugging Face cache")

    # Stored embeddings of the wrong width name the model the SAE needs.
    at.selectbox(key="pre_pick").set_value(SAE_NAME).run()
    narrow = tmp_path / "narrow.parquet"
    df.assign(embedding=list(X[:, :384])).to_parquet(narrow)
    at.text_input(key="pre_path").input(str(narrow)).run()
    build(at)
    failed("expects 1536-d embeddings from openai/text-embedding-3-small; got 384-d")

    # A column that holds no vectors, and a column that holds no text.
    at.text_input(key="pre_path").input(str(path)).run()
    at.selectbox(key="pre_emb_col").set_value("title").run()
    build(at)
    failed("Embedding column 'title', row 0: the text is not a JSON list of numbers")
    at.selectbox(key="pre_emb_col").set_value("embedding").run()
    numbers_only = tmp_path / "numbers.parquet"
    pd.DataFrame({"score": np.arange(N_DOCS, dtype=float), "embedding": list(X)}).to_parquet(numbers_only)
    at.text_input(key="pre_path").input(str(numbers_only)).run()
    assert at.selectbox(key="pre_emb_col").value == "embedding"
    at.selectbox(key="pre_text_col").set_value("score").run()
    build(at)
    failed("Column 'score' holds no text")

    # A path that does not exist is refused before any building.
    at.text_input(key="pre_path").input(str(tmp_path / "missing.parquet")).run()
    assert not at.exception and any("No file at" in e.value for e in at.error)
    assert metrics(at)["Documents"] == "120"
