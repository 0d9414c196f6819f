"""Run the real ``hsae`` command with one fault injected at the operating-system edge, for the fault tests.

    python tests/fault_runner.py build --data ... --out ...

Environment:
- ``HSAE_KILL_AT=WHEN:OP:NAME`` kills this process with SIGKILL (as ``kill -9`` or a power cut would) at the
  first ``OP`` (``replace`` = os.replace/os.rename, ``rmtree`` = shutil.rmtree) whose path contains ``NAME``,
  ``before`` or ``after`` the operation itself.
- ``HSAE_HOLD_LOCK_UNTIL=PATH`` keeps a build's lock until PATH exists (a slow build), so a second build
  meets it; it lingers right after the lock holder records itself (the only ``os.pwrite`` in hsae).
- ``HSAE_FSIZE_LIMIT=BYTES`` caps the size of any file this process writes (a disk that fills up mid-write).

Nothing in hsae is replaced: the wrappers only add a kill, a delay or a size limit around the OS calls.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import sys
import time


def _kill_hook() -> None:
    spec = os.environ.get("HSAE_KILL_AT")
    if not spec:
        return
    when, op, name = spec.split(":", 2)

    def wrap(fn, path_of):
        def wrapped(*args, **kwargs):
            hit = name in os.fspath(path_of(*args))
            if hit and when == "before":
                os.kill(os.getpid(), signal.SIGKILL)
            result = fn(*args, **kwargs)
            if hit and when == "after":
                os.kill(os.getpid(), signal.SIGKILL)
            return result

        return wrapped

    if op == "replace":
        os.replace = wrap(os.replace, lambda src, dst, **_: dst)
        os.rename = wrap(os.rename, lambda src, dst, **_: dst)
    elif op == "rmtree":
        shutil.rmtree = wrap(shutil.rmtree, lambda path, *a, **_: path)
    else:
        raise SystemExit(f"unknown HSAE_KILL_AT operation {op!r}")


def _slow_lock_hook() -> None:
    until = os.environ.get("HSAE_HOLD_LOCK_UNTIL")
    if not until:
        return
    real = os.pwrite

    def pwrite(fd, data, offset):  # the lock holder writes who it is right after locking: linger there
        written = real(fd, data, offset)
        deadline = time.monotonic() + 600
        while not os.path.exists(until) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.pwrite = real
        return written

    os.pwrite = pwrite


def _fsize_hook() -> None:
    limit = int(os.environ.get("HSAE_FSIZE_LIMIT") or 0)
    if limit:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit then fail with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


if __name__ == "__main__":
    _kill_hook()
    _slow_lock_hook()
    _fsize_hook()
    from hsae_core.cli import main

    sys.exit(main(sys.argv[1:]))
