"""Build Hugging Face cache folders the way huggingface_hub lays them out, so loading code runs unchanged.

``<cache>/<type>s--OWNER--NAME/refs/<branch>`` holds the commit id (no trailing newline) and
``<cache>/<type>s--OWNER--NAME/snapshots/<commit>/<file>`` the files. With HF_HUB_OFFLINE=1 the real
``hf_hub_download`` / ``snapshot_download`` resolve these exactly as they would a downloaded repo.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from pathlib import Path

import torch


def commit_id(label: str) -> str:
    return hashlib.sha1(label.encode()).hexdigest()


def add_to_cache(
    cache: Path, repo_id: str, files: dict, *, repo_type: str = "model", commit: str | None = None, branch: str = "main"
) -> Path:
    """Write ``files`` ({relative name: bytes or a source Path}) as one commit of ``repo_id``; returns the snapshot."""
    owner, name = repo_id.split("/")
    repo_dir = Path(cache) / f"{repo_type}s--{owner}--{name}"
    commit = commit or commit_id(f"{repo_id}:{sorted(files)}")
    snapshot = repo_dir / "snapshots" / commit
    for rel, content in files.items():
        target = snapshot / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(Path(content).read_bytes() if isinstance(content, Path) else content)
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / branch).write_text(commit)
    return snapshot


def published_state_dict(n: int = 3072, d: int = 1536, seed: int = 0) -> OrderedDict[str, torch.Tensor]:
    """A state dict in the published layout: encoder (n x d), decoder (d x n, unit columns), pre_bias, latent_bias."""
    g = torch.Generator().manual_seed(seed)
    decoder = torch.randn(d, n, generator=g)
    decoder /= decoder.norm(dim=0, keepdim=True)
    encoder = decoder.T.clone() + 0.01 * torch.randn(n, d, generator=g)
    pre_bias = 0.01 * torch.randn(d, generator=g)
    latent_bias = 0.01 * torch.randn(n, generator=g) / math.sqrt(d)
    return OrderedDict(
        [("pre_bias", pre_bias), ("latent_bias", latent_bias), ("encoder.weight", encoder), ("decoder.weight", decoder)]
    )


def save_state_dict(state: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, str(path))
    return path
