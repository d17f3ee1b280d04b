"""The exported instance-file JSON Schema accepts every shipped instance and rejects bad ones."""

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
