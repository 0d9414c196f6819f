"""hsae: sparse autoencoders over text embeddings: readable concepts, steerable search, tested hypotheses.

The front door. Heavy dependencies (torch, sentence-transformers, FAISS) load only when a name that
needs them is first used, so ``import hsae_core`` is quick and never imports Streamlit, plotly or UMAP.

    from hsae_core import HypothesisConfig, hypothesize
    run = hypothesize("reviews.csv", text_col="text", target_col="stars", out_dir="runs/x")
"""

from __future__ import annotations

import importlib

from .errors import DataError as DataError
from .errors import EngineError as EngineError
from .errors import HsaeError as HsaeError
from .errors import LLMError as LLMError
from .errors import ModelError as ModelError
from .errors import StorageError as StorageError
from .errors import WorkspaceBusyError as WorkspaceBusyError

_LAZY = {
    # the one flow: table in, hypotheses out
    "hypothesize": "pipeline",
    "HypothesisConfig": "pipeline",
    "HypothesisRun": "pipeline",
    "load_split": "pipeline",
    "run_hypotheses": "pipeline",
    "load_run": "pipeline",
    "write_run": "pipeline",
    # parts
    "SparseAutoencoder": "sae",
    "Embedder": "embed",
    "get_embedder": "embed",
    "embed_texts": "embed",
    "Interpreter": "interpret",
    "Interpretation": "interpret",
    "KeywordInterpreter": "interpret",
    "LLMInterpreter": "interpret",
    "PhraseInterpreter": "labels",
    # labels you can trust: fidelity on unseen documents, label sets, the LLM refinement loop
    "label_splits": "fidelity",
    "EmbeddingJudge": "fidelity",
    "LLMJudge": "fidelity",
    "label_features": "labelsets",
    "relabel_workspace": "labelsets",
    "features_with_labels": "labelsets",
    "Refiner": "refine",
    "Budget": "refine",
    "estimate_llm_labels": "refine",
    "Annotator": "annotate",
    "ActivationAnnotator": "annotate",
    "LLMAnnotator": "annotate",
    "LLMClient": "llm",
    "select_latents": "select",
    "evaluate_hypotheses": "stats",
    "fit_controls": "controls",
    "ControlDesign": "controls",
    "fit_any_of": "anyof",
    "best_marker": "anyof",
    "any_of_scores": "anyof",
    "read_table": "data",
    "prepare_corpus": "data",
    "Corpus": "data",
    # workspaces and what the dashboard asks of them
    "Workspace": "workspace",
    "build_workspace": "workspace",
    "build_pretrained_workspace": "workspace",
    "build_workspace_ray": "ray_engine",
    "resolve_device": "device",
    "SteeredSearch": "search",
    "FeatureExplorer": "features",
    # pretrained SAEs
    "load_sae": "hub",
    "registry": "hub",
    "push_sae": "hub",
}

__all__ = sorted(
    [*_LAZY, "DataError", "EngineError", "HsaeError", "LLMError", "ModelError", "StorageError", "WorkspaceBusyError"]
)


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hsae_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
