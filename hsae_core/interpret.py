"""Name SAE latents: offline contrastive keywords, or LLM labels chosen by fidelity on unseen examples.

* :class:`KeywordInterpreter` (offline, no network) contrasts the top-activating texts of a latent with
  the texts where it is silent, using a weighted log-odds ratio with an informative Dirichlet prior
  (Monroe, Colaresi & Quinn 2008) or a class-based TF-IDF. One sparse term-document matrix serves all
  latents; per latent only row sums over index sets are computed.
* :class:`LLMInterpreter` asks an LLM for several candidate labels per latent (different example samples
  and temperatures) from build texts, keeps the candidate with the best F1 on validation texts (does
  this text match the label? yes/no vs. whether the latent fires), unless another latent of the same call
  fits that label better (then its next candidate: :mod:`hsae_core.unique_labels`), and reports the
  winner's precision, recall and F1 on test texts (:mod:`hsae_core.fidelity` splits the texts).
"""

from __future__ import annotations

import hashlib
import logging
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Optional, Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp

from .errors import DataError, LLMError
from .llm import LLMClient, llm_configured, load_prompt, parse_yes_no
from .progress import ProgressFn, report
from .unique_labels import assign_distinct, mark_held

log = logging.getLogger(__name__)

# sklearn's English list without negations: "not good" and "never again" carry meaning here
_NEGATIONS = {"not", "no", "never", "nothing", "nobody", "none", "nor", "cannot"}
# apostrophes are folded before tokenising ("didn't" -> "didnt"); these pronoun contractions say nothing
_FOLDED_STOP = {
    "im",
    "ive",
    "id",
    "youre",
    "youve",
    "youd",
    "theyre",
    "theyve",
    "thats",
    "theres",
    "its",
    "lets",
    "hes",
    "shes",
    "weve",
    "whats",
    "heres",
    "itll",
    "theyll",
    "youll",
}
# ... and these are shown with their apostrophe back, so labels read naturally
_UNFOLD = {
    w: w[:-2] + "n't"
    for w in (
        "didnt",
        "doesnt",
        "dont",
        "wasnt",
        "werent",
        "isnt",
        "arent",
        "couldnt",
        "wouldnt",
        "shouldnt",
        "havent",
        "hasnt",
        "hadnt",
        "wont",
        "cant",
        "aint",
    )
}
_UNFOLD.update({"wont": "won't", "cant": "can't", "aint": "ain't"})
_SNIPPET_CHARS = 240


@dataclass
class Interpretation:
    """A latent's readable name, how it was made, and the evidence behind it."""

    latent: int
    label: str
    method: str
    keywords: list[str] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)
    candidates: list[dict] = field(default_factory=list)
    fidelity: Optional[dict] = None


def snippet(text: str, limit: int = _SNIPPET_CHARS) -> str:
    """``text`` on one line, cut at a word boundary to at most ``limit`` characters."""
    flat = " ".join(str(text).split())
    if len(flat) <= limit:
        return flat
    cut = flat[:limit].rsplit(" ", 1)[0]
    return cut + "…"


def fit(text: str, width: int) -> str:
    """``text`` on one line in at most ``width`` characters: whole if it fits, else :func:`snippet` and "…"."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= width else snippet(flat, width - 1)


def _check_inputs(texts: Sequence[str], codes, latents: Sequence[int]) -> tuple[list[str], sp.csc_matrix, list[int]]:
    texts = [str(t) for t in texts]
    if not sp.issparse(codes):
        codes = sp.csr_matrix(np.asarray(codes))
    if codes.shape[0] != len(texts):
        raise DataError(f"{len(texts)} texts but {codes.shape[0]} rows of SAE codes: encode the same texts you name")
    latents = [int(j) for j in latents]
    bad = [j for j in latents if not 0 <= j < codes.shape[1]]
    if bad:
        raise DataError(
            f"Latent {bad[0]} does not exist: the SAE has {codes.shape[1]} latents (0..{codes.shape[1] - 1})"
        )
    return texts, codes.tocsc(), latents


def _active(codes_csc: sp.csc_matrix, j: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows where latent ``j`` fires, sorted by activation (highest first), and their activations."""
    start, end = codes_csc.indptr[j], codes_csc.indptr[j + 1]
    rows, vals = codes_csc.indices[start:end], codes_csc.data[start:end]
    keep = vals > 0
    rows, vals = rows[keep], vals[keep]
    order = np.argsort(-vals, kind="stable")
    return rows[order], vals[order]


def _preprocess(text: str) -> str:
    # fold apostrophes so "didn't" is one token ("didnt") rather than "didn" + a dropped "t"
    return text.lower().replace("'", "").replace("\u2019", "")


def _unfold(term: str) -> str:
    return " ".join(_UNFOLD.get(w, w) for w in term.split())


@runtime_checkable
class Interpreter(Protocol):
    """Names latents from the training texts and their SAE codes."""

    def interpret(
        self, texts: Sequence[str], codes, latents: Sequence[int], progress: Optional[ProgressFn] = None
    ) -> list[Interpretation]: ...


class KeywordInterpreter:
    """Offline contrastive keyword labels: top-activating texts vs. texts where the latent is silent.

    ``method`` is ``"logodds"`` (weighted log-odds z-scores, informative Dirichlet prior) or ``"ctfidf"``.
    """

    def __init__(
        self,
        n_keywords: int = 6,
        top_docs: int = 50,
        method: str = "logodds",
        n_examples: int = 3,
        n_label_terms: int = 3,
        min_df: Optional[int] = None,
        max_features: int = 100_000,
    ):
        if method not in ("logodds", "ctfidf"):
            raise DataError(f"Unknown keyword method {method!r}: use 'logodds' or 'ctfidf'")
        self.n_keywords, self.top_docs, self.method = n_keywords, top_docs, method
        self.n_examples, self.n_label_terms = n_examples, n_label_terms
        self.min_df, self.max_features = min_df, max_features
        self._fitted_for: Optional[str] = None

    def _term_matrix(self, texts: list[str]) -> tuple[sp.csr_matrix, np.ndarray]:
        """Binary doc-term matrix (unigrams + bigrams) and vocabulary; reused while the texts are the same."""
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer

        fingerprint = hashlib.sha256("\x00".join(texts).encode("utf-8", "replace")).hexdigest()
        if self._fitted_for == fingerprint:
            return self.dtm_, self.vocab_
        min_df = self.min_df or (2 if len(texts) < 5000 else 3)
        stop = sorted((set(ENGLISH_STOP_WORDS) - _NEGATIONS) | _FOLDED_STOP)
        vectorizer = CountVectorizer(
            preprocessor=_preprocess,
            token_pattern=r"(?u)\b[^\W\d_]{2,}\b",
            stop_words=stop,
            ngram_range=(1, 2),
            min_df=min(min_df, max(1, len(texts))),
            max_features=self.max_features,
            binary=True,
            dtype=np.float32,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "stop words inconsistent with preprocessing"
            try:
                dtm = vectorizer.fit_transform(texts).tocsr()
            except ValueError:  # every text empty or only stop words
                dtm = sp.csr_matrix((len(texts), 0), dtype=np.float32)
        self.dtm_ = dtm
        self.vocab_ = np.array(vectorizer.get_feature_names_out()) if dtm.shape[1] else np.array([], dtype=object)
        self._fitted_for = fingerprint
        return self.dtm_, self.vocab_

    def _scores(self, fg: np.ndarray, bg: np.ndarray, total: np.ndarray) -> np.ndarray:
        """Per-term contrast scores for one foreground (rows: latents) vs. its background."""
        n_fg = fg.sum(axis=1, keepdims=True) + 1e-9
        n_bg = bg.sum(axis=1, keepdims=True) + 1e-9
        if self.method == "ctfidf":
            # class-based TF-IDF (foreground and background as the two classes), made contrastive by
            # subtracting the background's term frequency: words as common in silent texts score 0
            avg_words = (n_fg + n_bg) / 2.0
            return (fg / n_fg - bg / n_bg) * np.log1p(avg_words / np.maximum(fg + bg, 1e-9))
        # prior as heavy as one foreground set, shaped like the whole corpus
        alpha = n_fg * (total / max(total.sum(), 1e-9))[None, :] + 1e-3
        a0 = alpha.sum(axis=1, keepdims=True)
        delta = np.log((fg + alpha) / (n_fg + a0 - fg - alpha)) - np.log((bg + alpha) / (n_bg + a0 - bg - alpha))
        return delta / np.sqrt(1.0 / (fg + alpha) + 1.0 / (bg + alpha))

    def score_blocks(self, texts: Sequence[str], codes, latents: Sequence[int], progress: Optional[ProgressFn] = None):
        """Per block of latents: (latents, contrast scores (block x vocabulary), top-document rows per latent).

        A term scores ``-inf`` where it is too rare among the latent's top documents to be trusted.
        """
        texts, codes_csc, latents = _check_inputs(texts, codes, latents)
        report(progress, 0, max(len(latents), 1), "counting terms")
        dtm, vocab = self._term_matrix(texts)
        n_docs, n_terms = dtm.shape
        if n_terms == 0:
            return
        total = np.asarray(dtm.sum(axis=0)).ravel()
        chunk = max(1, int(2e7 // n_terms))  # bounds the dense (chunk x vocabulary) blocks to ~80 MB
        for start in range(0, len(latents), chunk):
            block = latents[start : start + chunk]
            top_rows, act_rows, min_fg = [], [], []
            for j in block:
                rows, _ = _active(codes_csc, j)
                top_rows.append(rows[: self.top_docs])
                act_rows.append(rows)
                min_fg.append(max(2, int(np.ceil(0.05 * min(len(rows), self.top_docs)))) if len(rows) >= 4 else 1)
            fg = np.asarray((self._selector(top_rows, n_docs) @ dtm).todense())
            active_sum = np.asarray((self._selector(act_rows, n_docs) @ dtm).todense())
            bg = np.maximum(total[None, :] - active_sum, 0.0)
            scores = self._scores(fg, bg, total)
            scores[fg < np.asarray(min_fg)[:, None]] = -np.inf
            yield block, scores, top_rows
            report(progress, min(start + chunk, len(latents)), len(latents), "keywords")

    def keywords_from_scores(self, scores_row: np.ndarray) -> list[str]:
        """Ranked, de-duplicated keywords from one latent's row of contrast scores."""
        best = np.argsort(-scores_row)[: 4 * self.n_keywords + 8]
        ranked = [_unfold(self.vocab_[t]) for t in best if np.isfinite(scores_row[t]) and scores_row[t] > 0]
        return self._dedupe(ranked)

    def keywords_for(
        self, texts: Sequence[str], codes, latents: Sequence[int], progress: Optional[ProgressFn] = None
    ) -> dict[int, list[str]]:
        """``{latent: ranked keywords}`` for each latent (empty for a latent that never fires)."""
        out: dict[int, list[str]] = {int(j): [] for j in latents}
        for block, scores, top_rows in self.score_blocks(texts, codes, latents, progress=progress):
            for i, j in enumerate(block):
                out[j] = self.keywords_from_scores(scores[i]) if len(top_rows[i]) else []
        return out

    @staticmethod
    def _selector(row_sets: list[np.ndarray], n_docs: int) -> sp.csr_matrix:
        lengths = [len(r) for r in row_sets]
        cols = np.concatenate(row_sets) if row_sets and sum(lengths) else np.array([], dtype=np.int64)
        rows = np.repeat(np.arange(len(row_sets)), lengths)
        return sp.csr_matrix((np.ones(len(cols), dtype=np.float32), (rows, cols)), shape=(len(row_sets), n_docs))

    def _dedupe(self, ranked: list[str]) -> list[str]:
        """Top terms without repeats: a unigram already inside a chosen bigram is dropped, and vice versa."""
        picked: list[str] = []
        for term in ranked:
            words = term.split()
            if len(words) == 1:
                if any(term in p.split() for p in picked):
                    continue
            else:
                if len(set(words)) < len(words):
                    continue
                covered = [p for p in picked if len(p.split()) == 1 and p in words]
                if covered:  # the bigram says more than the unigram it contains: take its place
                    picked[picked.index(covered[0])] = term
                    picked = [p for p in picked if p not in covered[1:]]
                    continue
            picked.append(term)
            if len(picked) >= self.n_keywords:
                break
        return picked[: self.n_keywords]

    def _label_options(self, words: list[str]) -> list[str]:
        """Labels from a latent's ranked keywords, best first: the top ``n_label_terms``, then the other
        choices of that many among the top ``n_label_terms + 3``, each kept in rank order."""
        n = min(self.n_label_terms, len(words))
        pool = words[: self.n_label_terms + 3]
        return [", ".join(pool[i] for i in picked) for picked in combinations(range(len(pool)), n)]

    def interpret(
        self, texts: Sequence[str], codes, latents: Sequence[int], progress: Optional[ProgressFn] = None
    ) -> list[Interpretation]:
        """One keyword-labelled :class:`Interpretation` per latent, in the order given; no two alike where
        another choice of its keywords is left."""
        texts, codes_csc, latents = _check_inputs(texts, codes, latents)
        keywords = self.keywords_for(texts, codes_csc, latents, progress=progress)
        # Two latents with the same top keywords would read alike: the later one then names itself with the
        # next keyword in place of a weaker one (first listed keeps the plain top terms).
        chosen = assign_distinct(
            {j: [(label, None) for label in self._label_options(keywords[j])] for j in latents if keywords[j]}
        )
        result = []
        for j in latents:
            rows, _ = _active(codes_csc, j)
            words = keywords[j]
            if len(rows) == 0:
                label = "(never active on these texts)"
            elif not words:
                label = "(no distinctive words)"
            else:
                label = chosen[j]["label"]
            result.append(
                Interpretation(
                    latent=j,
                    label=label,
                    method="keywords",
                    keywords=words,
                    examples=[snippet(texts[r]) for r in rows[: self.n_examples]],
                )
            )
        return result


# --------------------------------------------------------------------------------------------- LLM naming

_LABEL_PREFIX = re.compile(r"^(?:[-*•>#\d.)\s]+)?(?:the\s+)?(?:feature|label|phrase|answer|name|pattern)\s*:\s*", re.I)
_REFUSAL = re.compile(r"^(?:i\s|i'm|sorry|as an ai|unfortunately)", re.I)


def parse_label(answer: Optional[str], max_words: int = 25) -> Optional[str]:
    """A clean one-line label from an LLM answer, or None when the answer is missing or unusable."""
    if not answer:
        return None
    answer = re.sub(r"<think>.*?</think>", "", answer, flags=re.S | re.I)
    lines = [ln.strip() for ln in answer.strip().splitlines() if ln.strip()]
    if not lines:
        return None
    label = _LABEL_PREFIX.sub("", lines[0]).strip()
    label = label.strip("*_`\"'“”‘’ ").rstrip(".").strip()
    label = re.sub(r"^[-*•]\s*", "", label)
    if not label or len(label) > 200 or len(label.split()) > max_words or _REFUSAL.match(label):
        return None
    if not re.search(r"[^\W\d_]", label):
        return None
    return label


def fidelity_scores(said_yes: Sequence[Optional[bool]], activation: Sequence[float]) -> dict:
    """Precision / recall / F1 of yes-answers vs. activation > 0, and their correlation with the activation.

    Unanswered items (None) are left out and counted in ``n_failed``.
    """
    pairs = [(bool(s), float(a)) for s, a in zip(said_yes, activation) if s is not None]
    n_failed = len(said_yes) - len(pairs)
    if not pairs:
        return {"precision": None, "recall": None, "f1": None, "correlation": None, "n_scored": 0, "n_failed": n_failed}
    pred = np.array([p for p, _ in pairs], dtype=float)
    act = np.array([a for _, a in pairs], dtype=float)
    truth = act > 0
    tp = float(np.sum((pred > 0) & truth))
    precision = tp / pred.sum() if pred.sum() else 0.0
    recall = tp / truth.sum() if truth.sum() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    corr = float(np.corrcoef(pred, act)[0, 1]) if pred.std() > 0 and act.std() > 0 else 0.0
    return {
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "correlation": round(corr, 4),
        "n_scored": len(pairs),
        "n_failed": n_failed,
    }


@dataclass
class _Plan:
    latent: int
    prompts: list[tuple[str, float]]  # (prompt, temperature) per candidate
    shown_rows: np.ndarray  # every text shown in a naming prompt (build part)
    val_rows: np.ndarray  # balanced validation sample: candidates compete here
    val_acts: np.ndarray
    test_rows: np.ndarray  # balanced test sample: only the winner is judged here
    test_acts: np.ndarray


class LLMInterpreter:
    """LLM labels, several candidates per latent: the winner is chosen on validation texts and scored on test texts.

    The texts are split once by :func:`hsae_core.fidelity.label_splits`: naming prompts show only
    ``build`` texts; candidates are judged on a balanced sample of ``n_eval`` ``validation`` texts and
    the best F1 wins; the winner alone is judged on a balanced sample of ``n_test`` ``test`` texts, and
    that is its ``fidelity``. ``sampling``: ``"top"`` (highest activations), ``"bins"`` (one example
    per activation-percentile bin) or ``"hard_negatives"`` (top examples, contrasted with silent texts
    that fire the same other latents).
    """

    def __init__(
        self,
        client: LLMClient,
        n_candidates: int = 3,
        n_examples: int = 10,
        sampling: str = "top",
        n_eval: int = 20,
        seed: int = 0,
        keyword_fallback: bool = True,
        max_chars: int = 600,
        n_negatives: Optional[int] = None,
        temperature: float = 0.7,
        n_test: int = 30,
        score_test: bool = True,
    ):
        if sampling not in ("top", "bins", "hard_negatives"):
            raise DataError(f"Unknown sampling {sampling!r}: use 'top', 'bins' or 'hard_negatives'")
        if client is None:
            raise LLMError(
                "LLM naming needs an LLM client: set OPENAI_API_KEY (and OPENAI_BASE_URL for a local server)"
            )
        self.client, self.n_candidates, self.n_examples, self.sampling = (
            client,
            max(1, n_candidates),
            n_examples,
            sampling,
        )
        self.n_eval, self.n_test, self.seed, self.score_test = n_eval, n_test, seed, score_test
        self.keyword_fallback, self.max_chars = keyword_fallback, max_chars
        self.n_negatives = n_negatives if n_negatives is not None else max(3, n_examples // 2)
        self.temperature = temperature
        self.keywords = KeywordInterpreter()
        self.stats_ = {
            "labels_asked": 0,
            "labels_failed": 0,
            "judgements_asked": 0,
            "judgements_failed": 0,
            "keyword_fallbacks": 0,
        }
        self.plans_: dict[int, Optional[_Plan]] = {}

    @property
    def method(self) -> str:
        return f"llm:{self.client.model}"

    # -- sampling ---------------------------------------------------------------------------------
    def _negatives(self, codes_csr, j, silent, shown_pos, n, rng) -> np.ndarray:
        """Silent build texts for latent ``j``: random ones, or (hard) those most like the shown positives elsewhere."""
        if len(silent) == 0 or n <= 0:
            return np.array([], dtype=np.int64)
        if self.sampling != "hard_negatives":
            return rng.choice(silent, size=min(n, len(silent)), replace=False)
        centroid = np.asarray(codes_csr[shown_pos].mean(axis=0)).ravel()
        centroid[j] = 0.0
        similarity = codes_csr[silent] @ centroid
        return silent[np.argsort(-similarity, kind="stable")[:n]]

    def _plan(self, texts, codes_csr, codes_csc, j: int, splits) -> Optional[_Plan]:
        from .fidelity import balanced_sample

        rows, _ = _active(codes_csc, j)
        in_build = np.zeros(codes_csr.shape[0], dtype=bool)
        in_build[splits.build] = True
        shown = rows[in_build[rows]]  # build texts where it fires, highest activation first
        if len(shown) < 2:
            return None
        rng = np.random.default_rng([self.seed, j])
        silent = splits.build[~np.isin(splits.build, rows, assume_unique=True)]
        negatives = self._negatives(
            codes_csr, j, silent, shown[: self.n_examples], self.n_negatives * self.n_candidates, rng
        )
        prompts, shown_rows = [], []
        template = load_prompt("interpret")
        for c in range(self.n_candidates):
            pos = self._sample_positives(shown, c, rng)
            if self.sampling == "hard_negatives" and c == 0:
                neg = negatives[: self.n_negatives]
            else:
                neg = (
                    rng.choice(negatives, size=min(self.n_negatives, len(negatives)), replace=False)
                    if len(negatives)
                    else negatives
                )
            prompt = template.format(positives=self._listing(texts, pos), negatives=self._listing(texts, neg))
            prompts.append((prompt, 0.0 if c == 0 else self.temperature))
            shown_rows.extend([*pos, *neg])
        activation = codes_csc[:, j].toarray().ravel()
        val_rows, _ = balanced_sample(codes_csc, j, splits.validation, self.n_eval, seed=self.seed)
        test_rows, _ = balanced_sample(codes_csc, j, splits.test, self.n_test, seed=self.seed)
        return _Plan(
            latent=j,
            prompts=prompts,
            shown_rows=np.unique(np.asarray(shown_rows, dtype=np.int64)),
            val_rows=val_rows,
            val_acts=activation[val_rows],
            test_rows=test_rows,
            test_acts=activation[test_rows],
        )

    def _sample_positives(self, shown: np.ndarray, c: int, rng) -> np.ndarray:
        n = min(self.n_examples, len(shown))
        if self.sampling == "bins":
            bins = np.array_split(shown, n)
            return np.array([b[0] if c == 0 else rng.choice(b) for b in bins if len(b)])
        if c == 0:
            return shown[:n]
        pool = shown[: max(n, 3 * self.n_examples)]  # later candidates: other draws from the top region
        return pool[np.sort(rng.choice(len(pool), size=n, replace=False))]

    def _listing(self, texts, rows) -> str:
        if len(rows) == 0:
            return "(none)"
        return "\n".join(f"{i + 1}. {snippet(texts[r], self.max_chars)}" for i, r in enumerate(rows))

    # -- main -------------------------------------------------------------------------------------
    def interpret(
        self, texts: Sequence[str], codes, latents: Sequence[int], progress: Optional[ProgressFn] = None
    ) -> list[Interpretation]:
        """One :class:`Interpretation` per latent (order kept); never raises because of failed LLM calls."""
        from .fidelity import label_splits

        texts, codes_csc, latents = _check_inputs(texts, codes, latents)
        codes_csr = codes_csc.tocsr()
        splits = self.splits_ = label_splits(len(texts), self.seed)
        report(progress, 0, 1, "keywords")
        build = splits.build
        by_keywords = {
            it.latent: it for it in self.keywords.interpret([texts[i] for i in build], codes_csr[build], latents)
        }
        plans = {j: self._plan(texts, codes_csr, codes_csc, j, splits) for j in latents}
        self.plans_.update(plans)
        system = load_prompt("interpret_system").strip()
        calls = _Calls(self.client, progress, sum(self._calls_for(plan) for plan in plans.values() if plan))

        # 1. candidate labels (grouped by temperature: complete_many shares parameters)
        asked = [(j, c, p, t) for j, plan in plans.items() if plan for c, (p, t) in enumerate(plan.prompts)]
        labels: dict[tuple[int, int], Optional[str]] = {}
        for temp in sorted({t for *_, t in asked}):
            group = [(j, c, p) for j, c, p, t in asked if t == temp]
            answers = calls.ask("candidates", [p for *_, p in group], system=system, temperature=temp, max_tokens=60)
            for (j, c, _), answer in zip(group, answers):
                labels[(j, c)] = parse_label(answer)
        self.stats_["labels_asked"] += len(asked)
        self.stats_["labels_failed"] += sum(v is None for v in labels.values())

        # 2. every distinct candidate judged on the latent's validation sample
        candidates = {j: list(dict.fromkeys(l for (jj, _), l in labels.items() if jj == j and l)) for j in latents}
        checks = [(j, label, plans[j].val_rows) for j in latents for label in candidates[j]]
        calls.plan_rest(sum(len(rows) for *_, rows in checks) + self._test_calls(plans, candidates))
        val = self._judge(checks, texts, calls, "checking")
        # 3. one label per latent, no two alike where avoidable; the winner alone judged on the test sample
        winners = {j: self._winner(candidates[j], val, j, plans[j]) for j in latents if candidates[j]}
        chosen = assign_distinct({j: w["preferences"] for j, w in winners.items()})
        for j, w in winners.items():
            w["label"] = chosen[j]["label"]
            mark_held(w["scored"], chosen[j])
        scoring = [(j, winners[j]["label"], plans[j].test_rows) for j in winners if self.score_test]
        calls.plan_rest(sum(len(rows) for *_, rows in scoring))
        test = self._judge(scoring, texts, calls, "scoring")
        result = [self._result(j, plans[j], winners.get(j), test, candidates[j], by_keywords[j]) for j in latents]
        calls.finish()
        return result

    def planned_calls(self, n_latents: int) -> int:
        """About how many LLM calls naming ``n_latents`` latents makes (each candidate named and judged on the
        validation sample, the winner on the test sample), for a progress bar's weights."""
        test = self.n_test if self.score_test else 0
        return n_latents * (self.n_candidates * (1 + self.n_eval) + test)

    def _calls_for(self, plan: _Plan) -> int:
        """The calls one latent's plan makes at most: its naming prompts, each candidate's validation judgements,
        and the winner's test judgements."""
        test = len(plan.test_rows) if self.score_test else 0
        return len(plan.prompts) * (1 + len(plan.val_rows)) + test

    def _test_calls(self, plans: dict, candidates: dict) -> int:
        if not self.score_test:
            return 0
        return sum(len(plans[j].test_rows) for j, labels in candidates.items() if labels)

    def _judge(self, jobs, texts, calls: _Calls, what: str) -> dict[tuple[int, str], list[Optional[bool]]]:
        judge = load_prompt("judge")
        keys, prompts = [], []
        for j, label, rows in jobs:
            for row in rows:
                keys.append((j, label))
                prompts.append(judge.format(text=snippet(texts[row], 2000), label=label))
        answers = calls.ask(what, prompts, temperature=0.0, max_tokens=8)
        verdicts: dict[tuple[int, str], list[Optional[bool]]] = {}
        for key, answer in zip(keys, answers):
            verdicts.setdefault(key, []).append(parse_yes_no(answer))
        self.stats_["judgements_asked"] += len(prompts)
        self.stats_["judgements_failed"] += sum(v is None for vs in verdicts.values() for v in vs)
        return verdicts

    @staticmethod
    def _winner(candidates, val, j, plan) -> dict:
        """The candidates scored on validation, and the order the latent would take them: by F1, then by
        correlation, then as named (the first is the winner unless another latent holds it)."""
        scored = [{"label": label, **fidelity_scores(val.get((j, label), []), plan.val_acts)} for label in candidates]

        def fit(n: int) -> tuple:
            c = scored[n]
            return (
                -(c["f1"] if c["f1"] is not None else -1.0),
                -(c["correlation"] if c["correlation"] is not None else -1.0),
                n,
            )

        order = sorted(range(len(scored)), key=fit)
        return {
            "label": scored[order[0]]["label"],
            "scored": scored,
            "preferences": [(scored[n]["label"], scored[n]["f1"]) for n in order],
        }

    def _result(self, j, plan, winner, test, candidates, keyword_item: Interpretation) -> Interpretation:
        if winner is None:
            if plan is not None:
                log.warning("No usable LLM label for latent %d", j)
            if self.keyword_fallback or plan is None:
                self.stats_["keyword_fallbacks"] += 1
                method = "keywords (LLM failed)" if plan is not None else "keywords (too few activations for LLM)"
                return Interpretation(
                    latent=j,
                    label=keyword_item.label,
                    method=method,
                    keywords=keyword_item.keywords,
                    examples=keyword_item.examples,
                )
            return Interpretation(
                latent=j,
                label="(no label: LLM failed)",
                method=self.method + " (failed)",
                keywords=keyword_item.keywords,
                examples=keyword_item.examples,
            )
        label = winner["label"]
        fidelity = (
            {"judge": self.method, "label": label, **fidelity_scores(test.get((j, label), []), plan.test_acts)}
            if self.score_test
            else None
        )
        return Interpretation(
            latent=j,
            label=label,
            method=self.method,
            keywords=keyword_item.keywords,
            examples=keyword_item.examples,
            candidates=winner["scored"],
            fidelity=fidelity,
        )


class _Calls:
    """A client's LLM calls answered out of those planned, as one progress that each batch of calls moves as its
    answers come (``"120 of 1,860 LLM calls (checking)"``: naming candidates, checking them, scoring the winners).
    The plan is refined as the work goes (fewer distinct candidates, fewer winners), never below the calls made."""

    def __init__(self, client, progress: Optional[ProgressFn], planned: int):
        self.client, self.progress, self.planned, self.done = client, progress, planned, 0

    def ask(self, what: str, prompts: list[str], **params) -> list[Optional[str]]:
        """The client's answers to ``prompts`` (``complete_many``), reported as they come."""
        start, n = self.done, len(prompts)

        def step(done: int, total: int, message: str = "") -> None:
            self._say(start + (n * done // total if total > 0 else 0), what)

        self._say(start, what)
        answers = self.client.complete_many(prompts, progress=step if self.progress is not None else None, **params)
        self.done = start + n
        self._say(self.done, what)
        return answers

    def plan_rest(self, calls: int) -> None:
        """``calls`` are left to make."""
        self.planned = self.done + calls

    def finish(self) -> None:
        self.planned = self.done
        self._say(self.done, "done")

    def _say(self, done: int, what: str) -> None:
        total = max(self.planned, done, 1)
        report(self.progress, done, total, f"{done:,} of {max(self.planned, done):,} LLM calls ({what})")


def make_interpreter(kind: str, client: Optional[LLMClient] = None, embedding_model: Optional[str] = None, **kw):
    """``"phrases"`` (offline, judged with ``embedding_model``'s embedder), ``"keywords"`` (offline) or ``"llm"``
    (needs ``client`` or OPENAI_API_KEY). Without an embedder that can embed text, ``"phrases"`` gives keywords."""
    if kind == "phrases":
        from .labels import PhraseInterpreter, text_embedder

        embedder = kw.pop("embedder", None) or text_embedder(embedding_model)
        if embedder is None:
            log.info("Phrase labels need the embedder of the documents (%s); using keyword labels", embedding_model)
            return KeywordInterpreter(**kw)
        return PhraseInterpreter(embedder=embedder, **kw)
    if kind == "keywords":
        return KeywordInterpreter(**kw)
    if kind == "llm":
        if client is None:
            if not llm_configured():
                raise LLMError(
                    "LLM naming needs an API key: set OPENAI_API_KEY (and OPENAI_BASE_URL for a local "
                    "OpenAI-compatible server), or use the `interpreter` 'phrases' or 'keywords'"
                )
            client = LLMClient()
        return LLMInterpreter(client, **kw)
    raise DataError(f"Unknown interpreter {kind!r}: use 'phrases', 'keywords' or 'llm'")
