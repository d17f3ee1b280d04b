"""The CP-SAT planner against the exhaustive reference search on generated small instances.

For every instance: when the reference proves a fewest-GPU count, the planner must prove the same
count with a plan the verifier accepts and report that plan's cost-model metrics; when the
reference finds no valid plan, the planner must say INFEASIBLE and explain why. Both use the same
placement sub-model with the same arguments, so they see the same hottest-rank loads.
"""

from __future__ import annotations

import collections

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, note, settings

from solver import planner
from solver.estimate import estimate
from solver.reference import reference_search
from solver.schema import Instance
from solver.verify import verify
from tests.strategies import small_instances

pytestmark = pytest.mark.integration

PLANNER_TIME_LIMIT_S = 10.0
PLANNER_WORKERS = 2
#: The placement arguments the planner uses with that time limit: the reference must use the same
#: ones, because placement results are cached per arguments.
PLACEMENT_TIME_LIMIT_S = min(planner.PLACEMENT_TIME_CAP_S,
                             planner.PLACEMENT_TIME_SHARE * PLANNER_TIME_LIMIT_S)
#: The reference gets this long per instance; typical instances need milliseconds.
REFERENCE_TIME_LIMIT_S = 30.0
#: Reference timeouts (instances skipped) allowed out of the 200 examples.
MAX_REFERENCE_TIMEOUTS = 4


def instance_yaml(instance: Instance) -> str:
    """The instance as an instance file (explicit model and hardware), for bug reports."""
    data = instance.model_dump(mode="json", exclude_defaults=True)
    data["hardware"].pop("notes", None)
    return yaml.safe_dump(data, sort_keys=False)


def test_planner_agrees_with_reference() -> None:
    outcomes: collections.Counter[str] = collections.Counter()

    @settings(max_examples=200, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow])
    @given(small_instances())
    def check(instance: Instance) -> None:
        note(f"instance:\n{instance_yaml(instance)}")
        ref = reference_search(instance, time_limit_s=REFERENCE_TIME_LIMIT_S,
                               placement_time_limit_s=PLACEMENT_TIME_LIMIT_S,
                               placement_workers=PLANNER_WORKERS)
        outcomes[f"reference {ref.status}"] += 1
        if ref.status == "TIMEOUT":
            assume(False)
        note(f"reference: {ref.status} gpus={ref.gpus} "
             f"plan={ref.plan.degrees.short() if ref.plan else None}")
        result = planner.solve(instance, time_limit_s=PLANNER_TIME_LIMIT_S,
                               workers=PLANNER_WORKERS)
        note(f"planner: {result.status} objective={result.objective} bound={result.bound} "
             f"plan={result.plan.degrees.short() if result.plan else None}")

        if ref.status == "OPTIMAL":
            assert ref.plan is not None and verify(instance, ref.plan).valid
            assert result.status == "OPTIMAL"
            assert result.objective == ref.gpus
            assert result.plan is not None
            report = verify(instance, result.plan)
            assert report.valid, [str(v) for v in report.violations]
            assert result.plan.degrees.gpus == result.objective
            assert result.metrics == estimate(instance, result.plan)
        else:
            assert result.status == "INFEASIBLE"
            assert result.plan is None
            assert result.explanation is not None and result.explanation.summary.strip()

    check()
    print(f"\nplanner vs reference: {dict(outcomes)}")
    assert outcomes["reference TIMEOUT"] <= MAX_REFERENCE_TIMEOUTS, dict(outcomes)
