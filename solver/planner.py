"""The CP-SAT planner: fewest GPUs, then most output tokens/s per GPU, then lowest TTFT.

Reads top to bottom as data → model → variables → constraints → objective → solve → report.

Data. Every valid degree tuple ``(tp, cp, dp, ep, etp, edp, pp, batch)`` (divisibility, node
boundaries and the GPU identity come from :func:`solver.verify.structural_violations`, the
verifier's own rules) is costed once with the cost model: per-layer memory and decode time as
integer prefix sums, the partition-independent TTFT and prefill time, and the per-stage extras.
Expert placement is decided per (MoE layer load multiset, ep) by the CP-SAT placement sub-model
(:mod:`solver.placement`); its hottest-rank load enters the MoE time of that layer.

Model. One CP-SAT model holds, for every candidate tuple ``t``:
- ``sel[t]``: the tuple is chosen (exactly one is);
- ``pos[t, k]``: the first layer of pipeline stage ``k`` — contiguous stages as strictly
  increasing boundaries; stage memory and decode time are differences of prefix sums read with
  ``add_element``;
- ``M[t]``: the slowest stage's decode time, bounded by the TPOT and per-GPU throughput targets;
- ``z[t, r]``: one more replica is needed because ``M[t]`` exceeds the threshold of ``r``
  replicas for the total-throughput target.
Objectives, solved lexicographically: total GPUs; then GPU-time per output token (the inverse of
output tokens/s per GPU); then TTFT.

Decomposition (docs/solver.md has the proof). Tuples enter the model in order of a valid lower
bound on their GPU count; the solve stops when the best plan's GPU count is no larger than the
lower bound of every tuple left out, so left-out tuples cannot beat it.
"""

from __future__ import annotations

import bisect
import contextlib
import copy
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import NamedTuple

import numpy as np
from ortools import __version__ as ORTOOLS_VERSION
from ortools.sat.python import cp_model

from solver.costmodel import (
    BYTES_PER_GB,
    NS_PER_S,
    replicas_needed,
    seconds_to_ns_floor,
)
from solver.estimate import Prepared, evaluate
from solver.loads import LOAD_RESOLUTION
from solver.placement import PlacementResult, place_experts_cached
from solver.schema import (
    MAX_GPUS,
    Degrees,
    Explanation,
    Instance,
    LayerExperts,
    LayerPlacement,
    Plan,
    SearchOptions,
    SolveResult,
    Stage,
    Targets,
    ceil_div,
    divisors,
)
from solver.verify import redundant_for, structural_violations, verify

#: Scale of the tie-break objective "GPU-ns per output token" (1e-3 GPU-ns resolution).
TIE_BREAK_SCALE = 1000
#: Largest value one tie-break term may take in the CP-SAT model (well inside int64).
TIE_BREAK_MAX_TERM = 1 << 56
#: Share of the time limit the placement sub-models may use, and the cap per sub-model.
PLACEMENT_TIME_SHARE = 0.3
PLACEMENT_TIME_CAP_S = 2.0
#: Time for explaining an infeasible instance: this share of the time limit, within [min, max].
EXPLAIN_BUDGET_SHARE = 0.02
EXPLAIN_BUDGET_MIN_S = 0.5
EXPLAIN_BUDGET_MAX_S = 5.0
#: Time the GPU lower bound with unproved placements gets even when the limit is spent.
LOWER_BOUND_FLOOR_S = 0.5
#: Tuples costed between two deadline checks.
COST_CHUNK = 512
#: Largest number of replica thresholds modelled per tuple (beyond: the tuple is dropped).
MAX_REPLICA_STEPS = 256
INF = 1 << 62

TIE_BREAKS = (
    "fewest total GPUs",
    "most output tokens/s per GPU",
    "lowest TTFT",
)


class PlannerError(RuntimeError):
    """The planner produced a plan the verifier rejects: a bug, reported loudly."""


class Cancelled(Exception):
    """``should_stop()`` turned true: the caller abandoned the solve."""


@contextlib.contextmanager
def _watchdog(solver: cp_model.CpSolver, should_stop: Callable[[], bool] | None):
    """Poll ``should_stop`` every 50 ms during a solve and stop CP-SAT when it turns true, so a
    cancelled call frees its worker promptly even when no new solution arrives."""
    if should_stop is None:
        yield
        return
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.05):
            if should_stop():
                solver.stop_search()
                return

    thread = threading.Thread(target=watch, name="moeplan-stop-watch", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


# ----------------------------------------------------------------------------------------------
# Goals: the targets as exact integers (so that targets can be dropped for explanations)
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Goals:
    ttft_ns: int | None = None
    tpot_ns: int | None = None
    min_rate_per_gpu: float | None = None
    min_rate_total: float | None = None
    max_gpus: int | None = None

    @classmethod
    def of(cls, t: Targets) -> Goals:
        return cls(
            ttft_ns=seconds_to_ns_floor(t.max_ttft_s) if t.max_ttft_s is not None else None,
            tpot_ns=seconds_to_ns_floor(t.max_tpot_s) if t.max_tpot_s is not None else None,
            min_rate_per_gpu=t.min_output_tokens_per_s_per_gpu,
            min_rate_total=t.min_output_tokens_per_s,
            max_gpus=t.max_gpus,
        )

    def without(self, *names: str) -> Goals:
        return Goals(**{k: (None if k in names else getattr(self, k))
                        for k in self.__dataclass_fields__})


# ----------------------------------------------------------------------------------------------
# Data: candidate degree tuples with their costs
# ----------------------------------------------------------------------------------------------


@dataclass
class Candidate:
    """One degree tuple, costed. Integers: ns and bytes."""

    d: Grid
    batch: int
    redundant: int
    mem_prefix: np.ndarray  # int64, length L+1: memory of layers [0, i) per GPU
    dec_prefix: np.ndarray  # int64, length L+1: decode ns of layers [0, i)
    mem_first: int  # extra memory of stage 0 (embedding)
    mem_last: int  # extra memory of the last stage (LM head, logits)
    mem_every: int  # workspace, buffers, reserve
    dec_first: int
    dec_last: int
    hop_dec: int
    ttft_ns: int
    prefill_batch_ns: int
    output_len: int
    # Goal-independent aggregates (__post_init__):
    total_mem: int = field(init=False, default=0)
    min_stage_mem: int = field(init=False, default=0)
    total_dec: int = field(init=False, default=0)
    m_lb: int = field(init=False, default=0)
    # Goal-dependent, filled by bounded():
    m_cap: int = 0
    r_min: int = 1
    r_max: int = 0
    rate_total: float | None = None

    @property
    def pp(self) -> int:
        return self.d.pp

    @property
    def gpus_per_instance(self) -> int:
        return self.d.gpus_per_instance

    @property
    def gpu_lb(self) -> int:
        return self.gpus_per_instance * self.r_min

    @property
    def num_layers(self) -> int:
        return len(self.mem_prefix) - 1

    def fixed_mem(self, s: int) -> int:
        return self.mem_every + (self.mem_first if s == 0 else 0) + (
            self.mem_last if s == self.pp - 1 else 0)

    def fixed_dec(self, s: int) -> int:
        return (self.dec_first if s == 0 else 0) + (self.dec_last if s == self.pp - 1 else 0)

    def cycle_ns(self, m: int) -> int:
        hop = self.hop_dec if self.pp > 1 else 0
        return self.output_len * self.pp * (m + hop) + self.prefill_batch_ns

    def gpu_time_coefficients(self) -> tuple[int, int]:
        """``(a, b)`` with ``a·M + b ≈ SCALE · gpus_per_instance · cycle_ns(M) / tokens``."""
        tokens = self.batch * self.output_len
        a = round(TIE_BREAK_SCALE * self.gpus_per_instance * self.output_len * self.pp / tokens)
        b = round(TIE_BREAK_SCALE * self.gpus_per_instance * self.cycle_ns(0) / tokens)
        return a, b

    def slowest_stage_ns(self, bounds: list[tuple[int, int]]) -> int:
        return max(int(self.dec_prefix[b + 1] - self.dec_prefix[a]) + self.fixed_dec(s)
                   for s, (a, b) in enumerate(bounds))

    def plan_objective(self, bounds: list[tuple[int, int]], objective: str) -> int:
        """The tie-break ``objective`` of the plan with these stage ``bounds``, as it is."""
        if objective == "gpu_time":
            a, b = self.gpu_time_coefficients()
            return a * self.slowest_stage_ns(bounds) + b
        if objective == "ttft":
            return self.ttft_ns
        raise ValueError(f"no tie-break objective {objective!r}")

    def objective_lower_bound(self, objective: str) -> int:
        """A valid lower bound on ``objective`` over every partition of this tuple."""
        hop = self.hop_dec if self.pp > 1 else 0
        if objective == "ttft":
            return self.ttft_ns
        if objective == "tpot":
            return self.pp * (self.m_lb + hop)
        if objective == "gpu_time":
            a, b = self.gpu_time_coefficients()
            return a * self.m_lb + b
        return self.gpu_lb

    def m_for_replicas(self, replicas: int, rate: float) -> int:
        """The slowest stage time ``replicas`` instances may have and still reach ``rate``
        tokens/s in total: ``floor((r·tokens·1e9/rate − prefill)/(output·pp)) − hop``, exactly
        (with ``tokens·1e9/rate = a/b``: ``(r·a − prefill·b) // (output·pp·b) − hop``)."""
        k = Fraction(self.batch * self.output_len * NS_PER_S) / Fraction(rate)
        hop = self.hop_dec if self.pp > 1 else 0
        return ((replicas * k.numerator - self.prefill_batch_ns * k.denominator)
                // (self.output_len * self.pp * k.denominator) - hop)

    @property
    def thresholds(self) -> list[tuple[int, int]]:
        """``(r, M_r)`` for ``r_min <= r < r_max``: ``r`` replicas suffice iff ``M <= M_r``."""
        if self.r_max <= self.r_min or self.rate_total is None:
            return []
        return [(r, self.m_for_replicas(r, self.rate_total))
                for r in range(self.r_min, self.r_max)]

    def max_m_for_rate(self, tokens_per_s_times_ns: Fraction) -> int:
        """Largest bottleneck M with ``cycle_ns(M) <= tokens·1e9 / rate`` (exact)."""
        hop = self.hop_dec if self.pp > 1 else 0
        budget = tokens_per_s_times_ns - self.prefill_batch_ns
        return math.floor(budget / (self.output_len * self.pp)) - hop

    def __post_init__(self) -> None:
        """Goal-independent aggregates, computed once (pools bound every candidate again)."""
        layer_mem = np.diff(self.mem_prefix)
        layer_dec = np.diff(self.dec_prefix)
        pp = self.pp
        self.total_mem = (int(self.mem_prefix[-1]) + pp * self.mem_every + self.mem_first
                          + self.mem_last)
        # The largest memory any stage must hold at least: one layer (+ its stage's extras).
        self.min_stage_mem = max(
            int(layer_mem.max()) + self.mem_every,
            int(layer_mem[0]) + self.fixed_mem(0),
            int(layer_mem[-1]) + self.fixed_mem(pp - 1),
            self.total_mem if pp == 1 else 0,
        )
        total_dec = int(self.dec_prefix[-1]) + self.dec_first + self.dec_last
        self.total_dec = total_dec
        self.m_lb = max(math.ceil(total_dec / pp), int(layer_dec.max()),
                        int(layer_dec[0]) + self.dec_first, int(layer_dec[-1]) + self.dec_last)

    def bounded(
        self, goals: Goals, cap_bytes: int, fixed_replicas: int | None
    ) -> Candidate | None:
        """A copy with the goal-dependent bounds filled in; None when no partition of this
        tuple can meet the goals (a valid pruning: each test is a necessary condition)."""
        # Memory: the stages together hold everything; each stage holds at least one layer.
        if self.total_mem > self.pp * cap_bytes or self.min_stage_mem > cap_bytes:
            return None
        if goals.ttft_ns is not None and self.ttft_ns > goals.ttft_ns:
            return None
        found = self._bound(goals, fixed_replicas)
        if found is None:
            return None
        c = copy.copy(self)
        c.m_cap, c.r_min, c.r_max, c.rate_total = found
        return c

    def _bound(
        self, goals: Goals, fixed_replicas: int | None
    ) -> tuple[int, int, int, float | None] | None:
        """``(m_cap, r_min, r_max, total rate)`` under ``goals``, or None when they cannot be
        met; ``r_max > r_min`` means the replica count depends on M (see ``thresholds``)."""
        pp, m_lb = self.pp, self.m_lb
        m_cap = self.total_dec
        tokens = self.batch * self.output_len
        if goals.tpot_ns is not None:
            hop = self.hop_dec if pp > 1 else 0
            m_cap = min(m_cap, goals.tpot_ns // pp - hop)
        if goals.min_rate_per_gpu is not None:
            m_cap = min(m_cap, self.max_m_for_rate(
                Fraction(tokens * NS_PER_S) / (Fraction(goals.min_rate_per_gpu)
                                               * self.gpus_per_instance)))
        if m_cap < m_lb:
            return None
        # Replicas for the total-throughput target: a step function of M.
        rate = goals.min_rate_total
        r_max = 0  # no thresholds
        if fixed_replicas is not None:
            r_min = fixed_replicas
            if rate is not None:  # M must stay fast enough for the fixed count
                m_cap = min(m_cap, self.max_m_for_rate(
                    Fraction(fixed_replicas * tokens * NS_PER_S) / Fraction(rate)))
        elif rate is None:
            r_min = 1
        else:
            # Even without a max_gpus target a deployment has at most MAX_GPUS GPUs.
            max_r = min(goals.max_gpus or MAX_GPUS, MAX_GPUS) // self.gpus_per_instance
            r_min = replicas_needed(tokens, self.cycle_ns(m_lb), rate)
            if r_min > max_r:
                return None
            r_max = min(replicas_needed(tokens, self.cycle_ns(m_cap), rate), max_r,
                        r_min + MAX_REPLICA_STEPS)
            # With at most r_max replicas, M must stay under r_max's threshold.
            m_cap = min(m_cap, self.m_for_replicas(r_max, rate))
        if self.gpus_per_instance * r_min > min(goals.max_gpus or MAX_GPUS, MAX_GPUS):
            return None
        return (m_cap, r_min, r_max, rate) if m_cap >= m_lb else None


def _allowed(name: str, value: int, search: SearchOptions) -> bool:
    if name in search.fix and search.fix[name] != value:
        return False
    return value not in search.forbid.get(name, ())


class Grid(NamedTuple):
    """Degrees of one serving instance (replicas are decided by the model). Duck-types the
    attributes of :class:`Degrees` the cost model reads, at a fraction of the cost."""

    tp: int
    cp: int
    dp: int
    ep: int
    etp: int
    edp: int
    pp: int

    @property
    def gpus_per_instance(self) -> int:
        return self.pp * self.tp * self.cp * self.dp

    def degrees(self, replicas: int = 1) -> Degrees:
        return Degrees(**self._asdict(), replicas=replicas)


class TupleSpace:
    """Every (grid, batch, redundant slots) the search space allows and the verifier's
    structural rules accept, generated lazily in order of ``gpus_per_instance`` (the static
    lower bound), so a solve that ends at a few GPUs never enumerates the large grids."""

    def __init__(self, instance: Instance):
        m, hw, s = instance.model, instance.hardware, instance.search
        gpn = hw.gpus_per_node
        tps = [t for t in divisors(m.attention.num_heads) if _allowed("tp", t, s)
               and (s.tp_cross_node or (t <= gpn and gpn % t == 0))]
        # Context parallelism in powers of two (ring attention implementations split that way).
        cps = [c for c in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
               if c <= s.max_cp and _allowed("cp", c, s)]
        self.pps = [p for p in range(1, min(s.max_pp, m.num_layers) + 1) if _allowed("pp", p, s)]
        batches = instance.workload.batch_choices
        dps = sorted({x for b in batches for x in divisors(b)
                      if x <= s.max_dp and _allowed("dp", x, s)})
        has_moe = bool(m.moe_layers)
        # Inner grids (one stage's degrees) with their batches, in order of GPUs per stage.
        self.inner: list[tuple[int, tuple[int, ...], int, list[int]]] = []
        for tp in tps:
            for cp in cps:
                for dp in dps:
                    n = tp * cp * dp
                    if n > MAX_GPUS:  # no deployment holds a stage this large
                        continue
                    fits = [b for b in batches if b % dp == 0]
                    # etp must divide the expert width and ep the expert slots (the verifier's
                    # rules): enumerate only those divisors of the stage, not every pair.
                    for etp in (e for e in divisors(n) if m.expert_ffn_width % e == 0):
                        for ep in (x for x in divisors(n // etp)
                                   if x == 1 or not has_moe
                                   or (m.num_experts + s.redundant_experts) % x == 0):
                            edp = n // (etp * ep)
                            if not all(_allowed(k, v, s) for k, v in
                                       (("etp", etp), ("ep", ep), ("edp", edp))):
                                continue
                            red = redundant_for(m.num_experts, ep, s.redundant_experts) \
                                if has_moe else 0
                            if red is None:
                                continue
                            base = Degrees(tp=tp, cp=cp, dp=dp, ep=ep, etp=etp, edp=edp)
                            # The batch only enters through dp | batch, guaranteed above.
                            if structural_violations(m, hw, s, base, dp, red):
                                continue
                            self.inner.append((n, (tp, cp, dp, ep, etp, edp), red, fits))
        self.inner.sort(key=lambda x: x[0])

    @property
    def empty(self) -> bool:
        return not self.inner or not self.pps

    def between(self, lo: float, hi: float) -> list[tuple[Grid, int, int]]:
        """Tuples with ``lo < gpus_per_instance <= hi``, in increasing order of it."""
        out = []
        for n, (tp, cp, dp, ep, etp, edp), red, fits in self.inner:
            if n > hi:
                break
            for pp in self.pps:
                g = pp * n
                if g > hi or g > MAX_GPUS:
                    break
                if g > lo:
                    out.extend((Grid(tp, cp, dp, ep, etp, edp, pp), b, red) for b in fits)
        out.sort(key=lambda t: t[0].gpus_per_instance)
        return out

    def next_above(self, lo: float) -> float:
        """The smallest ``gpus_per_instance`` above ``lo`` (INF when there is none)."""
        best = INF
        for n, _, _, _ in self.inner:
            if n > best:
                break
            p = next((p for p in self.pps if p * n > lo), None)
            if p is not None and p * n <= MAX_GPUS:
                best = min(best, p * n)
        return best

    def all(self) -> list[tuple[Grid, int, int]]:
        return self.between(0, INF)


def degree_tuples(instance: Instance) -> list[tuple[Grid, int, int]]:
    """Every tuple of the search space, in order of GPUs per instance."""
    return TupleSpace(instance).all()


# ----------------------------------------------------------------------------------------------
# Expert placement per (ep, layer)
# ----------------------------------------------------------------------------------------------


class Placements:
    """Placement sub-model results per (ep, MoE layer), solved lazily and cached."""

    def __init__(self, prep: Prepared, time_limit_s: float, workers: int, seed: int):
        self.prep = prep
        self.time_limit_s = time_limit_s
        self.workers = workers
        self.seed = seed
        self._by_ep: dict[tuple[int, int], dict[int, PlacementResult]] = {}

    def results(self, ep: int, redundant: int) -> dict[int, PlacementResult]:
        key = (ep, redundant)
        if key not in self._by_ep:
            res = {}
            for layer in self.prep.moe_layers:
                loads = self.prep.loads[self.prep.moe_index[layer]]
                res[layer] = place_experts_cached(
                    loads, ep, redundant, time_limit_s=self.time_limit_s,
                    workers=self.workers, seed=self.seed)
            self._by_ep[key] = res
        return self._by_ep[key]

    def hot(self, ep: int, redundant: int, *, lower: bool = False) -> dict[int, tuple[int, int]]:
        """``layer -> (hottest load units, slots on the hottest rank)``; with ``lower`` the
        proved lower bound instead of the placement's hottest (for the GPU lower bound)."""
        slots = (self.prep.model.num_experts + redundant) // ep
        return {layer: ((r.lower_bound if lower else r.hottest), slots)
                for layer, r in self.results(ep, redundant).items()}

    def all_optimal(self, ep: int, redundant: int) -> bool:
        return all(r.hottest == r.lower_bound for r in self.results(ep, redundant).values())


# ----------------------------------------------------------------------------------------------
# Costing the candidates
# ----------------------------------------------------------------------------------------------


def cost_candidates(
    prep: Prepared,
    tuples: list[tuple[Grid, int, int]],
    placements: Placements,
    *,
    lower: bool = False,
) -> list[Candidate]:
    """Cost every tuple. Layers of one kind with equal hottest load share one cost evaluation
    (the per-layer-permuted power law makes all MoE layers of a kind equal)."""
    cm = prep.cm
    L = prep.model.num_layers
    out = []
    sig_cache: dict[tuple[int, int], tuple] = {}
    for d, batch, red in tuples:
        key = (d.ep, red)
        if key not in sig_cache:
            hot = placements.hot(d.ep, red, lower=lower) if prep.moe_layers else {}
            sig_ids: dict[tuple, int] = {}
            reps: list[int] = []
            idx = np.zeros(L, dtype=np.int64)
            for layer in range(L):
                sig = (cm.kind[layer], hot.get(layer))
                if sig not in sig_ids:
                    sig_ids[sig] = len(reps)
                    reps.append(layer)
                idx[layer] = sig_ids[sig]
            counts = np.bincount(idx, minlength=len(reps))
            max_frac = max((h for h, _ in hot.values()), default=0) / LOAD_RESOLUTION
            sig_cache[key] = (idx, reps, counts, hot, max_frac)
        idx, reps, counts, hot, max_frac = sig_cache[key]
        costs = [cm.layer_cost(layer, d, batch, *_hot_args(hot, layer)) for layer in reps]
        mem = np.array([c.mem_bytes for c in costs], dtype=np.int64)
        dec = np.array([c.decode_ns for c in costs], dtype=np.int64)
        pre = int(np.dot(counts, [c.prefill_ns for c in costs]))
        pre_typ = int(np.dot(counts, [c.prefill_typical_ns for c in costs]))
        ex = cm.stage_extras(d, batch, max_frac)
        pp = d.pp
        ttft = pre + ex.first_prefill_ns + ex.last_prefill_ns + (pp - 1) * ex.hop_prefill_ns
        prefill_typ = (pre_typ + ex.first_prefill_typical_ns + ex.last_prefill_typical_ns
                       + (pp - 1) * ex.hop_prefill_typical_ns)
        out.append(Candidate(
            d=d, batch=batch, redundant=red,
            mem_prefix=np.concatenate(([0], np.cumsum(mem[idx]))),
            dec_prefix=np.concatenate(([0], np.cumsum(dec[idx]))),
            mem_first=ex.first_weight_bytes,
            mem_last=ex.last_weight_bytes + ex.last_bytes,
            mem_every=ex.every_bytes,
            dec_first=ex.first_decode_ns,
            dec_last=ex.last_decode_ns,
            hop_dec=ex.hop_decode_ns,
            ttft_ns=ttft,
            prefill_batch_ns=ceil_div(prefill_typ, pp),
            output_len=prep.instance.workload.output_len,
        ))
    return out


def _hot_args(hot: dict[int, tuple[int, int]], layer: int) -> tuple[int, int, int]:
    h, slots = hot.get(layer, (0, 0))
    return h, LOAD_RESOLUTION, slots


class Coster:
    """Costs tuples lazily in order of ``gpus_per_instance``, a valid lower bound on the GPUs of
    any plan built from the tuple (replicas >= 1), so that tuples that cannot matter are never
    costed."""

    def __init__(self, prep: Prepared, space: TupleSpace, placements: Placements, *,
                 lower: bool = False):
        self.prep = prep
        self.space = space
        self.placements = placements
        self.lower = lower
        self.tuples: list[tuple[Grid, int, int]] = []  # generated so far, by static bound
        self.static_lb: list[int] = []
        self.generated_upto: float = 0
        self.costed: list[Candidate] = []
        self.should_stop: Callable[[], bool] | None = None

    def upto(self, limit: float, deadline: float = INF) -> list[Candidate]:
        """Every tuple whose static lower bound is at most ``limit``, costed — or, when the
        deadline passes first, the prefix costed so far (``complete`` says which)."""
        if limit > self.generated_upto:
            new = self.space.between(self.generated_upto, limit)
            self.tuples += new
            self.static_lb += [t[0].gpus_per_instance for t in new]
            self.generated_upto = limit
        n = bisect.bisect_right(self.static_lb, limit)
        while len(self.costed) < n and time.monotonic() < deadline:
            if self.should_stop is not None and self.should_stop():
                raise Cancelled("the solve was cancelled")
            chunk = self.tuples[len(self.costed):min(n, len(self.costed) + COST_CHUNK)]
            self.costed += cost_candidates(self.prep, chunk, self.placements, lower=self.lower)
        return self.costed[:n]

    def complete(self, limit: float) -> bool:
        return (self.generated_upto >= limit
                and len(self.costed) >= bisect.bisect_right(self.static_lb, limit))

    def lb_from(self, index: int) -> float:
        """Lower bound of every tuple from position ``index`` on (generated or not)."""
        if index < len(self.static_lb):
            return self.static_lb[index]
        return self.space.next_above(self.generated_upto)


class Pool:
    """The candidates that can meet ``goals``, admitted level by level."""

    def __init__(self, coster: Coster, goals: Goals, cap_bytes: int, search: SearchOptions):
        self.coster = coster
        self.goals = goals
        self.cap = cap_bytes
        self.fixed_r = search.fix.get("replicas")
        self.cands: list[Candidate] = []
        self._seen = 0

    def upto(self, limit: int, deadline: float = INF) -> list[Candidate]:
        raw = self.coster.upto(limit, deadline)
        for i in range(self._seen, len(raw)):
            if i % COST_CHUNK == 0 and time.monotonic() >= deadline:
                break
            b = raw[i].bounded(self.goals, self.cap, self.fixed_r)
            if b is not None:
                self.cands.append(b)
            self._seen = i + 1
        return [c for c in self.cands if c.gpu_lb <= limit]

    def complete(self, limit: float) -> bool:
        """Every tuple with static bound <= ``limit`` has been costed and bounded."""
        return self.coster.complete(limit) and self._seen >= bisect.bisect_right(
            self.coster.static_lb, limit)

    def excluded_lb(self, limit: int) -> int:
        """A lower bound on the GPUs of every candidate that ``upto(limit)`` leaves out."""
        bounded = min((c.gpu_lb for c in self.cands if c.gpu_lb > limit), default=INF)
        # Tuples this pool has not bounded yet (costed, generated or not) come later in
        # static-bound order.
        return min(bounded, self.coster.lb_from(self._seen))

    def first_limit(self) -> float:
        return self.coster.space.next_above(0)


# ----------------------------------------------------------------------------------------------
# The CP-SAT model
# ----------------------------------------------------------------------------------------------


class PlannerModel:
    """Decision variables for a list of candidates and the questions asked of them."""

    def __init__(self, cands: list[Candidate], cap_bytes: int, search: SearchOptions,
                 max_gpus: int | None = None, should_stop: Callable[[], bool] | None = None):
        self.cands = cands
        self.model = cp_model.CpModel()
        self.sel: list[cp_model.IntVar] = []
        self.pos: list[list[cp_model.IntVar]] = []
        self.M: list[cp_model.IntVar] = []
        self.idx: list[cp_model.IntVar | int] = []
        self.extra: list[cp_model.IntVar | int] = []
        # Extra replicas only help to step over forbidden counts, and never when they are fixed.
        forbidden = () if "replicas" in search.fix else search.forbid.get("replicas", ())
        m = self.model
        for t, c in enumerate(cands):
            if should_stop is not None and t % 64 == 0 and should_stop():
                raise Cancelled("the solve was cancelled")
            sel = m.new_bool_var(f"sel[{t}]")
            self.sel.append(sel)
            M = m.new_int_var(0, c.m_cap, f"M[{t}]")
            self.M.append(M)
            self._add_stages(t, c, sel, M, cap_bytes)
            self._add_replicas(t, c, sel, M)
            self.extra.append(self._add_extra_replicas(t, c, sel, forbidden, max_gpus))
        m.add_exactly_one(self.sel)
        for v in forbidden:
            m.add(self.replicas_expr() != v)
        if max_gpus is not None:
            m.add(self.gpus_expr() <= max_gpus)

    # -- constraints, one family per method -----------------------------------------------------

    def _add_stages(self, t: int, c: Candidate, sel, M, cap_bytes: int) -> None:
        """Contiguous stages: ``pos[0] = 0 < pos[1] < … < pos[pp] = L``; stage ``s`` holds layers
        ``pos[s] … pos[s+1]-1``; its memory and decode time are prefix-sum differences."""
        m, L, pp = self.model, c.num_layers, c.pp
        pos: list = [0]
        for k in range(1, pp):
            pos.append(m.new_int_var(k, L - pp + k, f"pos[{t},{k}]"))
        pos.append(L)
        self.pos.append(pos)
        for k in range(1, pp - 1):
            m.add(pos[k] + 1 <= pos[k + 1])
        mem_prefix = [int(x) for x in c.mem_prefix]
        dec_prefix = [int(x) for x in c.dec_prefix]
        mem_at: list = [0]
        dec_at: list = [0]
        for k in range(1, pp):
            # Domains: exactly the prefix sums a boundary at pos[k] can produce.
            em = m.new_int_var_from_domain(
                cp_model.Domain.from_values(mem_prefix[k:L - pp + k + 1]), f"mem_at[{t},{k}]")
            ed = m.new_int_var_from_domain(
                cp_model.Domain.from_values(dec_prefix[k:L - pp + k + 1]), f"dec_at[{t},{k}]")
            m.add_element(pos[k], mem_prefix, em)
            m.add_element(pos[k], dec_prefix, ed)
            mem_at.append(em)
            dec_at.append(ed)
        mem_at.append(mem_prefix[L])
        dec_at.append(dec_prefix[L])
        for s in range(pp):
            m.add(mem_at[s + 1] - mem_at[s] + c.fixed_mem(s) <= cap_bytes).only_enforce_if(sel)
            m.add(dec_at[s + 1] - dec_at[s] + c.fixed_dec(s) <= M).only_enforce_if(sel)
        # Redundant cuts (implied by the stage constraints summed over the first k stages and
        # over the rest): they let propagation tie the boundaries to M and to the memory cap.
        fixed_dec = [c.fixed_dec(s) for s in range(pp)]
        fixed_mem = [c.fixed_mem(s) for s in range(pp)]
        for k in range(1, pp):
            head_dec, tail_dec = sum(fixed_dec[:k]), sum(fixed_dec[k:])
            m.add(dec_at[k] + head_dec <= k * M).only_enforce_if(sel)
            m.add(dec_prefix[L] - dec_at[k] + tail_dec <= (pp - k) * M).only_enforce_if(sel)
            head_mem, tail_mem = sum(fixed_mem[:k]), sum(fixed_mem[k:])
            m.add(mem_at[k] + head_mem <= k * cap_bytes).only_enforce_if(sel)
            m.add(mem_prefix[L] - mem_at[k] + tail_mem <= (pp - k) * cap_bytes
                  ).only_enforce_if(sel)
        # Symmetry breaking: an unchosen tuple's boundaries are irrelevant; pin them.
        for k in range(1, pp):
            m.add(pos[k] == k).only_enforce_if(~sel)

    def _add_replicas(self, t: int, c: Candidate, sel, M) -> None:
        """Replicas ``r_min + idx[t]``: ``table[i]`` is the slowest stage time that ``r_min + i``
        replicas allow under the total-throughput target, so ``M <= table[idx]``."""
        thresholds = c.thresholds
        if not thresholds:
            self.idx.append(0)
            return
        table = [m_r for _, m_r in thresholds] + [c.m_cap]
        idx = self.model.new_int_var(0, len(table) - 1, f"extra_needed[{t}]")
        allowed = self.model.new_int_var(min(table), max(table), f"m_allowed[{t}]")
        self.model.add_element(idx, table, allowed)
        self.model.add(M <= allowed).only_enforce_if(sel)
        self.model.add(idx == 0).only_enforce_if(~sel)
        self.idx.append(idx)

    def _add_extra_replicas(self, t: int, c: Candidate, sel, forbidden, max_gpus):
        """Replicas beyond what the targets need, only useful to step over forbidden counts."""
        if not forbidden:
            return 0
        top = max(forbidden) + 1
        if max_gpus is not None:
            top = min(top, max(0, max_gpus // c.gpus_per_instance - c.r_min))
        x = self.model.new_int_var(0, top, f"extra_replicas[{t}]")
        self.model.add(x == 0).only_enforce_if(~sel)
        return x

    # -- expressions ---------------------------------------------------------------------------

    def _replicas(self, t: int):
        return self.cands[t].r_min * self.sel[t] + self.idx[t] + self.extra[t]

    def replicas_expr(self):
        return sum(self._replicas(t) for t in range(len(self.cands)))

    def gpus_expr(self):
        return sum(c.gpus_per_instance * self._replicas(t) for t, c in enumerate(self.cands))

    def gpu_time_per_token_expr(self):
        """``SCALE · gpus_per_instance · cycle / tokens`` — the inverse of tokens/s per GPU.
        On extreme inputs (hour-long prefills) the coefficients are divided by one common factor
        so that every term stays well inside CP-SAT's 64-bit integers."""
        coefs = [c.gpu_time_coefficients() for c in self.cands]
        largest = max((a * c.m_cap + b for (a, b), c in zip(coefs, self.cands, strict=True)),
                      default=0)
        div = max(1, -(-largest // TIE_BREAK_MAX_TERM))
        terms = []
        for (a, b), s, M in zip(coefs, self.sel, self.M, strict=True):
            terms.append((a // div) * M + (b // div) * s)
        return sum(terms)

    def ttft_expr(self):
        return sum(c.ttft_ns * s for c, s in zip(self.cands, self.sel, strict=True))

    def tpot_expr(self):
        return sum(c.pp * M + c.pp * (c.hop_dec if c.pp > 1 else 0) * s
                   for c, s, M in zip(self.cands, self.sel, self.M, strict=True))

    # -- answers -------------------------------------------------------------------------------

    def chosen(self, solver: cp_model.CpSolver) -> int:
        return next(t for t, s in enumerate(self.sel) if solver.boolean_value(s))

    def extract(self, solver: cp_model.CpSolver) -> tuple[Candidate, list[tuple[int, int]], int]:
        t = self.chosen(solver)
        c = self.cands[t]
        pos = [p if isinstance(p, int) else solver.value(p) for p in self.pos[t]]
        bounds = [(pos[s], pos[s + 1] - 1) for s in range(c.pp)]
        replicas = c.r_min + sum(v if isinstance(v, int) else solver.value(v)
                                 for v in (self.idx[t], self.extra[t]))
        return c, bounds, replicas

    def hint(self, solver: cp_model.CpSolver) -> None:
        """Complete hint from a previous solve of the same model (warm start)."""
        self.model.clear_hints()
        for t in range(len(self.cands)):
            self.model.add_hint(self.sel[t], solver.boolean_value(self.sel[t]))
            self.model.add_hint(self.M[t], solver.value(self.M[t]))
            for p in self.pos[t]:
                if not isinstance(p, int):
                    self.model.add_hint(p, solver.value(p))
            for v in (self.idx[t], self.extra[t]):
                if not isinstance(v, int):
                    self.model.add_hint(v, solver.value(v))


# ----------------------------------------------------------------------------------------------
# Solving
# ----------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    status: str  # OPTIMAL | FEASIBLE | INFEASIBLE | UNKNOWN
    candidate: Candidate | None = None
    bounds: list[tuple[int, int]] | None = None
    replicas: int = 1
    objective: int | None = None
    bound: int | None = None
    objectives: dict[str, int] = field(default_factory=dict)
    improving: int = 0
    conflicts: int = 0


#: Called with each improving (grid candidate, stage bounds, replicas, GPUs, GPU bound).
ImprovementHook = Callable[[Candidate, list[tuple[int, int]], int, int, int], None]


class _Improvements(cp_model.CpSolverSolutionCallback):
    """Counts improving solutions, reports them to ``hook`` and stops the search when
    ``should_stop()`` turns true (checked at every solution and by a watchdog)."""

    def __init__(self, pm: PlannerModel, hook: ImprovementHook | None,
                 should_stop: Callable[[], bool] | None, *, proved_gpus: int | None = None,
                 below: tuple[str, int] | None = None) -> None:
        super().__init__()
        self.pm = pm
        self.hook = hook
        self.should_stop = should_stop
        self.proved_gpus = proved_gpus  # tie-break stages: the GPU count is fixed and proved
        self.below = below  # tie-break stages: (objective, value of the best plan so far)
        self.count = 0

    def on_solution_callback(self) -> None:
        if self.below is None:
            self.count += 1
            if self.hook is not None:
                c, bounds, replicas = self.pm.extract(self)
                self.hook(c, bounds, replicas, round(self.objective_value),
                          round(self.best_objective_bound))
        else:
            # A tie-break stage: compare what the plan achieves, not the model's variables.
            c, bounds, replicas = self.pm.extract(self)
            value = c.plan_objective(bounds, self.below[0])
            if value < self.below[1]:
                self.count += 1
                self.below = (self.below[0], value)
                if self.hook is not None:
                    self.hook(c, bounds, replicas, self.proved_gpus, self.proved_gpus)
        if self.should_stop is not None and self.should_stop():
            self.stop_search()


def _new_solver(time_s: float, workers: int, seed: int) -> cp_model.CpSolver:
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(0.01, time_s)
    solver.parameters.num_workers = workers
    solver.parameters.random_seed = seed
    return solver


def solve_candidates(
    pool: Pool,
    search: SearchOptions,
    deadline: float,
    *,
    objective: str = "gpus",
    tie_breaks: bool = True,
    hook: ImprovementHook | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Outcome:
    """Lexicographic solve with level-by-level admission (see the module docstring): the model
    holds the candidates whose GPU lower bound is at most ``limit``; the answer is final once its
    GPU count is below the lower bound of everything left out."""
    if objective != "gpus":
        return _best_first(pool, search, deadline, objective, should_stop)
    cap_bytes = pool.cap
    limit = pool.first_limit()
    improving = 0
    best: Outcome | None = None  # a plan found at a smaller limit, not yet proved
    while True:
        if should_stop is not None and should_stop():
            raise Cancelled("the solve was cancelled")
        if limit == INF and pool.coster.space.empty:
            return Outcome("INFEASIBLE")
        sub = pool.upto(limit, deadline)
        excluded_lb = pool.excluded_lb(limit)
        if time.monotonic() >= deadline and not pool.complete(limit):
            return _out_of_time(best, min(excluded_lb, limit), improving)
        if not sub:
            if excluded_lb == INF:
                return Outcome("INFEASIBLE", improving=improving)
            limit = max(excluded_lb, 2 * limit)
            continue
        pm = PlannerModel(sub, cap_bytes, search, pool.goals.max_gpus, should_stop)
        exprs = {
            "gpus": pm.gpus_expr, "gpu_time": pm.gpu_time_per_token_expr,
            "ttft": pm.ttft_expr, "tpot": pm.tpot_expr,
        }
        pm.model.minimize(exprs[objective]())
        solver = _new_solver(deadline - time.monotonic(), search.workers, search.random_seed)
        counter = _Improvements(pm, hook if objective == "gpus" else None, should_stop)
        with _watchdog(solver, should_stop):
            status = solver.solve(pm.model, counter)
        improving += counter.count
        if should_stop is not None and should_stop():
            raise Cancelled("the solve was cancelled")
        if status == cp_model.INFEASIBLE:
            if excluded_lb == INF:
                return Outcome("INFEASIBLE", improving=improving)
            limit = max(excluded_lb, 2 * limit)  # admit more: at least double the GPU budget
            continue
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            bound = min(int(solver.best_objective_bound), excluded_lb)
            return _out_of_time(best, bound if objective == "gpus" else None, improving)
        value = round(solver.objective_value)
        if objective == "gpus" and value >= excluded_lb:
            # A left-out tuple might tie or beat this plan: admit everything up to its count.
            c, bounds, replicas = pm.extract(solver)
            best = Outcome("FEASIBLE", c, bounds, replicas, objective=value,
                           bound=excluded_lb, objectives={objective: value})
            limit = value
            continue
        proved = status == cp_model.OPTIMAL
        bound = round(solver.best_objective_bound)
        if objective == "gpus":
            bound = min(bound, excluded_lb)
        out_objs = {objective: value}
        if proved and tie_breaks and objective == "gpus":
            # Lexicographic: fix the GPU count, then the tie-breaks in order.
            pm.model.add(pm.gpus_expr() == value)
            for name in ("gpu_time", "ttft"):
                pm.hint(solver)
                pm.model.minimize(exprs[name]())
                prev = solver
                # Lexicographic improvements are improving plans too: stream those that beat
                # the plan in hand on this tie-break.
                best_c, best_bounds, _ = pm.extract(prev)
                current = best_c.plan_objective(best_bounds, name)
                solver = _new_solver(deadline - time.monotonic(), search.workers,
                                     search.random_seed)
                cb = _Improvements(pm, hook, should_stop, proved_gpus=value,
                                   below=(name, current))
                with _watchdog(solver, should_stop):
                    st = solver.solve(pm.model, cb)
                improving += cb.count
                if should_stop is not None and should_stop():
                    raise Cancelled("the solve was cancelled")
                if st not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
                    solver = prev  # keep the last answer we have
                    break
                v = round(solver.objective_value)
                out_objs[name] = v
                if st != cp_model.OPTIMAL:
                    break
                pm.model.add(exprs[name]() == v)
        c, bounds, replicas = pm.extract(solver)
        return Outcome(
            "OPTIMAL" if proved else "FEASIBLE", c, bounds, replicas, objective=value,
            bound=bound, objectives=out_objs, improving=improving,
        )


def _best_first(
    pool: Pool,
    search: SearchOptions,
    deadline: float,
    objective: str,
    should_stop: Callable[[], bool] | None,
) -> Outcome:
    """Minimise ``objective`` (ttft, tpot or gpu_time) by best-first search over candidates: in
    increasing order of a valid lower bound, one small CP-SAT model per candidate, until the next
    bound cannot beat the best value found. Exact, and far smaller than one model over all."""
    cands = sorted(pool.upto(INF, deadline), key=lambda c: c.objective_lower_bound(objective))
    best: Outcome | None = None
    proved = True
    for c in cands:
        if best is not None and c.objective_lower_bound(objective) >= best.objective:
            break
        if time.monotonic() >= deadline or (should_stop is not None and should_stop()):
            proved = False
            break
        pm = PlannerModel([c], pool.cap, search, pool.goals.max_gpus)
        expr = {"gpu_time": pm.gpu_time_per_token_expr, "ttft": pm.ttft_expr,
                "tpot": pm.tpot_expr}[objective]()
        pm.model.minimize(expr)
        solver = _new_solver(deadline - time.monotonic(), search.workers, search.random_seed)
        status = solver.solve(pm.model)
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            proved = proved and status == cp_model.INFEASIBLE
            continue
        proved = proved and status == cp_model.OPTIMAL
        value = round(solver.objective_value)
        if best is None or value < best.objective:
            cand, bounds, replicas = pm.extract(solver)
            best = Outcome("FEASIBLE", cand, bounds, replicas, objective=value,
                           objectives={objective: value})
    if best is None:
        return Outcome("INFEASIBLE" if proved and pool.coster.complete(INF) else "UNKNOWN")
    best.status = "OPTIMAL" if proved else "FEASIBLE"
    return best


def _out_of_time(best: Outcome | None, bound: int | None, improving: int) -> Outcome:
    """The deadline passed: the best plan found so far (FEASIBLE) or nothing (UNKNOWN)."""
    if best is None:
        return Outcome("UNKNOWN", bound=bound, improving=improving)
    if bound is not None:
        best.bound = min(best.bound if best.bound is not None else INF, bound)
    best.improving = improving
    return best


# ----------------------------------------------------------------------------------------------
# Public entry point
# ----------------------------------------------------------------------------------------------


def solve(
    instance: Instance,
    *,
    time_limit_s: float | None = None,
    workers: int | None = None,
    on_improvement: Callable[[SolveResult], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> SolveResult:
    """Plan ``instance`` with the fewest GPUs; see the module docstring and docs/solver.md.

    ``on_improvement`` receives a FEASIBLE :class:`SolveResult` (plan, metrics, GPUs, bound) for
    each improving plan CP-SAT finds; the final answer is the return value. ``should_stop`` is
    polled during the search; when it turns true the solve raises :class:`Cancelled`."""
    start = time.monotonic()
    search = instance.search
    if time_limit_s is not None or workers is not None:
        search = search.model_copy(update={
            k: v for k, v in (("time_limit_s", time_limit_s), ("workers", workers))
            if v is not None})
    deadline = start + search.time_limit_s
    prep = Prepared(instance)
    cap = round(instance.hardware.hbm_gb * BYTES_PER_GB)
    goals = Goals.of(instance.workload.targets)
    # One placement budget for the whole solve, split over the layers that need their own
    # sub-model (layers whose loads are permutations of each other share one); a function of the
    # instance only, so the same instance always gets the same placements.
    distinct = len({tuple(sorted(x.tolist())) for x in prep.loads}) or 1
    placements = Placements(
        prep, min(PLACEMENT_TIME_CAP_S, PLACEMENT_TIME_SHARE * search.time_limit_s / distinct),
        search.workers, search.random_seed)
    space = TupleSpace(instance)
    coster = Coster(prep, space, placements)
    coster.should_stop = should_stop
    hook = None
    if on_improvement is not None:
        def hook(c: Candidate, bounds, replicas: int, gpus: int, bound: int) -> None:
            plan = _plan_of(c, bounds, replicas, placements, prep)
            on_improvement(SolveResult(
                status="FEASIBLE", plan=plan, metrics=evaluate(prep, plan).metrics,
                objective=gpus, bound=min(bound, gpus),
                gap=max(0.0, (gpus - bound) / gpus) if gpus else None,
                solve_time_s=time.monotonic() - start,
                solver=f"ortools-cpsat {ORTOOLS_VERSION}", tie_breaks=TIE_BREAKS))
    outcome = solve_candidates(Pool(coster, goals, cap, search), search, deadline,
                               hook=hook, should_stop=should_stop)

    if outcome.candidate is None:
        status = "INFEASIBLE" if outcome.status == "INFEASIBLE" else "UNKNOWN"
        explanation = None
        if status == "INFEASIBLE":  # UNKNOWN ran out of time: nothing left to explain with
            explanation = explain(prep, coster, goals, cap, search,
                                  deadline=time.monotonic() + min(
                                      EXPLAIN_BUDGET_MAX_S,
                                      max(EXPLAIN_BUDGET_MIN_S,
                                          EXPLAIN_BUDGET_SHARE * search.time_limit_s)))
        return SolveResult(
            status=status, solve_time_s=time.monotonic() - start,
            solver=f"ortools-cpsat {ORTOOLS_VERSION}", tie_breaks=TIE_BREAKS,
            explanation=explanation, bound=outcome.bound, improving_solutions=outcome.improving)

    c = outcome.candidate
    plan = _plan_of(c, outcome.bounds or [], outcome.replicas, placements, prep)
    d = plan.degrees
    placement_results = placements.results(d.ep, c.redundant) if prep.moe_layers else {}
    report = verify(instance, plan)
    if not report.valid:
        raise PlannerError("planner returned a plan the verifier rejects: "
                           + "; ".join(str(v) for v in report.violations))
    status, bound = outcome.status, outcome.bound
    # Only costed tuples depend on placements: the rest were excluded by GPU bounds that hold
    # whatever their placement.
    if status == "OPTIMAL" and prep.moe_layers and not all(
        placements.all_optimal(ep, red)
        for ep, red in {(c.d.ep, c.redundant) for c in coster.costed}
    ):
        # Some placements are not proved optimal: re-solve with their lower bounds to get a
        # valid lower bound on GPUs; OPTIMAL only if it meets the plan.
        lb_pool = Pool(Coster(prep, space, placements, lower=True), goals, cap, search)
        lb = solve_candidates(lb_pool, search,
                              max(deadline, time.monotonic() + LOWER_BOUND_FLOOR_S),
                              tie_breaks=False)
        lb_val = lb.objective if lb.status == "OPTIMAL" else lb.bound
        bound = min(bound or INF, lb_val if lb_val is not None else 0)
        if bound < outcome.objective:
            status = "FEASIBLE"
    experts = tuple(
        LayerExperts(
            layer=layer,
            hottest_load=r.hottest / LOAD_RESOLUTION,
            greedy_hottest_load=r.greedy_hottest / LOAD_RESOLUTION,
            lower_bound=r.lower_bound / LOAD_RESOLUTION,
            optimal=r.hottest == r.lower_bound,
            replicated_experts=sum(1 for x in np.bincount(
                [e for rank in r.ranks for e in rank], minlength=prep.model.num_experts)
                if x > 1),
        )
        for layer, r in placement_results.items()
    )
    gap = None if bound is None else max(0.0, (outcome.objective - bound) / outcome.objective)
    return SolveResult(
        status=status,
        plan=plan,
        metrics=evaluate(prep, plan).metrics,
        objective=outcome.objective,
        bound=bound,
        gap=gap,
        solve_time_s=time.monotonic() - start,
        solver=f"ortools-cpsat {ORTOOLS_VERSION}",
        tie_breaks=TIE_BREAKS,
        experts=experts,
        improving_solutions=outcome.improving,
    )


def _plan_of(c: Candidate, bounds: list[tuple[int, int]], replicas: int,
             placements: Placements, prep: Prepared) -> Plan:
    results = placements.results(c.d.ep, c.redundant) if prep.moe_layers else {}
    return Plan(
        degrees=c.d.degrees(replicas),
        batch=c.batch,
        stages=tuple(Stage(first_layer=a, last_layer=b) for a, b in bounds),
        placement=tuple(LayerPlacement(layer=layer, ranks=r.ranks)
                        for layer, r in results.items()) or None,
    )


# ----------------------------------------------------------------------------------------------
# Explaining infeasibility
# ----------------------------------------------------------------------------------------------

_TARGET_NAMES = {
    "ttft_ns": "max_ttft_s",
    "tpot_ns": "max_tpot_s",
    "min_rate_per_gpu": "min_output_tokens_per_s_per_gpu",
    "min_rate_total": "min_output_tokens_per_s",
    "max_gpus": "max_gpus",
}


def explain(
    prep: Prepared,
    coster: Coster,
    goals: Goals,
    cap: int,
    search: SearchOptions,
    *,
    deadline: float,
) -> Explanation:
    """Which targets conflict, and the nearest values that a plan can reach."""
    inst = prep.instance

    def feasible(g: Goals, objective: str = "gpus") -> Outcome:
        return solve_candidates(Pool(coster, g, cap, search), search, deadline,
                                objective=objective, tie_breaks=False)

    if coster.space.empty:
        return Explanation(
            summary="No degree tuple satisfies the divisibility and node rules with the search "
            "options given (check search.fix / search.forbid, max_pp/max_cp/max_dp and "
            "redundant_experts).",
            conflicts=("search space",),
        )
    mem_only = goals.without("ttft_ns", "tpot_ns", "min_rate_per_gpu", "min_rate_total",
                             "max_gpus")
    if feasible(mem_only).status == "INFEASIBLE":
        smallest = min(coster.upto(INF), key=lambda c: max(
            (c.mem_prefix[-1] + c.mem_first + c.mem_last) / c.pp + c.mem_every, 0))
        need = (smallest.mem_prefix[-1] + smallest.mem_first + smallest.mem_last) / smallest.pp \
            + smallest.mem_every
        return Explanation(
            summary=f"The model does not fit any allowed grid: even the most sharded one "
            f"({smallest.d.degrees().short()}, batch {smallest.batch}) needs about "
            f"{need / 1e9:.1f} GB per GPU against {inst.hardware.hbm_gb:g} GB. Allow more pipeline "
            f"stages (max_pp), cross-node EP/TP, a smaller batch or context, or lower precision.",
            conflicts=("memory",),
            nearest={"min_gb_per_gpu_needed": round(need / 1e9, 2)},
        )
    # Which targets conflict: each alone (within max GPUs), then pairs.
    active = [k for k in ("ttft_ns", "tpot_ns", "min_rate_per_gpu", "min_rate_total")
              if getattr(goals, k) is not None]
    alone_bad = []
    for k in active:
        g = Goals(max_gpus=goals.max_gpus, **{k: getattr(goals, k)})
        if feasible(g).status == "INFEASIBLE":
            alone_bad.append(k)
    conflicts: list[str] = []
    lines = []
    limit = f" within max_gpus = {goals.max_gpus}" if goals.max_gpus is not None else ""
    for k in alone_bad:
        conflicts.append(_TARGET_NAMES[k] + (" + max_gpus" if goals.max_gpus else ""))
        lines.append(f"{_TARGET_NAMES[k]} alone is out of reach{limit}")
    if not alone_bad:
        for i, a in enumerate(active):
            for b in active[i + 1:]:
                g = Goals(max_gpus=goals.max_gpus, **{a: getattr(goals, a), b: getattr(goals, b)})
                if feasible(g).status == "INFEASIBLE":
                    conflicts.append(f"{_TARGET_NAMES[a]} + {_TARGET_NAMES[b]}")
                    lines.append(f"{_TARGET_NAMES[a]} and {_TARGET_NAMES[b]} cannot both hold"
                                 f"{limit}")
    # Nearest reachable values, each with an equal share of what is left of the budget. Every
    # value is attained by a plan the search found; "not proved" when the share ran out first.
    nearest: dict[str, float] = {}
    unproved: list[str] = []
    within = mem_only if goals.max_gpus is None else Goals(max_gpus=goals.max_gpus)
    steps = ["gpu_time", "ttft", "tpot"] + (["gpus"] if goals.max_gpus is not None else [])
    for i, step in enumerate(steps):
        share = (deadline - time.monotonic()) / (len(steps) - i)
        sub_deadline = time.monotonic() + max(0.05, share)
        if step == "gpus":
            o = solve_candidates(Pool(coster, goals.without("max_gpus"), cap, search), search,
                                 sub_deadline, tie_breaks=False)
        else:
            o = solve_candidates(Pool(coster, within, cap, search), search, sub_deadline,
                                 objective=step, tie_breaks=False)
        if o.candidate is None or o.objective is None:
            continue
        c = o.candidate
        if step == "gpu_time" and o.bounds is not None:
            m = c.slowest_stage_ns(o.bounds)
            key, value = "highest_output_tokens_per_s_per_gpu", (
                c.batch * c.output_len * NS_PER_S / c.cycle_ns(m) / c.gpus_per_instance)
        elif step == "ttft":
            key, value = "lowest_ttft_s", c.ttft_ns / NS_PER_S
        elif step == "tpot":
            key, value = "lowest_tpot_s", o.objective / NS_PER_S
        else:
            key, value = "gpus_needed_without_max_gpus", float(o.objective)
        nearest[key] = value
        if o.status != "OPTIMAL":
            unproved.append(key)
    if not lines:
        if goals.max_gpus is not None and "gpus_needed_without_max_gpus" in nearest:
            conflicts.append("max_gpus")
            lines.append(f"the targets together need {int(nearest['gpus_needed_without_max_gpus'])}"
                         f" GPUs, above max_gpus = {goals.max_gpus}")
        else:
            conflicts.append(" + ".join(_TARGET_NAMES[k] for k in active) or "targets")
            lines.append("the targets cannot all hold at once")
    near = ", ".join(f"{k} = {v:.4g}" + (" (best found, not proved)" if k in unproved else "")
                     for k, v in nearest.items())
    return Explanation(
        summary="No plan meets every target: " + "; ".join(lines) + "."
        + (f" Nearest reachable: {near}." if near else ""),
        conflicts=tuple(conflicts),
        nearest=nearest,
    )
