"""Label sets: every latent named by one labeller, with its fidelity, stored per labeller in a workspace.

:func:`label_features` runs one labeller over a corpus's latents and returns a table with one row per
latent: ``latent, label, keywords, label_method`` and the fidelity columns (``fidelity_auc``,
``fidelity_f1``, ``fidelity_precision``, ``fidelity_recall``, ``fidelity_judge``), all measured on the
test part of :func:`hsae_core.fidelity.label_splits`, which no labeller reads. Labellers:

* ``keywords``: contrastive keywords of the build part (the label is the top three, comma-separated);
* ``phrases``: :class:`hsae_core.labels.PhraseInterpreter`;
* ``llm``: :class:`hsae_core.interpret.LLMInterpreter` on the build part, judged by the LLM on a
  balanced test sample (and optionally rewritten by :mod:`hsae_core.refine`).

Offline labels are scored by the embedding judge; without an embedder that can embed text (a workspace
of stored embeddings) their fidelity is unavailable (``fidelity_judge == "unavailable"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import numpy as np
import pandas as pd
import scipy.sparse as sp

from . import settings
from .errors import DataError
from .fidelity import EmbeddingJudge, label_splits
from .interpret import Interpretation
from .progress import Overall, ProgressFn

LABELLERS = settings.LABELLERS
FIDELITY_COLUMNS = ["fidelity_auc", "fidelity_f1", "fidelity_precision", "fidelity_recall", "fidelity_judge"]
COLUMNS = ["latent", "label", "keywords", "label_method", *FIDELITY_COLUMNS]
UNAVAILABLE = "unavailable"


def label_features(
    texts: Sequence[str],
    codes,
    labeller: str = "phrases",
    *,
    latents: Optional[Sequence[int]] = None,
    embeddings: Optional[np.ndarray] = None,
    embedder=None,
    llm_client=None,
    seed: int = 0,
    progress: Optional[ProgressFn] = None,
    **options,
) -> pd.DataFrame:
    """Name ``latents`` (default: every latent that fires) with ``labeller`` and score each label on the test part.

    ``embedder`` (with ``embeddings`` of ``texts`` from the same model, or they are embedded through the
    cache) enables the embedding judge. ``options`` go to the labeller (``llm``: ``refine``, ``budget``, ...).
    """
    if labeller not in LABELLERS:
        raise DataError(f"Unknown `labeller` {labeller!r}: use one of {', '.join(LABELLERS)}")
    texts = [str(t) for t in texts]
    codes = sp.csr_matrix(codes)
    if codes.shape[0] != len(texts):
        raise DataError(f"{len(texts)} texts but {codes.shape[0]} rows of SAE codes")
    n_active = np.asarray((codes > 0).sum(axis=0)).ravel()
    if latents is None:
        latents = [int(j) for j in np.flatnonzero(n_active)]
    latents = [int(j) for j in latents]
    splits = label_splits(len(texts), seed)
    # Seconds on the Yelp demo: MiniLM embeds 4,000 reviews in ~62 s (README); phrase labels take ~0.9 s a feature
    # with an empty label cache (bench/bench_progress.py); keyword labels less, LLM labels more.
    to_embed = embedder is not None and embeddings is None
    steps = Overall(
        progress, {"embedding": 0.015 * len(texts) if to_embed else 0.0, "labelling": 0.9 * max(len(latents), 1)}
    )
    if to_embed:
        from .embed import embed_texts

        embeddings = embed_texts(texts, embedder, progress=steps.stage("embedding", "embedding the texts"))
    judge = EmbeddingJudge(embedder, embeddings, codes, splits, seed=seed) if embedder is not None else None

    labelling = steps.stage("labelling", f"{labeller}: {len(latents)} features")
    if labeller == "phrases":
        from .labels import PhraseInterpreter

        interp = PhraseInterpreter(embedder=embedder, seed=seed, **options)
        items = interp.interpret(texts, codes, latents, progress=labelling, embeddings=embeddings)
    elif labeller == "keywords":
        items = _keyword_items(texts, codes, latents, splits, judge, labelling, **options)
    else:
        from .refine import llm_label_items

        items = llm_label_items(
            texts, codes, latents, splits, llm_client, judge=judge, seed=seed, progress=labelling, **options
        )
    table = items_table(items)
    dead = [j for j in range(codes.shape[1]) if j not in set(latents)]
    if dead:
        filler = pd.DataFrame(
            {
                "latent": dead,
                "label": [f"feature {j} (never fires)" for j in dead],
                "keywords": "",
                "label_method": "none",
                "fidelity_judge": UNAVAILABLE,
            }
        )
        table = pd.concat([table, filler], ignore_index=True)
    table = table.sort_values("latent", kind="stable").reset_index(drop=True)
    steps.finish(f"{labeller}: {len(latents)} features labelled")
    return table[COLUMNS]


def _keyword_items(texts, codes, latents, splits, judge, progress, **options) -> list[Interpretation]:
    from .interpret import KeywordInterpreter

    build = splits.build
    interp = options.pop("keywords", None) or KeywordInterpreter(**options)
    # relabelling the Yelp demo's 222 features: 1 s for the keywords, 11 s to score them (embedding the labels)
    steps = Overall(progress, {"keywords": 1.0, "scoring": 11.0 if judge is not None else 0.0})
    items = interp.interpret(
        [texts[i] for i in build], codes[build], latents, progress=steps.stage("keywords", "contrasting terms")
    )
    if judge is not None:
        labels = {it.latent: it.label for it in items if it.keywords}
        scores = judge.score_labels(labels, progress=steps.stage("scoring", "scoring on the test part"))
        for it in items:
            it.fidelity = scores.get(it.latent)
    return items


def items_table(items: Sequence[Interpretation]) -> pd.DataFrame:
    """One row per interpretation with the label-set columns (fidelity columns empty where unscored)."""
    rows = []
    for it in items:
        fid = it.fidelity or {}
        rows.append(
            {
                "latent": int(it.latent),
                "label": str(it.label),
                "keywords": ", ".join(map(str, it.keywords or [])),
                "label_method": str(it.method),
                "fidelity_auc": fid.get("auc"),
                "fidelity_f1": fid.get("f1"),
                "fidelity_precision": fid.get("precision"),
                "fidelity_recall": fid.get("recall"),
                "fidelity_judge": fid.get("judge") or UNAVAILABLE,
            }
        )
    table = pd.DataFrame(rows, columns=COLUMNS)
    for col in FIDELITY_COLUMNS[:-1]:
        table[col] = pd.to_numeric(table[col], errors="coerce").astype(float)
    return table


def low_fidelity(table: pd.DataFrame) -> pd.Series:
    """True for labels that scored under the bar: held-out AUC under ``settings.LABELS.low_fidelity_auc``, or,
    where only an LLM judge scored them, F1 under ``settings.LABELS.refine_f1_bar``. Unscored labels are False."""
    auc = pd.to_numeric(table["fidelity_auc"], errors="coerce")
    f1 = pd.to_numeric(table["fidelity_f1"], errors="coerce")
    llm_only = auc.isna() & table["fidelity_judge"].astype(str).str.startswith("llm")
    return (auc < settings.LABELS.low_fidelity_auc) | (llm_only & (f1 < settings.LABELS.refine_f1_bar))


def trusted(table: pd.DataFrame) -> pd.Series:
    """True for labels that were scored and are not of low fidelity (see :func:`low_fidelity`)."""
    scored = (
        pd.to_numeric(table["fidelity_auc"], errors="coerce").notna()
        | pd.to_numeric(table["fidelity_f1"], errors="coerce").notna()
    )
    return scored & ~low_fidelity(table)


def summarize(table: pd.DataFrame, column: str = "fidelity_auc") -> dict:
    """Median and quartiles of one fidelity column over the scored features."""
    values = pd.to_numeric(table[column], errors="coerce").dropna().to_numpy()
    if len(values) == 0:
        return {"n": 0, "q25": None, "median": None, "q75": None, "mean": None}
    q25, med, q75 = np.quantile(values, [0.25, 0.5, 0.75])
    return {
        "n": int(len(values)),
        "q25": round(float(q25), 4),
        "median": round(float(med), 4),
        "q75": round(float(q75), 4),
        "mean": round(float(values.mean()), 4),
    }


# ------------------------------------------------------------------------------------------- in a workspace
LABELS_DIR = "labels"
INDEX_FILE = "index.json"
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-_")


def _check_name(name: str) -> str:
    name = str(name)
    if not name or not set(name) <= _NAME_CHARS:
        raise DataError(f"A label set name uses a-z, 0-9, '-' and '_' only, got {name!r}")
    return name


def build_label_sets(
    texts: Sequence[str], codes, *, embeddings=None, embedder=None, seed: int = 0, progress: Optional[ProgressFn] = None
) -> dict[str, pd.DataFrame]:
    """The offline label sets a workspace build makes: ``keywords`` always, ``phrases`` when an embedder can
    judge them (the first key is the one to show)."""
    from .interpret import KeywordInterpreter

    shared = KeywordInterpreter(top_docs=50)  # both sets count the same build texts once
    sets = {}
    if embedder is not None:
        sets["phrases"] = label_features(
            texts,
            codes,
            "phrases",
            embeddings=embeddings,
            embedder=embedder,
            seed=seed,
            progress=progress,
            keywords=shared,
        )
    sets["keywords"] = label_features(
        texts,
        codes,
        "keywords",
        embeddings=embeddings,
        embedder=embedder,
        seed=seed,
        progress=progress,
        keywords=shared,
    )
    return sets


def merge_label_folder(staged, target, codes_key: Optional[str]) -> None:
    """Move a staged ``labels/`` folder's sets into ``target``'s, keeping its other sets and a still-valid choice."""
    import os
    from pathlib import Path

    from .fsutil import atomic_write_json

    src, dst = Path(staged) / LABELS_DIR, Path(target) / LABELS_DIR
    if not src.is_dir():
        return
    dst.mkdir(parents=True, exist_ok=True)
    new, old = read_index(Path(staged)), read_index(Path(target))
    for name in new["sets"]:
        os.replace(src / f"{name}.parquet", dst / f"{name}.parquet")
    shown = old.get("shown")
    keep_choice = shown in old["sets"] and old["sets"][shown].get("codes_key") == codes_key and shown not in new["sets"]
    index = {"shown": shown if keep_choice else new.get("shown"), "sets": {**old["sets"], **new["sets"]}}
    atomic_write_json(dst / INDEX_FILE, index, indent=2, default=str)


def read_index(ws_path) -> dict:
    """``labels/index.json`` of a workspace folder: {"shown": name, "sets": {name: {...}}} (empty when absent)."""
    import json
    from pathlib import Path

    path = Path(ws_path) / LABELS_DIR / INDEX_FILE
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"shown": None, "sets": {}}
    if not isinstance(index, dict) or not isinstance(index.get("sets"), dict):
        return {"shown": None, "sets": {}}
    return index


def write_label_set(
    ws_path, name: str, table: pd.DataFrame, *, codes_key: str, show: bool = True, meta: Optional[dict] = None
) -> None:
    """Write ``labels/<name>.parquet`` and its index entry atomically (a reader never sees half a file)."""
    import time
    from pathlib import Path

    from .fsutil import atomic_write, atomic_write_json

    name = _check_name(name)
    folder = Path(ws_path) / LABELS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / f"{name}.parquet", lambda fh: table[COLUMNS].to_parquet(fh, index=False))
    index = read_index(ws_path)
    index["sets"][name] = {
        "codes_key": codes_key,
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "n_scored": int(max(table["fidelity_auc"].notna().sum(), table["fidelity_f1"].notna().sum())),
        "auc": summarize(table, "fidelity_auc"),
        "f1": summarize(table, "fidelity_f1"),
        **(meta or {}),
    }
    if show or not index.get("shown"):
        index["shown"] = name
    atomic_write_json(folder / INDEX_FILE, index, indent=2, default=str)


def has_label_sets(ws_path, codes_key: Optional[str]) -> bool:
    """Whether the workspace folder holds at least one label set made for these codes."""
    from pathlib import Path

    return any(
        meta.get("codes_key") == codes_key and (Path(ws_path) / LABELS_DIR / f"{n}.parquet").is_file()
        for n, meta in read_index(ws_path)["sets"].items()
    )


def label_sets(ws) -> list[str]:
    """Names of the workspace's label sets made for its current SAE codes, the shown one first."""
    from pathlib import Path

    index = read_index(ws.path)
    key = ws.manifest.get("steps", {}).get("codes")
    names = [
        n
        for n, meta in index["sets"].items()
        if meta.get("codes_key") == key and (Path(ws.path) / LABELS_DIR / f"{n}.parquet").is_file()
    ]
    shown = index.get("shown")
    return sorted(names, key=lambda n: (n != shown, n))


def load_label_set(ws, name: str) -> pd.DataFrame:
    """One label set of a workspace (columns :data:`COLUMNS`)."""
    from pathlib import Path

    name = _check_name(name)
    if name not in label_sets(ws):
        known = ", ".join(label_sets(ws)) or "none"
        raise DataError(
            f"The workspace has no current label set {name!r} (label sets: {known}); "
            "make it with `hsae relabel` or the dashboard's Relabel control"
        )
    try:
        table = pd.read_parquet(Path(ws.path) / LABELS_DIR / f"{name}.parquet")
    except (OSError, ValueError) as exc:
        from .errors import StorageError

        raise StorageError(
            f"Label set {name!r} of {ws.path} is damaged or unreadable ({type(exc).__name__}); "
            "make it again with `hsae relabel`"
        ) from None
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise DataError(f"Label set {name!r} lacks columns {', '.join(missing)}; make it again with `hsae relabel`")
    return table[COLUMNS]


def features_with_labels(ws, name: Optional[str] = None) -> pd.DataFrame:
    """The workspace's feature table with the label columns of label set ``name`` (default: the shown set).

    A workspace without label sets keeps its own labels, with empty fidelity columns.
    """
    table = ws.features.copy()
    names = label_sets(ws)
    name = name if name is not None else (names[0] if names else None)
    if name is None:
        for col in FIDELITY_COLUMNS:
            if col not in table.columns:
                table[col] = UNAVAILABLE if col == "fidelity_judge" else np.nan
        return table
    labels = load_label_set(ws, name).set_index("latent")
    for col in COLUMNS[1:]:
        table[col] = labels[col].reindex(table["latent"]).to_numpy()
    table["label"] = table["label"].fillna(table["latent"].map(lambda j: f"feature {j}"))
    return table


def relabel_workspace(
    ws,
    labeller: str = "phrases",
    *,
    name: Optional[str] = None,
    llm_client=None,
    budget=None,
    refine: bool = False,
    show: bool = True,
    seed: int = 0,
    progress: Optional[ProgressFn] = None,
    **options,
) -> pd.DataFrame:
    """Label every firing feature of workspace ``ws`` with ``labeller`` and store it as label set ``name``.

    Offline labels are judged with the workspace's own embedder (the embeddings are already stored);
    a workspace of stored embeddings cannot embed a label, so its ``phrases`` fall back to keywords
    and fidelity is marked unavailable. ``llm``: see :func:`hsae_core.refine.llm_label_items`.
    """
    if labeller not in LABELLERS:
        raise DataError(f"Unknown `labeller` {labeller!r}: use one of {', '.join(LABELLERS)}")
    embedder = workspace_judge_embedder(ws)
    used = labeller
    if labeller == "phrases" and embedder is None:
        used = "keywords"
    if labeller == "llm":
        llm_client = _checked_llm_client(llm_client)
        options.update(refine=refine, budget=budget)
    table = label_features(
        ws.texts,
        ws.codes,
        used,
        embeddings=ws.embeddings if embedder is not None else None,
        embedder=embedder,
        llm_client=llm_client,
        seed=seed,
        progress=progress,
        **options,
    )
    if labeller == "llm":
        _stop_if_every_call_failed(llm_client)
    meta = {"labeller": labeller}
    if used != labeller:
        meta["note"] = "phrases need a text embedder; this workspace has stored embeddings only"
    if labeller == "llm" and budget is not None:
        meta["budget"] = budget.describe()
    from .locking import WorkspaceLock

    with WorkspaceLock(ws.path):  # not while a build replaces the codes these labels were made for
        current = read_manifest_codes_key(ws.path)
        if current != ws.manifest.get("steps", {}).get("codes"):
            from .errors import WorkspaceChangedError

            raise WorkspaceChangedError(
                f"The workspace {ws.path} was rebuilt while it was being labelled; open it again and relabel"
            )
        write_label_set(ws.path, name or used, table, codes_key=current, show=show, meta=meta)
    return table


def read_manifest_codes_key(ws_path) -> Optional[str]:
    """The codes key of the workspace manifest on disk now (None when it cannot be read)."""
    import json
    from pathlib import Path

    from .workspace import MANIFEST

    try:
        return json.loads((Path(ws_path) / MANIFEST).read_text()).get("steps", {}).get("codes")
    except (OSError, ValueError, AttributeError):
        return None


def _checked_llm_client(client):
    """The given client (or one from the environment), after one cheap call proving the endpoint works."""
    if client is None:
        from .errors import LLMError
        from .llm import LLMClient

        if not settings.openai_api_key():
            raise LLMError(
                "LLM labels need an LLM: set OPENAI_API_KEY (and OPENAI_BASE_URL for a local server), "
                "or use the `labeller` 'phrases' or 'keywords'"
            )
        client = LLMClient()
    if hasattr(client, "check"):
        client.check()  # an unreachable endpoint or a refused key fails now, before any labelling
    return client


def _stop_if_every_call_failed(client) -> None:
    """Nothing is written when every LLM call failed: the set would be keyword fallbacks only."""
    stats = getattr(client, "stats", {}) or {}
    failed = stats.get("failures", 0)
    if failed and not (getattr(client, "answered", 0) + stats.get("cache_hits", 0)):
        from .errors import LLMError

        raise LLMError(
            f"Every LLM call failed ({failed}); no label set was written. Check the endpoint and "
            "the model, then relabel"
        )


def workspace_judge_embedder(ws):
    """The embedder that made the workspace's embeddings, when it can embed new text; otherwise None."""
    from .errors import HsaeError

    try:
        return ws.embedder()
    except HsaeError:
        return None
