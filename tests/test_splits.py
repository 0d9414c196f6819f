"""Safe splits on real tables: grouped, de-duplicated, and a warning when the holdout column tracks the target."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from ws_fixtures import upworthy_frame  # noqa: F401

from hsae_core.errors import DataError
from hsae_core.pipeline import HypothesisConfig, describe_split, load_split
from hsae_core.splits import (
    duplicate_mask,
    grouped_split,
    holdout_association,
    holdout_table_warnings,
    shared_id_warning,
    split_warnings,
    text_key,
)


@pytest.fixture(scope="module")
def upworthy(shared_data) -> pd.DataFrame:
    return pd.read_parquet(shared_data / "upworthy_headlines" / "upworthy_exploratory_packages.parquet")


def test_text_key_ignores_case_punctuation_and_spacing_only():
    assert text_key("They're Being Called  'Walmart's Worst Nightmare.'") == text_key(
        "they re being called walmart s worst nightmare"
    )
    assert text_key("Great pizza!") != text_key("Great pizzas!")
    assert duplicate_mask(["A b.", "c", "a  B", "C!", "d"]).tolist() == [False, False, True, True, False]


def test_grouped_split_keeps_every_test_on_one_side(upworthy):
    groups = upworthy["clickability_test_id"]
    train, hold = grouped_split(groups, 0.2, seed=0)
    assert len(train) + len(hold) == len(upworthy) and not set(train) & set(hold)
    assert not set(groups.iloc[train]) & set(groups.iloc[hold])
    assert abs(len(hold) / len(upworthy) - 0.2) < 0.01
    again, _ = grouped_split(groups, 0.2, seed=0)
    np.testing.assert_array_equal(train, again)  # seeded
    # Missing group values are groups of one row; a single group cannot be split.
    t, h = grouped_split(pd.Series(["a", "a", None, None, "b"]), 0.4, seed=1)
    assert sorted(np.r_[t, h]) == [0, 1, 2, 3, 4]
    with pytest.raises(DataError, match="single group"):
        grouped_split(pd.Series(["a"] * 5), 0.2)


def test_load_split_grouped_and_deduplicated_counts_what_it_dropped(upworthy):
    config = HypothesisConfig(group_col="clickability_test_id", dedupe=True)
    train, hold = load_split(upworthy, "headline", "ctr", config=config)
    dups = int(duplicate_mask(upworthy["headline"]).sum())
    assert dups > 10_000  # arms of one test often share a headline
    assert train.counts["dropped_duplicate_text"] == dups and len(train) + len(hold) == len(upworthy) - dups
    keys = lambda c: {text_key(t) for t in c.texts}  # noqa: E731
    assert not keys(train) & keys(hold), "no text on both sides"
    assert not set(train.frame["clickability_test_id"]) & set(hold.frame["clickability_test_id"])
    info = describe_split(train, hold, config)
    assert info["method"] == "grouped" and info["dropped_duplicate_text"] == dups
    assert info["groups"]["holdout"] > 0
    with pytest.raises(DataError, match="`split_col`.*`group_col`"):
        HypothesisConfig(group_col="clickability_test_id", split_col="winner", holdout_value="True").validate()


def test_dedupe_with_a_separate_holdout_drops_holdout_copies_of_training_texts(yelp_frames):
    train_df, hold_df = yelp_frames
    hold_df = pd.concat([hold_df, train_df.iloc[:5].assign(text=lambda d: d["text"].str.upper())], ignore_index=True)
    train, hold = load_split(train_df, "text", "stars", holdout=hold_df, config=HypothesisConfig(dedupe=True))
    assert hold.counts["dropped_duplicate_text"] >= 5 and len(hold) <= len(hold_df) - 5
    assert not {text_key(t) for t in train.texts} & {text_key(t) for t in hold.texts}


def test_outcome_related_holdout_column_is_flagged_and_a_random_one_is_not(upworthy, yelp_frames):
    config = HypothesisConfig(split_col="winner", holdout_value="True")
    train, hold = load_split(upworthy, "headline", "ctr", config=config)
    (warning,) = split_warnings(train, hold, config)
    assert "winner = True" in warning and "'ctr'" in warning and "p < 1e-16" in warning
    # The Yelp demo's val/holdout files are a random split of one pool: no warning.
    a, b = yelp_frames
    both = pd.concat([a.assign(split="val"), b.assign(split="holdout")], ignore_index=True)
    config = HypothesisConfig(split_col="split", holdout_value="holdout")
    assert split_warnings(*load_split(both, "text", "stars", config=config), config) == []
    # Binary targets use a chi-square test of the class shares.
    y = np.r_[np.zeros(500), np.ones(500)]
    assert holdout_association(y, np.r_[np.zeros(400, bool), np.ones(600, bool)], "binary")["associated"]
    rng = np.random.default_rng(0)
    assert not holdout_association(rng.integers(0, 2, 1000), rng.random(1000) < 0.2, "binary")["associated"]


def test_random_rows_that_cut_a_papers_reviews_in_two_are_flagged(shared_data, upworthy):
    reviews = pd.read_csv(shared_data / "iclr_nips_abstracts" / "ICLR17_reviews.csv")
    config = HypothesisConfig()
    train, hold = load_split(reviews, "Review", "Rating", config=config)
    shared = int(hold.frame["PID"].isin(set(train.frame["PID"])).sum())
    assert shared > 0.9 * len(hold)  # three reviews a paper: nearly every holdout review has a sibling in training
    (warning,) = split_warnings(train, hold, config)
    assert warning.startswith(f"{shared:,} of the {len(hold):,} holdout rows (")
    assert "share their 'PID'" in warning and "--group-col PID" in warning
    grouped = HypothesisConfig(group_col="PID")
    assert split_warnings(*load_split(reviews, "Review", "Rating", config=grouped), grouped) == []
    # Arms of one A/B test, and tests that reuse an image: both ids named, the one more rows share first
    train, hold = load_split(upworthy, "headline", "ctr", config=config)
    images = int(hold.frame["eyecatcher_id"].isin(set(train.frame["eyecatcher_id"].dropna())).sum())  # some have none
    (warning,) = split_warnings(train, hold, config)
    assert "(nearly all) share their 'clickability_test_id' with training rows; " in warning
    assert f"{images:,} ({images / len(hold):.0%}) their 'eyecatcher_id'" in warning
    assert warning.endswith("grouped by clickability_test_id or eyecatcher_id (CLI: --group-col clickability_test_id).")
    # Yelp's 4,000 demo reviews: a quarter of the holdout shares a business with training, too few to call leaky
    folder = shared_data / "yelp_reviews_demo"
    yelp = pd.concat([pd.read_json(folder / f"yelp-demo-{p}-2K.jsonl", lines=True) for p in ("val", "holdout")])
    train, hold = load_split(yelp, "text", "stars", config=config)
    assert 0.2 < hold.frame["business_id"].isin(set(train.frame["business_id"])).mean() < 1 / 3
    assert split_warnings(train, hold, config) == []


def test_shared_id_warning_starts_at_a_third_of_the_holdout():
    train = pd.DataFrame({"paper": [f"p{i}" for i in range(12)], "text": ["a b c"] * 12})
    hold = pd.DataFrame({"paper": ["p0", "p1", "p2"] + [f"q{i}" for i in range(6)], "text": ["a b c"] * 9})
    warning = shared_id_warning(train, hold)
    assert warning.startswith("3 of the 9 holdout rows (33%) share their 'paper' with training rows")
    assert shared_id_warning(train, hold.assign(paper=["p0", "p1"] + [f"q{i}" for i in range(7)])) is None
    assert shared_id_warning(train.drop(columns="paper"), hold.drop(columns="paper")) is None  # no id column


def test_a_split_warning_is_heard_before_the_sae_is_trained(yelp_embedded):
    from hsae_core.pipeline import hypothesize

    train, hold, X_train, X_hold = yelp_embedded
    frame = pd.concat([train, hold], ignore_index=True)
    frame["business_id"] = [f"b{i // 4}" for i in range(len(frame))]  # four reviews a business
    events = []
    run = hypothesize(
        frame,
        text_col="text",
        target_col="stars",
        config=HypothesisConfig(m=32, k=4, levels=(), n=3, cache_sae=False),
        embeddings=np.vstack([X_train, X_hold]),
        on_warning=lambda w: events.append(("warning", w)),
        progress=lambda *a, **k: events.append(("progress", None)),
    )
    assert events[0][0] == "warning" and "share their 'business_id'" in events[0][1]
    assert [w for kind, w in events if kind == "warning"] == [
        w for w in run.summary["warnings"] if w.startswith("split:")
    ]


def test_cli_holds_out_the_rows_of_one_value(upworthy_frame, tmp_path, capsys):  # noqa: F811
    """`--split-col test_week --holdout-value 201446`: the holdout is that week's arms, and nothing else; a
    value the column never takes is refused in one line that lists the ones it does."""
    from hsae_core.cli import main

    data = tmp_path / "upworthy.parquet"
    upworthy_frame.to_parquet(data)
    base = ["hypothesize", "--data", str(data), "--text-col", "headline", "--target-col", "ctr", "--n", "3"]
    out = tmp_path / "run"
    assert main([*base, "--split-col", "test_week", "--holdout-value", "201446", "--out", str(out)]) == 0
    assert "Holdout: rows where test_week = 201446" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["split"]["method"] == "by value" and summary["split"]["holdout_value"] == "201446"
    held = pd.read_parquet(out / "holdout_annotations.parquet")["row_id"]
    week = upworthy_frame["test_week"].astype(str)
    assert set(week.iloc[held]) == {"201446"} and len(held) == int((week == "201446").sum())

    assert main([*base, "--split-col", "test_week", "--holdout-value", "199901", "--out", str(tmp_path / "b")]) == 2
    assert main([*base, "--split-col", "test_week", "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "leaves no rows on one side (test_week takes 201446" in err[0]
    assert "--split-col and --holdout-value go together" in err[1]


def test_target_class_names_the_1_of_a_yes_no_target_and_is_refused_for_a_score(yelp_frames):
    train_df, hold_df = yelp_frames
    verdict = {"verdict": lambda d: np.where(d["stars"] >= 4, "keep", "drop")}
    train_df, hold_df = train_df.assign(**verdict), hold_df.assign(**verdict)
    later, _ = load_split(train_df, "text", "verdict", holdout=hold_df)
    assert (
        later.classes == ["drop", "keep"] and later.y.tolist() == (train_df["verdict"] == "keep").astype(int).tolist()
    )
    train, hold = load_split(train_df, "text", "verdict", holdout=hold_df, config=HypothesisConfig(target_class="drop"))
    assert train.classes == ["keep", "drop"]
    assert train.y.tolist() == (train_df["verdict"] == "drop").astype(int).tolist()
    assert hold.y.tolist() == (hold_df["verdict"] == "drop").astype(int).tolist()
    same, _ = load_split(train_df, "text", "verdict", config=HypothesisConfig(target_class="keep"))
    assert same.classes == ["drop", "keep"]
    with pytest.raises(DataError, match="Class 'maybe' .* its two values are: drop, keep"):
        load_split(train_df, "text", "verdict", config=HypothesisConfig(target_class="maybe"))
    with pytest.raises(DataError, match="`target_class` names a class, but 'stars' is read as a score"):
        load_split(train_df, "text", "stars", config=HypothesisConfig(target_class="5"))


def test_a_holdout_table_that_does_not_fit_is_named_as_the_holdout(yelp_frames):
    train_df, hold_df = yelp_frames
    with pytest.raises(DataError, match="^The holdout table: Column 'stars' not found"):
        load_split(train_df, "text", "stars", holdout=hold_df.drop(columns="stars"))
    words = hold_df.assign(stars=np.where(hold_df["stars"] >= 4, "good", "bad"))
    with pytest.raises(DataError, match="^The holdout table does not read like the training table: Target 'stars'"):
        load_split(train_df, "text", "stars", holdout=words)


def test_holdout_texts_repeating_training_texts_are_counted_and_warned(yelp_frames):
    train_df, hold_df = yelp_frames
    copies = train_df.iloc[:30].assign(text=lambda d: d["text"].str.upper() + "!")  # the same words
    hold_df = pd.concat([hold_df, copies], ignore_index=True)
    _, hold = load_split(train_df, "text", "stars", holdout=hold_df)
    assert hold.counts["repeats_training_text"] == 30
    (warning,) = holdout_table_warnings(hold)
    assert warning.startswith("30 of the holdout's 430 texts (7.0%) repeat a training text")
    _, clean = load_split(train_df, "text", "stars", holdout=hold_df.iloc[:400])
    assert holdout_table_warnings(clean) == []


def test_stored_embeddings_must_match_the_table_row_for_row(yelp_embedded, tmp_path):
    """Embeddings of the whole file given with a filtered table (2,000 rows for 1,762) were matched by position:
    every text got another text's vector (holdout CV R² -0.05 instead of 0.50) without a word."""
    from hsae_core.pipeline import hypothesize

    train, hold, X_train, X_hold = yelp_embedded
    config = HypothesisConfig(m=32, k=4, levels=(), n=3)
    kept = train["stars"] != 3
    said = f"`embeddings` has {len(X_train):,} rows; the table has {kept.sum():,}: give one row per table row"
    with pytest.raises(DataError, match=said):
        hypothesize(train[kept], text_col="text", target_col="stars", config=config, embeddings=X_train)
    # A DataFrame or a .npy path of the right rows is read as the matrix (a DataFrame was indexed by column)
    np.save(tmp_path / "kept.npy", X_train[kept.to_numpy()])
    runs = [
        hypothesize(train[kept], text_col="text", target_col="stars", config=config, embeddings=given)
        for given in (X_train[kept.to_numpy()], pd.DataFrame(X_train[kept.to_numpy()]), tmp_path / "kept.npy")
    ]
    assert [list(r.table["latent"]) for r in runs[1:]] == [list(runs[0].table["latent"])] * 2
    # With a holdout table of its own, its rows follow the training table's
    both = np.vstack([X_train, X_hold])
    run = hypothesize(train, holdout=hold, text_col="text", target_col="stars", config=config, embeddings=both)
    alone = hypothesize(train, holdout=hold, text_col="text", target_col="stars", config=config)  # embedded here
    assert list(run.table["latent"]) == list(alone.table["latent"])
    assert run.summary["metrics"]["overall"]["r2_cv"] == pytest.approx(alone.summary["metrics"]["overall"]["r2_cv"])
    with pytest.raises(DataError, match=rf"the table has {len(train):,} training rows \+ {len(hold):,} holdout rows"):
        hypothesize(train, holdout=hold, text_col="text", target_col="stars", config=config, embeddings=X_train)
