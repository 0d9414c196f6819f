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


def _embed_corpus(texts, embedder_spec, stage="embedding"):
    from .embed import embed_texts, get_embedder

    embedder = get_embedder(embedder_spec)
    return embed_texts(texts, embedder, progress=_progress(stage)), embedder.model_id


# ---------------------------------------------------------------------------------------- hypothesize
def cmd_hypothesize(args) -> int:
    from .pipeline import HypothesisConfig, format_table, hypothesize, write_run

    config = HypothesisConfig(m=args.m, k=args.k, select=args.select, n=args.n, interpreter=args.interpreter,
                              annotator=args.annotator, seed=args.seed, top_n=args.top_n,
                              target_kind=args.target_kind, target_class=args.target_class,
                              batch_topk=args.batch_topk, matryoshka=args.matryoshka,
                              max_epochs=args.epochs, holdout_frac=args.holdout_frac, presence=args.presence,
                              max_overlap=args.max_overlap, cache_sae=not args.no_sae_cache)
    config.validate()  # before reading, embedding or training anything
    sae = _load_sae(args.sae) if args.sae else None
    if sae is not None:
        _check_sae_width(sae, args.embedder)
    client = _llm_client(args) if "llm" in (args.interpreter, args.annotator) else None
    run = hypothesize(args.data, text_col=args.text_col, target_col=args.target_col, holdout=args.holdout,
                      config=config, embedder=args.embedder, sae=sae, llm_client=client, out_dir=None,
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

    return LLMClient(model=args.llm_model)


def _load_sae(spec: str):
    from .hub import load_sae

    return load_sae(spec)


def _check_sae_width(sae, embedder_spec) -> None:
    """Refuse early (before embedding anything) when the SAE cannot read this embedder's vectors."""
    from .embed import get_embedder
    from .hub import check_compatible

    embedder = get_embedder(embedder_spec)
    check_compatible(sae, embedder.model_id, embedder.dim)


# ---------------------------------------------------------------------------------------- embed / train
def cmd_embed(args) -> int:
    from .data import prepare_corpus, read_table

    corpus = prepare_corpus(read_table(args.data), args.text_col)
    X, model_id = _embed_corpus(corpus.texts, args.embedder)
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
        X, model_id = _embed_corpus(corpus.texts, args.embedder)
    sae = SparseAutoencoder(m=args.m, k=args.k, batch_topk=args.batch_topk, matryoshka=args.matryoshka,
                            max_epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                            embedding_model=model_id)
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

    frame = read_table(args.data)
    if args.sae and args.embedding_col:  # the dashboard's "Open a pretrained SAE" runs this same function
        ws = build_pretrained_workspace(args.out, args.sae, frame=frame, text_col=args.text_col,
                                        embedding_col=args.embedding_col, progress=_progress("building"),
                                        name=args.name)
    else:
        embeddings = None
        if args.embedding_col:
            from .corpora import embeddings_from_column
            from .data import require_columns

            require_columns(frame, args.embedding_col, args.text_col)
            embeddings = embeddings_from_column(frame, args.embedding_col)
            frame = frame.drop(columns=[args.embedding_col])
        sae = _load_sae(args.sae) if args.sae else None
        if sae is not None:  # refuse a width/model mismatch before any embedding or indexing work
            _check_sae_width(sae, args.embedder)
        ws = build_workspace(args.out, frame=frame, text_col=args.text_col, m=args.m, k=args.k, seed=args.seed,
                             embedder_spec=args.embedder, embeddings=embeddings, sae=sae,
                             progress=_progress("building"), name=args.name)
    print(f"Workspace ready: {args.out} ({len(ws.frame)} documents). Open it with: "
          f"HSAE_WORKSPACE={args.out} streamlit run app.py")
    return 0


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
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="hsae", description="Sparse autoencoders over text embeddings: concepts, search, hypotheses.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def sae_options(p):
        p.add_argument("--m", type=int, default=SAE.m, help="number of latents (default %(default)s)")
        p.add_argument("--k", type=int, default=SAE.k, help="active latents per text (default %(default)s)")
        p.add_argument("--seed", type=int, default=SAE.seed)
        p.add_argument("--embedder", default=None,
                       help="embedding model: default offline all-MiniLM-L6-v2; a sentence-transformers name/folder; "
                            "or openai:text-embedding-3-small")

    def training_options(p):
        p.add_argument("--epochs", type=int, default=SAE.max_epochs, help="maximum epochs; early stopping on a validation split")
        p.add_argument("--batch-topk", action="store_true", help="batch-top-k instead of per-row top-k")
        p.add_argument("--matryoshka", type=_prefix_list, default=SAE.matryoshka,
                       help="nested prefix sizes, e.g. 16,64; 'auto' (default: 4,16,64,... below m) or 'none'")

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
    p.add_argument("--presence", default=SELECTION.presence, choices=settings.PRESENCE_MODES,
                   help="when a hypothesis is present: its activation above a threshold learned on the training split "
                        "(learned) or any activation (positive); default %(default)s")
    p.add_argument("--max-overlap", type=float, default=SELECTION.max_overlap,
                   help="leave out a hypothesis whose training presence overlaps a better one by more than this "
                        "(Jaccard); 1 keeps all (default %(default)s)")
    p.add_argument("--no-sae-cache", action="store_true",
                   help="train the SAE even if an identical one (same embeddings and settings) is cached")
    p.add_argument("--interpreter", default=LABELS.interpreter, choices=settings.INTERPRETERS)
    p.add_argument("--annotator", default=LABELS.annotator, choices=settings.ANNOTATORS)
    p.add_argument("--llm-model", default=None, help="chat model (default $HSAE_LLM_MODEL or gpt-4o-mini)")
    p.add_argument("--sae", default=None, help="use this SAE instead of training one (folder or hub: spec)")
    p.add_argument("--out", required=True)
    sae_options(p)
    training_options(p)
    p.set_defaults(func=cmd_hypothesize)

    p = sub.add_parser("embed", help="embed the texts of a table into a .npy file")
    p.add_argument("--data", required=True)
    p.add_argument("--text-col", required=True)
    p.add_argument("--embedder", default=None)
    p.add_argument("--out", required=True, help="output .npy")
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
    p.add_argument("--out", required=True)
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


def _prefix_list(text: str):
    """'auto', 'none' or comma-separated integers."""
    if text.strip().lower() in ("auto", "none"):
        return text.strip().lower()
    return _int_list(text)


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
        return args.func(args)
    except HsaeError as exc:
        print(f"hsae: error: {as_cli_message(str(exc), parser)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hsae: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
