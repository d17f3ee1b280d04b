"""Two-pool plans through every interface: the library, the command line, the JSON contract,
the gRPC service and bench.

- ``moeplan solve`` on a ``serving: disaggregated | best`` instance prints both pools (and both
  modes side by side); ``--json`` validates against ``schema --what solve`` and its
  ``disagg_estimate`` against ``disagg-estimate``; ``--out`` writes a ``disagg-plan`` document
  that ``verify --plan`` and ``estimate --plan`` read back, as they read
  ``prefill:...;decode:...`` and the instance's ``claimed_disagg_plan``.
- Bad input is one line naming the field (exit 2; gRPC INVALID_ARGUMENT with the field).
- gRPC Solve/Verify/Estimate answer with the same documents as the CLI.
"""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import jsonschema
import pytest
import yaml
from conftest import one_error_line, serving
from typer.testing import CliRunner

from moeplan.cli import app
from service import convert
from service import disagg as service_disagg
from service._gen.moeplan.v1 import planner_pb2 as pb
from service._gen.moeplan.v1 import planner_pb2_grpc as pb_grpc
from service.client import PlannerClient
from service.server import ServerConfig
from solver import contract, disagg, planner
from solver.instance import InputError, instance_from_dict
from solver.schema import DisaggPlan

pytestmark = pytest.mark.integration

#: Qwen3-30B-A3B at 40 requests/s: one prefill GPU and four decode GPUs (the aggregated optimum
#: needs six), solved in about a second.
DOC = {"name": "qwen3-30b-disagg", "model": "qwen3-30b-a3b", "hardware": "h100-sxm",
       "serving": "disaggregated",
       "workload": {"input_len": 2000, "output_len": 500, "batch": {"min": 1, "max": 256},
                    "targets": {"min_output_tokens_per_s": 20000, "max_ttft_s": 2,
                                "max_tpot_s": 0.05}},
       "search": {"time_limit_s": 60}}


def _cli(*args: object, code: int = 0) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    return result.stdout


def _schema(what: str) -> dict:
    return json.loads(_cli("schema", "--what", what))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("disagg")
    paths = {"instance": root / "disagg.yaml", "best": root / "best.yaml",
             "plan": root / "plan.json", "solve": root / "solve.json"}
    paths["instance"].write_text(yaml.safe_dump(DOC))
    paths["best"].write_text(yaml.safe_dump({**DOC, "serving": "best"}))
    return paths


@pytest.fixture(scope="module")
def solved(files) -> dict:
    """``solve --json --out`` once for the module."""
    text = _cli("solve", files["instance"], "--json", "--out", files["plan"])
    files["solve"].write_text(text)
    return json.loads(text)


# ----------------------------------------------------------------------------------------------
# The library
# ----------------------------------------------------------------------------------------------


def test_library_solve_verify_estimate_and_the_pools_for_export() -> None:
    inst = instance_from_dict(DOC)
    result = planner.solve(inst)
    assert result.status == "OPTIMAL" and result.serving == "disaggregated"
    plan = result.disagg_plan
    assert result.plan is None and plan is not None
    assert result.objective == plan.gpus == result.bound
    report = disagg.verify(inst, plan)
    assert report.valid
    assert disagg.estimate(inst, plan) == result.disagg_metrics
    assert result.metrics == disagg.as_metrics(result.disagg_metrics)
    pools = disagg.pool_plans(inst, plan)
    assert pools.decode == plan.decode
    assert pools.prefill.degrees == plan.prefill.degrees
    assert pools.prefill_tokens_per_step == plan.prefill.tokens_per_step
    d = plan.prefill.degrees
    assert pools.prefill.batch == d.dp * d.pp * -(-plan.prefill.tokens_per_step // 2000)
    assert (pools.prefill_replicas, pools.decode_replicas) == (d.replicas,
                                                              plan.decode.degrees.replicas)


# ----------------------------------------------------------------------------------------------
# The command line and the JSON contract
# ----------------------------------------------------------------------------------------------


def test_solve_prints_both_pools(files) -> None:
    out = _cli("solve", files["instance"])
    assert "OPTIMAL" in out and "Two pools" in out
    for word in ("prefill", "decode", "TTFT (max-length prompt)", "KV transfer per request",
                 "M/D/1"):
        assert word in out


def test_solve_best_prints_both_modes(files) -> None:
    out = _cli("solve", files["best"])
    assert "Aggregated vs disaggregated (same targets)" in out
    assert "aggregated" in out and "disaggregated ◀" in out
    assert "serving best" in out


def test_solve_json_matches_the_exported_schemas(solved) -> None:
    jsonschema.validate(solved, _schema("solve"))
    jsonschema.validate(solved["disagg_estimate"], _schema("disagg-estimate"))
    assert solved["serving"] == "disaggregated" and solved["plan"] is None
    assert solved["disagg_estimate"]["schema_version"] == contract.SCHEMA_VERSION
    assert solved["disagg_estimate"]["gpus"] == solved["objective"]
    assert solved["disagg_estimate"]["metrics"] == solved["disagg_metrics"]


def test_out_plan_is_read_back_by_verify_and_estimate(files, solved) -> None:
    plan_doc = json.loads(files["plan"].read_text())
    jsonschema.validate(plan_doc, _schema("disagg-plan"))
    assert plan_doc["schema_version"] == contract.SCHEMA_VERSION
    for source in (files["plan"], files["solve"]):  # the plan file and the solve document
        doc = json.loads(_cli("verify", files["instance"], "--plan", source, "--json"))
        jsonschema.validate(doc, _schema("verify"))
        assert doc["valid"] and doc["estimate"] is None
        assert doc["disagg_estimate"]["metrics"] == solved["disagg_metrics"]
        est = json.loads(_cli("estimate", files["instance"], "--plan", source, "--json"))
        jsonschema.validate(est, _schema("disagg-estimate"))
        assert est == solved["disagg_estimate"]


def test_spec_string_and_claimed_plan(files, tmp_path) -> None:
    spec = "prefill:tp=1,tokens=8192;decode:tp=4,ep=4,batch=8"
    doc = json.loads(_cli("estimate", files["instance"], "--plan", spec, "--json"))
    assert doc["prefill"]["tokens_per_step"] == 8192 and doc["decode"]["batch"] == 8
    assert doc["decode"]["degrees"]["ep"] == 4 and doc["decode"]["degrees"]["etp"] == 1
    out = _cli("verify", files["instance"], "--plan", spec, code=1)  # 8 sequences: too slow
    assert "[throughput] decode pool" in out and "INVALID" in out
    claimed = {**DOC, "claimed_disagg_plan": json.loads(files["plan"].read_text())
               if files["plan"].exists() else DisaggPlan.model_validate({
                   "prefill": {"degrees": {}, "tokens_per_step": 8192},
                   "decode": {"degrees": {"tp": 4, "ep": 4}, "batch": 8}}).model_dump()}
    claimed["claimed_disagg_plan"].pop("schema_version", None)
    path = tmp_path / "claimed.yaml"
    path.write_text(yaml.safe_dump(claimed))
    assert "VALID" in _cli("verify", path)


@pytest.mark.parametrize("args,field", [
    (["--plan", "prefill:tp=1;decode:tp=4,ep=4,batch=8"], "prefill.tokens_per_step"),
    (["--plan", "prefill:tp=1,tokens=8192"], "decode: missing"),
    (["--plan", "prefill:tp=1,tokens=x;decode:tp=1,batch=8"], "prefill.tokens_per_step"),
    (["--plan", "middle:tp=1;decode:tp=1,batch=8"], "prefill:<plan> or decode:<plan>"),
    (["--plan", "prefill:tp=1,tokens=8192;decode:tp=4,ep=4,batch=0"], "decode.batch"),
    (["--plan", "prefill:tq=1,tokens=8192;decode:tp=4,batch=8"], "unknown key 'tq'"),
])
def test_bad_two_pool_plans_are_one_line(files, args, field) -> None:
    result = CliRunner().invoke(app, ["verify", str(files["instance"]), *args])
    one_error_line(result, field)


def test_a_two_pool_instance_without_a_rate_is_one_line(tmp_path) -> None:
    bad = {**DOC, "workload": {**DOC["workload"], "targets": {"max_ttft_s": 2}}}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    result = CliRunner().invoke(app, ["solve", str(path)])
    line = one_error_line(result, "workload.targets.min_output_tokens_per_s")
    assert "required with serving: disaggregated" in line
    opts = {**DOC, "disaggregation": {"prefill_tokens": [4096, 4096]}}
    path.write_text(yaml.safe_dump(opts))
    one_error_line(CliRunner().invoke(app, ["solve", str(path)]),
                   "disaggregation.prefill_tokens")


def test_bench_records_the_two_pool_answer(files) -> None:
    from moeplan.bench.records import BenchOptions
    from moeplan.bench.worker import run_instance

    rec = run_instance(str(files["instance"]), BenchOptions(time_limit_s=60, reference=False))
    assert rec["status"] == "OPTIMAL" and rec["gpus"] == 5
    assert rec["plan"]["prefill"]["tokens_per_step"] > 0 and "decode" in rec["plan"]
    assert rec["metrics"]["requests_per_s"] == pytest.approx(40)


# ----------------------------------------------------------------------------------------------
# gRPC
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server():
    with serving(ServerConfig(port=0, workers=1, queue=2, spares=0, max_time_limit_s=120,
                              max_message_bytes=1 << 22, grace_s=1)) as served:
        yield served[1]


def test_grpc_solve_answers_with_both_pools(server, solved) -> None:
    inst = instance_from_dict(DOC)
    with grpc.insecure_channel(server) as channel:
        stub = pb_grpc.PlannerStub(channel)
        reply = stub.Solve(pb.SolveRequest(instance=convert.instance_to_proto(inst)), timeout=120)
    assert reply.result.serving == pb.SERVING_MODE_DISAGGREGATED
    assert reply.result.HasField("disagg_plan") and not reply.result.HasField("plan")
    assert not reply.HasField("estimate") and reply.HasField("disagg_estimate")
    result = convert.solve_result_from_proto(reply.result)
    assert result.disagg_plan.model_dump() == DisaggPlan.model_validate(
        {k: v for k, v in solved["disagg_plan"].items()}).model_dump()
    assert result.objective == solved["objective"]
    est = service_disagg.disagg_estimate_from_proto(reply.disagg_estimate)
    assert contract.dump(est) == solved["disagg_estimate"]


def test_grpc_verify_and_estimate_a_two_pool_plan(server, solved) -> None:
    inst = instance_from_dict(DOC)
    plan = DisaggPlan.model_validate(solved["disagg_plan"])
    with PlannerClient(server) as client:
        report = client.verify_disagg(inst, plan)
        assert report.valid and report.estimate is None
        assert report.disagg_estimate.metrics.model_dump() == solved["disagg_metrics"]
        est = client.estimate_disagg(inst, plan)
        assert contract.dump(est) == solved["disagg_estimate"]
        slow = DisaggPlan.model_validate({"prefill": {"degrees": {}, "tokens_per_step": 8192},
                                          "decode": {"degrees": {"tp": 4, "ep": 4},
                                                     "batch": 8}})
        report = client.verify_disagg(inst, slow)
        assert not report.valid
        assert {v.rule for v in report.violations} >= {"throughput"}


def test_grpc_best_carries_the_comparison(server) -> None:
    inst = instance_from_dict({**DOC, "serving": "best"})
    with PlannerClient(server) as client:
        result = client.solve(inst)
    c = result.comparison
    assert c is not None and c.chosen == "disaggregated"
    assert c.aggregated.gpus > c.disaggregated.gpus == result.objective


def test_grpc_bad_two_pool_input_is_invalid_argument(server) -> None:
    inst = instance_from_dict(DOC)
    bad = convert.instance_to_proto(inst)
    bad.workload.targets.ClearField("min_output_tokens_per_s")
    with grpc.insecure_channel(server) as channel:
        stub = pb_grpc.PlannerStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.Solve(pb.SolveRequest(instance=bad), timeout=30)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "workload.targets.min_output_tokens_per_s" in err.value.details()
        plan = service_disagg.disagg_plan_to_proto(DisaggPlan.model_validate(
            {"prefill": {"degrees": {}, "tokens_per_step": 8192},
             "decode": {"degrees": {}, "batch": 8}}))
        both = pb.VerifyRequest(instance=convert.instance_to_proto(inst), disagg_plan=plan,
                                plan=pb.Plan(batch=8))
        with pytest.raises(grpc.RpcError) as err:
            stub.Verify(both, timeout=30)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "disagg_plan" in err.value.details()
        no_tokens = pb.EstimateRequest(instance=convert.instance_to_proto(inst))
        no_tokens.disagg_plan.CopyFrom(plan)
        no_tokens.disagg_plan.prefill.ClearField("tokens_per_step")
        with pytest.raises(grpc.RpcError) as err:
            stub.Estimate(no_tokens, timeout=30)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "tokens_per_step" in err.value.details()


def test_instance_round_trips_through_protobuf() -> None:
    inst = instance_from_dict({**DOC, "disaggregation": {"prefill_tokens": [2048, 8192],
                                                         "kv_transfer": "after_prefill"},
                               "claimed_disagg_plan": {
                                   "prefill": {"degrees": {"dp": 2}, "tokens_per_step": 2048},
                                   "decode": {"degrees": {"tp": 2}, "batch": 16}}})
    back = convert.instance_from_proto(convert.instance_to_proto(inst))
    assert back == inst
    with pytest.raises(InputError):
        service_disagg.disagg_plan_from_proto(pb.DisaggPlan())
