"""Client-side cost of the OpenAI Batch API path: embeddings of N texts through the local fake server.

Runs ``embed_texts`` with ``OpenAIEmbedder(batch=True)`` against tests/openai_server.py (in this
process, so its work is included in the wall time): JSONL building and upload, polling, streaming the
output file, decoding and caching. N above 50,000 shows the split into several batches. Then runs
the same call again (everything from the embedding cache). Prints one table; numbers, no targets.

    python bench/bench_batch.py [--n 60000] [--dim 384]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from common import data_dir  # noqa: E402
from openai_server import FakeOpenAIServer  # noqa: E402

from hsae_core.embed import OpenAIEmbedder, embed_texts  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=60_000, help="texts to embed (default %(default)s)")
    ap.add_argument("--dim", type=int, default=384, help="embedding width the fake server returns")
    args = ap.parse_args()
    yelp = pd.read_json(data_dir() / "yelp_reviews_demo" / "yelp-demo-val-2K.jsonl", lines=True)["text"].tolist()
    texts = [f"{yelp[i % len(yelp)]} #{i}" for i in range(args.n)]  # real review text, every one distinct
    with FakeOpenAIServer(embed_dim=args.dim) as server, tempfile.TemporaryDirectory() as tmp:
        embedder = OpenAIEmbedder(
            "text-embedding-3-small",
            api_key="bench",
            base_url=server.base_url,
            batch=True,
            batch_dir=Path(tmp) / "batches",
            batch_poll_s=0,
        )
        t0 = time.perf_counter()
        X = embed_texts(texts, embedder, cache_dir=Path(tmp) / "cache")
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        embed_texts(texts, embedder, cache_dir=Path(tmp) / "cache")
        again = time.perf_counter() - t0
        uploads = server.calls("POST", r"/v1/files")
        sizes = [server.files[u["file_id"]]["bytes"] for u in uploads]
    row = {
        "texts": args.n,
        "dim": X.shape[1],
        "batches": len(uploads),
        "input_MB": round(sum(sizes) / 2**20, 1),
        "first_run_s": round(first, 1),
        "per_1k_texts_s": round(1000 * first / args.n, 3),
        "cached_rerun_s": round(again, 2),
        "peak_rss_MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    }
    print(json.dumps(row))


if __name__ == "__main__":
    main()
