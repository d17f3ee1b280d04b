"""Time ``moeplan pareto`` (the rate frontier, with the planner's own plan marked) on
instances/models/qwen3-235b-h100-powerlaw.yaml: the median of 3 runs, each in a fresh process
(nothing cached between runs), with the points found and whether each passed verify.

    .venv/bin/python benchmarks/pareto_times.py [--runs 3] [--json out.json]

docs/benchmarks.md ("Pareto frontier") quotes its output.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
INSTANCE = REPO / "instances/models/qwen3-235b-h100-powerlaw.yaml"

ONE_RUN = """
import json, sys, time
from solver.instance import load_instance
from solver.planner.pareto import pareto
from solver.verify import verify
inst = load_instance(sys.argv[1])
start = time.monotonic()
doc = pareto(inst, time_limit_s=60)
wall = time.monotonic() - start
print(json.dumps({"wall_s": wall, "points": len(doc.points),
                  "proved": sum(p.proved for p in doc.points),
                  "verified": sum(verify(doc.instance, p.plan).valid for p in doc.points),
                  "complete": doc.complete, "stopped": doc.stopped,
                  "chosen_on_frontier": doc.chosen.on_frontier if doc.chosen else None}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    runs = []
    for i in range(args.runs):
        out = subprocess.run([sys.executable, "-c", ONE_RUN, str(INSTANCE)], cwd=REPO,
                             capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"run {i + 1}: {runs[-1]}", flush=True)
    median = statistics.median(r["wall_s"] for r in runs)
    summary = {"instance": str(INSTANCE.relative_to(REPO)), "runs": runs, "median_s": median}
    print(f"median of {len(runs)}: {median:.2f} s, points {[r['points'] for r in runs]}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
