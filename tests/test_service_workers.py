"""The worker pool's failure paths, with scripted worker processes instead of the planner.

The planner cannot be made to misbehave on demand, so these tests start a real server whose
worker processes run :func:`scripted_worker`: it reads the instance name as a script
("improve-then-hang", "crash", "raise", anything else: answer at once). Everything else — the
server, the pool, the pipes, the deadline and kill logic — is the production code.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import grpc
import pytest
from conftest import SEED_PATH, serving, wait_pool_idle

from service import convert
from service._gen.moeplan.v1 import planner_pb2 as pb
from service._gen.moeplan.v1 import planner_pb2_grpc as pb_grpc
from service.errors import INTERNAL_MESSAGE
from service.server import PlannerServer, ServerConfig
from service.workers import WorkerPool
from solver.instance import load_instance
from solver.schema import Degrees, Plan, SolveResult

pytestmark = pytest.mark.e2e

SEED = load_instance(SEED_PATH)
#: The improving plan the scripted worker reports before it hangs.
IMPROVEMENT = SolveResult(
    status="FEASIBLE", plan=Plan(degrees=Degrees(tp=4, replicas=3), batch=128), objective=12,
    bound=3, gap=0.75, solve_time_s=0.01, solver="scripted")


def scripted_worker(conn, stop) -> None:
    """A worker process that follows the script named by the instance."""
    conn.send(("ready", os.getpid()))
    while True:
        job = conn.recv()
        if job is None:
            return
        script = job.instance.name
        if script == "improve-then-hang":
            conn.send(("improvement", IMPROVEMENT))
            while True:  # ignores ``stop``: the pool must kill it
                time.sleep(1)
        elif script == "crash":
            os._exit(3)
        elif script == "raise":
            conn.send(("error", "ZeroDivisionError: division by zero",
                       "Traceback (most recent call last):\n  ...\nZeroDivisionError"))
        else:
            conn.send(("done", IMPROVEMENT.model_copy(update={"status": "OPTIMAL", "bound": 12})))


@pytest.fixture(scope="module")
def scripted() -> Iterator[tuple[PlannerServer, str]]:
    with serving(ServerConfig(port=0, grace_s=0.5),
                 pool=WorkerPool(1, 1, spares=1, target=scripted_worker)) as (srv, address):
        yield srv.server, address


def _request(script: str) -> pb.SolveRequest:
    return pb.SolveRequest(instance=convert.instance_to_proto(
        SEED.model_copy(update={"name": script})))


def _wait_ready(pool: WorkerPool) -> None:
    wait_pool_idle(pool, timeout_s=30)


def test_deadline_answers_with_the_last_improving_plan(scripted):
    server, address = scripted
    _wait_ready(server.pool)
    replaced = server.pool.replaced
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.PlannerStub(channel)
        start = time.monotonic()
        result = stub.Solve(_request("improve-then-hang"), timeout=1.0).result
        assert time.monotonic() - start < 1.0
        assert result.status == pb.SOLVE_STATUS_FEASIBLE
        assert (result.objective, result.bound) == (12, 3)
        assert result.improving_solutions == 1
        # The hung worker is killed after the grace and a spare serves the next call at once.
        t0 = time.monotonic()
        assert stub.Solve(_request("fast"), timeout=5).result.status == pb.SOLVE_STATUS_OPTIMAL
        assert time.monotonic() - t0 < 0.8
    assert server.pool.replaced == replaced + 1


def test_stream_sends_the_improvement_then_the_timeout_answer(scripted):
    server, address = scripted
    _wait_ready(server.pool)
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.PlannerStub(channel)
        messages = list(stub.SolveStream(_request("improve-then-hang"), timeout=1.0))
    assert [m.final for m in messages] == [False, True]
    assert messages[0].result.objective == messages[1].result.objective == 12


@pytest.mark.parametrize("script", ["crash", "raise"])
def test_a_failing_worker_is_internal_without_details_and_the_pool_recovers(scripted, script,
                                                                             caplog):
    server, address = scripted
    _wait_ready(server.pool)
    caplog.set_level("ERROR")
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.PlannerStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.Solve(_request(script), timeout=10)
        assert info.value.code() == grpc.StatusCode.INTERNAL
        assert info.value.details() == INTERNAL_MESSAGE
        _wait_ready(server.pool)
        assert stub.Solve(_request("fast"), timeout=10).result.status == pb.SOLVE_STATUS_OPTIMAL
    expected = "ZeroDivisionError" if script == "raise" else "exited (code 3)"
    assert expected in caplog.text  # the details are in the server log only
