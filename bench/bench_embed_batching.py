"""Embedding texts/s with unpadded batches (each batch one token count) against the model's own padded
batches, side by side on real Yelp reviews, and under each how many of 256 reviews get another vector
embedded alone than embedded together.

    python bench/bench_embed_batching.py                 # CPU here: 1,024 reviews, 3 alternating passes
    python bench/bench_embed_batching.py --n 20000       # on a GPU machine (--device auto picks CUDA)

The product embeds unpadded on a CPU and padded on a GPU (``SentenceTransformerEmbedder.batching``
'auto'); this prints the measurement behind that choice. -> bench/results/embed_batching.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import RESULTS, yelp_frames  # noqa: E402


def _sync(device: str) -> None:
    import torch

    if device != "cpu":
        torch.cuda.synchronize()


def texts_per_s(embedder, texts: list[str], device: str) -> tuple[float, np.ndarray]:
    _sync(device)
    start = time.perf_counter()
    X = embedder.embed(texts)
    _sync(device)
    return len(texts) / (time.perf_counter() - start), X


def rows_moved_by_batch_mates(embedder, texts: list[str]) -> int:
    """How many of ``texts`` get another vector embedded alone than embedded all together."""
    together = embedder.embed(texts)
    alone = np.vstack([embedder.embed([text]) for text in texts])
    return int((alone != together).any(axis=1).sum())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1024, help="reviews embedded per pass (the 4,000 demo reviews, cycled)")
    ap.add_argument("--passes", type=int, default=3, help="alternating passes of each batching")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from bench_gpu import device_name

    from hsae_core.device import resolve_device
    from hsae_core.embed import default_embedder

    device = resolve_device(args.device)
    train, hold = yelp_frames()
    pool = train["text"].tolist() + hold["text"].tolist()
    texts = [pool[i % len(pool)] for i in range(args.n)]
    embedder = default_embedder(device)  # one model, switched between the two batchings
    for mode in ("padded", "unpadded"):  # warm-up of both paths
        embedder.batching = mode
        embedder.embed(texts[:256])
    load = os.getloadavg()[0]  # at the start, as every timing here states it
    print(f"# {device_name(device)}; load {load:.2f}; {args.n} Yelp reviews per pass", flush=True)

    rows = []
    for number in range(1, args.passes + 1):
        speed = {}
        for mode in ("padded", "unpadded"):
            embedder.batching = mode
            speed[mode], speed[mode + "_vectors"] = texts_per_s(embedder, texts, device)
        gap = float(np.abs(speed.pop("padded_vectors") - speed.pop("unpadded_vectors")).max())
        rows.append({"pass": number, **{k: round(v, 1) for k, v in speed.items()}, "max_abs_difference": gap})
        print(
            f"pass {number}: padded {speed['padded']:.1f} texts/s, unpadded {speed['unpadded']:.1f} texts/s "
            f"(x{speed['unpadded'] / speed['padded']:.2f}); vectors differ by at most {gap:.1e}",
            flush=True,
        )
    sample = pool[:256]
    moved = {}
    for mode in ("padded", "unpadded"):
        embedder.batching = mode
        moved[mode] = rows_moved_by_batch_mates(embedder, sample)
        print(f"{mode}: {moved[mode]} of {len(sample)} reviews get another vector embedded alone than all together")
    out = RESULTS / "embed_batching.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "device": device_name(device),
                "load_avg_1m": round(load, 2),
                "n": args.n,
                "passes": rows,
                "moved_by_batch_mates": {mode: [count, len(sample)] for mode, count in moved.items()},
            },
            indent=2,
        )
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
