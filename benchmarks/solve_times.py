"""Solve times of whole ``moeplan solve`` processes (issue 3), as docs/benchmarks.md shows them.

    python benchmarks/solve_times.py                          # print the markdown section
    python benchmarks/solve_times.py --docs docs/benchmarks.md  # replace it in the document

For every seed instance (``instances/seeds/*.yaml``, target <= 2 s each) and the two power-law
stress instances (Qwen3-235B-A22B on H100 and DeepSeek-V3 on H200, Zipf load alpha = 1.01 and 32
redundant expert slots, target <= 30 s each), it runs ``python -m moeplan solve INSTANCE --json
--workers 2`` as a new process ``--runs`` times (default 3) and reports the median wall time of
the whole process: interpreter start-up, imports, loading, solving and printing.

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
)


def cases() -> list[tuple[str, float]]:
    seeds = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "instances/seeds").glob(
        "*.yaml"))
    return [(s, SEED_TARGET_S) for s in seeds] + [(p, POWER_LAW_TARGET_S) for p in POWER_LAW]


def run_process(path: str, workers: int) -> tuple[float, dict | None, int]:
    """Wall time of one ``moeplan solve`` process, its JSON document and exit code."""
    cmd = [sys.executable, "-m", "moeplan", "solve", path, "--json", "--workers", str(workers)]
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


def markdown(rows: list[dict], runs: int, workers: int, load: str = "unknown") -> str:
    from ortools import __version__ as ortools_version

    from moeplan import __version__

    met = sum(r["met"] for r in rows)
    lines = [
        "## Solve times (issue 3)",
        "",
        f"Median of {runs} runs of the whole process `python -m moeplan solve INSTANCE --json "
        f"--workers {workers}` (start-up, imports, loading, solving, output), measured "
        f"{dt.date.today().isoformat()} on {cpu_name()} ({os.cpu_count()} CPUs), Python "
        f"{platform.python_version()}, OR-Tools {ortools_version}, moeplan {__version__}; "
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
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="processes per instance (median)")
    parser.add_argument("--workers", type=int, default=2, help="CP-SAT workers (--workers)")
    parser.add_argument("--docs", type=Path, help="replace the generated section of this file")
    parser.add_argument("--json", type=Path, help="also write the raw rows as JSON here")
    args = parser.parse_args(argv)
    load = load_average()
    rows = measure(args.runs, args.workers, log=lambda m: print(m, file=sys.stderr))
    text = markdown(rows, args.runs, args.workers, load)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
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
