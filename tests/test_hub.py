"""Pretrained SAEs through the real Hugging Face loading path, offline, from cache folders the tests build.

The main case uses the exact published repo, file name and state-dict layout of the scientific-paper
SAEs (charlieoneill/embedding-saes, csLG_16_3072_32.pth: 3072 latents over 1536-d embeddings).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from cli_process import cli_imports
from hf_cache import add_to_cache, commit_id, published_state_dict, save_state_dict

from hsae_core.errors import ModelError
from hsae_core.hub import check_compatible, load_sae, model_card, push_sae, registry
from hsae_core.sae import SparseAutoencoder

REPO = "charlieoneill/embedding-saes"
FILE = "csLG_16_3072_32.pth"
COMMIT = commit_id("published")


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """(state dict, path of the .pth) in the published format, built once per module (~38 MB, in tmp)."""
    state = published_state_dict(n=3072, d=1536, seed=1)
    path = save_state_dict(state, tmp_path_factory.mktemp("published") / FILE)
    return state, path


def reference_codes(state, X, k):
    """The published forward pass written out in numpy: relu(topk(enc(x - pre_bias) + latent_bias))."""
    enc, pre, lat = (state[key].numpy().astype(np.float64) for key in ("encoder.weight", "pre_bias", "latent_bias"))
    pre_act = (X - pre) @ enc.T + lat
    top = np.argpartition(-pre_act, k - 1, axis=1)[:, :k]
    dense = np.zeros_like(pre_act)
    rows = np.arange(len(X))[:, None]
    dense[rows, top] = np.maximum(pre_act[rows, top], 0)
    return dense


def test_registry_lists_every_published_size_of_both_domains():
    entries = registry()
    names = {e["name"] for e in entries}
    for domain in ("csLG", "astroPH"):
        for k in (16, 32, 64, 128):
            for n in (3072, 4608, 6144, 9216, 12288):
                assert f"{domain}_{k}_{n}_{2 * k}" in names
    e = next(e for e in entries if e["name"] == "csLG_64_9216_128")
    assert (e["repo_id"], e["filename"], e["d_in"], e["k"], e["n"]) == (REPO, "csLG_64_9216_128.pth", 1536, 64, 9216)
    assert e["embedding_model"] == "openai/text-embedding-3-small" and e["architecture"] == "topk_sae"
    assert e["corpus"]["hub_dataset"]


def test_published_file_loads_encodes_and_decodes_like_the_original(published, offline_cache):
    state, path = published
    add_to_cache(offline_cache, REPO, {FILE: path}, commit=COMMIT)
    sae = load_sae(f"hub:{REPO}/{FILE}")
    assert (sae.d_in, sae.config_.m, sae.config_.k) == (1536, 3072, 16)
    assert sae.config_.embedding_model == "openai/text-embedding-3-small"
    assert sae.source_["repo_id"] == REPO and sae.source_["filename"] == FILE and sae.source_["revision"] == COMMIT
    assert sae.source_["domain"] == "csLG"

    X = np.random.default_rng(0).normal(size=(50, 1536)).astype(np.float32) * 0.05
    codes = sae.transform(X)
    assert sp.isspmatrix_csr(codes) and codes.shape == (50, 3072) and np.diff(codes.indptr).max() <= 16
    np.testing.assert_allclose(codes.toarray(), reference_codes(state, X.astype(np.float64), 16), atol=1e-4)
    # Decoding uses decoder.weight (d x n) as published, plus pre_bias.
    expected = codes.toarray() @ state["decoder.weight"].numpy().T + state["pre_bias"].numpy()
    np.testing.assert_allclose(sae.decode(codes), expected, atol=1e-4)
    # Searching in code space: each text's nearest neighbour by code cosine is itself.
    normed = sp.csr_matrix(codes.multiply(1 / np.sqrt(codes.multiply(codes).sum(1))))
    sims = (normed @ normed.T).toarray()
    assert (sims.argmax(1) == np.arange(50)).all()


def test_registry_name_and_revision_resolve_the_same_file(published, offline_cache):
    _, path = published
    add_to_cache(offline_cache, REPO, {FILE: path}, commit=COMMIT)
    by_name = load_sae("csLG_16_3072_32")
    by_commit = load_sae(f"hub:{REPO}/{FILE}@{COMMIT}")
    assert by_name.source_["revision"] == by_commit.source_["revision"] == COMMIT
    np.testing.assert_array_equal(by_name.decoder_directions, by_commit.decoder_directions)
    with pytest.raises(ModelError, match="not in the local Hugging Face cache"):
        load_sae(f"hub:{REPO}/{FILE}", revision="v2")


def test_wrong_shapes_are_refused_with_the_expected_shape(tmp_path, offline_cache):
    small = save_state_dict(published_state_dict(n=1024, d=1536), tmp_path / "small.pth")
    add_to_cache(offline_cache, REPO, {FILE: small})
    with pytest.raises(ModelError, match=r"\(1024, 1536\).*registry says csLG_16_3072_32 is \(3072, 1536\)"):
        load_sae(f"hub:{REPO}/{FILE}")

    state = published_state_dict(n=3072, d=1536)
    state["decoder.weight"] = state["decoder.weight"].T.contiguous()  # n x d instead of d x n
    add_to_cache(offline_cache, REPO, {FILE: save_state_dict(state, tmp_path / "flipped.pth")})
    with pytest.raises(ModelError, match=r"'decoder.weight' has shape \(3072, 1536\), expected \(1536, 3072\)"):
        load_sae(f"hub:{REPO}/{FILE}")

    add_to_cache(offline_cache, REPO, {FILE: save_state_dict({"weight": torch.zeros(3)}, tmp_path / "other.pth")})
    with pytest.raises(ModelError, match="not an SAE state dict"):
        load_sae(f"hub:{REPO}/{FILE}")


def test_truncated_file_is_refused_in_one_line(published, tmp_path, offline_cache):
    _, path = published
    data = path.read_bytes()
    add_to_cache(offline_cache, REPO, {FILE: data[: len(data) // 2]})
    with pytest.raises(ModelError, match="truncated or corrupt") as info:
        load_sae(f"hub:{REPO}/{FILE}")
    assert "\n" not in str(info.value)
    add_to_cache(offline_cache, REPO, {FILE: b""})
    with pytest.raises(ModelError, match="empty"):
        load_sae(f"hub:{REPO}/{FILE}")


class _Payload:
    """Unpickling this runs a shell command that creates a marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_local_safetensors_files_load_and_bad_ones_are_refused_in_one_line(published, own_sae, tmp_path):
    state, path = published
    # A published-format state dict saved as safetensors loads like the .pth it came from.
    from safetensors.torch import save_file

    converted = tmp_path / "csLG_16_3072_32.safetensors"
    save_file({key: value.contiguous() for key, value in state.items()}, str(converted))
    X = np.random.default_rng(2).normal(size=(20, 1536)).astype(np.float32) * 0.05
    assert (load_sae(str(converted)).transform(X) != load_sae(str(path)).transform(X)).nnz == 0
    assert load_sae(str(converted)).source_["registry_name"] == "csLG_16_3072_32"

    # Pointing at the weights file of one of our folders loads the folder.
    sae, X_own = own_sae
    folder = sae.save(tmp_path / "mine")
    assert (load_sae(str(folder / "model.safetensors")).transform(X_own) != sae.transform(X_own)).nnz == 0

    # A damaged local file: one line that names it, without the Hub cache's "download it again".
    for name, data in (("broken.safetensors", b"garbage"), ("notes.pth", b"hello\n")):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ModelError, match=rf"{name} is truncated or corrupt") as info:
            load_sae(str(tmp_path / name))
        message = str(info.value)
        assert "\n" not in message and "download" not in message and "SAE folder" in message
    assert "KeyError" in message  # torch's bare "101" gets its exception's name


def test_pickle_that_would_run_code_is_refused_and_does_not_run(tmp_path, offline_cache):
    # Prove the payload is live: plain pickle runs it.
    proof = tmp_path / "proof"
    pickle.loads(pickle.dumps(_Payload(proof)))
    assert proof.exists()

    marker = tmp_path / "pwned"
    raw = pickle.dumps(_Payload(marker))
    add_to_cache(offline_cache, REPO, {FILE: raw})
    with pytest.raises(ModelError, match="could run code"):
        load_sae(f"hub:{REPO}/{FILE}")
    assert not marker.exists()

    # The same payload inside a torch.save zip archive, next to real tensors.
    state = {"encoder.weight": torch.zeros(2, 2), "evil": _Payload(marker)}
    add_to_cache(offline_cache, REPO, {FILE: save_state_dict(state, tmp_path / "evil.pth")})
    with pytest.raises(ModelError, match=r"could run code.*(posix\.system|os\.system|nt\.system)"):
        load_sae(f"hub:{REPO}/{FILE}")
    assert not marker.exists()


def test_unknown_names_list_what_is_known(offline_cache):
    with pytest.raises(ModelError, match=r"Unknown pretrained SAE 'csLG_16_3000_32'.*k in \[16, 32, 64, 128\]"):
        load_sae("csLG_16_3000_32")
    # A registered file that is absent from the (offline) cache.
    with pytest.raises(ModelError, match=r"csLG_32_4608_64\.pth is not in the local Hugging Face cache.*known: csLG_"):
        load_sae("csLG_32_4608_64")
    with pytest.raises(ModelError, match="expected hub:OWNER/REPO"):
        load_sae("hub:justone")


def test_width_mismatch_names_the_embedding_model_needed(published, offline_cache):
    _, path = published
    add_to_cache(offline_cache, REPO, {FILE: path})
    sae = load_sae(f"hub:{REPO}/{FILE}")
    with pytest.raises(ModelError) as info:
        check_compatible(sae, "sentence-transformers/all-MiniLM-L6-v2", 384)
    msg = str(info.value)
    assert msg.startswith(
        "This SAE expects 1536-d embeddings from openai/text-embedding-3-small; "
        "got 384-d from sentence-transformers/all-MiniLM-L6-v2."
    )
    assert "OPENAI_API_KEY" in msg and "\n" not in msg
    with pytest.raises(ModelError, match="same width, different model"):
        check_compatible(sae, "openai/text-embedding-ada-002", 1536)
    check_compatible(sae, "openai/text-embedding-3-small", 1536)
    check_compatible(sae, "text-embedding-3-small", 1536)
    check_compatible(sae, None, 1536)  # stored embeddings of unknown origin: width is all we can check
    with pytest.raises(ModelError, match="width 384 but this SAE expects 1536"):
        sae.transform(np.zeros((2, 384), dtype=np.float32))


@pytest.fixture(scope="module")
def own_sae(yelp_embedded):
    X = yelp_embedded[2]
    sae = SparseAutoencoder(
        m=32, k=4, max_epochs=8, seed=0, embedding_model="sentence-transformers/all-MiniLM-L6-v2"
    ).fit(X)
    return sae, X


def test_own_format_save_load_gives_identical_codes(own_sae, tmp_path, offline_cache):
    sae, X = own_sae
    folder = sae.save(tmp_path / "mine")
    before = sae.transform(X)
    local = load_sae(str(folder))
    after = local.transform(X)
    assert (before != after).nnz == 0 and np.array_equal(before.indices, after.indices)
    assert local.config_.embedding_model == "sentence-transformers/all-MiniLM-L6-v2"

    # The same folder in a Hub repo, at the repo root and in a subfolder, resolved through the cache.
    files = {
        "config.json": folder / "config.json",
        "model.safetensors": folder / "model.safetensors",
        "v1/config.json": folder / "config.json",
        "v1/model.safetensors": folder / "model.safetensors",
    }
    commit = commit_id("mine")
    add_to_cache(offline_cache, "someone/my-sae", files, commit=commit)
    for spec in ("hub:someone/my-sae", f"hub:someone/my-sae@{commit}", "hub:someone/my-sae/v1"):
        hub = load_sae(spec)
        assert (hub.transform(X) != before).nnz == 0
        assert hub.source_["repo_id"] == "someone/my-sae" and hub.source_["revision"] == commit
        check_compatible(hub, "sentence-transformers/all-MiniLM-L6-v2", X.shape[1])
    with pytest.raises(ModelError, match="1536"):
        check_compatible(load_sae("hub:someone/my-sae"), "openai/text-embedding-3-small", 1536)


def test_pretrained_sae_saved_into_a_folder_keeps_its_source(published, tmp_path, offline_cache):
    _, path = published
    add_to_cache(offline_cache, REPO, {FILE: path}, commit=COMMIT)
    sae = load_sae(f"hub:{REPO}/{FILE}")
    folder = sae.save(tmp_path / "copy")
    again = load_sae(str(folder))
    assert again.source_["repo_id"] == REPO and again.source_["revision"] == COMMIT
    assert again.config_.embedding_model == "openai/text-embedding-3-small"
    X = np.random.default_rng(1).normal(size=(5, 1536)).astype(np.float32) * 0.05
    assert (again.transform(X) != sae.transform(X)).nnz == 0


def test_model_card_describes_architecture_data_and_metrics(own_sae, tmp_path):
    sae, _ = own_sae
    folder = sae.save(tmp_path / "card", extra={"training_data": {"table": "yelp-demo-val-2K.jsonl", "rows": 800}})
    card = model_card(folder, "someone/yelp-sae")
    assert card.startswith("---\n") and "sparse-autoencoder" in card
    assert "| latents (m) | 32 |" in card and "| active latents per text (k) | 4 |" in card
    assert "sentence-transformers/all-MiniLM-L6-v2" in card and "yelp-demo-val-2K.jsonl" in card
    assert f"| val_nmse | {round(sae.metrics_['val_nmse'], 4)} |" in card
    assert "hsae build --sae hub:someone/yelp-sae" in card


def test_push_offline_fails_in_one_line_and_bad_folders_are_refused(own_sae, tmp_path, offline_cache):
    sae, _ = own_sae
    folder = sae.save(tmp_path / "push")
    with pytest.raises(ModelError, match="HF_HUB_OFFLINE"):
        push_sae(folder, "someone/yelp-sae")
    with pytest.raises(ModelError, match="not an SAE folder"):
        push_sae(tmp_path, "someone/yelp-sae")
    with pytest.raises(ModelError, match="OWNER/NAME"):
        push_sae(folder, "not a repo")


def _cli(args, env):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "hsae_core.cli", *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_cli_push_uploads_folder_with_card_and_it_loads_back_identically(own_sae, tmp_path, monkeypatch):
    from fake_hub import FakeHub

    sae, X = own_sae
    folder = sae.save(tmp_path / "to-push")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE",)}
    with FakeHub() as hub:
        env.update(HF_ENDPOINT=hub.url, HF_TOKEN="hf_test_token")
        done = _cli(["push", str(folder), "--repo", "me/yelp-sae", "--private"], env)
        assert done.returncode == 0, done.stderr[-2000:]
        assert f"{hub.url}/me/yelp-sae" in done.stdout
        repo = hub.repos["me/yelp-sae"]
        assert repo["private"] and repo["commits"] == ["Upload SAE with hsae"]
        assert sorted(repo["files"]) == ["README.md", "config.json", "model.safetensors"]
        assert repo["files"]["model.safetensors"] == (folder / "model.safetensors").read_bytes()
        assert "| latents (m) | 32 |" in repo["files"]["README.md"].decode()

        refused = _cli(["push", str(tmp_path), "--repo", "me/other"], env)
        assert refused.returncode == 2 and refused.stderr.strip().startswith("hsae: error:")
        assert "not an SAE folder" in refused.stderr and "me/other" not in hub.repos

    # Pull it back through a Hub cache, as a user of the pushed repo would: same codes.
    cache = tmp_path / "pull-cache"
    add_to_cache(cache, "me/yelp-sae", dict(repo["files"]))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pulled = load_sae("hub:me/yelp-sae")
    assert (pulled.transform(X) != sae.transform(X)).nnz == 0


def test_cli_models_lists_the_registry_without_loading_torch():
    # printing a table of the registry took 4-6 s, most of it importing torch and scikit-learn
    listing, imported = cli_imports("models", "--domain", "astroPH")
    assert imported == []
    assert "hub:charlieoneill/embedding-saes/astroPH_64_9216_128.pth" in listing
    assert "csLG_" not in listing and "JSALT2024-Astro-LLMs/astro_paper_corpus" in listing
    assert sum(line.startswith("astroPH_") for line in listing.splitlines()) == 20
