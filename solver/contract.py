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
from solver.schema import Degrees, Instance, Metrics, Plan, SolveResult
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
    placement_source: str = Field(description="Which expert placement was costed (the plan's "
                                  "own, or the EPLB default of its slots).")
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


class AttentionSummary(_Out):
    kind: str = Field(description="'gqa' or 'mla'.")
    num_heads: int
    num_kv_heads: int
    head_dim: int
    sliding_window: int | None
    num_sliding_layers: int
    q_lora_rank: int | None = Field(None, description="MLA only.")
    kv_lora_rank: int | None = Field(None, description="MLA only.")
    qk_nope_head_dim: int | None = Field(None, description="MLA only.")
    qk_rope_head_dim: int | None = Field(None, description="MLA only.")
    v_head_dim: int | None = Field(None, description="MLA only.")


class ModelOut(_Out):
    """``moeplan model --json``: architecture, parameter counts, weight and KV-cache bytes."""

    schema_version: str = SCHEMA_VERSION

    name: str
    num_layers: int
    num_dense_layers: int
    num_moe_layers: int
    hidden_size: int
    attention: AttentionSummary
    dense_ffn_width: int
    num_experts: int
    top_k: int
    expert_ffn_width: int
    num_shared_experts: int
    shared_expert_width: int
    vocab_size: int
    tie_embeddings: bool
    weight_precision: str
    expert_precision: str
    kv_precision: str
    weight_block_size: int | None
    total_params: int
    active_params: int
    routed_expert_params: int
    declared_total_params: int | None
    weight_bytes: int = Field(description="Routed experts at the expert precision, the rest at "
                              "the weight precision.")
    kv_bytes_per_token: float
    warning: str | None = Field(description="A declared parameter count that disagrees with "
                                "the architecture.")


class ModelPresetOut(_Out):
    name: str
    total_params: int
    active_params: int
    published_total_params: int | None
    num_experts: int
    top_k: int
    weight_precision: str
    expert_precision: str


class HardwarePresetOut(_Out):
    name: str
    hbm_gb: float
    hbm_tb_s: float
    tflops_bf16: float | None
    tflops_fp8: float | None
    gpus_per_node: int


class PresetsOut(_Out):
    """``moeplan presets --json``: the bundled model and hardware presets."""

    schema_version: str = SCHEMA_VERSION

    models: list[ModelPresetOut]
    hardware: list[HardwarePresetOut]


DOCUMENTS: dict[str, type[BaseModel]] = {
    "plan": PlanFile,
    "solve": SolveOut,
    "verify": VerifyOut,
    "estimate": EstimateOut,
    "model": ModelOut,
    "presets": PresetsOut,
}


def estimate_out(ev: Evaluation, expert_load: str, calibration: str) -> EstimateOut:
    b = ev.breakdown
    return EstimateOut(
        gpus=ev.gpus, degrees=ev.grid.degrees(ev.replicas), batch=ev.batch,
        redundant_experts=ev.redundant, metrics=ev.metrics, placement_source=ev.placement_source,
        expert_load=expert_load, calibration=calibration,
        memory=MemoryOut(**b["memory"]),
        time=TimeOut(**{**b["time"], "tpot": TpotOut(**b["time"]["tpot"]),
                        "ttft": TtftOut(**b["time"]["ttft"])}),
        stages=[StageOut(**s) for s in b["stages"]],
    )


def estimate_document(instance: Instance, ev: Evaluation) -> EstimateOut:
    """The estimate document of an evaluated plan: what ``estimate --json``, ``verify --json``,
    ``solve --json`` and the gRPC service return."""
    from solver.calibration import load_calibration
    from solver.loads import describe

    cal = load_calibration(instance.hardware.name)
    return estimate_out(
        ev, describe(instance.expert_load, instance.model),
        cal.source if cal is not None else "roofline (no measured curves for this GPU)")


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
