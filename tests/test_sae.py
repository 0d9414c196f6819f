"""SAE invariants on real embeddings: sparsity, unit-norm decoder, round trip, reproducibility, bad input."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from hsae_core.errors import ModelError, StorageError
from hsae_core.sae import SparseAutoencoder, as_float_matrix


@pytest.fixture(scope="module")
def X(yelp_embedded):
    return yelp_embedded[2]


@pytest.fixture(scope="module")
def trained(X):
    return SparseAutoencoder(m=64, k=4, max_epochs=40, batch_size=64, seed=3).fit(X)


def test_codes_are_sparse_with_at_most_k_active(trained, X):
    codes = trained.transform(X)
    assert sp.isspmatrix_csr(codes) and codes.shape == (len(X), 64)
    per_row = np.diff(codes.indptr)
    assert per_row.max() <= 4 and np.mean(per_row == 4) > 0.95
    assert (codes.data > 0).all()


def test_decoder_rows_have_unit_norm(trained):
    norms = np.linalg.norm(trained.decoder_directions, axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)


def test_training_learns_and_restores_best_validation_weights(trained, X):
    history = trained.history_
    assert trained.metrics_["val_nmse"] < 0.9  # far better than predicting the mean
    best = min(h["val_nmse"] for h in history)
    assert trained.metrics_["val_nmse"] == pytest.approx(best, abs=1e-4)
    assert trained.score(X) < history[0]["train_nmse"]


def test_same_seed_same_model_different_seed_different_model(X):
    a = SparseAutoencoder(m=32, k=4, max_epochs=5, seed=1).fit(X).transform(X)
    b = SparseAutoencoder(m=32, k=4, max_epochs=5, seed=1).fit(X).transform(X)
    c = SparseAutoencoder(m=32, k=4, max_epochs=5, seed=2).fit(X).transform(X)
    assert (a != b).nnz == 0
    assert (a != c).nnz > 0


def test_save_load_round_trip_gives_identical_codes(trained, X, tmp_path):
    folder = trained.save(tmp_path / "sae")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "fitted_rows.npy", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["m"] == 64 and config["k"] == 4 and config["architecture"] == "topk_sae"
    loaded = SparseAutoencoder.load(folder)
    assert (loaded.transform(X) != trained.transform(X)).nnz == 0
    np.testing.assert_array_equal(loaded.decode(trained.transform(X[:5])), trained.decode(trained.transform(X[:5])))


def test_an_sae_knows_which_rows_it_was_fitted_on_and_keeps_that_through_a_save(trained, X, tmp_path):
    """A run given a user's SAE could not tell whether its holdout rows were among the SAE's training rows."""
    assert trained.fitted_on(X).all()
    unseen = X[:50] + np.float32(1e-3)
    assert not trained.fitted_on(unseen).any()
    loaded = SparseAutoencoder.load(trained.save(tmp_path / "sae"))
    assert loaded.fitted_on(np.vstack([X[:50], unseen])).tolist() == [True] * 50 + [False] * 50
    (tmp_path / "sae" / "fitted_rows.npy").unlink()  # a checkpoint without the record: unknown, not "unseen"
    assert SparseAutoencoder.load(tmp_path / "sae").fitted_on(X) is None


def test_saving_onto_a_file_says_so_and_leaves_the_file(trained, tmp_path):
    afile = tmp_path / "notes"
    afile.write_text("mine")
    with pytest.raises(StorageError, match="notes is a file, not a folder; choose a folder name"):
        trained.save(afile)
    assert afile.read_text() == "mine"


def test_extra_keys_that_would_overwrite_the_config_are_refused_and_nothing_is_written(trained, X, tmp_path):
    # extra={"m": 10} used to write a folder that load() then refused: its weights have 64 latents.
    folder = trained.save(tmp_path / "sae")
    with pytest.raises(ModelError, match=r"`extra` cannot set 'k', 'm': the SAE's config.json uses those keys"):
        trained.save(folder, extra={"m": 10, "k": 2, "note": "mine"})
    assert (SparseAutoencoder.load(folder).transform(X[:20]) != trained.transform(X[:20])).nnz == 0
    trained.save(folder, extra={"note": "mine"})
    assert json.loads((folder / "config.json").read_text())["note"] == "mine"
    assert SparseAutoencoder.load(folder).k == 4


def test_a_save_that_fails_midway_leaves_the_previous_sae_whole(trained, X, tmp_path):
    """save() wrote the weights and then config.json into the folder itself: a failure between the two left new
    weights beside the old config, a folder that no longer loaded. Here a file-size limit (RLIMIT_FSIZE, as a
    full disk) stops config.json, grown by a large ``extra``, after the small new weights were written."""
    folder = trained.save(tmp_path / "sae")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    script = textwrap.dedent(
        """
        import resource, signal, sys
        import numpy as np
        from hsae_core.errors import StorageError
        from hsae_core.sae import SparseAutoencoder
        X = np.random.default_rng(0).random((200, 384)).astype("float32")
        smaller = SparseAutoencoder(m=8, k=2, max_epochs=1, seed=0).fit(X)  # weights of about 26 kB
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))
        try:
            smaller.save(sys.argv[1], extra={"training_rows": list(range(20_000))})  # config.json over 150 kB
        except StorageError as exc:
            print(exc)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(folder)], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before, "the previous SAE is whole"
    assert (SparseAutoencoder.load(folder).transform(X[:20]) != trained.transform(X[:20])).nnz == 0
    assert done.returncode == 0, done.stderr[-1500:]
    assert done.stdout.startswith(f"Writing the SAE folder {folder} failed: ") and "File too large" in done.stdout
    assert done.stdout.strip().endswith("any previous SAE there is unchanged")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sae"], "no staging folder left behind"


def test_save_replaces_an_sae_folder_but_not_a_folder_of_other_files(trained, tmp_path):
    folder = trained.save(tmp_path / "sae")
    (folder / "README.md").write_text("model card of the weights before")
    trained.save(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "fitted_rows.npy", "model.safetensors"]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(StorageError, match="already exists and holds other files; choose a new or empty folder"):
        trained.save(mine)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_scipy_sparse_input_trains_and_encodes_as_its_dense_array():
    X = np.random.default_rng(0).normal(size=(300, 16)).astype(np.float32)
    X[X < 0.5] = 0.0  # mostly zeros, as a sparse matrix usually is
    dense = SparseAutoencoder(m=16, k=2, max_epochs=3, seed=0).fit(X)
    sparse = SparseAutoencoder(m=16, k=2, max_epochs=3, seed=0).fit(sp.csr_matrix(X))
    np.testing.assert_array_equal(sparse.decoder_directions, dense.decoder_directions)
    assert (sparse.transform(sp.csr_matrix(X[:50])) != dense.transform(X[:50])).nnz == 0
    with pytest.raises(ModelError, match=r"sparse 10,000,000 x 1,000,000 matrix that needs 37,252.9 GiB"):
        sparse.transform(sp.csr_matrix((10**7, 10**6), dtype=np.float32))  # refused before any allocation


def test_batch_topk_and_matryoshka_train(X):
    bt = SparseAutoencoder(m=64, k=4, batch_topk=True, max_epochs=20, batch_size=64).fit(X)
    codes = bt.transform(X)
    assert 3 <= np.diff(codes.indptr).mean() <= 5  # about k per row on average, via the learned threshold
    mat = SparseAutoencoder(m=64, k=4, matryoshka=(8, 24), max_epochs=20, batch_size=64).fit(X)
    assert mat.metrics_["val_nmse"] < 0.95


def test_aux_k_revives_dead_latents(X):
    # 1024 latents with 2 active on 720 training rows: many never win a row, and a latent that went 200 rows
    # without firing counts as dead, so the auxiliary loss is on. It revives 60-75 of them on seeds 0-2 (the
    # float32 embeddings and their float16 rounding from a GPU alike); 1 of 256 in a smaller setting was
    # within the noise of the embedding's last bits.
    settings = dict(m=1024, k=2, dead_after=200, batch_size=128, max_epochs=20, seed=0)
    with_aux = SparseAutoencoder(**settings).fit(X)
    without = SparseAutoencoder(aux_coef=0.0, **settings).fit(X)
    assert with_aux.metrics_["dead_frac"] + 0.03 < without.metrics_["dead_frac"]


def _dense_code_reference(sae, X):
    """The code worked out densely in numpy from the model's own pre-activations: each level's (or the whole
    dictionary's) k largest per row, or everything above the learned threshold for batch-top-k."""
    model, cfg = sae.model_, sae.config_
    with torch.no_grad():  # the model is where it trained (the GPU, there)
        pre = model.pre_activations(torch.from_numpy(X).to(model.b_pre.device)).cpu().numpy()
    dense = np.zeros_like(pre)
    if cfg.batch_topk:
        keep = pre > float(model.threshold)
        dense[keep] = pre[keep]
        return dense
    rows = np.arange(len(X))[:, None]
    for start, size, active in cfg.groups if cfg.levels else [(0, cfg.m, cfg.k)]:
        top = start + np.argpartition(-pre[:, start : start + size], active - 1, axis=1)[:, :active]
        dense[rows, top] = np.maximum(pre[rows, top], 0.0)
    return dense


@pytest.mark.parametrize(
    "settings",
    [dict(m=64, k=4), dict(m=32, k=4, levels="2/1,8/2"), dict(m=64, k=4, batch_topk=True)],
    ids=["top-k", "levels", "batch-top-k"],
)
def test_transform_is_the_top_k_of_the_pre_activations_in_canonical_csr(X, settings):
    sae = SparseAutoencoder(max_epochs=3, batch_size=64, seed=1, **settings).fit(X)
    reference = _dense_code_reference(sae, X)
    for batch_size in (4096, 333):  # one batch, and batches that do not divide the rows
        codes = sae.transform(X, batch_size=batch_size)
        rows = np.split(codes.indices, codes.indptr[1:-1])  # the flag alone is set by transform: check the data
        assert all((np.diff(r) > 0).all() for r in rows) and (codes.data > 0).all()
        assert codes.shape == reference.shape
        dense = codes.toarray()
        np.testing.assert_array_equal(dense > 0, reference > 0)  # the same active latents on every row
        np.testing.assert_allclose(dense, reference, rtol=1e-5, atol=1e-6)  # a GPU may round batches apart


def test_wrong_width_is_refused_with_clear_message(trained):
    with pytest.raises(ModelError, match="width 10 but this SAE expects 384"):
        trained.transform(np.zeros((3, 10), dtype=np.float32))


def test_nan_input_is_refused():
    X = np.ones((50, 8), dtype=np.float32)
    X[3, 2] = np.nan
    with pytest.raises(ModelError, match="NaN"):
        SparseAutoencoder(m=16, k=2).fit(X)


@pytest.mark.parametrize("bad", [[np.inf], [-np.inf], [np.inf, -np.inf]])
def test_infinite_input_is_refused(bad):
    X = np.ones((50, 8), dtype=np.float32)
    X[3, : len(bad)] = bad
    with pytest.raises(ModelError, match="NaN or infinite"):
        as_float_matrix(X)


def test_largest_finite_values_are_accepted():
    """Every entry at float32's largest magnitude: finite, so accepted (their sum must not overflow into inf)."""
    X = np.full((2_000, 384), np.finfo(np.float32).max, dtype=np.float32)
    assert as_float_matrix(X) is X


def test_corrupt_folder_is_refused(trained, tmp_path):
    folder = trained.save(tmp_path / "sae")
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError, match="Corrupt SAE weights"):
        SparseAutoencoder.load(folder)
    with pytest.raises(ModelError, match="not an SAE folder"):
        SparseAutoencoder.load(tmp_path / "missing")


def test_read_only_embeddings_encode_without_a_torch_warning(tmp_path):
    """A workspace's embeddings are memory-mapped read-only; encoding or scoring them must not print torch's
    "array is not writable" warning. Torch warns once per process, so this runs in a fresh one."""
    script = textwrap.dedent(
        """
        import warnings, numpy as np
        from hsae_core.sae import SparseAutoencoder
        X = np.random.default_rng(0).random((200, 8)).astype("float32")
        sae = SparseAutoencoder(m=8, k=2, max_epochs=1, seed=0).fit(X)
        np.save("x.npy", X)
        ro = np.load("x.npy", mmap_mode="r")
        warnings.simplefilter("error")
        codes = sae.transform(ro)
        assert (codes != sae.transform(X)).nnz == 0 and sae.score(ro) == sae.score(X)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-1500:]


def test_it_is_a_scikit_learn_transformer_with_the_width_it_reads(yelp_embedded):
    """clone, a Pipeline, and n_features_in_ (scikit-learn's name for the input width; it was d_in only)."""
    from sklearn.base import clone
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    _, _, X, _ = yelp_embedded
    sae = SparseAutoencoder(m=32, k=4, max_epochs=2, seed=0)
    assert not hasattr(sae, "n_features_in_"), "absent until trained, as in scikit-learn"
    codes = make_pipeline(FunctionTransformer(), sae).fit_transform(X)
    assert sae.n_features_in_ == X.shape[1] == 384 and codes.shape == (len(X), 32)
    fresh = clone(sae)
    assert fresh.get_params() == sae.get_params() and not hasattr(fresh, "n_features_in_")
