"""LLMClient against a real local OpenAI-compatible server: retries, timeouts, cache, concurrency, failures."""

from __future__ import annotations

import logging
import sqlite3
import time

import pytest
from openai_server import chat_reply, openai_server, user_prompt  # noqa: F401  (fixture)

from hsae_core.errors import LLMError
from hsae_core.llm import LLMClient, llm_configured, parse_yes_no

SECRET = "sk-test-secret-123"


def make_client(server, tmp_path, **kw) -> LLMClient:
    kw.setdefault("backoff", 0.01)
    return LLMClient(
        model=kw.pop("model", "fake-model"),
        api_key=SECRET,
        base_url=server.base_url,
        cache_path=tmp_path / "llm.sqlite",
        **kw,
    )


def test_no_key_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert not llm_configured()
    with pytest.raises(LLMError, match="OPENAI_API_KEY"):
        LLMClient()
    monkeypatch.setenv("OPENAI_API_KEY", "x")
    monkeypatch.setenv("HSAE_LLM_MODEL", "my-local-model")
    assert llm_configured()
    assert LLMClient().model == "my-local-model"


def test_answer_and_cache(openai_server, tmp_path):
    openai_server.responder = lambda req: f"echo: {user_prompt(req)}"
    client = make_client(openai_server, tmp_path)
    assert client.complete("hello", system="be brief") == "echo: hello"
    sent = openai_server.chat_requests()[0]
    assert sent["model"] == "fake-model" and sent["messages"][0] == {"role": "system", "content": "be brief"}
    assert sent["temperature"] == 0.0 and sent["max_tokens"] == 256

    # same call again, even from a new client on the same cache file: no HTTP request
    again = make_client(openai_server, tmp_path)
    assert again.complete("hello", system="be brief") == "echo: hello"
    assert len(openai_server.chat_requests()) == 1 and again.stats["cache_hits"] == 1

    # anything that changes the answer changes the key
    again.complete("hello", system="be brief", temperature=0.7)
    again.complete("hello!", system="be brief")
    again.complete("hello", system="be verbose")
    again.complete("hello", system="be brief", max_tokens=10)
    make_client(openai_server, tmp_path, model="other-model").complete("hello", system="be brief")
    assert len(openai_server.chat_requests()) == 6

    # the key is never stored in the cache
    raw = (tmp_path / "llm.sqlite").read_bytes()
    assert SECRET.encode() not in raw
    assert SECRET not in repr(client)


def test_retries_429_with_retry_after_then_500(openai_server, tmp_path):
    calls = []

    def flaky(req):
        calls.append(time.monotonic())
        if len(calls) == 1:
            return 429, {"error": {"message": "slow down"}}, {"retry-after": "0.3"}
        if len(calls) == 2:
            return 500, {"error": {"message": "boom"}}, {}
        return "fine"

    openai_server.responder = flaky
    client = make_client(openai_server, tmp_path)
    assert client.complete("q") == "fine"
    assert len(calls) == 3
    assert calls[1] - calls[0] >= 0.28, "retry-after was not honoured"
    assert client.stats == {"requests": 3, "cache_hits": 0, "failures": 0, "retries": 2}


def test_failing_server_returns_none_and_is_not_cached(openai_server, tmp_path, caplog):
    openai_server.responder = lambda req: (503, {"error": {"message": "down"}}, {})
    client = make_client(openai_server, tmp_path, max_retries=2)
    with caplog.at_level(logging.WARNING, logger="hsae_core.llm"):
        answers = client.complete_many(["a", "b", "c"])
    assert answers == [None, None, None]
    assert client.stats["failures"] == 3 and client.stats["requests"] == 9
    assert "HTTP 503" in caplog.text and SECRET not in caplog.text

    # not retryable: 400 is asked once
    openai_server.requests.clear()
    openai_server.responder = lambda req: (400, {"error": {"message": "bad"}}, {})
    assert client.complete("d") is None and len(openai_server.requests) == 1

    # failures were not cached: once the server recovers, the same prompts are asked again
    openai_server.responder = lambda req: "back"
    assert client.complete_many(["a", "b", "c"]) == ["back"] * 3


def test_timeout_is_retried(openai_server, tmp_path):
    seen = []

    def slow_first(req):
        seen.append(1)
        if len(seen) == 1:
            time.sleep(1.5)
        return "after timeout"

    openai_server.responder = slow_first
    client = make_client(openai_server, tmp_path, timeout=0.4)
    start = time.monotonic()
    assert client.complete("q") == "after timeout"
    assert time.monotonic() - start < 1.4 and client.stats["retries"] == 1


def test_garbage_answers_never_crash(openai_server, tmp_path):
    bodies = iter([(200, "this is not json{", {}), (200, {"choices": []}, {}), (200, chat_reply(None), {})])
    openai_server.responder = lambda req: next(bodies)
    client = make_client(openai_server, tmp_path)
    assert [client.complete(p) for p in ("x", "y", "z")] == [None, None, None]
    assert client.stats["failures"] == 3
    with sqlite3.connect(tmp_path / "llm.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM answers").fetchone()[0] == 0


def test_complete_many_bounds_concurrency_and_keeps_order(openai_server, tmp_path):
    openai_server.delay = 0.1
    openai_server.responder = lambda req: user_prompt(req).upper()
    client = make_client(openai_server, tmp_path, max_concurrency=3)
    prompts = [f"p{i}" for i in range(12)] + ["p0"]
    seen = []
    start = time.monotonic()
    answers = client.complete_many(prompts, progress=lambda d, t, m: seen.append((d, t)))
    assert answers == [p.upper() for p in prompts]
    assert openai_server.max_in_flight == 3, "concurrency bound not used or exceeded"
    assert len(openai_server.chat_requests()) == 12  # the duplicate prompt is asked once
    assert time.monotonic() - start < 12 * 0.1  # ran in parallel
    assert seen[-1] == (12, 12)

    openai_server.requests.clear()
    assert client.complete_many(prompts) == answers and openai_server.requests == []


def test_parse_yes_no():
    assert parse_yes_no("Yes.") is True and parse_yes_no(" no, it does not") is False
    assert parse_yes_no("**YES**") is True
    assert parse_yes_no("maybe") is None and parse_yes_no(None) is None and parse_yes_no("") is None


def test_unreachable_server_is_a_recorded_failure(tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = LLMClient(
        model="m",
        api_key=SECRET,
        base_url=f"http://127.0.0.1:{port}/v1",
        cache_path=tmp_path / "c.sqlite",
        max_retries=1,
        backoff=0.01,
        timeout=2,
    )
    assert client.complete("anyone there?") is None
    assert client.stats == {"requests": 2, "cache_hits": 0, "failures": 1, "retries": 1}
