"""A normal (non-editable) install works on its own: package data ships in the wheel, `hsae models` lists it,
and the library imports no dashboard packages."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh venv with hsae installed non-editable from a copy of the sources (dependencies borrowed from
    the test's own environment through a .pth file, so nothing is downloaded)."""
    root = tmp_path_factory.mktemp("pkg")
    src = root / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "hsae_core", src / "hsae_core", ignore=shutil.ignore_patterns("__pycache__"))
    env_dir = root / "venv"
    venv.create(env_dir, with_pip=False)  # pip and setuptools come from the borrowed environment
    python = env_dir / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(purelib, "borrowed_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", str(src)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr and "deprecated" not in result.stderr, result.stderr  # a clean install
    shutil.rmtree(src)  # the installed copy must not depend on the sources
    return env_dir


def test_registry_ships_in_the_wheel_and_hsae_models_lists_it(installed, tmp_path):
    out = subprocess.run(
        [str(installed / "bin" / "hsae"), "models", "--domain", "csLG"], capture_output=True, text=True, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert "csLG_64_3072_128" in out.stdout and "hub:charlieoneill/embedding-saes/csLG_64_3072_128.pth" in out.stdout
    version = subprocess.run([str(installed / "bin" / "hsae"), "--version"], capture_output=True, text=True)
    project = next(line for line in (REPO / "pyproject.toml").read_text().splitlines() if line.startswith("version"))
    assert version.returncode == 0 and version.stdout.strip() == f"hsae {project.split('=')[1].strip().strip(chr(34))}"
    check = subprocess.run(
        [
            str(installed / "bin" / "python"),
            "-c",
            "import hsae_core, hsae_core.hub as h; print(hsae_core.__file__); print(len(h.registry()))",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert check.returncode == 0, check.stderr
    location, count = check.stdout.split()
    assert str(installed) in location and int(count) == 40
    prompts = subprocess.run(
        [
            str(installed / "bin" / "python"),
            "-c",
            "from hsae_core.llm import load_prompt; print(len(load_prompt('judge')) > 0)",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert prompts.stdout.strip() == "True", prompts.stderr


def test_library_imports_no_dashboard_packages():
    code = (
        "import sys, hsae_core, hsae_core.pipeline, hsae_core.workspace, hsae_core.cli, hsae_core.search, "
        "hsae_core.features, hsae_core.mapping\n"
        "bad = [m for m in ('streamlit', 'plotly', 'umap') if m in sys.modules]\n"
        "assert not bad, bad"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr and "deprecated" not in result.stderr, result.stderr  # a clean install
