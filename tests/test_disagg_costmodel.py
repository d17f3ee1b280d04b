"""The cost model of a prefill + decode pair (docs/cost-model.md, "Disaggregated serving").

- Every figure of the pair (both pools' stage memory and steps, TPOT, the prefill cadence and
  round, ρ, the M/D/1 wait, the KV transfer, TTFT) equals an independent evaluator written from
  the page (tests/disagg_oracle.py), exactly, on generated plans in roofline mode.
- Hand-derived values of the queue, the transfer's flow shop and DeepSeek-V3's KV bytes.
- The prefill pool's replica count is the exact inverse of its TTFT (the planner's cap).
- verify reports each rule of the pair, with the pool named in message and field.
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, assume, given, note, settings
from hypothesis import strategies as st

from solver import disagg, timing
from solver.instance import instance_from_dict
from solver.pool_space import PoolSpace
from solver.schema import DisaggPlan, Instance, Plan, PrefillPlan, Stage, Targets
from tests import disagg_oracle
from tests.strategies import (
    _hardware,
    small_engines,
    small_loads,
    small_models,
    small_search,
    small_workloads,
)

pytestmark = pytest.mark.unit

# ----------------------------------------------------------------------------------------------
# Against the independent evaluator
# ----------------------------------------------------------------------------------------------


def _stages(draw, num_layers: int, pp: int) -> tuple[Stage, ...] | None:
    if pp == 1 or draw(st.booleans(), label="balanced"):
        return None
    cuts = sorted(draw(st.sets(st.integers(1, num_layers - 1), min_size=pp - 1,
                               max_size=pp - 1), label="cuts"))
    edges = [0, *cuts, num_layers]
    return tuple(Stage(first_layer=edges[k], last_layer=edges[k + 1] - 1) for k in range(pp))


@st.composite
def pairs(draw) -> tuple[Instance, DisaggPlan]:
    """An instance on a GPU without measured curves (roofline) and a random two-pool plan."""
    model = draw(small_models(), label="model")
    workload = draw(small_workloads(), label="workload")
    search = draw(small_search(), label="search")
    engine = draw(small_engines(), label="engine")
    hw = _hardware(draw(st.sampled_from(["seed-card", "l40s", "mi300x"]), label="gpu"),
                   gpus_per_node=draw(st.sampled_from([2, 4, 8]), label="gpn"),
                   inter_node_gb_s=draw(st.sampled_from([0.1, 5.0, 50.0]), label="link"))
    rate = float(draw(st.sampled_from([10, 300, 5000, 80000]), label="rate"))
    tokens = draw(st.sampled_from([64, 256, 1000, 4096]), label="tokens")
    inst = Instance(
        name="pair", model=model, hardware=hw, engine=engine, search=search,
        expert_load=draw(small_loads(), label="load"), serving="disaggregated",
        workload=workload.model_copy(update={"targets": Targets(min_output_tokens_per_s=rate)}),
        disaggregation={"prefill_tokens": [tokens],
                        "kv_transfer": draw(st.sampled_from(["layerwise", "after_prefill"]),
                                            label="overlap")})
    dspace, pspace = PoolSpace(inst, "decode"), PoolSpace(inst, "prefill")
    lo, hi = workload.batch_bounds
    decode = [(g, b) for n in (1, 2, 4, 8) for g in dspace.grids(n) for b in range(lo, hi + 1)
              if not dspace.violations(g, b, dspace.redundant(g.ep))]
    prefill = [g for n in (1, 2, 4, 8) for g in pspace.grids(n)
               if not pspace.violations(g, 1, pspace.redundant(g.ep))]
    assume(decode and prefill)
    dg, batch = decode[draw(st.integers(0, len(decode) - 1), label="decode_grid")]
    pg = prefill[draw(st.integers(0, len(prefill) - 1), label="prefill_grid")]
    plan = DisaggPlan(
        prefill=PrefillPlan(degrees=pg.degrees(draw(st.integers(1, 4), label="p_replicas")),
                            tokens_per_step=tokens,
                            stages=_stages(draw, model.num_layers, pg.pp)),
        decode=Plan(degrees=dg.degrees(draw(st.integers(1, 4), label="d_replicas")),
                    batch=batch, stages=_stages(draw, model.num_layers, dg.pp)))
    return inst, plan


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(pairs())
def test_the_pair_matches_the_independent_evaluator(pair) -> None:
    inst, plan = pair
    note(f"plan: {plan.model_dump_json(exclude_defaults=True)}")
    ev = disagg.evaluate(inst, plan)
    ref = disagg_oracle.evaluate(inst, plan)
    dc, pf = ev.decode.result, ev.prefill.result
    assert list(dc.stage_mem_bytes) == ref.decode_mem
    assert list(dc.stage_step_ns) == ref.decode_steps
    assert dc.tpot_ns == ref.tpot_ns
    assert ev.decode_capacity == ref.decode_capacity
    assert list(pf.stage_mem_bytes) == ref.prefill_mem
    assert list(pf.stage_step_ns) == ref.prefill_steps
    assert list(pf.stage_full_ns) == ref.prefill_full
    assert (pf.step_ns, pf.round_full_ns) == (ref.step_ns, ref.round_full_ns)
    assert ev.prefill_capacity == ref.prefill_capacity
    assert ev.rho == ref.rho
    assert ev.wait_ns == ref.wait_ns
    assert ev.own_ns == ref.own_ns
    assert ev.streams == ref.streams
    assert ev.transfer_ns == ref.transfer_ns
    assert (ev.ttft_ns if ev.wait_ns is not None else None) == ref.ttft_ns


# ----------------------------------------------------------------------------------------------
# Hand-derived values
# ----------------------------------------------------------------------------------------------


def test_mdl_queue_by_hand() -> None:
    """λ = 10 requests/s of 1,000-token prompts on one server prefilling 1,000 tokens per 10 ms
    step: ρ = 10·1000·0.01/1000 = 0.1, service S = 1 round = 10 ms, wait = ρS/(2(1−ρ)) =
    0.1·10/1.8 ms = 0.5556 ms; with two replicas ρ = 0.05 and the wait 0.05·10/1.9 ms."""
    lam = Fraction(10)
    step = 10_000_000
    rho = timing.prefill_load(lam, 1000, 1, 1, 1000, step)
    assert rho == Fraction(1, 10)
    assert timing.prefill_wait_ns(rho, 1000, 1000, 1, step) == Fraction(10_000_000, 18)
    rho2 = timing.prefill_load(lam, 1000, 2, 1, 1000, step)
    assert rho2 == Fraction(1, 20)
    assert timing.prefill_wait_ns(rho2, 1000, 1000, 1, step) == Fraction(5_000_000, 19)
    assert timing.prefill_wait_ns(Fraction(1), 1000, 1000, 1, step) is None  # saturated
    # a 3,500-token prompt in 1,000-token steps: 4 rounds of its own
    assert timing.prefill_own_ns(3500, 1000, 7) == 28


@pytest.mark.parametrize("compute_ms,expected_ms", [
    ((1, 1, 1), 4),  # the link is the bottleneck: 6 ms of transfer, 2 ms hidden
    ((3, 3, 3), 2),  # the compute hides all but the last layer
    # layer 2 leaves at 4.5-6.5 ms, layer 3 waits for the link until 6.5 and ends at 8.5;
    # the compute ends at 5.0: j = 2 gives 4 − 0.5
    ((0.5, 4, 0.5), 3.5),
])
def test_layerwise_transfer_is_the_ordered_flow_shop(compute_ms, expected_ms) -> None:
    """Three layers of 2 ms of transfer each: the transfers end max_j(Σ_{l≥j} x − Σ_{l>j} c)
    after the compute (by hand: j = 1, 2, 3 for each row)."""
    x_bytes = [2e-3 * 1e9] * 3  # 2 ms at 1 GB/s
    got = timing.kv_transfer_ns(x_bytes, 1, 1e9, 0.0, [int(c * 1e6) for c in compute_ms])
    assert got == pytest.approx(expected_ms * 1e6, abs=1)
    # with two links every layer takes half as long; without overlap all of it shows
    assert timing.kv_transfer_ns(x_bytes, 2, 1e9, 0.0, None) == 3_000_000
    assert timing.kv_transfer_ns(x_bytes, 1, 1e9, 5e-6, None) == 6_005_000


def test_deepseek_v3_kv_transfer_bytes() -> None:
    """MLA caches (kv_lora_rank 512 + rope 64) BF16 values per token per layer: 1,152 bytes ×
    61 layers = 70,272 bytes per token, 140.544 MB for a 2,000-token prompt."""
    inst = instance_from_dict({
        "model": "deepseek-v3", "hardware": "h100-sxm", "serving": "disaggregated",
        "workload": {"input_len": 2000, "output_len": 100, "batch": 256,
                     "targets": {"min_output_tokens_per_s": 10000}}})
    plan = DisaggPlan(prefill=PrefillPlan(degrees={"dp": 32, "ep": 32}, tokens_per_step=16384),
                      decode=Plan(degrees={"dp": 72, "ep": 72}, batch=72 * 256))
    ev = disagg.evaluate(inst, plan)
    assert ev.transfer_bytes == 140_544_000
    assert ev.streams == 1  # MLA's latent is replicated over TP: one GPU holds a request's KV
    # 140.5 MB at 50 GB/s × 0.8: 3.5 ms, all of it after the prefill (the default, as the
    # engines send it) plus the latency (5 µs)
    assert ev.breakdown["kv_transfer"]["total_s"] == pytest.approx(140.544e6 / 40e9 + 5e-6)
    assert ev.transfer_ns == math.ceil((140.544e6 / 40e9 + 5e-6) * 1e9 - 1e-6)
    # layer-wise, one layer's share (2.3 MB, 57.6 µs) and the latency show
    layerwise = inst.model_copy(update={"disaggregation": inst.disaggregation.model_copy(
        update={"kv_transfer": "layerwise"})})
    ev = disagg.evaluate(layerwise, plan)
    assert ev.transfer_ns == math.ceil((2000 * 1152 / 40e9 + 5e-6) * 1e9 - 1e-6)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.integers(1, 10_000), st.integers(1, 4096), st.integers(1, 64), st.sampled_from(
    [128, 1000, 8192]), st.integers(1, 4), st.integers(10_000, 10**9), st.integers(0, 10**9),
    st.integers(0, 4 * 10**9))
def test_prefill_replicas_are_the_exact_inverse(requests, input_len, dp, tokens, pp, step,
                                                own, budget) -> None:
    """The fewest replicas the inverse gives meets the budget by the forward formulas, and one
    fewer does not (or saturates)."""
    lam = Fraction(requests, 7)
    r = timing.prefill_replicas_needed(lam, input_len, dp, tokens, pp, step, own, budget)
    assume(r is not None and r <= 10**6)

    def ttft(n: int) -> int | None:
        rho = timing.prefill_load(lam, input_len, n, dp, tokens, step)
        wait = timing.prefill_wait_ns(rho, input_len, tokens, pp, step)
        return None if wait is None else timing.prefill_ttft_ns(wait, own)

    assert ttft(r) is not None and ttft(r) <= budget
    if r > 1:
        assert ttft(r - 1) is None or ttft(r - 1) > budget


def test_no_replica_count_meets_a_budget_below_the_own_prefill() -> None:
    assert timing.prefill_replicas_needed(Fraction(1), 10, 1, 10, 1, 100, 500, 500) is None
    assert timing.prefill_replicas_needed(Fraction(1), 10, 1, 10, 1, 100, 500, None) == 1


# ----------------------------------------------------------------------------------------------
# verify
# ----------------------------------------------------------------------------------------------

DS = {"model": "deepseek-v3", "hardware": "h100-sxm", "serving": "disaggregated",
      "engine": {"name": "sglang", "overlap": "two_batch"},
      "search": {"redundant_experts": 32},
      "disaggregation": {"prefill_tokens": [8192, 16384]},
      "workload": {"input_len": 2000, "output_len": 100, "batch": {"min": 1, "max": 32768},
                   "targets": {"min_output_tokens_per_s": 10000, "max_ttft_s": 5,
                               "max_tpot_s": 0.1}}}


def _plan(prefill: dict, decode: dict) -> DisaggPlan:
    return DisaggPlan.model_validate({"prefill": prefill, "decode": decode})


#: 32 prefill GPUs (221,553 input tokens/s, ρ = 0.90) and 24 decode GPUs at 32 sequences per
#: GPU (14,625 output tokens/s, TPOT 52.5 ms, 59 of 70.4 GB).
GOOD = ({"degrees": {"dp": 32, "ep": 32}, "tokens_per_step": 16384},
        {"degrees": {"dp": 24, "ep": 24}, "batch": 24 * 32})


def test_a_sized_pair_is_valid() -> None:
    report = disagg.verify(instance_from_dict(DS), _plan(*GOOD))
    assert report.valid, [str(v) for v in report.violations]
    m = report.evaluation.metrics
    assert m.prefill_gpus == 32 and m.decode_gpus == 24
    assert m.output_tokens_per_s == 10000 and m.requests_per_s == 100
    assert m.output_tokens_per_s_per_gpu == pytest.approx(10000 / 56)
    assert m.ttft_s == pytest.approx(m.ttft_queue_s + m.ttft_prefill_s + m.kv_transfer_s,
                                     abs=2e-9)


@pytest.mark.parametrize("prefill,decode,targets,rules,fields", [
    # 24 prefill GPUs prefill 167,647 of the 200,000 input tokens/s
    ({"degrees": {"dp": 24, "ep": 24}, "tokens_per_step": 16384}, GOOD[1], {},
     {"rate_matching", "ttft"}, {"prefill.degrees.replicas", "workload.targets.max_ttft_s"}),
    # one sequence per decode GPU is far below 10,000 tokens/s
    (GOOD[0], {"degrees": {"dp": 24, "ep": 24}, "batch": 24}, {},
     {"throughput"}, {"workload.targets.min_output_tokens_per_s"}),
    (GOOD[0], GOOD[1], {"max_tpot_s": 0.001}, {"tpot"}, {"workload.targets.max_tpot_s"}),
    (GOOD[0], GOOD[1], {"max_gpus": 55}, {"max_gpus"}, {"workload.targets.max_gpus"}),
    # 10,000 / 56 = 178.6 output tokens/s per GPU at the planned rate
    (GOOD[0], GOOD[1], {"min_output_tokens_per_s_per_gpu": 179}, {"throughput"},
     {"workload.targets.min_output_tokens_per_s_per_gpu"}),
    ({"degrees": {"dp": 32, "ep": 32}, "tokens_per_step": 4096}, GOOD[1], {},
     {"search_space"}, {"prefill.tokens_per_step"}),
    ({"degrees": {"dp": 32, "ep": 32}, "tokens_per_step": 16384},
     {"degrees": {"dp": 24, "ep": 24}, "batch": 24 * 200}, {}, {"memory"},
     {"hardware.hbm_gb"}),
    # ep = 20 does not divide the 288 slots (256 experts + 32 redundant); and SGLang's expert
    # groups cover the stage (edp = 1)
    ({"degrees": {"dp": 40, "ep": 20, "edp": 2}, "tokens_per_step": 16384}, GOOD[1], {},
     {"divisibility", "engine"}, {"prefill.degrees.ep", "prefill.degrees.edp"}),
    # a two-pool engine rule: SGLang runs no pipeline-parallel decode loop
    (GOOD[0], {"degrees": {"dp": 24, "ep": 24, "pp": 2}, "batch": 24 * 32}, {},
     None, {"decode.degrees.pp"}),
    ({"degrees": {"dp": 32, "ep": 32}, "tokens_per_step": 16384},
     {"degrees": {"dp": 24, "ep": 24}, "batch": 24 * 32 + 1}, {},
     {"divisibility"}, {"decode.batch"}),
])
def test_verify_names_each_rule_of_the_pair(prefill, decode, targets, rules, fields) -> None:
    data = {**DS, "workload": {**DS["workload"],
                               "targets": {**DS["workload"]["targets"], **targets}}}
    report = disagg.verify(instance_from_dict(data), _plan(prefill, decode))
    if rules is not None:
        assert {v.rule for v in report.violations} == rules, [str(v) for v in report.violations]
    assert fields <= {v.field for v in report.violations}
    for v in report.violations:
        if v.field.startswith(("prefill.", "decode.")):
            assert v.message.startswith(v.field.split(".")[0] + " pool: ")


def test_the_planned_rate_is_required() -> None:
    data = {**DS, "workload": {**DS["workload"], "targets": {"max_ttft_s": 5}}}
    with pytest.raises(ValueError, match="min_output_tokens_per_s: required with serving"):
        instance_from_dict(data)
