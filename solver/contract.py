"""The one JSON contract: every document moeplan writes (``--json`` output, ``--out`` files, the
bench store) is one of these models, carries ``schema_version``, and validates against the JSON
Schema ``moeplan schema --what ...`` exports. Stages and placements have one representation
everywhere, the :class:`~solver.schema.Plan`'s; a plan file, ``solve --json`` and ``--out`` are
all accepted back by ``verify --plan`` and ``estimate --plan``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from solver.estimate import Evaluation
from solver.schema import Degrees, Metrics, Plan, SolveResult
from solver.verify import Report

#: Bumped on any incompatible change of a document below (2: the serving cost model).
SCHEMA_VERSION = "2.0"


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MemoryOut(_Out):
    stage: int = Field(description="The pipeline stage whose GPUs are fullest.")
    terms_gb: dict[str, float] = Field(description="Bytes per term on one GPU of that stage, GB.")
    total_gb: float
    budget_gb: float = Field(description="What the engine may allocate (its memory fraction).")
    capacity_gb: float = Field(description="HBM of the GPU.")


class TpotOut(_Out):
    slowest_stage_step_s: float
    hop_s: float
    step_overhead_s: float
    microbatches: int
    tpot_s: float


class TtftOut(_Out):
    stage: int = Field(description="The stage whose full-chunk step is slowest.")
    full_step_max_prompt_s: dict[str, float]
    round_s: float = Field(description="One trip of a microbatch through the pipeline carrying "
                           "a full prefill chunk.")
    wait_rounds: float | None = Field(description="Mean wait for the prefill queue (M/D/1).")
    own_chunks: float | None = Field(description="Rounds the prompt's own chunks take.")
    ttft_s: float


class TimeOut(_Out):
    stage: int = Field(description="The stage whose average step is slowest (sets TPOT).")
    decode_step_s: dict[str, float] = Field(description="A decode-only step of that stage.")
    full_step_s: dict[str, float] = Field(description="A step carrying a full prefill chunk.")
    average_step_s: float
    prefill_share: float | None = Field(description="Share of steps carrying a full chunk.")
    tpot: TpotOut
    ttft: TtftOut
    ttft_idle_s: dict[str, float] = Field(description="An idle instance prefilling one "
                                          "maximum-length prompt, by term.")
    sources: dict[str, str] = Field(description="Where each time term comes from: a measured "
                                    "efficiency curve (with its database) or the roofline.")


class StageOut(_Out):
    first_layer: int
    last_layer: int
    memory_gb: float
    step_ms: float
    full_step_ms: float


class EstimateOut(_Out):
    schema_version: str = SCHEMA_VERSION
    gpus: int
    degrees: Degrees
    batch: int
    redundant_experts: int
    metrics: Metrics
    placement: str = Field(description="Which expert placement was costed.")
    expert_load: str
    calibration: str = Field(description="The measured-curve set of the GPU, or 'roofline'.")
    memory: MemoryOut
    time: TimeOut
    stages: list[StageOut]


class ViolationOut(_Out):
    rule: str
    field: str
    message: str


class VerifyOut(_Out):
    schema_version: str = SCHEMA_VERSION
    valid: bool
    violations: list[ViolationOut]
    notes: list[str]
    warnings: list[str]
    estimate: EstimateOut | None


class SolveOut(SolveResult):
    schema_version: str = SCHEMA_VERSION
    estimate: EstimateOut | None = Field(None, description="The plan's estimate (None without "
                                         "a plan).")


class PlanFile(Plan):
    """A plan written by ``solve --out``."""

    schema_version: str = SCHEMA_VERSION


DOCUMENTS: dict[str, type[BaseModel]] = {
    "plan": PlanFile,
    "solve": SolveOut,
    "verify": VerifyOut,
    "estimate": EstimateOut,
}


def estimate_out(ev: Evaluation, expert_load: str, calibration: str) -> EstimateOut:
    b = ev.breakdown
    return EstimateOut(
        gpus=ev.gpus, degrees=ev.grid.degrees(ev.replicas), batch=ev.batch,
        redundant_experts=ev.redundant, metrics=ev.metrics, placement=ev.placement_source,
        expert_load=expert_load, calibration=calibration,
        memory=MemoryOut(**b["memory"]),
        time=TimeOut(**{**b["time"], "tpot": TpotOut(**b["time"]["tpot"]),
                        "ttft": TtftOut(**b["time"]["ttft"])}),
        stages=[StageOut(**s) for s in b["stages"]],
    )


def verify_out(report: Report, estimate: EstimateOut | None) -> VerifyOut:
    return VerifyOut(
        valid=report.valid,
        violations=[ViolationOut(rule=v.rule, field=v.field, message=v.message)
                    for v in report.violations],
        notes=report.notes, warnings=report.warnings, estimate=estimate)


def solve_out(result: SolveResult, estimate: EstimateOut | None) -> SolveOut:
    return SolveOut(**dict(result), estimate=estimate)


def plan_file(plan: Plan) -> PlanFile:
    return PlanFile(**dict(plan))


def dump(doc: BaseModel) -> dict[str, Any]:
    """The JSON-ready form (None fields kept: the schema lists them)."""
    return doc.model_dump(mode="json")


def json_schema(what: str) -> dict[str, Any]:
    return DOCUMENTS[what].model_json_schema()
