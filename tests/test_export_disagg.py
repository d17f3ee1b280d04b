"""moeplan export of a two-pool (disaggregated) plan: each pool's launch commands with its own
degrees, token budget and memory fraction, every option in the pinned version's list (read from
the data files here, independently of the exporter's own check), each pool's placement file
giving back that pool's placement exactly, the pieces that connect the pools (KV transfer
settings, the front), the KV transfer checked against what the cost model assumed, and what an
engine cannot run refused in one line — from the library, the CLI and gRPC."""

from __future__ import annotations

import json
import shlex
import subprocess

import pytest
import yaml
from conftest import REPO, one_error_line, run

from solver import disagg, planner
from solver.disagg import parse_disagg_plan_arg
from solver.estimate import Prepared
from solver.export import ENGINES, ExportError, export_plan, write_export
from solver.instance import InputError, instance_from_dict, load_instance
from solver.rules import default_redundant
from solver.schema import DisaggPlan, LayerPlacement, Plan

pytestmark = pytest.mark.integration

DATA = REPO / "solver/export/data"
DATA_FILES = {"vllm": "vllm-0.11.0.json", "sglang": "sglang-0.5.3.json",
              "trtllm": "trtllm-00209af1.json"}
DEEPSEEK = REPO / "instances/models/deepseek-v3-h100-disagg.yaml"
#: tests/test_disagg_interfaces.py's instance: one 1-GPU prefill instance, two 2-GPU decode
#: instances with EP (solved in about a second).
QWEN = {"name": "qwen3-30b-disagg", "model": "qwen3-30b-a3b", "hardware": "h100-sxm",
        "serving": "disaggregated",
        # the overlap the pinned engines do not do, so the export's re-pricing shows
        "disaggregation": {"kv_transfer": "layerwise"},
        "workload": {"input_len": 2000, "output_len": 500, "batch": {"min": 1, "max": 256},
                     "targets": {"min_output_tokens_per_s": 20000, "max_ttft_s": 2,
                                 "max_tpot_s": 0.05}},
        "search": {"time_limit_s": 60}}
#: DeepSeek-V3 on 64 H100s (LMSYS's shape): two 16-GPU prefill instances on two nodes each, one
#: 32-GPU decode instance on four nodes, 32 redundant expert slots in both pools.
DEEPSEEK_PLAN = "prefill:dp=16,ep=16,tokens=4096,replicas=2;decode:dp=32,ep=32,batch=512"
NIXL = {"kv_connector": "NixlConnector", "kv_role": "kv_both"}


def _data(engine: str) -> dict:
    return json.loads((DATA / DATA_FILES[engine]).read_text())


def _with_placements(instance, plan: DisaggPlan) -> DisaggPlan:
    """Both pools' placements written out (the EPLB placement the verifier assumes anyway)."""
    prep = Prepared(instance)

    def fill(pool):
        red = default_redundant(instance.search, pool.degrees.ep)
        ranks, _ = prep.placement_of(Plan(degrees=pool.degrees, batch=1,
                                          redundant_experts=red), red)
        return pool.model_copy(update={"placement": tuple(
            LayerPlacement(layer=layer, ranks=r) for layer, r in ranks.items())})

    return plan.model_copy(update={"prefill": fill(plan.prefill), "decode": fill(plan.decode)})


@pytest.fixture(scope="module")
def cases() -> dict[str, tuple]:
    qwen = instance_from_dict(QWEN)
    result = planner.solve(qwen)
    assert result.status == "OPTIMAL" and result.disagg_plan is not None
    ds = load_instance(DEEPSEEK)  # SGLang, two-batch overlap
    ds_plan = _with_placements(ds, parse_disagg_plan_arg(DEEPSEEK_PLAN))
    trt = ds.model_copy(update={"engine": ds.engine.model_copy(
        update={"name": "trtllm", "overlap": "none"})})
    for inst, plan in ((qwen, result.disagg_plan), (ds, ds_plan), (trt, ds_plan)):
        assert disagg.verify(inst, plan).valid
    return {"qwen": (qwen, result.disagg_plan), "deepseek": (ds, ds_plan),
            "deepseek-trtllm": (trt, ds_plan)}


def engine_argv(command: list[str]) -> list[str]:
    """The engine's own arguments (after ``vllm serve``, ``sglang.launch_server`` or
    ``trtllm-serve``), also inside ``sh -c``; [] for ``ray start``."""
    argv = shlex.split(command[2]) if command[:2] == ["sh", "-c"] else command
    for marker in ("serve", "sglang.launch_server", "trtllm-serve"):
        if marker in argv:
            return argv[argv.index(marker) + 1:]
    return []


def value(argv: list[str], option: str) -> str:
    return argv[argv.index(option) + 1]


def _check_options(engine: str, doc) -> None:
    data = _data(engine)
    accepted = set(data["flags"])
    for pool in (doc.prefill, doc.decode):
        for launch in pool.launches:
            opts = {a for a in engine_argv(launch.command) if a.startswith("--")}
            assert opts <= accepted, (pool.pool, sorted(opts - accepted))
            for key in launch.env:
                assert key in data.get("env", {}), key
    for launch in doc.router:
        section = data["router" if engine == "sglang" else "disaggregated"]
        prefix = len(section["command"].split())
        opts = {a for a in launch.command[prefix:] if a.startswith("-") and not a[1:].isdigit()}
        assert launch.command[:prefix] == section["command"].split()
        assert opts <= set(section["flags"]), sorted(opts - set(section["flags"]))


# ----------------------------------------------------------------------------------------------
# Both pools, each with its own degrees and settings, every option in the pinned version
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case,engine", [("qwen", "vllm"), ("qwen", "sglang"),
                                         ("qwen", "trtllm"), ("deepseek", "sglang"),
                                         ("deepseek", "vllm"), ("deepseek-trtllm", "trtllm")])
def test_both_pools_with_their_own_degrees_and_every_option_known(cases, case, engine) -> None:
    inst, plan = cases[case]
    doc = export_plan(inst, plan, engine)
    _check_options(engine, doc)
    assert doc.engine_version in _data(engine)["version"]
    tokens = plan.prefill.tokens_per_step
    for pool, want in ((doc.prefill, plan.prefill.degrees), (doc.decode, plan.decode.degrees)):
        assert pool.degrees == want
        per_instance = 1 if engine == "trtllm" else pool.nodes_per_instance
        assert len(pool.launches) == want.replicas * per_instance
        assert {x.replica for x in pool.launches} == set(range(want.replicas))
        assert all(x.script.startswith(f"{pool.pool}/") for x in pool.launches)
        argv = engine_argv(pool.launches[0].command)
        stage, budget = want.tp * want.dp, tokens if pool.pool == "prefill" else None
        if engine == "sglang":
            assert value(argv, "--tp-size") == str(stage)
            assert value(argv, "--disaggregation-mode") == pool.pool
            assert value(argv, "--disaggregation-transfer-backend") == "mooncake"
            if budget:  # SGLang divides the chunk by --dp-size: tokens per rank and step
                assert value(argv, "--chunked-prefill-size") == str(budget * want.dp)
            own = inst.engine.model_copy(update={"name": engine})  # its defaults, if not set
            assert float(value(argv, "--mem-fraction-static")) == own.memory_fraction
        elif engine == "vllm":
            assert value(argv, "--tensor-parallel-size") == str(want.tp)
            assert json.loads(value(argv, "--kv-transfer-config")) == NIXL
            if budget:
                assert value(argv, "--max-num-batched-tokens") == str(budget)
        else:
            assert value(argv, "--tp_size") == str(stage)
            if budget:
                assert value(argv, "--max_num_tokens") == str(budget)
        if want.ep > 1 and engine != "vllm":
            assert value(argv, "--ep-size" if engine == "sglang" else "--ep_size") == str(want.ep)
    assert doc.decode.batch == plan.decode.batch and doc.prefill.tokens_per_step == tokens


def test_sglang_connects_the_pools_through_its_router(cases) -> None:
    inst, plan = cases["deepseek"]
    doc = export_plan(inst, plan, "sglang")
    p, d = plan.prefill.degrees, plan.decode.degrees
    for launch in doc.prefill.launches:
        argv = engine_argv(launch.command)
        assert value(argv, "--disaggregation-bootstrap-port") == "8998"
        assert value(argv, "--disaggregation-decode-tp") == str(d.tp * d.dp)
        assert value(argv, "--disaggregation-decode-dp") == str(d.dp)
        assert value(argv, "--load-balance-method") == "round_robin"
    for launch in doc.decode.launches:  # SGLang 0.5.3 asserts it with a decode --dp-size > 1
        argv = engine_argv(launch.command)
        assert "--prefill-round-robin-balance" in argv
        assert value(argv, "--disaggregation-prefill-pp") == str(p.pp)
    (router,) = doc.router
    cmd = router.command
    assert cmd[:4] == ["python", "-m", "sglang_router.launch_router", "--pd-disaggregation"]
    prefills = [cmd[i + 1:i + 3] for i, a in enumerate(cmd) if a == "--prefill"]
    decodes = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--decode"]
    assert prefills == [[f"http://${{PREFILL{r}_ADDR}}:30000", "8998"] for r in range(2)]
    assert decodes == ["http://${DECODE0_ADDR}:30000"]
    assert "--disaggregation-ib-device" not in " ".join(
        " ".join(x.command) for x in doc.prefill.launches + doc.decode.launches)
    nixl = export_plan(inst, plan, "sglang", kv_backend="nixl")
    assert value(engine_argv(nixl.decode.launches[0].command),
                 "--disaggregation-transfer-backend") == "nixl"


def test_vllm_connects_the_pools_with_nixl_and_names_the_proxy(cases) -> None:
    inst, plan = cases["deepseek"]
    doc = export_plan(inst, plan, "vllm")
    assert doc.router == [] and doc.kv_backend == "nixl"
    assert any("toy_proxy_server.py" in c and "no router" in c for c in doc.caveats)
    hosts = [x.env["VLLM_NIXL_SIDE_CHANNEL_HOST"] for x in doc.prefill.launches]
    assert hosts == ["${HEAD_ADDR}", "${NODE1_ADDR}"] * 2  # each prefill node its own address
    for launch in doc.prefill.launches[1::2]:
        assert "--headless" in launch.command
    assert any("cannot load an initial expert placement" in c for c in doc.caveats)
    with pytest.raises(InputError) as err:
        export_plan(inst, plan, "vllm", kv_backend="mooncake")
    assert err.value.field == "kv_backend"


def test_trtllm_connects_the_pools_with_its_disaggregated_server(cases) -> None:
    inst, plan = cases["deepseek-trtllm"]
    doc = export_plan(inst, plan, "trtllm")
    for pool in (doc.prefill, doc.decode):
        opts = yaml.safe_load(pool.files["extra_llm_api_options.yaml"])
        assert opts["cache_transceiver_config"] == {
            "backend": "UCX", "max_tokens_in_buffer": inst.workload.max_input}
        assert set(opts) <= set(_data("trtllm")["config_keys"][""])
        assert opts["disable_overlap_scheduler"] is (pool.pool == "prefill")
    assert (doc.router[0].command == ["trtllm-serve", "disaggregated", "-c",
                                      "disagg_config.yaml"])
    config = yaml.safe_load(doc.files["disagg_config.yaml"])
    assert config["context_servers"] == {"num_instances": 2, "urls": [
        "${PREFILL0_ADDR}:8001", "${PREFILL1_ADDR}:8001"]}
    assert config["generation_servers"] == {"num_instances": 1, "urls": ["${DECODE0_ADDR}:8002"]}
    ports = {value(engine_argv(x.command), "--port") for x in doc.prefill.launches}
    assert ports == {"8001"}
    assert any("overlap scheduler" in c for c in doc.caveats)


# ----------------------------------------------------------------------------------------------
# Each pool's placement file gives back that pool's placement
# ----------------------------------------------------------------------------------------------


def _ranks(rows: dict[int, list[int]], ep: int) -> dict[int, tuple]:
    per = {layer: len(row) // ep for layer, row in rows.items()}  # slot p on rank p // per
    return {layer: tuple(tuple(row[r * per[layer]:(r + 1) * per[layer]]) for r in range(ep))
            for layer, row in rows.items()}


@pytest.mark.parametrize("case,engine", [("deepseek", "sglang"), ("deepseek-trtllm", "trtllm"),
                                         ("qwen", "sglang"), ("qwen", "trtllm")])
def test_placement_files_give_back_each_pools_placement(cases, case, engine) -> None:
    inst, plan = cases[case]
    doc = export_plan(inst, plan, engine)
    checked = 0
    for out, pool in ((doc.prefill, plan.prefill), (doc.decode, plan.decode)):
        ep = pool.degrees.ep
        if ep == 1:
            assert out.files.keys() <= {"extra_llm_api_options.yaml"}
            continue
        expected = {p.layer: p.ranks for p in pool.placement}
        if engine == "sglang":
            rows = json.loads(out.files["expert_location.json"])["physical_to_logical_map"]
            assert len(rows) == inst.model.num_layers
            got = _ranks({layer: rows[layer] for layer in expected}, ep)
        else:
            lb = yaml.safe_load(out.files["moe_load_balancer.yaml"])
            assert lb["layer_updates_per_iter"] == 0
            got = _ranks({int(k): v for k, v in lb["initial_global_assignments"].items()}, ep)
        assert got == expected, out.pool
        checked += 1
    assert checked >= 1


# ----------------------------------------------------------------------------------------------
# The KV transfer against the cost model's assumption
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_kv_transfer_not_overlapped_as_assumed_is_a_repriced_caveat(cases, engine) -> None:
    inst, plan = cases["qwen"]
    assert inst.disaggregation.kv_transfer == "layerwise"
    doc = export_plan(inst, plan, engine)
    assert doc.kv_transfer == "layerwise"
    (caveat,) = [c for c in doc.caveats if "layer by layer" in c]
    after = inst.model_copy(update={"disaggregation": inst.disaggregation.model_copy(
        update={"kv_transfer": "after_prefill"})})
    ttft = disagg.estimate(after, plan).ttft_s
    assert f"TTFT at {ttft:.3f} s" in caveat
    assert not any("layer by layer" in c for c in export_plan(after, plan, engine).caveats)


# ----------------------------------------------------------------------------------------------
# What an engine cannot run: one line naming the pool and the rule
# ----------------------------------------------------------------------------------------------


def test_an_engine_that_cannot_express_a_pool_is_refused(cases) -> None:
    inst, _ = cases["deepseek"]
    pipelined = parse_disagg_plan_arg(
        "prefill:dp=8,ep=8,pp=2,tokens=4096,replicas=2;decode:dp=32,ep=32,batch=512")
    with pytest.raises(ExportError) as err:
        export_plan(inst, pipelined, "vllm")  # NixlConnector pairs ranks by TP rank only
    assert err.value.field == "prefill.degrees.pp"
    odd = parse_disagg_plan_arg(
        "prefill:dp=16,ep=16,tokens=4096,replicas=2;decode:dp=24,ep=24,batch=512")
    with pytest.raises(ExportError) as err:
        export_plan(inst, odd, "sglang")  # 16 and 24: neither a multiple of the other
    assert err.value.field == "decode.degrees.tp"
    with pytest.raises(ExportError) as err:
        export_plan(inst, odd, "trtllm")  # the instance asks for two-batch overlap
    assert err.value.field == "engine.overlap" and "prefill pool" in str(err.value)


def test_cli_refusal_is_one_line(cases, runner, tmp_path) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(parse_disagg_plan_arg(
        "prefill:dp=16,ep=16,tokens=4096,replicas=2;decode:dp=16,ep=16,pp=2,batch=512"
    ).model_dump_json())
    line = one_error_line(run(runner, "export", DEEPSEEK, "--plan", plan, "--engine", "sglang"),
                          "decode.degrees.pp")
    assert "decode pool" in line
    one_error_line(run(runner, "export", DEEPSEEK, "--plan", DEEPSEEK_PLAN, "--engine", "vllm",
                       "--kv-backend", "mooncake"), "kv_backend")


def test_cli_writes_both_pools_and_the_front(cases, runner, tmp_path) -> None:
    import jsonschema

    inst, plan = cases["deepseek"]
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(plan.model_dump_json())
    out = tmp_path / "launch"
    result = run(runner, "export", DEEPSEEK, "--plan", plan_file, "--engine", "sglang",
                 "--out", out, "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    jsonschema.validate(doc, json.loads(run(runner, "schema", "--what", "disagg-export").stdout))
    assert json.loads((out / "export.json").read_text()) == doc
    assert doc["serving"] == "disaggregated"
    for pool in ("prefill", "decode"):
        assert (out / pool / "expert_location.json").read_text() == \
            doc[pool]["files"]["expert_location.json"]
        scripts = sorted((out / pool).glob("*.sh"))
        assert len(scripts) == len(doc[pool]["launches"])
    assert (out / "README.md").exists()
    for script in sorted(out.rglob("*.sh")):
        subprocess.run(["sh", "-n", str(script)], check=True)
    missing = subprocess.run(["sh", str(out / "router.sh")], capture_output=True, text=True,
                             env={"PATH": "/usr/bin:/bin"})
    assert missing.returncode != 0 and "ADDR" in missing.stderr
    human = run(runner, "export", DEEPSEEK, "--plan", plan_file, "--engine", "sglang")
    assert "prefill pool" in human.stdout and "sglang_router.launch_router" in human.stdout


def test_trtllm_front_fills_in_the_addresses(cases, tmp_path) -> None:
    inst, plan = cases["deepseek-trtllm"]
    write_export(export_plan(inst, plan, "trtllm"), tmp_path)
    env = {"PATH": "/usr/bin:/bin", "PREFILL0_ADDR": "p0", "PREFILL1_ADDR": "p1",
           "DECODE0_ADDR": "d0"}  # no trtllm-serve here: the script stops after the file
    done = subprocess.run(["/bin/sh", str(tmp_path / "router.sh")], capture_output=True,
                          text=True, env=env)
    assert done.returncode != 0 and "trtllm-serve" in done.stderr
    config = yaml.safe_load((tmp_path / "disagg_config.yaml").read_text())
    assert config["context_servers"]["urls"] == ["p0:8001", "p1:8001"]
    assert config["generation_servers"]["urls"] == ["d0:8002"]


# ----------------------------------------------------------------------------------------------
# gRPC
# ----------------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_grpc_export_of_a_two_pool_plan(cases) -> None:
    import grpc
    from conftest import serving

    from service import convert
    from service import disagg as service_disagg
    from service._gen.moeplan.v1 import planner_pb2 as pb
    from service._gen.moeplan.v1 import planner_pb2_grpc as pb_grpc
    from service.client import PlannerClient
    from service.server import ServerConfig

    inst, plan = cases["deepseek"]
    with serving(ServerConfig(port=0, workers=1, queue=1)) as (_, address):
        with PlannerClient(address) as client:
            for case, engine in (("deepseek", "sglang"), ("deepseek", "vllm"),
                                 ("deepseek-trtllm", "trtllm")):
                i, p = cases[case]
                assert client.export(i, p, engine) == export_plan(i, p, engine)
            nixl = client.export(inst, plan, "sglang", kv_backend="nixl")
            assert nixl.kv_backend == "nixl"
        request = pb.ExportRequest(instance=convert.instance_to_proto(inst),
                                   engine=pb.ENGINE_NAME_SGLANG)
        request.disagg_plan.CopyFrom(service_disagg.disagg_plan_to_proto(
            parse_disagg_plan_arg(DEEPSEEK_PLAN.replace("dp=32,ep=32", "dp=24,ep=24"))))
        both = pb.ExportRequest()
        both.CopyFrom(request)
        both.plan.CopyFrom(pb.Plan(batch=8))
        with grpc.insecure_channel(address) as channel:
            stub = pb_grpc.PlannerStub(channel)
            with pytest.raises(grpc.RpcError) as err:
                stub.Export(request, timeout=60)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "decode.degrees.tp" in err.value.details()
            with pytest.raises(grpc.RpcError) as err:
                stub.Export(both, timeout=60)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "disagg_plan" in err.value.details()


def test_router_flag_extractor_reads_prefixed_options() -> None:
    from solver.export.extract_flags import sglang_router_flags

    source = '''
def add_cli_args(parser, use_router_prefix=False):
    prefix = "router-" if use_router_prefix else ""
    parser.add_argument("--host", type=str)
    parser.add_argument(f"--{prefix}pd-disaggregation", action="store_true")
    parser.add_argument(f"--{prefix}prefill", nargs="+", action="append")
'''
    assert sglang_router_flags(source) == ["--host", "--pd-disaggregation", "--prefill"]
    data = _data("sglang")["router"]
    assert {"--pd-disaggregation", "--prefill", "--decode", "--policy"} <= set(data["flags"])
