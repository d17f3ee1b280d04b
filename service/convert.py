"""protobuf <-> pydantic at the edge of the service.

The messages of ``protos/moeplan/v1/planner.proto`` use the schema's field names, so one generic
walk converts a message into the plain dict an instance file would hold (and back); the few
places where protobuf cannot say what the schema says (oneofs for ``model``/``hardware``/
``batch``, enums for literals, lists of lists, maps keyed by an enum) have one small hook each in
:data:`_TO_DICT` / :data:`_FROM_DICT`.

Input direction: a field left unset (proto3 ``optional`` without a value, an empty repeated
field, enum value 0) is left out of the dict, so the schema's default applies and a missing
required field is reported by pydantic exactly as for an instance file. The dict then goes
through :func:`solver.instance.instance_from_dict`, the CLI's own validation.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

from service._gen.moeplan.v1 import planner_pb2 as pb
from solver.instance import InputError, instance_from_dict, plan_from_dict
from solver.presets import MODEL_PRESETS, model_preset_names
from solver.schema import HardwareSpec, Instance, ModelSpec, Plan, SolveResult

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


def _literal_to_enum(enum: EnumDescriptor, literal: str) -> int:
    value = enum.values_by_name.get(_enum_prefix(enum) + str(literal).upper())
    if value is None:
        raise ValueError(f"{enum.name} has no value for {literal!r}")
    return value.number


# ----------------------------------------------------------------------------------------------
# Message -> dict
# ----------------------------------------------------------------------------------------------


def _scalar_to_py(field: FieldDescriptor, value: Any, path: str) -> Any:
    if field.type == FieldDescriptor.TYPE_ENUM:
        if value and value not in field.enum_type.values_by_number:
            # proto3 enums are open: a number this server does not know must not silently
            # become "unset" (and the default precision, say).
            names = ", ".join(v.name for v in field.enum_type.values if v.number)
            raise InputError(f"{path}: unknown {field.enum_type.name} value {value} "
                             f"(known: {names})", path)
        return _enum_to_literal(field.enum_type, value)
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return message_to_dict(value, path)
    return value


def message_to_dict(msg: Message, path: str = "") -> Any:
    """A message as the dict the schema reads, leaving out every field that is not set.
    ``path`` is where the message sits in the request, for error messages."""
    out: dict[str, Any] = {}
    for field in msg.DESCRIPTOR.fields:
        value = getattr(msg, field.name)
        where = f"{path}.{field.name}" if path else field.name
        if field.is_repeated:
            if not value:
                continue
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                value_field = field.message_type.fields_by_name["value"]
                out[field.name] = {k: _scalar_to_py(value_field, v, f"{where}[{k}]")
                                   for k, v in value.items()}
            else:
                out[field.name] = [_scalar_to_py(field, v, f"{where}[{i}]")
                                   for i, v in enumerate(value)]
            continue
        if field.has_presence and not msg.HasField(field.name):
            continue
        converted = _scalar_to_py(field, value, where)
        if converted is not None:
            out[field.name] = converted
    hook = _TO_DICT.get(msg.DESCRIPTOR.full_name)
    return hook(out) if hook else out


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


#: Per-message rewrites applied after the generic walk (protobuf shape -> schema shape).
_TO_DICT: dict[str, Callable[[dict[str, Any]], Any]] = {
    "moeplan.v1.Instance": _instance_to_dict,
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


#: Per-message rewrites applied before the generic fill (schema shape -> protobuf shape).
_FROM_DICT: dict[str, Callable[[Any], dict[str, Any]]] = {
    "moeplan.v1.Instance": _instance_from_dict,
    "moeplan.v1.Workload": _workload_from_dict,
    "moeplan.v1.HardwareSpec": _hardware_from_dict,
    "moeplan.v1.ExpertCounts": lambda row: {"tokens": list(row)},
    "moeplan.v1.RankExperts": lambda rank: {"experts": list(rank)},
}


def _py_to_scalar(field: FieldDescriptor, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_ENUM:
        return _literal_to_enum(field.enum_type, value)
    return value


def fill_message(msg: Message, data: Any) -> Message:
    """Set the fields of ``msg`` from a schema-shaped dict (``None`` values are left unset)."""
    desc: Descriptor = msg.DESCRIPTOR
    hook = _FROM_DICT.get(desc.full_name)
    if hook:
        data = hook(data)
    for key, value in data.items():
        if value is None:
            continue
        field = desc.fields_by_name.get(key)
        if field is None:
            raise ValueError(f"{desc.name} has no field {key!r}")
        target = getattr(msg, key) if field.is_repeated or field.message_type else None
        if field.is_repeated:
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                value_field = field.message_type.fields_by_name["value"]
                for k, v in value.items():
                    if value_field.message_type is not None:
                        fill_message(target[k], v)
                    else:
                        target[k] = _py_to_scalar(value_field, v)
            elif field.message_type is not None:
                for item in value:
                    fill_message(target.add(), item)
            else:
                target.extend(_py_to_scalar(field, v) for v in value)
        elif field.message_type is not None:
            target.SetInParent()
            fill_message(target, value)
        else:
            setattr(msg, key, _py_to_scalar(field, value))
    return msg


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
    return SolveResult.model_validate(message_to_dict(msg))


# ----------------------------------------------------------------------------------------------
# Estimates: Evaluation.to_dict() (the CLI's --json layout) <-> Estimate
# ----------------------------------------------------------------------------------------------

_MEMORY_META = ("total", "stage")
_TIME_SCALARS = {"decode_stage": "decode_stage", "tpot": "tpot_s", "microbatches": "microbatches",
                 "prefill_per_cycle": "prefill_per_cycle_s", "cycle": "cycle_s"}


def estimate_to_proto(doc: dict[str, Any]) -> pb.Estimate:
    """``Evaluation.to_dict()`` as an ``Estimate`` message."""
    memory, time = doc["memory"], doc["time"]
    ttft, step = time["ttft"], time["decode_step_slowest_stage"]
    msg = pb.Estimate(
        gpus=doc["gpus"],
        batch=doc["batch"],
        memory=pb.MemoryBreakdown(
            terms_gb={k: v for k, v in memory.items() if k not in _MEMORY_META},
            total_gb=memory["total"], stage=memory["stage"]),
        time=pb.TimeBreakdown(
            ttft_terms_s={k: v for k, v in ttft.items() if k != "total"},
            ttft_s=ttft["total"],
            decode_step_terms_s={k: v for k, v in step.items() if k != "total"},
            decode_step_s=step["total"],
            **{name: time[key] for key, name in _TIME_SCALARS.items()}),
        stages=[pb.StageEstimate(**stage) for stage in doc["stages"]],
    )
    fill_message(msg.degrees, doc["degrees"])
    fill_message(msg.metrics, doc["metrics"])
    return msg


def estimate_from_proto(msg: pb.Estimate) -> dict[str, Any]:
    """An ``Estimate`` message back in the ``Evaluation.to_dict()`` layout."""
    t = msg.time
    return {
        "gpus": msg.gpus,
        "degrees": message_to_dict(msg.degrees),
        "batch": msg.batch,
        "metrics": message_to_dict(msg.metrics),
        "memory": {**dict(msg.memory.terms_gb), "total": msg.memory.total_gb,
                   "stage": msg.memory.stage},
        "time": {
            "ttft": {**dict(t.ttft_terms_s), "total": t.ttft_s},
            "decode_step_slowest_stage": {**dict(t.decode_step_terms_s),
                                          "total": t.decode_step_s},
            **{key: getattr(t, name) for key, name in _TIME_SCALARS.items()},
        },
        "stages": [message_to_dict(s) for s in msg.stages],
    }


def report_to_proto(doc: dict[str, Any]) -> pb.VerifyResponse:
    """``Report.to_dict()`` as a ``VerifyResponse``."""
    msg = pb.VerifyResponse(
        valid=doc["valid"],
        violations=[pb.Violation(**v) for v in doc["violations"]],
        notes=doc["notes"],
        warnings=doc["warnings"],
    )
    if doc.get("estimate") is not None:
        msg.estimate.CopyFrom(estimate_to_proto(doc["estimate"]))
    return msg


def report_from_proto(msg: pb.VerifyResponse) -> dict[str, Any]:
    """A ``VerifyResponse`` in the ``Report.to_dict()`` layout (``moeplan verify --json``)."""
    return {
        "valid": msg.valid,
        "violations": [{"rule": v.rule, "field": v.field, "message": v.message}
                       for v in msg.violations],
        "notes": list(msg.notes),
        "warnings": list(msg.warnings),
        "estimate": estimate_from_proto(msg.estimate) if msg.HasField("estimate") else None,
    }
