"""What a user sees of a long run's progress: a hypothesis run and a relabelling report one bar that only moves
forward, reaches its end, and moves while the features are named, offline and with an LLM (a local
OpenAI-compatible server), where each batch of calls moves it. The callback is the plain user-facing one."""

from __future__ import annotations

import io
import re
import shutil
import sys

import numpy as np
import pytest
from openai_server import openai_server, user_prompt  # noqa: F401  (fixture)
from ws_fixtures import small_workspace  # noqa: F401  (fixture)

from hsae_core.interpret import LLMInterpreter
from hsae_core.labelsets import relabel_workspace
from hsae_core.llm import LLMClient
from hsae_core.pipeline import HypothesisConfig, hypothesize
from hsae_core.refine import Budget
from hsae_core.workspace import Workspace

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
FIRES = "Passages where it fires strongly:"


class Reports(list):
    """Every ``(done, total, message)`` reported, in order."""

    def __call__(self, done: int, total: int, message: str = "") -> None:
        self.append((done, total, message))

    def done_while(self, pattern: str) -> list[int]:
        """``done`` of the reports whose message matches ``pattern`` (a regular expression)."""
        return [done for done, _, message in self if re.search(pattern, message)]


def assert_one_bar_to_the_end(reports: Reports) -> None:
    fractions = [done / total for done, total, _ in reports]
    assert fractions == sorted(fractions), "the bar never moves back"
    assert 0 <= fractions[0] and fractions[-1] == 1, "it starts at 0 or more and ends full"


def fake_llm(request) -> str:
    """Names a feature by the first long word of its firing passages; a label fits a text that has its word."""
    prompt = user_prompt(request)
    if FIRES in prompt:
        words = re.findall(r"[a-z]{7,}", prompt.split(FIRES, 1)[1].lower())
        return f"mentions {words[0] if words else 'dinner'}"
    if "Reply with one word" in prompt:
        label = re.search(r"Description: mentions (\w+)", prompt)
        return "Yes" if label and label.group(1) in prompt.split("Description:")[0].lower() else "No"
    return "OK"  # the client's check of the endpoint


def client_for(server, tmp_path) -> LLMClient:
    return LLMClient(
        model="fake-model", api_key="test", base_url=server.base_url, cache_path=tmp_path / "llm.sqlite", backoff=0.01
    )


def run(yelp_embedded, progress, n_train: int = 400, n_hold: int = 200, **options):
    """A real run on the first rows of the session's Yelp splits (their MiniLM embeddings given; an SAE trained)."""
    train, hold, X_train, X_hold = yelp_embedded
    return hypothesize(
        train.iloc[:n_train],
        holdout=hold.iloc[:n_hold],
        text_col="text",
        target_col="stars",
        embeddings=np.vstack([X_train[:n_train], X_hold[:n_hold]]),
        embedder=MINILM,
        config=HypothesisConfig(cache_sae=False, max_epochs=40),
        progress=progress,
        **options,
    )


def test_a_run_reports_one_bar_that_moves_while_the_sae_trains_and_while_it_names(yelp_embedded):
    reports = Reports()
    result = run(yelp_embedded, reports)
    assert_one_bar_to_the_end(reports)
    named = len(result.table)
    steps = list(dict.fromkeys(message.split(":")[0] for _, _, message in reports))
    assert steps == [
        "training the SAE",
        "encoding",
        "selecting latents",
        f"naming {named} latents",
        "annotating the holdout",
        "holdout statistics",
        "done",
    ]
    assert len(set(reports.done_while(r"^training the SAE: epoch \d+"))) >= 10, "each epoch moves the bar"
    naming = reports.done_while(f"^naming {named} latents")
    assert len(naming) > 2 * named and len(set(naming)) > named, "the bar moves as each latent is named"
    assert reports.done_while("^naming.*embedding candidates"), "the slow step says what it does"


def test_with_an_llm_each_batch_of_calls_moves_the_bar(yelp_embedded, openai_server, tmp_path):
    openai_server.responder = fake_llm
    client = client_for(openai_server, tmp_path)
    reports = Reports()
    result = run(
        yelp_embedded,
        reports,
        n_train=300,
        n_hold=60,
        interpreter=LLMInterpreter(client, n_candidates=2, n_eval=6, n_test=6),
        annotator="llm",
        llm_client=client,
    )
    assert_one_bar_to_the_end(reports)
    for batch in ("candidates", "checking", "scoring"):  # naming's three batches of calls
        done = reports.done_while(rf"^naming \d+ latents: [\d,]+ of [\d,]+ LLM calls \({batch}\)")
        assert done and done[-1] > done[0], f"the {batch} calls move the bar"
    answers = len(result.table) * 60  # one call per hypothesis and holdout text
    annotating = [(done, message) for done, _, message in reports if message.startswith("annotating the holdout")]
    assert annotating[-1][1] == f"annotating the holdout: {answers:,} of {answers:,} LLM answers"
    assert len({done for done, _ in annotating}) > 10, "the annotation's answers move the bar as they come"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_cli_bar_says_the_step_and_the_time_left(yelp_files, tmp_path, monkeypatch):
    """`hsae hypothesize` in a terminal: one bar over the run, with its step and the time left."""
    from hsae_core.cli import main

    train, hold = yelp_files
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    args = ["hypothesize", "--data", str(train), "--holdout", str(hold), "--text-col", "text", "--target-col", "stars"]
    assert main([*args, "--n", "6", "--m", "32", "--k", "4", "--epochs", "30", "--out", str(tmp_path / "run")]) == 0
    drawn = terminal.getvalue()
    assert "hypotheses: 100%" in drawn and "naming 6 latents" in drawn
    assert re.search(r"about \d+ s left · holdout statistics", drawn), drawn[-2000:]


@pytest.fixture
def workspace(small_workspace, tmp_path):  # noqa: F811
    shutil.copytree(small_workspace, tmp_path / "ws")
    return Workspace.open(tmp_path / "ws")


def test_an_offline_relabelling_moves_its_bar_per_block_of_features(workspace):
    reports = Reports()
    relabel_workspace(workspace, "keywords", name="again", show=False, progress=reports)
    assert_one_bar_to_the_end(reports)
    features = int((workspace.features["n_active"] > 0).sum())
    assert len(reports.done_while(rf"^keywords: {features} features: .*: scoring \d+ of \d+ labels$")) > features // 2
    assert len(set(reports.done_while(f"^keywords: {features} features: scoring"))) > 10, "scoring moves the bar"


def test_an_llm_relabelling_moves_its_bar_with_each_batch_of_calls(workspace, openai_server, tmp_path):
    openai_server.responder = fake_llm
    reports = Reports()
    relabel_workspace(
        workspace,
        "llm",
        llm_client=client_for(openai_server, tmp_path),
        budget=Budget(max_calls=400),  # two batches of 8 features named by the LLM, then keyword labels
        show=False,
        progress=reports,
        n_candidates=2,
        n_eval=6,
        n_test=6,
    )
    assert_one_bar_to_the_end(reports)
    for batch in ("features 1-8 of", "features 9-16 of"):
        done = reports.done_while(f"LLM labels for {batch}.*LLM calls")
        assert len(set(done)) > 8, f"the calls for {batch} move the bar"
