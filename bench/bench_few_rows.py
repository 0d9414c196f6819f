"""Small holdouts: how many hypotheses can a holdout of about a hundred rows test?

The holdout model fits every hypothesis at once (OLS or logistic, 5-fold CV for R² / AUC) and Bonferroni
divides 5% by their number, so twenty hypotheses on a hundred rows overfit and hide what a few would show.
This runs the product's own path (``hypothesize`` with ``HypothesisConfig(n=..., rows_per_hypothesis=0)``, and
with the defaults, which test one hypothesis per 20 holdout rows; SAE seeds 0-2) on real targets cut to small
sizes and prints, per number of hypotheses, the Bonferroni-significant count, the holdout fit (5-fold CV R² or
AUC) and the embedding model's ceiling:

* Yelp stars: the first 400 / 100 and 800 / 200 reviews of the demo's training / holdout files;
* ML stance: 500 abstracts (seeded sample), 20% holdout;
* arXiv computer science vs the rest: 500 abstracts (seeded sample), 20% holdout;
* a rare class, Yelp 1 star against the rest: 800 / 200 and 2,000 / 2,000 reviews as above (31 and 243
  1-star reviews in the holdout, 16% and 12%).

    python bench/bench_few_rows.py                      # n 20, 10, 5 and the default
    python bench/bench_few_rows.py --n 20,15,10,5,3     # other numbers of hypotheses
    python bench/bench_few_rows.py --only "Yelp 1 star" # scenarios whose name starts so
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd
from common import data_dir, machine_description, markdown_table, save_json, setup_env, yelp_frames

SEEDS = (0, 1, 2)
SAMPLE_SEED = 0


def scenarios() -> dict:
    """{name: (train frame, holdout frame, target column)}; text is always the "text" column."""
    train, hold = yelp_frames()
    folder = data_dir()
    stance = pd.DataFrame(json.loads((folder / "ml_nlp_abstracts_stance" / "human_annotated_all.json").read_text()))
    stance = stance.assign(text=stance["title"] + ". " + stance["abstract"])[["text", "stance"]]
    arxiv = pd.read_csv(folder / "arxiv_2018_citations" / "arxiv_2018_with_citations.csv")
    arxiv = arxiv.assign(text=arxiv["title"] + ". " + arxiv["abstract"], cs=(arxiv["field"] == "computer_science"))
    arxiv = arxiv[["text", "cs"]].assign(cs=lambda f: f["cs"].map({True: "cs", False: "other"}))
    out = {
        "Yelp stars 400/100": (train.iloc[:400], hold.iloc[:100], "stars"),
        "Yelp stars 800/200": (train.iloc[:800], hold.iloc[:200], "stars"),
    }
    for name, frame, target in (("ML stance 400/100", stance, "stance"), ("arXiv cs 400/100", arxiv, "cs")):
        picked = frame.sample(500, random_state=SAMPLE_SEED).reset_index(drop=True)
        out[name] = (picked.iloc[:400], picked.iloc[400:], target)
    # a rare class: few holdout rows of one value, however many rows in all
    one_star = {"stars": lambda f: np.where(f["stars"] == 1, "1 star", "more")}
    for rows in ((800, 200), (2000, 2000)):
        name = f"Yelp 1 star {rows[0]}/{rows[1]}"
        out[name] = (train.iloc[: rows[0]].assign(**one_star), hold.iloc[: rows[1]].assign(**one_star), "stars")
    return out


def measure(name: str, train, hold, target: str, n, seed: int) -> dict:
    from hsae_core.pipeline import HypothesisConfig, hypothesize

    # an explicit n is tested whole (rows_per_hypothesis 0); the default chooses by the holdout's rows
    config = HypothesisConfig(seed=seed) if n is None else HypothesisConfig(seed=seed, n=n, rows_per_hypothesis=0)
    t0 = time.perf_counter()
    run = hypothesize(train, text_col="text", target_col=target, holdout=hold, config=config)
    overall = next(iter(run.summary["metrics"].values()))
    metric = "r2_cv" if "r2_cv" in overall else "auc_cv"
    return {
        "scenario": name,
        "n": "default" if n is None else n,
        "seed": seed,
        "hypotheses": overall["n_hypotheses"],
        "significant": overall["n_significant_bonferroni"],
        "metric": metric,
        "cv": overall[metric],
        "ceiling": overall["embedding_baseline"]["value"],
        "seconds": time.perf_counter() - t0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", default="20,10,5", help="numbers of hypotheses, comma-separated (and the default)")
    parser.add_argument("--only", default="", help="scenarios whose name starts with one of these, comma-separated")
    args = parser.parse_args()
    setup_env()
    counts = [int(x) for x in args.n.split(",") if x.strip()] + [None]
    wanted = [w.strip() for w in args.only.split(",") if w.strip()]
    rows = []
    for name, (train, hold, target) in scenarios().items():
        if wanted and not any(name.startswith(w) for w in wanted):
            continue
        for n in counts:
            for seed in SEEDS:
                rows.append(measure(name, train, hold, target, n, seed))
                r = rows[-1]
                print(
                    f"  {name} n={r['n']} seed {seed}: {r['significant']}/{r['hypotheses']} significant, "
                    f"{r['metric']} {r['cv']:.3f} (ceiling {r['ceiling']:.3f})",
                    flush=True,
                )
    table = []
    for name in dict.fromkeys(r["scenario"] for r in rows):
        for n in dict.fromkeys(r["n"] for r in rows):
            rs = [r for r in rows if r["scenario"] == name and r["n"] == n]
            table.append(
                [
                    name,
                    n,
                    f"{np.mean([r['hypotheses'] for r in rs]):.1f}",
                    f"{np.mean([r['significant'] for r in rs]):.1f}",
                    f"{rs[0]['metric'].replace('_cv', '').upper()} {np.mean([r['cv'] for r in rs]):.3f}",
                    f"{np.mean([r['ceiling'] for r in rs]):.3f}",
                ]
            )
    print(f"\nMachine: {machine_description()}\n")
    print(
        markdown_table(
            ["scenario", "n asked", "hypotheses", "Bonferroni-significant", "holdout fit (5-fold CV)", "ceiling"],
            table,
        )
    )
    save_json("few_rows_some" if wanted else "few_rows", {"rows": rows, "machine": machine_description()})


if __name__ == "__main__":
    main()
