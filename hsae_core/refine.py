"""LLM labels under a budget, and a loop that rewrites a weak label from its own mistakes.

* :class:`Budget` caps LLM calls and tokens; :func:`estimate_llm_labels` gives the worst-case calls,
  tokens and cost (prices per million tokens from :mod:`hsae_core.settings`) so a caller can print
  them before anything runs. :class:`BudgetedClient` refuses any batch the budget cannot cover.
* :class:`Refiner`: for each feature whose LLM-judged F1 on the validation sample is under a bar, it
  judges the label on a balanced sample of *build* texts, shows the model its false positives and
  false negatives (``prompts/refine.txt``) and asks for a better label; the rewrite is kept only when
  its F1 on the *validation* sample rises and it is not another feature's label (the set's names stay
  distinct). After at most ``max_rounds`` rounds the label in hand is
  judged once on a balanced sample of *test* texts, and that is the score reported. So examples shown
  to the model (build), examples that decide (validation) and examples that score (test) never mix.
* :func:`llm_label_items`: the ``llm`` labeller of :mod:`hsae_core.labelsets` (LLM candidates, optional
  refinement, all under one budget). A failed or unusable answer is recorded and never stops a run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import scipy.sparse as sp

from . import settings
from .errors import DataError
from .fidelity import LabelSplits, LLMJudge, balanced_sample, llm_scores
from .interpret import Interpretation, LLMInterpreter, parse_label, snippet
from .llm import load_prompt
from .progress import Overall, ProgressFn, progress_span, report
from .unique_labels import label_key

CHARS_PER_TOKEN = 4.0
JUDGE_MAX_TOKENS, LABEL_MAX_TOKENS = 8, 60


def estimate_tokens(text: Optional[str]) -> int:
    """A rough token count (about four characters per token for English prose)."""
    return int(math.ceil(len(text or "") / CHARS_PER_TOKEN))


# ----------------------------------------------------------------------------------------------- budget
@dataclass
class Budget:
    """A cap on LLM calls and tokens (``None``: no cap), with what has been spent and an estimated cost.

    Prices are US dollars per million input / output tokens (default: ``settings.llm_prices()``).
    Cached answers are charged too, so the same command spends the same budget every time.
    """

    max_calls: Optional[int] = None
    max_tokens: Optional[int] = None
    price_in: Optional[float] = None
    price_out: Optional[float] = None
    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    stopped: Optional[str] = None

    def __post_init__(self):
        default_in, default_out = settings.llm_prices()
        self.price_in = default_in if self.price_in is None else float(self.price_in)
        self.price_out = default_out if self.price_out is None else float(self.price_out)
        for name in ("max_calls", "max_tokens"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or int(value) < 0):
                raise DataError(f"`{name}` must be a non-negative integer or None, got {value!r}")

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return (tokens_in * self.price_in + tokens_out * self.price_out) / 1e6

    @property
    def spent(self) -> float:
        return self.cost(self.tokens_in, self.tokens_out)

    def fits(self, calls: int, tokens: int) -> bool:
        """Whether ``calls`` more calls using at most ``tokens`` more tokens stay within the caps."""
        if self.max_calls is not None and self.calls + calls > self.max_calls:
            return False
        return self.max_tokens is None or self.tokens_in + self.tokens_out + tokens <= self.max_tokens

    def charge(self, prompts: Sequence[str], answers: Sequence[Optional[str]], system: Optional[str] = None) -> None:
        self.calls += len(prompts)
        self.tokens_in += sum(estimate_tokens(p) + estimate_tokens(system) for p in prompts)
        self.tokens_out += sum(estimate_tokens(a) for a in answers if a)

    def stop(self, reason: str) -> None:
        self.stopped = self.stopped or reason

    def describe(self) -> str:
        caps = (
            ", ".join(
                f"{n} {v:,}"
                for n, v in (("max calls", self.max_calls), ("max tokens", self.max_tokens))
                if v is not None
            )
            or "no cap"
        )
        return (
            f"spent {self.calls:,} calls, ~{self.tokens_in + self.tokens_out:,} tokens, ~${self.spent:.4f} "
            f"({caps}; ${self.price_in}/M in, ${self.price_out}/M out)"
            + (f"; stopped: {self.stopped}" if self.stopped else "")
        )


class BudgetedClient:
    """An :class:`~hsae_core.llm.LLMClient` that answers ``None`` to any batch the budget cannot cover."""

    def __init__(self, client, budget: Budget):
        self.client, self.budget = client, budget
        self.model = client.model
        self.refused = 0

    @property
    def stats(self) -> dict:
        return {**getattr(self.client, "stats", {}), "refused_by_budget": self.refused}

    def complete_many(
        self,
        prompts: Sequence[str],
        *,
        progress: Optional[ProgressFn] = None,
        system: Optional[str] = None,
        max_tokens: int = 256,
        **params,
    ) -> list[Optional[str]]:
        prompts = list(prompts)
        upper = sum(estimate_tokens(p) + estimate_tokens(system) + max_tokens for p in prompts)
        if not self.budget.fits(len(prompts), upper):
            self.budget.stop(f"a batch of {len(prompts)} calls would exceed the budget")
            self.refused += len(prompts)
            return [None] * len(prompts)
        answers = self.client.complete_many(prompts, progress=progress, system=system, max_tokens=max_tokens, **params)
        self.budget.charge(prompts, answers, system)
        return answers

    def complete(self, prompt: str, **params) -> Optional[str]:
        return self.complete_many([prompt], **params)[0]


def _upper_tokens(prompts: Sequence[str], max_tokens: int, system: Optional[str] = None) -> int:
    return sum(estimate_tokens(p) + estimate_tokens(system) + max_tokens for p in prompts)


def _mean_chars(texts: Sequence[str], cap: int, sample: int = 2000) -> float:
    step = max(1, len(texts) // sample)
    lengths = [min(len(" ".join(str(t).split())), cap) for t in texts[::step]]
    return float(np.mean(lengths)) if lengths else 0.0


def estimate_llm_labels(
    texts: Sequence[str],
    n_features: int,
    *,
    name: bool = True,
    refine: bool = False,
    n_candidates: int = 3,
    n_examples: int = 10,
    n_eval: int = 20,
    n_test: int = 30,
    max_rounds: int = 3,
    n_build: int = 24,
    n_show: int = 4,
    budget: Optional[Budget] = None,
) -> dict:
    """Worst-case LLM calls, tokens and cost of naming ``n_features`` features (and refining every one of them)."""
    budget = budget or Budget()
    judge_in = estimate_tokens(load_prompt("judge")) + _mean_chars(texts, 2000) / CHARS_PER_TOKEN
    calls = tok_in = tok_out = 0.0
    if name:
        n_neg = max(3, n_examples // 2)
        name_in = (
            estimate_tokens(load_prompt("interpret"))
            + estimate_tokens(load_prompt("interpret_system"))
            + (n_examples + n_neg) * _mean_chars(texts, 600) / CHARS_PER_TOKEN
        )
        judged = n_candidates * n_eval + n_test
        calls += n_candidates + judged
        tok_in += n_candidates * name_in + judged * judge_in
        tok_out += n_candidates * LABEL_MAX_TOKENS + judged * JUDGE_MAX_TOKENS
    if refine:
        rewrite_in = estimate_tokens(load_prompt("refine")) + 3 * n_show * _mean_chars(texts, 600) / CHARS_PER_TOKEN
        judged = n_eval + max_rounds * (n_build + n_eval) + n_test
        calls += judged + max_rounds
        tok_in += judged * judge_in + max_rounds * rewrite_in
        tok_out += judged * JUDGE_MAX_TOKENS + max_rounds * LABEL_MAX_TOKENS
    calls, tok_in, tok_out = (int(math.ceil(v * n_features)) for v in (calls, tok_in, tok_out))
    return {
        "features": int(n_features),
        "calls": calls,
        "tokens_in": tok_in,
        "tokens_out": tok_out,
        "cost_usd": round(budget.cost(tok_in, tok_out), 4),
        "price_in": budget.price_in,
        "price_out": budget.price_out,
    }


def describe_estimate(est: dict, budget: Optional[Budget] = None) -> str:
    """One line for the user before an LLM run: what it may cost at most, and the caps that will stop it."""
    caps = ""
    if budget is not None and (budget.max_calls is not None or budget.max_tokens is not None):
        caps = " · budget: " + ", ".join(
            f"{n} {v:,}" for n, v in (("calls", budget.max_calls), ("tokens", budget.max_tokens)) if v is not None
        )
    return (
        f"LLM estimate for {est['features']} features: at most {est['calls']:,} calls, "
        f"~{est['tokens_in'] + est['tokens_out']:,} tokens, ~${est['cost_usd']:.4f} "
        f"at ${est['price_in']}/M input and ${est['price_out']}/M output tokens{caps}"
    )


# ----------------------------------------------------------------------------------------------- refinement
@dataclass
class RefineResult:
    """What the loop did for one feature: every round, the label kept, and its scores."""

    latent: int
    start_label: str
    label: str
    val_start: Optional[dict] = None
    val: Optional[dict] = None
    test: Optional[dict] = None
    rounds: list = field(default_factory=list)
    stopped: str = ""
    rows: dict = field(default_factory=dict)  # "shown" / "validation" / "test" -> row ids used for each purpose


class Refiner:
    """Rewrites labels whose validation F1 (LLM judge) is under ``f1_bar``, keeping only rewrites that score higher.

    ``n_build`` build texts (balanced) reveal the errors shown to the model each round (at most ``n_show``
    of each kind); ``n_val`` validation texts decide; ``n_test`` test texts score the final label.
    """

    def __init__(
        self,
        client,
        texts: Sequence[str],
        codes,
        splits: LabelSplits,
        *,
        f1_bar: float = 0.75,
        max_rounds: int = 3,
        n_build: int = 24,
        n_val: int = 20,
        n_test: int = 30,
        n_show: int = 4,
        budget: Optional[Budget] = None,
        seed: int = 0,
        max_chars: int = 600,
    ):
        if not 0.0 <= float(f1_bar) <= 1.0:
            raise DataError(f"`f1_bar` must be between 0 and 1, got {f1_bar}")
        if int(max_rounds) < 0:
            raise DataError(f"`max_rounds` must be 0 or more, got {max_rounds}")
        self.budget = budget or Budget()
        self.client = client if isinstance(client, BudgetedClient) else BudgetedClient(client, self.budget)
        self.budget = self.client.budget
        self.texts, self.codes, self.splits = list(texts), sp.csc_matrix(codes), splits
        self.f1_bar, self.max_rounds = float(f1_bar), int(max_rounds)
        self.n_build, self.n_val, self.n_test, self.n_show = n_build, n_val, n_test, n_show
        self.seed, self.max_chars = seed, max_chars
        self.judge = LLMJudge(self.client, self.texts)
        self.template = load_prompt("refine")
        self.system = load_prompt("interpret_system").strip()
        self.answers: list[dict] = []  # every rewrite answer, usable or not
        self._holders: dict[str, int] = {}  # label (as label_key reads it) -> the feature holding it

    def estimate(self, n_features: int) -> dict:
        return estimate_llm_labels(
            self.texts,
            n_features,
            name=False,
            refine=True,
            n_eval=self.n_val,
            n_test=self.n_test,
            max_rounds=self.max_rounds,
            n_build=self.n_build,
            n_show=self.n_show,
            budget=self.budget,
        )

    def refine(self, labels: dict[int, str], progress: Optional[ProgressFn] = None) -> dict[int, RefineResult]:
        """One :class:`RefineResult` per latent, in the order given; stops (cleanly) when the budget runs out."""
        out = {}
        # Which feature each label in hand belongs to: a rewrite that reads like another feature's label is
        # not kept, so refining keeps the set's names distinct (see unique_labels).
        self._holders = {label_key(str(label)): int(j) for j, label in labels.items()}
        for n, (j, label) in enumerate(labels.items()):
            out[int(j)] = self._one(int(j), str(label))
            report(progress, n + 1, len(labels), f"{n + 1} of {len(labels)} labels")
        return out

    # -- one feature ------------------------------------------------------------------------------
    def _judge_cost(self, label: str, rows) -> tuple[int, int]:
        prompts = [self.judge.prompt(label, r) for r in rows]
        return len(prompts), _upper_tokens(prompts, JUDGE_MAX_TOKENS)

    def _round_cost(self, label: str) -> tuple[int, int]:
        """Worst case of one round: a build judgement, a rewrite and a validation judgement of the rewrite."""
        judge_upper = estimate_tokens(self.judge.template) + estimate_tokens(label) + 2000 // 4 + JUDGE_MAX_TOKENS
        rewrite_upper = (
            estimate_tokens(self.template)
            + estimate_tokens(self.system)
            + estimate_tokens(label)
            + 3 * self.n_show * math.ceil(self.max_chars / CHARS_PER_TOKEN)
            + LABEL_MAX_TOKENS
        )
        return self.n_build + 1 + self.n_val, (self.n_build + self.n_val) * judge_upper + rewrite_upper

    def _fits(self, *costs: tuple[int, int]) -> bool:
        return self.budget.fits(sum(c for c, _ in costs), sum(t for _, t in costs))

    def _one(self, j: int, label: str) -> RefineResult:
        val_rows, val_truth = balanced_sample(self.codes, j, self.splits.validation, self.n_val, seed=self.seed)
        test_rows, test_truth = balanced_sample(self.codes, j, self.splits.test, self.n_test, seed=self.seed)
        res = RefineResult(
            latent=j,
            start_label=label,
            label=label,
            rows={"shown": [], "validation": val_rows.tolist(), "test": test_rows.tolist()},
        )
        if len(val_rows) == 0 or len(test_rows) == 0:
            res.stopped = "too few firing or silent texts to judge"
            return res
        test_cost = self._judge_cost(label, test_rows)
        if not self._fits(self._judge_cost(label, val_rows), test_cost):
            self.budget.stop("not enough budget left to score another label")
            res.stopped = "budget"
            return res
        res.val_start, _ = self.judge.score(label, val_rows, val_truth)
        res.val = res.val_start
        current_f1 = res.val["f1"]
        for r in range(1, self.max_rounds + 1):
            if current_f1 is None:
                res.stopped = "the current label could not be scored"
                break
            if current_f1 >= self.f1_bar:
                res.stopped = "validation F1 reached the bar" if r > 1 else "validation F1 already at the bar"
                break
            if not self._fits(self._round_cost(res.label), self._judge_cost(res.label, test_rows)):
                self.budget.stop("not enough budget left for another round")
                res.stopped = "budget"
                break
            record = self._round(j, res, r, val_rows, val_truth, current_f1)
            res.rounds.append(record)
            if record.get("kept"):
                current_f1 = record["val_f1"]
                if self._holders.get(label_key(res.label)) == j:
                    del self._holders[label_key(res.label)]
                self._holders[label_key(record["label"])] = j
                res.label, res.val = record["label"], record["val"]
            if record.get("reason") == "no errors on the build sample":
                res.stopped = record["reason"]
                break
        else:
            res.stopped = res.stopped or f"{self.max_rounds} round(s) done"
        if self._fits(self._judge_cost(res.label, test_rows)):
            res.test, _ = self.judge.score(res.label, test_rows, test_truth)
        return res

    def _round(self, j: int, res: RefineResult, r: int, val_rows, val_truth, current_f1: float) -> dict:
        build_rows, build_truth = balanced_sample(self.codes, j, self.splits.build, self.n_build, seed=self.seed + r)
        verdicts = self.judge.ask([(res.label, int(row)) for row in build_rows])
        hits = [row for row, v, t in zip(build_rows, verdicts, build_truth) if v is True and t == 1]
        fps = [row for row, v, t in zip(build_rows, verdicts, build_truth) if v is True and t == 0]
        fns = [row for row, v, t in zip(build_rows, verdicts, build_truth) if v is False and t == 1]
        if not fps and not fns:
            return {
                "round": r,
                "label": None,
                "kept": False,
                "reason": "no errors on the build sample",
                "build": llm_scores(verdicts, build_truth),
            }
        shown = [*hits[: self.n_show], *fps[: self.n_show], *fns[: self.n_show]]
        res.rows["shown"] = sorted(set(res.rows["shown"]) | {int(x) for x in shown})
        prompt = self.template.format(
            label=res.label,
            hits=self._listing(hits),
            false_positives=self._listing(fps),
            false_negatives=self._listing(fns),
        )
        answer = self.client.complete_many([prompt], system=self.system, temperature=0.0, max_tokens=LABEL_MAX_TOKENS)[
            0
        ]
        new = parse_label(answer, max_words=20)
        self.answers.append({"latent": j, "round": r, "answer": answer, "label": new})
        base = {"round": r, "build": llm_scores(verdicts, build_truth), "n_shown": len(shown)}
        if answer is None:
            return {**base, "label": None, "kept": False, "reason": "no answer (the call failed)"}
        if new is None:
            return {**base, "label": None, "answer": str(answer)[:200], "kept": False, "reason": "unusable answer"}
        if label_key(new) == label_key(res.label):
            return {**base, "label": new, "kept": False, "reason": "same label"}
        holder = self._holders.get(label_key(new))
        if holder is not None and holder != j:
            return {**base, "label": new, "kept": False, "reason": f"feature {holder}'s label"}
        val, _ = self.judge.score(new, val_rows, val_truth)
        if val["f1"] is None:
            return {**base, "label": new, "val": val, "val_f1": None, "kept": False, "reason": "could not be scored"}
        kept = val["f1"] > current_f1
        return {
            **base,
            "label": new,
            "val": val,
            "val_f1": val["f1"],
            "kept": kept,
            "reason": "validation F1 rose" if kept else "validation F1 did not rise",
        }

    def _listing(self, rows) -> str:
        rows = list(rows)[: self.n_show]
        if not rows:
            return "(none)"
        return "\n".join(f"{i + 1}. {snippet(self.texts[int(r)], self.max_chars)}" for i, r in enumerate(rows))


# ----------------------------------------------------------------------------------------------- the llm labeller
def llm_label_items(
    texts: Sequence[str],
    codes,
    latents: Sequence[int],
    splits: LabelSplits,
    client,
    *,
    judge=None,
    seed: int = 0,
    progress: Optional[ProgressFn] = None,
    refine: bool = False,
    budget: Optional[Budget] = None,
    f1_bar: float = 0.75,
    max_rounds: int = 3,
    chunk: int = 8,
    **interpreter_options,
) -> list[Interpretation]:
    """LLM labels for ``latents`` (candidates on build texts, chosen on validation, scored on test), then,
    with ``refine``, the rewrite loop for those under ``f1_bar``; everything under one ``budget``.

    Features the budget does not reach keep offline keyword labels (method says so). ``judge`` (an
    :class:`~hsae_core.fidelity.EmbeddingJudge`) adds the embedding-judge AUC of each final label.
    """
    from .llm import LLMClient

    if client is None:
        if not settings.openai_api_key():
            raise DataError(
                "LLM labels need an LLM: set OPENAI_API_KEY (and OPENAI_BASE_URL for a local server), "
                "or use the `labeller` 'phrases' or 'keywords'"
            )
        client = LLMClient()
    budget = budget or Budget()
    client = client if isinstance(client, BudgetedClient) else BudgetedClient(client, budget)
    interpreter_options.setdefault("score_test", not refine)  # with refinement the final label is scored once, there
    interp = LLMInterpreter(client, seed=seed, **interpreter_options)
    per_feature = estimate_llm_labels(
        texts,
        1,
        n_candidates=interp.n_candidates,
        n_examples=interp.n_examples,
        n_eval=interp.n_eval,
        n_test=interp.n_test,
        budget=budget,
    )
    calls_each, tokens_each = per_feature["calls"], per_feature["tokens_in"] + per_feature["tokens_out"]
    latents = [int(j) for j in latents]
    items: list[Interpretation] = []
    # naming and refining take about as long each (a refined feature costs a few rounds of a handful of calls)
    steps = Overall(progress, {"naming": 1.0, "refining": 1.0 if refine else 0.0})
    # the bar's naming share goes to the features the budget should reach: the rest keep keyword labels at once
    reached = max(1, min(len(latents), _affordable(budget, calls_each, tokens_each)))
    start = 0
    while start < len(latents):
        n_fit = int(min(chunk, _affordable(budget, calls_each, tokens_each)))
        if n_fit < 1:
            budget.stop("not enough budget left to name more features")
            items.extend(_keyword_fallback(texts, codes, latents[start:], splits))
            break
        naming = steps.stage("naming", f"LLM labels for features {start + 1}-{start + n_fit} of {len(latents)}")
        span = progress_span(naming, min(start / reached, 1.0), min((start + n_fit) / reached, 1.0))
        items.extend(interp.interpret(texts, codes, latents[start : start + n_fit], progress=span))
        start += n_fit
    if refine:
        refiner = Refiner(
            client,
            texts,
            codes,
            splits,
            f1_bar=f1_bar,
            max_rounds=max_rounds,
            budget=budget,
            seed=seed,
            n_val=interp.n_eval,
            n_test=interp.n_test,
        )
        todo = {it.latent: it.label for it in items if it.method.startswith("llm:")}
        results = refiner.refine(todo, progress=steps.stage("refining", "refining labels"))
        for it in items:
            res = results.get(it.latent)
            if res is None:
                continue
            it.candidates = [
                *it.candidates,
                *(
                    {
                        "label": rd.get("label"),
                        "round": rd["round"],
                        "kept": rd.get("kept"),
                        "reason": rd.get("reason"),
                        "f1": rd.get("val_f1"),
                    }
                    for rd in res.rounds
                ),
            ]
            if res.label != it.label:
                it.label, it.method = res.label, f"{it.method} + refined"
            if res.test is not None:
                it.fidelity = {**res.test, "label": res.label, "refine": res.stopped}
    if judge is not None:
        for it in items:
            if it.fidelity is not None and it.label and not it.method.startswith("keywords"):
                it.fidelity["auc"] = judge.test_fidelity(it.latent, it.label)["auc"]
    steps.finish(f"{len(items)} features labelled")
    return items


def _affordable(budget: Budget, calls_each: int, tokens_each: int) -> float:
    """How many more features the budget left can name (``inf`` without a limit), at the estimated cost of one."""
    left_calls = math.inf if budget.max_calls is None else budget.max_calls - budget.calls
    left_tokens = math.inf if budget.max_tokens is None else budget.max_tokens - budget.tokens_in - budget.tokens_out
    return min(left_calls // max(calls_each, 1), left_tokens // max(tokens_each, 1))


def _keyword_fallback(texts, codes, latents, splits) -> list[Interpretation]:
    from .interpret import KeywordInterpreter

    build = splits.build
    items = KeywordInterpreter().interpret([texts[i] for i in build], sp.csr_matrix(codes)[build], latents)
    for it in items:
        it.method = "keywords (LLM budget reached)"
    return items
