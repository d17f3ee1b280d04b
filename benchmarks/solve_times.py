"""Solve times of whole ``moeplan solve`` processes (issues 3 and 10), as docs/benchmarks.md
shows them.

    python benchmarks/solve_times.py                          # print the markdown section
    python benchmarks/solve_times.py --docs docs/benchmarks.md  # replace it in the document

For every seed instance (``instances/seeds/*.yaml``, target <= 2 s each, INFEASIBLE ones
included) and the power-law stress instances (Qwen3-235B-A22B on H100, DeepSeek-V3 on H200 and
Kimi-K2 on H200 at up to 1,024 GPUs, Zipf load alpha = 1.01 and 32-64 redundant expert slots,
target <= 30 s each), it runs ``moeplan solve INSTANCE --json --workers 2`` (the console script
next to this interpreter, else ``python -m moeplan``) as a new process ``--runs`` times (default
3) and reports the median wall time of the whole process: interpreter start-up, imports,
loading, solving and printing.

Start-up is measured on its own, ``--runs`` times each: an empty interpreter (``python -c
pass``), ``moeplan --help``, and ``python -X importtime -m moeplan solve SEED --json`` and
``... --help``, whose import times are summed by top-level package (median over the runs) to
show what dominates.

Where a target is missed, the table says where the time goes, from one more in-process solve
that times the planner's phases: the search for the plan (or the proof that none exists) and,
for an infeasible instance, the explanation (which targets conflict and the nearest feasible
values, each found by further CP-SAT solves); the rest of the process time is start-up.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BEGIN = "<!-- BEGIN GENERATED: solve times -->"
END = "<!-- END GENERATED: solve times -->"

SEED_TARGET_S = 2.0
POWER_LAW_TARGET_S = 30.0
POWER_LAW = (
    "instances/models/qwen3-235b-h100-powerlaw.yaml",
    "instances/models/deepseek-v3-h200-powerlaw.yaml",
    "instances/models/kimi-k2-h200-powerlaw.yaml",
)
#: The seed whose solve process the import-time breakdown profiles (a feasible, quick one).
STARTUP_SEED = "instances/seeds/004-moe-16l-tp8-ep8-pp2.yaml"


def cases() -> list[tuple[str, float]]:
    seeds = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "instances/seeds").glob(
        "*.yaml"))
    return [(s, SEED_TARGET_S) for s in seeds] + [(p, POWER_LAW_TARGET_S) for p in POWER_LAW]


def moeplan_cmd() -> list[str]:
    """The ``moeplan`` console script next to this interpreter, else ``python -m moeplan``."""
    script = Path(sys.executable).with_name("moeplan")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "moeplan"]


def run_process(path: str, workers: int, *extra: str) -> tuple[float, dict | None, int]:
    """Wall time of one ``moeplan solve`` process (with ``extra`` options), its JSON document
    and exit code."""
    cmd = moeplan_cmd() + ["solve", path, "--json", "--workers", str(workers), *extra]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    try:
        doc = json.loads(proc.stdout)
    except json.JSONDecodeError:
        doc = None
    return wall, doc, proc.returncode


def phases(path: str, workers: int) -> dict[str, float]:
    """One in-process solve with the planner's phases timed: the total, and the part spent in
    ``explain`` (infeasible instances only). Wraps the module function; changes nothing else."""
    from solver import planner
    from solver.instance import load_instance

    spent = {"explain_s": 0.0}
    original = planner.explain

    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent["explain_s"] += time.perf_counter() - t0

    instance = load_instance(ROOT / path)
    planner.explain = timed
    try:
        t0 = time.perf_counter()
        planner.solve(instance, workers=workers)
        spent["solve_s"] = time.perf_counter() - t0
    finally:
        planner.explain = original
    return spent


def why(median: float, solver_s: float | None, ph: dict[str, float]) -> str:
    startup = median - solver_s if solver_s is not None else None
    parts = []
    if ph.get("explain_s", 0) > 0.1:
        parts.append(f"explaining the infeasibility takes {ph['explain_s']:.1f} s of a "
                     f"{ph['solve_s']:.1f} s solve (search and proof: "
                     f"{ph['solve_s'] - ph['explain_s']:.1f} s)")
    else:
        parts.append(f"the solve itself takes {ph['solve_s']:.1f} s")
    if startup is not None:
        parts.append(f"process start-up and output {startup:.1f} s")
    return "; ".join(parts)


def measure(runs: int, workers: int, log=print) -> list[dict]:
    rows = []
    for path, target in cases():
        walls, doc, codes = [], None, []
        for _ in range(runs):
            wall, d, code = run_process(path, workers)
            walls.append(wall)
            codes.append(code)
            doc = d or doc
        median = statistics.median(walls)
        row = {
            "instance": path, "target_s": target, "median_s": median, "min_s": min(walls),
            "max_s": max(walls), "exit_codes": sorted(set(codes)),
            "status": doc.get("status") if doc else "ERROR",
            "gpus": doc.get("objective") if doc else None,
            "solver_s": doc.get("solve_time_s") if doc else None,
        }
        row["met"] = median <= target
        if not row["met"]:
            row["why"] = why(median, row["solver_s"], phases(path, workers))
        log(f"{path}: median {median:.2f} s ({row['status']}, target {target:g} s)")
        rows.append(row)
    return rows


def _wall(cmd: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    return time.perf_counter() - start, proc.stderr


def import_times(stderr: str) -> tuple[float, dict[str, float], dict[str, float]]:
    """``-X importtime`` output -> (total ms, ms by top-level package, ms by module), each
    module's own ("self") time, so nothing is counted twice."""
    total, by_pkg, by_mod = 0.0, {}, {}
    for line in stderr.splitlines():
        if not line.startswith("import time:"):
            continue
        fields = line[len("import time:"):].split("|")
        if len(fields) != 3 or not fields[0].strip().isdigit():
            continue  # the header line
        own_ms, name = int(fields[0]) / 1000, fields[2].strip()
        total += own_ms
        pkg = name.split(".")[0]
        by_pkg[pkg] = by_pkg.get(pkg, 0.0) + own_ms
        by_mod[name] = by_mod.get(name, 0.0) + own_ms
    return total, by_pkg, by_mod


def startup(runs: int, workers: int) -> dict:
    """Start-up costs: medians of ``runs`` processes each."""
    py = [sys.executable]
    solve_args = ["solve", STARTUP_SEED, "--json", "--workers", str(workers)]
    out: dict = {"runs": runs, "seed": STARTUP_SEED}
    out["python_s"] = statistics.median(_wall(py + ["-c", "pass"])[0] for _ in range(runs))
    out["help_s"] = statistics.median(_wall(moeplan_cmd() + ["--help"])[0] for _ in range(runs))
    out["solve_s"] = statistics.median(_wall(moeplan_cmd() + solve_args)[0]
                                       for _ in range(runs))
    for key, args in (("solve", solve_args), ("help", ["--help"])):
        totals, pkgs, mods = [], [], []
        for _ in range(runs):
            _, err = _wall(py + ["-X", "importtime", "-m", "moeplan"] + args)
            t, p, m = import_times(err)
            totals.append(t)
            pkgs.append(p)
            mods.append(m)
        names = set().union(*pkgs)
        out[f"{key}_imports_ms"] = statistics.median(totals)
        out[f"{key}_by_package_ms"] = {
            n: statistics.median(p.get(n, 0.0) for p in pkgs) for n in names}
        mnames = set().union(*mods)
        out[f"{key}_by_module_ms"] = {
            n: statistics.median(m.get(n, 0.0) for m in mods) for n in mnames}
    return out


def startup_markdown(st: dict, top: int = 12) -> list[str]:
    solve_pkg, help_pkg = st["solve_by_package_ms"], st["help_by_package_ms"]
    order = sorted(set(solve_pkg) | set(help_pkg),
                   key=lambda n: -max(solve_pkg.get(n, 0.0), help_pkg.get(n, 0.0)))[:top]
    rest_solve = st["solve_imports_ms"] - sum(solve_pkg.get(n, 0.0) for n in order)
    rest_help = st["help_imports_ms"] - sum(help_pkg.get(n, 0.0) for n in order)
    lines = [
        "### Start-up",
        "",
        f"Medians of {st['runs']} processes each. The whole `moeplan solve` of "
        f"`{st['seed']}` (its solve itself takes a few hundredths of a second) against "
        "`moeplan --help` and an empty interpreter:",
        "",
        "| process | median |",
        "|---|---:|",
        f"| `python -c pass` | {st['python_s']:.2f} s |",
        f"| `moeplan --help` | {st['help_s']:.2f} s |",
        f"| `moeplan solve {st['seed']} --json` | {st['solve_s']:.2f} s |",
        "",
        "Import time by top-level package (each module's own time under `python -X importtime "
        "-m moeplan …`, which itself slows imports a little; median of "
        f"{st['runs']} runs):",
        "",
        "| package | `solve … --json` | `--help` |",
        "|---|---:|---:|",
    ]
    for n in order:
        lines.append(f"| `{n}` | {solve_pkg.get(n, 0.0):.0f} ms | {help_pkg.get(n, 0.0):.0f} ms |")
    lines += [
        f"| everything else | {rest_solve:.0f} ms | {rest_help:.0f} ms |",
        f"| **all imports** | **{st['solve_imports_ms']:.0f} ms** | "
        f"**{st['help_imports_ms']:.0f} ms** |",
        "",
    ]
    mods = st["solve_by_module_ms"]
    slow = sorted(mods, key=lambda n: -mods[n])[:8]
    lines += ["Slowest single modules of the solve process (own time): "
              + ", ".join(f"`{n}` {mods[n]:.0f} ms" for n in slow) + ".", ""]
    return lines


def code_version() -> str:
    """What code was measured: ``$BENCH_CODE_VERSION`` when set (a snapshot outside git), else
    the git commit, with the number of uncommitted files under solver/ and moeplan/."""
    env = os.environ.get("BENCH_CODE_VERSION")
    if env:
        return env
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "solver", "moeplan"],
                               cwd=ROOT, check=True, capture_output=True,
                               text=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return "unknown code version"
    return f"commit {head}" + (f" with {len(dirty)} uncommitted files under solver/ and "
                               "moeplan/" if dirty else "")


def bytecode_note() -> str:
    return ("no bytecode cache (PYTHONDONTWRITEBYTECODE is set: every project module is compiled "
            "from source in every process)" if os.environ.get("PYTHONDONTWRITEBYTECODE")
            else "bytecode cache on")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load_average() -> str:
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "unknown"


def markdown(rows: list[dict], runs: int, workers: int, load: str = "unknown",
             st: dict | None = None) -> str:
    from ortools import __version__ as ortools_version

    from moeplan import __version__

    met = sum(r["met"] for r in rows)
    lines = [
        "## Solve times (issues 3 and 10)",
        "",
        f"Median of {runs} runs of the whole process `moeplan solve INSTANCE --json "
        f"--workers {workers}` (start-up, imports, loading, solving, output), measured "
        f"{dt.date.today().isoformat()} on {cpu_name()} ({os.cpu_count()} CPUs), Python "
        f"{platform.python_version()}, OR-Tools {ortools_version}, moeplan {__version__} "
        f"({code_version()}), {bytecode_note()}; "
        f"1-minute load average {load} before the runs (other processes compete for the "
        "CPUs above about 0). "
        "\"Solver\" is the planner's own `solve_time_s` of the last run. "
        f"**{met} of {len(rows)} targets met.**",
        "",
        "| instance | status | GPUs | median | min – max | solver | target | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| `{r['instance']}` | {r['status']} | {r['gpus'] if r['gpus'] is not None else '–'}"
            f" | {r['median_s']:.2f} s | {r['min_s']:.2f} – {r['max_s']:.2f} s | "
            f"{r['solver_s']:.2f} s | ≤ {r['target_s']:g} s | "
            f"{'yes' if r['met'] else '**no**'} |" if r["solver_s"] is not None else
            f"| `{r['instance']}` | {r['status']} | – | {r['median_s']:.2f} s | – | – | "
            f"≤ {r['target_s']:g} s | {'yes' if r['met'] else '**no**'} |")
    missed = [r for r in rows if not r["met"]]
    if missed:
        lines += ["", "Targets missed, and where the time goes:", ""]
        for r in missed:
            lines.append(f"- `{r['instance']}`: {r['median_s']:.1f} s against "
                         f"{r['target_s']:g} s ({r['status']}) — {r['why']}.")
    lines.append("")
    if st is not None:
        lines += startup_markdown(st)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="processes per instance (median)")
    parser.add_argument("--workers", type=int, default=2, help="CP-SAT workers (--workers)")
    parser.add_argument("--docs", type=Path, help="replace the generated section of this file")
    parser.add_argument("--json", type=Path, help="also write the raw rows as JSON here")
    parser.add_argument("--no-startup", action="store_true",
                        help="skip the start-up and import-time measurements")
    args = parser.parse_args(argv)
    load = load_average()
    rows = measure(args.runs, args.workers, log=lambda m: print(m, file=sys.stderr))
    st = None if args.no_startup else startup(args.runs, args.workers)
    text = markdown(rows, args.runs, args.workers, load, st)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "startup": st}, indent=2) + "\n")
    if args.docs is None:
        print(text)
        return 0
    from moeplan.bench import splice

    doc = args.docs.read_text(encoding="utf-8")
    new = splice(doc, BEGIN, END, text)
    if new is None:
        print(f"{args.docs}: markers {BEGIN} / {END} not found", file=sys.stderr)
        return 2
    args.docs.write_text(new, encoding="utf-8")
    print(f"{args.docs}: solve-time section updated ({sum(r['met'] for r in rows)} of "
          f"{len(rows)} targets met)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
