"""The planner: fewest GPUs, then most output tokens/s per GPU, then lowest TTFT.

Modules, in the order a solve uses them:

- :mod:`~solver.planner.goals`: the targets as exact integers;
- :mod:`~solver.planner.placements`: expert placement per (ep, redundant slots), by the CP-SAT
  placement sub-model;
- :mod:`~solver.planner.candidates`: grids of the plan space costed over their batches, bounded;
- :mod:`~solver.planner.partition`: exact contiguous partitions when one stage time is bounded;
- :mod:`~solver.planner.model`: the CP-SAT model, one variable container per candidate;
- :mod:`~solver.planner.search`: the lexicographic search and its proofs;
- :mod:`~solver.planner.explain`: why an instance is infeasible.

Every returned plan is re-checked by :func:`solver.verify.verify` and re-costed by
:func:`solver.estimate.evaluate`; a disagreement raises :class:`PlannerError`. docs/solver.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ortools import __version__ as ORTOOLS_VERSION

from solver.estimate import Prepared, evaluate
from solver.loads import describe
from solver.planner.explain import explain
from solver.planner.goals import Goals
from solver.planner.model import Choice
from solver.planner.partition import bounds_of
from solver.planner.placements import Placements
from solver.planner.search import (
    Cancelled,
    GridBank,
    Outcome,
    Pool,
    fewest_gpus,
    tie_breaks,
)
from solver.schema import (
    Instance,
    LayerPlacement,
    Plan,
    SolveResult,
    Stage,
)
from solver.verify import verify

__all__ = ["Cancelled", "PlannerError", "TIE_BREAKS", "solve"]

TIE_BREAKS = (
    "fewest total GPUs",
    "most output tokens/s per GPU",
    "lowest TTFT",
)
#: Time for explaining an infeasible instance: this share of the time limit, within [min, max].
EXPLAIN_BUDGET_SHARE = 0.05
EXPLAIN_BUDGET_MIN_S = 0.5
EXPLAIN_BUDGET_MAX_S = 5.0
SOLVER_NAME = f"ortools-cpsat {ORTOOLS_VERSION}"


class PlannerError(RuntimeError):
    """The planner produced a plan the verifier rejects or the estimator prices differently:
    a bug, reported loudly."""


def plan_of(choice: Choice, placements: Placements, prep: Prepared) -> Plan:
    c = choice.cand
    g = c.grid
    placement = None
    if prep.moe_layers:
        placement = tuple(LayerPlacement(layer=layer, ranks=ranks) for layer, ranks in
                          placements.ranks(g.ep, c.redundant).items())
    return Plan(
        degrees=g.degrees(choice.replicas),
        batch=c.batch(choice.q),
        redundant_experts=c.redundant if prep.moe_layers else None,
        stages=tuple(Stage(first_layer=a, last_layer=b) for a, b in bounds_of(c,
                                                                            list(choice.cuts))),
        placement=placement,
    )


def _advice(status: str, prep: Prepared, time_limit_s: float, workers: int) -> str:
    if status not in ("UNKNOWN", "FEASIBLE"):
        return ""
    tips = [f"raise the time limit (now {time_limit_s:g} s)"]
    if workers < 8:
        tips.append(f"give CP-SAT more workers (now {workers})")
    if prep.space.restricted():
        tips.append("or narrow the search with search.fix / max_pp")
    else:
        tips.append("or narrow the search (search.fix, max_pp, a batch range)")
    what = ("before any plan was found" if status == "UNKNOWN"
            else "before the GPU count was proved minimal")
    return f"The time limit ended the search {what}: " + ", ".join(tips) + "."


def solve(
    instance: Instance,
    *,
    time_limit_s: float | None = None,
    workers: int | None = None,
    on_improvement: Callable[[SolveResult], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> SolveResult:
    """Plan ``instance`` with the fewest GPUs; see docs/solver.md.

    ``on_improvement`` receives a FEASIBLE :class:`SolveResult` for each improving plan; the final
    answer is the return value. ``should_stop`` is polled during the search; when it turns true
    the solve raises :class:`Cancelled`.

    ``serving: disaggregated`` or ``best`` instances go to the two-pool planner
    (:mod:`solver.planner.disagg`); the answer says which kind of plan it holds."""
    if instance.serving != "aggregated":
        from solver.planner.disagg import solve_serving

        return solve_serving(instance, time_limit_s=time_limit_s, workers=workers,
                             on_improvement=on_improvement, should_stop=should_stop)
    start = time.monotonic()
    search = instance.search.with_limits(time_limit_s, workers)
    deadline = start + search.time_limit_s
    prep = Prepared(instance)
    goals = Goals.of(instance.workload.targets)
    placements = Placements(prep, search.workers, search.random_seed, deadline)
    bank = GridBank(prep, placements)
    pool = Pool(bank, goals)
    common = {"solver": SOLVER_NAME, "tie_breaks": TIE_BREAKS,
              "search_space": prep.space.restrictions(),
              "expert_load": describe(instance.expert_load, instance.model)}

    hook = None
    if on_improvement is not None:
        def hook(choice: Choice, bound: int) -> None:
            plan = plan_of(choice, placements, prep)
            on_improvement(SolveResult(
                status="FEASIBLE", plan=plan, metrics=evaluate(prep, plan).metrics,
                objective=choice.gpus, bound=min(bound, choice.gpus),
                gap=max(0.0, (choice.gpus - bound) / choice.gpus),
                solve_time_s=time.monotonic() - start, **common))

    outcome = fewest_gpus(pool, deadline, search.workers, search.random_seed, should_stop, hook)
    if outcome.choice is None:
        explanation = None
        if outcome.status == "INFEASIBLE":
            budget = min(EXPLAIN_BUDGET_MAX_S,
                         max(EXPLAIN_BUDGET_MIN_S, EXPLAIN_BUDGET_SHARE * search.time_limit_s))
            # Past the solve's deadline by at most EXPLAIN_BUDGET_MIN_S.
            now = time.monotonic()
            until = min(now + budget, max(deadline, now + EXPLAIN_BUDGET_MIN_S))
            explanation = explain(bank, goals, deadline=until,
                                  workers=search.workers, seed=search.random_seed,
                                  should_stop=should_stop)
        return SolveResult(
            status=outcome.status, solve_time_s=time.monotonic() - start,
            explanation=explanation, bound=outcome.bound, improving_solutions=outcome.improving,
            advice=_advice(outcome.status, prep, search.time_limit_s, search.workers), **common)

    if outcome.status == "OPTIMAL":
        outcome = tie_breaks(pool, outcome, deadline, search.workers, search.random_seed,
                             should_stop)
    outcome = _placement_bound(outcome, prep, placements, bank, goals, deadline, search,
                               should_stop)
    choice = outcome.choice
    assert choice is not None
    plan = plan_of(choice, placements, prep)
    report = verify(prep, plan)
    if not report.valid:
        raise PlannerError("planner returned a plan the verifier rejects: "
                           + "; ".join(str(v) for v in report.violations))
    ev = report.evaluation
    assert ev is not None
    m, f = choice.times
    c = choice.cand
    if (ev.result.tpot_ns, ev.result.ttft_ns) != (c.tpot(m), c.ttft(f, m)):
        raise PlannerError(f"planner and estimator disagree on {plan.degrees.short()} batch "
                           f"{plan.batch}: TPOT {c.tpot(m)} vs {ev.result.tpot_ns} ns, TTFT "
                           f"{c.ttft(f, m)} vs {ev.result.ttft_ns} ns")
    experts = placements.experts(c.grid.ep, c.redundant)
    bound = outcome.bound
    gap = None if bound is None else max(0.0, (choice.gpus - bound) / choice.gpus)
    return SolveResult(
        status=outcome.status, plan=plan, metrics=ev.metrics, objective=choice.gpus,
        bound=bound, gap=gap, solve_time_s=time.monotonic() - start,
        tie_breaks_proved=tuple(outcome.proved), experts=experts,
        improving_solutions=outcome.improving,
        advice=_advice(outcome.status, prep, search.time_limit_s, search.workers), **common)


def _placement_bound(outcome: Outcome, prep: Prepared, placements: Placements, bank: GridBank,
                     goals: Goals, deadline: float, search, should_stop) -> Outcome:
    """MoE times use each placement's busiest rank. When a placement used by a costed grid is
    not proved optimal, the GPU count is proved only against the same search with every busiest
    rank replaced by its proved lower bound (the cost model is monotone in that load)."""
    if outcome.status != "OPTIMAL" or not prep.moe_layers:
        return outcome
    if all(placements.all_optimal(ep, red) for ep, red in bank.eps):
        return outcome
    lower = GridBank(prep, placements, lower=True)
    lb = fewest_gpus(Pool(lower, goals), max(deadline, time.monotonic() + 0.5), search.workers,
                     search.random_seed, should_stop)
    bound = lb.choice.gpus if lb.status == "OPTIMAL" and lb.choice else lb.bound
    if bound is None or bound < outcome.choice.gpus:
        outcome.status = "FEASIBLE"
        outcome.bound = bound if bound is not None else 1
        outcome.proved = []
    return outcome
