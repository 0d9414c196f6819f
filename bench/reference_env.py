"""Create ``bench/.venv-ref``: the reference implementation (HypotheSAEs from PyPI) in its own venv.

It is never a dependency of hsae. ``torch`` is pinned through a constraints file to the same CPU
build we use, so the reference cannot pull a CUDA wheel and both sides run the same kernels.

    python bench/reference_env.py          # create (idempotent) and print the interpreter path
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REF_VENV = BENCH / ".venv-ref"
REF_PYTHON = REF_VENV / "bin" / "python"
REF_PACKAGE = "hypothesaes==2.0.1"
TORCH_PIN = "torch==2.13.0"
MARKER = REF_VENV / ".installed-hypothesaes-2.0.1"


def ensure_reference_env(quiet: bool = True) -> Path:
    """Build the venv once; later calls return immediately."""
    if MARKER.exists() and REF_PYTHON.exists():
        return REF_PYTHON
    if not REF_PYTHON.exists():
        subprocess.run([sys.executable, "-m", "venv", str(REF_VENV)], check=True)
    constraints = REF_VENV / "constraints.txt"
    constraints.write_text(TORCH_PIN + "\n")
    pip = [str(REF_PYTHON), "-m", "pip", "install", "--disable-pip-version-check"] + (["-q"] if quiet else [])
    # torch first so the resolver sees the CPU wheel already satisfied.
    subprocess.run(pip + [TORCH_PIN], check=True)
    subprocess.run(pip + ["-c", str(constraints), REF_PACKAGE], check=True)
    out = subprocess.run(
        [str(REF_PYTHON), "-c", "import torch, hypothesaes; print(torch.__version__)"],
        check=True,
        capture_output=True,
        text=True,
        env={"OPENAI_API_KEY": "sk-unused-offline", "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"},
    )
    if "+cu" in out.stdout:
        raise SystemExit(f"reference env pulled a CUDA torch ({out.stdout.strip()}); check the constraints file")
    MARKER.write_text(out.stdout)
    return REF_PYTHON


if __name__ == "__main__":
    print(ensure_reference_env(quiet=False))
