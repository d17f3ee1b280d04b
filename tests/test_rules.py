"""Every structural rule of solver/rules.py: a table of accepted and rejected shapes per rule, and
a separately written check (from the rules' docstrings and docs/solver.md, sharing no code with
solver.rules) that must fire exactly the same rules on generated shapes."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from solver import rules
from solver.rules import Shape
from solver.schema import (
    AttentionSpec,
    EngineSpec,
    Grid,
    HardwareSpec,
    ModelSpec,
    SearchOptions,
    Workload,
)

pytestmark = pytest.mark.unit

GQA = AttentionSpec(num_heads=8, num_kv_heads=2, head_dim=128)  # query width 1024
MLA = AttentionSpec(kind="mla", num_heads=8, num_kv_heads=8, head_dim=64, kv_lora_rank=64,
                    qk_nope_head_dim=32, qk_rope_head_dim=16, v_head_dim=32)


def model(**over) -> ModelSpec:
    """4 layers (layer 0 dense, width 1024), 8 experts of width 512 (top-2), one shared expert
    of width 256."""
    fields = dict(num_layers=4, dense_layers=(0,), hidden_size=256, attention=GQA,
                  dense_ffn_width=1024, num_experts=8, top_k=2, expert_ffn_width=512,
                  num_shared_experts=1, shared_expert_width=256, vocab_size=1000)
    fields.update(over)
    return ModelSpec(**fields)


DENSE_ONLY = model(dense_layers=(0, 1, 2, 3), num_shared_experts=0)


def fp8(**over) -> ModelSpec:
    """The model in 128×128-block FP8, every width whole blocks at tp 8 (1024/8 = 128) unless
    overridden."""
    return model(**{"weight_precision": "fp8", "weight_block_size": 128,
                    "shared_expert_width": 1024, **over})


def hw(gpus_per_node: int = 8) -> HardwareSpec:
    return HardwareSpec(peak_tflops={"bf16": 100.0}, mfu=0.5, hbm_gb=80.0, hbm_tb_s=1.0,
                        hbm_efficiency=0.8, gpus_per_node=gpus_per_node, intra_node_gb_s=100.0,
                        inter_node_gb_s=10.0, intra_node_latency_us=1.0,
                        inter_node_latency_us=5.0, reserved_gb=1.0)


def shape(tp: int = 1, cp: int = 1, dp: int = 1, ep: int | None = None, etp: int = 1,
          edp: int | None = None, pp: int = 1, batch: int | None = None, redundant: int = 0,
          m: ModelSpec | None = None, gpn: int = 8, budget: int = 512, input_len: int = 128,
          output_len: int = 64, engine: str = "vllm", dispatch: str | None = None,
          overlap: str = "none", pool: str = "", **search) -> Shape:
    """A shape; by default the MoE grid folds the attention grid (ep = tp·cp·dp/etp, edp 1)."""
    n = tp * cp * dp
    if ep is None:
        ep = max(1, n // etp)
    if edp is None:
        edp = max(1, n // (etp * ep))
    return Shape(model=m or model(), hw=hw(gpn), search=SearchOptions(**search),
                 engine=EngineSpec(name=engine, max_num_batched_tokens=budget,
                                   ep_dispatch_precision=dispatch, overlap=overlap),
                 workload=Workload(input_len=input_len, output_len=output_len),
                 grid=Grid(tp, cp, dp, ep, etp, edp, pp), batch=batch or dp, redundant=redundant,
                 pool=pool)


R = rules
ID = "divisibility", "degrees"
# (rule function, shape, expected (rule id, field) or None)
CASES = [
    # parallel folding: etp·ep·edp = tp·cp·dp
    pytest.param(R.expert_grid_identity, shape(tp=2, dp=2, ep=4), None, id="identity-ep4"),
    pytest.param(R.expert_grid_identity, shape(tp=2, dp=2, ep=1, etp=2, edp=2), None,
                 id="identity-etp2-edp2"),
    pytest.param(R.expert_grid_identity, shape(tp=2, dp=2, ep=2, edp=1),
                 ("gpu_identity", "degrees"), id="identity-short"),
    pytest.param(R.expert_grid_identity, shape(tp=2, ep=2, edp=2),
                 ("gpu_identity", "degrees"), id="identity-long"),
    # tp divides the query heads
    pytest.param(R.tp_divides_heads, shape(tp=8), None, id="heads-tp8"),
    pytest.param(R.tp_divides_heads, shape(tp=3), ("divisibility", "degrees.tp"), id="heads-tp3"),
    pytest.param(R.tp_divides_heads, shape(tp=16), ("divisibility", "degrees.tp"),
                 id="heads-tp16"),
    # GQA: tp divides the KV heads or is a multiple of them
    pytest.param(R.tp_fits_kv_heads, shape(tp=2), None, id="kv-tp-equal"),
    pytest.param(R.tp_fits_kv_heads, shape(tp=8), None, id="kv-replicated"),
    pytest.param(R.tp_fits_kv_heads, shape(tp=3), ("divisibility", "degrees.tp"), id="kv-tp3"),
    pytest.param(R.tp_fits_kv_heads,
                 shape(tp=4, m=model(attention=AttentionSpec(num_heads=12, num_kv_heads=6,
                                                             head_dim=64))),
                 ("divisibility", "degrees.tp"), id="kv-6-tp4"),
    pytest.param(R.tp_fits_kv_heads,
                 shape(tp=6, m=model(attention=AttentionSpec(num_heads=12, num_kv_heads=4,
                                                             head_dim=64))),
                 ("divisibility", "degrees.tp"), id="kv-4-tp6"),
    pytest.param(R.tp_fits_kv_heads, shape(tp=3, m=model(attention=MLA)), None, id="kv-mla"),
    # the dense FFN width
    pytest.param(R.tp_divides_dense_width, shape(tp=8), None, id="dense-tp8"),
    pytest.param(R.tp_divides_dense_width, shape(tp=8, m=model(dense_ffn_width=1020)),
                 ("divisibility", "degrees.tp"), id="dense-1020-tp8"),
    pytest.param(R.tp_divides_dense_width,
                 shape(tp=8, m=model(dense_layers=(), dense_ffn_width=1020)), None,
                 id="dense-width-unused"),
    # the shared-expert width
    pytest.param(R.tp_divides_shared_width, shape(tp=8), None, id="shared-tp8"),
    pytest.param(R.tp_divides_shared_width, shape(tp=8, m=model(shared_expert_width=100)),
                 ("divisibility", "degrees.tp"), id="shared-100-tp8"),
    pytest.param(R.tp_divides_shared_width,
                 shape(tp=8, m=model(shared_expert_width=0, expert_ffn_width=500)),
                 ("divisibility", "degrees.tp"), id="shared-defaults-to-expert-width"),
    pytest.param(R.tp_divides_shared_width,
                 shape(tp=8, m=model(num_shared_experts=0, shared_expert_width=100)), None,
                 id="no-shared"),
    pytest.param(R.tp_divides_shared_width,
                 shape(tp=8, m=model(dense_layers=(0, 1, 2, 3), shared_expert_width=100)),
                 None, id="shared-without-moe-layers"),
    # no expert degrees without MoE layers
    pytest.param(R.no_moe_no_expert_degrees, shape(tp=2, ep=1, edp=2, m=DENSE_ONLY), None,
                 id="dense-model-ep1"),
    pytest.param(R.no_moe_no_expert_degrees, shape(dp=2, ep=2, m=DENSE_ONLY),
                 ("divisibility", "degrees.ep"), id="dense-model-ep2"),
    pytest.param(R.no_moe_no_expert_degrees, shape(tp=2, ep=1, etp=2, m=DENSE_ONLY),
                 ("divisibility", "degrees.ep"), id="dense-model-etp2"),
    pytest.param(R.no_moe_no_expert_degrees, shape(dp=2, ep=2), None, id="moe-model-ep2"),
    # redundant slots need ep > 1
    pytest.param(R.redundant_needs_ep, shape(dp=2, ep=2, redundant=8), None, id="redundant-ep2"),
    pytest.param(R.redundant_needs_ep, shape(redundant=0), None, id="no-redundant-ep1"),
    pytest.param(R.redundant_needs_ep, shape(redundant=8),
                 ("experts", "redundant_experts"), id="redundant-ep1"),
    pytest.param(R.redundant_needs_ep, shape(redundant=8, m=DENSE_ONLY), None,
                 id="redundant-no-moe"),
    # ep divides experts + redundant slots
    pytest.param(R.ep_divides_slots, shape(dp=8), None, id="slots-8-ep8"),
    pytest.param(R.ep_divides_slots, shape(dp=4, redundant=4), None, id="slots-12-ep4"),
    pytest.param(R.ep_divides_slots, shape(dp=3, redundant=1), None, id="slots-9-ep3"),
    pytest.param(R.ep_divides_slots, shape(dp=3), ("divisibility", "degrees.ep"),
                 id="slots-8-ep3"),
    pytest.param(R.ep_divides_slots, shape(dp=16), ("divisibility", "degrees.ep"),
                 id="slots-8-ep16"),
    pytest.param(R.ep_divides_slots, shape(dp=3, m=DENSE_ONLY, ep=1, edp=3), None,
                 id="slots-no-moe"),
    # each rank's slots hold distinct experts
    pytest.param(R.slots_fit_distinct_experts, shape(dp=2, redundant=8), None,
                 id="distinct-8-per-rank"),
    pytest.param(R.slots_fit_distinct_experts, shape(dp=2, redundant=10),
                 ("experts", "redundant_experts"), id="distinct-9-per-rank"),
    pytest.param(R.slots_fit_distinct_experts, shape(redundant=8),
                 ("experts", "redundant_experts"), id="distinct-16-on-one-rank"),
    pytest.param(R.slots_fit_distinct_experts, shape(dp=3, redundant=10), None,
                 id="distinct-undivided-left-to-ep-rule"),
    # etp divides the expert width
    pytest.param(R.etp_divides_expert_width, shape(tp=8, etp=8, ep=1), None, id="width-etp8"),
    pytest.param(R.etp_divides_expert_width,
                 shape(tp=8, etp=8, ep=1, m=model(expert_ffn_width=500)),
                 ("divisibility", "degrees.etp"), id="width-500-etp8"),
    pytest.param(R.etp_divides_expert_width,
                 shape(tp=8, etp=8, ep=1, m=model(dense_layers=(0, 1, 2, 3),
                                                  expert_ffn_width=500)), None,
                 id="width-no-moe"),
    # the MoE group and the TP group nest
    pytest.param(R.moe_group_nests_tp, shape(tp=4, dp=2, ep=2, edp=4), None, id="nest-inside"),
    pytest.param(R.moe_group_nests_tp, shape(tp=2, dp=4, ep=8), None, id="nest-whole-groups"),
    pytest.param(R.moe_group_nests_tp, shape(tp=2, dp=3, ep=3, edp=2),
                 ("divisibility", "degrees.ep"), id="nest-tp2-span3"),
    pytest.param(R.moe_group_nests_tp, shape(tp=4, dp=3, ep=6, edp=2),
                 ("divisibility", "degrees.ep"), id="nest-tp4-span6"),
    pytest.param(R.moe_group_nests_tp, shape(tp=2, dp=3, ep=3, edp=2, m=DENSE_ONLY), None,
                 id="nest-no-moe"),
    # FP8 128×128 blocks: every shard whole blocks
    pytest.param(R.whole_quantisation_blocks,
                 shape(tp=8, etp=4, ep=2, m=fp8(expert_ffn_width=1536)), None,
                 id="blocks-expert-384"),
    pytest.param(R.whole_quantisation_blocks,
                 shape(tp=8, etp=8, ep=1, m=fp8(expert_ffn_width=1536)),
                 ("quantisation_blocks", "degrees.etp"), id="blocks-expert-192"),
    pytest.param(R.whole_quantisation_blocks,
                 shape(tp=8, etp=8, ep=1, m=fp8(expert_ffn_width=1536, expert_precision="mxfp4")),
                 None, id="blocks-mxfp4-experts-pad"),
    pytest.param(R.whole_quantisation_blocks,
                 shape(tp=8, etp=8, ep=1, m=model(expert_ffn_width=1536)), None,
                 id="blocks-unblocked"),
    pytest.param(R.whole_quantisation_blocks,
                 shape(tp=8, etp=8, ep=1, m=fp8(expert_ffn_width=1500)), None,
                 id="blocks-undivided-left-to-width-rule"),
    pytest.param(R.whole_quantisation_blocks,
                 shape(tp=8, ep=1, etp=1, edp=8, m=fp8(dense_ffn_width=1536)),
                 ("quantisation_blocks", "degrees.tp"), id="blocks-dense-192"),
    pytest.param(R.whole_quantisation_blocks,
                 shape(tp=8, ep=1, etp=1, edp=8,
                       m=fp8(dense_layers=(), dense_ffn_width=1536)),
                 None, id="blocks-dense-width-unused"),
    pytest.param(R.whole_quantisation_blocks,
                 shape(tp=4, ep=1, etp=1, edp=4, m=fp8(shared_expert_width=768)),
                 ("quantisation_blocks", "degrees.tp"), id="blocks-shared-192"),
    pytest.param(R.whole_quantisation_blocks,
                 shape(tp=8, ep=1, etp=1, edp=8,
                       m=fp8(attention=AttentionSpec(num_heads=8, num_kv_heads=2, head_dim=64))),
                 ("quantisation_blocks", "degrees.tp"), id="blocks-query-64"),
    pytest.param(R.whole_quantisation_blocks,
                 shape(tp=8, ep=1, etp=1, edp=8, m=fp8(attention=MLA)), None,
                 id="blocks-mla-no-query-check"),
    # dp divides the batch
    pytest.param(R.dp_divides_batch, shape(dp=4, batch=8), None, id="batch-8-dp4"),
    pytest.param(R.dp_divides_batch, shape(dp=4, batch=6), ("divisibility", "batch"),
                 id="batch-6-dp4"),
    # pp at most the layer count
    pytest.param(R.pp_within_layers, shape(pp=4), None, id="pp4-of-4"),
    pytest.param(R.pp_within_layers, shape(pp=5), ("divisibility", "degrees.pp"), id="pp5-of-4"),
    # TP·CP inside a node
    pytest.param(R.tp_within_node, shape(tp=4, cp=2, ep=8), None, id="tpcp-8-of-8"),
    pytest.param(R.tp_within_node, shape(tp=4, cp=4, ep=16), ("node_boundary", "degrees.tp"),
                 id="tpcp-16-of-8"),
    pytest.param(R.tp_within_node, shape(tp=4, gpn=6), ("node_boundary", "degrees.tp"),
                 id="tp4-of-6"),
    pytest.param(R.tp_within_node, shape(tp=4, cp=4, ep=16, tp_cross_node=True), None,
                 id="tpcp-16-allowed"),
    # expert TP inside a node
    pytest.param(R.etp_within_node, shape(tp=8, etp=8, ep=1, gpn=8), None, id="etp8-of-8"),
    pytest.param(R.etp_within_node, shape(tp=8, etp=8, ep=1, gpn=4),
                 ("node_boundary", "degrees.etp"), id="etp8-of-4"),
    pytest.param(R.etp_within_node, shape(tp=4, etp=4, ep=1, gpn=6),
                 ("node_boundary", "degrees.etp"), id="etp4-of-6"),
    pytest.param(R.etp_within_node, shape(tp=8, etp=8, ep=1, gpn=4, tp_cross_node=True), None,
                 id="etp8-allowed"),
    pytest.param(R.etp_within_node, shape(dp=6, gpn=4), None, id="etp1"),
    # EP inside a node unless allowed to cross
    pytest.param(R.ep_within_node, shape(dp=16, ep_cross_node=False), (
        "node_boundary", "degrees.ep"), id="ep16-of-8-forbidden"),
    pytest.param(R.ep_within_node, shape(dp=16), None, id="ep16-of-8-allowed"),
    pytest.param(R.ep_within_node, shape(dp=8, ep_cross_node=False), None, id="ep8-of-8"),
    pytest.param(R.ep_within_node, shape(dp=3, gpn=8, ep_cross_node=False),
                 ("node_boundary", "degrees.ep"), id="ep3-of-8"),
    pytest.param(R.ep_within_node, shape(dp=3, ep=1, edp=3, gpn=8, ep_cross_node=False), None,
                 id="ep1"),
    pytest.param(R.ep_within_node, shape(dp=16, m=DENSE_ONLY, ep_cross_node=False), None,
                 id="ep-no-moe"),
    # the prefill queue keeps up: s·(128 + 64) < 64·512, i.e. s ≤ 170
    pytest.param(R.prefill_keeps_up, shape(batch=170), None, id="s170"),
    pytest.param(R.prefill_keeps_up, shape(batch=171), ("capacity", "batch"), id="s171"),
    pytest.param(R.prefill_keeps_up, shape(pp=2, batch=340), None, id="pp2-s170"),
    pytest.param(R.prefill_keeps_up, shape(pp=2, batch=341), ("capacity", "batch"),
                 id="pp2-s171"),
    pytest.param(R.prefill_keeps_up, shape(dp=2, batch=341), ("capacity", "batch"),
                 id="dp2-q171-uneven"),
    pytest.param(R.prefill_keeps_up, shape(batch=341, budget=1024), None, id="budget-1024"),
    # -- engine rules (search.engine_rules, default on) --
    pytest.param(R.engine_context_parallel, shape(tp=2, cp=2, engine="sglang"),
                 ("engine", "degrees.cp"), id="engine-cp2-sglang"),
    pytest.param(R.engine_context_parallel, shape(tp=2, cp=2, engine_rules=False), None,
                 id="engine-cp2-opted-out"),
    pytest.param(R.engine_context_parallel, shape(tp=2, dp=2), None, id="engine-cp1"),
    pytest.param(R.engine_expert_data_parallel, shape(tp=2, dp=2, ep=2, edp=2, engine="trtllm"),
                 ("engine", "degrees.edp"), id="engine-edp2"),
    pytest.param(R.engine_expert_data_parallel, shape(tp=2, dp=2, ep=2, edp=2,
                                                      engine_rules=False),
                 None, id="engine-edp2-opted-out"),
    pytest.param(R.engine_expert_data_parallel, shape(tp=2, dp=2), None, id="engine-edp1"),
    pytest.param(R.engine_expert_data_parallel, shape(tp=2, dp=2, ep=1, etp=1, edp=4, m=DENSE_ONLY),
                 None, id="engine-edp4-dense-model"),
    pytest.param(R.vllm_expert_parallel_stage, shape(tp=2, dp=2, ep=4), None, id="vllm-ep-stage"),
    pytest.param(R.vllm_expert_parallel_stage, shape(tp=2, dp=2, ep=2, etp=2),
                 ("engine", "degrees.ep"), id="vllm-ep2-etp2"),
    pytest.param(R.vllm_expert_parallel_stage, shape(tp=2, dp=2, ep=2, etp=2, engine="sglang"),
                 None, id="sglang-ep2-etp2"),
    pytest.param(R.vllm_expert_tensor_stage, shape(tp=2, dp=2, ep=1, etp=4), None,
                 id="vllm-etp-stage"),
    pytest.param(R.vllm_expert_tensor_stage, shape(tp=4, ep=1, etp=2, edp=2),
                 ("engine", "degrees.etp"), id="vllm-etp2-of-4"),
    pytest.param(R.vllm_expert_tensor_stage, shape(tp=4, m=DENSE_ONLY, ep=1, etp=1), None,
                 id="vllm-dense-model"),
    pytest.param(R.engine_dispatch_precision, shape(tp=2, dp=2, ep=4), None,
                 id="vllm-bf16-dispatch"),
    pytest.param(R.engine_dispatch_precision, shape(tp=2, dp=2, ep=4, dispatch="fp8"),
                 ("engine", "engine.ep_dispatch_precision"), id="vllm-fp8-dispatch"),
    pytest.param(R.engine_dispatch_precision, shape(tp=2, dp=2, ep=4, engine="sglang",
                                                    dispatch="bf16"),
                 ("engine", "engine.ep_dispatch_precision"), id="sglang-bf16-dispatch"),
    pytest.param(R.engine_dispatch_precision, shape(tp=4, ep=1, etp=4, dispatch="fp8"), None,
                 id="no-ep-any-dispatch"),
    pytest.param(R.trtllm_attention_dp, shape(tp=2, dp=2, engine="trtllm"),
                 ("engine", "degrees.tp"), id="trtllm-tp2-dp2"),
    pytest.param(R.trtllm_attention_dp, shape(tp=1, dp=4, engine="trtllm"), None,
                 id="trtllm-tp1-dp4"),
    pytest.param(R.trtllm_attention_dp, shape(tp=2, dp=2, engine="sglang"), None,
                 id="sglang-tp2-dp2"),
    pytest.param(R.trtllm_two_batch_overlap, shape(engine="trtllm", overlap="two_batch"),
                 ("engine", "engine.overlap"), id="trtllm-two-batch"),
    pytest.param(R.trtllm_two_batch_overlap, shape(engine="sglang", overlap="two_batch"), None,
                 id="sglang-two-batch"),
    # 2 stages of tp 2 · dp 3 on 4-GPU nodes: 12 GPUs as 3 nodes of 4, a dp rank is 2·2 = 4 GPUs
    pytest.param(R.vllm_dp_ranks_within_nodes, shape(tp=2, dp=3, pp=2, gpn=4), None,
                 id="vllm-dp-rank-whole"),
    # 1 stage of tp 2 · dp 3 on 4-GPU nodes: 6 GPUs as 3 nodes of 2, rank tp·pp = 2 fits
    pytest.param(R.vllm_dp_ranks_within_nodes, shape(tp=2, dp=3, gpn=4), None,
                 id="vllm-dp-rank-one-stage"),
    # 3 stages of tp 2 · dp 2 on 4-GPU nodes: 12 GPUs as 3 nodes of 4, a rank is 2·3 = 6 GPUs
    pytest.param(R.vllm_dp_ranks_within_nodes, shape(tp=2, dp=2, pp=3, gpn=4),
                 ("engine", "degrees"), id="vllm-dp-rank-spans"),
    pytest.param(R.sglang_decode_pipeline, shape(tp=2, pp=2, engine="sglang", pool="decode"),
                 ("engine", "degrees.pp"), id="sglang-decode-pp2"),
    pytest.param(R.sglang_decode_pipeline, shape(tp=2, pp=2, engine="sglang", pool="prefill"),
                 None, id="sglang-prefill-pp2"),
    pytest.param(R.sglang_decode_pipeline, shape(tp=2, pp=2, engine="sglang"), None,
                 id="sglang-aggregated-pp2"),
    pytest.param(R.vllm_disagg_pipeline, shape(tp=2, pp=2, pool="prefill"),
                 ("engine", "degrees.pp"), id="vllm-prefill-pp2"),
    pytest.param(R.vllm_disagg_pipeline, shape(tp=2, pp=2), None, id="vllm-aggregated-pp2"),
    pytest.param(R.vllm_prefill_tp_within_node, shape(tp=8, gpn=4, pool="prefill",
                                                      tp_cross_node=True),
                 ("engine", "degrees.tp"), id="vllm-prefill-tp8-4gpu-nodes"),
    pytest.param(R.vllm_prefill_tp_within_node, shape(tp=4, dp=2, gpn=4, pool="prefill"), None,
                 id="vllm-prefill-tp4-4gpu-nodes"),
]


@pytest.mark.parametrize(("rule", "x", "want"), CASES)
def test_rule(rule: rules.Rule, x: Shape, want: tuple[str, str] | None) -> None:
    v = rule(x)
    if want is None:
        assert v is None, v
    else:
        assert v is not None
        assert (v.rule, v.field) == want
        assert v.message


def test_every_rule_has_accepted_and_rejected_cases() -> None:
    seen = {(p.values[0], p.values[2] is None) for p in CASES}
    for rule in rules.RULES:
        assert (rule, True) in seen and (rule, False) in seen, rule.__name__


def g(tp: int = 1, dp: int = 1, pp: int = 1) -> Grid:
    return Grid(tp, 1, dp, tp * dp, 1, 1, pp)


PAIR_CASES = [
    pytest.param(R.sglang_stage_sizes_nest, "sglang", g(dp=16), g(dp=24), "decode.degrees.tp",
                 id="sglang-16-24"),
    pytest.param(R.sglang_stage_sizes_nest, "sglang", g(dp=8), g(dp=32), None, id="sglang-8-32"),
    pytest.param(R.sglang_stage_sizes_nest, "sglang", g(tp=8), g(dp=2, tp=2), None,
                 id="sglang-8-4"),
    pytest.param(R.sglang_stage_sizes_nest, "vllm", g(dp=16), g(dp=24), None, id="vllm-16-24"),
    pytest.param(R.vllm_decode_tp_multiple, "vllm", g(tp=4), g(tp=2, dp=8), "decode.degrees.tp",
                 id="vllm-decode-tp-smaller"),
    pytest.param(R.vllm_decode_tp_multiple, "vllm", g(tp=2), g(tp=4), None, id="vllm-2-4"),
    pytest.param(R.vllm_decode_tp_multiple, "trtllm", g(tp=4), g(tp=2), None, id="trtllm-4-2"),
]


@pytest.mark.parametrize(("rule", "engine", "prefill", "decode", "field"), PAIR_CASES)
def test_pair_rule(rule, engine: str, prefill: Grid, decode: Grid, field: str | None) -> None:
    v = rule(engine, prefill, decode)
    assert (v is None) if field is None else (v is not None and v.field == field and v.message)
    assert (field is None) == (not rules.pair_violations(engine, prefill, decode))


def test_every_pair_rule_has_accepted_and_rejected_cases() -> None:
    seen = {(p.values[0], p.values[4] is None) for p in PAIR_CASES}
    for rule in rules.PAIR_RULES:
        assert (rule, True) in seen and (rule, False) in seen, rule.__name__


def test_grid_rules_are_every_rule_but_the_batch_ones() -> None:
    assert set(rules.GRID_RULES) == set(rules.RULES) - {rules.dp_divides_batch,
                                                        rules.prefill_keeps_up}


# -- an independent statement of the rules ------------------------------------------------------


def independent_violations(x: Shape) -> Counter:
    """(rule id, field) of every broken rule, written from the rules' docstrings."""
    m, g, gpn, s = x.model, x.grid, x.hw.gpus_per_node, x.search
    a, moe, span = m.attention, len(m.moe_layers) > 0, g.etp * g.ep
    slots = m.num_experts + x.redundant

    def inside_a_node(n: int) -> bool:  # n consecutive GPUs tile nodes exactly
        return n <= gpn and gpn % n == 0

    out = []
    if g.tp * g.cp * g.dp != g.etp * g.ep * g.edp:
        out.append(("gpu_identity", "degrees"))
    if a.num_heads % g.tp:
        out.append(("divisibility", "degrees.tp"))
    if a.kind == "gqa":
        kv = a.num_kv_heads
        if not ((g.tp <= kv and kv % g.tp == 0) or (g.tp > kv and g.tp % kv == 0)):
            out.append(("divisibility", "degrees.tp"))
    if m.dense_layers and m.dense_ffn_width % g.tp:
        out.append(("divisibility", "degrees.tp"))
    if moe and m.num_shared_experts and m.shared_width % g.tp:
        out.append(("divisibility", "degrees.tp"))
    if not moe and span > 1:
        out.append(("divisibility", "degrees.ep"))
    if moe and x.redundant and g.ep == 1:
        out.append(("experts", "redundant_experts"))
    if moe and slots % g.ep:  # (covers ep > slots too)
        out.append(("divisibility", "degrees.ep"))
    if moe and slots % g.ep == 0 and slots // g.ep > m.num_experts:
        out.append(("experts", "redundant_experts"))
    if moe and m.expert_ffn_width % g.etp:
        out.append(("divisibility", "degrees.etp"))
    if moe and span % g.tp and g.tp % span:
        out.append(("divisibility", "degrees.ep"))
    if blocks_broken(x):
        out.append(("quantisation_blocks", "*"))
    if x.batch % g.dp:
        out.append(("divisibility", "batch"))
    if g.pp > m.num_layers:
        out.append(("divisibility", "degrees.pp"))
    if not s.tp_cross_node and not inside_a_node(g.tp * g.cp):
        out.append(("node_boundary", "degrees.tp"))
    if not s.tp_cross_node and g.etp > 1 and not inside_a_node(g.etp):
        out.append(("node_boundary", "degrees.etp"))
    if moe and not s.ep_cross_node and span > 1 and not inside_a_node(span):
        out.append(("node_boundary", "degrees.ep"))
    # ρ(s) = s·input/(output·(N − s)) < 1  ⟺  s·(input + output) < output·N
    wl, budget = x.workload, x.engine.token_budget
    per_rank = -(-x.batch // g.dp)
    seqs = -(-per_rank // g.pp)
    if seqs * (wl.input_len + wl.output_len) >= wl.output_len * budget:
        out.append(("capacity", "batch"))
    out += engine_violations(x)
    return Counter(out)


def engine_violations(x: Shape) -> list[tuple[str, str]]:
    """The engine rules, from docs/solver.md ("What the engines run") and docs/export.md."""
    if not x.search.engine_rules:
        return []
    g, name, moe = x.grid, x.engine.name, len(x.model.moe_layers) > 0
    stage = g.tp * g.dp
    out = []
    if g.cp != 1:
        out.append(("engine", "degrees.cp"))
    if g.edp != 1 and moe:  # a dense model has no expert groups
        out.append(("engine", "degrees.edp"))
    if name == "vllm" and moe and g.ep > 1 and not (g.ep == stage and g.etp == 1):
        out.append(("engine", "degrees.ep"))
    if name == "vllm" and moe and g.ep == 1 and g.etp != stage:
        out.append(("engine", "degrees.etp"))
    native = "bf16" if name == "vllm" else "fp8"
    if moe and g.ep > 1 and x.engine.dispatch_precision != native:
        out.append(("engine", "engine.ep_dispatch_precision"))
    if name == "trtllm" and g.dp > 1 and g.tp > 1:
        out.append(("engine", "degrees.tp"))
    if name == "trtllm" and x.engine.overlap == "two_batch":
        out.append(("engine", "engine.overlap"))
    gpi, gpn = g.tp * g.cp * g.dp * g.pp, x.hw.gpus_per_node
    # the export's layout: most GPUs per node that divide the instance and hold whole TP groups
    per_node = max([k for k in range(1, min(gpi, gpn) + 1) if gpi % k == 0
                    and k % (g.tp * g.cp) == 0] or
                   [k for k in range(1, min(gpi, gpn) + 1) if gpi % k == 0])
    if name == "vllm" and g.dp > 1 and gpi > per_node and per_node % (g.tp * g.pp):
        out.append(("engine", "degrees"))
    if name == "sglang" and x.pool == "decode" and g.pp > 1:
        out.append(("engine", "degrees.pp"))
    if name == "vllm" and x.pool and g.pp > 1:
        out.append(("engine", "degrees.pp"))
    if name == "vllm" and x.pool == "prefill" and per_node % g.tp:
        out.append(("engine", "degrees.tp"))
    return out


def blocks_broken(x: Shape) -> set[str]:
    """Fields of the shardings that split a block-quantised width into partial blocks."""
    m, g, block = x.model, x.grid, x.model.weight_block_size
    if not block:
        return set()
    widths = []
    if m.moe_layers and (m.expert_precision or m.weight_precision) == m.weight_precision:
        widths.append((m.expert_ffn_width, g.etp, "degrees.etp"))
    if m.dense_layers:
        widths.append((m.dense_ffn_width, g.tp, "degrees.tp"))
    if m.moe_layers and m.num_shared_experts:
        widths.append((m.shared_width, g.tp, "degrees.tp"))
    if m.attention.kind == "gqa":
        widths.append((m.attention.num_heads * m.attention.head_dim, g.tp, "degrees.tp"))
    # an undivided width is the divisibility rules' to report
    return {f for w, parts, f in widths if w % parts == 0 and (w // parts) % block}


@st.composite
def shapes(draw: st.DrawFn) -> Shape:
    layers = draw(st.integers(1, 6))
    heads = draw(st.sampled_from([4, 6, 8, 12, 16]))
    if draw(st.booleans()):
        attention = AttentionSpec(kind="mla", num_heads=heads, num_kv_heads=heads, head_dim=64,
                                  kv_lora_rank=64, qk_nope_head_dim=32, qk_rope_head_dim=16,
                                  v_head_dim=32)
    else:
        kv = draw(st.sampled_from([k for k in range(1, heads + 1) if heads % k == 0]))
        attention = AttentionSpec(num_heads=heads, num_kv_heads=kv,
                                  head_dim=draw(st.sampled_from([32, 64, 96, 128])))
    dense = tuple(sorted(draw(st.sets(st.integers(0, layers - 1), max_size=layers))))
    width = st.sampled_from([96, 128, 192, 256, 384, 500, 768, 1024, 1536])
    precision = draw(st.sampled_from(["bf16", "fp8", "fp8"]))
    m = ModelSpec(
        num_layers=layers, dense_layers=dense, hidden_size=256, attention=attention,
        dense_ffn_width=draw(width) if dense or draw(st.booleans()) else 0,
        num_experts=draw(st.sampled_from([4, 6, 8, 16])), top_k=1,
        expert_ffn_width=draw(width), num_shared_experts=draw(st.sampled_from([0, 1, 2])),
        shared_expert_width=draw(st.sampled_from([0, 100, 256, 768])), vocab_size=1000,
        weight_precision=precision,
        expert_precision=draw(st.sampled_from([None, None, "mxfp4", precision])),
        weight_block_size=draw(st.sampled_from([None, 128])) if precision == "fp8" else None)
    degree = st.sampled_from([1, 1, 2, 3, 4, 8, 16])
    tp, cp, dp = draw(degree), draw(st.sampled_from([1, 1, 2, 4])), draw(degree)
    n = tp * cp * dp
    etp = draw(st.sampled_from([d for d in range(1, n + 1) if n % d == 0]))
    ep = draw(st.sampled_from([d for d in range(1, n // etp + 1) if (n // etp) % d == 0]))
    edp = n // (etp * ep) + draw(st.sampled_from([0, 0, 0, 0, 1]))  # sometimes off by one
    return Shape(model=m, hw=hw(draw(st.sampled_from([2, 4, 6, 8]))),
                 search=SearchOptions(tp_cross_node=draw(st.booleans()),
                                      ep_cross_node=draw(st.booleans()),
                                      engine_rules=draw(st.booleans())),
                 engine=EngineSpec(name=draw(st.sampled_from(["vllm", "sglang", "trtllm"])),
                                   max_num_batched_tokens=draw(st.sampled_from([64, 256, 2048])),
                                   ep_dispatch_precision=draw(st.sampled_from([None, "fp8",
                                                                               "bf16"])),
                                   overlap=draw(st.sampled_from(["none", "none", "two_batch"]))),
                 workload=Workload(input_len=draw(st.integers(1, 3000)),
                                   output_len=draw(st.integers(1, 1000))),
                 grid=Grid(tp, cp, dp, ep, etp, edp, draw(st.integers(1, 8))),
                 batch=draw(st.integers(1, 600)), redundant=draw(st.sampled_from([0, 0, 2, 8])),
                 pool=draw(st.sampled_from(["", "", "prefill", "decode"])))


@settings(max_examples=400, derandomize=True, deadline=None)
@given(shapes())
def test_rules_match_an_independent_statement(x: Shape) -> None:
    got = rules.violations(x)
    for v in got:
        event(f"{v.rule} {v.field}")
    if not got:
        event("valid")
    mine = independent_violations(x)
    normalised = Counter((v.rule, "*" if v.rule == "quantisation_blocks" else v.field)
                         for v in got)
    assert normalised == mine
    for v in got:
        if v.rule == "quantisation_blocks":
            assert v.field in blocks_broken(x)
