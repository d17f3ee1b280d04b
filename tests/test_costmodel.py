"""The cost model against hand-computed values for a tiny model, and directions that must hold.

The expected numbers are derived here from the formulas in docs/cost-model.md, not from the code.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from solver.costmodel import CostModel, expected_touched
from solver.estimate import Prepared, evaluate
from solver.schema import (
    AttentionSpec,
    Degrees,
    HardwareSpec,
    Instance,
    ModelSpec,
    Plan,
    Workload,
)

# Tiny model: layer 0 dense, layer 1 MoE. bf16 everywhere (2 bytes).
H, HEADS, KV, HD = 64, 4, 2, 16
DENSE_W, E, K, EXP_W, VOCAB = 128, 4, 2, 32, 100


def tiny_model(**over) -> ModelSpec:
    fields = dict(
        name="tiny", num_layers=2, dense_layers=(0,), hidden_size=H,
        attention=AttentionSpec(num_heads=HEADS, num_kv_heads=KV, head_dim=HD),
        dense_ffn_width=DENSE_W, num_experts=E, top_k=K, expert_ffn_width=EXP_W,
        vocab_size=VOCAB,
    )
    fields.update(over)
    return ModelSpec(**fields)


# Rates chosen for round numbers: F = 100e12 · 0.5 = 5e13 FLOP/s; B = 1e12 · 0.5 = 5e11 B/s;
# intra-node 100 GB/s at efficiency 1, 1 µs; inter-node 10 GB/s, 5 µs.
F, B = 5e13, 5e11
INTRA_BW, INTRA_LAT = 100e9, 1e-6


def tiny_hw(**over) -> HardwareSpec:
    fields = dict(
        name="tiny-gpu", peak_tflops={"bf16": 100.0}, mfu=0.5, hbm_gb=10.0, hbm_tb_s=1.0,
        hbm_efficiency=0.5, gpus_per_node=8, intra_node_gb_s=100.0, inter_node_gb_s=10.0,
        intra_node_latency_us=1.0, inter_node_latency_us=5.0, comm_efficiency=1.0,
        reserved_gb=1.0,
    )
    fields.update(over)
    return HardwareSpec(**fields)


WL = Workload(input_len=128, max_input_len=256, output_len=64, batch=4)


def cm(model=None, hw=None, wl=WL) -> CostModel:
    return CostModel(model or tiny_model(), hw or tiny_hw(), wl)


# Hand counts (docs/cost-model.md, "Parameters"):
Q_O = 2 * H * HEADS * HD  # q and o: 8192
KV_PROJ = 2 * H * KV * HD  # k and v: 4096
NORMS = 2 * H  # two RMSNorms per layer
DENSE_FFN = 3 * H * DENSE_W  # SwiGLU: 24576
EXPERT = 3 * H * EXP_W  # one routed expert: 6144
ROUTER = H * E  # 256
KV_BYTES_TOKEN = 2 * KV * HD * 2  # K and V, bf16: 128 bytes per token and layer


@pytest.mark.unit
def test_weight_bytes_of_a_dense_layer_with_tp2() -> None:
    c = cm().layer_cost(0, Degrees(tp=2, etp=2), batch=4)
    attn = Q_O / 2 + KV_PROJ / min(2, KV) + NORMS
    assert c.weight_bytes == math.ceil((attn + DENSE_FFN / 2) * 2)


@pytest.mark.unit
def test_weight_bytes_of_an_moe_layer_count_the_hottest_ranks_slots() -> None:
    # ep = 2: two experts per rank; the router is replicated.
    c = cm().layer_cost(1, Degrees(dp=2, ep=2), batch=4, hottest_units=1, load_resolution=2,
                        hot_slots=2)
    attn = Q_O + KV_PROJ + NORMS
    assert c.weight_bytes == math.ceil((attn + ROUTER + 2 * EXPERT) * 2)


@pytest.mark.unit
def test_kv_cache_bytes_follow_batch_dp_cp_and_the_kv_shard() -> None:
    ctx = 256 + 64  # max input + output
    c = cm().layer_cost(0, Degrees(tp=2, etp=2), batch=4)
    assert c.kv_bytes == 4 * ctx * KV_BYTES_TOKEN // min(2, KV)
    # tp beyond the KV heads replicates them: tp=4 shards over min(4, 2) = 2 as well.
    c4 = cm().layer_cost(0, Degrees(tp=4, etp=4), batch=4)
    assert c4.kv_bytes == c.kv_bytes
    # dp=2 halves the sequences per rank, cp=2 the tokens per sequence.
    c_dp = cm().layer_cost(0, Degrees(dp=2, edp=2), batch=4)
    assert c_dp.kv_bytes == 2 * ctx * KV_BYTES_TOKEN
    c_cp = cm().layer_cost(0, Degrees(cp=2, edp=2), batch=4)
    assert c_cp.kv_bytes == 4 * (ctx // 2) * KV_BYTES_TOKEN


@pytest.mark.unit
def test_prefill_terms_of_a_dense_layer() -> None:
    c = cm().layer_cost(0, Degrees(), batch=4)
    t = c.prefill_terms
    tokens, act = 256, 256 * H * 2
    attn_params = Q_O + KV_PROJ + NORMS
    assert t["attn_proj"] == pytest.approx(max(2 * tokens * attn_params / F,
                                               (attn_params * 2 + 4 * act) / B))
    pairs = 256 * 257 / 2
    assert t["attn_core"] == pytest.approx(max(pairs * 2 * HEADS * 2 * HD / F,
                                               (2 * act + tokens * KV_BYTES_TOKEN) / B))
    assert t["ffn_dense"] == pytest.approx(max(2 * tokens * DENSE_FFN / F,
                                               (DENSE_FFN * 2 + 2 * act) / B))
    assert t["tp_comm"] == 0.0
    assert c.prefill_ns == math.ceil(sum(t.values()) * 1e9 - 1e-6)


@pytest.mark.unit
def test_tp_all_reduce_is_a_ring() -> None:
    t = cm().layer_cost(0, Degrees(tp=2, etp=2), batch=4).prefill_terms
    act = 256 * H * 2
    ring = 2 * (2 - 1) * INTRA_LAT + 2 * (2 - 1) / 2 * act / INTRA_BW
    assert t["tp_comm"] == pytest.approx(2 * ring)


@pytest.mark.unit
def test_moe_prefill_uses_the_hottest_rank() -> None:
    # ep = 2, hottest rank gets 3/4 of routed tokens; it holds 2 slots (both touched).
    c = cm().layer_cost(1, Degrees(dp=2, ep=2), batch=4, hottest_units=3, load_resolution=4,
                        hot_slots=2)
    t = c.prefill_terms
    routed = 2 * 256 * K * 0.75  # dp · seq · top_k · share / edp
    touched = expected_touched(2, routed)
    assert touched == pytest.approx(2.0)
    assert t["moe_experts"] == pytest.approx(max(2 * routed * EXPERT / F,
                                                 (touched * EXPERT * 2 + 2 * routed * H * 2) / B))
    recv = routed * H * 2 * (2 - 1) / 2
    assert t["ep_comm"] == pytest.approx(2 * (INTRA_LAT + recv / INTRA_BW))


@pytest.mark.unit
def test_decode_reads_the_kv_cache_at_mid_generation_context() -> None:
    c = cm().layer_cost(0, Degrees(), batch=4)
    ctx = 128 + 32  # input + output/2
    kv_read = 4 * ctx * KV_BYTES_TOKEN  # 4 sequences, one token each
    flops = 4 * ctx * 2 * HEADS * 2 * HD
    assert c.decode_terms["attn_core"] == pytest.approx(max(flops / F, kv_read / B))


@pytest.mark.unit
def test_expected_touched_experts() -> None:
    assert expected_touched(4, 0) == 0.0
    assert expected_touched(4, 1) == pytest.approx(1.0)
    assert expected_touched(4, 2) == pytest.approx(4 * (1 - 0.75 ** 2))
    assert expected_touched(4, 10_000) == pytest.approx(4.0)
    assert expected_touched(1, 0.5) == 0.5


def _instance(model=None, hw=None, wl=WL) -> Instance:
    return Instance(model=model or tiny_model(), hardware=hw or tiny_hw(), workload=wl)


@pytest.mark.unit
def test_assembled_metrics_by_hand() -> None:
    """TTFT, TPOT and throughput from the per-layer integers, pp = 2."""
    inst = _instance()
    ev = evaluate(inst, Plan(degrees=Degrees(pp=2), batch=4))
    costs, ex, res = ev.costs, ev.extras, ev.result
    assert res.ttft_ns == (costs[0].prefill_ns + costs[1].prefill_ns + ex.first_prefill_ns
                           + ex.last_prefill_ns + ex.hop_prefill_ns)
    stage0 = costs[0].decode_ns + ex.first_decode_ns
    stage1 = costs[1].decode_ns + ex.last_decode_ns
    assert res.tpot_ns == 2 * (max(stage0, stage1) + ex.hop_decode_ns)
    assert res.cycle_ns == 64 * res.tpot_ns + res.prefill_batch_ns
    assert ev.metrics.output_tokens_per_s_per_gpu == pytest.approx(
        4 * 64 / (res.cycle_ns * 1e-9) / 2)
    assert ev.metrics.tokens_per_s_per_user == pytest.approx(1e9 / res.tpot_ns)


@pytest.mark.unit
def test_rate_fallback_never_uses_integer_units_for_floats() -> None:
    from solver.costmodel import effective_tflops

    a100_like = tiny_hw(peak_tflops={"bf16": 312.0, "int8": 624.0})
    assert effective_tflops(a100_like, "fp8") == pytest.approx(312.0 * 0.5)


# ----------------------------------------------------------------------------------------------
# Directions that must hold (hypothesis)
# ----------------------------------------------------------------------------------------------

models = st.builds(
    lambda heads_pow, kv_div, hd, layers, experts, top_k, width: tiny_model(
        num_layers=layers, dense_layers=(0,) if layers > 1 else (),
        attention=AttentionSpec(num_heads=2 ** heads_pow,
                                num_kv_heads=max(1, 2 ** heads_pow // kv_div), head_dim=hd),
        num_experts=experts, top_k=min(top_k, experts), expert_ffn_width=width),
    st.integers(1, 4), st.sampled_from([1, 2, 4]), st.sampled_from([16, 32, 64]),
    st.integers(1, 4), st.sampled_from([2, 4, 8, 16]), st.integers(1, 4),
    st.sampled_from([64, 128, 256]),
)


@pytest.mark.unit
@settings(max_examples=150, deadline=None, derandomize=True)
@given(models, st.sampled_from([1, 2, 4, 8]), st.integers(1, 64))
def test_more_tp_never_raises_weight_memory_per_gpu(model, tp, batch) -> None:
    model_heads = model.attention.num_heads
    if model_heads % (2 * tp) or model.dense_ffn_width % (2 * tp):
        return
    c = cm(model)
    for layer in range(model.num_layers):
        a = c.layer_cost(layer, Degrees(tp=tp, etp=tp), batch, 1, 1, model.num_experts)
        b = c.layer_cost(layer, Degrees(tp=2 * tp, etp=2 * tp), batch, 1, 1, model.num_experts)
        assert b.weight_bytes <= a.weight_bytes


@pytest.mark.unit
@settings(max_examples=150, deadline=None, derandomize=True)
@given(models, st.integers(1, 4096), st.integers(1, 4096), st.integers(1, 8))
def test_a_longer_input_never_lowers_ttft(model, s1, s2, batch) -> None:
    short, long_ = sorted((s1, s2))
    hw = tiny_hw()  # memory does not enter TTFT; evaluate() costs plans that do not fit too
    ttft = []
    for s in (short, long_):
        wl = Workload(input_len=s, max_input_len=s, output_len=16, batch=batch)
        ttft.append(evaluate(_instance(model, hw, wl), Plan(degrees=Degrees(), batch=batch))
                    .result.ttft_ns)
    assert ttft[0] <= ttft[1]


@pytest.mark.unit
@settings(max_examples=150, deadline=None, derandomize=True)
@given(models, st.integers(1, 256), st.integers(1, 16), st.integers(1, 16))
def test_more_experts_touched_never_lowers_decode_time(model, batch, share_a, share_b) -> None:
    """A larger share of routed tokens on the busiest rank touches more experts (and does more
    work): the MoE layer's decode time never drops."""
    if not model.moe_layers:
        return
    layer = model.moe_layers[0]
    lo, hi = sorted((share_a, share_b))
    c = cm(model)
    d = Degrees()
    a = c.layer_cost(layer, d, batch, lo, 16, model.num_experts)
    b = c.layer_cost(layer, d, batch, hi, 16, model.num_experts)
    assert a.decode_ns <= b.decode_ns
    # and more slots on the busiest rank (more distinct experts to read) never helps either
    if model.num_experts > 1:
        fewer = c.layer_cost(layer, d, batch, hi, 16, model.num_experts - 1)
        assert fewer.decode_ns <= b.decode_ns


@pytest.mark.unit
def test_prepared_layer_costs_equal_direct_costs() -> None:
    inst = _instance()
    prep = Prepared(inst)
    hot = prep.default_hot(2)
    d = Degrees(dp=2, ep=2)
    via_prep = prep.layer_costs(d, 4, hot)
    direct = [prep.cm.layer_cost(i, d, 4, *(hot[i][0], 1_000_000, hot[i][1]))
              if i in hot else prep.cm.layer_cost(i, d, 4) for i in range(2)]
    assert [c.decode_ns for c in via_prep] == [c.decode_ns for c in direct]
