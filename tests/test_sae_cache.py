"""The SAE cache: an identical training is loaded, anything that changes training retrains, bad entries heal."""

from __future__ import annotations

import numpy as np
import pytest

from hsae_core.sae import SparseAutoencoder
from hsae_core.sae_cache import cache_key, cache_root, fit_cached


@pytest.fixture
def X():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 24)).astype(np.float32)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def small(**kw) -> SparseAutoencoder:
    return SparseAutoencoder(**{"m": 16, "k": 2, "max_epochs": 3, "seed": 0, **kw})


def test_identical_training_is_loaded_not_repeated(X, tmp_path, monkeypatch):
    monkeypatch.setenv("HSAE_CACHE_DIR", str(tmp_path))
    first = fit_cached(small(), X)
    second = fit_cached(small(), X)
    assert first.cached_ is False and second.cached_ is True
    np.testing.assert_array_equal(first.decoder_directions, second.decoder_directions)
    assert (first.transform(X) != second.transform(X)).nnz == 0
    assert second.metrics_["epochs"] == first.metrics_["epochs"]
    assert len(list(cache_root().iterdir())) == 1


def test_anything_that_shapes_training_changes_the_key(X):
    base = cache_key(X, small().get_params())
    assert cache_key(X, small(seed=1).get_params()) != base
    assert cache_key(X, small(matryoshka=(4,)).get_params()) != base
    assert cache_key(X, small(lr=1e-3).get_params()) != base
    assert cache_key(X[:-1], small().get_params()) != base
    X2 = X.copy()
    X2[0, 0] += 1e-3
    assert cache_key(X2, small().get_params()) != base
    assert cache_key(X.copy(), small().get_params()) == base


def test_corrupt_entry_is_retrained_and_replaced(X, tmp_path, monkeypatch):
    monkeypatch.setenv("HSAE_CACHE_DIR", str(tmp_path))
    fit_cached(small(), X)
    (entry,) = cache_root().iterdir()
    (entry / "model.safetensors").write_bytes(b"not weights")
    again = fit_cached(small(), X)
    assert again.cached_ is False
    assert fit_cached(small(), X).cached_ is True  # the entry was rewritten


def test_unwritable_cache_still_trains(X, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("HSAE_CACHE_DIR", str(blocker))
    sae = fit_cached(small(), X)
    assert sae.cached_ is False and sae.transform(X).shape == (300, 16)


def test_use_cache_false_always_trains(X, tmp_path, monkeypatch):
    monkeypatch.setenv("HSAE_CACHE_DIR", str(tmp_path))
    fit_cached(small(), X)
    assert fit_cached(small(), X, use_cache=False).cached_ is False
