"""Hypothesis run folders written all at once: staged in a hidden sibling folder, tied together by a run
manifest (``run.json``: a run id plus the size and SHA-256 of every file), then swapped into place in one
step. A kill while a rerun writes leaves the previous run; a folder whose files do not match its manifest
(a mix of two runs, a truncated file) is refused in one line.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Optional

from .errors import DataError, StorageError
from .fsutil import atomic_write_json, check_output_dir, describe_os_error, recover_folder, replace_folder
from .snapshot import fingerprint

RUN_MANIFEST = "run.json"
RUN_FILES = ("hypotheses.csv", "summary.json", "holdout_annotations.parquet")


def looks_like_run(path: Path) -> bool:
    """A folder a new run may replace: an earlier run (or an empty folder), never a workspace."""
    path = Path(path)
    if _is_workspace(path):
        return False
    return any((path / name).exists() for name in (RUN_MANIFEST, *RUN_FILES))


def check_run_folder(out: str | Path) -> Path:
    """Refuse, before any work, a run folder that cannot be written or would overwrite something else."""
    if _is_workspace(Path(out).expanduser()):
        raise StorageError(
            f"The run folder {out} is a workspace (hsae build wrote it); a run there would replace it: "
            "choose another folder"
        )
    return check_output_dir(out, "run folder", allow_nonempty=looks_like_run)


def _is_workspace(path: Path) -> bool:
    from .workspace import Workspace

    return Workspace.is_workspace(path)


def new_run_id() -> str:
    return uuid.uuid4().hex[:16]


def write_run_folder(out: str | Path, run_id: str, write: Callable[[Path], None]) -> Path:
    """Write a run through ``write(folder)`` into a staging folder, add ``run.json``, then swap it into ``out``."""
    out = check_run_folder(out)

    def staged(folder: Path) -> None:
        write(folder)
        files = {p.relative_to(folder).as_posix(): fingerprint(p) for p in sorted(folder.rglob("*")) if p.is_file()}
        atomic_write_json(
            folder / RUN_MANIFEST, {"format": "hsae-run", "version": 1, "run_id": run_id, "files": files}, indent=2
        )

    try:
        return replace_folder(out, staged)
    except OSError as exc:
        raise StorageError(
            f"Writing the run folder {out} failed: {describe_os_error(exc)}; any previous run there is unchanged"
        ) from None


def verify_run_folder(out: str | Path) -> Optional[str]:
    """Check a run folder against its ``run.json``; returns its run id (None for a run written before run
    manifests existed). Raises one DataError line when a file is missing, damaged or from another run."""
    out = Path(out)
    recover_folder(out)
    manifest_path = out / RUN_MANIFEST
    if not manifest_path.is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
        files, run_id = manifest["files"], manifest["run_id"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(
            f"Run folder {out}: {RUN_MANIFEST} is damaged ({type(exc).__name__}); run the hypotheses "
            "again into this folder"
        ) from None
    for name in RUN_FILES:
        path, entry = out / name, files.get(name)
        if entry is None:
            if path.exists():
                raise _mixed(out, name)
            continue
        if not path.is_file():
            raise DataError(f"Run folder {out} is incomplete: {name} is missing; run the hypotheses again")
        got = fingerprint(path)
        if got != {"size": entry.get("size"), "sha256": entry.get("sha256")}:
            raise _mixed(out, name)
    return run_id


def _mixed(out: Path, name: str) -> DataError:
    return DataError(
        f"Run folder {out} mixes files of different runs or holds a damaged file ({name} is not the "
        f"one written with {RUN_MANIFEST}); run the hypotheses again into this folder"
    )
