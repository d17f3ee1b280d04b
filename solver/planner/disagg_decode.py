"""The decode pool of the two-pool planner (:mod:`solver.planner.disagg`): ``D(r)``, the fewest
decode GPUs over decode plans with at least ``r`` receivers (docs/solver.md, "Two pools").

A decode grid costed over ``s`` is a :class:`~solver.planner.candidates.GridCost` whose steps
are decode-only, and a candidate ``(grid, s)`` is the aggregated
:class:`~solver.planner.candidates.Candidate` with no prefill queue, so the aggregated bounds,
:func:`solver.planner.search.resolve` and the exact partition routine give each candidate's
fewest replicas exactly (TPOT depends on the slowest stage only). :class:`DecodeSearch` goes
over the grids in increasing order of GPUs per instance and stops once the next size exceeds
the best plan's GPUs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from solver import timing
from solver.costmodel import HotRank
from solver.estimate import Prepared
from solver.planner.bounds import step_attention_floor_ns
from solver.planner.candidates import INF, Candidate, GridCost, grid_cost
from solver.planner.cpsat import check_stop
from solver.planner.goals import Goals
from solver.planner.model import Choice
from solver.planner.partition import least_slowest
from solver.planner.placements import Placements
from solver.planner.prebound import PREBOUND_SLACK
from solver.planner.search import resolve, slowest_cap
from solver.pool_space import PoolSpace
from solver.pools import PoolCosts, receivers
from solver.schema import MAX_GPUS, Grid

__all__ = ["CHECK_EVERY", "DecodeBest", "DecodeCandidate", "DecodeSearch", "PoolLike"]

#: Grids costed between two deadline checks (both pools' searches).
CHECK_EVERY = 16


@dataclass
class PoolLike:
    """What :func:`solver.planner.search.resolve` reads of a pool of candidates."""

    goals: Goals
    forbidden: tuple[int, ...]
    fixed_r: int | None


class DecodeCandidate(Candidate):
    """A decode grid at one ``s``: an aggregated candidate whose steps are decode-only."""

    def __init__(self, gc: GridCost, s: int):
        super().__init__(gc, s)
        self.rounds = Fraction(1)  # a decode pool has no prefill queue and no TTFT of its own


@dataclass
class DecodeBest:
    """The fewest decode GPUs found with at least ``min_receivers`` receivers."""

    choice: Choice | None
    complete: bool  # every grid that could beat it was resolved
    bound: int  # proved lower bound on the decode GPUs (INF: none exists)


class DecodeSearch:
    """Exact branch and bound over the decode pool's candidates."""

    def __init__(self, prep: Prepared, pools: PoolCosts, placements: Placements, goals: Goals,
                 lower: bool = False):
        self.prep, self.pools, self.placements, self.lower = prep, pools, placements, lower
        self.space = PoolSpace(prep.instance, "decode")
        s = prep.instance.search
        self.fixed_r = s.fix.get("replicas")
        self.forbidden = tuple(s.forbid.get("replicas", ())) if self.fixed_r is None else ()
        self.goals = goals
        self.pool = PoolLike(goals, self.forbidden, self.fixed_r)
        self.cap = min(goals.max_gpus or MAX_GPUS, MAX_GPUS)
        self.excluded = self._excluded()
        self._costs: dict[Grid, GridCost | None] = {}
        self._cands: dict[tuple[Grid, int], DecodeCandidate | None] = {}
        self.eps: set[tuple[int, int]] = set()

    # -- bounds ---------------------------------------------------------------------------------

    def _excluded(self) -> set[tuple[int, int]]:
        """``(tp, cp)`` pairs whose decode step (attention side alone, one sequence) is above
        the TPOT target at every size: TPOT ≥ Σ_layers of the attention-side terms."""
        if self.goals.tpot_ns is None:
            return set()
        out = set()
        for tp, cp in {(tp, cp) for tp, cp, _, _ in self.space._factors}:
            floor = step_attention_floor_ns(self.prep, tp, cp, np.array([1.0]), np.array([0.0]),
                                            0.0)[0]
            if floor + self.prep.cm.overhead_ns > self.goals.tpot_ns:
                out.add((tp, cp))
        return out

    # -- candidates -----------------------------------------------------------------------------

    def hot(self, grid: Grid) -> tuple[dict[int, HotRank], int]:
        red = self.space.redundant(grid.ep)
        if not self.prep.moe_layers:
            return {}, red
        self.eps.add((grid.ep, red))
        return self.placements.hot(grid.ep, red, lower=self.lower), red

    def cost(self, grid: Grid) -> GridCost | None:
        """``grid`` costed over every ``s`` its batch range and a memory bound allow."""
        q_range = self.space.q_range(grid)
        if q_range is None:
            return None
        prep, cm = self.prep, self.prep.cm
        hot, red = self.hot(grid)
        memory = [self.pools.layer_memory(layer, grid, hot.get(layer))
                  for layer in range(prep.model.num_layers)]
        weights = sum(w for w, _, _ in memory)
        kvs = sum(k for _, k, _ in memory)
        share = max((h.share for h in hot.values()), default=0.0)
        ex_mem = cm.extras_memory(grid, share, cm.budget)
        fixed = grid.pp * (ex_mem["activation_workspace"] + ex_mem["comm_buffers"]
                           + ex_mem["runtime_reserve"]) + ex_mem["embedding"] + ex_mem["lm_head"]
        room = grid.pp * cm.memory_budget - fixed - weights  # a necessary condition on q
        q_lo, q_hi = q_range
        if kvs > 0:
            q_hi = min(q_hi, room // kvs)
        if q_hi < q_lo or room < 0:
            return None
        s_max = -(-q_hi // grid.pp)
        # no prefill shares a decode step: no token budget, no prefill queue (the candidates'
        # TTFT rounds are unused)
        return grid_cost(prep, grid, red, (q_lo, q_hi),
                         self.pools.decode_layer_costs(grid, hot, s_max, terms=False),
                         self.pools.decode_extras(grid, hot, s_max), token_budget=0)

    def gridcost(self, grid: Grid) -> GridCost | None:
        if grid not in self._costs:
            self._costs[grid] = (None if (grid.tp, grid.cp) in self.excluded
                                 else self.cost(grid))
        return self._costs[grid]

    def viable(self, gc: GridCost, cutoff: int) -> np.ndarray:
        """The ``s`` of ``gc`` no necessary condition rules out, vectorised (as
        :func:`solver.planner.candidates.viable_s`, without a prefill queue): TPOT at the least
        possible slowest stage, memory for at least one batch of the bucket, and the fewest
        replicas the total rate needs at the best case within ``cutoff`` GPUs. Conservative
        in floating point; :meth:`Candidate.bounded` follows exactly."""
        g = gc.grid
        pp, gpi = g.pp, g.gpus_per_instance
        s_all = np.array(gc.s_range(), dtype=np.int64)
        if len(s_all) == 0:
            return s_all
        i = s_all - 1
        cols = gc.avg[:, i]
        total = cols.sum(axis=0) + gc.first_avg[i] + gc.last_avg[i]
        m_lb = total if pp == 1 else np.maximum.reduce(
            [-(-total // pp), cols.max(axis=0), cols[0] + gc.first_avg[i],
             cols[-1] + gc.last_avg[i]])
        hop = gc.hop_avg[i] if pp > 1 else 0
        tpot_lb = pp * (m_lb.astype(np.float64) + hop + gc.overhead)
        keep = np.ones(len(s_all), dtype=bool)
        if self.goals.tpot_ns is not None:
            keep &= tpot_lb <= self.goals.tpot_ns * (1 + PREBOUND_SLACK)
        q_hi = np.minimum(gc.q_hi, pp * s_all)
        q_lo = np.maximum(gc.q_lo, pp * (s_all - 1) + 1)
        keep &= q_hi >= q_lo
        rate = self.goals.min_rate_total
        inst_ub = g.dp * q_hi * timing.NS_PER_S / tpot_lb
        r_lb = np.maximum(1.0, np.ceil(rate * (1 - PREBOUND_SLACK) / inst_ub))
        if self.fixed_r is not None:
            r_lb = np.maximum(r_lb, float(self.fixed_r))
        keep &= gpi * r_lb <= cutoff
        return s_all[keep]

    def candidate(self, grid: Grid, gc: GridCost, s: int) -> DecodeCandidate | None:
        key = (grid, s)
        if key not in self._cands:
            self._cands[key] = DecodeCandidate(gc, s).bounded(self.goals, self.fixed_r,
                                                              self.forbidden)
        return self._cands[key]

    def candidates(self, grid: Grid, cutoff: int) -> list[DecodeCandidate]:
        """The bounded candidates of ``grid`` some plan of which may have at most ``cutoff``
        GPUs, in increasing order of their GPU bound."""
        gc = self.gridcost(grid)
        if gc is None:
            return []
        out = [c for s in self.viable(gc, cutoff)
               if (c := self.candidate(grid, gc, int(s))) is not None and c.caps.gpu_lb <= cutoff]
        out.sort(key=lambda c: c.caps.gpu_lb)
        return out

    def grids(self, n: int, min_receivers: int) -> list[Grid]:
        return [g for g in self.space.grids(n)
                if receivers(self.prep.cm, g) >= min_receivers
                and (g.tp, g.cp) not in self.excluded]

    # -- fewest GPUs ----------------------------------------------------------------------------

    def fewest(self, min_receivers: int, deadline: float,
               should_stop: Callable[[], bool] | None) -> DecodeBest:
        """The fewest decode GPUs over plans with at least ``min_receivers`` receivers."""
        best: Choice | None = None
        excluded = frozenset(self.excluded)
        n = self.space.next_size_above(0, self.cap, excluded)
        lb = INF
        costed = 0
        while n is not None:
            if best is not None and n > best.gpus:
                return DecodeBest(best, True, best.gpus)
            if time.monotonic() >= deadline:
                return DecodeBest(best, False, n if best is None else min(n, best.gpus))
            for grid in self.grids(n, min_receivers):
                check_stop(should_stop)
                costed += 1
                if costed % CHECK_EVERY == 0 and time.monotonic() >= deadline:
                    return DecodeBest(best, False, n if best is None else min(n, best.gpus))
                for c in self.candidates(grid, self.cap if best is None else best.gpus):
                    if best is not None and c.caps.gpu_lb >= best.gpus and not (
                            c.caps.gpu_lb == best.gpus and receivers(self.prep.cm, c.grid)
                            > receivers(self.prep.cm, best.cand.grid)):
                        continue
                    choice = resolve(c, self.pool).choice
                    if choice is not None and (best is None or _decode_key(self, choice)
                                               < _decode_key(self, best)):
                        best = choice
            n = self.space.next_size_above(n, self.cap, excluded)
        if best is not None:
            return DecodeBest(best, True, best.gpus)
        return DecodeBest(None, True, lb)

    def at_gpus(self, gpus: int, deadline: float, should_stop) -> tuple[Choice | None, bool]:
        """A decode plan with exactly ``gpus`` GPUs and the most receivers (then the most
        capacity, not part of any proof), and whether every grid was examined."""
        best: Choice | None = None
        best_key = None
        for n in range(1, gpus + 1):
            if gpus % n:
                continue
            r = gpus // n
            if (self.fixed_r is not None and r != self.fixed_r) or r in self.forbidden:
                continue
            for grid in self.grids(n, 1):
                check_stop(should_stop)
                if time.monotonic() >= deadline:
                    return best, False
                recv = receivers(self.prep.cm, grid)
                for c in self.candidates(grid, gpus):
                    if c.caps.gpu_lb > gpus or c.caps.r_min > r:
                        continue
                    choice = _decode_at(c, r, self.pool)
                    if choice is None:
                        continue
                    key = (recv, c.rate_per_gpu(choice.q, choice.times[0]))
                    if best_key is None or key > best_key:
                        best, best_key = choice, key
        return best, True


def _decode_key(search: DecodeSearch, choice: Choice) -> tuple:
    """Among decode plans: fewest GPUs, then the most receivers (a faster KV transfer)."""
    return (choice.gpus, -receivers(search.prep.cm, choice.cand.grid))


def _decode_at(c: Candidate, r: int, pool: PoolLike) -> Choice | None:
    """The plan of decode candidate ``c`` with ``r`` replicas with the most output tokens/s
    (exact: the least slowest stage at each batch), or None."""
    best: Choice | None = None
    for q in range(c.caps.q_hi, c.caps.q_lo - 1, -1):
        if best is not None and c.rate_per_gpu(q, c.slowest_lb) <= c.rate_per_gpu(
                best.q, best.times[0]):
            continue
        got = least_slowest(c, q, slowest_cap(c, pool.goals, q, r))
        if got is None:
            continue
        choice = Choice(c, tuple(got[1]), q, r)
        if best is None or c.rate_per_gpu(q, got[0]) > c.rate_per_gpu(best.q, best.times[0]):
            best = choice
    return best
