"""The plan space's grids in order of GPUs per instance, costed once each (:class:`GridBank`),
and the candidates of those grids bounded under one set of goals (:class:`Pool`).

A grid is listed, then admitted by the vectorised pre-bounds of its stage profile (shared by
every pipeline depth), then costed over every ``s`` and turned into bounded candidates; grids
that replicas of a smaller grid dominate never enter (docs/solver.md, "Dominance").
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from solver.estimate import Prepared
from solver.planner.bounds import excluded_tp_cp, size_cap
from solver.planner.candidates import INF, Candidate, GridCost, cost_grid
from solver.planner.cpsat import Cancelled, check_stop
from solver.planner.goals import Goals
from solver.planner.placements import Placements
from solver.planner.prebound import StageProfile, profile_admits, stage_profile, viable_s
from solver.schema import MAX_GPUS, Grid, divisors

#: Grids bounded between two deadline checks.
CHECK_EVERY = 64


class GridBank:
    """Grids of the plan space in order of GPUs per instance, each costed once on first use;
    shared by every goal variant of one solve (explanations re-bound the same candidates).
    Grids that replicas of a smaller grid dominate are left out (docs/solver.md, "Dominance")."""

    def __init__(self, prep: Prepared, placements: Placements, *, lower: bool = False):
        self.prep = prep
        self.placements = placements
        self.lower = lower
        self.done = 0  # every grid with gpus_per_instance <= done is listed
        self.grids: list[Grid] = []  # in increasing order of gpus_per_instance
        self._costs: dict[Grid, GridCost] = {}
        self._profiles: dict[Grid, StageProfile] = {}
        self.eps: set[tuple[int, int]] = set()
        s = prep.instance.search
        self._replicas_free = "replicas" not in s.fix and not s.forbid.get("replicas")

    def listed_upto(self, limit: int, deadline: float,
                    should_stop: Callable[[], bool] | None) -> bool:
        """List every grid up to ``limit`` GPUs per instance; False when the deadline came
        first (then ``done`` says how far it got)."""
        space = self.prep.space
        limit = min(limit, MAX_GPUS)
        while self.done < limit:
            if time.monotonic() >= deadline:
                return False
            if should_stop is not None and should_stop():
                raise Cancelled("the solve was cancelled")
            n = space.next_size_above(self.done, limit)
            if n is None:
                self.done = limit
                break
            self.grids.extend(g for g in space.grids(n) if not self._dominated(g))
            self.done = n
        return True

    def cost(self, grid: Grid) -> GridCost:
        gc = self._costs.get(grid)
        if gc is None:
            prep = self.prep
            red = prep.space.redundant(grid.ep)
            hot = {}
            if prep.moe_layers:
                hot = self.placements.hot(grid.ep, red, lower=self.lower)
                self.eps.add((grid.ep, red))
            q_range = prep.space.q_range(grid)
            assert q_range is not None  # space.grids lists only grids with a batch
            gc = self._costs[grid] = cost_grid(prep, grid, hot, red, q_range)
        return gc

    def hot(self, grid: Grid) -> dict:
        prep = self.prep
        if not prep.moe_layers:
            return {}
        red = prep.space.redundant(grid.ep)
        self.eps.add((grid.ep, red))
        return self.placements.hot(grid.ep, red, lower=self.lower)

    def profile(self, grid: Grid) -> StageProfile:
        """The stage profile every pipeline depth of ``grid``'s stage shares."""
        key = grid._replace(pp=1)
        p = self._profiles.get(key)
        if p is None:
            p = self._profiles[key] = stage_profile(self.prep, key, self.hot(grid))
        return p

    def _dominated(self, g: Grid) -> bool:
        """Whether ``k`` replicas of a smaller grid do everything ``g`` does: ``dp = k·dp'`` and
        ``edp = k·edp'`` with the same tp, cp, pp, ep and etp gives identical per-GPU step
        times, memory, TTFT and rates, and a pipeline hop no faster. It holds when the smaller
        grid is in the space with every batch per rank ``g`` has, and replica counts are
        unrestricted."""
        if g.edp == 1 or not self._replicas_free:
            return False
        space = self.prep.space
        q_range = space.q_range(g)
        if q_range is None:
            return True
        red = space.redundant(g.ep)
        for k in divisors(math.gcd(g.dp, g.edp))[1:]:
            small = g._replace(dp=g.dp // k, edp=g.edp // k)
            small_q = space.q_range(small)
            if small_q is None or small_q[0] > q_range[0] or small_q[1] < q_range[1]:
                continue
            if space.violations(small, small.dp * q_range[0], red):
                continue
            return True
        return False

    def next_size(self, exclude: frozenset[tuple[int, int]] = frozenset()) -> int:
        """A lower bound on the GPUs per instance of every grid not listed yet (outside the
        excluded ``(tp, cp)`` pairs)."""
        nxt = self.prep.space.next_size_above(self.done, exclude=exclude)
        return INF if nxt is None else nxt


class Pool:
    """The candidates of a bank bounded under one set of goals."""

    def __init__(self, bank: GridBank, goals: Goals):
        self.bank = bank
        self.goals = goals
        self.size_cap = size_cap(bank.prep, goals)
        self.excluded = frozenset(excluded_tp_cp(bank.prep, goals))
        s = bank.prep.instance.search
        self.fixed_r = s.fix.get("replicas")
        self.forbidden = tuple(s.forbid.get("replicas", ())) if self.fixed_r is None else ()
        self.cands: list[Candidate] = []  # bounded, in bank order
        self._seen = 0

    def upto(self, limit: int, deadline: float,
             should_stop: Callable[[], bool] | None, cutoff: int | None = None) -> bool:
        """Bound every grid up to ``limit`` GPUs per instance; with ``cutoff`` (the best plan's
        GPUs: it only falls) leave out candidates whose every plan has more GPUs than that."""
        complete = self.bank.listed_upto(min(limit, self.size_cap), deadline, should_stop)
        bank = self.bank
        # no plan may exceed max GPUs either: the same vectorised replica bound drops grids whose
        # every plan would
        cap = min(self.goals.max_gpus or MAX_GPUS, MAX_GPUS)
        cutoff = cap if cutoff is None else min(cutoff, cap)
        while self._seen < len(bank.grids):
            check_stop(should_stop)  # a grid may cost a placement: check each one
            if self._seen % CHECK_EVERY == 0 and time.monotonic() >= deadline:
                return False
            grid = bank.grids[self._seen]
            self._seen += 1
            if (grid.tp, grid.cp) in self.excluded or (
                    self.goals.max_gpus is not None
                    and grid.gpus_per_instance > self.goals.max_gpus):
                continue
            prep = bank.prep
            if not profile_admits(bank.profile(grid), grid, prep.space.q_range(grid), self.goals,
                                  prep.cm.memory_budget, prep.cm.budget,
                                  (prep.instance.workload.input_len,
                                   prep.instance.workload.max_input,
                                   prep.instance.workload.output_len), prep.cm.overhead_ns,
                                  self.fixed_r, cutoff):
                continue
            gc = bank.cost(grid)
            for s in viable_s(gc, self.goals, self.fixed_r, cutoff):
                c = Candidate(gc, int(s)).bounded(self.goals, self.fixed_r, self.forbidden)
                if c is not None and (cutoff is None or c.caps.gpu_lb <= cutoff):
                    self.cands.append(c)
        return complete

    def lb_outside(self) -> int:
        """A lower bound on the GPUs of every candidate not generated yet (none beyond the size
        cap can meet the goals)."""
        if self.bank.done >= self.size_cap:
            return INF
        return self.bank.next_size(self.excluded)

