"""Metrics of a fixed plan: the cost model assembled over stages, with a per-term breakdown.

:func:`assemble` is the single place where per-layer integers become stage memory, TTFT, TPOT and
throughput; the estimator, the verifier, the reference search and the planner's extraction all go
through it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from solver.costmodel import (
    BYTES_PER_GB,
    NS_PER_S,
    CostModel,
    LayerCost,
    StageExtras,
)
from solver.loads import LOAD_RESOLUTION, layer_loads
from solver.schema import Degrees, Instance, Metrics, Plan, Stage, ceil_div

# ----------------------------------------------------------------------------------------------
# Expert load on EP ranks
# ----------------------------------------------------------------------------------------------


def rank_loads(loads: np.ndarray, ranks: tuple[tuple[int, ...], ...]) -> np.ndarray:
    """Load units each EP rank receives. An expert with ``n`` replicas sends ``ceil(load / n)`` to
    each (rounded up so the integer model never understates the hottest rank)."""
    replicas = np.zeros(len(loads), dtype=np.int64)
    for experts in ranks:
        for e in experts:
            if 0 <= e < len(loads):
                replicas[e] += 1
    out = np.zeros(len(ranks), dtype=np.int64)
    for r, experts in enumerate(ranks):
        out[r] = sum(-(-int(loads[e]) // int(replicas[e])) for e in experts if 0 <= e < len(loads))
    return out


def block_placement(num_experts: int, ep: int) -> tuple[tuple[int, ...], ...]:
    """The default linear placement (vLLM, SGLang without EPLB): contiguous blocks of experts per
    rank, the first ``E mod ep`` ranks one larger when ``ep`` does not divide ``E``."""
    blocks = np.array_split(np.arange(num_experts), ep)
    return tuple(tuple(int(e) for e in b) for b in blocks)


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


# ----------------------------------------------------------------------------------------------
# Assembly
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Assembled:
    """Integer results of one plan."""

    stage_mem_bytes: tuple[int, ...]
    stage_decode_ns: tuple[int, ...]
    stage_prefill_ns: tuple[int, ...]
    ttft_ns: int
    tpot_ns: int
    prefill_batch_ns: int
    cycle_ns: int
    tokens_per_cycle: int

    @property
    def peak_mem_bytes(self) -> int:
        return max(self.stage_mem_bytes)


def assemble(
    costs: list[LayerCost],
    extras: StageExtras,
    bounds: list[tuple[int, int]],
    d: Degrees,
    batch: int,
    output_len: int,
) -> Assembled:
    """Stage sums, TTFT, TPOT and the generation cycle from per-layer integers.

    ``bounds`` are inclusive (first, last) layer ranges of the stages, in order.
    """
    pp = len(bounds)
    mem, dec, pre = [], [], []
    for s, (a, b) in enumerate(bounds):
        layer_range = costs[a : b + 1]
        m = sum(c.mem_bytes for c in layer_range) + extras.every_bytes
        t = sum(c.decode_ns for c in layer_range)
        p = sum(c.prefill_ns for c in layer_range)
        if s == 0:
            m += extras.first_weight_bytes
            t += extras.first_decode_ns
            p += extras.first_prefill_ns
        if s == pp - 1:
            m += extras.last_weight_bytes + extras.last_bytes
            t += extras.last_decode_ns
            p += extras.last_prefill_ns
        mem.append(m)
        dec.append(t)
        pre.append(p)
    ttft = sum(pre) + (pp - 1) * extras.hop_prefill_ns
    tpot = pp * (max(dec) + (extras.hop_decode_ns if pp > 1 else 0))
    prefill_typ = (sum(c.prefill_typical_ns for c in costs) + extras.first_prefill_typical_ns
                   + extras.last_prefill_typical_ns + (pp - 1) * extras.hop_prefill_typical_ns)
    prefill_batch = ceil_div(prefill_typ, pp)
    return Assembled(
        stage_mem_bytes=tuple(mem),
        stage_decode_ns=tuple(dec),
        stage_prefill_ns=tuple(pre),
        ttft_ns=ttft,
        tpot_ns=tpot,
        prefill_batch_ns=prefill_batch,
        cycle_ns=output_len * tpot + prefill_batch,
        tokens_per_cycle=batch * output_len,
    )


# ----------------------------------------------------------------------------------------------
# A prepared instance: cost model + loads, shared by estimate, verify, reference and planner
# ----------------------------------------------------------------------------------------------


class Prepared:
    """An instance with its cost model and per-layer expert loads computed once."""

    def __init__(self, instance: Instance):
        self.instance = instance
        self.model = instance.model
        self.cm = CostModel(instance.model, instance.hardware, instance.workload)
        self.moe_layers = instance.model.moe_layers
        self.loads: list[np.ndarray] = layer_loads(instance.model, instance.expert_load)
        self.moe_index = {layer: i for i, layer in enumerate(self.moe_layers)}

    @cached_property
    def max_load_fraction(self) -> float:
        return max((float(x.max()) / LOAD_RESOLUTION for x in self.loads), default=0.0)

    def layer_costs(
        self, d: Degrees, batch: int, hot: dict[int, tuple[int, int]]
    ) -> list[LayerCost]:
        """Per-layer costs; ``hot[layer] = (hottest_units, slots_on_that_rank)`` for MoE layers."""
        out = []
        for layer in range(self.model.num_layers):
            h, slots = hot.get(layer, (0, 0))
            out.append(self.cm.layer_cost(layer, d, batch, h, LOAD_RESOLUTION, slots))
        return out

    def hottest_from_placement(
        self, ranks_by_layer: dict[int, tuple[tuple[int, ...], ...]]
    ) -> dict[int, tuple[int, int]]:
        hot = {}
        for layer, ranks in ranks_by_layer.items():
            rl = rank_loads(self.loads[self.moe_index[layer]], ranks)
            r = int(np.argmax(rl))
            hot[layer] = (int(rl[r]), len(ranks[r]))
        return hot

    def default_hot(self, ep: int) -> dict[int, tuple[int, int]]:
        ranks = block_placement(self.model.num_experts, ep)
        return self.hottest_from_placement({layer: ranks for layer in self.moe_layers})

    def extras(self, d: Degrees, batch: int, hot: dict[int, tuple[int, int]]) -> StageExtras:
        max_frac = max((h for h, _ in hot.values()), default=0) / LOAD_RESOLUTION
        return self.cm.stage_extras(d, batch, max_frac)


# ----------------------------------------------------------------------------------------------
# Estimate
# ----------------------------------------------------------------------------------------------


@dataclass
class Evaluation:
    """Everything the cost model says about one plan."""

    degrees: Degrees
    batch: int
    stages: tuple[Stage, ...]
    hot: dict[int, tuple[int, int]]
    costs: list[LayerCost]
    extras: StageExtras
    result: Assembled
    metrics: Metrics
    memory_breakdown_gb: dict[str, float] = field(default_factory=dict)
    time_breakdown_s: dict[str, dict[str, float]] = field(default_factory=dict)
    placement_source: str = "given"

    def to_dict(self) -> dict:
        """The stable ``--json`` layout of ``moeplan estimate`` (other tools read these keys)."""
        return {
            "gpus": self.degrees.gpus,
            "degrees": self.degrees.model_dump(),
            "batch": self.batch,
            "metrics": self.metrics.model_dump(),
            "memory": self.memory_breakdown_gb,
            "time": self.time_breakdown_s,
            "stages": [
                {
                    "first_layer": st.first_layer,
                    "last_layer": st.last_layer,
                    "memory_gb": self.result.stage_mem_bytes[i] / BYTES_PER_GB,
                    "decode_ms": self.result.stage_decode_ns[i] / 1e6,
                    "prefill_ms": self.result.stage_prefill_ns[i] / 1e6,
                }
                for i, st in enumerate(self.stages)
            ],
        }


def metrics_of(a: Assembled, d: Degrees) -> Metrics:
    rate = a.tokens_per_cycle * NS_PER_S / a.cycle_ns
    return Metrics(
        ttft_s=a.ttft_ns / NS_PER_S,
        tpot_s=a.tpot_ns / NS_PER_S,
        output_tokens_per_s=rate * d.replicas,
        output_tokens_per_s_per_gpu=rate / d.gpus_per_instance,
        tokens_per_s_per_user=NS_PER_S / a.tpot_ns,
        peak_memory_gb=a.peak_mem_bytes / BYTES_PER_GB,
    )


def evaluate(instance: Instance | Prepared, plan: Plan) -> Evaluation:
    """Metrics and breakdowns of ``plan``. Works on invalid plans too (the verifier reports what
    is wrong); stages default to balanced contiguous ranges, placement to contiguous blocks."""
    prep = instance if isinstance(instance, Prepared) else Prepared(instance)
    d, batch = plan.degrees, plan.batch
    stages = plan.stages or balanced_stages(prep.model.num_layers, d.pp)
    if plan.placement:
        given = {p.layer: p.ranks for p in plan.placement if p.layer in prep.moe_index}
        hot = prep.hottest_from_placement(given)
        for layer, v in prep.default_hot(d.ep).items():
            hot.setdefault(layer, v)
        source = "given"
    else:
        hot = prep.default_hot(d.ep)
        source = "contiguous blocks (default)"
    costs = prep.layer_costs(d, batch, hot)
    extras = prep.extras(d, batch, hot)
    bounds = [(s.first_layer, min(s.last_layer, prep.model.num_layers - 1)) for s in stages]
    a = assemble(costs, extras, bounds, d, batch, prep.instance.workload.output_len)
    metrics = metrics_of(a, d)
    return Evaluation(
        degrees=d,
        batch=batch,
        stages=tuple(stages),
        hot=hot,
        costs=costs,
        extras=extras,
        result=a,
        metrics=metrics,
        memory_breakdown_gb=_memory_breakdown(costs, extras, bounds, a),
        time_breakdown_s=_time_breakdown(costs, extras, bounds, a, d),
        placement_source=source,
    )


def estimate(instance: Instance, plan: Plan) -> Metrics:
    """The metrics of ``plan`` (see :func:`evaluate` for the breakdown)."""
    return evaluate(instance, plan).metrics


def _peak_stage(a: Assembled) -> int:
    return max(range(len(a.stage_mem_bytes)), key=lambda s: a.stage_mem_bytes[s])


def _memory_breakdown(costs, extras: StageExtras, bounds, a: Assembled) -> dict[str, float]:
    """Memory of the fullest GPU (its stage), by term, in GB."""
    s = _peak_stage(a)
    first, last = bounds[s]
    pp = len(bounds)
    layer_range = costs[first : last + 1]
    t = extras.memory_terms
    out = {
        "weights": sum(c.weight_bytes for c in layer_range)
        + (t["embedding"] if s == 0 else 0) + (t["lm_head"] if s == pp - 1 else 0),
        "kv_cache": sum(c.kv_bytes for c in layer_range),
        "activation_workspace": t["activation_workspace"]
        + (t["logits"] if s == pp - 1 else 0),
        "comm_buffers": t["comm_buffers"],
        "runtime_reserve": t["runtime_reserve"],
    }
    gb = {k: v / BYTES_PER_GB for k, v in out.items()}
    gb["total"] = a.stage_mem_bytes[s] / BYTES_PER_GB
    gb["stage"] = s
    return gb


def _time_breakdown(costs, extras: StageExtras, bounds, a: Assembled, d: Degrees) -> dict:
    """TTFT by term (all layers) and one decode step of the slowest stage by term, seconds."""
    ttft: dict[str, float] = {}
    for c in costs:
        for k, v in c.prefill_terms.items():
            ttft[k] = ttft.get(k, 0.0) + v
    ttft["embedding_and_head"] = (extras.first_prefill_ns + extras.last_prefill_ns) / NS_PER_S
    ttft["pp_comm"] = (len(bounds) - 1) * extras.hop_prefill_ns / NS_PER_S
    ttft["total"] = a.ttft_ns / NS_PER_S
    slow = max(range(len(bounds)), key=lambda s: a.stage_decode_ns[s])
    first, last = bounds[slow]
    step: dict[str, float] = {}
    for c in costs[first : last + 1]:
        for k, v in c.decode_terms.items():
            step[k] = step.get(k, 0.0) + v
    step["embedding_and_head"] = ((extras.first_decode_ns if slow == 0 else 0)
                                  + (extras.last_decode_ns if slow == len(bounds) - 1 else 0)
                                  ) / NS_PER_S
    step["pp_comm"] = (extras.hop_decode_ns if len(bounds) > 1 else 0) / NS_PER_S
    step["total"] = a.stage_decode_ns[slow] / NS_PER_S + step["pp_comm"]
    return {
        "ttft": ttft,
        "decode_step_slowest_stage": step,
        "decode_stage": slow,
        "tpot": a.tpot_ns / NS_PER_S,
        "microbatches": d.pp,
        "prefill_per_cycle": a.prefill_batch_ns / NS_PER_S,
        "cycle": a.cycle_ns / NS_PER_S,
    }
