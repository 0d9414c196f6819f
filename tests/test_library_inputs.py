"""What a script passes to hypothesize() by mistake, or in another plausible form: a clear one-line error, or the
form read as meant. Each case raised a deep AttributeError or TypeError before (a newcomer audit of the library)."""

from __future__ import annotations

import numpy as np
import pytest

from hsae_core.errors import DataError, ModelError
from hsae_core.pipeline import HypothesisConfig, hypothesize
from hsae_core.sae import SparseAutoencoder

SMALL = {"m": 32, "k": 4, "levels": (), "n": 3}


def test_a_config_given_as_a_dict_is_read_and_an_unknown_setting_named(yelp_embedded):
    train, hold, X_train, X_hold = yelp_embedded
    both = np.vstack([X_train, X_hold])
    as_dict = hypothesize(train, holdout=hold, text_col="text", target_col="stars", config=SMALL, embeddings=both)
    as_config = hypothesize(
        train, holdout=hold, text_col="text", target_col="stars", config=HypothesisConfig(**SMALL), embeddings=both
    )
    assert list(as_dict.table["latent"]) == list(as_config.table["latent"]) and len(as_dict.table) == 3
    with pytest.raises(DataError, match=r"^HypothesisConfig has no setting 'n_hypotheses'$"):
        hypothesize(train, text_col="text", target_col="stars", config={"n_hypotheses": 5})
    with pytest.raises(DataError, match=r"`config` must be a HypothesisConfig \(or a dict of its settings\); got int"):
        hypothesize(train, text_col="text", target_col="stars", config=5)


def test_data_that_is_not_a_table_is_named(yelp_frames):
    train, _ = yelp_frames
    records = train[["text", "stars"]].to_dict("records")
    with pytest.raises(DataError, match=r"must be a pandas DataFrame or the path of a table file; got list"):
        hypothesize(records, text_col="text", target_col="stars")


def test_an_sae_is_given_trained_or_as_a_folder_to_load(yelp_embedded, tmp_path):
    train, hold, X_train, X_hold = yelp_embedded
    with pytest.raises(ModelError, match=r"^The SAE given is not trained yet"):
        hypothesize(train, text_col="text", target_col="stars", sae=SparseAutoencoder(m=32, k=4))
    sae = SparseAutoencoder(m=32, k=4, max_epochs=3, seed=0).fit(X_train)
    sae.save(tmp_path / "my-sae")
    both = np.vstack([X_train, X_hold])
    config = HypothesisConfig(n=3)
    runs = [
        hypothesize(train, holdout=hold, text_col="text", target_col="stars", config=config, embeddings=both, sae=s)
        for s in (sae, tmp_path / "my-sae", str(tmp_path / "my-sae"))
    ]
    assert [list(r.table["latent"]) for r in runs[1:]] == [list(runs[0].table["latent"])] * 2
    assert str(tmp_path / "my-sae") in runs[1].summary["sae"]["origin"], "the summary says which folder"
    with pytest.raises(DataError, match=r"`sae` must be a SparseAutoencoder or where to load one from; got dict"):
        hypothesize(train, text_col="text", target_col="stars", sae={"m": 32})


def test_stored_embeddings_without_their_model_say_why_the_labels_are_keywords(yelp_embedded):
    """Embeddings given without the model that made them cannot judge phrase labels: the run used keyword lists
    without a word, though phrases are the default."""
    train, hold, X_train, X_hold = yelp_embedded
    both = np.vstack([X_train, X_hold])
    run = hypothesize(train, holdout=hold, text_col="text", target_col="stars", config=SMALL, embeddings=both)
    said = [w for w in run.summary["warnings"] if w.startswith("labels: keyword lists, not phrases")]
    assert said and said[0].endswith("that model is not known: pass embedder= naming it (e.g. 'minilm')")
    named = hypothesize(
        train, holdout=hold, text_col="text", target_col="stars", config=SMALL, embeddings=both, embedder="minilm"
    )
    assert not [w for w in named.summary.get("warnings", []) if w.startswith("labels:")]
    assert named.summary["interpreter"] != run.summary["interpreter"]


# ---------------------------------------------------------------------------------------- a target given as values
def _split_targets(frame, target, config=None):
    from hsae_core.pipeline import load_split

    train, hold = load_split(frame, "text", target, config=HypothesisConfig(**(config or {})))
    return train.y, hold.y


def test_a_target_series_is_matched_to_the_rows_by_its_index_as_pandas_matches(yelp_embedded):
    """A Series of the table in another order (sorted, shuffled) raised TypeError (unhashable type: 'Series');
    read by position it would give rows other rows' targets. It is matched by label, as pandas does."""
    train, _, X_train, _ = yelp_embedded
    shuffled = train["stars"].sample(frac=1, random_state=0)
    assert not shuffled.index.equals(train.index)
    by_name = hypothesize(train, text_col="text", target_col="stars", config=SMALL, embeddings=X_train)
    by_series = hypothesize(train, text_col="text", target_col=shuffled, config=SMALL, embeddings=X_train)
    assert by_series.summary["target"]["column"] == "stars"
    assert by_series.annotations["target"].tolist() == by_name.annotations["target"].tolist()
    assert by_series.table["latent"].tolist() == by_name.table["latent"].tolist()
    assert "stars" in train.columns and train["stars"].index.equals(train.index), "the caller's table is untouched"


def test_a_target_without_labels_of_the_table_is_read_by_position_and_a_mismatch_refused(yelp_frames):
    train, _ = yelp_frames
    by_name = _split_targets(train, "stars")
    labelled = train.set_index("review_id")  # row labels that are not 0..N-1
    for target in (train["stars"].reset_index(drop=True), train["stars"].to_numpy(), train["stars"].tolist()):
        got = _split_targets(labelled, target)
        assert all(np.array_equal(a, b) for a, b in zip(got, by_name)), type(target).__name__
    filtered = train["stars"].iloc[:700]
    with pytest.raises(
        DataError,
        match=r"^The target's index does not match the table's \(700 values for 800 rows\): 0 of its labels are",
    ) as err:
        _split_targets(train, filtered)
    assert "100 rows of the table have no value (e.g. 700)" in str(err.value) and "\n" not in str(err.value)
    reindexed = filtered.reindex(train.index)  # as the line says: the rows it lacks are dropped and counted
    kept = _split_targets(train, reindexed)
    assert sum(len(y) for y in kept) == 700
    with pytest.raises(DataError, match=r"^The target has 799 values and the table 800 rows"):
        _split_targets(train, train["stars"].to_numpy()[:-1])
    doubled = train["stars"].set_axis([0] * len(train))
    with pytest.raises(DataError, match=r"^The target's index repeats labels \(e\.g\. 0\)"):
        _split_targets(train, doubled)


def test_a_target_is_one_column_and_a_wider_one_is_refused_naming_its_shape(yelp_frames):
    """df[["stars"]] or an (N, 2) array was reported as "1600 values" (or as unhashable); a one-column table or
    (N, 1) array is read as its column, and a wider one refused in one line that says how to pass one column."""
    from hsae_core.select import select_latents
    from hsae_core.stats import evaluate_hypotheses

    train, hold = yelp_frames
    by_name = _split_targets(train, "stars")
    for target in (train[["stars"]], train[["stars"]].to_numpy()):
        got = _split_targets(train, target)
        assert all(np.array_equal(a, b) for a, b in zip(got, by_name))
    with pytest.raises(DataError, match=r"^The target is one column; got a table of 2 columns \('stars', 'useful'\)"):
        _split_targets(train, train[["stars", "useful"]])
    wide = train[["stars", "useful"]].to_numpy()
    with pytest.raises(
        DataError, match=r"^The target is one column of values, one per row; got an array of shape \(800, 2\)"
    ):
        _split_targets(train, wide)
    with pytest.raises(
        DataError, match=r"target is one column of values.*shape \(800, 2\): pass one column, e\.g\. y\[:, 0\]$"
    ):
        select_latents(np.abs(np.random.default_rng(0).normal(size=(800, 8))), wide)
    with pytest.raises(DataError, match=r"^The holdout target is one column of values.*shape \(800, 2\)"):
        evaluate_hypotheses(np.ones((800, 1)), wide, "continuous")
    with pytest.raises(DataError, match=r"^A target given as values goes with one table; with a separate `holdout`"):
        hypothesize(train, holdout=hold, text_col="text", target_col=train["stars"])


def test_a_reopened_run_gives_the_sae_it_used(yelp_embedded, tmp_path):
    """load_run(...).sae was always None: a user who reopened a run could not encode new texts with its SAE."""
    import shutil

    from hsae_core.pipeline import load_run

    train, hold, X_train, X_hold = yelp_embedded
    both = np.vstack([X_train, X_hold])
    out = tmp_path / "run"
    run = hypothesize(
        train, holdout=hold, text_col="text", target_col="stars", config=SMALL, embeddings=both, out_dir=out
    )
    assert (load_run(out).sae.transform(X_hold) != run.sae.transform(X_hold)).nnz == 0
    shutil.rmtree(out / "sae")  # read when asked for: the run itself still opens without it
    reopened = load_run(out)
    assert reopened.table["latent"].tolist() == run.table["latent"].tolist()
    with pytest.raises(ModelError, match=rf"^Run folder {out} holds no sae/ folder and names no workspace SAE"):
        _ = reopened.sae


def test_an_sae_given_that_was_fitted_on_holdout_rows_is_said_to_have_seen_them(yelp_embedded, tmp_path):
    """A user's SAE fitted on every row, holdout included, entered the run without a word: the summary said only
    "given ... not trained here". Its record of the rows it was fitted on now tells the run, through a save."""
    train, hold, X_train, X_hold = yelp_embedded
    both = np.vstack([X_train, X_hold])
    every_row = SparseAutoencoder(m=32, k=4, max_epochs=3, seed=0).fit(both).save(tmp_path / "every-row")
    training_rows = SparseAutoencoder(m=32, k=4, max_epochs=3, seed=0).fit(X_train)
    args = dict(holdout=hold, text_col="text", target_col="stars", config=SMALL, embeddings=both)
    run = hypothesize(train, sae=every_row, **args)
    (said,) = [w for w in run.summary["warnings"] if w.startswith("sae: ")]
    assert said.startswith("sae: the SAE given was fitted on 400 of the 400 holdout rows (their embeddings are")
    assert run.summary["sae"]["origin"].endswith("; it was fitted on 400 of the 400 holdout rows")
    assert f"warning: {said}" in run.report().splitlines()
    clean = hypothesize(train, sae=training_rows, **args)
    assert not [w for w in clean.summary.get("warnings", []) if w.startswith("sae: ")]
    assert "holdout rows" not in clean.summary["sae"]["origin"]
