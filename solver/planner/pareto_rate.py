"""The rate frontier: output tokens/s per GPU against tokens/s per user (docs/pareto.md).

Each point is the lexicographic optimum *most tokens/s per GPU, then most tokens/s per user*
among the plans with ``TPOT <= τ`` (tokens/s per user ``>= 1/τ``) that meet every other target
of the instance; the concurrency (batch) is free, as it is the knob of this trade-off
(``--batch`` fixes a range). The next point's ``τ`` lies strictly below this point's TPOT, so
every point has strictly more tokens/s per user and (by the lexicographic optimum) strictly fewer
tokens/s per GPU than the one before: the points are mutually non-dominated.

:class:`RateSearch` reuses the planner's pieces (docs/solver.md): the plan space, the costed
grids and candidates, the exact partition routines and the one-candidate CP-SAT model
(:func:`solver.planner.search.cpsat_one`) for TTFT-coupled candidates. Tokens/s per GPU does not
depend on the replica count, so instead of growing a GPU budget the search goes best-first over
the units of :mod:`solver.planner.pareto_units` in decreasing order of their bound; a unit whose
bound is below the best plan found cannot hold a better one, so the search stops at the first
such unit and the optimum is proved over every unit (inside a unit, every candidate and batch is
bounded the same way and the rest solved exactly).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from fractions import Fraction

from solver import timing
from solver.estimate import Prepared
from solver.instance import InputError
from solver.planner.bank import GridBank, Pool
from solver.planner.candidates import INF, Candidate, GridCost
from solver.planner.cpsat import check_stop
from solver.planner.goals import Goals
from solver.planner.model import Choice
from solver.planner.pareto_units import rate_units
from solver.planner.partition import least_slowest
from solver.planner.placements import Placements
from solver.planner.prebound import viable_s
from solver.planner.search import cpsat_one
from solver.schema import MAX_BATCH, BatchRange, Instance, Plan

__all__ = ["DEFAULT_POINTS", "DEFAULT_STEP", "Frontier", "Point", "RateSearch",
           "frontier_instance", "rate_frontier"]

#: Default number of points and the factor between consecutive TPOT caps.
DEFAULT_POINTS = 16
DEFAULT_STEP = 0.95
#: Single-stage units solved first for a quick incumbent.
SEED_UNITS = 8


@dataclass
class Point:
    """One plan of the frontier and the constraint it is optimal for."""

    plan: Plan
    rate_per_gpu: Fraction
    tpot_ns: int
    ttft_ns: int
    tpot_cap_ns: int | None
    proved: bool

    @property
    def tokens_per_s_per_user(self) -> float:
        return timing.NS_PER_S / self.tpot_ns


@dataclass
class Frontier:
    instance: Instance  # the instance the points were planned for (its batch free)
    points: list[Point] = field(default_factory=list)
    complete: bool = False  # the steps reached an infeasible cap (or the point limit)
    stopped: str = ""


def frontier_instance(instance: Instance, batch: tuple[int, int] | None = None) -> Instance:
    """The instance the rate frontier plans for: the batch free (``[1, MAX_BATCH]``, or the
    given range)."""
    lo, hi = batch if batch is not None else (1, MAX_BATCH)
    workload = instance.workload.model_copy(update={"batch": BatchRange(min=lo, max=hi)})
    return instance.model_copy(update={"workload": workload})


def _refuse_restricted_replicas(instance: Instance) -> None:
    s = instance.search
    if "replicas" in s.fix or s.forbid.get("replicas"):
        raise InputError("search.fix.replicas: the frontier is per GPU and per user, which the "
                         "replica count does not change; leave replicas free for pareto",
                         "search.fix.replicas")


class RateSearch:
    """Best-first search for the lexicographic (tokens/s per GPU, tokens/s per user) optimum
    under a TPOT cap, over one prepared instance; costs, placements and solved batches are
    kept across caps (the warm start)."""

    def __init__(self, instance: Instance, deadline: float, workers: int, seed: int,
                 should_stop: Callable[[], bool] | None = None):
        _refuse_restricted_replicas(instance)
        self.prep = Prepared(instance)
        self.deadline = deadline
        self.workers, self.seed = workers, seed
        self.should_stop = should_stop
        self.goals = Goals.of(instance.workload.targets)
        # m*(grid, s, q): the least slowest stage meeting memory and TTFT, independent of the
        # TPOT cap and the rate targets (which only filter it)
        self.base = replace(self.goals, tpot_ns=None, min_rate_per_gpu=None)
        if not (self.goals.max_gpus and self.goals.min_rate_total):
            self.base = replace(self.base, min_rate_total=None)
        self.placements = Placements(self.prep, workers, seed, deadline)
        self.bank = GridBank(self.prep, self.placements)
        self.pool = Pool(self.bank, self.base)
        self._mstar: dict[tuple, tuple[int, tuple[int, ...], bool] | None] = {}
        self.units = rate_units(self.prep, self.goals, self.placements, should_stop)
        self.exact = True

    def _least(self, gc: GridCost, s: int, q: int
               ) -> tuple[int, tuple[int, ...], bool] | None:
        """The least slowest stage of (grid, s) at ``q`` with a partition meeting memory and
        TTFT, its stage starts, and whether that is proved."""
        key = (gc.grid, s, q)
        if key in self._mstar:
            return self._mstar[key]
        c = Candidate(gc, s).bounded(self.base, None, ())
        got: tuple[int, tuple[int, ...], bool] | None = None
        if c is not None and c.caps.q_lo <= q <= c.caps.q_hi:
            least = least_slowest(c, q, INF)
            if least is not None:
                m, cuts = least
                if c.meets(self.base, q, m, c.times(cuts)[1]):
                    got = (m, tuple(cuts), True)
                else:  # TTFT couples the stage times: CP-SAT decides
                    choice, ok = cpsat_one(c, q, 1, self.pool, self.deadline, self.workers,
                                           self.seed, self.should_stop, "slowest")
                    if choice is not None:
                        got = (choice.times[0], choice.cuts, ok)
                    elif not ok:
                        self.exact = False
                    if choice is not None and not ok:
                        self.exact = False
        self._mstar[key] = got
        return got

    def best(self, tpot_cap: int | None) -> Point | None:
        """The lexicographic optimum under ``tpot_cap`` (None: no cap but the instance's)."""
        goals = self.goals
        cap = tpot_cap if goals.tpot_ns is None else min(
            goals.tpot_ns, tpot_cap if tpot_cap is not None else goals.tpot_ns)
        capped = replace(goals, tpot_ns=cap)
        order = sorted(((u.bound(cap), i) for i, u in enumerate(self.units)), reverse=True)
        # A quick incumbent first: the most promising single-stage units, whose batches need no
        # partition search; then every unit in bound order (the proof).
        seeds = [(ub, i) for ub, i in order if self.units[i].grid.pp == 1][:SEED_UNITS]
        best_key: tuple[Fraction, int] | None = None
        best: tuple[Candidate, int, int, tuple[int, ...], int] | None = None
        self.exact = True
        done: set[int] = set()
        for ub, i in seeds + order:
            check_stop(self.should_stop)
            if ub < 0 or (best_key is not None and ub < best_key[0]):
                if (ub, i) in seeds:
                    continue
                break
            if i in done:
                continue
            done.add(i)
            if time.monotonic() >= self.deadline:
                self.exact = False
                break
            unit = self.units[i]
            gc = self.bank.cost(unit.grid)
            for s in viable_s(gc, capped):
                c = Candidate(gc, int(s)).bounded(capped, None, ())
                if c is None or (best_key is not None and c.rate_per_gpu_ub() < best_key[0]):
                    continue
                for q in range(c.caps.q_hi, c.caps.q_lo - 1, -1):
                    if best_key is not None and c.rate_per_gpu(q, c.slowest_lb) < best_key[0]:
                        break
                    got = self._least(gc, int(s), q)
                    if got is None:
                        continue
                    m, cuts, proved = got
                    self.exact = self.exact and proved
                    tpot = c.tpot(m)
                    if cap is not None and tpot > cap:
                        continue
                    if not c.meets(capped, q, m, c.times(list(cuts))[1]):
                        continue
                    replicas = 1
                    if goals.min_rate_total is not None:
                        r = c.replicas_for(goals, q, m, (), None)
                        if r is None:
                            continue
                        replicas = r
                    key = (c.rate_per_gpu(q, m), -tpot)
                    if best_key is None or key > best_key:
                        best_key, best = key, (c, q, m, cuts, replicas)
        if best is None:
            return None
        c, q, m, cuts, replicas = best
        from solver.planner import plan_of

        choice = Choice(c, cuts, q, replicas)
        plan = plan_of(choice, self.placements, self.prep)
        return Point(plan=plan, rate_per_gpu=best_key[0], tpot_ns=c.tpot(m),
                     ttft_ns=c.ttft(choice.times[1], m), tpot_cap_ns=tpot_cap,
                     proved=self.exact and self.placements.clock_free())


def rate_frontier(instance: Instance, *, points: int = DEFAULT_POINTS, step: float = DEFAULT_STEP,
                  time_limit_s: float = 60.0, batch: tuple[int, int] | None = None,
                  workers: int | None = None,
                  on_point: Callable[[Point], None] | None = None,
                  should_stop: Callable[[], bool] | None = None) -> Frontier:
    """Up to ``points`` points of the tokens/s per GPU against tokens/s per user frontier, from
    the most tokens/s per GPU (under the instance's own TPOT target) towards more tokens/s per
    user: each next TPOT cap is ``step`` times the last one's, and always below the last
    point's TPOT."""
    if not 0 < step < 1:
        raise InputError(f"step: must be in (0, 1), got {step}", "step")
    if points < 1:
        raise InputError(f"points: must be at least 1, got {points}", "points")
    inst = frontier_instance(instance, batch)
    deadline = time.monotonic() + time_limit_s
    search = RateSearch(inst, deadline, workers or inst.search.workers, inst.search.random_seed,
                        should_stop)
    out = Frontier(inst)
    cap: int | None = None
    while len(out.points) < points:
        if time.monotonic() >= deadline:
            out.stopped = "time limit"
            return out
        point = search.best(cap)
        if point is None:
            out.complete = search.exact
            out.stopped = "no plan is faster" if search.exact else "time limit"
            return out
        if out.points and not (point.rate_per_gpu < out.points[-1].rate_per_gpu
                               and point.tpot_ns < out.points[-1].tpot_ns):
            raise RuntimeError("frontier points out of order (a bug)")
        out.points.append(point)
        if on_point is not None:
            on_point(point)
        nxt = math.floor(point.tpot_ns * step) if cap is None else math.floor(cap * step)
        cap = min(point.tpot_ns - 1, nxt)
        if cap < 1:
            break
    out.complete = True
    out.stopped = f"{points} points"
    return out
