"""Hugging Face model ids and the bundled presets they are (``data/hf_models.json``): the one-line
CLI reads ``--model Qwen/Qwen3-235B-A22B-FP8`` as ``qwen3-235b-a22b@fp8``, and an export serves a
preset under its Hugging Face id."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

from solver.schema import ModelSpec


@cache
def _table() -> dict:
    return json.loads(resources.files("solver.export").joinpath("data", "hf_models.json")
                      .read_text())


def hf_aliases() -> dict[str, str]:
    """Hugging Face id -> preset (with ``@precision``)."""
    return dict(_table()["models"])


def preset_for(name: str) -> str | None:
    """The preset a Hugging Face id names (case-insensitive), or None."""
    lowered = {k.lower(): v for k, v in hf_aliases().items()}
    return lowered.get(name.strip().lower())


def served_model_path(model: ModelSpec) -> str:
    """What an engine should load for ``model``: the Hugging Face id of a preset, else the
    model's name (a config path's directory, or the name given)."""
    return _table()["served_as"].get(model.name, model.name)
