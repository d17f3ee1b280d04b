"""The trade-off frontiers of an instance and the document ``moeplan pareto``, the ``Pareto``
gRPC method and the library return (:func:`pareto`, a :class:`~solver.contract.ParetoOut`):
each point a plan proved optimal for its constraint (the epsilon-constraint method), and the
planner's own answer to the instance placed among the points. docs/pareto.md.

Modules:

- :mod:`~solver.planner.pareto_rate`: output tokens/s per GPU against tokens/s per user (the
  batch free), :func:`rate_frontier`; the best-first search over the units of
  :mod:`~solver.planner.pareto_units` (a stage grid at one depth, with a bound on its tokens/s
  per GPU);
- :mod:`~solver.planner.pareto_disagg`: the same axes for two-pool plans,
  :func:`disagg_frontier` (the two-pool planner's fewest GPUs under each TPOT cap; tokens/s per
  GPU is the planned output rate over the pair's GPUs);
- :mod:`~solver.planner.pareto_gpus`: GPUs against TTFT, :func:`gpu_frontier` (the planner's own
  solve with its TTFT target stepped);
- this module: the document, the chosen plan and where it sits.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from solver.instance import InputError
from solver.planner.pareto_disagg import (
    DisaggFrontier,
    DisaggPoint,
    disagg_frontier,
    require_total_rate,
)
from solver.planner.pareto_gpus import GpuPoint, gpu_frontier
from solver.planner.pareto_rate import (
    DEFAULT_POINTS,
    DEFAULT_STEP,
    Frontier,
    Point,
    frontier_instance,
    rate_frontier,
)
from solver.schema import Instance

__all__ = ["DEFAULT_POINTS", "DEFAULT_STEP", "DisaggFrontier", "DisaggPoint", "Frontier",
           "GpuPoint", "Point", "check_serving", "disagg_frontier", "frontier_instance",
           "gpu_frontier", "pareto", "rate_frontier"]

#: Share of the time limit the planner's own answer (the chosen plan) may take, and its cap.
CHOSEN_SHARE = 0.3
CHOSEN_MAX_S = 30.0
#: ``serving`` of the document for each ``serving`` of an instance (the default).
SERVING_OF_INSTANCE = {"aggregated": "aggregated", "disaggregated": "disaggregated",
                       "best": "both"}
RATE_OBJECTIVE = ("most output tokens/s per GPU, then most tokens/s per user, under a TPOT cap "
                  "and every other target; the batch free")
DISAGG_OBJECTIVE = ("fewest GPUs of both pools (the most output tokens/s per GPU at the planned "
                    "rate) under a TPOT cap and every other target; the batch free; a step kept "
                    "when the next one needs more GPUs")


def _chosen(instance: Instance, time_limit_s: float, workers: int | None,
            should_stop: Callable[[], bool] | None):
    from solver.contract import ChosenOut
    from solver.planner import solve

    result = solve(instance, time_limit_s=time_limit_s, workers=workers, should_stop=should_stop)
    m = result.metrics
    if m is None or (result.plan is None and result.disagg_plan is None):
        return None
    if result.plan is not None:
        kind = {"serving": "aggregated", "plan": result.plan, "gpus": result.plan.degrees.gpus}
    else:
        kind = {"serving": "disaggregated", "disagg_plan": result.disagg_plan,
                "gpus": result.disagg_plan.gpus}
    return ChosenOut(**kind, output_tokens_per_s_per_gpu=m.output_tokens_per_s_per_gpu,
                     tokens_per_s_per_user=m.tokens_per_s_per_user, ttft_s=m.ttft_s,
                     on_frontier=None, dominated_by=None)


def check_serving(instance: Instance, frontier: str, serving: str | None) -> str:
    """The frontiers to compute: ``serving`` as asked, else the instance's own (the GPU frontier
    is aggregated only); a two-pool frontier without the total-rate target is an InputError."""
    if serving is not None and serving not in ("aggregated", "disaggregated", "both"):
        raise InputError(f"serving: '{serving}' is not 'aggregated', 'disaggregated' or "
                         "'both'", "serving")
    if frontier == "gpus":
        if serving not in (None, "aggregated"):
            raise InputError(f"serving: the GPU frontier (frontier gpus) is aggregated only, got "
                             f"'{serving}'", "serving")
        return "aggregated"
    out = serving or SERVING_OF_INSTANCE[instance.serving]
    if out != "aggregated":
        require_total_rate(instance)
    return out


def pareto(instance: Instance, *, frontier: str = "rate", points: int = DEFAULT_POINTS,
           step: float = DEFAULT_STEP, time_limit_s: float = 60.0,
           batch: tuple[int, int] | None = None, workers: int | None = None,
           chosen: bool = True, serving: str | None = None, on_point: Callable | None = None,
           should_stop: Callable[[], bool] | None = None):
    """The :class:`~solver.contract.ParetoOut` document of ``instance``: the rate frontier
    (tokens/s per GPU against tokens/s per user) of aggregated plans, of two-pool plans or both
    (``serving``: 'aggregated', 'disaggregated' or 'both'; default the instance's serving, 'best'
    giving both), or the GPU frontier (GPUs against TTFT, aggregated), and the planner's answer
    to the instance placed among the points. ``on_point`` receives each
    :class:`~solver.contract.ParetoPointOut` as it is proved (the rate frontiers stream)."""
    from solver.contract import ParetoOut, ParetoPointOut
    from solver.estimate import evaluate

    if frontier not in ("rate", "gpus"):
        raise InputError(f"frontier: '{frontier}' is not 'rate' or 'gpus'", "frontier")
    if not (math.isfinite(time_limit_s) and time_limit_s > 0):
        raise InputError(f"time_limit_s: must be above 0, got {time_limit_s}", "time_limit_s")
    mode = check_serving(instance, frontier, serving)
    start = time.monotonic()
    pick = None
    if chosen:
        pick = _chosen(instance, min(CHOSEN_MAX_S, CHOSEN_SHARE * time_limit_s), workers,
                       should_stop)
    left = max(0.05, time_limit_s - (time.monotonic() - start))
    out_points: list[ParetoPointOut] = []

    def add(doc: ParetoPointOut) -> None:
        out_points.append(doc)
        if on_point is not None:
            on_point(doc)

    def cap_text(cap_ns: int | None) -> str:
        return "none but the targets" if cap_ns is None else f"TPOT <= {cap_ns / 1e6:.3f} ms"

    inst = frontier_instance(instance, batch) if frontier == "rate" else instance
    ends: list[tuple[str, bool, str]] = []  # (serving, complete, stopped) per frontier
    if frontier == "rate" and mode in ("aggregated", "both"):

        def emit(p: Point) -> None:
            m = evaluate(inst, p.plan).metrics
            add(ParetoPointOut(
                index=len(out_points), plan=p.plan, gpus=p.plan.degrees.gpus,
                batch=p.plan.batch, output_tokens_per_s_per_gpu=m.output_tokens_per_s_per_gpu,
                tokens_per_s_per_user=m.tokens_per_s_per_user, tpot_s=m.tpot_s,
                ttft_s=m.ttft_s, constraint=cap_text(p.tpot_cap_ns), proved=p.proved))

        share = left / 2 if mode == "both" else left
        fr = rate_frontier(instance, points=points, step=step, time_limit_s=share, batch=batch,
                           workers=workers, on_point=emit, should_stop=should_stop)
        ends.append(("aggregated", fr.complete, fr.stopped))
    if frontier == "rate" and mode in ("disaggregated", "both"):

        def emit_disagg(p: DisaggPoint) -> None:
            m = p.metrics
            add(ParetoPointOut(
                index=len(out_points), serving="disaggregated", disagg_plan=p.plan,
                gpus=p.gpus, batch=p.plan.decode.batch,
                output_tokens_per_s_per_gpu=m.output_tokens_per_s_per_gpu,
                tokens_per_s_per_user=m.tokens_per_s_per_user, tpot_s=m.tpot_s,
                ttft_s=m.ttft_s, constraint=cap_text(p.tpot_cap_ns), proved=p.proved))

        rest = max(0.05, time_limit_s - (time.monotonic() - start))
        dfr = disagg_frontier(instance, points=points, step=step, time_limit_s=rest,
                              batch=batch, workers=workers, on_point=emit_disagg,
                              should_stop=should_stop)
        ends.append(("disaggregated", dfr.complete, dfr.stopped))
    if frontier == "gpus":
        kept = gpu_frontier(instance.model_copy(update={"serving": "aggregated"}),
                            points=points, time_limit_s=left, workers=workers,
                            should_stop=should_stop)
        for p in kept:
            m = evaluate(instance, p.plan).metrics
            add(ParetoPointOut(
                index=len(out_points), plan=p.plan, gpus=p.gpus, batch=p.plan.batch,
                output_tokens_per_s_per_gpu=m.output_tokens_per_s_per_gpu,
                tokens_per_s_per_user=m.tokens_per_s_per_user, tpot_s=m.tpot_s,
                ttft_s=m.ttft_s, constraint="the instance's targets" if p.ttft_cap_s is None
                else f"TTFT <= {p.ttft_cap_s:.6g} s", proved=p.proved))
        complete = all(p.proved for p in kept)
        ends.append(("aggregated", complete, "the GPU steps ended" if complete
                     else "time limit or an unproved step"))
        objective = "fewest GPUs (then the planner's tie-breaks) under a TTFT cap"
    elif mode == "both":
        objective = f"aggregated: {RATE_OBJECTIVE}; disaggregated: {DISAGG_OBJECTIVE}"
    else:
        objective = RATE_OBJECTIVE if mode == "aggregated" else DISAGG_OBJECTIVE
    complete = all(c for _, c, _ in ends)
    stopped = ends[0][2] if len(ends) == 1 else "; ".join(f"{s}: {why}" for s, _, why in ends)
    if pick is not None:
        pick = pick.model_copy(update=_place_chosen(pick, out_points, frontier))
    return ParetoOut(frontier=frontier, serving=mode, objective=objective, instance=inst,
                     points=out_points, chosen=pick, complete=complete, stopped=stopped,
                     solve_time_s=time.monotonic() - start)


def _place_chosen(pick, points, frontier: str) -> dict:
    """Which point the chosen plan is (a point of its own serving), or which point dominates it
    (one of its own serving first)."""
    def axes(x):
        if frontier == "rate":
            return (x.output_tokens_per_s_per_gpu, x.tokens_per_s_per_user)
        return (-x.gpus, -x.ttft_s)  # larger is better on both

    a = axes(pick)
    on = next((p.index for p in points if p.serving == pick.serving and all(
        math.isclose(u, v, rel_tol=1e-9) for u, v in zip(axes(p), a, strict=True))), None)
    dom = None
    if on is None:
        dominating = [p for p in points
                      if all(u >= v * (1 - 1e-12) for u, v in zip(axes(p), a, strict=True))
                      and any(u > v * (1 + 1e-9) for u, v in zip(axes(p), a, strict=True))]
        dominating.sort(key=lambda p: p.serving != pick.serving)  # stable: index order kept
        dom = dominating[0].index if dominating else None
    return {"on_frontier": on, "dominated_by": dom}
