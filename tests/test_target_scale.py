"""A heavy-tailed count target (citations, votes, clicks) is modelled as log(1 + y), and the run says so."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from hsae_core.cli import main
from hsae_core.errors import DataError
from hsae_core.pipeline import HypothesisConfig, format_table, hypothesize
from hsae_core.target_scale import choose_scale, skewness


def test_counts_get_the_log_and_scores_rates_and_signed_targets_do_not(shared_data):
    arxiv = pd.read_csv(shared_data / "arxiv_2018_citations" / "arxiv_2018_with_citations.csv")
    citations = arxiv["citation_count"].dropna()
    upworthy = pd.read_parquet(shared_data / "upworthy_headlines" / "upworthy_exploratory_packages.parquet")
    stance = pd.DataFrame(
        json.loads((shared_data / "ml_nlp_abstracts_stance" / "human_annotated_all.json").read_text())
    )
    stars = pd.read_json(shared_data / "yelp_reviews_demo" / "yelp-demo-val-2K.jsonl", lines=True)["stars"]

    scale = choose_scale(citations, column="citation_count")
    assert scale.applied == "log1p" and scale.skew > 20 and abs(scale.skew_after) < 1
    np.testing.assert_allclose(scale.apply(citations), np.log1p(citations.to_numpy(float)))
    assert choose_scale(upworthy["clicks"]).applied == "log1p"
    # a click rate's log is the rate itself to three digits, a stance score goes below 0, stars lean left
    for values in (upworthy["ctr"], stance["stance"], stars):
        assert choose_scale(values).applied == "none"
        np.testing.assert_array_equal(choose_scale(values).apply(values), values.to_numpy(float))
    assert choose_scale(citations, "none").applied == "none"
    assert skewness(np.ones(5)) == 0.0


def test_a_log_that_cannot_be_taken_is_refused_in_one_line(shared_data):
    stance = pd.DataFrame(
        json.loads((shared_data / "ml_nlp_abstracts_stance" / "human_annotated_all.json").read_text())
    )
    with pytest.raises(DataError, match=r"^Target 'stance' has values below 0 \(down to -1\); log\(1 \+ y\)"):
        choose_scale(stance["stance"], "log1p", "stance")
    with pytest.raises(DataError, match="Unknown `target_scale` 'sqrt'"):
        HypothesisConfig(target_scale="sqrt").validate()
    # a holdout value below 0 keeps auto from taking the log the training rows alone would allow
    assert choose_scale(np.r_[np.zeros(90), np.arange(10) ** 3], y_holdout=[-1.0]).applied == "none"


def test_a_heavy_tailed_target_is_modelled_on_the_log_scale_and_the_run_says_so(yelp_embedded):
    train, hold, _, _ = yelp_embedded
    assert skewness(train["useful"]) > 2  # Yelp's "useful" votes: most reviews 0, a few dozens
    config = HypothesisConfig(m=32, k=4, levels=(), n=3)
    run = hypothesize(train, text_col="text", target_col="useful", holdout=hold, config=config)
    scale = run.summary["target"]["scale"]
    assert scale["applied"] == "log1p" and scale["requested"] == "auto"
    np.testing.assert_allclose(run.annotations["target"], np.log1p(hold["useful"].to_numpy(float)))
    present = run.annotations[[c for c in run.annotations if c.startswith("latent_")][0]].to_numpy() > 0
    logged = np.log1p(hold["useful"].to_numpy(float))
    assert run.table["separation"].iloc[0] == pytest.approx(logged[present].mean() - logged[~present].mean())
    text = format_table(run)
    assert "Target 'useful' modelled as log(1 + useful): its values (0 to " in text
    assert "--target-scale none keeps it as it is." in text

    as_is = hypothesize(
        train, text_col="text", target_col="useful", holdout=hold, config=replace(config, target_scale="none")
    )
    assert "scale" not in as_is.summary["target"] and "modelled as" not in format_table(as_is)
    np.testing.assert_array_equal(as_is.annotations["target"], hold["useful"].to_numpy(float))
    stars = hypothesize(train, text_col="text", target_col="stars", holdout=hold, config=config)
    assert "scale" not in stars.summary["target"]  # a left-leaning 1-5 score stays as it is


def test_the_cli_takes_the_scale_and_refuses_a_log_of_classes(yelp_files, tmp_path, capsys):
    train, hold = yelp_files
    base = ["hypothesize", "--data", str(train), "--holdout", str(hold), "--text-col", "text"]
    code = main(
        base
        + ["--target-col", "stars", "--target-kind", "multiclass", "--target-scale", "log1p"]
        + ["--out", str(tmp_path / "o")]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [
        "hsae: error: --target-scale log1p is for a continuous target; 'stars' is read as multiclass"
    ]
    assert not (tmp_path / "o").exists()
