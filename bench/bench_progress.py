"""Where a hypothesis run's time goes, as its progress callback sees it: one row per stage with its seconds
and how many reports the stage made (a stage of many seconds with one report is a frozen bar), then how well
the bar's time left (elapsed x (1 - fraction) / fraction) foretold the real time left.

    python bench/bench_progress.py                      # the README's Yelp run, offline defaults
    python bench/bench_progress.py --llm --delay 0.05   # LLM naming and annotation against a local fake server

The documents are embedded first through the cache (timed apart); the run then gets their embeddings and a fresh
cache folder, so that the SAE is trained and the phrase labels are embedded as on a first run (``--warm`` keeps
the cache). Offline: phrase labels, activation annotation. ``--llm`` starts the tests' local OpenAI-compatible
server (tests/openai_server.py) answering each call after ``--delay`` seconds, and names and annotates with it.
Stages are the message before ": " (``naming 20 latents: ...``). Prints the load average before and after.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from collections import OrderedDict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))


def data_files() -> tuple[Path, Path]:
    env = os.environ.get("HSAE_DATA_DIR")
    folder = (Path(env) if env else REPO.parent / "shared" / "data") / "yelp_reviews_demo"
    return folder / "yelp-demo-val-2K.jsonl", folder / "yelp-demo-holdout-2K.jsonl"


class Recorder:
    """A progress callback that keeps (seconds since start, done, total, message) of every report."""

    def __init__(self):
        self.t0 = time.perf_counter()
        self.calls: list[tuple[float, int, int, str]] = []

    def __call__(self, done: int, total: int, message: str = "") -> None:
        self.calls.append((time.perf_counter() - self.t0, done, total, message))

    def foretold(self, t: float, end: float) -> str:
        """What the bar's estimate said at the last report before ``t`` seconds, and the real time left then."""
        before = [c for c in self.calls if c[0] <= t and c[2] > 0]
        if not before:
            return "no report yet"
        at, done, total, message = before[-1]
        fraction = done / total
        guess = f"{at * (1 - fraction) / fraction:.1f} s" if fraction >= 0.02 else "none"
        return f"{guess} (real {end - at:.1f} s; {fraction:.0%} at {at:.1f} s, {message[:60]!r})"

    def stages(self, depth: int = 1) -> OrderedDict:
        """{stage: [seconds until the next stage's first report, reports]} in order of first report; a stage is the
        message's first ``depth`` parts (split at ": "), numbers written #."""
        out: OrderedDict = OrderedDict()
        for i, (t, _, _, message) in enumerate(self.calls):
            stage = ": ".join(re.sub(r"\d[\d,.]*", "#", part) for part in message.split(": ")[:depth])
            end = self.calls[i + 1][0] if i + 1 < len(self.calls) else t
            row = out.setdefault(stage, [0.0, 0])
            row[0] += end - t
            row[1] += 1
        return out


def embed_both(train, hold):
    """Both splits' MiniLM embeddings (through the cache), one row per row, the holdout's after the training's."""
    import numpy as np

    from hsae_core.embed import default_embedder, embed_texts

    model = default_embedder()
    return np.vstack([embed_texts(part["text"].tolist(), model) for part in (train, hold)])


def fake_llm(request) -> str:
    """Names a latent by a word of its first shown passage; says yes when the label's word is in the text."""
    from openai_server import user_prompt

    prompt = user_prompt(request)
    words = [w for w in prompt.lower().split() if w.isalpha() and len(w) > 5]
    if "Reply with one word" in prompt or "yes or no" in prompt.lower():
        return "Yes" if len(prompt) % 3 == 0 else "No"
    return f"mentions {words[len(words) // 2] if words else 'food'}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llm", action="store_true", help="name and annotate with an LLM (a local fake server)")
    parser.add_argument("--delay", type=float, default=0.05, help="seconds the fake server takes per call")
    parser.add_argument("--rows", type=int, default=0, help="use only the first ROWS rows of each file (0: all)")
    parser.add_argument("--depth", type=int, default=1, help="split stages into their first DEPTH message parts")
    parser.add_argument("--warm", action="store_true", help="keep the label and SAE caches of earlier runs")
    args = parser.parse_args(argv)

    import pandas as pd

    from hsae_core.pipeline import HypothesisConfig, hypothesize

    train_file, hold_file = data_files()
    train = pd.read_json(train_file, lines=True)
    hold = pd.read_json(hold_file, lines=True)
    if args.rows:
        train, hold = train.iloc[: args.rows], hold.iloc[: args.rows]
    options = {}
    server = None
    if args.llm:
        from openai_server import FakeOpenAIServer

        from hsae_core.llm import LLMClient

        server = FakeOpenAIServer(responder=fake_llm, delay=args.delay).start()
        cache = Path(tempfile.mkdtemp(prefix="hsae-bench-llm-")) / "llm.sqlite"
        client = LLMClient(model="fake-model", api_key="test", base_url=server.base_url, cache_path=cache)
        options = {"interpreter": "llm", "annotator": "llm", "llm_client": client}
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    embeddings = embed_both(train, hold)
    embed_seconds = time.perf_counter() - t0
    if not args.warm:
        os.environ["HSAE_CACHE_DIR"] = tempfile.mkdtemp(prefix="hsae-bench-progress-")
    progress = Recorder()
    t0 = time.perf_counter()
    run = hypothesize(
        train,
        holdout=hold,
        text_col="text",
        target_col="stars",
        embeddings=embeddings,
        embedder="sentence-transformers/all-MiniLM-L6-v2",
        config=HypothesisConfig(cache_sae=args.warm),
        progress=progress,
        **options,
    )
    total = time.perf_counter() - t0
    if server is not None:
        server.stop()
    what = f"LLM (fake server, {args.delay:g} s a call)" if args.llm else "offline"
    print(f"{len(train):,} + {len(hold):,} rows, {what}, {'warm' if args.warm else 'cold'} label and SAE caches")
    print(f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after; {os.cpu_count()} CPUs")
    width = 28 * args.depth
    print(f"{'stage':<{width}} {'seconds':>8} {'reports':>8}")
    print(f"{'embedding the documents':<{width}} {embed_seconds:>8.1f}")
    for stage, (seconds, reports) in progress.stages(args.depth).items():
        print(f"{stage[:width]:<{width}} {seconds:>8.1f} {reports:>8}")
    print(f"{'the run':<{width}} {total:>8.1f} {len(progress.calls):>8}")
    print("time left, foretold vs real, at a quarter, half and three quarters of the run:")
    for at in (0.25, 0.5, 0.75):
        print(f"  {at:.0%}: {progress.foretold(at * total, total)}")
    print("summary seconds:", run.summary["seconds"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
