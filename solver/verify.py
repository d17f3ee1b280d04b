"""The independent checker: every rule a plan must satisfy, each violation with its numbers.

It recomputes everything from the instance and the plan through the cost model; it never trusts
what the planner (or a plan's author) says. Structural rules and the plan space are
:mod:`solver.rules` and :mod:`solver.space` — the very definitions the planner searches — so a plan
verify accepts is a plan the planner could have returned, and the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from solver.estimate import Evaluation, Prepared, evaluate
from solver.params import check_declared
from solver.rules import Violation
from solver.schema import Grid, Instance, ModelSpec, Plan
from solver.timing import rate_meets, seconds_to_ns_floor

__all__ = ["Report", "Violation", "verify"]


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


def verify(instance: Instance | Prepared, plan: Plan | None = None) -> Report:
    """Check ``plan`` (default: the instance's ``claimed_plan``) against every rule."""
    prep = instance if isinstance(instance, Prepared) else Prepared(instance)
    inst = prep.instance
    if plan is None:
        plan = inst.claimed_plan
        if plan is None:
            raise ValueError("the instance has no claimed_plan; pass a plan to verify")
    m, wl, hw = inst.model, inst.workload, inst.hardware
    d = plan.degrees
    grid = Grid.of(d)
    v: list[Violation] = []

    if plan.claimed_total_gpus is not None and plan.claimed_total_gpus != d.gpus:
        v.append(Violation(
            "gpu_identity",
            f"claimed {plan.claimed_total_gpus} GPUs but replicas·pp·tp·cp·dp = {d.replicas}·{d.pp}"
            f"·{d.tp}·{d.cp}·{d.dp} = {d.gpus}", "claimed_total_gpus"))

    ev = evaluate(prep, plan)
    v.extend(prep.space.violations(grid, plan.batch, ev.redundant, d.replicas))
    if plan.stages is not None:
        v.extend(_stage_violations(plan, m.num_layers))
    if plan.placement is not None:
        v.extend(_placement_violations(plan, m, ev.redundant))
    res, met = ev.result, ev.metrics

    budget = prep.cm.memory_budget
    for s, mem in enumerate(res.stage_mem_bytes):
        if mem > budget:
            st = ev.stages[s]
            v.append(Violation(
                "memory", f"stage {s} (layers {st.first_layer}-{st.last_layer}) needs "
                f"{mem / 1e9:.2f} GB per GPU but the engine may use {budget / 1e9:.2f} GB "
                f"({inst.engine.memory_fraction:g} of {hw.hbm_gb:g} GB)", "hardware.hbm_gb"))

    t = wl.targets
    if t.max_ttft_s is not None and res.ttft_ns > seconds_to_ns_floor(t.max_ttft_s):
        v.append(Violation("ttft", f"TTFT at load {met.ttft_s:.4g} s exceeds the target "
                           f"{t.max_ttft_s:g} s", "workload.targets.max_ttft_s"))
    if t.max_tpot_s is not None and res.tpot_ns > seconds_to_ns_floor(t.max_tpot_s):
        v.append(Violation("tpot", f"TPOT {met.tpot_s * 1e3:.4g} ms exceeds the target "
                           f"{t.max_tpot_s * 1e3:g} ms", "workload.targets.max_tpot_s"))
    if t.min_output_tokens_per_s_per_gpu is not None and not rate_meets(
        plan.batch, res.tpot_ns, d.gpus_per_instance, t.min_output_tokens_per_s_per_gpu
    ):
        v.append(Violation(
            "throughput", f"{met.output_tokens_per_s_per_gpu:.4g} output tokens/s per GPU is "
            f"below the target {t.min_output_tokens_per_s_per_gpu:g}",
            "workload.targets.min_output_tokens_per_s_per_gpu"))
    if t.min_output_tokens_per_s is not None and not rate_meets(
        plan.batch * d.replicas, res.tpot_ns, 1, t.min_output_tokens_per_s
    ):
        v.append(Violation(
            "throughput", f"{met.output_tokens_per_s:.4g} output tokens/s in total is below the "
            f"target {t.min_output_tokens_per_s:g}", "workload.targets.min_output_tokens_per_s"))
    if t.max_gpus is not None and d.gpus > t.max_gpus:
        v.append(Violation("max_gpus", f"the plan uses {d.gpus} GPUs, above max_gpus "
                           f"{t.max_gpus}", "workload.targets.max_gpus"))

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
        notes.append(f"no expert placement given: evaluated with {ev.placement_source}")
    return Report(violations=v, evaluation=ev, notes=notes, warnings=warnings)


#: A claimed figure this much better than the cost model's is reported as a false claim.
CLAIM_TOLERANCE = 0.10
_LOWER_IS_BETTER = {"ttft_s", "ttft_idle_s", "tpot_s", "peak_memory_gb"}


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
    """Each MoE layer placed once, on ``ep`` ranks of ``(E + redundant) / ep`` slots each, every
    expert present, no rank holding an expert twice."""
    v = []
    placed: dict[int, int] = {}
    moe = set(m.moe_layers)
    slots = m.num_experts + redundant
    per_rank = slots // plan.degrees.ep if slots % plan.degrees.ep == 0 else None
    for i, p in enumerate(plan.placement or ()):
        where = f"placement[{i}]"
        if p.layer not in moe:
            v.append(Violation("experts", f"layer {p.layer} is not an MoE layer", where))
            continue
        if p.layer in placed:
            v.append(Violation("experts", f"layer {p.layer} is placed twice (placement"
                               f"[{placed[p.layer]}] and placement[{i}])", where))
            continue
        placed[p.layer] = i
        if len(p.ranks) != plan.degrees.ep:
            v.append(Violation("experts", f"layer {p.layer}: {len(p.ranks)} EP ranks listed but "
                               f"ep = {plan.degrees.ep}", where))
        sizes = sorted({len(r) for r in p.ranks})
        if per_rank is not None and sizes != [per_rank]:
            v.append(Violation("experts", f"layer {p.layer}: ranks hold {sizes} slots but the "
                               f"{m.num_experts} experts + {redundant} redundant slots on "
                               f"ep = {plan.degrees.ep} give {per_rank} per rank", where))
        flat = [e for r in p.ranks for e in r]
        bad = sorted({e for e in flat if e >= m.num_experts})
        if bad:
            v.append(Violation("experts", f"layer {p.layer}: expert ids {bad[:5]} do not exist "
                               f"(the model has {m.num_experts})", where))
        missing = sorted(set(range(m.num_experts)) - set(flat))
        if missing:
            v.append(Violation("experts", f"layer {p.layer}: {len(missing)} experts are not "
                               f"placed (first: {missing[:5]})", where))
        for experts in p.ranks:
            if len(set(experts)) != len(experts):
                v.append(Violation("experts", f"layer {p.layer}: a rank holds the same expert "
                                   "twice", where))
                break
    for layer in sorted(moe - set(placed)):
        v.append(Violation("experts", f"MoE layer {layer} has no expert placement", "placement"))
    return v
