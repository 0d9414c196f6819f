"""Build a workspace on a Ray cluster (``hsae build --engine ray``): embedding and encoding run in Ray Data
``map_batches`` actors (one GPU each where the cluster has GPUs); everything after them (features, index,
manifest) is the ordinary ``build_workspace``.

The prepared table is written as Parquet shards of ``shard_rows`` rows into a work folder beside the
workspace (``.NAME.ray/``). Actors write their results there as parts named by the rows they cover:
``emb/shard-00003/part-<lo>-<hi>.npy`` and ``codes-<key>/shard-00003/part-<lo>-<hi>/{indptr,indices,data}.npy``,
each under a temporary name moved into place when complete. A shard is done when its parts exactly tile
its rows and open with the expected shapes; done shards are skipped, so a worker that dies mid-shard (Ray
restarts it and retries the batch) or a build that is killed loses nothing but the unfinished shards,
which are redone on the next run. On a multi-node cluster the work folder must be on storage every node
can reach (a shared disk, NFS), as for any local path given to Ray Data.

Ray is optional (``pip install -e .[ray]``) and imported only when this engine is used.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from . import settings, validate
from .errors import DataError, EngineError, ModelError
from .progress import ProgressFn, report

DEFAULT_SHARD_ROWS = settings.RAY.shard_rows
DEFAULT_TRAIN_ROWS = settings.RAY.train_rows  # the SAE is trained in the driver on at most this many rows
# Test hook: "STAGE:SHARD:MARKER[;...]" makes the first attempt at SHARD in STAGE (embed|encode) kill its
# worker process, leaving the file MARKER behind so that the retry goes through.
FAULT_ENV = "HSAE_RAY_FAULT"
_PART = re.compile(r"^part-(\d{12})-(\d{12})(\.npy)?$")


def require_ray():
    """The ``ray`` module, or a one-line EngineError saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401  (Ray without its data extra cannot run this engine)
    except ImportError:
        raise EngineError(
            "The Ray engine needs Ray Data: pip install -e .[ray]  (or: pip install 'ray[data]')"
        ) from None
    return ray


# ---------------------------------------------------------------------- shards and parts on disk
@dataclass(frozen=True)
class Shard:
    index: int
    lo: int  # first row (position in the prepared corpus)
    hi: int  # one past the last row

    @property
    def name(self) -> str:
        return f"shard-{self.index:05d}"


def plan_shards(n_rows: int, shard_rows: int) -> list[Shard]:
    if shard_rows < 1:
        raise DataError(f"shard_rows must be at least 1, got {shard_rows}")
    return [Shard(i, lo, min(lo + shard_rows, n_rows)) for i, lo in enumerate(range(0, n_rows, shard_rows))]


def part_name(lo: int, hi: int, suffix: str = "") -> str:
    return f"part-{lo:012d}-{hi:012d}{suffix}"


def contiguous_runs(shards: np.ndarray, rows: np.ndarray) -> list[tuple[int, int, int]]:
    """Split a batch into (shard, start, end) position ranges of consecutive rows within one shard."""
    if len(rows) == 0:
        return []
    breaks = np.flatnonzero((np.diff(rows) != 1) | (np.diff(shards) != 0)) + 1
    bounds = np.concatenate([[0], breaks, [len(rows)]])
    return [(int(shards[a]), int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def tile_parts(folder: Path, shard: Shard, valid: Callable[[Path, int], bool]) -> Optional[list[tuple[int, int, Path]]]:
    """The parts in ``folder`` that exactly cover the shard's rows in order, or None when rows are missing.

    ``valid(path, n_rows)`` checks a part's contents; parts that fail it count as missing.
    """
    if not folder.is_dir():
        return None if shard.hi > shard.lo else []
    parts: dict[int, list[tuple[int, Path]]] = {}
    for entry in folder.iterdir():
        match = _PART.match(entry.name)
        if match:
            lo, hi = int(match.group(1)), int(match.group(2))
            if shard.lo <= lo < hi <= shard.hi:
                parts.setdefault(lo, []).append((hi, entry))
    tiling, row = [], shard.lo
    while row < shard.hi:
        for hi, path in sorted(parts.get(row, []), reverse=True):
            if valid(path, hi - row):
                tiling.append((row, hi, path))
                row = hi
                break
        else:
            return None
    return tiling


def _atomic_dir(target: Path) -> Path:
    """A fresh temporary folder beside ``target``; fill it, then ``_publish`` it."""
    tmp = target.parent / f".tmp-{target.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    return tmp


def _publish(tmp: Path, target: Path) -> None:
    try:
        os.replace(tmp, target)
    except OSError:  # the same part was already published by an earlier attempt: keep that one
        shutil.rmtree(tmp, ignore_errors=True)
        if not target.exists():
            raise


def save_npy_atomic(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{path.name}-{uuid.uuid4().hex[:8]}"
    with open(tmp, "wb") as fh:
        np.save(fh, array)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def embedding_part_ok(dim: int) -> Callable[[Path, int], bool]:
    def ok(path: Path, n_rows: int) -> bool:
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError):
            return False
        return arr.dtype == np.float32 and arr.shape == (n_rows, dim)

    return ok


def code_part_ok(path: Path, n_rows: int) -> bool:
    try:
        indptr, indices, data = (
            np.load(path / f"{a}.npy", mmap_mode="r", allow_pickle=False) for a in ("indptr", "indices", "data")
        )
    except (OSError, ValueError):
        return False
    return indptr.shape == (n_rows + 1,) and int(indptr[0]) == 0 and len(indices) == len(data) == int(indptr[-1])


def write_code_part(folder: Path, lo: int, hi: int, codes) -> None:
    """One CSR row block as three .npy files, published atomically as the folder ``part-<lo>-<hi>``."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / part_name(lo, hi)
    tmp = _atomic_dir(target)
    np.save(tmp / "indptr.npy", np.asarray(codes.indptr, dtype=np.int64))
    np.save(tmp / "indices.npy", np.asarray(codes.indices, dtype=np.int32))
    np.save(tmp / "data.npy", np.asarray(codes.data, dtype=np.float32))
    _publish(tmp, target)


def _maybe_fail(stage: str, shards: np.ndarray) -> None:
    for spec in filter(None, os.environ.get(FAULT_ENV, "").split(";")):
        want_stage, want_shard, marker = spec.split(":", 2)
        if want_stage == stage and int(want_shard) in set(shards.tolist()) and not os.path.exists(marker):
            Path(marker).write_text(f"killed pid {os.getpid()} in {stage} of shard {want_shard}\n")
            os._exit(1)  # a worker dying mid-shard, as on a lost node or an out-of-memory kill


# ---------------------------------------------------------------------- the two map_batches stages
class EmbedBatches:
    """Ray Data actor: embeds a batch of texts and writes each shard's rows as an embedding part."""

    def __init__(self, embedder_spec: Optional[str], device: str, out_dir: str, cache_dir: Optional[str]):
        from .embed import get_embedder

        self.embedder = get_embedder(embedder_spec, device=device)
        self.out_dir, self.cache_dir = Path(out_dir), cache_dir

    def __call__(self, batch: dict) -> dict:
        from .embed import embed_texts

        shards, rows = np.asarray(batch["shard"]), np.asarray(batch["row"])
        _maybe_fail("embed", shards)
        X = embed_texts([str(t) for t in batch["text"]], self.embedder, cache_dir=self.cache_dir)
        for shard, a, b in contiguous_runs(shards, rows):
            path = self.out_dir / Shard(shard, 0, 0).name / part_name(int(rows[a]), int(rows[b - 1]) + 1, ".npy")
            save_npy_atomic(path, np.ascontiguousarray(X[a:b]))
        return {"row": rows}


class EncodeBatches:
    """Ray Data actor: encodes the shards a batch touches, each whole (its rows read from the embedding parts),
    and writes one CSR part per shard.

    Whole shards, not the batch's rows: Ray may hand a shard over in pieces (even a single row), and float32
    matrix products on tiny batches round differently; encoding each shard in one go keeps the codes equal
    to those of the single-process build.
    """

    def __init__(self, sae_config: dict, sae_weights, device: str, emb_dir: str, out_dir: str, dim: int):
        import ray
        from safetensors.torch import load as load_tensors

        from .sae import SparseAutoencoder

        if isinstance(sae_weights, ray.ObjectRef):
            sae_weights = ray.get(sae_weights)
        self.sae = SparseAutoencoder.from_tensors(sae_config, load_tensors(sae_weights), source="ray driver")
        self.sae.device = device
        self.emb_dir, self.out_dir, self.dim = Path(emb_dir), Path(out_dir), dim

    def __call__(self, batch: dict) -> dict:
        shards, rows = np.asarray(batch["shard"]), np.asarray(batch["row"])
        _maybe_fail("encode", shards)
        for index in np.unique(shards).tolist():
            name = Shard(index, 0, 0).name
            shard = _shard_bounds(self.emb_dir / name)
            if tile_parts(self.out_dir / name, shard, code_part_ok) is not None:
                continue  # encoded already, from another piece of this shard
            tiling = tile_parts(self.emb_dir / name, shard, embedding_part_ok(self.dim))
            if tiling is None:
                raise EngineError(f"Embeddings of {name} are incomplete; run the build again")
            codes = self.sae.transform(gather_rows(tiling, np.arange(shard.lo, shard.hi)))
            write_code_part(self.out_dir / name, shard.lo, shard.hi, codes)
        return {"row": rows}


def _shard_bounds(folder: Path) -> Shard:
    """A shard's row range, from the bounds file the driver writes beside its parts."""
    bounds = json.loads((folder / "bounds.json").read_text())
    return Shard(int(bounds["index"]), int(bounds["lo"]), int(bounds["hi"]))


def gather_rows(tiling: Sequence[tuple[int, int, Path]], rows: np.ndarray) -> np.ndarray:
    """Rows (sorted global positions) read from embedding parts, each opened memory-mapped."""
    out, pos = [], 0
    for lo, hi, path in tiling:
        take = rows[(rows >= lo) & (rows < hi)]
        if len(take):
            out.append(np.asarray(np.load(path, mmap_mode="r")[take - lo]))
            pos += len(take)
    if pos != len(rows):
        raise EngineError("Embedding parts do not cover the requested rows")
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


# ---------------------------------------------------------------------- driver
@dataclass
class RayOutputs:
    """What the Ray stages left on disk, and which shards each stage ran (the rest were already done)."""

    work: Path
    shards: list[Shard]
    embeddings: list  # per shard: tiling of embedding parts
    codes: list  # per shard: tiling of code parts
    dim: int
    sae: object
    sae_source: str
    model_id: Optional[str]
    ran: dict = field(default_factory=dict)  # stage -> shard indices processed in this run


def _digest(*parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else str(part).encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()[:16]


def _texts_digest(texts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()[:16]


def _connect(ray, address: Optional[str]) -> bool:
    """Join ``address`` (or RAY_ADDRESS, or start a local Ray); True when this call started Ray."""
    if ray.is_initialized():
        return False
    try:
        ray.init(address=address, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    except Exception as exc:  # ConnectionError, RuntimeError, ValueError... the user needs one line
        where = address or os.environ.get("RAY_ADDRESS") or "a local Ray"
        raise EngineError(f"Could not start or reach {where}: {str(exc).strip().splitlines()[0]}") from None
    return True


def _quiet_ray_data() -> None:
    import logging

    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # hsae reports its own progress
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "progress bars disabled"


def _actor_resources(ray, device: str) -> tuple[str, float, int]:
    """(device for the actors, GPUs per actor, actor count) for this cluster."""
    from .settings import DEVICES

    spec = (device or settings.DEVICE).lower()
    if spec not in DEVICES:
        raise ModelError(f"`device` must be one of {', '.join(DEVICES)} for the Ray engine, got '{device}'")
    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
    if spec == "cuda" and gpus == 0:
        raise ModelError("`device` is 'cuda' but the Ray cluster has no GPUs; use auto or cpu")
    if gpus and spec != "cpu":
        return "cuda", 1.0, gpus
    return "cpu", 0.0, max(1, cpus - 1)  # one CPU left for reading shards


def _write_text_shards(folder: Path, texts: Sequence[str], shards: list[Shard]) -> list[Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for shard in shards:
        path = folder / f"{shard.name}.parquet"
        try:
            ok = pq.read_metadata(path).num_rows == shard.hi - shard.lo
        except (OSError, pa.ArrowInvalid):
            ok = False
        if not ok:
            table = pa.table(
                {
                    "shard": pa.array(np.full(shard.hi - shard.lo, shard.index, np.int32)),
                    "row": pa.array(np.arange(shard.lo, shard.hi, dtype=np.int64)),
                    "text": pa.array(list(texts[shard.lo : shard.hi]), type=pa.string()),
                }
            )
            tmp = folder / f".tmp-{path.name}-{uuid.uuid4().hex[:8]}"
            pq.write_table(table, tmp)
            os.replace(tmp, path)
        paths.append(path)
    return paths


def _prepare_part_folders(root: Path, shards: list[Shard]) -> None:
    for shard in shards:
        folder = root / shard.name
        folder.mkdir(parents=True, exist_ok=True)
        bounds = folder / "bounds.json"
        if not bounds.is_file():
            bounds.write_text(json.dumps({"index": shard.index, "lo": shard.lo, "hi": shard.hi}))


def _todo(root: Path, shards: list[Shard], valid) -> tuple[list, list[Shard]]:
    """Per shard its tiling (or None), and the shards to (re)do, whose stale parts are removed first."""
    tilings, todo = [], []
    for shard in shards:
        tiling = tile_parts(root / shard.name, shard, valid)
        tilings.append(tiling)
        if tiling is None:
            todo.append(shard)
            _remove_parts(root / shard.name)
    return tilings, todo


def _remove_parts(folder: Path) -> None:
    for entry in folder.iterdir():
        if entry.name.startswith(("part-", ".tmp-")):
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def _run_stage(
    ray,
    text_paths: list[Path],
    todo: list[Shard],
    udf,
    constructor_kwargs: dict,
    columns: list[str],
    num_gpus: float,
    actors: int,
    progress: Optional[ProgressFn],
    label: str,
) -> None:
    if not todo:
        return
    paths = [str(text_paths[s.index]) for s in todo]
    ds = ray.data.read_parquet(paths, override_num_blocks=len(paths)).select_columns(columns)
    ds = ds.map_batches(
        udf,
        fn_constructor_kwargs=constructor_kwargs,
        batch_size=None,
        batch_format="numpy",
        num_gpus=num_gpus or None,
        num_cpus=1 if not num_gpus else None,
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=max(1, min(actors, len(todo)))),
    )
    total, done = sum(s.hi - s.lo for s in todo), 0
    report(progress, 0, total, label)
    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            done += len(batch["row"])
            report(progress, done, total, label)
    except ray.exceptions.RayError as exc:
        raise EngineError(
            f"Ray {label} failed; finished shards are kept, run the build again to redo the rest: "
            f"{str(exc).strip().splitlines()[0]}"
        ) from None


def run_ray_stages(
    work: str | Path,
    texts: Sequence[str],
    *,
    m: int = settings.SAE.m,
    k: int = settings.SAE.k,
    seed: int = settings.SAE.seed,
    levels=settings.SAE.levels,
    embedder_spec: Optional[str] = None,
    embeddings: Optional[np.ndarray] = None,
    sae=None,
    device: str = settings.DEVICE,
    shard_rows: int = DEFAULT_SHARD_ROWS,
    train_rows: int = DEFAULT_TRAIN_ROWS,
    progress: Optional[ProgressFn] = None,
) -> RayOutputs:
    """Embed (unless ``embeddings``, one row per text, are given) and encode ``texts`` on the connected Ray
    cluster, leaving per-shard parts in ``work``; shards already done there are skipped.

    The SAE is ``sae`` or one trained in the driver (m, k, levels, seed) on up to ``train_rows`` sampled rows.
    """
    ray = require_ray()
    _quiet_ray_data()
    work = Path(work)
    shards = plan_shards(len(texts), shard_rows)
    actor_device, num_gpus, actors = _actor_resources(ray, device)
    table_dir = work / f"table-{_digest(_texts_digest(texts), shard_rows)}"
    text_paths = _write_text_shards(table_dir / "text", texts, shards)
    ran: dict[str, list[int]] = {}

    # 1. embeddings
    if embeddings is not None:
        embeddings = np.asarray(embeddings)
        if embeddings.ndim != 2 or len(embeddings) != len(texts):
            raise DataError(f"embeddings have shape {embeddings.shape}; expected one row per text ({len(texts)})")
        dim, model_id = int(embeddings.shape[1]), None
        stored = hashlib.sha256(np.ascontiguousarray(embeddings).reshape(-1).view(np.uint8)).hexdigest()
        emb_dir = table_dir / f"emb-stored-{stored[:16]}"
    else:
        from .embed import get_embedder

        embedder = get_embedder(embedder_spec, device="cpu")  # in the driver only for its id and width
        dim, model_id = int(embedder.dim), embedder.model_id
        local_model = hasattr(embedder, "cache_id")  # sentence-transformers: fp16 padded on GPUs, unpadded on CPUs
        precision = ("fp16" if actor_device == "cuda" else "fp32-unpadded") if local_model else "fp32"
        emb_dir = table_dir / f"emb-{_digest(model_id, precision)}"
    _prepare_part_folders(emb_dir, shards)
    emb_tilings, todo = _todo(emb_dir, shards, embedding_part_ok(dim))
    if todo and embeddings is not None:
        for shard in todo:  # stored vectors need no workers: copied into parts here
            save_npy_atomic(
                emb_dir / shard.name / part_name(shard.lo, shard.hi, ".npy"),
                np.ascontiguousarray(embeddings[shard.lo : shard.hi], dtype=np.float32),
            )
    elif todo:
        cache_dir = os.environ.get("HSAE_CACHE_DIR")
        _run_stage(
            ray,
            text_paths,
            todo,
            EmbedBatches,
            {"embedder_spec": embedder_spec, "device": actor_device, "out_dir": str(emb_dir), "cache_dir": cache_dir},
            ["shard", "row", "text"],
            num_gpus,
            actors,
            progress,
            "embedding",
        )
    ran["embed"] = [s.index for s in todo]
    emb_tilings = _require_complete(emb_dir, shards, embedding_part_ok(dim), "embeddings")

    # 2. SAE: given, or trained here on a sample
    from .sae import SparseAutoencoder

    sae_source = "pretrained"
    if sae is not None:
        if sae.d_in != dim:
            raise ModelError(f"The SAE expects {sae.d_in}-d inputs but the embeddings are {dim}-d")
    else:
        # Kept in the work folder so a rerun after a failure does not train again.
        levels = validate.levels(levels)
        shape = (m, k) + (("levels", settings.format_levels(levels, ",")) if levels else ())
        trained = emb_dir / f"sae-{_digest(*shape, seed, train_rows)}"
        if (trained / "model.safetensors").is_file():
            sae = SparseAutoencoder.load(trained, device=device)
        else:
            rng = np.random.default_rng(seed)
            rows = (
                np.arange(len(texts))
                if len(texts) <= train_rows
                else np.sort(rng.choice(len(texts), train_rows, replace=False))
            )
            sample = np.concatenate(
                [
                    gather_rows(emb_tilings[s.index], rows[(rows >= s.lo) & (rows < s.hi)])
                    for s in shards
                    if ((rows >= s.lo) & (rows < s.hi)).any()
                ]
            )
            report(progress, 0, 1, f"sae: training m={m}, k={k} on {len(sample)} rows")
            sae = SparseAutoencoder(m=m, k=k, levels=levels, seed=seed, embedding_model=model_id, device=device).fit(
                sample
            )
            tmp = _atomic_dir(trained)
            sae.save(tmp)
            _publish(tmp, trained)
        sae_source = "trained"

    # 3. codes
    sae_dir = work / f"sae-{uuid.uuid4().hex[:8]}"
    sae.save(sae_dir)
    try:
        config = json.loads((sae_dir / "config.json").read_text())
        weights = (sae_dir / "model.safetensors").read_bytes()
    finally:
        shutil.rmtree(sae_dir, ignore_errors=True)
    sae_key = _digest(hashlib.sha256(weights).hexdigest(), *(config.get(f) for f in ("d_in", "m", "k", "batch_topk")))
    codes_dir = emb_dir / f"codes-{sae_key}"
    _prepare_part_folders(codes_dir, shards)
    for index in ran["embed"]:  # codes of re-embedded rows are stale
        _remove_parts(codes_dir / shards[index].name)
    _, todo = _todo(codes_dir, shards, code_part_ok)
    if todo:
        _run_stage(
            ray,
            text_paths,
            todo,
            EncodeBatches,
            {
                "sae_config": config,
                "sae_weights": ray.put(weights),
                "device": actor_device,
                "emb_dir": str(emb_dir),
                "out_dir": str(codes_dir),
                "dim": dim,
            },
            ["shard", "row"],
            num_gpus,
            actors,
            progress,
            "encoding",
        )
    ran["encode"] = [s.index for s in todo]
    code_tilings = _require_complete(codes_dir, shards, code_part_ok, "codes")
    return RayOutputs(
        work=work,
        shards=shards,
        embeddings=emb_tilings,
        codes=code_tilings,
        dim=dim,
        sae=sae,
        sae_source=sae_source,
        model_id=model_id,
        ran=ran,
    )


def _require_complete(root: Path, shards: list[Shard], valid, what: str) -> list:
    tilings = [tile_parts(root / s.name, s, valid) for s in shards]
    missing = [s.name for s, t in zip(shards, tilings) if t is None]
    if missing:
        raise EngineError(
            f"Ray finished but the {what} of {len(missing)} shard(s) are missing "
            f"({', '.join(missing[:3])}); run the build again to redo them"
        )
    return tilings


def assemble(outputs: RayOutputs, folder: Path):
    """The parts joined into one embeddings .npy and one code folder (both streamed); returns both, memory-mapped."""
    from .csr_store import concat_csr, load_csr

    folder.mkdir(parents=True, exist_ok=True)
    n = outputs.shards[-1].hi if outputs.shards else 0
    emb_path = folder / "embeddings.npy"
    X = np.lib.format.open_memmap(emb_path, mode="w+", dtype=np.float32, shape=(n, outputs.dim))
    for tiling in outputs.embeddings:
        for lo, hi, path in tiling:
            X[lo:hi] = np.load(path, mmap_mode="r")
    X.flush()
    del X
    parts = [
        tuple(np.load(path / f"{a}.npy", mmap_mode="r") for a in ("indptr", "indices", "data"))
        for tiling in outputs.codes
        for _, _, path in tiling
    ]
    concat_csr(folder / "codes", parts, outputs.sae.config_.m)
    return np.load(emb_path, mmap_mode="r"), load_csr(folder / "codes")


def build_workspace_ray(
    out_dir,
    *,
    frame,
    text_col: str,
    m: int = settings.SAE.m,
    k: int = settings.SAE.k,
    seed: int = settings.SAE.seed,
    levels=settings.SAE.levels,
    embedder_spec: Optional[str] = None,
    embeddings: Optional[np.ndarray] = None,
    sae=None,
    device: str = settings.DEVICE,
    address: Optional[str] = None,
    shard_rows: int = DEFAULT_SHARD_ROWS,
    train_rows: int = DEFAULT_TRAIN_ROWS,
    progress: Optional[ProgressFn] = None,
    name: Optional[str] = None,
    keep_work: bool = False,
):
    """``build_workspace`` with embedding and encoding on Ray (``address``: a cluster; None: RAY_ADDRESS or a
    local Ray). ``embeddings`` (one row per table row) skip embedding; ``sae`` skips training. The work folder
    ``.NAME.ray`` beside ``out_dir`` keeps finished shards until the workspace is built (``keep_work``: always).
    """
    import pandas as pd

    from .data import prepare_corpus, require_columns
    from .locking import WorkspaceLock
    from .workspace import build_workspace

    levels = validate.levels(levels) if sae is None else ()
    if not isinstance(frame, pd.DataFrame):
        raise DataError("frame must be a pandas DataFrame")
    require_columns(frame, text_col)
    corpus = prepare_corpus(frame, text_col, min_rows=2 if sae is not None else settings.MIN_SAE_ROWS)
    if embeddings is not None:  # one row per table row, or per kept text (as `hsae embed` writes them)
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2 or len(embeddings) not in (len(frame), len(corpus.texts)):
            raise DataError(
                f"Embeddings have shape {embeddings.shape}; expected one row per table row ({len(frame)})"
                f" or per non-empty text ({len(corpus.texts)})"
            )
        if len(embeddings) == len(frame):
            embeddings = embeddings[corpus.row_ids]
    out = Path(out_dir)
    with WorkspaceLock(out):  # one build per workspace, Ray stages included (build_workspace re-enters it)
        work = out.parent / f".{out.name}.ray"
        ray = require_ray()
        started = _connect(ray, address)
        try:
            outputs = run_ray_stages(
                work,
                corpus.texts,
                m=m,
                k=k,
                seed=seed,
                levels=levels,
                embedder_spec=embedder_spec,
                embeddings=embeddings,
                sae=sae,
                device=device,
                shard_rows=shard_rows,
                train_rows=train_rows,
                progress=progress,
            )
        finally:
            if started:
                ray.shutdown()
        X, codes = assemble(outputs, work / f"assembled-{uuid.uuid4().hex[:8]}")
        if len(corpus.row_ids) != len(frame):  # build_workspace wants one embedding row per table row
            full = np.zeros((len(frame), X.shape[1]), dtype=np.float32)
            full[corpus.row_ids] = X
            X = full
        ws = build_workspace(
            out,
            frame=frame,
            text_col=text_col,
            m=m,
            k=k,
            seed=seed,
            embedder_spec=embedder_spec,
            embeddings=X,
            sae=outputs.sae,
            codes=codes,
            sae_source=outputs.sae_source,
            progress=progress,
            name=name,
            device=device,
        )
        del X, codes
        if keep_work:
            for folder in work.glob("assembled-*"):
                shutil.rmtree(folder, ignore_errors=True)
        else:
            shutil.rmtree(work, ignore_errors=True)
        return ws
