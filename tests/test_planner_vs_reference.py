"""The planner against the exhaustive reference search on generated small instances.

The reference (:mod:`solver.reference`) enumerates every plan of the plan space — every degree
tuple in plain ranges, every integer batch, every contiguous partition, the fewest replicas — and
keeps the lexicographic optimum (fewest GPUs, most output tokens/s per GPU, lowest TTFT) by
brute force. The planner decides by bounds, exact partition routines and CP-SAT. On every
instance: the same status; for OPTIMAL the same GPU count, the same tokens/s per GPU and the same
TTFT (exactly: both are integers and rationals of the same cost model), a plan the verifier
accepts, and every tie-break proved. Instances include redundant expert slots that some ``ep``
do not divide, fixed and forbidden degrees, token budgets that make the prefill queue bind, and
two-batch overlap.

A second property: a solve cut short by a tiny time limit may answer FEASIBLE or UNKNOWN, but its
lower bound must never exceed the true optimum.
"""

from __future__ import annotations

import collections
from fractions import Fraction

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, note, settings
from hypothesis import strategies as st

from solver import planner, timing
from solver.estimate import estimate, evaluate
from solver.reference import reference_search
from solver.schema import Instance
from solver.verify import verify
from tests.strategies import small_instances

pytestmark = pytest.mark.integration

#: Both searches stop at this many GPUs when the instance sets no max_gpus.
GPU_CAP = 16
PLANNER_TIME_LIMIT_S = 30.0


def capped(instance: Instance) -> Instance:
    """The instance with max_gpus set (the reference needs a finite space)."""
    t = instance.workload.targets
    if t.max_gpus is not None:
        return instance
    targets = t.model_copy(update={"max_gpus": GPU_CAP})
    return instance.model_copy(update={"workload": instance.workload.model_copy(
        update={"targets": targets})})


def instance_yaml(instance: Instance) -> str:
    """The instance as an instance file (explicit model and hardware), for bug reports."""
    data = instance.model_dump(mode="json", exclude_defaults=True)
    data["hardware"].pop("notes", None)
    return yaml.safe_dump(data, sort_keys=False)


def rate_per_gpu(instance: Instance, plan) -> Fraction:
    ev = evaluate(instance, plan)
    return Fraction(plan.batch * timing.NS_PER_S,
                    ev.result.tpot_ns * plan.degrees.gpus_per_instance)


def test_planner_agrees_with_reference() -> None:
    outcomes: collections.Counter[str] = collections.Counter()

    @settings(max_examples=200, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(small_instances())
    def check(raw: Instance) -> None:
        instance = capped(raw)
        note(f"instance:\n{instance_yaml(instance)}")
        ref = reference_search(instance, time_limit_s=60)
        assume(ref.status != "TIMEOUT")
        outcomes[f"reference {ref.status}"] += 1
        result = planner.solve(instance, time_limit_s=PLANNER_TIME_LIMIT_S)
        note(f"reference: {ref.status} gpus={ref.gpus} rate={ref.rate_per_gpu} "
             f"ttft={ref.ttft_ns} plan={ref.plan.degrees.short() if ref.plan else None} "
             f"batch={ref.plan.batch if ref.plan else None}")
        note(f"planner: {result.status} gpus={result.objective} bound={result.bound} "
             f"plan={result.plan.degrees.short() if result.plan else None} "
             f"batch={result.plan.batch if result.plan else None}")
        if ref.status == "OPTIMAL":
            assert result.status == "OPTIMAL"
            assert result.objective == ref.gpus == result.plan.degrees.gpus
            report = verify(instance, result.plan)
            assert report.valid, [str(v) for v in report.violations]
            assert result.metrics == estimate(instance, result.plan)
            assert rate_per_gpu(instance, result.plan) == ref.rate_per_gpu
            assert evaluate(instance, result.plan).result.ttft_ns == ref.ttft_ns
            assert set(result.tie_breaks_proved) == set(planner.TIE_BREAKS)
        else:
            assert result.status == "INFEASIBLE"
            assert result.plan is None
            assert result.explanation is not None and result.explanation.summary.strip()

    check()
    print(f"\nplanner vs reference: {dict(outcomes)}")
    assert outcomes["reference OPTIMAL"] >= 50 and outcomes["reference INFEASIBLE"] >= 30


def test_bounds_stay_valid_when_the_time_limit_cuts_a_solve_short() -> None:
    seen: collections.Counter[str] = collections.Counter()

    @settings(max_examples=60, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(small_instances(), st.sampled_from([0.001, 0.005, 0.02, 0.1]))
    def check(raw: Instance, limit: float) -> None:
        instance = capped(raw)
        ref = reference_search(instance, time_limit_s=60)
        assume(ref.status == "OPTIMAL")
        result = planner.solve(instance, time_limit_s=limit)
        seen[result.status] += 1
        if result.bound is not None:
            assert result.bound <= ref.gpus
        if result.objective is not None:
            assert result.objective >= ref.gpus
            assert verify(instance, result.plan).valid
        if result.status == "OPTIMAL":
            assert result.objective == ref.gpus

    check()
    print(f"\ncut-short solves: {dict(seen)}")
