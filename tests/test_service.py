"""The gRPC service end to end: a real server on 127.0.0.1, real channels, the real planner.

One server (1 solver worker, queue 1, one warm spare) serves most tests; a second one has TLS and
a bearer token; the SIGTERM test runs ``moeplan serve`` as a subprocess. Instances:

- ``SEED``: seed 004, solved in ~0.1 s;
- ``STREAM``: 32 layers on the seed card with a total-throughput target over a batch range; the
  first plan CP-SAT finds uses 30 GPUs, the optimal one 28, so the stream carries several
  improving plans (with one search thread: a deterministic search);
- ``LONG``: 64 layers, 8M tokens/s over a batch range: runs for ~45 s on 2 CPUs (it is always
  cut short by a deadline or a cancel here), with a first plan after a few milliseconds.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import yaml
from conftest import REPO, SEED_PATH, one_error_line, serving, wait_pool_idle, wait_until
from google.protobuf import descriptor_pb2
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from grpc_status import rpc_status
from typer.testing import CliRunner

from moeplan.cli import app
from moeplan.cli import estimate_document as cli_estimate_document
from service import convert
from service._gen.moeplan.v1 import planner_pb2 as pb
from service._gen.moeplan.v1 import planner_pb2_grpc as pb_grpc
from service.client import AsyncPlannerClient, AuthenticationError, PlannerClient
from service.server import ServerConfig, ServerThread
from service.servicer import solve_budget
from service.workers import DeadlineTooShort
from solver import contract, planner
from solver.estimate import evaluate
from solver.instance import InputError, instance_from_dict, load_instance
from solver.presets import load_model_preset, model_preset_names
from solver.verify import verify

pytestmark = pytest.mark.e2e

SEED = load_instance(SEED_PATH)


def _small_moe(num_layers: int) -> dict:
    return {"name": f"moe-{num_layers}l", "num_layers": num_layers, "hidden_size": 1024,
            "attention": {"kind": "gqa", "num_heads": 16, "num_kv_heads": 16, "head_dim": 64},
            "num_experts": 64, "top_k": 2, "expert_ffn_width": 2048, "gated_ffn": False,
            "vocab_size": 32000, "weight_precision": "fp8"}


# CP-SAT's first plan uses 30 GPUs (with 6,668 output tokens/s per GPU), the optimal one 28
# (7,144): each improving plan is streamed.
STREAM = instance_from_dict({
    "name": "stream", "model": _small_moe(32), "hardware": "seed-card",
    "workload": {"input_len": 1024, "output_len": 512, "batch": {"min": 1, "max": 1024},
                 "targets": {"min_output_tokens_per_s": 200_000}},
    "search": {"time_limit_s": 30, "workers": 1},  # one CP-SAT thread: a deterministic search
})
LONG = instance_from_dict({
    "name": "long", "model": _small_moe(64), "hardware": "seed-card",
    "workload": {"input_len": 1024, "output_len": 512, "batch": {"min": 1, "max": 2048},
                 "targets": {"min_output_tokens_per_s": 8_000_000}},
    "search": {"time_limit_s": 100},
})


def request(instance, **kwargs) -> pb.SolveRequest:
    return pb.SolveRequest(instance=convert.instance_to_proto(instance), **kwargs)


# ----------------------------------------------------------------------------------------------
# Fixtures
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[ServerThread, str]]:
    with serving(ServerConfig(port=0, workers=1, queue=1, spares=1, max_time_limit_s=120,
                              max_message_bytes=1 << 20, grace_s=1)) as server:
        yield server


@pytest.fixture()
def server(served) -> Iterator[tuple[ServerThread, str]]:
    """The module's server, idle with its spare ready."""
    wait_pool_idle(served[0].server.pool)
    yield served


@pytest.fixture()
def stub(server) -> Iterator[pb_grpc.PlannerStub]:
    with grpc.insecure_channel(server[1]) as channel:
        yield pb_grpc.PlannerStub(channel)


@pytest.fixture()
def client(server) -> Iterator[PlannerClient]:
    with PlannerClient(server[1]) as c:
        yield c


# ----------------------------------------------------------------------------------------------
# Health, reflection, presets
# ----------------------------------------------------------------------------------------------


def test_health_reports_serving(server):
    with grpc.insecure_channel(server[1]) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "moeplan.v1.Planner"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def _reflect(channel: grpc.Channel, req: reflection_pb2.ServerReflectionRequest,
             version: str = "v1alpha", **kw):
    """One reflection request and its answer. grpcio-reflection has only v1alpha's stubs; v1 is
    the same messages (field numbers and all) under package ``grpc.reflection.v1``, so a v1
    call is those bytes sent to the v1 method."""
    call = channel.stream_stream(
        f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
    return next(iter(call(iter([req]), timeout=5, **kw)))


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
def test_reflection_lists_and_describes_the_planner(server, version):
    with grpc.insecure_channel(server[1]) as channel:
        listed = _reflect(channel, reflection_pb2.ServerReflectionRequest(list_services=""),
                          version)
        names = {s.name for s in listed.list_services_response.service}
        assert {"moeplan.v1.Planner", "grpc.health.v1.Health",
                "grpc.reflection.v1.ServerReflection",
                "grpc.reflection.v1alpha.ServerReflection"} <= names
        for name in names:  # what grpcurl's `describe` of every listed service asks
            reply = _reflect(channel, reflection_pb2.ServerReflectionRequest(
                file_containing_symbol=name), version)
            assert reply.HasField("file_descriptor_response"), (name, reply.error_response)
        found = _reflect(channel, reflection_pb2.ServerReflectionRequest(
            file_containing_symbol="moeplan.v1.Planner"), version)
        files = [descriptor_pb2.FileDescriptorProto.FromString(raw)
                 for raw in found.file_descriptor_response.file_descriptor_proto]
        service = next(s for f in files for s in f.service if s.name == "Planner")
        assert {m.name for m in service.method} == {
            "Solve", "SolveStream", "Verify", "Estimate", "ListPresets", "Export", "Pareto"}
        stream = next(m for m in service.method if m.name == "SolveStream")
        assert stream.server_streaming


def test_list_presets(client):
    presets = client.list_presets()
    assert presets == client.list_presets()  # cached on the server
    assert [m["name"] for m in presets["models"]] == model_preset_names()
    for entry in presets["models"]:
        assert entry["spec"] == load_model_preset(entry["name"])
        assert entry["active_params"] < entry["total_params"]
    assert "seed-card" in {h["name"] for h in presets["hardware"]}


# ----------------------------------------------------------------------------------------------
# Solve, SolveStream, Verify, Estimate
# ----------------------------------------------------------------------------------------------


def test_solve_gives_the_local_answer(client):
    remote = client.solve(SEED)
    local = planner.solve(SEED)
    assert remote.status == local.status == "OPTIMAL"
    assert (remote.objective, remote.bound) == (local.objective, local.bound)
    assert remote.plan == local.plan and remote.metrics == local.metrics
    assert remote.experts == local.experts
    assert remote.model_dump(exclude={"solve_time_s"}) == local.model_dump(
        exclude={"solve_time_s"})  # every field, new ones included (search_space, advice...)


def _local_estimate(instance, plan) -> contract.EstimateOut:
    """What `moeplan estimate --json` prints for the plan."""
    return contract.EstimateOut.model_validate(
        cli_estimate_document(instance, evaluate(instance, plan)))


def test_solve_response_carries_the_plans_estimate(stub):
    """SolveResponse = the document `moeplan solve --json` prints: result and estimate."""
    reply = stub.Solve(request(SEED), timeout=60)
    result = convert.solve_result_from_proto(reply.result)
    assert reply.HasField("estimate")
    assert convert.estimate_from_proto(reply.estimate) == _local_estimate(SEED, result.plan)
    assert [(r.name, r.value.WhichOneof("kind")) for r in reply.result.search_space][-1] == (
        "batch", "number_value")
    assert result.search_space["batch"] == 128  # a JSON number, read back as an int
    messages = list(stub.SolveStream(request(STREAM), timeout=60))
    assert not any(m.HasField("estimate") for m in messages[:-1])
    final = messages[-1]
    assert final.final and final.HasField("estimate")
    plan = convert.solve_result_from_proto(final.result).plan
    assert convert.estimate_from_proto(final.estimate) == _local_estimate(STREAM, plan)


def test_solve_from_a_hand_built_request(stub):
    """What a client in another language sends: presets by name, a few fields, no pydantic."""
    req = pb.SolveRequest(instance=pb.Instance(
        model_preset="qwen3-30b-a3b", hardware_preset="h100-sxm",
        workload=pb.Workload(input_len=1024, output_len=256, fixed_batch=16)))
    result = stub.Solve(req, timeout=60).result
    assert result.status == pb.SOLVE_STATUS_OPTIMAL
    assert result.HasField("objective") and result.objective == result.bound
    assert result.plan.degrees.tp * result.plan.degrees.pp >= 1
    assert result.metrics.ttft_s > 0


CLIENT_FROM_PROTO = """
import sys, grpc, planner_pb2 as pb, planner_pb2_grpc as rpc
stub = rpc.PlannerStub(grpc.insecure_channel(sys.argv[1]))
reply = stub.Solve(pb.SolveRequest(instance=pb.Instance(
    model_preset="qwen3-30b-a3b", hardware_preset="h100-sxm",
    workload=pb.Workload(input_len=1024, output_len=256, fixed_batch=16))), timeout=60)
print(pb.SolveStatus.Name(reply.result.status), reply.result.objective)
"""


def test_a_client_generated_from_the_proto_alone(server, tmp_path):
    """Only the .proto, a fresh protoc run and grpcio: no moeplan code on the client side."""
    shutil.copy(REPO / "protos/moeplan/v1/planner.proto", tmp_path)
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I.", "--python_out=.",
                    "--grpc_python_out=.", "planner.proto"], cwd=tmp_path, check=True)
    (tmp_path / "client.py").write_text(CLIENT_FROM_PROTO)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "client.py", server[1]], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    status, gpus = done.stdout.split()
    assert status == "SOLVE_STATUS_OPTIMAL" and int(gpus) >= 1


NODE_EXAMPLE = REPO / "examples/node"


@pytest.fixture(scope="module")
def node_modules(tmp_path_factory) -> Path:
    """The Node example's dependencies, installed from its package-lock.json (``npm ci``) into
    a temporary directory, so the repository stays clean."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed to run examples/node")
    d = tmp_path_factory.mktemp("node")
    for name in ("package.json", "package-lock.json"):
        shutil.copy(NODE_EXAMPLE / name, d)
    done = subprocess.run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=d,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return d / "node_modules"


def test_the_node_client_example(server, node_modules):
    """examples/node/client.js (grpc-js + proto-loader) against a live server: health, a Solve
    of seed 004 that matches the library's, and the field violations of INVALID_ARGUMENT."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOEPLAN_")}
    env["NODE_PATH"] = str(node_modules)
    done = subprocess.run(["node", str(NODE_EXAMPLE / "client.js"), server[1]], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    local = planner.solve(SEED)
    d = local.plan.degrees
    with pytest.raises(InputError) as bad:  # what the client's bad request must be told
        instance_from_dict({**yaml.safe_load(SEED_PATH.read_text()),
                            "workload": {"input_len": 0, "output_len": 1024, "batch": 128}})
    field, rule = bad.value.violations[0]
    assert done.stdout.splitlines() == [
        "health moeplan.v1.Planner: SERVING",
        f"solve {SEED.name}: SOLVE_STATUS_OPTIMAL, {local.objective} GPUs (bound {local.bound}), "
        f"tp={d.tp} pp={d.pp} dp={d.dp} cp={d.cp} ep={d.ep} etp={d.etp} edp={d.edp} "
        f"replicas={d.replicas}, batch {local.plan.batch}",
        f"invalid request: INVALID_ARGUMENT: {bad.value}",
        f"  field violation: {field}: {rule}",
    ]


def test_cli_solve_on_the_server_prints_the_local_output(server):
    runner = CliRunner()
    outputs = {}
    for where, extra in (("remote", ["--server", server[1]]), ("local", [])):
        text = runner.invoke(app, ["solve", str(SEED_PATH), *extra], catch_exceptions=False)
        doc = runner.invoke(app, ["solve", str(SEED_PATH), "--json", *extra],
                            catch_exceptions=False)
        assert text.exit_code == doc.exit_code == 0, text.output + doc.output
        parsed = json.loads(doc.stdout)
        parsed.pop("solve_time_s")
        # The first line holds the wall time; everything else must be identical.
        outputs[where] = (text.stdout.splitlines()[1:], parsed)
    assert outputs["remote"] == outputs["local"]


def test_solve_stream_yields_improving_plans_then_the_final_one(client):
    messages = list(client.solve_stream(STREAM))
    improving = [r for final, r in messages if not final]
    finals = [r for final, r in messages if final]
    assert len(finals) == 1 and messages[-1][0], "exactly one final message, and it is last"
    assert len(improving) >= 2, [r.objective for r in improving]
    gpus = [r.objective for r in improving]
    assert gpus == sorted(gpus, reverse=True)  # never more GPUs than an earlier plan
    for r in improving:
        assert r.status == "FEASIBLE" and r.plan is not None and r.bound <= r.objective
    final = finals[0]
    assert final.status == "OPTIMAL" and final.objective == final.bound == gpus[-1]

    # The objective is lexicographic (GPUs, then output tokens/s per GPU, then TTFT): each
    # streamed plan beats the one before, and the first plan CP-SAT found was not optimal.
    def rank(r):
        return (r.objective, -round(r.metrics.output_tokens_per_s_per_gpu, 6), r.metrics.ttft_s)

    ranks = [rank(r) for r in improving]
    assert all(a > b for a, b in zip(ranks, ranks[1:], strict=False)), ranks
    assert rank(improving[0]) > rank(final)


def test_async_client(server):
    async def run():
        async with AsyncPlannerClient(server[1]) as c:
            result = await c.solve(SEED)
            stream = [(final, r.objective) async for final, r in c.solve_stream(STREAM)]
            report = await c.verify(SEED)
            return result, stream, report

    result, stream, report = asyncio.run(run())
    assert result.status == "OPTIMAL"
    assert stream[-1][0] and sum(1 for final, _ in stream if not final) >= 2
    assert report == _local_verify(SEED)


def _local_verify(instance, plan=None) -> contract.VerifyOut:
    """What `moeplan verify --json` prints for the plan."""
    report = verify(instance, plan)
    return contract.verify_out(report, contract.EstimateOut.model_validate(
        cli_estimate_document(instance, report.evaluation)))


def test_verify_and_estimate_match_the_library(client):
    """The documents `moeplan verify --json` / `estimate --json` print, field for field."""
    remote = client.verify(SEED)  # the claimed plan, with violations
    assert not remote.valid and remote == _local_verify(SEED)
    assert client.estimate(SEED) == _local_estimate(SEED, SEED.claimed_plan)
    plan = planner.solve(SEED).plan
    remote = client.verify(SEED, plan)
    assert remote.valid and remote == _local_verify(SEED, plan)
    assert client.estimate(SEED, plan) == _local_estimate(SEED, plan)
    for doc in (remote, client.estimate(STREAM, plan.model_copy(update={"batch": 64}))):
        assert doc.schema_version == contract.SCHEMA_VERSION


def test_every_document_field_is_in_the_proto():
    """fill_message (json_format.ParseDict) refuses a key the message lacks: every field of
    the schema and the contract, set, survives the trip (and the trip back)."""
    solved = planner.solve(STREAM)
    plan = solved.plan
    result = solved.model_copy(update={
        "advice": "raise the time limit", "tie_breaks_proved": ("fewest total GPUs",),
        "search_space": {"max_pp": 4, "fix": {"tp": 2}, "forbid": {"cp": [2, 4]},
                         "batch": {"min": 1, "max": 1024}, "tp·cp": "within a node"},
        "explanation": None})
    assert convert.solve_result_from_proto(convert.solve_result_to_proto(result)) == result
    doc = _local_estimate(STREAM, plan)
    assert convert.estimate_from_proto(convert.estimate_to_proto(doc)) == doc
    verified = _local_verify(STREAM, plan.model_copy(update={"degrees": plan.degrees.model_copy(
        update={"ep": 3})}))
    assert convert.verify_from_proto(convert.verify_to_proto(verified)) == verified
    full = instance_from_dict({
        **STREAM_DOC, "model": {**_small_moe(16), "weight_block_size": 128},
        "engine": {"name": "sglang", "gpu_memory_utilization": 0.8,
                   "max_num_batched_tokens": 4096, "step_overhead_us": 15.0,
                   "ep_dispatch_precision": "fp8", "overlap": "two_batch"},
        "workload": {"input_len": 1024, "output_len": 512, "batch": {"min": 4, "max": 64}},
        "search": {"max_pp": 4, "max_cp": 2, "max_dp": 8, "ep_cross_node": False},
        "claimed_plan": {**plan.model_dump(), "redundant_experts": 0}})
    assert convert.instance_from_proto(convert.instance_to_proto(full)) == full


# ----------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------


def _with(instance_doc: dict, path: str, value) -> dict:
    doc = json.loads(json.dumps(instance_doc))
    *parents, last = path.split(".")
    node = doc
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return doc


STREAM_DOC = {"model": _small_moe(16), "hardware": "seed-card",
              "workload": {"input_len": 1024, "output_len": 512, "batch": 64}}


@pytest.mark.parametrize("doc, field", [
    (_with(STREAM_DOC, "workload.targets.max_ttft_s", -1.0), "workload.targets.max_ttft_s"),
    (_with(STREAM_DOC, "workload.input_len", 0), "workload.input_len"),
    (_with(STREAM_DOC, "search.fix.tp", 0), "search.fix.tp"),
    (_with(STREAM_DOC, "model", "/etc/passwd"), "model"),
    (_with(STREAM_DOC, "hardware", "seedcard"), "hardware"),
    (_with(STREAM_DOC, "search.time_limit_s", 500.0), "search.time_limit_s"),
    ({k: v for k, v in STREAM_DOC.items() if k != "workload"}, "workload"),
])
def test_bad_input_is_invalid_argument_with_field_violations(stub, doc, field):
    msg = convert.fill_message(pb.Instance(), doc)
    with pytest.raises(grpc.RpcError) as info:
        stub.Solve(pb.SolveRequest(instance=msg), timeout=10)
    error = info.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(error)
    bad = error_details_pb2.BadRequest()
    assert status is not None and status.details[0].Unpack(bad)
    assert bad.field_violations[0].field == field, bad
    assert all(v.description for v in bad.field_violations)
    if field not in ("model", "search.time_limit_s"):
        # The same message as the CLI, which validates with the same function.
        with pytest.raises(InputError) as local:
            instance_from_dict(doc)
        assert error.details() == str(local.value)
    assert "Traceback" not in error.details()


def test_an_unknown_field_is_invalid_argument_not_ignored(stub):
    """BatchRange.step (field 3), which this version removed, from an old client: refused,
    naming where it was, rather than solved as if any batch in the range would do."""
    msg = convert.fill_message(pb.Instance(), _with(STREAM_DOC, "workload.batch",
                                                    {"min": 32, "max": 128}))
    msg.workload.batch_range.MergeFromString(bytes([3 << 3, 32]))  # step = 32
    assert msg.workload.batch_range.ListFields()[-1][1] == 128  # 3 is unknown to this .proto
    with pytest.raises(grpc.RpcError) as info:
        stub.Solve(pb.SolveRequest(instance=msg), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    bad = error_details_pb2.BadRequest()
    assert rpc_status.from_call(info.value).details[0].Unpack(bad)
    assert bad.field_violations[0].field == "workload.batch_range"
    assert "field number 3 of BatchRange" in info.value.details()
    # Unknown fields of the request itself, likewise.
    raw = pb.SolveRequest(instance=convert.instance_to_proto(SEED)).SerializeToString()
    with pytest.raises(grpc.RpcError) as info:
        stub.Solve.with_call(pb.SolveRequest.FromString(raw + bytes([9 << 3, 1])), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith("request: field number 9 of SolveRequest")


def test_client_raises_input_error_with_violations(client):
    with pytest.raises(InputError) as info:
        client.solve(SEED, time_limit_s=1000)  # above the server's 120 s cap
    assert info.value.field == "time_limit_s"
    assert info.value.violations[0][0] == "time_limit_s"
    with pytest.raises(InputError) as info:
        client.verify(STREAM)  # no plan and no claimed plan
    assert info.value.field == "plan"


def test_a_message_above_the_size_limit_is_refused(stub):
    big = convert.instance_to_proto(SEED)
    big.description = "x" * (1 << 20)  # the server accepts at most 1 MiB
    with pytest.raises(grpc.RpcError) as info:
        stub.Solve(pb.SolveRequest(instance=big), timeout=10)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_unreachable_server_is_a_connection_error():
    with PlannerClient("127.0.0.1:1") as c, pytest.raises(ConnectionError):
        c.solve(SEED, timeout_s=5)


# ----------------------------------------------------------------------------------------------
# Deadlines, cancellation, overload
# ----------------------------------------------------------------------------------------------


def test_solve_budget():
    # 10 s left: 1 s margin; the solver gets 9 s, the answer is due 0.5 s before the deadline.
    assert solve_budget(60.0, 10.0, now=100.0) == (9.0, 109.5)
    # 1 s left: the margin's 0.3 s floor; a shorter requested limit is kept.
    assert solve_budget(60.0, 1.0, now=0.0) == pytest.approx((0.7, 0.85))
    assert solve_budget(0.5, 10.0, now=0.0) == (0.5, 9.5)
    # From 0.35 s left the shortest solve (0.05 s) fits after the margin; below, it does not.
    assert solve_budget(60.0, 0.36, now=0.0) == pytest.approx((0.06, 0.21))
    for left in (0.349, 0.2, 0.0, -1.0):
        with pytest.raises(DeadlineTooShort, match="the deadline leaves"):
            solve_budget(60.0, left, now=0.0)
    # No deadline: the requested limit, stopped at 2x + 10 s if the planner overruns it.
    assert solve_budget(5.0, None, now=0.0) == (5.0, 20.0)


@pytest.mark.parametrize("deadline_s", [0.5, 1.5])
def test_a_short_deadline_answers_in_time_with_the_best_found(server, stub, deadline_s):
    # A worker still finishing the previous test's call would eat the short deadline (the
    # service then answers DEADLINE_EXCEEDED, tested below): start with one free.
    wait_pool_idle(server[0].server.pool)
    start = time.monotonic()
    result = stub.Solve(request(LONG), timeout=deadline_s).result  # no DEADLINE_EXCEEDED
    elapsed = time.monotonic() - start
    assert elapsed < deadline_s
    # The planner's first plan for LONG comes after a few milliseconds (FEASIBLE); it is not
    # proved in time (tests/test_service_workers.py checks the path with a scripted worker).
    assert result.status in (pb.SOLVE_STATUS_FEASIBLE, pb.SOLVE_STATUS_UNKNOWN)
    if result.status == pb.SOLVE_STATUS_FEASIBLE:
        assert result.HasField("plan") and result.bound <= result.objective


@pytest.mark.parametrize("deadline_s", [0.18, 0.3])
@pytest.mark.parametrize("method", ["Solve", "SolveStream"])
def test_a_deadline_too_short_to_solve_is_deadline_exceeded_at_once(server, stub, method,
                                                                    deadline_s):
    """Under 0.35 s leaves the solver less than its shortest time limit (0.05 s) once the
    margin (0.3 s) is kept back: the server answers DEADLINE_EXCEEDED before the deadline, and
    no solve starts."""
    pool = server[0].server.pool
    started = pool.jobs_started
    t0 = time.monotonic()
    with pytest.raises(grpc.RpcError) as info:
        list(stub.SolveStream(request(LONG), timeout=deadline_s)) if method == "SolveStream" \
            else stub.Solve(request(LONG), timeout=deadline_s)
    elapsed = time.monotonic() - t0
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "the deadline leaves" in info.value.details()  # the server's answer, not the timer
    assert elapsed < deadline_s and pool.jobs_started == started


def _cancel_and_restart(srv: ServerThread, stub: pb_grpc.PlannerStub) -> float:
    """Cancel a running LONG solve and return the seconds until the next call's job reaches
    the (only) worker: the worker is free and the new call has started."""
    pool = srv.server.pool
    started = pool.jobs_started
    long_call = stub.SolveStream(request(LONG), timeout=60)
    wait_until(lambda: pool.jobs_started == started + 1)
    time.sleep(0.5)  # well into the solve
    t0 = time.monotonic()
    long_call.cancel()
    next_call = stub.Solve.future(request(SEED), timeout=30)
    wait_until(lambda: pool.jobs_started == started + 2, timeout_s=5)
    restart = time.monotonic() - t0
    assert next_call.result().result.status == pb.SOLVE_STATUS_OPTIMAL
    return restart


def test_cancel_stops_the_solve_and_frees_the_worker(server, stub):
    restart = _cancel_and_restart(server[0], stub)
    assert restart < 0.5, restart


def test_a_worker_that_does_not_stop_is_killed_and_a_spare_takes_over(server, stub):
    pool = server[0].server.pool
    replaced, grace = pool.replaced, pool.stop_grace_s
    pool.stop_grace_s = 0.0  # do not wait for the planner: kill at once
    try:
        restart = _cancel_and_restart(server[0], stub)
    finally:
        pool.stop_grace_s = grace
    assert pool.replaced == replaced + 1
    assert restart < 0.5, restart
    # The killed process is replaced: 1 worker + 1 spare again.
    wait_until(lambda: pool.idle == 2 and len(pool.worker_pids()) == 2, timeout_s=30)


def test_overload_is_resource_exhausted(server, stub):
    srv, _ = server
    pool = srv.server.pool
    running = stub.Solve.future(request(LONG), timeout=60)
    wait_until(lambda: pool.busy == 1)
    queued = stub.Solve.future(request(LONG), timeout=60)
    wait_until(lambda: pool.waiting == 1)
    try:
        with pytest.raises(grpc.RpcError) as info:
            stub.Solve(request(SEED), timeout=10)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "busy" in info.value.details()
        # The command line says so in one line naming the server (not an internal error).
        line = one_error_line(CliRunner().invoke(app, ["solve", str(SEED_PATH), "--server",
                                                       server[1]]), "--server")
        assert line.startswith(f"error: --server: {server[1]} answered RESOURCE_EXHAUSTED: "
                               "server busy"), line
    finally:
        queued.cancel()
        running.cancel()
    wait_until(lambda: pool.busy == 0 and pool.waiting == 0)


# ----------------------------------------------------------------------------------------------
# TLS and bearer tokens
# ----------------------------------------------------------------------------------------------

TOKEN = "s3cret-t0ken-for-tests"


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> Path:
    """A directory with cert.pem and its key.pem (CN localhost, 127.0.0.1), and other-key.pem."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem"), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True)
    subprocess.run(["openssl", "genrsa", "-out", str(d / "other-key.pem"), "2048"], check=True,
                   capture_output=True)
    return d


@pytest.fixture(scope="module")
def secure(tls_files) -> Iterator[tuple[str, bytes]]:
    config = ServerConfig(port=0, workers=1, queue=1, spares=0, token=TOKEN,
                          tls_cert=tls_files / "cert.pem", tls_key=tls_files / "key.pem")
    with serving(config) as (_, address):
        yield address, (tls_files / "cert.pem").read_bytes()


def test_tls_and_token(secure, caplog):
    address, ca = secure
    caplog.set_level("INFO")
    with PlannerClient(address, token=TOKEN, root_certificates=ca) as good:
        assert good.list_presets()["models"]
        assert good.solve(SEED).status == "OPTIMAL"
    for token, says in (("", "requires a bearer token and none was sent"),
                        ("wrong-token", "refused the bearer token")):
        with PlannerClient(address, token=token, root_certificates=ca) as bad:
            with pytest.raises(AuthenticationError) as info:
                bad.list_presets()
            assert str(info.value).startswith(f"token: {address} {says} (UNAUTHENTICATED: ")
    # Raw calls: no metadata, a wrong scheme; reflection needs the token; health does not.
    creds = grpc.ssl_channel_credentials(ca)
    with grpc.secure_channel(address, creds) as channel:
        stub = pb_grpc.PlannerStub(channel)
        for metadata in ((), (("authorization", f"Basic {TOKEN}"),)):
            with pytest.raises(grpc.RpcError) as info:
                stub.ListPresets(pb.ListPresetsRequest(), timeout=5, metadata=metadata)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        for version in ("v1", "v1alpha"):
            with pytest.raises(grpc.RpcError) as info:
                _reflect(channel, reflection_pb2.ServerReflectionRequest(list_services=""),
                         version)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            listed = _reflect(channel, reflection_pb2.ServerReflectionRequest(list_services=""),
                              version, metadata=(("authorization", f"Bearer {TOKEN}"),))
            assert listed.list_services_response.service
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == (
            health_pb2.HealthCheckResponse.SERVING)
    # Plaintext to a TLS server fails.
    with PlannerClient(address, token=TOKEN) as plain, pytest.raises(ConnectionError):
        plain.list_presets(timeout_s=5)
    assert "refused" in caplog.text and TOKEN not in caplog.text


@pytest.mark.parametrize("token, says", [
    (None, "requires a bearer token and none was sent"),
    ("wrong-token", "refused the bearer token"),
])
def test_cli_client_with_a_missing_or_wrong_token_says_so(secure, tls_files, monkeypatch,
                                                         token, says):
    """Not "cannot reach": the server answered, and refused the credentials."""
    address, _ = secure
    monkeypatch.setenv("MOEPLAN_TLS_CA", str(tls_files / "cert.pem"))
    if token is None:
        monkeypatch.delenv("MOEPLAN_TOKEN", raising=False)
    else:
        monkeypatch.setenv("MOEPLAN_TOKEN", token)
    line = one_error_line(CliRunner().invoke(app, ["solve", str(SEED_PATH), "--server", address]),
                          "token")
    assert line.startswith(f"error: token: {address} {says} (UNAUTHENTICATED: "), line
    assert "cannot reach" not in line


def _serve_until_it_exits(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """``moeplan serve ARGS`` expected to refuse to start; a server that starts instead is
    stopped and the test fails (rather than serving until the suite times out)."""
    proc = subprocess.Popen([sys.executable, "-m", "moeplan", "serve", "--port", "0",
                             "--workers", "1", *args], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        stdout, stderr = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        pytest.fail(f"the server started: {stdout!r}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


@pytest.mark.parametrize("value", ["", "   ", "two words"])
def test_a_blank_token_is_an_error_not_no_authentication(monkeypatch, value):
    env = {**os.environ, "PYTHONPATH": str(REPO), "MOEPLAN_TOKEN": value}
    done = _serve_until_it_exits(env)
    assert done.returncode == 2 and done.stdout == "", (done.stdout, done.stderr)
    assert done.stderr.startswith("error: $MOEPLAN_TOKEN: set but ") and (
        done.stderr.count("\n") == 1), done.stderr
    assert "unset it to serve without authentication" in done.stderr
    monkeypatch.setenv("MOEPLAN_TOKEN", value)
    for token in (value, "\t"):
        with pytest.raises(InputError, match="token: must be a non-empty token"):
            ServerConfig(token=token)
    with pytest.raises(InputError, match="MOEPLAN_TOKEN: set but"):  # the client, likewise
        PlannerClient("127.0.0.1:1")


@pytest.mark.parametrize("cert, key, option, says", [
    ("garbage.pem", "key.pem", "--tls-cert", "is not a valid PEM certificate chain"),
    ("key.pem", "key.pem", "--tls-cert", "is not a valid PEM certificate chain"),
    ("cert.pem", "garbage.pem", "--tls-key", "is not a valid PEM private key"),
    ("cert.pem", "cert.pem", "--tls-key", "is not a valid PEM private key"),
    ("cert.pem", "other-key.pem", "--tls-key", "is not the private key of the certificate"),
    ("cert.pem", "encrypted-key.pem", "--tls-key", "is encrypted"),
])
def test_serve_names_the_invalid_tls_file(tls_files, cert, key, option, says):
    (tls_files / "garbage.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64\n")
    if not (tls_files / "encrypted-key.pem").exists():
        subprocess.run(["openssl", "pkcs8", "-topk8", "-in", str(tls_files / "key.pem"),
                        "-passout", "pass:secret", "-out", str(tls_files / "encrypted-key.pem")],
                       check=True, capture_output=True)
    env = {k: v for k, v in os.environ.items() if k != "MOEPLAN_TOKEN"}
    done = _serve_until_it_exits({**env, "PYTHONPATH": str(REPO)}, "--tls-cert",
                                 str(tls_files / cert), "--tls-key", str(tls_files / key))
    assert done.returncode == 2 and done.stdout == "", (done.stdout, done.stderr)
    assert done.stderr.startswith(f"error: {option}: ") and done.stderr.count("\n") == 1, (
        done.stderr)
    assert says in done.stderr and "cannot listen" not in done.stderr, done.stderr


# ----------------------------------------------------------------------------------------------
# moeplan serve: options and graceful shutdown
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("args, field", [
    (["--tls-cert", "cert.pem"], "--tls-cert and --tls-key"),
    (["--workers", "0"], "--workers"),
    (["--max-time-limit", "0"], "--max-time-limit"),
    (["--token-file", "/nonexistent/token"], "--token-file"),
])
def test_serve_rejects_bad_options(args, field):
    result = CliRunner().invoke(app, ["serve", *args])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {field}") and result.stderr.count("\n") == 1


def test_sigterm_lets_the_in_flight_call_finish_then_exits_0():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("MOEPLAN_TOKEN", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "moeplan", "serve", "--port", "0", "--workers", "1",
         "--grace", "5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        cwd=REPO)
    try:
        line = proc.stdout.readline()
        assert line.startswith("listening on "), line + proc.stderr.read()
        address = line.split()[-1]
        with grpc.insecure_channel(address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            watch = health.Watch(health_pb2.HealthCheckRequest(service="moeplan.v1.Planner"))
            assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
            stub = pb_grpc.PlannerStub(channel)
            # In flight for ~2 s: the deadline cuts LONG short and the answer is still OK.
            call = stub.Solve.future(request(LONG), timeout=2.5)
            time.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
            watch.cancel()
            with pytest.raises(grpc.RpcError) as refused:  # no new calls while draining
                stub.ListPresets(pb.ListPresetsRequest(), timeout=5)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            result = call.result().result
            assert result.status in (pb.SOLVE_STATUS_FEASIBLE, pb.SOLVE_STATUS_UNKNOWN)
        assert proc.wait(timeout=20) == 0
        assert "shutting down" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ----------------------------------------------------------------------------------------------
# The checked-in stubs match the .proto
# ----------------------------------------------------------------------------------------------

PROTO = "protos/moeplan/v1/planner.proto"
GENERATED = ("planner_pb2.py", "planner_pb2.pyi", "planner_pb2_grpc.py")
GEN_DIR = REPO / "service/_gen/moeplan/v1"


def _protoc(*args: str) -> None:
    """``make protos``, with other output options (a subprocess: protoc aborts the process when
    run in one that has already loaded the generated descriptors)."""
    done = subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-Iservice/_gen=protos",
                           *args, PROTO], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def _drop_json_names(messages) -> None:
    """protoc adds json_name to descriptor sets but not to generated code."""
    for message in messages:
        for field in message.field:
            field.ClearField("json_name")
        _drop_json_names(message.nested_type)


def test_stubs_describe_the_proto(tmp_path):
    """The descriptor compiled into the checked-in stubs is the .proto's (any tool version)."""
    _protoc(f"--descriptor_set_out={tmp_path / 'set.pb'}")
    compiled = descriptor_pb2.FileDescriptorSet.FromString(
        (tmp_path / "set.pb").read_bytes()).file[0]
    _drop_json_names(compiled.message_type)
    checked_in = descriptor_pb2.FileDescriptorProto.FromString(pb.DESCRIPTOR.serialized_pb)
    assert checked_in == compiled, "service/_gen is stale: run `make protos`"


def test_stubs_are_what_make_protos_writes(tmp_path):
    tools = importlib.metadata.version("grpcio-tools")
    recorded = (GEN_DIR / "planner_pb2_grpc.py").read_text()
    if f"GRPC_GENERATED_VERSION = '{tools}'" not in recorded:
        pytest.skip(f"stubs were generated by another grpcio-tools than the installed {tools}")
    _protoc(f"--python_out={tmp_path}", f"--pyi_out={tmp_path}",
            f"--grpc_python_out={tmp_path}")
    for name in GENERATED:
        fresh = (tmp_path / "service/_gen/moeplan/v1" / name).read_text()
        assert fresh == (GEN_DIR / name).read_text(), f"{name} is stale: run `make protos`"



def test_an_unknown_enum_number_is_invalid_argument_not_a_silent_default(stub):
    """proto3 enums are open: precision 99 must not quietly become the default precision."""
    msg = convert.fill_message(pb.Instance(), STREAM_DOC)
    msg.model_spec.weight_precision = 99
    with pytest.raises(grpc.RpcError) as info:
        stub.Solve(pb.SolveRequest(instance=msg), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    bad = error_details_pb2.BadRequest()
    assert rpc_status.from_call(info.value).details[0].Unpack(bad)
    assert bad.field_violations[0].field == "model_spec.weight_precision"
    assert "99" in bad.field_violations[0].description
