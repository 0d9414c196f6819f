"""Peak resident memory of one stage inside a running process (stdlib only: both venvs import it).

A daemon thread samples this process's RSS from /proc every few milliseconds between ``start`` and
``stop``; the stage's figure is the peak minus the RSS when the stage began, so imports and inputs
already in memory are not counted. Sampling can miss a spike shorter than the interval, so this is a
slight under-estimate for very short stages and exact enough for anything over ~50 ms.
"""

from __future__ import annotations

import os
import threading
import time

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes(pid: int | str = "self") -> int:
    """Current resident set size of a process, from /proc (0 if it has gone)."""
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


class PeakRSS:
    """``with PeakRSS() as mem: ...``; then ``mem.extra_mib`` (peak above start) and ``mem.peak_mib``."""

    def __init__(self, interval: float = 0.005):
        self.interval = interval
        self.start_bytes = self.peak_bytes = 0
        self._stop = threading.Event()

    def __enter__(self) -> PeakRSS:
        self.start_bytes = self.peak_bytes = rss_bytes()
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, rss_bytes())
            time.sleep(self.interval)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, rss_bytes())

    @property
    def extra_mib(self) -> float:
        return round((self.peak_bytes - self.start_bytes) / 2**20, 1)

    @property
    def peak_mib(self) -> float:
        return round(self.peak_bytes / 2**20, 1)
