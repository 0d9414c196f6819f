"""A workspace: one folder holding a corpus, its embeddings, an SAE, its codes, feature labels and
statistics, a FAISS index, a cached 2-D map and saved hypothesis runs.

``build_workspace`` builds it step by step (table -> embeddings -> SAE -> codes -> features -> index),
skipping every step whose inputs are unchanged and whose file still holds what was written (checked
against the manifest's checksum). New outputs are written into a staging folder and committed only when
every step has succeeded (see :mod:`snapshot`: versioned file names, ``workspace.json`` written last), so
a failed or killed build leaves the previous workspace intact and a reader never sees a half-replaced
file. One build at a time per folder (:mod:`locking`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np
import pandas as pd
import scipy.sparse as sp

from . import chunked, settings, snapshot, validate
from .csr_store import load_csr, save_csr
from .data import prepare_corpus, read_table, require_columns
from .errors import DataError, HsaeError, LLMError, ModelError, StorageError, WorkspaceChangedError, first_line
from .fsutil import (
    atomic_write,
    atomic_write_json,
    check_cache_dir,
    check_output_dir,
    describe_os_error,
    glob_escape,
    remove_stale,
)
from .locking import WorkspaceLock
from .progress import ProgressFn, report
from .sae_config import SAEConfig, config_of, read_config, read_decoder_directions

if TYPE_CHECKING:  # the estimator imports torch and scikit-learn: only the steps that encode load it
    from .sae import SparseAutoencoder

MANIFEST = "workspace.json"
FILES = {
    "table": "corpus.parquet",
    "embeddings": "embeddings.npy",
    "sae": "sae",
    "codes": "codes",  # a folder of CSR .npy arrays, opened memory-mapped (csr_store)
    "features": "features.parquet",
    "index": "index.faiss",
}
STEPS = tuple(FILES)
# Rough share of a fresh build's time per step: weights for one overall progress bar over the whole build
# (progress.StagedProgress). Measured with bench/first_start.py (the 4,000-review demo, empty caches, 2 cores, idle,
# 2026-11-24): embeddings 114-116 s, SAE 14 s, labels 16 s, codes 0.1 s. "labels" is the labelling inside the
# features step (its messages read "labels: ..."): with no weight of its own its time went to the step before, so
# `hsae demo` printed it as "codes" and the bar stood still while it ran.
BUILD_WEIGHTS = {
    "table": 1,
    "embeddings": 100,
    "sae": 12,
    "codes": 1,
    "labels": 14,
    "features": 2,
    "index": 1,
    "layout": 4,
}
LAYOUT_FILE, LAYOUT_META = "umap.npy", "umap.json"
STORED_MODEL = "stored"
RUN_ROWS = "workspace_rows.npy"
FEATURES_VERSION = 3  # 3: label sets (phrases, keywords) with held-out fidelity
LEGACY_CODES = "codes.npz"  # codes of workspaces built before the folder form; still opened


def _output(path: Path, manifest: dict, step: str) -> Path:
    """Where a step's output lives: the versioned name the manifest gives it, else (a workspace of an older
    version) its fixed name, where codes may still be a legacy ``codes.npz``."""
    target = path / snapshot.entry_name(manifest, step, FILES[step])
    if step == "codes" and not target.exists() and (path / LEGACY_CODES).is_file():
        return path / LEGACY_CODES
    return target


def load_codes(path: Path) -> sp.csr_matrix:
    """A code folder memory-mapped, or a legacy ``codes.npz`` read into memory."""
    return sp.load_npz(path).tocsr() if path.suffix == ".npz" else load_csr(path)


def _read_index(path: Path):
    import faiss

    # an IVF index's inverted lists stay on disk (a query reads only the nprobe lists it probes); a committed
    # file is never modified, so mapping it is safe. Flat indexes are read whole either way.
    return faiss.read_index(str(path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)


GOING_PREFIX = ".going-"  # runs/.going-<id>.json marks a run under way (list_runs skips dot-names)


def _process_alive(pid) -> bool:
    """Whether process ``pid`` exists on this machine (True where that cannot be told, so nothing is called dead)."""
    if os.name == "nt":  # os.kill there would end the process
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except (TypeError, ValueError, OverflowError, OSError):
        return False
    return True


def _remove_marker(marker: Optional[Path]) -> None:
    """Remove a run's going-marker; a runs/ folder gone or replaced meanwhile leaves the run's own error to say."""
    if marker is not None:
        try:
            marker.unlink(missing_ok=True)
        except OSError:
            pass


def _load_sae(path: Path) -> SparseAutoencoder:
    """The SAE folder as the estimator (importing torch on first use)."""
    from .sae import SparseAutoencoder

    return SparseAutoencoder.load(path)


# How each step's output is read: used by the Workspace's lazy properties and by the build's reuse check.
LOADERS: dict[str, Callable[[Path], object]] = {
    "table": lambda p: pd.read_parquet(p),
    "embeddings": lambda p: np.load(p, mmap_mode="r", allow_pickle=False),
    "sae": _load_sae,
    "codes": load_codes,
    "features": lambda p: pd.read_parquet(p),
    "index": _read_index,
}


def damaged(path: Path, reason: str) -> StorageError:
    """The one-line error for a damaged workspace file: which file, why, and the fix."""
    return StorageError(
        f"Workspace file {path} is damaged ({reason}); rebuild the workspace (`hsae build ... --out "
        f"{path.parent}` or the dashboard's build form): the build checks every file and replaces "
        f"the damaged ones"
    )


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

    def __init__(self, path: str | Path, manifest: Optional[dict] = None, stamp: Optional[tuple] = None):
        if manifest is None:  # Workspace("folder") opens it, checked, as Workspace.open does
            opened = type(self).open(path)
            manifest, stamp = opened.manifest, opened._stamp
        self.path = Path(path)
        self.manifest = manifest
        self._stamp = stamp
        self._cache: dict[str, object] = {}

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: str | Path) -> Workspace:
        """Open a folder written by ``build_workspace``: one consistent version of it (the manifest read
        now names every file this object will read). A damaged manifest or file is one StorageError line."""
        path = Path(path)
        man = path / MANIFEST
        if not path.is_dir():
            where = f" (from {Path.cwd()})" if not path.is_absolute() else ""
            raise DataError(f"No workspace folder {path}{where}; build one with `hsae build` or the dashboard")
        if not man.is_file():
            raise DataError(f"{path} is not a workspace (no {MANIFEST}); build one with `hsae build` or the dashboard")
        try:
            stamp = _manifest_stamp(path)
            manifest = json.loads(man.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise damaged(man, f"not valid JSON: {first_line(exc, 200)}") from None
        except OSError as exc:
            raise damaged(man, exc.strerror or type(exc).__name__) from None
        problem = _manifest_problem(manifest)
        if problem:
            raise damaged(man, problem)
        for step in STEPS:
            file = _output(path, manifest, step)
            reason = snapshot.check_entry(file, (manifest.get("files") or {}).get(step), deep=False)
            if reason == "it is missing":
                if _manifest_stamp(path) != stamp:
                    raise WorkspaceChangedError(
                        f"Workspace {path} was rebuilt while it was being opened; open it again"
                    )
                raise DataError(f"Workspace {path} is incomplete ({file.name} is missing); build it again")
            if reason:
                if _manifest_stamp(path) != stamp:
                    raise WorkspaceChangedError(
                        f"Workspace {path} was rebuilt while it was being opened; open it again"
                    )
                raise damaged(file, reason)
        return cls(path, manifest, stamp)

    @staticmethod
    def is_workspace(path: str | Path) -> bool:
        return (Path(path) / MANIFEST).is_file()

    def file(self, step: str) -> Path:
        """The file (or folder) holding ``step``'s output in the version of the workspace this object opened."""
        return _output(self.path, self.manifest, step)

    def _lazy(self, key: str, load: Callable[[], object]):
        if key not in self._cache:
            self._cache[key] = load()
        return self._cache[key]

    def _step(self, step: str):
        """A step's output, read once with its step loader; failures become one line naming the file."""

        def load():
            path = self.file(step)
            try:
                return LOADERS[step](path)
            except MemoryError:
                raise
            except Exception as exc:  # any reader error means the file cannot be used: say which and how to fix
                if _manifest_stamp(self.path) != self._stamp:  # rebuilt meanwhile: this version's files are gone
                    raise WorkspaceChangedError(
                        f"Workspace {self.path} was rebuilt while it was open; open it again"
                    ) from None
                reason = "it is missing" if isinstance(exc, FileNotFoundError) else first_line(exc, 200)
                raise damaged(path, reason) from None

        return self._lazy(step, load)

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
        return self._step("table")

    @property
    def texts(self) -> list[str]:
        return self._lazy("texts", lambda: self.frame[self.text_col].astype(str).tolist())

    def __len__(self) -> int:
        return int(self.manifest.get("n_docs", len(self.frame)))

    @property
    def embeddings(self) -> np.ndarray:
        return self._step("embeddings")

    @property
    def sae(self) -> SparseAutoencoder:
        """The SAE as an estimator that encodes (importing torch); the facts below need only its files."""
        return self._step("sae")

    @property
    def sae_config(self) -> SAEConfig:
        """The SAE's sizes and levels, from its config.json (without torch)."""

        def read() -> SAEConfig:
            if "sae" not in self._cache:
                try:
                    return config_of(read_config(self.file("sae")))
                except ModelError:
                    pass  # the estimator's loader below names the damaged file in one line
            return self.sae.config_

        return self._lazy("sae_config", read)

    @property
    def level_names(self) -> list[str]:
        """Each latent's level as 'latents/active' ('128/16' for every latent of a plain SAE)."""
        return self.sae_config.level_names

    @property
    def decoder_directions(self) -> np.ndarray:
        """(m, d) unit-norm direction of each latent, read from the weights file (without torch)."""

        def read() -> np.ndarray:
            if "sae" not in self._cache:
                try:
                    return read_decoder_directions(self.file("sae"), self.sae_config)
                except ModelError:
                    pass  # a dtype numpy lacks, or damage: the estimator reads it or names the fault
            return self.sae.decoder_directions

        return self._lazy("decoder_directions", read)

    @property
    def codes(self) -> sp.csr_matrix:
        return self._step("codes")

    @property
    def features(self) -> pd.DataFrame:
        """One row per latent: latent, label, keywords, label_method, density, n_active, mean/max activation."""
        return self._step("features")

    @property
    def index_info(self) -> dict:
        """How the search index was built: kind (exact/ivf), nlist, tuned nprobe and its measured recall@10."""
        return dict(self.manifest.get("index") or {"kind": "exact"})

    @property
    def index(self):
        index = self._step("index")
        if self.index_info.get("nprobe") and hasattr(index, "nprobe"):
            index.nprobe = int(self.index_info["nprobe"])  # tuned at build time for recall@10
        return index

    @property
    def runs_dir(self) -> Path:
        return self.path / "runs"

    def moved_runs_line(self) -> Optional[str]:
        """One line when the last build moved runs it made stale out of ``runs/`` (see :func:`_stale_runs`)."""
        moved = self.manifest.get("runs_moved")
        if not moved:
            return None
        count = int(moved["count"])
        return (
            f"{count} hypothesis run{'s' if count != 1 else ''} made before this build moved to "
            f"{self.path / moved['to']}: {moved['why']}."
        )

    def list_runs(self) -> list[dict]:
        """Saved hypothesis runs, newest first: {'id', 'path', 'summary'}."""
        runs = []
        if self.runs_dir.is_dir():
            for folder in self.runs_dir.iterdir():
                summary_file = folder / "summary.json"
                if folder.name.startswith("."):  # a run being written (or a dead writer's leftover)
                    continue
                if folder.is_dir() and summary_file.is_file():
                    try:
                        summary = json.loads(summary_file.read_text())
                    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
                        continue
                    if not isinstance(summary, dict):
                        continue
                    runs.append(
                        {"id": folder.name, "path": folder, "summary": summary, "mtime": summary_file.stat().st_mtime}
                    )
        return sorted(runs, key=lambda r: r["mtime"], reverse=True)

    def run_sample(self, limit: Optional[int] = None, seed: int = 0) -> Optional[np.ndarray]:
        """Rows a dashboard hypothesis run uses on a large workspace: a random ``limit`` (default
        ``settings.SCALE.run_rows``); None = every row."""
        return chunked.sample_rows(len(self), settings.SCALE.run_rows if limit is None else limit, seed)

    @staticmethod
    def save_run_rows(run_dir: str | Path, rows: Optional[np.ndarray]) -> None:
        """Remember which workspace rows a run used (its row ids are positions among them)."""
        if rows is not None:
            Path(run_dir).mkdir(parents=True, exist_ok=True)
            atomic_write(Path(run_dir) / RUN_ROWS, lambda fh: np.save(fh, np.asarray(rows, dtype=np.int64)))

    @staticmethod
    def run_rows(run_dir: str | Path) -> Optional[np.ndarray]:
        """The workspace rows a run used, or None when it used every row."""
        path = Path(run_dir) / RUN_ROWS
        return np.load(path, allow_pickle=False) if path.is_file() else None

    def hypothesize(
        self,
        target_col: str,
        config=None,
        *,
        own_features: bool = True,
        sample: Optional[np.ndarray] = None,
        out_dir=None,
        **kwargs,
    ):
        """Hypotheses for ``target_col`` from this workspace's embeddings, saved under ``runs/``.

        With ``own_features`` (the default) the run's latents are the workspace's latents, the ones the
        Features page shows. That SAE was trained without any target on every row of the workspace,
        holdout rows included: it never saw a target value, and latents are chosen, thresholded and named
        on the training rows only, so the holdout statistics stay a fair test of them. The run summary
        says so (``sae.origin``). Otherwise a new SAE is trained on the training rows only. ``sample``
        (workspace row positions, e.g. :meth:`run_sample`) limits the run to those rows. ``kwargs`` go to
        :func:`hsae_core.pipeline.hypothesize` (``progress``, ``llm_client``, ...).
        """
        from .pipeline import hypothesize, write_run

        origin = None
        if own_features:
            info = self.manifest.get("sae", {})
            if info.get("source", "trained") == "trained":
                origin = (
                    "this workspace's SAE (the latents of its Features page), trained without any target on "
                    f"all {len(self)} workspace rows, holdout rows included"
                )
            else:
                origin = f"this workspace's pretrained SAE ({info.get('source')}; the latents of its Features page)"
        frame, embeddings = self.frame, self.embeddings
        if sample is not None:
            frame, embeddings = frame.iloc[sample].reset_index(drop=True), np.asarray(embeddings[sample])
        going = self._mark_run_going(target_col)
        try:
            run = hypothesize(
                frame,
                text_col=self.text_col,
                target_col=target_col,
                config=config,
                embeddings=embeddings,
                embedder=self.embedding_model,
                sae=self.sae if own_features else None,
                sae_origin=origin,
                **kwargs,
            )
            out = out_dir or self.new_run_dir(target_col)
            if own_features:  # the run points at the workspace's SAE (load_run finds it by key) instead of a copy
                run.summary["features"] = {
                    "source": "workspace",
                    "sae_key": self.manifest.get("steps", {}).get("sae"),
                    "workspace": str(self.path.absolute()),
                }
                run.sae = None
            write_run(run, out)
            self.save_run_rows(out, sample)
        finally:
            _remove_marker(going)
        if own_features:
            run.sae = self.sae
        return run

    def _mark_run_going(self, target_col: str) -> Optional[Path]:
        """``runs/.going-<id>.json``: a run for ``target_col`` under way in this process, removed when it ends
        however it ends, left behind only when the process dies (see :meth:`interrupted_runs`). None when runs/
        cannot be written (the run itself says why when it saves)."""
        marker = self.runs_dir / f"{GOING_PREFIX}{uuid.uuid4().hex[:12]}.json"
        info = {"target": target_col, "started": time.strftime("%Y-%m-%d %H:%M"), "pid": os.getpid()}
        try:
            self.runs_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_json(marker, {**info, "host": socket.gethostname()})  # never read half-written
        except OSError:
            return None
        return marker

    def interrupted_runs(self) -> list[dict]:
        """Runs started on this workspace whose process died before they finished (a server restart, a kill),
        each returned once as ``{'target', 'started'}``: their markers are removed. A run still going on, in
        this process or another on this machine, is not one; nor is another machine's, which cannot be told."""
        found = []
        markers = sorted(self.runs_dir.glob(GOING_PREFIX + "*.json")) if self.runs_dir.is_dir() else []
        for marker in markers:
            try:
                info = json.loads(marker.read_text())
            except (OSError, ValueError):
                info = {}
            info = info if isinstance(info, dict) else {}
            if info.get("host", socket.gethostname()) != socket.gethostname() or _process_alive(info.get("pid")):
                continue
            try:
                marker.unlink()
            except OSError:  # another session said it first
                continue
            if info.get("target") is not None:  # an unreadable marker is removed without a word
                found.append({"target": info["target"], "started": info.get("started")})
        return found

    def new_run_dir(self, label: str = "run") -> Path:
        safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in label)[:40]
        return self.runs_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{safe}-{uuid.uuid4().hex[:4]}"

    # ------------------------------------------------------------------ queries
    def embedder(self):
        """The embedder that produced this workspace's embeddings, or an error saying why typed text cannot be used."""
        from .embed import get_embedder

        spec = self.manifest.get("embedder_spec")
        model = self.embedding_model
        if model == STORED_MODEL or (
            spec is None and model != "sentence-transformers/all-MiniLM-L6-v2" and not model.startswith("openai")
        ):
            raise ModelError(
                f"This workspace uses stored embeddings ({model}); typed text cannot be embedded. "
                "Use 'more like this document' instead"
            )
        if model.startswith("openai") and not settings.openai_api_key():
            raise LLMError(
                f"Typed queries need OPENAI_API_KEY to embed text with {model}; "
                "set it, or use 'more like this document'"
            )
        return self._lazy("embedder", lambda: get_embedder(spec or model))

    def embed_query(self, text: str) -> np.ndarray:
        """One (d,) embedding for a typed text."""
        if not text or not text.strip():
            raise DataError("Type some text first (the query is empty)")
        vec = np.asarray(self.embedder().embed([text.strip()]), dtype=np.float32)[0]
        if vec.shape[0] != self.embeddings.shape[1]:
            raise ModelError(
                f"The embedder gives {vec.shape[0]}-d vectors but this workspace holds "
                f"{self.embeddings.shape[1]}-d embeddings"
            )
        return vec

    def _stored_layout(self) -> Optional[np.ndarray]:
        """The map on disk when it belongs to these embeddings, else None (a damaged one counts as absent)."""
        meta_path, arr_path = self.path / LAYOUT_META, self.path / LAYOUT_FILE
        try:
            if json.loads(meta_path.read_text()).get("key") != self.manifest["steps"]["embeddings"]:
                return None
            coords = np.load(arr_path, allow_pickle=False)
        except (OSError, ValueError, AttributeError):
            return None
        return coords if coords.shape == (len(self), 2) else None

    @property
    def has_layout(self) -> bool:
        """Whether the 2-D map is on disk (built with the workspace, or computed once since)."""
        return "layout" in self._cache or (self.path / LAYOUT_META).is_file() and self._stored_layout() is not None

    @property
    def layout_info(self) -> dict:
        """How the stored map was made (method, documents UMAP was fitted on, seconds); {} if unknown."""
        try:
            meta = json.loads((self.path / LAYOUT_META).read_text())
        except (OSError, ValueError):
            return {}
        return {k: v for k, v in meta.items() if k not in ("key", "layout_key")} if isinstance(meta, dict) else {}

    def layout(self, progress: Optional[ProgressFn] = None, seed: int = 0) -> np.ndarray:
        """(N, 2) map of the documents: the one built with the workspace, else computed once and stored."""
        from .mapping import compute_layout

        def load():
            coords = self._stored_layout()
            if coords is not None:
                return coords
            coords, info = compute_layout(
                self.embeddings, seed=seed, fit_rows=settings.SCALE.map_fit_rows, progress=progress, with_info=True
            )
            atomic_write(self.path / LAYOUT_FILE, lambda fh: np.save(fh, coords))
            atomic_write_json(
                self.path / LAYOUT_META, {"key": self.manifest["steps"]["embeddings"], "seed": seed, **info}
            )
            return coords

        return self._lazy("layout", load)

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
            "levels": [list(pair) for pair in self.sae_config.levels],  # main level first; [] for one dictionary
            "nmse": sae_info.get("nmse"),
            "val_nmse": (sae_info.get("metrics") or {}).get("val_nmse"),
            "dead_frac": float((self.features["n_active"] == 0).mean()),
            "source": sae_info.get("source", "trained"),
        }


# ---------------------------------------------------------------------- building
def build_workspace(
    out_dir,
    *,
    data_path=None,
    frame=None,
    text_col: str,
    m: int = settings.SAE.m,
    k: int = settings.SAE.k,
    seed: int = settings.SAE.seed,
    levels=settings.SAE.levels,
    embedder_spec: str | None = None,
    embeddings: np.ndarray | None = None,
    sae: SparseAutoencoder | None = None,
    progress: ProgressFn | None = None,
    name: str | None = None,
    batch: bool = False,
    device: str = settings.DEVICE,
    codes: sp.spmatrix | None = None,
    sae_source: str = "pretrained",
    layout: bool = True,
    max_epochs: int | None = None,
) -> Workspace:
    """Build (or update) the workspace in ``out_dir``, reusing every step whose inputs are unchanged.

    Give the table as ``data_path`` (CSV/TSV/JSON/JSONL/Parquet) or ``frame``. ``embeddings`` (one row
    per table row) skips embedding; ``sae`` (pretrained) skips training. ``progress`` receives
    ``(done, total, message)`` for each step. ``batch=True`` embeds with an OpenAI embedder through the
    Batch API (half price, up to 24 h; rerunning resumes it). ``device`` ('auto'|'cpu'|'cuda') is where
    embedding, training and encoding run. ``codes`` (``sae``'s codes of the kept rows, computed elsewhere,
    e.g. by the Ray engine) skip encoding; ``sae_source`` says where a given ``sae`` came from. ``embeddings``
    may be a ``.npy`` path: it stays memory-mapped. ``max_epochs`` caps SAE training; ``layout`` also computes
    the Map's 2-D layout. ``levels`` are the trained SAE's further (latents, active) dictionaries beside
    (m, k) (see :mod:`sae`). Above the sizes of :data:`settings.SCALE` the SAE trains on a sample, labels read a
    sample and the index is IVF-Flat with ``nprobe`` tuned for recall@10 (every step reads the embeddings in
    chunks, so a million rows build in a few GiB).
    """
    out = Path(out_dir)
    if (data_path is None) == (frame is None):
        raise DataError("Give exactly one of data_path or frame")
    if sae is None:
        m, k = check_sae_shape(m, k)
        levels = validate.levels(levels)
    seed = validate.seed("seed", seed)
    check_workspace_folder(out)
    if embeddings is None:
        check_cache_dir(settings.cache_dir())
    df = read_table(data_path) if data_path is not None else frame
    if not isinstance(df, pd.DataFrame):
        raise DataError("frame must be a pandas DataFrame")
    if not text_col:
        raise DataError("Pick the text column (`text_col`)")
    require_columns(df, text_col)
    if df[text_col].map(lambda v: isinstance(v, str) and v.strip() != "").sum() == 0:
        raise DataError(
            f"Column '{text_col}' holds no text: every value is empty or not a string; pick the text column"
        )
    corpus = prepare_corpus(df, text_col, min_rows=2 if sae is not None else settings.MIN_SAE_ROWS)
    table = corpus.frame.copy()
    table[text_col] = corpus.texts

    with WorkspaceLock(out):
        old = _read_manifest(out)
        _remove_leftovers(out, old)
        stage = out.parent / f".{out.name}.build-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        stage.mkdir(parents=True, exist_ok=False)
        steps = _StepRunner(out, stage, old, progress)
        try:
            build = _Build(steps=steps, table=table, corpus=corpus, text_col=text_col, device=device)
            _table_step(build)
            _embeddings_step(build, embedder_spec, embeddings, sae, batch=batch)
            _sae_step(build, sae, m, k, seed, sae_source, max_epochs, levels)
            _codes_step(build, codes)
            _features_step(build)
            _index_step(build)
            if layout:
                _layout_step(build, seed)
            manifest = _manifest(build, name or out.name, embedder_spec, embeddings is None)
            stale, why = _stale_runs(out, steps)
            if stale:
                to = f"runs-before-{time.strftime('%Y%m%d-%H%M%S')}"
                manifest["runs_moved"] = {"count": len(stale), "to": to, "why": why}
            _commit(out, stage, steps, manifest)
            if stale:
                _move_runs(stale, out / manifest["runs_moved"]["to"])
        except OSError as exc:  # disk full, permissions, a file in the way: one line, and say nothing was lost
            raise StorageError(
                f"Building workspace {out} failed: {describe_os_error(exc)}; the previous workspace is unchanged"
            ) from None
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    return Workspace.open(out)


def check_sae_shape(m, k) -> tuple[int, int]:
    """`m` >= 2 latents and 1 <= `k` <= `m`, as whole numbers."""
    m = validate.positive_int("m", m, 2)
    k = validate.positive_int("k", k, 1)
    if k > m:
        raise DataError(f"`k` ({k}) cannot exceed `m` ({m})")
    return m, k


def looks_like_workspace(path: Path) -> bool:
    """A folder a build may update: a workspace, or what a crashed build of an older version left behind;
    never a hypothesis run (whose ``sae/`` would otherwise pass for a build's leftover)."""
    from .runstore import looks_like_run

    if Workspace.is_workspace(path):
        return True
    if looks_like_run(path):
        return False
    return any(snapshot.is_version_of(child.name, name) for child in path.iterdir() for name in FILES.values())


def check_workspace_folder(out: str | Path) -> Path:
    """Refuse, before any work, a workspace folder that cannot be written or would overwrite something else
    (a hypothesis run gets its own line: a build there would delete the run's SAE)."""
    from .runstore import looks_like_run

    path = Path(out).expanduser()
    if path.is_dir() and looks_like_run(path):  # never true of a workspace
        raise StorageError(
            f"The workspace folder {out} holds a hypothesis run (hsae hypothesize wrote it); a build there "
            "would replace the run's SAE: choose another folder"
        )
    return check_output_dir(path, "workspace folder", allow_nonempty=looks_like_workspace)


def _manifest_stamp(path: Path) -> Optional[tuple]:
    try:
        st = (path / MANIFEST).stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _manifest_problem(manifest) -> Optional[str]:
    """Why a parsed manifest cannot describe a workspace (None when it can)."""
    if not isinstance(manifest, dict):
        return f"expected a JSON object, got a {type(manifest).__name__}"
    if not isinstance(manifest.get("steps"), dict) or not isinstance(manifest.get("text_col"), str):
        return "the 'steps' or 'text_col' entry is missing"
    if manifest.get("files") is not None and not isinstance(manifest["files"], dict):
        return "the 'files' entry is not an object"
    return None


def _read_manifest(out: Path) -> dict:
    """The current manifest, or {} when there is none or it is damaged (then every step is rebuilt)."""
    try:
        manifest = json.loads((out / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return {} if _manifest_problem(manifest) else manifest


def _remove_leftovers(out: Path, manifest: dict) -> None:
    """Under the build lock: staging folders of dead builds, temporaries, and versions no manifest names
    (a build killed during its commit leaves those)."""
    for stale in out.parent.glob(f".{glob_escape(out.name)}.build-*"):
        shutil.rmtree(stale, ignore_errors=True)  # nobody else can be building: we hold the lock
    remove_stale(out, MANIFEST, patterns=(".tmp-*",))
    if manifest:
        snapshot.remove_unreferenced(out, manifest, FILES)


class _StepRunner:
    """Knows, per step, whether the existing output can be reused and where its current file lives."""

    def __init__(self, out: Path, stage: Path, old: dict, progress: Optional[ProgressFn]):
        self.out, self.stage, self.old, self.progress = out, stage, old, progress
        self.changed: list[str] = []
        self.keys: dict[str, str] = {}
        self.seconds: dict[str, float] = {}
        self._current, self._since = "prepare", time.perf_counter()

    def clock(self, step: str) -> None:
        """Close the running step's timer and start ``step``'s (wall seconds per step go into the manifest)."""
        now = time.perf_counter()
        self.seconds[self._current] = round(self.seconds.get(self._current, 0.0) + now - self._since, 2)
        self._current, self._since = step, now

    def finish(self) -> dict[str, float]:
        self.clock("done")
        return dict(self.seconds)

    def existing(self, step: str) -> Path:
        return self.out / snapshot.entry_name(self.old, step, FILES[step])

    def reusable(self, step: str, key: str) -> bool:
        """True when the step's inputs are unchanged and its file still holds what was built; a damaged
        file is reported and rebuilt."""
        self.clock(step)
        self.keys[step] = key
        ok = self.old.get("steps", {}).get(step) == key and self.existing(step).exists()
        if ok:
            problem = self._check(step)
            if problem:
                report(self.progress, 0, 1, f"{step}: {self.existing(step).name} {problem}; rebuilding it")
                ok = False
        if ok:
            report(self.progress, 1, 1, f"{step}: reused")
        else:
            self.changed.append(step)
        return ok

    def _check(self, step: str) -> Optional[str]:
        path, entry = self.existing(step), (self.old.get("files") or {}).get(step)
        if isinstance(entry, dict) and entry.get("sha256"):
            return snapshot.check_entry(path, entry, deep=True)
        try:  # a workspace of an older version has no checksums: the file must at least load
            LOADERS[step](path)
        except Exception as exc:
            return f"cannot be read ({first_line(exc, 200)})"
        return None

    def path(self, step: str) -> Path:
        """Where the step's current output is: the staged new file, or the existing one."""
        return self.stage / FILES[step] if step in self.changed else self.existing(step)

    def sub(self, step: str) -> ProgressFn:
        return lambda done, total, msg="": report(self.progress, done, total, f"{step}: {msg}" if msg else step)


@dataclass
class _Build:
    """What the build steps hand to each other: inputs, then each step's key and output."""

    steps: _StepRunner
    table: pd.DataFrame
    corpus: object
    text_col: str
    model_id: str = STORED_MODEL
    X: Optional[np.ndarray] = None
    sae: Optional[SparseAutoencoder] = None
    sae_info: dict = field(default_factory=dict)
    codes: Optional[sp.csr_matrix] = None
    device: str = settings.DEVICE
    text_embedder: object = None  # embeds labels like the documents were embedded (None: stored embeddings)
    index_info: dict = field(default_factory=dict)
    layout_info: dict = field(default_factory=dict)


def _table_step(b: _Build) -> None:
    """1. The prepared table as corpus.parquet."""
    if not b.steps.reusable("table", _digest("table", b.text_col, _frame_digest(b.table))):
        report(b.steps.progress, 0, 1, "table: writing corpus.parquet")
        _parquet_safe(b.table).to_parquet(b.steps.path("table"), index=False)
        report(b.steps.progress, 1, 1, "table: written")


def _embeddings_step(
    b: _Build,
    embedder_spec: Optional[str],
    embeddings: Optional[np.ndarray],
    sae: Optional[SparseAutoencoder],
    batch: bool = False,
) -> None:
    """2. Embeddings: the given stored ones (one row per table row, or per kept text as ``hsae embed`` writes
    them), or the texts embedded through the cache."""
    from .embed import embed_texts, get_embedder

    table_key = b.steps.keys["table"]
    if embeddings is not None:  # stored ones, maybe a memory map: hashed and copied chunk by chunk
        embeddings = chunked.load_embeddings(embeddings)
        read, kept = b.corpus.counts["read"], len(b.corpus)
        if embeddings.shape[0] not in (read, kept):
            raise DataError(
                f"Embeddings have shape {embeddings.shape}; expected one row per table row ({read:,})"
                + (f" or per non-empty text ({kept:,})" if kept != read else "")
            )
        rows = b.corpus.row_ids if embeddings.shape[0] == read else np.arange(kept)
        b.model_id = sae.config_.embedding_model if sae is not None and sae.config_.embedding_model else STORED_MODEL
        report(b.steps.progress, 0, 1, "embeddings: hashing the stored embeddings")
        key = _digest("emb", table_key, b.model_id, chunked.content_digest(embeddings, rows))
        embedder = None
    else:
        embedder = get_embedder(embedder_spec, batch=batch, device=b.device)
        b.model_id = embedder.model_id
        key = _digest("emb", table_key, b.model_id)
    if not b.steps.reusable("embeddings", key):
        if embedder is not None:
            X_new = embed_texts(b.corpus.texts, embedder, progress=b.steps.sub("embeddings"))
            np.save(b.steps.path("embeddings"), np.ascontiguousarray(X_new, dtype=np.float32))
        else:
            chunked.write_rows(embeddings, rows, b.steps.path("embeddings"), b.steps.sub("embeddings"))
    if embeddings is not None:
        chunked.release(embeddings)
    b.X = np.load(b.steps.path("embeddings"), mmap_mode="r")
    if embedder is not None:  # a Batch API embedder would take hours for a few labels: use the direct one
        from .labels import text_embedder

        b.text_embedder = text_embedder(b.model_id) if batch else embedder
    if not np.isfinite(np.asarray(b.X[: min(len(b.X), 1000)])).all():
        raise DataError("The embeddings contain NaN or infinite values")


def _sae_step(
    b: _Build,
    sae: Optional[SparseAutoencoder],
    m: int,
    k: int,
    seed: int,
    sae_source: str = "pretrained",
    max_epochs: Optional[int] = None,
    levels: tuple = (),
) -> None:
    """3. The SAE: a given pretrained one (width-checked), or one trained with the settings' defaults (on a
    random sample of rows, for a few epochs, above ``settings.SCALE.sae_fit_rows`` documents)."""
    emb_key = b.steps.keys["embeddings"]
    if sae is not None:
        if sae.d_in != b.X.shape[1]:
            raise ModelError(
                f"The SAE expects {sae.d_in}-d inputs but the embeddings are {b.X.shape[1]}-d "
                f"(SAE trained on {sae.config_.embedding_model or 'unknown embeddings'})"
            )
        key, source = _digest("sae-pretrained", emb_key, _sae_digest(sae)), sae_source
    else:
        validate.check_fits_memory(m + sum(s for s, _ in levels), int(b.X.shape[1]))
        fit_rows, fit_options = chunked.training_plan(len(b.X), seed)
        if max_epochs is not None:
            fit_options["max_epochs"] = min(int(max_epochs), fit_options.get("max_epochs", int(max_epochs)))
        # A corpus trained on every row with the defaults keeps its key; a sample, a cap or other defaults
        # (Matryoshka prefixes, epochs, batch, lr) is another SAE.
        key = _digest(
            "sae",
            emb_key,
            m,
            k,
            seed,
            *_training_settings(),
            *(() if fit_rows is None else (len(fit_rows),)),
            *(sorted(fit_options.items()) if fit_options else ()),
            *(("levels", settings.format_levels(levels, ",")) if levels else ()),
        )
        source = "trained"
    b.sae_info = dict(b.steps.old.get("sae", {})) if b.steps.old.get("steps", {}).get("sae") == key else {}
    if not b.steps.reusable("sae", key):
        if sae is None:
            where = "" if fit_rows is None else f" on a random {len(fit_rows):,} of {len(b.X):,} rows"
            where += f", <= {fit_options['max_epochs']} epochs" if "max_epochs" in fit_options else ""
            shape = f"m={m}, k={k}" + (f", levels {settings.format_levels(levels, ',')}" if levels else "")
            report(b.steps.progress, 0, 1, f"sae: training {shape}{where}")
            X_fit = np.array(b.X) if fit_rows is None else chunked.sample_matrix(b.X, fit_rows)
            from .sae import SparseAutoencoder

            sae = SparseAutoencoder(
                m=m, k=k, levels=levels, seed=seed, embedding_model=b.model_id, device=b.device, **fit_options
            ).fit(X_fit, progress=b.steps.sub("sae"))
            del X_fit
        sae.save(b.steps.path("sae"))
        b.sae_info = {}
    b.sae = sae if sae is not None else _load_sae(b.steps.path("sae"))
    b.sae_info = b.sae_info or {"source": source}


def _codes_step(b: _Build, codes: Optional[sp.spmatrix] = None) -> None:
    """4. Sparse codes of every document (CSR: given, or encoded here), and the SAE's reconstruction numbers
    for the Overview."""
    key = _digest("codes", b.steps.keys["sae"])
    if not b.steps.reusable("codes", key):
        if codes is None:
            codes = chunked.encode_in_chunks(b.sae, b.X, progress=b.steps.sub("codes"))
        elif codes.shape != (len(b.X), b.sae.config_.m):
            raise DataError(
                f"`codes` have shape {codes.shape}; expected {(len(b.X), b.sae.config_.m)} (kept rows x SAE latents)"
            )
        save_csr(b.steps.path("codes"), codes)
    b.codes = load_csr(b.steps.path("codes"))
    if set(b.sae_info) <= {"source"}:
        sample = np.array(b.X[: min(len(b.X), 20_000)])
        chunked.release(b.X)
        b.sae_info = {
            "m": int(b.sae.config_.m),
            "k": int(b.sae.config_.k),
            "nmse": float(b.sae.score(sample)),
            "source": b.sae_info.get("source", "trained"),
            "embedding_model": b.sae.config_.embedding_model,
            "metrics": b.sae.metrics_,
        }


def _features_step(b: _Build) -> None:
    """5. Labels and per-feature statistics; the label sets go to ``labels/`` (see :mod:`labelsets`)."""
    from .labelsets import build_label_sets, has_label_sets, write_label_set

    codes_key = b.steps.keys["codes"]
    sampled = len(b.corpus.texts) > 2 * settings.SCALE.label_sample_docs
    reusable = b.steps.reusable(
        "features",
        _digest(
            "features", codes_key, FEATURES_VERSION, *(("sample", settings.SCALE.label_sample_docs) if sampled else ())
        ),
    )
    if reusable and has_label_sets(b.steps.out, codes_key):
        return
    # the embedder that made the embeddings judges the labels; stored embeddings: keyword labels, unscored.
    # (Reusable features without label sets: a build killed between its manifest and its labels; redo them.)
    from .features import label_rows

    # a large corpus: the labellers read every feature's top documents plus a random sample
    rows = label_rows(b.codes, top_docs=50, sample_docs=settings.SCALE.label_sample_docs)
    texts = b.corpus.texts if rows is None else [b.corpus.texts[i] for i in rows]
    sets = build_label_sets(
        texts,
        b.codes if rows is None else b.codes[rows],
        embeddings=b.X if rows is None else chunked.sample_matrix(b.X, rows),
        embedder=b.text_embedder,
        progress=b.steps.sub("labels"),
    )
    if rows is not None:
        read = f" (labels read {len(rows):,} of {len(b.corpus.texts):,} documents)"
        for table in sets.values():
            table["label_method"] = table["label_method"].astype(str) + read
    if not reusable:
        from .features import build_feature_table

        feats = build_feature_table(
            b.corpus.texts, b.codes, progress=b.steps.sub("features"), labels=next(iter(sets.values()))
        )
        feats.to_parquet(b.steps.path("features"), index=False)
    for i, (name, table) in enumerate(sets.items()):
        write_label_set(b.steps.stage, name, table, codes_key=codes_key, show=i == 0, meta={"labeller": name})


def _index_step(b: _Build) -> None:
    """6. The FAISS index over the embeddings: exact up to ``settings.SCALE.exact_index_limit`` documents,
    IVF-Flat beyond, its ``nprobe`` tuned for recall@10 (kept in the manifest)."""
    exact = len(b.X) <= settings.SCALE.exact_index_limit
    key = _digest("index", b.steps.keys["embeddings"], *(() if exact else ("ivf", settings.SCALE.target_recall)))
    old = b.steps.old
    b.index_info = dict(old.get("index") or {}) if old.get("steps", {}).get("index") == key else {}
    if b.steps.reusable("index", key):
        b.index_info = b.index_info or {"kind": "exact"}  # a workspace of an older version: exact search
        return
    import faiss

    from .search import build_search_index

    report(b.steps.progress, 0, 1, "index: building FAISS index")
    built = build_search_index(
        b.X, settings.SCALE.exact_index_limit, target_recall=settings.SCALE.target_recall, progress=b.steps.sub("index")
    )
    faiss.write_index(built.index, str(b.steps.path("index")))
    b.index_info = built.manifest()
    report(b.steps.progress, 1, 1, "index: built")


def _layout_step(b: _Build, seed: int) -> None:
    """7. The Map's 2-D layout, so the page never waits for UMAP (reused while the embeddings are the same)."""
    from .mapping import LAYOUT_VERSION, compute_layout

    b.steps.clock("layout")
    if len(b.X) < 3:
        return
    fit_rows = settings.SCALE.map_fit_rows
    key = _digest(
        "layout", b.steps.keys["embeddings"], seed, LAYOUT_VERSION, *(() if len(b.X) <= fit_rows else (fit_rows,))
    )
    out = b.steps.out
    try:
        meta = json.loads((out / LAYOUT_META).read_text())
        reuse = meta.get("layout_key") == key and np.load(out / LAYOUT_FILE, mmap_mode="r").shape == (len(b.X), 2)
    except (OSError, ValueError, AttributeError):
        reuse = False
    if reuse:
        b.layout_info = {k: v for k, v in meta.items() if k not in ("key", "layout_key")}
        report(b.steps.progress, 1, 1, "layout: reused")
        return
    coords, b.layout_info = compute_layout(
        b.X, seed=seed, fit_rows=fit_rows, progress=b.steps.sub("layout"), with_info=True
    )
    np.save(b.steps.stage / LAYOUT_FILE, coords)
    meta = {"key": b.steps.keys["embeddings"], "layout_key": key, "seed": seed, **b.layout_info}
    (b.steps.stage / LAYOUT_META).write_text(json.dumps(meta))


def _manifest(b: _Build, name: str, embedder_spec: Optional[str], embedded_here: bool) -> dict:
    return {
        "version": snapshot.MANIFEST_VERSION,
        "name": name,
        "text_col": b.text_col,
        "n_docs": int(len(b.corpus.texts)),
        "columns": [str(c) for c in b.table.columns],
        "counts": b.corpus.counts,
        "embedding_model": b.model_id,
        "embedder_spec": embedder_spec if embedded_here else None,
        "sae": b.sae_info,
        "index": b.index_info,
        **({"layout": b.layout_info} if b.layout_info else {}),
        "steps": dict(b.steps.keys),
        "seconds": b.steps.finish(),
        "built": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def _stale_runs(out: Path, steps: _StepRunner) -> tuple[list[Path], str]:
    """The runs of an existing workspace that this build leaves pointing at what is gone, and why: every run when
    the table changes (a run's row numbers and evidence texts are positions in the table it was made on), and
    the runs that read the workspace's own features when its SAE changes (they keep no SAE of their own)."""
    table_changed, sae_changed = "table" in steps.changed, bool({"sae", "codes"} & set(steps.changed))
    if not steps.old or not (table_changed or sae_changed):
        return [], ""
    stale = [
        Path(run["path"])
        for run in Workspace(out, steps.old).list_runs()
        if table_changed or (run["summary"].get("features") or {}).get("source") == "workspace"
    ]
    why = (
        "they were made on the table this build replaced, and their row numbers point into it"
        if table_changed
        else "they read the features of the SAE this build replaced"
    )
    return stale, why


def _move_runs(folders: list[Path], to: Path) -> None:
    """Move run folders, whole, into ``to`` (nothing is deleted: a user can still open or copy them)."""
    to.mkdir(parents=True, exist_ok=True)
    for folder in folders:
        os.replace(folder, to / folder.name)


def _training_settings() -> tuple:
    """The SAE defaults besides m, k and seed: a workspace built under other defaults retrains its SAE."""
    d = settings.SAE
    return (d.batch_topk, str(d.matryoshka), d.max_epochs, d.batch_size, d.lr)


def _sae_digest(sae: SparseAutoencoder) -> str:
    w = sae.decoder_directions
    return _digest(sae.config_.m, sae.config_.k, hashlib.sha256(np.ascontiguousarray(w).tobytes()).hexdigest())


def _commit(out: Path, stage: Path, steps: _StepRunner, manifest: dict) -> None:
    """Move the staged outputs into the workspace under new version names, then write the manifest (last,
    atomically); a kill at any point leaves the previous version openable."""
    files = {}
    for step in STEPS:
        if step in steps.changed:
            continue
        entry = (steps.old.get("files") or {}).get(step)
        if not (isinstance(entry, dict) and entry.get("sha256")):  # an older workspace: record its checksum now
            entry = {"name": steps.existing(step).name, **snapshot.fingerprint(steps.existing(step))}
        files[step] = entry
    staged = {step: stage / FILES[step] for step in STEPS if step in steps.changed}
    snapshot.commit(out, staged, FILES, {**manifest, "files": files}, MANIFEST)
    if "embeddings" in steps.changed:
        (out / LAYOUT_META).unlink(missing_ok=True)
    if (stage / LAYOUT_FILE).is_file():  # the map built with this version: array first, its key (meta) last
        os.replace(stage / LAYOUT_FILE, out / LAYOUT_FILE)
        os.replace(stage / LAYOUT_META, out / LAYOUT_META)
    if "codes" in steps.changed:
        (out / LEGACY_CODES).unlink(missing_ok=True)  # migrated to a code folder
    if (stage / "labels").is_dir():  # label sets made in this build (labels/, see labelsets)
        from .labelsets import merge_label_folder

        merge_label_folder(stage, out, manifest.get("steps", {}).get("codes"))


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


def dashboard_command(workspace: Path) -> str:
    """A shell command that opens ``workspace`` in the dashboard from any folder: absolute paths, and this
    interpreter's streamlit (a virtual environment's is often not on PATH). Without the dashboard's files beside
    the package (a wheel install) it says to run it from a checkout."""
    import shlex
    import sys

    app = Path(__file__).resolve().parents[1] / "app.py"  # the dashboard lives in the checkout, not the wheel
    where = shlex.quote(str(Path(workspace).resolve()))
    if not app.is_file():
        return f"HSAE_WORKSPACE={where} streamlit run app.py (in a checkout of hsae, where app.py is)"
    return f"HSAE_WORKSPACE={where} {shlex.quote(sys.executable)} -m streamlit run {shlex.quote(str(app))}"


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


def build_demo_workspace(
    root: str | Path | None = None, progress: Optional[ProgressFn] = None, data_dir: str | Path | None = None
) -> Workspace:
    """Build (or reuse) the Yelp demo workspace under ``root``. Its map is left to the dashboard, which computes
    it in the background (the first start stays short: UMAP's first compilation alone takes tens of seconds)."""
    frame = demo_frame(data_dir)
    root = Path(root) if root is not None else workspaces_dir()
    return build_workspace(
        root / DEMO_NAME, frame=frame, text_col="text", progress=progress, name="Yelp reviews (demo)", layout=False
    )


def build_pretrained_workspace(
    out_dir,
    sae_spec: str,
    *,
    frame: pd.DataFrame,
    text_col: str | None = None,
    embedding_col: str | None = None,
    embeddings: np.ndarray | None = None,
    progress: Optional[ProgressFn] = None,
    name: str | None = None,
    device: str = settings.DEVICE,
    layout: bool = True,
) -> Workspace:
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
            raise DataError(
                f"No embedding column found (columns: {columns}); a pretrained SAE needs the texts' "
                "stored embeddings from the model it was trained on: pick the column holding them"
            )
        if embedding_col == text_col:
            raise DataError(f"'{text_col}' cannot be both the text column and the embedding column")
    sae = load_sae(sae_spec)
    sae.device = device
    if embeddings is None:
        embeddings = embeddings_from_column(frame, embedding_col)
        frame = frame.drop(columns=[embedding_col])
    check_compatible(sae, None, int(np.shape(embeddings)[1]))
    return build_workspace(
        out_dir,
        frame=frame,
        text_col=text_col,
        embeddings=embeddings,
        sae=sae,
        progress=progress,
        name=name,
        device=device,
        layout=layout,
    )


__all__ = [
    "Workspace",
    "build_workspace",
    "build_demo_workspace",
    "build_pretrained_workspace",
    "demo_frame",
    "list_workspaces",
    "workspaces_dir",
    "DEMO_HELP",
    "HsaeError",
]
