"""`make dashboard`'s launcher (hsae_core.warm_start): a real server that answers, and stops on Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_launcher_serves_the_dashboard_and_stops_on_ctrl_c(tmp_path):
    port = _free_port()
    log = tmp_path / "server.log"
    env = dict(os.environ, HSAE_WORKSPACES_DIR=str(tmp_path / "none"))
    env.pop("HSAE_WORKSPACE", None)
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hsae_core.warm_start", "--server.headless", "true", "--server.address", "127.0.0.1"]
            + ["--server.port", str(port), "--browser.gatherUsageStats", "false"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline, answered = time.time() + 90, False
        while time.time() < deadline and not answered:
            try:
                answered = urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).read() == b"ok"
            except OSError:
                time.sleep(0.3)
            assert proc.poll() is None, log.read_text()[-2000:]
        assert answered, log.read_text()[-2000:]
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).read().decode()
        assert "<title>" in page.lower() or "streamlit" in page.lower()
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal that ran `make dashboard`
        assert proc.wait(timeout=30) == 0, log.read_text()[-2000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = log.read_text()
    assert f"127.0.0.1:{port}" in text and "Traceback" not in text
