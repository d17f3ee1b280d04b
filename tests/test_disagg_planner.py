"""The two-pool planner (docs/solver.md, "Two pools").

- Against the exhaustive two-pool reference (:func:`solver.reference.reference_disagg_search`)
  on generated small instances: the same status, and for OPTIMAL the same GPU count and the
  same TTFT (exact integers of the same cost model), every tie-break proved, a plan verify
  accepts and estimate prices identically. Instances include slow inter-node links (the KV
  transfer decides which pair fits), both transfer modes, pipelines in both pools, fixed and
  forbidden degrees, redundant slots and two-batch overlap.
- A solve cut short never reports a bound above the true optimum.
- The KV transfer couples the pools: a case where the fewest-GPU decode pool cannot receive fast
  enough, so the optimum buys a decode pool with more receiving GPUs.
- DeepSeek-V3 on H100 (instances/models/deepseek-v3-h100-disagg.yaml): a proved two-pool plan
  with fewer GPUs than the proved aggregated optimum, both reported.
- INFEASIBLE names the pool that cannot be built.
"""

from __future__ import annotations

import collections
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, note, settings
from hypothesis import strategies as st

from solver import disagg, planner
from solver.instance import instance_from_dict, load_instance
from solver.planner.disagg import DISAGG_TIE_BREAKS
from solver.planner.search import Cancelled
from solver.pools import receivers
from solver.reference import reference_disagg_search
from solver.schema import Instance
from tests.disagg_strategies import small_disagg_instances

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]


def instance_yaml(instance: Instance) -> str:
    data = instance.model_dump(mode="json", exclude_defaults=True)
    data["hardware"].pop("notes", None)
    return yaml.safe_dump(data, sort_keys=False)


def test_planner_agrees_with_the_two_pool_reference() -> None:
    outcomes: collections.Counter[str] = collections.Counter()

    @settings(max_examples=150, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(small_disagg_instances())
    def check(instance: Instance) -> None:
        note(f"instance:\n{instance_yaml(instance)}")
        ref = reference_disagg_search(instance, time_limit_s=60)
        assume(ref.status != "TIMEOUT")
        outcomes[f"reference {ref.status}"] += 1
        result = planner.solve(instance, time_limit_s=30)
        note(f"reference: {ref.status} gpus={ref.gpus} ttft={ref.ttft_ns}")
        note(f"planner: {result.status} gpus={result.objective} bound={result.bound}")
        assert result.serving == "disaggregated" and result.plan is None
        if ref.status == "OPTIMAL":
            assert result.status == "OPTIMAL"
            assert result.objective == ref.gpus == result.disagg_plan.gpus
            report = disagg.verify(instance, result.disagg_plan)
            assert report.valid, [str(v) for v in report.violations]
            assert report.evaluation.ttft_ns == ref.ttft_ns
            assert result.disagg_metrics == disagg.estimate(instance, result.disagg_plan)
            assert set(result.tie_breaks_proved) == set(DISAGG_TIE_BREAKS)
            outcomes[f"pp {result.disagg_plan.prefill.degrees.pp}/"
                     f"{result.disagg_plan.decode.degrees.pp}"] += 1
            outcomes[f"streams {report.evaluation.streams}"] += 1
        else:
            assert result.status == "INFEASIBLE"
            assert result.disagg_plan is None
            assert result.explanation is not None and result.explanation.summary.strip()

    check()
    print(f"\nplanner vs two-pool reference: {dict(outcomes)}")
    assert outcomes["reference OPTIMAL"] >= 50 and outcomes["reference INFEASIBLE"] >= 15
    assert outcomes["streams 2"] + outcomes["streams 4"] >= 5  # multi-link transfers occur


def test_a_solve_cut_short_keeps_a_valid_bound() -> None:
    seen: collections.Counter[str] = collections.Counter()

    @settings(max_examples=25, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(small_disagg_instances(), st.sampled_from([0.001, 0.005, 0.02]))
    def check(instance: Instance, limit: float) -> None:
        ref = reference_disagg_search(instance, time_limit_s=60)
        assume(ref.status == "OPTIMAL")
        result = planner.solve(instance, time_limit_s=limit)
        seen[result.status] += 1
        if result.bound is not None:
            assert result.bound <= ref.gpus
        if result.objective is not None:
            assert result.objective >= ref.gpus
            assert disagg.verify(instance, result.disagg_plan).valid
        if result.status == "OPTIMAL":
            assert result.objective == ref.gpus

    check()
    print(f"\ncut-short two-pool solves: {dict(seen)}")


# ----------------------------------------------------------------------------------------------
# The KV transfer couples the pools
# ----------------------------------------------------------------------------------------------

GQA = {"name": "gqa-small", "num_layers": 4, "hidden_size": 2048,
       "attention": {"kind": "gqa", "num_heads": 16, "num_kv_heads": 4, "head_dim": 128},
       "num_experts": 8, "top_k": 2, "expert_ffn_width": 1024, "vocab_size": 32000}


def coupled(ttft_s: float) -> Instance:
    """4,096-token prompts whose KV cache (33.6 MB) crosses a 0.1 GB/s link after the prefill:
    0.42 s over one link, 0.21 s over two."""
    return instance_from_dict({
        "name": "coupled", "model": GQA,
        "hardware": {"preset": "h100-sxm", "inter_node_gb_s": 0.1, "gpus_per_node": 8},
        "workload": {"input_len": 4096, "output_len": 64, "batch": {"min": 1, "max": 64},
                     "targets": {"min_output_tokens_per_s": 2000, "max_ttft_s": ttft_s,
                                 "max_gpus": 8}},
        "serving": "disaggregated",
        "disaggregation": {"prefill_tokens": [4096], "kv_transfer": "after_prefill"}})


def test_a_slow_transfer_buys_a_decode_pool_with_more_receivers() -> None:
    loose = planner.solve(coupled(0.5))
    assert loose.status == "OPTIMAL" and loose.objective == 2  # one GPU per pool
    assert loose.disagg_metrics.kv_transfer_streams == 1
    tight = planner.solve(coupled(0.4))  # one link's 0.42 s no longer fits
    ref = reference_disagg_search(coupled(0.4))
    assert tight.status == ref.status == "OPTIMAL"
    assert tight.objective == ref.gpus == 4
    plan = tight.disagg_plan
    prep_cm = disagg.Prepared(coupled(0.4)).cm
    assert receivers(prep_cm, disagg.Grid.of(plan.decode.degrees)) == 2
    assert tight.disagg_metrics.kv_transfer_streams == 2
    assert tight.disagg_metrics.kv_transfer_s == pytest.approx(0.2097, abs=1e-4)
    # the decode pool alone needs one GPU: the coupling, not the decode targets, decides
    assert plan.decode.degrees.gpus == 2


# ----------------------------------------------------------------------------------------------
# DeepSeek-V3 on H100: the instance of the issue
# ----------------------------------------------------------------------------------------------


def test_deepseek_v3_h100_disaggregated_beats_aggregated_proved() -> None:
    inst = load_instance(REPO / "instances/models/deepseek-v3-h100-disagg.yaml")
    assert inst.serving == "best"
    start = time.monotonic()
    result = planner.solve(inst)
    took = time.monotonic() - start
    c = result.comparison
    assert c is not None and c.chosen == "disaggregated" == result.serving
    assert c.aggregated.status == c.disaggregated.status == result.status == "OPTIMAL"
    assert result.objective == c.disaggregated.gpus == result.disagg_plan.gpus
    assert c.disaggregated.gpus < c.aggregated.gpus  # 45 < 64 at the time of writing
    assert result.bound == result.objective
    report = disagg.verify(inst, result.disagg_plan)
    assert report.valid, [str(v) for v in report.violations]
    m = result.disagg_metrics
    t = inst.workload.targets
    assert m.ttft_s <= t.max_ttft_s and m.tpot_s <= t.max_tpot_s
    assert m.requests_per_s == pytest.approx(100)
    assert m.prefill_utilization < 1 and m.decode_output_tokens_per_s >= 10000
    print(f"\nDeepSeek-V3 H100: disaggregated {c.disaggregated.gpus} GPUs ({m.prefill_gpus} + "
          f"{m.decode_gpus}) vs aggregated {c.aggregated.gpus}, {took:.1f} s")


# ----------------------------------------------------------------------------------------------
# Infeasible: which pool
# ----------------------------------------------------------------------------------------------

SMALL = {"name": "small", "model": "qwen3-30b-a3b", "hardware": "h100-sxm",
         "serving": "disaggregated",
         "workload": {"input_len": 2000, "output_len": 500, "batch": {"min": 1, "max": 256},
                      "targets": {"min_output_tokens_per_s": 20000, "max_ttft_s": 2,
                                  "max_tpot_s": 0.05}},
         "search": {"time_limit_s": 30}}


def _with_targets(**targets) -> Instance:
    return instance_from_dict({**SMALL, "workload": {**SMALL["workload"], "targets": {
        **SMALL["workload"]["targets"], **targets}}})


@pytest.mark.parametrize("targets,pool", [
    ({"max_tpot_s": 1e-4}, "decode pool: max_tpot_s"),  # below any decode step
    ({"max_ttft_s": 1e-3}, "prefill pool: max_ttft_s"),  # below any prompt's own prefill
    ({"max_gpus": 4}, "decode pool: max_gpus"),  # 4 decode + 1 prefill GPUs at least
])
def test_infeasible_names_the_pool(targets, pool) -> None:
    result = planner.solve(_with_targets(**targets))
    assert result.status == "INFEASIBLE"
    assert result.explanation is not None
    assert pool in result.explanation.conflicts, result.explanation
    assert "pool" in result.explanation.summary


def test_the_pools_together_need_more_than_max_gpus() -> None:
    result = planner.solve(_with_targets(max_gpus=4))
    assert result.explanation.nearest == {"decode_pool_gpus_needed": 4.0}
    summary = result.explanation.summary
    assert "decode pool alone needs 4 GPUs" in summary and "prefill pool at least 1" in summary
    assert planner.solve(_with_targets(max_gpus=5)).objective == 5


def test_best_answers_with_both_modes_and_a_cancelled_solve_stops() -> None:
    inst = instance_from_dict({**SMALL, "serving": "best"})
    result = planner.solve(inst)
    c = result.comparison
    assert c.aggregated.gpus is not None and c.disaggregated.gpus is not None
    chosen = min(c.aggregated.gpus, c.disaggregated.gpus)
    assert result.objective == chosen
    assert result.serving == ("aggregated" if c.aggregated.gpus <= c.disaggregated.gpus
                              else "disaggregated")
    assert result.search_space["serving"] == "best"
    with pytest.raises(Cancelled):
        planner.solve(instance_from_dict({**SMALL, "serving": "disaggregated"}),
                      should_stop=lambda: True)


def test_the_deepseek_instance_returns_within_its_limit() -> None:
    inst = load_instance(REPO / "instances/models/deepseek-v3-h100-disagg.yaml")
    for limit in (0.5, 2.0):
        start = time.monotonic()
        result = planner.solve(inst, time_limit_s=limit)
        assert time.monotonic() - start <= limit + 2.0, result.status
        if result.bound is not None:
            assert result.bound <= 45  # the proved optimum (SGLang's rules)
