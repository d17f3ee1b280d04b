"""The moeplan gRPC server: ``grpc.aio``, a solver worker pool, health, reflection, auth, TLS.

:class:`PlannerServer` owns the pieces; :func:`serve` runs one until SIGTERM or SIGINT, then
shuts down gracefully: health turns NOT_SERVING, new calls are refused, in-flight calls get
``grace_s`` to finish, then the workers stop and :func:`serve` returns (``moeplan serve`` exits
0). ``moeplan serve`` (``moeplan/cmd_serve.py``) is the command-line front end.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import signal
import ssl
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

from service._gen.moeplan.v1 import planner_pb2 as pb
from service._gen.moeplan.v1 import planner_pb2_grpc as pb_grpc
from service.servicer import Limits, PlannerServicer
from service.workers import WorkerPool
from solver.instance import InputError

log = logging.getLogger("moeplan.service")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Planner"].full_name  # "moeplan.v1.Planner"
HEALTH_SERVICE_NAME = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
#: Methods callable without a token: health checks, so that load balancers and orchestrators
#: can probe the server without holding a secret. Everything else (including reflection)
#: needs the token when one is configured.
UNAUTHENTICATED_PREFIXES = (f"/{HEALTH_SERVICE_NAME}/",)
DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
#: Server reflection is served under both names: ``v1`` is what grpcurl and current clients ask
#: for first, ``v1alpha`` what older ones know. grpcio-reflection ships only v1alpha; v1 has the
#: same messages under another package, so one servicer answers both.
REFLECTION_V1ALPHA = reflection.SERVICE_NAME  # "grpc.reflection.v1alpha.ServerReflection"
REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"


@dataclass
class ServerConfig:
    """How to run the server (the options of ``moeplan serve``)."""

    host: str = "127.0.0.1"
    port: int = 50051
    workers: int = 2
    queue: int = 16
    tls_cert: Path | None = None
    tls_key: Path | None = None
    token: str | None = field(default=None, repr=False)  # never printed
    max_time_limit_s: float = 300.0
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    grace_s: float = 10.0
    spares: int = 1
    stop_grace_s: float = 0.3

    def __post_init__(self) -> None:
        if self.token is not None and (not self.token or any(c.isspace() for c in self.token)):
            # A blank token must not quietly mean "no authentication" (None does).
            raise InputError("token: must be a non-empty token without spaces (None: no "
                             "authentication)", "token")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise InputError("--tls-cert and --tls-key: give both or neither", "tls_cert")

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None


def _read_pem(path: Path, option: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"{option}: cannot read {path} ({exc.strerror or exc})",
                         option.lstrip("-").replace("-", "_")) from None


def tls_credentials(cert: Path, key: Path) -> grpc.ServerCredentials:
    """Server credentials from a PEM certificate chain and its private key, checked first with
    :mod:`ssl`: gRPC only reports that it cannot listen when either is invalid."""
    chain, private = _read_pem(cert, "--tls-cert"), _read_pem(key, "--tls-key")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=chain.decode())
    except (ssl.SSLError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"--tls-cert: {cert} is not a valid PEM certificate chain "
                         f"({getattr(exc, 'reason', None) or exc})", "tls_cert") from None
    if re.search(rb"-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: *4, *ENCRYPTED", private):
        raise InputError(f"--tls-key: {key} is encrypted; gRPC needs the key without a "
                         "passphrase", "tls_key")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key, password=b"")
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise InputError(f"--tls-key: {key} is not the private key of the certificate in "
                             f"{cert}", "tls_key") from None
        raise InputError(f"--tls-key: {key} is not a valid PEM private key "
                         f"({exc.reason or exc})", "tls_key") from None
    return grpc.ssl_server_credentials([(private, chain)])


def _reflection_v1_file(pool: descriptor_pool.DescriptorPool) -> None:
    """Add ``grpc/reflection/v1/reflection.proto`` to ``pool`` (once), made from v1alpha's by
    renaming its package, so that reflection describes its v1 service too."""
    name = "grpc/reflection/v1/reflection.proto"
    try:
        pool.FindFileByName(name)
        return
    except KeyError:
        pass
    file = descriptor_pb2.FileDescriptorProto.FromString(reflection_pb2.DESCRIPTOR.serialized_pb)
    old, new = f".{file.package}.", ".grpc.reflection.v1."
    file.name, file.package = name, "grpc.reflection.v1"
    for message in file.message_type:
        for f in message.field:
            if f.type_name.startswith(old):
                f.type_name = new + f.type_name[len(old):]
    for method in file.service[0].method:
        method.input_type = new + method.input_type[len(old):]
        method.output_type = new + method.output_type[len(old):]
    pool.Add(file)


def enable_reflection(server: grpc.aio.Server, service_names: tuple[str, ...]) -> None:
    """Server reflection, v1 and v1alpha, listing ``service_names`` and itself."""
    pool = descriptor_pool.Default()
    _reflection_v1_file(pool)
    servicer = reflection.aio.ReflectionServicer(
        (*service_names, REFLECTION_V1, REFLECTION_V1ALPHA), pool=pool)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(REFLECTION_V1, {
        "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
            servicer.ServerReflectionInfo,
            request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
            response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString),
    }),))


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    """Refuses calls without ``authorization: Bearer <token>`` (UNAUTHENTICATED). Compares in
    constant time; never logs the token, supplied or expected."""

    def __init__(self, token: str, exempt_prefixes: tuple[str, ...] = UNAUTHENTICATED_PREFIXES):
        self._token = token.encode()
        self._exempt = exempt_prefixes

        async def deny(request: Any, context: grpc.aio.ServicerContext) -> None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                "missing or invalid bearer token (metadata 'authorization: "
                                "Bearer <token>')")

        self._deny = grpc.unary_unary_rpc_method_handler(deny)

    def _authorized(self, metadata: Any) -> bool:
        for key, value in metadata or ():
            if key == "authorization" and isinstance(value, str):
                scheme, _, supplied = value.partition(" ")
                if scheme.lower() == "bearer":
                    return hmac.compare_digest(supplied.strip().encode(), self._token)
        return False

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        if details.method.startswith(self._exempt) or self._authorized(
                details.invocation_metadata):
            return await continuation(details)
        log.warning("refused %s: missing or invalid bearer token", details.method)
        return self._deny


class MalformedRequestInterceptor(grpc.aio.ServerInterceptor):
    """Answers INVALID_ARGUMENT to request bytes that are not a valid protobuf message.

    gRPC parses the request before the handler runs and, when parsing raises, ends the call with
    UNKNOWN and the exception's class in the message. This interceptor hands the Planner's
    handlers the raw bytes and parses them itself (``prefix``: the methods it covers)."""

    def __init__(self, prefix: str = f"/{SERVICE_NAME}/"):
        self._prefix = prefix

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if (handler is None or not details.method.startswith(self._prefix)
                or handler.request_streaming or handler.request_deserializer is None):
            return handler
        parse, method = handler.request_deserializer, details.method

        async def decode(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
            try:
                return parse(raw)
            except Exception:  # DecodeError, or anything else the parser raises
                from service.errors import bad_request_status
                from solver.instance import InputError

                log.info("%s: malformed request (%d bytes)", method, len(raw))
                await context.abort_with_status(bad_request_status(InputError(
                    f"request: not a valid protobuf message for {method}", "request")))

        if handler.unary_unary is not None:
            unary = handler.unary_unary

            async def unary_unary(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
                return await unary(await decode(raw, context), context)

            return grpc.unary_unary_rpc_method_handler(
                unary_unary, response_serializer=handler.response_serializer)
        stream = handler.unary_stream

        async def unary_stream(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
            async for item in stream(await decode(raw, context), context):
                yield item

        return grpc.unary_stream_rpc_method_handler(
            unary_stream, response_serializer=handler.response_serializer)


class PlannerServer:
    """A started server: ``await start()``, then ``port``; ``await stop()`` to shut down."""

    def __init__(self, config: ServerConfig, pool: WorkerPool | None = None):
        self.config = config
        self.pool = pool or WorkerPool(config.workers, config.queue, spares=config.spares,
                                       stop_grace_s=config.stop_grace_s)
        self.health = health.aio.HealthServicer()
        self.server: grpc.aio.Server | None = None
        self.port: int | None = None
        self._stopped = asyncio.Event()

    async def start(self) -> int:
        """Bind, start the workers, then accept calls. Returns the bound port (for port 0)."""
        c = self.config
        options = [
            ("grpc.max_receive_message_length", c.max_message_bytes),
            ("grpc.max_send_message_length", c.max_message_bytes),
            ("grpc.so_reuseport", 0),  # a second server on the same port fails to bind
        ]
        interceptors: list[grpc.aio.ServerInterceptor] = (
            [BearerTokenInterceptor(c.token)] if c.token else [])
        interceptors.append(MalformedRequestInterceptor())
        server = grpc.aio.server(interceptors=interceptors, options=options)
        pb_grpc.add_PlannerServicer_to_server(
            PlannerServicer(self.pool, Limits(max_time_limit_s=c.max_time_limit_s)), server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        enable_reflection(server, (SERVICE_NAME, HEALTH_SERVICE_NAME))
        address = f"{c.host}:{c.port}"
        try:
            if c.tls:
                self.port = server.add_secure_port(address, tls_credentials(c.tls_cert,
                                                                            c.tls_key))
            else:
                self.port = server.add_insecure_port(address)
        except RuntimeError as exc:
            raise OSError(f"cannot listen on {address} ({exc})") from None
        if not self.port:
            raise OSError(f"cannot listen on {address}")
        await self.pool.start()
        await server.start()
        self.server = server
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("listening on %s:%d (%d solver workers, queue %d, TLS %s, auth %s, max time "
                 "limit %g s)", c.host, self.port, c.workers, c.queue, "on" if c.tls else "off",
                 "bearer token" if c.token else "off", c.max_time_limit_s)
        if not c.token and c.host not in ("127.0.0.1", "::1", "localhost"):
            log.warning("listening on %s without a token: anyone who can reach it can solve",
                        c.host)
        return self.port

    async def stop(self, grace_s: float | None = None) -> None:
        """Graceful shutdown: NOT_SERVING, refuse new calls, let in-flight calls finish within
        the grace, then stop the workers."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        grace = self.config.grace_s if grace_s is None else grace_s
        await self.health.enter_graceful_shutdown()
        if self.server is None:  # never started
            await self.pool.close()
            return
        log.info("shutting down: in-flight calls have %g s to finish", grace)
        await self.server.stop(grace)
        await self.pool.close()
        log.info("stopped")

    async def wait_stopped(self) -> None:
        await self._stopped.wait()
        if self.server is not None:
            await self.server.wait_for_termination()


async def serve(config: ServerConfig, on_started: Callable[[int], None] | None = None) -> None:
    """Run a server until SIGTERM or SIGINT, then shut it down gracefully."""
    server = PlannerServer(config)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        port = await server.start()
        if on_started is not None:
            on_started(port)
        await stop.wait()
        log.info("signal received")
    finally:
        await server.stop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


class ServerThread:
    """A server on its own event loop in a background thread (tests, benchmarks, notebooks).

    ``with ServerThread(config) as port: ...`` starts it and stops it gracefully on exit."""

    def __init__(self, config: ServerConfig, pool: WorkerPool | None = None):
        self.config = config
        self.server = PlannerServer(config, pool)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="moeplan-server",
                                        daemon=True)

    def start(self) -> int:
        self._thread.start()
        return asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(120)

    def call(self, coro: Awaitable[Any], timeout: float = 30) -> Any:
        """Run a coroutine on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self, grace_s: float | None = 0.5) -> None:
        self.call(self.server.stop(grace_s), timeout=60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    def __enter__(self) -> int:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
