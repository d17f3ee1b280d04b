"""Metrics of a fixed plan: the cost model assembled over stages, with a per-term breakdown.

:func:`assemble` is the single place where per-layer integers become stage memory and stage step
times, and where :mod:`solver.timing` turns those into TPOT, TTFT and rates; the estimator, the
verifier, the reference search and the planner's extraction all go through it (the planner's
CP-SAT model states the same sums as constraints and is checked against it on every answer).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cached_property

import numpy as np

from solver import timing
from solver.baselines import greedy_placement
from solver.costmodel import BYTES_PER_GB, CostModel, HotRank, LayerCost, StageExtras
from solver.loads import LOAD_RESOLUTION, layer_loads
from solver.rules import default_redundant
from solver.schema import Grid, Instance, Metrics, Plan, Stage, ceil_div
from solver.space import PlanSpace

NS_PER_S = timing.NS_PER_S


# ----------------------------------------------------------------------------------------------
# Expert load on EP ranks
# ----------------------------------------------------------------------------------------------


def rank_loads(loads: np.ndarray, ranks: tuple[tuple[int, ...], ...]) -> np.ndarray:
    """Load units each EP rank receives. An expert with ``n`` replicas sends ``ceil(load / n)`` to
    each (rounded up so the integer model never understates the hottest rank)."""
    flat = np.fromiter((e for r in ranks for e in r), dtype=np.int64)
    owner = np.repeat(np.arange(len(ranks)), [len(r) for r in ranks])
    valid = (flat >= 0) & (flat < len(loads))
    flat, owner = flat[valid], owner[valid]
    replicas = np.bincount(flat, minlength=len(loads))
    per_slot = -(-loads[flat] // np.maximum(replicas[flat], 1))
    return np.bincount(owner, weights=per_slot, minlength=len(ranks)).astype(np.int64)


@functools.lru_cache(maxsize=4096)
def _greedy_sorted(loads: tuple[int, ...], ep: int, redundant: int
                   ) -> tuple[tuple[int, ...], ...]:
    """The EPLB greedy of loads sorted descending, once per multiset in the process (instances
    of one model share their layers' loads)."""
    return greedy_placement(np.array(loads, dtype=np.int64), ep, redundant).ranks


def balanced_stages(num_layers: int, pp: int) -> tuple[Stage, ...]:
    """Contiguous stages of near-equal layer counts (the first ``L mod pp`` one layer longer)."""
    out, start = [], 0
    for s in range(pp):
        n = num_layers // pp + (1 if s < num_layers % pp else 0)
        if n == 0:
            break
        out.append(Stage(first_layer=start, last_layer=start + n - 1))
        start += n
    return tuple(out)


def batch_position(grid: Grid, batch: int) -> tuple[int, int]:
    """``(q, s)``: sequences per attention-DP rank, and per rank and microbatch (the largest of
    the ``pp`` microbatches, which sets the step time)."""
    q = ceil_div(batch, grid.dp)
    return q, ceil_div(q, grid.pp)


# ----------------------------------------------------------------------------------------------
# Assembly
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Assembled:
    """Integer results of one plan (one instance; replicas multiply the rates)."""

    stage_mem_bytes: tuple[int, ...]
    stage_avg_ns: tuple[int, ...]
    stage_full_ns: tuple[int, ...]
    slowest_ns: int
    slowest_full_ns: int
    hop_ns: int
    hop_full_ns: int
    overhead_ns: int
    tpot_ns: int
    round_ns: int
    ttft_ns: int
    batch: int
    s: int
    prefill_share: Fraction | None
    rounds: Fraction | None

    @property
    def peak_mem_bytes(self) -> int:
        return max(self.stage_mem_bytes)


def stage_memory(costs: list[LayerCost], extras: StageExtras, a: int, b: int, stage: int,
                 pp: int, q: int, s: int) -> int:
    """Bytes one GPU of the stage holding layers ``a..b`` needs with ``q`` sequences per rank:
    weights, the KV cache of ``q`` sequences at the mean context (at least one at the maximum),
    the stage's extras."""
    layers = costs[a:b + 1]
    kv = max(q * sum(c.kv_seq_bytes for c in layers), sum(c.kv_max_bytes for c in layers))
    mem = sum(c.weight_bytes for c in layers) + kv + extras.mem_every
    if stage == 0:
        mem += extras.mem_first
    if stage == pp - 1:
        mem += int(extras.mem_last[s - 1])
    return mem


def assemble(costs: list[LayerCost], extras: StageExtras, bounds: list[tuple[int, int]],
             grid: Grid, batch: int, cm: CostModel) -> Assembled:
    """Stage sums and the timing figures from per-layer arrays. ``bounds`` are inclusive
    (first, last) layer ranges of the stages, in order."""
    pp = len(bounds)
    q, s = batch_position(grid, batch)
    i = s - 1
    mem, avg, full = [], [], []
    for st, (a, b) in enumerate(bounds):
        layers = costs[a:b + 1]
        mem.append(stage_memory(costs, extras, a, b, st, pp, q, s))
        t = sum(int(c.avg_ns[i]) for c in layers)
        f = sum(int(c.full_max_ns[i]) for c in layers)
        if st == 0:
            t += int(extras.first_avg_ns[i])
            f += int(extras.first_full_ns[i])
        if st == pp - 1:
            t += int(extras.last_avg_ns[i])
            f += int(extras.last_full_ns[i])
        avg.append(t)
        full.append(f)
    wl = cm.workload
    hop, hop_full = int(extras.hop_avg_ns[i]), int(extras.hop_full_ns[i])
    slowest, slowest_full = max(avg), max(full)
    tpot = timing.tpot_ns(slowest, pp, hop, cm.overhead_ns)
    trip = timing.round_ns(slowest_full, slowest, pp, hop_full, hop, cm.overhead_ns)
    rounds = timing.ttft_rounds(s, wl.input_len, wl.max_input, wl.output_len, cm.budget)
    return Assembled(
        stage_mem_bytes=tuple(mem), stage_avg_ns=tuple(avg), stage_full_ns=tuple(full),
        slowest_ns=slowest, slowest_full_ns=slowest_full, hop_ns=hop, hop_full_ns=hop_full,
        overhead_ns=cm.overhead_ns, tpot_ns=tpot, round_ns=trip,
        ttft_ns=timing.NEVER if rounds is None else timing.ttft_ns(rounds, trip),
        batch=batch, s=s,
        prefill_share=timing.prefill_share_exact(s, wl.input_len, wl.output_len, cm.budget),
        rounds=rounds,
    )


# ----------------------------------------------------------------------------------------------
# A prepared instance: cost model, plan space and loads, shared by every consumer
# ----------------------------------------------------------------------------------------------


class Prepared:
    """An instance with its cost model, plan space and per-layer expert loads computed once."""

    def __init__(self, instance: Instance, calibration: bool = True):
        self.instance = instance
        self.model = instance.model
        self.cm = CostModel(instance, calibration)
        self.space = PlanSpace(instance)
        self.moe_layers = instance.model.moe_layers
        self.loads: list[np.ndarray] = layer_loads(instance.model, instance.expert_load)
        self.moe_index = {layer: i for i, layer in enumerate(self.moe_layers)}

    @cached_property
    def max_load_share(self) -> float:
        return max((float(x.max()) / LOAD_RESOLUTION for x in self.loads), default=0.0)

    def hot_from_placement(self, ranks_by_layer: dict[int, tuple[tuple[int, ...], ...]]
                           ) -> dict[int, HotRank]:
        hot = {}
        for layer, ranks in ranks_by_layer.items():
            rl = rank_loads(self.loads[self.moe_index[layer]], ranks)
            r = int(np.argmax(rl))
            hot[layer] = HotRank(int(rl[r]), max(len(x) for x in ranks))
        return hot

    def eplb_placement(self, ep: int, redundant: int) -> dict[int, tuple[tuple[int, ...], ...]]:
        """What an engine's EPLB does with ``redundant`` slots on ``ep`` ranks: DeepSeek's
        greedy (water-filling replication, then longest-processing-time packing), per layer;
        layers whose loads are permutations of each other share one run."""
        return {layer: self._eplb_layer(layer, ep, redundant) for layer in self.moe_layers}

    def _eplb_layer(self, layer: int, ep: int, redundant: int) -> tuple[tuple[int, ...], ...]:
        loads = self.loads[self.moe_index[layer]]
        order = np.argsort(-loads, kind="stable")
        ranks = _greedy_sorted(tuple(int(v) for v in loads[order]), ep, redundant)
        return tuple(tuple(sorted(int(order[e]) for e in r)) for r in ranks)

    def placement_valid(self, ep: int, redundant: int) -> bool:
        slots = self.model.num_experts + redundant
        return ep >= 1 and slots % ep == 0 and slots // ep <= self.model.num_experts \
            and (ep > 1 or redundant == 0)

    def default_placement(self, ep: int, redundant: int
                          ) -> dict[int, tuple[tuple[int, ...], ...]]:
        """The EPLB placement of ``redundant`` slots on ``ep`` ranks (an unplaceable slot count
        falls back to contiguous blocks without redundancy, so an invalid plan still gets
        numbers)."""
        if not self.placement_valid(ep, redundant):
            blocks = np.array_split(np.arange(self.model.num_experts), max(1, ep))
            ranks = tuple(tuple(int(e) for e in b) for b in blocks)
            return {layer: ranks for layer in self.moe_layers}
        return self.eplb_placement(ep, redundant)

    def placement_of(self, plan: Plan, redundant: int
                     ) -> tuple[dict[int, tuple[tuple[int, ...], ...]], str]:
        """Every MoE layer's placement under ``plan`` (its own where given, the default
        elsewhere) and where it comes from."""
        d = plan.degrees
        if not self.moe_layers:
            return {}, "none (no MoE layers)"
        if plan.placement:
            given = {p.layer: p.ranks for p in plan.placement if p.layer in self.moe_index}
            if len(given) < len(self.moe_layers):  # the default for the layers not given
                default = self.default_placement(d.ep, redundant)
                given = {layer: given.get(layer, default[layer]) for layer in self.moe_layers}
            return given, "given"
        placement = self.default_placement(d.ep, redundant)
        if self.placement_valid(d.ep, redundant):
            return placement, f"EPLB greedy with {redundant} redundant slots (default)"
        return placement, "contiguous blocks (the slot count is invalid for this ep)"

    def default_hot(self, ep: int, redundant: int) -> dict[int, HotRank]:
        """Busiest ranks of the default placement."""
        return self.hot_from_placement(self.default_placement(ep, redundant))

    def layer_costs(self, grid: Grid, hot: dict[int, HotRank], s: int) -> list[LayerCost]:
        return [self.cm.layer_cost(layer, grid, hot.get(layer), s)
                for layer in range(self.model.num_layers)]

    def extras(self, grid: Grid, hot: dict[int, HotRank], s: int) -> StageExtras:
        share = max((h.share for h in hot.values()), default=0.0)
        return self.cm.stage_extras(grid, share, s)


# ----------------------------------------------------------------------------------------------
# Estimate
# ----------------------------------------------------------------------------------------------


@dataclass
class Evaluation:
    """Everything the cost model says about one plan."""

    grid: Grid
    replicas: int
    batch: int
    redundant: int
    stages: tuple[Stage, ...]
    hot: dict[int, HotRank]
    costs: list[LayerCost]
    extras: StageExtras
    result: Assembled
    metrics: Metrics
    placement_source: str
    breakdown: dict = field(default_factory=dict)

    @property
    def gpus(self) -> int:
        return self.replicas * self.grid.gpus_per_instance


def metrics_of(a: Assembled, grid: Grid, replicas: int, ttft_idle_ns: int,
               output_len: int) -> Metrics:
    instance_rate = timing.rate(a.batch, a.tpot_ns)
    return Metrics(
        ttft_s=a.ttft_ns / NS_PER_S,
        ttft_idle_s=ttft_idle_ns / NS_PER_S,
        tpot_s=a.tpot_ns / NS_PER_S,
        output_tokens_per_s=instance_rate * replicas,
        output_tokens_per_s_per_gpu=instance_rate / grid.gpus_per_instance,
        tokens_per_s_per_user=NS_PER_S / a.tpot_ns,
        requests_per_s=instance_rate * replicas / output_len,
        prefill_utilization=float(a.prefill_share) if a.prefill_share is not None else 1.0,
        peak_memory_gb=a.peak_mem_bytes / BYTES_PER_GB,
    )


def ttft_idle_ns(prep: Prepared, grid: Grid, hot: dict[int, HotRank]) -> tuple[int, dict]:
    """An idle instance prefilling one maximum-length prompt: every layer, chunk by chunk."""
    cm = prep.cm
    terms: dict[str, float] = {}
    for layer in range(prep.model.num_layers):
        for k, v in cm.idle_prefill_terms(layer, grid, hot.get(layer)).items():
            terms[k] = terms.get(k, 0.0) + v
    for k, v in cm.idle_prefill_extras(grid).items():
        terms[k] = terms.get(k, 0.0) + v
    return int(np.ceil(sum(terms.values()) * NS_PER_S - 1e-6)), terms


def evaluate(instance: Instance | Prepared, plan: Plan) -> Evaluation:
    """Metrics and breakdowns of ``plan``. Works on invalid plans too (the verifier reports what
    is wrong); stages default to balanced contiguous ranges, the placement to the EPLB placement
    of the plan's redundant slots."""
    prep = instance if isinstance(instance, Prepared) else Prepared(instance)
    d = plan.degrees
    grid = Grid.of(d)
    redundant = (plan.redundant_experts if plan.redundant_experts is not None
                 else default_redundant(prep.instance.search, d.ep))
    stages = plan.stages or balanced_stages(prep.model.num_layers, d.pp)
    placement, source = prep.placement_of(plan, redundant)
    hot = prep.hot_from_placement(placement)
    _, s = batch_position(grid, plan.batch)
    costs = prep.layer_costs(grid, hot, s)
    extras = prep.extras(grid, hot, s)
    bounds = [(st.first_layer, min(st.last_layer, prep.model.num_layers - 1)) for st in stages]
    a = assemble(costs, extras, bounds, grid, plan.batch, prep.cm)
    idle, idle_terms = ttft_idle_ns(prep, grid, hot)
    metrics = metrics_of(a, grid, d.replicas, idle, prep.instance.workload.output_len)
    ev = Evaluation(grid=grid, replicas=d.replicas, batch=plan.batch, redundant=redundant,
                    stages=tuple(stages), hot=hot, costs=costs, extras=extras, result=a,
                    metrics=metrics, placement_source=source)
    from solver.breakdown import breakdown  # presentation only

    ev.breakdown = breakdown(prep, ev, bounds, idle_terms)
    return ev


def estimate(instance: Instance, plan: Plan) -> Metrics:
    """The metrics of ``plan`` (see :func:`evaluate` for the breakdown)."""
    return evaluate(instance, plan).metrics
