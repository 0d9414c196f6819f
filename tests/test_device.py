"""--device auto|cpu|cuda: CPU always tested (auto == cpu here, identical results); CUDA checks run only where a
GPU is present (skipped on CPU machines)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hsae_core.cli import main
from hsae_core.device import resolve_device
from hsae_core.errors import ModelError
from hsae_core.sae import SparseAutoencoder

HAS_CUDA = torch.cuda.is_available()


def test_resolve_device():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if HAS_CUDA else "cpu")
    assert resolve_device(None) == resolve_device("auto")
    with pytest.raises(ModelError, match="`device` must be one of"):
        resolve_device("gpu")


@pytest.mark.skipif(HAS_CUDA, reason="this machine has CUDA")
def test_cuda_without_cuda_is_one_line():
    with pytest.raises(ModelError, match="CUDA is not available") as err:
        resolve_device("cuda")
    assert "\n" not in str(err.value)
    with pytest.raises(ModelError, match="CUDA is not available"):
        SparseAutoencoder(m=16, k=2, device="cuda").fit(np.zeros((10, 4), np.float32))


@pytest.mark.skipif(HAS_CUDA, reason="this machine has CUDA")
@pytest.mark.parametrize(
    "command",
    [
        ["embed", "--data", "X.csv", "--text-col", "text", "--out", "out.npy"],
        ["train", "--embeddings", "X.npy", "--out", "sae"],
        ["build", "--data", "X.csv", "--text-col", "text", "--out", "ws"],
        ["hypothesize", "--data", "X.csv", "--text-col", "text", "--target-col", "y", "--out", "run"],
    ],
)
def test_cli_device_cuda_without_cuda_exits_2(command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # nothing is read: the device is checked before any work
    assert main(command + ["--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hsae: error: --device is 'cuda' but CUDA is not available") and "\n" not in err
    assert list(tmp_path.iterdir()) == []


def test_sae_cpu_and_auto_agree(yelp_embedded):
    X = yelp_embedded[2][:400]
    cpu, auto = (SparseAutoencoder(m=64, k=4, max_epochs=3, seed=3, device=d).fit(X) for d in ("cpu", "auto"))
    a, b = cpu.transform(X), auto.transform(X)
    if not HAS_CUDA:  # auto is the CPU here: the very same model
        np.testing.assert_array_equal(cpu.decoder_directions, auto.decoder_directions)
        assert (a != b).nnz == 0
        assert cpu.score(X) == auto.score(X)
        return
    # The same initial weights and batches on two devices: equal up to float32 rounding (measured on an H100:
    # decoder weights within 2.2e-7 after 3 epochs), so nearly every row keeps the same active latents.
    np.testing.assert_allclose(cpu.decoder_directions, auto.decoder_directions, atol=1e-4)
    same_rows = np.mean([set(a[i].indices) == set(b[i].indices) for i in range(a.shape[0])])
    assert same_rows >= 0.95
    assert auto.score(X) == pytest.approx(cpu.score(X), rel=1e-3)


def test_embedder_cpu_and_auto_identical(yelp_frames):
    from hsae_core.embed import default_embedder, embed_texts

    texts = yelp_frames[0]["text"].tolist()[:24]
    cpu, auto = default_embedder("cpu"), default_embedder("auto")
    if not HAS_CUDA:
        assert auto.cache_id == cpu.cache_id == f"{cpu.model_id}@unpadded"  # apart from padded-batch vectors
    a = embed_texts(texts, cpu, use_cache=False)
    b = embed_texts(texts, auto, use_cache=False)
    assert a.dtype == b.dtype == np.float32
    if HAS_CUDA:  # half precision on the GPU: close, not equal
        assert auto.cache_id.endswith("@fp16")
        assert np.allclose(a, b, atol=5e-3)
    else:
        np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_cuda_sae_saves_cpu_weights_and_loads_on_cpu(yelp_embedded, tmp_path):
    X = yelp_embedded[2][:400]
    gpu = SparseAutoencoder(m=64, k=4, max_epochs=3, seed=3, device="cuda").fit(X)
    gpu.save(tmp_path / "sae")
    cpu = SparseAutoencoder.load(tmp_path / "sae", device="cpu")
    assert cpu.model_.W_dec.device.type == "cpu"
    a, b = gpu.transform(X), cpu.transform(X)
    assert a.shape == b.shape and abs(a.nnz - b.nnz) <= 0.01 * a.nnz
    assert np.allclose(gpu.decoder_directions, cpu.decoder_directions)


def test_embedder_batch_follows_the_device():
    from hsae_core.embed import default_embedder

    assert default_embedder("cpu").effective_batch_size == 64
    assert default_embedder("auto").effective_batch_size == (256 if HAS_CUDA else 64)
    chosen = default_embedder("auto")
    chosen.batch_size = 8  # a batch the caller sets is kept on any device
    assert chosen.effective_batch_size == 8
