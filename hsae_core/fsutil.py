"""Filesystem helpers that keep "nothing lost, nothing cryptic": output locations checked before any work,
atomic writes (temporary name, fsync, rename), whole folders swapped in one step, stale temporaries removed,
and OS errors turned into one readable line.

Temporary names carry the writer's process id (``.NAME.stage-<pid>-<hex>``), so a later run can tell a
leftover of a dead process from the work of a live one and remove only the former.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Optional

from .errors import StorageError

STALE_AFTER_S = 3600.0  # temporaries without a pid are removed once they are this old


# ---------------------------------------------------------------------------------------- messages
def describe_os_error(exc: OSError, action: str = "write") -> str:
    """One line for an OSError: what failed, where, and the system's reason (never a traceback)."""
    where = exc.filename if exc.filename is not None else None
    reason = exc.strerror or " ".join(str(exc).split()) or type(exc).__name__
    if exc.errno is None and not exc.strerror:  # e.g. numpy's "N requested and M written": a short write
        reason += " (the disk may be full)"
    hint = {
        errno.ENOSPC: "free some disk space or choose another location",
        errno.EDQUOT: "free some disk space or choose another location",
        errno.EACCES: "choose a location you can write to",
        errno.EPERM: "choose a location you can write to",
        errno.EROFS: "the file system is read-only; choose another location",
        errno.EISDIR: "a folder is in the way; choose another name",
        errno.ENOTDIR: "a file is in the way; choose another location",
    }.get(exc.errno)
    line = f"Could not {action} {where}: {reason}" if where else f"Filesystem error: {reason}"
    return line + (f" ({hint})" if hint else "")


# ---------------------------------------------------------------------------------------- up-front checks
def check_output_dir(
    path: str | Path, what: str = "output folder", *, allow_nonempty: Optional[Callable] = None
) -> Path:
    """Refuse, before any work, a folder output that cannot be written: a file in the way, an unwritable
    or read-only location, or (with ``allow_nonempty``) an existing non-empty folder that is not ours.

    ``allow_nonempty(path) -> bool`` says whether an existing non-empty folder may be replaced.
    """
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise StorageError(f"The {what} {path} is a file, not a folder; choose a folder name")
    if path.is_dir():
        if allow_nonempty is not None and any(path.iterdir()) and not allow_nonempty(path):
            raise StorageError(f"The {what} {path} already exists and holds other files; choose a new or empty folder")
        probe_writable(path, what)
        if allow_nonempty is not None:
            probe_writable(path.parent, what)  # the folder is replaced through a sibling
        return path
    probe_writable(_nearest_existing(path, what), what)
    return path


def check_output_file(path: str | Path, what: str = "output file") -> Path:
    """Refuse, before any work, a file output that cannot be written (a folder in the way, unwritable parent)."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise StorageError(f"The {what} {path} is a folder; give a file name")
    if path.exists() and not path.is_file():
        raise StorageError(f"The {what} {path} is not a regular file (a device or pipe); give a file name")
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise StorageError(f"The {what} {path} cannot be created: {parent} is a file")
    probe_writable(parent if parent.is_dir() else _nearest_existing(parent, what), what)
    return path


def check_cache_dir(path: str | Path, env_var: str = "HSAE_CACHE_DIR") -> Path:
    """Refuse an unusable cache folder before any work, naming the variable that sets it."""
    path = Path(path).expanduser()
    try:
        if path.exists() and not path.is_dir():
            raise StorageError(f"The cache folder {path} ({env_var}) is a file; set {env_var} to a writable folder")
        probe_writable(path if path.is_dir() else _nearest_existing(path, "cache folder"), "cache folder")
    except StorageError as exc:
        raise StorageError(f"{exc} (cache folder set by {env_var})") from None
    return path


def _nearest_existing(path: Path, what: str) -> Path:
    """The closest ancestor that exists; it must be a folder for ``path`` to be creatable."""
    probe = path.absolute()
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise StorageError(f"The {what} {path} cannot be created: {probe} is a file, not a folder")
    return probe


def probe_writable(folder: Path, what: str) -> None:
    """Create and remove a small file in ``folder``: the only test that is right for root, ACLs and read-only mounts."""
    probe = Path(folder) / f".hsae-write-probe-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise StorageError(
            f"Cannot write the {what} in {folder}: {exc.strerror or exc}; choose a writable location"
        ) from None


# ---------------------------------------------------------------------------------------- atomic writes
def temp_name(name: str, kind: str = "tmp") -> str:
    """A hidden temporary name beside ``name`` that records this process: ``.NAME.KIND-<pid>-<hex>``."""
    return f".{name}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def fsync_dir(folder: str | Path) -> None:
    """Make a rename inside ``folder`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable, mode: str = "wb") -> Path:
    """Write a file through ``write(fileobj)`` under a temporary name, fsync it and rename it into place."""
    path = Path(path)
    tmp = path.with_name(temp_name(path.name))
    try:
        with open(tmp, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with _quiet():
            tmp.unlink()
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def atomic_write_json(path: str | Path, obj, **dump_kwargs) -> Path:
    return atomic_write_text(path, json.dumps(obj, **dump_kwargs))


class _quiet:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return exc[0] is not None and issubclass(exc[0], OSError)


# ---------------------------------------------------------------------------------------- folder swap
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _renameat2():
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return fn


def exchange(a: str | Path, b: str | Path) -> bool:
    """Atomically swap two paths (Linux ``renameat2(RENAME_EXCHANGE)``); False where the system cannot."""
    fn = _renameat2()
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(err, os.strerror(err), str(b))


def replace_folder(out: str | Path, write: Callable[[Path], None]) -> Path:
    """Write a whole folder through ``write(staging_folder)``, then put it in place of ``out`` in one step.

    A kill at any moment leaves either the previous ``out`` or the new one, never a mix: the new content
    is complete in a sibling staging folder before an atomic exchange (or, where the system has none,
    two renames that :func:`recover_folder` undoes after a crash between them).
    """
    out = Path(out)
    recover_folder(out)
    remove_stale(out.parent, out.name)
    stage = out.parent / temp_name(out.name, "stage")
    stage.mkdir(parents=True)
    try:
        write(stage)
        _fsync_tree(stage)
        if out.exists():
            if not exchange(stage, out):
                old = out.parent / temp_name(out.name, "old")
                os.rename(out, old)
                os.rename(stage, out)
                stage = old
            fsync_dir(out.parent)
            shutil.rmtree(stage, ignore_errors=True)  # now the previous content
        else:
            os.rename(stage, out)
            fsync_dir(out.parent)
    except BaseException:
        if stage.exists() and stage != out:
            shutil.rmtree(stage, ignore_errors=True)
        raise
    return out


def recover_folder(out: str | Path) -> None:
    """After a crash between the two renames of :func:`replace_folder`, put the previous folder back."""
    out = Path(out)
    if out.exists() or not out.parent.is_dir():
        return
    olds = sorted(out.parent.glob(f".{glob_escape(out.name)}.old-*"), key=lambda p: p.stat().st_mtime)
    if olds:
        os.rename(olds[-1], out)


def _fsync_tree(folder: Path) -> None:
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                fd = os.open(os.path.join(root, name), os.O_RDONLY)
            except OSError:
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(root)


# ---------------------------------------------------------------------------------------- stale temporaries
_PID_RE = re.compile(r"\.[a-z]+-(\d+)-[0-9a-f]{8}$")  # the end of a temp_name()


def pid_alive(pid: int) -> bool:
    """True when a process with this id exists on this machine (signal 0 probes without sending)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale(path: Path, max_age_s: float = STALE_AFTER_S) -> bool:
    """A temporary is stale when the process named in it is gone, or (no pid in the name) when it is old."""
    m = _PID_RE.search(path.name)
    if m:
        return not pid_alive(int(m.group(1)))
    try:
        return time.time() - path.lstat().st_mtime > max_age_s
    except OSError:
        return False


def remove_stale(folder: str | Path, name: str | None = None, patterns: tuple[str, ...] = ()) -> list[Path]:
    """Remove stale temporaries in ``folder``: ``.NAME.<kind>-*`` siblings of ``name`` and ``patterns`` globs."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    globs = list(patterns)
    if name is not None:
        globs += [f".{glob_escape(name)}.{kind}-*" for kind in ("stage", "tmp", "build", "old")]
    removed = []
    for pattern in globs:
        for path in folder.glob(pattern):
            if is_stale(path):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    with _quiet():
                        path.unlink()
                removed.append(path)
    return removed


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)
