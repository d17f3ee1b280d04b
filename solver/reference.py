"""A slow exhaustive reference search: the fewest GPUs by brute force, independent of the planner.

It shares with the planner only what *defines* the problem: the verifier's rules
(:func:`solver.verify.verify`, :func:`solver.verify.structural_violations`), the cost model (through
the verifier) and the per-layer expert placement sub-model (:func:`solver.placement.
place_experts_cached`), so that both see the same hottest-rank loads. Everything the planner
decides by reasoning, the reference decides by enumeration:

1. every degree tuple in plain ranges (``tp`` 1..min(heads, node size × 8 if TP may cross nodes
   else node size), ``cp`` 1..max_cp, ``dp`` 1..min(max_dp, batch), ``pp`` 1..min(max_pp, layers),
   ``etp`` and ``ep`` 1..tp·cp·dp with ``edp = tp·cp·dp / (etp·ep)`` when integral), every batch
   of the workload, minus what ``search.fix`` / ``search.forbid`` exclude and what
   :func:`~solver.verify.structural_violations` rejects. The redundant expert slots of a tuple
   follow vLLM's exact ``--num-redundant-experts`` (:func:`redundant_slots`);
2. for each tuple, the expert placement of every MoE layer from the placement sub-model, and one
   :func:`~solver.verify.verify` call on the plan with balanced stages and one replica: a violation
   of a rule that neither the stage partition nor the replica count can change (divisibility,
   node boundaries, placement, batch, TTFT: TTFT sums every layer whatever the partition) rejects
   the tuple for every partition;
3. for each surviving tuple, every contiguous partition of the layers into ``pp`` non-empty stages
   (compositions), screened for memory, TPOT and per-GPU throughput on the verifier's own
   per-layer integers (:func:`solver.estimate.assemble`), then the smallest replica count that
   meets the total-throughput target;
4. every plan that passes the screen is checked by :func:`~solver.verify.verify`; the answer is a
   verified plan. A plan the screen passes but the verifier rejects is a bug and raises.

Tuples are visited by GPUs per instance, ascending, and the search stops once no remaining tuple
can use fewer GPUs than the best plan found (a plan uses ``replicas · gpus_per_instance >=
gpus_per_instance`` GPUs). ``paranoid=True`` skips the screens of step 3 and asks the verifier
about every plan (for tests of the screen; much slower).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from solver.costmodel import BYTES_PER_GB, rate_meets, seconds_to_ns_floor
from solver.estimate import assemble, balanced_stages
from solver.loads import layer_loads
from solver.placement import place_experts_cached
from solver.schema import (
    MAX_GPUS,
    Degrees,
    Instance,
    LayerPlacement,
    Plan,
    Stage,
)
from solver.verify import Report, structural_violations, verify

ReferenceStatus = Literal["OPTIMAL", "INFEASIBLE", "TIMEOUT"]

#: Verifier rules whose verdict can change with the stage partition or the replica count. Any
#: other violation found with balanced stages and one replica rejects the tuple outright.
PARTITION_DEPENDENT_RULES = frozenset({"memory", "tpot", "throughput", "max_gpus"})

#: Largest TP group, in nodes, tried when TP groups may cross nodes.
TP_CROSS_NODE_MAX_NODES = 8


class ReferenceMismatch(AssertionError):
    """The reference's screen passed a plan the verifier rejects: a bug in one of them."""


@dataclass(frozen=True)
class ReferenceResult:
    """The reference's answer.

    ``status`` is OPTIMAL (``gpus`` is the fewest GPUs of any valid plan, ``plan`` one such plan),
    INFEASIBLE (no valid plan exists) or TIMEOUT (``max_plans`` or ``time_limit_s`` was hit before
    the search completed; ``gpus``/``plan`` are the best found so far, if any).
    """

    status: ReferenceStatus
    gpus: int | None
    plan: Plan | None
    plans_checked: int
    time_s: float
    tuples_checked: int = 0
    verify_calls: int = 0


@dataclass(frozen=True)
class _Candidate:
    degrees: Degrees  # replicas = 1
    batch: int
    redundant: int


def redundant_slots(num_experts: int, ep: int, redundant: int) -> int | None:
    """Redundant slots of a tuple, written from the rule's statement (vLLM's exact
    ``--num-redundant-experts``): none with ``ep = 1``; otherwise exactly ``redundant``, valid
    only if ``ep`` divides ``num_experts + redundant`` and a rank's slots fit distinct experts."""
    if ep == 1:
        return 0
    if (num_experts + redundant) % ep == 0 and (num_experts + redundant) // ep <= num_experts:
        return redundant
    return None


def compositions(num_layers: int, parts: int) -> Iterator[tuple[Stage, ...]]:
    """Every split of layers 0..num_layers-1 into ``parts`` contiguous non-empty stages."""
    for cuts in itertools.combinations(range(1, num_layers), parts - 1):
        edges = (0, *cuts, num_layers)
        yield tuple(Stage(first_layer=edges[i], last_layer=edges[i + 1] - 1) for i in range(parts))


def _allowed(instance: Instance, name: str, value: int) -> bool:
    s = instance.search
    if name in s.fix and s.fix[name] != value:
        return False
    return value not in s.forbid.get(name, ())


def attention_tuples(instance: Instance) -> list[tuple[int, int, int, int, int]]:
    """Every ``(batch, tp, cp, dp, pp)`` in the plain ranges that fix/forbid allow, minus those
    failing two rules :func:`~solver.verify.structural_violations` would reject whatever the
    expert degrees (``tp`` divides the heads, ``dp`` divides the batch): a cheap pre-filter."""
    m, s = instance.model, instance.search
    gpn = instance.hardware.gpus_per_node
    heads = m.attention.num_heads
    tp_max = min(heads, gpn * (TP_CROSS_NODE_MAX_NODES if s.tp_cross_node else 1))
    out = []
    for batch in instance.workload.batch_choices:
        for tp, cp, dp, pp in itertools.product(
            range(1, tp_max + 1),
            range(1, s.max_cp + 1),
            range(1, min(s.max_dp, batch) + 1),
            range(1, min(s.max_pp, m.num_layers) + 1),
        ):
            if heads % tp or batch % dp:
                continue
            if all(_allowed(instance, k, v) for k, v in (("tp", tp), ("cp", cp), ("dp", dp),
                                                         ("pp", pp))):
                out.append((batch, tp, cp, dp, pp))
    return out


def expert_tuples(
    instance: Instance, batch: int, tp: int, cp: int, dp: int, pp: int,
) -> Iterator[_Candidate]:
    """Every ``(etp, ep, edp)`` with ``etp·ep·edp = tp·cp·dp`` that fix/forbid allow, with the
    redundant slot count of :func:`redundant_slots`, whose whole tuple
    :func:`~solver.verify.structural_violations` accepts (replicas = 1)."""
    m, hw, s = instance.model, instance.hardware, instance.search
    grid = tp * cp * dp
    for etp in range(1, grid + 1):
        for ep in range(1, grid // etp + 1):  # etp·ep <= grid, else edp < 1
            if grid % (etp * ep):
                continue
            edp = grid // (etp * ep)
            if not all(_allowed(instance, k, v) for k, v in (("etp", etp), ("ep", ep),
                                                             ("edp", edp))):
                continue
            d = Degrees(tp=tp, pp=pp, dp=dp, cp=cp, ep=ep, etp=etp, edp=edp, replicas=1)
            redundant = redundant_slots(m.num_experts, ep, s.redundant_experts)
            if not m.moe_layers:
                redundant = 0  # no expert slots to fill; the rules check ep = etp = 1
            if redundant is not None and not structural_violations(m, hw, s, d, batch, redundant):
                yield _Candidate(d, batch, redundant)


def degree_candidates(instance: Instance) -> list[_Candidate]:
    """Every (degrees, batch, redundant slots) the verifier's structural rules accept, with
    replicas = 1."""
    return [c for t in attention_tuples(instance) for c in expert_tuples(instance, *t)]


def _placement(
    instance: Instance, loads, ep: int, redundant: int, time_limit_s: float, workers: int
) -> tuple[LayerPlacement, ...] | None:
    """Each MoE layer's placement from the placement sub-model (cached per load multiset)."""
    moe = instance.model.moe_layers
    if not moe:
        return None
    return tuple(
        LayerPlacement(layer=layer, ranks=place_experts_cached(
            loads[i], ep, redundant, time_limit_s=time_limit_s, workers=workers,
            seed=instance.search.random_seed).ranks)
        for i, layer in enumerate(moe)
    )


def _fewest_replicas(
    instance: Instance, tokens: int, cycle_ns: int, gpi: int, gpu_limit: int
) -> int | None:
    """The smallest allowed replica count meeting the total-throughput target with at most
    ``gpu_limit`` GPUs, or None."""
    limit = gpu_limit // gpi
    if limit < 1:
        return None
    target = instance.workload.targets.min_output_tokens_per_s

    def meets(r: int) -> bool:
        return target is None or rate_meets(tokens * r, cycle_ns, 1, target)

    if not meets(limit):
        return None
    low, high = 1, limit  # meets(high); find the least r with meets(r) (monotone in r)
    while low < high:
        mid = (low + high) // 2
        if meets(mid):
            high = mid
        else:
            low = mid + 1
    for r in range(low, limit + 1):  # skip forbidden counts (meets stays true above low)
        if _allowed(instance, "replicas", r):
            return r
    return None


def reference_search(
    instance: Instance,
    *,
    max_plans: int = 200_000,
    time_limit_s: float | None = None,
    placement_time_limit_s: float = 1.0,
    placement_workers: int = 2,
    paranoid: bool = False,
) -> ReferenceResult:
    """The fewest total GPUs of any plan :func:`~solver.verify.verify` accepts, by enumeration.

    ``max_plans`` bounds the (degrees, batch, stages) plans examined and ``time_limit_s`` the wall
    time; hitting either returns TIMEOUT. The placement sub-model runs with
    ``placement_time_limit_s``, ``placement_workers`` and ``search.random_seed``; its results are
    cached per arguments, so a planner using the same ones in the same process sees the very same
    placements. See the module docstring for what is enumerated.
    """
    start = time.perf_counter()
    m, wl = instance.model, instance.workload
    t = wl.targets
    cap = round(instance.hardware.hbm_gb * BYTES_PER_GB)
    tpot_limit = None if t.max_tpot_s is None else seconds_to_ns_floor(t.max_tpot_s)
    gpu_cap = min(MAX_GPUS, t.max_gpus or MAX_GPUS)
    loads = layer_loads(m, instance.expert_load)

    best: tuple[int, Plan] | None = None
    plans = tuples = verify_calls = 0
    timed_out = False

    def check(plan: Plan) -> Report:
        nonlocal verify_calls
        verify_calls += 1
        return verify(instance, plan)

    # Visit tuples by GPUs per instance, ascending; expand the expert degrees lazily.
    attention = sorted(attention_tuples(instance), key=lambda t: t[1] * t[2] * t[3] * t[4])
    candidates = (c for t in attention for c in expert_tuples(instance, *t))
    for cand in candidates:
        d, batch = cand.degrees, cand.batch
        gpi = d.gpus_per_instance
        limit = gpu_cap if best is None else min(gpu_cap, best[0] - 1)
        if gpi > limit:
            break  # sorted by gpi: nothing left can use fewer GPUs
        if time_limit_s is not None and time.perf_counter() - start > time_limit_s:
            timed_out = True
            break
        tuples += 1
        placement = _placement(instance, loads, d.ep, cand.redundant, placement_time_limit_s,
                               placement_workers)
        probe = Plan(degrees=d, batch=batch, stages=balanced_stages(m.num_layers, d.pp),
                     placement=placement)
        report = check(probe)
        if any(v.rule not in PARTITION_DEPENDENT_RULES for v in report.violations):
            continue
        ev = report.evaluation
        assert ev is not None
        for stages in compositions(m.num_layers, d.pp):
            if plans >= max_plans:
                timed_out = True
                break
            plans += 1
            if paranoid:
                found = _paranoid_plan(instance, d, batch, stages, placement, limit, check)
            else:
                found = _screened_plan(instance, ev, d, batch, stages, placement, limit, cap,
                                       tpot_limit)
                if found is not None:
                    rep = check(found)
                    if not rep.valid:
                        raise ReferenceMismatch(
                            f"the reference's screen accepted {found.degrees.short()} batch "
                            f"{batch} stages {[(s.first_layer, s.last_layer) for s in stages]} "
                            f"but verify rejects it: {'; '.join(map(str, rep.violations))}")
            if found is not None:
                best = (found.degrees.gpus, found)
                limit = min(limit, best[0] - 1)
                if best[0] == gpi:
                    break  # no partition of this tuple can do better
        if timed_out:
            break

    elapsed = time.perf_counter() - start
    if timed_out:
        status: ReferenceStatus = "TIMEOUT"
    else:
        status = "OPTIMAL" if best is not None else "INFEASIBLE"
    return ReferenceResult(
        status=status,
        gpus=best[0] if best else None,
        plan=best[1] if best else None,
        plans_checked=plans,
        time_s=elapsed,
        tuples_checked=tuples,
        verify_calls=verify_calls,
    )


def _with_replicas(d: Degrees, replicas: int) -> Degrees:
    return d.model_copy(update={"replicas": replicas})


def _screened_plan(
    instance: Instance, ev, d: Degrees, batch: int, stages: tuple[Stage, ...], placement,
    gpu_limit: int, cap: int, tpot_limit: int | None,
) -> Plan | None:
    """The plan with these stages and the fewest replicas that passes the screen, or None.

    The screen is the verifier's memory, TPOT and throughput rules on the verifier's own per-layer
    integers (``ev`` is the verifier's evaluation of the same degrees, batch and placement; only
    the stage sums change with the partition)."""
    t = instance.workload.targets
    bounds = [(s.first_layer, s.last_layer) for s in stages]
    a = assemble(ev.costs, ev.extras, bounds, d, batch, instance.workload.output_len)
    if max(a.stage_mem_bytes) > cap:
        return None
    if tpot_limit is not None and a.tpot_ns > tpot_limit:
        return None
    gpi = d.gpus_per_instance
    if t.min_output_tokens_per_s_per_gpu is not None and not rate_meets(
        a.tokens_per_cycle, a.cycle_ns, gpi, t.min_output_tokens_per_s_per_gpu
    ):
        return None
    replicas = _fewest_replicas(instance, a.tokens_per_cycle, a.cycle_ns, gpi, gpu_limit)
    if replicas is None:
        return None
    return Plan(degrees=_with_replicas(d, replicas), batch=batch, stages=stages,
                placement=placement)


def _paranoid_plan(
    instance: Instance, d: Degrees, batch: int, stages: tuple[Stage, ...], placement,
    gpu_limit: int, check,
) -> Plan | None:
    """The plan with these stages and the fewest replicas the verifier accepts (with at most
    ``gpu_limit`` GPUs), asking the verifier about every replica count in turn."""
    for replicas in range(1, gpu_limit // d.gpus_per_instance + 1):
        if not _allowed(instance, "replicas", replicas):
            continue
        plan = Plan(degrees=_with_replicas(d, replicas), batch=batch, stages=stages,
                    placement=placement)
        report = check(plan)
        if report.valid:
            return plan
        if any(v.rule in {"memory", "tpot", "ttft"} for v in report.violations):
            return None  # replicas change none of these
        if any(v.field == "workload.targets.min_output_tokens_per_s_per_gpu"
               for v in report.violations):
            return None  # nor the rate per GPU
    return None
