"""service/servicer.py without a server: the request checks, the deadline budget, the solve
stream's events and the documents it answers with (mutation testing, docs/testing.md).

tests/test_service.py drives a real server; here the servicer's own logic runs in process on a
fake worker pool (it replays scripted worker events) and a fake call context (its remaining
time), so each rule can be pinned at its boundary. The documents are compared with what the
library builds for the same instance and plan (solver.contract, solver.verify,
solver.estimate), which is what the CLI prints.
"""

from __future__ import annotations

import asyncio
import math
import time

import pytest
from conftest import SEED_PATH
from ortools import __version__ as ORTOOLS_VERSION

from service import convert
from service._gen.moeplan.v1 import planner_pb2 as pb
from service.servicer import (
    DEADLINE_MARGIN_MIN_S,
    DEADLINE_MARGIN_SHARE,
    MAX_SOLVER_WORKERS,
    MIN_SOLVE_S,
    OVERRUN_FACTOR,
    OVERRUN_S,
    Limits,
    PlannerServicer,
    presets_response,
    solve_budget,
)
from service.workers import DeadlineTooShort, SolveJob
from solver import contract
from solver.estimate import evaluate
from solver.hardware import HARDWARE_PRESETS
from solver.instance import InputError, instance_from_dict, load_instance
from solver.params import active_params, total_params
from solver.planner import TIE_BREAKS
from solver.planner import solve as plan_solve
from solver.presets import PUBLISHED_TOTAL_PARAMS, load_model_preset, model_preset_names
from solver.schema import MAX_TIME_LIMIT_S, Degrees, Plan, SolveResult
from solver.verify import verify

pytestmark = pytest.mark.unit

SEED = load_instance(SEED_PATH)  # seed 004: a claimed plan, solved OPTIMAL in ~0.1 s


@pytest.fixture(scope="module")
def solved() -> SolveResult:
    result = plan_solve(SEED)
    assert result.status == "OPTIMAL" and result.plan is not None
    return result


def seed_without_claim():
    return SEED.model_copy(update={"claimed_plan": None})


def request(instance=SEED, **kwargs) -> pb.SolveRequest:
    return pb.SolveRequest(instance=convert.instance_to_proto(instance), **kwargs)


def input_error(fn, *args) -> InputError:
    with pytest.raises(InputError) as err:
        fn(*args)
    return err.value


# -- the deadline budget -------------------------------------------------------------------------


def test_constants_are_the_documented_ones() -> None:
    assert (DEADLINE_MARGIN_SHARE, DEADLINE_MARGIN_MIN_S, MIN_SOLVE_S) == (0.10, 0.3, 0.05)
    assert (OVERRUN_FACTOR, OVERRUN_S, MAX_SOLVER_WORKERS) == (2.0, 10.0, 256)
    assert Limits().max_time_limit_s == 300.0


def test_without_a_deadline_the_solve_gets_its_limit_and_an_overrun_guard() -> None:
    assert solve_budget(30.0, None, 1000.0) == (30.0, 1000.0 + 2 * 30.0 + 10.0)


@pytest.mark.parametrize(("limit", "remaining", "want_limit", "want_deadline"), [
    # 10% of 20 s = 2 s kept back; the answer is due 1 s before the deadline
    (60.0, 20.0, 18.0, 1000.0 + 20.0 - 1.0),
    (5.0, 20.0, 5.0, 1000.0 + 20.0 - 1.0),  # the requested limit is shorter
    # 10% of 1 s is below the 0.3 s floor: 0.3 s kept back, due 0.15 s before
    (60.0, 1.0, 0.7, 1000.0 + 1.0 - 0.15),
])
def test_with_a_deadline_a_margin_is_kept(limit, remaining, want_limit, want_deadline) -> None:
    got_limit, got_deadline = solve_budget(limit, remaining, 1000.0)
    assert got_limit == pytest.approx(want_limit, abs=1e-12)
    assert got_deadline == pytest.approx(want_deadline, abs=1e-9)


def test_a_deadline_too_short_for_the_shortest_solve() -> None:
    assert solve_budget(60.0, 0.36, 0.0)[0] == pytest.approx(0.06)  # 0.36 − 0.3 ≥ 0.05
    with pytest.raises(DeadlineTooShort) as err:
        solve_budget(60.0, 0.34, 0.0)  # 0.04 s left
    assert str(err.value) == (
        "the deadline leaves 0.340 s when a solver worker is free, less than the 0.30 s kept "
        "to answer plus the shortest solve (0.05 s); give the call a longer deadline")
    with pytest.raises(DeadlineTooShort, match=r"leaves 0\.000 s .* the 0\.30 s kept"):
        solve_budget(60.0, -2.0, 0.0)  # already past: never a negative figure


# -- the solve request ---------------------------------------------------------------------------


def test_time_limit_and_workers_defaults() -> None:
    servicer = PlannerServicer(pool=None)
    instance, limit, workers = servicer._solve_args(request(seed_without_claim()))
    assert instance == seed_without_claim()
    assert limit == min(SEED.search.time_limit_s, 300.0) and workers is None
    # a server limit below the instance's default caps it silently
    capped = PlannerServicer(pool=None, limits=Limits(max_time_limit_s=0.5))
    assert capped._solve_args(request())[1] == 0.5


@pytest.mark.parametrize("value", [0.25, MAX_TIME_LIMIT_S])
def test_a_requested_time_limit_within_range(value: float) -> None:
    servicer = PlannerServicer(pool=None, limits=Limits(max_time_limit_s=MAX_TIME_LIMIT_S))
    assert servicer._solve_args(request(time_limit_s=value))[1] == value


@pytest.mark.parametrize("value", [0.0, -1.0, math.inf, math.nan, MAX_TIME_LIMIT_S * 2])
def test_a_requested_time_limit_out_of_range(value: float) -> None:
    servicer = PlannerServicer(pool=None, limits=Limits(max_time_limit_s=MAX_TIME_LIMIT_S))
    err = input_error(servicer._solve_args, request(time_limit_s=value))
    assert err.field == "time_limit_s"
    assert str(err) == f"time_limit_s: must be in (0, 3600] seconds, got {value}"


def test_time_limits_above_the_server_limit_name_their_field() -> None:
    servicer = PlannerServicer(pool=None, limits=Limits(max_time_limit_s=100.0))
    err = input_error(servicer._solve_args, request(time_limit_s=150.0))
    assert (err.field, str(err)) == ("time_limit_s", "time_limit_s: 150 s is above this "
                                     "server's limit of 100 s (moeplan serve --max-time-limit)")
    assert servicer._solve_args(request(time_limit_s=100.0))[1] == 100.0
    explicit = instance_from_dict({**SEED.model_dump(mode="json", exclude_unset=True),
                                   "search": {"time_limit_s": 200}})
    err = input_error(servicer._solve_args, request(explicit))
    assert (err.field, str(err)) == ("search.time_limit_s", "search.time_limit_s: 200 s is "
                                     "above this server's limit of 100 s (moeplan serve "
                                     "--max-time-limit)")
    within = instance_from_dict({**SEED.model_dump(mode="json", exclude_unset=True),
                                 "search": {"time_limit_s": 20}})
    assert servicer._solve_args(request(within))[1] == 20
    # the request's own limit wins over the instance's
    assert servicer._solve_args(request(explicit, time_limit_s=7.0))[1] == 7.0


@pytest.mark.parametrize(("workers", "ok"), [(1, True), (256, True), (0, False), (257, False)])
def test_workers_range(workers: int, ok: bool) -> None:
    servicer = PlannerServicer(pool=None)
    if ok:
        assert servicer._solve_args(request(workers=workers))[2] == workers
    else:
        err = input_error(servicer._solve_args, request(workers=workers))
        assert (err.field, str(err)) == ("workers", f"workers: must be in [1, 256], got "
                                         f"{workers}")


# -- the solve stream ----------------------------------------------------------------------------


class FakeContext:
    def __init__(self, remaining: float | None):
        self.remaining = remaining

    def time_remaining(self) -> float | None:
        return self.remaining


class FakePool:
    """Replays worker events; records the job and hard deadline the servicer asked for."""

    def __init__(self, events):
        self.events = events
        self.jobs: list[tuple[SolveJob, float, float]] = []

    async def solve(self, job_for):
        now = time.monotonic()
        job, deadline = job_for()
        self.jobs.append((job, deadline, now))
        for event in self.events:
            yield event


def run_solve(servicer: PlannerServicer, req: pb.SolveRequest, context: FakeContext) -> list:
    async def collect():
        return [item async for item in servicer._solve(req, context)]
    return asyncio.run(collect())


def test_improvements_stream_then_the_final_answer_with_its_estimate(solved) -> None:
    first = solved.model_copy(update={"status": "FEASIBLE", "objective": 99})
    pool = FakePool([("improvement", first), ("improvement", first), ("done", solved)])
    out = run_solve(PlannerServicer(pool), request(time_limit_s=7.0, workers=3),
                    FakeContext(None))
    assert [(final, result) for final, result, _ in out] == [
        (False, first), (False, first), (True, solved)]
    assert out[0][2] is None and out[1][2] is None
    want = contract.estimate_document(SEED, evaluate(SEED, solved.plan))
    assert convert.estimate_from_proto(out[2][2]) == want
    job, deadline, now = pool.jobs[0]
    assert (job.instance, job.time_limit_s, job.workers) == (SEED, 7.0, 3)
    assert now <= deadline - (2 * 7.0 + 10.0) <= time.monotonic()


def test_the_budget_follows_the_calls_deadline(solved) -> None:
    pool = FakePool([("done", solved)])
    run_solve(PlannerServicer(pool), request(time_limit_s=60.0), FakeContext(20.0))
    job, deadline, now = pool.jobs[0]
    # 20 s left: the solver gets 18 s (a little less, time passed), the answer is due at 19 s
    assert 17.5 < job.time_limit_s <= 18.0
    assert now + 18.5 < deadline <= now + 19.0


def test_an_answer_without_a_plan_has_no_estimate(solved) -> None:
    infeasible = SolveResult(status="INFEASIBLE", solve_time_s=0.5, solver=solved.solver,
                             tie_breaks=solved.tie_breaks)
    out = run_solve(PlannerServicer(FakePool([("done", infeasible)])), request(),
                    FakeContext(None))
    assert out == [(True, infeasible, None)]


def test_out_of_time_without_a_plan_is_unknown() -> None:
    pool = FakePool([("timeout", None)])
    start = time.monotonic()
    [(final, result, estimate)] = run_solve(PlannerServicer(pool), request(),
                                            FakeContext(None))
    assert final and estimate is None
    assert result.status == "UNKNOWN" and result.plan is None
    assert result.solver == f"ortools-cpsat {ORTOOLS_VERSION}"
    assert result.tie_breaks == TIE_BREAKS and result.improving_solutions == 0
    assert 0 <= result.solve_time_s <= time.monotonic() - start


def test_out_of_time_answers_with_the_last_improving_plan(solved) -> None:
    best = solved.model_copy(update={"status": "FEASIBLE", "solve_time_s": 123.0,
                                     "improving_solutions": 0})
    pool = FakePool([("improvement", best), ("improvement", best), ("timeout", best)])
    start = time.monotonic()
    out = run_solve(PlannerServicer(pool), request(), FakeContext(None))
    final, result, estimate = out[-1]
    assert final and estimate is None  # no time is left for an estimate
    assert result.plan == best.plan and result.status == "FEASIBLE"
    assert result.improving_solutions == 2
    assert 0 <= result.solve_time_s <= time.monotonic() - start


# -- verify and estimate -------------------------------------------------------------------------


def test_the_plan_comes_from_the_request_or_the_instance() -> None:
    claimed = SEED.claimed_plan
    other = Plan(degrees=Degrees(tp=8, etp=8), batch=8)
    got = PlannerServicer._instance_and_plan(pb.VerifyRequest(
        instance=convert.instance_to_proto(SEED), plan=convert.plan_to_proto(other)))
    assert got == (SEED, other)
    assert PlannerServicer._instance_and_plan(pb.VerifyRequest(
        instance=convert.instance_to_proto(SEED))) == (SEED, claimed)
    err = input_error(PlannerServicer._instance_and_plan, pb.EstimateRequest(
        instance=convert.instance_to_proto(seed_without_claim())))
    assert (err.field, str(err)) == ("plan", "plan: required, the instance has no claimed_plan")


def test_verify_answers_the_libraries_report() -> None:
    resp = PlannerServicer._verify(pb.VerifyRequest(instance=convert.instance_to_proto(SEED)))
    report = verify(SEED)
    estimate = contract.estimate_document(SEED, report.evaluation)
    assert convert.verify_from_proto(resp) == contract.verify_out(report, estimate)
    assert not report.valid  # the seed's claimed plan is wrong


def test_estimate_answers_the_libraries_estimate() -> None:
    plan = Plan(degrees=Degrees(tp=8, etp=8), batch=8)
    resp = PlannerServicer._estimate(pb.EstimateRequest(
        instance=convert.instance_to_proto(SEED), plan=convert.plan_to_proto(plan)))
    want = contract.estimate_document(SEED, evaluate(SEED, plan))
    assert convert.estimate_from_proto(resp.estimate) == want


# -- presets -------------------------------------------------------------------------------------


def test_presets_list_every_model_and_gpu_with_counts() -> None:
    resp = presets_response()
    assert [m.name for m in resp.models] == list(model_preset_names())
    for entry in resp.models:
        spec = load_model_preset(entry.name)
        assert (entry.total_params, entry.active_params) == (total_params(spec),
                                                             active_params(spec))
        assert entry.HasField("published_total_params") == (entry.name in PUBLISHED_TOTAL_PARAMS)
        if entry.name in PUBLISHED_TOTAL_PARAMS:
            assert entry.published_total_params == PUBLISHED_TOTAL_PARAMS[entry.name]
        assert entry.spec == convert.model_spec_to_proto(spec)
    assert any(e.name in PUBLISHED_TOTAL_PARAMS for e in resp.models)
    assert [h.name for h in resp.hardware] == list(HARDWARE_PRESETS)
    for entry in resp.hardware:
        assert entry.spec == convert.hardware_spec_to_proto(HARDWARE_PRESETS[entry.name])


def test_a_second_verify_plan_is_checked_not_the_claimed_one(solved) -> None:
    """A plan in the request is the one verified (the seed's claimed plan is wrong, the solved
    plan is right)."""
    resp = PlannerServicer._verify(pb.VerifyRequest(
        instance=convert.instance_to_proto(SEED), plan=convert.plan_to_proto(solved.plan)))
    report = verify(SEED, solved.plan)
    assert report.valid and resp.valid
    estimate = contract.estimate_document(SEED, report.evaluation)
    assert convert.verify_from_proto(resp) == contract.verify_out(report, estimate)


# -- what the operator reads in the server log ---------------------------------------------------


SOLVE_LOG = (r"solve seed-004-moe-16l-tp8-ep8-pp2: status (\w+), (\w+) GPUs \(bound (\w+)\), "
             r"(\d+\.\d{3}) s solving, (\d+\.\d{3}) s queued")


def service_log(caplog) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "moeplan.service"]


def test_each_answer_is_logged_with_its_status_gpus_and_times(solved, caplog) -> None:
    import logging
    import re

    caplog.set_level(logging.INFO, logger="moeplan.service")
    run_solve(PlannerServicer(FakePool([("done", solved)])), request(), FakeContext(None))
    [(level, message)] = service_log(caplog)
    match = re.fullmatch(SOLVE_LOG, message)
    assert level == logging.INFO and match, message
    assert match.groups()[:3] == ("OPTIMAL", str(solved.objective), str(solved.bound))
    solving, queued = float(match[4]), float(match[5])
    assert 0 <= solving < 60 and 0 <= queued < 60  # durations, not clock readings


def test_a_timeout_is_logged_as_a_warning_with_the_status_it_answers(solved, caplog) -> None:
    import logging
    import re

    caplog.set_level(logging.INFO, logger="moeplan.service")
    best = solved.model_copy(update={"status": "FEASIBLE"})
    run_solve(PlannerServicer(FakePool([("improvement", best), ("timeout", best)])), request(),
              FakeContext(None))
    (wlevel, warning), (ilevel, info) = service_log(caplog)
    assert (wlevel, warning) == (logging.WARNING, "solve passed its deadline in the worker; "
                                 "answered with FEASIBLE")
    assert ilevel == logging.INFO and re.fullmatch(SOLVE_LOG, info)[1] == "FEASIBLE"


# -- ListPresets ---------------------------------------------------------------------------------


def test_list_presets_answers_the_presets_and_keeps_them() -> None:
    servicer = PlannerServicer(pool=None)

    async def twice():
        first = await servicer.ListPresets(pb.ListPresetsRequest(), FakeContext(None))
        return first, await servicer.ListPresets(pb.ListPresetsRequest(), FakeContext(None))

    first, second = asyncio.run(twice())
    assert first == presets_response() and second is first  # built once, then cached


# -- Export --------------------------------------------------------------------------------------


def export_request(plan=None, **kwargs) -> pb.ExportRequest:
    req = pb.ExportRequest(instance=convert.instance_to_proto(SEED), **kwargs)
    if plan is not None:
        req.plan.CopyFrom(convert.plan_to_proto(plan))
    return req


@pytest.mark.parametrize(("engine", "name"), [
    (pb.ENGINE_NAME_UNSPECIFIED, "vllm"),  # unspecified: vLLM
    (pb.ENGINE_NAME_VLLM, "vllm"),
    (pb.ENGINE_NAME_SGLANG, "sglang"),
])
def test_export_answers_the_libraries_launch_commands(solved, engine, name) -> None:
    from solver.export import export_plan

    resp = PlannerServicer._export(export_request(solved.plan, engine=engine))
    assert convert.export_from_proto(resp) == export_plan(SEED, solved.plan, name)


def test_export_loads_the_requested_model_path(solved) -> None:
    from solver.export import export_plan

    resp = PlannerServicer._export(export_request(solved.plan, engine=pb.ENGINE_NAME_VLLM,
                                                  model_path="/models/seed"))
    doc = convert.export_from_proto(resp)
    assert doc == export_plan(SEED, solved.plan, "vllm", model_path="/models/seed")
    assert "/models/seed" in doc.launches[0].command
    default = convert.export_from_proto(PlannerServicer._export(export_request(solved.plan)))
    assert "/models/seed" not in default.launches[0].command
    assert default.launches[0].command != doc.launches[0].command


def test_export_without_a_plan_names_the_field() -> None:
    err = input_error(PlannerServicer._export, export_request())
    assert (err.field, str(err)) == ("plan", "plan: required, the plan to export")


# -- two pools (disaggregated) -------------------------------------------------------------------

#: tests/test_disagg_interfaces.py's instance and a two-pool plan for it (costed, not solved).
DISAGG = instance_from_dict({
    "name": "qwen3-30b-disagg", "model": "qwen3-30b-a3b", "hardware": "h100-sxm",
    "serving": "disaggregated",
    "workload": {"input_len": 2000, "output_len": 500, "batch": {"min": 1, "max": 256},
                 "targets": {"min_output_tokens_per_s": 20000, "max_ttft_s": 2,
                             "max_tpot_s": 0.05}}})
TWO_POOLS = {"prefill": {"degrees": {}, "tokens_per_step": 8192},
             "decode": {"degrees": {"tp": 4, "ep": 4}, "batch": 8}}


def two_pools():
    from solver.schema import DisaggPlan

    return DisaggPlan.model_validate(TWO_POOLS)


def test_verify_and_estimate_a_two_pool_plan() -> None:
    from service import disagg as service_disagg

    plan = two_pools()
    msg = service_disagg.disagg_plan_to_proto(plan)
    proto = convert.instance_to_proto(DISAGG)
    verified = PlannerServicer._verify(pb.VerifyRequest(instance=proto, disagg_plan=msg))
    assert verified == service_disagg.verify_response(DISAGG, plan)
    assert not verified.valid and verified.HasField("disagg_estimate")
    estimated = PlannerServicer._estimate(pb.EstimateRequest(instance=proto, disagg_plan=msg))
    assert estimated == pb.EstimateResponse(
        disagg_estimate=service_disagg.estimate_message(DISAGG, plan))
    assert estimated.HasField("disagg_estimate") and not estimated.HasField("estimate")


def test_a_solved_two_pool_plan_is_answered_with_its_estimate() -> None:
    from service import disagg as service_disagg

    plan = two_pools()
    result = SolveResult(status="FEASIBLE", serving="disaggregated", disagg_plan=plan,
                         objective=plan.gpus, solve_time_s=1.0, solver="ortools-cpsat")
    want = service_disagg.estimate_message(DISAGG, plan)
    out = run_solve(PlannerServicer(FakePool([("done", result)])), request(DISAGG),
                    FakeContext(None))
    assert out == [(True, result, want)]
    # past the deadline there is no time for an estimate, two pools or one
    late = run_solve(PlannerServicer(FakePool([("timeout", result)])), request(DISAGG),
                     FakeContext(None))
    assert late[0][2] is None


@pytest.mark.parametrize("stream", [False, True])
def test_solve_responses_carry_the_estimate_in_its_field(solved, stream) -> None:
    """One pool: ``estimate``; two pools: ``disagg_estimate`` (Solve and SolveStream)."""
    plan = two_pools()
    pooled = SolveResult(status="FEASIBLE", serving="disaggregated", disagg_plan=plan,
                         objective=plan.gpus, solve_time_s=1.0, solver="ortools-cpsat")

    async def answer(servicer, req):
        if stream:
            return [r async for r in servicer.SolveStream(req, FakeContext(None))][-1]
        return await servicer.Solve(req, FakeContext(None))

    one = asyncio.run(answer(PlannerServicer(FakePool([("done", solved)])), request()))
    assert one.HasField("estimate") and not one.HasField("disagg_estimate")
    two = asyncio.run(answer(PlannerServicer(FakePool([("done", pooled)])), request(DISAGG)))
    assert two.HasField("disagg_estimate") and not two.HasField("estimate")


@pytest.fixture(scope="module")
def two_pool_plan():
    """DISAGG's optimum (one prefill and four decode GPUs, solved in about a second)."""
    from solver import planner

    result = planner.solve(DISAGG)
    assert result.status == "OPTIMAL" and result.disagg_plan is not None
    return result.disagg_plan


def disagg_export_request(two_pools, **kwargs) -> pb.ExportRequest:
    from service import disagg as service_disagg

    return pb.ExportRequest(instance=convert.instance_to_proto(DISAGG),
                            disagg_plan=service_disagg.disagg_plan_to_proto(two_pools), **kwargs)


@pytest.mark.parametrize(("kwargs", "engine", "options"), [
    ({}, "vllm", {}),
    ({"engine": pb.ENGINE_NAME_SGLANG, "kv_backend": "nixl", "model_path": "/models/q"},
     "sglang", {"kv_backend": "nixl", "model_path": "/models/q"}),
])
def test_export_a_two_pool_plan(two_pool_plan, kwargs, engine, options) -> None:
    from service import disagg as service_disagg
    from solver.export import export_plan

    resp = PlannerServicer._export(disagg_export_request(two_pool_plan, **kwargs))
    doc = export_plan(DISAGG, two_pool_plan, engine, **options)
    assert resp == pb.ExportResponse(disagg_export=service_disagg.disagg_export_to_proto(doc))


def test_export_takes_one_plan_or_the_other(two_pool_plan, solved) -> None:
    req = disagg_export_request(two_pool_plan, plan=convert.plan_to_proto(solved.plan))
    err = input_error(PlannerServicer._export, req)
    assert (err.field, str(err)) == ("disagg_plan", "disagg_plan: give plan or disagg_plan, "
                                     "not both")
