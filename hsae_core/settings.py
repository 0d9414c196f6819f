"""Every default and environment variable of hsae, declared once.

The CLI's option defaults, the dashboard's form defaults, ``HypothesisConfig`` and ``build_workspace``
all read their defaults from here, so a run started from any door trains the same SAE and selects
the same way. Environment variables are read at call time (a test or a user may set them after import).

Environment variables (an empty value counts as unset everywhere):

==========================  ===========================================================================
``HSAE_CACHE_DIR``          embedding and LLM caches (default ``~/.cache/hsae``)
``HSAE_WORKSPACES_DIR``     where the dashboard keeps workspaces (default ``./workspaces``)
``HSAE_WORKSPACE``          open only this workspace folder in the dashboard
``HSAE_DATA_DIR``           the shared data folder holding ``yelp_reviews_demo/`` for the demo workspace
``HSAE_REGISTRY``           a registry JSON to use instead of the packaged ``hsae_core/registry.json``
``HSAE_LLM_MODEL``          chat model for LLM labelling/annotation (default ``gpt-4o-mini``)
``OPENAI_API_KEY``          switches the LLM and OpenAI-embedding paths on
``OPENAI_BASE_URL``         any OpenAI-compatible server (vLLM, Ollama, llama.cpp, ...)
``HF_HUB_OFFLINE``          read the Hugging Face cache only
``HF_HUB_CACHE``/``HF_HOME``  the Hugging Face cache folder
==========================  ===========================================================================
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional


# ---------------------------------------------------------------------------------------- method defaults
@dataclass(frozen=True)
class SAEDefaults:
    """The SAE every entry point trains unless told otherwise (hypotheses, workspaces, ``hsae train``)."""

    m: int = 256
    k: int = 8
    batch_topk: bool = False
    # Nested prefixes, each trained to reconstruct alone, so the first latents are the coarsest concepts.
    # "auto": 4, 16, 64, ... below m (see matryoshka_prefixes); () for none.
    matryoshka: tuple | str = "auto"
    max_epochs: int = 200
    batch_size: int = 256
    lr: float = 5e-4
    seed: int = 0


@dataclass(frozen=True)
class SelectionDefaults:
    """How latents are chosen as hypotheses."""

    method: str = "correlation"
    n: int = 20
    top_n: int = 100
    holdout_frac: float = 0.2
    # "learned": present = activation above a per-latent threshold learned on the training split;
    # "positive": present = the latent fires at all (activation > 0).
    presence: str = "learned"
    # Smallest share of training rows a learned threshold may keep (at least 5 rows).
    min_present_frac: float = 0.01
    # Two hypotheses whose training presence overlaps more than this (Jaccard) are one concept: keep the better.
    max_overlap: float = 0.5


@dataclass(frozen=True)
class LabelDefaults:
    """How latents are named and how the holdout is annotated."""

    interpreter: str = "keywords"
    annotator: str = "activation"
    llm_model: str = "gpt-4o-mini"


SAE = SAEDefaults()
SELECTION = SelectionDefaults()
LABELS = LabelDefaults()

SELECT_METHODS = ("correlation", "separation", "lasso", "stepwise")
PRESENCE_MODES = ("learned", "positive")
INTERPRETERS = ("keywords", "llm")
ANNOTATORS = ("activation", "llm")
TARGET_KINDS = ("auto", "binary", "continuous", "multiclass")


def matryoshka_prefixes(spec, m: int) -> tuple:
    """The Matryoshka prefix sizes for an SAE with ``m`` latents: ``"auto"`` is every power of 4 from 4
    below ``m`` (m=128: 4, 16, 64), ``None``/``"none"``/``()`` none, a sequence of sizes itself."""
    if spec is None or (isinstance(spec, str) and spec.lower() == "none"):
        return ()
    if isinstance(spec, str):
        if spec.lower() != "auto":
            raise ValueError(f"matryoshka must be 'auto', 'none' or a sequence of sizes, got {spec!r}")
        out, p = [], 4
        while p < m:
            out.append(p)
            p *= 4
        return tuple(out)
    return tuple(int(p) for p in spec)


# ---------------------------------------------------------------------------------------- environment
def env(name: str) -> Optional[str]:
    """The stripped value of an environment variable, or None when it is unset or blank."""
    value = os.environ.get(name, "").strip()
    return value or None


def cache_dir() -> Path:
    """Root of hsae's caches: ``$HSAE_CACHE_DIR`` or ``~/.cache/hsae``."""
    return Path(env("HSAE_CACHE_DIR") or Path.home() / ".cache" / "hsae")


def workspaces_dir() -> Path:
    """Where the dashboard keeps workspaces: ``$HSAE_WORKSPACES_DIR`` or ``./workspaces``."""
    return Path(env("HSAE_WORKSPACES_DIR") or "workspaces")


def fixed_workspace() -> Optional[Path]:
    """``$HSAE_WORKSPACE``: the one workspace the dashboard should open, if set."""
    value = env("HSAE_WORKSPACE")
    return Path(value) if value else None


def data_dir() -> Optional[Path]:
    """``$HSAE_DATA_DIR``: the folder with the demo data, if set."""
    value = env("HSAE_DATA_DIR")
    return Path(value) if value else None


def registry_override() -> Optional[Path]:
    """``$HSAE_REGISTRY``: a registry file that replaces the packaged one, if set."""
    value = env("HSAE_REGISTRY")
    return Path(value) if value else None


def llm_model() -> str:
    return env("HSAE_LLM_MODEL") or LABELS.llm_model


def openai_api_key() -> Optional[str]:
    return env("OPENAI_API_KEY")


def openai_base_url() -> Optional[str]:
    return env("OPENAI_BASE_URL")


def hf_offline() -> bool:
    return (env("HF_HUB_OFFLINE") or "").lower() in ("1", "true", "yes", "on")


def hf_cache_dir() -> Optional[str]:
    """The Hugging Face cache folder from ``$HF_HUB_CACHE`` or ``$HF_HOME/hub``; None for the library default."""
    if env("HF_HUB_CACHE"):
        return env("HF_HUB_CACHE")
    if env("HF_HOME"):
        return str(Path(env("HF_HOME")) / "hub")
    return None


def hf_endpoint() -> Optional[str]:
    return env("HF_ENDPOINT")
