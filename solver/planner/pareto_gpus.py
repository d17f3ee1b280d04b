"""The GPU frontier: fewest GPUs against TTFT (docs/pareto.md, "GPUs against TTFT").

The planner's own solve (fewest GPUs, then its tie-breaks) with the TTFT target stepped below
each answer's TTFT; a point is kept when the next step needs more GPUs (so no plan with as few
GPUs reaches a lower TTFT), and the last one is proved when the step below it is INFEASIBLE.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from solver import timing
from solver.planner.pareto_rate import DEFAULT_POINTS
from solver.schema import Instance, Plan

__all__ = ["GpuPoint", "gpu_frontier"]


@dataclass
class GpuPoint:
    plan: Plan
    gpus: int
    ttft_s: float
    ttft_cap_s: float | None
    proved: bool


def gpu_frontier(instance: Instance, *, points: int = DEFAULT_POINTS,
                 time_limit_s: float = 60.0, workers: int | None = None,
                 should_stop: Callable[[], bool] | None = None) -> list[GpuPoint]:
    """Fewest GPUs for each TTFT target, stepped below each answer's TTFT (the planner's own
    solve). A point is kept when the next step needs more GPUs; it is proved on the frontier
    when both solves were proved (the last one: when the step below it is INFEASIBLE)."""
    from solver.planner import solve

    deadline = time.monotonic() + time_limit_s
    solved: list[GpuPoint] = []
    end = "time limit"
    cap = instance.workload.targets.max_ttft_s
    while time.monotonic() < deadline and len({p.gpus for p in solved}) <= points:
        targets = instance.workload.targets.model_copy(update={"max_ttft_s": cap})
        inst = instance.model_copy(update={"workload": instance.workload.model_copy(
            update={"targets": targets})})
        result = solve(inst, time_limit_s=max(0.05, deadline - time.monotonic()),
                       workers=workers, should_stop=should_stop)
        if result.plan is None or result.metrics is None:
            end = result.status
            break
        solved.append(GpuPoint(result.plan, result.objective or result.plan.degrees.gpus,
                               result.metrics.ttft_s, cap, result.status == "OPTIMAL"))
        cap = (math.ceil(result.metrics.ttft_s * timing.NS_PER_S) - 1) / timing.NS_PER_S
        if cap <= 0:
            break
    kept = []
    for i, point in enumerate(solved):
        nxt = solved[i + 1] if i + 1 < len(solved) else None
        if nxt is not None and nxt.gpus <= point.gpus:
            continue  # as few GPUs reach a lower TTFT
        point.proved = point.proved and (nxt.proved if nxt is not None else end == "INFEASIBLE")
        kept.append(point)
    return kept[:points]
