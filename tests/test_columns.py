"""Column kinds from content, under pandas 3's `str` dtype and pandas 2's `object` alike, on real tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hsae_core.columns import (
    column_kinds,
    column_roles,
    group_columns,
    guess_target_column,
    guess_text_column,
    split_columns,
    target_columns,
    text_columns,
)


@pytest.fixture(scope="module")
def upworthy(shared_data) -> pd.DataFrame:
    return pd.read_parquet(shared_data / "upworthy_headlines" / "upworthy_exploratory_packages.parquet")


@pytest.fixture(scope="module")
def yelp(shared_data) -> pd.DataFrame:
    return pd.read_json(shared_data / "yelp_reviews_demo" / "yelp-demo-val-2K.jsonl", lines=True)


def as_object(frame: pd.DataFrame) -> pd.DataFrame:
    """The table as pandas 2 reads it: text columns with the `object` dtype."""
    return frame.astype({c: object for c in frame.columns if pd.api.types.is_string_dtype(frame[c])})


def as_str(frame: pd.DataFrame) -> pd.DataFrame:
    """The table as pandas 3 reads it: text columns with the `str` (StringDtype) dtype."""
    return frame.astype(
        {c: pd.StringDtype(na_value=np.nan) for c in frame.columns if pd.api.types.is_string_dtype(frame[c])}
    )


@pytest.mark.parametrize("convert", [as_str, as_object], ids=["pandas3-str", "object"])
def test_upworthy_text_is_the_headline_and_ids_are_ids(upworthy, convert):
    frame = convert(upworthy)
    if convert is as_str:
        assert frame["headline"].dtype != object  # the case that broke `dtype == object` checks
    kinds = column_kinds(frame)
    assert kinds["headline"] == "text" and kinds["lede"] == "text"
    assert kinds["clickability_test_id"] == "id" and kinds["eyecatcher_id"] == "id"
    assert kinds["ctr"] == kinds["impressions"] == kinds["test_week"] == "numeric"
    assert kinds["winner"] == "category"
    assert guess_text_column(frame) == "headline"
    targets = target_columns(frame, "headline")
    assert "ctr" in targets and "winner" in targets
    assert not {"clickability_test_id", "eyecatcher_id", "lede", "excerpt"} & set(targets)
    assert group_columns(frame, "headline", "ctr")[0] == "clickability_test_id"
    assert "winner" in split_columns(frame, "headline", "ctr")


def test_the_hypotheses_page_roles_from_one_profile_match_each_question_asked_alone(upworthy):
    """The page profiles the table once for every target's options; each answer is the one asked alone."""
    roles = column_roles(upworthy, "headline")
    assert roles.targets == target_columns(upworthy, "headline") and len(roles.targets) >= 5
    assert roles.likely_target == guess_target_column(upworthy, "headline") == "ctr"
    for target in roles.targets:
        assert roles.split_options[target] == split_columns(upworthy, "headline", target)
        assert roles.group_options[target] == group_columns(upworthy, "headline", target)
    assert roles.group_options["ctr"][0] == "clickability_test_id" and "ctr" not in roles.split_options["ctr"]


@pytest.mark.parametrize("convert", [as_str, as_object], ids=["pandas3-str", "object"])
def test_yelp_text_ids_numbers_and_dates(yelp, convert):
    frame = convert(yelp)
    kinds = column_kinds(frame)
    assert guess_text_column(frame) == "text" and text_columns(frame) == ["text"]
    assert kinds["review_id"] == kinds["user_id"] == kinds["business_id"] == "id"
    assert kinds["stars"] == "numeric" and kinds["date"] == "date"
    assert target_columns(frame, "text") == ["stars", "useful", "funny", "cool"]


def test_iclr_keyword_lists_written_as_text_are_not_prose(shared_data):
    frame = pd.read_csv(shared_data / "iclr_nips_abstracts" / "ICLR17_submissions.csv")
    assert frame["Keyword"].iloc[0] == "['Unsupervised Learning']"
    assert column_kinds(frame)["Keyword"] == "other"
    assert text_columns(frame) == ["Abstract", "Title"]


def test_numbers_in_a_column_named_as_ids_are_ids_not_targets(shared_data):
    """arXiv ids ("1901.00064") read as numbers, and NeurIPS tables carry their saved row index ("Unnamed: 0"):
    both were offered as targets to explain and columns to correlate features with."""
    arxiv = pd.read_csv(shared_data / "arxiv_2018_citations" / "arxiv_2018_with_citations.csv")
    assert pd.api.types.is_numeric_dtype(arxiv["arxiv_id_full"])
    assert column_kinds(arxiv)["arxiv_id_full"] == "id" and column_kinds(arxiv)["citation_count"] == "numeric"
    assert target_columns(arxiv, "abstract") == ["field", "citation_count"]
    nips = pd.read_csv(shared_data / "iclr_nips_abstracts" / "NIPS17_paper.csv")
    assert {column_kinds(nips)[c] for c in ("Unnamed: 0", "Unnamed: 0.1")} == {"id"}
    assert "Unnamed: 0" not in target_columns(nips, "Abstract") and "Decision" in target_columns(nips, "Abstract")
    # a name alone does not make an id: few values named so are codes (a topic id), still numbers
    topics = pd.DataFrame({"text": [f"story {i} about the city" for i in range(40)], "topic_id": [1, 2, 3, 4] * 10})
    assert column_kinds(topics)["topic_id"] == "numeric"
    # a user id that repeats (each user wrote several texts) is what keeps a user's texts on one side of a split
    users = topics.assign(user_id=np.arange(40) // 2, stars=np.arange(40) % 5 + 1)
    assert column_kinds(users)["user_id"] == "id" and target_columns(users, "text") == ["topic_id", "stars"]
    assert group_columns(users, "text", "stars") == ["user_id"]


def test_the_likely_target_is_the_one_with_a_target_name(shared_data, upworthy, yelp):
    data = shared_data / "iclr_nips_abstracts"
    tables = {
        "ctr": upworthy,  # before it: impressions, clicks, significance, winner ...
        "stars": yelp,  # before useful, funny, cool
        "Rating": pd.read_csv(data / "ICLR17_reviews.csv"),  # not Conf (the reviewer's confidence)
        "Decision": pd.read_csv(data / "ICLR17_submissions.csv"),
        "stance": pd.read_json(shared_data / "ml_nlp_abstracts_stance" / "human_annotated_all.json"),  # not year
        "category": pd.read_csv(shared_data / "arxiv_cs_categories_small" / "arxiv_data.csv"),
    }
    for expected, frame in tables.items():
        assert guess_target_column(frame, guess_text_column(frame)) == expected
    no_name = pd.DataFrame({"text": [f"the soup number {i} was cold" for i in range(30)], "b": range(30)})
    assert guess_target_column(no_name, "text") == "b"  # no common name: the first usable column
    assert guess_target_column(no_name.drop(columns="b"), "text") is None


def test_values_decide_not_dtypes():
    frame = pd.DataFrame(
        {
            "numbers_as_text": pd.array(["1.5", "2", "3.25", "4"] * 10, dtype="str"),
            "dates_as_text": pd.array(["2021-03-04", "2020-01-01", "2019-12-31", "2022-07-08"] * 10, dtype="str"),
            "labels": pd.array(["cs", "math", "physics", "cs"] * 10, dtype="str"),
            "prose": pd.array([f"review number {i} says the soup was cold and late" for i in range(40)], dtype="str"),
            "codes": pd.array([f"a{i:06x}f" for i in range(40)], dtype="str"),
            "flags": [True, False] * 20,
            "vectors": [np.zeros(3)] * 40,
            "empty": [None] * 40,
        }
    )
    assert column_kinds(frame) == {
        "numbers_as_text": "numeric",
        "dates_as_text": "date",
        "labels": "category",
        "prose": "text",
        "codes": "id",
        "flags": "category",
        "vectors": "other",
        "empty": "other",
    }
    assert guess_text_column(frame) == "prose"
    assert guess_text_column(frame.drop(columns="prose")) is None
