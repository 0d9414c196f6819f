"""An unreachable Hub or embedding endpoint is one quick line naming where hsae tried, never a traceback or a
minute of retries. The network is faked only at its edge: a closed port on 127.0.0.1, or a small local server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

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
