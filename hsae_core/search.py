"""Semantic search over document embeddings, steerable through the SAE's features.

Steering edits the query's sparse code z -> z', decodes it and adds back the query's own
reconstruction residual: steered = decode(z') + (x - decode(z)) = x + W_dec^T (z' - z).
In an SAE with levels each feature moves the query along its own decoder direction, as its own level's
reconstruction would move (the main level's features exactly as in the formula above).
With no edits (or edits equal to the current values) z' - z is exactly zero, so the steered vector
*is* the query vector and the ranking is exactly the unsteered one.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import scipy.sparse as sp

from . import settings, validate
from .csr_store import row_key
from .errors import DataError
from .progress import ProgressFn, report
from .sae import SparseAutoencoder

EXACT_LIMIT = settings.SCALE.exact_index_limit
NPROBE_STEPS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)


def _normalise(X: np.ndarray) -> np.ndarray:
    X = np.ascontiguousarray(X, dtype=np.float32)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.maximum(norms, 1e-12)


@dataclass
class IndexInfo:
    """A built FAISS index and what was measured while building it (stored in the workspace manifest)."""

    index: object
    kind: str  # "exact" or "ivf"
    nlist: int = 0
    nprobe: int = 0
    recall_at_10: Optional[float] = None  # of the approximate index against exact search, on held-out queries
    n_queries: int = 0
    train_rows: int = 0
    seconds: float = 0.0

    def manifest(self) -> dict:
        return {
            "kind": self.kind,
            "faiss": type(self.index).__name__,
            "nlist": self.nlist,
            "nprobe": self.nprobe,
            "recall_at_10": self.recall_at_10,
            "tuning_queries": self.n_queries,
            "train_rows": self.train_rows,
            "seconds": round(self.seconds, 2),
        }


def _add_in_chunks(index, X, chunk: int = 65_536, progress: Optional[ProgressFn] = None) -> None:
    """Normalise and add rows chunk by chunk: no full-size normalised copy (X may be a memory map)."""
    from .chunked import release

    for start in range(0, len(X), chunk):
        index.add(_normalise(X[start : start + chunk]))
        release(X)
        report(progress, min(start + chunk, len(X)), len(X), "adding vectors")


def build_search_index(
    embeddings: np.ndarray,
    exact_limit: int = EXACT_LIMIT,
    *,
    target_recall: float = settings.SCALE.target_recall,
    n_queries: int = 500,
    seed: int = 0,
    nlist: Optional[int] = None,
    progress: Optional[ProgressFn] = None,
) -> IndexInfo:
    """Cosine-similarity FAISS index: exact (IndexFlatIP) up to ``exact_limit`` documents, IVF-Flat beyond.

    The IVF index (``nlist`` ~ sqrt(N) lists, spherical k-means on a sample of 64 rows per list) gets the
    smallest ``nprobe`` whose recall@10 against exact search reaches ``target_recall`` on up to
    ``n_queries`` corpus rows held out of the k-means sample (each query's own row is not counted).
    """
    import faiss

    from .chunked import sample_matrix

    t0 = time.perf_counter()
    n, d = embeddings.shape
    if n <= exact_limit:
        index = faiss.IndexFlatIP(d)
        _add_in_chunks(index, embeddings, progress=progress)
        return IndexInfo(index, "exact", seconds=time.perf_counter() - t0)
    nlist = int(nlist or min(max(8, round(np.sqrt(n))), 65_536))
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    train_rows = np.sort(order[: min(n, 64 * nlist)])
    held_out = order[len(train_rows) :] if n > len(train_rows) else order
    queries = np.sort(held_out[: min(n_queries, max(1, n // 5))])
    report(progress, 0, 3, f"training {nlist} lists on {len(train_rows):,} rows")
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.spherical = True
    index.train(_normalise(sample_matrix(embeddings, train_rows)))
    report(progress, 1, 3, f"adding {n:,} vectors")
    _add_in_chunks(index, embeddings)
    report(progress, 2, 3, f"tuning nprobe on {len(queries)} held-out queries")
    q = _normalise(sample_matrix(embeddings, queries))
    truth = exact_neighbours(embeddings, q, 11)
    nprobe, recall = tune_nprobe(index, q, queries, target_recall, truth=truth)
    index.nprobe = nprobe
    report(progress, 3, 3, f"nprobe {nprobe}: recall@10 {recall:.3f}")
    return IndexInfo(
        index,
        "ivf",
        nlist=nlist,
        nprobe=nprobe,
        recall_at_10=round(recall, 4),
        n_queries=len(queries),
        train_rows=len(train_rows),
        seconds=time.perf_counter() - t0,
    )


def exact_neighbours(embeddings: np.ndarray, queries: np.ndarray, k: int, chunk: int = 65_536) -> np.ndarray:
    """(Q, k) ids of the exact cosine nearest rows of ``embeddings`` (may be a memory map) for unit ``queries``,
    one matrix product per chunk of rows (BLAS), merged into a running top-k."""
    from .chunked import release

    q = np.ascontiguousarray(queries, dtype=np.float32)
    best_s = np.full((len(q), k), -np.inf, dtype=np.float32)
    best_i = np.full((len(q), k), -1, dtype=np.int64)
    for start in range(0, len(embeddings), chunk):
        block = _normalise(embeddings[start : start + chunk])
        release(embeddings)
        s = q @ block.T
        kk = min(k, s.shape[1])
        top = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
        cand_s = np.concatenate([best_s, np.take_along_axis(s, top, axis=1)], axis=1)
        cand_i = np.concatenate([best_i, top + start], axis=1)
        order = np.argsort(-cand_s, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(cand_s, order, axis=1), np.take_along_axis(cand_i, order, axis=1)
    return best_i


def tune_nprobe(
    index,
    queries: np.ndarray,
    query_ids: np.ndarray,
    target_recall: float,
    k: int = 10,
    truth: Optional[np.ndarray] = None,
) -> tuple[int, float]:
    """The smallest nprobe (from :data:`NPROBE_STEPS`, then all lists) with recall@k >= target_recall.

    ``truth`` holds each query's exact k+1 nearest rows (:func:`exact_neighbours`); without it they come from
    the same IVF index probing every list. Each query's own row is dropped from both lists, so a query
    cannot score by finding itself.
    """
    nlist = int(index.nlist)
    if truth is None:
        index.nprobe = nlist
        _, truth = index.search(queries, k + 1)
    truth = [set(_drop_self(row, q, k)) for row, q in zip(truth, query_ids)]
    recall = 1.0
    for nprobe in [p for p in NPROBE_STEPS if p < nlist] + [nlist]:
        index.nprobe = nprobe
        _, found = index.search(queries, k + 1)
        recall = float(
            np.mean(
                [len(t & set(_drop_self(row, q, k))) / max(len(t), 1) for t, row, q in zip(truth, found, query_ids)]
            )
        )
        if recall >= target_recall:
            return nprobe, recall
    return nlist, recall


def _drop_self(ids: np.ndarray, own: int, k: int) -> list[int]:
    return [int(i) for i in ids if i >= 0 and i != own][:k]


def build_index(embeddings: np.ndarray, exact_limit: int = EXACT_LIMIT, **options):
    """The FAISS index of :func:`build_search_index` (exact up to ``exact_limit``, IVF-Flat with tuned nprobe beyond)."""
    return build_search_index(embeddings, exact_limit, **options).index


@dataclass
class SearchResult:
    """Ranked hits of the steered query next to the unsteered baseline."""

    ids: np.ndarray
    scores: np.ndarray
    baseline_ids: np.ndarray
    baseline_scores: np.ndarray
    query_latents: np.ndarray  # active latents of the (steered) query code, strongest first
    shared: list = field(default_factory=list)  # per hit: latents it shares with the query

    @property
    def entered(self) -> list[int]:
        base = set(self.baseline_ids.tolist())
        return [int(i) for i in self.ids if int(i) not in base]

    @property
    def left(self) -> list[int]:
        now = set(self.ids.tolist())
        return [int(i) for i in self.baseline_ids if int(i) not in now]

    @property
    def changed(self) -> bool:
        return not np.array_equal(self.ids, self.baseline_ids)


class SteeredSearch:
    """FAISS search over documents whose query can be steered feature by feature."""

    def __init__(
        self,
        embeddings: np.ndarray,
        sae: SparseAutoencoder,
        codes: sp.csr_matrix,
        index=None,
        exact_limit: int = EXACT_LIMIT,
        nprobe: Optional[int] = None,
    ):
        if sae.d_in != embeddings.shape[1]:
            raise DataError(f"SAE width {sae.d_in} does not match the {embeddings.shape[1]}-d embeddings")
        self.sae = sae
        self.codes = codes.tocsr()
        self.index = index if index is not None else build_index(embeddings, exact_limit)
        if nprobe and hasattr(self.index, "nprobe"):
            self.index.nprobe = int(nprobe)  # the value tuned at build time (kept in the workspace manifest)
        self.m = sae.config_.m
        self._W_dec = np.ascontiguousarray(sae.decoder_directions, dtype=np.float32)

    def code(self, vector: np.ndarray) -> np.ndarray:
        """Dense (m,) SAE code of one query vector."""
        x = np.array(vector, dtype=np.float32).reshape(1, -1)  # a writable copy (rows may come from a memmap)
        return np.asarray(self.sae.transform(x).toarray()[0], dtype=np.float32)

    def query_code(self, vector: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(latent ids, activations) of the query's active features, strongest first."""
        z = self.code(vector)
        ids = np.flatnonzero(z)
        order = np.argsort(-z[ids], kind="stable")
        return ids[order], z[ids[order]]

    def steer(
        self, vector: np.ndarray, edits: Optional[Mapping[int, float]] = None, z: Optional[np.ndarray] = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(steered vector, edited code z'). Any latent may be edited, to any value (negative too)."""
        x = np.asarray(vector, dtype=np.float32)
        z = self.code(x) if z is None else z
        z_new = z.copy()
        for latent, value in (edits or {}).items():
            latent = int(latent)
            if not 0 <= latent < self.m:
                raise DataError(f"Feature {latent} does not exist (this SAE has {self.m} features)")
            z_new[latent] = float(value)
        delta = z_new - z
        touched = np.flatnonzero(delta)
        if len(touched) == 0:
            return x.copy(), z_new
        return x + delta[touched] @ self._W_dec[touched], z_new

    def _knn(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        q = _normalise(vector.reshape(1, -1))
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)  # one query: threads cost more than they save
        try:
            scores, ids = self.index.search(q, k)
        finally:
            faiss.omp_set_num_threads(threads)
        keep = ids[0] >= 0
        return ids[0][keep].astype(np.int64), scores[0][keep]

    def _knn_without(self, vector: np.ndarray, k: int, skip: set) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest documents, none of ``skip``, each text once: documents coded exactly alike (the same
        text twice in the corpus) are one hit, the lowest doc id of them, and one coded like a skipped document
        is left out."""
        ids, scores = self._knn(vector, min(2 * k + len(skip), self.codes.shape[0]))
        skipped = {row_key(self.codes, d) for d in skip}
        hit_of: dict[tuple, int] = {}  # codes -> position in the hits
        hits, hit_scores = [], []
        for doc, score in zip(ids.tolist(), scores.tolist()):
            key = row_key(self.codes, doc)
            if not key[0]:
                key = (doc,)  # no active feature: nothing says it is another document's copy
            if doc in skip or key in skipped:
                continue
            if key in hit_of:  # a copy: the index may return it first among equal scores
                hits[hit_of[key]] = min(hits[hit_of[key]], doc)
            elif len(hits) < k:
                hit_of[key] = len(hits)
                hits.append(doc)
                hit_scores.append(score)
        return np.asarray(hits, dtype=np.int64), np.asarray(hit_scores, dtype=scores.dtype)

    def search(
        self, vector: np.ndarray, edits: Optional[Mapping[int, float]] = None, k: int = 20, exclude: Sequence[int] = ()
    ) -> SearchResult:
        """Top-k documents for the steered query, with the unsteered baseline and shared features per hit.

        ``exclude``: documents never returned (e.g. the query document itself in "more like this").
        """
        x = np.asarray(vector, dtype=np.float32).reshape(-1)
        if x.shape[0] != self._W_dec.shape[1]:
            raise DataError(f"Query vector has {x.shape[0]} dimensions, expected {self._W_dec.shape[1]}")
        if not np.isfinite(x).all():
            raise DataError("The query vector contains NaN or infinite values")
        skip = {int(d) for d in exclude}
        k = max(1, min(validate.positive_int("k", k), self.codes.shape[0] - len(skip)))  # k 0 gave one hit
        z = self.code(x)
        base_ids, base_scores = self._knn_without(x, k, skip)
        steered, z_new = self.steer(x, edits, z=z)
        if np.array_equal(steered, x):
            ids, scores = base_ids, base_scores
        else:
            ids, scores = self._knn_without(steered, k, skip)
        q_latents = np.flatnonzero(z_new > 0)
        q_latents = q_latents[np.argsort(-z_new[q_latents], kind="stable")]
        rows = self.codes[ids]
        shared = []
        for r in range(rows.shape[0]):
            cols = set(rows.indices[rows.indptr[r] : rows.indptr[r + 1]].tolist())
            shared.append([int(c) for c in q_latents if int(c) in cols])
        return SearchResult(
            ids=ids,
            scores=scores,
            baseline_ids=base_ids,
            baseline_scores=base_scores,
            query_latents=q_latents,
            shared=shared,
        )
