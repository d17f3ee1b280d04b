from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Precision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PRECISION_UNSPECIFIED: _ClassVar[Precision]
    PRECISION_FP32: _ClassVar[Precision]
    PRECISION_BF16: _ClassVar[Precision]
    PRECISION_FP16: _ClassVar[Precision]
    PRECISION_FP8: _ClassVar[Precision]
    PRECISION_INT8: _ClassVar[Precision]
    PRECISION_MXFP4: _ClassVar[Precision]
    PRECISION_FP4: _ClassVar[Precision]
    PRECISION_INT4: _ClassVar[Precision]

class AttentionKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ATTENTION_KIND_UNSPECIFIED: _ClassVar[AttentionKind]
    ATTENTION_KIND_GQA: _ClassVar[AttentionKind]
    ATTENTION_KIND_MLA: _ClassVar[AttentionKind]

class ExpertLoadKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXPERT_LOAD_KIND_UNSPECIFIED: _ClassVar[ExpertLoadKind]
    EXPERT_LOAD_KIND_UNIFORM: _ClassVar[ExpertLoadKind]
    EXPERT_LOAD_KIND_POWER_LAW: _ClassVar[ExpertLoadKind]
    EXPERT_LOAD_KIND_MEASURED: _ClassVar[ExpertLoadKind]

class EngineName(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENGINE_NAME_UNSPECIFIED: _ClassVar[EngineName]
    ENGINE_NAME_VLLM: _ClassVar[EngineName]
    ENGINE_NAME_SGLANG: _ClassVar[EngineName]
    ENGINE_NAME_TRTLLM: _ClassVar[EngineName]

class EngineOverlap(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENGINE_OVERLAP_UNSPECIFIED: _ClassVar[EngineOverlap]
    ENGINE_OVERLAP_NONE: _ClassVar[EngineOverlap]
    ENGINE_OVERLAP_TWO_BATCH: _ClassVar[EngineOverlap]

class SolveStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SOLVE_STATUS_UNSPECIFIED: _ClassVar[SolveStatus]
    SOLVE_STATUS_OPTIMAL: _ClassVar[SolveStatus]
    SOLVE_STATUS_FEASIBLE: _ClassVar[SolveStatus]
    SOLVE_STATUS_INFEASIBLE: _ClassVar[SolveStatus]
    SOLVE_STATUS_UNKNOWN: _ClassVar[SolveStatus]

class Frontier(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FRONTIER_UNSPECIFIED: _ClassVar[Frontier]
    FRONTIER_RATE: _ClassVar[Frontier]
    FRONTIER_GPUS: _ClassVar[Frontier]

class FrontierServing(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FRONTIER_SERVING_UNSPECIFIED: _ClassVar[FrontierServing]
    FRONTIER_SERVING_AGGREGATED: _ClassVar[FrontierServing]
    FRONTIER_SERVING_DISAGGREGATED: _ClassVar[FrontierServing]
    FRONTIER_SERVING_BOTH: _ClassVar[FrontierServing]

class ServingMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SERVING_MODE_UNSPECIFIED: _ClassVar[ServingMode]
    SERVING_MODE_AGGREGATED: _ClassVar[ServingMode]
    SERVING_MODE_DISAGGREGATED: _ClassVar[ServingMode]
    SERVING_MODE_BEST: _ClassVar[ServingMode]

class KvTransfer(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    KV_TRANSFER_UNSPECIFIED: _ClassVar[KvTransfer]
    KV_TRANSFER_LAYERWISE: _ClassVar[KvTransfer]
    KV_TRANSFER_AFTER_PREFILL: _ClassVar[KvTransfer]

class Pool(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    POOL_UNSPECIFIED: _ClassVar[Pool]
    POOL_PREFILL: _ClassVar[Pool]
    POOL_DECODE: _ClassVar[Pool]
PRECISION_UNSPECIFIED: Precision
PRECISION_FP32: Precision
PRECISION_BF16: Precision
PRECISION_FP16: Precision
PRECISION_FP8: Precision
PRECISION_INT8: Precision
PRECISION_MXFP4: Precision
PRECISION_FP4: Precision
PRECISION_INT4: Precision
ATTENTION_KIND_UNSPECIFIED: AttentionKind
ATTENTION_KIND_GQA: AttentionKind
ATTENTION_KIND_MLA: AttentionKind
EXPERT_LOAD_KIND_UNSPECIFIED: ExpertLoadKind
EXPERT_LOAD_KIND_UNIFORM: ExpertLoadKind
EXPERT_LOAD_KIND_POWER_LAW: ExpertLoadKind
EXPERT_LOAD_KIND_MEASURED: ExpertLoadKind
ENGINE_NAME_UNSPECIFIED: EngineName
ENGINE_NAME_VLLM: EngineName
ENGINE_NAME_SGLANG: EngineName
ENGINE_NAME_TRTLLM: EngineName
ENGINE_OVERLAP_UNSPECIFIED: EngineOverlap
ENGINE_OVERLAP_NONE: EngineOverlap
ENGINE_OVERLAP_TWO_BATCH: EngineOverlap
SOLVE_STATUS_UNSPECIFIED: SolveStatus
SOLVE_STATUS_OPTIMAL: SolveStatus
SOLVE_STATUS_FEASIBLE: SolveStatus
SOLVE_STATUS_INFEASIBLE: SolveStatus
SOLVE_STATUS_UNKNOWN: SolveStatus
FRONTIER_UNSPECIFIED: Frontier
FRONTIER_RATE: Frontier
FRONTIER_GPUS: Frontier
FRONTIER_SERVING_UNSPECIFIED: FrontierServing
FRONTIER_SERVING_AGGREGATED: FrontierServing
FRONTIER_SERVING_DISAGGREGATED: FrontierServing
FRONTIER_SERVING_BOTH: FrontierServing
SERVING_MODE_UNSPECIFIED: ServingMode
SERVING_MODE_AGGREGATED: ServingMode
SERVING_MODE_DISAGGREGATED: ServingMode
SERVING_MODE_BEST: ServingMode
KV_TRANSFER_UNSPECIFIED: KvTransfer
KV_TRANSFER_LAYERWISE: KvTransfer
KV_TRANSFER_AFTER_PREFILL: KvTransfer
POOL_UNSPECIFIED: Pool
POOL_PREFILL: Pool
POOL_DECODE: Pool

class SolveRequest(_message.Message):
    __slots__ = ("instance", "time_limit_s", "workers")
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    TIME_LIMIT_S_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    instance: Instance
    time_limit_s: float
    workers: int
    def __init__(self, instance: _Optional[_Union[Instance, _Mapping]] = ..., time_limit_s: _Optional[float] = ..., workers: _Optional[int] = ...) -> None: ...

class SolveResponse(_message.Message):
    __slots__ = ("result", "estimate", "disagg_estimate")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ESTIMATE_FIELD_NUMBER: _ClassVar[int]
    DISAGG_ESTIMATE_FIELD_NUMBER: _ClassVar[int]
    result: SolveResult
    estimate: Estimate
    disagg_estimate: DisaggEstimate
    def __init__(self, result: _Optional[_Union[SolveResult, _Mapping]] = ..., estimate: _Optional[_Union[Estimate, _Mapping]] = ..., disagg_estimate: _Optional[_Union[DisaggEstimate, _Mapping]] = ...) -> None: ...

class SolveStreamResponse(_message.Message):
    __slots__ = ("final", "result", "estimate", "disagg_estimate")
    FINAL_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ESTIMATE_FIELD_NUMBER: _ClassVar[int]
    DISAGG_ESTIMATE_FIELD_NUMBER: _ClassVar[int]
    final: bool
    result: SolveResult
    estimate: Estimate
    disagg_estimate: DisaggEstimate
    def __init__(self, final: _Optional[bool] = ..., result: _Optional[_Union[SolveResult, _Mapping]] = ..., estimate: _Optional[_Union[Estimate, _Mapping]] = ..., disagg_estimate: _Optional[_Union[DisaggEstimate, _Mapping]] = ...) -> None: ...

class VerifyRequest(_message.Message):
    __slots__ = ("instance", "plan", "disagg_plan")
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    DISAGG_PLAN_FIELD_NUMBER: _ClassVar[int]
    instance: Instance
    plan: Plan
    disagg_plan: DisaggPlan
    def __init__(self, instance: _Optional[_Union[Instance, _Mapping]] = ..., plan: _Optional[_Union[Plan, _Mapping]] = ..., disagg_plan: _Optional[_Union[DisaggPlan, _Mapping]] = ...) -> None: ...

class VerifyResponse(_message.Message):
    __slots__ = ("valid", "violations", "notes", "warnings", "estimate", "disagg_estimate")
    VALID_FIELD_NUMBER: _ClassVar[int]
    VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    ESTIMATE_FIELD_NUMBER: _ClassVar[int]
    DISAGG_ESTIMATE_FIELD_NUMBER: _ClassVar[int]
    valid: bool
    violations: _containers.RepeatedCompositeFieldContainer[Violation]
    notes: _containers.RepeatedScalarFieldContainer[str]
    warnings: _containers.RepeatedScalarFieldContainer[str]
    estimate: Estimate
    disagg_estimate: DisaggEstimate
    def __init__(self, valid: _Optional[bool] = ..., violations: _Optional[_Iterable[_Union[Violation, _Mapping]]] = ..., notes: _Optional[_Iterable[str]] = ..., warnings: _Optional[_Iterable[str]] = ..., estimate: _Optional[_Union[Estimate, _Mapping]] = ..., disagg_estimate: _Optional[_Union[DisaggEstimate, _Mapping]] = ...) -> None: ...

class EstimateRequest(_message.Message):
    __slots__ = ("instance", "plan", "disagg_plan")
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    DISAGG_PLAN_FIELD_NUMBER: _ClassVar[int]
    instance: Instance
    plan: Plan
    disagg_plan: DisaggPlan
    def __init__(self, instance: _Optional[_Union[Instance, _Mapping]] = ..., plan: _Optional[_Union[Plan, _Mapping]] = ..., disagg_plan: _Optional[_Union[DisaggPlan, _Mapping]] = ...) -> None: ...

class EstimateResponse(_message.Message):
    __slots__ = ("estimate", "disagg_estimate")
    ESTIMATE_FIELD_NUMBER: _ClassVar[int]
    DISAGG_ESTIMATE_FIELD_NUMBER: _ClassVar[int]
    estimate: Estimate
    disagg_estimate: DisaggEstimate
    def __init__(self, estimate: _Optional[_Union[Estimate, _Mapping]] = ..., disagg_estimate: _Optional[_Union[DisaggEstimate, _Mapping]] = ...) -> None: ...

class ListPresetsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListPresetsResponse(_message.Message):
    __slots__ = ("models", "hardware")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    HARDWARE_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelPreset]
    hardware: _containers.RepeatedCompositeFieldContainer[HardwarePreset]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelPreset, _Mapping]]] = ..., hardware: _Optional[_Iterable[_Union[HardwarePreset, _Mapping]]] = ...) -> None: ...

class ModelPreset(_message.Message):
    __slots__ = ("name", "total_params", "active_params", "published_total_params", "spec")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOTAL_PARAMS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_PARAMS_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_TOTAL_PARAMS_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    name: str
    total_params: int
    active_params: int
    published_total_params: int
    spec: ModelSpec
    def __init__(self, name: _Optional[str] = ..., total_params: _Optional[int] = ..., active_params: _Optional[int] = ..., published_total_params: _Optional[int] = ..., spec: _Optional[_Union[ModelSpec, _Mapping]] = ...) -> None: ...

class HardwarePreset(_message.Message):
    __slots__ = ("name", "spec")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    name: str
    spec: HardwareSpec
    def __init__(self, name: _Optional[str] = ..., spec: _Optional[_Union[HardwareSpec, _Mapping]] = ...) -> None: ...

class Instance(_message.Message):
    __slots__ = ("name", "description", "model_preset", "model_spec", "hardware_preset", "hardware_spec", "workload", "expert_load", "search", "claimed_plan", "engine", "serving", "disaggregation", "claimed_disagg_plan")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    MODEL_PRESET_FIELD_NUMBER: _ClassVar[int]
    MODEL_SPEC_FIELD_NUMBER: _ClassVar[int]
    HARDWARE_PRESET_FIELD_NUMBER: _ClassVar[int]
    HARDWARE_SPEC_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_FIELD_NUMBER: _ClassVar[int]
    EXPERT_LOAD_FIELD_NUMBER: _ClassVar[int]
    SEARCH_FIELD_NUMBER: _ClassVar[int]
    CLAIMED_PLAN_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    SERVING_FIELD_NUMBER: _ClassVar[int]
    DISAGGREGATION_FIELD_NUMBER: _ClassVar[int]
    CLAIMED_DISAGG_PLAN_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    model_preset: str
    model_spec: ModelSpec
    hardware_preset: str
    hardware_spec: HardwareSpec
    workload: Workload
    expert_load: ExpertLoad
    search: SearchOptions
    claimed_plan: Plan
    engine: EngineSpec
    serving: ServingMode
    disaggregation: DisaggregationOptions
    claimed_disagg_plan: DisaggPlan
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., model_preset: _Optional[str] = ..., model_spec: _Optional[_Union[ModelSpec, _Mapping]] = ..., hardware_preset: _Optional[str] = ..., hardware_spec: _Optional[_Union[HardwareSpec, _Mapping]] = ..., workload: _Optional[_Union[Workload, _Mapping]] = ..., expert_load: _Optional[_Union[ExpertLoad, _Mapping]] = ..., search: _Optional[_Union[SearchOptions, _Mapping]] = ..., claimed_plan: _Optional[_Union[Plan, _Mapping]] = ..., engine: _Optional[_Union[EngineSpec, _Mapping]] = ..., serving: _Optional[_Union[ServingMode, str]] = ..., disaggregation: _Optional[_Union[DisaggregationOptions, _Mapping]] = ..., claimed_disagg_plan: _Optional[_Union[DisaggPlan, _Mapping]] = ...) -> None: ...

class AttentionSpec(_message.Message):
    __slots__ = ("kind", "num_heads", "num_kv_heads", "head_dim", "q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "bias", "qk_norm", "sinks", "sliding_window", "sliding_layers")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NUM_HEADS_FIELD_NUMBER: _ClassVar[int]
    NUM_KV_HEADS_FIELD_NUMBER: _ClassVar[int]
    HEAD_DIM_FIELD_NUMBER: _ClassVar[int]
    Q_LORA_RANK_FIELD_NUMBER: _ClassVar[int]
    KV_LORA_RANK_FIELD_NUMBER: _ClassVar[int]
    QK_NOPE_HEAD_DIM_FIELD_NUMBER: _ClassVar[int]
    QK_ROPE_HEAD_DIM_FIELD_NUMBER: _ClassVar[int]
    V_HEAD_DIM_FIELD_NUMBER: _ClassVar[int]
    BIAS_FIELD_NUMBER: _ClassVar[int]
    QK_NORM_FIELD_NUMBER: _ClassVar[int]
    SINKS_FIELD_NUMBER: _ClassVar[int]
    SLIDING_WINDOW_FIELD_NUMBER: _ClassVar[int]
    SLIDING_LAYERS_FIELD_NUMBER: _ClassVar[int]
    kind: AttentionKind
    num_heads: int
    num_kv_heads: int
    head_dim: int
    q_lora_rank: int
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int
    bias: bool
    qk_norm: bool
    sinks: bool
    sliding_window: int
    sliding_layers: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, kind: _Optional[_Union[AttentionKind, str]] = ..., num_heads: _Optional[int] = ..., num_kv_heads: _Optional[int] = ..., head_dim: _Optional[int] = ..., q_lora_rank: _Optional[int] = ..., kv_lora_rank: _Optional[int] = ..., qk_nope_head_dim: _Optional[int] = ..., qk_rope_head_dim: _Optional[int] = ..., v_head_dim: _Optional[int] = ..., bias: _Optional[bool] = ..., qk_norm: _Optional[bool] = ..., sinks: _Optional[bool] = ..., sliding_window: _Optional[int] = ..., sliding_layers: _Optional[_Iterable[int]] = ...) -> None: ...

class ModelSpec(_message.Message):
    __slots__ = ("name", "num_layers", "dense_layers", "hidden_size", "attention", "dense_ffn_width", "num_experts", "top_k", "expert_ffn_width", "num_shared_experts", "shared_expert_width", "gated_ffn", "ffn_bias", "router_bias", "vocab_size", "tie_embeddings", "weight_precision", "expert_precision", "kv_precision", "activation_precision", "declared_total_params", "max_position_embeddings", "weight_block_size")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NUM_LAYERS_FIELD_NUMBER: _ClassVar[int]
    DENSE_LAYERS_FIELD_NUMBER: _ClassVar[int]
    HIDDEN_SIZE_FIELD_NUMBER: _ClassVar[int]
    ATTENTION_FIELD_NUMBER: _ClassVar[int]
    DENSE_FFN_WIDTH_FIELD_NUMBER: _ClassVar[int]
    NUM_EXPERTS_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    EXPERT_FFN_WIDTH_FIELD_NUMBER: _ClassVar[int]
    NUM_SHARED_EXPERTS_FIELD_NUMBER: _ClassVar[int]
    SHARED_EXPERT_WIDTH_FIELD_NUMBER: _ClassVar[int]
    GATED_FFN_FIELD_NUMBER: _ClassVar[int]
    FFN_BIAS_FIELD_NUMBER: _ClassVar[int]
    ROUTER_BIAS_FIELD_NUMBER: _ClassVar[int]
    VOCAB_SIZE_FIELD_NUMBER: _ClassVar[int]
    TIE_EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_PRECISION_FIELD_NUMBER: _ClassVar[int]
    EXPERT_PRECISION_FIELD_NUMBER: _ClassVar[int]
    KV_PRECISION_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_PRECISION_FIELD_NUMBER: _ClassVar[int]
    DECLARED_TOTAL_PARAMS_FIELD_NUMBER: _ClassVar[int]
    MAX_POSITION_EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_BLOCK_SIZE_FIELD_NUMBER: _ClassVar[int]
    name: str
    num_layers: int
    dense_layers: _containers.RepeatedScalarFieldContainer[int]
    hidden_size: int
    attention: AttentionSpec
    dense_ffn_width: int
    num_experts: int
    top_k: int
    expert_ffn_width: int
    num_shared_experts: int
    shared_expert_width: int
    gated_ffn: bool
    ffn_bias: bool
    router_bias: bool
    vocab_size: int
    tie_embeddings: bool
    weight_precision: Precision
    expert_precision: Precision
    kv_precision: Precision
    activation_precision: Precision
    declared_total_params: int
    max_position_embeddings: int
    weight_block_size: int
    def __init__(self, name: _Optional[str] = ..., num_layers: _Optional[int] = ..., dense_layers: _Optional[_Iterable[int]] = ..., hidden_size: _Optional[int] = ..., attention: _Optional[_Union[AttentionSpec, _Mapping]] = ..., dense_ffn_width: _Optional[int] = ..., num_experts: _Optional[int] = ..., top_k: _Optional[int] = ..., expert_ffn_width: _Optional[int] = ..., num_shared_experts: _Optional[int] = ..., shared_expert_width: _Optional[int] = ..., gated_ffn: _Optional[bool] = ..., ffn_bias: _Optional[bool] = ..., router_bias: _Optional[bool] = ..., vocab_size: _Optional[int] = ..., tie_embeddings: _Optional[bool] = ..., weight_precision: _Optional[_Union[Precision, str]] = ..., expert_precision: _Optional[_Union[Precision, str]] = ..., kv_precision: _Optional[_Union[Precision, str]] = ..., activation_precision: _Optional[_Union[Precision, str]] = ..., declared_total_params: _Optional[int] = ..., max_position_embeddings: _Optional[int] = ..., weight_block_size: _Optional[int] = ...) -> None: ...

class PeakTflops(_message.Message):
    __slots__ = ("precision", "tflops")
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    TFLOPS_FIELD_NUMBER: _ClassVar[int]
    precision: Precision
    tflops: float
    def __init__(self, precision: _Optional[_Union[Precision, str]] = ..., tflops: _Optional[float] = ...) -> None: ...

class HardwareSpec(_message.Message):
    __slots__ = ("name", "peak_tflops", "mfu", "hbm_gb", "hbm_tb_s", "hbm_efficiency", "gpus_per_node", "intra_node_gb_s", "inter_node_gb_s", "intra_node_latency_us", "inter_node_latency_us", "comm_efficiency", "reserved_gb", "notes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PEAK_TFLOPS_FIELD_NUMBER: _ClassVar[int]
    MFU_FIELD_NUMBER: _ClassVar[int]
    HBM_GB_FIELD_NUMBER: _ClassVar[int]
    HBM_TB_S_FIELD_NUMBER: _ClassVar[int]
    HBM_EFFICIENCY_FIELD_NUMBER: _ClassVar[int]
    GPUS_PER_NODE_FIELD_NUMBER: _ClassVar[int]
    INTRA_NODE_GB_S_FIELD_NUMBER: _ClassVar[int]
    INTER_NODE_GB_S_FIELD_NUMBER: _ClassVar[int]
    INTRA_NODE_LATENCY_US_FIELD_NUMBER: _ClassVar[int]
    INTER_NODE_LATENCY_US_FIELD_NUMBER: _ClassVar[int]
    COMM_EFFICIENCY_FIELD_NUMBER: _ClassVar[int]
    RESERVED_GB_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    peak_tflops: _containers.RepeatedCompositeFieldContainer[PeakTflops]
    mfu: float
    hbm_gb: float
    hbm_tb_s: float
    hbm_efficiency: float
    gpus_per_node: int
    intra_node_gb_s: float
    inter_node_gb_s: float
    intra_node_latency_us: float
    inter_node_latency_us: float
    comm_efficiency: float
    reserved_gb: float
    notes: str
    def __init__(self, name: _Optional[str] = ..., peak_tflops: _Optional[_Iterable[_Union[PeakTflops, _Mapping]]] = ..., mfu: _Optional[float] = ..., hbm_gb: _Optional[float] = ..., hbm_tb_s: _Optional[float] = ..., hbm_efficiency: _Optional[float] = ..., gpus_per_node: _Optional[int] = ..., intra_node_gb_s: _Optional[float] = ..., inter_node_gb_s: _Optional[float] = ..., intra_node_latency_us: _Optional[float] = ..., inter_node_latency_us: _Optional[float] = ..., comm_efficiency: _Optional[float] = ..., reserved_gb: _Optional[float] = ..., notes: _Optional[str] = ...) -> None: ...

class BatchRange(_message.Message):
    __slots__ = ("min", "max")
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    min: int
    max: int
    def __init__(self, min: _Optional[int] = ..., max: _Optional[int] = ...) -> None: ...

class Targets(_message.Message):
    __slots__ = ("max_ttft_s", "max_tpot_s", "min_output_tokens_per_s_per_gpu", "min_output_tokens_per_s", "max_gpus")
    MAX_TTFT_S_FIELD_NUMBER: _ClassVar[int]
    MAX_TPOT_S_FIELD_NUMBER: _ClassVar[int]
    MIN_OUTPUT_TOKENS_PER_S_PER_GPU_FIELD_NUMBER: _ClassVar[int]
    MIN_OUTPUT_TOKENS_PER_S_FIELD_NUMBER: _ClassVar[int]
    MAX_GPUS_FIELD_NUMBER: _ClassVar[int]
    max_ttft_s: float
    max_tpot_s: float
    min_output_tokens_per_s_per_gpu: float
    min_output_tokens_per_s: float
    max_gpus: int
    def __init__(self, max_ttft_s: _Optional[float] = ..., max_tpot_s: _Optional[float] = ..., min_output_tokens_per_s_per_gpu: _Optional[float] = ..., min_output_tokens_per_s: _Optional[float] = ..., max_gpus: _Optional[int] = ...) -> None: ...

class Workload(_message.Message):
    __slots__ = ("input_len", "max_input_len", "output_len", "fixed_batch", "batch_range", "targets")
    INPUT_LEN_FIELD_NUMBER: _ClassVar[int]
    MAX_INPUT_LEN_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_LEN_FIELD_NUMBER: _ClassVar[int]
    FIXED_BATCH_FIELD_NUMBER: _ClassVar[int]
    BATCH_RANGE_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    input_len: int
    max_input_len: int
    output_len: int
    fixed_batch: int
    batch_range: BatchRange
    targets: Targets
    def __init__(self, input_len: _Optional[int] = ..., max_input_len: _Optional[int] = ..., output_len: _Optional[int] = ..., fixed_batch: _Optional[int] = ..., batch_range: _Optional[_Union[BatchRange, _Mapping]] = ..., targets: _Optional[_Union[Targets, _Mapping]] = ...) -> None: ...

class ExpertCounts(_message.Message):
    __slots__ = ("tokens",)
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    tokens: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, tokens: _Optional[_Iterable[int]] = ...) -> None: ...

class ExpertLoad(_message.Message):
    __slots__ = ("kind", "alpha", "seed", "counts")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    kind: ExpertLoadKind
    alpha: float
    seed: int
    counts: _containers.RepeatedCompositeFieldContainer[ExpertCounts]
    def __init__(self, kind: _Optional[_Union[ExpertLoadKind, str]] = ..., alpha: _Optional[float] = ..., seed: _Optional[int] = ..., counts: _Optional[_Iterable[_Union[ExpertCounts, _Mapping]]] = ...) -> None: ...

class DegreeValues(_message.Message):
    __slots__ = ("tp", "pp", "dp", "cp", "ep", "etp", "edp", "replicas")
    TP_FIELD_NUMBER: _ClassVar[int]
    PP_FIELD_NUMBER: _ClassVar[int]
    DP_FIELD_NUMBER: _ClassVar[int]
    CP_FIELD_NUMBER: _ClassVar[int]
    EP_FIELD_NUMBER: _ClassVar[int]
    ETP_FIELD_NUMBER: _ClassVar[int]
    EDP_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    tp: int
    pp: int
    dp: int
    cp: int
    ep: int
    etp: int
    edp: int
    replicas: int
    def __init__(self, tp: _Optional[int] = ..., pp: _Optional[int] = ..., dp: _Optional[int] = ..., cp: _Optional[int] = ..., ep: _Optional[int] = ..., etp: _Optional[int] = ..., edp: _Optional[int] = ..., replicas: _Optional[int] = ...) -> None: ...

class ForbiddenDegrees(_message.Message):
    __slots__ = ("tp", "pp", "dp", "cp", "ep", "etp", "edp", "replicas")
    TP_FIELD_NUMBER: _ClassVar[int]
    PP_FIELD_NUMBER: _ClassVar[int]
    DP_FIELD_NUMBER: _ClassVar[int]
    CP_FIELD_NUMBER: _ClassVar[int]
    EP_FIELD_NUMBER: _ClassVar[int]
    ETP_FIELD_NUMBER: _ClassVar[int]
    EDP_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    tp: _containers.RepeatedScalarFieldContainer[int]
    pp: _containers.RepeatedScalarFieldContainer[int]
    dp: _containers.RepeatedScalarFieldContainer[int]
    cp: _containers.RepeatedScalarFieldContainer[int]
    ep: _containers.RepeatedScalarFieldContainer[int]
    etp: _containers.RepeatedScalarFieldContainer[int]
    edp: _containers.RepeatedScalarFieldContainer[int]
    replicas: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, tp: _Optional[_Iterable[int]] = ..., pp: _Optional[_Iterable[int]] = ..., dp: _Optional[_Iterable[int]] = ..., cp: _Optional[_Iterable[int]] = ..., ep: _Optional[_Iterable[int]] = ..., etp: _Optional[_Iterable[int]] = ..., edp: _Optional[_Iterable[int]] = ..., replicas: _Optional[_Iterable[int]] = ...) -> None: ...

class SearchOptions(_message.Message):
    __slots__ = ("fix", "forbid", "max_pp", "max_cp", "max_dp", "redundant_experts", "ep_cross_node", "tp_cross_node", "time_limit_s", "workers", "random_seed", "engine_rules")
    FIX_FIELD_NUMBER: _ClassVar[int]
    FORBID_FIELD_NUMBER: _ClassVar[int]
    MAX_PP_FIELD_NUMBER: _ClassVar[int]
    MAX_CP_FIELD_NUMBER: _ClassVar[int]
    MAX_DP_FIELD_NUMBER: _ClassVar[int]
    REDUNDANT_EXPERTS_FIELD_NUMBER: _ClassVar[int]
    EP_CROSS_NODE_FIELD_NUMBER: _ClassVar[int]
    TP_CROSS_NODE_FIELD_NUMBER: _ClassVar[int]
    TIME_LIMIT_S_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    RANDOM_SEED_FIELD_NUMBER: _ClassVar[int]
    ENGINE_RULES_FIELD_NUMBER: _ClassVar[int]
    fix: DegreeValues
    forbid: ForbiddenDegrees
    max_pp: int
    max_cp: int
    max_dp: int
    redundant_experts: int
    ep_cross_node: bool
    tp_cross_node: bool
    time_limit_s: float
    workers: int
    random_seed: int
    engine_rules: bool
    def __init__(self, fix: _Optional[_Union[DegreeValues, _Mapping]] = ..., forbid: _Optional[_Union[ForbiddenDegrees, _Mapping]] = ..., max_pp: _Optional[int] = ..., max_cp: _Optional[int] = ..., max_dp: _Optional[int] = ..., redundant_experts: _Optional[int] = ..., ep_cross_node: _Optional[bool] = ..., tp_cross_node: _Optional[bool] = ..., time_limit_s: _Optional[float] = ..., workers: _Optional[int] = ..., random_seed: _Optional[int] = ..., engine_rules: _Optional[bool] = ...) -> None: ...

class EngineSpec(_message.Message):
    __slots__ = ("name", "gpu_memory_utilization", "max_num_batched_tokens", "step_overhead_us", "ep_dispatch_precision", "overlap")
    NAME_FIELD_NUMBER: _ClassVar[int]
    GPU_MEMORY_UTILIZATION_FIELD_NUMBER: _ClassVar[int]
    MAX_NUM_BATCHED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    STEP_OVERHEAD_US_FIELD_NUMBER: _ClassVar[int]
    EP_DISPATCH_PRECISION_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_FIELD_NUMBER: _ClassVar[int]
    name: EngineName
    gpu_memory_utilization: float
    max_num_batched_tokens: int
    step_overhead_us: float
    ep_dispatch_precision: Precision
    overlap: EngineOverlap
    def __init__(self, name: _Optional[_Union[EngineName, str]] = ..., gpu_memory_utilization: _Optional[float] = ..., max_num_batched_tokens: _Optional[int] = ..., step_overhead_us: _Optional[float] = ..., ep_dispatch_precision: _Optional[_Union[Precision, str]] = ..., overlap: _Optional[_Union[EngineOverlap, str]] = ...) -> None: ...

class Degrees(_message.Message):
    __slots__ = ("tp", "pp", "dp", "cp", "ep", "etp", "edp", "replicas")
    TP_FIELD_NUMBER: _ClassVar[int]
    PP_FIELD_NUMBER: _ClassVar[int]
    DP_FIELD_NUMBER: _ClassVar[int]
    CP_FIELD_NUMBER: _ClassVar[int]
    EP_FIELD_NUMBER: _ClassVar[int]
    ETP_FIELD_NUMBER: _ClassVar[int]
    EDP_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    tp: int
    pp: int
    dp: int
    cp: int
    ep: int
    etp: int
    edp: int
    replicas: int
    def __init__(self, tp: _Optional[int] = ..., pp: _Optional[int] = ..., dp: _Optional[int] = ..., cp: _Optional[int] = ..., ep: _Optional[int] = ..., etp: _Optional[int] = ..., edp: _Optional[int] = ..., replicas: _Optional[int] = ...) -> None: ...

class Stage(_message.Message):
    __slots__ = ("first_layer", "last_layer")
    FIRST_LAYER_FIELD_NUMBER: _ClassVar[int]
    LAST_LAYER_FIELD_NUMBER: _ClassVar[int]
    first_layer: int
    last_layer: int
    def __init__(self, first_layer: _Optional[int] = ..., last_layer: _Optional[int] = ...) -> None: ...

class RankExperts(_message.Message):
    __slots__ = ("experts",)
    EXPERTS_FIELD_NUMBER: _ClassVar[int]
    experts: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, experts: _Optional[_Iterable[int]] = ...) -> None: ...

class LayerPlacement(_message.Message):
    __slots__ = ("layer", "ranks")
    LAYER_FIELD_NUMBER: _ClassVar[int]
    RANKS_FIELD_NUMBER: _ClassVar[int]
    layer: int
    ranks: _containers.RepeatedCompositeFieldContainer[RankExperts]
    def __init__(self, layer: _Optional[int] = ..., ranks: _Optional[_Iterable[_Union[RankExperts, _Mapping]]] = ...) -> None: ...

class Plan(_message.Message):
    __slots__ = ("degrees", "batch", "stages", "placement", "claimed_total_gpus", "claimed_metrics", "note", "redundant_experts")
    class ClaimedMetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    DEGREES_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_FIELD_NUMBER: _ClassVar[int]
    CLAIMED_TOTAL_GPUS_FIELD_NUMBER: _ClassVar[int]
    CLAIMED_METRICS_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    REDUNDANT_EXPERTS_FIELD_NUMBER: _ClassVar[int]
    degrees: Degrees
    batch: int
    stages: _containers.RepeatedCompositeFieldContainer[Stage]
    placement: _containers.RepeatedCompositeFieldContainer[LayerPlacement]
    claimed_total_gpus: int
    claimed_metrics: _containers.ScalarMap[str, float]
    note: str
    redundant_experts: int
    def __init__(self, degrees: _Optional[_Union[Degrees, _Mapping]] = ..., batch: _Optional[int] = ..., stages: _Optional[_Iterable[_Union[Stage, _Mapping]]] = ..., placement: _Optional[_Iterable[_Union[LayerPlacement, _Mapping]]] = ..., claimed_total_gpus: _Optional[int] = ..., claimed_metrics: _Optional[_Mapping[str, float]] = ..., note: _Optional[str] = ..., redundant_experts: _Optional[int] = ...) -> None: ...

class Metrics(_message.Message):
    __slots__ = ("ttft_s", "tpot_s", "output_tokens_per_s", "output_tokens_per_s_per_gpu", "tokens_per_s_per_user", "peak_memory_gb", "ttft_idle_s", "requests_per_s", "prefill_utilization")
    TTFT_S_FIELD_NUMBER: _ClassVar[int]
    TPOT_S_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_PER_S_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_PER_S_PER_GPU_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_S_PER_USER_FIELD_NUMBER: _ClassVar[int]
    PEAK_MEMORY_GB_FIELD_NUMBER: _ClassVar[int]
    TTFT_IDLE_S_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_PER_S_FIELD_NUMBER: _ClassVar[int]
    PREFILL_UTILIZATION_FIELD_NUMBER: _ClassVar[int]
    ttft_s: float
    tpot_s: float
    output_tokens_per_s: float
    output_tokens_per_s_per_gpu: float
    tokens_per_s_per_user: float
    peak_memory_gb: float
    ttft_idle_s: float
    requests_per_s: float
    prefill_utilization: float
    def __init__(self, ttft_s: _Optional[float] = ..., tpot_s: _Optional[float] = ..., output_tokens_per_s: _Optional[float] = ..., output_tokens_per_s_per_gpu: _Optional[float] = ..., tokens_per_s_per_user: _Optional[float] = ..., peak_memory_gb: _Optional[float] = ..., ttft_idle_s: _Optional[float] = ..., requests_per_s: _Optional[float] = ..., prefill_utilization: _Optional[float] = ...) -> None: ...

class LayerExperts(_message.Message):
    __slots__ = ("layer", "hottest_load", "greedy_hottest_load", "lower_bound", "optimal", "replicated_experts")
    LAYER_FIELD_NUMBER: _ClassVar[int]
    HOTTEST_LOAD_FIELD_NUMBER: _ClassVar[int]
    GREEDY_HOTTEST_LOAD_FIELD_NUMBER: _ClassVar[int]
    LOWER_BOUND_FIELD_NUMBER: _ClassVar[int]
    OPTIMAL_FIELD_NUMBER: _ClassVar[int]
    REPLICATED_EXPERTS_FIELD_NUMBER: _ClassVar[int]
    layer: int
    hottest_load: float
    greedy_hottest_load: float
    lower_bound: float
    optimal: bool
    replicated_experts: int
    def __init__(self, layer: _Optional[int] = ..., hottest_load: _Optional[float] = ..., greedy_hottest_load: _Optional[float] = ..., lower_bound: _Optional[float] = ..., optimal: _Optional[bool] = ..., replicated_experts: _Optional[int] = ...) -> None: ...

class Explanation(_message.Message):
    __slots__ = ("summary", "conflicts", "nearest")
    class NearestEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    CONFLICTS_FIELD_NUMBER: _ClassVar[int]
    NEAREST_FIELD_NUMBER: _ClassVar[int]
    summary: str
    conflicts: _containers.RepeatedScalarFieldContainer[str]
    nearest: _containers.ScalarMap[str, float]
    def __init__(self, summary: _Optional[str] = ..., conflicts: _Optional[_Iterable[str]] = ..., nearest: _Optional[_Mapping[str, float]] = ...) -> None: ...

class SolveResult(_message.Message):
    __slots__ = ("status", "plan", "metrics", "objective", "bound", "gap", "solve_time_s", "solver", "tie_breaks", "experts", "explanation", "improving_solutions", "tie_breaks_proved", "search_space", "expert_load", "advice", "serving", "disagg_plan", "disagg_metrics", "comparison")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    BOUND_FIELD_NUMBER: _ClassVar[int]
    GAP_FIELD_NUMBER: _ClassVar[int]
    SOLVE_TIME_S_FIELD_NUMBER: _ClassVar[int]
    SOLVER_FIELD_NUMBER: _ClassVar[int]
    TIE_BREAKS_FIELD_NUMBER: _ClassVar[int]
    EXPERTS_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    IMPROVING_SOLUTIONS_FIELD_NUMBER: _ClassVar[int]
    TIE_BREAKS_PROVED_FIELD_NUMBER: _ClassVar[int]
    SEARCH_SPACE_FIELD_NUMBER: _ClassVar[int]
    EXPERT_LOAD_FIELD_NUMBER: _ClassVar[int]
    ADVICE_FIELD_NUMBER: _ClassVar[int]
    SERVING_FIELD_NUMBER: _ClassVar[int]
    DISAGG_PLAN_FIELD_NUMBER: _ClassVar[int]
    DISAGG_METRICS_FIELD_NUMBER: _ClassVar[int]
    COMPARISON_FIELD_NUMBER: _ClassVar[int]
    status: SolveStatus
    plan: Plan
    metrics: Metrics
    objective: int
    bound: int
    gap: float
    solve_time_s: float
    solver: str
    tie_breaks: _containers.RepeatedScalarFieldContainer[str]
    experts: _containers.RepeatedCompositeFieldContainer[LayerExperts]
    explanation: Explanation
    improving_solutions: int
    tie_breaks_proved: _containers.RepeatedScalarFieldContainer[str]
    search_space: _containers.RepeatedCompositeFieldContainer[SearchRestriction]
    expert_load: str
    advice: str
    serving: ServingMode
    disagg_plan: DisaggPlan
    disagg_metrics: DisaggMetrics
    comparison: ServingComparison
    def __init__(self, status: _Optional[_Union[SolveStatus, str]] = ..., plan: _Optional[_Union[Plan, _Mapping]] = ..., metrics: _Optional[_Union[Metrics, _Mapping]] = ..., objective: _Optional[int] = ..., bound: _Optional[int] = ..., gap: _Optional[float] = ..., solve_time_s: _Optional[float] = ..., solver: _Optional[str] = ..., tie_breaks: _Optional[_Iterable[str]] = ..., experts: _Optional[_Iterable[_Union[LayerExperts, _Mapping]]] = ..., explanation: _Optional[_Union[Explanation, _Mapping]] = ..., improving_solutions: _Optional[int] = ..., tie_breaks_proved: _Optional[_Iterable[str]] = ..., search_space: _Optional[_Iterable[_Union[SearchRestriction, _Mapping]]] = ..., expert_load: _Optional[str] = ..., advice: _Optional[str] = ..., serving: _Optional[_Union[ServingMode, str]] = ..., disagg_plan: _Optional[_Union[DisaggPlan, _Mapping]] = ..., disagg_metrics: _Optional[_Union[DisaggMetrics, _Mapping]] = ..., comparison: _Optional[_Union[ServingComparison, _Mapping]] = ...) -> None: ...

class SearchRestriction(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: _struct_pb2.Value
    def __init__(self, name: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...

class Violation(_message.Message):
    __slots__ = ("rule", "field", "message")
    RULE_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    rule: str
    field: str
    message: str
    def __init__(self, rule: _Optional[str] = ..., field: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class MemoryBreakdown(_message.Message):
    __slots__ = ("terms_gb", "total_gb", "stage", "budget_gb", "capacity_gb")
    class TermsGbEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    TERMS_GB_FIELD_NUMBER: _ClassVar[int]
    TOTAL_GB_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    BUDGET_GB_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_GB_FIELD_NUMBER: _ClassVar[int]
    terms_gb: _containers.ScalarMap[str, float]
    total_gb: float
    stage: int
    budget_gb: float
    capacity_gb: float
    def __init__(self, terms_gb: _Optional[_Mapping[str, float]] = ..., total_gb: _Optional[float] = ..., stage: _Optional[int] = ..., budget_gb: _Optional[float] = ..., capacity_gb: _Optional[float] = ...) -> None: ...

class TpotBreakdown(_message.Message):
    __slots__ = ("slowest_stage_step_s", "hop_s", "step_overhead_s", "microbatches", "tpot_s")
    SLOWEST_STAGE_STEP_S_FIELD_NUMBER: _ClassVar[int]
    HOP_S_FIELD_NUMBER: _ClassVar[int]
    STEP_OVERHEAD_S_FIELD_NUMBER: _ClassVar[int]
    MICROBATCHES_FIELD_NUMBER: _ClassVar[int]
    TPOT_S_FIELD_NUMBER: _ClassVar[int]
    slowest_stage_step_s: float
    hop_s: float
    step_overhead_s: float
    microbatches: int
    tpot_s: float
    def __init__(self, slowest_stage_step_s: _Optional[float] = ..., hop_s: _Optional[float] = ..., step_overhead_s: _Optional[float] = ..., microbatches: _Optional[int] = ..., tpot_s: _Optional[float] = ...) -> None: ...

class TtftBreakdown(_message.Message):
    __slots__ = ("stage", "full_step_max_prompt_s", "round_s", "wait_rounds", "own_chunks", "ttft_s")
    class FullStepMaxPromptSEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    STAGE_FIELD_NUMBER: _ClassVar[int]
    FULL_STEP_MAX_PROMPT_S_FIELD_NUMBER: _ClassVar[int]
    ROUND_S_FIELD_NUMBER: _ClassVar[int]
    WAIT_ROUNDS_FIELD_NUMBER: _ClassVar[int]
    OWN_CHUNKS_FIELD_NUMBER: _ClassVar[int]
    TTFT_S_FIELD_NUMBER: _ClassVar[int]
    stage: int
    full_step_max_prompt_s: _containers.ScalarMap[str, float]
    round_s: float
    wait_rounds: float
    own_chunks: float
    ttft_s: float
    def __init__(self, stage: _Optional[int] = ..., full_step_max_prompt_s: _Optional[_Mapping[str, float]] = ..., round_s: _Optional[float] = ..., wait_rounds: _Optional[float] = ..., own_chunks: _Optional[float] = ..., ttft_s: _Optional[float] = ...) -> None: ...

class TimeBreakdown(_message.Message):
    __slots__ = ("stage", "decode_step_s", "full_step_s", "average_step_s", "prefill_share", "tpot", "ttft", "ttft_idle_s", "sources")
    class DecodeStepSEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class FullStepSEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class TtftIdleSEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class SourcesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    STAGE_FIELD_NUMBER: _ClassVar[int]
    DECODE_STEP_S_FIELD_NUMBER: _ClassVar[int]
    FULL_STEP_S_FIELD_NUMBER: _ClassVar[int]
    AVERAGE_STEP_S_FIELD_NUMBER: _ClassVar[int]
    PREFILL_SHARE_FIELD_NUMBER: _ClassVar[int]
    TPOT_FIELD_NUMBER: _ClassVar[int]
    TTFT_FIELD_NUMBER: _ClassVar[int]
    TTFT_IDLE_S_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    stage: int
    decode_step_s: _containers.ScalarMap[str, float]
    full_step_s: _containers.ScalarMap[str, float]
    average_step_s: float
    prefill_share: float
    tpot: TpotBreakdown
    ttft: TtftBreakdown
    ttft_idle_s: _containers.ScalarMap[str, float]
    sources: _containers.ScalarMap[str, str]
    def __init__(self, stage: _Optional[int] = ..., decode_step_s: _Optional[_Mapping[str, float]] = ..., full_step_s: _Optional[_Mapping[str, float]] = ..., average_step_s: _Optional[float] = ..., prefill_share: _Optional[float] = ..., tpot: _Optional[_Union[TpotBreakdown, _Mapping]] = ..., ttft: _Optional[_Union[TtftBreakdown, _Mapping]] = ..., ttft_idle_s: _Optional[_Mapping[str, float]] = ..., sources: _Optional[_Mapping[str, str]] = ...) -> None: ...

class StageEstimate(_message.Message):
    __slots__ = ("first_layer", "last_layer", "memory_gb", "step_ms", "full_step_ms")
    FIRST_LAYER_FIELD_NUMBER: _ClassVar[int]
    LAST_LAYER_FIELD_NUMBER: _ClassVar[int]
    MEMORY_GB_FIELD_NUMBER: _ClassVar[int]
    STEP_MS_FIELD_NUMBER: _ClassVar[int]
    FULL_STEP_MS_FIELD_NUMBER: _ClassVar[int]
    first_layer: int
    last_layer: int
    memory_gb: float
    step_ms: float
    full_step_ms: float
    def __init__(self, first_layer: _Optional[int] = ..., last_layer: _Optional[int] = ..., memory_gb: _Optional[float] = ..., step_ms: _Optional[float] = ..., full_step_ms: _Optional[float] = ...) -> None: ...

class Estimate(_message.Message):
    __slots__ = ("gpus", "degrees", "batch", "metrics", "memory", "time", "stages", "redundant_experts", "placement_source", "expert_load", "calibration")
    GPUS_FIELD_NUMBER: _ClassVar[int]
    DEGREES_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    REDUNDANT_EXPERTS_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_SOURCE_FIELD_NUMBER: _ClassVar[int]
    EXPERT_LOAD_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_FIELD_NUMBER: _ClassVar[int]
    gpus: int
    degrees: Degrees
    batch: int
    metrics: Metrics
    memory: MemoryBreakdown
    time: TimeBreakdown
    stages: _containers.RepeatedCompositeFieldContainer[StageEstimate]
    redundant_experts: int
    placement_source: str
    expert_load: str
    calibration: str
    def __init__(self, gpus: _Optional[int] = ..., degrees: _Optional[_Union[Degrees, _Mapping]] = ..., batch: _Optional[int] = ..., metrics: _Optional[_Union[Metrics, _Mapping]] = ..., memory: _Optional[_Union[MemoryBreakdown, _Mapping]] = ..., time: _Optional[_Union[TimeBreakdown, _Mapping]] = ..., stages: _Optional[_Iterable[_Union[StageEstimate, _Mapping]]] = ..., redundant_experts: _Optional[int] = ..., placement_source: _Optional[str] = ..., expert_load: _Optional[str] = ..., calibration: _Optional[str] = ...) -> None: ...

class ExportRequest(_message.Message):
    __slots__ = ("instance", "plan", "engine", "model_path", "disagg_plan", "kv_backend")
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    MODEL_PATH_FIELD_NUMBER: _ClassVar[int]
    DISAGG_PLAN_FIELD_NUMBER: _ClassVar[int]
    KV_BACKEND_FIELD_NUMBER: _ClassVar[int]
    instance: Instance
    plan: Plan
    engine: EngineName
    model_path: str
    disagg_plan: DisaggPlan
    kv_backend: str
    def __init__(self, instance: _Optional[_Union[Instance, _Mapping]] = ..., plan: _Optional[_Union[Plan, _Mapping]] = ..., engine: _Optional[_Union[EngineName, str]] = ..., model_path: _Optional[str] = ..., disagg_plan: _Optional[_Union[DisaggPlan, _Mapping]] = ..., kv_backend: _Optional[str] = ...) -> None: ...

class LaunchCommand(_message.Message):
    __slots__ = ("replica", "node", "gpus", "command", "env", "script")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    SCRIPT_FIELD_NUMBER: _ClassVar[int]
    replica: int
    node: int
    gpus: int
    command: _containers.RepeatedScalarFieldContainer[str]
    env: _containers.ScalarMap[str, str]
    script: str
    def __init__(self, replica: _Optional[int] = ..., node: _Optional[int] = ..., gpus: _Optional[int] = ..., command: _Optional[_Iterable[str]] = ..., env: _Optional[_Mapping[str, str]] = ..., script: _Optional[str] = ...) -> None: ...

class ExportResponse(_message.Message):
    __slots__ = ("engine", "engine_version", "flags_source", "model_path", "degrees", "batch", "redundant_experts", "nodes_per_instance", "gpus_per_node", "placement", "settings", "launches", "files", "caveats", "disagg_export")
    class SettingsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class FilesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    ENGINE_VERSION_FIELD_NUMBER: _ClassVar[int]
    FLAGS_SOURCE_FIELD_NUMBER: _ClassVar[int]
    MODEL_PATH_FIELD_NUMBER: _ClassVar[int]
    DEGREES_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    REDUNDANT_EXPERTS_FIELD_NUMBER: _ClassVar[int]
    NODES_PER_INSTANCE_FIELD_NUMBER: _ClassVar[int]
    GPUS_PER_NODE_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    LAUNCHES_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    CAVEATS_FIELD_NUMBER: _ClassVar[int]
    DISAGG_EXPORT_FIELD_NUMBER: _ClassVar[int]
    engine: str
    engine_version: str
    flags_source: str
    model_path: str
    degrees: Degrees
    batch: int
    redundant_experts: int
    nodes_per_instance: int
    gpus_per_node: int
    placement: str
    settings: _containers.ScalarMap[str, str]
    launches: _containers.RepeatedCompositeFieldContainer[LaunchCommand]
    files: _containers.ScalarMap[str, str]
    caveats: _containers.RepeatedScalarFieldContainer[str]
    disagg_export: DisaggExport
    def __init__(self, engine: _Optional[str] = ..., engine_version: _Optional[str] = ..., flags_source: _Optional[str] = ..., model_path: _Optional[str] = ..., degrees: _Optional[_Union[Degrees, _Mapping]] = ..., batch: _Optional[int] = ..., redundant_experts: _Optional[int] = ..., nodes_per_instance: _Optional[int] = ..., gpus_per_node: _Optional[int] = ..., placement: _Optional[str] = ..., settings: _Optional[_Mapping[str, str]] = ..., launches: _Optional[_Iterable[_Union[LaunchCommand, _Mapping]]] = ..., files: _Optional[_Mapping[str, str]] = ..., caveats: _Optional[_Iterable[str]] = ..., disagg_export: _Optional[_Union[DisaggExport, _Mapping]] = ...) -> None: ...

class PoolExport(_message.Message):
    __slots__ = ("pool", "degrees", "batch", "tokens_per_step", "redundant_experts", "nodes_per_instance", "gpus_per_node", "placement", "settings", "launches", "files")
    class SettingsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class FilesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    POOL_FIELD_NUMBER: _ClassVar[int]
    DEGREES_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_STEP_FIELD_NUMBER: _ClassVar[int]
    REDUNDANT_EXPERTS_FIELD_NUMBER: _ClassVar[int]
    NODES_PER_INSTANCE_FIELD_NUMBER: _ClassVar[int]
    GPUS_PER_NODE_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    LAUNCHES_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    pool: str
    degrees: Degrees
    batch: int
    tokens_per_step: int
    redundant_experts: int
    nodes_per_instance: int
    gpus_per_node: int
    placement: str
    settings: _containers.ScalarMap[str, str]
    launches: _containers.RepeatedCompositeFieldContainer[LaunchCommand]
    files: _containers.ScalarMap[str, str]
    def __init__(self, pool: _Optional[str] = ..., degrees: _Optional[_Union[Degrees, _Mapping]] = ..., batch: _Optional[int] = ..., tokens_per_step: _Optional[int] = ..., redundant_experts: _Optional[int] = ..., nodes_per_instance: _Optional[int] = ..., gpus_per_node: _Optional[int] = ..., placement: _Optional[str] = ..., settings: _Optional[_Mapping[str, str]] = ..., launches: _Optional[_Iterable[_Union[LaunchCommand, _Mapping]]] = ..., files: _Optional[_Mapping[str, str]] = ...) -> None: ...

class DisaggExport(_message.Message):
    __slots__ = ("serving", "engine", "engine_version", "flags_source", "model_path", "kv_transfer", "kv_backend", "prefill", "decode", "connect", "router", "files", "caveats")
    class ConnectEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class FilesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SERVING_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    ENGINE_VERSION_FIELD_NUMBER: _ClassVar[int]
    FLAGS_SOURCE_FIELD_NUMBER: _ClassVar[int]
    MODEL_PATH_FIELD_NUMBER: _ClassVar[int]
    KV_TRANSFER_FIELD_NUMBER: _ClassVar[int]
    KV_BACKEND_FIELD_NUMBER: _ClassVar[int]
    PREFILL_FIELD_NUMBER: _ClassVar[int]
    DECODE_FIELD_NUMBER: _ClassVar[int]
    CONNECT_FIELD_NUMBER: _ClassVar[int]
    ROUTER_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    CAVEATS_FIELD_NUMBER: _ClassVar[int]
    serving: str
    engine: str
    engine_version: str
    flags_source: str
    model_path: str
    kv_transfer: str
    kv_backend: str
    prefill: PoolExport
    decode: PoolExport
    connect: _containers.ScalarMap[str, str]
    router: _containers.RepeatedCompositeFieldContainer[LaunchCommand]
    files: _containers.ScalarMap[str, str]
    caveats: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, serving: _Optional[str] = ..., engine: _Optional[str] = ..., engine_version: _Optional[str] = ..., flags_source: _Optional[str] = ..., model_path: _Optional[str] = ..., kv_transfer: _Optional[str] = ..., kv_backend: _Optional[str] = ..., prefill: _Optional[_Union[PoolExport, _Mapping]] = ..., decode: _Optional[_Union[PoolExport, _Mapping]] = ..., connect: _Optional[_Mapping[str, str]] = ..., router: _Optional[_Iterable[_Union[LaunchCommand, _Mapping]]] = ..., files: _Optional[_Mapping[str, str]] = ..., caveats: _Optional[_Iterable[str]] = ...) -> None: ...

class ParetoRequest(_message.Message):
    __slots__ = ("instance", "frontier", "points", "step", "time_limit_s", "batch", "chosen", "serving")
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    FRONTIER_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    TIME_LIMIT_S_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    CHOSEN_FIELD_NUMBER: _ClassVar[int]
    SERVING_FIELD_NUMBER: _ClassVar[int]
    instance: Instance
    frontier: Frontier
    points: int
    step: float
    time_limit_s: float
    batch: BatchRange
    chosen: bool
    serving: FrontierServing
    def __init__(self, instance: _Optional[_Union[Instance, _Mapping]] = ..., frontier: _Optional[_Union[Frontier, str]] = ..., points: _Optional[int] = ..., step: _Optional[float] = ..., time_limit_s: _Optional[float] = ..., batch: _Optional[_Union[BatchRange, _Mapping]] = ..., chosen: _Optional[bool] = ..., serving: _Optional[_Union[FrontierServing, str]] = ...) -> None: ...

class ParetoPoint(_message.Message):
    __slots__ = ("index", "plan", "gpus", "batch", "output_tokens_per_s_per_gpu", "tokens_per_s_per_user", "tpot_s", "ttft_s", "constraint", "proved", "serving", "disagg_plan")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_PER_S_PER_GPU_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_S_PER_USER_FIELD_NUMBER: _ClassVar[int]
    TPOT_S_FIELD_NUMBER: _ClassVar[int]
    TTFT_S_FIELD_NUMBER: _ClassVar[int]
    CONSTRAINT_FIELD_NUMBER: _ClassVar[int]
    PROVED_FIELD_NUMBER: _ClassVar[int]
    SERVING_FIELD_NUMBER: _ClassVar[int]
    DISAGG_PLAN_FIELD_NUMBER: _ClassVar[int]
    index: int
    plan: Plan
    gpus: int
    batch: int
    output_tokens_per_s_per_gpu: float
    tokens_per_s_per_user: float
    tpot_s: float
    ttft_s: float
    constraint: str
    proved: bool
    serving: ServingMode
    disagg_plan: DisaggPlan
    def __init__(self, index: _Optional[int] = ..., plan: _Optional[_Union[Plan, _Mapping]] = ..., gpus: _Optional[int] = ..., batch: _Optional[int] = ..., output_tokens_per_s_per_gpu: _Optional[float] = ..., tokens_per_s_per_user: _Optional[float] = ..., tpot_s: _Optional[float] = ..., ttft_s: _Optional[float] = ..., constraint: _Optional[str] = ..., proved: _Optional[bool] = ..., serving: _Optional[_Union[ServingMode, str]] = ..., disagg_plan: _Optional[_Union[DisaggPlan, _Mapping]] = ...) -> None: ...

class ParetoChosen(_message.Message):
    __slots__ = ("plan", "gpus", "output_tokens_per_s_per_gpu", "tokens_per_s_per_user", "ttft_s", "on_frontier", "dominated_by", "serving", "disagg_plan")
    PLAN_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_PER_S_PER_GPU_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_S_PER_USER_FIELD_NUMBER: _ClassVar[int]
    TTFT_S_FIELD_NUMBER: _ClassVar[int]
    ON_FRONTIER_FIELD_NUMBER: _ClassVar[int]
    DOMINATED_BY_FIELD_NUMBER: _ClassVar[int]
    SERVING_FIELD_NUMBER: _ClassVar[int]
    DISAGG_PLAN_FIELD_NUMBER: _ClassVar[int]
    plan: Plan
    gpus: int
    output_tokens_per_s_per_gpu: float
    tokens_per_s_per_user: float
    ttft_s: float
    on_frontier: int
    dominated_by: int
    serving: ServingMode
    disagg_plan: DisaggPlan
    def __init__(self, plan: _Optional[_Union[Plan, _Mapping]] = ..., gpus: _Optional[int] = ..., output_tokens_per_s_per_gpu: _Optional[float] = ..., tokens_per_s_per_user: _Optional[float] = ..., ttft_s: _Optional[float] = ..., on_frontier: _Optional[int] = ..., dominated_by: _Optional[int] = ..., serving: _Optional[_Union[ServingMode, str]] = ..., disagg_plan: _Optional[_Union[DisaggPlan, _Mapping]] = ...) -> None: ...

class ParetoSummary(_message.Message):
    __slots__ = ("frontier", "objective", "instance", "points", "chosen", "complete", "stopped", "solve_time_s", "serving")
    FRONTIER_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    CHOSEN_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    STOPPED_FIELD_NUMBER: _ClassVar[int]
    SOLVE_TIME_S_FIELD_NUMBER: _ClassVar[int]
    SERVING_FIELD_NUMBER: _ClassVar[int]
    frontier: str
    objective: str
    instance: Instance
    points: _containers.RepeatedCompositeFieldContainer[ParetoPoint]
    chosen: ParetoChosen
    complete: bool
    stopped: str
    solve_time_s: float
    serving: FrontierServing
    def __init__(self, frontier: _Optional[str] = ..., objective: _Optional[str] = ..., instance: _Optional[_Union[Instance, _Mapping]] = ..., points: _Optional[_Iterable[_Union[ParetoPoint, _Mapping]]] = ..., chosen: _Optional[_Union[ParetoChosen, _Mapping]] = ..., complete: _Optional[bool] = ..., stopped: _Optional[str] = ..., solve_time_s: _Optional[float] = ..., serving: _Optional[_Union[FrontierServing, str]] = ...) -> None: ...

class ParetoResponse(_message.Message):
    __slots__ = ("point", "summary")
    POINT_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    point: ParetoPoint
    summary: ParetoSummary
    def __init__(self, point: _Optional[_Union[ParetoPoint, _Mapping]] = ..., summary: _Optional[_Union[ParetoSummary, _Mapping]] = ...) -> None: ...

class DisaggregationOptions(_message.Message):
    __slots__ = ("prefill_tokens", "kv_transfer")
    PREFILL_TOKENS_FIELD_NUMBER: _ClassVar[int]
    KV_TRANSFER_FIELD_NUMBER: _ClassVar[int]
    prefill_tokens: _containers.RepeatedScalarFieldContainer[int]
    kv_transfer: KvTransfer
    def __init__(self, prefill_tokens: _Optional[_Iterable[int]] = ..., kv_transfer: _Optional[_Union[KvTransfer, str]] = ...) -> None: ...

class PrefillPlan(_message.Message):
    __slots__ = ("degrees", "tokens_per_step", "redundant_experts", "stages", "placement")
    DEGREES_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_STEP_FIELD_NUMBER: _ClassVar[int]
    REDUNDANT_EXPERTS_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_FIELD_NUMBER: _ClassVar[int]
    degrees: Degrees
    tokens_per_step: int
    redundant_experts: int
    stages: _containers.RepeatedCompositeFieldContainer[Stage]
    placement: _containers.RepeatedCompositeFieldContainer[LayerPlacement]
    def __init__(self, degrees: _Optional[_Union[Degrees, _Mapping]] = ..., tokens_per_step: _Optional[int] = ..., redundant_experts: _Optional[int] = ..., stages: _Optional[_Iterable[_Union[Stage, _Mapping]]] = ..., placement: _Optional[_Iterable[_Union[LayerPlacement, _Mapping]]] = ...) -> None: ...

class DisaggPlan(_message.Message):
    __slots__ = ("prefill", "decode", "claimed_total_gpus", "claimed_metrics", "note")
    class ClaimedMetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    PREFILL_FIELD_NUMBER: _ClassVar[int]
    DECODE_FIELD_NUMBER: _ClassVar[int]
    CLAIMED_TOTAL_GPUS_FIELD_NUMBER: _ClassVar[int]
    CLAIMED_METRICS_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    prefill: PrefillPlan
    decode: Plan
    claimed_total_gpus: int
    claimed_metrics: _containers.ScalarMap[str, float]
    note: str
    def __init__(self, prefill: _Optional[_Union[PrefillPlan, _Mapping]] = ..., decode: _Optional[_Union[Plan, _Mapping]] = ..., claimed_total_gpus: _Optional[int] = ..., claimed_metrics: _Optional[_Mapping[str, float]] = ..., note: _Optional[str] = ...) -> None: ...

class DisaggMetrics(_message.Message):
    __slots__ = ("ttft_s", "ttft_queue_s", "ttft_prefill_s", "kv_transfer_s", "ttft_idle_s", "tpot_s", "output_tokens_per_s", "output_tokens_per_s_per_gpu", "tokens_per_s_per_user", "requests_per_s", "decode_output_tokens_per_s", "decode_utilization", "prefill_input_tokens_per_s", "prefill_utilization", "prefill_gpus", "decode_gpus", "prefill_peak_memory_gb", "decode_peak_memory_gb", "kv_transfer_gb", "kv_transfer_streams")
    TTFT_S_FIELD_NUMBER: _ClassVar[int]
    TTFT_QUEUE_S_FIELD_NUMBER: _ClassVar[int]
    TTFT_PREFILL_S_FIELD_NUMBER: _ClassVar[int]
    KV_TRANSFER_S_FIELD_NUMBER: _ClassVar[int]
    TTFT_IDLE_S_FIELD_NUMBER: _ClassVar[int]
    TPOT_S_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_PER_S_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_PER_S_PER_GPU_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_S_PER_USER_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_PER_S_FIELD_NUMBER: _ClassVar[int]
    DECODE_OUTPUT_TOKENS_PER_S_FIELD_NUMBER: _ClassVar[int]
    DECODE_UTILIZATION_FIELD_NUMBER: _ClassVar[int]
    PREFILL_INPUT_TOKENS_PER_S_FIELD_NUMBER: _ClassVar[int]
    PREFILL_UTILIZATION_FIELD_NUMBER: _ClassVar[int]
    PREFILL_GPUS_FIELD_NUMBER: _ClassVar[int]
    DECODE_GPUS_FIELD_NUMBER: _ClassVar[int]
    PREFILL_PEAK_MEMORY_GB_FIELD_NUMBER: _ClassVar[int]
    DECODE_PEAK_MEMORY_GB_FIELD_NUMBER: _ClassVar[int]
    KV_TRANSFER_GB_FIELD_NUMBER: _ClassVar[int]
    KV_TRANSFER_STREAMS_FIELD_NUMBER: _ClassVar[int]
    ttft_s: float
    ttft_queue_s: float
    ttft_prefill_s: float
    kv_transfer_s: float
    ttft_idle_s: float
    tpot_s: float
    output_tokens_per_s: float
    output_tokens_per_s_per_gpu: float
    tokens_per_s_per_user: float
    requests_per_s: float
    decode_output_tokens_per_s: float
    decode_utilization: float
    prefill_input_tokens_per_s: float
    prefill_utilization: float
    prefill_gpus: int
    decode_gpus: int
    prefill_peak_memory_gb: float
    decode_peak_memory_gb: float
    kv_transfer_gb: float
    kv_transfer_streams: int
    def __init__(self, ttft_s: _Optional[float] = ..., ttft_queue_s: _Optional[float] = ..., ttft_prefill_s: _Optional[float] = ..., kv_transfer_s: _Optional[float] = ..., ttft_idle_s: _Optional[float] = ..., tpot_s: _Optional[float] = ..., output_tokens_per_s: _Optional[float] = ..., output_tokens_per_s_per_gpu: _Optional[float] = ..., tokens_per_s_per_user: _Optional[float] = ..., requests_per_s: _Optional[float] = ..., decode_output_tokens_per_s: _Optional[float] = ..., decode_utilization: _Optional[float] = ..., prefill_input_tokens_per_s: _Optional[float] = ..., prefill_utilization: _Optional[float] = ..., prefill_gpus: _Optional[int] = ..., decode_gpus: _Optional[int] = ..., prefill_peak_memory_gb: _Optional[float] = ..., decode_peak_memory_gb: _Optional[float] = ..., kv_transfer_gb: _Optional[float] = ..., kv_transfer_streams: _Optional[int] = ...) -> None: ...

class ServingFigures(_message.Message):
    __slots__ = ("status", "gpus", "bound", "ttft_s", "tpot_s", "output_tokens_per_s_per_gpu", "solve_time_s")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    BOUND_FIELD_NUMBER: _ClassVar[int]
    TTFT_S_FIELD_NUMBER: _ClassVar[int]
    TPOT_S_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_PER_S_PER_GPU_FIELD_NUMBER: _ClassVar[int]
    SOLVE_TIME_S_FIELD_NUMBER: _ClassVar[int]
    status: SolveStatus
    gpus: int
    bound: int
    ttft_s: float
    tpot_s: float
    output_tokens_per_s_per_gpu: float
    solve_time_s: float
    def __init__(self, status: _Optional[_Union[SolveStatus, str]] = ..., gpus: _Optional[int] = ..., bound: _Optional[int] = ..., ttft_s: _Optional[float] = ..., tpot_s: _Optional[float] = ..., output_tokens_per_s_per_gpu: _Optional[float] = ..., solve_time_s: _Optional[float] = ...) -> None: ...

class ServingComparison(_message.Message):
    __slots__ = ("chosen", "reason", "aggregated", "disaggregated")
    CHOSEN_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    AGGREGATED_FIELD_NUMBER: _ClassVar[int]
    DISAGGREGATED_FIELD_NUMBER: _ClassVar[int]
    chosen: ServingMode
    reason: str
    aggregated: ServingFigures
    disaggregated: ServingFigures
    def __init__(self, chosen: _Optional[_Union[ServingMode, str]] = ..., reason: _Optional[str] = ..., aggregated: _Optional[_Union[ServingFigures, _Mapping]] = ..., disaggregated: _Optional[_Union[ServingFigures, _Mapping]] = ...) -> None: ...

class PoolStage(_message.Message):
    __slots__ = ("first_layer", "last_layer", "memory_gb", "step_ms", "full_step_ms")
    FIRST_LAYER_FIELD_NUMBER: _ClassVar[int]
    LAST_LAYER_FIELD_NUMBER: _ClassVar[int]
    MEMORY_GB_FIELD_NUMBER: _ClassVar[int]
    STEP_MS_FIELD_NUMBER: _ClassVar[int]
    FULL_STEP_MS_FIELD_NUMBER: _ClassVar[int]
    first_layer: int
    last_layer: int
    memory_gb: float
    step_ms: float
    full_step_ms: float
    def __init__(self, first_layer: _Optional[int] = ..., last_layer: _Optional[int] = ..., memory_gb: _Optional[float] = ..., step_ms: _Optional[float] = ..., full_step_ms: _Optional[float] = ...) -> None: ...

class PoolEstimate(_message.Message):
    __slots__ = ("pool", "gpus", "degrees", "redundant_experts", "batch", "tokens_per_step", "placement_source", "peak_memory_gb", "memory_budget_gb", "slowest_stage_step_s", "hop_s", "step_overhead_s", "capacity", "capacity_unit", "utilization", "gpus_holding_kv", "step_terms_s", "stages")
    class StepTermsSEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    POOL_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    DEGREES_FIELD_NUMBER: _ClassVar[int]
    REDUNDANT_EXPERTS_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_STEP_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_SOURCE_FIELD_NUMBER: _ClassVar[int]
    PEAK_MEMORY_GB_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BUDGET_GB_FIELD_NUMBER: _ClassVar[int]
    SLOWEST_STAGE_STEP_S_FIELD_NUMBER: _ClassVar[int]
    HOP_S_FIELD_NUMBER: _ClassVar[int]
    STEP_OVERHEAD_S_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_UNIT_FIELD_NUMBER: _ClassVar[int]
    UTILIZATION_FIELD_NUMBER: _ClassVar[int]
    GPUS_HOLDING_KV_FIELD_NUMBER: _ClassVar[int]
    STEP_TERMS_S_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    pool: Pool
    gpus: int
    degrees: Degrees
    redundant_experts: int
    batch: int
    tokens_per_step: int
    placement_source: str
    peak_memory_gb: float
    memory_budget_gb: float
    slowest_stage_step_s: float
    hop_s: float
    step_overhead_s: float
    capacity: float
    capacity_unit: str
    utilization: float
    gpus_holding_kv: int
    step_terms_s: _containers.ScalarMap[str, float]
    stages: _containers.RepeatedCompositeFieldContainer[PoolStage]
    def __init__(self, pool: _Optional[_Union[Pool, str]] = ..., gpus: _Optional[int] = ..., degrees: _Optional[_Union[Degrees, _Mapping]] = ..., redundant_experts: _Optional[int] = ..., batch: _Optional[int] = ..., tokens_per_step: _Optional[int] = ..., placement_source: _Optional[str] = ..., peak_memory_gb: _Optional[float] = ..., memory_budget_gb: _Optional[float] = ..., slowest_stage_step_s: _Optional[float] = ..., hop_s: _Optional[float] = ..., step_overhead_s: _Optional[float] = ..., capacity: _Optional[float] = ..., capacity_unit: _Optional[str] = ..., utilization: _Optional[float] = ..., gpus_holding_kv: _Optional[int] = ..., step_terms_s: _Optional[_Mapping[str, float]] = ..., stages: _Optional[_Iterable[_Union[PoolStage, _Mapping]]] = ...) -> None: ...

class KvTransferEstimate(_message.Message):
    __slots__ = ("bytes_per_request", "streams", "link_gb_s", "latency_s", "total_s", "exposed_s", "overlap")
    BYTES_PER_REQUEST_FIELD_NUMBER: _ClassVar[int]
    STREAMS_FIELD_NUMBER: _ClassVar[int]
    LINK_GB_S_FIELD_NUMBER: _ClassVar[int]
    LATENCY_S_FIELD_NUMBER: _ClassVar[int]
    TOTAL_S_FIELD_NUMBER: _ClassVar[int]
    EXPOSED_S_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_FIELD_NUMBER: _ClassVar[int]
    bytes_per_request: float
    streams: int
    link_gb_s: float
    latency_s: float
    total_s: float
    exposed_s: float
    overlap: KvTransfer
    def __init__(self, bytes_per_request: _Optional[float] = ..., streams: _Optional[int] = ..., link_gb_s: _Optional[float] = ..., latency_s: _Optional[float] = ..., total_s: _Optional[float] = ..., exposed_s: _Optional[float] = ..., overlap: _Optional[_Union[KvTransfer, str]] = ...) -> None: ...

class DisaggTtft(_message.Message):
    __slots__ = ("queue_wait_s", "prefill_s", "kv_transfer_s", "ttft_s", "load", "round_s", "rounds", "queue_model")
    QUEUE_WAIT_S_FIELD_NUMBER: _ClassVar[int]
    PREFILL_S_FIELD_NUMBER: _ClassVar[int]
    KV_TRANSFER_S_FIELD_NUMBER: _ClassVar[int]
    TTFT_S_FIELD_NUMBER: _ClassVar[int]
    LOAD_FIELD_NUMBER: _ClassVar[int]
    ROUND_S_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_MODEL_FIELD_NUMBER: _ClassVar[int]
    queue_wait_s: float
    prefill_s: float
    kv_transfer_s: float
    ttft_s: float
    load: float
    round_s: float
    rounds: int
    queue_model: str
    def __init__(self, queue_wait_s: _Optional[float] = ..., prefill_s: _Optional[float] = ..., kv_transfer_s: _Optional[float] = ..., ttft_s: _Optional[float] = ..., load: _Optional[float] = ..., round_s: _Optional[float] = ..., rounds: _Optional[int] = ..., queue_model: _Optional[str] = ...) -> None: ...

class DisaggEstimate(_message.Message):
    __slots__ = ("serving", "gpus", "request_rate_per_s", "metrics", "prefill", "decode", "kv_transfer", "ttft", "expert_load", "calibration")
    SERVING_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_RATE_PER_S_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    PREFILL_FIELD_NUMBER: _ClassVar[int]
    DECODE_FIELD_NUMBER: _ClassVar[int]
    KV_TRANSFER_FIELD_NUMBER: _ClassVar[int]
    TTFT_FIELD_NUMBER: _ClassVar[int]
    EXPERT_LOAD_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_FIELD_NUMBER: _ClassVar[int]
    serving: ServingMode
    gpus: int
    request_rate_per_s: float
    metrics: DisaggMetrics
    prefill: PoolEstimate
    decode: PoolEstimate
    kv_transfer: KvTransferEstimate
    ttft: DisaggTtft
    expert_load: str
    calibration: str
    def __init__(self, serving: _Optional[_Union[ServingMode, str]] = ..., gpus: _Optional[int] = ..., request_rate_per_s: _Optional[float] = ..., metrics: _Optional[_Union[DisaggMetrics, _Mapping]] = ..., prefill: _Optional[_Union[PoolEstimate, _Mapping]] = ..., decode: _Optional[_Union[PoolEstimate, _Mapping]] = ..., kv_transfer: _Optional[_Union[KvTransferEstimate, _Mapping]] = ..., ttft: _Optional[_Union[DisaggTtft, _Mapping]] = ..., expert_load: _Optional[str] = ..., calibration: _Optional[str] = ...) -> None: ...
