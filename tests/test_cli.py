"""The `hsae` command end to end on real Yelp reviews, and its one-line errors on bad input."""

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_process import cli_run
from ws_fixtures import small_workspace  # noqa: F401

from hsae_core import settings
from hsae_core.cli import main
from hsae_core.errors import DataError
from hsae_core.pipeline import format_table, load_run
from hsae_core.report import verdict_line
from hsae_core.sae import SparseAutoencoder
from hsae_core.workspace import Workspace, dashboard_command

REQUIRED = [
    "latent",
    "hypothesis",
    "selection_score",
    "prevalence",
    "separation",
    "separation_p",
    "coef",
    "coef_p",
    "significant_bonferroni",
    "significant_fdr",
]


@pytest.fixture(scope="module")
def run_dir(yelp_files, tmp_path_factory):
    train, hold = yelp_files
    out = tmp_path_factory.mktemp("run")
    code = main(
        [
            "hypothesize",
            "--data",
            str(train),
            "--holdout",
            str(hold),
            "--text-col",
            "text",
            "--target-col",
            "stars",
            "--n",
            "10",
            "--m",
            "64",
            "--k",
            "8",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    return out


def test_hypothesize_writes_table_summary_annotations_and_sae(run_dir, yelp_files, capsys):
    table = pd.read_csv(run_dir / "hypotheses.csv")
    assert set(REQUIRED) <= set(table.columns) and len(table) == 10
    assert table["hypothesis"].str.len().min() > 0
    summary = json.loads((run_dir / "summary.json").read_text())
    # each count said once: how many rows each side kept, and what each table read and dropped
    assert summary["rows"] == {
        "train": 800,
        "holdout": 400,
        "tables": {
            "data": {"read": 800, "dropped_empty_text": 0, "dropped_missing_target": 0},
            "holdout": {"read": 400, "dropped_empty_text": 0, "dropped_missing_target": 0, "repeats_training_text": 0},
        },
    }
    assert summary["annotator"] == "activation" and summary["offline_annotation"] is True
    # Five star values read as a score, and the table's text says so and how to read them as classes
    assert summary["target"] == {"column": "stars", "kind": "continuous", "classes": None, "values": [1, 2, 3, 4, 5]}
    assert (
        "Target 'stars' read as a score (5 values: 1, 2, 3, 4, 5); --target-kind multiclass reads them as classes."
        in format_table(load_run(run_dir)).splitlines()
    )
    metrics = summary["metrics"]["overall"]
    assert {"r2_in_sample", "r2_cv", "n_significant_bonferroni", "embedding_baseline"} <= set(metrics)
    assert {"read", "embed", "train_sae", "select", "interpret", "annotate", "evaluate", "total"} <= set(
        summary["seconds"]
    )
    assert summary["versions"]["torch"].startswith("2.13")
    ann = pd.read_parquet(run_dir / "holdout_annotations.parquet")
    assert ann.shape == (400, 12) and list(ann["row_id"]) == list(range(400))
    holdout_stars = pd.read_json(yelp_files[1], lines=True)["stars"].to_numpy()
    np.testing.assert_array_equal(ann["target"].to_numpy(), holdout_stars)  # the encoded holdout target
    assert set(np.unique(ann.drop(columns=["row_id", "target"]).to_numpy())) <= {0.0, 1.0}
    sae = SparseAutoencoder.load(run_dir / "sae")
    assert (sae.m, sae.k, sae.levels) == (64, 8, settings.SAE.levels)  # --m/--k set the main level; levels stay
    assert summary["sae"]["levels"] == [[64, 8]] + [list(pair) for pair in settings.SAE.levels]
    # each hypothesis names the level its feature comes from
    assert [sae.level_names[j] for j in table["latent"]] == table["level"].tolist()


def test_a_run_written_with_the_earlier_row_counts_opens_and_reads_the_same(run_dir, tmp_path):
    """Runs on disk from before kept one dict of counts per side ({"train": {"read", ..., "kept"}, "holdout":
    {...}}); load_run reads them in today's shape and the split line under the table says the same."""
    import shutil

    from hsae_core.snapshot import fingerprint

    old = tmp_path / "old-run"
    shutil.copytree(run_dir, old)
    summary = json.loads((old / "summary.json").read_text())
    tables = summary["rows"]["tables"]
    summary["rows"] = {
        "train": {**tables["data"], "kept": summary["rows"]["train"]},
        "holdout": {**tables["holdout"], "kept": summary["rows"]["holdout"]},
    }
    (old / "summary.json").write_text(json.dumps(summary, indent=2))
    manifest = json.loads((old / "run.json").read_text())  # as the earlier code wrote it, with its manifest
    manifest["files"]["summary.json"] = fingerprint(old / "summary.json")
    (old / "run.json").write_text(json.dumps(manifest))
    then, now = load_run(old), load_run(run_dir)
    assert then.summary["rows"] == now.summary["rows"]
    assert format_table(then) == format_table(now)


def test_hypotheses_are_real_findings_on_the_holdout(run_dir):
    """Stars are predictable from review text: the hypotheses must carry that signal on unseen reviews."""
    table = pd.read_csv(run_dir / "hypotheses.csv")
    metrics = json.loads((run_dir / "summary.json").read_text())["metrics"]["overall"]
    # Each of several hypotheses separates stars on the holdout on its own (Welch, Bonferroni over the 10), and
    # at least one stays significant beside all the others in the joint model. (On this 400-review holdout the
    # levels' broad features overlap the fine ones, so the joint model leaves fewer individually significant.)
    assert (table["separation_p"] < 0.05 / len(table)).sum() >= 3
    assert table["significant_bonferroni"].sum() >= 1
    assert metrics["r2_in_sample"] > 0.1
    assert 0.3 < metrics["embedding_baseline"]["value"] < 0.9
    # The hypothesis statistics agree in sign with how the latent was selected.
    sig = table[table["significant_bonferroni"]]
    assert (np.sign(sig["separation"]) == np.sign(sig["selection_score"])).mean() >= 0.8


def test_the_run_says_in_words_how_many_hypotheses_hold_up_and_how_much_they_explain(run_dir):
    metrics = json.loads((run_dir / "summary.json").read_text())["metrics"]["overall"]
    lines = format_table(load_run(run_dir)).splitlines()
    share = metrics["r2_cv"] / metrics["embedding_baseline"]["value"]
    n_bonf, n_fdr = metrics["n_significant_bonferroni"], metrics["n_significant_fdr"]
    assert n_bonf >= 1 and metrics["r2_cv"] > 0.1  # stars are in the text: the sentence says so
    said = f"{n_bonf} of the 10 hypotheses hold{'s' if n_bonf == 1 else ''} up on the holdout (Bonferroni; {n_fdr} at"
    assert any(
        line.startswith(said) and f"they explain {share:.0%} as much as the embeddings" in line for line in lines
    )


def test_a_target_the_texts_do_not_predict_is_said_to_have_no_hypothesis_that_holds_up(yelp_files, tmp_path, capsys):
    """Random numbers beside real reviews: whatever features are selected on the training rows, the holdout must
    not back them, and the run must say so in words rather than leave a table of coefficients to be read (a
    coefficient or two can pass a test by chance: the out-of-fold fit says what they are worth)."""
    frames = [pd.read_json(path, lines=True) for path in yelp_files]
    rng = np.random.default_rng(0)
    paths = []
    for name, frame in zip(("train", "holdout"), frames):
        frame["noise"] = rng.normal(size=len(frame))
        frame.to_json(tmp_path / f"{name}.jsonl", orient="records", lines=True, date_format="iso")
        paths.append(tmp_path / f"{name}.jsonl")
    args = ["hypothesize", "--data", str(paths[0]), "--holdout", str(paths[1]), "--text-col", "text"]
    code = main(args + ["--target-col", "noise", "--n", "10", "--m", "64", "--k", "8", "--out", str(tmp_path / "o")])
    assert code == 0
    out = capsys.readouterr().out.splitlines()
    metrics = json.loads((tmp_path / "o" / "summary.json").read_text())["metrics"]["overall"]
    assert metrics["r2_cv"] < 0.02 and metrics["embedding_baseline"]["value"] < 0.02, "noise: nothing to predict"
    verdict = verdict_line(metrics)
    assert verdict in out and "as much as the embeddings" not in verdict
    # On this machine R² out of fold is -0.007 and one of the ten passes Bonferroni by chance: the sentence says
    # the fit is no better than the mean and calls that one a chance finding. (Another CPU's last bits can
    # pick other latents; the sentence then follows its own numbers.)
    if metrics["r2_cv"] <= 0.01:
        assert "no better than its mean" in verdict
        assert verdict.startswith("None of the 10 hypotheses holds up") or "chance finding" in verdict


def test_multiclass_target_gives_one_vs_rest_tables(yelp_files, tmp_path, capsys):
    train, hold = yelp_files
    code = main(
        [
            "hypothesize",
            "--data",
            str(train),
            "--holdout",
            str(hold),
            "--text-col",
            "text",
            "--target-col",
            "stars",
            "--target-kind",
            "multiclass",
            "--n",
            "5",
            "--m",
            "64",
            "--k",
            "4",
            "--select",
            "separation",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    table = pd.read_csv(tmp_path / "hypotheses.csv")
    assert sorted(table["class"].unique()) == [1, 2, 3, 4, 5] and len(table) == 25
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["metrics"]) == {"1", "2", "3", "4", "5"} and "auc_cv" in summary["metrics"]["5"]
    # Each class's any-of rule: positive hypotheses of its table, its holdout F1 as the saved annotations give it
    ann = pd.read_parquet(tmp_path / "holdout_annotations.parquet")
    printed = capsys.readouterr().out
    for stars in ("1", "5"):
        rule = summary["metrics"][stars]["any_of"]
        of_class = table[table["class"] == int(stars)]
        assert sorted(of_class.loc[of_class["any_of"], "latent"]) == sorted(rule["latents"])  # marked in the CSV
        if not rule["latents"]:  # the few positive hypotheses do no better than calling every review that class
            assert rule["outdone_by_every_row"] and stars == "5"
            assert f"[{stars}] {stars}: no rule of its hypotheses marks it better than calling every text" in printed
            continue
        rows = of_class.set_index("latent").loc[rule["latents"]]
        assert len(rows) and (rows["selection_score"] > 0).all()
        hit = (ann[rows["annotation_col"]] > 0).any(axis=1).to_numpy()
        truth = ann["target"].to_numpy() == summary["target"]["classes"].index(int(stars))  # stored: class index
        assert rule["holdout"]["f1"] == pytest.approx(2 * (hit & truth).sum() / (hit.sum() + truth.sum()))
        assert f"[{stars}] {stars} = any of {len(rule['latents'])} hypothes" in printed
    # Complaints about service mark most 1-star reviews (a fifth of the holdout); 5 stars gets few positive
    # hypotheses from separation here, and a rule of them may do no better than calling every review 5 stars
    assert summary["metrics"]["1"]["any_of"]["holdout"]["f1"] > 0.45


def test_few_numbers_in_a_column_named_as_codes_are_classes_and_the_run_says_how_to_read_them_as_a_score(
    yelp_files, tmp_path, capsys
):
    frames = [pd.read_json(path, lines=True) for path in yelp_files]
    paths = []
    for name, frame in zip(("train", "holdout"), frames):
        frame["review_label"] = frame["stars"] - 1  # five codes, 0-4, as a labelled corpus ships them
        frame.to_json(tmp_path / f"{name}.jsonl", orient="records", lines=True, date_format="iso")
        paths.append(str(tmp_path / f"{name}.jsonl"))
    args = ["hypothesize", "--data", paths[0], "--holdout", paths[1], "--text-col", "text"]
    args += ["--target-col", "review_label", "--n", "4", "--m", "32", "--k", "4"]
    assert main(args + ["--out", str(tmp_path / "classes")]) == 0
    summary = json.loads((tmp_path / "classes" / "summary.json").read_text())
    assert summary["target"]["kind"] == "multiclass" and list(summary["metrics"]) == ["0", "1", "2", "3", "4"]
    said = (
        "Target 'review_label' read as classes, one vs rest: its name says its 5 numbers (0, 1, 2, 3, 4) are codes; "
        "--target-kind continuous reads them as a score."
    )
    assert said in capsys.readouterr().out.splitlines()
    assert main(args + ["--target-kind", "continuous", "--out", str(tmp_path / "score")]) == 0
    summary = json.loads((tmp_path / "score" / "summary.json").read_text())
    assert summary["target"]["kind"] == "continuous" and summary["target"]["values"] == [0, 1, 2, 3, 4]
    assert said not in capsys.readouterr().out


def test_binary_target_with_holdout_fraction_and_lasso(yelp_files, tmp_path, capsys):
    train, _ = yelp_files
    df = pd.read_json(train, lines=True)
    df["positive"] = np.where(df["stars"] >= 4, "good", "bad")
    df.loc[:9, "text"] = ""  # dropped, counted and said
    df.loc[10:12, "positive"] = None
    df["business_id"] = [f"b{i // 4}" for i in range(len(df))]  # four reviews per business: random rows split them
    path = tmp_path / "binary.parquet"
    df.to_parquet(path)
    code = main(
        [
            "hypothesize",
            "--data",
            str(path),
            "--text-col",
            "text",
            "--target-col",
            "positive",
            "--holdout-frac",
            "0.3",
            "--n",
            "6",
            "--m",
            "64",
            "--k",
            "4",
            "--select",
            "lasso",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["target"]["kind"] == "binary" and summary["target"]["classes"] == ["bad", "good"]
    # the one table's counts once, not repeated for the training and the holdout rows
    assert summary["rows"]["tables"] == {"data": {"read": 800, "dropped_empty_text": 10, "dropped_missing_target": 3}}
    assert summary["rows"]["train"] + summary["rows"]["holdout"] == 787
    assert summary["metrics"]["overall"]["auc_in_sample"] > 0.6
    # Each value gets a rule from the hypotheses that go with it (positive training scores for "good", the
    # second value; negative for "bad"), stated good first, or a line saying why it has none
    table = pd.read_csv(tmp_path / "out" / "hypotheses.csv")
    streams = capsys.readouterr()
    printed = streams.out
    held = pd.read_parquet(tmp_path / "out" / "holdout_annotations.parquet")["target"]
    for key, value, sign in (("any_of", "good", 1), ("any_of_other", "bad", -1)):
        rule = summary["metrics"]["overall"][key]
        goes_with = table.loc[sign * table["selection_score"] > 0, "latent"]
        assert set(rule["latents"]) <= set(goes_with)
        assert sorted(table.loc[table[key], "latent"]) == sorted(rule["latents"])  # marked in its CSV column
        if rule["latents"]:
            said = f"positive = {value} = any of {len(rule['latents'])} hypothes"
        elif rule["outdone_by_every_row"]:  # nothing beats calling every training text that value
            said = f"positive = {value}: no rule of its hypotheses marks it better than calling every text"
            assert rule["train"]["every_row_f1"] > 0.4
        else:
            assert goes_with.empty
            said = f"positive = {value}: no hypothesis goes with it"
        assert said in printed
        share = float((held == (1 if value == "good" else 0)).mean())  # the bar: every holdout text that value
        assert rule["holdout"]["every_row_f1"] == pytest.approx(2 * share / (1 + share))
    assert printed.index("positive = good") < printed.index("positive = bad")
    # which value is the 1 is said, with the flag that turns it round
    assert (
        "Target 'positive' read as yes/no: 'good' is the 1 and 'bad' the 0 (--target-class bad makes it the "
        "other way round)." in printed
    )
    # A user who fed rows without text or target reads how many went, beside the split
    kept = summary["rows"]["train"], summary["rows"]["holdout"]
    assert (
        f"Holdout: random 30% of the rows · training rows {kept[0]:,} · holdout rows {kept[1]:,} · "
        "rows with an empty text dropped 10 · rows with no 'positive' dropped 3." in printed
    )
    # ... and is told that random rows put one business's reviews on both sides, and how to keep them together
    # (said as soon as the split is made, before embedding and training, and again under the table)
    warning, again = [line for line in streams.err.splitlines() if line.startswith("warning: split:")]
    assert again == warning
    assert f"of the {kept[1]:,} holdout rows (" in warning and "share their 'business_id'" in warning
    assert warning.endswith("with a split grouped by business_id (CLI: --group-col business_id).")
    # From Python, the reopened run says the same words (a notebook had only the table and the summary dict)
    run = load_run(tmp_path / "out")
    assert printed.startswith(run.report(warnings=False) + "\n")
    assert (
        run.report().splitlines()[-len(run.summary["warnings"]) :]
        == streams.err.splitlines()[-len(run.summary["warnings"]) :]
    )
    assert warning in run.report().splitlines()
    held = int(table["significant_bonferroni"].sum())
    assert repr(run) == (
        f"<HypothesisRun: {len(table)} hypotheses for 'positive' (binary), {held} Bonferroni-significant on the "
        f"holdout; written to {tmp_path / 'out'}; .report() says it in words>"
    )


def test_concepts_flag_switches_to_the_concept_settings_and_explicit_flags_win(yelp_files, tmp_path):
    train, holdout = yelp_files
    out = tmp_path / "concepts"
    args = ["hypothesize", "--data", str(train), "--holdout", str(holdout), "--text-col", "text"]
    args += ["--target-col", "stars", "--n", "6", "--k", "4", "--concepts", "--out", str(out)]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    # --concepts: Matryoshka prefixes, learned thresholds, near-duplicates left out; --k 4 given explicitly stays.
    assert (summary["sae"]["m"], summary["sae"]["k"], summary["sae"]["matryoshka"]) == (128, 4, [4, 16, 64])
    assert summary["sae"]["levels"] == [] and "level" not in pd.read_csv(out / "hypotheses.csv").columns
    assert summary["config"]["presence"] == "learned" and summary["config"]["max_overlap"] == 0.5
    table = pd.read_csv(out / "hypotheses.csv")
    assert (table["threshold"] > 0).any(), "learned thresholds are stored with the hypotheses"
    # A holdout text is annotated present exactly where the latent's activation is above its threshold.
    from hsae_core.embed import default_embedder, embed_texts

    annotations = pd.read_parquet(out / "holdout_annotations.parquet")
    texts = pd.read_json(holdout, lines=True)["text"].to_numpy()[annotations["row_id"].to_numpy()]
    codes = SparseAutoencoder.load(out / "sae").transform(embed_texts(list(texts), default_embedder())).toarray()
    for col, latent, threshold in zip(table["annotation_col"], table["latent"], table["threshold"]):
        np.testing.assert_array_equal(annotations[col].to_numpy() > 0, codes[:, latent] > threshold)


def _bad(args, capsys, expected):
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and expected in err, err


def test_bad_inputs_exit_2_with_one_line(yelp_files, tmp_path, capsys):
    train, hold = yelp_files
    base = ["hypothesize", "--text-col", "text", "--target-col", "stars", "--out", str(tmp_path / "o")]
    (tmp_path / "table.xlsx").write_text("x")
    _bad(base + ["--data", str(tmp_path / "table.xlsx")], capsys, "Unknown file type '.xlsx'")
    _bad(
        ["hypothesize", "--data", str(train), "--text-col", "review", "--target-col", "stars", "--out", "x"],
        capsys,
        "Column 'review' not found",
    )
    const = pd.read_json(train, lines=True).assign(stars=5)
    const.to_csv(tmp_path / "const.csv", index=False)
    _bad(base + ["--data", str(tmp_path / "const.csv")], capsys, "single value")
    pd.read_json(train, lines=True).iloc[:30].to_csv(tmp_path / "tiny.csv", index=False)
    _bad(base + ["--data", str(tmp_path / "tiny.csv")], capsys, "training rows; need at least")
    _bad(["hypothesize", "--data", str(train), "--text-col", "text", "--out", "x"], capsys, "--target-col")


def test_wrong_width_and_corrupt_sae_are_refused(yelp_files, tmp_path, capsys):
    train, hold = yelp_files
    narrow = SparseAutoencoder(m=16, k=2, max_epochs=2).fit(np.random.default_rng(0).normal(size=(100, 16)))
    narrow.save(tmp_path / "narrow")
    base = [
        "hypothesize",
        "--data",
        str(train),
        "--holdout",
        str(hold),
        "--text-col",
        "text",
        "--target-col",
        "stars",
        "--out",
        str(tmp_path / "o"),
    ]
    _bad(base + ["--sae", str(tmp_path / "narrow")], capsys, "16")
    (tmp_path / "narrow" / "model.safetensors").write_bytes(b"\x00garbage")
    _bad(base + ["--sae", str(tmp_path / "narrow")], capsys, "Corrupt SAE weights")


def test_console_script_reports_errors_without_traceback(tmp_path):
    env = dict(os.environ)
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hsae_core.cli",
            "hypothesize",
            "--data",
            str(bad),
            "--text-col",
            "t",
            "--target-col",
            "y",
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "Unknown file type '.txt'" in proc.stderr


def test_a_refused_input_is_said_before_torch_or_scikit_learn_loads(yelp_files, tmp_path):
    # a missing column took 6 s to report, 3 of them importing torch and scikit-learn for a run that never began
    # (the labeller's stop words brought scikit-learn in on their own: a second of the refusal)
    train, _ = yelp_files
    for command in (
        ["hypothesize", "--data", train, "--text-col", "review", "--target-col", "stars", "--out", tmp_path / "o"],
        ["build", "--data", train, "--text-col", "review", "--out", tmp_path / "ws"],
    ):
        done = cli_run(*command)
        assert done.code == 2 and "Column 'review' not found" in done.err, done.err
        assert done.imported == [] and not (tmp_path / "o").exists() and not (tmp_path / "ws").exists()


def test_text_column_is_read_from_the_content_when_not_given(yelp_files, tmp_path, capsys):
    train, _ = yelp_files
    df = pd.read_json(train, lines=True).iloc[:40][["review_id", "stars", "text", "date"]]
    df.insert(1, "title", df["text"].str.split().str[:4].str.join(" "))  # short prose too: the reviews still win
    df.to_csv(tmp_path / "reviews.csv", index=False)
    assert main(["embed", "--data", str(tmp_path / "reviews.csv"), "--out", str(tmp_path / "x.npy")]) == 0
    streams = capsys.readouterr()
    assert "Text column: 'text' (read from the content; also prose: title; --text-col to choose)" in streams.err
    assert np.load(tmp_path / "x.npy").shape == (40, 384) and "Embedded 40 texts" in streams.out
    df[["review_id", "stars", "date"]].to_csv(tmp_path / "no_text.csv", index=False)
    _bad(
        ["embed", "--data", str(tmp_path / "no_text.csv"), "--out", str(tmp_path / "y.npy")],
        capsys,
        "No column of the table reads as text; give --text-col (the table has: review_id, stars, date)",
    )


def test_text_and_target_are_short_for_their_column_options():
    """'--target' stopped at argparse's 'ambiguous option' (it begins four options)."""
    from hsae_core.cli import build_parser

    args = build_parser().parse_args(
        ["hypothesize", "--data", "x.csv", "--text", "Abstract", "--target", "Decision", "--out", "o"]
    )
    assert (args.text_col, args.target_col) == ("Abstract", "Decision")
    for command in ("build", "embed", "train"):
        assert (
            build_parser().parse_args([command, "--data", "x.csv", "--text", "body", "--out", "o"]).text_col == "body"
        )


def test_the_open_command_a_build_prints_works_from_any_folder(small_workspace, tmp_path, monkeypatch):  # noqa: F811
    """`hsae build --out workspaces_cli/upw` printed `HSAE_WORKSPACE=workspaces_cli/upw streamlit run app.py`: a
    relative path, an app.py only the checkout has, and a streamlit a virtual environment keeps off PATH."""
    shutil.copytree(small_workspace, tmp_path / "built" / "ws")
    monkeypatch.chdir(tmp_path)
    assignment, python, dash_m, module, run, app = shlex.split(dashboard_command(Path("built/ws")))
    name, where = assignment.split("=", 1)
    assert name == "HSAE_WORKSPACE" and Path(where).is_absolute()
    monkeypatch.chdir(tmp_path.parent)  # from elsewhere, the path still names the workspace
    assert len(Workspace.open(where)) == len(Workspace.open(small_workspace))
    assert Path(python).samefile(sys.executable) and (dash_m, module, run) == ("-m", "streamlit", "run")
    assert Path(app).is_file() and Path(app).name == "app.py"


def test_a_missing_workspace_folder_is_named_as_missing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=r"^No workspace folder workspaces_cli/upw \(from .*\); build one"):
        Workspace.open("workspaces_cli/upw")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty is not a workspace"):
        Workspace.open("empty")
