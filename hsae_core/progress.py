"""Progress reporting shared by the CLI (tqdm) and the dashboard (st.progress).

A progress callback is ``fn(done, total, message)``; library functions accept ``progress=None``. Work of several
stages (a hypothesis run, a relabelling) reports one overall progress through :class:`Overall`: ``done`` of a
fixed ``total`` that only grows, its message naming the stage (``"naming 20 latents: 120 of 1,860 LLM calls"``).
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


def progress_span(progress: Optional[ProgressFn], start: float, end: float, message: str = "") -> Optional[ProgressFn]:
    """A progress whose own ``done / total`` moves ``progress`` from ``start`` to ``end`` (fractions of its whole,
    reported as ``(done, OVERALL_STEPS)``): the training rows as its first half, one batch of features as its
    share. ``message``, when given, replaces the span's own messages."""
    if progress is None:
        return None

    def report_span(done: int, total: int, own: str = "") -> None:
        share = min(max(done / total, 0.0), 1.0) if total > 0 else 0.0
        progress(int(round((start + (end - start) * share) * OVERALL_STEPS)), OVERALL_STEPS, message or own)

    return report_span


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
    seconds_left)`` draws it (``seconds_left`` is None until there is enough to estimate from; the clock starts
    at the first report, so work before it, such as an embedding with a bar of its own, does not count).
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
        self._t0: Optional[float] = None
        self._stage_t0 = 0.0

    def __call__(self, done: int, total: int, message: str = "") -> None:
        head, sep, _ = message.partition(": ")
        stage = head if sep and head in self.weights else (message if message in self.weights else self.stage)
        self.at(stage if stage is not None else self.order[0], done, total, message)

    def at(self, stage, done: int, total: int, message: str = "") -> None:
        """Report ``done / total`` of ``stage`` (a key of the weights), whatever the message says."""
        if self._t0 is None:
            self._t0 = time.perf_counter()
        if stage != self.stage:
            self._switch(stage)
        share = 0.0 if total <= 0 else min(max(done / total, 0.0), 1.0)
        fraction = (self.before[stage] + self.weights[stage] * share) / self.total
        self.fraction = max(self.fraction, min(fraction, 1.0))
        self.sink(self.fraction, message, self.seconds_left())

    def stage_fn(self, stage, label: str) -> ProgressFn:
        """A ProgressFn for one stage: its own ``(done, total, message)`` moves that stage's share of the bar, and
        the message reads ``"label: message"`` (``label`` alone without one)."""

        def progress(done: int, total: int, message: str = "") -> None:
            self.at(stage, done, total, f"{label}: {message}" if message else label)

        return progress

    def _switch(self, stage: str) -> None:
        now = time.perf_counter()
        if self.stage is not None:
            self.seconds[self.stage] = round(self.seconds.get(self.stage, 0.0) + now - self._stage_t0, 3)
        self.stage, self._stage_t0 = stage, now

    def seconds_left(self) -> Optional[float]:
        """Elapsed time scaled by the work left; None below 2% done."""
        if self.fraction < 0.02 or self._t0 is None:
            return None
        elapsed = time.perf_counter() - self._t0
        return elapsed * (1.0 - self.fraction) / self.fraction

    def finish(self, message: str = "done") -> dict:
        """Close the last stage, draw 100% and return the seconds per stage."""
        self._switch(None)
        self.fraction = 1.0
        self.sink(1.0, message, None)
        return dict(self.seconds)


OVERALL_STEPS = 1000  # an Overall progress says how far the whole work is as (done, OVERALL_STEPS)
# The weights of a bar over work that reports its overall progress itself (an Overall: a hypothesis run, a
# relabelling): one stage, whose fraction gives the time left.
ONE_BAR = {"all": 1}


class Overall:
    """One progress that only moves forward over work of several stages, reported as ``(done, OVERALL_STEPS,
    "label: message")``.

    Each stage reports its own ``(done, total, message)`` through :meth:`stage`, and moves the whole by its share
    of ``weights`` ({stage: seconds it takes, or any other measure of its share}, in the order the stages run).
    ``progress`` None: nothing is reported.
    """

    def __init__(self, progress: Optional[ProgressFn], weights: dict):
        self.progress = progress
        self.staged = StagedProgress(weights, self._send) if progress is not None else None

    def _send(self, fraction: float, message: str, seconds_left: Optional[float]) -> None:
        self.progress(int(round(fraction * OVERALL_STEPS)), OVERALL_STEPS, message)

    def stage(self, stage, label: str) -> Optional[ProgressFn]:
        """The ProgressFn of ``stage`` (a key of the weights); its messages read ``"label: message"``."""
        return None if self.staged is None else self.staged.stage_fn(stage, label)

    def start(self, stage, label: str, message: str = "") -> None:
        """Say that ``stage`` begins (a stage with no reports of its own is then named while it runs)."""
        report(self.stage(stage, label), 0, 1, message)

    def finish(self, message: str = "done") -> None:
        """Report the whole work done."""
        if self.staged is not None:
            self.staged.finish(message)


# Seconds a hypothesis run's stages take, measured with bench/bench_progress.py on the README's Yelp run (2,000
# training and 2,000 holdout reviews; offline defaults, with empty label and SAE caches as on a first run; 2 cores
# at load ~2, 2026-11-24), each per what its time grows with. An LLM call's seconds are a guess for a remote
# endpoint (~0.4 s a call, 8 in flight); against the local fake server the client takes ~0.009 s.
RUN_SECONDS = {
    "sae_setup_per_row": 1.6 / 2000,  # initialising the SAE (geometric median)
    "sae_epoch_per_row": 8.3 / 79 / 2000,
    # Early stopping ended that training after 79 of its 200 epochs (128 on 800 rows): the bar counts epochs
    # against this many, and waits at the stage's end if training goes on longer (counted against all 200, the
    # time left read five times too long while the SAE trained).
    "sae_epochs": 80,
    "sae_given": 0.05,  # a given or cached SAE: its checks
    "encode_per_row": 0.1 / 4000,
    "select": 0.1,  # per target
    "name_per_latent": 0.9,  # phrase labels: 0.05 s contrasting terms, 0.84 s embedding candidates (0.06 s cached)
    "annotate": 0.01,  # activation annotation, per target
    "statistics_per_hold_row": 1.8 / 2000,  # the hypotheses' model, per target
    # the embedding baseline (ridge on the training rows), per target: 0.8 to 4 s over five runs, the median 3.6
    "baseline_per_train_row": 3.6 / 2000,
    "llm_call": 0.05,
}


def expected_epochs(max_epochs: int) -> int:
    """The epochs an SAE training is expected to take before early stopping ends it."""
    return max(1, min(max_epochs, RUN_SECONDS["sae_epochs"]))


def run_weights(
    *,
    n_train: int,
    n_hold: int,
    n_targets: int,
    n_named: int,
    trains_sae: bool,
    max_epochs: int = 200,
    naming_calls: int = 0,
    annotation_calls: int = 0,
) -> dict:
    """The stages of a hypothesis run, in the order they run, each weighted by the seconds it should take
    (``RUN_SECONDS``): ``"sae"``, ``"encoding"``, ``("selecting", i)`` per target ``i``, ``"naming"``, then per
    target ``("annotating", i)``, ``("statistics", i)`` and ``("baseline", i)``. ``naming_calls`` and
    ``annotation_calls`` (per target) count the LLM calls of an LLM labeller and annotator (0: offline ones)."""
    s = RUN_SECONDS
    training = n_train * (s["sae_setup_per_row"] + s["sae_epoch_per_row"] * expected_epochs(max_epochs))
    weights = {
        "sae": training if trains_sae else s["sae_given"],
        "encoding": s["encode_per_row"] * (n_train + n_hold),
    }
    weights.update({("selecting", i): s["select"] for i in range(n_targets)})
    weights["naming"] = s["llm_call"] * naming_calls if naming_calls else s["name_per_latent"] * n_named
    for i in range(n_targets):
        weights[("annotating", i)] = s["annotate"] + s["llm_call"] * annotation_calls
        weights[("statistics", i)] = s["statistics_per_hold_row"] * n_hold
        weights[("baseline", i)] = s["baseline_per_train_row"] * n_train
    return weights


def format_seconds(seconds: Optional[float]) -> str:
    """``'1 min 05 s'`` / ``'42 s'``; empty for None."""
    if seconds is None:
        return ""
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


class TqdmStaged:
    """A :class:`StagedProgress` drawn as one tqdm bar (percent, elapsed, time left, current step), from the first
    report on (a bar of its own, such as the embedding's, may come before it)."""

    def __init__(self, label: str, weights: dict, disable: Optional[bool] = None):
        self.label = label
        self.disable = (not sys.stderr.isatty()) if disable is None else disable
        self.bar = None
        self._drawn, self._step = 0.0, None
        self.progress = StagedProgress(weights, self._draw)

    def _open(self):
        import shutil

        from tqdm.auto import tqdm

        # A terminal that reports no size (some ptys, `script`) would get a zero-width bar: fall back to 100.
        width = shutil.get_terminal_size((100, 20)).columns
        width = width if width >= 40 else 100
        return tqdm(
            total=1000,
            desc=self.label,
            leave=True,
            ncols=width,
            disable=self.disable,
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed} elapsed{postfix}",
        )

    def _draw(self, fraction: float, message: str, seconds_left: Optional[float]) -> None:
        if self.bar is None:
            self.bar = self._open()
        # One report per LLM answer: redraw ten times a second, but at once when a new step begins.
        now, step = time.monotonic(), message.partition(": ")[0]
        if fraction < 1.0 and step == self._step and now - self._drawn < 0.1:
            return
        self._drawn, self._step = now, step
        self.bar.n = int(round(fraction * 1000))
        left = f"about {format_seconds(seconds_left)} left · " if seconds_left is not None else ""
        self.bar.set_postfix_str(left + message[:60], refresh=False)
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
        elif self.bar is not None:
            self.bar.close()
