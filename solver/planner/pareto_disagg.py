"""The disaggregated rate frontier: output tokens/s per GPU against tokens/s per user of two-pool
plans (docs/pareto.md, "Disaggregated frontier").

A two-pool plan is sized for the request rate the instance's total-rate target fixes, so its
output tokens/s is that planned rate whatever the plan, and tokens/s per GPU is the planned
output rate over the pair's total GPUs: the most tokens/s per GPU under a TPOT cap ``τ`` is the
fewest GPUs under ``τ``. Each step is the two-pool planner's proved answer
(:func:`solver.planner.disagg.solve_disaggregated`) to the instance with ``max_tpot_s = τ``;
``τ`` starts at the instance's TPOT target and steps as the aggregated frontier's does
(``step`` times the last cap, always strictly below the last point's TPOT).

**Which steps are points.** The GPUs of consecutive steps never fall (a lower cap admits fewer
plans). Two steps with the same GPUs have the same tokens/s per GPU, and the later one has the
lower TPOT, so it dominates the earlier: a step is a point when the next step needs more GPUs
(or there is no next step). Along the points the GPUs strictly rise and the TPOT strictly falls:
they are mutually non-dominated.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from solver import disagg as two_pools
from solver import timing
from solver.instance import InputError
from solver.planner.disagg import solve_disaggregated
from solver.planner.pareto_rate import DEFAULT_POINTS, DEFAULT_STEP, frontier_instance
from solver.schema import DisaggMetrics, DisaggPlan, Instance

__all__ = ["DisaggFrontier", "DisaggPoint", "disagg_frontier", "require_total_rate"]

RATE_FIELD = "workload.targets.min_output_tokens_per_s"


@dataclass
class DisaggPoint:
    """One two-pool plan of the frontier: the fewest GPUs under its TPOT cap."""

    plan: DisaggPlan
    metrics: DisaggMetrics
    tpot_ns: int
    tpot_cap_ns: int | None
    proved: bool

    @property
    def gpus(self) -> int:
        return self.plan.gpus


@dataclass
class DisaggFrontier:
    instance: Instance  # the instance the points were planned for (its batch free)
    points: list[DisaggPoint] = field(default_factory=list)
    complete: bool = False
    stopped: str = ""


def require_total_rate(instance: Instance) -> None:
    """A disaggregated frontier needs the total-rate target (it fixes the planned rate)."""
    if instance.workload.targets.min_output_tokens_per_s is None:
        raise InputError(f"{RATE_FIELD}: required for a disaggregated frontier (both pools are "
                         "sized for the request rate it implies; set it, or ask for the "
                         "aggregated frontier)", RATE_FIELD)


def tpot_cap_seconds(cap_ns: int) -> float:
    """The float of seconds the planner reads back as exactly ``cap_ns`` (its targets are
    floored to integer ns)."""
    s = cap_ns / timing.NS_PER_S
    while timing.seconds_to_ns_floor(s) < cap_ns:
        s = math.nextafter(s, math.inf)
    while timing.seconds_to_ns_floor(s) > cap_ns:
        s = math.nextafter(s, 0.0)
    return s


def capped(instance: Instance, cap_ns: int | None) -> Instance:
    """``instance`` with its TPOT target replaced by ``cap_ns`` (None: as given)."""
    if cap_ns is None:
        return instance
    targets = instance.workload.targets.model_copy(
        update={"max_tpot_s": tpot_cap_seconds(cap_ns)})
    return instance.model_copy(update={"workload": instance.workload.model_copy(
        update={"targets": targets})})


def disagg_frontier(instance: Instance, *, points: int = DEFAULT_POINTS,
                    step: float = DEFAULT_STEP, time_limit_s: float = 60.0,
                    batch: tuple[int, int] | None = None, workers: int | None = None,
                    on_point: Callable[[DisaggPoint], None] | None = None,
                    should_stop: Callable[[], bool] | None = None) -> DisaggFrontier:
    """Up to ``points`` points of the two-pool frontier (module docstring), from the fewest GPUs
    under the instance's own TPOT target towards more tokens/s per user. ``on_point`` receives
    each point once the step after it needs more GPUs (or the steps end)."""
    if not 0 < step < 1:
        raise InputError(f"step: must be in (0, 1), got {step}", "step")
    if points < 1:
        raise InputError(f"points: must be at least 1, got {points}", "points")
    require_total_rate(instance)
    inst = frontier_instance(instance, batch)
    deadline = time.monotonic() + time_limit_s
    out = DisaggFrontier(inst)
    target = inst.workload.targets.max_tpot_s
    cap: int | None = None if target is None else timing.seconds_to_ns_floor(target)
    first = True
    pending: DisaggPoint | None = None

    def keep(p: DisaggPoint) -> None:
        out.points.append(p)
        if on_point is not None:
            on_point(p)

    while True:
        if len(out.points) >= points:
            out.complete, out.stopped = True, f"{points} points"
            pending = None
            break
        left = deadline - time.monotonic()
        if left <= 0:
            out.stopped = "time limit"
            break
        result = solve_disaggregated(capped(inst, None if first else cap), time_limit_s=left,
                                     workers=workers, should_stop=should_stop)
        if result.disagg_plan is None:
            out.complete = result.status == "INFEASIBLE"
            out.stopped = "no plan is faster" if out.complete else "time limit"
            break
        ev = two_pools.evaluate(inst, result.disagg_plan)
        point = DisaggPoint(plan=result.disagg_plan, metrics=ev.metrics,
                            tpot_ns=ev.decode.result.tpot_ns, tpot_cap_ns=cap,
                            proved=result.status == "OPTIMAL")
        if pending is not None and point.gpus > pending.gpus:
            keep(pending)  # the step below needs more GPUs: pending is on the frontier
        pending = point  # (at no more GPUs, the new step dominates the pending one)
        first = False
        nxt = math.floor(point.tpot_ns * step) if cap is None else math.floor(cap * step)
        cap = min(point.tpot_ns - 1, nxt)
        if cap < 1:
            out.complete, out.stopped = True, "no plan is faster"
            break
    if pending is not None:
        keep(pending)
    return out

