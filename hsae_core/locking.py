"""One builder per workspace: an OS file lock held for a whole build.

The lock is ``fcntl.flock`` on a hidden file beside the workspace folder (``.NAME.lock``), so the kernel
releases it when the holder dies, however it dies: a stale lock never blocks anyone. The file also
records who holds it (pid, host, start time) for the "another build is running" message. Where the
file system has no ``flock`` (some network mounts), an exclusive pid file is used instead and a pid
file whose process is gone is taken over.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Optional

from .errors import StorageError, WorkspaceBusyError
from .fsutil import pid_alive

try:
    import fcntl
except ImportError:  # Windows: only the pid-file fallback
    fcntl = None


def lock_path(workspace: str | Path) -> Path:
    """The lock file of a workspace folder: ``.NAME.lock`` beside it."""
    workspace = Path(workspace)
    return workspace.parent / f".{workspace.name}.lock"


# locks held in this process, by (lock file, thread), and how many times that thread entered them
_HELD: dict[tuple[str, int], int] = {}
_HELD_LOCK = threading.Lock()


class WorkspaceLock:
    """``with WorkspaceLock(ws):`` holds the build lock of ``ws`` or raises :class:`WorkspaceBusyError`.

    ``wait`` seconds (default 0) are spent retrying before giving up. Re-entrant within one thread (a Ray
    build holds the lock and then runs the ordinary build, which takes it again); another thread of the same
    process is refused like another process (the dashboard builds in background threads: two of them into one
    folder would otherwise both build).
    """

    def __init__(self, workspace: str | Path, wait: float = 0.0):
        self.workspace = Path(workspace)
        self.path = lock_path(self.workspace)
        self.wait = float(wait)
        self._fd: Optional[int] = None
        self._pidfile = False
        self._file = str(self.path.absolute())
        self._key: Optional[tuple[str, int]] = None  # (lock file, thread) while held
        self._nested = False

    def __enter__(self) -> WorkspaceLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        self._key = (self._file, threading.get_ident())
        with _HELD_LOCK:
            if _HELD.get(self._key):
                _HELD[self._key] += 1
                self._nested = True
                return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.wait
        while True:
            if self._try_acquire():
                with _HELD_LOCK:
                    _HELD[self._key] = 1
                return
            if time.monotonic() >= deadline:
                raise WorkspaceBusyError(self._busy_message())
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    def _try_acquire(self) -> bool:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StorageError(
                f"Cannot create the build lock {self.path}: {exc.strerror}; choose a writable "
                f"location for the workspace"
            ) from None
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                return self._try_pidfile()
            self._fd = fd
            self._write_holder(fd)
            return True
        os.close(fd)
        return self._try_pidfile()

    def _try_pidfile(self) -> bool:
        """Fallback without flock: a pid file created exclusively; one left by a dead process is taken over."""
        pidfile = self.path.with_name(self.path.name + ".pid")
        for _ in range(2):
            try:
                fd = os.open(pidfile, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = _read_holder(pidfile)
                if holder.get("host") == socket.gethostname() and not pid_alive(int(holder.get("pid") or 0)):
                    pidfile.unlink(missing_ok=True)  # stale: its builder died
                    continue
                return False
            self._fd, self._pidfile = fd, True
            self._write_holder(fd)
            return True
        return False

    def _write_holder(self, fd: int) -> None:
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)

    def _busy_message(self) -> str:
        source = self.path.with_name(self.path.name + ".pid") if self._uses_pidfile() else self.path
        holder = _read_holder(source)
        who = f" (pid {holder['pid']} since {holder.get('since', '?')})" if holder.get("pid") else ""
        return f"Another build is running on {self.workspace}{who}; wait for it to finish, or build into another folder"

    def _uses_pidfile(self) -> bool:
        return self.path.with_name(self.path.name + ".pid").exists()

    def release(self) -> None:
        with _HELD_LOCK:
            if self._nested or self._fd is not None:
                left = _HELD.get(self._key, 1) - 1
                if left > 0:
                    _HELD[self._key] = left
                else:
                    _HELD.pop(self._key, None)
            if self._nested:
                self._nested = False
                return
        if self._fd is None:
            return
        try:
            if self._pidfile:
                self.path.with_name(self.path.name + ".pid").unlink(missing_ok=True)
            else:
                os.ftruncate(self._fd, 0)  # the file stays (removing it would race with the next locker)
        except OSError:
            pass
        finally:
            os.close(self._fd)  # closing releases the flock
            self._fd = None


def _read_holder(path: Path) -> dict:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}
