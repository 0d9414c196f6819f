"""Progress reporting shared by the CLI (tqdm) and the dashboard (st.progress).

A progress callback is ``fn(done, total, message)``; library functions accept ``progress=None``.
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Optional

ProgressFn = Callable[[int, int, str], None]


def report(progress: Optional[ProgressFn], done: int, total: int, message: str = "") -> None:
    """Call ``progress`` if one was given."""
    if progress is not None:
        progress(done, total, message)


class TqdmProgress:
    """A ProgressFn that draws one tqdm bar per distinct message prefix (stage)."""

    def __init__(self, stage: str, disable: bool | None = None):
        from tqdm.auto import tqdm

        self._tqdm = tqdm
        self.stage = stage
        self.bar = None
        self.disable = (not sys.stderr.isatty()) if disable is None else disable

    def __call__(self, done: int, total: int, message: str = "") -> None:
        if self.bar is None:
            self.bar = self._tqdm(total=total, desc=self.stage, disable=self.disable, leave=False)
        if self.bar.total != total:
            self.bar.total = total
        self.bar.n = done
        if message:
            self.bar.set_postfix_str(message, refresh=False)
        self.bar.refresh()
        if done >= total:
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
