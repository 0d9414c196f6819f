"""Holdout annotation: is each hypothesis present in each held-out text?

* :class:`ActivationAnnotator` (offline): present = the hypothesis' latent activation is above its
  threshold on the text (a threshold learned on the training split, or 0: it fires at all).
* :class:`LLMAnnotator`: asks the LLM, per (text, hypothesis), whether the label fits; NaN where the
  answer was missing or unparseable, so statistics can drop those cells instead of guessing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Optional, Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp

from .errors import DataError, LLMError
from .interpret import Interpretation, snippet
from .llm import LLMClient, llm_configured, load_prompt, parse_yes_no
from .presence import presence
from .progress import ProgressFn

log = logging.getLogger(__name__)


@runtime_checkable
class Annotator(Protocol):
    """Decides, per holdout text and hypothesis, whether it is present (1), absent (0) or unknown (NaN)."""

    method: str

    def annotate(
        self,
        *,
        texts: Sequence[str],
        codes,
        interpretations: Sequence[Interpretation],
        progress: Optional[ProgressFn] = None,
    ) -> np.ndarray: ...


class ActivationAnnotator:
    """Presence = the latent's activation > its threshold on each holdout text (no LLM, no network)."""

    method = "activation"

    def annotate(
        self,
        *,
        texts: Sequence[str],
        codes,
        interpretations: Sequence[Interpretation],
        progress: Optional[ProgressFn] = None,
        thresholds: Optional[Sequence[float]] = None,
    ) -> np.ndarray:
        """(N texts x H hypotheses) float array of 0/1: activation > ``thresholds`` (one per hypothesis; default 0)."""
        if codes is None:
            raise DataError("Activation annotation needs the holdout's SAE codes")
        codes = codes if sp.issparse(codes) else sp.csr_matrix(np.asarray(codes))
        if codes.shape[0] != len(texts):
            raise DataError(f"{len(texts)} holdout texts but {codes.shape[0]} rows of SAE codes")
        latents = [int(it.latent) for it in interpretations]
        if any(not 0 <= j < codes.shape[1] for j in latents):
            raise DataError(f"A hypothesis refers to a latent the SAE does not have (it has {codes.shape[1]})")
        t = np.zeros(len(latents)) if thresholds is None else np.asarray(thresholds, dtype=np.float64).ravel()
        if len(t) != len(latents) or not np.isfinite(t).all() or (t < 0).any():
            raise DataError(f"Need one finite, non-negative threshold per hypothesis ({len(latents)}), got {len(t)}")
        if not latents:
            return np.zeros((codes.shape[0], 0))
        return presence(codes, latents, t)


class LLMAnnotator:
    """Asks the LLM whether each hypothesis fits each holdout text (cached); NaN for failed answers."""

    def __init__(self, client: LLMClient, max_chars: int = 2000):
        if client is None:
            raise LLMError(
                "LLM annotation needs an LLM client: set OPENAI_API_KEY (and OPENAI_BASE_URL for a local server)"
            )
        self.client, self.max_chars = client, max_chars
        self.stats_ = {"asked": 0, "failed": 0}

    @property
    def method(self) -> str:
        return f"llm:{self.client.model}"

    @staticmethod
    def calls_per_text(n_hypotheses: int) -> int:
        """LLM calls per holdout text: one per hypothesis (for a progress bar's weights)."""
        return n_hypotheses

    def annotate(
        self,
        *,
        texts: Sequence[str],
        codes=None,
        interpretations: Sequence[Interpretation],
        progress: Optional[ProgressFn] = None,
    ) -> np.ndarray:
        """(N texts x H hypotheses) float array: 1 yes, 0 no, NaN where the LLM gave no usable answer."""
        template = load_prompt("judge")
        cut = [snippet(t, self.max_chars) for t in texts]
        prompts = [template.format(text=t, label=it.label) for t in cut for it in interpretations]
        answers = self.client.complete_many(prompts, temperature=0.0, max_tokens=8, progress=progress)
        verdicts = [parse_yes_no(a) for a in answers]
        out = np.array([np.nan if v is None else float(v) for v in verdicts], dtype=np.float64)
        self.stats_["asked"] += len(prompts)
        failed = int(np.isnan(out).sum())
        self.stats_["failed"] += failed
        if failed:
            log.warning("%d of %d LLM annotations failed or were unparseable (left as NaN)", failed, len(prompts))
        return out.reshape(len(texts), len(interpretations))


def make_annotator(kind: str, client: Optional[LLMClient] = None):
    """``"activation"`` (offline) or ``"llm"`` (needs ``client`` or OPENAI_API_KEY)."""
    if kind == "activation":
        return ActivationAnnotator()
    if kind == "llm":
        if client is None:
            if not llm_configured():
                raise LLMError(
                    "LLM annotation needs an API key: set OPENAI_API_KEY (and OPENAI_BASE_URL for a local "
                    "OpenAI-compatible server), or use the `annotator` 'activation'"
                )
            client = LLMClient()
        return LLMAnnotator(client)
    raise DataError(f"Unknown annotator {kind!r}: use 'activation' or 'llm'")
