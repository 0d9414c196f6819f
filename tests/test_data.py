"""Reading tables and validating columns/targets, on the real data files."""

import numpy as np
import pandas as pd
import pytest

from hsae_core.data import holds_codes, names_codes, part_counts, prepare_corpus, read_table
from hsae_core.errors import DataError


def test_reads_every_supported_format(shared_data, tmp_path):
    jsonl = read_table(shared_data / "yelp_reviews_demo" / "yelp-demo-val-2K.jsonl")
    assert len(jsonl) == 2000 and {"text", "stars"} <= set(jsonl.columns)
    assert len(read_table(shared_data / "arxiv_cs_categories_small" / "arxiv_data.csv")) == 800
    assert len(read_table(shared_data / "upworthy_headlines" / "upworthy_exploratory_packages.parquet")) == 22666
    assert len(read_table(shared_data / "ml_nlp_abstracts_stance" / "human_annotated_all.json")) == 1550
    small = jsonl.iloc[:20][["text", "stars"]]
    small.to_csv(tmp_path / "t.tsv", sep="\t", index=False)
    assert read_table(tmp_path / "t.tsv").shape == (20, 2)


def test_unknown_type_and_missing_file(tmp_path):
    (tmp_path / "a.xlsx").write_text("x")
    with pytest.raises(DataError, match="Unknown file type '.xlsx'"):
        read_table(tmp_path / "a.xlsx")
    with pytest.raises(DataError, match="File not found"):
        read_table(tmp_path / "nope.csv")


def test_drops_and_counts_empty_texts_and_missing_targets(shared_data):
    df = pd.read_csv(shared_data / "arxiv_2018_citations" / "arxiv_2018_with_citations.csv")
    df["abstract"] = df["abstract"].astype(object)
    df.loc[:4, "abstract"] = ["", "   ", None, np.nan, 5]
    corpus = prepare_corpus(df, "abstract", "citation_count")
    c = corpus.counts
    assert c["read"] == 3000 and c["dropped_empty_text"] == 5
    assert c["kept"] == 3000 - 5 - c["dropped_missing_target"]
    assert c["dropped_missing_target"] > 700  # about 728 papers have no citation count
    assert corpus.target_kind == "continuous" and len(corpus.y) == c["kept"]


def test_html_texts_are_read_as_a_browser_shows_them(shared_data):
    """Upworthy's ledes are HTML fragments ('<p>When I saw ...</p>'): embedded as they were, labels and search
    results read '<p>'. The texts, and the table the pages show, lose their tags and entities; a column of
    plain text (the headlines), or one where a tag is the exception, stays as it is."""
    df = read_table(shared_data / "upworthy_headlines" / "upworthy_exploratory_packages.parquet")
    assert df["lede"].str.startswith("<p>").mean() > 0.9
    corpus = prepare_corpus(df, "lede", "ctr")
    assert corpus.counts["markup_removed"] > 20000
    assert not any("<p>" in t or "</p>" in t or "&amp;" in t or "&nbsp;" in t for t in corpus.texts)
    assert corpus.texts[0].startswith("When I saw *why* people are calling them")
    assert corpus.frame["lede"].tolist() == corpus.texts  # what the pages show is what was embedded
    assert part_counts(df, "lede", "ctr", [slice(None)])[0]["dropped_empty_text"] == corpus.counts["dropped_empty_text"]
    headlines = prepare_corpus(df, "headline")
    assert "markup_removed" not in headlines.counts and headlines.texts[:50] == df["headline"].str.strip()[:50].tolist()
    # A paragraph break reads as a new line; an entity as its character; a tag alone is an empty text
    few = pd.DataFrame({"text": ["<p>Cats &amp; dogs</p><p>Second&nbsp;part</p>", "<br/>", "<div>A</div>"]})
    assert prepare_corpus(few, "text").texts == ["Cats & dogs\nSecond part", "A"]
    # Prose where a tag-like '<b>' is the exception, and a formula's 'p<0.05', are no HTML
    prose = pd.DataFrame({"text": ["we bold it with <b> here", "p<0.05 in both arms", "plain words"]})
    assert prepare_corpus(prose, "text").texts == prose["text"].tolist()


def test_target_kinds(shared_data):
    cats = read_table(shared_data / "arxiv_cs_categories_small" / "arxiv_data.csv")
    corpus = prepare_corpus(cats, "summary", "category")
    assert corpus.target_kind == "multiclass" and corpus.classes == ["cs.AI", "cs.CR", "cs.LG", "stat.ML"]
    iclr = read_table(shared_data / "iclr_nips_abstracts" / "ICLR17_submissions.csv")
    iclr["accepted"] = iclr["Decision"].isin([1, 2]).map({True: "yes", False: "no"})
    binary = prepare_corpus(iclr, "Abstract", "accepted")
    assert binary.target_kind == "binary" and binary.classes == ["no", "yes"] and set(binary.y) == {0, 1}
    # ICLR's Decision codes (-1 workshop, 0 reject, 1 oral, 2 poster) are classes: its name says so
    decision = prepare_corpus(iclr, "Abstract", "Decision")
    assert decision.target_kind == "multiclass" and decision.classes == [-1, 0, 1, 2]
    assert prepare_corpus(iclr, "Abstract", "Decision", target_kind="continuous").target_kind == "continuous"
    # a score keeps being a score, whatever few values it takes; a coded name with many values is a number
    iclr["Rating"] = iclr["Decision"] + 3
    iclr["topic_label"] = np.arange(len(iclr)) % 11
    assert prepare_corpus(iclr, "Abstract", "Rating").target_kind == "continuous"
    assert prepare_corpus(iclr, "Abstract", "topic_label").target_kind == "continuous"
    assert holds_codes(iclr["Decision"]) and not holds_codes(iclr["Rating"]) and not holds_codes(iclr["topic_label"])
    assert [names_codes(n) for n in ("Decision", "label", "TopicId", "paper_status", "stars", "classification")] == [
        True,
        True,
        True,
        True,
        False,
        False,
    ]


def test_bad_columns_and_targets_give_one_line_errors(shared_data):
    df = read_table(shared_data / "yelp_reviews_demo" / "yelp-demo-val-2K.jsonl").iloc[:100]
    with pytest.raises(DataError, match="Column 'review' not found; the table has: review_id"):
        prepare_corpus(df, "review", "stars")
    with pytest.raises(DataError, match="single value"):
        prepare_corpus(df.assign(const=1), "text", "const")
    with pytest.raises(DataError, match="holds no text"):
        prepare_corpus(df, "stars", None)
    with pytest.raises(DataError, match="not numeric"):
        prepare_corpus(df, "text", "user_id", target_kind="continuous")


def test_a_column_in_the_table_twice_is_named_with_its_count(shared_data):
    # A copied target raised numpy's "operands could not be broadcast", a copied text column pandas'
    # "truth value of a Series is ambiguous".
    df = read_table(shared_data / "yelp_reviews_demo" / "yelp-demo-val-2K.jsonl").iloc[:100]
    with pytest.raises(DataError, match="^Column 'stars' appears 2 times in the table: rename or drop the copies$"):
        prepare_corpus(pd.concat([df, df[["stars"]]], axis=1), "text", "stars")
    with pytest.raises(DataError, match="^Column 'text' appears 3 times in the table"):
        prepare_corpus(pd.concat([df, df[["text"]], df[["text"]]], axis=1), "text", "stars")
    assert len(prepare_corpus(pd.concat([df, df[["useful"]]], axis=1), "text", "stars")) == 100  # other copies: fine


def test_a_target_of_lists_is_refused_in_one_line(shared_data):
    df = read_table(shared_data / "yelp_reviews_demo" / "yelp-demo-val-2K.jsonl").iloc[:100]
    with pytest.raises(
        DataError, match=r"Target 'stars' holds lists \(e.g. \[5\]\): the target must hold numbers or cat"
    ):
        prepare_corpus(df.assign(stars=[[s] for s in df["stars"]]), "text", "stars")


def test_numbers_written_with_marks_are_named_as_such(shared_data):
    """Click rates written "4.91%" and amounts "$1,200" read as text of hundreds of values: the error said only
    "is not numeric and has 401 distinct values", not what made them text."""
    df = pd.read_parquet(shared_data / "upworthy_headlines" / "upworthy_exploratory_packages.parquet").iloc[:400]
    text = df["headline"].reset_index(drop=True)
    rates = (df["ctr"] * 100).map("{:.2f}%".format).reset_index(drop=True)
    shown = ", ".join(repr(v) for v in pd.unique(rates)[:3])
    with pytest.raises(DataError) as said:
        prepare_corpus(pd.DataFrame({"text": text, "ctr": rates}), "text", "ctr")
    assert str(said.value) == (
        f"Target 'ctr' holds numbers written as text ({shown}): remove the '%' from its cells so they read as numbers"
    )
    amounts = pd.Series([f"${v:,}" for v in range(1000, 1400)])
    with pytest.raises(DataError, match=r"remove the '\$' and ',' from its cells"):
        prepare_corpus(pd.DataFrame({"text": text, "amount": amounts}), "text", "amount")
    words = pd.Series([f"tag{i % 60}" for i in range(400)])
    with pytest.raises(DataError, match=r"is not numeric and has 60 distinct values \('tag0', 'tag1', 'tag2', …\)"):
        prepare_corpus(pd.DataFrame({"text": text, "tags": words}), "text", "tags")


def test_a_score_with_text_placeholders_is_refused_not_read_as_classes(shared_data):
    """Stars stored as text with a few "?" cells used to become six classes, "?" one of them."""
    df = read_table(shared_data / "yelp_reviews_demo" / "yelp-demo-val-2K.jsonl").iloc[:400].copy()
    df["stars"] = df["stars"].astype(str).astype(object)
    df.loc[:44, "stars"] = "?"
    df.loc[45, "stars"] = "four"
    with pytest.raises(DataError, match=r"holds numbers, but 46 of its rows hold text instead \('\?', 'four'\)"):
        prepare_corpus(df, "text", "stars")
    as_classes = prepare_corpus(df, "text", "stars", target_kind="multiclass")
    assert "?" in as_classes.classes and as_classes.target_kind == "multiclass"
    df.loc[:45, "stars"] = None  # emptied, as the line says: dropped and counted, the rest a score
    cleaned = prepare_corpus(df, "text", "stars")
    assert cleaned.target_kind == "continuous" and cleaned.counts["dropped_missing_target"] == 46
    # labels that are mostly text, or numbers beside one word of two values, stay classes
    df["venue"] = np.where(np.arange(len(df)) % 3 == 0, "2019", np.where(np.arange(len(df)) % 3 == 1, "ACL", "NeurIPS"))
    assert prepare_corpus(df, "text", "venue").target_kind == "multiclass"


def test_spreadsheet_exports_read_or_say_what_to_change(shared_data, tmp_path):
    """Semicolons (many locales' CSV), UTF-16 with a byte-order mark and UTF-8 with one read as the same table;
    Latin-1, a file without a header row and a folder get one line that says what to change."""
    df = read_table(shared_data / "yelp_reviews_demo" / "yelp-demo-val-2K.jsonl").iloc[:50][["text", "stars"]]
    df.loc[0, "text"] = "Café crème brûlée, très bon; 5 étoiles"
    df.to_csv(tmp_path / "semicolon.csv", sep=";", index=False)
    df.to_csv(tmp_path / "utf16.csv", index=False, encoding="utf-16")
    df.to_csv(tmp_path / "bom.csv", index=False, encoding="utf-8-sig")
    for name in ("semicolon.csv", "utf16.csv", "bom.csv"):
        pd.testing.assert_frame_equal(read_table(tmp_path / name), df, check_dtype=False)
    df.to_csv(tmp_path / "latin1.csv", index=False, encoding="latin-1")
    with pytest.raises(DataError, match=r"^latin1.csv is not UTF-8 text \(it holds the byte 0xe9"):
        read_table(tmp_path / "latin1.csv")
    df.iloc[1:].to_csv(tmp_path / "noheader.csv", index=False, header=False)
    with pytest.raises(DataError, match="seems to have no header row: its first row became the column names"):
        read_table(tmp_path / "noheader.csv")
    survey = pd.DataFrame(
        {"How satisfied were you with the service you received at our restaurant today, all told?": ["a"]}
    )
    survey.to_csv(tmp_path / "survey.csv", index=False)  # a long question as a header is a header
    assert read_table(tmp_path / "survey.csv").shape == (1, 1)
    with pytest.raises(DataError, match="is a folder; give a table file"):
        read_table(tmp_path)
