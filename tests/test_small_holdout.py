"""A small holdout tests fewer hypotheses (at least rows_per_hypothesis holdout rows each), and says so."""

from __future__ import annotations

from dataclasses import replace

import pytest

from hsae_core.cli import main
from hsae_core.errors import DataError
from hsae_core.pipeline import HypothesisConfig, format_table, hypotheses_to_test, hypothesize


def test_the_number_tested_follows_the_holdout_rows():
    config = HypothesisConfig()  # n 20, 20 rows per hypothesis
    assert [hypotheses_to_test(config, rows) for rows in (40, 100, 202, 399, 400, 2000)] == [3, 5, 10, 19, 20, 20]
    assert hypotheses_to_test(replace(config, n=2), 40) == 2  # never more than asked
    assert hypotheses_to_test(replace(config, rows_per_hypothesis=0), 40) == 20  # 0: always n
    with pytest.raises(DataError, match="`rows_per_hypothesis` must be a whole number >= 0, got -1"):
        replace(config, rows_per_hypothesis=-1).validate()


def test_a_run_on_a_hundred_holdout_rows_tests_five_and_says_why(yelp_embedded):
    train, hold, _, _ = yelp_embedded
    config = HypothesisConfig(m=32, k=4, levels=(), n=20)
    run = hypothesize(train, text_col="text", target_col="stars", holdout=hold.iloc[:100], config=config)
    assert len(run.table) == 5 and run.summary["metrics"]["overall"]["n_hypotheses"] == 5
    assert run.summary["fewer_hypotheses"] == {"asked": 20, "tested": 5, "holdout_rows": 100, "rows_per_hypothesis": 20}
    assert (
        "5 hypotheses, not 20: the holdout's 100 rows test at most one per 20 rows, so that the joint "
        "model and the Bonferroni correction do not spread them thin; --rows-per-hypothesis 0 chooses all of them."
    ) in format_table(run)
    every = hypothesize(
        train,
        text_col="text",
        target_col="stars",
        holdout=hold.iloc[:100],
        config=replace(config, rows_per_hypothesis=0),
    )
    assert len(every.table) == 20 and "fewer_hypotheses" not in every.summary
    assert every.table["latent"].tolist()[:5] == run.table["latent"].tolist()  # stepwise: the same first five


def test_the_cli_refuses_a_negative_rows_per_hypothesis(capsys):
    args = ["hypothesize", "--data", "x.csv", "--target-col", "y", "--out", "o", "--rows-per-hypothesis", "-1"]
    assert main(args) == 2
    assert "argument --rows-per-hypothesis: expected a whole number >= 0, got -1" in capsys.readouterr().err
