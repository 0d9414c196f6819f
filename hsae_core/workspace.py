"""A workspace: one folder holding a corpus, its embeddings, an SAE, its codes, feature labels and
statistics, a FAISS index, a cached 2-D map and saved hypothesis runs.

``build_workspace`` builds it step by step (table -> embeddings -> SAE -> codes -> features -> index),
skipping every step whose inputs are unchanged. New outputs are written into a staging folder and
moved into place only when every step has succeeded, so a failed build leaves the previous workspace
intact; ``workspace.json`` (the manifest) is written last.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import scipy.sparse as sp

from . import settings
from .data import prepare_corpus, read_table, require_columns
from .errors import DataError, HsaeError, LLMError, ModelError
from .progress import ProgressFn, report
from .sae import SparseAutoencoder

MANIFEST = "workspace.json"
FILES = {
    "table": "corpus.parquet",
    "embeddings": "embeddings.npy",
    "sae": "sae",
    "codes": "codes.npz",
    "features": "features.parquet",
    "index": "index.faiss",
}
STEPS = tuple(FILES)
LAYOUT_FILE, LAYOUT_META = "umap.npy", "umap.json"
STORED_MODEL = "stored"
FEATURES_VERSION = 2


def _digest(*parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else str(part).encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()[:20]


def _frame_digest(frame: pd.DataFrame) -> str:
    try:
        row_hash = pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()
    except TypeError:  # unhashable cells (lists, dicts): hash their text form
        row_hash = pd.util.hash_pandas_object(frame.astype(str), index=False).to_numpy().tobytes()
    return _digest(list(map(str, frame.columns)), row_hash)


def _parquet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns with mixed Python objects become text so Parquet can store them."""
    out = frame.copy()
    out.columns = [str(c) for c in out.columns]
    for col in out.columns:
        if out[col].dtype == object:
            kinds = set(out[col].dropna().map(type))
            if len(kinds) > 1 or (kinds and not kinds <= {str, bytes, bool}):
                out[col] = out[col].map(lambda v: v if v is None or (isinstance(v, float) and np.isnan(v)) else str(v))
    return out


class Workspace:
    """An opened workspace folder; heavy parts load lazily on first access and are then kept."""

    def __init__(self, path: str | Path, manifest: dict):
        self.path = Path(path)
        self.manifest = manifest
        self._cache: dict[str, object] = {}

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: str | Path) -> Workspace:
        """Open a folder written by ``build_workspace``."""
        path = Path(path)
        man = path / MANIFEST
        if not man.is_file():
            raise DataError(f"{path} is not a workspace (no {MANIFEST}); build one with `hsae build` or the dashboard")
        try:
            manifest = json.loads(man.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"Corrupt workspace manifest {man}: {exc}") from None
        missing = [FILES[s] for s in STEPS if not (path / FILES[s]).exists()]
        if missing:
            raise DataError(f"Workspace {path} is incomplete (missing {', '.join(missing)}); build it again")
        return cls(path, manifest)

    @staticmethod
    def is_workspace(path: str | Path) -> bool:
        return (Path(path) / MANIFEST).is_file()

    def _lazy(self, key: str, load: Callable[[], object]):
        if key not in self._cache:
            self._cache[key] = load()
        return self._cache[key]

    # ------------------------------------------------------------------ contents
    @property
    def name(self) -> str:
        return self.manifest.get("name") or self.path.name

    @property
    def text_col(self) -> str:
        return self.manifest["text_col"]

    @property
    def embedding_model(self) -> str:
        return self.manifest.get("embedding_model", STORED_MODEL)

    @property
    def frame(self) -> pd.DataFrame:
        return self._lazy("frame", lambda: pd.read_parquet(self.path / FILES["table"]))

    @property
    def texts(self) -> list[str]:
        return self._lazy("texts", lambda: self.frame[self.text_col].astype(str).tolist())

    def __len__(self) -> int:
        return int(self.manifest.get("n_docs", len(self.frame)))

    @property
    def embeddings(self) -> np.ndarray:
        return self._lazy("embeddings", lambda: np.load(self.path / FILES["embeddings"], mmap_mode="r"))

    @property
    def sae(self) -> SparseAutoencoder:
        return self._lazy("sae", lambda: SparseAutoencoder.load(self.path / FILES["sae"]))

    @property
    def codes(self) -> sp.csr_matrix:
        return self._lazy("codes", lambda: sp.load_npz(self.path / FILES["codes"]).tocsr())

    @property
    def features(self) -> pd.DataFrame:
        """One row per latent: latent, label, keywords, label_method, density, n_active, mean/max activation."""
        return self._lazy("features", lambda: pd.read_parquet(self.path / FILES["features"]))

    @property
    def index(self):
        import faiss

        return self._lazy("index", lambda: faiss.read_index(str(self.path / FILES["index"])))

    @property
    def runs_dir(self) -> Path:
        return self.path / "runs"

    def list_runs(self) -> list[dict]:
        """Saved hypothesis runs, newest first: {'id', 'path', 'summary'}."""
        runs = []
        if self.runs_dir.is_dir():
            for folder in self.runs_dir.iterdir():
                summary_file = folder / "summary.json"
                if folder.is_dir() and summary_file.is_file():
                    try:
                        summary = json.loads(summary_file.read_text())
                    except (json.JSONDecodeError, UnicodeDecodeError):
                        continue
                    runs.append({"id": folder.name, "path": folder, "summary": summary,
                                 "mtime": summary_file.stat().st_mtime})
        return sorted(runs, key=lambda r: r["mtime"], reverse=True)

    def hypothesize(self, target_col: str, config=None, *, out_dir=None, **kwargs):
        """Hypotheses for ``target_col`` from this workspace's embeddings and its SAE, saved under ``runs/``.

        The run's latents are the workspace's latents (the ones the Features page shows). That SAE was
        trained without any target on every row of the workspace, holdout rows included: it never saw a
        target value, and latents are chosen, thresholded and named on the training rows only, so the
        holdout statistics stay a fair test of them. The run summary says so (``sae.origin``).
        ``kwargs`` go to :func:`hsae_core.pipeline.hypothesize` (``progress``, ``llm_client``, ...).
        """
        from .pipeline import hypothesize, write_run

        info = self.manifest.get("sae", {})
        if info.get("source", "trained") == "trained":
            origin = (f"this workspace's SAE (the latents of its Features page), trained without any target on all "
                      f"{len(self)} workspace rows, holdout rows included")
        else:
            origin = f"this workspace's pretrained SAE ({info.get('source')}; the latents of its Features page)"
        run = hypothesize(self.frame, text_col=self.text_col, target_col=target_col, config=config,
                          embeddings=self.embeddings, embedder=self.embedding_model, sae=self.sae,
                          sae_origin=origin, **kwargs)
        run.summary["sae"]["workspace"] = {"path": str(self.path), "sae_step": self.manifest.get("steps", {}).get("sae")}
        write_run(run, out_dir or self.new_run_dir(target_col))
        return run

    def new_run_dir(self, label: str = "run") -> Path:
        safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in label)[:40]
        return self.runs_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{safe}-{uuid.uuid4().hex[:4]}"

    # ------------------------------------------------------------------ queries
    def embedder(self):
        """The embedder that produced this workspace's embeddings, or an error saying why typed text cannot be used."""
        from .embed import get_embedder

        spec = self.manifest.get("embedder_spec")
        model = self.embedding_model
        if model == STORED_MODEL or (spec is None and model != "sentence-transformers/all-MiniLM-L6-v2"
                                      and not model.startswith("openai")):
            raise ModelError(
                f"This workspace uses stored embeddings ({model}); typed text cannot be embedded. "
                "Use 'more like this document' instead"
            )
        if model.startswith("openai") and not settings.openai_api_key():
            raise LLMError(f"Typed queries need OPENAI_API_KEY to embed text with {model}; "
                           "set it, or use 'more like this document'")
        return self._lazy("embedder", lambda: get_embedder(spec or model))

    def embed_query(self, text: str) -> np.ndarray:
        """One (d,) embedding for a typed text."""
        if not text or not text.strip():
            raise DataError("Type some text first (the query is empty)")
        vec = np.asarray(self.embedder().embed([text.strip()]), dtype=np.float32)[0]
        if vec.shape[0] != self.embeddings.shape[1]:
            raise ModelError(f"The embedder gives {vec.shape[0]}-d vectors but this workspace holds "
                             f"{self.embeddings.shape[1]}-d embeddings")
        return vec

    def layout(self, progress: Optional[ProgressFn] = None, seed: int = 0) -> np.ndarray:
        """2-D UMAP layout of the documents, computed once and cached in the workspace."""
        from .mapping import compute_layout

        key = self.manifest["steps"]["embeddings"]
        meta_path, arr_path = self.path / LAYOUT_META, self.path / LAYOUT_FILE
        if arr_path.is_file() and meta_path.is_file():
            try:
                if json.loads(meta_path.read_text()).get("key") == key:
                    return np.load(arr_path)
            except (json.JSONDecodeError, ValueError):
                pass
        coords = compute_layout(np.asarray(self.embeddings), seed=seed, progress=progress)
        tmp = self.path / f".tmp-{uuid.uuid4().hex}.npy"
        np.save(tmp, coords)
        os.replace(tmp, arr_path)
        meta_path.write_text(json.dumps({"key": key, "seed": seed}))
        return coords

    def overview(self) -> dict:
        """Numbers for the overview screen."""
        sae_info = self.manifest.get("sae", {})
        return {
            "name": self.name,
            "n_docs": len(self),
            "columns": list(self.frame.columns),
            "text_col": self.text_col,
            "embedding_model": self.embedding_model,
            "dim": int(self.embeddings.shape[1]),
            "m": int(sae_info.get("m", self.codes.shape[1])),
            "k": int(sae_info.get("k", 0)),
            "nmse": sae_info.get("nmse"),
            "dead_frac": float((self.features["n_active"] == 0).mean()),
            "source": sae_info.get("source", "trained"),
        }


# ---------------------------------------------------------------------- building
def build_workspace(out_dir, *, data_path=None, frame=None, text_col: str, m: int = settings.SAE.m,
                    k: int = settings.SAE.k, seed: int = settings.SAE.seed,
                    embedder_spec: str | None = None, embeddings: np.ndarray | None = None,
                    sae: SparseAutoencoder | None = None, progress: ProgressFn | None = None,
                    name: str | None = None) -> Workspace:
    """Build (or update) the workspace in ``out_dir``, reusing every step whose inputs are unchanged.

    Give the table as ``data_path`` (CSV/TSV/JSON/JSONL/Parquet) or ``frame``. ``embeddings`` (one row
    per table row) skips embedding; ``sae`` (pretrained) skips training. ``progress`` receives
    ``(done, total, message)`` for each step.
    """
    out = Path(out_dir)
    if (data_path is None) == (frame is None):
        raise DataError("Give exactly one of data_path or frame")
    df = read_table(data_path) if data_path is not None else frame
    if not isinstance(df, pd.DataFrame):
        raise DataError("frame must be a pandas DataFrame")
    if not text_col:
        raise DataError("Pick the text column (`text_col`)")
    require_columns(df, text_col)
    if df[text_col].map(lambda v: isinstance(v, str) and v.strip() != "").sum() == 0:
        raise DataError(f"Column '{text_col}' holds no text: every value is empty or not a string; pick the text column")
    corpus = prepare_corpus(df, text_col, min_rows=2)
    table = corpus.frame.copy()
    table[text_col] = corpus.texts

    old = _read_manifest(out)
    stage = out.parent / f".{out.name}.build-{uuid.uuid4().hex[:8]}"
    stage.mkdir(parents=True, exist_ok=False)
    steps = _StepRunner(out, stage, old, progress)
    try:
        manifest = _run_steps(steps, table, corpus, text_col, m, k, seed, embedder_spec, embeddings, sae, name or out.name)
        _commit(out, stage, steps.changed, manifest)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return Workspace.open(out)


def _read_manifest(out: Path) -> dict:
    try:
        return json.loads((out / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}


class _StepRunner:
    """Knows, per step, whether the existing output can be reused and where its current file lives."""

    def __init__(self, out: Path, stage: Path, old: dict, progress: Optional[ProgressFn]):
        self.out, self.stage, self.old, self.progress = out, stage, old, progress
        self.changed: list[str] = []
        self.keys: dict[str, str] = {}

    def reusable(self, step: str, key: str) -> bool:
        self.keys[step] = key
        ok = self.old.get("steps", {}).get(step) == key and (self.out / FILES[step]).exists()
        if ok:
            report(self.progress, 1, 1, f"{step}: reused")
        else:
            self.changed.append(step)
        return ok

    def path(self, step: str) -> Path:
        """Where the step's current output is: the staged new file, or the existing one."""
        return (self.stage if step in self.changed else self.out) / FILES[step]

    def sub(self, step: str) -> ProgressFn:
        return lambda done, total, msg="": report(self.progress, done, total, f"{step}: {msg}" if msg else step)


def _run_steps(steps: _StepRunner, table, corpus, text_col, m, k, seed, embedder_spec, embeddings, sae, name) -> dict:
    from .embed import embed_texts, get_embedder

    # 1. table
    table_key = _digest("table", text_col, _frame_digest(table))
    if not steps.reusable("table", table_key):
        report(steps.progress, 0, 1, "table: writing corpus.parquet")
        _parquet_safe(table).to_parquet(steps.path("table"), index=False)
        report(steps.progress, 1, 1, "table: written")

    # 2. embeddings
    if embeddings is not None:
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2 or embeddings.shape[0] != corpus.counts["read"]:
            raise DataError(f"Embeddings have shape {embeddings.shape}; expected one row per table row "
                            f"({corpus.counts.get('read')})")
        X_new = embeddings[corpus.row_ids]
        model_id = (sae.config_.embedding_model if sae is not None and sae.config_.embedding_model else STORED_MODEL)
        emb_key = _digest("emb", table_key, model_id, hashlib.sha256(X_new.tobytes()).hexdigest())
        embedder = None
    else:
        embedder = get_embedder(embedder_spec)
        model_id = embedder.model_id
        emb_key = _digest("emb", table_key, model_id)
    if not steps.reusable("embeddings", emb_key):
        if embeddings is None:
            X_new = embed_texts(corpus.texts, embedder, progress=steps.sub("embeddings"))
        np.save(steps.path("embeddings"), np.ascontiguousarray(X_new, dtype=np.float32))
    X = np.load(steps.path("embeddings"), mmap_mode="r")
    if not np.isfinite(np.asarray(X[: min(len(X), 1000)])).all():
        raise DataError("The embeddings contain NaN or infinite values")

    # 3. SAE
    if sae is not None:
        if sae.d_in != X.shape[1]:
            raise ModelError(f"The SAE expects {sae.d_in}-d inputs but the embeddings are {X.shape[1]}-d "
                             f"(SAE trained on {sae.config_.embedding_model or 'unknown embeddings'})")
        sae_key = _digest("sae-pretrained", emb_key, _sae_digest(sae))
        source = "pretrained"
    else:
        if m < 2 or k < 1 or k > m:
            raise DataError(f"Need m >= 2 and 1 <= k <= m, got m={m}, k={k}")
        sae_key = _digest("sae", emb_key, m, k, seed, *_training_settings())
        source = "trained"
    sae_info = dict(steps.old.get("sae", {})) if steps.old.get("steps", {}).get("sae") == sae_key else {}
    if not steps.reusable("sae", sae_key):
        if sae is None:
            report(steps.progress, 0, 1, f"sae: training m={m}, k={k}")
            sae = SparseAutoencoder(m=m, k=k, seed=seed, embedding_model=model_id).fit(np.array(X), progress=steps.sub("sae"))
        sae.save(steps.path("sae"))
        sae_info = {}
    if sae is None:
        sae = SparseAutoencoder.load(steps.path("sae"))

    # 4. codes
    codes_key = _digest("codes", sae_key)
    if not steps.reusable("codes", codes_key):
        codes = sae.transform(np.array(X), progress=steps.sub("codes"))
        sp.save_npz(steps.path("codes"), codes)
    codes = sp.load_npz(steps.path("codes")).tocsr()
    if not sae_info:
        sample = np.array(X[: min(len(X), 20_000)])
        sae_info = {"m": int(sae.config_.m), "k": int(sae.config_.k), "nmse": float(sae.score(sample)),
                    "source": source, "embedding_model": sae.config_.embedding_model, "metrics": sae.metrics_}

    # 5. features: labels + per-feature statistics
    feat_key = _digest("features", codes_key, FEATURES_VERSION)
    if not steps.reusable("features", feat_key):
        from .features import build_feature_table

        feats = build_feature_table(corpus.texts, codes, progress=steps.sub("features"))
        feats.to_parquet(steps.path("features"), index=False)

    # 6. FAISS index
    index_key = _digest("index", emb_key)
    if not steps.reusable("index", index_key):
        import faiss

        from .search import build_index

        report(steps.progress, 0, 1, "index: building FAISS index")
        faiss.write_index(build_index(np.asarray(X)), str(steps.path("index")))
        report(steps.progress, 1, 1, "index: built")

    return {
        "version": 1,
        "name": name,
        "text_col": text_col,
        "n_docs": int(len(corpus.texts)),
        "columns": [str(c) for c in table.columns],
        "counts": corpus.counts,
        "embedding_model": model_id,
        "embedder_spec": embedder_spec if embeddings is None else None,
        "sae": sae_info,
        "steps": dict(steps.keys),
        "built": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def _training_settings() -> tuple:
    """The SAE defaults besides m, k and seed: a workspace built under other defaults retrains its SAE."""
    d = settings.SAE
    return (d.batch_topk, str(d.matryoshka), d.max_epochs, d.batch_size, d.lr)


def _sae_digest(sae: SparseAutoencoder) -> str:
    w = sae.decoder_directions
    return _digest(sae.config_.m, sae.config_.k, hashlib.sha256(np.ascontiguousarray(w).tobytes()).hexdigest())


def _commit(out: Path, stage: Path, changed: list[str], manifest: dict) -> None:
    """Move the staged outputs into the workspace, then write the manifest (last, atomically)."""
    out.mkdir(parents=True, exist_ok=True)
    # Drop the manifest first: if we die mid-commit the folder reads as 'needs rebuilding', never as stale-but-valid.
    if changed:
        (out / MANIFEST).unlink(missing_ok=True)
    for step in changed:
        target = out / FILES[step]
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(stage / FILES[step], target)
    if "embeddings" in changed:
        (out / LAYOUT_META).unlink(missing_ok=True)
    tmp = out / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, default=str))
    os.replace(tmp, out / MANIFEST)


# ---------------------------------------------------------------------- discovery
def workspaces_dir() -> Path:
    """Where the dashboard keeps workspaces: $HSAE_WORKSPACES_DIR or ./workspaces."""
    return settings.workspaces_dir()


def list_workspaces(root: str | Path | None = None) -> list[Path]:
    """Workspace folders directly under ``root`` (sorted by name)."""
    root = Path(root) if root is not None else workspaces_dir()
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and Workspace.is_workspace(p))


DEMO_NAME = "yelp-demo"
DEMO_FILES = {"yelp-demo-val-2K.jsonl": "val", "yelp-demo-holdout-2K.jsonl": "holdout"}
DEMO_HELP = (
    "The demo needs the Yelp review files yelp-demo-val-2K.jsonl and yelp-demo-holdout-2K.jsonl from the "
    "HypotheSAEs repository (github.com/rmovva/HypotheSAEs, folder demo_data/). Download both into "
    "<HSAE_DATA_DIR>/yelp_reviews_demo/ (for example ../shared/data/yelp_reviews_demo/) and set HSAE_DATA_DIR "
    "to that data folder (`make dashboard` does this when ../shared/data exists)."
)


def demo_frame(data_dir: str | Path | None = None) -> pd.DataFrame:
    """The 4,000 Yelp demo reviews with stars/useful/funny/cool and a `split` column (val/holdout)."""
    data_dir = data_dir or settings.data_dir()
    if not data_dir:
        raise DataError("HSAE_DATA_DIR is not set. " + DEMO_HELP)
    folder = Path(data_dir) / "yelp_reviews_demo"
    parts = []
    for filename, split in DEMO_FILES.items():
        path = folder / filename
        if not path.is_file():
            raise DataError(f"Missing {path}. " + DEMO_HELP)
        part = read_table(path)
        require_columns(part, "text", "stars")
        keep = [c for c in ("text", "stars", "useful", "funny", "cool") if c in part.columns]
        part = part[keep].copy()
        part["split"] = split
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def build_demo_workspace(root: str | Path | None = None, progress: Optional[ProgressFn] = None,
                         data_dir: str | Path | None = None) -> Workspace:
    """Build (or reuse) the Yelp demo workspace under ``root``."""
    frame = demo_frame(data_dir)
    root = Path(root) if root is not None else workspaces_dir()
    return build_workspace(root / DEMO_NAME, frame=frame, text_col="text", progress=progress,
                           name="Yelp reviews (demo)")


def build_pretrained_workspace(out_dir, sae_spec: str, *, frame: pd.DataFrame, text_col: str | None = None,
                               embedding_col: str | None = None, embeddings: np.ndarray | None = None,
                               progress: Optional[ProgressFn] = None, name: str | None = None) -> Workspace:
    """Build a workspace from a pretrained SAE (``hub:`` spec, registry name or folder) and stored embeddings.

    The embeddings are ``embeddings`` (one row per table row) or read from ``embedding_col`` of ``frame``;
    blank column names are guessed (``abstract``/``text``..., ``embedding``/``embed``...). The SAE is loaded
    and checked against the embeddings' width before any building, so every mistake is one HsaeError line
    and an existing workspace in ``out_dir`` stays as it was.
    """
    from .corpora import EMBEDDING_COLUMN_GUESSES, TEXT_COLUMN_GUESSES, embeddings_from_column, guess_column
    from .hub import check_compatible, load_sae

    columns = ", ".join(map(str, frame.columns))
    text_col = text_col or guess_column(frame, TEXT_COLUMN_GUESSES)
    if not text_col:
        raise DataError(f"No text column found (columns: {columns}); pick the column holding the texts")
    require_columns(frame, text_col)
    if embeddings is None:
        embedding_col = embedding_col or guess_column(frame, EMBEDDING_COLUMN_GUESSES)
        if not embedding_col:
            raise DataError(f"No embedding column found (columns: {columns}); a pretrained SAE needs the texts' "
                            "stored embeddings from the model it was trained on: pick the column holding them")
        if embedding_col == text_col:
            raise DataError(f"'{text_col}' cannot be both the text column and the embedding column")
    sae = load_sae(sae_spec)
    if embeddings is None:
        embeddings = embeddings_from_column(frame, embedding_col)
        frame = frame.drop(columns=[embedding_col])
    check_compatible(sae, None, int(np.shape(embeddings)[1]))
    return build_workspace(out_dir, frame=frame, text_col=text_col, embeddings=embeddings, sae=sae,
                           progress=progress, name=name)


__all__ = ["Workspace", "build_workspace", "build_demo_workspace", "build_pretrained_workspace", "demo_frame", "list_workspaces",
           "workspaces_dir", "DEMO_HELP", "HsaeError"]
