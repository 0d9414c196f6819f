"""Pretrained SAEs: resolve a spec, download through the Hugging Face Hub, convert, verify, push.

Specs understood by ``load_sae``:
- ``hub:OWNER/REPO/FILE.pth[@REV]``  a published PyTorch state dict (e.g. the scientific-paper SAEs in
  ``charlieoneill/embedding-saes``), read with ``torch.load(weights_only=True)``;
- ``hub:OWNER/REPO[@REV]`` or ``hub:OWNER/REPO/SUBFOLDER[@REV]``  our own format (``config.json`` +
  ``model.safetensors``) stored in a Hub repo;
- a registry name such as ``csLG_64_3072_128`` (see ``hsae_core/registry.json``, shipped as package data);
- a local folder in our format (or its ``model.safetensors``), or a local ``.pth`` or ``.safetensors`` file
  holding a published-format state dict.

The published checkpoints hold ``encoder.weight`` (n x d), ``decoder.weight`` (d x n), ``pre_bias`` (d)
and ``latent_bias`` (n). Their forward pass (checked against the authors' training code) subtracts
``pre_bias``, applies the encoder plus ``latent_bias``, keeps the top k pre-activations, ReLUs them and
decodes with ``decoder`` plus ``pre_bias``, with no input normalisation: exactly ``sae.TopKSAE``.

Downloads honour ``HF_HOME`` / ``HF_HUB_CACHE`` / ``HF_HUB_OFFLINE`` / ``HF_ENDPOINT`` read at call time (so a
test or a user can set them after import) and a revision (branch, tag or commit). When one quick request finds
the Hub unreachable, files come from the cache alone: a missing one is a one-line error at once, not after a
minute of huggingface_hub's retries.
"""

from __future__ import annotations

import importlib
import json
import pickle
import re
import zipfile
from importlib import resources
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Optional

from . import settings
from .errors import ModelError, first_line
from .fsutil import atomic_write_text
from .sae_config import CONFIG_NAME, WEIGHTS_NAME

if TYPE_CHECKING:  # the estimator imports torch and scikit-learn: `hsae models` and the checks need neither
    from .sae import SparseAutoencoder

PUBLISHED_KEYS = ("encoder.weight", "decoder.weight", "pre_bias", "latent_bias")
STATE_DICT_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
# Published file names: {domain}_{k}_{n}_{aux}.pth
PUBLISHED_NAME = re.compile(r"^(?P<domain>[A-Za-z]+)_(?P<k>\d+)_(?P<n>\d+)_(?P<batch>\d+)$")
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
DEFAULT_ENDPOINT = "https://huggingface.co"
PROBE_TIMEOUT_S = 10.0  # as long as huggingface_hub waits for a file's metadata


# ---------------------------------------------------------------------------------------- registry
def registry() -> list[dict]:
    """Every known pretrained SAE: name, repo_id, filename, domain, k, n, batch, d_in, embedding_model, corpus."""
    override = settings.registry_override()
    source = override or resources.files("hsae_core").joinpath("registry.json")
    try:
        doc = json.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"The SAE registry {source} is missing; reinstall hsae or fix HSAE_REGISTRY") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"The SAE registry {source} is not valid JSON: {exc}") from None
    return [dict(entry) for entry in doc.get("saes", [])]


def registry_entry(name: str) -> Optional[dict]:
    """The registry entry whose name or file name is ``name`` (case-sensitive), or None."""
    for entry in registry():
        if name in (entry["name"], entry["filename"]):
            return entry
    return None


def _entry_for(repo_id: str, filename: str) -> Optional[dict]:
    for entry in registry():
        if entry["repo_id"] == repo_id and entry["filename"] == filename:
            return entry
    return None


def known_names_hint(repo_id: Optional[str] = None) -> str:
    """A compact, readable list of the registry, for error messages."""
    entries = [e for e in registry() if repo_id is None or e["repo_id"] == repo_id]
    if not entries:
        return "the registry lists no SAEs for this repo"
    by_domain: dict[str, list[dict]] = {}
    for e in entries:
        by_domain.setdefault(e["domain"], []).append(e)
    parts = []
    for domain, group in by_domain.items():
        ks = sorted({e["k"] for e in group})
        ns = sorted({e["n"] for e in group})
        parts.append(f"{domain}_{{k}}_{{n}}_{{2k}} with k in {ks}, n in {ns}")
    return f"known: {'; '.join(parts)} (e.g. {entries[0]['name']}; `hsae models` lists all)"


# ---------------------------------------------------------------------------------------- spec parsing
def parse_spec(spec: str) -> dict:
    """Split a spec into {kind, repo_id, filename, revision, path}; kind is hub_file|hub_folder|registry|local."""
    spec = str(spec).strip()
    if not spec:
        raise ModelError("Empty SAE spec: give hub:OWNER/REPO/FILE.pth, hub:OWNER/REPO, a registry name or a path")
    if spec.startswith("hub:"):
        rest, revision = spec[4:], None
        if "@" in rest:
            rest, revision = rest.rsplit("@", 1)
            if not revision:
                raise ModelError(f"'{spec}': nothing after '@'; give a branch, tag or commit, or drop the '@'")
        parts = [p for p in rest.split("/") if p]
        if len(parts) < 2:
            raise ModelError(f"'{spec}': expected hub:OWNER/REPO or hub:OWNER/REPO/FILE.pth")
        repo_id, sub = "/".join(parts[:2]), "/".join(parts[2:])
        if sub.lower().endswith(STATE_DICT_SUFFIXES):
            return {"kind": "hub_file", "repo_id": repo_id, "filename": sub, "revision": revision}
        return {"kind": "hub_folder", "repo_id": repo_id, "filename": sub, "revision": revision}
    path = Path(spec).expanduser()
    if path.exists():
        return {"kind": "local", "path": path}
    if registry_entry(spec) is not None:
        return {"kind": "registry", "name": spec}
    if PUBLISHED_NAME.match(spec.removesuffix(".pth")) or "/" not in spec and not path.suffix:
        raise ModelError(f"Unknown pretrained SAE '{spec}'; {known_names_hint()}")
    raise ModelError(
        f"No SAE found at '{spec}': give an existing folder/.pth file, hub:OWNER/REPO[/FILE.pth] "
        f"or a registry name ({known_names_hint()})"
    )


# ---------------------------------------------------------------------------------------- loading
def load_sae(spec: str, *, revision: Optional[str] = None, cache_dir: Optional[str] = None) -> SparseAutoencoder:
    """Load an SAE from a hub spec, a registry name, a local folder or a local .pth file (see module doc)."""
    from .sae import SparseAutoencoder

    parsed = parse_spec(spec)
    kind = parsed["kind"]
    if kind == "local":
        path = parsed["path"]
        if path.is_file() and path.name == WEIGHTS_NAME and (path.parent / CONFIG_NAME).is_file():
            path = path.parent  # the weights file of one of our folders: load the folder it sits in
        if path.is_dir():
            sae = SparseAutoencoder.load(path)
            _set_source(sae, {"type": "local_folder", "path": str(path.resolve())}, keep_existing=True)
            return sae
        entry = registry_entry(path.name) or registry_entry(path.stem)
        return _from_published_file(
            path, entry, {"type": "local_file", "path": str(path.resolve())}, redownload_hint=False
        )
    if kind == "registry":
        entry = registry_entry(parsed["name"])
        repo_id, filename, rev = entry["repo_id"], entry["filename"], revision
        kind = "hub_file"
    else:
        repo_id, filename = parsed["repo_id"], parsed["filename"]
        rev = revision or parsed["revision"]
    if kind == "hub_file":
        entry = _entry_for(repo_id, filename)
        local = _download(repo_id, filename, rev, cache_dir)
        source = {
            "type": "hub",
            "repo_id": repo_id,
            "filename": filename,
            "revision": _commit_of(local) or rev or "main",
        }
        if entry:
            source["domain"] = entry["domain"]
        return _from_published_file(local, entry, source)
    # Our own folder format on the Hub.
    prefix = f"{filename}/" if filename else ""
    cfg_path = _download(repo_id, prefix + CONFIG_NAME, rev, cache_dir)
    _download(repo_id, prefix + WEIGHTS_NAME, rev, cache_dir)
    sae = SparseAutoencoder.load(cfg_path.parent)
    source = {
        "type": "hub",
        "repo_id": repo_id,
        "filename": prefix.rstrip("/") or None,
        "revision": _commit_of(cfg_path) or rev or "main",
    }
    _set_source(sae, source, keep_existing=False)
    return sae


def _set_source(sae: SparseAutoencoder, source: dict, keep_existing: bool) -> None:
    if keep_existing and getattr(sae, "source_", None):
        return
    sae.source_ = source


def _offline() -> bool:
    return settings.hf_offline()


def hub_endpoint() -> str:
    """The Hub's address: $HF_ENDPOINT read now, else huggingface.co."""
    return (settings.hf_endpoint() or DEFAULT_ENDPOINT).rstrip("/")


def _network_errors() -> tuple[type[Exception], ...]:
    """Connection and timeout errors of the HTTP library huggingface_hub uses (httpx2, httpx or requests)."""
    found = []
    for module, names in (
        ("httpx2", ("TransportError",)),
        ("httpx", ("TransportError",)),
        ("requests", ("ConnectionError", "Timeout")),
    ):
        try:
            lib = importlib.import_module(module)
        except ImportError:
            continue
        found += [getattr(lib, name) for name in names if hasattr(lib, name)]
    return tuple(found)


def hub_unreachable(endpoint: Optional[str] = None) -> Optional[str]:
    """Why the Hub cannot be reached, in a few words, or None when it answers (any HTTP status).

    One request with no retries, through huggingface_hub's own session (its proxies and certificates)."""
    from huggingface_hub.utils import get_session

    try:
        get_session().head(endpoint or hub_endpoint(), timeout=PROBE_TIMEOUT_S)
    except (*_network_errors(), OSError, ValueError) as exc:
        return first_line(exc, limit=160)
    return None


def hub_cut_off(endpoint: Optional[str] = None) -> Optional[str]:
    """Why files can come from the local cache only (downloads off, or the Hub unreachable), or None. Then a
    missing file fails at once, where huggingface_hub would retry it for half a minute."""
    if _offline():
        return "downloads are off (HF_HUB_OFFLINE)"
    endpoint = endpoint or hub_endpoint()
    reason = hub_unreachable(endpoint)
    return f"the Hub at {endpoint} cannot be reached ({reason})" if reason else None


def hub_cache_dir(cache_dir: Optional[str] = None) -> Optional[str]:
    """The Hub cache folder: the argument, else $HF_HUB_CACHE, else $HF_HOME/hub, else the library default."""
    if cache_dir:
        return str(cache_dir)
    return settings.hf_cache_dir()


def _download(
    repo_id: str, filename: str, revision: Optional[str], cache_dir: Optional[str], repo_type: str = "model"
) -> Path:
    """hf_hub_download with every failure turned into one ModelError line that says what to do."""
    from huggingface_hub import errors as hf_errors
    from huggingface_hub import hf_hub_download

    where = f"{repo_id}/{filename}" + (f"@{revision}" if revision else "")
    endpoint = hub_endpoint()
    cut_off = hub_cut_off(endpoint)
    try:
        return Path(
            hf_hub_download(
                repo_id,
                filename,
                revision=revision,
                repo_type=repo_type,
                cache_dir=hub_cache_dir(cache_dir),
                endpoint=endpoint,
                local_files_only=cut_off is not None,
            )
        )
    except hf_errors.LocalEntryNotFoundError as exc:
        why = cut_off or f"the Hub at {endpoint} did not serve it ({first_line(exc, limit=160)})"
        hint = known_names_hint(repo_id) if repo_type == "model" and _entry_repo(repo_id) else ""
        raise ModelError(
            f"{where} is not in the local Hugging Face cache ({hub_cache_dir(cache_dir) or 'default'}) and {why}"
            + (f"; {hint}" if hint else "")
        ) from None
    except hf_errors.RevisionNotFoundError:
        raise ModelError(f"{where}: revision '{revision}' does not exist on the Hub") from None
    except hf_errors.GatedRepoError:
        raise ModelError(
            f"{where}: the repo is gated; accept its terms on huggingface.co and log in (HF_TOKEN)"
        ) from None
    except hf_errors.RepositoryNotFoundError:
        raise ModelError(f"{where}: no such {repo_type} repo on the Hub (or it is private: set HF_TOKEN)") from None
    except hf_errors.EntryNotFoundError:
        hint = known_names_hint(repo_id) if _entry_repo(repo_id) else "check the file name on huggingface.co"
        raise ModelError(f"{where}: no such file in the repo; {hint}") from None
    except (hf_errors.HfHubHTTPError, OSError, ValueError) as exc:
        raise ModelError(f"Could not download {where}: {first_line(exc)}") from None


def _entry_repo(repo_id: str) -> bool:
    return any(e["repo_id"] == repo_id for e in registry())


def _commit_of(local_path: Path) -> Optional[str]:
    """The commit a cached file belongs to (.../snapshots/<commit>/...), if it lives in a Hub cache."""
    parts = Path(local_path).parts
    if "snapshots" in parts:
        i = parts.index("snapshots")
        if i + 1 < len(parts):
            return parts[i + 1]
    return None


def read_state_dict(path: str | Path, *, redownload_hint: bool = True) -> dict:
    """Read a PyTorch checkpoint safely (``weights_only=True``: no code runs) or a safetensors file into
    {name: tensor}.

    Refuses, with one line, anything that is not a plain tensor state dict, or is truncated/corrupt.
    ``redownload_hint`` says the file came from the Hub cache, so the way out is to fetch it again.
    """
    import torch
    from safetensors import SafetensorError

    path = Path(path)
    name = path.name
    if not path.is_file():
        raise ModelError(f"SAE checkpoint not found: {path}")
    if path.stat().st_size == 0:
        hint = "the download was probably interrupted; delete it and retry" if redownload_hint else "nothing to load"
        raise ModelError(f"{name} is empty (0 bytes): {hint}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(str(path), device="cpu")
        else:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refuses any global that is not a tensor building block: the file may run code.
        raise ModelError(
            f"{name} was refused: it is not a plain tensor state dict and loading it could run code "
            f"({_unsafe_detail(exc)}); only load checkpoints you trust, converted to safetensors"
        ) from None
    except (
        RuntimeError,
        EOFError,
        zipfile.BadZipFile,
        ValueError,
        OSError,
        AttributeError,
        TypeError,
        IndexError,
        KeyError,
        MemoryError,
        SafetensorError,
    ) as exc:
        hint = (
            "delete it from the cache and download it again"
            if redownload_hint
            else "give a PyTorch state dict (.pth), a safetensors file or an SAE folder (config.json + model.safetensors)"
        )
        raise ModelError(f"{name} is truncated or corrupt and cannot be read ({first_line(exc)}); {hint}") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj:
        raise ModelError(f"{name} holds a {type(obj).__name__}, not a state dict of tensors")
    out = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise ModelError(
                f"{name}: entry '{key}' is a {type(value).__name__}, not a tensor; this is not a plain SAE state dict"
            )
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
        out[key] = value
    return out


def _unsafe_detail(exc: BaseException) -> str:
    text = str(exc)
    m = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)", text)
    if m:
        return f"it references {m.group(1)}"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("Weights only load failed")]
    return lines[0][:200] if lines else "refused by the safe loader"


def convert_published(tensors: dict, entry: Optional[dict], source: dict, filename: str) -> SparseAutoencoder:
    """Build our SAE from a published state dict, checking every shape against the registry entry."""
    from .sae import SparseAutoencoder

    missing = [k for k in PUBLISHED_KEYS if k not in tensors]
    if missing:
        raise ModelError(
            f"{filename}: not an SAE state dict (missing {', '.join(missing)}; found {', '.join(sorted(tensors)[:6])})"
        )
    for key in PUBLISHED_KEYS:
        t = tensors[key]
        if not (t.is_floating_point() and t.isfinite().all()):
            raise ModelError(f"{filename}: '{key}' is not a finite floating-point tensor")
    enc = tensors["encoder.weight"]
    if enc.ndim != 2:
        raise ModelError(f"{filename}: 'encoder.weight' has shape {tuple(enc.shape)}, expected (n, d)")
    n, d = (int(s) for s in enc.shape)
    if entry is not None:
        k, want_n, want_d, embedding_model = entry["k"], entry["n"], entry["d_in"], entry["embedding_model"]
        if (n, d) != (want_n, want_d):
            raise ModelError(
                f"{filename}: 'encoder.weight' has shape {(n, d)}, but the registry says "
                f"{entry['name']} is ({want_n}, {want_d}); the file is not the published SAE"
            )
    else:
        m = PUBLISHED_NAME.match(Path(filename).stem)
        if not m or int(m["n"]) != n:
            raise ModelError(
                f"{filename}: cannot tell this SAE's k (top-k) from its name; name it "
                f"{{domain}}_{{k}}_{{n}}_{{x}}.pth or convert it to our folder format"
            )
        k = int(m["k"])
        embedding_model = (
            "openai/text-embedding-3-small"
            if d == 1536 and source.get("repo_id") == "charlieoneill/embedding-saes"
            else None
        )
    config = {"architecture": "topk_sae", "d_in": d, "m": n, "k": k, "embedding_model": embedding_model}
    # from_tensors checks decoder/bias shapes against (n, d) and copies into float32.
    sae = SparseAutoencoder.from_tensors(config, {key: tensors[key] for key in PUBLISHED_KEYS}, source=filename)
    sae.source_ = {**source, "format": "pytorch_state_dict"}
    if entry is not None:
        sae.source_["registry_name"] = entry["name"]
        sae.source_["corpus"] = entry.get("corpus")
    return sae


def _from_published_file(
    path: Path, entry: Optional[dict], source: dict, *, redownload_hint: bool = True
) -> SparseAutoencoder:
    return convert_published(read_state_dict(path, redownload_hint=redownload_hint), entry, source, Path(path).name)


# ---------------------------------------------------------------------------------------- compatibility
def _model_key(model_id: str) -> str:
    return model_id.strip().rstrip("/").split("/")[-1].lower()


def check_compatible(sae: SparseAutoencoder, embedding_model_id: Optional[str], dim: int) -> None:
    """Refuse inputs an SAE was not trained on: a different width, or a different known embedding model."""
    want_dim = sae.d_in
    want_model = sae.config_.embedding_model
    got = f"{dim}-d" + (f" from {embedding_model_id}" if embedding_model_id else "")
    need = f"{want_dim}-d embeddings" + (f" from {want_model}" if want_model else "")
    fix = (
        (
            f" Embed the texts with {want_model}"
            + (" (needs OPENAI_API_KEY)" if want_model and want_model.startswith("openai/") else "")
            + ", or give stored embeddings from that model with `embedding_col`."
        )
        if want_model
        else " Use embeddings of the width the SAE was trained on."
    )
    if int(dim) != want_dim:
        raise ModelError(f"This SAE expects {need}; got {got}.{fix}")
    if want_model and embedding_model_id and _model_key(want_model) != _model_key(embedding_model_id):
        raise ModelError(f"This SAE expects {need}; got {got} (same width, different model).{fix}")


# ---------------------------------------------------------------------------------------- push + model card
def portable_config(folder: str | Path) -> dict:
    """The SAE folder's config.json with every local absolute path made relative to the folder (or cut to its
    last part), so what is published says where things came from without revealing this machine's layout."""
    folder = Path(folder)
    try:
        config = json.loads((folder / CONFIG_NAME).read_text())
    except FileNotFoundError:
        raise ModelError(f"{folder} is not an SAE folder: {CONFIG_NAME} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"Corrupt SAE config {folder / CONFIG_NAME}: {exc}") from None
    if not isinstance(config, dict):
        raise ModelError(f"Corrupt SAE config {folder / CONFIG_NAME}: expected a JSON object")
    root = folder.resolve()

    def portable(value):
        if isinstance(value, dict):
            return {k: portable(v) for k, v in value.items()}
        if isinstance(value, list):
            return [portable(v) for v in value]
        if isinstance(value, str) and (
            value.startswith("~") or PurePosixPath(value).is_absolute() or PureWindowsPath(value).drive
        ):
            path = Path(value).expanduser()
            try:
                return path.resolve().relative_to(root).as_posix()
            except (ValueError, OSError):
                return PureWindowsPath(value).name if PureWindowsPath(value).drive else path.name
        return value

    return portable(config)


def model_card(folder: str | Path, repo_id: Optional[str] = None) -> str:
    """A Markdown model card (with Hub metadata) for an SAE folder: architecture, training data, metrics, usage."""
    folder = Path(folder)
    config = portable_config(folder)
    em = config.get("embedding_model") or "unknown embedding model"
    title = repo_id or folder.name
    lines = [
        "---",
        "library_name: hsae",
        "tags:",
        "- sparse-autoencoder",
        "- embeddings",
        "- interpretability",
        "- hsae",
        "---",
        "",
        f"# {title}",
        "",
        f"A top-k sparse autoencoder (SAE) over **{config.get('d_in')}-d text embeddings from {em}**, "
        f"made with [hsae](https://github.com/) so texts can be read, searched and tested as sparse concepts.",
        "",
        "## Architecture",
        "",
        "| field | value |",
        "|---|---|",
    ]
    arch_rows = [
        ("architecture", config.get("architecture", "topk_sae")),
        ("input width (d_in)", config.get("d_in")),
        ("latents (m)", config.get("m")),
        ("active latents per text (k)", config.get("k")),
        ("batch top-k", config.get("batch_topk", False)),
        ("Matryoshka prefixes", ", ".join(map(str, config.get("matryoshka") or [])) or "none"),
        ("levels (latents/active, main first)", settings.format_levels(config.get("levels") or [])),
        ("embedding model", em),
    ]
    lines += [f"| {k} | {v} |" for k, v in arch_rows]
    lines += [
        "",
        "Model: `z = TopK(W_enc (x - b_pre) + b_lat)`, `x_hat = W_dec^T z + b_pre`, decoder rows of unit norm.",
        "",
    ]
    lines += ["## Training data", ""]
    data = config.get("training_data") or config.get("data") or {}
    source = config.get("source") or {}
    if isinstance(data, dict) and data:
        lines += [f"- {k}: {v}" for k, v in data.items()]
    elif data:
        lines.append(f"- {data}")
    if source:
        lines += [f"- source: {json.dumps(source, default=str)}"]
    metrics = config.get("metrics") or {}
    n_rows = (metrics.get("n_train") or 0) + (metrics.get("n_val") or 0)
    if n_rows:
        lines.append(f"- {n_rows} embedded texts ({metrics.get('n_train')} train / {metrics.get('n_val')} validation)")
    training = config.get("training") or {}
    if training:
        lines.append("- training settings: " + ", ".join(f"{k}={v}" for k, v in training.items()))
    if lines[-1] == "":
        lines.append("- not recorded")
    lines += ["", "## Metrics", ""]
    shown = {k: v for k, v in metrics.items() if v is not None}
    if shown:
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {k} | {round(v, 4) if isinstance(v, float) else v} |" for k, v in shown.items()]
        lines += ["", "nmse: squared reconstruction error over the data's variance (0 is perfect)."]
    else:
        lines.append("No metrics recorded.")
    ref = f"hub:{repo_id}" if repo_id else "hub:OWNER/NAME"
    lines += [
        "",
        "## Use",
        "",
        "```bash",
        "pip install hsae",
        f"hsae build --sae {ref} --data table.parquet --text-col text --out workspace/",
        "```",
        "",
        "```python",
        "from hsae_core.hub import load_sae",
        f'sae = load_sae("{ref}")',
        "codes = sae.transform(embeddings)  # sparse (N x m), at most k non-zeros per row",
        "```",
        "",
    ]
    return "\n".join(lines)


def push_sae(
    folder: str | Path,
    repo_id: str,
    *,
    token: Optional[str] = None,
    private: bool = False,
    commit_message: Optional[str] = None,
    endpoint: Optional[str] = None,
) -> str:
    """Write a README.md model card into ``folder`` and upload the folder to the Hub repo; returns its URL."""
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub import errors as hf_errors

    from .sae import SparseAutoencoder

    folder = Path(folder)
    SparseAutoencoder.load(folder)  # refuse to publish something that does not load
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo_id or ""):
        raise ModelError(f"'{repo_id}' is not a Hub repo id: use OWNER/NAME")
    if _offline():
        raise ModelError("Cannot push while HF_HUB_OFFLINE is set: unset it and make sure the Hub is reachable")
    card = model_card(folder, repo_id)
    config = json.dumps(portable_config(folder), indent=2).encode("utf-8")
    atomic_write_text(folder / "README.md", card)
    api = HfApi(endpoint=endpoint or settings.hf_endpoint(), token=token)
    # config.json and the card are sent from memory (their local paths made portable); the weights as they are.
    operations = [
        CommitOperationAdd(path_in_repo=CONFIG_NAME, path_or_fileobj=config),
        CommitOperationAdd(path_in_repo=WEIGHTS_NAME, path_or_fileobj=str(folder / WEIGHTS_NAME)),
        CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card.encode("utf-8")),
    ]
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        api.create_commit(
            repo_id=repo_id,
            repo_type="model",
            operations=operations,
            commit_message=commit_message or "Upload SAE with hsae",
        )
    except hf_errors.LocalTokenNotFoundError:
        raise ModelError("Pushing needs a Hugging Face token: run `hf auth login` or set HF_TOKEN") from None
    except hf_errors.HfHubHTTPError as exc:
        raise ModelError(f"Upload to {repo_id} failed: {first_line(exc)} (check HF_TOKEN and write access)") from None
    except _network_errors() as exc:
        raise ModelError(
            f"Upload to {repo_id} failed: cannot reach the Hugging Face Hub at {api.endpoint} "
            f"({first_line(exc, limit=160)}); check the network connection and HF_ENDPOINT"
        ) from None
    except (OSError, ValueError) as exc:
        raise ModelError(f"Upload to {repo_id} failed: {first_line(exc)}") from None
    return f"{api.endpoint.rstrip('/')}/{repo_id}"
