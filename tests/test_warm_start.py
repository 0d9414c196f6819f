"""`make dashboard`'s launcher (hsae_core.warm_start): a real server that answers, and stops on Ctrl-C."""

from __future__ import annotations

import os
import signal
import urllib.request

import dashboard_server


def test_the_launcher_serves_the_dashboard_and_stops_on_ctrl_c(tmp_path):
    log = tmp_path / "server.log"
    env = dict(os.environ, HSAE_WORKSPACES_DIR=str(tmp_path / "none"))
    env.pop("HSAE_WORKSPACE", None)
    proc, url = dashboard_server.start(env, log)
    try:
        assert dashboard_server.answering(proc, url), log.read_text()[-2000:]
        page = urllib.request.urlopen(url + "/", timeout=10).read().decode().lower()
        assert "<title>" in page or "streamlit" in page
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal that ran `make dashboard`
        assert proc.wait(timeout=30) == 0, log.read_text()[-2000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = log.read_text()
    assert url.removeprefix("http://") in text and "Traceback" not in text
