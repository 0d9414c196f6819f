"""Nothing lost, nothing cryptic (issue 12): every fault of the probe, on a tiny real workspace (200 Yelp reviews).

Each fault case asserts exit status 2, exactly one line on stderr, no traceback, and that the previous
workspace or run is intact (byte-identical, or openable with the same content). Faults are real: files in
the way, read-only folders (as an unprivileged user), a file-size limit that makes writes fail mid-build,
SIGKILL at the commit's renames (tests/fault_runner.py), a second real ``hsae build``, a local HTTP server
that refuses or fails, and damaged files written over real ones.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from openai_server import FakeOpenAIServer, user_prompt

from hsae_core.cli import main
from hsae_core.errors import DataError, HsaeError, StorageError, WorkspaceBusyError, WorkspaceChangedError
from hsae_core.locking import WorkspaceLock, lock_path
from hsae_core.pipeline import load_run
from hsae_core.workspace import LAYOUT_FILE, LAYOUT_META, MANIFEST, STEPS, Workspace, build_workspace

REPO = Path(__file__).resolve().parents[1]
RUNNER = REPO / "tests" / "fault_runner.py"
M, K = 16, 2  # one dictionary (no levels): these tests are about builds and files, not the SAE's shape
DEAD_PID = 4_194_305  # above the kernel's PID_MAX_LIMIT (2**22): no process can have it


# ---------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def tiny(shared_data, tmp_path_factory):
    """200 real Yelp reviews as a CSV, a workspace built from them and a hypothesis run on them."""
    folder = tmp_path_factory.mktemp("tiny")
    frame = pd.read_json(shared_data / "yelp_reviews_demo" / "yelp-demo-val-2K.jsonl", lines=True).iloc[:200]
    frame = frame[["text", "stars"]].reset_index(drop=True)
    csv = folder / "reviews.csv"
    frame.to_csv(csv, index=False)
    ws = folder / "ws"
    build_workspace(ws, frame=frame, text_col="text", m=M, k=K, levels=(), seed=0, name="tiny")
    run = folder / "run"
    assert main(["hypothesize", *run_args(csv), "--out", str(run)]) == 0
    return SimpleNamespace(folder=folder, csv=csv, frame=frame, ws=ws, run=run)


def run_args(csv, *extra) -> list[str]:
    return [
        "--data",
        str(csv),
        "--text-col",
        "text",
        "--target-col",
        "stars",
        "--m",
        str(M),
        "--k",
        str(K),
        "--n",
        "4",
        "--rows-per-hypothesis",
        "0",  # all 4 on the 40 holdout rows: the runs here are told apart by their number of hypotheses
        "--epochs",
        "20",
        *extra,
    ]


def build_args(tiny, out, *extra) -> list[str]:
    return [
        "build",
        "--data",
        str(tiny.csv),
        "--text-col",
        "text",
        "--m",
        str(M),
        "--k",
        str(K),
        "--levels",
        "none",
        "--out",
        str(out),
        *extra,
    ]


@pytest.fixture
def ws_copy(tiny, tmp_path) -> Path:
    out = tmp_path / "ws"
    shutil.copytree(tiny.ws, out)
    return out


@pytest.fixture
def run_copy(tiny, tmp_path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(tiny.run, out)
    return out


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch) -> Path:
    """An empty embedding cache: a refusal 'before any work' must leave it empty."""
    cache = tmp_path / "fresh-cache"
    cache.mkdir()
    monkeypatch.setenv("HSAE_CACHE_DIR", str(cache))
    return cache


def tree(path: Path) -> dict[str, str]:
    """Every file under ``path`` (relative name -> SHA-256): equal trees are byte-identical."""
    path = Path(path)
    if path.is_file():
        return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()}
    return {
        p.relative_to(path).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def nothing_embedded(cache: Path) -> bool:
    return not list(cache.rglob("shard-*.npz"))


def one_line(code: int, err: str, *expected: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def fails(args, capsys, *expected) -> str:
    code = main([str(a) for a in args])
    return one_line(code, capsys.readouterr().err, *expected)


def run_proc(args, env=None, timeout=600, **kwargs) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        [sys.executable, str(RUNNER), *map(str, args)],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def ws_content(path: Path) -> dict:
    """What a reader sees in a workspace: manifest, and every file it names, byte for byte."""
    ws = Workspace.open(path)
    return {"manifest": (path / MANIFEST).read_text(), **{s: tree(ws.file(s)) for s in STEPS}}


# ---------------------------------------------------------------------------------------- 1. filesystem
def _file(tmp_path):
    f = tmp_path / "in-the-way.txt"
    f.write_text("keep me")
    return f


def _foreign(tmp_path):
    d = tmp_path / "my-documents"
    d.mkdir()
    (d / "thesis.tex").write_text("keep me")
    return d


OUTPUT_CASES = {
    "hypothesize-out-is-file": (lambda t, tmp: ["hypothesize", *run_args(t.csv), "--out", _file(tmp)], "is a file"),
    "hypothesize-out-under-file": (
        lambda t, tmp: ["hypothesize", *run_args(t.csv), "--out", _file(tmp) / "sub"],
        "cannot be created",
    ),
    "hypothesize-out-foreign-folder": (
        lambda t, tmp: ["hypothesize", *run_args(t.csv), "--out", _foreign(tmp)],
        "holds other files",
    ),
    "train-out-is-file": (
        lambda t, tmp: ["train", "--data", t.csv, "--text-col", "text", "--out", _file(tmp)],
        "is a file",
    ),
    "train-out-foreign-folder": (
        lambda t, tmp: ["train", "--data", t.csv, "--text-col", "text", "--out", _foreign(tmp)],
        "holds other files",
    ),
    "build-out-is-file": (lambda t, tmp: build_args(t, _file(tmp)), "is a file"),
    "build-out-foreign-folder": (lambda t, tmp: build_args(t, _foreign(tmp)), "holds other files"),
    "embed-out-is-folder": (
        lambda t, tmp: ["embed", "--data", t.csv, "--text-col", "text", "--out", _mkdir(tmp / "x.npy")],
        "is a folder",
    ),
    "embed-out-under-file": (
        lambda t, tmp: ["embed", "--data", t.csv, "--text-col", "text", "--out", _file(tmp) / "x.npy"],
        "cannot be created",
    ),
    "embed-out-is-a-pipe": (
        lambda t, tmp: ["embed", "--data", t.csv, "--text-col", "text", "--out", _fifo(tmp / "pipe.npy")],
        "not a regular file",
    ),
}


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


@pytest.mark.parametrize("case", sorted(OUTPUT_CASES))
def test_unwritable_output_is_refused_before_any_work(case, tiny, tmp_path, fresh_cache, capsys):
    make_args, expected = OUTPUT_CASES[case]
    args = make_args(tiny, tmp_path)
    before = tree(tmp_path / "in-the-way.txt") if (tmp_path / "in-the-way.txt").exists() else None
    foreign = tree(tmp_path / "my-documents") if (tmp_path / "my-documents").exists() else None
    fails(args, capsys, expected)
    assert nothing_embedded(fresh_cache), "refused only after embedding"
    if before is not None:
        assert tree(tmp_path / "in-the-way.txt") == before
    if foreign is not None:
        assert tree(tmp_path / "my-documents") == foreign


def test_a_build_into_a_run_folder_and_a_run_into_a_workspace_are_refused(tiny, run_copy, ws_copy, fresh_cache, capsys):
    """A run folder holds ``sae/``, which a build took for its own leftover and replaced; a rerun into the
    resulting mix then replaced the whole workspace. Each command now refuses the other's folder."""
    run_before, ws_before = tree(run_copy), tree(ws_copy)
    fails(build_args(tiny, run_copy), capsys, "holds a hypothesis run", "choose another folder")
    fails(["hypothesize", *run_args(tiny.csv), "--out", ws_copy], capsys, "is a workspace", "choose another folder")
    assert tree(run_copy) == run_before and tree(ws_copy) == ws_before
    assert nothing_embedded(fresh_cache)


@pytest.mark.parametrize("command", ["hypothesize", "build", "embed", "train"])
def test_unusable_cache_folder_is_refused_before_any_work(command, tiny, tmp_path, monkeypatch, capsys):
    blocker = _file(tmp_path)
    monkeypatch.setenv("HSAE_CACHE_DIR", str(blocker / "cache"))
    args = {
        "hypothesize": ["hypothesize", *run_args(tiny.csv), "--out", tmp_path / "o"],
        "build": build_args(tiny, tmp_path / "o"),
        "embed": ["embed", "--data", tiny.csv, "--text-col", "text", "--out", tmp_path / "x.npy"],
        "train": ["train", "--data", tiny.csv, "--text-col", "text", "--out", tmp_path / "o"],
    }[command]
    fails(args, capsys, "cache folder", "HSAE_CACHE_DIR")
    assert not (tmp_path / "o").exists() and not (tmp_path / "x.npy").exists()


@pytest.fixture
def read_only(tmp_path):
    """A folder nobody may write into, root included: mode 0555 for a normal user; for root (who ignores
    modes) the immutable attribute (chattr +i, ext2/3/4, XFS, Btrfs)."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    if os.geteuid() == 0:
        done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot make a folder read-only for root here: {done.stderr.decode().strip()}")
    yield folder
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
    folder.chmod(0o755)


@pytest.mark.parametrize("case", ["hypothesize-out", "build-out", "train-out", "embed-out", "cache"])
def test_read_only_locations_fail_in_one_line(case, tiny, read_only, tmp_path, monkeypatch, capsys):
    if case == "cache":
        monkeypatch.setenv("HSAE_CACHE_DIR", str(read_only / "cache"))
    args = {
        "hypothesize-out": ["hypothesize", *run_args(tiny.csv), "--out", read_only / "run"],
        "build-out": build_args(tiny, read_only / "ws"),
        "train-out": ["train", "--data", tiny.csv, "--text-col", "text", "--out", read_only / "sae"],
        "embed-out": ["embed", "--data", tiny.csv, "--text-col", "text", "--out", read_only / "x.npy"],
        "cache": build_args(tiny, tmp_path / "ws"),
    }[case]
    line = fails(args, capsys, "Cannot write")
    assert any(r in line for r in ("Permission denied", "Operation not permitted", "Read-only file system")), line
    assert list(read_only.iterdir()) == []


def test_disk_filling_up_mid_build_keeps_the_previous_workspace(tiny, ws_copy):
    """Files may not grow past 150 kB (RLIMIT_FSIZE): the new embeddings (230 kB) cannot be written."""
    before = tree(ws_copy)
    data = ws_copy.parent / "other.csv"
    tiny.frame.iloc[:150].to_csv(data, index=False)  # texts already embedded: only the workspace write can fail
    done = run_proc(
        ["build", "--data", data, "--text-col", "text", "--m", M, "--k", K, "--out", ws_copy],
        env={"HSAE_FSIZE_LIMIT": "150000"},
    )
    one_line(done.returncode, done.stderr, "Building workspace", "the previous workspace is unchanged")
    assert tree(ws_copy) == before
    assert not list(ws_copy.parent.glob(".ws.build-*")), "staging folder left behind"


# ---------------------------------------------------------------------------------------- 2. concurrent builds
def test_two_concurrent_builds_into_one_folder_one_is_refused(tiny, tmp_path):
    out = tmp_path / "ws"
    go_on = tmp_path / "go-on"  # the first build holds its lock until this file exists
    first = subprocess.Popen(
        [sys.executable, str(RUNNER), *map(str, build_args(tiny, out))],
        env={**os.environ, "PYTHONPATH": str(REPO), "HSAE_HOLD_LOCK_UNTIL": str(go_on)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while f'"pid": {first.pid}' not in (lock_path(out).read_text() if lock_path(out).exists() else ""):
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the first build never took the lock"
            time.sleep(0.1)
        second = run_proc(build_args(tiny, out))
        go_on.touch()
        one_line(second.returncode, second.stderr, f"Another build is running on {out}", f"pid {first.pid}")
        stdout, stderr = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, stderr
    assert "Workspace ready" in stdout and "Workspace ready" not in second.stdout
    # what each step took, as `hsae demo` says it, with the labelling a step of its own (not inside "codes")
    took = re.search(r"^Built in .+ \((.+)\)$", stdout, re.M)
    assert took, stdout
    steps = dict(re.findall(r"(\w+) ([\d.]+) s", took.group(1)))
    assert {"embeddings", "sae", "codes", "labels"} <= set(steps), took.group(0)
    ws = Workspace.open(out)
    assert len(ws.frame) == 200 and ws.codes.shape == (200, M)


HOLDER = """
import sys
from hsae_core.locking import WorkspaceLock
with WorkspaceLock(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.read()
"""
TRY_LOCK = """
import sys
from hsae_core.errors import WorkspaceBusyError
from hsae_core.locking import WorkspaceLock
try:
    with WorkspaceLock(sys.argv[1]):
        print("free")
except WorkspaceBusyError:
    print("busy")
"""


def _py(code, *args, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)], env={**os.environ, "PYTHONPATH": str(REPO)}, text=True, **kwargs
    )


def test_build_while_another_process_holds_the_lock_is_refused(tiny, ws_copy, capsys):
    before = tree(ws_copy)
    holder = _py(HOLDER, ws_copy, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == "held"
        fails(build_args(tiny, ws_copy, "--k", "3"), capsys, "Another build is running", f"pid {holder.pid}")
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert tree(ws_copy) == before


def test_lock_is_reentrant_in_one_process_and_held_until_the_outer_release(tmp_path):
    """A Ray build holds the lock and runs the ordinary build inside, which takes it again."""
    ws = tmp_path / "ws"

    def other_process() -> str:
        return _py(TRY_LOCK, ws, stdout=subprocess.PIPE).communicate(timeout=60)[0].strip()

    with WorkspaceLock(ws):
        with WorkspaceLock(ws):
            assert other_process() == "busy"
        assert other_process() == "busy", "the inner release let the lock go"
    assert other_process() == "free"


def test_lock_refuses_another_thread_of_the_same_process(tmp_path):
    """The dashboard builds in background threads of one server process: a second thread building into the same
    folder must be refused as another process is (re-entering is for the thread that holds the lock)."""
    ws, seen = tmp_path / "ws", {}

    def other_thread() -> None:
        try:
            with WorkspaceLock(ws):
                seen["other"] = "free"
        except WorkspaceBusyError as exc:
            seen["other"] = str(exc)

    with WorkspaceLock(ws):
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join(timeout=60)
        assert seen["other"].startswith(f"Another build is running on {ws} (pid {os.getpid()}")
    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join(timeout=60)
    assert seen["other"] == "free", "released by its holder, the lock is free for any thread"


def test_lock_left_by_a_dead_builder_does_not_block(tiny, ws_copy, capsys):
    lock_path(ws_copy).write_text(json.dumps({"pid": DEAD_PID, "host": socket.gethostname(), "since": "yesterday"}))
    assert main(build_args(tiny, ws_copy, "--k", "3")) == 0
    assert Workspace.open(ws_copy).sae.config_.k == 3


def test_pid_file_lock_takes_over_from_a_dead_holder_only(tmp_path):
    """Where flock is unavailable (some network file systems) a pid file is the lock."""
    lock = WorkspaceLock(tmp_path / "ws")
    pidfile = lock.path.with_name(lock.path.name + ".pid")
    pidfile.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    assert not lock._try_pidfile(), "a live holder's pid file was taken over"
    pidfile.write_text(json.dumps({"pid": DEAD_PID, "host": socket.gethostname()}))
    assert lock._try_pidfile()
    assert json.loads(pidfile.read_text())["pid"] == os.getpid()
    lock.release()
    assert not pidfile.exists()


BUILDER = """
import sys
from hsae_core.workspace import build_workspace
import pandas as pd
frame = pd.read_csv(sys.argv[1])
for i in range(int(sys.argv[3])):
    build_workspace(sys.argv[2], frame=frame, text_col="text", m=16, k=2 + i % 2, levels=(), seed=0)
"""


def test_reader_during_commits_always_sees_one_whole_version(tiny, ws_copy):
    """A process rebuilds (k alternating 3/2) while this one reads: every read is a complete, consistent
    version, or a clear 'rebuilt while open' error after which the next open works. Never a broken file."""
    builder = subprocess.Popen(
        [sys.executable, "-c", BUILDER, str(tiny.csv), str(ws_copy), "6"],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stderr=subprocess.PIPE,
        text=True,
    )
    reads, changed, ks, other = 0, 0, set(), []
    try:
        while builder.poll() is None or reads < 5:
            try:
                ws = Workspace.open(ws_copy)
                frame, codes, feats, sae = ws.frame, ws.codes, ws.features, ws.sae
                emb, index = ws.embeddings, ws.index
                k = ws.manifest["sae"]["k"]
                assert sae.config_.k == k and len(frame) == codes.shape[0] == emb.shape[0] == index.ntotal == 200
                assert len(feats) == codes.shape[1] == M and np.diff(codes.indptr).max() <= k
                ks.add(k)
                reads += 1
            except WorkspaceChangedError:
                changed += 1
            except Exception as exc:  # anything else is the failure this test exists for
                other.append(f"{type(exc).__name__}: {exc}")
    finally:
        _, err = builder.communicate(timeout=600)
    assert builder.returncode == 0, err
    assert other == [], other[:3]
    assert reads >= 5 and ks == {2, 3}, (reads, ks, changed)


# ---------------------------------------------------------------------------------------- 3. SAE config
SAE_CONFIG_CASES = {
    "m-as-text": ({"m": "64"}, "'m' must be a whole number"),
    "k-fraction": ({"k": 8.5}, "'k' must be a whole number"),
    "d_in-null": ({"d_in": None}, "'d_in' must be a whole number"),
    "k-above-m": ({"k": 99}, "cannot exceed"),
    "matryoshka-text": ({"matryoshka": "16"}, "'matryoshka' must be a list"),
    "batch_topk-yes": ({"batch_topk": "yes"}, "'batch_topk' must be true or false"),
    "aux_coef-text": ({"aux_coef": "x"}, "'aux_coef' must be a finite number"),
    "training-seed-negative": ({"training": {"seed": -1}}, "'seed' must be a whole number"),
    "embedding_model-number": ({"embedding_model": 3}, "'embedding_model' must be text"),
    "missing-d_in": ({"d_in": "DELETE"}, "missing field(s) d_in"),
    "top-level-list": ("LIST", "expected a JSON object"),
}


def _broken_sae(tiny, tmp_path, change) -> Path:
    folder = tmp_path / "sae"
    shutil.copytree(Workspace.open(tiny.ws).file("sae"), folder)
    config = json.loads((folder / "config.json").read_text())
    if change == "LIST":
        config = [config]
    else:
        for key, value in change.items():
            if value == "DELETE":
                del config[key]
            else:
                config[key] = value
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("case", sorted(SAE_CONFIG_CASES))
def test_invalid_sae_config_is_refused_before_any_work(case, tiny, tmp_path, fresh_cache, capsys):
    change, expected = SAE_CONFIG_CASES[case]
    folder = _broken_sae(tiny, tmp_path, change)
    fails(
        ["hypothesize", *run_args(tiny.csv), "--sae", folder, "--out", tmp_path / "o"], capsys, "config.json", expected
    )
    assert nothing_embedded(fresh_cache) and not (tmp_path / "o").exists()


def test_nan_weights_in_an_sae_folder_are_refused(tiny, tmp_path, ws_copy, capsys):
    from safetensors.torch import load_file, save_file

    folder = _broken_sae(tiny, tmp_path, {})
    tensors = load_file(str(folder / "model.safetensors"))
    tensors["encoder.weight"][0, 0] = float("nan")
    save_file(tensors, str(folder / "model.safetensors"))
    before = tree(ws_copy)
    fails(
        ["build", "--data", tiny.csv, "--text-col", "text", "--sae", folder, "--out", ws_copy],
        capsys,
        "'encoder.weight' contains NaN",
    )
    assert tree(ws_copy) == before


# ---------------------------------------------------------------------------------------- 4. damaged workspace files
def _damage(ws: Path, step: str, same_size: bool = True) -> Path:
    """Overwrite a step's file with garbage (same size: only the checksum or the reader can tell)."""
    target = Workspace.open(ws).file(step)
    if target.is_dir():  # the SAE folder (its config) or the code folder (its column indices)
        target = target / ("config.json" if (target / "config.json").exists() else "indices.npy")
    size = target.stat().st_size if same_size else 100
    target.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8)))
    return target


@pytest.mark.parametrize("step", STEPS)
def test_damaged_file_is_named_then_rebuilt_by_the_next_build(step, tiny, ws_copy, capsys):
    good = Workspace.open(tiny.ws)
    _damage(ws_copy, step)
    ws = Workspace.open(ws_copy)
    with pytest.raises(StorageError) as err:
        {
            "table": lambda: ws.frame,
            "embeddings": lambda: np.asarray(ws.embeddings).sum(),
            "sae": lambda: ws.sae,
            "codes": lambda: ws.codes,
            "features": lambda: ws.features,
            "index": lambda: ws.index,
        }[step]()
    message = str(err.value)
    assert len(message.splitlines()) == 1 and str(ws.file(step)) in message and "rebuild the workspace" in message
    assert main(build_args(tiny, ws_copy)) == 0
    rebuilt = Workspace.open(ws_copy)
    assert rebuilt.file(step).name != good.file(step).name, "the damaged file was reused"
    assert all(rebuilt.file(s).name == good.file(s).name for s in STEPS if s != step), "an intact step was rebuilt"
    assert rebuilt.frame.equals(good.frame) and (rebuilt.codes != good.codes).nnz == 0
    assert rebuilt.index.ntotal == 200 and rebuilt.sae.config_.k == K


def _nan_weights(ws: Path, tensor: str = "decoder.weight") -> None:
    """Write NaN over the first weights of one tensor of the workspace's SAE in place (the file keeps its size)."""
    weights = Workspace.open(ws).file("sae") / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    header_len = int.from_bytes(raw[:8], "little")
    start, _ = json.loads(raw[8 : 8 + header_len])[tensor]["data_offsets"]
    at = 8 + header_len + start
    raw[at : at + 16] = np.full(4, np.nan, dtype=np.float32).tobytes()
    weights.write_bytes(bytes(raw))


@pytest.mark.parametrize("damage", ["config", "decoder"])
def test_a_feature_listing_names_a_damaged_sae_as_loading_it_does(damage, ws_copy, capsys):
    # The listing reads the SAE's config and decoder without torch; damage there still reads as the loader says it
    if damage == "config":
        _damage(ws_copy, "sae")
    else:
        _nan_weights(ws_copy)
    with pytest.raises(StorageError) as loaded:
        _ = Workspace.open(ws_copy).sae
    expected = str(loaded.value)
    assert "rebuild the workspace" in expected and str(Workspace.open(ws_copy).file("sae")) in expected
    facts = ("sae_config", "level_names", "decoder_directions") if damage == "config" else ("decoder_directions",)
    for fact in facts:
        with pytest.raises(StorageError) as err:
            getattr(Workspace.open(ws_copy), fact)
        assert str(err.value) == expected
    assert fails(["features", ws_copy, "--feature", "0"], capsys) == f"hsae: error: {expected}"


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"text_col": "text"}', ""])
def test_damaged_manifest_is_one_line_and_a_build_repairs_it(content, tiny, ws_copy):
    (ws_copy / MANIFEST).write_text(content)
    with pytest.raises(StorageError) as err:
        Workspace.open(ws_copy)
    assert len(str(err.value).splitlines()) == 1 and "workspace.json is damaged" in str(err.value)
    assert main(build_args(tiny, ws_copy)) == 0
    assert len(Workspace.open(ws_copy).frame) == 200


PAGES = [
    ("app.py", "features"),
    ("app.py", "sae"),
    ("pages/1_Features.py", "codes"),
    ("pages/2_Search.py", "index"),
    ("pages/3_Hypotheses.py", "table"),
    ("pages/4_Map.py", "manifest"),
    ("pages/2_Search.py", "embeddings"),
]


@pytest.mark.parametrize("page,step", PAGES)
def test_dashboard_shows_one_error_line_for_a_damaged_file(page, step, ws_copy, monkeypatch, tmp_path):
    from streamlit.testing.v1 import AppTest

    if step == "manifest":
        (ws_copy / MANIFEST).write_text("{broken")
        name = MANIFEST
    else:
        name = Workspace.open(ws_copy).file(step).name  # the file, or the folder holding the damaged file
        _damage(ws_copy, step, same_size=(step != "embeddings"))
    before = tree(ws_copy)
    monkeypatch.setenv("HSAE_WORKSPACE", str(ws_copy))
    monkeypatch.setenv("HSAE_WORKSPACES_DIR", str(tmp_path / "none"))
    at = AppTest.from_file(str(REPO / page), default_timeout=300)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and name in errors[0] and len(errors[0].splitlines()) == 1, errors
    assert tree(ws_copy) == before


def test_a_damaged_encoder_is_named_by_the_page_that_encodes(ws_copy, monkeypatch, tmp_path):
    # Pages open a workspace from the SAE's config and decoder, without the estimator; the Search page loads it
    # to encode the query, so damage only the estimator reads is named there, in one line, and nowhere before
    from streamlit.testing.v1 import AppTest

    _nan_weights(ws_copy, "encoder.weight")
    before = tree(ws_copy)
    monkeypatch.setenv("HSAE_WORKSPACE", str(ws_copy))
    monkeypatch.setenv("HSAE_WORKSPACES_DIR", str(tmp_path / "none"))
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=300)
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.exception] + [e.value for e in at.error]
    at.switch_page("pages/2_Search.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and len(errors[0].splitlines()) == 1, errors
    assert "'encoder.weight' contains NaN" in errors[0] and Workspace.open(ws_copy).file("sae").name in errors[0]
    assert tree(ws_copy) == before


# ---------------------------------------------------------------------------------------- 5. LLM endpoint
@pytest.fixture
def llm_env(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")

    def point_at(url):
        monkeypatch.setenv("OPENAI_BASE_URL", url)

    return point_at


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_llm_endpoint_fails_in_seconds(tiny, tmp_path, fresh_cache, llm_env, capsys):
    llm_env(f"http://127.0.0.1:{_closed_port()}/v1")
    start = time.monotonic()
    line = fails(
        ["hypothesize", *run_args(tiny.csv), "--interpreter", "llm", "--annotator", "llm", "--out", tmp_path / "o"],
        capsys,
        "Cannot reach the LLM endpoint",
        "OPENAI_BASE_URL",
    )
    assert time.monotonic() - start < 60  # was 296 s of retries, then exit 0 with NaN annotations
    assert nothing_embedded(fresh_cache) and not (tmp_path / "o").exists()
    assert "sk-test" not in line


@pytest.mark.parametrize("status,expected", [(401, "refused the API key"), (404, "has no model")])
def test_llm_endpoint_refusing_the_key_or_model_fails_up_front(
    status, expected, tiny, tmp_path, fresh_cache, llm_env, capsys
):
    with FakeOpenAIServer(lambda req: (status, {"error": {"message": "no"}}, {})) as server:
        llm_env(server.base_url)
        fails(["hypothesize", *run_args(tiny.csv), "--interpreter", "llm", "--out", tmp_path / "o"], capsys, expected)
        assert len(server.chat_requests()) == 1
    assert nothing_embedded(fresh_cache)


def _fail_after_check(bad):
    """Answer the one-token check; then answer HTTP 400 to the prompts ``bad`` picks (a bad request is not retried)."""

    def respond(request):
        prompt = user_prompt(request)
        if prompt == "Reply OK.":
            return "OK"
        return (400, {"error": {"message": "unsupported prompt"}}, {}) if bad(prompt) else "yes"

    return respond


def test_every_llm_call_failing_exits_2_and_keeps_the_previous_run(tiny, run_copy, llm_env, capsys):
    before = tree(run_copy)
    with FakeOpenAIServer(_fail_after_check(lambda prompt: True)) as server:
        llm_env(server.base_url)
        fails(
            [
                "hypothesize",
                *run_args(tiny.csv),
                "--interpreter",
                "llm",
                "--llm-model",
                f"m-{time.time_ns()}",
                "--out",
                run_copy,
            ],
            capsys,
            "Every LLM call for naming the latents failed",
            "HTTP 400",
        )
    assert tree(run_copy) == before


def test_some_llm_failures_are_counted_in_the_summary(tiny, tmp_path, llm_env, capsys):
    def some(prompt):  # a fixed third of the prompts fail
        return int(hashlib.sha256(prompt.encode()).hexdigest(), 16) % 3 == 0

    with FakeOpenAIServer(_fail_after_check(some)) as server:
        llm_env(server.base_url)
        code = main(
            [
                "hypothesize",
                *run_args(tiny.csv),
                "--interpreter",
                "llm",
                "--llm-model",
                f"m-{time.time_ns()}",
                "--out",
                str(tmp_path / "o"),
            ]
        )
    assert code == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["llm"]["failed_calls"] > 0 and "HTTP 400" in summary["llm"]["last_error"]
    assert any("LLM calls for naming the latents failed" in w for w in summary["warnings"])


# ---------------------------------------------------------------------------------------- 6. options
OPTION_CASES = {
    "epochs-0": (["--epochs", "0"], "--epochs"),
    "epochs-negative": (["--epochs", "-1"], "--epochs"),
    "seed-negative": (["--seed", "-1"], "--seed"),
    "seed-2**70": (["--seed", str(2**70)], "--seed"),
    "n-0": (["--n", "0"], "--n"),
    "top-n-0": (["--top-n", "0"], "--top-n"),
    "holdout-frac-1.5": (["--holdout-frac", "1.5"], "--holdout-frac"),
    "matryoshka-0": (["--matryoshka", "0,8"], "--matryoshka"),
    "m-1e8-too-big": (["--m", "100000000"], "of memory"),
    "n-above-m": (["--n", "40", "--levels", "none"], "is more than the SAE's --m"),
    "n-above-levels": (["--n", "200"], "--n (200) is more than the SAE's 174 latents (--m (16) and its --levels)"),
    "levels-bad": (["--levels", "4/0"], "--levels"),
    "levels-with-matryoshka": (["--matryoshka", "auto"], "--levels cannot be combined with --matryoshka"),
    "k-above-m": (["--k", "32"], "cannot exceed --m"),
    "missing-class": (["--target-kind", "multiclass", "--target-class", "9"], "Class '9'"),
    "class-of-a-score": (["--target-class", "5"], "names a class, but 'stars' is read as a score"),
}


@pytest.mark.parametrize("case", sorted(OPTION_CASES))
def test_bad_hypothesize_option_is_refused_before_any_work(case, tiny, tmp_path, fresh_cache, capsys):
    extra, expected = OPTION_CASES[case]
    fails(["hypothesize", *run_args(tiny.csv), *extra, "--out", tmp_path / "o"], capsys, expected)
    assert nothing_embedded(fresh_cache) and not (tmp_path / "o").exists()


def test_the_training_table_given_again_as_holdout_is_refused_before_any_work(tiny, tmp_path, fresh_cache, capsys):
    out = tmp_path / "o"
    fails(
        ["hypothesize", *run_args(tiny.csv), "--holdout", tiny.csv, "--out", out],
        capsys,
        "The holdout table repeats 200 of its 200 texts from the training table",
    )
    fails(
        ["hypothesize", *run_args(tiny.csv), "--holdout", tiny.csv, "--holdout-frac", "0.3", "--out", out],
        capsys,
        "Give either --holdout (a separate table) or --holdout-frac (a share of this one), not both",
    )
    assert nothing_embedded(fresh_cache) and not out.exists()


def test_a_given_sae_is_named_by_where_it_came_from(tiny, tmp_path, capsys):
    sae = Workspace.open(tiny.ws).file("sae")
    assert main(["hypothesize", *run_args(tiny.csv), "--sae", str(sae), "--n", "4", "--out", str(tmp_path / "o")]) == 0
    streams = capsys.readouterr()
    # the workspace's SAE was fitted on every row of this table: the run says how many holdout rows it saw
    said = f"SAE: given: a pretrained SAE ({Path(sae).resolve()}), not trained here; it was fitted on "
    (line,) = [line for line in streams.out.splitlines() if line.startswith(said)]
    seen, holdout = (int(n) for n in re.fullmatch(r"(\d+) of the (\d+) holdout rows\.", line[len(said) :]).groups())
    assert seen == holdout > 0
    assert f"warning: sae: the SAE given was fitted on {seen} of the {holdout} holdout rows" in streams.err


def test_n_above_a_given_sae_is_refused_before_any_work(tiny, tmp_path, fresh_cache, capsys):
    sae = Workspace.open(tiny.ws).file("sae")
    fails(
        ["hypothesize", *run_args(tiny.csv), "--sae", sae, "--n", "17", "--out", tmp_path / "o"],
        capsys,
        "--n (17) is more than the SAE's 16 latents",
    )
    assert nothing_embedded(fresh_cache)


def _npy(tmp_path, kind) -> Path:
    path = tmp_path / f"{kind}.npy"
    if kind == "strings":
        np.save(path, np.array([["a", "b"], ["c", "d"]]))
    elif kind == "random-bytes":
        path.write_bytes(bytes(range(256)) * 4)
    elif kind == "objects":
        np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    elif kind == "one-dimensional":
        np.save(path, np.zeros(10, dtype=np.float32))
    elif kind == "ten-rows":
        np.save(path, np.random.default_rng(0).normal(size=(10, 384)).astype(np.float32))
    else:
        np.save(path, np.random.default_rng(0).normal(size=(100, 384)).astype(np.float32))
    return path


TRAIN_CASES = {
    "batch-size-0": ("good", ["--batch-size", "0"], "--batch-size"),
    "batch-size-negative": ("good", ["--batch-size", "-5"], "--batch-size"),
    "string-npy": ("strings", [], "not real numbers"),
    "random-bytes-npy": ("random-bytes", [], "not a .npy file"),
    "object-npy": ("objects", [], "holds Python objects"),
    "1-d-npy": ("one-dimensional", [], "2-D array"),
    "m-1e8-too-big": ("good", ["--m", "100000000"], "of memory"),
    "k-above-m": ("good", ["--m", "8", "--k", "9"], "cannot exceed --m"),
    "ten-rows": ("ten-rows", [], "Only 10 embedding rows; training an SAE needs at least 50"),
}


def test_a_build_that_would_train_an_sae_on_ten_texts_is_refused_before_any_work(tiny, tmp_path, fresh_cache, capsys):
    few = tmp_path / "ten.csv"
    tiny.frame.iloc[:10].to_csv(few, index=False)
    fails(["build", "--data", few, "--text-col", "text", "--out", tmp_path / "ws"], capsys, "Only 10 usable rows")
    assert nothing_embedded(fresh_cache) and not (tmp_path / "ws").exists()


@pytest.mark.parametrize("case", sorted(TRAIN_CASES))
def test_bad_train_input_is_refused_and_saves_nothing(case, tmp_path, capsys):
    kind, extra, expected = TRAIN_CASES[case]
    fails(["train", "--embeddings", _npy(tmp_path, kind), *extra, "--out", tmp_path / "sae"], capsys, expected)
    assert not (tmp_path / "sae").exists(), "an untrained SAE was saved"


@pytest.mark.parametrize(
    "extra,expected",
    [(["--m", "1"], "--m"), (["--k", "0"], "--k"), (["--seed", "-1"], "--seed"), (["--k", "17"], "cannot exceed --m")],
)
def test_bad_build_option_is_refused_and_keeps_the_workspace(extra, expected, tiny, ws_copy, capsys):
    before = tree(ws_copy)
    fails(build_args(tiny, ws_copy, *extra), capsys, expected)
    assert tree(ws_copy) == before


# ---------------------------------------------------------------------------------------- 7. crash windows
def test_kill_before_the_manifest_swap_keeps_the_previous_workspace(tiny, ws_copy, capsys):
    before = ws_content(ws_copy)
    done = run_proc(build_args(tiny, ws_copy, "--k", "3"), env={"HSAE_KILL_AT": f"before:replace:{MANIFEST}"})
    assert done.returncode == -9, done.stderr
    assert ws_content(ws_copy) == before  # the same version, byte for byte
    assert Workspace.open(ws_copy).sae.config_.k == K
    orphans = _unreferenced(ws_copy)
    assert orphans, "the killed commit should have left its new files"
    assert main(build_args(tiny, ws_copy, "--k", "3")) == 0  # the next build clears them and commits
    assert _unreferenced(ws_copy) == [] and Workspace.open(ws_copy).sae.config_.k == 3


def test_kill_after_the_manifest_swap_leaves_the_new_workspace(tiny, ws_copy):
    done = run_proc(build_args(tiny, ws_copy, "--k", "3"), env={"HSAE_KILL_AT": f"after:replace:{MANIFEST}"})
    assert done.returncode == -9, done.stderr
    ws = Workspace.open(ws_copy)
    assert ws.sae.config_.k == 3 and np.diff(ws.codes.indptr).max() <= 3
    assert _unreferenced(ws_copy), "old versions are deleted after the swap; the kill came first"
    assert main(build_args(tiny, ws_copy, "--k", "3")) == 0 and _unreferenced(ws_copy) == []


def _unreferenced(ws: Path) -> list[str]:
    named = {Workspace.open(ws).file(s).name for s in STEPS} | {MANIFEST, "labels"}  # label sets: labelsets.py
    named |= {LAYOUT_FILE, LAYOUT_META}  # the map's cached layout, keyed by the embeddings and replaced atomically
    return sorted(p.name for p in ws.iterdir() if p.name not in named)


def test_kill_while_a_rerun_writes_the_run_folder_keeps_the_previous_run(tiny, run_copy, capsys):
    before = tree(run_copy)
    done = run_proc(
        ["hypothesize", *run_args(tiny.csv), "--n", "3", "--out", run_copy],
        env={"HSAE_KILL_AT": "after:replace:run.json"},
    )
    assert done.returncode == -9, done.stderr
    assert tree(run_copy) == before and len(load_run(run_copy).table) == 4
    leftovers = list(run_copy.parent.glob(".run.stage-*"))
    assert leftovers, "the killed writer's staging folder"
    assert main(["hypothesize", *run_args(tiny.csv), "--n", "3", "--out", str(run_copy)]) == 0
    assert len(load_run(run_copy).table) == 3
    assert not [p for p in leftovers if p.exists()], "the dead writer's staging folder was not removed"


def test_kill_right_after_the_run_swap_leaves_the_new_run(tiny, run_copy):
    done = run_proc(
        ["hypothesize", *run_args(tiny.csv), "--n", "3", "--out", run_copy],
        env={"HSAE_KILL_AT": "before:rmtree:.run.stage-"},
    )
    assert done.returncode == -9, done.stderr
    assert len(load_run(run_copy).table) == 3


@pytest.mark.parametrize("swapped", ["hypotheses.csv", "summary.json", "holdout_annotations.parquet"])
def test_run_folder_mixing_two_runs_is_refused(swapped, tiny, run_copy, tmp_path):
    other = tmp_path / "other"
    assert main(["hypothesize", *run_args(tiny.csv), "--n", "3", "--seed", "1", "--out", str(other)]) == 0
    shutil.copy(other / swapped, run_copy / swapped)
    with pytest.raises(DataError) as err:
        load_run(run_copy)
    assert "mixes files of different runs" in str(err.value) and len(str(err.value).splitlines()) == 1


def test_folder_left_by_an_older_commit_crash_can_be_rebuilt(tiny, ws_copy):
    """Version-1 commits dropped workspace.json first: such a folder is still ours to rebuild, not 'other files'."""
    (ws_copy / MANIFEST).unlink()
    assert main(build_args(tiny, ws_copy)) == 0
    assert len(Workspace.open(ws_copy).frame) == 200


# ---------------------------------------------------------------------------------------- 8. leftovers
def test_a_build_removes_leftovers_of_dead_builds(tiny, ws_copy):
    stage = ws_copy.parent / f".ws.build-{DEAD_PID}-deadbeef"
    stage.mkdir()
    (stage / "embeddings.npy").write_bytes(b"x" * 1000)
    legacy_stage = ws_copy.parent / ".ws.build-0a1b2c3d"
    legacy_stage.mkdir()
    orphan = ws_copy / "features.v-0123456789ab.parquet"
    orphan.write_bytes(b"orphan")
    temp = ws_copy / f".{MANIFEST}.tmp-{DEAD_PID}-deadbeef"
    temp.write_text("{}")
    assert main(build_args(tiny, ws_copy)) == 0
    assert not stage.exists() and not legacy_stage.exists() and not orphan.exists() and not temp.exists()


def test_embedding_removes_dead_writers_temporary_shards_only(tiny, tmp_path, capsys):
    from hsae_core.embed import EmbeddingCache, default_embedder

    cache_root = Path(os.environ["HSAE_CACHE_DIR"]) / "embeddings"
    folder = EmbeddingCache(cache_root, default_embedder("cpu").cache_id).dir
    folder.mkdir(parents=True, exist_ok=True)
    old = folder / ".tmp-shard-legacy.npz"
    old.write_bytes(b"half")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    dead = folder / f".shard-x.npz.tmp-{DEAD_PID}-deadbeef"
    dead.write_bytes(b"half")
    live = folder / f".shard-y.npz.tmp-{os.getpid()}-cafebabe"
    live.write_bytes(b"being written")
    assert main(["embed", "--data", str(tiny.csv), "--text-col", "text", "--out", str(tmp_path / "x.npy")]) == 0
    assert not old.exists() and not dead.exists() and live.exists()
    live.unlink()
    assert np.load(tmp_path / "x.npy").shape == (200, 384)


# ---------------------------------------------------------------------------------------- 9. small fixes
def test_embed_out_must_be_a_npy_name(tiny, tmp_path, capsys):
    fails(["embed", "--data", tiny.csv, "--text-col", "text", "--out", tmp_path / "x.txt"], capsys, "x.npy")
    assert not list(tmp_path.iterdir())


def test_embedding_column_equal_to_text_column(tiny, tmp_path, capsys):
    fails(build_args(tiny, tmp_path / "o", "--embedding-col", "text"), capsys, "cannot be both")


def test_upload_errors_name_the_uploaded_file():
    import ui

    upload = SimpleNamespace(name="my reviews.parquet", getvalue=lambda: b"this is not parquet")
    with pytest.raises(HsaeError) as err:
        ui.read_upload(upload)
    assert "my reviews.parquet" in str(err.value) and "tmp" not in str(err.value).lower()


def test_push_publishes_no_local_paths(tiny, tmp_path, monkeypatch):
    import huggingface_hub.constants
    from fake_hub import FakeHub

    from hsae_core.hub import load_sae, push_sae

    origin = Workspace.open(tiny.ws).file("sae").resolve()
    local = load_sae(str(origin))  # records where it was loaded from: an absolute local path
    folder = local.save(tmp_path / "to-push")
    assert str(origin) in (folder / "config.json").read_text()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    # huggingface_hub reads HF_HUB_OFFLINE once, when first imported: a test before this one (the dashboard's
    # pretrained SAE, offline) may have imported it with the variable set
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with FakeHub() as hub:
        push_sae(folder, "me/tiny", token="hf_test", endpoint=hub.url)
        files = hub.repos["me/tiny"]["files"]
    for name in ("config.json", "README.md"):
        text = files[name].decode()
        assert str(origin) not in text and str(tmp_path) not in text and str(tiny.folder) not in text, name
    assert json.loads(files["config.json"])["m"] == M


# ---------------------------------------------------------------------------------------- 10. dashboard config
def test_streamlit_does_not_watch_the_environment():
    import re

    text = (REPO / ".streamlit" / "config.toml").read_text()  # (tomllib is Python 3.11+; the project runs on 3.10)
    assert re.search(r'^\[server\][^\[]*^fileWatcherType = "none"$', text, re.M | re.S)
    assert re.search(r'^\[client\][^\[]*^toolbarMode = "minimal"$', text, re.M | re.S)


def test_console_script_faults_are_one_line_without_traceback(tiny, tmp_path):
    """The same refusal through a real process: exit 2, one line, no traceback."""
    done = run_proc(["build", "--data", tiny.csv, "--text-col", "text", "--out", _file(tmp_path)])
    one_line(done.returncode, done.stderr, "is a file")
