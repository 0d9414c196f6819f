"""Run `hsae ...` in a fresh interpreter and say which heavy libraries it imported: a command that only reads
files should start in about a second, not wait 3 s for torch and scikit-learn."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "sklearn")
_SCRIPT = (
    "import sys\n"
    "from hsae_core.cli import main\n"
    "code = main(sys.argv[1:])\n"
    f"print('\\nIMPORTED', [m for m in {HEAVY!r} if m in sys.modules], 'EXIT', code)\n"
)


def cli_imports(*args: str) -> tuple[str, list[str]]:
    """(what ``hsae args`` printed, the heavy libraries it imported); fails unless the command exits with 0."""
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, *map(str, args)], capture_output=True, text=True, cwd=REPO, timeout=300
    )
    out, _, last = proc.stdout.rpartition("\nIMPORTED ")
    assert proc.returncode == 0 and last.strip().endswith("EXIT 0"), proc.stdout + proc.stderr
    return out, ast.literal_eval(last.split(" EXIT")[0])
