"""Shared pieces of the benchmark suite: paths, inputs (real and synthetic), worker processes, tables.

Every timed stage runs in a child process (ours with this venv, the reference with
``bench/.venv-ref``) that prints one ``RESULT {json}`` line per finished item. The parent enforces a
wall-clock and a memory budget, so a reference run that cannot finish a size becomes a row that says
so instead of a missing row or a machine that swaps.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import numpy as np

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"
INPUTS = RESULTS / "inputs"
OUR_PYTHON = Path(sys.executable)
DIM = 384

sys.path.insert(0, str(BENCH))
from memwatch import rss_bytes  # noqa: E402


def data_dir() -> Path:
    env = os.environ.get("HSAE_DATA_DIR")
    path = Path(env) if env else REPO.parent / "shared" / "data"
    if not (path / "yelp_reviews_demo").is_dir():
        raise SystemExit(
            f"Benchmark data not found at {path}: put ../shared/data beside the checkout or set HSAE_DATA_DIR"
        )
    return path


def setup_env() -> None:
    """Embedding cache under bench/results, never the network."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    INPUTS.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HSAE_CACHE_DIR", str(RESULTS / "cache"))
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    import torch

    torch.set_num_threads(bench_threads())


def bench_threads() -> int:
    """Threads every measured stage uses (HSAE_BENCH_THREADS, default 1), on both sides."""
    return int(os.environ.get("HSAE_BENCH_THREADS", "1"))


# ----------------------------------------------------------------------------- inputs
def embed_cached(texts: list[str]) -> np.ndarray:
    """MiniLM embeddings through the product's own disk cache (input preparation: all cores, not timed)."""
    import torch

    from hsae_core.embed import default_embedder, embed_texts

    before = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    try:
        return embed_texts(texts, default_embedder())
    finally:
        torch.set_num_threads(before)


def yelp_frames():
    import pandas as pd

    folder = data_dir() / "yelp_reviews_demo"
    train = pd.read_json(folder / "yelp-demo-val-2K.jsonl", lines=True)
    hold = pd.read_json(folder / "yelp-demo-holdout-2K.jsonl", lines=True)
    return train, hold


def yelp_embeddings() -> Path:
    """The 4,000 real Yelp reviews (val file then holdout file) embedded, as an .npy path."""
    out = INPUTS / "yelp4k.npy"
    if not out.exists():
        train, hold = yelp_frames()
        X = embed_cached(train["text"].tolist() + hold["text"].tolist())
        np.save(out, X.astype(np.float32))
    return out


def real_mix_texts() -> list[str]:
    """Every distinct real text in the shared data: Upworthy headlines, Yelp reviews, arXiv and NeurIPS/ICLR
    abstracts (about 24k texts from four domains), in a fixed order."""
    import glob

    import pandas as pd

    d = data_dir()
    parts = [pd.read_parquet(d / "upworthy_headlines" / "upworthy_exploratory_packages.parquet")["headline"]]
    train, hold = yelp_frames()
    parts += [train["text"], hold["text"]]
    parts.append(pd.read_csv(d / "arxiv_2018_citations" / "arxiv_2018_with_citations.csv")["abstract"])
    for f in sorted(glob.glob(str(d / "iclr_nips_abstracts" / "NIPS1*_paper.csv"))):
        parts.append(pd.read_csv(f)["Abstract"])
    texts = pd.concat(parts, ignore_index=True).dropna().astype(str).str.strip()
    return texts[texts.str.len() > 0].drop_duplicates().tolist()


def real_mix_embeddings() -> Path:
    """:func:`real_mix_texts` embedded with MiniLM (through the product's cache), as an .npy path."""
    out = INPUTS / "real_mix.npy"
    if not out.exists():
        np.save(out, embed_cached(real_mix_texts()).astype(np.float32))
    return out


def synthetic_embeddings(
    n: int, seed: int = 0, n_concepts: int = 2048, active: int = 8, noise: float = 0.3, with_texts: bool = False
):
    """Reproducible unit-norm vectors built like text embeddings are thought to be: a few concepts each.

    Each row mixes ``active`` of ``n_concepts`` random unit directions (Zipf-like popularity, positive
    exponential weights) plus isotropic noise, then is normalised. Generated in chunks, float32.
    With ``with_texts`` also returns one pseudo-document per row naming its concepts ("c12 c907 ..."),
    so text-based steps (keyword labels) have something consistent to read.
    """
    rng = np.random.default_rng(seed)
    dirs = rng.standard_normal((n_concepts, DIM)).astype(np.float32)
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    popularity = 1.0 / np.arange(1, n_concepts + 1) ** 0.7
    popularity /= popularity.sum()
    out = np.empty((n, DIM), dtype=np.float32)
    texts: list[str] = []
    for start in range(0, n, 50_000):
        rows = min(50_000, n - start)
        picks = rng.choice(n_concepts, size=(rows, active), p=popularity)
        weights = rng.exponential(1.0, size=(rows, active)).astype(np.float32)
        block = np.einsum("ra,rad->rd", weights, dirs[picks])
        block += (
            noise
            * rng.standard_normal((rows, DIM)).astype(np.float32)
            / np.sqrt(DIM)
            * np.linalg.norm(block, axis=1, keepdims=True)
        )
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start : start + rows] = block
        if with_texts:
            texts.extend(" ".join(f"c{c}" for c in row) for row in picks.tolist())
    return (out, texts) if with_texts else out


_SYLLABLES = (
    "ka",
    "lo",
    "mi",
    "nu",
    "re",
    "sa",
    "to",
    "vi",
    "be",
    "da",
    "fe",
    "gu",
    "ho",
    "ji",
    "ke",
    "la",
    "mo",
    "ne",
    "pi",
    "ru",
    "si",
    "ta",
    "vo",
    "ze",
    "an",
    "el",
    "or",
    "um",
    "is",
    "ar",
)
_FILLER = (
    "the",
    "a",
    "of",
    "and",
    "to",
    "in",
    "is",
    "we",
    "this",
    "that",
    "for",
    "with",
    "on",
    "our",
    "are",
    "as",
    "by",
    "an",
    "be",
    "from",
    "which",
    "results",
    "show",
    "method",
    "approach",
    "paper",
    "propose",
    "model",
    "data",
    "using",
    "new",
    "based",
    "performance",
    "two",
    "these",
    "can",
    "also",
    "study",
    "work",
    "high",
)


def _pseudo_words(n_words: int, rng) -> np.ndarray:
    """Distinct made-up words of 2-4 syllables (a concept's vocabulary), reproducible from ``rng``."""
    words: dict[str, None] = {}
    while len(words) < n_words:
        k = int(rng.integers(2, 5))
        words["".join(rng.choice(_SYLLABLES, size=k))] = None
    return np.array(list(words), dtype=object)


def synthetic_corpus(
    n: int,
    seed: int = 0,
    n_concepts: int = 2048,
    active: int = 8,
    noise: float = 0.3,
    words_per_concept: int = 6,
    length: int = 40,
    topics: int = 0,
    in_topic: float = 0.8,
    topic_weight: float = 0.0,
    common_weight: float = 0.0,
):
    """(embeddings, table) of ``n`` synthetic documents for the scale suite: text-like and label-able.

    Embeddings are :func:`synthetic_embeddings`' mixture of concepts. Each document's text mixes words from
    its concepts' own small vocabularies (more words for stronger concepts) with common filler words, about
    ``length`` words, so keyword labelling, search results and the Map read like a real (if nonsensical)
    corpus. Columns: ``text``, ``rating`` (1-5, driven by twenty concepts plus noise), ``source`` (six values,
    tied to the strongest concept 70% of the time).

    With ``topics`` > 0 documents also belong to one of that many topics (Zipf-popular): ``in_topic`` of their
    concepts come from the topic's own share of the concepts, and the topic's direction (``topic_weight``)
    and one direction shared by every document (``common_weight``: sentence embeddings are anisotropic) are
    added, so neighbourhoods look like those of real embedded text (calibrated in BENCHMARKS.md, Scale).
    """
    import pandas as pd

    rng = np.random.default_rng(seed)
    dirs = rng.standard_normal((n_concepts, DIM)).astype(np.float32)
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    popularity = 1.0 / np.arange(1, n_concepts + 1) ** 0.7
    popularity /= popularity.sum()
    if topics:
        topic_dirs = rng.standard_normal((topics, DIM)).astype(np.float32)
        topic_dirs /= np.linalg.norm(topic_dirs, axis=1, keepdims=True)
        common = rng.standard_normal(DIM).astype(np.float32)
        common /= np.linalg.norm(common)
        topic_pop = 1.0 / np.arange(1, topics + 1) ** 0.7
        topic_pop /= topic_pop.sum()
        concept_topic = rng.integers(0, topics, n_concepts)
        members = [np.flatnonzero(concept_topic == t) for t in range(topics)]
        member_p = [popularity[m] / popularity[m].sum() if len(m) else None for m in members]
    vocab = _pseudo_words(n_concepts * words_per_concept + len(_FILLER), rng)
    vocab = np.concatenate([vocab[: n_concepts * words_per_concept], np.array(_FILLER, dtype=object)])
    filler0 = n_concepts * words_per_concept
    effect = np.zeros(n_concepts, dtype=np.float32)
    effect[0:20:2], effect[1:20:2] = 1.0, -1.0  # ten popular concepts push the rating up, ten down
    X = np.empty((n, DIM), dtype=np.float32)
    texts, rating, source = [], np.empty(n, dtype=np.int64), np.empty(n, dtype=object)
    for start in range(0, n, 50_000):
        rows = min(50_000, n - start)
        picks = rng.choice(n_concepts, size=(rows, active), p=popularity)
        weights = rng.exponential(1.0, size=(rows, active)).astype(np.float32)
        if topics:
            topic = rng.choice(topics, size=rows, p=topic_pop)
            own = rng.random((rows, active)) < in_topic
            for t in np.unique(topic):
                if len(members[t]) == 0:
                    continue
                r, a = np.nonzero(own & (topic == t)[:, None])
                picks[r, a] = rng.choice(members[t], size=len(r), p=member_p[t])
        block = np.einsum("ra,rad->rd", weights, dirs[picks])
        if topics:
            scale = np.linalg.norm(block, axis=1, keepdims=True)
            block += scale * (topic_weight * topic_dirs[topic] + common_weight * common[None, :])
        block += (
            noise
            * rng.standard_normal((rows, DIM)).astype(np.float32)
            / np.sqrt(DIM)
            * np.linalg.norm(block, axis=1, keepdims=True)
        )
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        X[start : start + rows] = block
        # words: each slot takes a concept with probability ~ its weight, or a filler word
        share = weights / weights.sum(axis=1, keepdims=True)
        slot_concept = (rng.random((rows, length, 1)) > np.cumsum(share, axis=1)[:, None, :]).sum(axis=2)
        slot_concept = np.minimum(slot_concept, active - 1)
        concept = np.take_along_axis(picks, slot_concept, axis=1)
        word = concept * words_per_concept + rng.integers(0, words_per_concept, size=(rows, length))
        filler = rng.random((rows, length)) < 0.45
        word[filler] = filler0 + rng.integers(0, len(_FILLER), size=int(filler.sum()))
        texts.extend(" ".join(row) for row in vocab[word])
        score = (weights * effect[picks]).sum(axis=1) + rng.normal(0, 0.5, rows)
        rating[start : start + rows] = np.clip(np.round(3 + 1.5 * score), 1, 5).astype(np.int64)
        strongest = picks[np.arange(rows), weights.argmax(axis=1)]
        tied = rng.random(rows) < 0.7
        source[start : start + rows] = np.where(tied, strongest % 6, rng.integers(0, 6, rows)).astype(str)
    frame = pd.DataFrame({"text": texts, "rating": rating, "source": pd.Series(source).radd("s")})
    return X, frame


# Topic structure calibrated so that neighbourhoods match real MiniLM embeddings of the shared data's 22,678
# distinct texts (nearest-neighbour cosines and the IVF nprobe needed for recall@10 0.95; BENCHMARKS.md, Scale).
TEXT_LIKE = {"topics": 200, "topic_weight": 0.25, "common_weight": 0.2, "in_topic": 0.8, "noise": 0.5}


def synthetic_corpus_files(n: int, seed: int = 0, params: Optional[dict] = None) -> tuple[Path, Path]:
    """(table .parquet, embeddings .npy) of :func:`synthetic_corpus` with ``params`` (default :data:`TEXT_LIKE`),
    generated once and kept in bench/results."""
    params = TEXT_LIKE if params is None else params
    tag = "-".join(f"{k}{v}" for k, v in sorted(params.items())) or "plain"
    table, emb = INPUTS / f"corpus_{n}_{seed}_{tag}.parquet", INPUTS / f"corpus_{n}_{seed}_{tag}.npy"
    if not (table.exists() and emb.exists()):
        X, frame = synthetic_corpus(n, seed, **params)
        np.save(emb, X)
        frame.to_parquet(table, index=False)
    return table, emb


def synthetic_path(n: int, seed: int = 0) -> Path:
    out = INPUTS / f"synthetic_{n}_{seed}.npy"
    if not out.exists():
        np.save(out, synthetic_embeddings(n, seed))
    return out


# ----------------------------------------------------------------------------- workers
def run_worker(
    python: Path, script: str, task: dict, timeout: float, mem_limit_gib: float, expect: Iterable[str] = ()
) -> list[dict]:
    """Run ``bench/<script>`` with ``task`` (JSON) under a time and memory budget.

    Returns the worker's RESULT dicts; every name in ``expect`` that did not come back gets a dict
    ``{"item": name, "failed": "<why>"}`` so tables can say why a row is empty.
    """
    # Same thread count on both sides (torch, BLAS, FAISS); 1 by default so a shared, oversubscribed
    # machine does not distort the ratios (2 threads ran 3x slower than 1 under load here).
    threads = str(bench_threads())
    env = dict(
        os.environ,
        OPENAI_API_KEY="sk-offline-benchmark-never-used",
        HF_HUB_OFFLINE="1",
        PYTHONPATH=str(BENCH),
        PYTHONUNBUFFERED="1",
        OMP_NUM_THREADS=threads,
        MKL_NUM_THREADS=threads,
        OPENBLAS_NUM_THREADS=threads,
    )
    env.pop("OPENAI_BASE_URL", None)
    proc = subprocess.Popen(
        [str(python), str(BENCH / script), json.dumps(task)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=str(REPO),
    )
    results: list[dict] = []
    err_tail: list[str] = []

    def read_out():
        for line in proc.stdout:
            if line.startswith("RESULT "):
                results.append(json.loads(line[7:]))

    def read_err():
        for line in proc.stderr:
            err_tail.append(line.rstrip())
            del err_tail[:-20]

    readers = [threading.Thread(target=read_out, daemon=True), threading.Thread(target=read_err, daemon=True)]
    for t in readers:
        t.start()
    why, t0, limit = None, time.monotonic(), mem_limit_gib * 2**30
    while proc.poll() is None:
        if time.monotonic() - t0 > timeout:
            why = f"not finished within {timeout:.0f} s"
        elif rss_bytes(proc.pid) > limit:
            why = f"exceeded the {mem_limit_gib:g} GiB memory budget"
        if why:
            proc.kill()
            break
        time.sleep(0.05)
    proc.wait()
    for t in readers:
        t.join(timeout=5)
    if why is None and proc.returncode != 0:
        last = next((l for l in reversed(err_tail) if l.strip()), "no message")
        why = f"crashed (exit {proc.returncode}): {last[:160]}"
    done = {r.get("item") for r in results}
    for name in expect:
        if name not in done:
            results.append({"item": name, "failed": why or "no result"})
    return results


def emit(item: str, **fields) -> None:
    """Worker side: report one finished item to the parent."""
    print("RESULT " + json.dumps({"item": item, **fields}, default=float), flush=True)


# ----------------------------------------------------------------------------- output
def fmt(value, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if value != value:
            return "—"
        return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def ratio(ours: Optional[float], theirs: Optional[float]) -> str:
    """ours/theirs as text; below 1 means we are faster/smaller."""
    if ours is None or theirs is None or theirs == 0:
        return "—"
    return f"{ours / theirs:.3g}"


def ratio_or_bound(ours: Optional[float], theirs: Optional[float], their_failure: str = "", limit: float = 0) -> str:
    """Like ``ratio``; when the reference ran out of time, the bound that still tells: ``< ours/limit``."""
    if theirs is None and ours is not None and their_failure.startswith("not finished") and limit:
        return f"< {ours / limit:.3g}"
    return ratio(ours, theirs)


def markdown_table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def script_main(suite: str, run, tables, quick_help: str, doc: str) -> None:
    """Command line of one suite's script: run it (or its --quick smoke version), save JSON, print tables."""
    import argparse

    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help=quick_help)
    args = ap.parse_args()
    res = run(args.quick)
    save_json(suite + ("_quick" if args.quick else ""), res)
    print(tables(res))


def save_json(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=float))
    return path


def machine_description() -> dict:
    cpu = "unknown"
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    try:
        import torch

        torch_v, threads = torch.__version__, bench_threads()
        # The vector kernels torch picked: results differ in their last bits across them, and an SAE
        # trained on such embeddings can differ by a hypothesis or two (see BENCHMARKS, "Another machine").
        capability = torch.backends.cpu.get_cpu_capability()
    except ImportError:
        torch_v, threads, capability = "?", "?", "?"
    load = os.getloadavg()
    return {
        "cpu": cpu,
        "cpu_capability": capability,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_gib, 1),
        "python": platform.python_version(),
        "torch": torch_v,
        "torch_threads": threads,
        "gpu": "none",
        "load_avg_1m_at_start": round(load[0], 2),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
