"""How a continuous target is modelled: as it is, or as log(1 + y) when it is a heavy-tailed count.

Citation counts (0 to 6,633 on the shared arXiv 2018 abstracts, skewness 27.6), clicks or a review's
"useful" votes are counts whose few largest values carry every least-squares fit made on them: fitted on the
raw citation counts, none of 20 hypotheses was significant on three SAE seeds, against 2 on log(1 + y)
(BENCHMARKS.md, "Heavy-tailed counts"). ``auto`` therefore models a continuous target as log(1 + y) when
every value is at least 0, its skewness on the training rows is above
``SKEWED`` and the log at least halves it; anything else (stars, a stance score in [-1, 1], a click rate,
whose log changes nothing) is modelled as it is. The choice reads the training rows only (and checks that
no holdout value is below 0, a property of the column, not of its relation to the texts). ``none`` and
``log1p`` choose for the user.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np

from .errors import DataError
from .settings import TARGET_SCALES as SCALES

SKEWED = 2.0  # skewness above this is a long right tail (a normal variable has 0, an exponential 2)


@dataclass(frozen=True)
class TargetScale:
    """The scale a run models its continuous target on, and why."""

    applied: str  # "none" or "log1p"
    requested: str  # "auto", "none" or "log1p"
    skew: float  # skewness of the training values as they are
    skew_after: Optional[float]  # skewness of log(1 + y) on the training rows; None when it is undefined
    low: float  # smallest and largest training value
    high: float

    def apply(self, y) -> np.ndarray:
        """``y`` on this scale."""
        y = np.asarray(y, dtype=np.float64)
        return np.log1p(y) if self.applied == "log1p" else y

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self, column: str, undo: str = "--target-scale none keeps it as it is") -> Optional[str]:
        """One line saying the target is modelled as log(1 + y) and why (``undo`` says how not to); None when
        it is modelled as it is."""
        if self.applied != "log1p":
            return None
        if self.requested == "log1p":
            return f"Target '{column}' modelled as log(1 + {column}), as asked."
        after = "" if self.skew_after is None else f"; {self.skew_after:.1f} after the log"
        return (
            f"Target '{column}' modelled as log(1 + {column}): its values ({_number(self.low)} to "
            f"{_number(self.high)}) have a long right tail (skewness {self.skew:.1f}{after}); {undo}."
        )


def skewness(y) -> float:
    """Sample skewness (the third standardised moment); 0 for a constant."""
    y = np.asarray(y, dtype=np.float64)
    centred = y - y.mean()
    var = float(np.mean(centred**2))
    if var <= 0.0:
        return 0.0
    return float(np.mean(centred**3) / var**1.5)


def choose_scale(y_train, requested: str = "auto", column: str = "target", y_holdout=None) -> TargetScale:
    """The scale for a continuous target (see the module docstring); a DataError when ``log1p`` is asked for
    values below 0."""
    if requested not in SCALES:
        raise DataError(f"Unknown `target_scale` '{requested}'; use one of {', '.join(SCALES)}")
    y = np.asarray(y_train, dtype=np.float64)
    both = y if y_holdout is None else np.concatenate([y, np.asarray(y_holdout, dtype=np.float64)])
    low = float(both.min())
    skew = skewness(y)
    skew_after = skewness(np.log1p(y)) if low >= 0 else None
    if requested == "log1p" and low < 0:
        raise DataError(
            f"Target '{column}' has values below 0 (down to {_number(low)}); log(1 + y) needs values of at least 0: "
            "use `target_scale` none"
        )
    if requested == "auto":
        heavy = low >= 0 and skew > SKEWED and skew_after is not None and abs(skew_after) < skew / 2
        applied = "log1p" if heavy else "none"
    else:
        applied = requested
    return TargetScale(applied, requested, round(skew, 3), _rounded(skew_after), float(y.min()), float(y.max()))


def readable_scale(y, name: str) -> tuple[str, np.ndarray]:
    """(name, values) of a numeric column for a chart or a correlation: ``log(1 + name)`` and its log where
    ``auto`` would model it so (judged on its known values), else the column as it is; NaN stays NaN."""
    y = np.asarray(y, dtype=np.float64)
    known = y[np.isfinite(y)]
    if known.size and choose_scale(known).applied == "log1p":  # a two-valued column's log is as skewed: kept
        return f"log(1 + {name})", np.log1p(y)
    return str(name), y


def _rounded(value: Optional[float]) -> Optional[float]:
    return None if value is None else round(value, 3)


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.4g}"
