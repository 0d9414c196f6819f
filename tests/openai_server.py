"""A real local OpenAI-compatible HTTP server for tests (the only fake: it stands at the network edge).

Usage in a test module (``tests/`` is on ``sys.path`` under pytest)::

    from openai_server import FakeOpenAIServer, chat_reply, openai_server  # noqa: F401  (fixture)

    def test_x(openai_server):
        openai_server.responder = lambda req: "yes"          # or (status, body, headers)
        client = LLMClient(api_key="test", base_url=openai_server.base_url, backoff=0.01)

A responder gets the request JSON (with ``"_path"`` added) and returns either a string (the answer
text), or a tuple ``(status, body, headers)`` where body is a dict (sent as JSON) or a str (sent raw).
``/v1/embeddings`` answers with deterministic unit vectors derived from a hash of each input text
(as float lists, or base64 float32 when the request asks for ``encoding_format: base64``).
Every request is recorded in ``server.requests``; ``server.max_in_flight`` is the peak concurrency seen.

The Batch API is served from memory: ``POST /v1/files`` (multipart upload), ``GET /v1/files/ID`` and
``/v1/files/ID/content``; ``POST /v1/batches``, ``GET /v1/batches[/ID]``, ``POST /v1/batches/ID/cancel``.
Each retrieve of a batch moves it one step through ``server.batch_steps`` (validating, in_progress);
the next one finishes it with the status popped from ``server.batch_endings`` ("completed" when empty):
every line then runs through the same chat/embedding answers as a direct call (a responder's non-200
tuple puts the line in the error file). An ``expired`` or ``cancelled`` batch answers only its first
``server.expire_keep`` lines and lists the rest in the error file with ``batch_expired`` /
``batch_cancelled``; a ``failed`` batch answers nothing. ``server.mangle(record)`` may return raw text to
write instead of an output line (garbage output); ``server.batch_create_errors`` holds ``(status, made)``
answers for the next batch creations (``made``: the batch exists although the client got an error). Batch lines are kept in ``server.batch_lines``; they are
not HTTP requests and do not appear in ``server.requests``.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import threading
import time
from collections.abc import Callable
from email.parser import BytesParser
from email.policy import default as email_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional

import numpy as np
import pytest

Responder = Callable[[dict], Any]


def chat_reply(content: Optional[str], model: str = "fake-model") -> dict:
    """A minimal Chat Completions response body carrying ``content``."""
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


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
        # Batch API state (see the module docstring)
        self.files: dict[str, dict] = {}
        self.batches: dict[str, dict] = {}
        self.batch_steps: list[str] = ["validating", "in_progress"]
        self.batch_endings: list[str] = []
        self.expire_keep = 1
        self.mangle: Optional[Callable[[dict], Optional[str]]] = None
        self.batch_create_errors: list[tuple[int, bool]] = []  # (HTTP status, batch made anyway) per create
        self.batch_lines: list[dict] = []
        self._ids = itertools.count(1)
        self._httpd: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def chat_requests(self) -> list[dict]:
        return [r for r in self.requests if r["_path"].endswith("/chat/completions")]

    def calls(self, method: str, pattern: str) -> list[dict]:
        """Recorded requests with this method whose path matches the regular expression ``pattern``."""
        return [r for r in self.requests if r.get("_method", "POST") == method and re.fullmatch(pattern, r["_path"])]

    def uploaded_ids(self, file_id: str) -> list[str]:
        """The custom_ids of an uploaded batch input file, in order."""
        return [json.loads(line)["custom_id"] for line in self.files[file_id]["content"].decode().splitlines() if line]

    def start(self) -> FakeOpenAIServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def send(self, status, body, headers=None, content_type="application/json"):
                raw = (
                    body
                    if isinstance(body, bytes)
                    else (body.encode("utf-8") if isinstance(body, str) else json.dumps(body).encode("utf-8"))
                )
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(raw)))
                    for name, value in (headers or {}).items():
                        self.send_header(name, str(value))
                    self.end_headers()
                    self.wfile.write(raw)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                    pass

            def do_GET(self):
                path = self.path.split("?", 1)[0]
                with server._lock:
                    server.requests.append({"_path": path, "_method": "GET"})
                    status, body = server._batch_api("GET", path, None)
                self.send(
                    status,
                    body,
                    content_type="application/octet-stream" if isinstance(body, bytes) else "application/json",
                )

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw_body = self.rfile.read(length)
                if re.search(r"/(files|batches)(/|$)", self.path):
                    with server._lock:
                        status, body = server._batch_api("POST", self.path, raw_body, self.headers.get("Content-Type"))
                    return self.send(status, body)
                try:
                    request = json.loads(raw_body or b"{}")
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
                self.send(status, body, headers)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def _answer(self, request: dict):
        if request["_path"].endswith("/embeddings"):
            inputs = request.get("input", [])
            inputs = [inputs] if isinstance(inputs, str) else inputs
            as_base64 = request.get("encoding_format") == "base64"
            data = [
                {
                    "object": "embedding",
                    "index": i,
                    "embedding": _base64(fake_embedding(str(t), self.embed_dim))
                    if as_base64
                    else fake_embedding(str(t), self.embed_dim),
                }
                for i, t in enumerate(inputs)
            ]
            return (
                200,
                {
                    "object": "list",
                    "data": data,
                    "model": request.get("model", "fake-embed"),
                    "usage": {"prompt_tokens": 1, "total_tokens": 1},
                },
                {},
            )
        result = self.responder(request)
        if isinstance(result, tuple):
            return result
        return 200, chat_reply(result, request.get("model", "fake-model")), {}

    # -- Batch API (called with self._lock held) -------------------------------------------------
    def _batch_api(self, method: str, path: str, raw: Optional[bytes], content_type: Optional[str] = None):
        path = path.split("?", 1)[0]
        if method == "POST" and path.endswith("/files"):
            fields = _multipart(raw or b"", content_type or "")
            if "file" not in fields or fields.get("purpose", (None, b""))[1] != b"batch":
                return 400, {"error": {"message": "need a file and purpose=batch"}}
            file = self._new_file(fields["file"][1], fields["file"][0] or "upload.jsonl", "batch")
            self.requests.append({"_path": path, "_method": "POST", "purpose": "batch", "file_id": file["id"]})
            return 200, _public(file)
        m = re.fullmatch(r".*/files/([^/]+)(/content)?", path)
        if method == "GET" and m:
            file = self.files.get(m.group(1))
            if file is None:
                return 404, {"error": {"message": "No such file", "type": "invalid_request_error"}}
            return (200, file["content"]) if m.group(2) else (200, _public(file))
        if method == "POST" and path.endswith("/batches"):
            request = json.loads(raw or b"{}")
            self.requests.append({"_path": path, "_method": "POST", **request})
            if request.get("input_file_id") not in self.files:
                return 400, {"error": {"message": "unknown input_file_id"}}
            batch = {
                "id": f"batch_{next(self._ids)}",
                "object": "batch",
                "endpoint": request.get("endpoint"),
                "input_file_id": request["input_file_id"],
                "completion_window": request.get("completion_window"),
                "status": "validating",
                "output_file_id": None,
                "error_file_id": None,
                "errors": None,
                "created_at": int(time.time()),
                "metadata": request.get("metadata"),
                "request_counts": {"total": 0, "completed": 0, "failed": 0},
                "_step": 0,
                "_ending": self.batch_endings.pop(0) if self.batch_endings else "completed",
            }
            self.batches[batch["id"]] = batch
            if self.batch_create_errors:  # e.g. a timeout after the batch was made: the client sees an error
                status, keep = self.batch_create_errors.pop(0)
                if not keep:
                    del self.batches[batch["id"]]
                return status, {"error": {"message": "batch creation failed"}}
            return 200, _public(batch)
        m = re.fullmatch(r".*/batches/([^/]+)(/cancel)?", path)
        if m and m.group(1) in self.batches:
            batch = self.batches[m.group(1)]
            if method == "POST" and m.group(2):
                self.requests.append({"_path": path, "_method": "POST"})
                if batch["status"] not in ("completed", "expired", "failed", "cancelled"):
                    batch["status"], batch["_ending"] = "cancelling", "cancelled"
                return 200, _public(batch)
            if method == "GET" and not m.group(2):
                self._advance(batch)
                return 200, _public(batch)
        if m:
            return 404, {"error": {"message": "No such batch", "type": "invalid_request_error"}}
        if method == "GET" and path.endswith("/batches"):
            data = [_public(b) for b in reversed(list(self.batches.values()))]
            return 200, {
                "object": "list",
                "data": data,
                "has_more": False,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            }
        return 404, {"error": {"message": f"unknown path {path}"}}

    def _new_file(self, content: bytes, filename: str, purpose: str) -> dict:
        file = {
            "id": f"file-{next(self._ids)}",
            "object": "file",
            "bytes": len(content),
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
            "content": content,
        }
        self.files[file["id"]] = file
        return file

    def _advance(self, batch: dict) -> None:
        """One status step per retrieve; the step after the last one finishes the batch."""
        if batch["status"] in ("completed", "expired", "failed", "cancelled"):
            return
        if batch["status"] != "cancelling" and batch["_step"] < len(self.batch_steps):
            batch["status"] = self.batch_steps[batch["_step"]]
            batch["_step"] += 1
            return
        self._finish(batch, batch["_ending"])

    def _finish(self, batch: dict, ending: str) -> None:
        lines = [json.loads(x) for x in self.files[batch["input_file_id"]]["content"].decode().splitlines() if x]
        batch["request_counts"]["total"] = len(lines)
        if ending == "failed":
            batch["status"] = "failed"
            batch["errors"] = {"object": "list", "data": [{"code": "invalid_file", "message": "validation failed"}]}
            return
        out, err = [], []
        for i, line in enumerate(lines):
            rid = f"batch_req_{next(self._ids)}"
            if ending != "completed" and i >= self.expire_keep:
                code = "batch_expired" if ending == "expired" else "batch_cancelled"
                err.append(
                    json.dumps(
                        {
                            "id": rid,
                            "custom_id": line["custom_id"],
                            "response": None,
                            "error": {"code": code, "message": f"request not run: batch {ending}"},
                        }
                    )
                )
                continue
            self.batch_lines.append(line)
            if line.get("url") != batch["endpoint"]:
                status, body = 400, {"error": {"message": "line url does not match the batch endpoint"}}
            else:
                try:
                    status, body, _ = self._answer({**line.get("body", {}), "_path": line["url"]})
                except Exception as exc:
                    status, body = 500, {"error": {"message": repr(exc)}}
            record = {
                "id": rid,
                "custom_id": line["custom_id"],
                "response": {"status_code": status, "request_id": rid, "body": body},
                "error": None,
            }
            if status == 200:
                mangled = self.mangle(record) if self.mangle else None
                out.append(mangled if mangled is not None else json.dumps(record))
                batch["request_counts"]["completed"] += 1
            else:
                err.append(json.dumps(record))
                batch["request_counts"]["failed"] += 1
        for key, rows in (("output_file_id", out), ("error_file_id", err)):
            if rows:
                batch[key] = self._new_file(("\n".join(rows) + "\n").encode(), f"{key}.jsonl", "batch_output")["id"]
        batch["status"] = ending

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _base64(vector: list[float]) -> str:
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


def _public(obj: dict) -> dict:
    """An API object without the fake's private fields (content, ``_``-prefixed state)."""
    return {k: v for k, v in obj.items() if k != "content" and not k.startswith("_")}


def _multipart(raw: bytes, content_type: str) -> dict[str, tuple[Optional[str], bytes]]:
    """name -> (filename, bytes) of a multipart/form-data body."""
    message = BytesParser(policy=email_policy).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + raw
    )
    fields = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        fields[name] = (part.get_filename(), part.get_payload(decode=True) or b"")
    return fields


@pytest.fixture
def openai_server():
    """A running FakeOpenAIServer for one test (answers "ok" until you set ``.responder``)."""
    with FakeOpenAIServer() as server:
        yield server
