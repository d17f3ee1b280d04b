"""Two-pool (disaggregated) plans at the edge of the service: protobuf <-> the schema and the
contract's documents, and what Verify, Estimate and Solve answer for them. The conversions are
the generic ones of :mod:`service.convert`; this module only names the messages."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from service import convert
from service._gen.moeplan.v1 import planner_pb2 as pb
from solver import contract
from solver.instance import InputError
from solver.schema import DisaggPlan, Instance


def _without_version(doc: BaseModel | dict[str, Any]) -> dict[str, Any]:
    data = contract.dump(doc) if isinstance(doc, BaseModel) else dict(doc)
    data.pop("schema_version", None)
    return data


def disagg_plan_from_proto(msg: pb.DisaggPlan) -> DisaggPlan:
    from solver.disagg import disagg_plan_from_dict

    return disagg_plan_from_dict(convert.message_to_dict(msg, "disagg_plan"))


def disagg_plan_to_proto(plan: DisaggPlan) -> pb.DisaggPlan:
    return convert.fill_message(pb.DisaggPlan(), plan.model_dump())


def disagg_estimate_to_proto(doc: contract.DisaggEstimateOut | dict[str, Any]
                             ) -> pb.DisaggEstimate:
    return convert.fill_message(pb.DisaggEstimate(), _without_version(doc))


def disagg_estimate_from_proto(msg: pb.DisaggEstimate) -> contract.DisaggEstimateOut:
    return contract.DisaggEstimateOut.model_validate(
        convert.message_to_dict(msg, strict=False, nulls=True))


def disagg_export_to_proto(doc: contract.DisaggExportOut | dict[str, Any]) -> pb.DisaggExport:
    return convert.fill_message(pb.DisaggExport(), _without_version(doc))


def disagg_export_from_proto(msg: pb.DisaggExport) -> contract.DisaggExportOut:
    return contract.DisaggExportOut.model_validate(
        convert.message_to_dict(msg, strict=False, nulls=True))


def requested_plan(request: pb.VerifyRequest | pb.EstimateRequest, instance: Instance
                   ) -> DisaggPlan | None:
    """The two-pool plan a Verify/Estimate request asks about (its ``disagg_plan``, else the
    instance's ``claimed_disagg_plan`` when there is no plan and no aggregated claim), or None
    for an aggregated plan."""
    if request.HasField("disagg_plan"):
        if request.HasField("plan"):
            raise InputError("disagg_plan: give plan or disagg_plan, not both", "disagg_plan")
        return disagg_plan_from_proto(request.disagg_plan)
    if not request.HasField("plan") and instance.claimed_disagg_plan is not None and (
            instance.claimed_plan is None or instance.serving != "aggregated"):
        return instance.claimed_disagg_plan
    return None


def _needs_rate(instance: Instance) -> None:
    if instance.workload.targets.min_output_tokens_per_s is None:
        raise InputError("workload.targets.min_output_tokens_per_s: required to cost a two-pool "
                         "plan (both pools are sized for the request rate it implies)",
                         "workload.targets.min_output_tokens_per_s")


def estimate_message(instance: Instance, plan: DisaggPlan) -> pb.DisaggEstimate:
    from solver import disagg

    _needs_rate(instance)
    return disagg_estimate_to_proto(contract.disagg_estimate_document(
        instance, disagg.evaluate(instance, plan)))


def verify_response(instance: Instance, plan: DisaggPlan) -> pb.VerifyResponse:
    from solver import disagg

    _needs_rate(instance)
    report = disagg.verify(instance, plan)
    doc = contract.verify_out(report, None).model_copy(update={
        "disagg_estimate": contract.disagg_estimate_document(instance, report.evaluation)})
    return convert.verify_to_proto(doc)
