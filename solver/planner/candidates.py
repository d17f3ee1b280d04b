"""Candidates: one grid at one batch, costed once, with valid bounds.

A grid ``(tp, cp, dp, ep, etp, edp, pp)`` is costed over every ``s`` (decoding sequences per
attention-DP rank and microbatch) its batch range allows, as per-layer integer arrays
(:class:`GridCost`). A *candidate* is the grid at one ``s``; its batch is ``dp · q`` for the
``q`` sequences per rank with ``⌈q/pp⌉ = s`` (the step times depend on ``s`` only, so ``q`` moves
memory and the rate, nothing else). What a candidate leaves to decide is the layer-to-stage
partition, ``q`` and the replica count; everything else is fixed integers, so its lower bounds
(:meth:`Candidate.bounded`) are exact arithmetic on necessary conditions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cached_property

import numpy as np

from solver import timing
from solver.costmodel import HotRank
from solver.estimate import Prepared
from solver.planner.goals import Goals
from solver.planner.prebound import (  # noqa: F401  (re-exported: the pre-bounds' old home)
    PREBOUND_SLACK,
    StageProfile,
    profile_admits,
    stage_profile,
    viable_s,
)
from solver.schema import MAX_GPUS, Grid, ceil_div

INF = 1 << 62
#: Largest number of replica counts modelled per candidate (beyond: the candidate is dropped).
MAX_REPLICA_STEPS = 256


@dataclass
class GridCost:
    """One grid costed over ``s = 1..S``."""

    grid: Grid
    redundant: int
    q_lo: int
    q_hi: int
    avg: np.ndarray  # (L, S) int64: average scheduler step per layer
    full: np.ndarray  # (L, S) int64: step with a full chunk of a maximum-length prompt
    weight: np.ndarray  # (L,) int64 bytes
    kv_seq: np.ndarray  # (L,) int64 bytes per sequence at the mean context
    kv_max: np.ndarray  # (L,) int64 bytes of one maximum-context sequence
    first_avg: np.ndarray  # (S,)
    last_avg: np.ndarray
    first_full: np.ndarray
    last_full: np.ndarray
    hop_avg: np.ndarray
    hop_full: np.ndarray
    mem_first: int
    mem_last: np.ndarray  # (S,)
    mem_every: int
    overhead: int
    budget: int  # the engine's memory budget per GPU, bytes
    token_budget: int
    workload: tuple[int, int, int]  # input_len, max_input, output_len
    w_prefix: np.ndarray = field(init=False)
    kvs_prefix: np.ndarray = field(init=False)
    kvm_prefix: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.w_prefix = np.concatenate(([0], np.cumsum(self.weight)))
        self.kvs_prefix = np.concatenate(([0], np.cumsum(self.kv_seq)))
        self.kvm_prefix = np.concatenate(([0], np.cumsum(self.kv_max)))

    @property
    def num_layers(self) -> int:
        return len(self.weight)

    def s_range(self) -> range:
        pp = self.grid.pp
        return range(ceil_div(self.q_lo, pp), ceil_div(self.q_hi, pp) + 1)


def cost_grid(prep: Prepared, grid: Grid, hot: dict[int, HotRank], redundant: int,
              q_range: tuple[int, int]) -> GridCost:
    """Cost ``grid`` for every ``s`` its ``q_range`` (sequences per rank) allows."""
    s_max = ceil_div(q_range[1], grid.pp)
    return grid_cost(prep, grid, redundant, q_range, prep.layer_costs(grid, hot, s_max),
                     prep.extras(grid, hot, s_max), prep.cm.budget)


def grid_cost(prep: Prepared, grid: Grid, redundant: int, q_range: tuple[int, int],
              costs: list, ex, token_budget: int) -> GridCost:
    """A :class:`GridCost` from per-layer costs and stage extras priced up to ``s_max =
    ⌈q_hi / pp⌉`` (the arrays may be longer, shared by every pp: only what this grid can use
    is kept). ``token_budget`` 0: no prefill shares the steps (a decode pool)."""
    q_lo, q_hi = q_range
    n = ceil_div(q_hi, grid.pp)
    wl = prep.instance.workload
    return GridCost(
        grid=grid, redundant=redundant, q_lo=q_lo, q_hi=q_hi,
        avg=np.stack([c.avg_ns[:n] for c in costs]),
        full=np.stack([c.full_max_ns[:n] for c in costs]),
        weight=np.array([c.weight_bytes for c in costs], dtype=np.int64),
        kv_seq=np.array([c.kv_seq_bytes for c in costs], dtype=np.int64),
        kv_max=np.array([c.kv_max_bytes for c in costs], dtype=np.int64),
        first_avg=ex.first_avg_ns[:n], last_avg=ex.last_avg_ns[:n],
        first_full=ex.first_full_ns[:n], last_full=ex.last_full_ns[:n],
        hop_avg=ex.hop_avg_ns[:n], hop_full=ex.hop_full_ns[:n],
        mem_first=ex.mem_first, mem_last=ex.mem_last[:n], mem_every=ex.mem_every,
        overhead=prep.cm.overhead_ns, budget=prep.cm.memory_budget,
        token_budget=token_budget,
        workload=(wl.input_len, wl.max_input, wl.output_len),
    )


@dataclass
class Caps:
    """What the goals leave a candidate: caps on its slowest stage, its replica range, its GPU
    lower bound. Filled by :meth:`Candidate.bounded`."""

    q_lo: int
    q_hi: int
    slowest_cap: int  # TPOT (and the rate per GPU at q_hi)
    round_cap: int | None  # TTFT: largest round time
    r_min: int
    r_max: int
    rate_total: float | None
    gpu_lb: int


class Candidate:
    """A grid at one ``s``."""

    def __init__(self, gc: GridCost, s: int):
        self.gc = gc
        self.s = s
        self.grid = gc.grid
        pp = gc.grid.pp
        self.q_lo = max(gc.q_lo, pp * (s - 1) + 1)
        self.q_hi = min(gc.q_hi, pp * s)
        i = s - 1
        self.avg_prefix = np.concatenate(([0], np.cumsum(gc.avg[:, i])))
        self.full_prefix = np.concatenate(([0], np.cumsum(gc.full[:, i])))
        self.first_avg, self.last_avg = int(gc.first_avg[i]), int(gc.last_avg[i])
        self.first_full, self.last_full = int(gc.first_full[i]), int(gc.last_full[i])
        self.hop_avg = int(gc.hop_avg[i]) if pp > 1 else 0
        self.hop_full = int(gc.hop_full[i]) if pp > 1 else 0
        self.mem_last = int(gc.mem_last[i])
        inp, max_inp, out = gc.workload
        self.rounds = timing.ttft_rounds(s, inp, max_inp, out, gc.token_budget)
        self.caps: Caps | None = None

    # -- shape ----------------------------------------------------------------------------------

    @property
    def pp(self) -> int:
        return self.grid.pp

    @property
    def gpi(self) -> int:
        return self.grid.gpus_per_instance

    @property
    def num_layers(self) -> int:
        return self.gc.num_layers

    @property
    def redundant(self) -> int:
        return self.gc.redundant

    def __repr__(self) -> str:
        return f"Candidate({self.grid}, s={self.s}, q={self.q_lo}..{self.q_hi})"

    # -- stage sums (the same integers estimate.assemble adds) ---------------------------------

    def fixed_avg(self, st: int) -> int:
        return (self.first_avg if st == 0 else 0) + (self.last_avg if st == self.pp - 1 else 0)

    def fixed_full(self, st: int) -> int:
        return (self.first_full if st == 0 else 0) + (self.last_full if st == self.pp - 1 else 0)

    def fixed_mem(self, st: int) -> int:
        gc = self.gc
        return gc.mem_every + (gc.mem_first if st == 0 else 0) + (
            self.mem_last if st == self.pp - 1 else 0)

    def stage_avg(self, a: int, b: int, st: int) -> int:
        """Stage ``st`` holding layers ``a..b-1``."""
        return int(self.avg_prefix[b] - self.avg_prefix[a]) + self.fixed_avg(st)

    def stage_full(self, a: int, b: int, st: int) -> int:
        return int(self.full_prefix[b] - self.full_prefix[a]) + self.fixed_full(st)

    def stage_mem(self, a: int, b: int, st: int, q: int) -> int:
        gc = self.gc
        kv = max(q * int(gc.kvs_prefix[b] - gc.kvs_prefix[a]),
                 int(gc.kvm_prefix[b] - gc.kvm_prefix[a]))
        return int(gc.w_prefix[b] - gc.w_prefix[a]) + kv + self.fixed_mem(st)

    def times(self, cuts: list[int]) -> tuple[int, int]:
        """``(slowest, slowest_full)`` of the partition with stage starts ``cuts`` (+ L)."""
        edges = [*cuts, self.num_layers]
        avg = max(self.stage_avg(edges[k], edges[k + 1], k) for k in range(self.pp))
        full = max(self.stage_full(edges[k], edges[k + 1], k) for k in range(self.pp))
        return avg, full

    def fits(self, cuts: list[int], q: int) -> bool:
        edges = [*cuts, self.num_layers]
        return all(self.stage_mem(edges[k], edges[k + 1], k, q) <= self.gc.budget
                   for k in range(self.pp))

    # -- figures --------------------------------------------------------------------------------

    def tpot(self, slowest: int) -> int:
        return timing.tpot_ns(slowest, self.pp, self.hop_avg, self.gc.overhead)

    def round(self, slowest_full: int, slowest: int) -> int:
        return timing.round_ns(slowest_full, slowest, self.pp, self.hop_full, self.hop_avg,
                               self.gc.overhead)

    def ttft(self, slowest_full: int, slowest: int) -> int:
        assert self.rounds is not None
        return timing.ttft_ns(self.rounds, self.round(slowest_full, slowest))

    def batch(self, q: int) -> int:
        return self.grid.dp * q

    # -- bounds ---------------------------------------------------------------------------------

    @cached_property
    def slowest_lb(self) -> int:
        """No partition's slowest stage is faster: the average stage, the slowest single layer,
        the first and last layers with their stage's extras."""
        return self._stage_lb(self.avg_prefix, self.first_avg, self.last_avg)

    @cached_property
    def full_lb(self) -> int:
        return self._stage_lb(self.full_prefix, self.first_full, self.last_full)

    def _stage_lb(self, prefix: np.ndarray, first: int, last: int) -> int:
        layer = np.diff(prefix)
        total = int(prefix[-1]) + first + last
        if self.pp == 1:
            return total
        return max(ceil_div(total, self.pp), int(layer.max()), int(layer[0]) + first,
                   int(layer[-1]) + last)

    def q_mem_max(self) -> int:
        """The largest ``q`` of this candidate that no necessary memory condition rules out
        (``q_lo - 1`` when even ``q_lo`` is ruled out): the stages together hold every layer,
        and each stage holds at least one layer (the first and last with their extras)."""
        gc, pp, budget = self.gc, self.pp, self.gc.budget
        fixed_total = pp * gc.mem_every + gc.mem_first + self.mem_last
        weights = int(gc.w_prefix[-1])
        kvs, kvm = int(gc.kvs_prefix[-1]), int(gc.kvm_prefix[-1])
        room = pp * budget - fixed_total - weights
        if room < (kvm if pp == 1 else 0):
            return self.q_lo - 1
        q_max = self.q_hi if kvs == 0 else min(self.q_hi, room // kvs)
        # one layer per stage: the fullest layer alone, first/last with their stage extras
        per_layer = [(gc.weight[i], gc.kv_seq[i], gc.kv_max[i], gc.mem_every
                      + (gc.mem_first if i == 0 else 0) + (self.mem_last if i == self.num_layers
                                                           - 1 else 0))
                     for i in {0, self.num_layers - 1, int(np.argmax(gc.weight + gc.kv_seq))}]
        for w, ks, km, fixed in per_layer:
            left = budget - int(w) - fixed
            if left < int(km):
                return self.q_lo - 1
            if ks:
                q_max = min(q_max, left // int(ks))
        return q_max

    def bounded(self, goals: Goals, fixed_replicas: int | None, forbidden: tuple[int, ...]
                ) -> Candidate | None:
        """This candidate with its :class:`Caps` under ``goals``; None when no partition, batch
        and replica count can meet them (each test is a necessary condition)."""
        if self.rounds is None:
            return None
        q_hi = self.q_mem_max()
        if q_hi < self.q_lo:
            return None
        m_lb, f_lb = self.slowest_lb, self.full_lb
        pp, hop, o = self.pp, self.hop_avg, self.gc.overhead
        cap = INF
        if goals.tpot_ns is not None:
            cap = timing.max_slowest_for_tpot(goals.tpot_ns, pp, hop, o)
        if goals.min_rate_per_gpu is not None:
            cap = min(cap, timing.max_slowest_for_rate(self.batch(q_hi), self.gpi,
                                                       goals.min_rate_per_gpu, pp, hop, o))
        round_cap = None
        if goals.ttft_ns is not None:
            round_cap = timing.max_round_for_ttft(goals.ttft_ns, self.rounds)
            if self.round(f_lb, m_lb) > round_cap:
                return None
        if m_lb > cap:
            return None
        max_r = min(goals.max_gpus or MAX_GPUS, MAX_GPUS) // self.gpi
        rate = goals.min_rate_total
        if fixed_replicas is not None:
            r_min = r_max = fixed_replicas
            if rate is not None:
                cap = min(cap, timing.max_slowest_for_replicas(
                    fixed_replicas, self.batch(q_hi), rate, pp, hop, o))
        elif rate is None:
            r_min = r_max = 1
        else:
            r_min = timing.replicas_needed(self.batch(q_hi), self.tpot(m_lb), rate)
            if cap < INF:
                r_max = timing.replicas_needed(self.batch(self.q_lo), self.tpot(cap), rate)
            else:
                r_max = max_r
            r_max = min(r_max, max_r, r_min + MAX_REPLICA_STEPS)
            cap = min(cap, timing.max_slowest_for_replicas(r_max, self.batch(q_hi), rate, pp,
                                                           hop, o))
        r_min = next_allowed(r_min, forbidden, r_max + len(forbidden) + 1)
        if r_min is None or r_min > max_r or m_lb > cap:
            return None
        r_max = max(r_max, r_min)
        while r_max in forbidden and r_max < max_r:
            r_max += 1
        c = Candidate.__new__(Candidate)
        c.__dict__.update(self.__dict__)
        c.caps = Caps(q_lo=self.q_lo, q_hi=q_hi, slowest_cap=cap, round_cap=round_cap,
                      r_min=r_min, r_max=r_max, rate_total=rate, gpu_lb=self.gpi * r_min)
        return c

    # -- what a fixed choice needs --------------------------------------------------------------

    def replicas_for(self, goals: Goals, q: int, slowest: int, forbidden: tuple[int, ...],
                     fixed_replicas: int | None) -> int | None:
        """The fewest allowed replicas with which ``q`` and ``slowest`` meet the total-rate
        target within max GPUs (None: none)."""
        max_r = min(goals.max_gpus or MAX_GPUS, MAX_GPUS) // self.gpi
        need = 1
        if goals.min_rate_total is not None:
            need = timing.replicas_needed(self.batch(q), self.tpot(slowest), goals.min_rate_total)
        if fixed_replicas is not None:
            return fixed_replicas if need <= fixed_replicas <= max_r else None
        r = next_allowed(need, forbidden, max_r)
        return r

    def meets(self, goals: Goals, q: int, slowest: int, slowest_full: int) -> bool:
        """Whether a partition with these stage times meets the partition-independent goals at
        ``q`` (memory is checked with the partition)."""
        if goals.tpot_ns is not None and self.tpot(slowest) > goals.tpot_ns:
            return False
        if goals.ttft_ns is not None and self.ttft(slowest_full, slowest) > goals.ttft_ns:
            return False
        if goals.min_rate_per_gpu is not None and not timing.rate_meets(
                self.batch(q), self.tpot(slowest), self.gpi, goals.min_rate_per_gpu):
            return False
        return True

    def rate_per_gpu(self, q: int, slowest: int) -> Fraction:
        """Output tokens/s per GPU as an exact rational (for comparing tie-breaks)."""
        return Fraction(self.batch(q) * timing.NS_PER_S, self.tpot(slowest) * self.gpi)

    def rate_per_gpu_ub(self) -> Fraction:
        assert self.caps is not None
        return self.rate_per_gpu(self.caps.q_hi, self.slowest_lb)


def next_allowed(r: int, forbidden: tuple[int, ...], limit: int) -> int | None:
    """The smallest replica count ``>= r`` not forbidden, at most ``limit``."""
    while r <= limit:
        if r not in forbidden:
            return r
        r += 1
    return None


def ceil_log2(n: int) -> int:
    return max(0, math.ceil(math.log2(max(1, n))))
