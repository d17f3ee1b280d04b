"""One instance, solved in a worker (a spawned process or a Ray task): :func:`run_instance`.

It loads the instance, runs the planner and, as baselines measured in the same run, the
exhaustive reference search (:func:`solver.reference.reference_search`, within its own time limit
and plan budget) and the greedy EPLB expert placement (the planner's
:class:`~solver.schema.SolveResult` carries each MoE layer's greedy hottest-rank load next to its
own). It never raises: a file that does not load, or a bug, is a record with status ERROR and a
one-line message.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

from moeplan.bench.records import (
    BenchOptions,
    base_record,
    error_record,
    now,
    one_line,
    placement_summary,
    same_gpus,
)
from solver.instance import InputError, load_instance


def run_instance(path: str, options: BenchOptions) -> dict[str, Any]:
    """Solve one instance file and measure the baselines; returns the record, never raises."""
    p = Path(path)
    try:
        sha = hashlib.sha256(p.read_bytes()).hexdigest()
    except OSError as exc:
        return error_record(path, None, options, f"{path}: cannot read ({exc.strerror})")
    try:
        return _run_instance(path, sha, options)
    except InputError as exc:
        return error_record(path, sha, options, str(exc))
    except Exception as exc:  # a bug: recorded, the run goes on
        return error_record(path, sha, options, f"internal error: {type(exc).__name__}: {exc}")


def _run_instance(path: str, sha: str, options: BenchOptions) -> dict[str, Any]:
    from solver import contract
    from solver.planner import solve  # OR-Tools: imported by the worker, when it solves

    try:
        instance = load_instance(path)
    except InputError:
        raise
    except ValueError as exc:  # any other resolution error, as one line
        raise InputError(one_line(exc)) from None
    rec = base_record(path, sha, options)
    rec["name"] = instance.name
    start = time.perf_counter()
    result = solve(instance, time_limit_s=options.time_limit_s, workers=options.solver_workers)
    rec["wall_time_s"] = time.perf_counter() - start
    rec.update(
        status=result.status,
        gpus=result.objective,
        bound=result.bound,
        gap=result.gap,
        solve_time_s=result.solve_time_s,
        metrics=result.metrics.model_dump(mode="json") if result.metrics else None,
        explanation=result.explanation.summary if result.explanation else None,
    )
    if result.plan is not None:
        plan = result.plan
        # The plan document `solve --out` writes (solver.contract.PlanFile): one representation
        # of stages and placements everywhere.
        rec["plan"] = contract.dump(contract.plan_file(plan))
        rec["placement"] = placement_summary(result.experts, plan.degrees.ep)
    elif result.disagg_plan is not None:  # serving: disaggregated (or best, answered so)
        rec["plan"] = contract.dump(contract.disagg_plan_file(result.disagg_plan))
        rec["placement"] = placement_summary(result.experts,
                                             result.disagg_plan.decode.degrees.ep)
    if options.reference:
        rec["reference"] = _reference(instance, options)
        rec["same_gpus"] = same_gpus(result.status, result.objective, rec["reference"])
        ref_time = rec["reference"].get("time_s")
        if rec["reference"]["status"] in ("OPTIMAL", "INFEASIBLE") and ref_time:
            rec["time_ratio"] = rec["wall_time_s"] / ref_time
    rec["finished_at"] = now()
    return rec


def _reference(instance: Any, options: BenchOptions) -> dict[str, Any]:
    from solver.reference import reference_disagg_search, reference_search

    start = time.perf_counter()
    out: dict[str, Any] = {"time_limit_s": options.reference_time_limit_s,
                           "max_plans": options.reference_max_plans}
    # a two-pool instance has the two-pool reference; serving: best both (the fewer GPUs)
    searches = {"aggregated": (reference_search,), "disaggregated": (reference_disagg_search,),
                "best": (reference_search, reference_disagg_search)}[instance.serving]
    try:
        refs = [search(instance.model_copy(update={"serving": "disaggregated"})
                       if search is reference_disagg_search else instance,
                       max_plans=options.reference_max_plans,
                       time_limit_s=options.reference_time_limit_s) for search in searches]
        ref = min(refs, key=lambda r: ({"OPTIMAL": 0, "TIMEOUT": 1, "INFEASIBLE": 2}[r.status],
                                       r.gpus or 0))
        if any(r.status == "TIMEOUT" for r in refs) and ref.status != "INFEASIBLE":
            ref = next(r for r in refs if r.status == "TIMEOUT")
    except Exception as exc:  # a disagreement inside the reference is a finding, not a crash
        out.update(status="ERROR", gpus=None, time_s=time.perf_counter() - start,
                   plans_checked=None, error=one_line(f"{type(exc).__name__}: {exc}"))
        return out
    out.update(status=ref.status, gpus=ref.gpus, time_s=sum(r.time_s for r in refs),
               plans_checked=sum(r.plans_checked for r in refs))
    return out
