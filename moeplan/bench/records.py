"""The result record: one JSON object per instance, its key (path, sha256) and its fields.

Plain data and pure functions only; every other module of :mod:`moeplan.bench` builds on these.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import platform
import re
import socket
import statistics
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

#: Version of the record layout; bump when a field changes meaning.
RECORD_SCHEMA = "moeplan.bench/2"  # 2: the plan as solver.contract.PlanFile
#: Planner statuses; a record adds ERROR (the instance could not be solved at all).
STATUSES = ("OPTIMAL", "FEASIBLE", "INFEASIBLE", "UNKNOWN", "ERROR")
#: Default budget of the reference search (plans examined) and its default time limit.
REFERENCE_MAX_PLANS = 200_000
REFERENCE_TIME_LIMIT_S = 10.0

#: Terminal control sequences (colours, cursor moves), e.g. in Ray's task error headers.
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")


def one_line(text: object) -> str:
    """``text`` as one clean line: terminal control sequences removed, whitespace collapsed."""
    return " ".join(_ANSI_ESCAPE.sub("", str(text)).split())


@dataclass(frozen=True)
class BenchOptions:
    """What every worker needs to know; plain data so it pickles to processes and Ray tasks."""

    time_limit_s: float | None = None  # None: the instance's search.time_limit_s
    solver_workers: int = 2  # CP-SAT workers per solve (the planner's default)
    reference: bool = True
    reference_time_limit_s: float = REFERENCE_TIME_LIMIT_S
    reference_max_plans: int = REFERENCE_MAX_PLANS
    executor: str = "process"


def display_path(path: Path) -> str:
    """The path as records store it: relative to the working directory when under it (so a
    results file moves with its checkout), else absolute; always with forward slashes."""
    resolved = path.resolve()
    try:
        return resolved.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return resolved.as_posix()


def file_sha256(path: Path) -> str | None:
    """The record's content key; None when the file cannot be read."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def versions() -> dict[str, str]:
    from ortools import __version__ as ortools_version

    from moeplan import __version__ as moeplan_version

    return {"moeplan": moeplan_version, "ortools": ortools_version,
            "python": platform.python_version()}


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def base_record(path: str, sha256: str | None, options: BenchOptions) -> dict[str, Any]:
    return {
        "schema": RECORD_SCHEMA,
        "path": path,
        "sha256": sha256,
        "name": None,
        "status": "ERROR",
        "error": None,
        "gpus": None,
        "bound": None,
        "gap": None,
        "wall_time_s": None,
        "solve_time_s": None,
        "metrics": None,
        "plan": None,
        "explanation": None,
        "placement": None,
        "reference": None,
        "same_gpus": None,
        "time_ratio": None,
        "versions": versions(),
        "settings": asdict(options),
        "host": socket.gethostname(),
        "finished_at": None,
    }


def error_record(path: str, sha256: str | None, options: BenchOptions, message: str
                 ) -> dict[str, Any]:
    """A record with status ERROR and ``message`` as one clean line."""
    rec = base_record(path, sha256, options)
    rec["error"] = one_line(message)
    rec["finished_at"] = now()
    return rec


def placement_summary(experts: Iterable[Any], ep: int) -> dict[str, Any] | None:
    """Hottest-rank load of the planner's placement against DeepSeek EPLB's greedy one, over
    the MoE layers (shares of a layer's routed tokens; lower is better)."""
    layers = list(experts)
    if not layers:
        return None
    ratios = [e.hottest_load / e.greedy_hottest_load for e in layers if e.greedy_hottest_load > 0]
    hottest = max(e.hottest_load for e in layers)
    greedy = max(e.greedy_hottest_load for e in layers)
    return {
        "ep": ep,
        "moe_layers": len(layers),
        "hottest_load_max": hottest,
        "greedy_hottest_load_max": greedy,
        "lower_bound_max": max(e.lower_bound for e in layers),
        # The busiest rank of the busiest layer sets the MoE time: compare those.
        "hottest_vs_greedy": hottest / greedy if greedy > 0 else None,
        "hottest_vs_greedy_mean": statistics.fmean(ratios) if ratios else None,
        "layers_at_lower_bound": sum(1 for e in layers if e.optimal),
        "replicated_experts_max": max(e.replicated_experts for e in layers),
    }


def same_gpus(status: str, gpus: int | None, ref: dict[str, Any] | None) -> bool | None:
    """Whether planner and reference agree on the fewest GPUs (both infeasible counts as the
    same answer); None when the reference did not finish or was not run."""
    if ref is None or ref.get("status") not in ("OPTIMAL", "INFEASIBLE"):
        return None
    if status == "ERROR":
        return None
    if ref["status"] == "INFEASIBLE":
        return status == "INFEASIBLE"
    return gpus is not None and gpus == ref.get("gpus")
