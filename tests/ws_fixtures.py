"""A small real workspace (600 Yelp reviews, m=64, k=4) shared by the workspace, search, feature and app tests.

Imported by several test modules; it is built once per session in a fixed folder, and a second
build there only re-checks that every step can be reused.
"""
from __future__ import annotations

import pandas as pd
import pytest

SMALL_M, SMALL_K = 64, 4


def small_frame(yelp_frames) -> pd.DataFrame:
    train, hold = yelp_frames
    cols = ["text", "stars", "useful", "funny", "cool"]
    a, b = train.iloc[:450][cols].copy(), hold.iloc[:150][cols].copy()
    a["split"], b["split"] = "val", "holdout"
    return pd.concat([a, b], ignore_index=True)


@pytest.fixture(scope="session")
def small_workspace(tmp_path_factory, yelp_frames, yelp_embedded):
    """Path of a built workspace; embeddings come from the session's warm embedding cache."""
    from hsae_core.workspace import build_workspace

    out = tmp_path_factory.getbasetemp() / "ws-small" / "yelp-small"
    build_workspace(out, frame=small_frame(yelp_frames), text_col="text", m=SMALL_M, k=SMALL_K, seed=0,
                    name="Yelp small (test)")
    return out
