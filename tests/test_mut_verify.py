"""solver/verify.py, rule by rule, as a user reads its report: each violation's rule id, its
message with the numbers and the field it points at, the notes and warnings, and where each
target's boundary lies (mutation testing, docs/testing.md).

The instance is test_costmodel.py's tiny model on a GPU with round numbers, in roofline mode: two
layers (0 dense, 1 MoE with 4 experts, top-2), h = 64, vocabulary 100; one GPU of 10 GB with
1.5 GB reserved; input 128 (max 256), output 64, batch 4, token budget 512. Target boundaries are
placed half a nanosecond (or a relative 1e-9) either side of the plan's own figures, which the
estimator computes and tests/test_oracle.py checks independently.
"""

from __future__ import annotations

import math

import pytest

from solver.estimate import Prepared, evaluate
from solver.params import check_declared, total_params
from solver.schema import (
    AttentionSpec,
    Degrees,
    EngineSpec,
    ExpertLoad,
    HardwareSpec,
    Instance,
    LayerPlacement,
    ModelSpec,
    Plan,
    SearchOptions,
    Stage,
    Targets,
    Workload,
)
from solver.verify import CLAIM_TOLERANCE, Report, verify

pytestmark = pytest.mark.unit


def make_model(**over) -> ModelSpec:
    fields = dict(
        name="tiny", num_layers=2, dense_layers=(0,), hidden_size=64,
        attention=AttentionSpec(num_heads=4, num_kv_heads=2, head_dim=16),
        dense_ffn_width=128, num_experts=4, top_k=2, expert_ffn_width=32, vocab_size=100)
    fields.update(over)
    return ModelSpec(**fields)


def make_hw(**over) -> HardwareSpec:
    fields = dict(
        name="tiny-gpu", peak_tflops={"bf16": 100.0, "fp8": 200.0}, mfu=0.5, hbm_gb=10.0,
        hbm_tb_s=1.0, hbm_efficiency=0.5, gpus_per_node=8, intra_node_gb_s=100.0,
        inter_node_gb_s=10.0, intra_node_latency_us=1.0, inter_node_latency_us=5.0,
        comm_efficiency=1.0, reserved_gb=1.5)
    fields.update(over)
    return HardwareSpec(**fields)


def make_instance(model: ModelSpec | None = None, hw: HardwareSpec | None = None,
                  targets: Targets | None = None, search: SearchOptions | None = None,
                  claimed_plan: Plan | None = None) -> Instance:
    wl = Workload(input_len=128, max_input_len=256, output_len=64, batch=4,
                  targets=targets or Targets())
    return Instance(model=model or make_model(), hardware=hw or make_hw(), workload=wl,
                    engine=EngineSpec(name="vllm", max_num_batched_tokens=512),
                    expert_load=ExpertLoad(kind="uniform"), search=search or SearchOptions(),
                    claimed_plan=claimed_plan)


def check(inst: Instance, plan: Plan | None = None) -> Report:
    return verify(Prepared(inst, calibration=False), plan)


def found(report: Report) -> list[tuple[str, str, str]]:
    return [(v.rule, v.message, v.field) for v in report.violations]


ONE = Plan(degrees=Degrees(), batch=4)
#: dp 2 × ep 2: each EP rank holds 2 of the 4 experts.
EP2 = Degrees(dp=2, ep=2)


def placed(*layers: tuple[int, tuple[tuple[int, ...], ...]], degrees: Degrees = EP2) -> Plan:
    return Plan(degrees=degrees, batch=4, placement=tuple(
        LayerPlacement(layer=layer, ranks=ranks) for layer, ranks in layers))


def staged(*bounds: tuple[int, int], pp: int = 2) -> Plan:
    return Plan(degrees=Degrees(pp=pp), batch=4,
                stages=tuple(Stage(first_layer=a, last_layer=b) for a, b in bounds))


# -- a valid plan, the claimed plan, the report -----------------------------------------------


def test_a_valid_plan_has_no_violation_and_says_what_it_assumed() -> None:
    inst = make_instance()
    report = check(inst, ONE)
    assert report.valid and report.violations == [] and report.warnings == []
    assert report.notes == [
        "no stages given: evaluated with balanced contiguous stages",
        "no expert placement given: evaluated with EPLB greedy with 0 redundant slots (default)",
    ]
    # the report carries the evaluation it judged: the estimator's figures for this very plan
    assert report.evaluation is not None
    assert report.evaluation.metrics == evaluate(Prepared(inst, calibration=False),
                                                 ONE).metrics


def test_given_stages_and_placement_leave_no_note() -> None:
    plan = Plan(degrees=EP2, batch=4, stages=(Stage(first_layer=0, last_layer=1),),
                placement=(LayerPlacement(layer=1, ranks=((0, 1), (2, 3))),))
    report = check(make_instance(), plan)
    assert report.valid and report.notes == []
    # a model without MoE layers has no placement to assume
    dense = make_instance(make_model(dense_layers=(0, 1)))
    assert check(dense, ONE).notes == [
        "no stages given: evaluated with balanced contiguous stages"]


def test_the_claimed_plan_is_the_default_and_its_absence_an_error() -> None:
    claimed = Plan(degrees=Degrees(tp=2, etp=2), batch=4, claimed_total_gpus=4)
    report = check(make_instance(claimed_plan=claimed))
    assert found(report) == [("gpu_identity", "claimed 4 GPUs but replicas·pp·tp·cp·dp = "
                              "1·1·2·1·1 = 2", "claimed_total_gpus")]
    with pytest.raises(ValueError) as err:
        check(make_instance())
    assert str(err.value) == "the instance has no claimed_plan; pass a plan to verify"


def test_gpu_identity_lists_every_factor() -> None:
    # 3 replicas of pp 2 · tp 2 · cp 1 · dp 1: 12 GPUs, not the 8 claimed; 12 claimed is right
    plan = Plan(degrees=Degrees(pp=2, tp=2, etp=2, replicas=3), batch=4, claimed_total_gpus=8)
    assert found(check(make_instance(), plan)) == [
        ("gpu_identity", "claimed 8 GPUs but replicas·pp·tp·cp·dp = 3·2·2·1·1 = 12",
         "claimed_total_gpus")]
    right = plan.model_copy(update={"claimed_total_gpus": 12})
    assert check(make_instance(), right).valid


def test_declared_parameter_count_is_a_warning_not_a_violation() -> None:
    model = make_model(declared_total_params=10 * total_params(make_model()))
    report = check(make_instance(model), ONE)
    assert report.valid
    assert report.warnings == [check_declared(model)] and report.warnings[0]


def test_forbidden_replicas_are_judged_with_the_plan_replicas() -> None:
    inst = make_instance(search=SearchOptions(forbid={"replicas": (2,)}))
    plan = Plan(degrees=Degrees(replicas=2), batch=4)
    assert [(v.rule, v.field) for v in check(inst, plan).violations] == [
        ("search_space", "degrees.replicas")]
    assert check(inst, Plan(degrees=Degrees(replicas=3), batch=4)).valid


# -- memory -------------------------------------------------------------------------------------


def _stage_bytes(inst: Instance, plan: Plan) -> int:
    return evaluate(Prepared(inst, calibration=False), plan).result.stage_mem_bytes[0]


def test_memory_message_in_gb_of_1e9_bytes_rounded() -> None:
    """The stage's bytes are tuned with the runtime reserve to exactly 1,505,000,001 bytes and
    the engine's budget ⌊0.9 · hbm⌋ with the HBM size to 1,445,000,001: to two decimals of
    1e9 bytes, 1.51 GB (1.505000001) and 1.45 GB (1.445000001)."""
    base = _stage_bytes(make_instance(hw=make_hw(reserved_gb=0.0)), ONE)
    reserved = (1_505_000_001 - base) / 1e9
    hbm = 1_445_000_001.5 / 0.9e9
    inst = make_instance(hw=make_hw(reserved_gb=reserved, hbm_gb=hbm))
    assert _stage_bytes(inst, ONE) == 1_505_000_001  # premise: ceil(reserved · 1e9) is exact
    assert math.floor(0.9 * hbm * 1e9) == 1_445_000_001  # premise
    assert found(check(inst, ONE)) == [
        ("memory", "stage 0 (layers 0-1) needs 1.51 GB per GPU but the engine may use 1.45 GB "
         f"(0.9 of {hbm:g} GB)", "hardware.hbm_gb")]


def test_memory_at_the_budget_fits() -> None:
    """Budget ⌊0.9 · hbm⌋: a stage of exactly the budget fits, one byte more does not."""
    need = _stage_bytes(make_instance(), ONE)
    exact = make_instance(hw=make_hw(hbm_gb=need / 0.9e9))
    assert math.floor(0.9 * exact.hardware.hbm_gb * 1e9) == need  # premise
    assert check(exact, ONE).valid
    short = make_instance(hw=make_hw(hbm_gb=(need - 1) / 0.9e9))
    assert [v.rule for v in check(short, ONE).violations] == ["memory"]


def test_memory_names_the_stage_that_overflows() -> None:
    """pp 2 over 3 layers, stages {0, 1} and {2}: every stage's bytes are judged."""
    model = make_model(num_layers=3)
    plan = Plan(degrees=Degrees(pp=2), batch=4, stages=(Stage(first_layer=0, last_layer=1),
                                                       Stage(first_layer=2, last_layer=2)))
    mem = evaluate(Prepared(make_instance(model), calibration=False),
                   plan).result.stage_mem_bytes
    assert mem[0] != mem[1]
    hbm = max(mem) / 0.9e9 - 1e-9  # below the larger stage only
    budget = math.floor(0.9 * hbm * 1e9)
    assert min(mem) <= budget < max(mem)  # premise
    s = mem.index(max(mem))
    layers = ("0-1", "2-2")[s]
    assert found(check(make_instance(model, make_hw(hbm_gb=hbm)), plan)) == [
        ("memory", f"stage {s} (layers {layers}) needs {max(mem) / 1e9:.2f} GB per GPU but "
         f"the engine may use {budget / 1e9:.2f} GB (0.9 of {hbm:g} GB)", "hardware.hbm_gb")]


# -- targets --------------------------------------------------------------------------------------


def _result(plan: Plan = ONE):
    return evaluate(Prepared(make_instance(), calibration=False), plan)


def test_ttft_target_boundary_and_message() -> None:
    ev = _result()
    ttft_ns = ev.result.ttft_ns
    at = make_instance(targets=Targets(max_ttft_s=(ttft_ns + 0.5) / 1e9))
    assert check(at, ONE).valid  # ⌊target⌋ = the plan's TTFT: met
    target = (ttft_ns - 0.5) / 1e9
    below = make_instance(targets=Targets(max_ttft_s=target))
    assert found(check(below, ONE)) == [
        ("ttft", f"TTFT at load {ev.metrics.ttft_s:.4g} s exceeds the target {target:g} s",
         "workload.targets.max_ttft_s")]


def test_tpot_target_boundary_and_message_in_ms() -> None:
    ev = _result()
    tpot_ns = ev.result.tpot_ns
    assert check(make_instance(targets=Targets(max_tpot_s=(tpot_ns + 0.5) / 1e9)), ONE).valid
    target = (tpot_ns - 0.5) / 1e9
    assert found(check(make_instance(targets=Targets(max_tpot_s=target)), ONE)) == [
        ("tpot", f"TPOT {tpot_ns / 1e6:.4g} ms exceeds the target {target * 1e3:g} ms",
         "workload.targets.max_tpot_s")]


def test_rate_per_gpu_target_boundary_and_message() -> None:
    """tp 2: 4 sequences per TPOT over 2 GPUs."""
    plan = Plan(degrees=Degrees(tp=2, etp=2), batch=4)
    ev = _result(plan)
    rate = 4 / (ev.result.tpot_ns / 1e9) / 2
    met = make_instance(targets=Targets(min_output_tokens_per_s_per_gpu=rate * (1 - 1e-9)))
    assert check(met, plan).valid
    target = rate * (1 + 1e-9)
    missed = make_instance(targets=Targets(min_output_tokens_per_s_per_gpu=target))
    assert found(check(missed, plan)) == [
        ("throughput", f"{ev.metrics.output_tokens_per_s_per_gpu:.4g} output tokens/s per GPU "
         f"is below the target {target:g}", "workload.targets.min_output_tokens_per_s_per_gpu")]


def test_total_rate_target_counts_every_replica() -> None:
    """3 replicas of tp 2: 3 · 4 sequences per TPOT in total (the GPUs do not divide it)."""
    plan = Plan(degrees=Degrees(tp=2, etp=2, replicas=3), batch=4)
    ev = _result(plan)
    rate = 3 * 4 / (ev.result.tpot_ns / 1e9)
    assert check(make_instance(targets=Targets(min_output_tokens_per_s=rate * (1 - 1e-9))),
                 plan).valid
    target = rate * (1 + 1e-9)
    assert found(check(make_instance(targets=Targets(min_output_tokens_per_s=target)),
                       plan)) == [
        ("throughput", f"{ev.metrics.output_tokens_per_s:.4g} output tokens/s in total is "
         f"below the target {target:g}", "workload.targets.min_output_tokens_per_s")]


def test_max_gpus_boundary_and_message() -> None:
    plan = Plan(degrees=Degrees(tp=2, etp=2, replicas=3), batch=4)  # 6 GPUs
    assert check(make_instance(targets=Targets(max_gpus=6)), plan).valid
    assert found(check(make_instance(targets=Targets(max_gpus=5)), plan)) == [
        ("max_gpus", "the plan uses 6 GPUs, above max_gpus 5", "workload.targets.max_gpus")]


# -- claimed metrics ----------------------------------------------------------------------------


def test_claims_within_ten_percent_pass_and_beyond_fail() -> None:
    """Lower-is-better figures (TTFT, TPOT, memory) may be claimed down to 0.9× the model's,
    higher-is-better ones (rates) up to 1.1×; beyond that the claim is false."""
    assert CLAIM_TOLERANCE == 0.10
    met = _result().metrics.model_dump()
    inst = make_instance()
    ok = {"tpot_s": met["tpot_s"] * 0.9, "ttft_s": met["ttft_s"] * 0.95,
          "peak_memory_gb": met["peak_memory_gb"] * 1.5,
          "output_tokens_per_s_per_gpu": met["output_tokens_per_s_per_gpu"] * 1.1,
          "output_tokens_per_s": met["output_tokens_per_s"] * 0.5}
    assert check(inst, Plan(degrees=Degrees(), batch=4, claimed_metrics=ok)).valid
    tpot = met["tpot_s"] * 0.9 * (1 - 1e-9)
    rate = met["output_tokens_per_s_per_gpu"] * 1.1 * (1 + 1e-9)
    bad = {"tpot_s": tpot, "output_tokens_per_s_per_gpu": rate}
    assert found(check(inst, Plan(degrees=Degrees(), batch=4, claimed_metrics=bad))) == [
        ("claim", f"claimed tpot_s = {tpot:.4g} but the cost model gives {met['tpot_s']:.4g}",
         "claimed_metrics.tpot_s"),
        ("claim", f"claimed output_tokens_per_s_per_gpu = {rate:.4g} but the cost model gives "
         f"{met['output_tokens_per_s_per_gpu']:.4g}",
         "claimed_metrics.output_tokens_per_s_per_gpu"),
    ]


def test_an_unknown_claimed_metric_is_named_and_the_rest_still_checked() -> None:
    met = _result().metrics.model_dump()
    claims = {"tokens_per_dollar": 5.0, "ttft_s": met["ttft_s"] / 2}
    got = found(check(make_instance(), Plan(degrees=Degrees(), batch=4, claimed_metrics=claims)))
    assert got == [
        ("claim", f"unknown metric 'tokens_per_dollar' in claimed_metrics (known: "
         f"{', '.join(sorted(met))})", "claimed_metrics"),
        ("claim", f"claimed ttft_s = {met['ttft_s'] / 2:.4g} but the cost model gives "
         f"{met['ttft_s']:.4g}", "claimed_metrics.ttft_s"),
    ]


# -- stages -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("plan", "want"), [
    (staged((0, 0), (1, 1)), []),
    # one stage for pp 2
    (staged((0, 1)), [("stages", "1 stages given but pp = 2", "stages")]),
    # a gap: layer 1 skipped, stage 1 starts at 2 and the model ends at 1
    (staged((0, 0), (2, 2)), [
        ("stages", "stage 1 starts at layer 2, expected 1 (stages must be contiguous and cover "
         "every layer once)", "stages[1]"),
        ("stages", "stages end at layer 2 but the model has layers 0-1", "stages")]),
    # the first stage does not start at layer 0
    (staged((1, 1), pp=1), [
        ("stages", "stage 0 starts at layer 1, expected 0 (stages must be contiguous and cover "
         "every layer once)", "stages[0]")]),
    # stages stop short of the last layer
    (staged((0, 0), pp=1), [("stages", "stages end at layer 0 but the model has layers 0-1",
                              "stages")]),
], ids=["ok", "count", "gap-and-overrun", "late-start", "short"])
def test_stage_rules(plan: Plan, want: list) -> None:
    assert found(check(make_instance(), plan)) == want


# -- expert placement ---------------------------------------------------------------------------


@pytest.mark.parametrize(("plan", "want"), [
    (placed((1, ((0, 1), (2, 3)))), []),
    # a dense layer placed, and so MoE layer 1 left without placement
    (placed((0, ((0, 1), (2, 3)))), [
        ("experts", "layer 0 is not an MoE layer", "placement[0]"),
        ("experts", "MoE layer 1 has no expert placement", "placement")]),
    # layer 1 twice: the second entry is reported and not checked further; the next is
    (placed((1, ((0, 1), (2, 3))), (1, ((0, 0), (9, 3))), (0, ((0, 1), (2, 3)))), [
        ("experts", "layer 1 is placed twice (placement[0] and placement[1])", "placement[1]"),
        ("experts", "layer 0 is not an MoE layer", "placement[2]")]),
    # three ranks listed for ep 2, of 1, 1 and 2 slots
    (placed((1, ((0,), (1,), (2, 3)))), [
        ("experts", "layer 1: 3 EP ranks listed but ep = 2", "placement[0]"),
        ("experts", "layer 1: ranks hold [1, 2] slots but the 4 experts + 0 redundant slots on "
         "ep = 2 give 2 per rank", "placement[0]")]),
    # expert ids 4.. do not exist (the first five are named), 2 and 3 are missing
    (placed((1, ((0, 1, 4, 5, 6, 7), (8, 9, 10, 11, 12, 13)))), [
        ("experts", "layer 1: ranks hold [6] slots but the 4 experts + 0 redundant slots on "
         "ep = 2 give 2 per rank", "placement[0]"),
        ("experts", "layer 1: expert ids [4, 5, 6, 7, 8] do not exist (the model has 4)",
         "placement[0]"),
        ("experts", "layer 1: 2 experts are not placed (first: [2, 3])", "placement[0]")]),
    # an expert twice on one rank (reported once for the layer)
    (placed((1, ((0, 0), (1, 1)))), [
        ("experts", "layer 1: 2 experts are not placed (first: [2, 3])", "placement[0]"),
        ("experts", "layer 1: a rank holds the same expert twice", "placement[0]")]),
], ids=["ok", "dense-layer", "twice", "rank-count", "unknown-ids", "duplicate"])
def test_placement_rules(plan: Plan, want: list) -> None:
    assert found(check(make_instance(), plan)) == want


def test_placement_checks_go_on_after_each_finding() -> None:
    """Three layers (1 and 2 MoE), 8 experts on ep 2: a dense-layer entry, then layer 1 with a
    duplicate and six experts missing (five named), and layer 2 never placed."""
    model = make_model(num_layers=3, num_experts=8)
    plan = placed((0, ((0, 1, 2, 3), (4, 5, 6, 7))),
                  (1, ((0, 0, 1, 1), (0, 1, 0, 1))))
    assert found(check(make_instance(model), plan)) == [
        ("experts", "layer 0 is not an MoE layer", "placement[0]"),
        ("experts", "layer 1: 6 experts are not placed (first: [2, 3, 4, 5, 6])",
         "placement[1]"),
        ("experts", "layer 1: a rank holds the same expert twice", "placement[1]"),
        ("experts", "MoE layer 2 has no expert placement", "placement"),
    ]


def test_slot_count_is_not_judged_when_ep_does_not_divide_the_slots() -> None:
    """ep 3 on 4 experts: the structural rule says so; no per-rank count exists to compare."""
    plan = placed((1, ((0, 1), (2,), (3,))), degrees=Degrees(dp=3, ep=3))
    got = found(check(make_instance(), plan))
    assert got and not [g for g in got if g[0] == "experts"]
    assert "divisibility" in {rule for rule, _, _ in got}
