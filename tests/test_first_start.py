"""The first start: `hsae demo` builds the demo workspace in the terminal, and the SAE stops early at this size."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from ws_fixtures import first_start_with_demo_data, small_workspace, upworthy_frame  # noqa: F401

from hsae_core.cli import main
from hsae_core.sae import MAX_SAMPLES, SparseAutoencoder, epoch_budget
from hsae_core.workspace import DEMO_NAME, Workspace


def test_epoch_budget_scales_with_the_number_of_rows():
    assert epoch_budget(3_600, 200) == 200  # small corpora: the cap (early stopping ends them)
    assert epoch_budget(100_000, 200) == MAX_SAMPLES // 100_000
    assert epoch_budget(1_000_000, 200) == 4 and epoch_budget(10_000_000, 200) == 2
    assert epoch_budget(50, 3) == 3


def test_early_stopping_fires_and_keeps_the_best_weights(yelp_embedded):
    X = yelp_embedded[2]
    sae = SparseAutoencoder(m=64, k=8, max_epochs=400, seed=0).fit(X)
    m, history = sae.metrics_, sae.history_
    assert m["epochs"] < 400, "stopped before the budget"
    val = [h["val_nmse"] for h in history]
    assert m["val_nmse"] == pytest.approx(min(val), rel=1e-4), "best weights restored"
    # Clear progress: `min_delta` relative below the value at the last clear progress, not below the best seen
    # (small gains in between lower that; reading it so failed on a history that had them).
    reference, clear = np.inf, []
    for i, v in enumerate(val):
        if v < reference * (1 - sae.min_delta):
            reference = v
            clear.append(i)
    # Stopped once `patience` epochs in a row brought no clear progress, and not before.
    assert len(val) - 1 - clear[-1] == sae.patience
    assert all(b - a <= sae.patience for a, b in zip(clear, clear[1:]))
    no_stop = SparseAutoencoder(m=64, k=8, max_epochs=30, patience=1000, seed=0).fit(X)
    assert no_stop.metrics_["epochs"] == 30 and no_stop.metrics_["epoch_budget"] == 30


def test_hsae_demo_builds_in_the_terminal_then_reuses(yelp_frames, tmp_path, monkeypatch, capsys):
    first_start_with_demo_data(yelp_frames, tmp_path, monkeypatch)  # rows the session has embeddings of
    root = tmp_path / "workspaces"
    assert main(["demo", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "Demo workspace ready" in out and "300 reviews" in out and "embeddings" in out and "sae" in out
    ws = Workspace.open(root / DEMO_NAME)
    # The seconds each step took, as the terminal says them, name the labelling: it went to the step before it
    # ("codes 101.3 s" for 0.3 s of encoding and 101 s of labels).
    said = dict(
        (name, float(sec))
        for name, sec in re.findall(r"(\w+) ([\d.]+) s", out.split("Demo workspace ready")[1].rpartition("(")[2])
    )
    assert "labels" in said, out
    assert said["codes"] <= ws.manifest["seconds"]["codes"] + 0.5, (said, ws.manifest["seconds"])
    assert len(ws) == 300 and ws.manifest["sae"]["metrics"]["epochs"] < 200
    assert main(["demo", "--root", str(root)]) == 0
    assert "--rebuild" in capsys.readouterr().out  # second start: reused at once


def test_hsae_demo_without_data_says_what_to_download(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HSAE_DATA_DIR", str(tmp_path / "nothing"))
    monkeypatch.delenv("HSAE_WORKSPACE", raising=False)
    assert main(["demo", "--root", str(tmp_path / "ws")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "yelp-demo-val-2K.jsonl" in err


def test_hsae_demo_is_not_needed_with_a_fixed_workspace(small_workspace, tmp_path, monkeypatch, capsys):
    copy = tmp_path / "fixed"
    shutil.copytree(small_workspace, copy)
    monkeypatch.setenv("HSAE_WORKSPACE", str(copy))
    assert main(["demo"]) == 0
    assert "no demo workspace needed" in capsys.readouterr().out


def test_hypothesize_grouped_and_deduplicated_from_the_command_line(upworthy_frame, tmp_path, capsys):
    data = tmp_path / "upworthy.parquet"
    upworthy_frame.to_parquet(data)
    out = tmp_path / "run"
    assert (
        main(
            [
                "hypothesize",
                "--data",
                str(data),
                "--text-col",
                "headline",
                "--target-col",
                "ctr",
                "--group-col",
                "clickability_test_id",
                "--dedupe",
                "--n",
                "4",
                "--m",
                "32",
                "--k",
                "4",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["split"]["method"] == "grouped" and summary["split"]["dropped_duplicate_text"] > 0
    assert (
        main(
            [
                "hypothesize",
                "--data",
                str(data),
                "--text-col",
                "headline",
                "--target-col",
                "ctr",
                "--group-col",
                "nope",
                "--out",
                str(tmp_path / "bad"),
            ]
        )
        == 2
    )
    assert "Column 'nope' not found" in capsys.readouterr().err
