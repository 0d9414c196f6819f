"""The manifest/commit layer of a workspace: readers always see one consistent, complete version.

Every step output is committed under a fresh versioned name (``corpus.v-1a2b3c4d5e6f.parquet``) and is never
modified afterwards. The manifest (``workspace.json``), written last with one atomic rename, names the
current version of every step with its size and SHA-256. So:

- a reader that opened a manifest reads exactly the files it names, never a half-replaced one;
- a kill at any moment of a commit leaves the previous manifest and all of its files in place (the new
  files are orphans that the next build removes);
- a build can check, before reusing a step, that the file still holds what was written.

Versions no manifest names are deleted right after the commit (and at the start of the next build).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Optional

from .fsutil import atomic_write_json, fsync_dir

MANIFEST_VERSION = 2
_CHUNK = 8 << 20


def split_name(name: str) -> tuple[str, str]:
    """('corpus', '.parquet') for 'corpus.parquet'; ('sae', '') for a folder name without a suffix."""
    suffix = Path(name).suffix
    return name[: len(name) - len(suffix)], suffix


def versioned(name: str) -> str:
    """A fresh version name of a step output: ``STEM.v-<12 hex>SUFFIX``."""
    stem, suffix = split_name(name)
    return f"{stem}.v-{uuid.uuid4().hex[:12]}{suffix}"


def is_version_of(candidate: str, name: str) -> bool:
    """True for ``name`` itself (a version-1 workspace's fixed name) or any versioned name of it."""
    if candidate == name:
        return True
    stem, suffix = split_name(name)
    return re.fullmatch(rf"{re.escape(stem)}\.v-[0-9a-f]{{12}}{re.escape(suffix)}", candidate) is not None


def fingerprint(path: str | Path) -> dict:
    """{'size': bytes, 'sha256': hex} of a file, or of a folder (relative names and contents, in order)."""
    path = Path(path)
    h = hashlib.sha256()
    size = 0
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        if f is not path:
            h.update(f.relative_to(path).as_posix().encode("utf-8") + b"\x00")
        with open(f, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
                size += len(chunk)
    return {"size": size, "sha256": h.hexdigest()}


def disk_size(path: Path) -> int:
    """Total bytes of a file or of every file under a folder (a cheap stat, no reading)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def entry_name(manifest: dict, step: str, default: str) -> str:
    """The file name the manifest gives a step (a version-1 manifest has none: the fixed default)."""
    entry = (manifest.get("files") or {}).get(step)
    if isinstance(entry, dict) and isinstance(entry.get("name"), str) and "/" not in entry["name"]:
        return entry["name"]
    return default


def check_entry(path: Path, entry: Optional[dict], deep: bool) -> Optional[str]:
    """Why ``path`` does not hold what the manifest recorded (None when it does, or nothing was recorded)."""
    if not path.exists():
        return "it is missing"
    if not isinstance(entry, dict) or "size" not in entry:
        return None
    size = disk_size(path)
    if size != entry["size"]:
        return f"it has {size} bytes, the manifest recorded {entry['size']}"
    if deep and entry.get("sha256") and fingerprint(path)["sha256"] != entry["sha256"]:
        return "its content does not match the checksum recorded when it was built"
    return None


def commit(out: Path, staged: dict[str, Path], names: dict[str, str], manifest: dict, manifest_name: str) -> dict:
    """Move each staged step output into ``out`` under a new version name, then write the manifest (last,
    atomically) naming them, then delete versions no longer named. Returns the manifest as written.

    ``manifest['files']`` must already name the reused steps; staged steps are added here.
    """
    out.mkdir(parents=True, exist_ok=True)
    files = dict(manifest.get("files") or {})
    for step, src in staged.items():
        name = versioned(names[step])
        files[step] = {"name": name, **fingerprint(src)}
        os.replace(src, out / name)
    fsync_dir(out)
    manifest = {**manifest, "version": MANIFEST_VERSION, "files": files}
    atomic_write_json(out / manifest_name, manifest, indent=2, default=str)
    remove_unreferenced(out, manifest, names)
    return manifest


def remove_unreferenced(out: Path, manifest: dict, names: dict[str, str]) -> list[str]:
    """Delete step outputs in ``out`` (fixed or versioned names) that ``manifest`` does not name."""
    keep = {entry_name(manifest, step, default) for step, default in names.items()}
    removed = []
    if not out.is_dir():
        return removed
    for child in out.iterdir():
        if child.name in keep or not any(is_version_of(child.name, n) for n in names.values()):
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
        removed.append(child.name)
    return removed
