"""The exhaustive reference search: hand-made instances with known answers, its enumeration, and
its fast screen against the verifier."""

from __future__ import annotations

import itertools

import pytest

from solver.estimate import Prepared, evaluate
from solver.hardware import load_hardware_preset
from solver.reference import compositions, grids, reference_search
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
from solver.space import PlanSpace
from solver.verify import verify

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
        expert_load={"kind": "uniform"},
        search=SearchOptions(**{"max_pp": 2, "max_cp": 1, "max_dp": 2, **search}),
    )


def peak_gb(instance: Instance, plan: Plan) -> float:
    return evaluate(instance, plan).metrics.peak_memory_gb


def hbm_for_budget(instance: Instance, budget_gb: float) -> float:
    """HBM whose engine budget (the memory-utilisation fraction of it) is ``budget_gb``."""
    return budget_gb / instance.engine.memory_fraction


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
    inst = tiny_instance(hardware=card(hbm_gb=hbm_for_budget(base, (one + two) / 2)))
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
    inst = tiny_instance(hardware=card(hbm_gb=hbm_for_budget(base, one * 0.9)),
                         targets=Targets(max_gpus=1))
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


def test_time_limit_triggers_timeout() -> None:
    result = reference_search(tiny_instance(hardware=card(hbm_gb=1e-3)), time_limit_s=1e-9)
    assert result.status == "TIMEOUT"


# ----------------------------------------------------------------------------------------------
# Enumeration
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("layers", "parts"), [(1, 1), (4, 1), (4, 2), (5, 3), (6, 6)])
def test_compositions_are_every_contiguous_split(layers: int, parts: int) -> None:
    got = list(compositions(layers, parts))
    assert len(got) == len(set(got)) == len(list(itertools.combinations(range(1, layers),
                                                                        parts - 1)))
    for stages in got:
        assert stages[0].first_layer == 0 and stages[-1].last_layer == layers - 1
        for a, b in itertools.pairwise(stages):
            assert b.first_layer == a.last_layer + 1


def test_grids_are_every_admitted_shape_up_to_the_cap() -> None:
    """The reference's plain-range enumeration equals the plan space's own enumeration."""
    inst = tiny_instance(max_pp=3, max_cp=2, max_dp=2)
    prep = Prepared(inst)
    space = PlanSpace(inst)
    mine = set(grids(prep, 8))
    theirs = {g for n in range(1, 9) for g in space.grids(n)}
    assert mine == theirs and mine


def test_every_integer_batch_of_a_range_is_a_candidate() -> None:
    """A batch range is searched over every integer, not a list of steps: the optimum here sits
    at an odd batch."""
    base = tiny_instance(max_pp=1, max_dp=1, fix={"tp": 1, "ep": 1})
    data = base.model_dump()
    data["workload"]["batch"] = {"min": 1, "max": 7}
    inst = Instance.model_validate(data)
    result = reference_search(inst)
    assert result.status == "OPTIMAL" and result.plan is not None
    assert result.plan.batch == 7  # the largest batch has the most tokens/s per GPU


def test_reference_optimum_is_verified() -> None:
    inst = tiny_instance(targets=Targets(max_tpot_s=0.01))
    result = reference_search(inst)
    assert result.status == "OPTIMAL"
    assert verify(inst, result.plan).valid
