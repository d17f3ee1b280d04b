"""Every cost term against a hand derivation from docs/cost-model.md (roofline mode).

A tiny model on a GPU with round numbers, so each expected value is a line of arithmetic from the
page's formulas ("Per-layer terms", "Memory per GPU", "Appendix: exact formulas"), written out
here with literal parameter counts — never read back from the code under test.

The tiny model (bf16: a = w = e = 2 bytes): h = 64, 4 query heads, 2 KV heads of 16, layer 0 a
dense FFN of width 128, layer 1 MoE with 4 experts of width 32, top-2, vocabulary 100. Counts
(HF layouts, solver/params.py — itself checked against published totals in test_params.py):

- attention: q and o 2·64·64 = 8192, k and v 2·64·(2·16) = 4096, two norms 2·64 = 128 replicated;
  per GPU P_a = 8192/tp + 4096/min(tp, 2) + 128: tp 1 → 12416, tp 2 → 6272, tp 4 → 4224;
- dense FFN (SwiGLU) 3·64·128 = 24576; one expert 3·64·32 = 6144; router 64·4 = 256;
- KV cache per token and layer 2·2·16·2 = 128 bytes (GQA K and V), sharded over min(tp, 2).

The GPU: bf16 100 TFLOPS (fp8 200) at mfu 0.5 → F = 5e13 FLOP/s (F8 = 1e14); HBM 1 TB/s at
efficiency 0.5 → B = 5e11 B/s (a "fast" variant: 1000 TB/s → 5e14, to make ops compute-bound);
NVLink 100 GB/s, 1 µs; network 10 GB/s, 5 µs; link efficiency 1.
The workload: input 128 (max 256), output 64 → mean context 128 + ⌈64/2⌉ = 160, max 256 + 64 =
320; token budget N = 512.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from solver import timing
from solver.costmodel import CostModel, HotRank
from solver.estimate import Prepared, evaluate
from solver.hardware import load_hardware_preset
from solver.kernels import math_precision, weight_format
from solver.models import resolve_model
from solver.schema import (
    AttentionSpec,
    Degrees,
    EngineSpec,
    ExpertLoad,
    Grid,
    HardwareSpec,
    Instance,
    ModelSpec,
    Plan,
    SearchOptions,
    Workload,
)
from solver.verify import verify

pytestmark = pytest.mark.unit

H, V, N = 64, 100, 512
P_A = {1: 12416, 2: 6272, 4: 4224}
DENSE, EXPERT, ROUTER = 24576, 6144, 256
KV_TOK = 128
F, F8, B, FAST_B = 5e13, 1e14, 5e11, 5e14
NVLINK, NVLINK_LAT, NET, NET_LAT = 100e9, 1e-6, 10e9, 5e-6
MEAN_CTX, MAX_CTX = 160, 320
# MLA variant: 4 heads, kv_lora 32, nope 16, rope 8, v 16, no q_lora. Sharded: q 64·4·24 = 6144,
# kv_b 32·4·(16+16) = 4096, o 4·16·64 = 4096 → 14336; replicated: kv_a 64·(32+8) = 2560, its norm
# 32, two layer norms 128 → 2720. KV cache: the latent + rope key, (32 + 8)·2 = 80 bytes.
MLA_SHARDED, MLA_REPLICATED, MLA_KV_TOK = 14336, 2720, 80


def op(flops: float, nbytes: float, peak: float = F, hbm: float = B) -> float:
    """The page's op(f, b, p) = max(f / (F(p)·mfu), b / (B·hbm_efficiency))."""
    return max(flops / peak, nbytes / hbm)


def make_model(**over) -> ModelSpec:
    fields = dict(
        name="tiny", num_layers=2, dense_layers=(0,), hidden_size=H,
        attention=AttentionSpec(num_heads=4, num_kv_heads=2, head_dim=16),
        dense_ffn_width=128, num_experts=4, top_k=2, expert_ffn_width=32, vocab_size=V)
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


def hw_with(hbm: float, **over) -> HardwareSpec:
    """The GPU with an achieved HBM bandwidth of ``hbm`` bytes/s (at efficiency 0.5)."""
    return make_hw(hbm_tb_s=hbm / 0.5 / 1e12, **over)


WL = Workload(input_len=128, max_input_len=256, output_len=64, batch=4)


def make_instance(model: ModelSpec | None = None, hw: HardwareSpec | None = None,
                  workload: Workload = WL, **engine) -> Instance:
    return Instance(model=model or make_model(), hardware=hw or make_hw(), workload=workload,
                    engine=EngineSpec(**{"max_num_batched_tokens": N, **engine}),
                    expert_load=ExpertLoad(kind="uniform"))


def make_cm(model: ModelSpec | None = None, hw: HardwareSpec | None = None, **engine
            ) -> CostModel:
    return CostModel(make_instance(model, hw, **engine), calibration=False)


def grid(tp: int = 1, cp: int = 1, dp: int = 1, ep: int = 1, etp: int = 1, pp: int = 1) -> Grid:
    n = tp * cp * dp
    return Grid(tp, cp, dp, ep, etp, max(1, n // (ep * etp)), pp)


def terms(cm: CostModel, layer: int, g: Grid, hot: HotRank | None = None, d: float = 0.0,
          p: float = 0.0, u: float = 0.0, splits: int | None = None) -> dict[str, float]:
    t = cm.layer_terms(layer, g, hot, np.array([float(d)]), np.array([float(p)]), u,
                       splits=splits)
    return {k: float(np.asarray(v).ravel()[0]) for k, v in t.items()}


ALL = HotRank(1_000_000, 4)  # ep = 1: the one rank holds all 4 experts and all the load


def approx(x: float):
    return pytest.approx(x, rel=1e-9, abs=0)


# -- attn_proj ---------------------------------------------------------------------------------


@pytest.mark.parametrize("hbm", [B, FAST_B], ids=["memory-bound", "compute-bound"])
@pytest.mark.parametrize(("tp", "cp", "d", "p", "tokens"), [
    (1, 1, 4, 0, 4),
    (2, 1, 4, 0, 4),
    (4, 1, 4, 0, 4),  # K/V replicated over tp / 2 KV heads: 4096 / min(4, 2)
    (1, 2, 4, 100, 54),  # T = n_d + n_p/cp = 4 + 50
], ids=["tp1", "tp2", "tp4-kv-replicated", "cp2-prefill"])
def test_attn_proj(tp: int, cp: int, d: int, p: int, tokens: int, hbm: float) -> None:
    cm = make_cm(hw=hw_with(hbm))
    t = terms(cm, 0, grid(tp=tp, cp=cp), d=d, p=p, u=64.5)
    pa = P_A[tp]
    assert t["attn_proj"] == approx(op(2 * tokens * pa, pa * 2 + tokens * 2 * H * 2, hbm=hbm))


@pytest.mark.parametrize("hbm", [B, FAST_B], ids=["memory-bound", "compute-bound"])
def test_attn_proj_mla_replicates_the_down_projections(hbm: float) -> None:
    cm = make_cm(mla_model(), hw_with(hbm))
    pa = MLA_SHARDED / 2 + MLA_REPLICATED  # 9888
    t = terms(cm, 0, grid(tp=2), d=4)
    assert t["attn_proj"] == approx(op(2 * 4 * pa, pa * 2 + 4 * 256, hbm=hbm))


def test_attn_proj_fp8_weights_compute_at_fp8() -> None:
    cm = make_cm(make_model(weight_precision="fp8"), make_hw(hbm_tb_s=1000.0))
    t = terms(cm, 0, grid(), d=4)
    assert t["attn_proj"] == approx(op(2 * 4 * 12416, 12416 * 1 + 4 * 256, peak=F8, hbm=FAST_B))


# -- attn_core ----------------------------------------------------------------------------------

# GQA: FLOPs per decode key and per prefill pair 2·(4/tp)·2·16 = 256/tp.


@pytest.mark.parametrize("hbm", [B, FAST_B], ids=["memory-bound", "compute-bound"])
@pytest.mark.parametrize(("tp", "cp", "keys", "kv_tok"), [
    (1, 1, 160, 128),
    (2, 1, 160, 64),  # KV heads split over 2 GPUs
    (4, 1, 160, 64),  # 2 KV heads: shard min(4, 2)
    (1, 2, 80, 128),  # ⌈160 / 2⌉ keys per CP rank
], ids=["tp1", "tp2", "tp4", "cp2"])
def test_attn_core_decode_gqa(tp: int, cp: int, keys: int, kv_tok: int, hbm: float) -> None:
    cm = make_cm(hw=hw_with(hbm))
    t = terms(cm, 0, grid(tp=tp, cp=cp), d=4)
    f_key = 256 / tp
    assert t["attn_core"] == approx(op(4 * keys * f_key, 4 * keys * kv_tok + 2 * 4 * H * 2,
                                       hbm=hbm))


@pytest.mark.parametrize(("window", "cp", "keys"), [(100, 1, 100), (101, 2, 51), (500, 1, 160)],
                         ids=["window-caps", "window-then-cp-rounds-up", "window-above-context"])
def test_attn_core_decode_sliding_window(window: int, cp: int, keys: int) -> None:
    model = make_model(attention=AttentionSpec(num_heads=4, num_kv_heads=2, head_dim=16,
                                               sliding_window=window, sliding_layers=(1,)))
    cm = make_cm(model)
    windowed = terms(cm, 1, grid(cp=cp), ALL, d=4)["attn_core"]
    full = terms(cm, 0, grid(cp=cp), d=4)["attn_core"]
    assert windowed == approx(op(4 * keys * 256, 4 * keys * 128 + 1024))
    assert full == approx(op(4 * math.ceil(160 / cp) * 256, 4 * math.ceil(160 / cp) * 128 + 1024))


@pytest.mark.parametrize("hbm", [B, FAST_B], ids=["memory-bound", "compute-bound"])
@pytest.mark.parametrize("cp", [1, 2])
def test_attn_core_prefill_gqa(cp: int, hbm: float) -> None:
    # 100 prompt tokens each attending to u = 64.5 keys: (100·64.5/cp) pairs of 256 FLOPs; bytes:
    # (100/cp)·(128 + 2·64·2) plus the chunk's prefix KV (64.5/cp)·128, streamed once.
    cm = make_cm(hw=hw_with(hbm))
    t = terms(cm, 0, grid(cp=cp), p=100, u=64.5)
    assert t["attn_core"] == approx(op(100 * 64.5 / cp * 256,
                                       100 / cp * (128 + 256) + 64.5 / cp * 128, hbm=hbm))


def test_attn_core_mixed_step_is_decode_plus_prefill() -> None:
    cm = make_cm()
    t = terms(cm, 0, grid(), d=4, p=100, u=64.5)
    decode = op(4 * 160 * 256, 4 * 160 * 128 + 1024)
    prefill = op(100 * 64.5 * 256, 100 * 384 + 64.5 * 128)
    assert t["attn_core"] == approx(decode + prefill)


@pytest.mark.parametrize("hbm", [B, FAST_B], ids=["memory-bound", "compute-bound"])
def test_attn_core_mla_absorbed_decode(hbm: float) -> None:
    # Absorbed MLA attends in the latent: 2·(4/2)·(2·32 + 8) = 288 FLOPs per key at tp 2, reading
    # the replicated 80-byte latent per key.
    cm = make_cm(mla_model(), hw_with(hbm))
    t = terms(cm, 0, grid(tp=2), d=4)
    assert t["attn_core"] == approx(op(4 * 160 * 288, 4 * 160 * MLA_KV_TOK + 1024, hbm=hbm))


@pytest.mark.parametrize("hbm", [B, FAST_B], ids=["memory-bound", "compute-bound"])
def test_attn_core_mla_prefill(hbm: float) -> None:
    # Prefill FLOPs per pair 2·4·(qk 24 + v 16) = 320.
    cm = make_cm(mla_model(), hw_with(hbm))
    t = terms(cm, 0, grid(), p=100, u=64.5)
    assert t["attn_core"] == approx(op(100 * 64.5 * 320, 100 * (80 + 256) + 64.5 * 80, hbm=hbm))


def test_attn_core_fp8_kv_cache_halves_the_reads() -> None:
    cm = make_cm(make_model(kv_precision="fp8"))
    t = terms(cm, 0, grid(), d=4)
    assert t["attn_core"] == approx(op(4 * 160 * 256, 4 * 160 * 64 + 1024))


# -- ffn_dense ----------------------------------------------------------------------------------


@pytest.mark.parametrize("hbm", [B, FAST_B], ids=["memory-bound", "compute-bound"])
@pytest.mark.parametrize(("model", "layer", "tp", "p_f"), [
    (make_model(), 0, 2, DENSE / 2),  # dense FFN split over tp
    (make_model(gated_ffn=False), 0, 1, 2 * 64 * 128),  # up/down only
    (make_model(), 1, 2, ROUTER),  # MoE layer: the replicated router only
    (make_model(num_shared_experts=1), 1, 2, EXPERT / 2 + ROUTER),  # shared expert split over tp
    (make_model(num_shared_experts=2, shared_expert_width=64), 1, 4,
     2 * 3 * 64 * 64 / 4 + ROUTER),
], ids=["dense-tp2", "dense-ungated", "moe-router", "moe-shared-tp2", "moe-2-wide-shared-tp4"])
def test_ffn_dense(model: ModelSpec, layer: int, tp: int, p_f: float, hbm: float) -> None:
    cm = make_cm(model, hw_with(hbm))
    hot = ALL if layer == 1 else None
    t = terms(cm, layer, grid(tp=tp), hot, d=4)
    assert t["ffn_dense"] == approx(op(2 * 4 * p_f, p_f * 2 + 4 * 256, hbm=hbm))


# -- moe_experts --------------------------------------------------------------------------------


def touched(slots: int, routed: float) -> float:
    """The page's touched(n) = min(slots, slots·(1 − (1 − 1/slots)^n), n)."""
    return min(slots, slots * (1 - (1 - 1 / slots) ** routed), routed)


@pytest.mark.parametrize("hbm", [B, FAST_B], ids=["memory-bound", "compute-bound"])
@pytest.mark.parametrize(("g", "hot", "d", "p", "routed", "etp"), [
    # ep = 1: one set, the rank takes all 4·2 = 8 copies over its 4 slots
    (grid(), ALL, 4, 0, 8, 1),
    # DP attention 4 × EP 4: sets = 4/1, share 0.4 → 4·4·2·0.4 = 12.8 copies, one slot
    (grid(dp=4, ep=4), HotRank(400_000, 1), 4, 0, 12.8, 1),
    # TP 2 with the experts split etp 2: the group is the TP group (one set), slices of 1/2
    (grid(tp=2, etp=2), ALL, 4, 0, 8, 2),
    # prefill over cp 2: (0 + 100)/2 tokens per GPU, sets 4, share 0.25 → 4·50·2·0.25 = 100
    (grid(cp=2, dp=2, ep=4), HotRank(250_000, 1), 0, 100, 100, 1),
    # a thin decode: 0.008 copies over 2 slots touch 0.008 experts, not 2·(1 − 0.5^0.008)
    (grid(), HotRank(1_000, 2), 4, 0, 0.008, 1),
], ids=["ep1", "dp4-ep4", "etp2", "prefill-cp2", "fewer-copies-than-slots"])
def test_moe_experts(g: Grid, hot: HotRank, d: int, p: int, routed: float, etp: int,
                     hbm: float) -> None:
    cm = make_cm(hw=hw_with(hbm))
    t = terms(cm, 1, g, hot, d=d, p=p, u=64.5)
    pe = EXPERT / etp
    want = op(2 * routed * pe, touched(hot.slots, routed) * pe * 2
              + routed * (2 * H + 32 / etp) * 2, hbm=hbm)
    assert t["moe_experts"] == approx(want)


@pytest.mark.parametrize(("peaks", "peak"), [
    ({"bf16": 100.0, "fp8": 200.0}, F),  # no FP4 units: BF16 math, 4.25-bit reads (W4A16)
    ({"bf16": 100.0, "fp8": 200.0, "mxfp4": 400.0}, 2e14),  # FP4 tensor cores
], ids=["w4a16", "native-fp4"])
@pytest.mark.parametrize("hbm", [B, FAST_B], ids=["memory-bound", "compute-bound"])
def test_moe_experts_mxfp4(peaks: dict, peak: float, hbm: float) -> None:
    cm = make_cm(make_model(expert_precision="mxfp4"),
                 hw_with(hbm, peak_tflops=peaks))
    t = terms(cm, 1, grid(), ALL, d=4)
    want = op(2 * 8 * EXPERT, touched(4, 8) * EXPERT * 4.25 / 8 + 8 * 160 * 2, peak=peak,
              hbm=hbm)
    assert t["moe_experts"] == approx(want)


# -- ep_comm ------------------------------------------------------------------------------------


@pytest.mark.parametrize("g", [grid(tp=4, ep=4), grid(tp=4, ep=2, etp=2), grid(tp=2),
                               grid(tp=4, etp=4)], ids=["tp4-ep4", "tp4-ep2-etp2", "tp2-ep1",
                                                        "tp4-etp4"])
def test_tp_moe_pays_no_all_to_all(g: Grid) -> None:
    """An MoE group nested in one TP group holds one token set: no dispatch, no combine."""
    t = terms(make_cm(), 1, g, HotRank(250_000, 1), d=4, p=100, u=64.5)
    assert t["ep_comm"] == 0.0
    assert t["moe_experts"] > 0


# DP attention 4 × EP 4, share 0.25, 4 decode tokens: routed = 4 sets·4·2·0.25 = 8 copies;
# E[ranks] per token R = 4·(1 − 0.75²) = 1.75, so arriving = 8·(1.75/2)·(3/4) = 5.25 token copies
# of 64 elements: FP8 dispatch 5.25·64·(1 + 4/128) = 346.5 bytes, BF16 5.25·64·2 = 672.
@pytest.mark.parametrize(("dispatch", "dispatch_bytes"), [("fp8", 346.5), ("bf16", 672.0)])
def test_ep_comm_dp_attention_inside_a_node(dispatch: str, dispatch_bytes: float) -> None:
    cm = make_cm(ep_dispatch_precision=dispatch)
    t = terms(cm, 1, grid(dp=4, ep=4), HotRank(250_000, 1), d=4)
    want = (NVLINK_LAT + dispatch_bytes / NVLINK) + (NVLINK_LAT + 672 / NVLINK)
    assert t["ep_comm"] == approx(want)


def test_ep_comm_between_tp_groups() -> None:
    # tp 2, dp 2, ep 4: the group holds 4/2 = 2 token sets, half the copies stay home.
    # routed = 2·4·2·0.25 = 4; arriving = 4·(1.75/2)·(1/2) = 1.75: 115.5 B FP8, 224 B BF16.
    cm = make_cm(ep_dispatch_precision="fp8")
    t = terms(cm, 1, grid(tp=2, dp=2, ep=4), HotRank(250_000, 1), d=4)
    assert t["ep_comm"] == approx((NVLINK_LAT + 115.5 / NVLINK) + (NVLINK_LAT + 224 / NVLINK))


def test_ep_comm_group_not_tiling_a_node_uses_the_network() -> None:
    # ep 3 on 8-GPU nodes: 8 % 3 ≠ 0, so link(3) is inter-node. sets 3, share 0.4, 2 slots:
    # routed = 3·4·2·0.4 = 9.6; R = 3·(1 − (2/3)²) = 5/3; arriving = 9.6·(5/6)·(2/3) = 16/3.
    cm = make_cm(ep_dispatch_precision="bf16")
    t = terms(cm, 1, grid(dp=3, ep=3), HotRank(400_000, 2), d=4)
    b = 16 / 3 * 64 * 2
    assert t["ep_comm"] == approx(2 * (NET_LAT + b / NET))


@pytest.mark.parametrize(("g", "remote"), [
    # tp 1, 4 GPUs on 2-GPU nodes: n = 2 nodes, sets 4, sets_node = 2 // 1 = 2, R = 1.75;
    # rdma = b·(4 − 2)/(4 − 1)·2·(1 − 0.5²)/1.75 = b·4/7
    (grid(dp=4, ep=4), 4 / 7),
    # tp 2: sets 2, sets_node = max(1, 2 // 2) = 1: rdma = b·1·1.5/1.75 = b·6/7
    (grid(tp=2, dp=2, ep=4), 6 / 7),
    # tp 4 wider than the node, etp 4 × ep 2: sets 8/4 = 2, sets_node = max(1, 2 // 4) = 1;
    # n = 4 nodes, R = 2·(1 − 0.5²) = 1.5: rdma = b·1·4·(1 − 0.75²)/1.5 = b·7/6
    (grid(tp=4, dp=2, ep=2, etp=4), 7 / 6),
], ids=["tp1", "tp2", "tp4-wider-than-node"])
@pytest.mark.parametrize(("net_lat", "nvlink_lat"), [(5e-6, 1e-6), (0.0, 3e-6)],
                         ids=["rdma-bound", "nvlink-bound"])
def test_ep_comm_across_nodes_is_hierarchical(g: Grid, remote: float, net_lat: float,
                                              nvlink_lat: float) -> None:
    # Each phase: max(net_lat + rdma/NET, nvlink_lat + b/NVLINK), b the bytes arriving.
    hw = make_hw(gpus_per_node=2, inter_node_latency_us=net_lat * 1e6,
                 intra_node_latency_us=nvlink_lat * 1e6)
    cm = make_cm(hw=hw, ep_dispatch_precision="fp8")
    sets = g.etp * g.ep // g.tp
    r = g.ep * (1 - (1 - 1 / g.ep) ** 2)
    arriving = sets * 4 * 2 * 0.25 * (r / 2) * (sets - 1) / sets
    want = sum(max(net_lat + arriving * 64 * x * remote / NET,
                   nvlink_lat + arriving * 64 * x / NVLINK) for x in (1 + 4 / 128, 2))
    assert terms(cm, 1, g, HotRank(250_000, 1), d=4)["ep_comm"] == approx(want)


# -- tp_comm, cp_comm, norms ----------------------------------------------------------------------


@pytest.mark.parametrize(("tp", "gpn", "lat", "bw"), [
    (2, 8, NVLINK_LAT, NVLINK), (4, 8, NVLINK_LAT, NVLINK),
    (4, 2, NET_LAT, NET),  # wider than a node
    (4, 6, NET_LAT, NET),  # 4 ≤ 6 but 6 % 4 ≠ 0: some group straddles two nodes
], ids=["tp2-nvlink", "tp4-nvlink", "tp4-2gpu-nodes", "tp4-6gpu-nodes"])
def test_tp_comm_ring_all_reduce(tp: int, gpn: int, lat: float, bw: float) -> None:
    # two all-reduces of T·h·a = 4·64·2 = 512 bytes: 2·[2(tp−1)·lat + 2(tp−1)/tp·512/bw]
    cm = make_cm(hw=make_hw(gpus_per_node=gpn))
    t = terms(cm, 0, grid(tp=tp), d=4)
    assert t["tp_comm"] == approx(2 * (2 * (tp - 1) * lat + 2 * (tp - 1) / tp * 512 / bw))


def test_tp_comm_is_zero_without_tp_and_counts_prefill_over_cp() -> None:
    cm = make_cm()
    assert terms(cm, 0, grid(), d=4)["tp_comm"] == 0.0
    # tp 2, cp 2, 4 decode + 100 prompt tokens: T = 4 + 50 = 54 → 54·128 bytes
    t = terms(cm, 0, grid(tp=2, cp=2), d=4, p=100, u=64.5)
    assert t["tp_comm"] == approx(2 * (2 * NVLINK_LAT + 54 * 128 / NVLINK))


@pytest.mark.parametrize(("tp", "cp", "gpn", "d", "p", "want"), [
    # decode: one hop of the partial outputs 4·64·2 bytes
    (1, 2, 8, 4, 0, 1 * (NVLINK_LAT + 512 / NVLINK)),
    # prefill: the chunk's KV block (100/2)·128 bytes
    (1, 2, 8, 0, 100, NVLINK_LAT + 50 * 128 / NVLINK),
    # cp 4: three hops of (100/4)·128 + 4·128
    (1, 4, 8, 4, 100, 3 * (NVLINK_LAT + (25 * 128 + 512) / NVLINK)),
    # tp·cp = 8 GPUs on 4-GPU nodes: the network; tp 4 shards KV to 128/2 = 64 bytes a token
    (4, 2, 4, 4, 100, NET_LAT + (50 * 64 + 512) / NET),
], ids=["decode", "prefill", "cp4", "across-nodes"])
def test_cp_comm_ring(tp: int, cp: int, gpn: int, d: int, p: int, want: float) -> None:
    cm = make_cm(hw=make_hw(gpus_per_node=gpn))
    assert terms(cm, 0, grid(tp=tp, cp=cp), d=d, p=p, u=64.5)["cp_comm"] == approx(want)


def test_no_cp_comm_without_cp() -> None:
    assert terms(make_cm(), 0, grid(tp=2), d=4, p=100, u=9.0).get("cp_comm", 0.0) == 0.0


@pytest.mark.parametrize(("qk_norm", "calls"), [(False, 2), (True, 4)])
def test_norms(qk_norm: bool, calls: int) -> None:
    # calls · 3·T·h·a bytes at B, T = 4 + 100/2
    model = make_model(attention=AttentionSpec(num_heads=4, num_kv_heads=2, head_dim=16,
                                               qk_norm=qk_norm))
    t = terms(make_cm(model), 0, grid(cp=2), d=4, p=100, u=64.5)
    assert t["norms"] == approx(calls * 3 * 54 * 64 * 2 / B)


# -- two-batch overlap ----------------------------------------------------------------------------


def test_two_batch_overlap_splits_the_step_and_hides_half_the_smaller_stream() -> None:
    # DP 4 × EP 4, 4 decode tokens: two micro-batches of d = 2 → every term is 2 · op(half).
    # Per micro-batch: routed = 4·2·2·0.25 = 4, arriving = 4·0.875·0.75 = 2.625 copies,
    # FP8 dispatch 2.625·64·1.03125 = 173.25 B, BF16 combine 336 B.
    cm = make_cm(overlap="two_batch", ep_dispatch_precision="fp8")
    t = terms(cm, 1, grid(dp=4, ep=4), HotRank(250_000, 1), d=4)
    pa, pf = P_A[1], ROUTER
    assert t["attn_proj"] == approx(2 * op(2 * 2 * pa, pa * 2 + 2 * 256))
    assert t["attn_core"] == approx(2 * op(2 * 160 * 256, 2 * 160 * 128 + 2 * 2 * 64 * 2))
    assert t["ffn_dense"] == approx(2 * op(2 * 2 * pf, pf * 2 + 2 * 256))
    moe = 2 * op(2 * 4 * EXPERT, 1 * EXPERT * 2 + 4 * 160 * 2)
    assert t["moe_experts"] == approx(moe)
    ep = 2 * ((NVLINK_LAT + 173.25 / NVLINK) + (NVLINK_LAT + 336 / NVLINK))
    assert t["ep_comm"] == approx(ep)
    assert t["norms"] == approx(2 * 2 * 3 * 2 * 64 * 2 / B)
    compute = t["attn_proj"] + t["attn_core"] + t["ffn_dense"] + t["moe_experts"]
    assert t["overlap"] == approx(-min(ep, compute) / 2)
    assert compute < ep  # here the compute stream is the smaller one


def test_two_batch_overlap_splits_an_expert_tp_layer_with_nothing_to_hide() -> None:
    # tp 2, etp 2, ep 1: ep·etp = 2 > 1, so two micro-batches of d = 2, but the MoE group is
    # the TP group (one token set): no all-to-all, nothing hidden.
    cm = make_cm(overlap="two_batch")
    t = terms(cm, 1, grid(tp=2, etp=2), ALL, d=4)
    assert t["attn_proj"] == approx(2 * op(2 * 2 * 6272, 6272 * 2 + 2 * 256))
    assert t["ep_comm"] == 0.0 and t["overlap"] == 0.0


def test_two_batch_overlap_can_be_overridden_to_one_batch() -> None:
    cm = make_cm(overlap="two_batch")
    t = terms(cm, 1, grid(dp=4, ep=4), HotRank(250_000, 1), d=4, splits=1)
    assert "overlap" not in t
    assert t["attn_proj"] == approx(op(2 * 4 * 12416, 12416 * 2 + 4 * 256))


@pytest.mark.parametrize(("layer", "g"), [(0, grid(dp=4, ep=4)), (1, grid(tp=4))],
                         ids=["dense-layer", "moe-without-ep"])
def test_two_batch_overlap_only_on_expert_parallel_moe_layers(layer: int, g: Grid) -> None:
    cm = make_cm(overlap="two_batch")
    t = terms(cm, layer, g, HotRank(250_000, 1), d=4)
    assert "overlap" not in t
    pa = P_A[g.tp]
    assert t["attn_proj"] == approx(op(2 * 4 * pa, pa * 2 + 4 * 256))


# -- stage extras ------------------------------------------------------------------------------


def rho(s: int) -> float:
    return s * 128 / (64 * (N - s))


def test_embedding_only_reads_rows() -> None:
    # decode: s rows of h·w = 128 bytes; full: s + (512 − s)/cp rows (cp 2)
    ex = make_cm().stage_extras(grid(cp=2), 0.0, 8)
    for s in (1, 5, 8):
        assert ex.terms["decode"]["embedding"][s - 1] == approx(s * 128 / B)
        assert ex.terms["full"]["embedding"][s - 1] == approx((s + (N - s) / 2) * 128 / B)


@pytest.mark.parametrize("hbm", [B, FAST_B], ids=["memory-bound", "compute-bound"])
@pytest.mark.parametrize("tp", [1, 2])
def test_lm_head_of_tied_embeddings(tp: int, hbm: float) -> None:
    # P_h = V·h/tp = 6400/tp; rows s (decode) and s + 1 (full: one finishing prompt)
    cm = make_cm(make_model(tie_embeddings=True), hw_with(hbm))
    ex = cm.stage_extras(grid(tp=tp), 0.0, 8)
    ph = 6400 / tp
    for s in (1, 8):
        for step, rows in (("decode", s), ("full", s + 1)):
            want = op(2 * rows * ph, ph * 2 + rows * 64 * 2, hbm=hbm)
            assert ex.terms[step]["lm_head"][s - 1] == approx(want)


def test_lm_head_of_untied_embeddings_is_vocab_by_hidden() -> None:
    ex = make_cm().stage_extras(grid(), 0.0, 1)
    assert ex.terms["decode"]["lm_head"][0] == approx(op(2 * 6400, 6400 * 2 + 128))


@pytest.mark.parametrize(("g", "gpn", "lat", "bw"), [
    (grid(tp=2, pp=2), 8, NVLINK_LAT, NVLINK),  # pp·tp = 4 GPUs tile a node
    (grid(tp=2, pp=2), 2, NET_LAT, NET),
    (grid(dp=3, pp=2), 8, NET_LAT, NET),  # pp·dp = 6 does not tile 8-GPU nodes
], ids=["nvlink", "2-gpu-nodes", "span-6"])
def test_pipeline_hop(g: Grid, gpn: int, lat: float, bw: float) -> None:
    # lat + tokens·h·a/bw, tokens s (decode) and s + (512 − s)/cp (full)
    ex = make_cm(hw=make_hw(gpus_per_node=gpn)).stage_extras(g, 0.0, 4)
    for s in (1, 4):
        assert ex.terms["decode"]["pp_comm"][s - 1] == approx(lat + s * 128 / bw)
        assert ex.terms["full"]["pp_comm"][s - 1] == approx(lat + N * 128 / bw)


def test_no_pipeline_hop_without_pp() -> None:
    ex = make_cm().stage_extras(grid(tp=2), 0.0, 4)
    assert not ex.terms["decode"]["pp_comm"].any() and not ex.hop_avg_ns.any()


def test_stage_extras_mix_with_rho_and_round_up_to_ns() -> None:
    # the average step of each extra: ρ·full + (1 − ρ)·decode, in ns rounded up
    hw = make_hw(hbm_tb_s=0.01, gpus_per_node=2)  # slow: B = 5e9, so the ns carry digits
    cm = make_cm(make_model(tie_embeddings=True), hw)
    ex = cm.stage_extras(grid(cp=2, pp=2), 0.0, 6)
    b = 0.01e12 * 0.5
    for s in (1, 6):
        r = rho(s)
        emb = r * (s + (N - s) / 2) * 128 / b + (1 - r) * s * 128 / b
        head = r * op(2 * (s + 1) * 6400, 12800 + (s + 1) * 128, hbm=b) \
            + (1 - r) * op(2 * s * 6400, 12800 + s * 128, hbm=b)
        hop = r * (NET_LAT + (s + (N - s) / 2) * 128 / NET) + (1 - r) * (NET_LAT + s * 128 / NET)
        assert ex.first_avg_ns[s - 1] == math.ceil(emb * 1e9 - 1e-6)
        assert ex.last_avg_ns[s - 1] == math.ceil(head * 1e9 - 1e-6)
        assert ex.hop_avg_ns[s - 1] == math.ceil(hop * 1e9 - 1e-6)
        assert ex.first_full_ns[s - 1] == math.ceil((s + (N - s) / 2) * 128 / b * 1e9 - 1e-6)
        assert ex.hop_full_ns[s - 1] == math.ceil((NET_LAT + (s + (N - s) / 2) * 128 / NET)
                                                  * 1e9 - 1e-6)


@pytest.mark.parametrize(("model", "g", "first", "head"), [
    # untied, pp 1: embedding V·h/tp·w; LM head + final norm (6400 + 64)/tp·w
    (make_model(), grid(tp=2), 6400, 6464),
    # tied, pp 1: the head is the embedding already on this GPU; only the final norm
    (make_model(tie_embeddings=True), grid(tp=2), 6400, 64),
    # tied, pp 2: the last stage needs its own copy of the matrix
    (make_model(tie_embeddings=True), grid(tp=2, pp=2), 6400, 6464),
    # V = 101 over tp 4: ⌈101·64/4·2⌉ = 3232; ⌈(6464 + 64)/4·2⌉ = 3264; logits ⌈101/4⌉ = 26 a row
    (make_model(vocab_size=101), grid(tp=4), 3232, 3264 * 4 // 2),
], ids=["untied", "tied-pp1", "tied-pp2", "odd-vocab-tp4"])
def test_embedding_head_and_logit_memory(model: ModelSpec, g: Grid, first: int, head: int
                                         ) -> None:
    ex = make_cm(model).stage_extras(g, 0.0, 8)
    assert ex.mem_first == first
    head_bytes = math.ceil(head / g.tp * 2)
    assert ex.memory_terms["lm_head"] == head_bytes
    for s in (1, 8):  # FP32 logits of the s decode rows over ⌈V/tp⌉ columns
        assert ex.mem_last[s - 1] == head_bytes + s * math.ceil(model.vocab_size / g.tp) * 4


@pytest.mark.parametrize(("model", "g", "hot", "workspace", "moe", "comm"), [
    # tp 2: ffn_local = 128 // 2 = 64 → 512·2·(4·64 + 2·64); MoE buffers with one set, hot 1.0:
    # 1·512·2·1.0·2·(2·64 + 2·32) = 393216; comm 2·512·64·2 = 131072 (tp > 1)
    (make_model(), grid(tp=2), 1.0, 512 * 2 * (256 + 128), 393216, 131072),
    # DP 4 × EP 4: 4 sets, hot 0.25: 4·512·2·0.25·2·192; ffn_local 128
    (make_model(), grid(dp=4, ep=4), 0.25, 512 * 2 * (256 + 256), 4 * 512 * 2 * 0.25 * 2 * 192,
     131072),
    # DP only: no group spans GPUs, so no comm buffers
    (make_model(), grid(dp=2), 1.0, 512 * 2 * (256 + 256), 393216, 0),
    # pp only: the hop between stages needs them
    (make_model(), grid(pp=2), 1.0, 512 * 2 * (256 + 256), 393216, 131072),
    # cp 2 and etp 2: sets = 2/1 = 2 over N/cp = 256 tokens: 2·256·2·0.5·2·(128 + 2·16)
    (make_model(), grid(cp=2, etp=2), 0.5, 512 * 2 * (256 + 256), 2 * 256 * 2 * 0.5 * 2 * 160,
     131072),
    # two shared experts of width 96 outweigh the dense FFN: ffn_local = 192 > 128
    (make_model(num_shared_experts=2, shared_expert_width=96), grid(), 1.0,
     512 * 2 * (256 + 384), 393216, 0),
    # no MoE layer at all: no MoE buffers
    (make_model(dense_layers=(0, 1)), grid(tp=2), 0.0, 512 * 2 * (256 + 128), 0, 131072),
], ids=["tp2", "dp4-ep4", "dp2", "pp2", "cp2-etp2", "shared-wider", "all-dense"])
def test_per_stage_buffers(model: ModelSpec, g: Grid, hot: float, workspace: int, moe: float,
                           comm: int) -> None:
    ex = make_cm(model).stage_extras(g, hot, 4)
    assert ex.memory_terms["activation_workspace"] == workspace + math.ceil(moe)
    assert ex.memory_terms["comm_buffers"] == comm
    assert ex.memory_terms["runtime_reserve"] == 1_500_000_000
    assert ex.mem_every == workspace + math.ceil(moe) + comm + 1_500_000_000


# -- per-layer memory ----------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "layer", "g", "hot", "weights", "kv_seq", "kv_max"), [
    # dense layer, tp 1: (12416 + 24576)·2; KV 160·128 and 320·128
    (make_model(), 0, grid(), None, (12416 + DENSE) * 2, 160 * 128, 320 * 128),
    # MoE layer, ep 2 (2 slots): (12416 + 256)·2 + 2·6144·2
    (make_model(), 1, grid(dp=2, ep=2), HotRank(500_000, 2), (12416 + 256) * 2 + 2 * EXPERT * 2,
     160 * 128, 320 * 128),
    # tp 2, etp 2, 4 slots of half an expert; KV heads split in 2
    (make_model(), 1, grid(tp=2, etp=2), ALL, (6272 + 256) * 2 + 4 * EXPERT // 2 * 2,
     160 * 64, 320 * 64),
    # cp 3: ⌈160/3⌉ = 54 and ⌈320/3⌉ = 107 tokens per rank
    (make_model(), 0, grid(cp=3), None, (12416 + DENSE) * 2, 54 * 128, 107 * 128),
    # MXFP4 experts: 4·6144·4.25/8 = 13056 bytes
    (make_model(expert_precision="mxfp4"), 1, grid(), ALL, (12416 + 256) * 2 + 13056,
     160 * 128, 320 * 128),
    # MLA: latent replicated over tp
    (mla_model(), 0, grid(tp=2), None, (9888 + DENSE / 2) * 2, 160 * 80, 320 * 80),
], ids=["dense", "moe-ep2", "tp2-etp2", "cp3", "mxfp4-experts", "mla-tp2"])
def test_layer_memory(model, layer, g, hot, weights, kv_seq, kv_max) -> None:
    c = make_cm(model).layer_cost(layer, g, hot, 4)
    assert (c.weight_bytes, c.kv_seq_bytes, c.kv_max_bytes) == (weights, kv_seq, kv_max)


def test_sliding_window_caps_the_kv_cache() -> None:
    model = make_model(attention=AttentionSpec(num_heads=4, num_kv_heads=2, head_dim=16,
                                               sliding_window=100, sliding_layers=(0,)))
    c = make_cm(model).layer_cost(0, grid(), None, 4)
    assert (c.kv_seq_bytes, c.kv_max_bytes) == (100 * 128, 100 * 128)


@pytest.mark.parametrize(("batch", "kv"), [
    (1, 2 * 320 * 128),  # one max-context sequence outweighs one at the mean
    (4, 4 * 2 * 160 * 128),  # four at the mean outweigh one at the maximum
], ids=["max-context-binds", "concurrency-binds"])
def test_stage_memory_of_a_whole_plan(batch: int, kv: int) -> None:
    """pp 1, one GPU, uniform load (ep 1: the rank holds all 4 experts and all the load):
    weights (12416 + 24576)·2 + (12416 + 256)·2 + 4·6144·2 = 148480; workspace 512·2·(256 +
    256) = 524288; MoE buffers 1·512·2·1.0·2·192 = 393216; no comm buffers; reserve 1.5e9;
    embedding 12800; LM head (6400 + 64)·2 = 12928; logits s·100·4."""
    inst = make_instance(workload=Workload(input_len=128, max_input_len=256, output_len=64,
                                           batch=batch))
    ev = evaluate(Prepared(inst, calibration=False), Plan(degrees=Degrees(), batch=batch))
    want = 148480 + kv + 524288 + 393216 + 1_500_000_000 + 12800 + 12928 + batch * 400
    assert ev.result.stage_mem_bytes == (want,)
    assert ev.metrics.peak_memory_gb == approx(want / 1e9)


@pytest.mark.parametrize(("engine", "budget"), [
    ({}, 9_000_000_000),  # vLLM default 0.9 of 10 GB
    ({"name": "sglang"}, 8_800_000_000),  # SGLang 0.88
    ({"gpu_memory_utilization": 0.5}, 5_000_000_000),
])
def test_engine_memory_fraction(engine: dict, budget: int) -> None:
    assert CostModel(make_instance(**engine), calibration=False).memory_budget == budget


@pytest.mark.parametrize(("spare", "fits"), [(0.5, True), (-0.5, False)])
def test_memory_rule_at_the_byte(spare: float, fits: bool) -> None:
    inst = make_instance()
    plan = Plan(degrees=Degrees(), batch=4)
    need = evaluate(Prepared(inst, calibration=False), plan).result.stage_mem_bytes[0]
    hw = make_hw(hbm_gb=(need + spare) / 1e9)
    inst = make_instance(hw=hw, gpu_memory_utilization=1.0)
    rules = {v.rule for v in verify(Prepared(inst, calibration=False), plan).violations}
    assert ("memory" not in rules) == fits


# -- over s: the running maximum and the saturated queue ----------------------------------------


def test_full_step_is_made_non_decreasing_in_s() -> None:
    """A sliding-window layer with a long maximum prompt: the full step of s decode + (N − s)
    prompt tokens gets cheaper as s grows (a decode token reads 16 keys, a prompt token
    attends to 50,000), so full_max_ns is the running maximum — its value at s = 1."""
    model = make_model(attention=AttentionSpec(num_heads=4, num_kv_heads=2, head_dim=16,
                                               sliding_window=16, sliding_layers=(0,)))
    wl = Workload(input_len=128, max_input_len=99_999, output_len=64, batch=8)
    cm = CostModel(make_instance(model, workload=wl), calibration=False)
    c = cm.layer_cost(0, grid(), None, 8)
    raw = [sum(float(v[i]) for v in c.terms["full_max"].values()) for i in range(8)]
    assert raw[7] < raw[0]  # premise: the work decreases
    assert list(c.full_max_ns[:8]) == [math.ceil(raw[0] * 1e9 - 1e-6)] * 8


def test_average_step_mixes_decode_and_full_with_rho() -> None:
    cm = make_cm()
    c = cm.layer_cost(0, grid(), None, 6)
    dec = [sum(float(v[i]) for v in c.terms["decode"].values()) for i in range(6)]
    full = [sum(float(v[i]) for v in c.terms["full"].values()) for i in range(6)]
    for s in (1, 6):
        r = rho(s)  # 2s/(512 − s): s = 1 → 2/511
        assert c.avg_ns[s - 1] == math.ceil((r * full[s - 1] + (1 - r) * dec[s - 1]) * 1e9
                                            - 1e-6)
    # and the decode step of the dense layer is its five terms at d = s
    assert dec[0] == approx(op(2 * 12416, 12416 * 2 + 256) + op(160 * 256, 160 * 128 + 256)
                            + op(2 * DENSE, DENSE * 2 + 256) + 2 * 3 * 64 * 2 / B)


def test_saturated_prefill_queue_never_finishes() -> None:
    # ρ(s) = 2s/(512 − s) < 1 iff s < 512/3: s = 170 is the last stable point
    assert timing.max_stable_s(128, 64, N) == 170
    cm = make_cm()
    c = cm.layer_cost(0, grid(), None, 200)
    assert c.avg_ns[169] < timing.NEVER and c.avg_ns[170] == timing.NEVER
    assert (c.avg_ns[170:200] == timing.NEVER).all()
    ex = cm.stage_extras(grid(), 1.0, 200)
    assert ex.first_avg_ns[169] < timing.NEVER and ex.first_avg_ns[170] == timing.NEVER
    assert ex.last_avg_ns[170] == timing.NEVER


def test_a_saturated_plan_has_no_ttft() -> None:
    wl = Workload(input_len=128, max_input_len=256, output_len=64, batch=171)
    inst = make_instance(workload=wl)
    ev = evaluate(Prepared(inst, calibration=False), Plan(degrees=Degrees(), batch=171))
    assert ev.result.prefill_share is None and ev.result.ttft_ns == timing.NEVER
    assert ev.metrics.prefill_utilization == 1.0
    rules = {v.rule for v in verify(Prepared(inst, calibration=False),
                                    Plan(degrees=Degrees(), batch=171)).violations}
    assert "capacity" in rules


# -- structural consequences ----------------------------------------------------------------------


def test_a_tp_moe_plan_pays_no_all_to_all() -> None:
    inst = make_instance(hw=make_hw(hbm_gb=80.0))
    ev = evaluate(Prepared(inst, calibration=False), Plan(degrees=Degrees(tp=4, ep=4), batch=4))
    for step in ("decode", "full", "full_max"):
        assert not ev.costs[1].terms[step]["ep_comm"].any()
    ev = evaluate(Prepared(inst, calibration=False),
                  Plan(degrees=Degrees(dp=4, ep=4), batch=4))
    assert ev.costs[1].terms["decode"]["ep_comm"].all()


@pytest.mark.parametrize(("gpu", "weight", "block", "math_p", "fmt"), [
    ("h100-sxm", "mxfp4", None, "bf16", "w4a16_mxfp4"),  # no FP4 units: W4A16
    ("h200-sxm", "mxfp4", None, "bf16", "w4a16_mxfp4"),
    ("b200", "mxfp4", None, "mxfp4", "nvfp4"),
    ("h100-sxm", "fp8", 128, "fp8", "fp8_block"),  # W8A8, 128×128 scales
    ("h100-sxm", "fp8", None, "fp8", "fp8_per_tensor"),
    ("a100-sxm-80gb", "fp8", 128, "bf16", "w8a16"),  # no FP8 units on Ampere
    ("h100-sxm", "bf16", None, "bf16", "bf16"),
])
def test_math_precision_and_weight_format(gpu: str, weight: str, block: int | None, math_p: str,
                                          fmt: str) -> None:
    hw = load_hardware_preset(gpu)
    assert math_precision(hw, weight, "bf16") == math_p
    assert weight_format(hw, weight, block, "bf16") == fmt


def test_gpt_oss_experts_on_h100_run_bf16_math_on_4_25_bit_reads() -> None:
    """gpt-oss-120b's MXFP4 experts on H100 in compute-bound prefill: FLOPs at the BF16 peak
    (989.5 TFLOPS · 0.5), not FP8's."""
    inst = Instance(model=resolve_model("gpt-oss-120b"), hardware=load_hardware_preset("h100-sxm"),
                    workload=Workload(input_len=1000, output_len=100, batch=1),
                    expert_load=ExpertLoad(kind="uniform"))
    cm = CostModel(inst, calibration=False)
    m = inst.model  # h 2880, 128 experts of width 2880 with biases, top-4
    expert = 3 * 2880 * 2880 + 2 * 2880 + 2880
    t = terms(cm, 1, grid(), HotRank(1_000_000, 128), p=8000, u=500.5)
    routed = 8000 * 4
    flops = 2 * routed * expert
    nbytes = 128 * (1 - (1 - 1 / 128) ** routed) * expert * 4.25 / 8 + routed * (2 * 2880
                                                                                  + 2880) * 2
    assert m.expert_ffn_width == 2880
    assert t["moe_experts"] == approx(max(flops / (989.5e12 * 0.5), nbytes / (3.35e12 * 0.8)))
    assert flops / (989.5e12 * 0.5) > nbytes / (3.35e12 * 0.8)  # compute-bound: the peak shows


@pytest.mark.parametrize(("etp", "ep", "rejected"), [(8, 1, True), (4, 2, False)])
def test_fp8_block_divisibility(etp: int, ep: int, rejected: bool) -> None:
    """Qwen3-235B-A22B in 128×128-block FP8: expert width 1536 over etp 8 gives 192-wide shards,
    not whole blocks; over etp 4, 384 = 3·128."""
    inst = Instance(model=resolve_model("qwen3-235b-a22b@fp8"),
                    hardware=load_hardware_preset("h100-sxm"),
                    workload=Workload(input_len=1000, output_len=1000, batch=8),
                    search=SearchOptions(redundant_experts=0))
    plan = Plan(degrees=Degrees(tp=8, ep=ep, etp=etp), batch=8)
    found = [v for v in verify(Prepared(inst, calibration=False), plan).violations
             if v.rule == "quantisation_blocks"]
    assert bool(found) == rejected
    if rejected:
        assert found[0].field == "degrees.etp" and "192" in found[0].message
