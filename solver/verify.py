"""The independent checker: every rule a plan must satisfy, each violation with its numbers.

It recomputes everything from the instance and the plan through the cost model; it never trusts
what the planner (or a plan's author) says. :func:`structural_violations` is also the planner's
definition of a valid degree tuple, so the two cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from solver.costmodel import BYTES_PER_GB, rate_meets, seconds_to_ns_floor
from solver.estimate import Evaluation, Prepared, evaluate
from solver.params import check_declared
from solver.schema import Degrees, HardwareSpec, Instance, ModelSpec, Plan, SearchOptions


@dataclass(frozen=True)
class Violation:
    """One broken rule. ``rule`` is a stable identifier; ``message`` carries the numbers."""

    rule: str
    message: str
    field: str = ""

    def __str__(self) -> str:
        return f"[{self.rule}] {self.message}"


@dataclass
class Report:
    """The verdict on one plan."""

    violations: list[Violation]
    evaluation: Evaluation | None = None
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.violations

    def to_dict(self) -> dict:
        return {
            "valid": self.valid,
            "violations": [
                {"rule": v.rule, "field": v.field, "message": v.message} for v in self.violations
            ],
            "notes": self.notes,
            "warnings": self.warnings,
            "estimate": self.evaluation.to_dict() if self.evaluation else None,
        }


def redundant_for(num_experts: int, ep: int, redundant: int) -> int | None:
    """Redundant expert slots per MoE layer with ``ep`` ranks, as vLLM's
    ``--num-redundant-experts`` defines them: exactly ``redundant`` when ``ep > 1`` (so ``ep``
    must divide ``num_experts + redundant`` and a rank's slots must fit distinct experts), none
    when ``ep = 1`` (a replica on the same GPU cannot take load off it). None: no valid count."""
    if ep == 1:
        return 0
    slots = num_experts + redundant
    if slots % ep or slots // ep > num_experts:
        return None
    return redundant


def structural_violations(
    model: ModelSpec,
    hw: HardwareSpec,
    search: SearchOptions,
    d: Degrees,
    batch: int,
    redundant: int | None = None,
) -> list[Violation]:
    """Rules on the degrees alone: GPU identity, divisibility, node boundaries."""
    v: list[Violation] = []
    a = model.attention
    grid = d.tp * d.cp * d.dp
    if d.etp * d.ep * d.edp != grid:
        v.append(Violation(
            "gpu_identity",
            f"expert grid etp·ep·edp = {d.etp}·{d.ep}·{d.edp} = {d.etp * d.ep * d.edp} must equal "
            f"the attention grid tp·cp·dp = {d.tp}·{d.cp}·{d.dp} = {grid}",
            "degrees"))
    if a.num_heads % d.tp:
        v.append(Violation("divisibility", f"tp = {d.tp} does not divide the {a.num_heads} "
                           "attention heads", "degrees.tp"))
    elif a.kind == "gqa":
        kv = a.num_kv_heads
        if (d.tp <= kv and kv % d.tp) or (d.tp > kv and d.tp % kv):
            v.append(Violation("divisibility", f"tp = {d.tp} neither divides nor is a multiple of "
                               f"the {kv} KV heads", "degrees.tp"))
    if redundant is None:
        redundant = redundant_for(model.num_experts, d.ep, search.redundant_experts)
        if redundant is None:
            redundant = search.redundant_experts
    slots = model.num_experts + redundant
    if model.moe_layers:
        if d.ep > slots:
            v.append(Violation("divisibility", f"ep = {d.ep} exceeds the {slots} expert slots "
                               f"({model.num_experts} routed experts + "
                               f"{slots - model.num_experts} redundant) per layer",
                               "degrees.ep"))
        elif slots % d.ep:
            v.append(Violation("divisibility", f"ep = {d.ep} does not divide the {slots} expert "
                               "slots per layer", "degrees.ep"))
        if model.expert_ffn_width % d.etp:
            v.append(Violation("divisibility", f"etp = {d.etp} does not divide the expert width "
                               f"{model.expert_ffn_width}", "degrees.etp"))
    elif d.ep * d.etp > 1:
        v.append(Violation("divisibility", "the model has no MoE layers: ep and etp must be 1",
                           "degrees.ep"))
    if model.dense_layers and model.dense_ffn_width % d.tp:
        v.append(Violation("divisibility", f"tp = {d.tp} does not divide the dense FFN width "
                           f"{model.dense_ffn_width}", "degrees.tp"))
    if model.num_shared_experts and model.shared_width % d.tp:
        v.append(Violation("divisibility", f"tp = {d.tp} does not divide the shared-expert width "
                           f"{model.shared_width}", "degrees.tp"))
    if batch % d.dp:
        v.append(Violation("divisibility", f"dp = {d.dp} does not divide the batch {batch}",
                           "batch"))
    if d.pp > model.num_layers:
        v.append(Violation("divisibility", f"pp = {d.pp} exceeds the {model.num_layers} layers",
                           "degrees.pp"))
    gpn = hw.gpus_per_node
    if not search.tp_cross_node and (d.tp > gpn or gpn % d.tp):
        v.append(Violation("node_boundary", f"a TP group of {d.tp} GPUs does not fit inside "
                           f"{gpn}-GPU nodes (tp must divide {gpn})", "degrees.tp"))
    span = d.etp * d.ep
    if model.moe_layers and not search.ep_cross_node and span > 1 and (span > gpn or gpn % span):
        v.append(Violation("node_boundary", f"an EP group spans etp·ep = {span} GPUs, which does "
                           f"not fit inside {gpn}-GPU nodes (set search.ep_cross_node to allow)",
                           "degrees.ep"))
    return v


def verify(instance: Instance, plan: Plan | None = None) -> Report:
    """Check ``plan`` (default: the instance's ``claimed_plan``) against every rule."""
    if plan is None:
        plan = instance.claimed_plan
        if plan is None:
            raise ValueError("the instance has no claimed_plan; pass a plan to verify")
    prep = Prepared(instance)
    m, wl, hw, search = instance.model, instance.workload, instance.hardware, instance.search
    d = plan.degrees
    v: list[Violation] = []

    # -- GPU identity as the author states it --
    if plan.claimed_total_gpus is not None and plan.claimed_total_gpus != d.gpus:
        v.append(Violation(
            "gpu_identity",
            f"claimed {plan.claimed_total_gpus} GPUs but replicas·pp·tp·cp·dp = {d.replicas}·{d.pp}"
            f"·{d.tp}·{d.cp}·{d.dp} = {d.gpus}", "claimed_total_gpus"))

    # -- degrees, divisibility, node boundaries --
    expected = redundant_for(m.num_experts, d.ep, search.redundant_experts)
    redundant = search.redundant_experts if expected is None else expected
    if plan.placement:
        slots_used = {sum(len(r) for r in p.ranks) for p in plan.placement}
        if len(slots_used) == 1:
            used = max(0, slots_used.pop() - m.num_experts)
            if expected is not None and used != expected:
                v.append(Violation(
                    "experts", f"the placement uses {used} redundant slots per layer but the "
                    f"instance sets {expected} with ep = {d.ep} (search.redundant_experts = "
                    f"{search.redundant_experts}; ep = 1 uses none)", "placement"))
            redundant = used
    v.extend(structural_violations(m, hw, search, d, plan.batch, redundant))
    if isinstance(wl.batch, int):
        if plan.batch != wl.batch:
            v.append(Violation("batch", f"plan batch {plan.batch} differs from the workload's "
                               f"batch {wl.batch}", "batch"))
    elif not wl.batch.min <= plan.batch <= wl.batch.max:
        v.append(Violation("batch", f"plan batch {plan.batch} is outside the workload's range "
                           f"[{wl.batch.min}, {wl.batch.max}]", "batch"))

    # -- stage coverage --
    if plan.stages is not None:
        v.extend(_stage_violations(plan, m.num_layers))

    # -- expert placement --
    if plan.placement is not None:
        v.extend(_placement_violations(plan, m, redundant))

    ev = evaluate(prep, plan)
    res, met = ev.result, ev.metrics

    # -- memory per GPU --
    cap = round(hw.hbm_gb * BYTES_PER_GB)
    for s, mem in enumerate(res.stage_mem_bytes):
        if mem > cap:
            st = ev.stages[s]
            v.append(Violation(
                "memory", f"stage {s} (layers {st.first_layer}-{st.last_layer}) needs "
                f"{mem / BYTES_PER_GB:.2f} GB per GPU but the GPU has {hw.hbm_gb:g} GB",
                "hardware.hbm_gb"))

    # -- targets --
    t = wl.targets
    if t.max_ttft_s is not None and res.ttft_ns > seconds_to_ns_floor(t.max_ttft_s):
        v.append(Violation("ttft", f"TTFT {met.ttft_s:.4g} s exceeds the target "
                           f"{t.max_ttft_s:g} s", "workload.targets.max_ttft_s"))
    if t.max_tpot_s is not None and res.tpot_ns > seconds_to_ns_floor(t.max_tpot_s):
        v.append(Violation("tpot", f"TPOT {met.tpot_s * 1e3:.4g} ms exceeds the target "
                           f"{t.max_tpot_s * 1e3:g} ms", "workload.targets.max_tpot_s"))
    if t.min_output_tokens_per_s_per_gpu is not None and not rate_meets(
        res.tokens_per_cycle, res.cycle_ns, d.gpus_per_instance, t.min_output_tokens_per_s_per_gpu
    ):
        v.append(Violation(
            "throughput", f"{met.output_tokens_per_s_per_gpu:.4g} output tokens/s per GPU is "
            f"below the target {t.min_output_tokens_per_s_per_gpu:g}",
            "workload.targets.min_output_tokens_per_s_per_gpu"))
    if t.min_output_tokens_per_s is not None and not rate_meets(
        res.tokens_per_cycle * d.replicas, res.cycle_ns, 1, t.min_output_tokens_per_s
    ):
        v.append(Violation(
            "throughput", f"{met.output_tokens_per_s:.4g} output tokens/s in total is below the "
            f"target {t.min_output_tokens_per_s:g}", "workload.targets.min_output_tokens_per_s"))
    if t.max_gpus is not None and d.gpus > t.max_gpus:
        v.append(Violation("max_gpus", f"the plan uses {d.gpus} GPUs, above max_gpus "
                           f"{t.max_gpus}", "workload.targets.max_gpus"))

    # -- the author's own figures --
    if plan.claimed_metrics:
        v.extend(_claim_violations(plan.claimed_metrics, met.model_dump()))

    warnings = []
    declared = check_declared(m)
    if declared:
        warnings.append(declared)
    notes = []
    if plan.stages is None:
        notes.append("no stages given: evaluated with balanced contiguous stages")
    if plan.placement is None and m.moe_layers:
        notes.append("no expert placement given: evaluated with contiguous expert blocks per rank")
    return Report(violations=v, evaluation=ev, notes=notes, warnings=warnings)


#: A claimed figure this much better than the cost model's is reported as a false claim.
CLAIM_TOLERANCE = 0.10
_LOWER_IS_BETTER = {"ttft_s", "tpot_s", "peak_memory_gb"}


def _claim_violations(claimed: dict[str, float], actual: dict[str, float]) -> list[Violation]:
    out = []
    for key, value in claimed.items():
        if key not in actual:
            out.append(Violation("claim", f"unknown metric {key!r} in claimed_metrics "
                                 f"(known: {', '.join(sorted(actual))})", "claimed_metrics"))
            continue
        real = actual[key]
        if key in _LOWER_IS_BETTER:
            bad = value < real * (1 - CLAIM_TOLERANCE)
        else:
            bad = value > real * (1 + CLAIM_TOLERANCE)
        if bad:
            out.append(Violation("claim", f"claimed {key} = {value:.4g} but the cost model gives "
                                 f"{real:.4g}", f"claimed_metrics.{key}"))
    return out


def _stage_violations(plan: Plan, num_layers: int) -> list[Violation]:
    v = []
    stages = plan.stages or ()
    if len(stages) != plan.degrees.pp:
        v.append(Violation("stages", f"{len(stages)} stages given but pp = {plan.degrees.pp}",
                           "stages"))
    expect = 0
    for i, st in enumerate(stages):
        if st.first_layer != expect:
            v.append(Violation("stages", f"stage {i} starts at layer {st.first_layer}, expected "
                               f"{expect} (stages must be contiguous and cover every layer once)",
                               f"stages[{i}]"))
        expect = st.last_layer + 1
    if expect != num_layers:
        v.append(Violation("stages", f"stages end at layer {expect - 1} but the model has "
                           f"layers 0-{num_layers - 1}", "stages"))
    return v


def _placement_violations(plan: Plan, m: ModelSpec, redundant: int) -> list[Violation]:
    v = []
    placed = {p.layer for p in plan.placement or ()}
    moe = set(m.moe_layers)
    for layer in sorted(moe - placed):
        v.append(Violation("experts", f"MoE layer {layer} has no expert placement", "placement"))
    for i, p in enumerate(plan.placement or ()):
        where = f"placement[{i}]"
        if p.layer not in moe:
            v.append(Violation("experts", f"layer {p.layer} is not an MoE layer", where))
            continue
        if len(p.ranks) != plan.degrees.ep:
            v.append(Violation("experts", f"layer {p.layer}: {len(p.ranks)} EP ranks listed but "
                               f"ep = {plan.degrees.ep}", where))
        sizes = {len(r) for r in p.ranks}
        if len(sizes) > 1:
            v.append(Violation("experts", f"layer {p.layer}: ranks hold unequal slot counts "
                               f"{sorted(sizes)}", where))
        flat = [e for r in p.ranks for e in r]
        bad = sorted({e for e in flat if e >= m.num_experts})
        if bad:
            v.append(Violation("experts", f"layer {p.layer}: expert ids {bad[:5]} do not exist "
                               f"(the model has {m.num_experts})", where))
        missing = sorted(set(range(m.num_experts)) - set(flat))
        if missing:
            v.append(Violation("experts", f"layer {p.layer}: {len(missing)} experts are not "
                               f"placed (first: {missing[:5]})", where))
        for r, experts in enumerate(p.ranks):
            if len(set(experts)) != len(experts):
                v.append(Violation("experts", f"layer {p.layer}: rank {r} holds the same expert "
                                   "twice", where))
                break
    return v
