"""Evidence, report and progress helpers on a real run over Yelp reviews."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hsae_core.evidence import holdout_codes, hypothesis_evidence
from hsae_core.pipeline import HypothesisConfig, describe_split, hypothesize, load_run, load_split
from hsae_core.progress import StagedProgress, format_seconds
from hsae_core.report import effect_rows, headline_metrics, readable_table, split_summary, verdict_line
from hsae_core.stats import coef_ci, format_p


@pytest.fixture(scope="module")
def yelp_run(yelp_embedded, tmp_path_factory):
    """A run over 1,200 real reviews (random 25% holdout) written to disk, with the table and embeddings."""
    train, hold, X_train, X_hold = yelp_embedded
    frame = pd.concat([train, hold], ignore_index=True)[["text", "stars"]]
    X = np.vstack([X_train, X_hold])
    out = tmp_path_factory.mktemp("run")
    config = HypothesisConfig(m=64, k=4, n=6, holdout_frac=0.25, dedupe=True)
    hypothesize(frame, text_col="text", target_col="stars", config=config, embeddings=X, out_dir=out)
    return load_run(out), frame, X


def test_evidence_is_strongest_first_on_both_sides_of_the_stored_target(yelp_run):
    run, frame, X = yelp_run
    codes = holdout_codes(run, X)
    rows = run.annotations["row_id"].to_numpy()
    np.testing.assert_allclose(codes.toarray(), run_sae_codes(run, X[rows]), rtol=1e-5)
    centre = run.annotations["target"].mean()
    for _, row in run.table.iterrows():
        support, counter = hypothesis_evidence(run, frame, "text", row, codes=codes, n=5)
        sign = np.sign(row["separation"])
        for part, side in ((support, sign), (counter, -sign)):
            assert part["activation"].is_monotonic_decreasing and (part["activation"] > 0).all()
            assert (np.sign(part["stars"] - centre) == side).all()
            assert part["stars"].tolist() == frame["stars"].to_numpy()[part["doc"]].tolist()
            assert part["text"].tolist() == frame["text"].to_numpy()[part["doc"]].tolist()  # whole texts
        # The strongest supporting document is the one with the highest activation among all that qualify.
        present = run.annotations[row["annotation_col"]].to_numpy() == 1
        y = run.annotations["target"].to_numpy()
        agree = present & (np.sign(y - centre) == sign)
        if agree.any() and len(support):
            act = codes[:, int(row["latent"])].toarray().ravel()
            assert support["activation"].iloc[0] == pytest.approx(act[agree].max())


def run_sae_codes(run, X):
    from hsae_core.sae import SparseAutoencoder

    return SparseAutoencoder.load(run.out_dir / "sae").transform(X).toarray()


def test_report_names_metrics_formats_p_and_gives_the_ceiling(yelp_run):
    run, _, _ = yelp_run
    metrics = run.summary["metrics"]["overall"]
    names = [name for name, _, _ in headline_metrics(metrics)]
    # the out-of-fold score first, beside the ceiling it can be compared with; the optimistic one after
    assert names[:3] == ["Holdout R² (5-fold CV)", "Embedding ceiling R²", "Holdout R² (in sample)"]
    values = [value for _, value, _ in headline_metrics(metrics)]
    expected = (metrics["r2_cv"], metrics["embedding_baseline"]["value"], metrics["r2_in_sample"])
    assert values[:3] == [f"{v:.3f}" for v in expected]
    shown = readable_table(run.table)
    assert shown["coef_p"].map(lambda p: isinstance(p, str)).all()
    assert "random 25% of the rows" in split_summary(run.summary)
    assert "duplicate texts dropped" in split_summary(run.summary)
    effects = effect_rows(run.table)
    assert effects["coef"].is_monotonic_increasing and (effects["low"] <= effects["coef"]).all()
    assert (effects["high"] >= effects["coef"]).all()


def test_the_verdict_sentence_reads_significance_and_the_out_of_fold_fit_together():
    def metrics(metric, cv, ceiling, bonf, fdr, n=10, **extra):
        out = {"metric": metric, f"{metric}_cv": cv, "n_hypotheses": n, "n_significant_bonferroni": bonf}
        return out | {"n_significant_fdr": fdr, "embedding_baseline": {"value": ceiling}} | extra

    assert verdict_line(metrics("r2", 0.30, 0.60, 7, 9)) == (
        "7 of the 10 hypotheses hold up on the holdout (Bonferroni; 9 at a 5% FDR); together they explain 50% as "
        "much as the embeddings (R² 0.300 out of fold against 0.600)."
    )
    said = verdict_line(metrics("auc", 0.80, 0.90, 1, 2))  # AUC counts from chance (0.5): 0.3 of 0.4
    assert said.startswith("1 of the 10 hypotheses holds up") and "75% of the way from chance" in said
    assert "as much as the embeddings" in verdict_line(metrics("r2", 0.65, 0.60, 3, 3))  # never "108%"
    assert verdict_line(metrics("r2", 0.30, 0.60, 0, 4)).startswith(
        "None of the 10 hypotheses survives Bonferroni on the holdout, though 4 pass a 5% FDR"
    )
    assert verdict_line(metrics("auc", 0.505, 0.61, 0, 0)).startswith("None of the 10 hypotheses holds up")
    assert "no better than its mean (R² -0.020 out of fold" in verdict_line(metrics("r2", -0.02, 0.1, 0, 0))
    assert "a chance finding" in verdict_line(metrics("r2", -0.02, 0.0, 1, 1))  # significant, but predicts nothing
    assert "chance findings until another sample backs them" in verdict_line(metrics("auc", 0.5, 0.7, 1, 2))
    assert "read each as a lead, not a finding" in verdict_line(metrics("auc", 0.6, 0.7, 0, 0))
    # an embeddings' model no better than chance (a rare class on a small holdout) is said to be so, not a bar
    assert verdict_line(metrics("auc", 0.562, 0.414, 0, 0)) == (
        "No single hypothesis of the 10 is significant on the holdout; together they reach AUC 0.562 out of fold "
        "against 0.414 for the embeddings (no better than chance here: too few holdout rows for a model on all the "
        "embedding's dimensions): read each as a lead, not a finding."
    )
    assert "the embeddings reach -0.013 (no better than the mean here" in verdict_line(
        metrics("r2", -0.1, -0.013, 0, 0)
    )
    untested = metrics("auc", float("nan"), 0.6, 0, 0, n=4, notes=["no hypothesis could enter the model"])
    assert verdict_line(untested) == (
        "The holdout cannot test these 4 hypotheses (no hypothesis could enter the model): read them as untested."
    )
    assert verdict_line({}) is None
    some_untested = verdict_line(metrics("auc", 0.7, 0.8, 1, 1, n=4, n_tested=2))
    assert some_untested.endswith("2 of the 4 could not be tested there (each has a note saying why).")


def test_format_p_and_normal_confidence_intervals():
    assert format_p(0.0) == "< 1e-16" and format_p(3e-40) == "< 1e-16"
    assert format_p(2.4e-12) == "2.4e-12" and format_p(0.0123) == "0.012" and format_p(0.5, equals=True) == "= 0.5"
    assert format_p(float("nan")) == "n/a" and format_p(None) == "n/a"
    low, high = coef_ci([1.0, -2.0], [0.5, np.nan])
    assert low[0] == pytest.approx(1 - 1.959964 * 0.5) and high[0] == pytest.approx(1 + 1.959964 * 0.5)
    assert np.isnan(low[1]) and np.isnan(high[1])


def test_staged_progress_is_one_monotonic_bar_with_time_left():
    seen = []
    progress = StagedProgress(
        {"table": 1, "embeddings": 6, "sae": 3}, lambda frac, msg, left: seen.append((frac, msg, left))
    )
    progress(1, 1, "table: reused")
    progress(0, 4000, "embeddings: 0 of 4000 cached")
    progress(2000, 4000, "embeddings: 2000 of 4000")
    progress(4000, 4000, "embeddings: done")
    progress(10, 200, "sae: epoch 10: nmse 0.6")
    progress(97, 97, "sae: done")  # early stopping: the stage ends before its budget
    fractions = [f for f, _, _ in seen]
    assert fractions == sorted(fractions) and fractions[0] == pytest.approx(0.1)
    assert fractions[2] == pytest.approx(0.4) and fractions[-1] == pytest.approx(1.0)
    assert seen[2][2] is not None and seen[2][2] >= 0
    seconds = progress.finish()
    assert set(seconds) == {"table", "embeddings", "sae"}
    assert format_seconds(65) == "1 min 05 s" and format_seconds(42.4) == "42 s" and format_seconds(None) == ""


def test_split_summary_counts_what_each_table_dropped():
    """A separate holdout table drops its own rows; a split of one table counts them once."""
    train = pd.DataFrame({"text": ["a b", "", "c d", "e f", "g h"], "y": [1.0, 2.0, None, 3.0, 4.0]})
    hold = pd.DataFrame({"text": ["i j", None, "k l", "  "], "y": [1.0, 2.0, 3.0, 5.0]})
    config = HypothesisConfig()
    tr, ho = load_split(train, "text", "y", holdout=hold, config=config)
    summary = {
        "rows": {"train": tr.counts, "holdout": ho.counts},
        "split": describe_split(tr, ho, config, separate_holdout=True),
        "target": {"column": "y"},
    }
    assert split_summary(summary) == (
        "Holdout: a separate holdout table · training rows 3 · holdout rows 2 · "
        "rows with an empty text dropped 3 · rows with no 'y' dropped 1"
    )
    both = pd.concat([train, hold], ignore_index=True)
    tr, ho = load_split(both, "text", "y", config=HypothesisConfig(holdout_frac=0.4))
    summary = {"rows": {"train": tr.counts, "holdout": ho.counts}, "config": {"holdout_frac": 0.4}, "target": {}}
    assert split_summary(summary).endswith("rows with an empty text dropped 3 · rows with no 'target' dropped 1")
    # HTML texts (web exports) are read without their tags, and the run's split line says so, counted once
    html = pd.DataFrame({"text": [f"<p>review {i} &amp; more</p>" for i in range(10)], "y": np.arange(10.0)})
    tr, ho = load_split(html, "text", "y", config=HypothesisConfig(holdout_frac=0.4))
    assert "<p>" not in " ".join(tr.texts + ho.texts) and "review 0 & more" in tr.texts + ho.texts
    summary = {"rows": {"train": tr.counts, "holdout": ho.counts}, "config": {"holdout_frac": 0.4}, "target": {}}
    assert split_summary(summary).endswith(
        "10 texts were HTML: read without their tags and entities, as a browser shows them"
    )
