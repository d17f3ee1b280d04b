"""protobuf <-> the schema's dicts and the JSON contract's documents, at the edge of the service.

The messages of ``protos/moeplan/v1/planner.proto`` use the field names of the instance schema
(:mod:`solver.schema`) and of the JSON documents moeplan writes (:mod:`solver.contract`), so the
conversions are generic; the few places where protobuf cannot say what the schema says (oneofs
for ``model``/``hardware``/``batch``, enums for literals, lists of lists, the ``peak_tflops``
table) have one small hook each in :data:`_TO_DICT` / :data:`_FROM_DICT`.

- **dict -> message** (every reply; the clients' requests): :func:`fill_message` reshapes the
  dict (enum literals to enum names, the hooks) and hands it to
  :func:`google.protobuf.json_format.ParseDict`, which does the rest and refuses a key the
  message lacks, so a field added to the schema or the contract but not to the .proto fails
  loudly (``tests/test_service.py`` checks every document).
- **message -> dict** (every request; the clients' replies): :func:`message_to_dict`, a walk over
  the descriptor. It is the validation edge, which ``json_format.MessageToDict`` cannot be: it
  keeps 64-bit integers as integers and presence as presence (an unset proto3 ``optional``, an
  empty repeated field and enum value 0 are left out, so the schema's default applies and a
  missing required field is reported by pydantic exactly as for an instance file), and it
  refuses, naming the field, an enum number this server does not know and a field it does not
  know (``BatchRange.step``, say, which this version removed): neither is ever silently read as
  a default. ``google.protobuf.Value`` (``search_space``) goes through ``MessageToDict``.

Requests then go through :func:`solver.instance.instance_from_dict`, the CLI's own validation.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.unknown_fields import UnknownFieldSet
from pydantic import BaseModel

from service._gen.moeplan.v1 import planner_pb2 as pb
from solver import contract
from solver.instance import InputError, instance_from_dict, plan_from_dict
from solver.presets import MODEL_PRESETS, model_preset_names
from solver.schema import HardwareSpec, Instance, ModelSpec, Plan, SolveResult

#: The well-known types of the JSON data model, which json_format converts to and from Python's.
_JSON_TYPES = frozenset({"google.protobuf.Struct", "google.protobuf.Value",
                         "google.protobuf.ListValue"})

# ----------------------------------------------------------------------------------------------
# Enums: PRECISION_BF16 <-> "bf16", SOLVE_STATUS_OPTIMAL <-> "OPTIMAL"
# ----------------------------------------------------------------------------------------------

#: Enums whose schema literals are upper case; the others are lower case.
_UPPER_CASE_ENUMS = {"moeplan.v1.SolveStatus"}


def _enum_prefix(enum: EnumDescriptor) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", enum.name).upper() + "_"


def _enum_to_literal(enum: EnumDescriptor, number: int) -> str | None:
    """The schema literal of an enum value; None for 0 (unspecified) and unknown numbers."""
    value = enum.values_by_number.get(number)
    if value is None or number == 0:
        return None
    literal = value.name.removeprefix(_enum_prefix(enum))
    return literal if enum.full_name in _UPPER_CASE_ENUMS else literal.lower()


def _literal_to_enum(enum: EnumDescriptor, literal: str) -> str:
    """The enum value name of a schema literal (``"bf16"`` -> ``"PRECISION_BF16"``)."""
    name = _enum_prefix(enum) + str(literal).upper()
    if name not in enum.values_by_name:
        raise ValueError(f"{enum.name} has no value for {literal!r}")
    return name


# ----------------------------------------------------------------------------------------------
# Message -> dict
# ----------------------------------------------------------------------------------------------


def _unknown_fields(msg: Message, path: str) -> None:
    unknown = UnknownFieldSet(msg)
    if len(unknown):
        numbers = sorted({f.field_number for f in unknown})
        where = path or {"Instance": "instance", "Plan": "plan"}.get(msg.DESCRIPTOR.name,
                                                                      "request")
        raise InputError(f"{where}: field number{'s' if len(numbers) > 1 else ''} "
                         f"{', '.join(map(str, numbers))} of {msg.DESCRIPTOR.name} "
                         "not known to this server (a field of a newer client, or one this "
                         "version removed: see docs/service.md)", where)


def _integral(value: Any) -> Any:
    """A Struct's numbers are doubles: the integral ones back as integers."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


class _Walk:
    """One conversion of a message tree into dicts (see :func:`message_to_dict`)."""

    def __init__(self, strict: bool, nulls: bool):
        self.strict, self.nulls = strict, nulls

    def scalar(self, field: FieldDescriptor, value: Any, path: str) -> Any:
        if field.type == FieldDescriptor.TYPE_ENUM:
            if self.strict and value and value not in field.enum_type.values_by_number:
                # proto3 enums are open: a number this server does not know must not silently
                # become "unset" (and the default precision, say).
                names = ", ".join(v.name for v in field.enum_type.values if v.number)
                raise InputError(f"{path}: unknown {field.enum_type.name} value {value} "
                                 f"(known: {names})", path)
            return _enum_to_literal(field.enum_type, value)
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.message_type.full_name in _JSON_TYPES:
                return _integral(json_format.MessageToDict(value))
            return self.message(value, path)
        return value

    def message(self, msg: Message, path: str = "") -> Any:
        if self.strict:
            _unknown_fields(msg, path)
        out: dict[str, Any] = {}
        for field in msg.DESCRIPTOR.fields:
            value = getattr(msg, field.name)
            where = f"{path}.{field.name}" if path else field.name
            if field.is_repeated:
                if not value and not self.nulls:
                    continue
                if field.message_type is not None and field.message_type.GetOptions().map_entry:
                    value_field = field.message_type.fields_by_name["value"]
                    out[field.name] = {k: self.scalar(value_field, v, f"{where}[{k}]")
                                       for k, v in value.items()}
                else:
                    out[field.name] = [self.scalar(field, v, f"{where}[{i}]")
                                       for i, v in enumerate(value)]
                continue
            if field.has_presence and not msg.HasField(field.name):
                if self.nulls and field.containing_oneof is None:
                    out[field.name] = None
                continue
            converted = self.scalar(field, value, where)
            if converted is not None:
                out[field.name] = converted
        hook = _TO_DICT.get(msg.DESCRIPTOR.full_name)
        return hook(out) if hook else out


def message_to_dict(msg: Message, path: str = "", *, strict: bool = True,
                    nulls: bool = False) -> Any:
    """A message as the dict the schema reads, leaving out every field that is not set.

    ``path`` is where the message sits in the request, for error messages. ``strict`` (requests):
    unknown enum numbers and unknown fields are :class:`InputError`; off for replies, so a client
    reads a newer server's answers. ``nulls`` (documents): an unset singular message or optional
    scalar is ``None`` and an empty repeated field ``[]`` (or ``{}``) instead of absent, as the
    contract's documents list them."""
    return _Walk(strict, nulls).message(msg, path)


def _instance_to_dict(d: dict[str, Any]) -> dict[str, Any]:
    for key in ("model", "hardware"):
        for variant in (f"{key}_preset", f"{key}_spec"):
            if variant in d:
                d[key] = d.pop(variant)
    return d


def _workload_to_dict(d: dict[str, Any]) -> dict[str, Any]:
    for variant in ("fixed_batch", "batch_range"):
        if variant in d:
            d["batch"] = d.pop(variant)
    return d


def _hardware_to_dict(d: dict[str, Any]) -> dict[str, Any]:
    entries = d.pop("peak_tflops", None)
    if entries is None:
        return d
    table: dict[str, Any] = {}
    for i, entry in enumerate(entries):
        precision = entry.get("precision")
        if precision is None:
            raise InputError(f"hardware.peak_tflops[{i}].precision: field required",
                             f"hardware.peak_tflops[{i}].precision")
        if precision in table:
            raise InputError(f"hardware.peak_tflops: precision {precision} is given twice",
                             "hardware.peak_tflops")
        table[precision] = entry.get("tflops", 0.0)
    d["peak_tflops"] = table
    return d


def _solve_result_to_dict(d: dict[str, Any]) -> dict[str, Any]:
    if "search_space" in d:
        d["search_space"] = {r.get("name", ""): r.get("value") for r in d["search_space"]}
    return d


#: Per-message rewrites applied after the generic walk (protobuf shape -> schema shape).
_TO_DICT: dict[str, Callable[[dict[str, Any]], Any]] = {
    "moeplan.v1.Instance": _instance_to_dict,
    "moeplan.v1.SolveResult": _solve_result_to_dict,
    "moeplan.v1.Workload": _workload_to_dict,
    "moeplan.v1.HardwareSpec": _hardware_to_dict,
    "moeplan.v1.ExpertCounts": lambda d: d.get("tokens", []),
    "moeplan.v1.RankExperts": lambda d: d.get("experts", []),
}

# ----------------------------------------------------------------------------------------------
# dict -> message
# ----------------------------------------------------------------------------------------------


def _instance_from_dict(d: dict[str, Any]) -> dict[str, Any]:
    d = dict(d)
    for key in ("model", "hardware"):
        if key in d:
            value = d.pop(key)
            d[f"{key}_preset" if isinstance(value, str) else f"{key}_spec"] = value
    return d


def _workload_from_dict(d: dict[str, Any]) -> dict[str, Any]:
    d = dict(d)
    if "batch" in d:
        batch = d.pop("batch")
        d["fixed_batch" if isinstance(batch, int) else "batch_range"] = batch
    return d


def _hardware_from_dict(d: dict[str, Any]) -> dict[str, Any]:
    d = dict(d)
    if "peak_tflops" in d:
        d["peak_tflops"] = [{"precision": k, "tflops": v} for k, v in d["peak_tflops"].items()]
    return d


def _solve_result_from_dict(d: dict[str, Any]) -> dict[str, Any]:
    d = dict(d)
    if isinstance(d.get("search_space"), dict):  # ordered: a list of (name, value)
        d["search_space"] = [{"name": k, "value": v} for k, v in d["search_space"].items()]
    return d


#: Per-message rewrites applied before the generic reshaping (schema shape -> protobuf shape).
_FROM_DICT: dict[str, Callable[[Any], dict[str, Any]]] = {
    "moeplan.v1.Instance": _instance_from_dict,
    "moeplan.v1.SolveResult": _solve_result_from_dict,
    "moeplan.v1.Workload": _workload_from_dict,
    "moeplan.v1.HardwareSpec": _hardware_from_dict,
    "moeplan.v1.ExpertCounts": lambda row: {"tokens": list(row)},
    "moeplan.v1.RankExperts": lambda rank: {"experts": list(rank)},
}


def _jsonable(value: Any) -> Any:
    """Tuples as lists, non-finite floats as the strings the proto3 JSON mapping uses."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _value_json(field: FieldDescriptor, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_ENUM:
        return _literal_to_enum(field.enum_type, value)
    if field.message_type is not None and field.message_type.full_name not in _JSON_TYPES:
        return _message_json(field.message_type, value)
    return _jsonable(value)


def _message_json(desc: Descriptor, data: Any) -> Any:
    """A schema-shaped dict in the shape of the proto3 JSON mapping of ``desc``: enum values by
    name, oneofs and nested lists per the hooks. Unknown keys are kept (ParseDict names them)."""
    hook = _FROM_DICT.get(desc.full_name)
    if hook:
        data = hook(data)
    out: dict[str, Any] = {}
    for key, value in data.items():
        field = desc.fields_by_name.get(key)
        if value is None:
            continue
        if field is None:
            out[key] = value
            continue
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            out[key] = {k: _value_json(value_field, v) for k, v in value.items()}
        elif field.is_repeated:
            out[key] = [_value_json(field, v) for v in value]
        else:
            out[key] = _value_json(field, value)
    return out


def fill_message(msg: Message, data: Any) -> Message:
    """Set the fields of ``msg`` from a schema-shaped dict (``None`` values are left unset); a key
    the message has no field for is an error (``json_format.ParseError``)."""
    return json_format.ParseDict(_message_json(msg.DESCRIPTOR, data), msg)


# ----------------------------------------------------------------------------------------------
# The conversions the servicer and the clients use
# ----------------------------------------------------------------------------------------------


def _check_model_preset(name: str) -> None:
    """Over gRPC a model string must be a bundled preset: a path would read the server's files."""
    base, sep, _ = name.strip().rpartition("@")
    if name.strip().lower() in MODEL_PRESETS or (sep and base.lower() in MODEL_PRESETS):
        return
    raise InputError(
        f"model: unknown model preset '{name}'; use one of {', '.join(model_preset_names())} "
        "(optionally with @precision, e.g. @fp8). Config files are not read by the server: "
        "send model_spec (the Python client resolves config files for you)", "model")


def instance_dict_from_proto(msg: pb.Instance) -> dict[str, Any]:
    """The instance-file dict of an ``Instance`` message, before validation."""
    data = message_to_dict(msg)
    if isinstance(data.get("model"), str):
        _check_model_preset(data["model"])
    return data


def instance_from_proto(msg: pb.Instance) -> Instance:
    """Validate an ``Instance`` message exactly as an instance file (raises InputError)."""
    return instance_from_dict(instance_dict_from_proto(msg))


def plan_from_proto(msg: pb.Plan) -> Plan:
    return plan_from_dict(message_to_dict(msg))


def check_request(msg: Message) -> None:
    """Refuse unknown fields of the request message itself (its sub-messages are checked where
    they are converted)."""
    _unknown_fields(msg, "")


def instance_to_proto(instance: Instance) -> pb.Instance:
    """An Instance as a message, with every field the user did not set left unset (so the
    server applies its defaults, e.g. its cap on ``search.time_limit_s``). Model and hardware
    are sent as explicit specs: they are already resolved."""
    return fill_message(pb.Instance(), instance.model_dump(exclude_unset=True))


def model_spec_to_proto(spec: ModelSpec) -> pb.ModelSpec:
    return fill_message(pb.ModelSpec(), spec.model_dump())


def hardware_spec_to_proto(spec: HardwareSpec) -> pb.HardwareSpec:
    return fill_message(pb.HardwareSpec(), spec.model_dump())


def plan_to_proto(plan: Plan) -> pb.Plan:
    return fill_message(pb.Plan(), plan.model_dump())


def solve_result_to_proto(result: SolveResult) -> pb.SolveResult:
    return fill_message(pb.SolveResult(), result.model_dump())


def solve_result_from_proto(msg: pb.SolveResult) -> SolveResult:
    return SolveResult.model_validate(message_to_dict(msg, strict=False))


# ----------------------------------------------------------------------------------------------
# The contract's documents: EstimateOut <-> Estimate, VerifyOut <-> VerifyResponse
# ----------------------------------------------------------------------------------------------


def _document(doc: BaseModel | dict[str, Any]) -> dict[str, Any]:
    """A document's dict without ``schema_version`` (nested documents' too): the package,
    ``moeplan.v1``, versions the messages, and reading them back restores the version."""
    data = contract.dump(doc) if isinstance(doc, BaseModel) else dict(doc)
    data.pop("schema_version", None)
    for key, value in data.items():
        if isinstance(value, dict) and "schema_version" in value:
            data[key] = _document(value)
    return data


def estimate_to_proto(doc: contract.EstimateOut | dict[str, Any]) -> pb.Estimate:
    """An estimate document (``moeplan estimate --json``) as an ``Estimate`` message."""
    return fill_message(pb.Estimate(), _document(doc))


def estimate_from_proto(msg: pb.Estimate) -> contract.EstimateOut:
    """An ``Estimate`` message as the estimate document ``moeplan estimate --json`` prints."""
    return contract.EstimateOut.model_validate(message_to_dict(msg, strict=False, nulls=True))


def verify_to_proto(doc: contract.VerifyOut | dict[str, Any]) -> pb.VerifyResponse:
    """A verify document (``moeplan verify --json``) as a ``VerifyResponse``."""
    return fill_message(pb.VerifyResponse(), _document(doc))


def verify_from_proto(msg: pb.VerifyResponse) -> contract.VerifyOut:
    """A ``VerifyResponse`` as the verify document ``moeplan verify --json`` prints."""
    return contract.VerifyOut.model_validate(message_to_dict(msg, strict=False, nulls=True))


# ----------------------------------------------------------------------------------------------
# Export and Pareto: ExportOut <-> ExportResponse, ParetoOut <-> ParetoSummary
# ----------------------------------------------------------------------------------------------


def export_to_proto(doc: contract.ExportOut) -> pb.ExportResponse:
    return fill_message(pb.ExportResponse(), _document(doc))


def export_from_proto(msg: pb.ExportResponse) -> contract.ExportOut:
    """An aggregated plan's export (a two-pool plan's is ``msg.disagg_export``,
    :func:`service.disagg.disagg_export_from_proto`)."""
    data = message_to_dict(msg, strict=False, nulls=True)
    data.pop("disagg_export", None)
    return contract.ExportOut.model_validate(data)


def pareto_point_to_proto(doc: contract.ParetoPointOut) -> pb.ParetoPoint:
    return fill_message(pb.ParetoPoint(), _document(doc))


def _pareto_plans(data: dict[str, Any], msg: pb.ParetoPoint | pb.ParetoChosen) -> dict[str, Any]:
    """A point's (or the chosen plan's) plans read as requests read them; its serving
    ("aggregated" when unset, as in messages of servers without two-pool frontiers)."""
    from solver.disagg import disagg_plan_from_dict

    data["plan"] = plan_from_proto(msg.plan) if msg.HasField("plan") else None
    data["disagg_plan"] = (disagg_plan_from_dict(message_to_dict(msg.disagg_plan, "disagg_plan"))
                           if msg.HasField("disagg_plan") else None)
    data["serving"] = data.get("serving") or "aggregated"
    return data


def pareto_point_from_proto(msg: pb.ParetoPoint) -> contract.ParetoPointOut:
    data = message_to_dict(msg, strict=False, nulls=True)
    return contract.ParetoPointOut.model_validate(_pareto_plans(data, msg))


def pareto_to_proto(doc: contract.ParetoOut) -> pb.ParetoSummary:
    data = _document(doc)
    data["instance"] = doc.instance.model_dump(exclude_unset=True)  # as instance_to_proto
    return fill_message(pb.ParetoSummary(), data)


def pareto_from_proto(msg: pb.ParetoSummary) -> contract.ParetoOut:
    data = message_to_dict(msg, strict=False, nulls=True)
    data["instance"] = instance_from_proto(msg.instance)
    data["points"] = [pareto_point_from_proto(p) for p in msg.points]
    data["serving"] = data.get("serving") or "aggregated"
    if msg.HasField("chosen"):
        data["chosen"] = _pareto_plans(data["chosen"], msg.chosen)
    return contract.ParetoOut.model_validate(data)
