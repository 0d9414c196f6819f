"""Parameter checks shared by the library (``SparseAutoencoder``, ``HypothesisConfig``, ``build_workspace``)
and the CLI's option parsing, so every door refuses the same values with the same one line, before any
heavy work. Messages name the library parameter in backticks (the CLI maps it to its flag).
"""

from __future__ import annotations

import math
import os
from typing import Optional

import numpy as np

from .errors import DataError, HsaeError

SEED_LIMIT = 2**32  # numpy and torch seeds must lie in [0, 2**32)
FLOAT_BYTES = 4
# Training holds W_enc and W_dec (m x d each) four more times: gradients, Adam's two moments, the best
# weights kept for early stopping; that is 2 x (1 + 1 + 2 + 1) = 10 copies of an m x d float32 matrix.
TRAINING_COPIES = 10


def positive_int(name: str, value, minimum: int = 1, error: type[HsaeError] = DataError) -> int:
    """``value`` as an int >= ``minimum``; bools, floats with a fraction and text are refused."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            value = int(value)
        else:
            raise error(f"`{name}` must be a whole number >= {minimum}, got {value!r}")
    if value < minimum:
        raise error(f"`{name}` must be a whole number >= {minimum}, got {value}")
    return int(value)


def levels(value, error: type[HsaeError] = DataError) -> tuple:
    """SAE levels as (latents, active) pairs (see :func:`settings.parse_levels`), or one ``error`` line."""
    from .settings import parse_levels

    try:
        return parse_levels(value)
    except (TypeError, ValueError) as exc:
        raise error(f"`levels`: {exc}") from None


def seed(name: str, value, error: type[HsaeError] = DataError) -> int:
    """A random seed in [0, 2**32)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < SEED_LIMIT:
        raise error(f"`{name}` must be a whole number from 0 to {SEED_LIMIT - 1}, got {value!r}")
    return int(value)


def finite_float(
    name: str,
    value,
    low: float = -math.inf,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = False,
    error: type[HsaeError] = DataError,
) -> float:
    """A finite float within [low, high] (ends excluded where ``*_open``)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.integer, np.floating))
        or not math.isfinite(value)
    ):
        raise error(f"`{name}` must be a finite number, got {value!r}")
    value = float(value)
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if too_low or too_high:
        lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
        raise error(f"`{name}` must lie in {lo}{low:g}, {high:g}{hi}, got {value:g}")
    return value


def training_bytes(m: int, d: int, batch_size: int = 256) -> int:
    """Estimated peak memory of training an m-latent SAE on d-dimensional inputs (weights, Adam, best copy,
    and a batch's pre-activations with their gradients)."""
    return FLOAT_BYTES * (TRAINING_COPIES * m * d + 4 * batch_size * m)


def available_memory() -> Optional[int]:
    """Bytes of memory available to a new allocation (``MemAvailable``), or None where unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits_memory(m: int, d: int, batch_size: int = 256, error: type[HsaeError] = DataError) -> None:
    """Refuse an SAE whose training would not fit in the memory available now, naming `m`."""
    need = training_bytes(int(m), int(d), int(batch_size))
    have = available_memory()
    if have is not None and need > 0.9 * have:
        raise error(
            f"An SAE of {m:,} latents (`m` and its `levels`) on {d}-d embeddings needs about {_gib(need)} of memory to "
            f"train; {_gib(have)} is available. Use a smaller `m`"
        )


def _gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB" if n < 2**40 else f"{n / 2**40:,.1f} TiB"
