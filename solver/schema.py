"""The instance and plan schema: pydantic v2, strict, frozen, every field described.

An *instance* is what a user asks: a model, a GPU type, a workload with targets, an optional expert
load, search options and optionally a plan someone proposed (``claimed_plan``). A *plan* is an
answer: the parallel degrees, the batch, the layers of each pipeline stage and the expert placement.

Model and hardware may be given as a preset name (``"qwen3-235b-a22b"``), a path to a Hugging
Face ``config.json`` (model only) or explicit fields; :func:`solver.instance.load_instance`
resolves names and paths into the explicit specs below before anything else sees them.
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic import Strict as NoCoercion

Precision = Literal["fp32", "bf16", "fp16", "fp8", "int8", "mxfp4", "fp4", "int4"]

#: Bytes per element of each precision. ``mxfp4`` is 4-bit elements plus one 8-bit scale per block
#: of 32 (OCP Microscaling spec v1.0), i.e. 4.25 bits.
BYTES_PER_ELEMENT: dict[str, float] = {
    "fp32": 4.0,
    "bf16": 2.0,
    "fp16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "mxfp4": 4.25 / 8.0,
    "fp4": 0.5,
    "int4": 0.5,
}

# Limits that keep every input inside what the cost model and the solver can represent. They admit
# every real model we know of (Kimi-K2: 384 experts, 61 layers; Llama 4: 202k vocab) with margin.
MAX_LAYERS = 512
MAX_EXPERTS = 1024
MAX_HIDDEN = 65_536
MAX_HEADS = 1024
MAX_VOCAB = 1_048_576
MAX_SEQ_LEN = 4_194_304
#: A model may *support* longer contexts than a workload may ask for (Llama 4 Scout: 10,485,760).
MAX_POSITION_EMBEDDINGS = 16_777_216
MAX_BATCH = 65_536
MAX_GPUS = 65_536
MAX_TIME_LIMIT_S = 3600.0
# Hardware ranges: every GPU we know of lies well inside them (docs/hardware.md lists the presets:
# 19.5-9000 TFLOPS, 48-192 GB, 0.86-8 TB/s, links 25-900 GB/s, latencies 2-5 us). Values outside
# (1e308 GB, 5e-324 TFLOPS) are not hardware; they overflow the cost model's integer ns and bytes
# into infinity, or divide by zero.
MIN_TFLOPS, MAX_TFLOPS = 0.1, 1e6
MIN_EFFICIENCY = 0.01
MAX_HBM_GB = 100_000.0
MIN_HBM_TB_S, MAX_HBM_TB_S = 0.01, 1000.0
MIN_LINK_GB_S, MAX_LINK_GB_S = 0.1, 1e6
MAX_LATENCY_US = 100_000.0
#: Values one degree may be forbidden (each is one more constraint over every candidate).
MAX_FORBIDDEN_VALUES = 64
#: Largest measured token count per (layer, expert): counts are read as 64-bit integers.
MAX_TOKEN_COUNT = 10**15
#: CP-SAT's random seed is a 32-bit signed integer.
MAX_RANDOM_SEED = 2**31 - 1


class Strict(BaseModel):
    """Base of every schema model: unknown fields are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


#: Integers and floats are strict: a boolean is never a number (YAML's ``true`` is not 1), a
#: string never parses into one, and an integer field takes no float.
Int = Annotated[int, NoCoercion()]
Float = Annotated[float, NoCoercion()]
PosInt = Annotated[Int, Field(gt=0)]
NonNegInt = Annotated[Int, Field(ge=0)]
PosFloat = Annotated[Float, Field(gt=0, allow_inf_nan=False)]
NonNegFloat = Annotated[Float, Field(ge=0, allow_inf_nan=False)]
Fraction = Annotated[Float, Field(gt=0, le=1, allow_inf_nan=False)]
#: An efficiency (MFU, HBM or link efficiency): a fraction of at least MIN_EFFICIENCY.
Efficiency = Annotated[Float, Field(ge=MIN_EFFICIENCY, le=1, allow_inf_nan=False)]
Tflops = Annotated[Float, Field(ge=MIN_TFLOPS, le=MAX_TFLOPS, allow_inf_nan=False)]
LinkGBs = Annotated[Float, Field(ge=MIN_LINK_GB_S, le=MAX_LINK_GB_S, allow_inf_nan=False)]
LatencyUs = Annotated[Float, Field(ge=0, le=MAX_LATENCY_US, allow_inf_nan=False)]


# ----------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------


class AttentionSpec(Strict):
    """Attention of every layer: grouped-query (GQA/MHA) or DeepSeek's multi-head latent (MLA)."""

    kind: Literal["gqa", "mla"] = Field("gqa", description="'gqa' (covers MHA and MQA) or 'mla'.")
    num_heads: Int = Field(gt=0, le=MAX_HEADS, description="Query heads.")
    num_kv_heads: Int = Field(
        gt=0, le=MAX_HEADS, description="Key/value heads (GQA). For MLA, equal to num_heads."
    )
    head_dim: Int = Field(
        gt=0, le=4096, description="Per-head dimension of Q/K/V (GQA). Not always hidden/heads."
    )
    q_lora_rank: Int = Field(0, ge=0, le=MAX_HIDDEN, description="MLA query low-rank; 0 = none.")
    kv_lora_rank: Int = Field(0, ge=0, le=MAX_HIDDEN, description="MLA compressed KV rank.")
    qk_nope_head_dim: Int = Field(0, ge=0, le=4096, description="MLA non-rotary Q/K head dim.")
    qk_rope_head_dim: Int = Field(0, ge=0, le=4096, description="MLA rotary Q/K head dim.")
    v_head_dim: Int = Field(0, ge=0, le=4096, description="MLA value head dim.")
    bias: bool = Field(False, description="Q/K/V/O projections carry biases (gpt-oss).")
    qk_norm: bool = Field(False, description="Per-head RMSNorm on Q and K (Qwen3).")
    sinks: bool = Field(False, description="One learned attention-sink logit per head (gpt-oss).")
    sliding_window: Int | None = Field(
        None, gt=0, le=MAX_SEQ_LEN, description="Window of the sliding-window layers, in tokens."
    )
    sliding_layers: tuple[int, ...] = Field(
        (), description="Indices of layers that use the sliding window (others attend fully)."
    )

    @model_validator(mode="after")
    def _check(self) -> AttentionSpec:
        if self.kind == "gqa":
            if self.num_heads % self.num_kv_heads:
                raise ValueError(
                    f"num_heads ({self.num_heads}) must be a multiple of num_kv_heads "
                    f"({self.num_kv_heads})"
                )
        else:
            if self.kv_lora_rank <= 0 or self.qk_rope_head_dim <= 0 or self.v_head_dim <= 0:
                raise ValueError("MLA needs kv_lora_rank, qk_rope_head_dim and v_head_dim > 0")
            if self.qk_nope_head_dim <= 0:
                raise ValueError("MLA needs qk_nope_head_dim > 0")
        if self.sliding_layers and self.sliding_window is None:
            raise ValueError("sliding_layers given without sliding_window")
        return self

    @property
    def qk_head_dim(self) -> int:
        if self.kind == "mla":
            return self.qk_nope_head_dim + self.qk_rope_head_dim
        return self.head_dim


class ModelSpec(Strict):
    """The architecture, as explicit numbers. Presets and HF configs are turned into this."""

    name: str = Field("custom", min_length=1, max_length=200, description="Display name.")
    num_layers: Int = Field(gt=0, le=MAX_LAYERS, description="Decoder layers.")
    dense_layers: tuple[int, ...] = Field(
        (),
        description="Indices of layers with a dense FFN instead of MoE (DeepSeek: [0,1,2]; "
        "Llama 4 Maverick: the even layers). Every other layer is an MoE layer.",
    )
    hidden_size: Int = Field(gt=0, le=MAX_HIDDEN, description="Model (token) dimension.")
    attention: AttentionSpec = Field(description="Attention of every layer.")
    dense_ffn_width: Int = Field(
        0, ge=0, le=4 * MAX_HIDDEN, description="Intermediate width of dense FFN layers."
    )
    num_experts: Int = Field(gt=0, le=MAX_EXPERTS, description="Routed experts per MoE layer.")
    top_k: Int = Field(gt=0, le=MAX_EXPERTS, description="Routed experts per token.")
    expert_ffn_width: Int = Field(gt=0, le=4 * MAX_HIDDEN, description="Routed expert width.")
    num_shared_experts: Int = Field(0, ge=0, le=64, description="Shared experts per MoE layer.")
    shared_expert_width: Int = Field(
        0, ge=0, le=4 * MAX_HIDDEN, description="Width of each shared expert (0 = expert width)."
    )
    gated_ffn: bool = Field(True, description="SwiGLU-style FFN: 3 matrices (gate, up, down).")
    ffn_bias: bool = Field(False, description="FFN/expert projections carry biases (gpt-oss).")
    router_bias: bool = Field(False, description="The router has a bias (gpt-oss).")
    vocab_size: Int = Field(gt=0, le=MAX_VOCAB, description="Vocabulary size.")
    tie_embeddings: bool = Field(False, description="LM head shares the embedding matrix.")
    weight_precision: Precision = Field("bf16", description="Precision of non-expert weights.")
    expert_precision: Precision | None = Field(
        None, description="Precision of routed expert weights (default: weight_precision); "
        "shared experts use weight_precision."
    )
    weight_block_size: Int | None = Field(
        None, gt=0, le=4096,
        description="Edge of the square blocks block-quantised weights are scaled in (FP8 "
        "checkpoints of DeepSeek-V3 and Qwen3: 128); every tensor-parallel shard must keep whole "
        "blocks. None: per-tensor or per-channel scales.",
    )
    kv_precision: Precision = Field("bf16", description="Precision of the KV cache.")
    activation_precision: Precision = Field("bf16", description="Precision of activations.")
    declared_total_params: Int | None = Field(
        None, gt=0, description="Parameter count the source claims; checked against the layout."
    )
    max_position_embeddings: Int | None = Field(
        None, gt=0, le=MAX_POSITION_EMBEDDINGS, description="Longest context the model supports."
    )

    @field_validator("dense_layers", mode="after")
    @classmethod
    def _sorted_unique(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if len(set(v)) != len(v):
            raise ValueError("dense_layers has duplicates")
        return tuple(sorted(v))

    @model_validator(mode="after")
    def _check(self) -> ModelSpec:
        if any(i < 0 or i >= self.num_layers for i in self.dense_layers):
            raise ValueError(f"dense_layers must lie in [0, {self.num_layers - 1}]")
        if any(i < 0 or i >= self.num_layers for i in self.attention.sliding_layers):
            raise ValueError(f"attention.sliding_layers must lie in [0, {self.num_layers - 1}]")
        if self.top_k > self.num_experts:
            raise ValueError(
                f"top_k ({self.top_k}) cannot exceed num_experts ({self.num_experts})"
            )
        if self.dense_layers and self.dense_ffn_width <= 0:
            raise ValueError("dense_ffn_width must be > 0 when the model has dense layers")
        return self

    @cached_property
    def moe_layers(self) -> tuple[int, ...]:
        dense = set(self.dense_layers)
        return tuple(i for i in range(self.num_layers) if i not in dense)

    @property
    def expert_weight_precision(self) -> str:
        return self.expert_precision or self.weight_precision

    @property
    def shared_width(self) -> int:
        return self.shared_expert_width or self.expert_ffn_width


# ----------------------------------------------------------------------------------------------
# Hardware
# ----------------------------------------------------------------------------------------------


class HardwareSpec(Strict):
    """One GPU type and how GPUs are connected. Bandwidths are per GPU, one direction."""

    name: str = Field("custom", min_length=1, max_length=200, description="Display name.")
    peak_tflops: dict[Precision, Tflops] = Field(
        min_length=1,
        description="Dense peak TFLOPS per precision (no sparsity), e.g. {bf16: 989, fp8: 1979}. "
        "A weight precision missing here has no tensor cores: its GEMMs dequantise the weights "
        "and compute in the activation precision (W4A16/W8A16)."
    )
    mfu: Efficiency = Field(description="Fraction of peak FLOPS that GEMMs achieve [0.01-1].")
    hbm_gb: Float = Field(
        gt=0, le=MAX_HBM_GB, allow_inf_nan=False,
        description="HBM capacity per GPU, in GB (1e9 bytes)."
    )
    hbm_tb_s: Float = Field(
        ge=MIN_HBM_TB_S, le=MAX_HBM_TB_S, allow_inf_nan=False,
        description="Peak HBM bandwidth per GPU, in TB/s."
    )
    hbm_efficiency: Efficiency = Field(description="Achievable fraction of HBM bandwidth.")
    gpus_per_node: Int = Field(gt=0, le=1024, description="GPUs sharing the fast interconnect.")
    intra_node_gb_s: LinkGBs = Field(description="Intra-node bandwidth per GPU, GB/s, one way.")
    inter_node_gb_s: LinkGBs = Field(description="Inter-node bandwidth per GPU, GB/s, one way.")
    intra_node_latency_us: LatencyUs = Field(description="Latency of one intra-node hop, µs.")
    inter_node_latency_us: LatencyUs = Field(description="Latency of one inter-node hop, µs.")
    comm_efficiency: Efficiency = Field(
        0.8, description="Achievable fraction of link bandwidth for collectives."
    )
    reserved_gb: NonNegFloat = Field(
        description="Memory per GPU kept by the runtime (CUDA context, allocator, graphs), GB."
    )
    notes: str = Field("", max_length=4000, description="Assumptions and sources.")

    @model_validator(mode="after")
    def _check(self) -> HardwareSpec:
        if self.reserved_gb >= self.hbm_gb:
            raise ValueError(
                f"reserved_gb ({self.reserved_gb}) must be below hbm_gb ({self.hbm_gb})"
            )
        return self


# ----------------------------------------------------------------------------------------------
# Workload
# ----------------------------------------------------------------------------------------------


class BatchRange(Strict):
    """The concurrency the solver may choose: any integer in ``[min, max]`` (a plan's batch must
    also satisfy the plan-space rules, e.g. ``dp`` divides it)."""

    min: Int = Field(1, gt=0, le=MAX_BATCH, description="Smallest batch allowed.")
    max: Int = Field(MAX_BATCH, gt=0, le=MAX_BATCH, description="Largest batch allowed.")

    @model_validator(mode="after")
    def _check(self) -> BatchRange:
        if self.max < self.min:
            raise ValueError(f"batch max ({self.max}) cannot be below batch min ({self.min})")
        return self


class Targets(Strict):
    """Service-level targets. Every target is optional; none means unconstrained."""

    max_ttft_s: PosFloat | None = Field(None, description="Max time to first token, seconds.")
    max_tpot_s: PosFloat | None = Field(None, description="Max time per output token, seconds.")
    min_output_tokens_per_s_per_gpu: PosFloat | None = Field(
        None, description="Min output tokens/s per GPU (whole deployment)."
    )
    min_output_tokens_per_s: PosFloat | None = Field(
        None, description="Min output tokens/s of the whole deployment (all replicas)."
    )
    max_gpus: Int | None = Field(None, gt=0, le=MAX_GPUS, description="Max total GPUs.")


class Workload(Strict):
    """Request shape, concurrency and targets."""

    input_len: Int = Field(gt=0, le=MAX_SEQ_LEN, description="Typical input (prompt) length.")
    max_input_len: Int | None = Field(
        None, gt=0, le=MAX_SEQ_LEN, description="Maximum input length (default: input_len)."
    )
    output_len: Int = Field(gt=0, le=MAX_SEQ_LEN, description="Output tokens per request.")
    batch: Annotated[Int, Field(gt=0, le=MAX_BATCH)] | BatchRange = Field(
        default_factory=BatchRange,
        description="Concurrent sequences per serving instance (the engine's running requests, "
        "vLLM's max_num_seqs in use): fixed, or {min, max} for the solver to choose any integer "
        "in between (default: any batch).",
    )
    targets: Targets = Field(default_factory=Targets, description="Service-level targets.")

    @model_validator(mode="after")
    def _check(self) -> Workload:
        if self.max_input_len is not None and self.max_input_len < self.input_len:
            raise ValueError(
                f"max_input_len ({self.max_input_len}) cannot be below the typical input_len "
                f"({self.input_len})"
            )
        return self

    @property
    def max_input(self) -> int:
        return self.max_input_len or self.input_len

    @property
    def max_context(self) -> int:
        """Longest context a sequence reaches: maximum input plus all output tokens."""
        return self.max_input + self.output_len

    @property
    def batch_bounds(self) -> tuple[int, int]:
        """Smallest and largest batch the workload allows."""
        if isinstance(self.batch, int):
            return self.batch, self.batch
        return self.batch.min, self.batch.max

    @property
    def mean_context(self) -> int:
        """Mean context of a decoding sequence: typical input plus half the output (rounded up)."""
        return self.input_len + ceil_div(self.output_len, 2)

    @property
    def full_context(self) -> int:
        """A typical sequence at its end: typical input plus all output tokens."""
        return self.input_len + self.output_len


# ----------------------------------------------------------------------------------------------
# Expert load
# ----------------------------------------------------------------------------------------------


#: Default Zipf exponent of expert popularity (docs/cost-model.md, "Expert load"): with it
#: DeepSeek-V3's hottest expert gets 4.6x the mean load ("hot experts several times the mean",
#: DeepSeek's EPLB statistics) and contiguous EP32 blocks put 1.50x the mean on the busiest rank,
#: the 1.49x that LMSYS measured EPLB to win in DeepSeek-V3 prefill at EP32 (2025-05-05).
DEFAULT_POWER_LAW_ALPHA = 0.35


class ExpertLoad(Strict):
    """How routed tokens spread over experts, per MoE layer. Default: a power law (Zipf) with
    exponent 0.35, permuted per layer — uniform routing is the optimistic corner."""

    kind: Literal["uniform", "power_law", "measured"] = Field(
        "power_law", description="'power_law' (Zipf with exponent alpha, the default), "
        "'uniform' or 'measured'."
    )
    alpha: Float | None = Field(
        None, gt=0, le=10, allow_inf_nan=False,
        description=f"Power-law exponent (power_law only; default {DEFAULT_POWER_LAW_ALPHA}).")
    seed: Int = Field(0, ge=0, description="Seed of the per-layer permutation of the power law.")
    counts: tuple[tuple[Annotated[Int, Field(ge=0, le=MAX_TOKEN_COUNT)], ...], ...] | None = Field(
        None,
        description="Measured token counts: one row per MoE layer (in layer order), one column "
        "per routed expert (as vLLM/SGLang expert-distribution recorders write them).",
    )

    @model_validator(mode="before")
    @classmethod
    def _default_alpha(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("kind", "power_law") == "power_law" \
                and data.get("alpha") is None:
            return {**data, "alpha": DEFAULT_POWER_LAW_ALPHA}
        return data

    @model_validator(mode="after")
    def _check(self) -> ExpertLoad:
        if self.kind != "power_law" and self.alpha is not None:
            raise ValueError("alpha is only used with kind power_law")
        if self.kind == "measured":
            if not self.counts:
                raise ValueError("measured load needs counts")
            widths = {len(r) for r in self.counts}
            if len(widths) != 1:
                raise ValueError("every row of counts must have the same number of experts")
            if any(sum(r) == 0 for r in self.counts):
                raise ValueError("every row of counts needs at least one token")
        elif self.counts is not None:
            raise ValueError("counts are only used with kind measured")
        return self


# ----------------------------------------------------------------------------------------------
# Engine
# ----------------------------------------------------------------------------------------------

EngineName = Literal["vllm", "sglang", "trtllm"]


class EngineSpec(Strict):
    """The serving engine and the settings of it that the cost model prices. Every setting left
    out takes that engine's default (solver/engines.py, with sources)."""

    name: EngineName = Field("vllm", description="'vllm', 'sglang' or 'trtllm'.")
    gpu_memory_utilization: Float | None = Field(
        None, gt=0, le=1, allow_inf_nan=False,
        description="Fraction of HBM the engine may allocate (weights, activations, KV cache, "
        "runtime); vLLM --gpu-memory-utilization, SGLang --mem-fraction-static.",
    )
    max_num_batched_tokens: Int | None = Field(
        None, gt=0, le=MAX_SEQ_LEN,
        description="Tokens one scheduler step may batch per attention-DP rank (chunked "
        "prefill budget); vLLM --max-num-batched-tokens, SGLang --chunked-prefill-size.",
    )
    step_overhead_us: Float | None = Field(
        None, ge=0, le=MAX_LATENCY_US, allow_inf_nan=False,
        description="Time of one scheduler step outside the GPU kernels (scheduling, sampling, "
        "launch), microseconds.",
    )
    ep_dispatch_precision: Literal["fp8", "bf16"] | None = Field(
        None, description="Precision of expert-parallel dispatch (the combine is BF16).")
    overlap: Literal["none", "two_batch"] = Field(
        "none", description="'two_batch': split each step into two micro-batches and overlap "
        "expert-parallel communication with compute (SGLang --enable-two-batch-overlap, vLLM "
        "--enable-dbo).",
    )

    def _default(self, key: str) -> Any:
        from solver.engines import ENGINE_DEFAULTS

        return getattr(ENGINE_DEFAULTS[self.name], key)

    @property
    def memory_fraction(self) -> float:
        return self.gpu_memory_utilization or self._default("gpu_memory_utilization")

    @property
    def token_budget(self) -> int:
        return self.max_num_batched_tokens or self._default("max_num_batched_tokens")

    @property
    def overhead_us(self) -> float:
        v = self.step_overhead_us
        return self._default("step_overhead_us") if v is None else v

    @property
    def dispatch_precision(self) -> str:
        return self.ep_dispatch_precision or self._default("ep_dispatch_precision")

    @property
    def kv_reserves_full_sequence(self) -> bool:
        """Whether the engine reserves a request's KV for its whole sequence at admission
        (TensorRT-LLM's GUARANTEED_NO_EVICT) rather than allocating it as tokens come."""
        return self._default("kv_reserves_full_sequence")


# ----------------------------------------------------------------------------------------------
# Search options
# ----------------------------------------------------------------------------------------------

DegreeName = Literal["tp", "pp", "dp", "cp", "ep", "etp", "edp", "replicas"]
DegreeValue = Annotated[Int, Field(gt=0, le=MAX_GPUS)]


class SearchOptions(Strict):
    """What the solver may choose and how long it may take."""

    fix: dict[DegreeName, DegreeValue] = Field(
        default_factory=dict, description="Degrees fixed to a value, e.g. {tp: 8}."
    )
    forbid: dict[DegreeName, Annotated[tuple[DegreeValue, ...], Field(
        max_length=MAX_FORBIDDEN_VALUES)]] = Field(
        default_factory=dict, description="Values a degree may not take, e.g. {cp: [2, 4]}."
    )
    max_pp: Int | None = Field(
        None, gt=0, le=MAX_LAYERS, description="Largest pipeline degree searched (default: "
        "no limit but the layer count). A restriction: echoed in the answer's search_space.")
    max_cp: Int | None = Field(
        None, gt=0, le=1024, description="Largest context-parallel degree searched (default: "
        "no limit but the node rule). A restriction: echoed in search_space.")
    max_dp: Int | None = Field(
        None, gt=0, le=MAX_GPUS, description="Largest attention-DP degree searched (default: "
        "no limit but the batch). A restriction: echoed in search_space.")
    redundant_experts: Int = Field(
        0,
        ge=0,
        le=MAX_EXPERTS,
        description="Extra expert slots per MoE layer for replicas of hot experts, exactly as "
        "vLLM's --num-redundant-experts: with ep > 1, ep must divide experts + this; ep = 1 uses "
        "none.",
    )
    ep_cross_node: bool = Field(
        True, description="Allow EP groups to span nodes (costed by the hierarchical "
        "all-to-all: NVLink inside a node, RDMA across nodes). Default true, as DeepSeek-V3 and "
        "Kimi-K2 are served.")
    tp_cross_node: bool = Field(False, description="Allow TP groups to span nodes.")
    engine_rules: bool = Field(
        True, description="Search only plans engine.name can launch (solver/rules.py, "
        "ENGINE_RULES: cp = 1, edp = 1 and each engine's own shapes; echoed in search_space). "
        "false: the engine-agnostic plan space (cp and edp above 1 included), for research.")
    time_limit_s: Float = Field(
        60.0, gt=0, le=MAX_TIME_LIMIT_S, allow_inf_nan=False, description="Solver time limit."
    )
    workers: Int = Field(2, gt=0, le=256, description="CP-SAT search workers.")
    random_seed: Int = Field(
        0, ge=0, le=MAX_RANDOM_SEED, description="CP-SAT random seed (reproducible runs)."
    )

    def with_limits(self, time_limit_s: float | None, workers: int | None) -> SearchOptions:
        """These options with a call's time limit and workers, where given."""
        if time_limit_s is None and workers is None:
            return self
        return self.model_copy(update={
            k: v for k, v in (("time_limit_s", time_limit_s), ("workers", workers))
            if v is not None})


# ----------------------------------------------------------------------------------------------
# Plan
# ----------------------------------------------------------------------------------------------


class Degrees(Strict):
    """Parallel degrees of one deployment (Megatron-Core parallel folding)."""

    tp: Int = Field(1, gt=0, le=MAX_GPUS, description="Attention tensor parallel.")
    pp: Int = Field(1, gt=0, le=MAX_GPUS, description="Pipeline stages.")
    dp: Int = Field(1, gt=0, le=MAX_GPUS, description="Attention data parallel in a stage.")
    cp: Int = Field(1, gt=0, le=MAX_GPUS, description="Context (sequence) parallel.")
    ep: Int = Field(1, gt=0, le=MAX_GPUS, description="Expert parallel.")
    etp: Int = Field(1, gt=0, le=MAX_GPUS, description="Expert tensor parallel.")
    edp: Int = Field(1, gt=0, le=MAX_GPUS, description="Expert data parallel.")
    replicas: Int = Field(1, gt=0, le=MAX_GPUS, description="Identical serving instances.")

    @property
    def gpus_per_stage(self) -> int:
        return self.tp * self.cp * self.dp

    @property
    def gpus_per_instance(self) -> int:
        return self.pp * self.gpus_per_stage

    @property
    def gpus(self) -> int:
        return self.replicas * self.gpus_per_instance

    def short(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.model_dump().items())


class Grid(NamedTuple):
    """Degrees of one serving instance without replicas (the planner's and the cost model's
    light-weight key; :class:`Degrees` is the validated, user-facing form)."""

    tp: int
    cp: int
    dp: int
    ep: int
    etp: int
    edp: int
    pp: int

    @property
    def gpus_per_stage(self) -> int:
        return self.tp * self.cp * self.dp

    @property
    def gpus_per_instance(self) -> int:
        return self.pp * self.tp * self.cp * self.dp

    def degrees(self, replicas: int = 1) -> Degrees:
        return Degrees(**self._asdict(), replicas=replicas)

    @classmethod
    def of(cls, d: Degrees) -> Grid:
        return cls(d.tp, d.cp, d.dp, d.ep, d.etp, d.edp, d.pp)


class Stage(Strict):
    """One pipeline stage: the contiguous range of layers first_layer..last_layer (inclusive)."""

    first_layer: Int = Field(ge=0, description="First layer of the stage (inclusive).")
    last_layer: Int = Field(ge=0, description="Last layer of the stage (inclusive).")

    @model_validator(mode="after")
    def _check(self) -> Stage:
        if self.last_layer < self.first_layer:
            raise ValueError("last_layer cannot be below first_layer")
        return self

    @property
    def num_layers(self) -> int:
        return self.last_layer - self.first_layer + 1


class LayerPlacement(Strict):
    """Expert placement of one MoE layer: for each EP rank, the experts in its slots.

    An expert listed on several ranks is replicated; its tokens split evenly over its replicas.
    """

    layer: Int = Field(ge=0, description="Layer index.")
    ranks: tuple[tuple[NonNegInt, ...], ...] = Field(
        min_length=1, description="ranks[r] = experts held by EP rank r (one entry per slot)."
    )


class RankLocation(Strict):
    """Where one GPU of an instance sits."""

    rank: Int = Field(ge=0, description="Global rank inside the instance.")
    node: Int = Field(ge=0, description="Node index inside the instance.")
    local_gpu: Int = Field(ge=0, description="GPU index inside the node.")


class Plan(Strict):
    """A deployment plan. ``stages`` and ``placement`` may be omitted for a claimed plan; the
    estimator then uses contiguous balanced stages and the default placement."""

    degrees: Degrees = Field(description="Parallel degrees.")
    batch: Int = Field(gt=0, le=MAX_BATCH, description="Concurrent sequences per instance.")
    redundant_experts: Int | None = Field(
        None, ge=0, le=MAX_EXPERTS,
        description="Redundant expert slots per MoE layer (vLLM --num-redundant-experts / "
        "--eplb-config num_redundant_experts; SGLang --ep-num-redundant-experts). Default: the "
        "instance's search.redundant_experts when ep > 1, none when ep = 1.",
    )
    stages: tuple[Stage, ...] | None = Field(None, description="Layers of each pipeline stage.")
    placement: tuple[LayerPlacement, ...] | None = Field(
        None, description="Expert placement per MoE layer."
    )
    claimed_total_gpus: Int | None = Field(
        None, gt=0, description="Total GPUs the author claims (checked against the degrees)."
    )
    claimed_metrics: dict[str, float] | None = Field(
        None, description="Metrics the author claims, by metric key (checked by verify)."
    )
    note: str = Field("", max_length=4000, description="Free text from the author.")


# ----------------------------------------------------------------------------------------------
# Disaggregated serving: a prefill pool and a decode pool (docs/cost-model.md, "Disaggregated
# serving"; the planner in docs/solver.md, "Two pools")
# ----------------------------------------------------------------------------------------------

ServingMode = Literal["aggregated", "disaggregated", "best"]

#: Prompt tokens per attention-DP rank and prefill step the planner chooses from by default (the
#: prefill pool's batch; SGLang's prefill servers run 8,192-16,384 per GPU).
DEFAULT_PREFILL_TOKENS = (1024, 2048, 4096, 8192, 16384)
#: Most values of disaggregation.prefill_tokens (each is a candidate of every prefill grid).
MAX_PREFILL_TOKEN_CHOICES = 64


class DisaggregationOptions(Strict):
    """What the two pools of a disaggregated deployment may choose beyond their degrees."""

    prefill_tokens: tuple[Annotated[Int, Field(gt=0, le=MAX_SEQ_LEN)], ...] = Field(
        DEFAULT_PREFILL_TOKENS, min_length=1, max_length=MAX_PREFILL_TOKEN_CHOICES,
        description="Prompt tokens each attention-DP rank of the prefill pool processes per step "
        "(its batch: SGLang --chunked-prefill-size / --max-prefill-tokens per DP rank, vLLM "
        "--max-num-batched-tokens of a prefill instance); the planner chooses one of these.",
    )
    kv_transfer: Literal["layerwise", "after_prefill"] = Field(
        "after_prefill", description="'after_prefill' (default): the whole KV cache leaves "
        "after the prompt's prefill, as the pinned engines send it (SGLang 0.5.3 per chunk after "
        "its step, vLLM 0.11.0's NixlConnector and TensorRT-LLM after the request's prefill); "
        "'layerwise': a layer's KV cache leaves as soon as the prefill has computed it, "
        "overlapping the rest of the prefill (a layer-wise connector).",
    )

    @field_validator("prefill_tokens", mode="after")
    @classmethod
    def _sorted_unique(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if len(set(v)) != len(v):
            raise ValueError("prefill_tokens has duplicates")
        return tuple(sorted(v))


class PrefillPlan(Strict):
    """The prefill pool of a disaggregated plan: prefill-only instances. ``stages`` and
    ``placement`` may be omitted (balanced stages, the EPLB placement)."""

    degrees: Degrees = Field(description="Parallel degrees and replicas of the prefill pool.")
    tokens_per_step: Int = Field(
        gt=0, le=MAX_SEQ_LEN, description="Prompt tokens each attention-DP rank prefills per "
        "step (whole prompts and chunks of longer ones; SGLang --chunked-prefill-size per DP "
        "rank).")
    redundant_experts: Int | None = Field(
        None, ge=0, le=MAX_EXPERTS, description="Redundant expert slots per MoE layer of this "
        "pool. Default: the instance's search.redundant_experts when ep > 1, none when ep = 1.")
    stages: tuple[Stage, ...] | None = Field(None, description="Layers of each pipeline stage.")
    placement: tuple[LayerPlacement, ...] | None = Field(
        None, description="Expert placement per MoE layer.")


class DisaggPlan(Strict):
    """A disaggregated deployment: a prefill pool and a decode pool on the same GPU type; each
    request is prefilled in the first, its KV cache sent over the inter-node link, and decoded in
    the second."""

    prefill: PrefillPlan = Field(description="The prefill pool.")
    decode: Plan = Field(description="The decode pool (batch = concurrent sequences per decode "
                         "instance).")
    claimed_total_gpus: Int | None = Field(
        None, gt=0, description="Total GPUs of both pools the author claims (checked).")
    claimed_metrics: dict[str, float] | None = Field(
        None, description="Metrics the author claims, by DisaggMetrics key (checked by verify).")
    note: str = Field("", max_length=4000, description="Free text from the author.")

    @property
    def gpus(self) -> int:
        return self.prefill.degrees.gpus + self.decode.degrees.gpus


# ----------------------------------------------------------------------------------------------
# Instance
# ----------------------------------------------------------------------------------------------


class Instance(Strict):
    """A planning problem: model, hardware, workload; optionally load, search, a claimed plan."""

    name: str = Field("instance", min_length=1, max_length=200, description="Instance name.")
    description: str = Field("", max_length=20_000, description="Where the instance comes from.")
    model: ModelSpec = Field(description="The model (resolved from a preset, config or fields).")
    hardware: HardwareSpec = Field(description="The GPU type (resolved from a preset or fields).")
    workload: Workload = Field(description="Requests, batch and targets.")
    engine: EngineSpec = Field(default_factory=EngineSpec,
                               description="The serving engine and its settings.")
    expert_load: ExpertLoad = Field(default_factory=ExpertLoad, description="Expert load.")
    search: SearchOptions = Field(default_factory=SearchOptions, description="Search options.")
    claimed_plan: Plan | None = Field(None, description="A proposed plan, for verify.")
    serving: ServingMode = Field(
        "aggregated", description="'aggregated': one pool serves prefill and decode (continuous "
        "batching, chunked prefill); 'disaggregated': a prefill pool and a decode pool with KV "
        "transfer between them; 'best': plan both and return the one with fewer GPUs, with both "
        "figures. Disaggregated planning needs workload.targets.min_output_tokens_per_s: both "
        "pools are sized for the request rate it implies.")
    disaggregation: DisaggregationOptions = Field(
        default_factory=DisaggregationOptions,
        description="Choices of the two pools of a disaggregated deployment.")
    claimed_disagg_plan: DisaggPlan | None = Field(
        None, description="A proposed disaggregated plan (prefill and decode pool), for verify.")

    @model_validator(mode="after")
    def _check(self) -> Instance:
        if self.serving != "aggregated" and \
                self.workload.targets.min_output_tokens_per_s is None:
            raise ValueError(
                f"workload.targets.min_output_tokens_per_s: required with serving: "
                f"{self.serving} (both pools are sized for the request rate it implies: "
                "min_output_tokens_per_s / output_len requests/s)")
        dplan = self.claimed_disagg_plan
        if dplan is not None and max(dplan.prefill.degrees.gpus, dplan.decode.degrees.gpus,
                                     dplan.gpus) > MAX_GPUS:
            raise ValueError(f"claimed_disagg_plan: {dplan.gpus} GPUs in the two pools, above "
                             f"the limit of {MAX_GPUS}")
        load = self.expert_load
        if load.kind == "measured" and load.counts is not None:
            n_moe = len(self.model.moe_layers)
            if len(load.counts) != n_moe:
                raise ValueError(
                    f"expert_load.counts has {len(load.counts)} rows but the model has "
                    f"{n_moe} MoE layers"
                )
            if len(load.counts[0]) != self.model.num_experts:
                raise ValueError(
                    f"expert_load.counts has {len(load.counts[0])} columns but the model has "
                    f"{self.model.num_experts} routed experts"
                )
        plan = self.claimed_plan
        if plan is not None and plan.degrees.gpus > MAX_GPUS:
            d = plan.degrees
            raise ValueError(
                f"claimed_plan.degrees: replicas·pp·tp·cp·dp = {d.replicas}·{d.pp}·{d.tp}·{d.cp}·"
                f"{d.dp} = {d.gpus} GPUs, above the limit of {MAX_GPUS}"
            )
        mpe = self.model.max_position_embeddings
        if mpe is not None and self.workload.max_context > mpe:
            raise ValueError(
                f"workload max context ({self.workload.max_context} = max input + output) "
                f"exceeds the model's max_position_embeddings ({mpe})"
            )
        return self


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def divisors(n: int) -> list[int]:
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


class Metrics(Strict):
    """What a plan achieves under the cost model (docs/cost-model.md), in steady state at its
    batch with continuous batching and chunked prefill."""

    ttft_s: Float = Field(description="Time to first token of a maximum-length prompt at the "
                          "planned load (queueing + chunked prefill alongside decode), s. TTFT "
                          "targets apply to this figure.")
    ttft_idle_s: Float = Field(description="Time to first token of a maximum-length prompt on an "
                               "idle instance, s.")
    tpot_s: Float = Field(description="Time per output token a user sees in steady state "
                          "(decode steps slowed by the prefill chunks sharing them), s.")
    output_tokens_per_s: Float = Field(description="Output tokens/s of the whole deployment.")
    output_tokens_per_s_per_gpu: Float = Field(description="Output tokens/s per GPU.")
    tokens_per_s_per_user: Float = Field(description="Output tokens/s one user sees (1/TPOT); "
                                         "batch x this = the instance's rate.")
    requests_per_s: Float = Field(description="Requests/s the deployment completes.")
    prefill_utilization: Float = Field(description="Share of scheduler steps that carry a "
                                       "prefill chunk (the prefill queue's utilisation).")
    peak_memory_gb: Float = Field(description="Memory of the fullest GPU, GB (1e9 bytes).")


SolveStatus = Literal["OPTIMAL", "FEASIBLE", "INFEASIBLE", "UNKNOWN"]


class LayerExperts(Strict):
    """Expert placement quality of one MoE layer, as fractions of its routed tokens."""

    layer: Int = Field(ge=0, description="Layer index.")
    hottest_load: Float = Field(description="Busiest EP rank's share, planner's placement.")
    greedy_hottest_load: Float = Field(description="Busiest EP rank's share, EPLB greedy.")
    lower_bound: Float = Field(description="Proved lower bound on the busiest rank's share.")
    optimal: bool = Field(description="The planner's placement attains the lower bound.")
    replicated_experts: Int = Field(0, ge=0, description="Experts with more than one replica.")


class Explanation(Strict):
    """Why no plan exists, and the nearest values that would make one exist."""

    summary: str = Field(description="One paragraph a person can act on.")
    conflicts: tuple[str, ...] = Field((), description="Targets or limits that conflict.")
    nearest: dict[str, float] = Field(
        default_factory=dict,
        description="Nearest feasible values, e.g. lowest_ttft_s, gpus_needed_without_max_gpus, "
        "highest_output_tokens_per_s_per_gpu, lowest_tpot_s.",
    )


class DisaggMetrics(Strict):
    """What a disaggregated plan achieves under the cost model (docs/cost-model.md,
    "Disaggregated serving"), at the planned request rate (min_output_tokens_per_s /
    output_len): every figure of the pair, and the pools' capacities."""

    ttft_s: Float = Field(description="Time to first token of a maximum-length prompt at the "
                          "planned rate: prefill-pool queueing + its prefill + the exposed KV "
                          "transfer, s. TTFT targets apply to this figure.")
    ttft_queue_s: Float = Field(description="Mean wait for a prefill server (M/D/1), s.")
    ttft_prefill_s: Float = Field(description="The prompt's own prefill steps, s.")
    kv_transfer_s: Float = Field(description="The part of the KV-cache transfer not hidden "
                                 "behind the prefill, s.")
    ttft_idle_s: Float = Field(description="TTFT on an idle prefill pool (no queueing), s.")
    tpot_s: Float = Field(description="Time per output token of the decode pool (decode-only "
                          "steps: no prefill interference), s.")
    output_tokens_per_s: Float = Field(description="Output tokens/s the deployment serves at the "
                                       "planned rate.")
    output_tokens_per_s_per_gpu: Float = Field(description="Output tokens/s at the planned rate "
                                               "per GPU of both pools.")
    tokens_per_s_per_user: Float = Field(description="Output tokens/s one user sees (1/TPOT).")
    requests_per_s: Float = Field(description="The planned request rate.")
    decode_output_tokens_per_s: Float = Field(description="What the decode pool sustains at its "
                                              "batch: replicas · batch / TPOT.")
    decode_utilization: Float = Field(description="Planned output rate / decode capacity.")
    prefill_input_tokens_per_s: Float = Field(description="What the prefill pool sustains: "
                                              "replicas · dp · tokens per step / step time.")
    prefill_utilization: Float = Field(description="Planned input rate / prefill capacity (the "
                                       "prefill queue's utilisation ρ).")
    prefill_gpus: Int = Field(description="GPUs of the prefill pool.")
    decode_gpus: Int = Field(description="GPUs of the decode pool.")
    prefill_peak_memory_gb: Float = Field(description="Fullest GPU of the prefill pool, GB.")
    decode_peak_memory_gb: Float = Field(description="Fullest GPU of the decode pool, GB.")
    kv_transfer_gb: Float = Field(description="KV cache of a maximum-length prompt sent from "
                                  "prefill to decode, GB.")
    kv_transfer_streams: Int = Field(description="Inter-node links the transfer uses in "
                                     "parallel: min(prefill, decode) GPUs holding distinct KV.")


class ServingFigures(Strict):
    """One serving mode's answer, for the side-by-side comparison of ``serving: best``."""

    status: SolveStatus = Field(description="That mode's solve status.")
    gpus: Int | None = Field(None, description="GPUs of its best plan.")
    bound: Int | None = Field(None, description="Its proved lower bound on GPUs.")
    ttft_s: Float | None = Field(None, description="TTFT of its plan, s.")
    tpot_s: Float | None = Field(None, description="TPOT of its plan, s.")
    output_tokens_per_s_per_gpu: Float | None = Field(
        None, description="Output tokens/s per GPU of its plan (aggregated: at its batch; "
        "disaggregated: at the planned rate).")
    solve_time_s: Float = Field(description="Wall time of that solve, s.")


class ServingComparison(Strict):
    """``serving: best``: the aggregated and the disaggregated answer side by side."""

    chosen: Literal["aggregated", "disaggregated"] = Field(description="The mode returned.")
    reason: str = Field(description="Why, in one sentence.")
    aggregated: ServingFigures = Field(description="The aggregated answer.")
    disaggregated: ServingFigures = Field(description="The disaggregated answer.")


class SolveResult(Strict):
    """The planner's answer: a plan with its proof status, or INFEASIBLE with an explanation."""

    status: SolveStatus = Field(description="OPTIMAL only when proved; FEASIBLE has a gap.")
    plan: Plan | None = Field(None, description="The best plan found.")
    metrics: Metrics | None = Field(None, description="Metrics of the plan (cost model).")
    objective: Int | None = Field(None, description="Total GPUs of the plan.")
    bound: Int | None = Field(None, description="Proved lower bound on total GPUs.")
    gap: Float | None = Field(None, description="(objective - bound) / objective.")
    solve_time_s: Float = Field(description="Wall time of the solve, s.")
    solver: str = Field(description="Solver and version, e.g. 'ortools-cpsat 9.15'.")
    tie_breaks: tuple[str, ...] = Field((), description="Lexicographic objectives, in order.")
    tie_breaks_proved: tuple[str, ...] = Field(
        (), description="The tie-breaks proved optimal (the rest were cut short by the limit).")
    search_space: dict[str, Any] = Field(
        default_factory=dict,
        description="The plan space the answer is optimal over: every restriction in force "
        "(user-set or default), e.g. {'tp': 'within a node', 'max_pp': 4}.",
    )
    expert_load: str = Field("", description="The expert load the plan was costed with.")
    experts: tuple[LayerExperts, ...] = Field((), description="Placement quality per MoE layer.")
    explanation: Explanation | None = Field(None, description="For INFEASIBLE: why.")
    advice: str = Field("", description="For UNKNOWN or FEASIBLE: what to change to get a proof.")
    improving_solutions: Int = Field(0, ge=0, description="Improving solutions CP-SAT found.")
    serving: Literal["aggregated", "disaggregated"] = Field(
        "aggregated", description="What answers: one aggregated pool (plan, metrics) or a "
        "prefill and a decode pool (disagg_plan, disagg_metrics; metrics then holds the pair's "
        "figures at the planned rate and plan is unset).")
    disagg_plan: DisaggPlan | None = Field(None, description="The best disaggregated plan.")
    disagg_metrics: DisaggMetrics | None = Field(
        None, description="Metrics of the disaggregated plan (cost model).")
    comparison: ServingComparison | None = Field(
        None, description="serving: best: both modes' answers side by side.")
