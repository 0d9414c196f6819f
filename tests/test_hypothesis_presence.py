"""Hypotheses end to end on real Yelp reviews: learned presence thresholds are stored and applied consistently,
near-duplicates are left out, the SAE cache serves warm reruns, and a workspace run uses the workspace's SAE."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from ws_fixtures import small_workspace  # noqa: F401

from hsae_core.distinct import jaccard
from hsae_core.pipeline import HypothesisConfig, hypothesize, load_run
from hsae_core.presence import presence
from hsae_core.settings import CONCEPT_SELECTION

SMALL = {"m": 64, "k": 8, "n": 10}
LEARNED = {**SMALL, **CONCEPT_SELECTION}  # learned thresholds, near-duplicates left out (also the defaults now)


@pytest.fixture(scope="module")
def learned_run(yelp_embedded, tmp_path_factory):
    train, hold, X_train, X_hold = yelp_embedded
    out = tmp_path_factory.mktemp("learned")
    run = hypothesize(
        train, text_col="text", target_col="stars", holdout=hold, config=HypothesisConfig(**LEARNED), out_dir=out
    )
    return run, out, X_train, X_hold


def test_thresholds_are_stored_and_applied_to_the_holdout(learned_run):
    run, out, X_train, X_hold = learned_run
    table = pd.read_csv(out / "hypotheses.csv")
    assert "threshold" in table.columns and (table["threshold"] >= 0).all()
    assert (table["threshold"] > 0).any()  # learned cuts, not just "fires at all"
    ann = pd.read_parquet(out / "holdout_annotations.parquet")
    codes_hold = run.sae.transform(X_hold)
    expected = presence(codes_hold, table["latent"], table["threshold"])
    np.testing.assert_array_equal(ann[table["annotation_col"]].to_numpy(), expected)
    # prevalence in the table is the holdout share above the threshold
    np.testing.assert_allclose(table["prevalence"].to_numpy(), expected.mean(axis=0))
    assert "threshold" in run.summary["presence"] and run.summary["config"]["presence"] == "learned"
    assert "training rows only" in run.summary["sae"]["origin"]


def test_no_two_hypotheses_repeat_each_other_on_the_training_rows(learned_run):
    run, _, X_train, _ = learned_run
    P = presence(run.sae.transform(X_train), run.table["latent"], run.table["threshold"]).astype(bool)
    limit = run.summary["config"]["max_overlap"]
    assert limit < 1.0
    for i in range(P.shape[1]):
        for j in range(i):
            assert jaccard(P[:, i], P[:, j]) <= limit


def test_positive_presence_is_the_old_rule(yelp_embedded):
    train, hold, _, X_hold = yelp_embedded
    run = hypothesize(
        train,
        text_col="text",
        target_col="stars",
        holdout=hold,
        config=HypothesisConfig(**SMALL, presence="positive", max_overlap=1.0),
    )
    assert (run.table["threshold"] == 0).all()
    codes = run.sae.transform(X_hold)
    got = run.annotations[run.table["annotation_col"]].to_numpy()
    np.testing.assert_array_equal(got, (codes[:, run.table["latent"].to_numpy()] > 0).toarray().astype(float))


def test_warm_rerun_loads_the_cached_sae(learned_run, yelp_embedded, tmp_path):
    train, hold, _, _ = yelp_embedded
    first, _, _, _ = learned_run
    again = hypothesize(
        train,
        text_col="text",
        target_col="stars",
        holdout=hold,
        config=HypothesisConfig(**LEARNED),
        out_dir=tmp_path / "again",
    )
    assert "SAE cache" in again.summary["sae"]["origin"]
    np.testing.assert_array_equal(again.sae.decoder_directions, first.sae.decoder_directions)
    pd.testing.assert_frame_equal(again.table, first.table)
    fresh = hypothesize(
        train, text_col="text", target_col="stars", holdout=hold, config=HypothesisConfig(**LEARNED, cache_sae=False)
    )
    assert "SAE cache" not in fresh.summary["sae"]["origin"]
    assert load_run(tmp_path / "again").summary["sae"]["origin"] == again.summary["sae"]["origin"]


def test_workspace_run_uses_the_workspace_sae(small_workspace):
    from hsae_core.workspace import Workspace

    ws = Workspace.open(small_workspace)
    run = ws.hypothesize("stars", HypothesisConfig(n=5, split_col="split", holdout_value="holdout"))
    assert (
        "this workspace's SAE" in run.summary["sae"]["origin"]
        and "holdout rows included" in run.summary["sae"]["origin"]
    )
    # The run points at the workspace's SAE (no copy in the run folder): its latents are the Features page's,
    # and the run reopened from its folder finds that SAE by the key it recorded (load_run(...).sae was None)
    assert run.sae is ws.sae and not (run.out_dir / "sae").exists()
    assert run.summary["features"] == {
        "source": "workspace",
        "sae_key": ws.manifest["steps"]["sae"],
        "workspace": str(ws.path.absolute()),
    }
    X = np.asarray(ws.embeddings[:50])
    assert (load_run(run.out_dir).sae.transform(X) != ws.sae.transform(X)).nnz == 0
    assert run.summary["sae"]["m"] == ws.sae.config_.m
    assert run.out_dir.parent == ws.runs_dir and ws.list_runs()[0]["path"] == run.out_dir
