"""A slow exhaustive reference search: the lexicographic optimum by brute force.

It shares with the planner only what *defines* the problem: the verifier (:func:`solver.verify.
verify`), hence the cost model and the rules, and the expert placement sub-model (so both see the
same busiest-rank loads). Everything the planner decides by reasoning — bounds, pruning, the exact
partition routine, CP-SAT — the reference decides by enumeration over plain ranges:

1. every degree tuple with ``tp`` in 1..min(heads, 8·node), ``cp`` and ``dp`` in plain ranges,
   ``pp`` in 1..layers, every ``etp·ep·edp = tp·cp·dp``, the redundant slots of
   :func:`solver.rules.default_redundant`; every batch of the workload's range (each integer);
2. the structural rules and restrictions (``PlanSpace.violations``, the verifier's own) filter
   them, grids in increasing order of GPUs per instance;
3. for each (grid, batch): every contiguous partition of the layers into ``pp`` stages, screened
   with the verifier's own per-layer integers (:func:`solver.estimate.assemble`), then the fewest
   allowed replicas meeting the total-rate target;
4. the best plan by (GPUs, most tokens/s per GPU, lowest TTFT) is re-checked by ``verify``; a
   plan the screen passes but the verifier rejects raises :class:`ReferenceMismatch`.

It stops once no remaining grid can use fewer GPUs than the best plan (GPUs >= GPUs per instance)
— grids with exactly that many are still visited, for the tie-breaks. For small instances only.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from solver import timing
from solver.estimate import Prepared, assemble, balanced_stages, batch_position, evaluate
from solver.placement import (
    PLANNER_DETERMINISTIC_S,
    PLANNER_PLACEMENT_WORKERS,
    place_experts_cached,
)
from solver.schema import (
    MAX_GPUS,
    DisaggPlan,
    Grid,
    Instance,
    LayerPlacement,
    Plan,
    PrefillPlan,
    Stage,
)
from solver.verify import verify

ReferenceStatus = Literal["OPTIMAL", "INFEASIBLE", "TIMEOUT"]

#: Largest TP group, in nodes, tried when TP groups may cross nodes.
TP_CROSS_NODE_MAX_NODES = 8


class ReferenceMismatch(AssertionError):
    """The reference's screen passed a plan the verifier rejects: a bug in one of them."""


@dataclass(frozen=True)
class ReferenceResult:
    """OPTIMAL (``plan`` is a lexicographic optimum, ``gpus`` its GPU count), INFEASIBLE, or
    TIMEOUT (a limit was hit; ``plan`` is the best found)."""

    status: ReferenceStatus
    gpus: int | None
    plan: Plan | None
    rate_per_gpu: Fraction | None
    ttft_ns: int | None
    plans_checked: int
    time_s: float


def compositions(num_layers: int, parts: int) -> Iterator[tuple[Stage, ...]]:
    """Every split of layers 0..num_layers-1 into ``parts`` contiguous non-empty stages."""
    for cuts in itertools.combinations(range(1, num_layers), parts - 1):
        edges = (0, *cuts, num_layers)
        yield tuple(Stage(first_layer=edges[i], last_layer=edges[i + 1] - 1) for i in range(parts))


def plain_grids(prep: Prepared, max_size: int, dp_max: int) -> Iterator[Grid]:
    """Every degree tuple with at most ``max_size`` GPUs per instance and ``dp <= dp_max``, by
    plain ranges (tp up to the heads and the nodes it may span), before any rule."""
    inst = prep.instance
    m, s, hw = inst.model, inst.search, inst.hardware
    tp_max = min(m.attention.num_heads,
                 hw.gpus_per_node * (TP_CROSS_NODE_MAX_NODES if s.tp_cross_node else 1))
    for tp, cp, dp, pp in itertools.product(range(1, tp_max + 1), range(1, max_size + 1),
                                            range(1, min(dp_max, max_size) + 1),
                                            range(1, m.num_layers + 1)):
        n = tp * cp * dp
        if n * pp > max_size:
            continue
        for etp in range(1, n + 1):
            for ep in range(1, n // etp + 1):
                if n % (etp * ep) == 0:
                    yield Grid(tp, cp, dp, ep, etp, n // (etp * ep), pp)


def grids(prep: Prepared, max_size: int) -> list[Grid]:
    """Every grid with at most ``max_size`` GPUs per instance that the plan space admits for some
    batch of the workload, in increasing order of size (plain ranges, then the rules)."""
    _, bmax = prep.instance.workload.batch_bounds
    out = [g for g in plain_grids(prep, max_size, bmax)
           if any(not prep.space.violations(g, b, prep.space.redundant(g.ep))
                  for b in _batches(prep, g))]
    out.sort(key=lambda g: (g.gpus_per_instance, g))
    return out


def _batches(prep: Prepared, g: Grid) -> range:
    lo, hi = prep.instance.workload.batch_bounds
    return range(lo, hi + 1)


def _placement(prep: Prepared, ep: int, redundant: int) -> tuple[LayerPlacement, ...] | None:
    if not prep.moe_layers:
        return None
    return tuple(
        LayerPlacement(layer=layer, ranks=place_experts_cached(
            prep.loads[i], ep, redundant, time_limit_s=PLANNER_DETERMINISTIC_S,
            workers=PLANNER_PLACEMENT_WORKERS, seed=prep.instance.search.random_seed,
            polish_restricted=False).ranks)
        for i, layer in enumerate(prep.moe_layers))


def reference_search(instance: Instance, *, max_gpus: int | None = None,
                     time_limit_s: float | None = None,
                     max_plans: int | None = None) -> ReferenceResult:
    """The lexicographic optimum over every plan ``verify`` accepts with at most ``max_gpus``
    GPUs (default: the target's max_gpus, else 64). ``time_limit_s`` and ``max_plans`` (stage
    partitions examined) stop it early with status TIMEOUT."""
    start = time.perf_counter()
    prep = Prepared(instance)
    t = instance.workload.targets
    cap = min(max_gpus or t.max_gpus or 64, MAX_GPUS)
    budget = prep.cm.memory_budget
    tpot_limit = None if t.max_tpot_s is None else timing.seconds_to_ns_floor(t.max_tpot_s)
    ttft_limit = None if t.max_ttft_s is None else timing.seconds_to_ns_floor(t.max_ttft_s)
    best: tuple[tuple, Plan] | None = None
    checked = 0
    timed_out = False
    for g in grids(prep, cap):
        gpi = g.gpus_per_instance
        if best is not None and gpi > best[0][0]:
            break
        if timed_out or (time_limit_s is not None
                         and time.perf_counter() - start > time_limit_s):
            timed_out = True
            break
        red = prep.space.redundant(g.ep)
        placement = _placement(prep, g.ep, red)
        for batch in _batches(prep, g):
            if (max_plans is not None and checked >= max_plans) or (
                    time_limit_s is not None and time.perf_counter() - start > time_limit_s):
                timed_out = True
                break
            if prep.space.violations(g, batch, red):
                continue
            probe = Plan(degrees=g.degrees(), batch=batch, redundant_experts=red,
                         stages=balanced_stages(instance.model.num_layers, g.pp),
                         placement=placement)
            ev = evaluate(prep, probe)
            for stages in compositions(instance.model.num_layers, g.pp):
                checked += 1
                bounds = [(st.first_layer, st.last_layer) for st in stages]
                a = assemble(ev.costs, ev.extras, bounds, g, batch, prep.cm)
                if a.peak_mem_bytes > budget:
                    continue
                if tpot_limit is not None and a.tpot_ns > tpot_limit:
                    continue
                if ttft_limit is not None and a.ttft_ns > ttft_limit:
                    continue
                if t.min_output_tokens_per_s_per_gpu is not None and not timing.rate_meets(
                        batch, a.tpot_ns, gpi, t.min_output_tokens_per_s_per_gpu):
                    continue
                replicas = _fewest_replicas(prep, batch, a.tpot_ns, gpi, cap)
                if replicas is None:
                    continue
                rate = Fraction(batch * timing.NS_PER_S, a.tpot_ns * gpi)
                key = (gpi * replicas, -rate, a.ttft_ns)
                if best is None or key < best[0]:
                    plan = Plan(degrees=g.degrees(replicas), batch=batch,
                                redundant_experts=red, stages=stages, placement=placement)
                    best = (key, plan)
    elapsed = time.perf_counter() - start
    if best is not None:
        report = verify(prep, best[1])
        if not report.valid:
            raise ReferenceMismatch(
                f"the reference's screen accepted {best[1].degrees.short()} batch "
                f"{best[1].batch} but verify rejects it: "
                + "; ".join(str(v) for v in report.violations))
    status: ReferenceStatus = "TIMEOUT" if timed_out else (
        "OPTIMAL" if best is not None else "INFEASIBLE")
    return ReferenceResult(
        status=status, gpus=best[0][0] if best else None, plan=best[1] if best else None,
        rate_per_gpu=-best[0][1] if best else None, ttft_ns=best[0][2] if best else None,
        plans_checked=checked, time_s=elapsed)


def _fewest_replicas(prep: Prepared, batch: int, tpot: int, gpi: int, cap: int) -> int | None:
    """The smallest allowed replica count meeting the total-rate target within ``cap`` GPUs."""
    target = prep.instance.workload.targets.min_output_tokens_per_s
    for r in range(1, cap // gpi + 1):
        if not prep.space.allowed("replicas", r):
            continue
        if target is None or timing.rate_meets(batch * r, tpot, 1, target):
            return r
    return None


# ----------------------------------------------------------------------------------------------
# Two pools (serving: disaggregated)
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DisaggReferenceResult:
    """OPTIMAL (``plan`` has the fewest GPUs of both pools, then the lowest TTFT), INFEASIBLE,
    or TIMEOUT (``plan`` is the best found)."""

    status: ReferenceStatus
    gpus: int | None
    plan: DisaggPlan | None
    ttft_ns: int | None
    plans_checked: int
    time_s: float


def _pool_grids(prep: Prepared, space, max_size: int, batches: range | None) -> list[Grid]:
    """Every grid of a pool's space with at most ``max_size`` GPUs per instance, by plain
    ranges (``batches`` None: the prefill pool, which has no batch)."""
    out = []
    for g in plain_grids(prep, max_size, max_size if batches is None else batches.stop - 1):
        red = space.redundant(g.ep)
        if batches is None:
            if space.violations(g, 1, red):
                continue
        elif not any(not space.violations(g, b, red) for b in batches):
            continue
        out.append(g)
    out.sort(key=lambda g: (g.gpus_per_instance, g))
    return out


def reference_disagg_search(instance: Instance, *, max_gpus: int | None = None,
                            time_limit_s: float | None = None,
                            max_plans: int | None = None) -> DisaggReferenceResult:
    """The lexicographic optimum over every two-pool plan :func:`solver.disagg.verify` accepts
    with at most ``max_gpus`` GPUs in all (default: the target's max_gpus, else 64): fewest
    GPUs, then lowest TTFT (at the planned rate every plan with the same GPUs has the same
    output tokens/s per GPU). Plain enumeration of each pool — every grid, batch or token
    choice, contiguous partition and replica count — then every pair; shares with the planner
    only the cost model (:mod:`solver.pools`, :func:`solver.disagg.pair_figures`), the pools'
    plan spaces and the placement sub-model."""
    from solver import disagg
    from solver.pool_space import PoolSpace
    from solver.pools import PoolCosts, prefill_stage_sums, receivers

    start = time.perf_counter()
    prep = Prepared(instance)
    pools = PoolCosts(prep)
    t = instance.workload.targets
    cap = min(max_gpus or t.max_gpus or 64, MAX_GPUS)
    if t.min_output_tokens_per_s_per_gpu is not None:
        cap = min(cap, int(Fraction(t.min_output_tokens_per_s)
                           / Fraction(t.min_output_tokens_per_s_per_gpu)))
    budget = prep.cm.memory_budget
    tpot_limit = None if t.max_tpot_s is None else timing.seconds_to_ns_floor(t.max_tpot_s)
    ttft_limit = None if t.max_ttft_s is None else timing.seconds_to_ns_floor(t.max_ttft_s)
    checked = 0
    timed_out = False

    def out_of_time() -> bool:
        return (max_plans is not None and checked >= max_plans) or (
            time_limit_s is not None and time.perf_counter() - start > time_limit_s)

    # -- every decode plan: (GPUs, receivers) -> a plan --
    dspace = PoolSpace(instance, "decode")
    lo, hi = instance.workload.batch_bounds
    batches = range(lo, hi + 1)
    decode: dict[tuple[int, int], Plan] = {}
    for g in _pool_grids(prep, dspace, cap - 1, batches):
        red = dspace.redundant(g.ep)
        placement = _placement(prep, g.ep, red)
        hot = prep.hot_from_placement({p.layer: p.ranks for p in placement or ()})
        for batch in batches:
            if dspace.violations(g, batch, red):
                continue
            s = batch_position(g, batch)[1]
            costs = pools.decode_layer_costs(g, hot, s)
            extras = pools.decode_extras(g, hot, s)
            for stages in compositions(instance.model.num_layers, g.pp):
                checked += 1
                if out_of_time():
                    timed_out = True
                    break
                res = pools.decode_result(costs, extras, [(st.first_layer, st.last_layer)
                                                          for st in stages], g, batch)
                if res.peak_mem_bytes > budget or (tpot_limit is not None
                                                   and res.tpot_ns > tpot_limit):
                    continue
                for r in range(1, (cap - 1) // g.gpus_per_instance + 1):
                    if not dspace.allowed("replicas", r) or not timing.rate_meets(
                            batch * r, res.tpot_ns, 1, t.min_output_tokens_per_s):
                        continue
                    key = (g.gpus_per_instance * r, receivers(prep.cm, g))
                    if key not in decode:
                        decode[key] = Plan(degrees=g.degrees(r), batch=batch,
                                           redundant_experts=red, stages=stages,
                                           placement=placement)
    receiver_counts = sorted({r for _, r in decode})
    # -- every prefill plan: (GPUs, decode receivers) -> (least TTFT, plan) --
    pspace = PoolSpace(instance, "prefill")
    prefill: dict[tuple[int, int], tuple[int, PrefillPlan]] = {}
    for g in ([] if timed_out else _pool_grids(prep, pspace, cap - 1, None)):
        red = pspace.redundant(g.ep)
        placement = _placement(prep, g.ep, red)
        hot = prep.hot_from_placement({p.layer: p.ranks for p in placement or ()})
        gc = pools.prefill_grid(g, hot, red)
        for j, tokens in enumerate(gc.tokens):
            for stages in compositions(instance.model.num_layers, g.pp):
                checked += 1
                if out_of_time():
                    timed_out = True
                    break
                res = prefill_stage_sums(gc, j, [(st.first_layer, st.last_layer)
                                                 for st in stages])
                if res.peak_mem_bytes > budget:
                    continue
                for r in range(1, (cap - 1) // g.gpus_per_instance + 1):
                    if not pspace.allowed("replicas", r):
                        continue
                    for recv in receiver_counts:
                        _, wait, _, _, ttft = disagg.pair_figures(prep, pools, gc, j, res, r,
                                                                  recv)
                        if wait is None or (ttft_limit is not None and ttft > ttft_limit):
                            continue
                        key = (g.gpus_per_instance * r, recv)
                        if key not in prefill or ttft < prefill[key][0]:
                            prefill[key] = (ttft, PrefillPlan(
                                degrees=g.degrees(r), tokens_per_step=tokens,
                                redundant_experts=red, stages=stages, placement=placement))
    # -- every pair --
    best: tuple[tuple[int, int], DisaggPlan] | None = None
    for (gd, recv), dplan in decode.items():
        for (gp, precv), (ttft, pplan) in prefill.items():
            if precv != recv or gd + gp > cap:
                continue
            key = (gd + gp, ttft)
            if best is None or key < best[0]:
                best = (key, DisaggPlan(prefill=pplan, decode=dplan))
    if best is not None:
        report = disagg.verify(prep, best[1])
        if not report.valid:
            raise ReferenceMismatch(
                "the two-pool reference's screen accepted a plan verify rejects: "
                + "; ".join(str(v) for v in report.violations))
        if report.evaluation.ttft_ns != best[0][1]:
            raise ReferenceMismatch(f"TTFT {best[0][1]} vs verify's {report.evaluation.ttft_ns}")
    status: ReferenceStatus = "TIMEOUT" if timed_out else (
        "OPTIMAL" if best is not None else "INFEASIBLE")
    return DisaggReferenceResult(
        status=status, gpus=best[0][0] if best else None, plan=best[1] if best else None,
        ttft_ns=best[0][1] if best else None, plans_checked=checked,
        time_s=time.perf_counter() - start)
