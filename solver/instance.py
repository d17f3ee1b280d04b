"""Reading instance and plan files (YAML or JSON) into validated schema objects.

Every failure becomes an :class:`InputError` whose message is one line naming the field and the
rule, e.g. ``workload.batch: must be greater than 0``. Nothing here prints or exits; the CLI and
the gRPC edge decide how to report.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from solver.hardware import resolve_hardware
from solver.models import resolve_model
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
    "batch should be an integer"). Such an error sits at the branch itself (its location ends
    in the branch's tag); a type error further in (``batch: {max: true}``) is the input's."""
    loc = err.get("loc", ())
    in_union = any(_is_tag(p) for p in loc)
    kind = str(err.get("type", ""))
    return in_union and bool(loc) and _is_tag(loc[-1]) and (
        kind.endswith("_type") or kind.endswith("_parsing"))


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


# ----------------------------------------------------------------------------------------------
# Reading YAML and JSON strictly
# ----------------------------------------------------------------------------------------------

_NULL, _BOOL, _INT, _FLOAT, _STR = (f"tag:yaml.org,2002:{kind}"
                                    for kind in ("null", "bool", "int", "float", "str"))
_SEQ, _MAP = "tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"
#: The YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1032-tag-resolution): the only plain
#: scalars that are not text, tried in this order.
_CORE_PATTERNS = {tag: re.compile(rf"(?:{pattern})\Z") for tag, pattern in (
    (_NULL, r"~|null|Null|NULL|"),
    (_BOOL, r"true|True|TRUE|false|False|FALSE"),
    (_INT, r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+"),
    (_FLOAT, r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
             r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)"),
)}
#: The tag our resolver gives a plain scalar that YAML 1.1 reads differently (``yes``, ``17:04``,
#: ``010``...): never constructed, :func:`_check_yaml_nodes` reports it with its key and line.
_AMBIGUOUS = "tag:moeplan,2025:yaml-1.1-ambiguous"


class _Yaml11Resolver(yaml.resolver.Resolver):
    """How YAML 1.1 reads a plain scalar: PyYAML's resolver, plus the spec's ``y``/``n``
    booleans that PyYAML leaves out (other YAML 1.1 readers, e.g. Go's yaml.v2, have them)."""


_Yaml11Resolver.add_implicit_resolver(_BOOL, re.compile(r"(?:y|Y|n|N)\Z"), list("yYnN"))
_YAML11 = _Yaml11Resolver()
_YAML11_VALUES = yaml.constructor.SafeConstructor()


def _core_tag(value: str) -> str:
    """The YAML 1.2 core schema's tag for a plain scalar."""
    return next((tag for tag, pattern in _CORE_PATTERNS.items() if pattern.match(value)), _STR)


def _core_int(text: str) -> int:
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text, 10)


def _yaml11_reading(value: str) -> tuple[str, Any]:
    """YAML 1.1's tag for a plain scalar, and its value when that is a number or a boolean."""
    tag = _YAML11.resolve(yaml.ScalarNode, value, (True, False))
    if tag == _BOOL:
        return tag, value.lower() in ("y", "yes", "true", "on")
    if tag in (_INT, _FLOAT):
        return tag, _YAML11_VALUES.yaml_constructors[tag](
            _YAML11_VALUES, yaml.ScalarNode(tag, value))
    return tag, value


#: Plain decimal integers, the most common scalar of a large document (load counts): the same
#: in YAML 1.1 and 1.2.
_PLAIN_DECIMAL = re.compile(r"[-+]?(?:0|[1-9][0-9]*)\Z")


def _differs_from_yaml11(value: str, tag: str) -> bool:
    """Whether YAML 1.1 reads the plain scalar ``value`` other than YAML 1.2 (``tag``) does.
    Floats written without a dot or with a leading sign and dot (``1e3``, ``-.5``) are text in
    YAML 1.1 and numbers in 1.2: those are read as numbers (pydantic read YAML 1.1's text as the
    same number before), not refused."""
    if _PLAIN_DECIMAL.match(value):
        return False
    tag11, value11 = _yaml11_reading(value)
    if tag11 != tag:
        return not (tag11 == _STR and tag == _FLOAT)
    return tag == _INT and value11 != _core_int(value)


def _describe(tag: str, value: Any) -> str:
    if tag == _BOOL:
        return "true" if value else "false"
    if tag in (_INT, _FLOAT):
        return repr(value)
    if tag == "tag:yaml.org,2002:timestamp":
        return "a date"
    if tag == "tag:yaml.org,2002:merge":
        return "a merge key"
    if tag == "tag:yaml.org,2002:value":
        return "the value key"
    return "text"


def _ambiguity(value: str) -> str:
    """Why a plain scalar is refused, and what to write instead."""
    tag11, value11 = _yaml11_reading(value)
    tag12 = _core_tag(value)
    value12 = _core_int(value) if tag12 == _INT else value
    said11, said12 = _describe(tag11, value11), _describe(tag12, value12)
    if tag11 == _BOOL:
        fix = "write true or false, or quote it for text"
    elif tag11 in (_INT, _FLOAT) and tag12 == _STR:
        fix = f"write {said11}, or quote it for text"
    elif tag11 == _STR:
        fix = f"write {said12}, or quote it for text"
    elif tag11 == tag12:
        fix = f"write {said11} or {said12} without the leading zero"
    elif tag11 == "tag:yaml.org,2002:merge":
        fix = "YAML 1.2 has no merge keys: write the keys out"
    else:
        fix = "quote it"
    return f"{value!r} is {said11} in YAML 1.1 but {said12} in YAML 1.2: {fix}"


class _DocumentError(ValueError):
    """A strictness rule broken while reading a document: ``field`` is the key path, ``where``
    the line(s); :func:`read_document` adds the file name."""

    def __init__(self, field: str, rule: str, where: str = ""):
        super().__init__(f"{field}: {rule}")
        self.field, self.rule, self.where = field, rule, where


class _BoundedYamlLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` reading the YAML 1.2 core schema, strictly.

    - Only ``true``/``false`` (any case style of the spec) are booleans, numbers are decimal,
      ``0o`` octal, ``0x`` hex or floats; everything else is text, as YAML 1.2 says. A plain
      value that YAML 1.1 reads differently (``yes``/``no``/``on``/``off``/``y``/``n``, base-60
      ``17:04``, ``1_000``, ``010``, ``0o10``, ``0b1``, dates, ``<<`` merge keys) is refused with
      its key and line by :func:`_check_yaml_nodes`: PyYAML, older moeplan versions and many
      other tools read YAML 1.1, so such a value means different things to different readers.
    - Refuses nesting deeper than :data:`MAX_DOCUMENT_DEPTH` while it composes: PyYAML's
      composer recurses once per level, so 100,000 ``[`` would otherwise end in a
      RecursionError. (Aliases are cheap here: they share the node; their expansion is bounded
      by :func:`check_document`.)
    """

    yaml_implicit_resolvers: dict = {}  # not SafeLoader's YAML 1.1 ones: see resolve()

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        if kind is yaml.ScalarNode and implicit[0]:  # a plain scalar without a tag
            tag = _core_tag(value)
            return _AMBIGUOUS if _differs_from_yaml11(value, tag) else tag
        return super().resolve(kind, value, implicit)

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

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        return _core_int(self.construct_scalar(node))


_BoundedYamlLoader.add_constructor(_INT, _BoundedYamlLoader.construct_yaml_int)


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _check_yaml_scalar(node: yaml.ScalarNode, path: tuple | None) -> None:
    if node.tag == _AMBIGUOUS:
        raise _DocumentError(_render_path(path) or "value", _ambiguity(node.value),
                             f"line {_line(node)}")
    if node.tag == _STR:
        return
    pattern = _CORE_PATTERNS.get(node.tag)
    if pattern is None:
        raise _DocumentError(_render_path(path) or "value", f"the tag {node.tag} is not in "
                             "YAML 1.2's core schema (str, int, float, bool, null, seq, map)",
                             f"line {_line(node)}")
    if not pattern.match(node.value):  # explicitly tagged: !!int "1_000"
        raise _DocumentError(_render_path(path) or "value", f"{node.value!r} is not a YAML 1.2 "
                             f"{node.tag.rsplit(':', 1)[-1]}", f"line {_line(node)}")


def _check_yaml_nodes(loader: _BoundedYamlLoader, root: yaml.Node) -> None:
    """Refuse what :class:`_BoundedYamlLoader` leaves for later, with the key path and line:
    duplicate keys (PyYAML keeps the last one silently), plain values YAML 1.1 reads
    differently, and tags outside the core schema. Each node is visited once (an alias shares
    its node), without recursion."""
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, tuple | None]] = [(root, None)]
    while stack:
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            _check_yaml_scalar(node, path)
            continue
        expected = _SEQ if isinstance(node, yaml.SequenceNode) else _MAP
        if node.tag != expected:
            raise _DocumentError(_render_path(path) or "value", f"the tag {node.tag} is not in "
                                 "YAML 1.2's core schema (str, int, float, bool, null, seq, map)",
                                 f"line {_line(node)}")
        if isinstance(node, yaml.SequenceNode):
            stack.extend((child, (path, i)) for i, child in reversed(list(enumerate(node.value))))
            continue
        keys: dict[Any, yaml.Node] = {}
        children = []
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                children.append((value_node, (path, "?")))  # unhashable: construction refuses
                continue
            key_path = (path, key_node.value)  # as written: 1 is not an index here
            _check_yaml_scalar(key_node, key_path)
            key = loader.yaml_constructors[key_node.tag](loader, key_node)
            if key in keys:  # as Python compares them: true, 1 and 1.0 are one key
                raise _DocumentError(_render_path(key_path), "duplicate key; a key may "
                                     "appear once in a mapping",
                                     f"lines {_line(keys[key])} and {_line(key_node)}")
            keys[key] = key_node
            children.append((value_node, key_path))
        stack.extend(reversed(children))


def _parse_yaml(text: str) -> Any:
    """One YAML 1.2 document (core schema), strictly: see :class:`_BoundedYamlLoader`."""
    loader = _BoundedYamlLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        _check_yaml_nodes(loader, root)
        return loader.construct_document(root)
    finally:
        loader.dispose()


def _parse_json(text: str) -> Any:
    """JSON, refusing duplicate keys (``json.loads`` keeps the last one silently)."""
    duplicates: list[tuple[dict, str]] = []

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) < len(pairs):
            keys: set[str] = set()
            for key, _ in pairs:
                if key in keys:
                    duplicates.append((obj, key))
                    break
                keys.add(key)
        return obj

    data = json.loads(text, object_pairs_hook=pairs_hook)
    if duplicates:
        owner, key = duplicates[0]
        raise _DocumentError(_render_path((_path_of(data, owner), key)),
                             "duplicate key; a key may appear once in an object")
    return data


def _path_of(root: Any, target: dict) -> tuple | None:
    """The path (as :func:`_render_path` takes it) from ``root`` to the object ``target``."""
    stack: list[tuple[Any, tuple | None]] = [(root, None)]
    while stack:
        value, path = stack.pop()
        if value is target:
            return path
        if isinstance(value, dict):
            stack.extend((v, (path, k)) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, (path, i)) for i, v in enumerate(value))
    return None


def read_document(path: str | Path) -> Any:
    """Parse a YAML or JSON file (JSON is YAML, but we use the JSON parser for .json files).

    Strict: YAML is read with the YAML 1.2 core schema, and duplicate keys (YAML or JSON) and
    plain YAML values that YAML 1.1 reads differently are errors naming the key (and, for YAML,
    the line). Bounded: at most :data:`MAX_INSTANCE_BYTES` are read (also from devices and
    pipes, whose size ``stat`` does not tell), nesting and YAML alias expansion are capped
    (:func:`check_document`).
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
    is_json = p.suffix.lower() == ".json"
    try:
        data = _parse_json(text) if is_json else _parse_yaml(text)
    except _DocumentError as exc:
        where = f"{p}, {exc.where}" if exc.where else str(p)
        raise InputError(f"{exc.field}: {exc.rule} ({where})", exc.field) from None
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
        raise InputError(f"{p}: invalid {'JSON' if is_json else 'YAML'}: {exc}") from None
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


def _plan_document(data: dict[str, Any]) -> dict[str, Any]:
    """The plan inside a document moeplan wrote: a plan file (``solve --out``, with
    ``schema_version``) is a plan; a solve document (``solve --json``) holds one under ``plan``.
    The version must be one this moeplan reads (same major version); a document without one is
    read as a plan (hand-written files, plans of older versions)."""
    from solver.contract import SCHEMA_VERSION

    version = data.get("schema_version")
    if version is not None:
        if not isinstance(version, str) or version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
            raise InputError(f"plan.schema_version: {version!r} is not a version this moeplan "
                             f"reads (it writes {SCHEMA_VERSION}); re-create the document with "
                             "this moeplan", "plan.schema_version")
        data = {k: v for k, v in data.items() if k != "schema_version"}
    if "degrees" not in data and ("status" in data or "plan" in data):  # solve --json
        plan = data.get("plan")
        if plan is None:
            raise InputError(f"plan: the solve document holds no plan (status "
                             f"{data.get('status', 'unknown')})", "plan")
        return _plan_document(plan) if isinstance(plan, dict) else plan
    if "degrees" in data and ("memory" in data or "metrics" in data):  # estimate --json
        raise InputError("plan: this is an estimate document, not a plan; pass a plan file "
                         "(solve --out) or the output of solve --json", "plan")
    if "valid" in data and "violations" in data:  # verify --json
        raise InputError("plan: this is a verify document, not a plan; pass a plan file "
                         "(solve --out) or the output of solve --json", "plan")
    return data


def plan_from_dict(data: Any) -> Plan:
    """Validate a plan: a plan mapping, a plan file (``solve --out``) or a solve document
    (``solve --json``, whose ``plan`` is taken)."""
    if not isinstance(data, dict):
        raise InputError(f"plan: expected a mapping, got {type(data).__name__}")
    check_document(data)
    data = _plan_document(data)
    if not isinstance(data, dict):
        raise InputError(f"plan: expected a mapping, got {type(data).__name__}")
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
#: A ``--plan`` value: decimal ASCII digits (``int()`` would also take ``٨``, ``８``, ``1_0``).
_PLAN_INTEGER = re.compile(r"[-+]?[0-9]+")


def parse_plan_arg(text: str, default_batch: int | None) -> Plan:
    """A plan from ``tp=8,ep=8,pp=2,batch=64``, or a YAML/JSON file. Missing attention and
    pipeline degrees are 1; missing expert degrees follow :func:`_default_expert_degrees`. A key
    given twice (``sp`` counts as ``cp``) and values other than ASCII decimal integers are
    errors."""
    p = Path(text)
    if "=" not in text and (p.exists() or p.suffix.lower() in {".json", ".yaml", ".yml"}):
        return plan_from_dict(read_document(p))
    degrees: dict[str, int] = {}
    batch = default_batch
    given: dict[str, str] = {}  # key -> the pair as written
    for part in filter(None, (s.strip() for s in text.split(","))):
        if "=" not in part:
            raise InputError(f"--plan: '{part}' is not key=value (e.g. tp=8,ep=8,pp=2)", "plan")
        key, _, value = part.partition("=")
        key, value = key.strip().lower(), value.strip()
        if key == "sp":
            key = "cp"  # the seeds' "SP" splits the sequence: our cp
        if key != "batch" and key not in _DEGREE_KEYS:
            raise InputError(f"--plan: unknown key '{key}' (use {', '.join(sorted(_DEGREE_KEYS))}"
                             ", batch)", "plan")
        if key in given:
            raise InputError(f"--plan: {key} given twice ({given[key]} and {part}); give each "
                             "key once", f"plan.{key}")
        given[key] = part
        if not _PLAN_INTEGER.fullmatch(value):
            raise InputError(f"--plan: {key} must be an integer in ASCII digits 0-9, got "
                             f"'{value}'", f"plan.{key}")
        number = int(value)
        if key == "batch":
            batch = number
        else:
            degrees[key] = number
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
