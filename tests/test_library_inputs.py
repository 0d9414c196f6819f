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
