"""moeplan export: every option emitted exists in the pinned engine version (read from the data
files here, independently of the exporter's own check), the placement files give back the
plan's placement exactly, the cost model's engine settings are set explicitly, and what an
engine cannot express is refused — from the library, the CLI and gRPC."""

from __future__ import annotations

import json
import shlex
import subprocess

import pytest
import yaml
from conftest import REPO, one_error_line, run

from solver.export import ENGINES, ExportError, export_plan, write_export
from solver.instance import InputError, load_instance
from solver.planner import solve
from solver.schema import Plan

DATA = REPO / "solver/export/data"
DATA_FILES = {"vllm": "vllm-0.11.0.json", "sglang": "sglang-0.5.3.json",
              "trtllm": "trtllm-00209af1.json"}
WORKED = REPO / "instances/models/qwen3-235b-a22b-fp8-h100.yaml"
DEEPSEEK = REPO / "instances/models/deepseek-v3-h200-powerlaw.yaml"


@pytest.fixture(scope="module")
def solved() -> dict[str, tuple]:
    out = {}
    for key, path in (("worked", WORKED), ("deepseek", DEEPSEEK)):
        inst = load_instance(path)
        result = solve(inst, time_limit_s=60)
        assert result.status == "OPTIMAL"
        out[key] = (inst, result.plan)
    return out


def engine_options(command: list[str]) -> list[str]:
    """The options after the engine's own command word, also inside ``sh -c``."""
    argv = command
    if command[:2] == ["sh", "-c"]:
        argv = shlex.split(command[2])
    for marker in ("serve", "sglang.launch_server", "trtllm-serve"):
        if marker in argv:
            rest = argv[argv.index(marker) + 1:]
            return [a for a in rest if a.startswith("--")]
    return []  # ray start: not the engine


@pytest.mark.integration
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", ["worked", "deepseek"])
def test_every_option_exists_in_the_pinned_version(solved, engine, case) -> None:
    inst, plan = solved[case]
    doc = export_plan(inst, plan, engine)
    accepted = set(json.loads((DATA / DATA_FILES[engine]).read_text())["flags"])
    seen = set()
    for launch in doc.launches:
        opts = engine_options(launch.command)
        seen.update(opts)
        assert set(opts) <= accepted, sorted(set(opts) - accepted)
    assert seen, "no engine command emitted"
    assert doc.engine_version in json.loads((DATA / DATA_FILES[engine]).read_text())["version"]
    # one launch per node per replica
    assert len(doc.launches) == plan.degrees.replicas * (
        1 if engine == "trtllm" else doc.nodes_per_instance)


def _ranks_from_rows(rows: dict[int, list[int]], ep: int) -> dict[int, tuple]:
    out = {}
    for layer, row in rows.items():
        per = len(row) // ep  # slot p on EP rank p // slots-per-rank
        out[layer] = tuple(tuple(row[r * per:(r + 1) * per]) for r in range(ep))
    return out


@pytest.mark.integration
@pytest.mark.parametrize("case", ["worked", "deepseek"])
def test_placement_files_give_back_the_plan_placement(solved, case) -> None:
    inst, plan = solved[case]
    expected = {p.layer: p.ranks for p in plan.placement}
    ep = plan.degrees.ep
    sg = json.loads(export_plan(inst, plan, "sglang").files["expert_location.json"])
    rows = sg["physical_to_logical_map"]
    assert len(rows) == inst.model.num_layers  # SGLang sizes the map by num_hidden_layers
    assert _ranks_from_rows({layer: rows[layer] for layer in expected}, ep) == expected
    slots = inst.model.num_experts + (plan.redundant_experts or 0)
    assert all(len(r) == slots for r in rows)
    for dense in inst.model.dense_layers:
        assert rows[dense] == [p % inst.model.num_experts for p in range(slots)]
    lb = yaml.safe_load(export_plan(inst, plan, "trtllm").files["moe_load_balancer.yaml"])
    assert lb["num_slots"] == slots and lb["layer_updates_per_iter"] == 0
    got = _ranks_from_rows({int(k): v for k, v in lb["initial_global_assignments"].items()}, ep)
    assert got == expected


@pytest.mark.integration
def test_deepseek_32_redundant_slots_on_two_nodes(solved) -> None:
    inst, plan = solved["deepseek"]
    d = plan.degrees
    assert plan.redundant_experts == 32 and d.gpus_per_instance == 16
    v = export_plan(inst, plan, "vllm")
    assert v.nodes_per_instance == 2 and v.gpus_per_node == 8
    head, second = (x.command for x in v.launches[:2])
    assert "--headless" not in head and "--headless" in second
    assert second[second.index("--data-parallel-start-rank") + 1] == "8"
    assert second[second.index("--data-parallel-size-local") + 1] == "8"
    assert head[head.index("--data-parallel-size") + 1] == "16"
    assert json.loads(head[head.index("--eplb-config") + 1]) == {"num_redundant_experts": 32}
    s = export_plan(inst, plan, "sglang")
    ranks = [x.command[x.command.index("--node-rank") + 1] for x in s.launches[:2]]
    assert ranks == ["0", "1"]
    cmd = s.launches[0].command
    assert cmd[cmd.index("--ep-num-redundant-experts") + 1] == "32"
    assert cmd[cmd.index("--tp-size") + 1] == "16" and "--enable-dp-attention" in cmd


@pytest.mark.integration
def test_engine_settings_are_explicit(solved) -> None:
    inst, plan = solved["deepseek"]  # pp = 1
    v = export_plan(inst, plan, "vllm").launches[0].command
    assert float(v[v.index("--gpu-memory-utilization") + 1]) == inst.engine.memory_fraction
    assert int(v[v.index("--max-num-batched-tokens") + 1]) == inst.engine.token_budget
    assert "--async-scheduling" in v
    assert int(v[v.index("--max-num-seqs") + 1]) == plan.batch // plan.degrees.dp
    worked, wplan = solved["worked"]  # pp = 3: vLLM refuses async scheduling with pp > 1
    doc = export_plan(worked, wplan, "vllm")
    assert "--async-scheduling" not in " ".join(doc.launches[0].command)
    assert any("async-scheduling" in c for c in doc.caveats)
    s = export_plan(inst, plan, "sglang").launches[0].command
    # SGLang divides the chunk by --dp-size under DP attention (server_args.py): N per rank
    assert int(s[s.index("--chunked-prefill-size") + 1]) == 8192 * plan.degrees.dp
    assert float(s[s.index("--mem-fraction-static") + 1]) == 0.88  # SGLang's default here
    t = export_plan(inst, plan, "trtllm")
    opts = yaml.safe_load(t.files["extra_llm_api_options.yaml"])
    assert opts["disable_overlap_scheduler"] is False and opts["enable_attention_dp"] is True
    assert opts["scheduler_config"]["capacity_scheduler_policy"] == "GUARANTEED_NO_EVICT"
    # free_gpu_memory_fraction is a share of what is left after weights and buffers: the value
    # that leaves the KV cache budget - (weights + buffers), by hand from the estimate
    from solver.contract import estimate_document
    from solver.estimate import evaluate

    trt = inst.model_copy(update={"engine": inst.engine.model_copy(update={"name": "trtllm"})})
    mem = estimate_document(trt, evaluate(trt, plan)).memory
    other = mem.terms_gb["weights"] + mem.terms_gb["activation_workspace"] + \
        mem.terms_gb["comm_buffers"] + mem.terms_gb["runtime_reserve"]
    fraction = opts["kv_cache_config"]["free_gpu_memory_fraction"]
    assert fraction == pytest.approx((0.9 * 141 - other) / (141 - other), abs=1e-4)


@pytest.mark.unit
@pytest.mark.parametrize("engine", ENGINES)
def test_context_parallel_is_refused(solved, engine) -> None:
    inst, _ = solved["worked"]
    plan = Plan.model_validate({"degrees": {"tp": 4, "cp": 2, "ep": 8}, "batch": 256})
    with pytest.raises(InputError) as err:
        export_plan(inst, plan, engine)
    assert err.value.field in ("degrees.cp", "plan")


@pytest.mark.unit
def test_what_an_engine_cannot_express_is_refused(solved) -> None:
    inst, _ = solved["worked"]
    both = Plan.model_validate({"degrees": {"tp": 2, "dp": 4, "ep": 8, "pp": 1}, "batch": 256})
    with pytest.raises(ExportError) as err:
        export_plan(inst, both, "trtllm")  # attention DP runs attention with TP 1
    assert err.value.field == "degrees.tp"
    fp8 = inst.model_copy(update={"engine": inst.engine.model_copy(
        update={"ep_dispatch_precision": "fp8"})})
    with pytest.raises(ExportError) as err:
        export_plan(fp8, both, "vllm")
    assert err.value.field == "engine.ep_dispatch_precision"


@pytest.mark.integration
def test_scripts_are_valid_shell_and_ask_for_addresses(solved, tmp_path) -> None:
    inst, plan = solved["deepseek"]
    for engine in ENGINES:
        out = tmp_path / engine
        write_export(export_plan(inst, plan, engine), out)
        scripts = sorted(out.glob("*.sh"))
        assert scripts
        for script in scripts:
            subprocess.run(["sh", "-n", str(script)], check=True)
            text = script.read_text()
            assert "HEAD_ADDR:?" in text or "${HEAD_ADDR}" not in text
        missing = subprocess.run(["sh", str(scripts[0])], capture_output=True, text=True,
                                 env={"PATH": "/usr/bin:/bin"})
        assert missing.returncode != 0 and "HEAD_ADDR" in missing.stderr


@pytest.mark.integration
def test_cli_export_json_and_out(solved, runner, tmp_path) -> None:
    import jsonschema

    inst, plan = solved["deepseek"]
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(plan.model_dump_json())
    result = run(runner, "export", DEEPSEEK, "--plan", plan_file, "--engine", "sglang",
                 "--out", tmp_path / "out", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    schema = json.loads(run(runner, "schema", "--what", "export").stdout)
    jsonschema.validate(doc, schema)
    assert (tmp_path / "out/expert_location.json").read_text() == doc["files"][
        "expert_location.json"]
    human = run(runner, "export", DEEPSEEK, "--plan", plan_file, "--engine", "trtllm")
    assert "trtllm-serve" in human.stdout and "moe_load_balancer.yaml" in human.stdout
    bad = tmp_path / "cp.json"
    bad.write_text(json.dumps({"degrees": {"tp": 4, "cp": 2, "ep": 8}, "batch": 256}))
    one_error_line(run(runner, "export", WORKED, "--plan", bad, "--engine", "vllm"), "plan")


@pytest.mark.unit
def test_flag_extractor_reads_argparse_and_boolean_options() -> None:
    from solver.export.extract_flags import sglang_flags, vllm_flags

    engine = '''
class EngineArgs:
    enable_eplb: bool = False
    tensor_parallel_size: int = 1
def add(parser, kw):
    parser.add_argument("--tensor-parallel-size", "-tp", **kw["tensor_parallel_size"])
    parser.add_argument("--enable-eplb", **kw["enable_eplb"])
    for arg, type in [("--old-flag", str)]:
        parser.add_argument(arg, type=type)
'''
    cli = '''
class FrontendArgs:
    port: int = 8000
    enable_ssl_refresh: bool = False
'''
    assert vllm_flags(engine, cli) == sorted([
        "--tensor-parallel-size", "--enable-eplb", "--no-enable-eplb", "--old-flag", "--port",
        "--enable-ssl-refresh", "--no-enable-ssl-refresh"])
    assert sglang_flags('p.add_argument("--tp-size", type=int)\n') == ["--tp-size"]


@pytest.mark.e2e
def test_grpc_export_matches_the_library(solved) -> None:
    import grpc
    from conftest import serving

    from service._gen.moeplan.v1 import planner_pb2 as pb
    from service._gen.moeplan.v1 import planner_pb2_grpc as pb_grpc
    from service.client import PlannerClient
    from service.server import ServerConfig

    inst, plan = solved["deepseek"]
    with serving(ServerConfig(port=0, workers=1, queue=1)) as (_, address):
        with PlannerClient(address) as client:
            assert client.export(inst, plan, "sglang") == export_plan(inst, plan, "sglang")
        bad = Plan.model_validate({"degrees": {"tp": 4, "cp": 2, "ep": 8}, "batch": 256})
        from service import convert

        with grpc.insecure_channel(address) as channel:
            stub = pb_grpc.PlannerStub(channel)
            with pytest.raises(grpc.RpcError) as err:
                stub.Export(pb.ExportRequest(instance=convert.instance_to_proto(inst),
                                             plan=convert.plan_to_proto(bad),
                                             engine=pb.ENGINE_NAME_TRTLLM), timeout=60)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "cp" in err.value.details()
