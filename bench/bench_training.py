"""SAE training and encoding, ours vs the reference (HypotheSAEs from PyPI), on the same inputs.

For each N (4,000 real Yelp reviews embedded with MiniLM; 100,000 synthetic 384-d vectors) and each
M x K, both sides train the same number of epochs (early stopping disabled) at batch 512, lr 5e-4,
with a 10% validation split, in separate processes started one after the other. Reported: seconds per
epoch (whole fit wall time / epochs), final normalised MSE on all N rows (same formula for both), time
to encode the N rows, bytes the codes take (our CSR vs their dense matrix) and the peak extra memory
of each stage. Ratios are ours/theirs: below 1 means we are faster or smaller.

    python bench/bench_training.py [--quick]
"""

from __future__ import annotations

from common import (
    OUR_PYTHON,
    markdown_table,
    ratio,
    ratio_or_bound,
    run_worker,
    script_main,
    setup_env,
    synthetic_path,
    yelp_embeddings,
)
from reference_env import ensure_reference_env

MS, KS = (256, 1024, 4096), (8, 32)


def plan(quick: bool) -> list[dict]:
    if quick:
        return [{"data": "yelp", "n": 4000, "epochs": 2, "m": m, "k": 8} for m in (256, 1024)]
    rows = [{"data": "yelp", "n": 4000, "epochs": 5, "m": m, "k": k} for m in MS for k in KS]
    rows += [{"data": "synthetic", "n": 100_000, "epochs": 1, "m": m, "k": k} for m in MS for k in KS]
    return rows


def run(quick: bool = False, timeout: float = 240, mem_gib: float = 8) -> dict:
    setup_env()
    ref_python = ensure_reference_env()
    inputs = {"yelp": str(yelp_embeddings()), "synthetic": str(synthetic_path(100_000))}
    rows = []
    for cfg in plan(quick):
        task = {
            "kind": "train",
            "x": inputs[cfg["data"]],
            "m": cfg["m"],
            "k": cfg["k"],
            "epochs": cfg["epochs"],
            "seed": 0,
        }
        out = {}
        for side, python, script in (("ours", OUR_PYTHON, "worker_ours.py"), ("ref", ref_python, "worker_ref.py")):
            res = run_worker(python, script, task, timeout=timeout, mem_limit_gib=mem_gib, expect=("train", "encode"))
            out[side] = {r["item"]: r for r in res}
        rows.append({**cfg, **out})
        print(f"  trained {cfg['data']} n={cfg['n']} m={cfg['m']} k={cfg['k']}", flush=True)
    return {"rows": rows, "timeout_s": timeout, "mem_budget_gib": mem_gib}


def _get(side: dict, item: str, key: str):
    return side.get(item, {}).get(key)


def _why(side: dict, item: str) -> str:
    return side.get(item, {}).get("failed", "")


def tables(result: dict) -> str:
    train_rows, enc_rows, notes = [], [], []
    for r in result["rows"]:
        o, t = r["ours"], r["ref"]
        label = [f"{r['data']} {r['n']:,}", r["m"], r["k"], r["epochs"]]
        os_, ts_ = _get(o, "train", "s_per_epoch"), _get(t, "train", "s_per_epoch")
        train_rows.append(
            label
            + [
                os_,
                ts_ if ts_ is not None else f"failed: {_why(t, 'train')}",
                ratio_or_bound(
                    os_ and os_ * r["epochs"], ts_ and ts_ * r["epochs"], _why(t, "train"), result["timeout_s"]
                ),
                _get(o, "train", "nmse"),
                _get(t, "train", "nmse"),
                _get(o, "train", "extra_mib"),
                _get(t, "train", "extra_mib"),
            ]
        )
        ob, tb = _get(o, "encode", "codes_bytes"), _get(t, "encode", "codes_bytes")
        oe, te = _get(o, "encode", "encode_s"), _get(t, "encode", "encode_s")
        enc_rows.append(
            label[:3]
            + [
                oe,
                te if te is not None else f"failed: {_why(t, 'encode')}",
                ratio(oe, te),
                None if ob is None else round(ob / 2**20, 2),
                None if tb is None else round(tb / 2**20, 2),
                ratio(ob, tb),
                _get(o, "encode", "extra_mib"),
                _get(t, "encode", "extra_mib"),
            ]
        )
        for side, name in ((o, "ours"), (t, "reference")):
            for item in ("train", "encode"):
                if _why(side, item):
                    notes.append(f"- {name} {item} {r['data']} m={r['m']} k={r['k']}: {_why(side, item)}")
    text = "### SAE training (seconds per epoch, final normalised MSE on all rows, peak extra MiB)\n\n"
    text += markdown_table(
        [
            "data",
            "M",
            "K",
            "epochs",
            "ours s/epoch",
            "ref s/epoch",
            "ours/ref",
            "ours NMSE",
            "ref NMSE",
            "ours MiB",
            "ref MiB",
        ],
        train_rows,
    )
    text += "\n\n### Encoding all N rows (seconds, code size in MiB, peak extra MiB)\n\n"
    text += markdown_table(
        [
            "data",
            "M",
            "K",
            "ours s",
            "ref s",
            "ours/ref",
            "ours codes MiB",
            "ref codes MiB",
            "size ours/ref",
            "ours MiB",
            "ref MiB",
        ],
        enc_rows,
    )
    if notes:
        text += "\n\n" + "\n".join(notes)
    return text


if __name__ == "__main__":
    script_main("training", run, tables, "two small configurations only (smoke test)", __doc__)
