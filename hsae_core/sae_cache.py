"""Trained SAEs kept on disk, so a rerun on the same embeddings with the same settings loads instead of training.

The key is a hash of the training embeddings (bytes and shape), every constructor parameter of the
:class:`~hsae_core.sae.SparseAutoencoder` and the source of ``sae.py`` and ``sae_config.py`` (a change to the training
code retrains). Entries live in ``settings.cache_dir() / "sae" / <key>/`` as ordinary SAE folders
(``config.json`` + ``model.safetensors``), written by ``SparseAutoencoder.save`` (one folder swap), so a run
killed mid-write leaves nothing half-written. A corrupt entry is retrained; an unwritable cache is skipped.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Optional

import numpy as np

from . import sae as sae_module
from . import sae_config, settings
from .errors import ModelError, StorageError
from .progress import ProgressFn
from .sae import SparseAutoencoder, as_float_matrix

log = logging.getLogger(__name__)
# The training code as imported by this process (an edit to sae.py after import does not change what runs);
# sae_config.py holds the configuration the model is built from (how many latents each level has, aux-k).
_CODE = hashlib.sha256(b"".join(Path(m.__file__).read_bytes() for m in (sae_module, sae_config))).hexdigest()


def cache_key(X: np.ndarray, params: dict) -> str:
    """Hex digest of the embeddings, the SAE's parameters and the training code."""
    X = np.ascontiguousarray(as_float_matrix(X))
    h = hashlib.sha256()
    h.update(json.dumps({"shape": X.shape, "params": params}, sort_keys=True, default=list).encode())
    h.update(X.reshape(-1).view(np.uint8))  # the bytes in place: tobytes() copied them (1.5 GB and 2 s at 1M x 384)
    h.update(_CODE.encode())
    return h.hexdigest()[:32]


def cache_root() -> Path:
    return settings.cache_dir() / "sae"


def fit_cached(
    sae: SparseAutoencoder,
    X,
    progress: Optional[ProgressFn] = None,
    use_cache: bool = True,
    key: Optional[str] = None,
) -> SparseAutoencoder:
    """``sae.fit(X)``, or the SAE an identical earlier fit left in the cache (``sae.cached_`` says which). ``key``:
    ``cache_key(X, sae.get_params())`` when the caller has it (hashing 1M x 384 embeddings takes about 3 s)."""
    X = as_float_matrix(X)
    if not use_cache:
        fitted = sae.fit(X, progress=progress)
        fitted.cached_ = False
        return fitted
    key = key or cache_key(X, sae.get_params())
    loaded = lookup(sae, X, key=key)
    if loaded is not None:
        return loaded
    fitted = sae.fit(X, progress=progress)
    fitted.cached_ = False
    _store(fitted, cache_root() / key)
    return fitted


def lookup(sae: SparseAutoencoder, X, key: Optional[str] = None) -> Optional[SparseAutoencoder]:
    """The SAE an identical earlier fit of ``sae`` on ``X`` left in the cache (``cached_`` True), or None (a corrupt
    entry counts as none: the next fit replaces it). ``key``: as for :func:`fit_cached`."""
    folder = cache_root() / (key or cache_key(as_float_matrix(X), sae.get_params()))
    if not folder.is_dir():
        return None
    try:
        loaded = SparseAutoencoder.load(folder)
    except ModelError as exc:
        log.warning("ignoring a corrupt cached SAE (%s); retraining", exc)
        return None
    loaded.cached_ = True
    return loaded


def _store(fitted: SparseAutoencoder, folder: Path) -> None:
    """Put the fitted SAE in the cache in one step (a corrupt or concurrent entry is replaced)."""
    try:
        fitted.save(folder)
    except StorageError as exc:
        log.warning("could not cache the trained SAE in %s: %s", folder.parent, exc)
