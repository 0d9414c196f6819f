"""GPU benchmark: embedding texts/s (MiniLM, half precision on the GPU), SAE training seconds per epoch at
1M x 384 and 1M x 1536 with M 4096 and 12288 (k 32, synthetic unit-norm vectors), and encoding rows/s,
each on the device it names.

    python bench/bench_gpu.py                # on a CUDA machine: the full table -> bench/results/gpu.json
    python bench/bench_gpu.py --quick        # tiny sizes on any device (CPU here): exercises the same code

The full run refuses to start without CUDA (the CPU numbers live in BENCHMARKS.md's other sections).
Training runs ``--epochs`` epochs with early stopping off, at the product's default batch (256) and at a
GPU-sized batch (4096); seconds/epoch is the whole ``fit`` wall time (including its validation passes)
divided by the epochs. Encoding is ``SparseAutoencoder.transform`` of all N rows to CSR (the SAE of the
first batch size), the data already in host memory. Embedding runs at the batches ``--embed-batches`` names
(the product's default for the device, 256 on a GPU, among them) with the tokenizer as the product leaves it
(Hugging Face tokenizers parallel): on a GPU the CPU-side tokenizer, not the model, looks like the bound.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hsae_core import settings  # noqa: E402

FULL = {"n_texts": 20_000, "n_rows": 1_000_000, "dims": (384, 1536), "ms": (4096, 12288), "k": 32}
QUICK = {"n_texts": 256, "n_rows": 4_000, "dims": (384, 1536), "ms": (256, 512), "k": 8}


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        return (
            f"{props.name} ({props.total_memory / 2**30:.0f} GiB), CUDA {torch.version.cuda}, torch {torch.__version__}"
        )
    return f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench_embedding(device: str, n_texts: int, batch_size: int) -> dict:
    """Texts/s of ``embed_texts`` (no cache) over real Yelp reviews, cycled to ``n_texts``."""
    from common import yelp_frames

    from hsae_core.embed import default_embedder, embed_texts

    train, hold = yelp_frames()
    pool = train["text"].tolist() + hold["text"].tolist()
    texts = [pool[i % len(pool)] for i in range(n_texts)]
    embedder = default_embedder(device)
    embedder.batch_size = batch_size
    embed_texts(texts[: min(len(texts), 2 * batch_size)], embedder, use_cache=False)  # load + warm up
    _sync(device)
    t0 = time.perf_counter()
    X = embed_texts(texts, embedder, use_cache=False)
    _sync(device)
    seconds = time.perf_counter() - t0
    return {
        "item": "embedding",
        "texts": n_texts,
        "batch_size": batch_size,
        "seconds": round(seconds, 3),
        "texts_per_s": round(n_texts / seconds, 1),
        "dtype": "float16" if device != "cpu" else "float32",
        "dim": int(X.shape[1]),
    }


def synthetic(n: int, d: int, seed: int = 0) -> np.ndarray:
    """Unit-norm float32 rows, as sentence embeddings are; generated in blocks to bound the temporaries."""
    rng = np.random.default_rng(seed)
    X = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, 100_000):
        block = rng.standard_normal((min(100_000, n - start), d), dtype=np.float32)
        X[start : start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return X


def bench_train(device: str, X: np.ndarray, m: int, k: int, epochs: int, batch_size: int):
    import torch

    from hsae_core.sae import SparseAutoencoder

    sae = SparseAutoencoder(
        m=m, k=k, max_epochs=epochs, patience=epochs + 1, batch_size=batch_size, seed=0, device=device
    )
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    _sync(device)
    t0 = time.perf_counter()
    sae.fit(X)
    _sync(device)
    fit_s = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None
    rows = [
        {
            "item": "train",
            "n": len(X),
            "d": X.shape[1],
            "m": m,
            "k": k,
            "batch_size": batch_size,
            "epochs": len(sae.history_),
            "fit_s": round(fit_s, 2),
            "s_per_epoch": round(fit_s / max(1, len(sae.history_)), 2),
            "val_nmse": round(float(sae.metrics_["val_nmse"]), 4),
            "peak_gpu_gib": None if peak is None else round(peak, 2),
        }
    ]
    return sae, rows


def bench_encode(device: str, sae, X: np.ndarray) -> dict:
    m, k = sae.config_.m, sae.config_.k
    sae.transform(X[:4096])  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    codes = sae.transform(X)
    _sync(device)
    enc_s = time.perf_counter() - t0
    return {
        "item": "encode",
        "n": len(X),
        "d": X.shape[1],
        "m": m,
        "k": k,
        "seconds": round(enc_s, 2),
        "rows_per_s": round(len(X) / enc_s),
        "nnz_per_row": round(codes.nnz / len(X), 2),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes; runs on CPU too")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default 2; 1 with --quick)")
    parser.add_argument(
        "--batch-sizes",
        default=f"{settings.SAE.batch_size},4096",
        help="SAE training batches, comma-separated (default: the product's, and 4096)",
    )
    parser.add_argument(
        "--embed-batches", default=None, help="embedding batches, comma-separated (default 64,256,1024 GPU; 64 CPU)"
    )
    parser.add_argument("--out", default=None, help="JSON results (default bench/results/gpu[-quick].json)")
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from hsae_core.device import resolve_device
    from hsae_core.errors import HsaeError

    batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    try:
        device = resolve_device(args.device)
    except HsaeError as exc:
        print(f"bench_gpu: {exc}", file=sys.stderr)
        return 2
    if device == "cpu" and not args.quick:
        print(
            "bench_gpu: no CUDA device here; the full run (1M rows) is for a GPU machine. "
            "Run with --quick to exercise it on CPU.",
            file=sys.stderr,
        )
        return 2
    plan = QUICK if args.quick else FULL
    epochs = args.epochs or (1 if args.quick else 2)
    embed_batches = [int(b) for b in (args.embed_batches or ("64,256,1024" if device != "cpu" else "64")).split(",")]
    load = os.getloadavg()[0]
    print(f"# device: {device_name(device)}; load {load:.2f}; {'quick' if args.quick else 'full'} run", flush=True)

    results = []
    for embed_batch in embed_batches:
        results.append(bench_embedding(device, plan["n_texts"], embed_batch))
        print(
            f"embedding: {results[-1]['texts_per_s']} texts/s ({results[-1]['texts']} texts, "
            f"batch {embed_batch}, {results[-1]['dtype']})",
            flush=True,
        )
    for d in plan["dims"]:
        X = synthetic(plan["n_rows"], d)
        for m in plan["ms"]:
            first = None
            for batch_size in batch_sizes:
                sae, rows = bench_train(device, X, m, plan["k"], epochs, batch_size)
                results += rows
                first = first or sae
                print(
                    f"sae {len(X)} x {d}, M {m}, k {plan['k']}, batch {batch_size}: {rows[0]['s_per_epoch']} "
                    f"s/epoch ({rows[0]['epochs']} epochs, val nMSE {rows[0]['val_nmse']})",
                    flush=True,
                )
            results.append(bench_encode(device, first, X))
            print(f"encoding {len(X)} x {d}, M {m}: {results[-1]['rows_per_s']} rows/s", flush=True)
        del X
    out = (
        Path(args.out)
        if args.out
        else Path(__file__).resolve().parent / "results" / ("gpu-quick.json" if args.quick else "gpu.json")
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "device": device_name(device),
                "load_avg_1m": round(load, 2),
                "quick": args.quick,
                "epochs": epochs,
                "results": results,
            },
            indent=2,
        )
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
