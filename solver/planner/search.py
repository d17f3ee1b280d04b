"""The lexicographic search: fewest GPUs, then most output tokens/s per GPU, then lowest TTFT.

**Fewest GPUs** (branch and bound over candidates, levels of a GPU budget ``Λ``). Candidates come
in increasing order of GPUs per instance, a valid lower bound on their GPUs; bounded under the
goals, each carries a tighter valid lower bound ``gpu_lb``. Every candidate whose bound is at most
``Λ`` is *resolved*: for each batch of its bucket, the exact partition routine
(:mod:`solver.planner.partition`) gives the least slowest stage, hence the fewest replicas — exact
unless the TTFT target couples the two stage times. Candidates not resolved exactly and whose
bound is below the best plan found go to one CP-SAT model (:mod:`solver.planner.model`) that
minimises GPUs over all of them. The answer is OPTIMAL when its GPUs are at most the least bound
of everything not resolved: every plan left has at least that many GPUs. Otherwise ``Λ`` grows.

**Tie-breaks** among plans with those GPUs: best-first over candidates in decreasing order of an
upper bound on their tokens/s per GPU, exact per candidate (the partition routine, or a
one-candidate CP-SAT model when TTFT couples), stopping when no bound can beat the best found;
then the least TTFT among plans with that rate.

Every phase checks one deadline, every CP-SAT call gets what is left of it, and a watchdog stops
a call that overruns or is cancelled. docs/solver.md has the proofs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction

from ortools.sat.python import cp_model

from solver import timing
from solver.planner.bank import CHECK_EVERY, GridBank, Pool
from solver.planner.bounds import gpu_floor, unreachable
from solver.planner.candidates import INF, Candidate
from solver.planner.cpsat import WATCHDOG_GRACE_S, Cancelled, check_stop, run_cpsat, watchdog
from solver.planner.goals import Goals
from solver.planner.model import Choice, PlannerModel
from solver.planner.partition import least_full, least_slowest

__all__ = ["CHECK_EVERY", "WATCHDOG_GRACE_S", "Cancelled", "GridBank", "Outcome", "Pool",
           "best_rate", "check_stop", "cpsat_one", "fewest_gpus", "key", "resolve", "run_cpsat",
           "slowest_cap", "tie_breaks", "watchdog"]


# ----------------------------------------------------------------------------------------------
# Resolving one candidate
# ----------------------------------------------------------------------------------------------


@dataclass
class Resolved:
    """The best a candidate does for the GPU objective, and whether that is proved."""

    choice: Choice | None
    exact: bool


def slowest_cap(c: Candidate, goals: Goals, q: int, replicas: int | None = None) -> int:
    """The largest slowest stage the goals allow at ``q`` (and ``replicas``, when the total rate
    must be met with that many)."""
    pp, hop, o = c.pp, c.hop_avg, c.gc.overhead
    cap = c.caps.slowest_cap if goals.min_rate_per_gpu is None else INF
    if goals.tpot_ns is not None:
        cap = min(cap, timing.max_slowest_for_tpot(goals.tpot_ns, pp, hop, o))
    if goals.min_rate_per_gpu is not None:
        cap = min(cap, timing.max_slowest_for_rate(c.batch(q), c.gpi, goals.min_rate_per_gpu,
                                                   pp, hop, o))
    if replicas is not None and goals.min_rate_total is not None:
        cap = min(cap, timing.max_slowest_for_replicas(replicas, c.batch(q),
                                                       goals.min_rate_total, pp, hop, o))
    return cap


def resolve(c: Candidate, pool: Pool) -> Resolved:
    """Fewest GPUs of candidate ``c``: for each ``q`` the least slowest stage (exact) gives the
    fewest replicas; exact unless the TTFT target binds on that partition."""
    goals, caps = pool.goals, c.caps
    best: Choice | None = None
    exact = True
    for q in range(caps.q_hi, caps.q_lo - 1, -1):
        cap = slowest_cap(c, goals, q)
        got = least_slowest(c, q, cap)
        if got is None:
            continue  # no partition meets memory and the caps, with or without TTFT
        m, cuts = got
        f = c.times(cuts)[1]
        if not c.meets(goals, q, m, f):
            exact = False  # the TTFT target binds: CP-SAT decides this candidate
            alt = least_full(c, q, cap)
            if alt is None:
                continue
            f, cuts = alt
            m = c.times(cuts)[0]
            if not c.meets(goals, q, m, f):
                continue
        r = c.replicas_for(goals, q, m, pool.forbidden, pool.fixed_r)
        if r is None:
            continue
        choice = Choice(c, tuple(cuts), q, r)
        if best is None or choice.gpus < best.gpus:
            best = choice
        if best.gpus == caps.gpu_lb and exact:
            break  # meets the candidate's own lower bound
    return Resolved(best, exact)


# ----------------------------------------------------------------------------------------------
# Phase 1: fewest GPUs
# ----------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    status: str  # OPTIMAL | FEASIBLE | INFEASIBLE | UNKNOWN
    choice: Choice | None = None
    bound: int | None = None
    improving: int = 0
    proved: list[str] = field(default_factory=list)


ImprovementHook = Callable[[Choice, int], None]


class _Stream(cp_model.CpSolverSolutionCallback):
    """Reports each improving plan CP-SAT finds and stops the search when asked."""

    def __init__(self, pm: PlannerModel, on_plan: Callable[[Choice], None],
                 should_stop: Callable[[], bool] | None):
        super().__init__()
        self.pm, self.on_plan, self.should_stop = pm, on_plan, should_stop

    def on_solution_callback(self) -> None:
        self.on_plan(self.pm.extract(self))
        if self.should_stop is not None and self.should_stop():
            self.stop_search()


def key(choice: Choice) -> tuple:
    """The lexicographic objective of a plan (smaller is better)."""
    c = choice.cand
    m, f = choice.times
    return (choice.gpus, -c.rate_per_gpu(choice.q, m), c.ttft(f, m))


def fewest_gpus(pool: Pool, deadline: float, workers: int, seed: int,
                should_stop: Callable[[], bool] | None,
                hook: ImprovementHook | None = None) -> Outcome:
    if unreachable(pool.bank.prep, pool.goals) is not None:
        return Outcome("INFEASIBLE")
    floor = gpu_floor(pool.bank.prep, pool.goals)  # every plan has at least this many GPUs
    best: Choice | None = None
    improving = 0
    residual: list[Candidate] = []
    residual_lb = INF  # proved bound on the GPUs of the residual candidates
    resolved = 0  # pool.cands[:resolved] have been resolved (or skipped)
    limit = max(1, pool.bank.prep.space.next_size_above(0) or 1)

    def offer(choice: Choice, bound: int) -> None:
        nonlocal best, improving
        if best is None or key(choice) < key(best):
            if best is None or choice.gpus < best.gpus:
                improving += 1
                if hook is not None:
                    hook(choice, bound)
            best = choice

    while True:
        complete = pool.upto(limit, deadline, should_stop,
                             None if best is None else best.gpus)
        order = sorted(range(resolved, len(pool.cands)), key=lambda i: pool.cands[i].caps.gpu_lb)
        fresh = [pool.cands[i] for i in order]
        resolved = len(pool.cands)
        for n, c in enumerate(fresh):
            check_stop(should_stop)
            if time.monotonic() >= deadline:
                complete = False
                residual.extend(fresh[n:])
                break
            if best is not None and c.caps.gpu_lb >= best.gpus:
                continue  # cannot beat the best plan
            r = resolve(c, pool)
            if not r.exact:
                residual.append(c)
            if r.choice is not None:
                offer(r.choice, min(r.choice.gpus, c.caps.gpu_lb))
        outside = pool.lb_outside() if complete else min(pool.bank.done + 1, limit + 1)
        # CP-SAT decides the candidates the partition routine could not, when they could win.
        open_ = [c for c in residual if best is None or c.caps.gpu_lb < best.gpus]
        residual = open_
        if open_ and time.monotonic() < deadline:
            pm = PlannerModel(open_, pool.goals, pool.forbidden)
            pm.model.minimize(pm.gpus_expr())
            if best is not None and best.cand in open_:
                pm.hint(best)
            stream = _Stream(pm, lambda ch: offer(ch, ch.gpus), should_stop)
            solver, status = run_cpsat(pm.model, deadline, workers, seed, should_stop, stream)
            if status == cp_model.OPTIMAL:
                offer(pm.extract(solver), int(solver.objective_value))
                residual_lb = int(round(solver.objective_value))
                residual = []
            elif status == cp_model.INFEASIBLE:
                residual_lb, residual = INF, []
            elif status == cp_model.FEASIBLE:
                offer(pm.extract(solver), int(round(solver.best_objective_bound)))
                residual_lb = int(solver.best_objective_bound + 1 - 1e-9)
            else:
                residual_lb = min(c.caps.gpu_lb for c in open_)
        elif open_:
            residual_lb = min(c.caps.gpu_lb for c in open_)
        else:
            residual_lb = INF
        bound = max(min(outside, residual_lb), floor)
        if best is not None and best.gpus <= bound:
            return Outcome("OPTIMAL", best, best.gpus, improving, ["fewest total GPUs"])
        if best is None and bound >= INF:
            return Outcome("INFEASIBLE", improving=improving)
        if time.monotonic() >= deadline:
            lb = bound if best is None else min(bound, best.gpus)
            return Outcome("FEASIBLE" if best else "UNKNOWN", best,
                           None if lb >= INF else lb, improving)
        limit = best.gpus if best is not None else max(outside, 2 * limit)


# ----------------------------------------------------------------------------------------------
# Phases 2 and 3: most tokens/s per GPU, then lowest TTFT, at the proved GPU count
# ----------------------------------------------------------------------------------------------


def _at_gpus(pool: Pool, gpus: int) -> list[tuple[Candidate, int]]:
    """Candidates that can be deployed with exactly ``gpus`` GPUs, with their replica count."""
    out = []
    for c in pool.cands:
        if gpus % c.gpi:
            continue
        r = gpus // c.gpi
        if c.caps.gpu_lb <= gpus and c.caps.r_min <= r and r not in pool.forbidden and (
                pool.fixed_r is None or r == pool.fixed_r):
            out.append((c, r))
    return out


def best_rate(c: Candidate, r: int, pool: Pool, deadline: float, workers: int, seed: int,
              should_stop: Callable[[], bool] | None) -> tuple[Choice | None, bool]:
    """The plan of ``c`` with ``r`` replicas with the most tokens/s per GPU; whether proved."""
    goals = pool.goals
    best: Choice | None = None
    proved = True
    for q in range(c.caps.q_hi, c.caps.q_lo - 1, -1):
        if best is not None and c.rate_per_gpu(q, c.slowest_lb) <= c.rate_per_gpu(
                best.q, best.times[0]):
            continue
        cap = slowest_cap(c, goals, q, r)
        got = least_slowest(c, q, cap)
        if got is None:
            continue
        m, cuts = got
        choice: Choice | None = Choice(c, tuple(cuts), q, r)
        if not c.meets(goals, q, m, c.times(cuts)[1]):
            choice, ok = cpsat_one(c, q, r, pool, deadline, workers, seed, should_stop,
                                   "slowest")
            proved = proved and ok
        if choice is not None and (best is None or key(choice) < key(best)):
            best = choice
    return best, proved


def cpsat_one(c: Candidate, q: int, r: int, pool: Pool, deadline: float, workers: int,
              seed: int, should_stop, objective: str, slowest_max: int | None = None
              ) -> tuple[Choice | None, bool]:
    """Candidate ``c`` at batch ``q`` and ``r`` replicas by the one-candidate CP-SAT model
    (the TTFT-coupled case): the least slowest stage (``objective="slowest"``) or the least
    round (``"round"``, with ``slowest <= slowest_max``); the plan found or None, and whether
    that answer is proved (OPTIMAL, or None by INFEASIBLE)."""
    pm = PlannerModel([c], pool.goals, pool.forbidden, q=q, replicas=r)
    v = pm.vars[0]
    if slowest_max is not None:
        pm.model.add(v.slowest <= slowest_max)
    pm.model.minimize(pm.slowest_expr() if objective == "slowest" else pm.round_expr())
    solver, status = run_cpsat(pm.model, deadline, workers, seed, should_stop, interleave=True)
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return pm.extract(solver), status == cp_model.OPTIMAL
    return None, status == cp_model.INFEASIBLE


def tie_breaks(pool: Pool, outcome: Outcome, deadline: float, workers: int, seed: int,
               should_stop: Callable[[], bool] | None) -> Outcome:
    assert outcome.choice is not None
    gpus = outcome.choice.gpus
    best = outcome.choice
    cands = _at_gpus(pool, gpus)
    cands.sort(key=lambda cr: cr[0].rate_per_gpu_ub(), reverse=True)
    proved = True
    for c, r in cands:
        check_stop(should_stop)
        if c.rate_per_gpu_ub() < -key(best)[1]:
            break
        if time.monotonic() >= deadline:
            proved = False
            break
        choice, ok = best_rate(c, r, pool, deadline, workers, seed, should_stop)
        proved = proved and ok
        if choice is not None and key(choice) < key(best):
            best = choice
    if not proved:
        outcome.choice = best
        return outcome
    outcome.proved.append("most output tokens/s per GPU")
    # Lowest TTFT among plans with the best rate: the rate fixes q/slowest; least full step.
    target: Fraction = -key(best)[1]
    ttft_proved = True
    for c, r in cands:
        check_stop(should_stop)
        if c.rate_per_gpu_ub() < target:
            break
        for q in range(c.caps.q_hi, c.caps.q_lo - 1, -1):
            if c.rate_per_gpu(q, c.slowest_lb) < target:
                continue
            # the largest slowest stage with exactly this rate per GPU at q
            m_star = _slowest_for_rate(c, q, target)
            if m_star is None:
                continue
            got = least_full(c, q, min(m_star, slowest_cap(c, pool.goals, q, r)))
            if got is None:
                continue
            f, cuts = got
            choice = Choice(c, tuple(cuts), q, r)
            m = choice.times[0]
            if c.rate_per_gpu(q, m) != target:
                continue
            if not c.meets(pool.goals, q, m, f):
                alt, ok = cpsat_one(c, q, r, pool, deadline, workers, seed, should_stop,
                                    "round", slowest_max=m_star)
                ttft_proved = ttft_proved and ok
                if alt is None:
                    continue
                choice = alt
            if key(choice) < key(best):
                best = choice
    if ttft_proved:
        outcome.proved.append("lowest TTFT")
    outcome.choice = best
    return outcome


def _slowest_for_rate(c: Candidate, q: int, rate: Fraction) -> int | None:
    """The slowest stage ``m`` with ``rate_per_gpu(q, m) == rate`` exactly, or None."""
    # rate = batch·1e9 / (tpot(m)·gpi)  =>  tpot(m) = batch·1e9 / (rate·gpi)
    tpot = Fraction(c.batch(q) * timing.NS_PER_S) / (rate * c.gpi)
    if tpot.denominator != 1:
        return None
    per = int(tpot)
    if per % c.pp:
        return None
    m = per // c.pp - c.hop_avg - c.gc.overhead
    return m if m >= c.slowest_lb else None


