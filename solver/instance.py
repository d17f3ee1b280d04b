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
from solver.schema import MAX_GPUS, Degrees, Instance, Plan

#: Largest instance file we read; a real one (even with a measured 61×384 load matrix) is < 2 MB.
MAX_INSTANCE_BYTES = 16 * 1024 * 1024
#: Deepest nesting of a document: an instance is at most 5 levels deep (expert_load.counts rows).
MAX_DOCUMENT_DEPTH = 32
#: Most values (mappings, lists and scalars, YAML aliases counted as often as they are used) in a
#: document: a measured load of MAX_LAYERS x MAX_EXPERTS counts is 524,288. Caps YAML alias bombs
#: ("billion laughs"), whose expansion a few hundred bytes can make exponential.
MAX_DOCUMENT_VALUES = 1_000_000


class InputError(ValueError):
    """Bad input: ``field`` names where, the message says which rule."""

    def __init__(
        self, message: str, field: str = "", violations: list[tuple[str, str]] | None = None
    ):
        message = " ".join(str(message).split())  # one line, even when it quotes the input
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


#: Location parts pydantic adds for the branches of a union (``int | BatchRange``): not fields.
_UNION_TAGS = frozenset({"int", "float", "str", "bool", "none", "BatchRange", "dict[str,any]"})
_UNION_TAG_PREFIXES = ("constrained-", "function-", "lax-", "nullable[", "json-or-python[")


def _is_tag(part: object) -> bool:
    return isinstance(part, str) and (part in _UNION_TAGS or part.startswith(_UNION_TAG_PREFIXES))


def _wrong_branch(err: dict) -> bool:
    """A union branch that failed only because the input has another type: when a union fails,
    the branch matching the input's type says what is wrong (``batch.max`` too large, not
    "batch should be an integer")."""
    in_union = any(_is_tag(p) for p in err.get("loc", ()))
    kind = str(err.get("type", ""))
    return in_union and (kind.endswith("_type") or kind.endswith("_parsing"))


def validation_error(exc: ValidationError, prefix: str = "") -> InputError:
    """One line from a pydantic error, keeping every violation for structured reporting."""
    errs = sorted(exc.errors(include_url=False), key=_wrong_branch)  # stable: order kept
    violations = []
    for e in errs:
        parts = tuple(p for p in e.get("loc", ()) if not _is_tag(p))
        path = _loc(parts)
        full = ".".join(x for x in (prefix, path) if x)
        violations.append((full, _clean_msg(e)))
    first_field, first_msg = violations[0]
    more = f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""
    text = f"{first_field}: {first_msg}{more}" if first_field else f"{first_msg}{more}"
    return InputError(text, first_field, violations)


class _BoundedYamlLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses nesting deeper than :data:`MAX_DOCUMENT_DEPTH` while it
    composes: PyYAML's composer recurses once per level, so 100,000 ``[`` would otherwise end in
    a RecursionError. (Aliases are cheap here: they share the node; their expansion is bounded
    by :func:`check_document`.)"""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self._depth > MAX_DOCUMENT_DEPTH:
            raise yaml.composer.ComposerError(
                None, None, f"nested deeper than {MAX_DOCUMENT_DEPTH} levels",
                self.peek_event().start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _parse_yaml(text: str) -> Any:
    loader = _BoundedYamlLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def read_document(path: str | Path) -> Any:
    """Parse a YAML or JSON file (JSON is YAML, but we use the JSON parser for .json files).

    Bounded: at most :data:`MAX_INSTANCE_BYTES` are read (also from devices and pipes, whose size
    ``stat`` does not tell), nesting and YAML alias expansion are capped (:func:`check_document`).
    """
    p = Path(path)
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        raise InputError(f"{p}: no such file") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{p}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    if p.is_dir():
        raise InputError(f"{p}: is a directory, expected an instance file")
    if size > MAX_INSTANCE_BYTES:
        raise InputError(f"{p}: file is {size} bytes, above the {MAX_INSTANCE_BYTES}-byte limit")
    try:
        with p.open("rb") as fh:
            raw = fh.read(MAX_INSTANCE_BYTES + 1)
    except OSError as exc:
        raise InputError(f"{p}: cannot read ({exc.strerror})") from None
    if len(raw) > MAX_INSTANCE_BYTES:
        raise InputError(f"{p}: more than the {MAX_INSTANCE_BYTES}-byte limit")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{p}: not UTF-8 text") from None
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            data = _parse_yaml(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{p}: invalid JSON at line {exc.lineno} column {exc.colno}: "
                         f"{exc.msg}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise InputError(f"{p}: invalid YAML{where}: {problem}") from None
    except RecursionError:  # the JSON parser recurses once per level
        raise InputError(f"{p}: nested deeper than {MAX_DOCUMENT_DEPTH} levels") from None
    except ValueError as exc:  # e.g. JSON integers longer than Python's int-conversion limit
        raise InputError(f"{p}: invalid {'JSON' if p.suffix.lower() == '.json' else 'YAML'}: "
                         f"{exc}") from None
    check_document(data)
    return data


def _render_path(path: tuple | None) -> str:
    parts: list[Any] = []
    while path is not None:
        path, key = path
        parts.append(key)
    out = ""
    for key in reversed(parts):
        out += f"[{key}]" if isinstance(key, int) else ("." if out else "") + str(key)
    return out


def _expanded_size(value: Any) -> int:
    """Values in ``value`` with every shared object (a YAML alias) counted each time it is used,
    computed in time linear in the *distinct* objects (an alias bomb has a few dozen); raises
    when nesting is deeper than :data:`MAX_DOCUMENT_DEPTH`, which also stops cycles (``&a [*a]``
    nests forever)."""
    if not isinstance(value, dict | list):
        return 1
    sizes: dict[int, int] = {}
    stack: list[tuple[Any, bool, int]] = [(value, False, 0)]
    while stack:
        v, children_done, depth = stack.pop()
        kids = list(v.values()) if isinstance(v, dict) else v
        if children_done:
            sizes[id(v)] = 1 + sum(sizes[id(k)] if isinstance(k, dict | list) else 1
                                   for k in kids)
            continue
        if id(v) in sizes:
            continue
        if depth >= MAX_DOCUMENT_DEPTH:
            raise InputError(f"instance: nested deeper than {MAX_DOCUMENT_DEPTH} levels")
        stack.append((v, True, depth))
        stack.extend((k, False, depth + 1) for k in kids
                     if isinstance(k, dict | list) and id(k) not in sizes)
    return sizes[id(value)]


def check_document(value: Any) -> None:
    """Reject what no field of ours means and what would make validation explode: nesting
    deeper than :data:`MAX_DOCUMENT_DEPTH` (this also stops recursive YAML documents,
    ``&a [*a]``), more than :data:`MAX_DOCUMENT_VALUES` values (a YAML alias counts each time it
    is used: an alias bomb is measured, not expanded) and non-finite numbers (YAML's .nan and
    .inf). No recursion: a document cannot exhaust the stack."""
    size = _expanded_size(value)
    if size > MAX_DOCUMENT_VALUES:
        raise InputError(f"instance: {size} values, above the limit of {MAX_DOCUMENT_VALUES} "
                         "(YAML aliases count each time they are used)")
    stack: list[tuple[Any, tuple | None]] = [(value, None)]
    while stack:
        v, path = stack.pop()
        if isinstance(v, float):
            if not math.isfinite(v):
                where = _render_path(path)
                raise InputError(f"{where or 'value'}: must be a finite number, got {v}", where)
        elif isinstance(v, dict):
            stack.extend((x, (path, k)) for k, x in v.items())
        elif isinstance(v, list):
            stack.extend((x, (path, i)) for i, x in enumerate(v))


def instance_from_dict(data: Any, base_dir: Path | None = None) -> Instance:
    """Resolve presets and config paths, then validate."""
    if not isinstance(data, dict):
        raise InputError(f"instance: expected a mapping at the top level, got "
                         f"{type(data).__name__}")
    check_document(data)
    data = dict(data)
    for required in ("model", "hardware", "workload"):
        if required not in data:
            raise InputError(f"{required}: field required", required)
    model = data["model"]
    try:
        data["model"] = resolve_model(model, base_dir)
    except ValidationError as exc:
        raise validation_error(exc, "model") from None
    except InputError:
        raise
    except ValueError as exc:
        cause = exc.__cause__
        if isinstance(cause, ValidationError) and isinstance(model, dict) and (
                "hf_config" not in model):  # explicit fields: name the field, e.g. model.top_k
            raise validation_error(cause, "model") from None
        raise InputError(f"model: {exc}", "model") from None
    except OSError as exc:  # a config path the OS refuses (name too long, no permission...)
        raise InputError(f"model: cannot read the config ({exc.strerror or exc})",
                         "model") from None
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
    check_document(data)
    try:
        plan = Plan.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, "plan") from None
    d = plan.degrees
    if d.gpus > MAX_GPUS:
        raise InputError(f"plan.degrees: replicas·pp·tp·cp·dp = {d.replicas}·{d.pp}·{d.tp}·{d.cp}·"
                         f"{d.dp} = {d.gpus} GPUs, above the limit of {MAX_GPUS}", "plan.degrees")
    return plan


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
