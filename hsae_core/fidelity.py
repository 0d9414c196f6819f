"""How far to trust a feature label, measured on documents the labeller never saw.

Every labeller is scored the same way. :func:`label_splits` cuts the corpus (and so every feature's
documents) into three fixed parts by a seeded permutation of the rows:

* ``build`` (60%): the only documents a labeller may read (top examples, contrastive counts);
* ``validation`` (20%): candidate labels compete here, and decision thresholds are chosen here;
* ``test`` (20%): the winning label's score is computed here and nowhere else looks at it.

Two judges turn a label into a score:

* :class:`EmbeddingJudge` (offline): how well cos(embed(label), embed(document)) predicts "the feature
  fires" (activation > 0): ROC AUC on the test part, and precision / recall / F1 on the test part at
  the threshold that maximised F1 on the validation part.
* :class:`LLMJudge`: an LLM says yes/no for "does this label fit this document?" on a balanced sample
  (half firing, half silent) of one part; precision = firing among the "yes" answers, recall = "yes"
  among the firing, F1 their harmonic mean. Failed or unparseable answers are counted, never scored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import numpy as np
import scipy.sparse as sp

from .errors import DataError
from .progress import ProgressFn, progress_span, report

SPLIT_FRACTIONS = (0.6, 0.2, 0.2)
PARTS = ("build", "validation", "test")


@dataclass(frozen=True)
class LabelSplits:
    """Row ids (sorted) of the build, validation and test parts of one corpus."""

    build: np.ndarray
    validation: np.ndarray
    test: np.ndarray

    def part(self, name: str) -> np.ndarray:
        if name not in PARTS:
            raise DataError(f"Unknown split part {name!r}: use one of {', '.join(PARTS)}")
        return getattr(self, name)

    def describe(self) -> str:
        return (
            f"build {len(self.build)} / validation {len(self.validation)} / test {len(self.test)} documents "
            "(labels read only the build part)"
        )


def label_splits(n_docs: int, seed: int = 0, fractions: Sequence[float] = SPLIT_FRACTIONS) -> LabelSplits:
    """Split ``n_docs`` rows into build / validation / test parts by a seeded permutation.

    Each part gets at least one row when ``n_docs >= 3``; the same ``(n_docs, seed)`` always gives
    the same parts, so a label set and its scores can be recomputed.
    """
    if len(fractions) != 3 or min(fractions) <= 0:
        raise DataError(f"`fractions` must be three positive shares (build, validation, test), got {fractions}")
    if n_docs < 3:
        raise DataError(f"Scoring labels needs at least 3 documents, got {n_docs}")
    shares = np.asarray(fractions, dtype=float) / float(np.sum(fractions))
    order = np.random.default_rng([int(seed), 7919]).permutation(n_docs)
    n_val = max(1, int(round(shares[1] * n_docs)))
    n_test = max(1, int(round(shares[2] * n_docs)))
    n_build = n_docs - n_val - n_test
    if n_build < 1:
        n_build, n_val = 1, n_docs - 1 - n_test
    build, val, test = order[:n_build], order[n_build : n_build + n_val], order[n_build + n_val :]
    return LabelSplits(np.sort(build), np.sort(val), np.sort(test))


def fires(codes, latent: int) -> np.ndarray:
    """Row ids where ``latent`` fires (activation > 0), sorted."""
    csc = codes if getattr(codes, "format", None) == "csc" else sp.csc_matrix(codes)
    lo, hi = csc.indptr[latent], csc.indptr[latent + 1]
    rows, vals = csc.indices[lo:hi], csc.data[lo:hi]
    return np.sort(rows[vals > 0]).astype(np.int64)


# ------------------------------------------------------------------------------------------------ metrics
def auc(pos_scores: np.ndarray, neg_scores: np.ndarray) -> Optional[float]:
    """ROC AUC: the chance that a random firing document scores above a random silent one (ties count half)."""
    if len(pos_scores) == 0 or len(neg_scores) == 0:
        return None
    neg = np.sort(np.asarray(neg_scores, dtype=np.float64))
    pos = np.asarray(pos_scores, dtype=np.float64)
    below = np.searchsorted(neg, pos, side="left")
    tied = np.searchsorted(neg, pos, side="right") - below
    return float(np.mean(below + 0.5 * tied) / len(neg))


def best_threshold(
    pos_scores: np.ndarray, neg_scores: np.ndarray, pos_weight: float = 1.0, neg_weight: float = 1.0
) -> Optional[float]:
    """The score threshold (predict "fires" when score >= threshold) with the highest F1.

    ``pos_weight``/``neg_weight`` scale sampled counts back to the whole part (see :class:`EmbeddingJudge`).
    """
    if len(pos_scores) == 0:
        return None
    scores = np.concatenate([pos_scores, neg_scores])
    is_pos = np.concatenate([np.ones(len(pos_scores), bool), np.zeros(len(neg_scores), bool)])
    order = np.argsort(-scores, kind="stable")
    scores, is_pos = scores[order], is_pos[order]
    tp = np.cumsum(is_pos) * pos_weight
    fp = np.cumsum(~is_pos) * neg_weight
    last_of_tie = np.r_[scores[1:] != scores[:-1], True]  # a threshold keeps every tied score together
    total_pos = len(pos_scores) * pos_weight
    f1 = np.where(last_of_tie, 2 * tp / (tp + fp + total_pos), -1.0)
    return float(scores[int(np.argmax(f1))])


def prf(
    pos_scores: np.ndarray,
    neg_scores: np.ndarray,
    threshold: Optional[float],
    pos_weight: float = 1.0,
    neg_weight: float = 1.0,
) -> dict:
    """Precision, recall and F1 of "score >= threshold" against "fires"."""
    if threshold is None or len(pos_scores) == 0:
        return {"precision": None, "recall": None, "f1": None}
    tp = float(np.sum(pos_scores >= threshold)) * pos_weight
    fp = float(np.sum(neg_scores >= threshold)) * neg_weight
    total = len(pos_scores) * pos_weight
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / total if total else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4)}


# ------------------------------------------------------------------------------------------ embedding judge
def _unit(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


class EmbeddingJudge:
    """Scores labels by how well their embedding's cosine with each document predicts that a feature fires.

    ``doc_embeddings`` must come from ``embedder`` (the judge compares label and document vectors).
    Parts bigger than ``max_docs`` are scored on a uniform sample of their silent documents and at most
    ``max_pos`` of each feature's firing ones; precision and F1 weight the sampled counts back to the
    whole part (AUC needs no weights: every firing and every silent document weighs the same).
    """

    def __init__(
        self,
        embedder,
        doc_embeddings: np.ndarray,
        codes,
        splits: LabelSplits,
        max_docs: int = 20_000,
        max_pos: int = 1_000,
        seed: int = 0,
    ):
        self.embedder = embedder
        self.E = doc_embeddings  # may be a memory map: rows are read on demand
        self.codes = sp.csc_matrix(codes)
        if self.codes.shape[0] != len(doc_embeddings):
            raise DataError(f"{len(doc_embeddings)} document embeddings but {self.codes.shape[0]} rows of SAE codes")
        self.splits = splits
        self.max_pos, self.seed = int(max_pos), int(seed)
        rng = np.random.default_rng([self.seed, 104729])
        self._sample = {}
        for name in PARTS:
            rows = splits.part(name)
            if len(rows) > max_docs:
                rows = np.sort(rng.choice(rows, size=max_docs, replace=False))
            self._sample[name] = rows
        self._vectors: dict[str, np.ndarray] = {}
        self._units: dict[str, np.ndarray] = {}
        self._member = {name: np.zeros(self.codes.shape[0], dtype=bool) for name in PARTS}
        for name in PARTS:
            self._member[name][splits.part(name)] = True

    @property
    def model_id(self) -> str:
        return str(getattr(self.embedder, "model_id", "embedding"))

    def embed_labels(self, labels: Sequence[str], progress: Optional[ProgressFn] = None) -> None:
        """Embed (and keep) every label not embedded yet, in one batch."""
        todo = list(dict.fromkeys(str(l) for l in labels if str(l) not in self._vectors))
        if not todo:
            return
        from .embed import embed_texts

        vecs = _unit(embed_texts(todo, self.embedder, progress=progress))  # the disk cache makes relabelling cheap
        if vecs.shape[1] != self.E.shape[1]:
            raise DataError(
                f"The label embedder gives {vecs.shape[1]}-d vectors but the documents are "
                f"{self.E.shape[1]}-d: the judge needs the embedder that made the document embeddings"
            )
        self._vectors.update(zip(todo, vecs))

    def _part_scores(self, latent: int, part: str, vectors: np.ndarray):
        """(positive scores, negative scores, pos weight, neg weight), each scores array (n, n_labels)."""
        fire_rows = fires(self.codes, latent)
        pos_all = fire_rows[self._member[part][fire_rows]]
        rng = np.random.default_rng([self.seed, int(latent), PARTS.index(part)])
        pos = pos_all if len(pos_all) <= self.max_pos else np.sort(rng.choice(pos_all, self.max_pos, replace=False))
        sample, unit = self._sample[part], self._unit_sample(part)
        silent = ~np.isin(sample, fire_rows, assume_unique=True)
        n_neg_all = len(self.splits.part(part)) - len(pos_all)
        pos_w = len(pos_all) / max(len(pos), 1)
        neg_w = n_neg_all / max(int(silent.sum()), 1)
        return _unit(self.E[pos]) @ vectors.T, unit[silent] @ vectors.T, pos_w, neg_w

    def _unit_sample(self, part: str) -> np.ndarray:
        """Unit-length embeddings of the part's sampled documents, computed once."""
        if part not in self._units:
            self._units[part] = _unit(self.E[self._sample[part]])
        return self._units[part]

    def auc_on(self, latent: int, labels: Sequence[str], part: str) -> list[Optional[float]]:
        """AUC of each label for ``latent`` on one part (labels must be embedded first, or are embedded now)."""
        self.embed_labels(labels)
        vectors = np.stack([self._vectors[str(l)] for l in labels])
        ps, ns, _, _ = self._part_scores(latent, part, vectors)
        return [_round(auc(ps[:, i], ns[:, i])) for i in range(len(labels))]

    def test_fidelity(self, latent: int, label: str, val_auc: Optional[float] = None) -> dict:
        """AUC on test, and precision/recall/F1 on test at the validation part's best-F1 threshold."""
        self.embed_labels([label])
        vec = self._vectors[str(label)][None, :]
        vp, vn, vpw, vnw = self._part_scores(latent, "validation", vec)
        threshold = best_threshold(vp[:, 0], vn[:, 0], vpw, vnw)
        tp, tn, tpw, tnw = self._part_scores(latent, "test", vec)
        out = {
            "judge": f"embedding:{self.model_id}",
            "auc": _round(auc(tp[:, 0], tn[:, 0])),
            **prf(tp[:, 0], tn[:, 0], threshold, tpw, tnw),
            "threshold": _round(threshold),
            "val_auc": val_auc if val_auc is not None else _round(auc(vp[:, 0], vn[:, 0])),
            "n_test": int(round(len(tp) * tpw + len(tn) * tnw)),
            "n_test_pos": int(round(len(tp) * tpw)),
        }
        return out

    def score_labels(self, labels: dict[int, str], progress: Optional[ProgressFn] = None) -> dict[int, dict]:
        """Test fidelity of one fixed label per latent (no competition: the threshold still comes from validation)."""
        # embedding the labels takes most of the time (11 s of 11.3 s for the Yelp demo's 222 features, cold cache)
        self.embed_labels(list(labels.values()), progress=progress_span(progress, 0.0, 0.95, "embedding the labels"))
        scoring = progress_span(progress, 0.95, 1.0)
        out = {}
        for i, (j, label) in enumerate(labels.items()):
            out[j] = self.test_fidelity(j, label)
            report(scoring, i + 1, len(labels), f"scoring {i + 1} of {len(labels)} labels")
        return out


def _round(value: Optional[float], digits: int = 4) -> Optional[float]:
    return None if value is None or not np.isfinite(value) else round(float(value), digits)


# ------------------------------------------------------------------------------------------------ LLM judge
def balanced_sample(
    codes, latent: int, rows: np.ndarray, n: int, seed: int = 0, exclude: Optional[np.ndarray] = None
) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``n`` rows of ``rows`` (minus ``exclude``), half where ``latent`` fires and half where it is silent.

    Returns (row ids, truth) with truth 1 for firing rows. When one side is short the other is not
    topped up, so the sample stays balanced.
    """
    rows = np.asarray(rows, dtype=np.int64)
    if exclude is not None and len(exclude):
        rows = rows[~np.isin(rows, exclude)]
    fire_rows = fires(codes, latent)
    is_pos = np.isin(rows, fire_rows, assume_unique=True)
    pos, neg = rows[is_pos], rows[~is_pos]
    half = min(n // 2, len(pos), len(neg))
    rng = np.random.default_rng([int(seed), int(latent), 31])
    pick_pos = np.sort(rng.choice(pos, half, replace=False)) if half else pos[:0]
    pick_neg = np.sort(rng.choice(neg, half, replace=False)) if half else neg[:0]
    return np.concatenate([pick_pos, pick_neg]), np.r_[np.ones(half, int), np.zeros(half, int)]


def llm_scores(said_yes: Sequence[Optional[bool]], truth: Sequence[int]) -> dict:
    """Precision / recall / F1 of yes-answers against the truth; unanswered items are counted in ``n_failed``."""
    pairs = [(bool(s), int(t)) for s, t in zip(said_yes, truth) if s is not None]
    n_failed = len(said_yes) - len(pairs)
    if not pairs:
        return {"precision": None, "recall": None, "f1": None, "n_scored": 0, "n_failed": n_failed}
    pred = np.array([p for p, _ in pairs], dtype=bool)
    true = np.array([t for _, t in pairs], dtype=bool)
    tp = float(np.sum(pred & true))
    precision = tp / float(pred.sum()) if pred.sum() else 0.0
    recall = tp / float(true.sum()) if true.sum() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "n_scored": len(pairs),
        "n_failed": n_failed,
    }


class LLMJudge:
    """Asks an LLM whether each label fits each document (``prompts/judge.txt``), many at once through the client."""

    def __init__(self, client, texts: Sequence[str], max_chars: int = 2000):
        from .llm import load_prompt

        self.client, self.texts, self.max_chars = client, texts, max_chars
        self.template = load_prompt("judge")
        self.asked = 0
        self.failed = 0

    def prompt(self, label: str, row: int) -> str:
        from .interpret import snippet

        return self.template.format(text=snippet(self.texts[int(row)], self.max_chars), label=label)

    def ask(self, pairs: Sequence[tuple[str, int]], progress: Optional[ProgressFn] = None) -> list[Optional[bool]]:
        """One yes/no/None per (label, row) pair."""
        from .llm import parse_yes_no

        prompts = [self.prompt(label, row) for label, row in pairs]
        answers = self.client.complete_many(prompts, temperature=0.0, max_tokens=8, progress=progress)
        verdicts = [parse_yes_no(a) for a in answers]
        self.asked += len(verdicts)
        self.failed += sum(v is None for v in verdicts)
        return verdicts

    def score(self, label: str, rows: np.ndarray, truth: np.ndarray) -> tuple[dict, list[Optional[bool]]]:
        """(precision/recall/F1 of ``label`` on these rows, the verdicts)."""
        verdicts = self.ask([(label, int(r)) for r in rows])
        return {"judge": f"llm:{getattr(self.client, 'model', 'llm')}", **llm_scores(verdicts, truth)}, verdicts
