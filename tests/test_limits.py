"""Resource limits (issue 6, item 1): every limit is accepted at its value and rejected just past
it with a message naming the field, through the library and through ``moeplan verify`` (exit 2,
one line on stderr). Real models and clusters stay inside: Kimi-K2 (384 experts), 4,096 GPUs,
Llama 4 Scout's 10M-token context. docs/reliability.md lists every limit with its reason."""

from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, one_error_line
from typer.testing import CliRunner

from moeplan.cli import app
from solver import schema as S
from solver.hf_import import model_from_hf_config
from solver.instance import (
    MAX_DOCUMENT_DEPTH,
    MAX_DOCUMENT_VALUES,
    MAX_INSTANCE_BYTES,
    InputError,
    check_document,
    instance_from_dict,
    load_instance,
    parse_plan_arg,
)
from solver.presets import MODEL_PRESETS
from solver.schema import Plan
from solver.verify import verify

pytestmark = pytest.mark.integration

#: A small explicit MoE model: every model limit is tested by changing one field of it.
MODEL: dict[str, Any] = {
    "name": "limits-moe",
    "num_layers": 2,
    "hidden_size": 256,
    "attention": {"num_heads": 4, "num_kv_heads": 2, "head_dim": 64},
    "num_experts": 4,
    "top_k": 2,
    "expert_ffn_width": 128,
    "vocab_size": 1000,
}
BASE: dict[str, Any] = {
    "name": "limits",
    "model": MODEL,
    "hardware": {"preset": "h100-sxm"},
    "workload": {"input_len": 128, "output_len": 16, "batch": 4},
}

EXPLICIT_HARDWARE: dict[str, Any] = {
    "name": "limits-gpu", "peak_tflops": {"bf16": 1000.0}, "mfu": 0.5, "hbm_gb": 80.0,
    "hbm_tb_s": 3.0, "hbm_efficiency": 0.8, "gpus_per_node": 8, "intra_node_gb_s": 400.0,
    "inter_node_gb_s": 50.0, "intra_node_latency_us": 2.0, "inter_node_latency_us": 5.0,
    "comm_efficiency": 0.8, "reserved_gb": 3.0,
}


def with_value(path: str, value: Any, **also: Any) -> dict[str, Any]:
    """BASE with ``path`` (dots; ``a.b``) set to ``value``, and ``also`` (paths with ``__``)."""
    doc = copy.deepcopy(BASE)
    for p, v in [(path, value), *((k.replace("__", "."), v) for k, v in also.items())]:
        node = doc
        keys = p.split(".")
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = v
    return doc


def preset_config(name: str) -> dict[str, Any]:
    """The raw bundled config.json of preset ``name``."""
    path = resources.files("solver.presets").joinpath("models").joinpath(MODEL_PRESETS[name])
    return json.loads(path.read_text(encoding="utf-8"))


def _kimi_model() -> dict[str, Any]:
    return {
        "name": "kimi-k2-like", "num_layers": 61, "dense_layers": [0], "hidden_size": 7168,
        "attention": {"kind": "mla", "num_heads": 64, "num_kv_heads": 64, "head_dim": 192,
                      "q_lora_rank": 1536, "kv_lora_rank": 512, "qk_nope_head_dim": 128,
                      "qk_rope_head_dim": 64, "v_head_dim": 128},
        "dense_ffn_width": 18432, "num_experts": 384, "top_k": 8, "expert_ffn_width": 2048,
        "num_shared_experts": 1, "vocab_size": 163840, "weight_precision": "fp8",
        "max_position_embeddings": 131072,
    }


# (id, field path named in the error, document at the limit, document just past it)
CASES: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = [
    # -- model --
    ("layers", "model.num_layers",
     with_value("model.num_layers", S.MAX_LAYERS),
     with_value("model.num_layers", S.MAX_LAYERS + 1)),
    ("experts", "model.num_experts",
     with_value("model.num_experts", S.MAX_EXPERTS),
     with_value("model.num_experts", S.MAX_EXPERTS + 1)),
    ("top_k", "model.top_k",
     with_value("model.top_k", S.MAX_EXPERTS, model__num_experts=S.MAX_EXPERTS),
     with_value("model.top_k", S.MAX_EXPERTS + 1, model__num_experts=S.MAX_EXPERTS)),
    ("hidden", "model.hidden_size",
     with_value("model.hidden_size", S.MAX_HIDDEN),
     with_value("model.hidden_size", S.MAX_HIDDEN + 1)),
    ("heads", "model.attention.num_heads",
     with_value("model.attention.num_heads", S.MAX_HEADS),
     with_value("model.attention.num_heads", S.MAX_HEADS + 1)),
    ("head_dim", "model.attention.head_dim",
     with_value("model.attention.head_dim", 4096),
     with_value("model.attention.head_dim", 4097)),
    ("expert_width", "model.expert_ffn_width",
     with_value("model.expert_ffn_width", 4 * S.MAX_HIDDEN),
     with_value("model.expert_ffn_width", 4 * S.MAX_HIDDEN + 1)),
    ("dense_width", "model.dense_ffn_width",
     with_value("model.dense_ffn_width", 4 * S.MAX_HIDDEN, model__dense_layers=[0]),
     with_value("model.dense_ffn_width", 4 * S.MAX_HIDDEN + 1, model__dense_layers=[0])),
    ("shared_experts", "model.num_shared_experts",
     with_value("model.num_shared_experts", 64),
     with_value("model.num_shared_experts", 65)),
    ("vocab", "model.vocab_size",
     with_value("model.vocab_size", S.MAX_VOCAB),
     with_value("model.vocab_size", S.MAX_VOCAB + 1)),
    ("max_position_embeddings", "model.max_position_embeddings",
     with_value("model.max_position_embeddings", S.MAX_POSITION_EMBEDDINGS),
     with_value("model.max_position_embeddings", S.MAX_POSITION_EMBEDDINGS + 1)),
    ("model_name", "model.name",
     with_value("model.name", "m" * 200), with_value("model.name", "m" * 201)),
    # -- workload: lengths and batch --
    ("input_len", "workload.input_len",
     with_value("workload.input_len", S.MAX_SEQ_LEN),
     with_value("workload.input_len", S.MAX_SEQ_LEN + 1)),
    ("max_input_len", "workload.max_input_len",
     with_value("workload.max_input_len", S.MAX_SEQ_LEN),
     with_value("workload.max_input_len", S.MAX_SEQ_LEN + 1)),
    ("output_len", "workload.output_len",
     with_value("workload.output_len", S.MAX_SEQ_LEN),
     with_value("workload.output_len", S.MAX_SEQ_LEN + 1)),
    ("batch", "workload.batch",
     with_value("workload.batch", S.MAX_BATCH),
     with_value("workload.batch", S.MAX_BATCH + 1)),
    ("batch_range_max", "workload.batch.max",
     with_value("workload.batch", {"min": 1, "max": S.MAX_BATCH}),
     with_value("workload.batch", {"min": 1, "max": S.MAX_BATCH + 1})),
    ("batch_range_min", "workload.batch.min",
     with_value("workload.batch", {"min": S.MAX_BATCH, "max": S.MAX_BATCH}),
     with_value("workload.batch", {"min": S.MAX_BATCH + 1, "max": S.MAX_BATCH})),
    # -- engine --
    ("gpu_memory_utilization", "engine.gpu_memory_utilization",
     with_value("engine.gpu_memory_utilization", 1.0),
     with_value("engine.gpu_memory_utilization", 1.000001)),
    ("max_num_batched_tokens", "engine.max_num_batched_tokens",
     with_value("engine.max_num_batched_tokens", S.MAX_SEQ_LEN),
     with_value("engine.max_num_batched_tokens", S.MAX_SEQ_LEN + 1)),
    ("step_overhead_us", "engine.step_overhead_us",
     with_value("engine.step_overhead_us", S.MAX_LATENCY_US),
     with_value("engine.step_overhead_us", S.MAX_LATENCY_US + 1)),
    ("weight_block_size", "model.weight_block_size",
     with_value("model.weight_block_size", 4096),
     with_value("model.weight_block_size", 4097)),
    # -- GPUs: targets, degrees, claimed plans --
    ("max_gpus", "workload.targets.max_gpus",
     with_value("workload.targets.max_gpus", S.MAX_GPUS),
     with_value("workload.targets.max_gpus", S.MAX_GPUS + 1)),
    ("max_dp", "search.max_dp",
     with_value("search.max_dp", S.MAX_GPUS), with_value("search.max_dp", S.MAX_GPUS + 1)),
    ("max_pp", "search.max_pp",
     with_value("search.max_pp", S.MAX_LAYERS), with_value("search.max_pp", S.MAX_LAYERS + 1)),
    ("max_cp", "search.max_cp",
     with_value("search.max_cp", 1024), with_value("search.max_cp", 1025)),
    ("fix", "search.fix.replicas",
     with_value("search.fix", {"replicas": S.MAX_GPUS}),
     with_value("search.fix", {"replicas": S.MAX_GPUS + 1})),
    ("forbid_value", "search.forbid.pp[0]",
     with_value("search.forbid", {"pp": [S.MAX_GPUS]}),
     with_value("search.forbid", {"pp": [S.MAX_GPUS + 1]})),
    ("forbid_count", "search.forbid.replicas",
     with_value("search.forbid", {"replicas": list(range(2, 2 + S.MAX_FORBIDDEN_VALUES))}),
     with_value("search.forbid", {"replicas": list(range(2, 3 + S.MAX_FORBIDDEN_VALUES))})),
    ("redundant_experts", "search.redundant_experts",
     with_value("search.redundant_experts", S.MAX_EXPERTS),
     with_value("search.redundant_experts", S.MAX_EXPERTS + 1)),
    ("plan_degree", "claimed_plan.degrees.replicas",
     with_value("claimed_plan", {"degrees": {"replicas": S.MAX_GPUS}, "batch": 4}),
     with_value("claimed_plan", {"degrees": {"replicas": S.MAX_GPUS + 1}, "batch": 4})),
    ("plan_gpus", "claimed_plan.degrees",
     with_value("claimed_plan", {"degrees": {"tp": 4, "dp": 4, "edp": 16, "pp": 2,
                                             "replicas": S.MAX_GPUS // 32}, "batch": 4}),
     with_value("claimed_plan", {"degrees": {"tp": 4, "dp": 4, "edp": 16, "pp": 2,
                                             "replicas": S.MAX_GPUS // 32 + 1}, "batch": 4})),
    ("plan_batch", "claimed_plan.batch",
     with_value("claimed_plan", {"degrees": {}, "batch": S.MAX_BATCH}),
     with_value("claimed_plan", {"degrees": {}, "batch": S.MAX_BATCH + 1})),
    ("plan_redundant_experts", "claimed_plan.redundant_experts",
     with_value("claimed_plan", {"degrees": {}, "batch": 4, "redundant_experts": S.MAX_EXPERTS}),
     with_value("claimed_plan", {"degrees": {}, "batch": 4,
                                 "redundant_experts": S.MAX_EXPERTS + 1})),
    ("gpus_per_node", "hardware.gpus_per_node",
     with_value("hardware.gpus_per_node", 1024), with_value("hardware.gpus_per_node", 1025)),
    # -- a solve's time limit and effort --
    ("time_limit", "search.time_limit_s",
     with_value("search.time_limit_s", S.MAX_TIME_LIMIT_S),
     with_value("search.time_limit_s", S.MAX_TIME_LIMIT_S + 0.001)),
    ("workers", "search.workers",
     with_value("search.workers", 256), with_value("search.workers", 257)),
    ("random_seed", "search.random_seed",
     with_value("search.random_seed", S.MAX_RANDOM_SEED),
     with_value("search.random_seed", S.MAX_RANDOM_SEED + 1)),
    # -- expert load --
    ("alpha", "expert_load.alpha",
     with_value("expert_load", {"kind": "power_law", "alpha": 10.0}),
     with_value("expert_load", {"kind": "power_law", "alpha": 10.000001})),
    ("token_count", "expert_load.counts[1][3]",
     with_value("expert_load", {"kind": "measured",
                                "counts": [[1, 2, 3, 4], [1, 2, 3, S.MAX_TOKEN_COUNT]]}),
     with_value("expert_load", {"kind": "measured",
                                "counts": [[1, 2, 3, 4], [1, 2, 3, S.MAX_TOKEN_COUNT + 1]]})),
    # -- hardware ranges (upper and lower ends) --
    ("tflops_max", "hardware.peak_tflops.bf16",
     with_value("hardware.peak_tflops", {"bf16": S.MAX_TFLOPS}),
     with_value("hardware.peak_tflops", {"bf16": S.MAX_TFLOPS * 1.001})),
    ("tflops_min", "hardware.peak_tflops.fp8",
     with_value("hardware.peak_tflops", {"fp8": S.MIN_TFLOPS}),
     with_value("hardware.peak_tflops", {"fp8": S.MIN_TFLOPS * 0.999})),
    ("mfu_min", "hardware.mfu",
     with_value("hardware.mfu", S.MIN_EFFICIENCY),
     with_value("hardware.mfu", S.MIN_EFFICIENCY * 0.999)),
    ("comm_efficiency_max", "hardware.comm_efficiency",
     with_value("hardware.comm_efficiency", 1.0),
     with_value("hardware.comm_efficiency", 1.001)),
    ("hbm_gb", "hardware.hbm_gb",
     with_value("hardware.hbm_gb", S.MAX_HBM_GB), with_value("hardware.hbm_gb", S.MAX_HBM_GB + 1)),
    ("hbm_tb_s_max", "hardware.hbm_tb_s",
     with_value("hardware.hbm_tb_s", S.MAX_HBM_TB_S),
     with_value("hardware.hbm_tb_s", S.MAX_HBM_TB_S + 1)),
    ("hbm_tb_s_min", "hardware.hbm_tb_s",
     with_value("hardware.hbm_tb_s", S.MIN_HBM_TB_S),
     with_value("hardware.hbm_tb_s", S.MIN_HBM_TB_S * 0.999)),
    ("link_max", "hardware.inter_node_gb_s",
     with_value("hardware.inter_node_gb_s", S.MAX_LINK_GB_S),
     with_value("hardware.inter_node_gb_s", S.MAX_LINK_GB_S + 1)),
    ("link_min", "hardware.intra_node_gb_s",
     with_value("hardware.intra_node_gb_s", S.MIN_LINK_GB_S),
     with_value("hardware.intra_node_gb_s", S.MIN_LINK_GB_S * 0.999)),
    ("latency", "hardware.inter_node_latency_us",
     with_value("hardware.inter_node_latency_us", S.MAX_LATENCY_US),
     with_value("hardware.inter_node_latency_us", S.MAX_LATENCY_US + 1)),
    # -- free text --
    ("name", "name", with_value("name", "n" * 200), with_value("name", "n" * 201)),
    ("description", "description",
     with_value("description", "d" * 20_000), with_value("description", "d" * 20_001)),
]
IDS = [c[0] for c in CASES]


def write(tmp_path: Path, doc: dict[str, Any], name: str = "instance.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize(("case", "field", "at", "past"), CASES, ids=IDS)
def test_limit_accepted_at_its_value(case: str, field: str, at: dict, past: dict) -> None:
    instance_from_dict(at)


@pytest.mark.parametrize(("case", "field", "at", "past"), CASES, ids=IDS)
def test_limit_rejected_just_past_it_naming_the_field(
    case: str, field: str, at: dict, past: dict
) -> None:
    with pytest.raises(InputError) as err:
        instance_from_dict(past)
    message = str(err.value)
    assert field in message, message
    assert "\n" not in message


@pytest.mark.parametrize(("case", "field", "at", "past"), CASES, ids=IDS)
def test_cli_verify_rejects_past_the_limit_with_one_line(
    runner: CliRunner, tmp_path: Path, case: str, field: str, at: dict, past: dict
) -> None:
    result = runner.invoke(app, ["verify", str(write(tmp_path, past))])
    one_error_line(result, field)


@pytest.mark.parametrize(
    "case", ["layers", "experts", "heads", "input_len", "batch", "batch_range_max", "max_gpus",
             "plan_gpus", "tflops_min", "hbm_tb_s_min", "link_min", "latency", "token_count",
             "gpu_memory_utilization", "max_num_batched_tokens", "step_overhead_us",
             "weight_block_size", "plan_redundant_experts"])
def test_cli_verify_accepts_at_the_limit(runner: CliRunner, tmp_path: Path, case: str) -> None:
    """At the limit the CLI gets past validation and answers: 0 (valid plan) or 1 (the plan
    breaks a rule, e.g. memory), never 2 or 3."""
    at = CASES[IDS.index(case)][2]
    args = ["verify", str(write(tmp_path, at))]
    if "claimed_plan" not in at:
        fixed = isinstance(at["workload"]["batch"], int)
        args += ["--plan", "tp=1" if fixed else f"tp=1,batch={at['workload']['batch']['max']}"]
    result = runner.invoke(app, args)
    assert result.exit_code in (0, 1), (result.exit_code, result.stderr)


# ----------------------------------------------------------------------------------------------
# Real models and clusters pass
# ----------------------------------------------------------------------------------------------


def test_kimi_k2_explicit_model_on_4096_gpus_passes() -> None:
    doc = {
        "name": "kimi-k2",
        "model": _kimi_model(),
        "hardware": "h200-sxm",
        "workload": {"input_len": 4096, "output_len": 1024, "batch": 256,
                     "targets": {"max_gpus": 4096}},
        "search": {"redundant_experts": 32, "ep_cross_node": True, "max_dp": 4096},
        "claimed_plan": {"degrees": {"tp": 8, "dp": 32, "ep": 256, "etp": 1, "edp": 1,
                                     "pp": 4, "replicas": 4}, "batch": 256},
    }
    instance = instance_from_dict(doc)
    assert instance.model.num_experts == 384
    assert instance.workload.targets.max_gpus == 4096
    assert instance.claimed_plan is not None and instance.claimed_plan.degrees.gpus == 4096
    report = verify(instance)  # evaluates the 4096-GPU plan: no exception, a report
    assert report.evaluation is not None


def test_kimi_k2_measured_load_passes() -> None:
    """A measured 60 x 384 load matrix (vLLM's recorder shape for Kimi-K2) validates."""
    counts = [[(i * 7919 + e * 104729) % 100_000 + 1 for e in range(384)] for i in range(60)]
    doc = {"model": _kimi_model(), "hardware": "h200-sxm",
           "workload": {"input_len": 4096, "output_len": 1024, "batch": 256},
           "expert_load": {"kind": "measured", "counts": counts}}
    assert len(instance_from_dict(doc).expert_load.counts or ()) == 60


def test_kimi_k2_hf_config_passes() -> None:
    cfg = {**preset_config("deepseek-v3"), "model_type": "kimi_k2", "num_attention_heads": 64,
           "num_key_value_heads": 64, "n_routed_experts": 384, "first_k_dense_replace": 1,
           "vocab_size": 163840}
    spec = model_from_hf_config(cfg, "Kimi-K2-Instruct")
    assert spec.num_experts == 384 and spec.num_layers == 61


def test_llama4_scout_ten_million_token_context_loads() -> None:
    """Scout's config says max_position_embeddings 10,485,760: above the workload length limit,
    but a model may support more than one request may ask for."""
    text = {**preset_config("llama-4-maverick-17b-128e")["text_config"],
            "interleave_moe_layer_step": 1, "num_local_experts": 16,
            "max_position_embeddings": 10_485_760}
    spec = model_from_hf_config({"model_type": "llama4", "text_config": text,
                                 "tie_word_embeddings": False}, "Llama-4-Scout-17B-16E")
    assert spec.max_position_embeddings == 10_485_760


def test_every_shipped_instance_is_inside_the_limits() -> None:
    paths = sorted((REPO / "instances").glob("*/*.yaml"))
    assert paths
    for path in paths:
        load_instance(path)


def test_explicit_hardware_at_every_lower_and_upper_end() -> None:
    low = {**EXPLICIT_HARDWARE, "peak_tflops": {"bf16": S.MIN_TFLOPS},
           "mfu": S.MIN_EFFICIENCY, "hbm_tb_s": S.MIN_HBM_TB_S,
           "hbm_efficiency": S.MIN_EFFICIENCY, "intra_node_gb_s": S.MIN_LINK_GB_S,
           "inter_node_gb_s": S.MIN_LINK_GB_S, "comm_efficiency": S.MIN_EFFICIENCY,
           "intra_node_latency_us": S.MAX_LATENCY_US, "inter_node_latency_us": S.MAX_LATENCY_US}
    high = {**EXPLICIT_HARDWARE, "peak_tflops": {"bf16": S.MAX_TFLOPS}, "mfu": 1.0,
            "hbm_gb": S.MAX_HBM_GB, "hbm_tb_s": S.MAX_HBM_TB_S, "hbm_efficiency": 1.0,
            "intra_node_gb_s": S.MAX_LINK_GB_S, "inter_node_gb_s": S.MAX_LINK_GB_S,
            "comm_efficiency": 1.0, "intra_node_latency_us": 0.0, "inter_node_latency_us": 0.0}
    for hw in (low, high):
        instance = instance_from_dict({**BASE, "hardware": hw})
        metrics = verify(instance, Plan(degrees={"tp": 2, "ep": 2}, batch=4)).evaluation
        assert metrics is not None


#: Integer fields given a boolean: YAML's ``true`` is not 1 (the schema's integers are strict).
BOOLEANS = [
    ("model.num_layers", with_value("model.num_layers", True)),
    ("workload.batch", with_value("workload.batch", True)),
    ("workload.batch.max", with_value("workload.batch", {"min": 1, "max": True})),
    ("engine.max_num_batched_tokens", with_value("engine.max_num_batched_tokens", False)),
    ("search.fix.tp", with_value("search.fix", {"tp": True})),
    ("search.max_pp", with_value("search.max_pp", True)),
    ("claimed_plan.degrees.tp", with_value("claimed_plan", {"degrees": {"tp": True},
                                                             "batch": 4})),
    ("claimed_plan.redundant_experts", with_value("claimed_plan", {
        "degrees": {}, "batch": 4, "redundant_experts": False})),
    ("hardware.mfu", with_value("hardware.mfu", True)),
]


@pytest.mark.parametrize(("field", "doc"), BOOLEANS, ids=[b[0] for b in BOOLEANS])
def test_a_boolean_is_not_a_number(runner: CliRunner, tmp_path: Path, field: str,
                                   doc: dict) -> None:
    with pytest.raises(InputError) as err:
        instance_from_dict(doc)
    assert str(err.value).startswith(f"{field}: "), str(err.value)
    one_error_line(runner.invoke(app, ["verify", str(write(tmp_path, doc)), "--plan", "tp=1"]),
                   field)


def test_empty_peak_tflops_is_rejected() -> None:
    with pytest.raises(InputError, match="hardware.peak_tflops"):
        instance_from_dict({**BASE, "hardware": {**EXPLICIT_HARDWARE, "peak_tflops": {}}})


# ----------------------------------------------------------------------------------------------
# Request size: bytes, nesting, values
# ----------------------------------------------------------------------------------------------


def test_file_of_exactly_the_byte_limit_is_read(tmp_path: Path) -> None:
    text = json.dumps(BASE)
    path = tmp_path / "padded.json"
    path.write_text(text + " " * (MAX_INSTANCE_BYTES - len(text)))
    assert path.stat().st_size == MAX_INSTANCE_BYTES
    assert load_instance(path).name == "limits"


def test_file_past_the_byte_limit_is_one_line(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("wb") as fh:  # sparse: nothing is written
        fh.truncate(MAX_INSTANCE_BYTES + 1)
    line = one_error_line(runner.invoke(app, ["verify", str(path)]), "huge.yaml")
    assert str(MAX_INSTANCE_BYTES) in line


def test_endless_device_is_read_only_up_to_the_limit(runner: CliRunner) -> None:
    """stat() says 0 bytes for /dev/zero; reading stops after the limit, not at the end."""
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    line = one_error_line(runner.invoke(app, ["verify", "/dev/zero"]), "/dev/zero")
    assert "limit" in line


def nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def test_nesting_limit() -> None:
    check_document(nested(MAX_DOCUMENT_DEPTH))
    with pytest.raises(InputError, match="nested deeper"):
        check_document(nested(MAX_DOCUMENT_DEPTH + 1))


def test_value_count_limit() -> None:
    check_document([0] * (MAX_DOCUMENT_VALUES - 1))  # the list itself is one value
    with pytest.raises(InputError, match="above the limit"):
        check_document([0] * MAX_DOCUMENT_VALUES)


def test_plan_argument_past_the_gpu_limit() -> None:
    parse_plan_arg(f"tp=4,dp=4,pp=2,replicas={S.MAX_GPUS // 32}", 4)
    with pytest.raises(InputError, match="plan.degrees"):
        parse_plan_arg(f"tp=4,dp=4,pp=2,replicas={S.MAX_GPUS // 32 + 1}", 4)


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--time-limit", str(S.MAX_TIME_LIMIT_S + 0.001)], "--time-limit"),
        (["--time-limit", "0"], "--time-limit"),
        (["--time-limit", "nan"], "--time-limit"),
        (["--workers", "257"], "--workers"),
    ],
)
def test_cli_solve_effort_limits(runner: CliRunner, tmp_path: Path, args: list[str],
                                 field: str) -> None:
    result = runner.invoke(app, ["solve", str(write(tmp_path, BASE)), *args])
    one_error_line(result, field)


# ----------------------------------------------------------------------------------------------
# In-limit input that once broke the planner (found by this file's authors, fixed since).
# ----------------------------------------------------------------------------------------------


def _solve(doc: dict[str, Any]) -> Any:
    from solver import planner

    return planner.solve(instance_from_dict(doc), time_limit_s=5)


def test_planner_grid_past_max_gpus_is_skipped_not_a_crash() -> None:
    """degree_tuples builds Degrees(edp = tp·cp·dp) for grids above MAX_GPUS (8·32·4096)."""
    result = _solve({"model": "qwen3-30b-a3b", "hardware": "h100-sxm",
                     "workload": {"input_len": 1024, "output_len": 256, "batch": 4096},
                     "search": {"max_dp": 4096, "max_cp": 32}})
    assert result.status in ("OPTIMAL", "FEASIBLE")


def test_planner_throughput_needing_more_than_max_gpus_is_infeasible() -> None:
    """1e8 output tokens/s needs ~100,000 one-GPU replicas: an answer (INFEASIBLE), not
    Degrees(replicas=100580) failing validation. Proved in ~4 s on an idle machine (every grid
    is dropped by its replica bound before costing); the limit leaves room for a loaded one."""
    from solver import planner

    result = planner.solve(instance_from_dict({
        "model": "qwen3-30b-a3b", "hardware": "h100-sxm",
        "workload": {"input_len": 1024, "output_len": 256, "batch": 16,
                     "targets": {"min_output_tokens_per_s": 1e8}}}), time_limit_s=30)
    assert result.status == "INFEASIBLE"
    assert result.explanation is not None and "min_output_tokens_per_s" in \
        result.explanation.summary


def test_planner_times_beyond_int64_nanoseconds() -> None:
    """A 4M-token prompt on a 0.1-TFLOPS, 1%-MFU GPU: the tie-break coefficient
    1000·GPUs·cycle_ns/tokens passes 2**63 and CP-SAT refuses it (TypeError)."""
    result = _solve({
        "model": {"name": "slow", "num_layers": 1, "hidden_size": 1024,
                  "attention": {"num_heads": 8, "num_kv_heads": 8, "head_dim": 128},
                  "num_experts": 8, "top_k": 2, "expert_ffn_width": 1024, "vocab_size": 1000},
        "hardware": {"preset": "h100-sxm", "peak_tflops": {"bf16": 0.1}, "mfu": 0.01,
                     "hbm_gb": 100000},
        "workload": {"input_len": S.MAX_SEQ_LEN, "output_len": 1, "batch": 1},
        "search": {"max_pp": 1, "max_cp": 1, "max_dp": 1}})
    assert result.status in ("OPTIMAL", "FEASIBLE", "INFEASIBLE")


def test_cli_model_name_longer_than_the_os_allows(runner: CliRunner) -> None:
    one_error_line(runner.invoke(app, ["model", "a" * 5000]), "model")
