"""Hypothesis strategies: small valid instances the exhaustive reference solves in well under 1 s.

The instances are small on purpose (2-6 layers, nodes of 2-8 GPUs, batches up to 8, token budgets
down to 256), but every constraint of the problem can bind: the GPU memory is drawn relative
to what the model needs on one GPU, and the targets are drawn around the metrics of a random valid
plan (scaled by 0.5-2), so some instances are comfortably feasible, some are infeasible and many
sit near the edge of a target.
"""

from __future__ import annotations

import math

from hypothesis import strategies as st

from solver.estimate import evaluate
from solver.hardware import load_hardware_preset
from solver.schema import (
    AttentionSpec,
    BatchRange,
    EngineSpec,
    ExpertLoad,
    HardwareSpec,
    Instance,
    ModelSpec,
    Plan,
    SearchOptions,
    Targets,
    Workload,
    divisors,
)
from solver.space import PlanSpace

HARDWARE = ("seed-card", "h100-sxm")


@st.composite
def small_models(draw: st.DrawFn) -> ModelSpec:
    """Explicit small MoE models: GQA attention, sometimes dense layers and shared experts."""
    num_layers = draw(st.integers(2, 6), label="num_layers")
    heads = draw(st.sampled_from([4, 8, 16]), label="heads")
    kv_heads = draw(st.sampled_from(divisors(heads)), label="kv_heads")
    hidden = draw(st.sampled_from([256, 512, 1024, 2048]), label="hidden")
    head_dim = draw(st.sampled_from([32, 64, 128]), label="head_dim")
    experts = draw(st.sampled_from([2, 4, 8, 16]), label="experts")
    top_k = draw(st.integers(1, min(2, experts)), label="top_k")
    expert_width = 64 * draw(st.integers(1, 32), label="expert_width/64")
    dense_layers: tuple[int, ...] = ()
    dense_width = 0
    if draw(st.booleans(), label="has_dense_layers"):
        # Keep at least one MoE layer: the placement is half of what is being tested.
        dense_layers = tuple(sorted(draw(st.sets(st.integers(0, num_layers - 1),
                                                 min_size=1, max_size=num_layers - 1),
                                         label="dense_layers")))
        dense_width = 64 * draw(st.integers(2, 64), label="dense_width/64")
    shared = draw(st.sampled_from([0, 0, 1]), label="shared_experts")
    precision = draw(st.sampled_from(["bf16", "fp8"]), label="precision")
    return ModelSpec(
        name="hypothesis-moe",
        num_layers=num_layers,
        dense_layers=dense_layers,
        hidden_size=hidden,
        attention=AttentionSpec(num_heads=heads, num_kv_heads=kv_heads, head_dim=head_dim),
        dense_ffn_width=dense_width,
        num_experts=experts,
        top_k=top_k,
        expert_ffn_width=expert_width,
        num_shared_experts=shared,
        vocab_size=draw(st.integers(1000, 32000), label="vocab"),
        tie_embeddings=draw(st.booleans(), label="tie_embeddings"),
        weight_precision=precision,
        kv_precision=draw(st.sampled_from(["bf16", "fp8"]), label="kv_precision"),
    )


@st.composite
def small_workloads(draw: st.DrawFn) -> Workload:
    """Short requests and small batches; no targets yet (see :func:`small_instances`)."""
    input_len = draw(st.integers(128, 4096), label="input_len")
    max_input = None
    if draw(st.booleans(), label="has_max_input"):
        max_input = draw(st.integers(input_len, 2 * input_len), label="max_input_len")
    batch: int | BatchRange
    if draw(st.integers(0, 3), label="batch_kind") < 3:
        batch = draw(st.sampled_from([1, 2, 4, 8]), label="batch")
    else:
        low = draw(st.integers(1, 4), label="batch_min")
        batch = BatchRange(min=low, max=draw(st.integers(low, low + 3), label="batch_max"))
    return Workload(input_len=input_len, max_input_len=max_input,
                    output_len=draw(st.integers(16, 512), label="output_len"), batch=batch)


@st.composite
def small_search(draw: st.DrawFn) -> SearchOptions:
    fix: dict[str, int] = {}
    forbid: dict[str, tuple[int, ...]] = {}
    choice = draw(st.sampled_from(["none"] * 6 + ["fix", "forbid"]), label="fix_or_forbid")
    if choice == "fix":
        name = draw(st.sampled_from(["tp", "pp", "ep", "dp"]), label="fixed_degree")
        fix[name] = draw(st.sampled_from([1, 2]), label="fixed_value")
    elif choice == "forbid":
        name = draw(st.sampled_from(["tp", "pp", "ep", "cp", "replicas"]),
                    label="forbidden_degree")
        forbid[name] = (draw(st.sampled_from([1, 2]), label="forbidden_value"),)
    limits = {}
    if draw(st.integers(0, 3), label="has_limits") == 0:
        limits = {"max_pp": draw(st.integers(1, 4), label="max_pp"),
                  "max_cp": draw(st.integers(1, 2), label="max_cp"),
                  "max_dp": draw(st.integers(1, 4), label="max_dp")}
    return SearchOptions(
        fix=fix,
        forbid=forbid,
        **limits,
        redundant_experts=draw(st.sampled_from([0, 0, 2, 3]), label="redundant_experts"),
        ep_cross_node=draw(st.sampled_from([True, True, False]), label="ep_cross_node"),
        # mostly what the engine can run; sometimes the engine-agnostic space (cp, edp > 1)
        engine_rules=draw(st.sampled_from([True, True, False]), label="engine_rules"),
    )


@st.composite
def small_engines(draw: st.DrawFn) -> EngineSpec:
    """Token budgets small enough that chunking, the prefill queue and its limit all matter."""
    return EngineSpec(
        name=draw(st.sampled_from(["vllm", "sglang", "trtllm"]), label="engine"),
        max_num_batched_tokens=draw(st.sampled_from([None, 256, 1024, 4096]), label="budget"),
        step_overhead_us=draw(st.sampled_from([None, 0.0, 200.0]), label="overhead_us"),
        overlap=draw(st.sampled_from(["none", "none", "two_batch"]), label="overlap"),
    )


@st.composite
def small_loads(draw: st.DrawFn) -> ExpertLoad:
    if draw(st.booleans(), label="power_law"):
        alpha = draw(st.sampled_from([0.5, 0.8, 1.0, 1.2, 1.5, 2.0]), label="alpha")
        return ExpertLoad(kind="power_law", alpha=alpha,
                          seed=draw(st.integers(0, 3), label="load_seed"))
    return ExpertLoad()


def _hardware(name: str, **overrides: object) -> HardwareSpec:
    base = load_hardware_preset(name)
    return HardwareSpec(**{**base.model_dump(), "name": f"{name} (test)", **overrides})


#: Target scales around the probe plan's value: 1 is exactly at its edge, below 1 tighter, above 1
#: looser. Hypothesis favours early entries and shrinks towards the first: the edge.
_SCALES = (1.0, 1.4, 2.0, 0.7, 1.01, 0.99, 0.5, 0.9)


def _scaled(draw: st.DrawFn, value: float, label: str, *, upper: bool) -> float:
    """``value`` scaled by a factor in [0.5, 2]: multiplied for an upper limit (TTFT), divided for
    a lower limit (a rate), so that factors above 1 loosen the target either way."""
    factor = draw(st.sampled_from(_SCALES), label=label)
    return float(f"{(value * factor if upper else value / factor):.6g}")


@st.composite
def small_instances(draw: st.DrawFn) -> Instance:
    """A small valid instance with memory and targets drawn near what a random plan achieves."""
    model = draw(small_models(), label="model")
    workload = draw(small_workloads(), label="workload")
    search = draw(small_search(), label="search")
    load = draw(small_loads(), label="expert_load")
    engine = draw(small_engines(), label="engine")
    hw_name = draw(st.sampled_from(HARDWARE), label="hardware")
    gpn = draw(st.sampled_from([2, 4, 8]), label="gpus_per_node")
    reserved = draw(st.sampled_from([0.0, 0.1, 0.5]), label="reserved_gb")

    # Memory: relative to the all-ones plan's peak on a GPU with room to spare.
    roomy = _hardware(hw_name, gpus_per_node=gpn, reserved_gb=reserved)
    base = Instance(name="hypothesis", model=model, hardware=roomy, workload=workload,
                    expert_load=load, search=search, engine=engine)
    batch = workload.batch_bounds[0]
    one_gpu = evaluate(base, Plan(degrees={}, batch=batch)).metrics.peak_memory_gb
    fraction = draw(st.sampled_from([1.0, 1.5, 0.7, 3.0, 0.5, 1.1, 0.9, 10.0]),
                    label="hbm_frac")
    # the engine allocates a fraction of HBM: size HBM so that its budget is what was drawn
    hbm = (reserved + max(1e-3, fraction * (one_gpu - reserved))) / engine.memory_fraction
    hardware = _hardware(hw_name, gpus_per_node=gpn, reserved_gb=reserved,
                         hbm_gb=float(f"{hbm:.6g}"))

    # Targets: around the metrics of one random structurally valid plan (balanced stages, default
    # placement), each target present with some probability.
    probe_instance = base.model_copy(update={"hardware": hardware})
    space = PlanSpace(probe_instance)
    candidates = [(g, b) for n in range(1, 9) for g in space.grids(n)
                  for b in range(workload.batch_bounds[0], workload.batch_bounds[1] + 1)
                  if not space.violations(g, b, space.redundant(g.ep))]
    targets = Targets()
    if candidates:
        grid, probe_batch = candidates[draw(st.integers(0, len(candidates) - 1),
                                            label="probe_plan")]
        probe = Plan(degrees=grid.degrees(), batch=probe_batch)
        met = evaluate(probe_instance, probe).metrics
        fields: dict[str, float | int] = {}
        if draw(st.integers(0, 2), label="has_ttft") == 0:
            fields["max_ttft_s"] = _scaled(draw, met.ttft_s, "ttft_scale", upper=True)
        if draw(st.integers(0, 2), label="has_tpot") == 0:
            fields["max_tpot_s"] = _scaled(draw, met.tpot_s, "tpot_scale", upper=True)
        if draw(st.integers(0, 3), label="has_rate_per_gpu") == 0:
            fields["min_output_tokens_per_s_per_gpu"] = _scaled(
                draw, met.output_tokens_per_s_per_gpu, "rate_per_gpu_scale", upper=False)
        if draw(st.integers(0, 3), label="has_total_rate") == 0:
            # Up to a few replicas of the probe plan.
            replicas = draw(st.integers(1, 3), label="total_rate_replicas")
            fields["min_output_tokens_per_s"] = _scaled(
                draw, met.output_tokens_per_s * replicas, "total_rate_scale", upper=False)
        if draw(st.integers(0, 3), label="has_max_gpus") == 0:
            gpus = grid.gpus_per_instance
            scaled = _scaled(draw, gpus, "max_gpus_scale", upper=True)
            fields["max_gpus"] = max(1, math.floor(scaled))
        targets = Targets(**fields)
    workload = workload.model_copy(update={"targets": targets})
    return Instance(name="hypothesis", model=model, hardware=hardware, workload=workload,
                    expert_load=load, search=search, engine=engine)
