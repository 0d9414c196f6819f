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
``HSAE_MAP_ENGINE``         how the Map aggregates large corpora: ``numpy`` (default) or ``datashader``
``HSAE_LLM_MODEL``          chat model for LLM labelling/annotation (default ``gpt-4o-mini``)
``HSAE_LLM_PRICE_IN``       its price in US dollars per million input tokens (cost estimates only)
``HSAE_LLM_PRICE_OUT``      ... and per million output tokens
``OPENAI_API_KEY``          switches the LLM and OpenAI-embedding paths on
``OPENAI_BASE_URL``         any OpenAI-compatible server (vLLM, Ollama, llama.cpp, ...)
``HSAE_BATCH_POLL_S``       seconds between OpenAI Batch API status checks with ``--batch`` (default 30)
``RAY_ADDRESS``             Ray's own: the cluster ``hsae build --engine ray`` joins without ``--ray-address``
``HSAE_RAY_FAULT``          test hook of the Ray engine: ``STAGE:SHARD:MARKER`` kills a worker once
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

    # The main dictionary: 64 latents with 24 active, broad enough that one latent often names a topic, and
    # enough active latents per document that graded targets (Yelp stars) keep many significant hypotheses.
    # Larger corpora that need finer features pass --m.
    m: int = 64
    k: int = 24
    batch_topk: bool = False
    # Nested prefixes, each trained to reconstruct alone, so the first latents are the coarsest concepts:
    # "auto" is 4, 16, 64, ... below m (see matryoshka_prefixes); () for none. Off by default: with it,
    # whole-concept recovery rises but fewer Yelp hypotheses stay Bonferroni-significant (the target's
    # signal gathers in a few coarse latents), a trade the defaults do not make for the user.
    matryoshka: tuple | str = ()
    # Levels: further dictionaries trained beside the main one, each a top-k SAE of its own over the same
    # input, as (latents, active) pairs; their latents follow the main ones in the code. 2/1 to 5/1 sort every
    # document into one of 2-5 broad groups, 16/2 and 128/16 are a coarse and a fine view, so each target can
    # be named at the granularity it needs. Against the single m 64, k 16 SAE, over seeds 0-2: best single
    # hypothesis F1 up on 8 of 9 labelled concepts (arXiv fields 0.59-0.63 -> 0.76-0.84) and Yelp CV R² 0.435
    # (0.378); over ten seeds Yelp 15.5 of 20 significant (14.6). The costs are training time (about 2.5x) and
    # the main level's labels. BENCHMARKS.md, "Levels". () for none (see parse_levels).
    # Used by every entry point (hypotheses, workspaces, the CLI); the SparseAutoencoder estimator alone
    # defaults to one dictionary.
    levels: tuple = ((2, 1), (3, 1), (4, 1), (5, 1), (16, 2), (128, 16))
    max_epochs: int = 200
    batch_size: int = 256
    lr: float = 5e-4
    seed: int = 0


@dataclass(frozen=True)
class SelectionDefaults:
    """How latents are chosen as hypotheses."""

    # "stepwise": each next latent is the one whose presence adds most to the ones chosen (an OLS on the
    # training split), so the 20 are 20 distinct concepts and stay significant side by side. Over SAE seeds
    # 0-9 on Yelp: 14.6 of 20 Bonferroni-significant, CV R² 0.384, against 13.2 / 0.378 with "correlation"
    # (the top 20 by correlation alone), for a little concept recovery (equal on the arXiv fields, AUC up to
    # 0.05 lower on the cs categories; BENCHMARKS.md, "Ten seeds").
    # For a binary target or a class the first is the latent whose presence alone marks it best (F1 on the
    # training split), when one beats calling every text the class: the top correlation can be a narrower
    # latent, and the best single marker is what a reader of a class looks for (BENCHMARKS.md, "The best
    # single marker first").
    method: str = "stepwise"
    n: int = 20
    # A holdout with fewer than this many rows per hypothesis tests fewer (n = rows // this, at least 3; 0: always
    # n): the joint model fits them all at once and Bonferroni divides 5% by their number. On holdouts of 100-200
    # rows, 5-10 hypotheses find about twice as many significant ones as 20 (BENCHMARKS.md, "Small holdouts").
    rows_per_hypothesis: int = 20
    top_n: int = 100
    holdout_frac: float = 0.2
    # "learned": present = activation above a per-latent threshold learned on the training split;
    # "positive": present = the latent fires at all (activation > 0).
    presence: str = "learned"
    # Smallest share of training rows a learned threshold may keep (at least 5 rows).
    min_present_frac: float = 0.01
    # Two hypotheses whose training presence overlaps more than this (Jaccard) are one concept: keep the
    # better. 1.0 keeps all.
    max_overlap: float = 0.5


@dataclass(frozen=True)
class LabelDefaults:
    """How latents are named and how the holdout is annotated."""

    interpreter: str = "phrases"  # offline phrases judged by the embedder; keywords where it cannot embed text
    annotator: str = "activation"
    llm_model: str = "gpt-4o-mini"
    # label fidelity and the LLM refinement loop (hsae_core.fidelity / hsae_core.refine)
    low_fidelity_auc: float = 0.75  # the dashboard's "low fidelity" filter: embedding-judge AUC under this
    refine_f1_bar: float = 0.75  # labels whose validation F1 (LLM judge) is under this are rewritten
    refine_max_rounds: int = 3
    # US dollars per million tokens, for cost estimates printed before LLM runs (gpt-4o-mini list prices)
    llm_price_in: float = 0.15
    llm_price_out: float = 0.60


@dataclass(frozen=True)
class ScaleDefaults:
    """Where large corpora switch to sampled or approximate work (measured in BENCHMARKS.md, Scale)."""

    exact_index_limit: int = 200_000  # exact FAISS search up to here (p95 ~30 ms single-threaded), IVF-Flat above
    target_recall: float = 0.95  # IVF nprobe is tuned at build time until recall@10 against exact reaches this
    sae_fit_rows: int = 100_000  # above this many documents the SAE trains on a random sample of this size ...
    sae_sample_epochs: int = 5  # ... for at most this many epochs (early stopping still applies) ...
    sae_sample_batch_size: int = 1024  # ... in batches this big (fewer, larger steps: faster per epoch on CPU)
    label_sample_docs: int = 50_000  # labels read each feature's top documents plus this random sample
    map_fit_rows: int = 20_000  # UMAP is fitted on at most this many documents; the rest are placed by neighbours
    map_points: int = 50_000  # above this many documents the Map draws a density image plus a sample of points
    map_hover_points: int = 4_000  # points sent to the browser for hover on a density map
    run_rows: int = 100_000  # hypothesis runs from the dashboard use at most this many rows (a random sample)


SAE = SAEDefaults()
SELECTION = SelectionDefaults()
# Fewer texts than this train no SAE worth reading (10 reviews gave 222 features, most labels shared): a build
# or `hsae train` that trains one refuses them, as a hypothesis run does for its training rows.
MIN_SAE_ROWS = 50

# The earlier opt-in for targets that are whole topics (``hsae hypothesize --concepts``, kept for scripts): a
# Matryoshka SAE without levels. The default levels now recover whole topics better (BENCHMARKS.md, "Levels"
# against "Opt-in concepts"). Presence and overlap equal today's defaults and are spelled out so they stay if
# the defaults move; the selection method follows the default (stepwise).
CONCEPT_SAE = {"m": 128, "k": 8, "matryoshka": "auto", "levels": ()}  # used when a run trains its own SAE
CONCEPT_SELECTION = {"presence": "learned", "max_overlap": 0.5}
LABELS = LabelDefaults()
SCALE = ScaleDefaults()

# Where embedding, SAE training and encoding run: auto = CUDA when torch sees a GPU (the embedder then in
# half precision), else the CPU.
DEVICES = ("auto", "cpu", "cuda")
DEVICE = "auto"


@dataclass(frozen=True)
class RayDefaults:
    """The Ray engine (``hsae build --engine ray``)."""

    # Rows per Parquet shard, the unit of work redone after a failure; a multiple of the encoding batch (4096),
    # so that Ray's matrix products have the same shapes as the single-process build's.
    shard_rows: int = 16_384
    train_rows: int = 200_000  # the SAE is trained in the driver on at most this many sampled rows


RAY = RayDefaults()

SELECT_METHODS = ("correlation", "separation", "lasso", "stepwise")
PRESENCE_MODES = ("learned", "positive")
INTERPRETERS = ("phrases", "keywords", "llm")
LABELLERS = ("phrases", "keywords", "llm")  # label sets of a workspace (hsae relabel)
ANNOTATORS = ("activation", "llm")
TARGET_KINDS = ("auto", "binary", "continuous", "multiclass")
TARGET_SCALES = ("auto", "none", "log1p")  # a continuous target as it is, or log(1 + y) (target_scale.py)


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


def parse_levels(spec) -> tuple:
    """Extra SAE levels as a tuple of (latents, active) pairs: from ``None``/``"none"``/``()`` (none), text
    such as ``"4/1,16/2"``, or a sequence of pairs. Raises ValueError naming what is wrong."""
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "none")):
        return ()
    if isinstance(spec, str):
        pairs = []
        for part in spec.split(","):
            size, sep, active = part.strip().partition("/")
            if not sep:
                raise ValueError(f"levels are 'latents/active' pairs such as 4/1,16/2, got {part.strip()!r}")
            pairs.append((size, active))
        spec = pairs
    out = []
    for pair in spec:
        if isinstance(pair, (str, bytes)) or len(pair) != 2:
            raise ValueError(f"each level is a (latents, active) pair, got {pair!r}")
        size, active = pair
        try:
            if any(isinstance(v, (bool, float)) for v in pair):  # 1.5 or True is no count of latents
                raise ValueError
            size, active = int(size), int(active)
        except (TypeError, ValueError):
            raise ValueError(f"a level's latents and active count must be whole numbers, got {pair!r}") from None
        if not 0 < active <= size:
            raise ValueError(f"a level needs 0 < active <= latents, got {size}/{active}")
        out.append((size, active))
    return tuple(out)


def level_name(size: int, active: int) -> str:
    """A level as people read it: '4/1' (latents/active)."""
    return f"{size}/{active}"


def format_levels(levels, sep: str = ", ") -> str:
    """Levels as text, e.g. '2/1, 16/2'; 'none' for no levels."""
    return sep.join(level_name(s, a) for s, a in levels) or "none"


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


def map_engine() -> str:
    """``$HSAE_MAP_ENGINE``: ``numpy`` (default) or ``datashader`` (optional extra) for the Map's density image."""
    return (env("HSAE_MAP_ENGINE") or "numpy").lower()


def llm_model() -> str:
    return env("HSAE_LLM_MODEL") or LABELS.llm_model


def llm_prices() -> tuple[float, float]:
    """(input, output) US dollars per million tokens: ``$HSAE_LLM_PRICE_IN``/``_OUT`` or the defaults."""
    out = []
    for name, default in (("HSAE_LLM_PRICE_IN", LABELS.llm_price_in), ("HSAE_LLM_PRICE_OUT", LABELS.llm_price_out)):
        value = env(name)
        try:
            out.append(float(value) if value is not None else default)
        except ValueError:
            from .errors import DataError

            raise DataError(f"{name} must be a number of US dollars per million tokens, got {value!r}") from None
    return out[0], out[1]


def openai_api_key() -> Optional[str]:
    return env("OPENAI_API_KEY")


def openai_base_url() -> Optional[str]:
    return env("OPENAI_BASE_URL")


def batch_poll_s() -> float:
    """Seconds between OpenAI Batch API status checks: ``$HSAE_BATCH_POLL_S`` or 30."""
    value = env("HSAE_BATCH_POLL_S")
    try:
        return max(0.0, float(value)) if value else 30.0
    except ValueError:
        raise ValueError(f"HSAE_BATCH_POLL_S must be a number of seconds, not {value!r}") from None


def fit_blas_threads() -> int:
    """BLAS threads an iterative model fit may use (:mod:`hsae_core.blas`): ``$HSAE_FIT_BLAS_THREADS`` or 1;
    0 leaves BLAS as it is."""
    value = env("HSAE_FIT_BLAS_THREADS")
    if value is None:
        return 1
    if not value.isdigit():
        from .errors import DataError

        raise DataError(f"HSAE_FIT_BLAS_THREADS must be a whole number of threads (0: no limit), got {value!r}")
    return int(value)


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
