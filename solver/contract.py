"""The one JSON contract: every document moeplan writes (``--json`` output, ``--out`` files, the
bench store) is one of these models, carries ``schema_version``, and validates against the JSON
Schema ``moeplan schema --what ...`` exports. Stages and placements have one representation
everywhere, the :class:`~solver.schema.Plan`'s; a plan file, ``solve --json`` and ``--out`` are
all accepted back by ``verify --plan`` and ``estimate --plan``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from solver.estimate import Evaluation
from solver.schema import (
    Degrees,
    DisaggMetrics,
    DisaggPlan,
    Instance,
    Metrics,
    Plan,
    SolveResult,
)
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
    disagg_estimate: DisaggEstimateOut | None = Field(
        None, description="The two-pool plan's estimate, when a disaggregated plan was checked.")


class SolveOut(SolveResult):
    schema_version: str = SCHEMA_VERSION
    estimate: EstimateOut | None = Field(None, description="The plan's estimate (None without "
                                         "a plan).")
    disagg_estimate: DisaggEstimateOut | None = Field(
        None, description="The two-pool plan's estimate (serving: disaggregated answers).")


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


class LaunchOut(_Out):
    """One node's part of one serving instance."""

    replica: int = Field(description="Which identical instance (0 .. replicas-1).")
    node: int = Field(description="Node of the instance (0 is the head).")
    gpus: int = Field(description="GPUs of the instance on this node.")
    command: list[str] = Field(description="The command line, one argument per item; "
                               "${HEAD_ADDR} is the address of the instance's node 0.")
    env: dict[str, str] = Field(description="Environment the command needs.")
    script: str = Field(description="The file the launch script is written to with --out.")


class ExportOut(_Out):
    """``moeplan export --json``: the launch commands and files of a plan for one engine."""

    schema_version: str = SCHEMA_VERSION
    engine: str
    engine_version: str = Field(description="The engine version whose options are emitted.")
    flags_source: str = Field(description="Where that version's option list was read.")
    model_path: str = Field(description="What the engine loads (a Hugging Face id or a path).")
    degrees: Degrees
    batch: int
    redundant_experts: int
    nodes_per_instance: int
    gpus_per_node: int = Field(description="GPUs of an instance on each of its nodes.")
    placement: str = Field(description="How the engine gets the plan's expert placement.")
    settings: dict[str, str] = Field(description="Each cost-model setting and the engine option "
                                     "that sets it.")
    launches: list[LaunchOut]
    files: dict[str, str] = Field(description="Files the commands read (name -> content).")
    caveats: list[str] = Field(description="Where the engine will not run exactly as costed.")


class PoolExportOut(_Out):
    """One pool of a two-pool export: its instances' launch commands and the files they read
    (paths relative to the pool's directory, ``prefill/`` or ``decode/``)."""

    pool: Literal["prefill", "decode"]
    degrees: Degrees
    batch: int = Field(description="Sequences one instance holds: the decode pool's batch; for "
                       "the prefill pool, the prompts in flight (pp microbatches of dp ranks).")
    tokens_per_step: int | None = Field(None, description="Prefill pool: prompt tokens each "
                                        "attention-DP rank prefills per step.")
    redundant_experts: int
    nodes_per_instance: int
    gpus_per_node: int = Field(description="GPUs of an instance on each of its nodes.")
    placement: str = Field(description="How the engine gets the pool's expert placement.")
    settings: dict[str, str] = Field(description="Each cost-model setting and the engine option "
                                     "that sets it, for this pool.")
    launches: list[LaunchOut]
    files: dict[str, str] = Field(description="Files the pool's commands read (name -> "
                                  "content), written to the pool's directory.")


class DisaggExportOut(_Out):
    """``moeplan export --json`` of a two-pool plan: each pool's launch commands and files,
    what connects them (the KV transfer settings and the front that routes each request from a
    prefill instance to a decode instance), and the caveats of the pair."""

    schema_version: str = SCHEMA_VERSION
    serving: Literal["disaggregated"] = "disaggregated"
    engine: str
    engine_version: str = Field(description="The engine version whose options are emitted.")
    flags_source: str = Field(description="Where that version's option list was read.")
    model_path: str = Field(description="What the engine loads (a Hugging Face id or a path).")
    kv_transfer: Literal["layerwise", "after_prefill"] = Field(
        description="What the cost model assumed of the KV transfer "
        "(disaggregation.kv_transfer).")
    kv_backend: str = Field(description="The KV transfer backend the pools are started with.")
    prefill: PoolExportOut
    decode: PoolExportOut
    connect: dict[str, str] = Field(description="What connects the pools: each setting and the "
                                    "option (or program) that sets it.")
    router: list[LaunchOut] = Field(description="The front that sends each request to a prefill "
                                    "and a decode instance (empty when the engine ships none).")
    files: dict[str, str] = Field(description="Files the front reads (name -> content; "
                                  "${...} are filled in from the environment at launch).")
    caveats: list[str] = Field(description="Where the engines will not run exactly as costed.")


class ParetoPointOut(_Out):
    """One point of a frontier: a plan proved optimal for its constraint."""

    index: int
    serving: Literal["aggregated", "disaggregated"] = Field(
        "aggregated", description="Which frontier the point is on: one aggregated pool (plan) or "
        "a prefill and a decode pool (disagg_plan).")
    plan: Plan | None = Field(None, description="The aggregated plan (aggregated points).")
    disagg_plan: DisaggPlan | None = Field(None, description="The two-pool plan "
                                           "(disaggregated points).")
    gpus: int = Field(description="Total GPUs of the plan (replicas, and both pools, included).")
    batch: int = Field(description="Concurrent sequences per instance (disaggregated: per "
                       "decode instance).")
    output_tokens_per_s_per_gpu: float
    tokens_per_s_per_user: float
    tpot_s: float
    ttft_s: float
    constraint: str = Field(description="What the point is optimal under, e.g. 'TPOT <= 42 ms'.")
    proved: bool = Field(description="The optimum is proved (not cut short by the time limit).")


class ChosenOut(_Out):
    """The planner's answer to the instance itself (``moeplan solve``), placed on the chart."""

    serving: Literal["aggregated", "disaggregated"] = Field(
        "aggregated", description="Which kind of plan the planner answered with.")
    plan: Plan | None = Field(None, description="The aggregated plan (aggregated answers).")
    disagg_plan: DisaggPlan | None = Field(None, description="The two-pool plan "
                                           "(disaggregated answers).")
    gpus: int
    output_tokens_per_s_per_gpu: float
    tokens_per_s_per_user: float
    ttft_s: float
    on_frontier: int | None = Field(None, description="The point it is, if any (a point of "
                                    "its own serving).")
    dominated_by: int | None = Field(None, description="A point at least as good on both axes "
                                     "and better on one, if any (one of its own serving "
                                     "first).")


class ParetoOut(_Out):
    """``moeplan pareto --json``: a frontier, each point optimal for its constraint."""

    schema_version: str = SCHEMA_VERSION
    frontier: str = Field(description="'rate': tokens/s per GPU against tokens/s per user; "
                          "'gpus': GPUs against TTFT.")
    serving: Literal["aggregated", "disaggregated", "both"] = Field(
        "aggregated", description="Which frontiers the points are on (each point's serving "
        "says which): aggregated plans, two-pool plans (tokens/s per GPU at the planned rate: "
        "the total-rate target over the pair's GPUs), or both.")
    objective: str = Field(description="What each point optimises, under which constraint.")
    instance: Instance = Field(description="The instance the points are plans of (the rate "
                               "frontier frees the batch): pass it to verify and export.")
    points: list[ParetoPointOut]
    chosen: ChosenOut | None
    complete: bool = Field(description="The steps ended on their own (no plan beyond the last "
                           "point, or the point limit), not by the time limit.")
    stopped: str
    solve_time_s: float


class PoolStageOut(_Out):
    first_layer: int
    last_layer: int
    memory_gb: float
    step_ms: float = Field(description="The stage's step (decode: decode-only; prefill: a step "
                           "of typical prompts).")
    full_step_ms: float = Field(description="Prefill: a step carrying a maximum-length prompt "
                                "(decode: the step).")


class PoolOut(_Out):
    """One pool of a disaggregated plan, as the cost model sees it."""

    pool: Literal["prefill", "decode"]
    gpus: int
    degrees: Degrees
    redundant_experts: int
    batch: int | None = Field(None, description="Decode: concurrent sequences per instance.")
    tokens_per_step: int | None = Field(None, description="Prefill: prompt tokens per "
                                        "attention-DP rank and step.")
    placement_source: str
    peak_memory_gb: float
    memory_budget_gb: float
    slowest_stage_step_s: float
    hop_s: float
    step_overhead_s: float
    capacity: float = Field(description="What the pool sustains (capacity_unit).")
    capacity_unit: str
    utilization: float = Field(description="The planned rate over the capacity.")
    gpus_holding_kv: int = Field(description="GPUs of an instance holding distinct parts of a "
                                 "request's KV cache (each sends or receives over its own link).")
    step_terms_s: dict[str, float] = Field(description="The slowest stage's step, by term.")
    stages: list[PoolStageOut]


class TransferOut(_Out):
    """The KV-cache transfer of one maximum-length prompt from prefill to decode."""

    bytes_per_request: float
    streams: int = Field(description="Inter-node links used in parallel.")
    link_gb_s: float = Field(description="Achievable bandwidth of one link, GB/s.")
    latency_s: float
    total_s: float = Field(description="The whole transfer, were nothing overlapped.")
    exposed_s: float = Field(description="What TTFT pays: the part not hidden behind the "
                             "prefill, plus the latency.")
    overlap: str


class DisaggTtftOut(_Out):
    queue_wait_s: float = Field(description="Mean wait for a prefill server (M/D/1).")
    prefill_s: float = Field(description="The prompt's own prefill rounds.")
    kv_transfer_s: float
    ttft_s: float
    load: float = Field(description="Prefill utilisation ρ.")
    round_s: float = Field(description="One round: a step carrying the prompt, every stage.")
    rounds: int = Field(description="Rounds of the prompt's own prefill.")
    queue_model: str


class DisaggEstimateOut(_Out):
    """``moeplan estimate --json`` of a two-pool plan (``serving: disaggregated``)."""

    schema_version: str = SCHEMA_VERSION
    serving: Literal["disaggregated"] = "disaggregated"
    gpus: int
    request_rate_per_s: float = Field(description="The planned request rate (λ).")
    metrics: DisaggMetrics
    prefill: PoolOut
    decode: PoolOut
    kv_transfer: TransferOut
    ttft: DisaggTtftOut
    expert_load: str
    calibration: str


class DisaggPlanFile(DisaggPlan):
    """A two-pool plan written by ``solve --out`` (serving: disaggregated)."""

    schema_version: str = SCHEMA_VERSION


DOCUMENTS: dict[str, type[BaseModel]] = {
    "plan": PlanFile,
    "solve": SolveOut,
    "verify": VerifyOut,
    "estimate": EstimateOut,
    "model": ModelOut,
    "presets": PresetsOut,
    "disagg-plan": DisaggPlanFile,
    "disagg-estimate": DisaggEstimateOut,
    "export": ExportOut,
    "disagg-export": DisaggExportOut,
    "pareto": ParetoOut,
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


def disagg_estimate_document(instance: Instance, ev: Any) -> DisaggEstimateOut:
    """The estimate document of an evaluated two-pool plan (:class:`solver.disagg.
    DisaggEvaluation`): what ``estimate --json``, ``verify --json``, ``solve --json`` and the
    gRPC service return for one."""
    from solver.calibration import load_calibration
    from solver.loads import describe

    b = ev.breakdown
    cal = load_calibration(instance.hardware.name)
    return DisaggEstimateOut(
        gpus=ev.gpus, request_rate_per_s=float(ev.request_rate), metrics=ev.metrics,
        prefill=PoolOut(**{**b["prefill"], "stages": [PoolStageOut(**x)
                                                      for x in b["prefill"]["stages"]]}),
        decode=PoolOut(**{**b["decode"], "stages": [PoolStageOut(**x)
                                                    for x in b["decode"]["stages"]]}),
        kv_transfer=TransferOut(**b["kv_transfer"]), ttft=DisaggTtftOut(**b["ttft"]),
        expert_load=describe(instance.expert_load, instance.model),
        calibration=cal.source if cal is not None else "roofline (no measured curves for this "
        "GPU)")


def disagg_plan_file(plan: DisaggPlan) -> DisaggPlanFile:
    return DisaggPlanFile(**dict(plan))
