"""The OpenAI Batch API path against a real local server with files and batches endpoints.

Embeddings and LLM answers through batches equal the direct path and land in the same caches; partial
failures are recorded, not raised; expired/cancelled/failed batches are resubmitted only for what is
missing; a rerun resumes the batch already submitted instead of paying twice.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from openai_server import fake_embedding, openai_server, user_prompt  # noqa: F401  (fixture)

from hsae_core.cli import main
from hsae_core.embed import OpenAIEmbedder, embed_texts
from hsae_core.errors import LLMError
from hsae_core.llm import LLMClient
from hsae_core.openai_batch import CHAT, request_id, run_batch
from hsae_core.workspace import Workspace

KEY = "sk-test-batch"


def client(server, tmp_path, batch=True, cache="llm.sqlite", **kw) -> LLMClient:
    return LLMClient(
        model="fake-model",
        api_key=KEY,
        base_url=server.base_url,
        cache_path=tmp_path / cache,
        backoff=0.01,
        batch=batch,
        batch_dir=tmp_path / "batches",
        batch_poll_s=0.01,
        **kw,
    )


def embedder(server, tmp_path, batch=True) -> OpenAIEmbedder:
    return OpenAIEmbedder(
        "text-embedding-3-small",
        api_key=KEY,
        base_url=server.base_url,
        batch=batch,
        batch_dir=tmp_path / "batches",
        batch_poll_s=0.01,
    )


def echo(request):
    return f"answer to {user_prompt(request)}"


def creations(server):
    return server.calls("POST", r"/v1/batches")


def uploads(server):
    return server.calls("POST", r"/v1/files")


@pytest.fixture(scope="module")
def reviews(yelp_frames):
    return yelp_frames[0]["text"].tolist()[:40]


def test_embeddings_through_a_batch_equal_the_direct_path_and_are_cached(openai_server, reviews, tmp_path):
    direct = embed_texts(reviews, embedder(openai_server, tmp_path, batch=False), cache_dir=tmp_path / "direct")
    assert len(openai_server.calls("POST", r"/v1/embeddings")) == 1 and not creations(openai_server)

    batched = embed_texts(reviews + reviews[:3], embedder(openai_server, tmp_path), cache_dir=tmp_path / "viabatch")
    np.testing.assert_array_equal(batched[:40], direct)
    np.testing.assert_array_equal(batched[40:], direct[:3])
    np.testing.assert_allclose(direct[0], np.float32(fake_embedding(reviews[0], 384)))
    assert len(uploads(openai_server)) == 1 and len(creations(openai_server)) == 1
    assert len(openai_server.calls("POST", r"/v1/embeddings")) == 1, "the batch path made direct embedding calls"
    sent = openai_server.files[uploads(openai_server)[0]["file_id"]]["content"].decode().splitlines()
    assert len(sent) == 40 and json.loads(sent[0])["url"] == "/v1/embeddings"  # each distinct text once

    # same texts again: everything comes from the embedding cache, not one HTTP request
    seen = len(openai_server.requests)
    again = embed_texts(reviews, embedder(openai_server, tmp_path), cache_dir=tmp_path / "viabatch")
    np.testing.assert_array_equal(again, direct)
    assert len(openai_server.requests) == seen


def test_chat_through_a_batch_gives_the_same_answers_and_fills_the_cache(openai_server, tmp_path):
    openai_server.responder = echo
    prompts = [f"review {i}: is it about pizza?" for i in range(12)] + ["review 3: is it about pizza?"]
    direct = client(openai_server, tmp_path, batch=False, cache="direct.sqlite").complete_many(prompts, max_tokens=8)
    assert len(openai_server.chat_requests()) == 12

    steps = []
    first = client(openai_server, tmp_path)
    answers = first.complete_many(prompts, max_tokens=8, progress=lambda d, t, m: steps.append(m))
    assert answers == direct and answers[0] == "answer to review 0: is it about pizza?"
    assert len(openai_server.chat_requests()) == 12, "the batch path made direct chat calls"
    assert len(creations(openai_server)) == 1 and creations(openai_server)[0]["endpoint"] == CHAT
    assert creations(openai_server)[0]["completion_window"] == "24h"
    assert first.stats == {"requests": 12, "cache_hits": 0, "failures": 0, "retries": 0}
    assert first.batch_ids == list(openai_server.batches)
    assert any("validating" in m for m in steps) and any("in_progress" in m for m in steps)

    # a second run, batch or direct, on the same cache: zero HTTP requests
    seen = len(openai_server.requests)
    assert client(openai_server, tmp_path).complete_many(prompts, max_tokens=8) == direct
    plain = client(openai_server, tmp_path, batch=False)
    assert [plain.complete(p, max_tokens=8) for p in prompts[:3]] == direct[:3]
    assert len(openai_server.requests) == seen and plain.stats["cache_hits"] == 3


def test_partial_failures_are_recorded_not_raised_and_retried_alone_next_run(openai_server, tmp_path, caplog):
    def picky(request):
        if "bad" in user_prompt(request):
            return 400, {"error": {"message": "invalid prompt"}}, {}
        return echo(request)

    openai_server.responder = picky
    prompts = ["good 1", "bad 1", "good 2", "bad 2", "good 3"]
    llm = client(openai_server, tmp_path)
    answers = llm.complete_many(prompts)
    assert answers == ["answer to good 1", None, "answer to good 2", None, "answer to good 3"]
    assert llm.stats["failures"] == 2 and llm.stats["requests"] == 5
    assert "2 of 5 Batch API requests" in caplog.text and "invalid prompt" in caplog.text

    # running again sends only the two failed prompts, in a new batch
    openai_server.responder = echo
    again = client(openai_server, tmp_path)
    assert again.complete_many(prompts) == [f"answer to {p}" for p in prompts]
    second = uploads(openai_server)[1]["file_id"]
    bodies = [json.loads(x)["body"] for x in openai_server.files[second]["content"].decode().splitlines()]
    assert [b["messages"][-1]["content"] for b in bodies] == ["bad 1", "bad 2"]
    assert again.stats == {"requests": 2, "cache_hits": 3, "failures": 0, "retries": 0}


@pytest.mark.parametrize("ending, kept", [("expired", 2), ("cancelled", 2), ("failed", 0)])
def test_an_unfinished_batch_is_resubmitted_only_for_the_missing_requests(openai_server, tmp_path, ending, kept):
    openai_server.responder = echo
    openai_server.batch_endings = [ending]
    openai_server.expire_keep = 2
    prompts = [f"q{i}" for i in range(6)]
    llm = client(openai_server, tmp_path)
    assert llm.complete_many(prompts) == [f"answer to q{i}" for i in range(6)]
    first, second = [u["file_id"] for u in uploads(openai_server)]
    assert openai_server.uploaded_ids(second) == openai_server.uploaded_ids(first)[kept:]
    assert len(openai_server.batch_lines) == 6, "a request was answered (and paid for) twice"
    assert llm.stats["failures"] == 0 and llm.stats["requests"] == 6 + 6 - kept


def test_an_expiring_batch_gives_up_after_max_attempts_and_reports_the_rest(openai_server, tmp_path):
    openai_server.responder = echo
    openai_server.batch_endings = ["expired"] * 5
    openai_server.expire_keep = 1
    bodies = [{"model": "m", "messages": [{"role": "user", "content": f"q{i}"}]} for i in range(4)]
    outcome = run_batch(
        openai_server_client(openai_server), CHAT, bodies, state_dir=tmp_path, poll_interval=0, max_attempts=2
    )
    assert len(outcome.results) == 2 and len(creations(openai_server)) == 2
    assert set(outcome.errors) == {request_id(CHAT, b) for b in bodies[2:]}
    assert all("not processed after 2 batch attempt(s) (expired)" in e for e in outcome.errors.values())


def test_a_rerun_resumes_the_submitted_batch_instead_of_paying_again(openai_server, tmp_path):
    openai_server.responder = echo
    openai_server.batch_steps = ["validating", "in_progress", "in_progress", "in_progress"]
    prompts = [f"q{i}" for i in range(5)]

    def interrupt(done, total, message):
        if "in_progress" in message:
            raise KeyboardInterrupt  # Ctrl-C while waiting

    with pytest.raises(KeyboardInterrupt):
        client(openai_server, tmp_path).complete_many(prompts, progress=interrupt)
    state = [json.loads(p.read_text()) for p in (tmp_path / "batches").glob("batch-*.json")]
    assert [b["batch_id"] for b in state] == list(openai_server.batches)
    assert len(state[0]["custom_ids"]) == 5 and state[0]["status"] == "submitted"

    rerun = client(openai_server, tmp_path)
    assert rerun.complete_many(prompts) == [f"answer to {p}" for p in prompts]
    assert len(creations(openai_server)) == 1 and len(uploads(openai_server)) == 1
    assert rerun.stats["requests"] == 0, "resumed requests were counted as new ones"
    # and once it is in the cache, the state is not even consulted
    seen = len(openai_server.requests)
    assert client(openai_server, tmp_path).complete_many(prompts)[0] == "answer to q0"
    assert len(openai_server.requests) == seen


@pytest.mark.parametrize("made_anyway", [False, True])
def test_a_batch_creation_that_failed_reuses_the_upload_or_adopts_the_batch(openai_server, tmp_path, made_anyway):
    openai_server.responder = echo
    openai_server.batch_create_errors = [(400, made_anyway)]
    with pytest.raises(LLMError, match="refused to create a batch"):
        client(openai_server, tmp_path).complete_many(["a", "b"])
    answers = client(openai_server, tmp_path).complete_many(["a", "b"])
    assert answers == ["answer to a", "answer to b"]
    assert len(uploads(openai_server)) == 1
    assert len(creations(openai_server)) == (1 if made_anyway else 2)
    assert len(openai_server.batches) == 1


def test_garbage_output_lines_are_recorded_as_failures(openai_server, tmp_path):
    openai_server.responder = echo

    def mangle(record):
        prompt = record["response"]["body"]["choices"][0]["message"]["content"]
        if prompt.endswith("q1"):
            return "{this is not json"
        if prompt.endswith("q2"):
            return json.dumps({"custom_id": record["custom_id"], "response": {"status_code": 200, "body": "oops"}})
        if prompt.endswith("q3"):
            record["response"]["body"]["choices"][0]["message"]["content"] = None
            return json.dumps(record)
        return None

    openai_server.mangle = mangle
    llm = client(openai_server, tmp_path)
    assert llm.complete_many(["q0", "q1", "q2", "q3", "q4"]) == ["answer to q0", None, None, None, "answer to q4"]
    assert llm.stats["failures"] == 3 and len(creations(openai_server)) == 1


def test_embedding_failures_raise_one_line_after_caching_the_rest(openai_server, reviews, tmp_path):
    bad = reviews[5]
    openai_server.mangle = lambda record: (
        "garbage" if record["response"]["body"]["data"][0]["embedding"] == _b64(bad) else None
    )
    with pytest.raises(LLMError, match=r"1 of 10 texts could not be embedded.*run again"):
        embed_texts(reviews[:10], embedder(openai_server, tmp_path), cache_dir=tmp_path / "cache")
    openai_server.mangle = None
    X = embed_texts(reviews[:10], embedder(openai_server, tmp_path), cache_dir=tmp_path / "cache")
    second = uploads(openai_server)[1]["file_id"]
    assert len(openai_server.uploaded_ids(second)) == 1, "the cached nine were paid for again"
    np.testing.assert_allclose(X[5], np.float32(fake_embedding(bad, 384)))


def test_requests_are_split_to_respect_batch_limits(openai_server, tmp_path):
    bodies = [{"model": "m", "messages": [{"role": "user", "content": f"q{i}"}]} for i in range(7)]
    outcome = run_batch(
        openai_server_client(openai_server),
        CHAT,
        bodies + bodies[:2],
        state_dir=tmp_path,
        poll_interval=0,
        max_requests=3,
    )
    assert [len(openai_server.uploaded_ids(u["file_id"])) for u in uploads(openai_server)] == [3, 3, 1]
    assert len(outcome.results) == 7 and not outcome.errors and len(outcome.batch_ids) == 3
    small = run_batch(
        openai_server_client(openai_server), CHAT, bodies, state_dir=tmp_path / "b", poll_interval=0, max_bytes=400
    )
    assert len(small.results) == 7 and len(uploads(openai_server)) == 3 + 4  # two ~190-byte lines per file


def test_cli_embed_and_hypothesize_with_batch(openai_server, yelp_files, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    monkeypatch.setenv("HSAE_BATCH_POLL_S", "0.01")
    monkeypatch.setenv("HSAE_CACHE_DIR", str(tmp_path / "cache"))
    train, hold = yelp_files

    assert main(["embed", "--data", str(train), "--text-col", "text", "--batch", "--out", str(tmp_path / "x.npy")]) == 2
    assert "--batch" in capsys.readouterr().err

    code = main(
        [
            "embed",
            "--data",
            str(hold),
            "--text-col",
            "text",
            "--embedder",
            "openai:text-embedding-3-small",
            "--batch",
            "--out",
            str(tmp_path / "x.npy"),
        ]
    )
    assert code == 0
    X = np.load(tmp_path / "x.npy")
    assert X.shape == (60, 384) and len(creations(openai_server)) == 1
    assert not openai_server.calls("POST", r"/v1/embeddings")

    ws = tmp_path / "ws"
    code = main(
        [
            "build",
            "--data",
            str(train),
            "--text-col",
            "text",
            "--embedder",
            "openai:text-embedding-3-small",
            "--batch",
            "--m",
            "16",
            "--k",
            "4",
            "--out",
            str(ws),
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert [c["endpoint"] for c in creations(openai_server)] == ["/v1/embeddings"] * 2
    assert Workspace.open(ws).embedder().batch is False  # typed queries never wait on a batch

    def fake_llm(request):
        prompt = user_prompt(request)
        if "Reply with one word" in prompt:
            return "yes" if "food" in prompt.lower() else "no"
        return "Mentions the food"

    openai_server.responder = fake_llm
    out = tmp_path / "run"
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
            "--embedder",
            "openai:text-embedding-3-small",
            "--m",
            "16",
            "--k",
            "4",
            "--n",
            "2",
            "--epochs",
            "5",
            "--interpreter",
            "llm",
            "--annotator",
            "llm",
            "--batch",
            "--out",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["llm"]["client"]["failures"] == 0 and summary["llm"]["client"]["requests"] > 0
    assert openai_server.chat_requests() == [], "LLM calls bypassed the Batch API"
    assert "Mentions the food" in (out / "hypotheses.csv").read_text()
    endpoints = [c["endpoint"] for c in creations(openai_server)]
    # no new embedding batch (embed and build cached both splits); chat: naming, label fidelity, annotation
    assert endpoints.count("/v1/embeddings") == 2 and endpoints.count(CHAT) >= 3


@pytest.fixture(scope="module")
def yelp_files(yelp_frames, tmp_path_factory):
    train, hold = yelp_frames
    folder = tmp_path_factory.mktemp("batch-yelp")
    train.iloc[:150].to_json(folder / "train.jsonl", orient="records", lines=True, date_format="iso")
    hold.iloc[:60].to_json(folder / "holdout.jsonl", orient="records", lines=True, date_format="iso")
    return folder / "train.jsonl", folder / "holdout.jsonl"


def openai_server_client(server):
    from openai import OpenAI

    return OpenAI(api_key=KEY, base_url=server.base_url, max_retries=0)


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(np.asarray(fake_embedding(text, 384), dtype="<f4").tobytes()).decode("ascii")
