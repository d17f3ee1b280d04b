"""A disaggregated plan (a prefill pool and a decode pool): its metrics, its rule check, and its
two pools as the export and the serving engines see them.

- :func:`evaluate` / :func:`estimate`: the cost model of the pair (docs/cost-model.md,
  "Disaggregated serving"): each pool's stage sums (:mod:`solver.pools`), the prefill queue at
  the planned request rate, the KV transfer, TTFT, TPOT and the rate matching.
- :func:`verify`: every rule a two-pool plan must satisfy, each violation with its numbers
  (the pools' plan spaces are :mod:`solver.pool_space`, the very definitions the planner
  searches).
- :func:`pool_plans`: the plan of each pool as an ordinary :class:`~solver.schema.Plan` plus the
  settings an engine needs (for ``moeplan export``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

from solver import timing
from solver.costmodel import BYTES_PER_GB, HotRank, LayerCost, StageExtras
from solver.estimate import Prepared, balanced_stages, batch_position
from solver.params import check_declared
from solver.pool_space import PoolSpace
from solver.pools import (
    DecodeResult,
    PoolCosts,
    PrefillGridCost,
    PrefillResult,
    prefill_stage_sums,
    receivers,
)
from solver.rules import Violation, default_redundant
from solver.schema import (
    DisaggMetrics,
    DisaggPlan,
    Grid,
    Instance,
    Metrics,
    Plan,
    PrefillPlan,
    Stage,
)
from solver.verify import (
    CLAIM_TOLERANCE,
    Report,
    _placement_violations,
    _stage_violations,
)

NS_PER_S = timing.NS_PER_S

# ----------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------


@dataclass
class PrefillEvaluation:
    grid: Grid
    replicas: int
    tokens: int
    redundant: int
    stages: tuple[Stage, ...]
    hot: dict[int, HotRank]
    cost: PrefillGridCost
    result: PrefillResult
    placement_source: str

    @property
    def gpus(self) -> int:
        return self.replicas * self.grid.gpus_per_instance


@dataclass
class DecodeEvaluation:
    grid: Grid
    replicas: int
    batch: int
    redundant: int
    stages: tuple[Stage, ...]
    hot: dict[int, HotRank]
    costs: list[LayerCost]
    extras: StageExtras
    result: DecodeResult
    placement_source: str

    @property
    def gpus(self) -> int:
        return self.replicas * self.grid.gpus_per_instance


@dataclass
class DisaggEvaluation:
    """Everything the cost model says about one two-pool plan."""

    prefill: PrefillEvaluation
    decode: DecodeEvaluation
    request_rate: Fraction  # λ, requests/s
    streams: int
    transfer_ns: int  # exposed
    transfer_bytes: float
    rho: Fraction
    wait_ns: Fraction | None  # None: the prefill queue is saturated
    own_ns: int
    ttft_ns: int  # timing.NEVER when saturated
    decode_capacity: Fraction  # output tokens/s
    prefill_capacity: Fraction  # input tokens/s
    metrics: DisaggMetrics
    breakdown: dict = field(default_factory=dict)

    @property
    def gpus(self) -> int:
        return self.prefill.gpus + self.decode.gpus


def _bounds(stages: tuple[Stage, ...], num_layers: int) -> list[tuple[int, int]]:
    return [(st.first_layer, min(st.last_layer, num_layers - 1)) for st in stages]


def _prep(instance: Instance | Prepared) -> Prepared:
    return instance if isinstance(instance, Prepared) else Prepared(instance)


def _pool_costs(prep: Prepared, tokens: int) -> PoolCosts:
    """Pool costs whose token choices are ``tokens`` alone (the arrays are element-wise in the
    token choice, so every choice gets the same integers as in the planner's arrays)."""
    inst = prep.instance
    if tuple(inst.disaggregation.prefill_tokens) != (tokens,):
        opts = inst.disaggregation.model_copy(update={"prefill_tokens": (tokens,)})
        prep = Prepared(inst.model_copy(update={"disaggregation": opts}))
    return PoolCosts(prep)


def _hot(prep: Prepared, plan: Plan | PrefillPlan) -> tuple[dict[int, HotRank], int, str]:
    d = plan.degrees
    red = (plan.redundant_experts if plan.redundant_experts is not None
           else default_redundant(prep.instance.search, d.ep))
    probe = Plan(degrees=d, batch=1, redundant_experts=red, placement=plan.placement)
    placement, source = prep.placement_of(probe, red)
    return prep.hot_from_placement(placement), red, source


def evaluate_prefill(prep: Prepared, plan: PrefillPlan, pools: PoolCosts | None = None
                     ) -> PrefillEvaluation:
    grid = Grid.of(plan.degrees)
    hot, red, source = _hot(prep, plan)
    pools = pools if pools is not None and pools.tokens == (plan.tokens_per_step,) else \
        _pool_costs(prep, plan.tokens_per_step)
    gc = pools.prefill_grid(grid, hot, red)
    stages = plan.stages or balanced_stages(prep.model.num_layers, grid.pp)
    res = prefill_stage_sums(gc, 0, _bounds(stages, prep.model.num_layers))
    return PrefillEvaluation(grid=grid, replicas=plan.degrees.replicas,
                             tokens=plan.tokens_per_step, redundant=red, stages=tuple(stages),
                             hot=hot, cost=gc, result=res, placement_source=source)


def evaluate_decode(prep: Prepared, plan: Plan, pools: PoolCosts | None = None
                    ) -> DecodeEvaluation:
    grid = Grid.of(plan.degrees)
    hot, red, source = _hot(prep, plan)
    pools = pools or PoolCosts(prep)
    _, s = batch_position(grid, plan.batch)
    costs = pools.decode_layer_costs(grid, hot, s)
    extras = pools.decode_extras(grid, hot, s)
    stages = plan.stages or balanced_stages(prep.model.num_layers, grid.pp)
    res = pools.decode_result(costs, extras, _bounds(stages, prep.model.num_layers), grid,
                              plan.batch)
    return DecodeEvaluation(grid=grid, replicas=plan.degrees.replicas, batch=plan.batch,
                            redundant=red, stages=tuple(stages), hot=hot, costs=costs,
                            extras=extras, result=res, placement_source=source)


def pair_figures(prep: Prepared, pools: PoolCosts, gc: PrefillGridCost, j: int,
                 res: PrefillResult, prefill_replicas: int, decode_receivers: int
                 ) -> tuple[Fraction, Fraction | None, int, int, int]:
    """``(ρ, wait, own, transfer, ttft)`` of a prefill instance's stage sums ``res`` with
    ``prefill_replicas`` instances, sending to a decode instance with ``decode_receivers``
    GPUs holding distinct KV (the one function the estimator, the planner and the reference
    use for TTFT)."""
    wl = prep.instance.workload
    lam = timing.planned_request_rate(wl.targets.min_output_tokens_per_s, wl.output_len)
    g = gc.grid
    rho = timing.prefill_load(lam, wl.input_len, prefill_replicas, g.dp, gc.tokens[j],
                              res.step_ns)
    wait = timing.prefill_wait_ns(rho, wl.input_len, gc.tokens[j], g.pp, res.step_ns)
    own = timing.prefill_own_ns(wl.max_input, gc.tokens[j], res.round_full_ns)
    streams = min(receivers(pools.cm, g), decode_receivers)
    transfer = pools.transfer_ns(gc, j, streams)
    ttft = timing.NEVER if wait is None else timing.prefill_ttft_ns(wait, own) + transfer
    return rho, wait, own, transfer, ttft


def evaluate(instance: Instance | Prepared, plan: DisaggPlan) -> DisaggEvaluation:
    """Metrics and breakdown of a two-pool plan. Works on invalid plans too (verify reports
    what is wrong); stages default to balanced ranges, placements to EPLB's."""
    prep = _prep(instance)
    inst = prep.instance
    wl = inst.workload
    if wl.targets.min_output_tokens_per_s is None:
        raise ValueError("workload.targets.min_output_tokens_per_s: required to evaluate a "
                         "disaggregated plan (the request rate both pools are sized for)")
    pools = _pool_costs(prep, plan.prefill.tokens_per_step)
    pf = evaluate_prefill(prep, plan.prefill, pools)
    dc = evaluate_decode(prep, plan.decode, pools)
    d_recv = receivers(prep.cm, dc.grid)
    rho, wait, own, transfer, ttft = pair_figures(prep, pools, pf.cost, 0, pf.result,
                                                  pf.replicas, d_recv)
    lam = timing.planned_request_rate(wl.targets.min_output_tokens_per_s, wl.output_len)
    streams = min(receivers(prep.cm, pf.grid), d_recv)
    dec_cap = Fraction(dc.replicas * dc.batch * NS_PER_S, dc.result.tpot_ns)
    pf_cap = timing.prefill_capacity(pf.replicas, pf.grid.dp, pf.tokens, pf.result.step_ns)
    out_rate = lam * wl.output_len
    gpus = pf.gpus + dc.gpus
    transfer_bytes = sum(pools.transfer_bytes())
    never = timing.NEVER / NS_PER_S
    metrics = DisaggMetrics(
        ttft_s=ttft / NS_PER_S if wait is not None else never,
        ttft_queue_s=float(wait) / NS_PER_S if wait is not None else never,
        ttft_prefill_s=own / NS_PER_S, kv_transfer_s=transfer / NS_PER_S,
        ttft_idle_s=(own + transfer) / NS_PER_S, tpot_s=dc.result.tpot_ns / NS_PER_S,
        output_tokens_per_s=float(out_rate), output_tokens_per_s_per_gpu=float(out_rate / gpus),
        tokens_per_s_per_user=NS_PER_S / dc.result.tpot_ns, requests_per_s=float(lam),
        decode_output_tokens_per_s=float(dec_cap),
        decode_utilization=float(out_rate / dec_cap),
        prefill_input_tokens_per_s=float(pf_cap), prefill_utilization=float(rho),
        prefill_gpus=pf.gpus, decode_gpus=dc.gpus,
        prefill_peak_memory_gb=pf.result.peak_mem_bytes / BYTES_PER_GB,
        decode_peak_memory_gb=dc.result.peak_mem_bytes / BYTES_PER_GB,
        kv_transfer_gb=transfer_bytes / BYTES_PER_GB, kv_transfer_streams=streams)
    ev = DisaggEvaluation(prefill=pf, decode=dc, request_rate=lam, streams=streams,
                          transfer_ns=transfer, transfer_bytes=transfer_bytes, rho=rho,
                          wait_ns=wait, own_ns=own, ttft_ns=ttft, decode_capacity=dec_cap,
                          prefill_capacity=pf_cap, metrics=metrics)
    ev.breakdown = _breakdown(prep, pools, ev)
    return ev


def estimate(instance: Instance, plan: DisaggPlan) -> DisaggMetrics:
    """The metrics of a two-pool plan (see :func:`evaluate` for the breakdown)."""
    return evaluate(instance, plan).metrics


def as_metrics(m: DisaggMetrics) -> Metrics:
    """The pair's figures in the aggregated :class:`Metrics` shape (what ``SolveResult.metrics``
    of a disaggregated answer holds: every consumer of metrics reads them)."""
    return Metrics(ttft_s=m.ttft_s, ttft_idle_s=m.ttft_idle_s, tpot_s=m.tpot_s,
                   output_tokens_per_s=m.output_tokens_per_s,
                   output_tokens_per_s_per_gpu=m.output_tokens_per_s_per_gpu,
                   tokens_per_s_per_user=m.tokens_per_s_per_user,
                   requests_per_s=m.requests_per_s, prefill_utilization=m.prefill_utilization,
                   peak_memory_gb=max(m.prefill_peak_memory_gb, m.decode_peak_memory_gb))


# ----------------------------------------------------------------------------------------------
# Breakdown (for the estimate document, solver.contract.DisaggEstimateOut)
# ----------------------------------------------------------------------------------------------


def _slowest(times: tuple[int, ...]) -> int:
    return max(range(len(times)), key=lambda i: (times[i], -i))


def _breakdown(prep: Prepared, pools: PoolCosts, ev: DisaggEvaluation) -> dict:
    pf, dc = ev.prefill, ev.decode
    budget = prep.cm.memory_budget / BYTES_PER_GB
    gc = pf.cost
    ps = _slowest(pf.result.stage_step_ns)
    a, b = _bounds(pf.stages, prep.model.num_layers)[ps]
    pf_terms: dict[str, float] = {}
    for layer in range(a, b + 1):
        for k, v in gc.terms[layer].items():
            pf_terms[k] = pf_terms.get(k, 0.0) + float(v[0])
    for k, v in gc.extra_terms.items():
        if (k == "embedding" and ps == 0) or (k == "lm_head" and ps == len(pf.stages) - 1):
            pf_terms[k] = pf_terms.get(k, 0.0) + float(v[0])
    ds = _slowest(dc.result.stage_step_ns)
    a2, b2 = _bounds(dc.stages, prep.model.num_layers)[ds]
    i = dc.result.s - 1
    dc_terms: dict[str, float] = {}
    for c in dc.costs[a2:b2 + 1]:
        for k, v in c.terms["decode"].items():
            dc_terms[k] = dc_terms.get(k, 0.0) + float(v[i])
    for k, v in dc.extras.terms["decode"].items():
        if (k == "embedding" and ds == 0) or (k == "lm_head" and ds == len(dc.stages) - 1):
            dc_terms[k] = dc_terms.get(k, 0.0) + float(v[i])

    def stages_of(stages, mem, step, full=None):
        return [{"first_layer": st.first_layer, "last_layer": st.last_layer,
                 "memory_gb": mem[k] / BYTES_PER_GB, "step_ms": step[k] / 1e6,
                 "full_step_ms": (full or step)[k] / 1e6} for k, st in enumerate(stages)]

    link = prep.cm.k.inter
    return {
        "prefill": {
            "pool": "prefill", "gpus": pf.gpus, "degrees": pf.grid.degrees(pf.replicas),
            "redundant_experts": pf.redundant, "batch": None, "tokens_per_step": pf.tokens,
            "placement_source": pf.placement_source,
            "peak_memory_gb": pf.result.peak_mem_bytes / BYTES_PER_GB,
            "memory_budget_gb": budget,
            "slowest_stage_step_s": pf.result.slowest_ns / NS_PER_S,
            "hop_s": pf.result.hop_ns / NS_PER_S,
            "step_overhead_s": pf.result.overhead_ns / NS_PER_S,
            "capacity": float(ev.prefill_capacity),
            "capacity_unit": "input tokens/s",
            "utilization": float(ev.rho), "gpus_holding_kv": receivers(prep.cm, pf.grid),
            "step_terms_s": pf_terms,
            "stages": stages_of(pf.stages, pf.result.stage_mem_bytes, pf.result.stage_step_ns,
                                pf.result.stage_full_ns),
        },
        "decode": {
            "pool": "decode", "gpus": dc.gpus, "degrees": dc.grid.degrees(dc.replicas),
            "redundant_experts": dc.redundant, "batch": dc.batch, "tokens_per_step": None,
            "placement_source": dc.placement_source,
            "peak_memory_gb": dc.result.peak_mem_bytes / BYTES_PER_GB,
            "memory_budget_gb": budget,
            "slowest_stage_step_s": dc.result.slowest_ns / NS_PER_S,
            "hop_s": dc.result.hop_ns / NS_PER_S,
            "step_overhead_s": dc.result.overhead_ns / NS_PER_S,
            "capacity": float(ev.decode_capacity), "capacity_unit": "output tokens/s",
            "utilization": ev.metrics.decode_utilization,
            "gpus_holding_kv": receivers(prep.cm, dc.grid),
            "step_terms_s": dc_terms,
            "stages": stages_of(dc.stages, dc.result.stage_mem_bytes, dc.result.stage_step_ns),
        },
        "kv_transfer": {
            "bytes_per_request": ev.transfer_bytes, "streams": ev.streams,
            "link_gb_s": link.bw * link.efficiency / 1e9, "latency_s": link.lat,
            "total_s": ev.transfer_bytes / (ev.streams * link.bw * link.efficiency) + link.lat,
            "exposed_s": ev.transfer_ns / NS_PER_S,
            "overlap": prep.instance.disaggregation.kv_transfer,
        },
        "ttft": {
            "queue_wait_s": ev.metrics.ttft_queue_s, "prefill_s": ev.own_ns / NS_PER_S,
            "kv_transfer_s": ev.transfer_ns / NS_PER_S, "ttft_s": ev.metrics.ttft_s,
            "load": float(ev.rho),
            "round_s": pf.result.round_full_ns / NS_PER_S,
            "rounds": -(-prep.instance.workload.max_input // pf.tokens),
            "queue_model": "M/D/1 per prefill server (replicas · pp · dp servers): Poisson "
            "arrivals at the planned rate, a fixed service of input_len / tokens_per_step "
            "rounds",
        },
    }


# ----------------------------------------------------------------------------------------------
# Verify
# ----------------------------------------------------------------------------------------------


def _in_pool(pool: str, violations: list[Violation]) -> list[Violation]:
    """A pool's violations with the pool named in the message and the field path."""
    return [Violation(v.rule, f"{pool} pool: {v.message}",
                      f"{pool}.{v.field}" if v.field else pool) for v in violations]


def verify(instance: Instance | Prepared, plan: DisaggPlan | None = None) -> Report:
    """Check a two-pool plan (default: the instance's ``claimed_disagg_plan``) against every
    rule; the report's ``evaluation`` is a :class:`DisaggEvaluation`."""
    prep = _prep(instance)
    inst = prep.instance
    if plan is None:
        plan = inst.claimed_disagg_plan
        if plan is None:
            raise ValueError("the instance has no claimed_disagg_plan; pass a plan to verify")
    m, wl, hw, t = inst.model, inst.workload, inst.hardware, inst.workload.targets
    ev = evaluate(prep, plan)
    pf, dc = ev.prefill, ev.decode
    v: list[Violation] = []
    if plan.claimed_total_gpus is not None and plan.claimed_total_gpus != ev.gpus:
        v.append(Violation("gpu_identity", f"claimed {plan.claimed_total_gpus} GPUs but the "
                           f"prefill pool has {pf.gpus} and the decode pool {dc.gpus} "
                           f"({ev.gpus} in all)", "claimed_total_gpus"))
    # structure of each pool: the plan spaces the planner searches
    decode_space = PoolSpace(inst, "decode")
    prefill_space = PoolSpace(inst, "prefill")
    v.extend(_in_pool("decode", decode_space.violations(
        dc.grid, plan.decode.batch, dc.redundant, dc.replicas)))
    if plan.decode.claimed_total_gpus is not None and \
            plan.decode.claimed_total_gpus != dc.gpus:
        v.append(Violation("gpu_identity", f"decode pool: claimed {plan.decode.claimed_total_gpus}"
                           f" GPUs but replicas·pp·tp·cp·dp = {dc.gpus}",
                           "decode.claimed_total_gpus"))
    v.extend(_in_pool("prefill", prefill_space.violations(pf.grid, 1, pf.redundant,
                                                          pf.replicas)))
    allowed = inst.disaggregation.prefill_tokens
    if pf.tokens not in allowed:
        v.append(Violation("search_space", f"prefill pool: tokens_per_step = {pf.tokens} is not "
                           f"one of disaggregation.prefill_tokens {list(allowed)}",
                           "prefill.tokens_per_step"))
    for name, p in (("prefill", plan.prefill), ("decode", plan.decode)):
        if p.stages is not None:
            v.extend(_in_pool(name, _stage_violations(p, m.num_layers)))
        if p.placement is not None:
            red = pf.redundant if name == "prefill" else dc.redundant
            v.extend(_in_pool(name, _placement_violations(p, m, red)))
    # memory of each pool
    budget = prep.cm.memory_budget
    for name, e in (("prefill", pf), ("decode", dc)):
        for s, mem in enumerate(e.result.stage_mem_bytes):
            if mem > budget:
                st = e.stages[s]
                v.append(Violation(
                    "memory", f"{name} pool: stage {s} (layers {st.first_layer}-"
                    f"{st.last_layer}) needs {mem / 1e9:.2f} GB per GPU but the engine may use "
                    f"{budget / 1e9:.2f} GB ({inst.engine.memory_fraction:g} of {hw.hbm_gb:g} GB)",
                    "hardware.hbm_gb"))
    # rate matching: the decode pool serves the planned rate at its batch, the prefill pool
    # keeps up with it
    met = ev.metrics
    need_out = timing.planned_request_rate(t.min_output_tokens_per_s, wl.output_len) \
        * wl.output_len
    if ev.decode_capacity < need_out:
        v.append(Violation("throughput", f"decode pool: {float(ev.decode_capacity):.4g} output "
                           f"tokens/s at its batch is below the planned "
                           f"{t.min_output_tokens_per_s:g}",
                           "workload.targets.min_output_tokens_per_s"))
    if ev.rho >= 1:
        v.append(Violation("rate_matching", f"prefill pool: {float(ev.prefill_capacity):.4g} input "
                           f"tokens/s cannot keep up with the planned "
                           f"{float(ev.request_rate * wl.input_len):.4g} (utilisation "
                           f"{float(ev.rho):.3f} >= 1)", "prefill.degrees.replicas"))
    if t.max_ttft_s is not None and ev.ttft_ns > timing.seconds_to_ns_floor(t.max_ttft_s):
        v.append(Violation("ttft", f"TTFT at the planned rate {met.ttft_s:.4g} s (queue "
                           f"{met.ttft_queue_s:.3g} + prefill {met.ttft_prefill_s:.3g} + KV "
                           f"transfer {met.kv_transfer_s:.3g}) exceeds the target "
                           f"{t.max_ttft_s:g} s", "workload.targets.max_ttft_s"))
    if t.max_tpot_s is not None and dc.result.tpot_ns > timing.seconds_to_ns_floor(t.max_tpot_s):
        v.append(Violation("tpot", f"decode pool: TPOT {met.tpot_s * 1e3:.4g} ms exceeds the "
                           f"target {t.max_tpot_s * 1e3:g} ms", "workload.targets.max_tpot_s"))
    if t.min_output_tokens_per_s_per_gpu is not None and (
            need_out < Fraction(t.min_output_tokens_per_s_per_gpu) * ev.gpus):
        v.append(Violation("throughput", f"{met.output_tokens_per_s_per_gpu:.4g} output tokens/s "
                           f"per GPU at the planned rate is below the target "
                           f"{t.min_output_tokens_per_s_per_gpu:g}",
                           "workload.targets.min_output_tokens_per_s_per_gpu"))
    if t.max_gpus is not None and ev.gpus > t.max_gpus:
        v.append(Violation("max_gpus", f"the two pools use {ev.gpus} GPUs ({pf.gpus} prefill + "
                           f"{dc.gpus} decode), above max_gpus {t.max_gpus}",
                           "workload.targets.max_gpus"))
    if plan.claimed_metrics:
        v.extend(_claims(plan.claimed_metrics, met.model_dump()))
    warnings = [w for w in (check_declared(m),) if w]
    notes = []
    for name, p in (("prefill", plan.prefill), ("decode", plan.decode)):
        if p.stages is None:
            notes.append(f"{name} pool: no stages given: evaluated with balanced contiguous "
                         "stages")
        if p.placement is None and m.moe_layers:
            src = (pf if name == "prefill" else dc).placement_source
            notes.append(f"{name} pool: no expert placement given: evaluated with {src}")
    return Report(violations=v, evaluation=ev, notes=notes, warnings=warnings)  # type: ignore


_LOWER_IS_BETTER = {"ttft_s", "ttft_queue_s", "ttft_prefill_s", "kv_transfer_s", "ttft_idle_s",
                    "tpot_s", "prefill_peak_memory_gb", "decode_peak_memory_gb",
                    "prefill_gpus", "decode_gpus", "decode_utilization",
                    "prefill_utilization", "kv_transfer_gb"}


def _claims(claimed: dict[str, float], actual: dict[str, float]) -> list[Violation]:
    out = []
    for key, value in claimed.items():
        if key not in actual:
            out.append(Violation("claim", f"unknown metric {key!r} in claimed_metrics (known: "
                                 f"{', '.join(sorted(actual))})", "claimed_metrics"))
            continue
        real = actual[key]
        bad = (value < real * (1 - CLAIM_TOLERANCE) if key in _LOWER_IS_BETTER
               else value > real * (1 + CLAIM_TOLERANCE))
        if bad:
            out.append(Violation("claim", f"claimed {key} = {value:.4g} but the cost model gives "
                                 f"{real:.4g}", f"claimed_metrics.{key}"))
    return out


# ----------------------------------------------------------------------------------------------
# The two pools as engines see them (the hook for ``moeplan export``)
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PoolPlans:
    """A disaggregated plan as two ordinary plans and the settings their engines need.

    ``prefill`` is the prefill pool as a :class:`Plan` whose ``batch`` is the prompts one
    instance holds in flight (``pp`` microbatches of ``dp`` ranks, each ``⌈tokens_per_step /
    input_len⌉`` prompts); ``prefill_tokens_per_step`` is the per-rank token budget of a step
    (SGLang ``--chunked-prefill-size`` = it × dp for the whole instance; vLLM
    ``--max-num-batched-tokens``). ``decode`` is the decode pool's plan as it is. The transfer:
    the prefill instance sends each request's KV cache to a decode instance (SGLang
    ``--disaggregation-mode prefill|decode``; vLLM's KV-transfer config with a producer and a
    consumer role)."""

    prefill: Plan
    decode: Plan
    prefill_tokens_per_step: int
    prefill_replicas: int
    decode_replicas: int
    kv_transfer: str  # "layerwise" | "after_prefill"


def pool_plans(instance: Instance, plan: DisaggPlan) -> PoolPlans:
    p = plan.prefill
    d = p.degrees
    in_flight = d.dp * d.pp * -(-p.tokens_per_step // instance.workload.input_len)
    prefill = Plan(degrees=d, batch=in_flight, redundant_experts=p.redundant_experts,
                   stages=p.stages, placement=p.placement,
                   note=f"prefill pool: {p.tokens_per_step} prompt tokens per attention-DP rank "
                   "and step")
    return PoolPlans(prefill=prefill, decode=plan.decode,
                     prefill_tokens_per_step=p.tokens_per_step,
                     prefill_replicas=d.replicas, decode_replicas=plan.decode.degrees.replicas,
                     kv_transfer=instance.disaggregation.kv_transfer)


# ----------------------------------------------------------------------------------------------
# Reading two-pool plans (plan files, solve documents, spec strings)
# ----------------------------------------------------------------------------------------------


def is_disagg_document(data: object) -> bool:
    """Whether a document holds a two-pool plan: a plan (``prefill`` and ``decode``), a plan
    file (``solve --out`` of a disaggregated answer) or a solve document with ``disagg_plan``."""
    if not isinstance(data, dict):
        return False
    if "prefill" in data or "decode" in data:
        return True
    return isinstance(data.get("disagg_plan"), dict) and data.get("plan") is None


def disagg_plan_from_dict(data: object) -> DisaggPlan:
    """Validate a two-pool plan: a plan mapping, a plan file or a solve document (whose
    ``disagg_plan`` is taken); errors are :class:`~solver.instance.InputError` naming the
    field."""
    from pydantic import ValidationError

    from solver.contract import SCHEMA_VERSION
    from solver.instance import InputError, check_document, validation_error

    if not isinstance(data, dict):
        raise InputError(f"plan: expected a mapping, got {type(data).__name__}", "plan")
    check_document(data)
    if "status" in data and "prefill" not in data:  # solve --json
        inner = data.get("disagg_plan")
        if inner is None:
            raise InputError(f"plan: the solve document holds no two-pool plan (status "
                             f"{data.get('status', 'unknown')})", "plan")
        data = inner
    version = data.get("schema_version")
    if version is not None:
        if not isinstance(version, str) or version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
            raise InputError(f"plan.schema_version: {version!r} is not a version this moeplan "
                             f"reads (it writes {SCHEMA_VERSION})", "plan.schema_version")
        data = {k: v for k, v in data.items() if k != "schema_version"}
    try:
        return DisaggPlan.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, "plan") from None


def parse_disagg_plan_arg(text: str) -> DisaggPlan:
    """A two-pool plan from ``prefill:dp=32,ep=32,tokens=16384;decode:dp=72,ep=72,batch=18432``
    (each pool as :func:`solver.instance.parse_plan_arg` reads a plan; ``tokens`` is the
    prefill pool's tokens per step, ``replicas`` each pool's instances). Errors name the pool's
    field: ``--plan: prefill.tokens_per_step: ...``."""
    from solver.instance import InputError, parse_plan_arg

    def error(field: str, rule: str) -> InputError:
        return InputError(f"--plan: {field}: {rule}", f"plan.{field}")

    def pool(name: str, spec: str, default_batch: int | None) -> Plan:
        try:
            return parse_plan_arg(spec, default_batch)
        except InputError as exc:  # name the pool in the field and the message
            field = exc.field.removeprefix("plan").lstrip(".")
            rule = str(exc).removeprefix("--plan: ")
            rule = rule.removeprefix(f"plan.{field}: ") if field else rule
            raise error(f"{name}.{field}" if field else name, rule) from None

    pools: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, sep, spec = part.partition(":")
        name = name.strip().lower()
        if not sep or name not in ("prefill", "decode"):
            raise InputError(f"--plan: '{part}' is not prefill:<plan> or decode:<plan> (e.g. "
                             "prefill:dp=8,ep=8,tokens=8192;decode:dp=16,ep=16,batch=2048)",
                             "plan")
        if name in pools:
            raise error(name, "given twice")
        pools[name] = spec
    for name in ("prefill", "decode"):
        if name not in pools:
            raise error(name, "missing (give prefill:<plan>;decode:<plan>)")
    items = [x.strip() for x in pools["prefill"].split(",") if x.strip()]
    tokens = [x for x in items if x.split("=")[0].strip().lower() == "tokens"]
    if len(tokens) != 1:
        raise error("prefill.tokens_per_step", "give tokens=N (prompt tokens per "
                    "attention-DP rank and step) once")
    value = tokens[0].split("=", 1)[1].strip() if "=" in tokens[0] else ""
    if not value.isascii() or not value.isdigit():
        raise error("prefill.tokens_per_step", f"tokens must be an integer in ASCII digits "
                    f"0-9, got '{value}'")
    prefill = pool("prefill", ",".join(x for x in items if x not in tokens), 1)
    decode = pool("decode", pools["decode"], None)
    return disagg_plan_from_dict({
        "prefill": {"degrees": prefill.degrees.model_dump(), "tokens_per_step": int(value)},
        "decode": decode.model_dump(exclude_defaults=True)})
