"""Helpers and fixtures shared by the test files.

Test modules import the helpers by name (``from conftest import wait_until``); pytest puts this
directory on ``sys.path`` when it loads this file, so that is the same module object pytest
uses. gRPC is imported only by the helpers that start a server.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from typer.testing import CliRunner

if TYPE_CHECKING:
    from service.server import ServerConfig, ServerThread
    from service.workers import WorkerPool

REPO = Path(__file__).resolve().parents[1]
#: Seed 004 (16 layers, 64 experts on the seed card): solved in ~0.1 s, OPTIMAL.
SEED_PATH = REPO / "instances/seeds/004-moe-16l-tp8-ep8-pp2.yaml"


# ----------------------------------------------------------------------------------------------
# Waiting
# ----------------------------------------------------------------------------------------------


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0, step_s: float = 0.005,
               ) -> float:
    """Seconds until ``condition()`` held; fails after ``timeout_s``."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"condition not met within {timeout_s} s")
        time.sleep(step_s)
    return time.monotonic() - start


def wait_pool_idle(pool: WorkerPool, timeout_s: float = 30.0) -> None:
    """Until no call holds or waits for a worker and every worker and spare is ready again (a
    stopped solve may still be winding down, a killed worker's replacement still starting)."""
    wait_until(lambda: pool.busy == 0 and pool.waiting == 0
               and pool.idle == pool.size + pool.spares, timeout_s=timeout_s)


# ----------------------------------------------------------------------------------------------
# The command line
# ----------------------------------------------------------------------------------------------


@pytest.fixture()
def runner() -> CliRunner:
    return CliRunner()


def run(runner: CliRunner, *args: Any) -> Any:
    """``moeplan ARGS`` in process; exceptions propagate (a traceback fails the test)."""
    from moeplan.cli import app

    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def one_error_line(result: Any, field: str) -> str:
    """Exit 2, nothing on stdout, exactly one ``error:`` line on stderr naming ``field``."""
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    assert result.stdout == "", result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert field in lines[0], (field, lines[0])
    assert "Traceback" not in result.stderr
    return lines[0]


# ----------------------------------------------------------------------------------------------
# Servers
# ----------------------------------------------------------------------------------------------


@contextmanager
def serving(config: ServerConfig, pool: WorkerPool | None = None,
            ) -> Iterator[tuple[ServerThread, str]]:
    """A real server on its own thread: ``(server, "127.0.0.1:PORT")``, stopped on exit."""
    from service.server import ServerThread

    server = ServerThread(config, pool)
    port = server.start()
    try:
        yield server, f"127.0.0.1:{port}"
    finally:
        server.stop(0.5)
