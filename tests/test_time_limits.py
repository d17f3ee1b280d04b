"""Time limits hold (issue 10): ``solve(..., time_limit_s=T)`` returns within ``T + 2`` s on every
instance under instances/ and on DeepSeek-V3 with 64 and 96 redundant slots, whatever phase the
deadline lands in; and an answer cut short is honest (its bound never above what a longer solve
proves).

The 2 s is the issue's allowance for the phases that may run past the deadline by design: the
explanation of an INFEASIBLE answer (at most 0.5 s past it), the lower-bound re-check of
placements (0.5 s) and the watchdog's grace on a CP-SAT call (0.25 s). Whole-process times with
start-up are measured by ``benchmarks/solve_times.py`` (docs/benchmarks.md), not here.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from solver.instance import load_instance
from solver.planner import solve
from solver.schema import Instance

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
INSTANCES = sorted((REPO / "instances").rglob("*.yaml"))
ALLOWANCE_S = 2.0


def deepseek_redundant(redundant: int, rate: float) -> Instance:
    """deepseek-v3-h200-powerlaw with more redundant slots, up to 1,024 GPUs."""
    inst = load_instance(REPO / "instances/models/deepseek-v3-h200-powerlaw.yaml")
    targets = inst.workload.targets.model_copy(
        update={"max_gpus": 1024, "min_output_tokens_per_s": rate})
    return inst.model_copy(update={
        "search": inst.search.model_copy(update={"redundant_experts": redundant}),
        "workload": inst.workload.model_copy(update={"targets": targets})})


def timed(inst: Instance, limit: float):
    start = time.monotonic()
    result = solve(inst, time_limit_s=limit)
    return result, time.monotonic() - start


def test_every_instance_returns_within_its_limit() -> None:
    assert len(INSTANCES) >= 60
    late = []
    for path in INSTANCES:
        result, took = timed(load_instance(path), 0.3)
        if took > 0.3 + ALLOWANCE_S:
            late.append(f"{path.relative_to(REPO)}: {took:.2f} s ({result.status})")
    assert not late, late


@pytest.mark.parametrize("redundant", [64, 96])
@pytest.mark.parametrize("limit", [1.0, 3.0])
def test_deepseek_v3_with_many_redundant_slots(redundant: int, limit: float) -> None:
    """The case that once never returned with --time-limit 10 (an equality with ~1e9
    coefficients in the lowest-TTFT tie-break, unwatched)."""
    result, took = timed(deepseek_redundant(redundant, 200_000), limit)
    assert took <= limit + ALLOWANCE_S, (result.status, took)
    if result.status in ("FEASIBLE", "UNKNOWN"):
        assert result.advice  # says what to change


def test_a_cut_short_bound_is_below_the_proved_optimum() -> None:
    inst = deepseek_redundant(64, 200_000)
    full, _ = timed(inst, 120.0)
    assert full.status == "OPTIMAL"
    for limit in (0.5, 1.5, 3.0):
        cut, _ = timed(inst, limit)
        if cut.bound is not None:
            assert cut.bound <= full.objective, (limit, cut.status, cut.bound)
        if cut.objective is not None:
            assert cut.objective >= full.objective
