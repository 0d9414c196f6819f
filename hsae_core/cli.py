"""The ``hsae`` command: one subcommand per job; bad input exits 2 with one line."""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

from . import settings
from .errors import HsaeError
from .settings import LABELS, SAE, SELECTION


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake in one line with exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _progress(stage: str):
    from .progress import TqdmProgress

    return TqdmProgress(stage)


def _embed_corpus(texts, embedder_spec, stage="embedding", batch=False, device=settings.DEVICE):
    from .embed import embed_texts, get_embedder

    embedder = get_embedder(embedder_spec, batch=batch, device=device)
    return embed_texts(texts, embedder, progress=_progress(stage)), embedder.model_id


# ---------------------------------------------------------------------------------------- hypothesize
def cmd_hypothesize(args) -> int:
    from .pipeline import HypothesisConfig, format_table, hypothesize, write_run

    _check_batch(args, uses_llm="llm" in (args.interpreter, args.annotator))
    config = HypothesisConfig(m=args.m, k=args.k, select=args.select, n=args.n, interpreter=args.interpreter,
                              annotator=args.annotator, seed=args.seed, top_n=args.top_n,
                              target_kind=args.target_kind, target_class=args.target_class,
                              batch_topk=args.batch_topk, matryoshka=tuple(args.matryoshka),
                              max_epochs=args.epochs, holdout_frac=args.holdout_frac, device=args.device)
    config.validate()  # before reading, embedding or training anything
    sae = _load_sae(args.sae, args.device) if args.sae else None
    client = _llm_client(args) if "llm" in (args.interpreter, args.annotator) else None
    run = hypothesize(args.data, text_col=args.text_col, target_col=args.target_col, holdout=args.holdout,
                      config=config, embedder=_embedder(args), sae=sae, llm_client=client, out_dir=None,
                      progress=_progress("hypotheses"), embed_progress=_progress("embedding"))
    run.summary["command"] = "hsae " + " ".join(sys.argv[1:])
    write_run(run, args.out)
    print(format_table(run))
    for warning in run.summary.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
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
        raise HsaeError("--batch sends OpenAI requests through the Batch API: use it with --embedder openai:MODEL"
                        + (" or --interpreter/--annotator llm" if hasattr(args, "interpreter") else ""))


def _load_sae(spec: str, device: str = settings.DEVICE):
    from .hub import load_sae

    sae = load_sae(spec)
    sae.device = device
    return sae


def _check_sae_width(sae, embedder_spec) -> None:
    """Refuse early (before embedding anything) when the SAE cannot read this embedder's vectors."""
    from .embed import get_embedder
    from .hub import check_compatible

    embedder = get_embedder(embedder_spec)
    check_compatible(sae, embedder.model_id, embedder.dim)


# ---------------------------------------------------------------------------------------- embed / train
def cmd_embed(args) -> int:
    from .data import prepare_corpus, read_table

    _check_batch(args)
    corpus = prepare_corpus(read_table(args.data), args.text_col)
    X, model_id = _embed_corpus(corpus.texts, args.embedder, batch=args.batch, device=args.device)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, X)
    dropped = corpus.counts["dropped_empty_text"]
    print(f"Embedded {len(X)} texts with {model_id} ({X.shape[1]}-d) -> {out}"
          + (f"; dropped {dropped} empty texts" if dropped else ""))
    return 0


def cmd_train(args) -> int:
    from .sae import SparseAutoencoder

    if args.embeddings:
        try:
            X = np.load(args.embeddings, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise HsaeError(f"Could not read embeddings {args.embeddings}: {exc}") from None
        model_id = args.embedding_model
    else:
        if not (args.data and args.text_col):
            raise HsaeError("Give --embeddings FILE.npy, or --data and --text-col")
        from .data import prepare_corpus, read_table

        corpus = prepare_corpus(read_table(args.data), args.text_col)
        X, model_id = _embed_corpus(corpus.texts, args.embedder, device=args.device)
    sae = SparseAutoencoder(m=args.m, k=args.k, batch_topk=args.batch_topk, matryoshka=args.matryoshka,
                            max_epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                            embedding_model=model_id, device=args.device)
    sae.fit(X, progress=_progress("training"))
    sae.save(args.out)
    m = sae.metrics_
    print(f"Trained SAE m={args.m} k={args.k} on {len(X)} rows in {m['train_seconds']} s: "
          f"val nMSE {m['val_nmse'] if m['val_nmse'] is not None else float('nan'):.4f}, "
          f"dead latents {m['dead_frac']:.1%} -> {args.out}")
    return 0


# ---------------------------------------------------------------------------------------- build
def cmd_build(args) -> int:
    from .data import read_table
    from .workspace import build_pretrained_workspace, build_workspace

    _check_batch(args)
    frame = read_table(args.data)
    if args.engine == "ray":
        ws = _build_with_ray(args, frame)
    elif args.sae and args.embedding_col:  # the dashboard's "Open a pretrained SAE" runs this same function
        ws = build_pretrained_workspace(args.out, args.sae, frame=frame, text_col=args.text_col,
                                        embedding_col=args.embedding_col, progress=_progress("building"),
                                        name=args.name, device=args.device)
    else:
        embeddings = None
        if args.embedding_col:
            from .corpora import embeddings_from_column
            from .data import require_columns

            require_columns(frame, args.embedding_col, args.text_col)
            embeddings = embeddings_from_column(frame, args.embedding_col)
            frame = frame.drop(columns=[args.embedding_col])
        sae = _load_sae(args.sae, args.device) if args.sae else None
        if sae is not None:  # refuse a width/model mismatch before any embedding or indexing work
            _check_sae_width(sae, args.embedder)
        ws = build_workspace(args.out, frame=frame, text_col=args.text_col, m=args.m, k=args.k, seed=args.seed,
                             embedder_spec=args.embedder, embeddings=embeddings, sae=sae,
                             progress=_progress("building"), name=args.name, batch=args.batch, device=args.device)
    print(f"Workspace ready: {args.out} ({len(ws.frame)} documents). Open it with: "
          f"HSAE_WORKSPACE={args.out} streamlit run app.py")
    return 0


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
    return build_workspace_ray(args.out, frame=frame, text_col=args.text_col, m=args.m, k=args.k, seed=args.seed,
                               embedder_spec=args.embedder, embeddings=embeddings, sae=sae, device=args.device,
                               address=args.ray_address, shard_rows=args.shard_rows, progress=_progress("building"),
                               name=args.name)


# ---------------------------------------------------------------------------------------- models / push
def cmd_models(args) -> int:
    from .hub import registry

    rows = [e for e in registry() if args.domain is None or e["domain"].lower() == args.domain.lower()]
    if not rows:
        raise HsaeError(f"No known SAEs for domain '{args.domain}'")
    print(f"{'name':<22} {'k':>4} {'n':>6} {'d_in':>5}  embedding model                 spec for --sae")
    for e in rows:
        print(f"{e['name']:<22} {e['k']:>4} {e['n']:>6} {e['d_in']:>5}  {e['embedding_model']:<31} "
              f"hub:{e['repo_id']}/{e['filename']}")
    corpora = {e["domain"]: e.get("corpus", {}).get("hub_dataset") for e in rows}
    print("\nCorpora: " + "; ".join(f"{d}: {c or 'unknown'}" for d, c in corpora.items()))
    return 0


def cmd_push(args) -> int:
    from .hub import push_sae

    url = push_sae(args.folder, args.repo, private=args.private, commit_message=args.message)
    print(f"Pushed {args.folder} to {url} (model card written to {Path(args.folder) / 'README.md'})")
    return 0


# ---------------------------------------------------------------------------------------- parser
BATCH_HELP = ("send OpenAI requests (openai: embeddings, LLM naming/annotation) through the Batch API: half the "
              "price, may take up to 24 h; run the same command again to resume")

def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="hsae", description="Sparse autoencoders over text embeddings: concepts, search, hypotheses.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def device_option(p):
        p.add_argument("--device", default=settings.DEVICE, choices=settings.DEVICES,
                       help="where embedding and the SAE run: auto (CUDA when present; half-precision embedder), "
                            "cpu or cuda")

    def sae_options(p):
        p.add_argument("--m", type=int, default=SAE.m, help="number of latents (default %(default)s)")
        p.add_argument("--k", type=int, default=SAE.k, help="active latents per text (default %(default)s)")
        p.add_argument("--seed", type=int, default=SAE.seed)
        p.add_argument("--embedder", default=None,
                       help="embedding model: default offline all-MiniLM-L6-v2; a sentence-transformers name/folder; "
                            "or openai:text-embedding-3-small")
        device_option(p)

    def training_options(p):
        p.add_argument("--epochs", type=int, default=SAE.max_epochs, help="maximum epochs; early stopping on a validation split")
        p.add_argument("--batch-topk", action="store_true", help="batch-top-k instead of per-row top-k")
        p.add_argument("--matryoshka", type=_int_list, default=SAE.matryoshka, help="nested prefix sizes, e.g. 16,64")

    p = sub.add_parser("hypothesize", help="find latents that predict a target and validate them on a holdout")
    p.add_argument("--data", required=True, help="CSV, TSV, JSON, JSONL or Parquet table")
    p.add_argument("--text-col", required=True)
    p.add_argument("--target-col", required=True)
    p.add_argument("--holdout", default=None, help="a separate holdout table (same columns)")
    p.add_argument("--holdout-frac", type=float, default=SELECTION.holdout_frac, help="holdout share when no --holdout is given")
    p.add_argument("--target-kind", default="auto", choices=settings.TARGET_KINDS)
    p.add_argument("--target-class", default=None, help="for a multiclass target: analyse only this class")
    p.add_argument("--select", default=SELECTION.method, choices=settings.SELECT_METHODS)
    p.add_argument("--n", type=int, default=SELECTION.n, help="number of hypotheses")
    p.add_argument("--top-n", type=int, default=SELECTION.top_n, help="top activations used by the separation score")
    p.add_argument("--interpreter", default=LABELS.interpreter, choices=settings.INTERPRETERS)
    p.add_argument("--annotator", default=LABELS.annotator, choices=settings.ANNOTATORS)
    p.add_argument("--llm-model", default=None, help="chat model (default $HSAE_LLM_MODEL or gpt-4o-mini)")
    p.add_argument("--sae", default=None, help="use this SAE instead of training one (folder or hub: spec)")
    p.add_argument("--batch", action="store_true", help=BATCH_HELP)
    p.add_argument("--out", required=True)
    sae_options(p)
    training_options(p)
    p.set_defaults(func=cmd_hypothesize)

    p = sub.add_parser("embed", help="embed the texts of a table into a .npy file")
    p.add_argument("--data", required=True)
    p.add_argument("--text-col", required=True)
    p.add_argument("--embedder", default=None)
    p.add_argument("--batch", action="store_true", help=BATCH_HELP)
    p.add_argument("--out", required=True, help="output .npy")
    device_option(p)
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("train", help="train an SAE on embeddings (.npy) or on a table's texts")
    p.add_argument("--embeddings", default=None, help=".npy file from 'hsae embed'")
    p.add_argument("--embedding-model", default=None, help="which model made --embeddings (recorded in the SAE)")
    p.add_argument("--data", default=None)
    p.add_argument("--text-col", default=None)
    p.add_argument("--batch-size", type=int, default=SAE.batch_size)
    p.add_argument("--out", required=True, help="output folder (config.json + model.safetensors)")
    sae_options(p)
    training_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("build", help="build a dashboard workspace from a table")
    p.add_argument("--data", required=True)
    p.add_argument("--text-col", required=True)
    p.add_argument("--sae", default=None, help="pretrained SAE: hub:OWNER/REPO/FILE.pth, hub:OWNER/REPO or a folder")
    p.add_argument("--embedding-col", default=None, help="use stored embeddings from this column instead of embedding")
    p.add_argument("--name", default=None)
    p.add_argument("--batch", action="store_true", help=BATCH_HELP)
    p.add_argument("--out", required=True)
    p.add_argument("--engine", default="local", choices=["local", "ray"],
                   help="local: this process (default); ray: embed and encode on a Ray cluster (pip install -e .[ray])")
    p.add_argument("--ray-address", default=None,
                   help="Ray cluster to join: auto (the cluster this node is part of) or HEAD_IP:6379 "
                        "(default: $RAY_ADDRESS, else a new local Ray)")
    p.add_argument("--shard-rows", type=int, default=settings.RAY.shard_rows,
                   help="rows per Ray shard (default %(default)s)")
    sae_options(p)
    p.set_defaults(func=cmd_build)

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
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'") from None


def as_cli_message(message: str, parser: argparse.ArgumentParser) -> str:
    """A library message with its `parameter` names replaced by this command's flags (``holdout_frac`` -> ``--holdout-frac``)."""
    flags = {action.dest: action.option_strings[-1] for sub in _subparsers(parser) for action in sub._actions
             if action.option_strings and action.option_strings[-1].startswith("--")}

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


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # usage errors (status 2) and --help (status 0)
        return exc.code if isinstance(exc.code, int) else 2
    try:
        if getattr(args, "device", None):
            from .device import resolve_device

            resolve_device(args.device)  # --device cuda without CUDA: one line before any work
        return args.func(args)
    except HsaeError as exc:
        print(f"hsae: error: {as_cli_message(str(exc), parser)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hsae: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
