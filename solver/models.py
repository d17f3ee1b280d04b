"""Model resolution: what an instance's ``model`` value names, as a :class:`ModelSpec`.

A bundled preset (``"qwen3-235b-a22b"``, optionally ``@fp8``), a Hugging Face ``config.json``
path, a preset or config with fields overridden, or explicit fields. Config parsing itself is
:mod:`solver.hf_import`; bundled configs are :mod:`solver.presets`.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from solver import presets
from solver.hf_import import (
    PRECISIONS,
    config_path,
    model_from_hf_config,
    name_for,
    one_line,
    read_json,
)
from solver.schema import ModelSpec

#: Square block edge of the block-quantised FP8 checkpoints that "@fp8" names (DeepSeek-V3's and
#: Qwen3's official FP8 releases: weight_block_size [128, 128]). A per-tensor FP8 checkpoint
#: (e.g. NVIDIA's ModelOpt ones) is given with ``weight_block_size: null``.
FP8_BLOCK = 128


class ModelResolveError(ValueError):
    """A ``model`` value (preset, path or fields) that does not resolve to a valid ModelSpec."""


def _split_precision(value: str) -> tuple[str, str | None]:
    """``"qwen3-235b-a22b@fp8"`` -> ``("qwen3-235b-a22b", "fp8")``."""
    base, sep, suffix = value.rpartition("@")
    if sep and suffix in PRECISIONS:
        return base, suffix
    if sep and base.lower() in presets.MODEL_PRESETS:
        raise ModelResolveError(
            f"model '{value}': unknown precision '@{suffix}'; use one of {sorted(PRECISIONS)}"
        )
    return value, None


def _resolve_str(
    value: str, base_dir: Path | None, *, drop_quantization: bool = False
) -> ModelSpec:
    name, precision = _split_precision(value.strip())
    if name.lower() in presets.MODEL_PRESETS:
        return presets.load_model_preset(name.lower(), precision)
    path = Path(name).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    try:
        path = config_path(path)
        is_file = path.is_file()
    except OSError as exc:  # e.g. a name longer than the file system allows
        raise ModelResolveError(
            f"model '{value[:80]}': neither a preset ({', '.join(presets.model_preset_names())}) "
            f"nor a readable config path ({exc.strerror})"
        ) from None
    if not is_file:
        close = difflib.get_close_matches(name.lower(), presets.model_preset_names(), n=1,
                                          cutoff=0.6)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ModelResolveError(
            f"model '{value}' is neither a preset nor an existing config file ({path}); {hint}"
            f"presets: {', '.join(presets.model_preset_names())}"
        )
    cfg = read_json(path)
    if drop_quantization:
        cfg = {k: v for k, v in cfg.items() if k != "quantization_config"}
    spec = model_from_hf_config(cfg, name_for(path))
    if precision is not None:
        spec = _with_overrides(spec, precision_overrides(precision))
    return spec


def precision_overrides(precision: str) -> dict[str, Any]:
    """Fields that ``@precision`` sets: every weight at ``precision``; FP8 in 128×128 blocks (the
    official FP8 checkpoints), other precisions unblocked."""
    return {"weight_precision": precision, "expert_precision": None,
            "weight_block_size": FP8_BLOCK if precision == "fp8" else None}


def _with_overrides(spec: ModelSpec, overrides: Mapping[str, Any]) -> ModelSpec:
    data = spec.model_dump()
    for key, value in overrides.items():
        if key == "attention" and isinstance(value, Mapping):
            data["attention"] = {**data["attention"], **value}  # merge, so one field can change
        else:
            data[key] = value
    try:
        return ModelSpec.model_validate(data)
    except ValidationError as e:
        raise ModelResolveError(f"model '{spec.name}': {one_line(e)}") from e


def resolve_model(value: str | Mapping[str, Any], base_dir: Path | None = None) -> ModelSpec:
    """Resolve an instance's ``model`` value into a ModelSpec.

    - ``"qwen3-235b-a22b"`` or ``"qwen3-235b-a22b@fp8"``: a bundled preset (at a precision);
    - ``"path/to/config.json"`` or a model directory (relative to ``base_dir``), also with ``@fp8``;
    - ``{"hf_config": <preset or path>, "weight_precision": "fp8", ...}``: a preset or config with
      ModelSpec fields overridden (``attention`` is merged field by field). Overriding
      ``weight_precision`` replaces the config's ``quantization_config``, and expert weights
      follow it unless ``expert_precision`` is given too;
    - any other mapping: explicit ModelSpec fields.

    Every failure is a ValueError subclass with a one-line message.
    """
    if isinstance(value, str):
        return _resolve_str(value, base_dir)
    if not isinstance(value, Mapping):
        raise ModelResolveError(
            f"model must be a preset name, a config path or a mapping, not {type(value).__name__}"
        )
    if "hf_config" in value:
        source = value["hf_config"]
        if not isinstance(source, str):
            raise ModelResolveError("model.hf_config must be a preset name or a config path")
        overrides = {k: v for k, v in value.items() if k != "hf_config"}
        if "weight_precision" in overrides:
            # As with "@fp8": unless given too, expert weights follow the new weight precision
            # and FP8 comes in 128x128 blocks.
            for key, value in precision_overrides(overrides["weight_precision"]).items():
                overrides.setdefault(key, value)
        base = _resolve_str(source, base_dir, drop_quantization="weight_precision" in overrides)
        return _with_overrides(base, overrides) if overrides else base
    try:
        return ModelSpec.model_validate(dict(value))
    except ValidationError as e:
        raise ModelResolveError(f"model: {one_line(e)}") from e
