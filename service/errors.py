"""One place that maps exceptions to gRPC status codes.

:func:`rpc_errors` wraps every servicer method (unary and server-streaming alike):

- :class:`~solver.instance.InputError` -> INVALID_ARGUMENT, with a ``google.rpc.BadRequest``
  holding one field violation per broken rule (field path, rule) in the rich status details;
- :class:`~service.workers.PoolFull` -> RESOURCE_EXHAUSTED;
- :class:`~service.workers.PoolClosed` -> UNAVAILABLE (the server is shutting down);
- :class:`~service.workers.DeadlineTooShort` -> DEADLINE_EXCEEDED (no time left to solve);
- anything else -> INTERNAL with a generic message; the traceback goes to the server log only.

Cancellation (``asyncio.CancelledError``) and aborts already under way pass through untouched.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from service.workers import DeadlineTooShort, PoolClosed, PoolFull, WorkerCrashed, WorkerError
from solver.instance import InputError

log = logging.getLogger("moeplan.service")

INTERNAL_MESSAGE = "internal error (logged on the server)"
#: Bounds on what an INVALID_ARGUMENT echoes back (UTF-8 bytes; violations kept). Messages can
#: quote the client's input (an unknown preset name, say); unclipped, a long value makes the
#: trailers exceed gRPC's 8 KiB metadata limit and the client sees RESOURCE_EXHAUSTED instead.
MAX_MESSAGE_BYTES = 400
MAX_FIELD_BYTES = 100
MAX_RULE_BYTES = 200
MAX_VIOLATIONS = 8


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, with "..." when cut."""
    raw = text.encode()
    if len(raw) <= limit:
        return text
    return raw[:limit - 3].decode(errors="ignore") + "..."


def bad_request_status(exc: InputError) -> grpc.Status:
    """INVALID_ARGUMENT with the violations of ``exc`` as ``google.rpc.BadRequest``."""
    violations = exc.violations or [("", str(exc))]
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.BadRequest(field_violations=[
        error_details_pb2.BadRequest.FieldViolation(field=clip(field, MAX_FIELD_BYTES),
                                                    description=clip(rule, MAX_RULE_BYTES))
        for field, rule in violations[:MAX_VIOLATIONS]
    ]))
    return rpc_status.to_status(status_pb2.Status(
        code=code_pb2.INVALID_ARGUMENT, message=clip(str(exc), MAX_MESSAGE_BYTES),
        details=[detail]))


def status_for(exc: Exception, method: str) -> grpc.Status:
    """The status a call ends with when ``exc`` escapes its handler."""
    if isinstance(exc, InputError):
        return bad_request_status(exc)
    if isinstance(exc, PoolFull):
        return rpc_status.to_status(status_pb2.Status(
            code=code_pb2.RESOURCE_EXHAUSTED, message=f"server busy: {exc}; retry later"))
    if isinstance(exc, PoolClosed):
        return rpc_status.to_status(status_pb2.Status(
            code=code_pb2.UNAVAILABLE, message="the server is shutting down"))
    if isinstance(exc, DeadlineTooShort):
        return rpc_status.to_status(status_pb2.Status(
            code=code_pb2.DEADLINE_EXCEEDED, message=str(exc)))
    if isinstance(exc, WorkerError):
        log.error("%s failed in a solver worker: %s\n%s", method, exc, exc.details)
    elif isinstance(exc, WorkerCrashed):
        log.error("%s: %s", method, exc)
    else:
        log.error("%s failed", method, exc_info=exc)
    return rpc_status.to_status(status_pb2.Status(code=code_pb2.INTERNAL,
                                                  message=INTERNAL_MESSAGE))


def rpc_errors(method: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a servicer method ``(self, request, context)`` so that every exception ends the
    call with the status :func:`status_for` gives, and log the call's outcome."""
    name = method.__name__

    async def fail(context: grpc.aio.ServicerContext, exc: Exception, start: float) -> None:
        status = status_for(exc, name)
        log.info("%s %s in %.3f s: %s", name, status.code.name, time.monotonic() - start,
                 status.details)
        await context.abort_with_status(status)

    if inspect.isasyncgenfunction(method):
        @functools.wraps(method)
        async def stream_wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext):
            start = time.monotonic()
            try:
                async for item in method(self, request, context):
                    yield item
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await fail(context, exc, start)

        return stream_wrapper

    @functools.wraps(method)
    async def unary_wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext):
        start = time.monotonic()
        try:
            return await method(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await fail(context, exc, start)

    return unary_wrapper
