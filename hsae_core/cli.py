"""The ``hsae`` command: one subcommand per job; bad input exits 2 with one line."""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path
from typing import Optional

import numpy as np

from . import settings, validate
from .data import markup_line
from .errors import DataError, HsaeError
from .fsutil import check_cache_dir, check_output_dir, check_output_file, describe_os_error
from .settings import LABELS, SAE, SELECTION


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake in one line with exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _progress(stage: str):
    from .progress import TqdmProgress

    return TqdmProgress(stage)


def _overall_progress(label: str):
    """One bar, with the time left, over work that reports its overall progress itself (a hypothesis run, a
    relabelling; hsae_core.progress.Overall). Use it as a context manager: it reaches 100% only on success."""
    from .progress import ONE_BAR, TqdmStaged

    return TqdmStaged(label, ONE_BAR)


def _build_progress():
    """One bar over every step of a workspace build, with the time left."""
    from .progress import TqdmStaged
    from .workspace import BUILD_WEIGHTS

    return TqdmStaged("building", BUILD_WEIGHTS)


def _text_column(args, frame) -> str:
    """``--text-col``, or the column whose content reads as prose (said on stderr), as the dashboard's upload does."""
    if args.text_col:
        return args.text_col
    from .columns import text_columns

    found = text_columns(frame)
    if not found:
        shown = ", ".join(map(str, list(frame.columns)[:20]))
        raise DataError(f"No column of the table reads as text; give --text-col (the table has: {shown})")
    also = f"; also prose: {', '.join(map(str, found[1:4]))}" if len(found) > 1 else ""
    print(f"Text column: '{found[0]}' (read from the content{also}; --text-col to choose)", file=sys.stderr)
    args.text_col = found[0]
    return found[0]


def _embed_corpus(texts, embedder_spec, stage="embedding", batch=False, device=settings.DEVICE):
    from .embed import embed_texts, get_embedder

    embedder = get_embedder(embedder_spec, batch=batch, device=device)
    return embed_texts(texts, embedder, progress=_progress(stage)), embedder.model_id


# ---------------------------------------------------------------------------------------- hypothesize
def cmd_hypothesize(args) -> int:
    from .pipeline import HypothesisConfig, hypothesize, warning_lines, write_run

    _check_batch(args, uses_llm="llm" in (args.interpreter, args.annotator))
    if (args.split_col is None) != (args.holdout_value is None):
        raise DataError("--split-col and --holdout-value go together: the holdout is the rows where COL equals VALUE")
    if args.split_col is not None and args.holdout is not None:
        raise DataError("Give either --holdout (a separate table) or --split-col (rows of this table), not both")
    if args.holdout_frac is not None and args.holdout is not None:
        raise DataError("Give either --holdout (a separate table) or --holdout-frac (a share of this one), not both")
    if args.concepts:
        _apply_concept_settings(args)
    config = HypothesisConfig(
        m=args.m,
        k=args.k,
        select=args.select,
        n=args.n,
        rows_per_hypothesis=args.rows_per_hypothesis,
        interpreter=args.interpreter,
        annotator=args.annotator,
        seed=args.seed,
        top_n=args.top_n,
        target_kind=args.target_kind,
        target_class=args.target_class,
        target_scale=args.target_scale,
        batch_topk=args.batch_topk,
        matryoshka=args.matryoshka,
        levels=args.levels,
        max_epochs=args.epochs,
        holdout_frac=SELECTION.holdout_frac if args.holdout_frac is None else args.holdout_frac,
        device=args.device,
        group_col=args.group_col,
        split_col=args.split_col,
        holdout_value=args.holdout_value,
        dedupe=args.dedupe,
        controls=tuple(args.control or ()),
        presence=args.presence,
        max_overlap=args.max_overlap,
        cache_sae=not args.no_sae_cache,
    )
    config.validate(pretrained=bool(args.sae))  # before reading, embedding or training anything
    from .runstore import check_run_folder

    check_run_folder(args.out)
    check_cache_dir(settings.cache_dir())
    sae = _load_sae(args.sae, args.device) if args.sae else None
    if sae is not None:
        if args.n > sae.config_.m:
            raise DataError(f"`n` ({args.n}) is more than the SAE's {sae.config_.m} latents")
    else:
        _check_memory(_latents(args), args.embedder)
    client = _llm_client(args) if "llm" in (args.interpreter, args.annotator) else None
    data = args.data
    if not args.text_col:
        from .data import read_table

        data = read_table(args.data)
        _text_column(args, data)
    with _overall_progress("hypotheses") as bar:
        run = hypothesize(
            data,
            text_col=args.text_col,
            target_col=args.target_col,
            holdout=args.holdout,
            config=config,
            embedder=_embedder(args),
            sae=sae,
            llm_client=client,
            out_dir=None,
            progress=bar,
            embed_progress=_progress("embedding"),
            on_warning=lambda warning: print(f"warning: {warning}", file=sys.stderr),  # before the long stages
        )
    run.summary["command"] = "hsae " + " ".join(sys.argv[1:])
    write_run(run, args.out)
    print(run.report(warnings=False))
    for line in warning_lines(run.summary):  # the split's again: the table has pushed them up
        print(line, file=sys.stderr)
    print(f"\nWrote {Path(args.out) / 'hypotheses.csv'}, summary.json, holdout_annotations.parquet and sae/")
    return 0


def _llm_client(args):
    from .llm import LLMClient

    return LLMClient(model=args.llm_model, batch=getattr(args, "batch", False))


def _embedder(args):
    """The ``--embedder`` spec, or the embedder itself when ``--batch`` (an OpenAI embedder through the Batch
    API) or ``--device`` asks for more than the spec says."""
    batch = getattr(args, "batch", False) and str(args.embedder or "").startswith("openai")
    device = getattr(args, "device", settings.DEVICE)
    if batch or device != settings.DEVICE:
        from .embed import get_embedder

        return get_embedder(args.embedder, batch=batch, device=device)
    return args.embedder


def _check_batch(args, uses_llm: bool = False) -> None:
    """``--batch`` must have something to send to the OpenAI Batch API."""
    if getattr(args, "batch", False) and not uses_llm and not str(args.embedder or "").startswith("openai"):
        raise HsaeError(
            "--batch sends OpenAI requests through the Batch API: use it with --embedder openai:MODEL"
            + (" or --interpreter/--annotator llm" if hasattr(args, "interpreter") else "")
        )


def _load_sae(spec: str, device: str = settings.DEVICE):
    from .hub import load_sae

    sae = load_sae(spec)
    sae.device = device
    return sae


def _latents(args) -> int:
    """Latents of the SAE the options describe: the main m plus every level's."""
    return args.m + sum(s for s, _ in args.levels)


def _check_memory(m: int, embedder_spec, batch_size: int = SAE.batch_size) -> None:
    """Refuse an SAE too large to train here, before reading anything (when the embedding width is known
    without loading a model; otherwise training checks it)."""
    from .embed import declared_dim

    d = declared_dim(embedder_spec)
    if d is not None:
        validate.check_fits_memory(m, d, batch_size)


def _check_sae_width(sae, embedder_spec) -> None:
    """Refuse early (before embedding anything) when the SAE cannot read this embedder's vectors."""
    from .embed import get_embedder
    from .hub import check_compatible

    embedder = get_embedder(embedder_spec)
    check_compatible(sae, embedder.model_id, embedder.dim)


# ---------------------------------------------------------------------------------------- embed / train
def cmd_embed(args) -> int:
    from .data import prepare_corpus, read_table
    from .fsutil import atomic_write

    _check_batch(args)
    out = Path(args.out)
    if out.suffix.lower() != ".npy":
        raise DataError(f"`out` must be a .npy file name (got {out.name}); for example {out.with_suffix('.npy').name}")
    check_output_file(out, "embeddings file")
    check_cache_dir(settings.cache_dir())
    frame = read_table(args.data)
    corpus = prepare_corpus(frame, _text_column(args, frame))
    X, model_id = _embed_corpus(corpus.texts, args.embedder, batch=args.batch, device=args.device)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda fh: np.save(fh, X))
    dropped = corpus.counts["dropped_empty_text"]
    print(
        f"Embedded {len(X)} texts with {model_id} ({X.shape[1]}-d) -> {out}"
        + (f"; dropped {dropped} empty texts" if dropped else "")
    )
    markup = markup_line(corpus.counts)
    if markup:
        print(markup)
    return 0


def cmd_train(args) -> int:
    from .sae import SparseAutoencoder, holds_only_an_sae

    if args.k > args.m:
        raise DataError(f"`k` ({args.k}) cannot exceed `m` ({args.m})")
    check_output_dir(args.out, "SAE folder", allow_nonempty=holds_only_an_sae)
    sae = SparseAutoencoder(
        m=args.m,
        k=args.k,
        batch_topk=args.batch_topk,
        matryoshka=args.matryoshka,
        levels=args.levels,
        max_epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        device=args.device,
    )
    sae._validate_params()
    if args.embeddings:
        X = read_embeddings(args.embeddings)
        if len(X) < settings.MIN_SAE_ROWS:
            raise DataError(f"Only {len(X)} embedding rows; training an SAE needs at least {settings.MIN_SAE_ROWS}")
        validate.check_fits_memory(_latents(args), X.shape[1], args.batch_size)
        model_id = args.embedding_model
    else:
        if not args.data:
            raise HsaeError("Give --embeddings FILE.npy, or --data (and --text-col)")
        from .data import prepare_corpus, read_table

        check_cache_dir(settings.cache_dir())
        _check_memory(_latents(args), args.embedder, args.batch_size)
        frame = read_table(args.data)
        corpus = prepare_corpus(frame, _text_column(args, frame), min_rows=settings.MIN_SAE_ROWS)
        X, model_id = _embed_corpus(corpus.texts, args.embedder, device=args.device)
    sae.set_params(embedding_model=model_id)
    sae.fit(X, progress=_progress("training"))
    sae.save(args.out)
    m = sae.metrics_
    print(
        f"Trained SAE m={args.m} k={args.k}{'' if not args.levels else ' levels ' + settings.format_levels(args.levels, ',')} on {len(X)} rows in {m['train_seconds']} s: "
        f"val nMSE {m['val_nmse'] if m['val_nmse'] is not None else float('nan'):.4f}, "
        f"dead latents {m['dead_frac']:.1%} -> {args.out}"
    )
    return 0


def read_embeddings(path) -> np.ndarray:
    """An (N, d) array of numbers from a .npy file, or one line saying what the file really holds."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            magic = fh.read(6)
    except OSError as exc:
        raise DataError(f"Could not read embeddings {path}: {exc.strerror}") from None
    if magic != b"\x93NUMPY":
        raise DataError(f"{path} is not a .npy file (no NumPy header); write embeddings with `hsae embed` or np.save")
    try:
        X = np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc):
            raise DataError(f"{path} holds Python objects, not numbers; save a float array (np.save) instead") from None
        raise DataError(f"Could not read embeddings {path}: {str(exc).splitlines()[0]}") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"Could not read embeddings {path}: {exc}") from None
    if not np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.complexfloating):
        raise DataError(f"{path} holds {X.dtype} values, not real numbers; embeddings must be a float array")
    if X.ndim != 2 or min(X.shape) == 0:
        raise DataError(f"{path} has shape {X.shape}; embeddings must be a non-empty 2-D array (rows x dimensions)")
    return X


# ---------------------------------------------------------------------------------------- build
def cmd_build(args) -> int:
    from .data import read_table, require_columns
    from .workspace import build_pretrained_workspace, build_workspace, check_sae_shape, check_workspace_folder

    _check_batch(args)
    if args.corpus:
        return _build_published(args)
    if not args.data:
        raise HsaeError("Give --data (and --text-col), or --corpus NAME for a published corpus")
    if args.embeddings and args.embedding_col:
        raise HsaeError("Give stored embeddings as --embeddings FILE.npy or as --embedding-col, not both")
    if args.embedding_col and args.embedding_col == args.text_col:
        raise DataError(
            f"'{args.text_col}' cannot be both `text_col` and `embedding_col`; pick the column holding "
            "the stored embeddings"
        )
    if not args.sae:
        check_sae_shape(args.m, args.k)
    check_workspace_folder(args.out)
    stored = bool(args.embedding_col or args.embeddings)
    if not stored:
        check_cache_dir(settings.cache_dir())
        if not args.sae:
            _check_memory(_latents(args), args.embedder)
    if args.engine == "ray":
        frame = read_table(args.data)
        _text_column(args, frame)
        return _built(_build_with_ray(args, frame), args.out)
    embeddings = None
    if args.embeddings:
        from .chunked import load_embeddings

        embeddings = load_embeddings(args.embeddings)  # memory-mapped: never read whole into memory
    if args.embedding_col and Path(args.data).suffix.lower() in (".parquet", ".pq"):
        from .corpora import parquet_embeddings

        # the vector column is read batch by batch into one float32 matrix (no Python list per row)
        frame, embeddings = parquet_embeddings(args.data, args.embedding_col)
        require_columns(frame, _text_column(args, frame))
    else:
        frame = read_table(args.data)
        if args.embedding_col:
            from .corpora import embeddings_from_column

            require_columns(frame, args.embedding_col)
            embeddings = embeddings_from_column(frame, args.embedding_col)
            frame = frame.drop(columns=[args.embedding_col])
        require_columns(frame, _text_column(args, frame))
    bar = _build_progress()
    if args.sae and embeddings is not None:  # the dashboard's "Open a pretrained SAE" runs this same function
        with bar:
            ws = build_pretrained_workspace(
                args.out,
                args.sae,
                frame=frame,
                text_col=args.text_col,
                embeddings=embeddings,
                progress=bar,
                name=args.name,
                device=args.device,
                layout=not args.no_map,
            )
    else:
        sae = _load_sae(args.sae, args.device) if args.sae else None
        if sae is not None:  # refuse a width/model mismatch before any embedding or indexing work
            _check_sae_width(sae, args.embedder)
        with bar:
            ws = build_workspace(
                args.out,
                frame=frame,
                text_col=args.text_col,
                m=args.m,
                k=args.k,
                seed=args.seed,
                levels=args.levels,
                embedder_spec=args.embedder,
                embeddings=embeddings,
                sae=sae,
                progress=bar,
                name=args.name,
                batch=args.batch,
                device=args.device,
                layout=not args.no_map,
                max_epochs=args.epochs,
            )
    return _built(ws, args.out, bar.seconds)


def _step_seconds(seconds: dict) -> str:
    """``'table 0.1 s, embeddings 113.5 s, ...'``: the seconds each step of a build took, as its bar timed them."""
    return ", ".join(f"{name} {sec:.1f} s" for name, sec in seconds.items())


def _built(ws, out, seconds: Optional[dict] = None) -> int:
    """Say where the built workspace is, how to open it and, given the bar's ``seconds``, what each step took."""
    from .workspace import dashboard_command

    if seconds:
        from .progress import format_seconds

        print(f"Built in {format_seconds(sum(seconds.values()))} ({_step_seconds(seconds)})")
    index = ws.index_info
    how = (
        f"IVF index, nprobe {index['nprobe']} (recall@10 {index['recall_at_10']:.3f} against exact)"
        if index.get("kind") == "ivf"
        else "exact index"
    )
    print(f"Workspace ready: {out} ({len(ws):,} documents, {how}). Open it with: {dashboard_command(ws.path)}")
    markup = markup_line(ws.manifest.get("counts") or {})
    if markup:
        print(markup)
    moved = ws.moved_runs_line()
    if moved:
        print(moved)
    return 0


def _build_published(args) -> int:
    """`hsae build --corpus csLG [--sae csLG_16_9216_32]`: a published corpus's texts and stored embeddings."""
    from .corpora import TEXT_COLUMN, load_published_corpus
    from .workspace import build_pretrained_workspace, build_workspace

    if args.data or args.embedding_col:
        raise HsaeError("--corpus brings its own texts and embeddings: leave out --data and --embedding-col")
    if args.engine == "ray":
        raise HsaeError("--corpus builds in this process; leave out --engine ray")
    _check_workspace_folder(args.out)
    frame, X = load_published_corpus(
        args.corpus, max_rows=args.max_rows, embeddings_path=args.embeddings, progress=_progress("corpus")
    )
    name = args.name or f"{args.corpus} ({len(frame):,} documents)"
    bar = _build_progress()
    with bar:
        if args.sae:
            ws = build_pretrained_workspace(
                args.out,
                args.sae,
                frame=frame,
                text_col=TEXT_COLUMN,
                embeddings=X,
                progress=bar,
                name=name,
                device=args.device,
                layout=not args.no_map,
            )
        else:
            ws = build_workspace(
                args.out,
                frame=frame,
                text_col=TEXT_COLUMN,
                m=args.m,
                k=args.k,
                seed=args.seed,
                levels=args.levels,
                embeddings=X,
                progress=bar,
                name=name,
                device=args.device,
                layout=not args.no_map,
                max_epochs=args.epochs,
            )
    return _built(ws, args.out, bar.seconds)


def _check_workspace_folder(path):
    from .workspace import check_workspace_folder

    return check_workspace_folder(path)


def _build_with_ray(args, frame):
    """``hsae build --engine ray``: embedding and encoding in Ray Data actors; stored embeddings come from
    --embedding-col or a .npy beside the table (same name, one row per table row)."""
    from .corpora import embeddings_from_column
    from .data import require_columns
    from .ray_engine import build_workspace_ray, require_ray

    require_ray()  # before any work: a missing extra is one line
    if args.batch:
        raise HsaeError("--batch (the OpenAI Batch API) does not combine with --engine ray; drop one of them")
    require_columns(frame, args.text_col, args.embedding_col)
    embeddings = None
    if args.embedding_col:
        embeddings = embeddings_from_column(frame, args.embedding_col)
        frame = frame.drop(columns=[args.embedding_col])
    elif args.embeddings:
        from .chunked import load_embeddings

        embeddings = load_embeddings(args.embeddings)
    elif Path(args.data).with_suffix(".npy").is_file():
        npy = Path(args.data).with_suffix(".npy")
        try:
            embeddings = np.load(npy, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise HsaeError(f"Could not read embeddings {npy}: {exc}") from None
        print(f"Using the stored embeddings in {npy}", file=sys.stderr)
    sae = _load_sae(args.sae, args.device) if args.sae else None
    if sae is not None and embeddings is None:
        _check_sae_width(sae, args.embedder)
    return build_workspace_ray(
        args.out,
        frame=frame,
        text_col=args.text_col,
        m=args.m,
        k=args.k,
        seed=args.seed,
        levels=args.levels,
        embedder_spec=args.embedder,
        embeddings=embeddings,
        sae=sae,
        device=args.device,
        address=args.ray_address,
        shard_rows=args.shard_rows,
        progress=_progress("building"),
        name=args.name,
    )


WORKSPACE_HELP = "workspace folder (from 'hsae build' or the dashboard), or its name in $HSAE_WORKSPACES_DIR"


def _open_workspace(given: str):
    """The workspace ``given`` names: a folder, or the name of one under $HSAE_WORKSPACES_DIR as the dashboard's
    sidebar lists it (``hsae features yelp-demo`` after ``hsae demo``). A folder of that name here comes first."""
    from .workspace import MANIFEST, Workspace, workspaces_dir

    path = Path(given)
    named = workspaces_dir() / given
    if not path.exists() and path.name == given and (named / MANIFEST).is_file():
        return Workspace.open(named)
    return Workspace.open(path)


# ---------------------------------------------------------------------------------------- relabel
def cmd_relabel(args) -> int:
    from .labelsets import relabel_workspace, summarize

    ws = _open_workspace(args.workspace)
    client = budget = None
    if args.labeller == "llm":
        from .refine import Budget, describe_estimate, estimate_llm_labels

        budget = Budget(max_calls=args.max_calls, max_tokens=args.max_tokens)
        n_features = int((ws.features["n_active"] > 0).sum())
        est = estimate_llm_labels(ws.texts, n_features, refine=args.refine, max_rounds=args.max_rounds, budget=budget)
        print(describe_estimate(est, budget), flush=True)  # before any call is made
        if args.dry_run:
            return 0
        client = _llm_client(args)
    elif args.dry_run:
        print(f"{args.labeller} labels are made offline: no LLM calls, no cost")
        return 0
    llm_options = dict(f1_bar=args.f1_bar, max_rounds=args.max_rounds) if args.labeller == "llm" else {}
    with _overall_progress("labelling") as bar:
        table = relabel_workspace(
            ws,
            args.labeller,
            name=args.name,
            llm_client=client,
            budget=budget,
            refine=args.refine,
            progress=bar,
            **llm_options,
        )
    auc, f1 = summarize(table, "fidelity_auc"), summarize(table, "fidelity_f1")
    name = args.name or (
        args.labeller if table["fidelity_judge"].ne("unavailable").any() or args.labeller != "phrases" else "keywords"
    )
    print(
        f"Label set '{name}' written to {Path(args.workspace) / 'labels' / (name + '.parquet')} "
        f"({int((table['label_method'] != 'none').sum())} features; shown by default)"
    )
    judge = table["fidelity_judge"].iloc[0] if len(table) else "unavailable"
    if auc["n"]:
        print(
            f"held-out fidelity (embedding judge, test part): AUC median {auc['median']:.3f} "
            f"[{auc['q25']:.3f}, {auc['q75']:.3f}] over {auc['n']} features"
        )
    if f1["n"]:
        print(f"held-out F1 (test part): median {f1['median']:.3f} [{f1['q25']:.3f}, {f1['q75']:.3f}]")
    if not auc["n"] and not f1["n"]:
        print(f"fidelity unavailable ({judge}): this workspace cannot embed text to judge labels")
    if budget is not None:
        print(budget.describe())
    return 0


# ---------------------------------------------------------------------------------------- features
def cmd_features(args) -> int:
    """A workspace's features in the terminal: the list (broad levels first), or one feature's page."""
    from .feature_report import feature_page, features_listing, workspace_correlations
    from .labelsets import features_with_labels

    if args.correlate is None and (args.value is not None or args.control):
        raise DataError("--value and --control go with --correlate COLUMN")
    if args.correlate is not None and args.feature is not None:
        raise DataError("--correlate lists the features; --feature shows one: give one of them")
    ws = _open_workspace(args.workspace)
    table = features_with_labels(ws, args.labels)
    if args.feature is not None:
        print(feature_page(ws, table, args.feature, docs=args.docs))
        return 0
    correlations = None
    if args.correlate is not None:
        correlations = workspace_correlations(ws, args.correlate, args.value, tuple(args.control or ()))
    print(features_listing(ws, table, level=args.level, query=args.search, n=args.n, correlations=correlations))
    return 0


# ---------------------------------------------------------------------------------------- demo
def cmd_demo(args) -> int:
    """Build the Yelp demo workspace in the terminal (one progress bar over every step), unless it is there."""
    import time

    from .progress import TqdmStaged, format_seconds
    from .workspace import BUILD_WEIGHTS, DEMO_NAME, Workspace, build_demo_workspace, workspaces_dir

    fixed = settings.fixed_workspace()
    if fixed and not args.root:
        print(f"HSAE_WORKSPACE is set: the dashboard opens {fixed}; no demo workspace needed")
        return 0
    root = Path(args.root) if args.root else workspaces_dir()
    if not args.rebuild:
        try:
            ws = Workspace.open(root / DEMO_NAME)
        except HsaeError:
            pass
        else:
            print(f"Demo workspace ready: {ws.path} ({len(ws):,} reviews; --rebuild to build it again)")
            return 0
    start = time.perf_counter()
    bar = TqdmStaged("Building the demo workspace", BUILD_WEIGHTS)
    with bar:
        ws = build_demo_workspace(root, progress=bar)
    print(
        f"Demo workspace ready: {ws.path} ({len(ws):,} reviews) in {format_seconds(time.perf_counter() - start)} "
        f"({_step_seconds(bar.seconds)})"
    )
    return 0


# ---------------------------------------------------------------------------------------- models / push
def cmd_models(args) -> int:
    from .hub import registry

    rows = [e for e in registry() if args.domain is None or e["domain"].lower() == args.domain.lower()]
    if not rows:
        raise HsaeError(f"No known SAEs for domain '{args.domain}'")
    print(f"{'name':<22} {'k':>4} {'n':>6} {'d_in':>5}  embedding model                 spec for --sae")
    for e in rows:
        print(
            f"{e['name']:<22} {e['k']:>4} {e['n']:>6} {e['d_in']:>5}  {e['embedding_model']:<31} "
            f"hub:{e['repo_id']}/{e['filename']}"
        )
    corpora = {e["domain"]: e.get("corpus", {}).get("hub_dataset") for e in rows}
    print("\nCorpora: " + "; ".join(f"{d}: {c or 'unknown'}" for d, c in corpora.items()))
    return 0


def cmd_push(args) -> int:
    from .hub import push_sae

    url = push_sae(args.folder, args.repo, private=args.private, commit_message=args.message)
    print(f"Pushed {args.folder} to {url} (model card written to {Path(args.folder) / 'README.md'})")
    return 0


# ---------------------------------------------------------------------------------------- parser
BATCH_HELP = (
    "send OpenAI requests (openai: embeddings, LLM naming/annotation) through the Batch API: half the "
    "price, may take up to 24 h; run the same command again to resume"
)


def _installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hsae")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "(not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="hsae", description="Sparse autoencoders over text embeddings: concepts, search, hypotheses.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_installed_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def device_option(p):
        p.add_argument(
            "--device",
            default=settings.DEVICE,
            choices=settings.DEVICES,
            help="where embedding and the SAE run: auto (CUDA when present; half-precision embedder), cpu or cuda",
        )

    def sae_options(p):
        p.add_argument("--m", type=_positive_int, default=SAE.m, help="number of latents (default %(default)s)")
        p.add_argument("--k", type=_positive_int, default=SAE.k, help="active latents per text (default %(default)s)")
        p.add_argument(
            "--levels",
            type=_levels,
            default=SAE.levels,
            help="further SAE levels beside --m/--k, as latents/active pairs (4/1: almost every text in one of 4 "
            f"broad groups); 'none' for one dictionary (default {settings.format_levels(SAE.levels, ',')})",
        )
        p.add_argument("--seed", type=_seed, default=SAE.seed, help="random seed, 0 to 2**32-1")
        p.add_argument(
            "--embedder",
            default=None,
            help="embedding model: default offline all-MiniLM-L6-v2; a sentence-transformers name/folder; "
            "or openai:text-embedding-3-small",
        )
        device_option(p)

    def training_options(p):
        p.add_argument(
            "--epochs",
            type=_positive_int,
            default=SAE.max_epochs,
            help="maximum epochs; early stopping on a validation split",
        )
        p.add_argument("--batch-topk", action="store_true", help="batch-top-k instead of per-row top-k")
        p.add_argument(
            "--matryoshka",
            type=_prefix_list,
            default=SAE.matryoshka,
            help="nested prefix sizes, e.g. 16,64; 'auto' (4,16,64,... below m) or 'none' (the default); "
            "with --levels none only",
        )

    p = sub.add_parser("hypothesize", help="find latents that predict a target and validate them on a holdout")
    p.add_argument("--data", required=True, help="CSV, TSV, JSON, JSONL or Parquet table")
    p.add_argument(
        "--text-col",
        "--text",
        default=None,
        help="the column holding the texts (default: the one whose content reads as prose)",
    )
    p.add_argument("--target-col", "--target", required=True, help="the column to explain (--target for short)")
    p.add_argument("--holdout", default=None, help="a separate holdout table (same columns)")
    p.add_argument(
        "--holdout-frac",
        type=_fraction,
        default=None,
        help=f"holdout share of the table when no --holdout is given (default {SELECTION.holdout_frac})",
    )
    p.add_argument(
        "--group-col",
        default=None,
        help="keep rows with the same value of this column on one side (e.g. an A/B test id)",
    )
    p.add_argument(
        "--split-col",
        default=None,
        metavar="COL",
        help="hold out the rows where this column equals --holdout-value (e.g. a 'split' column, or a later year)",
    )
    p.add_argument("--holdout-value", default=None, metavar="VALUE", help="with --split-col: the holdout's value")
    p.add_argument(
        "--dedupe",
        action="store_true",
        help="drop texts identical up to case, punctuation and spacing before splitting",
    )
    p.add_argument(
        "--control",
        action="append",
        metavar="COL",
        help="adjust for this column (repeat for more): hypotheses are chosen and tested beyond it, e.g. a "
        "publication date, a field, or an A/B test id (a column of many values is compared within, and "
        "without --group-col, --split-col or --holdout the holdout is then whole groups of it)",
    )
    p.add_argument("--target-kind", default="auto", choices=settings.TARGET_KINDS)
    p.add_argument(
        "--target-scale",
        default="auto",
        choices=settings.TARGET_SCALES,
        help="a continuous target: auto models a heavy-tailed count (citations, clicks; values >= 0, skewness > 2 "
        "that the log at least halves) as log(1 + y) and says so; none: as it is",
    )
    p.add_argument(
        "--target-class",
        default=None,
        help="a class of the target: of several classes, analyse only this one; of a yes/no target, the value that "
        "counts as 1 (default: the later one, e.g. 1 of 0/1, reject of accept/reject)",
    )
    p.add_argument(
        "--select",
        default=SELECTION.method,
        choices=settings.SELECT_METHODS,
        help=f"how latents become hypotheses (default {SELECTION.method}: each next one adds most to those chosen; "
        "for a class the first is the one that alone marks it best)",
    )
    p.add_argument(
        "--n",
        type=_positive_int,
        default=SELECTION.n,
        help=f"number of hypotheses (default {SELECTION.n}; fewer on a small holdout, see --rows-per-hypothesis)",
    )
    p.add_argument(
        "--rows-per-hypothesis",
        type=_non_negative_int,
        default=SELECTION.rows_per_hypothesis,
        help=f"a holdout with fewer rows per hypothesis than this tests fewer of them (default "
        f"{SELECTION.rows_per_hypothesis}; at least 3); 0 always tests --n",
    )
    p.add_argument(
        "--top-n", type=_positive_int, default=SELECTION.top_n, help="top activations used by the separation score"
    )
    p.add_argument(
        "--presence",
        default=SELECTION.presence,
        choices=settings.PRESENCE_MODES,
        help="when a hypothesis is present: its activation above a threshold learned on the training split "
        "(learned) or any activation (positive); default %(default)s",
    )
    p.add_argument(
        "--max-overlap",
        type=float,
        default=SELECTION.max_overlap,
        help="leave out a hypothesis whose training presence overlaps a better one by more than this "
        "(Jaccard); 1 keeps all (default %(default)s)",
    )
    p.add_argument(
        "--concepts",
        action="store_true",
        help="the earlier opt-in for whole topics, kept for scripts: --m 128 --k 8 --matryoshka auto --levels none "
        "--presence learned --max-overlap 0.5 (each flag given explicitly still wins); the default levels now "
        "recover whole topics better (BENCHMARKS.md, Levels)",
    )
    p.add_argument(
        "--no-sae-cache",
        action="store_true",
        help="train the SAE even if an identical one (same embeddings and settings) is cached",
    )
    p.add_argument("--interpreter", default=LABELS.interpreter, choices=settings.INTERPRETERS)
    p.add_argument("--annotator", default=LABELS.annotator, choices=settings.ANNOTATORS)
    p.add_argument("--llm-model", default=None, help="chat model (default $HSAE_LLM_MODEL or gpt-4o-mini)")
    p.add_argument(
        "--sae",
        default=None,
        help="use this SAE instead of training one: a folder, a .pth/.safetensors file, a registry name or a hub: spec",
    )
    p.add_argument("--batch", action="store_true", help=BATCH_HELP)
    p.add_argument("--out", required=True)
    sae_options(p)
    training_options(p)
    p.set_defaults(func=cmd_hypothesize)

    p = sub.add_parser("embed", help="embed the texts of a table into a .npy file")
    p.add_argument("--data", required=True)
    p.add_argument(
        "--text-col",
        "--text",
        default=None,
        help="the column holding the texts (default: the one whose content reads as prose)",
    )
    p.add_argument("--embedder", default=None)
    p.add_argument("--batch", action="store_true", help=BATCH_HELP)
    p.add_argument("--out", required=True, help="output .npy")
    device_option(p)
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("train", help="train an SAE on embeddings (.npy) or on a table's texts")
    p.add_argument("--embeddings", default=None, help=".npy file from 'hsae embed'")
    p.add_argument("--embedding-model", default=None, help="which model made --embeddings (recorded in the SAE)")
    p.add_argument("--data", default=None)
    p.add_argument(
        "--text-col",
        "--text",
        default=None,
        help="the column holding the texts (default: the one whose content reads as prose)",
    )
    p.add_argument("--batch-size", type=_positive_int, default=SAE.batch_size)
    p.add_argument("--out", required=True, help="output folder (config.json + model.safetensors)")
    sae_options(p)
    training_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("build", help="build a dashboard workspace from a table")
    p.add_argument("--data", default=None, help="CSV, TSV, JSON, JSONL or Parquet table (not with --corpus)")
    p.add_argument(
        "--text-col",
        "--text",
        default=None,
        help="the column holding the texts (default: the one whose content reads as prose)",
    )
    p.add_argument(
        "--sae",
        default=None,
        help="pretrained SAE: hub:OWNER/REPO/FILE.pth, hub:OWNER/REPO, a registry name, a folder or a .pth/.safetensors file",
    )
    p.add_argument(
        "--embedding-col",
        default=None,
        help="use stored embeddings from this column instead of embedding (a Parquet list column is read in batches)",
    )
    p.add_argument(
        "--embeddings",
        default=None,
        help="stored embeddings as a .npy matrix, one row per table row (read memory-mapped); with "
        "--corpus, a local copy of that corpus's vector-store .npy",
    )
    p.add_argument(
        "--corpus",
        default=None,
        help="a published corpus with its stored embeddings: csLG (texts from the Hub dataset charlieoneill/csLG)",
    )
    p.add_argument("--max-rows", type=int, default=None, help="with --corpus: read only the first N documents")
    p.add_argument("--no-map", action="store_true", help="skip the Map's 2-D layout (computed on first visit instead)")
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="cap the SAE's training epochs (default: early stopping; "
        "above 100k documents, at most 5 on a 100k sample)",
    )
    p.add_argument("--name", default=None)
    p.add_argument("--batch", action="store_true", help=BATCH_HELP)
    p.add_argument("--out", required=True)
    p.add_argument(
        "--engine",
        default="local",
        choices=["local", "ray"],
        help="local: this process (default); ray: embed and encode on a Ray cluster (pip install -e .[ray])",
    )
    p.add_argument(
        "--ray-address",
        default=None,
        help="Ray cluster to join: auto (the cluster this node is part of) or HEAD_IP:6379 "
        "(default: $RAY_ADDRESS, else a new local Ray)",
    )
    p.add_argument(
        "--shard-rows", type=int, default=settings.RAY.shard_rows, help="rows per Ray shard (default %(default)s)"
    )
    sae_options(p)
    p.set_defaults(func=cmd_build)

    p = sub.add_parser(
        "relabel",
        help="label a workspace's features again (phrases, keywords or an LLM) and "
        "score every label on documents the labeller never saw",
    )
    p.add_argument("workspace", help=WORKSPACE_HELP)
    p.add_argument("--labeller", default="phrases", choices=settings.LABELLERS)
    p.add_argument("--name", default=None, help="label set name (default: the labeller's name)")
    p.add_argument("--refine", action="store_true", help="llm: rewrite labels whose validation F1 is under --f1-bar")
    p.add_argument("--f1-bar", type=float, default=LABELS.refine_f1_bar)
    p.add_argument("--max-rounds", type=int, default=LABELS.refine_max_rounds)
    p.add_argument("--max-calls", type=int, default=None, help="llm: stop after this many LLM calls")
    p.add_argument("--max-tokens", type=int, default=None, help="llm: stop after about this many tokens")
    p.add_argument("--llm-model", default=None, help="chat model (default $HSAE_LLM_MODEL or gpt-4o-mini)")
    p.add_argument("--dry-run", action="store_true", help="print the LLM estimate (calls, tokens, cost) and stop")
    p.set_defaults(func=cmd_relabel)

    p = sub.add_parser(
        "features",
        help="list a workspace's features (broad levels first) with their labels, or show one with its documents",
    )
    p.add_argument("workspace", help=WORKSPACE_HELP)
    p.add_argument("--level", default=None, help="only this SAE level, as latents/active (e.g. 4/1)")
    p.add_argument("--search", default=None, help="only features whose label or keywords hold every word of this")
    p.add_argument("--n", type=_whole_number_at_least(0), default=30, help="rows at most (0: all; default 30)")
    p.add_argument("--feature", type=_whole_number_at_least(0), default=None, help="show this feature's page")
    p.add_argument("--docs", type=_whole_number_at_least(1), default=5, help="its strongest documents (default 5)")
    p.add_argument("--labels", default=None, help="label set to show (default: the one the dashboard shows)")
    p.add_argument(
        "--correlate",
        default=None,
        metavar="COLUMN",
        help="add each feature's correlation with this column of the workspace's table and list the strongest "
        "first (a heavy-tailed count as log(1 + y))",
    )
    p.add_argument("--value", default=None, help="with --correlate on a category: correlate with this value (0/1)")
    p.add_argument(
        "--control",
        action="append",
        metavar="COL",
        help="with --correlate: the partial correlation beyond this column (repeat for more; a column of many "
        "values, such as an A/B test id, is compared within)",
    )
    p.set_defaults(func=cmd_features)

    p = sub.add_parser("demo", help="build the Yelp demo workspace for the dashboard (needs HSAE_DATA_DIR)")
    p.add_argument("--root", default=None, help="folder to build it in (default $HSAE_WORKSPACES_DIR or ./workspaces)")
    p.add_argument("--rebuild", action="store_true", help="check every step again even if the workspace opens")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("models", help="list the known pretrained SAEs (hub: specs for --sae)")
    p.add_argument("--domain", default=None, help="only this domain, e.g. csLG or astroPH")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("push", help="upload an SAE folder (config.json + model.safetensors) to the Hugging Face Hub")
    p.add_argument("folder", help="SAE folder, e.g. from 'hsae train' or WORKSPACE/sae")
    p.add_argument("--repo", required=True, help="Hub repo id OWNER/NAME (created if missing)")
    p.add_argument("--private", action="store_true", help="create the repo as private")
    p.add_argument("--message", default=None, help="commit message")
    p.set_defaults(func=cmd_push)
    return parser


def _int_list(text: str) -> tuple:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'") from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got '{text}'")
    return values


def _whole_number_at_least(minimum: int):
    """argparse type: a whole number >= ``minimum`` (so 0, -1 and 2.5 are refused before any work)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got '{text}'") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {value}")
        return value

    return parse


_positive_int = _whole_number_at_least(1)
_non_negative_int = _whole_number_at_least(0)


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a whole number from 0 to {validate.SEED_LIMIT - 1}, got '{text}'"
        ) from None
    if not 0 <= value < validate.SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"expected a whole number from 0 to {validate.SEED_LIMIT - 1}, got {value}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got '{text}'") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number strictly between 0 and 1, got {text}")
    return value


def _apply_concept_settings(args) -> None:
    """``--concepts``: the concept settings replace the options the user left at their defaults."""
    plain = {"m": SAE.m, "k": SAE.k, "matryoshka": SAE.matryoshka, "levels": SAE.levels}
    plain |= {"presence": SELECTION.presence, "max_overlap": SELECTION.max_overlap}
    for name, value in {**settings.CONCEPT_SAE, **settings.CONCEPT_SELECTION}.items():
        if getattr(args, name) == plain[name]:
            setattr(args, name, value)


def _levels(text: str) -> tuple:
    """'none' or latents/active pairs such as '4/1,16/2'."""
    try:
        return settings.parse_levels(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _prefix_list(text: str):
    """'auto', 'none' or comma-separated integers."""
    if text.strip().lower() in ("auto", "none"):
        return text.strip().lower()
    try:
        return _int_list(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected 'auto', 'none' or prefix sizes like 16,64, got '{text}'") from None


def as_cli_message(message: str, parser: argparse.ArgumentParser) -> str:
    """A library message with its `parameter` names replaced by this command's flags (``holdout_frac`` -> ``--holdout-frac``)."""
    flags = {
        action.dest: action.option_strings[-1]
        for sub in _subparsers(parser)
        for action in sub._actions
        if action.option_strings and action.option_strings[-1].startswith("--")
    }

    def flag(match: re.Match) -> str:
        name = match.group(1)
        return flags.get(name, f"'{name}'")

    return re.sub(r"`([A-Za-z_]+)`", flag, message)


def _subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    out = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            out.extend(action.choices.values())
    return out


def _fail(message: str) -> int:
    print(f"hsae: error: {' '.join(message.split())}", file=sys.stderr)  # always exactly one line
    return 2


def _quiet_library_logs() -> None:
    """Per-call LLM warnings would bury the one-line result: the CLI reports their counts instead."""
    logger = logging.getLogger("hsae_core")
    if not logger.handlers:  # a handler (even a null one) keeps logging's last-resort printer off stderr
        logger.addHandler(logging.NullHandler())


def _reader_left() -> int:
    """End quietly after a write to a closed pipe: later writes (Python's own flush of stdout at exit) go to
    /dev/null instead of printing "Exception ignored ... BrokenPipeError"; the status is the shell's for a
    process ended by SIGPIPE (128 + 13)."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # usage errors (status 2) and --help (status 0)
        return exc.code if isinstance(exc.code, int) else 2
    _quiet_library_logs()
    try:
        if getattr(args, "device", None) not in (None, "auto"):  # auto cannot fail: no torch import to find out
            from .device import resolve_device

            resolve_device(args.device)  # --device cuda without CUDA: one line before any work
        return args.func(args)
    except HsaeError as exc:
        return _fail(as_cli_message(str(exc), parser))
    except BrokenPipeError:  # the reader left (`hsae features WS | head`): it has what it wanted; nothing to say
        return _reader_left()
    except OSError as exc:  # permission denied, disk full, a file or folder in the way: one line, never a traceback
        return _fail(describe_os_error(exc))
    except MemoryError:
        return _fail("Ran out of memory; use a smaller --m or fewer rows")
    except KeyboardInterrupt:
        print("hsae: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
