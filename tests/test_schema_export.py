"""The exported JSON Schemas: the instance-file schema accepts every shipped instance and rejects
bad ones; every document moeplan writes conforms to the schema of its kind (the JSON contract,
solver/contract.py)."""

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from solver.instance import instance_file_json_schema

INSTANCES = Path(__file__).resolve().parent.parent / "instances"
FILES = sorted(INSTANCES.rglob("*.yaml"))


@pytest.fixture(scope="module")
def schema() -> dict:
    return instance_file_json_schema()


@pytest.mark.unit
@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(INSTANCES)))
def test_every_instance_file_matches_the_exported_schema(schema, path) -> None:
    jsonschema.validate(yaml.safe_load(path.read_text()), schema)


@pytest.mark.unit
@pytest.mark.parametrize("bad", [
    {"model": "qwen3-30b-a3b", "hardware": "h100-sxm"},  # workload missing
    {"model": "qwen3-30b-a3b", "hardware": "no-such-gpu",
     "workload": {"input_len": 1, "output_len": 1, "batch": 1}},
    {"model": "qwen3-30b-a3b", "hardware": "h100-sxm", "typo": 1,
     "workload": {"input_len": 1, "output_len": 1, "batch": 1}},
    {"model": "qwen3-30b-a3b", "hardware": "h100-sxm",
     "workload": {"input_len": 1, "output_len": 1, "batch": 0}},
])
def test_the_exported_schema_rejects_bad_files(schema, bad) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


# ----------------------------------------------------------------------------------------------
# The one JSON contract: every document moeplan writes carries schema_version, validates against
# the schema `moeplan schema --what ...` exports, has one representation of stages and
# placements (the Plan's), and solve's outputs are read back by verify --plan / estimate --plan.
# ----------------------------------------------------------------------------------------------

SMALL = """\
name: small
model: qwen3-30b-a3b
hardware: h100-sxm
workload:
  input_len: 1024
  output_len: 256
  batch: 16
"""
#: The same model over a batch range, with a target: a plan whose batch the solver chooses.
RANGE = """\
name: range
model: qwen3-30b-a3b
hardware: h100-sxm
workload:
  input_len: 2048
  output_len: 512
  batch: {min: 8, max: 64}
  targets: {max_tpot_s: 0.05}
engine: {name: sglang}
search: {time_limit_s: 30}
"""


def _cli(*args: object, code: int | tuple[int, ...] = 0) -> str:
    from typer.testing import CliRunner

    from moeplan.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code in ((code,) if isinstance(code, int) else code), (
        args, result.exit_code, result.stderr)
    return result.stdout


@pytest.fixture(scope="module")
def exported() -> dict[str, dict]:
    """Every schema `moeplan schema --what` exports, checked to be a valid JSON Schema."""
    schemas = {}
    for what in ("instance", "plan", "solve", "result", "verify", "estimate", "model",
                 "presets"):
        schema = json.loads(_cli("schema", "--what", what))
        jsonschema.Draft202012Validator.check_schema(schema)
        schemas[what] = schema
    return schemas


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("contract")
    (d / "small.yaml").write_text(SMALL)
    (d / "range.yaml").write_text(RANGE)
    return d


@pytest.fixture(scope="module")
def solved(work: Path) -> dict[str, Path]:
    """solve --json and --out of both instances, written to files."""
    out = {}
    for name in ("small", "range"):
        plan = work / f"{name}-plan.json"
        doc = _cli("solve", work / f"{name}.yaml", "--json", "--out", plan)
        (work / f"{name}-solve.json").write_text(doc)
        out[f"{name}-solve"], out[f"{name}-plan"] = work / f"{name}-solve.json", plan
    return out


def _conforms(doc: dict, schema: dict) -> None:
    from solver.contract import SCHEMA_VERSION

    jsonschema.Draft202012Validator(schema).validate(doc)
    assert doc["schema_version"] == SCHEMA_VERSION


def _plans_in(doc: object) -> list[dict]:
    """Every plan-shaped mapping in a document (anything with degrees and stages)."""
    if isinstance(doc, dict):
        here = [doc] if {"degrees", "stages"} <= doc.keys() else []
        return here + [p for v in doc.values() for p in _plans_in(v)]
    if isinstance(doc, list):
        return [p for v in doc for p in _plans_in(v)]
    return []


def _one_representation(doc: dict) -> None:
    """Stages are {first_layer, last_layer, ...} mappings and placements [{layer, ranks}], in
    every document (an estimate names what it costed ``placement_source``, never ``placement``)."""
    for plan in _plans_in(doc):
        for stage in plan["stages"] or ():
            assert isinstance(stage, dict) and {"first_layer", "last_layer"} <= stage.keys()
        placement = plan.get("placement")
        for layer in placement or ():
            assert set(layer) == {"layer", "ranks"} and all(isinstance(r, list)
                                                           for r in layer["ranks"])


@pytest.mark.integration
@pytest.mark.parametrize("name", ["small", "range"])
def test_solve_json_and_out_conform(exported, solved, name) -> None:
    doc = json.loads(solved[f"{name}-solve"].read_text())
    _conforms(doc, exported["solve"])
    _conforms(doc, exported["result"])
    assert doc["status"] == "OPTIMAL" and doc["estimate"] is not None
    _conforms(doc["estimate"], exported["estimate"])
    plan = json.loads(solved[f"{name}-plan"].read_text())
    _conforms(plan, exported["plan"])
    assert {k: v for k, v in plan.items() if k != "schema_version"} == doc["plan"]
    assert plan["stages"] and plan["placement"]  # the planner's plan says everything
    _one_representation(doc)
    _one_representation(plan)


@pytest.mark.integration
@pytest.mark.parametrize("name", ["small", "range"])
@pytest.mark.parametrize("source", ["solve", "plan"])
def test_verify_and_estimate_read_solve_outputs_back(exported, work, solved, name, source):
    """`verify --plan` and `estimate --plan` take both the --json document and the --out file
    of solve, and their own documents conform too."""
    path = solved[f"{name}-{source}"]
    instance = work / f"{name}.yaml"
    report = json.loads(_cli("verify", instance, "--plan", path, "--json"))
    _conforms(report, exported["verify"])
    assert report["valid"] and report["notes"] == []  # stages and placement were read back
    estimate = json.loads(_cli("estimate", instance, "--plan", path, "--json"))
    _conforms(estimate, exported["estimate"])
    solved_doc = json.loads(solved[f"{name}-solve"].read_text())
    assert estimate == solved_doc["estimate"] == report["estimate"]
    _one_representation(estimate)


@pytest.mark.integration
@pytest.mark.parametrize("plan, code", [
    ("tp=4,ep=4", 0),  # valid, default stages and placement
    ("tp=4,ep=4,pp=2", 0),  # two stages
    ("tp=4,ep=3", 1),  # breaks rules: still a full document
])
def test_verify_and_estimate_json_conform(exported, work, plan, code) -> None:
    instance = work / "small.yaml"
    report = json.loads(_cli("verify", instance, "--plan", plan, "--json", code=code))
    _conforms(report, exported["verify"])
    assert report["valid"] == (code == 0) and report["estimate"] is not None
    estimate = json.loads(_cli("estimate", instance, "--plan", plan, "--json"))
    _conforms(estimate, exported["estimate"])
    _one_representation(estimate)


@pytest.mark.integration
def test_infeasible_and_unknown_solve_json_conform(exported, work, monkeypatch) -> None:
    import solver.planner
    from solver.schema import Explanation, SolveResult

    for result in (
        SolveResult(status="INFEASIBLE", solve_time_s=0.1, solver="stub",
                    explanation=Explanation(summary="no", nearest={"lowest_ttft_s": 0.1})),
        SolveResult(status="UNKNOWN", solve_time_s=0.1, solver="stub", advice="wait longer"),
    ):
        monkeypatch.setattr(solver.planner, "solve", lambda instance, r=result, **_kw: r)
        doc = json.loads(_cli("solve", work / "small.yaml", "--json", code=1))
        _conforms(doc, exported["solve"])
        assert doc["plan"] is None and doc["estimate"] is None


@pytest.mark.integration
def test_model_and_presets_json_conform(exported) -> None:
    from solver.presets import model_preset_names

    for name in model_preset_names():
        _conforms(json.loads(_cli("model", name, "--json")), exported["model"])
    _conforms(json.loads(_cli("model", "deepseek-v3@fp8", "--json")), exported["model"])
    _conforms(json.loads(_cli("presets", "--json")), exported["presets"])


@pytest.mark.integration
def test_bench_records_hold_plans_in_the_plan_representation(exported, work) -> None:
    """bench's JSON lines: each solved instance's plan is a plan document (schema `plan`)."""
    out = work / "bench.jsonl"
    _cli("bench", work / "small.yaml", work / "range.yaml", "--out", out, "--workers", "1",
         "--no-reference", "--overwrite")
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 2
    for rec in records:
        assert rec["status"] == "OPTIMAL", rec.get("error")
        _conforms(rec["plan"], exported["plan"])
        _one_representation(rec)
