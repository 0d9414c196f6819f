"""What an SAE folder holds, readable without torch: its file names, the schema of its ``config.json``, the
configuration as a dataclass, and the decoder directions as numpy.

``hsae_core.sae`` builds the model from these; a listing of a workspace's features needs only this module, so it
starts without importing torch or scikit-learn (about 3 s of a terminal command).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Optional

import numpy as np

from . import settings, validate
from .errors import HsaeError, ModelError, first_line

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
ARCHITECTURE = "topk_sae"
# Digests of the rows an SAE was fitted on (row_digests), kept beside it and never uploaded by push_sae
FITTED_ROWS_NAME = "fitted_rows.npy"
SAE_FILES = frozenset({CONFIG_NAME, WEIGHTS_NAME, FITTED_ROWS_NAME, "README.md"})  # README.md: push_sae's model card
TRAINING_FIELDS = ("lr", "batch_size", "max_epochs", "patience", "min_delta", "max_samples", "val_frac", "seed")


def validate_sae_config(config, source: str = "SAE") -> dict:
    """Check an SAE ``config.json`` (a folder's, or one built from a ``.pth``) against its schema: types,
    ranges, no unknown meaning for known fields. Returns the config; raises one ModelError line naming
    the file and the field. Values are never coerced ("64" is not 64, "yes" is not True)."""
    where = f"{source}: invalid SAE config"
    if not isinstance(config, dict):
        raise ModelError(f"{where}: expected a JSON object, got a {type(config).__name__}")
    arch = config.get("architecture", ARCHITECTURE)
    if arch != ARCHITECTURE:
        raise ModelError(f"{source}: unsupported architecture {arch!r} (expected {ARCHITECTURE})")
    missing = [f for f in ("d_in", "m", "k") if f not in config]
    if missing:
        raise ModelError(f"{where}: missing field(s) {', '.join(missing)}")

    def check(fn, name, value, *args, **kwargs):
        try:
            return fn(name, value, *args, error=ModelError, **kwargs)
        except HsaeError as exc:
            raise ModelError(f"{where}: {str(exc).replace('`', chr(39))}") from None

    check(validate.positive_int, "d_in", config["d_in"])
    m = check(validate.positive_int, "m", config["m"])
    k = check(validate.positive_int, "k", config["k"])
    if k > m:
        raise ModelError(f"{where}: 'k' ({k}) cannot exceed 'm' ({m})")
    if not isinstance(config.get("batch_topk", False), bool):
        raise ModelError(f"{where}: 'batch_topk' must be true or false, got {config['batch_topk']!r}")
    if config.get("levels"):
        try:
            levels = settings.parse_levels(config["levels"])
        except (TypeError, ValueError) as exc:
            raise ModelError(f"{where}: 'levels' {exc}") from None
        if (sum(s for s, _ in levels), sum(a for _, a in levels)) != (m, k):
            raise ModelError(f"{where}: 'levels' {config['levels']} do not add up to m={m}, k={k}")
    prefixes = config.get("matryoshka") or []
    if not isinstance(prefixes, (list, tuple)):
        raise ModelError(f"{where}: 'matryoshka' must be a list of latent counts, got {prefixes!r}")
    for p in prefixes:
        check(validate.positive_int, "matryoshka", p)
    if "aux_k" in config:
        check(validate.positive_int, "aux_k", config["aux_k"], 0)
    if "aux_coef" in config:
        check(validate.finite_float, "aux_coef", config["aux_coef"], 0.0)
    if "dead_after" in config:
        check(validate.positive_int, "dead_after", config["dead_after"])
    em = config.get("embedding_model")
    if em is not None and not isinstance(em, str):
        raise ModelError(f"{where}: 'embedding_model' must be text or null, got {em!r}")
    for section in ("training", "metrics", "source"):
        if config.get(section) is not None and not isinstance(config[section], dict):
            raise ModelError(f"{where}: '{section}' must be a JSON object, got {config[section]!r}")
    training = config.get("training") or {}
    for name in ("batch_size", "max_epochs", "patience"):
        if name in training:
            check(validate.positive_int, name, training[name])
    if "lr" in training:
        check(validate.finite_float, "lr", training["lr"], 0.0, low_open=True)
    if "min_delta" in training:
        check(validate.finite_float, "min_delta", training["min_delta"], 0.0, 1.0, high_open=True)
    if training.get("max_samples") is not None:
        check(validate.positive_int, "max_samples", training["max_samples"])
    if "val_frac" in training:
        check(validate.finite_float, "val_frac", training["val_frac"], 0.0, 1.0, high_open=True)
    if "seed" in training:
        check(validate.seed, "seed", training["seed"])
    return config


@dataclass
class SAEConfig:
    d_in: int
    m: int
    k: int
    batch_topk: bool = False
    matryoshka: tuple[int, ...] = ()
    aux_k: int = 0  # 0 means: 2*k, capped at m
    aux_coef: float = 1.0 / 32
    dead_after: int = 5_000
    embedding_model: Optional[str] = None
    # Every level as (latents, active), the main dictionary first, adding up to (m, k); () for one dictionary.
    levels: tuple = ()

    def __post_init__(self):
        self.matryoshka = tuple(int(p) for p in self.matryoshka)
        self.levels = tuple((int(s), int(a)) for s, a in self.levels)
        if self.levels:
            if (sum(s for s, _ in self.levels), sum(a for _, a in self.levels)) != (self.m, self.k):
                raise ModelError(f"Levels {self.levels} do not add up to m={self.m}, k={self.k}")
            if any(not 0 < a <= s for s, a in self.levels):
                raise ModelError(f"Each level needs 0 < active <= latents, got {self.levels}")
            if self.matryoshka or self.batch_topk:
                raise ModelError("Levels cannot be combined with Matryoshka prefixes or batch-top-k")
        if not (0 < self.k <= self.m):
            raise ModelError(f"Need 0 < k <= m, got k={self.k}, m={self.m}")
        if self.d_in <= 0:
            raise ModelError(f"Input width must be positive, got {self.d_in}")
        if any(not (0 < p < self.m) for p in self.matryoshka) or list(self.matryoshka) != sorted(set(self.matryoshka)):
            raise ModelError(f"Matryoshka prefixes must be increasing and below m={self.m}, got {self.matryoshka}")

    @property
    def effective_aux_k(self) -> int:
        return min(self.m, self.aux_k or 2 * self.k)

    @property
    def groups(self) -> tuple[tuple[int, int, int], ...]:
        """(first latent, latents, active) of each level; one group spanning all latents without levels."""
        sizes = self.levels or ((self.m, self.k),)
        starts = np.cumsum([0] + [s for s, _ in sizes[:-1]])
        return tuple((int(start), s, a) for start, (s, a) in zip(starts, sizes))

    @property
    def level_names(self) -> list[str]:
        """Each latent's level as 'latents/active' (e.g. '4/1'); every latent is in the one level of a plain SAE."""
        names = []
        for _, size, active in self.groups:
            names += [settings.level_name(size, active)] * size
        return names


# Keys that save() writes into config.json and load() reads back; `extra` may not replace them.
CONFIG_KEYS = frozenset({"architecture", "training", "metrics", "source", *(f.name for f in fields(SAEConfig))})


def read_config(folder: str | Path) -> dict:
    """The checked ``config.json`` of an SAE folder; one ModelError line when the folder or the file is not one."""
    folder = Path(folder).expanduser()
    cfg_path, w_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    if not cfg_path.is_file() or not w_path.is_file():
        raise ModelError(f"{folder} is not an SAE folder: it needs {CONFIG_NAME} and {WEIGHTS_NAME}")
    try:
        config = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"Corrupt SAE config {cfg_path}: {exc}") from None
    return validate_sae_config(config, str(cfg_path))


def config_of(config: dict) -> SAEConfig:
    """The SAEConfig a checked ``config.json`` describes (the model's own fields; training settings aside)."""
    optional = ("batch_topk", "matryoshka", "aux_k", "aux_coef", "dead_after", "embedding_model", "levels")
    sizes = {f: int(config[f]) for f in ("d_in", "m", "k")}
    return SAEConfig(**sizes, **{f: config[f] for f in optional if f in config})


def read_decoder_directions(folder: str | Path, cfg: SAEConfig) -> np.ndarray:
    """The (m, d) decoder directions of a saved SAE as float32, read without torch. Raises ModelError when the
    weights file cannot give them as float32 or float64 values of the configured shape, all finite."""
    from safetensors import safe_open

    w_path = Path(folder).expanduser() / WEIGHTS_NAME
    try:
        with safe_open(str(w_path), framework="numpy") as weights:
            decoder = weights.get_tensor("decoder.weight")
    except Exception as exc:  # missing key, damaged header, a dtype numpy lacks (bfloat16): torch's loader says more
        raise ModelError(f"Cannot read the decoder of {w_path} without torch: {first_line(exc)}") from None
    if decoder.shape != (cfg.d_in, cfg.m) or decoder.dtype not in (np.float32, np.float64):
        raise ModelError(f"{w_path}: 'decoder.weight' holds {decoder.dtype} values of shape {decoder.shape}")
    if not np.isfinite(decoder).all():
        raise ModelError(f"{w_path}: 'decoder.weight' contains NaN or infinite weights; the SAE is damaged")
    return np.ascontiguousarray(decoder.T, dtype=np.float32)
