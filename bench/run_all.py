"""Run the whole benchmark suite, print every table and rewrite the results section of BENCHMARKS.md.

    make bench                      # = .venv/bin/python bench/run_all.py
    python bench/run_all.py --quick # smoke run: smallest sizes only, BENCHMARKS.md untouched
    python bench/run_all.py --only training,selection   # rerun some suites
    python bench/run_all.py --report                    # only rebuild BENCHMARKS.md from saved JSON

After a full (non-quick) run, BENCHMARKS.md's results section is rebuilt from the latest full result
of every suite in bench/results/*.json, each with its own date, load and command.

Needs ../shared/data (or HSAE_DATA_DIR). The reference implementation is installed into
bench/.venv-ref on first use (bench/reference_env.py). HSAE_BENCH_THREADS sets the thread count of
every measured stage on both sides (default 1).
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

from common import REPO, RESULTS, bench_threads, machine_description, save_json, setup_env

SUITES = ("training", "selection", "discovery", "recovery", "scale")
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def _module(name: str):
    import importlib

    return importlib.import_module(f"bench_{name}")


def load_full_results() -> dict[str, dict]:
    """The latest full (non-quick) result of each suite that run_all wrote, by suite name."""
    import json

    found = {}
    for name in SUITES:
        path = RESULTS / f"{name}.json"
        if path.exists():
            data = json.loads(path.read_text())
            if "machine" in data and not data.get("quick"):
                found[name] = data
    return found


def _busy(machine: dict) -> str:
    """Flag a run that started on a machine already busy with other work (its timings are noisier)."""
    return " (the machine was busy with other jobs)" if machine["load_avg_1m_at_start"] > machine["cores"] else ""


def write_benchmarks_md(results: dict[str, dict]) -> Path:
    """Replace the text between the result markers of BENCHMARKS.md (the prose around it stays)."""
    path = REPO / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    machine = next(iter(results.values()))["machine"]
    total = sum(r["seconds"] for r in results.values())
    body = [
        f"Machine: {machine['cpu']} (torch kernels {machine.get('cpu_capability', 'not recorded')}), {machine['cores']} cores, {machine['memory_gib']} GiB RAM, no GPU; "
        f"Python {machine['python']}, torch {machine['torch']}; {machine['torch_threads']} thread(s) per measured "
        f"stage on both sides. Suites together: {total / 60:.1f} minutes (embeddings already cached).",
        "",
    ]
    for name in SUITES:
        r = results[name]
        m = r["machine"]
        body += [
            f"## {name.capitalize()}",
            "",
            f"_`{r.get('command', 'make bench')}`, {m['date']}, {r['seconds']:.0f} s; 1-minute load average "
            f"{m['load_avg_1m_at_start']} on {m['cores']} cores at its start{_busy(m)}._",
            "",
            _module(name).tables(r),
            "",
        ]
    path.write_text(head + BEGIN + "\n" + "\n".join(body) + END + tail)
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smallest sizes only; does not touch BENCHMARKS.md")
    ap.add_argument("--only", default=",".join(SUITES), help=f"comma-separated subset of {','.join(SUITES)}")
    ap.add_argument(
        "--report", action="store_true", help="run nothing: rebuild BENCHMARKS.md from bench/results/*.json"
    )
    args = ap.parse_args()
    if args.report:
        latest = load_full_results()
        missing = [s for s in SUITES if s not in latest]
        if missing:
            print(f"no full result yet for {', '.join(missing)}: run those suites first", file=sys.stderr)
            return 2
        print(f"updated {write_benchmarks_md(latest)}")
        return 0
    setup_env()
    machine = machine_description()
    print(
        f"hsae benchmarks on {machine['cpu']} ({machine['cpu_capability']} kernels, {machine['cores']} cores, "
        f"{machine['memory_gib']} GiB), "
        f"{bench_threads()} thread(s) per stage, load {machine['load_avg_1m_at_start']}",
        flush=True,
    )
    t_start, sections, failed = time.perf_counter(), {}, []
    for name in [s.strip() for s in args.only.split(",") if s.strip()]:
        if name not in SUITES:
            print(f"unknown suite '{name}'; choose from {', '.join(SUITES)}", file=sys.stderr)
            return 2
        print(f"\n== {name} ==", flush=True)
        t0 = time.perf_counter()
        at_start = machine_description()
        mod = _module(name)
        try:
            result = mod.run(args.quick)
        except Exception:  # keep going: one broken suite should not hide the others' tables
            traceback.print_exc()
            failed.append(name)
            continue
        result["seconds"] = time.perf_counter() - t0
        result["machine"] = at_start
        result["quick"] = args.quick
        result["command"] = "make bench" if args.only == ",".join(SUITES) else f"python bench/run_all.py --only {name}"
        save_json(name + ("_quick" if args.quick else ""), result)
        sections[name] = mod.tables(result) + f"\n\n_{name}: {result['seconds']:.0f} s._"
        print(sections[name], flush=True)
    total = time.perf_counter() - t_start
    print(f"\nwhole suite: {total / 60:.1f} minutes; JSON in {RESULTS}")
    if not args.quick:
        latest = load_full_results()
        missing = [s for s in SUITES if s not in latest]
        if missing:
            print(f"BENCHMARKS.md not updated: no full result yet for {', '.join(missing)}")
        else:
            print(f"updated {write_benchmarks_md(latest)} from the latest full result of each suite")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
