"""The exhaustive reference search: hand-made instances with known answers, its enumeration, and
its fast screen against the verifier."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings

from solver.estimate import evaluate
from solver.hardware import load_hardware_preset
from solver.reference import (
    compositions,
    degree_candidates,
    redundant_slots,
    reference_search,
)
from solver.schema import (
    Degrees,
    HardwareSpec,
    Instance,
    ModelSpec,
    Plan,
    SearchOptions,
    Stage,
    Targets,
    Workload,
)
from solver.verify import structural_violations, verify
from tests.strategies import small_instances

pytestmark = pytest.mark.unit


def tiny_model(**overrides: object) -> ModelSpec:
    """4 layers (layer 0 dense), hidden 512, 8 heads / 2 KV heads, 8 experts of 256, top-2."""
    fields: dict[str, object] = {
        "name": "tiny-moe",
        "num_layers": 4,
        "dense_layers": (0,),
        "hidden_size": 512,
        "attention": {"num_heads": 8, "num_kv_heads": 2, "head_dim": 64},
        "dense_ffn_width": 1024,
        "num_experts": 8,
        "top_k": 2,
        "expert_ffn_width": 256,
        "vocab_size": 4000,
    }
    fields.update(overrides)
    return ModelSpec(**fields)


def card(**overrides: object) -> HardwareSpec:
    base = load_hardware_preset("h100-sxm")
    return HardwareSpec(**{**base.model_dump(), "name": "test-card", "reserved_gb": 0.0,
                           "gpus_per_node": 4, **overrides})


def tiny_instance(
    *, hardware: HardwareSpec | None = None, targets: Targets | None = None, **search: object
) -> Instance:
    return Instance(
        name="tiny",
        model=tiny_model(),
        hardware=hardware or card(),
        workload=Workload(input_len=512, output_len=64, batch=2, targets=targets or Targets()),
        search=SearchOptions(**{"max_pp": 2, "max_cp": 1, "max_dp": 2, **search}),
    )


def peak_gb(instance: Instance, plan: Plan) -> float:
    return evaluate(instance, plan).metrics.peak_memory_gb


# ----------------------------------------------------------------------------------------------
# Known answers
# ----------------------------------------------------------------------------------------------


def test_roomy_gpu_needs_one() -> None:
    result = reference_search(tiny_instance())
    assert result.status == "OPTIMAL"
    assert result.gpus == 1
    assert result.plan is not None and result.plan.degrees.gpus == 1
    assert verify(tiny_instance(), result.plan).valid


def test_model_that_needs_exactly_two_gpus_of_memory() -> None:
    """The only 1-GPU plan does not fit; a 2-stage pipeline does."""
    base = tiny_instance()
    one = peak_gb(base, Plan(degrees=Degrees(), batch=2))
    two = peak_gb(base, Plan(degrees=Degrees(pp=2), batch=2,
                             stages=(Stage(first_layer=0, last_layer=1),
                                     Stage(first_layer=2, last_layer=3))))
    assert two < one
    inst = tiny_instance(hardware=card(hbm_gb=(one + two) / 2))
    result = reference_search(inst)
    assert result.status == "OPTIMAL"
    assert result.gpus == 2
    assert result.plan is not None
    assert result.plan.degrees.gpus == 2
    assert verify(inst, result.plan).valid
    assert not verify(inst, Plan(degrees=Degrees(), batch=2)).valid


def test_impossible_ttft_is_infeasible() -> None:
    result = reference_search(tiny_instance(targets=Targets(max_ttft_s=1e-9)))
    assert result.status == "INFEASIBLE"
    assert result.gpus is None and result.plan is None


def test_memory_too_small_for_any_split_is_infeasible() -> None:
    result = reference_search(tiny_instance(hardware=card(hbm_gb=1e-3)))
    assert result.status == "INFEASIBLE"
    assert result.plans_checked > 0  # every partition was tried and failed on memory


def test_max_gpus_below_the_need_is_infeasible() -> None:
    base = tiny_instance()
    one = peak_gb(base, Plan(degrees=Degrees(), batch=2))
    inst = tiny_instance(hardware=card(hbm_gb=one * 0.9), targets=Targets(max_gpus=1))
    assert reference_search(inst).status == "INFEASIBLE"


def test_total_throughput_is_met_with_replicas() -> None:
    """Only the 1-GPU instance is allowed, so 2.5 times its rate takes exactly 3 replicas."""
    base = tiny_instance(max_pp=1, max_dp=1, fix={"tp": 1, "ep": 1})
    rate = evaluate(base, Plan(degrees=Degrees(), batch=2)).metrics.output_tokens_per_s
    inst = tiny_instance(max_pp=1, max_dp=1, fix={"tp": 1, "ep": 1},
                         targets=Targets(min_output_tokens_per_s=2.5 * rate))
    result = reference_search(inst)
    assert result.status == "OPTIMAL"
    assert result.gpus == 3
    assert result.plan is not None and result.plan.degrees.replicas == 3
    assert verify(inst, result.plan).valid


def test_fix_and_forbid_are_respected() -> None:
    fixed = reference_search(tiny_instance(fix={"tp": 2}))
    assert fixed.status == "OPTIMAL" and fixed.plan is not None
    assert fixed.plan.degrees.tp == 2 and fixed.gpus == 2
    forbidden = reference_search(tiny_instance(forbid={"replicas": (1,)}))
    assert forbidden.status == "OPTIMAL" and forbidden.plan is not None
    assert forbidden.plan.degrees.replicas == 2 and forbidden.gpus == 2


def test_max_plans_triggers_timeout() -> None:
    # Memory never fits, so every partition of every tuple would be examined.
    inst = tiny_instance(hardware=card(hbm_gb=1e-3))
    result = reference_search(inst, max_plans=1)
    assert result.status == "TIMEOUT"
    assert result.plans_checked == 1


def test_time_limit_triggers_timeout() -> None:
    result = reference_search(tiny_instance(hardware=card(hbm_gb=1e-3)), time_limit_s=1e-9)
    assert result.status == "TIMEOUT"


# ----------------------------------------------------------------------------------------------
# Enumeration
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layers, parts", [(1, 1), (4, 1), (4, 2), (5, 3), (6, 4), (6, 6)])
def test_compositions_are_every_contiguous_split(layers: int, parts: int) -> None:
    splits = list(compositions(layers, parts))
    assert len(splits) == len(list(itertools.combinations(range(layers - 1), parts - 1)))
    assert len(set(splits)) == len(splits)
    for stages in splits:
        assert len(stages) == parts
        assert stages[0].first_layer == 0 and stages[-1].last_layer == layers - 1
        for a, b in itertools.pairwise(stages):
            assert b.first_layer == a.last_layer + 1


@pytest.mark.parametrize(
    "experts, ep, allowed, expected",
    [
        (4, 1, 2, 0),  # one rank cannot hold a second copy of anything
        (4, 2, 2, 2),
        (4, 3, 2, 2),
        (8, 3, 2, None),  # exact count (vLLM): 3 does not divide 8 + 2
        (4, 5, 2, None),
        (2, 4, 2, 2),
        (4, 3, 0, None),
        (16, 4, 2, None),
        (3, 6, 3, 3),
    ],
)
def test_redundant_slots(experts: int, ep: int, allowed: int, expected: int | None) -> None:
    assert redundant_slots(experts, ep, allowed) == expected


def test_redundant_slots_agree_with_the_planner_and_verifier_rule() -> None:
    from solver.verify import redundant_for

    for experts in range(1, 20):
        for ep in range(1, 12):
            for allowed in range(0, 10):
                assert redundant_slots(experts, ep, allowed) == redundant_for(experts, ep, allowed)


def test_degree_candidates_equal_naive_enumeration() -> None:
    """The pre-filters (tp | heads, dp | batch, etp·ep <= grid) drop nothing the verifier's
    structural rules would accept."""
    inst = tiny_instance(max_cp=2, max_dp=2, redundant_experts=2,
                         hardware=card(gpus_per_node=4))
    m, hw, s = inst.model, inst.hardware, inst.search
    naive = set()
    for tp, cp, dp, pp in itertools.product(range(1, 9), range(1, 3), range(1, 3), range(1, 3)):
        grid = tp * cp * dp
        for etp, ep in itertools.product(range(1, grid + 1), range(1, grid + 1)):
            if grid % (etp * ep):
                continue
            d = Degrees(tp=tp, cp=cp, dp=dp, pp=pp, etp=etp, ep=ep, edp=grid // (etp * ep))
            r = redundant_slots(m.num_experts, ep, s.redundant_experts)
            if r is not None and not structural_violations(m, hw, s, d, 2, r):
                naive.add((d, 2, r))
    fast = {(c.degrees, c.batch, c.redundant) for c in degree_candidates(inst)}
    assert fast == naive
    assert fast  # and the instance is not trivially empty


# ----------------------------------------------------------------------------------------------
# The screen against the verifier
# ----------------------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(small_instances())
def test_screen_agrees_with_verifier(instance: Instance) -> None:
    """Asking the verifier about every plan (paranoid) gives the same answer as the screen."""
    fast = reference_search(instance, time_limit_s=20)
    slow = reference_search(instance, time_limit_s=60, paranoid=True)
    if "TIMEOUT" in (fast.status, slow.status):
        return
    assert (fast.status, fast.gpus) == (slow.status, slow.gpus)
    if fast.plan is not None:
        assert verify(instance, fast.plan).valid
