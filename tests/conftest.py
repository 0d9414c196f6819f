"""Shared fixtures: real data from ../shared/data (or $HSAE_DATA_DIR), embedded once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    env = os.environ.get("HSAE_DATA_DIR")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = data_dir()
    if not (path / "yelp_reviews_demo").is_dir():
        pytest.fail(f"Real test data not found at {path}; put ../shared/data beside the checkout or set HSAE_DATA_DIR")
    return path


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """Every test session gets its own embedding/LLM cache, so tests never read a developer's cache."""
    cache = tmp_path_factory.mktemp("hsae-cache")
    old = os.environ.get("HSAE_CACHE_DIR")
    os.environ["HSAE_CACHE_DIR"] = str(cache)
    os.environ.pop("OPENAI_API_KEY", None)
    os.environ.pop("OPENAI_BASE_URL", None)
    yield cache
    if old is None:
        os.environ.pop("HSAE_CACHE_DIR", None)
    else:
        os.environ["HSAE_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def yelp_frames(shared_data) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Small real Yelp splits: the first 800 rows of the val file (train) and 400 of the holdout file."""
    folder = shared_data / "yelp_reviews_demo"
    train = pd.read_json(folder / "yelp-demo-val-2K.jsonl", lines=True).iloc[:800].reset_index(drop=True)
    hold = pd.read_json(folder / "yelp-demo-holdout-2K.jsonl", lines=True).iloc[:400].reset_index(drop=True)
    return train, hold


@pytest.fixture(scope="module")
def yelp_files(yelp_embedded, tmp_path_factory):
    """The session's small Yelp splits as files (their embeddings are already in the session cache)."""
    train, hold, _, _ = yelp_embedded
    folder = tmp_path_factory.mktemp("yelp")
    train.to_json(folder / "train.jsonl", orient="records", lines=True, date_format="iso")
    hold.to_json(folder / "holdout.jsonl", orient="records", lines=True, date_format="iso")
    return folder / "train.jsonl", folder / "holdout.jsonl"


@pytest.fixture(scope="session")
def embedder():
    from hsae_core.embed import default_embedder

    return default_embedder()


@pytest.fixture(scope="session")
def yelp_embedded(yelp_frames, embedder, isolated_cache):
    """(train_df, hold_df, X_train, X_hold) with MiniLM embeddings, computed once per session (and cached on disk)."""
    from hsae_core.embed import embed_texts

    train, hold = yelp_frames
    X_train = embed_texts(train["text"].tolist(), embedder)
    X_hold = embed_texts(hold["text"].tolist(), embedder)
    return train, hold, X_train, X_hold


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache folder selected through HF_HUB_CACHE, with downloads switched off."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_HOME", raising=False)
    return cache
