"""Bundled model presets: the vendors' Hugging Face ``config.json`` files, read as package data.

A preset is loaded through the same importer as any user config (:mod:`solver.hf_import`), so the
presets exercise it; the vendor's published total is attached as ``declared_total_params`` and
checked against the architecture like any declared count.
"""

from __future__ import annotations

import json
from importlib import resources

from solver.hf_import import PRECISIONS, model_from_hf_config
from solver.schema import ModelSpec

#: Preset name -> file in ``solver/presets/models/``.
MODEL_PRESETS: dict[str, str] = {
    "deepseek-v3": "DeepSeek-V3.json",
    "llama-4-maverick-17b-128e": "Llama-4-Maverick-17B-128E.json",
    "mixtral-8x7b": "Mixtral-8x7B-v0.1.json",
    "qwen3-235b-a22b": "Qwen3-235B-A22B.json",
    "qwen3-30b-a3b": "Qwen3-30B-A3B.json",
    "gpt-oss-120b": "gpt-oss-120b.json",
    "kimi-k2": "Kimi-K2-Instruct.json",
}

#: The vendors' published total parameter counts.
PUBLISHED_TOTAL_PARAMS: dict[str, int] = {
    # DeepSeek-V3 technical report (arXiv:2412.19437) and HF model card: "671B of the Main Model
    # weights and 14B of the Multi-Token Prediction (MTP) Module weights" -> main model only.
    "deepseek-v3": 671_000_000_000,
    # Meta, Llama 4 model card (meta-llama/Llama-4-Maverick-17B-128E): 17B active, 400B total.
    "llama-4-maverick-17b-128e": 400_000_000_000,
    # Mistral AI, "Mixtral of experts" announcement (mistral.ai/news/mixtral-of-experts):
    # "46.7B total parameters but only uses 12.9B parameters per token".
    "mixtral-8x7b": 46_700_000_000,
    # Qwen, HF model card Qwen/Qwen3-235B-A22B: "235B in total and 22B activated".
    "qwen3-235b-a22b": 235_000_000_000,
    # Qwen, HF model card Qwen/Qwen3-30B-A3B: "30.5B in total and 3.3B activated".
    "qwen3-30b-a3b": 30_500_000_000,
    # OpenAI, gpt-oss-120b & gpt-oss-20b model card (arXiv:2508.10925), table 1: 116.83B total,
    # 5.13B active (their active count excludes the embedding, see solver.params.active_params).
    "gpt-oss-120b": 116_830_000_000,
    # Moonshot AI, HF model card moonshotai/Kimi-K2-Instruct: "32 billion activated parameters
    # and 1 trillion total parameters".
    "kimi-k2": 1_000_000_000_000,
}


class UnknownPresetError(ValueError):
    """A model preset name that is not bundled."""


def model_preset_names() -> list[str]:
    """Names of the bundled model presets, sorted."""
    return sorted(MODEL_PRESETS)


def load_model_preset(name: str, precision: str | None = None) -> ModelSpec:
    """The bundled model ``name``; ``precision`` (e.g. ``"fp8"``) replaces the precision of all
    weights, experts included (Qwen3-235B-A22B-FP8 is ``load_model_preset("qwen3-235b-a22b",
    "fp8")``)."""
    key = name.strip().lower()
    if key not in MODEL_PRESETS:
        raise UnknownPresetError(
            f"unknown model preset '{name}'; valid: {', '.join(model_preset_names())}"
        )
    if precision is not None and precision not in PRECISIONS:
        raise ValueError(f"unknown precision '{precision}'; use one of {sorted(PRECISIONS)}")
    models_dir = resources.files(__name__).joinpath("models")
    text = models_dir.joinpath(MODEL_PRESETS[key]).read_text(encoding="utf-8")
    spec = model_from_hf_config(json.loads(text), key)
    update: dict[str, object] = {"declared_total_params": PUBLISHED_TOTAL_PARAMS[key]}
    if precision is not None:
        update.update(name=f"{key}@{precision}", weight_precision=precision, expert_precision=None,
                      weight_block_size=128 if precision == "fp8" else None)
    # model_validate, not model_copy: the updated spec is checked like any other.
    return ModelSpec.model_validate({**spec.model_dump(), **update})
