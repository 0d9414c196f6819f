"""Label fidelity: held-out embedding-judge AUC of keyword labels and of phrase labels, side by side.

For each corpus an SAE of M=128, K=16 is trained (the workspace default when this was first
measured; seed 0, on every document's MiniLM embedding). Both labellers read only the ``build`` part
of the documents (60%, a seeded permutation); phrase candidates compete on the ``validation`` part
(20%); every label is scored on the ``test`` part (20%) that no labeller reads: AUC of
cos(embed(label), embed(document)) for "the feature fires" (activation > 0), and F1 at the threshold
that maximised F1 on validation.
Keyword labels are today's offline labels (top three contrastive keywords, comma-separated).

Corpora: the Yelp demo workspace's 4,000 reviews (val + holdout files), the arXiv 2018 data (3,000 papers,
title + ". " + abstract) and 4,000 Upworthy headlines (whole A/B tests, so a story's variants come together).

    python bench/bench_labels.py [--quick]        # --quick: 1,000 documents of each, M=32
    python bench/bench_labels.py --negation-margin 0   # phrase labels as before negations were discounted
    python bench/bench_labels.py --term-margin 0       # terms ("Fish tacos") compete without their preference
    python bench/bench_labels.py --compare-to OLD.json # label by label against an earlier run's JSON (another
                                                       # version of the code on PYTHONPATH wrote it)

Each label is also read as a name, clause, fragment or keyword frame (``label_form``), by rules of this
file's own, not the labeller's.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
from common import data_dir, embed_cached, machine_description, markdown_table, save_json, setup_env, yelp_frames

from hsae_core.settings import format_levels, parse_levels

M, K, SEED = 128, 16, 0
LABELLERS = ("keywords", "phrases")


def corpora(quick: bool) -> dict[str, list[str]]:
    train, hold = yelp_frames()
    arx = pd.read_csv(data_dir() / "arxiv_2018_citations" / "arxiv_2018_with_citations.csv")
    out = {
        "Yelp demo (4,000 reviews)": pd.concat([train, hold])["text"].astype(str).tolist(),
        "arXiv 2018 (3,000 abstracts)": (arx["title"].astype(str) + ". " + arx["abstract"].astype(str)).tolist(),
        "Upworthy headlines (4,000)": upworthy_headlines(4000),
    }
    return {k: v[:1000] for k, v in out.items()} if quick else out


def upworthy_headlines(n: int) -> list[str]:
    """The headlines of whole A/B tests in a seeded order, cut at ``n``: as a user's upload holds them, with
    each story's variants (which share clauses word for word) beside each other."""
    frame = pd.read_parquet(data_dir() / "upworthy_headlines" / "upworthy_exploratory_packages.parquet")
    order = frame["clickability_test_id"].drop_duplicates().sample(frac=1.0, random_state=0)
    rank = pd.Series(range(len(order)), index=order.to_numpy())
    frame = frame.assign(rank=frame["clickability_test_id"].map(rank)).sort_values("rank", kind="stable")
    return frame["headline"].astype(str).head(n).tolist()


def run(
    quick: bool = False,
    m: int = M,
    k: int = K,
    levels: str = "none",
    negation_margin: Optional[float] = None,
    term_margin: Optional[float] = None,
) -> dict:
    import os

    from hsae_core.embed import default_embedder
    from hsae_core.labelsets import label_features, summarize
    from hsae_core.sae import SparseAutoencoder

    setup_env()
    m = 32 if quick else m
    levels = parse_levels(levels)
    results = {"machine": machine_description(), "m": m, "k": k, "levels": levels, "seed": SEED, "corpora": []}
    phrase_options = {
        name: value
        for name, value in (("negation_margin", negation_margin), ("term_margin", term_margin))
        if value is not None
    }
    results.update(phrase_options)
    for name, texts in corpora(quick).items():
        X = embed_cached(texts)
        sae = SparseAutoencoder(m=m, k=k, levels=levels, seed=SEED).fit(X)
        codes = sae.transform(X)
        entry = {"corpus": name, "n_docs": len(texts), "labellers": {}}
        tables = {}
        for labeller in LABELLERS:
            start = time.perf_counter()
            options = phrase_options if labeller == "phrases" else {}
            table = label_features(
                texts, codes, labeller, embeddings=X, embedder=default_embedder(), seed=SEED, **options
            )
            seconds = time.perf_counter() - start
            tables[labeller] = table
            entry["labellers"][labeller] = {
                "auc": summarize(table, "fidelity_auc"),
                "f1": summarize(table, "fidelity_f1"),
                "seconds": round(seconds, 1),
                "mean_words": _mean_words(table),
                "shared": _shared_labels(table),
                "negated": _negated_labels(table),
                "forms": label_forms(table),
                "examples": table.loc[table["fidelity_auc"].notna(), "label"].head(8).tolist(),
                "features": [  # every feature's label and test AUC, for --compare-to
                    [int(j), str(label), None if pd.isna(a) else float(a)]
                    for j, label, a in table[["latent", "label", "fidelity_auc"]].itertuples(index=False)
                ],
            }
            if levels:  # each level's labels apart: broad groups and fine features read differently
                level = np.asarray(sae.level_names)[table["latent"].to_numpy(int)]
                entry["labellers"][labeller]["by_level"] = {
                    name: summarize(table[level == name], "fidelity_auc") for name in dict.fromkeys(sae.level_names)
                }
        a, b = tables["keywords"]["fidelity_auc"], tables["phrases"]["fidelity_auc"]
        both = a.notna() & b.notna()
        diff = (b - a)[both].to_numpy()
        entry["paired"] = {
            "n": int(both.sum()),
            "phrases_better": round(float(np.mean(diff > 0)), 3),
            "median_difference": round(float(np.median(diff)), 4),
            "bootstrap_95": _bootstrap_median(diff),
        }
        results["corpora"].append(entry)
    results["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
    return results


def _mean_words(table: pd.DataFrame) -> float:
    labels = table.loc[table["fidelity_auc"].notna(), "label"].astype(str)
    return round(float(labels.map(lambda s: len(s.split())).mean()), 1) if len(labels) else float("nan")


def _shared_labels(table: pd.DataFrame) -> int:
    """Scored features whose label reads the same as another's (what the Features page counts)."""
    from hsae_core.unique_labels import count_shared

    return count_shared(table.loc[table["fidelity_auc"].notna(), "label"])


def _negated_labels(table: pd.DataFrame) -> int:
    """Scored features whose label says "not", "never", "no" or "n't" (it may read as the feature's opposite)."""
    from hsae_core.labels import is_negated

    return int(table.loc[table["fidelity_auc"].notna(), "label"].astype(str).map(is_negated).sum())


# how a label reads, judged apart from the labeller's own rules: a frame of keywords ("mentions pho and broth"),
# a name (no function word inside: "Fish tacos", "Graph neural networks"), a fragment (a clause that starts
# with a preposition or points into a sentence the reader cannot see: "To convolutional neural networks",
# "Such as the policy gradient algorithm", "Its application to natural language") or a clause
FRAGMENT_STARTS = {
    "to", "in", "for", "on", "with", "from", "by", "at", "into", "via", "using", "about", "over", "of",
    "such", "namely", "including", "especially", "particularly", "like", "where", "whereby", "wherein",
    "whether", "its", "their", "which", "that", "and", "but", "or",
}  # fmt: skip


def label_form(label: str) -> str:
    """'frame', 'name', 'fragment' or 'clause' (see FRAGMENT_STARTS)."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    words = [w.strip(".,;:!?\"'()").lower() for w in label.split()]
    if label.startswith("mentions ") or "," in label and len(words) <= 4:
        return "frame"
    if words and words[0] in FRAGMENT_STARTS:
        return "fragment"
    if all(w and w not in ENGLISH_STOP_WORDS for w in words):
        return "name"
    return "clause"


def label_forms(table: pd.DataFrame) -> dict:
    """How many scored labels are frames, names, fragments and clauses."""
    labels = table.loc[table["fidelity_auc"].notna(), "label"].astype(str)
    counts = labels.map(label_form).value_counts()
    return {form: int(counts.get(form, 0)) for form in ("name", "clause", "fragment", "frame")}


def _bootstrap_median(diff: np.ndarray, n: int = 2000) -> list:
    rng = np.random.default_rng(0)
    meds = [np.median(rng.choice(diff, len(diff))) for _ in range(n)] if len(diff) else [np.nan]
    return [round(float(np.quantile(meds, 0.025)), 4), round(float(np.quantile(meds, 0.975)), 4)]


def tables(res: dict) -> str:
    rows = []
    for c in res["corpora"]:
        for labeller, r in c["labellers"].items():
            auc, f1 = r["auc"], r["f1"]
            rows.append(
                [
                    c["corpus"],
                    labeller,
                    auc["n"],
                    f"{auc['median']:.3f}",
                    f"{auc['q25']:.3f} – {auc['q75']:.3f}",
                    f"{f1['median']:.3f}",
                    r["mean_words"],
                    r.get("shared", "–"),
                    r.get("negated", "–"),
                    " / ".join(str(r["forms"][f]) for f in ("name", "clause", "fragment", "frame"))
                    if "forms" in r
                    else "–",
                    r["seconds"],
                ]
            )
    out = [
        f"### Held-out label fidelity (embedding judge, test part; SAE M={res['m']}, K={res['k']}"
        + (f", levels {format_levels(res['levels'])}" if res.get("levels") else "")
        + f", seed {res['seed']}"
        + (f", negation margin {res['negation_margin']}" if "negation_margin" in res else "")
        + (f", term margin {res['term_margin']}" if "term_margin" in res else "")
        + ")",
        f"Machine: {res['machine']['cores']} cores, torch threads {res['machine']['torch_threads']}, "
        f"load average {res['machine']['load_avg_1m_at_start']} at start and {res.get('load_avg_1m_at_end')} at end "
        f"({res['machine']['date']}).",
        "",
        markdown_table(
            [
                "corpus",
                "labels",
                "features",
                "AUC median",
                "AUC quartiles",
                "F1 median",
                "words per label",
                "sharing a label",
                "with a negation",
                "name / clause / fragment / frame",
                "seconds",
            ],
            rows,
        ),
        "",
    ]
    for c in res["corpora"]:
        p = c["paired"]
        out.append(
            f"- {c['corpus']}: phrase label beats the keyword label of the same feature on "
            f"{p['phrases_better']:.0%} of {p['n']} features; median paired difference {p['median_difference']:+.3f} "
            f"(bootstrap 95% interval {p['bootstrap_95'][0]:+.3f} to {p['bootstrap_95'][1]:+.3f})"
        )
        for labeller, r in c["labellers"].items():
            out.append(f"  - {labeller}, first features: " + " | ".join(r["examples"][:5]))
            if r.get("by_level"):
                out.append(
                    f"  - {labeller}, median AUC by level: "
                    + ", ".join(
                        f"{name} {v['median']:.3f} (n {v['n']})" if v["n"] else f"{name} – (n 0)"
                        for name, v in r["by_level"].items()
                    )
                )
    return "\n".join(out)


def compare(res: dict, earlier: dict, labeller: str = "phrases", n_examples: int = 12) -> str:
    """Feature by feature against an earlier run of the same SAEs (another version of the labeller): how many
    labels changed, the median paired difference of test AUC with its bootstrap interval, and some changes."""
    out = [f"### Against {earlier.get('machine', {}).get('date', 'an earlier run')} ({labeller})", ""]
    before = {c["corpus"]: c for c in earlier["corpora"]}
    for c in res["corpora"]:
        old = before.get(c["corpus"], {}).get("labellers", {}).get(labeller, {}).get("features")
        if not old:
            out.append(f"- {c['corpus']}: the earlier run has no per-feature labels")
            continue
        old = {j: (label, a) for j, label, a in old}
        new = {j: (label, a) for j, label, a in c["labellers"][labeller]["features"]}
        both = [j for j in new if j in old and new[j][1] is not None and old[j][1] is not None]
        diff = np.array([new[j][1] - old[j][1] for j in both])
        changed = [j for j in both if new[j][0] != old[j][0]]
        of_changed = np.array([new[j][1] - old[j][1] for j in changed])
        low, high = _bootstrap_median(of_changed) if changed else (np.nan, np.nan)
        out.append(
            f"- {c['corpus']}: {len(changed)} of {len(both)} labels changed; over the changed ones the median "
            f"paired difference of test AUC is {np.median(of_changed) if changed else 0:+.3f} "
            f"(bootstrap 95% interval {low:+.3f} to {high:+.3f}), over all {np.median(diff):+.3f}"
        )
        for j in changed[:n_examples]:
            out.append(f"  - #{j}: {old[j][0]} ({old[j][1]:.3f}) -> {new[j][0]} ({new[j][1]:.3f})")
    return "\n".join(out)


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1,000 documents per corpus and M=32: a smoke run")
    ap.add_argument("--m", type=int, default=M, help=f"SAE latents (default {M}, the size BENCHMARKS.md reports)")
    ap.add_argument("--k", type=int, default=K, help=f"active latents per document (default {K})")
    ap.add_argument("--levels", default="none", help="further SAE levels as latents/active pairs, e.g. 4/1,16/2")
    ap.add_argument(
        "--negation-margin",
        type=float,
        default=None,
        help="phrase labels' discount for a negation (default: the labeller's; 0 = no discount)",
    )
    ap.add_argument(
        "--term-margin",
        type=float,
        default=None,
        help="phrase labels' preference for a term such as 'fish tacos' over a clause (default: the labeller's)",
    )
    ap.add_argument(
        "--compare-to", help="an earlier run's JSON (bench/results/labels_*.json): changes feature by feature"
    )
    args = ap.parse_args()
    res = run(
        args.quick,
        m=args.m,
        k=args.k,
        levels=args.levels,
        negation_margin=args.negation_margin,
        term_margin=args.term_margin,
    )
    suffix = ("" if args.m == M else f"_m{args.m}") + ("" if args.k == K else f"_k{args.k}")
    suffix += "_levels" if res["levels"] else ""
    suffix += "" if args.negation_margin is None else f"_negation{args.negation_margin:g}"
    suffix += "" if args.term_margin is None else f"_term{args.term_margin:g}"
    save_json("labels" + ("_quick" if args.quick else suffix), res)
    print(tables(res))
    if args.compare_to:
        import json

        print()
        print(compare(res, json.loads(Path(args.compare_to).read_text())))


if __name__ == "__main__":
    main()
