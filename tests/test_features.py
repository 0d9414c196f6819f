"""Feature statistics and the feature page, checked against dense computations on a real workspace."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from cli_process import cli_imports
from ws_fixtures import small_workspace, upworthy_frame, upworthy_workspace  # noqa: F401

from hsae_core.errors import DataError
from hsae_core.features import (
    FeatureExplorer,
    column_correlations,
    correlation_column,
    feature_stats,
    numeric_target,
    reading_order,
    search_features,
    text_features,
)
from hsae_core.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ws(small_workspace):
    return Workspace.open(small_workspace)


@pytest.fixture(scope="module")
def fx(ws):
    return FeatureExplorer(ws.codes, ws.sae.decoder_directions)


def busiest(ws) -> int:
    return int(ws.features.sort_values("n_active", ascending=False)["latent"].iloc[0])


def test_stats_match_dense_computation(ws):
    dense = ws.codes.toarray()
    stats = feature_stats(ws.codes)
    np.testing.assert_array_equal(stats["n_active"], (dense > 0).sum(0))
    np.testing.assert_allclose(stats["max_activation"], dense.max(0), rtol=1e-6)
    with np.errstate(invalid="ignore"):
        mean = np.where((dense > 0).sum(0) > 0, dense.sum(0) / np.maximum((dense > 0).sum(0), 1), 0)
    np.testing.assert_allclose(stats["mean_activation"], mean, rtol=1e-5)
    np.testing.assert_allclose(ws.features["density"], (dense > 0).mean(0))


def test_stats_ignore_stored_zeros_and_negatives():
    """A stored value at or below 0 is no activation: it counts nowhere, and a column of only such values (or
    none) has max 0, as an empty one does."""
    rows, cols = [0, 1, 2, 0, 1, 2], [0, 0, 1, 2, 2, 2]
    vals = np.array([0.5, 2.0, -1.0, 0.0, 3.0, 1.0], dtype=np.float32)
    codes = sp.csr_matrix((vals, (rows, cols)), shape=(3, 4))
    stats = feature_stats(codes)
    assert stats["n_active"].tolist() == [2, 0, 2, 0]
    np.testing.assert_allclose(stats["max_activation"], [2.0, 0.0, 3.0, 0.0])
    np.testing.assert_allclose(stats["mean_activation"], [1.25, 0.0, 2.0, 0.0])


def test_feature_page_documents_histogram_and_neighbours(ws, fx):
    j = busiest(ws)
    col = ws.codes[:, j].toarray().ravel()
    top = fx.top_documents(j, n=5)
    np.testing.assert_array_equal(top["doc"], np.argsort(-col, kind="stable")[:5])
    q = fx.quantile_samples(j)
    assert len(q) > 0 and q["activation"].max() <= top["activation"].iloc[0]
    assert (q["band"] == "q0-25").any(), "documents from the lowest quartile are shown"
    counts, edges = fx.histogram(j, bins=20)
    assert counts.sum() == (col > 0).sum() and len(edges) == 21
    W = ws.sae.decoder_directions
    cos = (W / np.linalg.norm(W, axis=1, keepdims=True)) @ (W[j] / np.linalg.norm(W[j]))
    cos[j] = -np.inf
    near = fx.nearest(j, n=5)
    np.testing.assert_array_equal(near["latent"], np.argsort(-cos, kind="stable")[:5])


def test_a_text_that_is_in_the_corpus_twice_is_one_top_document_with_its_copies(ws):
    """arXiv's 800 cs abstracts hold 673 distinct texts: the feature page listed doc 36 and doc 434, the same
    abstract, as the two strongest documents. Identical texts have identical codes; they are one row."""
    import scipy.sparse as sp

    j = busiest(ws)
    col = ws.codes[:, j].toarray().ravel()
    first, second = np.argsort(-col, kind="stable")[:2]
    codes = sp.vstack([ws.codes, ws.codes[[first, first, second]]]).tocsr()  # doc 0's text thrice, doc 1's twice
    n = ws.codes.shape[0]
    top = FeatureExplorer(codes, ws.sae.decoder_directions).top_documents(j, n=5)
    assert top["doc"].tolist() == np.argsort(-col, kind="stable")[:5].tolist()  # each text once, the first copy
    assert top["copies"].tolist() == [3, 2, 1, 1, 1] and not {n, n + 1, n + 2} & set(top["doc"])
    assert (FeatureExplorer(ws.codes, ws.sae.decoder_directions).top_documents(j, n=5)["copies"] == 1).all()


def test_lower_quantile_samples_show_each_text_once_and_none_of_the_top_documents(ws):
    """The quantile samples drew from every active document: a top document, or a text the corpus holds twice,
    could be shown again below the top documents."""
    import scipy.sparse as sp

    from hsae_core.csr_store import row_key

    j = busiest(ws)
    docs = np.flatnonzero(ws.codes[:, j].toarray().ravel() > 0)
    codes = sp.vstack([ws.codes, ws.codes[np.repeat(docs, 3)]]).tocsr()  # every text it fires on, four times
    fx = FeatureExplorer(codes, ws.sae.decoder_directions)
    top = fx.top_documents(j, n=10)
    for seed in range(5):
        q = fx.quantile_samples(j, per_bin=5, seed=seed, exclude=top["doc"].tolist())
        keys = [row_key(codes, d) for d in q["doc"]]
        assert len(q) == 4 * 5 and len(set(keys)) == len(keys), "no text twice"
        assert not set(keys) & {row_key(codes, d) for d in top["doc"]}, "no copy of a top document"
    page = fx.page(j)
    shown = [row_key(codes, d) for d in list(page["top"]["doc"]) + list(page["quantiles"]["doc"])]
    assert len(set(shown)) == len(shown)


def test_reading_order_lists_the_broad_levels_first_and_the_busiest_feature_first_in_each(ws):
    table, names = ws.features, ws.sae.level_names
    order = reading_order(table, names)
    assert sorted(order) == list(range(len(table)))
    size = [int(names[j].split("/")[0]) for j in order]
    assert size == sorted(size) and names[order[0]] == "2/1" and names[order[-1]] == "128/16"
    for level in set(names):
        busy = table["n_active"].to_numpy()[[j for j in order if names[j] == level]]
        assert (np.diff(busy) <= 0).all(), f"level {level}: the busiest first"
    plain = reading_order(table)  # one dictionary: the busiest first
    assert (np.diff(table["n_active"].to_numpy()[plain]) <= 0).all() and plain[0] == busiest(ws)


def test_cooccurrence_matches_dense_product(ws, fx):
    j = busiest(ws)
    B = (ws.codes.toarray() > 0).astype(int)
    together = B[B[:, j] == 1].sum(0)
    together[j] = 0
    co = fx.cooccurring(j, n=5)
    np.testing.assert_array_equal(co["together"], np.sort(together)[::-1][:5])
    assert (co["share"] <= 1).all() and (co["lift"] > 0).all()


def test_prevalence_by_a_metadata_column(ws, fx):
    j = busiest(ws)
    prev = fx.prevalence_by(j, ws.frame["stars"])
    active = ws.codes[:, j].toarray().ravel() > 0
    expected = pd.Series(active).groupby(ws.frame["stars"].astype(str)).mean()
    got = prev.set_index("group")["active_share"]
    pd.testing.assert_series_equal(got.sort_index(), expected.sort_index(), check_names=False)
    assert prev["n_docs"].sum() == 600
    with pytest.raises(DataError):
        fx.prevalence_by(j, ws.frame["stars"].iloc[:10])


def test_correlation_with_stars_finds_sentiment_features(ws, fx):
    r = fx.correlations(ws.frame["stars"].to_numpy(float))
    assert r.shape == (ws.codes.shape[1],) and np.abs(r).max() > 0.3
    most_negative = int(np.argmin(r))
    assert ws.frame["stars"][ws.codes[:, most_negative].toarray().ravel() > 0].mean() < ws.frame["stars"].mean()


def test_correlating_with_a_text_column_says_how_to_correlate_one_of_its_values(ws, fx):
    # It raised numpy's "could not convert string to float: 'happy'".
    frame = ws.frame.assign(mood=np.where(ws.frame["stars"] >= 4, "happy", "unhappy"))
    first = frame["mood"].value_counts().index[0]
    advice = (
        f"correlations(frame['mood'] == '{first}') or column_correlations(explorer, frame, 'mood', value='{first}')"
    )
    with pytest.raises(DataError, match=r"^Column 'mood' holds text \(.*\), not numbers: .*" + re.escape(advice)):
        fx.correlations(frame["mood"])
    np.testing.assert_allclose(  # the advice works, both ways
        fx.correlations(frame["mood"] == first), column_correlations(fx, frame, "mood", value=first)[1]
    )
    with pytest.raises(DataError, match="y has shape \\(10,\\) but there are"):
        fx.correlations(frame["stars"].to_numpy(float)[:10])


def test_a_count_with_missing_values_correlates_on_its_log_and_bins_in_order(ws, fx):
    """A column such as arXiv's citation_count (heavy-tailed, missing for a quarter of the papers) is
    correlated on log(1 + y) over the documents that have a value, and binned in order with "(missing)"."""
    useful = ws.frame["useful"].astype(float).where(np.arange(len(ws)) % 4 != 0)  # a quarter of the values missing
    name, y = correlation_column(useful.rename("useful"))
    assert name == "corr(log(1 + useful))"
    r = fx.correlations(y)
    known = useful.notna().to_numpy()
    dense = ws.codes.toarray()[known]
    j = int(np.argmax(np.abs(r)))
    assert r[j] == pytest.approx(np.corrcoef(dense[:, j], np.log1p(useful[known]))[0, 1], abs=1e-6)
    assert correlation_column(ws.frame["stars"])[0] == "corr(stars)"  # a score stays as it is

    numbers = pd.Series(np.where(known, np.arange(len(ws), dtype=float), np.nan), name="n")
    groups = fx.prevalence_by(busiest(ws), numbers)["group"].astype(str).tolist()
    assert groups[-1] == "(missing)" and len(groups) == 11
    lows = [float(g.split(",")[0].strip("(")) for g in groups[:-1]]
    assert lows == sorted(lows), "bins in numeric order, not as text"
    stars = ws.frame["stars"].where(np.arange(len(ws)) % 4 != 0)  # few values, some missing: no "nan" group
    assert set(fx.prevalence_by(busiest(ws), stars)["group"]) == {"1", "2", "3", "4", "5", "(missing)"}


def test_label_search_and_typed_text(ws):
    table = ws.features
    j = busiest(ws)
    word = table.loc[j, "keywords"].split(", ")[0]
    hits = search_features(table, word.upper())
    assert j in hits["latent"].tolist()
    assert search_features(table, "   ").empty
    text = ws.texts[5]
    active = text_features(ws.sae, ws.embed_query(text), table)
    np.testing.assert_array_equal(np.sort(active["latent"]), np.sort(ws.codes[5].indices))
    assert active["activation"].is_monotonic_decreasing and active["label"].notna().all()


def test_unknown_feature_is_a_clear_error(fx):
    with pytest.raises(DataError, match="does not exist"):
        fx.top_documents(999)


def test_hsae_features_lists_them_as_the_features_page_does_and_shows_one(small_workspace, ws, capsys):
    from hsae_core.cli import main
    from hsae_core.labelsets import features_with_labels

    table, names = features_with_labels(ws), ws.sae.level_names
    assert main(["features", str(small_workspace), "--n", "8"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{len(table)} of {len(table)} features") and lines[-1].startswith("…")
    listed = [int(line.split()[0]) for line in lines[2:-1]]
    assert listed == reading_order(table, names)[:8].tolist()  # the Features page's order
    assert all(table["label"].iloc[j][:20] in line for j, line in zip(listed, lines[2:-1]))

    assert main(["features", str(small_workspace), "--level", "4/1"]) == 0
    rows = capsys.readouterr().out.splitlines()[2:]
    assert len(rows) == 4 and all(line.split()[1] == "4/1" for line in rows)

    word = str(table["keywords"].iloc[busiest(ws)]).split(",")[0].strip()
    assert main(["features", str(small_workspace), "--search", word, "--n", "0"]) == 0
    rows = capsys.readouterr().out.splitlines()[2:]
    assert [int(line.split()[0]) for line in rows] == search_features(table, word, limit=len(table))["latent"].tolist()
    assert rows, f"some feature holds {word!r}"

    j = busiest(ws)
    assert main(["features", str(small_workspace), "--feature", str(j), "--docs", "3"]) == 0
    page = capsys.readouterr().out.splitlines()
    assert page[0] == f"Feature #{j}: {table['label'].iloc[j]}"
    top = FeatureExplorer(ws.codes, ws.sae.decoder_directions).top_documents(j, n=3)
    shown = [line.split()[0] for line in page if line.startswith("  #")]
    assert shown == [f"#{d}" for d in top["doc"]]
    # The activations stand in one column, also where the documents' numbers have different widths (#2022 above
    # #427 pushed its line's activation and text one place right)
    explorer = FeatureExplorer(ws.codes, ws.sae.decoder_directions)
    j = next(i for i in range(len(table)) if len({len(str(d)) for d in explorer.top_documents(i, n=5)["doc"]}) > 1)
    assert main(["features", str(small_workspace), "--feature", str(j)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  #")]
    assert len({re.search(r"\d\.\d{3}  ", line).start() for line in lines}) == 1, lines

    assert main(["features", str(small_workspace), "--level", "7/1"]) == 2
    assert main(["features", str(small_workspace), "--feature", str(len(table))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "No level '7/1'" in err[0] and f"Feature {len(table)} does not exist" in err[1]


def test_a_workspace_gives_its_sae_facts_without_loading_torch(small_workspace, ws):  # noqa: F811
    # `hsae features` took 4-5 s, 3 of them importing torch and scikit-learn to read the SAE's levels and
    # decoder; the listing and a feature's page now read them from the SAE folder's files
    fresh = Workspace.open(small_workspace)
    assert fresh.level_names == ws.sae.level_names and fresh.sae_config == ws.sae.config_
    assert np.array_equal(fresh.decoder_directions, ws.sae.decoder_directions)
    assert "sae" not in fresh._cache, "the facts came from the estimator"
    listing, imported = cli_imports("features", small_workspace)
    assert imported == [] and listing.startswith(f"{len(ws.features)} of ")
    page, imported = cli_imports("features", small_workspace, "--feature", "0")
    assert imported == [] and page.startswith("Feature #0:")


def test_hsae_features_and_relabel_take_a_workspace_by_its_dashboard_name(
    small_workspace, tmp_path, monkeypatch, capsys
):  # noqa: F811
    # After `hsae demo` the sidebar lists "yelp-demo"; `hsae features yelp-demo` said "yelp-demo is not a workspace
    # (no workspace.json); build one with `hsae build` or the dashboard"
    from hsae_core.cli import main

    root = tmp_path / "workspaces"
    shutil.copytree(small_workspace, root / "reviews")
    monkeypatch.setenv("HSAE_WORKSPACES_DIR", str(root))
    monkeypatch.chdir(tmp_path)
    assert main(["features", "reviews", "--n", "3"]) == 0
    assert capsys.readouterr().out.startswith(f"{len(Workspace.open(small_workspace).features)} of ")
    assert main(["relabel", "reviews", "--labeller", "keywords"]) == 0
    assert "keywords" in capsys.readouterr().out
    # A name that is no workspace there still says what it is not
    assert main(["features", "nothing-here"]) == 2
    assert "No workspace folder nothing-here" in capsys.readouterr().err


def test_hsae_features_into_a_pipe_its_reader_closed_ends_quietly(small_workspace):  # noqa: F811
    # `hsae features WS | head -2` printed "hsae: error: Filesystem error: Broken pipe" and exited with status 2
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "hsae_core.cli", "features", str(small_workspace), "--n", "0"],
            stdout=write,
            stderr=subprocess.PIPE,
            cwd=REPO,
            timeout=300,
        )
    finally:
        os.close(write)
    assert proc.stderr.decode() == "" and proc.returncode == 141


def test_hsae_features_correlate_lists_the_strongest_first_within_each_test(upworthy_workspace, capsys):  # noqa: F811
    """`hsae features WS --correlate ctr --control clickability_test_id`: each feature's correlation with the click
    rate inside its A/B test (activation and ctr each less their test's mean, computed here with pandas), listed
    strongest first; without --control, the plain Pearson correlation."""
    from hsae_core.cli import main

    space = Workspace.open(upworthy_workspace)
    frame, dense = space.frame, space.codes.toarray()
    tests = frame["clickability_test_id"]

    def listed(*extra) -> tuple[list[int], np.ndarray]:
        assert main(["features", str(upworthy_workspace), "--correlate", "ctr", "--n", "0", *extra]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert "the strongest correlation first" in lines[0]
        rows = [line.split() for line in lines[2:]]
        return [int(r[0]) for r in rows], np.array([float(r[4]) for r in rows])

    order, shown = listed()
    expected = np.array([np.corrcoef(dense[:, j], frame["ctr"])[0, 1] for j in order])
    np.testing.assert_allclose(shown, expected, atol=5e-4)  # printed with 3 decimals
    assert sorted(order) == list(range(dense.shape[1]))

    order, shown = listed("--control", "clickability_test_id")
    within = pd.DataFrame(dense).groupby(tests.to_numpy()).transform("mean").to_numpy()
    ctr = frame["ctr"] - frame.groupby("clickability_test_id")["ctr"].transform("mean")
    acts = dense - within
    expected = np.array([np.corrcoef(acts[:, j], ctr)[0, 1] for j in order])
    np.testing.assert_allclose(shown, expected, atol=5e-4)
    assert (np.diff(np.abs(expected)) <= 1e-3).all()  # strongest first, of either sign
    assert (shown < 0).any() and (shown > 0).any()

    # misuse is one line each, and a category without a value is asked for one
    assert main(["features", str(upworthy_workspace), "--value", "x"]) == 2
    assert main(["features", str(upworthy_workspace), "--correlate", "headline"]) == 2
    assert main(["features", str(upworthy_workspace), "--correlate", "ctr", "--control", "ctr"]) == 2
    assert main(["features", str(upworthy_workspace), "--correlate", "ctr", "--feature", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4
    assert "--value and --control go with --correlate" in err[0] and "is the text column" in err[1]
    assert "is the target column" in err[2] and "give one of them" in err[3]


def test_correlating_with_a_category_lists_its_values_to_pick(shared_data):
    stance = pd.read_json(shared_data / "ml_nlp_abstracts_stance" / "human_annotated_all.json")
    common = stance["venue"].value_counts().index[:8].tolist()
    with pytest.raises(DataError, match=re.escape("pick one of its values (`value`): " + ", ".join(common) + " and")):
        numeric_target(stance["venue"])
