"""SAE levels on real Yelp embeddings: each level is a top-k dictionary of its own, reconstructs alone, and
survives a save/load; bad level settings get one clear line."""

import copy
import json

import numpy as np
import pytest
import torch

from hsae_core import settings
from hsae_core.cli import main
from hsae_core.errors import ModelError
from hsae_core.sae import SparseAutoencoder

LEVELS = "4/1,16/2"


@pytest.fixture(scope="module")
def X(yelp_embedded):
    return yelp_embedded[2]


@pytest.fixture(scope="module")
def leveled(X):
    return SparseAutoencoder(m=32, k=4, levels=LEVELS, max_epochs=30, batch_size=64, seed=1).fit(X)


def _active_per_row(codes, start, stop):
    return np.diff(codes[:, start:stop].tocsr().indptr)


def test_each_level_keeps_its_own_top_k(leveled, X):
    codes = leveled.transform(X)
    assert codes.shape == (len(X), 32 + 4 + 16)
    assert leveled.config_.m == 52 and leveled.config_.k == 4 + 1 + 2
    for (start, stop), active in (((0, 32), 4), ((32, 36), 1), ((36, 52), 2)):
        per_row = _active_per_row(codes, start, stop)
        assert per_row.max() <= active and np.mean(per_row == active) > 0.95
    assert leveled.level_names == ["32/4"] * 32 + ["4/1"] * 4 + ["16/2"] * 16


def test_a_one_active_level_sorts_documents_into_broad_groups(leveled, X):
    groups = leveled.transform(X)[:, 32:36].toarray()
    shares = (groups > 0).mean(axis=0)
    assert (shares > 0.05).sum() >= 3  # at least three of the four groups hold a real share of the reviews
    assert np.isclose(shares.sum(), np.mean((groups > 0).any(axis=1)))  # one group per review, never two


def test_every_level_reconstructs_alone_and_the_main_level_is_the_reconstruction(leveled, X):
    per_level = leveled.metrics_["level_nmse"]
    assert list(per_level) == ["32/4", "4/1", "16/2"]
    # each level explains part of the variance alone; the finer the level, the better it reconstructs
    assert per_level["32/4"] < per_level["16/2"] < per_level["4/1"] < 1.0
    codes = leveled.transform(X[:50])
    main_only = codes.tolil()
    main_only[:, 32:] = 0
    np.testing.assert_allclose(leveled.decode(codes), leveled.decode(main_only.tocsr()), atol=1e-6)
    plain = SparseAutoencoder(m=32, k=4, max_epochs=30, batch_size=64, seed=1).fit(X)
    assert leveled.score(X) == pytest.approx(plain.score(X), abs=0.05)  # levels cost the main level little


def test_levels_survive_save_and_load(leveled, X, tmp_path):
    folder = leveled.save(tmp_path / "sae")
    config = json.loads((folder / "config.json").read_text())
    assert config["levels"] == [[32, 4], [4, 1], [16, 2]] and (config["m"], config["k"]) == (52, 7)
    from safetensors.torch import load_file

    weights = load_file(str(folder / "model.safetensors"))
    # each further level centres the input on a pre-bias of its own, learned apart from the main one
    assert weights["level_pre_bias"].shape == (2, X.shape[1])
    assert not np.allclose(weights["level_pre_bias"][0].numpy(), weights["pre_bias"].numpy(), atol=1e-3)
    loaded = SparseAutoencoder.load(folder)
    assert (loaded.m, loaded.k, loaded.levels) == (32, 4, ((4, 1), (16, 2)))
    assert (loaded.transform(X) != leveled.transform(X)).nnz == 0


def test_levels_that_do_not_add_up_are_refused(leveled, tmp_path):
    folder = leveled.save(tmp_path / "sae")
    config = json.loads((folder / "config.json").read_text())
    config["levels"] = [[32, 4], [4, 1]]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="'levels' .* do not add up to m=52, k=7"):
        SparseAutoencoder.load(folder)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("4", "latents/active"),
        ("4/0", "0 < active <= latents"),
        ("2/3", "0 < active <= latents"),
        ("4/x", "whole numbers"),
    ],
)
def test_bad_levels_get_one_line(spec, message, X):
    with pytest.raises(ModelError, match=message):
        SparseAutoencoder(m=16, k=2, levels=spec).fit(X[:50])


def test_levels_do_not_mix_with_matryoshka(X):
    with pytest.raises(ModelError, match="cannot be combined"):
        SparseAutoencoder(m=16, k=2, levels="4/1", matryoshka=(4,)).fit(X[:50])


def test_parse_levels_reads_text_pairs_and_none():
    assert settings.parse_levels("4/1, 16/2") == ((4, 1), (16, 2))
    assert settings.parse_levels([[4, 1]]) == ((4, 1),)
    assert settings.parse_levels("none") == settings.parse_levels(None) == ()


def test_cli_trains_levels_and_refuses_bad_ones(X, tmp_path, capsys):
    npy = tmp_path / "emb.npy"
    np.save(npy, X[:400])
    out = tmp_path / "sae"
    args = ["train", "--embeddings", str(npy), "--m", "16", "--k", "2", "--levels", "4/1", "--epochs", "3"]
    code = main([*args, "--out", str(out)])
    assert code == 0
    assert json.loads((out / "config.json").read_text())["levels"] == [[16, 2], [4, 1]]
    code = main(["train", "--embeddings", str(npy), "--levels", "4", "--out", str(tmp_path / "other")])
    assert code == 2
    assert "argument --levels: levels are 'latents/active' pairs" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()


def _codes_from_weights(sae, X):
    """Each level's top-k of W_enc (x - b_level) + b_lat, computed from the weights in numpy (float64)."""
    model = sae.model_
    W, b_lat = model.W_enc.detach().double().numpy(), model.b_lat.detach().double().numpy()
    pre_biases = [model.b_pre.detach().double().numpy(), *model.b_levels.detach().double().numpy()]
    out = np.zeros((len(X), model.cfg.m))
    for level, (start, size, active) in enumerate(model.cfg.groups):
        pre = (X - pre_biases[level]) @ W[start : start + size].T + b_lat[start : start + size]
        top = np.argsort(-pre, axis=1)[:, :active]
        np.put_along_axis(out[:, start : start + size], top, np.maximum(np.take_along_axis(pre, top, 1), 0), 1)
    return out


def test_codes_follow_weights_changed_in_place(leveled, X):
    # Encoding keeps each latent's folded pre-bias between calls; a weight changed in place (an optimiser step,
    # load_state_dict) must be seen by the next encoding, not the kept one.
    sae, rows = copy.deepcopy(leveled), X[:300].astype(np.float64)

    def agreement(codes, expected):
        return np.mean(np.all(np.isclose(codes.toarray(), expected, atol=1e-4), axis=1))

    before = sae.transform(X[:300])
    assert agreement(before, _codes_from_weights(sae, rows)) > 0.99
    with torch.no_grad():
        sae.model_.b_levels.add_(0.05)
        sae.model_.b_pre.sub_(0.05)
    after = sae.transform(X[:300])
    expected = _codes_from_weights(sae, rows)
    assert agreement(after, expected) > 0.99
    assert agreement(before, expected) < 0.5  # the change moved most rows' codes
