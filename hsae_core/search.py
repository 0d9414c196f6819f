"""Semantic search over document embeddings, steerable through the SAE's features.

Steering edits the query's sparse code z -> z', decodes it and adds back the query's own
reconstruction residual: steered = decode(z') + (x - decode(z)) = x + W_dec^T (z' - z).
With no edits (or edits equal to the current values) z' - z is exactly zero, so the steered vector
*is* the query vector and the ranking is exactly the unsteered one.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import scipy.sparse as sp

from .errors import DataError
from .sae import SparseAutoencoder

EXACT_LIMIT = 100_000


def _normalise(X: np.ndarray) -> np.ndarray:
    X = np.ascontiguousarray(X, dtype=np.float32)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.maximum(norms, 1e-12)


def build_index(embeddings: np.ndarray, exact_limit: int = EXACT_LIMIT, hnsw_m: int = 32):
    """Cosine-similarity FAISS index: exact (IndexFlatIP) up to ``exact_limit`` documents, HNSW beyond."""
    import faiss

    X = _normalise(np.asarray(embeddings))
    d = X.shape[1]
    if len(X) <= exact_limit:
        index = faiss.IndexFlatIP(d)
    else:
        index = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.hnsw.efSearch = 128
    index.add(X)
    return index


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

    def __init__(self, embeddings: np.ndarray, sae: SparseAutoencoder, codes: sp.csr_matrix, index=None,
                 exact_limit: int = EXACT_LIMIT):
        if sae.d_in != embeddings.shape[1]:
            raise DataError(f"SAE width {sae.d_in} does not match the {embeddings.shape[1]}-d embeddings")
        self.sae = sae
        self.codes = codes.tocsr()
        self.index = index if index is not None else build_index(embeddings, exact_limit)
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

    def steer(self, vector: np.ndarray, edits: Optional[Mapping[int, float]] = None,
              z: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
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
        if not skip:
            return self._knn(vector, k)
        ids, scores = self._knn(vector, min(k + len(skip), self.codes.shape[0]))
        keep = np.array([int(i) not in skip for i in ids], dtype=bool)
        return ids[keep][:k], scores[keep][:k]

    def search(self, vector: np.ndarray, edits: Optional[Mapping[int, float]] = None, k: int = 20,
               exclude: Sequence[int] = ()) -> SearchResult:
        """Top-k documents for the steered query, with the unsteered baseline and shared features per hit.

        ``exclude``: documents never returned (e.g. the query document itself in "more like this").
        """
        x = np.asarray(vector, dtype=np.float32).reshape(-1)
        if x.shape[0] != self._W_dec.shape[1]:
            raise DataError(f"Query vector has {x.shape[0]} dimensions, expected {self._W_dec.shape[1]}")
        if not np.isfinite(x).all():
            raise DataError("The query vector contains NaN or infinite values")
        skip = {int(d) for d in exclude}
        k = max(1, min(int(k), self.codes.shape[0] - len(skip)))
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
            cols = set(rows.indices[rows.indptr[r]:rows.indptr[r + 1]].tolist())
            shared.append([int(c) for c in q_latents if int(c) in cols])
        return SearchResult(ids=ids, scores=scores, baseline_ids=base_ids, baseline_scores=base_scores,
                            query_latents=q_latents, shared=shared)
