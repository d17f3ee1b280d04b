"""The prefill pool of the two-pool planner (:mod:`solver.planner.disagg`): ``P(r)``, the fewest
prefill GPUs when the KV transfer's parallel links are capped at ``r`` (docs/solver.md, "Two
pools").

A candidate is a prefill grid at one token choice (:class:`PrefillCandidate`, read by the exact
partition routines of :mod:`solver.planner.partition`); TTFT grows with the slowest step and the
slowest step of a maximum-length prompt, so each candidate's Pareto-optimal partitions in those
two are enumerated exactly, and for each the fewest replicas is the exact inverse of TTFT
(:func:`solver.timing.prefill_replicas_needed`). :class:`PrefillSearch` goes over the grids in
increasing order of GPUs per instance with a per-``(tp, cp)`` GPU floor and exclusion from the
attention-side work, and stops once the next size exceeds the best plan's GPUs.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from solver import timing
from solver.costmodel import HotRank
from solver.estimate import Prepared
from solver.planner.bounds import step_attention_floor_ns
from solver.planner.candidates import INF
from solver.planner.cpsat import check_stop
from solver.planner.disagg_decode import CHECK_EVERY
from solver.planner.goals import Goals
from solver.planner.partition import least_full, least_slowest
from solver.planner.placements import Placements
from solver.planner.prebound import PREBOUND_SLACK
from solver.pool_space import PoolSpace
from solver.pools import PoolCosts, PrefillGridCost, receivers
from solver.schema import MAX_GPUS, Grid

__all__ = ["PrefillBest", "PrefillCandidate", "PrefillChoice", "PrefillSearch"]


class PrefillCandidate:
    """A prefill grid at one token choice ``j``: the stage sums the partition routines of
    :mod:`solver.planner.partition` read (every stage cost grows with its layers)."""

    def __init__(self, gc: PrefillGridCost, j: int):
        self.gc, self.j = gc, j
        self.grid = gc.grid
        self.pp = gc.grid.pp
        self.tokens = gc.tokens[j]
        self.avg_prefix = np.concatenate(([0], np.cumsum(gc.step[:, j])))
        self.full_prefix = np.concatenate(([0], np.cumsum(gc.full[:, j])))
        self.first_avg, self.last_avg = int(gc.first[j]), int(gc.last[j])
        self.first_full, self.last_full = int(gc.first_full[j]), int(gc.last_full[j])
        self.hop = int(gc.hop[j]) if self.pp > 1 else 0
        kv = gc.kv_bytes(j)
        self.mem_prefix = np.concatenate(([0], np.cumsum(gc.weight + kv)))
        self.mem_first = gc.mem_first
        self.mem_last = int(gc.mem_last[j])
        self.mem_every = int(gc.mem_every[j])

    @property
    def num_layers(self) -> int:
        return self.gc.num_layers

    @property
    def gpi(self) -> int:
        return self.grid.gpus_per_instance

    def __repr__(self) -> str:
        return f"PrefillCandidate({self.grid}, tokens={self.tokens})"

    def stage_avg(self, a: int, b: int, st: int) -> int:
        return int(self.avg_prefix[b] - self.avg_prefix[a]) + (
            self.first_avg if st == 0 else 0) + (self.last_avg if st == self.pp - 1 else 0)

    def stage_full(self, a: int, b: int, st: int) -> int:
        return int(self.full_prefix[b] - self.full_prefix[a]) + (
            self.first_full if st == 0 else 0) + (self.last_full if st == self.pp - 1 else 0)

    def stage_mem(self, a: int, b: int, st: int, q: int = 0) -> int:
        return int(self.mem_prefix[b] - self.mem_prefix[a]) + self.mem_every + (
            self.mem_first if st == 0 else 0) + (self.mem_last if st == self.pp - 1 else 0)

    def times(self, cuts: list[int]) -> tuple[int, int]:
        edges = [*cuts, self.num_layers]
        return (max(self.stage_avg(edges[k], edges[k + 1], k) for k in range(self.pp)),
                max(self.stage_full(edges[k], edges[k + 1], k) for k in range(self.pp)))

    def _stage_lb(self, prefix: np.ndarray, first: int, last: int) -> int:
        layer = np.diff(prefix)
        total = int(prefix[-1]) + first + last
        if self.pp == 1:
            return total
        return max(-(-total // self.pp), int(layer.max()), int(layer[0]) + first,
                   int(layer[-1]) + last)

    @property
    def slowest_lb(self) -> int:
        return self._stage_lb(self.avg_prefix, self.first_avg, self.last_avg)

    @property
    def full_lb(self) -> int:
        return self._stage_lb(self.full_prefix, self.first_full, self.last_full)

    def step(self, m: int) -> int:
        return timing.prefill_step_ns(m, self.pp, self.hop, self.gc.overhead)

    def round_full(self, f: int, m: int) -> int:
        return timing.round_ns(f, m, self.pp, self.hop, self.hop, self.gc.overhead)

    def pareto(self) -> list[tuple[int, int, list[int]]]:
        """Every partition that fits memory and is not worse than another in both the slowest
        step and the slowest step of a maximum-length prompt, as ``(m, f, cuts)`` (m rising, f
        falling): the least ``m``, the least ``f`` at that ``m``, then the least ``m`` with a
        smaller ``f``, and so on (each by the exact routines)."""
        if self.pp == 1:
            cuts = [0]
            if self.stage_mem(0, self.num_layers, 0) > self.gc.budget:
                return []
            m, f = self.times(cuts)
            return [(m, f, cuts)]
        out = []
        got = least_slowest(self, 0, INF)  # type: ignore[arg-type]
        while got is not None:
            m = got[0]
            full = least_full(self, 0, m)  # type: ignore[arg-type]
            assert full is not None
            f, cuts = full
            out.append((self.times(cuts)[0], f, cuts))
            got = least_slowest(self, 0, INF, f - 1)  # type: ignore[arg-type]
        return out


@dataclass
class PrefillChoice:
    cand: PrefillCandidate
    cuts: tuple[int, ...]
    replicas: int
    ttft_ns: int  # with the transfer of the streams it was chosen for

    @property
    def gpus(self) -> int:
        return self.cand.gpi * self.replicas


@dataclass
class PrefillBest:
    choice: PrefillChoice | None
    complete: bool
    bound: int


class PrefillSearch:
    """Exact branch and bound over the prefill pool's candidates, for a cap on the KV
    transfer's parallel links (the decode instance's receivers)."""

    def __init__(self, prep: Prepared, pools: PoolCosts, placements: Placements, goals: Goals,
                 lower: bool = False):
        self.prep, self.pools, self.placements, self.lower = prep, pools, placements, lower
        self.space = PoolSpace(prep.instance, "prefill")
        s = prep.instance.search
        self.fixed_r = s.fix.get("replicas")
        self.forbidden = tuple(s.forbid.get("replicas", ())) if self.fixed_r is None else ()
        self.goals = goals
        self.cap = min(goals.max_gpus or MAX_GPUS, MAX_GPUS)
        wl = prep.instance.workload
        self.lam = timing.planned_request_rate(wl.targets.min_output_tokens_per_s,
                                               wl.output_len)
        self.input_len, self.max_input = wl.input_len, wl.max_input
        self.excluded, self.floors = self._floors()
        self._cands: dict[Grid, list[PrefillCandidate]] = {}
        self._pareto: dict[tuple[Grid, int], list[tuple[int, int, list[int]]]] = {}
        self._transfer: dict[tuple[Grid, int, int], int] = {}
        self.eps: set[tuple[int, int]] = set()

    def _floors(self) -> tuple[set[tuple[int, int]], dict[tuple[int, int], float]]:
        """Per ``(tp, cp)``, from the attention-side work ``A_j`` of a step of each token choice
        (the same on every GPU of such a grid whatever its other degrees, and at most a stage's
        share of a step):

        - excluded when the prompt's own prefill alone breaks the TTFT target at every token
          choice: TTFT ≥ ⌈max_input / tokens⌉ · (A + one overhead) + one link latency;
        - a GPU floor: an instance of ``pp·tp·cp·dp`` GPUs prefills at most ``dp·tokens`` per
          ``A/pp + overhead``, so the pool needs at least ``λ·input · tp·cp · (A + o) / tokens``
          GPU-seconds per second (the least over the token choices)."""
        cm = self.prep.cm
        c = np.array(self.pools.tokens, dtype=np.float64)
        own = np.ceil(self.max_input / c)
        lat = math.floor(cm.k.inter.lat * timing.NS_PER_S)
        o = cm.overhead_ns
        excluded, floors = set(), {}
        need = float(self.lam) * self.input_len
        for tp, cp in {(tp, cp) for tp, cp, _, _ in self.space._factors}:
            typ = step_attention_floor_ns(self.prep, tp, cp, 0 * c, c, (self.input_len + 1) / 2)
            big = step_attention_floor_ns(self.prep, tp, cp, 0 * c, c, (self.max_input + 1) / 2)
            if self.goals.ttft_ns is not None and \
                    (own * (np.minimum(typ, big) + o) + lat > self.goals.ttft_ns).all():
                excluded.add((tp, cp))
            floors[tp, cp] = float((need * tp * cp * (typ + o) / (c * timing.NS_PER_S)).min())
        return excluded, floors

    def costed(self, grid: Grid) -> list[PrefillCandidate]:
        hit = self._cands.get(grid)
        if hit is not None:
            return hit
        red = self.space.redundant(grid.ep)
        hot: dict[int, HotRank] = {}
        if self.prep.moe_layers:
            self.eps.add((grid.ep, red))
            hot = self.placements.hot(grid.ep, red, lower=self.lower)
        if not self.pools.prefill_fits(grid, hot):
            out = self._cands[grid] = []
            return out
        gc = self.pools.prefill_grid(grid, hot, red)
        out = self._cands[grid] = [PrefillCandidate(gc, j) for j in range(len(gc.tokens))]
        return out

    def candidates(self, grid: Grid, cutoff: int | None = None) -> list[PrefillCandidate]:
        """The token choices of ``grid`` whose plans may have at most ``cutoff`` GPUs by the
        cheap necessary condition ρ < 1 at the least possible stage (in floating point, with a
        slack that only keeps more)."""
        out = self.costed(grid)
        if cutoff is None:
            return out
        keep = []
        need = float(self.lam) * self.input_len * (1 - PREBOUND_SLACK)
        for c in out:
            step = c.step(c.slowest_lb)
            a = need * step / (c.grid.dp * c.tokens * timing.NS_PER_S)
            if c.gpi * (math.floor(a) + 1) <= cutoff:
                keep.append(c)
        return keep

    def pareto(self, c: PrefillCandidate) -> list[tuple[int, int, list[int]]]:
        key = (c.grid, c.j)
        hit = self._pareto.get(key)
        if hit is None:
            hit = self._pareto[key] = c.pareto()
        return hit

    def transfer(self, c: PrefillCandidate, cap: int | None) -> int:
        streams = receivers(self.prep.cm, c.grid)
        if cap is not None:
            streams = min(streams, cap)
        key = (c.grid, c.j, streams)
        hit = self._transfer.get(key)
        if hit is None:
            hit = self._transfer[key] = self.pools.transfer_ns(c.gc, c.j, streams)
        return hit

    def replicas(self, c: PrefillCandidate, m: int, f: int, transfer: int) -> int | None:
        """The fewest allowed replicas with which the partition ``(m, f)`` meets the TTFT
        target and keeps up with the planned rate (exact), within the cap; None if none."""
        budget = None if self.goals.ttft_ns is None else self.goals.ttft_ns - transfer
        own = timing.prefill_own_ns(self.max_input, c.tokens, c.round_full(f, m))
        need = timing.prefill_replicas_needed(self.lam, self.input_len, c.grid.dp, c.tokens,
                                              c.pp, c.step(m), own, budget)
        if need is None:
            return None
        max_r = self.cap // c.gpi
        if self.fixed_r is not None:
            return self.fixed_r if need <= self.fixed_r <= max_r else None
        while need <= max_r and need in self.forbidden:
            need += 1
        return need if need <= max_r else None

    def ttft_at(self, c: PrefillCandidate, m: int, f: int, replicas: int, transfer: int
                ) -> int | None:
        """TTFT of a partition ``(m, f)`` with ``replicas`` instances (None: saturated)."""
        step = c.step(m)
        rho = timing.prefill_load(self.lam, self.input_len, replicas, c.grid.dp, c.tokens, step)
        wait = timing.prefill_wait_ns(rho, self.input_len, c.tokens, c.pp, step)
        if wait is None:
            return None
        own = timing.prefill_own_ns(self.max_input, c.tokens, c.round_full(f, m))
        return timing.prefill_ttft_ns(wait, own) + transfer

    def resolve(self, c: PrefillCandidate, cap: int | None) -> PrefillChoice | None:
        """The fewest GPUs of candidate ``c`` (then the lowest TTFT): exact over its Pareto
        partitions."""
        transfer = self.transfer(c, cap)
        best: PrefillChoice | None = None
        for m, f, cuts in self.pareto(c):
            r = self.replicas(c, m, f, transfer)
            if r is None:
                continue
            ttft = self.ttft_at(c, m, f, r, transfer)
            assert ttft is not None
            choice = PrefillChoice(c, tuple(cuts), r, ttft)
            if best is None or (choice.gpus, choice.ttft_ns) < (best.gpus, best.ttft_ns):
                best = choice
        return best

    def lower_bound(self, c: PrefillCandidate, cap: int | None) -> int:
        """GPUs no plan of ``c`` goes below: the replicas at the least possible stage times."""
        r = self.replicas(c, c.slowest_lb, c.full_lb, self.transfer(c, cap))
        return INF if r is None else c.gpi * r

    def grids(self, n: int, cutoff: int | None = None) -> list[Grid]:
        """Grids of ``n`` GPUs not excluded, and (with ``cutoff``) whose ``(tp, cp)`` GPU floor
        leaves room for a pool of at most ``cutoff`` GPUs."""
        return [g for g in self.space.grids(n) if (g.tp, g.cp) not in self.excluded and (
            cutoff is None or self.floors[g.tp, g.cp] * (1 - PREBOUND_SLACK) <= cutoff)]

    def fewest(self, cap: int | None, deadline: float, should_stop,
               limit: int | None = None) -> PrefillBest:
        """The fewest prefill GPUs when the transfer uses at most ``cap`` links (None: as many
        as the prefill instance has)."""
        best: PrefillChoice | None = None
        limit = self.cap if limit is None else min(limit, self.cap)
        excluded = frozenset(self.excluded)
        n = self.space.next_size_above(0, limit, excluded)
        costed = 0
        while n is not None:
            if best is not None and n > best.gpus:
                return PrefillBest(best, True, best.gpus)
            if time.monotonic() >= deadline:
                return PrefillBest(best, False, n if best is None else min(n, best.gpus))
            cutoff = limit if best is None else best.gpus
            for grid in self.grids(n, cutoff):
                check_stop(should_stop)
                costed += 1
                if costed % CHECK_EVERY == 0 and time.monotonic() >= deadline:
                    return PrefillBest(best, False, n if best is None else min(n, best.gpus))
                for c in self.candidates(grid, cutoff):
                    if best is not None and self.lower_bound(c, cap) > best.gpus:
                        continue
                    choice = self.resolve(c, cap)
                    if choice is not None and (best is None or (choice.gpus, choice.ttft_ns)
                                               < (best.gpus, best.ttft_ns)):
                        best = choice
            n = self.space.next_size_above(n, limit, excluded)
        return PrefillBest(best, True, best.gpus if best is not None else INF)

    def least_ttft_at(self, gpus: int, decode_receivers: int, deadline: float, should_stop
                      ) -> tuple[PrefillChoice | None, bool]:
        """The prefill plan with exactly ``gpus`` GPUs with the lowest TTFT when sending to a
        decode instance with ``decode_receivers`` receivers (exact over the Pareto partitions
        of every candidate), and whether every grid was examined."""
        best: PrefillChoice | None = None
        for n in range(1, gpus + 1):
            if gpus % n:
                continue
            r = gpus // n
            if (self.fixed_r is not None and r != self.fixed_r) or r in self.forbidden:
                continue
            for grid in self.grids(n, gpus):
                check_stop(should_stop)
                if time.monotonic() >= deadline:
                    return best, False
                for c in self.candidates(grid, gpus):
                    transfer = self.transfer(c, decode_receivers)
                    for m, f, cuts in self.pareto(c):
                        ttft = self.ttft_at(c, m, f, r, transfer)
                        if ttft is None or (self.goals.ttft_ns is not None
                                            and ttft > self.goals.ttft_ns):
                            continue
                        if best is None or ttft < best.ttft_ns:
                            best = PrefillChoice(c, tuple(cuts), r, ttft)
        return best, True
