"""The ``moeplan.v1.Planner`` servicer: protobuf in, the solver library, protobuf out.

Thin on purpose. Requests are converted to pydantic at the edge and validated by
:func:`solver.instance.instance_from_dict` (so errors read exactly as the CLI's); solves run in
the worker pool (:mod:`service.workers`); Verify, Estimate and ListPresets are quick cost-model
evaluations and run on a thread so the event loop stays responsive. Exceptions become status
codes in one place, :func:`service.errors.rpc_errors`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
from ortools import __version__ as ORTOOLS_VERSION

from service import convert, disagg
from service._gen.moeplan.v1 import planner_pb2 as pb
from service._gen.moeplan.v1 import planner_pb2_grpc as pb_grpc
from service.errors import rpc_errors
from service.workers import DeadlineTooShort, SolveJob, WorkerPool
from solver import contract
from solver.instance import InputError
from solver.planner import TIE_BREAKS
from solver.schema import MAX_TIME_LIMIT_S, DisaggPlan, Instance, Plan, SolveResult

log = logging.getLogger("moeplan.service")

#: The share of a call's remaining time kept back from the solver (and its floor, seconds), so
#: that the answer, its conversion and the trip back fit before the deadline.
DEADLINE_MARGIN_SHARE = 0.10
DEADLINE_MARGIN_MIN_S = 0.3
#: Shortest time limit handed to the planner: a deadline leaving less after the margin is
#: DEADLINE_EXCEEDED at once.
MIN_SOLVE_S = 0.05
#: Without a deadline, a solve still running at ``OVERRUN_FACTOR`` × its time limit +
#: ``OVERRUN_S`` is stopped and answered with its best plan (the planner's explanation and
#: lower-bound phases may run past the time limit).
OVERRUN_FACTOR = 2.0
OVERRUN_S = 10.0
#: Largest CP-SAT ``workers`` a request may ask for (the schema's own limit).
MAX_SOLVER_WORKERS = 256


@dataclass(frozen=True)
class Limits:
    """Per-request limits of the server."""

    #: Largest solve time limit a request may ask for, seconds (``--max-time-limit``).
    max_time_limit_s: float = 300.0


def solve_budget(time_limit_s: float, remaining_s: float | None, now: float,
                 ) -> tuple[float, float]:
    """The planner's time limit and the hard deadline (``time.monotonic()``) of one solve.

    With a deadline ``remaining_s`` away, the solver gets what is left minus a margin (10%, at
    least 0.3 s) and the answer is due half a margin before the deadline; when that leaves the
    solver less than :data:`MIN_SOLVE_S`, no solve starts (:class:`DeadlineTooShort`, answered
    DEADLINE_EXCEEDED). Without a deadline: the requested limit, with an overrun guard."""
    if remaining_s is None:
        return time_limit_s, now + OVERRUN_FACTOR * time_limit_s + OVERRUN_S
    margin = max(DEADLINE_MARGIN_SHARE * remaining_s, DEADLINE_MARGIN_MIN_S)
    if remaining_s - margin < MIN_SOLVE_S:
        raise DeadlineTooShort(
            f"the deadline leaves {max(remaining_s, 0.0):.3f} s when a solver worker is free, "
            f"less than the {margin:.2f} s kept to answer plus the shortest solve "
            f"({MIN_SOLVE_S:g} s); give the call a longer deadline")
    return min(time_limit_s, remaining_s - margin), now + remaining_s - margin / 2


class PlannerServicer(pb_grpc.PlannerServicer):
    """Implements ``moeplan.v1.Planner`` on a :class:`WorkerPool`."""

    def __init__(self, pool: WorkerPool, limits: Limits | None = None):
        self.pool = pool
        self.limits = limits or Limits()
        self._presets: pb.ListPresetsResponse | None = None

    # -- Solve / SolveStream --

    def _solve_args(self, request: pb.SolveRequest) -> tuple[Instance, float, int | None]:
        """Validate the request: the instance, the time limit (capped) and the workers."""
        convert.check_request(request)
        instance = convert.instance_from_proto(request.instance)
        cap = self.limits.max_time_limit_s
        requested, field = None, ""
        if request.HasField("time_limit_s"):
            requested, field = request.time_limit_s, "time_limit_s"
            if not (math.isfinite(requested) and 0 < requested <= MAX_TIME_LIMIT_S):
                raise InputError(f"{field}: must be in (0, {MAX_TIME_LIMIT_S:g}] seconds, got "
                                 f"{requested}", field)
        elif "time_limit_s" in instance.search.model_fields_set:
            requested, field = instance.search.time_limit_s, "search.time_limit_s"
        if requested is not None and requested > cap:
            raise InputError(f"{field}: {requested:g} s is above this server's limit of "
                             f"{cap:g} s (moeplan serve --max-time-limit)", field)
        time_limit = requested if requested is not None else min(instance.search.time_limit_s,
                                                                 cap)
        workers = None
        if request.HasField("workers"):
            workers = request.workers
            if not 0 < workers <= MAX_SOLVER_WORKERS:
                raise InputError(f"workers: must be in [1, {MAX_SOLVER_WORKERS}], got {workers}",
                                 "workers")
        return instance, time_limit, workers

    async def _solve(self, request: pb.SolveRequest, context: grpc.aio.ServicerContext,
                     ) -> AsyncIterator[tuple[bool, SolveResult, pb.Estimate | None]]:
        """Yield ``(final, result, estimate)``: each improving plan (without its estimate),
        then the final answer with the estimate of its plan (None without one)."""
        start = time.monotonic()
        remaining = context.time_remaining()
        deadline = None if remaining is None else start + remaining
        instance, time_limit, workers = await asyncio.to_thread(self._solve_args, request)
        started = start

        def job_for() -> tuple[SolveJob, float]:
            nonlocal started
            started = time.monotonic()
            left = None if deadline is None else deadline - started
            limit, hard_deadline = solve_budget(time_limit, left, started)
            return SolveJob(instance, limit, workers), hard_deadline

        improvements = 0
        async with contextlib.aclosing(self.pool.solve(job_for)) as events:
            async for kind, result in events:
                if kind == "improvement":
                    improvements += 1
                    yield False, result, None
                    continue
                if kind == "timeout":
                    result = _out_of_time(result, time.monotonic() - started, improvements)
                    log.warning("solve passed its deadline in the worker; answered with %s",
                                result.status)
                log.info("solve %s: status %s, %s GPUs (bound %s), %.3f s solving, %.3f s "
                         "queued", instance.name, result.status, result.objective, result.bound,
                         time.monotonic() - started, started - start)
                estimate = None  # not after a timeout: the deadline leaves no time for it
                if result.plan is not None and kind == "done":
                    estimate = await asyncio.to_thread(_plan_estimate, instance, result.plan)
                elif result.disagg_plan is not None and kind == "done":  # two pools
                    estimate = await asyncio.to_thread(disagg.estimate_message, instance,
                                                       result.disagg_plan)
                yield True, result, estimate
                return

    @rpc_errors
    async def Solve(self, request: pb.SolveRequest, context: grpc.aio.ServicerContext,
                    ) -> pb.SolveResponse:
        async with contextlib.aclosing(self._solve(request, context)) as results:
            async for final, result, estimate in results:
                if final:
                    return pb.SolveResponse(result=convert.solve_result_to_proto(result),
                                            **_estimate_field(estimate))
        raise RuntimeError("the solve ended without a final result")

    @rpc_errors
    async def SolveStream(self, request: pb.SolveRequest, context: grpc.aio.ServicerContext,
                          ) -> AsyncIterator[pb.SolveStreamResponse]:
        async with contextlib.aclosing(self._solve(request, context)) as results:
            async for final, result, estimate in results:
                yield pb.SolveStreamResponse(final=final,
                                             result=convert.solve_result_to_proto(result),
                                             **_estimate_field(estimate))

    # -- Verify / Estimate --

    @staticmethod
    def _instance_and_plan(request: pb.VerifyRequest | pb.EstimateRequest,
                           ) -> tuple[Instance, Plan | DisaggPlan]:
        convert.check_request(request)
        instance = convert.instance_from_proto(request.instance)
        two_pools = disagg.requested_plan(request, instance)
        if two_pools is not None:
            return instance, two_pools
        if request.HasField("plan"):
            return instance, convert.plan_from_proto(request.plan)
        if instance.claimed_plan is None:
            raise InputError("plan: required, the instance has no claimed_plan", "plan")
        return instance, instance.claimed_plan

    @classmethod
    def _verify(cls, request: pb.VerifyRequest) -> pb.VerifyResponse:
        from solver.verify import verify

        instance, plan = cls._instance_and_plan(request)
        if isinstance(plan, DisaggPlan):
            return disagg.verify_response(instance, plan)
        report = verify(instance, plan)
        estimate = None
        if report.evaluation is not None:
            estimate = contract.estimate_document(instance, report.evaluation)
        return convert.verify_to_proto(contract.verify_out(report, estimate))

    @classmethod
    def _estimate(cls, request: pb.EstimateRequest) -> pb.EstimateResponse:
        instance, plan = cls._instance_and_plan(request)
        if isinstance(plan, DisaggPlan):
            return pb.EstimateResponse(disagg_estimate=disagg.estimate_message(instance, plan))
        return pb.EstimateResponse(estimate=_plan_estimate(instance, plan))

    @rpc_errors
    async def Verify(self, request: pb.VerifyRequest, context: grpc.aio.ServicerContext,
                     ) -> pb.VerifyResponse:
        return await asyncio.to_thread(self._verify, request)

    @rpc_errors
    async def Estimate(self, request: pb.EstimateRequest, context: grpc.aio.ServicerContext,
                       ) -> pb.EstimateResponse:
        return await asyncio.to_thread(self._estimate, request)

    # -- Export / Pareto (docs/export.md, docs/pareto.md) --

    @staticmethod
    def _export(request: pb.ExportRequest) -> pb.ExportResponse:
        from solver.export import export_plan

        convert.check_request(request)
        instance = convert.instance_from_proto(request.instance)
        plan: Plan | DisaggPlan
        if request.HasField("disagg_plan"):
            if request.HasField("plan"):
                raise InputError("disagg_plan: give plan or disagg_plan, not both", "disagg_plan")
            plan = disagg.disagg_plan_from_proto(request.disagg_plan)
        elif request.HasField("plan"):
            plan = convert.plan_from_proto(request.plan)
        else:
            raise InputError("plan: required, the plan to export", "plan")
        engine = convert._enum_to_literal(pb.EngineName.DESCRIPTOR, request.engine) or "vllm"
        doc = export_plan(instance, plan, engine,
                          model_path=request.model_path if request.HasField("model_path")
                          else None,
                          kv_backend=request.kv_backend if request.HasField("kv_backend")
                          else None)
        if isinstance(plan, DisaggPlan):
            return pb.ExportResponse(disagg_export=disagg.disagg_export_to_proto(doc))
        return convert.export_to_proto(doc)

    @rpc_errors
    async def Export(self, request: pb.ExportRequest, context: grpc.aio.ServicerContext,
                     ) -> pb.ExportResponse:
        return await asyncio.to_thread(self._export, request)

    @rpc_errors
    async def Pareto(self, request: pb.ParetoRequest, context: grpc.aio.ServicerContext,
                     ) -> AsyncIterator[pb.ParetoResponse]:
        """The frontier search runs on a thread (its CP-SAT and numpy work release the GIL);
        points stream as they are proved; a cancelled call sets the stop flag it polls."""
        import threading

        from solver.planner.pareto import DEFAULT_POINTS, DEFAULT_STEP, check_serving, pareto

        convert.check_request(request)
        instance = convert.instance_from_proto(request.instance)
        limit = request.time_limit_s if request.HasField("time_limit_s") else min(
            60.0, self.limits.max_time_limit_s)
        if not (math.isfinite(limit) and 0 < limit <= self.limits.max_time_limit_s):
            raise InputError(f"time_limit_s: must be in (0, {self.limits.max_time_limit_s:g}] "
                             f"seconds, got {limit}", "time_limit_s")
        remaining = context.time_remaining()
        if remaining is not None:
            limit = min(limit, max(MIN_SOLVE_S, remaining - max(
                DEADLINE_MARGIN_SHARE * remaining, DEADLINE_MARGIN_MIN_S)))
        points = request.points if request.HasField("points") else DEFAULT_POINTS
        if not 1 <= points <= 256:
            raise InputError(f"points: must be in [1, 256], got {points}", "points")
        batch = None
        if request.HasField("batch"):
            b = request.batch
            batch = (b.min if b.HasField("min") else 1, b.max if b.HasField("max") else 65536)
        frontier = {0: "rate", 1: "rate", 2: "gpus"}.get(request.frontier)
        if frontier is None:
            raise InputError(f"frontier: unknown value {request.frontier}", "frontier")
        if request.serving not in pb.FrontierServing.values():
            raise InputError(f"serving: unknown value {request.serving}", "serving")
        serving = convert._enum_to_literal(pb.FrontierServing.DESCRIPTOR, request.serving)
        check_serving(instance, frontier, serving)  # before the stream starts
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        stop = threading.Event()

        def run() -> None:
            try:
                doc = pareto(
                    instance, frontier=frontier, points=points,
                    step=request.step if request.HasField("step") else DEFAULT_STEP,
                    time_limit_s=limit, batch=batch,
                    chosen=request.chosen if request.HasField("chosen") else True,
                    serving=serving,
                    on_point=lambda p: loop.call_soon_threadsafe(queue.put_nowait, ("point", p)),
                    should_stop=stop.is_set)
                loop.call_soon_threadsafe(queue.put_nowait, ("done", doc))
            except BaseException as exc:  # handed to the event loop, raised there
                loop.call_soon_threadsafe(queue.put_nowait, ("error", exc))

        worker = threading.Thread(target=run, name="moeplan-pareto", daemon=True)
        worker.start()
        try:
            while True:
                kind, item = await queue.get()
                if kind == "point":
                    yield pb.ParetoResponse(point=convert.pareto_point_to_proto(item))
                elif kind == "done":
                    yield pb.ParetoResponse(summary=convert.pareto_to_proto(item))
                    return
                else:
                    raise item
        finally:
            stop.set()

    # -- ListPresets --

    @rpc_errors
    async def ListPresets(self, request: pb.ListPresetsRequest,
                          context: grpc.aio.ServicerContext) -> pb.ListPresetsResponse:
        convert.check_request(request)
        if self._presets is None:
            self._presets = await asyncio.to_thread(presets_response)
        return self._presets


def _estimate_field(estimate: pb.Estimate | pb.DisaggEstimate | None) -> dict:
    """The response field an estimate goes in: ``estimate`` or ``disagg_estimate``."""
    if isinstance(estimate, pb.DisaggEstimate):
        return {"disagg_estimate": estimate}
    return {"estimate": estimate}


def _plan_estimate(instance: Instance, plan: Plan) -> pb.Estimate:
    from solver.estimate import evaluate

    return convert.estimate_to_proto(contract.estimate_document(instance,
                                                                evaluate(instance, plan)))


def presets_response() -> pb.ListPresetsResponse:
    """Every bundled model and hardware preset, with its full specification."""
    from solver.hardware import HARDWARE_PRESETS
    from solver.params import active_params, total_params
    from solver.presets import PUBLISHED_TOTAL_PARAMS, load_model_preset, model_preset_names

    response = pb.ListPresetsResponse()
    for name in model_preset_names():
        spec = load_model_preset(name)
        entry = response.models.add(name=name, total_params=total_params(spec),
                                    active_params=active_params(spec))
        if name in PUBLISHED_TOTAL_PARAMS:
            entry.published_total_params = PUBLISHED_TOTAL_PARAMS[name]
        entry.spec.CopyFrom(convert.model_spec_to_proto(spec))
    for name, hw in HARDWARE_PRESETS.items():
        response.hardware.add(name=name, spec=convert.hardware_spec_to_proto(hw))
    return response


def _out_of_time(best: SolveResult | None, elapsed_s: float, improvements: int) -> SolveResult:
    """The answer when the worker has not finished by the call's deadline: its last improving
    plan (FEASIBLE, with the bound it had) or UNKNOWN."""
    if best is not None:
        return best.model_copy(update={"solve_time_s": elapsed_s,
                                       "improving_solutions": improvements})
    return SolveResult(status="UNKNOWN", solve_time_s=elapsed_s, solver=f"ortools-cpsat "
                       f"{ORTOOLS_VERSION}", tie_breaks=TIE_BREAKS,
                       improving_solutions=improvements)

