"""A real dashboard server for the tests, started as `make dashboard` starts it (python -m hsae_core.warm_start)
on a free local port, its output in a log file."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(env: dict, log: Path) -> tuple[subprocess.Popen, str]:
    """(the server process, in a session of its own so its group can be signalled; its URL)."""
    port = free_port()
    flags = ["--server.headless", "true", "--server.address", "127.0.0.1", "--server.port", str(port)]
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hsae_core.warm_start", *flags, "--browser.gatherUsageStats", "false"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return proc, f"http://127.0.0.1:{port}"


def answering(proc: subprocess.Popen, url: str, timeout: float = 90) -> bool:
    """Whether the server answers its health check within ``timeout`` seconds (False at once if it stopped)."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        try:
            if urllib.request.urlopen(url + "/_stcore/health", timeout=2).read() == b"ok":
                return True
        except OSError:
            time.sleep(0.3)
    return False
