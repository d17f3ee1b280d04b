"""``moeplan serve``: run the gRPC service (docs/service.md).

Registered on the CLI's app with :func:`moeplan.cli.command`, so bad options are one-line errors
with exit code 2 like every other command. gRPC is imported when the command runs.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from moeplan.cli import command
from solver.instance import InputError
from solver.schema import MAX_TIME_LIMIT_S

TOKEN_ENV = "MOEPLAN_TOKEN"


def _read_token(token_file: Path | None) -> str | None:
    """The bearer token from ``--token-file``, else ``$MOEPLAN_TOKEN``, else None (no auth).

    A variable that is set but blank is an error, not "no authentication": it is what a
    deployment that failed to fill in its secret looks like."""
    if token_file is None:
        if TOKEN_ENV not in os.environ:
            return None
        token = os.environ[TOKEN_ENV].strip()
        if not token or any(c.isspace() for c in token):
            raise InputError(f"${TOKEN_ENV}: set but {'blank' if not token else 'holds spaces'};"
                             f" set it to one token without spaces, or unset it to serve without"
                             f" authentication", TOKEN_ENV)
        return token
    try:
        token = token_file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise InputError(f"--token-file: cannot read {token_file} ({exc.strerror})",
                         "token_file") from None
    if not token or any(c.isspace() for c in token):
        raise InputError(f"--token-file: {token_file} must hold one token without spaces",
                         "token_file")
    return token


def _readable(path: Path | None, option: str) -> None:
    if path is not None and not path.is_file():
        raise InputError(f"{option}: {path} is not a readable file", option.lstrip("-"))


@command("serve")
def serve_cmd(
    host: Annotated[str, typer.Option(
        "--host", help="Address to bind. Default loopback only; use 0.0.0.0 for every "
        "interface (then set a token and TLS).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(
        "--port", help="Port to listen on (0: any free port, printed at start).")] = 50051,
    workers: Annotated[int | None, typer.Option(
        "--workers", help="Solver worker processes = solves at once (default: CPUs / 2, "
        "at least 1).")] = None,
    queue: Annotated[int, typer.Option(
        "--queue", help="Solves that may wait for a worker; beyond: RESOURCE_EXHAUSTED.")] = 16,
    tls_cert: Annotated[Path | None, typer.Option(
        "--tls-cert", metavar="FILE", help="PEM certificate chain (with --tls-key: TLS on).",
    )] = None,
    tls_key: Annotated[Path | None, typer.Option(
        "--tls-key", metavar="FILE", help="PEM private key of --tls-cert.")] = None,
    token_file: Annotated[Path | None, typer.Option(
        "--token-file", metavar="FILE",
        help=f"File holding the bearer token clients must send (default: ${TOKEN_ENV}; "
        "neither: no authentication; set but blank: an error).")] = None,
    max_time_limit: Annotated[float, typer.Option(
        "--max-time-limit", metavar="SECONDS",
        help="Largest solve time limit a request may ask for (above: INVALID_ARGUMENT).",
    )] = 300.0,
    max_message_bytes: Annotated[int, typer.Option(
        "--max-message-bytes", help="Largest request or response message.")] = 16 * 1024 * 1024,
    grace: Annotated[float, typer.Option(
        "--grace", metavar="SECONDS",
        help="On SIGTERM/SIGINT, time in-flight calls get to finish.")] = 10.0,
    log_level: Annotated[str, typer.Option(
        "--log-level", help="debug, info, warning or error.")] = "info",
) -> None:
    """Run the gRPC service (moeplan.v1.Planner, health, reflection) until SIGTERM/SIGINT.

    Prints 'listening on HOST:PORT' to stdout once it accepts calls.
    """
    if workers is None:
        workers = max(1, (os.cpu_count() or 2) // 2)
    if not 0 < workers <= 256:
        raise InputError(f"--workers: must be in [1, 256], got {workers}", "workers")
    if not 0 <= queue <= 100_000:
        raise InputError(f"--queue: must be in [0, 100000], got {queue}", "queue")
    if not 0 <= port < 65536:
        raise InputError(f"--port: must be in [0, 65535], got {port}", "port")
    if not (math.isfinite(max_time_limit) and 0 < max_time_limit <= MAX_TIME_LIMIT_S):
        raise InputError(f"--max-time-limit: must be in (0, {MAX_TIME_LIMIT_S:g}] seconds, got "
                         f"{max_time_limit}", "max_time_limit")
    if not 1024 <= max_message_bytes <= 2**31 - 1:
        raise InputError(f"--max-message-bytes: must be in [1024, {2**31 - 1}], got "
                         f"{max_message_bytes}", "max_message_bytes")
    if not (math.isfinite(grace) and grace >= 0):
        raise InputError(f"--grace: must be >= 0 seconds, got {grace}", "grace")
    if (tls_cert is None) != (tls_key is None):
        raise InputError("--tls-cert and --tls-key: give both or neither", "tls_cert")
    _readable(tls_cert, "--tls-cert")
    _readable(tls_key, "--tls-key")
    level = getattr(logging, log_level.upper(), None)
    if not isinstance(level, int):
        raise InputError(f"--log-level: unknown level '{log_level}'", "log_level")
    token = _read_token(token_file)

    import asyncio

    from service.server import ServerConfig, serve

    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = ServerConfig(host=host, port=port, workers=workers, queue=queue, tls_cert=tls_cert,
                          tls_key=tls_key, token=token, max_time_limit_s=max_time_limit,
                          max_message_bytes=max_message_bytes, grace_s=grace)

    def started(bound: int) -> None:
        typer.echo(f"listening on {host}:{bound}")
        sys.stdout.flush()

    try:
        asyncio.run(serve(config, on_started=started))
    except OSError as exc:  # cannot bind (bad TLS files are InputErrors naming the option)
        raise InputError(f"serve: {exc}", "port") from None
