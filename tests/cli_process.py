"""Run `hsae ...` in a fresh interpreter and say which heavy libraries it imported: a command that only reads
files, or refuses its input, should answer in about a second, not wait 3 s for torch and scikit-learn."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "sklearn")
_SCRIPT = (
    "import sys\n"
    "from hsae_core.cli import main\n"
    "code = main(sys.argv[1:])\n"
    f"print('\\nIMPORTED', [m for m in {HEAVY!r} if m in sys.modules], 'EXIT', code)\n"
)


def cli_run(*args) -> SimpleNamespace:
    """``hsae args`` in a fresh interpreter: its exit ``code``, ``out`` and ``err``, and the heavy libraries it
    ``imported``."""
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, *map(str, args)], capture_output=True, text=True, cwd=REPO, timeout=300
    )
    out, _, last = proc.stdout.rpartition("\nIMPORTED ")
    assert proc.returncode == 0 and " EXIT " in last, proc.stdout + proc.stderr
    imported, code = last.split(" EXIT ")
    return SimpleNamespace(code=int(code), out=out, err=proc.stderr, imported=ast.literal_eval(imported))


def cli_imports(*args) -> tuple[str, list[str]]:
    """(what ``hsae args`` printed, the heavy libraries it imported); fails unless the command exits with 0."""
    done = cli_run(*args)
    assert done.code == 0, done.out + done.err
    return done.out, done.imported
