"""An unreachable Hub or embedding endpoint is one quick line naming where hsae tried, never a traceback or a
minute of retries. The network is faked only at its edge: a closed port on 127.0.0.1, or a small local server."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from hf_cache import add_to_cache, published_state_dict, save_state_dict

from hsae_core.embed import OpenAIEmbedder, SentenceTransformerEmbedder, default_embedder
from hsae_core.errors import LLMError, ModelError
from hsae_core.hub import load_sae
from hsae_core.sae import SparseAutoencoder


def closed_port_url() -> str:
    """The address of a port on 127.0.0.1 that nothing listens on: connections to it are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def run_cli(args, **env_changes) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_ENDPOINT")}
    env.update(env_changes)
    return subprocess.run(
        [sys.executable, "-m", "hsae_core.cli", *args], env=env, capture_output=True, text=True, timeout=300
    )


class FileHub:
    """Serves files the way the Hub's /OWNER/NAME/resolve/REV/FILE answers a download, on 127.0.0.1."""

    def __init__(self, files: dict[str, bytes], commit: str = "c" * 40):
        self.requests: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self, body=False):
                hub.requests.append(f"{self.command} {self.path}")
                data = files.get(self.path)
                if self.path != "/" and data is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = data or b""
                self.send_response(200)
                self.send_header("X-Repo-Commit", commit)
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def do_GET(self):
                self.do_HEAD(body=True)

        hub = self
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def online_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache with downloads allowed (HF_HUB_OFFLINE unset)."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HOME", raising=False)
    return tmp_path / "hf-cache"


def test_a_hub_sae_downloads_when_the_hub_answers_and_fails_at_once_when_it_does_not(
    tmp_path, online_cache, monkeypatch
):
    path = save_state_dict(published_state_dict(n=8, d=16, seed=0), tmp_path / "tiny_2_8_4.pth")
    hub = FileHub({"/me/tiny/resolve/main/tiny_2_8_4.pth": path.read_bytes()})
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    try:
        sae = load_sae("hub:me/tiny/tiny_2_8_4.pth")
    finally:
        hub.close()
    assert (sae.d_in, sae.config_.m, sae.config_.k) == (16, 8, 2) and sae.source_["revision"] == "c" * 40
    assert any(r.startswith("GET /me/tiny/resolve/main/") for r in hub.requests)

    # The Hub gone: the cached file still loads, and one that was never cached is one line at once.
    gone = closed_port_url()
    monkeypatch.setenv("HF_ENDPOINT", gone)
    assert load_sae("hub:me/tiny/tiny_2_8_4.pth").source_["revision"] == "c" * 40
    started = time.monotonic()
    with pytest.raises(ModelError) as err:
        load_sae("hub:me/tiny/tiny_3_8_6.pth")
    assert time.monotonic() - started < 10  # huggingface_hub's own retries took 23 s
    msg = str(err.value)
    assert "\n" not in msg and f"the Hub at {gone} cannot be reached" in msg and "refused" in msg


def test_an_embedding_model_name_fails_at_once_when_the_hub_is_unreachable(online_cache, monkeypatch):
    gone = closed_port_url()
    monkeypatch.setenv("HF_ENDPOINT", gone)
    started = time.monotonic()
    with pytest.raises(ModelError) as err:
        SentenceTransformerEmbedder("all-MiniLM-L7-v9").embed(["A text."])
    assert time.monotonic() - started < 20  # 73 s of retries, three files of 23 s each, before
    msg = str(err.value)
    assert msg.startswith("Could not load embedding model 'all-MiniLM-L7-v9': it is not a local folder")
    assert f"the Hub at {gone} cannot be reached" in msg and "\n" not in msg


def test_a_cached_embedding_model_loads_while_the_hub_is_unreachable(online_cache, monkeypatch):
    folder = default_embedder().name_or_path
    files = {str(p.relative_to(folder)): p for p in Path(folder).rglob("*") if p.is_file()}
    add_to_cache(online_cache, "sentence-transformers/all-MiniLM-L6-v2", files)
    monkeypatch.setenv("HF_ENDPOINT", closed_port_url())
    cached = SentenceTransformerEmbedder("sentence-transformers/all-MiniLM-L6-v2")
    texts = ["Cold fries.", "Great tacos, friendly staff."]
    np.testing.assert_array_equal(cached.embed(texts), default_embedder().embed(texts))


def test_an_unreachable_embedding_endpoint_is_named_in_the_error():
    url = closed_port_url() + "/v1"
    with pytest.raises(LLMError) as err:
        OpenAIEmbedder(api_key="sk-test", base_url=url).embed(["A text."])
    msg = str(err.value)
    assert msg.startswith(f"OpenAI embedding request failed: cannot reach {url} (") and "refused" in msg
    assert "OPENAI_BASE_URL" in msg and "\n" not in msg and "sk-test" not in msg


@pytest.fixture(scope="module")
def sae_folder(tmp_path_factory):
    X = np.random.default_rng(0).normal(size=(300, 16)).astype(np.float32)
    return SparseAutoencoder(m=8, k=2, max_epochs=2, seed=0).fit(X).save(tmp_path_factory.mktemp("sae") / "sae")


def test_push_to_an_unreachable_hub_is_one_line_naming_it(sae_folder):
    hub = closed_port_url()
    done = run_cli(["push", str(sae_folder), "--repo", "me/x"], HF_ENDPOINT=hub, HF_TOKEN="hf_test_token")
    assert done.returncode == 2, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hsae: error: Upload to me/x failed")
    assert f"cannot reach the Hugging Face Hub at {hub}" in lines[0] and "refused" in lines[0]
