"""solver/costmodel.py where tests/test_costmodel.py (roofline mode) cannot look: which measured
curve prices each term and with what arguments, and the contracts of the arrays (mutation
testing, docs/testing.md).

The measured path is checked with a *spy* calibration: every op class and collective gets its own
curve with a distinct floor, per-call and per-sequence constants, an efficiency that varies with
``x`` and query-group factors, so a term equals the expected curve evaluated at the expected
``(ideal, x, calls, sequences, KV heads, group)`` and nothing else. The expected arguments are
the hand derivations of tests/test_costmodel.py (same tiny model and GPU, docs/cost-model.md),
with the measured mode's ``ideal = max(FLOPs / peak, bytes / HBM)`` at the datasheet peaks
(bf16 1e14, fp8 2e14 FLOP/s; HBM 1e12 B/s, or 1e15 for the compute-bound variant).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from solver import timing
from solver.calibration import Calibration, CommModel, ComputeModel
from solver.costmodel import CostModel, HotRank, chunk_sizes
from solver.hardware import load_hardware_preset
from solver.kernels import Kernels
from solver.schema import (
    AttentionSpec,
    EngineSpec,
    ExpertLoad,
    Grid,
    HardwareSpec,
    Instance,
    ModelSpec,
    Workload,
)

pytestmark = pytest.mark.unit

H, N = 64, 512
P_A = {1: 12416, 2: 6272, 4: 4224}  # attention weights per GPU by tp (test_costmodel.py)
DENSE, EXPERT, ROUTER = 24576, 6144, 256
MLA_PA_TP2 = 14336 / 2 + 2720  # sharded / 2 + replicated
HBM, FAST_HBM = 1e12, 1e15
PEAK = {"bf16": 1e14, "fp8": 2e14}


def make_model(**over) -> ModelSpec:
    fields = dict(
        name="tiny", num_layers=2, dense_layers=(0,), hidden_size=H,
        attention=AttentionSpec(num_heads=4, num_kv_heads=2, head_dim=16),
        dense_ffn_width=128, num_experts=4, top_k=2, expert_ffn_width=32, vocab_size=100)
    fields.update(over)
    return ModelSpec(**fields)


def mla_model(**over) -> ModelSpec:
    return make_model(attention=AttentionSpec(
        kind="mla", num_heads=4, num_kv_heads=4, head_dim=16, kv_lora_rank=32,
        qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16), **over)


def make_hw(**over) -> HardwareSpec:
    fields = dict(
        name="tiny-gpu", peak_tflops={"bf16": 100.0, "fp8": 200.0}, mfu=0.5, hbm_gb=10.0,
        hbm_tb_s=1.0, hbm_efficiency=0.5, gpus_per_node=8, intra_node_gb_s=100.0,
        inter_node_gb_s=10.0, intra_node_latency_us=1.0, inter_node_latency_us=5.0,
        comm_efficiency=1.0, reserved_gb=1.5)
    fields.update(over)
    return HardwareSpec(**fields)


WL = Workload(input_len=128, max_input_len=256, output_len=64, batch=4)


def make_instance(model: ModelSpec | None = None, hw: HardwareSpec | None = None,
                  workload: Workload = WL, **engine) -> Instance:
    return Instance(model=model or make_model(), hardware=hw or make_hw(), workload=workload,
                    engine=EngineSpec(**{"max_num_batched_tokens": N, **engine}),
                    expert_load=ExpertLoad(kind="uniform"))


def grid(tp: int = 1, cp: int = 1, dp: int = 1, ep: int = 1, etp: int = 1, pp: int = 1) -> Grid:
    n = tp * cp * dp
    return Grid(tp, cp, dp, ep, etp, max(1, n // (ep * etp)), pp)


def terms(cm: CostModel, layer: int, g: Grid, hot: HotRank | None = None, d: float = 0.0,
          p: float = 0.0, u: float = 0.0) -> dict[str, float]:
    t = cm.layer_terms(layer, g, hot, np.array([float(d)]), np.array([float(p)]), u)
    return {k: float(np.asarray(v).ravel()[0]) for k, v in t.items()}


def approx(x: float):
    return pytest.approx(x, rel=1e-9, abs=0)


ALL = HotRank(1_000_000, 4)  # ep 1: the one rank holds all 4 experts and all the load

# -- the spy calibration ----------------------------------------------------------------------

PRIMES = [11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97,
          101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167, 173, 179, 181]
FORMATS = ("bf16", "fp8_block", "fp8_per_tensor", "w8a16", "w4a16_mxfp4", "nvfp4")
COMPUTE_KEYS = (
    [f"gemm.{f}" for f in FORMATS] + [f"moe.{f}.balanced" for f in FORMATS]
    + [f"attention.generation.{a}.kv{kv}" for a in ("gqa", "mla") for kv in ("bf16", "fp8")]
    + [f"attention.context.gqa.{act}_kv{kv}.by_isl" for act in ("bf16", "fp8")
       for kv in ("bf16", "fp8")]
    + [f"attention.context.mla.kv{kv}.by_isl" for kv in ("bf16", "fp8")])
DEEPEP_KEYS = [f"deepep.{fam}.{mode}.{phase}.{dt}.nodes{n}"
               for fam in ("sglang", "trtllm") for mode in ("ll", "normal")
               for phase in ("dispatch", "combine") for dt in ("fp8", "bf16") for n in (1, 2)]
A2A_KEYS = [f"comm.a2a.{link}.{mode}.{phase}" for link in ("intra", "inter")
            for mode in ("ll", "normal") for phase in ("dispatch", "combine")]
ALLREDUCE_KEYS = [f"comm.custom_allreduce.n{n}" for n in (2, 4, 8)]


def _compute(i: int, key: str) -> ComputeModel:
    p = PRIMES[i % len(PRIMES)] * (1 + i // len(PRIMES))
    return ComputeModel(floor_s=p * 1e-9, x=(1.0, 1e3, 1e9), efficiency=(0.9, 0.5, 0.2),
                        label=key, per_sequence_s=p * 1e-10, per_sequence_kv_head_s=p * 3e-11,
                        group_factor=((1.0, 1.0), (2.0, 1.25), (4.0, 1.5), (8.0, 2.0)))


def _comm(i: int, key: str) -> CommModel:
    p = PRIMES[i % len(PRIMES)] * (1 + i // len(PRIMES))
    # log-log straight line: t = p·1e-9 · b^0.5 up to 1e12 bytes
    return CommModel(bytes_=(1.0, 1e12), seconds=(p * 1e-9, p * 1e-3), tail_bw=1e12, label=key)


def spy(*, deepep: bool = True) -> Calibration:
    comm_keys = ALLREDUCE_KEYS + A2A_KEYS + (DEEPEP_KEYS if deepep else [])
    return Calibration(
        gpu="spy", source="spy",
        compute={k: _compute(i, k) for i, k in enumerate(COMPUTE_KEYS)},
        comm={k: _comm(i, k) for i, k in enumerate(comm_keys)})


SPY = spy()


def measured_cm(model: ModelSpec | None = None, hw: HardwareSpec | None = None,
                cal: Calibration = SPY, **engine) -> CostModel:
    cm = CostModel(make_instance(model, hw, **engine), calibration=False)
    cm.k = Kernels(cm.hw, cal)
    return cm


def gemm_ideal(tokens: float, params: float, w: float, a: float, io: float, peak: float,
               hbm: float) -> float:
    return max(2 * tokens * params / peak, (params * w + tokens * io * a) / hbm)


# -- the default is the GPU's own measured data ---------------------------------------------------


def test_the_default_cost_model_reads_the_gpus_measured_curves() -> None:
    inst = Instance(model=make_model(), hardware=load_hardware_preset("h100-sxm"), workload=WL,
                    expert_load=ExpertLoad(kind="uniform"))
    args = (0, grid(tp=2, etp=2), None, np.array([4.0]), np.array([0.0]), 0.0)
    default = CostModel(inst).layer_terms(*args)
    measured = CostModel(inst, calibration=True).layer_terms(*args)
    roofline = CostModel(inst, calibration=False).layer_terms(*args)
    assert default.keys() == measured.keys() == roofline.keys()
    for name in default:
        assert float(default[name][0]) == float(measured[name][0])
    assert any(float(default[n][0]) != float(roofline[n][0]) for n in default)


# -- GEMMs: the weight format names the curve, the calls count its floor -----------------------


@pytest.mark.parametrize("hbm", [HBM, FAST_HBM], ids=["memory-bound", "compute-bound"])
@pytest.mark.parametrize(("model", "tp", "pa", "key", "calls", "w", "math_p"), [
    (make_model(), 1, P_A[1], "gemm.bf16", 2, 2, "bf16"),
    (mla_model(), 2, MLA_PA_TP2, "gemm.bf16", 4, 2, "bf16"),  # MLA: four projection GEMMs
    (make_model(weight_precision="fp8", weight_block_size=128), 1, P_A[1], "gemm.fp8_block", 2,
     1, "fp8"),
    (make_model(weight_precision="fp8"), 1, P_A[1], "gemm.fp8_per_tensor", 2, 1, "fp8"),
], ids=["gqa", "mla", "fp8-block", "fp8-per-tensor"])
def test_attention_projections_use_the_weight_format_curve(model, tp, pa, key, calls, w, math_p,
                                                           hbm) -> None:
    cm = measured_cm(model, make_hw(hbm_tb_s=hbm / 1e12))
    tokens = 4 + 100 / 2  # 4 decode + 100 prompt tokens over cp 2
    t = terms(cm, 0, grid(tp=tp, cp=2), d=4, p=100, u=64.5)
    ideal = gemm_ideal(tokens, pa, w, 2, 2 * H, PEAK[math_p], hbm)
    assert t["attn_proj"] == approx(float(SPY.compute[key].time(ideal, tokens, calls)))


def test_fp8_weights_without_fp8_units_run_as_w8a16() -> None:
    """An A100-like GPU (no FP8 peak): FP8 weights dequantise into BF16 math (w8a16)."""
    hw = make_hw(peak_tflops={"bf16": 100.0}, hbm_tb_s=1000.0)
    cm = measured_cm(make_model(weight_precision="fp8", weight_block_size=128), hw)
    t = terms(cm, 0, grid(), d=4)
    ideal = gemm_ideal(4, P_A[1], 1, 2, 2 * H, PEAK["bf16"], FAST_HBM)
    assert t["attn_proj"] == approx(float(SPY.compute["gemm.w8a16"].time(ideal, 4, 2)))


def test_fp4_weights_compute_in_the_activation_precision() -> None:
    """MXFP4 weights on a GPU without FP4 units compute in the activation precision where it has
    tensor cores: FP8 activations → the FP8 peak (4.25-bit weights read)."""
    cm = measured_cm(make_model(weight_precision="mxfp4", activation_precision="fp8"),
                     make_hw(hbm_tb_s=1000.0))
    t = terms(cm, 0, grid(), d=2000)
    ideal = gemm_ideal(2000, P_A[1], 4.25 / 8, 1, 2 * H, PEAK["fp8"], FAST_HBM)
    assert ideal == 2 * 2000 * P_A[1] / PEAK["fp8"]  # premise: compute-bound
    assert t["attn_proj"] == approx(float(SPY.compute["gemm.w4a16_mxfp4"].time(ideal, 2000, 2)))


@pytest.mark.parametrize(("model", "layer", "tp", "params", "calls"), [
    (make_model(), 0, 2, DENSE / 2, 2),  # a dense FFN: up (gate+up) and down
    (make_model(), 1, 1, ROUTER, 1),  # an MoE layer: the router only
    (make_model(num_shared_experts=1), 1, 2, EXPERT / 2 + ROUTER, 3),  # shared expert + router
], ids=["dense", "router", "shared-and-router"])
def test_dense_ffn_counts_one_floor_per_kernel(model, layer, tp, params, calls) -> None:
    cm = measured_cm(model)
    hot = ALL if layer == 1 else None
    t = terms(cm, layer, grid(tp=tp, etp=tp), hot, d=4)
    ideal = gemm_ideal(4, params, 2, 2, 2 * H, PEAK["bf16"], HBM)
    assert t["ffn_dense"] == approx(float(SPY.compute["gemm.bf16"].time(ideal, 4, calls)))


# -- grouped MoE GEMMs ---------------------------------------------------------------------------


def touched(slots: int, routed: float) -> float:
    return min(slots, slots * (1 - (1 - 1 / slots) ** routed), routed)


@pytest.mark.parametrize("hbm", [HBM, FAST_HBM], ids=["memory-bound", "compute-bound"])
@pytest.mark.parametrize(("model", "key", "e", "a", "math_p"), [
    (make_model(), "moe.bf16.balanced", 2, 2, "bf16"),
    # experts in the weights' precision share its 128×128 blocks
    (make_model(weight_precision="fp8", weight_block_size=128), "moe.fp8_block.balanced", 1, 2,
     "fp8"),
    # FP8 experts under BF16 weights: the block size belongs to the weights, not the experts
    (make_model(expert_precision="fp8", weight_block_size=128), "moe.fp8_per_tensor.balanced",
     1, 2, "fp8"),
    (make_model(expert_precision="mxfp4"), "moe.w4a16_mxfp4.balanced", 4.25 / 8, 2, "bf16"),
    # MXFP4 experts with FP8 activations: FP8 math
    (make_model(expert_precision="mxfp4", activation_precision="fp8"),
     "moe.w4a16_mxfp4.balanced", 4.25 / 8, 1, "fp8"),
], ids=["bf16", "fp8-block", "fp8-experts-per-tensor", "mxfp4", "mxfp4-fp8-act"])
def test_moe_experts_use_the_expert_format_curve(model, key, e, a, math_p, hbm) -> None:
    cm = measured_cm(model, make_hw(hbm_tb_s=hbm / 1e12))
    t = terms(cm, 1, grid(), ALL, d=4, p=100, u=64.5)
    routed = (4 + 100) * 2  # every token copy on the one rank
    x_touched = touched(4, routed)
    ideal = max(2 * routed * EXPERT / PEAK[math_p],
                (x_touched * EXPERT * e + routed * (2 * H + 32) * a) / hbm)
    want = float(SPY.compute[key].time(ideal, routed / x_touched, 1))
    assert t["moe_experts"] == approx(want)


# -- attention -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "tp", "key", "kv_tok", "flops_key", "kv_heads", "group"), [
    # GQA, 2 KV heads: tp 1 holds both (groups of 4/2), tp 2 one each, tp 4 one (replicated)
    # with one query head
    (make_model(), 1, "attention.generation.gqa.kvbf16", 128, 256, 2, 2),
    (make_model(), 2, "attention.generation.gqa.kvbf16", 64, 128, 1, 2),
    (make_model(), 4, "attention.generation.gqa.kvbf16", 64, 64, 1, 1),
    (make_model(kv_precision="fp8"), 1, "attention.generation.gqa.kvfp8", 64, 256, 2, 2),
    # MLA: one latent "KV head", every query head on the GPU in its group; 2·2·(64 + 8) FLOPs
    (mla_model(), 2, "attention.generation.mla.kvbf16", 80, 288, 1, 2),
    (mla_model(kv_precision="fp8"), 1, "attention.generation.mla.kvfp8", 40, 576, 1, 4),
], ids=["gqa-tp1", "gqa-tp2", "gqa-tp4", "gqa-kvfp8", "mla-tp2", "mla-kvfp8"])
def test_decode_attention_curve_and_its_arguments(model, tp, key, kv_tok, flops_key, kv_heads,
                                                  group) -> None:
    """4 sequences reading 160 keys each: FLOPs 4·160·(per key), bytes 4·160·kv + 2·4·64·2;
    the curve's x is the KV bytes read, and it is told the sequences, KV heads and group."""
    cm = measured_cm(model)
    t = terms(cm, 0, grid(tp=tp, etp=tp), d=4)
    ideal = max(4 * 160 * flops_key / PEAK["bf16"], (4 * 160 * kv_tok + 2 * 4 * H * 2) / HBM)
    want = float(SPY.compute[key].time_decode(ideal, 4 * 160 * kv_tok, 4, kv_heads, group))
    assert t["attn_core"] == approx(want)


@pytest.mark.parametrize(("model", "key", "kv_tok", "per_pair", "a"), [
    (make_model(), "attention.context.gqa.bf16_kvbf16.by_isl", 128, 256, 2),
    (make_model(kv_precision="fp8"), "attention.context.gqa.bf16_kvfp8.by_isl", 64, 256, 2),
    (make_model(kv_precision="fp8", activation_precision="fp8"),
     "attention.context.gqa.fp8_kvfp8.by_isl", 64, 256, 1),
    (mla_model(), "attention.context.mla.kvbf16.by_isl", 80, 320, 2),
    (mla_model(kv_precision="fp8"), "attention.context.mla.kvfp8.by_isl", 40, 320, 2),
], ids=["gqa", "gqa-kvfp8", "gqa-fp8", "mla", "mla-kvfp8"])
def test_prefill_attention_curve_is_read_at_the_sequence_length(model, key, kv_tok, per_pair,
                                                                a) -> None:
    """100 prompt tokens each attending to u = 64.5 keys: the curve's x is 2u (the sequence
    length whose causal average is u)."""
    cm = measured_cm(model)
    t = terms(cm, 0, grid(), p=100, u=64.5)
    pairs = 100 * 64.5
    act_bytes = 2 * H * a
    ideal = max(pairs * per_pair / PEAK["fp8" if a == 1 else "bf16"],
                (100 * (kv_tok + act_bytes) + 64.5 * kv_tok) / HBM)
    assert t["attn_core"] == approx(float(SPY.compute[key].time(ideal, 129.0, 1)))


@pytest.mark.parametrize(("qk_norm", "calls"), [(False, 2), (True, 4)])
def test_measured_norms_pay_a_floor_per_kernel(qk_norm: bool, calls: int) -> None:
    """With measured data, each element-wise kernel costs 3 µs plus its bytes at 0.8 of HBM."""
    model = make_model(attention=AttentionSpec(num_heads=4, num_kv_heads=2, head_dim=16,
                                               qk_norm=qk_norm))
    t = terms(measured_cm(model), 0, grid(), d=4)
    assert t["norms"] == approx(calls * 3e-6 + calls * 3 * 4 * H * 2 / (0.8 * HBM))


# -- expert-parallel dispatch and combine -------------------------------------------------------


# DP 4 × EP 4, share 0.25: 4 token sets; per token E[ranks] R = 4·(1 − 0.75²) = 1.75 of k = 2.
# Decode (4 tokens): routed 4·4·2·0.25 = 8 copies, each sent (low-latency kernels count one per
# token and expert). Prefill (100 tokens): routed 200, deduplicated per rank 200·1.75/2 = 175.
@pytest.mark.parametrize(("engine", "family"), [("vllm", "sglang"), ("sglang", "sglang"),
                                                ("trtllm", "trtllm")])
@pytest.mark.parametrize(("d", "p", "mode", "copies"), [
    (4, 0, "ll", 8.0), (0, 100, "normal", 175.0), (0, 1, "normal", 1.75)],
    ids=["decode", "prefill", "one-prompt-token"])
@pytest.mark.parametrize(("dispatch", "elem"), [("fp8", 1 + 4 / 128), ("bf16", 2)])
def test_deepep_curves_by_engine_mode_and_precision(engine, family, d, p, mode, copies,
                                                    dispatch, elem) -> None:
    cm = measured_cm(name=engine, ep_dispatch_precision=dispatch)
    t = terms(cm, 1, grid(dp=4, ep=4), HotRank(250_000, 1), d=d, p=p, u=64.5)
    pre = f"deepep.{family}.{mode}"
    want = (float(SPY.comm[f"{pre}.dispatch.{dispatch}.nodes1"].time(copies * H * elem))
            + float(SPY.comm[f"{pre}.combine.bf16.nodes1"].time(copies * H * 2)))
    assert t["ep_comm"] == approx(want)


def test_deepep_across_nodes_reads_the_multi_node_curves() -> None:
    """EP 4 on 2-GPU nodes spans 2 nodes: the curves measured across 2 nodes."""
    cm = measured_cm(hw=make_hw(gpus_per_node=2), ep_dispatch_precision="bf16")
    t = terms(cm, 1, grid(dp=4, ep=4), HotRank(250_000, 1), d=4)
    want = (float(SPY.comm["deepep.sglang.ll.dispatch.bf16.nodes2"].time(8 * H * 2))
            + float(SPY.comm["deepep.sglang.ll.combine.bf16.nodes2"].time(8 * H * 2)))
    assert t["ep_comm"] == approx(want)


@pytest.mark.parametrize(("d", "p", "mode", "arriving"), [
    # copies that leave the rank: routed · R/k · (sets − 1)/sets
    (4, 0, "ll", 8 * 0.875 * 0.75), (0, 100, "normal", 200 * 0.875 * 0.75)],
    ids=["decode", "prefill"])
def test_all_to_all_curves_without_deepep_data(d, p, mode, arriving) -> None:
    cal = spy(deepep=False)
    cm = measured_cm(cal=cal, ep_dispatch_precision="fp8")
    t = terms(cm, 1, grid(dp=4, ep=4), HotRank(250_000, 1), d=d, p=p, u=64.5)
    want = (float(cal.comm[f"comm.a2a.intra.{mode}.dispatch"].time(arriving * H * 1.03125))
            + float(cal.comm[f"comm.a2a.intra.{mode}.combine"].time(arriving * H * 2)))
    assert t["ep_comm"] == approx(want)


def test_all_to_all_curves_across_nodes_take_the_slower_of_rdma_and_nvlink() -> None:
    """EP 4 on 2-GPU nodes, tp 1: 4 sets, 2 per node; each phase max(inter(rdma),
    intra(nvlink)) with rdma = nvlink · (4 − 2)/(4 − 1) · 2·(1 − 0.5²)/1.75."""
    cal = spy(deepep=False)
    cm = measured_cm(make_model(), make_hw(gpus_per_node=2), cal=cal,
                     ep_dispatch_precision="bf16")
    t = terms(cm, 1, grid(dp=4, ep=4), HotRank(250_000, 1), d=4)
    nvlink = 8 * 0.875 * 0.75 * H * 2
    rdma = nvlink * (2 / 3) * (1.5 / 1.75)
    want = sum(max(float(cal.comm[f"comm.a2a.inter.ll.{ph}"].time(rdma)),
                   float(cal.comm[f"comm.a2a.intra.ll.{ph}"].time(nvlink)))
               for ph in ("dispatch", "combine"))
    assert t["ep_comm"] == approx(want)


def test_sets_per_node_are_whole_tp_groups() -> None:
    """Roofline, 6-GPU nodes, tp 4 · dp 2 with EP 8 spanning 2 nodes: 2 token sets of which
    ⌊6/4⌋ = 1 fits a node, so every copy leaving its group crosses the network:
    rdma = nvlink · (2 − 1)/(2 − 1) · 2·(1 − 0.5²)/R, R = 8·(1 − (7/8)²) = 1.875."""
    hw = make_hw(gpus_per_node=6, inter_node_latency_us=0.0, intra_node_latency_us=0.0)
    cm = CostModel(make_instance(hw=hw, ep_dispatch_precision="bf16"), calibration=False)
    t = terms(cm, 1, grid(tp=4, dp=2, ep=8), HotRank(250_000, 1), d=4)
    r = 8 * (1 - (7 / 8) ** 2)
    arriving = 2 * 4 * 2 * 0.25 * (r / 2) * (1 / 2)
    nvlink = arriving * H * 2
    rdma = nvlink * 1.0 * (2 * (1 - 0.5 ** 2) / r)
    want = 2 * max(rdma / 10e9, nvlink / 100e9)
    assert t["ep_comm"] == approx(want)


# -- which terms exist -----------------------------------------------------------------------


@pytest.mark.parametrize(("layer", "g", "want"), [
    (0, grid(), {"attn_proj", "attn_core", "ffn_dense", "norms", "tp_comm"}),
    (0, grid(cp=2), {"attn_proj", "attn_core", "ffn_dense", "norms", "tp_comm", "cp_comm"}),
    (1, grid(dp=2, ep=2), {"attn_proj", "attn_core", "ffn_dense", "norms", "tp_comm",
                           "moe_experts", "ep_comm"}),
], ids=["dense", "cp", "moe"])
def test_a_term_exists_only_where_the_plan_does_that_work(layer, g, want) -> None:
    cm = CostModel(make_instance(), calibration=False)
    assert set(cm.layer_terms(layer, g, HotRank(500_000, 2), np.array([4.0]),
                              np.array([0.0]), 0.0)) == want


def test_a_one_expert_moe_layer_is_costed_as_moe() -> None:
    """A single routed expert is still an MoE layer: router, expert GEMM, its weights."""
    model = make_model(num_experts=1, top_k=1)
    cm = CostModel(make_instance(model), calibration=False)
    cost = cm.layer_cost(1, grid(), HotRank(1_000_000, 1), 4)
    assert "moe_experts" in cost.terms["decode"]
    assert cost.weight_bytes == (P_A[1] + 64) * 2 + EXPERT * 2  # router 64·1


# -- arrays: integers, and a saturated queue ---------------------------------------------------


def test_times_and_bytes_are_integers() -> None:
    """Nanoseconds and bytes are int64 arrays (the planner's CP-SAT model reads them)."""
    cm = CostModel(make_instance(), calibration=False)
    cost = cm.layer_cost(1, grid(dp=2, ep=2), HotRank(500_000, 2), 8)
    ex = cm.stage_extras(grid(dp=2, ep=2, pp=2), 0.5, 8)
    for arr in (cost.avg_ns, cost.full_max_ns, ex.first_avg_ns, ex.last_avg_ns,
                ex.first_full_ns, ex.last_full_ns, ex.hop_avg_ns, ex.hop_full_ns, ex.mem_last):
        assert arr.dtype == np.int64


def test_a_prefill_share_of_exactly_one_never_finishes() -> None:
    """input 64, output 64, budget 512: ρ(s) = 64s / (64·(512 − s)) = 1 at s = 256 exactly,
    where the prefill queue no longer drains (and no warning is raised for it)."""
    wl = Workload(input_len=64, max_input_len=64, output_len=64, batch=300)
    cm = CostModel(make_instance(workload=wl), calibration=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cost = cm.layer_cost(0, grid(), None, 300)
        ex = cm.stage_extras(grid(), 0.0, 300)
    assert cost.avg_ns[254] < timing.NEVER
    assert cost.avg_ns[255] == timing.NEVER and ex.first_avg_ns[255] == timing.NEVER
    assert ex.last_avg_ns[255] == timing.NEVER


# -- an idle prefill ------------------------------------------------------------------------------


def test_idle_prefill_extras_hand_derived() -> None:
    """Roofline (B = 5e11, F = 5e13), pp 2 over 2-GPU nodes (the hop crosses the network), a
    1024-token prompt in two 512-token chunks, 200 µs per step:
    embedding 1024·64·2 / B; LM head one row of V·h = 6400 (tied or not);
    hops (pp − 1)·Σ(5 µs + 512·128 / 10 GB/s); overhead 2 · 200 µs."""
    wl = Workload(input_len=1024, max_input_len=1024, output_len=64, batch=1)
    for tied in (False, True):
        cm = CostModel(make_instance(make_model(tie_embeddings=tied), make_hw(gpus_per_node=2),
                                     wl, step_overhead_us=200.0), calibration=False)
        got = cm.idle_prefill_extras(grid(tp=2, etp=2, pp=2))
        head = max(2 * 6400 / 2 / 5e13, (6400 / 2 * 2 + 64 * 2) / 5e11)
        assert got.keys() == {"embedding", "lm_head", "pp_comm", "step_overhead"}
        assert got["embedding"] == approx(1024 * H * 2 / 5e11)
        assert got["lm_head"] == approx(head)
        assert got["pp_comm"] == approx(2 * (5e-6 + 512 * 128 / 10e9))
        assert got["step_overhead"] == approx(2 * 200e-6)
    assert chunk_sizes(1024, 512).tolist() == [512.0, 512.0]
    assert chunk_sizes(1000, 512).tolist() == [512.0, 488.0]


def test_idle_prefill_without_pipeline_has_no_hop() -> None:
    cm = CostModel(make_instance(), calibration=False)
    assert cm.idle_prefill_extras(grid())["pp_comm"] == 0.0
    assert math.isclose(cm.idle_prefill_extras(grid())["step_overhead"],
                        cm.overhead_ns / 1e9)  # 256 tokens: one chunk


@pytest.mark.parametrize(("engine", "missing", "family"), [
    ("vllm", "sglang", "trtllm"), ("sglang", "sglang", "trtllm"), ("trtllm", "trtllm", "sglang")])
def test_deepep_reads_the_other_familys_curves_where_its_own_are_missing(engine, missing,
                                                                         family) -> None:
    """B200's shipped data has TensorRT-LLM's DeepEP measurements only: vLLM and SGLang, which
    prefer SGLang's, read TensorRT-LLM's rather than fall back to the all-to-all curves (and
    TensorRT-LLM reads SGLang's where only those exist)."""
    partial = Calibration(gpu="spy", source="spy", compute=SPY.compute, comm={
        k: v for k, v in SPY.comm.items() if not k.startswith(f"deepep.{missing}.")})
    cm = measured_cm(cal=partial, name=engine, ep_dispatch_precision="bf16")
    t = terms(cm, 1, grid(dp=4, ep=4), HotRank(250_000, 1), d=4)
    want = (float(SPY.comm[f"deepep.{family}.ll.dispatch.bf16.nodes1"].time(8 * H * 2))
            + float(SPY.comm[f"deepep.{family}.ll.combine.bf16.nodes1"].time(8 * H * 2)))
    assert t["ep_comm"] == approx(want)


def test_steps_past_the_token_budget_never_finish_without_a_warning() -> None:
    """From s = budget on no prefill chunk fits beside the decodes (ρ is infinite there): those
    steps are NEVER (as every s where the prefill queue saturates), and the masked inf·0 raises
    no RuntimeWarning."""
    cm = CostModel(make_instance(), calibration=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cost = cm.layer_cost(1, grid(), ALL, N + 8)
    assert cost.avg_ns[0] < timing.NEVER
    assert all(x == timing.NEVER for x in cost.avg_ns[N - 1:N + 8])


def test_stage_extras_past_the_token_budget_never_finish_without_a_warning() -> None:
    """The same for the embedding, the LM head and the (absent) hop of a stage."""
    cm = CostModel(make_instance(), calibration=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ex = cm.stage_extras(grid(), 0.5, N + 8)
    assert ex.first_avg_ns[0] < timing.NEVER
    for times in (ex.first_avg_ns, ex.last_avg_ns, ex.hop_avg_ns):
        assert all(x == timing.NEVER for x in times[N - 1:N + 8])


def _same_extras(a, b) -> bool:
    import dataclasses

    def same(x, y) -> bool:
        if isinstance(x, dict):
            return x.keys() == y.keys() and all(same(x[k], y[k]) for k in x)
        return np.array_equal(np.asarray(x), np.asarray(y))
    return all(same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))


def test_stage_extras_are_cached_per_grid_and_hot_share() -> None:
    """One cost model asked for several grids and hot shares answers each as a fresh one would
    (the cache is keyed by both)."""
    cm = CostModel(make_instance(), calibration=False)
    asks = [(grid(), 0.5), (grid(tp=2, etp=2, pp=2), 0.5), (grid(), 0.9), (grid(), 0.5)]
    got = [cm.stage_extras(g, share, 8) for g, share in asks]
    for (g, share), extras in zip(asks, got, strict=True):
        fresh = CostModel(make_instance(), calibration=False).stage_extras(g, share, 8)
        assert _same_extras(extras, fresh)
    assert not _same_extras(got[0], got[1]) and not _same_extras(got[0], got[2])  # premise


def test_deepep_prices_less_than_one_copy_per_rank() -> None:
    """One decode token over two-batch overlap's two micro-batches is half a token per step:
    a quarter token here sends 0.5 copies, priced on the curve (not free)."""
    cm = measured_cm(ep_dispatch_precision="bf16")
    t = terms(cm, 1, grid(dp=4, ep=4), HotRank(250_000, 1), d=0.25)
    want = (float(SPY.comm["deepep.sglang.ll.dispatch.bf16.nodes1"].time(0.5 * H * 2))
            + float(SPY.comm["deepep.sglang.ll.combine.bf16.nodes1"].time(0.5 * H * 2)))
    assert want > 0 and t["ep_comm"] == approx(want)


def test_the_idle_prefills_lm_head_reads_the_weight_format_curve() -> None:
    """Measured mode: the idle prefill's LM head (one row of V·h = 6400 FP8 block-scaled
    weights) is the gemm.fp8_block curve at its ideal time, one kernel."""
    cm = measured_cm(make_model(weight_precision="fp8", weight_block_size=128))
    got = cm.idle_prefill_extras(grid())["lm_head"]
    ideal = gemm_ideal(1, 6400, 1, 2, H, PEAK["fp8"], HBM)
    assert got == approx(float(SPY.compute["gemm.fp8_block"].time(ideal, 1, 1)))


def test_a_one_token_prompt_chunk_reads_its_prefix() -> None:
    """A one-token chunk (the step just below the token budget) still streams its prefix KV:
    memory-bound, 1·(128 + 256) + 64.5·128 bytes."""
    cm = measured_cm()
    t = terms(cm, 0, grid(), p=1, u=64.5)
    ideal = max(64.5 * 256 / PEAK["bf16"], (1 * (128 + 2 * H * 2) + 64.5 * 128) / HBM)
    assert ideal > 64.5 * 256 / PEAK["bf16"]  # premise: memory-bound
    key = "attention.context.gqa.bf16_kvbf16.by_isl"
    assert t["attn_core"] == approx(float(SPY.compute[key].time(ideal, 129.0, 1)))


def test_the_stage_lm_head_reads_the_weight_format_curve() -> None:
    """Measured mode: a step's LM head over 4 rows (V·h = 6400 FP8 block-scaled weights, tp 1)
    is the gemm.fp8_block curve at its ideal time, one kernel."""
    cm = measured_cm(make_model(weight_precision="fp8", weight_block_size=128))
    got = cm.extras_terms(grid(), np.array([4.0]), np.array([4.0]))["lm_head"]
    ideal = gemm_ideal(4, 6400, 1, 2, H, PEAK["fp8"], HBM)
    assert float(got[0]) == approx(float(SPY.compute["gemm.fp8_block"].time(ideal, 4, 1)))


@pytest.mark.parametrize("g", [grid(), grid(dp=2, ep=2), grid(dp=2, etp=2), grid(tp=2, etp=2),
                               grid(cp=2), grid(pp=2)],
                         ids=["one-gpu", "ep-only", "etp-only", "tp", "cp", "pp"])
def test_communication_buffers_whenever_gpus_talk(g) -> None:
    """2·tokens·h activation bytes of communication buffers on any grid whose GPUs exchange
    activations (any degree above 1 but dp alone), none on a single GPU."""
    cm = CostModel(make_instance(), calibration=False)
    want = 0 if g == grid() else math.ceil(2 * 300 * H * 2)
    assert cm.extras_memory(g, 0.5, 300)["comm_buffers"] == want
