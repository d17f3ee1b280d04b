"""A plan moeplan calls feasible is one the engine can launch (search.engine_rules, default on).

For each engine, the planner's answer on generated small instances exports without an
ExportError, aggregated and two-pool; a two-pool pair that breaks a rule on the pair of pools
(not searched yet: docs/solver.md, "What the engines run") is announced in the answer's advice
and refused by the export with the same field. The opt-out searches the engine-agnostic space,
which holds plans the export refuses; the answer echoes which space it searched.
"""

from __future__ import annotations

import collections

import pytest
from hypothesis import HealthCheck, given, note, settings

from solver import planner, rules
from solver.export import ENGINES, ExportError, export_plan
from solver.planner.disagg import solve_disaggregated
from solver.schema import Degrees, Grid, Instance, Plan
from solver.space import PlanSpace
from solver.verify import verify
from tests.disagg_strategies import small_disagg_instances
from tests.strategies import small_instances

pytestmark = pytest.mark.integration


def grid(d: Degrees) -> Grid:
    return Grid(d.tp, d.cp, d.dp, d.ep, d.etp, d.edp, d.pp)


def under(instance: Instance, engine: str, engine_rules: bool = True) -> Instance:
    t = instance.workload.targets
    return instance.model_copy(update={
        "engine": instance.engine.model_copy(update={"name": engine}),
        "search": instance.search.model_copy(update={"engine_rules": engine_rules}),
        "workload": instance.workload.model_copy(update={"targets": t.model_copy(
            update={"max_gpus": t.max_gpus or 16})})})


@pytest.mark.parametrize("engine", ENGINES)
def test_the_planners_aggregated_plan_exports(engine: str) -> None:
    seen: collections.Counter[str] = collections.Counter()

    @settings(max_examples=12, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(small_instances())
    def check(raw: Instance) -> None:
        instance = under(raw, engine)
        result = planner.solve(instance, time_limit_s=20)
        seen[result.status] += 1
        assert result.search_space["runnable on"].startswith(rules.ENGINE_VERSIONS[engine])
        if result.plan is None:
            return
        note(f"plan {result.plan.degrees.short()} batch {result.plan.batch}")
        d = result.plan.degrees
        assert (d.cp, d.edp) == (1, 1)
        export_plan(instance, result.plan, engine)  # no ExportError

    check()
    assert seen["OPTIMAL"] + seen["FEASIBLE"] >= 3, seen


@pytest.mark.parametrize("engine", ENGINES)
def test_the_planners_two_pool_plan_exports(engine: str) -> None:
    seen: collections.Counter[str] = collections.Counter()

    @settings(max_examples=6, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(small_disagg_instances())
    def check(raw: Instance) -> None:
        instance = under(raw, engine)
        result = solve_disaggregated(instance, time_limit_s=20)
        seen[result.status] += 1
        if result.disagg_plan is None:
            return
        p = result.disagg_plan
        for d in (p.prefill.degrees, p.decode.degrees):
            assert (d.cp, d.edp) == (1, 1)
        broken = rules.pair_violations(engine, grid(p.prefill.degrees), grid(p.decode.degrees))
        if broken:  # the pair rules are not searched yet: said, and refused by the export
            seen["pair rule"] += 1
            assert "cannot connect these pools" in result.advice
            with pytest.raises(ExportError) as err:
                export_plan(instance, p, engine)
            assert err.value.field == broken[0].field
        else:
            export_plan(instance, p, engine)  # no ExportError

    check()
    assert seen["OPTIMAL"] + seen["FEASIBLE"] >= 2, seen


@pytest.mark.unit
def test_verify_names_the_engine_rule_and_the_opt_out_accepts() -> None:
    from solver.instance import load_instance

    inst = load_instance("instances/models/mixtral-8x7b-h100.yaml")
    plan = Plan.model_validate({"degrees": {"tp": 4, "ep": 2, "etp": 2}, "batch": 200})
    report = verify(inst, plan)
    assert [(v.rule, v.field) for v in report.violations] == [("engine", "degrees.ep")]
    with pytest.raises(ExportError) as err:
        export_plan(inst, plan, "vllm")
    assert err.value.field == "degrees.ep"
    off = inst.model_copy(update={"search": inst.search.model_copy(
        update={"engine_rules": False})})
    assert verify(off, plan).valid
    with pytest.raises(ExportError):  # the export judges by the engine's rules regardless
        export_plan(off, plan, "vllm")
    assert "runnable on" in PlanSpace(inst).restrictions()
    assert PlanSpace(off).restrictions()["runnable on"].startswith("any engine shape")


@pytest.mark.unit
@pytest.mark.parametrize("engine", ENGINES)
def test_the_space_holds_no_cp_or_edp_under_the_engine_rules(engine: str) -> None:
    from solver.instance import load_instance

    inst = under(load_instance("instances/models/mixtral-8x7b-h100.yaml"), engine)
    space = PlanSpace(inst)
    grids = [g for n in (4, 8, 16) for g in space.grids(n)]
    assert grids and all(g.cp == 1 and g.edp == 1 for g in grids)
    agnostic = PlanSpace(under(inst, engine, engine_rules=False))
    assert any(g.cp > 1 or g.edp > 1 for n in (4, 8, 16) for g in agnostic.grids(n))


@pytest.mark.unit
@pytest.mark.parametrize("engine", ENGINES)
def test_no_grid_past_the_stage_bound_and_the_size_search_stops_there(engine: str) -> None:
    """Under the engine rules a stage is its expert grid (edp = 1): etp·ep at most slots · a
    node. Every size up to twice that bound (pp = 1) is enumerated in full: grids exist only
    below it, the largest reaches it or under, and next_size_above gives up past it instead of
    trying every size to MAX_GPUS (which made an INFEASIBLE two-pool explanation take minutes)."""
    from solver.instance import load_instance

    inst = under(load_instance("instances/models/mixtral-8x7b-h100.yaml"), engine)
    inst = inst.model_copy(update={"search": inst.search.model_copy(update={"max_pp": 1})})
    space = PlanSpace(inst)
    bound = space.stage_max
    assert bound == (inst.model.num_experts + inst.search.redundant_experts) * \
        inst.hardware.gpus_per_node
    sizes = [n for n in range(1, 2 * bound + 1) if space.grids(n)]
    assert sizes and max(sizes) <= bound
    assert space.next_size_above(max(sizes)) is None
    assert PlanSpace(under(inst, engine, engine_rules=False)).stage_max is None


@pytest.mark.unit
def test_the_opt_out_crosses_the_wire() -> None:
    from service.convert import instance_from_proto, instance_to_proto
    from solver.instance import load_instance

    inst = load_instance("instances/models/mixtral-8x7b-h100.yaml")
    for on in (True, False):
        x = inst.model_copy(update={"search": inst.search.model_copy(
            update={"engine_rules": on})})
        assert instance_from_proto(instance_to_proto(x)).search.engine_rules is on
