"""Python clients of the moeplan gRPC service: :class:`PlannerClient` (blocking) and
:class:`AsyncPlannerClient` (asyncio). Both speak pydantic: they take a
:class:`~solver.schema.Instance` (load it with :func:`solver.instance.load_instance`, which also
resolves Hugging Face config files on the client) and return what the library returns locally:
``solve`` a :class:`~solver.schema.SolveResult` (as :func:`solver.planner.solve`), ``verify``
and ``estimate`` the documents ``moeplan verify --json`` and ``moeplan estimate --json`` print
(:class:`solver.contract.VerifyOut`, :class:`solver.contract.EstimateOut`).

Errors: INVALID_ARGUMENT raises :class:`~solver.instance.InputError` (with ``.violations`` from
the server's BadRequest details); a missing or refused token (UNAUTHENTICATED, PERMISSION_DENIED)
raises :class:`AuthenticationError`, also an ``InputError`` (field ``token``: the credentials
are input, and retrying will not help); an unreachable server raises :class:`ServerUnavailable`
(a :class:`ConnectionError`); any other status raises :class:`RemoteError` with its ``code``.

Credentials come from the arguments or the environment: ``MOEPLAN_TOKEN`` (bearer token; set
but blank is an error, as for the server) and ``MOEPLAN_TLS_CA`` (a PEM file of the CA that
signed the server's certificate; setting it turns TLS on).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from service import convert
from service._gen.moeplan.v1 import planner_pb2 as pb
from service._gen.moeplan.v1 import planner_pb2_grpc as pb_grpc
from solver.contract import DisaggEstimateOut, EstimateOut, VerifyOut
from solver.instance import InputError
from solver.schema import DisaggPlan, HardwareSpec, Instance, ModelSpec, Plan, SolveResult

TOKEN_ENV = "MOEPLAN_TOKEN"
TLS_CA_ENV = "MOEPLAN_TLS_CA"
#: A solve's call deadline is its time limit plus this much (or a quarter of it, if longer):
#: room for queueing and the planner's explanation phase, while a dead server is still noticed.
DEADLINE_SLACK_S = 30.0


class RemoteError(RuntimeError):
    """The server answered with an error status."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


class ServerUnavailable(ConnectionError):
    """The server cannot be reached (UNAVAILABLE)."""


class AuthenticationError(InputError):
    """The server refused the call's credentials (UNAUTHENTICATED or PERMISSION_DENIED): the
    token is missing or wrong. An :class:`InputError` on field ``token``, so the CLI reports it
    as one ``error: token: ...`` line with exit code 2."""

    def __init__(self, message: str):
        super().__init__(f"token: {message}", "token")


def _bad_request(error: grpc.Call) -> InputError:
    """INVALID_ARGUMENT as the InputError the CLI would raise for the same input."""
    violations: list[tuple[str, str]] = []
    status = rpc_status.from_call(error)
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations.extend((v.field, v.description) for v in bad.field_violations)
    message = error.details() or "invalid argument"
    field = violations[0][0] if violations else ""
    return InputError(message, field, violations)


def translate_error(error: grpc.RpcError, *, target: str = "the server",
                    sent_token: bool | None = None) -> Exception:
    """The Python exception for a failed call (``target`` and ``sent_token``, when known, make
    an authentication error say whose and what)."""
    code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
    message = error.details() if isinstance(error, grpc.Call) else str(error)
    if code == grpc.StatusCode.INVALID_ARGUMENT and isinstance(error, grpc.Call):
        return _bad_request(error)
    if code == grpc.StatusCode.UNAVAILABLE:
        return ServerUnavailable(message or "server unavailable")
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        what = {True: "refused the bearer token", False: "requires a bearer token and none was "
                "sent"}.get(sent_token, "refused the call's credentials")
        return AuthenticationError(f"{target} {what} ({code.name}: {message}); set {TOKEN_ENV} "
                                   "(or token=) to the server's token")
    return RemoteError(code, message or "")


def _channel_credentials(tls: bool | None, root_certificates: bytes | None,
                         ) -> grpc.ChannelCredentials | None:
    if root_certificates is None and os.environ.get(TLS_CA_ENV):
        try:
            root_certificates = Path(os.environ[TLS_CA_ENV]).read_bytes()
        except OSError as exc:
            raise InputError(f"${TLS_CA_ENV}: cannot read {os.environ[TLS_CA_ENV]} "
                             f"({exc.strerror or exc})", TLS_CA_ENV) from None
    if tls is None:
        tls = root_certificates is not None
    return grpc.ssl_channel_credentials(root_certificates) if tls else None


def _metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    """The call metadata: the bearer token from ``token``, else ``$MOEPLAN_TOKEN``, if any."""
    source = "token"
    if token is None:
        token, source = os.environ.get(TOKEN_ENV), f"${TOKEN_ENV}"
    if token is None or (source == "token" and token == ""):  # token="": explicitly none
        return ()
    token = token.strip()
    if not token or any(c.isspace() for c in token):
        raise InputError(f"{source}: set but {'blank' if not token else 'holds spaces'}; give "
                         "one token without spaces, or none", source.lstrip("$"))
    return (("authorization", f"Bearer {token}"),)


def _solve_request(instance: Instance, time_limit_s: float | None, workers: int | None,
                   ) -> pb.SolveRequest:
    request = pb.SolveRequest(instance=convert.instance_to_proto(instance))
    if time_limit_s is not None:
        request.time_limit_s = time_limit_s
    if workers is not None:
        request.workers = workers
    return request


def _solve_timeout(instance: Instance, time_limit_s: float | None) -> float:
    limit = time_limit_s if time_limit_s is not None else instance.search.time_limit_s
    return limit + max(DEADLINE_SLACK_S, 0.25 * limit)


def _plan_request(cls: Any, instance: Instance, plan: Plan | None) -> Any:
    request = cls(instance=convert.instance_to_proto(instance))
    if plan is not None:
        request.plan.CopyFrom(convert.plan_to_proto(plan))
    return request


def _disagg_request(cls: Any, instance: Instance, plan: DisaggPlan) -> Any:
    from service.disagg import disagg_plan_to_proto

    return cls(instance=convert.instance_to_proto(instance),
               disagg_plan=disagg_plan_to_proto(plan))


def _presets(response: pb.ListPresetsResponse) -> dict[str, list[dict[str, Any]]]:
    return {
        "models": [{
            "name": m.name,
            "total_params": m.total_params,
            "active_params": m.active_params,
            "published_total_params": (m.published_total_params
                                       if m.HasField("published_total_params") else None),
            "spec": ModelSpec.model_validate(convert.message_to_dict(m.spec, strict=False)),
        } for m in response.models],
        "hardware": [{
            "name": h.name,
            "spec": HardwareSpec.model_validate(convert.message_to_dict(h.spec,
                                                                        strict=False)),
        } for h in response.hardware],
    }


class PlannerClient:
    """Blocking client. ``with PlannerClient("127.0.0.1:50051") as client: client.solve(...)``.

    ``timeout_s`` of each call is its gRPC deadline; for solves it defaults to the time limit
    plus slack, and the server fits the solve into it (the answer is then the best plan found).
    """

    def __init__(self, target: str, *, token: str | None = None, tls: bool | None = None,
                 root_certificates: bytes | None = None,
                 options: list[tuple[str, Any]] | None = None):
        self._metadata = _metadata(token)  # first: a bad token opens no channel
        self._target = target
        credentials = _channel_credentials(tls, root_certificates)
        self._channel = (grpc.secure_channel(target, credentials, options=options)
                         if credentials is not None
                         else grpc.insecure_channel(target, options=options))
        self._stub = pb_grpc.PlannerStub(self._channel)

    def _error(self, error: grpc.RpcError) -> Exception:
        return translate_error(error, target=self._target, sent_token=bool(self._metadata))

    def _call(self, method: Any, request: Any, timeout: float | None) -> Any:
        try:
            return method(request, timeout=timeout, metadata=self._metadata)
        except grpc.RpcError as error:
            raise self._error(error) from None

    def solve(self, instance: Instance, *, time_limit_s: float | None = None,
              workers: int | None = None, timeout_s: float | None = None) -> SolveResult:
        """Solve remotely; the same answer as ``solver.planner.solve(instance, ...)``."""
        timeout = timeout_s if timeout_s is not None else _solve_timeout(instance, time_limit_s)
        response = self._call(self._stub.Solve,
                              _solve_request(instance, time_limit_s, workers), timeout)
        return convert.solve_result_from_proto(response.result)

    def solve_stream(self, instance: Instance, *, time_limit_s: float | None = None,
                     workers: int | None = None, timeout_s: float | None = None,
                     ) -> Iterator[tuple[bool, SolveResult]]:
        """Yield ``(final, result)``: each improving plan, then the final answer. Closing the
        iterator early cancels the call (and the server stops the solve)."""
        timeout = timeout_s if timeout_s is not None else _solve_timeout(instance, time_limit_s)
        call = self._stub.SolveStream(_solve_request(instance, time_limit_s, workers),
                                      timeout=timeout, metadata=self._metadata)
        try:
            for message in call:
                yield message.final, convert.solve_result_from_proto(message.result)
        except grpc.RpcError as error:
            raise self._error(error) from None
        finally:
            call.cancel()

    def verify(self, instance: Instance, plan: Plan | None = None, *,
               timeout_s: float | None = 60.0) -> VerifyOut:
        """The verify document of the plan (default: the instance's claimed plan)."""
        response = self._call(self._stub.Verify, _plan_request(pb.VerifyRequest, instance, plan),
                              timeout_s)
        return convert.verify_from_proto(response)

    def estimate(self, instance: Instance, plan: Plan | None = None, *,
                 timeout_s: float | None = 60.0) -> EstimateOut:
        """The estimate document of the plan (default: the instance's claimed plan)."""
        response = self._call(self._stub.Estimate,
                              _plan_request(pb.EstimateRequest, instance, plan), timeout_s)
        return convert.estimate_from_proto(response.estimate)

    def verify_disagg(self, instance: Instance, plan: DisaggPlan, *,
                      timeout_s: float | None = 60.0) -> VerifyOut:
        """The verify document of a two-pool plan (its estimate in ``disagg_estimate``)."""
        response = self._call(self._stub.Verify, _disagg_request(pb.VerifyRequest, instance,
                                                                 plan), timeout_s)
        return convert.verify_from_proto(response)

    def estimate_disagg(self, instance: Instance, plan: DisaggPlan, *,
                        timeout_s: float | None = 60.0) -> DisaggEstimateOut:
        """The estimate document of a two-pool plan."""
        from service.disagg import disagg_estimate_from_proto

        response = self._call(self._stub.Estimate, _disagg_request(pb.EstimateRequest,
                                                                   instance, plan), timeout_s)
        return disagg_estimate_from_proto(response.disagg_estimate)

    def list_presets(self, *, timeout_s: float | None = 60.0) -> dict[str, list[dict[str, Any]]]:
        """``{"models": [...], "hardware": [...]}``, each preset with its pydantic spec."""
        return _presets(self._call(self._stub.ListPresets, pb.ListPresetsRequest(), timeout_s))

    def export(self, instance: Instance, plan: Plan | DisaggPlan, engine: str = "vllm", *,
               model_path: str | None = None, kv_backend: str | None = None,
               timeout_s: float | None = 60.0) -> Any:
        """The export document (``moeplan export --json``) of the plan on ``engine``: an
        ``ExportOut``, or a ``DisaggExportOut`` for a two-pool plan."""
        request = pb.ExportRequest(instance=convert.instance_to_proto(instance),
                                   engine=pb.EngineName.Value(f"ENGINE_NAME_{engine.upper()}"))
        if isinstance(plan, DisaggPlan):
            from service.disagg import disagg_plan_to_proto

            request.disagg_plan.CopyFrom(disagg_plan_to_proto(plan))
        else:
            request.plan.CopyFrom(convert.plan_to_proto(plan))
        if model_path is not None:
            request.model_path = model_path
        if kv_backend is not None:
            request.kv_backend = kv_backend
        response = self._call(self._stub.Export, request, timeout_s)
        if response.HasField("disagg_export"):
            from service.disagg import disagg_export_from_proto

            return disagg_export_from_proto(response.disagg_export)
        return convert.export_from_proto(response)

    def pareto(self, instance: Instance, *, frontier: str = "rate", points: int | None = None,
               time_limit_s: float | None = None, timeout_s: float | None = None,
               chosen: bool | None = None, serving: str | None = None) -> Iterator[Any]:
        """Yield each frontier point (``ParetoPointOut``) as it is proved, then the summary
        (``ParetoOut``). ``serving``: aggregated, disaggregated or both (default: the
        instance's). Closing the iterator early cancels the call and the search."""
        request = pb.ParetoRequest(instance=convert.instance_to_proto(instance),
                                   frontier=pb.Frontier.Value(f"FRONTIER_{frontier.upper()}"))
        if serving is not None:
            request.serving = pb.FrontierServing.Value(f"FRONTIER_SERVING_{serving.upper()}")
        if points is not None:
            request.points = points
        if time_limit_s is not None:
            request.time_limit_s = time_limit_s
        if chosen is not None:
            request.chosen = chosen
        timeout = timeout_s if timeout_s is not None else (time_limit_s or 60.0) * 1.5 + 30
        call = self._stub.Pareto(request, timeout=timeout, metadata=self._metadata)
        try:
            for message in call:
                if message.HasField("point"):
                    yield convert.pareto_point_from_proto(message.point)
                else:
                    yield convert.pareto_from_proto(message.summary)
        except grpc.RpcError as error:
            raise self._error(error) from None
        finally:
            call.cancel()

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> PlannerClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class AsyncPlannerClient:
    """asyncio client with the same methods as :class:`PlannerClient`, as coroutines
    (``solve_stream`` is an async iterator). ``async with AsyncPlannerClient(target) as c:``."""

    def __init__(self, target: str, *, token: str | None = None, tls: bool | None = None,
                 root_certificates: bytes | None = None,
                 options: list[tuple[str, Any]] | None = None):
        self._metadata = _metadata(token)  # first: a bad token opens no channel
        self._target = target
        credentials = _channel_credentials(tls, root_certificates)
        self._channel = (grpc.aio.secure_channel(target, credentials, options=options)
                         if credentials is not None
                         else grpc.aio.insecure_channel(target, options=options))
        self._stub = pb_grpc.PlannerStub(self._channel)

    def _error(self, error: grpc.RpcError) -> Exception:
        return translate_error(error, target=self._target, sent_token=bool(self._metadata))

    async def _call(self, method: Any, request: Any, timeout: float | None) -> Any:
        try:
            return await method(request, timeout=timeout, metadata=self._metadata)
        except grpc.RpcError as error:
            raise self._error(error) from None

    async def solve(self, instance: Instance, *, time_limit_s: float | None = None,
                    workers: int | None = None, timeout_s: float | None = None) -> SolveResult:
        timeout = timeout_s if timeout_s is not None else _solve_timeout(instance, time_limit_s)
        response = await self._call(self._stub.Solve,
                                    _solve_request(instance, time_limit_s, workers), timeout)
        return convert.solve_result_from_proto(response.result)

    async def solve_stream(self, instance: Instance, *, time_limit_s: float | None = None,
                           workers: int | None = None, timeout_s: float | None = None,
                           ) -> AsyncIterator[tuple[bool, SolveResult]]:
        timeout = timeout_s if timeout_s is not None else _solve_timeout(instance, time_limit_s)
        call = self._stub.SolveStream(_solve_request(instance, time_limit_s, workers),
                                      timeout=timeout, metadata=self._metadata)
        try:
            async for message in call:
                yield message.final, convert.solve_result_from_proto(message.result)
        except grpc.RpcError as error:
            raise self._error(error) from None
        finally:
            call.cancel()

    async def verify(self, instance: Instance, plan: Plan | None = None, *,
                     timeout_s: float | None = 60.0) -> VerifyOut:
        response = await self._call(self._stub.Verify,
                                    _plan_request(pb.VerifyRequest, instance, plan), timeout_s)
        return convert.verify_from_proto(response)

    async def estimate(self, instance: Instance, plan: Plan | None = None, *,
                       timeout_s: float | None = 60.0) -> EstimateOut:
        response = await self._call(self._stub.Estimate,
                                    _plan_request(pb.EstimateRequest, instance, plan), timeout_s)
        return convert.estimate_from_proto(response.estimate)

    async def list_presets(self, *, timeout_s: float | None = 60.0,
                           ) -> dict[str, list[dict[str, Any]]]:
        return _presets(await self._call(self._stub.ListPresets, pb.ListPresetsRequest(),
                                         timeout_s))

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncPlannerClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()
