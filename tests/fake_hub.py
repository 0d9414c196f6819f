"""A tiny local stand-in for the Hugging Face Hub write API (create repo, validate card, preupload, commit), for push tests.

It answers on 127.0.0.1 like huggingface.co does for these calls, keeps every file a commit adds (all
files are declared "regular", so they travel base64-encoded inside the commit) and records requests.
"""

from __future__ import annotations

import base64
import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeHub:
    def __init__(self):
        self.repos: dict[str, dict] = {}  # repo_id -> {"private": bool, "files": {path: bytes}, "commits": [msg]}
        self.requests: list[tuple[str, str]] = []
        self.validated: list[str] = []  # model cards sent for metadata validation
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _body(self) -> bytes:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                return gzip.decompress(raw) if self.headers.get("Content-Encoding") == "gzip" else raw

            def _send(self, status: int, payload: dict):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                hub.requests.append(("POST", self.path))
                body = self._body()
                if self.path == "/api/validate-yaml":
                    hub.validated.append(json.loads(body)["content"])
                    return self._send(200, {"errors": [], "warnings": []})
                if self.path == "/api/repos/create":
                    req = json.loads(body)
                    repo_id = f"{req['organization']}/{req['name']}" if req.get("organization") else req["name"]
                    private = bool(req.get("private")) or req.get("visibility") == "private"
                    hub.repos.setdefault(repo_id, {"private": private, "files": {}, "commits": []})
                    return self._send(200, {"url": f"http://{self.headers['Host']}/{repo_id}"})
                parts = self.path.split("/")  # /api/models/OWNER/NAME/(preupload|commit)/REV
                if len(parts) >= 7 and parts[1] == "api" and parts[5] in ("preupload", "commit"):
                    repo_id = f"{parts[3]}/{parts[4]}"
                    if repo_id not in hub.repos:
                        return self._send(404, {"error": "Repository not found"})
                    if parts[5] == "preupload":
                        files = json.loads(body)["files"]
                        return self._send(
                            200,
                            {
                                "files": [
                                    {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files
                                ]
                            },
                        )
                    repo = hub.repos[repo_id]
                    for line in body.decode().splitlines():
                        item = json.loads(line)
                        if item.get("key") == "header":
                            repo["commits"].append(item["value"].get("summary"))
                        elif item.get("key") == "file":
                            repo["files"][item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                    return self._send(
                        200,
                        {
                            "commitUrl": f"http://{self.headers['Host']}/{repo_id}/commit/1",
                            "commitOid": "1" * 40,
                            "pullRequestUrl": None,
                        },
                    )
                return self._send(404, {"error": f"not handled: {self.path}"})

            def do_GET(self):
                hub.requests.append(("GET", self.path))
                return self._send(404, {"error": f"not handled: {self.path}"})

            do_HEAD = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
