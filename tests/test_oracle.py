"""The estimator against the independent oracle (tests/oracle.py) on generated toy models.

The oracle is a separate re-derivation of docs/cost-model.md (roofline mode) that shares no code
with solver.costmodel, solver.kernels, solver.timing or solver.estimate. Every integer the
estimator reports (stage memory, stage step times, hop, TPOT, round, TTFT at load and idle) must
match it exactly, every float metric to 1e-12.
"""

from __future__ import annotations

import math

import oracle
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from solver.estimate import Prepared, evaluate
from solver.hardware import load_hardware_preset
from solver.models import resolve_model
from solver.schema import (
    AttentionSpec,
    Degrees,
    EngineSpec,
    ExpertLoad,
    Grid,
    HardwareSpec,
    Instance,
    LayerPlacement,
    ModelSpec,
    Plan,
    SearchOptions,
    Stage,
    Workload,
    divisors,
)
from solver.space import PlanSpace

pytestmark = pytest.mark.unit


# -- strategies ----------------------------------------------------------------------------------


@st.composite
def models(draw: st.DrawFn) -> ModelSpec:
    layers = draw(st.integers(1, 5), label="layers")
    heads = draw(st.sampled_from([4, 8, 16]), label="heads")
    hidden = draw(st.sampled_from([128, 256, 512]), label="hidden")
    if draw(st.booleans(), label="mla"):
        attention = AttentionSpec(
            kind="mla", num_heads=heads, num_kv_heads=heads, head_dim=64,
            q_lora_rank=draw(st.sampled_from([0, 96]), label="q_lora"),
            kv_lora_rank=draw(st.sampled_from([32, 64]), label="kv_lora"),
            qk_nope_head_dim=32, qk_rope_head_dim=draw(st.sampled_from([16, 32]), label="rope"),
            v_head_dim=draw(st.sampled_from([32, 48]), label="v_dim"),
            bias=draw(st.booleans(), label="mla_bias"))
    else:
        attention = AttentionSpec(
            num_heads=heads, num_kv_heads=draw(st.sampled_from(divisors(heads)), label="kv"),
            head_dim=draw(st.sampled_from([16, 32, 64]), label="head_dim"),
            bias=draw(st.booleans(), label="bias"), qk_norm=draw(st.booleans(), label="qk_norm"),
            sinks=draw(st.booleans(), label="sinks"))
    if draw(st.booleans(), label="sliding"):
        sliding = draw(st.sets(st.integers(0, layers - 1), min_size=1), label="sliding_layers")
        attention = attention.model_copy(update=dict(
            sliding_window=draw(st.sampled_from([16, 100, 512]), label="window"),
            sliding_layers=tuple(sorted(sliding))))
    dense = tuple(sorted(draw(st.sets(st.integers(0, layers - 1), max_size=layers - 1),
                              label="dense_layers")))
    weight = draw(st.sampled_from(["bf16", "fp8", "mxfp4"]), label="weight_precision")
    experts = draw(st.sampled_from([4, 8, 16]), label="experts")
    return ModelSpec(
        num_layers=layers, dense_layers=dense, hidden_size=hidden, attention=attention,
        # a width without dense layers too: configs carry one they never use
        dense_ffn_width=draw(st.sampled_from([256, 512, 1024] if dense else [0, 0, 768]),
                             label="dense_w"),
        num_experts=experts, top_k=draw(st.integers(1, min(4, experts)), label="top_k"),
        expert_ffn_width=draw(st.sampled_from([128, 256, 512]), label="expert_w"),
        num_shared_experts=draw(st.sampled_from([0, 0, 1, 2]), label="shared"),
        shared_expert_width=draw(st.sampled_from([0, 256]), label="shared_w"),
        gated_ffn=draw(st.booleans(), label="gated"),
        ffn_bias=draw(st.booleans(), label="ffn_bias"),
        router_bias=draw(st.booleans(), label="router_bias"),
        vocab_size=draw(st.integers(100, 5000), label="vocab"),
        tie_embeddings=draw(st.booleans(), label="tied"),
        weight_precision=weight,
        expert_precision=draw(st.sampled_from([None, "bf16", "fp8", "mxfp4"]), label="expert_p"),
        weight_block_size=(draw(st.sampled_from([None, 128]), label="block")
                           if weight == "fp8" else None),
        kv_precision=draw(st.sampled_from(["bf16", "fp8"]), label="kv_precision"),
    )


@st.composite
def hardware(draw: st.DrawFn) -> HardwareSpec:
    peaks = {"bf16": draw(st.sampled_from([100.0, 989.5]), label="bf16_tflops")}
    if draw(st.booleans(), label="has_fp8"):
        peaks["fp8"] = 2 * peaks["bf16"]
    if draw(st.booleans(), label="has_fp4"):
        peaks["mxfp4"] = 4 * peaks["bf16"]
    return HardwareSpec(
        peak_tflops=peaks, mfu=draw(st.sampled_from([0.5, 0.7]), label="mfu"),
        # 200 TB/s makes most ops compute-bound, so the FLOP counts are checked too
        hbm_gb=80.0, hbm_tb_s=draw(st.sampled_from([0.5, 3.35, 200.0]), label="hbm_tb_s"),
        hbm_efficiency=0.8, gpus_per_node=draw(st.sampled_from([2, 4, 8]), label="gpn"),
        intra_node_gb_s=draw(st.sampled_from([100.0, 450.0]), label="intra"),
        inter_node_gb_s=draw(st.sampled_from([25.0, 50.0]), label="inter"),
        intra_node_latency_us=2.0, inter_node_latency_us=draw(st.sampled_from([5.0, 9.0])),
        comm_efficiency=draw(st.sampled_from([0.8, 1.0]), label="comm_eff"),
        reserved_gb=draw(st.sampled_from([0.0, 3.0, 0.7]), label="reserved"))


@st.composite
def expert_loads(draw: st.DrawFn, model: ModelSpec) -> ExpertLoad:
    kind = draw(st.sampled_from(["uniform", "power_law", "measured"]), label="load")
    if kind == "uniform":
        return ExpertLoad(kind="uniform")
    if kind == "power_law":
        return ExpertLoad(alpha=draw(st.sampled_from([0.35, 1.2])),
                          seed=draw(st.integers(0, 3), label="load_seed"))
    row = st.lists(st.integers(0, 50), min_size=model.num_experts,
                   max_size=model.num_experts).filter(any)
    counts = tuple(tuple(draw(row, label="counts")) for _ in model.moe_layers)
    return ExpertLoad(kind="measured", counts=counts)


def round_robin_placement(draw: st.DrawFn, model: ModelSpec, ep: int, redundant: int
                          ) -> tuple[LayerPlacement, ...]:
    """A valid placement: every expert once plus ``redundant`` extra replicas, the replicas of
    an expert consecutive and dealt round-robin, so no rank holds an expert twice."""
    out = []
    e = model.num_experts
    for layer in model.moe_layers:
        extra = draw(st.lists(st.integers(0, e - 1), min_size=redundant, max_size=redundant),
                     label="extra_replicas")
        copies = [1 + extra.count(x) for x in range(e)]
        assume(max(copies) <= ep)
        perm = draw(st.permutations(range(e)), label="expert_ids")
        replicas = [perm[x] for x in range(e) for _ in range(copies[x])]
        ranks = tuple(tuple(replicas[r::ep]) for r in range(ep))
        out.append(LayerPlacement(layer=layer, ranks=ranks))
    return tuple(out)


@st.composite
def cases(draw: st.DrawFn) -> tuple[Instance, Plan]:
    model = draw(models())
    hw = draw(hardware())
    tp = draw(st.sampled_from([t for t in divisors(model.attention.num_heads) if t <= 8]),
              label="tp")
    cp = draw(st.sampled_from([1, 1, 2]), label="cp")
    dp = draw(st.sampled_from([1, 2, 3, 4]), label="dp")
    n = tp * cp * dp
    etp = draw(st.sampled_from(divisors(n)), label="etp")
    ep = draw(st.sampled_from(divisors(n // etp)), label="ep")
    if not model.moe_layers:
        etp = ep = 1
    pp = draw(st.integers(1, min(3, model.num_layers)), label="pp")
    q = draw(st.integers(1, 8), label="q")
    batch = dp * q
    redundant = draw(st.sampled_from([0, ep, 2 * ep]), label="redundant") if ep > 1 else 0
    engine = EngineSpec(
        name=draw(st.sampled_from(["vllm", "sglang", "trtllm"]), label="engine"),
        max_num_batched_tokens=draw(st.sampled_from([256, 512, 1000, 2048, 4096]), label="N"),
        step_overhead_us=draw(st.sampled_from([0.0, 200.0, 12.5]), label="overhead"),
        overlap=draw(st.sampled_from(["none", "two_batch"]), label="overlap"),
        ep_dispatch_precision=draw(st.sampled_from(["fp8", "bf16"]), label="dispatch"))
    input_len = draw(st.integers(16, 2000), label="input_len")
    workload = Workload(
        input_len=input_len,
        max_input_len=input_len + draw(st.sampled_from([0, 1, 700, 3000]), label="extra_in"),
        output_len=draw(st.integers(8, 1000), label="output_len"), batch=batch)
    search = SearchOptions(redundant_experts=redundant,
                           tp_cross_node=draw(st.booleans(), label="tp_cross_node"))
    inst = Instance(model=model, hardware=hw, workload=workload, engine=engine,
                    expert_load=draw(expert_loads(model)), search=search)
    grid = Grid(tp, cp, dp, ep, etp, n // (etp * ep), pp)
    assume(not PlanSpace(inst).violations(grid, batch, redundant))
    stages = None
    if pp > 1 and draw(st.booleans(), label="explicit_stages"):
        cuts = sorted(draw(st.sets(st.integers(1, model.num_layers - 1), min_size=pp - 1,
                                   max_size=pp - 1), label="cuts"))
        bounds = [0, *cuts, model.num_layers]
        stages = tuple(Stage(first_layer=a, last_layer=b - 1)
                       for a, b in zip(bounds, bounds[1:], strict=False))
    placement = None
    if model.moe_layers and draw(st.booleans(), label="explicit_placement"):
        placement = round_robin_placement(draw, model, ep, redundant)
    plan = Plan(degrees=Degrees(tp=tp, cp=cp, dp=dp, ep=ep, etp=etp, edp=n // (etp * ep),
                                pp=pp, replicas=draw(st.integers(1, 3), label="replicas")),
                batch=batch, stages=stages, placement=placement,
                redundant_experts=draw(st.sampled_from([None, redundant]), label="plan_R"))
    return inst, plan


# -- the comparison ------------------------------------------------------------------------------


def assert_matches_oracle(inst: Instance, plan: Plan) -> None:
    ev = evaluate(Prepared(inst, calibration=False), plan)
    want = oracle.evaluate(inst, plan)
    got = ev.result
    assert got.s == want.s
    assert got.stage_mem_bytes == tuple(want.stage_mem_bytes)
    assert got.stage_avg_ns == tuple(want.stage_avg_ns)
    assert got.stage_full_ns == tuple(want.stage_full_ns)
    assert (got.hop_ns, got.hop_full_ns, got.overhead_ns) == (
        want.hop_ns, want.hop_full_ns, want.overhead_ns)
    assert got.tpot_ns == want.tpot_ns
    assert got.round_ns == want.round_ns
    assert got.ttft_ns == want.ttft_ns
    assert got.prefill_share == want.rho
    assert round(ev.metrics.ttft_idle_s * 1e9) == want.ttft_idle_ns
    for key, value in ev.metrics.model_dump().items():
        assert value == pytest.approx(want.metrics[key], rel=1e-12), key


@settings(max_examples=150, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(cases())
def test_estimate_matches_the_oracle(case: tuple[Instance, Plan]) -> None:
    inst, plan = case
    d, gpn = plan.degrees, inst.hardware.gpus_per_node
    for what, present in (
            ("MLA", inst.model.attention.kind == "mla"),
            ("sliding window", bool(inst.model.attention.sliding_layers)),
            ("EP all-to-all inside a node", d.ep * d.etp > 1 and d.ep * d.etp <= gpn
             and (d.ep * d.etp) % d.tp == 0 and d.ep * d.etp > d.tp),
            ("EP all-to-all across nodes", d.ep * d.etp > gpn and (d.ep * d.etp) % d.tp == 0),
            ("TP all-reduce across nodes", d.tp > gpn or gpn % d.tp != 0),
            ("cp > 1", d.cp > 1), ("pp > 1", d.pp > 1), ("etp > 1", d.etp > 1),
            ("two-batch overlap", inst.engine.overlap == "two_batch" and d.ep * d.etp > 1),
            ("explicit placement", plan.placement is not None)):
        if present:
            event(what)
    assert_matches_oracle(inst, plan)


def test_untied_lm_head_is_vocab_by_hidden() -> None:
    """The smallest case hypothesis found when the LM head GEMM counted the final norm's
    weights too: one MoE layer, an untied 100-token vocabulary."""
    model = ModelSpec(num_layers=1, hidden_size=128, num_experts=4, top_k=1,
                      attention=AttentionSpec(num_heads=4, num_kv_heads=1, head_dim=16),
                      expert_ffn_width=128, gated_ffn=False, vocab_size=100)
    hw = HardwareSpec(peak_tflops={"bf16": 100.0}, mfu=0.5, hbm_gb=80.0, hbm_tb_s=0.5,
                      hbm_efficiency=0.8, gpus_per_node=2, intra_node_gb_s=100.0,
                      inter_node_gb_s=25.0, intra_node_latency_us=2.0,
                      inter_node_latency_us=5.0, reserved_gb=0.0)
    inst = Instance(model=model, hardware=hw, engine=EngineSpec(max_num_batched_tokens=256),
                    workload=Workload(input_len=16, output_len=8, batch=1),
                    expert_load=ExpertLoad(kind="uniform"))
    assert_matches_oracle(inst, Plan(degrees=Degrees(), batch=1))


def test_estimate_matches_the_oracle_on_deepseek_v3_wide_ep() -> None:
    """A published shape: DeepSeek-V3 (MLA, 3 dense layers, a shared expert) at DP-attention
    32 × EP 32 over four 8-GPU nodes, 32 redundant experts, FP8 dispatch, two-batch overlap."""
    inst = Instance(
        model=resolve_model("deepseek-v3"), hardware=load_hardware_preset("h100-sxm"),
        workload=Workload(input_len=2000, max_input_len=4000, output_len=1000, batch=256),
        engine=EngineSpec(name="sglang", max_num_batched_tokens=4096, overlap="two_batch"),
        search=SearchOptions(redundant_experts=32))
    assert_matches_oracle(inst, Plan(degrees=Degrees(dp=32, ep=32), batch=256))


def test_estimate_matches_the_oracle_on_gpt_oss_with_sliding_windows() -> None:
    """gpt-oss-120b: MXFP4 experts, attention sinks, biases, every other layer a 128-token
    sliding window; TP 4 × PP 2 on H100 (MXFP4 at BF16 math)."""
    inst = Instance(
        model=resolve_model("gpt-oss-120b"), hardware=load_hardware_preset("h100-sxm"),
        workload=Workload(input_len=1000, output_len=500, batch=16),
        engine=EngineSpec(max_num_batched_tokens=2048, step_overhead_us=100.0))
    assert_matches_oracle(inst, Plan(degrees=Degrees(tp=4, ep=4, pp=2), batch=16))


def test_oracle_is_not_vacuous() -> None:
    """The oracle's TPOT is a real, positive figure that grows with the batch."""
    inst = Instance(
        model=resolve_model("qwen3-30b-a3b"), hardware=load_hardware_preset("h100-sxm"),
        workload=Workload(input_len=1000, output_len=500, batch=8))
    small = oracle.evaluate(inst, Plan(degrees=Degrees(tp=2, ep=2), batch=2))
    large = oracle.evaluate(inst, Plan(degrees=Degrees(tp=2, ep=2), batch=8))
    assert 0 < small.tpot_ns < large.tpot_ns
    assert math.isfinite(large.metrics["ttft_s"])
