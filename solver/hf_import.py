"""Hugging Face ``config.json`` → :class:`~solver.schema.ModelSpec`.

One small reader per model family turns the family's config keys into the architecture fields of
a ModelSpec; :func:`model_from_hf_config` adds what every family shares (vocabulary, tied
embeddings, context length, precision). Each reader follows the family's modelling code in
``transformers``, including the places where a config key does not mean what its name suggests
(see the comments in each reader).

Multi-token-prediction modules (DeepSeek-V3/Kimi-K2/GLM-4.5 ``num_nextn_predict_layers``) are not
part of the main model and are never counted: DeepSeek's published 671B excludes V3's 14B MTP
module.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, get_args

from pydantic import ValidationError

from solver.schema import ModelSpec, Precision

PRECISIONS: frozenset[str] = frozenset(get_args(Precision))


class HFConfigError(ValueError):
    """A Hugging Face config that cannot be turned into a ModelSpec."""


Config = Mapping[str, Any]


def _req(cfg: Config, key: str, family: str) -> Any:
    """A required key; a missing (or null) one is an error naming the family and the key."""
    value = cfg.get(key)
    if value is None:
        raise HFConfigError(f"{family} config is missing required key '{key}'")
    return value


def _heads(cfg: Config, family: str, hidden: int) -> dict[str, Any]:
    """Standard GQA keys. ``head_dim`` wins over hidden/heads (Qwen3: 128 ≠ 4096/64)."""
    heads = _req(cfg, "num_attention_heads", family)
    return {
        "kind": "gqa",
        "num_heads": heads,
        "num_kv_heads": cfg.get("num_key_value_heads") or heads,
        "head_dim": cfg.get("head_dim") or hidden // heads,
    }


def _dense_every(num_layers: int, step: int, extra: list[int] | tuple[int, ...] = ()) -> list[int]:
    """Layers that are *not* MoE when every ``step``-th layer (1-based) is MoE, plus ``extra``."""
    return sorted({i for i in range(num_layers) if (i + 1) % step != 0} | set(extra))


def _sliding_from_layer_types(cfg: Config, num_layers: int) -> dict[str, Any]:
    layer_types = cfg.get("layer_types")
    window = cfg.get("sliding_window")
    if not layer_types or not window:
        return {}
    sliding = tuple(i for i, t in enumerate(layer_types[:num_layers]) if t == "sliding_attention")
    return {"sliding_window": window, "sliding_layers": sliding} if sliding else {}


# ----------------------------------------------------------------------------------------------
# Family readers: config -> the architecture fields of a ModelSpec
# ----------------------------------------------------------------------------------------------


def _qwen_moe(cfg: Config, family: str) -> dict[str, Any]:
    """Qwen2-MoE and Qwen3-MoE.

    Dense layers are ``mlp_only_layers`` plus every layer with ``(i+1) % decoder_sparse_step != 0``;
    ``intermediate_size`` is their width and is unused when every layer is MoE. Qwen2-MoE has one
    shared expert of ``shared_expert_intermediate_size`` and q/k/v biases (its o_proj has none,
    and its per-layer ``shared_expert_gate`` (hidden×1) is not modelled: both are ``hidden``
    params per layer, below 0.01%). Qwen3-MoE has per-head q/k RMSNorm and no shared expert.
    """
    hidden = _req(cfg, "hidden_size", family)
    n_layers = _req(cfg, "num_hidden_layers", family)
    dense = _dense_every(
        n_layers, cfg.get("decoder_sparse_step") or 1, cfg.get("mlp_only_layers") or ()
    )
    attention = _heads(cfg, family, hidden)
    attention.update(_sliding_from_layer_types(cfg, n_layers))
    use_window = cfg.get("use_sliding_window") and cfg.get("sliding_window")
    if use_window and "sliding_layers" not in attention:
        # transformers' Qwen2/3: layers from max_window_layers on use the sliding window.
        sliding = tuple(range(cfg.get("max_window_layers", n_layers), n_layers))
        if sliding:
            attention.update(sliding_window=cfg["sliding_window"], sliding_layers=sliding)
    fields: dict[str, Any] = {
        "num_layers": n_layers,
        "dense_layers": dense,
        "hidden_size": hidden,
        "dense_ffn_width": _req(cfg, "intermediate_size", family) if dense else 0,
        "num_experts": _req(cfg, "num_experts", family),
        "top_k": _req(cfg, "num_experts_per_tok", family),
        "expert_ffn_width": _req(cfg, "moe_intermediate_size", family),
    }
    if family == "qwen2_moe":
        attention["bias"] = bool(cfg.get("qkv_bias", True))
        shared_width = cfg.get("shared_expert_intermediate_size") or 0
        if shared_width:
            fields.update(num_shared_experts=1, shared_expert_width=shared_width)
    else:
        attention["bias"] = bool(cfg.get("attention_bias", False))
        attention["qk_norm"] = True
    fields["attention"] = attention
    return fields


def _deepseek(cfg: Config, family: str) -> dict[str, Any]:
    """DeepSeek-V2/V3 and Kimi-K2: MLA, ``first_k_dense_replace`` dense layers first, then an MoE
    layer every ``moe_layer_freq`` layers, ``n_shared_experts`` shared experts of the routed width.

    V3's ``noaux_tc`` router carries an ``e_score_correction_bias`` (one per expert).
    ``num_nextn_predict_layers`` (the MTP module) is deliberately ignored.
    """
    hidden = _req(cfg, "hidden_size", family)
    n_layers = _req(cfg, "num_hidden_layers", family)
    first_dense = cfg.get("first_k_dense_replace") or 0
    freq = cfg.get("moe_layer_freq") or 1
    dense = [i for i in range(n_layers) if i < first_dense or i % freq != 0]
    heads = _req(cfg, "num_attention_heads", family)
    nope = _req(cfg, "qk_nope_head_dim", family)
    rope = _req(cfg, "qk_rope_head_dim", family)
    attention = {
        "kind": "mla",
        "num_heads": heads,
        "num_kv_heads": heads,
        "head_dim": nope + rope,  # the Q/K head dim; MLA's KV cache is the latent, not per head
        "q_lora_rank": cfg.get("q_lora_rank") or 0,  # null in V2-Lite: a plain q_proj
        "kv_lora_rank": _req(cfg, "kv_lora_rank", family),
        "qk_nope_head_dim": nope,
        "qk_rope_head_dim": rope,
        "v_head_dim": _req(cfg, "v_head_dim", family),
        "bias": bool(cfg.get("attention_bias", False)),
    }
    return _routed_moe_fields(cfg, family, n_layers, dense, hidden, attention,
                              router_bias=cfg.get("topk_method") == "noaux_tc")


def _routed_moe_fields(cfg: Config, family: str, n_layers: int, dense: list[int], hidden: int,
                       attention: dict[str, Any], *, router_bias: bool) -> dict[str, Any]:
    """The fields DeepSeek-style configs (DeepSeek, Kimi-K2, GLM-4.5) share: first dense
    layers of ``intermediate_size``, then ``n_routed_experts`` of ``moe_intermediate_size`` and
    ``n_shared_experts`` shared ones."""
    return {
        "num_layers": n_layers,
        "dense_layers": dense,
        "hidden_size": hidden,
        "attention": attention,
        "dense_ffn_width": _req(cfg, "intermediate_size", family) if dense else 0,
        "num_experts": _req(cfg, "n_routed_experts", family),
        "top_k": _req(cfg, "num_experts_per_tok", family),
        "expert_ffn_width": _req(cfg, "moe_intermediate_size", family),
        "num_shared_experts": cfg.get("n_shared_experts") or 0,
        "router_bias": router_bias,
    }


def _glm4_moe(cfg: Config, family: str) -> dict[str, Any]:
    """GLM-4.5/4.6: ``first_k_dense_replace`` dense layers, then MoE with ``n_shared_experts``
    shared experts, a ``noaux_tc`` router with a correction bias, GQA with an explicit
    ``head_dim`` and q/k/v biases per ``attention_bias`` (its o_proj has none: ``hidden`` params
    per layer over-counted). MTP layers (``num_nextn_predict_layers``) are not counted.
    """
    hidden = _req(cfg, "hidden_size", family)
    n_layers = _req(cfg, "num_hidden_layers", family)
    first_dense = cfg.get("first_k_dense_replace") or 0
    dense = list(range(min(first_dense, n_layers)))
    attention = _heads(cfg, family, hidden)
    attention["bias"] = bool(cfg.get("attention_bias", False))
    attention["qk_norm"] = bool(cfg.get("use_qk_norm", False))
    return _routed_moe_fields(cfg, family, n_layers, dense, hidden, attention, router_bias=True)


def _mixtral(cfg: Config, family: str) -> dict[str, Any]:
    """Mixtral: every layer MoE, ``num_local_experts`` experts of ``intermediate_size``."""
    hidden = _req(cfg, "hidden_size", family)
    n_layers = _req(cfg, "num_hidden_layers", family)
    attention = _heads(cfg, family, hidden)
    window = cfg.get("sliding_window")
    if window:  # Mistral-style SWA applies to every layer
        attention.update(sliding_window=window, sliding_layers=tuple(range(n_layers)))
    return {
        "num_layers": n_layers,
        "hidden_size": hidden,
        "attention": attention,
        "num_experts": _req(cfg, "num_local_experts", family),
        "top_k": _req(cfg, "num_experts_per_tok", family),
        "expert_ffn_width": _req(cfg, "intermediate_size", family),
    }


def _gpt_oss(cfg: Config, family: str) -> dict[str, Any]:
    """gpt-oss: every layer MoE; ``layer_types`` alternates sliding (window 128) and full
    attention; biases on q/k/v/o, on experts and on the router; one sink logit per head."""
    hidden = _req(cfg, "hidden_size", family)
    n_layers = _req(cfg, "num_hidden_layers", family)
    attention = _heads(cfg, family, hidden)
    attention.update(bias=bool(cfg.get("attention_bias", True)), sinks=True)
    attention.update(_sliding_from_layer_types(cfg, n_layers))
    top_k = cfg.get("num_experts_per_tok") or cfg.get("experts_per_token")
    if top_k is None:
        raise HFConfigError(f"{family} config is missing required key 'num_experts_per_tok'")
    return {
        "num_layers": n_layers,
        "hidden_size": hidden,
        "attention": attention,
        "num_experts": _req(cfg, "num_local_experts", family),
        "top_k": top_k,
        "expert_ffn_width": _req(cfg, "intermediate_size", family),
        "ffn_bias": True,
        "router_bias": True,
    }


def _llama4(cfg: Config, family: str) -> dict[str, Any]:
    """Llama 4 (text part). ``intermediate_size`` is the *expert* width, ``intermediate_size_mlp``
    the dense width; layer i is MoE when ``(i+1) % interleave_moe_layer_step == 0`` (Maverick: 24
    of 48) unless the config lists ``moe_layers``; every MoE layer also has one shared expert of
    the expert width, which the config does not mention. Llama 4's qk-norm is a weightless L2
    norm (no params), and its chunked local attention (``attention_chunk_size``) is treated as full
    attention, which over- rather than under-estimates the KV cache.
    """
    hidden = _req(cfg, "hidden_size", family)
    n_layers = _req(cfg, "num_hidden_layers", family)
    if cfg.get("moe_layers") is not None:
        moe = set(cfg["moe_layers"])
        dense = [i for i in range(n_layers) if i not in moe]
    else:
        dense = _dense_every(n_layers, cfg.get("interleave_moe_layer_step") or 1)
    attention = _heads(cfg, family, hidden)
    attention["bias"] = bool(cfg.get("attention_bias", False))
    expert_width = _req(cfg, "intermediate_size", family)
    return {
        "num_layers": n_layers,
        "dense_layers": dense,
        "hidden_size": hidden,
        "attention": attention,
        "dense_ffn_width": _req(cfg, "intermediate_size_mlp", family) if dense else 0,
        "num_experts": _req(cfg, "num_local_experts", family),
        "top_k": _req(cfg, "num_experts_per_tok", family),
        "expert_ffn_width": expert_width,
        "num_shared_experts": 1,
        "shared_expert_width": expert_width,
    }


def _dbrx(cfg: Config, family: str) -> dict[str, Any]:
    """DBRX: its own key names (``d_model``, ``n_layers``, ``n_heads``), attention and FFN details
    in ``attn_config`` and ``ffn_config``; every layer MoE, gated experts, no biases."""
    hidden = _req(cfg, "d_model", family)
    heads = _req(cfg, "n_heads", family)
    attn_cfg = cfg.get("attn_config") or {}
    ffn_cfg = _req(cfg, "ffn_config", family)
    attention = {
        "kind": "gqa",
        "num_heads": heads,
        "num_kv_heads": attn_cfg.get("kv_n_heads") or heads,
        "head_dim": hidden // heads,
    }
    return {
        "num_layers": _req(cfg, "n_layers", family),
        "hidden_size": hidden,
        "attention": attention,
        "num_experts": _req(ffn_cfg, "moe_num_experts", f"{family} ffn_config"),
        "top_k": _req(ffn_cfg, "moe_top_k", f"{family} ffn_config"),
        "expert_ffn_width": _req(ffn_cfg, "ffn_hidden_size", f"{family} ffn_config"),
    }


Reader = Callable[[Config, str], dict[str, Any]]

#: model_type -> reader. Kimi-K2 ships as ``kimi_k2`` with DeepSeek-V3's layout.
FAMILY_READERS: dict[str, Reader] = {
    "qwen2_moe": _qwen_moe,
    "qwen3_moe": _qwen_moe,
    "deepseek_v2": _deepseek,
    "deepseek_v3": _deepseek,
    "kimi_k2": _deepseek,
    "mixtral": _mixtral,
    "gpt_oss": _gpt_oss,
    "llama4": _llama4,
    "llama4_text": _llama4,
    "dbrx": _dbrx,
    "glm4_moe": _glm4_moe,
}

#: Families whose architecture lives under ``text_config`` (multimodal wrappers).
TEXT_CONFIG_FAMILIES = frozenset({"llama4"})

# ----------------------------------------------------------------------------------------------
# Fields every family shares
# ----------------------------------------------------------------------------------------------

DTYPE_PRECISION: dict[str, str] = {
    "bfloat16": "bf16",
    "float16": "fp16",
    "float32": "fp32",
    "float8_e4m3fn": "fp8",
}

#: quant_method -> (weight_precision, expert_precision or None = same as weights).
QUANT_PRECISION: dict[str, tuple[str, str | None]] = {
    "fp8": ("fp8", None),
    # gpt-oss: MXFP4 experts only; attention, router, embedding and head stay bf16
    # (its quantization_config lists them in modules_to_not_convert).
    "mxfp4": ("bf16", "mxfp4"),
}


def _precision(cfg: Config, text_cfg: Config, family: str) -> dict[str, Any]:
    quant = cfg.get("quantization_config") or text_cfg.get("quantization_config")
    if quant:
        method = str(quant.get("quant_method", "")).lower()
        if method in QUANT_PRECISION:
            weight, expert = QUANT_PRECISION[method]
            out: dict[str, Any] = {"weight_precision": weight, "expert_precision": expert}
            block = quant.get("weight_block_size")
            if isinstance(block, list | tuple) and block and all(b == block[0] for b in block):
                out["weight_block_size"] = int(block[0])  # e.g. DeepSeek-V3's [128, 128]
            return out
        if method in ("gptq", "awq") and quant.get("bits") in (4, 8):
            return {"weight_precision": "int4" if quant["bits"] == 4 else "int8"}
        raise HFConfigError(
            f"{family} config: quantization_config.quant_method '{method}' is not supported; "
            f"override weight_precision (one of {sorted(PRECISIONS)}) to load it"
        )
    # transformers >= 4.56 writes "dtype"; older configs "torch_dtype"; both may sit in text_config
    dtype = next(
        (c.get(k) for c in (text_cfg, cfg) for k in ("torch_dtype", "dtype") if c.get(k)), None
    )
    if dtype is None:
        return {"weight_precision": "bf16"}
    if dtype not in DTYPE_PRECISION:
        raise HFConfigError(
            f"{family} config: torch_dtype '{dtype}' is not one of {sorted(DTYPE_PRECISION)}"
        )
    return {"weight_precision": DTYPE_PRECISION[dtype]}


def model_from_hf_config(cfg: Mapping[str, Any], name: str) -> ModelSpec:
    """Turn a parsed Hugging Face ``config.json`` into a ModelSpec named ``name``.

    Raises :class:`HFConfigError` for an unsupported ``model_type``, a missing key, or values the
    schema rejects. KV cache and activations default to bf16.
    """
    if not isinstance(cfg, Mapping):
        raise HFConfigError("a Hugging Face config must be a JSON object")
    family = cfg.get("model_type")
    if not family:
        raise HFConfigError("config has no 'model_type'; cannot tell which model family it is")
    reader = FAMILY_READERS.get(family)
    if reader is None:
        supported = ", ".join(sorted(FAMILY_READERS))
        raise HFConfigError(f"model_type '{family}' is not supported; supported: {supported}")
    text_cfg: Config = cfg
    if family in TEXT_CONFIG_FAMILIES:
        text_cfg = _req(cfg, "text_config", family)
        if not isinstance(text_cfg, Mapping):
            raise HFConfigError(f"{family} config: text_config must be a JSON object")
    try:
        fields = reader(text_cfg, family)
    except (TypeError, AttributeError, ZeroDivisionError) as e:
        # a key of the wrong type (a string head count, a list for a mapping, zero heads)
        raise HFConfigError(f"{family} config '{name}' is malformed: {e}") from e
    tie = text_cfg.get("tie_word_embeddings", cfg.get("tie_word_embeddings"))
    fields.update(
        name=name,
        vocab_size=_req(text_cfg, "vocab_size", family),
        # Every supported family's config class defaults tie_word_embeddings to False.
        tie_embeddings=bool(tie) if tie is not None else False,
        max_position_embeddings=text_cfg.get("max_position_embeddings")
        or text_cfg.get("max_seq_len"),  # DBRX
        **_precision(cfg, text_cfg, family),
    )
    try:
        return ModelSpec.model_validate(fields)
    except ValidationError as e:
        raise HFConfigError(f"{family} config '{name}': {one_line(e)}") from e


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HFConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise HFConfigError(f"cannot read config file {path}: {e}") from None
    except json.JSONDecodeError as e:
        raise HFConfigError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise HFConfigError(f"{path} must hold a JSON object")
    return data


def config_path(path: str | Path) -> Path:
    p = Path(path)
    return p / "config.json" if p.is_dir() else p


def name_for(path: Path) -> str:
    """``.../Qwen3-235B-A22B/config.json`` -> ``Qwen3-235B-A22B``; ``x/foo.json`` -> ``foo``."""
    return path.parent.name if path.stem == "config" and path.parent.name else path.stem


def load_hf_config(path: str | Path) -> ModelSpec:
    """Load a Hugging Face ``config.json`` (or a model directory holding one)."""
    p = config_path(path)
    return model_from_hf_config(read_json(p), name_for(p))


# ----------------------------------------------------------------------------------------------
# Resolution of an instance's ``model`` value
# ----------------------------------------------------------------------------------------------


def one_line(e: ValidationError) -> str:
    err = e.errors()[0]
    loc = ".".join(str(x) for x in err["loc"])
    more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
    return f"{loc + ': ' if loc else ''}{err['msg']}{more}"
