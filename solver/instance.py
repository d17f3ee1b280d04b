"""Reading instance and plan files (YAML or JSON) into validated schema objects.

Every failure becomes an :class:`InputError` whose message is one line naming the field and the
rule, e.g. ``workload.batch: must be greater than 0``. Nothing here prints or exits; the CLI and
the gRPC edge decide how to report.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from solver.hardware import resolve_hardware
from solver.hf_import import resolve_model
from solver.schema import Degrees, Instance, Plan

#: Largest instance file we read; a real one (even with a measured 61×384 load matrix) is < 2 MB.
MAX_INSTANCE_BYTES = 16 * 1024 * 1024


class InputError(ValueError):
    """Bad input: ``field`` names where, the message says which rule."""

    def __init__(
        self, message: str, field: str = "", violations: list[tuple[str, str]] | None = None
    ):
        super().__init__(message)
        self.field = field
        self.violations = violations or ([(field, message)] if field else [])


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _clean_msg(err: dict) -> str:
    msg = err.get("msg", "invalid")
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix):]
    return msg


def validation_error(exc: ValidationError, prefix: str = "") -> InputError:
    """One line from a pydantic error, keeping every violation for structured reporting."""
    errs = exc.errors(include_url=False)
    violations = []
    for e in errs:
        path = _loc(tuple(e.get("loc", ())))
        # Unions report every branch; keep the loc readable by dropping type tags like 'int'.
        path = ".".join(p for p in path.split(".") if p not in {"int", "BatchRange", "str",
                                                                  "dict[str,any]"})
        full = ".".join(x for x in (prefix, path) if x)
        violations.append((full, _clean_msg(e)))
    first_field, first_msg = violations[0]
    more = f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""
    text = f"{first_field}: {first_msg}{more}" if first_field else f"{first_msg}{more}"
    return InputError(text, first_field, violations)


def read_document(path: str | Path) -> Any:
    """Parse a YAML or JSON file (JSON is YAML, but we use the JSON parser for .json files)."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        raise InputError(f"{p}: no such file") from None
    except OSError as exc:
        raise InputError(f"{p}: cannot read ({exc.strerror})") from None
    if p.is_dir():
        raise InputError(f"{p}: is a directory, expected an instance file")
    if size > MAX_INSTANCE_BYTES:
        raise InputError(f"{p}: file is {size} bytes, above the {MAX_INSTANCE_BYTES}-byte limit")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{p}: not UTF-8 text") from None
    try:
        if p.suffix.lower() == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{p}: invalid JSON at line {exc.lineno} column {exc.colno}: "
                         f"{exc.msg}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise InputError(f"{p}: invalid YAML{where}: {problem}") from None


def _reject_non_finite(value: Any, path: str = "") -> None:
    """YAML accepts .nan/.inf; no field of ours means anything with them."""
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(f"{path or 'value'}: must be a finite number, got {value}", path)
    if isinstance(value, dict):
        for k, v in value.items():
            _reject_non_finite(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _reject_non_finite(v, f"{path}[{i}]")


def instance_from_dict(data: Any, base_dir: Path | None = None) -> Instance:
    """Resolve presets and config paths, then validate."""
    if not isinstance(data, dict):
        raise InputError(f"instance: expected a mapping at the top level, got "
                         f"{type(data).__name__}")
    _reject_non_finite(data)
    data = dict(data)
    for required in ("model", "hardware", "workload"):
        if required not in data:
            raise InputError(f"{required}: field required", required)
    try:
        data["model"] = resolve_model(data["model"], base_dir)
    except ValidationError as exc:
        raise validation_error(exc, "model") from None
    except InputError:
        raise
    except ValueError as exc:
        raise InputError(f"model: {exc}", "model") from None
    try:
        data["hardware"] = resolve_hardware(data["hardware"])
    except ValidationError as exc:
        raise validation_error(exc, "hardware") from None
    except ValueError as exc:
        raise InputError(f"hardware: {exc}", "hardware") from None
    try:
        return Instance.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None


def load_instance(path: str | Path) -> Instance:
    """Read, resolve and validate an instance file."""
    p = Path(path)
    return instance_from_dict(read_document(p), p.parent)


def plan_from_dict(data: Any) -> Plan:
    if not isinstance(data, dict):
        raise InputError(f"plan: expected a mapping, got {type(data).__name__}")
    _reject_non_finite(data)
    try:
        return Plan.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, "plan") from None


_DEGREE_KEYS = set(Degrees.model_fields)


def parse_plan_arg(text: str, default_batch: int | None) -> Plan:
    """A plan from ``tp=8,ep=8,pp=2,batch=64``, or a YAML/JSON file. Missing attention and
    pipeline degrees are 1; missing expert degrees follow :func:`_default_expert_degrees`."""
    p = Path(text)
    if "=" not in text and (p.exists() or p.suffix.lower() in {".json", ".yaml", ".yml"}):
        data = read_document(p)
        if isinstance(data, dict) and "degrees" not in data and "plan" in data:
            data = data["plan"]
        return plan_from_dict(data)
    degrees: dict[str, int] = {}
    batch = default_batch
    for part in filter(None, (s.strip() for s in text.split(","))):
        if "=" not in part:
            raise InputError(f"--plan: '{part}' is not key=value (e.g. tp=8,ep=8,pp=2)", "plan")
        key, _, value = part.partition("=")
        key = key.strip().lower()
        if key == "sp":
            key = "cp"  # the seeds' "SP" splits the sequence: our cp
        try:
            number = int(value)
        except ValueError:
            raise InputError(f"--plan: {key} must be an integer, got '{value}'", "plan") from None
        if key == "batch":
            batch = number
        elif key in _DEGREE_KEYS:
            degrees[key] = number
        else:
            raise InputError(f"--plan: unknown key '{key}' (use {', '.join(sorted(_DEGREE_KEYS))}"
                             ", batch)", "plan")
    if batch is None:
        raise InputError("--plan: the workload gives a batch range; add batch=N", "plan.batch")
    _default_expert_degrees(degrees)
    return plan_from_dict({"degrees": degrees, "batch": batch})


def _default_expert_degrees(degrees: dict[str, int]) -> None:
    """Fill the expert degrees a short plan leaves out the way engines default: without ``ep``
    experts are split by tensor parallelism (``etp = tp``, vLLM without expert parallelism),
    with ``ep`` they are whole (``etp = 1``); ``edp`` takes the rest of the stage's GPUs."""
    tp, cp, dp = (degrees.get(k, 1) for k in ("tp", "cp", "dp"))
    if min(tp, cp, dp, degrees.get("ep", 1), degrees.get("etp", 1)) <= 0:
        return  # validation names the bad degree
    if "etp" not in degrees:
        degrees["etp"] = 1 if "ep" in degrees else tp
    ep = degrees.get("ep", 1)
    if "edp" not in degrees:
        grid, expert = tp * cp * dp, degrees["etp"] * ep
        degrees["edp"] = grid // expert if grid % expert == 0 else 1


def instance_file_json_schema() -> dict[str, Any]:
    """JSON Schema of an instance *file*: like :class:`Instance`, except that ``model`` and
    ``hardware`` may also be preset names, config paths or a preset with field overrides —
    what :func:`instance_from_dict` resolves before validation."""
    from solver.hardware import hardware_preset_names
    from solver.presets import model_preset_names

    schema = Instance.model_json_schema()
    props = schema["properties"]
    props["model"] = {
        "description": "A model preset (" + ", ".join(model_preset_names()) + "), optionally "
        "with '@precision' (e.g. 'qwen3-235b-a22b@fp8'); a path to a Hugging Face config.json "
        "(or its directory); {hf_config: preset-or-path, ...ModelSpec field overrides}; or "
        "every ModelSpec field explicitly.",
        "anyOf": [
            {"type": "string", "minLength": 1},
            {"type": "object", "required": ["hf_config"],
             "properties": {"hf_config": {"type": "string"}}, "additionalProperties": True},
            {"$ref": "#/$defs/ModelSpec"},
        ],
    }
    props["hardware"] = {
        "description": "A hardware preset (" + ", ".join(hardware_preset_names()) + "); "
        "{preset: name, ...HardwareSpec field overrides}; or every HardwareSpec field.",
        "anyOf": [
            {"type": "string", "enum": hardware_preset_names()},
            {"type": "object", "required": ["preset"],
             "properties": {"preset": {"type": "string", "enum": hardware_preset_names()}},
             "additionalProperties": True},
            {"$ref": "#/$defs/HardwareSpec"},
        ],
    }
    return schema
