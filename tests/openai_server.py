"""A real local OpenAI-compatible HTTP server for tests (the only fake: it stands at the network edge).

Usage in a test module (``tests/`` is on ``sys.path`` under pytest)::

    from openai_server import FakeOpenAIServer, chat_reply, openai_server  # noqa: F401  (fixture)

    def test_x(openai_server):
        openai_server.responder = lambda req: "yes"          # or (status, body, headers)
        client = LLMClient(api_key="test", base_url=openai_server.base_url, backoff=0.01)

A responder gets the request JSON (with ``"_path"`` added) and returns either a string (the answer
text), or a tuple ``(status, body, headers)`` where body is a dict (sent as JSON) or a str (sent raw).
``/v1/embeddings`` answers with deterministic unit vectors derived from a hash of each input text.
Every request is recorded in ``server.requests``; ``server.max_in_flight`` is the peak concurrency seen.
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional

import numpy as np
import pytest

Responder = Callable[[dict], Any]


def chat_reply(content: Optional[str], model: str = "fake-model") -> dict:
    """A minimal Chat Completions response body carrying ``content``."""
    return {"id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


def fake_embedding(text: str, dim: int) -> list[float]:
    """A deterministic unit vector for ``text`` (same text, same vector, across processes)."""
    seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
    v = np.random.default_rng(seed).standard_normal(dim)
    return (v / np.linalg.norm(v)).astype(float).tolist()


def user_prompt(request: dict) -> str:
    """The last user message of a recorded chat request."""
    return [m["content"] for m in request.get("messages", []) if m.get("role") == "user"][-1]


class FakeOpenAIServer:
    """A ``ThreadingHTTPServer`` on 127.0.0.1 (free port) speaking ``/v1/chat/completions`` and ``/v1/embeddings``."""

    def __init__(self, responder: Optional[Responder] = None, embed_dim: int = 384, delay: float = 0.0):
        self.responder: Responder = responder or (lambda request: "ok")
        self.embed_dim = embed_dim
        self.delay = delay
        self.requests: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._httpd: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def chat_requests(self) -> list[dict]:
        return [r for r in self.requests if r["_path"].endswith("/chat/completions")]

    def start(self) -> FakeOpenAIServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    request = json.loads(self.rfile.read(length) or b"{}")
                except json.JSONDecodeError:
                    request = {}
                request["_path"] = self.path
                with server._lock:
                    server.requests.append(request)
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    if server.delay:
                        time.sleep(server.delay)
                    status, body, headers = server._answer(request)
                except Exception as exc:  # a broken responder becomes a 500, visible to the client
                    status, body, headers = 500, {"error": {"message": repr(exc)}}, {}
                finally:
                    with server._lock:
                        server.in_flight -= 1
                raw = body.encode("utf-8") if isinstance(body, str) else json.dumps(body).encode("utf-8")
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(raw)))
                    for name, value in (headers or {}).items():
                        self.send_header(name, str(value))
                    self.end_headers()
                    self.wfile.write(raw)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                    pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def _answer(self, request: dict):
        if request["_path"].endswith("/embeddings"):
            inputs = request.get("input", [])
            inputs = [inputs] if isinstance(inputs, str) else inputs
            data = [{"object": "embedding", "index": i, "embedding": fake_embedding(str(t), self.embed_dim)}
                    for i, t in enumerate(inputs)]
            return 200, {"object": "list", "data": data, "model": request.get("model", "fake-embed"),
                         "usage": {"prompt_tokens": 1, "total_tokens": 1}}, {}
        result = self.responder(request)
        if isinstance(result, tuple):
            return result
        return 200, chat_reply(result, request.get("model", "fake-model")), {}

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@pytest.fixture
def openai_server():
    """A running FakeOpenAIServer for one test (answers "ok" until you set ``.responder``)."""
    with FakeOpenAIServer() as server:
        yield server
