"""Hugging Face config import, presets and model resolution: every family, every known trap."""

from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from solver.hf_import import HFConfigError, load_hf_config, model_from_hf_config
from solver.models import ModelResolveError, resolve_model
from solver.params import total_params
from solver.presets import (
    MODEL_PRESETS,
    UnknownPresetError,
    load_model_preset,
    model_preset_names,
)

pytestmark = pytest.mark.unit


def preset_config(name: str) -> dict[str, Any]:
    """The raw bundled config.json of preset ``name`` (a fresh copy)."""
    path = resources.files("solver.presets").joinpath("models").joinpath(MODEL_PRESETS[name])
    return json.loads(path.read_text(encoding="utf-8"))


def without(cfg: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in cfg.items() if k != key}


# Configs of families without a bundled preset, abridged from their Hugging Face repositories
# (keys that do not affect the architecture left out).
QWEN15_MOE_A27B = {  # Qwen/Qwen1.5-MoE-A2.7B: 14.3B total
    "model_type": "qwen2_moe",
    "hidden_size": 2048,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "num_key_value_heads": 16,
    "intermediate_size": 5632,
    "moe_intermediate_size": 1408,
    "shared_expert_intermediate_size": 5632,
    "num_experts": 60,
    "num_experts_per_tok": 4,
    "decoder_sparse_step": 1,
    "mlp_only_layers": [],
    "vocab_size": 151936,
    "max_position_embeddings": 8192,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}
DEEPSEEK_V2 = {  # deepseek-ai/DeepSeek-V2: 236B total
    "model_type": "deepseek_v2",
    "hidden_size": 5120,
    "num_hidden_layers": 60,
    "num_attention_heads": 128,
    "num_key_value_heads": 128,
    "q_lora_rank": 1536,
    "kv_lora_rank": 512,
    "qk_nope_head_dim": 128,
    "qk_rope_head_dim": 64,
    "v_head_dim": 128,
    "intermediate_size": 12288,
    "moe_intermediate_size": 1536,
    "n_routed_experts": 160,
    "n_shared_experts": 2,
    "num_experts_per_tok": 6,
    "first_k_dense_replace": 1,
    "moe_layer_freq": 1,
    "topk_method": "group_limited_greedy",
    "vocab_size": 102400,
    "max_position_embeddings": 163840,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}
DEEPSEEK_V2_LITE = {  # deepseek-ai/DeepSeek-V2-Lite: 15.7B total, no query low-rank
    **DEEPSEEK_V2,
    "hidden_size": 2048,
    "num_hidden_layers": 27,
    "num_attention_heads": 16,
    "num_key_value_heads": 16,
    "q_lora_rank": None,
    "intermediate_size": 10944,
    "moe_intermediate_size": 1408,
    "n_routed_experts": 64,
    "topk_method": "greedy",
}
KIMI_K2 = {  # moonshotai/Kimi-K2-Instruct: DeepSeek-V3 layout, "1T" total
    **preset_config("deepseek-v3"),
    "model_type": "kimi_k2",
    "num_attention_heads": 64,
    "num_key_value_heads": 64,
    "n_routed_experts": 384,
    "first_k_dense_replace": 1,
    "vocab_size": 163840,
}
DBRX = {  # databricks/dbrx-base: 132B total
    "model_type": "dbrx",
    "d_model": 6144,
    "n_heads": 48,
    "n_layers": 40,
    "max_seq_len": 32768,
    "vocab_size": 100352,
    "attn_config": {"clip_qkv": 8, "kv_n_heads": 8, "rope_theta": 500000},
    "ffn_config": {"ffn_hidden_size": 10752, "moe_num_experts": 16, "moe_top_k": 4},
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}
GLM45 = {  # zai-org/GLM-4.5: 355B total (incl. its MTP layer, which we leave out)
    "model_type": "glm4_moe",
    "hidden_size": 5120,
    "num_hidden_layers": 92,
    "num_attention_heads": 96,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "attention_bias": True,
    "use_qk_norm": True,
    "intermediate_size": 12288,
    "moe_intermediate_size": 1536,
    "n_routed_experts": 160,
    "n_shared_experts": 1,
    "num_experts_per_tok": 8,
    "first_k_dense_replace": 3,
    "num_nextn_predict_layers": 1,
    "vocab_size": 151552,
    "max_position_embeddings": 131072,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}
LLAMA4_SCOUT = {  # meta-llama/Llama-4-Scout-17B-16E: every layer MoE, 109B total
    "model_type": "llama4",
    "text_config": {
        **preset_config("llama-4-maverick-17b-128e")["text_config"],
        "interleave_moe_layer_step": 1,
        "num_local_experts": 16,
    },
    "tie_word_embeddings": False,
}


@pytest.mark.parametrize(
    ("cfg", "published", "rel"),
    [
        (QWEN15_MOE_A27B, 14.3e9, 0.01),
        (DEEPSEEK_V2, 236e9, 0.01),
        (DEEPSEEK_V2_LITE, 15.7e9, 0.01),
        (KIMI_K2, 1.0e12, 0.03),  # published only as "1T"
        (DBRX, 132e9, 0.01),
        (GLM45, 355e9, 0.01),
        (LLAMA4_SCOUT, 109e9, 0.02),
    ],
    ids=["qwen2_moe", "deepseek_v2", "deepseek_v2_lite", "kimi_k2", "dbrx", "glm4_moe", "scout"],
)
def test_other_families_match_published_totals(
    cfg: dict[str, Any], published: float, rel: float
) -> None:
    m = model_from_hf_config(cfg, "x")
    assert total_params(m) == pytest.approx(published, rel=rel)


# ----------------------------------------------------------------------------------------------
# The traps
# ----------------------------------------------------------------------------------------------


def test_qwen3_head_dim_is_not_hidden_over_heads() -> None:
    m = load_model_preset("qwen3-235b-a22b")
    assert m.hidden_size // m.attention.num_heads == 64
    assert m.attention.head_dim == 128
    assert m.attention.qk_norm and not m.attention.bias


def test_qwen3_intermediate_size_unused_when_all_moe() -> None:
    m = load_model_preset("qwen3-235b-a22b")
    assert m.dense_layers == () and m.dense_ffn_width == 0
    assert m.expert_ffn_width == 1536 and m.num_experts == 128 and m.top_k == 8


def test_qwen3_dense_layers_from_sparse_step_and_mlp_only() -> None:
    cfg = preset_config("qwen3-30b-a3b") | {"decoder_sparse_step": 2, "mlp_only_layers": [1]}
    m = model_from_hf_config(cfg, "x")
    # layer i is MoE when (i+1) % 2 == 0 and i is not in mlp_only_layers
    assert m.moe_layers == tuple(range(3, 48, 2))
    assert m.dense_ffn_width == 6144


def test_qwen2_moe_shared_expert_and_qkv_bias() -> None:
    m = model_from_hf_config(QWEN15_MOE_A27B, "x")
    assert m.num_shared_experts == 1 and m.shared_expert_width == 5632
    assert m.attention.bias and not m.attention.qk_norm


def test_llama4_shared_expert_and_dense_width() -> None:
    m = load_model_preset("llama-4-maverick-17b-128e")
    assert len(m.moe_layers) == 24 and m.moe_layers == tuple(range(1, 48, 2))
    assert m.dense_layers == tuple(range(0, 48, 2))
    assert m.expert_ffn_width == 8192  # intermediate_size
    assert m.dense_ffn_width == 16384  # intermediate_size_mlp
    assert m.num_shared_experts == 1 and m.shared_width == 8192  # not in the config
    assert m.num_experts == 128 and m.top_k == 1
    assert m.max_position_embeddings == 1_048_576


def test_llama4_explicit_moe_layers_win() -> None:
    cfg = copy.deepcopy(preset_config("llama-4-maverick-17b-128e"))
    cfg["text_config"]["moe_layers"] = [0, 47]
    assert model_from_hf_config(cfg, "x").moe_layers == (0, 47)


def test_gpt_oss_mxfp4_experts_and_sliding_layers() -> None:
    m = load_model_preset("gpt-oss-120b")
    assert m.expert_precision == "mxfp4" and m.weight_precision == "bf16"
    assert m.attention.sliding_window == 128
    assert m.attention.sliding_layers == tuple(range(0, 36, 2))
    assert m.attention.bias and m.attention.sinks
    assert m.ffn_bias and m.router_bias
    assert m.top_k == 4 and m.num_experts == 128 and m.attention.head_dim == 64


def test_gpt_oss_experts_per_token_alias() -> None:
    cfg = preset_config("gpt-oss-120b")
    del cfg["num_experts_per_tok"]
    assert model_from_hf_config(cfg, "x").top_k == 4


def test_deepseek_v3_three_dense_layers_mla_fp8() -> None:
    m = load_model_preset("deepseek-v3")
    assert m.dense_layers == (0, 1, 2) and len(m.moe_layers) == 58
    assert m.dense_ffn_width == 18432 and m.expert_ffn_width == 2048
    assert m.num_shared_experts == 1 and m.num_experts == 256 and m.top_k == 8
    assert m.attention.kind == "mla" and m.attention.kv_lora_rank == 512
    assert m.weight_precision == "fp8" and m.expert_weight_precision == "fp8"
    assert m.router_bias  # noaux_tc's e_score_correction_bias


def test_deepseek_v3_excludes_mtp_module() -> None:
    # 685B on Hugging Face = 671B main model + 14B MTP; we count the main model only.
    assert total_params(load_model_preset("deepseek-v3")) < 672e9


def test_deepseek_moe_layer_freq() -> None:
    m = model_from_hf_config(DEEPSEEK_V2 | {"moe_layer_freq": 2}, "x")
    assert m.moe_layers == tuple(range(2, 60, 2))


def test_deepseek_v2_lite_has_no_query_low_rank() -> None:
    m = model_from_hf_config(DEEPSEEK_V2_LITE, "x")
    assert m.attention.q_lora_rank == 0 and not m.router_bias


def test_dbrx_key_names() -> None:
    m = model_from_hf_config(DBRX, "dbrx")
    assert (m.hidden_size, m.num_layers) == (6144, 40)
    assert (m.attention.num_heads, m.attention.num_kv_heads, m.attention.head_dim) == (48, 8, 128)
    assert (m.num_experts, m.top_k, m.expert_ffn_width) == (16, 4, 10752)
    assert m.max_position_embeddings == 32768


def test_glm45_dense_layers_shared_expert_bias() -> None:
    m = model_from_hf_config(GLM45, "glm")
    assert m.dense_layers == (0, 1, 2) and m.num_layers == 92  # MTP layer not added
    assert m.num_shared_experts == 1 and m.attention.head_dim == 128
    assert m.attention.bias and m.attention.qk_norm and m.router_bias


def test_precision_from_dtype_and_quantization() -> None:
    assert load_model_preset("mixtral-8x7b").weight_precision == "bf16"
    assert model_from_hf_config(DBRX | {"torch_dtype": "float16"}, "x").weight_precision == "fp16"
    new_style = without(DBRX, "torch_dtype") | {"dtype": "float32"}
    assert model_from_hf_config(new_style, "x").weight_precision == "fp32"
    m = model_from_hf_config(preset_config("qwen3-30b-a3b"), "x")
    assert (m.kv_precision, m.activation_precision) == ("bf16", "bf16")


def test_tie_word_embeddings_from_text_config() -> None:
    cfg = copy.deepcopy(LLAMA4_SCOUT)
    cfg.pop("tie_word_embeddings")
    cfg["text_config"]["tie_word_embeddings"] = True
    assert model_from_hf_config(cfg, "x").tie_embeddings


# ----------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------


def test_unknown_model_type_is_named() -> None:
    with pytest.raises(HFConfigError, match="model_type 'llama' is not supported"):
        model_from_hf_config({"model_type": "llama", "hidden_size": 4096}, "x")


def test_missing_model_type() -> None:
    with pytest.raises(HFConfigError, match="model_type"):
        model_from_hf_config({"hidden_size": 4096}, "x")


@pytest.mark.parametrize(
    ("cfg", "key"),
    [
        (without(preset_config("qwen3-30b-a3b"), "moe_intermediate_size"), "moe_intermediate_size"),
        (without(DEEPSEEK_V2, "kv_lora_rank"), "kv_lora_rank"),
        ({"model_type": "llama4"}, "text_config"),
        (DBRX | {"ffn_config": {"moe_num_experts": 16}}, "moe_top_k"),
    ],
)
def test_missing_key_is_named(cfg: dict[str, Any], key: str) -> None:
    with pytest.raises(HFConfigError, match=f"missing required key '{key}'") as e:
        model_from_hf_config(cfg, "x")
    assert cfg["model_type"] in str(e.value)


def test_unsupported_quantization_is_named() -> None:
    cfg = DBRX | {"quantization_config": {"quant_method": "bitsandbytes"}}
    with pytest.raises(HFConfigError, match="bitsandbytes"):
        model_from_hf_config(cfg, "x")


def test_schema_violation_becomes_one_line_hf_error() -> None:
    with pytest.raises(HFConfigError) as e:
        model_from_hf_config(DBRX | {"n_heads": 7}, "x")  # 7 heads do not divide into 8 KV heads
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "cfg",
    [
        DBRX | {"n_heads": "48"},
        DBRX | {"ffn_config": [16]},
        {"model_type": "llama4", "text_config": 1},
    ],
)
def test_malformed_values_are_hf_errors(cfg: dict[str, Any]) -> None:
    with pytest.raises(HFConfigError):
        model_from_hf_config(cfg, "x")


def test_load_hf_config_errors(tmp_path: Path) -> None:
    with pytest.raises(HFConfigError, match="not found"):
        load_hf_config(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(HFConfigError, match="not valid JSON"):
        load_hf_config(bad)


# ----------------------------------------------------------------------------------------------
# Presets and resolution
# ----------------------------------------------------------------------------------------------


def test_preset_names() -> None:
    assert model_preset_names() == sorted(
        [
            "deepseek-v3",
            "llama-4-maverick-17b-128e",
            "mixtral-8x7b",
            "qwen3-235b-a22b",
            "qwen3-30b-a3b",
            "gpt-oss-120b",
            "kimi-k2",
        ]
    )


def test_unknown_preset_lists_valid_names() -> None:
    with pytest.raises(UnknownPresetError, match="qwen3-235b-a22b") as e:
        load_model_preset("qwen4")
    assert isinstance(e.value, ValueError) and "'qwen4'" in str(e.value)


def test_preset_precision_override() -> None:
    m = load_model_preset("qwen3-235b-a22b", "fp8")
    assert m.weight_precision == "fp8" and m.expert_weight_precision == "fp8"
    g = load_model_preset("gpt-oss-120b", "bf16")
    assert g.expert_weight_precision == "bf16"
    with pytest.raises(ValueError, match="unknown precision"):
        load_model_preset("mixtral-8x7b", "fp7")


def test_resolve_preset_with_precision_suffix() -> None:
    assert resolve_model("qwen3-235b-a22b", None).weight_precision == "bf16"
    assert resolve_model("Qwen3-235B-A22B@fp8", None).weight_precision == "fp8"
    with pytest.raises(ModelResolveError, match="unknown precision '@fp7'"):
        resolve_model("qwen3-235b-a22b@fp7", None)


def test_resolve_relative_path_and_directory(tmp_path: Path) -> None:
    model_dir = tmp_path / "models" / "Qwen3-30B-A3B"
    model_dir.mkdir(parents=True)
    (model_dir / "config.json").write_text(json.dumps(preset_config("qwen3-30b-a3b")))
    by_file = resolve_model("models/Qwen3-30B-A3B/config.json", tmp_path)
    by_dir = resolve_model("models/Qwen3-30B-A3B@fp8", tmp_path)
    assert by_file.name == by_dir.name == "Qwen3-30B-A3B"
    assert total_params(by_file) == total_params(load_model_preset("qwen3-30b-a3b"))
    assert by_dir.weight_precision == "fp8"


def test_resolve_unknown_string_names_presets(tmp_path: Path) -> None:
    with pytest.raises(ModelResolveError, match="neither a preset") as e:
        resolve_model("no-such-model", tmp_path)
    assert "deepseek-v3" in str(e.value) and "\n" not in str(e.value)


def test_resolve_explicit_fields() -> None:
    fields = load_model_preset("mixtral-8x7b").model_dump()
    assert resolve_model(fields, None) == load_model_preset("mixtral-8x7b")
    with pytest.raises(ModelResolveError, match="top_k") as e:
        resolve_model({**fields, "top_k": 9}, None)
    assert "\n" not in str(e.value)


def test_resolve_hf_config_with_overrides(tmp_path: Path) -> None:
    m = resolve_model(
        {"hf_config": "gpt-oss-120b", "weight_precision": "fp8", "kv_precision": "fp8"}, None
    )
    assert (m.weight_precision, m.expert_weight_precision, m.kv_precision) == ("fp8",) * 3
    m = resolve_model({"hf_config": "gpt-oss-120b", "attention": {"sliding_window": 256}}, None)
    assert m.attention.sliding_window == 256 and m.attention.sinks  # merged, not replaced
    # an unsupported quantization is replaced when weight_precision is given
    cfg = DBRX | {"quantization_config": {"quant_method": "bitsandbytes"}}
    (tmp_path / "dbrx.json").write_text(json.dumps(cfg))
    m = resolve_model({"hf_config": "dbrx.json", "weight_precision": "int8"}, tmp_path)
    assert m.weight_precision == "int8" and m.name == "dbrx"
    with pytest.raises(ModelResolveError, match="num_experts"):
        resolve_model({"hf_config": "mixtral-8x7b", "num_experts": 0}, None)


def test_resolve_rejects_other_types() -> None:
    with pytest.raises(ModelResolveError):
        resolve_model(42, None)  # type: ignore[arg-type]
