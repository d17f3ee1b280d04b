"""The ``moeplan`` command line: outputs, exit codes and one-line errors for every bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, one_error_line, run

from moeplan.cli import app
from solver import contract
from solver.estimate import estimate
from solver.hardware import hardware_preset_names
from solver.instance import load_instance, parse_plan_arg
from solver.presets import MODEL_PRESETS, PUBLISHED_TOTAL_PARAMS, model_preset_names
from solver.schema import (
    Degrees,
    Explanation,
    LayerExperts,
    Plan,
    SolveResult,
)

pytestmark = pytest.mark.integration

SMALL = """\
name: small
model: qwen3-30b-a3b
hardware: h100-sxm
workload:
  input_len: 1024
  output_len: 256
  batch: 16
"""

#: The keys of an estimate document (estimate --json, and solve --json's estimate), in order.
ESTIMATE_KEYS = tuple(contract.EstimateOut.model_fields)

VALID_PLAN = "tp=4,ep=4"  # 4 GPUs: tp | 32 heads, ep | 128 experts, inside one 8-GPU node
BROKEN_PLAN = "tp=4,ep=3"  # ep = 3 does not divide the 128 experts (and breaks the grid identity)


@pytest.fixture()
def small(tmp_path: Path) -> Path:
    path = tmp_path / "small.yaml"
    path.write_text(SMALL)
    return path


# ----------------------------------------------------------------------------------------------
# model
# ----------------------------------------------------------------------------------------------

#: How far a preset's counted parameters may be from its vendor's figure: Kimi-K2's "1T" is
#: rounded (the architecture counts 1.026T; tests/test_params.py allows the same).
PUBLISHED_REL = {"kimi-k2": 0.03}

MODEL_KEYS = {
    "name", "num_layers", "num_dense_layers", "num_moe_layers", "hidden_size", "attention",
    "num_experts", "top_k", "num_shared_experts", "total_params", "active_params",
    "kv_bytes_per_token", "weight_bytes", "weight_precision", "kv_precision", "warning",
}


@pytest.mark.parametrize("preset", model_preset_names())
def test_model_every_preset_json(runner, preset):
    result = run(runner, "model", preset, "--json")
    assert result.exit_code == 0, result.stderr
    info = json.loads(result.stdout)
    assert MODEL_KEYS <= info.keys()
    published = PUBLISHED_TOTAL_PARAMS[preset]
    assert abs(info["total_params"] - published) / published < PUBLISHED_REL.get(preset, 0.01)
    assert 0 < info["active_params"] < info["total_params"]
    assert info["num_dense_layers"] + info["num_moe_layers"] == info["num_layers"]
    assert info["kv_bytes_per_token"] > 0 and info["weight_bytes"] > 0
    assert info["warning"] is None


def test_model_human_table(runner):
    result = run(runner, "model", "deepseek-v3")
    assert result.exit_code == 0
    assert "MLA" in result.stdout and "671.03 B" in result.stdout
    assert result.stderr == ""


def test_model_precision_halves_weight_bytes(runner):
    bf16 = json.loads(run(runner, "model", "qwen3-30b-a3b", "--json").stdout)
    at = json.loads(run(runner, "model", "qwen3-30b-a3b@fp8", "--json").stdout)
    opt = json.loads(run(runner, "model", "qwen3-30b-a3b", "--precision", "fp8", "--json").stdout)
    assert at["weight_precision"] == opt["weight_precision"] == "fp8"
    half = pytest.approx(bf16["weight_bytes"] / 2, rel=1e-6)
    assert at["weight_bytes"] == opt["weight_bytes"] == half
    assert at["total_params"] == bf16["total_params"]
    assert at["kv_bytes_per_token"] == bf16["kv_bytes_per_token"]  # the KV cache stays bf16


def test_model_from_config_file_and_directory(runner, tmp_path):
    src = REPO / "solver" / "presets" / "models" / MODEL_PRESETS["mixtral-8x7b"]
    model_dir = tmp_path / "Mixtral"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(src.read_text())
    by_file = json.loads(run(runner, "model", model_dir / "config.json", "--json").stdout)
    by_dir = json.loads(run(runner, "model", model_dir, "--json").stdout)
    preset = json.loads(run(runner, "model", "mixtral-8x7b", "--json").stdout)
    assert by_file["total_params"] == by_dir["total_params"] == preset["total_params"]
    assert by_dir["name"] == "Mixtral"


# ----------------------------------------------------------------------------------------------
# estimate
# ----------------------------------------------------------------------------------------------


def test_estimate_json_matches_the_library(runner, small):
    result = run(runner, "estimate", small, "--plan", VALID_PLAN, "--json")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    doc = json.loads(result.stdout)
    assert list(doc) == list(ESTIMATE_KEYS)
    instance = load_instance(small)
    expected = estimate(instance, parse_plan_arg(VALID_PLAN, 16)).model_dump()
    assert doc["metrics"] == expected
    assert doc["schema_version"] == contract.SCHEMA_VERSION
    assert doc["batch"] == 16  # the workload's fixed batch
    assert doc["gpus"] == 4 and doc["degrees"]["tp"] == 4
    assert {"weights", "kv_cache"} <= doc["memory"]["terms_gb"].keys()
    assert doc["memory"]["total_gb"] <= doc["memory"]["budget_gb"]
    assert {"decode_step_s", "full_step_s", "tpot", "ttft", "sources"} <= doc["time"].keys()
    assert doc["time"]["tpot"]["tpot_s"] == doc["metrics"]["tpot_s"]
    assert doc["time"]["ttft"]["ttft_s"] == doc["metrics"]["ttft_s"]
    assert len(doc["stages"]) == 1
    assert doc["stages"][0]["first_layer"] == 0 and doc["stages"][0]["last_layer"] == 47


def test_estimate_plan_file(runner, small, tmp_path):
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text("degrees: {tp: 4, ep: 4, pp: 2}\nbatch: 16\n")
    doc = json.loads(run(runner, "estimate", small, "--plan", plan_file, "--json").stdout)
    assert doc["degrees"]["pp"] == 2 and doc["gpus"] == 8 and len(doc["stages"]) == 2


def test_estimate_broken_plan_still_prints_metrics(runner, small):
    result = run(runner, "estimate", small, "--plan", BROKEN_PLAN, "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["metrics"]["ttft_s"] > 0
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("warning: plan breaks") and "moeplan verify" in lines[0]


def test_estimate_human_tables(runner, small):
    result = run(runner, "estimate", small, "--plan", "tp=4,ep=4,pp=2")
    assert result.exit_code == 0
    for text in ("Metrics", "TTFT", "kv_cache", "moe_experts", "Pipeline stages", "24-47"):
        assert text in result.stdout


# ----------------------------------------------------------------------------------------------
# verify
# ----------------------------------------------------------------------------------------------


def test_verify_valid_plan_exits_0(runner, small):
    result = run(runner, "verify", small, "--plan", VALID_PLAN)
    assert result.exit_code == 0
    assert "VALID" in result.stdout


def test_verify_broken_plan_exits_1(runner, small):
    result = run(runner, "verify", small, "--plan", BROKEN_PLAN)
    assert result.exit_code == 1
    assert "[divisibility] ep = 3 does not divide" in result.stdout
    assert "INVALID" in result.stdout
    report = json.loads(run(runner, "verify", small, "--plan", BROKEN_PLAN, "--json").stdout)
    assert report["valid"] is False
    assert "divisibility" in {v["rule"] for v in report["violations"]}
    assert report["estimate"]["metrics"]["tpot_s"] > 0


def test_verify_claimed_plan(runner, tmp_path):
    path = tmp_path / "claimed.yaml"
    path.write_text(SMALL + "claimed_plan:\n  degrees: {tp: 4, ep: 4}\n  batch: 16\n"
                    "  claimed_total_gpus: 8\n")
    result = run(runner, "verify", path, "--json")
    assert result.exit_code == 1
    assert [v["rule"] for v in json.loads(result.stdout)["violations"]] == ["gpu_identity"]


def test_verify_without_any_plan_is_bad_input(runner, small):
    one_error_line(run(runner, "verify", small), "--plan")


# ----------------------------------------------------------------------------------------------
# Every bad input: one line, exit 2
# ----------------------------------------------------------------------------------------------

WORKLOAD = "workload: {input_len: 1024, output_len: 256, batch: 16}"

BAD_INSTANCES = {
    "bad_yaml": ("bad.yaml", "model: [unclosed\nhardware: x\n", "invalid YAML"),
    "bad_json": ("bad.json", '{"model": ', "invalid JSON"),
    "not_a_mapping": ("list.yaml", "- a\n- b\n", "instance"),
    "unknown_model": ("m.yaml", f"model: nope\nhardware: h100-sxm\n{WORKLOAD}\n", "model"),
    "unknown_hardware": ("h.yaml", f"model: qwen3-30b-a3b\nhardware: h101\n{WORKLOAD}\n",
                         "hardware"),
    "missing_field": ("w.yaml", "model: qwen3-30b-a3b\nhardware: h100-sxm\n", "workload"),
    "wrong_type": ("t.yaml", "model: qwen3-30b-a3b\nhardware: h100-sxm\nworkload: "
                   "{input_len: abc, output_len: 256, batch: 16}\n", "workload.input_len"),
    "negative_batch": ("b.yaml", "model: qwen3-30b-a3b\nhardware: h100-sxm\nworkload: "
                       "{input_len: 1024, output_len: 256, batch: -4}\n", "batch"),
    "max_input_below_input": ("i.yaml", "model: qwen3-30b-a3b\nhardware: h100-sxm\nworkload: "
                              "{input_len: 1024, max_input_len: 512, output_len: 256, "
                              "batch: 16}\n", "max_input_len"),
    "nan": ("n.yaml", "model: qwen3-30b-a3b\nhardware: h100-sxm\nworkload: {input_len: 1024, "
            "output_len: 256, batch: 16, targets: {max_ttft_s: .nan}}\n", "max_ttft_s"),
    "inf": ("f.yaml", "model: qwen3-30b-a3b\nhardware: h100-sxm\nworkload: {input_len: 1024, "
            "output_len: 256, batch: 16, targets: {max_tpot_s: .inf}}\n", "max_tpot_s"),
    "unknown_field": ("u.yaml", f"model: qwen3-30b-a3b\nhardware: h100-sxm\n{WORKLOAD}\n"
                      "colour: blue\n", "colour"),
    "batch_range_without_batch": ("r.yaml", "model: qwen3-30b-a3b\nhardware: h100-sxm\n"
                                  "workload: {input_len: 1024, output_len: 256, "
                                  "batch: {min: 4, max: 64}}\n", "batch"),
    "default_batch_without_batch": ("d.yaml", "model: qwen3-30b-a3b\nhardware: h100-sxm\n"
                                    "workload: {input_len: 1024, output_len: 256}\n", "batch"),
    "batch_step_removed": ("s.yaml", "model: qwen3-30b-a3b\nhardware: h100-sxm\nworkload: "
                           "{input_len: 1024, output_len: 256, batch: {min: 4, max: 64, "
                           "step: 4}}\n", "workload.batch.step"),
    "boolean_batch": ("bb.yaml", "model: qwen3-30b-a3b\nhardware: h100-sxm\nworkload: "
                      "{input_len: 1024, output_len: 256, batch: true}\n", "workload.batch"),
    "unknown_engine": ("e.yaml", f"model: qwen3-30b-a3b\nhardware: h100-sxm\n{WORKLOAD}\n"
                       "engine: {name: tgi}\n", "engine.name"),
    "engine_memory_fraction": ("em.yaml", f"model: qwen3-30b-a3b\nhardware: h100-sxm\n"
                               f"{WORKLOAD}\nengine: {{gpu_memory_utilization: 1.5}}\n",
                               "engine.gpu_memory_utilization"),
}


@pytest.mark.parametrize("case", sorted(BAD_INSTANCES))
@pytest.mark.parametrize("cmd", ["estimate", "verify"])
def test_bad_instance_is_one_line(runner, tmp_path, case, cmd):
    name, text, field = BAD_INSTANCES[case]
    path = tmp_path / name
    path.write_text(text)
    one_error_line(run(runner, cmd, path, "--plan", VALID_PLAN), field)


def test_missing_file_and_directory(runner, tmp_path):
    one_error_line(run(runner, "estimate", tmp_path / "nope.yaml", "--plan", VALID_PLAN),
                   "nope.yaml")
    one_error_line(run(runner, "verify", tmp_path, "--plan", VALID_PLAN), "directory")
    one_error_line(run(runner, "solve", tmp_path / "nope.yaml"), "nope.yaml")


@pytest.mark.parametrize(
    "plan, field",
    [
        ("tp=x", "tp"),
        ("tp", "--plan"),
        ("foo=2", "foo"),
        ("tp=0", "tp"),
        ("tp=4,ep=4,batch=-1", "batch"),
        ("missing-plan.json", "missing-plan.json"),
    ],
)
def test_bad_plan_is_one_line(runner, small, plan, field):
    one_error_line(run(runner, "estimate", small, "--plan", plan), field)


# ----------------------------------------------------------------------------------------------
# Strict input: each of these was read silently (the last duplicate won, `yes` was 1, `17:04`
# was 1024, `tp=٨` was 8) and is now one error line naming the key (and, in YAML, the line)
# ----------------------------------------------------------------------------------------------


def _edit(old: str, new: str, text: str = SMALL) -> str:
    assert old in text
    return text.replace(old, new)


STRICT_YAML = {  # case: (file text, key named, where, what the rule says)
    "duplicate_key": (_edit("  batch: 16\n", "  batch: 0\n  batch: 32\n"), "workload.batch",
                      "lines 7 and 8", "duplicate key"),
    "duplicate_section": (SMALL + "hardware: a100-sxm-80gb\n", "hardware", "lines 3 and 8",
                          "duplicate key"),
    "yes": (_edit("output_len: 256", "output_len: yes"), "workload.output_len", "line 6",
            "'yes' is true in YAML 1.1"),
    "on": (_edit("output_len: 256", "output_len: on"), "workload.output_len", "line 6",
           "'on' is true in YAML 1.1"),
    "off": (_edit("output_len: 256", "output_len: Off"), "workload.output_len", "line 6",
            "'Off' is false in YAML 1.1"),
    "y": (_edit("batch: 16", "batch: y"), "workload.batch", "line 7", "'y' is true in YAML 1.1"),
    "n": (_edit("name: small", "name: n"), "name", "line 1", "'n' is false in YAML 1.1"),
    "sexagesimal": (_edit("input_len: 1024", "input_len: 17:04"), "workload.input_len",
                    "line 5", "'17:04' is 1024 in YAML 1.1"),
    "octal_0o": (_edit("output_len: 256", "output_len: 0o400"), "workload.output_len", "line 6",
                 "'0o400' is text in YAML 1.1 but 256 in YAML 1.2"),
    "octal_0": (_edit("output_len: 256", "output_len: 0400"), "workload.output_len", "line 6",
                "'0400' is 256 in YAML 1.1 but 400 in YAML 1.2"),
    "underscores": (_edit("input_len: 1024", "input_len: 1_024"), "workload.input_len",
                    "line 5", "'1_024' is 1024 in YAML 1.1"),
}


@pytest.mark.parametrize("case", sorted(STRICT_YAML))
def test_yaml_duplicates_and_yaml11_literals_are_one_line_with_key_and_line(runner, tmp_path,
                                                                            case):
    text, key, where, rule = STRICT_YAML[case]
    path = tmp_path / "instance.yaml"
    path.write_text(text)
    line = one_error_line(run(runner, "verify", path, "--plan", VALID_PLAN), key)
    assert line.startswith(f"error: {key}: "), line
    assert rule in line and f"({path}, {where})" in line, line


def test_json_duplicate_key_is_one_line_naming_the_key(runner, tmp_path):
    path = tmp_path / "instance.json"
    path.write_text('{"model": "qwen3-30b-a3b", "hardware": "h100-sxm", "workload": '
                    '{"input_len": 1024, "output_len": 256, "batch": 0, "batch": 32}}')
    line = one_error_line(run(runner, "verify", path, "--plan", VALID_PLAN), "workload.batch")
    assert line == f"error: workload.batch: duplicate key; a key may appear once in an object " \
                   f"({path})"


@pytest.mark.parametrize("plan, rule", [
    ("tp=8,tp=4", "tp given twice (tp=8 and tp=4)"),
    ("sp=2,ep=4,cp=2", "cp given twice (sp=2 and cp=2)"),
    ("tp=٨", "ASCII digits"),  # ARABIC-INDIC DIGIT EIGHT: int() reads it as 8
    ("tp=８", "ASCII digits"),  # FULLWIDTH DIGIT EIGHT
    ("tp=1_0", "ASCII digits"),
])
def test_plan_argument_duplicates_and_non_ascii_digits_are_one_line(runner, small, plan, rule):
    line = one_error_line(run(runner, "estimate", small, "--plan", plan), "--plan")
    assert rule in line, line


def test_a_boolean_for_a_degree_is_one_line(runner, small, tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_text("degrees: {tp: true, ep: 4}\nbatch: 16\n")
    one_error_line(run(runner, "estimate", small, "--plan", plan), "tp")


def test_values_yaml_11_and_12_read_alike_are_accepted(runner, tmp_path):
    """Quoted text, floats in exponent form (text in YAML 1.1, read as numbers before too),
    hex, an explicit !!str, anchors and aliases: no error."""
    path = tmp_path / "instance.yaml"
    path.write_text(_edit("name: small", "name: 'yes'\ndescription: !!str 17:04", SMALL)
                    + "  targets: {max_tpot_s: 5e-2, max_ttft_s: &t 2.0E+0}\n"
                    + "search: {fix: {ep: 0x4}, time_limit_s: *t}\n")
    result = run(runner, "verify", path, "--plan", VALID_PLAN, "--json")
    assert result.exit_code == 0, result.stderr
    instance = load_instance(path)
    assert instance.name == "yes" and instance.description == "17:04"
    assert instance.workload.targets.max_tpot_s == 0.05
    assert instance.search.fix["ep"] == 4 and instance.search.time_limit_s == 2.0


@pytest.mark.parametrize(
    "args, field",
    [
        (["model", "nope"], "model"),
        (["model", "qwen3-30b-a3b@fp9"], "fp9"),
        (["model", "qwen3-30b-a3b", "--precision", "fp9"], "--precision"),
        (["schema", "--what", "everything"], "--what"),
        (["estimate", "SMALL", "--bogus"], "--bogus"),
        (["estimate"], "INSTANCE"),
        (["solve", "SMALL", "--time-limit", "abc"], "--time-limit"),
        (["solve", "SMALL", "--time-limit", "-1"], "--time-limit"),
        (["solve", "SMALL", "--workers", "0"], "--workers"),
        (["solve", "SMALL", "--server", "nohostport"], "--server"),
        (["solve", "SMALL", "--out", "no/such/dir/plan.json"], "--out"),
        (["frobnicate"], "frobnicate"),
    ],
)
def test_bad_option_is_one_line(runner, small, args, field):
    args = [str(small) if a == "SMALL" else a for a in args]
    one_error_line(run(runner, *args), field)


def test_internal_error_is_one_line_exit_3(runner, small, monkeypatch):
    import solver.verify

    def boom(*_args, **_kwargs):
        raise RuntimeError("cost model exploded")

    monkeypatch.setattr(solver.verify, "verify", boom)
    monkeypatch.delenv("MOEPLAN_DEBUG", raising=False)
    result = run(runner, "estimate", small, "--plan", VALID_PLAN)
    assert result.exit_code == 3
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("internal error: RuntimeError")
    monkeypatch.setenv("MOEPLAN_DEBUG", "1")
    result = run(runner, "estimate", small, "--plan", VALID_PLAN)
    assert result.exit_code == 3 and "Traceback" in result.stderr


# ----------------------------------------------------------------------------------------------
# schema, presets
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("what", [None, "instance", "plan", "solve", "result", "verify",
                                  "estimate", "model", "presets"])
def test_schema_is_json_schema(runner, what):
    args = ["schema"] + (["--what", what] if what else [])
    result = run(runner, *args)
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert "properties" in schema
    if what in (None, "instance"):
        assert {"model", "hardware", "workload"} <= schema["properties"].keys()


def test_presets_lists_every_preset(runner):
    doc = json.loads(run(runner, "presets", "--json").stdout)
    assert [m["name"] for m in doc["models"]] == model_preset_names()
    assert [h["name"] for h in doc["hardware"]] == hardware_preset_names()
    for m in doc["models"]:
        rel = PUBLISHED_REL.get(m["name"], 0.01)
        assert abs(m["total_params"] / PUBLISHED_TOTAL_PARAMS[m["name"]] - 1) < rel
    assert all(h["hbm_gb"] > 0 and h["tflops_bf16"] > 0 for h in doc["hardware"])
    human = run(runner, "presets").stdout
    for name in model_preset_names() + hardware_preset_names():
        assert name in human


# ----------------------------------------------------------------------------------------------
# solve (rendering against stub results; one real solve)
# ----------------------------------------------------------------------------------------------


def _stub_planner(monkeypatch, result: SolveResult) -> None:
    import solver.planner

    monkeypatch.setattr(solver.planner, "solve", lambda instance, **_kw: result)


def _experts(n: int) -> tuple[LayerExperts, ...]:
    return tuple(LayerExperts(layer=i, hottest_load=0.26 + i / 1000, greedy_hottest_load=0.3,
                              lower_bound=0.26, optimal=i % 2 == 0, replicated_experts=1)
                 for i in range(n))


@pytest.mark.parametrize("layers", [2, 48])  # per-layer table, then min/median/max
def test_solve_feasible_stub(runner, small, tmp_path, monkeypatch, layers):
    plan = Plan(degrees=Degrees(tp=4, ep=4), batch=16)
    result = SolveResult(status="FEASIBLE", plan=plan, objective=4, bound=2, gap=0.5,
                         solve_time_s=1.5, solver="stub", experts=_experts(layers))
    _stub_planner(monkeypatch, result)
    human = run(runner, "solve", small)
    assert human.exit_code == 0
    assert "FEASIBLE" in human.stdout and "gap 50.0%" in human.stdout
    assert ("median" in human.stdout) == (layers > 8)
    out = tmp_path / "plan.json"
    machine = run(runner, "solve", small, "--json", "--out", out)
    doc = json.loads(machine.stdout)
    assert doc["status"] == "FEASIBLE" and doc["objective"] == 4 and doc["bound"] == 2
    assert doc["estimate"]["metrics"] == estimate(load_instance(small), plan).model_dump()
    assert len(doc["experts"]) == layers and doc["plan"]["degrees"]["tp"] == 4
    assert tuple(doc["estimate"]) == ESTIMATE_KEYS
    assert json.loads(out.read_text())["schema_version"] == contract.SCHEMA_VERSION
    assert run(runner, "verify", small, "--plan", out).exit_code == 0
    solve_json = tmp_path / "solve.json"
    solve_json.write_text(machine.stdout)
    assert run(runner, "verify", small, "--plan", solve_json).exit_code == 0


def test_solve_infeasible_stub(runner, small, monkeypatch):
    explanation = Explanation(summary="max_ttft_s is out of reach within max_gpus = 8",
                              conflicts=("max_ttft_s + max_gpus",),
                              nearest={"lowest_ttft_s": 0.07, "gpus_needed_without_max_gpus": 24})
    _stub_planner(monkeypatch, SolveResult(status="INFEASIBLE", solve_time_s=0.5, solver="stub",
                                           explanation=explanation))
    human = run(runner, "solve", small)
    assert human.exit_code == 1
    assert "INFEASIBLE" in human.stdout and "lowest_ttft_s" in human.stdout
    doc = json.loads(run(runner, "solve", small, "--json").stdout)
    assert doc["status"] == "INFEASIBLE" and doc["plan"] is None and doc["estimate"] is None
    assert doc["explanation"]["nearest"]["gpus_needed_without_max_gpus"] == 24


def test_solve_server_without_client_is_one_line(runner, small, monkeypatch):
    monkeypatch.setitem(sys.modules, "service.client", None)  # import fails
    one_error_line(run(runner, "solve", small, "--server", "localhost:50051"), "--server")


@pytest.mark.parametrize("code, message", [
    ("RESOURCE_EXHAUSTED", "server busy: 1 solves running and 1 waiting; retry later"),
    ("DEADLINE_EXCEEDED", "the deadline leaves 0.120 s when a solver worker is free"),
    ("INTERNAL", "internal error (logged on the server)"),
])
def test_solve_server_error_status_is_one_line_naming_the_server(runner, small, monkeypatch,
                                                                 code, message):
    """The server answered, with an error: its code and message, exit 2, not an internal
    error of the CLI."""
    import grpc

    from service.client import PlannerClient, RemoteError

    def refuse(self, *_args, **_kwargs):
        raise RemoteError(getattr(grpc.StatusCode, code), message)

    monkeypatch.setattr(PlannerClient, "solve", refuse)
    line = one_error_line(run(runner, "solve", small, "--server", "127.0.0.1:50051"), "--server")
    assert line == f"error: --server: 127.0.0.1:50051 answered {code}: {message}"


def test_solve_real_small_instance(runner, small, tmp_path):
    out = tmp_path / "plan.json"
    result = run(runner, "solve", small, "--json", "--out", out, "--time-limit", "30")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["status"] == "OPTIMAL" and doc["estimate"]["gpus"] == doc["objective"]
    assert doc["search_space"] and doc["expert_load"] and doc["tie_breaks_proved"]
    assert run(runner, "verify", small, "--plan", out).exit_code == 0


# ----------------------------------------------------------------------------------------------
# The real entry point
# ----------------------------------------------------------------------------------------------


def test_python_dash_m_moeplan(small):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "moeplan", "estimate", str(small), "--plan", VALID_PLAN, "--json"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert list(json.loads(proc.stdout)) == list(ESTIMATE_KEYS)
    assert proc.stderr == ""


def test_model_declared_count_warning(runner, monkeypatch):
    import solver.params

    monkeypatch.setattr(solver.params, "check_declared", lambda spec: "declared 1 differs by 99%")
    human = run(runner, "model", "mixtral-8x7b")
    assert human.exit_code == 0
    assert human.stderr.splitlines() == ["warning: declared 1 differs by 99%"]
    machine = run(runner, "model", "mixtral-8x7b", "--json")
    assert machine.stderr == ""
    assert json.loads(machine.stdout)["warning"] == "declared 1 differs by 99%"


@pytest.mark.integration
def test_verify_prints_the_declared_parameter_warning(runner) -> None:
    """Seed 001 declares 10B parameters for an architecture of 318M: verify must say so."""
    seed = Path(__file__).resolve().parent.parent / "instances" / "seeds" / "001-moe-10b-ep256.yaml"
    result = runner.invoke(app, ["verify", str(seed)])
    assert result.exit_code == 1
    assert "declared_total_params 10,000,000,000" in result.output
    assert "318,128,640" in result.output


# ----------------------------------------------------------------------------------------------
# Plans moeplan wrote, read back; bench and plot without their extras
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("doc, says", [
    ({"schema_version": "1.0", "degrees": {"tp": 4}, "batch": 16}, "plan.schema_version"),
    ({"schema_version": 2, "degrees": {"tp": 4}, "batch": 16}, "plan.schema_version"),
    ({"schema_version": "2.0", "status": "INFEASIBLE", "plan": None}, "holds no plan"),
    ({"schema_version": "2.0", "degrees": {"tp": 4}, "batch": 16, "memory": {}}, "estimate"),
    ({"schema_version": "2.0", "valid": True, "violations": []}, "verify document"),
])
def test_a_document_that_is_not_a_plan_is_one_line(runner, small, tmp_path, doc, says):
    path = tmp_path / "doc.json"
    path.write_text(json.dumps(doc))
    line = one_error_line(run(runner, "verify", small, "--plan", path), "plan")
    assert says in line, line


def test_plan_documents_of_every_kind_are_read(small, tmp_path):
    """A bare plan, a plan file with schema_version (solve --out) and a solve document (solve
    --json, its plan taken; older ones without schema_version too) give the same Plan."""
    plan = {"degrees": {"tp": 4, "ep": 4, "etp": 1, "edp": 1}, "batch": 16}
    expected = Plan.model_validate(plan)
    for doc in (plan, {"schema_version": contract.SCHEMA_VERSION, **plan},
                {"schema_version": contract.SCHEMA_VERSION, "status": "OPTIMAL", "plan": plan},
                {"status": "OPTIMAL", "plan": plan}):
        path = tmp_path / "plan.json"
        path.write_text(json.dumps(doc))
        assert parse_plan_arg(str(path), None) == expected


def _without_matplotlib(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` fails


def test_plot_without_matplotlib_is_one_line_before_solving(runner, small, monkeypatch, tmp_path):
    import solver.planner

    _without_matplotlib(monkeypatch)
    monkeypatch.setattr(solver.planner, "solve", lambda *_a, **_k: pytest.fail("solved"))
    line = one_error_line(run(runner, "plot", small, "--out", tmp_path), "plot")
    assert line == ("error: plot: matplotlib is not installed; install the plots extra: "
                    "pip install 'moeplan[plots]'")


def test_bench_plots_without_matplotlib_is_one_line_before_solving(runner, small, monkeypatch,
                                                                   tmp_path):
    _without_matplotlib(monkeypatch)
    out = tmp_path / "results.jsonl"
    line = one_error_line(run(runner, "bench", small, "--out", out, "--plots", tmp_path / "p"),
                          "--plots")
    assert line == ("error: --plots: matplotlib is not installed; install the plots extra: "
                    "pip install 'moeplan[plots]'")
    assert not out.exists()  # nothing was solved


@pytest.mark.parametrize("address, says", [
    ("127.0.0.1:1", "cannot reach Ray at 127.0.0.1:1"),  # nothing listens: refused at once
    ("ray://127.0.0.1:1", "cannot reach Ray at ray://127.0.0.1:1"),
    ("no-such-host.invalid:6379", "cannot reach Ray at no-such-host.invalid:6379"),
    ("nohostport", "expected HOST:PORT"),
])
def test_bench_with_an_unreachable_ray_address_fails_fast(runner, small, tmp_path, address,
                                                          says):
    """Ray itself retries for minutes (over 200 s measured) where nothing listens."""
    pytest.importorskip("ray")
    start = time.monotonic()
    line = one_error_line(run(runner, "bench", small, "--out", tmp_path / "r.jsonl",
                              "--executor", "ray", "--ray-address", address), "--ray-address")
    assert says in line, line
    assert time.monotonic() - start < 10


def test_bench_ray_address_that_never_answers_times_out(runner, small, tmp_path, monkeypatch):
    """A host that drops the packets: the probe gives up after RAY_CONNECT_TIMEOUT_S."""
    import socket

    import moeplan.cmd_bench

    pytest.importorskip("ray")
    calls = []

    def no_answer(address, timeout):
        calls.append((address, timeout))
        raise TimeoutError("timed out")

    monkeypatch.setattr(socket, "create_connection", no_answer)
    line = one_error_line(run(runner, "bench", small, "--out", tmp_path / "r.jsonl",
                              "--executor", "ray", "--ray-address", "10.255.255.1:6379"),
                          "--ray-address")
    assert calls == [(("10.255.255.1", 6379), moeplan.cmd_bench.RAY_CONNECT_TIMEOUT_S)]
    assert "no answer within 5 s" in line, line
