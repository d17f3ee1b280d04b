"""The two-pool planner: a prefill pool and a decode pool, fewest GPUs in all, proved.

docs/solver.md, "Two pools", has the decomposition and its proof; in short:

- The planned request rate λ is fixed by the total-rate target, so the pools are coupled only
  through the TTFT budget (queueing + prefill + KV transfer ≤ target) and the KV transfer,
  whose speed depends on both pools through one integer: the decode instance's GPUs that hold
  distinct KV (``r``, :func:`solver.pools.receivers`), which caps the transfer's parallel links.
- **Per-pool minima.** :class:`~solver.planner.disagg_decode.DecodeSearch` finds the fewest
  decode GPUs with at least ``r`` receivers, ``D(r)``;
  :class:`~solver.planner.disagg_prefill.PrefillSearch` the fewest prefill GPUs when the links
  are capped at ``r``, ``P(r)``. Each is an exact branch and bound over the pool's candidates (a
  grid at one batch position / token choice) in increasing order of GPUs per instance, with the
  exact partition routines of :mod:`solver.planner.partition` (no target couples two stage
  times in a decode pool; in a prefill pool the few Pareto-optimal partitions are enumerated).
- **Joint minimum.** ``D`` is non-decreasing and ``P`` non-increasing in ``r``, so the optimum
  is ``min_r D(r) + P(r)`` over the finitely many receiver counts; the loop visits them in
  increasing order and stops once ``D(r) + P(∞)`` cannot beat the best pair.
- **Tie-breaks.** At the planned rate every plan with ``G`` GPUs has the same output tokens/s
  per GPU; the lowest TTFT is found exactly over every split ``G = G_d + G_p``.

Modules: :mod:`~solver.planner.disagg_decode` (the decode pool's search),
:mod:`~solver.planner.disagg_prefill` (the prefill pool's), :mod:`~solver.planner.disagg_joint`
(the joint search, its tie-breaks, the plan); this one holds the entry points
(:func:`solve_disaggregated`, :func:`solve_best`, :func:`solve_serving`) and the explanation of
an infeasible pair.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ortools import __version__ as ORTOOLS_VERSION

from solver import disagg as two_pools
from solver import rules
from solver.estimate import Prepared
from solver.loads import describe
from solver.planner.candidates import INF
from solver.planner.disagg_joint import Joint, JointOutcome, Pair, plan_of
from solver.planner.placements import Placements
from solver.pool_space import disagg_restrictions
from solver.schema import (
    MAX_GPUS,
    Explanation,
    Instance,
    ServingComparison,
    ServingFigures,
    SolveResult,
)

__all__ = ["DISAGG_TIE_BREAKS", "DisaggPlannerError", "solve_best", "solve_disaggregated",
           "solve_serving"]

DISAGG_TIE_BREAKS = (
    "fewest total GPUs",
    "most output tokens/s per GPU",
    "lowest TTFT",
)
SOLVER_NAME = f"ortools-cpsat {ORTOOLS_VERSION}"


class DisaggPlannerError(RuntimeError):
    """The two-pool planner produced a plan the verifier rejects or prices differently."""


def _advice(status: str, time_limit_s: float) -> str:
    if status not in ("UNKNOWN", "FEASIBLE"):
        return ""
    what = ("before any pair of pools was found" if status == "UNKNOWN"
            else "before the GPU count of the pair was proved minimal")
    return (f"The time limit ended the two-pool search {what}: raise the time limit (now "
            f"{time_limit_s:g} s) or narrow the search (search.fix, max_pp, a batch range, "
            "fewer disaggregation.prefill_tokens).")


def solve_disaggregated(instance: Instance, *, time_limit_s: float | None = None,
                        workers: int | None = None,
                        on_improvement: Callable[[SolveResult], None] | None = None,
                        should_stop: Callable[[], bool] | None = None) -> SolveResult:
    """The fewest-GPU prefill + decode pools for ``instance`` (docs/solver.md, "Two pools")."""
    start = time.monotonic()
    search = instance.search.with_limits(time_limit_s, workers)
    deadline = start + search.time_limit_s
    prep = Prepared(instance)
    placements = Placements(prep, search.workers, search.random_seed, deadline)
    joint = Joint(prep, placements)
    common = {"solver": SOLVER_NAME, "tie_breaks": DISAGG_TIE_BREAKS,
              "search_space": {"serving": "disaggregated", **disagg_restrictions(instance)},
              "expert_load": describe(instance.expert_load, instance.model),
              "serving": "disaggregated"}

    hook = None
    if on_improvement is not None:
        def hook(p: Pair, bound: int) -> None:
            dplan = plan_of(prep, placements, p)
            met = two_pools.evaluate(prep, dplan).metrics
            on_improvement(SolveResult(
                status="FEASIBLE", metrics=two_pools.as_metrics(met), objective=p.gpus,
                bound=min(bound, p.gpus), gap=max(0.0, (p.gpus - bound) / p.gpus),
                solve_time_s=time.monotonic() - start, disagg_plan=dplan, disagg_metrics=met,
                **common))

    outcome = joint.fewest(deadline, should_stop, hook)
    if outcome.pair is None:
        explanation = None
        if outcome.status == "INFEASIBLE":
            explanation = _explain(prep, placements, joint, outcome, should_stop,
                                   max(deadline, time.monotonic() + 0.5))
        return SolveResult(status=outcome.status, solve_time_s=time.monotonic() - start,
                           bound=outcome.bound, explanation=explanation,
                           improving_solutions=outcome.improving,
                           advice=_advice(outcome.status, search.time_limit_s), **common)
    if outcome.status == "OPTIMAL":
        outcome = joint.least_ttft(outcome, deadline, should_stop)
    outcome = _placement_bound(prep, placements, outcome, deadline, should_stop)
    p = outcome.pair
    dplan = plan_of(prep, placements, p)
    report = two_pools.verify(prep, dplan)
    if not report.valid:
        raise DisaggPlannerError("the two-pool planner returned a plan the verifier rejects: "
                                 + "; ".join(str(v) for v in report.violations))
    ev = report.evaluation
    m, _ = p.decode.times
    if (ev.decode.result.tpot_ns, ev.ttft_ns) != (p.decode.cand.tpot(m), p.prefill.ttft_ns):
        raise DisaggPlannerError(
            f"planner and estimator disagree: TPOT {p.decode.cand.tpot(m)} vs "
            f"{ev.decode.result.tpot_ns} ns, TTFT {p.prefill.ttft_ns} vs {ev.ttft_ns} ns")
    bound = outcome.bound
    c = p.decode.cand
    return SolveResult(
        status=outcome.status, metrics=two_pools.as_metrics(ev.metrics), objective=p.gpus,
        bound=bound, gap=None if bound is None else max(0.0, (p.gpus - bound) / p.gpus),
        solve_time_s=time.monotonic() - start, tie_breaks_proved=tuple(outcome.proved),
        experts=placements.experts(c.grid.ep, c.redundant),
        improving_solutions=outcome.improving, disagg_plan=dplan, disagg_metrics=ev.metrics,
        advice=" ".join(a for a in (_advice(outcome.status, search.time_limit_s),
                                    _pair_advice(instance, p)) if a), **common)


def _pair_advice(instance: Instance, p: Pair) -> str:
    """The rules on the pair of pools (:data:`solver.rules.PAIR_RULES`) are not searched: say
    when the pair breaks one (the export refuses it)."""
    if not instance.search.engine_rules:
        return ""
    broken = rules.pair_violations(instance.engine.name, p.prefill.cand.grid,
                                   p.decode.cand.grid)
    if not broken:
        return ""
    return (f"{instance.engine.name} cannot connect these pools: {broken[0].message}; the "
            "two-pool planner does not search under the rules on the pair yet, so export "
            "refuses this plan (fix the pools' degrees with search.fix, or plan aggregated).")


def _placement_bound(prep: Prepared, placements: Placements, outcome: JointOutcome,
                     deadline: float, should_stop) -> JointOutcome:
    """As for one pool: when a placement a costed grid used is not proved optimal, the GPU
    count is proved only against the same search with every busiest rank at its proved lower
    bound (the cost model is monotone in that load)."""
    if outcome.status != "OPTIMAL" or not prep.moe_layers:
        return outcome
    if all(placements.all_optimal(ep, red) for ep, red in outcome.eps):
        return outcome
    lower = Joint(prep, placements, lower=True).fewest(max(deadline, time.monotonic() + 0.5),
                                                       should_stop)
    bound = lower.pair.gpus if lower.status == "OPTIMAL" and lower.pair else lower.bound
    if bound is None or bound < outcome.pair.gpus:
        outcome.status = "FEASIBLE"
        outcome.bound = bound if bound is not None else 2
        outcome.proved = []
    return outcome


def _explain(prep: Prepared, placements: Placements, joint: Joint, outcome: JointOutcome,
             should_stop, deadline: float) -> Explanation:
    """Why no pair of pools exists, per pool."""
    t = prep.instance.workload.targets
    cap = joint.cap
    conflicts: list[str] = []
    lines: list[str] = []
    nearest: dict[str, float] = {}
    limit = f"within {cap:,} GPUs" + (" (max_gpus)" if t.max_gpus is not None else "")
    p_alone = outcome.prefill_alone
    if p_alone is not None and p_alone.choice is None:
        # the prefill pool alone: without the GPU cap, does any exist?
        free = Joint(prep, placements, cap=MAX_GPUS)
        p_free = free.prefill.fewest(None, deadline, should_stop)
        if p_free.choice is not None:
            conflicts.append("prefill pool: max_gpus")
            lines.append(f"the prefill pool alone needs {p_free.choice.gpus:,} GPUs to keep up "
                         f"with {float(joint.prefill.lam):.4g} requests/s"
                         + (f" within TTFT {t.max_ttft_s:g} s" if t.max_ttft_s else "")
                         + f", leaving no room {limit}")
            nearest["prefill_pool_gpus_needed"] = float(p_free.choice.gpus)
        else:
            why = ("the prompt's own prefill alone is longer than max_ttft_s on every allowed "
                   "grid" if len(joint.prefill.excluded) and t.max_ttft_s is not None else
                   "no prefill grid fits memory and meets max_ttft_s at the planned rate")
            conflicts.append("prefill pool: max_ttft_s" if t.max_ttft_s else "prefill pool")
            lines.append(f"the prefill pool is infeasible at any size: {why}")
    d_alone = outcome.decode_alone
    if d_alone is not None and d_alone.choice is None:
        free = Joint(prep, placements, cap=MAX_GPUS)
        d_free = free.decode_search(1).fewest(1, deadline, should_stop)
        if d_free.choice is not None:
            conflicts.append("decode pool: max_gpus")
            lines.append(f"the decode pool alone needs {d_free.choice.gpus:,} GPUs for "
                         f"{t.min_output_tokens_per_s:g} output tokens/s"
                         + (f" at TPOT {t.max_tpot_s:g} s" if t.max_tpot_s else "")
                         + f", and the prefill pool at least {p_alone.bound if p_alone else 1:,}"
                         f": more than fit {limit}")
            nearest["decode_pool_gpus_needed"] = float(d_free.choice.gpus)
        else:
            why = ("max_tpot_s is below the decode step of every allowed (tp, cp)"
                   if t.max_tpot_s is not None and free.decode.excluded else
                   "no decode grid fits memory and meets the targets")
            conflicts.append("decode pool: max_tpot_s" if t.max_tpot_s else "decode pool")
            lines.append(f"the decode pool is infeasible at any size: {why}")
    if p_alone is not None and p_alone.choice is not None and d_alone is not None and \
            d_alone.choice is not None:
        conflicts.append("max_gpus")
        lines.append(f"each pool fits alone (decode ≥ {d_alone.bound:,}, prefill ≥ "
                     f"{p_alone.bound:,} GPUs) but no pair fits {limit} with the KV transfer "
                     "inside the TTFT budget")
    if cap < 2:
        conflicts.append("max_gpus")
        lines.append("a disaggregated deployment needs at least two GPUs (one per pool)")
    if not lines:
        lines.append(f"no pair of pools meets the targets {limit}")
    summary = "No disaggregated plan: " + "; ".join(lines) + "."
    return Explanation(summary=summary, conflicts=tuple(dict.fromkeys(conflicts)),
                       nearest=nearest)


# ----------------------------------------------------------------------------------------------
# serving: best
# ----------------------------------------------------------------------------------------------


def _figures(r: SolveResult) -> ServingFigures:
    m = r.metrics
    return ServingFigures(status=r.status, gpus=r.objective, bound=r.bound,
                          ttft_s=m.ttft_s if m else None, tpot_s=m.tpot_s if m else None,
                          output_tokens_per_s_per_gpu=m.output_tokens_per_s_per_gpu if m
                          else None, solve_time_s=r.solve_time_s)


def solve_best(instance: Instance, *, time_limit_s: float | None = None,
               workers: int | None = None,
               on_improvement: Callable[[SolveResult], None] | None = None,
               should_stop: Callable[[], bool] | None = None) -> SolveResult:
    """Both modes (the aggregated one first, with half the time), and the cheaper answer with
    both figures. Fewer GPUs wins; at equal GPUs the aggregated plan (one pool to run, and its
    rate is at least the planned one)."""
    from solver.planner import solve

    start = time.monotonic()
    limit = time_limit_s if time_limit_s is not None else instance.search.time_limit_s
    agg = solve(instance.model_copy(update={"serving": "aggregated"}),
                time_limit_s=limit / 2, workers=workers, on_improvement=on_improvement,
                should_stop=should_stop)
    left = max(0.05, limit - (time.monotonic() - start))
    dis = solve_disaggregated(instance, time_limit_s=left, workers=workers,
                              on_improvement=on_improvement, should_stop=should_stop)
    has_a, has_d = agg.objective is not None, dis.objective is not None
    if has_d and (not has_a or dis.objective < agg.objective):
        chosen, other, name = dis, agg, "disaggregated"
        reason = (f"the disaggregated plan uses {dis.objective} GPUs"
                  + (f", the aggregated {agg.objective}" if has_a else
                     f"; no aggregated plan ({agg.status})"))
    else:
        chosen, other, name = agg, dis, "aggregated"
        if has_a and has_d:
            reason = (f"the aggregated plan uses {agg.objective} GPUs, the disaggregated "
                      f"{dis.objective}" + (" (equal: the aggregated plan is one pool to run)"
                                            if agg.objective == dis.objective else ""))
        elif has_a:
            reason = f"no disaggregated plan ({dis.status})"
        else:
            reason = f"neither mode has a plan (aggregated {agg.status}, disaggregated " \
                     f"{dis.status})"
    status = chosen.status
    bound = chosen.bound
    if chosen.objective is not None:
        # proved only if the other mode is proved to need at least as many GPUs
        other_lb = other.objective if other.status == "OPTIMAL" else (
            INF if other.status == "INFEASIBLE" else other.bound)
        if other_lb is None:
            other_lb = 1
        if status == "OPTIMAL" and other_lb < chosen.objective:
            status = "FEASIBLE"
        bound = min(x for x in (chosen.bound or chosen.objective, other_lb) if x is not None)
    elif agg.status == dis.status == "INFEASIBLE":
        status = "INFEASIBLE"
    else:
        status = "UNKNOWN"
    comparison = ServingComparison(chosen=name, reason=reason, aggregated=_figures(agg),
                                   disaggregated=_figures(dis))
    explanation = chosen.explanation
    if status == "INFEASIBLE":
        parts = [f"aggregated: {agg.explanation.summary}" if agg.explanation else "",
                 f"disaggregated: {dis.explanation.summary}" if dis.explanation else ""]
        explanation = Explanation(
            summary=" ".join(p for p in parts if p) or "No plan in either mode.",
            conflicts=tuple(dict.fromkeys(
                (agg.explanation.conflicts if agg.explanation else ())
                + (dis.explanation.conflicts if dis.explanation else ()))),
            nearest={**(agg.explanation.nearest if agg.explanation else {}),
                     **(dis.explanation.nearest if dis.explanation else {})})
    space = {**chosen.search_space, "serving": "best"}
    return chosen.model_copy(update={
        "status": status, "bound": bound,
        "gap": None if bound is None or chosen.objective is None else
        max(0.0, (chosen.objective - bound) / chosen.objective),
        "solve_time_s": time.monotonic() - start, "comparison": comparison,
        "explanation": explanation, "search_space": space,
        "tie_breaks_proved": chosen.tie_breaks_proved if status == "OPTIMAL" else (),
    })


def solve_serving(instance: Instance, **kwargs) -> SolveResult:
    """The entry point for ``serving: disaggregated | best`` (:func:`solver.planner.solve`
    dispatches here)."""
    if instance.serving == "best":
        return solve_best(instance, **kwargs)
    return solve_disaggregated(instance, **kwargs)
