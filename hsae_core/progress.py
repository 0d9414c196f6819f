"""Progress reporting shared by the CLI (tqdm) and the dashboard (st.progress).

A progress callback is ``fn(done, total, message)``; library functions accept ``progress=None``.
"""

from __future__ import annotations

import sys
import time
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


class StagedProgress:
    """One overall progress over weighted stages, with an estimate of the time left.

    Messages name their stage before the first ``": "`` (``"embeddings: 1024 of 4000"``), as the workspace
    build reports them. Each stage's ``done / total`` moves the overall fraction inside that stage's share
    (its weight: roughly its share of the time); stages never move it backwards. ``sink(fraction, message,
    seconds_left)`` draws it (``seconds_left`` is None until there is enough to estimate from).
    ``seconds`` holds the wall time spent in each stage.
    """

    def __init__(self, weights: dict, sink: Callable[[float, str, Optional[float]], None]):
        if not weights or min(weights.values()) < 0 or sum(weights.values()) <= 0:
            raise ValueError("weights must be non-negative with a positive sum")
        self.order = list(weights)
        self.total = float(sum(weights.values()))
        self.before = {}
        acc = 0.0
        for stage in self.order:
            self.before[stage] = acc
            acc += weights[stage]
        self.weights = dict(weights)
        self.sink = sink
        self.fraction = 0.0
        self.stage: Optional[str] = None
        self.seconds: dict[str, float] = {}
        self._t0 = self._stage_t0 = time.perf_counter()

    def __call__(self, done: int, total: int, message: str = "") -> None:
        head, sep, _ = message.partition(": ")
        stage = head if sep and head in self.weights else (message if message in self.weights else self.stage)
        if stage is None:
            stage = self.order[0]
        if stage != self.stage:
            self._switch(stage)
        share = 0.0 if total <= 0 else min(max(done / total, 0.0), 1.0)
        fraction = (self.before[stage] + self.weights[stage] * share) / self.total
        self.fraction = max(self.fraction, min(fraction, 1.0))
        self.sink(self.fraction, message, self.seconds_left())

    def _switch(self, stage: str) -> None:
        now = time.perf_counter()
        if self.stage is not None:
            self.seconds[self.stage] = round(self.seconds.get(self.stage, 0.0) + now - self._stage_t0, 3)
        self.stage, self._stage_t0 = stage, now

    def seconds_left(self) -> Optional[float]:
        """Elapsed time scaled by the work left; None below 2% done."""
        if self.fraction < 0.02:
            return None
        elapsed = time.perf_counter() - self._t0
        return elapsed * (1.0 - self.fraction) / self.fraction

    def finish(self, message: str = "done") -> dict:
        """Close the last stage, draw 100% and return the seconds per stage."""
        self._switch(None)
        self.fraction = 1.0
        self.sink(1.0, message, None)
        return dict(self.seconds)


def format_seconds(seconds: Optional[float]) -> str:
    """``'1 min 05 s'`` / ``'42 s'``; empty for None."""
    if seconds is None:
        return ""
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


class TqdmStaged:
    """A :class:`StagedProgress` drawn as one tqdm bar (percent, elapsed, time left, current step)."""

    def __init__(self, label: str, weights: dict, disable: Optional[bool] = None):
        import shutil

        from tqdm.auto import tqdm

        # A terminal that reports no size (some ptys, `script`) would get a zero-width bar: fall back to 100.
        width = shutil.get_terminal_size((100, 20)).columns
        width = width if width >= 40 else 100
        self.bar = tqdm(
            total=1000,
            desc=label,
            leave=True,
            ncols=width,
            disable=(not sys.stderr.isatty()) if disable is None else disable,
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed} elapsed{postfix}",
        )
        self.progress = StagedProgress(weights, self._draw)

    def _draw(self, fraction: float, message: str, seconds_left: Optional[float]) -> None:
        self.bar.n = int(round(fraction * 1000))
        left = f"about {format_seconds(seconds_left)} left · " if seconds_left is not None else ""
        self.bar.set_postfix_str(left + message[:50], refresh=False)
        self.bar.refresh()

    def __call__(self, done: int, total: int, message: str = "") -> None:
        self.progress(done, total, message)

    def finish(self, message: str = "done") -> dict:
        """Draw 100% and close; returns the seconds per stage."""
        self.seconds = self.progress.finish(message)
        self.bar.close()
        return self.seconds

    def __enter__(self) -> TqdmStaged:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        """Finish on success; on an error close the bar where it stands (no false 100%)."""
        if exc_type is None:
            self.finish()
        else:
            self.bar.close()
